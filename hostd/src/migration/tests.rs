//! The refusals and the XML rewrite of a migration, from the golden libvirt XML of a running
//! Keel VM (disk and CD-ROM on pool `local`).

#![allow(clippy::unwrap_used)]

use super::*;
use keel_api::network::NetworkKind;

const LIVE: &str = include_str!("../../tests/golden/parse/keel-demo-live.xml");

fn src() -> SourceVm {
    let parsed = crate::domain::parse(LIVE).unwrap();
    SourceVm {
        name: "demo".into(),
        vmid: parsed.spec.vmid,
        state: VmState::Running,
        parsed,
        snapshots: 0,
        thin_pools: vec![],
        san_pools: vec![],
    }
}

fn pool(name: &str, path: &str) -> PoolInfo {
    serde_json::from_value(serde_json::json!({
        "name": name, "kind": "dir", "path": path, "active": true,
        "capacity": 0, "allocation": 0, "available": 0
    }))
    .unwrap()
}

fn vol(name: &str, path: &str) -> VolumeInfo {
    serde_json::from_value(serde_json::json!({
        "name": name, "path": path, "format": "raw", "capacity": 0, "allocation": 0
    }))
    .unwrap()
}

fn target() -> TargetFacts {
    let s = src();
    let networks = s
        .parsed
        .spec
        .nics
        .iter()
        .filter_map(|n| n.network.clone())
        .map(|n| NetworkInfo {
            name: n,
            kind: NetworkKind::Nat,
            bridge: None,
            active: true,
            autostart: true,
            cidr: None,
            used_by: vec![],
        })
        .collect();
    TargetFacts {
        name: "node2".into(),
        host: "fd00::2".into(),
        memory_free: 64 * 1024 * MIB,
        networks,
        pools: vec![pool("local", "/srv/n2/images")],
        volumes: vec![(
            "local".into(),
            vec![vol("keel-live.iso", "/srv/n2/images/keel-live.iso")],
        )],
        cpu_models: vec![],
        shared_pools: vec![],
    }
}

fn refusal(r: Result<Plan>) -> (u16, String) {
    match r {
        Err(e) => (e.status().0, e.to_string()),
        Ok(p) => panic!("not refused: {p:?}"),
    }
}

#[test]
fn plan_copies_the_disk_and_maps_the_iso() {
    let p = plan("node1", &src(), &target(), 512).unwrap();
    assert!(p.live);
    assert_eq!(
        p.disks,
        vec![DiskMove {
            dev: "vda".into(),
            pool: "local".into(),
            volume: "vm-100-disk-0.qcow2".into(),
            src_path: "/tmp/k1/state/images/vm-100-disk-0.qcow2".into(),
            dst_path: "/srv/n2/images/vm-100-disk-0.qcow2".into(),
        }]
    );
    assert_eq!(
        p.media,
        vec![(
            "/tmp/k1/state/images/keel-live.iso".into(),
            "/srv/n2/images/keel-live.iso".into()
        )]
    );
    let x = retarget_xml(LIVE, &p).unwrap();
    assert!(
        x.contains("file=\"/srv/n2/images/vm-100-disk-0.qcow2\""),
        "{x}"
    );
    assert!(x.contains("file=\"/srv/n2/images/keel-live.iso\""));
    assert!(!x.contains("/tmp/k1/state/images"));
    // the rest of the definition is kept (Keel's metadata, the name)
    let back = crate::domain::parse(&x).unwrap();
    assert_eq!(back.spec.vmid, src().parsed.spec.vmid);
    assert_eq!(
        back.disk_paths,
        vec!["/srv/n2/images/vm-100-disk-0.qcow2".to_string()]
    );
}

