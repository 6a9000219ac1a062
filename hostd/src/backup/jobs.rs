//! Backup jobs (docs/backups.md, "Backup jobs"): VMs, a target, a schedule, a retention
//! policy. On a clustered node the definitions are cluster configuration in the config store
//! (`/backup/jobs/<id>`), on a standalone node rows of `hostd.db` (table `backup_jobs`), like
//! targets ([`targets::defs`]: jobs a node had before it was clustered are adopted the same
//! way). A node's own bookkeeping (next run, run count, last run) stays in its `hostd.db`
//! (`backup_job_state` for cluster jobs); each node also records its last run of a cluster job
//! in `/backup/runs/<job>/<node>`, so every listing shows every node's ([`node_runs`]).
//!
//! The scheduler ([`spawn_scheduler`]) wakes every `backup_scheduler_tick_ms` (20 s) and
//! starts each enabled job whose stored next run has come, as ONE task (`backupjob`, target
//! `backupjob-<id>`, exclusive: never two runs of a job at once). The next run is then
//! computed from now, so a run missed while hostd was down runs once at start-up, not once
//! per missed slot. Each run backs the VMs up in turn, holding each VM like its own backup
//! task would, then prunes it by the job's retention; one VM failing does not stop the
//! others, and the task ends failed with a summary naming them.
//!
//! In a cluster every node runs every job for the VMs it holds ([`holds`]) only. Schedules
//! are calendar times, so every node computes the same slots; before backing a VM up for a
//! slot the node claims it with a compare-and-set on `/backup/claims/<job>/<vmid>`
//! ([`claim`]): a claim for this slot or a later one means another node did it, so a VM
//! that moves is still backed up once per slot.

use std::sync::Arc;
use std::time::Duration;

use keel_api::backup::{
    BackupCreate, BackupJob, BackupJobConfig, BackupJobNodeRun, BackupJobRun, JobMode,
};
use keel_api::task::TaskState;
use keel_api::vm::VmState;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::targets::{self, adopt_decision, cluster_store, store_err, Adopt, Scope};
use super::{prune, run, schedule};
use crate::db::{now, Store, StoreError};
use crate::error::{Error, Result};
use crate::tasks::{self, TaskHandle};
use crate::{vms, Node};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS backup_jobs (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    next_run INTEGER,
    runs INTEGER NOT NULL DEFAULT 0,
    last_time INTEGER,
    last_upid TEXT
);
CREATE TABLE IF NOT EXISTS backup_job_state (
    id TEXT PRIMARY KEY,
    schedule TEXT,
    next_run INTEGER,
    runs INTEGER NOT NULL DEFAULT 0,
    last_time INTEGER,
    last_upid TEXT
);
";

/// The user scheduled runs are started as (their task's user).
pub const SCHEDULER_USER: &str = "root";

fn db(node: &Node) -> Result<crate::db::Db> {
    let db = targets::db(node)?;
    db.conn().execute_batch(SCHEMA)?;
    Ok(db)
}

fn job_key(id: &str) -> String {
    format!("/backup/jobs/{id}")
}

fn claims_prefix(id: &str) -> String {
    format!("/backup/claims/{id}")
}

fn claim_key(id: &str, vmid: u32) -> String {
    format!("{}/{vmid}", claims_prefix(id))
}

fn runs_prefix(id: &str) -> String {
    format!("/backup/runs/{id}")
}

/// Record a node's run of a cluster job (`/backup/runs/<job>/<node>`), so every node's
/// listing shows every node's last run. Best effort: a run never fails for its record (the
/// answering node's own run is read from its task list anyway).
fn publish_run(st: &Store, job: &str, run: &BackupJobNodeRun) {
    let key = format!("{}/{}", runs_prefix(job), run.node);
    let r = serde_json::to_value(run)
        .map_err(|e| e.to_string())
        .and_then(|v| st.put(&key, &v).map(|_| ()).map_err(|e| e.to_string()));
    if let Err(e) = r {
        warn!(job, %key, "cannot record this node's run of the backup job: {e}");
    }
}

