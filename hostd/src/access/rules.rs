//! Which privilege each route needs, on which path — one table, checked by one middleware
//! (after authentication, before forwarding and the handler) and copied into the OpenAPI
//! document (`x-keel-permission` and a line of each operation's description).
//!
//! A route without an entry is refused (fail closed), and a unit test reads every `.route(`
//! of hostd's sources and fails when one lacks an entry.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_api::access::Privilege;
use keel_api::access::Privilege::*;
use keel_api::auth::TOKEN_SCHEME;

use super::eval::{refusal, AccessConfig, Subject};
use super::store::{unix_now, Backend};
use crate::auth::Principal;
use crate::error::Error;
use crate::http::ApiError;
use crate::Node;

/// Header naming the API token (its id, without `user!`) a forwarded request came with, so the
/// owning member applies the token's privilege separation too. Trusted only next to
/// `X-Keel-Forwarded-User`, i.e. after the peer checks of `cluster::check_forwarded`.
pub const FORWARDED_TOKEN: &str = "X-Keel-Forwarded-Token";

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No authentication at all (the route is outside the authenticated router).
    Public,
    /// Any authenticated user: the answer is the caller's own, or filtered to what it may see.
    Authenticated,
    /// `privilege` on the path made from the template (route parameters substituted).
    Priv(Privilege, &'static str),
    /// The caller's own task, or `privilege` on the path.
    OwnTaskOr(Privilege, &'static str),
    /// A raw config store key: `privilege` on `/cluster`; keys under `access/` are root's only.
    ConfigKey(Privilege),
}

/// How a list answer is cut down to what the caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `[{vmid}]`: VM.Audit on `/vms/{vmid}`.
    Vms,
    /// `[{name}]`: Datastore.Audit on `/storage/{name}`.
    Pools,
    /// `[{user}]`: the caller's own tasks, all of them with Sys.Audit on `/nodes/{node}`.
    Tasks,
    /// `[{key}]`: config store entries; those under `access/` for root only.
    Config,
}

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `GET`, `POST`, `PUT`, `DELETE`, or `ANY`.
    pub method: &'static str,
    /// The route template exactly as registered with axum.
    pub route: &'static str,
    pub check: Check,
    pub filter: Option<Filter>,
}

const fn r(method: &'static str, route: &'static str, check: Check) -> Rule {
    Rule {
        method,
        route,
        check,
        filter: None,
    }
}

const fn listed(method: &'static str, route: &'static str, filter: Filter) -> Rule {
    Rule {
        method,
        route,
        check: Check::Authenticated,
        filter: Some(filter),
    }
}

use Check::{Authenticated as Any, ConfigKey, OwnTaskOr, Priv, Public};

