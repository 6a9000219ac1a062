//! The replicated config store: a key/value map of JSON values, totally ordered by corosync
//! CPG and persisted in SQLite on every node, in the spirit of Proxmox's pmxcfs. There is no
//! second consensus system here: ordering and membership are corosync's (CPG, AGREED ordering,
//! virtual synchrony), quorum is corosync's (the quorum service's `trackstart` notifications).
//!
//! # Pieces
//!
//! * [`replica::Replica`] — the decision logic of one member: apply rules, the quorum rule,
//!   sync leader choice, snapshot transfer, queueing. It talks to the group only through the
//!   [`engine::Cpg`] trait and is fed [`engine::Event`]s in delivery order.
//! * [`engine::corosync`] — the real backend (rust-corosync: libcpg, libquorum, votequorum) and
//!   [`engine::fake`] — an in-process totally ordered bus with partitions, for unit tests of
//!   the decision logic only.
//! * [`db::Db`] — SQLite (WAL, `synchronous=FULL`) persistence of entries and the store version.
//! * [`fencing`] — Pacemaker's confirmation that a lost two-node peer is down (`crm_mon`).
//! * [`server`] — the daemon's Unix-socket server (line-delimited JSON, [`proto`]).
//! * [`client::Client`] — what hostd uses: async get/list/put/create/cas/delete/status.
//!
//! # Semantics
//!
//! Every write (put, delete, create-if-absent, compare-and-set on a key version) is multicast
//! with AGREED ordering and applied by every member in delivery order; conditional writes are
//! evaluated at delivery, so e.g. create-if-absent on `/vmid/100` succeeds on exactly one node
//! cluster-wide. A client's write is acknowledged only after its own node delivered and applied
//! it: by virtual synchrony every member of that view delivered it at the same position.
//! The store keeps a global `version` (+1 per applied write) and every entry records the
//! version that last wrote it (the CAS token). `hash` is SHA-256 over the sorted
//! `(key, entry version, value)` triples, so two members with equal hashes agree on content
//! *and* on every CAS token.
//!
//! # The quorum rule (why it is deterministic)
//!
//! Writes are refused at submit when the local corosync is not quorate ("not quorate:
//! read-only"). That check alone is not enough: quorum notifications arrive on their own IPC
//! connection, unordered with respect to CPG messages, so two members may hold different local
//! quorum flags when the same write is delivered. The decision at delivery must therefore be a
//! function of the ordered stream only:
//!
//! * every member reports its corosync quorum state *through CPG*: `(ring, quorate)` in its
//!   `State` message at each view change and in a `Quorum` message whenever a quorum
//!   notification changes it;
//! * the view's `ring` is the highest ring any member reported (or a CPG totem change delivered
//!   in-stream to all members);
//! * a delivered write is applied iff the view is in sync and **every member's latest report is
//!   for the view's ring and quorate**. Otherwise it is rejected with the not-quorate error —
//!   by every member alike, since all of them see the same reports in the same order.
//!
//! A member's report must not be stale either. corosync 3 (as seen in the netns lab) sends
//! the quorum notification before the CPG confchg when a node is cut off, but after it (and
//! after the totem change) when a node joins. So at each confchg a member also asks corosync
//! synchronously ([`engine::Cpg::quorate_now`], `quorum_getquorate`: quorum for a new ring is
//! settled before CPG's confchg is sent) and reports "not quorate" if the answer is no; a
//! "yes" is reported only with a notification's ring. A member that has seen a newer totem
//! ring than its last verdict waits up to 2 s for the verdict before reporting. The corosync
//! thread also drains quorum notifications before each CPG callback.
//!
//! # Two-node clusters: the hold
//!
//! With votequorum's `two_node` both halves of a cut link keep quorum until Pacemaker fences
//! one, so the quorum rule alone would let both write. A member alone in its view (every
//! member of the view is on its own node) while corosync reports `two_node`
//! ([`engine::Cpg::two_node`]) therefore *holds* writes — refused at submit and at delivery with
//! `unavailable: writes held: …` — until both hold:
//!
//! * Pacemaker confirms the lost peer safely down ([`engine::PeerFencing`]; the real backend
//!   [`fencing::CrmPoller`] polls `crm_mon --output-as=xml` about once a second while asked,
//!   in its own thread, each run bounded by 5 s): offline and not unclean (Pacemaker marks a
//!   lost node unclean until fencing succeeds; a clean shutdown also ends offline and clean),
//!   or a successful fence of it completed after the view change; only a `crm_mon` run started
//!   after the view change counts;
//! * this member's copy is *current*: it finished a sync with the peer since the process
//!   started. A peer writes alone only after Pacemaker confirmed this node down, which ends this
//!   process, so a member that ran continuously since that sync holds every write. A restarted
//!   daemon alone in a two-node cluster waits for the peer.
//!
//! The hold is evaluated only for one-node views, so members of a view can never disagree on
//! it; a view with both nodes follows the normal rules (a returning fenced node syncs before it
//! writes, like any other).
//!
//! # Sync on membership change
//!
//! On every CPG confchg the view enters *syncing*: each member multicasts
//! `State{members, version, hash, chain, ring, quorate}`. When the states of all members are
//! delivered (the same point in the stream for everyone) the leader is the member with the
//! highest version; ties go to the lowest `(nodeid, pid)`. Only a quorate view writes, so
//! histories are prefixes of one another and the highest version is the newest state. That is
//! checked: equal versions with different hashes, or an older copy whose lineage hash (chained
//! over every applied write) differs from the leader's lineage at that version, is a divergence
//! (a bug or a restored disk):
//! it is logged at error level, counted in status, the leader still wins deterministically and
//! the losing member keeps its old content in `<db>.diverged-<version>-<unix time>.json` so
//! nothing is lost silently. If everyone already agrees, sync ends at once; otherwise the leader
//! multicasts a snapshot in chunks (each at most [`SNAPSHOT_CHUNK_BYTES`]), members that
//! differ replace their content on the last chunk after checking its hash, and sync ends for
//! everybody at that chunk. Writes delivered while syncing are queued and applied (or refused,
//! by the quorum rule) right after sync ends, in delivery order, identically on every member.
//! A view change during sync restarts it.

