//! Backups: targets (where backups are kept), backups of a VM, verification and restore.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

/// A backup target name: letters, digits, `-`, `_`; 1–64 characters.
pub fn valid_target_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A backup id as Keel makes them: `YYYYMMDDTHHMMSSZ` plus an optional `-N` suffix.
pub fn valid_backup_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Define a backup target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupTargetCreate {
    /// Letters, digits, `-`, `_`; at most 64 characters.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub name: String,
    /// `dir` (a directory on this node), `sftp` (a directory on a remote host over SSH) or
    /// `nfs` (an NFS export every node mounts itself).
    #[serde(default = "dir_kind")]
    pub kind: String,
    /// `dir`: absolute path of an existing, writable directory. `sftp`:
    /// `user@host[:port]:/path` (port 22 by default; an IPv6 host in brackets). `nfs`:
    /// `server:/export` (an IPv6 server in brackets).
    #[schema(min_length = 2, max_length = 1024)]
    pub path: String,
    /// `sftp` only: absolute path of the private key file on the node that hostd
    /// authenticates with (mode 0600 or stricter; never a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// `sftp` only: the remote host key's `SHA256:…` fingerprint (as `ssh-keygen -lf` shows
    /// it). Without it the key the host presents now is pinned, and shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    /// `nfs` only: more `mount -o` options, comma-separated, from `vers`, `nfsvers`, `proto`,
    /// `port`, `sec`, `timeo`, `retrans`, `hard`, `soft`, `rsize`, `wsize`, `nconnect`,
    /// `noresvport`, `actimeo` (e.g. `vers=4.2,nconnect=4`). Keel always adds
    /// `nosuid,nodev,noexec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_options: Option<String>,
}

/// Where an `nfs` target's export is: `server:/export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsSource {
    pub server: String,
    pub export: String,
}

impl std::fmt::Display for NfsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.server.contains(':') {
            write!(f, "[{}]:{}", self.server, self.export)
        } else {
            write!(f, "{}:{}", self.server, self.export)
        }
    }
}

/// Parse `server:/export` (an IPv6 server in brackets: `[fd00::5]:/srv/backups`). The export
/// is kept as written, without a trailing `/`.
pub fn parse_nfs_source(s: &str) -> Result<NfsSource, String> {
    let usage = || {
        format!("{s:?} is not an NFS export: use server:/path (e.g. nas.example:/srv/keel-backups or [fd00::5]:/backups)")
    };
    let (server, export) = if let Some(r) = s.strip_prefix('[') {
        let (h, r) = r.split_once(']').ok_or_else(usage)?;
        (h, r.strip_prefix(':').ok_or_else(usage)?)
    } else {
        s.split_once(':').ok_or_else(usage)?
    };
    let server_ok = !server.is_empty()
        && server.len() <= 253
        && !server.starts_with('-')
        && server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    if !server_ok {
        return Err(format!(
            "{}: the server {server:?} is not a host name or address",
            usage()
        ));
    }
    if !export.starts_with('/')
        || export.split('/').any(|c| c == "..")
        || export
            .chars()
            .any(|c| c.is_control() || c == ',' || c.is_whitespace())
    {
        return Err(format!(
            "{}: the export {export:?} is not an absolute path (no '..', spaces or commas)",
            usage()
        ));
    }
    Ok(NfsSource {
        server: server.into(),
        export: match export.trim_end_matches('/') {
            "" => "/".into(),
            e => e.into(),
        },
    })
}

/// The `mount -o` options an `nfs` target may add (the rest are Keel's: `nosuid,nodev,noexec`).
pub const NFS_OPTIONS: [&str; 14] = [
    "vers",
    "nfsvers",
    "proto",
    "port",
    "sec",
    "timeo",
    "retrans",
    "hard",
    "soft",
    "rsize",
    "wsize",
    "nconnect",
    "noresvport",
    "actimeo",
];

