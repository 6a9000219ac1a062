//! Users, groups, roles and permissions (Proxmox VE's model, adapted).
//!
//! - [`eval`] — the access configuration and its evaluation (pure).
//! - [`store`] — where it lives (this node's database, or the config store when clustered).
//! - [`rules`] — the route → (privilege, path) table and the one middleware that checks it.
//! - [`handlers`] — `/api/v1/access/{users,groups,roles,acl,tokens,permissions}`.
//!
//! See docs/access.md.

pub mod eval;
pub mod handlers;
pub mod rules;
pub mod store;

use keel_api::vm::VmSpec;
use utoipa::OpenApi;

pub use eval::{AccessConfig, Subject};
pub use rules::{enforce, FORWARDED_TOKEN};

use crate::error::{Error, Result};

/// Whether the subject is root with root's full powers: a session or a token without
/// privilege separation.
pub fn is_full_root(cfg: &AccessConfig, s: &Subject) -> bool {
    s.user == eval::ROOT
        && !s
            .full_tokenid()
            .is_some_and(|t| cfg.tokens.get(&t).is_some_and(|m| m.privsep))
}

/// Raw host paths as VM disks or CD-ROMs are root's only: refuse any path `spec` names that
/// `old` (the VM's current spec, on update) does not already have, unless the caller is root.
pub fn check_raw_paths(
    cfg: &AccessConfig,
    s: &Subject,
    spec: &VmSpec,
    old: Option<&VmSpec>,
) -> Result<()> {
    if is_full_root(cfg, s) {
        return Ok(());
    }
    let kept: Vec<String> = old
        .map(|o| {
            keel_api::access::raw_paths(o)
                .into_iter()
                .map(|(_, p)| p)
                .collect()
        })
        .unwrap_or_default();
    for (field, path) in keel_api::access::raw_paths(spec) {
        if !kept.contains(&path) {
            return Err(Error::Forbidden(format!(
                "{field}: a raw host path ({path:?}) as a VM disk or CD-ROM is allowed for root only \
                 (QEMU would get that host file); use a volume in a storage pool (pool + volume)"
            )));
        }
    }
    Ok(())
}

/// What a VM spec asks of storage, beyond the VM privilege the route needs: raw host paths are
/// root's only ([`check_raw_paths`]); a new volume needs `Datastore.AllocateSpace` on its pool,
/// and using an existing volume or ISO `Datastore.Audit` on its pool — unless the VM (`old`)
/// already uses it.
pub fn check_vm_spec(
    cfg: &AccessConfig,
    s: &Subject,
    spec: &VmSpec,
    old: Option<&VmSpec>,
) -> Result<()> {
    check_raw_paths(cfg, s, spec, old)?;
    let refs = |v: &VmSpec| -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = v
            .disks
            .iter()
            .filter_map(|d| Some((d.pool.clone()?, d.volume.clone()?)))
            .collect();
        if let Some(c) = &v.cdrom {
            if let (Some(p), Some(vol)) = (&c.pool, &c.volume) {
                out.push((p.clone(), vol.clone()));
            }
        }
        if let Some(k) = &v.kernel {
            out.push((k.pool.clone(), k.kernel.clone()));
            if let Some(i) = &k.initrd {
                out.push((k.pool.clone(), i.clone()));
            }
        }
        out
    };
    let kept = old.map(refs).unwrap_or_default();
    let need = |p: keel_api::access::Privilege, pool: &str, field: String| -> Result<()> {
        let path = format!("/storage/{pool}");
        if cfg.has(s, p, &path) {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "permission denied: {field} needs {p} on {path}"
        )))
    };
    for (i, d) in spec.disks.iter().enumerate() {
        let Some(pool) = &d.pool else { continue };
        if d.volume.is_none() {
            need(
                keel_api::access::Privilege::DatastoreAllocateSpace,
                pool,
                format!("disks[{i}] (a new volume)"),
            )?;
        }
    }
    for (pool, vol) in refs(spec) {
        if !kept.contains(&(pool.clone(), vol.clone())) {
            need(
                keel_api::access::Privilege::DatastoreAudit,
                &pool,
                format!("volume {pool}:{vol}"),
            )?;
        }
    }
    Ok(())
}