/// Every node's recorded last run of a cluster job, by node name; this node's from its task
/// list (`mine`: its last run, whatever the store holds).
fn node_runs(
    st: &Store,
    job: &str,
    me: &str,
    mine: Option<&BackupJobRun>,
) -> Vec<BackupJobNodeRun> {
    let mut out: Vec<BackupJobNodeRun> = st
        .list(&runs_prefix(job))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| serde_json::from_value::<BackupJobNodeRun>(e.value).ok())
        .filter(|r| r.node != me)
        .collect();
    if let Some(m) = mine {
        out.push(BackupJobNodeRun {
            node: me.to_string(),
            time: m.time,
            upid: m.upid.clone(),
            state: m.state.clone(),
            message: m.message.clone(),
        });
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// The schedule's next run after `t`, or a 400 on `schedule` saying what is wrong.
pub fn next_run(text: &str, t: i64) -> Result<Option<i64>> {
    let s = schedule::parse(text).map_err(|e| Error::validation("schedule", e))?;
    Ok(s.next_after(t, &prune::local_offset))
}

/// The VM ids of the cluster (`/vms/<vmid>` → the node holding it).
fn cluster_vms(st: &Store) -> Result<Vec<(u32, String)>> {
    Ok(st
        .list("/vms")
        .map_err(store_err)?
        .iter()
        .filter_map(|e| {
            let id = e.key.rsplit('/').next()?.parse().ok()?;
            Some((id, e.value["node"].as_str().unwrap_or_default().to_string()))
        })
        .collect())
}

/// Every check of a job definition before it is stored: syntax, schedule, the target and
/// the listed VMs exist (anywhere in the cluster on a clustered node).
pub fn check(node: &Node, c: &BackupJobConfig) -> Result<()> {
    c.validate()?;
    next_run(&c.schedule, now())?;
    targets::get(node, &c.target).map_err(|e| Error::validation("target", e.to_string()))?;
    if !c.vms.is_empty() {
        let mut have: Vec<u32> = vms::list(node)?.iter().filter_map(|v| v.vmid).collect();
        let st = cluster_store(node);
        if let Some(st) = &st {
            have.extend(cluster_vms(st)?.into_iter().map(|(v, _)| v));
        }
        if let Some(v) = c.vms.iter().find(|v| !have.contains(v)) {
            return Err(Error::validation(
                "vms",
                match st {
                    Some(_) => format!("VM {v} does not exist in the cluster"),
                    None => format!("VM {v} does not exist on node {}", node.cfg.node),
                },
            ));
        }
    }
    Ok(())
}

/// This node's bookkeeping of a job.
#[derive(Debug, Clone, Default)]
struct State {
    /// The schedule `next_run` was computed from (cluster jobs: another node may change it).
    schedule: Option<String>,
    next_run: Option<i64>,
    runs: i64,
    last_time: Option<i64>,
    last_upid: Option<String>,
}

/// A job as this node sees it.
struct Row {
    config: BackupJobConfig,
    state: State,
    scope: Scope,
}

fn parse_config(id: &str, text: &str) -> Result<BackupJobConfig> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("stored backup job {id:?} is not readable: {e}")))
}

/// Jobs of this node's database: (config text, state).
fn local_rows(db: &crate::db::Db) -> Result<Vec<(String, String, State)>> {
    let c = db.conn();
    let mut st = c.prepare(
        "SELECT id, config, next_run, runs, last_time, last_upid FROM backup_jobs ORDER BY id",
    )?;
    let v = st
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                State {
                    schedule: None,
                    next_run: r.get(2)?,
                    runs: r.get(3)?,
                    last_time: r.get(4)?,
                    last_upid: r.get(5)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(v)
}

fn cluster_state(db: &crate::db::Db, id: &str) -> Result<State> {
    let r = db
        .conn()
        .query_row(
            "SELECT schedule, next_run, runs, last_time, last_upid FROM backup_job_state WHERE id=?1",
            params![id],
            |r| {
                Ok(State {
                    schedule: r.get(0)?,
                    next_run: r.get(1)?,
                    runs: r.get(2)?,
                    last_time: r.get(3)?,
                    last_upid: r.get(4)?,
                })
            },
        )
        .optional()?;
    Ok(r.unwrap_or_default())
}

/// Move the jobs this node defined before it was clustered into the config store (like
/// targets: created with version 0 then dropped here; a different job of the same id in the
/// store keeps the local one, unused, with a warning). Its bookkeeping moves along.
fn adopt(db: &crate::db::Db, st: &Store) -> Result<()> {
    for (id, text, state) in local_rows(db)? {
        let Ok(c) = parse_config(&id, &text) else {
            warn!(job = %id, "this node's stored backup job is unreadable: not adopted");
            continue;
        };
        let key = job_key(&id);
        let stored: Option<BackupJobConfig> = match st.get(&key).map_err(store_err)? {
            Some(e) => serde_json::from_value(e.value).ok(),
            None => None,
        };
        let drop_local = |db: &crate::db::Db| -> Result<()> {
            let conn = db.conn();
            conn.execute(
                "INSERT OR IGNORE INTO backup_job_state(id, schedule, next_run, runs, last_time, last_upid) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, c.schedule, state.next_run, state.runs, state.last_time, state.last_upid],
            )?;
            conn.execute("DELETE FROM backup_jobs WHERE id=?1", params![id])?;
            Ok(())
        };
        match adopt_decision(&c, stored.as_ref(), |a, b| a == b) {
            Adopt::Create => {
                let v = serde_json::to_value(&c).map_err(|e| Error::Internal(e.to_string()))?;
                match st.cas(&key, &v, 0) {
                    Ok(_) => {}
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(e)),
                }
                info!(job = %id, "backup job adopted into the cluster config store");
                drop_local(db)?;
            }
            Adopt::Drop => drop_local(db)?,
            Adopt::Keep => warn!(
                job = %id,
                "this node's backup job differs from the cluster's job of the same id: kept in hostd.db, not listed and not run (delete it or give it another id)"
            ),
        }
    }
    Ok(())
}

