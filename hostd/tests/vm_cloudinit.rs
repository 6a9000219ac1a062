//! cloud-init end to end on the real engine (libvirtd + QEMU, TCG) with Debian's own cloud-init:
//! a debootstrap'd bookworm guest (`iso/cloud-guest/build.sh`, cached) boots from Keel's seed
//! (NoCloud, a CD labelled cidata) and its `keel-ci-report` unit prints on the serial console
//! what cloud-init configured: host name, the user's SSH key and password hash, the static
//! address, gateway and DNS server, and cloud-init's own result (no errors). The settings are
//! then changed through the API; after a cold boot the guest shows the new ones (the seed was
//! regenerated with a new instance-id). Bad settings are refused with the field named and
//! nothing created; the seed volume goes with the VM.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::{repo_root, Hostd};
use serde_json::{json, Value};

/// Build (or take from cache) the cloud-init test guest; returns its directory.
fn guest_dir() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("iso/cloud-guest/build.sh"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run iso/cloud-guest/build.sh: {e}"));
    assert!(
        out.status.success(),
        "iso/cloud-guest/build.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    PathBuf::from(dir)
}

/// A host bridge deleted when the test ends, passed or not.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// The `KEEL-CI` lines of boot number `n` (0-based) in the serial log.
fn report(serial: &str, n: usize) -> Option<Vec<String>> {
    let boots: Vec<&str> = serial.split("KEEL-CI-DONE").collect();
    if boots.len() <= n + 1 {
        return None;
    }
    Some(
        boots[n]
            .lines()
            .filter_map(|l| l.split_once("KEEL-CI ").map(|(_, r)| r.trim().to_string()))
            .collect(),
    )
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l == want)
}

