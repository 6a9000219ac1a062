//! Structural checks of a whole [`NetConfig`], each problem naming the device and what would
//! be valid. Node-specific checks (the management address, corosync links, bridges VMs use)
//! are hostd's; these hold for any node.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::{Cidr, DeviceKind, NetConfig, DEFAULT_MTU, MTU_MAX, MTU_MIN};

/// One problem with one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{device}: {message}")]
pub struct Problem {
    pub device: String,
    pub message: String,
}

impl Problem {
    pub fn new(device: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            device: device.into(),
            message: message.into(),
        }
    }
}

/// A Linux interface name: 1–15 characters of letters, digits, `-`, `_`, `.`.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub fn check_ifname(s: &str) -> Result<(), Problem> {
    if valid_ifname(s) {
        Ok(())
    } else {
        Err(Problem::new(
            s,
            format!("`{s}` is not a valid interface name: 1 to 15 characters of letters, digits, `-`, `_`, `.`"),
        ))
    }
}

pub fn check_vlan_id(device: &str, id: u32) -> Result<(), Problem> {
    if (1..=4094).contains(&id) {
        Ok(())
    } else {
        Err(Problem::new(
            device,
            format!("VLAN id {id} is out of range; valid: 1 to 4094"),
        ))
    }
}

pub fn check_mtu(device: &str, mtu: u32) -> Result<(), Problem> {
    if (MTU_MIN..=MTU_MAX).contains(&mtu) {
        Ok(())
    } else {
        Err(Problem::new(
            device,
            format!("MTU {mtu} is out of range; valid: {MTU_MIN} to {MTU_MAX}"),
        ))
    }
}

fn is_bond(cfg: &NetConfig, name: &str) -> bool {
    matches!(
        cfg.device(name).map(|d| &d.kind),
        Some(DeviceKind::Bond { .. })
    )
}

/// Every problem of `cfg` (empty = valid).
pub fn validate(cfg: &NetConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut owner: HashMap<&str, &str> = HashMap::new(); // lower device → bond/bridge
    let mut vlan_ids: HashMap<(&str, u32), &str> = HashMap::new();
    let mut addrs: HashMap<std::net::IpAddr, &str> = HashMap::new();
    for d in &cfg.devices {
        let n = d.name.as_str();
        if let Err(p) = check_ifname(n) {
            out.push(p);
        }
        if !seen.insert(n) {
            out.push(Problem::new(n, "defined twice"));
        }
        if let Some(m) = d.mtu {
            if let Err(p) = check_mtu(n, m) {
                out.push(p);
            }
        }
        match &d.kind {
            DeviceKind::Ethernet { .. } => {}
            DeviceKind::Bond {
                slaves, primary, ..
            } => {
                if slaves.is_empty() {
                    out.push(Problem::new(
                        n,
                        "a bond needs at least one slave; give slaves or delete the bond",
                    ));
                }
                for s in slaves {
                    match cfg.device(s).map(|x| &x.kind) {
                        Some(DeviceKind::Ethernet { .. }) => {}
                        Some(k) => out.push(Problem::new(
                            n,
                            format!(
                                "slave `{s}` is a {}; a bond's slaves are NICs",
                                k.type_name()
                            ),
                        )),
                        None => out.push(Problem::new(
                            n,
                            format!("slave `{s}` is not a NIC Keel manages on this node"),
                        )),
                    }
                }
                if let Some(p) = primary {
                    if !slaves.contains(p) {
                        out.push(Problem::new(
                            n,
                            format!("primary `{p}` is not one of its slaves"),
                        ));
                    }
                }
            }
            DeviceKind::Vlan { parent, id } => {
                if let Err(p) = check_vlan_id(n, *id) {
                    out.push(p);
                }
                match cfg.device(parent) {
                    None => out.push(Problem::new(
                        n,
                        format!("parent `{parent}` is not a device Keel manages on this node"),
                    )),
                    Some(p) => {
                        // A VLAN on a bridge port is fine (the installer's bond0 is both);
                        // on a bond slave it would bypass the bond.
                        if let Some(m) = p.master.as_ref().filter(|m| is_bond(cfg, m)) {
                            out.push(Problem::new(
                                n,
                                format!("parent `{parent}` is enslaved to `{m}`; put the VLAN on `{m}` instead"),
                            ));
                        }
                        let pm = p.mtu.unwrap_or(DEFAULT_MTU);
                        if d.mtu.is_some_and(|m| m > pm) {
                            out.push(Problem::new(
                                n,
                                format!(
                                    "MTU {} is larger than its parent `{parent}`'s ({pm})",
                                    d.mtu.unwrap_or_default()
                                ),
                            ));
                        }
                    }
                }
                if let Some(other) = vlan_ids.insert((parent.as_str(), *id), n) {
                    out.push(Problem::new(
                        n,
                        format!("VLAN {id} on `{parent}` is already `{other}`"),
                    ));
                }
            }
            DeviceKind::Bridge { ports, .. } => {
                for p in ports {
                    match cfg.device(p).map(|x| &x.kind) {
                        Some(DeviceKind::Bridge { .. }) => out.push(Problem::new(
                            n,
                            format!("port `{p}` is a bridge; bridges cannot be ports"),
                        )),
                        Some(_) => {}
                        None => out.push(Problem::new(
                            n,
                            format!("port `{p}` is not a device Keel manages on this node"),
                        )),
                    }
                }
            }
        }
        for l in d.lower() {
            if matches!(d.kind, DeviceKind::Vlan { .. }) {
                continue;
            }
            if let Some(first) = owner.insert(l, n) {
                out.push(Problem::new(
                    n,
                    format!("`{l}` is already enslaved to `{first}`"),
                ));
            }
        }
        if d.master.is_some() && (!d.addresses.is_empty() || d.dhcp) {
            out.push(Problem::new(
                n,
                format!(
                    "it is enslaved to `{}` and cannot carry addresses or DHCP; put them on `{}`",
                    d.master.as_deref().unwrap_or_default(),
                    d.master.as_deref().unwrap_or_default()
                ),
            ));
        }
        if d.master.as_ref().is_some_and(|m| is_bond(cfg, m)) && !d.vlans.is_empty() {
            out.push(Problem::new(
                n,
                format!(
                    "it is enslaved to `{}` and cannot carry VLANs ({})",
                    d.master.as_deref().unwrap_or_default(),
                    d.vlans.join(", ")
                ),
            ));
        }
        for a in &d.addresses {
            if let Some(why) = a.reserved_host() {
                out.push(Problem::new(
                    n,
                    format!("address {a} is {why} of its subnet"),
                ));
            }
            // The same address on two devices is allowed: moving an address is two edits
            // (onto the new device, then off the old one), each checked on its own.
            if let Some(other) = addrs.insert(a.addr, n) {
                if other == n {
                    out.push(Problem::new(
                        n,
                        format!("address {} is listed twice", a.addr),
                    ));
                }
            }
        }
        for g in &d.gateways {
            if !d.addresses.iter().any(|a: &Cidr| a.contains(*g)) && !d.dhcp {
                out.push(Problem::new(
                    n,
                    format!("gateway {g} is in none of its subnets"),
                ));
            }
        }
    }
    out
}
