//! Cluster formation on one node: what `init`, `join` (both sides) and `remove` do to local
//! files and daemons. hostd drives these as tasks and does the HTTP between nodes; nothing
//! here talks to another node.
//!
//! Files (paths configurable for labs and non-Debian hosts, see [`Paths`]):
//! `/etc/corosync/corosync.conf` (0644), `/etc/corosync/authkey` (0400),
//! `/etc/corosync/uidgid.d/pacemaker`, `/etc/pacemaker/authkey` (0640 root:haclient),
//! `<state>/cluster/{cluster.json, ca.crt, ca.key (0600), node.crt, node.key (0600)}`,
//! `/etc/ssh/ssh_known_hosts` (pinned host keys of every member), `/root/.ssh/authorized_keys`
//! and `/root/.ssh/id_ed25519` (migration transport).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_api::cluster::JoinResponse;
use keel_runner::{RunError, Runner};
use serde::{Deserialize, Serialize};

use crate::ca::{self, write_file_mode, ClusterCa, NodeIdentity};
use crate::cib::{self, CibUpdate, ClusterProperties};
use crate::commands;
use crate::corosync_conf::{ConfNode, CorosyncConf, LatencyClass, Section};
use crate::crm::{CrmStatus, QuorumInfo};
use crate::service::{self, Daemon, ServiceManager};

#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The node's state forbids it (already clustered, corosync running, would lose quorum…).
    #[error("{0}")]
    Refused(String),
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    #[error("{0}")]
    Failed(String),
}

impl From<crate::corosync_conf::ConfError> for FormError {
    fn from(e: crate::corosync_conf::ConfError) -> Self {
        FormError::Failed(e.to_string())
    }
}
impl From<crate::ca::CaError> for FormError {
    fn from(e: crate::ca::CaError) -> Self {
        FormError::Failed(e.to_string())
    }
}
impl From<RunError> for FormError {
    fn from(e: RunError) -> Self {
        FormError::Failed(e.to_string())
    }
}
impl From<service::ServiceError> for FormError {
    fn from(e: service::ServiceError) -> Self {
        FormError::Failed(e.to_string())
    }
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> FormError + '_ {
    move |e| FormError::Failed(format!("{}: {e}", p.display()))
}

/// Where formation reads and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    pub corosync_dir: PathBuf,
    pub pacemaker_dir: PathBuf,
    /// Pacemaker's CIB directory (`/var/lib/pacemaker/cib`).
    pub pacemaker_cib_dir: PathBuf,
    /// `<hostd state>/cluster`
    pub cluster_dir: PathBuf,
    /// Directory holding `ssh_host_*_key.pub` (the node's SSH host keys).
    pub ssh_dir: PathBuf,
    /// System-wide known_hosts Keel maintains.
    pub known_hosts: PathBuf,
    /// root's `.ssh` directory.
    pub root_ssh_dir: PathBuf,
    /// The sbd daemon's settings (`/etc/default/sbd`), written by `keel fence add --agent sbd`.
    pub sbd_defaults: PathBuf,
}

impl Paths {
    pub fn standard(state_dir: &Path) -> Paths {
        Paths {
            corosync_dir: "/etc/corosync".into(),
            pacemaker_dir: "/etc/pacemaker".into(),
            pacemaker_cib_dir: "/var/lib/pacemaker/cib".into(),
            cluster_dir: state_dir.join("cluster"),
            ssh_dir: "/etc/ssh".into(),
            known_hosts: "/etc/ssh/ssh_known_hosts".into(),
            root_ssh_dir: "/root/.ssh".into(),
            sbd_defaults: "/etc/default/sbd".into(),
        }
    }
    pub fn corosync_conf(&self) -> PathBuf {
        self.corosync_dir.join("corosync.conf")
    }
    pub fn corosync_authkey(&self) -> PathBuf {
        self.corosync_dir.join("authkey")
    }
    pub fn pacemaker_authkey(&self) -> PathBuf {
        self.pacemaker_dir.join("authkey")
    }
    pub fn record(&self) -> PathBuf {
        self.cluster_dir.join("cluster.json")
    }
    pub fn node_cert(&self) -> PathBuf {
        self.cluster_dir.join("node.crt")
    }
    pub fn node_key(&self) -> PathBuf {
        self.cluster_dir.join("node.key")
    }
    /// Pacemaker's CIB-secrets directory (`/var/lib/pacemaker/lrm/secrets`), beside the CIB's.
    pub fn cib_secrets_dir(&self) -> PathBuf {
        self.pacemaker_cib_dir
            .parent()
            .unwrap_or_else(|| Path::new("/var/lib/pacemaker"))
            .join("lrm/secrets")
    }
}

// ------------------------------------------------------------------ CIB secrets

/// Secrets of one fence device: parameter name → value.
pub type DeviceSecrets = std::collections::BTreeMap<String, String>;

fn valid_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !s.starts_with('.')
}

/// Make `<secrets>/<resource>/` hold exactly `secrets`: `<param>` with the value and
/// `<param>.sign` with its md5 (hex), as Pacemaker's `cibsecret` writes them and its fencer
/// and executor check them; root-only (directories 0700, files 0600). An empty map removes the
/// resource's directory. Pacemaker reads at most 255 bytes of a value and strips trailing
/// white space: a value that would not survive that is refused.
pub fn write_cib_secrets(
    paths: &Paths,
    resource: &str,
    secrets: &DeviceSecrets,
) -> Result<(), FormError> {
    use md5::{Digest, Md5};
    use std::os::unix::fs::PermissionsExt;
    validate_cib_secrets(resource, secrets)?;
    let root = paths.cib_secrets_dir();
    let dir = root.join(resource);
    if secrets.is_empty() {
        return match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&dir)(e)),
            _ => Ok(()),
        };
    }
    for d in [&root, &dir] {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(io_err(d))?;
    }
    for (k, v) in secrets {
        write_file_mode(&dir.join(k), v.as_bytes(), 0o600)?;
        let sign = hex::encode(Md5::digest(v.as_bytes()));
        write_file_mode(&dir.join(format!("{k}.sign")), sign.as_bytes(), 0o600)?;
    }
    // parameters no longer secret (or gone) leave no file behind
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let param = name.strip_suffix(".sign").unwrap_or(&name);
            if !secrets.contains_key(param) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// What [`write_cib_secrets`] refuses, checked before anything is written anywhere.
