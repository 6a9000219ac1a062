//! `nfs` backup targets: the export mounted by hostd itself, on every node that uses it, at
//! `/run/keel/backup-nfs/<target>`; from there on an `nfs` target is a `dir` target at its
//! mount point (docs/backups.md, "NFS targets").
//!
//! - Mounted on first use ([`ensure`]): listing, a backup, verify, restore. `/run` is empty
//!   after a reboot, so a node mounts again when it needs the target; nothing in `/etc/fstab`.
//! - The kernel's NFS client (`mount -t nfs`, nfs-common's `mount.nfs`), with `nosuid,nodev,
//!   noexec` always and the target's own options after them. Mounts are NFS's default `hard`
//!   (a backup written through a `soft` mount can lose data silently on a timeout); what
//!   could then hang is only probed off the request thread ([`probe`]).
//! - A mount point whose target is gone, or that holds another export than the target now
//!   names, is unmounted ([`sweep`], [`ensure`]).
//!
//! Every command runs through the node's runner, so the tests state them in order.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use keel_runner::{Cmd, Runner};

/// Where hostd mounts `nfs` targets.
pub const MOUNT_ROOT: &str = "/run/keel/backup-nfs";

/// What `mount.nfs` is given first, whatever the target adds.
pub const BASE_OPTIONS: &str = "nosuid,nodev,noexec";

/// How long one mount may take: `mount.nfs` is told to try once (`retry=0`), but a server
/// that drops packets still costs its TCP timeouts.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(45);

