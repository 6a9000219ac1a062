//! Wire formats: messages between members (over CPG) and the local client protocol (one JSON
//! object per line on the Unix socket).

use super::{Entry, Member, Status, StoreError};
use serde::{Deserialize, Serialize};

/// A write operation. Values are canonical JSON text (see [`super::canonical_value`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteOp {
    Put {
        key: String,
        value: String,
    },
    /// Create only if the key does not exist.
    Create {
        key: String,
        value: String,
    },
    /// Set only if the key's version is `version` (0 = must not exist).
    Cas {
        key: String,
        value: String,
        version: u64,
    },
    /// Delete; with `version`, only if the key is at that version.
    Delete {
        key: String,
        version: Option<u64>,
    },
}

impl WriteOp {
    pub fn key(&self) -> &str {
        match self {
            WriteOp::Put { key, .. }
            | WriteOp::Create { key, .. }
            | WriteOp::Cas { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }
}

/// One entry in a snapshot: key, entry version, canonical JSON value.
pub type SnapEntry = (String, u64, String);

/// How a keyed write was decided: what a retry with the same request id gets back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(WriteOk),
    Err(StoreError),
}

impl Outcome {
    pub fn of(r: &Result<WriteOk, StoreError>) -> Outcome {
        match r {
            Ok(w) => Outcome::Ok(w.clone()),
            Err(e) => Outcome::Err(e.clone()),
        }
    }
    pub fn result(self) -> Result<WriteOk, StoreError> {
        match self {
            Outcome::Ok(w) => Ok(w),
            Outcome::Err(e) => Err(e),
        }
    }
}

/// A decided keyed write in the replicated record of request ids: id, decision sequence
/// number, origin time (unix seconds), outcome.
pub type AppliedKey = (String, u64, u64, Outcome);

/// The end of a snapshot: what the copy must hash to, its lineage hash, and the leader's
/// lineage hashes at the versions the other members reported (to detect forked histories).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapEnd {
    pub version: u64,
    pub hash: String,
    pub chain: String,
    pub lineage: Vec<(u64, String)>,
}

/// Messages multicast in the CPG group (AGREED ordering).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum GroupMsg {
    /// A client write; `req` identifies it at its origin (the sender). `id` is the client's
    /// idempotency key (a retry carries the same), `at` the origin's clock (unix seconds),
    /// which only ages the record of ids.
    Write {
        req: u64,
        op: WriteOp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default)]
        at: u64,
    },
    /// Sent by every member after each confchg.
    State {
        members: Vec<Member>,
        version: u64,
        hash: String,
        /// Lineage hash: chained over every write applied since version 0 (or the last snapshot).
        chain: String,
        ring: u64,
        quorate: bool,
    },
    /// A member's corosync quorum verdict changed.
    Quorum { ring: u64, quorate: bool },
    /// Part of the sync leader's snapshot; the last chunk carries its [`SnapEnd`].
    Snapshot {
        members: Vec<Member>,
        seq: u32,
        entries: Vec<SnapEntry>,
        /// Part of the leader's record of decided request ids (it replaces the receiver's
        /// with the content), chunked like the entries.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        applied: Vec<AppliedKey>,
        last: Option<SnapEnd>,
    },
}