/// Check an `nfs` target's extra mount options: known names, simple values.
pub fn check_nfs_options(s: &str) -> Result<(), String> {
    if s.len() > 256 {
        return Err("mount options longer than 256 characters".into());
    }
    for o in s.split(',') {
        let (k, v) = match o.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (o, None),
        };
        if !NFS_OPTIONS.contains(&k) {
            return Err(format!(
                "mount option {o:?} is not one Keel passes on: use {}",
                NFS_OPTIONS.join(", ")
            ));
        }
        let flag = matches!(k, "hard" | "soft" | "noresvport");
        match v {
            None if flag => {}
            Some(v)
                if !flag
                    && !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".:_".contains(c)) => {}
            _ => {
                return Err(format!(
                    "mount option {o:?}: {}",
                    if flag {
                        format!("{k} takes no value")
                    } else {
                        format!("{k} needs a value ({k}=VALUE, letters, digits, '.', ':', '_')")
                    }
                ))
            }
        }
    }
    Ok(())
}

/// Where an `sftp` target keeps its backups: `user@host[:port]:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl std::fmt::Display for SftpLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "{}@[{}]:{}:{}",
                self.user, self.host, self.port, self.path
            )
        } else {
            write!(f, "{}@{}:{}:{}", self.user, self.host, self.port, self.path)
        }
    }
}

/// Parse `user@host[:port]:/path` (an IPv6 host in brackets: `user@[::1]:2222:/bk`).
pub fn parse_sftp_location(s: &str) -> Result<SftpLocation, String> {
    let usage = || {
        format!("{s:?} is not an SFTP location: use user@host[:port]:/absolute/path (e.g. backup@nas.example:2222:/srv/keel)")
    };
    let (user, rest) = s.split_once('@').ok_or_else(usage)?;
    if user.is_empty()
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!("{}: the user name {user:?} is not valid", usage()));
    }
    let (host, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (h, r) = r.split_once(']').ok_or_else(usage)?;
        (h, r.strip_prefix(':').ok_or_else(usage)?)
    } else {
        rest.split_once(':').ok_or_else(usage)?
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
    {
        return Err(format!("{}: the host {host:?} is not valid", usage()));
    }
    let (port, path) = if rest.starts_with('/') {
        (22, rest)
    } else {
        let (p, path) = rest.split_once(':').ok_or_else(usage)?;
        let port: u16 = p
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{}: the port {p:?} is not a number 1-65535", usage()))?;
        (port, path)
    };
    if !path.starts_with('/')
        || path.split('/').any(|c| c == "..")
        || path.chars().any(|c| c.is_control())
    {
        return Err(format!(
            "{}: the path {path:?} is not absolute (or has '..')",
            usage()
        ));
    }
    Ok(SftpLocation {
        user: user.into(),
        host: host.into(),
        port,
        path: match path.trim_end_matches('/') {
            "" => "/".into(),
            p => p.into(),
        },
    })
}

/// An OpenSSH `SHA256:<43 base64 characters>` host key fingerprint.
pub fn valid_ssh_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    })
}

fn dir_kind() -> String {
    "dir".into()
}

impl BackupTargetCreate {
    pub fn validate(&self) -> Result<(), FieldError> {
        if !valid_target_name(&self.name) {
            return Err(FieldError::new(
                "name",
                format!(
                    "{:?} is not a valid target name: letters, digits, '-', '_' (1-64)",
                    self.name
                ),
            ));
        }
        if self.mount_options.is_some() && self.kind != "nfs" {
            return Err(FieldError::new(
                "mount_options",
                "only an nfs target takes mount options",
            ));
        }
        if self.kind == "sftp" {
            return self.validate_sftp();
        }
        if self.kind != "dir" && self.kind != "nfs" {
            return Err(FieldError::new(
                "kind",
                format!(
                    "target kind {:?} is not supported: \"dir\" (a directory on the node), \"sftp\" (a remote host over SSH) or \"nfs\" (an NFS export)",
                    self.kind
                ),
            ));
        }
        if self.key_file.is_some() || self.host_key_fingerprint.is_some() {
            return Err(FieldError::new(
                if self.key_file.is_some() {
                    "key_file"
                } else {
                    "host_key_fingerprint"
                },
                "only an sftp target takes a key file and a host key fingerprint",
            ));
        }
        if self.kind == "nfs" {
            parse_nfs_source(&self.path).map_err(|e| FieldError::new("path", e))?;
            if let Some(o) = &self.mount_options {
                check_nfs_options(o).map_err(|e| FieldError::new("mount_options", e))?;
            }
            return Ok(());
        }
        if !self.path.starts_with('/')
            || self.path.len() > 1024
            || self.path.split('/').any(|c| c == "..")
            || self.path.contains('\n')
        {
            return Err(FieldError::new(
                "path",
                format!(
                    "{:?} is not an absolute directory path (no '..')",
                    self.path
                ),
            ));
        }
        Ok(())
    }

