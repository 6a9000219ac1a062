//! Joining: one-time join tokens, the member side (`POST /api/v1/cluster/join`: add the joiner
//! to corosync.conf, push it to every member, `corosync-cfgtool -R`, sign its CSR) and the
//! joiner side (`keel join`: contact a member pinned to its fingerprint, install what it sent).

use std::sync::Arc;

use clusterd::form::{self, MemberRecord};
use keel_api::cluster::{
    normalize_fingerprint, ClusterNode, JoinAuth, JoinRequest, JoinResponse, JoinToken, LocalJoin,
};
use rusqlite::params;
use sha2::{Digest, Sha256};

use super::init::source_addr_for;
use super::peer::{apply_peer_update, push_to_members, PeerUpdate};
use super::store_api::replace_access_from_store;
use super::{clusterd_svc, ClusterState, TaskProgress};
use crate::cluster_net;
use crate::db::now;
use crate::error::{Error, Result};
use crate::tasks::{self, TaskHandle};
use crate::Node;

// ------------------------------------------------------------------ join tokens

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Redeem a join token (exactly once).
fn consume_token(cs: &ClusterState, token: &str, by: &str) -> Result<()> {
    let h = sha256_hex(token);
    let c = cs.db.conn();
    let row: Option<(i64, Option<i64>)> = c
        .query_row(
            "SELECT expires, used FROM cluster_join_tokens WHERE hash=?1",
            params![h],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    match row {
        None => Err(Error::Unauthorized("invalid join token".into())),
        Some((_, Some(_))) => Err(Error::Unauthorized(
            "this join token was already used: create a new one with `keel cluster join-token`"
                .into(),
        )),
        Some((exp, None)) if exp <= now() => Err(Error::Unauthorized(format!(
            "this join token expired {}s ago: create a new one with `keel cluster join-token`",
            now() - exp
        ))),
        Some(_) => {
            let n = c.execute(
                "UPDATE cluster_join_tokens SET used=?2 WHERE hash=?1 AND used IS NULL",
                params![h, now()],
            )?;
            if n != 1 {
                return Err(Error::Unauthorized(
                    "this join token was already used".into(),
                ));
            }
            tracing::info!(joiner = by, "join token redeemed");
            Ok(())
        }
    }
}

/// A one-time join token (stored as its hash) with what the joiner needs to reach this node.
pub(super) fn create_token(cs: &ClusterState, ttl_s: Option<u64>) -> Result<JoinToken> {
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
    let ttl = ttl_s.unwrap_or(cs.token_ttl_s);
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
}

// ------------------------------------------------------------------ join: member side

fn ssh_key_line(key: &str, node: &str) -> String {
    let mut it = key.split_whitespace();
    match (it.next(), it.next()) {
        (Some(t), Some(b)) => format!("{t} {b} keel:{node}"),
        _ => key.to_string(),
    }
}

pub(super) fn member_join(node: &Node, req: JoinRequest) -> Result<JoinResponse> {
    use clusterd::form::read_b64;
    req.validate()?;
    let cs = &node.cluster;
    let r = cs.runner.as_ref();
    let Some(rec) = cs.record()? else {
        return Err(Error::Conflict(format!(
            "{} is not in a cluster: run `keel cluster init` on it first",
            node.cfg.node
        )));
    };
    match &req.auth {
        JoinAuth::Token(t) => consume_token(cs, t, &req.node)?,
        JoinAuth::Password(pw) => {
            let s = node
                .auth
                .login("root", pw)
                .map_err(|_| Error::Unauthorized("wrong root password".into()))?;
            let _ = node.auth.logout(&s.ticket);
        }
    }
    let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
    match form::quorum_checked(r) {
        Ok(q) if q.quorate => {}
        Ok(_) => {
            return Err(Error::Conflict(format!(
                "{} is not quorate: nodes can join only a quorate cluster",
                node.cfg.node
            )))
        }
        Err(e) => {
            return Err(Error::Conflict(format!(
                "{} cannot tell whether it is quorate ({e}): nodes can join only a quorate cluster",
                node.cfg.node
            )))
        }
    }
    let (conf, nodeid) = form::plan_add(&cs.paths, &req.node, &req.links)?;
    let (cert_pem, ca) = form::sign_joiner(&cs.paths, &req.node, &req.links, &req.csr_pem)?;
    let joiner_api = form::api_addr(&req.links[0], req.api_port);
    let mut members = rec.members.clone();
    members.push(MemberRecord {
        name: req.node.clone(),
        nodeid,
        api: joiner_api,
    });
    let kh = form::known_hosts_lines(&req.node, &req.links, &req.ssh_host_keys);
    let update = PeerUpdate {
        corosync_conf: conf.render().map_err(|e| Error::Internal(e.to_string()))?,
        members: members.clone(),
        pin: Some((req.node.clone(), req.links.clone(), kh)),
        unpin: None,
        authorized_key: req
            .root_ssh_key
            .as_ref()
            .map(|k| ssh_key_line(k, &req.node)),
        removed: vec![],
        corosync_authkey_b64: None,
        qdevice: None,
        fence_secrets: None,
        sbd: None,
        fence_agent: None,
    };
    tracing::info!(joiner = %req.node, nodeid, "adding node: updating members");
    let old = form::read_corosync_conf(&cs.paths)?;
    if let Err(e) = push_to_members(node, &rec, &update) {
        // put back what the others got
        let back = PeerUpdate {
            corosync_conf: old.render().map_err(|e| Error::Internal(e.to_string()))?,
            members: rec.members.clone(),
            pin: None,
            unpin: Some((req.node.clone(), req.links.clone())),
            authorized_key: None,
            removed: vec![],
            corosync_authkey_b64: None,
            qdevice: None,
            fence_secrets: None,
            sbd: None,
            fence_agent: None,
        };
        let _ = push_to_members(node, &rec, &back);
        return Err(e);
    }
    apply_peer_update(cs, &update)?;
    form::reload_corosync(r)?;
    tracing::info!(joiner = %req.node, "corosync.conf reloaded on every member");
    if let Err(e) = form::apply_properties_for(r, &conf) {
        tracing::warn!(error = %e, "updating cluster properties for the new size");
    }
    let own_key = form::ensure_root_key(&cs.paths, r)?;
    let mut authorized = vec![ssh_key_line(&own_key, &node.cfg.node)];
    let ak =
        std::fs::read_to_string(cs.paths.root_ssh_dir.join("authorized_keys")).unwrap_or_default();
    authorized.extend(
        ak.lines()
            .filter(|l| l.contains(" keel:") && !l.ends_with(&format!(" keel:{}", req.node)))
            .map(str::to_string),
    );
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let known_hosts: Vec<String> = std::fs::read_to_string(&cs.paths.known_hosts)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|h| h.split(',').any(|x| names.contains(&x)))
        })
        .map(str::to_string)
        .collect();
    Ok(JoinResponse {
        cluster_name: rec.name.clone(),
        nodeid,
        corosync_conf: update.corosync_conf.clone(),
        corosync_authkey_b64: read_b64(&cs.paths.corosync_authkey())?,
        pacemaker_authkey_b64: read_b64(&cs.paths.pacemaker_authkey())?,
        cert_pem,
        ca_pem: ca.cert_pem().to_string(),
        ca_key_pem: ca.key_pem(),
        known_hosts,
        authorized_keys: authorized,
        // the devices' BMC passwords: the CIB holds `lrm://`, the joiner's fencer reads files
        fence_secrets: form::read_cib_secrets(&cs.paths)?,
        members: members
            .iter()
            .map(|m| ClusterNode {
                name: m.name.clone(),
                nodeid: m.nodeid,
                links: conf
                    .node(&m.name)
                    .map(|n| n.addrs.clone())
                    .unwrap_or_default(),
                api: m.api.clone(),
            })
            .collect(),
    })
}

