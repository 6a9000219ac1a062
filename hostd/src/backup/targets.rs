//! Backup targets: named places backups are written to: `dir` (a directory each node
//! resolves locally, typically a shared mount), `sftp` (a directory on a remote host over
//! SSH, its host key pinned: [`super::sftp`]) and `nfs` (an export each node mounts itself:
//! [`super::nfs`]; everything else treats it as a `dir` target at its mount point).
//!
//! On a clustered node the definitions are cluster configuration in the config store
//! (`/backup/targets/<name>`); a standalone node keeps them in `hostd.db` (tables
//! `backup_targets`, `backup_sftp`). Targets a node had before it was clustered are adopted
//! into the store ([`defs`]). What a listing says about a target (usable, free space, the
//! key file present) is as seen by the node that answers. Verify results
//! (`backup_verify`) stay per node.

use std::path::{Path, PathBuf};

use keel_api::backup::{parse_nfs_source, parse_sftp_location, BackupTarget, BackupTargetCreate};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::nfs;
use super::sftp::{self, Remote};
use crate::db::{now, Db, Store, StoreError};
use crate::error::{Error, Result};
use crate::Node;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS backup_targets (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS backup_sftp (
    name TEXT PRIMARY KEY,
    key_file TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backup_nfs (
    name TEXT PRIMARY KEY,
    options TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backup_verify (
    target TEXT NOT NULL,
    vmid INTEGER NOT NULL,
    id TEXT NOT NULL,
    time INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    message TEXT,
    PRIMARY KEY (target, vmid, id)
);
";

/// This node's database with the backup tables.
pub fn db(node: &Node) -> Result<Db> {
    let db = Db::open(&node.cfg.db_path())?;
    db.conn().execute_batch(SCHEMA)?;
    Ok(db)
}

/// Why a directory cannot take backups now, if it cannot.
pub fn dir_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!(
                "directory {} does not exist: create it (mkdir -p) or mount its file system",
                path.display()
            ))
        }
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
        Ok(m) if !m.is_dir() => return Some(format!("{} is not a directory", path.display())),
        Ok(_) => {}
    }
    let probe = path.join(format!(".keel-write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => Some(format!(
            "{} is on a read-only file system: remount it read-write",
            path.display()
        )),
        Err(e) => Some(format!("{} is not writable: {e}", path.display())),
    }
}

/// (total, available) bytes of the file system holding `path` (statvfs(3)).
#[allow(unsafe_code)]
pub fn space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path, st a properly sized out-parameter.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if r != 0 {
        return None;
    }
    let f = st.f_frsize as u64;
    Some((st.f_blocks as u64 * f, st.f_bavail as u64 * f))
}

fn info(node: &Node, d: &Def, remote: Option<Remote>, scope: Scope) -> BackupTarget {
    let (name, kind, path) = (d.name.clone(), d.kind.clone(), d.path.clone());
    if let Some(r) = remote {
        // the key file is a path on each node: a node without it says so (docs/backups.md)
        let (error, (total, available)) = match sftp::key_file_problem(&r.key_file) {
            Some(p) => (
                Some(format!(
                    "key file on this node: {p} (an sftp target's key file must exist on every node that runs backups to it)"
                )),
                (0, 0),
            ),
            None => match sftp::probe(&r) {
                Ok(s) => (None, s),
                Err(e) => (Some(e), (0, 0)),
            },
        };
        return BackupTarget {
            name,
            kind,
            ok: error.is_none(),
            error,
            path,
            export: None,
            mount_options: None,
            key_file: Some(r.key_file.display().to_string()),
            host_key_fingerprint: Some(r.fingerprint),
            total,
            available,
            scope: scope.as_str().into(),
        };
    }
    if d.kind == "nfs" {
        return nfs_info(node, d, scope);
    }
    let p = PathBuf::from(&path);
    let error = dir_problem(&p);
    let (total, available) = space(&p).unwrap_or((0, 0));
    BackupTarget {
        name,
        kind,
        ok: error.is_none(),
        error,
        path,
        export: None,
        mount_options: None,
        key_file: None,
        host_key_fingerprint: None,
        total,
        available,
        scope: scope.as_str().into(),
    }
}

