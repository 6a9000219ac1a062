//! Node-local pools made by Keel (docs/storage.md, "Node-local pools"): a `dir` pool on an
//! existing directory, or an `lvm-thin` pool in one of the node's own volume groups (the
//! installer's `keel` VG). Created and deleted as tasks; everything that can refuse does so
//! before the task exists. Cluster and shared pools have their own commands and are refused
//! here by name.
use std::path::{Component, Path};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::response::Response;
use axum::Extension;
use keel_api::storage::{LocalPoolCreate, LocalPoolKind};
use keel_storage::thin::{self, PoolSize};

use keel_api::task::TaskRef;
use keel_api::ErrorBody;

use crate::auth::Principal;
use crate::cluster_pools::storage_err;
use crate::error::{Error, Result};
use crate::http::{accepted, blocking, check_node, ApiResult, JsonBody};
use crate::hv::thin::ThinPools;
use crate::tasks::{self, TaskHandle};
use crate::Node;

/// Directories a pool may not be, or be under: the system's own trees.
const SYSTEM_TREES: [&str; 13] = [
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/boot",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var/lib/keel",
    "/var/lib/libvirt",
];

/// What a checked request creates.
#[derive(Debug, Clone, PartialEq)]
pub enum NewLocalPool {
    Dir {
        name: String,
        path: String,
    },
    Thin {
        name: String,
        vg: String,
        size: PoolSize,
    },
}

/// A pool directory: absolute, plain (no `.`/`..`, no trailing slash), outside the system's
/// trees, and an existing directory. Keel does not create it: a typo would otherwise put VM
/// disks on the root file system.
fn check_dir(path: &str) -> Result<()> {
    let p = Path::new(path);
    let plain = p.is_absolute()
        && path.len() > 1
        && !path.ends_with('/')
        && !path.contains("//")
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain {
        return Err(Error::validation(
            "path",
            format!("{path:?} is not a plain absolute directory path (like /srv/vmdata: no '.', '..', '//' or trailing '/')"),
        ));
    }
    if let Some(t) = SYSTEM_TREES
        .iter()
        .find(|t| path == **t || path.starts_with(&format!("{t}/")))
    {
        return Err(Error::validation(
            "path",
            format!("{path} is in {t}, which belongs to the system or to Keel itself: give a directory on the storage you want VMs on, e.g. a data disk mounted under /srv"),
        ));
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::validation(
            "path",
            format!("{path} exists and is not a directory"),
        )),
        Err(_) => Err(Error::validation(
            "path",
            format!("{path} does not exist on this node: create it (or mount the disk there) first, e.g. mkdir -p {path}"),
        )),
    }
}

/// Everything that can refuse before a task exists.
pub fn check_create(node: &Node, req: &LocalPoolCreate) -> Result<NewLocalPool> {
    req.validate()?;
    let pools = node.hv.list_pools()?;
    if pools.iter().any(|p| p.name == req.name) {
        return Err(Error::Conflict(format!(
            "a pool named {:?} already exists on node {}: choose another name",
            req.name, node.cfg.node
        )));
    }
    match req.kind {
        LocalPoolKind::Dir => {
            let path = req.path.clone().unwrap_or_default();
            check_dir(&path)?;
            if let Some(p) = pools.iter().find(|p| {
                p.path.as_deref().is_some_and(|q| {
                    q == path
                        || path.starts_with(&format!("{q}/"))
                        || q.starts_with(&format!("{path}/"))
                })
            }) {
                return Err(Error::Conflict(format!(
                    "{path} overlaps pool {:?} ({}): one directory tree, one pool",
                    p.name,
                    p.path.as_deref().unwrap_or("")
                )));
            }
            Ok(NewLocalPool::Dir {
                name: req.name.clone(),
                path,
            })
        }
        LocalPoolKind::LvmThin => {
            let vg = req.vg.clone().unwrap_or_default();
            let size = match req.size_mib {
                Some(m) => PoolSize::Bytes(m << 20),
                None => PoolSize::PercentFree(req.size_percent.unwrap_or(90)),
            };
            let lvm = ThinPools::new(node.cluster.runner.clone());
            let (vgs, lvs) = (lvm.vgs()?, lvm.report()?);
            thin::check_pool_create(&vgs, &lvs, &vg, &req.name, size).map_err(storage_err)?;
            Ok(NewLocalPool::Thin {
                name: req.name.clone(),
                vg,
                size,
            })
        }
    }
}