/// Every job this node sees, sorted by id.
fn rows(node: &Node) -> Result<Vec<Row>> {
    let db = db(node)?;
    match cluster_store(node) {
        Some(st) => {
            adopt(&db, &st)?;
            let mut out = Vec::new();
            for e in st.list("/backup/jobs").map_err(store_err)? {
                let config: BackupJobConfig =
                    serde_json::from_value(e.value.clone()).map_err(|x| {
                        Error::Internal(format!(
                            "config store entry {} is not readable: {x}",
                            e.key
                        ))
                    })?;
                let state = cluster_state(&db, &config.id)?;
                out.push(Row {
                    config,
                    state,
                    scope: Scope::Cluster,
                });
            }
            Ok(out)
        }
        None => local_rows(&db)?
            .into_iter()
            .map(|(id, text, state)| {
                Ok(Row {
                    config: parse_config(&id, &text)?,
                    state,
                    scope: Scope::Node,
                })
            })
            .collect(),
    }
}

fn row(node: &Node, id: &str) -> Result<Row> {
    rows(node)?
        .into_iter()
        .find(|r| r.config.id == id)
        .ok_or_else(|| match cluster_store(node) {
            Some(_) => Error::NotFound(format!(
                "backup job {id:?} does not exist in the cluster (`keel backup job list` shows them)"
            )),
            None => Error::NotFound(format!(
                "backup job {id:?} does not exist on node {} (`keel backup job list` shows them)",
                node.cfg.node
            )),
        })
}

/// Store this node's next run of a job.
fn set_next(node: &Node, r: &Row, next: Option<i64>) -> Result<()> {
    let db = db(node)?;
    match r.scope {
        Scope::Node => db.conn().execute(
            "UPDATE backup_jobs SET next_run=?2 WHERE id=?1",
            params![r.config.id, next],
        )?,
        Scope::Cluster => db.conn().execute(
            "INSERT INTO backup_job_state(id, schedule, next_run) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET schedule=?2, next_run=?3",
            params![r.config.id, r.config.schedule, next],
        )?,
    };
    Ok(())
}

fn to_job(node: &Node, r: Row) -> BackupJob {
    let Row {
        config,
        state,
        scope,
    } = r;
    let last_run = match (state.last_time, state.last_upid) {
        (Some(time), Some(upid)) => {
            let (state, message) = match node.tasks.get(&upid) {
                Ok(t) => (
                    t.state.as_str().to_string(),
                    t.message.filter(|_| t.state != TaskState::Running),
                ),
                Err(_) => ("unknown".to_string(), None),
            };
            Some(BackupJobRun {
                time,
                upid,
                state,
                message,
            })
        }
        _ => None,
    };
    let node_runs = match (scope, cluster_store(node)) {
        (Scope::Cluster, Some(st)) => node_runs(&st, &config.id, &node.cfg.node, last_run.as_ref()),
        _ => Vec::new(),
    };
    BackupJob {
        next_run: if config.enabled { state.next_run } else { None },
        config,
        last_run,
        node_runs,
        scope: scope.as_str().into(),
    }
}

pub fn list(node: &Node) -> Result<Vec<BackupJob>> {
    Ok(rows(node)?.into_iter().map(|r| to_job(node, r)).collect())
}

pub fn get(node: &Node, id: &str) -> Result<BackupJob> {
    Ok(to_job(node, row(node, id)?))
}

fn config_json(c: &BackupJobConfig) -> Result<String> {
    serde_json::to_string(c).map_err(|e| Error::Internal(format!("backup job: {e}")))
}

