//! Emulated BMCs for VM-lab nodes that run as libvirt domains: virtualbmc (IPMI over LAN) and
//! sushy-tools (Redfish over HTTPS), both from PyPI, both powering the domain through libvirt.
//! The guests reach them through QEMU's user network at 10.0.2.2 (the host's loopback), so a
//! node's `fence_ipmilan` / `fence_redfish` really powers its peer off and on.
//!
//! Everything the BMCs do ends up in the lab's `fence.log`, one line each, with the time:
//! - `HH:MM:SS.mmm ipmi (vbmc) power off node2` — an IPMI chassis command vbmcd executed;
//! - `HH:MM:SS.mmm redfish (sushy-tools) reset node1` — a Redfish `ComputerSystem.Reset`;
//! - `HH:MM:SS.mmm libvirt Stopped Destroyed: off node2` / `libvirt Started Booted: on node2` —
//!   the domain's lifecycle events (`virsh event`), i.e. the power state actually changing.
//!
//! The Python tools live in a virtualenv (`KEEL_BMC_VENV`, default
//! `/var/cache/keel/bmc-venv`, made by `scripts/lib.sh`'s `keel_bmc_venv`). Only processes
//! started here are stopped, by their handles.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::installlab::run;

pub const LIBVIRT_URI: &str = "qemu:///system";
/// The host's loopback as the guests see it on QEMU's user network.
pub const HOST_FROM_GUEST: &str = "10.0.2.2";
pub const USER: &str = "admin";

pub fn venv() -> PathBuf {
    std::env::var_os("KEEL_BMC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/keel/bmc-venv"))
}

/// One node behind the BMCs.
#[derive(Debug, Clone)]
pub struct BmcNode {
    pub node: String,
    pub domain: String,
    pub uuid: String,
}

#[derive(Debug)]
pub struct Bmcs {
    /// Password of the `admin` account on every emulated BMC of this lab.
    pub password: String,
    /// IPMI (UDP) port per node name, on 127.0.0.1 (10.0.2.2 from a guest).
    pub ipmi_ports: BTreeMap<String, u16>,
    /// The Redfish service (HTTPS, self-signed) on 127.0.0.1 (10.0.2.2 from a guest).
    pub redfish_port: u16,
    /// `/redfish/v1/Systems/<uuid>` per node name.
    pub systems_uri: BTreeMap<String, String>,
    nodes: Vec<BmcNode>,
    vbmc_conf: PathBuf,
    vbmcd: Option<Child>,
    sushy: Option<Child>,
    events: Option<Child>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn now_hms() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        d.subsec_millis()
    )
}

type Log = Arc<Mutex<fs::File>>;

