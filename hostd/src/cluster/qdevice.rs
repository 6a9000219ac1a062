//! The QDevice of a two-node cluster (`keel cluster qdevice add|remove`): a corosync-qnetd
//! arbiter on a third machine gives the cluster a third vote, so either node alone stays
//! quorate; `two_node` (and its `wait_for_all`) is off while it is configured and back when it
//! leaves (the corosync model decides: [`clusterd::corosync_conf::CorosyncConf::two_node`]).
//!
//! The qnetd host is the operator's (docs/cluster.md, "QDevice"): `corosync-qnetd-certutil -i`
//! there, and the cluster's certificate signed by its CA. Keel takes the CA certificate and
//! the signed PKCS#12 through the API and does the rest on every member, in this order:
//! 1. every member installs the certificates into corosync-qdevice's NSS database
//!    (`corosync-qdevice-net-certutil -i` / `-m`) and writes corosync.conf with the
//!    `quorum.device` section (this node first, then a peer update to the others);
//! 2. one `corosync-cfgtool -R`: every corosync re-reads it;
//! 3. corosync-qdevice starts on every member (the daemon manager: a systemd unit, or the
//!    direct supervisor that also restarts it);
//! 4. the task waits for votequorum to count the QDevice's vote.
//!
//! Removal stops corosync-qdevice everywhere, writes corosync.conf without the device (two_node
//! back at two nodes), reloads and drops the certificates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterd::corosync_conf::{CorosyncConf, QDevice, QDeviceAlgorithm};
use clusterd::crm::QuorumInfo;
use clusterd::form::{self, ClusterRecord};
use clusterd::qdevice as nss;
use clusterd::service::Daemon;
use keel_api::cluster::{QdeviceAdd, QdeviceStatus};
use serde::{Deserialize, Serialize};

use super::peer::{apply_peer_update, push_to_members, PeerUpdate};
use super::ClusterState;
use crate::error::{Error, Result};
use crate::tasks::{self, TaskHandle};
use crate::Node;

/// How long `add` waits for votequorum to count the QDevice's vote.
pub const VOTE_WAIT: Duration = Duration::from_secs(60);

/// What a member does with a QDevice change pushed to it (after writing corosync.conf).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum QdevicePeer {
    /// Make the NSS database from these certificates.
    Install {
        ca_cert_pem: String,
        cluster_p12_b64: String,
    },
    /// Start corosync-qdevice (after the reload).
    Start,
    /// Stop corosync-qdevice and drop the certificates.
    Remove,
}

fn decode_p12(b64: &str) -> std::result::Result<Vec<u8>, String> {
    use base64::Engine;
    let clean: String = b64.split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| format!("not base64: {e}"))?;
    nss::check_p12(&der)?;
    Ok(der)
}

/// A member applies a pushed QDevice change.
pub(super) fn apply_peer(cs: &ClusterState, q: &QdevicePeer) -> Result<()> {
    match q {
        QdevicePeer::Install {
            ca_cert_pem,
            cluster_p12_b64,
        } => {
            let der = decode_p12(cluster_p12_b64).map_err(Error::BadRequest)?;
            nss::install(&cs.paths, cs.runner.as_ref(), ca_cert_pem, &der)?;
            tracing::info!("QDevice certificates installed");
        }
        QdevicePeer::Start => {
            cs.svc
                .start(Daemon::Qdevice)
                .map_err(|e| Error::Internal(e.to_string()))?;
            tracing::info!("corosync-qdevice started");
        }
        QdevicePeer::Remove => {
            cs.svc
                .stop(Daemon::Qdevice)
                .map_err(|e| Error::Internal(e.to_string()))?;
            nss::uninstall(&cs.paths)?;
            tracing::info!("corosync-qdevice stopped, its certificates removed");
        }
    }
    Ok(())
}

/// The QDevice as corosync.conf has it and votequorum counts it (`q`: `corosync-quorumtool`).
pub(super) fn status_of(
    cs: &ClusterState,
    conf: &CorosyncConf,
    q: Option<&QuorumInfo>,
) -> QdeviceStatus {
    match &conf.qdevice {
        None => QdeviceStatus {
            configured: false,
            host: None,
            port: None,
            algorithm: None,
            votes: None,
            daemon_running: false,
        },
        Some(d) => QdeviceStatus {
            configured: true,
            host: Some(d.host.clone()),
            port: Some(d.port.unwrap_or(5403)),
            algorithm: Some(d.algorithm.as_str().into()),
            votes: q.and_then(|q| q.qdevice_votes),
            daemon_running: cs.svc.is_active(Daemon::Qdevice).unwrap_or(false),
        },
    }
}

