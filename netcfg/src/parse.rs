//! The inverse of [`crate::render::network_files`]: a node's Keel-managed networkd files read
//! back into a [`NetConfig`], so day-2 changes start from what the node actually runs and
//! there is no second copy of the configuration to drift. Files without Keel's mark are left
//! out (they are the administrator's).

use std::collections::BTreeMap;

use crate::{BondMode, Cidr, Device, DeviceKind, NetConfig, Role, UnitFile, MANAGED_MARK};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ParseError {
    pub file: String,
    pub message: String,
}

fn err(file: &str, message: impl Into<String>) -> ParseError {
    ParseError {
        file: file.to_string(),
        message: message.into(),
    }
}

/// Whether a file's text carries Keel's mark in its first comment.
pub fn is_managed(content: &str) -> bool {
    UnitFile::parse(content)
        .ok()
        .and_then(|u| u.comments().first().cloned())
        .is_some_and(|c| c.starts_with(MANAGED_MARK))
}

/// `PREFIX-NAME.EXT` → (PREFIX, NAME, EXT).
fn split_name(file: &str) -> Option<(u32, &str, &str)> {
    let (stem, ext) = file.rsplit_once('.')?;
    let (p, name) = stem.split_once('-')?;
    Some((p.parse().ok()?, name, ext))
}

/// Read `(file name, content)` pairs (the directory's files; unmanaged ones are skipped).
pub fn read_files(files: &[(String, String)]) -> Result<NetConfig, ParseError> {
    let mut netdevs: BTreeMap<String, (String, UnitFile)> = BTreeMap::new();
    let mut networks: Vec<(u32, String, String, UnitFile)> = Vec::new();
    for (file, content) in files {
        if !is_managed(content) {
            continue;
        }
        let u = UnitFile::parse(content).map_err(|e| err(file, e))?;
        let Some((prefix, name, ext)) = split_name(file) else {
            return Err(err(file, "not named PREFIX-NAME.netdev or .network"));
        };
        match ext {
            "netdev" => {
                let n = u
                    .get("NetDev", "Name")
                    .ok_or_else(|| err(file, "[NetDev] has no Name="))?;
                netdevs.insert(n.to_string(), (file.clone(), u));
            }
            "network" => networks.push((prefix, name.to_string(), file.clone(), u)),
            _ => {}
        }
    }
    networks.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));

    let mut cfg = NetConfig {
        devices: vec![],
        dns_servers: vec![],
        dns_search: vec![],
        management: String::new(),
    };
    // (child, master) and (parent, vlan) links, applied once every device exists.
    let mut enslaved: Vec<(String, String, bool, &str)> = Vec::new();
    let mut stacked: Vec<(String, String)> = Vec::new();
    for (_, name, file, u) in &networks {
        let file = file.as_str();
        let kind = if let Some(mac) = u.get("Match", "PermanentMACAddress") {
            DeviceKind::Ethernet {
                mac: mac.to_ascii_lowercase(),
            }
        } else {
            let (nfile, nd) = netdevs
                .get(name)
                .ok_or_else(|| err(file, format!("no .netdev defines `{name}`")))?;
            netdev_kind(nfile, nd)?
        };
        let mtu = match &kind {
            DeviceKind::Ethernet { .. } => u.get("Link", "MTUBytes"),
            _ => netdevs
                .get(name)
                .and_then(|(_, nd)| nd.get("NetDev", "MTUBytes")),
        };
        let mut d = Device::new(name.clone(), kind);
        d.mtu = match mtu {
            Some(m) => Some(
                m.parse()
                    .map_err(|_| err(file, format!("MTUBytes=`{m}` is not a number")))?,
            ),
            None => None,
        };
        d.dhcp = u.get("Network", "DHCP") == Some("yes");
        for a in u.values("Network", "Address") {
            d.addresses.push(Cidr::parse(a).map_err(|e| err(file, e))?);
        }
        for g in u.values("Network", "Gateway") {
            d.gateways.push(
                g.parse()
                    .map_err(|_| err(file, format!("Gateway=`{g}` is not an address")))?,
            );
        }
        let dns: Vec<&str> = u.values("Network", "DNS").collect();
        let domains = u.get("Network", "Domains");
        if !dns.is_empty() || domains.is_some() {
            cfg.management = name.clone();
            d.role = Some(Role::Management);
            for s in dns {
                cfg.dns_servers.push(
                    s.parse()
                        .map_err(|_| err(file, format!("DNS=`{s}` is not an address")))?,
                );
            }
            cfg.dns_search = domains
                .map(|x| x.split_whitespace().map(String::from).collect())
                .unwrap_or_default();
        }
        let primary = u.get("Network", "PrimarySlave") == Some("yes");
        if let Some(b) = u.get("Network", "Bond") {
            enslaved.push((name.clone(), b.to_string(), primary, file));
        }
        if let Some(b) = u.get("Network", "Bridge") {
            enslaved.push((name.clone(), b.to_string(), false, file));
        }
        for v in u.values("Network", "VLAN") {
            stacked.push((name.clone(), v.to_string()));
        }
        cfg.devices.push(d);
    }
    for name in netdevs.keys() {
        if cfg.device(name).is_none() {
            let (file, _) = &netdevs[name];
            return Err(err(file, format!("no .network file configures `{name}`")));
        }
    }
    for (child, master, primary, file) in enslaved {
        let Some(m) = cfg.device_mut(&master) else {
            return Err(err(
                file,
                format!("`{master}` is not a Keel-managed device"),
            ));
        };
        match &mut m.kind {
            DeviceKind::Bond {
                slaves, primary: p, ..
            } => {
                slaves.push(child.clone());
                if primary {
                    *p = Some(child);
                }
            }
            DeviceKind::Bridge { ports, .. } => ports.push(child),
            _ => return Err(err(file, format!("`{master}` is not a bond or bridge"))),
        }
    }
    for (parent, vlan) in stacked {
        match cfg.device_mut(&vlan).map(|v| &mut v.kind) {
            Some(DeviceKind::Vlan { parent: p, .. }) => *p = parent,
            _ => {
                return Err(err(
                    &parent,
                    format!("VLAN=`{vlan}` names no Keel-managed VLAN device"),
                ))
            }
        }
    }
    for d in &cfg.devices {
        if let DeviceKind::Vlan { parent, .. } = &d.kind {
            if parent.is_empty() {
                return Err(err(
                    &d.name,
                    "no device's .network lists this VLAN (VLAN=), so networkd would not create it",
                ));
            }
        }
    }
    cfg.devices.sort_by_key(|d| crate::render::prefix(&d.kind));
    cfg.relink();
    Ok(cfg)
}

