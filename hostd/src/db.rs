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
-- access::store: groups, roles, ACL, user and token settings (the config store's keys)
CREATE TABLE IF NOT EXISTS access_kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

#[derive(Clone)]
pub struct Db(Arc<Mutex<Connection>>);

impl Db {
    /// Open (or create) the database. It holds password hashes and session hashes: the file is
    /// created 0600 before SQLite writes a byte, and SQLite gives its -wal and -shm files the
    /// database file's mode. An older, wider file is narrowed.
    pub fn open(path: &Path) -> rusqlite::Result<Db> {
        create_private(path).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot create {} (mode 0600): {e}", path.display())),
            )
        })?;
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

/// Create `path` empty with mode 0600 if it does not exist; narrow it to 0600 if it does.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let m = std::fs::metadata(path)?.permissions().mode();
            if m & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
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

/// A synchronous client of the local `keel-clusterd` (the replicated config store) for code on
/// the blocking pool (auth, VM ids): one request line, one response line on the Unix socket,
/// the protocol of [`clusterd::store::proto`]. Reads are served by this node's replica.
#[derive(Clone, Debug)]
pub struct Store {
    socket: std::path::PathBuf,
}

pub use clusterd::store::{Entry as StoreEntry, StoreError};

impl Store {
    pub fn local() -> Store {
        Store::at(clusterd::store::server::DEFAULT_SOCKET)
    }

    /// A client of the daemon listening on `socket`.
    pub fn at(socket: impl Into<std::path::PathBuf>) -> Store {
        Store {
            socket: socket.into(),
        }
    }

