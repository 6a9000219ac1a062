//! The access configuration (users' settings, groups, custom roles, ACL, token settings) and
//! its evaluation: which privileges a subject has on a path. Pure: no I/O.
//!
//! Rules (Proxmox VE's):
//! - The paths from `/` down to the asked path are walked; at each level the entries for the
//!   subject apply (on levels above the asked path only those with `propagate`). The deepest
//!   level with applicable entries wins outright: its roles replace what was inherited.
//! - On one level, the user's own entries replace its groups' entries.
//! - `NoAccess` on the winning level cancels every other role there: no privilege.
//! - `root` has every privilege everywhere.
//! - A token with privilege separation has the intersection of its user's privileges and what
//!   its own entries grant; a token without has its user's. A token never exceeds its user.

use std::collections::{BTreeMap, BTreeSet};

use keel_api::access::{builtin_role, AclEntry, Privilege, UgidType, NO_ACCESS};
use serde::{Deserialize, Serialize};

pub type PrivSet = BTreeSet<Privilege>;

/// The superuser: every privilege, everywhere (its privilege-separated tokens excepted).
pub const ROOT: &str = "root";

/// Who a request acts for: a user, and the token it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub user: String,
    /// The token id (without `user!`) when the request came with an API token.
    pub token: Option<String>,
}

impl Subject {
    pub fn full_tokenid(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("{}!{t}", self.user))
    }
}

/// A user's access settings (the password hash stays with the account, in `auth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMeta {
    #[serde(default = "yes")]
    pub enable: bool,
    #[serde(default)]
    pub expire: Option<i64>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Default for UserMeta {
    fn default() -> Self {
        UserMeta {
            enable: true,
            expire: None,
            comment: None,
            groups: vec![],
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMeta {
    #[serde(default)]
    pub comment: Option<String>,
}

/// A token's access settings (its secret hash stays with the token, in `auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMeta {
    #[serde(default)]
    pub expire: Option<i64>,
    #[serde(default)]
    pub privsep: bool,
}

/// Everything evaluation needs, loaded once per request.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    pub users: BTreeMap<String, UserMeta>,
    pub groups: BTreeMap<String, GroupMeta>,
    /// Custom roles (built-ins are not stored).
    pub roles: BTreeMap<String, Vec<Privilege>>,
    pub acl: Vec<AclEntry>,
    /// Keyed by `user!tokenid`. A token without an entry: no expiry, no privilege separation.
    pub tokens: BTreeMap<String, TokenMeta>,
}

/// `/vms/100` → `["/", "/vms", "/vms/100"]`.
pub fn path_levels(path: &str) -> Vec<String> {
    let mut out = vec!["/".to_string()];
    let mut cur = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        cur.push('/');
        cur.push_str(seg);
        out.push(cur.clone());
    }
    out
}

/// Why a subject is refused before any privilege is looked at.
pub fn refusal(cfg: &AccessConfig, s: &Subject, now: i64) -> Option<String> {
    if s.user != ROOT {
        if let Some(u) = cfg.users.get(&s.user) {
            if !u.enable {
                return Some(format!("user {:?} is disabled", s.user));
            }
            if u.expire.is_some_and(|e| e > 0 && e <= now) {
                return Some(format!("user {:?} has expired", s.user));
            }
        }
    }
    if let Some(full) = s.full_tokenid() {
        if let Some(t) = cfg.tokens.get(&full) {
            if t.expire.is_some_and(|e| e > 0 && e <= now) {
                return Some(format!("API token {full} has expired"));
            }
        }
    }
    None
}

impl AccessConfig {
    /// The privileges of a role, built-in or custom; `None` if it does not exist.
    pub fn role_privs(&self, role: &str) -> Option<Vec<Privilege>> {
        builtin_role(role).or_else(|| self.roles.get(role).cloned())
    }

    /// The roles that apply to one ugid set on `path` under the winning-level rules.
    fn winning_roles(&self, path: &str, ids: &[(UgidType, &str)]) -> Vec<&str> {
        let levels = path_levels(path);
        let mut win: Vec<&str> = vec![];
        for (i, lvl) in levels.iter().enumerate() {
            let target = i + 1 == levels.len();
            let applies = |e: &&AclEntry| &e.path == lvl && (e.propagate || target);
            let mut own: Vec<&str> = vec![];
            let mut group: Vec<&str> = vec![];
            for e in self.acl.iter().filter(applies) {
                let hit = ids
                    .iter()
                    .any(|(t, id)| *t == e.ugid_type && *id == e.ugid.as_str());
                if !hit {
                    continue;
                }
                if e.ugid_type == UgidType::Group {
                    group.push(&e.roleid);
                } else {
                    own.push(&e.roleid);
                }
            }
            if !own.is_empty() {
                win = own;
            } else if !group.is_empty() {
                win = group;
            }
        }
        win
    }

