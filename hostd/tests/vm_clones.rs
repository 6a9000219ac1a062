//! Templates, full and linked clones on the real engine (libvirtd + QEMU TCG, qemu-img),
//! driven through hostd's API and checked from outside: the disks' content (the live guest's
//! tick run on a KEEL-SCRATCH disk, read with qemu-img), the template's sha256, virsh's view of
//! UUIDs, MACs and serials, and each guest's own serial output. Clones from snapshots: the
//! disk content at the snapshot (compared with qemu-img's own read of it), the configuration
//! at the snapshot, and a running source that keeps running.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{live_dir, scratch_image, scratch_ticks, virsh, Hostd};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sha256(p: &Path) -> String {
    let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    hex::encode(Sha256::digest(&data))
}

/// The highest `disk N` the guest printed (`KEEL-LIVE: tick n disk N`): its last tick on disk.
fn last_disk_tick(serial: &str) -> u32 {
    serial
        .split(" disk ")
        .skip(1)
        .filter_map(|r| {
            r.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
        })
        .max()
        .unwrap_or(0)
}

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// What the test made outside hostd's own objects: a host bridge, a tiny tmpfs pool.
struct Extras {
    bridge: String,
    tiny_pool: String,
    tiny_dir: PathBuf,
    mounted: bool,
}

