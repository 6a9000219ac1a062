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
    /// VMs on this node with a NIC on this network (or, for a host bridge, on the bridge),
    /// with whether each is running.
    #[serde(default)]
    pub used_by: Vec<NetworkUser>,
}

/// A VM with a NIC on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkUser {
    pub vmid: u32,
    pub name: String,
    pub running: bool,
}

/// Change a libvirt network's settings (`PUT .../networks/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkUpdate {
    /// Start the network when the host boots.
    pub autostart: bool,
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

/// Shortest NAT prefix. hostd hands DHCP the upper half of the subnet, and libvirt refuses a
/// DHCP range whose ends differ in their first two octets ("range … is too large (> 65535)"):
/// a /15's upper half is the last /16 of it, a /14's is not.
pub const NAT_PREFIX_MIN: u32 = 15;
/// Longest NAT prefix: a /30 has two usable addresses (the gateway and one guest).
pub const NAT_PREFIX_MAX: u32 = 30;

/// IPv4 ranges a NAT network may not overlap, with what they are.
const SPECIAL_V4: &[([u8; 4], u32, &str)] = &[
    (
        [0, 0, 0, 0],
        8,
        "the unspecified (\"this network\") range 0.0.0.0/8",
    ),
    ([127, 0, 0, 0], 8, "the loopback range 127.0.0.0/8"),
    ([169, 254, 0, 0], 16, "the link-local range 169.254.0.0/16"),
    ([224, 0, 0, 0], 4, "the multicast range 224.0.0.0/4"),
    (
        [240, 0, 0, 0],
        4,
        "the reserved range 240.0.0.0/4 (with the broadcast address)",
    ),
];

/// `ADDRESS/PREFIX` for IPv4, any prefix 0-32.
pub fn parse_ipv4_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u32)> {
    let (a, p) = s.trim().split_once('/')?;
    let p: u32 = p.parse().ok()?;
    if p > 32 {
        return None;
    }
    Some((a.parse().ok()?, p))
}

fn mask(prefix: u32) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// Check a NAT network's `cidr` (gateway/prefix): an IPv4 address and prefix libvirt accepts,
/// the gateway neither the network nor the broadcast address, no overlap with the loopback,
/// unspecified, link-local, multicast or reserved ranges.
pub fn validate_nat_cidr(cidr: &str) -> Result<(), crate::FieldError> {
    let err = |m: String| Err(crate::FieldError::new("cidr", m));
    let Some((gw, prefix)) = parse_ipv4_cidr(cidr) else {
        return err(format!(
            "{cidr:?} is not IPV4/PREFIX, e.g. 10.99.0.1/24 (IPv6 NAT networks are not offered)"
        ));
    };
    if !(NAT_PREFIX_MIN..=NAT_PREFIX_MAX).contains(&prefix) {
        return err(format!(
            "a /{prefix} NAT network is not possible: use a prefix of {NAT_PREFIX_MIN} to \
             {NAT_PREFIX_MAX} (libvirt refuses a DHCP range of more than 65535 addresses)"
        ));
    }
    let m = mask(prefix);
    let net = u32::from(gw) & m;
    let bcast = net | !m;
    for (base, plen, what) in SPECIAL_V4 {
        let common = mask(prefix.min(*plen));
        if net & common == u32::from_be_bytes(*base) & common {
            return err(format!(
                "{cidr} lies in {what}: use a private range such as 10.99.0.1/24"
            ));
        }
    }
    if u32::from(gw) == net || u32::from(gw) == bcast {
        return err(format!(
            "{gw} is the network or broadcast address of {}/{prefix}; give the gateway, e.g. {}",
            std::net::Ipv4Addr::from(net),
            std::net::Ipv4Addr::from(net + 1)
        ));
    }
    Ok(())
}

