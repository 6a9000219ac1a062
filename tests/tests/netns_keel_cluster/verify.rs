//! `keel cluster verify` on the healthy 3-node Keel cluster, then one fault at a time, each
//! reverted before the next: exactly the expected code each time (findings of the healthy run
//! are the baseline). The healthy answer is pinned by a golden file
//! (`verify-healthy.json` next to this file; `KEEL_UPDATE_GOLDEN=1` rewrites it).
//!
//! Faults: stonith disabled (EFENCEOFF), node2's fence device allowed on node2 (its -INFINITY
//! location deleted: EFENCESELF), node2's clock 5 s ahead (ECLOCKSKEW — the namespace nodes
//! share the host's clock, so through hostd's test-only hook `test-clock-offset-ms`, read only
//! under libvirt's test driver), corosync.conf edited on node3 (ECONFDIFF), node2's corosync
//! authkey chmod 0644 (EKEYPERM), the lab's fence agent missing on node3 (EFENCEAGENT; and
//! `keel fence add` of node1's device refused naming node3, the CIB unchanged), a libvirt
//! network a VM on node1 uses missing on node3 (ENETMISSING; host bridges cannot differ here:
//! the nodes share the host's /sys).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use keel_tests::keelnode::KNode;
use keel_tests::netns::NetnsLab;

use super::{api, wait_task};

type Key = (String, String, Option<String>, String);

/// `keel --json cluster verify` on `k`: (exit ok, the report).
fn run(k: &KNode) -> Result<(bool, serde_json::Value)> {
    let o = k.keel(&["--json", "cluster", "verify"])?;
    let v: serde_json::Value = serde_json::from_str(&o.stdout)
        .with_context(|| format!("keel cluster verify: {}{}", o.stdout, o.stderr))?;
    ensure!(
        o.success() == (v["errors"] == 0),
        "exit status {} but {} errors: {}",
        o.status,
        v["errors"],
        o.stderr
    );
    Ok((o.success(), v))
}

