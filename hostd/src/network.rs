//! Networks: libvirt networks (NAT or on a host bridge) and the host's own bridges.

use std::net::Ipv4Addr;

use keel_api::network::{NetworkCreate, NetworkInfo, NetworkKind, NetworkUser};

use crate::error::{Error, Result};
use crate::tasks::TaskHandle;
use crate::xml::Element;
use crate::Node;

/// Linux bridges on the host (from /sys/class/net/*/bridge).
pub fn host_bridges() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("bridge").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A VM, the libvirt networks and the host bridges its NICs are on.
type NicUse = (NetworkUser, Vec<String>, Vec<String>);

/// Each defined VM with its NICs' networks and bridges (a VM whose XML cannot be read is skipped:
/// it is being defined or removed right now).
fn nic_users(node: &Node) -> Result<Vec<NicUse>> {
    let mut out = Vec::new();
    for r in node.hv.list_domains()? {
        let Ok(p) = node
            .hv
            .domain_xml(&r.name, true)
            .map_err(Error::from)
            .and_then(|x| Ok(crate::domain::parse(&x)?))
        else {
            continue;
        };
        let nets = p
            .spec
            .nics
            .iter()
            .filter_map(|n| n.network.clone())
            .collect();
        let brs = p
            .spec
            .nics
            .iter()
            .filter_map(|n| n.bridge.clone())
            .collect();
        out.push((
            NetworkUser {
                vmid: p.spec.vmid,
                name: r.name.clone(),
                running: r.state.is_active(),
            },
            nets,
            brs,
        ));
    }
    out.sort_by_key(|u| u.0.vmid);
    Ok(out)
}

/// The VMs with a NIC on libvirt network `name`.
fn users_of(node: &Node, name: &str) -> Result<Vec<NetworkUser>> {
    Ok(nic_users(node)?
        .into_iter()
        .filter(|(_, nets, _)| nets.iter().any(|n| n == name))
        .map(|(u, _, _)| u)
        .collect())
}

