//! Cluster formation and status: init, join tokens, join, node removal, fencing devices and
//! the cluster status every node serves.
//!
//! The joiner/member exchange (`JoinRequest` → `JoinResponse`) carries key material; types
//! holding secrets redact them in `Debug`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

/// Default lifetime of a join token.
pub const JOIN_TOKEN_DEFAULT_TTL_S: u64 = 3600;
/// Longest lifetime a join token may be given.
pub const JOIN_TOKEN_MAX_TTL_S: u64 = 7 * 24 * 3600;
/// Corosync token timeout bounds accepted as an override (milliseconds).
pub const TOKEN_MS_MIN: u32 = 300;
pub const TOKEN_MS_MAX: u32 = 60_000;
/// Corosync's knet transport supports links 0..=7; Keel uses link0 and optionally link1.
pub const MAX_LINKS: usize = 2;

/// A cluster or node name: 1-63 letters, digits, '-', starting with a letter or digit
/// (corosync's cluster_name and Pacemaker node names; no dots so names stay host labels).
pub fn valid_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A node name: like a cluster name, dots allowed (hostd's node names).
pub fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn check_addr(field: &str, a: &str) -> Result<(), FieldError> {
    match a.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() || ip.is_multicast() => Err(FieldError::new(
            field,
            format!("{a} cannot be a link address (unspecified or multicast)"),
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(FieldError::new(
            field,
            format!("{a:?} is not an IP address (e.g. 192.0.2.10 or fd00::10)"),
        )),
    }
}

/// Validate a `1h`/`30m`/`90s`/`3600` duration; returns seconds.
pub fn parse_duration_s(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        'd' => (&s[..s.len() - 1], 86400),
        c if c.is_ascii_digit() => (s, 1),
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// `POST /api/v1/cluster/init`: make this node the first member of a new cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterInit {
    /// corosync `cluster_name`: 1-63 letters, digits, '-'.
    #[schema(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$",
        min_length = 1,
        max_length = 63
    )]
    pub name: String,
    /// This node's link0 address; default: the address hostd's API listens on, or the first
    /// global address of the interface holding the default route.
    #[serde(default)]
    pub link0: Option<String>,
    /// Optional second knet link (another network) for redundancy.
    #[serde(default)]
    pub link1: Option<String>,
    /// Override corosync's token timeout (ms); default chosen from the link latency class.
    #[serde(default)]
    #[schema(minimum = 300, maximum = 60_000)]
    pub token_ms: Option<u32>,
}

impl ClusterInit {
    pub fn validate(&self) -> Result<(), FieldError> {
        if !valid_cluster_name(&self.name) {
            return Err(FieldError::new(
                "name",
                format!(
                    "cluster name {:?} is invalid: use 1-63 letters, digits or '-', starting with a letter or digit",
                    self.name
                ),
            ));
        }
        if let Some(a) = &self.link0 {
            check_addr("link0", a)?;
        }
        if let Some(a) = &self.link1 {
            check_addr("link1", a)?;
            if self.link0.as_deref() == Some(a.as_str()) {
                return Err(FieldError::new(
                    "link1",
                    "link1 must be a different address (on another network) than link0",
                ));
            }
        }
        if let Some(t) = self.token_ms {
            if !(TOKEN_MS_MIN..=TOKEN_MS_MAX).contains(&t) {
                return Err(FieldError::new(
                    "token_ms",
                    format!("token_ms {t} is out of range: use {TOKEN_MS_MIN} to {TOKEN_MS_MAX}"),
                ));
            }
        }
        Ok(())
    }
}

/// `POST /api/v1/cluster/join-token`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenCreate {
    /// Lifetime in seconds (default 3600, at most a week).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604_800)]
    pub ttl_s: Option<u64>,
}

impl JoinTokenCreate {
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(t) = self.ttl_s {
            if t == 0 || t > JOIN_TOKEN_MAX_TTL_S {
                return Err(FieldError::new(
                    "ttl_s",
                    format!("ttl_s {t} is out of range: use 1 to {JOIN_TOKEN_MAX_TTL_S} seconds"),
                ));
            }
        }
        Ok(())
    }
}

