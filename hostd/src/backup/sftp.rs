//! `sftp` backup targets: a directory on a remote host reached over SSH with libssh2 (the
//! `ssh2` crate), its host key pinned when the target is added.
//!
//! The remote layout is the `dir` target's (see [`super::store`]): `<path>/<vmid>/<id>/` with
//! `manifest.json` and one qcow2 file per disk. A backup is written into the node's local
//! staging directory first (the `dir` writer), then uploaded into
//! `<path>/<vmid>/.partial-<id>/` (each file fsync'ed on the remote when the server offers
//! `fsync@openssh.com`), the manifest last, and renamed to `<id>` only then: a backup is listed
//! only once every file is on the remote host. Verify and restore download the chain into
//! local staging and use the `dir` code on it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use keel_api::backup::{BackupKind, BackupManifest, SftpLocation};
use ssh2::{HashType, OpenFlags, OpenType, Session, Sftp};

use super::store::MANIFEST;
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Each blocking libssh2 call (handshake, authentication, one SFTP request).
const IO_TIMEOUT_MS: u32 = 60_000;

/// An SFTP target as hostd uses it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub loc: SftpLocation,
    pub key_file: PathBuf,
    /// The pinned host key (`SHA256:…`).
    pub fingerprint: String,
}

/// An authenticated SFTP session whose host key matched the pin.
pub struct Conn {
    // the SFTP channel rides on this session; `df` runs on it when statvfs is missing
    sess: Session,
    pub sftp: Sftp,
    pub base: PathBuf,
}

/// OpenSSH's rendering of a host key hash: `SHA256:` and unpadded base64.
pub fn fingerprint_of(sha256: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha256)
    )
}

/// Problems with the private key file, before any connection: missing, not a file, or
/// readable by others (ssh refuses such keys; Keel does too).
/// Directory under the state dir where the private keys of sftp targets must be.
pub const KEY_DIR: &str = "backup-keys";

/// Why `key` may not be used: it is not inside `dir` (symbolic links and `..` resolved).
pub fn key_outside(key: &Path, dir: &Path) -> Option<String> {
    let real = std::fs::canonicalize(key).ok()?;
    let inside = std::fs::canonicalize(dir).is_ok_and(|d| real.starts_with(d));
    (!inside).then(|| {
        format!(
            "the key file must be in {} (copy the private key there, mode 600): {} is not",
            dir.display(),
            key.display()
        )
    })
}

pub fn key_file_problem(p: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Err(e) => Some(format!("cannot read the key file {}: {e}", p.display())),
        Ok(m) if !m.is_file() => Some(format!("{} is not a file", p.display())),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Some(format!(
            "the key file {} is readable by other users (mode {:o}): chmod 600 it",
            p.display(),
            m.permissions().mode() & 0o777
        )),
        Ok(_) => match std::fs::File::open(p) {
            Err(e) => Some(format!("cannot read the key file {}: {e}", p.display())),
            Ok(_) => None,
        },
    }
}

fn ssh_err(what: &str, loc: &SftpLocation, e: ssh2::Error) -> Error {
    Error::Conflict(format!("{what} ({loc}): {}", e.message()))
}

/// The host key a server presents now, without authenticating: (fingerprint, session).
fn handshake(loc: &SftpLocation) -> Result<(String, Session)> {
    let addrs: Vec<_> = (loc.host.as_str(), loc.port)
        .to_socket_addrs()
        .map_err(|e| {
            Error::Conflict(format!(
                "cannot resolve the SFTP host {}: {e}; check the name or use an address",
                loc.host
            ))
        })?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(format!("{a}: {e}")),
        }
    }
    let Some(tcp) = tcp else {
        return Err(Error::Conflict(format!(
            "cannot reach the SFTP host {}:{} ({}): check that sshd runs there and the port is open",
            loc.host,
            loc.port,
            last.unwrap_or_else(|| "no address".into())
        )));
    };
    let mut sess = Session::new().map_err(|e| ssh_err("cannot start an SSH session", loc, e))?;
    sess.set_timeout(IO_TIMEOUT_MS);
    sess.set_tcp_stream(tcp);
    sess.handshake()
        .map_err(|e| ssh_err("SSH handshake failed", loc, e))?;
    let fp = sess
        .host_key_hash(HashType::Sha256)
        .map(fingerprint_of)
        .ok_or_else(|| Error::Conflict(format!("{loc}: the server presented no host key")))?;
    Ok((fp, sess))
}

