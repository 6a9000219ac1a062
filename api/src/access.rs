//! Users, groups, roles, ACL entries and API tokens: the permission model's wire types, the
//! fixed list of privileges, the built-in roles and the validation of names and ACL paths.
//!
//! The model is Proxmox VE's, adapted: a role is a set of privileges; an ACL entry grants a
//! role to a user, a group or an API token on a path (`/`, `/nodes/{node}`, `/vms/{vmid}`,
//! `/storage/{pool}`, `/cluster`, `/access`), optionally propagating to the paths below.
//! Evaluation lives in hostd (`hostd::access::eval`); these are the shapes and their rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

macro_rules! privileges {
    ($( $(#[doc = $doc:literal])* $v:ident = $s:tt ),* $(,)?) => {
        /// One privilege. The list is fixed: custom roles are made from it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
        pub enum Privilege {
            $( $(#[doc = $doc])* #[serde(rename = $s)] $v, )*
        }

        impl Privilege {
            /// Every privilege, in documentation order.
            pub const ALL: &'static [Privilege] = &[$(Privilege::$v),*];

            /// The name used on the wire and in the documentation (`VM.PowerMgmt`).
            pub fn as_str(self) -> &'static str {
                match self { $(Privilege::$v => $s,)* }
            }

            /// What the privilege allows (one line, for `keel role privileges` and the docs).
            pub fn describe(self) -> &'static str {
                match self { $(Privilege::$v => concat!($($doc),*).trim_ascii(),)* }
            }

            pub fn parse(s: &str) -> Option<Privilege> {
                match s { $($s => Some(Privilege::$v),)* _ => None }
            }
        }
    };
}

privileges! {
    /// See node status, networks and every task of the node; read users, groups and the ACL (on `/access`).
    SysAudit = "Sys.Audit",
    /// Change node settings: libvirt networks on `/nodes/{node}`.
    SysModify = "Sys.Modify",
    /// A shell on the node (reserved: no endpoint gives one yet).
    SysConsole = "Sys.Console",
    /// See a VM: its configuration, status and the VM lists.
    VmAudit = "VM.Audit",
    /// Open the VM's graphical (VNC) and serial console.
    VmConsole = "VM.Console",
    /// Start, stop, shut down, reboot, reset, suspend and resume the VM.
    VmPowerMgmt = "VM.PowerMgmt",
    /// Change the VM's configuration.
    VmConfig = "VM.Config",
    /// Create, adopt and delete VMs (`/vms` for new ones, `/vms/{vmid}` to delete).
    VmAllocate = "VM.Allocate",
    /// Clone the VM or template (the new VM also needs `VM.Allocate` on `/vms`, its disks `Datastore.AllocateSpace` on their pool).
    VmClone = "VM.Clone",
    /// Migrate the VM to another node (live or offline) and cancel its migration.
    VmMigrate = "VM.Migrate",
    /// Back the VM up and verify its backups; restore them (with VM.Allocate on `/vms`).
    VmBackup = "VM.Backup",
    /// Take, roll back and delete the VM's snapshots.
    VmSnapshot = "VM.Snapshot",
    /// See a storage pool and its volumes.
    DatastoreAudit = "Datastore.Audit",
    /// Delete volumes and manage the pool itself.
    DatastoreAllocate = "Datastore.Allocate",
    /// Create volumes and upload files into the pool.
    DatastoreAllocateSpace = "Datastore.AllocateSpace",
    /// See the cluster: quorum, members, fencing, the config store.
    ClusterAudit = "Cluster.Audit",
    /// Form and change the cluster: init, join tokens, node removal, fencing, config store writes.
    ClusterModify = "Cluster.Modify",
    /// Create, change and delete users and groups.
    UserModify = "User.Modify",
    /// Change the ACL and custom roles.
    PermissionsModify = "Permissions.Modify",
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Name of the built-in role that grants nothing and cancels every other role on its path.
pub const NO_ACCESS: &str = "NoAccess";
/// Name of the built-in role with every privilege.
pub const ADMINISTRATOR: &str = "Administrator";

/// The built-in roles: (name, privileges, what it is for). They cannot be changed or deleted.
pub fn builtin_roles() -> Vec<(&'static str, Vec<Privilege>, &'static str)> {
    use Privilege::*;
    vec![
        (ADMINISTRATOR, Privilege::ALL.to_vec(), "every privilege"),
        (
            "VMAdmin",
            vec![
                VmAudit,
                VmConsole,
                VmPowerMgmt,
                VmConfig,
                VmAllocate,
                VmClone,
                VmMigrate,
                VmBackup,
                VmSnapshot,
                DatastoreAudit,
                DatastoreAllocateSpace,
                SysAudit,
            ],
            "VMs in full, plus space for their disks and a view of the node",
        ),
        (
            "VMUser",
            vec![VmAudit, VmConsole, VmPowerMgmt],
            "see a VM, open its console and switch it on and off",
        ),
        (
            "StorageAdmin",
            vec![DatastoreAudit, DatastoreAllocate, DatastoreAllocateSpace],
            "storage pools and their volumes",
        ),
        (
            "Auditor",
            vec![SysAudit, VmAudit, DatastoreAudit, ClusterAudit],
            "read-only, everywhere",
        ),
        (
            NO_ACCESS,
            vec![],
            "nothing; cancels every other role on its path",
        ),
    ]
}

/// The privileges of a built-in role, `None` when `name` is not one.
pub fn builtin_role(name: &str) -> Option<Vec<Privilege>> {
    builtin_roles()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, p, _)| p)
}

fn valid_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') || extra.contains(&c)
        })
}