    fn validate_sftp(&self) -> Result<(), FieldError> {
        parse_sftp_location(&self.path).map_err(|e| FieldError::new("path", e))?;
        match &self.key_file {
            None => return Err(FieldError::new(
                "key_file",
                "an sftp target needs the private key file hostd authenticates with (--key FILE)",
            )),
            Some(k)
                if !k.starts_with('/') || k.len() > 1024 || k.chars().any(|c| c.is_control()) =>
            {
                return Err(FieldError::new(
                    "key_file",
                    format!("{k:?} is not an absolute file path"),
                ))
            }
            Some(_) => {}
        }
        if let Some(f) = &self.host_key_fingerprint {
            if !valid_ssh_fingerprint(f) {
                return Err(FieldError::new(
                    "host_key_fingerprint",
                    format!("{f:?} is not a host key fingerprint: SHA256: and 43 base64 characters, as `ssh-keygen -lf KEY.pub` prints"),
                ));
            }
        }
        Ok(())
    }
}

/// A backup target and its state now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupTarget {
    pub name: String,
    pub kind: String,
    /// `dir`: the directory; `sftp`: `user@host:port:/path`; `nfs`: where the answering node
    /// mounts the export (`/run/keel/backup-nfs/<name>`).
    pub path: String,
    /// `nfs`: the export, `server:/path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
    /// `nfs`: the extra mount options given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_options: Option<String>,
    /// `sftp`: the private key file hostd authenticates with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// `sftp`: the pinned host key; a host presenting another one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    /// Usable: the directory exists and is writable.
    pub ok: bool,
    /// Why it is not usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes of the file system holding the directory.
    pub total: u64,
    /// Bytes free for new backups.
    pub available: u64,
    /// Where the definition lives: `cluster` (the config store, every node lists it) or
    /// `node` (this node's database: a standalone node). `ok`, `error` and the sizes are
    /// as seen by the node that answers.
    #[serde(default = "node_scope")]
    pub scope: String,
}

fn node_scope() -> String {
    "node".into()
}

/// Start a backup of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupCreate {
    /// The target's name.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub target: String,
    /// Take a full backup even when an incremental one is possible.
    #[serde(default)]
    pub full: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Every disk copied whole.
    Full,
    /// Only the blocks changed since the parent backup (qcow2 files backed by the parent's).
    Incremental,
}

/// One disk of a backup in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupDisk {
    /// Guest device (`vda`).
    pub target: String,
    /// File name inside the backup directory (`vda.qcow2`).
    pub file: String,
    /// Format of that file (`qcow2`).
    pub format: String,
    /// The disk's format in the VM (`qcow2`, `raw`): a restore creates that.
    pub source_format: String,
    /// The disk's size as the guest sees it, bytes.
    pub virtual_size: u64,
    /// Size of the stored file, bytes.
    pub file_size: u64,
    /// SHA-256 of the stored file (hex).
    pub sha256: String,
    /// The backing file of an incremental, relative to this backup's directory
    /// (`../<parent-id>/vda.qcow2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing: Option<String>,
    /// Path of the disk in the VM when it was backed up.
    pub source_path: String,
}

/// `manifest.json` of a backup (the on-disk format, docs/backups.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupManifest {
    /// Format version (1).
    pub version: u32,
    pub id: String,
    pub vmid: u32,
    pub node: String,
    pub kind: BackupKind,
    /// The backup this one's disks are backed by (incremental only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The libvirt checkpoint created with this backup (none for a stopped VM's copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Live (libvirt backup job) or a stopped VM's copy.
    pub live: bool,
    /// Unix seconds.
    pub start_time: i64,
    pub end_time: i64,
    /// The VM's spec (Keel's form).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    /// The domain XML (libvirt's form), for a restore without Keel.
    pub domain_xml: String,
    pub disks: Vec<BackupDisk>,
}

