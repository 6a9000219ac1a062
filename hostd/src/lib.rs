//! hostd: Keel's per-node daemon.
//!
//! Owns the node's HTTPS API, the VM lifecycle on libvirt/QEMU, storage pools and volumes,
//! libvirt networks, the task log, local users and tokens. It must not implement any engine
//! itself: guests are libvirt's, and every engine call goes through [`hv::Hypervisor`].
//!
//! Data flow: HTTP request → [`api`] (auth, JSON validation) → checks in [`vms`]/[`storage`]/
//! [`network`] that can refuse at once (400/404/409) → a task ([`tasks`]) on the blocking pool
//! → [`hv`] → libvirtd. Specs become XML through [`domain`] and the [`xml`] model.

pub mod accel;
pub mod access;
pub mod agent;
pub mod api;
pub mod auth;
pub mod backup;
pub mod clones;
pub mod cloudinit;
pub mod cluster;
pub mod cluster_net;
pub mod cluster_pools;
pub mod config;
pub mod console;
pub mod daemons;
pub mod db;
pub mod domain;
pub mod error;
pub mod ha;
pub mod hostnet;
pub mod hotplug;
pub mod http;
pub mod hv;
pub mod limits;
pub mod local_pools;
pub mod login;
pub mod maintenance;
pub mod metrics;
pub mod migration;
pub mod network;
pub mod openapi;
pub mod snapshots;
pub mod storage;
pub mod tasks;
pub mod tls;
pub mod vms;
pub mod xml;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use crate::accel::AccelDecision;
use crate::auth::Auth;
use crate::config::Config;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::hv::Hypervisor;
use crate::tasks::Tasks;

/// Everything a request handler needs: config, engine, database-backed services.
pub struct Node {
    pub cfg: Config,
    pub hv: Arc<dyn Hypervisor>,
    pub tasks: Arc<Tasks>,
    pub auth: Auth,
    pub accel: AccelDecision,
    /// One-time console tickets: ticket → (vmid, user, expiry).
    pub vnc_tickets: console::Tickets,
    /// Cluster formation state (paths, service manager, live TLS config).
    pub cluster: cluster::ClusterState,
    /// Login throttling and the bounded password hashing pool.
    pub guard: login::Guard,
}

/// What opening a node's state did, for the operator.
pub struct OpenReport {
    /// Set when the root account was created now with a generated password.
    pub generated_root_password: Option<String>,
}

impl Node {
    /// Prepare the state directory, database, default pool and root account.
    pub fn open(
        cfg: Config,
        hv: Arc<dyn Hypervisor>,
        accel: AccelDecision,
    ) -> Result<(Node, OpenReport)> {
        for d in [cfg.state_dir.clone(), cfg.images_dir(), cfg.serial_dir()] {
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::Internal(format!("cannot create {}: {e}", d.display())))?;
        }
        // QEMU runs as an unprivileged user on Debian: it must reach images and serial logs.
        std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o711))?;
        std::fs::set_permissions(cfg.images_dir(), std::fs::Permissions::from_mode(0o711))?;
        // Uploads cut off by a crash leave hidden partial files: they are never valid volumes.
        if let Ok(rd) = std::fs::read_dir(cfg.images_dir()) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') && n.ends_with(".upload") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let db = Db::open(&cfg.db_path())?;
        let tasks = Tasks::open(db.clone(), &cfg.node)?;
        let cluster = cluster::ClusterState::open(&cfg, db.clone())?;
        let auth = Auth::new(db);
        let mut report = OpenReport {
            generated_root_password: None,
        };
        if !auth.user_exists("root")? {
            let (pw, generated) = match std::env::var("KEEL_ADMIN_PASSWORD") {
                Ok(p) if !p.is_empty() => (p, false),
                _ => (auth::generate_password(), true),
            };
            auth.set_password("root", &pw)?;
            if generated {
                write_root_password(&cfg.state_dir, &pw)?;
                report.generated_root_password = Some(pw);
            }
        }
        hv.ensure_dir_pool(&cfg.default_pool, &cfg.images_dir().display().to_string())?;
        // once clustered, users and tokens are the config store's (the bootstrap above is local)
        let auth = auth.in_cluster(cluster.paths.record());
        Ok((
            Node {
                cfg,
                hv,
                tasks,
                auth,
                accel,
                vnc_tickets: console::Tickets::default(),
                cluster,
                guard: login::Guard::default(),
            },
            report,
        ))
    }
}

/// `<state>/root-password`, 0600 from its first byte.
fn write_root_password(state_dir: &std::path::Path, pw: &str) -> Result<std::path::PathBuf> {
    let f = state_dir.join("root-password");
    clusterd::ca::write_file_mode(&f, format!("{pw}\n").as_bytes(), 0o600)
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &std::path::Path) -> Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    }

    /// The database (and its WAL and shared-memory files), the generated root password, the
    /// local root token and the TLS key are 0600 — created so, never narrowed after writing.
    #[test]
    fn secrets_are_private_from_the_first_byte() -> Result<()> {
        let (node, dir) = tests_support::fake_node(Arc::new(hv::fake::FakeHv::new()))?;
        // a write, so the WAL exists
        node.auth.set_password("alice", "alice-password")?;
        let state = dir.path();
        for f in ["hostd.db", "hostd.db-wal", "hostd.db-shm"] {
            let p = state.join(f);
            assert!(p.exists(), "{f} missing");
            assert_eq!(mode(&p)?, 0o600, "{f}");
        }
        let token = cluster::write_local_token(&node)?;
        assert_eq!(mode(&token)?, 0o600);
        let pw = write_root_password(state, "x")?;
        assert_eq!(mode(&pw)?, 0o600);
        let id = tls::load_or_generate(state, None, None, &["n1".to_string()])?;
        assert!(id.generated);
        assert_eq!(mode(&state.join("tls/hostd.key"))?, 0o600);
        // an older database readable by others is narrowed when opened
        let old = state.join("old.db");
        std::fs::write(&old, b"")?;
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644))?;
        Db::open(&old)?;
        assert_eq!(mode(&old)?, 0o600);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::domain::DomainType;

    /// A node on the fake hypervisor in a temporary state directory.
    pub fn fake_node(hv: Arc<dyn Hypervisor>) -> Result<(Node, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        let cfg = Config {
            state_dir: dir.path().to_path_buf(),
            node: "n1".into(),
            libvirt_uri: "fake:///".into(),
            ..Config::default()
        };
        std::env::set_var("KEEL_ADMIN_PASSWORD", "test-password");
        let accel = AccelDecision {
            domain_type: DomainType::Qemu,
            reason: "test".into(),
        };
        let (node, _) = Node::open(cfg, hv, accel)?;
        Ok((node, dir))
    }
}
