//! Removing a member: the quorum check before, then the removal task (the node leaves, every
//! member drops it from corosync.conf and reloads, Pacemaker forgets it, its fence device goes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterd::commands;
use clusterd::corosync_conf::CorosyncConf;
use clusterd::form::{self, ClusterRecord, MemberRecord};
use keel_runner::Runner;
use rusqlite::params;

use super::fencing::{fence_test_key, lab_shell_device, stonith_devices};
use super::peer::{apply_peer_update, push_to_members, PeerUpdate};
use crate::cluster_net;
use crate::error::{Error, Result};
use crate::tasks::{self, TaskHandle};
use crate::Node;

/// Between two `crm_node -R` attempts: the controller may re-create the node entry until
/// corosync's membership settled after the reload.
const PURGE_INTERVAL: Duration = Duration::from_secs(2);

/// Between two looks at corosync's membership after the key switch.
const KEY_SWITCH_POLL: Duration = Duration::from_secs(1);
/// How long, beyond the stability window, the members get to be all back after the reload.
const KEY_SWITCH_SLACK: Duration = Duration::from_secs(30);

/// How long every member that was online must stay in this node's membership after the reload
/// that switches the key: longer than corosync takes to drop a member whose packets it no
/// longer accepts (token timeout, plus `token_coefficient` per node above two, plus the
/// consensus timeout of 1.2 tokens), with a margin.
fn key_switch_window(conf: &CorosyncConf) -> Duration {
    let nodes = conf.nodes.len() as u64;
    let coefficient = u64::from(conf.token_coefficient_ms.unwrap_or(650));
    let token = u64::from(conf.token_ms) + nodes.saturating_sub(2) * coefficient;
    // token + consensus (1.2 token) = 2.2 token; 2.5 token leaves a margin
    Duration::from_millis(token * 5 / 2)
}

/// After the reload that makes corosync use the rotated key: wait until every node id in
/// `expected` (the remaining members that were online before) has been in this node's quorate
/// membership without a break for `window`. A member whose corosync did not switch to the new
/// key is dropped by the others once they clear the old key, so it is missing here.
/// `Err`: the ids missing at the last look (empty when the membership kept changing or
/// corosync did not answer).
fn wait_key_switch(
    r: &dyn Runner,
    expected: &[u32],
    window: Duration,
    poll: Duration,
    wait: Duration,
) -> std::result::Result<(), Vec<u32>> {
    let t0 = Instant::now();
    let mut since: Option<Instant> = None;
    let mut missing = vec![];
    loop {
        match form::quorum_checked(r) {
            Ok(q) => {
                missing = expected
                    .iter()
                    .filter(|id| !q.members.iter().any(|m| m.nodeid == **id))
                    .copied()
                    .collect();
                if missing.is_empty() && q.quorate {
                    let s = *since.get_or_insert_with(Instant::now);
                    if s.elapsed() >= window {
                        return Ok(());
                    }
                } else {
                    since = None;
                }
            }
            Err(_) => since = None,
        }
        if t0.elapsed() >= wait {
            return Err(missing);
        }
        std::thread::sleep(poll);
    }
}

/// Would the online members left after removing `removed` (of `total`) hold quorum for the new
/// size? `Err` says why not.
fn removal_keeps_quorum(
    total: usize,
    online: &[u32],
    removed: u32,
) -> std::result::Result<(), String> {
    let left = total.saturating_sub(1);
    let online_after = online.iter().filter(|id| **id != removed).count();
    let need = quorum_needed(left);
    if left == 0 || online_after < need {
        return Err(format!(
            "would leave {online_after} online member(s) of {left} while {need} are needed"
        ));
    }
    Ok(())
}

fn quorum_needed(nodes: usize) -> usize {
    if nodes == 2 {
        1
    } else {
        nodes / 2 + 1
    }
}

