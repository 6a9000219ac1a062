//! SQLite persistence of one member's copy: `entries(key, version, value)` and the store
//! version in `meta`. WAL journal, `synchronous=FULL`: a write is on disk before it is
//! acknowledged, so an acknowledged write survives a power cut of every member but one.

use super::proto::{AppliedKey, Outcome, SnapEntry};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("config store database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("config store database {path}: {message}")]
    Io { path: String, message: String },
}

pub struct Db {
    conn: Connection,
    path: String,
    /// Inside [`Db::begin`] … [`Db::commit`]: writes join that one transaction.
    in_batch: bool,
}

/// What a member holds: entries by key (entry version, canonical JSON) and the store version.
pub type Content = BTreeMap<String, (u64, String)>;

/// How many recent versions keep their lineage hash (for fork detection at sync).
pub const HISTORY_KEEP: u64 = 100_000;

impl Db {
    /// Open (creating if needed) the database at `path`; `:memory:` for tests.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let p = path.display().to_string();
        let conn = if p == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(path)
        }
        .map_err(|source| DbError::Sqlite {
            path: p.clone(),
            source,
        })?;
        let db = Db {
            conn,
            path: p,
            in_batch: false,
        };
        db.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL;
                 PRAGMA synchronous=FULL;
                 CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, version INTEGER NOT NULL, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS history (version INTEGER PRIMARY KEY, chain TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS applied (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL, outcome TEXT NOT NULL);",
            )
            .map_err(|e| db.err(e))?;
        Ok(db)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Lineage hash recorded for `version` (None if never recorded or pruned).
    pub fn chain_at(&self, version: u64) -> Result<Option<String>, DbError> {
        if version == 0 {
            return Ok(Some(String::new()));
        }
        self.conn
            .query_row(
                "SELECT chain FROM history WHERE version = ?1",
                params![version],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Load everything: (store version, content).
    pub fn load(&self) -> Result<(u64, Content), DbError> {
        let version: u64 = self
            .conn
            .query_row("SELECT v FROM meta WHERE k = 'version'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or(0);
        let mut st = self
            .conn
            .prepare("SELECT key, version, value FROM entries")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut m = Content::new();
        for row in rows {
            let (k, v, val) = row.map_err(|e| self.err(e))?;
            m.insert(k, (v, val));
        }
        Ok((version, m))
    }

    /// The record of decided request ids, in decision order.
    pub fn load_applied(&self) -> Result<Vec<AppliedKey>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT id, seq, at, outcome FROM applied ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, u64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut v = vec![];
        for row in rows {
            let (id, seq, at, o) = row.map_err(|e| self.err(e))?;
            let o: Outcome = serde_json::from_str(&o).map_err(|e| DbError::Io {
                path: self.path.clone(),
                message: format!("applied request {id}: {e}"),
            })?;
            v.push((id, seq, at, o));
        }
        Ok(v)
    }

    /// Record a decided request id and forget the expired ones (with the write itself, in
    /// the same transaction or group commit).
    pub fn record_applied(&mut self, rec: &AppliedKey, forget: &[String]) -> Result<(), DbError> {
        let o = serde_json::to_string(&rec.3).unwrap_or_default();
        self.write(|c| {
            c.execute(
                "INSERT OR REPLACE INTO applied (id, seq, at, outcome) VALUES (?1, ?2, ?3, ?4)",
                params![rec.0, rec.1, rec.2, o],
            )?;
            let mut del = c.prepare("DELETE FROM applied WHERE id = ?1")?;
            for id in forget {
                del.execute(params![id])?;
            }
            Ok(())
        })
    }

    /// Replace the record of request ids (the end of a snapshot).
    pub fn replace_applied(&mut self, all: &[AppliedKey]) -> Result<(), DbError> {
        self.write(|c| {
            c.execute("DELETE FROM applied", [])?;
            let mut ins =
                c.prepare("INSERT INTO applied (id, seq, at, outcome) VALUES (?1, ?2, ?3, ?4)")?;
            for (id, seq, at, o) in all {
                ins.execute(params![
                    id,
                    seq,
                    at,
                    serde_json::to_string(o).unwrap_or_default()
                ])?;
            }
            Ok(())
        })
    }

    /// Start a group commit: the writes until [`Db::commit`] share one transaction (one
    /// fsync). Nothing written in it may be acknowledged before the commit returns.
    pub fn begin(&mut self) -> Result<(), DbError> {
        if !self.in_batch {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| self.err(e))?;
            self.in_batch = true;
        }
        Ok(())
    }

    /// End a group commit (no-op outside one).
    pub fn commit(&mut self) -> Result<(), DbError> {
        if self.in_batch {
            self.in_batch = false;
            self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Run `f` in a transaction of its own, or in the open group commit.
    fn write<F>(&mut self, f: F) -> Result<(), DbError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<()>,
    {
        if self.in_batch {
            return f(&self.conn).map_err(|e| self.err(e));
        }
        let tx = self.conn.transaction().map_err(|source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        let r = f(&tx).and_then(|()| tx.commit());
        r.map_err(|e| self.err(e))
    }

    /// Persist one applied write: set (`Some`) or delete (`None`) `key`, the store version and
    /// its lineage hash `chain`.
    pub fn apply(
        &mut self,
        version: u64,
        key: &str,
        value: Option<&str>,
        chain: &str,
    ) -> Result<(), DbError> {
        self.write(|c| {
            c.execute(
                "INSERT OR REPLACE INTO history (version, chain) VALUES (?1, ?2)",
                params![version, chain],
            )?;
            if version > HISTORY_KEEP {
                c.execute(
                    "DELETE FROM history WHERE version <= ?1",
                    params![version - HISTORY_KEEP],
                )?;
            }
            match value {
                Some(v) => c.execute(
                    "INSERT INTO entries (key, version, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET version = excluded.version, value = excluded.value",
                    params![key, version, v],
                )?,
                None => c.execute("DELETE FROM entries WHERE key = ?1", params![key])?,
            };
            c.execute(
                "INSERT INTO meta (k, v) VALUES ('version', ?1) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                params![version],
            )?;
            Ok(())
        })
    }

    /// Replace everything (the end of a snapshot) in one transaction; the lineage restarts at
    /// `(version, chain)`.
    pub fn replace(
        &mut self,
        version: u64,
        chain: &str,
        entries: &[SnapEntry],
    ) -> Result<(), DbError> {
        self.write(|c| {
            c.execute("DELETE FROM entries", [])?;
            c.execute("DELETE FROM history", [])?;
            c.execute(
                "INSERT INTO history (version, chain) VALUES (?1, ?2)",
                params![version, chain],
            )?;
            let mut ins =
                c.prepare("INSERT INTO entries (key, version, value) VALUES (?1, ?2, ?3)")?;
            for (k, v, val) in entries {
                ins.execute(params![k, v, val])?;
            }
            c.execute(
                "INSERT INTO meta (k, v) VALUES ('version', ?1) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                params![version],
            )?;
            Ok(())
        })
    }

    /// Write a JSON copy of `content` next to the database (kept when a divergent copy is
    /// replaced). Returns its path.
    pub fn save_copy(&self, tag: &str, version: u64, content: &Content) -> Result<String, DbError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let dest = if self.path == ":memory:" {
            std::env::temp_dir()
                .join(format!(
                    "keel-config-store-{}.{tag}-{version}-{now}.json",
                    std::process::id()
                ))
                .display()
                .to_string()
        } else {
            format!("{}.{tag}-{version}-{now}.json", self.path)
        };
        let body = serde_json::json!({
            "version": version,
            "entries": content.iter().map(|(k, (v, val))| {
                serde_json::json!({"key": k, "version": v, "value": val})
            }).collect::<Vec<_>>(),
        });
        std::fs::write(&dest, body.to_string()).map_err(|e| DbError::Io {
            path: dest.clone(),
            message: e.to_string(),
        })?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_on_disk() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("config.db");
        {
            let mut db = Db::open(&p).expect("open");
            db.apply(1, "/a", Some("1"), "c1").expect("a");
            db.apply(2, "/b", Some("\"x\""), "c2").expect("b");
            db.apply(3, "/a", None, "c3").expect("del");
        }
        let db = Db::open(&p).expect("reopen");
        let (v, c) = db.load().expect("load");
        assert_eq!(v, 3);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("/b"), Some(&(2, "\"x\"".to_string())));
        // a group commit
        let mut db = db;
        db.begin().expect("begin");
        assert_eq!(db.chain_at(2).expect("chain").as_deref(), Some("c2"));
        db.apply(4, "/c", Some("3"), "c4").expect("c");
        db.replace(5, "c5", &[("/d".into(), 5, "4".into())])
            .expect("replace in batch");
        db.commit().expect("commit");
        let (v, c) = Db::open(&p).expect("again").load().expect("load");
        assert_eq!((v, c.len()), (5, 1));
        assert_eq!(db.chain_at(5).expect("chain").as_deref(), Some("c5"));
        assert_eq!(
            db.chain_at(2).expect("chain"),
            None,
            "lineage restarts at a snapshot"
        );
        let mode: String = db
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
    }
}
