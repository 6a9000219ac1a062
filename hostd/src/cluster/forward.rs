//! Requests for another member: `/api/v1/nodes/{other}/…` forwarded (for the same user, signed
//! as this node, over mutual TLS), console WebSockets relayed, and the check a member applies
//! to a request forwarded to it ([`check_forwarded`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use clusterd::form::MemberRecord;

use crate::auth::Principal;
use crate::cluster_net::{self, Signed, PEER_HEADER};
use crate::db::now;
use crate::error::{Error, Result};
use crate::http::ApiError;
use crate::Node;

/// Header naming the user a forwarded request acts for (with a peer signature).
pub const FORWARDED_USER: &str = "X-Keel-Forwarded-User";

/// Authenticate a request another member forwarded: [`check_member_request`] over method,
/// path and query, the user it acts for and `body` (the digest of the body, buffered by
/// [`forwarded_body`], or [`cluster_net::STREAMED`] for an upload), and a user that exists here.
pub fn check_forwarded(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: &crate::tls::PeerCert,
    method: &str,
    pq: &str,
    body: &str,
) -> Result<Principal> {
    if !headers.contains_key(PEER_HEADER) {
        return Err(Error::Unauthorized(format!(
            "{FORWARDED_USER} needs {PEER_HEADER}"
        )));
    }
    let user = forwarded_user(headers);
    let signed = Signed {
        method,
        path: pq,
        user: &user,
        body,
    };
    check_member_request(node, headers, peer_cert, &signed)?;
    if !node.auth.user_exists(&user)? {
        return Err(Error::Forbidden(format!(
            "user {user:?} does not exist in the cluster (as seen by {})",
            node.cfg.node
        )));
    }
    Ok(Principal { user, csrf: None })
}

fn forwarded_user(headers: &HeaderMap) -> String {
    headers
        .get(FORWARDED_USER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The one check of a request from another member, forwarded or to a peer endpoint: this
/// node's cluster key, its current member list and the names removed from the cluster, then
/// [`verify_member_request`] with this process's nonce cache. Returns the sender.
pub fn check_member_request(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: &crate::tls::PeerCert,
    signed: &Signed,
) -> Result<String> {
    let key = node.cluster.authkey().map_err(|_| {
        Error::Unauthorized("member request, but this node is not in a cluster".into())
    })?;
    let rec = node.cluster.record()?.ok_or_else(|| {
        Error::Unauthorized("member request, but this node is not in a cluster".into())
    })?;
    let members: Vec<&str> = rec.members.iter().map(|m| m.name.as_str()).collect();
    verify_member_request(
        &Trust {
            key: &key,
            members: &members,
            removed: &rec.removed,
            nonces: cluster_net::seen_nonces(),
        },
        headers,
        peer_cert,
        signed,
        now(),
    )
}

/// What a member checks another member's request against.
pub struct Trust<'a> {
    /// The cluster key (the corosync authkey, as installed now).
    pub key: &'a [u8],
    /// The current members' names.
    pub members: &'a [&'a str],
    /// Names removed from the cluster (their certificates are refused).
    pub removed: &'a [String],
    pub nonces: &'a cluster_net::NonceCache,
}

/// The part of [`check_member_request`] that needs no node state: the peer signature keyed by
/// the cluster key over `signed` at time `now`; a signer that is a current member and not
/// removed; the connection's CA-verified client certificate issued for that signer (mutual
/// TLS); a nonce not seen before (else 401 "replayed peer request"). Returns the signer.
pub fn verify_member_request(
    t: &Trust,
    headers: &HeaderMap,
    peer_cert: &crate::tls::PeerCert,
    signed: &Signed,
    now: i64,
) -> Result<String> {
    // revocation, right after the handshake: a certificate issued for a removed node (still
    // signed by the cluster CA) is refused whatever the request says
    for r in t.removed {
        if !t.members.contains(&r.as_str()) && peer_cert.check_node(r).is_ok() {
            return Err(removed(r));
        }
    }
    let h = headers
        .get(PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Unauthorized(format!("{PEER_HEADER} header required")))?;
    let sig = cluster_net::check_peer_header(t.key, h, now, signed)?;
    let from = sig.node.as_str();
    if !t.members.contains(&from) {
        if t.removed.iter().any(|r| r == from) {
            return Err(removed(from));
        }
        return Err(Error::Unauthorized(format!("{from} is not a member")));
    }
    // mutual TLS: the connection's CA-verified client certificate names the signing member
    peer_cert.check_node(from)?;
    t.nonces.admit(&sig, now)?;
    Ok(sig.node)
}

