//! Retention's merge (docs/backups.md, "Retention"): when a policy keeps an incremental but
//! not every backup its chain goes through, the kept incremental takes in the changes of the
//! parents that go: its files are rebased (`qemu-img rebase`, safe mode) onto its nearest kept
//! ancestor's files, or onto nothing (it becomes a full backup), and its manifest is updated
//! (kind, parent, each file's backing, SHA-256 and size). Only then are the parents removed.
//!
//! The chain is verified (every SHA-256) before a merge: a damaged parent is never merged in.
//! A rebase in safe mode never changes what the image shows: it writes the clusters where the
//! old chain and the new one differ, then the header. So the backup's data stays whole at every
//! instant; only its manifest's checksums are stale until the merge ends. A marker file
//! (`.merging`, naming the new parent) is written first and removed last: a merge interrupted by
//! a crash or a full target is finished by the next prune ([`finish_interrupted`]; every step is
//! idempotent), and meanwhile verify and restore say so instead of calling the backup broken.

use std::io::Write;

use keel_api::backup::BackupKind;
use serde::{Deserialize, Serialize};

use super::engine::Engine;
use super::store;
use crate::error::{Error, Result};

/// The marker in a backup's directory while it is being merged.
pub const MERGING: &str = ".merging";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// The kept backup it is merged onto; `None`: into a full backup.
    onto: Option<String>,
}

/// Merge backup `id` of VM `vmid` on the directory target at `target_path` onto its ancestor
/// `onto`, or into a full backup (`None`). Its chain must be whole; `onto` must be in it.
pub fn merge(
    eng: &Engine,
    target_path: &str,
    vmid: u32,
    id: &str,
    onto: Option<&str>,
    log: &dyn Fn(String),
) -> Result<()> {
    // every file of the chain is checked first: a merge would otherwise carry a bit flipped in
    // a parent into the merged file under a fresh checksum
    let ch = store::verify_chain(target_path, vmid, id, &|_, _, _| {}).map_err(|e| {
        Error::Conflict(format!(
            "backup {id} is not merged, and nothing is removed: its chain does not verify ({e})"
        ))
    })?;
    let Some(me) = ch.last() else {
        return Err(Error::Internal(format!("backup {id}: an empty chain")));
    };
    if me.kind != BackupKind::Incremental {
        return Err(Error::Conflict(format!(
            "backup {id} is a full backup: there is nothing to merge into it"
        )));
    }
    if let Some(o) = onto {
        if !ch[..ch.len() - 1].iter().any(|m| m.id == o) {
            return Err(Error::Conflict(format!(
                "backup {id} cannot be merged onto {o}: {o} is not in its chain"
            )));
        }
    }
    let dir = store::vm_dir(target_path, vmid).join(id);
    let marker = serde_json::to_vec(&Marker {
        onto: onto.map(str::to_string),
    })
    .map_err(|e| Error::Internal(format!("merge marker: {e}")))?;
    let mut f = std::fs::File::create(dir.join(MERGING))?;
    f.write_all(&marker)?;
    f.sync_all()?;
    store::fsync_path(&dir)?;
    finish(eng, target_path, vmid, id, onto, log)
}

/// Rebase every file, rewrite the manifest, remove the marker. Idempotent: a file already on
/// its new backing is left as it is by the rebase.
fn finish(
    eng: &Engine,
    target_path: &str,
    vmid: u32,
    id: &str,
    onto: Option<&str>,
    log: &dyn Fn(String),
) -> Result<()> {
    let vdir = store::vm_dir(target_path, vmid);
    let dir = vdir.join(id);
    let mut m = store::read_manifest(&dir)?;
    let parent = match onto {
        Some(p) => Some(store::read_manifest(&vdir.join(p))?),
        None => None,
    };
    for d in m.disks.iter_mut() {
        let backing = match &parent {
            Some(pm) => {
                let f = pm
                    .disks
                    .iter()
                    .find(|x| x.target == d.target)
                    .ok_or_else(|| {
                        Error::Conflict(format!(
                            "backup {id} cannot be merged onto {}: it has no disk {}",
                            pm.id, d.target
                        ))
                    })?;
                Some(format!("../{}/{}", pm.id, f.file))
            }
            None => None,
        };
        let path = dir.join(&d.file);
        log(format!(
            "merging {id}/{} onto {}",
            d.file,
            backing
                .as_deref()
                .unwrap_or("nothing (it becomes a full backup)")
        ));
        eng.rebase(&path.display().to_string(), backing.as_deref())
            .map_err(|e| {
                Error::Conflict(format!(
                    "merging backup {id} failed at {}: {e}. Its data is whole (a rebase only adds what the removed parents held); free space on the target if it is full, then prune again: the next prune finishes the merge",
                    d.file
                ))
            })?;
        store::fsync_path(&path)?;
        let (sum, len) = store::sha256_file(&path)?;
        d.sha256 = sum;
        d.file_size = len;
        d.backing = backing;
    }
    m.parent = onto.map(str::to_string);
    m.kind = if onto.is_some() {
        BackupKind::Incremental
    } else {
        BackupKind::Full
    };
    store::rewrite_manifest(&dir, &m)?;
    std::fs::remove_file(dir.join(MERGING))?;
    store::fsync_path(&dir)?;
    Ok(())
}

