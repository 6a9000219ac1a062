//! Keel's API against the raw engine (a measurement, not a test: nothing here asserts on time).
//!
//!   cargo bench -p keel-hostd --bench api_vs_virsh     (as root, libvirtd running)
//!
//! Part 1, create+start of one VM (128 MiB, no disks, the live ISO as cdrom, no NICs) on the
//! system libvirtd (qemu:///system, TCG):
//!   api   = POST /api/v1/nodes/{node}/vms?start=true, then poll the task until it is ok;
//!   virsh = `virsh define FILE` + `virsh start NAME` of the very XML hostd produced for an
//!           equivalent VM (renamed, without its <uuid> and Keel metadata).
//! Rounds are interleaved (the order alternates); each VM is destroyed and undefined after its
//! round, outside the timed region. KEEL_BENCH_ROUNDS (default 5).
//!
//! Part 2, listing 1,000 defined domains: a second keel-hostd on libvirt's test driver with a
//! generated node file (test:///<file>), GET /api/v1/nodes/{node}/vms against the in-process
//! libvirt calls hostd makes per request (list_all_domains + name, uuid, info, Keel metadata
//! for each domain). KEEL_BENCH_LIST_ROUNDS (default 200). Also a breakdown of the same list
//! through hostd's library layers, in this process, to show where the time goes.
//!
//! Peak RSS (VmHWM) of both keel-hostd processes is reported at the end of each part.
//! KEEL_BENCH_ONLY=create|list runs one part.

#[path = "../tests/common/mod.rs"]
mod common;

mod bench_util;
use bench_util::*;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{live_dir, virsh, Hostd};
use keel_api::task::{TaskInfo, TaskState};
use reqwest::blocking::Client;
use serde_json::{json, Value};

use hostd::domain::KEEL_NS;

/// Task polling period on the API side of part 1 (adds at most this much to a sample).
const POLL: Duration = Duration::from_millis(10);
const LIST_DOMAINS: u32 = 1000;
const LIST_VMID0: u32 = 1000;