    fn call(
        &self,
        req: &clusterd::store::proto::Request,
    ) -> Result<clusterd::store::proto::Reply, StoreError> {
        use std::io::{BufRead, Write};
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::unavailable(format!(
                "{what} {}: {e} (is keel-clusterd running?)",
                self.socket.display()
            ))
        };
        let mut line = serde_json::to_vec(req)
            .map_err(|e| StoreError::invalid("request", format!("cannot encode: {e}")))?;
        line.push(b'\n');
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket)
            .map_err(|e| unavailable("connecting to", &e))?;
        // the daemon answers undecided writes after 30 s
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(40)));
        s.write_all(&line)
            .map_err(|e| unavailable("sending to", &e))?;
        let mut resp = Vec::new();
        std::io::BufReader::new(&s)
            .read_until(b'\n', &mut resp)
            .map_err(|e| unavailable("reading (outcome unknown) from", &e))?;
        if resp.is_empty() {
            return Err(unavailable(
                "connection closed (outcome unknown) by",
                &"end of stream",
            ));
        }
        match serde_json::from_slice(&resp).map_err(|e| unavailable("bad response from", &e))? {
            clusterd::store::proto::Response::Ok(r) => Ok(r),
            clusterd::store::proto::Response::Err(e) => Err(e),
        }
    }

    fn unexpected(&self, r: clusterd::store::proto::Reply) -> StoreError {
        StoreError::unavailable(format!(
            "unexpected reply from {}: {r:?}",
            self.socket.display()
        ))
    }

    /// The entry at `key`, `None` when absent.
    pub fn get(&self, key: &str) -> Result<Option<StoreEntry>, StoreError> {
        use clusterd::store::proto::{Reply, Request};
        match self.call(&Request::Get { key: key.into() }) {
            Ok(Reply::Entry(e)) => Ok(Some(e)),
            Ok(r) => Err(self.unexpected(r)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Entries at or below `prefix`, sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<StoreEntry>, StoreError> {
        use clusterd::store::proto::{Reply, Request};
        match self.call(&Request::List {
            prefix: prefix.into(),
        })? {
            Reply::Entries(e) => Ok(e),
            r => Err(self.unexpected(r)),
        }
    }

    /// A write with an idempotency key, sent again with the same key while its outcome is
    /// unknown (the store applies a key at most once and answers a repeat with the first
    /// outcome).
    fn write(&self, mut req: clusterd::store::proto::Request) -> Result<u64, StoreError> {
        if req.id().is_none() {
            req.set_id(clusterd::store::client::new_request_id());
        }
        let attempts = clusterd::store::client::WRITE_ATTEMPTS;
        for attempt in 1.. {
            match self.call(&req) {
                Ok(clusterd::store::proto::Reply::Written(w)) => return Ok(w.version),
                Ok(r) => return Err(self.unexpected(r)),
                Err(StoreError::Unavailable { message })
                    if message.contains("outcome unknown") && attempt < attempts =>
                {
                    tracing::warn!(request_id = ?req.id(), attempt, %message, "config store write: outcome unknown; sending it again with the same request id");
                    std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::unavailable("no attempt made"))
    }

    pub fn put(&self, key: &str, value: &serde_json::Value) -> Result<u64, StoreError> {
        self.write(clusterd::store::proto::Request::Put {
            key: key.into(),
            value: value.clone(),
            id: None,
        })
    }

    /// Create only if absent (`Conflict` otherwise).
    pub fn create(&self, key: &str, value: &serde_json::Value) -> Result<u64, StoreError> {
        self.write(clusterd::store::proto::Request::Create {
            key: key.into(),
            value: value.clone(),
            id: None,
        })
    }

    /// Compare-and-set: write only if the key is at `version` (0: only if absent);
    /// `Conflict` (with the current version) otherwise.
    pub fn cas(
        &self,
        key: &str,
        value: &serde_json::Value,
        version: u64,
    ) -> Result<u64, StoreError> {
        self.write(clusterd::store::proto::Request::Cas {
            key: key.into(),
            value: value.clone(),
            version,
            id: None,
        })
    }

    /// Delete `key`; `Ok(false)` when it did not exist.
    pub fn delete(&self, key: &str) -> Result<bool, StoreError> {
        match self.write(clusterd::store::proto::Request::Delete {
            key: key.into(),
            version: None,
            id: None,
        }) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// An in-memory stand-in for keel-clusterd's socket protocol (get/list/put/create/delete), for
/// unit tests of hostd's decisions on a clustered node only; replication is proven in the labs.
#[cfg(test)]
pub(crate) mod fake_store {
    use clusterd::store::proto::{Reply, Request, Response, WriteOk};
    use clusterd::store::{Entry, StoreError};
    use std::collections::BTreeMap;
    use std::io::{BufRead, Write};
    use std::sync::{Arc, Mutex};

    pub type Map = Arc<Mutex<BTreeMap<String, (u64, serde_json::Value)>>>;

    /// Serve the protocol on `socket` in a thread; the map is shared with the test.
    pub fn serve(socket: &std::path::Path) -> Map {
        let map: Map = Arc::default();
        let l = std::os::unix::net::UnixListener::bind(socket).unwrap_or_else(|e| panic!("{e}"));
        let m = map.clone();
        std::thread::spawn(move || {
            let mut version = 0u64;
            for c in l.incoming().flatten() {
                let mut line = Vec::new();
                if std::io::BufReader::new(&c)
                    .read_until(b'\n', &mut line)
                    .is_err()
                {
                    continue;
                }
                let Ok(req) = serde_json::from_slice::<Request>(&line) else {
                    continue;
                };
                let mut map = m.lock().unwrap_or_else(|p| p.into_inner());
                let nf = |k: &str| StoreError::NotFound { key: k.into() };
                let r = match req {
                    Request::Get { key } => map
                        .get(&key)
                        .map(|(v, x)| {
                            Reply::Entry(Entry {
                                key: key.clone(),
                                version: *v,
                                value: x.clone(),
                            })
                        })
                        .ok_or_else(|| nf(&key)),
                    Request::List { prefix } => Ok(Reply::Entries(
                        map.iter()
                            .filter(|(k, _)| *k == &prefix || k.starts_with(&format!("{prefix}/")))
                            .map(|(k, (v, x))| Entry {
                                key: k.clone(),
                                version: *v,
                                value: x.clone(),
                            })
                            .collect(),
                    )),
                    Request::Put { key, value, .. } => {
                        version += 1;
                        map.insert(key, (version, value));
                        Ok(Reply::Written(WriteOk { version }))
                    }
                    Request::Create { key, value, .. } => match map.get(&key) {
                        Some((v, _)) => Err(StoreError::Conflict {
                            current_version: *v,
                            message: format!("{key} exists"),
                        }),
                        None => {
                            version += 1;
                            map.insert(key, (version, value));
                            Ok(Reply::Written(WriteOk { version }))
                        }
                    },
                    Request::Cas {
                        key,
                        value,
                        version: want,
                        ..
                    } => {
                        let cur = map.get(&key).map(|(v, _)| *v).unwrap_or(0);
                        if cur != want {
                            Err(StoreError::Conflict {
                                current_version: cur,
                                message: format!("{key} is at version {cur}, not {want}"),
                            })
                        } else {
                            version += 1;
                            map.insert(key, (version, value));
                            Ok(Reply::Written(WriteOk { version }))
                        }
                    }
                    Request::Delete { key, .. } => match map.remove(&key) {
                        Some(_) => {
                            version += 1;
                            Ok(Reply::Written(WriteOk { version }))
                        }
                        None => Err(nf(&key)),
                    },
                    _ => Err(StoreError::invalid("op", "not in the fake")),
                };
                let resp = match r {
                    Ok(x) => Response::Ok(x),
                    Err(e) => Response::Err(e),
                };
                let mut out = serde_json::to_vec(&resp).unwrap_or_default();
                out.push(b'\n');
                let _ = (&c).write_all(&out);
            }
        });
        map
    }
}