fn removed(name: &str) -> Error {
    Error::Unauthorized(format!(
        "{name} was removed from the cluster: its certificate and key are no longer accepted"
    ))
}

/// [`verify_member_request`] for a forwarded request (method, path and query, the user in
/// [`FORWARDED_USER`], the body token): the signer and the user.
pub fn verify_forwarded(
    t: &Trust,
    headers: &HeaderMap,
    peer_cert: &crate::tls::PeerCert,
    method: &str,
    pq: &str,
    body: &str,
    now: i64,
) -> Result<(String, String)> {
    let user = forwarded_user(headers);
    let signed = Signed {
        method,
        path: pq,
        user: &user,
        body,
    };
    let from = verify_member_request(t, headers, peer_cert, &signed, now)?;
    Ok((from, user))
}

/// Before [`check_forwarded`] (a request carrying [`FORWARDED_USER`]): the body token its MAC
/// covers. An upload the sender marked [`cluster_net::STREAMED`] keeps its streamed body (only
/// `…/upload` paths may be streamed; the body is protected by mutual TLS to this node's
/// CA-signed certificate); any other body is buffered (at most
/// [`cluster_net::MAX_SIGNED_BODY`]) and digested, and the request goes on with the buffered
/// body. `None` for a request that was not forwarded.
pub async fn forwarded_body(
    req: axum::extract::Request,
) -> Result<(axum::extract::Request, Option<String>)> {
    if !req.headers().contains_key(FORWARDED_USER) {
        return Ok((req, None));
    }
    let streamed = req
        .headers()
        .get(cluster_net::PEER_BODY_HEADER)
        .is_some_and(|v| v.as_bytes() == cluster_net::STREAMED.as_bytes());
    if streamed {
        if !req.uri().path().ends_with("/upload") {
            return Err(Error::BadRequest(format!(
                "{}: only uploads are forwarded with a streamed body",
                cluster_net::PEER_BODY_HEADER
            )));
        }
        return Ok((req, Some(cluster_net::STREAMED.to_string())));
    }
    let (parts, body) = req.into_parts();
    let (bytes, digest) = signed_body(body, "forwarded request body").await?;
    Ok((
        axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes)),
        Some(digest),
    ))
}

/// A body that is signed: read whole (at most [`cluster_net::MAX_SIGNED_BODY`]) and digested.
async fn signed_body(body: axum::body::Body, what: &str) -> Result<(axum::body::Bytes, String)> {
    let bytes = axum::body::to_bytes(body, cluster_net::MAX_SIGNED_BODY)
        .await
        .map_err(|e| {
            Error::BadRequest(format!(
                "{what} over {} bytes or unreadable: {e}",
                cluster_net::MAX_SIGNED_BODY
            ))
        })?;
    let digest = cluster_net::body_digest(&bytes);
    Ok((bytes, digest))
}

/// Middleware (after authentication): `/api/v1/nodes/{other}/…` for another member is sent to
/// that member over CA-verified TLS, signed as this node, acting for the logged-in user; the
/// answer (status, type, body) is streamed back.
pub async fn forward(
    State(node): State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/api/v1/nodes/") else {
        return next.run(req).await;
    };
    let target = rest.split('/').next().unwrap_or("").to_string();
    if target.is_empty() || target == node.cfg.node {
        return next.run(req).await;
    }
    let member = match node.cluster.record() {
        Ok(Some(r)) => r.members.into_iter().find(|m| m.name == target),
        _ => None,
    };
    let Some(member) = member else {
        return next.run(req).await; // the handler answers 404
    };
    match forward_to(&node, &member, req).await {
        Ok(r) => r,
        Err(e) => ApiError(e).into_response(),
    }
}

