//! End to end on the real engine: libvirtd + QEMU (TCG) booting the project's live ISO,
//! driven only through hostd's HTTPS API, checked with an independent client (virsh) and the
//! guest's own serial output.

mod common;

use common::{live_dir, virsh, Hostd};
use serde_json::json;

const MARKER: &str = "KEEL-LIVE: guest booted";

#[test]
fn live_iso_guest_full_lifecycle() {
    // performance graphs sampled every second (docs/metrics.md)
    let mut h = Hostd::start_with_config("metrics_interval_s = 1");
    let (a, b) = (h.id(0), h.id(1));
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    // A host bridge with no address and no uplink: the NIC exists, no traffic can leave.
    let br = format!("{}b", &h.prefix[..h.prefix.len().min(12)]);
    let _ = std::process::Command::new("ip")
        .args(["link", "add", &br, "type", "bridge"])
        .status();
    let name = format!("{}-life", h.prefix);
    let spec = json!({
        "vmid": a, "name": name, "memory_mib": 256,
        "disks": [{"pool": h.pool, "size_mib": 32}],
        "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
        "nics": [{"bridge": br}],
        "boot": ["cdrom", "disk0"],
        // no agent channel: reboot and shutdown go through ACPI (libvirt prefers an agent)
        "guest_agent": false
    });
    let t = h.ok(h.post("/vms?start=true", spec));
    assert_eq!(t.kind, "vmcreate");
    assert!(
        t.upid.contains(&format!(":vmcreate:{a}:root:")),
        "UPID encodes type, target, user: {}",
        t.upid
    );

    // The guest's own serial output proves it runs.
    h.wait_for(
        "the live guest's boot marker on its serial console",
        180,
        || h.serial(a).contains(MARKER),
    );

    // Independent check with virsh: virtio disk and NIC, cache='none', TCG, Keel metadata.
    let (ok, xml) = virsh(&["dumpxml", &name]);
    assert!(ok, "{xml}");
    assert!(
        xml.contains("<domain type='qemu'"),
        "TCG domain expected:\n{xml}"
    );
    assert!(xml.contains("cache='none'"), "{xml}");
    assert!(xml.contains("<target dev='vda' bus='virtio'/>"), "{xml}");
    assert!(xml.contains("<model type='virtio'/>"), "{xml}");
    assert!(
        xml.contains(&format!("<keel:vmid>{a}</keel:vmid>")),
        "{xml}"
    );
    assert!(
        xml.contains("listen='127.0.0.1'"),
        "VNC must listen on localhost only:\n{xml}"
    );

    let st = h.get_json(&format!("/vms/{a}/status/current"));
    assert_eq!(st["state"], "running");
    assert_eq!(st["domain_type"], "qemu");
    assert!(st["cpu_time_ns"].as_u64().unwrap_or(0) > 0, "{st}");
    assert_eq!(st["disks"][0]["dev"], "vda", "{st}");
    assert!(st["uptime_s"].is_u64(), "{st}");
    assert_eq!(st["nics"].as_array().map(Vec::len), Some(1), "{st}");

    check_metrics(&mut h, a);

    // Console: a one-time ticket for this VM opens its VNC stream through the WebSocket proxy.
    let ticket = |vmid: u32| -> serde_json::Value {
        let r = h.post_empty(&format!("/vms/{vmid}/vncproxy"));
        assert_eq!(r.status(), 200);
        r.json().unwrap_or_default()
    };
    let t1 = ticket(a);
    assert_eq!(t1["password"].as_str().map(str::len), Some(8), "{t1}");
    let banner = common::console_open(&h, a, t1["ticket"].as_str().unwrap_or(""), true)
        .unwrap_or_else(|s| panic!("console refused with {s}"));
    assert!(
        banner.starts_with(b"RFB 003."),
        "VNC banner expected, got {banner:?}"
    );
    // The ticket was single-use; no session is refused; another VM's ticket is refused.
    assert_eq!(
        common::console_open(&h, a, t1["ticket"].as_str().unwrap_or(""), true),
        Err(403)
    );
    let t2 = ticket(a);
    // each ticket has its own VNC password, set on the running VNC server with the ticket's
    // expiry; the definition's password is not the one handed out
    let pw = |t: &serde_json::Value| t["password"].as_str().unwrap_or_default().to_string();
    assert_ne!(pw(&t1), pw(&t2));
    let (_, live) = virsh(&["dumpxml", "--security-info", &name]);
    assert!(
        live.contains(&format!("passwd='{}'", pw(&t2))) && live.contains("passwdValidTo="),
        "the live VNC password is the second ticket's:\n{live}"
    );
    let (_, defined) = virsh(&["dumpxml", "--inactive", "--security-info", &name]);
    assert!(
        !defined.contains(&pw(&t1)) && !defined.contains(&pw(&t2)),
        "{defined}"
    );
    assert_eq!(
        common::console_open(&h, a, t2["ticket"].as_str().unwrap_or(""), false),
        Err(401)
    );
    h.ok(h.post(
        "/vms",
        json!({"vmid": b, "name": format!("{}-other", h.prefix), "memory_mib": 64}),
    ));
    assert_eq!(
        common::console_open(&h, b, t2["ticket"].as_str().unwrap_or(""), true),
        Err(403)
    );
    assert_eq!(
        h.post_empty(&format!("/vms/{b}/vncproxy")).status(),
        409,
        "a stopped VM has no console"
    );
    h.ok(h.delete(&format!("/vms/{b}")));
    let next = h.get_json("/vms/nextid")["vmid"].as_u64().unwrap_or(0);
    assert!(next >= 100, "{next}");
    assert_eq!(
        h.get(&format!("/vms/{next}")).status(),
        404,
        "nextid {next} is free"
    );

    // Suspend / resume, checked with virsh.
    h.ok(h.post_empty(&format!("/vms/{a}/status/suspend")));
    assert_eq!(virsh(&["domstate", &name]).1.trim(), "paused");
    assert_eq!(h.state(a), "paused");
    h.ok(h.post_empty(&format!("/vms/{a}/status/resume")));
    assert_eq!(virsh(&["domstate", &name]).1.trim(), "running");

    // Reboot (ACPI): the guest powers off and libvirt starts it again: a second boot marker.
    h.wait_for("ticks before reboot", 60, || {
        h.serial(a).contains("KEEL-LIVE: tick 2")
    });
    h.ok(h.post_empty(&format!("/vms/{a}/status/reboot")));
    h.wait_for("a second boot after reboot", 180, || {
        h.serial(a).matches(MARKER).count() >= 2
    });
    assert_eq!(h.state(a), "running");

    // Hard reset: a third boot.
    h.ok(h.post_empty(&format!("/vms/{a}/status/reset")));
    h.wait_for("a third boot after reset", 180, || {
        h.serial(a).matches(MARKER).count() >= 3
    });

    // Delete refuses while running, with 409 and a message saying what to do.
    let r = h.delete(&format!("/vms/{a}"));
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().unwrap_or_default();
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("stop it"),
        "{body}"
    );

    // ACPI shutdown: the guest handles the power button itself.
    h.wait_for("ticks after reset", 60, || {
        h.serial(a).matches("KEEL-LIVE: tick 2").count() >= 3
    });
    // a VM without the agent channel says so at once, without asking the guest
    let t0 = std::time::Instant::now();
    let ag = h.get_json(&format!("/vms/{a}/agent"));
    assert_eq!(ag["state"], "no-channel", "{ag}");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(2),
        "no-agent answer took {:?}",
        t0.elapsed()
    );
    let t = h.ok(h.post(
        &format!("/vms/{a}/status/shutdown"),
        json!({"timeout_s": 120}),
    ));
    assert_eq!(virsh(&["domstate", &name]).1.trim(), "shut off");
    assert!(
        h.serial(a).contains("KEEL-LIVE: power button"),
        "guest saw the ACPI button"
    );
    let log: Vec<serde_json::Value> =
        serde_json::from_value(h.get_json(&format!("/tasks/{}/log", t.upid))).unwrap_or_default();
    assert!(
        log.iter()
            .any(|l| l["line"].as_str().unwrap_or("").contains("powered off")),
        "{log:?}"
    );

    // Start and hard stop.
    h.ok(h.post_empty(&format!("/vms/{a}/status/start")));
    assert_eq!(virsh(&["domstate", &name]).1.trim(), "running");
    let r = h.post_empty(&format!("/vms/{a}/status/start"));
    assert_eq!(r.status(), 409, "starting a running VM is a conflict");
    h.ok(h.post_empty(&format!("/vms/{a}/status/stop")));
    assert_eq!(virsh(&["domstate", &name]).1.trim(), "shut off");

    // Delete with its volumes; the ISO stays.
    let vols = h.get_json(&format!("/storage/{}/content", h.pool));
    assert!(
        vols.to_string().contains(&format!("vm-{a}-disk-0.qcow2")),
        "{vols}"
    );
    h.ok(h.delete(&format!("/vms/{a}?purge_volumes=true")));
    assert!(!virsh(&["dominfo", &name]).0, "domain must be gone");
    let vols = h.get_json(&format!("/storage/{}/content", h.pool));
    assert!(
        !vols.to_string().contains(&format!("vm-{a}-disk-0.qcow2")),
        "{vols}"
    );
    assert!(vols.to_string().contains("keel-live.iso"), "{vols}");
    assert_eq!(h.get(&format!("/vms/{a}")).status(), 404);
    // the deleted VM's graphs went with it
    let store = hostd::metrics::store::Store::open(&h.dir.join("state/metrics.db"))
        .unwrap_or_else(|e| panic!("metrics.db: {e}"));
    assert_eq!(store.rows(&format!("vm/{a}")).ok(), Some(0));

    // Every step is in the task list.
    let tasks = h
        .get_json(&format!("/tasks?target={a}&limit=50"))
        .to_string();
    for kind in [
        "vmcreate",
        "vmsuspend",
        "vmresume",
        "vmreboot",
        "vmreset",
        "vmshutdown",
        "vmstart",
        "vmstop",
        "vmdelete",
    ] {
        assert!(
            tasks.contains(&format!("\"kind\":\"{kind}\"")),
            "no {kind} task in {tasks}"
        );
    }
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &br])
        .status();
}