pub fn validate_cib_secrets(resource: &str, secrets: &DeviceSecrets) -> Result<(), FormError> {
    if !valid_secret_name(resource) {
        return Err(FormError::Invalid {
            field: "resource".into(),
            msg: format!("{resource:?} is not a resource id"),
        });
    }
    for (k, v) in secrets {
        if !valid_secret_name(k) {
            return Err(FormError::Invalid {
                field: format!("secrets.{k}"),
                msg: "not a parameter name".into(),
            });
        }
        if v.is_empty() || v.len() > 254 || v.trim_end() != v || v.contains('\n') {
            return Err(FormError::Invalid {
                field: format!("secrets.{k}"),
                msg: "a secret must be 1 to 254 bytes on one line, without trailing spaces \
                      (Pacemaker's CIB secrets cannot hold more)"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Whether each CIB-secret file on this node matches its `.sign` (device → parameter → the
/// md5 of the value equals the signature Pacemaker checks); a value without a readable
/// signature counts as not matching. `cluster verify` reports missing and mismatched ones.
pub fn cib_secret_status(
    paths: &Paths,
) -> Result<std::collections::BTreeMap<String, std::collections::BTreeMap<String, bool>>, FormError>
{
    use md5::{Digest, Md5};
    let root = paths.cib_secrets_dir();
    Ok(read_cib_secrets(paths)?
        .into_iter()
        .map(|(rsc, m)| {
            let signed = m
                .into_iter()
                .map(|(k, v)| {
                    let sign = std::fs::read_to_string(root.join(&rsc).join(format!("{k}.sign")))
                        .unwrap_or_default();
                    let ok = sign.trim() == hex::encode(Md5::digest(v.trim_end().as_bytes()));
                    (k, ok)
                })
                .collect();
            (rsc, signed)
        })
        .collect())
}

/// Every device's secrets on this node (what a joiner receives).
pub fn read_cib_secrets(
    paths: &Paths,
) -> Result<std::collections::BTreeMap<String, DeviceSecrets>, FormError> {
    let mut all = std::collections::BTreeMap::new();
    let root = paths.cib_secrets_dir();
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(all);
    };
    for e in rd.flatten() {
        let rsc = e.file_name().to_string_lossy().to_string();
        if !valid_secret_name(&rsc) || !e.path().is_dir() {
            continue;
        }
        let mut m = DeviceSecrets::new();
        for f in std::fs::read_dir(e.path())
            .map_err(io_err(&e.path()))?
            .flatten()
        {
            let name = f.file_name().to_string_lossy().to_string();
            if name.ends_with(".sign") || !valid_secret_name(&name) {
                continue;
            }
            let v = std::fs::read_to_string(f.path()).map_err(io_err(&f.path()))?;
            m.insert(name, v);
        }
        if !m.is_empty() {
            all.insert(rsc, m);
        }
    }
    Ok(all)
}

/// A member as this node knows it: corosync identity plus its API address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub name: String,
    pub nodeid: u32,
    /// `HOST:PORT` of its HTTPS API (`[v6]:port` for IPv6).
    pub api: String,
}

/// `<state>/cluster/cluster.json`: this node is in cluster `name` as `node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    pub node: String,
    pub nodeid: u32,
    pub members: Vec<MemberRecord>,
    /// Names removed from the cluster (`keel node remove`): their certificates and signatures
    /// are refused; a name leaves this list when it joins again (with a new certificate, and
    /// the authkey rotated at its removal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl ClusterRecord {
    pub fn load(paths: &Paths) -> Result<Option<ClusterRecord>, FormError> {
        let p = paths.record();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| FormError::Failed(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FormError::Failed(format!("{}: {e}", p.display()))),
        }
    }
    pub fn save(&self, paths: &Paths) -> Result<(), FormError> {
        let b = serde_json::to_vec_pretty(self).map_err(|e| FormError::Failed(e.to_string()))?;
        Ok(write_file_mode(&paths.record(), &b, 0o644)?)
    }
}

/// `HOST:PORT` with IPv6 bracketed.
pub fn api_addr(ip: &str, port: u16) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    }
}

/// Refuse to form or join when this node is, or looks, clustered.
pub fn check_unclustered(paths: &Paths, r: &dyn Runner) -> Result<(), FormError> {
    if let Some(r) = ClusterRecord::load(paths)? {
        return Err(FormError::Refused(format!(
            "this node is already a member of cluster {:?} (as {}); remove it from that cluster first",
            r.name, r.node
        )));
    }
    if paths.corosync_conf().exists() {
        return Err(FormError::Refused(format!(
            "{} exists: this node has a corosync configuration Keel did not write; move it away if it is stale",
            paths.corosync_conf().display()
        )));
    }
    if corosync_running(r) {
        return Err(FormError::Refused(
            "corosync is already running on this node; stop it first".into(),
        ));
    }
    Ok(())
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

/// gid of a group from /etc/group.
fn group_gid(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
        })
}

/// Size of a corosync authkey Keel generates (as `corosync-keygen`: 1024 bits).
pub const COROSYNC_AUTHKEY_LEN: usize = 128;

/// A new random corosync authkey: generated by the member removing a node, pushed to the
/// remaining members and installed everywhere with [`install_corosync_authkey`], then made
/// live by one `corosync-cfgtool -R` (corosync 3.1 reconfigures knet's crypto at runtime).
pub fn new_corosync_authkey() -> Vec<u8> {
    random_bytes(COROSYNC_AUTHKEY_LEN)
}

/// Install `key` as the corosync authkey (0400, atomically). corosync accepts 1024 to 4096
/// bits; anything else is refused before the file is touched.
pub fn install_corosync_authkey(paths: &Paths, key: &[u8]) -> Result<(), FormError> {
    if !(128..=512).contains(&key.len()) {
        return Err(FormError::Invalid {
            field: "corosync_authkey".into(),
            msg: format!("{} bytes; corosync needs 128 to 512", key.len()),
        });
    }
    write_file_mode(&paths.corosync_authkey(), key, 0o400)?;
    Ok(())
}