/// Connect, check the host key against `pin` (None: accept and return it), authenticate with
/// the key file and open SFTP. A changed host key is refused before authenticating.
pub fn connect(loc: &SftpLocation, key_file: &Path, pin: Option<&str>) -> Result<(Conn, String)> {
    let (fp, sess) = handshake(loc)?;
    if let Some(want) = pin {
        if want != fp {
            return Err(Error::Conflict(format!(
                "the host key of {}:{} changed: expected {want}, seen {fp}. Nothing was sent to it. If the host was reinstalled or its key rotated on purpose, check the new fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then remove and add the target again",
                loc.host, loc.port
            )));
        }
    }
    if let Some(p) = key_file_problem(key_file) {
        return Err(Error::Conflict(p));
    }
    sess.userauth_pubkey_file(&loc.user, None, key_file, None)
        .map_err(|e| {
            Error::Conflict(format!(
                "SSH authentication as {} on {}:{} with the key {} failed: {}; add its public key to ~{}/.ssh/authorized_keys there",
                loc.user,
                loc.host,
                loc.port,
                key_file.display(),
                e.message(),
                loc.user
            ))
        })?;
    let sftp = sess
        .sftp()
        .map_err(|e| ssh_err("the SFTP subsystem is not available", loc, e))?;
    Ok((
        Conn {
            sess,
            sftp,
            base: PathBuf::from(&loc.path),
        },
        fp,
    ))
}

impl Remote {
    pub fn connect(&self) -> Result<Conn> {
        Ok(connect(&self.loc, &self.key_file, Some(&self.fingerprint))?.0)
    }
}

fn sftp_io(what: String) -> impl FnOnce(ssh2::Error) -> Error {
    move |e| Error::Conflict(format!("{what}: {}", e.message()))
}

impl Conn {
    /// Why the directory cannot take backups (missing, not a directory, read-only), or its
    /// (total, available) bytes: statvfs@openssh.com on a probe file, `df` otherwise.
    pub fn check(&self) -> std::result::Result<(u64, u64), String> {
        let b = &self.base;
        match self.sftp.stat(b) {
            Err(e) => {
                return Err(format!(
                "remote directory {} cannot be read: {}; create it (mkdir -p) on the remote host",
                b.display(),
                e.message()
            ))
            }
            Ok(s) if !s.is_dir() => {
                return Err(format!("remote {} is not a directory", b.display()))
            }
            Ok(_) => {}
        }
        let probe = b.join(format!(".keel-write-test-{}", std::process::id()));
        let mut f = self.sftp.create(&probe).map_err(|e| {
            format!(
                "remote directory {} is not writable (read-only file system or no permission): {}",
                b.display(),
                e.message()
            )
        })?;
        let space = f.statvfs().ok().map(|v| {
            let fr = v.f_frsize.max(1);
            (v.f_blocks * fr, v.f_bavail * fr)
        });
        drop(f);
        let _ = self.sftp.unlink(&probe);
        Ok(space.or_else(|| df(&self.sess, b)).unwrap_or((0, 0)))
    }

    fn vm_dir(&self, vmid: u32) -> PathBuf {
        self.base.join(vmid.to_string())
    }

    pub fn read_manifest(&self, dir: &Path) -> Result<BackupManifest> {
        let p = dir.join(MANIFEST);
        let mut f = self
            .sftp
            .open(&p)
            .map_err(sftp_io(format!("cannot read {}", p.display())))?;
        let mut s = Vec::new();
        f.read_to_end(&mut s)
            .map_err(|e| Error::Conflict(format!("cannot read {}: {e}", p.display())))?;
        serde_json::from_slice(&s)
            .map_err(|e| Error::Conflict(format!("{} is not a valid manifest: {e}", p.display())))
    }

    /// The complete backups of a VM on the remote, oldest first (as [`super::store::list`]).
    pub fn list(&self, vmid: u32) -> Vec<BackupManifest> {
        let mut out = Vec::new();
        let Ok(entries) = self.sftp.readdir(self.vm_dir(vmid)) else {
            return out;
        };
        for (p, st) in entries {
            let Some(n) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if n.starts_with('.') || !st.is_dir() {
                continue;
            }
            if let Ok(m) = self.read_manifest(&p) {
                if m.id == n && m.vmid == vmid {
                    out.push(m);
                }
            }
        }
        out.sort_by(|a, b| (a.start_time, &a.id).cmp(&(b.start_time, &b.id)));
        out
    }

