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
        Some(p)
            if p.master.as_ref().is_some_and(|m| {
                matches!(
                    cfg.device(m).map(|d| &d.kind),
                    Some(DeviceKind::Bond { .. })
                )
            }) =>
        {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::render::network_files;
    use crate::validate::validate;

    /// The VM lab's installed node: an active-backup bond of two NICs, vmbr0 (management) on
    /// it, VLAN 100 on the bond with vmbr100 on top.
    pub fn lab() -> NetConfig {
        let nic = |n: &str, mac: &str| {
            Device::new(
                n,
                DeviceKind::Ethernet {
                    mac: mac.to_string(),
                },
            )
        };
        let mut cfg = NetConfig {
            devices: vec![
                nic("ens3", "52:54:00:00:00:01"),
                nic("ens4", "52:54:00:00:00:02"),
                nic("ens5", "52:54:00:00:00:03"),
                nic("ens6", "52:54:00:00:00:04"),
            ],
            dns_servers: vec![],
            dns_search: vec![],
            management: "vmbr0".into(),
        };
        put_bond(
            &mut cfg,
            &BondEdit {
                name: "bond0".into(),
                mode: BondMode::ActiveBackup,
                slaves: vec!["ens3".into(), "ens4".into()],
                primary: Some("ens3".into()),
                miimon: 100,
                l3: L3::default(),
            },
        )
        .unwrap();
        put_vlan(
            &mut cfg,
            &VlanEdit {
                name: None,
                parent: "bond0".into(),
                id: 100,
                l3: L3::default(),
            },
        )
        .unwrap();
        put_bridge(
            &mut cfg,
            &BridgeEdit {
                name: "vmbr0".into(),
                ports: vec!["bond0".into()],
                stp: false,
                l3: L3 {
                    addresses: vec![Cidr::parse("10.99.0.11/24").unwrap()],
                    ..L3::default()
                },
            },
        )
        .unwrap();
        cfg
    }

    #[test]
    fn edits_build_a_valid_model_that_reads_back() {
        let mut cfg = lab();
        put_bond(
            &mut cfg,
            &BondEdit {
                name: "bond1".into(),
                mode: BondMode::Lacp,
                slaves: vec!["ens5".into(), "ens6".into()],
                primary: None,
                miimon: 100,
                l3: L3::default(),
            },
        )
        .unwrap();
        assert!(validate(&cfg).is_empty(), "{:?}", validate(&cfg));
        assert_eq!(cfg.device("ens5").unwrap().master.as_deref(), Some("bond1"));
        assert_eq!(cfg.device("bond0").unwrap().vlans, vec!["bond0.100"]);
        let files = network_files(&cfg, "/n", "Generated by keel-test");
        let pairs: Vec<(String, String)> = files
            .iter()
            .map(|f| {
                (
                    f.path.trim_start_matches("/n/").to_string(),
                    f.content.clone(),
                )
            })
            .collect();
        let back = crate::parse::read_files(&pairs).unwrap();
        let mut again = network_files(&back, "/n", "Generated by keel-test");
        let mut orig = files;
        again.sort_by(|a, b| a.path.cmp(&b.path));
        orig.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(again, orig);
        // the new bond's netdev and a slave's network file
        let bond = orig
            .iter()
            .find(|f| f.path == "/n/20-bond1.netdev")
            .unwrap();
        assert!(bond.content.contains("Mode=802.3ad"), "{}", bond.content);
        let slave = orig
            .iter()
            .find(|f| f.path == "/n/10-ens5.network")
            .unwrap();
        assert!(slave.content.contains("Bond=bond1"), "{}", slave.content);
    }

    #[test]
    fn bad_edits_are_refused_naming_the_device() {
        let mut cfg = lab();
        let bond = |name: &str, slaves: &[&str]| BondEdit {
            name: name.into(),
            mode: BondMode::ActiveBackup,
            slaves: slaves.iter().map(|s| s.to_string()).collect(),
            primary: None,
            miimon: 100,
            l3: L3::default(),
        };
        let e = put_bond(&mut cfg, &bond("bond1", &[])).unwrap_err();
        assert_eq!(e.device, "bond1");
        assert!(e.message.contains("at least one slave"), "{e}");
        let e = put_bond(&mut cfg, &bond("bond1", &["ens3"])).unwrap_err();
        assert!(e.message.contains("already enslaved to `bond0`"), "{e}");
        let e = put_bond(&mut cfg, &bond("bond-with-a-long-name", &["ens5"])).unwrap_err();
        assert!(e.message.contains("not a valid interface name"), "{e}");
        let e = put_bond(&mut cfg, &bond("vmbr0", &["ens5"])).unwrap_err();
        assert!(e.message.contains("already a bridge"), "{e}");
        let v = |parent: &str, id: u32| VlanEdit {
            name: None,
            parent: parent.into(),
            id,
            l3: L3::default(),
        };
        let e = put_vlan(&mut cfg, &v("bond0", 4095)).unwrap_err();
        assert!(e.message.contains("1 to 4094"), "{e}");
        let e = put_vlan(&mut cfg, &v("ens3", 5)).unwrap_err();
        assert_eq!(e.device, "ens3.5");
        assert!(e.message.contains("put the VLAN on `bond0`"), "{e}");
        let e = put_vlan(&mut cfg, &v("nope", 5)).unwrap_err();
        assert!(e.message.contains("`nope` is not a device"), "{e}");
        let l3 = L3 {
            mtu: Some(20),
            ..L3::default()
        };
        let e = put_vlan(
            &mut cfg,
            &VlanEdit {
                l3,
                ..v("bond0", 7)
            },
        )
        .unwrap_err();
        assert!(e.message.contains("MTU 20 is out of range"), "{e}");
        let e = delete(&mut cfg, "bond0").unwrap_err();
        assert!(e.message.contains("`bond0.100` is"), "{e}");
        assert!(e.message.contains("`vmbr0` is"), "{e}");
        let e = delete(&mut cfg, "ens3").unwrap_err();
        assert!(e.message.contains("a NIC cannot be deleted"), "{e}");
        // a bond left with no slaves, reached by taking its last slave into another bond
        let mut c2 = lab();
        put_bond(&mut c2, &bond("bond1", &["ens5"])).unwrap();
        let mut moved = c2.clone();
        if let Some(DeviceKind::Bond { slaves, .. }) =
            moved.device_mut("bond1").map(|d| &mut d.kind)
        {
            slaves.clear();
        }
        moved.relink();
        let problems = validate(&moved);
        assert!(
            problems
                .iter()
                .any(|p| p.device == "bond1" && p.message.contains("at least one slave")),
            "{problems:?}"
        );
        // deleting the VLAN then the bridge frees the bond for deletion
        delete(&mut cfg, "bond0.100").unwrap();
        delete(&mut cfg, "vmbr0").unwrap();
        assert_eq!(cfg.management, "");
        delete(&mut cfg, "bond0").unwrap();
        assert!(cfg.device("ens3").unwrap().master.is_none());
        assert!(validate(&cfg).is_empty(), "{:?}", validate(&cfg));
    }

    #[test]
    fn diff_shows_added_and_changed_lines() {
        let old = lab();
        let mut new = old.clone();
        put_vlan(
            &mut new,
            &VlanEdit {
                name: None,
                parent: "bond0".into(),
                id: 200,
                l3: L3::default(),
            },
        )
        .unwrap();
        let a = network_files(&old, "/n", "Generated by keel-test");
        let b = network_files(&new, "/n", "Generated by keel-test");
        let d = crate::diff::diff(&a, &b);
        let paths: Vec<&str> = d.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/n/20-bond0.network",
                "/n/30-bond0.200.netdev",
                "/n/30-bond0.200.network"
            ]
        );
        assert!(
            d[0].lines.contains(&"+VLAN=bond0.200".to_string()),
            "{:?}",
            d[0].lines
        );
        assert!(d[0].lines.contains(&" VLAN=bond0.100".to_string()));
        let text = crate::diff::to_text(&d);
        assert!(
            text.contains("--- /dev/null\n+++ /n/30-bond0.200.netdev\n"),
            "{text}"
        );
    }
}
