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
    /// A client write; `req` identifies it at its origin (the sender).
    Write { req: u64, op: WriteOp },
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
    },
    Create {
        key: String,
        value: serde_json::Value,
    },
    Cas {
        key: String,
        value: serde_json::Value,
        version: u64,
    },
    Delete {
        key: String,
        #[serde(default)]
        version: Option<u64>,
    },
    Status,
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
                version: 3
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
        };
        assert_eq!(GroupMsg::decode(&m.encode()).expect("dec"), m);
    }
}
