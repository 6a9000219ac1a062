//! The node's SQLite database (WAL): tasks, users, sessions, API tokens.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    upid TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    user TEXT NOT NULL,
    start_time INTEGER NOT NULL,
    end_time INTEGER,
    state TEXT NOT NULL,
    message TEXT,
    progress REAL
);
CREATE INDEX IF NOT EXISTS tasks_start ON tasks(start_time);
CREATE TABLE IF NOT EXISTS task_log (
    upid TEXT NOT NULL,
    n INTEGER NOT NULL,
    t INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (upid, n)
);
CREATE TABLE IF NOT EXISTS users (
    userid TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    ticket_hash TEXT PRIMARY KEY,
    userid TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    userid TEXT NOT NULL,
    tokenid TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    comment TEXT,
    created INTEGER NOT NULL,
    PRIMARY KEY (userid, tokenid)
);
";

#[derive(Clone)]
pub struct Db(Arc<Mutex<Connection>>);

impl Db {
    pub fn open(path: &Path) -> rusqlite::Result<Db> {
        let c = Connection::open(path)?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.execute_batch(SCHEMA)?;
        Ok(Db(Arc::new(Mutex::new(c))))
    }

    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
