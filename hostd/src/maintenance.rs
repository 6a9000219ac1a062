//! Node maintenance (docs/ha.md, "Node maintenance"): every running VM leaves the node (and,
//! when asked, every stopped one), then the node is in Pacemaker standby until maintenance ends.
//!
//! Everything is decided before anything moves ([`prepare`]): each running non-HA VM gets a
//! target that passes the same checks as `keel vm migrate` (networks, pools, memory, CPU model,
//! snapshots), and Pacemaker's own scheduler (`crm_simulate --node-down`) must place every HA VM
//! of the node elsewhere. A VM that cannot leave stops the request with its reason, before a
//! task exists. With `include_stopped`, the stopped non-HA VMs are planned the same way, as
//! offline migrations (no memory needed on the target). Then the task ([`run`]) migrates the
//! non-HA VMs one by one, live or offline (the first
//! failure stops it: the node is not put in standby and the VMs already moved are named), puts
//! the node in standby (Pacemaker live-migrates the HA VMs away, respecting their placement
//! rules) and waits until none runs here.
//!
//! What moved where is kept in the config store (`/maintenance/<node>`, [`MaintenanceRecord`]),
//! so that ending maintenance with `return_vms` ([`bring_back`]) brings the VMs back live: HA
//! VMs through a Pacemaker move (cleared afterwards), the others by asking the node that holds
//! each now to live-migrate it here (a member request as the same user). A VM that cannot come
//! back stays where it is, named, and stays on record so the same request retries it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Extension, Router};
use clusterd::ha as cha;
use keel_api::ha::MaintenanceSet;
use keel_api::migration::MigrateRequest;
use keel_api::task::{TaskInfo, TaskRef, TaskState};
use keel_api::vm::VmState;
use keel_api::ErrorBody;
use keel_runner::Cmd;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::{accepted, blocking, check_node, ApiResult, JsonBody, Path};
use crate::migration::{self, Plan, SourceVm, TargetFacts};
use crate::tasks::{self, TaskHandle};
use crate::Node;

/// How long the task waits for Pacemaker to move the HA VMs off a node in standby.
const DRAIN_WAIT: Duration = Duration::from_secs(600);
/// How long bringing one VM back may take (a live migration on another node).
const RETURN_WAIT: Duration = Duration::from_secs(1800);

/// One VM a node's maintenance moved away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub vmid: u32,
    pub name: String,
    /// The node it went to.
    pub to: String,
    /// Moved by Pacemaker (an HA VM), else live-migrated by Keel.
    pub ha: bool,
}

/// What a node's maintenance moved away (config store `/maintenance/<node>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    /// Unix seconds.
    pub since: i64,
    pub moved: Vec<Moved>,
}

fn record_key(node: &str) -> String {
    format!("/maintenance/{node}")
}

fn load_record(node: &Node) -> Result<Option<MaintenanceRecord>> {
    let Some(st) = node.auth.store() else {
        return Ok(None);
    };
    let key = record_key(&node.cfg.node);
    match st.get(&key)? {
        Some(e) => serde_json::from_value(e.value)
            .map(Some)
            .map_err(|e| Error::Internal(format!("config store entry {key} is not readable: {e}"))),
        None => Ok(None),
    }
}

/// Keep the record (a failure is a warning: the VMs then stay where they went).
fn save_record(node: &Node, rec: &MaintenanceRecord, t: &TaskHandle) {
    let key = record_key(&node.cfg.node);
    let r = match (node.auth.store(), serde_json::to_value(rec)) {
        (Some(st), Ok(v)) => st.put(&key, &v).map(|_| ()).map_err(|e| e.to_string()),
        (None, _) => Err("this node has no config store".into()),
        (_, Err(e)) => Err(e.to_string()),
    };
    if let Err(e) = r {
        t.log(format!(
            "warning: what moved where is not recorded ({e}): ending maintenance cannot bring the VMs back by itself"
        ));
    }
}

fn drop_record(node: &Node) -> Result<()> {
    if let Some(st) = node.auth.store() {
        st.delete(&record_key(&node.cfg.node))?;
    }
    Ok(())
}

pub fn routes() -> Router<Arc<Node>> {
    Router::new().route("/api/v1/nodes/{node}/maintenance", put(set_maintenance))
}

