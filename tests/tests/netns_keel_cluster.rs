//! Keel forms the cluster itself (netns lab, no hand-written corosync or CIB): a keel-hostd per
//! node inside the node's namespaces (libvirt's test driver, so no libvirtd), `keel cluster
//! init` on node1, `keel join` on node2 and node3 through node1's HTTPS API pinned to its
//! fingerprint, the join refusals, a lab fence device per node through `keel fence add`
//! (fencing on), `keel cluster status`, a real fence test, and the status latency.
//!
//! Needs root and `cargo build --workspace --bins` (keel-hostd, keel, keel-clusterd).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use keel_tests::keelnode::{self, is_root, KNode, PW};
use keel_tests::netns::{LabOpts, NetnsLab, Node, Service};

#[path = "netns_keel_cluster/verify.rs"]
mod verify;

/// The fields of `GET /api/v1/cluster/status` this test reads (keel-api's ClusterStatus).
#[derive(Debug, serde::Deserialize)]
struct ClusterStatus {
    clustered: bool,
    quorate: bool,
    expected_votes: u32,
    total_votes: u32,
    two_node: bool,
    #[serde(default)]
    qdevice: Option<Qdevice>,
    dc: Option<String>,
    stonith_enabled: bool,
    members: Vec<Member>,
}

#[derive(Debug, serde::Deserialize)]
struct Member {
    name: String,
    online: bool,
    fence_device: Option<String>,
    last_fence_test: Option<FenceTest>,
}

#[derive(Debug, serde::Deserialize)]
struct Qdevice {
    configured: bool,
    votes: Option<u32>,
    daemon_running: bool,
}

#[derive(Debug, serde::Deserialize)]
struct FenceTest {
    ok: bool,
}

const T: Duration = Duration::from_secs(180);

/// What these scenarios ask of a lab node beyond [`keel_tests::keelnode::KNode`].
trait StatusExt {
    fn status(&self) -> Result<ClusterStatus>;
}

impl StatusExt for KNode<'_> {
    fn status(&self) -> Result<ClusterStatus> {
        Ok(serde_json::from_str(
            &self.keel_ok(&["--json", "cluster", "status"])?,
        )?)
    }
}

fn start_hostd<'a>(lab: &NetnsLab, n: &'a Node, domains: &str) -> Result<KNode<'a>> {
    keelnode::start_hostd(lab, n, domains)
}