#[test]
fn refusals_name_the_reason() {
    // the node itself
    let mut t = target();
    t.name = "node1".into();
    let (s, m) = refusal(plan("node1", &src(), &t, 512));
    assert!(s == 400 && m.contains("already runs on node1"), "{m}");
    // a network missing on the target
    if !src().parsed.spec.nics.is_empty() {
        let mut t = target();
        t.networks.clear();
        let (s, m) = refusal(plan("node1", &src(), &t, 512));
        assert!(s == 409 && m.contains("has no libvirt network"), "{m}");
    }
    // no pool of that name
    let mut t = target();
    t.pools = vec![pool("other", "/x")];
    let (s, m) = refusal(plan("node1", &src(), &t, 512));
    assert!(s == 409 && m.contains("no storage pool \"local\""), "{m}");
    // the volume exists there already
    let mut t = target();
    t.volumes[0].1.push(vol(
        "vm-100-disk-0.qcow2",
        "/srv/n2/images/vm-100-disk-0.qcow2",
    ));
    let (s, m) = refusal(plan("node1", &src(), &t, 512));
    assert!(s == 409 && m.contains("already has a volume"), "{m}");
    // the ISO missing there
    let mut t = target();
    t.volumes[0].1.clear();
    let (s, m) = refusal(plan("node1", &src(), &t, 512));
    assert!(s == 409 && m.contains("keel-live.iso"), "{m}");
    // memory
    let mut t = target();
    t.memory_free = 100 * MIB;
    let (s, m) = refusal(plan("node1", &src(), &t, 512));
    assert!(s == 409 && m.contains("100 MiB of free memory"), "{m}");
    // snapshots
    let mut v = src();
    v.snapshots = 2;
    let (s, m) = refusal(plan("node1", &v, &target(), 512));
    assert!(s == 409 && m.contains("snapshots would be lost"), "{m}");
    // a crashed VM
    let mut v = src();
    v.state = VmState::Crashed;
    let (s, _) = refusal(plan("node1", &v, &target(), 512));
    assert_eq!(s, 409);
    // a paused one moves live
    let mut v = src();
    v.state = VmState::Paused;
    assert!(plan("node1", &v, &target(), 512).unwrap().live);
    // a stopped VM moves offline (memory not needed)
    let mut v = src();
    v.state = VmState::Stopped;
    let mut t = target();
    t.memory_free = 0;
    assert!(!plan("node1", &v, &t, 512).unwrap().live);
    // a CPU model the target lacks (when its list is known)
    let mut v = src();
    v.parsed.spec.cpu_model = CpuModel::Named("Skylake-Server".into());
    let mut t = target();
    t.cpu_models = vec!["qemu64".into()];
    let (s, m) = refusal(plan("node1", &v, &t, 512));
    assert!(s == 409 && m.contains("Skylake-Server"), "{m}");
    // a disk on an lvm-thin pool here, or on one of that name there
    let mut v = src();
    v.thin_pools = vec!["local".into()];
    let (s, m) = refusal(plan("node1", &v, &target(), 512));
    assert!(s == 409 && m.contains("lvm-thin pool \"local\""), "{m}");
    let mut t = target();
    t.pools[0].kind = "lvm-thin".into();
    let (s, m) = refusal(plan("node1", &src(), &t, 512));
    assert!(s == 409 && m.contains("lvm-thin pool \"local\""), "{m}");
}

/// An `iscsi-lvm` disk never moves live (one node at a time holds its LV); offline it stays
/// where it is when the target sees the volume, and is refused when it does not.
#[test]
fn iscsi_lvm_disks_move_offline_only() {
    let mut v = src();
    v.san_pools = vec!["local".into()];
    let (s, m) = refusal(plan("node1", &v, &target(), 512));
    assert!(
        s == 409 && m.contains("iscsi-lvm pool \"local\"") && m.contains("offline"),
        "{m}"
    );
    v.state = VmState::Stopped;
    let (s, m) = refusal(plan("node1", &v, &target(), 512));
    assert!(s == 409 && m.contains("does not see volume"), "{m}");
    // the target sees the same LV: nothing to copy, the disk stays where it is
    let d = &v.parsed.spec.disks[0];
    let volume = d.volume.clone().unwrap();
    let mut t = target();
    let path = format!("/dev/keel-local/{volume}");
    match t.volumes.iter_mut().find(|(p, _)| p == "local") {
        Some((_, vols)) => vols.push(vol(&volume, &path)),
        None => t.volumes.push(("local".into(), vec![vol(&volume, &path)])),
    }
    let p = plan("node1", &v, &t, 512).unwrap();
    assert!(!p.live);
    assert!(p.disks.is_empty(), "{:?}", p.disks);
    assert_eq!(p.shared, [v.parsed.disk_targets[0].clone()]);
}

#[test]
fn api_host_strips_port_and_brackets() {
    assert_eq!(api_host("[fd00::2]:8006"), "fd00::2");
    assert_eq!(api_host("10.0.0.2:8006"), "10.0.0.2");
    assert_eq!(bracketed("fd00::2"), "[fd00::2]");
}

