//! Keel's own daemons on a netns lab node: the built binaries, a keel-hostd started in a node
//! (libvirt's test driver, the direct service manager, per-node SSH files) and the `keel` CLI
//! against it — shared by the scenarios that form clusters with Keel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::netns::{CmdOut, NetnsLab, Node, Service};

/// root's password on every lab node's hostd.
pub const PW: &str = "keel-lab-root-pw";
/// How long a node's API may take to answer after its start.
pub const START: Duration = Duration::from_secs(180);

/// A workspace binary from this build (`keel`, `keel-hostd`, `keel-clusterd`).
pub fn bin(name: &str) -> Result<PathBuf> {
    let t = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = t.join("debug").join(name);
    ensure!(
        p.exists(),
        "{} is not built: run cargo build --workspace --bins",
        p.display()
    );
    Ok(p)
}

/// Does this process run as root (the labs need it)?
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// A lab node running keel-hostd.
pub struct KNode<'a> {
    pub n: &'a Node,
    pub state: PathBuf,
}

impl KNode<'_> {
    /// The SHA-256 fingerprint of this node's API certificate.
    pub fn fingerprint(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.state.join("hostd.fingerprint"))?
                .trim()
                .to_string(),
        )
    }

    /// `keel` against this node's own API, logged in as root.
    pub fn keel(&self, args: &[&str]) -> Result<CmdOut> {
        let keel = bin("keel")?;
        let fp = self.fingerprint()?;
        let mut argv = vec![
            keel.to_str().context("path")?,
            "--url",
            "https://127.0.0.1:8006",
            "--fingerprint",
            &fp,
            "--user",
            "root",
            "--password",
            PW,
        ];
        argv.extend_from_slice(args);
        self.n.run(&argv)
    }

    /// [`KNode::keel`] that must succeed; its stdout.
    pub fn keel_ok(&self, args: &[&str]) -> Result<String> {
        let o = self.keel(args)?;
        ensure!(
            o.success(),
            "{}: keel {args:?} failed: {}{}",
            self.n.name,
            o.stderr,
            o.stdout
        );
        Ok(o.stdout)
    }

    /// `keel join ADDRESS --fingerprint FP` with a join token (`--token`) or the member's root
    /// password (`--password`), as `auth` says: `("--token", T)` or `("--password", PW)`.
    pub fn join_with(
        &self,
        address: &str,
        fingerprint: &str,
        auth: (&str, &str),
    ) -> Result<CmdOut> {
        let keel = bin("keel")?;
        let state = self.state.display().to_string();
        self.n.run(&[
            keel.to_str().context("path")?,
            "join",
            address,
            "--fingerprint",
            fingerprint,
            auth.0,
            auth.1,
            "--state-dir",
            &state,
        ])
    }

    /// `keel join` with a join token.
    pub fn join(&self, address: &str, fingerprint: &str, token: &str) -> Result<CmdOut> {
        self.join_with(address, fingerprint, ("--token", token))
    }

    /// `keel join` authenticated by the member's root password.
    pub fn join_password(&self, address: &str, fingerprint: &str, pw: &str) -> Result<CmdOut> {
        self.join_with(address, fingerprint, ("--password", pw))
    }
}

/// `ui_dir = <repo>/ui/dist` when the UI is built (scripts/test.sh builds it before cargo test).
fn ui_line() -> String {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/dist");
    if d.join("index.html").exists() {
        format!("ui_dir = \"{}\"\n", d.display())
    } else {
        String::new()
    }
}

/// Start keel-hostd in `n` with a libvirt test-driver file holding `domains` (XML), the
/// direct service manager and per-node SSH files; waits until its API answers.
pub fn start_hostd<'a>(lab: &NetnsLab, n: &'a Node, domains: &str) -> Result<KNode<'a>> {
    let virt = n.dir.join("keel/libvirt-test.xml");
    std::fs::create_dir_all(n.dir.join("keel"))?;
    std::fs::write(&virt, format!("<node>{domains}</node>\n"))?;
    let pkipath = pki_dir(n).join("client");
    start_hostd_on(
        lab,
        n,
        &format!("test://{}", virt.display()),
        "",
        &pkipath.display().to_string(),
    )
}

/// Start keel-hostd in `n` against the node's own private libvirtd (`qemu:///system` inside
/// the node's mount namespace: the lab must be up with `LabOpts::libvirt` and
/// [`NetnsLab::start_libvirtd`] called), so its VMs are real QEMU (TCG) guests. HA domain
/// XMLs go to `/var/lib/libvirt/keel-ha`, node-private in the lab like on a real node.
/// `cluster_extra`: more `[cluster]` lines of hostd.toml.
pub fn start_hostd_qemu<'a>(lab: &NetnsLab, n: &'a Node, cluster_extra: &str) -> Result<KNode<'a>> {
    start_hostd_on(
        lab,
        n,
        "qemu:///system",
        &format!("ha_config_dir = \"/var/lib/libvirt/keel-ha\"\n{cluster_extra}"),
        // the client side of libvirt TLS at the same path on every node (node-private in
        // the lab through its /var/lib/libvirt): HA VMs' resources name it in their remoteuri
        "/var/lib/libvirt/keel-pki-client",
    )
}

