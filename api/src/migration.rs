//! Migration of a VM to another cluster member: the request and its validation.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

/// Highest bandwidth limit accepted, MiB/s (libvirt's own ceiling is far above any link).
pub const MIGRATE_BANDWIDTH_MAX: u64 = 1_000_000;
/// Longest downtime limit accepted, ms.
pub const MIGRATE_DOWNTIME_MAX: u64 = 60_000;

fn default_true() -> bool {
    true
}

/// Move a VM to `target`: live (running VM, memory and local disks copied while it runs) or
/// offline (stopped VM: definition and volumes copied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Name of the cluster member to move the VM to.
    #[schema(min_length = 1, max_length = 64)]
    pub target: String,
    /// Limit of the memory migration stream, MiB/s; unlimited when absent. (libvirt 9.0 does
    /// not apply it to the NBD copy of disks: observed in the netns lab.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub bandwidth_mib_s: Option<u64>,
    /// Longest pause of the guest at the switch-over, ms (QEMU's default, 300 ms, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 60_000)]
    pub max_downtime_ms: Option<u64>,
    /// Slow the guest's vCPUs down when its memory is dirtied faster than it is copied, so the
    /// migration converges (default on).
    #[serde(default = "default_true")]
    pub auto_converge: bool,
}

impl MigrateRequest {
    pub fn validate(&self) -> Result<(), FieldError> {
        let t = &self.target;
        if t.is_empty()
            || t.len() > 64
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(FieldError::new(
                "target",
                format!("{t:?} is not a node name (letters, digits, '-', '.')"),
            ));
        }
        if let Some(b) = self.bandwidth_mib_s {
            if b == 0 || b > MIGRATE_BANDWIDTH_MAX {
                return Err(FieldError::new(
                    "bandwidth_mib_s",
                    format!("{b} MiB/s is out of range: use 1 to {MIGRATE_BANDWIDTH_MAX} (or leave it out for no limit)"),
                ));
            }
        }
        if let Some(d) = self.max_downtime_ms {
            if d == 0 || d > MIGRATE_DOWNTIME_MAX {
                return Err(FieldError::new(
                    "max_downtime_ms",
                    format!("{d} ms is out of range: use 1 to {MIGRATE_DOWNTIME_MAX}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> MigrateRequest {
        MigrateRequest {
            target: target.into(),
            bandwidth_mib_s: None,
            max_downtime_ms: None,
            auto_converge: true,
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(req("node2").validate().is_ok());
        assert_eq!(
            req("no de").validate().map_err(|e| e.field),
            Err("target".into())
        );
        let mut r = req("node2");
        r.bandwidth_mib_s = Some(0);
        assert_eq!(
            r.validate().map_err(|e| e.field),
            Err("bandwidth_mib_s".into())
        );
        let mut r = req("node2");
        r.max_downtime_ms = Some(60_001);
        assert_eq!(
            r.validate().map_err(|e| e.field),
            Err("max_downtime_ms".into())
        );
        let r: MigrateRequest = serde_json::from_str(r#"{"target":"n2"}"#).unwrap_or(req("x"));
        assert!(r.auto_converge && r.target == "n2");
    }
}
