//! Backups end to end on the real engines (libvirtd + QEMU TCG, qemu-img), through hostd's API
//! only, checked by the content of the disks: the live guest records numbered ticks on a
//! scratch qcow2 disk (iso/live/init) and prints each one on its serial console, so every
//! backup point must hold an unbroken run of ticks ending between the guest's tick just before
//! and just after that backup.

#[allow(clippy::unwrap_used)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sshd::Sshd;
use common::{live_dir, scratch_image, scratch_ticks, Hostd};
use keel_api::task::TaskState;
use serde_json::{json, Value};

/// The last `KEEL-LIVE: tick N disk D` line's D: the newest tick the guest has fsync'ed.
fn disk_tick(serial: &str) -> Option<u32> {
    serial.lines().rev().find_map(|l| {
        l.trim().rsplit_once(" disk ").and_then(|(a, d)| {
            a.contains("KEEL-LIVE: tick")
                .then(|| d.trim().parse().ok())?
        })
    })
}

fn task_log(h: &Hostd, upid: &str) -> String {
    h.get_json(&format!("/tasks/{upid}/log?limit=1000"))
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["line"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn backups(h: &Hostd, vmid: u32, target: &str) -> Vec<Value> {
    h.get_json(&format!("/vms/{vmid}/backups?target={target}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn first_disk_path(h: &Hostd, vmid: u32) -> PathBuf {
    disk_path(h, vmid, 0)
}

/// The path of a restored VM's disk volume.
fn disk_path(h: &Hostd, vmid: u32, disk: usize) -> PathBuf {
    let cfg = h.get_json(&format!("/vms/{vmid}"));
    let vol = cfg["spec"]["disks"][disk]["volume"]
        .as_str()
        .unwrap_or_else(|| panic!("restored VM {vmid} has no volume: {cfg}"))
        .to_string();
    let content = h.get_json(&format!("/storage/{}/content", h.pool));
    let path = content
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == vol.as_str()))
        .and_then(|v| v["path"].as_str())
        .unwrap_or_else(|| panic!("volume {vol} not in {content}"));
    PathBuf::from(path)
}

/// Bytes of data a qcow2 file holds itself (not through its backing file).
fn own_data(file: &Path) -> u64 {
    let out = Command::new("qemu-img")
        .args(["map", "--output=json"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("qemu-img map: {e}"));
    assert!(out.status.success(), "qemu-img map {}", file.display());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["depth"] == 0 && e["data"] == true)
                .filter_map(|e| e["length"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// If the test stops half-way: the VM carries checkpoints, which the harness's plain
/// `virsh undefine` refuses; drop them with it (runs before the harness's cleanup).
struct Undefine(String);

impl Drop for Undefine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = common::virsh(&["destroy", &self.0]);
            let _ = common::virsh(&["undefine", "--checkpoints-metadata", "--nvram", &self.0]);
        }
    }
}

/// A host bridge for the test, deleted when dropped.
struct Bridge(String);

impl Bridge {
    fn new(name: &str) -> Bridge {
        let st = Command::new("ip")
            .args(["link", "add", name, "type", "bridge"])
            .status()
            .unwrap_or_else(|e| panic!("ip: {e}"));
        assert!(st.success(), "cannot create bridge {name} (root needed)");
        Bridge(name.to_string())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "keel-bk-test"])
            .arg(dir)
            .status()
            .unwrap_or_else(|e| panic!("mount: {e}"));
        assert!(
            st.success(),
            "mounting a tmpfs at {} failed (root needed)",
            dir.display()
        );
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn live_backups_incremental_chain_verify_restore_and_failures() {
    let t_start = Instant::now();
    let h = Hostd::start();
    let a = h.id(0);
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    let scratch = scratch_image(&h.dir, "bk-scratch.qcow2", 64);
    h.upload(&scratch, "bk-scratch.qcow2");
    // a second disk the guest never writes: 4 MiB of data, in every full, in no incremental
    let data_raw = h.dir.join("bk-data.raw");
    let mut bytes = vec![0u8; 16 << 20];
    for (i, b) in bytes.iter_mut().take(4 << 20).enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] | 1;
    }
    std::fs::write(&data_raw, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let data = h.dir.join("bk-data.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&data_raw)
        .arg(&data)
        .status()
        .unwrap_or_else(|e| panic!("qemu-img: {e}"));
    assert!(st.success());
    h.upload(&data, "bk-data.qcow2");
    // a NIC on a host bridge with no uplink: the restored copy must get its own MAC
    let br = Bridge::new(&format!("{}k", &h.prefix[..h.prefix.len().min(12)]));
    // a small file system for the "target fills up" step, mounted before QEMU starts (a
    // mount made later may stay invisible in libvirt's QEMU mount namespace)
    let small_dir = h.dir.join("small");
    let _m = Mount::tmpfs(&small_dir, "8m");
    let name = format!("{}-bk", h.prefix);
    let _undefine = Undefine(name.clone());
    h.ok(h.post(
        "/vms?start=true",
        json!({
            "vmid": a, "name": name, "memory_mib": 256,
            "disks": [{"pool": h.pool, "volume": "bk-scratch.qcow2", "format": "qcow2"},
                      {"pool": h.pool, "volume": "bk-data.qcow2", "format": "qcow2"}],
            "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
            "nics": [{"bridge": br.0}],
            "boot": ["cdrom", "disk0"],
            "guest_agent": true
        }),
    ));
    h.wait_for("the guest ticking on its scratch disk", 120, || {
        disk_tick(&h.serial(a)).is_some_and(|d| d >= 1)
    });
    let t_agent = Instant::now();
    guest_agent_reports_the_guest(&h, a);
    let mut agent_s = t_agent.elapsed().as_secs_f64();

    // ---- targets: bad input refused with the reason, nothing stored
    let bkdir = h.dir.join("backups");
    let r = h.post(
        "/backup-targets",
        json!({"name": "main", "path": bkdir.display().to_string()}),
    );
    assert_eq!(r.status(), 400);
    let e: Value = r.json().unwrap_or_default();
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "{e}"
    );
    std::fs::create_dir_all(&bkdir).unwrap_or_else(|e| panic!("{e}"));
    let r = h.post(
        "/backup-targets",
        json!({"name": "main", "path": bkdir.display().to_string()}),
    );
    assert_eq!(r.status(), 201);
    let tl = h.get_json("/backup-targets");
    assert_eq!(tl[0]["name"], "main");
    assert_eq!(tl[0]["ok"], true);
    assert!(tl[0]["available"].as_u64().unwrap_or(0) > 0, "{tl}");
    let r = h.post(&format!("/vms/{a}/backups"), json!({"target": "nope"}));
    assert_eq!(r.status(), 404);

    // ---- a full backup and three incrementals, each while the guest writes
    let mut points: Vec<(String, u32, u32)> = Vec::new();
    for i in 0..4 {
        let before = disk_tick(&h.serial(a)).unwrap_or(0);
        // the guest moves on between backups
        h.wait_for("a new tick", 20, || {
            disk_tick(&h.serial(a)).is_some_and(|d| d > before)
        });
        let before = disk_tick(&h.serial(a)).unwrap_or(0);
        let t0 = Instant::now();
        let t = h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "main"})));
        std::thread::sleep(Duration::from_millis(300));
        let after = disk_tick(&h.serial(a)).unwrap_or(0);
        let log = task_log(&h, &t.upid);
        // the guest's one freezable file system (iso/live/init) frozen until the job began
        // and thawed as soon as it had begun, long before it completed
        let frozen = log.find("filesystems frozen: 1");
        let thawed = log.find("filesystems thawed: 1");
        let done = log.find("backup job completed");
        assert!(
            frozen.is_some() && frozen < thawed && thawed < done,
            "freeze, thaw, then the job's end:\n{log}"
        );
        let list = backups(&h, a, "main");
        let b = list.last().unwrap_or_else(|| panic!("no backup listed"));
        let kind = if i == 0 { "full" } else { "incremental" };
        assert_eq!(b["kind"], kind, "{log}");
        if i > 0 {
            assert_eq!(b["parent"], points[i - 1].0.as_str(), "{b}");
            assert!(log.contains("rebased onto backup"), "{log}");
        }
        eprintln!(
            "backup {i} ({kind}) {}: guest ticks {before}..{after}, {:.1}s, {} bytes",
            b["id"],
            t0.elapsed().as_secs_f64(),
            b["size"]
        );
        points.push((
            b["id"].as_str().unwrap_or_default().to_string(),
            before,
            after,
        ));
    }
    let list = backups(&h, a, "main");
    assert_eq!(list.len(), 4);
    // no partial directory is ever listed or left behind
    let vdir = bkdir.join(a.to_string());
    // an incremental holds only the changed clusters: the untouched disk's data is in the
    // full only
    let own = |id: &str, f: &str| own_data(&vdir.join(id).join(f));
    assert!(own(&points[0].0, "vdb.qcow2") >= 4 << 20);
    for p in &points[1..] {
        assert_eq!(
            own(&p.0, "vdb.qcow2"),
            0,
            "unchanged disk in incremental {}",
            p.0
        );
        assert!(
            own(&p.0, "vda.qcow2") > 0,
            "the ticks are in incremental {}",
            p.0
        );
    }
    let names: Vec<String> = std::fs::read_dir(&vdir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    // ---- retention on a real chain: the full backup cannot be deleted while incrementals
    // depend on it (409 naming them); keep-last 1 would merge the newest into a full backup
    let r = h.delete(&format!("/vms/{a}/backups/{}?target=main", points[0].0));
    assert_eq!(r.status(), 409);
    let e: Value = r.json().unwrap_or_default();
    let m = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        points[1..].iter().all(|p| m.contains(&p.0)) && m.contains("depend on it"),
        "{e}"
    );
    let r = h.post(
        &format!("/vms/{a}/backups/prune"),
        json!({"target": "main", "keep_last": 1, "dry_run": true}),
    );
    assert_eq!(r.status(), 200);
    let p: Value = r.json().unwrap_or_default();
    assert_eq!(p["kept"].as_array().map(Vec::len), Some(1), "{p}");
    assert_eq!(p["removed"].as_array().map(Vec::len), Some(3), "{p}");
    assert_eq!(p["kept"][0]["id"], points[3].0.as_str(), "{p}");
    assert_eq!(
        p["kept"][0]["merge"]["absorbs"],
        json!([points[2].0, points[1].0, points[0].0]),
        "{p}"
    );
    assert!(p["kept"][0]["merge"].get("onto").is_none(), "{p}");
    assert!(
        p["removed"][2]["reason"]
            .as_str()
            .is_some_and(|r| r == format!("merged into kept backup {}", points[3].0)),
        "{p}"
    );

    // ---- restore every point; its content is the guest's disk at that backup
    let mut last_ticks = 0;
    let mut restored = Vec::new();
    for (i, (id, before, after)) in points.iter().enumerate() {
        let nv = h.id(10 + i as u32);
        h.ok(h.post(
            &format!("/vms/{a}/backups/{id}/restore"),
            json!({"target": "main", "new_vmid": nv, "pool": h.pool,
                   "name": format!("{}-r{i}", h.prefix), "start": false}),
        ));
        let n = scratch_ticks(&first_disk_path(&h, nv));
        assert!(
            *before <= n && n <= *after,
            "point {i} ({id}) holds ticks 1..{n}; the guest was at {before} before and {after} after the backup"
        );
        assert!(n > last_ticks, "later points hold more ticks");
        if i == 3 {
            // the second disk, restored through the whole chain, equals the original
            let st = Command::new("qemu-img")
                .args(["compare", "-q"])
                .arg(&data_raw)
                .arg(disk_path(&h, nv, 1))
                .status()
                .unwrap_or_else(|e| panic!("qemu-img compare: {e}"));
            assert!(st.success(), "restored data disk differs from the original");
        }
        last_ticks = n;
        restored.push((nv, n));
    }
    // the restored VM has a new identity and boots, carrying on from its disk
    let (rv, rn) = restored[3];
    let orig = h.get_json(&format!("/vms/{a}"));
    let rc = h.get_json(&format!("/vms/{rv}"));
    let mac = |v: &Value| v["spec"]["nics"][0]["mac"].as_str().map(str::to_string);
    assert!(
        mac(&orig).is_some() && mac(&rc).is_some() && mac(&orig) != mac(&rc),
        "a new MAC: {orig} {rc}"
    );
    h.ok(h.post_empty(&format!("/vms/{rv}/status/start")));
    h.wait_for("the restored guest continuing its ticks", 120, || {
        h.serial(rv)
            .contains(&format!("next tick block {}", rn + 2))
            && disk_tick(&h.serial(rv)).is_some_and(|d| d > rn)
    });
    let st_a = h.get_json(&format!("/vms/{a}/status/current"));
    let st_r = h.get_json(&format!("/vms/{rv}/status/current"));
    assert_ne!(st_a["uuid"], st_r["uuid"]);
    h.ok(h.post_empty(&format!("/vms/{rv}/status/stop")));
    // a stopped VM is copied whole (qemu-img), no checkpoint: its disk as the guest left it
    let last_written = disk_tick(&h.serial(rv)).unwrap_or(0);
    let t = h.ok(h.post(&format!("/vms/{rv}/backups"), json!({"target": "main"})));
    let cold = backups(&h, rv, "main");
    assert_eq!(cold.len(), 1);
    assert_eq!(
        (cold[0]["kind"].clone(), cold[0]["live"].clone()),
        (json!("full"), json!(false)),
        "{}",
        task_log(&h, &t.upid)
    );
    let cold_file = bkdir
        .join(rv.to_string())
        .join(cold[0]["id"].as_str().unwrap_or(""))
        .join("vda.qcow2");
    assert_eq!(
        scratch_ticks(&cold_file),
        last_written,
        "the copy is the stopped disk"
    );

    // ---- negative control: one incremental altered → verify says broken, restore refused
    let t = h.ok(h.post_empty(&format!(
        "/vms/{a}/backups/{}/verify?target=main",
        points[3].0
    )));
    assert!(task_log(&h, &t.upid).contains("intact"));
    assert_eq!(backups(&h, a, "main")[3]["verify_state"], "ok");
    let victim = vdir.join(&points[2].0).join("vda.qcow2");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&victim)
            .unwrap_or_else(|e| panic!("{e}"));
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        f.seek(SeekFrom::Start(len / 2))
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(b"bit rot").unwrap_or_else(|e| panic!("{e}"));
    }
    let t = h.task(h.post_empty(&format!(
        "/vms/{a}/backups/{}/verify?target=main",
        points[3].0
    )));
    assert_eq!(t.state, TaskState::Error);
    let msg = t.message.clone().unwrap_or_default();
    assert!(
        msg.contains("altered") && msg.contains(&points[2].0),
        "{msg}"
    );
    let l = backups(&h, a, "main");
    assert_eq!(l[3]["verify_state"], "broken", "{l:?}");
    assert_eq!(l[1]["verify_state"], "ok", "an earlier point stays good");
    let r = h.post(
        &format!("/vms/{a}/backups/{}/restore", points[3].0),
        json!({"target": "main", "new_vmid": h.id(20), "pool": h.pool}),
    );
    assert_eq!(r.status(), 409, "a broken chain is refused");
    let e: Value = r.json().unwrap_or_default();
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("verification")),
        "{e}"
    );
    // a missing incremental file: refused before any task
    std::fs::remove_file(&victim).unwrap_or_else(|e| panic!("{e}"));
    let r = h.post(
        &format!("/vms/{a}/backups/{}/restore", points[2].0),
        json!({"target": "main", "new_vmid": h.id(20), "pool": h.pool}),
    );
    assert_eq!(r.status(), 409);
    let e: Value = r.json().unwrap_or_default();
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing")),
        "{e}"
    );

    // ---- kill -9 of QEMU (what fencing does): the next backup is full, with the reason
    let pidfile = format!("/run/libvirt/qemu/{name}.pid");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap_or_else(|e| panic!("{pidfile}: {e}"))
        .trim()
        .to_string();
    let st = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(st.success());
    h.wait_for("the killed VM to be stopped", 30, || {
        h.state(a) == "stopped"
    });
    let boots = h.serial(a).matches("next tick block").count();
    h.ok(h.post_empty(&format!("/vms/{a}/status/start")));
    h.wait_for("the guest ticking again after the crash", 120, || {
        let s = h.serial(a);
        s.matches("next tick block").count() > boots
            && s.rsplit("next tick block")
                .next()
                .is_some_and(|t| t.contains("KEEL-LIVE: tick"))
    });
    let t = h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "main"})));
    let log = task_log(&h, &t.upid);
    let l = backups(&h, a, "main");
    assert_eq!(
        l.last().map(|b| b["kind"].clone()),
        Some(json!("full")),
        "{log}"
    );
    assert!(
        log.contains("full backup instead") && log.contains("inconsistent"),
        "the task log says why the backup is full:\n{log}"
    );
    eprintln!("after kill -9:\n{log}");
    let before = disk_tick(&h.serial(a)).unwrap_or(0);
    h.wait_for("a new tick", 20, || {
        disk_tick(&h.serial(a)).is_some_and(|d| d > before)
    });
    let t = h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "main"})));
    let l = backups(&h, a, "main");
    let last = l.last().cloned().unwrap_or_default();
    assert_eq!(last["kind"], "incremental", "{}", task_log(&h, &t.upid));
    // checkpoints no chain needs are gone (the broken one included): only the newest stays
    let (ok, cps) = common::virsh(&["checkpoint-list", &name, "--name"]);
    assert!(ok, "{cps}");
    let cps: Vec<&str> = cps
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(cps.len(), 1, "{cps:?}");
    let nv = h.id(21);
    h.ok(h.post(
        &format!("/vms/{a}/backups/{}/restore", last["id"].as_str().unwrap_or("")),
        json!({"target": "main", "new_vmid": nv, "pool": h.pool, "name": format!("{}-r21", h.prefix)}),
    ));
    assert!(scratch_ticks(&first_disk_path(&h, nv)) > before);

    // ---- retention merges (a target of its own): a full and an incremental, then keep-last
    // 1 turns the incremental into a full backup (its parent taken in) with the same content;
    // it verifies, restores to that content, and the next live backup is an incremental on it
    let mdir = h.dir.join("merge-target");
    std::fs::create_dir_all(&mdir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        h.post(
            "/backup-targets",
            json!({"name": "merge", "path": mdir.display().to_string()}),
        )
        .status(),
        201
    );
    h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "merge"})));
    h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "merge"})));
    let l = backups(&h, a, "merge");
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(l[1]["kind"], "incremental", "{l:?}");
    let (full2, inc) = (
        l[0]["id"].as_str().unwrap_or("").to_string(),
        l[1]["id"].as_str().unwrap_or("").to_string(),
    );
    let idir = mdir.join(a.to_string()).join(&inc);
    let tmp = h.dir.join("merge.raw");
    let want: Vec<String> = ["vda", "vdb"]
        .iter()
        .map(|d| raw_sha256(&idir.join(format!("{d}.qcow2")), &tmp))
        .collect();
    let t = h.ok(h.post(
        &format!("/vms/{a}/backups/prune"),
        json!({"target": "merge", "keep_last": 1}),
    ));
    let log = task_log(&h, &t.upid);
    assert!(
        log.contains(&format!(
            "backup {inc} merged into a full backup, taking in {full2}"
        )),
        "{log}"
    );
    let l = backups(&h, a, "merge");
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (l[0]["id"].as_str(), l[0]["kind"].as_str()),
        (Some(inc.as_str()), Some("full"))
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(idir.join("manifest.json")).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        m["parent"].is_null() && m["disks"][0]["backing"].is_null() && !m["checkpoint"].is_null(),
        "{m}"
    );
    h.ok(h.post_empty(&format!("/vms/{a}/backups/{inc}/verify?target=merge")));
    let nm = h.id(22);
    h.ok(h.post(
        &format!("/vms/{a}/backups/{inc}/restore"),
        json!({"target": "merge", "new_vmid": nm, "pool": h.pool, "name": format!("{}-r22", h.prefix)}),
    ));
    for (i, w) in want.iter().enumerate() {
        assert_eq!(
            &raw_sha256(&idir.join(format!("vd{}.qcow2", ["a", "b"][i])), &tmp),
            w,
            "disk {i} of the merged backup differs from its chain before the merge"
        );
        assert_eq!(
            &raw_sha256(&disk_path(&h, nm, i), &tmp),
            w,
            "disk {i} restored after the merge differs from the chain before it"
        );
    }
    let t = h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "merge"})));
    let l = backups(&h, a, "merge");
    assert_eq!(
        (l.len(), l[1]["kind"].as_str(), l[1]["parent"].as_str()),
        (2, Some("incremental"), Some(inc.as_str())),
        "{}",
        task_log(&h, &t.upid)
    );

    // ---- a target that fills up mid-backup: clean error, nothing partial, earlier ok
    assert_eq!(
        h.post(
            "/backup-targets",
            json!({"name": "small", "path": small_dir.display().to_string()}),
        )
        .status(),
        201
    );
    h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "small"})));
    let first = backups(&h, a, "small");
    assert_eq!(first.len(), 1);
    let need = first[0]["size"].as_u64().unwrap_or(0);
    // leave room for half a full backup: the next one runs out of space part-way
    let avail = h
        .get_json("/backup-targets")
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "small").cloned())
        .and_then(|t| t["available"].as_u64())
        .unwrap_or(0);
    let filler = avail.saturating_sub(need / 2);
    std::fs::write(small_dir.join("filler"), vec![0x55u8; filler as usize])
        .unwrap_or_else(|e| panic!("{e}"));
    let t = h.task(h.post(
        &format!("/vms/{a}/backups"),
        json!({"target": "small", "full": true}),
    ));
    assert_eq!(t.state, TaskState::Error, "{}", task_log(&h, &t.upid));
    let msg = t.message.clone().unwrap_or_default();
    eprintln!("full target: {msg}");
    assert!(
        msg.to_lowercase().contains("space"),
        "the error names the cause: {msg}"
    );
    assert_eq!(backups(&h, a, "small").len(), 1, "no partial backup listed");
    let left: Vec<String> = std::fs::read_dir(small_dir.join(a.to_string()))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "only the complete backup remains: {left:?}");
    h.ok(h.post_empty(&format!(
        "/vms/{a}/backups/{}/verify?target=small",
        first[0]["id"].as_str().unwrap_or("")
    )));
    // ---- an sftp target: a real sshd on loopback, its host key pinned at add
    let t_sftp = Instant::now();
    sftp_target_backup_restore_and_changed_host_key(&h, a, &data_raw);
    eprintln!(
        "sftp target steps took {:.1}s",
        t_sftp.elapsed().as_secs_f64()
    );
    // restoring over the VM itself is refused while it runs, nothing changed
    let over = |id: &str| {
        h.post(
            &format!("/vms/{a}/backups/{id}/restore"),
            json!({"target": "main", "pool": h.pool, "replace": true}),
        )
    };
    let r = over(&points[1].0);
    assert_eq!(r.status(), 409);
    let e: Value = r.json().unwrap_or_default();
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("shut it down")),
        "{e}"
    );
    // a clean shutdown through the guest agent (docs/guest-agent.md), not the ACPI button
    let t_agent = Instant::now();
    let t = h.ok(h.post(
        &format!("/vms/{a}/status/shutdown"),
        json!({"timeout_s": 60}),
    ));
    let log = task_log(&h, &t.upid);
    assert!(log.contains("shutdown through the guest agent"), "{log}");
    assert_eq!(h.state(a), "stopped");
    let serial = h.serial(a);
    assert!(
        serial.contains("KEEL-LIVE: guest agent shutdown")
            && !serial.contains("KEEL-LIVE: power button"),
        "the guest's agent powered it off"
    );
    agent_s += t_agent.elapsed().as_secs_f64();
    eprintln!("guest agent steps took {agent_s:.1}s");

    // ---- restore over the stopped VM itself (docs/backups.md, "Restore over the original")
    let t_over = Instant::now();
    let uuid = h.get_json(&format!("/vms/{a}/status/current"))["uuid"].clone();
    let cfg = h.get_json(&format!("/vms/{a}"));
    let old_vols: Vec<String> = (0..2)
        .map(|i| {
            cfg["spec"]["disks"][i]["volume"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    // a new vmid and replace together: refused with the field named
    let r = h.post(
        &format!("/vms/{a}/backups/{}/restore", points[1].0),
        json!({"target": "main", "pool": h.pool, "replace": true, "new_vmid": h.id(30)}),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(
        h.get_json(&format!("/vms/{a}"))["spec"],
        cfg["spec"],
        "nothing changed"
    );
    let t = h.ok(over(&points[1].0));
    let log = task_log(&h, &t.upid);
    let n = scratch_ticks(&first_disk_path(&h, a));
    let (_, before, after) = &points[1];
    assert!(
        *before <= n && n <= *after,
        "VM {a}'s disk holds ticks 1..{n} after the restore; point 1 was taken between {before} and {after}\n{log}"
    );
    let st = Command::new("qemu-img")
        .args(["compare", "-q"])
        .arg(&data_raw)
        .arg(disk_path(&h, a, 1))
        .status()
        .unwrap_or_else(|e| panic!("qemu-img compare: {e}"));
    assert!(
        st.success(),
        "the restored data disk differs from the original"
    );
    // the same VM: same UUID and MAC, on new volumes; the old ones and its checkpoints gone
    let now_cfg = h.get_json(&format!("/vms/{a}"));
    assert_eq!(
        h.get_json(&format!("/vms/{a}/status/current"))["uuid"],
        uuid
    );
    assert_eq!(
        now_cfg["spec"]["nics"][0]["mac"],
        cfg["spec"]["nics"][0]["mac"]
    );
    let content = h.get_json(&format!("/storage/{}/content", h.pool));
    for v in &old_vols {
        assert!(
            !content
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["name"] == v.as_str())),
            "the replaced volume {v} is still in the pool\n{log}"
        );
        assert!(
            log.contains(&format!("deleted the replaced volume {}/{v}", h.pool)),
            "{log}"
        );
    }
    let (ok, cps) = common::virsh(&["checkpoint-list", &name, "--name"]);
    assert!(ok && cps.trim().is_empty(), "checkpoints left: {cps}");
    assert!(log.contains("the next backup of VM"), "{log}");
    // a snapshot lives inside the disks a restore would remove: refused, named (the
    // checkpoints went with the replaced disks, so the VM takes a snapshot again)
    h.ok(h.post(&format!("/vms/{a}/snapshots"), json!({"name": "keep"})));
    let r = over(&points[1].0);
    assert_eq!(r.status(), 409);
    let e: Value = r.json().unwrap_or_default();
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("snapshots (keep)")),
        "{e}"
    );
    h.ok(h.delete(&format!("/vms/{a}/snapshots/keep")));
    eprintln!(
        "restore over the VM took {:.1}s",
        t_over.elapsed().as_secs_f64()
    );
    // a VM with backups (libvirt checkpoints) is deleted like any other
    h.ok(h.delete(&format!("/vms/{a}")));
    let (_, left) = common::virsh(&["list", "--all", "--name"]);
    assert!(
        !left.lines().any(|l| l.trim() == name),
        "{name} still defined"
    );
    eprintln!("vm_backups took {:.1}s", t_start.elapsed().as_secs_f64());
}

