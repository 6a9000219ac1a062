//! The TCG VM lab: N QEMU guests booted from Keel's node image (`iso/node/build.sh`).
//!
//! Each node is a per-node qcow2 overlay of the cached image, booted directly (kernel + busybox
//! initramfs) under TCG with `-smp 1 -m 1024`, a distinct `-uuid`, and its identity (hostname,
//! machine-id, iSCSI initiator name, private address, SSH key) on the kernel command line, so no
//! identity is ever cloned. NICs: `eth0` user-mode (restrict=on: only an SSH hostfwd on
//! 127.0.0.1 and the fence guestfwd at 10.0.2.100:7000), `eth1`/`eth2` private links on QEMU
//! socket netdevs (bonded by the guest into `bond0`), `vdb` a data disk (DRBD).
//!
//! Fault injection is one QMP call: [`VmLab::crash`], [`VmLab::power_off`], [`VmLab::power_on`],
//! [`VmLab::reset`], [`VmLab::freeze`]/[`VmLab::thaw`], [`VmLab::cut_link`]/[`VmLab::restore_link`]
//! (both ends of the link, like a real cable). Guests fence each other with `fence_keel_lab`
//! (in the image), which reaches `tests/vmlab/fence-helper` on the host through the guestfwd.
//!
//! The lab only ever kills the QEMU processes it started (by PID). Its run directory
//! (`/var/tmp/keel-lab/<id>/`: serial logs, QMP sockets, overlays, fence log) is removed after a
//! successful run and kept on failure. `KEEL_LAB_KEEP=1` leaves the lab running and prints how to
//! reach it (see docs/labs-vm.md).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Root of all lab run directories.
pub const RUN_ROOT: &str = "/var/tmp/keel-lab";

/// Fail early, with what to do, when the file system holding `dir` has less than `need_gib`
/// GiB free. A lab that runs out of space mid-way does not fail cleanly: QEMU pauses a guest
/// whose disk write hits ENOSPC, and the test then times out waiting for SSH or a console line.
pub fn require_free_space(dir: &Path, need_gib: u64, what: &str) -> Result<()> {
    fs::create_dir_all(dir)?;
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .context("running df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let avail: u64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "df printed no free-space figure for {}: {text}",
                dir.display()
            )
        })?;
    let gib = avail >> 30;
    if gib < need_gib {
        bail!(
            "{what} needs {need_gib} GiB free under {} but only {gib} GiB is free: \
             free space there (old lab runs under {RUN_ROOT}, stale cargo target dirs) and rerun",
            dir.display()
        );
    }
    Ok(())
}

/// QEMU's run state from QMP (`running`, `paused`, `io-error`, …), for failure messages: a
/// guest stopped by an I/O error otherwise looks like a hung boot.
pub fn qemu_run_state(qmp: &Path) -> String {
    match qmp_call(qmp, "query-status", None) {
        Ok(v) => v["status"].as_str().unwrap_or("unknown").to_string(),
        Err(e) => format!("unknown ({e:#})"),
    }
}

/// The built node image (see `iso/node/build.sh`).
#[derive(Debug, Clone)]
pub struct NodeImage {
    pub dir: PathBuf,
    pub qcow2: PathBuf,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Seconds the build script took (a cache hit is ~0).
    pub seconds: f64,
}

