//! The install lab: Keel's installer ISO booted under QEMU TCG on blank disks, on a lab link
//! the host takes part in.
//!
//! - [`installer_iso`] builds the ISO once per answer (`keel-installer build-iso`; cached under
//!   `/var/cache/keel/installer/lab-iso/<hash>.iso`, keyed by the answer and Keel's binaries —
//!   the product rootfs underneath is cached by the recipe's hash).
//! - [`Link`]: a network namespace with a Linux bridge (`br0`, 10.77.0.1/24) that the guests'
//!   NICs join as tap devices, and a chronyd serving time on 10.77.0.1 (`local stratum 8`).
//!   The host kernel has no 802.1Q: tagged frames cross the bridge untouched, so VLANs are
//!   proven guest to guest. On demand ([`Link::start_nfs`]) an NFSv4 server on 10.77.0.1:
//!   nfs-ganesha, userspace (the host kernel has no nfsd), exporting a run directory.
//! - [`Machine`]: one guest (BIOS or UEFI/OVMF), QEMU started inside the namespace (it opens
//!   its taps there), serial console to a file, QMP for link faults. SSH goes over the lab
//!   link from inside the namespace.
//!
//! Only processes started here are stopped, by PID. The run directory
//! (`/var/tmp/keel-lab/install-<id>/`) is removed after a passed run and kept otherwise.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::vmlab::qmp_call;

/// The host's address on the lab link (NTP server, SSH client).
pub const HOST_ADDR: &str = "10.77.0.1";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run `cmd`; its stdout, or an error with its status and output.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// `target/release/NAME` if newer than `target/debug/NAME`, else the debug one.
pub fn keel_bin(name: &str) -> Result<PathBuf> {
    let t = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let (r, d) = (t.join("release").join(name), t.join("debug").join(name));
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(&r), mtime(&d)) {
        (Some(a), Some(b)) if a > b => Ok(r),
        (_, Some(_)) => Ok(d),
        (Some(_), None) => Ok(r),
        _ => bail!("{name} is not built; run cargo build --workspace --bins"),
    }
}

/// A built installer ISO.
#[derive(Debug, Clone)]
pub struct Iso {
    pub path: PathBuf,
    pub bytes: u64,
    /// Seconds this call took (a cache hit is ~0).
    pub seconds: f64,
    /// The build report of `build-iso` when it ran (rootfs/binaries/assembly seconds).
    pub report: Option<serde_json::Value>,
}

/// Build (or reuse) the installer ISO with `answer` embedded.
pub fn installer_iso(answer: &str) -> Result<Iso> {
    let t0 = Instant::now();
    let inst = keel_bin("keel-installer")?;
    let bin_dir = inst
        .parent()
        .ok_or_else(|| anyhow!("no bin dir"))?
        .to_path_buf();
    let mut h = Sha256::new();
    h.update(answer.as_bytes());
    for b in ["keel-installer", "keel-hostd", "keel", "keel-clusterd"] {
        if let Ok(mut f) = fs::File::open(bin_dir.join(b)) {
            std::io::copy(&mut f, &mut h)?;
        }
    }
    let mut recipe: Vec<PathBuf> = Vec::new();
    let mut stack = vec![repo_root().join("iso/installer")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)?.flatten() {
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                recipe.push(e.path());
            }
        }
    }
    recipe.sort();
    for p in &recipe {
        h.update(p.to_string_lossy().as_bytes());
        h.update(fs::read(p)?);
    }
    let key = hex::encode(h.finalize())[..16].to_string();
    let dir = Path::new("/var/cache/keel/installer/lab-iso");
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{key}.iso"));
    if path.exists() {
        return Ok(Iso {
            bytes: fs::metadata(&path)?.len(),
            path,
            seconds: t0.elapsed().as_secs_f64(),
            report: None,
        });
    }
    let ans = dir.join(format!("{key}.answer.toml"));
    fs::write(&ans, answer)?;
    let part = dir.join(format!("{key}.{}.part", std::process::id()));
    let out = Command::new(&inst)
        .arg("build-iso")
        .arg("--answer")
        .arg(&ans)
        .arg("--out")
        .arg(&part)
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .context("running keel-installer build-iso")?;
    if !out.status.success() {
        let _ = fs::remove_file(&part);
        bail!("keel-installer build-iso failed: {}", out.status);
    }
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("build-iso --json output")?;
    fs::rename(&part, &path)?;
    // Keep only a few lab ISOs around.
    let mut old: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "iso"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    old.sort();
    while old.len() > 3 {
        let (_, p) = old.remove(0);
        let _ = fs::remove_file(&p);
        let _ = fs::remove_file(p.with_extension("answer.toml"));
    }
    Ok(Iso {
        bytes: fs::metadata(&path)?.len(),
        path,
        seconds: t0.elapsed().as_secs_f64(),
        report: Some(report),
    })
}

