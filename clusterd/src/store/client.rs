//! The client hostd (and tests) use to talk to the local `keel-clusterd` over its Unix socket.
//! One persistent connection, re-opened on demand; every call is one request line and one
//! response line.
//!
//! A write is acknowledged (`Ok`) only after this node delivered and applied it, i.e. it is on
//! every member of the current view. `Unavailable` after a write was sent means the outcome is
//! unknown: read before retrying a non-idempotent write.

use super::proto::{Reply, Request, Response};
use super::{Entry, Status, StoreError};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

pub struct Client {
    path: PathBuf,
    conn: Mutex<Option<Conn>>,
    timeout: Duration,
}

impl Client {
    /// A client of the daemon listening on `socket` (nothing is opened yet).
    pub fn new(socket: impl AsRef<Path>) -> Client {
        Client {
            path: socket.as_ref().to_path_buf(),
            conn: Mutex::new(None),
            // the daemon answers undecided writes after 30 s
            timeout: Duration::from_secs(40),
        }
    }

    /// The default socket, `/run/keel/clusterd.sock`.
    pub fn local() -> Client {
        Client::new(super::server::DEFAULT_SOCKET)
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> PathBuf {
        self.path.clone()
    }

    fn unavailable(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::unavailable(format!(
            "{what} {}: {e} (is keel-clusterd running?)",
            self.path.display()
        ))
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let s = UnixStream::connect(&self.path)
            .await
            .map_err(|e| self.unavailable("connecting to", e))?;
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
        })
    }

    async fn call(&self, req: &Request) -> Result<Reply, StoreError> {
        let mut line = serde_json::to_vec(req)
            .map_err(|e| StoreError::invalid("request", format!("cannot encode: {e}")))?;
        line.push(b'\n');
        let mut guard = self.conn.lock().await;
        // A kept connection may have been closed by a restarted daemon: a failed send on it
        // means nothing was processed, so one retry on a fresh connection is safe.
        let mut fresh = guard.is_none();
        loop {
            let mut c = match guard.take() {
                Some(c) => c,
                None => {
                    fresh = true;
                    self.connect().await?
                }
            };
            if let Err(e) = c.w.write_all(&line).await {
                if fresh {
                    return Err(self.unavailable("sending to", e));
                }
                continue;
            }
            let mut resp = Vec::new();
            let n = tokio::time::timeout(self.timeout, c.r.read_until(b'\n', &mut resp))
                .await
                .map_err(|_| self.unavailable("no answer in 40 s from", "timeout"))?
                .map_err(|e| self.unavailable("reading from", e))?;
            if n == 0 {
                if !fresh && resp.is_empty() {
                    // closed before it read our request? we cannot know: only reads retry
                    if matches!(
                        req,
                        Request::Get { .. } | Request::List { .. } | Request::Status
                    ) {
                        continue;
                    }
                }
                return Err(
                    self.unavailable("connection closed (outcome unknown) by", "end of stream")
                );
            }
            *guard = Some(c);
            let r: Response = serde_json::from_slice(&resp)
                .map_err(|e| self.unavailable("bad response from", e))?;
            return match r {
                Response::Ok(x) => Ok(x),
                Response::Err(e) => Err(e),
            };
        }
    }

    fn unexpected(&self, r: Reply) -> StoreError {
        self.unavailable("unexpected reply from", format!("{r:?}"))
    }

    pub async fn get(&self, key: &str) -> Result<Entry, StoreError> {
        match self.call(&Request::Get { key: key.into() }).await? {
            Reply::Entry(e) => Ok(e),
            r => Err(self.unexpected(r)),
        }
    }

    /// Entries at or below `prefix` (`/` = all), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        match self
            .call(&Request::List {
                prefix: prefix.into(),
            })
            .await?
        {
            Reply::Entries(e) => Ok(e),
            r => Err(self.unexpected(r)),
        }
    }

    async fn write(&self, req: Request) -> Result<u64, StoreError> {
        match self.call(&req).await? {
            Reply::Written(w) => Ok(w.version),
            r => Err(self.unexpected(r)),
        }
    }

    /// Set `key`; returns its new version.
    pub async fn put(&self, key: &str, value: &serde_json::Value) -> Result<u64, StoreError> {
        self.write(Request::Put {
            key: key.into(),
            value: value.clone(),
        })
        .await
    }

    /// Create `key` only if absent (else `Conflict`); returns its version.
    pub async fn create(&self, key: &str, value: &serde_json::Value) -> Result<u64, StoreError> {
        self.write(Request::Create {
            key: key.into(),
            value: value.clone(),
        })
        .await
    }

    /// Set `key` only if it is at `version` (0 = absent); else `Conflict{current_version}`.
    pub async fn cas(
        &self,
        key: &str,
        value: &serde_json::Value,
        version: u64,
    ) -> Result<u64, StoreError> {
        self.write(Request::Cas {
            key: key.into(),
            value: value.clone(),
            version,
        })
        .await
    }

    /// Delete `key` (only if at `version`, when given); returns the store version.
    pub async fn delete(&self, key: &str, version: Option<u64>) -> Result<u64, StoreError> {
        self.write(Request::Delete {
            key: key.into(),
            version,
        })
        .await
    }

    pub async fn status(&self) -> Result<Status, StoreError> {
        match self.call(&Request::Status).await? {
            Reply::Status(s) => Ok(s),
            r => Err(self.unexpected(r)),
        }
    }
}