/// A one-time join token: shown once, stored only as a hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// SHA-256 of the issuing node's current API certificate (`AB:CD:…`), the value
    /// `keel join --fingerprint` pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The issuing node's API address (`HOST:PORT`) as the cluster records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl JoinToken {
    /// The command to run on the new node, as root.
    pub fn join_command(&self) -> String {
        format!(
            "keel join {} --fingerprint {} --token {}",
            self.address.as_deref().unwrap_or("ADDRESS"),
            self.fingerprint.as_deref().unwrap_or("FINGERPRINT"),
            self.token
        )
    }
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("fingerprint", &self.fingerprint)
            .field("address", &self.address)
            .finish()
    }
}

/// How a joiner proves it may join.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JoinAuth {
    /// A one-time token from `keel cluster join-token`.
    Token(String),
    /// The member's root password.
    Password(String),
}

impl std::fmt::Debug for JoinAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinAuth::Token(_) => f.write_str("Token(<redacted>)"),
            JoinAuth::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// `POST /api/v1/cluster/local-join` on the joiner's own hostd (root only, local): contact
/// `address`, pin `fingerprint`, and join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalJoin {
    /// `HOST` or `HOST:PORT` of a member's API (port 8006 by default).
    pub address: String,
    /// SHA-256 fingerprint of the member's API certificate (`AB:CD:…`).
    pub fingerprint: String,
    pub auth: JoinAuth,
    /// This node's link0 address; default: the local address used to reach the member.
    #[serde(default)]
    pub link0: Option<String>,
    #[serde(default)]
    pub link1: Option<String>,
}

/// Normalize a fingerprint to `AB:CD:…` (accepts lower case, no colons, a `SHA256:` prefix).
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix("SHA256:")
        .or_else(|| s.strip_prefix("sha256:"))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    Some(
        up.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

impl LocalJoin {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.address.trim().is_empty() || self.address.contains(['/', ' ']) {
            return Err(FieldError::new(
                "address",
                format!(
                    "{:?} is not HOST or HOST:PORT of a cluster member's API",
                    self.address
                ),
            ));
        }
        if normalize_fingerprint(&self.fingerprint).is_none() {
            return Err(FieldError::new(
                "fingerprint",
                "fingerprint must be the 32-byte SHA-256 of the member's certificate as hex (AB:CD:… as keel-hostd prints it)",
            ));
        }
        match &self.auth {
            JoinAuth::Token(t) | JoinAuth::Password(t) if t.is_empty() => {
                return Err(FieldError::new("auth", "empty join token or password"))
            }
            _ => {}
        }
        if let Some(a) = &self.link0 {
            check_addr("link0", a)?;
        }
        if let Some(a) = &self.link1 {
            check_addr("link1", a)?;
        }
        Ok(())
    }
}

/// `POST /api/v1/cluster/join`: sent by the joiner's hostd to a member over HTTPS pinned to
/// the member's fingerprint.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub auth: JoinAuth,
    /// The joiner's node name (becomes its corosync/Pacemaker name).
    #[schema(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$",
        min_length = 1,
        max_length = 63
    )]
    pub node: String,
    /// link0 (and optional link1) addresses of the joiner.
    pub links: Vec<String>,
    /// The joiner's SSH host public keys (`ssh-ed25519 AAAA…` lines).
    #[serde(default)]
    pub ssh_host_keys: Vec<String>,
    /// The joiner's root SSH public key (for migration transport).
    #[serde(default)]
    pub root_ssh_key: Option<String>,
    /// The joiner's certificate signing request (PEM) for its API certificate.
    pub csr_pem: String,
    /// Port of the joiner's API (its address is link0).
    #[serde(default = "default_api_port")]
    pub api_port: u16,
}

pub const DEFAULT_API_PORT: u16 = 8006;

fn default_api_port() -> u16 {
    DEFAULT_API_PORT
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("auth", &self.auth)
            .field("node", &self.node)
            .field("links", &self.links)
            .field("ssh_host_keys", &self.ssh_host_keys.len())
            .finish_non_exhaustive()
    }
}

impl JoinRequest {
    pub fn validate(&self) -> Result<(), FieldError> {
        if !valid_node_name(&self.node) {
            return Err(FieldError::new(
                "node",
                format!(
                    "node name {:?} is invalid: use 1-63 letters, digits, '-' or '.'",
                    self.node
                ),
            ));
        }
        if self.links.is_empty() || self.links.len() > MAX_LINKS {
            return Err(FieldError::new(
                "links",
                format!("give 1 to {MAX_LINKS} link addresses (link0, optional link1)"),
            ));
        }
        for (i, a) in self.links.iter().enumerate() {
            check_addr(&format!("links[{i}]"), a)?;
        }
        for (i, k) in self.ssh_host_keys.iter().enumerate() {
            check_ssh_key(&format!("ssh_host_keys[{i}]"), k)?;
        }
        if let Some(k) = &self.root_ssh_key {
            check_ssh_key("root_ssh_key", k)?;
        }
        if !self.csr_pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
            return Err(FieldError::new(
                "csr_pem",
                "csr_pem must be a PEM certificate signing request",
            ));
        }
        Ok(())
    }
}

