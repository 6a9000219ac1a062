//! Node maintenance (docs/ha.md, "Node maintenance"): every running VM leaves the node, then
//! the node is in Pacemaker standby until maintenance ends.
//!
//! Everything is decided before anything moves ([`prepare`]): each running non-HA VM gets a
//! target that passes the same checks as `keel vm migrate` (networks, pools, memory, CPU model,
//! snapshots), and Pacemaker's own scheduler (`crm_simulate --node-down`) must place every HA VM
//! of the node elsewhere. A VM that cannot leave stops the request with its reason, before a
//! task exists. Then the task ([`run`]) live-migrates the non-HA VMs one by one (the first
//! failure stops it: the node is not put in standby and the VMs already moved are named), puts
//! the node in standby (Pacemaker live-migrates the HA VMs away, respecting their placement
//! rules) and waits until none runs here.

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
use keel_api::vm::VmState;
use keel_api::ErrorBody;
use keel_runner::Cmd;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::{accepted, blocking, check_node, ApiResult, JsonBody, Path};
use crate::migration::{self, Plan, SourceVm, TargetFacts};
use crate::tasks::{self, TaskHandle};
use crate::Node;

/// How long the task waits for Pacemaker to move the HA VMs off a node in standby.
const DRAIN_WAIT: Duration = Duration::from_secs(600);

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

/// Decide where every running VM of this node goes, or refuse naming each VM that cannot
/// leave and why. Nothing is changed.
pub async fn prepare(node: &Arc<Node>, user: &str) -> ApiResult<Prepared> {
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
        let mut locals = vec![];
        let mut refused = vec![];
        for v in crate::vms::list(&n)? {
            let active = matches!(v.state, VmState::Running | VmState::Paused);
            match v.vmid {
                Some(id) => match crate::ha::record(&n, id)? {
                    Some(rec) => {
                        names.insert(id, rec.name);
                    }
                    None if active => locals.push(id),
                    None => {}
                },
                None if active => refused.push(format!(
                    "domain {} is running but not managed by Keel: move or stop it yourself",
                    v.name
                )),
                None => {}
            }
        }
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
                *promised.entry(target.name.clone()).or_insert(0) += mem;
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
    t.log(format!(
        "maintenance of {me}: {} VM(s) to live-migrate, {} HA VM(s) for Pacemaker to move",
        p.moves.len(),
        p.ha.len()
    ));
    let mut moved: Vec<String> = vec![];
    for m in &p.moves {
        t.log(format!(
            "VM {} ({}) → {}",
            m.src.vmid, m.src.name, m.target.name
        ));
        let req = MigrateRequest {
            target: m.target.name.clone(),
            bandwidth_mib_s: None,
            max_downtime_ms: None,
            auto_converge: true,
        };
        if let Err(e) = migration::run_live(node, &m.src, &m.target, &m.plan, &req, user, t) {
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
    }
    for (vmid, (name, to)) in &p.ha {
        t.log(format!(
            "HA VM {vmid} ({name}): Pacemaker is expected to move it to {to}"
        ));
    }
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
    }
    t.log(format!(
        "{me} is empty after {:.1} s and stays in standby until keel node maintenance {me} off",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// End maintenance: the node leaves standby (VMs do not move back by themselves).
pub fn end(node: &Node) -> Result<()> {
    let me = &node.cfg.node;
    if node.cluster.record()?.is_none() {
        return Err(Error::Conflict(
            "this node is not in a cluster: there is no maintenance to end".into(),
        ));
    }
    let c = crate::ha::crm(node)?;
    if !c.nodes.iter().any(|n| &n.name == me && n.standby) {
        return Err(Error::Conflict(format!("{me} is not in maintenance")));
    }
    node.cluster
        .runner
        .run_ok(&Cmd::argv(&cha::standby(me, false)).timeout(Duration::from_secs(30)))
        .map_err(crate::ha::run_err)?;
    Ok(())
}

/// Start or end the maintenance of a node. On: every running VM leaves it (non-HA VMs by
/// live migration to a node that can take them, HA VMs by Pacemaker), then it is in standby
/// (kept across reboots). Refused before anything moves when a VM cannot leave. Off: it takes
/// VMs again (the moved VMs stay where they are).
#[utoipa::path(put, path = "/api/v1/nodes/{node}/maintenance", tag = "ha",
    params(("node" = String, Path)), request_body = MaintenanceSet,
    responses((status = 202, description = "Maintenance started (a task)", body = keel_api::task::TaskRef),
        (status = 204, description = "Maintenance ended"),
        (status = 409, description = "Not clustered, already (not) in maintenance, no other node online, or a VM that cannot leave (each named with its reason)", body = ErrorBody)))]
pub async fn set_maintenance(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<MaintenanceSet>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    if !req.enabled {
        blocking(move || end(&node)).await?;
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    let prepared = prepare(&node, &p.user).await?;
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