/// The table.
pub const RULES: &[Rule] = &[
    // ---- outside authentication
    r("GET", "/api/v1/health", Public),
    r("POST", "/api/v1/access/ticket", Public),
    r("POST", "/api/v1/cluster/join", Public),
    r("POST", "/api/v1/cluster/peer/update", Public),
    r("POST", "/api/v1/cluster/peer/leave", Public),
    r("POST", "/api/v1/cluster/peer/verify-facts", Public),
    r("POST", "/api/v1/cluster/peer/storage", Public),
    r("ANY", "/api", Public),
    r("ANY", "/api/{*rest}", Public),
    // ---- the caller's own things
    r("GET", "/api/v1/openapi.json", Any),
    r("DELETE", "/api/v1/access/ticket", Any),
    r("GET", "/api/v1/access/tokens", Any),
    r("POST", "/api/v1/access/tokens", Any),
    r("DELETE", "/api/v1/access/tokens/{tokenid}", Any),
    r("GET", "/api/v1/access/permissions", Any),
    // own password with the old one; another user's: root only (checked by the handler)
    r("PUT", "/api/v1/access/password", Any),
    // ---- users, groups, roles, ACL
    r("GET", "/api/v1/access/users", Priv(SysAudit, "/access")),
    r("POST", "/api/v1/access/users", Priv(UserModify, "/access")),
    r(
        "GET",
        "/api/v1/access/users/{userid}",
        Priv(SysAudit, "/access"),
    ),
    r(
        "PUT",
        "/api/v1/access/users/{userid}",
        Priv(UserModify, "/access"),
    ),
    r(
        "DELETE",
        "/api/v1/access/users/{userid}",
        Priv(UserModify, "/access"),
    ),
    r("GET", "/api/v1/access/groups", Priv(SysAudit, "/access")),
    r("POST", "/api/v1/access/groups", Priv(UserModify, "/access")),
    r(
        "GET",
        "/api/v1/access/groups/{groupid}",
        Priv(SysAudit, "/access"),
    ),
    r(
        "PUT",
        "/api/v1/access/groups/{groupid}",
        Priv(UserModify, "/access"),
    ),
    r(
        "DELETE",
        "/api/v1/access/groups/{groupid}",
        Priv(UserModify, "/access"),
    ),
    r("GET", "/api/v1/access/roles", Any),
    r(
        "POST",
        "/api/v1/access/roles",
        Priv(PermissionsModify, "/access"),
    ),
    r("GET", "/api/v1/access/roles/{roleid}", Any),
    r(
        "PUT",
        "/api/v1/access/roles/{roleid}",
        Priv(PermissionsModify, "/access"),
    ),
    r(
        "DELETE",
        "/api/v1/access/roles/{roleid}",
        Priv(PermissionsModify, "/access"),
    ),
    r("GET", "/api/v1/access/acl", Priv(SysAudit, "/access")),
    r(
        "PUT",
        "/api/v1/access/acl",
        Priv(PermissionsModify, "/access"),
    ),
    // ---- nodes
    r("GET", "/api/v1/nodes", Any),
    r(
        "GET",
        "/api/v1/nodes/{node}",
        Priv(SysAudit, "/nodes/{node}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/metrics",
        Priv(SysAudit, "/nodes/{node}"),
    ),
    // ---- VMs
    listed("GET", "/api/v1/nodes/{node}/vms", Filter::Vms),
    r("POST", "/api/v1/nodes/{node}/vms", Priv(VmAllocate, "/vms")),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/adopt",
        Priv(VmAllocate, "/vms"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/nextid",
        Priv(VmAllocate, "/vms"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/vncproxy",
        Priv(VmConsole, "/vms/{vmid}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}/vncwebsocket",
        Priv(VmConsole, "/vms/{vmid}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}",
        Priv(VmAudit, "/vms/{vmid}"),
    ),
    r(
        "PUT",
        "/api/v1/nodes/{node}/vms/{vmid}",
        Priv(VmConfig, "/vms/{vmid}"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/vms/{vmid}",
        Priv(VmAllocate, "/vms/{vmid}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}/status/current",
        Priv(VmAudit, "/vms/{vmid}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}/metrics",
        Priv(VmAudit, "/vms/{vmid}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}/agent",
        Priv(VmAudit, "/vms/{vmid}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}/cloud-init",
        Priv(VmAudit, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/status/{op}",
        Priv(VmPowerMgmt, "/vms/{vmid}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}/serial",
        Priv(VmConsole, "/vms/{vmid}"),
    ),
    // ---- migration (crate::migration)
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/migrate",
        Priv(VmMigrate, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/migrate/cancel",
        Priv(VmMigrate, "/vms/{vmid}"),
    ),
    // ---- snapshots and disk growth (crate::snapshots)
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}/snapshots",
        Priv(VmAudit, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/snapshots",
        Priv(VmSnapshot, "/vms/{vmid}"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/vms/{vmid}/snapshots/{snapshot}",
        Priv(VmSnapshot, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/snapshots/{snapshot}/rollback",
        Priv(VmSnapshot, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/disks/{disk}/resize",
        Priv(VmConfig, "/vms/{vmid}"),
    ),
    // the new VM also needs VM.Allocate on /vms, its disks Datastore.AllocateSpace (handler)
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/clone",
        Priv(VmClone, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/template",
        Priv(VmAllocate, "/vms/{vmid}"),
    ),
    // ---- tasks
    listed("GET", "/api/v1/nodes/{node}/tasks", Filter::Tasks),
    r(
        "GET",
        "/api/v1/nodes/{node}/tasks/{upid}",
        OwnTaskOr(SysAudit, "/nodes/{node}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/tasks/{upid}/log",
        OwnTaskOr(SysAudit, "/nodes/{node}"),
    ),
    // ---- storage
    listed("GET", "/api/v1/nodes/{node}/storage", Filter::Pools),
    r(
        "POST",
        "/api/v1/nodes/{node}/storage",
        Priv(DatastoreAllocate, "/storage"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/storage/{pool}",
        Priv(DatastoreAllocate, "/storage/{pool}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/storage/{pool}/content",
        Priv(DatastoreAudit, "/storage/{pool}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/storage/{pool}/content",
        Priv(DatastoreAllocateSpace, "/storage/{pool}"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/storage/{pool}/content/{volume}",
        Priv(DatastoreAllocate, "/storage/{pool}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/storage/{pool}/upload",
        Priv(DatastoreAllocateSpace, "/storage/{pool}"),
    ),
    // ---- networks
    r(
        "GET",
        "/api/v1/nodes/{node}/networks",
        Priv(SysAudit, "/nodes/{node}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/networks",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/networks/{name}",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "PUT",
        "/api/v1/nodes/{node}/networks/{name}",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/networks/{name}/start",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/networks/{name}/stop",
        Priv(SysModify, "/nodes/{node}"),
    ),
    // ---- host network (bonds, VLANs, bridges; docs/host-networks.md)
    r(
        "GET",
        "/api/v1/nodes/{node}/network",
        Priv(SysAudit, "/nodes/{node}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/network/pending",
        Priv(SysAudit, "/nodes/{node}"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/network/pending",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "PUT",
        "/api/v1/nodes/{node}/network/bonds",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "PUT",
        "/api/v1/nodes/{node}/network/vlans",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "PUT",
        "/api/v1/nodes/{node}/network/bridges",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/network/interfaces/{iface}",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/network/apply",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/network/confirm",
        Priv(SysModify, "/nodes/{node}"),
    ),
    // ---- cluster
    r(
        "POST",
        "/api/v1/cluster/init",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/join-token",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/local-join",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "GET",
        "/api/v1/cluster/status",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "GET",
        "/api/v1/cluster/nodes",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "GET",
        "/api/v1/cluster/verify",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "DELETE",
        "/api/v1/cluster/nodes/{name}",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "GET",
        "/api/v1/cluster/fencing",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/fencing",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "DELETE",
        "/api/v1/cluster/fencing/{node}",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/fencing/{node}/test",
        Priv(ClusterModify, "/cluster"),
    ),
    listed("GET", "/api/v1/cluster/resources", Filter::Vms),
    r("GET", "/api/v1/cluster/vip", Priv(ClusterAudit, "/cluster")),
    r("GET", "/api/v1/cluster/ha", Priv(ClusterAudit, "/cluster")),
    r(
        "POST",
        "/api/v1/cluster/ha/{vmid}/cleanup",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "GET",
        "/api/v1/cluster/what-if",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "GET",
        "/api/v1/cluster/ha/rules",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/ha/rules",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "DELETE",
        "/api/v1/cluster/ha/rules/{id}",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "PUT",
        "/api/v1/nodes/{node}/vms/{vmid}/ha",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "PUT",
        "/api/v1/nodes/{node}/maintenance",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "GET",
        "/api/v1/cluster/shared-pools",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/shared-pools",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "DELETE",
        "/api/v1/cluster/shared-pools/{name}",
        Priv(ClusterModify, "/cluster"),
    ),
    // ---- cluster storage pools (drbd-gfs2): built from the nodes' disks, so the cluster's
    // privilege, like shared pools
    r(
        "GET",
        "/api/v1/cluster/storage-pools",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/storage-pools",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "DELETE",
        "/api/v1/cluster/storage-pools/{name}",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/storage-pools/{name}/resolve-split-brain",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/storage-pools/{name}/extend",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "PUT",
        "/api/v1/cluster/vip",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "DELETE",
        "/api/v1/cluster/vip",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "GET",
        "/api/v1/cluster/qdevice",
        Priv(ClusterAudit, "/cluster"),
    ),
    r(
        "POST",
        "/api/v1/cluster/qdevice",
        Priv(ClusterModify, "/cluster"),
    ),
    r(
        "DELETE",
        "/api/v1/cluster/qdevice",
        Priv(ClusterModify, "/cluster"),
    ),
    Rule {
        method: "GET",
        route: "/api/v1/cluster/config",
        check: Priv(ClusterAudit, "/cluster"),
        filter: Some(Filter::Config),
    },
    r(
        "GET",
        "/api/v1/cluster/config/{*key}",
        ConfigKey(ClusterAudit),
    ),
    r(
        "PUT",
        "/api/v1/cluster/config/{*key}",
        ConfigKey(ClusterModify),
    ),
    r(
        "DELETE",
        "/api/v1/cluster/config/{*key}",
        ConfigKey(ClusterModify),
    ),
    // ---- backups (targets are storage; restore also checks VM.Backup and the pool's
    // Datastore.AllocateSpace in its handler)
    r(
        "GET",
        "/api/v1/nodes/{node}/backup-targets",
        Priv(DatastoreAudit, "/storage"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/backup-targets",
        Priv(DatastoreAllocate, "/storage"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/backup-targets/{target}",
        Priv(DatastoreAllocate, "/storage"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/vms/{vmid}/backups",
        Priv(VmAudit, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/backups",
        Priv(VmBackup, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}/verify",
        Priv(VmBackup, "/vms/{vmid}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}/restore",
        Priv(VmAllocate, "/vms"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/vms/{vmid}/backups/prune",
        Priv(VmBackup, "/vms/{vmid}"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}",
        Priv(VmBackup, "/vms/{vmid}"),
    ),
    // backup jobs back up any VM of the node: node configuration
    r(
        "GET",
        "/api/v1/nodes/{node}/backup-jobs",
        Priv(SysAudit, "/nodes/{node}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/backup-jobs",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "GET",
        "/api/v1/nodes/{node}/backup-jobs/{job}",
        Priv(SysAudit, "/nodes/{node}"),
    ),
    r(
        "PUT",
        "/api/v1/nodes/{node}/backup-jobs/{job}",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "DELETE",
        "/api/v1/nodes/{node}/backup-jobs/{job}",
        Priv(SysModify, "/nodes/{node}"),
    ),
    r(
        "POST",
        "/api/v1/nodes/{node}/backup-jobs/{job}/run",
        Priv(SysModify, "/nodes/{node}"),
    ),
];

/// The rule of a matched route (`HEAD` is checked as `GET`).
pub fn rule_for(method: &str, route: &str) -> Option<&'static Rule> {
    let m = if method == "HEAD" { "GET" } else { method };
    RULES
        .iter()
        .find(|r| r.route == route && (r.method == m || r.method == "ANY"))
}

/// `/vms/{vmid}` with `vmid=100` → `/vms/100`.
pub fn fill(template: &str, params: &[(String, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in params {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// What a rule says, for people (the OpenAPI description, docs, 403 messages).
pub fn describe(c: Check) -> String {
    match c {
        Check::Public => "none (no authentication)".into(),
        Check::Authenticated => {
            "any authenticated user (the answer is the caller's own, or filtered to what it may see)"
                .into()
        }
        Check::Priv(p, path) => format!("{p} on {path}"),
        Check::OwnTaskOr(p, path) => format!("the caller's own task, or {p} on {path}"),
        Check::ConfigKey(p) => {
            format!("{p} on /cluster; keys under access/ are root's only")
        }
    }
}

/// The subject of an authenticated request: its user, and the token it came with.
pub fn subject_of(headers: &HeaderMap, p: &Principal) -> Subject {
    let token = if headers.contains_key(crate::cluster::FORWARDED_USER) {
        headers
            .get(FORWARDED_TOKEN)
            .and_then(|v| v.to_str().ok())
            .filter(|t| keel_api::access::valid_groupid(t))
            .map(str::to_string)
    } else {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(TOKEN_SCHEME))
            .and_then(|v| v.trim().split_once('='))
            .and_then(|(id, _)| id.split_once('!'))
            .map(|(_, t)| t.to_string())
    };
    Subject {
        user: p.user.clone(),
        token,
    }
}

fn denied(cfg: &AccessConfig, s: &Subject, p: Privilege, path: &str) -> Error {
    let who = match s.full_tokenid() {
        Some(t) => format!("API token {t}"),
        None => format!("user {:?}", s.user),
    };
    let has = cfg.privs(s, path);
    let has = if has.is_empty() {
        "no privilege".to_string()
    } else {
        has.iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Error::Forbidden(format!(
        "permission denied: {p} on {path} is needed; {who} has {has} there"
    ))
}

/// Decide a request. `Ok(())` lets it through.
pub fn decide(
    cfg: &AccessConfig,
    s: &Subject,
    check: Check,
    params: &[(String, String)],
) -> Result<(), Error> {
    match check {
        Check::Public | Check::Authenticated => Ok(()),
        Check::Priv(p, t) => {
            let path = fill(t, params);
            if cfg.has(s, p, &path) {
                Ok(())
            } else {
                Err(denied(cfg, s, p, &path))
            }
        }
        Check::OwnTaskOr(p, t) => {
            let path = fill(t, params);
            let upid = params
                .iter()
                .find(|(k, _)| k == "upid")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            let own = crate::tasks::parse_upid(upid).is_some_and(|(_, _, _, u, _)| u == s.user);
            if own || cfg.has(s, p, &path) {
                Ok(())
            } else {
                Err(denied(cfg, s, p, &path))
            }
        }
        Check::ConfigKey(p) => {
            let key = params
                .iter()
                .find(|(k, _)| k == "key")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            let access_key = key == "access" || key.starts_with("access/");
            if access_key && !super::is_full_root(cfg, s) {
                return Err(Error::Forbidden(
                    "access/ (password and token hashes, the ACL) is readable and writable by root only; use /api/v1/access/…".into(),
                ));
            }
            if cfg.has(s, p, "/cluster") {
                Ok(())
            } else {
                Err(denied(cfg, s, p, "/cluster"))
            }
        }
    }
}

/// Keep the entries of a JSON list the subject may see.
pub fn filter_list(
    cfg: &AccessConfig,
    s: &Subject,
    f: Filter,
    params: &[(String, String)],
    list: Vec<serde_json::Value>,
) -> Vec<serde_json::Value> {
    let node_audit = || {
        let node = params
            .iter()
            .find(|(k, _)| k == "node")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        cfg.has(s, SysAudit, &format!("/nodes/{node}"))
    };
    let all_tasks = f == Filter::Tasks && node_audit();
    list.into_iter()
        .filter(|e| match f {
            Filter::Vms => match e["vmid"].as_u64() {
                Some(id) => cfg.has(s, VmAudit, &format!("/vms/{id}")),
                None => cfg.has(s, VmAudit, "/vms"),
            },
            Filter::Pools => {
                let name = e["name"].as_str().unwrap_or("");
                cfg.has(s, DatastoreAudit, &format!("/storage/{name}"))
            }
            Filter::Tasks => all_tasks || e["user"].as_str() == Some(s.user.as_str()),
            Filter::Config => {
                let k = e["key"].as_str().unwrap_or("");
                !(k == "access" || k.starts_with("access/")) || super::is_full_root(cfg, s)
            }
        })
        .collect()
}

/// The middleware: after authentication (a [`Principal`] in the request), before forwarding.
/// Puts the [`Subject`] and the loaded [`AccessConfig`] into the request for handlers.
pub async fn enforce(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        return next.run(req).await; // no route matched: the fallback answers 404
    };
    let Some(rule) = rule_for(method.as_str(), &route) else {
        if RULES.iter().any(|r| r.route == route) {
            return next.run(req).await; // a method the route does not have: axum answers 405
        }
        return ApiError(Error::Forbidden(format!(
            "no permission rule for {method} {route}: refused (this is a bug in keel-hostd's access table)"
        )))
        .into_response();
    };
    let Some(p) = req.extensions().get::<Principal>().cloned() else {
        return ApiError(Error::Unauthorized("not authenticated".into())).into_response();
    };
    let subject = subject_of(req.headers(), &p);
    let (mut parts, body) = req.into_parts();
    let params: Vec<(String, String)> =
        match RawPathParams::from_request_parts(&mut parts, &()).await {
            Ok(pp) => pp
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            Err(e) => return ApiError(Error::BadRequest(e.body_text())).into_response(),
        };
    let (n, s, pr) = (node.clone(), subject.clone(), params.clone());
    let check = rule.check;
    let decided = tokio::task::spawn_blocking(move || -> Result<AccessConfig, Error> {
        let cfg = match Backend::of(&n).load() {
            Ok(c) => c,
            // root's session and the node-local root token keep working while the config
            // store is down (root needs no ACL), so the operator can see and repair the node
            Err(e)
                if s.user == super::eval::ROOT
                    && s.token
                        .as_deref()
                        .is_none_or(|t| t == crate::auth::NODE_LOCAL_TOKEN) =>
            {
                tracing::warn!(error = %e, "access configuration unreadable; root proceeds");
                AccessConfig::default()
            }
            Err(e) => return Err(e),
        };
        if let Some(why) = refusal(&cfg, &s, unix_now()) {
            return Err(Error::Unauthorized(why));
        }
        decide(&cfg, &s, check, &pr)?;
        Ok(cfg)
    })
    .await;
    let cfg = match decided {
        Ok(Ok(c)) => Arc::new(c),
        Ok(Err(e)) => return ApiError(e).into_response(),
        Err(e) => {
            return ApiError(Error::Internal(format!("access check failed: {e}"))).into_response()
        }
    };
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(subject.clone());
    req.extensions_mut().insert(cfg.clone());
    let resp = next.run(req).await;
    match rule.filter {
        Some(f) if resp.status() == StatusCode::OK && method == Method::GET => {
            filtered(resp, &cfg, &subject, f, &params).await
        }
        _ => resp,
    }
}

async fn filtered(
    resp: Response,
    cfg: &AccessConfig,
    s: &Subject,
    f: Filter,
    params: &[(String, String)],
) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError(Error::Internal(format!("reading a list to filter: {e}")))
                .into_response()
        }
    };
    let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let kept = filter_list(cfg, s, f, params, list);
    let out = serde_json::to_vec(&kept).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(out))
}

/// Write each operation's rule into the OpenAPI document: the `x-keel-permission` extension
/// (`{"check": …, "privilege"?: …, "path"?: …}`) and a "Permission:" line in its description.
pub fn annotate(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            ("GET", &mut item.get),
            ("POST", &mut item.post),
            ("PUT", &mut item.put),
            ("DELETE", &mut item.delete),
            ("PATCH", &mut item.patch),
        ];
        for (m, op) in ops {
            let Some(op) = op.as_mut() else { continue };
            let rule = RULES
                .iter()
                .find(|r| r.method == m && openapi_path(r.route) == *path);
            let Some(rule) = rule else { continue };
            let mut ext = serde_json::json!({ "check": check_kind(rule.check) });
            match rule.check {
                Check::Priv(p, t) | Check::OwnTaskOr(p, t) => {
                    ext["privilege"] = p.as_str().into();
                    ext["path"] = t.into();
                }
                Check::ConfigKey(p) => {
                    ext["privilege"] = p.as_str().into();
                    ext["path"] = "/cluster".into();
                }
                _ => {}
            }
            op.extensions
                .get_or_insert_with(Default::default)
                .insert("x-keel-permission".into(), ext);
            // what the authentication and this check can answer, on every guarded operation
            if rule.check != Check::Public {
                add_error(
                    op,
                    "401",
                    "not authenticated, or a disabled or expired user or token",
                );
            }
            if !matches!(rule.check, Check::Public | Check::Authenticated) {
                add_error(
                    op,
                    "403",
                    "the privilege is missing (the message names it and the path)",
                );
            }
            let line = format!("Permission: {}.", describe(rule.check));
            op.description = Some(match op.description.take() {
                Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
                _ => line,
            });
        }
    }
}

fn add_error(op: &mut utoipa::openapi::path::Operation, code: &str, why: &str) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    if op.responses.responses.contains_key(code) {
        return;
    }
    let r = ResponseBuilder::new()
        .description(why)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    op.responses.responses.insert(code.into(), r.into());
}

fn check_kind(c: Check) -> &'static str {
    match c {
        Check::Public => "public",
        Check::Authenticated => "authenticated",
        Check::Priv(..) => "privilege",
        Check::OwnTaskOr(..) => "own-task-or-privilege",
        Check::ConfigKey(..) => "config-key",
    }
}

/// axum's `{*key}` is OpenAPI's `{key}`.
pub fn openapi_path(route: &str) -> String {
    route.replace("{*", "{")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every `.route("…", get(…).post(…))` in hostd's sources: (METHOD, template).
    fn routes_in_sources() -> BTreeSet<(String, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut files = vec![];
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut out = BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let mut rest = text.as_str();
            while let Some(i) = rest.find(".route(") {
                rest = &rest[i + ".route(".len()..];
                // the call's extent: up to the matching ')'
                let mut depth = 1;
                let mut end = rest.len();
                for (j, c) in rest.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                end = j;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let call = &rest[..end];
                let Some(q1) = call.find('"') else { continue };
                let Some(q2) = call[q1 + 1..].find('"') else {
                    continue;
                };
                let route = &call[q1 + 1..q1 + 1 + q2];
                if !route.starts_with("/api") {
                    continue;
                }
                let handlers = &call[q1 + 2 + q2..];
                for (word, m) in [
                    ("get(", "GET"),
                    ("post(", "POST"),
                    ("put(", "PUT"),
                    ("delete(", "DELETE"),
                    ("patch(", "PATCH"),
                    ("any(", "ANY"),
                ] {
                    let hit = handlers.match_indices(word).any(|(k, _)| {
                        k == 0 || {
                            let prev = handlers[..k].chars().last().unwrap_or(' ');
                            !prev.is_ascii_alphanumeric() && prev != '_'
                        }
                    });
                    if hit {
                        out.insert((m.to_string(), route.to_string()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_route_has_a_rule_and_every_rule_a_route() {
        let routes = routes_in_sources();
        assert!(
            routes.len() > 60,
            "the source scan found only {} routes: {routes:?}",
            routes.len()
        );
        let missing: Vec<_> = routes
            .iter()
            .filter(|(m, r)| !RULES.iter().any(|x| x.route == r && x.method == m))
            .collect();
        assert!(
            missing.is_empty(),
            "routes without a permission rule: {missing:?}"
        );
        let stale: Vec<_> = RULES
            .iter()
            .filter(|x| !routes.contains(&(x.method.to_string(), x.route.to_string())))
            .map(|x| (x.method, x.route))
            .collect();
        assert!(
            stale.is_empty(),
            "rules for routes that do not exist: {stale:?}"
        );
    }

    #[test]
    fn every_operation_of_the_openapi_document_states_its_permission() {
        let doc = serde_json::to_value(super::super::api_doc()).unwrap_or_default();
        let mut n = 0;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (m, op) in item.as_object().into_iter().flatten() {
                if !["get", "post", "put", "delete", "patch"].contains(&m.as_str()) {
                    continue;
                }
                n += 1;
                let ext = &op["x-keel-permission"];
                assert!(
                    ext["check"].is_string(),
                    "{m} {path} has no x-keel-permission"
                );
                let desc = op["description"].as_str().unwrap_or("");
                assert!(desc.contains("Permission: "), "{m} {path}: {desc}");
                if ext["check"] != "public" {
                    assert!(op["responses"]["401"].is_object(), "{m} {path}: no 401");
                }
                if ext["check"] != "public" && ext["check"] != "authenticated" {
                    assert!(op["responses"]["403"].is_object(), "{m} {path}: no 403");
                }
            }
        }
        assert!(n > 60, "only {n} operations");
        let vm_power = &doc["paths"]["/api/v1/nodes/{node}/vms/{vmid}/status/{op}"]["post"]
            ["x-keel-permission"];
        assert_eq!(vm_power["privilege"], "VM.PowerMgmt");
        assert_eq!(vm_power["path"], "/vms/{vmid}");
    }

    #[test]
    fn subjects_of_tokens_sessions_and_forwarded_requests() {
        let p = Principal {
            user: "bob".into(),
            csrf: None,
        };
        let mut h = HeaderMap::new();
        assert_eq!(subject_of(&h, &p).token, None);
        h.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_static("KeelAPIToken bob!ci=secret"),
        );
        assert_eq!(subject_of(&h, &p).token.as_deref(), Some("ci"));
        // the token header counts only on a forwarded request (checked by check_forwarded)
        let mut f = HeaderMap::new();
        f.insert(FORWARDED_TOKEN, header::HeaderValue::from_static("ci"));
        assert_eq!(subject_of(&f, &p).token, None);
        f.insert(
            crate::cluster::FORWARDED_USER,
            header::HeaderValue::from_static("bob"),
        );
        let s = subject_of(&f, &p);
        assert_eq!((s.user.as_str(), s.token.as_deref()), ("bob", Some("ci")));
        f.insert(FORWARDED_TOKEN, header::HeaderValue::from_static("x/../y"));
        assert_eq!(subject_of(&f, &p).token, None);
    }

    #[test]
    fn decisions() {
        use keel_api::access::{AclEntry, UgidType};
        let mut cfg = AccessConfig::default();
        cfg.acl.push(AclEntry {
            path: "/vms/100".into(),
            ugid_type: UgidType::User,
            ugid: "vu".into(),
            roleid: "VMUser".into(),
            propagate: true,
        });
        cfg.acl.push(AclEntry {
            path: "/".into(),
            ugid_type: UgidType::User,
            ugid: "adm".into(),
            roleid: "Administrator".into(),
            propagate: true,
        });
        let vu = Subject {
            user: "vu".into(),
            token: None,
        };
        let adm = Subject {
            user: "adm".into(),
            token: None,
        };
        let params = |vmid: &str| {
            vec![
                ("node".to_string(), "n1".to_string()),
                ("vmid".to_string(), vmid.to_string()),
            ]
        };
        let Some(rule) = rule_for("POST", "/api/v1/nodes/{node}/vms/{vmid}/vncproxy") else {
            panic!("no vncproxy rule");
        };
        assert!(decide(&cfg, &vu, rule.check, &params("100")).is_ok());
        let e = decide(&cfg, &vu, rule.check, &params("101")).err();
        assert!(
            matches!(&e, Some(Error::Forbidden(m)) if m.contains("VM.Console on /vms/101")),
            "{e:?}"
        );
        // tasks: own ones only without Sys.Audit
        let own = vec![
            ("node".to_string(), "n1".to_string()),
            (
                "upid".to_string(),
                "UPID:n1:00000001:00000001:00000001:vmstart:100:vu:".to_string(),
            ),
        ];
        let other = vec![
            ("node".to_string(), "n1".to_string()),
            (
                "upid".to_string(),
                "UPID:n1:00000001:00000001:00000001:vmstart:100:root:".to_string(),
            ),
        ];
        let t = Check::OwnTaskOr(SysAudit, "/nodes/{node}");
        assert!(decide(&cfg, &vu, t, &own).is_ok());
        assert!(decide(&cfg, &vu, t, &other).is_err());
        assert!(decide(&cfg, &adm, t, &other).is_ok());
        // access/ config keys: root only, even for an Administrator
        let key = vec![("key".to_string(), "access/users/root".to_string())];
        assert!(decide(&cfg, &adm, Check::ConfigKey(ClusterAudit), &key).is_err());
        let root = Subject {
            user: "root".into(),
            token: None,
        };
        assert!(decide(&cfg, &root, Check::ConfigKey(ClusterAudit), &key).is_ok());
        // list filtering
        let vms = vec![
            serde_json::json!({"vmid": 100}),
            serde_json::json!({"vmid": 101}),
            serde_json::json!({"vmid": null}),
        ];
        assert_eq!(
            filter_list(&cfg, &vu, Filter::Vms, &[], vms.clone()).len(),
            1
        );
        assert_eq!(filter_list(&cfg, &adm, Filter::Vms, &[], vms).len(), 3);
        let entries = vec![
            serde_json::json!({"key": "access/users/root"}),
            serde_json::json!({"key": "vms/100"}),
        ];
        assert_eq!(
            filter_list(&cfg, &adm, Filter::Config, &[], entries.clone()).len(),
            1
        );
        assert_eq!(
            filter_list(&cfg, &root, Filter::Config, &[], entries).len(),
            2
        );
    }
}
