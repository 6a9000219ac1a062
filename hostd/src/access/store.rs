//! Where the access configuration lives: on a standalone node in `hostd.db`'s `access_kv`
//! table, on a clustered node in the config store — the same keys in both, so cluster init
//! copies the table into the store and a joining node copies the store into its table:
//!
//! - `/access/usermeta/<user>` — `{enable, expire, comment, groups}`
//! - `/access/groups/<group>` — `{comment}`
//! - `/access/roles/<role>` — `{privs}` (custom roles; built-ins are not stored)
//! - `/access/acl/<type>/<ugid>/<role>/-<path>` — the entry itself (`!` of a token id as `:`)
//! - `/access/tokenmeta/<user>/<tokenid>` — `{expire, privsep}`
//!
//! Accounts themselves (`/access/users/…`, `/access/tokens/…`: password and secret hashes) are
//! `auth`'s. All of `/access/` is readable through the raw config API by root only.

use keel_api::access::{AclEntry, Privilege};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::eval::{AccessConfig, GroupMeta, TokenMeta, UserMeta};
use crate::db::{now, Db, Store, StoreError};
use crate::error::{Error, Result};
use crate::Node;

pub const USERMETA: &str = "/access/usermeta";
pub const GROUPS: &str = "/access/groups";
pub const ROLES: &str = "/access/roles";
pub const ACL: &str = "/access/acl";
pub const TOKENMETA: &str = "/access/tokenmeta";

/// The prefixes this module owns (what init copies and join replaces).
pub const PREFIXES: [&str; 5] = [USERMETA, GROUPS, ROLES, ACL, TOKENMETA];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRole {
    pub privs: Vec<Privilege>,
}

pub fn usermeta_key(user: &str) -> String {
    format!("{USERMETA}/{user}")
}
pub fn group_key(g: &str) -> String {
    format!("{GROUPS}/{g}")
}
pub fn role_key(r: &str) -> String {
    format!("{ROLES}/{r}")
}
pub fn tokenmeta_key(user: &str, tokenid: &str) -> String {
    format!("{TOKENMETA}/{user}/{tokenid}")
}
pub fn acl_key(e: &AclEntry) -> String {
    let path = if e.path == "/" { "" } else { e.path.as_str() };
    format!(
        "{ACL}/{}/{}/{}/-{path}",
        e.ugid_type.as_str(),
        e.ugid.replace('!', ":"),
        e.roleid
    )
}

/// Standalone (this node's table) or clustered (the config store).
pub enum Backend<'a> {
    Local(&'a Db),
    Cluster(&'a Store),
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v)
        .map_err(|e| Error::Internal(format!("access entry {key} is malformed: {e}")))
}