/// One non-HA VM and where it goes.
pub struct Move {
    pub src: SourceVm,
    pub target: TargetFacts,
    pub plan: Plan,
}

/// What maintenance will do, decided before anything moves.
pub struct Prepared {
    pub moves: Vec<Move>,
    /// HA VM → (name, the node Pacemaker would move it to).
    pub ha: BTreeMap<u32, (String, String)>,
}

/// Which of the node's VMs Keel moves itself (not HA, managed by Keel): the running and paused
/// ones, and the stopped ones too with `include_stopped` (templates stay: their linked clones
/// read them where they are); and the refusals for domains Keel does not manage that run here.
/// `ha` says whether a VM is HA (Pacemaker moves those).
pub fn keel_moves(
    vms: &[keel_api::vm::VmSummary],
    ha: &dyn Fn(u32) -> bool,
    include_stopped: bool,
) -> (Vec<u32>, Vec<String>) {
    let mut moves = vec![];
    let mut refused = vec![];
    for v in vms {
        let active = matches!(v.state, VmState::Running | VmState::Paused);
        let stopped = v.state == VmState::Stopped && !v.template;
        match v.vmid {
            Some(id) if ha(id) => {}
            Some(id) if active || (stopped && include_stopped) => moves.push(id),
            Some(_) => {}
            None if active => refused.push(format!(
                "domain {} is running but not managed by Keel: move or stop it yourself",
                v.name
            )),
            None => {}
        }
    }
    (moves, refused)
}

/// The HA VMs of `me` that Pacemaker would not place elsewhere, in words (empty: all can go).
pub fn ha_blockers(
    me: &str,
    sim: &[cha::Simulated],
    names: &BTreeMap<u32, String>,
) -> (BTreeMap<u32, (String, String)>, Vec<String>) {
    let mut go = BTreeMap::new();
    let mut blocked = vec![];
    for s in sim.iter().filter(|s| s.before.as_deref() == Some(me)) {
        let name = names.get(&s.vmid).cloned().unwrap_or_default();
        match s.after.as_deref() {
            Some(a) if a != me => {
                go.insert(s.vmid, (name, a.to_string()));
            }
            _ => blocked.push(format!(
                "HA VM {} ({name}) has nowhere to go: its placement rules, failures or priorities keep it off every other node (see keel cluster what-if --node-fail {me})",
                s.vmid
            )),
        }
    }
    (go, blocked)
}

fn members_online(node: &Node, me: &str) -> Result<Vec<String>> {
    let c = crate::ha::crm(node)?;
    match c.nodes.iter().find(|n| n.name == me) {
        Some(n) if n.standby => {
            return Err(Error::Conflict(format!(
            "{me} is already in maintenance (standby): end it with keel node maintenance {me} off"
        )))
        }
        Some(n) if n.online => {}
        _ => {
            return Err(Error::Conflict(format!(
                "{me} is not online in Pacemaker: maintenance needs a running cluster member"
            )))
        }
    }
    let others: Vec<String> = c
        .nodes
        .iter()
        .filter(|n| n.name != me && n.online && !n.standby && !n.unclean)
        .map(|n| n.name.clone())
        .collect();
    if others.is_empty() {
        return Err(Error::Conflict(format!(
            "no other node is online and out of standby: the VMs of {me} have nowhere to go"
        )));
    }
    Ok(others)
}

