//! `keel-bench-scale`: a Keel cluster of N netns lab nodes (default 16) formed by
//! `keel cluster init` and N-1 `keel join`s, then measured: formation time (per join), `keel
//! cluster status` latency against the raw engines' own commands on the same node, config-store
//! write latency, forwarding, memory per node, and a crashed node fenced with the survivors
//! quorate and writable. A benchmark, not a test of the suite (docs/cluster.md, "Scale"):
//! `benches/scale-netns.sh` builds the binaries and runs it.
//!
//! It fails (exit 1, the reason on stderr) on any functional failure: a join refused, fewer
//! than N members online and quorate, a fence device not started, the crashed node not fenced,
//! a survivor not quorate or its store not writable. Numbers are printed as `METRIC` lines and
//! written as JSON (`--out`).
//!
//! Needs root and the debug binaries keel-hostd, keel, keel-clusterd in `$CARGO_TARGET_DIR`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use keel_tests::keelnode::{self, is_root, KNode};
use keel_tests::netns::{LabOpts, NetnsLab};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "keel-bench-scale",
    about = "Form an N-node Keel cluster in the netns lab and measure it"
)]
struct Args {
    /// Cluster size (2..=32: corosync's supported maximum is 32 nodes).
    #[arg(long, default_value_t = 16)]
    nodes: usize,
    /// Repetitions of each latency measurement.
    #[arg(long, default_value_t = 30)]
    reps: usize,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "/var/tmp/keel-bench-scale.json")]
    out: String,
}

/// Formation and recovery waits: generous, 16 nodes share whatever cores the host has.
const WAIT: Duration = Duration::from_secs(900);

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("keel-bench-scale: FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    ensure!(
        is_root(),
        "keel-bench-scale needs root (network namespaces, corosync, Pacemaker)"
    );
    ensure!(
        (2..=32).contains(&args.nodes),
        "--nodes {}: a Keel cluster here has 2 to 32 nodes",
        args.nodes
    );
    ensure!(args.reps >= 2, "--reps {}: at least 2", args.reps);
    for b in ["keel", "keel-hostd", "keel-clusterd"] {
        keelnode::bin(b)?;
    }
    let lab = NetnsLab::up(args.nodes, LabOpts::new("keelscale"))?;
    let mut res = json!({ "nodes": args.nodes, "reps": args.reps });
    let r = bench(&lab, args, &mut res);
    let r = lab.finish(r);
    let text = serde_json::to_string_pretty(&res)?;
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out))?;
    eprintln!("results: {}", args.out);
    r
}

/// p-th percentile (nearest rank) of `v`, in milliseconds.
fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i.min(s.len() - 1)]
}

fn summary(name: &str, ms: &[f64]) -> serde_json::Value {
    let (p50, p99) = (pct(ms, 0.5), pct(ms, 0.99));
    eprintln!(
        "METRIC {name} p50={p50:.1}ms p99={p99:.1}ms max={:.1}ms (n={})",
        pct(ms, 1.0),
        ms.len()
    );
    json!({ "p50_ms": p50, "p99_ms": p99, "max_ms": pct(ms, 1.0), "n": ms.len() })
}

/// Run `cmd` (a shell command line) `reps` times in node `k`, `gap` seconds apart, each timed
/// inside the node (process start included, like any caller of the command pays it); any
/// failing run fails the measurement. Milliseconds.
fn timed_loop(k: &KNode, cmd: &str, reps: usize, gap: f64) -> Result<Vec<f64>> {
    let script = format!(
        "for i in $(seq 1 {reps}); do s=$(date +%s%N); if {cmd} >/dev/null 2>/tmp/bench-err; then e=$(date +%s%N); echo $(( (e - s) / 1000 )); else echo \"FAIL $i: $(cat /tmp/bench-err)\"; fi; sleep {gap}; done"
    );
    let out = k.n.sh_ok(&script)?;
    if let Some(l) = out.lines().find(|l| l.starts_with("FAIL")) {
        bail!("{}: `{cmd}` failed during the measurement: {l}", k.n.name);
    }
    let v: Vec<f64> = out
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .collect();
    ensure!(
        v.len() == reps,
        "{}: {} samples of `{cmd}` instead of {reps}: {out}",
        k.n.name,
        v.len()
    );
    Ok(v)
}

/// The node-local root token (`root!local=…`) hostd writes for root on its node.
fn token(k: &KNode) -> Result<String> {
    Ok(std::fs::read_to_string(k.state.join("local-root.token"))?
        .trim()
        .to_string())
}

