//! One member's decision logic: apply rules, the quorum rule, sync and queueing (see the
//! module doc of [`crate::store`] for the rules and why they are deterministic).
//!
//! The replica is fed [`Event`]s in the engine's delivery order and multicasts through a
//! [`Cpg`]. It never looks at a clock except to stop waiting for a late quorum verdict
//! ([`Replica::tick`]), which only delays when this member speaks, never what anyone decides.

use super::db::{Content, Db, DbError};
use super::engine::{Cpg, Event, PeerFencing};
use super::proto::{AppliedKey, GroupMsg, Outcome, SnapEnd, SnapEntry, WriteOk, WriteOp};
use super::{under_prefix, Entry, Member, Status, StoreError, SNAPSHOT_CHUNK_BYTES};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How long a member waits for corosync's verdict on a new ring before it reports anyway.
pub const QUORUM_WAIT: Duration = Duration::from_secs(2);

/// How many decided request ids the replicated record keeps (the oldest go first).
pub const MAX_APPLIED: usize = 10_000;
/// A request id is forgotten once a keyed write stamped this much later (origin clocks) is
/// decided: retries must come sooner.
pub const APPLIED_TTL_S: u64 = 24 * 3600;

/// Caller's handle for a write in flight (the daemon maps it to a client connection).
pub type Token = u64;

/// Errors after which this member's copy cannot be trusted: the daemon must exit (and, on
/// restart, resync from the group).
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("snapshot from {leader:?} has hash {got}, announced {want}")]
    SnapshotHash {
        leader: Member,
        got: String,
        want: String,
    },
}

#[derive(Debug)]
enum Sync {
    /// Waiting for every member's `State`: (version, hash, chain).
    Collecting {
        states: BTreeMap<Member, (u64, String, String)>,
    },
    /// The leader is sending its snapshot; `need` = this member replaces its content at the end.
    Snapshot {
        leader: Member,
        target: (u64, String),
        need: bool,
        next_seq: u32,
        entries: Vec<SnapEntry>,
        applied: Vec<AppliedKey>,
    },
    Done,
}

/// A write delivered while syncing: origin, its request number there, the op, its
/// idempotency key and origin time.
#[derive(Debug)]
struct Queued {
    from: Member,
    req: u64,
    op: WriteOp,
    id: Option<String>,
    at: u64,
}

/// The replicated record of decided request ids (see [`Replica::submit_keyed`]).
#[derive(Debug, Default)]
struct Applied {
    by_id: HashMap<String, (u64, u64, Outcome)>,
    /// seq → id, oldest first.
    order: BTreeMap<u64, String>,
    last_seq: u64,
}

impl Applied {
    fn from_records(recs: Vec<AppliedKey>) -> Applied {
        let mut a = Applied::default();
        for (id, seq, at, o) in recs {
            a.last_seq = a.last_seq.max(seq);
            a.order.insert(seq, id.clone());
            a.by_id.insert(id, (seq, at, o));
        }
        a
    }

    fn records(&self) -> Vec<AppliedKey> {
        self.order
            .iter()
            .filter_map(|(seq, id)| {
                let (_, at, o) = self.by_id.get(id)?;
                Some((id.clone(), *seq, *at, o.clone()))
            })
            .collect()
    }

    /// Record `id` decided at origin time `at`; returns the record and the ids forgotten to
    /// make room (the oldest beyond [`MAX_APPLIED`], and those older than [`APPLIED_TTL_S`]
    /// before `at`) — a function of the record and the write only, so every member forgets
    /// the same ones.
    fn remember(&mut self, id: &str, at: u64, o: Outcome) -> (AppliedKey, Vec<String>) {
        let mut forget = vec![];
        while let Some((&seq, old)) = self.order.iter().next() {
            let expired = self
                .by_id
                .get(old)
                .is_some_and(|r| r.1.saturating_add(APPLIED_TTL_S) < at);
            if self.order.len() < MAX_APPLIED && !expired {
                break;
            }
            if let Some(old) = self.order.remove(&seq) {
                self.by_id.remove(&old);
                forget.push(old);
            }
        }
        self.last_seq += 1;
        let seq = self.last_seq;
        self.order.insert(seq, id.to_string());
        self.by_id.insert(id.to_string(), (seq, at, o.clone()));
        ((id.to_string(), seq, at, o), forget)
    }
}

