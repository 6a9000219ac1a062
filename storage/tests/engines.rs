//! keel-storage against the real engines' own parsers and tools, on this host:
//! * DRBD `.res` goldens, each accepted by `drbdadm-84 dump` (drbd-utils' 8.4 parser);
//! * the Pacemaker stacks of a `drbd-gfs2` and an `iscsi-*` cluster as goldens, each accepted
//!   by `crm_verify` in a whole CIB with Keel's fencing;
//! * the device-safety probe on loop devices: blank, file system, LVM PV, mounted, missing,
//!   too small, and a wipe;
//! * `mkfs.gfs2` with Keel's arguments on a loop device (lock table and journals read back),
//!   and the LVM filter judged by `pvs` itself.
//!
//! Root is required (loop devices); the tests fail, never skip, without it. `KEEL_BLESS=1`
//! rewrites the goldens.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use clusterd::cib::{self, ClusterProperties};
use clusterd::fence::{FenceAgent, FenceDevice, Secret};
use keel_runner::System;
use keel_storage::device;
use keel_storage::drbd::{DrbdPeer, DrbdResource, DRBDADM};
use keel_storage::gfs2::Gfs2;
use keel_storage::lvm::{self, Activation};
use keel_storage::stack::{self, PoolStack};

fn golden(name: &str, text: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(&p, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (KEEL_BLESS=1 to create)", p.display()));
    assert_eq!(text, want, "golden {name} differs (KEEL_BLESS=1 to accept)");
}

fn sh(argv: &[&str]) -> (bool, String) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test.sh installs it)", argv[0]));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn pair(dual: bool) -> DrbdResource {
    DrbdResource {
        name: "vmstore".into(),
        minor: 0,
        port: 7789,
        peers: vec![
            DrbdPeer {
                node: "node1".into(),
                address: "10.77.0.11".parse().unwrap(),
                disk: "/dev/vdb".into(),
            },
            DrbdPeer {
                node: "node2".into(),
                address: "10.77.0.12".parse().unwrap(),
                disk: "/dev/disk/by-id/virtio-keel-drbd".into(),
            },
        ],
        dual_primary: dual,
        shared_secret: "lab-secret-0123456789".into(),
        resync_max_kib: 102_400,
    }
}

#[test]
fn drbd_res_golden_and_accepted_by_drbdadm() {
    let dir = tempfile::tempdir().unwrap();
    for (name, dual) in [("vmstore-sync.res", false), ("vmstore-dual.res", true)] {
        let r = pair(dual);
        r.validate().unwrap();
        let text = r.render();
        golden(name, &text);
        let f = dir.path().join(name);
        std::fs::write(&f, &text).unwrap();
        let (ok, out) = sh(&[DRBDADM, "-c", f.to_str().unwrap(), "dump"]);
        assert!(ok, "drbdadm-84 rejects {name}:\n{out}");
        for want in [
            "protocol           C;",
            "after-sb-0pri    discard-zero-changes;",
            "after-sb-1pri    discard-secondary;",
            "after-sb-2pri    disconnect;",
            "fencing          resource-and-stonith;",
            "fence-peer       /usr/lib/drbd/crm-fence-peer.sh;",
            "address          ipv4 10.77.0.12:7789;",
        ] {
            assert!(
                out.contains(want),
                "{want:?} not in drbdadm's reading:\n{out}"
            );
        }
        assert_eq!(out.contains("allow-two-primaries yes"), dual, "{out}");
    }
    // drbdadm's parser is a real check: a broken file is refused.
    let f = dir.path().join("broken.res");
    std::fs::write(
        &f,
        pair(false).render().replace("protocol C;", "protocol Q;"),
    )
    .unwrap();
    assert!(!sh(&[DRBDADM, "-c", f.to_str().unwrap(), "dump"]).0);
}

fn ipmi(node: &str, n: u32) -> FenceDevice {
    FenceDevice {
        id: format!("fence-{node}"),
        node: node.into(),
        agent: FenceAgent::Ipmilan {
            ip: format!("10.99.0.{n}"),
            port: None,
            username: "keel".into(),
            password: Secret::new("bmc-secret"),
            lanplus: true,
            privlvl: Some("operator".into()),
        },
        delay_s: if n == 1 { Some(10) } else { None },
        action: None,
    }
}

fn crm_verify(doc: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cib.xml");
    std::fs::write(&f, doc).unwrap();
    sh(&["crm_verify", "--xml-file", f.to_str().unwrap(), "-V"])
}

fn stack_document(nodes: u32, pools: &[PoolStack]) -> String {
    stack_document_with(nodes, pools, vec![], vec![])
}

