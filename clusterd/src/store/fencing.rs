//! Pacemaker's confirmation that a lost two-node peer is safely down, for the two-node hold
//! (see the module doc of [`crate::store`]): [`peer_confirmed_down`] is the rule on one
//! `crm_mon` observation, [`CrmPoller`] the real [`PeerFencing`] backend that runs
//! `crm_mon --output-as=xml` in the background (about once a second while asked, each run
//! bounded by a timeout) so the corosync thread never waits for Pacemaker.

use super::engine::PeerFencing;
use crate::crm::CrmStatus;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often `crm_mon` runs while the replica asks.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Longest a `crm_mon` run may take before it is killed.
pub const CRM_MON_TIMEOUT: Duration = Duration::from_secs(5);

/// The rule on one observation: node `peer` (corosync node id = Pacemaker node id) is offline
/// and not unclean (Pacemaker marks a lost node unclean until fencing succeeds; a clean
/// shutdown also ends offline and clean), or a successful `off`/`reboot` fence of it completed
/// at or after `since_unix` (crm_mon's times have whole seconds: compare with the floor).
pub fn peer_confirmed_down(s: &CrmStatus, peer: u32, since_unix: u64) -> bool {
    let Some(n) = s.node_by_id(peer) else {
        return false;
    };
    if !n.online && !n.unclean && !n.pending {
        return true;
    }
    s.fence_history.iter().any(|e| {
        e.target == n.name
            && e.status == "success"
            && matches!(e.action.as_str(), "off" | "reboot")
            && e.completed_unix().is_some_and(|t| t >= since_unix)
    })
}

#[derive(Default)]
struct PollState {
    in_flight: bool,
    /// Start of the last finished run and what it gave.
    last: Option<(Instant, Result<CrmStatus, String>)>,
    /// Last error logged (to log each distinct failure once).
    logged: Option<String>,
}

/// Runs `crm_mon` in a thread of its own whenever asked and the last run is older than
/// [`POLL_EVERY`]; answers from the newest run that started after the hold began.
#[derive(Clone)]
pub struct CrmPoller {
    program: String,
    state: Arc<Mutex<PollState>>,
}

impl Default for CrmPoller {
    /// `crm_mon` from `PATH`, or `/usr/sbin/crm_mon` when that exists (a daemon started with a
    /// PATH without sbin still finds it).
    fn default() -> Self {
        let sbin = "/usr/sbin/crm_mon";
        CrmPoller::new(if std::path::Path::new(sbin).exists() {
            sbin
        } else {
            "crm_mon"
        })
    }
}

impl CrmPoller {
    /// `program` is `crm_mon` (a path for tests).
    pub fn new(program: &str) -> CrmPoller {
        CrmPoller {
            program: program.to_string(),
            state: Arc::new(Mutex::new(PollState::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PollState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn start_poll(&self) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("crm_mon".into())
            .spawn(move || {
                let t0 = Instant::now();
                let r = run_crm_mon(&me.program)
                    .and_then(|xml| CrmStatus::parse(&xml).map_err(|e| e.to_string()));
                let mut st = me.lock();
                st.in_flight = false;
                match &r {
                    Err(e) if st.logged.as_ref() != Some(e) => {
                        tracing::warn!("crm_mon (two-node hold): {e}");
                        st.logged = Some(e.clone());
                    }
                    Ok(_) => st.logged = None,
                    Err(_) => {}
                }
                st.last = Some((t0, r));
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a crm_mon thread: {e}");
            self.lock().in_flight = false;
        }
    }
}

/// `crm_mon --output-as=xml --inactive --fence-history=2`, killed after [`CRM_MON_TIMEOUT`].
fn run_crm_mon(program: &str) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(["--output-as=xml", "--inactive", "--fence-history=2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if t0.elapsed() < CRM_MON_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not answer within {} s",
                    CRM_MON_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    let xml = reader.join().unwrap_or_default();
    // crm_mon exits non-zero when the cluster is unreachable but still prints its XML status;
    // the parser turns a non-zero <status code> into an error with Pacemaker's message.
    if xml.trim().is_empty() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("{program} exited with {status}: {}", err.trim()));
    }
    Ok(xml)
}

impl PeerFencing for CrmPoller {
    fn peer_down(&mut self, peer: u32, since: Instant, since_unix: u64) -> Option<bool> {
        let mut st = self.lock();
        let due = st
            .last
            .as_ref()
            .is_none_or(|(t, _)| t.elapsed() >= POLL_EVERY || *t < since);
        if due && !st.in_flight {
            st.in_flight = true;
            drop(st);
            self.start_poll();
            st = self.lock();
        }
        match &st.last {
            Some((t, Ok(s))) if *t >= since => Some(peer_confirmed_down(s, peer, since_unix)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> CrmStatus {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/samples")
            .join(name);
        CrmStatus::parse(&std::fs::read_to_string(&p).expect("sample")).expect("parse")
    }

    #[test]
    fn confirmation_rule_on_lab_captures() {
        // node3 off (fenced at 00:25:12Z): offline and clean
        let off = sample("crm_mon-node-off.xml");
        assert!(peer_confirmed_down(&off, 3, 0));
        assert!(
            peer_confirmed_down(&off, 3, u64::MAX),
            "offline+clean needs no time"
        );
        assert!(!peer_confirmed_down(&off, 2, 0), "node2 is online");
        assert!(!peer_confirmed_down(&off, 9, 0), "unknown node");
        // node3 rebooted by a fence at 00:24:36Z and online again: only a fence newer than
        // the view change counts
        let rebooted = sample("crm_mon-fenced-failed.xml");
        let fence = rebooted
            .last_fence_of("node3")
            .and_then(|e| e.completed_unix());
        let fence = fence.expect("fence time");
        assert!(peer_confirmed_down(&rebooted, 3, fence));
        assert!(!peer_confirmed_down(&rebooted, 3, fence + 1));
        // a lost node Pacemaker has not fenced yet is unclean: not confirmed
        let mut lost = sample("crm_mon-3-nodes.xml");
        if let Some(n) = lost.nodes.iter_mut().find(|n| n.id == 3) {
            n.online = false;
            n.unclean = true;
        }
        assert!(!peer_confirmed_down(&lost, 3, 0));
    }

    #[test]
    fn poller_answers_only_from_runs_started_after_the_hold() {
        let dir = tempfile::tempdir().expect("tmp");
        let fake = dir.path().join("crm_mon");
        let xml = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/samples/crm_mon-node-off.xml");
        std::fs::write(&fake, format!("#!/bin/sh\ncat '{}'\n", xml.display())).expect("write");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let mut p = CrmPoller::new(&fake.to_string_lossy());
        let since = Instant::now();
        let t0 = Instant::now();
        let mut got = None;
        while t0.elapsed() < Duration::from_secs(10) {
            got = p.peer_down(3, since, 0);
            if got.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got, Some(true));
        assert_eq!(p.peer_down(2, since, 0), Some(false));
        // a hold that began after the last run gets no answer from it
        assert_eq!(p.peer_down(3, Instant::now(), 0), None);
        let mut broken = CrmPoller::new("/nonexistent/crm_mon");
        let since = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(broken.peer_down(3, since, 0), None);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(broken.peer_down(3, since, 0), None);
    }
}
