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
//!
//! One job per module: `routes` (thin handlers), `init`, `join`, `peer`, `remove`, `fencing`,
//! `status`, `forward` (forwarding and its check), `store_api`; this file holds the state.
//! Every corosync/Pacemaker command goes through [`ClusterState::runner`] with the timeout
//! `clusterd::commands` gives it, so a wedged engine ends as an error naming the command.

mod fencing;
mod forward;
mod init;
mod join;
mod peer;
mod prereq;
mod qdevice;
mod remove;
mod routes;
mod sbd;
mod status;
mod store_api;
#[cfg(test)]
mod testlab;
pub mod verify;
mod vip;

pub use fencing::require_fence_tested;
pub use forward::{
    check_forwarded, check_member_request, forward, forwarded_body, member_node_infos,
    member_request, member_request_body, verify_forwarded, verify_member_request, Trust,
    FORWARDED_USER,
};
pub use routes::*;
pub use status::cluster_status;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use clusterd::form::{self, ClusterRecord, FormError, Paths, Progress};
use clusterd::service::{self, Daemon, Direct, ServiceManager, Systemd};
use keel_runner::{RunError, Runner};

use crate::cluster_net;
use crate::config::{Config, ServiceManagerKind};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::tasks::TaskHandle;
use crate::Node;

/// A command that failed or timed out, as the API error it is (its message names the command
/// and carries its stderr).
fn run_err(e: RunError) -> Error {
    if e.is_timeout() {
        // the engine did not answer in time: 503, the same request may work later
        Error::Unavailable(e.to_string())
    } else {
        Error::Internal(e.to_string())
    }
}

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
CREATE TABLE IF NOT EXISTS cluster_fence_test_generations (
    node TEXT PRIMARY KEY,
    generation TEXT
);
";

/// Cluster state of this hostd.
pub struct ClusterState {
    pub paths: Paths,
    pub svc: Arc<dyn ServiceManager>,
    /// Runs every corosync/Pacemaker command of the cluster workflows (with its timeout):
    /// `keel_runner::System`; unit tests put a `keel_runner::Fake` here.
    pub runner: Arc<dyn Runner>,
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
    /// The last cluster status (see [`status::StatusCache`]).
    pub(crate) status_cache: status::StatusCache,
    /// libvirt's and QEMU's TLS files for migration, written from the node certificate.
    pub migration_tls: crate::migration::pki::TlsFiles,
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
            // sbd runs only under systemd on a real node (cluster::sbd refuses elsewhere)
            sbd_defaults: "/etc/default/sbd".into(),
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
            runner: Arc::new(keel_runner::System),
            tls: OnceLock::new(),
            client_verifier,
            db,
            clusterd_bin,
            token_ttl_s: c.join_token_ttl_s,
            api_port: addr.port(),
            listen_ip: addr.ip(),
            fingerprint_file: cfg.state_dir.join("hostd.fingerprint"),
            change: Mutex::new(()),
            status_cache: status::StatusCache::default(),
            migration_tls: crate::migration::pki::TlsFiles {
                cfg: cfg.migration.clone(),
                node: cfg.node.clone(),
            },
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
        // libvirtd and QEMU authenticate migrations between members by the same certificate
        crate::migration::pki::write_logged(&self.migration_tls, &self.paths);
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

    pub(crate) fn authkey(&self) -> Result<Vec<u8>> {
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
    crate::migration::pki::write_logged(&node.cluster.migration_tls, &node.cluster.paths);
    crate::daemons::boot(node);
}

struct TaskProgress<'a>(pub(super) &'a TaskHandle);
impl Progress for TaskProgress<'_> {
    fn log(&self, line: &str) {
        self.0.log(line);
    }
    fn progress(&self, p: f64) {
        self.0.progress(p);
    }
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
