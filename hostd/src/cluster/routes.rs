//! The `/api/v1/cluster/...` routes. Handlers only extract, call a domain function of a
//! sibling module (on the blocking pool when it touches files, the database or engines) and
//! respond; the OpenAPI annotations are here.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use clusterd::form;
use clusterd::service;
use keel_api::cluster::{
    ClusterInit, ClusterNode, ClusterStatus, FenceDeviceInfo, FenceDeviceSpec, FenceTestResult,
    JoinRequest, JoinResponse, JoinToken, JoinTokenCreate, LocalJoin, NodeRemoveQuery,
};
use keel_api::task::TaskRef;
use rusqlite::params;
use serde::Deserialize;

use super::fencing::{
    agent_kind, cib_stonith_devices, fence_test_key, fence_test_of, lab_shell_device, to_device,
};
use super::init::{default_link0, latency_class, pin_self};
use super::join::{joiner_checks, joiner_join, member_join, sha256_hex};
use super::peer::{apply_peer_update, check_peer, PeerUpdate};
use super::remove::{removal_keeps_quorum, remove_task};
use super::status::cluster_status;
use super::store_api::{check_key, copy_access_to_store, entry, may_read, store_err, store_key};
use super::{clusterd_svc, is_root, TaskProgress};
use crate::auth::Principal;
use crate::db::now;
use crate::error::Error;
use crate::http::{accepted, blocking, ApiError, ApiResult, JsonBody, Path, Query};
use crate::tasks::{self};
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
        .route("/api/v1/cluster/config", get(config_list))
        .route(
            "/api/v1/cluster/config/{*key}",
            get(config_get).put(config_put).delete(config_delete),
        )
}

/// Routes authenticated by their own means (join credentials in the body; peer HMAC).
pub fn public_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/cluster/join", post(join))
        .route("/api/v1/cluster/peer/update", post(peer_update))
        .route("/api/v1/cluster/peer/leave", post(peer_leave))
}