fn repo_root() -> PathBuf {
    // tests/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build the node image, or reuse the cached one whose key matches the recipe files.
pub fn node_image() -> Result<NodeImage> {
    let t0 = Instant::now();
    let script = repo_root().join("iso/node/build.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(
        stdout
            .lines()
            .last()
            .ok_or_else(|| anyhow!("build.sh printed no image directory"))?
            .trim(),
    );
    let img = NodeImage {
        qcow2: dir.join("rootfs.qcow2"),
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.gz"),
        dir,
        seconds: t0.elapsed().as_secs_f64(),
    };
    for p in [&img.qcow2, &img.kernel, &img.initramfs] {
        if !p.exists() {
            bail!("node image is missing {}", p.display());
        }
    }
    Ok(img)
}

/// Lab parameters.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub nodes: usize,
    pub mem_mib: u32,
    /// Size of each node's second disk (`/dev/vdb`).
    pub data_disk_mib: u32,
    /// TCG translation-block cache size (MiB).
    pub tb_size_mib: u32,
    pub boot_timeout: Duration,
    /// Run every [`Node::exec`] over one SSH master connection per node (OpenSSH connection
    /// multiplexing) instead of a new connection per command. Under TCG a new connection's key
    /// exchange costs the guest seconds of CPU, which a scenario that polls pays on every poll
    /// (and which slows down the engines it waits for). See [`Node::exec`] for resets.
    pub ssh_mux: bool,
    /// Run each node as a libvirt domain with emulated BMCs in front (virtualbmc for IPMI,
    /// sushy-tools for Redfish; [`crate::bmc`]), so the nodes fence each other with Debian's
    /// `fence_ipmilan` and `fence_redfish`. The lab's QMP sockets stay (passed through to
    /// QEMU); the QMP fence channel (`fence_keel_lab`) does not exist in this mode, and the
    /// two-node private links are UDP pairs (a power cycle restarts QEMU, and a TCP socket
    /// link would not reconnect).
    pub bmc: bool,
    /// A small disk shared by every node (`/dev/disk/by-id/virtio-keel-sbd`, one raw file
    /// opened by each QEMU with `share-rw`), for SBD.
    pub sbd_disk: bool,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            nodes: 2,
            mem_mib: 1024,
            data_disk_mib: 512,
            tb_size_mib: 256,
            boot_timeout: Duration::from_secs(300),
            ssh_mux: false,
            bmc: false,
            sbd_disk: false,
        }
    }
}

/// One lab guest.
#[derive(Debug)]
pub struct Node {
    /// 1-based index.
    pub index: usize,
    /// `node1`, `node2`, …
    pub name: String,
    /// Address on the private bonded links.
    pub addr: String,
    pub iqn: String,
    pub ssh_port: u16,
    pub qmp_path: PathBuf,
    pub serial_log: PathBuf,
    /// Seconds from QEMU start to the first successful SSH command.
    pub boot_to_ssh: f64,
    key: PathBuf,
    child: Option<Child>,
    pid: u32,
    /// The libvirt domain (BMC labs), whose QEMU PID changes with each power cycle.
    pub domain: Option<String>,
    mux: Option<Mux>,
}

/// A node's SSH master connection (the lab's own `ssh -M` child) and its control socket.
#[derive(Debug)]
struct Mux {
    socket: PathBuf,
    /// The master and the guest's boot count when it was started.
    master: std::sync::Mutex<Option<(Child, usize)>>,
}