/// After a successful password check: refuse (401) a disabled or expired user, dropping the
/// session just opened.
pub fn check_login(node: &crate::Node, s: &keel_api::auth::LoginResponse) -> Result<()> {
    let cfg = store::Backend::of(node).load()?;
    let who = Subject {
        user: s.username.clone(),
        token: None,
    };
    if let Some(why) = eval::refusal(&cfg, &who, store::unix_now()) {
        node.auth.logout(&s.ticket)?;
        return Err(Error::Unauthorized(format!("authentication failed: {why}")));
    }
    Ok(())
}

/// The whole OpenAPI document: the API's, the access endpoints', each operation annotated with
/// the permission it needs.
pub fn api_doc() -> utoipa::openapi::OpenApi {
    let mut doc = crate::api::ApiDoc::openapi();
    doc.merge(handlers::AccessDoc::openapi());
    rules::annotate(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::access::{AclEntry, UgidType};

    fn spec(json: serde_json::Value) -> VmSpec {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn vm_specs_need_their_pools() {
        let mut cfg = AccessConfig::default();
        for (path, role) in [("/vms", "VMAdmin"), ("/storage/fast", "NoAccess")] {
            cfg.acl.push(AclEntry {
                path: path.into(),
                ugid_type: UgidType::User,
                ugid: "vmadm".into(),
                roleid: role.into(),
                propagate: true,
            });
        }
        cfg.acl.push(AclEntry {
            path: "/storage/local".into(),
            ugid_type: UgidType::User,
            ugid: "vmadm".into(),
            roleid: "StorageAdmin".into(),
            propagate: true,
        });
        let who = Subject {
            user: "vmadm".into(),
            token: None,
        };
        let base = serde_json::json!({"vmid": 100, "name": "x", "vcpus": 1, "memory_mib": 64});
        let with = |disks: serde_json::Value| {
            let mut v = base.clone();
            v["disks"] = disks;
            spec(v)
        };
        assert!(check_vm_spec(
            &cfg,
            &who,
            &with(serde_json::json!([{"pool": "local", "size_mib": 8}])),
            None
        )
        .is_ok());
        let e = check_vm_spec(
            &cfg,
            &who,
            &with(serde_json::json!([{"pool": "fast", "size_mib": 8}])),
            None,
        );
        assert!(
            matches!(&e, Err(Error::Forbidden(m)) if m.contains("Datastore.AllocateSpace on /storage/fast")),
            "{e:?}"
        );
        let existing = with(serde_json::json!([{"pool": "fast", "volume": "a.qcow2"}]));
        assert!(check_vm_spec(&cfg, &who, &existing, None).is_err());
        // a volume the VM already has stays usable
        assert!(check_vm_spec(&cfg, &who, &existing, Some(&existing)).is_ok());
    }

    #[test]
    fn raw_paths_are_root_only() {
        let mut cfg = AccessConfig::default();
        cfg.acl.push(AclEntry {
            path: "/".into(),
            ugid_type: UgidType::User,
            ugid: "adm".into(),
            roleid: "Administrator".into(),
            propagate: true,
        });
        cfg.tokens.insert(
            "root!sep".into(),
            eval::TokenMeta {
                privsep: true,
                expire: None,
            },
        );
        let raw = spec(serde_json::json!({
            "vmid": 100, "name": "x", "vcpus": 1, "memory_mib": 64,
            "disks": [{"path": "/etc/shadow"}], "cdrom": {"path": "/root/x.iso"}
        }));
        let adm = Subject {
            user: "adm".into(),
            token: None,
        };
        let e = check_raw_paths(&cfg, &adm, &raw, None);
        assert!(
            matches!(&e, Err(Error::Forbidden(m)) if m.starts_with("disks[0].path") && m.contains("root")),
            "{e:?}"
        );
        let root = Subject {
            user: "root".into(),
            token: None,
        };
        assert!(check_raw_paths(&cfg, &root, &raw, None).is_ok());
        let root_sep = Subject {
            user: "root".into(),
            token: Some("sep".into()),
        };
        assert!(check_raw_paths(&cfg, &root_sep, &raw, None).is_err());
        // an update that keeps the paths a VM already has is fine; a new one is not
        assert!(check_raw_paths(&cfg, &adm, &raw, Some(&raw)).is_ok());
        let mut changed = raw.clone();
        if let Some(c) = changed.cdrom.as_mut() {
            c.path = Some("/etc/passwd".into());
        }
        let e = check_raw_paths(&cfg, &adm, &changed, Some(&raw));
        assert!(
            matches!(&e, Err(Error::Forbidden(m)) if m.starts_with("cdrom.path")),
            "{e:?}"
        );
    }
}