/// Write the corosync and Pacemaker authkeys (modes 0400 and 0640 root:haclient).
fn write_authkeys(paths: &Paths, corosync: &[u8], pacemaker: &[u8]) -> Result<(), FormError> {
    write_file_mode(&paths.corosync_authkey(), corosync, 0o400)?;
    let pk = paths.pacemaker_authkey();
    write_file_mode(&pk, pacemaker, 0o640)?;
    if let Some(gid) = group_gid("haclient") {
        std::os::unix::fs::chown(&pk, Some(0), Some(gid)).map_err(io_err(&pk))?;
    }
    // corosync 3 admits Pacemaker's daemons (hacluster:haclient) to its IPC only when told to
    let uidgid = Section {
        name: "uidgid".into(),
        kvs: vec![
            ("uid".into(), "hacluster".into()),
            ("gid".into(), "haclient".into()),
        ],
        children: vec![],
    };
    let mut root = Section::new("");
    root.children.push(uidgid);
    let text = root.to_text()?;
    write_file_mode(
        &paths.corosync_dir.join("uidgid.d/pacemaker"),
        text.as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// Write corosync.conf (0644).
pub fn write_corosync_conf(paths: &Paths, conf: &CorosyncConf) -> Result<(), FormError> {
    let text = conf.render()?;
    // corosync does not create its log directory
    if let Some(d) = conf
        .logging
        .logfile
        .as_deref()
        .and_then(|f| Path::new(f).parent())
    {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }
    Ok(write_file_mode(
        &paths.corosync_conf(),
        text.as_bytes(),
        0o644,
    )?)
}

pub fn read_corosync_conf(paths: &Paths) -> Result<CorosyncConf, FormError> {
    let p = paths.corosync_conf();
    let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
    Ok(CorosyncConf::parse(&text)?)
}

/// Is a corosync answering on this host (its IPC socket)?
pub fn corosync_running(r: &dyn Runner) -> bool {
    r.run(&commands::corosync_answers())
        .is_ok_and(|o| o.success())
}

/// `corosync-cfgtool -R`: every member re-reads corosync.conf.
pub fn reload_corosync(r: &dyn Runner) -> Result<(), FormError> {
    r.run_ok(&commands::reload_corosync())?;
    Ok(())
}

/// `corosync-quorumtool -s` parsed; `None` while corosync does not answer.
pub fn quorum(r: &dyn Runner) -> Option<QuorumInfo> {
    quorum_checked(r).ok()
}

/// `corosync-quorumtool -s` parsed, or why not (the command's error: not running, timed out).
pub fn quorum_checked(r: &dyn Runner) -> Result<QuorumInfo, FormError> {
    let o = r.run(&commands::quorum_status())?;
    QuorumInfo::parse(&o.stdout).map_err(|e| {
        FormError::Failed(format!(
            "corosync-quorumtool -s: {e}{}",
            if o.stderr.trim().is_empty() {
                String::new()
            } else {
                format!(" ({})", o.stderr.trim())
            }
        ))
    })
}

/// `crm_mon --output-as=xml` parsed; `None` while Pacemaker does not answer.
pub fn crm_status(r: &dyn Runner) -> Option<CrmStatus> {
    crm_status_checked(r).ok()
}

/// `crm_mon --output-as=xml` parsed, or why not.
pub fn crm_status_checked(r: &dyn Runner) -> Result<CrmStatus, FormError> {
    crm_status_within(r, commands::QUERY_TIMEOUT)
}

/// [`crm_status_checked`] allowed `timeout`: a task's step waits longer than an interactive
/// query, as `crm_mon` on a loaded node (a returning node's resources starting, a busy
/// guest) can take well over the query timeout without anything being wrong.
pub fn crm_status_within(r: &dyn Runner, timeout: Duration) -> Result<CrmStatus, FormError> {
    let o = r.run(&commands::crm_mon().timeout(timeout))?;
    if !o.success() && o.stdout.is_empty() {
        return Err(RunError::Failed {
            cmd: commands::crm_mon().to_string(),
            code: o.code,
            stderr: o.stderr,
            stdout: o.stdout,
        }
        .into());
    }
    CrmStatus::parse(&o.stdout).map_err(|e| FormError::Failed(format!("crm_mon: {e}")))
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<Duration, FormError> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(FormError::Failed(format!(
        "timed out after {}s waiting for {what}",
        timeout.as_secs()
    )))
}

/// Apply CIB updates with cibadmin (XML on stdin, never in argv).
pub fn apply_cib(r: &dyn Runner, updates: &[CibUpdate]) -> Result<(), FormError> {
    for u in updates {
        r.run_ok(&commands::cib_update(u))?;
    }
    Ok(())
}

/// dc-deadtime of a brand-new single-node cluster's first start (removed once a DC exists):
/// there is no one to wait for, and Pacemaker's default 20 s would only delay `init`.
pub const SEED_DC_DEADTIME: &str = "2s";

fn user_uid(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
        })
}

/// The newest CIB schema Pacemaker here ships (`pacemaker-X.Y`), else `pacemaker-3.0`.
fn cib_schema() -> String {
    let mut best: Option<(u32, u32)> = None;
    if let Ok(rd) = std::fs::read_dir("/usr/share/pacemaker") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let v = n
                .strip_prefix("pacemaker-")
                .and_then(|r| r.strip_suffix(".rng"))
                .and_then(|r| r.split_once('.'))
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
            match (v, best) {
                (Some(v), Some(b)) if v > b => best = Some(v),
                (Some(v), None) => best = Some(v),
                _ => {}
            }
        }
    }
    let (a, b) = best.unwrap_or((3, 0));
    format!("pacemaker-{a}.{b}")
}

