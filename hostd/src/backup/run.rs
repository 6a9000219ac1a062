//! Backup now, verify and restore: the decisions and their order. Synchronous: run inside a
//! task on the blocking pool.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_api::backup::{
    BackupCreate, BackupDisk, BackupInfo, BackupKind, BackupManifest, RestoreRequest,
};
use keel_api::vm::{DiskFormat, VmSpec};

use super::engine::{backup_xml, checkpoint_xml, domain_disks, DomDisk, Engine};
use super::{sftp, store, targets};
use crate::error::{Error, Result};
use crate::hv::DomainRow;
use crate::tasks::TaskHandle;
use crate::{vms, Node};

/// Checkpoints Keel creates are named `keel-<vmid>-<backup id>`.
fn checkpoint_name(vmid: u32, id: &str) -> String {
    format!("keel-{vmid}-{id}")
}

pub(super) fn engine(node: &Node) -> Engine<'static> {
    Engine {
        runner: &keel_runner::System,
        uri: node.cfg.libvirt_uri.clone(),
    }
}

/// What the next backup of a running VM can be, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Incremental since this parent backup and its checkpoint.
    Incremental { parent: String, checkpoint: String },
    /// Full, with the reason when an incremental was not possible (None: the first backup
    /// or asked for).
    Full(Option<String>),
}

/// Decide full or incremental (pure: the facts are gathered by the caller).
pub fn plan(
    want_full: bool,
    running: bool,
    disks: &[(DomDisk, u64)],
    last: Option<&BackupManifest>,
    checkpoints: &[String],
) -> Plan {
    if want_full {
        return Plan::Full(None);
    }
    let Some(last) = last else {
        return Plan::Full(None);
    };
    let why = |s: String| Plan::Full(Some(s));
    if !running {
        return why("the VM is stopped: its disks are copied whole".into());
    }
    if let Some(d) = disks.iter().find(|(d, _)| d.format != "qcow2") {
        return why(format!(
            "disk {} is {}: only qcow2 disks carry the dirty bitmaps incrementals need",
            d.0.target, d.0.format
        ));
    }
    let Some(cp) = &last.checkpoint else {
        return why(format!(
            "the previous backup {} was a copy of the stopped VM and started no checkpoint",
            last.id
        ));
    };
    if !checkpoints.contains(cp) {
        return why(format!(
            "checkpoint {cp} of the previous backup {} is gone from libvirt",
            last.id
        ));
    }
    let same = disks.len() == last.disks.len()
        && disks.iter().zip(&last.disks).all(|((d, size), b)| {
            d.target == b.target && d.path == b.source_path && *size == b.virtual_size
        });
    if !same {
        return why(format!(
            "the VM's disks changed since the previous backup {} (added, removed, replaced or resized)",
            last.id
        ));
    }
    Plan::Incremental {
        parent: last.id.clone(),
        checkpoint: cp.clone(),
    }
}

/// Check a backup request before its task exists; returns the target's directory.
pub fn check_create(node: &Node, vmid: u32, req: &BackupCreate) -> Result<String> {
    let row = vms::find(node, vmid)?;
    let t = targets::usable(node, &req.target)?;
    // an sftp target: written into local staging first, uploaded once complete
    let path = match targets::remote(node, &t)? {
        Some(_) => {
            let s = targets::staging(node, &t.name);
            std::fs::create_dir_all(&s)?;
            s.display().to_string()
        }
        None => t.path,
    };
    if row.state.is_active() {
        if let Some(why) = qemu_cannot_see(&row.name, &path) {
            return Err(Error::Conflict(why));
        }
    }
    Ok(path)
}

/// A live backup's files are opened by the VM's QEMU, inside the private mount namespace
/// libvirt gives it: a file system mounted after the VM started may not be visible there
/// (private mount propagation). Checked through `/proc/<qemu pid>/root` when libvirt's pid
/// file is readable.
fn qemu_cannot_see(dom: &str, path: &str) -> Option<String> {
    let pid = std::fs::read_to_string(format!("/run/libvirt/qemu/{dom}.pid")).ok()?;
    let pid: u32 = pid.trim().parse().ok()?;
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    if !root.exists() {
        return None;
    }
    let inside = root.join(path.trim_start_matches('/'));
    let same = |a: &Path, b: &Path| {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    };
    if same(&inside, Path::new(path)) {
        return None;
    }
    Some(format!(
        "the VM's QEMU (pid {pid}) does not see the target directory {path}: its file system was probably mounted after the VM started and mount propagation into libvirt's QEMU namespace is private; restart the VM or mount the target before starting VMs"
    ))
}

