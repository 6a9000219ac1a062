//! The daemon: the corosync thread (CPG + quorum dispatch, the [`Replica`]) and the local
//! Unix-socket server (tokio). They talk through one command channel; the replica is touched
//! only by the corosync thread, so reads see exactly the writes this node has applied.

use super::db::Db;
use super::engine::corosync::Corosync;
use super::engine::EngineError;
use super::fencing::CrmPoller;
use super::proto::{KeyOutcome, Reply, Request, Response, WriteOk, WriteOp};
use super::replica::{Fatal, Replica, Token};
use super::{canonical_value, validate_key, validate_prefix, validate_request_id, StoreError};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Default paths and group.
pub const DEFAULT_DB: &str = "/var/lib/keel/cluster/config.db";
pub const DEFAULT_SOCKET: &str = "/run/keel/clusterd.sock";
pub const DEFAULT_GROUP: &str = "keel-config";
/// A write not decided within this time is answered "unavailable: outcome unknown".
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request line accepted (a maximal value escaped as JSON fits comfortably).
pub const MAX_LINE: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ServerOpts {
    pub db: PathBuf,
    pub socket: PathBuf,
    pub group: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "cannot reach corosync after 30 s (is corosync running, is this node in a cluster?): {0}"
    )]
    NoCorosync(EngineError),
    #[error(transparent)]
    Fatal(#[from] Fatal),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.display().to_string();
    move |source| ServerError::Io { what, path, source }
}

enum Cmd {
    Req(Request, oneshot::Sender<Response>),
}

struct Fd(RawFd);
impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A request checked and turned into what the replica takes.
enum Checked {
    Get(String),
    List(String),
    Status,
    Outcome(String),
    Write(WriteOp, Option<String>),
}

fn check(req: Request) -> Result<Checked, StoreError> {
    Ok(match req {
        Request::Get { key } => {
            validate_key("key", &key)?;
            Checked::Get(key)
        }
        Request::List { prefix } => {
            validate_prefix(&prefix)?;
            Checked::List(prefix)
        }
        Request::Status => Checked::Status,
        Request::Outcome { id } => {
            validate_request_id(&id)?;
            Checked::Outcome(id)
        }
        Request::Put { key, value, id } => {
            validate_key("key", &key)?;
            checked_id(&id)?;
            Checked::Write(
                WriteOp::Put {
                    value: canonical_value(&value)?,
                    key,
                },
                id,
            )
        }
        Request::Create { key, value, id } => {
            validate_key("key", &key)?;
            checked_id(&id)?;
            Checked::Write(
                WriteOp::Create {
                    value: canonical_value(&value)?,
                    key,
                },
                id,
            )
        }
        Request::Cas {
            key,
            value,
            version,
            id,
        } => {
            validate_key("key", &key)?;
            checked_id(&id)?;
            Checked::Write(
                WriteOp::Cas {
                    value: canonical_value(&value)?,
                    key,
                    version,
                },
                id,
            )
        }
        Request::Delete { key, version, id } => {
            validate_key("key", &key)?;
            checked_id(&id)?;
            Checked::Write(WriteOp::Delete { key, version }, id)
        }
    })
}

