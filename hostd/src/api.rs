//! The HTTP API (axum): routes, authentication, JSON errors and the OpenAPI document.
//!
//! Every route is authenticated except `GET /api/v1/health` and `POST /api/v1/access/ticket`.
//! Session tickets come as the `KeelAuthCookie` cookie and need the `CSRFPreventionToken`
//! header on mutating requests; API tokens come as `Authorization: KeelAPIToken u!id=secret`.
//! Long operations answer 202 with the task's UPID.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use keel_api::auth::{LoginRequest, LoginResponse, CSRF_HEADER, TICKET_COOKIE, TOKEN_SCHEME};
use keel_api::network::{NetworkCreate, NetworkInfo, NetworkUpdate, NetworkUser};
use keel_api::node::{Health, NodeInfo};
use keel_api::password::PasswordChange;
use keel_api::storage::{PoolInfo, UploadQuery, VolumeCreate, VolumeInfo};
use keel_api::task::{TaskInfo, TaskListQuery, TaskLogLine, TaskLogQuery, TaskRef};
use keel_api::vm::{
    AdoptRequest, DeleteQuery, NextId, ShutdownRequest, VmConfig, VmSpec, VmStatus, VmSummary,
    VncTicket,
};
use keel_api::{ErrorBody, ErrorDetail};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::openapi::ErrorResponses;

use crate::auth::Principal;
use crate::error::Error;
use crate::http::{
    accepted, blocking, check_node, cookie_value, parse_json, ApiError, ApiResult, JsonBody, Path,
    Query,
};
use crate::hv::Power;
use crate::{network, storage, tasks, vms, Node};

/// Authenticate; enforce CSRF for ticket sessions on mutating requests.
async fn require_auth(State(node): State<Arc<Node>>, req: Request, next: Next) -> Response {
    // a forwarded request's MAC covers its body: buffered (bounded) and digested first
    let (mut req, fwd_body) = match crate::cluster::forwarded_body(req).await {
        Ok(x) => x,
        Err(e) => return crate::http::ApiError(e).into_response(),
    };
    let headers = req.headers().clone();
    let peer_cert = req
        .extensions()
        .get::<crate::tls::PeerCert>()
        .cloned()
        .unwrap_or_default();
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let n = node.clone();
    let method = req.method().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default();
    let r = blocking(move || {
        // a request another member forwarded for its authenticated user
        if headers.contains_key(crate::cluster::FORWARDED_USER) {
            let body = fwd_body.as_deref().unwrap_or("");
            return crate::cluster::check_forwarded(&n, &headers, &peer_cert, &method, &pq, body);
        }
        if let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let Some(tok) = v.strip_prefix(TOKEN_SCHEME).map(str::trim) else {
                return Err(Error::Unauthorized(format!(
                    "unsupported Authorization scheme; use {TOKEN_SCHEME} user!tokenid=secret"
                )));
            };
            return n
                .auth
                .check_token(tok)?
                .ok_or_else(|| Error::Unauthorized("invalid API token".into()));
        }
        let Some(ticket) = cookie_value(&headers, TICKET_COOKIE) else {
            return Err(Error::Unauthorized(
                "authentication required: log in at /api/v1/access/ticket or use an API token"
                    .into(),
            ));
        };
        let p = n.auth.check_ticket(ticket)?.ok_or_else(|| {
            Error::Unauthorized("session expired or invalid: log in again".into())
        })?;
        if mutating {
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let want = p.csrf.as_deref().unwrap_or("");
            if !crate::auth::constant_time_eq(given.as_bytes(), want.as_bytes()) {
                return Err(Error::Forbidden(format!(
                    "missing or wrong {CSRF_HEADER} header"
                )));
            }
        }
        Ok(p)
    })
    .await;
    match r {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

pub fn router(node: Arc<Node>) -> Router {
    let protected = Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/access/ticket", delete(logout))
        .route(
            "/api/v1/access/password",
            axum::routing::put(change_password),
        )
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/nodes/{node}", get(get_node))
        .route("/api/v1/nodes/{node}/vms", get(list_vms).post(create_vm))
        .route("/api/v1/nodes/{node}/vms/adopt", post(adopt_vm))
        .route("/api/v1/nodes/{node}/vms/nextid", get(next_id))
        .route("/api/v1/nodes/{node}/vms/{vmid}/vncproxy", post(vnc_proxy))
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/vncwebsocket",
            get(vnc_websocket),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}",
            get(get_vm).put(update_vm).delete(delete_vm),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/status/current",
            get(vm_status),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/status/{op}",
            post(vm_power),
        )
        .route("/api/v1/nodes/{node}/vms/{vmid}/serial", get(vm_serial))
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/clone",
            post(crate::clones::clone_vm),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/template",
            post(crate::clones::template_vm),
        )
        .route("/api/v1/nodes/{node}/tasks", get(list_tasks))
        .route("/api/v1/nodes/{node}/tasks/{upid}", get(get_task))
        .route("/api/v1/nodes/{node}/tasks/{upid}/log", get(task_log))
        .route(
            "/api/v1/nodes/{node}/storage",
            get(list_pools).post(crate::local_pools::create_route),
        )
        .route(
            "/api/v1/nodes/{node}/storage/{pool}",
            delete(crate::local_pools::delete_route),
        )
        .route(
            "/api/v1/nodes/{node}/storage/{pool}/content",
            get(list_volumes).post(create_volume),
        )
        .route(
            "/api/v1/nodes/{node}/storage/{pool}/content/{volume}",
            delete(delete_volume),
        )
        .route("/api/v1/nodes/{node}/storage/{pool}/upload", post(upload))
        .route(
            "/api/v1/nodes/{node}/networks",
            get(list_networks).post(create_network),
        )
        .route(
            "/api/v1/nodes/{node}/networks/{name}",
            delete(delete_network).put(update_network),
        )
        .route(
            "/api/v1/nodes/{node}/networks/{name}/start",
            post(start_network),
        )
        .route(
            "/api/v1/nodes/{node}/networks/{name}/stop",
            post(stop_network),
        )
        .merge(crate::cluster::protected_routes())
        .merge(crate::snapshots::routes())
        .merge(crate::hostnet::routes())
        .merge(crate::ha::routes::routes())
        .merge(crate::cluster_pools::routes())
        .merge(crate::migration::routes())
        .merge(crate::maintenance::routes())
        .merge(crate::access::handlers::routes())
        .merge(crate::backup::routes())
        .merge(crate::metrics::routes())
        .merge(crate::agent::routes())
        .merge(crate::cloudinit::routes())
        .layer(middleware::from_fn_with_state(
            node.clone(),
            crate::cluster::forward,
        ))
        // access: the route's privilege on its path (crate::access::rules), after authentication
        .layer(middleware::from_fn_with_state(
            node.clone(),
            crate::access::enforce,
        ))
        .layer(middleware::from_fn_with_state(node.clone(), require_auth));
    let ui_dir = node.cfg.ui_dir.clone();
    let app = Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/access/ticket", post(login))
        .merge(crate::cluster::public_routes())
        .merge(crate::cluster_pools::peer_routes())
        .merge(protected)
        .route("/api", axum::routing::any(not_found))
        .route("/api/{*rest}", axum::routing::any(not_found));
    let app = match ui_dir {
        // The web UI from the same origin; unknown paths get index.html (client-side routes).
        Some(dir) => app.fallback_service(
            tower_http::services::ServeDir::new(&dir)
                .fallback(tower_http::services::ServeFile::new(dir.join("index.html"))),
        ),
        None => app.fallback(not_found),
    };
    // Body limits per endpoint (crate::limits) come first; the upload endpoint streams.
    app.layer(axum::extract::DefaultBodyLimit::max(
        crate::limits::DEFAULT_MAX,
    ))
    .layer(middleware::from_fn(crate::limits::enforce))
    .layer(middleware::from_fn_with_state(
        std::time::Duration::from_secs(node.cfg.client_idle_timeout_s.max(1)),
        crate::limits::body_idle_timeout,
    ))
    .layer(middleware::from_fn(crate::limits::security_headers))
    .layer(middleware::from_fn_with_state(
        node.clone(),
        changes_invalidate_status,
    ))
    .with_state(node)
}