pub mod client;
pub mod db;
pub mod engine;
pub mod fencing;
pub mod proto;
pub mod replica;
pub mod server;

use serde::{Deserialize, Serialize};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Most path segments in a key.
pub const MAX_KEY_DEPTH: usize = 16;
/// Largest value, as compact JSON, in bytes.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Snapshot chunk size (the entries of one CPG message, encoded).
pub const SNAPSHOT_CHUNK_BYTES: usize = 512 * 1024;

/// A CPG member: corosync node id and process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub node: u32,
    pub pid: u32,
}

/// One entry as returned to clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    /// Store version of the write that last set this key (the CAS token).
    pub version: u64,
    pub value: serde_json::Value,
}

/// Status of one member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node_id: u32,
    /// corosync's quorum verdict as last notified to this node.
    pub quorate: bool,
    /// Whether writes delivered now would be applied (the view rule, see the module doc).
    pub writable: bool,
    /// Why writes are held although the view is quorate (a lone member of a two-node cluster
    /// waiting for Pacemaker to confirm its peer down), if they are.
    #[serde(default)]
    pub held: Option<String>,
    /// Node ids of the CPG view (members running keel-clusterd).
    pub members: Vec<u32>,
    pub version: u64,
    pub hash: String,
    pub syncing: bool,
    /// Unix time (seconds) of the end of the last sync, if any.
    pub last_sync: Option<u64>,
    /// Number of divergences (equal version, different hash) seen since start.
    pub divergences: u64,
    pub entries: usize,
}

/// Errors of the store, as seen by clients (also the wire error kinds).
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreError {
    #[error("not quorate: read-only (this node's partition does not hold corosync quorum)")]
    NotQuorate,
    #[error("config store is syncing after a membership change; retry")]
    Syncing,
    #[error("conflict: {message} (current version {current_version})")]
    Conflict {
        /// Version of the key now (0 when it does not exist).
        current_version: u64,
        message: String,
    },
    #[error("not found: {key}")]
    NotFound { key: String },
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("config store unavailable: {message}")]
    Unavailable { message: String },
}

impl StoreError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
        }
    }
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn seg_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':' | '+')
}

