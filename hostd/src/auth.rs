//! Users (argon2 password hashes), session tickets with CSRF tokens, and API tokens.
//! Tickets and token secrets are random 256-bit values; only their SHA-256 is stored.
//!
//! On a standalone node users and tokens live in the node's SQLite database. On a clustered
//! node the replicated config store is their source of truth — `/access/users/<user>`
//! (`{hash, created}`) and `/access/tokens/<user>/<tokenid>` (`{secret_hash, comment,
//! created}`) — read from this node's replica, so a user or token made on any member works on
//! every member. Writes go through the store and are refused (409/503) while it is read-only
//! or down. Sessions (tickets) stay per node, and so does the `local-root` token hostd writes
//! for local commands at every start.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use keel_api::auth::{LoginResponse, TokenCreated, TokenInfo};
use rand::{distributions::Alphanumeric, Rng, RngCore};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{now, Db, Store};
use crate::error::{Error, Result};

/// Session lifetime (as Proxmox: two hours).
pub const TICKET_LIFETIME_S: i64 = 2 * 3600;

/// Who made a request, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    /// `Some(csrf)` for ticket (cookie) sessions; `None` for API tokens.
    pub csrf: Option<String>,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A password a human can type: 20 letters and digits.
pub fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

fn valid_userid(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// A user name and a new password acceptable to [`Auth::set_password`].
pub fn check_new_password(user: &str, password: &str) -> Result<()> {
    if !valid_userid(user) {
        return Err(Error::validation(
            "username",
            format!("{user:?} is not a valid user name"),
        ));
    }
    keel_api::password::validate_password("password", password)?;
    Ok(())
}

/// An argon2 hash of `password` (CPU- and memory-heavy: call it on the bounded pool of
/// [`crate::login`] from request handlers).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Internal(format!("argon2: {e}")))?
        .to_string())
}

/// Does `password` match `hash`? An unknown user (`None`) costs the same as a known one, so
/// timing does not reveal which users exist.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    match hash {
        Some(h) => PasswordHash::new(h)
            .map(|ph| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &ph)
                    .is_ok()
            })
            .unwrap_or(false),
        None => {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
            false
        }
    }
}

/// The token id of the node-local root token (never in the config store: every node writes
/// its own at start).
pub const NODE_LOCAL_TOKEN: &str = "local-root";

/// Config store key of a user.
pub fn user_key(user: &str) -> String {
    format!("/access/users/{user}")
}