/// Output of a remote command.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Node {
    pub fn pid(&self) -> u32 {
        match &self.domain {
            Some(d) => fs::read_to_string(format!("/run/libvirt/qemu/{d}.pid"))
                .ok()
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0),
            None => self.pid,
        }
    }

    /// The options every SSH connection to this node uses (client and master alike).
    fn ssh_base(&self) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-q", "-i"])
            .arg(&self.key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=6",
                "-p",
            ])
            .arg(self.ssh_port.to_string());
        c
    }

    fn ssh_command(&self, cmd: &str) -> Command {
        let mut c = self.ssh_base();
        if let Some(m) = &self.mux {
            // a missing or dead control socket makes ssh connect directly, as without one
            c.args(["-o", "ControlMaster=no", "-o"])
                .arg(format!("ControlPath={}", m.socket.display()));
        }
        c.arg("root@127.0.0.1")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// With multiplexing on: make sure a master connection runs for the guest's current boot,
    /// and wait (at most `timeout`) until it is up, so a command is not a second key exchange
    /// beside the master's. A master left from before a reset (fencing, a crash) is killed at
    /// once rather than left to notice the dead connection through its keepalives (commands
    /// sent over it would hang until then); a master that exited (guest down, connection
    /// refused) is started again. When the master cannot connect, the command connects
    /// directly and fails or succeeds as it would without multiplexing.
    fn ensure_master(&self, timeout: Duration) -> Result<()> {
        let Some(m) = &self.mux else { return Ok(()) };
        let boots = self.boots();
        {
            let mut g = m
                .master
                .lock()
                .map_err(|_| anyhow!("{}: SSH master lock poisoned", self.name))?;
            let current = match g.as_mut() {
                Some((c, at)) => c.try_wait()?.is_none() && *at == boots,
                None => false,
            };
            if !current {
                if let Some((mut c, _)) = g.take() {
                    // our own ssh master, by its handle
                    let _ = c.kill();
                    let _ = c.wait();
                }
                // a socket left by a master that died would make the new one run without
                // multiplexing
                let _ = fs::remove_file(&m.socket);
                let child = self
                    .ssh_base()
                    .args(["-M", "-N", "-o", "ControlPersist=no", "-o"])
                    .arg(format!("ControlPath={}", m.socket.display()))
                    .arg("root@127.0.0.1")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("spawning the ssh master")?;
                *g = Some((child, boots));
            }
        }
        let t0 = Instant::now();
        while !m.socket.exists() && t0.elapsed() < timeout {
            let alive = {
                let mut g = m
                    .master
                    .lock()
                    .map_err(|_| anyhow!("{}: SSH master lock poisoned", self.name))?;
                match g.as_mut() {
                    Some((c, _)) => c.try_wait()?.is_none(),
                    None => false,
                }
            };
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stop this node's SSH master, if any (our own child, by its handle).
    fn stop_master(&self) {
        if let Some(m) = &self.mux {
            if let Ok(mut g) = m.master.lock() {
                if let Some((mut c, _)) = g.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            let _ = fs::remove_file(&m.socket);
        }
    }

    /// Run `cmd` (a shell command line) on the node; returns its exit code and output.
    pub fn exec(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        self.ensure_master(timeout.min(Duration::from_secs(30)))?;
        let mut child = self.ssh_command(cmd).spawn().context("spawning ssh")?;
        let mut so = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no ssh stdout"))?;
        let mut se = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no ssh stderr"))?;
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = so.read_to_string(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = se.read_to_string(&mut s);
            s
        });
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break Some(st);
            }
            if t0.elapsed() > timeout {
                // Our own ssh child, by handle.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = t_out.join().unwrap_or_default();
        let stderr = t_err.join().unwrap_or_default();
        match status {
            None => bail!("{}: `{cmd}` timed out after {timeout:?}", self.name),
            Some(st) => Ok(Output {
                code: st.code().unwrap_or(-1),
                stdout,
                stderr,
            }),
        }
    }

    /// Run `cmd` on the node and return its stdout; a non-zero exit is an error.
    pub fn ssh(&self, cmd: &str) -> Result<String> {
        self.ssh_t(cmd, Duration::from_secs(180))
    }

    /// [`Node::ssh`] with an explicit timeout.
    pub fn ssh_t(&self, cmd: &str, timeout: Duration) -> Result<String> {
        let o = self.exec(cmd, timeout)?;
        if o.code != 0 {
            bail!(
                "{}: `{cmd}` exited {}: {}{}",
                self.name,
                o.code,
                o.stdout.trim(),
                o.stderr.trim()
            );
        }
        Ok(o.stdout)
    }

    /// One QMP command on this node's harness monitor.
    pub fn qmp(&self, cmd: &str, args: Option<Value>) -> Result<Value> {
        qmp_call(&self.qmp_path, cmd, args).with_context(|| format!("{}: QMP {cmd}", self.name))
    }

    /// QEMU's `query-status` "running" flag.
    pub fn running(&self) -> Result<bool> {
        Ok(self.qmp("query-status", None)?["running"].as_bool() == Some(true))
    }

    /// Peak resident set size of this guest's QEMU process (KiB), from /proc.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let pid = self.pid();
        let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no VmHWM for pid {pid}"))
    }

    /// Number of times the guest reached lab-init (i.e. booted) since QEMU started.
    pub fn boots(&self) -> usize {
        fs::read_to_string(&self.serial_log)
            .map(|s| s.matches("KEEL-LAB-INIT").count())
            .unwrap_or(0)
    }
}

/// Minimal QMP client: connect, negotiate, run one command, return its `return` value.
pub fn qmp_call(sock: &Path, cmd: &str, args: Option<Value>) -> Result<Value> {
    let s = UnixStream::connect(sock).with_context(|| format!("connect {}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?; // greeting
    let mut send = |v: Value| -> Result<()> {
        writeln!(w, "{v}")?;
        w.flush()?;
        Ok(())
    };
    let reply = |r: &mut BufReader<UnixStream>| -> Result<Value> {
        loop {
            let mut l = String::new();
            if r.read_line(&mut l)? == 0 {
                bail!("QMP connection closed");
            }
            let v: Value = serde_json::from_str(&l)?;
            if let Some(e) = v.get("error") {
                bail!("QMP error: {e}");
            }
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
        }
    };
    send(json!({"execute": "qmp_capabilities"}))?;
    reply(&mut r)?;
    let mut m = json!({"execute": cmd});
    if let Some(a) = args {
        m["arguments"] = a;
    }
    send(m)?;
    reply(&mut r)
}

/// A running lab. Dropping it kills its own QEMU processes (by PID).
pub struct VmLab {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    pub image: NodeImage,
    pub key: PathBuf,
    /// Wall time from the first QEMU start until every node answered SSH.
    pub boot_seconds: f64,
    keep: bool,
    passed: bool,
    /// The emulated BMCs of a [`LabConfig::bmc`] lab.
    bmcs: Option<crate::bmc::Bmcs>,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn virsh(args: &[&str]) -> Result<()> {
    run(Command::new("virsh")
        .args(["-c", crate::bmc::LIBVIRT_URI])
        .args(args))
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn tcp_listening(port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    fs::read_to_string("/proc/net/tcp")
        .map(|s| {
            s.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && format!("{} ", f[1]).ends_with(&needle) && f[3] == "0A"
            })
        })
        .unwrap_or(false)
}

fn hex_id(seed: &str) -> String {
    hex::encode(Sha256::digest(seed.as_bytes()))[..32].to_string()
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Poll `f` every `every` until it returns Ok(true), or fail after `timeout` with the last error.
pub fn wait_for<F>(what: &str, timeout: Duration, mut f: F) -> Result<Duration>
where
    F: FnMut() -> Result<bool>,
{
    let t0 = Instant::now();
    let mut last;
    loop {
        match f() {
            Ok(true) => return Ok(t0.elapsed()),
            Ok(false) => last = "condition false".into(),
            Err(e) => last = format!("{e:#}"),
        }
        if t0.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
}

impl VmLab {
    /// Boot `n` nodes with the default configuration.
    pub fn up(n: usize) -> Result<Self> {
        Self::up_with(LabConfig {
            nodes: n,
            ..LabConfig::default()
        })
    }

    pub fn up_with(cfg: LabConfig) -> Result<Self> {
        if cfg.nodes == 0 || cfg.nodes > 9 {
            bail!("a lab has 1..=9 nodes");
        }
        require_free_space(Path::new(RUN_ROOT), 4 + 2 * cfg.nodes as u64, "the VM lab")?;
        let image = node_image()?;
        let id = format!(
            "lab-{}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs(),
            std::process::id()
        );
        let dir = Path::new(RUN_ROOT).join(&id);
        fs::create_dir_all(&dir)?;
        let key = dir.join("id_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "keel-lab", "-f"])
            .arg(&key))?;
        let pubkey = fs::read_to_string(dir.join("id_ed25519.pub"))?;
        let mut parts = pubkey.split_whitespace();
        let sshkey = format!(
            "{}:{}",
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default()
        );
        let helper = repo_root().join("tests/vmlab/fence-helper");
        let helper = helper.canonicalize().unwrap_or(helper);

        // Private links: two per node. Two nodes: point-to-point TCP sockets (node1 listens).
        // More nodes: one UDP multicast segment per link.
        let link_ports = [free_port()?, free_port()?];
        let mut lab = VmLab {
            dir: dir.clone(),
            nodes: Vec::new(),
            image,
            key: key.clone(),
            boot_seconds: 0.0,
            passed: false,
            keep: std::env::var("KEEL_LAB_KEEP").is_ok_and(|v| v == "1"),
            bmcs: None,
        };
        if cfg.bmc {
            Command::new("virsh")
                .args(["-c", crate::bmc::LIBVIRT_URI, "version"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .ok_or_else(|| {
                    anyhow!(
                        "a BMC lab runs its nodes under libvirtd, which does not answer at {} \
                         (bash -c 'source scripts/lib.sh; keel_start_libvirt')",
                        crate::bmc::LIBVIRT_URI
                    )
                })?;
        }
        // BMC labs, two nodes: each link a pair of UDP sockets, [node][link] local ports.
        let udp_ports = [[free_port()?, free_port()?], [free_port()?, free_port()?]];
        let mut bmc_nodes = Vec::new();
        let t0 = Instant::now();
        let mut started = Vec::new();
        let sbd_disk = dir.join("shared-sbd.raw");
        if cfg.sbd_disk {
            fs::File::create(&sbd_disk)?.set_len(16 << 20)?;
        }
        for i in 1..=cfg.nodes {
            let name = format!("node{i}");
            let overlay = dir.join(format!("{name}.qcow2"));
            run(Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                .arg(&lab.image.qcow2)
                .arg(&overlay))?;
            let data = dir.join(format!("{name}-data.raw"));
            fs::File::create(&data)?.set_len(u64::from(cfg.data_disk_mib) << 20)?;
            let ssh_port = free_port()?;
            let seed = format!("{id}/{name}");
            let mid = hex_id(&seed);
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &mid[0..8],
                &mid[8..12],
                &mid[12..16],
                &mid[16..20],
                &mid[20..32]
            );
            let addr = format!("10.99.0.{i}");
            let iqn = format!("iqn.2024-01.lab.keel:{name}");
            let append = format!(
                "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet panic=5 lab.host={name} \
                 systemd.machine_id={mid} lab.iqn={iqn} lab.addr={addr}/24 lab.sshkey={sshkey}"
            );
            let qmp_path = dir.join(format!("{name}.qmp"));
            let fence_qmp = dir.join(format!("{name}.fence.qmp"));
            let serial_log = dir.join(format!("{name}.serial"));
            let mut c = Command::new("qemu-system-x86_64");
            c.args(["-name", &name]);
            // Devices: the same for a QEMU we start and for a libvirt domain (passed through).
            let mut dev: Vec<String> = vec![
                "-drive".into(),
                format!(
                    "file={},if=virtio,format=qcow2,cache=unsafe",
                    overlay.display()
                ),
                "-drive".into(),
                format!(
                    "file={},if=virtio,format=raw,cache=none,aio=threads",
                    data.display()
                ),
            ];
            if cfg.sbd_disk {
                // one file, every node: O_DIRECT (cache=none), no image locking between the QEMUs
                dev.extend([
                    "-drive".into(),
                    format!(
                        "file={},if=none,id=sbd0,format=raw,cache=none,aio=threads,file.locking=off",
                        sbd_disk.display()
                    ),
                    "-device".into(),
                    // the last PCI slot: probed after the `if=virtio` disks, so it is /dev/vdc
                    "virtio-blk-pci,drive=sbd0,serial=keel-sbd,share-rw=on,addr=0x1f".into(),
                ]);
            }
            dev.extend([
                "-netdev".into(),
                if cfg.bmc {
                    // The BMCs listen on the host's loopback: 10.0.2.2 from the guest (no
                    // restrict=on, which would block it). No guestfwd cmd: libvirt's seccomp
                    // sandbox forbids QEMU to spawn it, and fencing goes through the BMCs.
                    format!("user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22")
                } else {
                    format!(
                        "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22,\
                         guestfwd=tcp:10.0.2.100:7000-cmd:{} {}",
                        helper.display(),
                        dir.display()
                    )
                },
                "-device".into(),
                format!("virtio-net-pci,netdev=n0,mac=52:54:00:00:0{i}:00"),
            ]);
            for (l, port) in link_ports.iter().enumerate() {
                let l = l + 1;
                let sock = if cfg.nodes == 2 && cfg.bmc {
                    let (me, peer) = if i == 1 { (0, 1) } else { (1, 0) };
                    format!(
                        "udp=127.0.0.1:{},localaddr=127.0.0.1:{}",
                        udp_ports[peer][l - 1],
                        udp_ports[me][l - 1]
                    )
                } else if cfg.nodes == 2 {
                    if i == 1 {
                        format!("listen=127.0.0.1:{port}")
                    } else {
                        format!("connect=127.0.0.1:{port}")
                    }
                } else {
                    format!("mcast=230.0.99.{l}:{port},localaddr=127.0.0.1")
                };
                dev.extend([
                    "-netdev".into(),
                    format!("socket,id=l{l},{sock}"),
                    "-device".into(),
                    format!("virtio-net-pci,netdev=l{l},mac=52:54:00:00:0{i}:0{l}"),
                ]);
            }
            dev.extend([
                "-chardev".into(),
                // append: a power cycle (BMC labs) restarts QEMU; boots() counts across it
                format!("file,id=ser0,path={},append=on", serial_log.display()),
                "-serial".into(),
                "chardev:ser0".into(),
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", qmp_path.display()),
            ]);
            let (child, pid, domain) = if cfg.bmc {
                let domain = format!("keel-{id}-{name}");
                let args: String = dev
                    .iter()
                    .map(|a| format!("    <qemu:arg value='{}'/>\n", xml_escape(a)))
                    .collect();
                let xml = format!(
                    "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n\
                     \x20 <name>{domain}</name>\n  <uuid>{uuid}</uuid>\n\
                     \x20 <memory unit='MiB'>{mem}</memory>\n  <vcpu>1</vcpu>\n\
                     \x20 <os><type arch='x86_64' machine='pc'>hvm</type>\n\
                     \x20   <kernel>{kernel}</kernel><initrd>{initrd}</initrd>\n\
                     \x20   <cmdline>{cmdline}</cmdline></os>\n\
                     \x20 <features><tcg><tb-cache unit='MiB'>{tb}</tb-cache></tcg></features>\n\
                     \x20 <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>\n\
                     \x20 <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>\n\
                     \x20 <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>\n\
                     \x20 <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\
                     <controller type='usb' model='none'/><memballoon model='none'/></devices>\n\
                     \x20 <qemu:commandline>\n{args}  </qemu:commandline>\n</domain>\n",
                    mem = cfg.mem_mib,
                    kernel = xml_escape(&lab.image.kernel.display().to_string()),
                    initrd = xml_escape(&lab.image.initramfs.display().to_string()),
                    cmdline = xml_escape(&append),
                    tb = cfg.tb_size_mib,
                );
                let xml_path = dir.join(format!("{name}.xml"));
                fs::write(&xml_path, &xml)?;
                virsh(&["define", &xml_path.display().to_string()])?;
                if let Err(e) = virsh(&["start", &domain]) {
                    let _ = virsh(&["undefine", &domain]);
                    return Err(e);
                }
                bmc_nodes.push(crate::bmc::BmcNode {
                    node: name.clone(),
                    domain: domain.clone(),
                    uuid: uuid.clone(),
                });
                let pid = fs::read_to_string(format!("/run/libvirt/qemu/{domain}.pid"))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or(0);
                (None, pid, Some(domain))
            } else {
                c.args(["-accel", &format!("tcg,tb-size={}", cfg.tb_size_mib)])
                    .args(["-machine", "pc", "-cpu", "qemu64", "-smp", "1"])
                    .args(["-m", &cfg.mem_mib.to_string()])
                    .args(["-uuid", &uuid])
                    .args(["-nodefaults", "-no-user-config", "-display", "none"])
                    .arg("-kernel")
                    .arg(&lab.image.kernel)
                    .arg("-initrd")
                    .arg(&lab.image.initramfs)
                    .args(["-append", &append])
                    .args(&dev)
                    .arg("-qmp")
                    .arg(format!("unix:{},server=on,wait=off", fence_qmp.display()))
                    .stdin(Stdio::null())
                    .stdout(fs::File::create(dir.join(format!("{name}.qemu.log")))?)
                    .stderr(fs::File::create(dir.join(format!("{name}.qemu.err")))?);
                fs::write(dir.join(format!("{name}.cmdline")), format!("{c:?}\n"))?;
                let child = c.spawn().context("starting qemu-system-x86_64")?;
                let pid = child.id();
                (Some(child), pid, None)
            };
            fs::write(dir.join(format!("{name}.pid")), format!("{pid}\n"))?;
            let mux_socket = dir.join(format!("{name}.ssh"));
            lab.nodes.push(Node {
                index: i,
                name,
                addr,
                iqn,
                ssh_port,
                qmp_path,
                serial_log,
                boot_to_ssh: 0.0,
                key: key.clone(),
                child,
                pid,
                domain,
                mux: cfg.ssh_mux.then(|| Mux {
                    socket: mux_socket,
                    master: std::sync::Mutex::new(None),
                }),
            });
            started.push(Instant::now());
            if cfg.nodes == 2 && i == 1 && !cfg.bmc {
                // node2 connects to node1's listening link sockets.
                wait_for("node1 link sockets", Duration::from_secs(30), || {
                    Ok(link_ports.iter().all(|p| tcp_listening(*p)))
                })?;
            }
        }
        if cfg.bmc {
            lab.bmcs = Some(crate::bmc::Bmcs::start(&dir, &bmc_nodes)?);
        }
        // Wait for every node to answer SSH.
        let deadline = Instant::now() + cfg.boot_timeout;
        for (k, node) in lab.nodes.iter_mut().enumerate() {
            loop {
                if let Some(ch) = node.child.as_mut() {
                    if let Some(st) = ch.try_wait()? {
                        bail!(
                            "{} QEMU exited ({st}); see {}",
                            node.name,
                            dir.join(format!("{}.qemu.err", node.name)).display()
                        );
                    }
                }
                if let Ok(o) = node.exec("cat /etc/hostname", Duration::from_secs(20)) {
                    if o.code == 0 {
                        if o.stdout.trim() != node.name {
                            bail!("{} reports hostname {:?}", node.name, o.stdout.trim());
                        }
                        node.boot_to_ssh = started[k].elapsed().as_secs_f64();
                        break;
                    }
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} did not answer ssh within {:?}; serial log {}",
                        node.name,
                        cfg.boot_timeout,
                        node.serial_log.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(1000));
            }
        }
        lab.boot_seconds = t0.elapsed().as_secs_f64();
        if lab.keep {
            lab.print_access();
        }
        Ok(lab)
    }

    /// Node by 1-based index.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    fn nodes_idx(&self, i: usize) -> Result<&Node> {
        self.nodes
            .get(i.wrapping_sub(1))
            .ok_or_else(|| anyhow!("no node{i} in this lab"))
    }

    /// Run `cmd` on all nodes in parallel; every node must succeed.
    pub fn ssh_all(&self, cmd: &str) -> Result<Vec<String>> {
        std::thread::scope(|s| {
            let hs: Vec<_> = self
                .nodes
                .iter()
                .map(|n| s.spawn(move || n.ssh(cmd)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().map_err(|_| anyhow!("ssh thread panicked"))?)
                .collect()
        })
    }

    fn qmp(&self, i: usize, cmd: &str, args: Option<Value>) -> Result<Value> {
        self.nodes_idx(i)?.qmp(cmd, args)
    }

    /// The node hangs dead (CPUs stopped, no cleanup); only fencing or `power_on` revives it —
    /// and it then boots from scratch (its RAM state is discarded).
    pub fn crash(&self, i: usize) -> Result<()> {
        self.qmp(i, "stop", None)?;
        self.qmp(i, "system_reset", None).map(|_| ())
    }

    /// Power the node off (same machine state as a crash; named for intent).
    pub fn power_off(&self, i: usize) -> Result<()> {
        self.crash(i)
    }

    /// Power the node on (after `power_off`/`crash`/fencing off) — it boots.
    pub fn power_on(&self, i: usize) -> Result<()> {
        self.qmp(i, "cont", None).map(|_| ())
    }

    /// Hard reset (reboot without shutdown).
    pub fn reset(&self, i: usize) -> Result<()> {
        self.qmp(i, "system_reset", None).map(|_| ())
    }

    /// Stop the node's CPUs, keeping its state (a long stall); `thaw` resumes it.
    pub fn freeze(&self, i: usize) -> Result<()> {
        self.qmp(i, "stop", None).map(|_| ())
    }

    pub fn thaw(&self, i: usize) -> Result<()> {
        self.qmp(i, "cont", None).map(|_| ())
    }

    fn set_link(&self, i: usize, link: usize, up: bool) -> Result<()> {
        if !(1..=2).contains(&link) {
            bail!("links are 1 and 2");
        }
        let name = format!("l{link}");
        // Both ends, like a real cable: with two nodes the peer's NIC too.
        let ends: Vec<usize> = if self.nodes.len() == 2 {
            vec![1, 2]
        } else {
            vec![i]
        };
        for n in ends {
            self.qmp(n, "set_link", Some(json!({"name": name, "up": up})))?;
        }
        Ok(())
    }

    /// Pull the cable of private link `link` (1 or 2, = eth1/eth2) of node `i`.
    pub fn cut_link(&self, i: usize, link: usize) -> Result<()> {
        self.set_link(i, link, false)
    }

    pub fn restore_link(&self, i: usize, link: usize) -> Result<()> {
        self.set_link(i, link, true)
    }

    /// Cut node `i` off the private network completely: link 2 (the bond's backup) first, then
    /// link 1, so the bond never fails over onto a cable about to go. With two nodes both ends
    /// of both cables go down — corosync has no path left.
    pub fn isolate(&self, i: usize) -> Result<()> {
        self.cut_link(i, 2)?;
        self.cut_link(i, 1)
    }

    /// Undo [`VmLab::isolate`] (link 1 first: the bond's primary).
    pub fn reconnect(&self, i: usize) -> Result<()> {
        self.restore_link(i, 1)?;
        self.restore_link(i, 2)
    }

    /// Mark the scenario as passed: on drop the run directory is then removed (it is kept otherwise).
    pub fn passed(&mut self) {
        self.passed = true;
    }

    /// The emulated BMCs (labs started with [`LabConfig::bmc`]).
    pub fn bmcs(&self) -> Option<&crate::bmc::Bmcs> {
        self.bmcs.as_ref()
    }

    /// Lines of the host-side fence log: requests from guests' fence agents (QMP labs), or what
    /// the emulated BMCs did and the domains' power events (BMC labs, see [`crate::bmc`]).
    pub fn fence_log(&self) -> String {
        fs::read_to_string(self.dir.join("fence.log")).unwrap_or_default()
    }

    /// Leave the lab running after this handle goes away (used by `keel-lab up`): QEMU keeps
    /// running, nothing is killed or removed; the caller records the PIDs (`nodeN.pid` are
    /// written anyway). Returns the run directory.
    pub fn detach(mut self) -> PathBuf {
        for n in &mut self.nodes {
            n.stop_master();
            if let Some(c) = n.child.take() {
                std::mem::forget(c);
            }
        }
        let dir = self.dir.clone();
        // Skip Drop entirely: nothing to kill any more, and the run dir must stay.
        std::mem::forget(self);
        dir
    }

    fn print_access(&self) {
        eprintln!(
            "KEEL_LAB_KEEP=1: lab left running in {}",
            self.dir.display()
        );
        for n in &self.nodes {
            eprintln!(
                "  {} pid {}: ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -p {} root@127.0.0.1   (QMP {})",
                n.name,
                n.pid,
                self.key.display(),
                n.ssh_port,
                n.qmp_path.display()
            );
        }
        eprintln!("  stop it: kill $(cat {}/node*.pid)", self.dir.display());
    }
}

impl Drop for VmLab {
    fn drop(&mut self) {
        let failed = std::thread::panicking() || !self.passed;
        for n in &self.nodes {
            n.stop_master();
        }
        if self.keep {
            self.print_access();
            for n in &mut self.nodes {
                // Leave QEMU running on purpose; the pid files say how to stop it.
                if let Some(c) = n.child.take() {
                    std::mem::forget(c);
                }
            }
            // and the BMCs (their pids are in the run directory's logs)
            if let Some(b) = self.bmcs.take() {
                std::mem::forget(b);
            }
            return;
        }
        // BMCs first (they could power a domain back on), then our own domains.
        if let Some(mut b) = self.bmcs.take() {
            b.stop();
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill(); // only our own QEMU, by its handle/PID
                let _ = c.wait();
            }
            if let Some(d) = &n.domain {
                let _ = virsh(&["destroy", d]);
                let _ = virsh(&["undefine", d]);
            }
        }
        if failed {
            eprintln!("VM lab failed; run directory kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