/// The first CIB of a new cluster: Keel's properties plus the seed dc-deadtime.
pub fn seed_cib(props: &ClusterProperties) -> keel_xml::Element {
    use keel_xml::Element;
    let mut crm = cib::crm_config(props);
    if let Some(set) = crm
        .children
        .iter_mut()
        .find(|c| c.name == "cluster_property_set")
    {
        set.push(
            Element::new("nvpair")
                .attr("id", "cib-bootstrap-options-dc-deadtime")
                .attr("name", "dc-deadtime")
                .attr("value", SEED_DC_DEADTIME),
        );
    }
    Element::new("cib")
        .attr("validate-with", cib_schema())
        .attr("epoch", "1")
        .attr("num_updates", "0")
        .attr("admin_epoch", "0")
        .child(
            Element::new("configuration")
                .child(crm)
                .child(Element::new("nodes"))
                .child(Element::new("resources"))
                .child(Element::new("constraints")),
        )
        .child(Element::new("status"))
}

/// Move a CIB left by an earlier cluster aside (an unclustered node's CIB is stale by
/// definition: its devices and constraints must not come back); returns where it went.
pub fn retire_old_cib(paths: &Paths) -> Result<Option<PathBuf>, FormError> {
    let dir = &paths.pacemaker_cib_dir;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let old: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .map(|n| n.to_string_lossy().starts_with("cib"))
                    .unwrap_or(false)
        })
        .collect();
    if old.is_empty() {
        return Ok(None);
    }
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = dir.join(format!("keel-retired-{ts}"));
    std::fs::create_dir_all(&to).map_err(io_err(&to))?;
    for p in old {
        if let Some(n) = p.file_name() {
            std::fs::rename(&p, to.join(n)).map_err(io_err(&p))?;
        }
    }
    Ok(Some(to))
}

/// Write the seed CIB (0600 hacluster:haclient) into an empty CIB directory.
fn write_seed_cib(paths: &Paths, props: &ClusterProperties) -> Result<(), FormError> {
    let p = paths.pacemaker_cib_dir.join("cib.xml");
    let text = format!("{}\n", seed_cib(props).render());
    write_file_mode(&p, text.as_bytes(), 0o600)?;
    if let (Some(uid), Some(gid)) = (user_uid("hacluster"), group_gid("haclient")) {
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(io_err(&p))?;
    }
    Ok(())
}

/// Progress reporting for long procedures.
pub trait Progress {
    fn log(&self, line: &str);
    fn progress(&self, p: f64);
}

/// Start corosync and wait for quorum; then Pacemaker until `node` is online with a DC; then
/// keel-clusterd (when installed).
pub fn start_stack(
    svc: &dyn ServiceManager,
    r: &dyn Runner,
    node: &str,
    clusterd_installed: bool,
    p: &dyn Progress,
) -> Result<(), FormError> {
    p.log(&format!("starting corosync ({})", svc.kind()));
    svc.start(Daemon::Corosync)?;
    let t = wait("corosync quorum", Duration::from_secs(90), || {
        quorum(r).is_some_and(|q| q.quorate)
    })?;
    p.log(&format!("corosync quorate after {:.1}s", t.as_secs_f64()));
    p.progress(0.6);
    p.log("starting pacemaker");
    svc.start(Daemon::Pacemaker)?;
    let t = wait(
        "pacemaker: this node online and a DC elected",
        Duration::from_secs(120),
        || crm_status(r).is_some_and(|s| s.dc.is_some() && s.node(node).is_some_and(|n| n.online)),
    )?;
    p.log(&format!(
        "pacemaker: {node} online, DC elected after {:.1}s",
        t.as_secs_f64()
    ));
    p.progress(0.8);
    if clusterd_installed {
        p.log("starting keel-clusterd");
        svc.start(Daemon::Clusterd)?;
    } else {
        p.log("keel-clusterd is not installed: the replicated config store is not started");
    }
    Ok(())
}

/// What `init` needs to know.
#[derive(Debug, Clone)]
pub struct InitPlan {
    pub cluster_name: String,
    pub node: String,
    /// link0 (and link1) addresses.
    pub links: Vec<String>,
    pub token_ms: Option<u32>,
    pub latency: LatencyClass,
    /// This node's API address for the other members.
    pub api: String,
    /// Extra certificate names (FQDN, localhost).
    pub dns: Vec<String>,
    /// Extra certificate IP addresses (the API listen address).
    pub extra_ips: Vec<IpAddr>,
    pub clusterd_installed: bool,
}

/// The node's new API certificate (CA-signed).
pub struct NodeCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
}

fn identity(node: &str, links: &[String], dns: &[String], extra: &[IpAddr]) -> NodeIdentity {
    let mut addrs: Vec<IpAddr> = links.iter().filter_map(|a| a.parse().ok()).collect();
    for a in extra {
        if !addrs.contains(a) && !a.is_unspecified() {
            addrs.push(*a);
        }
    }
    NodeIdentity {
        name: node.to_string(),
        dns: dns.to_vec(),
        addrs,
    }
}