    /// The manifests of the chain ending at `id`, full first; refused (409) when a backup or
    /// a file of it is missing (as [`super::store::chain`]).
    pub fn chain(&self, vmid: u32, id: &str) -> Result<Vec<BackupManifest>> {
        let vdir = self.vm_dir(vmid);
        let mut out: Vec<BackupManifest> = Vec::new();
        let mut cur = Some(id.to_string());
        while let Some(c) = cur {
            if out.len() > 10_000 {
                return Err(Error::Conflict(format!("backup {id}: the chain loops")));
            }
            let dir = vdir.join(&c);
            if !self.sftp.stat(&dir).is_ok_and(|s| s.is_dir()) {
                return Err(Error::Conflict(if c == id {
                    format!("backup {id} of VM {vmid} does not exist on this target")
                } else {
                    format!("backup {id} is broken: its chain needs backup {c}, which is missing")
                }));
            }
            let m = self
                .read_manifest(&dir)
                .map_err(|e| Error::Conflict(format!("backup {id} is broken: backup {c}: {e}")))?;
            for d in &m.disks {
                if !self
                    .sftp
                    .stat(&dir.join(&d.file))
                    .is_ok_and(|s| s.is_file())
                {
                    return Err(Error::Conflict(format!(
                        "backup {id} is broken: file {} of backup {c} is missing",
                        d.file
                    )));
                }
            }
            cur = match (m.kind, &m.parent) {
                (BackupKind::Incremental, Some(p)) => Some(p.clone()),
                (BackupKind::Incremental, None) => {
                    return Err(Error::Conflict(format!(
                        "backup {id} is broken: incremental backup {c} names no parent"
                    )))
                }
                (BackupKind::Full, _) => None,
            };
            out.push(m);
        }
        out.reverse();
        Ok(out)
    }

    /// Upload the complete local backup `<local_root>/<vmid>/<id>/` into
    /// `<base>/<vmid>/.partial-<id>/`, data files first and the manifest last, each synced,
    /// then rename it to `<id>`. `progress(bytes done, bytes total, rate B/s)`.
    pub fn upload(
        &self,
        local: &Path,
        vmid: u32,
        m: &BackupManifest,
        progress: &dyn Fn(u64, u64, f64),
    ) -> Result<()> {
        let vdir = self.vm_dir(vmid);
        if self.sftp.stat(&vdir).is_err() {
            self.sftp
                .mkdir(&vdir, 0o750)
                .map_err(sftp_io(format!("cannot create {}", vdir.display())))?;
        }
        // what an interrupted upload or deletion of this VM's backups left (a VM's backup
        // tasks never run at the same time)
        if let Ok(entries) = self.sftp.readdir(&vdir) {
            for (p, st) in entries {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if st.is_dir() && (n.starts_with(".partial-") || n.starts_with(".deleting-")) {
                    self.remove_tree(&p)?;
                }
            }
        }
        let partial = vdir.join(format!(".partial-{}", m.id));
        self.sftp
            .mkdir(&partial, 0o750)
            .map_err(sftp_io(format!("cannot create {}", partial.display())))?;
        let r = (|| -> Result<()> {
            let mut files: Vec<&str> = m.disks.iter().map(|d| d.file.as_str()).collect();
            files.push(MANIFEST);
            let total: u64 = files
                .iter()
                .filter_map(|f| std::fs::metadata(local.join(f)).ok())
                .map(|x| x.len())
                .sum();
            let mut done = 0u64;
            let t0 = Instant::now();
            for f in files {
                self.put(&local.join(f), &partial.join(f), &mut |n| {
                    done += n;
                    progress(
                        done,
                        total,
                        done as f64 / t0.elapsed().as_secs_f64().max(0.001),
                    );
                })?;
            }
            let dest = vdir.join(&m.id);
            self.sftp
                .rename(&partial, &dest, None)
                .map_err(sftp_io(format!(
                    "cannot rename {} to {}",
                    partial.display(),
                    dest.display()
                )))
        })();
        if r.is_err() {
            let _ = self.remove_tree(&partial);
        }
        r
    }

