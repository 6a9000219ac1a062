//! The `/api/v1/cluster/...` routes. Handlers only extract, check the caller, call a domain
//! function of a sibling module (on the blocking pool when it touches files, the database or an
//! engine) and respond; the OpenAPI annotations are here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use keel_api::cluster::{
    ClusterInit, ClusterNode, ClusterResource, ClusterStatus, ConfigEntry, ConfigPut,
    FenceDeviceInfo, FenceDeviceSpec, JoinRequest, JoinResponse, JoinToken, JoinTokenCreate,
    LocalJoin, NodeRemoveQuery, QdeviceAdd, QdeviceStatus, VipSet, VipStatus,
};
use keel_api::task::TaskRef;
use serde::Deserialize;

use super::{fencing, init, join, peer, qdevice, remove, status, store_api, vip};
use crate::auth::Principal;
use crate::error::Error;
use crate::http::{accepted, blocking, ApiError, ApiResult, JsonBody, Path, Query};
use crate::tls::PeerCert;
use crate::Node;

/// Routes that need a logged-in user.
pub fn protected_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/cluster/init", post(init))
        .route("/api/v1/cluster/join-token", post(join_token))
        .route("/api/v1/cluster/local-join", post(local_join))
        .route("/api/v1/cluster/status", get(status))
        .route("/api/v1/cluster/nodes", get(nodes))
        .route("/api/v1/cluster/nodes/{name}", delete(remove_node))
        .route(
            "/api/v1/cluster/fencing",
            get(list_fencing).post(put_fencing),
        )
        .route("/api/v1/cluster/fencing/{node}", delete(delete_fencing))
        .route("/api/v1/cluster/fencing/{node}/test", post(test_fencing))
        .route("/api/v1/cluster/resources", get(resources))
        .route(
            "/api/v1/cluster/vip",
            get(get_vip).put(put_vip).delete(delete_vip),
        )
        .route(
            "/api/v1/cluster/qdevice",
            get(get_qdevice).post(add_qdevice).delete(remove_qdevice),
        )
        .route("/api/v1/cluster/config", get(config_list))
        .route(
            "/api/v1/cluster/config/{*key}",
            get(config_get).put(config_put).delete(config_delete),
        )
        .merge(super::verify::protected_routes())
}

/// Routes authenticated by their own means (join credentials in the body; peer HMAC).
pub fn public_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/cluster/join", post(join))
        .route("/api/v1/cluster/peer/update", post(peer_update))
        .route("/api/v1/cluster/peer/leave", post(peer_leave))
        .merge(super::verify::public_routes())
}

#[utoipa::path(post, path = "/api/v1/cluster/init", tag = "cluster", request_body = ClusterInit,
    responses((status = 202, body = TaskRef), (status = 400, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
async fn init(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<ClusterInit>,
) -> ApiResult<Response> {
    req.validate()?;
    let upid = blocking(move || init::start(&node, req, &p.user)).await?;
    Ok(accepted(upid))
}

#[utoipa::path(post, path = "/api/v1/cluster/join-token", tag = "cluster", request_body = JoinTokenCreate,
    responses((status = 201, body = JoinToken), (status = 409, body = keel_api::ErrorBody)))]