/// An OpenSSH public key line: `TYPE BASE64 [comment]`, one line.
pub fn check_ssh_key(field: &str, k: &str) -> Result<(), FieldError> {
    let mut it = k.split_whitespace();
    let ok = matches!(
        (it.next(), it.next()),
        (Some(t), Some(b)) if (t.starts_with("ssh-") || t.starts_with("ecdsa-"))
            && b.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
    ) && !k.contains('\n');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "not an OpenSSH public key line (TYPE BASE64 [comment])",
        ))
    }
}

/// What a member sends back to a joiner: everything it needs to start corosync and Pacemaker.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinResponse {
    pub cluster_name: String,
    /// The joiner's corosync node id.
    pub nodeid: u32,
    /// corosync.conf as now on every member (the joiner already included).
    pub corosync_conf: String,
    /// `/etc/corosync/authkey`, base64.
    pub corosync_authkey_b64: String,
    /// `/etc/pacemaker/authkey`, base64.
    pub pacemaker_authkey_b64: String,
    /// The joiner's API certificate, signed by the cluster CA (PEM).
    pub cert_pem: String,
    /// The cluster CA certificate (PEM).
    pub ca_pem: String,
    /// The cluster CA key (PEM): every member can sign the next joiner's certificate.
    pub ca_key_pem: String,
    /// `ssh_known_hosts` lines for every member (`name,addr… TYPE KEY`).
    pub known_hosts: Vec<String>,
    /// Root public keys of every member (for `authorized_keys`).
    pub authorized_keys: Vec<String>,
    /// Members as `(name, API address)`, for the joiner's records.
    pub members: Vec<ClusterNode>,
    /// Pacemaker CIB secrets of the fence devices (resource → parameter → value): the CIB holds
    /// `lrm://` for them, and every node's fencer reads the value from its own files.
    #[serde(default)]
    pub fence_secrets:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

impl std::fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinResponse")
            .field("cluster_name", &self.cluster_name)
            .field("nodeid", &self.nodeid)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

/// A cluster member as configured (corosync nodelist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterNode {
    pub name: String,
    pub nodeid: u32,
    /// link0, link1 addresses.
    pub links: Vec<String>,
    /// `HOST:PORT` of the member's API.
    #[serde(default)]
    pub api: String,
}

/// One knet link of a member as seen from the answering node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkStatus {
    pub link: u32,
    pub address: String,
    pub connected: bool,
}

/// A member in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberStatus {
    pub name: String,
    pub nodeid: u32,
    /// Online in Pacemaker (and a corosync member).
    pub online: bool,
    #[serde(default)]
    pub standby: bool,
    #[serde(default)]
    pub unclean: bool,
    pub votes: u32,
    pub links: Vec<LinkStatus>,
    pub is_dc: bool,
    /// Id of the fence device that fences this node, if any.
    pub fence_device: Option<String>,
    /// Last fence test of this node.
    pub last_fence_test: Option<FenceTestResult>,
}

/// A failed resource action from `crm_mon`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FailedAction {
    pub resource: String,
    pub node: String,
    pub operation: String,
    pub status: String,
}

/// `GET /api/v1/cluster/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    /// False when this node is not in a cluster (all other fields empty).
    pub clustered: bool,
    pub name: String,
    /// The node that answered.
    pub local_node: String,
    pub quorate: bool,
    pub expected_votes: u32,
    pub total_votes: u32,
    /// `two_node` mode is on (exactly two nodes).
    pub two_node: bool,
    pub members: Vec<MemberStatus>,
    pub dc: Option<String>,
    pub stonith_enabled: bool,
    pub failed_actions: Vec<FailedAction>,
    /// Operator-facing remarks (e.g. "single node: no redundancy until a second node joins").
    pub notes: Vec<String>,
    /// The cluster daemons of the node that answered (corosync, Pacemaker, keel-clusterd).
    #[serde(default)]
    pub daemons: Vec<DaemonStatus>,
    /// The replicated config store as seen from the node that answered (`None` when not
    /// clustered).
    #[serde(default)]
    pub store: Option<StoreState>,
    /// The QDevice (null when not clustered).
    #[serde(default)]
    pub qdevice: Option<QdeviceStatus>,
}

