//! Golden files for corosync.conf: typed model → text (exact), text → model (round trip),
//! and every golden accepted by the real corosync parser (`corosync -t`, run in a private
//! network namespace holding the first node's addresses so corosync finds its local node).
//!
//! `KEEL_UPDATE_GOLDEN=1 cargo test -p keel-clusterd --test golden_corosync` rewrites them.

use std::path::{Path, PathBuf};
use std::process::Command;

use clusterd::corosync_conf::{ConfNode, CorosyncConf, LatencyClass, Logging, QDevice};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/corosync")
}

fn node(id: u32, addrs: &[&str]) -> ConfNode {
    ConfNode {
        nodeid: id,
        name: format!("node{id}"),
        addrs: addrs.iter().map(|s| s.to_string()).collect(),
    }
}

fn cases() -> Vec<(&'static str, CorosyncConf)> {
    let mut two = CorosyncConf::new("prod", node(1, &["192.0.2.11"]), LatencyClass::Lan);
    two.nodes.push(node(2, &["192.0.2.12"]));

    let mut three = CorosyncConf::new("prod", node(1, &["192.0.2.11"]), LatencyClass::Lan);
    three.nodes.push(node(2, &["192.0.2.12"]));
    three.nodes.push(node(3, &["192.0.2.13"]));

    let mut two_link = CorosyncConf::new(
        "stretch",
        node(1, &["fd00:10::1", "198.51.100.1"]),
        LatencyClass::Metro,
    );
    two_link
        .nodes
        .push(node(2, &["fd00:10::2", "198.51.100.2"]));
    two_link
        .nodes
        .push(node(3, &["fd00:10::3", "198.51.100.3"]));

    let mut qdev = two.clone();
    qdev.cluster_name = "edge".into();
    qdev.qdevice = Some(QDevice {
        host: "192.0.2.100".into(),
        port: None,
        algorithm: Default::default(),
    });

    let mut single = CorosyncConf::new(
        "lab",
        node(1, &["fd6b:6565:6c00:1::1"]),
        LatencyClass::Local,
    );
    single.join_ms = Some(50);
    single.token_coefficient_ms = Some(0);
    single.logging = Logging {
        logfile: Some("/var/log/cluster/corosync.log".into()),
        to_syslog: false,
    };
    vec![
        ("single-node-lab", single),
        ("two-node", two),
        ("three-node", three),
        ("three-node-two-links", two_link),
        ("two-node-qdevice", qdev),
    ]
}

#[test]
fn corosync_conf_goldens() -> anyhow::Result<()> {
    let update = std::env::var_os("KEEL_UPDATE_GOLDEN").is_some();
    let mut mismatches = vec![];
    for (name, conf) in cases() {
        let text = conf.render()?;
        let path = golden_dir().join(format!("{name}.conf"));
        if update {
            std::fs::write(&path, &text)?;
        }
        let want = std::fs::read_to_string(&path)?;
        if want != text {
            mismatches.push(format!(
                "{name}: rendered text differs from {}:\n{text}",
                path.display()
            ));
        }
        assert_eq!(
            CorosyncConf::parse(&want)?,
            conf,
            "{name}: parse(golden) != model"
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    Ok(())
}

/// Every golden passes `corosync -t` (parse, types and local-node lookup) on this host's
/// corosync. Needs root (network namespace) and corosync installed: without them the test
/// fails and says so (scripts/test.sh installs corosync and runs as root).
#[test]
fn goldens_pass_corosync_t() -> anyhow::Result<()> {
    let have = Command::new("corosync").arg("-v").output().is_ok();
    let root = unsafe_free_is_root();
    anyhow::ensure!(
        have && root,
        "corosync -t needs corosync installed (apt-get install corosync) and root: installed={have}, root={root}"
    );
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("authkey");
    std::fs::write(&key, [7u8; 128])?;
    for (name, mut conf) in cases() {
        conf.keyfile = Some(key.display().to_string());
        conf.logging.logfile = None;
        let f = dir.path().join(format!("{name}.conf"));
        std::fs::write(&f, conf.render()?)?;
        let mut script = String::from("set -e; ip link set lo up; ");
        for a in &conf.nodes[0].addrs {
            let plen = if a.contains(':') { 128 } else { 32 };
            script.push_str(&format!("ip addr add {a}/{plen} dev lo nodad 2>/dev/null || ip addr add {a}/{plen} dev lo; "));
        }
        script.push_str(&format!("exec corosync -t -c {}", f.display()));
        let out = Command::new("unshare")
            .args(["-n", "sh", "-c", &script])
            .output()?;
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{name}: corosync -t refused it: {all}"
        );
        eprintln!("corosync -t accepts {name}");
    }
    Ok(())
}

fn unsafe_free_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}