impl<'a> Backend<'a> {
    pub fn of(node: &'a Node) -> Backend<'a> {
        match node.auth.store() {
            Some(st) => Backend::Cluster(st),
            None => Backend::Local(node.auth.db()),
        }
    }

    /// Entries at or below `prefix`, sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
        match self {
            Backend::Cluster(st) => Ok(st
                .list(prefix)?
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect()),
            Backend::Local(db) => local_list(db, prefix),
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<serde_json::Value>> {
        match self {
            Backend::Cluster(st) => Ok(st.get(key)?.map(|e| e.value)),
            Backend::Local(db) => {
                let v: Option<String> =
                    rusqlite::OptionalExtension::optional(db.conn().query_row(
                        "SELECT value FROM access_kv WHERE key=?1",
                        params![key],
                        |r| r.get(0),
                    ))?;
                v.map(|s| {
                    serde_json::from_str(&s)
                        .map_err(|e| Error::Internal(format!("access entry {key}: {e}")))
                })
                .transpose()
            }
        }
    }

    pub fn put(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        match self {
            Backend::Cluster(st) => {
                st.put(key, value)?;
            }
            Backend::Local(db) => {
                db.conn().execute(
                    "INSERT INTO access_kv(key,value) VALUES (?1,?2)
                     ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    params![key, value.to_string()],
                )?;
            }
        }
        Ok(())
    }

    /// Create only if absent: `Err(Conflict(what_exists))` otherwise.
    pub fn create(&self, key: &str, value: &serde_json::Value, what: &str) -> Result<()> {
        let exists = || Error::Conflict(format!("{what} already exists"));
        match self {
            Backend::Cluster(st) => match st.create(key, value) {
                Ok(_) => Ok(()),
                Err(StoreError::Conflict { .. }) => Err(exists()),
                Err(e) => Err(e.into()),
            },
            Backend::Local(db) => {
                let n = db.conn().execute(
                    "INSERT OR IGNORE INTO access_kv(key,value) VALUES (?1,?2)",
                    params![key, value.to_string()],
                )?;
                if n == 0 {
                    return Err(exists());
                }
                Ok(())
            }
        }
    }

    /// `Ok(false)` when the key did not exist.
    pub fn delete(&self, key: &str) -> Result<bool> {
        match self {
            Backend::Cluster(st) => Ok(st.delete(key)?),
            Backend::Local(db) => Ok(db
                .conn()
                .execute("DELETE FROM access_kv WHERE key=?1", params![key])?
                > 0),
        }
    }

    /// Every account: (userid, created), from `auth`'s records.
    pub fn accounts(&self) -> Result<Vec<(String, i64)>> {
        match self {
            Backend::Cluster(st) => {
                let mut out = vec![];
                for e in st.list("/access/users")? {
                    if let Some(u) = e.key.strip_prefix("/access/users/") {
                        out.push((u.to_string(), e.value["created"].as_i64().unwrap_or(0)));
                    }
                }
                Ok(out)
            }
            Backend::Local(db) => {
                let c = db.conn();
                let mut st = c.prepare("SELECT userid,created FROM users ORDER BY userid")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
        }
    }

    /// Remove an account with its tokens (and, standalone, its sessions).
    pub fn delete_account(&self, user: &str) -> Result<bool> {
        match self {
            Backend::Cluster(st) => {
                for e in st.list(&format!("/access/tokens/{user}"))? {
                    st.delete(&e.key)?;
                }
                Ok(st.delete(&crate::auth::user_key(user))?)
            }
            Backend::Local(db) => {
                let c = db.conn();
                c.execute("DELETE FROM tokens WHERE userid=?1", params![user])?;
                c.execute("DELETE FROM sessions WHERE userid=?1", params![user])?;
                Ok(c.execute("DELETE FROM users WHERE userid=?1", params![user])? > 0)
            }
        }
    }

    /// Everything evaluation needs, in one read.
    pub fn load(&self) -> Result<AccessConfig> {
        let mut cfg = AccessConfig::default();
        for (k, v) in self.list("/access")? {
            if let Some(u) = k.strip_prefix(&format!("{USERMETA}/")) {
                cfg.users.insert(u.to_string(), decode::<UserMeta>(&k, v)?);
            } else if let Some(g) = k.strip_prefix(&format!("{GROUPS}/")) {
                cfg.groups
                    .insert(g.to_string(), decode::<GroupMeta>(&k, v)?);
            } else if let Some(r) = k.strip_prefix(&format!("{ROLES}/")) {
                cfg.roles
                    .insert(r.to_string(), decode::<StoredRole>(&k, v)?.privs);
            } else if k.starts_with(&format!("{ACL}/")) {
                cfg.acl.push(decode::<AclEntry>(&k, v)?);
            } else if let Some(t) = k.strip_prefix(&format!("{TOKENMETA}/")) {
                if let Some((u, id)) = t.split_once('/') {
                    cfg.tokens
                        .insert(format!("{u}!{id}"), decode::<TokenMeta>(&k, v)?);
                }
            }
        }
        cfg.acl.sort();
        Ok(cfg)
    }
}

fn local_list(db: &Db, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
    let c = db.conn();
    let mut st = c.prepare(
        "SELECT key,value FROM access_kv WHERE key=?1 OR substr(key,1,length(?1)+1)=?1||'/' ORDER BY key",
    )?;
    let rows = st.query_map(params![prefix], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = vec![];
    for r in rows {
        let (k, v) = r?;
        let v = serde_json::from_str(&v)
            .map_err(|e| Error::Internal(format!("access entry {k}: {e}")))?;
        out.push((k, v));
    }
    Ok(out)
}

/// This node's access entries (not the accounts): what `cluster init` copies into the store
/// next to `auth`'s users and tokens.
pub fn local_entries(db: &Db) -> Result<Vec<(String, serde_json::Value)>> {
    let mut out = vec![];
    for p in PREFIXES {
        out.extend(local_list(db, p)?);
    }
    Ok(out)
}

/// Replace this node's access entries by the config store's (a joining node). Returns how
/// many were copied.
pub fn replace_local(db: &Db, store: &Store) -> Result<usize> {
    let mut entries = vec![];
    for p in PREFIXES {
        entries.extend(store.list(p)?);
    }
    let mut c = db.conn();
    let tx = c.transaction()?;
    tx.execute("DELETE FROM access_kv", [])?;
    for e in &entries {
        tx.execute(
            "INSERT INTO access_kv(key,value) VALUES (?1,?2)",
            params![e.key, e.value.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(entries.len())
}

/// Unix seconds now (re-exported for the handlers' expiry checks).
pub fn unix_now() -> i64 {
    now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::access::UgidType;

    #[test]
    fn local_backend_roundtrip_and_cluster_copy() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = Db::open(&dir.path().join("a.db"))?;
        let b = Backend::Local(&db);
        let e = AclEntry {
            path: "/vms/100".into(),
            ugid_type: UgidType::Token,
            ugid: "bob!ci".into(),
            roleid: "VMUser".into(),
            propagate: true,
        };
        let root = AclEntry {
            path: "/".into(),
            ugid_type: UgidType::User,
            ugid: "bob".into(),
            roleid: "Auditor".into(),
            propagate: true,
        };
        assert_eq!(acl_key(&e), "/access/acl/token/bob:ci/VMUser/-/vms/100");
        assert_eq!(acl_key(&root), "/access/acl/user/bob/Auditor/-");
        for k in [acl_key(&e), acl_key(&root)] {
            clusterd::store::validate_key("key", &k).map_err(|e| Error::Internal(e.to_string()))?;
        }
        b.put(&acl_key(&e), &serde_json::json!(e))?;
        b.put(&acl_key(&root), &serde_json::json!(root))?;
        b.create(&group_key("ops"), &serde_json::json!({}), "group ops")?;
        assert!(matches!(
            b.create(&group_key("ops"), &serde_json::json!({}), "group ops"),
            Err(Error::Conflict(_))
        ));
        b.put(
            &tokenmeta_key("bob", "ci"),
            &serde_json::json!(TokenMeta {
                expire: None,
                privsep: true
            }),
        )?;
        let cfg = b.load()?;
        assert_eq!(cfg.acl, vec![root.clone(), e.clone()]);
        assert!(cfg.groups.contains_key("ops"));
        assert!(cfg.tokens.get("bob!ci").is_some_and(|t| t.privsep));
        // "/access/acl/user/bob" must not list "/access/acl/user/bobby/…"
        let other = AclEntry {
            ugid: "bobby".into(),
            ..root.clone()
        };
        b.put(&acl_key(&other), &serde_json::json!(other))?;
        assert_eq!(b.list("/access/acl/user/bob")?.len(), 1);
        assert!(b.delete(&acl_key(&other))?);
        assert!(!b.delete(&acl_key(&other))?);

        // init copies these entries; a joiner replaces its own with the store's
        let sock = dir.path().join("store.sock");
        let _map = crate::db::fake_store::serve(&sock);
        let st = Store::at(&sock);
        for (k, v) in local_entries(&db)? {
            st.put(&k, &v)?;
        }
        let cb = Backend::Cluster(&st);
        assert_eq!(cb.load()?.acl, vec![root, e]);
        let db2 = Db::open(&dir.path().join("b.db"))?;
        Backend::Local(&db2).put(&group_key("mine"), &serde_json::json!({}))?;
        assert_eq!(replace_local(&db2, &st)?, 4);
        let c2 = Backend::Local(&db2).load()?;
        assert!(c2.groups.contains_key("ops") && !c2.groups.contains_key("mine"));
        Ok(())
    }
}
