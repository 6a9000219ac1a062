//! The iSCSI pool workflows: one LUN of an iSCSI target logged in on every node and a shared
//! VG under lvmlockd on it, carrying either
//!
//! * `iscsi-gfs2` ([`IscsiLayout::Gfs2`]): one LV over the VG, GFS2 with one journal per node
//!   plus a spare, mounted on every node by Pacemaker, a directory pool on top; or
//! * `iscsi-lvm` ([`IscsiLayout::Lvm`]): one raw LV per VM disk, activated exclusively (`-aey`)
//!   on the node that runs its VM, so lvmlockd never lets two nodes open it at once. Pacemaker
//!   runs only the lock layer for it; each node joins the VG's lockspace.
//!
//! Two phases, so that a refusal changes nothing:
//!
//! * [`attach_all`], before any task exists: on every node the LUN's record (CHAP through
//!   standard input), the login, the device under its `by-path` name; then every node must
//!   see the same LUN (size and WWN), and the creating node's probe must find it blank (or
//!   the operator said `--wipe`) and unmounted. Any refusal — a wrong CHAP secret, a portal
//!   that does not offer the target, a LUN with a file system — logs every node out again and
//!   deletes the records: nothing stays behind.
//! * [`create`], the task: each node's LVM filter (the LUN accepted by its stable name),
//!   Pacemaker started after open-iscsi at boot, the guarded mount point (`iscsi-gfs2`); the
//!   lock layer; the shared VG on the creating node (the wipe first when asked); then either
//!   its LV, `mkfs.gfs2 -j NODES+1` and the pool's chain (LVM-activate shared → Filesystem
//!   gfs2, no DRBD), waited for until the file system runs on every node; or (`iscsi-lvm`) the
//!   VG tagged as a volume pool and its lockspace started on every node.
//!
//! Unlike `drbd-gfs2`, the data is not replicated by Keel: the target holds the one copy, and
//! its own redundancy is the target's business.

use std::thread::sleep;
use std::time::Instant;

use keel_runner::{Cmd, Runner};
use serde::{Deserialize, Serialize};

use crate::device::{self, DeviceFacts};
use crate::drbd_gfs2::{
    cib_add, guard_mountpoint, lvmlocal_conf, mount_health, shared_fs, stable_pvs,
    unguard_mountpoint, wait_running, NodeHealth, Sink, Waits, LV, LVMLOCAL, MIN_BYTES, POOL_ROOT,
};
use crate::gfs2::Gfs2;
use crate::iscsi::{self, IscsiLun, ERR_LOGIN_AUTH_FAILED, ERR_NO_OBJS_FOUND, ERR_SESS_EXISTS};
use crate::lvm::{self, Activation};
use crate::stack::{self, PoolStack};
use crate::{check_name, StorageError};

/// The systemd drop-in that starts Pacemaker after open-iscsi logged in at boot.
pub const PACEMAKER_DROPIN: &str = "/etc/systemd/system/pacemaker.service.d/keel-iscsi.conf";

const T: std::time::Duration = std::time::Duration::from_secs(30);

/// What an iSCSI pool's LUN carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IscsiLayout {
    /// `iscsi-gfs2`: GFS2 on one shared LV, a directory pool on top.
    #[default]
    Gfs2,
    /// `iscsi-lvm`: one raw LV per VM disk, activated exclusively where its VM runs.
    Lvm,
}

impl IscsiLayout {
    pub fn kind(self) -> &'static str {
        match self {
            IscsiLayout::Gfs2 => "iscsi-gfs2",
            IscsiLayout::Lvm => "iscsi-lvm",
        }
    }
}

/// One iSCSI pool as every node needs to know it (kept in the cluster config store, the CHAP
/// secret blanked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IscsiPool {
    pub pool: String,
    /// `iscsi-gfs2` (the default: records from before `iscsi-lvm` have none) or `iscsi-lvm`.
    #[serde(default)]
    pub layout: IscsiLayout,
    /// The corosync cluster name: the GFS2 lock table's first half.
    pub cluster: String,
    pub lun: IscsiLun,
    /// Every node that mounts the pool; `nodes[0]` created it.
    pub nodes: Vec<String>,
    /// Erase the LUN's signatures first (the operator's `--wipe`).
    pub wipe: bool,
}

/// What one node sees after logging in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunFacts {
    pub node: String,
    pub device: DeviceFacts,
    /// `lsblk`'s WWN of the LUN (empty when the target reports none).
    pub wwn: String,
    /// The node had a session with the target before (not Keel's to log out on a refusal).
    #[serde(default)]
    pub was_logged_in: bool,
}

/// Another node's half (hostd: a signed member-to-member call).
pub trait IscsiPeer {
    fn name(&self) -> &str;
    /// [`attach_node`] there.
    fn attach(&self, pool: &IscsiPool) -> Result<LunFacts, StorageError>;
    /// [`detach_node`] there.
    fn detach(&self, pool: &IscsiPool) -> Result<(), StorageError>;
    /// [`prepare_node`] there.
    fn prepare(&self, pool: &IscsiPool) -> Result<(), StorageError>;
    /// [`join_lockspace`] there (`iscsi-lvm`, once the VG exists).
    fn join(&self, pool: &IscsiPool) -> Result<(), StorageError>;
}