/// One backup in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupInfo {
    pub id: String,
    pub vmid: u32,
    pub target: String,
    pub kind: BackupKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub live: bool,
    pub start_time: i64,
    pub end_time: i64,
    /// Bytes stored by this backup (its own files only).
    pub size: u64,
    /// `unverified`, `ok` or `broken`.
    pub verify_state: String,
    /// Unix seconds of the last verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_time: Option<i64>,
    /// Why the last verification failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<String>,
}

/// `?target=` of a VM's backup listing (optional: every target) and of verify (required).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct BackupTargetQuery {
    /// The target's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Restore a backup (any point of a chain) into a new VM, or over the original VM (stopped,
/// without snapshots) with `replace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The target holding the backup.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub target: String,
    /// The new VM's id (must be free). Required unless `replace`; with `replace`, leave it out
    /// or give the backed-up VM's own id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 100, maximum = 999_999_999)]
    pub new_vmid: Option<u32>,
    /// The pool the restored disks are created in.
    #[schema(min_length = 1, max_length = 200)]
    pub pool: String,
    /// The new VM's name (default: the original's name with `-restore-<new_vmid>`). Not with
    /// `replace`: the VM keeps its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Start the VM once restored.
    #[serde(default)]
    pub start: bool,
    /// Restore over the backed-up VM itself: it must be on this node, stopped, not HA, not a
    /// template and without snapshots. It keeps its vmid, name and UUID; its configuration and
    /// disks become the backup's. The new disks are written in full before the old ones are
    /// removed (the pool needs room for both), so a failure leaves the VM as it was.
    #[serde(default)]
    pub replace: bool,
}

impl RestoreRequest {
    /// The vmid the restored VM gets: the backed-up VM's own with `replace`, else `new_vmid`.
    pub fn restored_vmid(&self, backed_up: u32) -> Result<u32, FieldError> {
        match (self.replace, self.new_vmid) {
            (true, None) => Ok(backed_up),
            (true, Some(v)) if v == backed_up => Ok(backed_up),
            (true, Some(v)) => Err(FieldError::new(
                "new_vmid",
                format!("with replace the backup is restored over VM {backed_up} itself; leave new_vmid out (or give {backed_up}), not {v}"),
            )),
            (false, Some(v)) => Ok(v),
            (false, None) => Err(FieldError::new(
                "new_vmid",
                "give the new VM's id (a free vmid), or set replace to restore over the original VM",
            )),
        }
    }
}

/// A retention policy (docs/backups.md, "Retention"): how many backups each rule keeps.
/// Unset or 0: the rule keeps nothing. A backup is kept when any rule selects it, or when a
/// kept incremental needs it (its chain back to its full backup).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepPolicy {
    /// The newest N backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_last: Option<u32>,
    /// The newest backup of each of the last N hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_hourly: Option<u32>,
    /// The newest backup of each of the last N days that have one (local time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_daily: Option<u32>,
    /// The newest backup of each of the last N ISO weeks (Monday to Sunday) that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_weekly: Option<u32>,
    /// The newest backup of each of the last N months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_monthly: Option<u32>,
    /// The newest backup of each of the last N years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_yearly: Option<u32>,
}

impl KeepPolicy {
    /// The rules in the order they are applied, with their names (`keep-last`…).
    pub fn rules(&self) -> [(&'static str, u32); 6] {
        let g = |v: Option<u32>| v.unwrap_or(0);
        [
            ("keep-last", g(self.keep_last)),
            ("keep-hourly", g(self.keep_hourly)),
            ("keep-daily", g(self.keep_daily)),
            ("keep-weekly", g(self.keep_weekly)),
            ("keep-monthly", g(self.keep_monthly)),
            ("keep-yearly", g(self.keep_yearly)),
        ]
    }

    /// At least one rule keeps something (a policy keeping nothing would delete every
    /// backup: refused), and no count is absurd.
    pub fn validate(&self, field_prefix: &str) -> Result<(), FieldError> {
        for (name, n) in self.rules() {
            if n > 10_000 {
                return Err(FieldError::new(
                    &format!("{field_prefix}{}", name.replace('-', "_")),
                    format!("{name} {n} is too large: at most 10000"),
                ));
            }
        }
        if self.rules().iter().all(|(_, n)| *n == 0) {
            return Err(FieldError::new(
                &format!("{field_prefix}keep_last"),
                "give at least one of keep-last, keep-hourly, keep-daily, keep-weekly, keep-monthly, keep-yearly above 0 (a policy keeping nothing would delete every backup)",
            ));
        }
        Ok(())
    }
}

/// Prune a VM's backups on one target by a retention policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// The target holding the backups.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_yearly: Option<u32>,
    /// Only say what would be kept and removed (200 with the lists), change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl PruneRequest {
    pub fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
        }
    }
}

