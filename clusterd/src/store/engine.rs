//! The CPG engine seam: what the replica needs from corosync (multicast with AGREED ordering)
//! and what it is fed ([`Event`]s, in delivery order). [`corosync`] is the real backend;
//! [`fake`] an in-process bus for unit tests of the decision logic.

use super::Member;

pub mod corosync;
pub mod fake;

/// Something the engine delivered, in the order it delivered it.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// CPG group membership changed; `members` is the new view (all members, sorted or not).
    ConfChg { members: Vec<Member> },
    /// A totem ring change seen by CPG (used only to know a quorum verdict is stale).
    Totem { ring: u64 },
    /// A group message.
    Deliver { from: Member, data: Vec<u8> },
    /// corosync's quorum service: verdict for `ring`. Local to this node, not ordered with CPG.
    Quorum { ring: u64, quorate: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("corosync {call}: {err}")]
    Corosync { call: &'static str, err: String },
    #[error("{0}")]
    Other(String),
}

/// Multicast to the joined group with AGREED ordering; the message is delivered to every
/// member of the view, the sender included, in the same total order.
pub trait Cpg {
    fn mcast(&mut self, msg: &[u8]) -> Result<(), EngineError>;

    /// Ask the quorum service synchronously whether this node is quorate now (`None` if the
    /// engine cannot tell). Asked at each confchg: corosync settles quorum for a new ring
    /// before it sends CPG's confchg, so a "no" here is fresher than the last notification.
    fn quorate_now(&mut self) -> Option<bool> {
        None
    }

    /// Whether votequorum runs with `two_node` (both halves of a cut keep quorum until one is
    /// fenced). `None` if the engine cannot tell (treated as "no").
    fn two_node(&mut self) -> Option<bool> {
        None
    }
}

/// Pacemaker's word on a lost peer, for the two-node hold (see [`crate::store`]).
pub trait PeerFencing {
    /// Whether Pacemaker confirms corosync node `peer` is safely down: offline and not unclean
    /// (fenced, or shut down cleanly), or fenced successfully at or after `since_unix`. Only an
    /// observation made after `since` counts. `None`: no answer (yet) — the real backend polls
    /// `crm_mon` in the background and must never block the caller.
    fn peer_down(&mut self, peer: u32, since: std::time::Instant, since_unix: u64) -> Option<bool>;
}
