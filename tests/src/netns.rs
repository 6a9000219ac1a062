//! The netns lab: N Keel nodes as namespaces on the host, started in about a second.
//!
//! Each node is a network namespace (one veth `e0` to a bridge that lives in a separate switch
//! namespace — nothing of the lab touches the host's network namespace) plus a private mount and
//! UTS namespace: tmpfs `/run` and `/dev/shm`; its own `/etc/corosync`, `/etc/pacemaker`,
//! `/var/lib/corosync`, `/var/lib/pacemaker`, `/var/log` and libvirt's `/etc`, `/run`,
//! `/var/lib`, `/var/cache` directories, all bind-mounted from the node's directory under the
//! lab's run directory; `/usr/sbin` overlaid with the lab fence agent (Pacemaker only looks
//! there). The namespaces are held by one `sleep infinity` anchor per node (`/proc/1/ns` is not
//! reachable on our CI hosts, so everything enters with `nsenter -t ANCHOR`).
//!
//! Real engines only: corosync, Pacemaker and libvirtd run unmodified inside the nodes. The lab
//! gives them configuration ([`CorosyncConf`], [`PacemakerSetup`]), fault injection
//! ([`NetnsLab::partition`], [`NetnsLab::power_off`]) and a STONITH agent (`fence_keellab`, see
//! `tests/netns/`) that powers nodes off the same way [`NetnsLab::power_off`] does.
//!
//! Teardown (on drop) kills only processes inside the lab's own namespaces, by PID; the
//! namespaces and their mounts disappear with their last process. The run directory
//! (`/var/tmp/keel-lab/<name>-<pid>-<n>/`) is removed on success and kept on failure.
//! See `docs/labs-netns.md`.

use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// IPv6 ULA /64 of the lab network (exists only on the lab bridge; no routes, no uplink).
pub const LAB_V6_PREFIX: &str = "fd6b:6565:6c00:1";
/// IPv4 /24 of the lab network (same bridge; used by libvirt migration traffic).
pub const LAB_V4_PREFIX: &str = "10.231.0";
/// IPv6 /64 of the optional second lab network ([`LabOpts::link1`]: corosync's link1).
pub const LAB_V6_PREFIX_LINK1: &str = "fd6b:6565:6c00:2";
/// Where run directories live.
pub const LAB_ROOT: &str = "/var/tmp/keel-lab";

static LAB_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Options for [`NetnsLab::up`].
#[derive(Clone, Debug)]
pub struct LabOpts {
    /// Prefix of the run directory name (letters, digits, `-`).
    pub name: String,
    /// Prepare per-node libvirt configuration (libvirtd is started by [`NetnsLab::start_libvirtd`]).
    pub libvirt: bool,
    /// Keep the run directory even when the lab ends successfully.
    pub keep_run_dir: bool,
    /// A second, independent network: bridge `br1` in the switch, veth `e1` per node with an
    /// address in [`LAB_V6_PREFIX_LINK1`] ([`Node::addr6_link1`]). A cable pull or a power off
    /// takes both networks down; [`NetnsLab::cut_link`] only one.
    pub link1: bool,
}

impl LabOpts {
    pub fn new(name: &str) -> Self {
        LabOpts {
            name: name.to_string(),
            libvirt: false,
            keep_run_dir: std::env::var_os("KEEL_LAB_KEEP").is_some(),
            link1: false,
        }
    }
}

