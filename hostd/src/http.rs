//! HTTP plumbing shared by every route module: the JSON error response ([`ApiError`]), the
//! extractors whose rejections are JSON 400s ([`Path`], [`Query`], [`JsonBody`]), running a
//! handler's work on the blocking pool ([`blocking`]) and the small response helpers.
//!
//! Must not: know about any particular endpoint (routes live in `api` and `cluster::routes`).

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_api::task::TaskRef;
use keel_api::{ErrorBody, ErrorDetail};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::Node;

/// An [`Error`] on its way to becoming an HTTP response.
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.0.status();
        let field = match &self.0 {
            Error::Validation(f) => Some(f.field.clone()),
            _ => None,
        };
        let message = match &self.0 {
            Error::Validation(f) => f.message.clone(),
            e => e.to_string(),
        };
        if status >= 500 {
            tracing::error!(%code, %message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
                field,
            },
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(body)).into_response();
        if let Some(s) = self.0.retry_after() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        r
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Path parameters whose parse errors are JSON 400s like every other error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters whose parse errors are JSON 400s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<PathRejection> for Error {
    fn from(r: PathRejection) -> Self {
        Error::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for Error {
    fn from(r: QueryRejection) -> Self {
        Error::BadRequest(r.body_text())
    }
}

/// JSON body whose errors name the offending field (`disks[0].bus`) and answer 400.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError(Error::BadRequest(
                "expected a JSON body (Content-Type: application/json)".into(),
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::TooLarge(format!("request body too large: {e}")))
            } else {
                ApiError(Error::BadRequest(format!("cannot read body: {e}")))
            }
        })?;
        parse_json(&bytes).map(JsonBody).map_err(ApiError)
    }
}

/// Parse a JSON body into `T`; errors name the field (`disks[0].bus`). Numbers written with a
/// zero fraction (`970.0`, `1e3`) are integers, as JSON Schema's `integer` has it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let strip = |m: String| match m.find(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m,
    };
    let mut v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::validation("body", strip(e.to_string())))?;
    integral_floats(&mut v);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = strip(e.into_inner().to_string());
        if path == "." || path.is_empty() {
            Error::validation("body", inner)
        } else {
            Error::validation(&path, inner)
        }
    })
}

/// `970.0` → `970` (exactly representable whole numbers only; `970.5` stays and is refused
/// where an integer is expected).
fn integral_floats(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    *v = if f >= 0.0 {
                        Value::from(f as u64)
                    } else {
                        Value::from(f as i64)
                    };
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_floats),
        Value::Object(o) => o.values_mut().for_each(integral_floats),
        _ => {}
    }
}

pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(Error::Internal(format!("worker failed: {e}"))))?
        .map_err(ApiError)
}

pub fn check_node(n: &Node, node: &str) -> ApiResult<()> {
    if node != n.cfg.node {
        return Err(ApiError(Error::NotFound(format!(
            "node {node:?} is not known here (this node is {:?})",
            n.cfg.node
        ))));
    }
    Ok(())
}

pub fn accepted(upid: String) -> Response {
    (StatusCode::ACCEPTED, Json(TaskRef { upid })).into_response()
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
