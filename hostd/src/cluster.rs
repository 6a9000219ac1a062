//! Cluster formation and status in hostd: the `/api/v1/cluster/...` routes, the init/join/
//! remove tasks, join tokens, the member-to-member peer endpoints and the live swap of the API
//! certificate to the CA-signed one. The procedures on local files and daemons are in
//! `clusterd::form`; this module adds HTTP, tasks and authorization.
//!
//! Join, member side (`POST /api/v1/cluster/join`, authenticated by a one-time token or the
//! root password inside the body): add the node to corosync.conf, push the new file to every
//! other member (peer endpoint), write it here, `corosync-cfgtool -R` (all members re-read),
//! sign the joiner's CSR, answer with the material. Only then does the joiner start corosync —
//! the order pcs uses, so the existing membership never sees an unknown node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use clusterd::corosync_conf::{CorosyncConf, LatencyClass};
use clusterd::fence::{FenceAgent, FenceDevice, Secret};
use clusterd::form::{self, ClusterRecord, FormError, MemberRecord, Paths, Progress};
use clusterd::service::{self, Daemon, Direct, ServiceManager, Systemd};
use keel_api::cluster::{
    normalize_fingerprint, ClusterInit, ClusterNode, ClusterStatus, FailedAction, FenceAgentKind,
    FenceDeviceInfo, FenceDeviceSpec, FenceTestResult, JoinAuth, JoinRequest, JoinResponse,
    JoinToken, JoinTokenCreate, LinkStatus, LocalJoin, MemberStatus, NodeRemoveQuery,
};
use keel_api::task::TaskRef;
use rusqlite::params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, JsonBody, Path, Query};
use crate::auth::Principal;
use crate::cluster_net::{self, PEER_HEADER};
use crate::config::{Config, ServiceManagerKind};
use crate::db::{now, Db};
use crate::error::{Error, Result};
use crate::tasks::{self, TaskHandle};
use crate::Node;

type ApiResult<T> = std::result::Result<T, ApiError>;

/// Name of the root-only API token hostd writes for local commands (`keel join`).
pub const LOCAL_TOKEN_ID: &str = "local-root";
pub const LOCAL_TOKEN_FILE: &str = "local-root.token";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cluster_join_tokens (
    hash TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    used INTEGER
);
CREATE TABLE IF NOT EXISTS cluster_fence_tests (
    node TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    action TEXT NOT NULL,
    message TEXT NOT NULL
);
";

/// Cluster state of this hostd.
pub struct ClusterState {
    pub paths: Paths,
    pub svc: Arc<dyn ServiceManager>,
    /// The live TLS config of the API listener (set by main once serving).
    pub tls: OnceLock<axum_server::tls_rustls::RustlsConfig>,
    /// Client certificates the API accepts: signed by the cluster CA (follows init/join).
    pub client_verifier: Arc<crate::tls::ClusterClientVerifier>,
    db: Db,
    clusterd_bin: Option<PathBuf>,
    token_ttl_s: u64,
    api_port: u16,
    listen_ip: std::net::IpAddr,
    fingerprint_file: PathBuf,
    /// One membership change at a time on this node.
    change: Mutex<()>,
}

impl From<FormError> for Error {
    fn from(e: FormError) -> Self {
        match e {
            FormError::Refused(m) => Error::Conflict(m),
            FormError::Invalid { field, msg } => Error::validation(&field, msg),
            FormError::Failed(m) => Error::Internal(m),
        }
    }
}

impl ClusterState {
    pub fn open(cfg: &Config, db: Db) -> Result<ClusterState> {
        db.conn().execute_batch(SCHEMA)?;
        let c = &cfg.cluster;
        let paths = Paths {
            corosync_dir: c.corosync_dir.clone(),
            pacemaker_dir: c.pacemaker_dir.clone(),
            pacemaker_cib_dir: c.pacemaker_cib_dir.clone(),
            cluster_dir: cfg.state_dir.join("cluster"),
            ssh_dir: c.ssh_dir.clone(),
            known_hosts: c.known_hosts.clone(),
            root_ssh_dir: c.root_ssh_dir.clone(),
        };
        let clusterd_bin = c.clusterd_bin.clone().or_else(|| {
            let p = std::env::current_exe()
                .ok()?
                .parent()?
                .join("keel-clusterd");
            p.exists().then_some(p)
        });
        let kind = match cfg.service_manager {
            ServiceManagerKind::Auto if std::path::Path::new("/run/systemd/system").exists() => {
                ServiceManagerKind::Systemd
            }
            ServiceManagerKind::Auto => ServiceManagerKind::Direct,
            k => k,
        };
        let svc: Arc<dyn ServiceManager> = match kind {
            ServiceManagerKind::Systemd => Arc::new(Systemd),
            _ => Arc::new(Direct::new(
                &cfg.state_dir,
                clusterd_bin.clone(),
                vec![
                    "--db".into(),
                    cfg.state_dir
                        .join("cluster/config.db")
                        .display()
                        .to_string(),
                ],
            )),
        };
        let addr: std::net::SocketAddr = cfg
            .listen
            .parse()
            .map_err(|_| Error::Internal("listen address".into()))?;
        let client_verifier = crate::tls::ClusterClientVerifier::new();
        let ca = cfg.state_dir.join("cluster/ca.crt");
        if paths.record().exists() {
            if let Ok(pem) = std::fs::read_to_string(&ca) {
                client_verifier.set_ca(Some(&pem))?;
            }
        }
        Ok(ClusterState {
            paths,
            svc,
            tls: OnceLock::new(),
            client_verifier,
            db,
            clusterd_bin,
            token_ttl_s: c.join_token_ttl_s,
            api_port: addr.port(),
            listen_ip: addr.ip(),
            fingerprint_file: cfg.state_dir.join("hostd.fingerprint"),
            change: Mutex::new(()),
        })
    }

    pub fn record(&self) -> Result<Option<ClusterRecord>> {
        Ok(ClusterRecord::load(&self.paths)?)
    }

    /// The CA-signed API certificate and key, when this node is clustered.
    pub fn node_identity(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let c = std::fs::read(self.paths.node_cert()).ok()?;
        let k = std::fs::read(self.paths.node_key()).ok()?;
        self.paths.record().exists().then_some((c, k))
    }

    /// Serve `cert`/`key` from now on (new connections) and record the fingerprint.
    fn swap_cert(&self, cert: &form::NodeCert) -> Result<()> {
        std::fs::write(&self.fingerprint_file, format!("{}\n", cert.fingerprint))?;
        // members' client certificates are checked against the new CA from now on
        self.client_verifier.set_ca(Some(&self.ca_pem()?))?;
        if let Some(tls) = self.tls.get() {
            tls.reload_from_config(crate::tls::server_config(
                cert.cert_pem.as_bytes(),
                cert.key_pem.as_bytes(),
                self.client_verifier.clone(),
            )?);
        }
        Ok(())
    }

    /// A client for other members: trusts only the cluster CA and presents this node's
    /// CA-signed certificate as its client certificate.
    pub fn member_client(&self) -> Result<reqwest::Client> {
        cluster_net::ca_client_as(&self.ca_pem()?, self.node_identity())
    }

    /// SHA-256 of the certificate the API serves now: the CA-signed node certificate of a
    /// member (what a live swap installed), else the one recorded at start.
    pub fn api_fingerprint(&self) -> Result<String> {
        if let Some((cert, _)) = self.node_identity() {
            return clusterd::ca::fingerprint_of_pem(&String::from_utf8_lossy(&cert))
                .map_err(|e| Error::Internal(format!("the node certificate: {e}")));
        }
        let s = std::fs::read_to_string(&self.fingerprint_file)
            .map_err(|e| Error::Internal(format!("{}: {e}", self.fingerprint_file.display())))?;
        Ok(s.trim().to_string())
    }

    fn authkey(&self) -> Result<Vec<u8>> {
        let p = self.paths.corosync_authkey();
        std::fs::read(&p).map_err(|e| Error::Internal(format!("{}: {e}", p.display())))
    }

    fn ca_pem(&self) -> Result<String> {
        let p = self.paths.cluster_dir.join("ca.crt");
        std::fs::read_to_string(&p).map_err(|e| Error::Internal(format!("{}: {e}", p.display())))
    }
}

/// Write `<state>/local-root.token` (0600): a fresh API token of root for local commands.
pub fn write_local_token(node: &Node) -> Result<PathBuf> {
    let _ = node.auth.delete_token("root", LOCAL_TOKEN_ID);
    let t = node.auth.create_token(
        "root",
        LOCAL_TOKEN_ID,
        Some("local commands (keel join); rewritten at every start"),
    )?;
    let p = node.cfg.state_dir.join(LOCAL_TOKEN_FILE);
    clusterd::ca::write_file_mode(
        &p,
        format!("{}={}\n", t.full_tokenid, t.secret).as_bytes(),
        0o600,
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(p)
}

/// After a restart: a clustered node starts its daemons again — with either service manager:
/// init and join only `systemctl start` the units (the images leave them disabled), so after a
/// reboot (a fenced node coming back) nothing else would start corosync. A node coming back
/// alone cannot fence its peer: two_node implies wait_for_all, so it stays inquorate until it
/// has seen the peer.
pub fn boot(node: &Node) {
    let cs = &node.cluster;
    if !matches!(cs.record(), Ok(Some(_))) {
        return;
    }
    let mut ds = vec![Daemon::Corosync, Daemon::Pacemaker];
    if cs.clusterd_bin.is_some() {
        ds.push(Daemon::Clusterd);
    }
    for d in ds {
        if let Err(e) = cs.svc.start(d) {
            tracing::warn!(daemon = d.name(), error = %e, "cannot start cluster daemon");
        }
    }
}

struct TaskProgress<'a>(&'a TaskHandle);
impl Progress for TaskProgress<'_> {
    fn log(&self, line: &str) {
        self.0.log(line);
    }
    fn progress(&self, p: f64) {
        self.0.progress(p);
    }
}