fn main() {
    let _ = NAME.set("api_vs_virsh");
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let only = std::env::var("KEEL_BENCH_ONLY").unwrap_or_default();
    if !["", "create", "list"].contains(&only.as_str()) {
        die(&format!("KEEL_BENCH_ONLY={only:?}: use create or list"));
    }
    preflight();
    let t0 = Instant::now();
    if only.is_empty() || only == "create" {
        let rounds = env_num("KEEL_BENCH_ROUNDS", 5);
        create_start(rounds);
    }
    if only.is_empty() || only == "list" {
        let rounds = env_num("KEEL_BENCH_LIST_ROUNDS", 200);
        list(rounds);
    }
    println!("total bench time {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- part 1: create+start

fn create_start(rounds: usize) {
    println!("== create+start of a 128 MiB VM, no disks, live ISO as cdrom, no NICs (qemu:///system, TCG), {rounds} rounds interleaved ==");
    let iso = live_dir().join("keel-live.iso");
    if !iso.is_file() {
        die(&format!(
            "{} missing after iso/live/build.sh",
            iso.display()
        ));
    }
    // Drop (also on panic) kills this hostd and removes every domain/pool named with its prefix.
    let h = Hostd::start();
    let hostd_pid = pid_with_arg(&h.dir.join("hostd.toml").display().to_string());
    h.upload(&iso, "keel-live.iso");

    let spec = |vmid: u32, name: &str| {
        json!({
            "vmid": vmid, "name": name, "memory_mib": 128,
            "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
        })
    };

    // The system libvirtd may hold other Keel VMs (vmids are unique per node): use free ones.
    let mut vmids = free_vmids(&h, rounds + 1).into_iter();
    let mut next_vmid = || vmids.next().expect("enough free vmids");

    // Template (also the warm-up of both paths: first QEMU start, page cache, hostd).
    let tpl = format!("{}-tpl", h.prefix);
    let t = api_create(&h, spec(next_vmid(), &tpl)).total;
    let (ok, xml) = virsh(&["dumpxml", "--inactive", "--security-info", &tpl]);
    if !ok {
        panic!("virsh dumpxml {tpl}: {xml}");
    }
    remove_domain(&tpl);
    let template = strip_identity(&xml);
    eprintln!("warm-up api create+start {} (template {tpl})", secs(t));

    let mut api: Vec<Sample> = Vec::new();
    let mut raw: Vec<Sample> = Vec::new();
    for i in 0..rounds {
        let api_name = format!("{}-api{i}", h.prefix);
        let vsh_name = format!("{}-vsh{i}", h.prefix);
        let file = h.dir.join(format!("{vsh_name}.xml"));
        std::fs::write(&file, rename(&template, &vsh_name))
            .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        let vmid = next_vmid();
        let run_api = |out: &mut Vec<Sample>| {
            out.push(api_create(&h, spec(vmid, &api_name)));
            remove_domain(&api_name);
        };
        let run_virsh = |out: &mut Vec<Sample>| {
            out.push(virsh_create(&file, &vsh_name));
            remove_domain(&vsh_name);
        };
        if i % 2 == 0 {
            run_api(&mut api);
            settle();
            run_virsh(&mut raw);
        } else {
            run_virsh(&mut raw);
            settle();
            run_api(&mut api);
        }
        settle();
        eprintln!(
            "round {}: api {}  virsh {}",
            i + 1,
            secs(api[i].total),
            secs(raw[i].total)
        );
    }
    let col = |v: &[Sample], f: fn(&Sample) -> Duration| sorted(v.iter().map(f).collect());
    let (api_t, raw_t) = (col(&api, |s| s.total), col(&raw, |s| s.total));
    let (a50, r50) = (pct(&api_t, 0.5), pct(&raw_t, 0.5));
    println!(
        "create+start  api p50 {}  max {} | virsh p50 {}  max {} | ratio api/virsh {}",
        secs(a50),
        secs(pct(&api_t, 1.0)),
        secs(r50),
        secs(pct(&raw_t, 1.0)),
        ratio(a50, r50)
    );
    let p50 = |v: &[Sample], f: fn(&Sample) -> Duration| ms(pct(&col(v, f), 0.5));
    println!(
        "  define       hostd task p50 {:>9} | virsh define p50 {:>9}",
        p50(&api, |s| s.define),
        p50(&raw, |s| s.define)
    );
    println!(
        "  start        hostd task p50 {:>9} | virsh start  p50 {:>9}",
        p50(&api, |s| s.start),
        p50(&raw, |s| s.start)
    );
    println!(
        "  api outside libvirt (HTTP, checks, task, polling) p50 {}",
        p50(&api, |s| s.total.saturating_sub(s.define + s.start))
    );
    println!(
        "  (api = POST ... ?start=true until its task is ok, polled every {}ms; task phases from its log's ms stamps;\n   virsh = `virsh define` + `virsh start`, two processes, each connecting to libvirtd)",
        POLL.as_millis()
    );
    match hostd_pid {
        Some(pid) => println!("keel-hostd (qemu:///system)  {}", peak_rss(pid)),
        None => println!("keel-hostd (qemu:///system)  pid not found, no RSS"),
    }
}

/// `n` vmids no domain on this libvirtd carries, from a range nobody else uses.
fn free_vmids(h: &Hostd, n: usize) -> Vec<u32> {
    let used: Vec<u64> = h
        .get_json("/vms")
        .as_array()
        .expect("GET vms: JSON array")
        .iter()
        .filter_map(|v| v["vmid"].as_u64())
        .collect();
    // Away from the tests' range (Hostd::id: 900_000_000 + ...), one block per process.
    let base = 950_000_000 + (std::process::id() % 40_000) * 1000;
    (base..keel_api::vm::VMID_MAX)
        .filter(|v| !used.contains(&u64::from(*v)))
        .take(n)
        .collect()
}

/// Pause between timed operations so libvirtd's cleanup of the previous guest is done.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// One create+start: the whole, and its define and start phases.
struct Sample {
    total: Duration,
    define: Duration,
    start: Duration,
}

/// POST the spec with start=true and poll the task until it ends; time from request to ok.
/// The phases come from the task log's millisecond stamps, read after the clock stopped.
fn api_create(h: &Hostd, spec: Value) -> Sample {
    let t0 = Instant::now();
    let r = h.post("/vms?start=true", spec);
    let status = r.status();
    let v: Value = r
        .json()
        .unwrap_or_else(|e| panic!("create: response is not JSON ({status}): {e}"));
    if status != 202 {
        panic!("create: expected 202, got {status}: {v}");
    }
    let upid = v["upid"]
        .as_str()
        .unwrap_or_else(|| panic!("create: no upid in {v}"))
        .to_string();
    loop {
        let t: TaskInfo = serde_json::from_value(h.get_json(&format!("/tasks/{upid}")))
            .unwrap_or_else(|e| panic!("task {upid}: unexpected JSON: {e}"));
        match t.state {
            TaskState::Ok => {
                let total = t0.elapsed();
                let log = h.get_json(&format!("/tasks/{upid}/log"));
                let at = |prefix: &str| {
                    log.as_array()
                        .and_then(|l| {
                            l.iter()
                                .find(|x| x["line"].as_str().is_some_and(|s| s.starts_with(prefix)))
                        })
                        .and_then(|x| x["t"].as_i64())
                        .unwrap_or_else(|| panic!("task {upid}: no log line {prefix:?}: {log}"))
                };
                let span =
                    |a: i64, b: i64| Duration::from_millis(u64::try_from(b - a).unwrap_or(0));
                return Sample {
                    total,
                    define: span(at("creating VM"), at("defined domain")),
                    start: span(at("starting"), at("started")),
                };
            }
            TaskState::Error => panic!(
                "task {upid} failed: {:?}\ntask log: {}",
                t.message,
                h.get_json(&format!("/tasks/{upid}/log"))
            ),
            TaskState::Running => {}
        }
        if t0.elapsed() > Duration::from_secs(300) {
            panic!("task {upid} still running after 300s");
        }
        std::thread::sleep(POLL);
    }
}

fn virsh_create(file: &Path, name: &str) -> Sample {
    let f = file.display().to_string();
    let t0 = Instant::now();
    let (ok, out) = virsh(&["define", &f]);
    let define = t0.elapsed();
    if !ok {
        panic!("virsh define {f}: {out}");
    }
    let t1 = Instant::now();
    let (ok, out) = virsh(&["start", name]);
    let start = t1.elapsed();
    let total = t0.elapsed();
    if !ok {
        panic!("virsh start {name}: {out}");
    }
    Sample {
        total,
        define,
        start,
    }
}

fn remove_domain(name: &str) {
    let _ = virsh(&["destroy", name]);
    let (ok, out) = virsh(&["undefine", "--nvram", name]);
    if !ok {
        panic!("virsh undefine {name}: {out}");
    }
}

/// hostd's domain XML without what ties it to hostd's VM: its <uuid> and Keel metadata.
fn strip_identity(xml: &str) -> String {
    let mut x = cut_between(xml, "<uuid>", "</uuid>");
    // The Keel element's prefix is whatever libvirt kept: find it by its namespace.
    if let Some(ns_at) = x
        .find(&format!("\"{KEEL_NS}\""))
        .or_else(|| x.find(&format!("'{KEEL_NS}'")))
    {
        let open = x[..ns_at]
            .rfind('<')
            .expect("Keel namespace outside an element");
        let tag: String = x[open + 1..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
            .collect();
        let close = format!("</{tag}>");
        let end = x[open..]
            .find(&close)
            .map(|e| open + e + close.len())
            .expect("Keel metadata element not closed");
        x.replace_range(open..end, "");
    }
    // An empty <metadata> left behind goes too.
    if let (Some(a), Some(b)) = (x.find("<metadata>"), x.find("</metadata>")) {
        if x[a + "<metadata>".len()..b].trim().is_empty() {
            x.replace_range(a..b + "</metadata>".len(), "");
        }
    }
    if x.contains(KEEL_NS) || x.contains("<uuid>") {
        panic!("could not strip uuid/Keel metadata from hostd's XML:\n{xml}");
    }
    x.lines()
        .filter(|l| !l.trim().is_empty())
        .fold(String::new(), |mut s, l| {
            let _ = writeln!(s, "{l}");
            s
        })
}

fn cut_between(s: &str, open: &str, close: &str) -> String {
    match (s.find(open), s.find(close)) {
        (Some(a), Some(b)) if b > a => format!("{}{}", &s[..a], &s[b + close.len()..]),
        _ => s.to_string(),
    }
}

fn rename(xml: &str, name: &str) -> String {
    let (Some(a), Some(b)) = (xml.find("<name>"), xml.find("</name>")) else {
        panic!("no <name> in domain XML:\n{xml}");
    };
    format!(
        "{}<name>{name}</name>{}",
        &xml[..a],
        &xml[b + "</name>".len()..]
    )
}

// ---------------------------------------------------------------- part 2: list

/// A keel-hostd on libvirt's test driver; Drop kills it by PID and removes its directory.
struct TestHostd {
    child: Option<Child>,
    dir: PathBuf,
    base: String,
    node: String,
}

impl TestHostd {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hostd.log")).unwrap_or_default()
    }
}

impl Drop for TestHostd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn uuid_for(i: u32) -> String {
    format!("6b65656c-0000-4000-8000-{i:012x}")
}

/// A test-driver node file: LIST_DOMAINS shut-off domains carrying Keel metadata.
fn node_xml() -> String {
    let mut s = String::from("<node>\n");
    for i in 0..LIST_DOMAINS {
        let vmid = LIST_VMID0 + i;
        let _ = writeln!(
            s,
            "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n    <name>bench-{vmid}</name>\n    <uuid>{}</uuid>\n    <memory unit='KiB'>131072</memory>\n    <vcpu>1</vcpu>\n    <os><type>hvm</type></os>\n    <metadata><keel:vm xmlns:keel='{KEEL_NS}'><keel:vmid>{vmid}</keel:vmid></keel:vm></metadata>\n    <test:runstate>5</test:runstate>\n  </domain>",
            uuid_for(i)
        );
    }
    s.push_str("</node>\n");
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

fn https_client() -> Client {
    Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building the HTTPS client")
}

fn start_test_hostd(dir: &Path, uri: &str) -> TestHostd {
    let port = free_port();
    let node = "keelbench-list".to_string();
    let cfg = dir.join("hostd.toml");
    std::fs::write(
        &cfg,
        format!(
            "node = \"{node}\"\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nlibvirt_uri = \"{uri}\"\ndefault_pool = \"benchpool\"\naccel = \"tcg\"\n",
            dir.join("state").display()
        ),
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", cfg.display()));
    let log = std::fs::File::create(dir.join("hostd.log"))
        .unwrap_or_else(|e| panic!("creating {}/hostd.log: {e}", dir.display()));
    let log2 = log.try_clone().expect("dup of the log file");
    let child = Command::new(env!("CARGO_BIN_EXE_keel-hostd"))
        .arg("--config")
        .arg(&cfg)
        .env("KEEL_ADMIN_PASSWORD", common::PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start keel-hostd: {e}"));
    let mut th = TestHostd {
        child: Some(child),
        dir: dir.to_path_buf(),
        base: format!("https://127.0.0.1:{port}"),
        node,
    };
    let c = https_client();
    let t0 = Instant::now();
    loop {
        if let Ok(r) = c.get(format!("{}/api/v1/health", th.base)).send() {
            if r.status().is_success() {
                return th;
            }
        }
        if let Some(Ok(Some(st))) = th.child.as_mut().map(Child::try_wait) {
            panic!("keel-hostd on {uri} exited ({st}); log:\n{}", th.log());
        }
        if t0.elapsed() > Duration::from_secs(60) {
            panic!(
                "keel-hostd on {uri} did not answer in 60s; log:\n{}",
                th.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Password login, then an API token (the way scripts talk to hostd).
fn api_token(th: &TestHostd, c: &Client) -> String {
    let r = c
        .post(format!("{}/api/v1/access/ticket", th.base))
        .json(&json!({"username": "root", "password": common::PASSWORD}))
        .send()
        .expect("login request");
    if r.status() != 200 {
        panic!("login: {} {}", r.status(), r.text().unwrap_or_default());
    }
    let v: Value = r.json().expect("login response JSON");
    let ticket = v["ticket"].as_str().expect("ticket in login response");
    let csrf = v["csrf_token"]
        .as_str()
        .expect("csrf_token in login response");
    let r = c
        .post(format!("{}/api/v1/access/tokens", th.base))
        .header("Cookie", format!("KeelAuthCookie={ticket}"))
        .header("CSRFPreventionToken", csrf)
        .json(&json!({"tokenid": "bench"}))
        .send()
        .expect("token request");
    if r.status() != 201 {
        panic!(
            "create token: {} {}",
            r.status(),
            r.text().unwrap_or_default()
        );
    }
    let v: Value = r.json().expect("token response JSON");
    format!(
        "{}={}",
        v["full_tokenid"].as_str().expect("full_tokenid"),
        v["secret"].as_str().expect("secret")
    )
}

/// The libvirt calls hostd makes per list request, done directly on a connection.
fn raw_list(c: &virt::connect::Connect) -> usize {
    let doms = c.list_all_domains(0).expect("virConnectListAllDomains");
    let mut n = 0;
    for d in &doms {
        let name = d.name().expect("virDomainGetName");
        let _uuid = d.uuid_string().expect("virDomainGetUUIDString");
        let info = d.info().expect("virDomainGetInfo");
        let md = d
            .metadata(
                virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
                Some(KEEL_NS),
                0,
            )
            .ok();
        if md.is_some() && !name.is_empty() && info.memory > 0 {
            n += 1;
        }
    }
    n
}

/// hostd's own layers, called in this process on another test-driver connection (same file):
/// where a list request's time goes.
struct Layers {
    node: hostd::Node,
}

impl Layers {
    fn open(dir: &Path, uri: &str) -> Layers {
        let hv = hostd::hv::libvirt::Libvirt::connect(uri)
            .unwrap_or_else(|e| panic!("hostd Libvirt::connect({uri}): {e}"));
        let cfg = hostd::config::Config {
            node: "keelbench-inproc".into(),
            state_dir: dir.join("inproc-state"),
            libvirt_uri: uri.to_string(),
            default_pool: "benchpool".into(),
            ..hostd::config::Config::default()
        };
        let accel = hostd::accel::AccelDecision {
            domain_type: hostd::domain::DomainType::Qemu,
            reason: "bench".into(),
        };
        let (node, _) = hostd::Node::open(cfg, Arc::new(hv), accel)
            .unwrap_or_else(|e| panic!("hostd::Node::open on {uri}: {e}"));
        Layers { node }
    }
    /// hv::Libvirt::list_domains: the libvirt calls plus building DomainRows.
    fn rows(&self) -> usize {
        self.node.hv.list_domains().expect("hv.list_domains").len()
    }
    /// vms::list: rows, plus parsing each Keel metadata element for its vmid, plus the sort.
    fn vms(&self) -> usize {
        hostd::vms::list(&self.node).expect("vms::list").len()
    }
    /// vms::list serialized as the response body.
    fn json(&self) -> usize {
        let l = hostd::vms::list(&self.node).expect("vms::list");
        serde_json::to_vec(&l).expect("JSON").len()
    }
}

fn list(rounds: usize) {
    println!("== list {LIST_DOMAINS} defined domains (libvirt test driver, custom node file), {rounds} rounds after warm-up, interleaved ==");
    let dir = PathBuf::from(format!("/var/tmp/keel-bench/list-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let file = dir.join("node.xml");
    std::fs::write(&file, node_xml()).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    let uri = format!("test://{}", file.display());

    // Fails first with libvirt's own message if the test driver rejects the file.
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some(&uri))
        .unwrap_or_else(|e| panic!("libvirt test driver rejected {}: {e}", file.display()));
    let n = raw_list(&conn);
    if n != LIST_DOMAINS as usize {
        panic!("test driver lists {n} domains with Keel metadata, expected {LIST_DOMAINS}");
    }

    // Killed by PID (Drop), also on panic.
    let th = start_test_hostd(&dir, &uri);
    let client = https_client();
    let token = api_token(&th, &client);
    let url = format!("{}/api/v1/nodes/{}/vms", th.base, th.node);
    let layers = Layers::open(&dir, &uri);

    let get = || {
        let r = client
            .get(&url)
            .header("Authorization", format!("KeelAPIToken {token}"))
            .send()
            .expect("GET vms");
        let st = r.status();
        let body = r.bytes().expect("reading GET vms body");
        if !st.is_success() {
            panic!("GET vms: {st} {}", String::from_utf8_lossy(&body));
        }
        body
    };
    let check_api = |body: &[u8]| {
        let v: Vec<Value> = serde_json::from_slice(body).expect("GET vms: JSON array");
        if v.len() != LIST_DOMAINS as usize {
            panic!(
                "GET vms returned {} entries, expected {LIST_DOMAINS}",
                v.len()
            );
        }
        if v.first().and_then(|e| e["vmid"].as_u64()) != Some(u64::from(LIST_VMID0)) {
            panic!(
                "GET vms: first entry is not vmid {LIST_VMID0}: {:?}",
                v.first()
            );
        }
        body.len()
    };
    let expect = |what: &str, n: usize| {
        if n != LIST_DOMAINS as usize {
            panic!("{what} saw {n} domains, expected {LIST_DOMAINS}");
        }
    };

    // A small authenticated GET: the fixed cost of one request (TLS record, auth, task pool).
    let tokens_url = format!("{}/api/v1/access/tokens", th.base);
    let small = || {
        let r = client
            .get(&tokens_url)
            .header("Authorization", format!("KeelAPIToken {token}"))
            .send()
            .expect("GET tokens");
        let st = r.status();
        let body = r.bytes().expect("reading GET tokens body");
        if !st.is_success() {
            panic!("GET tokens: {st} {}", String::from_utf8_lossy(&body));
        }
        body.len()
    };

    // Six measurements, rotated each round so load from elsewhere on the host hits all alike.
    const API: usize = 0;
    const RAW: usize = 1;
    const SMALL: usize = 5;
    let mut samples: [Vec<Duration>; 6] = Default::default();
    let mut small_size = 0;
    let mut size = 0;
    let warm = (rounds / 10).clamp(5, 20);
    for round in 0..warm + rounds {
        for k in 0..6 {
            let which = (round + k) % 6;
            let t0 = Instant::now();
            match which {
                API => {
                    let b = get();
                    let d = t0.elapsed();
                    size = check_api(&b);
                    if round >= warm {
                        samples[which].push(d);
                    }
                    continue;
                }
                RAW => expect("raw list", raw_list(&conn)),
                2 => expect("hv::Libvirt::list_domains", layers.rows()),
                3 => expect("vms::list", layers.vms()),
                4 => {
                    let _ = layers.json();
                }
                _ => small_size = small(),
            }
            if round >= warm {
                samples[which].push(t0.elapsed());
            }
        }
    }
    let s: Vec<Vec<Duration>> = samples.into_iter().map(sorted).collect();
    let p50 = |i: usize| pct(&s[i], 0.5);
    println!(
        "list 1000     api p50 {}  p99 {} | raw libvirt p50 {}  p99 {} | ratio api/raw {}",
        ms(p50(API)),
        ms(pct(&s[API], 0.99)),
        ms(p50(RAW)),
        ms(pct(&s[RAW], 0.99)),
        ratio(p50(API), p50(RAW))
    );
    println!(
        "  api response {size} bytes ({:.0} bytes/VM), token auth, one kept-alive TLS connection",
        size as f64 / f64::from(LIST_DOMAINS)
    );
    println!("  raw = list_all_domains + name, uuid, info, Keel metadata per domain, in-process (what hostd calls)");
    let delta = |a: Duration, b: Duration| {
        let d = a.as_secs_f64() - b.as_secs_f64();
        format!("{:+.2}ms", d * 1e3)
    };
    println!("  breakdown, p50 of each layer (hostd's library in this process, same driver):");
    println!("    raw libvirt calls                  {:>9}", ms(p50(RAW)));
    let rows = [
        (2, "hv::Libvirt::list_domains (rows)", RAW),
        (3, "vms::list (+vmid XML parse, sort)", 2),
        (4, "+ serde_json::to_vec", 3),
        (API, "HTTPS GET end to end", 4),
    ];
    for (i, label, prev) in rows {
        println!(
            "    {label:<34} {:>9}  ({} vs previous line)",
            ms(p50(i)),
            delta(p50(i), p50(prev))
        );
    }
    println!(
        "    for scale: GET /api/v1/access/tokens ({small_size} bytes) {}  (fixed cost of one authenticated request)",
        ms(p50(SMALL))
    );

    match th.pid() {
        Some(pid) => println!("keel-hostd (test driver)     {}", peak_rss(pid)),
        None => println!("keel-hostd (test driver)     no pid"),
    }
    drop(layers);
    drop(th);
    drop(conn);
    println!(
        "bench process                {}",
        peak_rss(std::process::id())
    );
}