/// [`stack_document`] with more resources and constraints (HA VMs, test-only bans).
fn stack_document_with(
    nodes: u32,
    pools: &[PoolStack],
    more_rs: Vec<keel_xml::Element>,
    more_cs: Vec<keel_xml::Element>,
) -> String {
    let (mut rs, mut cs) = (Vec::new(), Vec::new());
    for p in pools {
        let (r, c) = p.render();
        rs.extend(r);
        cs.extend(c);
    }
    rs.extend(more_rs);
    cs.extend(more_cs);
    document_of(nodes, rs, cs)
}

/// A whole CIB of `nodes` members with Keel's fence devices, the lock layer and `rs`/`cs`.
fn document_of(
    nodes: u32,
    more_rs: Vec<keel_xml::Element>,
    more_cs: Vec<keel_xml::Element>,
) -> String {
    let members: Vec<(u32, String)> = (1..=nodes).map(|i| (i, format!("node{i}"))).collect();
    let devices: Vec<FenceDevice> = members.iter().map(|(i, n)| ipmi(n, *i)).collect();
    let props = ClusterProperties::for_size("lab", nodes as usize);
    let mut doc = cib::verification_document(&members, &props, &devices);
    let (mut rs, mut cs) = stack::lock_layer();
    rs.extend(more_rs);
    cs.extend(more_cs);
    let conf = doc
        .children
        .iter_mut()
        .find(|c| c.name == "configuration")
        .unwrap();
    for c in conf.children.iter_mut() {
        if c.name == "resources" {
            c.children.extend(rs.clone());
        }
        if c.name == "constraints" {
            c.children.extend(cs.clone());
        }
    }
    doc.render()
}

#[test]
fn pool_stacks_golden_and_accepted_by_crm_verify() {
    let drbd = PoolStack {
        pool: "vmstore".into(),
        drbd: Some("vmstore".into()),
        vg: "keel-vmstore".into(),
        lv: Some(("fs".into(), Activation::Shared)),
        mountpoint: Some("/var/lib/keel/pools/vmstore".into()),
        nodes: vec!["node1".into(), "node2".into()],
    };
    let iscsi_gfs2 = PoolStack {
        pool: "shared".into(),
        drbd: None,
        vg: "keel-shared".into(),
        lv: Some(("fs".into(), Activation::Shared)),
        mountpoint: Some("/var/lib/keel/pools/shared".into()),
        nodes: vec!["node1".into(), "node2".into(), "node3".into()],
    };
    let iscsi_lvm = PoolStack {
        pool: "rawdisks".into(),
        drbd: None,
        vg: "keel-rawdisks".into(),
        lv: None,
        mountpoint: None,
        nodes: vec!["node1".into(), "node2".into(), "node3".into()],
    };
    for (name, nodes, pools) in [
        ("two-drbd-gfs2.xml", 2, vec![drbd]),
        ("three-iscsi.xml", 3, vec![iscsi_gfs2, iscsi_lvm]),
    ] {
        let doc = stack_document(nodes, &pools);
        golden(name, &doc);
        let (ok, out) = crm_verify(&doc);
        assert!(ok, "crm_verify rejects {name}:\n{out}\n{doc}");
    }
    // crm_verify is a real check: a colocation naming a resource that does not exist fails.
    let doc = stack_document(2, &[]).replace(
        "</constraints>",
        "<rsc_colocation id=\"bad\" rsc=\"nope\" with-rsc=\"dlm-clone\" score=\"INFINITY\"/></constraints>",
    );
    assert!(
        !crm_verify(&doc).0,
        "crm_verify accepted a dangling colocation"
    );
}

/// An HA VM on a cluster pool, in Pacemaker's own scheduler (`crm_simulate` on a whole CIB with
/// the pool's stack, both nodes members): the VM prefers node2, but the pool's file system cannot run there — with
/// the storage constraints hostd adds the VM is placed on node1, without them on node2 (where
/// its disk would be missing).
#[test]
fn an_ha_vm_on_a_cluster_pool_runs_only_where_its_file_system_does() {
    use clusterd::ha;
    use keel_xml::Element;
    let pool = shared_pool_on_two();
    let vm = ha_vm(100);
    let bans = || {
        vec![
            Element::new("rsc_location")
                .attr("id", "test-no-fs-on-node2")
                .attr("rsc", pool.fs_clone_id())
                .attr("node", "node2")
                .attr("score", "-INFINITY"),
            Element::new("rsc_location")
                .attr("id", "test-vm-prefers-node2")
                .attr("rsc", ha::resource_id(100))
                .attr("node", "node2")
                .attr("score", "1000"),
        ]
    };
    let placed = |with_storage: bool| -> Option<String> {
        let mut cs = bans();
        if with_storage {
            cs.extend(ha::storage_constraints(100, &[pool.fs_clone_id()]));
        }
        let doc = stack_document_with(2, std::slice::from_ref(&pool), vec![ha::primitive(&vm)], cs);
        let (ok, out) = crm_verify(&doc);
        assert!(
            ok,
            "crm_verify rejects the HA VM on the pool:\n{out}\n{doc}"
        );
        simulated_vm_node(&doc, 100)
    };
    assert_eq!(placed(true).as_deref(), Some("node1"));
    // the negative control: the same CIB without them puts the VM where the pool is not
    assert_eq!(placed(false).as_deref(), Some("node2"));
}