#[derive(Debug)]
struct View {
    members: Vec<Member>,
    /// Latest `(ring, quorate)` reported by each member through the group.
    reports: BTreeMap<Member, (u64, bool)>,
    sync: Sync,
    /// Writes delivered while syncing.
    queue: Vec<Queued>,
    /// When this view began (for the log only: how long writes waited for its sync).
    began: Option<Instant>,
}

impl View {
    fn new(members: Vec<Member>) -> View {
        View {
            members,
            reports: BTreeMap::new(),
            sync: Sync::Collecting {
                states: BTreeMap::new(),
            },
            queue: vec![],
            began: None,
        }
    }

    /// The rule: in sync, and every member's latest report is quorate and for the newest ring
    /// anyone reported.
    fn writable(&self) -> bool {
        if !matches!(self.sync, Sync::Done) || self.members.is_empty() {
            return false;
        }
        let ring = self.reports.values().map(|r| r.0).max().unwrap_or(0);
        self.members
            .iter()
            .all(|m| matches!(self.reports.get(m), Some(&(r, true)) if r == ring))
    }
}

impl View {
    /// Why a delivered write is refused when the view is not writable. Every member quorate
    /// but not all for the newest ring means a verdict on the new ring is still on its way
    /// (only a side that holds quorum produces quorate verdicts for a newer ring): that is a
    /// transient "syncing", not "not quorate" — a majority that lost one node is not told it
    /// is read-only. Anything else (a member reports not quorate, or no report) is the
    /// not-quorate refusal.
    fn refusal(&self) -> StoreError {
        let all_quorate = !self.members.is_empty()
            && self
                .members
                .iter()
                .all(|m| matches!(self.reports.get(m), Some(&(_, true))));
        if all_quorate {
            StoreError::Syncing
        } else {
            StoreError::NotQuorate
        }
    }
}

/// The two-node hold of a lone member (see the module doc of [`crate::store`]).
#[derive(Debug)]
struct Hold {
    /// The peer that left (the other node of the last synced two-node view), if known.
    peer: Option<u32>,
    since: Instant,
    since_unix: u64,
    /// Pacemaker confirmed the peer safely down after `since` (and our copy is current).
    released: bool,
}

pub struct Replica {
    me: Member,
    db: Db,
    content: Content,
    version: u64,
    hash: Option<String>,
    /// Lineage hash at `version` (see [`chain_next`]).
    chain: String,
    /// Latest local quorum notification: (ring, quorate).
    local_quorum: Option<(u64, bool)>,
    /// Highest ring CPG told this member about (local knowledge only).
    local_ring: u64,
    /// What this member last reported to the current view.
    reported: Option<(u64, bool)>,
    /// The `State` for the current view is not sent yet; since when we wait.
    state_due: Option<Instant>,
    view: View,
    next_req: u64,
    pending: HashMap<u64, Token>,
    replies: Vec<(Token, Result<WriteOk, StoreError>)>,
    last_sync: Option<u64>,
    divergences: u64,
    /// Pacemaker's confirmations for the two-node hold (`None`: never confirmed).
    fencing: Option<Box<dyn PeerFencing + Send>>,
    /// This copy holds every write any member can have applied: set when a sync ends in a view
    /// with another node, kept while this process runs (a peer writes alone only after
    /// Pacemaker confirmed this node down, which ends this process). False at start.
    current: bool,
    /// The other node of the last synced multi-node view.
    peer: Option<u32>,
    hold: Option<Hold>,
    /// Decided request ids and their outcomes (replicated: every member records the same).
    applied: Applied,
}

/// SHA-256 over the sorted (key, entry version, value) triples.
pub fn content_hash(c: &Content) -> String {
    let mut h = Sha256::new();
    for (k, (v, val)) in c {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.to_string().as_bytes());
        h.update([0]);
        h.update(val.as_bytes());
        h.update([b'\n']);
    }
    hex::encode(h.finalize())
}