/// Create a new cluster with this node as its only member.
pub fn init(
    paths: &Paths,
    svc: &dyn ServiceManager,
    r: &dyn Runner,
    plan: &InitPlan,
    p: &dyn Progress,
) -> Result<NodeCert, FormError> {
    check_unclustered(paths, r)?;
    let first = ConfNode {
        nodeid: 1,
        name: plan.node.clone(),
        addrs: plan.links.clone(),
    };
    let mut conf = CorosyncConf::new(&plan.cluster_name, first, plan.latency);
    if let Some(t) = plan.token_ms {
        conf.token_ms = t;
    }
    conf.validate()?;
    p.log(&format!(
        "cluster {:?}: node {} (nodeid 1), links {:?}, token {} ms",
        plan.cluster_name, plan.node, plan.links, conf.token_ms
    ));
    p.log("generating the cluster CA (ECDSA P-256) and this node's certificate");
    let ca = ClusterCa::generate(&plan.cluster_name)?;
    ca.save(&paths.cluster_dir)?;
    let (cert_pem, key_pem) = ca.issue(&identity(
        &plan.node,
        &plan.links,
        &plan.dns,
        &plan.extra_ips,
    ))?;
    write_file_mode(&paths.node_key(), key_pem.as_bytes(), 0o600)?;
    write_file_mode(&paths.node_cert(), cert_pem.as_bytes(), 0o644)?;
    p.log("writing the corosync authkey (0400) and Pacemaker authkey (0640 root:haclient)");
    write_authkeys(paths, &random_bytes(128), &random_bytes(4096))?;
    write_corosync_conf(paths, &conf)?;
    p.log(&format!("wrote {}", paths.corosync_conf().display()));
    p.progress(0.3);
    let rec = ClusterRecord {
        name: plan.cluster_name.clone(),
        node: plan.node.clone(),
        nodeid: 1,
        members: vec![MemberRecord {
            name: plan.node.clone(),
            nodeid: 1,
            api: plan.api.clone(),
        }],
        removed: vec![],
    };
    let props = ClusterProperties::for_size(&plan.cluster_name, 1);
    if let Some(to) = retire_old_cib(paths)? {
        p.log(&format!(
            "moved an earlier cluster's CIB aside to {}",
            to.display()
        ));
    }
    write_seed_cib(paths, &props)?;
    if let Err(e) = start_stack(svc, r, &plan.node, plan.clusterd_installed, p) {
        p.log(&format!(
            "start failed ({e}); stopping what was started and removing the configuration"
        ));
        let _ = svc.stop(Daemon::Pacemaker);
        let _ = svc.stop(Daemon::Corosync);
        let _ = std::fs::remove_file(paths.corosync_conf());
        return Err(e);
    }
    rec.save(paths)?;
    p.log("setting cluster properties: stonith-enabled=true, no-quorum-policy=stop");
    apply_cib(r, &cib::set_properties(&props))?;
    // back to Pacemaker's default for every later start
    r.run_ok(&commands::delete_dc_deadtime())?;
    p.log("single node: no redundancy and no fencing target until a second node joins");
    let fingerprint = ca::fingerprint_of_pem(&cert_pem)?;
    p.log(&format!(
        "API certificate is now signed by the cluster CA; fingerprint {fingerprint}"
    ));
    Ok(NodeCert {
        cert_pem,
        key_pem,
        fingerprint,
    })
}

/// Member side of a join: the corosync.conf with `node` added (nothing written yet).
pub fn plan_add(
    paths: &Paths,
    node: &str,
    links: &[String],
) -> Result<(CorosyncConf, u32), FormError> {
    let mut conf = read_corosync_conf(paths)?;
    if let Some(q) = &conf.qdevice {
        return Err(FormError::Refused(format!(
            "the cluster has a QDevice ({}): remove it first (keel cluster qdevice remove), join, then add it again",
            q.host
        )));
    }
    if conf.node(node).is_some() {
        return Err(FormError::Refused(format!(
            "a node named {node:?} is already a member; remove it first (keel node remove {node})"
        )));
    }
    for a in links {
        if let Some(o) = conf.nodes.iter().find(|n| n.addrs.contains(a)) {
            return Err(FormError::Refused(format!(
                "address {a} is already used by member {}",
                o.name
            )));
        }
    }
    if links.len() != conf.link_count() {
        return Err(FormError::Invalid {
            field: "links".into(),
            msg: format!(
                "the cluster uses {} link(s); give exactly that many addresses (got {})",
                conf.link_count(),
                links.len()
            ),
        });
    }
    let nodeid = conf.next_nodeid();
    conf.add_node(ConfNode {
        nodeid,
        name: node.to_string(),
        addrs: links.to_vec(),
    })
    .map_err(|e| FormError::Invalid {
        field: "links".into(),
        msg: e.to_string(),
    })?;
    Ok((conf, nodeid))
}

/// Sign a joiner's CSR with the cluster CA.
pub fn sign_joiner(
    paths: &Paths,
    node: &str,
    links: &[String],
    csr_pem: &str,
) -> Result<(String, ClusterCa), FormError> {
    let ca = ClusterCa::load(&paths.cluster_dir)?;
    let cert = ca.sign_csr(csr_pem, &identity(node, links, &[], &[]))?;
    Ok((cert, ca))
}

/// Read a file as base64.
pub fn read_b64(p: &Path) -> Result<String, FormError> {
    use base64::Engine;
    let b = std::fs::read(p).map_err(io_err(p))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(b))
}

fn from_b64(field: &str, s: &str) -> Result<Vec<u8>, FormError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| FormError::Invalid {
            field: field.into(),
            msg: format!("not base64: {e}"),
        })
}

/// Joiner side: write everything the member sent, then start the stack.
#[allow(clippy::too_many_arguments)]
pub fn joiner_install(
    paths: &Paths,
    svc: &dyn ServiceManager,
    r: &dyn Runner,
    node: &str,
    resp: &JoinResponse,
    ca_key_pem: &str,
    node_key_pem: &str,
    members: Vec<MemberRecord>,
    clusterd_installed: bool,
    p: &dyn Progress,
) -> Result<NodeCert, FormError> {
    let conf = CorosyncConf::parse(&resp.corosync_conf)?;
    if conf.node(node).map(|n| n.nodeid) != Some(resp.nodeid) {
        return Err(FormError::Failed(format!(
            "the member's corosync.conf does not list {node} as nodeid {}",
            resp.nodeid
        )));
    }
    let ca = ClusterCa::from_pem(&resp.ca_pem, ca_key_pem)?;
    ca.save(&paths.cluster_dir)?;
    write_file_mode(&paths.node_key(), node_key_pem.as_bytes(), 0o600)?;
    write_file_mode(&paths.node_cert(), resp.cert_pem.as_bytes(), 0o644)?;
    write_authkeys(
        paths,
        &from_b64("corosync_authkey_b64", &resp.corosync_authkey_b64)?,
        &from_b64("pacemaker_authkey_b64", &resp.pacemaker_authkey_b64)?,
    )?;
    write_corosync_conf(paths, &conf)?;
    p.log(&format!(
        "wrote corosync.conf ({} nodes, two_node {}), authkeys, CA and node certificate",
        conf.nodes.len(),
        if conf.two_node() { "on" } else { "off" }
    ));
    for (rsc, secrets) in &resp.fence_secrets {
        write_cib_secrets(paths, rsc, secrets)?;
    }
    if !resp.fence_secrets.is_empty() {
        p.log(&format!(
            "wrote the CIB secrets of {} fence device(s)",
            resp.fence_secrets.len()
        ));
    }
    for k in &resp.known_hosts {
        append_unique_line(&paths.known_hosts, k, 0o644)?;
    }
    for k in &resp.authorized_keys {
        append_unique_line(&paths.root_ssh_dir.join("authorized_keys"), k, 0o600)?;
    }
    if let Some(to) = retire_old_cib(paths)? {
        p.log(&format!(
            "moved an earlier cluster's CIB aside to {}",
            to.display()
        ));
    }
    p.progress(0.4);
    start_stack(svc, r, node, clusterd_installed, p)?;
    ClusterRecord {
        name: resp.cluster_name.clone(),
        node: node.to_string(),
        nodeid: resp.nodeid,
        members,
        removed: vec![],
    }
    .save(paths)?;
    Ok(NodeCert {
        fingerprint: ca::fingerprint_of_pem(&resp.cert_pem)?,
        cert_pem: resp.cert_pem.clone(),
        key_pem: node_key_pem.to_string(),
    })
}

