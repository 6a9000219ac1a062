//! The `drbd-gfs2` pool workflow: two nodes, one DRBD 8.4 resource on a named disk of each,
//! a shared VG under lvmlockd on the DRBD device, GFS2 with one journal per node plus a spare,
//! mounted on both by Pacemaker.
//!
//! The workflow is split by where a step runs. [`check_node`] and [`prepare_node`] run on each
//! node against its own disk (the node that creates the pool runs them itself and asks its peer
//! through [`PeerNode`]); [`create`] is the rest, run by the creating node, in this order:
//!
//! 1. both nodes: the device-safety probe again (and `wipefs -a` only when asked), the LVM
//!    accept-list filter and `use_lvmlockd` in `/etc/lvm/lvmlocal.conf`, the `.res` written
//!    0600 through stdin, `drbdadm dump`, `create-md`, `up`;
//! 2. wait until the peers are Connected;
//! 3. the initial **full** sync from the creating node (`primary --force`), its progress from
//!    `/proc/drbd` into the task. A full sync, not `new-current-uuid --clear-bitmap`: a disk
//!    without signatures is not a disk of zeros, and skipping the sync leaves replicas that
//!    differ where nothing was written yet, which DRBD's online verify (and any later full
//!    read) reports as corruption. It costs the disk's size over the replication link once;
//! 4. dual-primary (`allow-two-primaries`) on both only once both disks are UpToDate;
//! 5. the lock layer (DLM, lvmlockd clones) in Pacemaker, waited for on both nodes;
//! 6. on the creating node: the shared VG, its lockspace, one LV over all of it, activated
//!    shared for `mkfs.gfs2 -p lock_dlm -t CLUSTER:POOL -j 3`, deactivated again;
//! 7. the pool's Pacemaker chain (DRBD promotable, two promoted → LVM-activate shared →
//!    Filesystem gfs2), in one CIB update, waited for until the file system runs on both.
//!
//! The libvirt `dir` pool on the mount point is Keel's part (hostd), not this crate's.

use std::thread::sleep;
use std::time::{Duration, Instant};

use keel_runner::{Cmd, Runner};
use keel_xml::Element;
use serde::{Deserialize, Serialize};

use crate::device::{self, DeviceFacts};
use crate::drbd::{DrbdResource, DRBDADM};
use crate::drbd_state::{parse_proc_drbd, DrbdState};
use crate::gfs2::Gfs2;
use crate::lvm::{self, Activation, LvSize};
use crate::stack::{self, PoolStack};
use crate::{check_name, StorageError};

/// Where the pools' file systems are mounted (`POOL_ROOT/POOL`).
pub const POOL_ROOT: &str = "/var/lib/keel/pools";
/// Keel's LVM settings on a node with a DRBD pool (LVM merges it over lvm.conf).
pub const LVMLOCAL: &str = "/etc/lvm/lvmlocal.conf";
/// The smallest disk a `drbd-gfs2` pool accepts: three 32 MiB journals, DRBD's metadata, the
/// VG's metadata and room for at least one small disk image.
pub const MIN_BYTES: u64 = 256 << 20;
/// The LV under the file system.
pub const LV: &str = "fs";

const T: Duration = Duration::from_secs(30);

/// One `drbd-gfs2` pool as every node needs to know it (kept in the cluster config store).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrbdGfs2 {
    pub pool: String,
    /// The corosync cluster name: the GFS2 lock table's first half.
    pub cluster: String,
    /// The resource; `peers[0]` is the node that created the pool (the initial sync source).
    pub drbd: DrbdResource,
    /// Erase the devices' signatures first (the operator's `--wipe`).
    pub wipe: bool,
}

impl std::fmt::Debug for DrbdGfs2 {
    /// Without the DRBD shared secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrbdGfs2")
            .field("pool", &self.pool)
            .field("cluster", &self.cluster)
            .field("minor", &self.drbd.minor)
            .field("port", &self.drbd.port)
            .field("peers", &self.drbd.peers)
            .field("wipe", &self.wipe)
            .finish()
    }
}

/// Where the creating node reports what it does (a Keel task's log and progress).
pub trait Sink {
    fn log(&self, line: &str);
    fn progress(&self, fraction: f64);
}

/// The other node's half of the workflow (hostd: a signed member-to-member call).
pub trait PeerNode {
    fn name(&self) -> &str;
    /// [`check_node`] on the peer (reads only).
    fn check(&self, pool: &DrbdGfs2) -> Result<(), StorageError>;
    /// [`prepare_node`] on the peer.
    fn prepare(&self, pool: &DrbdGfs2) -> Result<(), StorageError>;
    /// [`dual_primary_node`] on the peer.
    fn dual_primary(&self, pool: &DrbdGfs2) -> Result<(), StorageError>;
}

/// How long the workflow waits for the engines, and how often it looks.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    pub interval: Duration,
    pub connect: Duration,
    pub sync: Duration,
    pub pacemaker: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            interval: Duration::from_secs(1),
            connect: Duration::from_secs(120),
            sync: Duration::from_secs(6 * 3600),
            pacemaker: Duration::from_secs(300),
        }
    }
}

impl DrbdGfs2 {
    /// Every problem of the pool's definition in one error, before anything runs.
    pub fn validate(&self) -> Result<(), StorageError> {
        let mut why = Vec::new();
        if let Err(e) = check_name("pool", &self.pool, 30) {
            why.push(e.to_string());
        }
        if let Err(e) = self.drbd.validate() {
            why.push(e.to_string());
        }
        if let Err(e) = self.gfs2().validate() {
            why.push(e.to_string());
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(StorageError::Invalid(why.join("; ")))
        }
    }

