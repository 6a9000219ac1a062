//! Test harness: a real `keel-hostd` process on the system libvirtd (qemu:///system, TCG),
//! with its own state directory, port, node name and storage pool, so tests never touch each
//! other's objects. Drop kills only its own hostd (by PID) and removes the libvirt objects it
//! created (domains, pool, networks named with its unique prefix).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keel_api::task::{TaskInfo, TaskState};
use reqwest::blocking::{Client, Response};
use serde_json::Value;

pub mod sshd;

pub const PASSWORD: &str = "test-password-1";
static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Build (or take from cache) the project's live ISO; returns its directory.
pub fn live_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = repo_root().join("target/keel-live");
        let st = Command::new("bash")
            .arg(repo_root().join("iso/live/build.sh"))
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run iso/live/build.sh: {e}"));
        assert!(st.success(), "iso/live/build.sh failed");
        out
    })
    .clone()
}

pub fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .arg("-c")
        .arg("qemu:///system")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run virsh: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

pub struct Hostd {
    pub ui_dir: Option<PathBuf>,
    pub seq: u32,
    pub prefix: String,
    pub dir: PathBuf,
    pub port: u16,
    pub node: String,
    pub pool: String,
    pub base: String,
    pub token: String,
    pub client: Client,
    child: Option<Child>,
    /// `None`: the system libvirtd (qemu:///system).
    libvirt_uri: Option<String>,
    /// Lines appended to hostd.toml's top level.
    extra_config: String,
}

