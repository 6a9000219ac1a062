//! Libvirt networks and host bridges.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    /// libvirt network with NAT to the host's uplinks.
    Nat,
    /// libvirt network on an existing host bridge.
    Bridge,
    /// libvirt network with no forwarding.
    Isolated,
    /// A Linux bridge on the host, not managed by libvirt.
    HostBridge,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkInfo {
    pub name: String,
    pub kind: NetworkKind,
    pub bridge: Option<String>,
    pub active: bool,
    pub autostart: bool,
    /// Address of the network's gateway with prefix, e.g. `10.99.0.1/24` (NAT networks).
    pub cidr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    /// `nat` or `bridge` (isolated: `nat` without forwarding is not offered yet).
    pub kind: NetworkKind,
    /// Bridge device: created by libvirt for `nat` (default `keel-<name>`), must exist for `bridge`.
    #[serde(default)]
    pub bridge: Option<String>,
    /// Gateway address with prefix for `nat`, e.g. `10.99.0.1/24`; a DHCP range is derived.
    #[serde(default)]
    pub cidr: Option<String>,
    #[serde(default = "yes")]
    pub autostart: bool,
}

fn yes() -> bool {
    true
}
