//! HA VMs and shared pools (`/api/v1/nodes/{node}/vms/{vmid}/ha`, `/api/v1/cluster/ha`,
//! `/api/v1/cluster/shared-pools`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /api/v1/nodes/{node}/vms/{vmid}/ha`: make the VM highly available, or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaSet {
    /// `true`: Pacemaker keeps the VM running, restarting it on a survivor when its node dies.
    /// `false`: the VM leaves Pacemaker's hands and keeps running where it is.
    pub enabled: bool,
    /// When not every HA VM fits, higher priorities run first (0–1000000, default 0).
    #[serde(default)]
    #[schema(maximum = 1000000)]
    pub priority: Option<u32>,
    /// Failures on one node before the VM is moved to another (1–1000, default 3).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_restarts: Option<u32>,
}

/// `PUT /api/v1/nodes/{node}/maintenance`: start or end a node's maintenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSet {
    /// `true`: every running VM leaves the node (live), then the node is in standby (Pacemaker
    /// runs nothing there, across reboots). `false`: the node takes VMs again.
    pub enabled: bool,
    /// With `enabled: false`: also bring back, live, the VMs this node's maintenance moved away
    /// (a task, 202); without it they stay where they are (204). Also accepted when the node
    /// already left maintenance but some of its VMs did not come back yet (a retry).
    #[serde(default)]
    pub return_vms: bool,
    /// With `enabled: true`: also move the node's stopped VMs (not HA), offline: defined on
    /// the target (disks on node-local pools copied, on shared pools left in place), so they
    /// can be started while this node is down. Without it they stay here, stopped.
    #[serde(default)]
    pub include_stopped: bool,
}

/// One HA VM as Pacemaker runs it (`GET /api/v1/cluster/ha`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HaVmStatus {
    pub vmid: u32,
    pub name: String,
    /// The Pacemaker resource (`keel-vm-<vmid>`).
    pub resource: String,
    /// `started` or `stopped`: what Pacemaker is asked to keep.
    pub target: String,
    /// Where it runs now (none while stopped or recovering).
    pub node: Option<String>,
    pub active: bool,
    /// A failed operation is recorded for it (see `failures`).
    pub failed: bool,
    pub managed: bool,
    pub priority: u32,
    pub max_restarts: u32,
    /// Failed operations Pacemaker recorded for it: "node: operation: reason".
    pub failures: Vec<String>,
    /// Pacemaker's fail count per node (at `max_restarts` the VM is banned from that node until
    /// a clean-up).
    #[serde(default)]
    pub fail_counts: BTreeMap<String, u64>,
    /// Ids of the placement rules that name it.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// Answer of `POST /api/v1/cluster/ha/{vmid}/cleanup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HaCleanup {
    pub message: String,
}

/// `POST /api/v1/cluster/shared-pools`: a directory every node mounts from the same shared
/// storage (an NFS export, a cluster file system), usable for HA VMs' disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedPoolCreate {
    /// Pool name (letters, digits, '-', '_', '.', '+'); the libvirt `dir` pool on every node.
    pub name: String,
    /// Absolute path of the shared directory, the same on every node.
    pub path: String,
}

/// A shared pool and how each node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SharedPoolInfo {
    pub name: String,
    pub path: String,
    /// Per node: `ok`, or why the node cannot use it (e.g. the marker is missing: the shared
    /// storage is not mounted there).
    pub nodes: BTreeMap<String, String>,
}

/// `GET /api/v1/cluster/what-if?node_fail=NODE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WhatIfQuery {
    /// The member whose failure Pacemaker's scheduler simulates.
    pub node_fail: String,
}

/// What Pacemaker would do with the HA VMs if a node failed now (`crm_simulate` on the live
/// CIB; nothing is changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhatIf {
    pub node_fail: String,
    pub vms: Vec<WhatIfVm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhatIfVm {
    pub vmid: u32,
    pub name: String,
    /// Where it runs now.
    pub now: Option<String>,
    /// Where it would run after the failure (none: it would stay down).
    pub after: Option<String>,
    /// `unaffected`, `restarts`, `moves`, `stays-down` or `stopped`.
    pub outcome: String,
    /// In words, with the reason when it would stay down.
    pub detail: String,
}

/// A placement rule for HA VMs (`/api/v1/cluster/ha/rules`), rendered as Pacemaker constraints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaRule {
    /// 1–40 letters, digits, '-' and '_'.
    pub id: String,
    pub kind: HaRuleKind,
    /// The HA VMs it applies to (node-affinity: 1 or more; together/apart: 2 or more).
    pub vms: Vec<u32>,
    /// node-affinity only: the nodes, each with a priority (a higher one is preferred).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<HaRuleNode>,
    /// Hard: Pacemaker never breaks it (a VM stays down rather). Soft: a preference.
    /// For node-affinity, hard means "only on these nodes".
    #[serde(default)]
    pub hard: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HaRuleKind {
    /// Run the VMs on these nodes (preferred, or only there when hard).
    NodeAffinity,
    /// Run the VMs on the same node.
    Together,
    /// Run the VMs on different nodes.
    Apart,
}

impl HaRuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HaRuleKind::NodeAffinity => "node-affinity",
            HaRuleKind::Together => "together",
            HaRuleKind::Apart => "apart",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaRuleNode {
    pub node: String,
    /// 0–1000000 (default 100).
    #[serde(default = "default_rule_priority")]
    #[schema(maximum = 1000000)]
    pub priority: u32,
}

fn default_rule_priority() -> u32 {
    100
}
