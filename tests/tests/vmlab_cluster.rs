//! VM-lab scenario 1: bond active-backup survives a cable pull; corosync two_node quorate;
//! Pacemaker online with the lab fence agent (one stonith device per node, never on the node it
//! fences); DRBD 8.4 dual-primary on the second disk; DLM; GFS2 on both; file written on node1
//! read with the same checksum on node2; crash node2 -> Pacemaker fences it through the lab agent
//! -> node1 keeps GFS2 writable -> node2 rejoins. Fencing is on throughout.

use std::time::{Duration, Instant};

use keel_tests::vmlab::{wait_for, Node, VmLab};

const COROSYNC_CONF: &str = "totem {
  version: 2
  cluster_name: keellab
  transport: knet
  crypto_cipher: none
  crypto_hash: none
  token: 5000
}
nodelist {
  node {
    ring0_addr: 10.99.0.1
    name: node1
    nodeid: 1
  }
  node {
    ring0_addr: 10.99.0.2
    name: node2
    nodeid: 2
  }
}
quorum {
  provider: corosync_votequorum
  two_node: 1
}
logging {
  to_syslog: yes
  timestamp: on
}
";

const DRBD_RES: &str = "resource r0 {
  net {
    protocol C;
    allow-two-primaries yes;
    after-sb-0pri discard-zero-changes;
    after-sb-1pri discard-secondary;
    after-sb-2pri disconnect;
  }
  on node1 {
    device /dev/drbd0;
    disk /dev/vdb;
    address 10.99.0.1:7789;
    meta-disk internal;
  }
  on node2 {
    device /dev/drbd0;
    disk /dev/vdb;
    address 10.99.0.2:7789;
    meta-disk internal;
  }
}
";

fn step<T>(t0: Instant, what: &str, r: anyhow::Result<T>) -> T {
    match r {
        Ok(v) => {
            eprintln!("[{:7.1}s] {what}: ok", t0.elapsed().as_secs_f64());
            v
        }
        Err(e) => panic!("{what}: {e:#}"),
    }
}

fn holds(n: &Node, cmd: &str) -> anyhow::Result<bool> {
    Ok(n.exec(cmd, Duration::from_secs(30))?.code == 0)
}

fn fence_device(target: &str) -> String {
    format!(
        "cibadmin -C -o resources -X '<primitive id=\"fence-{target}\" class=\"stonith\" type=\"fence_keel_lab\">\
<instance_attributes id=\"fence-{target}-ia\">\
<nvpair id=\"fence-{target}-hl\" name=\"pcmk_host_list\" value=\"{target}\"/>\
<nvpair id=\"fence-{target}-plug\" name=\"plug\" value=\"{target}\"/>\
<nvpair id=\"fence-{target}-to\" name=\"pcmk_reboot_timeout\" value=\"120s\"/>\
</instance_attributes>\
<operations><op id=\"fence-{target}-mon\" name=\"monitor\" interval=\"60s\" timeout=\"60s\"/></operations>\
</primitive>' && \
cibadmin -C -o constraints -X '<rsc_location id=\"loc-fence-{target}\" rsc=\"fence-{target}\" node=\"{target}\" score=\"-INFINITY\"/>'"
    )
}

/// Start the stack on a node whose peer is already running (initial bring-up or rejoin).
const JOIN_STORAGE: &str = "set -e; modprobe -a drbd dlm gfs2; systemctl start dlm; drbdadm up r0";