/// One backup in a prune's answer, with the reason it is kept or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PruneEntry {
    pub id: String,
    pub kind: BackupKind,
    pub start_time: i64,
    /// `keep-last`, `keep-daily (2026-12-02)`, `needed by kept incremental <id> (its chain)`,
    /// `merged into kept backup <id>`, `not selected by the policy`.
    pub reason: String,
    /// A kept incremental whose parents are not all kept: merged onto its nearest kept
    /// ancestor (or into a full backup), absorbing the parents that are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<PruneMerge>,
}

/// How a kept incremental is merged at prune time (docs/backups.md, "Retention").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PruneMerge {
    /// The kept backup it is based on afterwards; absent: it becomes a full backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onto: Option<String>,
    /// The removed backups whose changes it takes in (newest first).
    pub absorbs: Vec<String>,
}

/// What a prune keeps and removes (the answer of a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PruneResult {
    pub vmid: u32,
    pub target: String,
    pub dry_run: bool,
    /// Newest first.
    pub kept: Vec<PruneEntry>,
    /// Newest first (deleted in this order: incrementals before their parents).
    pub removed: Vec<PruneEntry>,
}

/// A backup job's definition (docs/backups.md, "Backup jobs"): create (POST) and replace
/// (PUT) take the same body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupJobConfig {
    /// Letters, digits, `-`, `_`; at most 64 characters.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub id: String,
    /// The VMs backed up, in this order (empty with `all_vms`).
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub vms: Vec<u32>,
    /// Every VM of the node at the time of each run, by vmid.
    #[serde(default)]
    pub all_vms: bool,
    /// The target's name.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub target: String,
    /// When it runs, a subset of systemd calendar events in local time: `daily`, `hourly`,
    /// `weekly`, `monthly`, `minutely`, `sat 02:30`, `mon..fri 21:00`, `*:0/15`, `02:00`.
    #[schema(min_length = 1, max_length = 100)]
    pub schedule: String,
    /// Force a full backup every N runs (1: always full). Default: full only when an
    /// incremental is not possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub full_every: Option<u32>,
    /// Prune each VM's backups on the target after its backup (absent: keep all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<KeepPolicy>,
    /// Run on schedule (a disabled job still runs when asked to).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `backup` (default) makes backups; `verify` makes none and re-reads every stored file of
    /// the VMs' backups on the target, checking them against their manifests (every chain,
    /// through its newest backup), so bit rot is found before a restore needs the backup.
    #[serde(default, skip_serializing_if = "JobMode::is_backup")]
    pub mode: JobMode,
}

/// What a backup job does at each run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    #[default]
    Backup,
    Verify,
}

impl JobMode {
    pub fn is_backup(&self) -> bool {
        *self == JobMode::Backup
    }
}

fn yes() -> bool {
    true
}