#[utoipa::path(post, path = "/api/v1/cluster/init", tag = "cluster", request_body = ClusterInit,
    responses((status = 202, body = TaskRef), (status = 400, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
async fn init(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<ClusterInit>,
) -> ApiResult<Response> {
    is_root(&p)?;
    req.validate()?;
    let upid = blocking(move || {
        let cs = &node.cluster;
        form::check_unclustered(&cs.paths)?;
        let link0 = match &req.link0 {
            Some(a) => a.clone(),
            None => default_link0(cs)?,
        };
        let mut links = vec![link0.clone()];
        links.extend(req.link1.clone());
        let plan = form::InitPlan {
            cluster_name: req.name.clone(),
            node: node.cfg.node.clone(),
            links,
            token_ms: req.token_ms,
            latency: latency_class(),
            api: form::api_addr(&link0, cs.api_port),
            dns: vec!["localhost".into()],
            extra_ips: vec![
                cs.listen_ip,
                "127.0.0.1"
                    .parse()
                    .map_err(|_| Error::Internal("ip".into()))?,
            ],
            clusterd_installed: cs.clusterd_bin.is_some(),
        };
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "clusterinit",
            "cluster",
            &p.user,
            true,
            move |t| {
                let cs = &n.cluster;
                let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
                let cert = form::init(
                    &cs.paths,
                    clusterd_svc(cs).as_ref(),
                    &plan,
                    &TaskProgress(t),
                )?;
                pin_self(&n, &plan.links)?;
                cs.swap_cert(&cert)?;
                t.log(format!("API certificate fingerprint: {}", cert.fingerprint));
                copy_access_to_store(&n, t)?;
                Ok(())
            },
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(post, path = "/api/v1/cluster/join-token", tag = "cluster", request_body = JoinTokenCreate,
    responses((status = 201, body = JoinToken), (status = 409, body = keel_api::ErrorBody)))]
async fn join_token(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<JoinTokenCreate>,
) -> ApiResult<Response> {
    is_root(&p)?;
    req.validate()?;
    let t = blocking(move || {
        let cs = &node.cluster;
        let Some(rec) = cs.record()? else {
            return Err(Error::Conflict(
                "this node is not in a cluster: run `keel cluster init` first".into(),
            ));
        };
        let address = rec
            .members
            .iter()
            .find(|m| m.name == rec.node)
            .map(|m| m.api.clone());
        let fingerprint = Some(cs.api_fingerprint()?);
        let token = crate::auth::generate_password() + &crate::auth::generate_password();
        let ttl = req.ttl_s.unwrap_or(cs.token_ttl_s);
        let expires_at = now() + ttl as i64;
        cs.db.conn().execute(
            "INSERT INTO cluster_join_tokens(hash,created,expires,used) VALUES (?1,?2,?3,NULL)",
            params![sha256_hex(&token), now(), expires_at],
        )?;
        Ok(JoinToken {
            token,
            expires_at,
            fingerprint,
            address,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

#[utoipa::path(post, path = "/api/v1/cluster/join", tag = "cluster", request_body = JoinRequest,
    responses((status = 200, body = JoinResponse), (status = 401, body = keel_api::ErrorBody), (status = 409, body = keel_api::ErrorBody)))]
async fn join(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<JoinRequest>,
) -> ApiResult<Json<JoinResponse>> {
    Ok(Json(blocking(move || member_join(&node, req)).await?))
}

async fn peer_update(
    State(node): State<Arc<Node>>,
    peer_cert: Option<Extension<crate::tls::PeerCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    blocking(move || {
        let from = check_peer(
            &node,
            &headers,
            peer_cert,
            "/api/v1/cluster/peer/update",
            &body,
        )?;
        let u: PeerUpdate = serde_json::from_slice(&body)
            .map_err(|e| Error::BadRequest(format!("peer update: {e}")))?;
        apply_peer_update(&node.cluster, &u)?;
        tracing::info!(from = %from, "cluster membership files updated by a peer");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn peer_leave(
    State(node): State<Arc<Node>>,
    peer_cert: Option<Extension<crate::tls::PeerCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    blocking(move || {
        let from = check_peer(
            &node,
            &headers,
            peer_cert,
            "/api/v1/cluster/peer/leave",
            &body,
        )?;
        tracing::warn!(by = %from, "this node is being removed from the cluster: stopping the stack");
        form::leave(&node.cluster.paths, node.cluster.svc.as_ref())?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/cluster/local-join", tag = "cluster", request_body = LocalJoin,
    responses((status = 202, body = TaskRef), (status = 409, body = keel_api::ErrorBody)))]
async fn local_join(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(req): JsonBody<LocalJoin>,
) -> ApiResult<Response> {
    is_root(&p)?;
    req.validate()?;
    let upid = blocking(move || {
        joiner_checks(&node)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "clusterjoin",
            "cluster",
            &p.user,
            true,
            move |t| {
                let _g = n.cluster.change.lock().unwrap_or_else(|p| p.into_inner());
                joiner_checks(&n)?;
                joiner_join(&n, &req, t)
            },
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster", responses((status = 200, body = ClusterStatus)))]
async fn status(State(node): State<Arc<Node>>) -> ApiResult<Json<ClusterStatus>> {
    Ok(Json(blocking(move || cluster_status(&node)).await?))
}

#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster", responses((status = 200, body = [ClusterNode])))]
async fn nodes(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<ClusterNode>>> {
    Ok(Json(
        blocking(move || {
            let cs = &node.cluster;
            let Some(rec) = cs.record()? else {
                return Ok(vec![]);
            };
            let conf = form::read_corosync_conf(&cs.paths)?;
            Ok(conf
                .nodes
                .iter()
                .map(|n| ClusterNode {
                    name: n.name.clone(),
                    nodeid: n.nodeid,
                    links: n.addrs.clone(),
                    api: rec
                        .members
                        .iter()
                        .find(|m| m.name == n.name)
                        .map(|m| m.api.clone())
                        .unwrap_or_default(),
                })
                .collect())
        })
        .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/cluster/nodes/{name}", tag = "cluster", params(("name" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 409, body = keel_api::ErrorBody)))]
async fn remove_node(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    Query(q): Query<NodeRemoveQuery>,
) -> ApiResult<Response> {
    is_root(&p)?;
    let upid = blocking(move || {
        let cs = &node.cluster;
        let rec = cs
            .record()?
            .ok_or_else(|| Error::Conflict("this node is not in a cluster".into()))?;
        if name == node.cfg.node {
            return Err(Error::Conflict(format!(
                "{name} is the node answering this request: run `keel node remove {name}` on another member"
            )));
        }
        let conf = form::read_corosync_conf(&cs.paths)?;
        if conf.node(&name).is_none() {
            return Err(Error::NotFound(format!("{name:?} is not a cluster member")));
        }
        let online: Vec<u32> = form::quorum()
            .map(|q| q.members.iter().map(|m| m.nodeid).collect())
            .unwrap_or_default();
        let removed_id = conf.node(&name).map(|n| n.nodeid).unwrap_or(0);
        if let Err(why) = removal_keeps_quorum(conf.nodes.len(), &online, removed_id) {
            if !q.force {
                return Err(Error::Conflict(format!(
                    "removing {name} {why}: the cluster would lose quorum. Bring members back online, or use --force"
                )));
            }
        }
        let n = node.clone();
        let force = q.force;
        let tgt = name.clone();
        tasks::spawn(&node.tasks, "clusterremove", &tgt, &p.user, true, move |t| {
            remove_task(&n, rec, &name, force, t)
        })
    })
    .await?;
    Ok(accepted(upid))
}

#[utoipa::path(get, path = "/api/v1/cluster/fencing", tag = "cluster", responses((status = 200, body = [FenceDeviceInfo])))]
async fn list_fencing(State(node): State<Arc<Node>>) -> ApiResult<Json<Vec<FenceDeviceInfo>>> {
    Ok(Json(
        blocking(move || {
            Ok(cib_stonith_devices()
                .into_iter()
                .filter_map(|(id, ty, target)| {
                    Some(FenceDeviceInfo {
                        id,
                        agent: agent_kind(&ty)?,
                        last_test: fence_test_of(&node.cluster, &target),
                        node: target,
                        params: BTreeMap::new(),
                        secret_keys: vec![],
                    })
                })
                .collect())
        })
        .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/cluster/fencing", tag = "cluster", request_body = FenceDeviceSpec,
    responses((status = 201, body = FenceDeviceInfo), (status = 400, body = keel_api::ErrorBody)))]
async fn put_fencing(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    JsonBody(spec): JsonBody<FenceDeviceSpec>,
) -> ApiResult<Response> {
    is_root(&p)?;
    let info = blocking(move || {
        let cs = &node.cluster;
        if cs.record()?.is_none() {
            return Err(Error::Conflict("this node is not in a cluster".into()));
        }
        let conf = form::read_corosync_conf(&cs.paths)?;
        let names: Vec<String> = conf.nodes.iter().map(|n| n.name.clone()).collect();
        let dev = to_device(&spec)?;
        if let Err(errs) = dev.validate(&names) {
            if let Some(e) = errs.into_iter().next() {
                return Err(Error::Validation(e));
            }
        }
        form::apply_cib(&clusterd::cib::put_fence_device(&dev))?;
        tracing::info!(device = %dev.id, node = %dev.node, agent = dev.agent.program(), "fence device configured");
        Ok(FenceDeviceInfo {
            id: dev.id.clone(),
            node: dev.node.clone(),
            agent: spec.agent,
            params: spec.params.clone(),
            secret_keys: spec.secrets.keys().cloned().collect(),
            last_test: None,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/cluster/fencing/{node}", tag = "cluster", params(("node" = String, Path)), responses((status = 204)))]
async fn delete_fencing(
    State(_node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(target): Path<String>,
) -> ApiResult<StatusCode> {
    is_root(&p)?;
    blocking(move || {
        let devs: Vec<_> = cib_stonith_devices()
            .into_iter()
            .filter(|d| d.2 == target)
            .collect();
        if devs.is_empty() {
            return Err(Error::NotFound(format!("no fence device for {target:?}")));
        }
        for (id, _, t) in devs {
            form::apply_cib(&clusterd::cib::delete_fence_device(&lab_shell_device(
                &id, &t,
            )))?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FenceTestQuery {
    /// `reboot` (default) or `off`.
    #[serde(default)]
    pub action: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/cluster/fencing/{node}/test", tag = "cluster", params(("node" = String, Path), FenceTestQuery),
    responses((status = 202, body = TaskRef), (status = 409, body = keel_api::ErrorBody)))]
async fn test_fencing(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path(target): Path<String>,
    Query(q): Query<FenceTestQuery>,
) -> ApiResult<Response> {
    is_root(&p)?;
    let action = q.action.unwrap_or_else(|| "reboot".into());
    if action != "reboot" && action != "off" {
        return Err(ApiError(Error::validation("action", "use reboot or off")));
    }
    let upid = blocking(move || {
        let cs = &node.cluster;
        if target == node.cfg.node {
            return Err(Error::Conflict(format!(
                "{target} is the node answering this request: test its fencing from another member"
            )));
        }
        if !cib_stonith_devices().iter().any(|d| d.2 == target) {
            return Err(Error::Conflict(format!("{target} has no fence device: add one first")));
        }
        let _ = cs;
        let n = node.clone();
        let tgt = target.clone();
        tasks::spawn(&node.tasks, "fencetest", &tgt, &p.user, true, move |t| {
            let flag = if action == "off" { "--fence" } else { "--reboot" };
            t.log(format!("stonith_admin {flag} {target}: this really fences the node"));
            let t0 = std::time::Instant::now();
            let r = service::run(&["stonith_admin", flag, &target, "--timeout", "120"])
                .map_err(|e| Error::Internal(e.to_string()))?;
            let ok = r.0;
            let msg = if ok {
                format!("fenced ({action}) in {:.1}s", t0.elapsed().as_secs_f64())
            } else {
                format!("failed: {}{}", r.2.trim(), r.1.trim())
            };
            let at = now();
            n.cluster.db.conn().execute(
                "INSERT OR REPLACE INTO cluster_fence_tests(node,at,ok,action,message) VALUES (?1,?2,?3,?4,?5)",
                params![target, at, ok as i64, action, msg],
            )?;
            let rec = FenceTestResult {
                at,
                ok,
                action: action.clone(),
                message: msg.clone(),
            };
            let shared = serde_json::to_value(&rec).map_err(|e| Error::Internal(e.to_string()));
            let put = shared.and_then(|v| {
                let c = clusterd::store::client::Client::local();
                tokio::runtime::Handle::current()
                    .block_on(c.put(&fence_test_key(&target), &v))
                    .map_err(store_err)
            });
            match put {
                Ok(_) => t.log("result recorded in the cluster config store"),
                Err(e) => t.log(format!("result recorded on this node only: {e}")),
            }
            t.log(&msg);
            if ok {
                Ok(())
            } else {
                Err(Error::Internal(format!("fence test of {target} {msg}")))
            }
        })
    })
    .await?;
    Ok(accepted(upid))
}

/// VMs of every member, from the config store (this node's replica).
#[utoipa::path(get, path = "/api/v1/cluster/resources", tag = "cluster",
    responses((status = 200, body = [keel_api::cluster::ClusterResource]), (status = 503, body = keel_api::ErrorBody)))]
async fn resources(
    State(node): State<Arc<Node>>,
) -> ApiResult<Json<Vec<keel_api::cluster::ClusterResource>>> {
    if node.cluster.record()?.is_none() {
        return Err(ApiError(Error::Conflict(
            "this node is not in a cluster: its VMs are at /api/v1/nodes/{node}/vms".into(),
        )));
    }
    let c = clusterd::store::client::Client::local();
    let mut out = vec![];
    for e in c.list("/vms").await.map_err(store_err)? {
        let Some(vmid) = e.key.rsplit('/').next().and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        let s = |k: &str| e.value[k].as_str().unwrap_or("").to_string();
        out.push(keel_api::cluster::ClusterResource {
            kind: "vm".into(),
            id: format!("vm/{vmid}"),
            vmid,
            node: s("node"),
            name: s("name"),
            spec: serde_json::from_value(e.value["spec"].clone()).ok(),
        });
    }
    out.sort_by_key(|r| r.vmid);
    Ok(Json(out))
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
    Extension(p): Extension<Principal>,
    Query(q): Query<ConfigListQuery>,
) -> ApiResult<Json<Vec<keel_api::cluster::ConfigEntry>>> {
    let c = clusterd::store::client::Client::local();
    let v = c
        .list(&store_key(q.prefix.as_deref().unwrap_or("")))
        .await
        .map_err(store_err)?;
    Ok(Json(
        v.into_iter()
            .map(entry)
            .filter(|e| may_read(&p, &e.key))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    responses((status = 200, body = keel_api::cluster::ConfigEntry), (status = 404, body = keel_api::ErrorBody)))]
async fn config_get(
    Extension(p): Extension<Principal>,
    Path(key): Path<String>,
) -> ApiResult<Json<keel_api::cluster::ConfigEntry>> {
    check_key(&key)?;
    if !may_read(&p, &key) {
        return Err(ApiError(Error::Forbidden(
            "access/ (password and token hashes) is readable by root only".into(),
        )));
    }
    let c = clusterd::store::client::Client::local();
    Ok(Json(entry(
        c.get(&store_key(&key)).await.map_err(store_err)?,
    )))
}

#[utoipa::path(put, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    request_body = keel_api::cluster::ConfigPut,
    responses((status = 200, body = keel_api::cluster::ConfigEntry), (status = 409, body = keel_api::ErrorBody)))]
async fn config_put(
    Extension(p): Extension<Principal>,
    Path(key): Path<String>,
    JsonBody(req): JsonBody<keel_api::cluster::ConfigPut>,
) -> ApiResult<Json<keel_api::cluster::ConfigEntry>> {
    is_root(&p)?;
    check_key(&key)?;
    let c = clusterd::store::client::Client::local();
    let version = match req.version {
        None => c.put(&store_key(&key), &req.value).await,
        Some(0) => c.create(&store_key(&key), &req.value).await,
        Some(v) => c.cas(&store_key(&key), &req.value, v).await,
    }
    .map_err(store_err)?;
    Ok(Json(keel_api::cluster::ConfigEntry {
        key,
        version,
        value: req.value,
    }))
}

#[utoipa::path(delete, path = "/api/v1/cluster/config/{key}", tag = "cluster", params(("key" = String, Path)),
    responses((status = 204), (status = 404, body = keel_api::ErrorBody)))]
async fn config_delete(
    Extension(p): Extension<Principal>,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    is_root(&p)?;
    check_key(&key)?;
    let c = clusterd::store::client::Client::local();
    c.delete(&store_key(&key), None).await.map_err(store_err)?;
    Ok(StatusCode::NO_CONTENT)
}