impl GroupMsg {
    pub fn encode(&self) -> Vec<u8> {
        // serialising these plain data types cannot fail
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn decode(b: &[u8]) -> Result<GroupMsg, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

/// A client request (one line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Get {
        key: String,
    },
    List {
        prefix: String,
    },
    Put {
        key: String,
        value: serde_json::Value,

        /// Idempotency key: a write with an id already decided is not applied again; its
        /// first outcome is returned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Create {
        key: String,
        value: serde_json::Value,

        /// Idempotency key: a write with an id already decided is not applied again; its
        /// first outcome is returned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Cas {
        key: String,
        value: serde_json::Value,
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Delete {
        key: String,
        #[serde(default)]
        version: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Status,
    /// How the write with this request id was decided, if it was (on this node's copy).
    Outcome {
        id: String,
    },
}

impl Request {
    /// The idempotency key of a write.
    pub fn id(&self) -> Option<&str> {
        match self {
            Request::Put { id, .. }
            | Request::Create { id, .. }
            | Request::Cas { id, .. }
            | Request::Delete { id, .. } => id.as_deref(),
            _ => None,
        }
    }

    /// Give a write its idempotency key (no-op for reads).
    pub fn set_id(&mut self, new: String) {
        match self {
            Request::Put { id, .. }
            | Request::Create { id, .. }
            | Request::Cas { id, .. }
            | Request::Delete { id, .. } => *id = Some(new),
            _ => {}
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Put { .. }
                | Request::Create { .. }
                | Request::Cas { .. }
                | Request::Delete { .. }
        )
    }
}

/// The answer to [`Request::Outcome`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyOutcome {
    pub request_id: String,
    /// `None`: no write with this id was decided on this node's copy (never sent, refused
    /// before ordering, still in flight, or its record expired).
    pub outcome: Option<Outcome>,
}

/// Result of a successful write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOk {
    /// Store version after the write (= the key's new version; for deletes the store version).
    pub version: u64,
}

/// Successful response payloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Entry(Entry),
    Entries(Vec<Entry>),
    Status(Status),
    /// Before `Written`: untagged, and `Written` matches any object with a `version`.
    Outcome(KeyOutcome),
    Written(WriteOk),
}

/// One response line: `{"ok": …}` or `{"err": {"kind": …}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Err(StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let r: Request =
            serde_json::from_str(r#"{"op":"cas","key":"/a","value":{"x":1},"version":3}"#)
                .expect("parse");
        assert_eq!(
            r,
            Request::Cas {
                key: "/a".into(),
                value: serde_json::json!({"x":1}),
                version: 3,
                id: None,
            }
        );
        let e = Response::Err(StoreError::Conflict {
            current_version: 7,
            message: "m".into(),
        });
        assert_eq!(
            serde_json::to_string(&e).expect("enc"),
            r#"{"err":{"kind":"conflict","current_version":7,"message":"m"}}"#
        );
        let ok = Response::Ok(Reply::Written(WriteOk { version: 4 }));
        let s = serde_json::to_string(&ok).expect("enc");
        assert_eq!(s, r#"{"ok":{"version":4}}"#);
        let back: Response = serde_json::from_str(&s).expect("dec");
        assert_eq!(back, ok);
        let m = GroupMsg::Write {
            req: 1,
            op: WriteOp::Delete {
                key: "/a".into(),
                version: None,
            },
            id: Some("r1".into()),
            at: 5,
        };
        assert_eq!(GroupMsg::decode(&m.encode()).expect("dec"), m);
        // an older member's write (no id) still decodes
        let old: GroupMsg = serde_json::from_str(
            r#"{"t":"write","req":2,"op":{"op":"delete","key":"/a","version":null}}"#,
        )
        .expect("old write");
        assert!(matches!(
            old,
            GroupMsg::Write {
                id: None,
                at: 0,
                ..
            }
        ));
        let o = Response::Ok(Reply::Outcome(KeyOutcome {
            request_id: "r1".into(),
            outcome: Some(Outcome::Ok(WriteOk { version: 9 })),
        }));
        let s = serde_json::to_string(&o).expect("enc");
        assert_eq!(
            s,
            r#"{"ok":{"request_id":"r1","outcome":{"ok":{"version":9}}}}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&s).expect("dec"), o);
        let none = r#"{"ok":{"request_id":"r2","outcome":null}}"#;
        assert!(matches!(
            serde_json::from_str::<Response>(none).expect("dec"),
            Response::Ok(Reply::Outcome(KeyOutcome { outcome: None, .. }))
        ));
    }
}
