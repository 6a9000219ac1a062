//! An in-process stand-in for CPG + the quorum service, for unit tests of the decision logic
//! only (never for proofs: those run on corosync in the netns lab).
//!
//! It models what the replica relies on: one total order of messages per partition, delivered
//! to every joined member of the sender's partition (sender included); a membership change
//! delivers, to each member of each partition, after every message sent before it, the quorum
//! verdict for the new ring (majority of `total_nodes`, like votequorum without two_node), the
//! CPG confchg and the totem ring change — the order seen from corosync 3 in the netns lab when
//! a node is cut off. `quorum_late` delivers the verdict last (the order seen when a node
//! joins), to test the replica's defence against a stale verdict; `answer_quorate_now` makes
//! [`Cpg::quorate_now`] answer the partition's real quorum, like `quorum_getquorate`.

use super::{Cpg, EngineError, Event, PeerFencing};
use crate::store::Member;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

#[derive(Default)]
struct Inner {
    total_nodes: usize,
    ring: u64,
    /// joined members: partition id and inbox
    members: BTreeMap<Member, (u32, VecDeque<Event>)>,
    /// partition of each node id (default 0)
    node_part: BTreeMap<u32, u32>,
    quorum_late: bool,
    answer_quorate_now: bool,
    /// votequorum `two_node`: any non-empty partition of a 2-node cluster is quorate.
    two_node: bool,
    sent: u64,
}

impl Inner {
    fn quorate(&self, nodes: usize) -> bool {
        if self.two_node && self.total_nodes == 2 {
            nodes >= 1
        } else {
            nodes * 2 > self.total_nodes
        }
    }
}

/// The shared bus.
#[derive(Clone, Default)]
pub struct Bus(Rc<RefCell<Inner>>);

/// One member's handle on the bus.
pub struct FakeCpg {
    bus: Bus,
    pub me: Member,
}

impl Cpg for FakeCpg {
    fn mcast(&mut self, msg: &[u8]) -> Result<(), EngineError> {
        let mut b = self.bus.0.borrow_mut();
        let Some(&(part, _)) = b.members.get(&self.me) else {
            return Err(EngineError::Other("not joined".into()));
        };
        b.sent += 1;
        for (_, (p, inbox)) in b.members.iter_mut() {
            if *p == part {
                inbox.push_back(Event::Deliver {
                    from: self.me,
                    data: msg.to_vec(),
                });
            }
        }
        Ok(())
    }

    fn quorate_now(&mut self) -> Option<bool> {
        let b = self.bus.0.borrow();
        if !b.answer_quorate_now {
            return None;
        }
        let part = b.members.get(&self.me)?.0;
        let mut nodes: Vec<u32> = b
            .members
            .iter()
            .filter(|(_, (p, _))| *p == part)
            .map(|(m, _)| m.node)
            .collect();
        nodes.dedup();
        Some(b.quorate(nodes.len()))
    }

    fn two_node(&mut self) -> Option<bool> {
        Some(self.bus.0.borrow().two_node)
    }
}

impl Bus {
    pub fn new(total_nodes: usize) -> Bus {
        let b = Bus::default();
        {
            let mut i = b.0.borrow_mut();
            i.total_nodes = total_nodes;
            i.answer_quorate_now = true;
        }
        b
    }

    /// Deliver quorum verdicts after the confchg instead of before.
    pub fn set_quorum_late(&self, late: bool) {
        self.0.borrow_mut().quorum_late = late;
    }

    /// Run votequorum with `two_node` (only meaningful with 2 nodes).
    pub fn set_two_node(&self, on: bool) {
        self.0.borrow_mut().two_node = on;
    }

    /// Let [`Cpg::quorate_now`] answer (corosync's `quorum_getquorate`).
    pub fn set_answer_quorate_now(&self, on: bool) {
        self.0.borrow_mut().answer_quorate_now = on;
    }

    /// Messages multicast so far.
    pub fn sent(&self) -> u64 {
        self.0.borrow().sent
    }

    /// A member joins the group (in its node's partition).
    pub fn join(&self, me: Member) -> FakeCpg {
        {
            let mut b = self.0.borrow_mut();
            let part = b.node_part.get(&me.node).copied().unwrap_or(0);
            b.members.insert(me, (part, VecDeque::new()));
        }
        self.membership_changed();
        FakeCpg {
            bus: self.clone(),
            me,
        }
    }