/// The lab link: a namespace with a bridge, the host's address and a chronyd.
pub struct Link {
    pub ns: String,
    pub dir: PathBuf,
    chronyd_pid: Option<u32>,
    ganesha: std::sync::Mutex<Option<Child>>,
    keep: bool,
    passed: bool,
}

impl Link {
    pub fn up(id: &str) -> Result<Link> {
        let dir = Path::new(crate::vmlab::RUN_ROOT).join(format!("install-{id}"));
        // Two installed nodes hold about 2 GiB each; the raw disks are sparse.
        crate::vmlab::require_free_space(&dir, 8, "the install lab")?;
        fs::create_dir_all(&dir)?;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ns = format!("kinst-{}-{seq}", std::process::id());
        let mut link = Link {
            ns: ns.clone(),
            dir: dir.clone(),
            chronyd_pid: None,
            ganesha: std::sync::Mutex::new(None),
            keep: std::env::var("KEEL_LAB_KEEP").is_ok_and(|v| v == "1"),
            passed: false,
        };
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        let ipn = |args: &[&str]| run(Command::new("ip").args(["-n", &ns]).args(args));
        ipn(&["link", "set", "lo", "up"])?;
        ipn(&["link", "add", "br0", "type", "bridge"])?;
        ipn(&["addr", "add", &format!("{HOST_ADDR}/24"), "dev", "br0"])?;
        ipn(&["link", "set", "br0", "up"])?;
        let conf = dir.join("chrony.conf");
        fs::write(
            &conf,
            format!(
                "bindaddress {HOST_ADDR}\nallow 10.77.0.0/24\nlocal stratum 8\ncmdport 0\n\
                 pidfile {}\ndriftfile {}\n",
                dir.join("chronyd.pid").display(),
                dir.join("chrony.drift").display()
            ),
        )?;
        // -x: serve time, never touch the host's clock. chronyd daemonizes; its pid file says
        // which process is ours.
        run(Command::new("ip")
            .args(["netns", "exec", &ns, "chronyd", "-x", "-f"])
            .arg(&conf))?;
        for _ in 0..50 {
            if let Ok(p) = fs::read_to_string(dir.join("chronyd.pid")) {
                link.chronyd_pid = p.trim().parse().ok();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if link.chronyd_pid.is_none() {
            bail!("chronyd did not start in {ns}");
        }
        Ok(link)
    }

    /// A tap device on the bridge, for one guest NIC.
    pub fn tap(&self, name: &str) -> Result<()> {
        run(Command::new("ip").args([
            "netns", "exec", &self.ns, "ip", "tuntap", "add", "dev", name, "mode", "tap",
        ]))?;
        run(Command::new("ip").args(["-n", &self.ns, "link", "set", name, "master", "br0"]))?;
        run(Command::new("ip").args(["-n", &self.ns, "link", "set", name, "up"]))?;
        Ok(())
    }

    /// An NFSv4 server on the link (nfs-ganesha, its VFS backend) exporting `export` (created
    /// here) as `pseudo`, read-write for every guest, root not squashed, no grace period; the
    /// export as guests mount it: `10.77.0.1:<pseudo>`.
    pub fn start_nfs(&self, export: &Path, pseudo: &str) -> Result<String> {
        fs::create_dir_all(export)?;
        let state = self.dir.join("ganesha");
        fs::create_dir_all(&state)?;
        let conf = state.join("ganesha.conf");
        fs::write(
            &conf,
            format!(
                "NFS_CORE_PARAM {{ Protocols = 4; Bind_addr = {HOST_ADDR}; NFS_Port = 2049; \
                 Enable_NLM = false; Enable_RQUOTA = false; }}\n\
                 NFSV4 {{ Graceless = true; Lease_Lifetime = 10; RecoveryBackend = fs; RecoveryRoot = {rec}; }}\n\
                 NFS_KRB5 {{ Active_krb5 = false; }}\n\
                 EXPORT {{ Export_Id = 1; Path = {path}; Pseudo = {pseudo}; Access_Type = RW; \
                 Squash = No_Root_Squash; SecType = sys; Protocols = 4; Transports = TCP; \
                 FSAL {{ Name = VFS; }} }}\n",
                rec = state.join("recovery").display(),
                path = export.display(),
            ),
        )?;
        let log = state.join("ganesha.log");
        // -F: in the foreground, so the child is the server (`ip netns exec` execs it)
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "ganesha.nfsd", "-F", "-f"])
            .arg(&conf)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(state.join("ganesha.pid"))
            .args(["-N", "NIV_EVENT"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("ganesha.nfsd (Debian's nfs-ganesha and nfs-ganesha-vfs; scripts/test.sh installs them)")?;
        let mut g = self
            .ganesha
            .lock()
            .map_err(|_| anyhow!("the lab's ganesha lock"))?;
        *g = Some(child);
        let t = Instant::now();
        loop {
            let ss = self
                .exec(&["ss", "-Hltn", "sport = :2049"])
                .unwrap_or_default();
            if ss.contains("2049") {
                break;
            }
            if let Some(c) = g.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    bail!(
                        "ganesha.nfsd exited ({st}): {}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!(
                    "ganesha.nfsd does not listen on {HOST_ADDR}:2049 after 30 s: {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(format!("{HOST_ADDR}:{pseudo}"))
    }

    /// Run a command inside the namespace; its output, or an error with both streams.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args))
    }

    pub fn passed(&mut self) {
        self.passed = true;
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "KEEL_LAB_KEEP=1: link {} left up (chronyd pid {:?}); remove with: kill {:?}; ip netns del {}",
                self.ns, self.chronyd_pid, self.chronyd_pid, self.ns
            );
            return;
        }
        if let Some(p) = self.chronyd_pid {
            let _ = Command::new("kill").arg(p.to_string()).status();
        }
        if let Some(mut c) = self.ganesha.lock().ok().and_then(|mut g| g.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        if self.passed && !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "install lab failed; run directory kept: {}",
                self.dir.display()
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

/// How to boot one guest.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    pub name: String,
    pub firmware: Firmware,
    pub disk_gib: u64,
    /// MACs of the NICs on the lab link (taps `<name>0`, `<name>1`, … ; QEMU ids `l1`, `l2`, …).
    pub macs: Vec<String>,
    /// An answer file on a small vfat disk labelled KEEL-ANSWER.
    pub answer_disk: Option<String>,
    pub mem_mib: u32,
}

/// One guest booted from the ISO.
pub struct Machine {
    pub name: String,
    pub disk: PathBuf,
    pub serial: PathBuf,
    pub qmp: PathBuf,
    pub started: Instant,
    child: Option<Child>,
    pid: u32,
    keep: bool,
}

impl Machine {
    pub fn start(link: &Link, iso: &Path, spec: &MachineSpec) -> Result<Machine> {
        let d = &link.dir;
        let n = &spec.name;
        let disk = d.join(format!("{n}.raw"));
        fs::File::create(&disk)?.set_len(spec.disk_gib << 30)?;
        let serial = d.join(format!("{n}.serial"));
        let qmp = d.join(format!("{n}.qmp"));
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &link.ns, "qemu-system-x86_64"])
            .args(["-name", n])
            .args(["-accel", "tcg,tb-size=256"])
            .args(["-machine", "pc", "-cpu", "qemu64", "-smp", "1"])
            .args(["-m", &spec.mem_mib.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"]);
        if spec.firmware == Firmware::Uefi {
            let vars = d.join(format!("{n}.OVMF_VARS.fd"));
            fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)?;
            c.args([
                "-drive",
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            ])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        }
        c.arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=raw,cache=unsafe",
                disk.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},media=cdrom,if=ide,index=2,readonly=on",
                iso.display()
            ))
            .args(["-boot", "order=cd"]);
        if let Some(answer) = &spec.answer_disk {
            let img = d.join(format!("{n}.answer.img"));
            let _ = fs::remove_file(&img);
            run(Command::new("mkfs.vfat")
                .args(["-C", "-n", "KEEL-ANSWER"])
                .arg(&img)
                .arg("2048"))?;
            let f = d.join(format!("{n}.answer.toml"));
            fs::write(&f, answer)?;
            run(Command::new("mcopy")
                .arg("-i")
                .arg(&img)
                .arg(&f)
                .arg("::answer.toml"))?;
            c.arg("-drive")
                .arg(format!("file={},if=virtio,format=raw", img.display()));
        }
        for (i, mac) in spec.macs.iter().enumerate() {
            let tap = format!("{n}{i}");
            link.tap(&tap)?;
            c.args([
                "-netdev",
                &format!("tap,id=l{},ifname={tap},script=no,downscript=no", i + 1),
                "-device",
                &format!("virtio-net-pci,netdev=l{},mac={mac}", i + 1),
            ]);
        }
        c.arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .stdin(Stdio::null())
            .stdout(fs::File::create(d.join(format!("{n}.qemu.log")))?)
            .stderr(fs::File::create(d.join(format!("{n}.qemu.err")))?);
        fs::write(d.join(format!("{n}.cmdline")), format!("{c:?}\n"))?;
        let child = c.spawn().context("starting qemu")?;
        let pid = child.id(); // `ip netns exec` execs QEMU: same PID
        fs::write(d.join(format!("{n}.pid")), format!("{pid}\n"))?;
        Ok(Machine {
            name: n.clone(),
            disk,
            serial,
            qmp,
            started: Instant::now(),
            child: Some(child),
            pid,
            keep: link.keep,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The serial console so far (lossy UTF-8).
    pub fn console(&self) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = fs::File::open(&self.serial) {
            let _ = f.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).to_string()
    }

    /// Wait until the console shows `marker`; fails early on `fail` (if given) or QEMU exiting.
    pub fn wait_console(
        &mut self,
        marker: &str,
        fail: Option<&str>,
        timeout: Duration,
    ) -> Result<f64> {
        let t0 = Instant::now();
        loop {
            let c = self.console();
            if c.contains(marker) {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            if let Some(f) = fail {
                if c.contains(f) {
                    let tail: Vec<&str> = c.lines().rev().take(40).collect();
                    bail!(
                        "{}: console shows {f:?}:\n{}",
                        self.name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
            }
            if let Some(ch) = self.child.as_mut() {
                if let Some(st) = ch.try_wait()? {
                    bail!("{}: QEMU exited ({st}) before {marker:?}", self.name);
                }
            }
            if t0.elapsed() > timeout {
                let tail: Vec<&str> = c.lines().rev().take(30).collect();
                bail!(
                    "{}: no {marker:?} on the console within {timeout:?} (QEMU state: {}); last lines:\n{}",
                    self.name,
                    self.run_state(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// QEMU's run state (`running`, `io-error`, …) for failure messages.
    pub fn run_state(&self) -> String {
        crate::vmlab::qemu_run_state(&self.qmp)
    }

    /// Cable pull / plug on NIC `i` (0-based; QEMU id `l{i+1}`).
    pub fn set_link(&self, i: usize, up: bool) -> Result<()> {
        qmp_call(
            &self.qmp,
            "set_link",
            Some(json!({"name": format!("l{}", i + 1), "up": up})),
        )
        .map(|_| ())
    }

    /// Stop this guest's QEMU (our own child, by handle).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Allocated bytes of the (sparse) target disk image: 0 means nothing was ever written.
    pub fn disk_allocated(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(fs::metadata(&self.disk)?.blocks() * 512)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.keep {
            if let Some(c) = self.child.take() {
                std::mem::forget(c);
            }
            eprintln!(
                "KEEL_LAB_KEEP=1: {} left running (pid {})",
                self.name, self.pid
            );
            return;
        }
        self.kill();
    }
}

/// SSH to a guest over the lab link, from inside the namespace.
pub struct Ssh<'a> {
    pub link: &'a Link,
    pub key: PathBuf,
    pub addr: String,
}

impl Ssh<'_> {
    pub fn exec(&self, cmd: &str, timeout: Duration) -> Result<(i32, String, String)> {
        let mut child = Command::new("timeout")
            .arg(timeout.as_secs().to_string())
            .args(["ip", "netns", "exec", &self.link.ns, "ssh", "-q", "-i"])
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
            ])
            .arg(format!("root@{}", self.addr))
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut so = String::new();
        let mut se = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut so);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut se);
        }
        let st = child.wait()?;
        Ok((st.code().unwrap_or(-1), so, se))
    }

    /// Run `cmd`; non-zero exit is an error.
    pub fn run(&self, cmd: &str) -> Result<String> {
        let (code, so, se) = self.exec(cmd, Duration::from_secs(120))?;
        if code != 0 {
            bail!("{}: `{cmd}` exited {code}: {so}{se}", self.addr);
        }
        Ok(so)
    }
}