/// User names: 1-64 letters, digits, `-`, `_`, `.`, `@`.
pub fn valid_userid(s: &str) -> bool {
    valid_name(s, &['@'])
}

/// Group and role names: 1-64 letters, digits, `-`, `_`, `.`.
pub fn valid_groupid(s: &str) -> bool {
    valid_name(s, &[])
}

/// Check an ACL path: `/`, `/nodes`, `/nodes/{node}`, `/vms`, `/vms/{vmid}`, `/storage`,
/// `/storage/{pool}`, `/cluster`, `/access`.
pub fn check_acl_path(path: &str) -> Result<(), String> {
    let help = "use /, /nodes, /nodes/{node}, /vms, /vms/{vmid}, /storage, /storage/{pool}, /cluster or /access";
    if path == "/" {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("{path:?} must start with '/': {help}"));
    };
    let segs: Vec<&str> = rest.split('/').collect();
    match segs.as_slice() {
        ["nodes" | "vms" | "storage" | "cluster" | "access"] => Ok(()),
        ["vms", id] => match id.parse::<u32>() {
            Ok(v) if v > 0 && id.chars().all(|c| c.is_ascii_digit()) => Ok(()),
            _ => Err(format!(
                "{id:?} in {path:?} is not a VM id (a positive integer)"
            )),
        },
        ["nodes" | "storage", name] if valid_name(name, &[]) => Ok(()),
        ["nodes" | "storage", name] => Err(format!(
            "{name:?} in {path:?} is not a valid name (1-64 letters, digits, '-', '_', '.')"
        )),
        _ => Err(format!("{path:?} is not an ACL path: {help}")),
    }
}

/// Whom an ACL entry grants its role to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UgidType {
    User,
    Group,
    /// An API token with privilege separation, named `user!tokenid`.
    Token,
}

impl UgidType {
    pub fn as_str(self) -> &'static str {
        match self {
            UgidType::User => "user",
            UgidType::Group => "group",
            UgidType::Token => "token",
        }
    }
}

/// One ACL entry: `roleid` granted to `ugid` on `path`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub ugid_type: UgidType,
    /// User name, group name, or `user!tokenid`.
    pub ugid: String,
    pub roleid: String,
    /// Also applies to the paths below `path` (unless they have entries of their own).
    pub propagate: bool,
}

/// `PUT /api/v1/access/acl`: grant (or with `delete`, revoke) `roleid` on `path` to every
/// listed user, group and token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclUpdate {
    pub path: String,
    pub roleid: String,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Tokens as `user!tokenid` (tokens with privilege separation).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Default true.
    #[serde(default = "yes")]
    pub propagate: bool,
    /// Remove these entries instead of adding them.
    #[serde(default)]
    pub delete: bool,
}

fn yes() -> bool {
    true
}