/// Config store key of an API token.
pub fn token_key(user: &str, tokenid: &str) -> String {
    format!("/access/tokens/{user}/{tokenid}")
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredUser {
    hash: String,
    created: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredToken {
    secret_hash: String,
    #[serde(default)]
    comment: Option<String>,
    created: i64,
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v)
        .map_err(|e| Error::Internal(format!("config store entry {key} is malformed: {e}")))
}

pub struct Auth {
    db: Db,
    /// The cluster record file: while it exists, users and tokens are the config store's.
    cluster_record: Option<std::path::PathBuf>,
    store: Store,
}

impl Auth {
    pub fn new(db: Db) -> Self {
        Auth {
            db,
            cluster_record: None,
            store: Store::local(),
        }
    }

    /// This node's database (its standalone users and tokens).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Use the config store for users and tokens whenever `record` (the cluster record) exists.
    pub fn in_cluster(mut self, record: std::path::PathBuf) -> Self {
        self.cluster_record = Some(record);
        self
    }

    /// Talk to `store` instead of the local keel-clusterd (tests).
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    /// The config store, when this node is clustered (VM ids use it too).
    pub fn store(&self) -> Option<&Store> {
        self.cluster_record
            .as_ref()
            .filter(|p| p.exists())
            .map(|_| &self.store)
    }

    pub fn user_exists(&self, user: &str) -> Result<bool> {
        if let Some(st) = self.store() {
            return Ok(st.get(&user_key(user))?.is_some());
        }
        self.local_user_exists(user)
    }

    /// In this node's own table (the standalone copy).
    pub fn local_user_exists(&self, user: &str) -> Result<bool> {
        Ok(self
            .db
            .conn()
            .query_row("SELECT 1 FROM users WHERE userid=?1", params![user], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    pub fn set_password(&self, user: &str, password: &str) -> Result<()> {
        check_new_password(user, password)?;
        let hash = hash_password(password)?;
        self.store_password_hash(user, &hash)
    }

    /// Store `hash` (from [`hash_password`]) as `user`'s password: in the config store when
    /// clustered, else in this node's table. Creates the user if absent.
    pub fn store_password_hash(&self, user: &str, hash: &str) -> Result<()> {
        let hash = hash.to_string();
        if let Some(st) = self.store() {
            let created = match st.get(&user_key(user))? {
                Some(e) => decode::<StoredUser>(&e.key, e.value)?.created,
                None => now(),
            };
            st.put(
                &user_key(user),
                &serde_json::json!(StoredUser { hash, created }),
            )?;
            return Ok(());
        }
        self.db.conn().execute(
            "INSERT INTO users(userid,hash,created) VALUES (?1,?2,?3)
             ON CONFLICT(userid) DO UPDATE SET hash=excluded.hash",
            params![user, hash, now()],
        )?;
        Ok(())
    }

    /// The stored argon2 hash of `user`'s password, `None` for an unknown user.
    pub fn password_hash(&self, user: &str) -> Result<Option<String>> {
        Ok(match self.store() {
            Some(st) => match st.get(&user_key(user))? {
                Some(e) => Some(decode::<StoredUser>(&e.key, e.value)?.hash),
                None => None,
            },
            None => self
                .db
                .conn()
                .query_row(
                    "SELECT hash FROM users WHERE userid=?1",
                    params![user],
                    |r| r.get(0),
                )
                .optional()?,
        })
    }

    /// End `user`'s sessions on this node, except the one of `keep` (a ticket).
    pub fn end_sessions(&self, user: &str, keep: Option<&str>) -> Result<usize> {
        let keep = keep.map(sha256_hex).unwrap_or_default();
        Ok(self.db.conn().execute(
            "DELETE FROM sessions WHERE userid=?1 AND ticket_hash != ?2",
            params![user, keep],
        )?)
    }

    /// Check a password; on success open a session. (The API checks passwords on the bounded
    /// pool of [`crate::login`] with throttling; this is the plain sequence.)
    pub fn login(&self, user: &str, password: &str) -> Result<LoginResponse> {
        let hash = self.password_hash(user)?;
        if !verify_password(hash.as_deref(), password) {
            return Err(Error::Unauthorized(
                "authentication failed: wrong user name or password".into(),
            ));
        }
        self.open_session(user)
    }

    /// Open a session for `user` (whose password was checked).
    pub fn open_session(&self, user: &str) -> Result<LoginResponse> {
        let ticket = random_token();
        let csrf = random_token();
        let expires = now() + TICKET_LIFETIME_S;
        let c = self.db.conn();
        c.execute("DELETE FROM sessions WHERE expires < ?1", params![now()])?;
        c.execute(
            "INSERT INTO sessions(ticket_hash,userid,csrf,expires) VALUES (?1,?2,?3,?4)",
            params![sha256_hex(&ticket), user, csrf, expires],
        )?;
        Ok(LoginResponse {
            username: user.to_string(),
            ticket,
            csrf_token: csrf,
            expires,
        })
    }

    pub fn logout(&self, ticket: &str) -> Result<()> {
        self.db.conn().execute(
            "DELETE FROM sessions WHERE ticket_hash=?1",
            params![sha256_hex(ticket)],
        )?;
        Ok(())
    }

    /// The principal of a valid, unexpired ticket.
    pub fn check_ticket(&self, ticket: &str) -> Result<Option<Principal>> {
        let row: Option<(String, String, i64)> = self
            .db
            .conn()
            .query_row(
                "SELECT userid,csrf,expires FROM sessions WHERE ticket_hash=?1",
                params![sha256_hex(ticket)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row
            .filter(|(_, _, exp)| *exp > now())
            .map(|(user, csrf, _)| Principal {
                user,
                csrf: Some(csrf),
            }))
    }

    /// Check `user!tokenid=secret`.
    pub fn check_token(&self, value: &str) -> Result<Option<Principal>> {
        let Some((id, secret)) = value.split_once('=') else {
            return Ok(None);
        };
        let Some((user, tokenid)) = id.split_once('!') else {
            return Ok(None);
        };
        let stored: Option<String> = match self.store().filter(|_| tokenid != NODE_LOCAL_TOKEN) {
            Some(st) => match st.get(&token_key(user, tokenid))? {
                Some(e) => Some(decode::<StoredToken>(&e.key, e.value)?.secret_hash),
                None => None,
            },
            None => self
                .db
                .conn()
                .query_row(
                    "SELECT secret_hash FROM tokens WHERE userid=?1 AND tokenid=?2",
                    params![user, tokenid],
                    |r| r.get(0),
                )
                .optional()?,
        };
        let given = sha256_hex(secret);
        Ok(stored
            .filter(|s| constant_time_eq(s.as_bytes(), given.as_bytes()))
            .map(|_| Principal {
                user: user.to_string(),
                csrf: None,
            }))
    }

    pub fn create_token(
        &self,
        user: &str,
        tokenid: &str,
        comment: Option<&str>,
    ) -> Result<TokenCreated> {
        if tokenid.is_empty()
            || tokenid.len() > 64
            || !tokenid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::validation(
                "tokenid",
                format!("{tokenid:?} is invalid: use 1-64 letters, digits, '-' or '_'"),
            ));
        }
        let secret = random_token();
        if let Some(st) = self.store().filter(|_| tokenid != NODE_LOCAL_TOKEN) {
            let v = serde_json::json!(StoredToken {
                secret_hash: sha256_hex(&secret),
                comment: comment.map(str::to_string),
                created: now(),
            });
            return match st.create(&token_key(user, tokenid), &v) {
                Ok(_) => Ok(TokenCreated {
                    full_tokenid: format!("{user}!{tokenid}"),
                    secret,
                }),
                Err(crate::db::StoreError::Conflict { .. }) => Err(Error::Conflict(format!(
                    "token {user}!{tokenid} already exists in the cluster; delete it first"
                ))),
                Err(e) => Err(e.into()),
            };
        }
        let n = self.db.conn().execute(
            "INSERT OR IGNORE INTO tokens(userid,tokenid,secret_hash,comment,created) VALUES (?1,?2,?3,?4,?5)",
            params![user, tokenid, sha256_hex(&secret), comment, now()],
        )?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "token {user}!{tokenid} already exists; delete it first"
            )));
        }
        Ok(TokenCreated {
            full_tokenid: format!("{user}!{tokenid}"),
            secret,
        })
    }

    pub fn list_tokens(&self, user: &str) -> Result<Vec<TokenInfo>> {
        if let Some(st) = self.store() {
            let mut out = vec![];
            for e in st.list(&format!("/access/tokens/{user}"))? {
                let Some(id) = e.key.rsplit('/').next().map(str::to_string) else {
                    continue;
                };
                let t: StoredToken = decode(&e.key, e.value)?;
                out.push(TokenInfo {
                    full_tokenid: format!("{user}!{id}"),
                    comment: t.comment,
                    created: t.created,
                });
            }
            return Ok(out);
        }
        let c = self.db.conn();
        let mut st = c.prepare(
            "SELECT tokenid,comment,created FROM tokens WHERE userid=?1 ORDER BY tokenid",
        )?;
        let rows = st.query_map(params![user], |r| {
            Ok(TokenInfo {
                full_tokenid: format!("{user}!{}", r.get::<_, String>(0)?),
                comment: r.get(1)?,
                created: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_token(&self, user: &str, tokenid: &str) -> Result<()> {
        if let Some(st) = self.store().filter(|_| tokenid != NODE_LOCAL_TOKEN) {
            if !st.delete(&token_key(user, tokenid))? {
                return Err(Error::NotFound(format!("token {user}!{tokenid} not found")));
            }
            return Ok(());
        }
        let n = self.db.conn().execute(
            "DELETE FROM tokens WHERE userid=?1 AND tokenid=?2",
            params![user, tokenid],
        )?;
        if n == 0 {
            return Err(Error::NotFound(format!("token {user}!{tokenid} not found")));
        }
        Ok(())
    }
}

/// Local users and tokens (not the node-local root token), as config store entries: what
/// `cluster init` copies into the store.
pub fn local_access_entries(db: &Db) -> Result<Vec<(String, serde_json::Value)>> {
    // access: groups, roles, ACL, user and token settings (crate::access::store)
    let access = crate::access::store::local_entries(db)?;
    let c = db.conn();
    let mut out = vec![];
    let mut st = c.prepare("SELECT userid,hash,created FROM users ORDER BY userid")?;
    let users = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for u in users {
        let (user, hash, created) = u?;
        out.push((
            user_key(&user),
            serde_json::json!(StoredUser { hash, created }),
        ));
    }
    let mut st = c.prepare(
        "SELECT userid,tokenid,secret_hash,comment,created FROM tokens WHERE tokenid != ?1 ORDER BY userid,tokenid",
    )?;
    let toks = st.query_map(params![NODE_LOCAL_TOKEN], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    for t in toks {
        let (user, id, secret_hash, comment, created) = t?;
        out.push((
            token_key(&user, &id),
            serde_json::json!(StoredToken {
                secret_hash,
                comment,
                created
            }),
        ));
    }
    out.extend(access);
    Ok(out)
}

/// Replace this node's local users and tokens (not the node-local root token) by the config
/// store's: what a joining node does, so it keeps the cluster's accounts if it ever leaves.
/// Returns (users, tokens) copied.
pub fn replace_local_access(db: &Db, store: &Store) -> Result<(usize, usize)> {
    // access: groups, roles, ACL, user and token settings (crate::access::store)
    crate::access::store::replace_local(db, store)?;
    let users = store.list("/access/users")?;
    let tokens = store.list("/access/tokens")?;
    let mut c = db.conn();
    let tx = c.transaction()?;
    tx.execute("DELETE FROM users", [])?;
    tx.execute(
        "DELETE FROM tokens WHERE tokenid != ?1",
        params![NODE_LOCAL_TOKEN],
    )?;
    tx.execute("DELETE FROM sessions", [])?;
    for e in &users {
        let Some(user) = e.key.strip_prefix("/access/users/") else {
            continue;
        };
        let u: StoredUser = decode(&e.key, e.value.clone())?;
        tx.execute(
            "INSERT INTO users(userid,hash,created) VALUES (?1,?2,?3)",
            params![user, u.hash, u.created],
        )?;
    }
    for e in &tokens {
        let Some((user, id)) = e
            .key
            .strip_prefix("/access/tokens/")
            .and_then(|r| r.split_once('/'))
        else {
            continue;
        };
        let t: StoredToken = decode(&e.key, e.value.clone())?;
        tx.execute(
            "INSERT OR REPLACE INTO tokens(userid,tokenid,secret_hash,comment,created) VALUES (?1,?2,?3,?4,?5)",
            params![user, id, t.secret_hash, t.comment, t.created],
        )?;
    }
    tx.commit()?;
    Ok((users.len(), tokens.len()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_ticket_and_token() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let a = Auth::new(Db::open(&dir.path().join("a.db"))?);
        a.set_password("root", "correct horse")?;
        assert!(matches!(
            a.login("root", "wrong"),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            a.login("nobody", "correct horse"),
            Err(Error::Unauthorized(_))
        ));
        let s = a.login("root", "correct horse")?;
        let p = a.check_ticket(&s.ticket)?;
        assert_eq!(p.map(|p| p.csrf), Some(Some(s.csrf_token.clone())));
        a.logout(&s.ticket)?;
        assert_eq!(a.check_ticket(&s.ticket)?, None);
        let t = a.create_token("root", "ci", None)?;
        assert!(matches!(
            a.create_token("root", "ci", None),
            Err(Error::Conflict(_))
        ));
        let ok = a.check_token(&format!("{}={}", t.full_tokenid, t.secret))?;
        assert_eq!(ok.map(|p| p.user), Some("root".to_string()));
        assert_eq!(a.check_token(&format!("{}=nope", t.full_tokenid))?, None);
        Ok(())
    }

    /// Clustered (fake store): users and tokens live in the store (hashes only), the
    /// node-local root token stays in the local table, init's copy and join's replacement.
    #[test]
    fn clustered_users_and_tokens_live_in_the_store() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let sock = dir.path().join("store.sock");
        let map = crate::db::fake_store::serve(&sock);
        let st = Store::at(&sock);
        let local = Db::open(&dir.path().join("a.db"))?;
        let a = Auth::new(local.clone());
        a.set_password("root", "correct horse")?;
        a.create_token("root", "ci", None)?;
        a.create_token("root", NODE_LOCAL_TOKEN, None)?;
        // init: local users and tokens (not local-root) go to the store
        let entries = local_access_entries(&local)?;
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["/access/users/root", "/access/tokens/root/ci"]);
        for (k, v) in &entries {
            st.put(k, v)?;
        }
        let record = dir.path().join("cluster.json");
        std::fs::write(&record, "{}")?;
        let a = Auth::new(local.clone())
            .in_cluster(record)
            .with_store(Store::at(&sock));
        // a token made here is in the store as a hash; it authenticates, local-root stays local
        let t = a.create_token("root", "lab", Some("x"))?;
        let stored = st
            .get("/access/tokens/root/lab")?
            .map(|e| e.value.to_string());
        assert!(stored.as_deref().is_some_and(|v| !v.contains(&t.secret)));
        assert!(a
            .check_token(&format!("{}={}", t.full_tokenid, t.secret))?
            .is_some());
        assert!(matches!(
            a.create_token("root", "lab", None),
            Err(Error::Conflict(_))
        ));
        let lr = a.create_token("root", "local-root2", None)?;
        assert!(
            st.get("/access/tokens/root/local-root2")?.is_some(),
            "{lr:?}"
        );
        assert!(st.get(&token_key("root", NODE_LOCAL_TOKEN))?.is_none());
        // a user that exists only in the store logs in; a local-only user does not
        let b = Auth::new(Db::open(&dir.path().join("b.db"))?);
        b.set_password("alice", "alice-password")?;
        assert!(a.login("alice", "alice-password").is_err());
        a.set_password("bob", "bob-password")?;
        assert!(a.login("bob", "bob-password").is_ok());
        assert!(!a.local_user_exists("bob")? && a.user_exists("bob")?);
        // deleted in the store: refused
        a.delete_token("root", "lab")?;
        assert!(a
            .check_token(&format!("{}={}", t.full_tokenid, t.secret))?
            .is_none());
        // join: the joiner's own accounts are replaced by the cluster's
        let (u, k) = replace_local_access(b.db(), &st)?;
        assert_eq!((u, k), (2, 2));
        assert!(!b.local_user_exists("alice")? && b.local_user_exists("bob")?);
        assert!(map.lock().map(|m| m.len()).unwrap_or(0) >= 4);
        Ok(())
    }
}