/// Decide where every running VM of this node goes (and every stopped one, with
/// `include_stopped`), or refuse naming each VM that cannot leave and why. Nothing is changed.
pub async fn prepare(node: &Arc<Node>, user: &str, include_stopped: bool) -> ApiResult<Prepared> {
    if node.cluster.record()?.is_none() {
        return Err(Error::Conflict(
            "this node is not in a cluster: maintenance moves VMs to other members".into(),
        )
        .into());
    }
    let me = node.cfg.node.clone();
    let n = node.clone();
    let (others, ha, locals) = blocking(move || {
        let others = members_online(&n, &me)?;
        let r = n.cluster.runner.as_ref();
        let sim = cha::parse_simulation(
            &r.run_ok(&cha::node_down_cmd(&me))
                .map_err(crate::ha::run_err)?,
        )
        .map_err(Error::Internal)?;
        let mut names = BTreeMap::new();
        let vms = crate::vms::list(&n)?;
        for id in vms.iter().filter_map(|v| v.vmid) {
            if let Some(rec) = crate::ha::record(&n, id)? {
                names.insert(id, rec.name);
            }
        }
        let (locals, mut refused) =
            keel_moves(&vms, &|id| names.contains_key(&id), include_stopped);
        let (go, blocked) = ha_blockers(&me, &sim, &names);
        refused.extend(blocked);
        if !refused.is_empty() {
            return Err(Error::Conflict(format!(
                "maintenance of {me} refused, nothing was moved: {}",
                refused.join("; ")
            )));
        }
        Ok((others, go, locals))
    })
    .await?;
    let mut moves = vec![];
    let mut refused = vec![];
    // memory already promised to each target by earlier VMs of this plan
    let mut promised: BTreeMap<String, u64> = BTreeMap::new();
    for vmid in locals {
        let n = node.clone();
        let src = blocking(move || migration::source_vm(&n, vmid)).await?;
        let mem = src.parsed.spec.memory_mib;
        let mut best: Option<(TargetFacts, Plan)> = None;
        let mut why = vec![];
        for t in &others {
            let facts = match migration::target_facts(node, t, &src, user).await {
                Ok(mut f) => {
                    let p = promised.get(t).copied().unwrap_or(0);
                    f.memory_free = f.memory_free.saturating_sub(p * 1024 * 1024);
                    f
                }
                Err(e) => {
                    why.push(format!("{t}: {e}"));
                    continue;
                }
            };
            match migration::plan(&node.cfg.node, &src, &facts, mem) {
                Ok(plan) => {
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| facts.memory_free > b.memory_free)
                    {
                        best = Some((facts, plan));
                    }
                }
                Err(e) => why.push(format!("{t}: {e}")),
            }
        }
        match best {
            Some((target, plan)) => {
                if plan.live {
                    *promised.entry(target.name.clone()).or_insert(0) += mem;
                }
                moves.push(Move { src, target, plan });
            }
            None => refused.push(format!(
                "VM {vmid} ({}) cannot move to any node ({})",
                src.name,
                why.join("; ")
            )),
        }
    }
    if !refused.is_empty() {
        return Err(Error::Conflict(format!(
            "maintenance of {} refused, nothing was moved: {}",
            node.cfg.node,
            refused.join("; ")
        ))
        .into());
    }
    Ok(Prepared { moves, ha })
}

