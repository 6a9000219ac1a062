//! Keel's backups against the raw engine (a measurement, not a test: nothing here asserts on
//! time; it fails only when an operation itself fails).
//!
//!   cargo bench -p keel-hostd --bench backup_vs_qemu_img     (as root, libvirtd running)
//!
//! One running VM (the live ISO, 256 MiB) with a qcow2 data disk of KEEL_BENCH_DISK_MIB
//! (default 1024) whose first half holds incompressible data, backed up to a dir target on
//! the same file system. Per round (KEEL_BENCH_ROUNDS, default 3):
//!   full     = POST /vms/{vmid}/backups {"full": true} until its task is ok (libvirt backup job,
//!              checkpoint, manifest with SHA-256 of every file)
//!     vs       `qemu-img convert -U -O qcow2` of the same live disk (no checkpoint, no checksum);
//!   incr     = ~1 % of the disk's clusters written by QEMU itself (HMP `qemu-io` on the
//!              running disk, so the dirty bitmap sees them), then an incremental backup
//!     vs       the full backup of the same round;
//!   restore  = POST /vms/{vmid}/backups/{full}/restore to a new VM (not started) until ok
//!     vs       `qemu-img convert -O qcow2` of the backup's disk file.
//! Medians and ratios are printed at the end, with hostd's peak RSS.

#[path = "../tests/common/mod.rs"]
mod common;

mod bench_util;
use bench_util::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{live_dir, Hostd};
use serde_json::{json, Value};

fn main() {
    let _ = NAME.set("backup_vs_qemu_img");
    preflight();
    let rounds = env_num("KEEL_BENCH_ROUNDS", 3);
    let disk_mib = env_num("KEEL_BENCH_DISK_MIB", 1024) as u64;
    if disk_mib < 64 {
        die("KEEL_BENCH_DISK_MIB must be at least 64");
    }
    let t_all = Instant::now();
    let h = Hostd::start();
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    let data = make_data_disk(&h.dir, disk_mib);
    h.upload(&data, "bench-data.qcow2");
    let _ = std::fs::remove_file(&data);
    let vmid = h.id(0);
    let name = format!("{}-bench", h.prefix);
    let _undefine = Undefine(name.clone());
    h.ok(h.post(
        "/vms?start=true",
        json!({
            "vmid": vmid, "name": name, "memory_mib": 256,
            "disks": [{"pool": h.pool, "volume": "bench-data.qcow2", "format": "qcow2"}],
            "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
            "boot": ["cdrom"]
        }),
    ));
    h.wait_for("the guest's boot line", 180, || {
        h.serial(vmid).contains("KEEL-LIVE: guest booted")
    });
    let live_disk = volume_path(&h, "bench-data.qcow2");
    let bkdir = h.dir.join("backups");
    std::fs::create_dir_all(&bkdir).unwrap_or_else(|e| die(&format!("{e}")));
    let r = h.post(
        "/backup-targets",
        json!({"name": "bench", "path": bkdir.display().to_string()}),
    );
    if r.status() != 201 {
        die(&format!(
            "adding the target: {}",
            r.text().unwrap_or_default()
        ));
    }
    let scratch = h.dir.join("convert.qcow2");
    let (mut full, mut conv, mut incr, mut restore, mut rconv) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut incr_bytes = 0u64;
    let mut full_bytes = 0u64;
    for round in 0..rounds {
        // full backup through the API
        let t0 = Instant::now();
        h.ok(h.post(
            &format!("/vms/{vmid}/backups"),
            json!({"target": "bench", "full": true}),
        ));
        let d_full = t0.elapsed();
        let list = backups(&h, vmid);
        let fb = list.last().cloned().unwrap_or_default();
        if fb["kind"] != "full" {
            die(&format!("expected a full backup, got {fb}"));
        }
        full_bytes = fb["size"].as_u64().unwrap_or(0);
        let full_id = fb["id"].as_str().unwrap_or_default().to_string();
        // the raw engine: a plain copy of the live disk
        let _ = std::fs::remove_file(&scratch);
        let t0 = Instant::now();
        run(Command::new("qemu-img")
            .args(["convert", "-U", "-O", "qcow2"])
            .arg(&live_disk)
            .arg(&scratch));
        let d_conv = t0.elapsed();
        // ~1 % of the disk dirtied by QEMU, then an incremental
        dirty_one_percent(&name, disk_mib);
        let t0 = Instant::now();
        h.ok(h.post(&format!("/vms/{vmid}/backups"), json!({"target": "bench"})));
        let d_incr = t0.elapsed();
        let ib = backups(&h, vmid).last().cloned().unwrap_or_default();
        if ib["kind"] != "incremental" {
            die(&format!("expected an incremental backup, got {ib}"));
        }
        incr_bytes = ib["size"].as_u64().unwrap_or(0);
        // restore the full backup into a new VM, against converting its file
        let nv = h.id(10 + round as u32);
        let t0 = Instant::now();
        h.ok(h.post(
            &format!("/vms/{vmid}/backups/{full_id}/restore"),
            json!({"target": "bench", "new_vmid": nv, "pool": h.pool,
                   "name": format!("{}-r{round}", h.prefix), "start": false}),
        ));
        let d_restore = t0.elapsed();
        let _ = std::fs::remove_file(&scratch);
        let t0 = Instant::now();
        run(Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(
                bkdir
                    .join(vmid.to_string())
                    .join(&full_id)
                    .join("vda.qcow2"),
            )
            .arg(&scratch));
        let d_rconv = t0.elapsed();
        h.ok(h.delete(&format!("/vms/{nv}?purge_volumes=true")));
        println!(
            "round {round}: full {} convert {} | incremental {} | restore {} convert {}",
            secs(d_full),
            secs(d_conv),
            secs(d_incr),
            secs(d_restore),
            secs(d_rconv)
        );
        full.push(d_full);
        conv.push(d_conv);
        incr.push(d_incr);
        restore.push(d_restore);
        rconv.push(d_rconv);
        // drop this round's backups (the incremental first: the full has a dependant)
        for b in backups(&h, vmid).iter().rev() {
            let id = b["id"].as_str().unwrap_or_default();
            // a task: wait for it before the parent's turn
            h.ok(h.delete(&format!("/vms/{vmid}/backups/{id}?target=bench")));
        }
    }
    let _ = std::fs::remove_file(&scratch);
    let med = |v: Vec<Duration>| pct(&sorted(v), 0.5);
    let (full, conv, incr, restore, rconv) =
        (med(full), med(conv), med(incr), med(restore), med(rconv));
    println!();
    println!(
        "disk {disk_mib} MiB ({} MiB data), {rounds} rounds, medians:",
        disk_mib / 2
    );
    println!(
        "  full live backup   {}   qemu-img convert -U  {}   ratio {}",
        secs(full),
        secs(conv),
        ratio(full, conv)
    );
    println!(
        "  incremental (~1 %) {}   full backup          {}   ratio {}   ({} of {} bytes)",
        secs(incr),
        secs(full),
        ratio(incr, full),
        incr_bytes,
        full_bytes
    );
    println!(
        "  restore (new VM)   {}   qemu-img convert     {}   ratio {}",
        secs(restore),
        secs(rconv),
        ratio(restore, rconv)
    );
    println!("  keel-hostd {}", peak_rss(h.pid()));
    h.ok(h.delete(&format!("/vms/{vmid}?purge_volumes=true")));
    println!("total bench time {:.1}s", t_all.elapsed().as_secs_f64());
}

