//! Backup targets: named places backups are written to: `dir` (a directory on this node) and
//! `sftp` (a directory on a remote host over SSH, its host key pinned: [`super::sftp`]). Targets are this node's configuration, kept in `hostd.db` (table
//! `backup_targets`), like pools and networks: a clustered node's targets are its own.

use std::path::{Path, PathBuf};

use keel_api::backup::{parse_sftp_location, BackupTarget, BackupTargetCreate};
use rusqlite::{params, OptionalExtension};

use super::sftp::{self, Remote};
use crate::db::{now, Db};
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

fn info(name: String, kind: String, path: String, remote: Option<Remote>) -> BackupTarget {
    if let Some(r) = remote {
        let (error, (total, available)) = match sftp::probe(&r) {
            Ok(s) => (None, s),
            Err(e) => (Some(e), (0, 0)),
        };
        return BackupTarget {
            name,
            kind,
            ok: error.is_none(),
            error,
            path,
            key_file: Some(r.key_file.display().to_string()),
            host_key_fingerprint: Some(r.fingerprint),
            total,
            available,
        };
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
        key_file: None,
        host_key_fingerprint: None,
        total,
        available,
    }
}

/// The SFTP side of a target row (None for a `dir` target).
fn remote_of(db: &Db, name: &str, kind: &str, path: &str) -> Result<Option<Remote>> {
    if kind != "sftp" {
        return Ok(None);
    }
    let loc = parse_sftp_location(path)
        .map_err(|e| Error::Internal(format!("backup target {name:?}: {e}")))?;
    let (key, fp): (String, String) = db
        .conn()
        .query_row(
            "SELECT key_file, fingerprint FROM backup_sftp WHERE name=?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| Error::Internal(format!("backup target {name:?}: its SFTP settings: {e}")))?;
    Ok(Some(Remote {
        loc,
        key_file: PathBuf::from(key),
        fingerprint: fp,
    }))
}

/// The remote host of an `sftp` target (None for a `dir` target).
pub fn remote(node: &Node, t: &BackupTarget) -> Result<Option<Remote>> {
    let db = db(node)?;
    remote_of(&db, &t.name, &t.kind, &t.path)
}

/// The remote host of the target named `name`, without contacting it (None: a `dir` target).
pub fn remote_named(node: &Node, name: &str) -> Result<Option<Remote>> {
    let db = db(node)?;
    let row: Option<(String, String)> = db
        .conn()
        .query_row(
            "SELECT kind, path FROM backup_targets WHERE name=?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        Some((k, p)) => remote_of(&db, name, &k, &p),
        None => Ok(None),
    }
}

/// Where backups to an `sftp` target are written before their upload, and where its
/// backups are downloaded to for verify and restore: `<state_dir>/backup-staging/<target>`.
pub fn staging(node: &Node, target: &str) -> PathBuf {
    node.cfg.state_dir.join("backup-staging").join(target)
}

pub fn list(node: &Node) -> Result<Vec<BackupTarget>> {
    let db = db(node)?;
    let c = db.conn();
    let mut st = c.prepare("SELECT name, kind, path FROM backup_targets ORDER BY name")?;
    let rows: Vec<(String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    drop(st);
    // remote_of locks the connection again
    drop(c);
    let mut out = Vec::new();
    for (n, k, p) in rows {
        let r = remote_of(&db, &n, &k, &p)?;
        out.push(info(n, k, p, r));
    }
    Ok(out)
}

/// The target named `name` (404 naming the known ones otherwise).
pub fn get(node: &Node, name: &str) -> Result<BackupTarget> {
    let db = db(node)?;
    let row: Option<(String, String)> = db
        .conn()
        .query_row(
            "SELECT kind, path FROM backup_targets WHERE name=?1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        Some((k, p)) => {
            let r = remote_of(&db, name, &k, &p)?;
            Ok(info(name.to_string(), k, p, r))
        }
        None => Err(Error::NotFound(format!(
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
            "backup target {name:?} is not usable: {e}"
        )));
    }
    Ok(t)
}

pub fn create(node: &Node, req: &BackupTargetCreate) -> Result<BackupTarget> {
    req.validate()?;
    let mut remote = None;
    if req.kind == "sftp" {
        remote = Some(check_sftp(node, req)?);
    } else if let Some(e) = dir_problem(Path::new(&req.path)) {
        return Err(Error::validation("path", e));
    }
    let path = match &remote {
        Some(r) => r.loc.to_string(),
        None => req.path.clone(),
    };
    let db = db(node)?;
    let c = db.conn();
    let dup: Option<String> = c
        .query_row(
            "SELECT name FROM backup_targets WHERE name=?1 OR path=?2",
            params![req.name, path],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(d) = dup {
        return Err(Error::Conflict(format!(
            "backup target {d:?} already exists with this name or directory"
        )));
    }
    c.execute(
        "INSERT INTO backup_targets(name, kind, path, created) VALUES (?1, ?2, ?3, ?4)",
        params![req.name, req.kind, path, now()],
    )?;
    if let Some(r) = &remote {
        c.execute(
            "INSERT OR REPLACE INTO backup_sftp(name, key_file, fingerprint) VALUES (?1, ?2, ?3)",
            params![req.name, r.key_file.display().to_string(), r.fingerprint],
        )?;
    }
    drop(c);
    Ok(info(req.name.clone(), req.kind.clone(), path, remote))
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

/// Forget a target. The backups in its directory stay where they are.
pub fn delete(node: &Node, name: &str) -> Result<()> {
    get(node, name)?;
    let db = db(node)?;
    let c = db.conn();
    c.execute("DELETE FROM backup_targets WHERE name=?1", params![name])?;
    c.execute("DELETE FROM backup_sftp WHERE name=?1", params![name])?;
    c.execute("DELETE FROM backup_verify WHERE target=?1", params![name])?;
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
}