/// The live guest's agent (iso/live/README.md) answers: host name, OS and eth0's static
/// address with the MAC Keel gave the NIC.
fn guest_agent_reports_the_guest(h: &Hostd, vmid: u32) {
    let mut info = Value::Null;
    h.wait_for("the guest agent to answer", 60, || {
        info = h.get_json(&format!("/vms/{vmid}/agent"));
        info["state"] == "ok"
    });
    assert_eq!(info["hostname"], "keel-live", "{info}");
    assert_eq!(info["os"]["id"], "keel-live", "{info}");
    assert!(
        info["os"]["kernel_release"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "{info}"
    );
    let mac = h.get_json(&format!("/vms/{vmid}"))["spec"]["nics"][0]["mac"].clone();
    let eth0 = info["interfaces"]
        .as_array()
        .and_then(|i| i.iter().find(|i| i["name"] == "eth0").cloned())
        .unwrap_or_else(|| panic!("no eth0 in {info}"));
    assert_eq!(eth0["mac"], mac, "{info}");
    assert!(
        eth0["addresses"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["family"] == "ipv4" && a["address"] == "192.0.2.15" && a["prefix"] == 24)),
        "{info}"
    );
    eprintln!("guest agent: {info}");
}

/// SHA-256 of a disk image's guest-visible bytes (converted to raw).
fn raw_sha256(img: &Path, tmp: &Path) -> String {
    use sha2::{Digest, Sha256};
    common::sshd::run_ok(
        Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(img)
            .arg(tmp),
    );
    let data = std::fs::read(tmp).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(tmp);
    hex::encode(Sha256::digest(&data))
}