/// Refuse at once what cannot be removed (this node, a non-member, a removal that would
/// cost quorum unless forced), then start the `clusterremove` task; its UPID.
pub(super) fn start(node: &Arc<Node>, name: String, force: bool, user: &str) -> Result<String> {
    let cs = &node.cluster;
    let rec = cs
        .record()?
        .ok_or_else(|| Error::Conflict("this node is not in a cluster".into()))?;
    if name == node.cfg.node {
        return Err(Error::Conflict(format!(
            "{name} is the node answering this request: run `keel node remove {name}` on another member"
        )));
    }
    let conf = form::read_corosync_conf(&cs.paths)?;
    if conf.node(&name).is_none() {
        return Err(Error::NotFound(format!("{name:?} is not a cluster member")));
    }
    let online: Vec<u32> = form::quorum(cs.runner.as_ref())
        .map(|q| q.members.iter().map(|m| m.nodeid).collect())
        .unwrap_or_default();
    let removed_id = conf.node(&name).map(|n| n.nodeid).unwrap_or(0);
    if let Err(why) = removal_keeps_quorum(conf.nodes.len(), &online, removed_id) {
        if !force {
            return Err(Error::Conflict(format!(
                "removing {name} {why}: the cluster would lose quorum. Bring members back online, or use --force"
            )));
        }
    }
    // diskless SBD needs three votes: not from two nodes without a QDevice
    let votes_after = conf.nodes.len() - 1 + usize::from(conf.qdevice.is_some());
    if votes_after < 3 {
        let watchdogs: Vec<String> = super::fencing::cib_devices(cs.runner.as_ref())?
            .into_iter()
            .filter(|d| d.agent == "fence_watchdog" && d.target != name)
            .map(|d| d.target)
            .collect();
        if !watchdogs.is_empty() {
            return Err(Error::Conflict(format!(
                "{} are fenced through their own watchdogs (diskless SBD), which needs three votes; \
                 without {name} the cluster would have {votes_after}: add a QDevice (keel \
                 cluster qdevice add) or give those nodes another fence device first",
                watchdogs.join(", ")
            )));
        }
    }
    let n = node.clone();
    let tgt = name.clone();
    tasks::spawn(&node.tasks, "clusterremove", &tgt, user, true, move |t| {
        remove_task(&n, rec, &name, force, t)
    })
}

/// A new corosync authkey, base64 for the peer update.
fn rotated_authkey_b64() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(form::new_corosync_authkey())
}

