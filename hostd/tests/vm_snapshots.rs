//! Snapshots and disk growth end to end on the real engine (libvirtd + QEMU, TCG), driven only
//! through hostd's API: the live guest records ticks on a qcow2 scratch disk, and every
//! rollback is checked by the disk's content (read from the pool's image with qemu-img while
//! the VM is stopped) and, for the memory snapshot, by the running guest carrying on from the
//! tick it had reached (serial console). Independent checks with virsh.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{live_dir, scratch_image, scratch_ticks, virsh, Hostd};
use serde_json::{json, Value};

/// The last `KEEL-LIVE: tick N disk M` line of `text`: `(N, M)`.
fn last_tick(text: &str) -> Option<(u32, u32)> {
    text.lines().rev().find_map(|l| {
        let rest = l.split("KEEL-LIVE: tick ").nth(1)?;
        let mut it = rest.split_whitespace();
        let n = it.next()?.parse().ok()?;
        (it.next()? == "disk").then_some(())?;
        Some((n, it.next()?.parse().ok()?))
    })
}

/// The first tick line after byte `from` of the serial log.
fn first_tick_after(h: &Hostd, vmid: u32, from: usize) -> Option<(u32, u32)> {
    let s = h.serial(vmid);
    let tail = s.get(from..)?;
    tail.lines().find_map(last_tick)
}

