//! Resolving a DRBD split brain of a `drbd-gfs2` pool: an explicit decision naming the node
//! whose changes since the split are discarded (the *victim*), never a guess.
//!
//! Detection: DRBD calls the resource's `split-brain` handler when it finds both sides changed
//! and its policy (`after-sb-2pri disconnect`) refuses to pick one; Keel's handler leaves a
//! marker ([`marker`]) and mails root, and both sides stay `StandAlone`. `keel storage status`
//! shows the marker per node.
//!
//! Resolution ([`resolve`]), run by the node that received the call:
//!
//! 1. both sides are up and not connected, the survivor's disk is `UpToDate` (else refused);
//! 2. Pacemaker is told not to promote DRBD on the victim (`crm_resource --ban --promoted`):
//!    it unmounts the GFS2 there, deactivates the LV and demotes DRBD — the victim's copy is
//!    never mounted again before it is resynced;
//! 3. the victim (once Secondary): `disconnect`, `connect --discard-my-data`; the survivor:
//!    `adjust` (its configuration back, fencing included, and a connect);
//! 4. the resync of the blocks that differ, its progress in the task; both `UpToDate`;
//! 5. `adjust` on the victim too, the markers removed, the ban cleared: Pacemaker promotes the
//!    victim and mounts the file system there again.

use std::thread::sleep;
use std::time::{Duration, Instant};

use keel_runner::{Cmd, Runner};

use crate::drbd::{DRBDADM, SPLIT_BRAIN_DIR};
use crate::drbd_gfs2::{drbd_state, DrbdGfs2, Sink, Waits};
use crate::drbd_state::DrbdState;
use crate::StorageError;

const T: Duration = Duration::from_secs(30);

/// The marker the split-brain handler leaves for `res`.
pub fn marker(res: &str) -> String {
    format!("{SPLIT_BRAIN_DIR}/{res}")
}

/// Whether this node's handler reported a split brain of `res` (since the last boot).
pub fn marked(r: &dyn Runner, res: &str) -> Result<bool, StorageError> {
    Ok(r.run(&Cmd::argv(&["test", "-e", &marker(res)]).timeout(T))?
        .success())
}

/// One side of the pool, here or through the peer call.
pub trait SplitBrainNode {
    fn name(&self) -> &str;
    /// DRBD's state of the pool's minor on the node (`None`: the resource is down).
    fn state(&self, pool: &DrbdGfs2) -> Result<Option<DrbdState>, StorageError>;
    /// [`discard_node`] there.
    fn discard(&self, pool: &DrbdGfs2) -> Result<(), StorageError>;
    /// [`adjust_node`] there.
    fn adjust(&self, pool: &DrbdGfs2) -> Result<(), StorageError>;
}

/// The victim's side: out of the old connection attempt, then connect again throwing its own
/// changes away. `disconnect` fails on a resource that is already StandAlone; that is fine.
pub fn discard_node(r: &dyn Runner, pool: &DrbdGfs2) -> Result<(), StorageError> {
    let res = &pool.drbd.name;
    r.run(&Cmd::argv(&[DRBDADM, "disconnect", res]).timeout(T))?;
    r.run_ok(&Cmd::argv(&[DRBDADM, "connect", "--discard-my-data", res]).timeout(T))?;
    Ok(())
}

/// The resource's configuration applied again (fencing included, whatever was changed by
/// hand), which also connects a StandAlone side; and the split-brain marker removed.
pub fn adjust_node(r: &dyn Runner, pool: &DrbdGfs2) -> Result<(), StorageError> {
    r.run_ok(&Cmd::argv(&[DRBDADM, "adjust", &pool.drbd.name]).timeout(T))?;
    r.run_ok(&Cmd::argv(&["rm", "-f", &marker(&pool.drbd.name)]).timeout(T))?;
    Ok(())
}

/// The local side of a resolution.
pub struct Local<'a> {
    pub name: &'a str,
    pub r: &'a dyn Runner,
}

impl SplitBrainNode for Local<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn state(&self, pool: &DrbdGfs2) -> Result<Option<DrbdState>, StorageError> {
        drbd_state(self.r, pool.drbd.minor)
    }
    fn discard(&self, pool: &DrbdGfs2) -> Result<(), StorageError> {
        discard_node(self.r, pool)
    }
    fn adjust(&self, pool: &DrbdGfs2) -> Result<(), StorageError> {
        adjust_node(self.r, pool)
    }
}

/// `crm_resource --ban --promoted`: DRBD may run on `node`, never promoted there.
pub fn ban_promoted(pool: &DrbdGfs2, node: &str) -> Cmd {
    Cmd::argv(&[
        "crm_resource",
        "--ban",
        "--promoted",
        "--resource",
        &pool.stack().drbd_clone_id(),
        "--node",
        node,
    ])
    .timeout(Duration::from_secs(60))
}

/// The ban removed (Pacemaker may promote there again).
pub fn clear_ban(pool: &DrbdGfs2, node: &str) -> Cmd {
    Cmd::argv(&[
        "crm_resource",
        "--clear",
        "--resource",
        &pool.stack().drbd_clone_id(),
        "--node",
        node,
    ])
    .timeout(Duration::from_secs(60))
}