/// An `nfs` target as this node sees it: mounted here (now, if it was not), then probed like
/// a directory, off this thread so a server that stopped answering cannot hold the listing.
fn nfs_info(node: &Node, d: &Def, scope: Scope) -> BackupTarget {
    let root = &node.cfg.backup_nfs_dir;
    let mp = nfs::mountpoint(root, &d.name);
    let (error, (total, available)) = match nfs::ensure(
        node.cluster.runner.as_ref(),
        root,
        &d.name,
        &d.path,
        d.mount_options.as_deref(),
    ) {
        Err(e) => (Some(e), (0, 0)),
        Ok(mp) => {
            let at = mp.clone();
            match nfs::probe(nfs::PROBE_TIMEOUT, move || {
                (dir_problem(&at), space(&at).unwrap_or((0, 0)))
            }) {
                Some(r) => r,
                None => (
                    Some(format!(
                        "the NFS server of {} does not answer (no reply within {}s on this node's mount {}): check the server and the network",
                        d.path,
                        nfs::PROBE_TIMEOUT.as_secs(),
                        mp.display()
                    )),
                    (0, 0),
                ),
            }
        }
    };
    BackupTarget {
        name: d.name.clone(),
        kind: d.kind.clone(),
        ok: error.is_none(),
        error,
        path: mp.display().to_string(),
        export: Some(d.path.clone()),
        mount_options: d.mount_options.clone(),
        key_file: None,
        host_key_fingerprint: None,
        total,
        available,
        scope: scope.as_str().into(),
    }
}

/// Where a definition lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The cluster's config store.
    Cluster,
    /// This node's `hostd.db` (a standalone node).
    Node,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Cluster => "cluster",
            Scope::Node => "node",
        }
    }
}

/// A target's definition: a `backup_targets` row (+ `backup_sftp`) on a standalone node,
/// `/backup/targets/<name>` in the config store of a clustered one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Def {
    pub name: String,
    pub kind: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// `nfs`: the extra mount options (`path` is the export, `server:/path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_options: Option<String>,
    #[serde(default)]
    pub created: i64,
}

impl Def {
    /// The same target (the creation time aside).
    fn same(&self, o: &Def) -> bool {
        (
            &self.name,
            &self.kind,
            &self.path,
            &self.key_file,
            &self.fingerprint,
            &self.mount_options,
        ) == (
            &o.name,
            &o.kind,
            &o.path,
            &o.key_file,
            &o.fingerprint,
            &o.mount_options,
        )
    }

    fn remote(&self) -> Result<Option<Remote>> {
        if self.kind != "sftp" {
            return Ok(None);
        }
        let loc = parse_sftp_location(&self.path)
            .map_err(|e| Error::Internal(format!("backup target {:?}: {e}", self.name)))?;
        match (&self.key_file, &self.fingerprint) {
            (Some(k), Some(f)) => Ok(Some(Remote {
                loc,
                key_file: PathBuf::from(k),
                fingerprint: f.clone(),
            })),
            _ => Err(Error::Internal(format!(
                "backup target {:?}: its SFTP settings are missing",
                self.name
            ))),
        }
    }
}

pub(crate) fn target_key(name: &str) -> String {
    format!("/backup/targets/{name}")
}

/// The config store of a clustered node (None: standalone, definitions in `hostd.db`).
pub fn cluster_store(node: &Node) -> Option<Store> {
    node.auth.store().cloned()
}

/// A config store error as the API reports it: no quorum (or a store still syncing) is a
/// 503 saying why, like every other cluster-wide write.
pub fn store_err(e: StoreError) -> Error {
    match e {
        StoreError::NotQuorate | StoreError::Syncing => Error::Unavailable(format!(
            "{e}: backup targets and jobs are cluster configuration, changed only while this node is in the quorate part of the cluster"
        )),
        other => other.into(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, v: &serde_json::Value) -> Result<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| Error::Internal(format!("config store entry {key} is not readable: {e}")))
}

