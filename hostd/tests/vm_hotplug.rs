//! Hot-plug end to end on the real engine (libvirtd + QEMU, TCG), driven only through hostd's
//! API (PUT of the VM's spec while it runs) and seen from inside the live guest, whose serial
//! console prints `disks: vda=… vdb=… net=… cpus=…` whenever its devices change: a virtio disk
//! and a NIC attached live, a vCPU hot-added, the balloon lowered (libvirt's live
//! currentMemory), disk and NIC detached live; a SATA disk stays pending with its reason.
//! One boot of the live ISO.

mod common;

use std::time::Instant;

use common::{live_dir, virsh, Hostd};
use serde_json::{json, Value};

/// The last device line the guest printed: `disks: vda=65536 net=lo cpus=0`.
fn last_devices(serial: &str) -> String {
    serial
        .lines()
        .rev()
        .find_map(|l| l.split("KEEL-LIVE: disks:").nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn has_dev(line: &str, dev: &str) -> bool {
    line.split_whitespace()
        .any(|w| w.starts_with(&format!("{dev}=")))
}

fn nets(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("net="))
        .unwrap_or("")
        .to_string()
}

/// A host bridge deleted when the test ends, passed or not.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

#[test]
fn disks_and_nics_hot_plug_vcpu_and_balloon_live() {
    let t0 = Instant::now();
    let h = Hostd::start();
    let a = h.id(0);
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    // A host bridge with no address and no uplink: the NIC exists, no traffic can leave.
    let br = format!("{}h", &h.prefix[..h.prefix.len().min(12)]);
    let st = std::process::Command::new("ip")
        .args(["link", "add", &br, "type", "bridge"])
        .status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "ip link add {br} type bridge failed (root needed)"
    );
    let _bridge = Bridge(br.clone());
    let name = format!("{}-hp", h.prefix);
    let spec = json!({
        "vmid": a, "name": name, "memory_mib": 256, "vcpus": 1, "max_vcpus": 2,
        "disks": [{"pool": h.pool, "size_mib": 32}],
        "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
        "boot": ["cdrom", "disk0"]
    });
    h.ok(h.post("/vms?start=true", spec));
    h.wait_for("the live guest's first device line", 180, || {
        has_dev(&last_devices(&h.serial(a)), "vda")
    });
    let booted = t0.elapsed().as_secs_f64();
    let first = last_devices(&h.serial(a));
    assert!(
        !has_dev(&first, "vdb") && !nets(&first).contains("eth"),
        "{first}"
    );

    let config = || h.get_json(&format!("/vms/{a}"));
    let no_pending = |what: &str| {
        let c = config();
        assert_eq!(c["pending"], json!([]), "{what}: {c}");
        let s = h.get_json(&format!("/vms/{a}/status/current"));
        assert_eq!(s["pending_changes"], json!(false), "{what}: {s}");
    };
    let log = |upid: &str| -> String { h.get_json(&format!("/tasks/{upid}/log")).to_string() };
    let put = |spec: &Value| h.ok(h.put(&format!("/vms/{a}"), spec.clone()));

    // 1. a second virtio qcow2 disk, attached live
    let mut s = config()["spec"].clone();
    s["disks"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("no disks in the spec"))
        .push(json!({"pool": h.pool, "size_mib": 16}));
    let t = put(&s);
    assert!(log(&t.upid).contains("attached disk"), "{}", log(&t.upid));
    h.wait_for("vdb in the guest", 30, || {
        has_dev(&last_devices(&h.serial(a)), "vdb")
    });
    assert!(
        last_devices(&h.serial(a)).contains("vdb=32768"),
        "16 MiB = 32768 sectors: {}",
        last_devices(&h.serial(a))
    );
    no_pending("after the disk attach");

    // 2. a NIC, attached live
    let mut s = config()["spec"].clone();
    s["nics"] = json!([{"bridge": br}]);
    let t = put(&s);
    assert!(log(&t.upid).contains("attached NIC"), "{}", log(&t.upid));
    h.wait_for("a NIC in the guest", 30, || {
        nets(&last_devices(&h.serial(a))).contains("eth")
    });
    no_pending("after the NIC attach");

    // 3. a vCPU hot-added (max_vcpus 2)
    let mut s = config()["spec"].clone();
    s["vcpus"] = json!(2);
    put(&s);
    h.wait_for("cpus=0-1 in the guest", 30, || {
        last_devices(&h.serial(a)).ends_with("cpus=0-1")
    });
    no_pending("after the vCPU hot-add");

    // 4. the balloon lowered: libvirt's live currentMemory follows
    let mut s = config()["spec"].clone();
    s["balloon_mib"] = json!(192);
    put(&s);
    h.wait_for("live currentMemory 192 MiB", 30, || {
        let (_, xml) = virsh(&["dumpxml", &name]);
        xml.contains("<currentMemory unit='KiB'>196608</currentMemory>")
    });
    no_pending("after the balloon change");

    // 5. the second disk and the NIC detached live
    let mut s = config()["spec"].clone();
    s["disks"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("no disks in the spec"))
        .truncate(1);
    s["nics"] = json!([]);
    let t = put(&s);
    let l = log(&t.upid);
    assert!(l.contains("detached (the guest released it"), "{l}");
    h.wait_for("vdb and the NIC gone from the guest", 30, || {
        let d = last_devices(&h.serial(a));
        has_dev(&d, "vda") && !has_dev(&d, "vdb") && !nets(&d).contains("eth")
    });
    no_pending("after the detach");
    let (_, xml) = virsh(&["dumpxml", &name]);
    assert!(
        !xml.contains("<target dev='vdb'") && !xml.contains("<interface"),
        "{xml}"
    );

    // 6. a SATA disk cannot be hot-plugged: saved, pending, with the reason in the task
    let mut s = config()["spec"].clone();
    s["disks"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("no disks in the spec"))
        .push(json!({"pool": h.pool, "size_mib": 8, "bus": "sata"}));
    let t = put(&s);
    let l = log(&t.upid);
    assert!(l.contains("the sata bus has no hot-plug"), "{l}");
    assert_eq!(config()["pending"], json!(["disks"]), "{}", config());

    // stop and delete cleanly
    h.ok(h.post_empty(&format!("/vms/{a}/status/stop")));
    h.ok(h.delete(&format!("/vms/{a}?purge_volumes=true")));
    let (exists, _) = virsh(&["dominfo", &name]);
    assert!(!exists, "domain {name} still defined");
    eprintln!(
        "vm_hotplug: boot {booted:.1}s, total {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
