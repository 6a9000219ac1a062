//! Cluster storage pools (docs/storage.md): `keel storage pool create NAME --type drbd-gfs2
//! --device DEV [--wipe]`, `keel storage status`, `keel storage pool delete NAME`.
//!
//! The node that receives the request creates the pool as a task, running
//! [`keel_storage::drbd_gfs2::create`]: its own half through the cluster's runner, the other
//! node's half through the member-to-member peer endpoint [`PEER_PATH`] (HMAC + mutual TLS,
//! like every peer call; the DRBD shared secret travels only there and into each node's 0600
//! `.res`). The pool's definition — without the secret — is kept in the config store under
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
    ClusterPoolCreate, ClusterPoolKind, ClusterPoolNode, ClusterPoolStatus,
};
use keel_api::task::TaskRef;
use keel_api::ErrorBody;
use keel_runner::Runner;
use keel_storage::drbd::{DrbdPeer, DrbdResource};
use keel_storage::drbd_gfs2::{self, DrbdGfs2, NodeHealth, PeerNode, Sink, Waits};
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

/// The member-to-member endpoint a pool's other node answers.
pub const PEER_PATH: &str = "/api/v1/cluster/peer/storage";
/// The first DRBD port; pool `minor` uses `BASE_PORT + minor`.
const BASE_PORT: u16 = 7789;

/// `/storage/pools/<name>`: the pool as every node knows it (the DRBD secret blanked).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolRecord {
    pub kind: ClusterPoolKind,
    pub def: DrbdGfs2,
    /// `creating`, `ready`, `failed: …`.
    pub state: String,
}

fn pool_key(name: &str) -> String {
    format!("/storage/pools/{name}")
}

fn storage_err(e: StorageError) -> Error {
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

/// The DRBD resources of the cluster's pools (resource → pool), for `keel cluster verify`;
/// empty when the store cannot be read.
pub fn drbd_resources() -> std::collections::BTreeMap<String, String> {
    records(&Store::local())
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.def.drbd.name.clone(), r.def.pool.clone()))
        .collect()
}