/// An `iscsi-gfs2`-like pool `shared` on node1 and node2.
fn shared_pool_on_two() -> PoolStack {
    PoolStack {
        pool: "shared".into(),
        drbd: None,
        vg: "keel-shared".into(),
        lv: Some(("fs".into(), Activation::Shared)),
        mountpoint: Some("/var/lib/keel/pools/shared".into()),
        nodes: vec!["node1".into(), "node2".into()],
    }
}

/// HA VM `vmid`, started.
fn ha_vm(vmid: u32) -> clusterd::ha::HaVm {
    clusterd::ha::HaVm {
        vmid,
        config: format!("/var/lib/keel/ha/{vmid}.xml"),
        priority: 0,
        max_restarts: 3,
        started: true,
        remoteuri: None,
        migrate_extra: None,
    }
}

/// Where Pacemaker's scheduler (`crm_simulate` on the whole CIB `doc`) starts HA VM `vmid`.
fn simulated_vm_node(doc: &str, vmid: u32) -> Option<String> {
    use clusterd::ha;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cib.xml");
    // the simulation writes its results into the document, which this Pacemaker refuses
    // for a newer feature set than its own: let it stamp its own
    let sim_doc = doc.replacen(r#"crm_feature_set="3.17.4" "#, "", 1);
    assert_ne!(
        sim_doc, doc,
        "the verification document's feature set changed"
    );
    std::fs::write(&f, &sim_doc).unwrap();
    let (ok, out) = sh(&[
        "crm_simulate",
        "--xml-file",
        f.to_str().unwrap(),
        "--simulate",
        "--output-as=xml",
    ]);
    assert!(ok, "crm_simulate failed:\n{out}");
    let sim = ha::parse_simulation(&out).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    sim.into_iter()
        .find(|s| s.vmid == vmid)
        .and_then(|s| s.after)
}

/// A pool made on node1 and node2 of a three-node cluster (node3 joined later), in Pacemaker's
/// own scheduler: an HA VM on the pool that prefers node3 is not started there, because the
/// pool's clones are pinned to its nodes (`resource-discovery=exclusive`) and the VM runs only
/// where its file system does; the negative control, the same CIB without the pins, puts an
/// instance of the file system, and the VM, on node3, where the LUN is not logged in.
#[test]
fn a_pools_clones_never_go_to_a_node_outside_it() {
    use clusterd::ha;
    use keel_xml::Element;
    let pool = shared_pool_on_two();
    let vm = ha_vm(101);
    let placed = |pinned: bool| -> Option<String> {
        let (mut rs, mut cs) = pool.render();
        let pins = cs.iter().filter(|c| c.name == "rsc_location").count();
        assert_eq!(pins, 4, "two clones, two nodes each");
        if !pinned {
            cs.retain(|c| c.name != "rsc_location");
        }
        cs.extend(ha::storage_constraints(101, &[pool.fs_clone_id()]));
        cs.push(
            Element::new("rsc_location")
                .attr("id", "test-vm-prefers-node3")
                .attr("rsc", ha::resource_id(101))
                .attr("node", "node3")
                .attr("score", "1000"),
        );
        rs.push(ha::primitive(&vm));
        let doc = document_of(3, rs, cs);
        let (ok, out) = crm_verify(&doc);
        assert!(ok, "crm_verify rejects the pinned pool:\n{out}\n{doc}");
        simulated_vm_node(&doc, 101)
    };
    let with = placed(true);
    assert!(
        matches!(with.as_deref(), Some("node1") | Some("node2")),
        "pinned: the VM on {with:?}"
    );
    assert_eq!(placed(false).as_deref(), Some("node3"), "the control");
}

/// A loop device over a sparse file, detached on drop.
struct Loop {
    dev: String,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn new(mib: u64) -> Loop {
        assert!(
            rustix_is_root(),
            "these tests need root (loop devices): run them as root, as scripts/test.sh does"
        );
        let dir = tempfile::tempdir().unwrap();
        let img: PathBuf = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let (ok, out) = sh(&["losetup", "-f", "--show", img.to_str().unwrap()]);
        assert!(ok, "losetup: {out}");
        Loop {
            dev: out.trim().to_string(),
            _dir: dir,
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn rustix_is_root() -> bool {
    sh(&["id", "-u"]).1.trim() == "0"
}

const LVM_NO_UDEV: &str =
    "devices{obtain_device_list_from_udev=0} activation{udev_sync=0 udev_rules=0}";

#[test]
fn device_probe_on_loop_devices() {
    let r = System;
    let lp = Loop::new(64);
    let d = &lp.dev;
    // blank
    let f = device::probe(&r, "here", d).unwrap();
    assert_eq!(f.size_bytes, 64 << 20);
    assert!(
        device::check("here", &f, 32 << 20, false)
            .unwrap()
            .is_none(),
        "{f:?}"
    );
    // too small
    let e = device::check("here", &f, 128 << 20, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has 64 MiB, the pool needs at least 128 MiB"),
        "{e}"
    );
    // a file system: refused, untouched, until --wipe
    assert!(sh(&["mkfs.ext4", "-q", "-F", d]).0);
    let f = device::probe(&r, "here", d).unwrap();
    let e = device::check("here", &f, 1, false).unwrap_err().to_string();
    assert!(
        e.contains("holds ext4") && e.contains("nothing was changed"),
        "{e}"
    );
    assert!(
        sh(&["blkid", "-p", d]).1.contains("TYPE=\"ext4\""),
        "the check changed the disk"
    );
    // mounted: refused even with --wipe
    let mnt = tempfile::tempdir().unwrap();
    let (ok, out) = sh(&["mount", d, mnt.path().to_str().unwrap()]);
    assert!(ok, "mount: {out}");
    let f = device::probe(&r, "here", d);
    let _ = sh(&["umount", mnt.path().to_str().unwrap()]);
    let e = device::check("here", &f.unwrap(), 1, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mounted at") && e.contains("never"), "{e}");
    // --wipe: exactly wipefs -a, then blank
    let f = device::probe(&r, "here", d).unwrap();
    let wipe = device::check("here", &f, 1, true).unwrap().unwrap();
    use keel_runner::Runner;
    r.run_ok(&wipe).unwrap();
    let f = device::probe(&r, "here", d).unwrap();
    assert!(f.signatures.is_empty(), "{f:?}");
    // an LVM PV is a signature too
    let (ok, out) = sh(&["pvcreate", "--config", LVM_NO_UDEV, d]);
    assert!(ok, "pvcreate: {out}");
    let f = device::probe(&r, "here", d).unwrap();
    let e = device::check("here", &f, 1, false).unwrap_err().to_string();
    assert!(e.contains("LVM2_member"), "{e}");
    let _ = sh(&["pvremove", "--config", LVM_NO_UDEV, "-ff", "-y", d]);
    // missing
    let e = device::probe(&r, "here", "/dev/keel-no-such-disk")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node here: /dev/keel-no-such-disk is not a block device"),
        "{e}"
    );
}

#[test]
fn lvm_filter_judged_by_pvs() {
    let lp = Loop::new(64);
    let d = &lp.dev;
    let (ok, out) = sh(&["pvcreate", "--config", LVM_NO_UDEV, d]);
    assert!(ok, "pvcreate: {out}");
    let pvs = |filter: &str| {
        let conf = format!("{LVM_NO_UDEV} devices{{{filter}}}");
        sh(&["pvs", "--noheadings", "-o", "pv_name", "--config", &conf]).1
    };
    // The DRBD node's filter: the backing disk is invisible to LVM under any name.
    let hidden = pvs(&lvm::global_filter(&[]));
    assert!(
        !hidden.contains(d.as_str()),
        "{d} visible through the filter:\n{hidden}"
    );
    // Named, it is seen.
    let seen = pvs(&lvm::global_filter(&[d]));
    assert!(
        seen.contains(d.as_str()),
        "{d} not visible when accepted:\n{seen}"
    );
    let _ = sh(&["pvremove", "--config", LVM_NO_UDEV, "-ff", "-y", d]);
}

#[test]
fn mkfs_gfs2_with_keels_arguments() {
    let lp = Loop::new(256);
    let g = Gfs2::for_nodes("lab", "vmstore", &lp.dev, 2);
    g.validate().unwrap();
    let argv = g.mkfs().to_argv();
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (ok, out) = sh(&args);
    assert!(ok, "mkfs.gfs2: {out}");
    let (_, sb) = sh(&["tunegfs2", "-l", &lp.dev]);
    assert!(
        sb.contains("Lock protocol: lock_dlm") && sb.contains("Lock table: lab:vmstore"),
        "{sb}"
    );
    let (_, jindex) = sh(&["gfs2_edit", "-p", "jindex", &lp.dev]);
    let journals = jindex
        .lines()
        .filter(|l| l.trim_end().ends_with(|c: char| c.is_ascii_digit()) && l.contains("journal"))
        .count();
    assert_eq!(journals, 3, "one journal per node plus a spare:\n{jindex}");
}
