//! Cluster storage pools (docs/storage.md): `keel storage pool create NAME --type drbd-gfs2
//! --device DEV [--wipe]` or `--type iscsi-gfs2 --portal … --target … --chap-user …
//! --chap-secret-file …`, `keel storage status`, `keel storage pool delete NAME`.
//!
//! The node that receives the request creates the pool as a task, running
//! [`keel_storage::drbd_gfs2::create`] or [`keel_storage::iscsi_gfs2::create`]: its own half
//! through the cluster's runner, the other nodes' halves through the member-to-member peer
//! endpoint [`PEER_PATH`] (HMAC + mutual TLS, like every peer call; the DRBD shared secret and
//! the CHAP secret travel only there and into each node's 0600 `.res` or open-iscsi record).
//! An `iscsi-gfs2` pool logs every node in before the task exists
//! ([`keel_storage::iscsi_gfs2::attach_all`]), so a wrong CHAP secret, a portal without the
//! target or a LUN that is not blank is a 409 that leaves nothing behind. The pool's
//! definition — without the secret — is kept in the config store under
//! `/storage/pools/<name>` so every node sees it; once the file system runs on both nodes the
//! pool is declared a shared pool (`/storage/shared/<name>`, a marker in the GFS2 root), so each
//! node's reconciler defines the libvirt `dir` pool of the same name and HA can use it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use keel_api::cluster_storage::{
    ClusterPoolCreate, ClusterPoolExtend, ClusterPoolKind, ClusterPoolNode, ClusterPoolStatus,
    IscsiLunInfo, SplitBrainResolve,
};
use keel_api::task::TaskRef;
use keel_api::ErrorBody;
use keel_runner::Runner;
use keel_storage::drbd::{DrbdPeer, DrbdResource};
use keel_storage::drbd_gfs2::{self, DrbdGfs2, NodeHealth, PeerNode, Sink, Waits};
use keel_storage::iscsi::IscsiLun;
use keel_storage::iscsi_gfs2::{self, IscsiLayout, IscsiPeer, IscsiPool, LunFacts};
use keel_storage::split_brain::{self, SplitBrainNode};
use keel_storage::stack::PoolStack;
use keel_storage::StorageError;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::cluster_net::{self, Signed, PEER_HEADER};
use crate::db::Store;
use crate::error::{Error, Result};
use crate::http::{accepted, blocking, ApiResult, JsonBody, Path};
use crate::tasks::{self, TaskHandle};
use crate::tls::PeerCert;
use crate::Node;

mod extend;

/// The member-to-member endpoint a pool's other node answers.
pub const PEER_PATH: &str = "/api/v1/cluster/peer/storage";
/// The first DRBD port; pool `minor` uses `BASE_PORT + minor`.
const BASE_PORT: u16 = 7789;

/// `/storage/pools/<name>`: the pool as every node knows it (secrets blanked); `def` for a
/// `drbd-gfs2` pool, `iscsi` for an `iscsi-gfs2` one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolRecord {
    pub kind: ClusterPoolKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub def: Option<DrbdGfs2>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<IscsiPool>,
    /// `creating`, `ready`, `failed: …`.
    pub state: String,
}

/// A pool's definition, whichever its kind.
enum Def<'a> {
    Drbd(&'a DrbdGfs2),
    Iscsi(&'a IscsiPool),
}

impl PoolRecord {
    fn def(&self) -> Result<Def<'_>> {
        match (&self.def, &self.iscsi) {
            (Some(d), None) => Ok(Def::Drbd(d)),
            (None, Some(i)) => Ok(Def::Iscsi(i)),
            _ => Err(Error::Internal(
                "a cluster pool record holds no (or two) definitions".into(),
            )),
        }
    }
    fn name(&self) -> Result<String> {
        Ok(match self.def()? {
            Def::Drbd(d) => d.pool.clone(),
            Def::Iscsi(i) => i.pool.clone(),
        })
    }
    /// The nodes the pool lives on, with the device each uses.
    fn nodes(&self) -> Result<Vec<(String, String)>> {
        Ok(match self.def()? {
            Def::Drbd(d) => d
                .drbd
                .peers
                .iter()
                .map(|p| (p.node.clone(), p.disk.clone()))
                .collect(),
            Def::Iscsi(i) => i
                .nodes
                .iter()
                .map(|n| (n.clone(), i.lun.device()))
                .collect(),
        })
    }
    /// Where its files are: the GFS2 mount point, or the VG's directory (`iscsi-lvm`).
    fn mountpoint(&self) -> Result<String> {
        Ok(match self.def()? {
            Def::Drbd(d) => d.mountpoint(),
            Def::Iscsi(i) if i.layout == IscsiLayout::Lvm => format!("/dev/{}", i.vg()),
            Def::Iscsi(i) => i.mountpoint(),
        })
    }
    fn stack(&self) -> Result<PoolStack> {
        Ok(match self.def()? {
            Def::Drbd(d) => d.stack(),
            Def::Iscsi(i) => i.stack(),
        })
    }
}

/// A pool checked and ready for its create task.
pub enum NewPool {
    Drbd(DrbdGfs2),
    Iscsi(IscsiPool),
}

fn pool_key(name: &str) -> String {
    format!("/storage/pools/{name}")
}

/// A storage model's refusal as the API answers it (also node-local pools').
pub(crate) fn storage_err(e: StorageError) -> Error {
    match e {
        StorageError::Invalid(m) => Error::BadRequest(m),
        StorageError::Unsafe(m) => Error::Conflict(m),
        StorageError::Run(e) if e.is_timeout() => Error::Unavailable(e.to_string()),
        other => Error::Internal(other.to_string()),
    }
}

fn clustered_store(node: &Node) -> Result<(clusterd::form::ClusterRecord, Store)> {
    let rec = node.cluster.record()?.ok_or_else(|| {
        Error::Conflict(
            "this node is not in a cluster: cluster pools need one (keel cluster init)".into(),
        )
    })?;
    Ok((rec, Store::local()))
}

fn records(st: &Store) -> Result<Vec<PoolRecord>> {
    st.list("/storage/pools")?
        .iter()
        .map(|e| {
            serde_json::from_value(e.value.clone()).map_err(|x| {
                Error::Internal(format!("config store entry {} is not readable: {x}", e.key))
            })
        })
        .collect()
}