fn remove_task(
    node: &Node,
    rec: ClusterRecord,
    name: &str,
    force: bool,
    t: &TaskHandle,
) -> Result<()> {
    let cs = &node.cluster;
    let r = cs.runner.as_ref();
    let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
    let mut conf = form::read_corosync_conf(&cs.paths)?;
    let gone = conf
        .remove_node(name)
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let removed = rec.members.iter().find(|m| m.name == name).cloned();
    // 1. the removed node stops its stack and forgets the cluster (if reachable)
    if let Some(m) = &removed {
        let key = cs.authkey()?;
        let client = cs.member_client()?;
        let r = tokio::runtime::Handle::current().block_on(cluster_net::peer_post(
            &client,
            &key,
            &node.cfg.node,
            &m.api,
            "/api/v1/cluster/peer/leave",
            &serde_json::json!({}),
        ));
        match r {
            Ok(()) => t.log(format!("{name} stopped corosync and Pacemaker and left")),
            Err(e) if force => t.log(format!("{name} unreachable ({e}); continuing (--force)")),
            Err(e) => {
                return Err(Error::Conflict(format!(
                    "{name} could not be told to leave ({e}); if it is down for good, use --force"
                )))
            }
        }
    }
    // the remaining members corosync sees now: each must still be there after the key switch
    let online_before: Vec<u32> = form::quorum(r)
        .map(|q| {
            q.members
                .iter()
                .map(|m| m.nodeid)
                .filter(|id| *id != gone.nodeid)
                .collect()
        })
        .unwrap_or_default();
    // 2. every remaining member drops it from corosync.conf, puts it on its revocation list
    //    and installs a new corosync authkey (the removed node keeps the old one); only then
    //    one reload: corosync sends it to every member, each re-reads its files, loads the new
    //    key beside the old one, switches to it, and clears the old one (measured in
    //    tests/tests/netns_corosync_key_rotation.rs)
    let members: Vec<MemberRecord> = rec
        .members
        .iter()
        .filter(|m| m.name != name)
        .cloned()
        .collect();
    let update = PeerUpdate {
        corosync_conf: conf.render().map_err(|e| Error::Internal(e.to_string()))?,
        members: members.clone(),
        pin: None,
        unpin: Some((gone.name.clone(), gone.addrs.clone())),
        authorized_key: None,
        removed: vec![name.to_string()],
        corosync_authkey_b64: Some(rotated_authkey_b64()),
        qdevice: None,
        fence_secrets: None,
        sbd: None,
        fence_agent: None,
    };
    let mut rest = rec.clone();
    rest.members = members;
    push_to_members(node, &rest, &update)?;
    apply_peer_update(cs, &update)?;
    // its root key goes from authorized_keys here (others keep theirs until their next update)
    let ak = cs.paths.root_ssh_dir.join("authorized_keys");
    if let Ok(text) = std::fs::read_to_string(&ak) {
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.ends_with(&format!(" keel:{name}")))
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        clusterd::ca::write_file_mode(&ak, out.as_bytes(), 0o600)
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    form::reload_corosync(r)?;
    t.log(format!(
        "removed {name} from corosync.conf on every member, revoked its certificate, rotated the corosync authkey and reloaded"
    ));
    let window = key_switch_window(&conf);
    let key_problem = match wait_key_switch(
        r,
        &online_before,
        window,
        KEY_SWITCH_POLL,
        window + KEY_SWITCH_SLACK,
    ) {
        Ok(()) => {
            t.log(format!(
                "corosync uses the new key: the {} online member(s) stayed in the membership for {:.1} s after the reload",
                online_before.len(),
                window.as_secs_f64()
            ));
            None
        }
        Err(missing) => {
            let names: Vec<String> = missing
                .iter()
                .map(|id| {
                    conf.nodes
                        .iter()
                        .find(|n| n.nodeid == *id)
                        .map(|n| n.name.clone())
                        .unwrap_or_else(|| format!("nodeid {id}"))
                })
                .collect();
            let msg = if names.is_empty() {
                format!(
                    "corosync's membership did not settle within {:.0} s after the key rotation; check `keel cluster status` and the corosync log of every member",
                    (window + KEY_SWITCH_SLACK).as_secs_f64()
                )
            } else {
                format!(
                    "after the corosync key rotation, {} left this node's corosync membership: probably still on the old key. On each of them check that /etc/corosync/authkey matches this node's (Keel pushed it), then run `corosync-cfgtool -R` there (or restart corosync there); `keel cluster status` shows when they are back",
                    names.join(", ")
                )
            };
            t.log(format!("warning: {msg}"));
            Some(msg)
        }
    };
    // 3. Pacemaker forgets it; its fence device goes
    for (id, _, target) in stonith_devices(r)?.into_iter().filter(|d| d.2 == name) {
        if id == clusterd::cib::WATCHDOG_DEVICE_ID {
            // the watchdog device is the other nodes' too: only this node leaves its list
            super::fencing::unlist_watchdog(r, &target)?;
            t.log(format!("{name} taken off the watchdog fence device"));
            continue;
        }
        let dev = lab_shell_device(&id, &target);
        form::apply_cib(r, &clusterd::cib::delete_fence_device(&dev))?;
        t.log(format!("deleted fence device {id}"));
    }
    // The controller re-creates a node entry when corosync's membership settles after the
    // reload (up to token + consensus later): purge until the name stays gone.
    let mut purged = false;
    for attempt in 1..=10 {
        match r.run(&commands::crm_node_remove(name)) {
            Ok(o) if !o.success() => t.log(format!(
                "crm_node -R {name}: {}{}",
                o.stderr.trim(),
                o.stdout.trim()
            )),
            Ok(_) => {}
            Err(e) => t.log(e.to_string()),
        }
        std::thread::sleep(PURGE_INTERVAL);
        let still = r
            .run_ok(&commands::cib_query("nodes"))
            .is_ok_and(|out| out.contains(&format!("uname=\"{name}\"")));
        if !still {
            t.log(format!(
                "Pacemaker forgot {name} (crm_node -R, attempt {attempt})"
            ));
            purged = true;
            break;
        }
    }
    if !purged {
        t.log(format!(
            "warning: Pacemaker still lists {name}; run crm_node -R {name} --force later"
        ));
    }
    form::apply_properties_for(r, &conf)?;
    let _ = cs.db.conn().execute(
        "DELETE FROM cluster_fence_tests WHERE node=?1",
        params![name],
    );
    let c = clusterd::store::client::Client::local();
    let _ = tokio::runtime::Handle::current().block_on(c.delete(&fence_test_key(name), None));
    match key_problem {
        // the removal itself is done; the task fails so the operator sees what is left to do
        Some(msg) => Err(Error::Conflict(format!("{name} was removed, but {msg}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testlab::{self, properties_call, SELF};
    use super::*;
    use keel_runner::{Fake, Reply};

    const CIB_RESOURCES: &str = r#"<resources>
  <primitive id="fence-n1" class="stonith" type="fence_ipmilan"><instance_attributes id="fence-n1-instance_attributes"><nvpair id="fence-n1-instance_attributes-pcmk_host_list" name="pcmk_host_list" value="n1"/></instance_attributes></primitive>
  <primitive id="fence-node2" class="stonith" type="fence_ipmilan"><instance_attributes id="fence-node2-instance_attributes"><nvpair id="fence-node2-instance_attributes-pcmk_host_list" name="pcmk_host_list" value="node2"/></instance_attributes></primitive>
</resources>"#;

    /// Removing node2 (unreachable, --force): every remaining member drops it from
    /// corosync.conf, revokes it, installs a new corosync authkey, one reload, its fence device
    /// and the properties follow the new size — these commands, in this order.
    #[tokio::test(flavor = "multi_thread")]
    async fn node_removal_runs_its_commands_in_order() -> Result<()> {
        let gone = clusterd::cib::delete_fence_device(&lab_shell_device("fence-node2", "node2"));
        let delete = ["cibadmin", "--delete", "--xml-pipe"];
        let (props, props_xml) = properties_call(1);
        let quorum = ["corosync-quorumtool", "-s"];
        let mut fake = Fake::new()
            // the members corosync sees before (node2 is down: n1 alone)
            .expect(&quorum, Reply::ok(quorum_out(&[1], true)))
            .expect(&["corosync-cfgtool", "-R"], Reply::ok(""));
        // n1 stays in its membership for the whole window (token 1000 ms: 2.5 s, one look a
        // second)
        for _ in 0..4 {
            fake = fake.expect(&quorum, Reply::ok(quorum_out(&[1], true)));
        }
        let fake = fake
            .expect(
                &["cibadmin", "--query", "--scope", "resources"],
                Reply::ok(CIB_RESOURCES),
            )
            .expect_stdin(&delete, gone[0].stdin.as_bytes(), Reply::ok(""))
            .expect_stdin(&delete, gone[1].stdin.as_bytes(), Reply::ok(""))
            .expect(&["crm_node", "-R", "node2", "--force"], Reply::ok(""))
            .expect(
                &["cibadmin", "--query", "--scope", "nodes"],
                Reply::ok(r#"<nodes><node id="1" uname="n1"/></nodes>"#),
            )
            .expect_stdin(&props, &props_xml, Reply::ok(""));
        // node2's API does not answer (nothing listens on the discard port): --force goes on
        let lab = testlab::clustered(
            &[
                (SELF, "192.0.2.1", "192.0.2.1:8006"),
                ("node2", "192.0.2.2", "127.0.0.1:9"),
            ],
            fake,
        )?;
        let rec = lab
            .node
            .cluster
            .record()?
            .ok_or_else(|| Error::Internal("record".into()))?;
        let h = lab
            .node
            .tasks
            .begin("clusterremove", "node2", "root", true)?;
        let n = lab.node.clone();
        let upid = h.upid.clone();
        tokio::task::spawn_blocking(move || remove_task(&n, rec, "node2", true, &h))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        lab.fake.assert_done();
        let conf = form::read_corosync_conf(&lab.paths)?;
        assert!(conf.node("node2").is_none());
        assert_eq!(conf.nodes.len(), 1);
        let rec = lab
            .node
            .cluster
            .record()?
            .ok_or_else(|| Error::Internal("record".into()))?;
        assert_eq!(rec.members.len(), 1);
        // revoked here, and the corosync authkey rotated (the HMAC key follows the file)
        assert_eq!(rec.removed, vec!["node2".to_string()]);
        let key = std::fs::read(lab.paths.corosync_authkey())?;
        assert_eq!(key.len(), form::COROSYNC_AUTHKEY_LEN);
        assert_ne!(key, vec![7u8; 128], "the corosync authkey was not rotated");
        let log: Vec<String> = lab
            .node
            .tasks
            .log(&upid, 0, 100)?
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert!(
            log.iter().any(|l| l.contains("continuing (--force)")),
            "{log:?}"
        );
        assert!(
            log.iter().any(|l| l == "deleted fence device fence-node2"),
            "{log:?}"
        );
        Ok(())
    }

    /// `corosync-quorumtool -s` as corosync 3.1 prints it, with these members (n1 local).
    fn quorum_out(ids: &[u32], quorate: bool) -> String {
        let mut out = format!(
            "Quorum information\n------------------\nDate:             Wed Dec  2 11:00:00 2026\n\
             Quorum provider:  corosync_votequorum\nNodes:            {}\nNode ID:          1\n\
             Ring ID:          1.10\nQuorate:          {}\n\nVotequorum information\n\
             ----------------------\nExpected votes:   3\nHighest expected: 3\n\
             Total votes:      {}\nQuorum:           2\nFlags:            {}\n\n\
             Membership information\n----------------------\n    Nodeid      Votes Name\n",
            ids.len(),
            if quorate { "Yes" } else { "No" },
            ids.len(),
            if quorate { "Quorate" } else { "" },
        );
        for id in ids {
            let name = if *id == 1 {
                "n1 (local)".to_string()
            } else {
                format!("node{id}")
            };
            out.push_str(&format!("         {id}          1 {name}\n"));
        }
        out
    }

    /// The key switch is confirmed only when every member that was online stays in the
    /// membership for the whole window; a member missing at the deadline is named.
    #[test]
    fn key_switch_needs_every_online_member_to_stay() {
        let quorum = ["corosync-quorumtool", "-s"];
        let z = Duration::ZERO;
        // all there at once, no window: one look
        let fake = Fake::new().expect(&quorum, Reply::ok(quorum_out(&[1, 2, 3], true)));
        assert_eq!(wait_key_switch(&fake, &[1, 2, 3], z, z, z), Ok(()));
        fake.assert_done();
        // node3 dropped out (still on the old key) until the deadline: named
        let fake = Fake::new().expect(&quorum, Reply::ok(quorum_out(&[1, 2], true)));
        assert_eq!(wait_key_switch(&fake, &[1, 2, 3], z, z, z), Err(vec![3]));
        fake.assert_done();
        // a membership change in the window restarts it: absent, back, then stable
        let long = Duration::from_secs(60);
        let fake = Fake::new()
            .expect(&quorum, Reply::ok(quorum_out(&[1, 2, 3], true)))
            .expect(&quorum, Reply::ok(quorum_out(&[1, 2], true)))
            .expect(&quorum, Reply::ok(quorum_out(&[1, 2, 3], true)))
            .expect(&quorum, Reply::ok(quorum_out(&[1, 2, 3], true)));
        let w = Duration::from_millis(10);
        let poll = Duration::from_millis(20);
        assert_eq!(wait_key_switch(&fake, &[1, 2, 3], w, poll, long), Ok(()));
        fake.assert_done();
        // not quorate counts as not settled; corosync not answering too
        let fake = Fake::new()
            .expect(&quorum, Reply::ok(quorum_out(&[1, 2, 3], false)))
            .expect(&quorum, Reply::fail(1, "Cannot initialize QUORUM service"))
            .expect(&quorum, Reply::ok(quorum_out(&[1, 2, 3], true)));
        assert_eq!(wait_key_switch(&fake, &[1, 2, 3], z, z, long), Ok(()));
        fake.assert_done();
    }

    /// The window covers corosync's failure detection: token (+650 ms per node above two)
    /// plus consensus, with a margin.
    #[test]
    fn key_switch_window_follows_the_token() -> Result<()> {
        use clusterd::corosync_conf::{ConfNode, LatencyClass};
        let n = |id: u32| ConfNode {
            nodeid: id,
            name: format!("n{id}"),
            addrs: vec![format!("192.0.2.{id}")],
        };
        let mut c = CorosyncConf::new("c1", n(1), LatencyClass::Lan);
        c.add_node(n(2))
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(key_switch_window(&c), Duration::from_millis(7500));
        c.add_node(n(3))
            .map_err(|e| Error::Internal(e.to_string()))?;
        assert_eq!(key_switch_window(&c), Duration::from_millis(9125));
        Ok(())
    }

    #[test]
    fn quorum_math() {
        assert_eq!(quorum_needed(1), 1);
        assert_eq!(quorum_needed(2), 1);
        assert_eq!(quorum_needed(3), 2);
        assert_eq!(quorum_needed(4), 3);
        // 3 nodes all up: removing one leaves two (two_node): fine
        assert!(removal_keeps_quorum(3, &[1, 2, 3], 3).is_ok());
        // 4 nodes, 2 and 4 down: removing 3 leaves 1 online of 3 (needs 2)
        assert!(removal_keeps_quorum(4, &[1, 3], 3).is_err());
        // 5 nodes, 4 and 5 down: removing a down node leaves 3 of 4 online (needs 3)
        assert!(removal_keeps_quorum(5, &[1, 2, 3], 5).is_ok());
        // 5 nodes, 4 and 5 down: removing an online one leaves 2 of 4 (needs 3)
        assert!(removal_keeps_quorum(5, &[1, 2, 3], 1).is_err());
        // the last node cannot be removed
        assert!(removal_keeps_quorum(1, &[1], 1).is_err());
    }
}