/// Formerly "root only": the privilege (Cluster.Modify on /cluster) is now checked by the
/// access middleware from its route table (crate::access::rules), for every caller alike.
fn is_root(_p: &Principal) -> Result<()> {
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(Error::Internal(format!("worker failed: {e}"))))?
        .map_err(ApiError)
}

fn accepted(upid: String) -> Response {
    (StatusCode::ACCEPTED, Json(TaskRef { upid })).into_response()
}

/// Routes that need a logged-in user.
pub fn protected_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/cluster/init", post(init))
        .route("/api/v1/cluster/join-token", post(join_token))
        .route("/api/v1/cluster/local-join", post(local_join))
        .route("/api/v1/cluster/status", get(status))
        .route("/api/v1/cluster/nodes", get(nodes))
        .route("/api/v1/cluster/nodes/{name}", delete(remove_node))
        .route(
            "/api/v1/cluster/fencing",
            get(list_fencing).post(put_fencing),
        )
        .route("/api/v1/cluster/fencing/{node}", delete(delete_fencing))
        .route("/api/v1/cluster/fencing/{node}/test", post(test_fencing))
        .route("/api/v1/cluster/resources", get(resources))
        .route("/api/v1/cluster/config", get(config_list))
        .route(
            "/api/v1/cluster/config/{*key}",
            get(config_get).put(config_put).delete(config_delete),
        )
}

/// Routes authenticated by their own means (join credentials in the body; peer HMAC).
pub fn public_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/cluster/join", post(join))
        .route("/api/v1/cluster/peer/update", post(peer_update))
        .route("/api/v1/cluster/peer/leave", post(peer_leave))
}

// ------------------------------------------------------------------ init

/// The local source address used to reach `dst` (`ip route get`).
fn source_addr_for(dst: &str) -> Option<String> {
    let (ok, out, _) = service::run(&["ip", "-o", "route", "get", dst]).ok()?;
    if !ok {
        return None;
    }
    let mut it = out.split_whitespace();
    while let Some(w) = it.next() {
        if w == "src" {
            return it.next().map(str::to_string);
        }
    }
    None
}

fn default_link0(cs: &ClusterState) -> Result<String> {
    if !cs.listen_ip.is_unspecified() && !cs.listen_ip.is_loopback() {
        return Ok(cs.listen_ip.to_string());
    }
    for probe in ["192.0.2.1", "2001:db8::1"] {
        if let Some(a) = source_addr_for(probe) {
            return Ok(a);
        }
    }
    Err(Error::validation(
        "link0",
        "cannot tell this node's management address (no default route and the API listens on a wildcard address): give link0",
    ))
}

/// Link latency class from the RTT to ourselves is meaningless; assume a LAN unless the link is
/// on a loopback-like lab network (ULA/private with no default route) — the operator can always
/// override `token_ms`.
fn latency_class() -> LatencyClass {
    if source_addr_for("192.0.2.1").is_none() && source_addr_for("2001:db8::1").is_none() {
        LatencyClass::Local
    } else {
        LatencyClass::Lan
    }
}

