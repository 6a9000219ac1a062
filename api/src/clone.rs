//! Clones and templates: the request to clone a VM (full or linked) and what a template is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::snapshot::validate_snapshot_name;
use crate::vm::{valid_name, valid_object_name, VMID_MAX, VMID_MIN};

/// Clone a stopped VM or a template, or any VM (running or stopped) from one of its snapshots.
/// A full clone copies every disk (into `pool`, or each disk's own pool); a linked clone
/// (`linked`, templates only) gets new qcow2 overlays in the template's pool whose backing
/// file is the template's disk. With `snapshot`, the clone is a full copy of the disks as they
/// were at that snapshot, with the configuration the VM had then (never its memory state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// vmid of the new VM; absent: the next free one (as `nextid` gives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 100, maximum = 999_999_999)]
    pub vmid: Option<u32>,
    /// Name of the new VM; absent: derived from the source's (`web-clone-101`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$",
        min_length = 1,
        max_length = 63
    )]
    pub name: Option<String>,
    /// A linked clone (qcow2 overlays on the template's disks) instead of a full copy.
    #[serde(default)]
    pub linked: bool,
    /// Pool for a full clone's disks (a `dir` pool); absent: each disk's own pool. A linked
    /// clone's disks always stay in the template's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub pool: Option<String>,
    /// Clone from this snapshot of the source (`GET …/vms/{vmid}/snapshots` lists them): a
    /// full copy of the disks as they were then and the configuration the VM had then. The
    /// source may be running. Never linked; the clone boots fresh (no memory state) and has
    /// no snapshots itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[A-Za-z][A-Za-z0-9_-]{0,39}$",
        min_length = 1,
        max_length = 40
    )]
    pub snapshot: Option<String>,
}

impl CloneRequest {
    /// Each field on its own (what the host has is checked by hostd).
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(v) = self.vmid {
            if !(VMID_MIN..=VMID_MAX).contains(&v) {
                return Err(FieldError::new(
                    "vmid",
                    format!("vmid {v} is out of range: use an integer from {VMID_MIN} to {VMID_MAX}, or leave it out for the next free one"),
                ));
            }
        }
        if let Some(n) = &self.name {
            if !valid_name(n) {
                return Err(FieldError::new(
                    "name",
                    format!("name {n:?} is invalid: use 1-63 letters, digits, '-' or '.', starting with a letter or digit"),
                ));
            }
        }
        if let Some(p) = &self.pool {
            if !valid_object_name(p) {
                return Err(FieldError::new(
                    "pool",
                    format!("pool {p:?} is not a storage pool name"),
                ));
            }
        }
        if let Some(s) = &self.snapshot {
            validate_snapshot_name(s).map_err(|e| FieldError::new("snapshot", e.message))?;
        }
        Ok(())
    }
}

/// The name a clone gets when none is given: `<source>-clone-<vmid>`, the source's part cut
/// so the whole stays a valid name (at most 63 characters).
pub fn derived_clone_name(source: &str, vmid: u32) -> String {
    let tail = format!("-clone-{vmid}");
    let keep = 63usize.saturating_sub(tail.len());
    let mut head: String = source.chars().take(keep).collect();
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    if head.is_empty() {
        head.push_str("vm");
    }
    format!("{head}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_field_by_field() {
        assert!(CloneRequest::default().validate().is_ok());
        let bad = |r: CloneRequest| r.validate().err().map(|e| e.field);
        assert_eq!(
            bad(CloneRequest {
                vmid: Some(99),
                ..Default::default()
            }),
            Some("vmid".into())
        );
        assert_eq!(
            bad(CloneRequest {
                name: Some("-x".into()),
                ..Default::default()
            }),
            Some("name".into())
        );
        assert_eq!(
            bad(CloneRequest {
                pool: Some("../etc".into()),
                ..Default::default()
            }),
            Some("pool".into())
        );
        assert_eq!(
            bad(CloneRequest {
                snapshot: Some("1st".into()),
                ..Default::default()
            }),
            Some("snapshot".into())
        );
        assert!(CloneRequest {
            snapshot: Some("before-upgrade".into()),
            ..Default::default()
        }
        .validate()
        .is_ok());
        let e = serde_json::from_str::<CloneRequest>(r#"{"full": true}"#);
        assert!(e.is_err(), "unknown fields are refused");
    }

    #[test]
    fn derived_names_stay_valid() {
        assert_eq!(derived_clone_name("web", 101), "web-clone-101");
        let long = "a".repeat(63);
        let n = derived_clone_name(&long, 999_999_999);
        assert!(n.len() <= 63 && valid_name(&n), "{n}");
        assert!(n.ends_with("-clone-999999999"));
        let n = derived_clone_name(&format!("{}-b", "a".repeat(45)), 100);
        assert!(valid_name(&n), "{n}");
    }
}
