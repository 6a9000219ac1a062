//! VM-lab scenario 2: a LIO iSCSI target with CHAP on node1, open-iscsi on node2, data written
//! through the LUN read back intact (and seen in the target's backing file). The engines alone,
//! by hand (`cargo test -p keel-tests --test vmlab_iscsi -- --ignored`): the suite proves them
//! through Keel in `vmlab_keel_cluster`'s `iscsi-gfs2` pool.

use std::time::{Duration, Instant};

use keel_tests::vmlab::{wait_for, VmLab};

const TARGET: &str = "iqn.2024-01.lab.keel:tgt0";
const USER: &str = "keelinit";
const SECRET: &str = "Keel-Lab-Chap-7x";

fn step<T>(t0: Instant, what: &str, r: anyhow::Result<T>) -> T {
    match r {
        Ok(v) => {
            eprintln!("[{:7.1}s] {what}: ok", t0.elapsed().as_secs_f64());
            v
        }
        Err(e) => panic!("{what}: {e:#}"),
    }
}

#[test]
#[ignore = "by hand: superseded in the suite by vmlab_keel_cluster's iscsi-gfs2 pool (LIO target with CHAP, open-iscsi on both nodes, a wrong secret refused, data read from both)"]
fn iscsi_chap_target_and_initiator() {
    let t0 = Instant::now();
    let mut lab = step(t0, "lab up (2 nodes)", VmLab::up(2));
    eprintln!(
        "image {:.1}s ({}); boot to ssh: node1 {:.1}s node2 {:.1}s",
        lab.image.seconds,
        lab.image.dir.display(),
        lab.node(1).boot_to_ssh,
        lab.node(2).boot_to_ssh
    );
    let (n1, n2) = (lab.node(1), lab.node(2));
    step(
        t0,
        "private link (bond0) node2 -> node1",
        wait_for("ping node1", Duration::from_secs(60), || {
            Ok(n2
                .exec("ping -c1 -W1 10.99.0.1", Duration::from_secs(10))?
                .code
                == 0)
        }),
    );

    let init_iqn = n2
        .ssh("sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi")
        .unwrap_or_default();
    assert_eq!(
        init_iqn.trim(),
        n2.iqn,
        "initiator name comes from the kernel command line"
    );
    let other = n1
        .ssh("sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi")
        .unwrap_or_default();
    assert_ne!(
        other.trim(),
        init_iqn.trim(),
        "initiator names are unique per node"
    );

    let acl = format!("/iscsi/{TARGET}/tpg1/acls/{}", n2.iqn);
    let setup = format!(
        "set -e; truncate -s 128M /var/tmp/lun0.img
         targetcli /backstores/fileio create lun0 /var/tmp/lun0.img >/dev/null
         targetcli /iscsi create {TARGET} >/dev/null
         targetcli /iscsi/{TARGET}/tpg1/luns create /backstores/fileio/lun0 >/dev/null
         targetcli /iscsi/{TARGET}/tpg1/acls create {iqn} >/dev/null
         targetcli {acl} set auth userid={USER} password={SECRET} >/dev/null
         targetcli /iscsi/{TARGET}/tpg1 set attribute authentication=1 generate_node_acls=0 >/dev/null
         targetcli /iscsi/{TARGET}/tpg1 get attribute authentication",
        iqn = n2.iqn
    );
    let out = step(t0, "LIO target with CHAP on node1", n1.ssh(&setup));
    assert!(out.contains("authentication=1"), "CHAP enforced: {out}");

    step(
        t0,
        "iscsid + discovery from node2",
        n2.ssh("systemctl start iscsid && iscsiadm -m discovery -t st -p 10.99.0.1"),
    );
    let login = |secret: &str| -> anyhow::Result<keel_tests::vmlab::Output> {
        n2.exec(
            &format!(
                "N='iscsiadm -m node -T {TARGET} -p 10.99.0.1'
                 $N --op update -n node.session.auth.authmethod -v CHAP &&
                 $N --op update -n node.session.auth.username -v {USER} &&
                 $N --op update -n node.session.auth.password -v {secret} &&
                 $N --login"
            ),
            Duration::from_secs(120),
        )
    };
    let bad = step(
        t0,
        "login with a wrong CHAP secret",
        login("wrong-secret-123"),
    );
    assert_ne!(bad.code, 0, "a wrong CHAP secret must be refused: {bad:?}");
    let good = step(t0, "login with the right CHAP secret", login(SECRET));
    assert_eq!(good.code, 0, "CHAP login failed: {good:?}");
    let dev = format!("/dev/disk/by-path/ip-10.99.0.1:3260-iscsi-{TARGET}-lun-0");
    step(
        t0,
        "LUN appears on node2",
        wait_for("iscsi LUN", Duration::from_secs(60), || {
            Ok(n2
                .exec(&format!("test -b {dev}"), Duration::from_secs(10))?
                .code
                == 0)
        }),
    );
    let sums = step(
        t0,
        "write 16 MiB through the LUN and read it back",
        n2.ssh(&format!(
            "set -e; dd if=/dev/urandom of=/tmp/payload bs=1M count=16 status=none
             sha256sum < /tmp/payload | cut -d' ' -f1
             dd if=/tmp/payload of={dev} bs=1M oflag=direct status=none; sync
             echo 3 > /proc/sys/vm/drop_caches
             dd if={dev} bs=1M count=16 iflag=direct status=none | sha256sum | cut -d' ' -f1"
        )),
    );
    let sums: Vec<&str> = sums.split_whitespace().collect();
    assert_eq!(sums.len(), 2, "{sums:?}");
    assert_eq!(sums[0], sums[1], "data read back through the LUN differs");
    step(
        t0,
        "logout",
        n2.ssh(&format!(
            "iscsiadm -m node -T {TARGET} -p 10.99.0.1 --logout"
        )),
    );
    let backing = step(
        t0,
        "target backing file holds the same bytes",
        n1.ssh("dd if=/var/tmp/lun0.img bs=1M count=16 status=none | sha256sum | cut -d' ' -f1"),
    );
    assert_eq!(backing.trim(), sums[0], "target backing file differs");
    for n in &lab.nodes {
        eprintln!(
            "{} peak RSS {} MiB",
            n.name,
            n.peak_rss_kib().unwrap_or(0) / 1024
        );
    }
    eprintln!(
        "SCENARIO vmlab_iscsi wall time {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    lab.passed();
}
