//! The web UI end to end: a real hostd serving ui/dist, real libvirt/TCG guests, driven in
//! headless Chromium by ui/e2e/run.mjs (playwright-core): log in, create a VM booting the live
//! ISO through the wizard, watch its noVNC console change, stop and delete it, check tasks,
//! storage (upload), the demo VM's guest agent panel (host name, OS, addresses from the live
//! ISO's qemu-ga), the demo VM's and the node's performance graphs (uPlot canvases), session
//! expiry and logout; then ui/e2e/cluster.mjs on this standalone
//! node (cluster page empty state, node list, polling paused in a hidden tab); then
//! ui/e2e/clones.mjs (convert to template, template badge, a linked clone through the dialog);
//! then ui/e2e/backups.mjs (the Backups tab: back up now, verify, restore into a new VM and
//! over the VM itself);
//! then ui/e2e/hotplug.mjs (disks and NICs added and removed on a running VM, then the
//! Cloud-init tab);
//! then ui/e2e/backup_jobs.mjs (the Backup jobs page, the Backups tab's Prune… dialog, and
//! an sftp backup target added to an sshd the test starts);
//! ui/e2e/migrate.mjs (the Migrate dialog's refusal on a standalone node).
//!
//! Needs `ui/dist` (built by scripts/test.sh: `npm ci && npm run build` in ui/), node and
//! Debian's chromium.

mod common;

const UI_SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8Q4S8mH8d/SamZ93/4x03MLLDGW4l7VdKG+l+whOpS ui@keel";

use std::process::Command;

use common::{live_dir, repo_root, Hostd};
use serde_json::json;

