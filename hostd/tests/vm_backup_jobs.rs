//! Backup jobs and retention end to end on the real engines (libvirtd, qemu-img), through
//! hostd's API only: stopped VMs (cold copies, no guest boot), a job over two VMs with
//! keep-last 2 run three times, a prune dry run, a job over a deleted VM, a job firing at its
//! scheduled minute by itself (the scheduler ticks every second here), and a run missed while
//! hostd was down running once at start-up.

#[allow(clippy::unwrap_used)]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Hostd;
use keel_api::task::TaskState;
use serde_json::{json, Value};

fn backups(h: &Hostd, vmid: u32, target: &str) -> Vec<Value> {
    h.get_json(&format!("/vms/{vmid}/backups?target={target}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ids(l: &[Value]) -> Vec<String> {
    l.iter()
        .filter_map(|b| b["id"].as_str().map(str::to_string))
        .collect()
}

/// The entries of a VM's directory on a target (backups, and anything left half-deleted).
fn on_disk(dir: &Path, vmid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(vmid.to_string()))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn err_message(r: reqwest::blocking::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let e: Value = r.json().unwrap_or_default();
    e["error"].clone()
}

/// `HH:MM` of the first local minute at least `min_s` seconds from now, and its Unix time.
fn next_minute(min_s: i64) -> (String, i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("{e}"))
        .as_secs() as i64;
    let t = (now + min_s).div_euclid(60) * 60 + 60;
    let out = Command::new("date")
        .args(["-d", &format!("@{t}"), "+%H:%M"])
        .output()
        .unwrap_or_else(|e| panic!("date: {e}"));
    assert!(out.status.success());
    (String::from_utf8_lossy(&out.stdout).trim().to_string(), t)
}

#[test]
fn backup_jobs_retention_schedule_and_failures() {
    let t_start = Instant::now();
    let mut h = Hostd::start_with_config("backup_scheduler_tick_ms = 1000");
    let (a, b, c, d) = (h.id(0), h.id(1), h.id(2), h.id(3));
    for (vmid, tag) in [(a, "a"), (b, "b"), (c, "c"), (d, "d")] {
        let r = h.post(
            "/vms",
            json!({"vmid": vmid, "name": format!("{}-j{tag}", h.prefix), "memory_mib": 128,
                   "disks": [{"pool": h.pool, "size_mib": 8, "format": "qcow2"}]}),
        );
        h.ok(r);
    }
    let t1 = h.dir.join("bk1");
    let t2 = h.dir.join("bk2");
    for (name, dir) in [("t1", &t1), ("t2", &t2)] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let r = h.post(
            "/backup-targets",
            json!({"name": name, "path": dir.display().to_string()}),
        );
        assert_eq!(r.status(), 201);
    }

    // ---- a job firing by itself at its minute (created first: the other steps run meanwhile)
    let (hhmm, at) = next_minute(10);
    let r = h.post(
        "/backup-jobs",
        json!({"id": "sched", "vms": [c], "target": "t2", "schedule": hhmm}),
    );
    assert_eq!(r.status(), 201);
    let j: Value = r.json().unwrap_or_default();
    assert_eq!(j["next_run"].as_i64(), Some(at), "{j}");

    // ---- bad definitions refused with the reason, nothing stored
    for (body, field, part) in [
        (
            json!({"id": "x", "vms": [a], "target": "t1", "schedule": "mon..fry 21:00"}),
            "schedule",
            "\"fry\" is not a weekday",
        ),
        (
            json!({"id": "x", "vms": [a], "target": "t1", "schedule": "25:00"}),
            "schedule",
            "out of range",
        ),
        (
            json!({"id": "x", "vms": [a, 999_999_999], "target": "t1", "schedule": "daily"}),
            "vms",
            "does not exist",
        ),
        (
            json!({"id": "x", "vms": [a], "target": "nope", "schedule": "daily"}),
            "target",
            "does not exist",
        ),
        (
            json!({"id": "x", "vms": [a], "target": "t1", "schedule": "daily", "retention": {}}),
            "retention.keep_last",
            "at least one",
        ),
        (
            json!({"id": "x", "target": "t1", "schedule": "daily"}),
            "vms",
            "give the VMs",
        ),
    ] {
        let e = err_message(h.post("/backup-jobs", body.clone()), 400);
        assert_eq!(e["field"], field, "{body}: {e}");
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains(part)),
            "{body}: {e}"
        );
    }
    assert_eq!(h.get_json("/backup-jobs").as_array().map(Vec::len), Some(1));

    // ---- a job over two VMs with keep-last 2, run three times
    let r = h.post(
        "/backup-jobs",
        json!({"id": "nightly", "vms": [a, b], "target": "t1", "schedule": "sat 02:30",
               "retention": {"keep_last": 2}}),
    );
    assert_eq!(r.status(), 201);
    let mut first: Vec<String> = Vec::new();
    for i in 0..3 {
        let t = h.ok(h.post_empty("/backup-jobs/nightly/run"));
        assert_eq!(t.kind, "backupjob");
        if i == 0 {
            first = ids(&backups(&h, a, "t1"));
            assert_eq!(first.len(), 1);
        }
    }
    for vmid in [a, b] {
        let l = backups(&h, vmid, "t1");
        assert_eq!(l.len(), 2, "VM {vmid}: {l:?}");
        assert_eq!(
            on_disk(&t1, vmid),
            ids(&l),
            "VM {vmid}: only the kept ones on disk"
        );
        for bk in &l {
            assert_eq!(bk["kind"], "full");
            let id = bk["id"].as_str().unwrap_or_default();
            h.ok(h.post_empty(&format!("/vms/{vmid}/backups/{id}/verify?target=t1")));
        }
        for bk in backups(&h, vmid, "t1") {
            assert_eq!(bk["verify_state"], "ok", "{bk}");
        }
    }
    assert!(
        !on_disk(&t1, a).contains(&first[0]),
        "the oldest backup was pruned"
    );
    let job = h.get_json("/backup-jobs/nightly");
    assert_eq!(job["last_run"]["state"], "ok", "{job}");
    assert!(job["next_run"].as_i64().is_some(), "{job}");

    // ---- prune: a policy keeping nothing refused, a dry run changes nothing
    let e = err_message(
        h.post(&format!("/vms/{a}/backups/prune"), json!({"target": "t1"})),
        400,
    );
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("at least one")),
        "{e}"
    );
    let r = h.post(
        &format!("/vms/{a}/backups/prune"),
        json!({"target": "t1", "keep_last": 1, "dry_run": true}),
    );
    assert_eq!(r.status(), 200);
    let p: Value = r.json().unwrap_or_default();
    let kept = ids(p["kept"].as_array().map(Vec::as_slice).unwrap_or_default());
    let removed = ids(p["removed"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default());
    let now = ids(&backups(&h, a, "t1"));
    assert_eq!(kept, vec![now[1].clone()], "{p}");
    assert_eq!(removed, vec![now[0].clone()], "{p}");
    assert_eq!(p["kept"][0]["reason"], "keep-last", "{p}");
    assert_eq!(backups(&h, a, "t1").len(), 2, "a dry run removes nothing");
    // deleting one backup by id
    let e = err_message(h.delete(&format!("/vms/{a}/backups/nope?target=t1")), 404);
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "{e}"
    );
    h.ok(h.delete(&format!("/vms/{a}/backups/{}?target=t1", now[0])));
    assert_eq!(on_disk(&t1, a), vec![now[1].clone()]);

    // ---- a verify job: makes no backup, re-reads every stored file, names a damaged one
    let e = err_message(
        h.post(
            "/backup-jobs",
            json!({"id": "check", "vms": [a, b], "target": "t1", "schedule": "sun 03:00",
                   "mode": "verify", "retention": {"keep_last": 1}}),
        ),
        400,
    );
    assert_eq!(e["field"], "retention", "{e}");
    let r = h.post(
        "/backup-jobs",
        json!({"id": "check", "vms": [a, b], "target": "t1", "schedule": "sun 03:00", "mode": "verify"}),
    );
    assert_eq!(r.status(), 201);
    assert_eq!(h.get_json("/backup-jobs/check")["config"]["mode"], "verify");
    let counts = |h: &Hostd| (backups(h, a, "t1").len(), backups(h, b, "t1").len());
    let before = counts(&h);
    let t = h.ok(h.post_empty("/backup-jobs/check/run"));
    assert_eq!(t.kind, "backupjob");
    assert_eq!(counts(&h), before, "a verify job makes no backup");
    let victim_id = ids(&backups(&h, b, "t1"))[0].clone();
    let victim = std::fs::read_dir(t1.join(b.to_string()).join(&victim_id))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "qcow2"))
        .unwrap_or_else(|| panic!("no qcow2 file in backup {victim_id}"));
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
    let t = h.task(h.post_empty("/backup-jobs/check/run"));
    assert_eq!(t.state, TaskState::Error);
    let msg = t.message.unwrap_or_default();
    assert!(
        msg.contains("1 of 2 VM(s) failed")
            && msg.contains(&format!("VM {b}"))
            && msg.contains("broken")
            && msg.contains(&victim_id),
        "{msg}"
    );
    for bk in backups(&h, b, "t1") {
        let want = if bk["id"] == victim_id.as_str() {
            "broken"
        } else {
            "ok"
        };
        assert_eq!(bk["verify_state"], want, "{bk}");
    }
    assert_eq!(backups(&h, a, "t1")[0]["verify_state"], "ok");
    assert_eq!(h.delete("/backup-jobs/check").status(), 204);

    // ---- a job over a VM that was deleted: failed with a summary, the other VM backed up
    let r = h.post(
        "/backup-jobs",
        json!({"id": "gone", "vms": [d, b], "target": "t1", "schedule": "daily"}),
    );
    assert_eq!(r.status(), 201);
    h.ok(h.delete(&format!("/vms/{d}?purge_volumes=true")));
    let t = h.task(h.post_empty("/backup-jobs/gone/run"));
    assert_eq!(t.state, TaskState::Error);
    let msg = t.message.unwrap_or_default();
    assert!(
        msg.contains("1 of 2 VM(s) failed") && msg.contains(&format!("VM {d}")),
        "{msg}"
    );
    assert_eq!(backups(&h, b, "t1").len(), 3, "VM {b} was backed up");
    let job = h.get_json("/backup-jobs/gone");
    assert_eq!(job["last_run"]["state"], "error", "{job}");
    assert!(
        job["last_run"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed")),
        "{job}"
    );
    assert_eq!(h.delete("/backup-jobs/gone").status(), 204);

    // ---- the scheduled job fires by itself at its minute, once
    let t_wait = Instant::now();
    h.wait_for("the scheduled job's run", 150, || {
        h.get_json("/backup-jobs/sched")["last_run"]["state"] == "ok"
    });
    let waited = t_wait.elapsed();
    let job = h.get_json("/backup-jobs/sched");
    let upid = job["last_run"]["upid"].clone();
    assert!(job["last_run"]["time"].as_i64().unwrap_or(0) >= at, "{job}");
    std::thread::sleep(Duration::from_millis(2500));
    let job = h.get_json("/backup-jobs/sched");
    assert_eq!(job["last_run"]["upid"], upid, "ran once: {job}");
    assert_eq!(job["next_run"].as_i64(), Some(at + 86_400), "{job}");
    assert_eq!(backups(&h, c, "t2").len(), 1);

    // ---- a run missed while hostd was down runs once at start-up
    h.kill();
    let db = rusqlite::Connection::open(h.dir.join("state").join("hostd.db"))
        .unwrap_or_else(|e| panic!("{e}"));
    db.execute(
        "UPDATE backup_jobs SET next_run = next_run - 3 * 86400 WHERE id = 'sched'",
        [],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    drop(db);
    h.crash_and_restart();
    h.wait_for("the missed run at start-up", 30, || {
        let j = h.get_json("/backup-jobs/sched");
        j["last_run"]["upid"] != upid && j["last_run"]["state"] == "ok"
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(backups(&h, c, "t2").len(), 2, "the missed run ran once");
    let job = h.get_json("/backup-jobs/sched");
    assert_eq!(job["next_run"].as_i64(), Some(at + 86_400), "{job}");
    eprintln!(
        "vm_backup_jobs: {:.1}s (of which {:.1}s waiting for the scheduled minute)",
        t_start.elapsed().as_secs_f64(),
        waited.as_secs_f64()
    );
}