impl AclUpdate {
    pub fn validate(&self) -> Result<(), FieldError> {
        check_acl_path(&self.path).map_err(|m| FieldError::new("path", m))?;
        if self.users.is_empty() && self.groups.is_empty() && self.tokens.is_empty() {
            return Err(FieldError::new(
                "users",
                "name at least one user, group or token",
            ));
        }
        for (i, u) in self.users.iter().enumerate() {
            if !valid_userid(u) {
                return Err(FieldError::new(
                    &format!("users[{i}]"),
                    format!("{u:?} is not a valid user name"),
                ));
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            if !valid_groupid(g) {
                return Err(FieldError::new(
                    &format!("groups[{i}]"),
                    format!("{g:?} is not a valid group name"),
                ));
            }
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let ok = t
                .split_once('!')
                .is_some_and(|(u, id)| valid_userid(u) && valid_groupid(id));
            if !ok {
                return Err(FieldError::new(
                    &format!("tokens[{i}]"),
                    format!("{t:?} is not a token: write user!tokenid"),
                ));
            }
        }
        Ok(())
    }
}

/// A user: the account (its password hash is never shown) and its access settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub userid: String,
    /// A disabled user cannot log in, and its sessions and tokens are refused.
    pub enable: bool,
    /// Unix seconds after which the account is refused; absent = never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub groups: Vec<String>,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub userid: String,
    /// At least 8 characters.
    pub password: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Default true.
    #[serde(default = "yes")]
    pub enable: bool,
    #[serde(default)]
    pub expire: Option<i64>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// Replace the user's groups.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub enable: Option<bool>,
    /// Unix seconds; 0 = never expires.
    #[serde(default)]
    pub expire: Option<i64>,
    /// An empty string removes the comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// A new password (an administrator's reset; at least 8 characters).
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupInfo {
    pub groupid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupCreate {
    pub groupid: String,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    /// An empty string removes the comment.
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleInfo {
    pub roleid: String,
    pub privs: Vec<Privilege>,
    /// Built-in roles cannot be changed or deleted.
    pub builtin: bool,
}

/// A custom role (create: `roleid` and `privs`; update: `privs` replaces the list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(default)]
    pub roleid: Option<String>,
    pub privs: Vec<String>,
}

impl RoleSpec {
    /// The privileges, each checked against the fixed list.
    pub fn privileges(&self) -> Result<Vec<Privilege>, FieldError> {
        let mut out = vec![];
        for (i, p) in self.privs.iter().enumerate() {
            match Privilege::parse(p) {
                Some(p) => out.push(p),
                None => {
                    return Err(FieldError::new(
                        &format!("privs[{i}]"),
                        format!(
                            "{p:?} is not a privilege; choose from {}",
                            Privilege::ALL
                                .iter()
                                .map(|p| p.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// `POST /api/v1/access/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Token id: 1-64 letters, digits, `-`, `_`.
    pub tokenid: String,
    #[serde(default)]
    pub comment: Option<String>,
    /// Unix seconds after which the token is refused; absent = never.
    #[serde(default)]
    pub expire: Option<i64>,
    /// Privilege separation (default false: the token acts with its user's privileges). With
    /// it, the token has only what ACL entries grant the token itself, and never more than its
    /// user.
    #[serde(default)]
    pub privsep: bool,
}

/// An API token (its secret is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenEntry {
    /// `user!tokenid`
    pub full_tokenid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<i64>,
    pub privsep: bool,
}

/// `GET /api/v1/access/permissions`: what the caller may do, per path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Permissions {
    pub userid: String,
    /// The token the request came with (`user!tokenid`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Effective privileges on `/`, the top-level paths, this node, the VMs of this node and
    /// every path named by an ACL entry.
    pub paths: BTreeMap<String, Vec<Privilege>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct PermissionsQuery {
    /// Only this path.
    #[serde(default)]
    pub path: Option<String>,
}

/// The raw host paths a VM spec names (`disks[i].path`, `cdrom.path`), with their fields.
/// Only root may give them: any file of the host would otherwise reach the guest.
pub fn raw_paths(spec: &crate::vm::VmSpec) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = spec
        .disks
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.path.clone().map(|p| (format!("disks[{i}].path"), p)))
        .collect();
    if let Some(p) = spec.cdrom.as_ref().and_then(|c| c.path.clone()) {
        out.push(("cdrom.path".into(), p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges_roundtrip_and_are_documented() {
        for p in Privilege::ALL {
            assert_eq!(Privilege::parse(p.as_str()), Some(*p));
            assert!(!p.describe().is_empty(), "{p}");
            let j = serde_json::to_string(p).unwrap_or_default();
            assert_eq!(j, format!("\"{}\"", p.as_str()));
        }
        assert_eq!(Privilege::parse("VM.Fly"), None);
    }

    #[test]
    fn builtin_roles_are_coherent() {
        let names: Vec<&str> = builtin_roles().iter().map(|r| r.0).collect();
        for n in [
            "Administrator",
            "VMAdmin",
            "VMUser",
            "StorageAdmin",
            "Auditor",
            "NoAccess",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        let vmuser = builtin_role("VMUser").unwrap_or_default();
        assert_eq!(
            vmuser,
            vec![
                Privilege::VmAudit,
                Privilege::VmConsole,
                Privilege::VmPowerMgmt
            ]
        );
        let auditor = builtin_role("Auditor").unwrap_or_default();
        assert!(auditor.iter().all(|p| p.as_str().ends_with(".Audit")));
        assert_eq!(builtin_role(NO_ACCESS), Some(vec![]));
    }

    #[test]
    fn acl_paths() {
        for ok in [
            "/",
            "/vms",
            "/vms/100",
            "/nodes/n1",
            "/storage/local",
            "/cluster",
            "/access",
            "/nodes",
        ] {
            assert_eq!(check_acl_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "vms",
            "/vms/",
            "/vms/x",
            "/vms/0",
            "/foo",
            "/nodes/a/b",
            "/storage/a b",
        ] {
            assert!(check_acl_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn role_spec_checks_privileges() {
        let r = RoleSpec {
            roleid: Some("Ops".into()),
            privs: vec!["VM.Audit".into(), "VM.Audit".into(), "Sys.Audit".into()],
        };
        assert_eq!(
            r.privileges().ok(),
            Some(vec![Privilege::SysAudit, Privilege::VmAudit])
        );
        let bad = RoleSpec {
            roleid: None,
            privs: vec!["VM.Fly".into()],
        };
        assert_eq!(
            bad.privileges().err().map(|e| e.field),
            Some("privs[0]".into())
        );
    }
}
