//! VM snapshots (libvirt internal snapshots of qcow2 disks) and disk growth: the wire types and
//! their validation.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

/// Longest snapshot name.
pub const SNAPSHOT_NAME_MAX: usize = 40;
/// Longest snapshot description.
pub const SNAPSHOT_DESCRIPTION_MAX: usize = 1024;

/// Take a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreate {
    /// Starts with a letter; letters, digits, `-`, `_`; at most 40 characters.
    #[schema(
        pattern = r"^[A-Za-z][A-Za-z0-9_-]{0,39}$",
        min_length = 1,
        max_length = 40
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// Include the guest's memory (running VMs only): a rollback then resumes the guest where
    /// it was. A running VM can only be snapshotted with its memory (QEMU's internal snapshots
    /// of a running guest always include it).
    #[serde(default)]
    pub memory: bool,
}

/// Check a snapshot name (also used for path parameters).
pub fn validate_snapshot_name(name: &str) -> Result<(), FieldError> {
    let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() || name.len() > SNAPSHOT_NAME_MAX || !ok_first || !ok_rest {
        return Err(FieldError::new(
            "name",
            format!(
                "snapshot name {name:?} is invalid: it must start with a letter and hold only letters, digits, '-' and '_' (at most {SNAPSHOT_NAME_MAX} characters)"
            ),
        ));
    }
    Ok(())
}

impl SnapshotCreate {
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_snapshot_name(&self.name)?;
        if let Some(d) = &self.description {
            if d.len() > SNAPSHOT_DESCRIPTION_MAX {
                return Err(FieldError::new(
                    "description",
                    format!("description is longer than {SNAPSHOT_DESCRIPTION_MAX} bytes"),
                ));
            }
            if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err(FieldError::new(
                    "description",
                    "description may not hold control characters other than newline and tab",
                ));
            }
        }
        Ok(())
    }
}

/// One snapshot of a VM, as a node of the snapshot tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The snapshot this one was taken on top of (none for a root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Snapshots taken on top of this one, oldest first.
    #[serde(default)]
    pub children: Vec<String>,
    /// Unix seconds (UTC) it was taken.
    pub created: i64,
    /// The VM's state when it was taken (`running`, `paused`, `stopped`).
    pub vm_state: String,
    /// Holds the guest's memory: a rollback resumes the running guest.
    pub has_memory: bool,
    /// The VM's current snapshot (the parent of the next one taken).
    pub current: bool,
}

/// Grow a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskResize {
    /// The disk's new size in MiB (absolute, not an increment); larger than its current size.
    #[schema(minimum = 1, maximum = 67_108_864)]
    pub size_mib: u64,
}

/// Largest disk size Keel accepts, MiB (64 TiB, as for new volumes).
pub const DISK_MAX_MIB: u64 = 67_108_864;

impl DiskResize {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.size_mib == 0 || self.size_mib > DISK_MAX_MIB {
            return Err(FieldError::new(
                "size_mib",
                format!("size_mib must be between 1 and {DISK_MAX_MIB} (64 TiB)"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "before-upgrade", "A_1", &"x".repeat(40)] {
            assert!(validate_snapshot_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "-a", "a b", "a/b", "a.b", "ä", &"x".repeat(41)] {
            let e = validate_snapshot_name(bad).err();
            assert_eq!(e.map(|e| e.field), Some("name".to_string()), "{bad}");
        }
    }

    #[test]
    fn create_validation() {
        let mut c = SnapshotCreate {
            name: "s1".into(),
            description: Some("before\tupgrade\n".into()),
            memory: false,
        };
        assert!(c.validate().is_ok());
        c.description = Some("a\u{7}".into());
        assert_eq!(c.validate().map_err(|e| e.field), Err("description".into()));
        c.description = Some("x".repeat(1025));
        assert_eq!(c.validate().map_err(|e| e.field), Err("description".into()));
    }

    #[test]
    fn resize_validation() {
        assert!(DiskResize { size_mib: 1 }.validate().is_ok());
        assert!(DiskResize { size_mib: 0 }.validate().is_err());
        assert!(DiskResize {
            size_mib: DISK_MAX_MIB + 1
        }
        .validate()
        .is_err());
    }
}