    pub fn vg(&self) -> String {
        format!("keel-{}", self.pool)
    }

    pub fn lv_device(&self) -> String {
        format!("/dev/{}/{LV}", self.vg())
    }

    pub fn mountpoint(&self) -> String {
        format!("{POOL_ROOT}/{}", self.pool)
    }

    /// The file system: one journal per node (2) plus a spare.
    pub fn gfs2(&self) -> Gfs2 {
        Gfs2::for_nodes(&self.cluster, &self.pool, &self.lv_device(), 2)
    }

    /// The Pacemaker chain of this pool (the lock layer is [`stack::lock_layer`]).
    pub fn stack(&self) -> PoolStack {
        PoolStack {
            pool: self.pool.clone(),
            drbd: Some(self.drbd.name.clone()),
            vg: self.vg(),
            lv: Some((LV.into(), Activation::Shared)),
            mountpoint: Some(self.mountpoint()),
            nodes: self.drbd.peers.iter().map(|p| p.node.clone()).collect(),
        }
    }

    /// The backing disk on `node`.
    pub fn disk_on(&self, node: &str) -> Result<&str, StorageError> {
        self.drbd
            .peers
            .iter()
            .find(|p| p.node == node)
            .map(|p| p.disk.as_str())
            .ok_or_else(|| {
                StorageError::Invalid(format!(
                    "node {node} is not one of pool {}'s two nodes",
                    self.pool
                ))
            })
    }
}

/// `cat /proc/drbd`. The create workflow polls it for minutes (connect, initial sync): one read
/// that a busy node does not finish at once must not fail the task, so it gets the same bound
/// as the other local commands (a VM-lab run under load saw it take over 5 s mid-sync).
pub fn proc_drbd() -> Cmd {
    Cmd::argv(&["cat", "/proc/drbd"]).timeout(T)
}

/// The state of `minor` on this node (`None`: DRBD not loaded or the minor not configured).
pub fn drbd_state(r: &dyn Runner, minor: u32) -> Result<Option<DrbdState>, StorageError> {
    let out = r.run(&proc_drbd())?;
    if !out.success() {
        return Ok(None);
    }
    Ok(parse_proc_drbd(&out.stdout)
        .into_iter()
        .find(|s| s.minor == minor && s.connection != "Unconfigured"))
}

/// The device-safety probe on `node`'s disk: `Ok(Some(wipe))` when signatures are there and
/// the operator asked for a wipe, `Ok(None)` for a blank disk, an error naming the node and the
/// disk otherwise. Runs nothing that writes.
pub fn check_node(
    r: &dyn Runner,
    node: &str,
    pool: &DrbdGfs2,
) -> Result<(DeviceFacts, Option<Cmd>), StorageError> {
    let disk = pool.disk_on(node)?;
    let facts = device::probe(r, node, disk)?;
    let wipe = device::check(node, &facts, MIN_BYTES, pool.wipe)?;
    Ok((facts, wipe))
}

/// `pvs`: the PVs this node already uses (its own VGs keep working behind the filter).
pub fn pvs() -> Cmd {
    Cmd::argv(&["pvs", "--noheadings", "-o", "pv_name"]).timeout(T)
}

/// `udevadm info --query=symlink --name=DEV`: the udev links of a device.
pub fn udev_links(dev: &str) -> Cmd {
    Cmd::argv(&[
        "udevadm",
        "info",
        "--query=symlink",
        &format!("--name={dev}"),
    ])
    .timeout(T)
}