fn netdev_kind(file: &str, u: &UnitFile) -> Result<DeviceKind, ParseError> {
    match u.get("NetDev", "Kind") {
        Some("bond") => {
            let mode = u.get("Bond", "Mode").unwrap_or("balance-rr");
            let mode = BondMode::from_name(mode)
                .ok_or_else(|| err(file, format!("unknown bond Mode=`{mode}`")))?;
            let mii = u.get("Bond", "MIIMonitorSec").unwrap_or("0ms");
            let miimon = mii
                .strip_suffix("ms")
                .and_then(|m| m.parse().ok())
                .ok_or_else(|| err(file, format!("MIIMonitorSec=`{mii}` is not N ms")))?;
            Ok(DeviceKind::Bond {
                mode,
                miimon,
                lacp_rate: u.get("Bond", "LACPTransmitRate").map(String::from),
                primary: None,
                slaves: vec![],
            })
        }
        Some("vlan") => {
            let id = u.get("VLAN", "Id").unwrap_or_default();
            Ok(DeviceKind::Vlan {
                parent: String::new(),
                id: id
                    .parse()
                    .map_err(|_| err(file, format!("VLAN Id=`{id}` is not a number")))?,
            })
        }
        Some("bridge") => Ok(DeviceKind::Bridge {
            ports: vec![],
            stp: u.get("Bridge", "STP") == Some("yes"),
        }),
        other => Err(err(
            file,
            format!(
                "Kind=`{}` is not one Keel manages (bond, vlan, bridge)",
                other.unwrap_or("")
            ),
        )),
    }
}
