//! Request body limits and security headers, applied to every request before routing.
//!
//! No endpoint buffers an unbounded body. Each request gets a limit from its path:
//! the strictest for the unauthenticated endpoints (login, cluster join, peer calls), 1 MiB
//! for every other JSON endpoint (VM specs are a few KiB), none for the upload endpoint, which
//! streams to disk and checks its own declared size. A `Content-Length` over the limit is
//! answered 413 before a byte of the body is read; a chunked body stops being read at the
//! limit. Unauthenticated bodies are read here (bounded) so their handlers never see more;
//! authenticated ones are only wrapped, so a caller without credentials gets its 401 without
//! the body being read at all. Every 413 is a JSON [`keel_api::ErrorBody`] naming the limit.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::Error;
use crate::http::ApiError;

/// Login: a user name and a password in JSON.
pub const LOGIN_MAX: usize = 4 << 10;
/// A joiner's request: CSR, SSH host keys, links (a few KiB measured; see the tests).
pub const JOIN_MAX: usize = 64 << 10;
/// A member's peer call: corosync.conf and the member list (a few KiB for small clusters).
pub const PEER_MAX: usize = 256 << 10;
/// Any other endpoint (authenticated JSON).
pub const DEFAULT_MAX: usize = 1 << 20;

/// How a request's body is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Streamed by its handler, which enforces its own size (uploads).
    Streamed,
    /// Read here, up to this many bytes, before any handler runs (unauthenticated endpoints).
    Buffered(usize),
    /// Wrapped: the handler reads at most this many bytes.
    Wrapped(usize),
}

/// The limit of a request to `path`.
pub fn limit_for(method: &Method, path: &str) -> Limit {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    // /api/v1/nodes/{node}/storage/{pool}/upload
    if method == Method::POST
        && segs.len() == 8
        && segs[..4] == ["", "api", "v1", "nodes"]
        && segs[5] == "storage"
        && segs[7] == "upload"
    {
        return Limit::Streamed;
    }
    match path {
        "/api/v1/access/ticket" => Limit::Buffered(LOGIN_MAX),
        "/api/v1/cluster/join" => Limit::Buffered(JOIN_MAX),
        p if p.starts_with("/api/v1/cluster/peer/") => Limit::Buffered(PEER_MAX),
        _ => Limit::Wrapped(DEFAULT_MAX),
    }
}