async fn join_token(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<JoinTokenCreate>,
) -> ApiResult<Response> {
    req.validate()?;
    let t = blocking(move || join::create_token(&node.cluster, req.ttl_s)).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

#[utoipa::path(post, path = "/api/v1/cluster/join", tag = "cluster", request_body = JoinRequest,
    responses((status = 200, body = JoinResponse), (status = 401, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
async fn join(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<JoinRequest>,
) -> ApiResult<Json<JoinResponse>> {
    Ok(Json(blocking(move || join::member_join(&node, req)).await?))
}

async fn peer_update(
    State(node): State<Arc<Node>>,
    peer_cert: Option<Extension<PeerCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let cert = peer_cert.map(|e| e.0).unwrap_or_default();
    blocking(move || peer::on_update(&node, &headers, &cert, &body)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn peer_leave(
    State(node): State<Arc<Node>>,
    peer_cert: Option<Extension<PeerCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let cert = peer_cert.map(|e| e.0).unwrap_or_default();
    blocking(move || peer::on_leave(&node, &headers, &cert, &body)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/cluster/local-join", tag = "cluster", request_body = LocalJoin,
    responses((status = 202, body = TaskRef), (status = 409, body = keel_api::ErrorBody)))]
async fn local_join(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<LocalJoin>,
) -> ApiResult<Response> {
    req.validate()?;
    let upid = blocking(move || join::start_local_join(&node, req, &p.user)).await?;
    Ok(accepted(upid))
}

#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster", responses((status = 200, body = ClusterStatus)))]
async fn status(State(node): State<Arc<Node>>) -> ApiResult<Json<ClusterStatus>> {
    Ok(Json(blocking(move || status::cluster_status(&node)).await?))
}

#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster", responses((status = 200, body = [ClusterNode])))]
async fn nodes(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<ClusterNode>>> {
    Ok(Json(blocking(move || status::cluster_nodes(&node)).await?))
}

#[utoipa::path(delete, path = "/api/v1/cluster/nodes/{name}", tag = "cluster", params(("name" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 409, description = "not clustered, the node answering, quorum lost without force, or diskless SBD left with fewer than three votes", body = keel_api::ErrorBody)))]
async fn remove_node(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<NodeRemoveQuery>,
) -> ApiResult<Response> {
    let upid = blocking(move || remove::start(&node, name, q.force, &p.user)).await?;
    Ok(accepted(upid))
}

#[utoipa::path(get, path = "/api/v1/cluster/fencing", tag = "cluster", responses((status = 200, body = [FenceDeviceInfo])))]
async fn list_fencing(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<FenceDeviceInfo>>> {
    Ok(Json(blocking(move || fencing::list(&node)).await?))
}

#[utoipa::path(post, path = "/api/v1/cluster/fencing", tag = "cluster", request_body = FenceDeviceSpec,
    responses((status = 202, description = "Task fenceadd (target: the node; the cluster, holding the node, for sbd and watchdog devices): sbd set up on every member for sbd and watchdog devices (minutes: each sbd start, Pacemaker restarted where it started before sbd), the secrets on every member, the device in Pacemaker's CIB; `GET /cluster/fencing` shows it afterwards. The task fails (state error, its message saying what to do) when a step meets what no check could see first: an SBD disk that is not blank or has other timeouts, a disk that is not the same on every member, sbd not starting, a member that cannot take the secrets, Pacemaker not back online after its restart; running it again repairs", body = TaskRef), (status = 400, body = keel_api::ErrorBody), (status = 409, description = "checked before the task exists, nothing changed: not clustered, another task on this node's device (or, for sbd and watchdog devices, on the cluster) running, a member that may run the device lacks its agent (/usr/sbin/fence_…), or (sbd, watchdog) a member cannot run sbd: not under systemd, no watchdog device, sbd missing, a disk that is not a block device there, sbd already running with another configuration; watchdog (diskless SBD): fewer than three votes, a fence_sbd device on another node (or the reverse), a watchdog timeout not above the QDevice's sync_timeout", body = keel_api::ErrorBody)))]
async fn put_fencing(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(spec): JsonBody<FenceDeviceSpec>,
) -> ApiResult<Response> {
    let upid = blocking(move || fencing::start_put(&node, spec, &p.user)).await?;
    Ok(accepted(upid))
}

#[utoipa::path(delete, path = "/api/v1/cluster/fencing/{node}", tag = "cluster", params(("node" = String, Path)),
    responses((status = 204), (status = 404, description = "No fence device for the node", body = keel_api::ErrorBody),
        (status = 409, description = "A fenceadd or fencetest task of the node is running", body = keel_api::ErrorBody)))]
async fn delete_fencing(
    State(node): State<Arc<Node>>,
    Path(target): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || fencing::delete(&node, &target)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FenceTestQuery {
    /// `reboot` (default) or `off`.
    #[serde(default)]
    pub action: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/cluster/fencing/{node}/test", tag = "cluster", params(("node" = String, Path), FenceTestQuery),
    responses((status = 202, body = TaskRef), (status = 409, description = "not clustered, the node answering, a node without a fence device, or an off test of a node fenced by its watchdog (it can only reset)", body = keel_api::ErrorBody)))]
async fn test_fencing(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(target): Path<String>,
    Query(q): Query<FenceTestQuery>,
) -> ApiResult<Response> {
    let action = q.action.unwrap_or_else(|| "reboot".into());
    if action != "reboot" && action != "off" {
        return Err(ApiError(Error::validation("action", "use reboot or off")));
    }
    let upid = blocking(move || fencing::start_test(&node, target, action, &p.user)).await?;
    Ok(accepted(upid))
}

/// VMs of every member, from the config store (this node's replica).
#[utoipa::path(get, path = "/api/v1/cluster/resources", tag = "cluster",
    responses((status = 200, body = [keel_api::cluster::ClusterResource]), (status = 503, body = keel_api::ErrorBody)))]
async fn resources(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<ClusterResource>>> {
    Ok(Json(store_api::resources(&node).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConfigListQuery {
    /// Only keys starting with this prefix.
    #[serde(default)]
    pub prefix: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/cluster/config", tag = "cluster", params(ConfigListQuery),
    responses((status = 200, body = [keel_api::cluster::ConfigEntry])))]
async fn config_list(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ConfigListQuery>,
) -> ApiResult<Json<Vec<ConfigEntry>>> {
    Ok(Json(
        store_api::list(&node, &p, q.prefix.as_deref().unwrap_or("")).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    responses((status = 200, body = keel_api::cluster::ConfigEntry), (status = 404, body = keel_api::ErrorBody)))]
async fn config_get(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(key): Path<String>,
) -> ApiResult<Json<ConfigEntry>> {
    Ok(Json(store_api::get(&node, &p, &key).await?))
}

#[utoipa::path(put, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    request_body = keel_api::cluster::ConfigPut,
    responses((status = 200, body = keel_api::cluster::ConfigEntry), (status = 409, body = keel_api::ErrorBody)))]
async fn config_put(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    JsonBody(req): JsonBody<ConfigPut>,
) -> ApiResult<Json<ConfigEntry>> {
    Ok(Json(store_api::put(&node, key, req).await?))
}

#[utoipa::path(delete, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    responses((status = 204), (status = 404, body = keel_api::ErrorBody)))]
async fn config_delete(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    store_api::delete(&node, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/cluster/vip", tag = "cluster",
    responses((status = 200, description = "The floating management address (address null: none configured)", body = VipStatus)))]
async fn get_vip(State(node): State<Arc<Node>>) -> ApiResult<Json<VipStatus>> {
    Ok(Json(blocking(move || vip::get(&node)).await?))
}

#[utoipa::path(put, path = "/api/v1/cluster/vip", tag = "cluster", request_body = VipSet,
    responses((status = 200, description = "Set (Pacemaker starts it on a node within seconds)", body = VipStatus),
        (status = 400, description = "Not ADDRESS/PREFIX, a member's own address, or on no network of this node", body = keel_api::ErrorBody),
        (status = 409, description = "Not in a cluster", body = keel_api::ErrorBody)))]
async fn put_vip(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<VipSet>,
) -> ApiResult<Json<VipStatus>> {
    Ok(Json(blocking(move || vip::set(&node, &req.address)).await?))
}

#[utoipa::path(delete, path = "/api/v1/cluster/vip", tag = "cluster",
    responses((status = 204), (status = 404, description = "None configured", body = keel_api::ErrorBody), (status = 409, description = "Not in a cluster", body = keel_api::ErrorBody)))]