/// Cluster properties for the current size (after a join or a removal).
pub fn apply_properties_for(r: &dyn Runner, conf: &CorosyncConf) -> Result<(), FormError> {
    apply_cib(
        r,
        &cib::set_properties(&ClusterProperties::for_size(
            &conf.cluster_name,
            conf.nodes.len(),
        )),
    )
}

// ------------------------------------------------------------------ SSH material

/// This node's SSH host public keys (`TYPE KEY` of every `ssh_host_*_key.pub`).
pub fn ssh_host_keys(paths: &Paths) -> Vec<String> {
    let mut v = vec![];
    if let Ok(rd) = std::fs::read_dir(&paths.ssh_dir) {
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let n = p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if n.starts_with("ssh_host_") && n.ends_with("_key.pub") {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    let mut it = t.split_whitespace();
                    if let (Some(a), Some(b)) = (it.next(), it.next()) {
                        v.push(format!("{a} {b}"));
                    }
                }
            }
        }
    }
    v
}

/// root's public key for migration transport, generated (ed25519, no passphrase) if missing.
pub fn ensure_root_key(paths: &Paths, r: &dyn Runner) -> Result<String, FormError> {
    let key = paths.root_ssh_dir.join("id_ed25519");
    let pubk = paths.root_ssh_dir.join("id_ed25519.pub");
    if !pubk.exists() {
        std::fs::create_dir_all(&paths.root_ssh_dir).map_err(io_err(&paths.root_ssh_dir))?;
        let k = key.display().to_string();
        r.run_ok(&commands::ssh_keygen(&k))?;
    }
    let t = std::fs::read_to_string(&pubk).map_err(io_err(&pubk))?;
    Ok(t.trim().to_string())
}

/// known_hosts lines for a member: `name,addr1,addr2 TYPE KEY`.
pub fn known_hosts_lines(name: &str, addrs: &[String], keys: &[String]) -> Vec<String> {
    let mut hosts = vec![name.to_string()];
    hosts.extend(addrs.iter().cloned());
    keys.iter()
        .map(|k| format!("{} {k}", hosts.join(",")))
        .collect()
}

/// Replace every known_hosts entry naming `name` or one of `addrs` by `lines` (a re-joining
/// node has new host keys: its stale entries must go, not sit beside the new ones).
pub fn pin_known_hosts(
    paths: &Paths,
    name: &str,
    addrs: &[String],
    lines: &[String],
) -> Result<(), FormError> {
    let p = &paths.known_hosts;
    let old = std::fs::read_to_string(p).unwrap_or_default();
    let mut out: Vec<String> = old
        .lines()
        .filter(|l| {
            let hosts = l.split_whitespace().next().unwrap_or("");
            !hosts
                .split(',')
                .any(|h| h == name || addrs.iter().any(|a| a == h))
        })
        .map(str::to_string)
        .collect();
    out.extend(lines.iter().cloned());
    let mut text = out.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    Ok(write_file_mode(p, text.as_bytes(), 0o644)?)
}

/// Remove the known_hosts entries of `name`/`addrs`.
pub fn unpin_known_hosts(paths: &Paths, name: &str, addrs: &[String]) -> Result<(), FormError> {
    pin_known_hosts(paths, name, addrs, &[])
}

/// Append `line` to `path` unless an identical line exists.
pub fn append_unique_line(path: &Path, line: &str, mode: u32) -> Result<(), FormError> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    if old.lines().any(|l| l.trim() == line.trim()) {
        return Ok(());
    }
    let mut text = old;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line.trim());
    text.push('\n');
    Ok(write_file_mode(path, text.as_bytes(), mode)?)
}