/// The maintenance task: non-HA VMs live-migrated one by one, then standby and the HA VMs
/// drained by Pacemaker.
pub fn run(node: &Node, p: &Prepared, user: &str, t: &TaskHandle) -> Result<()> {
    let me = &node.cfg.node;
    let offline = p.moves.iter().filter(|m| !m.plan.live).count();
    t.log(format!(
        "maintenance of {me}: {} VM(s) to live-migrate, {offline} stopped VM(s) to move offline, {} HA VM(s) for Pacemaker to move",
        p.moves.len() - offline,
        p.ha.len()
    ));
    let mut moved: Vec<String> = vec![];
    let mut rec = MaintenanceRecord {
        since: crate::db::now(),
        moved: vec![],
    };
    for m in &p.moves {
        t.log(format!(
            "VM {} ({}) → {}{}",
            m.src.vmid,
            m.src.name,
            m.target.name,
            if m.plan.live {
                ""
            } else {
                " (stopped: offline)"
            }
        ));
        let req = MigrateRequest {
            target: m.target.name.clone(),
            bandwidth_mib_s: None,
            max_downtime_ms: None,
            auto_converge: true,
        };
        let r = if m.plan.live {
            migration::run_live(node, &m.src, &m.target, &m.plan, &req, user, t)
        } else {
            migration::run_offline(node, &m.src, &m.target, &m.plan, t)
        };
        if let Err(e) = r {
            if !rec.moved.is_empty() {
                save_record(node, &rec, t);
            }
            return Err(Error::Conflict(format!(
                "maintenance stopped: VM {} ({}) could not move to {}: {e}. It stays on {me}, which is NOT in standby; {}",
                m.src.vmid,
                m.src.name,
                m.target.name,
                if moved.is_empty() {
                    "no VM was moved".to_string()
                } else {
                    format!("already moved: {}", moved.join(", "))
                }
            )));
        }
        moved.push(format!("VM {} to {}", m.src.vmid, m.target.name));
        rec.moved.push(Moved {
            vmid: m.src.vmid,
            name: m.src.name.clone(),
            to: m.target.name.clone(),
            ha: false,
        });
    }
    for (vmid, (name, to)) in &p.ha {
        t.log(format!(
            "HA VM {vmid} ({name}): Pacemaker is expected to move it to {to}"
        ));
        rec.moved.push(Moved {
            vmid: *vmid,
            name: name.clone(),
            to: to.clone(),
            ha: true,
        });
    }
    save_record(node, &rec, t);
    let r = node.cluster.runner.as_ref();
    r.run_ok(&Cmd::argv(&cha::standby(me, true)).timeout(Duration::from_secs(30)))
        .map_err(crate::ha::run_err)?;
    t.log(format!(
        "{me} is in standby: Pacemaker runs nothing here until maintenance ends"
    ));
    let t0 = Instant::now();
    let still_here = |c: &clusterd::crm::CrmStatus| -> Vec<u32> {
        c.resources
            .iter()
            .filter(|r| r.active && r.nodes.iter().any(|n| n == me))
            .filter_map(|r| cha::vmid_of(&r.id))
            .collect()
    };
    let mut left = vec![];
    let waited = crate::ha::wait_for(
        &format!("Pacemaker to move the HA VMs off {me}"),
        DRAIN_WAIT,
        || {
            let c = crate::ha::crm(node)?;
            left = still_here(&c);
            Ok(left.is_empty())
        },
    );
    if let Err(e) = waited {
        return Err(Error::Unavailable(format!(
            "{e}: HA VM(s) {left:?} still run on {me}, which stays in standby (see keel cluster ha; end maintenance with keel node maintenance {me} off)"
        )));
    }
    let c = crate::ha::crm(node)?;
    for vmid in p.ha.keys() {
        let at = c
            .resource(&cha::resource_id(*vmid))
            .filter(|r| r.active)
            .map(|r| r.nodes.join(","))
            .unwrap_or_else(|| "nowhere (stopped)".into());
        t.log(format!("HA VM {vmid} runs on {at}"));
        if let Some(m) = rec.moved.iter_mut().find(|m| m.ha && m.vmid == *vmid) {
            m.to = at;
        }
    }
    save_record(node, &rec, t);
    t.log(format!(
        "{me} is empty after {:.1} s and stays in standby until keel node maintenance {me} off",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// What ending maintenance does, from the node's standby state, whether VMs are on record as
/// moved away, and whether they are to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndPlan {
    /// The node leaves standby (then, with `return_vms`, the VMs come back).
    LeaveStandby,
    /// Already out of standby, VMs still away: bring them back again.
    RetryReturn,
    /// Not in maintenance, nothing to bring back.
    Refuse,
}

pub fn plan_end(standby: bool, moved: bool, return_vms: bool) -> EndPlan {
    match (standby, moved && return_vms) {
        (true, _) => EndPlan::LeaveStandby,
        (false, true) => EndPlan::RetryReturn,
        (false, false) => EndPlan::Refuse,
    }
}

/// End maintenance: the node leaves standby. With `return_vms`, the record of what to bring
/// back ([`bring_back`]); also when the node already left standby but VMs are still on record
/// (a retry). Without it the moved VMs stay where they are and the record goes.
pub fn end(node: &Node, return_vms: bool) -> Result<Option<MaintenanceRecord>> {
    let me = &node.cfg.node;
    if node.cluster.record()?.is_none() {
        return Err(Error::Conflict(
            "this node is not in a cluster: there is no maintenance to end".into(),
        ));
    }
    let c = crate::ha::crm(node)?;
    let rec = load_record(node)?;
    let standby = c.nodes.iter().any(|n| &n.name == me && n.standby);
    let moved = rec.as_ref().is_some_and(|r| !r.moved.is_empty());
    match plan_end(standby, moved, return_vms) {
        EndPlan::Refuse => return Err(Error::Conflict(format!("{me} is not in maintenance"))),
        EndPlan::RetryReturn => return Ok(rec),
        EndPlan::LeaveStandby => {}
    }
    node.cluster
        .runner
        .run_ok(&Cmd::argv(&cha::standby(me, false)).timeout(Duration::from_secs(30)))
        .map_err(crate::ha::run_err)?;
    if !return_vms {
        if rec.is_some() {
            if let Err(e) = drop_record(node) {
                tracing::warn!(error = %e, "maintenance record left in the config store");
            }
        }
        return Ok(None);
    }
    Ok(Some(rec.unwrap_or_default()))
}

/// The task that brings back what maintenance moved away, one VM at a time; one that cannot
/// come back is named and left where it is (and on record for a retry), the others go on.
pub fn bring_back(node: &Node, rec: &MaintenanceRecord, user: &str, t: &TaskHandle) -> Result<()> {
    let me = node.cfg.node.clone();
    if rec.moved.is_empty() {
        t.log(format!(
            "{me} left maintenance; its maintenance moved no VM away: nothing to bring back"
        ));
        return drop_record(node);
    }
    t.log(format!(
        "{me} takes VMs again; bringing back {} VM(s) its maintenance moved away",
        rec.moved.len()
    ));
    let mut left = vec![];
    let mut failed = vec![];
    for (i, m) in rec.moved.iter().enumerate() {
        let r = if m.ha {
            back_ha(node, m, t)
        } else {
            back_by_migration(node, m, user, t)
        };
        if let Err(e) = r {
            t.log(format!("VM {} ({}) stays where it is: {e}", m.vmid, m.name));
            failed.push(format!("VM {} ({}): {e}", m.vmid, m.name));
            left.push(m.clone());
        }
        t.progress((i + 1) as f64 / rec.moved.len() as f64);
    }
    if left.is_empty() {
        drop_record(node)?;
        t.log(format!("every VM is back on {me}"));
        return Ok(());
    }
    save_record(
        node,
        &MaintenanceRecord {
            since: rec.since,
            moved: left,
        },
        t,
    );
    Err(Error::Conflict(format!(
        "{} of {} VM(s) did not come back to {me}: {}. `keel node maintenance {me} off --return` tries them again",
        failed.len(),
        rec.moved.len(),
        failed.join("; ")
    )))
}

/// An HA VM back through a Pacemaker move (checked against its placement rules, then cleared).
fn back_ha(node: &Node, m: &Moved, t: &TaskHandle) -> Result<()> {
    let me = &node.cfg.node;
    if crate::ha::record(node, m.vmid)?.is_none() {
        t.log(format!(
            "VM {} is no longer highly available: left where it is",
            m.vmid
        ));
        return Ok(());
    }
    let c = crate::ha::crm(node)?;
    match c.resource(&cha::resource_id(m.vmid)) {
        Some(r) if r.active && r.nodes.iter().any(|n| n == me) => {
            t.log(format!("HA VM {} already runs on {me}", m.vmid));
            Ok(())
        }
        Some(r) if r.active => crate::ha::move_to(node, m.vmid, me, t),
        _ => {
            t.log(format!(
                "HA VM {} is not running: Pacemaker places it when it starts",
                m.vmid
            ));
            Ok(())
        }
    }
}

/// A non-HA VM back: the node holding it now (the cluster's VM view) is asked, as `user`, to
/// live-migrate it here, and its task is followed to the end.
fn back_by_migration(node: &Node, m: &Moved, user: &str, t: &TaskHandle) -> Result<()> {
    let me = node.cfg.node.clone();
    let at = crate::vms::recorded_node(node, m.vmid)?.ok_or_else(|| {
        Error::Conflict(format!(
            "the cluster's VM view does not place VM {} on any node (deleted?)",
            m.vmid
        ))
    })?;
    if at == me {
        t.log(format!("VM {} is already on {me}", m.vmid));
        return Ok(());
    }
    let body = serde_json::to_value(MigrateRequest {
        target: me.clone(),
        bandwidth_mib_s: None,
        max_downtime_ms: None,
        auto_converge: true,
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    t.log(format!(
        "VM {} ({}): asking {at} to migrate it back to {me} (live when it runs)",
        m.vmid, m.name
    ));
    let rt = tokio::runtime::Handle::current();
    let pq = format!("/api/v1/nodes/{at}/vms/{}/migrate", m.vmid);
    let (status, b) = rt.block_on(crate::cluster::member_request_body(
        node,
        &at,
        "POST",
        &pq,
        user,
        Some(&body),
    ))?;
    if status != 202 {
        let msg = serde_json::from_slice::<ErrorBody>(&b)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&b).into_owned());
        return Err(Error::Conflict(format!(
            "{at} refused the migration ({status}): {msg}"
        )));
    }
    let task: TaskRef = serde_json::from_slice(&b)
        .map_err(|e| Error::Internal(format!("{at}: unexpected answer to {pq}: {e}")))?;
    let t0 = Instant::now();
    let pq = format!("/api/v1/nodes/{at}/tasks/{}", task.upid);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let (status, b) =
            rt.block_on(crate::cluster::member_request(node, &at, "GET", &pq, user))?;
        if status == 200 {
            let info: TaskInfo = serde_json::from_slice(&b)
                .map_err(|e| Error::Internal(format!("{at}: unexpected answer to {pq}: {e}")))?;
            match info.state {
                TaskState::Running => {}
                TaskState::Ok => {
                    t.log(format!(
                        "VM {} is back on {me} after {:.1} s ({at}'s task {})",
                        m.vmid,
                        t0.elapsed().as_secs_f64(),
                        task.upid
                    ));
                    return Ok(());
                }
                TaskState::Error => {
                    return Err(Error::Conflict(format!(
                        "the migration on {at} failed: {} (task {})",
                        info.message.unwrap_or_default(),
                        task.upid
                    )))
                }
            }
        }
        if t0.elapsed() > RETURN_WAIT {
            return Err(Error::Unavailable(format!(
                "the migration on {at} (task {}) did not end within {} s",
                task.upid,
                RETURN_WAIT.as_secs()
            )));
        }
    }
}

/// Start or end the maintenance of a node. On: every running VM leaves it (non-HA VMs by
/// live migration to a node that can take them, HA VMs by Pacemaker; with `include_stopped`
/// the stopped non-HA VMs too, offline), then it is in standby
/// (kept across reboots). Refused before anything moves when a VM cannot leave. Off: it takes
/// VMs again; the moved VMs stay where they are (204), or with `return_vms` come back live (a
/// task, 202).
#[utoipa::path(put, path = "/api/v1/nodes/{node}/maintenance", tag = "ha",
    params(("node" = String, Path)), request_body = MaintenanceSet,
    responses((status = 202, description = "Maintenance started, or ended with return_vms (a task)", body = keel_api::task::TaskRef),
        (status = 204, description = "Maintenance ended (the moved VMs stay where they are)"),
        (status = 400, description = "return_vms with enabled: true, or include_stopped with enabled: false", body = ErrorBody),
        (status = 409, description = "Not clustered, already (not) in maintenance, no other node online, or a VM that cannot leave (each named with its reason)", body = ErrorBody)))]