pub fn create(node: &Node, def: NewLocalPool, t: &TaskHandle) -> Result<()> {
    let name = match def {
        NewLocalPool::Dir { name, path } => {
            t.log(format!(
                "defining dir pool {name} at {path} (started now and at boot)"
            ));
            node.hv.ensure_dir_pool(&name, &path)?;
            name
        }
        NewLocalPool::Thin { name, vg, size } => {
            let cmd = thin::create_pool(&vg, &name, size);
            t.log(format!("creating thin pool {vg}/{name}: {cmd}"));
            node.cluster
                .runner
                .run_ok(&cmd)
                .map_err(|e| storage_err(e.into()))?;
            name
        }
    };
    let info = node.hv.pool(&name)?;
    t.log(format!(
        "pool {name} ({}): {} MiB, {} MiB free",
        info.kind,
        info.capacity >> 20,
        info.available >> 20
    ));
    Ok(())
}

/// A node-local pool that may be deleted: it exists, it is not the node's default pool, not a
/// cluster or shared pool (they have their own commands), and no volume of it is left (an
/// `lvm-thin` pool's volumes would be destroyed with it; a `dir` pool's files would be left
/// behind, unlisted).
pub fn check_delete(node: &Node, name: &str) -> Result<String> {
    let info = node.hv.pool(name)?;
    if name == node.cfg.default_pool {
        return Err(Error::BadRequest(format!(
            "{name} is this node's default pool (default_pool in hostd.toml): it is not deleted"
        )));
    }
    let clustered = crate::ha::is_shared_pool(node, name)
        || info
            .path
            .as_deref()
            .is_some_and(|p| Path::new(p).join(crate::ha::SHARED_MARKER).exists());
    if clustered {
        return Err(Error::BadRequest(format!(
            "{name} is a cluster or shared pool: delete it with keel storage pool delete (cluster pools) or keel ha pool remove (shared pools)"
        )));
    }
    let _ = node.hv.refresh_pool(name);
    let vols = crate::vms::volumes_with_users(node, name)?;
    if !vols.is_empty() {
        let names: Vec<String> = vols
            .iter()
            .map(|v| {
                if v.used_by.is_empty() {
                    v.name.clone()
                } else {
                    format!("{} (used by {})", v.name, v.used_by.join(", "))
                }
            })
            .collect();
        return Err(Error::Conflict(format!(
            "pool {name} still holds {} volume(s): {}; delete them (or the VMs that use them) first",
            vols.len(),
            names.join(", ")
        )));
    }
    Ok(info.kind)
}

pub fn delete(node: &Node, name: &str, kind: &str, t: &TaskHandle) -> Result<()> {
    if kind == crate::hv::thin::KIND {
        let r = &node.cluster.runner;
        let lvs = ThinPools::new(r.clone()).report()?;
        let pool = thin::find_pool(&lvs, name)
            .ok_or_else(|| Error::NotFound(format!("thin pool {name:?} not found")))?;
        // again inside the task: a volume made since the check is never destroyed
        thin::check_pool_delete(&lvs, pool).map_err(storage_err)?;
        let cmd = thin::remove(&pool.vg_name, name);
        t.log(format!("removing thin pool: {cmd}"));
        r.run_ok(&cmd).map_err(|e| storage_err(e.into()))?;
    } else {
        t.log(format!(
            "undefining {kind} pool {name} (its directory stays)"
        ));
        node.hv.undefine_pool(name)?;
    }
    Ok(())
}