pub fn create(
    node: &Node,
    vmid: u32,
    req: &BackupCreate,
    target_path: &str,
    task: &TaskHandle,
) -> Result<()> {
    let row = vms::find(node, vmid)?;
    let running = row.state.is_active();
    let eng = engine(node);
    let remote = targets::remote_named(node, &req.target)?;
    let xml = node.hv.domain_xml(&row.name, false)?;
    let spec = vms::config(node, vmid)?.spec;
    let disks = domain_disks(&xml)?;
    if disks.is_empty() {
        return Err(Error::Conflict(format!(
            "VM {vmid} has no disks to back up"
        )));
    }
    let mut sized = Vec::new();
    for d in &disks {
        sized.push((d.clone(), eng.virtual_size(&d.path)?));
    }
    let vdir = store::vm_dir(target_path, vmid);
    std::fs::create_dir_all(&vdir)?;
    remove_stale_partials(&vdir, task);
    if remote.is_some() {
        // the staging directory only holds a backup until its upload: anything left there
        // is from an interrupted run
        if let Ok(rd) = std::fs::read_dir(&vdir) {
            for e in rd.flatten() {
                task.log(format!(
                    "removing {} left in staging by an interrupted upload",
                    e.path().display()
                ));
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let start = crate::db::now();
    let existing = if running {
        eng.checkpoints(&row.name)?
    } else {
        Vec::new()
    };
    let id = store::new_id(&vdir, start, &|id| {
        existing.contains(&checkpoint_name(vmid, id))
    });
    let partial = vdir.join(format!(".partial-{id}"));
    std::fs::create_dir(&partial)?;
    task.log(format!(
        "backup {id} of VM {vmid} ({}) to {target_path} ({}, {} disk(s))",
        row.name,
        if running {
            "running: live"
        } else {
            "stopped: copy"
        },
        disks.len()
    ));
    let r = (|| -> Result<BackupManifest> {
        // an sftp target's backups are listed on the remote host (a connection that also
        // fails early, before any data is copied, when the host is unreachable)
        let conn = match &remote {
            Some(r) => Some(r.connect()?),
            None => None,
        };
        let all = match &conn {
            Some(c) => c.list(vmid),
            None => store::list(target_path, vmid),
        };
        let cps = &existing;
        let mut p = plan(req.full, running, &sized, all.last(), cps);
        if let (Plan::Incremental { parent, .. }, Some(c), Some(r)) = (&p, &conn, &remote) {
            // the parent is uploaded, never read here: its chain must be whole over there
            if let Err(e) = c.chain(vmid, parent) {
                p = Plan::Full(Some(format!(
                    "the chain of the previous backup {parent} on {} is not whole ({e}): an incremental on it could not be restored",
                    r.loc
                )));
            }
        }
        drop(conn);
        let (kind, parent, files, checkpoint) = if running {
            live(
                node, &eng, &row.name, vmid, &id, &partial, &sized, p, &all, task,
            )?
        } else {
            if let Plan::Full(Some(why)) = &p {
                task.log(format!("full backup: {why}"));
            }
            // iscsi-lvm disks are active only where their VM runs: here, for the copy
            let paths: Vec<String> = sized.iter().map(|(d, _)| d.path.clone()).collect();
            let held = node
                .hv
                .hold_disks(&format!("the backup of VM {vmid}"), &paths)?;
            let files = cold(&eng, &partial, &sized, task);
            node.hv.unhold_disks(&held);
            (BackupKind::Full, None, files?, None)
        };
        let mut bdisks = Vec::new();
        for ((d, size), file) in sized.iter().zip(files) {
            let fp = partial.join(&file);
            let (sum, len) = store::sha256_file(&fp)?;
            bdisks.push(BackupDisk {
                target: d.target.clone(),
                file: file.clone(),
                format: "qcow2".into(),
                source_format: d.format.clone(),
                virtual_size: *size,
                file_size: len,
                sha256: sum,
                backing: parent.as_ref().map(|p| format!("../{p}/{file}")),
                source_path: d.path.clone(),
            });
        }
        Ok(BackupManifest {
            version: 1,
            id: id.clone(),
            vmid,
            node: node.cfg.node.clone(),
            kind,
            parent,
            checkpoint,
            live: running,
            start_time: start,
            end_time: crate::db::now(),
            spec: serde_json::to_value(&spec).map_err(|e| Error::Internal(format!("spec: {e}")))?,
            domain_xml: xml.clone(),
            disks: bdisks,
        })
    })()
    .and_then(|m| {
        task.progress(0.95);
        store::finalize(&partial, &vdir, &m)?;
        Ok(m)
    });
    let m = match r {
        Ok(m) => m,
        Err(e) => {
            task.log(format!(
                "backup failed: {e}; removing the incomplete {}",
                partial.display()
            ));
            if let Err(x) = std::fs::remove_dir_all(&partial) {
                task.log(format!("warning: cannot remove {}: {x}", partial.display()));
            }
            if running {
                prune_checkpoints(node, &eng, &row.name, vmid, task);
            }
            return Err(e);
        }
    };
    if let Some(r) = &remote {
        let local = vdir.join(&m.id);
        let up = upload(r, &local, vmid, &m, task);
        if let Err(x) = std::fs::remove_dir_all(&local) {
            task.log(format!("warning: cannot remove {}: {x}", local.display()));
        }
        if let Err(e) = up {
            task.log(format!(
                "backup failed: the upload to {} did not complete: {e}; nothing was listed on the target",
                r.loc
            ));
            if running {
                prune_checkpoints(node, &eng, &row.name, vmid, task);
            }
            return Err(e);
        }
        // the checkpoint the next incremental to this target starts from, kept by
        // prune_checkpoints without asking the remote host
        let rec = remote_checkpoint_file(node, &req.target, vmid);
        let written = match &m.checkpoint {
            Some(cp) => std::fs::write(&rec, cp),
            None => std::fs::remove_file(&rec).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }),
        };
        if let Err(e) = written {
            task.log(format!(
                "warning: cannot record checkpoint in {} ({e}): the next backup to this target is full",
                rec.display()
            ));
        }
    }
    let size: u64 = m.disks.iter().map(|d| d.file_size).sum();
    task.log(format!(
        "backup {} complete: {} backup, {} bytes stored, SHA-256 recorded in manifest.json",
        m.id,
        match m.kind {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
        },
        size
    ));
    if running {
        prune_checkpoints(node, &eng, &row.name, vmid, task);
    }
    Ok(())
}

/// Upload a complete local backup to an sftp target (files first, manifest last, the
/// directory renamed into place at the end), with progress and rate.
fn upload(
    r: &sftp::Remote,
    local: &Path,
    vmid: u32,
    m: &BackupManifest,
    task: &TaskHandle,
) -> Result<()> {
    task.log(format!(
        "uploading backup {} to {} (host key {})",
        m.id, r.loc, r.fingerprint
    ));
    let conn = r.connect()?;
    let t0 = Instant::now();
    let last = std::cell::Cell::new(Instant::now());
    conn.upload(local, vmid, m, &|done, total, rate| {
        task.progress(0.9 + 0.09 * done as f64 / total.max(1) as f64);
        if last.get().elapsed() >= Duration::from_secs(5) {
            task.log(format!(
                "uploaded {done} of {total} bytes ({:.1} MiB/s)",
                rate / 1048576.0
            ));
            last.set(Instant::now());
        }
    })?;
    task.log(format!(
        "uploaded to {} in {:.1}s; the local staging copy is removed",
        r.loc,
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Download the chain ending at `id` from an sftp target into a fresh local directory
/// (removed by the caller), with progress mapped onto `[0, span]`.
#[allow(clippy::too_many_arguments)]
fn download(
    node: &Node,
    r: &sftp::Remote,
    target: &str,
    what: &str,
    vmid: u32,
    id: &str,
    span: f64,
    task: &TaskHandle,
) -> Result<PathBuf> {
    let dir = targets::staging(node, target)
        .join(format!(".{what}-{vmid}-{id}-{}", rand::random::<u32>()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    task.log(format!(
        "downloading the chain of backup {id} from {} into {}",
        r.loc,
        dir.display()
    ));
    let t0 = Instant::now();
    let conn = r.connect()?;
    let res = conn.fetch_chain(vmid, id, &dir, &|done, total, _| {
        task.progress(span * done as f64 / total.max(1) as f64)
    });
    if let Err(e) = res {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    task.log(format!("downloaded in {:.1}s", t0.elapsed().as_secs_f64()));
    Ok(dir)
}

fn remove_stale_partials(vdir: &Path, task: &TaskHandle) {
    if let Ok(rd) = std::fs::read_dir(vdir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".partial-") {
                task.log(format!("removing {n} left by an interrupted backup"));
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

type LiveOut = (BackupKind, Option<String>, Vec<String>, Option<String>);

/// A running VM: libvirt's push backup job, a checkpoint created in the same call (qcow2
/// disks), incrementals rebased onto their parent's files at once.
#[allow(clippy::too_many_arguments)]
fn live(
    node: &Node,
    eng: &Engine,
    dom: &str,
    vmid: u32,
    id: &str,
    partial: &Path,
    disks: &[(DomDisk, u64)],
    plan: Plan,
    all: &[BackupManifest],
    task: &TaskHandle,
) -> Result<LiveOut> {
    let files: Vec<String> = disks
        .iter()
        .map(|(d, _)| format!("{}.qcow2", d.target))
        .collect();
    let targets_files: Vec<(String, String)> = disks
        .iter()
        .zip(&files)
        .map(|((d, _), f)| (d.target.clone(), partial.join(f).display().to_string()))
        .collect();
    let bitmaps = disks.iter().all(|(d, _)| d.format == "qcow2");
    let cp = bitmaps.then(|| checkpoint_name(vmid, id));
    let cp_xml = cp.as_ref().map(|c| {
        checkpoint_xml(
            c,
            &disks
                .iter()
                .map(|(d, _)| d.target.clone())
                .collect::<Vec<_>>(),
        )
    });
    if !bitmaps {
        task.log("a disk is not qcow2: no checkpoint, every backup of this VM is full");
    }
    let xml_dir = node.cfg.state_dir.join("run");
    std::fs::create_dir_all(&xml_dir)?;
    let bfile = xml_dir.join(format!("backup-{vmid}-{id}.xml"));
    let cfile = xml_dir.join(format!("checkpoint-{vmid}-{id}.xml"));
    let begin = |incr: Option<&str>| -> Result<()> {
        std::fs::write(&bfile, backup_xml(&targets_files, incr))?;
        let cf = match &cp_xml {
            Some(x) => {
                std::fs::write(&cfile, x)?;
                cfile.display().to_string()
            }
            None => String::new(),
        };
        let r = if cf.is_empty() {
            eng.runner
                .run_ok(
                    &keel_runner::Cmd::argv(&[
                        "virsh",
                        "-q",
                        "-c",
                        eng.uri.as_str(),
                        "backup-begin",
                        dom,
                        &bfile.display().to_string(),
                    ])
                    .timeout(Duration::from_secs(60)),
                )
                .map(|_| ())
                .map_err(|e| Error::Internal(format!("libvirt refused the backup: {e}")))
        } else {
            eng.backup_begin(dom, &bfile.display().to_string(), &cf)
        };
        let _ = std::fs::remove_file(&bfile);
        let _ = std::fs::remove_file(&cfile);
        r
    };
    let (mut kind, mut parent) = (BackupKind::Full, None);
    // the guest's file systems are frozen only until the job has begun (QEMU then copies
    // the disks as they were at that instant); the guard thaws on every way out
    let state = node.hv.domain(dom)?.state;
    let frozen = crate::agent::freeze(node, vmid, dom, state, task);
    match &plan {
        Plan::Incremental {
            parent: p,
            checkpoint,
        } => {
            task.log(format!(
                "incremental since backup {p} (checkpoint {checkpoint})"
            ));
            match begin(Some(checkpoint)) {
                Ok(()) => {
                    kind = BackupKind::Incremental;
                    parent = Some(p.clone());
                }
                Err(e) => {
                    // after an unclean QEMU exit (kill -9, fencing) the bitmaps are left
                    // inconsistent and QEMU refuses every incremental until a full backup
                    task.log(format!(
                        "full backup instead: the checkpoint chain is broken, libvirt refused the incremental ({e}); bitmaps are inconsistent after an unclean QEMU exit (killed, crashed or fenced)"
                    ));
                    clear_files(partial, &files);
                    begin(None)?;
                }
            }
        }
        Plan::Full(why) => {
            match why {
                Some(w) => task.log(format!("full backup: {w}")),
                None if all.is_empty() => {
                    task.log("full backup: the first of this VM on this target")
                }
                None => task.log("full backup (asked for)"),
            }
            begin(None)?;
        }
    }
    frozen.thaw();
    let need = disks.iter().map(|(_, s)| *s).sum();
    wait_job(eng, dom, partial, need, task)?;
    if let Some(p) = &parent {
        for f in &files {
            let backing = format!("../{p}/{f}");
            eng.rebase_unsafe(&partial.join(f).display().to_string(), &backing)?;
        }
        task.log(format!(
            "incremental files rebased onto backup {p} (they were written backed by the live disk)"
        ));
    }
    Ok((kind, parent, files, cp))
}

fn clear_files(partial: &Path, files: &[String]) {
    for f in files {
        let _ = std::fs::remove_file(partial.join(f));
    }
}

/// Follow the backup job to its end, with progress; its failure is the task's error.
fn wait_job(eng: &Engine, dom: &str, out_dir: &Path, need: u64, task: &TaskHandle) -> Result<()> {
    let t0 = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let j = eng.job(dom)?;
        if j.kind == 0 || j.kind >= 3 {
            break;
        }
        if j.total > 0 {
            task.progress(0.05 + 0.85 * (j.processed as f64 / j.total as f64));
            if last_log.elapsed() >= Duration::from_secs(5) {
                let rate = j.processed as f64 / t0.elapsed().as_secs_f64().max(0.001);
                task.log(format!(
                    "{} of {} bytes ({:.1} MiB/s)",
                    j.processed,
                    j.total,
                    rate / 1048576.0
                ));
                last_log = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let c = eng.completed_job(dom)?;
    match c.kind {
        3 => {
            let bytes = c.processed.max(c.total);
            task.log(if bytes > 0 {
                format!(
                    "backup job completed: {bytes} bytes in {:.1}s",
                    t0.elapsed().as_secs_f64()
                )
            } else {
                format!("backup job completed in {:.1}s", t0.elapsed().as_secs_f64())
            });
            Ok(())
        }
        4 | 5 => {
            // libvirt 9.0 often reports no reason for a failed backup job; the usual one is
            // a full target, which the file system tells
            let full = super::targets::space(out_dir)
                .filter(|(_, avail)| *avail < need)
                .map(|(_, avail)| {
                    format!(
                        "probably no space left on the target: its file system has {avail} bytes free at {} for disks of {need} bytes; free space or use another target",
                        out_dir.display()
                    )
                });
            let why = match (c.error, full) {
                (Some(e), Some(f)) => format!("{e}; {f}"),
                (Some(e), None) => e,
                (None, Some(f)) => f,
                (None, None) => "libvirt gave no reason (see libvirtd's log)".into(),
            };
            Err(Error::Conflict(format!("the backup job failed: {why}")))
        }
        k => Err(Error::Internal(format!(
            "the backup job ended in an unknown state ({k})"
        ))),
    }
}

/// A stopped VM: each disk copied with qemu-img into a qcow2 file.
fn cold(
    eng: &Engine,
    partial: &Path,
    disks: &[(DomDisk, u64)],
    task: &TaskHandle,
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for (i, (d, size)) in disks.iter().enumerate() {
        let f = format!("{}.qcow2", d.target);
        task.log(format!(
            "copying {} ({}, {size} bytes) with qemu-img convert",
            d.path, d.format
        ));
        eng.convert(
            &d.path,
            &d.format,
            &partial.join(&f).display().to_string(),
            "qcow2",
            false,
        )?;
        task.progress(0.05 + 0.85 * ((i + 1) as f64 / disks.len() as f64));
        files.push(f);
    }
    Ok(files)
}

/// This node's record of the checkpoint of the last backup it uploaded of a VM to an sftp
/// target (beside the target's staging directory, which is emptied before each backup).
fn remote_checkpoint_file(node: &Node, target: &str, vmid: u32) -> PathBuf {
    targets::staging(node, target).join(format!("{vmid}.checkpoint"))
}

/// Remove Keel's checkpoints that no target's chain needs any more: every one except the
/// newest backup's checkpoint on each target (a directory target's read from its listing, an
/// sftp target's from this node's record of its last upload). Oldest first (removing a root
/// checkpoint only drops its bitmap, no merge), one at a time, never `--metadata` (which
/// crashed libvirtd 9.0 on a broken chain); a refusal stops the cleanup with a warning and
/// leaves the rest.
fn prune_checkpoints(node: &Node, eng: &Engine, dom: &str, vmid: u32, task: &TaskHandle) {
    let keep: Vec<String> = targets::list(node)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| match targets::remote(node, t) {
            Ok(Some(_)) => std::fs::read_to_string(remote_checkpoint_file(node, &t.name, vmid))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            Ok(None) => store::list(&t.path, vmid).pop()?.checkpoint,
            // a target whose definition cannot be read keeps nothing
            Err(_) => None,
        })
        .collect();
    let cps = match eng.checkpoints(dom) {
        Ok(c) => c,
        Err(e) => {
            task.log(format!("warning: cannot list checkpoints: {e}"));
            return;
        }
    };
    let prefix = format!("keel-{vmid}-");
    for c in cps
        .iter()
        .filter(|c| c.starts_with(&prefix) && !keep.contains(c))
    {
        match eng.delete_checkpoint(dom, c) {
            Ok(()) => task.log(format!("removed checkpoint {c} (no chain needs it)")),
            // after an unclean QEMU exit the bitmap itself is gone from the image: only
            // libvirt's record of it is left, and dropping that record (this one checkpoint,
            // no --children) touches no data
            Err(e) if e.to_string().contains("not found") => {
                match eng.delete_checkpoint_metadata(dom, c) {
                    Ok(()) => task.log(format!(
                        "removed checkpoint {c}: its bitmap was already gone from the disk (unclean QEMU exit), so only libvirt's record of it was dropped"
                    )),
                    Err(e) => {
                        task.log(format!(
                            "warning: checkpoint {c} could not be removed ({e}); left in place"
                        ));
                        return;
                    }
                }
            }
            Err(e) => {
                task.log(format!(
                    "warning: checkpoint {c} could not be removed ({e}); left in place"
                ));
                return;
            }
        }
    }
}

// ------------------------------------------------------------------ list, verify, restore

fn info(node: &Node, target: &str, m: &BackupManifest) -> BackupInfo {
    let v = targets::verify_state(node, target, m.vmid, &m.id)
        .ok()
        .flatten();
    BackupInfo {
        id: m.id.clone(),
        vmid: m.vmid,
        target: target.to_string(),
        kind: m.kind,
        parent: m.parent.clone(),
        live: m.live,
        start_time: m.start_time,
        end_time: m.end_time,
        size: m.disks.iter().map(|d| d.file_size).sum(),
        verify_state: match &v {
            None => "unverified".into(),
            Some((_, true, _)) => "ok".into(),
            Some((_, false, _)) => "broken".into(),
        },
        verify_time: v.as_ref().map(|x| x.0),
        verify_error: v.and_then(|x| x.2),
    }
}

/// A VM's backups on one target or on every target.
pub fn list(node: &Node, vmid: u32, target: Option<&str>) -> Result<Vec<BackupInfo>> {
    let ts = match target {
        Some(t) => vec![targets::get(node, t)?],
        None => targets::list(node)?,
    };
    let mut out = Vec::new();
    for t in ts {
        let ms = match manifests(node, &t, vmid) {
            Ok(m) => m,
            // one unreachable remote target does not hide the others' backups; the target
            // list shows why it is not usable
            Err(_) if target.is_none() => continue,
            Err(e) => return Err(e),
        };
        for m in ms {
            out.push(info(node, &t.name, &m));
        }
    }
    Ok(out)
}

/// The complete backups of a VM on a target, oldest first, wherever the target is.
pub fn manifests(
    node: &Node,
    t: &keel_api::backup::BackupTarget,
    vmid: u32,
) -> Result<Vec<BackupManifest>> {
    match targets::remote(node, t)? {
        Some(r) => Ok(r.connect()?.list(vmid)),
        None => Ok(store::list(&t.path, vmid)),
    }
}

/// Whether backup `id` of a VM is on a target (its directory is there).
pub fn exists(
    node: &Node,
    t: &keel_api::backup::BackupTarget,
    vmid: u32,
    id: &str,
) -> Result<bool> {
    match targets::remote(node, t)? {
        Some(r) => Ok(r
            .connect()?
            .sftp
            .stat(&Path::new(&r.loc.path).join(vmid.to_string()).join(id))
            .is_ok_and(|s| s.is_dir())),
        None => Ok(store::vm_dir(&t.path, vmid).join(id).is_dir()),
    }
}

pub fn check_backup_id(id: &str) -> Result<()> {
    if !keel_api::backup::valid_backup_id(id) {
        return Err(Error::validation(
            "backup",
            format!("{id:?} is not a backup id (`keel backup list` shows them)"),
        ));
    }
    Ok(())
}

/// Re-read the chain ending at `id`; the result is recorded (shown by the listing).
pub fn verify(node: &Node, target: &str, vmid: u32, id: &str, task: &TaskHandle) -> Result<()> {
    let t = targets::get(node, target)?;
    task.log(format!("verifying backup {id} of VM {vmid} on {target}"));
    let remote = targets::remote(node, &t)?;
    // an sftp target: every file is read back from the remote host, then checked here
    let (path, fetched, span) = match &remote {
        Some(r) => match download(node, r, target, "verify", vmid, id, 0.5, task) {
            Ok(d) => (d.display().to_string(), Some(d), 0.5),
            Err(e) => {
                let msg = e.to_string();
                targets::record_verify(node, target, vmid, id, false, Some(&msg))?;
                return Err(e);
            }
        },
        None => (t.path.clone(), None, 0.0),
    };
    let r = store::verify_chain(&path, vmid, id, &|done, total, what| {
        task.log(format!("checked {what}"));
        task.progress(span + (1.0 - span) * done as f64 / total.max(1) as f64);
    });
    if let Some(d) = fetched {
        if let Err(e) = std::fs::remove_dir_all(&d) {
            task.log(format!("warning: cannot remove {}: {e}", d.display()));
        }
    }
    match r {
        Ok(ch) => {
            for m in &ch {
                targets::record_verify(node, target, vmid, &m.id, true, None)?;
            }
            task.log(format!(
                "backup {id} is intact: {} backup(s) in its chain, every SHA-256 matches",
                ch.len()
            ));
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            targets::record_verify(node, target, vmid, id, false, Some(&msg))?;
            Err(e)
        }
    }
}

/// A restore, checked before its task: the chain complete on disk, not known broken, the new
/// VM's spec accepted by this host (vmid and name free, pool active, networks present).
pub struct RestorePlan {
    pub target_path: String,
    /// The target's name and remote host when it is an sftp target.
    pub remote: Option<(String, sftp::Remote)>,
    pub id: String,
    pub spec: VmSpec,
    /// Over the original VM (`replace`): its row when the restore was accepted.
    pub over: Option<DomainRow>,
}

/// Why the backed-up VM cannot be restored over now (`replace`), if it cannot: it must be on
/// this node, stopped, not HA, not a template, and without snapshots (they live inside the
/// disks the restore removes).
fn check_replace(node: &Node, vmid: u32, req: &RestoreRequest) -> Result<DomainRow> {
    if req.name.is_some() {
        return Err(Error::validation(
            "name",
            format!("with replace VM {vmid} keeps its name; leave name out (or restore to a new vmid to choose one)"),
        ));
    }
    crate::ha::refuse_if_ha(node, vmid, "restoring a backup over it")?;
    let row = vms::find(node, vmid).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!(
            "VM {vmid} is not on node {}: restore over it on the node that holds it, or restore to a new vmid",
            node.cfg.node
        )),
        e => e,
    })?;
    crate::clones::refuse_template(&row, vmid)?;
    if row.state.is_active() {
        return Err(Error::Conflict(format!(
            "VM {vmid} is {}: shut it down before restoring over it (or restore to a new vmid)",
            row.state.as_str()
        )));
    }
    let snaps = node.hv.list_snapshots(&row.name)?;
    if !snaps.is_empty() {
        let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
        return Err(Error::Conflict(format!(
            "VM {vmid} has snapshots ({}): they live inside the disks a restore over it removes; delete them first, or restore to a new vmid",
            names.join(", ")
        )));
    }
    Ok(row)
}

pub fn check_restore(
    node: &Node,
    vmid: u32,
    id: &str,
    req: &RestoreRequest,
) -> Result<RestorePlan> {
    check_backup_id(id)?;
    let new_vmid = req.restored_vmid(vmid)?;
    let t = targets::get(node, &req.target)?;
    let over = if req.replace {
        Some(check_replace(node, vmid, req)?)
    } else {
        None
    };
    let remote = targets::remote(node, &t)?;
    let ch = match &remote {
        Some(r) => r.connect()?.chain(vmid, id)?,
        None => store::chain(&t.path, vmid, id)?,
    };
    for m in &ch {
        if let Some((_, false, msg)) = targets::verify_state(node, &req.target, vmid, &m.id)? {
            return Err(Error::Conflict(format!(
                "backup {id} cannot be restored: its chain failed verification ({})",
                msg.unwrap_or_else(|| format!("backup {}", m.id))
            )));
        }
    }
    let Some(point) = ch.last() else {
        return Err(Error::Conflict(format!("backup {id} has an empty chain")));
    };
    let mut spec: VmSpec = serde_json::from_value(point.spec.clone()).map_err(|e| {
        Error::Conflict(format!("backup {id}: the saved VM spec is unreadable: {e}"))
    })?;
    if spec.disks.len() != point.disks.len() {
        return Err(Error::Conflict(format!(
            "backup {id}: the spec has {} disks, the backup {}",
            spec.disks.len(),
            point.disks.len()
        )));
    }
    spec.vmid = new_vmid;
    match &over {
        // the same VM: its name stays, its MACs are the saved ones (its own)
        Some(row) => spec.name = row.name.clone(),
        None => {
            spec.name = req
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-restore-{new_vmid}", spec.name));
            for n in &mut spec.nics {
                n.mac = None;
            }
        }
    }
    // an lvm-thin or iscsi-lvm pool holds raw LVs only: a qcow2 disk is converted into one
    let thin = node
        .hv
        .pool(&req.pool)
        .is_ok_and(|p| p.kind == crate::hv::thin::KIND || p.kind == crate::hv::shared_lvm::KIND);
    for (d, b) in spec.disks.iter_mut().zip(&point.disks) {
        d.pool = Some(req.pool.clone());
        d.volume = None;
        d.path = None;
        d.size_mib = Some(b.virtual_size.div_ceil(1024 * 1024).max(1));
        d.format = match b.source_format.as_str() {
            "qcow2" if !thin => DiskFormat::Qcow2,
            _ => DiskFormat::Raw,
        };
    }
    if let Some(c) = &spec.cdrom {
        let present = match (&c.pool, &c.volume) {
            (Some(p), Some(v)) => node.hv.volume(p, v).is_ok(),
            _ => c.path.as_deref().is_some_and(|p| Path::new(p).exists()),
        };
        if !present {
            spec.cdrom = None;
        }
    }
    vms::check_against_host(node, &mut spec, over.as_ref())?;
    Ok(RestorePlan {
        target_path: t.path,
        remote: remote.map(|r| (t.name.clone(), r)),
        id: id.to_string(),
        spec,
        over,
    })
}

pub fn restore(
    node: &Node,
    vmid: u32,
    plan: RestorePlan,
    start: bool,
    task: &TaskHandle,
) -> Result<()> {
    let new = plan.spec.vmid;
    if plan.over.is_some() {
        task.log(format!(
            "restoring backup {} over VM {vmid} ({}): new disks first, the old ones removed once the VM is redefined",
            plan.id, plan.spec.name
        ));
    } else {
        task.log(format!(
            "restoring backup {} of VM {vmid} as VM {new} ({})",
            plan.id, plan.spec.name
        ));
    }
    let Some((target, r)) = &plan.remote else {
        return restore_from(node, vmid, &plan, &plan.target_path, 0.0, start, task);
    };
    let dir = download(node, r, target, "restore", vmid, &plan.id, 0.3, task)?;
    let res = restore_from(
        node,
        vmid,
        &plan,
        &dir.display().to_string(),
        0.3,
        start,
        task,
    );
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        task.log(format!("warning: cannot remove {}: {e}", dir.display()));
    }
    res
}

/// Restore from a chain in the local directory `path` (a `dir` target, or an sftp target's
/// chain downloaded there); `base` of the progress is already done.
fn restore_from(
    node: &Node,
    vmid: u32,
    plan: &RestorePlan,
    path: &str,
    base: f64,
    start: bool,
    task: &TaskHandle,
) -> Result<()> {
    let new = plan.spec.vmid;
    let ch = store::verify_chain(path, vmid, &plan.id, &|done, total, what| {
        task.log(format!("verified {what}"));
        task.progress(base + (0.3 - base).max(0.05) * done as f64 / total.max(1) as f64);
    })?;
    let Some(point) = ch.last().cloned() else {
        return Err(Error::Conflict("empty chain".into()));
    };
    if let Some(row) = &plan.over {
        return replace_from(node, row, plan, path, &point, start, task);
    }
    let had_cdrom = plan.spec.cdrom.is_some();
    vms::create(node, plan.spec.clone(), false, task)?;
    if !had_cdrom
        && serde_json::from_value::<VmSpec>(point.spec.clone()).is_ok_and(|s| s.cdrom.is_some())
    {
        task.log("the CD-ROM's image is not on this node: the restored VM has an empty drive");
    }
    let filled = vms::config(node, new).and_then(|c| fill_disks(node, &c.spec, path, &point, task));
    if let Err(e) = filled {
        task.log(format!(
            "restore failed: {e}; deleting VM {new} and its new volumes"
        ));
        if let Err(x) = vms::delete(node, new, true, task) {
            task.log(format!("warning: cleanup of VM {new} failed: {x}"));
        }
        return Err(e);
    }
    task.progress(0.95);
    if start {
        vms::power(node, new, crate::hv::Power::Start, task)?;
        task.log(format!("VM {new} started"));
    }
    task.log(format!("VM {new} restored from backup {}", point.id));
    Ok(())
}

/// Restore over the stopped VM `row`: the chain flattened into new volumes, the VM redefined
/// on them (same UUID and name, the backup's configuration), then the old volumes removed.
/// Its libvirt checkpoints are dropped (their bitmaps were in the old disks), so its next
/// backup is a full one and says why.
fn replace_from(
    node: &Node,
    row: &DomainRow,
    plan: &RestorePlan,
    path: &str,
    point: &BackupManifest,
    start: bool,
    task: &TaskHandle,
) -> Result<()> {
    let vmid = plan.spec.vmid;
    // the VM may have changed between the request and this task
    let now = vms::find(node, vmid)?;
    if now.uuid != row.uuid {
        return Err(Error::Conflict(format!(
            "VM {vmid} was replaced by another domain since the restore was asked for; nothing changed"
        )));
    }
    if now.state.is_active() {
        return Err(Error::Conflict(format!(
            "VM {vmid} was started since the restore was asked for ({}); nothing changed: shut it down and restore again",
            now.state.as_str()
        )));
    }
    let eng = engine(node);
    let fill = |spec: &VmSpec| fill_disks(node, spec, path, point, task);
    let drop_checkpoints = || match eng.checkpoints(&row.name) {
        Ok(cps) => {
            for c in cps.iter().rev() {
                match eng.delete_checkpoint_metadata(&row.name, c) {
                    Ok(()) => task.log(format!(
                        "dropped checkpoint {c} (its bitmap was in a replaced disk): the next backup of VM {vmid} is full"
                    )),
                    Err(e) => task.log(format!("warning: checkpoint {c} stays recorded ({e})")),
                }
            }
        }
        Err(e) => task.log(format!("warning: cannot list checkpoints: {e}")),
    };
    vms::replace_disks(node, row, plan.spec.clone(), &fill, &drop_checkpoints, task)?;
    task.progress(0.97);
    if start {
        vms::power(node, vmid, crate::hv::Power::Start, task)?;
        task.log(format!("VM {vmid} started"));
    }
    task.log(format!(
        "VM {vmid} restored over itself from backup {}",
        point.id
    ));
    Ok(())
}

/// Flatten each disk's chain into the restored VM's volumes (`spec`'s disks, allocated).
fn fill_disks(
    node: &Node,
    spec: &VmSpec,
    target_path: &str,
    point: &BackupManifest,
    task: &TaskHandle,
) -> Result<()> {
    let eng = engine(node);
    let dir: PathBuf = store::vm_dir(target_path, point.vmid).join(&point.id);
    for (i, (d, b)) in spec.disks.iter().zip(&point.disks).enumerate() {
        let (Some(pool), Some(vol)) = (&d.pool, &d.volume) else {
            return Err(Error::Internal(format!("restored disk {i} has no volume")));
        };
        let dst = node.hv.volume(pool, vol)?.path;
        task.log(format!(
            "writing {} (flattened chain) into {pool}/{vol}",
            b.file
        ));
        // an iscsi-lvm volume is active only while something uses it: here, the write
        let held = node.hv.hold_disks(
            &format!("the restore into {pool}/{vol}"),
            std::slice::from_ref(&dst),
        )?;
        let r = eng.convert(
            &dir.join(&b.file).display().to_string(),
            "qcow2",
            &dst,
            d.format.as_str(),
            true,
        );
        node.hv.unhold_disks(&held);
        r?;
        task.progress(0.3 + 0.65 * (i + 1) as f64 / spec.disks.len() as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(t: &str, p: &str, f: &str) -> DomDisk {
        DomDisk {
            target: t.into(),
            path: p.into(),
            format: f.into(),
        }
    }

    fn manifest(id: &str, cp: Option<&str>) -> BackupManifest {
        BackupManifest {
            version: 1,
            id: id.into(),
            vmid: 100,
            node: "n1".into(),
            kind: BackupKind::Full,
            parent: None,
            checkpoint: cp.map(str::to_string),
            live: true,
            start_time: 1,
            end_time: 2,
            spec: serde_json::json!({}),
            domain_xml: String::new(),
            disks: vec![BackupDisk {
                target: "vda".into(),
                file: "vda.qcow2".into(),
                format: "qcow2".into(),
                source_format: "qcow2".into(),
                virtual_size: 64,
                file_size: 1,
                sha256: String::new(),
                backing: None,
                source_path: "/p/a.qcow2".into(),
            }],
        }
    }

    /// Incremental only when the chain is whole: a checkpoint on record and still in libvirt,
    /// the same qcow2 disks of the same size, the VM running; otherwise full with the reason.
    #[test]
    fn plan_falls_back_to_full_with_the_reason() {
        let d = vec![(disk("vda", "/p/a.qcow2", "qcow2"), 64)];
        let m = manifest("B1", Some("keel-100-B1"));
        let cps = vec!["keel-100-B1".to_string()];
        assert_eq!(plan(false, true, &d, None, &cps), Plan::Full(None));
        assert_eq!(plan(true, true, &d, Some(&m), &cps), Plan::Full(None));
        assert_eq!(
            plan(false, true, &d, Some(&m), &cps),
            Plan::Incremental {
                parent: "B1".into(),
                checkpoint: "keel-100-B1".into()
            }
        );
        let why = |p: Plan| match p {
            Plan::Full(Some(w)) => w,
            other => panic!("expected a full with a reason: {other:?}"),
        };
        assert!(why(plan(false, true, &d, Some(&m), &[])).contains("gone from libvirt"));
        assert!(why(plan(false, false, &d, Some(&m), &cps)).contains("stopped"));
        assert!(
            why(plan(false, true, &d, Some(&manifest("B0", None)), &cps))
                .contains("started no checkpoint")
        );
        let resized = vec![(disk("vda", "/p/a.qcow2", "qcow2"), 128)];
        assert!(why(plan(false, true, &resized, Some(&m), &cps)).contains("disks changed"));
        let replaced = vec![(disk("vda", "/p/b.qcow2", "qcow2"), 64)];
        assert!(why(plan(false, true, &replaced, Some(&m), &cps)).contains("disks changed"));
        let raw = vec![(disk("vda", "/p/a.raw", "raw"), 64)];
        assert!(why(plan(false, true, &raw, Some(&m), &cps)).contains("only qcow2"));
    }
}