/// The performance graphs of the running guest (TCG: booting and ticking costs CPU) and of
/// the node, through the API; kept across a restart of hostd; a bad range is a 400.
fn check_metrics(h: &mut Hostd, vmid: u32) {
    let t0 = std::time::Instant::now();
    let f = |p: &serde_json::Value, k: &str| p[k].as_f64();
    let mut pts = Vec::new();
    h.wait_for("VM samples with CPU in the hour graph", 30, || {
        let m = h.get_json(&format!("/vms/{vmid}/metrics?range=hour"));
        pts = m["points"].as_array().cloned().unwrap_or_default();
        pts.iter().any(|p| f(p, "cpu").unwrap_or(0.0) > 0.0)
    });
    for p in &pts {
        let cpu = f(p, "cpu").unwrap_or(0.0);
        assert!(
            (0.0..=1.0).contains(&cpu),
            "CPU is a share of the vCPUs: {p}"
        );
        assert_eq!(f(p, "mem_total"), Some(256.0 * 1024.0 * 1024.0), "{p}");
        assert!(f(p, "mem_used").unwrap_or(0.0) > 0.0, "{p}");
        for k in ["disk_read", "disk_write", "net_in", "net_out"] {
            assert!(f(p, k).unwrap_or(0.0) >= 0.0, "{k}: {p}");
        }
        assert_eq!(
            p["t"].as_i64().unwrap_or(1) % 30,
            0,
            "hour points are 30 s apart: {p}"
        );
    }
    let m = h.get_json(&format!("/vms/{vmid}/metrics"));
    assert_eq!(
        (m["range"].as_str(), m["step_s"].as_u64()),
        (Some("hour"), Some(30)),
        "{m}"
    );
    assert_eq!(m["interval_s"].as_u64(), Some(1), "{m}");
    let month = h.get_json(&format!("/vms/{vmid}/metrics?range=month"));
    let n = month["points"].as_array().map_or(0, Vec::len);
    assert!((1..=2).contains(&n), "one or two 2-hour points: {month}");
    let node = h.get_json("/metrics?range=day");
    let last = node["points"]
        .as_array()
        .and_then(|p| p.last().cloned())
        .unwrap_or_default();
    let total = f(&last, "mem_total").unwrap_or(0.0);
    assert!(
        total > 0.0 && f(&last, "mem_used").unwrap_or(-1.0) < total,
        "{node}"
    );
    assert!(
        f(&last, "cpu").unwrap_or(0.0) > 0.0,
        "the node works for its guest: {node}"
    );
    // a bad range: 400 naming the valid ones
    let r = h.get(&format!("/vms/{vmid}/metrics?range=year"));
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().unwrap_or_default();
    assert!(
        body.to_string()
            .contains("use one of hour, day, week, month"),
        "{body}"
    );
    // the store is on disk: a restarted hostd serves the same history and keeps sampling
    let before = h.get_json(&format!("/vms/{vmid}/metrics?range=day"))["points"][0].clone();
    h.crash_and_restart();
    let after = h.get_json(&format!("/vms/{vmid}/metrics?range=day"))["points"][0].clone();
    assert_eq!(before["t"], after["t"], "{before} vs {after}");
    assert!(after["cpu"].as_f64().is_some(), "{after}");
    eprintln!("metrics checks took {:.1}s", t0.elapsed().as_secs_f64());
}