// ------------------------------------------------------------------ join: joiner side

fn joiner_checks(node: &Node) -> Result<()> {
    form::check_unclustered(&node.cluster.paths, node.cluster.runner.as_ref())?;
    super::prereq::check(&node.cluster, "joining a cluster")?;
    let doms = node.hv.list_domains()?;
    if !doms.is_empty() {
        let names: Vec<&str> = doms.iter().map(|d| d.name.as_str()).take(5).collect();
        return Err(Error::Conflict(format!(
            "this node holds {} VM(s) ({}): a joining node must be empty (its VM ids could collide with the cluster's); move or delete them first",
            doms.len(),
            names.join(", ")
        )));
    }
    Ok(())
}

/// Refuse at once what cannot join (clustered, holding VMs), then start the `clusterjoin`
/// task; its UPID.
pub(super) fn start_local_join(node: &Arc<Node>, req: LocalJoin, user: &str) -> Result<String> {
    joiner_checks(node)?;
    let n = node.clone();
    tasks::spawn(
        &node.tasks,
        "clusterjoin",
        "cluster",
        user,
        true,
        move |t| {
            let _g = n.cluster.change.lock().unwrap_or_else(|p| p.into_inner());
            joiner_checks(&n)?;
            joiner_join(&n, &req, t)
        },
    )
}

