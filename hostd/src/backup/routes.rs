//! Backup endpoints: thin handlers (check at once, then one task or one answer).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use keel_api::access::Privilege;
use keel_api::backup::{
    BackupCreate, BackupInfo, BackupJob, BackupJobConfig, BackupTarget, BackupTargetCreate,
    BackupTargetQuery, PruneRequest, PruneResult, RestoreRequest,
};
use keel_api::task::TaskRef;

use super::{jobs, prune, run, targets};
use crate::auth::Principal;
use crate::error::Error;
use crate::http::{accepted, blocking, check_node, ApiResult, JsonBody, Path, Query};
use crate::{tasks, Node};

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route(
            "/api/v1/nodes/{node}/backup-targets",
            get(list_targets).post(create_target),
        )
        .route(
            "/api/v1/nodes/{node}/backup-targets/{target}",
            delete(delete_target),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/backups",
            get(list_backups).post(create_backup),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}/verify",
            post(verify_backup),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}/restore",
            post(restore_backup),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/backups/prune",
            post(prune_backups),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}",
            delete(delete_backup),
        )
        .route(
            "/api/v1/nodes/{node}/backup-jobs",
            get(list_jobs).post(create_job),
        )
        .route(
            "/api/v1/nodes/{node}/backup-jobs/{job}",
            get(get_job).put(update_job).delete(delete_job),
        )
        .route("/api/v1/nodes/{node}/backup-jobs/{job}/run", post(run_job))
}

/// This node's backup targets, with free space and whether each is usable now.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/backup-targets", tag = "backups", params(("node" = String, Path)),
    responses((status = 200, body = [BackupTarget])))]
pub async fn list_targets(
    State(node): axum::extract::State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<BackupTarget>>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || targets::list(&node)).await?))
}

use axum::extract::State;