/// Lineage hash after applying `op` on top of `prev`: equal chains at equal versions mean the
/// same sequence of writes; different chains at a version both copies passed mean a fork.
pub fn chain_next(prev: &str, op: &WriteOp) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(op).unwrap_or_default());
    hex::encode(h.finalize())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Replica {
    /// Load this member's copy from `db`.
    pub fn new(me: Member, db: Db) -> Result<Replica, Fatal> {
        let (version, content) = db.load()?;
        let chain = db.chain_at(version)?.unwrap_or_default();
        let applied = Applied::from_records(db.load_applied()?);
        tracing::info!(
            version,
            entries = content.len(),
            db = db.path(),
            "config store loaded"
        );
        Ok(Replica {
            me,
            db,
            content,
            version,
            hash: None,
            chain,
            local_quorum: None,
            local_ring: 0,
            reported: None,
            state_due: None,
            view: View::new(vec![]),
            next_req: 1,
            pending: HashMap::new(),
            replies: vec![],
            last_sync: None,
            divergences: 0,
            fencing: None,
            current: false,
            peer: None,
            hold: None,
            applied,
        })
    }

    /// Where Pacemaker's confirmations for the two-node hold come from.
    pub fn set_fencing(&mut self, f: Box<dyn PeerFencing + Send>) {
        self.fencing = Some(f);
    }

    /// Why writes are held (the two-node rule), if they are.
    pub fn held(&self) -> Option<StoreError> {
        let h = self.hold.as_ref().filter(|h| !h.released)?;
        let peer = h
            .peer
            .map_or_else(|| "the peer node".to_string(), |p| format!("peer node {p}"));
        Some(StoreError::unavailable(if self.current {
            format!(
                "writes held: {peer} left and Pacemaker has not confirmed it down yet (two-node cluster: both halves keep quorum until one is fenced); writes resume once it is fenced or rejoins"
            )
        } else {
            format!(
                "writes held: this node is alone in a two-node cluster and keel-clusterd has not synced with {peer} since it started, so its copy may be behind; writes resume once the peer rejoins"
            )
        }))
    }

    pub fn me(&self) -> Member {
        self.me
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn hash(&mut self) -> String {
        if let Some(h) = &self.hash {
            return h.clone();
        }
        let h = content_hash(&self.content);
        self.hash = Some(h.clone());
        h
    }

    pub fn writable(&self) -> bool {
        self.view.writable() && self.held().is_none()
    }

    pub fn syncing(&self) -> bool {
        !matches!(self.view.sync, Sync::Done)
    }

    /// Outcomes of this member's writes, in the order they were decided.
    pub fn take_replies(&mut self) -> Vec<(Token, Result<WriteOk, StoreError>)> {
        std::mem::take(&mut self.replies)
    }

    // ------------------------------------------------------------------ reads

    pub fn get(&self, key: &str) -> Result<Entry, StoreError> {
        let (v, val) = self.content.get(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        Ok(Entry {
            key: key.to_string(),
            version: *v,
            value: serde_json::from_str(val).unwrap_or(serde_json::Value::Null),
        })
    }

    pub fn list(&self, prefix: &str) -> Vec<Entry> {
        let start = prefix.strip_suffix('/').unwrap_or(prefix);
        self.content
            .range(start.to_string()..)
            .take_while(|(k, _)| k.starts_with(start))
            .filter(|(k, _)| under_prefix(k, prefix))
            .map(|(k, (v, val))| Entry {
                key: k.clone(),
                version: *v,
                value: serde_json::from_str(val).unwrap_or(serde_json::Value::Null),
            })
            .collect()
    }

    pub fn status(&mut self) -> Status {
        let mut members: Vec<u32> = self.view.members.iter().map(|m| m.node).collect();
        members.dedup();
        Status {
            node_id: self.me.node,
            quorate: self.local_quorum.is_some_and(|q| q.1),
            writable: self.writable(),
            held: self.held().map(|e| e.to_string()),
            members,
            version: self.version,
            hash: self.hash(),
            syncing: self.syncing(),
            last_sync: self.last_sync,
            divergences: self.divergences,
            entries: self.content.len(),
        }
    }

    /// Content for tests and diagnostics.
    pub fn content(&self) -> &Content {
        &self.content
    }

    // ------------------------------------------------------------------ writes

    /// Submit a (validated) write. Refused at once when this node is not quorate; otherwise
    /// multicast, and its outcome appears in [`Replica::take_replies`] once delivered here.
    pub fn submit(
        &mut self,
        cpg: &mut dyn Cpg,
        op: WriteOp,
        token: Token,
    ) -> Result<(), StoreError> {
        self.submit_keyed(cpg, op, None, 0, token).map(|_| ())
    }

    /// How the write with request id `id` was decided on this copy, if it was.
    pub fn outcome(&self, id: &str) -> Option<Outcome> {
        self.applied.by_id.get(id).map(|r| r.2.clone())
    }

    /// Submit a write carrying the client's idempotency key `id` (and the origin's clock
    /// `at`, unix seconds). A write whose id was already decided is not sent again: its first
    /// outcome is returned at once (`Some`). Otherwise as [`Replica::submit`] (`None`: the
    /// outcome comes through [`Replica::take_replies`]); should two copies of the same id be
    /// delivered, the second gets the first's outcome without being applied.
    pub fn submit_keyed(
        &mut self,
        cpg: &mut dyn Cpg,
        op: WriteOp,
        id: Option<String>,
        at: u64,
        token: Token,
    ) -> Result<Option<Result<WriteOk, StoreError>>, StoreError> {
        if let Some(o) = id.as_deref().and_then(|i| self.outcome(i)) {
            return Ok(Some(o.result()));
        }
        if !self.local_quorum.is_some_and(|q| q.1) {
            return Err(StoreError::NotQuorate);
        }
        if self.view.members.is_empty() {
            return Err(StoreError::Syncing);
        }
        if let Some(e) = self.held() {
            return Err(e);
        }
        let req = self.next_req;
        self.next_req += 1;
        let msg = GroupMsg::Write { req, op, id, at }.encode();
        cpg.mcast(&msg)
            .map_err(|e| StoreError::unavailable(format!("multicast failed: {e}")))?;
        self.pending.insert(req, token);
        Ok(None)
    }

    // ------------------------------------------------------------------ events

    /// Feed one event from the engine.
    pub fn handle(&mut self, cpg: &mut dyn Cpg, ev: Event, now: Instant) -> Result<(), Fatal> {
        match ev {
            Event::Quorum { ring, quorate } => {
                tracing::info!(ring, quorate, "corosync quorum notification");
                self.local_quorum = Some((ring, quorate));
                self.local_ring = self.local_ring.max(ring);
                self.speak(cpg, now, false);
            }
            Event::Totem { ring } => {
                tracing::info!(ring, "totem ring change");
                self.local_ring = self.local_ring.max(ring);
            }
            Event::ConfChg { mut members } => {
                members.sort();
                tracing::info!(?members, "config store view change: syncing");
                // Writes queued in the old view were seen only by its members: every one of
                // them drops the same queue, so the originators report "syncing".
                for q in std::mem::take(&mut self.view.queue) {
                    self.reply(q.from, q.req, Err(StoreError::Syncing));
                }
                // The quorum notification for the new ring may not have arrived yet (it comes
                // on its own connection); corosync's answer now cannot be older than this
                // confchg. Only a "no" is taken: a "yes" waits for the notification's ring.
                if let (Some(false), Some((ring, true))) = (cpg.quorate_now(), self.local_quorum) {
                    tracing::info!(ring, "quorum lost before its notification arrived");
                    self.local_quorum = Some((ring, false));
                }
                self.view = View::new(members);
                self.view.began = Some(now);
                self.update_hold(cpg, now);
                self.reported = None;
                self.state_due = if self.view.members.contains(&self.me) {
                    Some(now)
                } else {
                    None
                };
                self.speak(cpg, now, false);
            }
            Event::Deliver { from, data } => match GroupMsg::decode(&data) {
                Ok(m) => self.deliver(cpg, from, m)?,
                Err(e) => tracing::error!(?from, "undecodable group message: {e}"),
            },
        }
        Ok(())
    }

    /// Group commit: the writes applied by the events handled until [`Replica::end_batch`]
    /// share one SQLite transaction. Take the replies only after `end_batch` returned.
    pub fn begin_batch(&mut self) -> Result<(), Fatal> {
        Ok(self.db.begin()?)
    }

    pub fn end_batch(&mut self) -> Result<(), Fatal> {
        Ok(self.db.commit()?)
    }

    /// Periodic: stop waiting for a late quorum verdict; ask Pacemaker about a lost peer.
    pub fn tick(&mut self, cpg: &mut dyn Cpg, now: Instant) {
        self.speak(cpg, now, true);
        // corosync reloaded without two_node (e.g. the peer was removed from the cluster)
        if self.held().is_some() && cpg.two_node() == Some(false) {
            tracing::info!("corosync no longer runs two_node: writes are no longer held");
            self.hold = None;
        }
        self.check_hold();
    }

    /// At a view change: a lone member of a two-node cluster holds writes. Only ever true for
    /// a view of one node, so no two members of a view can decide differently.
    fn update_hold(&mut self, cpg: &mut dyn Cpg, now: Instant) {
        let alone = !self.view.members.is_empty()
            && self.view.members.iter().all(|m| m.node == self.me.node);
        if !alone || cpg.two_node() != Some(true) {
            self.hold = None;
            return;
        }
        tracing::warn!(
            peer = ?self.peer,
            current = self.current,
            "alone in a two-node cluster: writes held until Pacemaker confirms the peer down"
        );
        self.hold = Some(Hold {
            peer: self.peer,
            since: now,
            since_unix: unix_now(),
            released: false,
        });
        self.check_hold();
    }

    /// Release the hold once Pacemaker confirms the peer down — only if our copy is current.
    fn check_hold(&mut self) {
        let Some(h) = self.hold.as_mut().filter(|h| !h.released) else {
            return;
        };
        let (Some(peer), true, Some(f)) = (h.peer, self.current, self.fencing.as_mut()) else {
            return;
        };
        if f.peer_down(peer, h.since, h.since_unix) == Some(true) {
            h.released = true;
            tracing::info!(
                peer,
                held_ms = h.since.elapsed().as_millis() as u64,
                "Pacemaker confirms the peer down (fenced or cleanly stopped): writes resume"
            );
        }
    }

    /// Send our `State` (once per view, when we know corosync's verdict on the newest ring or
    /// waited long enough) or a `Quorum` update when the verdict changed.
    fn speak(&mut self, cpg: &mut dyn Cpg, now: Instant, timer: bool) {
        let q = self.local_quorum.unwrap_or((0, false));
        if let Some(since) = self.state_due {
            let fresh = q.0 >= self.local_ring;
            let waited = timer && now.duration_since(since) >= QUORUM_WAIT;
            if !fresh && !waited {
                return;
            }
            if !fresh {
                tracing::warn!(
                    ring = self.local_ring,
                    quorum_ring = q.0,
                    "no quorum verdict for the newest ring; reporting the last one"
                );
            }
            let msg = GroupMsg::State {
                members: self.view.members.clone(),
                version: self.version,
                hash: self.hash(),
                chain: self.chain.clone(),
                ring: q.0,
                quorate: q.1,
            };
            match cpg.mcast(&msg.encode()) {
                Ok(()) => {
                    self.state_due = None;
                    self.reported = Some(q);
                }
                Err(e) => tracing::warn!("sending state: {e}; will retry"),
            }
            return;
        }
        if self.view.members.contains(&self.me) && self.reported.is_some_and(|r| r != q) {
            match cpg.mcast(
                &GroupMsg::Quorum {
                    ring: q.0,
                    quorate: q.1,
                }
                .encode(),
            ) {
                Ok(()) => self.reported = Some(q),
                Err(e) => tracing::warn!("sending quorum update: {e}; will retry"),
            }
        }
    }

    fn reply(&mut self, from: Member, req: u64, r: Result<WriteOk, StoreError>) {
        if from == self.me {
            if let Some(t) = self.pending.remove(&req) {
                self.replies.push((t, r));
            }
        }
    }

    fn deliver(&mut self, cpg: &mut dyn Cpg, from: Member, m: GroupMsg) -> Result<(), Fatal> {
        if !self.view.members.contains(&from) {
            tracing::debug!(?from, "message from a non-member ignored");
            return Ok(());
        }
        match m {
            GroupMsg::Write { req, op, id, at } => {
                if matches!(self.view.sync, Sync::Done) {
                    let r = self.apply_keyed(&op, id.as_deref(), at)?;
                    self.reply(from, req, r);
                } else {
                    self.view.queue.push(Queued {
                        from,
                        req,
                        op,
                        id,
                        at,
                    });
                }
            }
            GroupMsg::Quorum { ring, quorate } => {
                self.view.reports.insert(from, (ring, quorate));
            }
            GroupMsg::State {
                members,
                version,
                hash,
                chain,
                ring,
                quorate,
            } => {
                if members != self.view.members {
                    return Ok(());
                }
                self.view.reports.insert(from, (ring, quorate));
                let Sync::Collecting { states } = &mut self.view.sync else {
                    return Ok(());
                };
                states.entry(from).or_insert((version, hash, chain));
                if states.len() == self.view.members.len() {
                    let states = std::mem::take(states);
                    self.decide(cpg, states)?;
                }
            }
            GroupMsg::Snapshot {
                members,
                seq,
                entries,
                applied,
                last,
            } => {
                if members != self.view.members {
                    return Ok(());
                }
                let Sync::Snapshot {
                    leader,
                    target,
                    need,
                    next_seq,
                    entries: acc,
                    applied: acc_applied,
                } = &mut self.view.sync
                else {
                    return Ok(());
                };
                if from != *leader || seq != *next_seq {
                    return Ok(());
                }
                *next_seq += 1;
                if *need {
                    acc.extend(entries);
                    acc_applied.extend(applied);
                }
                if let Some(end) = last {
                    if (end.version, &end.hash) != (target.0, &target.1) {
                        tracing::error!(
                            "snapshot end announces {}/{}, state said {}/{}",
                            end.version,
                            end.hash,
                            target.0,
                            target.1
                        );
                    }
                    if *need {
                        let leader = *leader;
                        let entries = std::mem::take(acc);
                        let applied = std::mem::take(acc_applied);
                        self.install(leader, end, entries, applied)?;
                    }
                    self.sync_done()?;
                }
            }
        }
        Ok(())
    }

    /// All states are in: agree on the newest copy.
    fn decide(
        &mut self,
        cpg: &mut dyn Cpg,
        states: BTreeMap<Member, (u64, String, String)>,
    ) -> Result<(), Fatal> {
        // highest version; ties to the lowest member (BTreeMap iterates in member order)
        let mut leader: Option<(Member, u64, String)> = None;
        for (m, (v, h, _)) in &states {
            if leader.as_ref().is_none_or(|l| *v > l.1) {
                leader = Some((*m, *v, h.clone()));
            }
        }
        let Some((leader, lv, lh)) = leader else {
            return self.sync_done();
        };
        for (m, (v, h, _)) in &states {
            if *v == lv && *h != lh {
                self.divergences += 1;
                tracing::error!(
                    ?leader,
                    member = ?m,
                    version = v,
                    leader_hash = %lh,
                    member_hash = %h,
                    "CONFIG STORE DIVERGENCE: equal versions, different content; the leader's copy wins, the other is saved next to its database"
                );
            }
        }
        if states.values().all(|(v, h, _)| *v == lv && *h == lh) {
            tracing::info!(version = lv, "config store in sync");
            return self.sync_done();
        }
        let need = states
            .get(&self.me)
            .is_none_or(|(v, h, _)| (*v, h) != (lv, &lh));
        tracing::info!(?leader, version = lv, need, "config store sync by snapshot");
        self.view.sync = Sync::Snapshot {
            leader,
            target: (lv, lh),
            need,
            next_seq: 0,
            entries: vec![],
            applied: vec![],
        };
        if leader == self.me {
            let mut versions: Vec<u64> = states.values().map(|s| s.0).filter(|v| *v < lv).collect();
            versions.sort_unstable();
            versions.dedup();
            let mut lineage = vec![];
            for v in versions {
                if let Some(c) = self.db.chain_at(v)? {
                    lineage.push((v, c));
                }
            }
            self.send_snapshot(cpg, lineage);
        }
        Ok(())
    }

    fn send_snapshot(&mut self, cpg: &mut dyn Cpg, lineage: Vec<(u64, String)>) {
        type Chunk = (Vec<SnapEntry>, Vec<AppliedKey>);
        let mut chunks: Vec<Chunk> = vec![(vec![], vec![])];
        let mut size = 0;
        let mut room = |chunks: &mut Vec<Chunk>, sz: usize| {
            if size + sz > SNAPSHOT_CHUNK_BYTES && size > 0 {
                chunks.push((vec![], vec![]));
                size = 0;
            }
            size += sz;
        };
        for (k, (v, val)) in &self.content {
            room(&mut chunks, k.len() + val.len() + 48);
            if let Some(c) = chunks.last_mut() {
                c.0.push((k.clone(), *v, val.clone()));
            }
        }
        // the record of decided request ids travels in the same chunks, after the entries
        for rec in self.applied.records() {
            room(&mut chunks, rec.0.len() + 160);
            if let Some(c) = chunks.last_mut() {
                c.1.push(rec);
            }
        }
        let n = chunks.len();
        let end = SnapEnd {
            version: self.version,
            hash: self.hash(),
            chain: self.chain.clone(),
            lineage,
        };
        for (i, (entries, applied)) in chunks.into_iter().enumerate() {
            let msg = GroupMsg::Snapshot {
                members: self.view.members.clone(),
                seq: i as u32,
                entries,
                applied,
                last: (i + 1 == n).then(|| end.clone()),
            };
            if let Err(e) = cpg.mcast(&msg.encode()) {
                // the view will not finish syncing; the next confchg restarts it
                tracing::error!("sending snapshot chunk {i}/{n}: {e}");
                return;
            }
        }
        tracing::info!(
            chunks = n,
            entries = self.content.len(),
            "config store snapshot sent"
        );
    }

    fn install(
        &mut self,
        leader: Member,
        end: SnapEnd,
        entries: Vec<SnapEntry>,
        applied: Vec<AppliedKey>,
    ) -> Result<(), Fatal> {
        let content: Content = entries
            .iter()
            .map(|(k, v, val)| (k.clone(), (*v, val.clone())))
            .collect();
        let got = content_hash(&content);
        if got != end.hash {
            return Err(Fatal::SnapshotHash {
                leader,
                got,
                want: end.hash,
            });
        }
        // Is our history a prefix of the leader's? Equal versions were compared by hash in
        // `decide`; an older copy is checked against the leader's lineage at our version.
        let forked = if self.version >= end.version {
            true
        } else {
            match end.lineage.iter().find(|(v, _)| *v == self.version) {
                Some((_, c)) if *c != self.chain => {
                    self.divergences += 1;
                    tracing::error!(
                        ?leader,
                        version = self.version,
                        ours = %self.chain,
                        leaders = %c,
                        "CONFIG STORE FORK: our history is not a prefix of the leader's; its copy wins, ours is saved next to the database"
                    );
                    true
                }
                Some(_) => false,
                None => {
                    tracing::info!(
                        version = self.version,
                        "leader has no lineage for our version (pruned or after a snapshot); prefix not checked"
                    );
                    false
                }
            }
        };
        if forked {
            match self.db.save_copy("diverged", self.version, &self.content) {
                Ok(p) => tracing::error!(path = %p, "replaced copy saved"),
                Err(e) => tracing::error!("saving the replaced copy: {e}"),
            }
        }
        self.db.replace(end.version, &end.chain, &entries)?;
        self.db.replace_applied(&applied)?;
        self.applied = Applied::from_records(applied);
        tracing::info!(
            from = self.version,
            to = end.version,
            entries = content.len(),
            "config store brought up to date by snapshot"
        );
        self.content = content;
        self.version = end.version;
        self.chain = end.chain;
        self.hash = Some(got);
        Ok(())
    }

    fn sync_done(&mut self) -> Result<(), Fatal> {
        self.view.sync = Sync::Done;
        // how long writes of this view waited (view change → every state in → snapshot end):
        // the figure to look at when writes stall around a membership change
        tracing::info!(
            members = self.view.members.len(),
            queued = self.view.queue.len(),
            sync_ms = self.view.began.map(|t| t.elapsed().as_millis() as u64),
            "config store sync done"
        );
        self.last_sync = Some(unix_now());
        // every member of this view now holds the same copy
        if let Some(p) = self.view.members.iter().find(|m| m.node != self.me.node) {
            self.peer = Some(p.node);
            self.current = true;
        }
        for q in std::mem::take(&mut self.view.queue) {
            let r = self.apply_keyed(&q.op, q.id.as_deref(), q.at)?;
            self.reply(q.from, q.req, r);
        }
        Ok(())
    }

    /// A delivered write with its idempotency key: an id already decided gets its first
    /// outcome and is not applied again; a new decision (applied, or refused on the data:
    /// conflict, not found) is recorded under the id. A refusal by the quorum rule or the hold
    /// is not recorded: nothing was applied, a retry may still be.
    fn apply_keyed(
        &mut self,
        op: &WriteOp,
        id: Option<&str>,
        at: u64,
    ) -> Result<Result<WriteOk, StoreError>, Fatal> {
        if let Some(o) = id.and_then(|i| self.outcome(i)) {
            tracing::info!(
                request_id = id,
                "write already decided: its first outcome answers the retry"
            );
            return Ok(o.result());
        }
        let r = self.apply(op)?;
        let decided = match &r {
            Ok(_) => true,
            Err(e) => matches!(
                e,
                StoreError::Conflict { .. }
                    | StoreError::NotFound { .. }
                    | StoreError::Invalid { .. }
            ),
        };
        if let (Some(id), true) = (id, decided) {
            let (rec, forget) = self.applied.remember(id, at, Outcome::of(&r));
            self.db.record_applied(&rec, &forget)?;
        }
        Ok(r)
    }

    /// Apply one delivered write, or refuse it — the same decision on every member.
    fn apply(&mut self, op: &WriteOp) -> Result<Result<WriteOk, StoreError>, Fatal> {
        if !self.view.writable() {
            return Ok(Err(self.view.refusal()));
        }
        if let Some(e) = self.held() {
            return Ok(Err(e));
        }
        let key = op.key();
        let cur = self.content.get(key).map(|e| e.0);
        let new_value: Option<&str> = match op {
            WriteOp::Put { value, .. } => Some(value),
            WriteOp::Create { value, .. } => {
                if let Some(v) = cur {
                    return Ok(Err(StoreError::Conflict {
                        current_version: v,
                        message: format!("{key} already exists"),
                    }));
                }
                Some(value)
            }
            WriteOp::Cas { value, version, .. } => {
                if cur.unwrap_or(0) != *version {
                    return Ok(Err(StoreError::Conflict {
                        current_version: cur.unwrap_or(0),
                        message: format!("{key} is not at version {version}"),
                    }));
                }
                Some(value)
            }
            WriteOp::Delete { version, .. } => {
                let Some(c) = cur else {
                    return Ok(Err(StoreError::NotFound {
                        key: key.to_string(),
                    }));
                };
                if let Some(want) = version {
                    if *want != c {
                        return Ok(Err(StoreError::Conflict {
                            current_version: c,
                            message: format!("{key} is not at version {want}"),
                        }));
                    }
                }
                None
            }
        };
        let v = self.version + 1;
        let chain = chain_next(&self.chain, op);
        self.db.apply(v, key, new_value, &chain)?;
        self.version = v;
        self.chain = chain;
        self.hash = None;
        match new_value {
            Some(val) => {
                self.content.insert(key.to_string(), (v, val.to_string()));
            }
            None => {
                self.content.remove(key);
            }
        }
        Ok(Ok(WriteOk { version: v }))
    }
}

#[cfg(test)]
mod tests;
