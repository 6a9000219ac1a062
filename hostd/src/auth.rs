//! Users (argon2 password hashes), session tickets with CSRF tokens, and API tokens.
//! Tickets and token secrets are random 256-bit values; only their SHA-256 is stored.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use keel_api::auth::{LoginResponse, TokenCreated, TokenInfo};
use rand::{distributions::Alphanumeric, Rng, RngCore};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::db::{now, Db};
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

pub struct Auth {
    db: Db,
}

impl Auth {
    pub fn new(db: Db) -> Self {
        Auth { db }
    }

    pub fn user_exists(&self, user: &str) -> Result<bool> {
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
        if !valid_userid(user) {
            return Err(Error::validation(
                "username",
                format!("{user:?} is not a valid user name"),
            ));
        }
        if password.len() < 8 {
            return Err(Error::validation(
                "password",
                "a password needs at least 8 characters",
            ));
        }
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Error::Internal(format!("argon2: {e}")))?
            .to_string();
        self.db.conn().execute(
            "INSERT INTO users(userid,hash,created) VALUES (?1,?2,?3)
             ON CONFLICT(userid) DO UPDATE SET hash=excluded.hash",
            params![user, hash, now()],
        )?;
        Ok(())
    }

    /// Check a password; on success open a session.
    pub fn login(&self, user: &str, password: &str) -> Result<LoginResponse> {
        let hash: Option<String> = self
            .db
            .conn()
            .query_row(
                "SELECT hash FROM users WHERE userid=?1",
                params![user],
                |r| r.get(0),
            )
            .optional()?;
        let ok = match &hash {
            Some(h) => PasswordHash::new(h)
                .map(|ph| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &ph)
                        .is_ok()
                })
                .unwrap_or(false),
            None => {
                // Same cost for unknown users, so timing does not reveal which users exist.
                let salt = SaltString::generate(&mut rand::rngs::OsRng);
                let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
                false
            }
        };
        if !ok {
            return Err(Error::Unauthorized(
                "authentication failed: wrong user name or password".into(),
            ));
        }
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
        let stored: Option<String> = self
            .db
            .conn()
            .query_row(
                "SELECT secret_hash FROM tokens WHERE userid=?1 AND tokenid=?2",
                params![user, tokenid],
                |r| r.get(0),
            )
            .optional()?;
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
}