#[utoipa::path(post, path = "/api/v1/cluster/init", tag = "cluster", request_body = ClusterInit,
    responses((status = 202, body = TaskRef), (status = 400, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
async fn init(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<ClusterInit>,
) -> ApiResult<Response> {
    is_root(&p)?;
    req.validate()?;
    let upid = blocking(move || {
        let cs = &node.cluster;
        form::check_unclustered(&cs.paths)?;
        let link0 = match &req.link0 {
            Some(a) => a.clone(),
            None => default_link0(cs)?,
        };
        let mut links = vec![link0.clone()];
        links.extend(req.link1.clone());
        let plan = form::InitPlan {
            cluster_name: req.name.clone(),
            node: node.cfg.node.clone(),
            links,
            token_ms: req.token_ms,
            latency: latency_class(),
            api: form::api_addr(&link0, cs.api_port),
            dns: vec!["localhost".into()],
            extra_ips: vec![
                cs.listen_ip,
                "127.0.0.1"
                    .parse()
                    .map_err(|_| Error::Internal("ip".into()))?,
            ],
            clusterd_installed: cs.clusterd_bin.is_some(),
        };
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "clusterinit",
            "cluster",
            &p.user,
            true,
            move |t| {
                let cs = &n.cluster;
                let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
                let cert = form::init(
                    &cs.paths,
                    clusterd_svc(cs).as_ref(),
                    &plan,
                    &TaskProgress(t),
                )?;
                pin_self(&n, &plan.links)?;
                cs.swap_cert(&cert)?;
                t.log(format!("API certificate fingerprint: {}", cert.fingerprint));
                copy_access_to_store(&n, t)?;
                Ok(())
            },
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// The service manager, wrapped so a failing keel-clusterd start is a warning: the store
/// daemon is not what membership depends on.
fn clusterd_svc(cs: &ClusterState) -> Arc<dyn ServiceManager> {
    struct Lenient(Arc<dyn ServiceManager>);
    impl ServiceManager for Lenient {
        fn start(&self, d: Daemon) -> std::result::Result<(), service::ServiceError> {
            match (d, self.0.start(d)) {
                (Daemon::Clusterd, Err(e)) => {
                    tracing::warn!(error = %e, "keel-clusterd did not start; the config store is unavailable");
                    Ok(())
                }
                (_, r) => r,
            }
        }
        fn stop(&self, d: Daemon) -> std::result::Result<(), service::ServiceError> {
            self.0.stop(d)
        }
        fn is_active(&self, d: Daemon) -> std::result::Result<bool, service::ServiceError> {
            self.0.is_active(d)
        }
        fn kind(&self) -> &'static str {
            self.0.kind()
        }
    }
    Arc::new(Lenient(cs.svc.clone()))
}

/// Pin this node's own host keys in known_hosts (so the file handed to joiners lists it) and
/// make sure root has a migration key.
fn pin_self(node: &Node, links: &[String]) -> Result<()> {
    let cs = &node.cluster;
    let keys = form::ssh_host_keys(&cs.paths);
    let lines = form::known_hosts_lines(&node.cfg.node, links, &keys);
    form::pin_known_hosts(&cs.paths, &node.cfg.node, links, &lines)?;
    form::ensure_root_key(&cs.paths)?;
    Ok(())
}

// ------------------------------------------------------------------ join tokens

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[utoipa::path(post, path = "/api/v1/cluster/join-token", tag = "cluster", request_body = JoinTokenCreate,
    responses((status = 201, body = JoinToken), (status = 409, body = keel_api::ErrorBody)))]
async fn join_token(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<JoinTokenCreate>,
) -> ApiResult<Response> {
    is_root(&p)?;
    req.validate()?;
    let t = blocking(move || {
        let cs = &node.cluster;
        let Some(rec) = cs.record()? else {
            return Err(Error::Conflict(
                "this node is not in a cluster: run `keel cluster init` first".into(),
            ));
        };
        let address = rec
            .members
            .iter()
            .find(|m| m.name == rec.node)
            .map(|m| m.api.clone());
        let fingerprint = Some(cs.api_fingerprint()?);
        let token = crate::auth::generate_password() + &crate::auth::generate_password();
        let ttl = req.ttl_s.unwrap_or(cs.token_ttl_s);
        let expires_at = now() + ttl as i64;
        cs.db.conn().execute(
            "INSERT INTO cluster_join_tokens(hash,created,expires,used) VALUES (?1,?2,?3,NULL)",
            params![sha256_hex(&token), now(), expires_at],
        )?;
        Ok(JoinToken {
            token,
            expires_at,
            fingerprint,
            address,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// Redeem a join token (exactly once).
fn consume_token(cs: &ClusterState, token: &str, by: &str) -> Result<()> {
    let h = sha256_hex(token);
    let c = cs.db.conn();
    let row: Option<(i64, Option<i64>)> = c
        .query_row(
            "SELECT expires, used FROM cluster_join_tokens WHERE hash=?1",
            params![h],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    match row {
        None => Err(Error::Unauthorized("invalid join token".into())),
        Some((_, Some(_))) => Err(Error::Unauthorized(
            "this join token was already used: create a new one with `keel cluster join-token`"
                .into(),
        )),
        Some((exp, None)) if exp <= now() => Err(Error::Unauthorized(format!(
            "this join token expired {}s ago: create a new one with `keel cluster join-token`",
            now() - exp
        ))),
        Some(_) => {
            let n = c.execute(
                "UPDATE cluster_join_tokens SET used=?2 WHERE hash=?1 AND used IS NULL",
                params![h, now()],
            )?;
            if n != 1 {
                return Err(Error::Unauthorized(
                    "this join token was already used".into(),
                ));
            }
            tracing::info!(joiner = by, "join token redeemed");
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ join: member side

/// What a member pushes to the other members on a membership change.
#[derive(Debug, Serialize, Deserialize)]
struct PeerUpdate {
    corosync_conf: String,
    members: Vec<MemberRecord>,
    /// known_hosts entries to (re)pin: name, addresses, lines.
    #[serde(default)]
    pin: Option<(String, Vec<String>, Vec<String>)>,
    /// known_hosts entries to drop: name, addresses.
    #[serde(default)]
    unpin: Option<(String, Vec<String>)>,
    #[serde(default)]
    authorized_key: Option<String>,
}

fn apply_peer_update(cs: &ClusterState, u: &PeerUpdate) -> Result<()> {
    let conf =
        CorosyncConf::parse(&u.corosync_conf).map_err(|e| Error::BadRequest(e.to_string()))?;
    let mut rec = cs
        .record()?
        .ok_or_else(|| Error::Conflict("not a cluster member".into()))?;
    if conf.cluster_name != rec.name {
        return Err(Error::Conflict(format!(
            "update for cluster {:?}, this node is in {:?}",
            conf.cluster_name, rec.name
        )));
    }
    form::write_corosync_conf(&cs.paths, &conf)?;
    rec.members = u.members.clone();
    rec.save(&cs.paths)?;
    if let Some((name, addrs, lines)) = &u.pin {
        form::pin_known_hosts(&cs.paths, name, addrs, lines)?;
    }
    if let Some((name, addrs)) = &u.unpin {
        form::unpin_known_hosts(&cs.paths, name, addrs)?;
    }
    if let Some(k) = &u.authorized_key {
        form::append_unique_line(&cs.paths.root_ssh_dir.join("authorized_keys"), k, 0o600)?;
    }
    Ok(())
}

/// Push `u` to every member but this node (member → member, CA-verified, HMAC-signed).
fn push_to_members(node: &Node, rec: &ClusterRecord, u: &PeerUpdate) -> Result<Vec<String>> {
    let cs = &node.cluster;
    let key = cs.authkey()?;
    let client = cs.member_client()?;
    let mut done = vec![];
    let rt = tokio::runtime::Handle::current();
    for m in rec.members.iter().filter(|m| m.name != node.cfg.node) {
        rt.block_on(cluster_net::peer_post(
            &client,
            &key,
            &node.cfg.node,
            &m.api,
            "/api/v1/cluster/peer/update",
            u,
        ))
        .map_err(|e| Error::Internal(format!("updating member {}: {e}", m.name)))?;
        done.push(m.name.clone());
    }
    Ok(done)
}

fn ssh_key_line(key: &str, node: &str) -> String {
    let mut it = key.split_whitespace();
    match (it.next(), it.next()) {
        (Some(t), Some(b)) => format!("{t} {b} keel:{node}"),
        _ => key.to_string(),
    }
}

fn member_join(node: &Node, req: JoinRequest) -> Result<JoinResponse> {
    use clusterd::form::read_b64;
    req.validate()?;
    let cs = &node.cluster;
    let Some(rec) = cs.record()? else {
        return Err(Error::Conflict(format!(
            "{} is not in a cluster: run `keel cluster init` on it first",
            node.cfg.node
        )));
    };
    match &req.auth {
        JoinAuth::Token(t) => consume_token(cs, t, &req.node)?,
        JoinAuth::Password(pw) => {
            let s = node
                .auth
                .login("root", pw)
                .map_err(|_| Error::Unauthorized("wrong root password".into()))?;
            let _ = node.auth.logout(&s.ticket);
        }
    }
    let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
    match form::quorum() {
        Some(q) if q.quorate => {}
        _ => {
            return Err(Error::Conflict(format!(
                "{} is not quorate: nodes can join only a quorate cluster",
                node.cfg.node
            )))
        }
    }
    let (conf, nodeid) = form::plan_add(&cs.paths, &req.node, &req.links)?;
    let (cert_pem, ca) = form::sign_joiner(&cs.paths, &req.node, &req.links, &req.csr_pem)?;
    let joiner_api = form::api_addr(&req.links[0], req.api_port);
    let mut members = rec.members.clone();
    members.push(MemberRecord {
        name: req.node.clone(),
        nodeid,
        api: joiner_api,
    });
    let kh = form::known_hosts_lines(&req.node, &req.links, &req.ssh_host_keys);
    let update = PeerUpdate {
        corosync_conf: conf.render().map_err(|e| Error::Internal(e.to_string()))?,
        members: members.clone(),
        pin: Some((req.node.clone(), req.links.clone(), kh)),
        unpin: None,
        authorized_key: req
            .root_ssh_key
            .as_ref()
            .map(|k| ssh_key_line(k, &req.node)),
    };
    tracing::info!(joiner = %req.node, nodeid, "adding node: updating members");
    let old = form::read_corosync_conf(&cs.paths)?;
    if let Err(e) = push_to_members(node, &rec, &update) {
        // put back what the others got
        let back = PeerUpdate {
            corosync_conf: old.render().map_err(|e| Error::Internal(e.to_string()))?,
            members: rec.members.clone(),
            pin: None,
            unpin: Some((req.node.clone(), req.links.clone())),
            authorized_key: None,
        };
        let _ = push_to_members(node, &rec, &back);
        return Err(e);
    }
    apply_peer_update(cs, &update)?;
    service::reload_corosync().map_err(|e| Error::Internal(e.to_string()))?;
    tracing::info!(joiner = %req.node, "corosync.conf reloaded on every member");
    if let Err(e) = form::apply_properties_for(&conf) {
        tracing::warn!(error = %e, "updating cluster properties for the new size");
    }
    let own_key = form::ensure_root_key(&cs.paths)?;
    let mut authorized = vec![ssh_key_line(&own_key, &node.cfg.node)];
    let ak =
        std::fs::read_to_string(cs.paths.root_ssh_dir.join("authorized_keys")).unwrap_or_default();
    authorized.extend(
        ak.lines()
            .filter(|l| l.contains(" keel:") && !l.ends_with(&format!(" keel:{}", req.node)))
            .map(str::to_string),
    );
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let known_hosts: Vec<String> = std::fs::read_to_string(&cs.paths.known_hosts)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|h| h.split(',').any(|x| names.contains(&x)))
        })
        .map(str::to_string)
        .collect();
    Ok(JoinResponse {
        cluster_name: rec.name.clone(),
        nodeid,
        corosync_conf: update.corosync_conf.clone(),
        corosync_authkey_b64: read_b64(&cs.paths.corosync_authkey())?,
        pacemaker_authkey_b64: read_b64(&cs.paths.pacemaker_authkey())?,
        cert_pem,
        ca_pem: ca.cert_pem().to_string(),
        ca_key_pem: ca.key_pem(),
        known_hosts,
        authorized_keys: authorized,
        members: members
            .iter()
            .map(|m| ClusterNode {
                name: m.name.clone(),
                nodeid: m.nodeid,
                links: conf
                    .node(&m.name)
                    .map(|n| n.addrs.clone())
                    .unwrap_or_default(),
                api: m.api.clone(),
            })
            .collect(),
    })
}

#[utoipa::path(post, path = "/api/v1/cluster/join", tag = "cluster", request_body = JoinRequest,
    responses((status = 200, body = JoinResponse), (status = 401, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
async fn join(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<JoinRequest>,
) -> ApiResult<Json<JoinResponse>> {
    Ok(Json(blocking(move || member_join(&node, req)).await?))
}

/// A member's call: HMAC keyed by the cluster key, and (mutual TLS) the connection's
/// CA-verified client certificate issued for the signing member.
fn check_peer(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: Option<Extension<crate::tls::PeerCert>>,
    path: &str,
    body: &[u8],
) -> Result<String> {
    let h = headers
        .get(PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Unauthorized(format!("{PEER_HEADER} header required")))?;
    let key = node
        .cluster
        .authkey()
        .map_err(|_| Error::Conflict("this node is not in a cluster".into()))?;
    let from = cluster_net::check_peer_header(&key, h, now(), "POST", path, body)?;
    peer_cert
        .map(|e| e.0)
        .unwrap_or_default()
        .check_node(&from)?;
    Ok(from)
}

async fn peer_update(
    State(node): State<Arc<Node>>,
    peer_cert: Option<Extension<crate::tls::PeerCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    blocking(move || {
        let from = check_peer(
            &node,
            &headers,
            peer_cert,
            "/api/v1/cluster/peer/update",
            &body,
        )?;
        let u: PeerUpdate = serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("peer update: {e}")))?;
        apply_peer_update(&node.cluster, &u)?;
        tracing::info!(from = %from, "cluster membership files updated by a peer");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn peer_leave(
    State(node): State<Arc<Node>>,
    peer_cert: Option<Extension<crate::tls::PeerCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    blocking(move || {
        let from = check_peer(
            &node,
            &headers,
            peer_cert,
            "/api/v1/cluster/peer/leave",
            &body,
        )?;
        tracing::warn!(by = %from, "this node is being removed from the cluster: stopping the stack");
        form::leave(&node.cluster.paths, node.cluster.svc.as_ref())?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ join: joiner side

fn joiner_checks(node: &Node) -> Result<()> {
    form::check_unclustered(&node.cluster.paths)?;
    let doms = node.hv.list_domains()?;
    if !doms.is_empty() {
        let names: Vec<&str> = doms.iter().map(|d| d.name.as_str()).take(5).collect();
        return Err(Error::Conflict(format!(
            "this node holds {} VM(s) ({}): a joining node must be empty (its VM ids could collide with the cluster's); move or delete them first",
            doms.len(),
            names.join(", ")
        )));
    }
    Ok(())
}

fn host_of(address: &str) -> String {
    // [v6]:port, v6, host:port, host
    if let Some(r) = address.strip_prefix('[') {
        return r.split(']').next().unwrap_or(r).to_string();
    }
    if address.parse::<std::net::IpAddr>().is_ok() {
        return address.to_string();
    }
    address
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(address)
        .to_string()
}

fn with_port(address: &str) -> String {
    let has_port = if address.starts_with('[') {
        address.contains("]:")
    } else {
        address.parse::<std::net::IpAddr>().is_err() && address.contains(':')
    };
    if has_port {
        address.to_string()
    } else {
        form::api_addr(&host_of(address), keel_api::cluster::DEFAULT_API_PORT)
    }
}

fn joiner_join(node: &Node, req: &LocalJoin, t: &TaskHandle) -> Result<()> {
    let cs = &node.cluster;
    let fp = normalize_fingerprint(&req.fingerprint)
        .ok_or_else(|| Error::validation("fingerprint", "not a SHA-256 fingerprint"))?;
    let addr = with_port(&req.address);
    let host = host_of(&req.address);
    t.log(format!("contacting {addr}, pinned to {fp}"));
    let (client, seen) = cluster_net::pinned_client(&fp)?;
    let rt = tokio::runtime::Handle::current();
    // 1. the pin is checked on a request that carries no secret
    let health = rt.block_on(client.get(format!("https://{addr}/api/v1/health")).send());
    match health {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            return Err(Error::Internal(format!(
                "{addr} answered {} to /api/v1/health: is it a Keel node?",
                r.status()
            )))
        }
        Err(e) => {
            let presented = seen.lock().ok().and_then(|s| s.clone());
            return Err(match presented {
                Some(p) if p != fp => Error::Conflict(format!(
                    "wrong fingerprint: {addr} presented certificate {p}, expected {fp}; nothing was sent. Check the fingerprint printed by `keel cluster init` (or in the member's hostd.fingerprint)"
                )),
                _ => Error::Internal(format!(
                    "cannot reach {addr}: {}",
                    cluster_net::error_chain(&e)
                )),
            });
        }
    }
    t.log("member certificate matches the fingerprint");
    let link0 = match &req.link0 {
        Some(a) => a.clone(),
        None => source_addr_for(&host).ok_or_else(|| {
            Error::validation(
                "link0",
                format!("cannot tell the local address that reaches {host}: give link0"),
            )
        })?,
    };
    let mut links = vec![link0.clone()];
    links.extend(req.link1.clone());
    let id = clusterd::ca::NodeIdentity {
        name: node.cfg.node.clone(),
        dns: vec!["localhost".into()],
        addrs: links.iter().filter_map(|a| a.parse().ok()).collect(),
    };
    let (csr_pem, key_pem) =
        clusterd::ca::node_csr(&id).map_err(|e| Error::Internal(e.to_string()))?;
    let root_key = form::ensure_root_key(&cs.paths)?;
    let jr = JoinRequest {
        auth: req.auth.clone(),
        node: node.cfg.node.clone(),
        links: links.clone(),
        ssh_host_keys: form::ssh_host_keys(&cs.paths),
        root_ssh_key: Some(root_key),
        csr_pem,
        api_port: cs.api_port,
    };
    jr.validate()?;
    t.log(format!(
        "asking {addr} to add {} with links {links:?}",
        jr.node
    ));
    t.progress(0.1);
    let resp = rt.block_on(async {
        let r = client
            .post(format!("https://{addr}/api/v1/cluster/join"))
            .json(&jr)
            .send()
            .await
            .map_err(|e| {
                Error::Internal(format!(
                    "join request to {addr}: {}",
                    cluster_net::error_chain(&e)
                ))
            })?;
        if !r.status().is_success() {
            let st = r.status();
            let msg = cluster_net::api_error_message(r).await;
            return Err(match st.as_u16() {
                401 | 403 => Error::Unauthorized(format!("the member refused the join: {msg}")),
                409 => Error::Conflict(format!("the member refused the join: {msg}")),
                400 => Error::BadRequest(format!("the member refused the join: {msg}")),
                _ => Error::Internal(format!("the member failed the join ({st}): {msg}")),
            });
        }
        r.json::<JoinResponse>()
            .await
            .map_err(|e| Error::Internal(format!("join response: {e}")))
    })?;
    t.log(format!(
        "member added {} as nodeid {} to cluster {:?} ({} members)",
        jr.node,
        resp.nodeid,
        resp.cluster_name,
        resp.members.len()
    ));
    t.progress(0.3);
    let members: Vec<MemberRecord> = resp
        .members
        .iter()
        .map(|m| MemberRecord {
            name: m.name.clone(),
            nodeid: m.nodeid,
            api: m.api.clone(),
        })
        .collect();
    for m in &resp.members {
        let lines: Vec<String> = resp
            .known_hosts
            .iter()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|h| h.split(',').any(|x| x == m.name))
            })
            .cloned()
            .collect();
        form::pin_known_hosts(&cs.paths, &m.name, &m.links, &lines)?;
    }
    let cert = form::joiner_install(
        &cs.paths,
        clusterd_svc(cs).as_ref(),
        &node.cfg.node,
        &resp,
        &resp.ca_key_pem,
        &key_pem,
        members,
        cs.clusterd_bin.is_some(),
        &TaskProgress(t),
    )?;
    cs.swap_cert(&cert)?;
    t.log(format!(
        "joined; API certificate fingerprint: {}",
        cert.fingerprint
    ));
    replace_access_from_store(node, t);
    Ok(())
}

/// Retry `f` while the config store is starting, syncing or not yet quorate (up to 60 s).
fn store_retry<T>(
    what: &str,
    mut f: impl FnMut() -> std::result::Result<T, clusterd::store::StoreError>,
) -> Result<T> {
    use clusterd::store::StoreError as S;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e @ (S::Unavailable { .. } | S::Syncing | S::NotQuorate))
                if std::time::Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "{what}: waiting for the config store");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(Error::from(e)),
        }
    }
}

/// `cluster init`: this node's users and API tokens become the cluster's (in the config store,
/// hashes only). The node-local root token stays local.
fn copy_access_to_store(node: &Node, t: &TaskHandle) -> Result<()> {
    let entries = crate::auth::local_access_entries(node.auth.db())?;
    let st = crate::db::Store::local();
    let started = std::time::Instant::now();
    for (k, v) in &entries {
        store_retry("copying users", || st.put(k, v)).map_err(|e| {
            Error::Internal(format!(
                "copying users and tokens into the config store ({k}): {e}; until they are there only the node-local root token ({LOCAL_TOKEN_FILE}) authenticates"
            ))
        })?;
    }
    t.log(format!(
        "users and API tokens are cluster-wide now: {} entries copied into the config store in {} ms",
        entries.len(),
        started.elapsed().as_millis()
    ));
    Ok(())
}

/// `join`: this node's own users and tokens are replaced by the cluster's (as Proxmox does);
/// the local copy is refreshed from the config store once it synced.
fn replace_access_from_store(node: &Node, t: &TaskHandle) {
    t.log("this node's users and API tokens are replaced by the cluster's (log in with the cluster's root password from now on)");
    let st = crate::db::Store::local();
    let r = store_retry("reading users", || {
        let u = st.list("/access/users")?;
        if u.is_empty() {
            // not synced with the members yet
            return Err(clusterd::store::StoreError::Syncing);
        }
        Ok(())
    })
    .and_then(|_| crate::auth::replace_local_access(node.auth.db(), &st));
    match r {
        Ok((u, k)) => t.log(format!(
            "local copy of the cluster's accounts: {u} users, {k} API tokens"
        )),
        Err(e) => t.log(format!(
            "warning: the local copy of the cluster's accounts was not refreshed ({e}); authentication uses the config store anyway"
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/cluster/local-join", tag = "cluster", request_body = LocalJoin,
    responses((status = 202, body = TaskRef), (status = 409, body = keel_api::ErrorBody)))]
async fn local_join(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<LocalJoin>,
) -> ApiResult<Response> {
    is_root(&p)?;
    req.validate()?;
    let upid = blocking(move || {
        joiner_checks(&node)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "clusterjoin",
            "cluster",
            &p.user,
            true,
            move |t| {
                let _g = n.cluster.change.lock().unwrap_or_else(|p| p.into_inner());
                joiner_checks(&n)?;
                joiner_join(&n, &req, t)
            },
        )
    })
    .await?;
    Ok(accepted(upid))
}

// ------------------------------------------------------------------ status

fn cib_stonith_devices() -> Vec<(String, String, String)> {
    // (id, agent type, target node) from the live CIB
    let Ok((true, out, _)) = service::run(&["cibadmin", "--query", "--scope", "resources"]) else {
        return vec![];
    };
    let Ok(root) = keel_xml::Element::parse(&out) else {
        return vec![];
    };
    root.descendants("primitive")
        .into_iter()
        .filter(|p| p.get_attr("class") == Some("stonith"))
        .filter_map(|p| {
            let target = p
                .descendants("nvpair")
                .into_iter()
                .find(|nv| nv.get_attr("name") == Some("pcmk_host_list"))?
                .get_attr("value")?
                .to_string();
            Some((
                p.get_attr("id")?.to_string(),
                p.get_attr("type").unwrap_or("").to_string(),
                target,
            ))
        })
        .collect()
}

/// Config store key of a node's last fence test (cluster-wide record).
fn fence_test_key(node: &str) -> String {
    format!("/cluster/fence-tests/{node}")
}

/// The newer of this node's record and the cluster-wide one in the config store (when
/// keel-clusterd answers): a test run through any member counts everywhere.
fn fence_test_of(cs: &ClusterState, node: &str) -> Option<FenceTestResult> {
    let local = cs
        .db
        .conn()
        .query_row(
            "SELECT at, ok, action, message FROM cluster_fence_tests WHERE node=?1",
            params![node],
            |r| {
                Ok(FenceTestResult {
                    at: r.get(0)?,
                    ok: r.get::<_, i64>(1)? != 0,
                    action: r.get(2)?,
                    message: r.get(3)?,
                })
            },
        )
        .ok();
    let shared = tokio::runtime::Handle::try_current().ok().and_then(|h| {
        let c = clusterd::store::client::Client::local();
        h.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(2),
                c.get(&fence_test_key(node)),
            )
            .await
            .ok()?
            .ok()
        })
        .and_then(|e| serde_json::from_value::<FenceTestResult>(e.value).ok())
    });
    match (local, shared) {
        (Some(a), Some(b)) => Some(if b.at > a.at { b } else { a }),
        (a, b) => a.or(b),
    }
}

pub fn cluster_status(node: &Node) -> Result<ClusterStatus> {
    let cs = &node.cluster;
    let Some(rec) = cs.record()? else {
        return Ok(ClusterStatus {
            clustered: false,
            name: String::new(),
            local_node: node.cfg.node.clone(),
            quorate: false,
            expected_votes: 0,
            total_votes: 0,
            two_node: false,
            members: vec![],
            dc: None,
            stonith_enabled: false,
            failed_actions: vec![],
            notes: vec!["this node is not in a cluster".into()],
        });
    };
    let conf = form::read_corosync_conf(&cs.paths)?;
    let q = form::quorum();
    let links = service::run(&["corosync-cfgtool", "-n"])
        .ok()
        .and_then(|(_, out, _)| clusterd::crm::LinkStatus::parse(&out).ok());
    let crm = form::crm_status();
    let devices = cib_stonith_devices();
    let mut notes = vec![];
    if q.is_none() {
        notes.push("corosync is not running on this node".into());
    }
    if crm.is_none() {
        notes.push("Pacemaker does not answer on this node".into());
    }
    if conf.nodes.len() == 1 {
        notes.push("single node: no redundancy until a second node joins".into());
    }
    let mut members = vec![];
    for n in &conf.nodes {
        let qm = q
            .as_ref()
            .and_then(|q| q.members.iter().find(|m| m.nodeid == n.nodeid));
        let cn = crm.as_ref().and_then(|c| c.node(&n.name));
        let local = q.as_ref().is_some_and(|q| q.node_id == n.nodeid);
        let peer = links
            .as_ref()
            .and_then(|l| l.peers.iter().find(|p| p.nodeid == n.nodeid));
        let ls = n
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| LinkStatus {
                link: i as u32,
                address: a.clone(),
                connected: local && q.is_some()
                    || peer.is_some_and(|p| {
                        p.links.iter().any(|l| l.link as usize == i && l.connected)
                    }),
            })
            .collect();
        let dev = devices.iter().find(|d| d.2 == n.name);
        if dev.is_none() && conf.nodes.len() > 1 {
            notes.push(format!(
                "{} has no fence device: it cannot be fenced",
                n.name
            ));
        }
        members.push(MemberStatus {
            name: n.name.clone(),
            nodeid: n.nodeid,
            online: cn.is_some_and(|c| c.online) && qm.is_some(),
            standby: cn.is_some_and(|c| c.standby),
            unclean: cn.is_some_and(|c| c.unclean),
            votes: qm.map(|m| m.votes).unwrap_or(0),
            links: ls,
            is_dc: cn.is_some_and(|c| c.is_dc),
            fence_device: dev.map(|d| d.0.clone()),
            last_fence_test: fence_test_of(cs, &n.name),
        });
    }
    Ok(ClusterStatus {
        clustered: true,
        name: rec.name,
        local_node: node.cfg.node.clone(),
        quorate: q.as_ref().is_some_and(|q| q.quorate),
        expected_votes: q.as_ref().map(|q| q.expected_votes).unwrap_or(0),
        total_votes: q.as_ref().map(|q| q.total_votes).unwrap_or(0),
        two_node: conf.two_node(),
        members,
        dc: crm.as_ref().and_then(|c| c.dc.clone()),
        stonith_enabled: crm
            .as_ref()
            .and_then(|c| c.stonith_enabled)
            .unwrap_or(false),
        failed_actions: crm
            .map(|c| {
                c.failures
                    .into_iter()
                    .map(|f| FailedAction {
                        resource: f.op_key,
                        node: f.node,
                        operation: f.task,
                        status: f.exit_status,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        notes,
    })
}

#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster", responses((status = 200, body = ClusterStatus)))]
async fn status(State(node): State<Arc<Node>>) -> ApiResult<Json<ClusterStatus>> {
    Ok(Json(blocking(move || cluster_status(&node)).await?))
}

#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster", responses((status = 200, body = [ClusterNode])))]
async fn nodes(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<ClusterNode>>> {
    Ok(Json(
        blocking(move || {
            let cs = &node.cluster;
            let Some(rec) = cs.record()? else {
                return Ok(vec![]);
            };
            let conf = form::read_corosync_conf(&cs.paths)?;
            Ok(conf
                .nodes
                .iter()
                .map(|n| ClusterNode {
                    name: n.name.clone(),
                    nodeid: n.nodeid,
                    links: n.addrs.clone(),
                    api: rec
                        .members
                        .iter()
                        .find(|m| m.name == n.name)
                        .map(|m| m.api.clone())
                        .unwrap_or_default(),
                })
                .collect())
        })
        .await?,
    ))
}

// ------------------------------------------------------------------ remove

/// Would the online members left after removing `removed` (of `total`) hold quorum for the new
/// size? `Err` says why not.
fn removal_keeps_quorum(
    total: usize,
    online: &[u32],
    removed: u32,
) -> std::result::Result<(), String> {
    let left = total.saturating_sub(1);
    let online_after = online.iter().filter(|id| **id != removed).count();
    let need = quorum_needed(left);
    if left == 0 || online_after < need {
        return Err(format!(
            "would leave {online_after} online member(s) of {left} while {need} are needed"
        ));
    }
    Ok(())
}

fn quorum_needed(nodes: usize) -> usize {
    if nodes == 2 {
        1
    } else {
        nodes / 2 + 1
    }
}

#[utoipa::path(delete, path = "/api/v1/cluster/nodes/{name}", tag = "cluster", params(("name" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 409, body = keel_api::ErrorBody)))]
async fn remove_node(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<NodeRemoveQuery>,
) -> ApiResult<Response> {
    is_root(&p)?;
    let upid = blocking(move || {
        let cs = &node.cluster;
        let rec = cs
            .record()?
            .ok_or_else(|| Error::Conflict("this node is not in a cluster".into()))?;
        if name == node.cfg.node {
            return Err(Error::Conflict(format!(
                "{name} is the node answering this request: run `keel node remove {name}` on another member"
            )));
        }
        let conf = form::read_corosync_conf(&cs.paths)?;
        if conf.node(&name).is_none() {
            return Err(Error::NotFound(format!("{name:?} is not a cluster member")));
        }
        let online: Vec<u32> = form::quorum()
            .map(|q| q.members.iter().map(|m| m.nodeid).collect())
            .unwrap_or_default();
        let removed_id = conf.node(&name).map(|n| n.nodeid).unwrap_or(0);
        if let Err(why) = removal_keeps_quorum(conf.nodes.len(), &online, removed_id) {
            if !q.force {
                return Err(Error::Conflict(format!(
                    "removing {name} {why}: the cluster would lose quorum. Bring members back online, or use --force"
                )));
            }
        }
        let n = node.clone();
        let force = q.force;
        let tgt = name.clone();
        tasks::spawn(&node.tasks, "clusterremove", &tgt, &p.user, true, move |t| {
            remove_task(&n, rec, &name, force, t)
        })
    })
    .await?;
    Ok(accepted(upid))
}

fn remove_task(
    node: &Node,
    rec: ClusterRecord,
    name: &str,
    force: bool,
    t: &TaskHandle,
) -> Result<()> {
    let cs = &node.cluster;
    let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
    let mut conf = form::read_corosync_conf(&cs.paths)?;
    let gone = conf
        .remove_node(name)
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let removed = rec.members.iter().find(|m| m.name == name).cloned();
    // 1. the removed node stops its stack and forgets the cluster (if reachable)
    if let Some(m) = &removed {
        let key = cs.authkey()?;
        let client = cs.member_client()?;
        let r = tokio::runtime::Handle::current().block_on(cluster_net::peer_post(
            &client,
            &key,
            &node.cfg.node,
            &m.api,
            "/api/v1/cluster/peer/leave",
            &serde_json::json!({}),
        ));
        match r {
            Ok(()) => t.log(format!("{name} stopped corosync and Pacemaker and left")),
            Err(e) if force => t.log(format!("{name} unreachable ({e}); continuing (--force)")),
            Err(e) => {
                return Err(Error::Conflict(format!(
                    "{name} could not be told to leave ({e}); if it is down for good, use --force"
                )))
            }
        }
    }
    // 2. every remaining member drops it from corosync.conf, then one reload for all
    let members: Vec<MemberRecord> = rec
        .members
        .iter()
        .filter(|m| m.name != name)
        .cloned()
        .collect();
    let update = PeerUpdate {
        corosync_conf: conf.render().map_err(|e| Error::Internal(e.to_string()))?,
        members: members.clone(),
        pin: None,
        unpin: Some((gone.name.clone(), gone.addrs.clone())),
        authorized_key: None,
    };
    let mut rest = rec.clone();
    rest.members = members;
    push_to_members(node, &rest, &update)?;
    apply_peer_update(cs, &update)?;
    // its root key goes from authorized_keys here (others keep theirs until their next update)
    let ak = cs.paths.root_ssh_dir.join("authorized_keys");
    if let Ok(text) = std::fs::read_to_string(&ak) {
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.ends_with(&format!(" keel:{name}")))
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        clusterd::ca::write_file_mode(&ak, out.as_bytes(), 0o600)
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    service::reload_corosync().map_err(|e| Error::Internal(e.to_string()))?;
    t.log(format!(
        "removed {name} from corosync.conf on every member and reloaded"
    ));
    // 3. Pacemaker forgets it; its fence device goes
    for (id, _, target) in cib_stonith_devices().into_iter().filter(|d| d.2 == name) {
        let dev = lab_shell_device(&id, &target);
        form::apply_cib(&clusterd::cib::delete_fence_device(&dev))?;
        t.log(format!("deleted fence device {id}"));
    }
    // The controller re-creates a node entry when corosync's membership settles after the
    // reload (up to token + consensus later): purge until the name stays gone.
    let mut purged = false;
    for attempt in 1..=10 {
        let r = service::run(&["crm_node", "-R", name, "--force"]);
        if let Ok((false, o, e)) = &r {
            t.log(format!("crm_node -R {name}: {}{}", e.trim(), o.trim()));
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        let still = matches!(
            service::run(&["cibadmin", "--query", "--scope", "nodes"]),
            Ok((true, out, _)) if out.contains(&format!("uname=\"{name}\""))
        );
        if !still {
            t.log(format!(
                "Pacemaker forgot {name} (crm_node -R, attempt {attempt})"
            ));
            purged = true;
            break;
        }
    }
    if !purged {
        t.log(format!(
            "warning: Pacemaker still lists {name}; run crm_node -R {name} --force later"
        ));
    }
    form::apply_properties_for(&conf)?;
    let _ = cs.db.conn().execute(
        "DELETE FROM cluster_fence_tests WHERE node=?1",
        params![name],
    );
    let c = clusterd::store::client::Client::local();
    let _ = tokio::runtime::Handle::current().block_on(c.delete(&fence_test_key(name), None));
    Ok(())
}

/// A FenceDevice with only the identity fields needed to delete it from the CIB.
fn lab_shell_device(id: &str, node: &str) -> FenceDevice {
    FenceDevice {
        id: id.to_string(),
        node: node.to_string(),
        agent: FenceAgent::KeelNetnsLab {
            lab_dir: String::new(),
        },
        delay_s: None,
        action: None,
    }
}

// ------------------------------------------------------------------ fencing

fn param(spec: &FenceDeviceSpec, k: &str) -> Result<String> {
    spec.params.get(k).cloned().ok_or_else(|| {
        Error::validation(
            &format!("params.{k}"),
            format!("{k} is required for this agent"),
        )
    })
}

fn secret(spec: &FenceDeviceSpec, k: &str) -> Result<Secret> {
    spec.secrets
        .get(k)
        .map(|s| Secret::new(s.clone()))
        .ok_or_else(|| {
            Error::validation(
                &format!("secrets.{k}"),
                format!("{k} is required for this agent"),
            )
        })
}

fn port(spec: &FenceDeviceSpec, k: &str) -> Result<Option<u16>> {
    spec.params
        .get(k)
        .map(|v| {
            v.parse().map_err(|_| {
                Error::validation(&format!("params.{k}"), format!("{v:?} is not a port"))
            })
        })
        .transpose()
}

fn to_device(spec: &FenceDeviceSpec) -> Result<FenceDevice> {
    spec.validate()?;
    let agent = match spec.agent {
        FenceAgentKind::FenceIpmilan => FenceAgent::Ipmilan {
            ip: param(spec, "ip")?,
            port: port(spec, "ipport")?,
            username: param(spec, "username")?,
            password: secret(spec, "password")?,
            lanplus: spec.params.get("lanplus").map(|v| v != "0").unwrap_or(true),
            privlvl: spec.params.get("privlvl").cloned(),
        },
        FenceAgentKind::FenceRedfish => FenceAgent::Redfish {
            ip: param(spec, "ip")?,
            port: port(spec, "ipport")?,
            username: param(spec, "username")?,
            password: secret(spec, "password")?,
            ssl_insecure: spec.params.get("ssl_insecure").is_some_and(|v| v == "1"),
            systems_uri: spec.params.get("systems_uri").cloned(),
        },
        FenceAgentKind::Sbd => FenceAgent::Sbd {
            devices: param(spec, "devices")?
                .split(',')
                .map(str::to_string)
                .collect(),
        },
        FenceAgentKind::FenceKeellab => FenceAgent::KeelNetnsLab {
            lab_dir: param(spec, "lab_dir")?,
        },
        FenceAgentKind::FenceKeelLab => FenceAgent::KeelVmLab {
            ipaddr: spec.params.get("ipaddr").cloned(),
            ipport: port(spec, "ipport")?,
        },
    };
    Ok(FenceDevice {
        id: format!("fence-{}", spec.node),
        node: spec.node.clone(),
        agent,
        delay_s: spec.delay_base_s,
        action: spec.params.get("action").cloned(),
    })
}

fn agent_kind(program: &str) -> Option<FenceAgentKind> {
    Some(match program {
        "fence_ipmilan" => FenceAgentKind::FenceIpmilan,
        "fence_redfish" => FenceAgentKind::FenceRedfish,
        "fence_sbd" => FenceAgentKind::Sbd,
        "fence_keellab" => FenceAgentKind::FenceKeellab,
        "fence_keel_lab" => FenceAgentKind::FenceKeelLab,
        _ => return None,
    })
}

#[utoipa::path(get, path = "/api/v1/cluster/fencing", tag = "cluster", responses((status = 200, body = [FenceDeviceInfo])))]
async fn list_fencing(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<FenceDeviceInfo>>> {
    Ok(Json(
        blocking(move || {
            Ok(cib_stonith_devices()
                .into_iter()
                .filter_map(|(id, ty, target)| {
                    Some(FenceDeviceInfo {
                        id,
                        agent: agent_kind(&ty)?,
                        last_test: fence_test_of(&node.cluster, &target),
                        node: target,
                        params: BTreeMap::new(),
                        secret_keys: vec![],
                    })
                })
                .collect())
        })
        .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/cluster/fencing", tag = "cluster", request_body = FenceDeviceSpec,
    responses((status = 201, body = FenceDeviceInfo), (status = 400, body = keel_api::ErrorBody)))]
async fn put_fencing(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(spec): JsonBody<FenceDeviceSpec>,
) -> ApiResult<Response> {
    is_root(&p)?;
    let info = blocking(move || {
        let cs = &node.cluster;
        if cs.record()?.is_none() {
            return Err(Error::Conflict("this node is not in a cluster".into()));
        }
        let conf = form::read_corosync_conf(&cs.paths)?;
        let names: Vec<String> = conf.nodes.iter().map(|n| n.name.clone()).collect();
        let dev = to_device(&spec)?;
        if let Err(errs) = dev.validate(&names) {
            if let Some(e) = errs.into_iter().next() {
                return Err(Error::Validation(e));
            }
        }
        form::apply_cib(&clusterd::cib::put_fence_device(&dev))?;
        tracing::info!(device = %dev.id, node = %dev.node, agent = dev.agent.program(), "fence device configured");
        Ok(FenceDeviceInfo {
            id: dev.id.clone(),
            node: dev.node.clone(),
            agent: spec.agent,
            params: spec.params.clone(),
            secret_keys: spec.secrets.keys().cloned().collect(),
            last_test: None,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/cluster/fencing/{node}", tag = "cluster", params(("node" = String, Path)), responses((status = 204)))]
async fn delete_fencing(
    State(_node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(target): Path<String>,
) -> ApiResult<StatusCode> {
    is_root(&p)?;
    blocking(move || {
        let devs: Vec<_> = cib_stonith_devices()
            .into_iter()
            .filter(|d| d.2 == target)
            .collect();
        if devs.is_empty() {
            return Err(Error::NotFound(format!("no fence device for {target:?}")));
        }
        for (id, _, t) in devs {
            form::apply_cib(&clusterd::cib::delete_fence_device(&lab_shell_device(
                &id, &t,
            )))?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FenceTestQuery {
    /// `reboot` (default) or `off`.
    #[serde(default)]
    pub action: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/cluster/fencing/{node}/test", tag = "cluster", params(("node" = String, Path), FenceTestQuery),
    responses((status = 202, body = TaskRef), (status = 409, body = keel_api::ErrorBody)))]
async fn test_fencing(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(target): Path<String>,
    Query(q): Query<FenceTestQuery>,
) -> ApiResult<Response> {
    is_root(&p)?;
    let action = q.action.unwrap_or_else(|| "reboot".into());
    if action != "reboot" && action != "off" {
        return Err(ApiError(Error::validation("action", "use reboot or off")));
    }
    let upid = blocking(move || {
        let cs = &node.cluster;
        if target == node.cfg.node {
            return Err(Error::Conflict(format!(
                "{target} is the node answering this request: test its fencing from another member"
            )));
        }
        if !cib_stonith_devices().iter().any(|d| d.2 == target) {
            return Err(Error::Conflict(format!("{target} has no fence device: add one first")));
        }
        let _ = cs;
        let n = node.clone();
        let tgt = target.clone();
        tasks::spawn(&node.tasks, "fencetest", &tgt, &p.user, true, move |t| {
            let flag = if action == "off" { "--fence" } else { "--reboot" };
            t.log(format!("stonith_admin {flag} {target}: this really fences the node"));
            let t0 = std::time::Instant::now();
            let r = service::run(&["stonith_admin", flag, &target, "--timeout", "120"])
                .map_err(|e| Error::Internal(e.to_string()))?;
            let ok = r.0;
            let msg = if ok {
                format!("fenced ({action}) in {:.1}s", t0.elapsed().as_secs_f64())
            } else {
                format!("failed: {}{}", r.2.trim(), r.1.trim())
            };
            let at = now();
            n.cluster.db.conn().execute(
                "INSERT OR REPLACE INTO cluster_fence_tests(node,at,ok,action,message) VALUES (?1,?2,?3,?4,?5)",
                params![target, at, ok as i64, action, msg],
            )?;
            let rec = FenceTestResult {
                at,
                ok,
                action: action.clone(),
                message: msg.clone(),
            };
            let shared = serde_json::to_value(&rec).map_err(|e| Error::Internal(e.to_string()));
            let put = shared.and_then(|v| {
                let c = clusterd::store::client::Client::local();
                tokio::runtime::Handle::current()
                    .block_on(c.put(&fence_test_key(&target), &v))
                    .map_err(store_err)
            });
            match put {
                Ok(_) => t.log("result recorded in the cluster config store"),
                Err(e) => t.log(format!("result recorded on this node only: {e}")),
            }
            t.log(&msg);
            if ok {
                Ok(())
            } else {
                Err(Error::Internal(format!("fence test of {target} {msg}")))
            }
        })
    })
    .await?;
    Ok(accepted(upid))
}

/// Refuse HA or cluster storage until every member passed a fence test.
pub fn require_fence_tested(node: &Node) -> Result<()> {
    let cs = &node.cluster;
    let conf = form::read_corosync_conf(&cs.paths)?;
    let untested: Vec<String> = conf
        .nodes
        .iter()
        .filter(|n| !fence_test_of(cs, &n.name).is_some_and(|t| t.ok))
        .map(|n| n.name.clone())
        .collect();
    if !untested.is_empty() {
        return Err(Error::Conflict(format!(
            "fencing is not proven on {}: run `keel fence test NODE --yes` for each before enabling HA or cluster storage",
            untested.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_quorum_math() {
        assert_eq!(host_of("[fd00::1]:8006"), "fd00::1");
        assert_eq!(host_of("fd00::1"), "fd00::1");
        assert_eq!(host_of("node1:8006"), "node1");
        assert_eq!(with_port("fd00::1"), "[fd00::1]:8006");
        assert_eq!(with_port("10.0.0.1"), "10.0.0.1:8006");
        assert_eq!(with_port("[fd00::1]:9000"), "[fd00::1]:9000");
        assert_eq!(with_port("node1:9000"), "node1:9000");
        assert_eq!(quorum_needed(1), 1);
        assert_eq!(quorum_needed(2), 1);
        assert_eq!(quorum_needed(3), 2);
        assert_eq!(quorum_needed(4), 3);
        // 3 nodes all up: removing one leaves two (two_node): fine
        assert!(removal_keeps_quorum(3, &[1, 2, 3], 3).is_ok());
        // 4 nodes, 2 and 4 down: removing 3 leaves 1 online of 3 (needs 2)
        assert!(removal_keeps_quorum(4, &[1, 3], 3).is_err());
        // 5 nodes, 4 and 5 down: removing a down node leaves 3 of 4 online (needs 3)
        assert!(removal_keeps_quorum(5, &[1, 2, 3], 5).is_ok());
        // 5 nodes, 4 and 5 down: removing an online one leaves 2 of 4 (needs 3)
        assert!(removal_keeps_quorum(5, &[1, 2, 3], 1).is_err());
        // the last node cannot be removed
        assert!(removal_keeps_quorum(1, &[1], 1).is_err());
    }
}

// ------------------------------------------------------------------ config store

fn store_err(e: clusterd::store::StoreError) -> Error {
    // Unavailable (daemon down, writes held in a two-node split) is 503 with the store's message
    Error::from(e)
}

fn check_key(key: &str) -> Result<()> {
    if !keel_api::cluster::valid_config_key(key) {
        return Err(Error::validation(
            "key",
            format!("{key:?} is not a config key: 1-256 letters, digits, '/', '-', '_', '.', no empty segments"),
        ));
    }
    Ok(())
}

/// API keys are `a/b`; the store's are `/a/b`.
fn store_key(k: &str) -> String {
    format!("/{k}")
}

fn entry(e: clusterd::store::Entry) -> keel_api::cluster::ConfigEntry {
    keel_api::cluster::ConfigEntry {
        key: e.key.strip_prefix('/').unwrap_or(&e.key).to_string(),
        version: e.version,
        value: e.value,
    }
}

/// Password and token hashes are for root's eyes only.
fn may_read(p: &Principal, key: &str) -> bool {
    p.user == "root" || !(key == "access" || key.starts_with("access/"))
}

/// VMs of every member, from the config store (this node's replica).
#[utoipa::path(get, path = "/api/v1/cluster/resources", tag = "cluster",
    responses((status = 200, body = [keel_api::cluster::ClusterResource]), (status = 503, body = keel_api::ErrorBody)))]
async fn resources(
    State(node): State<Arc<Node>>,
) -> ApiResult<Json<Vec<keel_api::cluster::ClusterResource>>> {
    if node.cluster.record()?.is_none() {
        return Err(ApiError(Error::Conflict(
            "this node is not in a cluster: its VMs are at /api/v1/nodes/{node}/vms".into(),
        )));
    }
    let c = clusterd::store::client::Client::local();
    let mut out = vec![];
    for e in c.list("/vms").await.map_err(store_err)? {
        let Some(vmid) = e.key.rsplit('/').next().and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        let s = |k: &str| e.value[k].as_str().unwrap_or("").to_string();
        out.push(keel_api::cluster::ClusterResource {
            kind: "vm".into(),
            id: format!("vm/{vmid}"),
            vmid,
            node: s("node"),
            name: s("name"),
            spec: serde_json::from_value(e.value["spec"].clone()).ok(),
        });
    }
    out.sort_by_key(|r| r.vmid);
    Ok(Json(out))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConfigListQuery {
    /// Only keys starting with this prefix.
    #[serde(default)]
    pub prefix: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/cluster/config", tag = "cluster", params(ConfigListQuery),
    responses((status = 200, body = [keel_api::cluster::ConfigEntry])))]
async fn config_list(
    Extension(p): Extension<Principal>,
    Query(q): Query<ConfigListQuery>,
) -> ApiResult<Json<Vec<keel_api::cluster::ConfigEntry>>> {
    let c = clusterd::store::client::Client::local();
    let v = c
        .list(&store_key(q.prefix.as_deref().unwrap_or("")))
        .await
        .map_err(store_err)?;
    Ok(Json(
        v.into_iter()
            .map(entry)
            .filter(|e| may_read(&p, &e.key))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    responses((status = 200, body = keel_api::cluster::ConfigEntry), (status = 404, body = keel_api::ErrorBody)))]
async fn config_get(
    Extension(p): Extension<Principal>,
    Path(key): Path<String>,
) -> ApiResult<Json<keel_api::cluster::ConfigEntry>> {
    check_key(&key)?;
    if !may_read(&p, &key) {
        return Err(ApiError(Error::Forbidden(
            "access/ (password and token hashes) is readable by root only".into(),
        )));
    }
    let c = clusterd::store::client::Client::local();
    Ok(Json(entry(
        c.get(&store_key(&key)).await.map_err(store_err)?,
    )))
}

#[utoipa::path(put, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    request_body = keel_api::cluster::ConfigPut,
    responses((status = 200, body = keel_api::cluster::ConfigEntry), (status = 409, body = keel_api::ErrorBody)))]
async fn config_put(
    Extension(p): Extension<Principal>,
    Path(key): Path<String>,
    JsonBody(req): JsonBody<keel_api::cluster::ConfigPut>,
) -> ApiResult<Json<keel_api::cluster::ConfigEntry>> {
    is_root(&p)?;
    check_key(&key)?;
    let c = clusterd::store::client::Client::local();
    let version = match req.version {
        None => c.put(&store_key(&key), &req.value).await,
        Some(0) => c.create(&store_key(&key), &req.value).await,
        Some(v) => c.cas(&store_key(&key), &req.value, v).await,
    }
    .map_err(store_err)?;
    Ok(Json(keel_api::cluster::ConfigEntry {
        key,
        version,
        value: req.value,
    }))
}

#[utoipa::path(delete, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    responses((status = 204), (status = 404, body = keel_api::ErrorBody)))]
async fn config_delete(
    Extension(p): Extension<Principal>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    is_root(&p)?;
    check_key(&key)?;
    let c = clusterd::store::client::Client::local();
    c.delete(&store_key(&key), None).await.map_err(store_err)?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ forwarding

/// Header naming the user a forwarded request acts for (with a peer signature).
pub const FORWARDED_USER: &str = "X-Keel-Forwarded-User";

/// Authenticate a request another member forwarded: its peer signature (method, path and
/// query; the body is protected by TLS to this node's CA-signed certificate), a member as
/// sender whose CA-signed client certificate the connection presented (mutual TLS), and a
/// user that exists here.
pub fn check_forwarded(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: &crate::tls::PeerCert,
    method: &str,
    pq: &str,
) -> Result<Principal> {
    let h = headers
        .get(PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Unauthorized(format!("{FORWARDED_USER} needs {PEER_HEADER}")))?;
    let key = node.cluster.authkey().map_err(|_| {
        Error::Unauthorized("forwarded request, but this node is not in a cluster".into())
    })?;
    let from = cluster_net::check_peer_header(&key, h, now(), method, pq, b"-")?;
    let rec = node
        .cluster
        .record()?
        .ok_or_else(|| Error::Unauthorized("not in a cluster".into()))?;
    if !rec.members.iter().any(|m| m.name == from) {
        return Err(Error::Unauthorized(format!("{from} is not a member")));
    }
    // mutual TLS: the connection's CA-verified client certificate names the signing member
    peer_cert.check_node(&from)?;
    let user = headers
        .get(FORWARDED_USER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !node.auth.user_exists(&user)? {
        return Err(Error::Forbidden(format!(
            "user {user:?} does not exist in the cluster (as seen by {})",
            node.cfg.node
        )));
    }
    Ok(Principal { user, csrf: None })
}

/// Middleware (after authentication): `/api/v1/nodes/{other}/…` for another member is sent to
/// that member over CA-verified TLS, signed as this node, acting for the logged-in user; the
/// answer (status, type, body) is streamed back.
pub async fn forward(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/api/v1/nodes/") else {
        return next.run(req).await;
    };
    let target = rest.split('/').next().unwrap_or("").to_string();
    if target.is_empty() || target == node.cfg.node {
        return next.run(req).await;
    }
    let member = match node.cluster.record() {
        Ok(Some(r)) => r.members.into_iter().find(|m| m.name == target),
        _ => None,
    };
    let Some(member) = member else {
        return next.run(req).await; // the handler answers 404
    };
    match forward_to(&node, &member, req).await {
        Ok(r) => r,
        Err(e) => ApiError(e).into_response(),
    }
}

async fn forward_to(
    node: &Node,
    m: &MemberRecord,
    req: axum::extract::Request,
) -> Result<Response> {
    if req.headers().contains_key(FORWARDED_USER) {
        return Err(Error::Conflict(
            "a forwarded request is not forwarded again".into(),
        ));
    }
    let user = req
        .extensions()
        .get::<Principal>()
        .map(|p| p.user.clone())
        .ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
    if req.uri().path().ends_with("/vncwebsocket") {
        return forward_console(node, m, &user, req).await;
    }
    let cs = &node.cluster;
    let key = cs.authkey()?;
    let client = cs.member_client()?;
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default();
    let method = parts.method.to_string();
    let sig = cluster_net::peer_header(&key, &node.cfg.node, now(), &method, &pq, b"-")?;
    let rm = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| Error::BadRequest(format!("method {method}")))?;
    let mut rb = client
        .request(rm, format!("https://{}{pq}", m.api))
        .header(PEER_HEADER, sig)
        .header(FORWARDED_USER, &user)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));
    // access: the owner applies the token's privilege separation too
    if let Some(t) = parts
        .extensions
        .get::<crate::access::Subject>()
        .and_then(|s| s.token.clone())
    {
        rb = rb.header(crate::access::FORWARDED_TOKEN, t);
    }
    for h in ["content-type", "content-length"] {
        if let Some(v) = parts.headers.get(h).and_then(|v| v.to_str().ok()) {
            rb = rb.header(h, v);
        }
    }
    let r = rb.send().await.map_err(|e| {
        Error::Internal(format!(
            "forwarding to {} at {}: {}",
            m.name,
            m.api,
            cluster_net::error_chain(&e)
        ))
    })?;
    let mut out = Response::builder().status(r.status().as_u16());
    if let Some(ct) = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
    {
        out = out.header("content-type", ct);
    }
    out.body(axum::body::Body::from_stream(r.bytes_stream()))
        .map_err(|e| Error::Internal(format!("forwarded response: {e}")))
}

/// A console WebSocket for a VM on member `m`: relayed, not redirected — the browser keeps
/// talking to the node it logged in on (its session, the certificate it accepted); the owner
/// may not even be reachable from the browser's network. The ticket was issued by the owner
/// (`vncproxy` is forwarded) and is redeemed there, for the same user.
async fn forward_console(
    node: &Node,
    m: &MemberRecord,
    user: &str,
    req: axum::extract::Request,
) -> Result<Response> {
    use axum::extract::{FromRequestParts, WebSocketUpgrade};
    let (mut parts, _) = req.into_parts();
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| Error::BadRequest(format!("console: {}", e.body_text())))?;
    let pq = parts
        .uri
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default();
    let vmid: u32 = parts
        .uri
        .path()
        .rsplit('/')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cs = &node.cluster;
    let sig = cluster_net::peer_header(&cs.authkey()?, &node.cfg.node, now(), "GET", &pq, b"-")?;
    let tls = cluster_net::member_tls_config(&cs.ca_pem()?, cs.node_identity())?;
    let headers = [(PEER_HEADER, sig), (FORWARDED_USER, user.to_string())];
    crate::console::forward_ws(ws, tls, &m.name, &m.api, &pq, &headers, vmid).await
}

/// `GET /api/v1/nodes/{m}` of every other member, for `user` (members that do not answer within
/// the client timeout are left out, with a warning).
pub async fn member_node_infos(node: &Node, user: &str) -> Vec<keel_api::node::NodeInfo> {
    let Ok(Some(rec)) = node.cluster.record() else {
        return vec![];
    };
    let Ok(key) = node.cluster.authkey() else {
        return vec![];
    };
    let Ok(client) = node.cluster.member_client() else {
        return vec![];
    };
    let mut out = vec![];
    for m in rec.members.iter().filter(|m| m.name != node.cfg.node) {
        let pq = format!("/api/v1/nodes/{}", m.name);
        let Ok(sig) = cluster_net::peer_header(&key, &node.cfg.node, now(), "GET", &pq, b"-")
        else {
            continue;
        };
        let r = client
            .get(format!("https://{}{pq}", m.api))
            .header(PEER_HEADER, sig)
            .header(FORWARDED_USER, user)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => match r.json::<keel_api::node::NodeInfo>().await {
                Ok(i) => out.push(i),
                Err(e) => tracing::warn!(member = %m.name, error = %e, "node info"),
            },
            Ok(r) => tracing::warn!(member = %m.name, status = %r.status(), "node info"),
            Err(e) => {
                tracing::warn!(member = %m.name, error = %cluster_net::error_chain(&e), "node info")
            }
        }
    }
    out
}