    fn put(&self, src: &Path, dst: &Path, on: &mut dyn FnMut(u64)) -> Result<()> {
        let mut inp = std::fs::File::open(src)?;
        let mut out = self
            .sftp
            .open_mode(
                dst,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                0o640,
                OpenType::File,
            )
            .map_err(sftp_io(format!("cannot create {}", dst.display())))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let k = inp.read(&mut buf)?;
            if k == 0 {
                break;
            }
            out.write_all(&buf[..k]).map_err(|e| {
                Error::Conflict(format!(
                    "writing {} failed: {e} (is the remote file system full?)",
                    dst.display()
                ))
            })?;
            on(k as u64);
        }
        // fsync@openssh.com: the data is on the remote disk before the manifest names it
        out.fsync()
            .map_err(sftp_io(format!("cannot sync {}", dst.display())))?;
        out.close()
            .map_err(sftp_io(format!("cannot close {}", dst.display())))?;
        Ok(())
    }

    /// Download the chain ending at `id` into `<local_root>/<vmid>/<id…>/` (the `dir` layout),
    /// so the `dir` code verifies and restores it. Returns the chain, full first.
    pub fn fetch_chain(
        &self,
        vmid: u32,
        id: &str,
        local_root: &Path,
        progress: &dyn Fn(u64, u64, f64),
    ) -> Result<Vec<BackupManifest>> {
        let ch = self.chain(vmid, id)?;
        let total: u64 = ch
            .iter()
            .flat_map(|m| m.disks.iter().map(|d| d.file_size))
            .sum();
        let mut done = 0u64;
        let t0 = Instant::now();
        for m in &ch {
            let rdir = self.vm_dir(vmid).join(&m.id);
            let ldir = local_root.join(vmid.to_string()).join(&m.id);
            std::fs::create_dir_all(&ldir)?;
            let mut files: Vec<&str> = m.disks.iter().map(|d| d.file.as_str()).collect();
            files.push(MANIFEST);
            for f in files {
                self.get(&rdir.join(f), &ldir.join(f), &mut |n| {
                    done += n;
                    progress(
                        done,
                        total,
                        done as f64 / t0.elapsed().as_secs_f64().max(0.001),
                    );
                })?;
            }
        }
        Ok(ch)
    }

    fn get(&self, src: &Path, dst: &Path, on: &mut dyn FnMut(u64)) -> Result<()> {
        let mut inp = self
            .sftp
            .open(src)
            .map_err(sftp_io(format!("cannot read {}", src.display())))?;
        let mut out = std::fs::File::create(dst)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let k = inp
                .read(&mut buf)
                .map_err(|e| Error::Conflict(format!("reading {} failed: {e}", src.display())))?;
            if k == 0 {
                break;
            }
            out.write_all(&buf[..k])?;
            on(k as u64);
        }
        Ok(())
    }

    /// Remove a remote directory and everything in it.
    pub fn remove_tree(&self, dir: &Path) -> Result<()> {
        let entries = self
            .sftp
            .readdir(dir)
            .map_err(sftp_io(format!("cannot list {}", dir.display())))?;
        for (p, st) in entries {
            if st.is_dir() {
                self.remove_tree(&p)?;
            } else {
                self.sftp
                    .unlink(&p)
                    .map_err(sftp_io(format!("cannot remove {}", p.display())))?;
            }
        }
        self.sftp
            .rmdir(dir)
            .map_err(sftp_io(format!("cannot remove {}", dir.display())))
    }
}

/// `df -Pk PATH` on the remote host when its SFTP server lacks statvfs@openssh.com.
fn df(sess: &Session, path: &Path) -> Option<(u64, u64)> {
    let mut ch = sess.channel_session().ok()?;
    let quoted = format!("'{}'", path.display().to_string().replace('\'', r"'\''"));
    ch.exec(&format!("df -Pk {quoted}")).ok()?;
    let mut s = String::new();
    ch.read_to_string(&mut s).ok()?;
    let _ = ch.wait_close();
    let line = s.lines().nth(1)?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let total: u64 = f.get(1)?.parse().ok()?;
    let avail: u64 = f.get(3)?.parse().ok()?;
    Some((total * 1024, avail * 1024))
}

/// Connect with the pin and check the directory: (total, available) bytes or why not usable.
pub fn probe(r: &Remote) -> std::result::Result<(u64, u64), String> {
    r.connect().map_err(|e| e.to_string())?.check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_render_like_openssh() {
        // sha256 of nothing, as OpenSSH would print a key with that hash
        let h = hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap_or_default();
        assert_eq!(
            fingerprint_of(&h),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert!(keel_api::backup::valid_ssh_fingerprint(&fingerprint_of(&h)));
    }
}

#[cfg(test)]
mod key_dir_tests {
    use super::*;

    #[test]
    fn keys_must_be_inside_the_key_dir() {
        let t = std::env::temp_dir().join(format!("keel-keydir-{}", std::process::id()));
        let dir = t.join("backup-keys");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let inside = dir.join("k");
        let outside = t.join("k");
        std::fs::write(&inside, "x").expect("write");
        std::fs::write(&outside, "x").expect("write");
        assert_eq!(key_outside(&inside, &dir), None);
        let m = key_outside(&outside, &dir).expect("refused");
        assert!(m.contains("must be in"), "{m}");
        // `..` out of the directory is resolved, not trusted
        assert!(key_outside(&dir.join("../k"), &dir).is_some());
        #[cfg(unix)]
        {
            let link = dir.join("link");
            let _ = std::os::unix::fs::symlink(&outside, &link);
            assert!(key_outside(&link, &dir).is_some(), "a link out is refused");
        }
        let _ = std::fs::remove_dir_all(&t);
    }
}