fn log_line(log: &Log, line: &str) {
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(f, "{} {line}", now_hms());
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

impl Bmcs {
    /// Start vbmcd (one IPMI BMC per node), sushy-emulator (one Redfish service for all
    /// nodes) and the libvirt event watcher, all writing to `DIR/fence.log`. The domains must
    /// exist (defined) already.
    pub fn start(dir: &Path, nodes: &[BmcNode]) -> Result<Bmcs> {
        let venv = venv();
        for tool in ["vbmcd", "vbmc", "sushy-emulator", "python"] {
            if !venv.join("bin").join(tool).exists() {
                bail!(
                    "{} is missing: the BMC lab needs virtualbmc and sushy-tools in {} \
                     (bash -c 'source scripts/lib.sh; keel_bmc_venv', or set KEEL_BMC_VENV)",
                    venv.join("bin").join(tool).display(),
                    venv.display()
                );
            }
        }
        let log: Log = Arc::new(Mutex::new(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("fence.log"))?,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let by_domain: BTreeMap<String, String> = nodes
            .iter()
            .map(|n| (n.domain.clone(), n.node.clone()))
            .collect();
        let by_uuid: BTreeMap<String, String> = nodes
            .iter()
            .map(|n| (n.uuid.clone(), n.node.clone()))
            .collect();
        let mut b = Bmcs {
            // IPMI 2.0 passwords are at most 20 bytes
            password: random_hex(8)?,
            ipmi_ports: BTreeMap::new(),
            redfish_port: free_port()?,
            systems_uri: nodes
                .iter()
                .map(|n| (n.node.clone(), format!("/redfish/v1/Systems/{}", n.uuid)))
                .collect(),
            nodes: nodes.to_vec(),
            vbmc_conf: dir.join("vbmc.conf"),
            vbmcd: None,
            sushy: None,
            events: None,
            stop: stop.clone(),
            threads: Vec::new(),
        };

        // --- libvirt lifecycle events: the power state really changing ------------------------
        let mut ev = Command::new("virsh")
            .args(["-c", LIBVIRT_URI, "event", "--loop", "--event", "lifecycle"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("virsh-event.err"))?)
            .spawn()
            .context("starting virsh event")?;
        let out = ev
            .stdout
            .take()
            .ok_or_else(|| anyhow!("virsh event: no stdout"))?;
        b.events = Some(ev);
        {
            let log = log.clone();
            let by_domain = by_domain.clone();
            b.threads.push(std::thread::spawn(move || {
                // event 'lifecycle' for domain 'keel-lab-…-node2': Stopped Destroyed
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let Some((dom, what)) = line
                        .split_once("for domain '")
                        .and_then(|(_, r)| r.split_once("': "))
                    else {
                        continue;
                    };
                    let Some(node) = by_domain.get(dom) else {
                        continue;
                    };
                    let state = if what.starts_with("Stopped") {
                        "off"
                    } else if what.starts_with("Started") {
                        "on"
                    } else {
                        continue;
                    };
                    log_line(&log, &format!("libvirt {}: {state} {node}", what.trim()));
                }
            }));
        }

        // --- virtualbmc: one IPMI BMC per domain ----------------------------------------------
        let vdir = dir.join("vbmc");
        fs::create_dir_all(&vdir)?;
        fs::write(
            &b.vbmc_conf,
            format!(
                "[default]\nconfig_dir = {}/\npid_file = {}\nserver_port = {}\n\n[log]\nlogfile = {}\ndebug = true\n",
                vdir.display(),
                dir.join("vbmcd.pid").display(),
                free_port()?,
                dir.join("vbmcd.log").display()
            ),
        )?;
        b.vbmcd = Some(
            Command::new(venv.join("bin/vbmcd"))
                .arg("--foreground")
                .env("VIRTUALBMC_CONFIG", &b.vbmc_conf)
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("vbmcd.out"))?)
                .stderr(fs::File::create(dir.join("vbmcd.err"))?)
                .spawn()
                .context("starting vbmcd")?,
        );
        let t0 = Instant::now();
        while b.vbmc(&["list"]).is_err() {
            if t0.elapsed() > Duration::from_secs(30) {
                bail!(
                    "vbmcd did not answer within 30 s; see {}",
                    dir.join("vbmcd.err").display()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for n in nodes {
            let port = free_port()?;
            let port_s = port.to_string();
            b.vbmc(&[
                "add",
                &n.domain,
                "--port",
                &port_s,
                "--address",
                "127.0.0.1",
                "--username",
                USER,
                "--password",
                &b.password.clone(),
                "--libvirt-uri",
                LIBVIRT_URI,
            ])?;
            b.vbmc(&["start", &n.domain])?;
            b.ipmi_ports.insert(n.node.clone(), port);
        }
        {
            // vbmcd's log → fence.log: "Power off called for domain keel-…-node2"
            let log = log.clone();
            let stop = stop.clone();
            let by_domain = by_domain.clone();
            let path = dir.join("vbmcd.log");
            b.threads.push(std::thread::spawn(move || {
                follow(&path, &stop, |line| {
                    let Some((verb, rest)) = line
                        .split_once("] Power ")
                        .and_then(|(_, r)| r.split_once(" called for domain "))
                    else {
                        return;
                    };
                    if let Some(node) = by_domain.get(rest.trim()) {
                        log_line(&log, &format!("ipmi (vbmc) power {verb} {node}"));
                    }
                });
            }));
        }

        // --- sushy-tools: one Redfish service, only this lab's domains ------------------------
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=keel-lab-redfish", "-keyout"])
            .arg(dir.join("redfish.key"))
            .arg("-out")
            .arg(dir.join("redfish.crt"))
            .stderr(Stdio::null()))?;
        let hash = {
            let mut c = Command::new(venv.join("bin/python"))
                .args([
                    "-c",
                    "import bcrypt,sys; print(bcrypt.hashpw(sys.stdin.readline().strip().encode(), bcrypt.gensalt(rounds=5)).decode())",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("bcrypt in the BMC virtualenv")?;
            if let Some(mut i) = c.stdin.take() {
                writeln!(i, "{}", b.password)?;
            }
            let o = c.wait_with_output()?;
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        let hash = hash.trim();
        if !hash.starts_with("$2") {
            bail!("bcrypt (in {}) gave no hash", venv.display());
        }
        fs::write(dir.join("redfish.htpasswd"), format!("{USER}:{hash}\n"))?;
        let uuids: Vec<String> = nodes.iter().map(|n| format!("'{}'", n.uuid)).collect();
        fs::write(
            dir.join("sushy.conf"),
            format!(
                "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {}\n\
                 SUSHY_EMULATOR_SSL_CERT = '{}'\nSUSHY_EMULATOR_SSL_KEY = '{}'\n\
                 SUSHY_EMULATOR_AUTH_FILE = '{}'\nSUSHY_EMULATOR_LIBVIRT_URI = '{LIBVIRT_URI}'\n\
                 SUSHY_EMULATOR_ALLOWED_INSTANCES = [{}]\n",
                b.redfish_port,
                dir.join("redfish.crt").display(),
                dir.join("redfish.key").display(),
                dir.join("redfish.htpasswd").display(),
                uuids.join(", ")
            ),
        )?;
        let mut sushy = Command::new(venv.join("bin/sushy-emulator"))
            .arg("--config")
            .arg(dir.join("sushy.conf"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("sushy.out"))?)
            .stderr(Stdio::piped())
            .spawn()
            .context("starting sushy-emulator")?;
        let err = sushy
            .stderr
            .take()
            .ok_or_else(|| anyhow!("sushy-emulator: no stderr"))?;
        b.sushy = Some(sushy);
        {
            // werkzeug's access log (stderr) → sushy.log, resets → fence.log
            let log = log.clone();
            let mut raw = fs::File::create(dir.join("sushy.log"))?;
            b.threads.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = writeln!(raw, "{line}");
                    if !line.contains("ComputerSystem.Reset") {
                        continue;
                    }
                    if let Some(node) = by_uuid
                        .iter()
                        .find(|(u, _)| line.contains(u.as_str()))
                        .map(|(_, n)| n)
                    {
                        log_line(&log, &format!("redfish (sushy-tools) reset {node}"));
                    }
                }
            }));
        }

        // --- both answer, from the host, with the agents the guests use ------------------------
        for n in nodes {
            let port = b.ipmi_ports[&n.node].to_string();
            b.wait_status(
                "fence_ipmilan",
                &n.node,
                &[("lanplus", "1"), ("ipport", &port)],
            )?;
            let port = b.redfish_port.to_string();
            let uri = b.systems_uri[&n.node].clone();
            b.wait_status(
                "fence_redfish",
                &n.node,
                &[
                    ("ssl", "1"),
                    ("ssl_insecure", "1"),
                    ("ipport", &port),
                    ("systems_uri", &uri),
                ],
            )?;
        }
        Ok(b)
    }

    fn vbmc(&self, args: &[&str]) -> Result<String> {
        run(Command::new(venv().join("bin/vbmc"))
            .args(args)
            .env("VIRTUALBMC_CONFIG", &self.vbmc_conf))
    }

    /// Ask a BMC for the power status with the same fence agent a node will use (the password
    /// on stdin, as Pacemaker passes it), until it answers `Status: ON`.
    fn wait_status(&self, agent: &str, node: &str, extra: &[(&str, &str)]) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let mut c = Command::new(format!("/usr/sbin/{agent}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("running /usr/sbin/{agent} (Debian's fence-agents)"))?;
            if let Some(mut i) = c.stdin.take() {
                let mut opts = format!(
                    "action=status\nip=127.0.0.1\nusername={USER}\npassword={}\n",
                    self.password
                );
                for (k, v) in extra {
                    opts.push_str(&format!("{k}={v}\n"));
                }
                let _ = i.write_all(opts.as_bytes());
            }
            let o = c.wait_with_output()?;
            let out = String::from_utf8_lossy(&o.stdout);
            if o.status.success() && out.contains("Status: ON") {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!(
                    "{agent} for {node} did not report ON within 30 s: {out}{}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Stop the BMCs and the event watcher (only the processes started here).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for n in &self.nodes {
            let _ = self.vbmc(&["stop", &n.domain]);
        }
        for c in [&mut self.vbmcd, &mut self.sushy, &mut self.events]
            .into_iter()
            .flatten()
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        let t0 = Instant::now();
        for c in [&mut self.vbmcd, &mut self.sushy, &mut self.events]
            .into_iter()
            .flatten()
        {
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.vbmcd = None;
        self.sushy = None;
        self.events = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Bmcs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Follow a file that is being appended to, calling `f` per complete line, until `stop`.
fn follow(path: &Path, stop: &AtomicBool, mut f: impl FnMut(&str)) {
    let mut pos = 0usize;
    let mut partial = String::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(data) = fs::read(path) {
            if data.len() > pos {
                partial.push_str(&String::from_utf8_lossy(&data[pos..]));
                pos = data.len();
                while let Some(i) = partial.find('\n') {
                    let line: String = partial.drain(..=i).collect();
                    f(line.trim_end());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