#[test]
fn a_disk_on_a_shared_pool_is_not_copied() {
    let mut t = target();
    t.shared_pools = vec!["local".into()];
    // the target must see the very volume
    let (code, m) = refusal(plan("node1", &src(), &t, 512));
    assert_eq!(code, 409);
    assert!(
        m.contains("does not see volume \"vm-100-disk-0.qcow2\" of shared pool \"local\""),
        "{m}"
    );
    t.volumes[0].1.push(vol(
        "vm-100-disk-0.qcow2",
        "/tmp/k1/state/images/vm-100-disk-0.qcow2",
    ));
    let p = plan("node1", &src(), &t, 512).unwrap();
    assert!(p.live);
    assert!(p.disks.is_empty(), "{:?}", p.disks);
    assert_eq!(p.shared, vec!["vda".to_string()]);
    let x = retarget_xml(LIVE, &p).unwrap();
    assert!(x.contains("file=\"/tmp/k1/state/images/vm-100-disk-0.qcow2\""));
}

#[test]
fn the_cloud_init_seed_is_copied_from_a_local_pool_and_found_on_a_shared_one() {
    let mut s = src();
    s.parsed.spec.cloud_init = Some(Default::default());
    let seed = "/tmp/k1/state/images/vm-100-cloudinit.iso";
    s.parsed.cloudinit_path = Some(seed.into());
    let p = plan("node1", &s, &target(), 512).unwrap();
    assert_eq!(
        p.seed,
        Some(("local".to_string(), "vm-100-cloudinit.iso".to_string()))
    );
    assert!(p.media.contains(&(
        seed.to_string(),
        "/srv/n2/images/vm-100-cloudinit.iso".to_string()
    )));
    // a volume of that name on the target: refused, nothing overwritten
    let mut t = target();
    t.volumes[0].1.push(vol(
        "vm-100-cloudinit.iso",
        "/srv/n2/images/vm-100-cloudinit.iso",
    ));
    let (code, m) = refusal(plan("node1", &s, &t, 512));
    assert_eq!(code, 409);
    assert!(m.contains("cloud-init seed's copy"), "{m}");
    // on a shared pool the target sees the same seed: not copied
    t.shared_pools = vec!["local".into()];
    t.volumes[0].1.push(vol(
        "vm-100-disk-0.qcow2",
        "/tmp/k1/state/images/vm-100-disk-0.qcow2",
    ));
    let p = plan("node1", &s, &t, 512).unwrap();
    assert_eq!(p.seed, None);
    assert!(p.media.contains(&(
        seed.to_string(),
        "/srv/n2/images/vm-100-cloudinit.iso".to_string()
    )));
}

#[test]
fn a_directly_booted_kernel_is_found_there_or_refused() {
    let parsed =
        crate::domain::parse(include_str!("../../tests/golden/render/kernel-boot.xml")).unwrap();
    let s = SourceVm {
        name: "appliance".into(),
        vmid: parsed.spec.vmid,
        state: VmState::Running,
        parsed,
        snapshots: 0,
        thin_pools: vec![],
        san_pools: vec![],
    };
    let mut t = target();
    t.pools = vec![pool("vmstore", "/srv/n2/vmstore")];
    t.volumes = vec![(
        "vmstore".into(),
        vec![
            vol("vmlinuz-live", "/srv/n2/vmstore/vmlinuz-live"),
            vol("initrd-live.gz", "/srv/n2/vmstore/initrd-live.gz"),
        ],
    )];
    let p = plan("node1", &s, &t, 160).unwrap();
    let x = retarget_xml(
        include_str!("../../tests/golden/render/kernel-boot.xml"),
        &p,
    )
    .unwrap();
    for want in [
        "<kernel>/srv/n2/vmstore/vmlinuz-live</kernel>",
        "<initrd>/srv/n2/vmstore/initrd-live.gz</initrd>",
    ] {
        assert!(x.contains(want), "{want}:\n{x}");
    }
    t.volumes[0].1.pop();
    let (code, m) = refusal(plan("node1", &s, &t, 160));
    assert!(
        code == 409 && m.contains("initrd-live.gz") && m.contains("boots directly"),
        "{m}"
    );
}