/// The `keel` command line against `k`'s own API with its local root token (no password login:
/// what a script on the node would run).
fn keel_cmd(k: &KNode) -> Result<String> {
    Ok(format!(
        "{} --url https://127.0.0.1:8006 --fingerprint {} --token '{}'",
        keelnode::bin("keel")?.display(),
        k.fingerprint()?,
        token(k)?
    ))
}

/// `curl` against `k`'s own API: exit status non-zero unless HTTP 2xx.
fn curl_cmd(k: &KNode, method: &str, path: &str, body: Option<&str>) -> Result<String> {
    let data = body
        .map(|b| format!(" -H 'content-type: application/json' -d '{b}'"))
        .unwrap_or_default();
    Ok(format!(
        "curl -skf -o /dev/null -X {method} -H 'Authorization: KeelAPIToken {}'{data} 'https://127.0.0.1:8006{path}'",
        token(k)?
    ))
}

/// `GET /api/v1/cluster/status` of `k`, parsed.
fn status(k: &KNode) -> Result<serde_json::Value> {
    let o = k.keel_ok(&["--json", "cluster", "status"])?;
    serde_json::from_str(&o).with_context(|| format!("status of {}: {o}", k.n.name))
}

fn online(st: &serde_json::Value) -> Vec<String> {
    st["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| m["online"] == true)
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Resident memory of the node's Keel and engine daemons: RSS and PSS (KiB) per group.
fn memory(k: &KNode) -> serde_json::Value {
    let groups = [
        ("corosync", "corosync"),
        ("pacemaker", "pacemaker"),
        ("keel-hostd", "keel-hostd"),
        ("keel-clusterd", "keel-cluster"),
    ];
    let mut out = serde_json::Map::new();
    let (mut rss_all, mut pss_all) = (0u64, 0u64);
    for (g, prefix) in groups {
        let (mut rss, mut pss, mut procs) = (0u64, 0u64, 0u64);
        for pid in k.n.pids() {
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                continue;
            };
            if !comm.trim().starts_with(prefix) {
                continue;
            }
            let Ok(sm) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
                continue;
            };
            let field = |name: &str| -> u64 {
                sm.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0)
            };
            rss += field("Rss:");
            pss += field("Pss:");
            procs += 1;
        }
        rss_all += rss;
        pss_all += pss;
        out.insert(
            g.into(),
            json!({ "rss_kib": rss, "pss_kib": pss, "processes": procs }),
        );
    }
    out.insert("total_rss_kib".into(), json!(rss_all));
    out.insert("total_pss_kib".into(), json!(pss_all));
    serde_json::Value::Object(out)
}

fn report_memory(knodes: &[KNode], res: &mut serde_json::Value, label: &str) {
    let per: Vec<serde_json::Value> = knodes.iter().map(memory).collect();
    let mib =
        |v: &serde_json::Value, g: &str, f: &str| v[g][f].as_u64().unwrap_or(0) as f64 / 1024.0;
    let mut line = String::new();
    for g in ["corosync", "pacemaker", "keel-hostd", "keel-clusterd"] {
        let rss: Vec<f64> = per.iter().map(|v| mib(v, g, "rss_kib")).collect();
        let pss: Vec<f64> = per.iter().map(|v| mib(v, g, "pss_kib")).collect();
        let _ = write!(
            line,
            " {g}: rss mean {:.1} max {:.1}, pss mean {:.1} MiB;",
            rss.iter().sum::<f64>() / rss.len() as f64,
            rss.iter().cloned().fold(0.0, f64::max),
            pss.iter().sum::<f64>() / pss.len() as f64,
        );
    }
    let tot: Vec<f64> = per
        .iter()
        .map(|v| v["total_pss_kib"].as_u64().unwrap_or(0) as f64 / 1024.0)
        .collect();
    eprintln!(
        "METRIC memory_per_node ({label}, {} nodes):{line} total pss mean {:.1} max {:.1} MiB",
        per.len(),
        tot.iter().sum::<f64>() / tot.len() as f64,
        tot.iter().cloned().fold(0.0, f64::max)
    );
    res[format!("memory_{label}")] = json!(per
        .iter()
        .zip(knodes)
        .map(|(v, k)| json!({ "node": k.n.name, "memory": v }))
        .collect::<Vec<_>>());
}