/// Check a key: `/`-separated path, e.g. `/vms/100/config`.
pub fn validate_key(field: &str, key: &str) -> Result<(), StoreError> {
    let bad = |m: String| Err(StoreError::invalid(field, m));
    if key.len() > MAX_KEY_LEN {
        return bad(format!(
            "key is {} bytes; at most {MAX_KEY_LEN} are allowed",
            key.len()
        ));
    }
    let Some(rest) = key.strip_prefix('/') else {
        return bad(format!("{key:?} must start with '/' (e.g. \"/vms/100\")"));
    };
    if rest.is_empty() {
        return bad("\"/\" is not a key; name an entry below it (e.g. \"/vms/100\")".into());
    }
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.len() > MAX_KEY_DEPTH {
        return bad(format!(
            "{key:?} has {} segments; at most {MAX_KEY_DEPTH} are allowed",
            segs.len()
        ));
    }
    for s in segs {
        if s.is_empty() {
            return bad(format!(
                "{key:?} has an empty segment (no '//' and no trailing '/')"
            ));
        }
        if s == "." || s == ".." {
            return bad(format!("{key:?}: segments '.' and '..' are not allowed"));
        }
        if let Some(c) = s.chars().find(|c| !seg_ok(*c)) {
            return bad(format!(
                "{key:?} contains {c:?}; segments may use ASCII letters, digits and - _ . @ : +"
            ));
        }
    }
    Ok(())
}

/// Longest request id (idempotency key), in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Check a write's request id: 1–128 ASCII letters, digits and `- _ . :`.
pub fn validate_request_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "id",
            format!(
                "request id {id:?} must be 1-{MAX_REQUEST_ID_LEN} ASCII letters, digits and - _ . :"
            ),
        ))
    }
}

/// Check a list prefix: `/` (everything) or a key path (its entry and everything below it).
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix == "/" {
        return Ok(());
    }
    validate_key("prefix", prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Whether `key` is `prefix` itself or below it.
pub fn under_prefix(key: &str, prefix: &str) -> bool {
    let p = prefix.strip_suffix('/').unwrap_or(prefix);
    p.is_empty()
        || key == p
        || (key.len() > p.len() && key.starts_with(p) && key.as_bytes()[p.len()] == b'/')
}

/// Canonical (compact, sorted object keys) JSON text of a value, checked against the size limit.
pub fn canonical_value(v: &serde_json::Value) -> Result<String, StoreError> {
    let s = serde_json::to_string(v)
        .map_err(|e| StoreError::invalid("value", format!("cannot encode: {e}")))?;
    if s.len() > MAX_VALUE_BYTES {
        return Err(StoreError::invalid(
            "value",
            format!(
                "value is {} bytes as JSON; at most {MAX_VALUE_BYTES} ({} KiB) are allowed",
                s.len(),
                MAX_VALUE_BYTES / 1024
            ),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for k in ["/a", "/vms/100", "/users/root@pam", "/x/y.z-1_2:3+4"] {
            validate_key("key", k).expect(k);
        }
        let msg = |k: &str| validate_key("key", k).expect_err(k).to_string();
        assert_eq!(
            msg("vms"),
            "invalid key: \"vms\" must start with '/' (e.g. \"/vms/100\")"
        );
        assert!(msg("/a//b").contains("empty segment"));
        assert!(msg("/a/").contains("empty segment"));
        assert!(msg("/a/../b").contains("'..'"));
        assert!(msg("/a b").contains("' '"));
        assert!(msg("/").contains("not a key"));
        assert!(msg(&format!("/{}", "a".repeat(300))).contains("at most 256"));
        assert!(msg(&"/a".repeat(17)).contains("17 segments"));
    }

    #[test]
    fn prefixes() {
        assert!(under_prefix("/vms/1", "/"));
        assert!(under_prefix("/vms/1", "/vms"));
        assert!(under_prefix("/vms/1", "/vms/"));
        assert!(under_prefix("/vms", "/vms"));
        assert!(!under_prefix("/vmsx/1", "/vms"));
        validate_prefix("/").expect("root");
        validate_prefix("/vms/").expect("slash");
        assert!(validate_prefix("vms").is_err());
    }

    #[test]
    fn value_limit() {
        let big = serde_json::Value::String("x".repeat(MAX_VALUE_BYTES));
        let e = canonical_value(&big).expect_err("too big");
        assert_eq!(
            e.to_string(),
            format!(
                "invalid value: value is {} bytes as JSON; at most 262144 (256 KiB) are allowed",
                MAX_VALUE_BYTES + 2
            )
        );
        let v: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[1, 2]}"#).expect("json");
        assert_eq!(canonical_value(&v).expect("ok"), r#"{"a":[1,2],"b":1}"#);
    }
}