/// If the bench stops half-way, the VM carries checkpoints that the harness's plain
/// `virsh undefine` refuses: drop them too.
struct Undefine(String);

impl Drop for Undefine {
    fn drop(&mut self) {
        let _ = common::virsh(&["destroy", &self.0]);
        let _ = common::virsh(&["undefine", "--checkpoints-metadata", "--nvram", &self.0]);
    }
}

fn run(cmd: &mut Command) {
    match cmd.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => die(&format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => die(&format!("{cmd:?}: {e}")),
    }
}

/// A qcow2 of `mib` MiB whose first half is incompressible (not zero-detected) data.
fn make_data_disk(dir: &Path, mib: u64) -> PathBuf {
    let raw = dir.join("bench-data.raw");
    run(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "status=none"])
        .arg(format!("of={}", raw.display()))
        .arg(format!("count={}", mib / 2)));
    run(Command::new("truncate")
        .args(["-s", &format!("{mib}M")])
        .arg(&raw));
    let out = dir.join("bench-data.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&out));
    let _ = std::fs::remove_file(&raw);
    out
}

/// Write ~1 % of the disk through the running QEMU (HMP `qemu-io` on the guest's own block
/// backend, named by the QOM path of the virtio-blk device inside libvirt's
/// `virtio-disk0` proxy), 64 KiB (one cluster) at a time, spread over the whole disk.
fn dirty_one_percent(domain: &str, disk_mib: u64) {
    let clusters = disk_mib * 16; // 64 KiB clusters
    let n = (clusters / 100).max(1);
    let step = clusters / n;
    let mut cmds = Vec::new();
    for i in 0..n {
        let off = i * step * 65536;
        cmds.push(format!("write -P 0x{:02x} {off} 64k", (i % 250) + 1));
    }
    for c in cmds {
        let (ok, out) = common::virsh(&[
            "qemu-monitor-command",
            domain,
            "--hmp",
            &format!("qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"{c}\""),
        ]);
        if !ok || out.to_lowercase().contains("error") {
            die(&format!("qemu-io {c}: {out}"));
        }
    }
}

fn backups(h: &Hostd, vmid: u32) -> Vec<Value> {
    h.get_json(&format!("/vms/{vmid}/backups?target=bench"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn volume_path(h: &Hostd, vol: &str) -> PathBuf {
    let content = h.get_json(&format!("/storage/{}/content", h.pool));
    content
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == vol))
        .and_then(|v| v["path"].as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| die(&format!("volume {vol} not in {content}")))
}