fn host_of(address: &str) -> String {
    // [v6]:port, v6, host:port, host
    if let Some(r) = address.strip_prefix('[') {
        return r.split(']').next().unwrap_or(r).to_string();
    }
    if address.parse::<std::net::IpAddr>().is_ok() {
        return address.to_string();
    }
    address
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(address)
        .to_string()
}

fn with_port(address: &str) -> String {
    let has_port = if address.starts_with('[') {
        address.contains("]:")
    } else {
        address.parse::<std::net::IpAddr>().is_err() && address.contains(':')
    };
    if has_port {
        address.to_string()
    } else {
        form::api_addr(&host_of(address), keel_api::cluster::DEFAULT_API_PORT)
    }
}

fn joiner_join(node: &Node, req: &LocalJoin, t: &TaskHandle) -> Result<()> {
    let cs = &node.cluster;
    let fp = normalize_fingerprint(&req.fingerprint)
        .ok_or_else(|| Error::validation("fingerprint", "not a SHA-256 fingerprint"))?;
    let addr = with_port(&req.address);
    let host = host_of(&req.address);
    t.log(format!("contacting {addr}, pinned to {fp}"));
    let (client, seen) = cluster_net::pinned_client(&fp)?;
    let rt = tokio::runtime::Handle::current();
    // 1. the pin is checked on a request that carries no secret
    let health = rt.block_on(client.get(format!("https://{addr}/api/v1/health")).send());
    match health {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            return Err(Error::Internal(format!(
                "{addr} answered {} to /api/v1/health: is it a Keel node?",
                r.status()
            )))
        }
        Err(e) => {
            let presented = seen.lock().ok().and_then(|s| s.clone());
            return Err(match presented {
                Some(p) if p != fp => Error::Conflict(format!(
                    "wrong fingerprint: {addr} presented certificate {p}, expected {fp}; nothing was sent. Check the fingerprint printed by `keel cluster init` (or in the member's hostd.fingerprint)"
                )),
                _ => Error::Internal(format!(
                    "cannot reach {addr}: {}",
                    cluster_net::error_chain(&e)
                )),
            });
        }
    }
    t.log("member certificate matches the fingerprint");
    let link0 = match &req.link0 {
        Some(a) => a.clone(),
        None => source_addr_for(cs.runner.as_ref(), &host).ok_or_else(|| {
            Error::validation(
                "link0",
                format!("cannot tell the local address that reaches {host}: give link0"),
            )
        })?,
    };
    let mut links = vec![link0.clone()];
    links.extend(req.link1.clone());
    let id = clusterd::ca::NodeIdentity {
        name: node.cfg.node.clone(),
        dns: vec!["localhost".into()],
        addrs: links.iter().filter_map(|a| a.parse().ok()).collect(),
    };
    let (csr_pem, key_pem) =
        clusterd::ca::node_csr(&id).map_err(|e| Error::Internal(e.to_string()))?;
    let root_key = form::ensure_root_key(&cs.paths, cs.runner.as_ref())?;
    let jr = JoinRequest {
        auth: req.auth.clone(),
        node: node.cfg.node.clone(),
        links: links.clone(),
        ssh_host_keys: form::ssh_host_keys(&cs.paths),
        root_ssh_key: Some(root_key),
        csr_pem,
        api_port: cs.api_port,
    };
    jr.validate()?;
    t.log(format!(
        "asking {addr} to add {} with links {links:?}",
        jr.node
    ));
    t.progress(0.1);
    let resp = rt.block_on(async {
        let r = client
            .post(format!("https://{addr}/api/v1/cluster/join"))
            .json(&jr)
            .send()
            .await
            .map_err(|e| {
                Error::Internal(format!(
                    "join request to {addr}: {}",
                    cluster_net::error_chain(&e)
                ))
            })?;
        if !r.status().is_success() {
            let st = r.status();
            let msg = cluster_net::api_error_message(r).await;
            return Err(match st.as_u16() {
                401 | 403 => Error::Unauthorized(format!("the member refused the join: {msg}")),
                409 => Error::Conflict(format!("the member refused the join: {msg}")),
                400 => Error::BadRequest(format!("the member refused the join: {msg}")),
                _ => Error::Internal(format!("the member failed the join ({st}): {msg}")),
            });
        }
        r.json::<JoinResponse>()
            .await
            .map_err(|e| Error::Internal(format!("join response: {e}")))
    })?;
    t.log(format!(
        "member added {} as nodeid {} to cluster {:?} ({} members)",
        jr.node,
        resp.nodeid,
        resp.cluster_name,
        resp.members.len()
    ));
    t.progress(0.3);
    let members: Vec<MemberRecord> = resp
        .members
        .iter()
        .map(|m| MemberRecord {
            name: m.name.clone(),
            nodeid: m.nodeid,
            api: m.api.clone(),
        })
        .collect();
    for m in &resp.members {
        let lines: Vec<String> = resp
            .known_hosts
            .iter()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|h| h.split(',').any(|x| x == m.name))
            })
            .cloned()
            .collect();
        form::pin_known_hosts(&cs.paths, &m.name, &m.links, &lines)?;
    }
    let cert = form::joiner_install(
        &cs.paths,
        clusterd_svc(cs).as_ref(),
        cs.runner.as_ref(),
        &node.cfg.node,
        &resp,
        &resp.ca_key_pem,
        &key_pem,
        members,
        cs.clusterd_bin.is_some(),
        &TaskProgress(t),
    )?;
    cs.swap_cert(&cert)?;
    t.log(format!(
        "joined; API certificate fingerprint: {}",
        cert.fingerprint
    ));
    replace_access_from_store(node, t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testlab::{self, properties_call, QUORATE, SELF};
    use super::*;
    use keel_runner::{Fake, Reply};

    fn join_request() -> Result<JoinRequest> {
        let (csr_pem, _key) = clusterd::ca::node_csr(&clusterd::ca::NodeIdentity {
            name: "node2".into(),
            dns: vec!["localhost".into()],
            addrs: vec!["192.0.2.2"
                .parse()
                .map_err(|_| Error::Internal("ip".into()))?],
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(JoinRequest {
            auth: JoinAuth::Password("test-password".into()),
            node: "node2".into(),
            links: vec!["192.0.2.2".into()],
            ssh_host_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB== root@node2".into()],
            root_ssh_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC== root@node2".into()),
            csr_pem,
            api_port: 8006,
        })
    }

    /// Member side of a join, in pcs's order: quorate check, the joiner added to corosync.conf
    /// (pushed to the other members — none here — and written here), `corosync-cfgtool -R`,
    /// then the properties for the new size; the answer carries the new corosync.conf.
    #[tokio::test(flavor = "multi_thread")]
    async fn member_side_join_adds_pushes_and_reloads() -> Result<()> {
        let (props, props_xml) = properties_call(2);
        let fake = Fake::new()
            .expect(&["corosync-quorumtool", "-s"], Reply::ok(QUORATE))
            .expect(&["corosync-cfgtool", "-R"], Reply::ok(""))
            .expect_stdin(&props, &props_xml, Reply::ok(""));
        let lab = testlab::clustered(&[(SELF, "192.0.2.1", "192.0.2.1:8006")], fake)?;
        // a fence device's BMC password is in this member's CIB-secrets files: the joiner gets it
        let secrets = form::DeviceSecrets::from([("password".to_string(), "calvin".to_string())]);
        form::write_cib_secrets(&lab.paths, "fence-node1", &secrets)?;
        let (n, req) = (lab.node.clone(), join_request()?);
        let resp = tokio::task::spawn_blocking(move || member_join(&n, req))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        lab.fake.assert_done();
        assert_eq!(resp.nodeid, 2);
        assert_eq!(resp.members.len(), 2);
        assert_eq!(resp.fence_secrets.get("fence-node1"), Some(&secrets));
        assert!(!format!("{resp:?}").contains("calvin"), "{resp:?}");
        let conf = form::read_corosync_conf(&lab.paths)?;
        assert_eq!(conf.node("node2").map(|n| n.nodeid), Some(2));
        assert!(conf.two_node(), "two nodes: two_node on");
        assert_eq!(
            resp.corosync_conf,
            conf.render().map_err(|e| Error::Internal(e.to_string()))?
        );
        let rec = lab
            .node
            .cluster
            .record()?
            .ok_or_else(|| Error::Internal("record".into()))?;
        assert_eq!(rec.members.len(), 2);
        let ak = std::fs::read_to_string(lab.paths.root_ssh_dir.join("authorized_keys"))?;
        assert!(ak.contains("keel:node2"), "{ak}");
        Ok(())
    }

    /// A `corosync-cfgtool -R` that hangs ends the join with an error naming it, not a hung
    /// worker.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_wedged_reload_ends_the_join_with_a_timeout_error() -> Result<()> {
        let fake = Fake::new()
            .expect(&["corosync-quorumtool", "-s"], Reply::ok(QUORATE))
            .expect(&["corosync-cfgtool", "-R"], Reply::Timeout);
        let lab = testlab::clustered(&[(SELF, "192.0.2.1", "192.0.2.1:8006")], fake)?;
        let (n, req) = (lab.node.clone(), join_request()?);
        let r = tokio::task::spawn_blocking(move || member_join(&n, req))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        lab.fake.assert_done();
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains("corosync-cfgtool -R did not finish within 60s and was killed"),
            "{e}"
        );
        Ok(())
    }

    /// Not quorate: refused before anything is changed.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_inquorate_member_refuses_the_join() -> Result<()> {
        let fake = Fake::new().expect(
            &["corosync-quorumtool", "-s"],
            Reply::fail(2, "Cannot initialize QUORUM service"),
        );
        let lab = testlab::clustered(&[(SELF, "192.0.2.1", "192.0.2.1:8006")], fake)?;
        let (n, req) = (lab.node.clone(), join_request()?);
        let r = tokio::task::spawn_blocking(move || member_join(&n, req))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        lab.fake.assert_done();
        assert!(matches!(r, Err(Error::Conflict(_))), "{:?}", r.err());
        assert!(form::read_corosync_conf(&lab.paths)?
            .node("node2")
            .is_none());
        Ok(())
    }

    #[test]
    fn addresses() {
        assert_eq!(host_of("[fd00::1]:8006"), "fd00::1");
        assert_eq!(host_of("fd00::1"), "fd00::1");
        assert_eq!(host_of("node1:8006"), "node1");
        assert_eq!(with_port("fd00::1"), "[fd00::1]:8006");
        assert_eq!(with_port("10.0.0.1"), "10.0.0.1:8006");
        assert_eq!(with_port("[fd00::1]:9000"), "[fd00::1]:9000");
        assert_eq!(with_port("node1:9000"), "node1:9000");
    }
}