#[test]
fn config_update_pending_until_cold_boot_and_adopting_foreign_domains() {
    let h = Hostd::start();
    let (c, d, e) = (h.id(0), h.id(1), h.id(2));
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    let name = format!("{}-cfg", h.prefix);
    let spec = json!({
        "vmid": c, "name": name, "memory_mib": 256, "balloon_mib": 192, "vcpus": 1, "max_vcpus": 2,
        "cdrom": {"pool": h.pool, "volume": "keel-live.iso"}
    });
    h.ok(h.post("/vms?start=true", spec.clone()));
    h.wait_for("boot marker", 180, || h.serial(c).contains(MARKER));

    // Add a disk and change the on_crash policy while running: the virtio disk is hot-plugged
    // (docs/hotplug.md), on_crash is pending until a cold boot.
    let mut new = spec.clone();
    new["disks"] = json!([{"pool": h.pool, "size_mib": 16}]);
    new["on_crash"] = json!("restart");
    let t = h.ok(h.put(&format!("/vms/{c}"), new));
    let log = h.get_json(&format!("/tasks/{}/log", t.upid)).to_string();
    assert!(
        log.contains("pending until the next cold boot") && log.contains("attached disk"),
        "{log}"
    );
    let cfg = h.get_json(&format!("/vms/{c}"));
    assert_eq!(
        cfg["spec"]["disks"][0]["volume"],
        format!("vm-{c}-disk-0.qcow2").as_str(),
        "{cfg}"
    );
    // no explicit boot order: the default one (disks first) now starts with the new disk, a
    // boot-order change that only a cold boot applies
    assert_eq!(cfg["pending"], json!(["boot", "on_crash"]), "{cfg}");
    assert_eq!(
        h.get_json(&format!("/vms/{c}/status/current"))["pending_changes"],
        true
    );
    h.ok(h.post_empty(&format!("/vms/{c}/status/stop")));
    h.ok(h.post_empty(&format!("/vms/{c}/status/start")));
    assert_eq!(h.get_json(&format!("/vms/{c}"))["pending"], json!([]));
    let (_, xml) = virsh(&["dumpxml", &name]);
    assert!(xml.contains(&format!("vm-{c}-disk-0.qcow2")), "{xml}");
    h.ok(h.post_empty(&format!("/vms/{c}/status/stop")));
    h.ok(h.delete(&format!("/vms/{c}?purge_volumes=true")));

    // A domain defined outside Keel is listed without a vmid, then adopted.
    let foreign = format!("{}-foreign", h.prefix);
    let xml = format!("<domain type='qemu'><name>{foreign}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>");
    let f = h.dir.join("foreign.xml");
    std::fs::write(&f, xml).unwrap_or_else(|e| panic!("{e}"));
    assert!(virsh(&["define", &f.display().to_string()]).0);
    let list = h.get_json("/vms");
    let entry = list
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == foreign.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(entry["managed"], false, "{list}");
    assert_eq!(entry["vmid"], serde_json::Value::Null);
    h.ok(h.post("/vms/adopt", json!({"name": foreign, "vmid": d})));
    assert_eq!(h.get_json(&format!("/vms/{d}"))["managed"], true);
    // adopting it again is refused before any task exists
    let r = h.post("/vms/adopt", json!({"name": foreign, "vmid": e}));
    assert_eq!(r.status(), 409);
    h.ok(h.delete(&format!("/vms/{d}")));
}