impl BackupJobConfig {
    /// The checks that need no host state (the schedule's syntax is checked by hostd).
    pub fn validate(&self) -> Result<(), FieldError> {
        if !valid_target_name(&self.id) {
            return Err(FieldError::new(
                "id",
                format!(
                    "{:?} is not a valid job id: letters, digits, '-', '_' (1-64)",
                    self.id
                ),
            ));
        }
        if self.all_vms && !self.vms.is_empty() {
            return Err(FieldError::new(
                "vms",
                "give either a list of VMs or all_vms, not both",
            ));
        }
        if !self.all_vms && self.vms.is_empty() {
            return Err(FieldError::new(
                "vms",
                "give the VMs to back up (or all_vms for every VM of the node)",
            ));
        }
        if self.vms.len() > 1000 {
            return Err(FieldError::new("vms", "at most 1000 VMs per job"));
        }
        let mut seen = std::collections::HashSet::new();
        for v in &self.vms {
            if !seen.insert(*v) {
                return Err(FieldError::new("vms", format!("VM {v} is listed twice")));
            }
        }
        if !valid_target_name(&self.target) {
            return Err(FieldError::new(
                "target",
                format!("{:?} is not a valid target name", self.target),
            ));
        }
        if let Some(n) = self.full_every {
            if n == 0 || n > 1000 {
                return Err(FieldError::new(
                    "full_every",
                    format!("full_every {n}: give 1 to 1000 (runs between full backups)"),
                ));
            }
        }
        if let Some(r) = &self.retention {
            r.validate("retention.")?;
        }
        if self.mode == JobMode::Verify {
            if self.full_every.is_some() {
                return Err(FieldError::new(
                    "full_every",
                    "a verify job makes no backups: leave full_every out",
                ));
            }
            if self.retention.is_some() {
                return Err(FieldError::new(
                    "retention",
                    "a verify job removes nothing: leave the retention policy out (prune with a backup job)",
                ));
            }
        }
        Ok(())
    }
}

/// The last run of a backup job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupJobRun {
    /// Unix seconds it started.
    pub time: i64,
    /// The run's task.
    pub upid: String,
    /// `running`, `ok` or `error`.
    pub state: String,
    /// The task's message (the failures' summary when `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One node's last run of a cluster job, as that node recorded it in the config store
/// (`/backup/runs/<job>/<node>`) when the run started and when it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupJobNodeRun {
    /// The node that ran it.
    pub node: String,
    /// Unix seconds it started.
    pub time: i64,
    /// The run's task (on that node).
    pub upid: String,
    /// `running`, `ok` or `error`.
    pub state: String,
    /// The failures' summary when `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A backup job with its next and last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupJob {
    /// The job's definition (what PUT takes).
    pub config: BackupJobConfig,
    /// Unix seconds of the next scheduled run (absent when disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<i64>,
    /// This node's last run of the job (each node runs it for the VMs it holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<BackupJobRun>,
    /// A cluster job: every node's last run (each node backs up the VMs it holds), by node
    /// name; a node that never ran it is absent. Empty on a standalone node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_runs: Vec<BackupJobNodeRun>,
    /// Where the definition lives: `cluster` (the config store) or `node` (this node's
    /// database: a standalone node).
    #[serde(default = "node_scope")]
    pub scope: String,
}

#[cfg(test)]
mod sftp_tests {
    use super::*;

    #[test]
    fn restore_vmid_new_or_the_original_itself() {
        let req = |new_vmid: Option<u32>, replace: bool| RestoreRequest {
            target: "main".into(),
            new_vmid,
            pool: "local".into(),
            name: None,
            start: false,
            replace,
        };
        assert_eq!(req(Some(200), false).restored_vmid(100).ok(), Some(200));
        assert_eq!(req(None, true).restored_vmid(100).ok(), Some(100));
        assert_eq!(req(Some(100), true).restored_vmid(100).ok(), Some(100));
        let e = req(Some(200), true).restored_vmid(100).err();
        assert!(e.is_some_and(|e| e.to_string().contains("leave new_vmid out")));
        let e = req(None, false).restored_vmid(100).err();
        assert!(e.is_some_and(|e| e.to_string().contains("set replace")));
    }

