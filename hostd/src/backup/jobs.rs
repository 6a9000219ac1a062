//! Backup jobs (docs/backups.md, "Backup jobs"): VMs, a target, a schedule, a retention
//! policy. Node configuration in this node's `hostd.db` (table `backup_jobs`), like targets.
//!
//! The scheduler ([`spawn_scheduler`]) wakes every `backup_scheduler_tick_ms` (20 s) and
//! starts each enabled job whose stored next run has come, as ONE task (`backupjob`, target
//! `backupjob-<id>`, exclusive: never two runs of a job at once). The next run is then
//! computed from now, so a run missed while hostd was down runs once at start-up, not once
//! per missed slot. Each run backs the VMs up in turn, holding each VM like its own backup
//! task would, then prunes it by the job's retention; one VM failing does not stop the
//! others, and the task ends failed with a summary naming them.

use std::sync::Arc;
use std::time::Duration;

use keel_api::backup::{BackupCreate, BackupJob, BackupJobConfig, BackupJobRun};
use keel_api::task::TaskState;
use rusqlite::{params, OptionalExtension};
use tracing::{info, warn};

use super::{prune, run, schedule, targets};
use crate::db::now;
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
";

/// The user scheduled runs are started as (their task's user).
pub const SCHEDULER_USER: &str = "root";

fn db(node: &Node) -> Result<crate::db::Db> {
    let db = targets::db(node)?;
    db.conn().execute_batch(SCHEMA)?;
    Ok(db)
}

/// The schedule's next run after `t`, or a 400 on `schedule` saying what is wrong.
pub fn next_run(text: &str, t: i64) -> Result<Option<i64>> {
    let s = schedule::parse(text).map_err(|e| Error::validation("schedule", e))?;
    Ok(s.next_after(t, &prune::local_offset))
}

/// Every check of a job definition before it is stored: syntax, schedule, the target and
/// the listed VMs exist.
pub fn check(node: &Node, c: &BackupJobConfig) -> Result<()> {
    c.validate()?;
    next_run(&c.schedule, now())?;
    targets::get(node, &c.target).map_err(|e| Error::validation("target", e.to_string()))?;
    if !c.vms.is_empty() {
        let have: Vec<u32> = vms::list(node)?.iter().filter_map(|v| v.vmid).collect();
        if let Some(v) = c.vms.iter().find(|v| !have.contains(v)) {
            return Err(Error::validation(
                "vms",
                format!("VM {v} does not exist on node {}", node.cfg.node),
            ));
        }
    }
    Ok(())
}

type Row = (String, Option<i64>, i64, Option<i64>, Option<String>);

fn row(node: &Node, id: &str) -> Result<Row> {
    let r: Option<Row> = db(node)?
        .conn()
        .query_row(
            "SELECT config, next_run, runs, last_time, last_upid FROM backup_jobs WHERE id=?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    r.ok_or_else(|| {
        Error::NotFound(format!(
            "backup job {id:?} does not exist on node {} (`keel backup job list` shows them)",
            node.cfg.node
        ))
    })
}

fn to_job(node: &Node, r: Row) -> Result<BackupJob> {
    let (config, next, _runs, last_time, last_upid) = r;
    let config: BackupJobConfig = serde_json::from_str(&config)
        .map_err(|e| Error::Internal(format!("stored backup job: {e}")))?;
    let last_run = match (last_time, last_upid) {
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
    Ok(BackupJob {
        next_run: if config.enabled { next } else { None },
        config,
        last_run,
    })
}

pub fn list(node: &Node) -> Result<Vec<BackupJob>> {
    let rows: Vec<(String, Row)> = {
        let db = db(node)?;
        let c = db.conn();
        let mut st = c.prepare(
            "SELECT id, config, next_run, runs, last_time, last_upid FROM backup_jobs ORDER BY id",
        )?;
        let v = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        v
    };
    rows.into_iter().map(|(_, r)| to_job(node, r)).collect()
}

pub fn get(node: &Node, id: &str) -> Result<BackupJob> {
    to_job(node, row(node, id)?)
}

fn config_json(c: &BackupJobConfig) -> Result<String> {
    serde_json::to_string(c).map_err(|e| Error::Internal(format!("backup job: {e}")))
}

pub fn create(node: &Node, c: &BackupJobConfig) -> Result<BackupJob> {
    check(node, c)?;
    let next = next_run(&c.schedule, now())?;
    {
        let db = db(node)?;
        let conn = db.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO backup_jobs(id, config, next_run) VALUES (?1, ?2, ?3)",
            params![c.id, config_json(c)?, next],
        )?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "backup job {:?} already exists (`keel backup job set` changes it)",
                c.id
            )));
        }
    }
    get(node, &c.id)
}