/// A mutating request may change what the cluster status shows: the cached one is not served
/// after it (see `cluster::status::StatusCache`).
async fn changes_invalidate_status(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let r = next.run(req).await;
    if mutating {
        node.tasks.note_change();
    }
    r
}

async fn not_found() -> ApiError {
    ApiError(Error::NotFound(
        "no such API path; see /api/v1/openapi.json".into(),
    ))
}

#[utoipa::path(get, path = "/api/v1/health", tag = "access", responses((status = 200, body = Health)))]
async fn health(State(node): State<Arc<Node>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        node: node.cfg.node.clone(),
    })
}

/// Log in. Failed logins are throttled: per source address (429 with `Retry-After` after a few
/// failures, for a doubling window) and per user (failures answered after a growing delay);
/// password checks run on a bounded pool (503 with `Retry-After` when it is full). The body
/// is limited to 4 KiB (413).
#[utoipa::path(post, path = "/api/v1/access/ticket", tag = "access", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait")))))]
async fn login(
    State(node): State<Arc<Node>>,
    ext: axum::http::Extensions,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Response> {
    let s = crate::login::login(&node, crate::login::remote_ip(&ext), req).await?;
    // access: a disabled or expired user gets 401 (after the password, so it tells nothing)
    let n = node.clone();
    let s = blocking(move || {
        crate::access::check_login(&n, &s)?;
        Ok(s)
    })
    .await?;
    let cookie = format!(
        "{TICKET_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        s.ticket,
        crate::auth::TICKET_LIFETIME_S
    );
    Ok(([(header::SET_COOKIE, cookie)], Json(s)).into_response())
}

/// Change a password: your own (give `old_password`), or as root another user's. Ends the
/// user's other sessions on this node.
#[utoipa::path(put, path = "/api/v1/access/password", tag = "access", request_body = PasswordChange,
    responses((status = 204, description = "changed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait")))))]
