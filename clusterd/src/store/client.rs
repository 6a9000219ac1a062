//! The client hostd (and tests) use to talk to the local `keel-clusterd` over its Unix socket.
//! One persistent connection, re-opened on demand; every call is one request line and one
//! response line.
//!
//! A write is acknowledged (`Ok`) only after this node delivered and applied it, i.e. it is on
//! every member of the current view.
//!
//! Every write carries an idempotency key (a request id, chosen here unless the caller gives
//! one). When its outcome is unknown — no answer in time, the connection closed after it was
//! sent, the daemon's own "no outcome within 30 s", or a view change dropped it while syncing —
//! the client sends it again with the same id, up to [`WRITE_ATTEMPTS`] times: the store
//! applies an id at most once and answers a repeat with the first outcome. If the outcome is
//! still unknown after that, the error names the request id; [`Client::outcome`] asks how it
//! was decided.

use super::proto::{KeyOutcome, Outcome, Reply, Request, Response};
use super::{Entry, Status, StoreError};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

/// How many times a write whose outcome is unknown is sent (with the same request id).
pub const WRITE_ATTEMPTS: u32 = 4;

/// A fresh request id: 128 random bits, hex.
pub fn new_request_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A failed call: the error, and whether the request may have been processed.
struct CallError {
    err: StoreError,
    maybe_processed: bool,
}

impl From<StoreError> for CallError {
    fn from(err: StoreError) -> Self {
        // an answer from the daemon: it decided (or, for its "no outcome" timeout, see below)
        let maybe_processed = matches!(&err, StoreError::Unavailable { message } if message.contains("outcome unknown"));
        CallError {
            err,
            maybe_processed,
        }
    }
}

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
        self.call_once(req).await.map_err(|e| e.err)
    }

    async fn call_once(&self, req: &Request) -> Result<Reply, CallError> {
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
                    // a partial line is no request: the daemon discards it with the connection
                    return Err(self.unavailable("sending to", e).into());
                }
                continue;
            }
            let sent = |err: StoreError| CallError {
                err,
                maybe_processed: true,
            };
            let mut resp = Vec::new();
            let n = tokio::time::timeout(self.timeout, c.r.read_until(b'\n', &mut resp))
                .await
                .map_err(|_| {
                    sent(self.unavailable(
                        &format!(
                            "no answer in {} s (outcome unknown) from",
                            self.timeout.as_secs()
                        ),
                        "timeout",
                    ))
                })?
                .map_err(|e| sent(self.unavailable("reading (outcome unknown) from", e)))?;
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
                return Err(sent(self.unavailable(
                    "connection closed (outcome unknown) by",
                    "end of stream",
                )));
            }
            *guard = Some(c);
            let r: Response = serde_json::from_slice(&resp)
                .map_err(|e| sent(self.unavailable("bad response from", e)))?;
            return match r {
                Response::Ok(x) => Ok(x),
                Response::Err(e) => Err(e.into()),
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

    /// Send a write (`Put`, `Create`, `Cas`, `Delete`); a request id is chosen unless it has
    /// one. Sent again with the same id while its outcome is unknown (see the module doc).
    pub async fn write(&self, mut req: Request) -> Result<u64, StoreError> {
        if !req.is_write() {
            return Err(StoreError::invalid("request", "not a write"));
        }
        if req.id().is_none() {
            req.set_id(new_request_id());
        }
        let id = req.id().unwrap_or_default().to_string();
        let mut unknown: Option<StoreError> = None;
        for attempt in 1..=WRITE_ATTEMPTS {
            let e = match self.call_once(&req).await {
                Ok(Reply::Written(w)) => return Ok(w.version),
                Ok(r) => return Err(self.unexpected(r)),
                Err(e) => e,
            };
            let retry = e.maybe_processed || matches!(e.err, StoreError::Syncing);
            if e.maybe_processed {
                unknown = Some(e.err.clone());
            }
            if !retry {
                // refused before it was ordered this time; an earlier attempt may still have
                // been applied
                return Err(match unknown {
                    Some(u) => self.outcome_unknown(&id, attempt, &u, Some(&e.err)),
                    None => e.err,
                });
            }
            if attempt < WRITE_ATTEMPTS {
                tracing::warn!(request_id = %id, attempt, error = %e.err, "config store write: outcome unknown or dropped by a view change; sending it again with the same request id");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            } else if unknown.is_none() {
                return Err(e.err);
            }
        }
        let u = unknown.unwrap_or_else(|| StoreError::unavailable("no answer"));
        Err(self.outcome_unknown(&id, WRITE_ATTEMPTS, &u, None))
    }

    fn outcome_unknown(
        &self,
        id: &str,
        attempts: u32,
        unknown: &StoreError,
        last: Option<&StoreError>,
    ) -> StoreError {
        StoreError::unavailable(format!(
            "write {id}: outcome unknown after {attempts} attempt(s) ({unknown}{}); it is applied at most once: ask for the outcome of request id {id}",
            last.map(|l| format!("; last: {l}")).unwrap_or_default()
        ))
    }

    /// How the write with request id `id` was decided on this node's copy: `Some(Ok(version))`
    /// applied, `Some(Err(..))` refused on the data (conflict, not found), `None` not decided
    /// (never ordered, dropped, still in flight, or its record expired).
    pub async fn outcome(&self, id: &str) -> Result<Option<Result<u64, StoreError>>, StoreError> {
        match self.call(&Request::Outcome { id: id.into() }).await? {
            Reply::Outcome(KeyOutcome { outcome, .. }) => Ok(outcome.map(|o| match o {
                Outcome::Ok(w) => Ok(w.version),
                Outcome::Err(e) => Err(e),
            })),
            r => Err(self.unexpected(r)),
        }
    }

    /// Set `key`; returns its new version.
    pub async fn put(&self, key: &str, value: &serde_json::Value) -> Result<u64, StoreError> {
        self.write(Request::Put {
            key: key.into(),
            value: value.clone(),
            id: None,
        })
        .await
    }

    /// [`Client::put`] with the caller's request id (idempotency key).
    pub async fn put_with_id(
        &self,
        key: &str,
        value: &serde_json::Value,
        id: &str,
    ) -> Result<u64, StoreError> {
        self.write(Request::Put {
            key: key.into(),
            value: value.clone(),
            id: Some(id.into()),
        })
        .await
    }

    /// Create `key` only if absent (else `Conflict`); returns its version.
    pub async fn create(&self, key: &str, value: &serde_json::Value) -> Result<u64, StoreError> {
        self.write(Request::Create {
            key: key.into(),
            value: value.clone(),
            id: None,
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
            id: None,
        })
        .await
    }

    /// Delete `key` (only if at `version`, when given); returns the store version.
    pub async fn delete(&self, key: &str, version: Option<u64>) -> Result<u64, StoreError> {
        self.write(Request::Delete {
            key: key.into(),
            version,
            id: None,
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