async fn delete_vip(State(node): State<Arc<Node>>) -> ApiResult<StatusCode> {
    blocking(move || vip::remove(&node)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/cluster/qdevice", tag = "cluster",
    responses((status = 200, description = "The QDevice (configured false: none, or not in a cluster)", body = QdeviceStatus)))]
async fn get_qdevice(State(node): State<Arc<Node>>) -> ApiResult<Json<QdeviceStatus>> {
    Ok(Json(blocking(move || qdevice::get(&node)).await?))
}

#[utoipa::path(post, path = "/api/v1/cluster/qdevice", tag = "cluster", request_body = QdeviceAdd,
    responses((status = 202, description = "Task qdeviceadd: certificates and corosync.conf on every member, reload, corosync-qdevice started, its vote counted", body = TaskRef),
        (status = 400, description = "Bad host, port, algorithm or certificate", body = keel_api::ErrorBody),
        (status = 409, description = "Not in a cluster, not two nodes, a member offline, or a QDevice already configured", body = keel_api::ErrorBody)))]
async fn add_qdevice(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<QdeviceAdd>,
) -> ApiResult<Response> {
    let upid = blocking(move || qdevice::start_add(&node, req, &p.user)).await?;
    Ok(accepted(upid))
}

#[utoipa::path(delete, path = "/api/v1/cluster/qdevice", tag = "cluster",
    responses((status = 202, description = "Task qdeviceremove: corosync-qdevice stopped, corosync.conf without it (two_node back) on every member, reload", body = TaskRef),
        (status = 404, description = "No QDevice configured", body = keel_api::ErrorBody),
        (status = 409, description = "Not in a cluster, or nodes fenced through their watchdogs (diskless SBD) need the QDevice's vote", body = keel_api::ErrorBody)))]
async fn remove_qdevice(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Response> {
    let upid = blocking(move || qdevice::start_remove(&node, &p.user)).await?;
    Ok(accepted(upid))
}