/// The Pacemaker clones a VM whose disks are on `pools` must follow: each cluster pool's file
/// system clone (`fs-POOL-clone`); other pools (directory shared pools, local ones) have none.
/// Sorted, without repeats.
pub fn pacemaker_clones(st: &Store, pools: &[String]) -> Result<Vec<String>> {
    let mut out = vec![];
    for p in pools {
        let Some(e) = st.get(&pool_key(p))? else {
            continue;
        };
        let rec: PoolRecord = serde_json::from_value(e.value).map_err(|x| {
            Error::Internal(format!(
                "config store entry {} is not readable: {x}",
                pool_key(p)
            ))
        })?;
        let stack = rec.stack()?;
        if stack.mountpoint.is_some() {
            out.push(stack.fs_clone_id());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether the cluster has an `iscsi-lvm` pool (whose disks the reconciler releases once
/// their VM stopped).
pub fn has_volume_pools(st: &Store) -> bool {
    !volume_pools(st).is_empty()
}

/// The names of the cluster's `iscsi-lvm` pools (none when the store cannot be read).
pub fn volume_pools(st: &Store) -> Vec<String> {
    records(st)
        .unwrap_or_default()
        .iter()
        .filter(|r| r.kind == ClusterPoolKind::IscsiLvm)
        .filter_map(|r| r.name().ok())
        .collect()
}

/// The DRBD resources of the cluster's pools (resource → pool), for `keel cluster verify`;
/// empty when the store cannot be read.
pub fn drbd_resources() -> std::collections::BTreeMap<String, String> {
    records(&Store::local())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.def)
        .map(|d| (d.drbd.name.clone(), d.pool.clone()))
        .collect()
}

/// Everything that can refuse before a task exists, for either kind.
pub fn check_create(node: &Node, req: &ClusterPoolCreate) -> Result<NewPool> {
    match req.kind {
        ClusterPoolKind::DrbdGfs2 => {
            if req.iscsi.is_some() {
                return Err(Error::validation(
                    "iscsi",
                    "iscsi settings are for iscsi-gfs2 and iscsi-lvm pools; a drbd-gfs2 pool \
                     takes a device",
                ));
            }
            let dev = req.device.as_deref().ok_or_else(|| {
                Error::validation(
                    "device",
                    "a drbd-gfs2 pool needs the block device of each node, e.g. /dev/vdb",
                )
            })?;
            check_create_drbd(node, req, dev).map(NewPool::Drbd)
        }
        ClusterPoolKind::IscsiGfs2 => {
            check_create_iscsi(node, req, IscsiLayout::Gfs2).map(NewPool::Iscsi)
        }
        ClusterPoolKind::IscsiLvm => {
            check_create_iscsi(node, req, IscsiLayout::Lvm).map(NewPool::Iscsi)
        }
    }
}

/// A name no pool (cluster, shared or libvirt) has.
fn check_free_name(node: &Node, st: &Store, name: &str) -> Result<()> {
    if st.get(&pool_key(name))?.is_some()
        || st.get(&format!("/storage/shared/{name}"))?.is_some()
        || node.hv.pool(name).is_ok()
    {
        return Err(Error::Conflict(format!(
            "a pool named {name:?} already exists: choose another name"
        )));
    }
    Ok(())
}

/// `iscsi-gfs2`: the cluster, the name, the LUN's description, the fence gate, two members or
/// more, a LUN no other pool uses; then every node logs in and looks at the LUN
/// ([`iscsi_gfs2::attach_all`]: on a refusal every node logs out again). Returns the pool
/// (this node first, the sessions up).
fn check_create_iscsi(
    node: &Node,
    req: &ClusterPoolCreate,
    layout: IscsiLayout,
) -> Result<IscsiPool> {
    let kind = layout.kind();
    let (rec, st) = clustered_store(node)?;
    keel_storage::check_name("pool", &req.name, 30)
        .map_err(|e| Error::validation("name", e.to_string()))?;
    if req.device.is_some() {
        return Err(Error::validation(
            "device",
            format!("an {kind} pool lives on the LUN given in iscsi, not on a device of each node"),
        ));
    }
    let spec = req.iscsi.as_ref().ok_or_else(|| {
        Error::validation(
            "iscsi",
            format!(
                "an {kind} pool needs its LUN: iscsi.portal, iscsi.target, iscsi.lun, \
                 iscsi.chap_user and iscsi.chap_secret"
            ),
        )
    })?;
    let mut lun = IscsiLun {
        portal: spec.portal.trim().to_string(),
        target: spec.target.trim().to_string(),
        lun: spec.lun,
        chap_user: spec.chap_user.clone(),
        chap_secret: spec.chap_secret.clone(),
    };
    if let Err(e) = lun.validate() {
        let m = e.to_string();
        let field = m.split(':').next().unwrap_or("iscsi").to_string();
        return Err(Error::validation(&field, m));
    }
    lun.portal = lun.addr();
    crate::cluster::require_fence_tested(node)?;
    if rec.members.len() < 2 {
        return Err(Error::Conflict(format!(
            "an {kind} pool is shared by two nodes or more; this cluster has one: join \
             another node first"
        )));
    }
    check_free_name(node, &st, &req.name)?;
    // One pool per target and portal: open-iscsi has one session (and one node record) per
    // target, whatever the LUN, so a second pool on another LUN of the same target would share
    // them, and deleting either pool would log the other's LUN out under its mounted GFS2.
    if let Some(other) = records(&st)?.iter().find_map(|r| {
        r.iscsi
            .as_ref()
            .filter(|i| i.lun.portal == lun.portal && i.lun.target == lun.target)
            .map(|i| (i.pool.clone(), i.lun.lun))
    }) {
        return Err(Error::Conflict(if other.1 == lun.lun {
            format!(
                "LUN {} of {} at {} already carries the cluster pool {:?}",
                lun.lun, lun.target, lun.portal, other.0
            )
        } else {
            format!(
                "the target {} at {} already carries the cluster pool {:?} (LUN {}): the nodes' \
                 iSCSI session is per target, so a second pool on LUN {} would share it and \
                 deleting either pool would cut the other's LUN; export this LUN under a target \
                 of its own (another IQN)",
                lun.target, lun.portal, other.0, other.1, lun.lun
            )
        }));
    }
    let me = node.cfg.node.clone();
    let mut nodes = vec![me.clone()];
    nodes.extend(
        rec.members
            .iter()
            .filter(|m| m.name != me)
            .map(|m| m.name.clone()),
    );
    let def = IscsiPool {
        pool: req.name.clone(),
        cluster: rec.name.clone(),
        lun,
        nodes,
        wipe: req.wipe,
        layout,
    };
    def.validate().map_err(storage_err)?;
    let remotes = def.nodes[1..]
        .iter()
        .map(|n| Remote::new(node, n))
        .collect::<Result<Vec<_>>>()?;
    let peers: Vec<&dyn IscsiPeer> = remotes.iter().map(|r| r as &dyn IscsiPeer).collect();
    iscsi_gfs2::attach_all(
        node.cluster.runner.as_ref(),
        &peers,
        &def,
        &Waits::default(),
    )
    .map_err(storage_err)?;
    Ok(def)
}

/// `drbd-gfs2`: the cluster, the fence gate, two members, a free name, and the device probe
/// on both nodes. Returns the pool to create (with a fresh secret, this node first).
fn check_create_drbd(node: &Node, req: &ClusterPoolCreate, device: &str) -> Result<DrbdGfs2> {
    let (rec, st) = clustered_store(node)?;
    keel_storage::check_name("pool", &req.name, 30)
        .map_err(|e| Error::validation("name", e.to_string()))?;
    if !device.starts_with("/dev/") || device.contains(char::is_whitespace) {
        return Err(Error::validation(
            "device",
            format!(
                "{device:?} is not a block device path under /dev/ (e.g. /dev/vdb or /dev/disk/by-id/…)"
            ),
        ));
    }
    crate::cluster::require_fence_tested(node)?;
    if rec.members.len() != 2 {
        return Err(Error::Conflict(format!(
            "a drbd-gfs2 pool replicates between exactly two nodes; this cluster has {} ({}): \
             {}",
            rec.members.len(),
            rec.members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if rec.members.len() < 2 {
                "join a second node first"
            } else {
                "use an iscsi-gfs2 or iscsi-lvm pool for three nodes or more"
            }
        )));
    }
    let existing = records(&st)?;
    check_free_name(node, &st, &req.name)?;
    let minor = existing
        .iter()
        .filter_map(|p| p.def.as_ref())
        .map(|d| d.drbd.minor + 1)
        .max()
        .unwrap_or(0);
    let conf = clusterd::form::read_corosync_conf(&node.cluster.paths)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let addr_of = |name: &str| -> Result<std::net::IpAddr> {
        let n = conf.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            Error::Internal(format!("{name} is a member but not in corosync.conf"))
        })?;
        let a = n.addrs.first().ok_or_else(|| {
            Error::Internal(format!("{name} has no link address in corosync.conf"))
        })?;
        a.parse().map_err(|_| {
            Error::Conflict(format!(
                "{name}'s link address {a:?} is a name, not an IP address: DRBD needs an address"
            ))
        })
    };
    let me = node.cfg.node.clone();
    let other = rec
        .members
        .iter()
        .find(|m| m.name != me)
        .map(|m| m.name.clone())
        .ok_or_else(|| Error::Internal("no other member".into()))?;
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    let secret: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let def = DrbdGfs2 {
        pool: req.name.clone(),
        cluster: rec.name.clone(),
        drbd: DrbdResource {
            name: req.name.clone(),
            minor,
            port: BASE_PORT + minor as u16,
            peers: vec![
                DrbdPeer {
                    node: me.clone(),
                    address: addr_of(&me)?,
                    disk: device.to_string(),
                },
                DrbdPeer {
                    node: other.clone(),
                    address: addr_of(&other)?,
                    disk: device.to_string(),
                },
            ],
            dual_primary: false,
            shared_secret: secret,
            resync_max_kib: 102_400,
        },
        wipe: req.wipe,
    };
    def.validate().map_err(storage_err)?;
    // both devices, read only, before the task
    drbd_gfs2::check_node(node.cluster.runner.as_ref(), &me, &def).map_err(storage_err)?;
    Remote::new(node, &other)?
        .check(&def)
        .map_err(storage_err)?;
    Ok(def)
}

/// The task, for either kind.
fn create(node: &Node, def: NewPool, t: &TaskHandle) -> Result<()> {
    match def {
        NewPool::Drbd(d) => create_drbd(node, d, t),
        NewPool::Iscsi(i) => create_iscsi(node, i, t),
    }
}

/// The `iscsi-gfs2` task: the record, the workflow, the libvirt pools. A failure before the
/// record exists logs every node out again.
fn create_iscsi(node: &Node, def: IscsiPool, t: &TaskHandle) -> Result<()> {
    let remotes = def.nodes[1..]
        .iter()
        .map(|n| Remote::new(node, n))
        .collect::<Result<Vec<_>>>()?;
    let peers: Vec<&dyn IscsiPeer> = remotes.iter().map(|r| r as &dyn IscsiPeer).collect();
    let runner = node.cluster.runner.as_ref();
    let st = Store::local();
    let mut stored = def.clone();
    stored.lun.chap_secret = String::new();
    let rec = PoolRecord {
        kind: iscsi_kind(def.layout),
        def: None,
        iscsi: Some(stored),
        state: "creating".into(),
    };
    let key = pool_key(&def.pool);
    let begun = crate::cluster::require_fence_tested(node)
        .and_then(|()| Ok(st.create(&key, &to_value(&rec)?)?));
    if let Err(e) = begun {
        let _ = iscsi_gfs2::detach_node(runner, &def);
        for p in &peers {
            let _ = p.detach(&def);
        }
        t.log("every node logged out of the LUN again");
        return Err(e);
    }
    t.log(format!(
        "logged in to {} LUN {} at {} on {}",
        def.lun.target,
        def.lun.lun,
        def.lun.portal,
        def.nodes.join(", ")
    ));
    let r = iscsi_gfs2::create(runner, &peers, &def, &Waits::default(), &TaskSink(t))
        .map_err(storage_err);
    if def.layout == IscsiLayout::Lvm {
        // no libvirt pool: hostd lists the VG's LVs as the pool's volumes on every node
        return record_outcome(&key, rec, r, t);
    }
    finish_create(node, &key, rec, r, &def.pool, &def.mountpoint(), t)
}

/// The API's kind of an iSCSI pool.
fn iscsi_kind(layout: IscsiLayout) -> ClusterPoolKind {
    match layout {
        IscsiLayout::Gfs2 => ClusterPoolKind::IscsiGfs2,
        IscsiLayout::Lvm => ClusterPoolKind::IscsiLvm,
    }
}

/// The `drbd-gfs2` task: the workflow, then the libvirt pools through the shared-pool marker.
fn create_drbd(node: &Node, def: DrbdGfs2, t: &TaskHandle) -> Result<()> {
    crate::cluster::require_fence_tested(node)?;
    let st = Store::local();
    let mut stored = def.clone();
    stored.drbd.shared_secret = String::new();
    let rec = PoolRecord {
        kind: ClusterPoolKind::DrbdGfs2,
        def: Some(stored),
        iscsi: None,
        state: "creating".into(),
    };
    let key = pool_key(&def.pool);
    st.create(&key, &to_value(&rec)?)?;
    let other = def.drbd.peers[1].node.clone();
    let peer = Remote::new(node, &other)?;
    let sink = TaskSink(t);
    let r = drbd_gfs2::create(
        node.cluster.runner.as_ref(),
        &peer,
        &def,
        &Waits::default(),
        &sink,
    )
    .map_err(storage_err);
    finish_create(node, &key, rec, r, &def.pool, &def.mountpoint(), t)
}

/// After a workflow: the libvirt pool on every node (through the shared-pool marker) and the
/// record's final state.
fn finish_create(
    node: &Node,
    key: &str,
    rec: PoolRecord,
    r: Result<()>,
    pool: &str,
    mountpoint: &str,
    t: &TaskHandle,
) -> Result<()> {
    let r = r.and_then(|()| {
        t.log(format!(
            "GFS2 mounted on every node; defining the libvirt pool {pool} on each"
        ));
        crate::ha::create_shared(
            node,
            &keel_api::ha::SharedPoolCreate {
                name: pool.to_string(),
                path: mountpoint.to_string(),
            },
        )?;
        wait_libvirt_pools(node, pool, t)
    });
    record_outcome(key, rec, r, t)
}

/// The record's final state (`ready` or `failed: …`) after a create task.
fn record_outcome(key: &str, mut rec: PoolRecord, r: Result<()>, t: &TaskHandle) -> Result<()> {
    let st = Store::local();
    rec.state = match &r {
        Ok(()) => "ready".into(),
        Err(e) => format!("failed: {e}"),
    };
    if let Err(e) = st.put(key, &to_value(&rec)?) {
        t.log(format!("warning: cannot record the pool's state: {e}"));
    }
    if r.is_ok() {
        t.progress(1.0);
    }
    r
}

/// Until every node's reconciler reports the libvirt pool defined (`ok`).
fn wait_libvirt_pools(node: &Node, pool: &str, t: &TaskHandle) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut pending = Vec::new();
        for i in crate::ha::list_shared(node)?
            .into_iter()
            .filter(|p| p.name == pool)
        {
            for (n, s) in i.nodes {
                if s != "ok" {
                    pending.push(format!("{n}: {s}"));
                }
            }
        }
        if pending.is_empty() {
            t.log(format!("libvirt pool {pool} defined on every node"));
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Conflict(format!(
                "the libvirt pool {pool} is not usable everywhere after 60 s: {}",
                pending.join("; ")
            )));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(e.to_string()))
}

