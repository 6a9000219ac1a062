//! The cluster daemons of this node kept up, and their state (and the config store's) for the
//! status API.
//!
//! At start a clustered node starts corosync, then — only once corosync answers — Pacemaker
//! and keel-clusterd ([`boot`]). If corosync does not start, the others are not started
//! either and the reason is kept for the status.
//!
//! With the `direct` service manager hostd is the daemons' supervisor ([`Supervisor`], a
//! thread started by [`boot`]): a daemon that died is restarted with a growing delay (1 s,
//! 2 s, 4 s … capped at [`MAX_BACKOFF`], back to 1 s once it stayed up [`RESET_AFTER`]), in
//! dependency order — Pacemaker and keel-clusterd only while corosync answers. A daemon Keel
//! stopped on purpose (leave, node removal) is not restarted, and nothing is done while the
//! node is not clustered. Under systemd the units' own `Restart=` does this job.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterd::form::Paths;
use clusterd::service::{self, Daemon, ServiceManager};
use keel_api::cluster::{DaemonStatus, StoreState};

use crate::Node;

/// First restart delay after a daemon died.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A daemon up this long is healthy again: its next death restarts after [`FIRST_BACKOFF`].
pub const RESET_AFTER: Duration = Duration::from_secs(60);
/// How often the supervisor looks.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How long a start waits for a fresh corosync to answer before starting the others.
pub const COROSYNC_ANSWER_WAIT: Duration = Duration::from_secs(30);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether keel-clusterd is installed (as hostd's cluster state finds it).
pub fn clusterd_installed(node: &Node) -> bool {
    node.cfg.cluster.clusterd_bin.is_some()
        || std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.join("keel-clusterd")))
            .is_some_and(|p| p.exists())
}

/// The daemons this node runs, in dependency order.
fn daemons(clusterd: bool) -> Vec<Daemon> {
    Daemon::ALL
        .into_iter()
        .filter(|d| clusterd || *d != Daemon::Clusterd)
        .collect()
}

/// corosync.conf has a `quorum.device`: corosync-qdevice belongs to this node's daemons.
pub fn qdevice_configured(paths: &Paths) -> bool {
    clusterd::form::read_corosync_conf(paths).is_ok_and(|c| c.qdevice.is_some())
}

/// The daemons this node runs now, in dependency order: [`daemons`] and corosync-qdevice while
/// a QDevice is configured.
fn daemons_now(clusterd: bool, paths: &Paths) -> Vec<Daemon> {
    let mut v = daemons(clusterd);
    if qdevice_configured(paths) {
        v.push(Daemon::Qdevice);
    }
    v
}

