//! Tasks: the record of every mutating operation (id, state, log, progress), persisted in
//! SQLite so they survive a hostd restart. A task still `running` when hostd starts was cut
//! off by a crash and ends as error "interrupted".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keel_api::task::{TaskInfo, TaskLogLine, TaskState};
use rusqlite::{params, OptionalExtension};
use tracing::{info, info_span, warn};

use crate::db::{now, now_ms, Db};
use crate::error::{Error, Result};

pub struct Tasks {
    db: Db,
    node: String,
    seq: AtomicU32,
    /// target → upid of the running exclusive task (one mutating task per VM at a time).
    busy: Mutex<HashMap<String, String>>,
    /// Bumped by every task end and every mutating API request on this node: cached views
    /// (the cluster status) computed before a change are not served after it.
    changes: AtomicU64,
}

/// Build a UPID: `UPID:{node}:{pid:08X}:{seq:08X}:{start:08X}:{kind}:{target}:{user}:`.
pub fn make_upid(
    node: &str,
    pid: u32,
    seq: u32,
    start: i64,
    kind: &str,
    target: &str,
    user: &str,
) -> String {
    format!(
        "UPID:{node}:{pid:08X}:{seq:08X}:{:08X}:{kind}:{target}:{user}:",
        start as u32
    )
}

/// Fields of a UPID: (node, kind, target, user, start).
pub fn parse_upid(upid: &str) -> Option<(String, String, String, String, i64)> {
    let p: Vec<&str> = upid.split(':').collect();
    if p.len() != 9 || p[0] != "UPID" || !p[8].is_empty() {
        return None;
    }
    let start = i64::from_str_radix(p[4], 16).ok()?;
    Some((p[1].into(), p[5].into(), p[6].into(), p[7].into(), start))
}

fn valid_upid_part(s: &str) -> bool {
    !s.is_empty() && !s.contains(':') && !s.contains('/') && !s.contains('\n')
}

impl Tasks {
    /// Open the task store and mark tasks left running by a previous process as interrupted.
    pub fn open(db: Db, node: &str) -> Result<Arc<Tasks>> {
        let n = {
            let c = db.conn();
            let n = c.execute(
                "UPDATE tasks SET state='error', message='interrupted', end_time=?1 WHERE state='running'",
                params![now()],
            )?;
            if n > 0 {
                let mut st = c.prepare(
                    "SELECT upid FROM tasks WHERE message='interrupted' AND end_time=?1",
                )?;
                let ups: Vec<String> = st
                    .query_map(params![now()], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for u in ups {
                    let next: i64 = c.query_row(
                        "SELECT COALESCE(MAX(n)+1,0) FROM task_log WHERE upid=?1",
                        params![u],
                        |r| r.get(0),
                    )?;
                    c.execute(
                        "INSERT INTO task_log(upid,n,t,line) VALUES (?1,?2,?3,?4)",
                        params![
                            u,
                            next,
                            now_ms(),
                            "TASK ERROR: interrupted (hostd stopped while the task ran)"
                        ],
                    )?;
                }
            }
            n
        };
        if n > 0 {
            warn!(count = n, "tasks interrupted by a previous hostd stop");
        }
        Ok(Arc::new(Tasks {
            db,
            node: node.to_string(),
            seq: AtomicU32::new(0),
            busy: Mutex::new(HashMap::new()),
            changes: AtomicU64::new(0),
        }))
    }

    /// Something on this node may have changed (see the `changes` field).
    pub fn note_change(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// How many changes were noted so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Register a new running task. With `exclusive`, refuse while another exclusive task
    /// runs on the same target.
    pub fn begin(
        self: &Arc<Self>,
        kind: &str,
        target: &str,
        user: &str,
        exclusive: bool,
    ) -> Result<TaskHandle> {
        for (what, v) in [("kind", kind), ("target", target), ("user", user)] {
            if !valid_upid_part(v) {
                return Err(Error::Internal(format!(
                    "task {what} {v:?} cannot be part of a UPID"
                )));
            }
        }
        let start = now();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let upid = make_upid(
            &self.node,
            std::process::id(),
            seq,
            start,
            kind,
            target,
            user,
        );
        if exclusive {
            let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(other) = b.get(target) {
                let what = if target.chars().all(|c| c.is_ascii_digit()) {
                    format!("VM {target}")
                } else {
                    target.to_string()
                };
                return Err(Error::Conflict(format!(
                    "{what} is busy with task {other}; wait for it to finish"
                )));
            }
            b.insert(target.to_string(), upid.clone());
        }
        self.db.conn().execute(
            "INSERT INTO tasks(upid,node,kind,target,user,start_time,state) VALUES (?1,?2,?3,?4,?5,?6,'running')",
            params![upid, self.node, kind, target, user, start],
        )?;
        info!(%upid, "task started");
        Ok(TaskHandle {
            tasks: self.clone(),
            upid,
            target: target.to_string(),
            exclusive,
            next_line: Mutex::new(0),
            done: false,
        })
    }

    /// The running exclusive task (or hold) on `target`, if any.
    pub fn busy_with(&self, target: &str) -> Option<String> {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
    }

    pub fn get(&self, upid: &str) -> Result<TaskInfo> {
        self.db
            .conn()
            .query_row(
                "SELECT upid,node,kind,target,user,start_time,end_time,state,message,progress FROM tasks WHERE upid=?1",
                params![upid],
                row_to_info,
            )
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("task {upid} not found")))
    }