fn config_value(c: &BackupJobConfig) -> Result<serde_json::Value> {
    serde_json::to_value(c).map_err(|e| Error::Internal(format!("backup job: {e}")))
}

pub fn create(node: &Node, c: &BackupJobConfig) -> Result<BackupJob> {
    check(node, c)?;
    let next = next_run(&c.schedule, now())?;
    let exists = || {
        Error::Conflict(format!(
            "backup job {:?} already exists (`keel backup job set` changes it)",
            c.id
        ))
    };
    match cluster_store(node) {
        Some(st) => {
            // adopt first, so a local job of that id is decided before
            rows(node)?;
            match st.cas(&job_key(&c.id), &config_value(c)?, 0) {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => return Err(exists()),
                Err(e) => return Err(store_err(e)),
            }
            let db = db(node)?;
            db.conn().execute(
                "INSERT OR REPLACE INTO backup_job_state(id, schedule, next_run) VALUES (?1, ?2, ?3)",
                params![c.id, c.schedule, next],
            )?;
        }
        None => {
            let db = db(node)?;
            let n = db.conn().execute(
                "INSERT OR IGNORE INTO backup_jobs(id, config, next_run) VALUES (?1, ?2, ?3)",
                params![c.id, config_json(c)?, next],
            )?;
            if n == 0 {
                return Err(exists());
            }
        }
    }
    get(node, &c.id)
}

/// Replace a job's definition; the next run is computed again (on other nodes at their
/// next scheduler pass, which sees the schedule changed).
pub fn update(node: &Node, id: &str, c: &BackupJobConfig) -> Result<BackupJob> {
    if c.id != id {
        return Err(Error::validation(
            "id",
            format!("the body's id {:?} is not the job's id {id:?}", c.id),
        ));
    }
    let r = row(node, id)?;
    check(node, c)?;
    let next = next_run(&c.schedule, now())?;
    match (r.scope, cluster_store(node)) {
        (Scope::Cluster, Some(st)) => {
            let key = job_key(id);
            let version = st
                .get(&key)
                .map_err(store_err)?
                .map(|e| e.version)
                .unwrap_or(0);
            match st.cas(&key, &config_value(c)?, version) {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => {
                    return Err(Error::Conflict(format!(
                        "backup job {id:?} was changed or deleted meanwhile on another node: read it again"
                    )))
                }
                Err(e) => return Err(store_err(e)),
            }
            let r = Row {
                config: c.clone(),
                ..r
            };
            set_next(node, &r, next)?;
        }
        _ => {
            db(node)?.conn().execute(
                "UPDATE backup_jobs SET config=?2, next_run=?3 WHERE id=?1",
                params![id, config_json(c)?, next],
            )?;
        }
    }
    get(node, id)
}

/// Delete a job (cluster-wide on a clustered node, with its claims).
pub fn delete(node: &Node, id: &str) -> Result<()> {
    let r = row(node, id)?;
    let db = db(node)?;
    match (r.scope, cluster_store(node)) {
        (Scope::Cluster, Some(st)) => {
            st.delete(&job_key(id)).map_err(store_err)?;
            for e in st.list(&claims_prefix(id)).map_err(store_err)? {
                st.delete(&e.key).map_err(store_err)?;
            }
            for e in st.list(&runs_prefix(id)).map_err(store_err)? {
                st.delete(&e.key).map_err(store_err)?;
            }
            db.conn()
                .execute("DELETE FROM backup_job_state WHERE id=?1", params![id])?;
        }
        _ => {
            db.conn()
                .execute("DELETE FROM backup_jobs WHERE id=?1", params![id])?;
        }
    }
    Ok(())
}

fn task_target(id: &str) -> String {
    format!("backupjob-{id}")
}

/// Whether this node holds a VM for backups: it runs it here; or it is stopped here and the
/// cluster's record (`/vms/<vmid>`, `record_node`) does not name another node. The claim
/// decides between nodes that both think they hold it.
pub fn holds(me: &str, local: Option<VmState>, record_node: Option<&str>) -> bool {
    match local {
        None => false,
        Some(VmState::Stopped | VmState::Crashed | VmState::Unknown) => {
            record_node.is_none_or(|n| n.is_empty() || n == me)
        }
        Some(_) => true,
    }
}