/// Replace a job's definition; the next run is computed again.
pub fn update(node: &Node, id: &str, c: &BackupJobConfig) -> Result<BackupJob> {
    if c.id != id {
        return Err(Error::validation(
            "id",
            format!("the body's id {:?} is not the job's id {id:?}", c.id),
        ));
    }
    row(node, id)?;
    check(node, c)?;
    let next = next_run(&c.schedule, now())?;
    db(node)?.conn().execute(
        "UPDATE backup_jobs SET config=?2, next_run=?3 WHERE id=?1",
        params![id, config_json(c)?, next],
    )?;
    get(node, id)
}

pub fn delete(node: &Node, id: &str) -> Result<()> {
    row(node, id)?;
    db(node)?
        .conn()
        .execute("DELETE FROM backup_jobs WHERE id=?1", params![id])?;
    Ok(())
}

fn task_target(id: &str) -> String {
    format!("backupjob-{id}")
}

/// Start a run of a job now as `user` (409 while one runs); counts the run for `full_every`.
pub fn start(node: &Arc<Node>, id: &str, user: &str) -> Result<String> {
    let (config, _, runs, _, _) = row(node, id)?;
    let c: BackupJobConfig = serde_json::from_str(&config)
        .map_err(|e| Error::Internal(format!("stored backup job: {e}")))?;
    let full = c.full_every.is_some_and(|n| runs % i64::from(n) == 0);
    let n = node.clone();
    let upid = tasks::spawn(
        &node.tasks,
        "backupjob",
        &task_target(id),
        user,
        true,
        move |t| run_job(&n, &c, full, t),
    )?;
    db(node)?.conn().execute(
        "UPDATE backup_jobs SET runs=runs+1, last_time=?2, last_upid=?3 WHERE id=?1",
        params![id, now(), upid],
    )?;
    Ok(upid)
}

/// One run: each VM backed up in turn, then pruned; failures collected.
pub fn run_job(node: &Node, c: &BackupJobConfig, full: bool, task: &TaskHandle) -> Result<()> {
    let vmids: Vec<u32> = if c.all_vms {
        let mut v: Vec<u32> = vms::list(node)?.iter().filter_map(|v| v.vmid).collect();
        v.sort();
        v
    } else {
        c.vms.clone()
    };
    task.log(format!(
        "backup job {}: {} VM(s) to target {}{}",
        c.id,
        vmids.len(),
        c.target,
        if full { " (full backups this run)" } else { "" }
    ));
    let mut failed: Vec<String> = Vec::new();
    for (i, vmid) in vmids.iter().enumerate() {
        task.log(format!("--- VM {vmid} ({} of {})", i + 1, vmids.len()));
        let r = (|| -> Result<()> {
            let _hold = task.hold(&vmid.to_string())?;
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
            Ok(())
        })();
        match r {
            Ok(()) => task.log(format!("VM {vmid}: ok")),
            Err(e) => {
                task.log(format!("VM {vmid}: FAILED: {e}"));
                failed.push(format!("VM {vmid}: {e}"));
            }
        }
        task.progress((i + 1) as f64 / vmids.len().max(1) as f64);
    }
    if failed.is_empty() {
        task.log(format!(
            "backup job {}: all {} VM(s) backed up",
            c.id,
            vmids.len()
        ));
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "backup job {}: {} of {} VM(s) failed: {}",
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
/// at its next slot.
pub fn tick(node: &Arc<Node>) -> Result<()> {
    let t = now();
    let rows: Vec<(String, String, Option<i64>)> = {
        let db = db(node)?;
        let c = db.conn();
        let mut st = c.prepare("SELECT id, config, next_run FROM backup_jobs ORDER BY id")?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        v
    };
    for (id, config, next) in rows {
        let Ok(c) = serde_json::from_str::<BackupJobConfig>(&config) else {
            warn!(job = %id, "stored backup job is unreadable; skipped");
            continue;
        };
        let sched = match schedule::parse(&c.schedule) {
            Ok(s) => s,
            Err(e) => {
                warn!(job = %id, error = %e, "backup job schedule");
                continue;
            }
        };
        if next.is_none() && c.enabled {
            db(node)?.conn().execute(
                "UPDATE backup_jobs SET next_run=?2 WHERE id=?1",
                params![id, sched.next_after(t, &prune::local_offset)],
            )?;
            continue;
        }
        if !due(c.enabled, next, t) {
            continue;
        }
        match start(node, &id, SCHEDULER_USER) {
            Ok(upid) => info!(job = %id, %upid, "scheduled backup job started"),
            Err(e) => warn!(job = %id, error = %e, "scheduled backup job not started"),
        }
        let new_next = schedule::next_after_run(&sched, next, t, &prune::local_offset);
        db(node)?.conn().execute(
            "UPDATE backup_jobs SET next_run=?2 WHERE id=?1",
            params![id, new_next],
        )?;
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
}