fn bench(lab: &NetnsLab, args: &Args, res: &mut serde_json::Value) -> Result<()> {
    let n = args.nodes;
    let t0 = Instant::now();
    let mut knodes = vec![];
    for node in &lab.nodes {
        knodes.push(keelnode::start_hostd(lab, node, "")?);
    }
    let hostd_up = t0.elapsed().as_secs_f64();
    eprintln!("METRIC hostd_up_{n}_nodes={hostd_up:.2}s");
    res["hostd_up_s"] = json!(hostd_up);

    // formation: init + N-1 joins through node1's pinned API
    let tf = Instant::now();
    let first = &knodes[0];
    let a1 = first.n.addr6.clone();
    let t = Instant::now();
    first.keel_ok(&["cluster", "init", "--name", "keelscale", "--link0", &a1])?;
    let init_s = t.elapsed().as_secs_f64();
    eprintln!("METRIC cluster_init={init_s:.2}s");
    let fp1 = first.fingerprint()?;
    let addr1 = format!("[{a1}]:8006");
    let mut joins = vec![];
    for (i, k) in knodes.iter().enumerate().skip(1) {
        let t = Instant::now();
        let tok = first.keel_ok(&["cluster", "join-token", "--ttl", "10m"])?;
        let o = k.join(&addr1, &fp1, tok.trim())?;
        ensure!(
            o.success(),
            "{} (join {i} of {}) failed: {}{}",
            k.n.name,
            n - 1,
            o.stderr,
            o.stdout
        );
        let join_s = t.elapsed().as_secs_f64();
        // the joiner is in corosync's membership as node1 sees it
        let settle = lab.wait_for(&format!("{} in node1's membership", k.n.name), WAIT, || {
            Ok(first.n.quorum()? == (i + 1, true))
        })?;
        eprintln!(
            "METRIC join_{}={join_s:.2}s (+{:.2}s until node1 counts {} members)",
            k.n.name,
            settle.as_secs_f64(),
            i + 1
        );
        joins.push(
            json!({ "node": k.n.name, "join_s": join_s, "membership_s": settle.as_secs_f64() }),
        );
    }
    let joined_s = tf.elapsed().as_secs_f64();
    eprintln!("METRIC init_plus_{}_joins={joined_s:.2}s", n - 1);
    res["init_s"] = json!(init_s);
    res["joins"] = json!(joins);
    res["init_and_joins_s"] = json!(joined_s);

    // fencing on: one lab device per node
    let t = Instant::now();
    let labdir = lab.dir.display().to_string();
    for k in &knodes {
        first.keel_ok(&[
            "fence",
            "add",
            &k.n.name,
            "--agent",
            "fence_keellab",
            "--param",
            &format!("lab_dir={labdir}"),
            "--param",
            "action=off",
        ])?;
    }
    let fence_add_s = t.elapsed().as_secs_f64();
    eprintln!("METRIC fence_add_x{n}={fence_add_s:.2}s");
    let names: Vec<String> = knodes.iter().map(|k| k.n.name.clone()).collect();
    let mut last = serde_json::Value::Null;
    let settle = lab
        .wait_for(
            &format!("{n} members online and quorate in Keel's status, every fence device started"),
            WAIT,
            || {
                last = status(first)?;
                let crm = first.n.crm_status()?;
                let fences = names.iter().all(|name| {
                    crm.resource(&format!("fence-{name}")).is_some_and(|r| {
                        r.role == "Started" && r.nodes.len() == 1 && &r.nodes[0] != name
                    })
                });
                Ok(last["quorate"] == true
                    && online(&last).len() == n
                    && last["members"]
                        .as_array()
                        .is_some_and(|a| a.iter().all(|m| !m["fence_device"].is_null()))
                    && fences)
            },
        )
        .with_context(|| format!("last status: {last}"))?;
    let formed_s = tf.elapsed().as_secs_f64();
    eprintln!(
        "METRIC formed_{n}_nodes={formed_s:.2}s (init + joins {joined_s:.2}s, fence devices {fence_add_s:.2}s, settle {:.2}s)",
        settle.as_secs_f64()
    );
    res["fence_add_s"] = json!(fence_add_s);
    res["formed_s"] = json!(formed_s);
    ensure!(
        last["expected_votes"] == n && last["two_node"] == false && last["stonith_enabled"] == true,
        "after formation: {last}"
    );
    // every member's own view: quorate with N nodes
    for k in &knodes {
        let q = k.n.quorum()?;
        ensure!(
            q == (n, true),
            "{}: corosync-quorumtool says {q:?}",
            k.n.name
        );
    }
    report_memory(&knodes, res, "formed");

    // latency on node1: Keel's status (uncached: 1.1 s apart, past its 1 s cache) against the
    // engines' own commands, paced the same
    let reps = args.reps;
    let keel = keel_cmd(first)?;
    let mut lat = serde_json::Map::new();
    let mut m = |name: &str, cmd: &str, gap: f64| -> Result<()> {
        let v = timed_loop(first, cmd, reps, gap)?;
        lat.insert(name.into(), summary(name, &v));
        Ok(())
    };
    m(
        "keel_cluster_status_json",
        &format!("{keel} --json cluster status"),
        1.1,
    )?;
    m(
        "api_cluster_status",
        &curl_cmd(first, "GET", "/api/v1/cluster/status", None)?,
        1.1,
    )?;
    m("corosync_quorumtool_s", "corosync-quorumtool -s", 1.1)?;
    m("crm_mon_1_xml", "crm_mon -1 --output-as=xml", 1.1)?;
    // the four engine commands a Keel status runs (its lower bound), one after the other and
    // at once
    let four = [
        "corosync-quorumtool -s",
        "corosync-cfgtool -n",
        "crm_mon -1 --output-as=xml",
        "cibadmin --query --scope resources",
    ];
    m(
        "raw_status_commands_in_turn",
        &format!("{{ {}; }}", four.join(" >/dev/null && ")),
        1.1,
    )?;
    m(
        "raw_status_commands_at_once",
        &format!(
            "sh -c '{} wait'",
            four.iter()
                .map(|c| format!("{c} >/dev/null & "))
                .collect::<String>()
        ),
        1.1,
    )?;
    // the store: a write is applied once every member reported quorate through CPG
    let mut i = 0;
    let write_cmd = |i: usize| -> Result<String> {
        curl_cmd(
            first,
            "PUT",
            &format!("/api/v1/cluster/config/bench/w{i}"),
            Some(&format!("{{\"value\":{{\"i\":{i}}}}}")),
        )
    };
    // one write first: the store may still be syncing after the last join
    lab.wait_for("config store writable on node1", WAIT, || {
        i += 1;
        Ok(first.n.sh(&write_cmd(i)?)?.success())
    })?;
    m(
        "api_config_put",
        &format!(
            "curl -skf -o /dev/null -X PUT -H 'Authorization: KeelAPIToken {}' -H 'content-type: application/json' -d \"{{\\\"value\\\":$i}}\" 'https://127.0.0.1:8006/api/v1/cluster/config/bench/loop'",
            token(first)?
        ),
        0.2,
    )?;
    m(
        "keel_cluster_config_set",
        &format!("{keel} cluster config set bench/cli $i"),
        0.2,
    )?;
    // what the UI's cluster page polls besides the status (each poll: these three and the status)
    for (name, path) in [
        ("api_cluster_fencing", "/api/v1/cluster/fencing"),
        ("api_cluster_vip", "/api/v1/cluster/vip"),
        ("api_cluster_nodes", "/api/v1/cluster/nodes"),
    ] {
        m(name, &curl_cmd(first, "GET", path, None)?, 0.2)?;
    }
    // forwarding: one member's node info through node1, and the node list (every member asked)
    let lastname = &names[n - 1];
    m(
        "api_forwarded_node_info",
        &curl_cmd(first, "GET", &format!("/api/v1/nodes/{lastname}"), None)?,
        0.2,
    )?;
    m(
        "api_nodes_list",
        &curl_cmd(first, "GET", "/api/v1/nodes", None)?,
        0.2,
    )?;
    res["latency_node1"] = serde_json::Value::Object(lat);
    // the write is seen everywhere
    for k in &knodes {
        lab.wait_for(
            &format!("{} reads node1's last write", k.n.name),
            Duration::from_secs(60),
            || {
                let o = k.keel(&["--json", "cluster", "config", "get", "bench/loop"])?;
                let v: serde_json::Value =
                    serde_json::from_str(&o.stdout).unwrap_or(serde_json::Value::Null);
                Ok(o.success() && v["value"] == reps)
            },
        )?;
    }

    // crash: the last node's cables pulled (it keeps running, cut off); the survivors must
    // fence it through the lab agent and carry on quorate and writable
    let dc = last["dc"].as_str().unwrap_or_default().to_string();
    let victim = knodes
        .iter()
        .rev()
        .find(|k| k.n.name != dc && k.n.index != 1)
        .context("no node to crash")?;
    let survivors: Vec<&KNode> = knodes
        .iter()
        .filter(|k| k.n.name != victim.n.name)
        .collect();
    eprintln!("crashing {} (DC: {dc})", victim.n.name);
    let before = lab.fence_log().len();
    let tc = Instant::now();
    lab.partition(victim.n)?;
    lab.wait_for(&format!("{} fenced", victim.n.name), WAIT, || {
        // node-power's line once the power-off is done (the agent logs its request first)
        Ok(lab.fence_log()[before..].contains(&format!("] off {} rc=0", victim.n.name)))
    })?;
    let fenced_s = tc.elapsed().as_secs_f64();
    ensure!(
        victim.n.pids().is_empty(),
        "{} was reported fenced but still has processes",
        victim.n.name
    );
    for k in &survivors {
        lab.wait_for(
            &format!("{} quorate with {} nodes", k.n.name, n - 1),
            WAIT,
            || Ok(k.n.quorum()? == (n - 1, true)),
        )?;
    }
    let quorate_s = tc.elapsed().as_secs_f64();
    for k in &survivors {
        let cmd = curl_cmd(
            k,
            "PUT",
            &format!("/api/v1/cluster/config/bench/after-crash/{}", k.n.name),
            Some("{\"value\":1}"),
        )?;
        lab.wait_for(&format!("{}'s store writable", k.n.name), WAIT, || {
            Ok(k.n.sh(&cmd)?.success())
        })?;
    }
    let writable_s = tc.elapsed().as_secs_f64();
    let st = status(first)?;
    let on = online(&st);
    ensure!(
        st["quorate"] == true && on.len() == n - 1 && !on.contains(&victim.n.name),
        "after the crash, node1's status: {st}"
    );
    let log = lab.fence_log()[before..].to_string();
    ensure!(
        log.lines()
            .filter_map(|l| l.split("] off ").nth(1))
            .all(|t| t.split_whitespace().next() == Some(victim.n.name.as_str())),
        "a survivor was fenced too:\n{log}"
    );
    eprintln!(
        "METRIC crash_{}: fenced {fenced_s:.2}s after the cut, all {} survivors quorate at {quorate_s:.2}s, every survivor's store writable at {writable_s:.2}s",
        victim.n.name,
        n - 1
    );
    res["crash"] = json!({
        "node": victim.n.name, "fenced_s": fenced_s,
        "survivors_quorate_s": quorate_s, "survivors_writable_s": writable_s,
    });
    // status and the node list with one member down
    let mut lat = serde_json::Map::new();
    for (name, cmd, gap) in [
        (
            "api_cluster_status",
            curl_cmd(first, "GET", "/api/v1/cluster/status", None)?,
            1.1,
        ),
        (
            "api_nodes_list",
            curl_cmd(first, "GET", "/api/v1/nodes", None)?,
            0.2,
        ),
    ] {
        let v = timed_loop(first, &cmd, reps.min(10), gap)?;
        lat.insert(name.into(), summary(&format!("{name}_one_down"), &v));
    }
    res["latency_node1_one_down"] = serde_json::Value::Object(lat);
    // a fence test through Keel on a survivor: its record is cluster-wide (node2's status,
    // which has no local record of it, shows it through the config store); n - 2 nodes must
    // still hold quorum for the record to be written
    if n >= 5 {
        let target = survivors.last().context("no survivor")?;
        let seen = survivors.get(1).context("no second survivor")?;
        ensure!(
            target.n.index > 2 && seen.n.index == 2,
            "fence test target {} / observer {}",
            target.n.name,
            seen.n.name
        );
        let t = Instant::now();
        first.keel_ok(&["fence", "test", &target.n.name, "--yes", "--off"])?;
        let test_s = t.elapsed().as_secs_f64();
        let mut st = serde_json::Value::Null;
        lab.wait_for(
            &format!("{}'s fence test seen in node2's status", target.n.name),
            Duration::from_secs(120),
            || {
                st = status(seen)?;
                Ok(st["members"].as_array().is_some_and(|a| {
                    a.iter().any(|m| {
                        m["name"] == target.n.name.as_str() && m["last_fence_test"]["ok"] == true
                    })
                }))
            },
        )
        .with_context(|| format!("node2's status: {st}"))?;
        eprintln!(
            "METRIC fence_test_{}={test_s:.2}s (its record seen in node2's status)",
            target.n.name
        );
        res["fence_test_s"] = json!(test_s);
    }
    let survivors_owned: Vec<KNode> = survivors
        .iter()
        .map(|k| KNode {
            n: k.n,
            state: k.state.clone(),
        })
        .collect();
    report_memory(&survivors_owned, res, "after_crash");
    eprintln!("METRIC bench_total={:.2}s", t0.elapsed().as_secs_f64());
    res["bench_total_s"] = json!(t0.elapsed().as_secs_f64());
    Ok(())
}