/// The VMs of a job this node backs up: the listed ones (or every one) that it holds.
pub fn vms_held(
    me: &str,
    c: &BackupJobConfig,
    local: &[(u32, VmState)],
    records: &[(u32, String)],
) -> Vec<u32> {
    let mut ids: Vec<u32> = if c.all_vms {
        local.iter().map(|(v, _)| *v).collect()
    } else {
        c.vms.clone()
    };
    if c.all_vms {
        ids.sort();
        ids.dedup();
    }
    ids.into_iter()
        .filter(|v| {
            let l = local.iter().find(|(x, _)| x == v).map(|(_, s)| *s);
            let r = records
                .iter()
                .find(|(x, _)| x == v)
                .map(|(_, n)| n.as_str());
            holds(me, l, r)
        })
        .collect()
}

/// `/backup/claims/<job>/<vmid>`: the last slot a node backed the VM up for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRec {
    pub slot: i64,
    pub node: String,
    pub upid: String,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node backs the VM up for the slot.
    Mine,
    /// Another node (or this one, earlier) claimed this slot or a later one.
    Taken(ClaimRec),
}

/// Claim `(job, vmid, slot)` for this node: a compare-and-set on the claim key, repeated
/// when another node wrote it in between.
pub fn claim(st: &Store, job: &str, vmid: u32, slot: i64, me: &str, upid: &str) -> Result<Claim> {
    let key = claim_key(job, vmid);
    let mine = ClaimRec {
        slot,
        node: me.into(),
        upid: upid.into(),
    };
    let v = serde_json::to_value(&mine).map_err(|e| Error::Internal(e.to_string()))?;
    for _ in 0..5 {
        let (version, cur) = match st.get(&key).map_err(store_err)? {
            Some(e) => (e.version, serde_json::from_value::<ClaimRec>(e.value).ok()),
            None => (0, None),
        };
        if let Some(c) = cur.filter(|c| c.slot >= slot) {
            return Ok(Claim::Taken(c));
        }
        match st.cas(&key, &v, version) {
            Ok(_) => return Ok(Claim::Mine),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(e)),
        }
    }
    Err(Error::Unavailable(format!(
        "backup claim {key}: changed by other nodes five times in a row"
    )))
}

/// What one run does: the VMs and, for a scheduled run in a cluster, the slot it claims.
pub struct Plan {
    pub vmids: Vec<u32>,
    /// `(store, slot)`: claim each VM before its backup.
    pub claim: Option<(Store, i64)>,
}

/// The VMs this node backs up in a run of `c`.
fn plan(node: &Node, c: &BackupJobConfig, slot: Option<i64>) -> Result<Plan> {
    let local: Vec<(u32, VmState)> = vms::list(node)?
        .iter()
        .filter_map(|v| Some((v.vmid?, v.state)))
        .collect();
    match cluster_store(node) {
        Some(st) => {
            let records = cluster_vms(&st)?;
            Ok(Plan {
                vmids: vms_held(&node.cfg.node, c, &local, &records),
                claim: slot.map(|s| (st, s)),
            })
        }
        None => Ok(Plan {
            vmids: if c.all_vms {
                let mut v: Vec<u32> = local.iter().map(|(v, _)| *v).collect();
                v.sort();
                v
            } else {
                c.vms.clone()
            },
            claim: None,
        }),
    }
}

/// Start a run of a job now as `user` (409 while one runs); counts the run for `full_every`.
pub fn start(node: &Arc<Node>, id: &str, user: &str) -> Result<String> {
    start_slot(node, id, user, None)
}

/// Start a run; `slot`: the scheduled time it is for (claimed per VM in a cluster).
fn start_slot(node: &Arc<Node>, id: &str, user: &str, slot: Option<i64>) -> Result<String> {
    let r = row(node, id)?;
    let c = r.config.clone();
    let full = c
        .full_every
        .is_some_and(|n| r.state.runs % i64::from(n) == 0);
    let p = plan(node, &c, slot)?;
    let n = node.clone();
    // a cluster job's run is recorded for the other nodes' listings, when it starts and ends
    let rec = match r.scope {
        Scope::Cluster => cluster_store(node),
        Scope::Node => None,
    };
    let started = now();
    let upid = tasks::spawn(
        &node.tasks,
        "backupjob",
        &task_target(id),
        user,
        true,
        move |t| {
            let publish = |state: &str, message: Option<String>| {
                if let Some(st) = &rec {
                    let run = BackupJobNodeRun {
                        node: n.cfg.node.clone(),
                        time: started,
                        upid: t.upid.clone(),
                        state: state.into(),
                        message,
                    };
                    publish_run(st, &c.id, &run);
                }
            };
            publish("running", None);
            let res = run_job(&n, &c, full, &p, t);
            match &res {
                Ok(()) => publish("ok", None),
                Err(e) => publish("error", Some(e.to_string())),
            }
            res
        },
    )?;
    let db = db(node)?;
    match r.scope {
        Scope::Node => db.conn().execute(
            "UPDATE backup_jobs SET runs=runs+1, last_time=?2, last_upid=?3 WHERE id=?1",
            params![id, now(), upid],
        )?,
        Scope::Cluster => db.conn().execute(
            "INSERT INTO backup_job_state(id, schedule, next_run, runs, last_time, last_upid) VALUES (?1, ?2, ?3, 1, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET runs=runs+1, last_time=?4, last_upid=?5",
            params![id, r.config.schedule, r.state.next_run, now(), upid],
        )?,
    };
    Ok(upid)
}