fn start_hostd_on<'a>(
    lab: &NetnsLab,
    n: &'a Node,
    libvirt_uri: &str,
    cluster_extra: &str,
    client_pkipath: &str,
) -> Result<KNode<'a>> {
    let d = n.dir.join("keel");
    let state = d.join("state");
    let ssh = d.join("ssh");
    for x in [&state, &ssh, &d.join("root-ssh")] {
        std::fs::create_dir_all(x)?;
    }
    // per-node SSH host key (the host's /etc/ssh is shared by every lab node)
    let hk = ssh.join("ssh_host_ed25519_key");
    if !hk.exists() {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", &n.name, "-f"])
            .arg(&hk)
            .output()?;
        ensure!(out.status.success(), "ssh-keygen failed");
    }
    let conf = d.join("hostd.toml");
    std::fs::write(
        &conf,
        format!(
            r#"node = "{name}"
listen = "[::]:8006"
state_dir = "{state}"
libvirt_uri = "{libvirt_uri}"
accel = "tcg"
service_manager = "direct"
backup_scheduler_tick_ms = 2000
{ui}
[cluster]
ssh_dir = "{ssh}"
known_hosts = "{ssh}/ssh_known_hosts"
root_ssh_dir = "{root}"
{cluster_extra}

[migration]
ca_file = "{pki}/CA/cacert.pem"
server_cert = "{pki}/libvirt/servercert.pem"
server_key = "{pki}/libvirt/private/serverkey.pem"
client_cert = "{pki}/libvirt/clientcert.pem"
client_key = "{pki}/libvirt/private/clientkey.pem"
client_pkipath = "{client_pkipath}"
qemu_tls_dir = "{pki}/qemu"
"#,
            name = n.name,
            state = state.display(),
            ssh = ssh.display(),
            root = d.join("root-ssh").display(),
            pki = pki_dir(n).display(),
            ui = ui_line(),
        ),
    )?;
    let hostd = bin("keel-hostd")?;
    let fpfile = state.join("hostd.fingerprint");
    let _ = std::fs::remove_file(&fpfile);
    n.spawn_daemon(
        Service::new(
            "keel-hostd",
            &[
                hostd.to_str().context("path")?,
                "--config",
                conf.to_str().context("path")?,
            ],
        )
        .env("KEEL_ADMIN_PASSWORD", PW)
        .env("RUST_LOG", "info")
        .ready(&["test", "-s", fpfile.to_str().context("path")?]),
    )?;
    let k = KNode { n, state };
    lab.wait_for(&format!("{} API answers", n.name), START, || {
        Ok(k.keel(&["node"])?.success())
    })?;
    Ok(k)
}

/// The node-private directory keel-hostd writes libvirt's and QEMU's TLS files into (its
/// `[migration]` paths: never the host's /etc/pki, which every lab node shares).
pub fn pki_dir(n: &Node) -> PathBuf {
    n.dir.join("keel/pki")
}

/// Where a node started by [`start_hostd_qemu`] keeps the client side of libvirt TLS
/// (`cacert.pem`, `clientcert.pem`, `clientkey.pem`): `/var/lib/libvirt/keel-pki-client` inside
/// the node, the same path on every node.
pub fn client_pki_dir(n: &Node) -> PathBuf {
    n.dir.join("libvirt/lib/keel-pki-client")
}

/// The TLS files hostd wrote for `n`, as the lab's libvirtd configuration takes them.
pub fn libvirt_tls(n: &Node) -> crate::netns::LibvirtTls {
    let p = pki_dir(n);
    crate::netns::LibvirtTls {
        ca_file: p.join("CA/cacert.pem"),
        server_cert: p.join("libvirt/servercert.pem"),
        server_key: p.join("libvirt/private/serverkey.pem"),
        qemu_dir: p.join("qemu"),
    }
}

/// Form a Keel cluster named `name` from `nodes` (already running hostd): `keel cluster init`
/// on the first with its lab IPv6 address as link0, `keel join` of the others with one-time
/// tokens through the first's pinned API, then one lab fence device per node
/// (`fence_keellab`, `action` = `off` or `reboot`) through `keel fence add`: fencing is on.
pub fn form_cluster(lab: &NetnsLab, nodes: &[&KNode], name: &str, action: &str) -> Result<()> {
    let (first, rest) = nodes.split_first().context("no nodes")?;
    let a1 = first.n.addr6.clone();
    first.keel_ok(&["cluster", "init", "--name", name, "--link0", &a1])?;
    let fp1 = first.fingerprint()?;
    let addr1 = format!("[{a1}]:8006");
    for k in rest {
        let tok = first.keel_ok(&["cluster", "join-token", "--ttl", "10m"])?;
        let o = k.join(&addr1, &fp1, tok.trim())?;
        ensure!(o.success(), "{} join: {}{}", k.n.name, o.stderr, o.stdout);
    }
    let labdir = lab.dir.display().to_string();
    for k in nodes {
        first.keel_ok(&[
            "fence",
            "add",
            &k.n.name,
            "--agent",
            "fence_keellab",
            "--param",
            &format!("lab_dir={labdir}"),
            "--param",
            &format!("action={action}"),
        ])?;
    }
    Ok(())
}