/// How a cluster daemon of this node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DaemonRunState {
    /// Its process is alive (not a zombie).
    Running,
    /// It died (or never started) and is not being restarted: see `message`.
    Dead,
    /// It died and Keel restarts it (after `next_attempt`).
    Restarting,
    /// Stopped on purpose by Keel (node removal, leave): not restarted.
    Stopped,
}

/// How a daemon's last process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DaemonExit {
    /// Unix time (seconds) of the exit, when known.
    pub at: Option<u64>,
    /// `exit status 1`, `killed by signal 9 (SIGKILL)`, …
    pub status: String,
    pub pid: Option<u32>,
}

/// One cluster daemon of the node that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DaemonStatus {
    /// `corosync`, `pacemaker` or `keel-clusterd`.
    pub name: String,
    pub state: DaemonRunState,
    pub pid: Option<u32>,
    /// Unix time (seconds) since when it is in this state (started, or died).
    pub since: Option<u64>,
    /// Restarts after an unexpected exit since hostd (or systemd) started.
    pub restarts: u32,
    pub last_exit: Option<DaemonExit>,
    /// Unix time (seconds) of the next restart attempt (`restarting`).
    #[serde(default)]
    pub next_attempt: Option<u64>,
    /// Why it is not running or not restarted (e.g. "waiting for corosync: …").
    #[serde(default)]
    pub message: Option<String>,
    /// `direct` or `systemd`.
    pub manager: String,
}

/// The replicated config store as seen from one node (its keel-clusterd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreState {
    /// keel-clusterd answered on its socket.
    pub reachable: bool,
    /// Why it did not (when `reachable` is false).
    pub error: Option<String>,
    /// Writes delivered now would be applied.
    pub writable: bool,
    /// Why writes are refused, when they are (not quorate, syncing, held, unreachable).
    pub read_only_reason: Option<String>,
    /// The two-node hold, when writes are held.
    pub held: Option<String>,
    /// Store version of this node's copy.
    pub version: Option<u64>,
    pub syncing: bool,
    /// Node ids running keel-clusterd in this node's view.
    pub members: Vec<u32>,
    pub entries: Option<u64>,
}

/// The fence agent of a device, by its program name on the wire (`"fence_ipmilan"`): the three
/// Keel models with typed parameters, or any other installed fence-agents program
/// (`fence_virsh`, …) whose parameters are passed as given and checked against the agent's own
/// metadata (`fence_X -o metadata`) before anything is configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FenceAgentKind {
    FenceIpmilan,
    FenceRedfish,
    Sbd,
    /// Diskless SBD: the node's own watchdog, fed by sbd while the node is quorate
    /// (`fence_watchdog`, Pacemaker's `stonith-watchdog-timeout`).
    Watchdog,
    /// Another fence-agents program, e.g. `fence_virsh`.
    Agent(String),
}

impl FenceAgentKind {
    /// The wire name: `fence_ipmilan`, `fence_redfish`, `sbd`, `watchdog`, or the program name.
    pub fn as_str(&self) -> &str {
        match self {
            FenceAgentKind::FenceIpmilan => "fence_ipmilan",
            FenceAgentKind::FenceRedfish => "fence_redfish",
            FenceAgentKind::Sbd => "sbd",
            FenceAgentKind::Watchdog => "watchdog",
            FenceAgentKind::Agent(p) => p,
        }
    }

    /// From a wire or program name (`fence_sbd` is `sbd`, `fence_watchdog` is `watchdog`).
    pub fn from_name(s: &str) -> FenceAgentKind {
        match s {
            "fence_ipmilan" => FenceAgentKind::FenceIpmilan,
            "fence_redfish" => FenceAgentKind::FenceRedfish,
            "sbd" | "fence_sbd" => FenceAgentKind::Sbd,
            "watchdog" | "fence_watchdog" => FenceAgentKind::Watchdog,
            other => FenceAgentKind::Agent(other.to_string()),
        }
    }
}