struct TaskSink<'a>(&'a TaskHandle);
impl Sink for TaskSink<'_> {
    fn log(&self, line: &str) {
        self.0.log(line);
    }
    fn progress(&self, fraction: f64) {
        self.0.progress(fraction);
    }
}

/// What one node asks the other (the peer endpoint's body).
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerStorageReq {
    /// `check`, `prepare`, `dual_primary`, `health`, `teardown` (drbd-gfs2, with `pool`);
    /// `iscsi_attach`, `iscsi_detach`, `iscsi_prepare`, `iscsi_health`, `iscsi_teardown`
    /// (iscsi-gfs2, with `iscsi`).
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<DrbdGfs2>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<IscsiPool>,
}

/// The other node, through [`PEER_PATH`].
struct Remote {
    name: String,
    api: String,
    key: Vec<u8>,
    me: String,
    client: reqwest::Client,
}

impl Remote {
    fn new(node: &Node, name: &str) -> Result<Remote> {
        let (rec, _) = clustered_store(node)?;
        let m = rec
            .members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::Conflict(format!("{name} is not a member")))?;
        Ok(Remote {
            name: name.to_string(),
            api: m.api.clone(),
            key: node.cluster.authkey()?,
            me: node.cfg.node.clone(),
            client: node.cluster.member_client()?,
        })
    }

    fn call(&self, step: &str, pool: &DrbdGfs2, timeout: Duration) -> Result<serde_json::Value> {
        self.send(
            &PeerStorageReq {
                step: step.into(),
                pool: Some(pool.clone()),
                iscsi: None,
            },
            timeout,
        )
    }

    fn call_iscsi(
        &self,
        step: &str,
        pool: &IscsiPool,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        self.send(
            &PeerStorageReq {
                step: step.into(),
                pool: None,
                iscsi: Some(pool.clone()),
            },
            timeout,
        )
    }

    fn send(&self, req: &PeerStorageReq, timeout: Duration) -> Result<serde_json::Value> {
        let body = serde_json::to_vec(req).map_err(|e| Error::Internal(e.to_string()))?;
        let digest = cluster_net::body_digest(&body);
        let signed = Signed {
            method: "POST",
            path: PEER_PATH,
            user: "",
            body: &digest,
        };
        let h = cluster_net::peer_header(&self.key, &self.me, crate::db::now(), &signed)?;
        let req = self
            .client
            .post(format!("https://{}{PEER_PATH}", self.api))
            .header(PEER_HEADER, h)
            .header("content-type", "application/json")
            .timeout(timeout)
            .body(body);
        let name = self.name.clone();
        tokio::runtime::Handle::current().block_on(async move {
            let r = req.send().await.map_err(|e| {
                Error::Unavailable(format!("{name}: {}", cluster_net::error_chain(&e)))
            })?;
            if !r.status().is_success() {
                let st = r.status();
                let msg = cluster_net::api_error_message(r).await;
                return Err(
                    if st == StatusCode::CONFLICT || st == StatusCode::BAD_REQUEST {
                        Error::Conflict(msg)
                    } else {
                        Error::Internal(format!("{name} answered {st}: {msg}"))
                    },
                );
            }
            r.json::<serde_json::Value>()
                .await
                .map_err(|e| Error::Internal(format!("{name}: {e}")))
        })
    }
}