/// The newest backup of each chain (a backup no other has as parent): verifying these re-reads
/// every stored file of every chain once.
pub fn chain_heads(backups: &[keel_api::backup::BackupInfo]) -> Vec<String> {
    backups
        .iter()
        .filter(|b| {
            !backups
                .iter()
                .any(|o| o.parent.as_deref() == Some(b.id.as_str()))
        })
        .map(|b| b.id.clone())
        .collect()
}

/// A verify job's work for one VM: every chain of its backups on `target` re-read and checked
/// (each result recorded, shown by the listing); the broken ones named.
fn verify_vm(node: &Node, target: &str, vmid: u32, task: &TaskHandle) -> Result<()> {
    let heads = chain_heads(&run::list(node, vmid, Some(target))?);
    if heads.is_empty() {
        task.log(format!(
            "VM {vmid}: no backups on {target}, nothing to verify"
        ));
        return Ok(());
    }
    let mut broken = vec![];
    for id in &heads {
        if let Err(e) = run::verify(node, target, vmid, id, task) {
            broken.push(format!("{id}: {e}"));
        }
    }
    if broken.is_empty() {
        task.log(format!("VM {vmid}: {} chain(s) intact", heads.len()));
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "{} of {} chain(s) broken ({})",
        broken.len(),
        heads.len(),
        broken.join("; ")
    )))
}

/// One run: each VM backed up in turn, then pruned (a verify job: its backups re-read and
/// checked); failures collected.
pub fn run_job(
    node: &Node,
    c: &BackupJobConfig,
    full: bool,
    p: &Plan,
    task: &TaskHandle,
) -> Result<()> {
    let vmids = &p.vmids;
    let verify = c.mode == JobMode::Verify;
    if verify {
        task.log(format!(
            "verify job {}: the backups of {} VM(s) on target {}",
            c.id,
            vmids.len(),
            c.target
        ));
    } else {
        task.log(format!(
            "backup job {}: {} VM(s) to target {}{}",
            c.id,
            vmids.len(),
            c.target,
            if full { " (full backups this run)" } else { "" }
        ));
    }
    let mut failed: Vec<String> = Vec::new();
    let mut skipped = 0usize;
    for (i, vmid) in vmids.iter().enumerate() {
        task.log(format!("--- VM {vmid} ({} of {})", i + 1, vmids.len()));
        let r = (|| -> Result<bool> {
            let _hold = task.hold(&vmid.to_string())?;
            if let Some((st, slot)) = &p.claim {
                match claim(st, &c.id, *vmid, *slot, &node.cfg.node, &task.upid)? {
                    Claim::Mine => task.log(format!("VM {vmid}: slot {slot} claimed")),
                    Claim::Taken(o) => {
                        task.log(format!(
                            "VM {vmid}: slot {slot} already backed up by node {} (claim for slot {}); skipped",
                            o.node, o.slot
                        ));
                        return Ok(false);
                    }
                }
            }
            if verify {
                verify_vm(node, &c.target, *vmid, task)?;
                return Ok(true);
            }
            let req = BackupCreate {
                target: c.target.clone(),
                full,
            };
            let path = run::check_create(node, *vmid, &req)?;
            run::create(node, *vmid, &req, &path, task)?;
            if let Some(p) = &c.retention {
                let r = prune::run(node, *vmid, &c.target, p, task)?;
                task.log(format!(
                    "VM {vmid}: {} backup(s) kept, {} removed",
                    r.kept.len(),
                    r.removed.len()
                ));
            }
            Ok(true)
        })();
        match r {
            Ok(true) => task.log(format!("VM {vmid}: ok")),
            Ok(false) => skipped += 1,
            Err(e) => {
                task.log(format!("VM {vmid}: FAILED: {e}"));
                failed.push(format!("VM {vmid}: {e}"));
            }
        }
        task.progress((i + 1) as f64 / vmids.len().max(1) as f64);
    }
    if failed.is_empty() {
        task.log(format!(
            "{} job {}: all {} VM(s) {}{}",
            if verify { "verify" } else { "backup" },
            c.id,
            vmids.len() - skipped,
            if verify { "verified" } else { "backed up" },
            if skipped > 0 {
                format!(", {skipped} done by another node")
            } else {
                String::new()
            }
        ));
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "{} job {}: {} of {} VM(s) failed: {}",
            if verify { "verify" } else { "backup" },
            c.id,
            failed.len(),
            vmids.len(),
            failed.join("; ")
        )))
    }
}