async fn change_password(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    JsonBody(req): JsonBody<PasswordChange>,
) -> ApiResult<StatusCode> {
    let ticket = cookie_value(&headers, TICKET_COOKIE).map(str::to_string);
    crate::login::change_password(&node, crate::login::remote_ip(&ext), &p, ticket, req).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/access/ticket", tag = "access", responses((status = 204)))]
async fn logout(State(node): State<Arc<Node>>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(t) = cookie_value(&headers, TICKET_COOKIE).map(str::to_string) {
        blocking(move || node.auth.logout(&t)).await?;
    }
    let clear = format!("{TICKET_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

fn node_info(n: &Node) -> Result<NodeInfo, Error> {
    let vms = vms::list(n)?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |k: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let load: Vec<f64> = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    let uptime = std::fs::read_to_string("/proc/uptime")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok(NodeInfo {
        node: n.cfg.node.clone(),
        accel: n.accel.accel_name().into(),
        accel_reason: n.accel.reason.clone(),
        cpus: std::thread::available_parallelism()
            .map(|p| p.get() as u32)
            .unwrap_or(1),
        memory_total: kib("MemTotal:"),
        memory_free: kib("MemAvailable:"),
        uptime_s: uptime as u64,
        loadavg: [
            load.first().copied().unwrap_or(0.0),
            load.get(1).copied().unwrap_or(0.0),
            load.get(2).copied().unwrap_or(0.0),
        ],
        libvirt_version: n.hv.version()?,
        keel_version: env!("CARGO_PKG_VERSION").into(),
        vms_running: vms.iter().filter(|v| v.state.is_active()).count() as u32,
        vms_total: vms.len() as u32,
    })
}

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses((status = 200, body = [NodeInfo])))]
async fn list_nodes(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Vec<NodeInfo>>> {
    let n = node.clone();
    let mut v = vec![blocking(move || node_info(&n)).await?];
    // the other members of a cluster, asked for the same user (unreachable ones are left out)
    v.extend(crate::cluster::member_node_infos(&node, &p.user).await);
    Ok(Json(v))
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}", tag = "nodes", params(("node" = String, Path)), responses((status = 200, body = NodeInfo), (status = 404, body = ErrorBody)))]
async fn get_node(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Json<NodeInfo>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || node_info(&node)).await?))
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms", tag = "vms", params(("node" = String, Path)), responses((status = 200, body = [VmSummary])))]
async fn list_vms(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<VmSummary>>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || vms::list(&node)).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CreateQuery {
    /// Start the VM once created.
    #[serde(default)]
    pub start: bool,
}

#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms", tag = "vms", params(("node" = String, Path), CreateQuery), request_body = VmSpec,
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_vm(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Extension(who): Extension<crate::access::Subject>,
    Extension(acl): Extension<Arc<crate::access::AccessConfig>>,
    Path(name): Path<String>,
    Query(q): Query<CreateQuery>,
    JsonBody(mut spec): JsonBody<VmSpec>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    // access: raw host paths root only, pools need their Datastore privileges (403)
    crate::access::check_vm_spec(&acl, &who, &spec, None)?;
    let upid = blocking(move || {
        vms::check_against_host(&node, &mut spec, None)?;
        // clustered: unique cluster-wide (409 naming the holder; 503 if the store cannot answer)
        vms::reserve_vmid(&node, spec.vmid, &spec.name)?;
        let n = node.clone();
        let vmid = spec.vmid;
        let r = tasks::spawn(
            &node.tasks,
            "vmcreate",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| vms::create(&n, spec, q.start, t),
        );
        if r.is_err() {
            let _ = vms::release_vmid(&node, vmid);
        }
        r
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}", tag = "vms", params(("node" = String, Path), ("vmid" = u32, Path)),
    responses((status = 200, body = VmConfig), (status = 404, body = ErrorBody)))]
async fn get_vm(
    State(node): State<Arc<Node>>,
    Path((name, vmid)): Path<(String, u32)>,
) -> ApiResult<Json<VmConfig>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || vms::config(&node, vmid)).await?))
}