    fn privs_of_roles(&self, roles: &[&str]) -> PrivSet {
        if roles.contains(&NO_ACCESS) {
            return PrivSet::new();
        }
        roles
            .iter()
            .filter_map(|r| self.role_privs(r))
            .flatten()
            .collect()
    }

    /// A user's privileges on `path` (through its own and its groups' entries).
    pub fn user_privs(&self, user: &str, path: &str) -> PrivSet {
        if user == ROOT {
            return Privilege::ALL.iter().copied().collect();
        }
        let groups: Vec<String> = self
            .users
            .get(user)
            .map(|u| u.groups.clone())
            .unwrap_or_default();
        let mut ids: Vec<(UgidType, &str)> = vec![(UgidType::User, user)];
        ids.extend(groups.iter().map(|g| (UgidType::Group, g.as_str())));
        let roles = self.winning_roles(path, &ids);
        self.privs_of_roles(&roles)
    }

    /// The subject's effective privileges on `path`.
    pub fn privs(&self, s: &Subject, path: &str) -> PrivSet {
        let user = self.user_privs(&s.user, path);
        let Some(full) = s.full_tokenid() else {
            return user;
        };
        let privsep = self.tokens.get(&full).is_some_and(|t| t.privsep);
        if !privsep {
            return user;
        }
        let roles = self.winning_roles(path, &[(UgidType::Token, full.as_str())]);
        let token = self.privs_of_roles(&roles);
        user.intersection(&token).copied().collect()
    }

    pub fn has(&self, s: &Subject, privilege: Privilege, path: &str) -> bool {
        self.privs(s, path).contains(&privilege)
    }