impl NetworkCreate {
    /// What can be checked without the host: the name and, for NAT, the subnet.
    pub fn validate(&self) -> Result<(), crate::FieldError> {
        if !crate::vm::valid_object_name(&self.name) || self.name.len() > 50 {
            return Err(crate::FieldError::new(
                "name",
                format!(
                    "{:?} is not a valid network name: 1-50 letters, digits, '-', '_', '.', '+'",
                    self.name
                ),
            ));
        }
        if self.kind == NetworkKind::Nat {
            match self.cidr.as_deref() {
                None => {
                    return Err(crate::FieldError::new(
                        "cidr",
                        "a NAT network needs cidr, e.g. 10.99.0.1/24",
                    ))
                }
                Some(c) => validate_nat_cidr(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldError;

    fn nat(cidr: &str) -> Result<(), FieldError> {
        NetworkCreate {
            name: "n1".into(),
            kind: NetworkKind::Nat,
            bridge: None,
            cidr: Some(cidr.into()),
            autostart: true,
        }
        .validate()
    }

    fn msg(cidr: &str) -> String {
        match nat(cidr) {
            Err(e) => {
                assert_eq!(e.field, "cidr");
                e.message
            }
            Ok(()) => format!("accepted {cidr}"),
        }
    }

    #[test]
    fn nat_subnets_accepted() {
        for c in [
            "10.99.0.1/24",
            "192.168.122.1/24",
            "172.16.0.1/16",
            "10.98.0.1/15",
            "10.0.0.1/30",
            "100.64.0.1/24",
        ] {
            assert_eq!(nat(c), Ok(()), "{c}");
        }
    }

    /// The messages, word for word (the CLI and the UI show them as they are).
    #[test]
    fn nat_subnets_refused_with_their_reason() {
        let cases = [
            ("10.0.0.1/8", "a /8 NAT network is not possible: use a prefix of 15 to 30 (libvirt refuses a DHCP range of more than 65535 addresses)"),
            ("10.96.0.1/14", "a /14 NAT network is not possible: use a prefix of 15 to 30 (libvirt refuses a DHCP range of more than 65535 addresses)"),
            ("10.0.0.1/31", "a /31 NAT network is not possible: use a prefix of 15 to 30 (libvirt refuses a DHCP range of more than 65535 addresses)"),
            ("127.1.0.1/24", "127.1.0.1/24 lies in the loopback range 127.0.0.0/8: use a private range such as 10.99.0.1/24"),
            ("224.0.0.1/24", "224.0.0.1/24 lies in the multicast range 224.0.0.0/4: use a private range such as 10.99.0.1/24"),
            ("0.0.0.1/24", "0.0.0.1/24 lies in the unspecified (\"this network\") range 0.0.0.0/8: use a private range such as 10.99.0.1/24"),
            ("169.254.1.1/24", "169.254.1.1/24 lies in the link-local range 169.254.0.0/16: use a private range such as 10.99.0.1/24"),
            ("250.0.0.1/24", "250.0.0.1/24 lies in the reserved range 240.0.0.0/4 (with the broadcast address): use a private range such as 10.99.0.1/24"),
            ("10.99.0.0/24", "10.99.0.0 is the network or broadcast address of 10.99.0.0/24; give the gateway, e.g. 10.99.0.1"),
            ("10.99.0.255/24", "10.99.0.255 is the network or broadcast address of 10.99.0.0/24; give the gateway, e.g. 10.99.0.1"),
            ("fd00::1/64", "\"fd00::1/64\" is not IPV4/PREFIX, e.g. 10.99.0.1/24 (IPv6 NAT networks are not offered)"),
            ("10.99.0.1", "\"10.99.0.1\" is not IPV4/PREFIX, e.g. 10.99.0.1/24 (IPv6 NAT networks are not offered)"),
        ];
        for (c, want) in cases {
            assert_eq!(msg(c), want, "{c}");
        }
    }

    #[test]
    fn name_and_missing_cidr() {
        let mut n = NetworkCreate {
            name: "bad name".into(),
            kind: NetworkKind::Nat,
            bridge: None,
            cidr: None,
            autostart: true,
        };
        assert_eq!(n.validate().map_err(|e| e.field), Err("name".to_string()));
        n.name = "ok".into();
        assert_eq!(
            n.validate(),
            Err(FieldError::new(
                "cidr",
                "a NAT network needs cidr, e.g. 10.99.0.1/24"
            ))
        );
        n.kind = NetworkKind::Bridge;
        assert_eq!(n.validate(), Ok(()));
    }
}