fn human(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The 413 answer for a body over `limit` bytes on `path`.
pub fn too_large(path: &str, limit: usize) -> Response {
    ApiError(Error::TooLarge(format!(
        "request body too large: {path} accepts at most {} ({limit} bytes)",
        human(limit)
    )))
    .into_response()
}

/// Middleware: enforce [`limit_for`] on every request.
pub async fn enforce(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let limit = limit_for(req.method(), &path);
    let max = match limit {
        Limit::Streamed => return next.run(req).await,
        Limit::Buffered(n) | Limit::Wrapped(n) => n,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        // Answer without reading; hyper closes the connection instead of draining the body.
        let mut r = too_large(&path, max);
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let (parts, body) = req.into_parts();
    let body = match limit {
        Limit::Buffered(_) => match read_bounded(body, max).await {
            Ok(b) => Body::from(b),
            Err(ReadError::TooLarge) => {
                let mut r = too_large(&path, max);
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
            Err(ReadError::Io(e)) => {
                return ApiError(Error::BadRequest(format!("cannot read the body: {e}")))
                    .into_response()
            }
        },
        _ => Body::new(http_body_util::Limited::new(body, max)),
    };
    let resp = next.run(Request::from_parts(parts, body)).await;
    // An extractor that hit the wrapped limit answers 413 without knowing the limit (axum's
    // own is plain text): answer ours, which names it.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(&path, max);
    }
    resp
}

enum ReadError {
    TooLarge,
    Io(String),
}

/// Read at most `max` bytes of `body`; stop (without reading further) past it.
async fn read_bounded(body: Body, max: usize) -> Result<Bytes, ReadError> {
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Io(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// The Content-Security-Policy of every response: the UI's scripts, styles, images and its
/// console WebSocket come from this origin only; no framing, no plugins, no foreign forms.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Middleware: security headers on every response (UI and API); `no-store` on the API.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A request body that goes silent for longer than the node's `client_idle_timeout_s` fails
/// to read (the handler answers 400 and the connection is closed): a client that opens many
/// connections and drips bytes into them cannot hold the daemon's connections and buffers
/// indefinitely. An upload that keeps sending is never cut: the clock restarts with each chunk.
pub async fn body_idle_timeout(
    axum::extract::State(idle): axum::extract::State<std::time::Duration>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(tower_http::timeout::TimeoutBody::new(idle, body));
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_by_path() {
        let p = Method::POST;
        assert_eq!(
            limit_for(&p, "/api/v1/access/ticket"),
            Limit::Buffered(LOGIN_MAX)
        );
        assert_eq!(
            limit_for(&p, "/api/v1/cluster/join"),
            Limit::Buffered(JOIN_MAX)
        );
        assert_eq!(
            limit_for(&p, "/api/v1/cluster/peer/update"),
            Limit::Buffered(PEER_MAX)
        );
        assert_eq!(
            limit_for(&p, "/api/v1/nodes/n1/storage/local/upload"),
            Limit::Streamed
        );
        // only the upload endpoint itself streams
        for path in [
            "/api/v1/nodes/n1/storage/local/content",
            "/api/v1/nodes/n1/storage/upload/upload/x",
            "/api/v1/nodes/n1/vms",
            "/api/v1/access/password",
            "/",
        ] {
            assert_eq!(limit_for(&p, path), Limit::Wrapped(DEFAULT_MAX), "{path}");
        }
        assert_eq!(
            limit_for(&Method::GET, "/api/v1/nodes/n1/storage/local/upload"),
            Limit::Wrapped(DEFAULT_MAX)
        );
        assert_eq!(human(LOGIN_MAX), "4 KiB");
        assert_eq!(human(DEFAULT_MAX), "1 MiB");
        assert_eq!(human(1000), "1000 bytes");
    }

    /// A member's peer update (corosync.conf, the member list, SSH pins, a root key — the
    /// fields of `cluster::PeerUpdate`) for a 64-node cluster with two IPv6 links per node
    /// stays well below [`PEER_MAX`].
    #[test]
    fn peer_update_of_a_large_cluster_fits_its_limit() -> Result<(), Box<dyn std::error::Error>> {
        use clusterd::corosync_conf::{ConfNode, CorosyncConf, LatencyClass};
        let node = |i: u32| ConfNode {
            nodeid: i,
            name: format!("node-with-a-long-name-{i:02}"),
            addrs: vec![
                format!("fd00:1234:5678:9abc:def0:1234:5678:{i:x}"),
                format!("fd00:1234:5678:9abc:def0:4321:8765:{i:x}"),
            ],
        };
        let mut conf = CorosyncConf::new("a-cluster-name", node(1), LatencyClass::Lan);
        for i in 2..=64 {
            conf.add_node(node(i))?;
        }
        let text = conf.render()?;
        let rsa = format!("ssh-rsa {} root@n", "A".repeat(716));
        let members: Vec<serde_json::Value> = (1..=64)
            .map(|i| {
                serde_json::json!({"name": format!("node-with-a-long-name-{i:02}"), "nodeid": i,
                    "api": format!("[fd00:1234:5678:9abc:def0:1234:5678:{i:x}]:8006")})
            })
            .collect();
        let update = serde_json::json!({
            "corosync_conf": text,
            "members": members,
            "pin": ["node-with-a-long-name-64", ["fd00::1", "fd00::2"], [rsa.clone(), rsa.clone(), rsa.clone()]],
            "authorized_key": rsa,
        });
        let n = serde_json::to_vec(&update)?.len();
        eprintln!("peer update of 64 nodes: {n} bytes");
        assert!(
            n * 4 < PEER_MAX,
            "peer update {n} bytes vs limit {PEER_MAX}"
        );
        Ok(())
    }

    /// JSON bodies: whole numbers written with a zero fraction are integers; other fractions,
    /// wrong types and unknown fields are refused naming the field.
    #[test]
    fn json_bodies_take_integral_floats() {
        use keel_api::vm::{AdoptRequest, ShutdownRequest};
        let a: AdoptRequest = crate::http::parse_json(br#"{"name":"d","vmid":970.0}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.vmid, 970);
        let a: AdoptRequest = crate::http::parse_json(br#"{"name":"d","vmid":1e3}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.vmid, 1000);
        let field = |b: &[u8]| match crate::http::parse_json::<AdoptRequest>(b) {
            Err(Error::Validation(f)) => (f.field, f.message),
            other => panic!("{:?}", other.map(|a| a.vmid)),
        };
        assert_eq!(
            field(br#"{"name":"d","vmid":970.5}"#),
            (
                "vmid".to_string(),
                "invalid type: floating point `970.5`, expected u32".to_string()
            )
        );
        assert_eq!(field(br#"{"name":"d","vmid":-1.0}"#).0, "vmid");
        assert_eq!(field(br#"{"name":"d""#).0, "body");
        let s: ShutdownRequest =
            crate::http::parse_json(br#"{"timeout_s":60.0}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.timeout_s, Some(60));
    }

    /// The unauthenticated limits fit what the cluster really sends: a join request with an
    /// RSA-4096 SSH host key, every other key type, a root key and a CSR is a few KiB, far
    /// below [`JOIN_MAX`].
    #[test]
    fn join_payload_fits_its_limit() -> Result<(), Box<dyn std::error::Error>> {
        let ca = clusterd::ca::ClusterCa::generate("c1")?;
        let (cert, _) = ca.issue(&clusterd::ca::NodeIdentity {
            name: "node-with-a-long-name-01".into(),
            dns: vec!["node-with-a-long-name-01.example.org".into()],
            addrs: vec![std::net::IpAddr::from([10, 0, 0, 1])],
        })?;
        let rsa = format!("ssh-rsa {} root@n", "A".repeat(716));
        let req = serde_json::json!({
            "auth": {"token": "x".repeat(64)},
            "node": "node-with-a-long-name-01",
            "links": ["10.0.0.1", "fd00::1"],
            "ssh_host_keys": [rsa.clone(), format!("ssh-ed25519 {} root@n", "A".repeat(68)),
                format!("ecdsa-sha2-nistp256 {} root@n", "A".repeat(180))],
            "root_ssh_key": rsa,
            // a CSR is smaller than a certificate; use the certificate as an upper bound
            "csr_pem": cert,
            "api_port": 8006,
        });
        let n = serde_json::to_vec(&req)?.len();
        eprintln!("join request: {n} bytes");
        assert!(
            n * 8 < JOIN_MAX,
            "join request {n} bytes vs limit {JOIN_MAX}"
        );
        Ok(())
    }
}