/// The PVs this node uses now (DRBD devices left out: the filter accepts them anyway), each by
/// a name that survives a reboot. A SCSI disk's `/dev/sdX` letter depends on the order disks
/// appear (an iSCSI LUN's on the order of logins), so such a PV is named by its udev link:
/// `disk/by-path/ip-…` for an iSCSI LUN, else `disk/by-id/wwn-…`; an accept-list rule for
/// `/dev/sdb` would otherwise hide the PV once it comes back as `/dev/sdc`.
pub fn stable_pvs(r: &dyn Runner) -> Result<Vec<String>, StorageError> {
    let listed = r.run_ok(&pvs())?;
    let mut out = Vec::new();
    for p in listed.lines().map(str::trim) {
        if p.is_empty() || p.starts_with("/dev/drbd") {
            continue;
        }
        let mut name = p.to_string();
        if p.starts_with("/dev/sd") {
            let o = r.run(&udev_links(p))?;
            let links: Vec<&str> = o.stdout.split_whitespace().collect();
            if let Some(l) = links
                .iter()
                .find(|l| l.starts_with("disk/by-path/ip-"))
                .or_else(|| links.iter().find(|l| l.starts_with("disk/by-id/wwn-")))
            {
                name = format!("/dev/{l}");
            }
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Keel's `lvmlocal.conf`: lvmlockd on, LVM sees the DRBD devices and `keep` only.
pub fn lvmlocal_conf(keep: &[&str]) -> String {
    format!(
        "# Written by Keel (drbd-gfs2 pools): LVM sees DRBD devices and this node's own PVs only,\n\
         # never a DRBD backing disk; shared VGs are locked through lvmlockd.\n\
         global {{\n    use_lvmlockd = 1\n}}\n\
         devices {{\n    use_devicesfile = 0\n    {}\n}}\n",
        lvm::global_filter(keep)
    )
}

/// This node's half of a new pool: probe again (the disk may have changed since the API
/// checked it), wipe only if asked, LVM's filter, the DRBD resource up.
pub fn prepare_node(r: &dyn Runner, node: &str, pool: &DrbdGfs2) -> Result<(), StorageError> {
    let disk = pool.disk_on(node)?.to_string();
    let (_, wipe) = check_node(r, node, pool)?;
    if let Some(w) = wipe {
        r.run_ok(&w)?;
    }
    let listed = stable_pvs(r)?;
    let keep: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|p| *p != disk)
        .collect();
    r.run_ok(
        &Cmd::argv(&["install", "-D", "-m", "0644", "/dev/stdin", LVMLOCAL])
            .stdin(lvmlocal_conf(&keep))
            .timeout(T),
    )?;
    guard_mountpoint(r, &pool.mountpoint())?;
    r.run_ok(&modprobe_drbd())?;
    for c in pool.drbd.up_commands() {
        r.run_ok(&c)?;
    }
    Ok(())
}

/// `mountpoint -q DIR`: exit 0 when a file system is mounted on DIR.
pub fn is_mountpoint(dir: &str) -> Cmd {
    Cmd::argv(&["mountpoint", "-q", dir]).timeout(T)
}

/// The pool's mount point made immutable while nothing is mounted on it: whenever Pacemaker
/// has the file system stopped on this node (a recovery, a standby, the stack stopping), a
/// write to the pool's path fails (`Operation not permitted`) instead of landing, unreplicated,
/// on the root file system under the mount point, where the next mount hides it. A mount over
/// an immutable directory works; the flag is the directory's, not the mounted file system's,
/// which is why it is only set when nothing is mounted there (on a mounted GFS2 it would freeze
/// the pool's root on every node).
pub fn guard_mountpoint(r: &dyn Runner, dir: &str) -> Result<(), StorageError> {
    if r.run(&is_mountpoint(dir))?.success() {
        return Ok(());
    }
    r.run_ok(&Cmd::argv(&["install", "-d", "-m", "0755", dir]).timeout(T))?;
    r.run_ok(&Cmd::argv(&["chattr", "+i", dir]).timeout(T))?;
    Ok(())
}

/// The guard off and the empty mount point removed (a pool's last step on a node). Not when
/// something is still mounted there, and not a directory with files in it: those are an
/// operator's to look at.
pub fn unguard_mountpoint(r: &dyn Runner, dir: &str) -> Result<(), StorageError> {
    if r.run(&is_mountpoint(dir))?.success() {
        return Ok(());
    }
    if !r
        .run(&Cmd::argv(&["test", "-d", dir]).timeout(T))?
        .success()
    {
        return Ok(());
    }
    r.run_ok(&Cmd::argv(&["chattr", "-i", dir]).timeout(T))?;
    r.run_ok(&Cmd::argv(&["rmdir", "--ignore-fail-on-non-empty", dir]).timeout(T))?;
    Ok(())
}

/// The DRBD 8.4 module (Pacemaker's drbd agent loads it too, but the workflow runs first).
pub fn modprobe_drbd() -> Cmd {
    Cmd::argv(&["modprobe", "drbd"]).timeout(T)
}

/// Rewrite the `.res` with `allow-two-primaries` and apply it to the running resource.
pub fn dual_primary_node(r: &dyn Runner, pool: &DrbdGfs2) -> Result<(), StorageError> {
    let mut d = pool.drbd.clone();
    d.dual_primary = true;
    let res = d.res_path();
    r.run_ok(
        &Cmd::argv(&["install", "-D", "-m", "0600", "/dev/stdin", &res])
            .stdin(d.render())
            .timeout(T),
    )?;
    r.run_ok(&Cmd::argv(&[DRBDADM, "adjust", &d.name]).timeout(T))?;
    Ok(())
}

/// The CIB update adding `resources` and `constraints` in one transaction (existing ids are
/// updated, so the lock layer shared by every pool is added once).
pub fn cib_add(resources: Vec<Element>, constraints: Vec<Element>) -> Cmd {
    let mut rs = Element::new("resources");
    for e in resources {
        rs.push(e);
    }
    let mut cs = Element::new("constraints");
    for e in constraints {
        cs.push(e);
    }
    let conf = Element::new("configuration").child(rs).child(cs);
    Cmd::argv(&[
        "cibadmin",
        "--modify",
        "--allow-create",
        "--scope",
        "configuration",
        "--xml-pipe",
    ])
    .stdin(conf.render())
    .timeout(Duration::from_secs(60))
}

/// `crm_resource --locate`: the nodes a resource (clone) runs on.
pub fn locate(rsc: &str) -> Cmd {
    Cmd::argv(&["crm_resource", "--resource", rsc, "--locate"]).timeout(Duration::from_secs(10))
}

/// The node names in `crm_resource --locate` output (`resource X is running on: NODE`).
pub fn parse_locate(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once("is running on:"))
        .filter_map(|(_, n)| n.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

pub(crate) fn wait_running(
    r: &dyn Runner,
    rsc: &str,
    nodes: &[&str],
    w: &Waits,
    sink: &dyn Sink,
) -> Result<(), StorageError> {
    let deadline = Instant::now() + w.pacemaker;
    loop {
        let out = r.run(&locate(rsc))?;
        let on = parse_locate(&out.stdout);
        if nodes.iter().all(|n| on.iter().any(|o| o == n)) {
            sink.log(&format!("{rsc} runs on {}", on.join(", ")));
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StorageError::Unsafe(format!(
                "Pacemaker did not start {rsc} on {} within {} s (running on: {}): see \
                 `crm_mon -1` for the failed action",
                nodes.join(" and "),
                w.pacemaker.as_secs(),
                if on.is_empty() {
                    "none".to_string()
                } else {
                    on.join(", ")
                }
            )));
        }
        sleep(w.interval);
    }
}

/// Create the pool, run by `pool.drbd.peers[0]` (this node); `peer` is the other.
pub fn create(
    r: &dyn Runner,
    peer: &dyn PeerNode,
    pool: &DrbdGfs2,
    w: &Waits,
    sink: &dyn Sink,
) -> Result<(), StorageError> {
    pool.validate()?;
    let me = pool.drbd.peers[0].node.clone();
    let other = peer.name().to_string();
    let minor = pool.drbd.minor;
    let name = &pool.drbd.name;

    // both disks pass the probe before either is touched
    check_node(r, &me, pool)?;
    peer.check(pool)?;
    sink.log(&format!(
        "{me}: {} — probe, LVM filter, DRBD resource {name} up",
        pool.disk_on(&me)?
    ));
    prepare_node(r, &me, pool)?;
    sink.log(&format!(
        "{other}: {} — probe, LVM filter, DRBD resource {name} up",
        pool.disk_on(&other)?
    ));
    peer.prepare(pool)?;
    sink.progress(0.1);

    let deadline = Instant::now() + w.connect;
    loop {
        let s = drbd_state(r, minor)?;
        if s.as_ref().map(|s| s.connection.as_str()) == Some("Connected") {
            break;
        }
        if Instant::now() >= deadline {
            return Err(StorageError::Unsafe(format!(
                "DRBD {name}: {me} and {other} did not connect within {} s (state {}): check \
                 that port {} is open between the nodes",
                w.connect.as_secs(),
                s.map(|s| s.connection).unwrap_or_else(|| "down".into()),
                pool.drbd.port
            )));
        }
        sleep(w.interval);
    }
    sink.log(&format!("DRBD {name}: connected"));

    sink.log(&format!(
        "DRBD {name}: initial full sync from {me} to {other}"
    ));
    r.run_ok(&pool.drbd.initial_sync_source())?;
    let deadline = Instant::now() + w.sync;
    let mut last_pct = -1.0;
    loop {
        let s = drbd_state(r, minor)?
            .ok_or_else(|| StorageError::Unsafe(format!("DRBD {name}: resource went down")))?;
        if s.in_sync() {
            break;
        }
        if s.standalone() {
            return Err(StorageError::Unsafe(format!(
                "DRBD {name}: the peers disconnected during the initial sync (StandAlone): \
                 see `dmesg` on {me} and {other}"
            )));
        }
        if let Some(p) = s.sync_percent {
            if p - last_pct >= 5.0 || (p >= 100.0 && last_pct < 100.0) {
                sink.log(&format!(
                    "DRBD {name}: initial sync {p:.1}% (finish in {}, {} KiB/s)",
                    s.sync_eta.as_deref().unwrap_or("?"),
                    s.sync_kib_s.unwrap_or(0)
                ));
                last_pct = p;
            }
            sink.progress(0.1 + 0.5 * p / 100.0);
        }
        if Instant::now() >= deadline {
            return Err(StorageError::Unsafe(format!(
                "DRBD {name}: initial sync not done after {} s ({}/{} {:?}%)",
                w.sync.as_secs(),
                s.disk,
                s.peer_disk,
                s.sync_percent
            )));
        }
        sleep(w.interval);
    }
    sink.log(&format!("DRBD {name}: both disks UpToDate"));
    sink.progress(0.6);

    dual_primary_node(r, pool)?;
    peer.dual_primary(pool)?;
    sink.log(&format!(
        "DRBD {name}: allow-two-primaries set on both nodes"
    ));

    let (lr, lc) = stack::lock_layer();
    r.run_ok(&cib_add(lr, lc))?;
    let nodes = [me.as_str(), other.as_str()];
    wait_running(r, stack::LVMLOCKD_CLONE, &nodes, w, sink)?;
    sink.progress(0.7);

    let vg = pool.vg();
    let dev = pool.drbd.device();
    shared_fs(r, &vg, &dev, &pool.gfs2(), &pool.stack(), &nodes, w, sink)?;
    sink.progress(0.95);
    Ok(())
}

/// The part every GFS2 pool shares, on the creating node once the lock layer runs: the shared
/// VG on `dev`, its lockspace, one LV over all of it activated shared for `mkfs.gfs2`,
/// deactivated again, then the pool's Pacemaker chain, waited for until the file system runs on
/// every one of `nodes`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn shared_fs(
    r: &dyn Runner,
    vg: &str,
    dev: &str,
    g: &Gfs2,
    stack: &PoolStack,
    nodes: &[&str],
    w: &Waits,
    sink: &dyn Sink,
) -> Result<(), StorageError> {
    for c in [
        lvm::vgcreate_shared(vg, dev),
        lvm::lockstart(vg),
        lvm::lvcreate(vg, LV, LvSize::AllFree),
        lvm::lvchange(vg, LV, Activation::Shared),
    ] {
        r.run_ok(&c)?;
    }
    sink.log(&format!("shared VG {vg} on {dev}, LV {LV} over all of it"));
    r.run_ok(&g.mkfs_with_journal_mib(crate::gfs2::JOURNAL_MIB))?;
    sink.log(&format!(
        "GFS2 {} with {} journals on {}",
        g.lock_table(),
        g.journals,
        g.device
    ));
    r.run_ok(&lvm::lvchange(vg, LV, Activation::Off))?;
    sink.progress(0.8);
    let (pr, pc) = stack.render();
    r.run_ok(&cib_add(pr, pc))?;
    wait_running(r, &stack.fs_clone_id(), nodes, w, sink)
}

/// The clones of a pool's chain, top first (the order Pacemaker stops them in).
fn chain_ids(stack: &PoolStack) -> Vec<String> {
    let mut v = stack.clone_ids();
    v.reverse();
    v
}

/// Stop the pool's chain: `target-role=Stopped` on every clone; the mandatory orders make
/// Pacemaker unmount before it deactivates the LV and deactivate before it demotes DRBD.
/// Then, once [`wait_stopped`] saw them stopped, [`stack_remove`].
pub fn stack_delete(stack: &PoolStack) -> Vec<Cmd> {
    chain_ids(stack)
        .iter()
        .map(|id| {
            Cmd::argv(&[
                "crm_resource",
                "--resource",
                id,
                "--meta",
                "--set-parameter",
                "target-role",
                "--parameter-value",
                "Stopped",
            ])
            .timeout(Duration::from_secs(60))
        })
        .collect()
}

/// The pool's constraints and clones out of the CIB (the shared lock layer stays).
pub fn stack_remove(stack: &PoolStack) -> Vec<Cmd> {
    let (rs, cs) = stack.render();
    cs.iter()
        .chain(rs.iter())
        .filter_map(|e| {
            let id = e.get_attr("id")?;
            Some(
                Cmd::argv(&["cibadmin", "--delete", "--xml-pipe"])
                    .stdin(Element::new(e.name.as_str()).attr("id", id).render())
                    .timeout(Duration::from_secs(60)),
            )
        })
        .collect()
}

/// Until none of the pool's clones runs anywhere.
pub fn wait_stopped(r: &dyn Runner, stack: &PoolStack, w: &Waits) -> Result<(), StorageError> {
    let deadline = Instant::now() + w.pacemaker;
    for id in chain_ids(stack) {
        loop {
            let on = parse_locate(&r.run(&locate(&id))?.stdout);
            if on.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(StorageError::Unsafe(format!(
                    "Pacemaker did not stop {id} within {} s (still on {}): see `crm_mon -1`",
                    w.pacemaker.as_secs(),
                    on.join(", ")
                )));
            }
            sleep(w.interval);
        }
    }
    Ok(())
}

