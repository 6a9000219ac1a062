//! Daemons that stay up, status that tells the truth, writes that apply once (netns lab, a
//! Keel-formed 3-node cluster, hostd's `direct` service manager).
//!
//! On the formed cluster, each cluster daemon is killed with SIGKILL on one node while that
//! node's hostd is stopped (SIGSTOP), so the killed daemon stays an unreaped zombie for a
//! moment — the state that once counted as "running" by name and was never started again:
//! keel-clusterd and pacemakerd on node2, corosync on node3. Each comes back: restarted by
//! hostd's supervisor, or (corosync) the node is fenced by the others and comes back whole
//! after power-on. While a daemon is down, `GET /api/v1/cluster/status` on its node shows it
//! dead or restarting (and, for keel-clusterd, the store unreachable). Across all of it a write
//! loop on node1 puts numbered keys with request ids and deliberately sends some again with
//! the same id: no acknowledged write is lost and no repeated id is applied twice.
//!
//! Needs root and the binaries: `cargo build --bins -p keel-hostd -p keel-cli -p keel-clusterd`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clusterd::store::client::Client;
use clusterd::store::StoreError;
use keel_tests::keelnode::{self, bin, is_root, KNode};
use keel_tests::netns::{LabOpts, NetnsLab, Node};

const T: Duration = Duration::from_secs(180);
const SOCK: &str = "/run/keel/clusterd.sock";

#[derive(Debug, Clone, serde::Deserialize)]
struct Status {
    quorate: bool,
    members: Vec<Member>,
    #[serde(default)]
    daemons: Vec<Daemon>,
    store: Option<Store>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Member {
    name: String,
    online: bool,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Daemon {
    name: String,
    state: String,
    pid: Option<u32>,
    restarts: u32,
    last_exit: Option<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Store {
    reachable: bool,
    members: Vec<u32>,
}

impl Status {
    fn daemon(&self, name: &str) -> Option<&Daemon> {
        self.daemons.iter().find(|d| d.name == name)
    }
}

/// What these scenarios ask of a lab node beyond [`keel_tests::keelnode::KNode`].
trait DaemonsExt {
    fn status(&self) -> Result<Status>;
    fn hostd_pid(&self) -> Result<u32>;
    fn daemon_pid(&self, prog: &str) -> Result<u32>;
}

impl DaemonsExt for KNode<'_> {
    /// The status API with the node-local root token (no login: works while the store is
    /// down); bounded by curl's own timeout.
    fn status(&self) -> Result<Status> {
        let tok = std::fs::read_to_string(self.state.join("local-root.token"))?;
        let out = self.n.sh_ok(&format!(
            "curl -sk -m 10 -H 'Authorization: KeelAPIToken {}' https://127.0.0.1:8006/api/v1/cluster/status",
            tok.trim()
        ))?;
        serde_json::from_str(&out).with_context(|| format!("status of {}: {out}", self.n.name))
    }

    /// PID of this node's keel-hostd: the one whose parent is not a keel-hostd too (a command
    /// hostd is spawning is a forked keel-hostd until its exec; stopping that one instead
    /// would leave hostd free to reap the daemon the test kills).
    fn hostd_pid(&self) -> Result<u32> {
        let comm = |p: u32| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default()
        };
        let ppid = |p: u32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.get(s.rfind(')')? + 1..)?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                .unwrap_or(0)
        };
        self.n
            .pids()
            .into_iter()
            .find(|&p| comm(p) == "keel-hostd" && comm(ppid(p)) != "keel-hostd")
            .with_context(|| format!("no keel-hostd in {}", self.n.name))
    }

    /// PID hostd recorded for a daemon (`corosync`, `pacemakerd`, `keel-clusterd`).
    fn daemon_pid(&self, prog: &str) -> Result<u32> {
        let p = self.state.join("run").join(format!("{prog}.pid"));
        let text = std::fs::read_to_string(&p).with_context(|| p.display().to_string())?;
        text.split_whitespace()
            .next()
            .context("empty pidfile")?
            .parse()
            .context("pidfile")
    }
}

fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.get(s.rfind(')')? + 1..)?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn kill(sig: &str, pid: u32) -> Result<()> {
    let st = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    ensure!(st.success(), "kill {sig} {pid} failed");
    Ok(())
}