#[test]
fn bond_corosync_pacemaker_drbd_dlm_gfs2_fencing() {
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
    let ids = step(t0, "unique machine ids", lab.ssh_all("cat /etc/machine-id"));
    assert_ne!(ids[0], ids[1], "machine-id cloned");

    // --- bond active-backup survives a cable pull --------------------------------------------
    step(
        t0,
        "bond0 up, node1 -> node2 ping",
        wait_for("ping", Duration::from_secs(60), || {
            holds(n1, "ping -c1 -W1 10.99.0.2")
        }),
    );
    n1.ssh("grep -q 'Bonding Mode: fault-tolerance (active-backup)' /proc/net/bonding/bond0")
        .unwrap_or_else(|e| panic!("bond mode: {e:#}"));
    let active = |n: &Node| -> anyhow::Result<String> {
        Ok(
            n.ssh("sed -n 's/^Currently Active Slave: //p' /proc/net/bonding/bond0")?
                .trim()
                .to_string(),
        )
    };
    // The links are direct cables: both ends prefer eth1 (primary, reselect always).
    let before = step(t0, "active slave", active(n1));
    assert_eq!(before, "eth1");
    step(t0, "cut link 1 (both ends)", lab.cut_link(1, 1));
    step(
        t0,
        "bond failed over to eth2 on both, ping still answers",
        wait_for("failover", Duration::from_secs(60), || {
            Ok(active(n1)? == "eth2"
                && active(n2)? == "eth2"
                && holds(n1, "ping -c1 -W2 10.99.0.2")?)
        }),
    );
    step(t0, "restore link 1", lab.restore_link(1, 1));
    step(
        t0,
        "bond back on eth1 on both, ping answers",
        wait_for("failback", Duration::from_secs(60), || {
            Ok(active(n1)? == "eth1"
                && active(n2)? == "eth1"
                && holds(n1, "ping -c1 -W2 10.99.0.2")?)
        }),
    );

    // --- corosync two_node ---------------------------------------------------------------------
    let write_conf = format!(
        "cat > /etc/corosync/corosync.conf <<'EOF'\n{COROSYNC_CONF}EOF\ncat > /etc/drbd.d/r0.res <<'EOF'\n{DRBD_RES}EOF\n"
    );
    step(t0, "write corosync.conf + r0.res", lab.ssh_all(&write_conf));
    step(
        t0,
        "start corosync",
        lab.ssh_all("systemctl start corosync"),
    );
    let q = step(
        t0,
        "corosync quorate with 2 votes",
        wait_for("quorum", Duration::from_secs(120), || {
            Ok(n1
                .exec("corosync-quorumtool -s", Duration::from_secs(20))?
                .stdout
                .lines()
                .any(|l| l.starts_with("Total votes:") && l.trim_end().ends_with(" 2")))
        }),
    );
    eprintln!("   quorate after {:.1}s", q.as_secs_f64());

    // --- Pacemaker with the lab fence agent -----------------------------------------------------
    step(
        t0,
        "fence agent metadata",
        n1.ssh("fence_keel_lab -o metadata | grep -q '<resource-agent name=\"fence_keel_lab\"'"),
    );
    step(
        t0,
        "fence agent status node2 (host channel)",
        n1.ssh("fence_keel_lab -o status -n node2"),
    );
    step(
        t0,
        "start pacemaker",
        lab.ssh_all("systemctl start pacemaker"),
    );
    step(
        t0,
        "pacemaker: both nodes online",
        wait_for("pacemaker online", Duration::from_secs(300), || {
            Ok(n1
                .exec("crm_mon -1", Duration::from_secs(30))?
                .stdout
                .contains("Online: [ node1 node2 ]"))
        }),
    );
    step(
        t0,
        "stonith devices (one per node, never on its target) + stonith-enabled",
        n1.ssh(&format!(
            "set -e; crm_attribute -t crm_config -n stonith-enabled -v true
             crm_attribute -t crm_config -n stonith-timeout -v 180s
             {}; {}",
            fence_device("node1"),
            fence_device("node2")
        )),
    );
    step(
        t0,
        "stonith devices started on the other node",
        wait_for("stonith started", Duration::from_secs(240), || {
            let o = n1.exec("crm_mon -1", Duration::from_secs(30))?.stdout;
            Ok(o.lines()
                .any(|l| l.contains("fence-node1") && l.contains("Started node2"))
                && o.lines()
                    .any(|l| l.contains("fence-node2") && l.contains("Started node1")))
        }),
    );

    // --- DRBD dual-primary, DLM, GFS2 ---------------------------------------------------------
    step(
        t0,
        "drbd create-md",
        lab.ssh_all("drbdadm create-md --force r0 >/dev/null 2>&1"),
    );
    step(t0, "dlm + drbd up", lab.ssh_all(JOIN_STORAGE));
    step(
        t0,
        "drbd connected",
        wait_for("drbd connected", Duration::from_secs(120), || {
            holds(n1, "grep -q cs:Connected /proc/drbd")
        }),
    );
    // Both backing disks are fresh zeroed files: skip the initial sync.
    step(
        t0,
        "drbd skip initial sync, primary on both",
        n1.ssh("drbdadm -- --clear-bitmap new-current-uuid r0 && sleep 1 && drbdadm primary r0")
            .and_then(|_| n2.ssh("drbdadm primary r0")),
    );
    step(
        t0,
        "drbd Primary/Primary UpToDate",
        wait_for("dual primary", Duration::from_secs(60), || {
            holds(
                n1,
                "grep -q 'ro:Primary/Primary ds:UpToDate/UpToDate' /proc/drbd",
            )
        }),
    );
    step(
        t0,
        "dlm sees both nodes",
        wait_for("dlm members", Duration::from_secs(60), || {
            holds(n1, "dlm_tool status | grep -q '^node 2 M'")
        }),
    );
    step(
        t0,
        "mkfs.gfs2 lock_dlm",
        n1.ssh("mkfs.gfs2 -O -p lock_dlm -t keellab:gfs0 -j 2 -J 16 /dev/drbd0 >/dev/null"),
    );
    step(
        t0,
        "mount gfs2 node1",
        n1.ssh("mkdir -p /mnt/gfs && mount -t gfs2 /dev/drbd0 /mnt/gfs"),
    );
    step(
        t0,
        "mount gfs2 node2",
        n2.ssh("mkdir -p /mnt/gfs && mount -t gfs2 /dev/drbd0 /mnt/gfs"),
    );
    let s1 = step(
        t0,
        "write 8 MiB on node1",
        n1.ssh("dd if=/dev/urandom of=/mnt/gfs/f1 bs=1M count=8 conv=fsync status=none && sha256sum /mnt/gfs/f1 | cut -d' ' -f1"),
    );
    let s2 = step(
        t0,
        "read on node2",
        n2.ssh("sha256sum /mnt/gfs/f1 | cut -d' ' -f1"),
    );
    assert_eq!(s1.trim(), s2.trim(), "GFS2 file differs across nodes");

    // --- crash node2 -> fenced by Pacemaker through the lab agent -------------------------------
    let boots_before = n2.boots();
    let fences = |log: String| {
        log.lines()
            .filter(|l| l.ends_with("reboot node2") || l.ends_with("off node2"))
            .count()
    };
    let fence_lines_before = fences(lab.fence_log());
    let tc = Instant::now();
    step(t0, "crash node2", lab.crash(2));
    step(
        t0,
        "Pacemaker fenced node2 (lab agent -> host -> QMP)",
        wait_for("fence of node2", Duration::from_secs(300), || {
            Ok(fences(lab.fence_log()) > fence_lines_before
                && n1
                    .exec("stonith_admin --history node2", Duration::from_secs(30))?
                    .stdout
                    .contains("successful"))
        }),
    );
    eprintln!("   crash -> fenced {:.1}s", tc.elapsed().as_secs_f64());
    let sw = step(
        t0,
        "node1 GFS2 still writable",
        wait_for("gfs2 write on node1", Duration::from_secs(300), || {
            holds(
                n1,
                "timeout 20 dd if=/dev/urandom of=/mnt/gfs/after-fence bs=1M count=4 conv=fsync status=none",
            )
        }),
    );
    eprintln!(
        "   crash -> node1 writing again {:.1}s (after fence {:.1}s)",
        tc.elapsed().as_secs_f64(),
        sw.as_secs_f64()
    );
    let s_after = step(
        t0,
        "checksum on node1",
        n1.ssh("sha256sum /mnt/gfs/after-fence | cut -d' ' -f1"),
    );

    // --- node2 rejoins -------------------------------------------------------------------------
    step(
        t0,
        "node2 rebooted and answers ssh",
        wait_for("node2 back", Duration::from_secs(300), || {
            Ok(n2.boots() > boots_before && holds(n2, "true")?)
        }),
    );
    let tr = Instant::now();
    step(
        t0,
        "node2: corosync + pacemaker",
        n2.ssh("systemctl start corosync pacemaker"),
    );
    step(
        t0,
        "pacemaker: node2 online again",
        wait_for("rejoin", Duration::from_secs(300), || {
            Ok(n1
                .exec("crm_mon -1", Duration::from_secs(30))?
                .stdout
                .contains("Online: [ node1 node2 ]"))
        }),
    );
    step(t0, "node2: dlm + drbd up", n2.ssh(JOIN_STORAGE));
    step(
        t0,
        "drbd resynced",
        wait_for("drbd resync", Duration::from_secs(300), || {
            holds(
                n2,
                "grep -q 'cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate' /proc/drbd",
            )
        }),
    );
    step(
        t0,
        "node2: primary + mount",
        n2.ssh("drbdadm primary r0 && mount -t gfs2 /dev/drbd0 /mnt/gfs"),
    );
    let s2_after = step(
        t0,
        "node2 reads node1's post-fence file",
        n2.ssh("sha256sum /mnt/gfs/after-fence | cut -d' ' -f1"),
    );
    assert_eq!(
        s_after.trim(),
        s2_after.trim(),
        "post-fence file differs on node2"
    );
    let s2_old = step(
        t0,
        "node2 reads the pre-crash file",
        n2.ssh("sha256sum /mnt/gfs/f1 | cut -d' ' -f1"),
    );
    assert_eq!(s1.trim(), s2_old.trim());
    eprintln!("   rejoin {:.1}s", tr.elapsed().as_secs_f64());
    eprintln!("fence log:\n{}", lab.fence_log());
    for n in &lab.nodes {
        eprintln!(
            "{} peak RSS {} MiB",
            n.name,
            n.peak_rss_kib().unwrap_or(0) / 1024
        );
    }
    eprintln!(
        "SCENARIO vmlab_cluster wall time {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    lab.passed();
}
