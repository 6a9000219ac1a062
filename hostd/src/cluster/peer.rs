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
    /// A fence device's CIB secrets to write (resource id, parameter → value; empty: remove).
    /// Sent only over mutual TLS to CA-verified members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) fence_secrets: Option<(String, form::DeviceSecrets)>,
    /// An SBD step for this member (see `sbd.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) sbd: Option<super::sbd::SbdPeer>,
    /// A fence device's agent program and its target: a member that may run the device (any
    /// but the target) without the program refuses. Check-only: with it set, a member applies
    /// nothing else of the update (no file is rewritten by a question).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) fence_agent: Option<(String, String)>,
}

impl PeerUpdate {
    /// The members' current files and nothing else to change: the base of an update that
    /// carries one other thing (a QDevice change, a fence device's secrets).
    pub(super) fn unchanged(corosync_conf: String, members: Vec<MemberRecord>) -> PeerUpdate {
        PeerUpdate {
            corosync_conf,
            members,
            pin: None,
            unpin: None,
            authorized_key: None,
            removed: vec![],
            corosync_authkey_b64: None,
            qdevice: None,
            fence_secrets: None,
            sbd: None,
            fence_agent: None,
        }
    }
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
    // a check-only update: nothing else of it is applied
    if let Some((program, target)) = &u.fence_agent {
        return super::fencing::require_agent(cs, &rec.node, program, target);
    }
    form::write_corosync_conf(&cs.paths, &conf)?;
    if let Some(q) = &u.qdevice {
        super::qdevice::apply_peer(cs, q)?;
    }
    if let Some(p) = &u.sbd {
        super::sbd::apply_peer(cs, &rec.node, p)?;
    }
    if let Some((rsc, secrets)) = &u.fence_secrets {
        form::write_cib_secrets(&cs.paths, rsc, secrets)?;
        tracing::info!(device = %rsc, "fence device secrets written by a peer");
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

/// Push `u` to every member but this node (member → member, CA-verified, HMAC-signed), to all
/// of them at once: a membership change costs the slowest member's answer, not the sum over
/// the cluster (15 updates in turn at 16 nodes). Ok: the members updated; an error names every
/// member that was not.
/// Push an update carrying one change (`set` fills it in) over the members' current files to
/// every other member but those in `skip`; nothing is sent when no member is left.
pub(super) fn push_one(
    node: &Node,
    skip: &[&str],
    set: impl FnOnce(&mut PeerUpdate),
) -> Result<()> {
    let cs = &node.cluster;
    let Some(rec) = cs.record()? else {
        return Ok(());
    };
    let mut to = rec.clone();
    to.members
        .retain(|m| m.name != node.cfg.node && !skip.contains(&m.name.as_str()));
    if to.members.is_empty() {
        return Ok(());
    }
    let conf = form::read_corosync_conf(&cs.paths)?;
    let mut u = PeerUpdate::unchanged(
        conf.render().map_err(|e| Error::Internal(e.to_string()))?,
        rec.members,
    );
    set(&mut u);
    push_to_members(node, &to, &u).map(|_| ())
}

pub(super) fn push_to_members(
    node: &Node,
    rec: &ClusterRecord,
    u: &PeerUpdate,
) -> Result<Vec<String>> {
    let cs = &node.cluster;
    let key = cs.authkey()?;
    let client = cs.member_client()?;
    let rt = tokio::runtime::Handle::current();
    let others: Vec<&MemberRecord> = rec
        .members
        .iter()
        .filter(|m| m.name != node.cfg.node)
        .collect();
    let results = rt.block_on(futures_util::future::join_all(others.iter().map(|m| {
        cluster_net::peer_post(
            &client,
            &key,
            &node.cfg.node,
            &m.api,
            "/api/v1/cluster/peer/update",
            u,
        )
    })));
    let mut done = vec![];
    let mut failed = vec![];
    for (m, r) in others.iter().zip(results) {
        match r {
            Ok(()) => done.push(m.name.clone()),
            Err(e) => failed.push(format!("updating member {}: {e}", m.name)),
        }
    }
    if !failed.is_empty() {
        return Err(Error::Internal(failed.join("; ")));
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
    if u.fence_agent.is_none() {
        tracing::info!(from = %from, "cluster membership files updated by a peer");
    }
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

#[cfg(test)]
mod tests {
    use super::super::testlab::{self, SELF};
    use super::*;
    use keel_runner::Fake;

    /// A membership update goes to every other member, not only up to the first that fails:
    /// the error names each member that did not get it (n2 and n4 refuse connections here).
    #[tokio::test(flavor = "multi_thread")]
    async fn push_reaches_every_member_and_names_each_failure() -> Result<()> {
        // ports that were free a moment ago: connections refused at once
        let closed = || -> Result<String> {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            Ok(l.local_addr()?.to_string())
        };
        let (a2, a3, a4) = (closed()?, closed()?, closed()?);
        let lab = testlab::clustered(
            &[
                (SELF, "192.0.2.1", "127.0.0.1:1"),
                ("n2", "192.0.2.2", &a2),
                ("n3", "192.0.2.3", &a3),
                ("n4", "192.0.2.4", &a4),
            ],
            Fake::new(),
        )?;
        let n = lab.node.clone();
        let rec = n
            .cluster
            .record()?
            .ok_or_else(|| Error::Internal("record".into()))?;
        let u = PeerUpdate {
            corosync_conf: form::read_corosync_conf(&lab.paths)?
                .render()
                .map_err(|e| Error::Internal(e.to_string()))?,
            members: rec.members.clone(),
            pin: None,
            unpin: None,
            authorized_key: None,
            removed: vec![],
            corosync_authkey_b64: None,
            qdevice: None,
            fence_secrets: None,
            sbd: None,
            fence_agent: None,
        };
        let r = tokio::task::spawn_blocking(move || push_to_members(&n, &rec, &u))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let msg = match r {
            Ok(done) => panic!("the push succeeded: {done:?}"),
            Err(e) => e.to_string(),
        };
        for m in ["n2", "n3", "n4"] {
            assert!(
                msg.contains(&format!("updating member {m}:")),
                "{m} not named: {msg}"
            );
        }
        assert!(!msg.contains("member n1"), "{msg}");
        Ok(())
    }
}
