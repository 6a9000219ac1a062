//! Host networking of a node (day 2): what `GET /nodes/{node}/network` lists, the pending
//! changes (bonds, VLANs, bridges) and the apply with automatic rollback.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One bond slave as the bonding driver reports it (`/proc/net/bonding/BOND`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BondSlaveState {
    pub name: String,
    /// `up`, `down`, `going back`, `going down`.
    pub mii_status: String,
    pub link_failures: u64,
    pub permanent_mac: Option<String>,
}

/// The bonding driver's view of a bond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BondState {
    /// The kernel's mode name (`active-backup`, `802.3ad`, …).
    pub mode: String,
    pub active_slave: Option<String>,
    pub primary: Option<String>,
    pub mii_status: String,
    pub slaves: Vec<BondSlaveState>,
}

/// One interface of the node, live state and Keel's configuration together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostInterface {
    pub name: String,
    /// `ethernet`, `bond`, `vlan`, `bridge`, or another kernel kind (`loopback`, `veth`, …).
    pub kind: String,
    /// Kernel operational state (`UP`, `DOWN`, `UNKNOWN`, …); None when the interface is
    /// configured but does not exist (yet).
    pub state: Option<String>,
    pub mtu: Option<u32>,
    pub mac: Option<String>,
    /// Live addresses with their prefix (`192.0.2.10/24`).
    pub addresses: Vec<String>,
    /// The bond or bridge it is enslaved to.
    pub master: Option<String>,
    pub vlan_id: Option<u32>,
    pub vlan_parent: Option<String>,
    /// Bridge ports.
    #[serde(default)]
    pub ports: Vec<String>,
    pub bond: Option<BondState>,
    /// Keel's networkd files configure it (changeable through the API).
    pub managed: bool,
    /// It carries the node's management address.
    pub management: bool,
    /// Corosync links it carries (`link0`, `link1`).
    #[serde(default)]
    pub corosync_links: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostNetwork {
    pub interfaces: Vec<HostInterface>,
    /// The management address (IP) this node is reached at, when known.
    pub management_address: Option<String>,
    /// Changes are staged (see `GET …/network/pending`).
    pub pending: bool,
    /// An apply waiting for confirmation, if any.
    pub apply: Option<ApplyState>,
}

/// Layer-3 settings of a bond, VLAN or bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostL3 {
    /// Static addresses with prefix (`192.0.2.10/24`).
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub dhcp: bool,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BondPut {
    pub name: String,
    /// Kernel name (`active-backup`, `802.3ad`, …).
    #[serde(default = "default_bond_mode")]
    pub mode: String,
    pub slaves: Vec<String>,
    pub primary: Option<String>,
    /// MII link monitoring interval, ms (default 100).
    #[serde(default = "default_miimon")]
    pub miimon: u32,
    /// Static addresses with prefix (`192.0.2.10/24`).
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub dhcp: bool,
    pub mtu: Option<u32>,
}

fn default_bond_mode() -> String {
    "active-backup".into()
}

fn default_miimon() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VlanPut {
    /// Default `PARENT.ID`.
    pub name: Option<String>,
    pub parent: String,
    pub id: u32,
    /// Static addresses with prefix (`192.0.2.10/24`).
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub dhcp: bool,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BridgePut {
    pub name: String,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub stp: bool,
    /// Static addresses with prefix (`192.0.2.10/24`).
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub dhcp: bool,
    pub mtu: Option<u32>,
}

/// One changed networkd file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingFile {
    pub path: String,
    /// `added`, `removed`, `modified`.
    pub change: String,
    /// Unified-style lines (` ` kept, `-` removed, `+` added).
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingNetwork {
    /// Changes are staged.
    pub pending: bool,
    pub files: Vec<PendingFile>,
    /// The whole diff as text.
    pub diff: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkApply {
    /// Seconds to confirm from the new configuration before it is rolled back (10–600,
    /// default 60).
    #[serde(default = "default_confirm")]
    pub confirm_timeout_s: u64,
}

fn default_confirm() -> u64 {
    60
}

pub const CONFIRM_MIN_S: u64 = 10;
pub const CONFIRM_MAX_S: u64 = 600;

/// An applied configuration waiting for confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplyState {
    /// Unix time after which it is rolled back.
    pub deadline: i64,
    /// Seconds left.
    pub remaining_s: i64,
    pub upid: String,
}

macro_rules! l3_of {
    ($($t:ty),*) => {$(
        impl $t {
            /// Its layer-3 settings.
            pub fn l3(&self) -> HostL3 {
                HostL3 {
                    addresses: self.addresses.clone(),
                    gateways: self.gateways.clone(),
                    dhcp: self.dhcp,
                    mtu: self.mtu,
                }
            }
        }
    )*};
}

l3_of!(BondPut, VlanPut, BridgePut);