/// Remove from the corosync configuration of a member being left: stop the stack and move the
/// cluster files away (kept as `*.removed` for inspection).
pub fn leave(paths: &Paths, svc: &dyn ServiceManager) -> Result<(), FormError> {
    let _ = svc.stop(Daemon::Clusterd);
    svc.stop(Daemon::Pacemaker)?;
    svc.stop(Daemon::Corosync)?;
    for p in [paths.corosync_conf(), paths.record()] {
        if p.exists() {
            let mut to = p.clone().into_os_string();
            to.push(".removed");
            std::fs::rename(&p, &to).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CIB secrets as Pacemaker reads them: `<param>` and `<param>.sign` (md5 hex), root-only;
    /// a changed set drops what is no longer secret; an empty set removes the device's
    /// directory; what Pacemaker could not read back is refused before anything is written.
    #[test]
    fn cib_secrets_are_written_as_pacemaker_reads_them() -> Result<(), FormError> {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().map_err(|e| FormError::Failed(e.to_string()))?;
        let p = paths(d.path());
        let two = DeviceSecrets::from([
            ("password".to_string(), "hunter2".to_string()),
            ("snmp_priv_passwd".to_string(), "x".to_string()),
        ]);
        write_cib_secrets(&p, "fence-node2", &two)?;
        let dir = d.path().join("lrm/secrets/fence-node2");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(io_err(&dir));
        assert_eq!(read("password")?, "hunter2");
        assert_eq!(read("password.sign")?, "2ab96390c7dbe3439de74d0c9b0b1767");
        let mode = |q: &Path| {
            std::fs::metadata(q)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("password")), 0o600);
        assert_eq!(read_cib_secrets(&p)?["fence-node2"], two);

        let one = DeviceSecrets::from([("password".to_string(), "new".to_string())]);
        write_cib_secrets(&p, "fence-node2", &one)?;
        assert!(
            !dir.join("snmp_priv_passwd").exists() && !dir.join("snmp_priv_passwd.sign").exists()
        );
        assert_eq!(read_cib_secrets(&p)?["fence-node2"], one);

        for bad in ["", "trailing ", "two\nlines", &"x".repeat(255)] {
            let m = DeviceSecrets::from([("password".to_string(), bad.to_string())]);
            assert!(matches!(
                write_cib_secrets(&p, "fence-node2", &m),
                Err(FormError::Invalid { .. })
            ));
        }
        assert!(write_cib_secrets(&p, "../etc", &one).is_err());
        assert_eq!(read("password")?, "new", "a refused write changed nothing");

        write_cib_secrets(&p, "fence-node2", &DeviceSecrets::new())?;
        assert!(!dir.exists());
        assert!(read_cib_secrets(&p)?.is_empty());
        Ok(())
    }

    fn paths(d: &Path) -> Paths {
        Paths {
            corosync_dir: d.join("corosync"),
            pacemaker_dir: d.join("pacemaker"),
            pacemaker_cib_dir: d.join("cib"),
            cluster_dir: d.join("cluster"),
            ssh_dir: d.join("ssh"),
            known_hosts: d.join("ssh/ssh_known_hosts"),
            root_ssh_dir: d.join("root"),
            sbd_defaults: d.join("sbd"),
        }
    }

    #[test]
    fn known_hosts_replaces_stale_entries() -> Result<(), FormError> {
        let d = tempfile::tempdir().map_err(|e| FormError::Failed(e.to_string()))?;
        let p = paths(d.path());
        let a = vec!["192.0.2.2".to_string()];
        pin_known_hosts(
            &p,
            "node2",
            &a,
            &known_hosts_lines("node2", &a, &["ssh-ed25519 OLD".into()]),
        )?;
        pin_known_hosts(
            &p,
            "node3",
            &[],
            &known_hosts_lines("node3", &[], &["ssh-ed25519 K3".into()]),
        )?;
        pin_known_hosts(
            &p,
            "node2",
            &a,
            &known_hosts_lines("node2", &a, &["ssh-ed25519 NEW".into()]),
        )?;
        let t = std::fs::read_to_string(&p.known_hosts).map_err(io_err(&p.known_hosts))?;
        assert!(!t.contains("OLD"), "{t}");
        assert!(t.contains("node2,192.0.2.2 ssh-ed25519 NEW"), "{t}");
        assert!(t.contains("node3 ssh-ed25519 K3"), "{t}");
        let ak = p.root_ssh_dir.join("authorized_keys");
        append_unique_line(&ak, "ssh-ed25519 AAA x", 0o600)?;
        append_unique_line(&ak, "ssh-ed25519 AAA x", 0o600)?;
        let t = std::fs::read_to_string(&ak).map_err(io_err(&ak))?;
        assert_eq!(t.lines().count(), 1);
        Ok(())
    }

    #[test]
    fn seed_cib_has_properties_and_dc_deadtime_and_old_cib_is_retired() -> Result<(), FormError> {
        let x = seed_cib(&ClusterProperties::for_size("c", 1)).render();
        assert!(x.contains(r#"name="stonith-enabled" value="true""#), "{x}");
        assert!(x.contains(r#"name="dc-deadtime" value="2s""#), "{x}");
        let d = tempfile::tempdir().map_err(|e| FormError::Failed(e.to_string()))?;
        let p = paths(d.path());
        assert_eq!(retire_old_cib(&p)?, None);
        std::fs::create_dir_all(&p.pacemaker_cib_dir).map_err(io_err(d.path()))?;
        std::fs::write(p.pacemaker_cib_dir.join("cib.xml"), "<cib/>").map_err(io_err(d.path()))?;
        let to = retire_old_cib(&p)?.ok_or_else(|| FormError::Failed("not retired".into()))?;
        assert!(to.join("cib.xml").exists() && !p.pacemaker_cib_dir.join("cib.xml").exists());
        Ok(())
    }

    #[test]
    fn plan_add_refuses_duplicates() -> Result<(), FormError> {
        let d = tempfile::tempdir().map_err(|e| FormError::Failed(e.to_string()))?;
        let p = paths(d.path());
        let conf = CorosyncConf::new(
            "c",
            ConfNode {
                nodeid: 1,
                name: "node1".into(),
                addrs: vec!["192.0.2.1".into()],
            },
            LatencyClass::Lan,
        );
        write_corosync_conf(&p, &conf)?;
        assert!(matches!(
            plan_add(&p, "node1", &["192.0.2.9".into()]),
            Err(FormError::Refused(_))
        ));
        assert!(matches!(
            plan_add(&p, "node2", &["192.0.2.1".into()]),
            Err(FormError::Refused(_))
        ));
        let (mut c, id) = plan_add(&p, "node2", &["192.0.2.2".into()])?;
        assert_eq!(id, 2);
        assert!(c.two_node());
        // with a QDevice, a join is refused until it is removed
        c.qdevice = Some(crate::corosync_conf::QDevice {
            host: "192.0.2.9".into(),
            port: None,
            algorithm: Default::default(),
        });
        write_corosync_conf(&p, &c)?;
        match plan_add(&p, "node3", &["192.0.2.3".into()]) {
            Err(FormError::Refused(m)) => assert!(m.contains("keel cluster qdevice remove"), "{m}"),
            other => panic!("join with a QDevice: {other:?}"),
        }
        write_corosync_conf(&p, &conf)?;
        assert!(matches!(
            check_unclustered(&p, &keel_runner::Fake::new()),
            Err(FormError::Refused(_))
        ));
        Ok(())
    }

    /// Records what was started and stopped; never runs anything.
    #[derive(Default)]
    struct Svc(std::sync::Mutex<Vec<String>>);
    impl ServiceManager for Svc {
        fn start(&self, d: Daemon) -> Result<(), service::ServiceError> {
            if let Ok(mut v) = self.0.lock() {
                v.push(format!("start {}", d.name()));
            }
            Ok(())
        }
        fn stop(&self, d: Daemon) -> Result<(), service::ServiceError> {
            if let Ok(mut v) = self.0.lock() {
                v.push(format!("stop {}", d.name()));
            }
            Ok(())
        }
        fn is_active(&self, _: Daemon) -> Result<bool, service::ServiceError> {
            Ok(false)
        }
        fn kind(&self) -> &'static str {
            "test"
        }
    }

    struct Quiet;
    impl Progress for Quiet {
        fn log(&self, _: &str) {}
        fn progress(&self, _: f64) {}
    }

    fn plan() -> InitPlan {
        InitPlan {
            cluster_name: "c1".into(),
            node: "node1".into(),
            links: vec!["192.0.2.1".into()],
            token_ms: None,
            latency: LatencyClass::Local,
            api: "192.0.2.1:8006".into(),
            dns: vec!["localhost".into()],
            extra_ips: vec![],
            clusterd_installed: false,
        }
    }

    const QUORATE: &str = include_str!("../tests/samples/quorumtool-3-nodes.txt");
    const CRM_MON: &str = include_str!("../tests/samples/crm_mon-3-nodes.xml");

    /// `init`, formation part: the exact commands, in order, around the daemons' starts.
    #[test]
    fn init_runs_the_formation_commands_in_order() -> Result<(), FormError> {
        use keel_runner::{Fake, Reply};
        let d = tempfile::tempdir().map_err(|e| FormError::Failed(e.to_string()))?;
        let p = paths(d.path());
        let props = cib::set_properties(&ClusterProperties::for_size("c1", 1));
        let fake = Fake::new()
            // check_unclustered: no corosync answers here
            .expect(
                &["corosync-cfgtool", "-s"],
                Reply::fail(1, "Could not initialize corosync configuration API error 2"),
            )
            // start_stack: corosync quorate, then Pacemaker with a DC and this node online
            .expect(&["corosync-quorumtool", "-s"], Reply::ok(QUORATE))
            .expect(&["crm_mon", "-1", "--output-as=xml"], Reply::ok(CRM_MON))
            // Keel's properties on cibadmin's stdin, then the seed dc-deadtime goes
            .expect_stdin(
                &[
                    "cibadmin",
                    "--modify",
                    "--allow-create",
                    "--scope",
                    "crm_config",
                    "--xml-pipe",
                ],
                props[0].stdin.as_bytes(),
                Reply::ok(""),
            )
            .expect(
                &[
                    "crm_attribute",
                    "--type",
                    "crm_config",
                    "--name",
                    "dc-deadtime",
                    "--delete",
                ],
                Reply::ok(""),
            );
        let svc = Svc::default();
        let cert = init(&p, &svc, &fake, &plan(), &Quiet)?;
        fake.assert_done();
        assert_eq!(
            svc.0.lock().map(|v| v.clone()).unwrap_or_default(),
            ["start corosync", "start pacemakerd"]
        );
        let conf = read_corosync_conf(&p)?;
        assert_eq!(conf.nodes.len(), 1);
        assert_eq!(conf.nodes[0].name, "node1");
        assert!(p.corosync_authkey().exists() && p.pacemaker_authkey().exists());
        assert!(p.pacemaker_cib_dir.join("cib.xml").exists());
        let rec = ClusterRecord::load(&p)?.ok_or_else(|| FormError::Failed("no record".into()))?;
        assert_eq!((rec.name.as_str(), rec.nodeid), ("c1", 1));
        assert!(cert.fingerprint.contains(':'));
        Ok(())
    }

    /// A CIB update that hangs ends `init` with an error naming the command and its bound.
    #[test]
    fn a_wedged_cibadmin_ends_init_with_a_timeout_error() -> Result<(), FormError> {
        use keel_runner::{Fake, Reply};
        let d = tempfile::tempdir().map_err(|e| FormError::Failed(e.to_string()))?;
        let p = paths(d.path());
        let fake = Fake::new()
            .expect(&["corosync-cfgtool", "-s"], Reply::fail(1, "not running"))
            .expect(&["corosync-quorumtool", "-s"], Reply::ok(QUORATE))
            .expect(&["crm_mon", "-1", "--output-as=xml"], Reply::ok(CRM_MON))
            .expect(
                &[
                    "cibadmin",
                    "--modify",
                    "--allow-create",
                    "--scope",
                    "crm_config",
                    "--xml-pipe",
                ],
                Reply::Timeout,
            );
        let r = init(&p, &Svc::default(), &fake, &plan(), &Quiet);
        fake.assert_done();
        let Err(FormError::Failed(msg)) = r else {
            return Err(FormError::Failed(format!(
                "expected a timeout, got {:?}",
                r.err()
            )));
        };
        assert_eq!(
            msg,
            "cibadmin --modify --allow-create --scope crm_config --xml-pipe did not finish within 60s and was killed"
        );
        Ok(())
    }

    /// A running corosync (the command answers) refuses init before anything is written.
    #[test]
    fn init_refuses_when_corosync_answers() -> Result<(), FormError> {
        use keel_runner::{Fake, Reply};
        let d = tempfile::tempdir().map_err(|e| FormError::Failed(e.to_string()))?;
        let p = paths(d.path());
        let fake = Fake::new().expect(&["corosync-cfgtool", "-s"], Reply::ok("Local node ID 1"));
        let r = init(&p, &Svc::default(), &fake, &plan(), &Quiet);
        fake.assert_done();
        assert!(matches!(r, Err(FormError::Refused(_))), "{:?}", r.err());
        assert!(!p.corosync_conf().exists());
        Ok(())
    }
}
