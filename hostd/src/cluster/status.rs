//! `GET /api/v1/cluster/status`: corosync's quorum and links, Pacemaker's view, fence devices
//! and fence tests, assembled into one [`ClusterStatus`].

use clusterd::commands;
use clusterd::form;
use keel_api::cluster::{ClusterNode, ClusterStatus, FailedAction, LinkStatus, MemberStatus};

use super::fencing::{cib_stonith_devices, fence_test_of};
use crate::error::Result;
use crate::Node;

pub fn cluster_status(node: &Node) -> Result<ClusterStatus> {
    let cs = &node.cluster;
    let Some(rec) = cs.record()? else {
        return Ok(ClusterStatus {
            clustered: false,
            name: String::new(),
            local_node: node.cfg.node.clone(),
            quorate: false,
            expected_votes: 0,
            total_votes: 0,
            two_node: false,
            members: vec![],
            dc: None,
            stonith_enabled: false,
            failed_actions: vec![],
            notes: vec!["this node is not in a cluster".into()],
            daemons: vec![],
            store: None,
        });
    };
    let conf = form::read_corosync_conf(&cs.paths)?;
    let r = cs.runner.as_ref();
    let q = form::quorum(r);
    let links = r
        .run(&commands::link_status())
        .ok()
        .and_then(|o| clusterd::crm::LinkStatus::parse(&o.stdout).ok());
    let crm = form::crm_status(r);
    let devices = cib_stonith_devices(r);
    let mut notes = vec![];
    if q.is_none() {
        notes.push("corosync is not running on this node".into());
    }
    if crm.is_none() {
        notes.push("Pacemaker does not answer on this node".into());
    }
    if conf.nodes.len() == 1 {
        notes.push("single node: no redundancy until a second node joins".into());
    }
    let daemons = crate::daemons::daemon_statuses(node);
    let store = crate::daemons::store_state();
    notes.extend(crate::daemons::status_notes(&daemons, &store));
    let mut members = vec![];
    for n in &conf.nodes {
        let qm = q
            .as_ref()
            .and_then(|q| q.members.iter().find(|m| m.nodeid == n.nodeid));
        let cn = crm.as_ref().and_then(|c| c.node(&n.name));
        let local = q.as_ref().is_some_and(|q| q.node_id == n.nodeid);
        let peer = links
            .as_ref()
            .and_then(|l| l.peers.iter().find(|p| p.nodeid == n.nodeid));
        let ls = n
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| LinkStatus {
                link: i as u32,
                address: a.clone(),
                connected: local && q.is_some()
                    || peer.is_some_and(|p| {
                        p.links.iter().any(|l| l.link as usize == i && l.connected)
                    }),
            })
            .collect();
        let dev = devices.iter().find(|d| d.2 == n.name);
        if dev.is_none() && conf.nodes.len() > 1 {
            notes.push(format!(
                "{} has no fence device: it cannot be fenced",
                n.name
            ));
        }
        members.push(MemberStatus {
            name: n.name.clone(),
            nodeid: n.nodeid,
            online: cn.is_some_and(|c| c.online) && qm.is_some(),
            standby: cn.is_some_and(|c| c.standby),
            unclean: cn.is_some_and(|c| c.unclean),
            votes: qm.map(|m| m.votes).unwrap_or(0),
            links: ls,
            is_dc: cn.is_some_and(|c| c.is_dc),
            fence_device: dev.map(|d| d.0.clone()),
            last_fence_test: fence_test_of(cs, &n.name),
        });
    }
    Ok(ClusterStatus {
        clustered: true,
        name: rec.name,
        local_node: node.cfg.node.clone(),
        quorate: q.as_ref().is_some_and(|q| q.quorate),
        expected_votes: q.as_ref().map(|q| q.expected_votes).unwrap_or(0),
        total_votes: q.as_ref().map(|q| q.total_votes).unwrap_or(0),
        two_node: conf.two_node(),
        members,
        dc: crm.as_ref().and_then(|c| c.dc.clone()),
        stonith_enabled: crm
            .as_ref()
            .and_then(|c| c.stonith_enabled)
            .unwrap_or(false),
        failed_actions: crm
            .map(|c| {
                c.failures
                    .into_iter()
                    .map(|f| FailedAction {
                        resource: f.op_key,
                        node: f.node,
                        operation: f.task,
                        status: f.exit_status,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        notes,
        daemons,
        store: Some(store),
    })
}

/// The members as corosync.conf lists them, with their API addresses.
pub(super) fn cluster_nodes(node: &Node) -> Result<Vec<ClusterNode>> {
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
}