/// The sftp target: refused with the reason (no key, a wrong pinned fingerprint), pinned at
/// add, a live full backup uploaded and listed only complete, verified and restored
/// sha256-equal, then an incremental on it (backed by the full's files on the remote host),
/// verified through its chain, kept with its parent by retention and restored sha256-equal;
/// after the host key changes, the next backup is refused naming both keys.
fn sftp_target_backup_restore_and_changed_host_key(h: &Hostd, a: u32, data_raw: &Path) {
    let mut sshd = Sshd::new(&h.dir.join("sshd"));
    let fp = sshd.fingerprint();
    let loc = sshd.location();
    let remote = sshd.remote();
    let msg = |r: reqwest::blocking::Response| -> (u16, String) {
        let st = r.status().as_u16();
        let v: Value = r.json().unwrap_or_default();
        (st, v["error"]["message"].as_str().unwrap_or("").to_string())
    };
    // the key must be in <state>/backup-keys: one outside is refused
    let outside = sshd.key();
    let (st, m) = msg(h.post(
        "/backup-targets",
        json!({"name": "remote", "kind": "sftp", "path": loc, "key_file": outside.display().to_string()}),
    ));
    assert!(st == 400 && m.contains("must be in"), "{st} {m}");
    let keys = h.dir.join("state/backup-keys");
    std::fs::create_dir_all(&keys).unwrap_or_else(|e| panic!("{e}"));
    let key = keys.join("remote");
    std::fs::copy(&outside, &key).unwrap_or_else(|e| panic!("{e}"));
    let key_s = key.display().to_string();
    // no key file; a wrong pinned fingerprint: refused, naming both keys
    let (st, m) = msg(h.post(
        "/backup-targets",
        json!({"name": "remote", "kind": "sftp", "path": loc}),
    ));
    assert!(st == 400 && m.contains("key"), "{st} {m}");
    let wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let (st, m) = msg(h.post(
        "/backup-targets",
        json!({"name": "remote", "kind": "sftp", "path": loc, "key_file": key_s,
               "host_key_fingerprint": wrong}),
    ));
    assert!(
        st == 400 && m.contains(&format!("expected {wrong}")) && m.contains(&format!("seen {fp}")),
        "{st} {m}"
    );
    // pinned now: the fingerprint ssh-keygen shows for the host key
    let r = h.post(
        "/backup-targets",
        json!({"name": "remote", "kind": "sftp", "path": loc, "key_file": key_s}),
    );
    assert_eq!(r.status(), 201);
    let t: Value = r.json().unwrap_or_default();
    assert_eq!(t["host_key_fingerprint"], fp.as_str(), "{t}");
    assert_eq!(t["ok"], true, "{t}");
    assert!(
        t["available"].as_u64().unwrap_or(0) > 0,
        "free space shown: {t}"
    );

    // a live backup to it: the first is full, uploaded, listed once complete
    let tk = h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "remote"})));
    let log = task_log(h, &tk.upid);
    assert!(
        log.contains("full backup: the first of this VM on this target")
            && log.contains("uploaded to"),
        "{log}"
    );
    let list = backups(h, a, "remote");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["kind"], "full");
    let id = list[0]["id"].as_str().unwrap_or("").to_string();
    let on_remote: Vec<String> = std::fs::read_dir(remote.join(a.to_string()))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_remote, vec![id.clone()], "no partial left on the remote");
    let bdir = remote.join(a.to_string()).join(&id);
    assert!(bdir.join("manifest.json").is_file());
    h.ok(h.post_empty(&format!("/vms/{a}/backups/{id}/verify?target=remote")));
    assert_eq!(backups(h, a, "remote")[0]["verify_state"], "ok");

    // the next one is an incremental on the uploaded full: written in local staging, its
    // files pointed at the parent's on the remote host (which this node never reads back)
    let tk = h.ok(h.post(&format!("/vms/{a}/backups"), json!({"target": "remote"})));
    let log = task_log(h, &tk.upid);
    assert!(
        log.contains(&format!("incremental since backup {id}"))
            && log.contains(&format!("rebased onto backup {id}"))
            && log.contains("uploaded to"),
        "{log}"
    );
    let list = backups(h, a, "remote");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[1]["kind"], "incremental", "{list:?}");
    assert_eq!(list[1]["parent"], id.as_str(), "{list:?}");
    let inc = list[1]["id"].as_str().unwrap_or("").to_string();
    let idir = remote.join(a.to_string()).join(&inc);
    for dev in ["vda", "vdb"] {
        let out = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(idir.join(format!("{dev}.qcow2")))
            .output()
            .unwrap_or_else(|e| panic!("qemu-img info: {e}"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(
            v["backing-filename"],
            format!("../{id}/{dev}.qcow2").as_str(),
            "{dev} of the incremental: {v}"
        );
    }
    h.ok(h.post_empty(&format!("/vms/{a}/backups/{inc}/verify?target=remote")));
    assert!(
        backups(h, a, "remote")
            .iter()
            .all(|b| b["verify_state"] == "ok"),
        "the verify of the incremental checks its whole chain"
    );
    // retention on the remote host keeps what a kept incremental needs
    let tk = h.ok(h.post(
        &format!("/vms/{a}/backups/prune"),
        json!({"target": "remote", "keep_last": 1}),
    ));
    let log = task_log(h, &tk.upid);
    assert!(
        log.contains("keeping 2, removing 0")
            && log.contains(&format!("needed by kept incremental {inc}")),
        "{log}"
    );
    assert!(bdir.is_dir() && idir.is_dir());
    // the incremental restores to the chain's content on the remote host
    let ni = h.id(31);
    h.ok(h.post(
        &format!("/vms/{a}/backups/{inc}/restore"),
        json!({"target": "remote", "new_vmid": ni, "pool": h.pool,
               "name": format!("{}-r31", h.prefix), "start": false}),
    ));
    let tmp = h.dir.join("sha.raw");
    for (i, dev) in ["vda", "vdb"].iter().enumerate() {
        assert_eq!(
            raw_sha256(&disk_path(h, ni, i), &tmp),
            raw_sha256(&idir.join(format!("{dev}.qcow2")), &tmp),
            "the restored incremental's {dev} differs from its chain on the remote host"
        );
    }

    // restored sha256-equal: each disk equals the backup's file on the remote host, and the
    // data disk the original
    let nv = h.id(30);
    h.ok(h.post(
        &format!("/vms/{a}/backups/{id}/restore"),
        json!({"target": "remote", "new_vmid": nv, "pool": h.pool,
               "name": format!("{}-r30", h.prefix)}),
    ));
    for (i, dev) in ["vda", "vdb"].iter().enumerate() {
        let restored = raw_sha256(&disk_path(h, nv, i), &tmp);
        let stored = raw_sha256(&bdir.join(format!("{dev}.qcow2")), &tmp);
        assert_eq!(restored, stored, "restored {dev} differs from the backup");
    }
    let mut orig = std::fs::read(data_raw).unwrap_or_else(|e| panic!("{e}"));
    orig.resize(16 << 20, 0);
    use sha2::Digest;
    assert_eq!(
        raw_sha256(&disk_path(h, nv, 1), &tmp),
        hex::encode(sha2::Sha256::digest(&orig)),
        "restored data disk differs from the original"
    );
    assert!(scratch_ticks(&first_disk_path(h, nv)) > 0);

    // the host key changes: the next backup is refused before any task, naming both keys
    sshd.stop();
    sshd.new_host_key();
    sshd.start();
    let fp2 = sshd.fingerprint();
    assert_ne!(fp, fp2);
    let (st, m) = msg(h.post(&format!("/vms/{a}/backups"), json!({"target": "remote"})));
    eprintln!("changed host key: {m}");
    assert!(
        st == 409
            && m.contains("host key")
            && m.contains(&format!("expected {fp}"))
            && m.contains(&format!("seen {fp2}")),
        "{st} {m}"
    );
    assert_eq!(
        std::fs::read_dir(remote.join(a.to_string()))
            .map(|d| d.count())
            .unwrap_or(0),
        2,
        "nothing was uploaded"
    );
    let tl = h.get_json("/backup-targets");
    let rt = tl
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "remote").cloned())
        .unwrap_or_default();
    assert_eq!(rt["ok"], false, "{rt}");
    sshd.stop();
}
