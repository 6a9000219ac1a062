//! Member-to-member calls: the membership update every member applies and its push, and the
//! check of a peer request (HMAC keyed by the corosync authkey + mutual TLS).

use axum::http::HeaderMap;
use clusterd::corosync_conf::CorosyncConf;
use clusterd::form::{self, ClusterRecord, MemberRecord};
use serde::{Deserialize, Serialize};

use super::forward::check_member_request;
use super::ClusterState;
use crate::cluster_net::{self, Signed};
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
    /// Names removed from the cluster (added to every member's revocation list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) removed: Vec<String>,
    /// A new corosync authkey (base64) to install: rotated when a node is removed. Sent only
    /// over mutual TLS to CA-verified members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) corosync_authkey_b64: Option<String>,
    /// A QDevice change for this member (see `qdevice.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) qdevice: Option<super::qdevice::QdevicePeer>,
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
    if let Some(q) = &u.qdevice {
        super::qdevice::apply_peer(cs, q)?;
    }
    let new_key = match &u.corosync_authkey_b64 {
        Some(k) => {
            use base64::Engine;
            let k = base64::engine::general_purpose::STANDARD
                .decode(k)
                .map_err(|e| Error::BadRequest(format!("corosync_authkey_b64: {e}")))?;
            Some(k)
        }
        None => None,
    };
    rec.members = u.members.clone();
    for r in &u.removed {
        if !rec.removed.contains(r) {
            rec.removed.push(r.clone());
        }
    }
    // a name that joined again is a member, not removed
    rec.removed
        .retain(|r| !rec.members.iter().any(|m| &m.name == r));
    rec.save(&cs.paths)?;
    if let Some(k) = new_key {
        // the cluster key follows at once (the HMAC reads the file); corosync after the
        // `corosync-cfgtool -R` that ends the change
        form::install_corosync_authkey(&cs.paths, &k)?;
        tracing::info!("corosync authkey rotated (a member was removed)");
    }
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

/// A member's call: the same check as a forwarded request ([`check_member_request`]: current
/// member, not removed, its CA-verified client certificate, HMAC keyed by the cluster key over
/// method, path, no user and the body's digest, a fresh nonce).
fn check_peer(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: &PeerCert,
    path: &str,
    body: &[u8],
) -> Result<String> {
    let digest = cluster_net::body_digest(body);
    let signed = Signed {
        method: "POST",
        path,
        user: "",
        body: &digest,
    };
    check_member_request(node, headers, peer_cert, &signed)
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