impl Drop for Extras {
    fn drop(&mut self) {
        let _ = virsh(&["pool-destroy", &self.tiny_pool]);
        let _ = virsh(&["pool-undefine", &self.tiny_pool]);
        if self.mounted {
            let _ = run("umount", &[&self.tiny_dir.display().to_string()]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

fn dumpxml_facts(name: &str) -> (String, Vec<String>, Vec<String>) {
    let (ok, xml) = virsh(&["dumpxml", "--inactive", name]);
    assert!(ok, "{xml}");
    let grab = |open: &str, close: char| -> Vec<String> {
        xml.split(open)
            .skip(1)
            .filter_map(|r| r.split(close).next().map(str::to_string))
            .collect()
    };
    let uuid = grab("<uuid>", '<').pop().unwrap_or_default();
    (uuid, grab("<mac address='", '\''), grab("<serial>", '<'))
}

#[test]
fn template_full_and_linked_clones_boot_independently() {
    let t0 = Instant::now();
    let h = Hostd::start();
    let (base, plain, full, linked, refused) = (h.id(0), h.id(1), h.id(2), h.id(3), h.id(4));
    let mut extras = Extras {
        bridge: format!("{}c", &h.prefix[..h.prefix.len().min(12)]),
        tiny_pool: format!("{}-tiny", h.prefix),
        tiny_dir: h.dir.join("tiny"),
        mounted: false,
    };
    // A host bridge with no address and no uplink: the NICs exist, no traffic leaves.
    let (ok, out) = run("ip", &["link", "add", &extras.bridge, "type", "bridge"]);
    assert!(ok, "ip link add: {out}");
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    let img = scratch_image(&h.dir, "base.qcow2", 16);
    h.upload(&img, "base.qcow2");
    let pools = h.get_json("/storage");
    let pool_dir = pools
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == h.pool.as_str()))
        .and_then(|p| p["path"].as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("our pool in {pools}"));
    let vol = |n: &str| pool_dir.join(n);

    // 1. A VM with a scratch qcow2 disk boots and records ticks.
    let bname = format!("{}-base", h.prefix);
    h.ok(h.post(
        "/vms?start=true",
        json!({
            "vmid": base, "name": bname, "memory_mib": 256,
            "disks": [{"pool": h.pool, "volume": "base.qcow2", "format": "qcow2", "serial": "base-disk"}],
            "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
            "nics": [{"bridge": extras.bridge}],
            "boot": ["cdrom", "disk0"]
        }),
    ));
    h.wait_for("the base VM's ticks on its scratch disk", 180, || {
        last_disk_tick(&h.serial(base)) >= 3
    });
    h.ok(h.post(
        &format!("/vms/{base}/status/shutdown"),
        json!({"timeout_s": 60, "force_stop": true}),
    ));

    // 2. Converted to a template: start refused, listed as a template, content recorded.
    let t = h.ok(h.post_empty(&format!("/vms/{base}/template")));
    assert_eq!(t.kind, "vmtemplate");
    let tticks = scratch_ticks(&vol("base.qcow2"));
    assert!(tticks >= 3, "{tticks}");
    let tsha = sha256(&vol("base.qcow2"));
    let r = h.post_empty(&format!("/vms/{base}/status/start"));
    assert_eq!(r.status(), 409);
    let body: Value = r.json().unwrap_or_default();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("VM {base} is a template; clone it")),
        "{body}"
    );
    let cfg = h.get_json(&format!("/vms/{base}"));
    assert_eq!(cfg["template"], true, "{cfg}");
    let list = h.get_json("/vms");
    let row = list
        .as_array()
        .and_then(|a| a.iter().find(|v| v["vmid"] == base))
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["template"], true, "{list}");
    let r = h.put(&format!("/vms/{base}"), cfg["spec"].clone());
    assert_eq!(r.status(), 409, "a template's config is not changed");

    // A linked clone of an ordinary VM is refused with the reason.
    h.ok(h.post(
        "/vms",
        json!({"vmid": plain, "name": format!("{}-plain", h.prefix), "memory_mib": 64}),
    ));
    let r = h.post(&format!("/vms/{plain}/clone"), json!({"linked": true}));
    assert_eq!(r.status(), 409);
    let body: Value = r.json().unwrap_or_default();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a template"),
        "{body}"
    );

    // 3. A full and a linked clone; both boot at the same time and carry on the tick run.
    let fname = format!("{}-full", h.prefix);
    let lname = format!("{}-linked", h.prefix);
    let t = h.ok(h.post(
        &format!("/vms/{base}/clone"),
        json!({"vmid": full, "name": fname}),
    ));
    assert_eq!(t.kind, "vmclone");
    h.ok(h.post(
        &format!("/vms/{base}/clone"),
        json!({"vmid": linked, "name": lname, "linked": true}),
    ));
    let fvol = vol(&format!("vm-{full}-disk-0.qcow2"));
    let lvol = vol(&format!("vm-{linked}-disk-0.qcow2"));
    let (ok, info) = run(
        "qemu-img",
        &["info", "-U", "--output=json", &lvol.display().to_string()],
    );
    assert!(ok, "{info}");
    let info: Value = serde_json::from_str(&info).unwrap_or_default();
    assert_eq!(
        info["full-backing-filename"].as_str(),
        Some(vol("base.qcow2").display().to_string().as_str()),
        "{info}"
    );
    assert_eq!(info["backing-filename-format"], "qcow2", "{info}");
    let (ok, finfo) = run(
        "qemu-img",
        &["info", "-U", "--output=json", &fvol.display().to_string()],
    );
    assert!(ok && !finfo.contains("backing-filename"), "{finfo}");
    h.ok(h.post_empty(&format!("/vms/{full}/status/start")));
    h.ok(h.post_empty(&format!("/vms/{linked}/status/start")));
    for v in [full, linked] {
        h.wait_for(
            &format!("VM {v} continuing the template's tick run"),
            180,
            || {
                let s = h.serial(v);
                s.contains(&format!("next tick block {}", tticks + 2))
                    && last_disk_tick(&s) >= tticks + 2
            },
        );
    }
    h.ok(h.post_empty(&format!("/vms/{full}/status/stop")));
    h.ok(h.post_empty(&format!("/vms/{linked}/status/stop")));
    let (fticks, lticks) = (scratch_ticks(&fvol), scratch_ticks(&lvol));
    assert!(
        fticks > tticks && lticks > tticks,
        "{tticks} {fticks} {lticks}"
    );
    assert_eq!(
        scratch_ticks(&vol("base.qcow2")),
        tticks,
        "the template's disk holds its own run"
    );
    assert_eq!(sha256(&vol("base.qcow2")), tsha, "template disk unchanged");

    // UUIDs, MACs and disk serials: all different (virsh's view).
    let facts: Vec<_> = [&bname, &fname, &lname]
        .iter()
        .map(|n| dumpxml_facts(n))
        .collect();
    for (i, a) in facts.iter().enumerate() {
        assert_eq!((a.1.len(), a.2.len()), (1, 1), "{a:?}");
        for b in &facts[i + 1..] {
            assert_ne!(a.0, b.0, "UUIDs");
            assert_ne!(a.1, b.1, "MACs");
            assert_ne!(a.2, b.2, "serials");
        }
    }

    // 4. The template cannot be deleted while the linked clone exists (named in the refusal).
    let r = h.delete(&format!("/vms/{base}"));
    assert_eq!(r.status(), 409);
    let body: Value = r.json().unwrap_or_default();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("VM {linked} ({lname})")),
        "{body}"
    );

    // 5. A full clone into a pool without the space: 400 before a task, nothing left behind.
    std::fs::create_dir_all(&extras.tiny_dir).unwrap_or_else(|e| panic!("{e}"));
    let tiny = extras.tiny_dir.display().to_string();
    let (ok, out) = run("mount", &["-t", "tmpfs", "-o", "size=64k", "tmpfs", &tiny]);
    assert!(ok, "mount tmpfs: {out}");
    extras.mounted = true;
    let (ok, out) = virsh(&[
        "pool-create-as",
        &extras.tiny_pool,
        "dir",
        "--target",
        &tiny,
    ]);
    assert!(ok, "{out}");
    let vms_before = h.get_json("/vms");
    let tasks_before = h.get_json("/tasks?limit=500").as_array().map(Vec::len);
    let r = h.post(
        &format!("/vms/{base}/clone"),
        json!({"vmid": refused, "pool": extras.tiny_pool}),
    );
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap_or_default();
    assert_eq!(body["error"]["field"], "pool", "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("free") && msg.contains("needs"), "{msg}");
    assert_eq!(h.get_json("/vms"), vms_before);
    assert_eq!(
        h.get_json("/tasks?limit=500").as_array().map(Vec::len),
        tasks_before,
        "no task was started"
    );
    let left: Vec<_> = std::fs::read_dir(&extras.tiny_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // another target: a pool that does not exist
    let r = h.post(
        &format!("/vms/{base}/clone"),
        json!({"pool": "no-such-pool"}),
    );
    assert_eq!(r.status(), 400);

    // 6. With the linked clone gone, the template can be deleted.
    h.ok(h.delete(&format!("/vms/{linked}?purge_volumes=true")));
    h.ok(h.delete(&format!("/vms/{base}")));
    assert!(!virsh(&["dominfo", &bname]).0);
    assert_eq!(scratch_ticks(&fvol), fticks);
    eprintln!("vm_clones: {:.1}s", t0.elapsed().as_secs_f64());
}

/// sha256 of an image's guest-visible content (`qemu-img convert -O raw`, optionally of one
/// internal snapshot, `-U` beside a running guest).
fn content_sha(dir: &Path, image: &Path, snapshot: Option<&str>) -> String {
    let raw = dir.join("content.raw");
    let _ = std::fs::remove_file(&raw);
    let mut args = vec!["convert".to_string(), "-U".into()];
    if let Some(s) = snapshot {
        args.push("-l".into());
        args.push(format!("snapshot.name={s}"));
    }
    args.extend([
        "-O".into(),
        "raw".into(),
        image.display().to_string(),
        raw.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = run("qemu-img", &args);
    assert!(ok, "qemu-img {args:?}: {out}");
    let sha = sha256(&raw);
    let _ = std::fs::remove_file(&raw);
    sha
}

fn error_of(r: reqwest::blocking::Response) -> (u16, Value) {
    let st = r.status().as_u16();
    let v: Value = r.json().unwrap_or_default();
    (st, v["error"].clone())
}

#[test]
fn clones_from_snapshots_of_a_stopped_and_a_running_vm() {
    let t0 = Instant::now();
    let h = Hostd::start();
    let (src, c1, c2) = (h.id(0), h.id(1), h.id(2));
    let extras = Extras {
        bridge: format!("{}s", &h.prefix[..h.prefix.len().min(12)]),
        tiny_pool: format!("{}-none", h.prefix),
        tiny_dir: h.dir.join("none"),
        mounted: false,
    };
    let (ok, out) = run("ip", &["link", "add", &extras.bridge, "type", "bridge"]);
    assert!(ok, "ip link add: {out}");
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    // known data at the snapshot: 1 MiB of 0xa1 at 8 MiB (the guest's ticks use the start)
    let img = scratch_image(&h.dir, "snapsrc.qcow2", 16);
    let img_s = img.display().to_string();
    let (ok, out) = run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0xa1 8M 1M", &img_s],
    );
    assert!(ok, "qemu-io: {out}");
    h.upload(&img, "snapsrc.qcow2");
    let pools = h.get_json("/storage");
    let pool_dir = pools
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == h.pool.as_str()))
        .and_then(|p| p["path"].as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("our pool in {pools}"));
    let disk = pool_dir.join("snapsrc.qcow2");
    let sname = format!("{}-ssrc", h.prefix);
    h.ok(h.post(
        "/vms",
        json!({
            "vmid": src, "name": sname, "memory_mib": 256,
            "disks": [{"pool": h.pool, "volume": "snapsrc.qcow2", "format": "qcow2", "serial": "src-disk"}],
            "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
            "nics": [{"bridge": extras.bridge}],
            "boot": ["cdrom", "disk0"]
        }),
    ));

    // S: the stopped VM; then other data on its disk and more memory
    h.ok(h.post(&format!("/vms/{src}/snapshots"), json!({"name": "S"})));
    let sha_s = content_sha(&h.dir, &disk, Some("S"));
    let disk_s = disk.display().to_string();
    let (ok, out) = run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0xb2 8M 1M", &disk_s],
    );
    assert!(ok, "qemu-io: {out}");
    let sha_now = content_sha(&h.dir, &disk, None);
    assert_ne!(sha_now, sha_s, "the disk changed after S");
    let mut cfg = h.get_json(&format!("/vms/{src}"))["spec"].clone();
    cfg["memory_mib"] = json!(320);
    h.ok(h.put(&format!("/vms/{src}"), cfg));

    // refusals before any task: an unknown snapshot (404 naming S), linked (400)
    let tasks_before = h.get_json("/tasks?limit=500").as_array().map(Vec::len);
    let (st, e) = error_of(h.post(&format!("/vms/{src}/clone"), json!({"snapshot": "nope"})));
    assert_eq!(st, 404, "{e}");
    let m = e["message"].as_str().unwrap_or("");
    assert!(
        m.contains("no snapshot \"nope\"") && m.contains("its snapshots: S"),
        "{m}"
    );
    let (st, e) = error_of(h.post(
        &format!("/vms/{src}/clone"),
        json!({"snapshot": "S", "linked": true}),
    ));
    assert_eq!((st, e["field"].as_str()), (400, Some("linked")), "{e}");
    assert_eq!(
        h.get_json("/tasks?limit=500").as_array().map(Vec::len),
        tasks_before,
        "no task was started"
    );

    // a clone from S: S's disk content and S's configuration, new identities, no snapshots
    let c1name = format!("{}-fromS", h.prefix);
    h.ok(h.post(
        &format!("/vms/{src}/clone"),
        json!({"vmid": c1, "name": c1name, "snapshot": "S"}),
    ));
    let c1disk = pool_dir.join(format!("vm-{c1}-disk-0.qcow2"));
    assert_eq!(
        content_sha(&h.dir, &c1disk, None),
        sha_s,
        "the clone's disk is the disk at S"
    );
    let c1cfg = h.get_json(&format!("/vms/{c1}"));
    assert_eq!(
        c1cfg["spec"]["memory_mib"], 256,
        "the configuration at S: {c1cfg}"
    );
    assert_eq!(h.get_json(&format!("/vms/{c1}/snapshots")), json!([]));
    let (fs, fc) = (dumpxml_facts(&sname), dumpxml_facts(&c1name));
    assert_ne!(fs.0, fc.0, "UUIDs");
    assert!(fc.1.len() == 1 && fs.1 != fc.1, "MACs {fs:?} {fc:?}");
    assert!(fc.2.len() == 1 && fs.2 != fc.2, "serials {fs:?} {fc:?}");

    // the source runs and the clone boots, side by side
    h.ok(h.post_empty(&format!("/vms/{src}/status/start")));
    h.ok(h.post_empty(&format!("/vms/{c1}/status/start")));
    h.wait_for("the clone from S booting", 180, || {
        h.serial(c1).contains("KEEL-LIVE: guest booted")
    });

    // M: with memory, while it runs; a clone from M while the source keeps running
    h.ok(h.post(
        &format!("/vms/{src}/snapshots"),
        json!({"name": "M", "memory": true}),
    ));
    let c2name = format!("{}-fromM", h.prefix);
    let t = h.ok(h.post(
        &format!("/vms/{src}/clone"),
        json!({"vmid": c2, "name": c2name, "snapshot": "M"}),
    ));
    let log = h.get_json(&format!("/tasks/{}/log", t.upid)).to_string();
    assert!(log.contains("qemu-img -U"), "{log}");
    assert_eq!(h.state(src), "running", "the source kept running");
    let c2disk = pool_dir.join(format!("vm-{c2}-disk-0.qcow2"));
    assert_eq!(
        content_sha(&h.dir, &c2disk, None),
        content_sha(&h.dir, &disk, Some("M")),
        "the clone's disk is the disk at M"
    );
    let c2cfg = h.get_json(&format!("/vms/{c2}"));
    assert_eq!(
        c2cfg["spec"]["memory_mib"], 320,
        "the configuration at M: {c2cfg}"
    );
    assert_eq!(
        h.state(c2),
        "stopped",
        "a clone boots fresh, never from the memory state"
    );
    h.ok(h.post_empty(&format!("/vms/{c1}/status/stop")));
    h.ok(h.post_empty(&format!("/vms/{src}/status/stop")));
    eprintln!(
        "vm_clones (from snapshots): {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    drop(extras);
}