pub(super) async fn forward_to(
    node: &Node,
    m: &MemberRecord,
    req: axum::extract::Request,
) -> Result<Response> {
    if req.headers().contains_key(FORWARDED_USER) {
        return Err(Error::Conflict(
            "a forwarded request is not forwarded again".into(),
        ));
    }
    let user = req
        .extensions()
        .get::<Principal>()
        .map(|p| p.user.clone())
        .ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
    if req.uri().path().ends_with("/vncwebsocket") {
        return forward_console(node, m, &user, req).await;
    }
    let cs = &node.cluster;
    let key = cs.authkey()?;
    let client = cs.member_client()?;
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default();
    let method = parts.method.to_string();
    let rm = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| Error::BadRequest(format!("method {method}")))?;
    let rb = client
        .request(rm, format!("https://{}{pq}", m.api))
        .header(FORWARDED_USER, &user);
    // An upload is streamed (its body is protected by mutual TLS to the CA-verified member);
    // any other body is bounded: buffered and its digest signed.
    let mut rb = if parts.uri.path().ends_with("/upload") {
        let signed = Signed {
            method: &method,
            path: &pq,
            user: &user,
            body: cluster_net::STREAMED,
        };
        let sig = cluster_net::peer_header(&key, &node.cfg.node, now(), &signed)?;
        rb.header(PEER_HEADER, sig)
            .header(cluster_net::PEER_BODY_HEADER, cluster_net::STREAMED)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()))
    } else {
        let (bytes, digest) = signed_body(body, "request body").await?;
        let signed = Signed {
            method: &method,
            path: &pq,
            user: &user,
            body: &digest,
        };
        let sig = cluster_net::peer_header(&key, &node.cfg.node, now(), &signed)?;
        rb.header(PEER_HEADER, sig).body(bytes)
    };
    // access: the owner applies the token's privilege separation too
    if let Some(t) = parts
        .extensions
        .get::<crate::access::Subject>()
        .and_then(|s| s.token.clone())
    {
        rb = rb.header(crate::access::FORWARDED_TOKEN, t);
    }
    for h in ["content-type", "content-length"] {
        if let Some(v) = parts.headers.get(h).and_then(|v| v.to_str().ok()) {
            rb = rb.header(h, v);
        }
    }
    let r = rb.send().await.map_err(|e| {
        Error::Internal(format!(
            "forwarding to {} at {}: {}",
            m.name,
            m.api,
            cluster_net::error_chain(&e)
        ))
    })?;
    let mut out = Response::builder().status(r.status().as_u16());
    if let Some(ct) = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
    {
        out = out.header("content-type", ct);
    }
    out.body(axum::body::Body::from_stream(r.bytes_stream()))
        .map_err(|e| Error::Internal(format!("forwarded response: {e}")))
}

/// A console WebSocket for a VM on member `m`: relayed, not redirected — the browser keeps
/// talking to the node it logged in on (its session, the certificate it accepted); the owner
/// may not even be reachable from the browser's network. The ticket was issued by the owner
/// (`vncproxy` is forwarded) and is redeemed there, for the same user.
pub(super) async fn forward_console(
    node: &Node,
    m: &MemberRecord,
    user: &str,
    req: axum::extract::Request,
) -> Result<Response> {
    use axum::extract::{FromRequestParts, WebSocketUpgrade};
    let (mut parts, _) = req.into_parts();
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| Error::BadRequest(format!("console: {}", e.body_text())))?;
    let pq = parts
        .uri
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_default();
    let vmid: u32 = parts
        .uri
        .path()
        .rsplit('/')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cs = &node.cluster;
    let empty = cluster_net::body_digest(b"");
    let signed = Signed {
        method: "GET",
        path: &pq,
        user,
        body: &empty,
    };
    let sig = cluster_net::peer_header(&cs.authkey()?, &node.cfg.node, now(), &signed)?;
    let tls = cluster_net::member_tls_config(&cs.ca_pem()?, cs.node_identity())?;
    let headers = [(PEER_HEADER, sig), (FORWARDED_USER, user.to_string())];
    crate::console::forward_ws(ws, tls, &m.name, &m.api, &pq, &headers, vmid).await
}

/// `GET /api/v1/nodes/{m}` of every other member, for `user`, asked all at once (the list costs
/// the slowest member, not the sum over the cluster); members that do not answer within
/// [`MEMBER_INFO_TIMEOUT`] are left out, with a warning. In member order.
pub async fn member_node_infos(node: &Node, user: &str) -> Vec<keel_api::node::NodeInfo> {
    let Ok(Some(rec)) = node.cluster.record() else {
        return vec![];
    };
    let Ok(key) = node.cluster.authkey() else {
        return vec![];
    };
    let Ok(client) = node.cluster.member_client() else {
        return vec![];
    };
    let asks = rec
        .members
        .iter()
        .filter(|m| m.name != node.cfg.node)
        .map(|m| member_node_info(node, &client, &key, m, user));
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// How long [`member_node_infos`] waits for one member.
pub const MEMBER_INFO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn member_node_info(
    node: &Node,
    client: &reqwest::Client,
    key: &[u8],
    m: &MemberRecord,
    user: &str,
) -> Option<keel_api::node::NodeInfo> {
    let empty = cluster_net::body_digest(b"");
    let pq = format!("/api/v1/nodes/{}", m.name);
    let signed = Signed {
        method: "GET",
        path: &pq,
        user,
        body: &empty,
    };
    let sig = cluster_net::peer_header(key, &node.cfg.node, now(), &signed).ok()?;
    let r = client
        .get(format!("https://{}{pq}", m.api))
        .header(PEER_HEADER, sig)
        .header(FORWARDED_USER, user)
        .timeout(MEMBER_INFO_TIMEOUT)
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => match r.json::<keel_api::node::NodeInfo>().await {
            Ok(i) => return Some(i),
            Err(e) => tracing::warn!(member = %m.name, error = %e, "node info"),
        },
        Ok(r) => tracing::warn!(member = %m.name, status = %r.status(), "node info"),
        Err(e) => {
            tracing::warn!(member = %m.name, error = %cluster_net::error_chain(&e), "node info")
        }
    }
    None
}