/// What must hold before anything changes: both sides up and not connected, the survivor's
/// disk UpToDate. Reads only.
pub fn check(
    pool: &DrbdGfs2,
    victim: &str,
    v: Option<&DrbdState>,
    survivor: &str,
    s: Option<&DrbdState>,
) -> Result<(), StorageError> {
    let res = &pool.drbd.name;
    let (Some(v), Some(s)) = (v, s) else {
        let down = if v.is_none() { victim } else { survivor };
        return Err(StorageError::Unsafe(format!(
            "DRBD {res} is down on {down}: a split brain is resolved between two running \
             sides; start the pool's stack there (crm_resource --cleanup) and look again"
        )));
    };
    let linked = |c: &str| {
        c == "Connected" || c.starts_with("Sync") || c.starts_with("PausedSync") || c == "VerifyS"
    };
    if linked(&v.connection) || linked(&s.connection) {
        return Err(StorageError::Unsafe(format!(
            "DRBD {res} is connected ({} on {victim}, {} on {survivor}): there is no split \
             brain to resolve",
            v.connection, s.connection
        )));
    }
    if s.disk != "UpToDate" {
        return Err(StorageError::Unsafe(format!(
            "{survivor}'s disk of {res} is {}, not UpToDate: its data cannot be the one kept; \
             nothing was changed",
            s.disk
        )));
    }
    Ok(())
}

fn wait_until(
    what: &str,
    w: &Waits,
    limit: Duration,
    mut f: impl FnMut() -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    let deadline = Instant::now() + limit;
    loop {
        if f()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StorageError::Unsafe(format!(
                "{what} did not happen within {} s: see `crm_mon -1` and `cat /proc/drbd`",
                limit.as_secs()
            )));
        }
        sleep(w.interval);
    }
}

