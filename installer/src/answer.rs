//! The answer file model: exactly what an operator writes, strict (`deny_unknown_fields`).
//! Enumerations are kept as strings or numbers here so that validation can report every bad
//! value with its key path at once instead of stopping at the first one.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub global: Global,
    pub disk: Disk,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub time: Time,
    #[serde(default)]
    pub ssh: Ssh,
    #[serde(default)]
    pub cluster: Cluster,
    #[serde(default)]
    pub first_boot: Option<FirstBoot>,
    #[serde(default)]
    pub post_install: Option<Webhook>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// A hostname (`pve1`) or a numbered pattern (`node{NN}`: `{N}`… with as many `N` as digits).
    pub hostname: String,
    pub domain: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default = "default_keyboard")]
    pub keyboard: String,
    #[serde(default = "default_locale")]
    pub locale: String,
    #[serde(default)]
    pub root_password_hash: Option<String>,
    #[serde(default)]
    pub root_password: Option<String>,
    #[serde(default)]
    pub admin: Option<Admin>,
    /// `reboot` or `poweroff` once the install is done.
    #[serde(default = "default_reboot")]
    pub reboot: String,
}

fn default_keyboard() -> String {
    "us".into()
}
fn default_locale() -> String {
    "en_US.UTF-8".into()
}
fn default_reboot() -> String {
    "reboot".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub name: String,
    #[serde(default)]
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFilter {
    #[serde(default)]
    pub min_size_gib: Option<u64>,
    #[serde(default)]
    pub max_size_gib: Option<u64>,
    /// Glob on the model string (`QEMU*`).
    #[serde(default)]
    pub model: Option<String>,
    /// Glob on the serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Glob on the device path (`/dev/sd*`, `/dev/disk/by-path/…` is not resolved).
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    #[serde(default)]
    pub filter: DiskFilter,
    /// Allow installing on a disk that already holds partitions (they are destroyed).
    #[serde(default)]
    pub allow_wipe: bool,
    #[serde(default)]
    pub layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(default = "default_fs")]
    pub root_fs: String,
    #[serde(default = "default_root_size")]
    pub root_size_gib: u64,
    #[serde(default = "default_swap_size")]
    pub swap_size_gib: u64,
    /// The rest of the disk becomes this LVM volume group, for VM storage.
    #[serde(default = "default_vg")]
    pub vg_name: String,
}

fn default_fs() -> String {
    "ext4".into()
}
fn default_root_size() -> u64 {
    32
}
fn default_swap_size() -> u64 {
    4
}
fn default_vg() -> String {
    "keel".into()
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            root_fs: default_fs(),
            root_size_gib: default_root_size(),
            swap_size_gib: default_swap_size(),
            vg_name: default_vg(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default)]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub bonds: Vec<Bond>,
    #[serde(default)]
    pub vlans: Vec<Vlan>,
    #[serde(default)]
    pub bridges: Vec<Bridge>,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
}

/// Layer-3 settings every interface kind shares.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// The name other sections use to refer to this NIC (`nic0`); the installed system keeps
    /// the kernel's name for the matched device.
    pub id: String,
    #[serde(default)]
    pub mac: Option<String>,
    /// Glob on the kernel name (`enp1s*`).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub dhcp: bool,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum BondModeSpec {
    Number(i64),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bond {
    pub name: String,
    /// NIC ids.
    pub slaves: Vec<String>,
    pub mode: BondModeSpec,
    #[serde(default = "default_miimon")]
    pub miimon: u32,
    #[serde(default)]
    pub lacp_rate: Option<String>,
    #[serde(default)]
    pub primary: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub dhcp: bool,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

fn default_miimon() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vlan {
    /// Defaults to `PARENT.ID`.
    #[serde(default)]
    pub name: Option<String>,
    /// A NIC id or a bond name.
    pub parent: String,
    pub id: u32,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub dhcp: bool,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    pub name: String,
    /// NIC ids, bond names or VLAN names.
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub stp: bool,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub dhcp: bool,
    #[serde(default)]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub address: String,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Time {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub pools: Vec<String>,
    #[serde(default = "default_true")]
    pub iburst: bool,
    /// Serve local time at this stratum when every source is lost (chrony `local stratum`).
    #[serde(default)]
    pub local_stratum: Option<u32>,
    #[serde(default)]
    pub timezone: Option<String>,
}

fn default_true() -> bool {
    true
}

impl Default for Time {
    fn default() -> Self {
        Time {
            servers: vec![],
            pools: vec![],
            iburst: true,
            local_stratum: None,
            timezone: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    #[serde(default)]
    pub root_keys: Vec<String>,
    #[serde(default)]
    pub admin_keys: Vec<String>,
    /// Public keys of the other nodes (a pre-shared key mesh): authorized for root.
    #[serde(default)]
    pub node_keys: Vec<String>,
    /// `prohibit-password` (default), `no` or `yes`.
    #[serde(default)]
    pub permit_root_login: Option<String>,
    #[serde(default)]
    pub password_authentication: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// `none` or `join`.
    #[serde(default = "default_cluster_mode")]
    pub mode: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

fn default_cluster_mode() -> String {
    "none".into()
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            mode: default_cluster_mode(),
            address: None,
            fingerprint: None,
            token: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirstBoot {
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub inline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    pub fingerprint: String,
}