/// The definitions in this node's database.
fn local_defs(db: &Db) -> Result<Vec<Def>> {
    let c = db.conn();
    let mut st = c.prepare(
        "SELECT t.name, t.kind, t.path, s.key_file, s.fingerprint, t.created, n.options
         FROM backup_targets t LEFT JOIN backup_sftp s ON s.name = t.name
         LEFT JOIN backup_nfs n ON n.name = t.name ORDER BY t.name",
    )?;
    let v = st
        .query_map([], |r| {
            Ok(Def {
                name: r.get(0)?,
                kind: r.get(1)?,
                path: r.get(2)?,
                key_file: r.get(3)?,
                fingerprint: r.get(4)?,
                created: r.get(5)?,
                mount_options: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(v)
}

fn delete_local(db: &Db, name: &str) -> Result<()> {
    let c = db.conn();
    c.execute("DELETE FROM backup_targets WHERE name=?1", params![name])?;
    c.execute("DELETE FROM backup_sftp WHERE name=?1", params![name])?;
    c.execute("DELETE FROM backup_nfs WHERE name=?1", params![name])?;
    Ok(())
}

/// What adoption does with one local definition, given the store's entry of that name.
#[derive(Debug, PartialEq, Eq)]
pub enum Adopt {
    /// Not in the store: create it there (version 0), then drop the local row.
    Create,
    /// The same definition is in the store already (a half-done adoption): drop the row.
    Drop,
    /// Another definition of that name is in the store: keep the row, warn, list it nowhere.
    Keep,
}

pub fn adopt_decision<T: PartialEq>(
    local: &T,
    stored: Option<&T>,
    same: impl Fn(&T, &T) -> bool,
) -> Adopt {
    match stored {
        None => Adopt::Create,
        Some(s) if same(local, s) => Adopt::Drop,
        Some(_) => Adopt::Keep,
    }
}

/// Move the targets this node defined before it was clustered into the config store
/// (docs/backups.md, "Cluster-wide"): idempotent, run before every read, so a half-done
/// adoption finishes the next time.
fn adopt(db: &Db, st: &Store) -> Result<()> {
    for d in local_defs(db)? {
        let key = target_key(&d.name);
        let stored: Option<Def> = match st.get(&key).map_err(store_err)? {
            Some(e) => Some(decode(&key, &e.value)?),
            None => None,
        };
        match adopt_decision(&d, stored.as_ref(), Def::same) {
            Adopt::Create => {
                let v = serde_json::to_value(&d).map_err(|e| Error::Internal(e.to_string()))?;
                match st.cas(&key, &v, 0) {
                    Ok(_) => {}
                    // created meanwhile by another node: decided on the next read
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(e)),
                }
                tracing::info!(target = %d.name, "backup target adopted into the cluster config store");
                delete_local(db, &d.name)?;
            }
            Adopt::Drop => delete_local(db, &d.name)?,
            Adopt::Keep => tracing::warn!(
                target = %d.name,
                "this node's backup target differs from the cluster's target of the same name: kept in hostd.db, not used (rename or delete one of them)"
            ),
        }
    }
    Ok(())
}

/// Every definition this node uses, sorted by name: the config store's when clustered
/// (after adopting the local ones), else this node's.
pub fn defs(node: &Node) -> Result<(Vec<Def>, Scope)> {
    let db = db(node)?;
    match cluster_store(node) {
        Some(st) => {
            adopt(&db, &st)?;
            let v = st
                .list("/backup/targets")
                .map_err(store_err)?
                .iter()
                .map(|e| decode(&e.key, &e.value))
                .collect::<Result<Vec<Def>>>()?;
            Ok((v, Scope::Cluster))
        }
        None => Ok((local_defs(&db)?, Scope::Node)),
    }
}

fn def(node: &Node, name: &str) -> Result<(Option<Def>, Scope)> {
    let (v, scope) = defs(node)?;
    Ok((v.into_iter().find(|d| d.name == name), scope))
}

/// The remote host of an `sftp` target (None for a `dir` target).
pub fn remote(node: &Node, t: &BackupTarget) -> Result<Option<Remote>> {
    remote_named(node, &t.name)
}

/// The remote host of the target named `name`, without contacting it (None: a `dir` target).
pub fn remote_named(node: &Node, name: &str) -> Result<Option<Remote>> {
    match def(node, name)?.0 {
        Some(d) => d.remote(),
        None => Ok(None),
    }
}

/// Where backups to an `sftp` target are written before their upload, and where its
/// backups are downloaded to for verify and restore: `<state_dir>/backup-staging/<target>`.
pub fn staging(node: &Node, target: &str) -> PathBuf {
    node.cfg.state_dir.join("backup-staging").join(target)
}

pub fn list(node: &Node) -> Result<Vec<BackupTarget>> {
    let (v, scope) = defs(node)?;
    // a target another node deleted leaves its mount here: unmounted now
    let keep: Vec<&str> = v
        .iter()
        .filter(|d| d.kind == "nfs")
        .map(|d| d.name.as_str())
        .collect();
    nfs::sweep(
        node.cluster.runner.as_ref(),
        &node.cfg.backup_nfs_dir,
        &keep,
    );
    let mut out = Vec::new();
    for d in v {
        let r = d.remote()?;
        out.push(info(node, &d, r, scope));
    }
    Ok(out)
}

/// The target named `name` (404 naming the known ones otherwise).
pub fn get(node: &Node, name: &str) -> Result<BackupTarget> {
    match def(node, name)? {
        (Some(d), scope) => {
            let r = d.remote()?;
            Ok(info(node, &d, r, scope))
        }
        (None, Scope::Cluster) => Err(Error::NotFound(format!(
            "backup target {name:?} does not exist in the cluster (`keel backup target list` shows them)"
        ))),
        (None, Scope::Node) => Err(Error::NotFound(format!(
            "backup target {name:?} does not exist on node {} (`keel backup target list` shows them)",
            node.cfg.node
        ))),
    }
}

/// A usable target (exists, directory present and writable), or a 4xx saying what to fix.
pub fn usable(node: &Node, name: &str) -> Result<BackupTarget> {
    let t = get(node, name)?;
    if let Some(e) = &t.error {
        return Err(Error::Conflict(format!(
            "backup target {name:?} is not usable on node {}: {e}",
            node.cfg.node
        )));
    }
    Ok(t)
}

pub fn create(node: &Node, req: &BackupTargetCreate) -> Result<BackupTarget> {
    req.validate()?;
    let mut remote = None;
    let path = match req.kind.as_str() {
        "sftp" => {
            let r = check_sftp(node, req)?;
            let p = r.loc.to_string();
            remote = Some(r);
            p
        }
        "nfs" => parse_nfs_source(&req.path)
            .map_err(|e| Error::validation("path", e))?
            .to_string(),
        _ => {
            if let Some(e) = dir_problem(Path::new(&req.path)) {
                return Err(Error::validation("path", e));
            }
            req.path.clone()
        }
    };
    let (have, scope) = defs(node)?;
    if let Some(d) = have.iter().find(|d| d.name == req.name || d.path == path) {
        return Err(Error::Conflict(format!(
            "backup target {:?} already exists with this name or {}",
            d.name,
            if d.kind == "nfs" {
                "export"
            } else {
                "directory"
            }
        )));
    }
    let d = Def {
        name: req.name.clone(),
        kind: req.kind.clone(),
        path,
        key_file: remote.as_ref().map(|r| r.key_file.display().to_string()),
        fingerprint: remote.as_ref().map(|r| r.fingerprint.clone()),
        mount_options: req.mount_options.clone().filter(|o| !o.is_empty()),
        created: now(),
    };
    if d.kind == "nfs" {
        check_nfs(node, &d)?;
    }
    let saved = save(node, &d);
    if saved.is_err() && d.kind == "nfs" {
        let _ = nfs::release(
            node.cluster.runner.as_ref(),
            &node.cfg.backup_nfs_dir,
            &d.name,
        );
    }
    saved?;
    Ok(info(node, &d, remote, scope))
}

/// An nfs target before it is saved: this node mounts the export and can write there; a
/// refusal is a 400 on `path` saying what to fix, and leaves nothing mounted.
fn check_nfs(node: &Node, d: &Def) -> Result<()> {
    let runner = node.cluster.runner.as_ref();
    let root = &node.cfg.backup_nfs_dir;
    let mp = nfs::ensure(runner, root, &d.name, &d.path, d.mount_options.as_deref())
        .map_err(|e| Error::validation("path", e))?;
    let at = mp.clone();
    let problem = match nfs::probe(nfs::PROBE_TIMEOUT, move || dir_problem(&at)) {
        Some(p) => p,
        None => Some(format!(
            "the export {} was mounted but does not answer within {}s",
            d.path,
            nfs::PROBE_TIMEOUT.as_secs()
        )),
    };
    if let Some(p) = problem {
        let _ = nfs::release(runner, root, &d.name);
        return Err(Error::validation(
            "path",
            format!("NFS export {}: {p} (on the server: the export must be writable by root from this node, e.g. rw,no_root_squash)", d.path),
        ));
    }
    Ok(())
}

/// Write a new definition where this node keeps them.
fn save(node: &Node, d: &Def) -> Result<()> {
    match cluster_store(node) {
        Some(st) => {
            let v = serde_json::to_value(d).map_err(|e| Error::Internal(e.to_string()))?;
            match st.cas(&target_key(&d.name), &v, 0) {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => {
                    return Err(Error::Conflict(format!(
                        "backup target {:?} already exists in the cluster",
                        d.name
                    )))
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        None => {
            let db = db(node)?;
            let c = db.conn();
            c.execute(
                "INSERT INTO backup_targets(name, kind, path, created) VALUES (?1, ?2, ?3, ?4)",
                params![d.name, d.kind, d.path, d.created],
            )?;
            if let (Some(k), Some(f)) = (&d.key_file, &d.fingerprint) {
                c.execute(
                    "INSERT OR REPLACE INTO backup_sftp(name, key_file, fingerprint) VALUES (?1, ?2, ?3)",
                    params![d.name, k, f],
                )?;
            }
            if d.kind == "nfs" {
                c.execute(
                    "INSERT OR REPLACE INTO backup_nfs(name, options) VALUES (?1, ?2)",
                    params![d.name, d.mount_options.clone().unwrap_or_default()],
                )?;
            }
        }
    }
    Ok(())
}

/// An sftp target before it is saved: the key file readable and private, the host reachable,
/// its host key the one given (or pinned now), authentication accepted, the directory
/// present and writable. Every refusal is a 400 on the field to fix.
fn check_sftp(node: &Node, req: &BackupTargetCreate) -> Result<Remote> {
    let loc = parse_sftp_location(&req.path).map_err(|e| Error::validation("path", e))?;
    let key = PathBuf::from(req.key_file.as_deref().unwrap_or_default());
    if let Some(p) = sftp::key_file_problem(&key) {
        return Err(Error::validation("key_file", p));
    }
    // only keys put there for backups: not root's own SSH identity or another secret of the
    // node, which an API user could otherwise make hostd log in with
    let keys = node.cfg.state_dir.join(sftp::KEY_DIR);
    if let Some(p) = sftp::key_outside(&key, &keys) {
        return Err(Error::validation("key_file", p));
    }
    let (conn, fp) = match sftp::connect(&loc, &key, req.host_key_fingerprint.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let m = e.to_string();
            let field = if m.contains("host key") {
                "host_key_fingerprint"
            } else if m.contains("authentication") {
                "key_file"
            } else {
                "path"
            };
            return Err(Error::validation(field, m));
        }
    };
    conn.check().map_err(|e| Error::validation("path", e))?;
    Ok(Remote {
        loc,
        key_file: key,
        fingerprint: fp,
    })
}

/// Forget a target (cluster-wide on a clustered node). The backups in its directory stay
/// where they are. An nfs target is unmounted here; other nodes unmount it at their next
/// listing.
pub fn delete(node: &Node, name: &str) -> Result<()> {
    let (d, _) = def(node, name)?;
    if d.is_none() {
        get(node, name)?;
    }
    let db = db(node)?;
    match cluster_store(node) {
        Some(st) => {
            st.delete(&target_key(name)).map_err(store_err)?;
        }
        None => delete_local(&db, name)?,
    }
    db.conn()
        .execute("DELETE FROM backup_verify WHERE target=?1", params![name])?;
    if d.is_some_and(|d| d.kind == "nfs") {
        if let Err(e) = nfs::release(node.cluster.runner.as_ref(), &node.cfg.backup_nfs_dir, name) {
            tracing::warn!(
                target = name,
                "deleted NFS backup target still mounted: {e}"
            );
        }
    }
    Ok(())
}

/// The last verification of a backup: (time, ok, message).
pub fn verify_state(
    node: &Node,
    target: &str,
    vmid: u32,
    id: &str,
) -> Result<Option<(i64, bool, Option<String>)>> {
    let db = db(node)?;
    let r = db
        .conn()
        .query_row(
            "SELECT time, ok, message FROM backup_verify WHERE target=?1 AND vmid=?2 AND id=?3",
            params![target, vmid, id],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0, r.get(2)?)),
        )
        .optional()?;
    Ok(r)
}

pub fn record_verify(
    node: &Node,
    target: &str,
    vmid: u32,
    id: &str,
    ok: bool,
    message: Option<&str>,
) -> Result<()> {
    let db = db(node)?;
    db.conn().execute(
        "INSERT OR REPLACE INTO backup_verify(target, vmid, id, time, ok, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![target, vmid, id, now(), ok as i64, message],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::tests_support::fake_node;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    fn req(name: &str, path: &Path) -> BackupTargetCreate {
        BackupTargetCreate {
            name: name.into(),
            kind: "dir".into(),
            path: path.display().to_string(),
            key_file: None,
            host_key_fingerprint: None,
            mount_options: None,
        }
    }

    #[test]
    fn targets_create_list_delete_and_clear_errors() -> Result<()> {
        let (node, dir) = fake_node(Arc::new(FakeHv::new()))?;
        let d = dir.path().join("bk");
        // missing directory: a 400 on `path` that says what to do
        match create(&node, &req("t1", &d)) {
            Err(Error::Validation(f)) => {
                assert_eq!(f.field, "path");
                assert!(f.message.contains("does not exist"), "{}", f.message);
            }
            r => panic!("expected a validation error: {r:?}"),
        }
        std::fs::create_dir(&d)?;
        let t = create(&node, &req("t1", &d))?;
        assert!(t.ok && t.total > 0, "{t:?}");
        assert!(matches!(
            create(&node, &req("t2", &d)),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            create(&node, &req("bad name", &d)),
            Err(Error::Validation(_))
        ));
        assert_eq!(list(&node)?.len(), 1);
        // the directory goes away: listed, not usable, with the reason
        std::fs::remove_dir(&d)?;
        let l = list(&node)?;
        assert!(
            !l[0].ok
                && l[0]
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("does not exist"))
        );
        assert!(matches!(usable(&node, "t1"), Err(Error::Conflict(_))));
        delete(&node, "t1")?;
        assert!(matches!(get(&node, "t1"), Err(Error::NotFound(_))));
        // a directory root cannot write to is only refused for non-root; check the file case
        let f = dir.path().join("file");
        std::fs::write(&f, b"")?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o444))?;
        assert!(dir_problem(&f).is_some_and(|e| e.contains("not a directory")));
        Ok(())
    }

    /// A node clustered after it defined targets and jobs: on the next read they are in the
    /// config store and gone from hostd.db; one whose name the cluster already uses with
    /// another definition stays local and is listed nowhere; a second pass changes nothing.
    #[test]
    fn local_targets_and_jobs_are_adopted_into_the_cluster() -> Result<()> {
        let (mut node, dir) = fake_node(Arc::new(FakeHv::new()))?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a)?;
        std::fs::create_dir(&b)?;
        let t = create(&node, &req("ta", &a))?;
        assert_eq!(t.scope, "node");
        create(&node, &req("tb", &b))?;
        let jc: keel_api::backup::BackupJobConfig = serde_json::from_value(serde_json::json!({
            "id": "j1", "all_vms": true, "target": "ta", "schedule": "daily"
        }))
        .map_err(|e| Error::Internal(e.to_string()))?;
        super::super::jobs::create(&node, &jc)?;
        // the node joins a cluster whose store already has another "tb"
        let sock = dir.path().join("store.sock");
        let map = crate::db::fake_store::serve(&sock);
        let st = Store::at(&sock);
        st.put(
            "/backup/targets/tb",
            &serde_json::json!({"name": "tb", "kind": "dir", "path": "/elsewhere"}),
        )?;
        let record = dir.path().join("cluster.json");
        std::fs::write(&record, "{}")?;
        node.auth = crate::auth::Auth::new(crate::db::Db::open(&dir.path().join("c.db"))?)
            .in_cluster(record)
            .with_store(Store::at(&sock));
        let l = list(&node)?;
        let names: Vec<(&str, &str, &str)> = l
            .iter()
            .map(|t| (t.name.as_str(), t.path.as_str(), t.scope.as_str()))
            .collect();
        let a_s = a.display().to_string();
        assert_eq!(
            names,
            vec![
                ("ta", a_s.as_str(), "cluster"),
                ("tb", "/elsewhere", "cluster")
            ]
        );
        let local: Vec<String> = local_defs(&db(&node)?)?
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(
            local,
            vec!["tb".to_string()],
            "the conflicting one stays local"
        );
        let jobs = super::super::jobs::list(&node)?;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].scope, "cluster");
        assert!(jobs[0].next_run.is_some(), "its bookkeeping moved along");
        assert!(map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key("/backup/jobs/j1"));
        // idempotent
        assert_eq!(list(&node)?.len(), 2);
        assert_eq!(super::super::jobs::list(&node)?.len(), 1);
        // cluster-wide delete
        super::super::jobs::delete(&node, "j1")?;
        delete(&node, "ta")?;
        assert!(!map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key("/backup/targets/ta"));
        assert_eq!(list(&node)?.len(), 1);
        Ok(())
    }
}