    pub fn list(&self, target: Option<&str>, running: bool, limit: u32) -> Result<Vec<TaskInfo>> {
        let c = self.db.conn();
        let mut st = c.prepare(
            "SELECT upid,node,kind,target,user,start_time,end_time,state,message,progress FROM tasks
             WHERE (?1 IS NULL OR target=?1) AND (?2=0 OR state='running')
             ORDER BY start_time DESC, rowid DESC LIMIT ?3",
        )?;
        let rows = st.query_map(
            params![target, running as i32, limit.min(10_000)],
            row_to_info,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn log(&self, upid: &str, start: u64, limit: u32) -> Result<Vec<TaskLogLine>> {
        self.get(upid)?;
        let c = self.db.conn();
        let mut st =
            c.prepare("SELECT n,t,line FROM task_log WHERE upid=?1 AND n>=?2 ORDER BY n LIMIT ?3")?;
        let rows = st.query_map(params![upid, start as i64, limit.min(100_000)], |r| {
            Ok(TaskLogLine {
                n: r.get::<_, i64>(0)? as u64,
                t: r.get(1)?,
                line: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn release(&self, target: &str, upid: &str) {
        let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if b.get(target).is_some_and(|u| u == upid) {
            b.remove(target);
        }
    }
}

fn row_to_info(r: &rusqlite::Row) -> rusqlite::Result<TaskInfo> {
    let state: String = r.get(7)?;
    Ok(TaskInfo {
        upid: r.get(0)?,
        node: r.get(1)?,
        kind: r.get(2)?,
        target: r.get(3)?,
        user: r.get(4)?,
        start_time: r.get(5)?,
        end_time: r.get(6)?,
        state: match state.as_str() {
            "running" => TaskState::Running,
            "ok" => TaskState::Ok,
            _ => TaskState::Error,
        },
        message: r.get(8)?,
        progress: r.get(9)?,
    })
}

/// A running task: write its log and progress, then finish it exactly once.
pub struct TaskHandle {
    tasks: Arc<Tasks>,
    pub upid: String,
    target: String,
    exclusive: bool,
    next_line: Mutex<i64>,
    done: bool,
}

impl TaskHandle {
    pub fn log(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        let mut n = self.next_line.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.tasks.db.conn().execute(
            "INSERT INTO task_log(upid,n,t,line) VALUES (?1,?2,?3,?4)",
            params![self.upid, *n, now_ms(), line],
        );
        match r {
            Ok(_) => *n += 1,
            Err(e) => warn!(upid = %self.upid, error = %e, "cannot write task log"),
        }
        info!(upid = %self.upid, "{line}");
    }

    pub fn progress(&self, p: f64) {
        let p = p.clamp(0.0, 1.0);
        if let Err(e) = self.tasks.db.conn().execute(
            "UPDATE tasks SET progress=?2 WHERE upid=?1",
            params![self.upid, p],
        ) {
            warn!(upid = %self.upid, error = %e, "cannot write task progress");
        }
    }

    /// Hold another target (a VM) for this task, as an exclusive task on it would: a task
    /// working on several VMs in turn (a backup job) holds each while it works on it. 409
    /// while another exclusive task holds it; released when the hold is dropped.
    pub fn hold(&self, target: &str) -> Result<TargetHold> {
        {
            let mut b = self.tasks.busy.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(other) = b.get(target) {
                return Err(Error::Conflict(format!(
                    "{target} is busy with task {other}; wait for it to finish"
                )));
            }
            b.insert(target.to_string(), self.upid.clone());
        }
        Ok(TargetHold {
            tasks: self.tasks.clone(),
            target: target.to_string(),
            upid: self.upid.clone(),
        })
    }

    /// End the task: `Ok` → state ok, `Err` → state error with the message.
    pub fn finish(mut self, r: &Result<()>) {
        self.end(r);
    }

    fn end(&mut self, r: &Result<()>) {
        if self.done {
            return;
        }
        self.done = true;
        let (state, msg) = match r {
            Ok(()) => ("ok", "OK".to_string()),
            Err(e) => ("error", e.to_string()),
        };
        if state == "error" {
            self.log(format!("TASK ERROR: {msg}"));
        } else {
            self.log("TASK OK");
        }
        let res = self.tasks.db.conn().execute(
            "UPDATE tasks SET state=?2, message=?3, end_time=?4, progress=CASE WHEN ?2='ok' THEN 1.0 ELSE progress END WHERE upid=?1",
            params![self.upid, state, msg, now()],
        );
        if let Err(e) = res {
            warn!(upid = %self.upid, error = %e, "cannot finish task");
        }
        if self.exclusive {
            self.tasks.release(&self.target, &self.upid);
        }
        self.tasks.note_change();
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        // A handle dropped without finish (panic in the worker) still ends its task.
        if !self.done {
            self.end(&Err(Error::Internal(
                "task worker ended unexpectedly".into(),
            )));
        }
    }
}

/// A target held by a running task ([`TaskHandle::hold`]), released on drop.
pub struct TargetHold {
    tasks: Arc<Tasks>,
    target: String,
    upid: String,
}

impl Drop for TargetHold {
    fn drop(&mut self) {
        self.tasks.release(&self.target, &self.upid);
        self.tasks.note_change();
    }
}

/// Run `work` as a task on the blocking pool; returns the UPID at once.
pub fn spawn<F>(
    tasks: &Arc<Tasks>,
    kind: &str,
    target: &str,
    user: &str,
    exclusive: bool,
    work: F,
) -> Result<String>
where
    F: FnOnce(&TaskHandle) -> Result<()> + Send + 'static,
{
    let h = tasks.begin(kind, target, user, exclusive)?;
    let upid = h.upid.clone();
    let span = info_span!("task", upid = %upid);
    tokio::task::spawn_blocking(move || {
        let _g = span.enter();
        let r = work(&h);
        h.finish(&r);
    });
    Ok(upid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_round_trip() {
        let u = make_upid("node1", 0x1234, 7, 0x6750_0000, "vmstart", "100", "root");
        assert_eq!(u, "UPID:node1:00001234:00000007:67500000:vmstart:100:root:");
        assert_eq!(
            parse_upid(&u),
            Some((
                "node1".into(),
                "vmstart".into(),
                "100".into(),
                "root".into(),
                0x6750_0000
            ))
        );
        assert_eq!(parse_upid("UPID:x"), None);
    }

    #[test]
    fn exclusive_tasks_conflict_and_interrupted_tasks_recover() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = Db::open(&dir.path().join("t.db"))?;
        let t = Tasks::open(db.clone(), "n1")?;
        let h = t.begin("vmstart", "100", "root", true)?;
        assert!(matches!(
            t.begin("vmstop", "100", "root", true),
            Err(Error::Conflict(_))
        ));
        h.log("hello");
        let upid = h.upid.clone();
        std::mem::forget(h); // simulate a crash: never finished
                             // "restart"
        let t2 = Tasks::open(db, "n1")?;
        let info = t2.get(&upid)?;
        assert_eq!(info.state, TaskState::Error);
        assert_eq!(info.message.as_deref(), Some("interrupted"));
        let log = t2.log(&upid, 0, 100)?;
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].line, "hello");
        Ok(())
    }
}