fn keys(v: &serde_json::Value) -> BTreeSet<Key> {
    v["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["code"].as_str().unwrap_or("").to_string(),
                        f["severity"].as_str().unwrap_or("").to_string(),
                        f["node"].as_str().map(str::to_string),
                        f["object"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Run verify with a fault in place: it fails, and the findings beyond the healthy ones are
/// all `code` errors, at least one, on `node`.
fn expect(k: &KNode, base: &BTreeSet<Key>, code: &str, node: Option<&str>) -> Result<()> {
    let t = Instant::now();
    let (ok, v) = run(k)?;
    let new: Vec<Key> = keys(&v).difference(base).cloned().collect();
    ensure!(
        !ok,
        "{code}: verify succeeded with the fault in place: {v:#}"
    );
    ensure!(
        !new.is_empty()
            && new
                .iter()
                .all(|(c, s, n, _)| c == code && s == "error" && n.as_deref() == node),
        "{code} on {node:?} expected, the new findings are {new:?}"
    );
    eprintln!(
        "verify found {code} on {node:?} ({:.2}s): {:?}",
        t.elapsed().as_secs_f64(),
        new.iter().map(|x| &x.3).collect::<Vec<_>>()
    );
    Ok(())
}

/// The report with volatile parts normalized: the lab directory.
fn normalized(v: &serde_json::Value, lab: &NetnsLab) -> Result<String> {
    let s = serde_json::to_string_pretty(v)?;
    Ok(s.replace(&lab.dir.display().to_string(), "$LAB") + "\n")
}

pub fn verify_faults(lab: &NetnsLab, n1: &KNode, n2: &KNode, n3: &KNode) -> Result<()> {
    let t0 = Instant::now();
    faults(lab, n1, n2, n3)?;
    eprintln!(
        "METRIC cluster_verify_faults={:.2}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn faults(lab: &NetnsLab, n1: &KNode, n2: &KNode, n3: &KNode) -> Result<()> {
    // healthy: no errors; the golden file pins the whole answer
    let (ok, healthy) = run(n1)?;
    ensure!(ok && healthy["errors"] == 0, "healthy cluster: {healthy:#}");
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns_keel_cluster/verify-healthy.json");
    let got = normalized(&healthy, lab)?;
    if std::env::var_os("KEEL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got)?;
    }
    let want = std::fs::read_to_string(&golden)
        .with_context(|| format!("{} (KEEL_UPDATE_GOLDEN=1 writes it)", golden.display()))?;
    ensure!(
        got == want,
        "the healthy verify answer differs from {}:\n{got}",
        golden.display()
    );
    let base = keys(&healthy);
    eprintln!("{}", n1.keel_ok(&["cluster", "verify"])?);

    // stonith disabled
    let cib = |i: usize, args: &[&str]| -> Result<String> { lab.node(i)?.run_ok(args) };
    cib(
        1,
        &[
            "crm_attribute",
            "--type",
            "crm_config",
            "--name",
            "stonith-enabled",
            "--update",
            "false",
        ],
    )?;
    let r = expect(n1, &base, "EFENCEOFF", None);
    cib(
        1,
        &[
            "crm_attribute",
            "--type",
            "crm_config",
            "--name",
            "stonith-enabled",
            "--update",
            "true",
        ],
    )?;
    r?;

    // node2's device may run on node2: its -INFINITY location is gone
    let loc = "location-fence-node2-avoids-node2";
    cib(
        1,
        &[
            "cibadmin",
            "--delete",
            "--xml-text",
            &format!("<rsc_location id='{loc}'/>"),
        ],
    )?;
    let r = expect(n1, &base, "EFENCESELF", Some("node2"));
    cib(
        1,
        &[
            "cibadmin",
            "--create",
            "--scope",
            "constraints",
            "--xml-text",
            &format!("<rsc_location id='{loc}' rsc='fence-node2' node='node2' score='-INFINITY'/>"),
        ],
    )?;
    r?;

    // node2's clock 5 s ahead (test-only hook, see the header)
    let hook = n2.state.join("test-clock-offset-ms");
    std::fs::write(&hook, "5000\n")?;
    let r = expect(n1, &base, "ECLOCKSKEW", Some("node2"));
    std::fs::remove_file(&hook)?;
    r?;

    // corosync.conf edited on node3
    let conf = lab.node(3)?.dir.join("etc/corosync/corosync.conf");
    let orig = std::fs::read_to_string(&conf)?;
    std::fs::write(&conf, format!("{orig}# edited by hand\n"))?;
    let r = expect(n1, &base, "ECONFDIFF", Some("node3"));
    std::fs::write(&conf, &orig)?;
    r?;

    // node2's corosync authkey readable by everyone
    let key = lab.node(2)?.dir.join("etc/corosync/authkey");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
        let r = expect(n1, &base, "EKEYPERM", Some("node2"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400))?;
        r?;
    }

    // the lab's fence agent missing on node3 (its /usr/sbin overlay detached, lazily: the
    // running daemons keep their binaries), so node3 could not run node1's or node2's device
    let n3node = lab.node(3)?;
    n3node.sh_ok("umount -l /usr/sbin")?;
    let r = n3node
        .sh_ok("! test -e /usr/sbin/fence_keellab")
        .and_then(|_| expect(n1, &base, "EFENCEAGENT", Some("node3")))
        .and_then(|()| {
            // and a device for node1 (which node3 may run) is refused naming node3, nothing changed
            let q = ["cibadmin", "--query", "--scope", "resources"];
            let before = lab.node(1)?.run_ok(&q)?;
            let o = n1.keel(&[
                "fence",
                "add",
                "node1",
                "--agent",
                "fence_keellab",
                "--param",
                &format!("lab_dir={}", lab.dir.display()),
                "--param",
                "action=reboot",
            ])?;
            let msg = format!("{}{}", o.stdout, o.stderr);
            ensure!(
                !o.success()
                    && msg.contains("node3: fence agent fence_keellab is not installed")
                    && msg.contains("nothing was changed"),
                "fence add with node3 lacking the agent: {msg}"
            );
            ensure!(
                lab.node(1)?.run_ok(&q)? == before,
                "the refused fence add changed the CIB"
            );
            eprintln!("fence add refused: {}", msg.trim());
            Ok(())
        });
    n3node.sh_ok(&format!(
        "mount -t overlay keel-lab-sbin -o lowerdir={}/sbin:/usr/sbin /usr/sbin && test -x /usr/sbin/fence_keellab",
        lab.dir.display()
    ))?;
    r?;

    // a libvirt network a VM on node1 uses, missing on node3
    let net = |k: &KNode, node: &str, method: &str| -> Result<()> {
        let (path, body) = match method {
            "POST" => (
                format!("/api/v1/nodes/{node}/networks"),
                Some(
                    serde_json::json!({"name": "verifynet", "kind": "nat", "cidr": "10.98.0.1/24"}),
                ),
            ),
            _ => (format!("/api/v1/nodes/{node}/networks/verifynet"), None),
        };
        let (c, b) = api(k, method, &path, body.as_ref(), None)?;
        ensure!(c == 202, "{method} network verifynet on {node}: {c} {b}");
        let t = wait_task(lab, k, b["upid"].as_str().context("upid")?)?;
        ensure!(t["state"] == "ok", "{method} verifynet on {node}: {t}");
        Ok(())
    };
    for (k, node) in [(n1, "node1"), (n2, "node2"), (n3, "node3")] {
        net(k, node, "POST")?;
    }
    let (c, b) = api(n1, "GET", "/api/v1/nodes/node1/vms/nextid", None, None)?;
    ensure!(c == 200, "nextid: {c} {b}");
    let vmid = b["vmid"].as_u64().context("vmid")?;
    let spec = serde_json::json!({"vmid": vmid, "name": "verify-vm", "memory_mib": 128,
        "nics": [{"network": "verifynet"}]});
    let (c, b) = api(n1, "POST", "/api/v1/nodes/node1/vms", Some(&spec), None)?;
    ensure!(c == 202, "create VM {vmid} on verifynet: {c} {b}");
    let t = wait_task(lab, n1, b["upid"].as_str().context("upid")?)?;
    ensure!(t["state"] == "ok", "create VM {vmid}: {t}");
    let (ok, v) = run(n1)?;
    ensure!(
        ok && keys(&v) == base,
        "the network on every node: the healthy findings expected: {v:#}"
    );
    net(n3, "node3", "DELETE")?;
    let r = expect(n1, &base, "ENETMISSING", Some("node3"));
    let (c, b) = api(
        n1,
        "DELETE",
        &format!("/api/v1/nodes/node1/vms/{vmid}"),
        None,
        None,
    )?;
    ensure!(c == 202, "delete VM {vmid}: {c} {b}");
    let t = wait_task(lab, n1, b["upid"].as_str().context("upid")?)?;
    ensure!(t["state"] == "ok", "delete VM {vmid}: {t}");
    for (k, node) in [(n1, "node1"), (n2, "node2")] {
        net(k, node, "DELETE")?;
    }
    r?;

    // every fault reverted: healthy again
    let (ok, v) = run(n1)?;
    ensure!(
        ok && keys(&v) == base,
        "after reverting every fault, the healthy findings expected: {v:#}"
    );
    Ok(())
}
