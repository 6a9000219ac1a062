//! Bad input is refused with 400 (a field and a message) before any task exists, on a real
//! hostd + libvirtd: adoption of vmid 0 or of a missing domain, NAT subnets libvirt would
//! refuse or that are not routable, a VM on a libvirt network that is missing or not active,
//! power operations with the documented `null` body, and
//! integers written as `970.0`.

mod common;

use common::Hostd;
use serde_json::{json, Value};

fn answer(r: reqwest::blocking::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

#[test]
fn refused_before_a_task_exists() {
    let h = Hostd::start();
    let tasks_before = h.get_json("/tasks").as_array().map(Vec::len).unwrap_or(0);
    let field = |r: reqwest::blocking::Response| {
        let (s, v) = answer(r);
        assert_eq!(s, 400, "{v}");
        (
            v["error"]["field"].as_str().unwrap_or_default().to_string(),
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let ghost = format!("{}-ghost", h.prefix);

    // adoption
    let (f, m) = field(h.post("/vms/adopt", json!({"name": ghost, "vmid": 0})));
    assert_eq!(f, "vmid");
    assert!(m.contains("out of range"), "{m}");
    let (f, m) = field(h.post("/vms/adopt", json!({"name": ghost, "vmid": h.id(1)})));
    assert_eq!(f, "name");
    assert!(m.contains("no libvirt domain named"), "{m}");
    // 970.0 is an integer (here: a valid vmid, so the missing domain is what is refused)
    let (f, _) = field(h.post("/vms/adopt", json!({"name": ghost, "vmid": 970.0})));
    assert_eq!(f, "name");
    let (f, m) = field(h.post("/vms/adopt", json!({"name": ghost, "vmid": 970.5})));
    assert_eq!(
        (f.as_str(), m.contains("floating point")),
        ("vmid", true),
        "{m}"
    );

    // NAT networks
    for (cidr, words) in [
        ("10.0.0.1/8", "use a prefix of 15 to 30"),
        ("10.96.0.1/14", "use a prefix of 15 to 30"),
        ("127.1.0.1/24", "loopback"),
        ("224.0.0.1/24", "multicast"),
        ("0.0.0.1/24", "unspecified"),
        ("169.254.3.1/24", "link-local"),
    ] {
        let name = format!("{}-n", h.prefix);
        let (f, m) = field(h.post(
            "/networks",
            json!({"name": name, "kind": "nat", "cidr": cidr}),
        ));
        assert_eq!(f, "cidr", "{cidr}");
        assert!(m.contains(words), "{cidr}: {m}");
    }

    // a VM on a libvirt network that is defined but not active (the state Debian leaves
    // `default` in) or that does not exist: refused at create, naming the network and the fix
    let off = format!("{}-off", h.prefix);
    let xml = std::env::temp_dir().join(format!("{off}.xml"));
    std::fs::write(
        &xml,
        format!(
            "<network><name>{off}</name><bridge name='ko{}'/></network>",
            std::process::id() % 100_000
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (ok, out) = common::virsh(&["net-define", &xml.to_string_lossy()]);
    let _ = std::fs::remove_file(&xml);
    assert!(ok, "virsh net-define: {out}");
    let vm = |net: &str| {
        json!({"vmid": h.id(3), "name": format!("{}-net", h.prefix), "memory_mib": 64,
               "nics": [{"network": net}]})
    };
    let (f, m) = field(h.post("/vms", vm(&off)));
    assert_eq!(f, "nics[0].network");
    assert!(
        m.contains(&format!("{off:?} is not active"))
            && m.contains(&format!("virsh net-start {off}")),
        "{m}"
    );
    let (f, m) = field(h.post("/vms", vm(&ghost)));
    assert_eq!(f, "nics[0].network");
    assert!(m.contains("does not exist"), "{m}");

    // power: a null body is the documented "no body"; the VM does not exist, so 404 (not 400)
    let vmid = h.id(2);
    for op in ["start", "shutdown", "stop"] {
        let r = h
            .client
            .post(h.node_url(&format!("/vms/{vmid}/status/{op}")))
            .header("Authorization", format!("KeelAPIToken {}", h.token))
            .header("Content-Type", "application/json")
            .body("null")
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        let (s, v) = answer(r);
        assert_eq!(s, 404, "{op} with a null body: {v}");
    }

    let tasks_after = h.get_json("/tasks").as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(tasks_before, tasks_after, "no task was started");
}

/// A /15, the largest subnet whose derived DHCP range libvirt accepts, is created for real.
#[test]
fn the_largest_nat_subnet_libvirt_accepts() {
    let h = Hostd::start();
    let name = format!("{}-w", h.prefix);
    // a subnet unlikely to be used on the host: 10.(200..254 by pid).0.0/15
    let second = 200 + 2 * (std::process::id() % 27);
    let cidr = format!("10.{second}.0.1/15");
    let t = h.task(h.post(
        "/networks",
        json!({"name": name, "kind": "nat", "cidr": cidr, "bridge": format!("kw{}", std::process::id() % 100_000)}),
    ));
    assert_eq!(
        t.state,
        keel_api::task::TaskState::Ok,
        "{cidr}: {:?}",
        t.message
    );
    h.ok(h.delete(&format!("/networks/{name}")));
}
