//! The on-disk format of backups on a `dir` target (docs/backups.md):
//!
//! ```text
//! <target>/<vmid>/<id>/manifest.json      BackupManifest (spec, domain XML, disks, checksums)
//! <target>/<vmid>/<id>/<dev>.qcow2        one file per disk; an incremental's backing file is
//!                                         ../<parent-id>/<dev>.qcow2 (relative)
//! <target>/<vmid>/.partial-<id>/          a backup being written: never listed, removed when
//!                                         the backup fails or by the next backup of that VM
//! ```
//!
//! A backup directory appears under its id only by `rename(2)` of its complete, fsync'ed
//! `.partial-` directory: a crash or a full file system leaves no backup that looks good, and
//! the earlier backups are never written to.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use keel_api::backup::{BackupKind, BackupManifest};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const MANIFEST: &str = "manifest.json";

pub fn vm_dir(target_path: &str, vmid: u32) -> PathBuf {
    Path::new(target_path).join(vmid.to_string())
}

/// The complete backups of a VM on a target, oldest first (by start time, then id).
/// Directories without a readable manifest are skipped (they are not backups Keel wrote).
pub fn list(target_path: &str, vmid: u32) -> Vec<BackupManifest> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(vm_dir(target_path, vmid)) else {
        return out;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        if let Ok(m) = read_manifest(&e.path()) {
            if m.id == n && m.vmid == vmid {
                out.push(m);
            }
        }
    }
    out.sort_by(|a, b| (a.start_time, &a.id).cmp(&(b.start_time, &b.id)));
    out
}

pub fn read_manifest(dir: &Path) -> Result<BackupManifest> {
    let p = dir.join(MANIFEST);
    let s = std::fs::read(&p)
        .map_err(|e| Error::Conflict(format!("cannot read {}: {e}", p.display())))?;
    serde_json::from_slice(&s)
        .map_err(|e| Error::Conflict(format!("{} is not a valid manifest: {e}", p.display())))
}