    /// Whether the subject holds `privilege` on `path` or on any path below it (for lists
    /// that are filtered entry by entry).
    pub fn has_any_below(&self, s: &Subject, privilege: Privilege, path: &str) -> bool {
        if self.has(s, privilege, path) {
            return true;
        }
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.acl
            .iter()
            .filter(|e| e.path.starts_with(&prefix))
            .any(|e| self.has(s, privilege, &e.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Privilege::*;

    fn entry(path: &str, t: UgidType, id: &str, role: &str, propagate: bool) -> AclEntry {
        AclEntry {
            path: path.into(),
            ugid_type: t,
            ugid: id.into(),
            roleid: role.into(),
            propagate,
        }
    }

    fn user(u: &str) -> Subject {
        Subject {
            user: u.into(),
            token: None,
        }
    }

    fn cfg(acl: Vec<AclEntry>) -> AccessConfig {
        let mut c = AccessConfig {
            acl,
            ..Default::default()
        };
        c.users.insert(
            "alice".into(),
            UserMeta {
                groups: vec!["ops".into()],
                ..Default::default()
            },
        );
        c.users.insert("bob".into(), UserMeta::default());
        c
    }

    #[test]
    fn propagation_and_most_specific_wins() {
        let c = cfg(vec![
            entry("/", UgidType::User, "bob", "Auditor", true),
            entry("/vms/100", UgidType::User, "bob", "VMUser", true),
            entry("/storage", UgidType::User, "bob", "StorageAdmin", false),
        ]);
        let b = user("bob");
        // inherited from /
        assert!(c.has(&b, VmAudit, "/vms/101"));
        assert!(!c.has(&b, VmPowerMgmt, "/vms/101"));
        // the deeper entry replaces the inherited one (Auditor's Sys.Audit is gone there)
        assert!(c.has(&b, VmPowerMgmt, "/vms/100"));
        assert!(!c.has(&b, SysAudit, "/vms/100"));
        // not propagated: applies on /storage itself only; /storage/x inherits from /
        assert!(c.has(&b, DatastoreAllocate, "/storage"));
        assert!(!c.has(&b, DatastoreAllocate, "/storage/local"));
        assert!(c.has(&b, DatastoreAudit, "/storage/local"));
        // nobody else has anything
        assert!(c.privs(&user("carol"), "/").is_empty());
    }

    #[test]
    fn user_entries_beat_group_entries_on_the_same_level() {
        let c = cfg(vec![
            entry("/vms", UgidType::Group, "ops", "VMAdmin", true),
            entry("/vms", UgidType::User, "alice", "VMUser", true),
            entry("/storage", UgidType::Group, "ops", "StorageAdmin", true),
        ]);
        let a = user("alice");
        assert!(!c.has(&a, VmConfig, "/vms/100"));
        assert!(c.has(&a, VmConsole, "/vms/100"));
        // no user entry on /storage: the group's applies
        assert!(c.has(&a, DatastoreAllocate, "/storage/local"));
        // but a deeper group entry beats a shallower user entry
        let c = cfg(vec![
            entry("/", UgidType::User, "alice", "Auditor", true),
            entry("/vms/7", UgidType::Group, "ops", "VMAdmin", true),
        ]);
        assert!(c.has(&a, VmConfig, "/vms/7"));
        assert!(!c.has(&a, VmConfig, "/vms/8"));
    }

    #[test]
    fn no_access_cancels_its_level() {
        let c = cfg(vec![
            entry("/", UgidType::User, "bob", "Administrator", true),
            entry("/vms/100", UgidType::User, "bob", "NoAccess", true),
            entry("/vms/100", UgidType::User, "bob", "VMAdmin", true),
        ]);
        let b = user("bob");
        assert!(c.privs(&b, "/vms/100").is_empty());
        assert!(c.has(&b, VmConfig, "/vms/101"));
        // root is never restricted
        assert_eq!(
            c.privs(&user("root"), "/vms/100").len(),
            Privilege::ALL.len()
        );
    }

    #[test]
    fn custom_roles_and_unknown_roles() {
        let mut c = cfg(vec![
            entry("/", UgidType::User, "bob", "Watcher", true),
            entry("/cluster", UgidType::User, "bob", "Gone", true),
        ]);
        c.roles.insert("Watcher".into(), vec![ClusterAudit]);
        assert!(c.has(&user("bob"), ClusterAudit, "/"));
        // a role that no longer exists grants nothing, and still wins its level
        assert!(!c.has(&user("bob"), ClusterAudit, "/cluster"));
    }

    #[test]
    fn privsep_tokens_get_the_intersection() {
        let mut c = cfg(vec![
            entry("/", UgidType::User, "bob", "VMUser", true),
            entry("/", UgidType::Token, "bob!ci", "Administrator", true),
            entry("/", UgidType::Token, "bob!ro", "Auditor", true),
        ]);
        c.tokens.insert(
            "bob!ci".into(),
            TokenMeta {
                privsep: true,
                expire: None,
            },
        );
        c.tokens.insert(
            "bob!ro".into(),
            TokenMeta {
                privsep: true,
                expire: None,
            },
        );
        c.tokens.insert("bob!full".into(), TokenMeta::default());
        let t = |id: &str| Subject {
            user: "bob".into(),
            token: Some(id.into()),
        };
        // Administrator on the token, VMUser on the user: never more than the user
        let ci = c.privs(&t("ci"), "/vms/1");
        assert_eq!(ci, c.privs(&user("bob"), "/vms/1"));
        assert!(!ci.contains(&VmConfig));
        // Auditor ∩ VMUser = VM.Audit
        assert_eq!(c.privs(&t("ro"), "/vms/1"), [VmAudit].into_iter().collect());
        // no privsep: the user's privileges
        assert!(c.has(&t("full"), VmPowerMgmt, "/vms/1"));
        // a privsep token without entries: nothing, even root's
        c.tokens.insert(
            "root!x".into(),
            TokenMeta {
                privsep: true,
                expire: None,
            },
        );
        let rx = Subject {
            user: "root".into(),
            token: Some("x".into()),
        };
        assert!(c.privs(&rx, "/").is_empty());
        // a privsep token's entries do not leak to the user or other tokens
        assert!(!c.has(&user("bob"), SysAudit, "/"));
    }

    #[test]
    fn expiry_and_disabled_users_are_refused() {
        let mut c = cfg(vec![]);
        c.tokens.insert(
            "bob!old".into(),
            TokenMeta {
                privsep: false,
                expire: Some(100),
            },
        );
        let old = Subject {
            user: "bob".into(),
            token: Some("old".into()),
        };
        assert!(refusal(&c, &old, 99).is_none());
        assert!(refusal(&c, &old, 100).is_some_and(|m| m.contains("expired")));
        if let Some(u) = c.users.get_mut("bob") {
            u.enable = false;
        }
        assert!(refusal(&c, &user("bob"), 0).is_some_and(|m| m.contains("disabled")));
        if let Some(u) = c.users.get_mut("alice") {
            u.expire = Some(50);
        }
        assert!(refusal(&c, &user("alice"), 49).is_none());
        assert!(refusal(&c, &user("alice"), 51).is_some());
        // expire 0 means never
        if let Some(u) = c.users.get_mut("alice") {
            u.expire = Some(0);
        }
        assert!(refusal(&c, &user("alice"), 51).is_none());
    }

    #[test]
    fn levels() {
        assert_eq!(path_levels("/"), vec!["/"]);
        assert_eq!(path_levels("/vms/100"), vec!["/", "/vms", "/vms/100"]);
    }
}