impl Hostd {
    /// Run the browser test `ui/e2e/SCRIPT` (playwright-core in Debian's chromium) against this
    /// hostd, as root with the test password, plus `env`; print its steps and time, and panic
    /// unless every step passed (screenshots of a failed step land in `ui/e2e/artifacts/`).
    /// Returns its standard output.
    #[allow(dead_code)]
    pub fn run_ui_script(&self, script: &str, env: &[(&str, String)]) -> String {
        let t0 = Instant::now();
        let out = Command::new("node")
            .arg(repo_root().join("ui/e2e").join(script))
            .env("KEEL_UI_URL", &self.base)
            .env("KEEL_UI_PASSWORD", PASSWORD)
            .env("KEEL_PASSWORD", PASSWORD)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap_or_else(|e| panic!("cannot run node (ui/e2e/{script}): {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!(
            "{stdout}{}{script} took {:.1}s",
            String::from_utf8_lossy(&out.stderr),
            t0.elapsed().as_secs_f64()
        );
        if !(out.status.success() && stdout.trim_end().ends_with("passed, 0 failed")) {
            // Whether hostd was still there tells a server crash from a lost connection.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "ui/e2e/{script} failed (screenshots in ui/e2e/artifacts/): {stdout}\nkeel-hostd {}; the last lines of its log:\n{}",
                if self.is_running() { "is still running" } else { "is NOT running (it died)" },
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        stdout
    }

    /// Whether our keel-hostd process is alive (not exited, not a zombie).
    pub fn is_running(&self) -> bool {
        self.child.as_ref().is_some_and(|c| {
            std::fs::read_to_string(format!("/proc/{}/stat", c.id()))
                .map(|s| {
                    !s.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('Z'))
                })
                .unwrap_or(false)
        })
    }

    pub fn start() -> Hostd {
        Self::start_opts(None)
    }

    /// A hostd that also serves the web UI from `ui_dir` (ui/dist).
    pub fn start_with_ui(ui_dir: &Path) -> Hostd {
        Self::start_opts(Some(ui_dir.to_path_buf()))
    }

    /// A hostd on libvirt's own test driver (`test:///default`: libvirt's API and XML handling,
    /// a simulated hypervisor private to this hostd): for runs that send arbitrary valid
    /// requests (fuzzing), which must not reach the shared system libvirtd's VMs.
    pub fn start_on_test_driver() -> Hostd {
        Self::start_full(None, Some("test:///default"), "")
    }

    fn start_opts(ui_dir: Option<PathBuf>) -> Hostd {
        Self::start_full(ui_dir, None, "")
    }

    /// A hostd serving the web UI whose hostd.toml also has these lines.
    pub fn start_with_ui_and_config(ui_dir: &Path, extra: &str) -> Hostd {
        Self::start_full(Some(ui_dir.to_path_buf()), None, extra)
    }

    /// A hostd whose hostd.toml also has these lines (top-level settings).
    pub fn start_with_config(extra: &str) -> Hostd {
        Self::start_full(None, None, extra)
    }

    fn start_full(ui_dir: Option<PathBuf>, libvirt_uri: Option<&str>, extra: &str) -> Hostd {
        let (ok, out) = virsh(&["version"]);
        assert!(ok, "libvirtd is not reachable at qemu:///system ({out}); the README's test command starts it");
        let seq = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("kt{}x{}", std::process::id(), seq);
        let dir = PathBuf::from(format!("/var/tmp/keel-test/{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        // The live kernel lets the KVM probe run for real; its verdict is cached per host.
        let mut h = Hostd {
            port: free_port(),
            node: format!("{prefix}-node"),
            pool: prefix.clone(),
            base: String::new(),
            token: String::new(),
            client: Client::builder()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
            child: None,
            dir,
            prefix,
            seq,
            ui_dir,
            libvirt_uri: libvirt_uri.map(str::to_string),
            extra_config: extra.to_string(),
        };
        h.base = format!("https://127.0.0.1:{}", h.port);
        h.spawn();
        let t = h.login_token();
        h.token = t;
        h
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("hostd.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let cfg = self.dir.join("hostd.toml");
        let mut text = format!(
            "node = \"{}\"\nlisten = \"127.0.0.1:{}\"\nstate_dir = \"{}\"\ndefault_pool = \"{}\"\naccel = \"tcg\"\nbackup_nfs_dir = \"{}\"\n",
            self.node,
            self.port,
            self.dir.join("state").display(),
            self.pool,
            self.dir.join("backup-nfs").display()
        );
        if let Some(ui) = &self.ui_dir {
            text.push_str(&format!("ui_dir = \"{}\"\n", ui.display()));
        }
        if !self.extra_config.is_empty() {
            text.push_str(&self.extra_config);
            text.push('\n');
        }
        // Host network changes never reach this host's networkd directory.
        if !self.extra_config.contains("network_dir") {
            text.push_str(&format!(
                "network_dir = \"{}\"\n",
                self.dir.join("networkd").display()
            ));
        }
        if let Some(uri) = &self.libvirt_uri {
            text.push_str(&format!("libvirt_uri = \"{uri}\"\n"));
        }
        std::fs::write(&cfg, text).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_keel-hostd"))
            .arg("--config")
            .arg(&cfg)
            .env("KEEL_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "info")
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start keel-hostd: {e}"));
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/api/v1/health", self.base))
                .send()
            {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("keel-hostd exited ({st}); log:\n{}", self.log());
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "keel-hostd did not answer in 60s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The PID of our keel-hostd process.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("keel-hostd is not running"))
    }

    /// Resident memory of our keel-hostd process (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("reading hostd's /proc status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in hostd's /proc status"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hostd.log")).unwrap_or_default()
    }

    /// SIGKILL our hostd (a crash), then start it again on the same state.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Log in with the password; returns (client with cookie, csrf token).
    pub fn login(&self) -> (Client, String, String) {
        let c = Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let r = c
            .post(format!("{}/api/v1/access/ticket", self.base))
            .json(&serde_json::json!({"username": "root", "password": PASSWORD}))
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 200, "login failed");
        let v: Value = r.json().unwrap_or_else(|e| panic!("{e}"));
        let ticket = v["ticket"].as_str().unwrap_or_default().to_string();
        let csrf = v["csrf_token"].as_str().unwrap_or_default().to_string();
        (c, ticket, csrf)
    }

    fn login_token(&self) -> String {
        let (c, ticket, csrf) = self.login();
        let r = c
            .post(format!("{}/api/v1/access/tokens", self.base))
            .header("Cookie", format!("KeelAuthCookie={ticket}"))
            .header("CSRFPreventionToken", csrf)
            .json(&serde_json::json!({"tokenid": "tests"}))
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 201);
        let v: Value = r.json().unwrap_or_else(|e| panic!("{e}"));
        format!(
            "{}={}",
            v["full_tokenid"].as_str().unwrap_or_default(),
            v["secret"].as_str().unwrap_or_default()
        )
    }

    /// A vmid for this test: unique per process and harness instance, far from the ids people
    /// use (the shared libvirtd may hold other VMs, e.g. setup.sh's demo VM 100).
    pub fn id(&self, k: u32) -> u32 {
        900_000_000 + (std::process::id() % 100_000) * 100 + self.seq * 10 + k
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `/api/v1/nodes/{node}` + rest
    pub fn node_url(&self, rest: &str) -> String {
        format!("{}/api/v1/nodes/{}{rest}", self.base, self.node)
    }

    fn auth(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        rb.header("Authorization", format!("KeelAPIToken {}", self.token))
    }

    pub fn get(&self, rest: &str) -> Response {
        self.auth(self.client.get(self.node_url(rest)))
            .send()
            .unwrap_or_else(|e| panic!("GET {rest}: {e}"))
    }

    pub fn get_json(&self, rest: &str) -> Value {
        let r = self.get(rest);
        assert!(r.status().is_success(), "GET {rest}: {}", r.status());
        r.json().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn post(&self, rest: &str, body: Value) -> Response {
        self.auth(self.client.post(self.node_url(rest)).json(&body))
            .send()
            .unwrap_or_else(|e| panic!("POST {rest}: {e}"))
    }

    pub fn post_empty(&self, rest: &str) -> Response {
        self.auth(self.client.post(self.node_url(rest)))
            .send()
            .unwrap_or_else(|e| panic!("POST {rest}: {e}"))
    }

    pub fn put(&self, rest: &str, body: Value) -> Response {
        self.auth(self.client.put(self.node_url(rest)).json(&body))
            .send()
            .unwrap_or_else(|e| panic!("PUT {rest}: {e}"))
    }

    pub fn delete(&self, rest: &str) -> Response {
        self.auth(self.client.delete(self.node_url(rest)))
            .send()
            .unwrap_or_else(|e| panic!("DELETE {rest}: {e}"))
    }

    /// Expect 202 and wait for the task; returns it (whatever its end state).
    pub fn task(&self, r: Response) -> TaskInfo {
        let status = r.status();
        let v: Value = r.json().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 202, "expected 202 Accepted, got {status}: {v}");
        let upid = v["upid"]
            .as_str()
            .unwrap_or_else(|| panic!("no upid in {v}"))
            .to_string();
        self.wait_task(&upid)
    }

    pub fn wait_task(&self, upid: &str) -> TaskInfo {
        let t0 = Instant::now();
        loop {
            let t: TaskInfo = serde_json::from_value(self.get_json(&format!("/tasks/{upid}")))
                .unwrap_or_else(|e| panic!("{e}"));
            if t.state != TaskState::Running {
                return t;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "task {upid} still running after 300s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Run a mutating call and require its task to end ok.
    pub fn ok(&self, r: Response) -> TaskInfo {
        let t = self.task(r);
        assert_eq!(
            t.state,
            TaskState::Ok,
            "task {} failed: {:?}",
            t.upid,
            t.message
        );
        t
    }

    /// Upload a file into our pool.
    pub fn upload(&self, file: &Path, name: &str) {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{e}"));
        let r = self
            .auth(self.client.post(self.node_url(&format!(
                "/storage/{}/upload?filename={name}&size={}",
                self.pool,
                data.len()
            ))))
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 200, "upload: {}", r.text().unwrap_or_default());
    }

    /// Wait until `f` holds, polling real state; panics with `what` after `secs`.
    pub fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "timed out after {secs}s waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn serial(&self, vmid: u32) -> String {
        self.get(&format!("/vms/{vmid}/serial"))
            .text()
            .unwrap_or_default()
    }

    pub fn state(&self, vmid: u32) -> String {
        self.get_json(&format!("/vms/{vmid}/status/current"))["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Open a VM's console WebSocket; `Ok(first payload bytes)` or `Err(HTTP status)`.
pub fn console_open(
    h: &Hostd,
    vmid: u32,
    ticket: &str,
    authenticated: bool,
) -> Result<Vec<u8>, u16> {
    use tokio::io::AsyncReadExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .http1_only()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut rb = c
            .get(h.node_url(&format!("/vms/{vmid}/vncwebsocket?vncticket={ticket}")))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Protocol", "binary");
        if authenticated {
            rb = rb.header("Authorization", format!("KeelAPIToken {}", h.token));
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{e}"));
        if r.status().as_u16() != 101 {
            return Err(r.status().as_u16());
        }
        let mut up = r.upgrade().await.unwrap_or_else(|e| panic!("{e}"));
        // One unmasked server frame: 0x82 (final, binary), length, payload.
        let mut hdr = [0u8; 2];
        up.read_exact(&mut hdr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hdr[0], 0x82, "a binary frame");
        let len = (hdr[1] & 0x7f) as usize;
        assert!(len < 126, "short first frame expected");
        let mut payload = vec![0u8; len];
        up.read_exact(&mut payload)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Ok(payload)
    })
}

impl Drop for Hostd {
    fn drop(&mut self) {
        self.kill();
        if self.libvirt_uri.is_some() {
            // a private test-driver libvirt: nothing of ours is left in the system libvirtd
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            return;
        }
        // Remove what this instance created in the shared libvirtd.
        let (_, list) = virsh(&["list", "--all", "--name"]);
        for name in list
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with(&self.prefix))
        {
            let _ = virsh(&["destroy", name]);
            let _ = virsh(&["undefine", "--nvram", "--snapshots-metadata", name]);
        }
        let (_, nets) = virsh(&["net-list", "--all", "--name"]);
        for name in nets
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with(&self.prefix))
        {
            let _ = virsh(&["net-destroy", name]);
            let _ = virsh(&["net-undefine", name]);
        }
        let _ = virsh(&["pool-destroy", &self.pool]);
        let _ = virsh(&["pool-undefine", &self.pool]);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept {} for inspection", self.dir.display());
        }
    }
}

/// A disk image the live guest treats as its scratch disk (header `KEEL-SCRATCH`, see
/// iso/live/init): `size_mib` MiB, written to `dir/name` as raw or qcow2 (per `name`'s
/// extension) with `qemu-img`. Upload it with [`Hostd::upload`] and give it to a VM as
/// `{"pool": .., "volume": name}`; the guest then records one tick per 2 s on it.
pub fn scratch_image(dir: &Path, name: &str, size_mib: u64) -> PathBuf {
    let raw = dir.join(format!("{name}.raw-src"));
    let mut data = vec![0u8; 4096];
    data[..13].copy_from_slice(b"KEEL-SCRATCH\n");
    std::fs::write(&raw, &data).unwrap_or_else(|e| panic!("{e}"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&raw)
        .unwrap_or_else(|e| panic!("{e}"));
    f.set_len(size_mib * 1024 * 1024)
        .unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join(name);
    let fmt = if name.ends_with(".qcow2") {
        "qcow2"
    } else {
        "raw"
    };
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", fmt])
        .arg(&raw)
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("qemu-img is needed for scratch disks: {e}"));
    assert!(
        st.success(),
        "qemu-img convert failed for {}",
        out.display()
    );
    let _ = std::fs::remove_file(&raw);
    out
}

/// The ticks the live guest recorded on a scratch disk image (any format qemu-img reads):
/// `n` when blocks 2..=n+1 hold ticks 1..=n in order. Panics if the run has a hole or a tick
/// out of place — a torn or mixed-up copy — so a returned count is a consistent point in time.
pub fn scratch_ticks(image: &Path) -> u32 {
    let tmp = image.with_extension("ticks-raw");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&tmp)
        .status()
        .unwrap_or_else(|e| panic!("qemu-img is needed to read scratch disks: {e}"));
    assert!(
        st.success(),
        "qemu-img convert failed for {}",
        image.display()
    );
    let data = std::fs::read(&tmp).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&tmp);
    assert!(
        data.starts_with(b"KEEL-SCRATCH"),
        "{} is not a scratch disk (header missing)",
        image.display()
    );
    let mut n = 0u32;
    for (i, block) in data.chunks(4096).enumerate().skip(2) {
        if !block.starts_with(b"KEEL-TICK ") {
            // Everything after the run must be untouched.
            let rest = &data[i * 4096..];
            assert!(
                rest.iter().all(|b| *b == 0),
                "{}: the tick run ends at {n} but later blocks were written (torn copy)",
                image.display()
            );
            break;
        }
        let want = format!("KEEL-TICK {:08}\n", i - 1);
        assert!(
            block.starts_with(want.as_bytes()),
            "{}: block {i} holds {:?}, expected {want:?}",
            image.display(),
            String::from_utf8_lossy(&block[..20])
        );
        n = (i - 1) as u32;
    }
    n
}