pub async fn set_maintenance(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<MaintenanceSet>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    if !req.enabled {
        if req.include_stopped {
            return Err(Error::validation(
                "include_stopped",
                "include_stopped goes with enabled: true (it moves the stopped VMs away when maintenance starts)",
            )
            .into());
        }
        let n = node.clone();
        let return_vms = req.return_vms;
        let Some(rec) = blocking(move || end(&n, return_vms)).await? else {
            return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
        };
        let upid = blocking(move || {
            let n = node.clone();
            let user = p.user.clone();
            tasks::spawn(
                &node.tasks,
                "maintenanceend",
                &node.cfg.node,
                &p.user,
                true,
                move |t| bring_back(&n, &rec, &user, t),
            )
        })
        .await?;
        return Ok(accepted(upid));
    }
    if req.return_vms {
        return Err(Error::validation(
            "return_vms",
            "return_vms goes with enabled: false (it brings the moved VMs back when maintenance ends)",
        )
        .into());
    }
    let prepared = prepare(&node, &p.user, req.include_stopped).await?;
    let upid = blocking(move || {
        let n = node.clone();
        let user = p.user.clone();
        tasks::spawn(
            &node.tasks,
            "maintenance",
            &node.cfg.node,
            &p.user,
            true,
            move |t| run(&n, &prepared, &user, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(
        vmid: Option<u32>,
        name: &str,
        state: VmState,
        template: bool,
    ) -> keel_api::vm::VmSummary {
        keel_api::vm::VmSummary {
            vmid,
            name: name.into(),
            uuid: String::new(),
            state,
            vcpus: 1,
            memory_mib: 64,
            uptime_s: None,
            managed: vmid.is_some(),
            template,
        }
    }

    #[test]
    fn stopped_vms_move_only_when_asked_and_never_ha_templates_or_foreign_ones() {
        let vms = [
            vm(Some(100), "ha", VmState::Running, false),
            vm(Some(101), "run", VmState::Running, false),
            vm(Some(102), "paused", VmState::Paused, false),
            vm(Some(103), "off", VmState::Stopped, false),
            vm(Some(104), "tpl", VmState::Stopped, true),
            vm(Some(105), "ha-off", VmState::Stopped, false),
            vm(None, "foreign-off", VmState::Stopped, false),
        ];
        let ha = |id: u32| id == 100 || id == 105;
        assert_eq!(keel_moves(&vms, &ha, false), (vec![101, 102], vec![]));
        assert_eq!(keel_moves(&vms, &ha, true), (vec![101, 102, 103], vec![]));
        let mut with_foreign = vms.to_vec();
        with_foreign.push(vm(None, "foreign", VmState::Running, false));
        let (_, refused) = keel_moves(&with_foreign, &ha, true);
        assert_eq!(
            refused,
            ["domain foreign is running but not managed by Keel: move or stop it yourself"]
        );
    }

    fn sim(vmid: u32, b: Option<&str>, a: Option<&str>) -> cha::Simulated {
        cha::Simulated {
            vmid,
            before: b.map(str::to_string),
            after: a.map(str::to_string),
        }
    }

    #[test]
    fn ha_vms_of_the_node_must_land_elsewhere() {
        let names: BTreeMap<u32, String> =
            [(100, "web".to_string()), (101, "db".to_string())].into();
        let (go, blocked) = ha_blockers(
            "a",
            &[
                sim(100, Some("a"), Some("b")),
                sim(101, Some("b"), Some("b")),
                sim(102, None, None),
            ],
            &names,
        );
        assert!(blocked.is_empty());
        assert_eq!(go.len(), 1);
        assert_eq!(go[&100], ("web".to_string(), "b".to_string()));

        let (go, blocked) = ha_blockers(
            "a",
            &[sim(100, Some("a"), None), sim(101, Some("a"), Some("a"))],
            &names,
        );
        assert!(go.is_empty());
        assert_eq!(blocked.len(), 2);
        assert!(blocked[0].contains("HA VM 100 (web) has nowhere to go"));
        assert!(blocked[1].contains("HA VM 101 (db)"));
    }

    #[test]
    fn ending_maintenance_leaves_standby_or_retries_the_return() {
        assert_eq!(plan_end(true, true, true), EndPlan::LeaveStandby);
        assert_eq!(plan_end(true, false, false), EndPlan::LeaveStandby);
        // out of standby with VMs still away: only a return retries them
        assert_eq!(plan_end(false, true, true), EndPlan::RetryReturn);
        assert_eq!(plan_end(false, true, false), EndPlan::Refuse);
        assert_eq!(plan_end(false, false, true), EndPlan::Refuse);
    }

    #[test]
    fn the_record_of_moved_vms_reads_back() {
        let rec = MaintenanceRecord {
            since: 1_700_000_000,
            moved: vec![
                Moved {
                    vmid: 104,
                    name: "web".into(),
                    to: "node2".into(),
                    ha: false,
                },
                Moved {
                    vmid: 100,
                    name: "db".into(),
                    to: "node3".into(),
                    ha: true,
                },
            ],
        };
        let v = serde_json::to_value(&rec).unwrap_or_default();
        assert_eq!(v["moved"][1]["ha"], true);
        let back: MaintenanceRecord = serde_json::from_value(v).unwrap_or_default();
        assert_eq!(back, rec);
        assert_eq!(record_key("node1"), "/maintenance/node1");
    }

    #[test]
    fn standby_and_simulation_commands() {
        assert_eq!(
            cha::standby("n1", true).join(" "),
            "crm_attribute --node n1 --name standby --update on"
        );
        assert_eq!(
            cha::standby("n1", false).join(" "),
            "crm_attribute --node n1 --name standby --delete"
        );
        let c = cha::node_down_cmd("n2");
        assert_eq!(c.program(), "crm_simulate");
        assert_eq!(
            c.get_args().join(" "),
            "--live-check --simulate --node-down n2 --output-as=xml"
        );
    }
}