fn to_storage(e: Error) -> StorageError {
    StorageError::Unsafe(e.to_string())
}

impl PeerNode for Remote {
    fn name(&self) -> &str {
        &self.name
    }
    fn check(&self, pool: &DrbdGfs2) -> std::result::Result<(), StorageError> {
        self.call("check", pool, Duration::from_secs(60))
            .map(|_| ())
            .map_err(to_storage)
    }
    fn prepare(&self, pool: &DrbdGfs2) -> std::result::Result<(), StorageError> {
        self.call("prepare", pool, Duration::from_secs(300))
            .map(|_| ())
            .map_err(to_storage)
    }
    fn dual_primary(&self, pool: &DrbdGfs2) -> std::result::Result<(), StorageError> {
        self.call("dual_primary", pool, Duration::from_secs(90))
            .map(|_| ())
            .map_err(to_storage)
    }
}

impl IscsiPeer for Remote {
    fn name(&self) -> &str {
        &self.name
    }
    fn attach(&self, pool: &IscsiPool) -> std::result::Result<LunFacts, StorageError> {
        let v = self
            .call_iscsi("iscsi_attach", pool, Duration::from_secs(240))
            .map_err(to_storage)?;
        serde_json::from_value(v)
            .map_err(|e| StorageError::Unsafe(format!("{}: unreadable LUN facts: {e}", self.name)))
    }
    fn detach(&self, pool: &IscsiPool) -> std::result::Result<(), StorageError> {
        self.call_iscsi("iscsi_detach", pool, Duration::from_secs(90))
            .map(|_| ())
            .map_err(to_storage)
    }
    fn prepare(&self, pool: &IscsiPool) -> std::result::Result<(), StorageError> {
        self.call_iscsi("iscsi_prepare", pool, Duration::from_secs(120))
            .map(|_| ())
            .map_err(to_storage)
    }
    fn join(&self, pool: &IscsiPool) -> std::result::Result<(), StorageError> {
        self.call_iscsi("iscsi_join", pool, Duration::from_secs(120))
            .map(|_| ())
            .map_err(to_storage)
    }
}

impl SplitBrainNode for Remote {
    fn name(&self) -> &str {
        &self.name
    }
    fn state(
        &self,
        pool: &DrbdGfs2,
    ) -> std::result::Result<Option<keel_storage::drbd_state::DrbdState>, StorageError> {
        let v = self
            .call("sb_state", pool, Duration::from_secs(30))
            .map_err(to_storage)?;
        serde_json::from_value(v)
            .map_err(|e| StorageError::Unsafe(format!("{}: unreadable DRBD state: {e}", self.name)))
    }
    fn discard(&self, pool: &DrbdGfs2) -> std::result::Result<(), StorageError> {
        self.call("sb_discard", pool, Duration::from_secs(60))
            .map(|_| ())
            .map_err(to_storage)
    }
    fn adjust(&self, pool: &DrbdGfs2) -> std::result::Result<(), StorageError> {
        self.call("sb_adjust", pool, Duration::from_secs(60))
            .map(|_| ())
            .map_err(to_storage)
    }
}