/// SHA-256 (hex) and length of a file.
pub fn sha256_file(p: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

pub fn fsync_path(p: &Path) -> std::io::Result<()> {
    std::fs::File::open(p)?.sync_all()
}

/// A new backup id from the start time (`20261202T171500Z`), unique in `vm_dir` and not
/// `taken` (the VM's checkpoints are named after its backups' ids, on every target: two
/// backups of a running VM to two targets in the same second must not share one).
pub fn new_id(vm_dir: &Path, start: i64, taken: &dyn Fn(&str) -> bool) -> String {
    let (y, mo, d, h, mi, s) = keel_api::time::utc_parts(start);
    let base = format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z");
    let mut id = base.clone();
    let mut n = 2;
    while vm_dir.join(&id).exists() || vm_dir.join(format!(".partial-{id}")).exists() || taken(&id)
    {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// Write the manifest into the partial directory, fsync every file and the directory, rename
/// it to its id and fsync the VM directory: from then on the backup is listed.
pub fn finalize(partial: &Path, vm_dir: &Path, m: &BackupManifest) -> Result<PathBuf> {
    let data =
        serde_json::to_vec_pretty(m).map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    let mp = partial.join(MANIFEST);
    let mut f = std::fs::File::create(&mp)?;
    f.write_all(&data)?;
    f.sync_all()?;
    for d in &m.disks {
        fsync_path(&partial.join(&d.file))?;
    }
    fsync_path(partial)?;
    let dest = vm_dir.join(&m.id);
    std::fs::rename(partial, &dest)?;
    fsync_path(vm_dir)?;
    Ok(dest)
}

/// Replace a complete backup's manifest: written beside it, fsync'ed, renamed over it, the
/// directory fsync'ed (a crash leaves the old manifest or the new one, never a torn one).
pub fn rewrite_manifest(dir: &Path, m: &BackupManifest) -> Result<()> {
    let data =
        serde_json::to_vec_pretty(m).map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    let tmp = dir.join(format!(".{MANIFEST}.new"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MANIFEST))?;
    fsync_path(dir)?;
    Ok(())
}

/// The chain ending at `id`, full first. Refused (409, with the reason) when a manifest is
/// missing or unreadable, a parent is missing, or a file named by a manifest is missing.
pub fn chain(target_path: &str, vmid: u32, id: &str) -> Result<Vec<BackupManifest>> {
    let vdir = vm_dir(target_path, vmid);
    let mut out = Vec::new();
    let mut cur = Some(id.to_string());
    while let Some(c) = cur {
        if out.len() > 10_000 {
            return Err(Error::Conflict(format!("backup {id}: the chain loops")));
        }
        let dir = vdir.join(&c);
        if !dir.is_dir() {
            return Err(Error::Conflict(if c == id {
                format!("backup {id} of VM {vmid} does not exist on this target")
            } else {
                format!("backup {id} is broken: its chain needs backup {c}, which is missing")
            }));
        }
        let m = read_manifest(&dir)
            .map_err(|e| Error::Conflict(format!("backup {id} is broken: backup {c}: {e}")))?;
        for d in &m.disks {
            if !dir.join(&d.file).is_file() {
                return Err(Error::Conflict(format!(
                    "backup {id} is broken: file {} of backup {c} is missing",
                    d.file
                )));
            }
        }
        match (m.kind, &m.parent) {
            (BackupKind::Incremental, None) => {
                return Err(Error::Conflict(format!(
                    "backup {id} is broken: incremental backup {c} names no parent"
                )))
            }
            (BackupKind::Full, _) => cur = None,
            (BackupKind::Incremental, Some(p)) => cur = Some(p.clone()),
        }
        out.push(m);
    }
    out.reverse();
    Ok(out)
}

/// Re-read every file of the chain ending at `id` and compare with the manifests' SHA-256
/// and sizes; `progress(done, total)` after each file. `Err` says what is broken.
pub fn verify_chain(
    target_path: &str,
    vmid: u32,
    id: &str,
    progress: &dyn Fn(usize, usize, &str),
) -> Result<Vec<BackupManifest>> {
    let ch = chain(target_path, vmid, id)?;
    let vdir = vm_dir(target_path, vmid);
    if let Some(m) = ch
        .iter()
        .find(|m| vdir.join(&m.id).join(super::merge::MERGING).exists())
    {
        return Err(Error::Conflict(format!(
            "backup {id} cannot be checked now: the merge of backup {} at the last prune was interrupted (its data is whole, its manifest not yet updated); the next prune of VM {vmid} on this target finishes it",
            m.id
        )));
    }
    let total: usize = ch.iter().map(|m| m.disks.len()).sum();
    let mut done = 0;
    for (i, m) in ch.iter().enumerate() {
        for d in &m.disks {
            let p = vdir.join(&m.id).join(&d.file);
            let (sum, len) = sha256_file(&p).map_err(|e| {
                Error::Conflict(format!(
                    "backup {id} is broken: cannot read {}: {e}",
                    p.display()
                ))
            })?;
            if sum != d.sha256 || len != d.file_size {
                return Err(Error::Conflict(format!(
                    "backup {id} is broken: {} of backup {} was altered (SHA-256 {sum}, {len} bytes; the manifest says {}, {} bytes)",
                    d.file, m.id, d.sha256, d.file_size
                )));
            }
            if i > 0 {
                let want = format!(
                    "../{}/{}",
                    ch[i - 1].id,
                    ch[i - 1]
                        .disks
                        .iter()
                        .find(|x| x.target == d.target)
                        .map(|x| x.file.as_str())
                        .unwrap_or("")
                );
                if d.backing.as_deref() != Some(want.as_str()) {
                    return Err(Error::Conflict(format!(
                        "backup {id} is broken: {} of backup {} is backed by {:?}, not its parent's {want}",
                        d.file, m.id, d.backing
                    )));
                }
            }
            done += 1;
            progress(done, total, &format!("{}/{}", m.id, d.file));
        }
    }
    Ok(ch)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An id is unique in its VM directory and not taken elsewhere (a checkpoint named after a
    /// backup of the same second on another target).
    #[test]
    fn new_ids_avoid_the_directory_and_taken_names() {
        let tmp = tempfile::tempdir().unwrap();
        let t = 1_796_212_800; // 2026-12-02 12:00:00 UTC
        assert_eq!(new_id(tmp.path(), t, &|_| false), "20261202T120000Z");
        std::fs::create_dir(tmp.path().join("20261202T120000Z")).unwrap();
        assert_eq!(new_id(tmp.path(), t, &|_| false), "20261202T120000Z-2");
        let taken = |id: &str| id == "20261202T120000Z-2";
        assert_eq!(new_id(tmp.path(), t, &taken), "20261202T120000Z-3");
    }
}