fn err_of(r: reqwest::blocking::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap_or_default();
    (
        status,
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn snapshot_tree_rollbacks_and_live_grow() {
    let t0 = Instant::now();
    let h = Hostd::start();
    let (a, b) = (h.id(0), h.id(1));
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    let img = scratch_image(&h.dir, "scratch.qcow2", 64);
    h.upload(&img, "scratch.qcow2");
    let pools = h.get_json("/storage");
    let pool_path = pools
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == h.pool.as_str()))
        .and_then(|p| p["path"].as_str())
        .unwrap_or_else(|| panic!("pool {} not listed: {pools}", h.pool))
        .to_string();
    let disk = PathBuf::from(&pool_path).join("scratch.qcow2");
    let name = format!("{}-snap", h.prefix);
    let spec = json!({
        "vmid": a, "name": name, "memory_mib": 256,
        "disks": [{"pool": h.pool, "volume": "scratch.qcow2", "format": "qcow2"}],
        "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
        "boot": ["cdrom", "disk0"]
    });
    h.ok(h.post("/vms", spec));
    let snaps = |vmid: u32| -> Vec<Value> {
        h.get_json(&format!("/vms/{vmid}/snapshots"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let snap_names = || -> String {
        let (_, out) = virsh(&["snapshot-list", "--name", &name]);
        let mut v: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        v.sort();
        v.join(",")
    };
    let snapshot = |body: Value| h.post(&format!("/vms/{a}/snapshots"), body);
    let rollback = |s: &str| h.post_empty(&format!("/vms/{a}/snapshots/{s}/rollback"));

    // ---- refusals on a VM with a raw disk, and bad requests: 4xx, nothing changed
    h.ok(h.post(
        "/vms",
        json!({"vmid": b, "name": format!("{}-raw", h.prefix), "memory_mib": 64,
               "disks": [{"pool": h.pool, "size_mib": 4, "format": "raw"}]}),
    ));
    let (st, msg) = err_of(h.post(&format!("/vms/{b}/snapshots"), json!({"name": "s1"})));
    assert_eq!(st, 409, "{msg}");
    assert!(
        msg.contains("disk0 (vda,") && msg.contains("is raw"),
        "{msg}"
    );
    assert!(snaps(b).is_empty());
    h.ok(h.delete(&format!("/vms/{b}?purge_volumes=true")));
    let (st, msg) = err_of(snapshot(json!({"name": "1bad"})));
    assert_eq!(st, 400, "{msg}");
    assert_eq!(err_of(rollback("nosuch")).0, 404);
    assert_eq!(
        err_of(h.delete(&format!("/vms/{a}/snapshots/nosuch"))).0,
        404
    );
    let (st, msg) = err_of(h.post(
        &format!("/vms/{a}/disks/disk0/resize"),
        json!({"size_mib": 32}),
    ));
    assert_eq!(st, 400, "{msg}");
    assert!(
        msg.contains("disk0 is 64 MiB") && msg.contains("shrinking is not supported"),
        "{msg}"
    );
    let (st, msg) = err_of(h.post(
        &format!("/vms/{a}/disks/cdrom/resize"),
        json!({"size_mib": 100}),
    ));
    assert_eq!(st, 400, "{msg}");
    assert_eq!(snap_names(), "");

    // the guest runs until its disk holds more ticks than `min`, then is stopped hard
    let run_until_disk_tick = |min: u32| {
        let from = h.serial(a).len();
        h.ok(h.post_empty(&format!("/vms/{a}/status/start")));
        h.wait_for("the guest's ticks on its scratch disk", 120, || {
            first_tick_after(&h, a, from).is_some()
                && last_tick(&h.serial(a)).is_some_and(|(_, m)| m > min)
        });
        h.ok(h.post_empty(&format!("/vms/{a}/status/stop")));
    };

    // ---- A: stopped, after a first run
    run_until_disk_tick(1);
    let ticks_a = scratch_ticks(&disk);
    assert!(ticks_a >= 2, "{ticks_a}");
    h.ok(snapshot(
        json!({"name": "A", "description": "first run done"}),
    ));
    // ---- B on A: stopped, after a second run
    run_until_disk_tick(ticks_a + 1);
    let ticks_b = scratch_ticks(&disk);
    assert!(ticks_b > ticks_a, "{ticks_b} > {ticks_a}");
    let (st, msg) = err_of(snapshot(json!({"name": "A"})));
    assert_eq!(st, 409, "duplicate name: {msg}");
    h.ok(snapshot(json!({"name": "B"})));
    // ---- back to A (stopped VM): exactly A's disk
    h.ok(rollback("A"));
    assert_eq!(h.state(a), "stopped");
    assert_eq!(
        scratch_ticks(&disk),
        ticks_a,
        "disk content after rollback to A"
    );

    // ---- C on A: running, with memory. Paused right after a tick line, so the guest sleeps
    // and its disk holds exactly the tick the line names.
    let from = h.serial(a).len();
    h.ok(h.post_empty(&format!("/vms/{a}/status/start")));
    h.wait_for("ticks after rolling back to A", 120, || {
        let s = h.serial(a);
        let first = s.get(from..).and_then(|t| t.lines().find_map(last_tick));
        // the rolled-back disk carries on from A's last tick
        assert!(
            first.is_none_or(|(_, m)| m == ticks_a + 1),
            "{first:?} after A={ticks_a}"
        );
        s.get(from..)
            .and_then(last_tick)
            .is_some_and(|(_, m)| m > ticks_a + 1)
    });
    let (st, msg) = err_of(snapshot(json!({"name": "nomem"})));
    assert_eq!(st, 409, "running VM, no memory: {msg}");
    assert!(msg.contains("stop the VM first"), "{msg}");
    let seen = last_tick(&h.serial(a)).unwrap_or_default();
    h.wait_for("a fresh tick line", 10, || {
        last_tick(&h.serial(a)) != Some(seen)
    });
    h.ok(h.post_empty(&format!("/vms/{a}/status/suspend")));
    let (tick_c, disk_c) = last_tick(&h.serial(a)).unwrap_or_default();
    let t = h.ok(snapshot(json!({"name": "C", "memory": true})));
    // its guest runs the live ISO's agent, but a memory snapshot does not freeze: the
    // saved guest would come back frozen (docs/guest-agent.md); the log says so
    let log = h.get_json(&format!("/tasks/{}/log", t.upid)).to_string();
    assert!(log.contains("file systems not frozen"), "{log}");
    h.ok(h.post_empty(&format!("/vms/{a}/status/resume")));
    h.wait_for("the guest to go on after C", 30, || {
        last_tick(&h.serial(a)).is_some_and(|(n, _)| n > tick_c + 1)
    });
    // a running VM cannot go back to a disk-only snapshot: 409, nothing changed
    let before = last_tick(&h.serial(a));
    let (st, msg) = err_of(rollback("B"));
    assert_eq!(st, 409, "{msg}");
    assert!(msg.contains("stop the VM first"), "{msg}");
    assert_eq!(h.state(a), "running");

    let tree = snaps(a);
    let find = |n: &str| -> Value {
        tree.iter()
            .find(|s| s["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} missing in {tree:?}"))
    };
    assert_eq!(tree.len(), 3, "{tree:?}");
    assert_eq!(find("A")["children"], json!(["B", "C"]));
    assert_eq!(find("A")["description"], "first run done");
    assert_eq!(find("A")["vm_state"], "stopped");
    assert_eq!(find("B")["parent"], "A");
    assert_eq!(find("C")["parent"], "A");
    assert_eq!(find("C")["has_memory"], true);
    assert_eq!(find("B")["has_memory"], false);
    assert_eq!(find("C")["current"], true);
    assert_eq!(snap_names(), "A,B,C");

    // ---- back to C while running: the guest resumes from its memory and its disk
    assert!(before.is_some_and(|(n, _)| n > tick_c + 1));
    let from = h.serial(a).len();
    h.ok(rollback("C"));
    h.wait_for("the guest's first tick after rolling back to C", 30, || {
        first_tick_after(&h, a, from).is_some()
    });
    assert_eq!(
        first_tick_after(&h, a, from),
        Some((tick_c + 1, disk_c + 1)),
        "the rolled-back guest carries on from C's tick (memory) and C's disk"
    );

    // ---- a VM with snapshots can be reconfigured
    let mut cfg = h.get_json(&format!("/vms/{a}"))["spec"].clone();
    cfg["description"] = json!("has snapshots");
    h.ok(h.put(&format!("/vms/{a}"), cfg));

    // ---- delete A, the middle of the tree: B and C become roots and still roll back
    h.ok(h.post_empty(&format!("/vms/{a}/status/stop")));
    h.ok(h.delete(&format!("/vms/{a}/snapshots/A")));
    assert_eq!(snap_names(), "B,C");
    let tree = snaps(a);
    assert!(tree.iter().all(|s| s["parent"].is_null()), "{tree:?}");
    h.ok(rollback("B"));
    assert_eq!(
        scratch_ticks(&disk),
        ticks_b,
        "disk content after rollback to B"
    );
    let from = h.serial(a).len();
    h.ok(rollback("C"));
    assert_eq!(h.state(a), "running", "a memory snapshot resumes the guest");
    h.wait_for(
        "the guest's first tick after rolling back to C again",
        30,
        || first_tick_after(&h, a, from).is_some(),
    );
    assert_eq!(
        first_tick_after(&h, a, from),
        Some((tick_c + 1, disk_c + 1)),
        "C still rolls back exactly after A was deleted"
    );

    // ---- grow the running disk: the guest sees the new size (512-byte sectors)
    h.ok(h.post(
        &format!("/vms/{a}/disks/vda/resize"),
        json!({"size_mib": 96}),
    ));
    h.wait_for("the guest to see vda at 96 MiB", 30, || {
        h.serial(a).contains(&format!("vda={}", 96 * 2048))
    });
    let (st, msg) = err_of(h.post(
        &format!("/vms/{a}/disks/disk0/resize"),
        json!({"size_mib": 64}),
    ));
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("disk0 is 96 MiB"), "{msg}");

    // ---- the VM with snapshots is deleted cleanly: no domain, no snapshot metadata
    h.ok(h.post_empty(&format!("/vms/{a}/status/stop")));
    h.ok(h.delete(&format!("/vms/{a}")));
    let (ok, out) = virsh(&["dominfo", &name]);
    assert!(!ok, "domain still defined: {out}");
    let meta = PathBuf::from("/var/lib/libvirt/qemu/snapshot").join(&name);
    let left: Vec<_> = std::fs::read_dir(&meta)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "snapshot metadata left in {meta:?}: {left:?}"
    );
    // the kept volume holds no internal snapshot any more
    let info = std::process::Command::new("qemu-img")
        .args(["snapshot", "-l"])
        .arg(&disk)
        .output()
        .unwrap_or_else(|e| panic!("qemu-img: {e}"));
    let listed = String::from_utf8_lossy(&info.stdout).to_string();
    assert!(
        info.status.success() && listed.trim().is_empty(),
        "{listed}"
    );
    eprintln!("vm_snapshots: {:.1}s", t0.elapsed().as_secs_f64());
}