fn checked_id(id: &Option<String>) -> Result<(), StoreError> {
    match id {
        Some(i) => validate_request_id(i),
        None => Ok(()),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn written(r: Result<WriteOk, StoreError>) -> Response {
    match r {
        Ok(w) => Response::Ok(Reply::Written(w)),
        Err(e) => Response::Err(e),
    }
}

/// The corosync thread's body: dispatch, feed the replica, answer commands.
fn corosync_thread(
    mut cs: Corosync,
    mut replica: Replica,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("tokio runtime", Path::new("-")))?;
    rt.block_on(async move {
        let (cfd, qfd) = cs.fds()?;
        // The fds belong to the corosync handles in `cs`, which this block owns and which
        // therefore outlive both registrations (locals drop first). `AsyncFd::register`, the
        // non-deprecated way, is an `unsafe fn` and this workspace denies unsafe code.
        #[allow(deprecated)]
        let cpg_fd = AsyncFd::new(Fd(cfd)).map_err(io("polling cpg fd", Path::new("-")))?;
        #[allow(deprecated)]
        let q_fd = AsyncFd::new(Fd(qfd)).map_err(io("polling quorum fd", Path::new("-")))?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut waiting: HashMap<Token, (oneshot::Sender<Response>, Instant)> = HashMap::new();
        let mut next_token: Token = 1;
        loop {
            tokio::select! {
                g = cpg_fd.readable() => {
                    if let Ok(mut g) = g { g.clear_ready(); }
                }
                g = q_fd.readable() => {
                    if let Ok(mut g) = g { g.clear_ready(); }
                }
                c = rx.recv() => {
                    let Some(Cmd::Req(req, tx)) = c else {
                        cs.leave();
                        return Ok(());
                    };
                    // Ok = answer now; Err(token) = a write in flight
                    let now: Result<Response, Token> = match check(req) {
                        Err(e) => Ok(Response::Err(e)),
                        Ok(Checked::Get(k)) => Ok(match replica.get(&k) {
                            Ok(e) => Response::Ok(Reply::Entry(e)),
                            Err(e) => Response::Err(e),
                        }),
                        Ok(Checked::List(p)) => Ok(Response::Ok(Reply::Entries(replica.list(&p)))),
                        Ok(Checked::Status) => Ok(Response::Ok(Reply::Status(replica.status()))),
                        Ok(Checked::Outcome(id)) => Ok(Response::Ok(Reply::Outcome(KeyOutcome {
                            outcome: replica.outcome(&id),
                            request_id: id,
                        }))),
                        Ok(Checked::Write(op, id)) => {
                            let t = next_token;
                            next_token += 1;
                            match replica.submit_keyed(&mut cs, op, id, unix_now(), t) {
                                Ok(None) => Err(t),
                                // decided before: the first outcome, nothing applied again
                                Ok(Some(r)) => Ok(written(r)),
                                Err(e) => Ok(Response::Err(e)),
                            }
                        }
                    };
                    match now {
                        // the client may have gone; nothing to do then
                        Ok(r) => { let _ = tx.send(r); }
                        Err(t) => { waiting.insert(t, (tx, Instant::now())); }
                    }
                }
                _ = tick.tick() => {
                    replica.tick(&mut cs, Instant::now());
                    let now = Instant::now();
                    let late: Vec<Token> = waiting
                        .iter()
                        .filter(|(_, (_, t0))| now.duration_since(*t0) > WRITE_TIMEOUT)
                        .map(|(t, _)| *t)
                        .collect();
                    for t in late {
                        if let Some((tx, _)) = waiting.remove(&t) {
                            let _ = tx.send(Response::Err(StoreError::unavailable(
                                "no outcome within 30 s: outcome unknown (the write may or may not be applied; retry with the same request id, or ask for its outcome)",
                            )));
                        }
                    }
                }
            }
            let evs = cs.drain()?;
            if !evs.is_empty() {
                // one fsync for everything delivered in this round; replies only after it
                replica.begin_batch()?;
                for ev in evs {
                    replica.handle(&mut cs, ev, Instant::now())?;
                }
                replica.end_batch()?;
            }
            for (t, r) in replica.take_replies() {
                if let Some((tx, _)) = waiting.remove(&t) {
                    let _ = tx.send(written(r));
                }
            }
        }
    })
}

async fn serve_conn(stream: UnixStream, tx: mpsc::UnboundedSender<Cmd>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let resp = if line.len() > MAX_LINE {
            Response::Err(StoreError::invalid(
                "request",
                format!("line is {} bytes; at most {MAX_LINE}", line.len()),
            ))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Err(e) => Response::Err(StoreError::invalid("request", e.to_string())),
                Ok(req) => {
                    let (otx, orx) = oneshot::channel();
                    if tx.send(Cmd::Req(req, otx)).is_err() {
                        Response::Err(StoreError::unavailable("daemon is shutting down"))
                    } else {
                        orx.await.unwrap_or_else(|_| {
                            Response::Err(StoreError::unavailable("daemon is shutting down"))
                        })
                    }
                }
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        if w.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), ServerError> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", p))
}

/// Bind the socket at a temporary name, make it 0600, then move it into place.
fn bind_socket(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating socket directory", dir))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp).map_err(io("binding", &tmp))?;
    set_mode(&tmp, 0o600)?;
    std::fs::rename(&tmp, path).map_err(io("moving socket into place", path))?;
    Ok(l)
}

/// Run the daemon until SIGTERM/SIGINT or a fatal error.
pub fn run(opts: ServerOpts) -> Result<(), ServerError> {
    if let Some(dir) = opts.db.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating database directory", dir))?;
        set_mode(dir, 0o700)?;
    }
    let db = Db::open(&opts.db).map_err(Fatal::from)?;
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", opts.db.display()));
        if p.exists() {
            set_mode(&p, 0o600)?;
        }
    }
    // corosync may still be starting (boot order): retry for a while
    let t0 = Instant::now();
    let cs = loop {
        match Corosync::connect(&opts.group) {
            Ok(c) => break c,
            Err(e) if t0.elapsed() < Duration::from_secs(30) => {
                tracing::warn!("connecting to corosync: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(ServerError::NoCorosync(e)),
        }
    };
    tracing::info!(
        node = cs.me.node,
        pid = cs.me.pid,
        group = %opts.group,
        max_atomic_msg = ?cs.max_atomic_msgsize(),
        "joined CPG group"
    );
    let mut replica = Replica::new(cs.me, db)?;
    replica.set_fencing(Box::new(CrmPoller::default()));
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("corosync".into())
        .spawn(move || {
            let _ = done_tx.send(corosync_thread(cs, replica, rx));
        })
        .map_err(io("spawning the corosync thread", Path::new("-")))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("tokio runtime", Path::new("-")))?;
    let socket = opts.socket.clone();
    let r = rt.block_on(async move {
        let listener = bind_socket(&socket)?;
        tracing::info!(socket = %socket.display(), "serving");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(io("signal handler", Path::new("SIGTERM")))?;
        let mut done_rx = done_rx;
        let r = loop {
            tokio::select! {
                a = listener.accept() => match a {
                    Ok((s, _)) => { tokio::spawn(serve_conn(s, tx.clone())); }
                    Err(e) => tracing::warn!("accept: {e}"),
                },
                _ = term.recv() => { tracing::info!("SIGTERM: leaving"); break Ok(()); }
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: leaving"); break Ok(()); }
                d = &mut done_rx => {
                    break match d {
                        Ok(r) => r,
                        Err(_) => Ok(()),
                    };
                }
            }
        };
        drop(tx); // the corosync thread leaves the group when the channel closes
        let _ = std::fs::remove_file(&socket);
        r
    });
    // give the corosync thread a moment to leave cleanly
    std::thread::sleep(Duration::from_millis(50));
    rt.shutdown_timeout(Duration::from_millis(100));
    r
}