/// `POST /api/v1/cluster/peer/storage` from a member: this node's half of a step.
fn on_peer(
    node: &Node,
    headers: &HeaderMap,
    cert: &PeerCert,
    body: &[u8],
) -> Result<serde_json::Value> {
    let digest = cluster_net::body_digest(body);
    let signed = Signed {
        method: "POST",
        path: PEER_PATH,
        user: "",
        body: &digest,
    };
    crate::cluster::check_member_request(node, headers, cert, &signed)?;
    let req: PeerStorageReq =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(e.to_string()))?;
    let r: &dyn Runner = node.cluster.runner.as_ref();
    let me = node.cfg.node.as_str();
    if let Some(step) = req.step.strip_prefix("iscsi_") {
        let p = req
            .iscsi
            .as_ref()
            .ok_or_else(|| Error::BadRequest(format!("storage step {} needs iscsi", req.step)))?;
        match step {
            "attach" => {
                crate::cluster::require_fence_tested(node)?;
                p.validate().map_err(storage_err)?;
                let f =
                    iscsi_gfs2::attach_node(r, me, p, &Waits::default()).map_err(storage_err)?;
                return to_value(&f);
            }
            "detach" => iscsi_gfs2::detach_node(r, p).map_err(storage_err)?,
            "prepare" => {
                crate::cluster::require_fence_tested(node)?;
                p.validate().map_err(storage_err)?;
                iscsi_gfs2::prepare_node(r, me, p).map_err(storage_err)?;
            }
            "join" => {
                p.validate().map_err(storage_err)?;
                iscsi_gfs2::join_lockspace(r, p).map_err(storage_err)?;
            }
            "health" => return to_value(&iscsi_gfs2::node_health(r, p).map_err(storage_err)?),
            "teardown" => {
                node.hv.undefine_pool(&p.pool)?;
                iscsi_gfs2::teardown_node(r, p).map_err(storage_err)?
            }
            s => {
                return Err(Error::BadRequest(format!(
                    "unknown storage step iscsi_{s:?}"
                )))
            }
        }
        return Ok(serde_json::json!({}));
    }
    let p = req
        .pool
        .as_ref()
        .ok_or_else(|| Error::BadRequest(format!("storage step {} needs pool", req.step)))?;
    match req.step.as_str() {
        "check" => {
            crate::cluster::require_fence_tested(node)?;
            drbd_gfs2::check_node(r, me, p).map_err(storage_err)?;
        }
        "prepare" => {
            crate::cluster::require_fence_tested(node)?;
            p.validate().map_err(storage_err)?;
            drbd_gfs2::prepare_node(r, me, p).map_err(storage_err)?;
        }
        "dual_primary" => drbd_gfs2::dual_primary_node(r, p).map_err(storage_err)?,
        "health" => {
            return to_value(&drbd_gfs2::node_health(r, p).map_err(storage_err)?);
        }
        "teardown" => {
            node.hv.undefine_pool(&p.pool)?;
            drbd_gfs2::teardown_node(r, p).map_err(storage_err)?
        }
        "sb_state" => {
            return to_value(&drbd_gfs2::drbd_state(r, p.drbd.minor).map_err(storage_err)?);
        }
        "sb_discard" => split_brain::discard_node(r, p).map_err(storage_err)?,
        "sb_adjust" => split_brain::adjust_node(r, p).map_err(storage_err)?,
        s => return Err(Error::BadRequest(format!("unknown storage step {s:?}"))),
    }
    Ok(serde_json::json!({}))
}

fn node_row(
    name: &str,
    device: &str,
    h: std::result::Result<NodeHealth, String>,
) -> ClusterPoolNode {
    let mut n = ClusterPoolNode {
        node: name.into(),
        device: device.into(),
        ..Default::default()
    };
    match h {
        Ok(h) => {
            if let Some(d) = h.drbd {
                n.connection = Some(d.connection);
                n.role = Some(d.role);
                n.peer_role = Some(d.peer_role);
                n.disk = Some(d.disk);
                n.peer_disk = Some(d.peer_disk);
                n.sync_percent = d.sync_percent;
            }
            n.logged_in = h.logged_in;
            n.lockspace = h.lockspace;
            n.split_brain = h.split_brain;
            n.mounted = h.mounted;
            n.size_bytes = h.size_bytes;
            n.free_bytes = h.free_bytes;
        }
        Err(e) => n.error = Some(e),
    }
    n
}

/// Members of the cluster the pool does not reach, said plainly with what to do.
fn pool_notes(kind: ClusterPoolKind, pool: &str, on: &[String], members: &[String]) -> Vec<String> {
    let out: Vec<&str> = members
        .iter()
        .filter(|m| !on.contains(m))
        .map(String::as_str)
        .collect();
    if out.is_empty() {
        return Vec::new();
    }
    let who = out.join(", ");
    vec![match kind {
        ClusterPoolKind::DrbdGfs2 => format!(
            "{who} cannot use {pool}: a drbd-gfs2 pool replicates between exactly two nodes \
             ({}), so VMs on it run on those two only. For storage every node shares, create an \
             iscsi-gfs2 pool on an iSCSI LUN.",
            on.join(" and ")
        ),
        ClusterPoolKind::IscsiGfs2 | ClusterPoolKind::IscsiLvm => format!(
            "{who} joined after {pool} was made and is not logged in to its LUN: once the \
             target's ACL allows {who}'s initiator name and {who} passed a fence test, \
             `keel storage pool extend {pool}` takes it in (no rebuild, the VMs keep running)."
        ),
    }]
}

/// Every cluster pool with each node's health (the other node asked through the peer call).
pub fn status(node: &Node) -> Result<Vec<ClusterPoolStatus>> {
    let (cluster, st) = clustered_store(node)?;
    let members: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let mut out = Vec::new();
    let r = node.cluster.runner.as_ref();
    for rec in records(&st)? {
        let def = rec.def()?;
        let on: Vec<String> = rec.nodes()?.into_iter().map(|(n, _)| n).collect();
        let notes = pool_notes(rec.kind, &rec.name()?, &on, &members);
        let not_on: Vec<String> = members
            .iter()
            .filter(|m| !on.contains(m))
            .cloned()
            .collect();
        let mut nodes = Vec::new();
        for (n, device) in rec.nodes()? {
            let h = if n == node.cfg.node {
                match def {
                    Def::Drbd(d) => drbd_gfs2::node_health(r, d),
                    Def::Iscsi(i) => iscsi_gfs2::node_health(r, i),
                }
                .map_err(|e| e.to_string())
            } else {
                Remote::new(node, &n)
                    .and_then(|x| match def {
                        Def::Drbd(d) => x.call("health", d, Duration::from_secs(10)),
                        Def::Iscsi(i) => x.call_iscsi("iscsi_health", i, Duration::from_secs(10)),
                    })
                    .and_then(|v| {
                        serde_json::from_value::<NodeHealth>(v)
                            .map_err(|e| Error::Internal(e.to_string()))
                    })
                    .map_err(|e| e.to_string())
            };
            nodes.push(node_row(&n, &device, h));
        }
        out.push(ClusterPoolStatus {
            name: rec.name()?,
            kind: rec.kind,
            path: rec.mountpoint()?,
            state: rec.state.clone(),
            iscsi: match def {
                Def::Iscsi(i) => Some(IscsiLunInfo {
                    portal: i.lun.addr(),
                    target: i.lun.target.clone(),
                    lun: i.lun.lun,
                    chap_user: i.lun.chap_user.clone(),
                }),
                Def::Drbd(_) => None,
            },
            notes,
            not_on,
            nodes,
        });
    }
    Ok(out)
}