/// Output of a command run in a node.
#[derive(Debug)]
pub struct CmdOut {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOut {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// A daemon started in a node and tracked by PID.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Command that succeeds once the daemon is ready (run in the node, polled).
    pub ready: Option<Vec<String>>,
}

impl Service {
    pub fn new(name: &str, argv: &[&str]) -> Self {
        Service {
            name: name.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            ready: None,
        }
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn ready(mut self, argv: &[&str]) -> Self {
        self.ready = Some(argv.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// One lab node.
pub struct Node {
    pub index: usize,
    pub name: String,
    /// Lab IPv6 address (corosync ring).
    pub addr6: String,
    /// Lab IPv4 address (libvirt, migration).
    pub addr4: String,
    /// Address on the second network (`e1`), when the lab has one ([`LabOpts::link1`]).
    pub addr6_link1: Option<String>,
    pub dir: PathBuf,
    anchor: u32,
    lab_dir: PathBuf,
    services: Mutex<Vec<Service>>,
    children: Mutex<Vec<(String, Child)>>,
}

/// Run `cmd` (argv) on the host, capturing its output.
fn host(argv: &[&str]) -> Result<CmdOut> {
    let (prog, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {argv:?}"))?;
    Ok(CmdOut {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn host_ok(argv: &[&str]) -> Result<String> {
    let o = host(argv)?;
    if !o.success() {
        bail!("{argv:?} failed ({}): {}", o.status, o.stderr.trim());
    }
    Ok(o.stdout)
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Single-quote for /bin/sh.
fn shq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn netns_of(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// Spawn `unshare [flags] sleep infinity` as a namespace anchor (its PID is the anchor's PID:
/// unshare execs without forking) and wait until it holds new namespaces.
fn spawn_anchor(flags: &[&str]) -> Result<Child> {
    let mut child = Command::new("setsid")
        .arg("unshare")
        .args(flags)
        .args(["sleep", "infinity"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning namespace anchor (setsid unshare … sleep infinity)")?;
    let me = netns_of(std::process::id());
    let t0 = Instant::now();
    loop {
        let comm = fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap_or_default();
        if comm.trim() == "sleep" && netns_of(child.id()).is_some() && netns_of(child.id()) != me {
            return Ok(child);
        }
        if let Ok(Some(st)) = child.try_wait() {
            bail!("namespace anchor exited early: {st}");
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("namespace anchor did not come up within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Node {
    fn nsenter_prefix(&self) -> Vec<String> {
        [
            "nsenter",
            "-t",
            &self.anchor.to_string(),
            "-n",
            "-m",
            "-u",
            "--",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Run directory of the lab this node belongs to.
    pub fn lab_dir(&self) -> &Path {
        &self.lab_dir
    }

    /// PID of the process holding this node's namespaces.
    pub fn anchor_pid(&self) -> u32 {
        self.anchor
    }

    /// Run argv inside the node (its net, mount and UTS namespaces). Err only if it cannot be spawned.
    pub fn run(&self, argv: &[&str]) -> Result<CmdOut> {
        let mut full = self.nsenter_prefix();
        full.extend(argv.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        host(&refs).with_context(|| format!("in node {}", self.name))
    }

    /// Like [`Node::run`] but fails on a non-zero exit status; returns stdout.
    pub fn run_ok(&self, argv: &[&str]) -> Result<String> {
        let o = self.run(argv)?;
        if !o.success() {
            bail!(
                "{}: {argv:?} failed ({}): {}{}",
                self.name,
                o.status,
                o.stderr.trim(),
                o.stdout.trim()
            );
        }
        Ok(o.stdout)
    }

    /// Run a /bin/sh script inside the node.
    pub fn sh(&self, script: &str) -> Result<CmdOut> {
        self.run(&["sh", "-c", script])
    }

    /// Like [`Node::sh`] but fails on a non-zero exit status; returns stdout.
    pub fn sh_ok(&self, script: &str) -> Result<String> {
        self.run_ok(&["sh", "-c", script])
    }

    /// Start a foreground daemon inside the node in its own session, output appended to
    /// `<node>/log/<name>.out`, tracked by PID (returned). It is also added to the node's boot
    /// script, so the fence agent's "on" starts it again. Waits for `svc.ready` if given.
    pub fn spawn_daemon(&self, svc: Service) -> Result<u32> {
        let pid = self.spawn_daemon_nowait(svc.clone())?;
        self.wait_daemon_ready(&svc, pid)?;
        Ok(pid)
    }

    /// Wait until `svc.ready` succeeds in the node (no-op without one); fails early if the
    /// tracked process `pid` exits.
    pub fn wait_daemon_ready(&self, svc: &Service, pid: u32) -> Result<()> {
        let log_path = self.dir.join("log").join(format!("{}.out", svc.name));
        if let Some(ready) = &svc.ready {
            let r: Vec<&str> = ready.iter().map(String::as_str).collect();
            let what = format!("{} ready on {}", svc.name, self.name);
            wait_for(&what, Duration::from_secs(120), || {
                if let Some((_, c)) = self
                    .children
                    .lock()
                    .map_err(|_| anyhow!("poisoned"))?
                    .iter_mut()
                    .find(|(_, c)| c.id() == pid)
                {
                    if let Some(st) = c.try_wait()? {
                        bail!(
                            "{} exited during startup: {st} (see {})",
                            svc.name,
                            log_path.display()
                        );
                    }
                }
                Ok(self.run(&r)?.success())
            })?;
        }
        Ok(())
    }

    /// [`Node::spawn_daemon`] without waiting for readiness.
    pub fn spawn_daemon_nowait(&self, svc: Service) -> Result<u32> {
        let log_path = self.dir.join("log").join(format!("{}.out", svc.name));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let log2 = log.try_clone().context("dup log fd")?;
        let mut cmd = Command::new("setsid");
        cmd.args(self.nsenter_prefix());
        if !svc.env.is_empty() {
            cmd.arg("env");
            for (k, v) in &svc.env {
                cmd.arg(format!("{k}={v}"));
            }
        }
        cmd.args(&svc.argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd
            .spawn()
            .with_context(|| format!("{}: spawning {:?}", self.name, svc.argv))?;
        let pid = child.id();
        tracing::info!(node = %self.name, daemon = %svc.name, pid, "spawned");
        self.children
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .push((svc.name.clone(), child));
        self.services
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .push(svc);
        self.write_boot_script()?;
        Ok(pid)
    }

    /// Stop the tracked daemon `name` (SIGTERM to its PID, then SIGKILL after 20 s) and start
    /// it again with the same command and readiness check; its new PID.
    pub fn restart_daemon(&self, name: &str) -> Result<u32> {
        let svc = self
            .services
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .iter()
            .rev()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| anyhow!("{}: no daemon {name} was started", self.name))?;
        let child = {
            let mut ch = self.children.lock().map_err(|_| anyhow!("poisoned"))?;
            let i = ch
                .iter()
                .rposition(|(n, _)| n == name)
                .ok_or_else(|| anyhow!("{}: daemon {name} is not tracked", self.name))?;
            ch.remove(i).1
        };
        let mut child = child;
        let pid = child.id().to_string();
        let _ = host(&["kill", "-TERM", &pid]);
        let t0 = std::time::Instant::now();
        while child.try_wait()?.is_none() {
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // the daemon keeps its place in the node's boot order (power-on starts them in order:
        // a restarted libvirtd must still come up before the hostd that needs it)
        let at = {
            let mut sv = self.services.lock().map_err(|_| anyhow!("poisoned"))?;
            let at = sv.iter().position(|s| s.name == name);
            sv.retain(|s| s.name != name);
            at
        };
        let pid = self.spawn_daemon(svc)?;
        if let Some(at) = at {
            {
                let mut sv = self.services.lock().map_err(|_| anyhow!("poisoned"))?;
                if let Some(i) = sv.iter().rposition(|s| s.name == name) {
                    let s = sv.remove(i);
                    let at = at.min(sv.len());
                    sv.insert(at, s);
                }
            }
            self.write_boot_script()?;
        }
        Ok(pid)
    }

    /// PIDs of tracked daemons still running (by name).
    pub fn daemon_pids(&self) -> Result<Vec<(String, u32)>> {
        let mut v = vec![];
        for (name, c) in self
            .children
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .iter_mut()
        {
            if c.try_wait()?.is_none() {
                v.push((name.clone(), c.id()));
            }
        }
        Ok(v)
    }

    fn write_boot_script(&self) -> Result<()> {
        let mut s = String::from(
            "#!/bin/sh\n# written by keel-tests netns.rs: what power-on starts inside this node\n",
        );
        for svc in self
            .services
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .iter()
        {
            let envs: String = svc
                .env
                .iter()
                .map(|(k, v)| format!("{}={} ", k, shq(v)))
                .collect();
            let argv: Vec<String> = svc.argv.iter().map(|a| shq(a)).collect();
            let _ = writeln!(
                s,
                "setsid -f env {envs}{} >> /var/log/{}.out 2>&1 < /dev/null",
                argv.join(" "),
                svc.name
            );
            if let Some(r) = &svc.ready {
                let r: Vec<String> = r.iter().map(|a| shq(a)).collect();
                let _ = writeln!(s, "i=0; until {} >/dev/null 2>&1 || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done", r.join(" "));
            }
        }
        write_file(&self.dir.join("boot.sh"), &s, 0o755)
    }

    /// PIDs of all processes in this node's network namespace (anchor excluded).
    pub fn pids(&self) -> Vec<u32> {
        let Some(ns) = netns_of(self.anchor) else {
            return vec![];
        };
        let Ok(rd) = fs::read_dir("/proc") else {
            return vec![];
        };
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&p| p != self.anchor && netns_of(p).as_ref() == Some(&ns))
            .collect()
    }

    /// Peak RSS (VmHWM, KiB) of the node's processes whose name starts with one of `prefixes`.
    pub fn peak_rss_kib(&self, prefixes: &[&str]) -> Vec<(String, u32, u64)> {
        let mut v = vec![];
        for pid in self.pids() {
            let Ok(st) = fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let field = |k: &str| {
                st.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|s| s.trim().to_string())
            };
            let name = field("Name:").unwrap_or_default();
            if !prefixes.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let hwm = field("VmHWM:")
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            v.push((name, pid, hwm));
        }
        v.sort();
        v
    }

    /// `crm_mon` as seen from this node.
    pub fn crm_status(&self) -> Result<ClusterStatus> {
        let out = self.run_ok(&["crm_mon", "-1", "--output-as=xml"])?;
        ClusterStatus::parse(&out)
    }

    /// `corosync-quorumtool -s` as seen from this node: (member count, quorate).
    pub fn quorum(&self) -> Result<(usize, bool)> {
        let o = self.run(&["corosync-quorumtool", "-s"])?;
        // exit status 2 = not quorate, still prints the table
        parse_quorumtool(&o.stdout).ok_or_else(|| {
            anyhow!(
                "{}: cannot parse corosync-quorumtool: {} {}",
                self.name,
                o.stdout,
                o.stderr
            )
        })
    }

    /// libvirt URI of this node's private libvirtd for use from inside any lab node.
    pub fn libvirt_tcp_uri(&self) -> String {
        format!("qemu+tcp://{}/system", self.addr4)
    }

    /// Run virsh inside the node against its own libvirtd.
    pub fn virsh(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["virsh", "-c", "qemu:///system"];
        argv.extend_from_slice(args);
        self.run_ok(&argv)
    }
}

fn parse_quorumtool(s: &str) -> Option<(usize, bool)> {
    let mut nodes = None;
    let mut quorate = None;
    for l in s.lines() {
        if let Some(v) = l.strip_prefix("Nodes:") {
            nodes = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("Quorate:") {
            quorate = Some(v.trim() == "Yes");
        }
    }
    Some((nodes?, quorate?))
}

/// Poll `cond` until it returns true or `timeout` passes; returns the time it took.
/// Errors from `cond` count as "not yet" (the last one is reported on timeout).
pub fn wait_for<F: FnMut() -> Result<bool>>(
    what: &str,
    timeout: Duration,
    mut cond: F,
) -> Result<Duration> {
    let t0 = Instant::now();
    let mut last_err = None;
    loop {
        match cond() {
            Ok(true) => {
                tracing::info!(what, secs = t0.elapsed().as_secs_f64(), "condition met");
                return Ok(t0.elapsed());
            }
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if t0.elapsed() > timeout {
            let err = anyhow!("timed out after {:?} waiting for {what}", timeout);
            return Err(match last_err {
                Some(e) => err.context(format!("last error: {e:#}")),
                None => err,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The lab.
pub struct NetnsLab {
    pub name: String,
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    opts: LabOpts,
    sw: Option<Child>,
    anchors: Vec<Child>,
    failed: AtomicBool,
    torn_down: bool,
}

impl NetnsLab {
    /// Bring up `n` nodes (network, mounts, hostnames, fence agent overlay). No daemons yet.
    pub fn up(n: usize, opts: LabOpts) -> Result<NetnsLab> {
        if n == 0 || n > 200 {
            bail!("netns lab: node count {n} out of range");
        }
        if !opts
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
            || opts.name.is_empty()
        {
            bail!("netns lab: bad name {:?}", opts.name);
        }
        let seq = LAB_SEQ.fetch_add(1, Ordering::SeqCst);
        let dir =
            PathBuf::from(LAB_ROOT).join(format!("{}-{}-{}", opts.name, std::process::id(), seq));
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale {}", dir.display()))?;
        }
        fs::create_dir_all(dir.join("bin"))
            .with_context(|| format!("creating {}", dir.display()))?;
        fs::create_dir_all(dir.join("sbin"))?;
        fs::create_dir_all(dir.join("shared"))?;
        eprintln!("netns lab {}: run dir {}", opts.name, dir.display());
        let mut lab = NetnsLab {
            name: opts.name.clone(),
            dir,
            nodes: vec![],
            opts,
            sw: None,
            anchors: vec![],
            failed: AtomicBool::new(true),
            torn_down: false,
        };
        // If building fails, Drop tears down what exists and keeps the directory.
        lab.build(n)?;
        lab.failed.store(false, Ordering::SeqCst);
        Ok(lab)
    }

    fn build(&mut self, n: usize) -> Result<()> {
        let glue = Path::new(env!("CARGO_MANIFEST_DIR")).join("netns");
        for (src, dst) in [
            ("node-power", "bin/node-power"),
            ("fence_keellab", "sbin/fence_keellab"),
        ] {
            let text = fs::read_to_string(glue.join(src))
                .with_context(|| format!("reading {}", glue.join(src).display()))?;
            write_file(&self.dir.join(dst), &text, 0o755)?;
        }
        fs::write(self.dir.join("fence.log"), "")?;

        // switch
        let sw = spawn_anchor(&["--net"])?;
        let swp = sw.id().to_string();
        fs::write(self.dir.join("sw.pid"), &swp)?;
        self.sw = Some(sw);
        let swx = |args: &[&str]| -> Result<String> {
            let mut v = vec!["nsenter", "-t", swp.as_str(), "-n", "--"];
            v.extend_from_slice(args);
            host_ok(&v)
        };
        swx(&["ip", "link", "set", "lo", "up"])?;
        swx(&[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        swx(&["ip", "link", "set", "br0", "up"])?;
        if self.opts.link1 {
            swx(&[
                "ip",
                "link",
                "add",
                "br1",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ])?;
            swx(&["ip", "link", "set", "br1", "up"])?;
        }

        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for i in 1..=n {
            let _ = writeln!(hosts, "{LAB_V4_PREFIX}.{i} node{i}");
        }
        let libvirt_dirs = [
            "libvirt/etc/qemu",
            "libvirt/run",
            "libvirt/lib/qemu",
            "libvirt/lib/images",
            "libvirt/cache",
            "log/libvirt/qemu",
        ];
        for i in 1..=n {
            let name = format!("node{i}");
            let nd = self.dir.join("nodes").join(&name);
            for d in [
                "etc/corosync/uidgid.d",
                "etc/pacemaker",
                "var/lib/corosync",
                "log/cluster",
                "log/pacemaker/bundles",
            ] {
                fs::create_dir_all(nd.join(d))
                    .with_context(|| format!("creating {}", nd.join(d).display()))?;
            }
            if self.opts.libvirt {
                for d in libvirt_dirs {
                    fs::create_dir_all(nd.join(d))?;
                }
            }
            // keeps hacluster:haclient ownership and the expected subdirectories
            host_ok(&[
                "cp",
                "-a",
                "/var/lib/pacemaker",
                &nd.join("var/lib/pacemaker").to_string_lossy(),
            ])?;
            host_ok(&[
                "chown",
                "-R",
                "hacluster:haclient",
                &nd.join("log/pacemaker").to_string_lossy(),
            ])?;
            fs::write(nd.join("hosts"), &hosts)?;

            let anchor = spawn_anchor(&["--net", "--mount", "--uts", "--propagation", "private"])?;
            let pid = anchor.id();
            self.anchors.push(anchor);
            fs::write(nd.join("anchor.pid"), pid.to_string())?;
            let port = format!("p{i}");
            fs::write(nd.join("port"), &port)?;
            let node = Node {
                index: i,
                name: name.clone(),
                addr6: format!("{LAB_V6_PREFIX}::{i}"),
                addr4: format!("{LAB_V4_PREFIX}.{i}"),
                addr6_link1: self
                    .opts
                    .link1
                    .then(|| format!("{LAB_V6_PREFIX_LINK1}::{i}")),
                dir: nd.clone(),
                anchor: pid,
                lab_dir: self.dir.clone(),
                services: Mutex::new(vec![]),
                children: Mutex::new(vec![]),
            };
            fs::write(
                nd.join("addrs"),
                format!("{}/64\n{}/24\n", node.addr6, node.addr4),
            )?;
            let pids = pid.to_string();
            let nx = |args: &[&str]| -> Result<String> {
                let mut v = vec!["nsenter", "-t", pids.as_str(), "-n", "--"];
                v.extend_from_slice(args);
                host_ok(&v)
            };
            nx(&["ip", "link", "set", "lo", "up"])?;
            // a "cable pull" sets links down; keep static IPv6 addresses over it like a real NIC config would re-add them
            nx(&[
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.keep_addr_on_down=1",
                "net.ipv6.conf.default.keep_addr_on_down=1",
            ])?;
            nx(&[
                "ip", "link", "add", "e0", "type", "veth", "peer", "name", &port, "netns", &swp,
            ])?;
            swx(&["ip", "link", "set", &port, "master", "br0", "up"])?;
            nx(&[
                "ip",
                "addr",
                "add",
                &format!("{}/64", node.addr6),
                "dev",
                "e0",
                "nodad",
            ])?;
            nx(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", node.addr4),
                "dev",
                "e0",
            ])?;
            nx(&["ip", "link", "set", "e0", "up"])?;
            if let Some(a1) = &node.addr6_link1 {
                // the second network: veth e1 to br1 (node-power reads port1/addrs1)
                let port1 = format!("q{i}");
                fs::write(nd.join("port1"), &port1)?;
                fs::write(nd.join("addrs1"), format!("{a1}/64\n"))?;
                nx(&[
                    "ip", "link", "add", "e1", "type", "veth", "peer", "name", &port1, "netns",
                    &swp,
                ])?;
                swx(&["ip", "link", "set", &port1, "master", "br1", "up"])?;
                nx(&[
                    "ip",
                    "addr",
                    "add",
                    &format!("{a1}/64"),
                    "dev",
                    "e1",
                    "nodad",
                ])?;
                nx(&["ip", "link", "set", "e1", "up"])?;
            }

            let d = nd.to_string_lossy().to_string();
            let mut m = format!(
                "set -e
hostname {name}
mount -t tmpfs -o mode=0755,size=64m keel-lab-run /run
mkdir -p /run/lock /run/crm /run/resource-agents /run/libvirt
mount -t tmpfs -o mode=1777,size=256m keel-lab-shm /dev/shm
mount --bind {d}/etc/corosync /etc/corosync
mount --bind {d}/etc/pacemaker /etc/pacemaker
mount --bind {d}/var/lib/corosync /var/lib/corosync
mount --bind {d}/var/lib/pacemaker /var/lib/pacemaker
mount --bind {d}/log /var/log
mount --bind {d}/hosts /etc/hosts
mount -t overlay keel-lab-sbin -o lowerdir={lab}/sbin:/usr/sbin /usr/sbin
",
                lab = self.dir.display()
            );
            if self.opts.libvirt {
                let _ = write!(
                    m,
                    "mount --bind {d}/libvirt/etc /etc/libvirt
mount --bind {d}/libvirt/run /run/libvirt
mount --bind {d}/libvirt/lib /var/lib/libvirt
mount --bind {d}/libvirt/cache /var/cache/libvirt
"
                );
            }
            host_ok(&["nsenter", "-t", &pids, "-m", "-u", "--", "sh", "-c", &m])
                .with_context(|| format!("mount setup of {name}"))?;
            if self.opts.libvirt {
                node.write_libvirt_conf(i)?;
                seed_qemu_caps(&nd.join("libvirt/cache/qemu/capabilities"))?;
            }
            node.write_boot_script()?;
            self.nodes.push(node);
        }
        Ok(())
    }

    pub fn node(&self, i: usize) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.index == i)
            .ok_or_else(|| anyhow!("no node{i}"))
    }

    pub fn node_by_name(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow!("no node named {name}"))
    }

    /// Directory visible at the same path from the host and every node (e.g. guest kernels).
    pub fn shared_dir(&self) -> PathBuf {
        self.dir.join("shared")
    }

    pub fn fence_log(&self) -> String {
        fs::read_to_string(self.dir.join("fence.log")).unwrap_or_default()
    }

    /// See [`wait_for`].
    pub fn wait_for<F: FnMut() -> Result<bool>>(
        &self,
        what: &str,
        timeout: Duration,
        cond: F,
    ) -> Result<Duration> {
        wait_for(what, timeout, cond)
    }

    fn power(&self, act: &str, node: &Node) -> Result<()> {
        let o = host(&[
            &self.dir.join("bin/node-power").to_string_lossy(),
            act,
            &self.dir.to_string_lossy(),
            &node.name,
        ])?;
        if !o.success() {
            bail!("node-power {act} {} failed: {}", node.name, o.stderr.trim());
        }
        Ok(())
    }

    /// Pull the node's cable: its veth goes down on both ends (switch and node side).
    pub fn partition(&self, node: &Node) -> Result<()> {
        self.power("cable-down", node)
    }

    /// Plug the node's cable back in.
    pub fn heal(&self, node: &Node) -> Result<()> {
        self.power("cable-up", node)
    }

    /// Pull one network's cable of the node (0: `e0`, 1: `e1` of a [`LabOpts::link1`] lab), on
    /// both ends; the other network stays up. A power on keeps it pulled.
    pub fn cut_link(&self, node: &Node, link: usize) -> Result<()> {
        self.link_power("link-down", node, link)
    }

    /// Plug one network's cable back in (unless the whole node is partitioned or off).
    pub fn heal_link(&self, node: &Node, link: usize) -> Result<()> {
        self.link_power("link-up", node, link)
    }

    fn link_power(&self, act: &str, node: &Node, link: usize) -> Result<()> {
        if link > 1 || (link == 1 && node.addr6_link1.is_none()) {
            bail!("{} has no network {link}", node.name);
        }
        let o = host(&[
            &self.dir.join("bin/node-power").to_string_lossy(),
            act,
            &self.dir.to_string_lossy(),
            &node.name,
            &link.to_string(),
        ])?;
        if !o.success() {
            bail!(
                "node-power {act} {} {link} failed: {}",
                node.name,
                o.stderr.trim()
            );
        }
        Ok(())
    }

    /// Power the node off exactly like the fence agent does: SIGKILL all its processes, cable
    /// out, runtime addresses, /run and /dev/shm wiped.
    pub fn power_off(&self, node: &Node) -> Result<()> {
        self.power("off", node)?;
        // reap our own children among the killed processes
        if let Ok(mut ch) = node.children.lock() {
            for (_, c) in ch.iter_mut() {
                let _ = c.try_wait();
            }
        }
        Ok(())
    }

    /// Power the node on: cable in (unless partitioned), then its boot script (the daemons
    /// started so far with [`Node::spawn_daemon`], in order), detached.
    pub fn power_on(&self, node: &Node) -> Result<()> {
        self.power("on", node)
    }

    /// Mark the lab as failed: its run directory is kept.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Pass a scenario result through, keeping the run directory if it is an error.
    /// With `KEEL_LAB_HOLD=1` in the environment, the lab stays up (for nsenter debugging)
    /// until `<run dir>/hold` is deleted.
    pub fn finish<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.mark_failed();
            eprintln!(
                "netns lab {}: FAILED ({e:#}); run dir kept: {}",
                self.name,
                self.dir.display()
            );
        }
        if std::env::var_os("KEEL_LAB_HOLD").is_some() {
            self.hold();
        }
        r
    }

    /// Keep the lab running until `<run dir>/hold` is removed; prints how to enter each node.
    pub fn hold(&self) {
        let flag = self.dir.join("hold");
        if fs::write(&flag, "delete this file to tear the lab down\n").is_err() {
            return;
        }
        eprintln!(
            "netns lab {}: holding; rm {} to tear down. Enter a node with:",
            self.name,
            flag.display()
        );
        for n in &self.nodes {
            eprintln!("  {}: nsenter -t {} -n -m -u -- bash", n.name, n.anchor);
        }
        while flag.exists() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // ---------------------------------------------------------------- corosync + pacemaker

    /// Write corosync.conf (from `conf`), a shared authkey and the pacemaker uidgid stanza to
    /// every node, plus a seed CIB for Pacemaker.
    pub fn configure_cluster(&self, conf: &CorosyncConf, pcmk: &PacemakerSetup) -> Result<()> {
        let text = conf.render()?;
        let key = self.dir.join("authkey");
        if !key.exists() {
            host_ok(&["corosync-keygen", "-l", "-k", &key.to_string_lossy()])?;
        }
        let keybytes = fs::read(&key)?;
        for n in &self.nodes {
            let d = n.dir.join("etc/corosync");
            write_file(&d.join("corosync.conf"), &text, 0o644)?;
            fs::write(d.join("authkey"), &keybytes)?;
            fs::set_permissions(d.join("authkey"), fs::Permissions::from_mode(0o400))?;
            write_file(
                &d.join("uidgid.d/pacemaker"),
                "uidgid {\n    uid: hacluster\n    gid: haclient\n}\n",
                0o644,
            )?;
            let cib = n.dir.join("var/lib/pacemaker/cib/cib.xml");
            write_file(&cib, &pcmk.seed_cib(), 0o600)?;
            let _ = fs::remove_file(n.dir.join("var/lib/pacemaker/cib/cib.xml.sig"));
            host_ok(&["chown", "hacluster:haclient", &cib.to_string_lossy()])?;
        }
        Ok(())
    }

    /// Start corosync on every node and wait until all are members and quorate; then
    /// pacemakerd and wait until all nodes are online with a DC. Returns (quorate, online) times.
    pub fn start_cluster(&self, timeout: Duration) -> Result<(Duration, Duration)> {
        let t0 = Instant::now();
        for n in &self.nodes {
            n.spawn_daemon(Service::new("corosync", &["corosync", "-f"]).ready(&[
                "corosync-cmapctl",
                "-g",
                "totem.cluster_name",
            ]))?;
        }
        let total = self.nodes.len();
        self.wait_for(
            &format!("{total} corosync members, quorate on every node"),
            timeout,
            || {
                for n in &self.nodes {
                    if n.quorum()? != (total, true) {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )?;
        let quorate = t0.elapsed();
        for n in &self.nodes {
            n.spawn_daemon(
                Service::new("pacemakerd", &["pacemakerd"])
                    .env("PCMK_logfile", "/var/log/pacemaker/pacemaker.log")
                    .env("PCMK_logfacility", "none"),
            )?;
        }
        self.wait_all_online(timeout)?;
        Ok((quorate, t0.elapsed()))
    }

    /// Wait until every lab node sees every lab node online (not pending, not unclean) and a DC.
    pub fn wait_all_online(&self, timeout: Duration) -> Result<Duration> {
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        self.wait_for("all nodes online in Pacemaker with a DC", timeout, || {
            for n in &self.nodes {
                let st = n.crm_status()?;
                if st.dc.is_none() || !st.quorate || !names.iter().all(|x| st.is_online(x)) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Cluster properties + one `fence_keellab` device per node, banned from the node it fences.
    pub fn configure_fencing(&self, via: &Node, pcmk: &PacemakerSetup) -> Result<()> {
        for (k, v) in pcmk.properties() {
            via.run_ok(&[
                "crm_attribute",
                "--type",
                "crm_config",
                "--name",
                &k,
                "--update",
                &v,
            ])?;
        }
        via.run_ok(&[
            "crm_attribute",
            "--type",
            "rsc_defaults",
            "--name",
            "resource-stickiness",
            "--update",
            &pcmk.resource_stickiness.to_string(),
        ])?;
        for n in &self.nodes {
            let id = format!("fence-{}", n.name);
            let xml = format!(
                r#"<primitive id="{id}" class="stonith" type="fence_keellab"><instance_attributes id="{id}-ia"><nvpair id="{id}-hl" name="pcmk_host_list" value="{node}"/><nvpair id="{id}-lab" name="lab_dir" value="{lab}"/></instance_attributes><operations><op id="{id}-mon" name="monitor" interval="30s" timeout="20s"/></operations></primitive>"#,
                node = n.name,
                lab = xml_escape(&self.dir.to_string_lossy())
            );
            via.run_ok(&["cibadmin", "--create", "-o", "resources", "-X", &xml])?;
            let c = format!(
                r#"<rsc_location id="{id}-not-self" rsc="{id}" node="{}" score="-INFINITY"/>"#,
                n.name
            );
            via.run_ok(&["cibadmin", "--create", "-o", "constraints", "-X", &c])?;
        }
        Ok(())
    }

    /// Peak RSS of corosync and pacemaker daemons per node: (node, corosync KiB, pacemaker sum KiB).
    pub fn cluster_peak_rss(&self) -> Vec<(String, u64, u64)> {
        self.nodes
            .iter()
            .map(|n| {
                let v = n.peak_rss_kib(&["corosync", "pacemaker"]);
                let cs = v.iter().filter(|x| x.0 == "corosync").map(|x| x.2).sum();
                let pm = v
                    .iter()
                    .filter(|x| x.0.starts_with("pacemaker"))
                    .map(|x| x.2)
                    .sum();
                (n.name.clone(), cs, pm)
            })
            .collect()
    }

    // ---------------------------------------------------------------- libvirt

    /// Start a private libvirtd in every node (needs `LabOpts::libvirt`) and wait for its socket.
    pub fn start_libvirtd(&self) -> Result<()> {
        if !self.opts.libvirt {
            bail!("lab {} was not created with libvirt", self.name);
        }
        let svc = Service::new(
            "libvirtd",
            &[
                "libvirtd",
                "--listen",
                "-f",
                "/etc/libvirt/libvirtd.conf",
                "-p",
                "/run/libvirt/libvirtd.pid",
            ],
        )
        .ready(&["virsh", "-c", "qemu:///system", "version"]);
        // start all, then wait: libvirtd's cold start is CPU-bound for seconds on TCG hosts
        let mut pids = vec![];
        for n in &self.nodes {
            pids.push(n.spawn_daemon_nowait(svc.clone())?);
        }
        for (n, pid) in self.nodes.iter().zip(pids) {
            n.wait_daemon_ready(&svc, pid)?;
        }
        if let Some(n) = self.nodes.first() {
            // best effort: a stale or missing cache only costs the probing time
            if let Err(e) = save_qemu_caps(&n.dir.join("libvirt/cache/qemu/capabilities")) {
                tracing::warn!("saving libvirt QEMU capabilities cache: {e:#}");
            }
        }
        Ok(())
    }

    /// Switch `node`'s private libvirtd to TLS with the given files (libvirtd's `listen_tls` on
    /// every address with `key_file`/`cert_file`/`ca_file`; QEMU's
    /// `default_tls_x509_cert_dir` with peer verification) and restart it. The plain TCP
    /// listener stays for the raw `virsh migrate` baseline. The files are the ones keel-hostd
    /// wrote from the node's cluster certificate (its `[migration]` paths).
    pub fn enable_libvirt_tls(&self, node: &Node, tls: &LibvirtTls) -> Result<()> {
        if !self.opts.libvirt {
            bail!("lab {} was not created with libvirt", self.name);
        }
        let d = node.dir.join("libvirt/etc");
        let conf = format!(
            "host_uuid = \"4b45454c-6c61-4200-8000-{i:012}\"\n\
             unix_sock_group = \"root\"\nunix_sock_rw_perms = \"0770\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
             listen_tls = 1\nlisten_tcp = 1\nauth_tcp = \"none\"\nauth_tls = \"none\"\n\
             ca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\
             tls_no_verify_certificate = 0\n\
             log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n",
            i = node.index,
            ca = tls.ca_file.display(),
            cert = tls.server_cert.display(),
            key = tls.server_key.display(),
        );
        write_file(&d.join("libvirtd.conf"), &conf, 0o644)?;
        let q = format!(
            "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\nsecurity_driver = \"none\"\n\
             cgroup_controllers = [ ]\nstdio_handler = \"file\"\nremember_owner = 0\n\
             default_tls_x509_cert_dir = \"{}\"\ndefault_tls_x509_verify = 1\n",
            tls.qemu_dir.display()
        );
        write_file(&d.join("qemu.conf"), &q, 0o644)?;
        node.restart_daemon("libvirtd")?;
        Ok(())
    }

    /// Leave the lab running after this handle goes away (used by `keel-lab up --netns`):
    /// anchors, switch and daemons keep running; nothing is killed or removed. The PIDs are in
    /// `sw.pid` and `<node>/anchor.pid`. Returns the run directory.
    pub fn detach(mut self) -> PathBuf {
        for a in self.anchors.drain(..).chain(self.sw.take()) {
            std::mem::forget(a);
        }
        for n in &self.nodes {
            if let Ok(mut ch) = n.children.lock() {
                for (_, c) in ch.drain(..) {
                    std::mem::forget(c);
                }
            }
        }
        self.torn_down = true;
        self.dir.clone()
    }

    /// Tear everything down now (also done on drop).
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for n in &self.nodes {
            for _ in 0..100 {
                let p = n.pids();
                if p.is_empty() {
                    break;
                }
                let mut argv = vec!["kill".to_string(), "-9".to_string()];
                argv.extend(p.iter().map(|x| x.to_string()));
                let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
                let _ = host(&refs);
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(mut ch) = n.children.lock() {
                for (_, c) in ch.iter_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        for a in self.anchors.iter_mut().chain(self.sw.iter_mut()) {
            let _ = a.kill();
            let _ = a.wait();
        }
        let keep = self.failed.load(Ordering::SeqCst)
            || self.opts.keep_run_dir
            || std::thread::panicking();
        if keep {
            eprintln!(
                "netns lab {}: run dir kept: {}",
                self.name,
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "netns lab {}: cannot remove {}: {e}",
                self.name,
                self.dir.display()
            );
        }
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl Node {
    fn write_libvirt_conf(&self, i: usize) -> Result<()> {
        let d = self.dir.join("libvirt/etc");
        let conf = format!(
            "host_uuid = \"4b45454c-6c61-4200-8000-{i:012}\"\n\
             unix_sock_group = \"root\"\nunix_sock_rw_perms = \"0770\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
             listen_tls = 0\nlisten_tcp = 1\nlisten_addr = \"{}\"\nauth_tcp = \"none\"\n\
             log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n",
            self.addr4
        );
        write_file(&d.join("libvirtd.conf"), &conf, 0o644)?;
        let q = "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\nsecurity_driver = \"none\"\n\
                 cgroup_controllers = [ ]\nstdio_handler = \"file\"\nremember_owner = 0\n";
        write_file(&d.join("qemu.conf"), q, 0o644)?;
        Ok(())
    }
}

/// Where a node's libvirtd and QEMU find their TLS files ([`NetnsLab::enable_libvirt_tls`]).
#[derive(Debug, Clone)]
pub struct LibvirtTls {
    pub ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// QEMU's `default_tls_x509_cert_dir` (ca-cert.pem, server-*.pem, client-*.pem).
    pub qemu_dir: PathBuf,
}

/// Cross-run cache of libvirt's QEMU capabilities probe (libvirtd takes ~15 s on a TCG host
/// to probe qemu-system-x86_64 and -i386). libvirt revalidates every entry (binary and libvirtd
/// ctimes, kernel, microcode, CPU) and probes again if stale, so seeding is always safe.
fn qemu_caps_cache() -> PathBuf {
    Path::new(LAB_ROOT).join(".cache/libvirt-qemu-capabilities")
}

fn seed_qemu_caps(dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    let Ok(rd) = fs::read_dir(qemu_caps_cache()) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".xml") {
            fs::copy(e.path(), dst.join(&name))
                .with_context(|| format!("seeding {}", e.path().display()))?;
        }
    }
    Ok(())
}

fn save_qemu_caps(src: &Path) -> Result<()> {
    let cache = qemu_caps_cache();
    fs::create_dir_all(&cache)?;
    for e in fs::read_dir(src)?.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".xml") {
            continue;
        }
        let tmp = cache.join(format!(
            ".{}.{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        fs::copy(e.path(), &tmp)?;
        fs::rename(&tmp, cache.join(&name))?;
    }
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

// -------------------------------------------------------------------- corosync config model

/// One corosync node.
#[derive(Clone, Debug)]
pub struct CorosyncNode {
    pub nodeid: u32,
    pub name: String,
    pub ring0_addr: String,
}

/// The subset of corosync.conf the lab uses (knet, one link).
#[derive(Clone, Debug)]
pub struct CorosyncConf {
    pub cluster_name: String,
    pub ipv6: bool,
    pub crypto_cipher: String,
    pub crypto_hash: String,
    pub token_ms: u32,
    pub token_coefficient_ms: u32,
    pub join_ms: u32,
    pub nodes: Vec<CorosyncNode>,
    pub logfile: String,
}

impl CorosyncConf {
    /// The lab's defaults (as measured by the probe: quorate in ~1.5 s, partition seen in ~2 s).
    pub fn for_lab(lab: &NetnsLab) -> Self {
        CorosyncConf {
            cluster_name: "keellab".into(),
            ipv6: true,
            crypto_cipher: "aes256".into(),
            crypto_hash: "sha256".into(),
            token_ms: 1000,
            token_coefficient_ms: 0,
            join_ms: 50,
            nodes: lab
                .nodes
                .iter()
                .map(|n| CorosyncNode {
                    nodeid: n.index as u32,
                    name: n.name.clone(),
                    ring0_addr: n.addr6.clone(),
                })
                .collect(),
            logfile: "/var/log/cluster/corosync.log".into(),
        }
    }

    fn model(&self) -> Section {
        let mut totem = Section::new("totem")
            .kv("version", "2")
            .kv("cluster_name", &self.cluster_name)
            .kv("transport", "knet")
            .kv("ip_version", if self.ipv6 { "ipv6" } else { "ipv4" })
            .kv("crypto_cipher", &self.crypto_cipher)
            .kv("crypto_hash", &self.crypto_hash)
            .kv("token", &self.token_ms.to_string())
            .kv("token_coefficient", &self.token_coefficient_ms.to_string())
            .kv("join", &self.join_ms.to_string());
        totem
            .children
            .push(Section::new("interface").kv("linknumber", "0"));
        let mut nodelist = Section::new("nodelist");
        for n in &self.nodes {
            nodelist.children.push(
                Section::new("node")
                    .kv("ring0_addr", &n.ring0_addr)
                    .kv("name", &n.name)
                    .kv("nodeid", &n.nodeid.to_string()),
            );
        }
        let mut quorum = Section::new("quorum").kv("provider", "corosync_votequorum");
        if self.nodes.len() == 2 {
            quorum = quorum.kv("two_node", "1");
        }
        let logging = Section::new("logging")
            .kv("to_logfile", "yes")
            .kv("logfile", &self.logfile)
            .kv("to_stderr", "no")
            .kv("to_syslog", "no")
            .kv("timestamp", "hires");
        let mut root = Section::new("");
        root.children = vec![totem, nodelist, quorum, logging];
        root
    }

    /// Render corosync.conf. Fails on values corosync's parser would misread.
    pub fn render(&self) -> Result<String> {
        if self.nodes.is_empty() {
            bail!("corosync.conf: no nodes");
        }
        let mut ids: Vec<u32> = self.nodes.iter().map(|n| n.nodeid).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.nodes.len() || ids.contains(&0) {
            bail!("corosync.conf: node ids must be unique and non-zero");
        }
        let mut out = String::new();
        self.model().render(&mut out, 0)?;
        Ok(out)
    }
}

/// A corosync.conf section: `name {` key/value lines and subsections `}`.
#[derive(Clone, Debug)]
struct Section {
    name: String,
    kvs: Vec<(String, String)>,
    children: Vec<Section>,
}

impl Section {
    fn new(name: &str) -> Self {
        Section {
            name: name.into(),
            kvs: vec![],
            children: vec![],
        }
    }
    fn kv(mut self, k: &str, v: &str) -> Self {
        self.kvs.push((k.into(), v.into()));
        self
    }
    fn render(&self, out: &mut String, depth: usize) -> Result<()> {
        let bad = |s: &str| s.is_empty() || s.contains(['{', '}', '\n', '#']) || s.trim() != s;
        let pad = "    ".repeat(depth);
        let inner = if self.name.is_empty() {
            depth
        } else {
            depth + 1
        };
        let ipad = "    ".repeat(inner);
        if !self.name.is_empty() {
            if bad(&self.name) || self.name.contains([':', ' ']) {
                bail!("corosync.conf: bad section name {:?}", self.name);
            }
            // nothing may follow `{` on the line (corosync parser pitfall)
            let _ = writeln!(out, "{pad}{} {{", self.name);
        }
        for (k, v) in &self.kvs {
            if bad(k) || k.contains([':', ' ']) || bad(v) {
                bail!("corosync.conf: bad entry {k:?}: {v:?} in {}", self.name);
            }
            let _ = writeln!(out, "{ipad}{k}: {v}");
        }
        for c in &self.children {
            c.render(out, inner)?;
        }
        if !self.name.is_empty() {
            let _ = writeln!(out, "{pad}}}");
        }
        Ok(())
    }
}

// -------------------------------------------------------------------- pacemaker

/// Cluster-wide Pacemaker settings for the lab. Fencing is always enabled.
#[derive(Clone, Debug)]
pub struct PacemakerSetup {
    /// Seeded into the initial CIB so the first DC election does not wait the default 20 s.
    pub dc_deadtime: String,
    /// `off` (node stays down until the test powers it on) or `reboot`.
    pub stonith_action: String,
    pub stonith_timeout: String,
    pub no_quorum_policy: String,
    pub resource_stickiness: u32,
}

impl Default for PacemakerSetup {
    fn default() -> Self {
        PacemakerSetup {
            dc_deadtime: "2s".into(),
            stonith_action: "off".into(),
            stonith_timeout: "30s".into(),
            no_quorum_policy: "stop".into(),
            resource_stickiness: 100,
        }
    }
}

impl PacemakerSetup {
    fn properties(&self) -> Vec<(String, String)> {
        [
            ("stonith-enabled", "true"),
            ("stonith-action", self.stonith_action.as_str()),
            ("stonith-timeout", self.stonith_timeout.as_str()),
            ("dc-deadtime", self.dc_deadtime.as_str()),
            ("no-quorum-policy", self.no_quorum_policy.as_str()),
            ("cluster-recheck-interval", "1min"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn seed_cib(&self) -> String {
        format!(
            r#"<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0"><configuration><crm_config><cluster_property_set id="cib-bootstrap-options"><nvpair id="cib-bootstrap-options-dc-deadtime" name="dc-deadtime" value="{}"/></cluster_property_set></crm_config><nodes/><resources/><constraints/></configuration><status/></cib>
"#,
            xml_escape(&self.dc_deadtime)
        )
    }
}

/// One node in `crm_mon` output.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub name: String,
    pub online: bool,
    pub pending: bool,
    pub unclean: bool,
    pub standby: bool,
}

/// One primitive resource in `crm_mon` output (group members included).
#[derive(Clone, Debug)]
pub struct ResourceStatus {
    pub id: String,
    pub agent: String,
    pub role: String,
    pub failed: bool,
    pub nodes: Vec<String>,
}

/// What matters of `crm_mon --output-as=xml`.
#[derive(Clone, Debug)]
pub struct ClusterStatus {
    pub dc: Option<String>,
    pub quorate: bool,
    pub nodes: Vec<NodeStatus>,
    pub resources: Vec<ResourceStatus>,
}

impl ClusterStatus {
    pub fn parse(xml_text: &str) -> Result<Self> {
        let root = xml::parse(xml_text)?;
        let mut dc = None;
        let mut quorate = false;
        if let Some(cd) = root.descendants("current_dc").first() {
            if cd.attr("present") == Some("true") {
                dc = cd.attr("name").map(str::to_string);
            }
            quorate = cd.attr("with_quorum") == Some("true");
        }
        let t = |e: &xml::Element, k: &str| e.attr(k) == Some("true");
        let nodes = root
            .descendants("nodes")
            .first()
            .map(|ns| {
                ns.children
                    .iter()
                    .filter(|e| e.name == "node")
                    .map(|e| NodeStatus {
                        name: e.attr("name").unwrap_or_default().to_string(),
                        online: t(e, "online"),
                        pending: t(e, "pending"),
                        unclean: t(e, "unclean"),
                        standby: t(e, "standby"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let resources = root
            .descendants("resources")
            .first()
            .map(|rs| {
                rs.descendants("resource")
                    .into_iter()
                    .map(|r| ResourceStatus {
                        id: r.attr("id").unwrap_or_default().to_string(),
                        agent: r.attr("resource_agent").unwrap_or_default().to_string(),
                        role: r.attr("role").unwrap_or_default().to_string(),
                        failed: t(r, "failed"),
                        nodes: r
                            .children
                            .iter()
                            .filter(|n| n.name == "node")
                            .filter_map(|n| n.attr("name").map(str::to_string))
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ClusterStatus {
            dc,
            quorate,
            nodes,
            resources,
        })
    }

    pub fn is_online(&self, node: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| n.name == node && n.online && !n.pending && !n.unclean)
    }

    pub fn online_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.online && !n.pending && !n.unclean)
            .count()
    }

    pub fn resource(&self, id: &str) -> Option<&ResourceStatus> {
        self.resources.iter().find(|r| r.id == id)
    }

    /// The single node on which all of `ids` are Started and not failed, if any.
    pub fn started_on(&self, ids: &[&str]) -> Option<String> {
        let mut node: Option<&str> = None;
        for id in ids {
            let r = self.resource(id)?;
            if r.role != "Started" || r.failed || r.nodes.len() != 1 {
                return None;
            }
            match node {
                None => node = Some(&r.nodes[0]),
                Some(n) if n == r.nodes[0] => {}
                Some(_) => return None,
            }
        }
        node.map(str::to_string)
    }
}

/// A fence event from `stonith_admin --history NODE --output-as=xml`.
#[derive(Clone, Debug)]
pub struct FenceEvent {
    pub action: String,
    pub target: String,
    pub delegate: String,
    pub status: String,
}

/// Pacemaker's fencing history for `target` as seen from `via` (all events: `--verbose`).
pub fn fence_history(via: &Node, target: &str) -> Result<Vec<FenceEvent>> {
    let out = via.run_ok(&[
        "stonith_admin",
        "--history",
        target,
        "--verbose",
        "--output-as=xml",
    ])?;
    let root = xml::parse(&out)?;
    Ok(root
        .descendants("fence_event")
        .into_iter()
        .map(|e| FenceEvent {
            action: e.attr("action").unwrap_or_default().into(),
            target: e.attr("target").unwrap_or_default().into(),
            delegate: e.attr("delegate").unwrap_or_default().into(),
            status: e.attr("status").unwrap_or_default().into(),
        })
        .collect())
}

/// A minimal XML element reader for Pacemaker's tool output (elements and attributes only;
/// text, comments, processing instructions and CDATA are skipped).
pub mod xml {
    use anyhow::{bail, Result};

    #[derive(Clone, Debug, Default)]
    pub struct Element {
        pub name: String,
        pub attrs: Vec<(String, String)>,
        pub children: Vec<Element>,
    }

    impl Element {
        pub fn attr(&self, k: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        }
        /// All descendants named `name`, depth first.
        pub fn descendants(&self, name: &str) -> Vec<&Element> {
            let mut v = vec![];
            for c in &self.children {
                if c.name == name {
                    v.push(c);
                }
                v.extend(c.descendants(name));
            }
            v
        }
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    /// Parse a document; returns a synthetic root whose children are the top-level elements.
    pub fn parse(text: &str) -> Result<Element> {
        let mut stack = vec![Element::default()];
        let mut rest = text;
        while let Some(lt) = rest.find('<') {
            rest = &rest[lt..];
            if let Some(r) = rest.strip_prefix("<!--") {
                let Some(end) = r.find("-->") else {
                    bail!("xml: unterminated comment")
                };
                rest = &r[end + 3..];
                continue;
            }
            if let Some(r) = rest.strip_prefix("<![CDATA[") {
                let Some(end) = r.find("]]>") else {
                    bail!("xml: unterminated CDATA")
                };
                rest = &r[end + 3..];
                continue;
            }
            if rest.starts_with("<?") || rest.starts_with("<!") {
                let Some(end) = rest.find('>') else {
                    bail!("xml: unterminated declaration")
                };
                rest = &rest[end + 1..];
                continue;
            }
            // find the end of the tag, honouring quoted attribute values
            let bytes = rest.as_bytes();
            let mut i = 1;
            let mut quote = None;
            while i < bytes.len() {
                match (quote, bytes[i]) {
                    (None, b'"') | (None, b'\'') => quote = Some(bytes[i]),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                i += 1;
            }
            if i >= bytes.len() {
                bail!("xml: unterminated tag");
            }
            let tag = &rest[1..i];
            rest = &rest[i + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let Some(done) = stack.pop() else {
                    bail!("xml: stack underflow")
                };
                if done.name != name.trim() {
                    bail!("xml: </{}> closes <{}>", name.trim(), done.name);
                }
                let Some(parent) = stack.last_mut() else {
                    bail!("xml: unbalanced </{}>", done.name)
                };
                parent.children.push(done);
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let mut el = Element::default();
            let name_end = tag.find(|c: char| c.is_whitespace()).unwrap_or(tag.len());
            el.name = tag[..name_end].to_string();
            let mut a = tag[name_end..].trim_start();
            while !a.is_empty() {
                let Some(eq) = a.find('=') else {
                    bail!("xml: bad attributes in <{}>", el.name)
                };
                let key = a[..eq].trim().to_string();
                let v = a[eq + 1..].trim_start();
                let Some(q) = v.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                    bail!("xml: unquoted attribute {key}")
                };
                let Some(close) = v[1..].find(q) else {
                    bail!("xml: unterminated attribute {key}")
                };
                el.attrs.push((key, unescape(&v[1..1 + close])));
                a = v[close + 2..].trim_start();
            }
            if self_closing {
                let Some(parent) = stack.last_mut() else {
                    bail!("xml: no parent")
                };
                parent.children.push(el);
            } else {
                stack.push(el);
            }
        }
        if stack.len() != 1 {
            bail!("xml: {} unclosed element(s)", stack.len() - 1);
        }
        Ok(stack.pop().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_reads_crm_mon_shape() {
        let x = r#"<?xml version="1.0"?>
<pacemaker-result api-version="2.3" request="crm_mon -1 --output-as=xml">
  <summary><current_dc present="true" version="2.1.5" name="node2" id="2" with_quorum="true"/></summary>
  <nodes>
    <node name="node1" id="1" online="true" standby="false" pending="false" unclean="false"/>
    <node name="node2" id="2" online="false" pending="false" unclean="true"/>
  </nodes>
  <resources>
    <group id="svc" number_resources="2">
      <resource id="vip" resource_agent="ocf:heartbeat:IPaddr2" role="Started" failed="false"><node name="node1" id="1" cached="true"/></resource>
      <resource id="app" resource_agent="ocf:pacemaker:Dummy" role="Started" failed="false"><node name="node1" id="1" cached="true"/></resource>
    </group>
  </resources>
  <!-- a comment with <tags> -->
  <status code="0" message="OK"/>
</pacemaker-result>"#;
        let st = ClusterStatus::parse(x).expect("parse");
        assert_eq!(st.dc.as_deref(), Some("node2"));
        assert!(st.quorate);
        assert!(st.is_online("node1"));
        assert!(!st.is_online("node2"));
        assert_eq!(st.started_on(&["vip", "app"]).as_deref(), Some("node1"));
    }

    #[test]
    fn corosync_conf_renders_and_rejects_bad_values() {
        let mut c = CorosyncConf {
            cluster_name: "keellab".into(),
            ipv6: true,
            crypto_cipher: "aes256".into(),
            crypto_hash: "sha256".into(),
            token_ms: 1000,
            token_coefficient_ms: 0,
            join_ms: 50,
            nodes: vec![
                CorosyncNode {
                    nodeid: 1,
                    name: "node1".into(),
                    ring0_addr: "fd6b:6565:6c00:1::1".into(),
                },
                CorosyncNode {
                    nodeid: 2,
                    name: "node2".into(),
                    ring0_addr: "fd6b:6565:6c00:1::2".into(),
                },
            ],
            logfile: "/var/log/cluster/corosync.log".into(),
        };
        let s = c.render().expect("render");
        assert!(s.contains("totem {\n    version: 2\n"));
        assert!(s.contains("        ring0_addr: fd6b:6565:6c00:1::2\n"));
        assert!(s.contains("two_node: 1"));
        assert!(s
            .lines()
            .all(|l| !l.contains('{') || l.trim_end().ends_with('{')));
        c.cluster_name = "bad}name".into();
        assert!(c.render().is_err());
    }

    #[test]
    fn quorumtool_parse() {
        let s = "Quorum information\n------------------\nNodes:            3\nNode ID:          1\nQuorate:          Yes\n";
        assert_eq!(parse_quorumtool(s), Some((3, true)));
    }
}