/// Whether a job is due: enabled and its stored next run has come.
pub fn due(enabled: bool, next_run: Option<i64>, now: i64) -> bool {
    enabled && next_run.is_some_and(|n| n <= now)
}

/// One scheduler pass: start every due job, then store its next run from now (a run missed
/// while hostd was down runs once). A job still running is skipped (logged) and tried again
/// at its next slot. In a cluster a due job whose VMs this node does not hold starts no task.
pub fn tick(node: &Arc<Node>) -> Result<()> {
    let t = now();
    let rows = rows(node)?;
    if cluster_store(node).is_some() {
        // the bookkeeping of jobs deleted on another node
        let ids: Vec<String> = rows.iter().map(|r| r.config.id.clone()).collect();
        let db = db(node)?;
        let have: Vec<String> = {
            let c = db.conn();
            let mut st = c.prepare("SELECT id FROM backup_job_state")?;
            let v = st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            v
        };
        for id in have.iter().filter(|i| !ids.contains(i)) {
            db.conn()
                .execute("DELETE FROM backup_job_state WHERE id=?1", params![id])?;
        }
    }
    for r in rows {
        let c = &r.config;
        let id = c.id.clone();
        let sched = match schedule::parse(&c.schedule) {
            Ok(s) => s,
            Err(e) => {
                warn!(job = %id, error = %e, "backup job schedule");
                continue;
            }
        };
        let stale = r.scope == Scope::Cluster && r.state.schedule.as_deref() != Some(&c.schedule);
        let next = r.state.next_run;
        if (next.is_none() || stale) && c.enabled {
            set_next(node, &r, sched.next_after(t, &prune::local_offset))?;
            continue;
        }
        if !due(c.enabled, next, t) {
            continue;
        }
        let held = r.scope == Scope::Node || {
            match plan(node, c, next) {
                Ok(p) => !p.vmids.is_empty(),
                Err(e) => {
                    warn!(job = %id, error = %e, "backup job: which VMs this node holds");
                    true
                }
            }
        };
        if held {
            match start_slot(node, &id, SCHEDULER_USER, next) {
                Ok(upid) => info!(job = %id, %upid, "scheduled backup job started"),
                Err(e) => warn!(job = %id, error = %e, "scheduled backup job not started"),
            }
        }
        let new_next = schedule::next_after_run(&sched, next, t, &prune::local_offset);
        set_next(node, &r, new_next)?;
    }
    Ok(())
}

