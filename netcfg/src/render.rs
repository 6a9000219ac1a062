//! The one renderer from [`NetConfig`] to systemd-networkd files: a `.netdev` for each virtual
//! device (bond, VLAN, bridge) and a `.network` for every device, named
//! `PREFIX-NAME.{netdev,network}` with PREFIX 10 (NICs), 20 (bonds), 30 (VLANs), 40 (bridges)
//! so networkd reads lower devices first.

use serde::{Deserialize, Serialize};

use crate::{Device, DeviceKind, NetConfig, UnitFile};

/// One file of the rendered configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetFile {
    /// Absolute path.
    pub path: String,
    /// Octal permission bits.
    pub mode: u32,
    pub content: String,
}

pub fn prefix(kind: &DeviceKind) -> u32 {
    match kind {
        DeviceKind::Ethernet { .. } => 10,
        DeviceKind::Bond { .. } => 20,
        DeviceKind::Vlan { .. } => 30,
        DeviceKind::Bridge { .. } => 40,
    }
}

/// Every file of `cfg` under `dir`, each starting with the comment `header` (which must start
/// with [`crate::MANAGED_MARK`] for day-2 changes to recognise the file as Keel's).
pub fn network_files(cfg: &NetConfig, dir: &str, header: &str) -> Vec<NetFile> {
    let mut files = Vec::new();
    for d in &cfg.devices {
        let base = format!("{dir}/{}-{}", prefix(&d.kind), d.name);
        if let Some(nd) = netdev(d, header) {
            files.push(NetFile {
                path: format!("{base}.netdev"),
                mode: 0o644,
                content: nd.render(),
            });
        }
        files.push(NetFile {
            path: format!("{base}.network"),
            mode: 0o644,
            content: network(cfg, d, header).render(),
        });
    }
    files
}

fn netdev(d: &Device, header: &str) -> Option<UnitFile> {
    let mut u = UnitFile::new();
    u.comment(header);
    u.section("NetDev").set("Name", &d.name);
    match &d.kind {
        DeviceKind::Ethernet { .. } => return None,
        DeviceKind::Bond {
            mode,
            miimon,
            lacp_rate,
            ..
        } => {
            u.set("Kind", "bond");
            if let Some(m) = d.mtu {
                u.set("MTUBytes", m);
            }
            u.section("Bond")
                .set("Mode", mode.name())
                .set("MIIMonitorSec", format!("{miimon}ms"));
            if let Some(r) = lacp_rate {
                u.set("LACPTransmitRate", r);
            }
        }
        DeviceKind::Vlan { id, .. } => {
            u.set("Kind", "vlan");
            if let Some(m) = d.mtu {
                u.set("MTUBytes", m);
            }
            u.section("VLAN").set("Id", id);
        }
        DeviceKind::Bridge { stp, .. } => {
            u.set("Kind", "bridge");
            if let Some(m) = d.mtu {
                u.set("MTUBytes", m);
            }
            u.section("Bridge")
                .set("STP", if *stp { "yes" } else { "no" });
        }
    }
    Some(u)
}

fn network(cfg: &NetConfig, d: &Device, header: &str) -> UnitFile {
    let mut u = UnitFile::new();
    u.comment(header);
    u.section("Match");
    match &d.kind {
        DeviceKind::Ethernet { mac } => {
            // The permanent address: bonding rewrites the current MAC of its slaves.
            u.set("PermanentMACAddress", mac);
        }
        _ => {
            u.set("Name", &d.name);
        }
    }
    if let (Some(m), DeviceKind::Ethernet { .. }) = (d.mtu, &d.kind) {
        u.section("Link").set("MTUBytes", m);
    }
    u.section("Network");
    if let Some(master) = &d.master {
        let is_bond = cfg
            .device(master)
            .is_some_and(|m| matches!(m.kind, DeviceKind::Bond { .. }));
        u.set(if is_bond { "Bond" } else { "Bridge" }, master);
        if let Some(DeviceKind::Bond {
            primary: Some(p), ..
        }) = cfg.device(master).map(|m| &m.kind)
        {
            if *p == d.name {
                u.set("PrimarySlave", "yes");
            }
        }
    }
    for v in &d.vlans {
        u.set("VLAN", v);
    }
    let has_l3 = !d.addresses.is_empty() || d.dhcp;
    if d.master.is_some() || !has_l3 {
        u.set("LinkLocalAddressing", "no");
        u.set("IPv6AcceptRA", "no");
        if d.master.is_none() {
            u.set("ConfigureWithoutCarrier", "yes");
        }
        return u;
    }
    if d.dhcp {
        u.set("DHCP", "yes");
    }
    for a in &d.addresses {
        u.set("Address", a);
    }
    for g in &d.gateways {
        u.set("Gateway", g);
    }
    if d.name == cfg.management {
        for s in &cfg.dns_servers {
            u.set("DNS", s);
        }
        if !cfg.dns_search.is_empty() {
            u.set("Domains", cfg.dns_search.join(" "));
        }
    }
    u
}