/// A fence-agents program name: `fence_` then lower-case letters, digits or `_`.
pub fn valid_agent_program(s: &str) -> bool {
    s.len() <= 64
        && s.strip_prefix("fence_").is_some_and(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

impl Serialize for FenceAgentKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FenceAgentKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(FenceAgentKind::from_name(&s))
    }
}

impl utoipa::PartialSchema for FenceAgentKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(sbd|watchdog|fence_[a-z0-9_]{1,58})$"))
            .description(Some(
                "fence_ipmilan, fence_redfish, sbd (a shared disk), watchdog (diskless SBD), or \
                 another installed fence-agents program",
            ))
            .examples([serde_json::json!("fence_ipmilan")])
            .into()
    }
}

impl ToSchema for FenceAgentKind {
    fn name() -> std::borrow::Cow<'static, str> {
        "FenceAgentKind".into()
    }
}

/// `POST /api/v1/cluster/fencing`: a fence device for one node.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FenceDeviceSpec {
    /// The node this device fences (never placed on that node).
    pub node: String,
    pub agent: FenceAgentKind,
    /// Agent parameters (e.g. `ip`, `username`, `lanplus`; for `sbd`: `devices`, comma-separated
    /// stable paths of 1 to 3 shared disks, and `watchdog_timeout` in seconds, 3 to 20, default 5;
    /// for `watchdog`: `watchdog_timeout` only; `lab_dir` for the lab agent).
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
    /// Secret parameters (e.g. `password`): stored 0600, never logged or returned.
    #[serde(default)]
    pub secrets: std::collections::BTreeMap<String, String>,
    /// Static fence delay (s), for the preferred survivor of a two-node split.
    #[serde(default)]
    pub delay_base_s: Option<u32>,
}

impl std::fmt::Debug for FenceDeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceDeviceSpec")
            .field("node", &self.node)
            .field("agent", &self.agent)
            .field("params", &self.params)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("delay_base_s", &self.delay_base_s)
            .finish()
    }
}

impl FenceDeviceSpec {
    pub fn validate(&self) -> Result<(), FieldError> {
        if !valid_node_name(&self.node) {
            return Err(FieldError::new(
                "node",
                format!("{:?} is not a node name", self.node),
            ));
        }
        if let FenceAgentKind::Agent(p) = &self.agent {
            if !valid_agent_program(p) {
                return Err(FieldError::new(
                    "agent",
                    format!(
                        "{p:?} is not a fence agent: use fence_ipmilan, fence_redfish, sbd, watchdog or the name of an installed fence-agents program (fence_...)"
                    ),
                ));
            }
        }
        for (k, v) in self.params.iter().chain(self.secrets.iter()) {
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(FieldError::new(
                    &format!("params.{k}"),
                    "parameter names are letters, digits, '_' or '-'",
                ));
            }
            if v.contains(['\n', '\0']) {
                return Err(FieldError::new(
                    &format!("params.{k}"),
                    "values cannot contain newlines or NUL",
                ));
            }
        }
        if let Some(k) = self.params.keys().find(|k| self.secrets.contains_key(*k)) {
            return Err(FieldError::new(
                &format!("secrets.{k}"),
                "a parameter cannot be both plain and secret",
            ));
        }
        if let Some(d) = self.delay_base_s {
            if d > 120 {
                return Err(FieldError::new(
                    "delay_base_s",
                    format!("delay_base_s {d} is out of range: use 0 to 120"),
                ));
            }
        }
        Ok(())
    }
}

/// A fence device as listed (secrets never included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FenceDeviceInfo {
    pub id: String,
    pub node: String,
    pub agent: FenceAgentKind,
    pub params: std::collections::BTreeMap<String, String>,
    /// Names of the secret parameters that are set.
    pub secret_keys: Vec<String>,
    pub last_test: Option<FenceTestResult>,
    /// Seconds Pacemaker waits before fencing this node (`pcmk_delay_base`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_base_s: Option<u32>,
    /// The device's configuration generation now: `last_test` proves fencing only while its
    /// `device_generation` is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
}

/// Outcome of `keel fence test NODE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FenceTestResult {
    /// Unix seconds.
    pub at: i64,
    pub ok: bool,
    /// The action the device performed: `off` when the test asked for it or when the device is
    /// set to `action=off` (Pacemaker then turns a reboot into an off), `reboot` otherwise.
    pub action: String,
    pub message: String,
    /// The configuration generation of the device the test went through (its
    /// `keel-generation` meta attribute in the CIB). A test proves fencing only while the
    /// device still has this generation: any change through `keel fence add` makes a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_generation: Option<String>,
}