/// A request without a body to member `member`'s API (`pq`: path and query) for `user`,
/// signed as this node over mutual TLS (the way [`member_node_infos`] asks): the answer's
/// status and body. A member that is unknown or cannot be reached is a 409 naming it.
pub async fn member_request(
    node: &Node,
    member: &str,
    method: &'static str,
    pq: &str,
    user: &str,
) -> Result<(u16, Vec<u8>)> {
    member_request_body(node, member, method, pq, user, None).await
}

/// [`member_request`] with a JSON body (its digest covered by the signature, as a forwarded
/// request's is).
pub async fn member_request_body(
    node: &Node,
    member: &str,
    method: &'static str,
    pq: &str,
    user: &str,
    json: Option<&serde_json::Value>,
) -> Result<(u16, Vec<u8>)> {
    let rec = node
        .cluster
        .record()?
        .ok_or_else(|| Error::Conflict("this node is not in a cluster".into()))?;
    let m = rec
        .members
        .iter()
        .find(|m| m.name == member)
        .ok_or_else(|| Error::Conflict(format!("{member:?} is not a member of this cluster")))?;
    let key = node.cluster.authkey()?;
    let client = node.cluster.member_client()?;
    let bytes = match json {
        Some(v) => serde_json::to_vec(v)
            .map_err(|e| Error::Internal(format!("a request body for {member}: {e}")))?,
        None => Vec::new(),
    };
    let digest = cluster_net::body_digest(&bytes);
    let signed = Signed {
        method,
        path: pq,
        user,
        body: &digest,
    };
    let sig = cluster_net::peer_header(&key, &node.cfg.node, now(), &signed)
        .map_err(|e| Error::Internal(format!("signing a request to {member}: {e}")))?;
    let url = format!("https://{}{pq}", m.api);
    let mut rb = match method {
        "DELETE" => client.delete(&url),
        "POST" => client.post(&url),
        "PUT" => client.put(&url),
        _ => client.get(&url),
    };
    if json.is_some() {
        rb = rb.header("content-type", "application/json").body(bytes);
    }
    let r = rb
        .header(PEER_HEADER, sig)
        .header(FORWARDED_USER, user)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            Error::Conflict(format!(
                "member {member} cannot be reached at {}: {}",
                m.api,
                cluster_net::error_chain(&e)
            ))
        })?;
    let status = r.status().as_u16();
    let body = r
        .bytes()
        .await
        .map_err(|e| Error::Conflict(format!("member {member}: {e}")))?;
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::super::testlab::{self, SELF};
    use super::*;
    use keel_runner::Fake;

    /// Members that take the connection and never answer (a wedged hostd): the node list asks
    /// them all at once, so it costs one [`MEMBER_INFO_TIMEOUT`], not one per member (three
    /// here, fifteen in a 16-node cluster), and leaves them out.
    #[tokio::test(flavor = "multi_thread")]
    async fn node_list_asks_every_member_at_once() -> Result<()> {
        let mut held = vec![];
        let mut apis = vec![];
        for _ in 0..3 {
            // bound and listening: the kernel completes the TCP handshake, nobody answers TLS
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            apis.push(l.local_addr()?.to_string());
            held.push(l);
        }
        let lab = testlab::clustered(
            &[
                (SELF, "192.0.2.1", "127.0.0.1:1"),
                ("n2", "192.0.2.2", &apis[0]),
                ("n3", "192.0.2.3", &apis[1]),
                ("n4", "192.0.2.4", &apis[2]),
            ],
            Fake::new(),
        )?;
        let t = std::time::Instant::now();
        let infos = member_node_infos(&lab.node, "root").await;
        let took = t.elapsed();
        assert!(infos.is_empty(), "silent members answered: {infos:?}");
        assert!(
            took >= MEMBER_INFO_TIMEOUT && took < MEMBER_INFO_TIMEOUT * 2,
            "three silent members cost {took:?}: asked one after the other?"
        );
        drop(held);
        Ok(())
    }
}