/// Refused while the pool holds VM disks (any volume in its libvirt pool, or a VM naming it).
pub fn check_delete(node: &Node, name: &str) -> Result<PoolRecord> {
    let (_, st) = clustered_store(node)?;
    let e = st
        .get(&pool_key(name))?
        .ok_or_else(|| Error::NotFound(format!("no cluster pool named {name:?}")))?;
    let rec: PoolRecord =
        serde_json::from_value(e.value).map_err(|x| Error::Internal(x.to_string()))?;
    holds_no_volumes(node.hv.as_ref(), name)?;
    let nodes = rec.nodes()?;
    if nodes.iter().all(|(n, _)| *n != node.cfg.node) {
        return Err(Error::Conflict(format!(
            "cluster pool {name:?} is on {}: delete it there",
            nodes
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        )));
    }
    Ok(rec)
}

/// Refused while this node's libvirt pool `name` lists a volume, after a rescan: the other
/// nodes write into the pool too, and libvirt lists their files only once it scanned again. A
/// pool that was never defined here holds nothing here; a listing that fails otherwise refuses.
fn holds_no_volumes(hv: &dyn crate::hv::Hypervisor, name: &str) -> Result<()> {
    if let Err(e) = hv.refresh_pool(name) {
        tracing::warn!("refreshing cluster pool {name} before its delete check: {e}");
    }
    match hv.list_volumes(name) {
        Ok(vols) if !vols.is_empty() => Err(Error::Conflict(format!(
            "cluster pool {name:?} holds {} volume(s) ({}): move or delete the VM disks first",
            vols.len(),
            vols.iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Ok(_) | Err(crate::hv::HvError::NotFound(_)) => Ok(()),
        Err(e) => Err(Error::Unavailable(format!(
            "cannot list the volumes of cluster pool {name:?} to check that it holds no VM disks: {e}; check `virsh pool-info {name}` and try again"
        ))),
    }
}

/// The delete task: the libvirt pools (refused if a VM names the pool), the Pacemaker chain,
/// the DRBD resource (or the iSCSI sessions) on every node, the record. The disks keep their
/// data until reused with `--wipe`.
fn delete_pool(node: &Node, rec: PoolRecord, t: &TaskHandle) -> Result<()> {
    let name = rec.name()?;
    if Store::local()
        .get(&format!("/storage/shared/{name}"))?
        .is_some()
    {
        crate::ha::delete_shared(node, &name)?;
        t.log(format!(
            "shared pool {name} removed (each node undefines its libvirt pool below)"
        ));
    }
    let r = node.cluster.runner.as_ref();
    let stack = rec.stack()?;
    // a pool whose creation failed may lack any of the later pieces: what is not there is
    // reported, not fatal
    let partial = rec.state != "ready";
    let step = |cmd: &keel_runner::Cmd| -> Result<()> {
        match r.run_ok(cmd) {
            Ok(_) => Ok(()),
            Err(e) if partial => {
                t.log(format!("warning: {cmd}: {e}"));
                Ok(())
            }
            Err(e) => Err(storage_err(e.into())),
        }
    };
    for cmd in drbd_gfs2::stack_delete(&stack) {
        step(&cmd)?;
    }
    t.log("Pacemaker resources of the pool set to Stopped; waiting until they stopped");
    drbd_gfs2::wait_stopped(r, &stack, &Waits::default()).map_err(storage_err)?;
    for cmd in drbd_gfs2::stack_remove(&stack) {
        step(&cmd)?;
    }
    let def = rec.def()?;
    // each node: its libvirt pool undefined (the files stay on the device), then the DRBD
    // resource down or the LUN logged out
    let mut teardown = vec![node
        .hv
        .undefine_pool(&name)
        .map_err(Error::from)
        .and_then(|()| {
            match def {
                Def::Drbd(d) => drbd_gfs2::teardown_node(r, d),
                Def::Iscsi(i) => iscsi_gfs2::teardown_node(r, i),
            }
            .map_err(storage_err)
        })];
    for (n, _) in rec.nodes()?.iter().filter(|(n, _)| *n != node.cfg.node) {
        teardown.push(
            Remote::new(node, n)
                .and_then(|x| match def {
                    Def::Drbd(d) => x.call("teardown", d, Duration::from_secs(60)),
                    Def::Iscsi(i) => x.call_iscsi("iscsi_teardown", i, Duration::from_secs(60)),
                })
                .map(|_| ()),
        );
    }
    for x in teardown {
        match x {
            Err(e) if partial => t.log(format!("warning: {e}")),
            other => other?,
        }
    }
    t.log(match def {
        Def::Drbd(_) => {
            "libvirt pool undefined, DRBD resource down and its .res removed on both nodes"
        }
        Def::Iscsi(_) => {
            "every node undefined its libvirt pool, logged out of the LUN and deleted its record"
        }
    });
    Store::local().delete(&pool_key(&name))?;
    Ok(())
}

/// Before the resolve task: a `drbd-gfs2` pool, a node of it named, both sides up and apart,
/// the survivor's disk UpToDate (reads only). Returns the pool and the victim.
pub fn check_resolve(node: &Node, name: &str, req: &SplitBrainResolve) -> Result<DrbdGfs2> {
    let (_, st) = clustered_store(node)?;
    let e = st
        .get(&pool_key(name))?
        .ok_or_else(|| Error::NotFound(format!("no cluster pool named {name:?}")))?;
    let rec: PoolRecord =
        serde_json::from_value(e.value).map_err(|x| Error::Internal(x.to_string()))?;
    let Def::Drbd(def) = rec.def()? else {
        return Err(Error::Conflict(format!(
            "cluster pool {name:?} is an iscsi-gfs2 pool: the target keeps its one copy, there \
             is no split brain to resolve"
        )));
    };
    let nodes: Vec<String> = def.drbd.peers.iter().map(|p| p.node.clone()).collect();
    if !nodes.contains(&req.discard) {
        return Err(Error::validation(
            "discard",
            format!(
                "{:?} is not a node of pool {name} (its nodes: {})",
                req.discard,
                nodes.join(", ")
            ),
        ));
    }
    if !nodes.contains(&node.cfg.node) {
        return Err(Error::Conflict(format!(
            "cluster pool {name:?} is on {}: resolve it there",
            nodes.join(" and ")
        )));
    }
    let (victim, survivor) = sides(node, def, &req.discard)?;
    split_brain::check(
        def,
        victim.name(),
        victim.state(def).map_err(storage_err)?.as_ref(),
        survivor.name(),
        survivor.state(def).map_err(storage_err)?.as_ref(),
    )
    .map_err(storage_err)?;
    Ok(def.clone())
}

/// The victim and the survivor, each local or remote.
fn sides<'a>(
    node: &'a Node,
    def: &DrbdGfs2,
    discard: &str,
) -> Result<(Box<dyn SplitBrainNode + 'a>, Box<dyn SplitBrainNode + 'a>)> {
    let side = |n: &str| -> Result<Box<dyn SplitBrainNode + 'a>> {
        if n == node.cfg.node {
            Ok(Box::new(split_brain::Local {
                name: node.cfg.node.as_str(),
                r: node.cluster.runner.as_ref(),
            }))
        } else {
            Ok(Box::new(Remote::new(node, n)?))
        }
    };
    let other = def
        .drbd
        .peers
        .iter()
        .map(|p| p.node.as_str())
        .find(|n| *n != discard)
        .ok_or_else(|| Error::Internal("a drbd-gfs2 pool with one node".into()))?;
    Ok((side(discard)?, side(other)?))
}

fn resolve_task(node: &Node, def: DrbdGfs2, discard: &str, t: &TaskHandle) -> Result<()> {
    let (victim, survivor) = sides(node, &def, discard)?;
    split_brain::resolve(
        node.cluster.runner.as_ref(),
        victim.as_ref(),
        survivor.as_ref(),
        &def,
        &Waits::default(),
        &TaskSink(t),
    )
    .map_err(storage_err)
}

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route(
            "/api/v1/cluster/storage-pools",
            get(list_pools).post(create_pool),
        )
        .route(
            "/api/v1/cluster/storage-pools/{name}",
            delete(delete_pool_route),
        )
        .route(
            "/api/v1/cluster/storage-pools/{name}/resolve-split-brain",
            post(resolve_split_brain_route),
        )
        .route(
            "/api/v1/cluster/storage-pools/{name}/extend",
            post(extend_pool_route),
        )
}