    /// A member's process dies (its inbox is dropped).
    pub fn crash(&self, me: Member) {
        self.0.borrow_mut().members.remove(&me);
        self.membership_changed();
    }

    /// Set the partitions by node id; nodes not listed are in partition 0.
    pub fn partition(&self, groups: &[&[u32]]) {
        {
            let mut b = self.0.borrow_mut();
            b.node_part.clear();
            for (i, g) in groups.iter().enumerate() {
                for n in *g {
                    b.node_part.insert(*n, i as u32);
                }
            }
            let np = b.node_part.clone();
            for (m, (p, _)) in b.members.iter_mut() {
                *p = np.get(&m.node).copied().unwrap_or(0);
            }
        }
        self.membership_changed();
    }

    pub fn heal(&self) {
        self.partition(&[]);
    }

    fn membership_changed(&self) {
        let mut b = self.0.borrow_mut();
        b.ring += 4;
        let ring = b.ring;
        let late = b.quorum_late;
        let quorate_with = |n: usize| b.quorate(n);
        let quorate_by_size: Vec<bool> = (0..=b.members.len()).map(quorate_with).collect();
        let parts: BTreeMap<u32, Vec<Member>> =
            b.members
                .iter()
                .fold(BTreeMap::new(), |mut acc, (m, (p, _))| {
                    acc.entry(*p).or_insert_with(Vec::new).push(*m);
                    acc
                });
        for (m, (p, inbox)) in b.members.iter_mut() {
            let members = parts.get(p).cloned().unwrap_or_default();
            let mut nodes: Vec<u32> = members.iter().map(|x| x.node).collect();
            nodes.dedup();
            let q = Event::Quorum {
                ring,
                quorate: quorate_by_size[nodes.len()],
            };
            if !late {
                inbox.push_back(q.clone());
            }
            inbox.push_back(Event::ConfChg { members });
            inbox.push_back(Event::Totem { ring });
            if late {
                inbox.push_back(q);
            }
            let _ = m;
        }
    }

    /// Next event for `me`, if any.
    pub fn pop(&self, me: Member) -> Option<Event> {
        self.0
            .borrow_mut()
            .members
            .get_mut(&me)
            .and_then(|(_, q)| q.pop_front())
    }

    /// Whether any member has events waiting.
    pub fn busy(&self) -> bool {
        self.0.borrow().members.values().any(|(_, q)| !q.is_empty())
    }

    /// Joined members.
    pub fn members(&self) -> Vec<Member> {
        self.0.borrow().members.keys().copied().collect()
    }

    /// Partition id of a member.
    pub fn part_of(&self, me: Member) -> Option<u32> {
        self.0.borrow().members.get(&me).map(|x| x.0)
    }
}

/// Pacemaker's confirmations, driven by the test: `confirm(peer)` makes
/// [`PeerFencing::peer_down`] answer yes for that node id; `answer(false)` makes it answer
/// nothing at all (crm_mon failing).
#[derive(Clone, Default)]
pub struct FakeFencing(std::sync::Arc<std::sync::Mutex<FenceState>>);

/// (peer → reported down, crm_mon answers, times asked)
type FenceState = (BTreeMap<u32, bool>, bool, u64);

impl FakeFencing {
    fn lock(&self) -> std::sync::MutexGuard<'_, FenceState> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
    pub fn new() -> FakeFencing {
        let f = FakeFencing::default();
        f.lock().1 = true;
        f
    }
    /// Pacemaker now reports `peer` offline and clean (`true`) or online/unclean (`false`).
    pub fn set_down(&self, peer: u32, down: bool) {
        self.lock().0.insert(peer, down);
    }
    /// Whether crm_mon answers at all.
    pub fn answer(&self, on: bool) {
        self.lock().1 = on;
    }
    /// How many times the replica asked.
    pub fn asked(&self) -> u64 {
        self.lock().2
    }
}

impl PeerFencing for FakeFencing {
    fn peer_down(
        &mut self,
        peer: u32,
        _since: std::time::Instant,
        _since_unix: u64,
    ) -> Option<bool> {
        let mut s = self.lock();
        s.2 += 1;
        if !s.1 {
            return None;
        }
        Some(s.0.get(&peer).copied().unwrap_or(false))
    }
}