fn start_hostd<'a>(lab: &NetnsLab, n: &'a Node) -> Result<KNode<'a>> {
    keelnode::start_hostd(lab, n, "")
}

/// What the write loop saw.
#[derive(Default)]
struct Loop {
    /// key index → acknowledged entry version
    acked: BTreeMap<u64, u64>,
    /// deliberate repeats of an acknowledged id: (index, version of the repeat's answer)
    repeats: Vec<(u64, u64)>,
    /// errors seen (each write is retried with its id until acknowledged)
    errors: BTreeMap<String, u64>,
    /// longest time from a write's first attempt to its acknowledgement
    worst: Duration,
}

/// Put `/dmn/<i>` = i on node1's store, each with request id `dmn-<i>`; every 5th one is sent
/// again with the same id right after its acknowledgement. A write that fails is sent again
/// with the same id until it is acknowledged.
fn write_loop(socket: PathBuf, stop: Arc<AtomicBool>, out: Arc<Mutex<Loop>>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let c = Client::new(&socket);
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let key = format!("/dmn/{i}");
            let id = format!("dmn-{i}");
            let t0 = Instant::now();
            let v = loop {
                match c.put_with_id(&key, &serde_json::json!(i), &id).await {
                    Ok(v) => break v,
                    Err(e) => {
                        let kind = match &e {
                            StoreError::Unavailable { message } => {
                                format!(
                                    "unavailable: {}",
                                    message.chars().take(60).collect::<String>()
                                )
                            }
                            other => format!("{other}"),
                        };
                        if let Ok(mut o) = out.lock() {
                            *o.errors.entry(kind).or_default() += 1;
                        }
                        if t0.elapsed() > Duration::from_secs(120) {
                            bail!("write {id} not acknowledged within 120 s: {e}");
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            let took = t0.elapsed();
            let mut repeat = None;
            if i.is_multiple_of(5) {
                // the same id again, with another value: answered, not applied
                let r = c
                    .put_with_id(&key, &serde_json::json!(i + 1_000_000), &id)
                    .await
                    .map_err(|e| anyhow::anyhow!("repeat of {id}: {e}"))?;
                repeat = Some(r);
            }
            if let Ok(mut o) = out.lock() {
                o.acked.insert(i, v);
                if let Some(r) = repeat {
                    o.repeats.push((i, r));
                }
                o.worst = o.worst.max(took);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}

/// Stop `k`'s hostd, SIGKILL the daemon `prog`, hold the zombie a moment, resume hostd; then
/// watch `k`'s status until the daemon runs again with a new PID. Returns whether the status
/// showed it not running, and the restart time.
fn kill_and_watch(
    k: &KNode,
    prog: &str,
    label: &str,
    abort: &dyn Fn() -> bool,
) -> Result<(bool, Duration)> {
    let hostd = k.hostd_pid()?;
    let pid = k.daemon_pid(prog)?;
    kill("-STOP", hostd)?;
    let r = (|| -> Result<()> {
        kill("-KILL", pid)?;
        let t = Instant::now();
        while proc_state(pid) != Some('Z') {
            ensure!(
                t.elapsed() < Duration::from_secs(10),
                "{prog} {pid} did not become a zombie: {:?} (hostd {hostd}: {:?})",
                proc_state(pid),
                proc_state(hostd)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // the zombie stays for a moment, its pidfile still naming it
        std::thread::sleep(Duration::from_millis(1500));
        ensure!(
            proc_state(pid) == Some('Z'),
            "zombie {pid} reaped while hostd was stopped"
        );
        ensure!(k.daemon_pid(prog)? == pid, "pidfile changed");
        Ok(())
    })();
    kill("-CONT", hostd)?;
    r?;
    eprintln!("{}: {prog} {pid} killed, left a zombie for 1.5 s", k.n.name);
    let t0 = Instant::now();
    let mut seen_down = None;
    loop {
        ensure!(
            !abort(),
            "{}: watching {label} given up (the node was fenced)",
            k.n.name
        );
        ensure!(
            t0.elapsed() < Duration::from_secs(90),
            "{}: {label} not running again within 90 s",
            k.n.name
        );
        if let Ok(st) = k.status() {
            let d = st
                .daemon(label)
                .with_context(|| format!("no {label} in {st:?}"))?;
            if d.state != "running" {
                if seen_down.is_none() {
                    eprintln!(
                        "{}: status shows {label} {} (last exit {:?}, store reachable: {:?})",
                        k.n.name,
                        d.state,
                        d.last_exit,
                        st.store.as_ref().map(|s| s.reachable)
                    );
                }
                if label == "keel-clusterd" {
                    ensure!(
                        st.store.as_ref().is_some_and(|s| !s.reachable),
                        "keel-clusterd is down but the store reads reachable: {st:?}"
                    );
                }
                seen_down.get_or_insert(d.clone());
            } else if d.pid.is_some_and(|p| p != pid) {
                ensure!(
                    d.restarts >= 1,
                    "{label} runs again without a restart counted: {d:?}"
                );
                return Ok((seen_down.is_some(), t0.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn scenario(lab: &NetnsLab) -> Result<()> {
    let t0 = Instant::now();
    let n1 = start_hostd(lab, lab.node(1)?)?;
    let n2 = start_hostd(lab, lab.node(2)?)?;
    let n3 = start_hostd(lab, lab.node(3)?)?;
    let a1 = lab.node(1)?.addr6.clone();
    n1.keel_ok(&["cluster", "init", "--name", "keeldmn", "--link0", &a1])?;
    let fp1 = n1.fingerprint()?;
    let addr1 = format!("[{a1}]:8006");
    for k in [&n2, &n3] {
        let tok = n1.keel_ok(&["cluster", "join-token", "--ttl", "10m"])?;
        let o = k.join(&addr1, &fp1, tok.trim())?;
        ensure!(o.success(), "{} join: {}{}", k.n.name, o.stderr, o.stdout);
    }
    let labdir = lab.dir.display().to_string();
    for i in 1..=3 {
        n1.keel_ok(&[
            "fence",
            "add",
            &format!("node{i}"),
            "--agent",
            "fence_keellab",
            "--param",
            &format!("lab_dir={labdir}"),
            "--param",
            "action=off",
        ])?;
    }
    let is_whole = || -> Result<bool> {
        let st = n1.status()?;
        let mut ok = st.quorate
            && st.members.len() == 3
            && ["node1", "node2", "node3"]
                .iter()
                .all(|n| st.members.iter().any(|m| m.name == *n && m.online));
        for k in [&n1, &n2, &n3] {
            let Ok(s) = k.status() else { return Ok(false) };
            ok &= s.daemons.len() == 3 && s.daemons.iter().all(|d| d.state == "running");
            ok &= s
                .store
                .as_ref()
                .is_some_and(|s| s.reachable && s.members.len() == 3);
        }
        Ok(ok)
    };
    let whole = |what: &str| -> Result<()> {
        lab.wait_for(what, T, &is_whole)?;
        Ok(())
    };
    whole("3 members online, every daemon running, the store on 3 members")?;
    eprintln!(
        "METRIC daemons_formed_3_nodes={:.2}s",
        t0.elapsed().as_secs_f64()
    );
    eprintln!("{}", n1.keel_ok(&["cluster", "status"])?);

    // the write loop on node1 across every fault
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Loop::default()));
    let socket = PathBuf::from(format!("/proc/{}/root{SOCK}", lab.node(1)?.anchor_pid()));
    let writer = {
        let (s, o, p) = (stop.clone(), seen.clone(), socket.clone());
        std::thread::spawn(move || write_loop(p, s, o))
    };
    std::thread::sleep(Duration::from_secs(2));

    let mut report = vec![];
    let r = (|| -> Result<()> {
        // keel-clusterd and pacemakerd on node2: restarted by the supervisor
        for (prog, label) in [
            ("keel-clusterd", "keel-clusterd"),
            ("pacemakerd", "pacemaker"),
        ] {
            let (down, took) = kill_and_watch(&n2, prog, label, &|| false)?;
            ensure!(down, "node2's status never showed {label} down");
            eprintln!("METRIC restart_{label}={:.2}s", took.as_secs_f64());
            report.push(format!(
                "{label}: restarted after {:.1}s",
                took.as_secs_f64()
            ));
            whole(&format!("whole again after {label}"))?;
        }
        // corosync on node3: restarted, or node3 fenced by the others and powered on again
        let fences_before = lab.fence_log().matches("off node3").count();
        let t = Instant::now();
        let is_fenced = || lab.fence_log().matches("off node3").count() > fences_before;
        let r = kill_and_watch(&n3, "corosync", "corosync", &is_fenced);
        match &r {
            Ok((down, took)) => {
                ensure!(*down, "node3's status never showed corosync down");
                eprintln!("METRIC restart_corosync={:.2}s", took.as_secs_f64());
            }
            Err(e) => eprintln!("node3 while corosync was down: {e:#}"),
        }
        // the others may fence node3 (before or after its corosync came back): then it is
        // powered on and must come back whole by itself
        let mut powered_on = false;
        lab.wait_for("whole again after corosync", T, || {
            if is_fenced() && !powered_on {
                eprintln!(
                    "node3 fenced {:.1}s after corosync was killed; powering it on",
                    t.elapsed().as_secs_f64()
                );
                std::thread::sleep(Duration::from_secs(2));
                lab.power_on(lab.node(3)?)?;
                powered_on = true;
            }
            is_whole()
        })?;
        report.push(match (&r, powered_on) {
            (_, true) => format!(
                "corosync: node3 fenced by the others, whole again {:.1}s after the kill (power-on)",
                t.elapsed().as_secs_f64()
            ),
            (Ok((_, took)), false) => {
                format!("corosync: restarted after {:.1}s", took.as_secs_f64())
            }
            (Err(e), false) => bail!("corosync on node3 neither restarted nor fenced: {e:#}"),
        });
        eprintln!(
            "METRIC corosync_fault_to_whole={:.2}s",
            t.elapsed().as_secs_f64()
        );
        Ok(())
    })();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let w = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the write loop panicked"))?;
    r?;
    w?;

    // no acknowledged write lost, no repeated id applied twice
    let o = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    ensure!(
        o.acked.len() >= 50,
        "only {} writes acknowledged",
        o.acked.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for i in [1usize, 2, 3] {
        let sock = PathBuf::from(format!("/proc/{}/root{SOCK}", lab.node(i)?.anchor_pid()));
        let c = Client::new(&sock);
        let entries = rt.block_on(c.list("/dmn"))?;
        let got: BTreeMap<u64, (u64, serde_json::Value)> = entries
            .into_iter()
            .filter_map(|e| {
                let k: u64 = e.key.rsplit('/').next()?.parse().ok()?;
                Some((k, (e.version, e.value)))
            })
            .collect();
        for (k, v) in &o.acked {
            let Some((ver, val)) = got.get(k) else {
                bail!("node{i}: acknowledged write /dmn/{k} (version {v}) is lost");
            };
            ensure!(
                ver == v && *val == serde_json::json!(k),
                "node{i}: /dmn/{k} is version {ver} = {val}, acknowledged as version {v} = {k}: a repeat was applied"
            );
        }
        for (k, r) in &o.repeats {
            ensure!(
                Some(r) == o.acked.get(k),
                "the repeat of dmn-{k} answered version {r}, the write {:?}",
                o.acked.get(k)
            );
            let out = rt.block_on(c.outcome(&format!("dmn-{k}")))?;
            ensure!(
                matches!(out, Some(Ok(v)) if Some(&v) == o.acked.get(k)),
                "node{i}: outcome of dmn-{k}: {out:?}"
            );
        }
    }
    eprintln!(
        "write loop: {} acknowledged, {} repeated ids answered without being applied, none lost on 3 nodes; slowest write {:.2}s; errors retried: {:?}",
        o.acked.len(),
        o.repeats.len(),
        o.worst.as_secs_f64(),
        o.errors
    );
    for l in report {
        eprintln!("RESULT {l}");
    }
    eprintln!(
        "METRIC netns_daemons_scenario={:.2}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn killed_daemons_come_back_and_writes_apply_once() -> Result<()> {
    ensure!(
        is_root(),
        "this test needs root (network and mount namespaces, corosync, Pacemaker)"
    );
    for b in ["keel-hostd", "keel", "keel-clusterd"] {
        bin(b)?;
    }
    let lab = NetnsLab::up(3, LabOpts::new("keeldmn"))?;
    let r = scenario(&lab);
    lab.finish(r)
}