/// Create a node-local pool (`dir` on an existing directory, `lvm-thin` in a local volume
/// group), as a task.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/storage", tag = "storage",
    params(("node" = String, Path)),
    request_body = LocalPoolCreate,
    responses((status = 202, body = TaskRef),
        (status = 400, description = "A bad name, path, volume group or size (the field named): a missing or system directory, a VG this node lacks or shares with the cluster, too little free space", body = ErrorBody),
        (status = 409, description = "The name is taken, or the directory overlaps another pool", body = ErrorBody)))]
pub async fn create_route(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    UrlPath(nn): UrlPath<String>,
    JsonBody(req): JsonBody<LocalPoolCreate>,
) -> ApiResult<Response> {
    check_node(&node, &nn)?;
    let upid = blocking(move || {
        let def = check_create(&node, &req)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "poolcreate",
            &req.name,
            &p.user,
            true,
            move |t| create(&n, def, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// Delete a node-local pool, as a task: refused while it holds volumes, for the node's default
/// pool, and for cluster and shared pools.
#[utoipa::path(delete, path = "/api/v1/nodes/{node}/storage/{pool}", tag = "storage",
    params(("node" = String, Path), ("pool" = String, Path)),
    responses((status = 202, body = TaskRef),
        (status = 400, description = "The node's default pool, or a cluster or shared pool (they have their own commands)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It still holds volumes (named)", body = ErrorBody)))]
pub async fn delete_route(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    UrlPath((nn, pool)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    check_node(&node, &nn)?;
    let upid = blocking(move || {
        let kind = check_delete(&node, &pool)?;
        let (n, target) = (node.clone(), pool.clone());
        tasks::spawn(
            &node.tasks,
            "pooldelete",
            &target,
            &p.user,
            true,
            move |t| delete(&n, &pool, &kind, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::hv::Hypervisor;
    use crate::tests_support::fake_node;
    use keel_runner::{Fake, Reply};

    const VGS: &str = r#"{"report":[{"vg":[{"vg_name":"keel","vg_size":"7511998464","vg_free":"5255462912","vg_lock_type":""}]}]}"#;
    const LVS: &str = r#"{"report":[{"lv":[
        {"vg_name":"keel","lv_name":"fast","lv_attr":"twi-a-tz--","lv_size":"1073741824","pool_lv":"","data_percent":"0.00","metadata_percent":"10.00","lv_tags":"keel_pool"},
        {"vg_name":"keel","lv_name":"d0","lv_attr":"Vwi-a-tz--","lv_size":"8388608","pool_lv":"fast","data_percent":"0.00","metadata_percent":"","lv_tags":""}
    ]}]}"#;

    fn req(v: serde_json::Value) -> LocalPoolCreate {
        serde_json::from_value(v).unwrap()
    }

    fn refused(node: &Node, v: serde_json::Value) -> String {
        match check_create(node, &req(v)) {
            Err(Error::Validation(f)) => format!("{}: {}", f.field, f.message),
            Err(e) => e.to_string(),
            Ok(p) => panic!("accepted: {p:?}"),
        }
    }

    #[test]
    fn a_dir_pool_needs_an_existing_plain_directory_outside_the_system() {
        let hv = Arc::new(FakeHv::new());
        let (node, dir) = fake_node(hv.clone()).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let data = data.display().to_string();
        for (path, words) in [
            ("relative/dir", "not a plain absolute"),
            ("/srv/../etc", "not a plain absolute"),
            ("/srv/vm/", "not a plain absolute"),
            ("/etc/pools", "belongs to the system or to Keel"),
            ("/var/lib/keel/images", "belongs to the system or to Keel"),
            (
                "/nonexistent/keel-pool",
                "does not exist on this node: create it",
            ),
        ] {
            let m = refused(
                &node,
                serde_json::json!({"name":"d","type":"dir","path":path}),
            );
            assert!(m.starts_with("path: ") && m.contains(words), "{path}: {m}");
        }
        let m = refused(
            &node,
            serde_json::json!({"name":"local","type":"dir","path":&data}),
        );
        assert!(m.contains("already exists"), "{m}");
        // the default pool lives in the test's state directory: a pool inside it overlaps
        let inner = format!("{}/images/sub", dir.path().display());
        std::fs::create_dir_all(&inner).unwrap();
        let m = refused(
            &node,
            serde_json::json!({"name":"d","type":"dir","path":inner}),
        );
        assert!(m.contains("overlaps pool \"local\""), "{m}");
        let def = check_create(
            &node,
            &req(serde_json::json!({"name":"d","type":"dir","path":&data})),
        )
        .unwrap();
        let t = node.tasks.begin("poolcreate", "d", "root", true).unwrap();
        create(&node, def, &t).unwrap();
        assert_eq!(hv.pool("d").unwrap().path.as_deref(), Some(data.as_str()));
        // deleted as a task once empty; the default pool never
        assert_eq!(check_delete(&node, "d").unwrap(), "dir");
        delete(&node, "d", "dir", &t).unwrap();
        assert!(hv.pool("d").is_err());
        let m = check_delete(&node, "local").unwrap_err().to_string();
        assert!(m.contains("default pool"), "{m}");
    }

    #[test]
    fn an_lvm_thin_pool_is_checked_against_lvm_then_made_by_one_lvcreate() {
        let hv = Arc::new(FakeHv::new());
        let (mut node, _dir) = fake_node(hv.clone()).unwrap();
        let fake = Arc::new(
            Fake::new()
                .expect(&thin::vgs().to_argv(), Reply::ok(VGS))
                .expect(&thin::lvs().to_argv(), Reply::ok(LVS))
                .expect(&thin::vgs().to_argv(), Reply::ok(VGS))
                .expect(&thin::lvs().to_argv(), Reply::ok(LVS))
                .expect(
                    &[
                        "lvcreate",
                        "--type",
                        "thin-pool",
                        "-l",
                        "50%FREE",
                        "-n",
                        "bulk",
                        "--addtag",
                        "keel_pool",
                        "-y",
                        "keel",
                    ],
                    Reply::ok(""),
                ),
        );
        node.cluster.runner = fake.clone();
        let m = refused(
            &node,
            serde_json::json!({"name":"bulk","type":"lvm-thin","vg":"nope"}),
        );
        assert!(
            m.contains("volume group \"nope\" does not exist on this node (it has keel)"),
            "{m}"
        );
        let def = check_create(
            &node,
            &req(
                serde_json::json!({"name":"bulk","type":"lvm-thin","vg":"keel","size_percent":50}),
            ),
        )
        .unwrap();
        assert_eq!(
            def,
            NewLocalPool::Thin {
                name: "bulk".into(),
                vg: "keel".into(),
                size: PoolSize::PercentFree(50)
            }
        );
        let t = node
            .tasks
            .begin("poolcreate", "bulk", "root", true)
            .unwrap();
        hv.add_thin_pool("bulk", "keel"); // what LVM reports once lvcreate ran
        create(&node, def, &t).unwrap();
        fake.assert_done();
    }

    #[test]
    fn a_thin_pool_with_volumes_is_not_deleted() {
        let hv = Arc::new(FakeHv::new());
        hv.add_thin_pool("fast", "keel");
        hv.create_volume("fast", "d0", 8 << 20, keel_api::vm::DiskFormat::Raw)
            .unwrap();
        let (mut node, _dir) = fake_node(hv.clone()).unwrap();
        let m = check_delete(&node, "fast").unwrap_err().to_string();
        assert!(m.contains("still holds 1 volume(s): d0"), "{m}");
        // inside the task LVM is asked again: a volume made since the check is never destroyed
        let fake = Arc::new(Fake::new().expect(&thin::lvs().to_argv(), Reply::ok(LVS)));
        node.cluster.runner = fake.clone();
        let t = node
            .tasks
            .begin("pooldelete", "fast", "root", true)
            .unwrap();
        let m = delete(&node, "fast", "lvm-thin", &t)
            .unwrap_err()
            .to_string();
        assert!(m.contains("d0"), "{m}");
        fake.assert_done();
    }
}