/// This node's DRBD resource down and its `.res` removed (the disk keeps its data and DRBD
/// metadata: a new pool on it needs `--wipe`).
pub fn teardown_node(r: &dyn Runner, pool: &DrbdGfs2) -> Result<(), StorageError> {
    r.run_ok(&Cmd::argv(&[DRBDADM, "down", &pool.drbd.name]).timeout(T))?;
    r.run_ok(&Cmd::argv(&["rm", "-f", &pool.drbd.res_path()]).timeout(T))?;
    unguard_mountpoint(r, &pool.mountpoint())
}

/// A node's view of a pool: DRBD state and the mount with its space.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub drbd: Option<DrbdState>,
    /// For iSCSI pools: the node has a session with the LUN's target.
    #[serde(default)]
    pub logged_in: Option<bool>,
    /// For `iscsi-lvm` pools: the node joined the VG's lockspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockspace: Option<bool>,
    /// DRBD's split-brain handler ran on this node (`split_brain::marker`).
    #[serde(default)]
    pub split_brain: bool,
    pub mounted: bool,
    pub size_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
}

/// `findmnt` of the pool's mount point (exit 1 when nothing is mounted there).
pub fn findmnt(mountpoint: &str) -> Cmd {
    Cmd::argv(&[
        "findmnt",
        "-J",
        "-b",
        "-o",
        "TARGET,FSTYPE,SIZE,AVAIL",
        "--mountpoint",
        mountpoint,
    ])
    .timeout(Duration::from_secs(10))
}