/// Everything that can refuse before a task exists: the cluster, the fence gate, two members,
/// a free name, and the device probe on both nodes. Returns the pool to create (with a fresh
/// secret, this node first).
pub fn check_create(node: &Node, req: &ClusterPoolCreate) -> Result<DrbdGfs2> {
    let (rec, st) = clustered_store(node)?;
    keel_storage::check_name("pool", &req.name, 30)
        .map_err(|e| Error::validation("name", e.to_string()))?;
    if !req.device.starts_with("/dev/") || req.device.contains(char::is_whitespace) {
        return Err(Error::validation(
            "device",
            format!(
                "{:?} is not a block device path under /dev/ (e.g. /dev/vdb or /dev/disk/by-id/…)",
                req.device
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
    if st.get(&pool_key(&req.name))?.is_some()
        || st.get(&format!("/storage/shared/{}", req.name))?.is_some()
        || node.hv.pool(&req.name).is_ok()
    {
        return Err(Error::Conflict(format!(
            "a pool named {:?} already exists: choose another name",
            req.name
        )));
    }
    let minor = existing
        .iter()
        .map(|p| p.def.drbd.minor + 1)
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
                    disk: req.device.clone(),
                },
                DrbdPeer {
                    node: other.clone(),
                    address: addr_of(&other)?,
                    disk: req.device.clone(),
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

/// The task: the workflow, then the libvirt pools through the shared-pool marker.
fn create(node: &Node, def: DrbdGfs2, t: &TaskHandle) -> Result<()> {
    crate::cluster::require_fence_tested(node)?;
    let st = Store::local();
    let mut stored = def.clone();
    stored.drbd.shared_secret = String::new();
    let mut rec = PoolRecord {
        kind: ClusterPoolKind::DrbdGfs2,
        def: stored,
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
    .map_err(storage_err)
    .and_then(|()| {
        t.log(format!(
            "GFS2 mounted on {} and {other}; defining the libvirt pool {} on both",
            def.drbd.peers[0].node, def.pool
        ));
        crate::ha::create_shared(
            node,
            &keel_api::ha::SharedPoolCreate {
                name: def.pool.clone(),
                path: def.mountpoint(),
            },
        )?;
        wait_libvirt_pools(node, &def.pool, t)
    });
    rec.state = match &r {
        Ok(()) => "ready".into(),
        Err(e) => format!("failed: {e}"),
    };
    if let Err(e) = st.put(&key, &to_value(&rec)?) {
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
    /// `check`, `prepare`, `dual_primary`, `health`, `teardown`.
    pub step: String,
    pub pool: DrbdGfs2,
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
        let body = serde_json::to_vec(&PeerStorageReq {
            step: step.into(),
            pool: pool.clone(),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
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
    let p = &req.pool;
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
        "teardown" => drbd_gfs2::teardown_node(r, p).map_err(storage_err)?,
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
            n.mounted = h.mounted;
            n.size_bytes = h.size_bytes;
            n.free_bytes = h.free_bytes;
        }
        Err(e) => n.error = Some(e),
    }
    n
}

/// Every cluster pool with each node's health (the other node asked through the peer call).
pub fn status(node: &Node) -> Result<Vec<ClusterPoolStatus>> {
    let (_, st) = clustered_store(node)?;
    let mut out = Vec::new();
    for rec in records(&st)? {
        let mut nodes = Vec::new();
        for p in &rec.def.drbd.peers {
            let h = if p.node == node.cfg.node {
                drbd_gfs2::node_health(node.cluster.runner.as_ref(), &rec.def)
                    .map_err(|e| e.to_string())
            } else {
                Remote::new(node, &p.node)
                    .and_then(|r| r.call("health", &rec.def, Duration::from_secs(10)))
                    .and_then(|v| {
                        serde_json::from_value::<NodeHealth>(v)
                            .map_err(|e| Error::Internal(e.to_string()))
                    })
                    .map_err(|e| e.to_string())
            };
            nodes.push(node_row(&p.node, &p.disk, h));
        }
        out.push(ClusterPoolStatus {
            name: rec.def.pool.clone(),
            kind: rec.kind,
            path: rec.def.mountpoint(),
            state: rec.state.clone(),
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
    if let Ok(vols) = node.hv.list_volumes(name) {
        if !vols.is_empty() {
            return Err(Error::Conflict(format!(
                "cluster pool {name:?} holds {} volume(s) ({}): move or delete the VM disks first",
                vols.len(),
                vols.iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if rec.def.drbd.peers.iter().all(|p| p.node != node.cfg.node) {
        return Err(Error::Conflict(format!(
            "cluster pool {name:?} is on {}: delete it there",
            rec.def
                .drbd
                .peers
                .iter()
                .map(|p| p.node.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        )));
    }
    Ok(rec)
}

/// The delete task: the libvirt pools (refused if a VM names the pool), the Pacemaker chain,
/// the DRBD resource on both nodes, the record. The disks keep their data until reused with
/// `--wipe`.
fn delete_pool(node: &Node, rec: PoolRecord, t: &TaskHandle) -> Result<()> {
    let name = rec.def.pool.clone();
    if Store::local()
        .get(&format!("/storage/shared/{name}"))?
        .is_some()
    {
        crate::ha::delete_shared(node, &name)?;
        t.log(format!(
            "shared pool {name} removed (libvirt pools undefined by each node)"
        ));
    }
    let r = node.cluster.runner.as_ref();
    let stack = rec.def.stack();
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
    let mut teardown = vec![drbd_gfs2::teardown_node(r, &rec.def).map_err(storage_err)];
    for p in rec
        .def
        .drbd
        .peers
        .iter()
        .filter(|p| p.node != node.cfg.node)
    {
        teardown.push(
            Remote::new(node, &p.node)
                .and_then(|x| x.call("teardown", &rec.def, Duration::from_secs(60)))
                .map(|_| ()),
        );
    }
    for x in teardown {
        match x {
            Err(e) if partial => t.log(format!("warning: {e}")),
            other => other?,
        }
    }
    t.log("DRBD resource down and its .res removed on both nodes");
    Store::local().delete(&pool_key(&name))?;
    Ok(())
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
}

/// Peer routes (authenticated by the peer signature, not a session).
pub fn peer_routes() -> Router<Arc<Node>> {
    Router::new().route("/api/v1/cluster/peer/storage", post(peer_storage))
}

/// Create a cluster pool with one call, as a task (its log carries the initial sync's
/// progress). Refused before any task when not clustered, fencing is not proven on every
/// node, the cluster is not exactly two nodes, the name is taken, or either node's device is
/// missing, too small, mounted, or not blank without `wipe`.
#[utoipa::path(post, path = "/api/v1/cluster/storage-pools", tag = "storage",
    request_body = ClusterPoolCreate,
    responses((status = 202, body = TaskRef),
        (status = 400, description = "Bad name or device path", body = ErrorBody),
        (status = 409, description = "Not clustered, fencing not proven, not two nodes, name taken, or a device refused by the probe (named with its node)", body = ErrorBody)))]
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
        (status = 409, description = "It holds VM disks, or it is not on this node", body = ErrorBody)))]
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
