//! hostd's configuration: `/etc/keel/hostd.toml` (strict: unknown keys are errors), then flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccelSetting {
    /// Probe: KVM if a real guest kernel runs under it, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Node name (default: the host name).
    pub node: String,
    /// Address and port of the HTTPS API.
    pub listen: String,
    /// Database, certificates, default pool, serial logs.
    pub state_dir: PathBuf,
    pub libvirt_uri: String,
    pub accel: AccelSetting,
    /// Kernel used to probe KVM (default: `<state_dir>/live/vmlinuz`, then /boot/vmlinuz-*).
    pub probe_kernel: Option<PathBuf>,
    /// Bring-your-own certificate and key (PEM). Default: generated self-signed.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Name of the default `dir` pool under `<state_dir>/images`.
    pub default_pool: String,
    /// Directory of the built web UI, served at `/` when present.
    pub ui_dir: Option<PathBuf>,
    /// How cluster daemons (corosync, Pacemaker, keel-clusterd) are started.
    pub service_manager: ServiceManagerKind,
    /// Cluster formation paths and settings (`[cluster]`).
    pub cluster: ClusterConfig,
    /// Seconds a client may take to send its request headers, and may stay silent while
    /// sending a body, before the connection is dropped (slow-client protection; an upload
    /// that keeps sending is never cut).
    pub client_idle_timeout_s: u64,
    /// Milliseconds between the backup scheduler's passes (default 20000).
    pub backup_scheduler_tick_ms: u64,
    /// Seconds between two samples of the performance graphs (node and VMs; default 10,
    /// 0 = no sampling).
    pub metrics_interval_s: u64,
    /// Where libvirt's and QEMU's TLS files for migration are written (`[migration]`).
    pub migration: MigrationConfig,
    /// systemd-networkd's directory: Keel's files there are the node's host network
    /// configuration (docs/host-networks.md).
    pub network_dir: PathBuf,
    /// Where `nfs` backup targets are mounted, one directory per target (default
    /// `/run/keel/backup-nfs`).
    pub backup_nfs_dir: PathBuf,
}

/// `[migration]` in hostd.toml: the TLS files hostd writes from the node's cluster certificate
/// at init/join (and at every start of a member) so libvirtd (`listen_tls`) and QEMU (native
/// TLS migration, NBD disk copy) authenticate members by the cluster CA. Defaults: Debian's
/// locations, which libvirtd and QEMU read without configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationConfig {
    /// libvirt's CA certificate (`ca_file` of libvirtd.conf, and the client's).
    pub ca_file: PathBuf,
    /// libvirtd's server certificate and key (`cert_file`, `key_file`).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The libvirt client certificate and key this node's libvirtd presents to a peer's.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A directory holding `cacert.pem`, `clientcert.pem` and `clientkey.pem`, passed as
    /// `?pkipath=` in the peer URI when the client files are not at libvirt's defaults (the
    /// netns lab); hostd writes the three files there too.
    pub client_pkipath: Option<PathBuf>,
    /// QEMU's `default_tls_x509_cert_dir`: `ca-cert.pem`, `server-cert.pem`,
    /// `server-key.pem`, `client-cert.pem`, `client-key.pem`.
    pub qemu_tls_dir: PathBuf,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            ca_file: "/etc/pki/CA/cacert.pem".into(),
            server_cert: "/etc/pki/libvirt/servercert.pem".into(),
            server_key: "/etc/pki/libvirt/private/serverkey.pem".into(),
            client_cert: "/etc/pki/libvirt/clientcert.pem".into(),
            client_key: "/etc/pki/libvirt/private/clientkey.pem".into(),
            client_pkipath: None,
            qemu_tls_dir: "/etc/pki/qemu".into(),
        }
    }
}

/// `service_manager`: `systemd` units, or `direct` (hostd spawns the daemons with pidfiles:
/// hosts without systemd, the netns lab). `auto`: systemd when it runs (`/run/systemd/system`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServiceManagerKind {
    #[default]
    Auto,
    Systemd,
    Direct,
}