fn tool(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn debian_cloud_init_applies_keels_seed_and_a_changed_one() {
    let t0 = Instant::now();
    let guest = guest_dir();
    let built = t0.elapsed().as_secs_f64();
    let h = Hostd::start();
    let a = h.id(0);
    h.upload(&guest.join("rootfs.qcow2"), "ci-root.qcow2");
    h.upload(&guest.join("boot.iso"), "ci-boot.iso");
    let br = format!("{}c", &h.prefix[..h.prefix.len().min(12)]);
    let st = Command::new("ip")
        .args(["link", "add", &br, "type", "bridge"])
        .status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "ip link add {br} failed (root needed)"
    );
    let _bridge = Bridge(br.clone());

    let keyfile = h.dir.join("ci_key");
    tool(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci@keel", "-f"])
            .arg(&keyfile),
    );
    let key = std::fs::read_to_string(keyfile.with_extension("pub"))
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_string();
    let hash =
        tool(Command::new("openssl").args(["passwd", "-6", "-salt", "keelsalt", "ci-pass-1"]));

    let name = format!("{}-ci", h.prefix);
    let spec = |ci: Value| {
        json!({
            "vmid": a, "name": name, "memory_mib": 512,
            "disks": [{"pool": h.pool, "volume": "ci-root.qcow2"}],
            "cdrom": {"pool": h.pool, "volume": "ci-boot.iso"},
            "boot": ["cdrom", "disk0"],
            "nics": [{"bridge": br}],
            "cloud_init": ci,
        })
    };

    // Bad settings: 400 naming the field, before any task; no VM, no seed.
    for (ci, field) in [
        (
            json!({"user": "ops", "password_hash": "ci-pass-1"}),
            "cloud_init.password_hash",
        ),
        (
            json!({"ssh_keys": ["ssh-ed25519 AAAA"]}),
            "cloud_init.ssh_keys[0]",
        ),
        (
            json!({"ipconfig": [{"mode": "dhcp"}, {"mode": "dhcp"}]}),
            "cloud_init.ipconfig",
        ),
        (
            json!({"ipconfig": [{"mode": "static", "address": "192.0.2.10/24", "gateway": "198.51.100.1"}]}),
            "cloud_init.ipconfig[0].gateway",
        ),
        (json!({"pool": "no-such-pool"}), "cloud_init.pool"),
        (json!({"user_data": "users: []"}), "cloud_init.user_data"),
    ] {
        let r = h.post("/vms", spec(ci.clone()));
        assert_eq!(r.status(), 400, "{ci}");
        let body: Value = r.json().unwrap_or_default();
        assert_eq!(body["error"]["field"], field, "{ci}: {body}");
    }
    assert_eq!(h.get(&format!("/vms/{a}")).status(), 404);
    let doc: Value = h
        .client
        .get(h.url("/api/v1/openapi.json"))
        .header("Authorization", format!("KeelAPIToken {}", h.token))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("openapi.json: {e}"));
    for schema in ["CloudInitSpec", "IpConfig"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "the OpenAPI document lacks {schema}"
        );
    }

    let first = json!({
        "hostname": "ci-guest-1",
        "user": "ops",
        "password_hash": hash,
        "ssh_keys": [key],
        "ipconfig": [{"mode": "static", "address": "192.0.2.10/24", "gateway": "192.0.2.1"}],
        "dns": ["192.0.2.53"],
    });
    h.ok(h.post("/vms?start=true", spec(first.clone())));
    let cfg = h.get_json(&format!("/vms/{a}"));
    assert_eq!(
        cfg["spec"]["cloud_init"], first,
        "settings round-trip: {cfg}"
    );
    let seed = format!("vm-{a}-cloudinit.iso");
    let vols = h.get_json(&format!("/storage/{}/content", h.pool));
    let v = vols
        .as_array()
        .and_then(|v| v.iter().find(|x| x["name"] == seed.as_str()))
        .unwrap_or_else(|| panic!("no {seed} in the pool: {vols}"));
    assert_eq!(v["used_by"], json!([format!("VM {a} ({name})")]), "{v}");

    let seed1 = h.get_json(&format!("/vms/{a}/cloud-init"));
    assert!(
        seed1["network_config"]
            .as_str()
            .is_some_and(|n| n.contains("192.0.2.10/24"))
            && seed1["user_data"]
                .as_str()
                .is_some_and(|u| u.starts_with("#cloud-config") && u.contains(&key)),
        "the seed as Keel reports it: {seed1}"
    );
    h.wait_for("the guest's first cloud-init report", 600, || {
        report(&h.serial(a), 0).is_some()
    });
    let boot1 = t0.elapsed().as_secs_f64();
    let r = report(&h.serial(a), 0).unwrap_or_default();
    for want in [
        "hostname=ci-guest-1".to_string(),
        format!("key ops={key}"),
        format!("shadow ops={hash}"),
        "addr eth0=192.0.2.10/24".to_string(),
        "gateway=192.0.2.1".to_string(),
        "dns=192.0.2.53".to_string(),
    ] {
        assert!(has(&r, &want), "the guest does not report {want:?}: {r:#?}");
    }
    let result = r
        .iter()
        .find(|l| l.starts_with("result="))
        .cloned()
        .unwrap_or_default();
    assert!(
        result.contains(r#""errors":[]"#),
        "cloud-init reported errors: {result}"
    );

    // Changed settings: the seed is rewritten at once (the running guest is not touched);
    // after a cold boot cloud-init sees a new instance and applies them.
    let mut s = h.get_json(&format!("/vms/{a}"))["spec"].clone();
    s["cloud_init"]["hostname"] = json!("ci-guest-2");
    s["cloud_init"]["ipconfig"] =
        json!([{"mode": "static", "address": "192.0.2.20/24", "gateway": "192.0.2.1"}]);
    let t = h.ok(h.put(&format!("/vms/{a}"), s));
    let log = h.get_json(&format!("/tasks/{}/log", t.upid)).to_string();
    assert!(log.contains("when it next starts"), "{log}");
    let cfg = h.get_json(&format!("/vms/{a}"));
    assert_eq!(
        cfg["pending"],
        json!(["cloud_init"]),
        "the running guest keeps its seed: {cfg}"
    );
    h.ok(h.post_empty(&format!("/vms/{a}/status/stop")));
    h.ok(h.post_empty(&format!("/vms/{a}/status/start")));
    h.wait_for("the guest's second cloud-init report", 600, || {
        report(&h.serial(a), 1).is_some()
    });
    let boot2 = t0.elapsed().as_secs_f64() - boot1;
    let r = report(&h.serial(a), 1).unwrap_or_default();
    for want in [
        "hostname=ci-guest-2".to_string(),
        "addr eth0=192.0.2.20/24".to_string(),
        format!("key ops={key}"),
    ] {
        assert!(
            has(&r, &want),
            "after the change the guest does not report {want:?}: {r:#?}"
        );
    }

    let seed2 = h.get_json(&format!("/vms/{a}/cloud-init"));
    assert_ne!(
        seed1["instance_id"], seed2["instance_id"],
        "changed settings must be a new instance for cloud-init"
    );

    // Turned off: the seed CD-ROM and its volume go, the seed endpoint says there is none.
    h.ok(h.post_empty(&format!("/vms/{a}/status/stop")));
    let mut s = h.get_json(&format!("/vms/{a}"))["spec"].clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("cloud_init");
    }
    h.ok(h.put(&format!("/vms/{a}"), s));
    assert_eq!(h.get(&format!("/vms/{a}/cloud-init")).status(), 404);
    let vols = h
        .get_json(&format!("/storage/{}/content", h.pool))
        .to_string();
    assert!(!vols.contains(&seed), "{seed} outlived cloud-init: {vols}");
    let (_, xml) = common::virsh(&["dumpxml", &name]);
    assert!(!xml.contains("cloudinit"), "the seed CD-ROM stayed: {xml}");

    // The seed goes with the VM: on again, then the VM deleted.
    let mut s = h.get_json(&format!("/vms/{a}"))["spec"].clone();
    s["cloud_init"] = json!({});
    h.ok(h.put(&format!("/vms/{a}"), s));
    let vols = h
        .get_json(&format!("/storage/{}/content", h.pool))
        .to_string();
    assert!(
        vols.contains(&seed),
        "no seed after turning cloud-init on again: {vols}"
    );
    h.ok(h.delete(&format!("/vms/{a}")));
    let vols = h
        .get_json(&format!("/storage/{}/content", h.pool))
        .to_string();
    assert!(!vols.contains(&seed), "{seed} outlived its VM: {vols}");
    eprintln!(
        "vm_cloudinit: guest image {built:.0}s, first boot to report {:.0}s, second {boot2:.0}s, total {:.0}s",
        boot1 - built,
        t0.elapsed().as_secs_f64()
    );
}