/// Define a backup target: a directory on this node that exists and is writable.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/backup-targets", tag = "backups", params(("node" = String, Path)),
    request_body = BackupTargetCreate, responses((status = 201, body = BackupTarget), (status = 400, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
pub async fn create_target(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<BackupTargetCreate>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let t = blocking(move || targets::create(&node, &req)).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// Forget a backup target (the backups in its directory are left in place).
#[utoipa::path(delete, path = "/api/v1/nodes/{node}/backup-targets/{target}", tag = "backups",
    params(("node" = String, Path), ("target" = String, Path)), responses((status = 204), (status = 404, body = keel_api::ErrorBody)))]
pub async fn delete_target(
    State(node): State<Arc<Node>>,
    Path((name, target)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_node(&node, &name)?;
    blocking(move || targets::delete(&node, &target)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A VM's complete backups (on one target, or on every target), oldest first, with the
/// result of their last verification.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}/backups", tag = "backups",
    params(("node" = String, Path), ("vmid" = u32, Path), BackupTargetQuery), responses((status = 200, body = [BackupInfo])))]
pub async fn list_backups(
    State(node): State<Arc<Node>>,
    Path((name, vmid)): Path<(String, u32)>,
    Query(q): Query<BackupTargetQuery>,
) -> ApiResult<Json<Vec<BackupInfo>>> {
    check_node(&node, &name)?;
    Ok(Json(
        blocking(move || run::list(&node, vmid, q.target.as_deref())).await?,
    ))
}

/// Back a VM up now (task `vmbackup`): live through libvirt's backup job when it runs
/// (incremental since its last backup on that target when the chain is whole), a copy of its
/// disks when it is stopped.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/backups", tag = "backups",
    params(("node" = String, Path), ("vmid" = u32, Path)), request_body = BackupCreate,
    responses((status = 202, body = TaskRef), (status = 404, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
pub async fn create_backup(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<BackupCreate>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        let path = run::check_create(&node, vmid, &req)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "vmbackup",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| run::create(&n, vmid, &req, &path, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// Verify a backup (task `backupverify`): re-read every file of its chain and compare with
/// the manifests' SHA-256; the result shows in the listing.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}/verify", tag = "backups",
    params(("node" = String, Path), ("vmid" = u32, Path), ("backup" = String, Path), BackupTargetQuery),
    responses((status = 202, body = TaskRef), (status = 400, body = keel_api::ErrorBody), (status = 404, body = keel_api::ErrorBody)))]
pub async fn verify_backup(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid, backup)): Path<(String, u32, String)>,
    Query(q): Query<BackupTargetQuery>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        run::check_backup_id(&backup)?;
        let Some(target) = q.target else {
            return Err(Error::validation(
                "target",
                "give the backup's target: ?target=NAME",
            ));
        };
        let t = targets::get(&node, &target)?;
        if !run::exists(&node, &t, vmid, &backup)? {
            return Err(Error::NotFound(format!(
                "backup {backup} of VM {vmid} does not exist on target {target:?}"
            )));
        }
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "backupverify",
            &format!("backup-{vmid}-{backup}"),
            &p.user,
            true,
            move |t| run::verify(&n, &target, vmid, &backup, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// Restore a backup into a new VM (task `vmrestore` on the new vmid): the chain is verified,
/// each disk flattened into a new volume on the chosen pool, the VM defined from the saved spec
/// with a new UUID, MACs and name. With `replace`, over the backed-up VM itself (stopped, no
/// snapshots, not HA): new volumes written first, then the VM redefined on them, then the old
/// ones removed. Needs VM.Allocate on `/vms`, VM.Backup on the backed-up VM and
/// Datastore.AllocateSpace on the pool; with `replace` also VM.Config on the VM.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}/restore", tag = "backups",
    params(("node" = String, Path), ("vmid" = u32, Path), ("backup" = String, Path)), request_body = RestoreRequest,
    responses((status = 202, body = TaskRef), (status = 400, body = keel_api::ErrorBody), (status = 404, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
pub async fn restore_backup(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Extension(who): Extension<crate::access::Subject>,
    Extension(acl): Extension<Arc<crate::access::AccessConfig>>,
    Path((name, vmid, backup)): Path<(String, u32, String)>,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let mut needs = vec![
        (Privilege::VmBackup, format!("/vms/{vmid}")),
        (
            Privilege::DatastoreAllocateSpace,
            format!("/storage/{}", req.pool),
        ),
    ];
    if req.replace {
        // its configuration and disks are replaced
        needs.push((Privilege::VmConfig, format!("/vms/{vmid}")));
    }
    for (privilege, path) in needs {
        if !acl.has(&who, privilege, &path) {
            return Err(Error::Forbidden(format!(
                "permission denied: {} on {path} is needed to restore",
                privilege.as_str()
            ))
            .into());
        }
    }
    let upid = blocking(move || {
        let plan = run::check_restore(&node, vmid, &backup, &req)?;
        let new = plan.spec.vmid;
        // over the original: its vmid is already its own; the task holds the VM
        let reserve = plan.over.is_none();
        if reserve {
            vms_reserve(&node, &plan)?;
        }
        let n = node.clone();
        let start = req.start;
        let r = tasks::spawn(
            &node.tasks,
            "vmrestore",
            &new.to_string(),
            &p.user,
            true,
            move |t| run::restore(&n, vmid, plan, start, t),
        );
        if r.is_err() && reserve {
            let _ = crate::vms::release_vmid(&node, new);
        }
        r
    })
    .await?;
    Ok(accepted(upid))
}

fn vms_reserve(node: &Node, plan: &run::RestorePlan) -> Result<(), Error> {
    crate::vms::reserve_vmid(node, plan.spec.vmid, &plan.spec.name)
}

/// Prune a VM's backups on a target by a retention policy (keep-last/hourly/daily/weekly/
/// monthly/yearly; a kept incremental keeps its whole chain). `dry_run`: 200 with what would
/// be kept and removed and why; otherwise task `backupprune` on the VM.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/backups/prune", tag = "backups",
    params(("node" = String, Path), ("vmid" = u32, Path)), request_body = PruneRequest,
    responses((status = 200, body = PruneResult, description = "dry run: what would be kept and removed"),
        (status = 202, body = TaskRef), (status = 400, body = keel_api::ErrorBody),
        (status = 404, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
pub async fn prune_backups(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<PruneRequest>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    blocking(move || {
        let policy = prune::check(&node, &req)?;
        if req.dry_run {
            return Ok(Json(prune::plan(&node, vmid, &req.target, &policy)?).into_response());
        }
        let n = node.clone();
        let upid = tasks::spawn(
            &node.tasks,
            "backupprune",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| prune::run(&n, vmid, &req.target, &policy, t).map(|_| ()),
        )?;
        Ok(accepted(upid))
    })
    .await
}

/// Delete one backup (task `backupdelete` on the VM). Refused (409, naming them) while
/// incrementals depend on it.
#[utoipa::path(delete, path = "/api/v1/nodes/{node}/vms/{vmid}/backups/{backup}", tag = "backups",
    params(("node" = String, Path), ("vmid" = u32, Path), ("backup" = String, Path), BackupTargetQuery),
    responses((status = 202, body = TaskRef), (status = 400, body = keel_api::ErrorBody),
        (status = 404, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
pub async fn delete_backup(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid, backup)): Path<(String, u32, String)>,
    Query(q): Query<BackupTargetQuery>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        let Some(target) = q.target else {
            return Err(Error::validation(
                "target",
                "give the backup's target: ?target=NAME",
            ));
        };
        prune::check_delete(&node, vmid, &backup, &target)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "backupdelete",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| prune::run_delete(&n, vmid, &backup, &target, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// This node's backup jobs with their next and last run.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/backup-jobs", tag = "backups", params(("node" = String, Path)),
    responses((status = 200, body = [BackupJob])))]
pub async fn list_jobs(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<BackupJob>>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || jobs::list(&node)).await?))
}

/// Define a backup job: VMs (or all), target, schedule, full-every, retention.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/backup-jobs", tag = "backups", params(("node" = String, Path)),
    request_body = BackupJobConfig, responses((status = 201, body = BackupJob), (status = 400, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
pub async fn create_job(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<BackupJobConfig>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let j = blocking(move || jobs::create(&node, &req)).await?;
    Ok((StatusCode::CREATED, Json(j)).into_response())
}

/// One backup job.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/backup-jobs/{job}", tag = "backups",
    params(("node" = String, Path), ("job" = String, Path)), responses((status = 200, body = BackupJob), (status = 404, body = keel_api::ErrorBody)))]
pub async fn get_job(
    State(node): State<Arc<Node>>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<BackupJob>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || jobs::get(&node, &id)).await?))
}

/// Replace a backup job's definition (the next run is computed again).
#[utoipa::path(put, path = "/api/v1/nodes/{node}/backup-jobs/{job}", tag = "backups",
    params(("node" = String, Path), ("job" = String, Path)), request_body = BackupJobConfig,
    responses((status = 200, body = BackupJob), (status = 400, body = keel_api::ErrorBody), (status = 404, body = keel_api::ErrorBody)))]
pub async fn update_job(
    State(node): State<Arc<Node>>,
    Path((name, id)): Path<(String, String)>,
    JsonBody(req): JsonBody<BackupJobConfig>,
) -> ApiResult<Json<BackupJob>> {
    check_node(&node, &name)?;
    Ok(Json(
        blocking(move || jobs::update(&node, &id, &req)).await?,
    ))
}

/// Remove a backup job (its backups stay).
#[utoipa::path(delete, path = "/api/v1/nodes/{node}/backup-jobs/{job}", tag = "backups",
    params(("node" = String, Path), ("job" = String, Path)), responses((status = 204), (status = 404, body = keel_api::ErrorBody)))]
pub async fn delete_job(
    State(node): State<Arc<Node>>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_node(&node, &name)?;
    blocking(move || jobs::delete(&node, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run a backup job now (task `backupjob`; 409 while a run of it is going on).
#[utoipa::path(post, path = "/api/v1/nodes/{node}/backup-jobs/{job}/run", tag = "backups",
    params(("node" = String, Path), ("job" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 404, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
pub async fn run_job(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || jobs::start(&node, &id, &p.user)).await?;
    Ok(accepted(upid))
}
