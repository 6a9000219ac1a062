//! A corosync-qnetd arbiter on the host for the VM lab: the third vote of a two-guest cluster.
//! It listens on the host's loopback, which the guests reach at 10.0.2.2 through QEMU's user
//! network (BMC labs, whose user network is not `restrict=on`), and runs in a private mount
//! namespace: its NSS database (`/etc/corosync/qnetd`) and run directory are the lab's, not
//! the host's. The operator's certificate steps of docs/cluster.md ("QDevice") run in that
//! namespace too ([`HostQnetd::certutil`]).
//!
//! Only the process started here is stopped, by its handle.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running corosync-qnetd (stopped on drop).
pub struct HostQnetd {
    /// The TCP port on the host's loopback.
    pub port: u16,
    /// Its `/etc/corosync` (the lab's).
    pub etc: PathBuf,
    child: Child,
}

/// The mounts that give a command the qnetd's private `/etc/corosync` and `/run`.
fn private_mounts(etc: &Path) -> String {
    format!(
        "mount --bind '{}' /etc/corosync && mount -t tmpfs keel-qnetd-run /run && \
         mkdir -p /run/corosync-qnetd",
        etc.display()
    )
}

/// Run `cmd` (described as `what` in errors); its standard output, or why it failed.
fn output_of(mut cmd: Command, what: &str) -> Result<String> {
    let o = cmd.output().with_context(|| what.to_string())?;
    if !o.status.success() {
        bail!(
            "{what}: {}{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `sh -c SCRIPT` in a new private mount namespace, its output.
fn in_private_ns(etc: &Path, script: &str) -> Result<String> {
    let full = format!("{} && {script}", private_mounts(etc));
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &full]);
    output_of(c, script)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl HostQnetd {
    /// Make its CA and server certificate (`corosync-qnetd-certutil -i`) under `dir`, start it
    /// on 127.0.0.1 and wait until it answers `corosync-qnetd-tool -s`.
    pub fn start(dir: &Path) -> Result<HostQnetd> {
        let etc = dir.join("qnetd-etc");
        fs::create_dir_all(etc.join("qnetd"))?;
        in_private_ns(&etc, "corosync-qnetd-certutil -i >/dev/null")?;
        let port = free_port()?;
        let log = fs::File::create(dir.join("qnetd.out"))?;
        let script = format!(
            "{} && exec corosync-qnetd -f -l 127.0.0.1 -p {port}",
            private_mounts(&etc)
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting corosync-qnetd")?;
        let q = HostQnetd { port, etc, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if q.tool("-s").is_ok() {
                return Ok(q);
            }
            if Instant::now() > deadline {
                bail!(
                    "corosync-qnetd did not answer within 30 s: {}",
                    fs::read_to_string(dir.join("qnetd.out")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `corosync-qnetd-tool ARGS` against this qnetd (its socket is in its own namespace).
    pub fn tool(&self, args: &str) -> Result<String> {
        let what = format!("corosync-qnetd-tool {args}");
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.child.id().to_string(), "-m", "sh", "-c", &what]);
        output_of(c, &what)
    }

    /// The qnetd CA certificate (PEM), as an operator copies it to the cluster.
    pub fn ca_cert(&self) -> Result<String> {
        Ok(fs::read_to_string(
            self.etc.join("qnetd/nssdb/qnetd-cacert.crt"),
        )?)
    }

    /// Sign a cluster's certificate request (`qdevice-net-node.crq` from
    /// `corosync-qdevice-net-certutil -r -n CLUSTER`): the signed certificate.
    pub fn sign(&self, crq: &[u8], cluster: &str) -> Result<Vec<u8>> {
        fs::write(self.etc.join("qdevice-net-node.crq"), crq)?;
        in_private_ns(
            &self.etc,
            &format!(
                "corosync-qnetd-certutil -s -c /etc/corosync/qdevice-net-node.crq -n {cluster} >/dev/null"
            ),
        )?;
        Ok(fs::read(
            self.etc.join(format!("qnetd/nssdb/cluster-{cluster}.crt")),
        )?)
    }
}

impl Drop for HostQnetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