/// Resolve: the victim's changes since the split are discarded, the survivor's kept.
pub fn resolve(
    r: &dyn Runner,
    victim: &dyn SplitBrainNode,
    survivor: &dyn SplitBrainNode,
    pool: &DrbdGfs2,
    w: &Waits,
    sink: &dyn Sink,
) -> Result<(), StorageError> {
    let res = &pool.drbd.name;
    let (vn, sn) = (victim.name().to_string(), survivor.name().to_string());
    check(
        pool,
        &vn,
        victim.state(pool)?.as_ref(),
        &sn,
        survivor.state(pool)?.as_ref(),
    )?;
    sink.log(&format!(
        "DRBD {res}: keeping {sn}'s data, discarding {vn}'s changes since the split"
    ));
    r.run_ok(&ban_promoted(pool, &vn))?;
    sink.log(&format!(
        "Pacemaker: no promotion of {res} on {vn} (the file system there is stopped first)"
    ));
    let res_down = |s: &Option<DrbdState>| s.as_ref().map(|s| s.role.as_str()) != Some("Primary");
    wait_until(&format!("{vn} demoted"), w, w.pacemaker, || {
        Ok(res_down(&victim.state(pool)?))
    })?;
    sink.progress(0.2);
    let st = victim.state(pool)?;
    if st.is_none() {
        return Err(StorageError::Unsafe(format!(
            "DRBD {res} went down on {vn} while it was demoted: start it again \
             (crm_resource --cleanup --resource {}) and repeat",
            pool.stack().drbd_clone_id()
        )));
    }
    victim.discard(pool)?;
    survivor.adjust(pool)?;
    sink.log(&format!(
        "{vn}: connect --discard-my-data; {sn}: configuration applied again and connected"
    ));
    let mut last = -1.0;
    wait_until(&format!("the resync of {res} to {vn}"), w, w.sync, || {
        let Some(s) = victim.state(pool)? else {
            return Ok(false);
        };
        if let Some(p) = s.sync_percent {
            if p - last >= 10.0 {
                sink.log(&format!("DRBD {res}: resync to {vn} {p:.1}%"));
                last = p;
            }
            sink.progress(0.3 + 0.5 * p / 100.0);
        }
        if s.connection == "StandAlone" {
            return Err(StorageError::Unsafe(format!(
                "DRBD {res}: {vn} refused the connection again (StandAlone): see `dmesg` \
                     on {vn} and {sn}"
            )));
        }
        Ok(s.in_sync())
    })?;
    sink.log(&format!(
        "DRBD {res}: both disks UpToDate, {sn}'s data on both"
    ));
    victim.adjust(pool)?;
    r.run_ok(&clear_ban(pool, &vn))?;
    wait_until(&format!("{vn} promoted again"), w, w.pacemaker, || {
        Ok(victim.state(pool)?.map(|s| s.role) == Some("Primary".into()))
    })?;
    sink.log(&format!(
        "Pacemaker promoted {res} on {vn} again; the file system follows"
    ));
    sink.progress(1.0);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    fn pool() -> DrbdGfs2 {
        DrbdGfs2 {
            pool: "vmstore".into(),
            cluster: "vmpair".into(),
            drbd: crate::drbd::tests::pair(),
            wipe: false,
        }
    }

    fn st(conn: &str, role: &str, disk: &str, pdisk: &str, pct: Option<f64>) -> DrbdState {
        DrbdState {
            minor: 0,
            connection: conn.into(),
            role: role.into(),
            peer_role: "Unknown".into(),
            disk: disk.into(),
            peer_disk: pdisk.into(),
            sync_percent: pct,
            ..Default::default()
        }
    }

    /// A side whose states come from a script, recording what it was asked to do.
    struct Side {
        name: &'static str,
        states: RefCell<VecDeque<Option<DrbdState>>>,
        did: Mutex<Vec<&'static str>>,
    }
    impl Side {
        fn new(name: &'static str, states: Vec<Option<DrbdState>>) -> Side {
            Side {
                name,
                states: RefCell::new(states.into()),
                did: Mutex::new(vec![]),
            }
        }
    }
    impl SplitBrainNode for Side {
        fn name(&self) -> &str {
            self.name
        }
        fn state(&self, _: &DrbdGfs2) -> Result<Option<DrbdState>, StorageError> {
            let mut q = self.states.borrow_mut();
            Ok(if q.len() > 1 {
                q.pop_front().unwrap()
            } else {
                q.front().cloned().unwrap()
            })
        }
        fn discard(&self, _: &DrbdGfs2) -> Result<(), StorageError> {
            self.did.lock().unwrap().push("discard");
            Ok(())
        }
        fn adjust(&self, _: &DrbdGfs2) -> Result<(), StorageError> {
            self.did.lock().unwrap().push("adjust");
            Ok(())
        }
    }

    struct Quiet;
    impl Sink for Quiet {
        fn log(&self, _: &str) {}
        fn progress(&self, _: f64) {}
    }

    fn w() -> Waits {
        Waits {
            interval: Duration::from_millis(1),
            connect: Duration::from_millis(50),
            sync: Duration::from_millis(200),
            pacemaker: Duration::from_millis(200),
        }
    }

    #[test]
    fn resolve_demotes_discards_resyncs_and_promotes() {
        let p = pool();
        let f = keel_runner::Fake::new()
            .expect(
                &ban_promoted(&p, "node2").to_argv(),
                keel_runner::Reply::ok(""),
            )
            .expect(
                &clear_ban(&p, "node2").to_argv(),
                keel_runner::Reply::ok(""),
            );
        let victim = Side::new(
            "node2",
            vec![
                Some(st("StandAlone", "Primary", "UpToDate", "DUnknown", None)),
                Some(st("StandAlone", "Primary", "UpToDate", "DUnknown", None)),
                Some(st("StandAlone", "Secondary", "UpToDate", "DUnknown", None)),
                Some(st("StandAlone", "Secondary", "UpToDate", "DUnknown", None)),
                Some(st(
                    "SyncTarget",
                    "Secondary",
                    "Inconsistent",
                    "UpToDate",
                    Some(40.0),
                )),
                Some(st("Connected", "Secondary", "UpToDate", "UpToDate", None)),
                Some(st("Connected", "Primary", "UpToDate", "UpToDate", None)),
            ],
        );
        let survivor = Side::new(
            "node1",
            vec![Some(st(
                "StandAlone",
                "Primary",
                "UpToDate",
                "DUnknown",
                None,
            ))],
        );
        resolve(&f, &victim, &survivor, &p, &w(), &Quiet).unwrap();
        f.assert_done();
        assert_eq!(*victim.did.lock().unwrap(), vec!["discard", "adjust"]);
        assert_eq!(*survivor.did.lock().unwrap(), vec!["adjust"]);
        assert_eq!(
            ban_promoted(&p, "node2").to_string(),
            "crm_resource --ban --promoted --resource drbd-vmstore-clone --node node2"
        );
    }

    #[test]
    fn refused_without_a_split_or_with_a_stale_survivor() {
        let p = pool();
        let ok = st("StandAlone", "Primary", "UpToDate", "DUnknown", None);
        let conn = st("Connected", "Primary", "UpToDate", "UpToDate", None);
        let e = check(&p, "node2", Some(&conn), "node1", Some(&conn))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no split brain"), "{e}");
        let out = st("StandAlone", "Secondary", "Outdated", "DUnknown", None);
        let e = check(&p, "node2", Some(&ok), "node1", Some(&out))
            .unwrap_err()
            .to_string();
        assert!(e.contains("node1's disk of vmstore is Outdated"), "{e}");
        let e = check(&p, "node2", None, "node1", Some(&ok))
            .unwrap_err()
            .to_string();
        assert!(e.contains("down on node2"), "{e}");
        check(&p, "node2", Some(&ok), "node1", Some(&ok)).unwrap();
        // nothing ran: a refusal changes nothing
        let f = keel_runner::Fake::new();
        let v = Side::new("node2", vec![Some(conn.clone())]);
        let s = Side::new("node1", vec![Some(conn)]);
        assert!(resolve(&f, &v, &s, &p, &w(), &Quiet).is_err());
        assert!(f.ran().is_empty() && v.did.lock().unwrap().is_empty());
    }
}