/// Start corosync; only if it runs and answers, Pacemaker and keel-clusterd. Returns why the
/// others were not started, if they were not.
pub fn start_in_order(
    svc: &dyn ServiceManager,
    clusterd: bool,
    corosync_answers: &dyn Fn() -> bool,
    answer_wait: Duration,
) -> Result<(), String> {
    let blocked = |why: String| {
        for d in daemons(clusterd).into_iter().skip(1) {
            svc.set_note(d, None, Some(format!("not started: {why}")));
        }
        Err(why)
    };
    if let Err(e) = svc.start(Daemon::Corosync) {
        tracing::error!(error = %e, "corosync did not start: Pacemaker and keel-clusterd are not started");
        return blocked(format!("corosync did not start ({e})"));
    }
    let t0 = Instant::now();
    while !corosync_answers() {
        if t0.elapsed() >= answer_wait {
            tracing::error!(
                "corosync runs but does not answer: Pacemaker and keel-clusterd are not started"
            );
            return blocked(format!(
                "corosync does not answer (corosync-cfgtool -s) {}s after its start",
                answer_wait.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut errs = vec![];
    for d in daemons(clusterd).into_iter().skip(1) {
        if let Err(e) = svc.start(d) {
            tracing::warn!(daemon = d.name(), error = %e, "cannot start cluster daemon");
            errs.push(e.to_string());
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// After a restart of hostd: a clustered node starts its daemons again (with either service
/// manager: init and join only start the units, which the images leave disabled, so after a
/// reboot nothing else would), in order; with the direct manager the supervisor follows.
pub fn boot(node: &Node) {
    let cs = &node.cluster;
    let clusterd = clusterd_installed(node);
    if matches!(cs.record(), Ok(Some(_))) {
        let r = start_in_order(
            cs.svc.as_ref(),
            clusterd,
            &service::corosync_running,
            COROSYNC_ANSWER_WAIT,
        );
        if let Err(e) = r {
            tracing::warn!("cluster daemons: {e}");
        } else if qdevice_configured(&cs.paths) {
            if let Err(e) = cs.svc.start(Daemon::Qdevice) {
                tracing::warn!(error = %e, "cannot start corosync-qdevice");
            }
        }
    }
    if cs.svc.kind() == "direct" {
        let sup = Supervisor::new(cs.svc.clone(), cs.paths.clone(), clusterd);
        let spawned = std::thread::Builder::new()
            .name("daemon-supervisor".into())
            .spawn(move || sup.run());
        if let Err(e) = spawned {
            tracing::error!("cannot start the cluster daemon supervisor: {e}");
        }
    }
}

/// Restart bookkeeping of one daemon.
#[derive(Debug, Clone)]
struct Track {
    delay: Duration,
    next_try: Option<Instant>,
    up_since: Option<Instant>,
}

impl Default for Track {
    fn default() -> Self {
        Track {
            delay: FIRST_BACKOFF,
            next_try: None,
            up_since: None,
        }
    }
}

/// Restarts daemons that died (see the module documentation).
pub struct Supervisor {
    svc: Arc<dyn ServiceManager>,
    paths: Paths,
    clusterd: bool,
    tracks: HashMap<Daemon, Track>,
    /// Bounds (tests shorten them).
    pub first: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Supervisor {
    pub fn new(svc: Arc<dyn ServiceManager>, paths: Paths, clusterd: bool) -> Supervisor {
        Supervisor {
            svc,
            paths,
            clusterd,
            tracks: HashMap::new(),
            first: FIRST_BACKOFF,
            max: MAX_BACKOFF,
            reset_after: RESET_AFTER,
        }
    }

    fn run(mut self) {
        tracing::info!("cluster daemon supervisor running (direct service manager)");
        loop {
            std::thread::sleep(INTERVAL);
            if !self.paths.record().exists() {
                // not clustered (or leaving): nothing to keep up
                self.tracks.clear();
                continue;
            }
            self.tick(Instant::now(), &service::corosync_running);
        }
    }

    /// One look at every daemon; restarts what is due. `corosync_answers` is asked only when
    /// a dependent daemon needs starting.
    pub fn tick(&mut self, now: Instant, corosync_answers: &dyn Fn() -> bool) {
        let mut corosync_ok: Option<bool> = None;
        for d in daemons_now(self.clusterd, &self.paths) {
            let first = self.first;
            let t = self.tracks.entry(d).or_insert_with(|| Track {
                delay: first,
                ..Track::default()
            });
            if !self.svc.wanted(d) {
                // stopped on purpose by Keel (or never started by it): not ours to restart
                *t = Track {
                    delay: self.first,
                    ..Track::default()
                };
                continue;
            }
            if self.svc.is_active(d).unwrap_or(false) {
                let up = *t.up_since.get_or_insert(now);
                t.next_try = None;
                if now.duration_since(up) >= self.reset_after {
                    t.delay = self.first;
                }
                continue;
            }
            t.up_since = None;
            if d != Daemon::Corosync {
                let ok = *corosync_ok.get_or_insert_with(|| {
                    self.svc.is_active(Daemon::Corosync).unwrap_or(false) && corosync_answers()
                });
                if !ok {
                    t.next_try = None;
                    self.svc.set_note(
                        d,
                        None,
                        Some("not restarted while corosync is down or does not answer".into()),
                    );
                    continue;
                }
            }
            let Some(at) = t.next_try else {
                t.next_try = Some(now + t.delay);
                tracing::warn!(
                    daemon = d.name(),
                    delay_s = t.delay.as_secs_f32(),
                    "cluster daemon is not running: restarting it"
                );
                self.svc.set_note(
                    d,
                    Some(unix_now() + t.delay.as_secs()),
                    Some(format!("died; restart in {} s", t.delay.as_secs_f32())),
                );
                continue;
            };
            if now < at {
                continue;
            }
            self.svc.count_restart(d);
            let tried = t.delay;
            t.delay = (t.delay * 2).min(self.max);
            match self.svc.start(d) {
                Ok(()) => {
                    tracing::info!(
                        daemon = d.name(),
                        after_s = tried.as_secs_f32(),
                        "cluster daemon restarted"
                    );
                    t.next_try = None;
                    t.up_since = Some(now);
                }
                Err(e) => {
                    tracing::warn!(daemon = d.name(), error = %e, next_s = t.delay.as_secs_f32(), "cluster daemon restart failed");
                    t.next_try = Some(now + t.delay);
                    self.svc.set_note(
                        d,
                        Some(unix_now() + t.delay.as_secs()),
                        Some(format!(
                            "restart failed: {e}; next attempt in {} s",
                            t.delay.as_secs_f32()
                        )),
                    );
                }
            }
        }
    }
}

/// Every daemon of this node, for the status.
pub fn daemon_statuses(node: &Node) -> Vec<DaemonStatus> {
    daemons_now(clusterd_installed(node), &node.cluster.paths)
        .into_iter()
        .map(|d| node.cluster.svc.inspect(d))
        .collect()
}

/// The config store as this node's keel-clusterd sees it (bounded: a wedged daemon makes
/// this "unreachable", not a hung status page).
pub fn store_state() -> StoreState {
    let c = clusterd::store::client::Client::local();
    let r = tokio::runtime::Handle::try_current()
        .map_err(|e| e.to_string())
        .and_then(|h| {
            h.block_on(async {
                tokio::time::timeout(Duration::from_secs(3), c.status())
                    .await
                    .map_err(|_| "no answer from keel-clusterd within 3 s".to_string())?
                    .map_err(|e| e.to_string())
            })
        });
    store_state_of(r)
}

/// A store status (or why it could not be had) as the API shows it.
pub fn store_state_of(r: Result<clusterd::store::Status, String>) -> StoreState {
    match r {
        Err(e) => StoreState {
            reachable: false,
            read_only_reason: Some(format!(
                "the config store is unreachable on this node: logins and cluster-wide reads and writes fail ({e})"
            )),
            error: Some(e),
            writable: false,
            held: None,
            version: None,
            syncing: false,
            members: vec![],
            entries: None,
        },
        Ok(s) => {
            let why = if s.writable {
                None
            } else if let Some(h) = &s.held {
                Some(h.clone())
            } else if s.syncing {
                Some("syncing after a membership change".into())
            } else if !s.quorate {
                Some("not quorate: this node's partition does not hold corosync quorum".into())
            } else {
                Some("not every member of the store's view reported quorum for the newest ring yet".into())
            };
            StoreState {
                reachable: true,
                error: None,
                writable: s.writable,
                read_only_reason: why,
                held: s.held,
                version: Some(s.version),
                syncing: s.syncing,
                members: s.members,
                entries: Some(s.entries as u64),
            }
        }
    }
}

/// Notes for the status when a daemon or the store is not well.
pub fn status_notes(daemons: &[DaemonStatus], store: &StoreState) -> Vec<String> {
    let mut notes = vec![];
    for d in daemons {
        if d.state != keel_api::cluster::DaemonRunState::Running {
            let mut n = format!("{} is {:?} on this node", d.name, d.state).to_lowercase();
            if let Some(m) = &d.message {
                n.push_str(&format!(": {m}"));
            }
            notes.push(n);
        }
    }
    if let Some(why) = &store.read_only_reason {
        notes.push(format!("config store read-only: {why}"));
    }
    notes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clusterd::service::Direct;
    use keel_api::cluster::DaemonRunState;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn paths(dir: &std::path::Path) -> Paths {
        Paths {
            corosync_dir: dir.join("corosync"),
            pacemaker_dir: dir.join("pacemaker"),
            pacemaker_cib_dir: dir.join("cib"),
            cluster_dir: dir.join("cluster"),
            ssh_dir: dir.join("ssh"),
            known_hosts: dir.join("known_hosts"),
            root_ssh_dir: dir.join("root_ssh"),
            sbd_defaults: dir.join("sbd"),
        }
    }

    /// `sleep` stands in for the daemons; corosync's "answer" is a flag.
    fn direct(dir: &std::path::Path, corosync: &[&str]) -> Arc<Direct> {
        Arc::new(
            Direct::new(dir, None, vec![])
                .with_program(Daemon::Corosync, corosync)
                .with_program(Daemon::Pacemaker, &["sleep", "300"])
                .with_program(Daemon::Clusterd, &["sleep", "300"])
                .with_stop_grace(Duration::from_secs(5)),
        )
    }

    fn kill9(pid: u32) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }

    fn wait_dead(svc: &dyn ServiceManager, d: Daemon) {
        let t0 = Instant::now();
        while svc.is_active(d).unwrap() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn corosync_failing_to_start_blocks_the_others_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let svc = direct(dir.path(), &["sh", "-c", "echo bad config >&2; exit 8"]);
        let r = start_in_order(svc.as_ref(), true, &|| true, Duration::from_secs(1));
        let e = r.unwrap_err();
        assert!(e.contains("corosync did not start"), "{e}");
        for d in [Daemon::Pacemaker, Daemon::Clusterd] {
            let st = svc.inspect(d);
            assert_eq!(st.state, DaemonRunState::Dead, "{st:?}");
            assert!(
                st.message
                    .as_deref()
                    .unwrap()
                    .starts_with("not started: corosync did not start"),
                "{st:?}"
            );
        }
        // corosync runs but never answers: the same
        let svc = direct(dir.path(), &["sleep", "300"]);
        let e =
            start_in_order(svc.as_ref(), true, &|| false, Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("does not answer"), "{e}");
        assert!(!svc.is_active(Daemon::Pacemaker).unwrap());
        svc.stop(Daemon::Corosync).unwrap();
    }

    #[test]
    fn dead_daemons_restart_with_backoff_in_dependency_order_and_intent_is_respected() {
        let dir = tempfile::tempdir().unwrap();
        let svc = direct(dir.path(), &["sleep", "300"]);
        let answers = Arc::new(AtomicBool::new(true));
        let a = answers.clone();
        let ans = move || a.load(Ordering::SeqCst);
        start_in_order(svc.as_ref(), true, &ans, Duration::from_secs(1)).unwrap();
        let mut sup = Supervisor::new(svc.clone(), paths(dir.path()), true);
        sup.first = Duration::from_secs(1);
        sup.max = Duration::from_secs(4);
        sup.reset_after = Duration::from_secs(100);
        let t0 = Instant::now();
        sup.tick(t0, &ans);
        for d in Daemon::ALL {
            assert_eq!(svc.inspect(d).state, DaemonRunState::Running);
        }

        // Pacemaker dies: restarting after 1 s, then 2 s, then 4 s, 4 s (capped)
        let mut now = t0;
        for (round, delay) in [1u64, 2, 4, 4].into_iter().enumerate() {
            let pid = svc.inspect(Daemon::Pacemaker).pid.unwrap();
            kill9(pid);
            wait_dead(svc.as_ref(), Daemon::Pacemaker);
            now += Duration::from_millis(10);
            sup.tick(now, &ans);
            let st = svc.inspect(Daemon::Pacemaker);
            assert_eq!(
                st.state,
                DaemonRunState::Restarting,
                "round {round}: {st:?}"
            );
            // not before its delay
            sup.tick(
                now + Duration::from_secs(delay) - Duration::from_millis(1),
                &ans,
            );
            assert!(!svc.is_active(Daemon::Pacemaker).unwrap(), "round {round}");
            now += Duration::from_secs(delay);
            sup.tick(now, &ans);
            let st = svc.inspect(Daemon::Pacemaker);
            assert_eq!(st.state, DaemonRunState::Running, "round {round}: {st:?}");
            assert_eq!(st.restarts, round as u32 + 1);
            assert_ne!(st.pid, Some(pid));
            assert_eq!(st.last_exit.map(|e| e.pid), Some(Some(pid)));
        }
        // it stays up long enough: the delay is back to 1 s
        now += Duration::from_secs(100);
        sup.tick(now, &ans);
        kill9(svc.inspect(Daemon::Pacemaker).pid.unwrap());
        wait_dead(svc.as_ref(), Daemon::Pacemaker);
        sup.tick(now, &ans);
        now += Duration::from_secs(1);
        sup.tick(now, &ans);
        assert!(svc.is_active(Daemon::Pacemaker).unwrap(), "reset to 1 s");

        // corosync dies and does not answer: keel-clusterd, dead too, waits for it
        answers.store(false, Ordering::SeqCst);
        kill9(svc.inspect(Daemon::Corosync).pid.unwrap());
        kill9(svc.inspect(Daemon::Clusterd).pid.unwrap());
        wait_dead(svc.as_ref(), Daemon::Corosync);
        wait_dead(svc.as_ref(), Daemon::Clusterd);
        for _ in 0..3 {
            now += Duration::from_secs(5);
            sup.tick(now, &ans);
        }
        assert!(
            svc.is_active(Daemon::Corosync).unwrap(),
            "corosync restarted"
        );
        let st = svc.inspect(Daemon::Clusterd);
        assert_eq!(st.state, DaemonRunState::Dead, "{st:?}");
        assert!(st.message.unwrap().contains("corosync"));
        answers.store(true, Ordering::SeqCst);
        for _ in 0..2 {
            now += Duration::from_secs(5);
            sup.tick(now, &ans);
        }
        assert!(
            svc.is_active(Daemon::Clusterd).unwrap(),
            "restarted once corosync answers"
        );

        // stopped on purpose (leave): never restarted
        svc.stop(Daemon::Clusterd).unwrap();
        for _ in 0..3 {
            now += Duration::from_secs(60);
            sup.tick(now, &ans);
        }
        assert_eq!(svc.inspect(Daemon::Clusterd).state, DaemonRunState::Stopped);
        for d in [Daemon::Pacemaker, Daemon::Corosync] {
            svc.stop(d).unwrap();
        }
    }

    #[test]
    fn openapi_documents_daemon_and_store_state() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::api::ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for name in ["DaemonStatus", "DaemonRunState", "DaemonExit", "StoreState"] {
            assert!(
                schemas.get(name).is_some(),
                "{name} missing from the OpenAPI document"
            );
        }
        let props = &schemas["ClusterStatus"]["properties"];
        assert!(props.get("daemons").is_some() && props.get("store").is_some());
    }

    #[test]
    fn store_state_says_why_it_is_read_only() {
        let s = store_state_of(Err("connecting to /run/keel/clusterd.sock: refused".into()));
        assert!(!s.reachable && !s.writable);
        assert!(s.read_only_reason.unwrap().contains("unreachable"));
        let st = clusterd::store::Status {
            node_id: 1,
            quorate: false,
            writable: false,
            held: None,
            members: vec![1],
            version: 7,
            hash: String::new(),
            syncing: false,
            last_sync: None,
            divergences: 0,
            entries: 3,
        };
        let s = store_state_of(Ok(st));
        assert!(s.reachable);
        assert_eq!(s.version, Some(7));
        assert!(s.read_only_reason.unwrap().starts_with("not quorate"));
    }
}