/// Extend an `iscsi-gfs2` or `iscsi-lvm` pool to members that joined after it was made, as a
/// task (docs/storage.md): each new node logs in to the LUN (before the task: a login the
/// target refuses, or a node seeing another LUN, is a 409 with every new node logged out
/// again), gets the LVM filter and boot order and joins the lock space; `iscsi-gfs2` adds a
/// GFS2 journal when no spare is left and Pacemaker mounts the pool there too. Run on one of
/// the pool's nodes.
#[utoipa::path(post, path = "/api/v1/cluster/storage-pools/{name}/extend", tag = "storage",
    params(("name" = String, Path)),
    request_body = ClusterPoolExtend,
    responses((status = 202, body = TaskRef),
        (status = 400, description = "A node named is not a member, or the pool already reaches it", body = ErrorBody),
        (status = 404, description = "No such cluster pool", body = ErrorBody),
        (status = 409, description = "A drbd-gfs2 pool (never extends: the options are named), a pool not ready, no member to add, not run on a node of the pool, fencing not proven on every member, no CHAP secret in this node's record, a new node's login refused or seeing another LUN", body = ErrorBody)))]
pub async fn extend_pool_route(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ClusterPoolExtend>,
) -> ApiResult<Response> {
    let upid = blocking(move || {
        let x = extend::check_extend(&node, &name, &req)?;
        let n = node.clone();
        tasks::spawn(&node.tasks, "poolextend", &name, &p.user, true, move |t| {
            extend::extend_task(&n, x, t)
        })
    })
    .await?;
    Ok(accepted(upid))
}

/// Peer routes (authenticated by the peer signature, not a session).
pub fn peer_routes() -> Router<Arc<Node>> {
    Router::new().route("/api/v1/cluster/peer/storage", post(peer_storage))
}

/// Create a cluster pool with one call, as a task (its log carries the initial sync's
/// progress). Refused before any task when not clustered, fencing is not proven on every
/// node, the cluster has the wrong number of nodes (`drbd-gfs2`: exactly two; `iscsi-gfs2`:
/// two or more), the name is taken, or a node's device is missing, too small, mounted, or not
/// blank without `wipe`. For `iscsi-gfs2` every node logs in first; a wrong CHAP secret, a
/// portal that does not answer or does not offer the target, or nodes seeing different LUNs
/// are refused with every node logged out again.
#[utoipa::path(post, path = "/api/v1/cluster/storage-pools", tag = "storage",
    request_body = ClusterPoolCreate,
    responses((status = 202, body = TaskRef),
        (status = 400, description = "Bad name, device path or iSCSI settings (the field named)", body = ErrorBody),
        (status = 409, description = "Not clustered, fencing not proven, wrong number of nodes, name or LUN taken, an iSCSI login refused, or a device refused by the probe (named with its node)", body = ErrorBody)))]
pub async fn create_pool(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<ClusterPoolCreate>,
) -> ApiResult<Response> {
    let upid = blocking(move || {
        let def = check_create(&node, &req)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "poolcreate",
            &req.name,
            &p.user,
            true,
            move |t| create(&n, def, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// Every cluster pool and, per node, DRBD's connection, roles, disk states and resync
/// progress, the mount and its free space.
#[utoipa::path(get, path = "/api/v1/cluster/storage-pools", tag = "storage",
    responses((status = 200, body = Vec<ClusterPoolStatus>),
        (status = 409, description = "Not in a cluster", body = ErrorBody)))]
pub async fn list_pools(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<ClusterPoolStatus>>> {
    Ok(Json(blocking(move || status(&node)).await?))
}

/// Delete a cluster pool, as a task; refused while it holds VM disks.
#[utoipa::path(delete, path = "/api/v1/cluster/storage-pools/{name}", tag = "storage",
    params(("name" = String, Path)),
    responses((status = 202, body = TaskRef),
        (status = 404, description = "No such cluster pool", body = ErrorBody),
        (status = 409, description = "It holds VM disks, or it is not on this node", body = ErrorBody),
        (status = 503, description = "Its volumes could not be listed to check that it holds no VM disks", body = ErrorBody)))]
pub async fn delete_pool_route(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let upid = blocking(move || {
        let rec = check_delete(&node, &name)?;
        let n = node.clone();
        tasks::spawn(&node.tasks, "pooldelete", &name, &p.user, true, move |t| {
            delete_pool(&n, rec, t)
        })
    })
    .await?;
    Ok(accepted(upid))
}

/// Resolve a `drbd-gfs2` pool's split brain, as a task: the named node's changes since the
/// split are discarded and the other node's data copied over it. Refused unless both sides are
/// up and not connected and the kept side's disk is UpToDate.
#[utoipa::path(post, path = "/api/v1/cluster/storage-pools/{name}/resolve-split-brain", tag = "storage",
    params(("name" = String, Path)),
    request_body = SplitBrainResolve,
    responses((status = 202, body = TaskRef),
        (status = 400, description = "The node named is not one of the pool's", body = ErrorBody),
        (status = 404, description = "No such cluster pool", body = ErrorBody),
        (status = 409, description = "Not a drbd-gfs2 pool, no split brain (connected), a side down, the kept side not UpToDate, or not on this node", body = ErrorBody)))]