#[test]
fn web_ui_in_headless_chromium() {
    let ui = repo_root().join("ui/dist");
    assert!(
        ui.join("index.html").exists(),
        "ui/dist is missing: build the UI first (cd ui && npm ci && npm run build); scripts/test.sh does"
    );
    let h = Hostd::start_with_ui(&ui);
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");

    // The UI serves index.html at / and for client-side routes; API paths stay JSON.
    let r = h
        .client
        .get(h.url("/vms/123"))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    assert!(
        r.text().unwrap_or_default().contains("<div id=\"app\""),
        "index.html for client routes"
    );
    let r = h
        .client
        .get(h.url("/api/v1/nope"))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 404);

    // A running VM for the pages that look at an existing guest.
    let demo = h.id(0);
    let demo_name = format!("{}-demo", h.prefix);
    h.ok(h.post(
        "/vms?start=true",
        json!({"vmid": demo, "name": demo_name, "memory_mib": 128, "cdrom": {"pool": h.pool, "volume": "keel-live.iso"},
               "guest_agent": true}),
    ));
    h.wait_for("the demo guest's boot marker", 180, || {
        h.serial(demo).contains("KEEL-LIVE: guest booted")
    });

    h.run_ui_script(
        "run.mjs",
        &[
            ("KEEL_UI_POOL", h.pool.clone()),
            ("KEEL_UI_DEMO_NAME", demo_name.clone()),
            ("KEEL_UI_DEMO_VMID", demo.to_string()),
            ("KEEL_UI_VMID", h.id(1).to_string()),
            ("KEEL_UI_VM_NAME", format!("{}-ui", h.prefix)),
        ],
    );

    // The cluster page and node list on this standalone node: the empty state with the
    // `keel cluster init` command, the node alone in the list, polling every 3 s that pauses
    // in a hidden tab (ui/e2e/cluster.mjs; the netns lab runs it against a real cluster).
    h.run_ui_script("cluster.mjs", &[("KEEL_EXPECT_STANDALONE", "1".into())]);

    // The Migrate dialog on this standalone node (ui/e2e/migrate.mjs): its own check of a bad
    // bandwidth, then the server's refusal (no other member) shown; the demo VM stays here.
    h.run_ui_script("migrate.mjs", &[("KEEL_MIGRATE_VMID", demo.to_string())]);
    let st = h.get_json(&format!("/vms/{demo}/status/current"));
    assert_eq!(
        st["state"], "running",
        "the refused migration changed the VM: {st}"
    );

    // The Snapshots tab and the disk resize action (ui/e2e/snapshots.mjs) on a stopped VM with
    // one qcow2 disk, and a clone from its snapshot through the snapshot's Clone… action.
    let (snap_vm, snap_clone) = (h.id(4), h.id(9));
    h.ok(h.post(
        "/vms",
        json!({"vmid": snap_vm, "name": format!("{}-snap", h.prefix), "memory_mib": 64,
               "disks": [{"pool": h.pool, "size_mib": 16, "format": "qcow2"}]}),
    ));
    h.run_ui_script(
        "snapshots.mjs",
        &[
            ("KEEL_UI_VMID", snap_vm.to_string()),
            ("KEEL_UI_CLONE_VMID", snap_clone.to_string()),
        ],
    );
    let c = h.get_json(&format!("/vms/{snap_clone}"));
    assert_eq!(
        c["spec"]["disks"][0]["volume"],
        format!("vm-{snap_clone}-disk-0.qcow2"),
        "the clone made from the snapshot through the UI: {c}"
    );
    assert_eq!(
        h.get_json(&format!("/vms/{snap_clone}/snapshots")),
        json!([]),
        "a clone has no snapshots"
    );
    h.ok(h.delete(&format!("/vms/{snap_clone}?purge_volumes=true")));
    let (ok, snaps) = common::virsh(&["snapshot-list", "--name", &format!("{}-snap", h.prefix)]);
    assert!(
        ok && snaps.trim() == "first",
        "libvirt's snapshots after the UI run: {snaps}"
    );
    h.ok(h.delete(&format!("/vms/{snap_vm}?purge_volumes=true")));

    // Templates and clones (ui/e2e/clones.mjs): a stopped VM with a disk is converted to a
    // template on its page, shows the badge there and in the list, and is linked-cloned
    // through the Clone dialog.
    let (src, clone) = (h.id(2), h.id(3));
    h.ok(h.post(
        "/vms",
        json!({"vmid": src, "name": format!("{}-tpl", h.prefix), "memory_mib": 64,
               "disks": [{"pool": h.pool, "size_mib": 8}]}),
    ));
    h.run_ui_script(
        "clones.mjs",
        &[
            ("KEEL_CLONE_SRC", src.to_string()),
            ("KEEL_CLONE_VMID", clone.to_string()),
            ("KEEL_CLONE_NAME", format!("{}-lnk", h.prefix)),
        ],
    );
    h.ok(h.delete(&format!("/vms/{clone}?purge_volumes=true")));
    h.ok(h.delete(&format!("/vms/{src}?purge_volumes=true")));

    // The Backups tab (ui/e2e/backups.mjs): a stopped VM with one qcow2 disk and a dir target
    // made through the API; a full backup taken, listed, verified and restored into a new VM
    // through the UI.
    let (bk_vm, bk_new) = (h.id(5), h.id(6));
    let bk_dir = h.dir.join("backups");
    std::fs::create_dir_all(&bk_dir).unwrap_or_else(|e| panic!("{}: {e}", bk_dir.display()));
    let bk_target = format!("{}-bk", h.prefix);
    let r = h.post(
        "/backup-targets",
        json!({"name": bk_target, "kind": "dir", "path": bk_dir.to_string_lossy()}),
    );
    assert_eq!(
        r.status(),
        201,
        "add target: {}",
        r.text().unwrap_or_default()
    );
    h.ok(h.post(
        "/vms",
        json!({"vmid": bk_vm, "name": format!("{}-bk", h.prefix), "memory_mib": 64,
               "disks": [{"pool": h.pool, "size_mib": 16, "format": "qcow2"}]}),
    ));
    let vol_before = h.get_json(&format!("/vms/{bk_vm}"))["spec"]["disks"][0]["volume"].clone();
    h.run_ui_script(
        "backups.mjs",
        &[
            ("KEEL_UI_VMID", bk_vm.to_string()),
            ("KEEL_BACKUP_TARGET", bk_target.clone()),
            ("KEEL_RESTORE_VMID", bk_new.to_string()),
            ("KEEL_RESTORE_NAME", format!("{}-bkr", h.prefix)),
        ],
    );
    let (ok, _) = common::virsh(&["dominfo", &format!("{}-bkr", h.prefix)]);
    assert!(
        ok,
        "the VM restored through the UI is not defined in libvirt"
    );
    // restored over itself through the dialog: the VM runs on a new volume, the old one gone
    let vol_after = h.get_json(&format!("/vms/{bk_vm}"))["spec"]["disks"][0]["volume"].clone();
    assert!(
        vol_before.is_string() && vol_after.is_string() && vol_before != vol_after,
        "restore over the VM: disk volume {vol_before} → {vol_after}"
    );
    h.ok(h.delete(&format!("/vms/{bk_new}?purge_volumes=true")));
    h.ok(h.delete(&format!("/vms/{bk_vm}?purge_volumes=true")));
    let r = h.delete(&format!("/backup-targets/{bk_target}"));
    assert_eq!(
        r.status(),
        204,
        "remove target: {}",
        r.text().unwrap_or_default()
    );

    // Hot-plug from the Hardware tab (ui/e2e/hotplug.mjs): a running live guest with one disk
    // gets a virtio disk and a NIC attached live and removed again, no pending badge; a SATA
    // disk is reported pending, with the badge.
    let hp_vm = h.id(7);
    let hp_name = format!("{}-hp", h.prefix);
    let hp_br = format!("{}u", &h.prefix[..h.prefix.len().min(12)]);
    let st = Command::new("ip")
        .args(["link", "add", &hp_br, "type", "bridge"])
        .status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "ip link add {hp_br} type bridge failed (root needed)"
    );
    h.ok(h.post(
        "/vms?start=true",
        json!({"vmid": hp_vm, "name": hp_name, "memory_mib": 128,
               "disks": [{"pool": h.pool, "size_mib": 16}],
               "cdrom": {"pool": h.pool, "volume": "keel-live.iso"}, "boot": ["cdrom", "disk0"]}),
    ));
    h.wait_for("the hot-plug guest's device line", 180, || {
        h.serial(hp_vm).contains("KEEL-LIVE: disks: vda=")
    });
    h.run_ui_script(
        "hotplug.mjs",
        &[
            ("KEEL_UI_VMID", hp_vm.to_string()),
            ("KEEL_UI_BRIDGE", hp_br.clone()),
            ("KEEL_UI_SSH_KEY", UI_SSH_KEY.to_string()),
        ],
    );
    // what the Cloud-init tab saved, and the seed hostd wrote
    let ci = h.get_json(&format!("/vms/{hp_vm}"))["spec"]["cloud_init"].clone();
    assert_eq!(
        ci,
        serde_json::json!({"hostname": "ui-ci-1", "user": "ops", "ssh_keys": [UI_SSH_KEY]}),
        "cloud-init settings saved by the UI"
    );
    let seed = format!("vm-{hp_vm}-cloudinit.iso");
    assert!(
        h.get_json(&format!("/storage/{}/content", h.pool))
            .to_string()
            .contains(&seed),
        "no seed {seed} in the pool after the UI saved cloud-init settings"
    );
    let (_, xml) = common::virsh(&["dumpxml", &hp_name]);
    assert!(
        !xml.contains("<interface") && !xml.contains("<target dev='vdb'"),
        "the live domain still has the removed NIC or disk: {xml}"
    );
    h.ok(h.post_empty(&format!("/vms/{hp_vm}/status/stop")));
    h.ok(h.delete(&format!("/vms/{hp_vm}?purge_volumes=true")));
    let _ = Command::new("ip").args(["link", "del", &hp_br]).status();

    // Backup jobs and prune (ui/e2e/backup_jobs.mjs): a stopped VM and a dir target made
    // through the API; a job created, run twice, the VM's backups pruned, the job edited and
    // deleted through the UI.
    let bj_vm = h.id(8);
    let bj_dir = h.dir.join("backup-jobs");
    std::fs::create_dir_all(&bj_dir).unwrap_or_else(|e| panic!("{}: {e}", bj_dir.display()));
    let bj_target = format!("{}-bj", h.prefix);
    let r = h.post(
        "/backup-targets",
        json!({"name": bj_target, "kind": "dir", "path": bj_dir.to_string_lossy()}),
    );
    assert_eq!(
        r.status(),
        201,
        "add target: {}",
        r.text().unwrap_or_default()
    );
    h.ok(h.post(
        "/vms",
        json!({"vmid": bj_vm, "name": format!("{}-bj", h.prefix), "memory_mib": 64,
               "disks": [{"pool": h.pool, "size_mib": 16, "format": "qcow2"}]}),
    ));
    // the Backup targets section adds an sftp target to a real sshd on loopback
    let sshd = common::sshd::Sshd::new(&h.dir.join("sshd"));
    // hostd takes sftp keys only from <state>/backup-keys
    let keys = h.dir.join("state/backup-keys");
    std::fs::create_dir_all(&keys).unwrap_or_else(|e| panic!("{e}"));
    let key = keys.join("ui");
    std::fs::copy(sshd.key(), &key).unwrap_or_else(|e| panic!("{e}"));
    h.run_ui_script(
        "backup_jobs.mjs",
        &[
            ("KEEL_UI_VMID", bj_vm.to_string()),
            ("KEEL_BACKUP_TARGET", bj_target.clone()),
            ("KEEL_JOB_ID", format!("{}-job", h.prefix)),
            ("KEEL_SFTP_LOCATION", sshd.location()),
            ("KEEL_SFTP_KEY", key.display().to_string()),
            ("KEEL_SFTP_FINGERPRINT", sshd.fingerprint()),
        ],
    );
    let sftp_target = format!("{bj_target}-sftp");
    let tl = h.get_json("/backup-targets");
    let st = tl
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|t| t["name"] == sftp_target.as_str())
                .cloned()
        })
        .unwrap_or_else(|| panic!("the sftp target added through the UI is not listed: {tl}"));
    assert_eq!(st["kind"], "sftp", "{st}");
    assert_eq!(
        st["host_key_fingerprint"],
        sshd.fingerprint().as_str(),
        "{st}"
    );
    let r = h.delete(&format!("/backup-targets/{sftp_target}"));
    assert_eq!(
        r.status(),
        204,
        "remove target: {}",
        r.text().unwrap_or_default()
    );
    drop(sshd);
    // what the UI did, checked through the API: one backup left, no job
    let left = h.get_json(&format!("/vms/{bj_vm}/backups?target={bj_target}"));
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
    assert_eq!(h.get_json("/backup-jobs").as_array().map(Vec::len), Some(0));
    h.ok(h.delete(&format!("/vms/{bj_vm}?purge_volumes=true")));
    let r = h.delete(&format!("/backup-targets/{bj_target}"));
    assert_eq!(
        r.status(),
        204,
        "remove target: {}",
        r.text().unwrap_or_default()
    );

    h.ok(h.post_empty(&format!("/vms/{demo}/status/stop")));
    h.ok(h.delete(&format!("/vms/{demo}")));
}