/// `[cluster]` in hostd.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub corosync_dir: PathBuf,
    pub pacemaker_dir: PathBuf,
    /// Pacemaker's CIB directory.
    pub pacemaker_cib_dir: PathBuf,
    /// Where the node's SSH host keys (`ssh_host_*_key.pub`) are.
    pub ssh_dir: PathBuf,
    /// The system-wide known_hosts file Keel pins members' host keys in.
    pub known_hosts: PathBuf,
    /// root's `.ssh` (migration key, authorized_keys).
    pub root_ssh_dir: PathBuf,
    /// keel-clusterd binary (default: next to keel-hostd, else not started).
    pub clusterd_bin: Option<PathBuf>,
    /// Default lifetime of join tokens, seconds.
    pub join_token_ttl_s: u64,
    /// Where HA VMs' domain XML is materialized from the config store (the same path on every
    /// node: Pacemaker's VirtualDomain starts the VM from it).
    pub ha_config_dir: PathBuf,
    /// Memory (MiB) each node keeps for itself in the N+1 check of HA VMs.
    pub ha_host_reserve_mib: u64,
    /// Live-migrate VMs whose disks are on a shared pool (HA VMs, and others whose shared-pool
    /// disks are not copied) with libvirt's `--unsafe`: only for shared pools on a file system
    /// libvirt does not recognize as shared (NFS, GFS2, OCFS2, CephFS… it does), whose sharing
    /// Keel's marker has proven — the netns lab's shared directory. Set it on every node.
    pub ha_migrate_unsafe: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            corosync_dir: "/etc/corosync".into(),
            pacemaker_dir: "/etc/pacemaker".into(),
            pacemaker_cib_dir: "/var/lib/pacemaker/cib".into(),
            ssh_dir: "/etc/ssh".into(),
            known_hosts: "/etc/ssh/ssh_known_hosts".into(),
            root_ssh_dir: "/root/.ssh".into(),
            clusterd_bin: None,
            join_token_ttl_s: keel_api::cluster::JOIN_TOKEN_DEFAULT_TTL_S,
            ha_config_dir: "/var/lib/keel/ha".into(),
            ha_host_reserve_mib: 1024,
            ha_migrate_unsafe: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: hostname(),
            listen: "0.0.0.0:8006".into(),
            state_dir: PathBuf::from("/var/lib/keel"),
            libvirt_uri: "qemu:///system".into(),
            accel: AccelSetting::Auto,
            probe_kernel: None,
            tls_cert: None,
            tls_key: None,
            default_pool: "local".into(),
            ui_dir: None,
            service_manager: ServiceManagerKind::Auto,
            cluster: ClusterConfig::default(),
            client_idle_timeout_s: 20,
            backup_scheduler_tick_ms: 20_000,
            metrics_interval_s: 10,
            migration: MigrationConfig::default(),
            network_dir: PathBuf::from(netcfg::NETWORKD_DIR),
            backup_nfs_dir: PathBuf::from(crate::backup::nfs::MOUNT_ROOT),
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}: {err}")]
    Parse { path: String, err: String },
    #[error("{path}: {field}: {msg}")]
    Invalid {
        path: String,
        field: &'static str,
        msg: String,
    },
}

impl Config {
    /// Load `path` if it exists (a missing default file means defaults).
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Config::default())
            }
            Err(err) => return Err(ConfigError::Read { path: p, err }),
        };
        let c: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: p.clone(),
            err: e.to_string(),
        })?;
        c.validate(&p)?;
        Ok(c)
    }

    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let inv = |field, msg: String| {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                field,
                msg,
            })
        };
        if self.node.is_empty()
            || !self
                .node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return inv(
                "node",
                format!(
                    "{:?} is not a valid node name (letters, digits, '-', '.')",
                    self.node
                ),
            );
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return inv(
                "listen",
                format!("{:?} is not ADDRESS:PORT (e.g. 0.0.0.0:8006)", self.listen),
            );
        }
        if !self.state_dir.is_absolute() {
            return inv(
                "state_dir",
                format!("{} is not an absolute path", self.state_dir.display()),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return inv("tls_cert", "tls_cert and tls_key go together".into());
        }
        let c = &self.cluster;
        for (field, p) in [
            ("cluster.corosync_dir", &c.corosync_dir),
            ("cluster.pacemaker_dir", &c.pacemaker_dir),
            ("cluster.pacemaker_cib_dir", &c.pacemaker_cib_dir),
            ("cluster.ssh_dir", &c.ssh_dir),
            ("cluster.known_hosts", &c.known_hosts),
            ("cluster.root_ssh_dir", &c.root_ssh_dir),
        ] {
            if !p.is_absolute() {
                return inv(field, format!("{} is not an absolute path", p.display()));
            }
        }
        let m = &self.migration;
        for (field, p) in [
            ("migration.ca_file", &m.ca_file),
            ("migration.server_cert", &m.server_cert),
            ("migration.server_key", &m.server_key),
            ("migration.client_cert", &m.client_cert),
            ("migration.client_key", &m.client_key),
            ("migration.qemu_tls_dir", &m.qemu_tls_dir),
        ]
        .into_iter()
        .chain(
            m.client_pkipath
                .as_ref()
                .map(|p| ("migration.client_pkipath", p)),
        ) {
            if !p.is_absolute() {
                return inv(field, format!("{} is not an absolute path", p.display()));
            }
        }
        if c.join_token_ttl_s == 0 || c.join_token_ttl_s > keel_api::cluster::JOIN_TOKEN_MAX_TTL_S {
            return inv(
                "cluster.join_token_ttl_s",
                format!(
                    "{} is out of range: use 1 to {} seconds",
                    c.join_token_ttl_s,
                    keel_api::cluster::JOIN_TOKEN_MAX_TTL_S
                ),
            );
        }
        let finest = u64::from(keel_api::metrics::MetricsRange::Hour.step_s());
        if self.metrics_interval_s > finest {
            return inv(
                "metrics_interval_s",
                format!(
                    "{} is too long: use 1 to {finest} seconds (the hour graph has a point every {finest} s), or 0 to stop sampling",
                    self.metrics_interval_s
                ),
            );
        }
        if !keel_api::vm::valid_object_name(&self.default_pool) {
            return inv(
                "default_pool",
                format!("{:?} is not a valid pool name", self.default_pool),
            );
        }
        Ok(())
    }

    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("hostd.db")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }
    pub fn serial_dir(&self) -> PathBuf {
        self.state_dir.join("serial")
    }
}
