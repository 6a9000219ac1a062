//! HTTP for HA VMs and shared pools: handlers stay thin over [`super`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use keel_api::ha::{
    HaCleanup, HaRule, HaSet, HaVmStatus, SharedPoolCreate, SharedPoolInfo, WhatIf, WhatIfQuery,
};
use keel_api::task::TaskRef;
use keel_api::ErrorBody;

use crate::auth::Principal;
use crate::http::{accepted, blocking, check_node, ApiResult, JsonBody, Path, Query};
use crate::tasks;
use crate::Node;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/nodes/{node}/vms/{vmid}/ha", put(set_ha))
        .route("/api/v1/cluster/ha", get(list_ha))
        .route("/api/v1/cluster/ha/{vmid}/cleanup", post(cleanup_ha))
        .route("/api/v1/cluster/what-if", get(what_if))
        .route("/api/v1/cluster/ha/rules", get(list_rules).post(add_rule))
        .route("/api/v1/cluster/ha/rules/{id}", delete(delete_rule))
        .route(
            "/api/v1/cluster/shared-pools",
            get(list_shared).post(create_shared),
        )
        .route("/api/v1/cluster/shared-pools/{name}", delete(delete_shared))
}

/// Turn HA on or off for a VM of this node. On: refused unless every node passed a fence
/// test, every disk is on a shared pool every node can use, every network exists on every
/// node and the N+1 check holds. Off: the VM keeps running here.
#[utoipa::path(put, path = "/api/v1/nodes/{node}/vms/{vmid}/ha", tag = "ha",
    params(("node" = String, Path), ("vmid" = u32, Path)), request_body = HaSet,
    responses((status = 202, body = TaskRef),
        (status = 400, description = "priority or max_restarts out of range", body = ErrorBody),
        (status = 404, description = "No such VM on this node", body = ErrorBody),
        (status = 409, description = "Not clustered, fencing not proven, a disk on node-local storage, a network missing on a node, N+1 violated, already (not) HA, or it runs on another node", body = ErrorBody)))]
pub async fn set_ha(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<HaSet>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        let n = node.clone();
        if req.enabled {
            super::check_enable(&node, vmid, &req)?;
            tasks::spawn(
                &node.tasks,
                "vmha",
                &vmid.to_string(),
                &p.user,
                true,
                move |t| super::enable(&n, vmid, &req, t),
            )
        } else {
            super::check_disable(&node, vmid)?;
            tasks::spawn(
                &node.tasks,
                "vmha",
                &vmid.to_string(),
                &p.user,
                true,
                move |t| super::disable(&n, vmid, t),
            )
        }
    })
    .await?;
    Ok(accepted(upid))
}

/// Every HA VM: where Pacemaker runs it, its target state, priority and recorded failures.
#[utoipa::path(get, path = "/api/v1/cluster/ha", tag = "ha",
    responses((status = 200, body = Vec<HaVmStatus>), (status = 409, description = "Not in a cluster", body = ErrorBody)))]
pub async fn list_ha(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<HaVmStatus>>> {
    Ok(Json(blocking(move || super::list(&node)).await?))
}

/// Forget an HA VM's failed operations and fail counts (`crm_resource --cleanup`): after a
/// fix, a VM banned from a node by `max_restarts` failures may run there again.
#[utoipa::path(post, path = "/api/v1/cluster/ha/{vmid}/cleanup", tag = "ha",
    params(("vmid" = u32, Path)),
    responses((status = 200, body = HaCleanup),
        (status = 404, description = "The VM is not highly available", body = ErrorBody),
        (status = 409, description = "Not in a cluster", body = ErrorBody)))]
pub async fn cleanup_ha(
    State(node): State<Arc<Node>>,
    Path(vmid): Path<u32>,
) -> ApiResult<Json<HaCleanup>> {
    let message = blocking(move || super::cleanup(&node, vmid)).await?;
    Ok(Json(HaCleanup { message }))
}

/// Shared pools and, per node, whether it can use each.
#[utoipa::path(get, path = "/api/v1/cluster/shared-pools", tag = "ha",
    responses((status = 200, body = Vec<SharedPoolInfo>), (status = 409, description = "Not in a cluster", body = ErrorBody)))]
pub async fn list_shared(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<SharedPoolInfo>>> {
    Ok(Json(blocking(move || super::list_shared(&node)).await?))
}

/// Declare a shared pool: a directory mounted from the same storage on every node. A marker
/// file is written into it here; each node defines the libvirt pool once it sees the marker.
#[utoipa::path(post, path = "/api/v1/cluster/shared-pools", tag = "ha", request_body = SharedPoolCreate,
    responses((status = 201, body = SharedPoolInfo),
        (status = 400, description = "Bad name, or the path is not an absolute directory on this node", body = ErrorBody),
        (status = 409, description = "Not in a cluster, the name is taken, or the directory is read-only", body = ErrorBody)))]
pub async fn create_shared(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<SharedPoolCreate>,
) -> ApiResult<(StatusCode, Json<SharedPoolInfo>)> {
    let info = blocking(move || super::create_shared(&node, &req)).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Remove a shared pool from the cluster (its files stay); refused while a VM's disk is on it.
#[utoipa::path(delete, path = "/api/v1/cluster/shared-pools/{name}", tag = "ha",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "A VM's disk is on it", body = ErrorBody)))]
pub async fn delete_shared(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || super::delete_shared(&node, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What Pacemaker would do with the HA VMs if a node failed now: its own scheduler
/// (`crm_simulate`) on the live CIB. Read-only.
#[utoipa::path(get, path = "/api/v1/cluster/what-if", tag = "ha", params(WhatIfQuery),
    responses((status = 200, body = WhatIf),
        (status = 400, description = "node_fail is not a member", body = ErrorBody),
        (status = 409, description = "Not in a cluster", body = ErrorBody)))]
pub async fn what_if(
    State(node): State<Arc<Node>>,
    Query(q): Query<WhatIfQuery>,
) -> ApiResult<Json<WhatIf>> {
    Ok(Json(
        blocking(move || super::what_if(&node, &q.node_fail)).await?,
    ))
}

/// Placement rules of HA VMs.
#[utoipa::path(get, path = "/api/v1/cluster/ha/rules", tag = "ha",
    responses((status = 200, body = Vec<HaRule>), (status = 409, description = "Not in a cluster", body = ErrorBody)))]
pub async fn list_rules(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<HaRule>>> {
    Ok(Json(blocking(move || super::rules::list(&node)).await?))
}

/// Add a placement rule: checked against the HA VMs, the members and every other rule first
/// (a conflict, or a hard rule that could not hold after a node fails, is refused).
#[utoipa::path(post, path = "/api/v1/cluster/ha/rules", tag = "ha", request_body = HaRule,
    responses((status = 201, body = HaRule),
        (status = 409, description = "Not in a cluster, a VM not HA, an unknown node, or a conflict with another rule", body = ErrorBody)))]
pub async fn add_rule(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<HaRule>,
) -> ApiResult<(StatusCode, Json<HaRule>)> {
    let r = blocking(move || super::rules::add(&node, &req)).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Remove a placement rule (its constraints leave the CIB).
#[utoipa::path(delete, path = "/api/v1/cluster/ha/rules/{id}", tag = "ha",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "Not in a cluster", body = ErrorBody)))]
pub async fn delete_rule(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || super::rules::remove(&node, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
