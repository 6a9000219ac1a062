//! `GET /nodes/{node}/metrics` and `GET /nodes/{node}/vms/{vmid}/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use keel_api::metrics::{MetricsRange, MetricsSeries};
use keel_api::ErrorBody;
use serde::Deserialize;
use utoipa::IntoParams;

use super::store;
use crate::http::{blocking, check_node, ApiResult, Path, Query};
use crate::{vms, Node};

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/nodes/{node}/metrics", get(node_metrics))
        .route("/api/v1/nodes/{node}/vms/{vmid}/metrics", get(vm_metrics))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// `hour` (default), `day`, `week` or `month`.
    #[param(value_type = Option<MetricsRange>)]
    pub range: Option<String>,
}

fn range_of(q: &RangeQuery) -> ApiResult<MetricsRange> {
    match q.range.as_deref() {
        None => Ok(MetricsRange::Hour),
        Some(r) => Ok(MetricsRange::parse(r).map_err(crate::error::Error::from)?),
    }
}

/// The node's CPU, memory, disk and network I/O over a range, oldest point first.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/metrics", tag = "nodes",
    params(("node" = String, Path), RangeQuery),
    responses((status = 200, body = MetricsSeries), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn node_metrics(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<MetricsSeries>> {
    check_node(&node, &name)?;
    let range = range_of(&q)?;
    Ok(Json(
        blocking(move || super::read(&node, store::NODE, range)).await?,
    ))
}

/// A VM's CPU, memory, disk and network I/O over a range, oldest point first (points only
/// while it ran).
#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}/metrics", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path), RangeQuery),
    responses((status = 200, body = MetricsSeries), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn vm_metrics(
    State(node): State<Arc<Node>>,
    Path((name, vmid)): Path<(String, u32)>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<MetricsSeries>> {
    check_node(&node, &name)?;
    let range = range_of(&q)?;
    Ok(Json(
        blocking(move || {
            vms::find(&node, vmid)?;
            super::read(&node, &store::vm_series(vmid), range)
        })
        .await?,
    ))
}