fn vm_list(users: &[NetworkUser]) -> String {
    users
        .iter()
        .map(|u| format!("{} ({})", u.vmid, u.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The libvirt network `name`, or why it cannot be changed through Keel: 404 when there is no
/// such network, 409 for a host bridge (the host's network configuration owns it).
pub fn find_libvirt(node: &Node, name: &str) -> Result<NetworkInfo> {
    if let Some(n) = node
        .hv
        .list_networks()?
        .into_iter()
        .find(|n| n.name == name)
    {
        return Ok(n);
    }
    if host_bridges().iter().any(|b| b == name) {
        return Err(Error::Conflict(format!(
            "{name:?} is a host bridge, not a libvirt network: it is configured on the host \
             (systemd-networkd), not started or stopped through libvirt"
        )));
    }
    Err(Error::NotFound(format!(
        "libvirt network {name:?} not found (GET .../networks lists them)"
    )))
}

/// What a change of a network needs of the VMs on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unused {
    /// Stopping: no running VM may have a NIC on it (it would lose its link).
    ByRunningVms,
    /// Deleting: no VM at all (a stopped one could not start again).
    ByAnyVm,
}

/// Refuse to stop (or delete) a network that VMs use.
pub fn check_unused(node: &Node, name: &str, need: Unused) -> Result<NetworkInfo> {
    let info = find_libvirt(node, name)?;
    let users = users_of(node, name)?;
    let running: Vec<NetworkUser> = users.iter().filter(|u| u.running).cloned().collect();
    if need == Unused::ByRunningVms && !running.is_empty() {
        return Err(Error::Conflict(format!(
            "network {name:?} carries running VMs {}: stop them or move their NICs first",
            vm_list(&running)
        )));
    }
    if need == Unused::ByAnyVm && !users.is_empty() {
        return Err(Error::Conflict(format!(
            "network {name:?} is used by VMs {}: remove their NICs on it first",
            vm_list(&users)
        )));
    }
    Ok(info)
}

pub fn start(node: &Node, name: &str, task: &TaskHandle) -> Result<()> {
    node.hv.set_network_active(name, true)?;
    task.log(format!("network {name:?} started"));
    Ok(())
}

pub fn stop(node: &Node, name: &str, task: &TaskHandle) -> Result<()> {
    // checked again inside the task: a VM may have started since the request was accepted
    check_unused(node, name, Unused::ByRunningVms)?;
    node.hv.set_network_active(name, false)?;
    task.log(format!("network {name:?} stopped"));
    Ok(())
}

/// Set autostart (quick, no task) and return the network as it now is.
pub fn set_autostart(node: &Node, name: &str, autostart: bool) -> Result<NetworkInfo> {
    find_libvirt(node, name)?;
    node.hv.set_network_autostart(name, autostart)?;
    list(node)?
        .into_iter()
        .find(|n| n.name == name)
        .ok_or_else(|| Error::NotFound(format!("libvirt network {name:?} vanished")))
}

pub fn list(node: &Node) -> Result<Vec<NetworkInfo>> {
    let mut nets = node.hv.list_networks()?;
    for br in host_bridges() {
        if !nets
            .iter()
            .any(|n| n.bridge.as_deref() == Some(br.as_str()))
        {
            nets.push(NetworkInfo {
                name: br.clone(),
                kind: NetworkKind::HostBridge,
                bridge: Some(br),
                active: true,
                autostart: true,
                cidr: None,
                used_by: Vec::new(),
            });
        }
    }
    let users = nic_users(node)?;
    for n in &mut nets {
        n.used_by = users
            .iter()
            .filter(|(_, nets, brs)| {
                if n.kind == NetworkKind::HostBridge {
                    brs.iter().any(|b| Some(b.as_str()) == n.bridge.as_deref())
                } else {
                    nets.iter().any(|x| x == &n.name)
                }
            })
            .map(|(u, _, _)| u.clone())
            .collect();
    }
    Ok(nets)
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u32)> {
    let (a, p) = s.split_once('/')?;
    Some((
        a.parse().ok()?,
        p.parse().ok().filter(|p| (8..=30).contains(p))?,
    ))
}

/// Validate and render the libvirt network XML for a create request.
pub fn render(req: &NetworkCreate, existing: &[NetworkInfo]) -> Result<String> {
    // name and subnet rules (keel-api, shared with the CLI): prefix, special ranges, gateway
    req.validate()?;
    if existing.iter().any(|n| n.name == req.name) {
        return Err(Error::Conflict(format!(
            "network {:?} already exists",
            req.name
        )));
    }
    let valid_dev = |b: &str| {
        !b.is_empty()
            && b.len() <= 15
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let mut net = Element::new("network").child(Element::new("name").text(&req.name));
    match req.kind {
        NetworkKind::Nat => {
            let cidr = req.cidr.as_deref().ok_or_else(|| {
                Error::validation("cidr", "a NAT network needs cidr, e.g. 10.99.0.1/24")
            })?;
            let (gw, prefix) = parse_cidr(cidr).ok_or_else(|| {
                Error::validation(
                    "cidr",
                    format!("{cidr:?} is not IPV4/PREFIX with a prefix of 8 to 30"),
                )
            })?;
            let mask = u32::MAX << (32 - prefix);
            let net_addr = u32::from(gw) & mask;
            let bcast = net_addr | !mask;
            if u32::from(gw) == net_addr || u32::from(gw) == bcast {
                return Err(Error::validation(
                    "cidr",
                    format!("{gw} is the network or broadcast address; give the gateway, e.g. .1"),
                ));
            }
            let bridge = req
                .bridge
                .clone()
                .unwrap_or_else(|| format!("keel-{}", req.name).chars().take(15).collect());
            if !valid_dev(&bridge) {
                return Err(Error::validation(
                    "bridge",
                    format!("{bridge:?} is not a valid interface name (at most 15 characters)"),
                ));
            }
            if crate::network::host_bridges().contains(&bridge)
                || existing
                    .iter()
                    .any(|n| n.bridge.as_deref() == Some(&bridge))
            {
                return Err(Error::Conflict(format!(
                    "bridge {bridge:?} is already in use"
                )));
            }
            for n in existing {
                if let Some((a, p)) = n.cidr.as_deref().and_then(parse_cidr) {
                    let m = u32::MAX << (32 - p.min(prefix));
                    if u32::from(a) & m == net_addr & m {
                        return Err(Error::Conflict(format!(
                            "{cidr} overlaps network {:?} ({})",
                            n.name,
                            n.cidr.as_deref().unwrap_or("")
                        )));
                    }
                }
            }
            // DHCP: the upper half of the subnet, leaving the lower half for static addresses.
            let size = bcast - net_addr;
            let start = Ipv4Addr::from(net_addr + size.div_ceil(2));
            let end = Ipv4Addr::from(bcast - 1);
            net =
                net.child(Element::new("forward").attr("mode", "nat"))
                    .child(
                        Element::new("bridge")
                            .attr("name", bridge)
                            .attr("stp", "on")
                            .attr("delay", 0),
                    )
                    .child(
                        Element::new("ip")
                            .attr("address", gw)
                            .attr("prefix", prefix)
                            .child(Element::new("dhcp").child(
                                Element::new("range").attr("start", start).attr("end", end),
                            )),
                    );
        }
        NetworkKind::Bridge => {
            let br = req.bridge.as_deref().ok_or_else(|| {
                Error::validation(
                    "bridge",
                    "a bridged network needs bridge: an existing host bridge",
                )
            })?;
            if !valid_dev(br) {
                return Err(Error::validation(
                    "bridge",
                    format!("{br:?} is not a valid interface name"),
                ));
            }
            if !host_bridges().iter().any(|b| b == br) {
                return Err(Error::validation(
                    "bridge",
                    format!("host bridge {br:?} does not exist; create it on the host first"),
                ));
            }
            if req.cidr.is_some() {
                return Err(Error::validation(
                    "cidr",
                    "a bridged network takes its addresses from the host's LAN; leave cidr out",
                ));
            }
            net = net
                .child(Element::new("forward").attr("mode", "bridge"))
                .child(Element::new("bridge").attr("name", br));
        }
        _ => {
            return Err(Error::validation(
                "kind",
                "kind must be \"nat\" or \"bridge\"",
            ))
        }
    }
    Ok(net.render())
}

pub fn create(node: &Node, xml: &str, autostart: bool, task: &TaskHandle) -> Result<()> {
    node.hv.create_network(xml, autostart)?;
    task.log("network defined and started");
    Ok(())
}

pub fn delete(node: &Node, name: &str, task: &TaskHandle) -> Result<()> {
    // Refuse while a defined VM has a NIC on it (checked before the task, and again here).
    check_unused(node, name, Unused::ByAnyVm)?;
    node.hv.delete_network(name)?;
    task.log(format!("network {name:?} removed"));
    Ok(())
}
