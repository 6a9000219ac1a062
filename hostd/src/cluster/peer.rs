//! Member-to-member calls: the membership update every member applies and its push, and the
//! check of a peer request (HMAC keyed by the corosync authkey + mutual TLS).

use axum::http::HeaderMap;
use clusterd::corosync_conf::CorosyncConf;
use clusterd::form::{self, ClusterRecord, MemberRecord};
use serde::{Deserialize, Serialize};

use super::ClusterState;
use crate::cluster_net::{self, PEER_HEADER};
use crate::db::now;
use crate::error::{Error, Result};
use crate::tls::PeerCert;
use crate::Node;

/// What a member pushes to the other members on a membership change.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PeerUpdate {
    pub(super) corosync_conf: String,
    pub(super) members: Vec<MemberRecord>,
    /// known_hosts entries to (re)pin: name, addresses, lines.
    #[serde(default)]
    pub(super) pin: Option<(String, Vec<String>, Vec<String>)>,
    /// known_hosts entries to drop: name, addresses.
    #[serde(default)]
    pub(super) unpin: Option<(String, Vec<String>)>,
    #[serde(default)]
    pub(super) authorized_key: Option<String>,
}

pub(super) fn apply_peer_update(cs: &ClusterState, u: &PeerUpdate) -> Result<()> {
    let conf =
        CorosyncConf::parse(&u.corosync_conf).map_err(|e| Error::BadRequest(e.to_string()))?;
    let mut rec = cs
        .record()?
        .ok_or_else(|| Error::Conflict("not a cluster member".into()))?;
    if conf.cluster_name != rec.name {
        return Err(Error::Conflict(format!(
            "update for cluster {:?}, this node is in {:?}",
            conf.cluster_name, rec.name
        )));
    }
    form::write_corosync_conf(&cs.paths, &conf)?;
    rec.members = u.members.clone();
    rec.save(&cs.paths)?;
    if let Some((name, addrs, lines)) = &u.pin {
        form::pin_known_hosts(&cs.paths, name, addrs, lines)?;
    }
    if let Some((name, addrs)) = &u.unpin {
        form::unpin_known_hosts(&cs.paths, name, addrs)?;
    }
    if let Some(k) = &u.authorized_key {
        form::append_unique_line(&cs.paths.root_ssh_dir.join("authorized_keys"), k, 0o600)?;
    }
    Ok(())
}

/// Push `u` to every member but this node (member → member, CA-verified, HMAC-signed).
pub(super) fn push_to_members(
    node: &Node,
    rec: &ClusterRecord,
    u: &PeerUpdate,
) -> Result<Vec<String>> {
    let cs = &node.cluster;
    let key = cs.authkey()?;
    let client = cs.member_client()?;
    let mut done = vec![];
    let rt = tokio::runtime::Handle::current();
    for m in rec.members.iter().filter(|m| m.name != node.cfg.node) {
        rt.block_on(cluster_net::peer_post(
            &client,
            &key,
            &node.cfg.node,
            &m.api,
            "/api/v1/cluster/peer/update",
            u,
        ))
        .map_err(|e| Error::Internal(format!("updating member {}: {e}", m.name)))?;
        done.push(m.name.clone());
    }
    Ok(done)
}

/// A member's call: HMAC keyed by the cluster key, and (mutual TLS) the connection's
/// CA-verified client certificate issued for the signing member.
fn check_peer(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: &PeerCert,
    path: &str,
    body: &[u8],
) -> Result<String> {
    let h = headers
        .get(PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Unauthorized(format!("{PEER_HEADER} header required")))?;
    let key = node
        .cluster
        .authkey()
        .map_err(|_| Error::Conflict("this node is not in a cluster".into()))?;
    let from = cluster_net::check_peer_header(&key, h, now(), "POST", path, body)?;
    peer_cert.check_node(&from)?;
    Ok(from)
}

/// `POST /api/v1/cluster/peer/update` from a member: apply the membership files it sent.
pub(super) fn on_update(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: &PeerCert,
    body: &[u8],
) -> Result<()> {
    let from = check_peer(
        node,
        headers,
        peer_cert,
        "/api/v1/cluster/peer/update",
        body,
    )?;
    let u: PeerUpdate =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("peer update: {e}")))?;
    apply_peer_update(&node.cluster, &u)?;
    tracing::info!(from = %from, "cluster membership files updated by a peer");
    Ok(())
}

/// `POST /api/v1/cluster/peer/leave` from a member removing this node: stop the stack and
/// forget the cluster.
pub(super) fn on_leave(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: &PeerCert,
    body: &[u8],
) -> Result<()> {
    let from = check_peer(node, headers, peer_cert, "/api/v1/cluster/peer/leave", body)?;
    tracing::warn!(by = %from, "this node is being removed from the cluster: stopping the stack");
    form::leave(&node.cluster.paths, node.cluster.svc.as_ref())?;
    Ok(())
}