/// A key of the replicated config store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigEntry {
    pub key: String,
    /// Store version of the write that last set it (the compare-and-swap token).
    pub version: u64,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// `PUT /api/v1/cluster/config/{key}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigPut {
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// Only write if the key is still at this version (0: only if it does not exist).
    #[serde(default)]
    pub version: Option<u64>,
}

/// A config store key: 1-256 characters of letters, digits, `/`, `-`, `_`, `.`; no empty
/// path segments.
pub fn valid_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 256
        && !k.starts_with('/')
        && !k.ends_with('/')
        && !k.contains("//")
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
}

/// One entry of `GET /api/v1/cluster/resources`: a VM of any member, from the config store's
/// `/vms/<vmid>` records (written by the owning node on create, update and adopt; removed on
/// delete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterResource {
    /// Always `"vm"` for now.
    #[serde(rename = "type")]
    pub kind: String,
    /// `vm/<vmid>`.
    pub id: String,
    pub vmid: u32,
    /// The node the VM is defined on.
    pub node: String,
    pub name: String,
    /// The VM's configuration as last recorded by its node.
    #[serde(default)]
    pub spec: Option<crate::vm::VmSpec>,
}

/// `DELETE /api/v1/cluster/nodes/{name}` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRemoveQuery {
    /// Remove even if the cluster would lose quorum.
    #[serde(default)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_token_command_and_wire_form() -> Result<(), serde_json::Error> {
        let mut t = JoinToken {
            token: "tok".into(),
            expires_at: 5,
            fingerprint: None,
            address: None,
        };
        assert_eq!(
            t.join_command(),
            "keel join ADDRESS --fingerprint FINGERPRINT --token tok"
        );
        // an older hostd's answer (no fingerprint/address) still parses
        let old: JoinToken = serde_json::from_str(r#"{"token":"tok","expires_at":5}"#)?;
        assert_eq!(old, t);
        t.fingerprint = Some("AB:CD".into());
        t.address = Some("[fd00::1]:8006".into());
        assert_eq!(
            t.join_command(),
            "keel join [fd00::1]:8006 --fingerprint AB:CD --token tok"
        );
        assert!(
            !format!("{t:?}").contains("tok\""),
            "token redacted in Debug"
        );
        Ok(())
    }

    fn field_of(r: Result<(), FieldError>) -> String {
        match r {
            Err(e) => e.field,
            Ok(()) => "<accepted>".into(),
        }
    }

    fn init() -> ClusterInit {
        ClusterInit {
            name: "prod-1".into(),
            link0: Some("192.0.2.1".into()),
            link1: None,
            token_ms: None,
        }
    }

    #[test]
    fn init_validation_names_the_field() {
        assert!(init().validate().is_ok());
        let mut i = init();
        i.name = "bad name".into();
        assert_eq!(field_of(i.validate()), "name");
        let mut i = init();
        i.link0 = Some("node1".into());
        assert_eq!(field_of(i.validate()), "link0");
        let mut i = init();
        i.link1 = Some("192.0.2.1".into());
        assert_eq!(field_of(i.validate()), "link1");
        let mut i = init();
        i.token_ms = Some(10);
        assert_eq!(field_of(i.validate()), "token_ms");
        let mut i = init();
        i.link0 = Some("0.0.0.0".into());
        assert_eq!(field_of(i.validate()), "link0");
    }

    #[test]
    fn fingerprints_normalize() {
        let hex = "ab".repeat(32);
        let want = vec!["AB"; 32].join(":");
        assert_eq!(normalize_fingerprint(&hex).as_deref(), Some(want.as_str()));
        assert_eq!(
            normalize_fingerprint(&format!("SHA256:{want}")).as_deref(),
            Some(want.as_str())
        );
        assert_eq!(normalize_fingerprint("AB:CD"), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_s("30m"), Some(1800));
        assert_eq!(parse_duration_s("1h"), Some(3600));
        assert_eq!(parse_duration_s("90"), Some(90));
        assert_eq!(parse_duration_s("x"), None);
    }

    #[test]
    fn secrets_never_in_debug() {
        let a = JoinAuth::Password("hunter2".into());
        assert!(!format!("{a:?}").contains("hunter2"));
        let mut f = FenceDeviceSpec {
            node: "n1".into(),
            agent: FenceAgentKind::FenceIpmilan,
            params: Default::default(),
            secrets: Default::default(),
            delay_base_s: None,
        };
        f.secrets.insert("password".into(), "hunter2".into());
        assert!(!format!("{f:?}").contains("hunter2"));
        assert!(f.validate().is_ok());
        f.params.insert("password".into(), "x".into());
        assert_eq!(field_of(f.validate()), "secrets.password");
    }

    #[test]
    fn fence_agents_by_program_name() -> Result<(), serde_json::Error> {
        for (wire, kind) in [
            ("fence_ipmilan", FenceAgentKind::FenceIpmilan),
            ("sbd", FenceAgentKind::Sbd),
            ("watchdog", FenceAgentKind::Watchdog),
            ("fence_virsh", FenceAgentKind::Agent("fence_virsh".into())),
        ] {
            assert_eq!(serde_json::to_value(&kind)?, serde_json::json!(wire));
            assert_eq!(
                serde_json::from_value::<FenceAgentKind>(serde_json::json!(wire))?,
                kind
            );
        }
        let mut f = FenceDeviceSpec {
            node: "node2".into(),
            agent: FenceAgentKind::Agent("fence_virsh".into()),
            params: Default::default(),
            secrets: Default::default(),
            delay_base_s: None,
        };
        assert!(f.validate().is_ok());
        f.agent = FenceAgentKind::from_name("../../bin/sh");
        assert_eq!(field_of(f.validate()), "agent");
        Ok(())
    }

    #[test]
    fn join_request_validation() {
        let r = JoinRequest {
            auth: JoinAuth::Token("t".into()),
            node: "node2".into(),
            links: vec!["fd00::2".into()],
            ssh_host_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== root@n".into()],
            root_ssh_key: None,
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n".into(),
            api_port: 8006,
        };
        assert!(r.validate().is_ok());
        let mut b = r.clone();
        b.links.clear();
        assert_eq!(field_of(b.validate()), "links");
        let mut b = r.clone();
        b.ssh_host_keys = vec!["garbage".into()];
        assert_eq!(field_of(b.validate()), "ssh_host_keys[0]");
    }
}