#[derive(Deserialize)]
struct Findmnt {
    filesystems: Vec<FindmntFs>,
}
#[derive(Deserialize)]
struct FindmntFs {
    fstype: String,
    size: Option<u64>,
    avail: Option<u64>,
}

/// This node's view of `pool`.
pub fn node_health(r: &dyn Runner, pool: &DrbdGfs2) -> Result<NodeHealth, StorageError> {
    let drbd = drbd_state(r, pool.drbd.minor)?;
    let mut h = mount_health(r, &pool.pool, &pool.mountpoint())?;
    h.drbd = drbd;
    h.split_brain = crate::split_brain::marked(r, &pool.drbd.name)?;
    Ok(h)
}

/// Whether a GFS2 is mounted at `mountpoint`, with its size and free space.
pub fn mount_health(
    r: &dyn Runner,
    pool: &str,
    mountpoint: &str,
) -> Result<NodeHealth, StorageError> {
    let cmd = findmnt(mountpoint);
    let out = r.run(&cmd)?;
    let mut h = NodeHealth::default();
    if out.success() {
        let f: Findmnt = serde_json::from_str(&out.stdout).map_err(|e| StorageError::Parse {
            what: format!("pool {pool}"),
            cmd: cmd.to_string(),
            why: e.to_string(),
        })?;
        if let Some(fs) = f.filesystems.iter().find(|f| f.fstype == "gfs2") {
            h.mounted = true;
            h.size_bytes = fs.size;
            h.free_bytes = fs.avail;
        }
    }
    Ok(h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_runner::{Fake, Reply};
    use std::sync::Mutex;

    fn pool(wipe: bool) -> DrbdGfs2 {
        DrbdGfs2 {
            pool: "vmstore".into(),
            cluster: "vmpair".into(),
            drbd: crate::drbd::tests::pair(),
            wipe,
        }
    }

    /// The create workflow's state reads tolerate a node too busy to answer within seconds.
    #[test]
    fn proc_drbd_reads_are_not_cut_short() {
        assert!(proc_drbd().get_timeout() >= Duration::from_secs(30));
    }

    const BLANK: &str = r#"{"blockdevices":[{"path":"/dev/vdb","size":536870912,"type":"disk","mountpoints":[null]}]}"#;
    const SIGNED: &str = r#"{"signatures":[{"device":"vdb","offset":"0x438","type":"ext4"}]}"#;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    impl Sink for Log {
        fn log(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_string());
        }
        fn progress(&self, _: f64) {}
    }

    /// The peer runs its half through its own fake runner.
    struct FakePeer(Fake);
    impl PeerNode for FakePeer {
        fn name(&self) -> &str {
            "node2"
        }
        fn check(&self, p: &DrbdGfs2) -> Result<(), StorageError> {
            check_node(&self.0, "node2", p).map(|_| ())
        }
        fn prepare(&self, p: &DrbdGfs2) -> Result<(), StorageError> {
            prepare_node(&self.0, "node2", p)
        }
        fn dual_primary(&self, p: &DrbdGfs2) -> Result<(), StorageError> {
            dual_primary_node(&self.0, p)
        }
    }

    fn argv(c: &Cmd) -> Vec<String> {
        c.to_argv()
    }

    /// The node-local half, in order: probe, (wipe), pvs, lvmlocal.conf, .res, dump,
    /// create-md, up.
    fn expect_prepare(f: &Fake, p: &DrbdGfs2, signed: bool, pvs_out: &str, keep: &[&str]) {
        f.push(&argv(&device::lsblk("/dev/vdb")), None, Reply::ok(BLANK));
        f.push(
            &argv(&device::wipefs_list("/dev/vdb")),
            None,
            Reply::ok(if signed { SIGNED } else { "" }),
        );
        if signed {
            f.push(&["wipefs", "-a", "/dev/vdb"], None, Reply::ok(""));
        }
        f.push(&argv(&pvs()), None, Reply::ok(pvs_out));
        f.push(
            &["install", "-D", "-m", "0644", "/dev/stdin", LVMLOCAL],
            Some(lvmlocal_conf(keep).into_bytes()),
            Reply::ok(""),
        );
        f.push(
            &["mountpoint", "-q", "/var/lib/keel/pools/vmstore"],
            None,
            Reply::fail(32, ""),
        );
        f.push(
            &["install", "-d", "-m", "0755", "/var/lib/keel/pools/vmstore"],
            None,
            Reply::ok(""),
        );
        f.push(
            &["chattr", "+i", "/var/lib/keel/pools/vmstore"],
            None,
            Reply::ok(""),
        );
        f.push(&["modprobe", "drbd"], None, Reply::ok(""));
        f.push(
            &[
                "install",
                "-D",
                "-m",
                "0600",
                "/dev/stdin",
                "/etc/drbd.d/vmstore.res",
            ],
            Some(p.drbd.render().into_bytes()),
            Reply::ok(""),
        );
        f.push(&[DRBDADM, "dump", "vmstore"], None, Reply::ok(""));
        f.push(
            &[DRBDADM, "--force", "create-md", "vmstore"],
            None,
            Reply::ok(""),
        );
        f.push(&[DRBDADM, "up", "vmstore"], None, Reply::ok(""));
    }

    fn proc(line: &str, extra: &str) -> Reply {
        Reply::ok(format!(
            "version: 8.4.11 (api:1/proto:86-101)\n 0: {line}\n    ns:0 nr:0\n{extra}"
        ))
    }

    #[test]
    fn create_runs_the_exact_commands_in_order() {
        let p = pool(true);
        let n1 = Fake::new();
        let n2 = Fake::new();
        // node1 holds its own VG keel-vms on /dev/vda3: kept visible; node2 has none
        for f in [&n1, &n2] {
            f.push(&argv(&device::lsblk("/dev/vdb")), None, Reply::ok(BLANK));
            f.push(
                &argv(&device::wipefs_list("/dev/vdb")),
                None,
                Reply::ok(SIGNED),
            );
        }
        expect_prepare(&n1, &p, true, "  /dev/vda3\n", &["/dev/vda3"]);
        expect_prepare(&n2, &p, true, "", &[]);
        n1.push(
            &argv(&proc_drbd()),
            None,
            proc(
                "cs:WFConnection ro:Secondary/Unknown ds:Inconsistent/DUnknown C r----s",
                "",
            ),
        );
        n1.push(
            &argv(&proc_drbd()),
            None,
            proc(
                "cs:Connected ro:Secondary/Secondary ds:Inconsistent/Inconsistent C r-----",
                "",
            ),
        );
        n1.push(
            &[DRBDADM, "primary", "--force", "vmstore"],
            None,
            Reply::ok(""),
        );
        n1.push(
            &argv(&proc_drbd()),
            None,
            proc(
                "cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----",
                "\t[==>...] sync'ed: 40.2% (300000/524236)K\n\tfinish: 0:00:09 speed: 25,000 (25,000) K/sec\n",
            ),
        );
        n1.push(
            &argv(&proc_drbd()),
            None,
            proc(
                "cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----",
                "",
            ),
        );
        let mut dual = p.drbd.clone();
        dual.dual_primary = true;
        for f in [&n1, &n2] {
            f.push(
                &[
                    "install",
                    "-D",
                    "-m",
                    "0600",
                    "/dev/stdin",
                    "/etc/drbd.d/vmstore.res",
                ],
                Some(dual.render().into_bytes()),
                Reply::ok(""),
            );
            f.push(&[DRBDADM, "adjust", "vmstore"], None, Reply::ok(""));
        }
        let (lr, lc) = stack::lock_layer();
        let lock = cib_add(lr, lc);
        n1.push(
            &argv(&lock),
            lock.get_stdin().map(<[u8]>::to_vec),
            Reply::ok(""),
        );
        n1.push(
            &argv(&locate("lvmlockd-clone")),
            None,
            Reply::ok("resource lvmlockd-clone is running on: node1\n"),
        );
        n1.push(
            &argv(&locate("lvmlockd-clone")),
            None,
            Reply::ok(
                "resource lvmlockd-clone is running on: node1\nresource lvmlockd-clone is running on: node2\n",
            ),
        );
        for c in [
            ["vgcreate", "--shared", "keel-vmstore", "/dev/drbd0"].as_slice(),
            &["vgchange", "--lock-start", "keel-vmstore"],
            &[
                "lvcreate",
                "-an",
                "-n",
                "fs",
                "-l",
                "100%FREE",
                "keel-vmstore",
            ],
            &["lvchange", "-asy", "keel-vmstore/fs"],
            &[
                "mkfs.gfs2",
                "-O",
                "-p",
                "lock_dlm",
                "-t",
                "vmpair:vmstore",
                "-j",
                "3",
                "-J",
                "32",
                "/dev/keel-vmstore/fs",
            ],
            &["lvchange", "-an", "keel-vmstore/fs"],
        ] {
            n1.push(c, None, Reply::ok(""));
        }
        let (pr, pc) = p.stack().render();
        let st = cib_add(pr, pc);
        n1.push(
            &argv(&st),
            st.get_stdin().map(<[u8]>::to_vec),
            Reply::ok(""),
        );
        n1.push(
            &argv(&locate("fs-vmstore-clone")),
            None,
            Reply::ok(
                "resource fs-vmstore-clone is running on: node2\nresource fs-vmstore-clone is running on: node1\n",
            ),
        );
        let log = Log::default();
        let w = Waits {
            interval: Duration::ZERO,
            ..Waits::default()
        };
        create(&n1, &FakePeer(n2), &p, &w, &log).unwrap();
        n1.assert_done();
        let lines = log.0.lock().unwrap().join("\n");
        assert!(
            lines.contains("initial sync 40.2% (finish in 0:00:09, 25000 KiB/s)"),
            "{lines}"
        );
        assert!(
            lines.contains("GFS2 vmpair:vmstore with 3 journals"),
            "{lines}"
        );
        // the secret travels on standard input only
        for c in n1.ran() {
            assert!(!c.join(" ").contains(&p.drbd.shared_secret), "{c:?}");
        }
        // the stack under the file system: promotable DRBD with two promoted, shared LV
        let xml = String::from_utf8_lossy(st.get_stdin().unwrap()).to_string();
        assert!(xml.contains(r#"name="promoted-max" value="2""#), "{xml}");
        assert!(
            xml.contains(r#"name="activation_mode" value="shared""#),
            "{xml}"
        );
        assert!(xml.contains(r#"name="fstype" value="gfs2""#), "{xml}");
    }

    #[test]
    fn a_signed_disk_without_wipe_changes_nothing() {
        let p = pool(false);
        let n1 = Fake::new();
        n1.push(&argv(&device::lsblk("/dev/vdb")), None, Reply::ok(BLANK));
        n1.push(
            &argv(&device::wipefs_list("/dev/vdb")),
            None,
            Reply::ok(SIGNED),
        );
        struct NoPeer;
        impl PeerNode for NoPeer {
            fn name(&self) -> &str {
                "node2"
            }
            fn check(&self, _: &DrbdGfs2) -> Result<(), StorageError> {
                panic!("the peer must not be asked after node1 refused")
            }
            fn prepare(&self, _: &DrbdGfs2) -> Result<(), StorageError> {
                panic!("the peer must not be touched")
            }
            fn dual_primary(&self, _: &DrbdGfs2) -> Result<(), StorageError> {
                panic!("the peer must not be touched")
            }
        }
        let e = create(&n1, &NoPeer, &p, &Waits::default(), &Log::default())
            .unwrap_err()
            .to_string();
        n1.assert_done();
        assert!(
            e.contains("node node1: /dev/vdb is not blank (it holds ext4)") && e.contains("--wipe"),
            "{e}"
        );
    }

    #[test]
    fn a_small_or_missing_disk_is_named() {
        let p = pool(true);
        let n1 = Fake::new();
        n1.push(
            &argv(&device::lsblk("/dev/vdb")),
            None,
            Reply::ok(r#"{"blockdevices":[{"path":"/dev/vdb","size":104857600,"type":"disk","mountpoints":[null]}]}"#),
        );
        n1.push(&argv(&device::wipefs_list("/dev/vdb")), None, Reply::ok(""));
        let e = check_node(&n1, "node1", &p).unwrap_err().to_string();
        assert!(
            e.contains("has 100 MiB, the pool needs at least 256 MiB"),
            "{e}"
        );
        let e = check_node(&n1, "node3", &p).unwrap_err().to_string();
        assert!(
            e.contains("node3 is not one of pool vmstore's two nodes"),
            "{e}"
        );
    }

    #[test]
    fn health_reads_drbd_and_the_mount() {
        let p = pool(false);
        let f = Fake::new();
        f.push(
            &argv(&proc_drbd()),
            None,
            proc(
                "cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r-----",
                "",
            ),
        );
        f.push(
            &argv(&findmnt("/var/lib/keel/pools/vmstore")),
            None,
            Reply::ok(r#"{"filesystems":[{"target":"/var/lib/keel/pools/vmstore","fstype":"gfs2","size":134217728,"avail":100663296}]}"#),
        );
        f.push(
            &["test", "-e", "/run/keel/drbd-split-brain/vmstore"],
            None,
            Reply::fail(1, ""),
        );
        let h = node_health(&f, &p).unwrap();
        assert!(!h.split_brain);
        assert!(h.mounted && h.drbd.unwrap().in_sync());
        assert_eq!(h.free_bytes, Some(100_663_296));
        let f = Fake::new();
        f.push(&argv(&proc_drbd()), None, Reply::fail(1, "No such file"));
        f.push(
            &argv(&findmnt("/var/lib/keel/pools/vmstore")),
            None,
            Reply::fail(1, ""),
        );
        f.push(
            &["test", "-e", "/run/keel/drbd-split-brain/vmstore"],
            None,
            Reply::ok(""),
        );
        let h = node_health(&f, &p).unwrap();
        assert!(!h.mounted && h.drbd.is_none());
        assert!(h.split_brain, "the handler's marker is reported");
    }

    #[test]
    fn delete_stops_top_down_then_removes() {
        let p = pool(false);
        let st = p.stack();
        let stops: Vec<String> = stack_delete(&st)
            .iter()
            .map(|c| c.to_argv()[2].clone())
            .collect();
        assert_eq!(
            stops,
            [
                "fs-vmstore-clone",
                "lvm-vmstore-clone",
                "drbd-vmstore-clone"
            ]
        );
        let f = Fake::new();
        f.push(
            &argv(&locate("fs-vmstore-clone")),
            None,
            Reply::ok("resource fs-vmstore-clone is running on: node1\n"),
        );
        for id in [
            "fs-vmstore-clone",
            "lvm-vmstore-clone",
            "drbd-vmstore-clone",
        ] {
            f.push(
                &argv(&locate(id)),
                None,
                Reply::ok(format!("resource {id} is NOT running\n")),
            );
        }
        let w = Waits {
            interval: Duration::ZERO,
            ..Waits::default()
        };
        wait_stopped(&f, &st, &w).unwrap();
        f.assert_done();
        let rm = stack_remove(&st);
        // constraints first, then the clones
        let first = String::from_utf8_lossy(rm[0].get_stdin().unwrap()).to_string();
        let last = String::from_utf8_lossy(rm[rm.len() - 1].get_stdin().unwrap()).to_string();
        assert!(first.starts_with("<rsc_order"), "{first}");
        assert!(last.contains("fs-vmstore-clone"), "{last}");
    }

    #[test]
    fn debug_hides_the_secret() {
        let p = pool(false);
        assert!(!format!("{p:?}").contains(&p.drbd.shared_secret));
    }
    #[test]
    fn the_mount_point_is_guarded_only_while_nothing_is_mounted() {
        let mp = "/var/lib/keel/pools/vmstore";
        // mounted (a repair run): the flag would land on the GFS2's root, so nothing is done
        let f = Fake::new();
        f.push(&["mountpoint", "-q", mp], None, Reply::ok(""));
        guard_mountpoint(&f, mp).unwrap();
        f.assert_done();
        // a chattr that fails (a root file system without the flag) stops the create
        let f = Fake::new();
        f.push(&["mountpoint", "-q", mp], None, Reply::fail(32, ""));
        f.push(&["install", "-d", "-m", "0755", mp], None, Reply::ok(""));
        f.push(
            &["chattr", "+i", mp],
            None,
            Reply::fail(1, "chattr: Operation not supported while setting flags"),
        );
        assert!(guard_mountpoint(&f, mp).is_err());
        f.assert_done();
        // teardown: unmounted and present → flag off, removed when empty
        let f = Fake::new();
        f.push(&["mountpoint", "-q", mp], None, Reply::fail(32, ""));
        f.push(&["test", "-d", mp], None, Reply::ok(""));
        f.push(&["chattr", "-i", mp], None, Reply::ok(""));
        f.push(
            &["rmdir", "--ignore-fail-on-non-empty", mp],
            None,
            Reply::ok(""),
        );
        unguard_mountpoint(&f, mp).unwrap();
        f.assert_done();
        // still mounted: left alone
        let f = Fake::new();
        f.push(&["mountpoint", "-q", mp], None, Reply::ok(""));
        unguard_mountpoint(&f, mp).unwrap();
        f.assert_done();
    }
}