/// The scheduler loop (a tokio task): a pass at start-up, then every tick.
pub fn spawn_scheduler(node: Arc<Node>) {
    let every = Duration::from_millis(node.cfg.backup_scheduler_tick_ms.max(100));
    tokio::spawn(async move {
        loop {
            let n = node.clone();
            match tokio::task::spawn_blocking(move || tick(&n)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "backup scheduler pass failed"),
                Err(e) => warn!(error = %e, "backup scheduler pass panicked"),
            }
            tokio::time::sleep(every).await;
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn due_only_when_enabled_and_the_time_has_come() {
        assert!(due(true, Some(100), 100));
        assert!(due(true, Some(50), 100));
        assert!(!due(true, Some(101), 100));
        assert!(!due(false, Some(50), 100));
        assert!(!due(true, None, 100));
    }

    /// A run missed while hostd was down (stored next run long past) runs once: the next
    /// run is computed from now, not from the missed slot.
    #[test]
    fn missed_runs_run_once() {
        let t = 1_796_212_800; // 12:00 UTC
        let missed = t - 3 * 86_400;
        assert!(due(true, Some(missed), t));
        let s = schedule::parse("hourly").unwrap();
        let next = s.next_after(t, &|_| 0).unwrap();
        assert_eq!(next, t + 3600);
        assert!(!due(true, Some(next), t));
    }

    fn job(vms: &[u32], all: bool) -> BackupJobConfig {
        serde_json::from_value(serde_json::json!({
            "id": "j1", "vms": vms, "all_vms": all, "target": "t", "schedule": "minutely"
        }))
        .unwrap()
    }

    /// A verify job checks each chain through its newest backup: two chains (a full with two
    /// incrementals, a lone full) give two heads.
    #[test]
    fn a_verify_job_reads_every_chain_once() {
        let b = |id: &str, parent: Option<&str>| -> keel_api::backup::BackupInfo {
            serde_json::from_value(serde_json::json!({
                "id": id, "vmid": 100, "target": "t", "kind": if parent.is_some() { "incremental" } else { "full" },
                "parent": parent, "live": true, "start_time": 1, "end_time": 2, "size": 1,
                "verify_state": "unverified"
            }))
            .unwrap()
        };
        let list = [
            b("a", None),
            b("b", Some("a")),
            b("c", Some("b")),
            b("d", None),
        ];
        assert_eq!(chain_heads(&list), vec!["c".to_string(), "d".to_string()]);
        assert!(chain_heads(&[]).is_empty());
        let mut j = job(&[100], false);
        j.mode = JobMode::Verify;
        assert!(j.validate().is_ok());
        j.full_every = Some(2);
        assert_eq!(
            j.validate().map_err(|e| e.field),
            Err("full_every".to_string())
        );
    }

    /// Which VMs a node backs up for a slot: those it runs; a stopped one only where the
    /// cluster's record does not name another node; never one that is not here.
    #[test]
    fn a_node_backs_up_only_the_vms_it_holds() {
        use VmState::*;
        assert!(holds("n1", Some(Running), Some("n2")));
        assert!(holds("n1", Some(Paused), None));
        assert!(holds("n1", Some(Stopped), Some("n1")));
        assert!(holds("n1", Some(Stopped), None));
        assert!(!holds("n1", Some(Stopped), Some("n2")));
        assert!(!holds("n1", None, Some("n1")));
        let local = [(100, Running), (101, Stopped), (103, Stopped)];
        let recs = [
            (100, "n1".to_string()),
            (101, "n1".to_string()),
            (102, "n2".to_string()),
            (103, "n2".to_string()),
        ];
        // 102 runs on n2; 103's stopped copy here is not the one the cluster names
        assert_eq!(
            vms_held("n1", &job(&[102, 101, 100, 103], false), &local, &recs),
            vec![101, 100]
        );
        assert_eq!(
            vms_held("n1", &job(&[], true), &local, &recs),
            vec![100, 101]
        );
        let n2_local = [(102, Running)];
        assert_eq!(
            vms_held("n2", &job(&[100, 102], false), &n2_local, &recs),
            vec![102]
        );
    }

    /// Claims: the first node to claim a slot backs the VM up; the other skips it, also for
    /// an older slot (a node that was behind); a later slot is claimed again; a claim
    /// written between the read and the write is seen by the compare-and-set.
    #[test]
    fn claims_make_each_slot_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("store.sock");
        let map = crate::db::fake_store::serve(&sock);
        let st = Store::at(&sock);
        assert_eq!(claim(&st, "j1", 100, 600, "n2", "u1").unwrap(), Claim::Mine);
        match claim(&st, "j1", 100, 600, "n1", "u2").unwrap() {
            Claim::Taken(c) => assert_eq!((c.node.as_str(), c.slot), ("n2", 600)),
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            claim(&st, "j1", 100, 540, "n1", "u3").unwrap(),
            Claim::Taken(_)
        ));
        assert_eq!(claim(&st, "j1", 100, 660, "n1", "u4").unwrap(), Claim::Mine);
        assert!(matches!(
            claim(&st, "j1", 100, 660, "n2", "u5").unwrap(),
            Claim::Taken(_)
        ));
        // another VM of the job, another key
        assert_eq!(claim(&st, "j1", 101, 660, "n2", "u6").unwrap(), Claim::Mine);
        let v = map
            .lock()
            .unwrap()
            .get("/backup/claims/j1/100")
            .cloned()
            .unwrap();
        assert_eq!(v.1["node"], "n1");
        // a stale version is refused by the compare-and-set
        let e = st.cas("/backup/claims/j1/100", &serde_json::json!({}), v.0 - 1);
        assert!(matches!(e, Err(StoreError::Conflict { .. })), "{e:?}");
        assert!(st
            .cas("/backup/claims/j1/102", &serde_json::json!({}), 0)
            .is_ok());
        assert!(matches!(
            st.cas("/backup/claims/j1/102", &serde_json::json!({}), 0),
            Err(StoreError::Conflict { .. })
        ));
    }
}