pub async fn resolve_split_brain_route(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SplitBrainResolve>,
) -> ApiResult<Response> {
    let upid = blocking(move || {
        let def = check_resolve(&node, &name, &req)?;
        let n = node.clone();
        tasks::spawn(&node.tasks, "splitbrain", &name, &p.user, true, move |t| {
            resolve_task(&n, def, &req.discard, t)
        })
    })
    .await?;
    Ok(accepted(upid))
}

async fn peer_storage(
    State(node): State<Arc<Node>>,
    peer_cert: Option<Extension<PeerCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let cert = peer_cert.map(|e| e.0).unwrap_or_default();
    Ok(Json(
        blocking(move || on_peer(&node, &headers, &cert, &body)).await?,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A volume another node wrote into the pool, which this node's libvirt has not scanned,
    /// still refuses the delete; an empty pool and one never defined here do not.
    #[test]
    fn a_delete_check_sees_the_other_nodes_volumes() {
        use crate::hv::Hypervisor;
        let hv = crate::hv::fake::FakeHv::new();
        hv.ensure_dir_pool("vmstore", "/var/lib/keel/pools/vmstore")
            .unwrap();
        assert!(holds_no_volumes(&hv, "vmstore").is_ok());
        assert!(holds_no_volumes(&hv, "never-here").is_ok());
        hv.write_behind("vmstore", "vm-100-disk0.raw", 16 << 20);
        assert!(hv.list_volumes("vmstore").unwrap().is_empty());
        match holds_no_volumes(&hv, "vmstore") {
            Err(Error::Conflict(m)) => assert!(
                m.contains("holds 1 volume(s) (vm-100-disk0.raw)")
                    && m.contains("move or delete the VM disks first"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(hv.calls().contains(&"refresh pool vmstore".to_string()));
    }

    /// A `drbd-gfs2` record as earlier versions stored it still reads; an `iscsi-gfs2` record
    /// names its LUN's nodes and keeps no secret.
    #[test]
    fn records_of_both_kinds() {
        let old = serde_json::json!({
            "kind": "drbd-gfs2",
            "def": {
                "pool": "vmstore", "cluster": "c", "wipe": false,
                "drbd": {"name": "vmstore", "minor": 0, "port": 7789, "dual_primary": false,
                    "shared_secret": "", "resync_max_kib": 102400,
                    "peers": [{"node": "n1", "address": "10.0.0.1", "disk": "/dev/vdb"},
                              {"node": "n2", "address": "10.0.0.2", "disk": "/dev/vdb"}]}
            },
            "state": "ready"
        });
        let r: PoolRecord = serde_json::from_value(old).unwrap();
        assert_eq!(r.name().unwrap(), "vmstore");
        assert_eq!(r.nodes().unwrap()[1], ("n2".into(), "/dev/vdb".into()));
        assert!(r.stack().unwrap().drbd.is_some());

        let i = IscsiPool {
            pool: "shared".into(),
            cluster: "c".into(),
            lun: IscsiLun {
                portal: "10.0.0.9:3260".into(),
                target: "iqn.2024-01.x.y:z".into(),
                lun: 0,
                chap_user: "u".into(),
                chap_secret: String::new(),
            },
            nodes: vec!["n1".into(), "n2".into(), "n3".into()],
            wipe: false,
            layout: IscsiLayout::Gfs2,
        };
        let rec = PoolRecord {
            kind: ClusterPoolKind::IscsiGfs2,
            def: None,
            iscsi: Some(i),
            state: "ready".into(),
        };
        let v = serde_json::to_value(&rec).unwrap();
        assert!(v.get("def").is_none(), "{v}");
        let back: PoolRecord = serde_json::from_value(v).unwrap();
        let n = back.nodes().unwrap();
        assert_eq!(n.len(), 3);
        assert_eq!(
            n[2].1,
            "/dev/disk/by-path/ip-10.0.0.9:3260-iscsi-iqn.2024-01.x.y:z-lun-0"
        );
        let s = back.stack().unwrap();
        assert!(s.drbd.is_none() && s.nodes.len() == 3);
        assert_eq!(back.mountpoint().unwrap(), "/var/lib/keel/pools/shared");
        // a record from before iscsi-lvm (no layout) reads as iscsi-gfs2
        let mut old_iscsi = serde_json::to_value(&back).unwrap();
        old_iscsi["iscsi"].as_object_mut().unwrap().remove("layout");
        let r: PoolRecord = serde_json::from_value(old_iscsi).unwrap();
        assert_eq!(r.iscsi.as_ref().unwrap().layout, IscsiLayout::Gfs2);
        // iscsi-lvm: no Pacemaker chain (no clone a VM would follow), its path the VG's
        let mut lvm = back.clone();
        lvm.kind = iscsi_kind(IscsiLayout::Lvm);
        lvm.iscsi.as_mut().unwrap().layout = IscsiLayout::Lvm;
        let v = serde_json::to_value(&lvm).unwrap();
        assert_eq!(v["kind"], "iscsi-lvm");
        assert_eq!(v["iscsi"]["layout"], "lvm");
        let lvm: PoolRecord = serde_json::from_value(v).unwrap();
        assert_eq!(lvm.mountpoint().unwrap(), "/dev/keel-shared");
        let s = lvm.stack().unwrap();
        assert!(s.lv.is_none() && s.mountpoint.is_none());
        assert_eq!(s.render(), (vec![], vec![]));
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let notes = pool_notes(
            ClusterPoolKind::DrbdGfs2,
            "vmstore",
            &m(&["n1", "n2"]),
            &m(&["n1", "n2", "n3"]),
        );
        assert!(notes[0].starts_with("n3 cannot use vmstore") && notes[0].contains("iscsi-gfs2"));
        let notes = pool_notes(
            ClusterPoolKind::IscsiGfs2,
            "shared",
            &m(&["n1", "n2"]),
            &m(&["n1", "n2", "n3"]),
        );
        assert!(
            notes[0].contains("n3 joined after shared was made")
                && notes[0].contains("keel storage pool extend shared"),
            "{notes:?}"
        );
        assert!(pool_notes(
            ClusterPoolKind::IscsiGfs2,
            "shared",
            &m(&["n1", "n2"]),
            &m(&["n1", "n2"])
        )
        .is_empty());
        // a record with neither definition is an error, not a panic
        let bad = PoolRecord {
            kind: ClusterPoolKind::IscsiGfs2,
            def: None,
            iscsi: None,
            state: "ready".into(),
        };
        assert!(bad.name().is_err());
    }
}
