//! Day-2 edits of a [`NetConfig`]: create or change a bond, VLAN or bridge, delete one. Each
//! edit checks what it touches and relinks the model; [`crate::validate::validate`] checks the
//! whole result.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::validate::{check_ifname, check_mtu, check_vlan_id, Problem};
use crate::{BondMode, Cidr, Device, DeviceKind, NetConfig};

/// Layer-3 settings of a bond, VLAN or bridge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct L3 {
    pub addresses: Vec<Cidr>,
    pub gateways: Vec<IpAddr>,
    pub dhcp: bool,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BondEdit {
    pub name: String,
    pub mode: BondMode,
    pub slaves: Vec<String>,
    pub primary: Option<String>,
    pub miimon: u32,
    pub l3: L3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlanEdit {
    /// Default: `PARENT.ID`.
    pub name: Option<String>,
    pub parent: String,
    pub id: u32,
    pub l3: L3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeEdit {
    pub name: String,
    pub ports: Vec<String>,
    pub stp: bool,
    pub l3: L3,
}

fn set_l3(d: &mut Device, l3: &L3) -> Result<(), Problem> {
    if let Some(m) = l3.mtu {
        check_mtu(&d.name, m)?;
    }
    d.addresses = l3.addresses.clone();
    d.gateways = l3.gateways.clone();
    d.dhcp = l3.dhcp;
    d.mtu = l3.mtu;
    Ok(())
}

/// Replace the device `name` (keeping its place) or append it.
fn put(cfg: &mut NetConfig, d: Device) -> Result<(), Problem> {
    match cfg.devices.iter_mut().find(|x| x.name == d.name) {
        Some(old) if old.kind.type_name() != d.kind.type_name() => Err(Problem::new(
            &d.name,
            format!(
                "`{}` is already a {}; choose another name or delete it first",
                d.name,
                old.kind.type_name()
            ),
        )),
        Some(old) => {
            let role = old.role;
            *old = d;
            old.role = role;
            Ok(())
        }
        None => {
            // Keep the model's order: NICs, bonds, VLANs, bridges.
            let p = crate::render::prefix(&d.kind);
            let at = cfg
                .devices
                .iter()
                .position(|x| crate::render::prefix(&x.kind) > p)
                .unwrap_or(cfg.devices.len());
            cfg.devices.insert(at, d);
            Ok(())
        }
    }
}

/// Lower devices must exist; a NIC that becomes a slave or port must not carry addresses.
fn check_lower(cfg: &NetConfig, upper: &str, lower: &[String], what: &str) -> Result<(), Problem> {
    for l in lower {
        let Some(d) = cfg.device(l) else {
            return Err(Problem::new(
                upper,
                format!("{what} `{l}` is not a device Keel manages on this node"),
            ));
        };
        if d.master.as_deref().is_some_and(|m| m != upper) {
            return Err(Problem::new(
                upper,
                format!(
                    "{what} `{l}` is already enslaved to `{}`",
                    d.master.as_deref().unwrap_or_default()
                ),
            ));
        }
        if d.master.is_none() && (!d.addresses.is_empty() || d.dhcp) {
            return Err(Problem::new(
                upper,
                format!(
                    "{what} `{l}` carries addresses ({}); move them off `{l}` first",
                    if d.dhcp {
                        "DHCP".to_string()
                    } else {
                        d.addresses
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

pub fn put_bond(cfg: &mut NetConfig, e: &BondEdit) -> Result<(), Problem> {
    check_ifname(&e.name)?;
    if e.slaves.is_empty() {
        return Err(Problem::new(
            &e.name,
            "a bond needs at least one slave; give slaves or delete the bond",
        ));
    }
    for s in &e.slaves {
        match cfg.device(s).map(|d| &d.kind) {
            Some(DeviceKind::Ethernet { .. }) | None => {}
            Some(k) => {
                return Err(Problem::new(
                    &e.name,
                    format!(
                        "slave `{s}` is a {}; a bond's slaves are NICs",
                        k.type_name()
                    ),
                ))
            }
        }
    }
    check_lower(cfg, &e.name, &e.slaves, "slave")?;
    if let Some(p) = &e.primary {
        if !e.slaves.contains(p) {
            return Err(Problem::new(
                &e.name,
                format!("primary `{p}` is not one of its slaves"),
            ));
        }
        if !e.mode.takes_primary() {
            return Err(Problem::new(
                &e.name,
                format!("mode {} does not use a primary slave", e.mode.name()),
            ));
        }
    }
    let mut d = Device::new(
        &e.name,
        DeviceKind::Bond {
            mode: e.mode,
            miimon: e.miimon,
            lacp_rate: None,
            primary: e.primary.clone(),
            slaves: e.slaves.clone(),
        },
    );
    set_l3(&mut d, &e.l3)?;
    put(cfg, d)?;
    cfg.relink();
    Ok(())
}

pub fn vlan_name(e: &VlanEdit) -> String {
    e.name
        .clone()
        .unwrap_or_else(|| format!("{}.{}", e.parent, e.id))
}

pub fn put_vlan(cfg: &mut NetConfig, e: &VlanEdit) -> Result<(), Problem> {
    let name = vlan_name(e);
    check_ifname(&name)?;
    check_vlan_id(&name, e.id)?;
    match cfg.device(&e.parent) {
        None => {
            return Err(Problem::new(
                &name,
                format!(
                    "parent `{}` is not a device Keel manages on this node",
                    e.parent
                ),
            ))
        }
        Some(p) if p.master.is_some() => {
            let m = p.master.clone().unwrap_or_default();
            return Err(Problem::new(
                &name,
                format!(
                    "parent `{}` is enslaved to `{m}`; put the VLAN on `{m}` instead",
                    e.parent
                ),
            ));
        }
        Some(_) => {}
    }
    let mut d = Device::new(
        &name,
        DeviceKind::Vlan {
            parent: e.parent.clone(),
            id: e.id,
        },
    );
    set_l3(&mut d, &e.l3)?;
    put(cfg, d)?;
    cfg.relink();
    Ok(())
}

pub fn put_bridge(cfg: &mut NetConfig, e: &BridgeEdit) -> Result<(), Problem> {
    check_ifname(&e.name)?;
    for p in &e.ports {
        if let Some(DeviceKind::Bridge { .. }) = cfg.device(p).map(|d| &d.kind) {
            return Err(Problem::new(
                &e.name,
                format!("port `{p}` is a bridge; bridges cannot be ports"),
            ));
        }
    }
    check_lower(cfg, &e.name, &e.ports, "port")?;
    let mut d = Device::new(
        &e.name,
        DeviceKind::Bridge {
            ports: e.ports.clone(),
            stp: e.stp,
        },
    );
    set_l3(&mut d, &e.l3)?;
    put(cfg, d)?;
    cfg.relink();
    Ok(())
}

/// Delete a bond, VLAN or bridge. Refused for NICs and for a device another one is built on
/// (a bridge's port, a VLAN's parent); a bond's slaves become unconfigured NICs.
pub fn delete(cfg: &mut NetConfig, name: &str) -> Result<(), Problem> {
    let Some(d) = cfg.device(name) else {
        return Err(Problem::new(
            name,
            "no such bond, VLAN or bridge in Keel's configuration of this node",
        ));
    };
    if !d.kind.is_virtual() {
        return Err(Problem::new(
            name,
            "a NIC cannot be deleted; only bonds, VLANs and bridges",
        ));
    }
    let mut users: Vec<String> = d.vlans.clone();
    if let Some(m) = &d.master {
        users.push(m.clone());
    }
    if !users.is_empty() {
        return Err(Problem::new(
            name,
            format!(
                "{} built on it; delete or change {} first",
                users
                    .iter()
                    .map(|u| format!("`{u}` is"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if users.len() == 1 { "it" } else { "them" }
            ),
        ));
    }
    cfg.devices.retain(|x| x.name != name);
    if cfg.management == name {
        cfg.management.clear();
    }
    cfg.relink();
    Ok(())
}