/// `PUT /api/v1/cluster/vip`: the cluster's floating management address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VipSet {
    /// `ADDRESS/PREFIX` on the nodes' management network, e.g. `192.0.2.10/24`; not a node's
    /// own address.
    pub address: String,
}

/// The floating management address and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VipStatus {
    /// `ADDRESS/PREFIX`, or null when none is configured.
    pub address: Option<String>,
    /// The node holding it now (null: not started, or Pacemaker does not answer).
    pub running_on: Option<String>,
    /// Pacemaker recorded a failed operation on it (see the cluster status's failed actions).
    pub failed: bool,
    /// `https://ADDRESS:PORT/` of the UI and API when configured.
    pub url: Option<String>,
}

/// `POST /api/v1/cluster/qdevice`: add a QDevice (a corosync-qnetd arbiter's vote) to a
/// two-node cluster. The certificates come from the qnetd host (docs/cluster.md, "QDevice").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QdeviceAdd {
    /// The qnetd host: an IP address or a DNS name every node resolves.
    #[schema(max_length = 253)]
    pub host: String,
    /// qnetd's TCP port (default 5403).
    #[serde(default)]
    pub port: Option<u16>,
    /// `ffsplit` (default) or `lms`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// The qnetd CA certificate, PEM (`/etc/corosync/qnetd/nssdb/qnetd-cacert.crt` on the
    /// qnetd host).
    #[schema(max_length = 16384)]
    pub ca_cert_pem: String,
    /// The cluster's certificate and key signed by that CA, PKCS#12 in base64 (the
    /// `qdevice-net-node.p12` that `corosync-qdevice-net-certutil -M` wrote).
    #[schema(max_length = 65536)]
    pub cluster_p12_b64: String,
}

/// The QDevice as configured in corosync.conf and as votequorum counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QdeviceStatus {
    /// A QDevice is configured (the other fields are empty when not).
    pub configured: bool,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub algorithm: Option<String>,
    /// Its vote as `corosync-quorumtool -s` counts it on the answering node (null: not
    /// registered with votequorum, e.g. corosync-qdevice not running).
    pub votes: Option<u32>,
    /// corosync-qdevice runs on the answering node.
    pub daemon_running: bool,
}