/// Direct kernel boot (`VmSpec.kernel`): the live guest's own kernel and initramfs, uploaded as
/// volumes, boot with no ISO and no boot loader; the volumes are in use while a VM names them,
/// and a missing one is refused before a task exists.
#[test]
fn direct_kernel_boot_from_pool_volumes() {
    let h = Hostd::start();
    let k = h.id(0);
    h.upload(&live_dir().join("vmlinuz"), "vmlinuz-live");
    h.upload(&live_dir().join("initrd.gz"), "initrd-live.gz");
    let name = format!("{}-kern", h.prefix);
    let mut spec = json!({
        "vmid": k, "name": name, "memory_mib": 160, "guest_agent": false, "vnc": false,
        "kernel": {"pool": h.pool, "kernel": "vmlinuz-live", "initrd": "initrd-missing.gz",
                   "cmdline": "console=ttyS0,115200 quiet"}
    });
    let r = h.post("/vms", spec.clone());
    assert_eq!(r.status(), 400);
    let body = r.text().unwrap_or_default();
    assert!(
        body.contains("kernel.initrd") && body.contains("initrd-missing.gz"),
        "{body}"
    );
    assert!(!virsh(&["dominfo", &name]).0, "a refused VM was defined");

    spec["kernel"]["initrd"] = json!("initrd-live.gz");
    h.ok(h.post("/vms?start=true", spec.clone()));
    h.wait_for("the directly booted guest's marker", 180, || {
        h.serial(k).contains(MARKER)
    });
    let (_, xml) = virsh(&["dumpxml", &name]);
    for want in [
        "/vmlinuz-live</kernel>",
        "/initrd-live.gz</initrd>",
        "<cmdline>console=ttyS0,115200 quiet</cmdline>",
    ] {
        assert!(xml.contains(want), "{want} missing:\n{xml}");
    }
    let cfg = h.get_json(&format!("/vms/{k}"));
    assert_eq!(cfg["spec"]["kernel"], spec["kernel"], "{cfg}");
    // the kernel is in use: deleting its volume is refused
    let r = h.delete(&format!("/storage/{}/content/vmlinuz-live", h.pool));
    assert_eq!(r.status(), 409, "{}", r.text().unwrap_or_default());
    // the directly booted guest handles ACPI like the ISO-booted one (HA stops rely on it)
    h.ok(h.post(
        &format!("/vms/{k}/status/shutdown"),
        json!({"timeout_s": 60}),
    ));
    assert_eq!(virsh(&["domstate", &name]).1.trim(), "shut off");
    assert!(
        h.serial(k).contains("KEEL-LIVE: power button"),
        "the guest saw the ACPI button"
    );
    h.ok(h.delete(&format!("/vms/{k}")));
    h.ok(h.delete(&format!("/storage/{}/content/vmlinuz-live", h.pool)));
}