/// Replace a VM's spec. A running VM gets live what can be: virtio disks and NICs attached or
/// detached, vCPUs up to `max_vcpus`, the balloon; the rest is listed as `pending` until the
/// next cold boot, with the reason in the task log (docs/hotplug.md).
#[utoipa::path(put, path = "/api/v1/nodes/{node}/vms/{vmid}", tag = "vms", params(("node" = String, Path), ("vmid" = u32, Path)), request_body = VmSpec,
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_vm(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Extension(who): Extension<crate::access::Subject>,
    Extension(acl): Extension<Arc<crate::access::AccessConfig>>,
    Path((name, vmid)): Path<(String, u32)>,
    JsonBody(mut spec): JsonBody<VmSpec>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        // access: raw host paths root only, pools need their Datastore privileges, except
        // what the VM already has (403)
        let old = vms::config(&node, vmid)?.spec;
        crate::access::check_vm_spec(&acl, &who, &spec, Some(&old))?;
        let row = vms::check_update(&node, vmid, &mut spec)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "vmconfig",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| vms::update(&n, row, spec, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(delete, path = "/api/v1/nodes/{node}/vms/{vmid}", tag = "vms", params(("node" = String, Path), ("vmid" = u32, Path), DeleteQuery),
    responses((status = 202, body = TaskRef), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_vm(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        let row = vms::find(&node, vmid)?;
        crate::ha::refuse_if_ha(&node, vmid, "deleting it")?;
        crate::clones::check_delete(&node, vmid)?;
        if row.state.is_active() {
            return Err(Error::Conflict(format!(
                "VM {vmid} is {}: stop it before deleting",
                row.state.as_str()
            )));
        }
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "vmdelete",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| vms::delete(&n, vmid, q.purge_volumes, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/adopt", tag = "vms", params(("node" = String, Path)), request_body = AdoptRequest,
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn adopt_vm(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<AdoptRequest>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let n = node.clone();
    let upid = blocking(move || {
        // refuse at once (400/404/409) what the task would fail on
        vms::check_adopt(&node, &req)?;
        tasks::spawn(
            &node.tasks,
            "vmadopt",
            &req.vmid.to_string(),
            &p.user,
            true,
            move |t| vms::adopt(&n, &req, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// The lowest free vmid (≥ 100) on this node and, when clustered, reserved nowhere in the
/// cluster.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/nextid", tag = "vms", params(("node" = String, Path)), responses((status = 200, body = NextId)))]
async fn next_id(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Json<NextId>> {
    check_node(&node, &name)?;
    let used: Vec<u32> = blocking(move || {
        let mut used: Vec<u32> = vms::list(&node)?
            .into_iter()
            .filter_map(|v| v.vmid)
            .collect();
        used.extend(vms::reserved_vmids(&node)?);
        Ok(used)
    })
    .await?;
    let vmid = (keel_api::vm::VMID_MIN..)
        .find(|v| !used.contains(v))
        .unwrap_or(keel_api::vm::VMID_MIN);
    Ok(Json(NextId { vmid }))
}

/// A one-time ticket (60 s) to open this VM's console through `vncwebsocket`, with a VNC
/// password valid for this ticket only (set on the running VM; the previous one stops working
/// for new connections).
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/vncproxy", tag = "vms", params(("node" = String, Path), ("vmid" = u32, Path)),
    responses((status = 200, body = VncTicket), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn vnc_proxy(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
) -> ApiResult<Json<VncTicket>> {
    check_node(&node, &name)?;
    let n = node.clone();
    let valid_to = crate::db::now() + crate::console::TICKET_LIFETIME_S;
    // a password for this ticket only, set on the running VNC server
    let password = blocking(move || crate::console::fresh_password(&n, vmid, valid_to)).await?;
    let (ticket, expires) = node.vnc_tickets.issue(vmid, &p.user);
    Ok(Json(VncTicket {
        ticket,
        password,
        expires,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct VncWsQuery {
    /// Ticket from `vncproxy` for this VM.
    pub vncticket: String,
}

/// WebSocket carrying the VM's raw VNC stream (binary frames). Needs a session or token and a
/// `vncticket` issued for this VM to the same user.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}/vncwebsocket", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path), VncWsQuery),
    responses((status = 101, description = "switching to the WebSocket protocol"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn vnc_websocket(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
    Query(q): Query<VncWsQuery>,
    ws: Result<
        axum::extract::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    // a plain GET (no WebSocket handshake) gets a JSON error like every other refusal
    let ws = ws.map_err(|r| {
        ApiError(Error::BadRequest(format!(
            "this endpoint speaks WebSocket only: {}",
            r.body_text()
        )))
    })?;
    if !node.vnc_tickets.redeem(&q.vncticket, vmid, &p.user) {
        return Err(ApiError(Error::Forbidden(format!(
            "invalid, used or expired console ticket for VM {vmid}"
        ))));
    }
    let n = node.clone();
    let port = blocking(move || {
        let row = vms::find(&n, vmid)?;
        let parsed = crate::domain::parse(&n.hv.domain_xml(&row.name, false)?)?;
        parsed
            .vnc_port
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::Conflict(format!("VM {vmid} has no VNC server running")))
    })
    .await?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| {
            Error::Internal(format!(
                "cannot reach VM {vmid}'s VNC server on 127.0.0.1:{port}: {e}"
            ))
        })?;
    Ok(ws
        .protocols(["binary"])
        .on_upgrade(move |socket| crate::console::proxy(socket, tcp, vmid)))
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}/status/current", tag = "vms", params(("node" = String, Path), ("vmid" = u32, Path)),
    responses((status = 200, body = VmStatus), (status = 404, body = ErrorBody)))]
async fn vm_status(
    State(node): State<Arc<Node>>,
    Path((name, vmid)): Path<(String, u32)>,
) -> ApiResult<Json<VmStatus>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || vms::status(&node, vmid)).await?))
}

/// `op` is one of start, shutdown, stop, reboot, reset, suspend, resume. `shutdown` takes an
/// optional JSON body `{ "timeout_s": 60, "force_stop": false }`.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/status/{op}", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path), ("op" = String, Path, description = "start|shutdown|stop|reboot|reset|suspend|resume")),
    request_body(content = Option<ShutdownRequest>, description = "only for shutdown; no body or `null` means the defaults (and is all the other operations take)"),
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn vm_power(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid, op)): Path<(String, u32, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let power = match op.as_str() {
        "start" => Power::Start,
        "shutdown" => Power::Shutdown,
        "stop" => Power::Destroy,
        "reboot" => Power::Reboot,
        "reset" => Power::Reset,
        "suspend" => Power::Suspend,
        "resume" => Power::Resume,
        other => return Err(ApiError(Error::NotFound(format!("unknown operation {other:?}: use start, shutdown, stop, reboot, reset, suspend or resume")))),
    };
    let given = body.trim_ascii();
    // no body, or JSON null (the document's optional body), means the defaults
    let shutdown_req: ShutdownRequest = if given.is_empty() || given == b"null" {
        ShutdownRequest::default()
    } else if power == Power::Shutdown {
        parse_json(given)?
    } else {
        return Err(ApiError(Error::BadRequest(format!("{op} takes no body"))));
    };
    let kind = format!("vm{op}");
    let upid = blocking(move || {
        // Refuse at once what cannot work (404, 409) rather than failing inside the task.
        let row = vms::find(&node, vmid)?;
        if power == Power::Start {
            crate::clones::refuse_template(&row, vmid)?;
        }
        let ok = match power {
            Power::Start => !row.state.is_active(),
            Power::Resume => row.state == keel_api::vm::VmState::Paused,
            _ => row.state.is_active(),
        };
        if !ok {
            return Err(Error::Conflict(format!(
                "VM {vmid} is {}: cannot {op}",
                row.state.as_str()
            )));
        }
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            &kind,
            &vmid.to_string(),
            &p.user,
            true,
            move |t| match power {
                Power::Shutdown => vms::shutdown(&n, vmid, &shutdown_req, t),
                other => vms::power(&n, vmid, other, t),
            },
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SerialQuery {
    /// Byte offset to read from (for following).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub start: u64,
}

/// The guest's serial console output (as logged by virtlogd), from byte `start`.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}/serial", tag = "vms", params(("node" = String, Path), ("vmid" = u32, Path), SerialQuery),
    responses((status = 200, body = String, content_type = "text/plain")))]
async fn vm_serial(
    State(node): State<Arc<Node>>,
    Path((name, vmid)): Path<(String, u32)>,
    Query(q): Query<SerialQuery>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    if q.start > i64::MAX as u64 {
        return Err(ApiError(Error::validation(
            "start",
            format!("start {} is out of range: use 0 to {}", q.start, i64::MAX),
        )));
    }
    let text = blocking(move || {
        vms::find(&node, vmid)?;
        let path = node.cfg.serial_dir().join(format!("{vmid}.log"));
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let from = (q.start as usize).min(data.len());
        Ok((data[from..].to_vec(), data.len()))
    })
    .await?;
    let (bytes, next) = text;
    let headers = [
        (
            header::CONTENT_TYPE,
            "text/plain; charset=utf-8".to_string(),
        ),
        (
            header::HeaderName::from_static("x-keel-serial-next"),
            next.to_string(),
        ),
    ];
    Ok((headers, bytes).into_response())
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/tasks", tag = "tasks", params(("node" = String, Path), TaskListQuery), responses((status = 200, body = [TaskInfo])))]
async fn list_tasks(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<TaskListQuery>,
) -> ApiResult<Json<Vec<TaskInfo>>> {
    check_node(&node, &name)?;
    q.validate().map_err(Error::Validation)?;
    Ok(Json(
        blocking(move || {
            node.tasks
                .list(q.target.as_deref(), q.running, q.limit.unwrap_or(100))
        })
        .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/tasks/{upid}", tag = "tasks", params(("node" = String, Path), ("upid" = String, Path)),
    responses((status = 200, body = TaskInfo), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(node): State<Arc<Node>>,
    Path((name, upid)): Path<(String, String)>,
) -> ApiResult<Json<TaskInfo>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || node.tasks.get(&upid)).await?))
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/tasks/{upid}/log", tag = "tasks", params(("node" = String, Path), ("upid" = String, Path), TaskLogQuery),
    responses((status = 200, body = [TaskLogLine]), (status = 404, body = ErrorBody)))]
async fn task_log(
    State(node): State<Arc<Node>>,
    Path((name, upid)): Path<(String, String)>,
    Query(q): Query<TaskLogQuery>,
) -> ApiResult<Json<Vec<TaskLogLine>>> {
    check_node(&node, &name)?;
    q.validate().map_err(Error::Validation)?;
    Ok(Json(
        blocking(move || node.tasks.log(&upid, q.start, q.limit.unwrap_or(1000))).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/storage", tag = "storage", params(("node" = String, Path)), responses((status = 200, body = [PoolInfo])))]
async fn list_pools(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<PoolInfo>>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || Ok(node.hv.list_pools()?)).await?))
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/storage/{pool}/content", tag = "storage", params(("node" = String, Path), ("pool" = String, Path)),
    responses((status = 200, body = [VolumeInfo]), (status = 404, body = ErrorBody)))]
async fn list_volumes(
    State(node): State<Arc<Node>>,
    Path((name, pool)): Path<(String, String)>,
) -> ApiResult<Json<Vec<VolumeInfo>>> {
    check_node(&node, &name)?;
    Ok(Json(
        blocking(move || {
            // other nodes write into a shared pool: libvirt learns of their files on a refresh
            if crate::ha::is_shared_pool(&node, &pool) {
                if let Err(e) = node.hv.refresh_pool(&pool) {
                    tracing::warn!("refreshing shared pool {pool}: {e}");
                }
            }
            crate::vms::volumes_with_users(&node, &pool)
        })
        .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/nodes/{node}/storage/{pool}/content", tag = "storage", params(("node" = String, Path), ("pool" = String, Path)), request_body = VolumeCreate,
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_volume(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, pool)): Path<(String, String)>,
    JsonBody(req): JsonBody<VolumeCreate>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        storage::check_volume_create(&node, &pool, &req)?;
        let n = node.clone();
        let target = format!("{pool}@{}", req.name);
        tasks::spawn(&node.tasks, "volcreate", &target, &p.user, true, move |t| {
            storage::create_volume(&n, &pool, &req, t)
        })
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(delete, path = "/api/v1/nodes/{node}/storage/{pool}/content/{volume}", tag = "storage",
    params(("node" = String, Path), ("pool" = String, Path), ("volume" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 400, description = "A hidden file (Keel's own), not a volume", body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_volume(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, pool, volume)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        storage::check_volume_delete(&node, &pool, &volume)?;
        let n = node.clone();
        let target = format!("{pool}@{volume}");
        tasks::spawn(&node.tasks, "voldelete", &target, &p.user, true, move |t| {
            storage::delete_volume(&n, &pool, &volume, t)
        })
    })
    .await?;
    Ok(accepted(upid))
}

/// Stream a file into a `dir` pool. The body is the raw file; `size` must be its exact length.
/// Answers once the upload is complete, with the (finished) task.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/storage/{pool}/upload", tag = "storage",
    params(("node" = String, Path), ("pool" = String, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = TaskRef), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn upload(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, pool)): Path<(String, String)>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let cl = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (n, pl, fname) = (node.clone(), pool.clone(), q.filename.clone());
    let checked = blocking(move || {
        let dir = storage::check_upload(&n, &pl, &fname, q.size, cl)?;
        let h = n
            .tasks
            .begin("volupload", &format!("{pl}@{fname}"), &p.user, true)?;
        Ok((dir, h))
    })
    .await;
    let (dir, handle) = match checked {
        Ok(x) => x,
        Err(e) => {
            // Read (and drop) what the client is sending so it sees our answer, not a reset.
            drain(body, 64 << 20).await;
            return Err(e);
        }
    };
    handle.log(format!(
        "receiving {} ({} bytes) into pool {pool}",
        q.filename, q.size
    ));
    let mut sink = match storage::UploadSink::new(&dir, &q.filename, q.size) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            handle.finish(&Err(Error::Internal(msg)));
            return Err(ApiError(e));
        }
    };
    let mut stream = body.into_data_stream();
    let mut last = 0.0;
    let result: Result<(), Error> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::BadRequest(format!("upload interrupted: {e}")))?;
            tokio::task::block_in_place(|| sink.write(&chunk))?;
            let prog = sink.written as f64 / q.size as f64;
            if prog - last >= 0.05 {
                handle.progress(prog);
                last = prog;
            }
        }
        let written = sink.written;
        tokio::task::block_in_place(|| sink.commit())?;
        handle.log(format!("received {written} bytes"));
        node.hv.refresh_pool(&pool)?;
        Ok(())
    }
    .await;
    let upid = handle.upid.clone();
    match result {
        Ok(()) => {
            handle.finish(&Ok(()));
            Ok(Json(TaskRef { upid }).into_response())
        }
        Err(e) => {
            handle.finish(&Err(Error::Internal(e.to_string())));
            Err(ApiError(e))
        }
    }
}

/// Discard up to `limit` bytes of a request body.
async fn drain(body: Body, limit: usize) {
    let mut stream = body.into_data_stream();
    let mut seen = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen >= limit {
            break;
        }
    }
}

#[utoipa::path(get, path = "/api/v1/nodes/{node}/networks", tag = "networks", params(("node" = String, Path)), responses((status = 200, body = [NetworkInfo])))]
async fn list_networks(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<NetworkInfo>>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || network::list(&node)).await?))
}

#[utoipa::path(post, path = "/api/v1/nodes/{node}/networks", tag = "networks", params(("node" = String, Path)), request_body = NetworkCreate,
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_network(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<NetworkCreate>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        let xml = network::render(&req, &node.hv.list_networks()?)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "netcreate",
            &req.name,
            &p.user,
            true,
            move |t| network::create(&n, &xml, req.autostart, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(delete, path = "/api/v1/nodes/{node}/networks/{name}", tag = "networks", params(("node" = String, Path), ("name" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_network(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, net)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        network::check_unused(&node, &net, network::Unused::ByAnyVm)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "netdelete",
            &net.clone(),
            &p.user,
            true,
            move |t| network::delete(&n, &net, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(put, path = "/api/v1/nodes/{node}/networks/{name}", tag = "networks", params(("node" = String, Path), ("name" = String, Path)),
    request_body = NetworkUpdate,
    responses((status = 200, description = "The network with its new setting", body = NetworkInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "A host bridge, not a libvirt network", body = ErrorBody)))]
async fn update_network(
    State(node): State<Arc<Node>>,
    Path((name, net)): Path<(String, String)>,
    JsonBody(req): JsonBody<NetworkUpdate>,
) -> ApiResult<Json<NetworkInfo>> {
    check_node(&node, &name)?;
    Ok(Json(
        blocking(move || network::set_autostart(&node, &net, req.autostart)).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/nodes/{node}/networks/{name}/start", tag = "networks", params(("node" = String, Path), ("name" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 404, body = ErrorBody), (status = 409, description = "A host bridge, or the network is already active", body = ErrorBody)))]
async fn start_network(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, net)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        if network::find_libvirt(&node, &net)?.active {
            return Err(Error::Conflict(format!(
                "network {net:?} is already active"
            )));
        }
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "netstart",
            &net.clone(),
            &p.user,
            true,
            move |t| network::start(&n, &net, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(post, path = "/api/v1/nodes/{node}/networks/{name}/stop", tag = "networks", params(("node" = String, Path), ("name" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 404, body = ErrorBody), (status = 409, description = "A host bridge, already inactive, or running VMs have a NIC on it (named)", body = ErrorBody)))]
async fn stop_network(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, net)): Path<(String, String)>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        if !network::check_unused(&node, &net, network::Unused::ByRunningVms)?.active {
            return Err(Error::Conflict(format!(
                "network {net:?} is already inactive"
            )));
        }
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "netstop",
            &net.clone(),
            &p.user,
            true,
            move |t| network::stop(&n, &net, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keel API",
        description = "Keel node API: VMs, tasks, storage, networks, access. Integers may be written with a zero fraction (`970.0`); other fractions are refused where an integer is expected. Request bodies are limited: 4 KiB for the login, 64 KiB for a cluster join, 256 KiB for member calls, 1 MiB elsewhere (413); only uploads stream."
    ),
    modifiers(&ErrorResponses),
    paths(
        health,
        login,
        logout,
        change_password,
        list_nodes,
        get_node,
        list_vms,
        create_vm,
        get_vm,
        update_vm,
        delete_vm,
        adopt_vm,
        next_id,
        vnc_proxy,
        vnc_websocket,
        vm_status,
        vm_power,
        vm_serial,
        list_tasks,
        get_task,
        task_log,
        list_pools,
        list_volumes,
        create_volume,
        delete_volume,
        upload,
        list_networks,
        create_network,
        delete_network,
        update_network,
        start_network,
        stop_network,
        crate::cluster::init,
        crate::cluster::join_token,
        crate::cluster::local_join,
        crate::cluster::join,
        crate::cluster::status,
        crate::cluster::nodes,
        crate::cluster::remove_node,
        crate::cluster::list_fencing,
        crate::cluster::put_fencing,
        crate::cluster::delete_fencing,
        crate::cluster::test_fencing,
        crate::cluster::get_vip,
        crate::cluster::put_vip,
        crate::cluster::delete_vip,
        crate::cluster::get_qdevice,
        crate::cluster::add_qdevice,
        crate::cluster::remove_qdevice,
        crate::cluster::resources,
        crate::cluster::config_list,
        crate::cluster::config_get,
        crate::cluster::config_put,
        crate::cluster::config_delete,
        crate::cluster::verify::cluster_verify,
        crate::clones::clone_vm,
        crate::clones::template_vm,
        openapi_json,
        crate::snapshots::list_snapshots,
        crate::hostnet::list_h,
        crate::hostnet::pending_h,
        crate::hostnet::discard_h,
        crate::hostnet::put_bond_h,
        crate::hostnet::put_vlan_h,
        crate::hostnet::put_bridge_h,
        crate::hostnet::delete_iface_h,
        crate::hostnet::apply_h,
        crate::hostnet::confirm_h,
        crate::ha::routes::set_ha,
        crate::ha::routes::list_ha,
        crate::ha::routes::cleanup_ha,
        crate::ha::routes::what_if,
        crate::ha::routes::list_rules,
        crate::ha::routes::add_rule,
        crate::ha::routes::delete_rule,
        crate::ha::routes::list_shared,
        crate::ha::routes::create_shared,
        crate::ha::routes::delete_shared,
        crate::maintenance::set_maintenance,
        crate::local_pools::create_route,
        crate::local_pools::delete_route,
        crate::cluster_pools::create_pool,
        crate::cluster_pools::list_pools,
        crate::cluster_pools::delete_pool_route,
        crate::cluster_pools::resolve_split_brain_route,
        crate::cluster_pools::extend_pool_route,
        crate::snapshots::create_snapshot,
        crate::snapshots::rollback_snapshot,
        crate::snapshots::delete_snapshot_h,
        crate::snapshots::resize_disk,
        crate::migration::migrate_vm,
        crate::migration::cancel_migration,
        crate::backup::routes::list_targets,
        crate::backup::routes::create_target,
        crate::backup::routes::delete_target,
        crate::backup::routes::list_backups,
        crate::backup::routes::create_backup,
        crate::backup::routes::verify_backup,
        crate::backup::routes::restore_backup,
        crate::backup::routes::prune_backups,
        crate::backup::routes::delete_backup,
        crate::backup::routes::list_jobs,
        crate::backup::routes::create_job,
        crate::backup::routes::get_job,
        crate::backup::routes::update_job,
        crate::backup::routes::delete_job,
        crate::backup::routes::run_job,
        crate::metrics::routes::node_metrics,
        crate::metrics::routes::vm_metrics,
        crate::agent::agent_info,
        crate::cloudinit::seed_route
    ),
    components(schemas(
        keel_api::ha::HaSet,
        keel_api::ha::HaCleanup,
        keel_api::ha::MaintenanceSet,
        keel_api::ha::HaVmStatus,
        keel_api::ha::SharedPoolCreate,
        keel_api::ha::SharedPoolInfo,
        keel_api::storage::LocalPoolCreate,
        keel_api::storage::LocalPoolKind,
        keel_api::cluster_storage::ClusterPoolCreate,
        keel_api::cluster_storage::ClusterPoolKind,
        keel_api::cluster_storage::ClusterPoolNode,
        keel_api::cluster_storage::ClusterPoolStatus,
        keel_api::cluster_storage::IscsiLunSpec,
        keel_api::cluster_storage::IscsiLunInfo,
        keel_api::cluster_storage::SplitBrainResolve,
        keel_api::cluster_storage::ClusterPoolExtend,
        keel_api::ha::WhatIf,
        keel_api::ha::WhatIfVm,
        keel_api::ha::HaRule,
        keel_api::ha::HaRuleKind,
        keel_api::ha::HaRuleNode,
        ErrorBody,
        ErrorDetail,
        VmSpec,
        VmConfig,
        VmStatus,
        VmSummary,
        TaskInfo,
        TaskRef,
        TaskLogLine,
        PoolInfo,
        VolumeInfo,
        NetworkInfo,
        NetworkUser,
        NetworkUpdate,
        NodeInfo,
        LoginResponse,
        keel_api::cluster::ClusterStatus,
        keel_api::cluster::ClusterInit,
        keel_api::cluster::JoinToken,
        keel_api::cluster::FenceDeviceSpec,
        keel_api::cluster::FenceDeviceInfo,
        keel_api::cluster::ClusterResource,
        keel_api::cluster::VipSet,
        keel_api::cluster::VipStatus,
        keel_api::cluster::QdeviceAdd,
        keel_api::cluster::QdeviceStatus,
        keel_api::verify::VerifyReport,
        keel_api::verify::Finding,
        keel_api::verify::Severity,
        keel_api::clone::CloneRequest,
        keel_api::backup::BackupTarget,
        keel_api::backup::BackupTargetCreate,
        keel_api::backup::BackupCreate,
        keel_api::backup::BackupInfo,
        keel_api::backup::BackupKind,
        keel_api::backup::BackupManifest,
        keel_api::backup::BackupDisk,
        keel_api::backup::RestoreRequest,
        keel_api::backup::KeepPolicy,
        keel_api::backup::PruneRequest,
        keel_api::backup::PruneEntry,
        keel_api::backup::PruneMerge,
        keel_api::backup::PruneResult,
        keel_api::backup::BackupJobConfig,
        keel_api::backup::JobMode,
        keel_api::backup::BackupJobRun,
        keel_api::backup::BackupJobNodeRun,
        keel_api::backup::BackupJob,
        keel_api::metrics::MetricsRange,
        keel_api::metrics::MetricsPoint,
        keel_api::metrics::MetricsSeries,
        keel_api::agent::AgentState,
        keel_api::agent::GuestAgentInfo,
        keel_api::agent::GuestOs,
        keel_api::agent::GuestInterface,
        keel_api::agent::GuestAddress,
        keel_api::cloudinit::CloudInitSeed
    ))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "access", responses((status = 200, description = "this document")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    // with the access endpoints, each operation annotated with its permission
    Json(crate::access::api_doc())
}