/// `GET /api/v1/cluster/qdevice` (not configured on a node outside a cluster).
pub(super) fn get(node: &Node) -> Result<QdeviceStatus> {
    let cs = &node.cluster;
    if cs.record()?.is_none() {
        return Ok(QdeviceStatus {
            configured: false,
            host: None,
            port: None,
            algorithm: None,
            votes: None,
            daemon_running: false,
        });
    }
    let conf = form::read_corosync_conf(&cs.paths)?;
    let q = form::quorum(cs.runner.as_ref());
    Ok(status_of(cs, &conf, q.as_ref()))
}

fn not_clustered() -> Error {
    Error::Conflict("this node is not in a cluster: a QDevice needs one (keel cluster init)".into())
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
}

/// The checks that refuse at once (400/409), before any task: input, cluster size, an
/// existing QDevice, every member online.
pub(super) fn check_add(node: &Node, req: &QdeviceAdd) -> Result<(QDevice, Vec<u8>)> {
    let algorithm = match req.algorithm.as_deref() {
        None => QDeviceAlgorithm::Ffsplit,
        Some(a) => QDeviceAlgorithm::parse(a)
            .ok_or_else(|| Error::validation("algorithm", format!("{a:?}: use ffsplit or lms")))?,
    };
    if !valid_host(&req.host) {
        return Err(Error::validation(
            "host",
            format!(
                "{:?} is not a host: give the qnetd host's IP address or DNS name",
                req.host
            ),
        ));
    }
    if req.port == Some(0) {
        return Err(Error::validation(
            "port",
            "0 is not a port (qnetd's default is 5403)",
        ));
    }
    nss::check_ca_pem(&req.ca_cert_pem).map_err(|m| Error::validation("ca_cert_pem", m))?;
    let der =
        decode_p12(&req.cluster_p12_b64).map_err(|m| Error::validation("cluster_p12_b64", m))?;
    let cs = &node.cluster;
    if cs.record()?.is_none() {
        return Err(not_clustered());
    }
    let conf = form::read_corosync_conf(&cs.paths)?;
    if let Some(q) = &conf.qdevice {
        return Err(Error::Conflict(format!(
            "a QDevice is already configured ({}): remove it first (keel cluster qdevice remove)",
            q.host
        )));
    }
    if conf.nodes.len() != 2 {
        return Err(Error::Conflict(format!(
            "Keel adds a QDevice to a two-node cluster; this one has {} node(s)",
            conf.nodes.len()
        )));
    }
    if let Some(n) = conf
        .nodes
        .iter()
        .find(|n| n.addrs.iter().any(|a| a == &req.host) || n.name == req.host)
    {
        return Err(Error::validation(
            "host",
            format!(
                "{} is member {}: the qnetd host must be a third machine",
                req.host, n.name
            ),
        ));
    }
    let online: Vec<u32> = form::quorum(cs.runner.as_ref())
        .map(|q| q.members.iter().map(|m| m.nodeid).collect())
        .unwrap_or_default();
    let offline: Vec<&str> = conf
        .nodes
        .iter()
        .filter(|n| !online.contains(&n.nodeid))
        .map(|n| n.name.as_str())
        .collect();
    if !offline.is_empty() {
        return Err(Error::Conflict(format!(
            "{} offline: every member must be online to receive the QDevice's certificates",
            offline.join(", ")
        )));
    }
    Ok((
        QDevice {
            host: req.host.clone(),
            port: req.port,
            algorithm,
        },
        der,
    ))
}

/// `POST /api/v1/cluster/qdevice`: checks, then the `qdeviceadd` task.
pub(super) fn start_add(node: &Arc<Node>, req: QdeviceAdd, user: &str) -> Result<String> {
    let (dev, der) = check_add(node, &req)?;
    let rec = node.cluster.record()?.ok_or_else(not_clustered)?;
    let n = node.clone();
    tasks::spawn(
        &node.tasks,
        "qdeviceadd",
        &rec.name.clone(),
        user,
        true,
        move |t| add_task(&n, &rec, dev, &req.ca_cert_pem, &der, t),
    )
}

fn update(conf: &CorosyncConf, rec: &ClusterRecord, q: QdevicePeer) -> Result<PeerUpdate> {
    Ok(PeerUpdate {
        qdevice: Some(q),
        ..PeerUpdate::unchanged(
            conf.render().map_err(|e| Error::Internal(e.to_string()))?,
            rec.members.clone(),
        )
    })
}