impl IscsiPool {
    /// Every problem of the definition in one error.
    pub fn validate(&self) -> Result<(), StorageError> {
        let mut why = Vec::new();
        if let Err(e) = check_name("pool", &self.pool, 30) {
            why.push(e.to_string());
        }
        if let Err(e) = self.lun.validate() {
            why.push(e.to_string());
        }
        if self.nodes.len() < 2 {
            why.push(format!(
                "an {} pool is shared by two nodes or more; this cluster has {}",
                self.layout.kind(),
                self.nodes.len()
            ));
        }
        if self.layout == IscsiLayout::Gfs2 {
            if let Err(e) = self.gfs2().validate() {
                why.push(e.to_string());
            }
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

    /// One journal per node plus a spare.
    pub fn gfs2(&self) -> Gfs2 {
        Gfs2::for_nodes(
            &self.cluster,
            &self.pool,
            &self.lv_device(),
            self.nodes.len() as u32,
        )
    }

    /// The pool's chain: no DRBD, the LV shared, GFS2 on every node (`iscsi-gfs2`); nothing
    /// but the lock layer for `iscsi-lvm` (each VM disk is activated when its VM starts).
    pub fn stack(&self) -> PoolStack {
        let gfs2 = self.layout == IscsiLayout::Gfs2;
        PoolStack {
            pool: self.pool.clone(),
            drbd: None,
            vg: self.vg(),
            lv: gfs2.then(|| (LV.into(), Activation::Shared)),
            mountpoint: gfs2.then(|| self.mountpoint()),
            nodes: self.nodes.clone(),
        }
    }
}

/// `lsblk -dn -o WWN DEV`.
pub fn wwn(dev: &str) -> Cmd {
    Cmd::argv(&["lsblk", "-dn", "-o", "WWN", dev]).timeout(T)
}

/// `udevadm settle`, so the LUN's `by-path` link exists once a login returned.
pub fn settle() -> Cmd {
    Cmd::argv(&["udevadm", "settle", "--timeout=30"]).timeout(std::time::Duration::from_secs(40))
}

fn login_error(
    node: &str,
    lun: &IscsiLun,
    initiator: Option<String>,
    e: &str,
    code: Option<i32>,
) -> String {
    let who = initiator
        .map(|i| format!("this node's initiator name {i}"))
        .unwrap_or_else(|| "this node's initiator name (/etc/iscsi/initiatorname.iscsi)".into());
    if code == Some(ERR_LOGIN_AUTH_FAILED) {
        format!(
            "node {node}: the target {} at {} refused the login (authorization failure): check \
             the CHAP user and secret, and that the target's ACL allows {who}; nothing was \
             changed",
            lun.target,
            lun.addr()
        )
    } else {
        format!(
            "node {node}: iSCSI login to {} at {} failed: {}; nothing was changed",
            lun.target,
            lun.addr(),
            e.trim()
        )
    }
}

/// This node logs in to the LUN and looks at it (reads only, on the disk). On any failure
/// after the record was written, the node logs out and the record is deleted again.
pub fn attach_node(
    r: &dyn Runner,
    node: &str,
    pool: &IscsiPool,
    w: &Waits,
) -> Result<LunFacts, StorageError> {
    let lun = &pool.lun;
    lun.validate()?;
    let start = iscsi::start_iscsid();
    let o = r.run(&start)?;
    if !o.success() {
        return Err(StorageError::Unsafe(format!(
            "node {node}: open-iscsi's daemon does not start ({start}: {}): install the \
             open-iscsi package on {node}",
            o.stderr.trim()
        )));
    }
    let out = r.run(&lun.discover())?;
    if !out.success() {
        return Err(StorageError::Unsafe(format!(
            "node {node}: no answer from the iSCSI portal {}: {}: check the address and that \
             TCP port {} is open from {node}; nothing was changed",
            lun.addr(),
            out.stderr.trim().trim_start_matches("iscsiadm: "),
            lun.addr().rsplit(':').next().unwrap_or("3260")
        )));
    }
    let offered = iscsi::parse_discovery(&out.stdout);
    if !offered.iter().any(|(_, t)| *t == lun.target) {
        return Err(StorageError::Unsafe(format!(
            "node {node}: the portal {} does not offer the target {} (it offers: {}); nothing \
             was changed",
            lun.addr(),
            lun.target,
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered
                    .iter()
                    .map(|(_, t)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    let was_in = lun.logged_in(&iscsi::read_sessions(r)?);
    let res = (|| -> Result<LunFacts, StorageError> {
        if !was_in {
            r.run_ok(&lun.new_record())?;
            r.run_ok(&lun.set_auth())?;
            let o = r.run(&lun.login())?;
            if !o.success() && o.code != Some(ERR_SESS_EXISTS) {
                return Err(StorageError::Unsafe(login_error(
                    node,
                    lun,
                    iscsi::initiator_name(r),
                    &o.stderr,
                    o.code,
                )));
            }
        }
        r.run(&settle())?;
        let dev = lun.device();
        let deadline = Instant::now() + w.connect.min(std::time::Duration::from_secs(60));
        while !r
            .run(&Cmd::argv(&["test", "-b", &dev]).timeout(T))?
            .success()
        {
            if Instant::now() >= deadline {
                return Err(StorageError::Unsafe(format!(
                    "node {node}: logged in to {}, but no LUN {} appeared ({dev} is missing): \
                     check the LUN number on the target",
                    lun.target, lun.lun
                )));
            }
            sleep(w.interval);
        }
        let device = device::probe(r, node, &dev)?;
        let wwn = r.run_ok(&wwn(&dev))?.trim().to_string();
        Ok(LunFacts {
            node: node.into(),
            device,
            wwn,
            was_logged_in: was_in,
        })
    })();
    if res.is_err() && !was_in {
        let _ = detach_node(r, pool);
    }
    res
}

/// Log out of the LUN and delete its record (neither being there is fine).
pub fn detach_node(r: &dyn Runner, pool: &IscsiPool) -> Result<(), StorageError> {
    for c in [pool.lun.logout(), pool.lun.delete_record()] {
        let o = r.run(&c)?;
        if !o.success() && o.code != Some(ERR_NO_OBJS_FOUND) {
            return Err(StorageError::Run(keel_runner::RunError::Failed {
                cmd: c.to_string(),
                code: o.code,
                stderr: o.stderr,
                stdout: o.stdout,
            }));
        }
    }
    Ok(())
}

/// Every node logs in (this one first); every node must see the same LUN, and this node's
/// probe must pass. On a refusal every node that logged in logs out again.
pub fn attach_all(
    r: &dyn Runner,
    peers: &[&dyn IscsiPeer],
    pool: &IscsiPool,
    w: &Waits,
) -> Result<Vec<LunFacts>, StorageError> {
    pool.validate()?;
    let me = pool.nodes[0].clone();
    let mut facts = Vec::new();
    // who logged in for this pool (a node that had a session with the target before keeps it)
    let mut attached: Vec<Option<&dyn IscsiPeer>> = Vec::new();
    let res = (|| -> Result<(), StorageError> {
        let f = attach_node(r, &me, pool, w)?;
        if !f.was_logged_in {
            attached.push(None);
        }
        facts.push(f);
        for p in peers {
            let f = p.attach(pool)?;
            if !f.was_logged_in {
                attached.push(Some(*p));
            }
            facts.push(f);
        }
        let first = &facts[0];
        for f in &facts[1..] {
            if f.device.size_bytes != first.device.size_bytes || f.wwn != first.wwn {
                return Err(StorageError::Unsafe(format!(
                    "nodes {} and {} see different LUNs at {} (size {} vs {} bytes, WWN {:?} \
                     vs {:?}): check the target's LUN mapping",
                    first.node,
                    f.node,
                    pool.lun.device(),
                    first.device.size_bytes,
                    f.device.size_bytes,
                    first.wwn,
                    f.wwn
                )));
            }
        }
        device::check(&me, &first.device, MIN_BYTES, pool.wipe).map(|_| ())
    })();
    match res {
        Ok(()) => Ok(facts),
        Err(e) => {
            for a in attached {
                let _ = match a {
                    None => detach_node(r, pool),
                    Some(p) => p.detach(pool),
                };
            }
            Err(e)
        }
    }
}

/// The drop-in ordering Pacemaker after open-iscsi's boot-time login. open-iscsi tries each
/// record's first login a few times and gives up; a node that boots while its storage network
/// is still coming up (after a fence, a power cut) would then start Pacemaker without the LUN,
/// and the pool's LVM-activate would fail there until an operator cleaned it up. So Pacemaker's
/// start first retries the automatic logins every 5 s until all are up (exit 0, or 15: already
/// logged in; 21: no records), for at most 150 s, and starts anyway after that.
pub fn pacemaker_dropin() -> String {
    "# Written by Keel (iscsi-gfs2 pools): Pacemaker starts once this node is logged in to the\n\
     # pools' LUNs (retried for up to 150 s), so their VGs are there when it activates them.\n\
     [Unit]\nWants=open-iscsi.service iscsid.service\nAfter=open-iscsi.service iscsid.service\n\n\
     [Service]\n\
     ExecStartPre=-/usr/bin/timeout 150 /bin/sh -c 'until iscsiadm -m node --loginall=automatic \
     >/dev/null 2>&1; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 15 ] || [ $$rc -eq 21 ]; do sleep 5; \
     done'\n\
     TimeoutStartSec=300\n"
        .into()
}

/// This node's half before the shared VG exists: LVM sees the LUN by its stable name (beside
/// DRBD devices and the node's own PVs), open-iscsi logs in at boot before Pacemaker starts,
/// and the mount point is guarded.
pub fn prepare_node(r: &dyn Runner, _node: &str, pool: &IscsiPool) -> Result<(), StorageError> {
    let dev = pool.lun.device();
    let listed = stable_pvs(r)?;
    let mut keep: Vec<&str> = listed.iter().map(String::as_str).collect();
    if !keep.contains(&dev.as_str()) {
        keep.push(&dev);
    }
    r.run_ok(
        &Cmd::argv(&["install", "-D", "-m", "0644", "/dev/stdin", LVMLOCAL])
            .stdin(lvmlocal_conf(&keep))
            .timeout(T),
    )?;
    r.run_ok(
        &Cmd::argv(&[
            "install",
            "-D",
            "-m",
            "0644",
            "/dev/stdin",
            PACEMAKER_DROPIN,
        ])
        .stdin(pacemaker_dropin())
        .timeout(T),
    )?;
    r.run_ok(&Cmd::argv(&["systemctl", "daemon-reload"]).timeout(T))?;
    r.run_ok(
        &Cmd::argv(&[
            "systemctl",
            "enable",
            "--quiet",
            "open-iscsi.service",
            "iscsid.socket",
        ])
        .timeout(T),
    )?;
    match pool.layout {
        IscsiLayout::Gfs2 => guard_mountpoint(r, &pool.mountpoint()),
        IscsiLayout::Lvm => Ok(()),
    }
}

/// This node joins the VG's lockspace (`iscsi-lvm`): lvmlockd then takes the VG's and each
/// LV's locks in DLM for it. Already joined is fine. hostd runs it again before it touches
/// the VG after a reboot (nothing else starts the lockspace of a VG without a Pacemaker LV).
pub fn join_lockspace(r: &dyn Runner, pool: &IscsiPool) -> Result<(), StorageError> {
    let c = lvm::lockstart(&pool.vg());
    let o = r.run(&c)?;
    if o.success() || lvm::already_started(&o.stderr) {
        return Ok(());
    }
    Err(StorageError::Unsafe(format!(
        "cannot join the lockspace of {} ({c}: {}): check that the LUN is logged in \
         (iscsiadm -m session) and that lvmlockd runs on this node (crm_mon)",
        pool.vg(),
        o.stderr.trim()
    )))
}

/// The task, on `pool.nodes[0]` once [`attach_all`] passed.
pub fn create(
    r: &dyn Runner,
    peers: &[&dyn IscsiPeer],
    pool: &IscsiPool,
    w: &Waits,
    sink: &dyn Sink,
) -> Result<(), StorageError> {
    pool.validate()?;
    let me = pool.nodes[0].clone();
    let dev = pool.lun.device();
    // the LUN may have changed since the API looked
    let facts = device::probe(r, &me, &dev)?;
    if let Some(wipe) = device::check(&me, &facts, MIN_BYTES, pool.wipe)? {
        r.run_ok(&wipe)?;
        sink.log(&format!("{me}: signatures on {dev} erased (--wipe)"));
    }
    prepare_node(r, &me, pool)?;
    sink.log(&format!("{me}: LVM filter, boot order, mount point"));
    for p in peers {
        p.prepare(pool)?;
        sink.log(&format!(
            "{}: LVM filter, boot order, mount point",
            p.name()
        ));
    }
    sink.progress(0.2);

    let (lr, lc) = stack::lock_layer();
    r.run_ok(&cib_add(lr, lc))?;
    let nodes: Vec<&str> = pool.nodes.iter().map(String::as_str).collect();
    wait_running(r, stack::LVMLOCKD_CLONE, &nodes, w, sink)?;
    sink.progress(0.4);

    if pool.layout == IscsiLayout::Lvm {
        let vg = pool.vg();
        r.run_ok(&lvm::vgcreate_volumes(&vg, &dev))?;
        sink.log(&format!(
            "{me}: shared VG {vg} on {dev}, tagged for VM disks"
        ));
        join_lockspace(r, pool)?;
        sink.log(&format!("{me}: joined the lockspace of {vg}"));
        for p in peers {
            p.join(pool)?;
            sink.log(&format!("{}: joined the lockspace of {vg}", p.name()));
        }
        sink.progress(0.95);
        return Ok(());
    }
    shared_fs(
        r,
        &pool.vg(),
        &dev,
        &pool.gfs2(),
        &pool.stack(),
        &nodes,
        w,
        sink,
    )?;
    sink.progress(0.95);
    Ok(())
}

/// Before the extension's task, on a node of the pool (`me`): each new node logs in (with the
/// secret this node's record holds) and must see the LUN this node sees (size and WWN). On a
/// refusal every new node that logged in logs out again: nothing changed.
pub fn attach_new(
    r: &dyn Runner,
    me: &str,
    new: &[&dyn IscsiPeer],
    pool: &IscsiPool,
) -> Result<Vec<LunFacts>, StorageError> {
    let dev = pool.lun.device();
    let mine = device::probe(r, me, &dev)?;
    let my_wwn = r.run_ok(&wwn(&dev))?.trim().to_string();
    let mut attached: Vec<&dyn IscsiPeer> = Vec::new();
    let mut facts = Vec::new();
    let res = (|| -> Result<(), StorageError> {
        for p in new {
            let f = p.attach(pool)?;
            if !f.was_logged_in {
                attached.push(*p);
            }
            if f.device.size_bytes != mine.size_bytes || f.wwn != my_wwn {
                return Err(StorageError::Unsafe(format!(
                    "node {} sees a different LUN at {dev} than {me} (size {} vs {} bytes, WWN \
                     {:?} vs {:?}): check the target's LUN mapping for {}'s initiator; nothing \
                     was changed",
                    f.node, f.device.size_bytes, mine.size_bytes, f.wwn, my_wwn, f.node
                )));
            }
            facts.push(f);
        }
        Ok(())
    })();
    match res {
        Ok(()) => Ok(facts),
        Err(e) => {
            for p in attached {
                let _ = p.detach(pool);
            }
            Err(e)
        }
    }
}

/// The extension's task, on a node of the pool once [`attach_new`] passed: the pool as it was
/// (`old`) reaches `new` too. Each new node gets the LVM filter, the boot order and the mount
/// point; once lvmlockd runs there (the lock layer's clones run on every member), either
/// (`iscsi-lvm`) it joins the VG's lockspace, or (`iscsi-gfs2`) a journal is added when the
/// file system has no spare one left for it (one per node plus a spare, `gfs2_jadd` on this
/// node's mount), and the chain's clone limits and node constraints take the new node in, so
/// Pacemaker activates the LV and mounts GFS2 there. Returns the pool with its new nodes.
///
/// Every step is idempotent: a run that failed part-way is completed by the next one.
pub fn extend(
    r: &dyn Runner,
    new: &[&dyn IscsiPeer],
    old: &IscsiPool,
    w: &Waits,
    sink: &dyn Sink,
) -> Result<IscsiPool, StorageError> {
    let mut pool = old.clone();
    for p in new {
        if !pool.nodes.iter().any(|n| n == p.name()) {
            pool.nodes.push(p.name().to_string());
        }
    }
    pool.validate()?;
    let names: Vec<&str> = new.iter().map(|p| p.name()).collect();
    for p in new {
        p.prepare(&pool)?;
        sink.log(&format!(
            "{}: LVM filter, boot order, mount point",
            p.name()
        ));
    }
    sink.progress(0.2);
    wait_running(r, stack::LVMLOCKD_CLONE, &names, w, sink)?;
    sink.progress(0.4);
    let vg = pool.vg();
    if pool.layout == IscsiLayout::Lvm {
        for p in new {
            p.join(&pool)?;
            sink.log(&format!("{}: joined the lockspace of {vg}", p.name()));
        }
        sink.progress(0.95);
        return Ok(pool);
    }
    r.run_ok(&Gfs2::flushbufs(&pool.lv_device()))?;
    let have = Gfs2::parse_jindex(&r.run_ok(&Gfs2::jindex(&pool.lv_device()))?);
    if have == 0 {
        return Err(StorageError::Unsafe(format!(
            "cannot read the journal index of {} (gfs2_edit -p jindex lists none): check the \
             file system with `gfs2_edit -p jindex {}` on a node that mounts it",
            pool.lv_device(),
            pool.lv_device()
        )));
    }
    match Gfs2::journals_to_add(have, pool.nodes.len() as u32) {
        Some(add) => {
            r.run_ok(&Gfs2::jadd(
                &pool.mountpoint(),
                add,
                crate::gfs2::JOURNAL_MIB,
            ))?;
            sink.log(&format!(
                "GFS2 {}: {add} journal(s) added to the {have} it had (one per node plus a spare)",
                pool.gfs2().lock_table()
            ));
        }
        None => sink.log(&format!(
            "GFS2 {}: its {have} journals cover {} nodes and a spare",
            pool.gfs2().lock_table(),
            pool.nodes.len()
        )),
    }
    sink.progress(0.6);
    let st = pool.stack();
    let (pr, pc) = st.render();
    r.run_ok(&cib_add(pr, pc))?;
    sink.log(&format!(
        "Pacemaker: {} may run on {} (clone-max {})",
        st.clone_ids().join(", "),
        pool.nodes.join(", "),
        pool.nodes.len()
    ));
    let all: Vec<&str> = pool.nodes.iter().map(String::as_str).collect();
    wait_running(r, &st.fs_clone_id(), &all, w, sink)?;
    sink.progress(0.95);
    Ok(pool)
}

/// This node leaves the pool once Pacemaker stopped its chain: logged out, record deleted,
/// mount point unguarded (the LUN keeps its data: a new pool on it needs `--wipe`).
pub fn teardown_node(r: &dyn Runner, pool: &IscsiPool) -> Result<(), StorageError> {
    if pool.layout == IscsiLayout::Lvm {
        // leave the lockspace before the LUN goes (not joined is fine)
        let _ = r.run(&lvm::lockstop(&pool.vg()))?;
        detach_node(r, pool)?;
        return Ok(());
    }
    detach_node(r, pool)?;
    unguard_mountpoint(r, &pool.mountpoint())
}

/// The DLM lockspace lvmlockd makes for a shared VG.
pub fn lockspace_dir(vg: &str) -> String {
    format!("/sys/kernel/dlm/lvm_{vg}")
}

/// This node's view: the session and the mount.
pub fn node_health(r: &dyn Runner, pool: &IscsiPool) -> Result<NodeHealth, StorageError> {
    let logged_in = pool.lun.logged_in(&iscsi::read_sessions(r)?);
    let mut h = match pool.layout {
        IscsiLayout::Gfs2 => mount_health(r, &pool.pool, &pool.mountpoint())?,
        IscsiLayout::Lvm => {
            let vg = pool.vg();
            let joined = r
                .run(&Cmd::argv(&["test", "-d", &lockspace_dir(&vg)]).timeout(T))?
                .success();
            let mut h = NodeHealth {
                lockspace: Some(joined),
                ..NodeHealth::default()
            };
            if let Some(v) = read_vg(r, &vg)? {
                h.size_bytes = Some(v.vg_size);
                h.free_bytes = Some(v.vg_free);
            }
            h
        }
    };
    h.logged_in = Some(logged_in);
    Ok(h)
}

/// The VG's size and free space (`None` while this node does not see it).
fn read_vg(r: &dyn Runner, vg: &str) -> Result<Option<crate::thin::Vg>, StorageError> {
    let o = r.run(&crate::thin::vgs())?;
    Ok(crate::thin::parse_vgs(&o.stdout)
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.vg_name == vg))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::drbd_gfs2;
    use crate::iscsi::tests::lun;
    use crate::lvm::{self, LvSize};
    use keel_runner::{Fake, Reply};
    use std::sync::Mutex;
    use std::time::Duration;

    fn pool(wipe: bool) -> IscsiPool {
        IscsiPool {
            pool: "shared".into(),
            cluster: "vmpair".into(),
            lun: lun(),
            nodes: vec!["node1".into(), "node2".into()],
            wipe,
            layout: IscsiLayout::Gfs2,
        }
    }

    const DEV: &str = "/dev/disk/by-path/ip-10.99.0.1:3260-iscsi-iqn.2024-01.lab.keel:pool0-lun-0";

    fn lsblk_json(signed: bool) -> (String, String) {
        (
            format!(
                r#"{{"blockdevices":[{{"path":"{DEV}","size":536870912,"type":"disk","mountpoints":[null]}}]}}"#
            ),
            if signed {
                r#"{"signatures":[{"device":"sdb","offset":"0x438","type":"ext4"}]}"#.into()
            } else {
                String::new()
            },
        )
    }

    fn w() -> Waits {
        Waits {
            interval: Duration::from_millis(1),
            connect: Duration::from_millis(50),
            sync: Duration::from_millis(50),
            pacemaker: Duration::from_millis(50),
        }
    }

    /// The login's commands, in order, up to a successful login.
    fn expect_login(f: &Fake, p: &IscsiPool) {
        let l = &p.lun;
        f.push(&iscsi::start_iscsid().to_argv(), None, Reply::ok(""));
        f.push(
            &l.discover().to_argv(),
            None,
            Reply::ok("10.99.0.1:3260,1 iqn.2024-01.lab.keel:pool0\n"),
        );
        f.push(
            &iscsi::sessions().to_argv(),
            None,
            Reply::fail(21, "No active sessions."),
        );
        f.push(
            &l.new_record().to_argv(),
            None,
            Reply::ok("New iSCSI node created"),
        );
        f.push(
            &l.set_auth().to_argv(),
            Some(l.auth_lines().into_bytes()),
            Reply::ok(""),
        );
    }

    fn expect_probe(f: &Fake, signed: bool) {
        let (ls, wf) = lsblk_json(signed);
        f.push(&settle().to_argv(), None, Reply::ok(""));
        f.push(&["test", "-b", DEV], None, Reply::ok(""));
        f.push(&device::lsblk(DEV).to_argv(), None, Reply::ok(ls));
        f.push(&device::wipefs_list(DEV).to_argv(), None, Reply::ok(wf));
        f.push(&wwn(DEV).to_argv(), None, Reply::ok("0x6001405abc\n"));
    }

    /// Another node (node2 unless named), its own runner, the steps asked of it.
    struct FakePeer(Fake, Mutex<Vec<&'static str>>, &'static str);
    impl FakePeer {
        fn new(f: Fake) -> Self {
            FakePeer(f, Mutex::new(vec![]), "node2")
        }
    }
    impl IscsiPeer for FakePeer {
        fn name(&self) -> &str {
            self.2
        }
        fn attach(&self, p: &IscsiPool) -> Result<LunFacts, StorageError> {
            self.1.lock().unwrap().push("attach");
            attach_node(&self.0, self.2, p, &w())
        }
        fn detach(&self, p: &IscsiPool) -> Result<(), StorageError> {
            self.1.lock().unwrap().push("detach");
            detach_node(&self.0, p)
        }
        fn prepare(&self, p: &IscsiPool) -> Result<(), StorageError> {
            self.1.lock().unwrap().push("prepare");
            prepare_node(&self.0, self.2, p)
        }
        fn join(&self, p: &IscsiPool) -> Result<(), StorageError> {
            self.1.lock().unwrap().push("join");
            join_lockspace(&self.0, p)
        }
    }

    #[test]
    fn attach_logs_in_everywhere_and_compares_the_lun() {
        let p = pool(false);
        let f1 = Fake::new();
        expect_login(&f1, &p);
        f1.push(
            &p.lun.login().to_argv(),
            None,
            Reply::ok("Login ... successful."),
        );
        expect_probe(&f1, false);
        let f2 = Fake::new();
        expect_login(&f2, &p);
        f2.push(
            &p.lun.login().to_argv(),
            None,
            Reply::ok("Login ... successful."),
        );
        expect_probe(&f2, false);
        let peer = FakePeer::new(f2);
        let facts = attach_all(&f1, &[&peer], &p, &w()).unwrap();
        assert_eq!(facts.len(), 2);
        assert_eq!(facts[1].wwn, "0x6001405abc");
        f1.assert_done();
        peer.0.assert_done();
    }

    /// A wrong CHAP secret on the second node: its record is deleted, the first node logs out
    /// and deletes its record too, and the error says what to check.
    #[test]
    fn a_refused_login_leaves_nothing_behind() {
        let p = pool(false);
        let f1 = Fake::new();
        expect_login(&f1, &p);
        f1.push(
            &p.lun.login().to_argv(),
            None,
            Reply::ok("Login ... successful."),
        );
        expect_probe(&f1, false);
        f1.push(&p.lun.logout().to_argv(), None, Reply::ok(""));
        f1.push(&p.lun.delete_record().to_argv(), None, Reply::ok(""));
        let f2 = Fake::new();
        expect_login(&f2, &p);
        f2.push(
            &p.lun.login().to_argv(),
            None,
            Reply::fail(24, "iscsiadm: Login failed to authenticate with target"),
        );
        f2.push(
            &["cat", iscsi::INITIATOR_FILE],
            None,
            Reply::ok("InitiatorName=iqn.2024-01.lab.keel:node2\n"),
        );
        f2.push(
            &p.lun.logout().to_argv(),
            None,
            Reply::fail(21, "No matching sessions"),
        );
        f2.push(&p.lun.delete_record().to_argv(), None, Reply::ok(""));
        let peer = FakePeer::new(f2);
        let e = attach_all(&f1, &[&peer], &p, &w()).unwrap_err().to_string();
        assert!(
            e.contains("node node2")
                && e.contains("refused the login")
                && e.contains("CHAP user and secret")
                && e.contains("iqn.2024-01.lab.keel:node2")
                && e.contains("nothing was changed"),
            "{e}"
        );
        assert!(!e.contains(&p.lun.chap_secret));
        f1.assert_done();
        peer.0.assert_done();
        // the peer that failed cleaned up itself; it is not asked again
        assert_eq!(*peer.1.lock().unwrap(), vec!["attach"]);
    }

    #[test]
    fn a_signed_lun_is_refused_without_wipe_and_everyone_logs_out() {
        let p = pool(false);
        let f1 = Fake::new();
        expect_login(&f1, &p);
        f1.push(&p.lun.login().to_argv(), None, Reply::ok(""));
        expect_probe(&f1, true);
        f1.push(&p.lun.logout().to_argv(), None, Reply::ok(""));
        f1.push(&p.lun.delete_record().to_argv(), None, Reply::ok(""));
        let f2 = Fake::new();
        expect_login(&f2, &p);
        f2.push(&p.lun.login().to_argv(), None, Reply::ok(""));
        expect_probe(&f2, true);
        f2.push(&p.lun.logout().to_argv(), None, Reply::ok(""));
        f2.push(&p.lun.delete_record().to_argv(), None, Reply::ok(""));
        let peer = FakePeer::new(f2);
        let e = attach_all(&f1, &[&peer], &p, &w()).unwrap_err().to_string();
        assert!(
            e.contains("is not blank (it holds ext4)") && e.contains("--wipe"),
            "{e}"
        );
        f1.assert_done();
        peer.0.assert_done();
        assert_eq!(*peer.1.lock().unwrap(), vec!["attach", "detach"]);
    }

    /// node1 already had a session with the target (not made for this pool): it is not logged
    /// in again, and a refusal logs out only node2, whose session was made for it.
    #[test]
    fn a_session_that_was_there_before_is_left_alone() {
        let p = pool(false);
        let l = &p.lun;
        let f1 = Fake::new();
        f1.push(&iscsi::start_iscsid().to_argv(), None, Reply::ok(""));
        f1.push(
            &l.discover().to_argv(),
            None,
            Reply::ok("10.99.0.1:3260,1 iqn.2024-01.lab.keel:pool0\n"),
        );
        f1.push(
            &iscsi::sessions().to_argv(),
            None,
            Reply::ok("tcp: [3] 10.99.0.1:3260,1 iqn.2024-01.lab.keel:pool0 (non-flash)\n"),
        );
        expect_probe(&f1, true);
        let f2 = Fake::new();
        expect_login(&f2, &p);
        f2.push(&l.login().to_argv(), None, Reply::ok(""));
        expect_probe(&f2, true);
        f2.push(&l.logout().to_argv(), None, Reply::ok(""));
        f2.push(&l.delete_record().to_argv(), None, Reply::ok(""));
        let peer = FakePeer::new(f2);
        let e = attach_all(&f1, &[&peer], &p, &w()).unwrap_err().to_string();
        assert!(e.contains("is not blank"), "{e}");
        f1.assert_done();
        peer.0.assert_done();
        assert_eq!(*peer.1.lock().unwrap(), vec!["attach", "detach"]);
    }

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    impl Sink for Log {
        fn log(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_string());
        }
        fn progress(&self, _: f64) {}
    }

    /// This node already has another iSCSI PV (`/dev/sdc`): it is kept by its `by-path` name.
    fn expect_prepare(f: &Fake, p: &IscsiPool) {
        f.push(
            &drbd_gfs2::pvs().to_argv(),
            None,
            Reply::ok("  /dev/vda3\n  /dev/sdc\n  /dev/drbd0\n"),
        );
        let other = "disk/by-path/ip-10.99.0.9:3260-iscsi-iqn.2024-01.lab.keel:other-lun-0";
        f.push(
            &drbd_gfs2::udev_links("/dev/sdc").to_argv(),
            None,
            Reply::ok(format!(
                "disk/by-id/scsi-36001405aa {other} disk/by-id/wwn-0x6001405aa\n"
            )),
        );
        let other = format!("/dev/{other}");
        f.push(
            &["install", "-D", "-m", "0644", "/dev/stdin", LVMLOCAL],
            Some(lvmlocal_conf(&["/dev/vda3", &other, DEV]).into_bytes()),
            Reply::ok(""),
        );
        f.push(
            &[
                "install",
                "-D",
                "-m",
                "0644",
                "/dev/stdin",
                PACEMAKER_DROPIN,
            ],
            Some(pacemaker_dropin().into_bytes()),
            Reply::ok(""),
        );
        f.push(&["systemctl", "daemon-reload"], None, Reply::ok(""));
        f.push(
            &[
                "systemctl",
                "enable",
                "--quiet",
                "open-iscsi.service",
                "iscsid.socket",
            ],
            None,
            Reply::ok(""),
        );
        if p.layout == IscsiLayout::Gfs2 {
            let mp = p.mountpoint();
            f.push(&["mountpoint", "-q", &mp], None, Reply::fail(32, ""));
            f.push(&["install", "-d", "-m", "0755", &mp], None, Reply::ok(""));
            f.push(&["chattr", "+i", &mp], None, Reply::ok(""));
        }
    }

    #[test]
    fn create_runs_the_stack_in_order() {
        let p = pool(true);
        let f1 = Fake::new();
        let (ls, wf) = lsblk_json(true);
        f1.push(&device::lsblk(DEV).to_argv(), None, Reply::ok(ls));
        f1.push(&device::wipefs_list(DEV).to_argv(), None, Reply::ok(wf));
        f1.push(&device::wipefs_all(DEV).to_argv(), None, Reply::ok(""));
        expect_prepare(&f1, &p);
        let f2 = Fake::new();
        expect_prepare(&f2, &p);
        let (lr, lc) = stack::lock_layer();
        let lock = cib_add(lr, lc);
        f1.push(
            &lock.to_argv(),
            Some(lock.get_stdin().unwrap().to_vec()),
            Reply::ok(""),
        );
        f1.push(
            &drbd_gfs2::locate(stack::LVMLOCKD_CLONE).to_argv(),
            None,
            Reply::ok("resource lvmlockd-clone is running on: node1\nresource lvmlockd-clone is running on: node2\n"),
        );
        let vg = "keel-shared";
        for c in [
            lvm::vgcreate_shared(vg, DEV),
            lvm::lockstart(vg),
            lvm::lvcreate(vg, LV, LvSize::AllFree),
            lvm::lvchange(vg, LV, Activation::Shared),
            p.gfs2().mkfs_with_journal_mib(32),
            lvm::lvchange(vg, LV, Activation::Off),
        ] {
            f1.push(&c.to_argv(), None, Reply::ok(""));
        }
        let (pr, pc) = p.stack().render();
        let chain = cib_add(pr, pc);
        f1.push(
            &chain.to_argv(),
            Some(chain.get_stdin().unwrap().to_vec()),
            Reply::ok(""),
        );
        f1.push(
            &drbd_gfs2::locate("fs-shared-clone").to_argv(),
            None,
            Reply::ok("resource fs-shared-clone is running on: node1\nresource fs-shared-clone is running on: node2\n"),
        );
        let peer = FakePeer::new(f2);
        let log = Log::default();
        create(&f1, &[&peer], &p, &w(), &log).unwrap();
        f1.assert_done();
        peer.0.assert_done();
        let l = log.0.lock().unwrap().join("\n");
        assert!(l.contains("GFS2 vmpair:shared with 3 journals"), "{l}");
        // the chain has no DRBD: its XML names none
        assert!(!chain
            .get_stdin()
            .map(|s| String::from_utf8_lossy(s).contains("drbd"))
            .unwrap_or(true));
    }

    /// A node that joined later: node3 (its own runner) gets the filter, boot order and mount
    /// point; this node reads the journal index, adds the journal the third node needs for a
    /// spare to remain, and takes node3 into the chain's clone limits and node constraints,
    /// then waits until GFS2 runs on all three.
    #[test]
    fn extend_adds_a_journal_and_the_node_to_the_chain() {
        let old = pool(false);
        let mut new = old.clone();
        new.nodes.push("node3".into());
        let f1 = Fake::new();
        let f3 = Fake::new();
        expect_prepare(&f3, &new);
        f1.push(
            &drbd_gfs2::locate(stack::LVMLOCKD_CLONE).to_argv(),
            None,
            Reply::ok("resource lvmlockd-clone is running on: node3\n"),
        );
        f1.push(
            &Gfs2::flushbufs("/dev/keel-shared/fs").to_argv(),
            None,
            Reply::ok(""),
        );
        f1.push(
            &Gfs2::jindex("/dev/keel-shared/fs").to_argv(),
            None,
            Reply::ok(
                " 3/3 [FC7745EB] 1/18 (0x1/0x12) +0: File    journal0\n \
                 4/4 [8B70757D] 2/2075 (0x2/0x81b) +0: File    journal1\n \
                 5/5 [127924C7] 3/4132 (0x3/0x1024) +0: File    journal2\n",
            ),
        );
        f1.push(
            &[
                "gfs2_jadd",
                "-j",
                "1",
                "-J",
                "32",
                "/var/lib/keel/pools/shared",
            ],
            None,
            Reply::ok("Filesystem: /var/lib/keel/pools/shared\nOld journals: 3\nNew journals: 4\n"),
        );
        let (pr, pc) = new.stack().render();
        let chain = cib_add(pr, pc);
        let xml = String::from_utf8_lossy(chain.get_stdin().unwrap()).to_string();
        assert!(
            xml.contains(r#"name="clone-max" value="3""#)
                && xml.contains(r#"id="location-fs-shared-clone-node3" rsc="fs-shared-clone" node="node3" score="0" resource-discovery="exclusive""#),
            "{xml}"
        );
        f1.push(&chain.to_argv(), Some(xml.into_bytes()), Reply::ok(""));
        f1.push(
            &drbd_gfs2::locate("fs-shared-clone").to_argv(),
            None,
            Reply::ok(
                "resource fs-shared-clone is running on: node1\nresource fs-shared-clone is running on: node2\nresource fs-shared-clone is running on: node3\n",
            ),
        );
        let n3 = FakePeer(f3, Mutex::new(vec![]), "node3");
        let log = Log::default();
        let got = extend(&f1, &[&n3], &old, &w(), &log).unwrap();
        f1.assert_done();
        n3.0.assert_done();
        assert_eq!(got.nodes, ["node1", "node2", "node3"]);
        assert_eq!(*n3.1.lock().unwrap(), ["prepare"]);
        let l = log.0.lock().unwrap().join("\n");
        assert!(l.contains("1 journal(s) added to the 3 it had"), "{l}");

        // with a spare already there for the fourth node, no journal is added
        assert_eq!(Gfs2::journals_to_add(5, 4), None);
    }

    #[test]
    fn two_nodes_at_least() {
        let mut p = pool(false);
        p.nodes.truncate(1);
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("two nodes or more"), "{e}");
    }

    /// `iscsi-lvm`: no mount point, no LV, no file system, no Pacemaker chain: the VG tagged
    /// for VM disks and every node in its lockspace (one already in it is fine).
    #[test]
    fn an_lvm_pool_is_a_tagged_vg_every_node_locks() {
        let mut p = pool(false);
        p.layout = IscsiLayout::Lvm;
        p.validate().unwrap();
        assert_eq!(p.stack().render(), (vec![], vec![]));
        let f1 = Fake::new();
        let (ls, wf) = lsblk_json(false);
        f1.push(&device::lsblk(DEV).to_argv(), None, Reply::ok(ls));
        f1.push(&device::wipefs_list(DEV).to_argv(), None, Reply::ok(wf));
        expect_prepare(&f1, &p);
        let f2 = Fake::new();
        expect_prepare(&f2, &p);
        let (lr, lc) = stack::lock_layer();
        let lock = cib_add(lr, lc);
        f1.push(
            &lock.to_argv(),
            Some(lock.get_stdin().unwrap().to_vec()),
            Reply::ok(""),
        );
        f1.push(
            &drbd_gfs2::locate(stack::LVMLOCKD_CLONE).to_argv(),
            None,
            Reply::ok("resource lvmlockd-clone is running on: node1\nresource lvmlockd-clone is running on: node2\n"),
        );
        let vg = "keel-shared";
        f1.push(
            &lvm::vgcreate_volumes(vg, DEV).to_argv(),
            None,
            Reply::ok(""),
        );
        f1.push(&lvm::lockstart(vg).to_argv(), None, Reply::ok(""));
        f2.push(
            &lvm::lockstart(vg).to_argv(),
            None,
            Reply::fail(5, "  VG keel-shared lockspace already started\n"),
        );
        let peer = FakePeer::new(f2);
        let log = Log::default();
        create(&f1, &[&peer], &p, &w(), &log).unwrap();
        f1.assert_done();
        peer.0.assert_done();
        assert_eq!(*peer.1.lock().unwrap(), ["prepare", "join"]);
        let l = log.0.lock().unwrap().join("\n");
        assert!(l.contains("tagged for VM disks"), "{l}");
        assert!(!l.contains("GFS2"), "{l}");

        // a node that cannot join says what to check
        let f = Fake::new().expect(
            &lvm::lockstart(vg).to_argv(),
            Reply::fail(5, "  lvmlockd not running\n"),
        );
        let e = join_lockspace(&f, &p).unwrap_err().to_string();
        assert!(
            e.contains("lvmlockd not running") && e.contains("crm_mon"),
            "{e}"
        );

        // leaving: the lockspace, then the LUN; no mount point to unguard
        let f = Fake::new()
            .expect(&lvm::lockstop(vg).to_argv(), Reply::ok(""))
            .expect(&p.lun.logout().to_argv(), Reply::ok(""))
            .expect(&p.lun.delete_record().to_argv(), Reply::ok(""));
        teardown_node(&f, &p).unwrap();
        f.assert_done();
    }

    #[test]
    fn lvm_health_is_the_session_the_lockspace_and_the_vg_space() {
        let mut p = pool(false);
        p.layout = IscsiLayout::Lvm;
        let f = Fake::new()
            .expect(
                &iscsi::sessions().to_argv(),
                Reply::ok("tcp: [1] 10.99.0.1:3260,1 iqn.2024-01.lab.keel:pool0 (non-flash)\n"),
            )
            .expect(
                &["test", "-d", "/sys/kernel/dlm/lvm_keel-shared"],
                Reply::ok(""),
            )
            .expect(
                &crate::thin::vgs().to_argv(),
                Reply::ok(r#"{"report":[{"vg":[{"vg_name":"keel-shared","vg_size":"536870912","vg_free":"402653184","vg_lock_type":"dlm","vg_tags":"keel_volumes"}]}]}"#),
            );
        let h = node_health(&f, &p).unwrap();
        assert_eq!(h.logged_in, Some(true));
        assert_eq!(h.lockspace, Some(true));
        assert!(!h.mounted);
        assert_eq!(
            (h.size_bytes, h.free_bytes),
            (Some(512 << 20), Some(384 << 20))
        );
        f.assert_done();
    }
}
