//! `GET /api/v1/cluster/status`: corosync's quorum and links, Pacemaker's view, fence devices
//! and fence tests, assembled into one [`ClusterStatus`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use clusterd::commands;
use clusterd::form;
use keel_api::cluster::{ClusterNode, ClusterStatus, FailedAction, LinkStatus, MemberStatus};

use super::fencing::{cib_stonith_devices, fence_tests_of};
use crate::error::Result;
use crate::Node;

/// How long a computed status is served again: UI pages poll every 2-3 s from any number of
/// browsers, and each computation runs `corosync-quorumtool`, `corosync-cfgtool`, `crm_mon`
/// and `cibadmin`. Within this time, and while nothing changed on this node (no task ended, no
/// mutating request: `Tasks::changes`), a request gets the last answer.
pub const STATUS_TTL: Duration = Duration::from_secs(1);

/// The last status, and one computation at a time: requests that arrive while one runs wait
/// for it and share its answer instead of each starting its own engine calls (a wedged
/// `crm_mon` costs one timeout, not one per poll).
#[derive(Default)]
pub struct StatusCache {
    last: Mutex<Option<(Instant, u64, ClusterStatus)>>,
    computing: Mutex<()>,
}

impl StatusCache {
    fn fresh(&self, generation: u64) -> Option<ClusterStatus> {
        let g = self.last.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .filter(|(at, gen, _)| *gen == generation && at.elapsed() < STATUS_TTL)
            .map(|(_, _, s)| s.clone())
    }
}

/// The cluster status, from [`StatusCache`] when fresh.
pub fn cluster_status(node: &Node) -> Result<ClusterStatus> {
    let cache = &node.cluster.status_cache;
    let generation = node.tasks.changes();
    if let Some(s) = cache.fresh(generation) {
        return Ok(s);
    }
    let _one = cache.computing.lock().unwrap_or_else(|p| p.into_inner());
    // another request may have computed it while this one waited
    let generation = node.tasks.changes();
    if let Some(s) = cache.fresh(generation) {
        return Ok(s);
    }
    let s = compute_status(node)?;
    *cache.last.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((Instant::now(), generation, s.clone()));
    Ok(s)
}

fn compute_status(node: &Node) -> Result<ClusterStatus> {
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
            qdevice: None,
        });
    };
    let conf = form::read_corosync_conf(&cs.paths)?;
    let r = cs.runner.as_ref();
    // the four engine commands at once: a status costs the slowest (crm_mon, which grows with
    // the cluster: ~285 ms at 16 nodes in the netns lab), not their sum
    let (q, links, crm, devices) = std::thread::scope(|s| {
        let q = s.spawn(|| form::quorum(r));
        let links = s.spawn(|| {
            r.run(&commands::link_status())
                .ok()
                .and_then(|o| clusterd::crm::LinkStatus::parse(&o.stdout).ok())
        });
        let crm = s.spawn(|| form::crm_status(r));
        let devices = cib_stonith_devices(r);
        let gone = |_| crate::error::Error::Internal("a cluster status query panicked".into());
        Ok::<_, crate::error::Error>((
            q.join().map_err(gone)?,
            links.join().map_err(gone)?,
            crm.join().map_err(gone)?,
            devices,
        ))
    })?;
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
    let qdevice = super::qdevice::status_of(cs, &conf, q.as_ref());
    if qdevice.configured && qdevice.votes.unwrap_or(0) == 0 {
        notes.push(format!(
            "the QDevice ({}) casts no vote: check corosync-qdevice on this node and corosync-qnetd on its host",
            qdevice.host.as_deref().unwrap_or("?")
        ));
    }
    let daemons = crate::daemons::daemon_statuses(node);
    let store = crate::daemons::store_state();
    notes.extend(crate::daemons::status_notes(&daemons, &store));
    let names: Vec<&str> = conf.nodes.iter().map(|n| n.name.as_str()).collect();
    let mut tests = fence_tests_of(cs, &names);
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
                connected: if local {
                    q.is_some() && local_link_up(conf.nodes.len(), links.as_ref(), i)
                } else {
                    peer.is_some_and(|p| {
                        p.links.iter().any(|l| l.link as usize == i && l.connected)
                    })
                },
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
            last_fence_test: tests.remove(&n.name),
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
        qdevice: Some(qdevice),
    })
}