    #[test]
    fn sftp_locations_parse_and_bad_ones_say_why() {
        let l = parse_sftp_location("bk@nas.example:/srv/keel/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (l.user.as_str(), l.host.as_str(), l.port, l.path.as_str()),
            ("bk", "nas.example", 22, "/srv/keel")
        );
        let l = parse_sftp_location("root@[::1]:2222:/b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l.host.as_str(), l.port), ("::1", 2222));
        assert_eq!(l.to_string(), "root@[::1]:2222:/b");
        let l = parse_sftp_location("root@127.0.0.1:2222:/b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.to_string(), "root@127.0.0.1:2222:/b");
        for (bad, why) in [
            ("nas:/srv", "not an SFTP location"),
            ("bk@nas:99999:/srv", "port"),
            ("bk@nas:srv", "port"),
            ("bk@nas:22:srv", "not absolute"),
            ("bk@nas:/srv/../etc", "not absolute"),
            ("b k@nas:/srv", "user name"),
            ("bk@na$s:/srv", "host"),
        ] {
            match parse_sftp_location(bad) {
                Err(e) => assert!(e.contains(why), "{bad}: {e}"),
                Ok(l) => panic!("{bad} accepted: {l:?}"),
            }
        }
        assert!(valid_ssh_fingerprint(
            "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
        ));
        assert!(!valid_ssh_fingerprint("SHA256:short"));
        assert!(!valid_ssh_fingerprint("MD5:aa:bb"));
    }

    #[test]
    fn sftp_target_needs_a_key_file_and_dir_takes_none() {
        let mut r = BackupTargetCreate {
            name: "r".into(),
            kind: "sftp".into(),
            path: "bk@nas:/srv".into(),
            key_file: None,
            host_key_fingerprint: None,
            mount_options: None,
        };
        assert_eq!(r.validate().map_err(|e| e.field), Err("key_file".into()));
        r.key_file = Some("/root/.ssh/id_ed25519".into());
        assert!(r.validate().is_ok());
        r.host_key_fingerprint = Some("nope".into());
        assert_eq!(
            r.validate().map_err(|e| e.field),
            Err("host_key_fingerprint".into())
        );
        r.kind = "dir".into();
        r.path = "/srv".into();
        r.host_key_fingerprint = None;
        assert_eq!(r.validate().map_err(|e| e.field), Err("key_file".into()));
    }

    #[test]
    fn nfs_exports_and_options_parse_and_bad_ones_say_why() {
        let s = parse_nfs_source("nas.example:/srv/keel/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (s.server.as_str(), s.export.as_str()),
            ("nas.example", "/srv/keel")
        );
        assert_eq!(s.to_string(), "nas.example:/srv/keel");
        let s = parse_nfs_source("[fd00::5]:/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.server.as_str(), s.export.as_str()), ("fd00::5", "/"));
        assert_eq!(s.to_string(), "[fd00::5]:/");
        for (bad, why) in [
            ("/srv/keel", "not an NFS export"),
            ("nas:srv", "not an absolute path"),
            ("nas:/a/../b", "not an absolute path"),
            ("nas:/a,b", "not an absolute path"),
            ("-o:/x", "not a host name"),
            ("n s:/x", "not a host name"),
            ("[fd00::5/x", "not an NFS export"),
        ] {
            match parse_nfs_source(bad) {
                Err(e) => assert!(e.contains(why), "{bad}: {e}"),
                Ok(s) => panic!("{bad} accepted: {s:?}"),
            }
        }
        assert!(check_nfs_options("vers=4.2,nconnect=4,hard,sec=sys").is_ok());
        for (bad, why) in [
            ("remount", "not one Keel passes on"),
            ("suid", "not one Keel passes on"),
            ("vers", "needs a value"),
            ("hard=1", "takes no value"),
            ("vers=4,,hard", "not one Keel passes on"),
            ("port=1 2", "needs a value"),
        ] {
            match check_nfs_options(bad) {
                Err(e) => assert!(e.contains(why), "{bad}: {e}"),
                Ok(()) => panic!("{bad} accepted"),
            }
        }
        let mut r = BackupTargetCreate {
            name: "n".into(),
            kind: "nfs".into(),
            path: "10.0.0.5:/backups".into(),
            key_file: None,
            host_key_fingerprint: None,
            mount_options: Some("vers=4.2".into()),
        };
        assert!(r.validate().is_ok());
        r.mount_options = Some("bind".into());
        assert_eq!(
            r.validate().map_err(|e| e.field),
            Err("mount_options".into())
        );
        r.kind = "dir".into();
        r.path = "/srv".into();
        assert_eq!(
            r.validate().map_err(|e| e.field),
            Err("mount_options".into())
        );
        r.kind = "nfs".into();
        r.mount_options = None;
        r.path = "/srv".into();
        assert_eq!(r.validate().map_err(|e| e.field), Err("path".into()));
    }
}