/// Finish the merges a crash or an error interrupted; returns their backups' ids.
pub fn finish_interrupted(
    eng: &Engine,
    target_path: &str,
    vmid: u32,
    log: &dyn Fn(String),
) -> Result<Vec<String>> {
    let vdir = store::vm_dir(target_path, vmid);
    let mut out = Vec::new();
    for m in store::list(target_path, vmid) {
        let mp = vdir.join(&m.id).join(MERGING);
        let Ok(text) = std::fs::read(&mp) else {
            continue;
        };
        let mk: Marker = serde_json::from_slice(&text).map_err(|e| {
            Error::Conflict(format!(
                "{} is not readable ({e}): remove it only after checking backup {} by hand",
                mp.display(),
                m.id
            ))
        })?;
        log(format!(
            "finishing the interrupted merge of backup {} onto {}",
            m.id,
            mk.onto.as_deref().unwrap_or("nothing")
        ));
        finish(eng, target_path, vmid, &m.id, mk.onto.as_deref(), log)?;
        out.push(m.id);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! On real qemu-img and qemu-io (qemu-utils, which the README's commands install): a chain
    //! of four backups, each layer writing its own pattern, merged as retention would.
    use super::*;
    use keel_api::backup::{BackupDisk, BackupManifest};
    use std::path::Path;
    use std::process::Command;

    fn run(args: &[&str]) {
        let o = Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]));
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Backup `id` with one disk `vda.qcow2` backed by `parent`'s, after `write` (offset KiB,
    /// pattern) into it.
    fn layer(vdir: &Path, id: &str, parent: Option<&str>, t: i64, write: (u32, u8)) {
        let dir = vdir.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("vda.qcow2");
        let fs = f.display().to_string();
        let backing = parent.map(|p| format!("../{p}/vda.qcow2"));
        match &backing {
            Some(b) => run(&[
                "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", b, &fs,
            ]),
            None => run(&["qemu-img", "create", "-q", "-f", "qcow2", &fs, "4M"]),
        }
        let cmd = format!("write -P {} {}k 64k", write.1, write.0);
        run(&["qemu-io", "-f", "qcow2", "-c", &cmd, &fs]);
        let (sha256, file_size) = store::sha256_file(&f).unwrap();
        let m = BackupManifest {
            version: 1,
            id: id.into(),
            vmid: 100,
            node: "n1".into(),
            kind: if parent.is_some() {
                BackupKind::Incremental
            } else {
                BackupKind::Full
            },
            parent: parent.map(str::to_string),
            checkpoint: Some(format!("keel-100-{id}")),
            live: true,
            start_time: t,
            end_time: t + 1,
            spec: serde_json::json!({}),
            domain_xml: String::new(),
            disks: vec![BackupDisk {
                target: "vda".into(),
                file: "vda.qcow2".into(),
                format: "qcow2".into(),
                source_format: "qcow2".into(),
                virtual_size: 4 << 20,
                file_size,
                sha256,
                backing,
                source_path: "/p/vda.qcow2".into(),
            }],
        };
        std::fs::write(
            dir.join(store::MANIFEST),
            serde_json::to_vec_pretty(&m).unwrap(),
        )
        .unwrap();
    }

    /// The real runner (qemu-img); the libvirt URI is not used by merges.
    fn engine() -> Engine<'static> {
        Engine {
            runner: &keel_runner::System,
            uri: "test:///default".into(),
        }
    }

    fn raw(img: &Path, out: &Path) -> Vec<u8> {
        run(&[
            "qemu-img",
            "convert",
            "-O",
            "raw",
            &img.display().to_string(),
            &out.display().to_string(),
        ]);
        std::fs::read(out).unwrap()
    }

    #[test]
    fn merged_backups_keep_their_content_without_the_removed_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().display().to_string();
        let vdir = store::vm_dir(&target, 100);
        // F <- I1 <- I2 <- I3, I1 overwriting part of F's pattern
        layer(&vdir, "F", None, 1, (0, 0x11));
        layer(&vdir, "I1", Some("F"), 2, (32, 0x22));
        layer(&vdir, "I2", Some("I1"), 3, (256, 0x33));
        layer(&vdir, "I3", Some("I2"), 4, (512, 0x44));
        let want2 = raw(&vdir.join("I2/vda.qcow2"), &tmp.path().join("r2"));
        let want3 = raw(&vdir.join("I3/vda.qcow2"), &tmp.path().join("r3"));
        let eng = engine();
        let lines = std::cell::RefCell::new(Vec::new());
        let log = |l: String| lines.borrow_mut().push(l);
        // keep F and I2 and I3: I2 merged onto F (taking I1 in); then I3 into a full backup
        // a damaged parent is never merged in: refused, nothing written
        let victim = vdir.join("I1/vda.qcow2");
        let good = std::fs::read(&victim).unwrap();
        let mut bad = good.clone();
        let n = bad.len() - 100;
        bad[n] ^= 0xff;
        std::fs::write(&victim, &bad).unwrap();
        let e = merge(&eng, &target, 100, "I2", Some("F"), &log).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        assert!(!vdir.join("I2").join(MERGING).exists());
        std::fs::write(&victim, &good).unwrap();
        merge(&eng, &target, 100, "I2", Some("F"), &log).unwrap();
        merge(&eng, &target, 100, "I3", None, &log).unwrap();
        // a full backup and an ancestor outside the chain are refused
        assert!(merge(&eng, &target, 100, "F", None, &log).is_err());
        assert!(merge(&eng, &target, 100, "I2", Some("I3"), &log).is_err());
        prune_dir(&vdir, "I1");
        assert_eq!(
            raw(&vdir.join("I2/vda.qcow2"), &tmp.path().join("r")),
            want2
        );
        let m2 = store::read_manifest(&vdir.join("I2")).unwrap();
        assert_eq!(m2.parent.as_deref(), Some("F"));
        assert_eq!(m2.kind, BackupKind::Incremental);
        assert_eq!(m2.disks[0].backing.as_deref(), Some("../F/vda.qcow2"));
        let m3 = store::read_manifest(&vdir.join("I3")).unwrap();
        assert_eq!((m3.kind, m3.parent.clone()), (BackupKind::Full, None));
        assert_eq!(m3.disks[0].backing, None);
        // every SHA-256 matches again, content unchanged, and I3 stands alone
        store::verify_chain(&target, 100, "I2", &|_, _, _| {}).unwrap();
        store::verify_chain(&target, 100, "I3", &|_, _, _| {}).unwrap();
        prune_dir(&vdir, "I2");
        prune_dir(&vdir, "F");
        assert_eq!(
            raw(&vdir.join("I3/vda.qcow2"), &tmp.path().join("r")),
            want3
        );
        assert!(lines
            .borrow()
            .iter()
            .any(|l| l.contains("becomes a full backup")));
    }

    #[test]
    fn an_interrupted_merge_is_refused_by_verify_then_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().display().to_string();
        let vdir = store::vm_dir(&target, 100);
        layer(&vdir, "F", None, 1, (0, 0x11));
        layer(&vdir, "I1", Some("F"), 2, (64, 0x22));
        layer(&vdir, "I2", Some("I1"), 3, (128, 0x33));
        let want = raw(&vdir.join("I2/vda.qcow2"), &tmp.path().join("r"));
        // the crash: the marker written, the file rebased, the manifest not yet updated
        std::fs::write(vdir.join("I2").join(MERGING), br#"{"onto":"F"}"#).unwrap();
        run(&[
            "qemu-img",
            "rebase",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            "../F/vda.qcow2",
            &vdir.join("I2/vda.qcow2").display().to_string(),
        ]);
        let e = store::verify_chain(&target, 100, "I2", &|_, _, _| {}).unwrap_err();
        assert!(e.to_string().contains("merge of backup I2"), "{e}");
        let eng = engine();
        let done = finish_interrupted(&eng, &target, 100, &|_| {}).unwrap();
        assert_eq!(done, vec!["I2".to_string()]);
        assert!(!vdir.join("I2").join(MERGING).exists());
        store::verify_chain(&target, 100, "I2", &|_, _, _| {}).unwrap();
        prune_dir(&vdir, "I1");
        assert_eq!(raw(&vdir.join("I2/vda.qcow2"), &tmp.path().join("r")), want);
    }

    fn prune_dir(vdir: &Path, id: &str) {
        crate::backup::prune::delete_dir(vdir, id).unwrap();
    }
}
