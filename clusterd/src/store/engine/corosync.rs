//! The real engine: rust-corosync's libcpg and libquorum bindings.
//!
//! rust-corosync takes plain `fn` callbacks (no closure state), so callbacks push [`Event`]s
//! into one process-global queue that [`Corosync::drain`] empties. All calls into corosync
//! happen on the one thread that owns the [`Corosync`] value (callbacks run inside its
//! `dispatch` calls), so no two threads share a handle.
//!
//! Ordering: corosync activates its quorum service before CPG after a membership change, so a
//! quorum notification is queued on the quorum connection before the CPG confchg that follows
//! it. [`Corosync::drain`] therefore empties the quorum connection before *each* CPG callback.

use super::{Cpg, EngineError, Event};
use crate::store::Member;
use rust_corosync::{cpg, quorum, votequorum, CsError, DispatchFlags, NodeId, TrackFlags};
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static EVENTS: Mutex<Vec<Event>> = Mutex::new(Vec::new());

fn push(ev: Event) {
    match EVENTS.lock() {
        Ok(mut q) => q.push(ev),
        Err(p) => p.into_inner().push(ev),
    }
}

fn take() -> Vec<Event> {
    match EVENTS.lock() {
        Ok(mut q) => std::mem::take(&mut *q),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    }
}

fn member(a: &cpg::Address) -> Member {
    Member {
        node: u32::from(a.nodeid),
        pid: a.pid,
    }
}

fn on_deliver(_h: &cpg::Handle, _group: String, nodeid: NodeId, pid: u32, msg: &[u8], _len: usize) {
    push(Event::Deliver {
        from: Member {
            node: u32::from(nodeid),
            pid,
        },
        data: msg.to_vec(),
    });
}

fn on_confchg(
    _h: &cpg::Handle,
    _group: &str,
    members: Vec<cpg::Address>,
    _left: Vec<cpg::Address>,
    _joined: Vec<cpg::Address>,
) {
    push(Event::ConfChg {
        members: members.iter().map(member).collect(),
    });
}

fn on_totem(_h: &cpg::Handle, ring: cpg::RingId, _members: Vec<NodeId>) {
    push(Event::Totem { ring: ring.seq });
}

fn on_quorum(_h: &quorum::Handle, quorate: bool, ring: quorum::RingId, _members: Vec<NodeId>) {
    push(Event::Quorum {
        ring: ring.seq,
        quorate,
    });
}

fn cs(call: &'static str) -> impl Fn(CsError) -> EngineError {
    move |e| EngineError::Corosync {
        call,
        err: e.to_string(),
    }
}

/// Connections to corosync's CPG and quorum services, joined to one group.
pub struct Corosync {
    cpg: cpg::Handle,
    quorum: quorum::Handle,
    /// votequorum, only asked synchronously (the `two_node` flag); no callbacks.
    votequorum: votequorum::Handle,
    group: String,
    pub me: Member,
}

impl Corosync {
    /// Connect, start quorum tracking and join `group`.
    pub fn connect(group: &str) -> Result<Corosync, EngineError> {
        let qmodel = quorum::ModelData::ModelV1(quorum::Model1Data {
            flags: quorum::Model1Flags::None,
            quorum_notification_fn: Some(on_quorum),
            nodelist_notification_fn: None,
        });
        let (qh, _qtype) = quorum::initialize(&qmodel, 0).map_err(cs("quorum_initialize"))?;
        quorum::trackstart(&qh, TrackFlags::Changes).map_err(cs("quorum_trackstart"))?;
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(on_deliver),
            confchg_fn: Some(on_confchg),
            totem_confchg_fn: Some(on_totem),
        });
        let vq = votequorum::initialize(&votequorum::Callbacks {
            quorum_notification_fn: None,
            nodelist_notification_fn: None,
            expectedvotes_notification_fn: None,
        })
        .map_err(cs("votequorum_initialize"))?;
        let h = cpg::initialize(&model, 0).map_err(cs("cpg_initialize"))?;
        let node = cpg::local_get(&h).map_err(cs("cpg_local_get"))?;
        cpg::join(&h, group).map_err(cs("cpg_join"))?;
        Ok(Corosync {
            cpg: h,
            quorum: qh,
            votequorum: vq,
            group: group.to_string(),
            me: Member {
                node: u32::from(node),
                pid: std::process::id(),
            },
        })
    }

    /// File descriptors to poll: (cpg, quorum).
    pub fn fds(&self) -> Result<(RawFd, RawFd), EngineError> {
        Ok((
            cpg::fd_get(&self.cpg).map_err(cs("cpg_fd_get"))?,
            quorum::fd_get(&self.quorum).map_err(cs("quorum_fd_get"))?,
        ))
    }

    /// Largest message CPG sends without fragmenting.
    pub fn max_atomic_msgsize(&self) -> Option<u32> {
        cpg::max_atomic_msgsize_get(&self.cpg).ok()
    }

    /// Dispatch everything pending, quorum notifications before each CPG callback; returns
    /// the events in that order.
    pub fn drain(&mut self) -> Result<Vec<Event>, EngineError> {
        let mut out = vec![];
        loop {
            quorum::dispatch(&self.quorum, DispatchFlags::All).map_err(cs("quorum_dispatch"))?;
            out.extend(take());
            match cpg::dispatch(&self.cpg, DispatchFlags::OneNonblocking) {
                Ok(()) | Err(CsError::CsErrTryAgain) => {}
                Err(e) => return Err(cs("cpg_dispatch")(e)),
            }
            let evs = take();
            if evs.is_empty() {
                return Ok(out);
            }
            out.extend(evs);
        }
    }

    /// Leave the group (on shutdown).
    pub fn leave(&self) {
        let _ = cpg::leave(&self.cpg, &self.group);
    }
}

impl Cpg for Corosync {
    fn mcast(&mut self, msg: &[u8]) -> Result<(), EngineError> {
        // TRY_AGAIN = corosync's flow control; it clears as totem sends.
        let t0 = Instant::now();
        loop {
            match cpg::mcast_joined(&self.cpg, cpg::Guarantee::TypeAgreed, msg) {
                Ok(()) => return Ok(()),
                Err(CsError::CsErrTryAgain) if t0.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(cs("cpg_mcast_joined")(e)),
            }
        }
    }

    fn quorate_now(&mut self) -> Option<bool> {
        match quorum::getquorate(&self.quorum) {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::warn!("quorum_getquorate: {e}");
                None
            }
        }
    }

    /// votequorum_getinfo for this node: the `VOTEQUORUM_INFO_TWONODE` flag, or two expected
    /// votes (rust-corosync drops all flags if corosync sets one it does not know; two expected
    /// votes without two_node cannot leave a lone node quorate anyway). If corosync cannot
    /// answer, assume two_node (the safe side: a lone member then waits for Pacemaker).
    fn two_node(&mut self) -> Option<bool> {
        match votequorum::get_info(&self.votequorum, NodeId::from(self.me.node)) {
            Ok(i) => Some(
                i.flags
                    .contains(votequorum::NodeInfoFlags::VOTEQUORUM_INFO_TWONODE)
                    || i.node_expected_votes == 2,
            ),
            Err(e) => {
                tracing::warn!("votequorum_getinfo: {e}; assuming two_node");
                Some(true)
            }
        }
    }
}