/// How long a listing waits for a mounted export to answer (statvfs + a write test).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One mount or unmount at a time in this hostd: two requests finding a target unmounted at
/// once must not both mount it (the second would stack on the first).
static MOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serialized<T>(f: impl FnOnce() -> T) -> T {
    let _g = MOUNTS.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

/// The mount point of target `name` under `root`.
pub fn mountpoint(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// The file system type and source mounted at `mp`, from `/proc/self/mountinfo` text (the
/// last mount there wins, as the kernel shows it). Octal escapes (`\040`) are decoded.
pub fn mounted(mountinfo: &str, mp: &Path) -> Option<(String, String)> {
    let want = mp.to_string_lossy();
    let mut found = None;
    for line in mountinfo.lines() {
        let (pre, post) = match line.split_once(" - ") {
            Some(x) => x,
            None => continue,
        };
        let at = match pre.split(' ').nth(4) {
            Some(a) => unescape(a),
            None => continue,
        };
        if at != want {
            continue;
        }
        let mut f = post.split(' ');
        if let (Some(fs), Some(src)) = (f.next(), f.next()) {
            found = Some((fs.to_string(), unescape(src)));
        }
    }
    found
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The same export, as `mount` wrote it and as the target names it (a trailing `/` aside).
fn same_source(mounted: &str, source: &str) -> bool {
    let t = |s: &str| -> String {
        match s.trim_end_matches('/') {
            e if e.ends_with(':') => format!("{e}/"),
            e => e.to_string(),
        }
    };
    t(mounted) == t(source)
}

fn read_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// The `mount -o` string for a target's own options.
pub fn options(extra: Option<&str>) -> String {
    match extra {
        Some(e) if !e.is_empty() => format!("{BASE_OPTIONS},retry=0,{e}"),
        _ => format!("{BASE_OPTIONS},retry=0"),
    }
}

/// A `mount.nfs` failure in words an operator acts on; its own message is kept.
pub fn explain(source: &str, stderr: &str) -> String {
    let e = stderr.trim();
    let hint = if e.contains("access denied") || e.contains("Permission denied") {
        "the server refuses this node: add this node's address to the export's client list (and no_root_squash or a root-writable directory)"
    } else if e.contains("No such file or directory") {
        "the server does not export that path: check the export (showmount -e SERVER, or the server's NFSv4 pseudo root)"
    } else if e.contains("Connection refused") {
        "nothing answers on the server's NFS port (2049): is the NFS server running?"
    } else if e.contains("timed out") || e.contains("No route") || e.contains("unreachable") {
        "the server does not answer: check the address and the network between this node and it"
    } else if e.contains("No such device") || e.contains("unknown filesystem type") {
        "this node's kernel cannot mount NFS (no nfs module), or nfs-common is not installed"
    } else if e.contains("wrong fs type")
        || e.contains("bad option")
        || e.contains("helper program")
    {
        "this node cannot mount NFS: install nfs-common, or check the mount options"
    } else {
        "check the export, the server and the mount options"
    };
    format!("mounting NFS export {source} failed: {hint} (mount said: {e})")
}

/// Mount target `name`'s export at its mount point unless it is mounted there already;
/// the mount point. A mount point holding another export (the target was redefined) or
/// another file system is unmounted first.
pub fn ensure(
    runner: &dyn Runner,
    root: &Path,
    name: &str,
    source: &str,
    extra: Option<&str>,
) -> Result<PathBuf, String> {
    serialized(|| ensure_with(runner, root, name, source, extra, &read_mountinfo()))
}

pub(crate) fn ensure_with(
    runner: &dyn Runner,
    root: &Path,
    name: &str,
    source: &str,
    extra: Option<&str>,
    mountinfo: &str,
) -> Result<PathBuf, String> {
    let mp = mountpoint(root, name);
    match mounted(mountinfo, &mp) {
        Some((fs, src)) if fs.starts_with("nfs") && same_source(&src, source) => return Ok(mp),
        Some((fs, src)) => {
            tracing::info!(target = name, %fs, %src, "backup target mount point holds another export: unmounting it");
            umount(runner, &mp)?;
        }
        None => {}
    }
    std::fs::create_dir_all(&mp)
        .map_err(|e| format!("cannot create the mount point {}: {e}", mp.display()))?;
    let cmd = Cmd::new("mount")
        .args(["-t", "nfs", "-o"])
        .arg(options(extra))
        .arg(source)
        .arg(mp.display().to_string())
        .timeout(MOUNT_TIMEOUT);
    let failed = match runner.run(&cmd) {
        Ok(o) if o.success() => {
            tracing::info!(target = name, %source, mountpoint = %mp.display(), "NFS backup target mounted");
            return Ok(mp);
        }
        Ok(o) => explain(source, &format!("{}{}", o.stderr, o.stdout)),
        Err(e) if e.is_timeout() => format!(
            "mounting NFS export {source} did not finish within {}s: the server does not answer (check its address and the network)",
            MOUNT_TIMEOUT.as_secs()
        ),
        Err(e) => explain(source, &e.to_string()),
    };
    let _ = std::fs::remove_dir(&mp);
    Err(failed)
}

fn umount(runner: &dyn Runner, mp: &Path) -> Result<(), String> {
    let at = mp.display().to_string();
    let out = runner
        .run(&Cmd::new("umount").arg(&at).timeout(MOUNT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    if out.success() {
        return Ok(());
    }
    // busy (a backup still writing) or the server gone: detach it now, the kernel finishes
    // when the last file closes
    runner
        .run_ok(&Cmd::new("umount").args(["-l", &at]).timeout(MOUNT_TIMEOUT))
        .map(|_| ())
        .map_err(|e| format!("cannot unmount {at}: {e}"))
}

/// Unmount target `name`'s export here, if it is mounted (deleting the target).
pub fn release(runner: &dyn Runner, root: &Path, name: &str) -> Result<(), String> {
    serialized(|| release_with(runner, root, name, &read_mountinfo()))
}

pub(crate) fn release_with(
    runner: &dyn Runner,
    root: &Path,
    name: &str,
    mountinfo: &str,
) -> Result<(), String> {
    let mp = mountpoint(root, name);
    if mounted(mountinfo, &mp).is_some() {
        umount(runner, &mp)?;
    }
    let _ = std::fs::remove_dir(&mp);
    Ok(())
}

/// Unmount what is mounted under `root` for no `nfs` target of `keep` (a target another
/// node deleted). Failures are logged, not returned: a listing must still answer.
pub fn sweep(runner: &dyn Runner, root: &Path, keep: &[&str]) {
    serialized(|| sweep_with(runner, root, keep, &read_mountinfo()))
}

pub(crate) fn sweep_with(runner: &dyn Runner, root: &Path, keep: &[&str], mountinfo: &str) {
    let prefix = root.to_string_lossy();
    for line in mountinfo.lines() {
        let at = match line.split(' ').nth(4) {
            Some(a) => unescape(a),
            None => continue,
        };
        let name = match at
            .strip_prefix(prefix.as_ref())
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(n) if !n.is_empty() && !n.contains('/') => n.to_string(),
            _ => continue,
        };
        if keep.contains(&name.as_str()) {
            continue;
        }
        match release_with(runner, root, &name, mountinfo) {
            Ok(()) => {
                tracing::info!(target = %name, "NFS mount of a deleted backup target unmounted")
            }
            Err(e) => tracing::warn!(target = %name, "NFS mount of a deleted backup target: {e}"),
        }
    }
}

/// Run `f` off this thread and wait at most `limit` for it: a hard-mounted export whose
/// server is gone blocks statvfs and writes until it returns, and a listing must answer.
/// `None`: it did not finish in time (the thread is left to finish on its own).
pub fn probe<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("keel-nfs-probe".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if spawned.is_err() {
        return None;
    }
    rx.recv_timeout(limit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_runner::{Fake, Reply};

    const INFO: &str = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
98 22 0:45 / /run/keel/backup-nfs/nas rw,nosuid,nodev,noexec,relatime shared:50 - nfs4 10.77.0.1:/backups rw,vers=4.2
99 22 0:46 / /run/keel/backup-nfs/old rw,relatime shared:51 - nfs4 10.77.0.1:/old rw,vers=4.2
100 22 0:47 / /srv/with\\040space rw - ext4 /dev/vdb rw
";

    #[test]
    fn mountinfo_names_what_is_mounted_where() {
        assert_eq!(
            mounted(INFO, Path::new("/run/keel/backup-nfs/nas")),
            Some(("nfs4".into(), "10.77.0.1:/backups".into()))
        );
        assert_eq!(
            mounted(INFO, Path::new("/srv/with space")),
            Some(("ext4".into(), "/dev/vdb".into()))
        );
        assert_eq!(mounted(INFO, Path::new("/run/keel/backup-nfs/x")), None);
        assert!(same_source("10.77.0.1:/backups", "10.77.0.1:/backups/"));
        assert!(same_source("nas:/", "nas:/"));
        assert!(!same_source("10.77.0.1:/old", "10.77.0.1:/backups"));
    }

    #[test]
    fn a_mounted_export_is_used_as_it_is_and_another_is_replaced() -> Result<(), String> {
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        let r = root.path().join("backup-nfs");
        // already mounted, same export: nothing runs
        let info = INFO.replace("/run/keel/backup-nfs", &r.display().to_string());
        let fake = Fake::new();
        let mp = ensure_with(&fake, &r, "nas", "10.77.0.1:/backups", None, &info)?;
        assert_eq!(mp, r.join("nas"));
        fake.assert_done();
        // "old" now names another export: unmount, then mount the new one
        let at = r.join("old").display().to_string();
        let fake = Fake::new().expect(&["umount", &at], Reply::ok("")).expect(
            &[
                "mount",
                "-t",
                "nfs",
                "-o",
                "nosuid,nodev,noexec,retry=0,vers=4.2",
                "10.77.0.1:/new",
                &at,
            ],
            Reply::ok(""),
        );
        ensure_with(&fake, &r, "old", "10.77.0.1:/new", Some("vers=4.2"), &info)?;
        fake.assert_done();
        Ok(())
    }

    #[test]
    fn a_failed_mount_says_what_to_do() -> Result<(), String> {
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        let at = root.path().join("t").display().to_string();
        let fake = Fake::new().expect(
            &[
                "mount",
                "-t",
                "nfs",
                "-o",
                "nosuid,nodev,noexec,retry=0",
                "nas:/x",
                &at,
            ],
            Reply::fail(
                32,
                "mount.nfs: access denied by server while mounting nas:/x",
            ),
        );
        let e = match ensure_with(&fake, root.path(), "t", "nas:/x", None, "") {
            Err(e) => e,
            Ok(p) => return Err(format!("mounted at {}", p.display())),
        };
        assert!(
            e.contains("client list") && e.contains("access denied"),
            "{e}"
        );
        fake.assert_done();
        assert!(explain(
            "nas:/x",
            "mount.nfs: mounting nas:/x failed, reason given by server: No such file or directory"
        )
        .contains("does not export"));
        assert!(explain("nas:/x", "mount.nfs: Connection refused").contains("2049"));
        Ok(())
    }

    #[test]
    fn release_and_sweep_unmount_only_what_is_no_longer_a_target() {
        let r = Path::new("/run/keel/backup-nfs");
        // a busy mount is detached lazily
        let fake = Fake::new()
            .expect(
                &["umount", "/run/keel/backup-nfs/old"],
                Reply::fail(32, "target is busy"),
            )
            .expect(&["umount", "-l", "/run/keel/backup-nfs/old"], Reply::ok(""));
        sweep_with(&fake, r, &["nas"], INFO);
        fake.assert_done();
        let fake = Fake::new();
        sweep_with(&fake, r, &["nas", "old"], INFO);
        fake.assert_done();
        let fake = Fake::new().expect(&["umount", "/run/keel/backup-nfs/nas"], Reply::ok(""));
        assert_eq!(release_with(&fake, r, "nas", INFO), Ok(()));
        fake.assert_done();
        let fake = Fake::new();
        assert_eq!(release_with(&fake, r, "gone", INFO), Ok(()));
        fake.assert_done();
    }

    #[test]
    fn a_probe_that_hangs_gives_up_at_its_limit() {
        assert_eq!(probe(Duration::from_secs(5), || 7), Some(7));
        let t = std::time::Instant::now();
        let r = probe(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(2));
            7
        });
        assert_eq!(r, None);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