fn add_task(
    node: &Node,
    rec: &ClusterRecord,
    dev: QDevice,
    ca_pem: &str,
    p12: &[u8],
    t: &TaskHandle,
) -> Result<()> {
    let cs = &node.cluster;
    let r = cs.runner.as_ref();
    let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
    let mut conf = form::read_corosync_conf(&cs.paths)?;
    if conf.qdevice.is_some() {
        return Err(Error::Conflict("a QDevice was configured meanwhile".into()));
    }
    let host = dev.host.clone();
    conf.qdevice = Some(dev);
    conf.validate()
        .map_err(|e| Error::validation("host", e.to_string()))?;
    // 1. certificates and corosync.conf: here first (a bad file fails before any peer)
    nss::install(&cs.paths, r, ca_pem, p12)?;
    t.log("QDevice certificates installed in this node's NSS database");
    use base64::Engine;
    let install = QdevicePeer::Install {
        ca_cert_pem: ca_pem.to_string(),
        cluster_p12_b64: base64::engine::general_purpose::STANDARD.encode(p12),
    };
    let done = match push_to_members(node, rec, &update(&conf, rec, install)?) {
        Ok(d) => d,
        Err(e) => {
            // put back what the others got: corosync.conf without the device, no certificates
            let mut old = conf.clone();
            old.qdevice = None;
            if let Ok(back) = update(&old, rec, QdevicePeer::Remove) {
                let _ = push_to_members(node, rec, &back);
            }
            let _ = nss::uninstall(&cs.paths);
            return Err(e);
        }
    };
    t.log(format!(
        "certificates and corosync.conf (quorum.device → {host}, two_node off) on {}",
        done.join(", ")
    ));
    t.progress(0.3);
    form::write_corosync_conf(&cs.paths, &conf)?;
    // 2. one reload: every corosync re-reads corosync.conf
    form::reload_corosync(r)?;
    t.log("corosync.conf reloaded on every member");
    if let Err(e) = form::apply_properties_for(r, &conf) {
        tracing::warn!(error = %e, "updating cluster properties for the QDevice");
    }
    t.progress(0.5);
    // 3. corosync-qdevice everywhere
    cs.svc
        .start(Daemon::Qdevice)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let done = push_to_members(node, rec, &update(&conf, rec, QdevicePeer::Start)?)?;
    t.log(format!(
        "corosync-qdevice started on {} and {}",
        node.cfg.node,
        done.join(", ")
    ));
    t.progress(0.7);
    // 4. votequorum counts its vote
    let t0 = Instant::now();
    loop {
        let q = form::quorum(r);
        if let Some(v) = q.as_ref().and_then(|q| q.qdevice_votes).filter(|v| *v > 0) {
            t.log(format!(
                "votequorum counts the QDevice's vote ({v}) after {:.1} s: expected votes {}",
                t0.elapsed().as_secs_f64(),
                q.as_ref().map(|q| q.expected_votes).unwrap_or(0)
            ));
            return Ok(());
        }
        if t0.elapsed() >= VOTE_WAIT {
            return Err(Error::Internal(format!(
                "the QDevice is configured but votequorum did not count its vote within {} s: check that {host} runs corosync-qnetd and is reachable on its port, that the certificates come from its CA and name this cluster ({}), and `corosync-qdevice-tool -sv` on a node; `keel cluster qdevice remove` takes it out again",
                VOTE_WAIT.as_secs(),
                rec.name
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `DELETE /api/v1/cluster/qdevice`: checks, then the `qdeviceremove` task.
pub(super) fn start_remove(node: &Arc<Node>, user: &str) -> Result<String> {
    let cs = &node.cluster;
    let rec = cs.record()?.ok_or_else(not_clustered)?;
    let conf = form::read_corosync_conf(&cs.paths)?;
    if conf.qdevice.is_none() {
        return Err(Error::NotFound("no QDevice is configured".into()));
    }
    // diskless SBD is only safe with three votes: without the QDevice's, a node cut off alone
    // in a two-node cluster would stay quorate and never reset itself
    if conf.nodes.len() < 3 {
        let watchdogs: Vec<String> = super::fencing::cib_devices(cs.runner.as_ref())?
            .into_iter()
            .filter(|d| d.agent == "fence_watchdog")
            .map(|d| d.target)
            .collect();
        if !watchdogs.is_empty() {
            return Err(Error::Conflict(format!(
                "{} are fenced through their own watchdogs (diskless SBD), which needs the QDevice's \
                 vote with {} nodes: give those nodes another fence device first (keel fence \
                 add NODE --agent fence_ipmilan|fence_redfish|sbd …), then remove the QDevice",
                watchdogs.join(", "),
                conf.nodes.len()
            )));
        }
    }
    let n = node.clone();
    tasks::spawn(
        &node.tasks,
        "qdeviceremove",
        &rec.name.clone(),
        user,
        true,
        move |t| remove_task(&n, &rec, t),
    )
}

fn remove_task(node: &Node, rec: &ClusterRecord, t: &TaskHandle) -> Result<()> {
    let cs = &node.cluster;
    let r = cs.runner.as_ref();
    let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
    let mut conf = form::read_corosync_conf(&cs.paths)?;
    let Some(old) = conf.qdevice.take() else {
        return Err(Error::NotFound("no QDevice is configured".into()));
    };
    let done = push_to_members(node, rec, &update(&conf, rec, QdevicePeer::Remove)?)?;
    t.log(format!(
        "corosync-qdevice stopped and corosync.conf without the QDevice on {}",
        done.join(", ")
    ));
    let u = update(&conf, rec, QdevicePeer::Remove)?;
    apply_peer_update(cs, &u)?;
    form::reload_corosync(r)?;
    if let Err(e) = form::apply_properties_for(r, &conf) {
        tracing::warn!(error = %e, "updating cluster properties without the QDevice");
    }
    t.log(format!(
        "QDevice {} removed, corosync.conf reloaded on every member{}",
        old.host,
        if conf.two_node() {
            " (two_node and wait_for_all back on)"
        } else {
            ""
        }
    ));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testlab::{self, SELF};
    use super::*;
    use keel_runner::{Fake, Reply};

    const TWO: &str = include_str!("../../../clusterd/tests/samples/quorumtool-qdevice.txt");
    const CA: &str =
        "Certificate:\n    Data:\n-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";

    fn req(host: &str) -> QdeviceAdd {
        use base64::Engine;
        let mut p12 = vec![0x30u8];
        p12.extend([1u8; 100]);
        QdeviceAdd {
            host: host.into(),
            port: None,
            algorithm: None,
            ca_cert_pem: CA.into(),
            cluster_p12_b64: base64::engine::general_purpose::STANDARD.encode(p12),
        }
    }

    fn field(e: Error) -> String {
        match e {
            Error::Validation(f) => f.field,
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn add_refusals_before_any_task() -> Result<()> {
        let q = ["corosync-quorumtool", "-s"];
        let l = testlab::clustered(
            &[
                (SELF, "192.0.2.1", "192.0.2.1:8006"),
                ("node2", "192.0.2.2", "192.0.2.2:8006"),
            ],
            // input and member checks run no command; then the quorum read of the accepted one
            Fake::new().expect(&q, Reply::ok(TWO)),
        )?;
        let n = &l.node;
        let mut r = req("192.0.2.9");
        r.algorithm = Some("majority".into());
        assert_eq!(field(check_add(n, &r).unwrap_err()), "algorithm");
        assert_eq!(field(check_add(n, &req("a b")).unwrap_err()), "host");
        let mut r = req("192.0.2.9");
        r.port = Some(0);
        assert_eq!(field(check_add(n, &r).unwrap_err()), "port");
        let mut r = req("192.0.2.9");
        r.ca_cert_pem = "qnetd-cacert.crt".into();
        assert_eq!(field(check_add(n, &r).unwrap_err()), "ca_cert_pem");
        let mut r = req("192.0.2.9");
        r.cluster_p12_b64 = "bm90IGRlcg==".into();
        assert_eq!(field(check_add(n, &r).unwrap_err()), "cluster_p12_b64");
        let e = check_add(n, &req("192.0.2.2")).unwrap_err();
        assert!(e.to_string().contains("third machine"), "{e}");
        let (dev, _) = check_add(n, &req("192.0.2.9"))?;
        assert_eq!(dev.algorithm, QDeviceAlgorithm::Ffsplit);
        l.fake.assert_done();
        Ok(())
    }

    #[test]
    fn add_refused_on_three_nodes_and_offline_members() -> Result<()> {
        let three = testlab::clustered(
            &[
                (SELF, "192.0.2.1", "192.0.2.1:8006"),
                ("node2", "192.0.2.2", "192.0.2.2:8006"),
                ("node3", "192.0.2.3", "192.0.2.3:8006"),
            ],
            Fake::new(),
        )?;
        let e = check_add(&three.node, &req("192.0.2.9")).unwrap_err();
        assert!(e.to_string().contains("two-node cluster"), "{e}");
        // node2 not in corosync's membership
        let alone = TWO.replace("         2          1    A,V,NMW node2\n", "");
        let l = testlab::clustered(
            &[
                (SELF, "192.0.2.1", "192.0.2.1:8006"),
                ("node2", "192.0.2.2", "192.0.2.2:8006"),
            ],
            Fake::new().expect(&["corosync-quorumtool", "-s"], Reply::ok(&alone)),
        )?;
        let e = check_add(&l.node, &req("192.0.2.9")).unwrap_err();
        assert!(e.to_string().contains("node2 offline"), "{e}");
        Ok(())
    }

    #[test]
    fn hosts() {
        assert!(valid_host("192.0.2.1"));
        assert!(valid_host("fd00::1"));
        assert!(valid_host("qnetd.example.org"));
        assert!(!valid_host(""));
        assert!(!valid_host("a b"));
        assert!(!valid_host("x{"));
    }
}