fn expect_refusal(what: &str, o: keel_tests::netns::CmdOut, needle: &str) -> Result<()> {
    let all = format!("{}{}", o.stdout, o.stderr);
    ensure!(!o.success(), "{what}: join was not refused: {all}");
    ensure!(
        all.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: expected an error mentioning {needle:?}, got: {all}"
    );
    eprintln!(
        "refused as expected ({what}): {}",
        all.trim().lines().last().unwrap_or("")
    );
    Ok(())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// `curl` against `k`'s own API with its node-local root token (or `auth`, a full
/// `user!id=secret`): (HTTP status, JSON body or null).
fn api(
    k: &KNode,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    auth: Option<&str>,
) -> Result<(u16, serde_json::Value)> {
    let tok = match auth {
        Some(a) => a.to_string(),
        None => std::fs::read_to_string(k.state.join("local-root.token"))?
            .trim()
            .to_string(),
    };
    let data = match body {
        Some(b) => format!("-H 'content-type: application/json' -d '{b}'"),
        None => String::new(),
    };
    let out = k.n.sh_ok(&format!(
        "curl -sk -X {method} -w '\n%{{http_code}}' -H 'Authorization: KeelAPIToken {tok}' {data} 'https://127.0.0.1:8006{path}'"
    ))?;
    let (text, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    let code: u16 = code
        .trim()
        .parse()
        .with_context(|| format!("status of {out}"))?;
    Ok((
        code,
        serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
    ))
}

/// Wait for a task of `k` to end; its final state.
fn wait_task(lab: &NetnsLab, k: &KNode, upid: &str) -> Result<serde_json::Value> {
    let mut last = serde_json::Value::Null;
    lab.wait_for(&format!("task {upid}"), Duration::from_secs(60), || {
        let (c, b) = api(
            k,
            "GET",
            &format!("/api/v1/nodes/{}/tasks/{upid}", k.n.name),
            None,
            None,
        )?;
        last = b;
        Ok(c == 200 && last["state"] != "running")
    })?;
    Ok(last)
}

/// Users/tokens, VM ids and the VM view are cluster-wide (the config store): a token made on
/// node1 authenticates on node3 and stops working there once deleted on node1; a vmid created
/// on node1 is refused on node2 with 409 naming node1, skipped by node2's nextid, listed by
/// node3's `/cluster/resources`, and free again after the delete on node1.
fn cluster_wide_state(lab: &NetnsLab, n1: &KNode, n2: &KNode, n3: &KNode) -> Result<()> {
    // an API token created on node1 works on node3
    let (c, b) = api(
        n1,
        "POST",
        "/api/v1/access/tokens",
        Some(&serde_json::json!({"tokenid": "labwide", "comment": "made on node1"})),
        None,
    )?;
    ensure!(c == 201, "token create on node1: {c} {b}");
    let full = format!(
        "{}={}",
        b["full_tokenid"].as_str().context("full_tokenid")?,
        b["secret"].as_str().context("secret")?
    );
    let (c, b) = api(n3, "GET", "/api/v1/nodes/node3", None, Some(&full))?;
    ensure!(
        c == 200 && b["node"] == "node3",
        "node1's token on node3: {c} {b}"
    );
    let (c, _) = api(
        n3,
        "GET",
        "/api/v1/nodes/node3",
        None,
        Some("root!labwide=0000"),
    )?;
    ensure!(c == 401, "a wrong secret on node3 answered {c}");
    let (c, b) = api(n2, "GET", "/api/v1/access/tokens", None, Some(&full))?;
    ensure!(
        c == 200 && b.to_string().contains("root!labwide"),
        "node2 lists the cluster's tokens: {c} {b}"
    );
    let (c, b) = api(n1, "DELETE", "/api/v1/access/tokens/labwide", None, None)?;
    ensure!(c == 204, "token delete on node1: {c} {b}");
    let (c, _) = api(n3, "GET", "/api/v1/nodes/node3", None, Some(&full))?;
    ensure!(c == 401, "node1's deleted token still works on node3: {c}");
    eprintln!(
        "cluster-wide API token: made on node1, used on node3, deleted on node1 -> 401 on node3"
    );
    cluster_wide_access(n1, n2, n3)?;

    // vmids unique cluster-wide
    let (c, b) = api(n1, "GET", "/api/v1/nodes/node1/vms/nextid", None, None)?;
    ensure!(c == 200, "nextid on node1: {c} {b}");
    let vmid = b["vmid"].as_u64().context("vmid")?;
    let spec = |name: &str| serde_json::json!({"vmid": vmid, "name": name, "memory_mib": 128});
    let (c, b) = api(
        n1,
        "POST",
        "/api/v1/nodes/node1/vms",
        Some(&spec("cw-one")),
        None,
    )?;
    ensure!(c == 202, "create {vmid} on node1: {c} {b}");
    let task = wait_task(lab, n1, b["upid"].as_str().context("upid")?)?;
    ensure!(task["state"] == "ok", "create task on node1: {task}");
    let (c, b) = api(
        n2,
        "POST",
        "/api/v1/nodes/node2/vms",
        Some(&spec("cw-two")),
        None,
    )?;
    ensure!(
        c == 409
            && b["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("node1"),
        "vmid {vmid} again on node2 must be 409 naming node1: {c} {b}"
    );
    eprintln!(
        "refused as expected (vmid {vmid} on node2): {}",
        b["error"]["message"]
    );
    let (c, b) = api(n2, "GET", "/api/v1/nodes/node2/vms/nextid", None, None)?;
    ensure!(
        c == 200 && b["vmid"].as_u64() != Some(vmid),
        "nextid on node2 must skip {vmid}: {c} {b}"
    );
    let (c, b) = api(n3, "GET", "/api/v1/cluster/resources", None, None)?;
    ensure!(
        c == 200
            && b.as_array()
                .is_some_and(|a| a.iter().any(|r| r["vmid"].as_u64() == Some(vmid)
                    && r["node"] == "node1"
                    && r["name"] == "cw-one"
                    && r["type"] == "vm")),
        "node3's /cluster/resources must list VM {vmid} on node1: {c} {b}"
    );
    // delete on node1 releases the reservation cluster-wide
    let path = format!("/api/v1/nodes/node1/vms/{vmid}");
    let (c, b) = api(n1, "DELETE", &path, None, None)?;
    ensure!(c == 202, "delete {vmid} on node1: {c} {b}");
    let task = wait_task(lab, n1, b["upid"].as_str().context("upid")?)?;
    ensure!(
        task["state"] == "ok",
        "delete {vmid} on node1 failed: {task}"
    );
    let (c, b) = api(n2, "GET", "/api/v1/nodes/node2/vms/nextid", None, None)?;
    ensure!(
        c == 200 && b["vmid"].as_u64() == Some(vmid),
        "after the delete on node1, {vmid} must be free for node2: {c} {b}"
    );
    let (c, b) = api(n3, "GET", "/api/v1/cluster/resources", None, None)?;
    ensure!(
        c == 200 && !b.to_string().contains("cw-one"),
        "deleted VM still in node3's /cluster/resources: {b}"
    );
    eprintln!("cluster-wide vmid {vmid}: reserved by node1, refused on node2, skipped by nextid, listed on node3, released by the delete");
    Ok(())
}

/// Log in as `user` on `k` and create an API token there: `user!id=secret`.
fn user_token(k: &KNode, user: &str, pw: &str, id: &str) -> Result<String> {
    let login = k.n.sh_ok(&format!(
        "curl -sk -X POST -H 'content-type: application/json' -d '{{\"username\":\"{user}\",\"password\":\"{pw}\"}}' https://127.0.0.1:8006/api/v1/access/ticket"
    ))?;
    let v: serde_json::Value =
        serde_json::from_str(login.trim()).with_context(|| format!("login of {user}: {login}"))?;
    let ticket = v["ticket"].as_str().context("ticket")?;
    let csrf = v["csrf_token"].as_str().context("csrf_token")?;
    let out = k.n.sh_ok(&format!(
        "curl -sk -X POST -H 'content-type: application/json' -H 'Cookie: KeelAuthCookie={ticket}' -H 'CSRFPreventionToken: {csrf}' -d '{{\"tokenid\":\"{id}\"}}' https://127.0.0.1:8006/api/v1/access/tokens"
    ))?;
    let t: serde_json::Value =
        serde_json::from_str(out.trim()).with_context(|| format!("token of {user}: {out}"))?;
    Ok(format!(
        "{}={}",
        t["full_tokenid"].as_str().context("full_tokenid")?,
        t["secret"].as_str().context("secret")?
    ))
}

/// Users and the ACL are cluster-wide (docs/access.md): a user and its ACL entry made on
/// node1 log in and are enforced on node3, and on the owner of a request node2 forwards; the
/// user deleted on node1 is refused on node3.
fn cluster_wide_access(n1: &KNode, n2: &KNode, n3: &KNode) -> Result<()> {
    let (c, b) = api(
        n1,
        "POST",
        "/api/v1/access/users",
        Some(&serde_json::json!({"userid": "labop", "password": "labop-password"})),
        None,
    )?;
    ensure!(c == 201, "user create on node1: {c} {b}");
    let (c, b) = api(
        n1,
        "PUT",
        "/api/v1/access/acl",
        Some(&serde_json::json!({"path": "/nodes/node3", "roleid": "Auditor", "users": ["labop"]})),
        None,
    )?;
    ensure!(c == 200, "ACL grant on node1: {c} {b}");
    let op = user_token(n3, "labop", "labop-password", "lab")?;
    let (c, b) = api(n3, "GET", "/api/v1/nodes/node3", None, Some(&op))?;
    ensure!(
        c == 200,
        "labop (Auditor on /nodes/node3) reads node3 on node3: {c} {b}"
    );
    let (c, b) = api(n2, "GET", "/api/v1/nodes/node3", None, Some(&op))?;
    ensure!(
        c == 200 && b["node"] == "node3",
        "labop reads node3 through node2 (forwarded): {c} {b}"
    );
    let (c, b) = api(n3, "GET", "/api/v1/nodes/node2/networks", None, Some(&op))?;
    ensure!(
        c == 403
            && b["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("Sys.Audit on /nodes/node2"),
        "labop reads node2's networks through node3: {c} {b}"
    );
    let (c, b) = api(n1, "DELETE", "/api/v1/access/users/labop", None, None)?;
    ensure!(c == 204, "user delete on node1: {c} {b}");
    let (c, b) = api(n3, "GET", "/api/v1/nodes/node3", None, Some(&op))?;
    ensure!(c == 401, "the deleted user's token on node3: {c} {b}");
    eprintln!("cluster-wide access: user and ACL made on node1, enforced on node3 and through node2's forwarding, deleted on node1 -> 401 on node3");
    Ok(())
}

/// The UI's real-cluster check (`ui/e2e/cluster.mjs`, playwright-core + chromium) inside node1's
/// namespaces against node1's API. node2's device is set again from the page, as it is (its
/// fence test was never run here, so nothing it proved is lost).
fn ui_cluster_e2e(lab: &NetnsLab, vip: &str) -> Result<()> {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
    anyhow::ensure!(
        ui.join("dist/index.html").exists() && ui.join("node_modules/playwright-core").exists(),
        "ui/dist or ui/node_modules is missing: the cluster page cannot be checked (scripts/test.sh builds them; by hand: cd ui && npm ci && npm run build)"
    );
    let a1 = &lab.node(1)?.addr6;
    let shots = lab.dir.join("ui-shots");
    let o = lab.node(1)?.sh(&format!(
        "cd '{}' && KEEL_UI_URL='https://[{a1}]:8006' KEEL_PASSWORD='{PW}' KEEL_EXPECT_NODES=node1,node2,node3 KEEL_EXPECT_QUORATE=1 KEEL_EXPECT_CLUSTER=keeltest KEEL_EXPECT_VIP='{vip}' KEEL_FENCE_CHANGE='node2:lab_dir={};action=off' KEEL_UI_SHOTS='{}' node e2e/cluster.mjs 2>&1",
        ui.display(),
        lab.dir.display(),
        shots.display()
    ))?;
    let tail: Vec<&str> = o.stdout.lines().rev().take(3).collect();
    eprintln!("ui/e2e/cluster.mjs: {}", tail.join(" | "));
    ensure!(
        o.success(),
        "ui/e2e/cluster.mjs against node1 failed:\n{}{}",
        o.stdout,
        o.stderr
    );
    Ok(())
}

/// `ui/e2e/cluster.mjs` against node1 of the pair while the QDevice is configured: its card
/// shows the host and the vote the API counts (the three-node run checks the "none" state).
fn ui_pair_qdevice_e2e(lab: &NetnsLab, qhost: &str) -> Result<()> {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
    anyhow::ensure!(
        ui.join("dist/index.html").exists() && ui.join("node_modules/playwright-core").exists(),
        "ui/dist or ui/node_modules is missing: the cluster page cannot be checked (scripts/test.sh builds them; by hand: cd ui && npm ci && npm run build)"
    );
    let a1 = &lab.node(1)?.addr6;
    let o = lab.node(1)?.sh(&format!(
        "cd '{}' && KEEL_UI_URL='https://[{a1}]:8006' KEEL_PASSWORD='{PW}' KEEL_EXPECT_NODES=node1,node2 KEEL_EXPECT_QUORATE=1 KEEL_EXPECT_CLUSTER=pair KEEL_EXPECT_QDEVICE='{qhost}' KEEL_SKIP_REFRESH_CHECK=1 KEEL_UI_SHOTS='{}' node e2e/cluster.mjs 2>&1",
        ui.display(),
        lab.dir.join("ui-shots").display()
    ))?;
    let tail: Vec<&str> = o.stdout.lines().rev().take(3).collect();
    eprintln!("ui/e2e/cluster.mjs (pair + QDevice): {}", tail.join(" | "));
    ensure!(
        o.success(),
        "ui/e2e/cluster.mjs against node1 of the pair failed:\n{}{}",
        o.stdout,
        o.stderr
    );
    Ok(())
}

fn scenario(lab: &NetnsLab) -> Result<()> {
    let t0 = Instant::now();
    let n1 = start_hostd(lab, lab.node(1)?, "")?;
    let n2 = start_hostd(lab, lab.node(2)?, "")?;
    let n3 = start_hostd(lab, lab.node(3)?, "")?;
    let n4 = start_hostd(
        lab,
        lab.node(4)?,
        "<domain type='test'><name>legacy-vm</name><memory>65536</memory><os><type>hvm</type></os></domain>",
    )?;
    eprintln!("METRIC hostd_x4_up={:.2}s", t0.elapsed().as_secs_f64());
    let fp_before = n1.fingerprint()?;

    // init on node1
    let t = Instant::now();
    let a1 = lab.node(1)?.addr6.clone();
    n1.keel_ok(&["cluster", "init", "--name", "keeltest", "--link0", &a1])?;
    eprintln!("METRIC cluster_init={:.2}s", t.elapsed().as_secs_f64());
    let fp1 = n1.fingerprint()?;
    ensure!(fp1 != fp_before, "the API certificate was not swapped");
    let st = n1.status()?;
    ensure!(
        st.clustered && st.quorate && st.members.len() == 1,
        "after init: {st:?}"
    );
    ensure!(st.dc.as_deref() == Some("node1"), "after init, DC: {st:?}");
    ensure!(st.stonith_enabled, "stonith must be enabled: {st:?}");
    let crm_config = lab
        .node(1)?
        .run_ok(&["cibadmin", "--query", "--scope", "crm_config"])?;
    ensure!(
        !crm_config.contains("dc-deadtime"),
        "the seed dc-deadtime must be gone after init: {crm_config}"
    );
    let conf1 = std::fs::read_to_string(lab.node(1)?.dir.join("etc/corosync/corosync.conf"))?;
    ensure!(conf1.contains("crypto_cipher: aes256") && !conf1.contains("two_node"));
    let addr1 = format!("[{a1}]:8006");

    // tokens
    let token = |ttl: &str| -> Result<String> {
        Ok(n1
            .keel_ok(&["cluster", "join-token", "--ttl", ttl])?
            .trim()
            .to_string())
    };
    let t_a = token("10m")?;
    let t_b = token("10m")?;
    let t_short = token("1s")?;

    // refusal: wrong fingerprint (the token is not sent: t_b works afterwards)
    let bogus = fp1
        .chars()
        .map(|c| {
            if c == 'A' {
                'B'
            } else if c == 'B' {
                'A'
            } else {
                c
            }
        })
        .collect::<String>();
    let bogus = if bogus == fp1 {
        fp_before.clone()
    } else {
        bogus
    };
    expect_refusal(
        "wrong fingerprint",
        n3.join(&addr1, &bogus, &t_b)?,
        "wrong fingerprint",
    )?;
    // refusal: node holding VMs
    expect_refusal(
        "node holding VMs",
        n4.join(&addr1, &fp1, &t_b)?,
        "holds 1 VM",
    )?;
    // refusal: expired token
    std::thread::sleep(Duration::from_millis(1500));
    expect_refusal("expired token", n3.join(&addr1, &fp1, &t_short)?, "expired")?;

    // node2 joins
    let t = Instant::now();
    let o = n2.join(&addr1, &fp1, &t_a)?;
    ensure!(o.success(), "node2 join failed: {}{}", o.stderr, o.stdout);
    eprintln!("METRIC join_node2={:.2}s", t.elapsed().as_secs_f64());
    let conf2 = std::fs::read_to_string(lab.node(2)?.dir.join("etc/corosync/corosync.conf"))?;
    ensure!(
        conf2.contains("two_node: 1") && conf2.contains("wait_for_all: 1"),
        "two_node not on at 2 nodes:\n{conf2}"
    );
    let st = n2.status()?;
    ensure!(
        st.quorate && st.members.len() == 2 && st.two_node,
        "after node2: {st:?}"
    );

    // refusal: used token; node already clustered
    expect_refusal("used token", n3.join(&addr1, &fp1, &t_a)?, "already used")?;
    let t_c = token("10m")?;
    expect_refusal(
        "node already clustered",
        n2.join(&addr1, &fp1, &t_c)?,
        "already a member",
    )?;

    // node3 joins with the token the wrong-fingerprint attempt did not spend
    let t = Instant::now();
    let o = n3.join(&addr1, &fp1, &t_b)?;
    ensure!(o.success(), "node3 join failed: {}{}", o.stderr, o.stdout);
    eprintln!("METRIC join_node3={:.2}s", t.elapsed().as_secs_f64());
    for i in 1..=3 {
        let c = std::fs::read_to_string(lab.node(i)?.dir.join("etc/corosync/corosync.conf"))?;
        ensure!(
            !c.contains("two_node"),
            "node{i}: two_node still on at 3 nodes"
        );
        ensure!(
            c.contains("name: node3"),
            "node{i}: corosync.conf lacks node3"
        );
    }
    // SSH material: node3's host key pinned on node1, node1's root key authorized on node3
    let kh1 = std::fs::read_to_string(lab.node(1)?.dir.join("keel/ssh/ssh_known_hosts"))?;
    ensure!(
        kh1.contains("node3,"),
        "node1 known_hosts lacks node3:\n{kh1}"
    );
    let ak3 = std::fs::read_to_string(lab.node(3)?.dir.join("keel/root-ssh/authorized_keys"))?;
    ensure!(
        ak3.contains("keel:node1") && ak3.contains("keel:node2"),
        "node3 authorized_keys:\n{ak3}"
    );

    // fencing: one lab device per node through the API
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
    let mut st = n3.status()?;
    lab.wait_for(
        "3 members online, quorate, DC, fence devices started",
        T,
        || {
            st = n3.status()?;
            let crm = lab.node(1)?.crm_status()?;
            let fences = (1..=3).all(|i| {
                crm.resource(&format!("fence-node{i}")).is_some_and(|r| {
                    r.role == "Started" && r.nodes.len() == 1 && r.nodes[0] != format!("node{i}")
                })
            });
            Ok(st.quorate
                && st.members.len() == 3
                && st
                    .members
                    .iter()
                    .all(|m| m.online && m.fence_device.is_some())
                && st.dc.is_some()
                && fences)
        },
    )?;
    ensure!(
        st.stonith_enabled && !st.two_node && st.expected_votes == 3,
        "{st:?}"
    );
    eprintln!("{}", n1.keel_ok(&["cluster", "status"])?);
    eprintln!(
        "METRIC formed_3_nodes_total={:.2}s",
        t0.elapsed().as_secs_f64()
    );

    // the replicated config store (keel-clusterd started by Keel on every member)
    lab.wait_for(
        "config store writable on node1",
        Duration::from_secs(60),
        || {
            let o = n1.keel(&[
                "cluster",
                "config",
                "set",
                "test/hello",
                r#"{"from":"node1"}"#,
            ])?;
            ensure!(o.success(), "{}{}", o.stderr, o.stdout);
            Ok(true)
        },
    )?;
    let mut got = String::new();
    lab.wait_for("node3 reads node1's write", Duration::from_secs(60), || {
        let o = n3.keel(&["cluster", "config", "get", "test/hello"])?;
        got = o.stdout.clone();
        Ok(o.success() && o.stdout.contains("node1"))
    })?;
    eprintln!("config store: node3 read {}", got.trim());

    // any node's API serves the others: node-scoped requests are forwarded
    let info: serde_json::Value =
        serde_json::from_str(&n1.keel_ok(&["--json", "--node", "node2", "node"])?)?;
    ensure!(
        info["node"] == "node2",
        "forwarded /nodes/node2 answered {info}"
    );
    let vms = n1.keel(&["--node", "node3", "vm", "list"])?;
    ensure!(
        vms.success(),
        "forwarded vm list: {}{}",
        vms.stderr,
        vms.stdout
    );
    let tok1 = std::fs::read_to_string(n1.state.join("local-root.token"))?;
    let list = lab.node(1)?.sh_ok(&format!(
        "curl -sk -H 'Authorization: KeelAPIToken {}' https://127.0.0.1:8006/api/v1/nodes",
        tok1.trim()
    ))?;
    let list: serde_json::Value = serde_json::from_str(&list)?;
    ensure!(
        list.as_array().map(|a| a.len()) == Some(3),
        "/api/v1/nodes on node1 should list 3 members: {list}"
    );

    let t = Instant::now();
    cluster_wide_state(lab, &n1, &n2, &n3)?;
    eprintln!(
        "METRIC cluster_wide_state_checks={:.2}s",
        t.elapsed().as_secs_f64()
    );
    // the floating management address: refused on a member's own address, set through the
    // CLI, placed by Pacemaker and answering the API (the UI check below shows it)
    let vip = format!("{}::100", keel_tests::netns::LAB_V6_PREFIX);
    let o = n1.keel(&[
        "cluster",
        "vip",
        "set",
        &format!("{}/64", lab.node(2)?.addr6),
    ])?;
    ensure!(
        !o.success() && o.stderr.contains("node2's own address"),
        "a member's address as the floating address: {}{}",
        o.stderr,
        o.stdout
    );
    let t = Instant::now();
    n1.keel_ok(&["cluster", "vip", "set", &format!("{vip}/64")])?;
    let vip_on = |k: &KNode| -> Result<Option<String>> {
        let v: serde_json::Value =
            serde_json::from_str(&k.keel_ok(&["cluster", "vip", "show", "--json"])?)?;
        Ok(v["running_on"].as_str().map(str::to_string))
    };
    let via_vip = || -> Result<Option<String>> {
        let o = lab.node(1)?.sh(&format!(
            "curl -sk --max-time 3 'https://[{vip}]:8006/api/v1/health'"
        ))?;
        Ok(serde_json::from_str::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v["node"].as_str().map(str::to_string)))
    };
    let mut holder = String::new();
    lab.wait_for("the floating address running and answering", T, || {
        match (vip_on(&n2)?, via_vip()?) {
            (Some(a), Some(b)) if a == b => {
                holder = a;
                Ok(true)
            }
            _ => Ok(false),
        }
    })?;
    eprintln!(
        "METRIC vip_set_to_answering={:.2}s (on {holder})",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    ui_cluster_e2e(lab, &format!("{vip}/64"))?;
    eprintln!("METRIC ui_cluster_e2e={:.2}s", t.elapsed().as_secs_f64());
    verify::verify_faults(lab, &n1, &n2, &n3)?;

    // bench: GET /api/v1/cluster/status latency on node1 (3 members)
    let tok = std::fs::read_to_string(n1.state.join("local-root.token"))?;
    let script = format!(
        "for i in $(seq 1 30); do curl -sk -o /dev/null -w '%{{time_total}}\\n' -H 'Authorization: KeelAPIToken {}' https://127.0.0.1:8006/api/v1/cluster/status; done",
        tok.trim()
    );
    let out = lab.node(1)?.sh_ok(&script)?;
    let mut v: Vec<f64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    ensure!(v.len() == 30, "latency samples: {out}");
    let (p50, p99) = (pct(&mut v, 0.5) * 1000.0, pct(&mut v, 0.99) * 1000.0);
    eprintln!("METRIC cluster_status_latency_3_nodes p50={p50:.1}ms p99={p99:.1}ms (n=30)");
    // the raw engines for the same information: what one status costs without Keel
    let raw = lab.node(1)?.sh_ok(
        "for i in $(seq 1 30); do s=$(date +%s%N); crm_mon --output-as=xml --inactive --fence-history=2 >/dev/null; \
         corosync-quorumtool -s >/dev/null; corosync-cfgtool -n >/dev/null; e=$(date +%s%N); \
         echo $(( (e - s) / 1000 )); done",
    )?;
    // microseconds -> seconds, like curl's time_total above
    let mut r: Vec<f64> = raw
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|us| us / 1e6)
        .collect();
    ensure!(r.len() == 30, "raw latency samples: {raw}");
    let (r50, r99) = (pct(&mut r, 0.5) * 1000.0, pct(&mut r, 0.99) * 1000.0);
    eprintln!(
        "METRIC raw_engine_status (crm_mon + quorumtool + cfgtool) p50={r50:.1}ms p99={r99:.1}ms; API/raw p50 ratio {:.2}",
        p50 / r50
    );

    // pinned to node3 with the raw engine (crm_resource --move), so the fence test below must
    // move it
    if holder != "node3" {
        lab.node(1)?.run_ok(&[
            "crm_resource",
            "--move",
            "--resource",
            "keel-vip",
            "--node",
            "node3",
        ])?;
    }
    lab.wait_for("the floating address on node3", T, || {
        Ok(vip_on(&n1)?.as_deref() == Some("node3") && via_vip()?.as_deref() == Some("node3"))
    })?;

    // a real fence test: node3 powered off by the lab agent through stonith_admin
    let t = Instant::now();
    n1.keel_ok(&["fence", "test", "node3", "--yes", "--off"])?;
    eprintln!("METRIC fence_test_node3={:.2}s", t.elapsed().as_secs_f64());
    let mut survivor = String::new();
    lab.wait_for(
        "the floating address answering from a survivor",
        T,
        || match via_vip()? {
            Some(n) if n != "node3" => {
                survivor = n;
                Ok(true)
            }
            _ => Ok(false),
        },
    )?;
    eprintln!(
        "METRIC vip_answering_again_after_node3_fenced={:.2}s (from the fence test's start; on {survivor})",
        t.elapsed().as_secs_f64()
    );
    // the move constraint names node3, which is removed below; then the address itself
    lab.node(1)?
        .run_ok(&["crm_resource", "--clear", "--resource", "keel-vip"])?;
    n1.keel_ok(&["cluster", "vip", "remove"])?;
    ensure!(
        n1.keel_ok(&["cluster", "vip", "show"])?
            .contains("no floating management address"),
        "the floating address is still configured after remove"
    );
    ensure!(
        lab.fence_log().contains("off node3"),
        "fence log: {}",
        lab.fence_log()
    );
    lab.wait_for(
        "node3 offline, 2 of 3 quorate, its fence test seen on node2",
        T,
        || {
            let st = n2.status()?;
            Ok(st.quorate
                && st.members.iter().any(|m| m.name == "node3" && !m.online)
                && st
                    .members
                    .iter()
                    .find(|m| m.name == "node3")
                    .and_then(|m| m.last_fence_test.as_ref())
                    .is_some_and(|t| t.ok))
        },
    )?;

    // node3 is down: removing it needs --force (it cannot be told to leave); 3 -> 2 nodes
    // switches two_node back on everywhere
    let o = n1.keel(&["node", "remove", "node3"])?;
    ensure!(
        !o.success() && o.stderr.contains("--force"),
        "removing an unreachable node without --force: {}{}",
        o.stderr,
        o.stdout
    );
    let crypto_before = crypto_reconfigs(lab)?;
    n1.keel_ok(&["node", "remove", "node3", "--force"])?;
    for i in 1..=2 {
        let c = std::fs::read_to_string(lab.node(i)?.dir.join("etc/corosync/corosync.conf"))?;
        ensure!(!c.contains("name: node3"), "node{i} still lists node3");
        ensure!(
            c.contains("two_node: 1"),
            "node{i}: two_node not back on at 2 nodes"
        );
    }
    let kh = std::fs::read_to_string(lab.node(2)?.dir.join("keel/ssh/ssh_known_hosts"))?;
    ensure!(!kh.contains("node3"), "node2 still pins node3's host key");
    lab.wait_for("2 members, quorate, node3 gone from Pacemaker", T, || {
        let st = n2.status()?;
        let crm = lab.node(1)?.crm_status()?;
        Ok(st.quorate
            && st.members.len() == 2
            && st.two_node
            && !crm.nodes.iter().any(|n| n.name == "node3"))
    })?;
    let t = Instant::now();
    peer_trust_after_removal(lab, &n1, &n3)?;
    eprintln!(
        "METRIC peer_trust_after_removal={:.2}s",
        t.elapsed().as_secs_f64()
    );
    // corosync re-read the rotated key at runtime (corosync-cfgtool -R) and the two members
    // still form a quorate membership. corosync reads the key file on every reload and
    // switches when it differs from the key in memory; the proof that it did is the knet line
    // in its log. corosync writes its log from a separate thread, so the line can come
    // seconds after the switch: once neither log had it when read at once (the members had
    // the new key, stayed quorate), so it is waited for. That a node holding the old key is
    // kept out is proven on its own in netns_corosync_key_rotation.
    let mut crypto_after = crypto_reconfigs(lab)?;
    let waited = Instant::now();
    while !crypto_after.iter().zip(&crypto_before).any(|(a, b)| a > b)
        && waited.elapsed() < Duration::from_secs(45)
    {
        std::thread::sleep(Duration::from_millis(500));
        crypto_after = crypto_reconfigs(lab)?;
    }
    eprintln!(
        "'kronosnet crypto reconfigured' lines on node1, node2: before {crypto_before:?}, after {crypto_after:?} (waited {:.1}s)",
        waited.elapsed().as_secs_f64()
    );
    if !crypto_after.iter().zip(&crypto_before).any(|(a, b)| a > b) {
        for i in 1..=2 {
            let p = lab.node(i)?.dir.join("log/corosync/corosync.log");
            let log = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- node{i} corosync.log, last 40 lines (newest first):");
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
    ensure!(
        crypto_after.iter().zip(&crypto_before).any(|(a, b)| a > b),
        "corosync did not reconfigure its crypto within 45 s of the key rotation: \
         'kronosnet crypto reconfigured' lines on node1, node2 before {crypto_before:?}, after {crypto_after:?}"
    );
    std::thread::sleep(Duration::from_secs(5));
    let st = n2.status()?;
    ensure!(
        st.quorate && st.members.iter().filter(|m| m.online).count() == 2,
        "not 2 online quorate members 5 s after the key rotation: {st:?}"
    );
    Ok(())
}

/// How many times corosync on node1 and node2 logged a knet crypto reconfiguration.
fn crypto_reconfigs(lab: &NetnsLab) -> Result<Vec<usize>> {
    (1..=2)
        .map(|i| {
            let p = lab.node(i)?.dir.join("log/corosync/corosync.log");
            let log =
                std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            Ok(log.matches("kronosnet crypto reconfigured").count())
        })
        .collect()
}

/// HMAC-SHA256, written here from its definition (RFC 2104) so the lab checks hostd's peer
/// MAC against an independent implementation of the documented format.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = if key.len() > 64 {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// `X-Keel-Peer` as docs/cluster.md describes it: `NODE:TIME:NONCE:HMAC` over
/// `keel-peer-v2`, sender, time, nonce, method, path with query, user and the body's SHA-256.
fn peer_header(key: &[u8], from: &str, method: &str, pq: &str, user: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let digest = hex::encode(Sha256::digest(body));
    let msg = format!("keel-peer-v2\n{from}\n{ts}\n{nonce}\n{method}\n{pq}\n{user}\n{digest}");
    format!(
        "{from}:{ts}:{nonce}:{}",
        hex::encode(hmac_sha256(key, msg.as_bytes()))
    )
}

/// After `keel node remove node3 --force`: node3's certificate (still signed by the cluster
/// CA) and its MAC are refused by both remaining members, a forwarded request and a peer
/// update alike; and a member's correctly signed request is accepted once, then refused when
/// the same bytes are sent again.
fn peer_trust_after_removal(lab: &NetnsLab, n1: &KNode, n3: &KNode) -> Result<()> {
    let n3dir = n3.state.join("cluster");
    let old_key = std::fs::read(lab.node(3)?.dir.join("etc/corosync/authkey"))?;
    let key1 = std::fs::read(lab.node(1)?.dir.join("etc/corosync/authkey"))?;
    let key2 = std::fs::read(lab.node(2)?.dir.join("etc/corosync/authkey"))?;
    ensure!(
        key1 == key2 && key1 != old_key && key1.len() == 128,
        "the corosync authkey was not rotated to the same new key on node1 and node2"
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(n1.state.join("cluster/cluster.json"))?)?;
    let removed = rec["removed"].as_array().cloned().unwrap_or_default();
    ensure!(
        removed.iter().any(|v| v == "node3"),
        "node1's record does not list node3 as removed: {rec}"
    );
    let ca = n1.state.join("cluster/ca.crt");
    let a = |i: usize| -> Result<String> { Ok(format!("[{}]:8006", lab.node(i)?.addr6)) };
    // one HTTPS request from node1's namespace with the given client certificate; the status
    // and the body
    let send = |cert_dir: &std::path::Path,
                to: &str,
                method: &str,
                pq: &str,
                headers: &[(&str, String)],
                body: &str|
     -> Result<(u16, String)> {
        let mut hs = String::new();
        for (k, v) in headers {
            hs.push_str(&format!(" -H '{k}: {v}'"));
        }
        let data = if body.is_empty() {
            String::new()
        } else {
            format!(" -H 'content-type: application/json' --data-binary '{body}'")
        };
        let out = lab.node(1)?.sh_ok(&format!(
            "curl -sS -X {method} --cacert '{}' --cert '{}' --key '{}'{hs}{data} -w '\n%{{http_code}}' 'https://{to}{pq}'",
            ca.display(),
            cert_dir.join("node.crt").display(),
            cert_dir.join("node.key").display(),
        ))?;
        let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    };
    for i in 1..=2 {
        let to = a(i)?;
        let pq = format!("/api/v1/nodes/node{i}");
        // node3's certificate (still signed by the cluster CA) with the key it held: revoked
        let h = peer_header(&old_key, "node3", "GET", &pq, "root", b"");
        let (st, b) = send(
            &n3dir,
            &to,
            "GET",
            &pq,
            &[("X-Keel-Peer", h), ("X-Keel-Forwarded-User", "root".into())],
            "",
        )?;
        ensure!(
            st == 401 && b.contains("node3 was removed from the cluster"),
            "node{i}: forwarded request as removed node3 (old key): {st} {b}"
        );
        let upd = "/api/v1/cluster/peer/update";
        let h = peer_header(&old_key, "node3", "POST", upd, "", b"{}");
        let (st, b) = send(&n3dir, &to, "POST", upd, &[("X-Keel-Peer", h)], "{}")?;
        ensure!(
            st == 401 && b.contains("node3 was removed from the cluster"),
            "node{i}: peer update as removed node3 (old key): {st} {b}"
        );
        // the old key is dead on its own: a MAC made with it over a member's certificate
        let n1dir = n1.state.join("cluster");
        let h = peer_header(&old_key, "node1", "GET", &pq, "root", b"");
        let (st, b) = send(
            &n1dir,
            &to,
            "GET",
            &pq,
            &[("X-Keel-Peer", h), ("X-Keel-Forwarded-User", "root".into())],
            "",
        )?;
        ensure!(
            st == 401 && b.contains("not signed with this cluster's key"),
            "node{i}: forwarded request signed with the old key: {st} {b}"
        );
        let h = peer_header(&old_key, "node1", "POST", upd, "", b"{}");
        let (st, b) = send(&n1dir, &to, "POST", upd, &[("X-Keel-Peer", h)], "{}")?;
        ensure!(
            st == 401 && b.contains("not signed with this cluster's key"),
            "node{i}: peer update signed with the old key: {st} {b}"
        );
        // even with the new key (were it leaked), node3's certificate and name are revoked
        let h = peer_header(&key1, "node3", "GET", &pq, "root", b"");
        let (st, b) = send(
            &n3dir,
            &to,
            "GET",
            &pq,
            &[("X-Keel-Peer", h), ("X-Keel-Forwarded-User", "root".into())],
            "",
        )?;
        ensure!(
            st == 401 && b.contains("node3 was removed from the cluster"),
            "node{i}: forwarded request as removed node3 (new key): {st} {b}"
        );
        let h = peer_header(&key1, "node3", "POST", upd, "", b"{}");
        let (st, b) = send(&n3dir, &to, "POST", upd, &[("X-Keel-Peer", h)], "{}")?;
        ensure!(
            st == 401 && b.contains("node3 was removed from the cluster"),
            "node{i}: peer update as removed node3 (new key): {st} {b}"
        );
    }
    // a replay: node1's own certificate and a correct signature for node2's node info, sent
    // twice with the same bytes
    let n1dir = n1.state.join("cluster");
    let pq = "/api/v1/nodes/node2";
    let h = peer_header(&key1, "node1", "GET", pq, "root", b"");
    let headers = [
        ("X-Keel-Peer", h),
        ("X-Keel-Forwarded-User", "root".to_string()),
    ];
    let (st, b) = send(&n1dir, &a(2)?, "GET", pq, &headers, "")?;
    ensure!(
        st == 200,
        "node1's signed forwarded request to node2: {st} {b}"
    );
    let (st, b) = send(&n1dir, &a(2)?, "GET", pq, &headers, "")?;
    ensure!(
        st == 401 && b.contains("replayed peer request"),
        "the same signed request again: {st} {b}"
    );
    // forwarded JSON bodies are digested: node1's hostd forwards a POST to node2 (node2 judges
    // the body: 400, not 401), and a body other than the one signed is refused
    let (c, b) = api(
        n1,
        "POST",
        "/api/v1/nodes/node2/vms",
        Some(&serde_json::json!({})),
        None,
    )?;
    ensure!(c == 400, "forwarded POST with a JSON body: {c} {b}");
    let pq = "/api/v1/nodes/node2/vms";
    let h = peer_header(&key1, "node1", "POST", pq, "root", b"{}");
    let headers = [
        ("X-Keel-Peer", h),
        ("X-Keel-Forwarded-User", "root".to_string()),
    ];
    let (st, b) = send(&n1dir, &a(2)?, "POST", pq, &headers, r#"{"vmid":1}"#)?;
    ensure!(
        st == 401 && b.contains("not signed with this cluster's key"),
        "a forwarded body other than the signed one: {st} {b}"
    );
    eprintln!("peer trust after removal: node3 refused by node1 and node2 (old and new key), replay refused, altered body refused");
    Ok(())
}

/// The two scenarios share 2 CPUs: run them one after the other (corosync's 1 s token in the
/// lab does not like a starved CPU).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn keel_forms_a_three_node_cluster() -> Result<()> {
    anyhow::ensure!(
        is_root(),
        "the netns lab needs root (network namespaces, corosync, Pacemaker): run the suite as root"
    );
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    let lab = NetnsLab::up(4, LabOpts::new("keelform"))?;
    let r = scenario(&lab);
    let r = lab.finish(r);
    eprintln!(
        "METRIC netns_keel_cluster_total={:.2}s",
        t0.elapsed().as_secs_f64()
    );
    r
}

/// Two nodes on two lab networks: init + join with link0 and link1 (two_node on), a lab fence
/// device per node with a fence delay on node1's; link0 cut on both ends of both nodes →
/// corosync carries on over link1 (no fencing, quorate, store writable, status shows link0
/// down and link1 up per node), healed; then both networks are cut on both ends of node2:
/// both nodes stay quorate (two_node) and race to fence each other; the delay makes node1 win,
/// so exactly one node survives, and it stays writable. Once node2 is back: a QDevice on node3
/// (see [`qdevice_keeps_a_lone_node_quorate`]).
fn two_node_scenario(lab: &NetnsLab) -> Result<()> {
    let n1 = start_hostd(lab, lab.node(1)?, "")?;
    let n2 = start_hostd(lab, lab.node(2)?, "")?;
    let a1 = lab.node(1)?.addr6.clone();
    let b1 = link1_addr(lab.node(1)?)?;
    n1.keel_ok(&[
        "cluster", "init", "--name", "pair", "--link0", &a1, "--link1", &b1,
    ])?;
    let fp1 = n1.fingerprint()?;
    // this time the member's root password instead of a token
    let addr1 = format!("[{a1}]:8006");
    expect_refusal(
        "wrong root password",
        n2.join_password(&addr1, &fp1, "not-the-password")?,
        "wrong root password",
    )?;
    let o = join_two_links(&n2, &addr1, &fp1)?;
    ensure!(o.success(), "node2 join failed: {}{}", o.stderr, o.stdout);
    let labdir = lab.dir.display().to_string();
    let lab_param = format!("lab_dir={labdir}");
    n1.keel_ok(&[
        "fence",
        "add",
        "node1",
        "--agent",
        "fence_keellab",
        "--param",
        &lab_param,
        "--param",
        "action=off",
        "--delay",
        "10",
    ])?;
    n1.keel_ok(&[
        "fence",
        "add",
        "node2",
        "--agent",
        "fence_keellab",
        "--param",
        &lab_param,
        "--param",
        "action=off",
    ])?;
    lab.wait_for(
        "2 members online, two_node, fence devices started",
        T,
        || {
            let st = n1.status()?;
            let crm = lab.node(1)?.crm_status()?;
            let fences = (1..=2).all(|i| {
                crm.resource(&format!("fence-node{i}")).is_some_and(|r| {
                    r.role == "Started" && r.nodes.len() == 1 && r.nodes[0] != format!("node{i}")
                })
            });
            Ok(st.quorate
                && st.two_node
                && st.stonith_enabled
                && st.members.len() == 2
                && st.members.iter().all(|m| m.online)
                && fences)
        },
    )?;
    lab.wait_for("config store writable", Duration::from_secs(60), || {
        let o = n1.keel(&["cluster", "config", "set", "pair/before", "1"])?;
        ensure!(o.success(), "{}{}", o.stderr, o.stdout);
        Ok(true)
    })?;

    let t = Instant::now();
    link0_cut_keeps_the_pair(lab, &n1, &n2)?;
    eprintln!(
        "METRIC two_node_link0_cut_steps={:.2}s",
        t.elapsed().as_secs_f64()
    );

    // both networks cut on both of node2's ends: the normal fencing path
    let before = lab.fence_log().len();
    let t0 = Instant::now();
    lab.partition(lab.node(2)?)?;
    lab.wait_for("node2 fenced by node1", T, || {
        Ok(lab.fence_log()[before..].contains("off node2"))
    })?;
    let t_fenced = t0.elapsed();
    // node2's fence of node1 waits 10 s; node2 is gone before that
    std::thread::sleep(Duration::from_secs(15));
    let log = lab.fence_log()[before..].to_string();
    ensure!(!log.contains("off node1"), "node1 was fenced too:\n{log}");
    ensure!(lab.node(2)?.pids().is_empty(), "node2 still has processes");
    let st = n1.status()?;
    ensure!(
        st.quorate && st.members.iter().any(|m| m.name == "node2" && !m.online),
        "survivor: {st:?}"
    );
    lab.wait_for("survivor writable", Duration::from_secs(60), || {
        let o = n1.keel(&["cluster", "config", "set", "pair/after", "2"])?;
        ensure!(o.success(), "{}{}", o.stderr, o.stdout);
        Ok(true)
    })?;
    eprintln!(
        "METRIC two_node_split: node2 fenced {:.2}s after the cut; node1 survived and stays writable",
        t_fenced.as_secs_f64()
    );

    // cable back, power on: the boot script starts keel-hostd, which (service_manager=direct)
    // starts corosync, Pacemaker and keel-clusterd again and serves its CA-signed certificate
    let fp2 = n2.fingerprint()?;
    let t0 = Instant::now();
    lab.heal(lab.node(2)?)?;
    lab.power_on(lab.node(2)?)?;
    lab.wait_for("node2 back: 2 members online, quorate", T, || {
        let st = n1.status()?;
        Ok(st.quorate && st.members.iter().all(|m| m.online))
    })?;
    ensure!(
        n2.fingerprint()? == fp2,
        "node2's API certificate changed across the restart"
    );
    lab.wait_for(
        "node2 reads the write made while it was down",
        Duration::from_secs(60),
        || {
            let o = n2.keel(&["cluster", "config", "get", "pair/after"])?;
            ensure!(o.success(), "{}{}", o.stderr, o.stdout);
            Ok(o.stdout.trim() == "2")
        },
    )?;
    eprintln!(
        "METRIC two_node_rejoin_after_power_on={:.2}s",
        t0.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    qdevice_keeps_a_lone_node_quorate(lab, &n1, &n2)?;
    eprintln!(
        "METRIC two_node_qdevice_steps={:.2}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn qdevice_of(k: &KNode) -> Result<(ClusterStatus, bool, Option<u32>, bool)> {
    let st = k.status()?;
    let (c, v, d) = st
        .qdevice
        .as_ref()
        .map(|q| (q.configured, q.votes, q.daemon_running))
        .unwrap_or((false, None, false));
    Ok((st, c, v, d))
}

/// The QDevice (issue 16): node3 of this lab is the qnetd host — a third namespace on the lab
/// bridge running only corosync-qnetd, no Keel. The operator's steps of docs/cluster.md are
/// run as written (CA on the qnetd host; request on node1, signed on the qnetd host, imported
/// on node1 → the PKCS#12), then `keel cluster qdevice add` does the members' side: both nodes
/// count 3 expected votes, two_node off, the QDevice's vote counted.
///
/// Proof: node2 powered off (as the fence agent does) → node1 alone stays quorate (2 of 3
/// votes: its own and the QDevice's) and its config store takes writes.
///
/// Negative control — why not "the pair without a QDevice": with two_node on (what Keel runs
/// without a QDevice) the survivor is quorate by design, so that would prove nothing about the
/// QDevice. The honest control keeps everything else identical — the same corosync.conf (two_node
/// off, 3 expected votes), the same loss of node2 — and takes away only the QDevice's vote by
/// stopping corosync-qnetd: node1 then holds 1 of 3 votes, is not quorate, and its store
/// refuses writes. qnetd back → quorate again; node2 back; `keel cluster qdevice remove` →
/// two_node back on both nodes.
fn qdevice_keeps_a_lone_node_quorate(lab: &NetnsLab, n1: &KNode, n2: &KNode) -> Result<()> {
    let q = lab.node(3)?;
    let shared = lab.shared_dir().display().to_string();
    // the operator on the qnetd host: its CA and server certificate, qnetd running
    q.sh_ok("mkdir -p /etc/corosync/qnetd /run/corosync-qnetd && corosync-qnetd-certutil -i")?;
    let qnetd = Service::new("corosync-qnetd", &["corosync-qnetd", "-f"])
        .ready(&["corosync-qnetd-tool", "-s"]);
    let qnetd_pid = q.spawn_daemon(qnetd)?;
    q.sh_ok(&format!(
        "cp /etc/corosync/qnetd/nssdb/qnetd-cacert.crt {shared}/"
    ))?;
    // the operator on node1: the cluster's request, signed on the qnetd host, imported
    n1.n.sh_ok(&format!(
        "corosync-qdevice-net-certutil -i -c {shared}/qnetd-cacert.crt && corosync-qdevice-net-certutil -r -n pair && cp /etc/corosync/qdevice/net/nssdb/qdevice-net-node.crq {shared}/"
    ))?;
    q.sh_ok(&format!(
        "corosync-qnetd-certutil -s -c {shared}/qdevice-net-node.crq -n pair && cp /etc/corosync/qnetd/nssdb/cluster-pair.crt {shared}/"
    ))?;
    n1.n.sh_ok(&format!(
        "corosync-qdevice-net-certutil -M -c {shared}/cluster-pair.crt && cp /etc/corosync/qdevice/net/nssdb/qdevice-net-node.p12 {shared}/"
    ))?;
    let ca = format!("{shared}/qnetd-cacert.crt");
    let p12 = format!("{shared}/qdevice-net-node.p12");
    // refused before any task: a text that is no certificate as the CA, a member as the
    // qnetd host
    let crq = format!("{shared}/not-a-certificate.txt");
    std::fs::write(&crq, "qnetd-cacert.crt was not copied\n")?;
    expect_refusal(
        "a text that is no certificate as the CA certificate",
        n1.keel(&[
            "cluster",
            "qdevice",
            "add",
            &q.addr6,
            "--ca-cert",
            &crq,
            "--cluster-p12",
            &p12,
        ])?,
        "not a PEM certificate",
    )?;
    expect_refusal(
        "a member as the qnetd host",
        n1.keel(&[
            "cluster",
            "qdevice",
            "add",
            &lab.node(2)?.addr6,
            "--ca-cert",
            &ca,
            "--cluster-p12",
            &p12,
        ])?,
        "third machine",
    )?;
    let t0 = Instant::now();
    n1.keel_ok(&[
        "cluster",
        "qdevice",
        "add",
        &q.addr6,
        "--ca-cert",
        &ca,
        "--cluster-p12",
        &p12,
    ])?;
    for k in [n1, n2] {
        lab.wait_for(
            &format!("{}: QDevice vote counted, two_node off", k.n.name),
            Duration::from_secs(60),
            || {
                let (st, conf, votes, running) = qdevice_of(k)?;
                Ok(conf
                    && votes == Some(1)
                    && running
                    && st.quorate
                    && !st.two_node
                    && st.expected_votes == 3
                    && st.total_votes == 3)
            },
        )?;
    }
    let human = n1.keel_ok(&["cluster", "status"])?;
    ensure!(
        human.contains(&format!("qdevice:  {} (ffsplit)  vote 1", q.addr6)),
        "keel cluster status shows no QDevice line:\n{human}"
    );
    eprintln!(
        "METRIC qdevice_add={:.2}s (task to vote counted on both nodes)",
        t0.elapsed().as_secs_f64()
    );
    eprintln!(
        "corosync-quorumtool -s on node1 with the QDevice:\n{}",
        n1.n.run(&["corosync-quorumtool", "-s"])?.stdout
    );
    let t0 = Instant::now();
    ui_pair_qdevice_e2e(lab, &q.addr6)?;
    eprintln!(
        "METRIC qdevice_ui={:.2}s (ui/e2e/cluster.mjs on the pair)",
        t0.elapsed().as_secs_f64()
    );

    // node2 powered off: node1 + the QDevice hold 2 of 3 votes
    let t0 = Instant::now();
    lab.power_off(lab.node(2)?)?;
    lab.wait_for("node1 alone: quorate with the QDevice's vote", T, || {
        let (st, _, votes, _) = qdevice_of(n1)?;
        Ok(st.quorate
            && st.total_votes == 2
            && votes == Some(1)
            && st.members.iter().any(|m| m.name == "node2" && !m.online))
    })?;
    lab.wait_for(
        "node1 alone: store writable",
        Duration::from_secs(60),
        || {
            Ok(n1
                .keel(&["cluster", "config", "set", "pair/qdevice", "1"])?
                .success())
        },
    )?;
    eprintln!(
        "METRIC qdevice_lone_node_writable={:.2}s after node2's power-off",
        t0.elapsed().as_secs_f64()
    );

    // negative control: the same loss without the QDevice's vote
    let t0 = Instant::now();
    q.sh_ok(&format!("kill -TERM {qnetd_pid}"))?;
    lab.wait_for(
        "node1 alone without the QDevice's vote: not quorate",
        Duration::from_secs(90),
        || {
            let (st, _, _, _) = qdevice_of(n1)?;
            Ok(!st.quorate && st.total_votes == 1)
        },
    )?;
    let o = n1.keel(&["cluster", "config", "set", "pair/qdevice", "2"])?;
    ensure!(
        !o.success(),
        "node1 wrote to the store without quorum: {}",
        o.stdout
    );
    eprintln!(
        "METRIC qdevice_control: without the QDevice's vote node1 lost quorum {:.2}s after qnetd stopped; its store refused the write",
        t0.elapsed().as_secs_f64()
    );
    q.restart_daemon("corosync-qnetd")?;
    lab.wait_for(
        "qnetd back: node1 quorate again",
        Duration::from_secs(90),
        || Ok(qdevice_of(n1)?.0.quorate),
    )?;
    lab.power_on(lab.node(2)?)?;
    lab.wait_for("node2 back with its QDevice daemon", T, || {
        let (st, _, votes, running) = qdevice_of(n2)?;
        Ok(st.quorate
            && running
            && votes == Some(1)
            && st.total_votes == 3
            && st.members.iter().all(|m| m.online))
    })?;

    // removal: two_node back on both
    let t0 = Instant::now();
    n1.keel_ok(&["cluster", "qdevice", "remove"])?;
    for k in [n1, n2] {
        lab.wait_for(
            &format!("{}: QDevice gone, two_node back", k.n.name),
            Duration::from_secs(60),
            || {
                let (st, conf, _, _) = qdevice_of(k)?;
                Ok(!conf && st.two_node && st.quorate && st.expected_votes == 2)
            },
        )?;
    }
    ensure!(
        !n2.n
            .sh_ok("ls /etc/corosync/qdevice/net/ 2>/dev/null || true")?
            .contains("nssdb"),
        "node2 kept the QDevice's NSS database"
    );
    eprintln!(
        "METRIC qdevice_remove={:.2}s (two_node back on both nodes)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Node `n`'s address on the lab's second network (corosync link1).
fn link1_addr(n: &Node) -> Result<String> {
    n.addr6_link1
        .clone()
        .with_context(|| format!("{} has no second network (LabOpts::link1)", n.name))
}

/// `keel join` with the member's root password and both links given (the node's address on
/// each lab network).
fn join_two_links(
    k: &KNode,
    address: &str,
    fingerprint: &str,
) -> Result<keel_tests::netns::CmdOut> {
    let keel = keelnode::bin("keel")?;
    let state = k.state.display().to_string();
    let l1 = link1_addr(k.n)?;
    k.n.run(&[
        keel.to_str().context("path")?,
        "join",
        address,
        "--fingerprint",
        fingerprint,
        "--password",
        PW,
        "--state-dir",
        &state,
        "--link0",
        &k.n.addr6,
        "--link1",
        &l1,
    ])
}

/// (quorate, each member's (name, online, connected per link)) from `keel --json cluster
/// status` on `k`.
type LinkView = (bool, Vec<(String, bool, Vec<bool>)>);

fn link_view(k: &KNode) -> Result<LinkView> {
    let v: serde_json::Value = serde_json::from_str(&k.keel_ok(&["--json", "cluster", "status"])?)?;
    let members = v["members"]
        .as_array()
        .context("status without members")?
        .iter()
        .map(|m| {
            let links = m["links"]
                .as_array()
                .map(|ls| ls.iter().map(|l| l["connected"] == true).collect())
                .unwrap_or_default();
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["online"] == true,
                links,
            )
        })
        .collect();
    Ok((v["quorate"] == true, members))
}

/// Both members online and quorate, and every member's links as `want` (link0, link1) in
/// `k`'s status.
fn links_are(k: &KNode, want: [bool; 2]) -> Result<bool> {
    let (quorate, members) = link_view(k)?;
    Ok(quorate
        && members.len() == 2
        && members
            .iter()
            .all(|(_, online, links)| *online && links.as_slice() == want))
}

/// link0 cut on both ends of both nodes: corosync carries on over link1 — no fencing, both
/// quorate and online, the config store writable from either node, and `keel cluster status`
/// shows link0 down and link1 up for each node on each node; then link0 is healed.
fn link0_cut_keeps_the_pair(lab: &NetnsLab, n1: &KNode, n2: &KNode) -> Result<()> {
    for k in [n1, n2] {
        lab.wait_for(
            &format!("{}: both links up for both nodes", k.n.name),
            Duration::from_secs(60),
            || links_are(k, [true, true]),
        )?;
    }
    let fence_before = lab.fence_log().len();
    let t0 = Instant::now();
    lab.cut_link(lab.node(1)?, 0)?;
    lab.cut_link(lab.node(2)?, 0)?;
    for k in [n1, n2] {
        lab.wait_for(
            &format!("{}: link0 down, link1 up for both nodes", k.n.name),
            Duration::from_secs(60),
            || links_are(k, [false, true]),
        )?;
    }
    let t_noticed = t0.elapsed();
    let text = n1.keel_ok(&["cluster", "status"])?;
    eprintln!("{text}");
    let b2 = link1_addr(lab.node(2)?)?;
    let a2 = &lab.node(2)?.addr6;
    ensure!(
        text.contains(&format!("0:{a2}(down)")) && text.contains(&format!("1:{b2} ")),
        "keel cluster status on node1 does not show node2's link0 down and link1 up:
{text}"
    );
    for (i, k) in [(1, n1), (2, n2)] {
        let o = k.keel(&[
            "cluster",
            "config",
            "set",
            &format!("pair/link1-only-{i}"),
            "1",
        ])?;
        ensure!(
            o.success(),
            "{}: store write over link1 refused: {}{}",
            k.n.name,
            o.stderr,
            o.stdout
        );
    }
    lab.wait_for(
        "each node reads the other's write over link1",
        Duration::from_secs(30),
        || {
            let a = n1.keel(&["cluster", "config", "get", "pair/link1-only-2"])?;
            let b = n2.keel(&["cluster", "config", "get", "pair/link1-only-1"])?;
            Ok(a.success() && b.success())
        },
    )?;
    // a lost membership fences within token + consensus (1 s + 1.2 s in this lab) plus the
    // agent's run: the race below fences node2 2.4-3.5 s after its cut. The cut is older than
    // twice that by the end of this pause.
    std::thread::sleep(Duration::from_secs(3));
    let log = lab.fence_log()[fence_before..].to_string();
    ensure!(
        !log.contains("fence_keellab"),
        "a node was fenced with link1 still up:\n{log}"
    );
    for i in 1..=2 {
        ensure!(
            !lab.node(i)?.pids().is_empty(),
            "node{i} lost its processes during the link0 cut"
        );
    }
    ensure!(
        links_are(n1, [false, true])? && links_are(n2, [false, true])?,
        "the pair did not stay quorate and online on link1"
    );
    lab.heal_link(lab.node(1)?, 0)?;
    lab.heal_link(lab.node(2)?, 0)?;
    let t1 = Instant::now();
    for k in [n1, n2] {
        lab.wait_for(
            &format!("{}: link0 back for both nodes", k.n.name),
            Duration::from_secs(60),
            || links_are(k, [true, true]),
        )?;
    }
    eprintln!(
        "METRIC two_links: corosync showed link0 down on both nodes {:.2}s after the cut (no fencing, store writable over link1); link0 back {:.2}s after the heal",
        t_noticed.as_secs_f64(),
        t1.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn keel_two_node_split_leaves_exactly_one() -> Result<()> {
    anyhow::ensure!(
        is_root(),
        "the netns lab needs root (network namespaces, corosync, Pacemaker): run the suite as root"
    );
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    // node3: only the QDevice's corosync-qnetd (qdevice_keeps_a_lone_node_quorate)
    let lab = NetnsLab::up(
        3,
        LabOpts {
            link1: true,
            ..LabOpts::new("keelpair")
        },
    )?;
    let r = two_node_scenario(&lab);
    let r = lab.finish(r);
    eprintln!(
        "METRIC netns_keel_two_node_total={:.2}s",
        t0.elapsed().as_secs_f64()
    );
    r
}