/// This node's own link `i` is up when it carries traffic to some peer (knet reports links per
/// peer only); a single node has no peer and counts its links up while corosync runs. A link
/// cut on this node's side then shows down on this node too, not only on the peers' lines.
fn local_link_up(members: usize, links: Option<&clusterd::crm::LinkStatus>, i: usize) -> bool {
    if members <= 1 {
        return true;
    }
    links.is_some_and(|l| {
        l.peers
            .iter()
            .any(|p| p.links.iter().any(|k| k.link as usize == i && k.connected))
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use keel_runner::{Cmd, Output, RunError, Runner, System};
    use tower::ServiceExt;

    use crate::error::{Error, Result};

    /// Runs each command's stand-in from `dir` (same arguments and stdin, the production
    /// timeout capped at `cap` to keep the test short) on the real runner.
    struct StandIns {
        dir: PathBuf,
        cap: Duration,
    }

    impl Runner for StandIns {
        fn run(&self, cmd: &Cmd) -> std::result::Result<Output, RunError> {
            let mut c = Cmd::new(self.dir.join(cmd.program()).display().to_string())
                .args(cmd.get_args().iter().cloned())
                .timeout(cmd.get_timeout().min(self.cap));
            if let Some(i) = cmd.get_stdin() {
                c = c.stdin(i);
            }
            System.run(&c)
        }
    }

    fn err(e: impl std::fmt::Display) -> Error {
        Error::Internal(e.to_string())
    }

    /// A directory of executable stand-ins for the four engine commands a status runs, each
    /// with the script `script(program, dir)` returns.
    fn stand_in_engines(
        script: impl Fn(&str, &std::path::Path) -> String,
    ) -> Result<tempfile::TempDir> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        for prog in [
            "cibadmin",
            "crm_mon",
            "corosync-quorumtool",
            "corosync-cfgtool",
        ] {
            let p = dir.path().join(prog);
            std::fs::write(&p, script(prog, dir.path()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(dir)
    }

    /// Pacemaker and corosync wedged (stand-ins that never answer): the fencing list ends as a
    /// 503 naming the command and its timeout, concurrent status polls cost one computation, and
    /// other endpoints answer at once meanwhile.
    #[test]
    fn a_wedged_engine_command_times_out_while_other_endpoints_answer() -> Result<()> {
        let dir = stand_in_engines(|prog, dir| {
            format!(
                "#!/bin/sh\necho {prog} >> '{}'\necho wedged >&2\nexec sleep 1000\n",
                dir.join("calls.log").display()
            )
        })?;
        let cap = Duration::from_millis(1500);
        let runner = Arc::new(StandIns {
            dir: dir.path().to_path_buf(),
            cap,
        });
        let (node, _paths, _s, _f) =
            super::super::testlab::clustered_on(&[("n1", "127.0.0.1", "127.0.0.1:8006")], runner)?;
        let tok = node.auth.create_token("root", "wedge", None)?;
        let auth = format!(
            "{} {}={}",
            keel_api::auth::TOKEN_SCHEME,
            tok.full_tokenid,
            tok.secret
        );
        let app = crate::api::router(node.clone());
        let get = |path: &str| -> Result<Request<Body>> {
            Request::get(path)
                .header("Authorization", &auth)
                .body(Body::empty())
                .map_err(err)
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async {
            let t0 = Instant::now();
            let fencing = tokio::spawn(app.clone().oneshot(get("/api/v1/cluster/fencing")?));
            let statuses: Vec<_> = (0..4)
                .map(|_| get("/api/v1/cluster/status").map(|r| tokio::spawn(app.clone().oneshot(r))))
                .collect::<Result<_>>()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            // meanwhile, VMs and the node answer promptly
            for path in ["/api/v1/nodes/n1/vms", "/api/v1/nodes/n1", "/api/v1/health"] {
                let t1 = Instant::now();
                let r = app.clone().oneshot(get(path)?).await.map_err(err)?;
                assert_eq!(r.status(), StatusCode::OK, "{path}");
                assert!(
                    t1.elapsed() < Duration::from_secs(1),
                    "{path} took {:?} while the engine was wedged",
                    t1.elapsed()
                );
            }
            let r = fencing.await.map_err(err)?.map_err(err)?;
            let took = t0.elapsed();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.map_err(err)?;
            let text = String::from_utf8_lossy(&body);
            assert!(
                text.contains("cibadmin --query --scope resources did not finish within 1.5s and was killed: wedged"),
                "{text}"
            );
            assert!(took >= cap && took < Duration::from_secs(5), "took {took:?}");
            // four concurrent polls: all answered (the wedged engine is a note in the status,
            // not a failure), by ONE computation — crm_mon ran once, not once per poll
            for s in statuses {
                let r = s.await.map_err(err)?.map_err(err)?;
                assert_eq!(r.status(), StatusCode::OK);
            }
            let calls = std::fs::read_to_string(dir.path().join("calls.log"))?;
            let crm_mon = calls.lines().filter(|l| *l == "crm_mon").count();
            assert_eq!(crm_mon, 1, "status computations for 4 concurrent polls: {calls}");
            assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
            Ok::<_, Error>(())
        })
    }

    /// Each engine command takes 0.8 s (a busy 16-node cluster's crm_mon takes ~0.3-1.5 s):
    /// the status runs the four at once and costs about one of them, not their sum (3.2 s).
    #[test]
    fn the_engine_commands_of_a_status_run_at_once() -> Result<()> {
        let dir = stand_in_engines(|_, _| "#!/bin/sh\nsleep 0.8\necho slow >&2\nexit 1\n".into())?;
        let runner = Arc::new(StandIns {
            dir: dir.path().to_path_buf(),
            cap: Duration::from_secs(10),
        });
        let (node, _paths, _s, _f) =
            super::super::testlab::clustered_on(&[("n1", "127.0.0.1", "127.0.0.1:8006")], runner)?;
        let t0 = Instant::now();
        let st = super::compute_status(&node)?;
        let took = t0.elapsed();
        assert!(
            st.notes
                .iter()
                .any(|n| n.contains("corosync is not running"))
                && st
                    .notes
                    .iter()
                    .any(|n| n.contains("Pacemaker does not answer")),
            "{:?}",
            st.notes
        );
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_millis(2000),
            "a status with four 0.8 s engine commands took {took:?}: run one after the other?"
        );
        Ok(())
    }

    /// With link0 cut, knet lists the peer with link 1 only connected: this node's link0 is
    /// down and its link1 up; alone, its links count as up.
    #[test]
    fn the_local_links_follow_the_peers() -> Result<()> {
        let text = "Local node ID 1, transport knet\nnodeid: 2 reachable\n   LINK: 0 udp (10.0.0.1->10.0.0.2) enabled disconnected mtu: 1397\n   LINK: 1 udp (10.1.0.1->10.1.0.2) enabled connected mtu: 1397\n";
        let l =
            clusterd::crm::LinkStatus::parse(text).map_err(|e| Error::Internal(e.to_string()))?;
        use super::local_link_up;
        assert!(!local_link_up(2, Some(&l), 0));
        assert!(local_link_up(2, Some(&l), 1));
        assert!(!local_link_up(2, None, 1));
        assert!(local_link_up(1, None, 0));
        Ok(())
    }
}
