//! The node's live interfaces: `ip -j -d link`, `ip -j addr` (through `keel-runner`) and the
//! bonding driver's `/proc/net/bonding/BOND`, parsed into the API's shapes.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_api::hostnet::{BondSlaveState, BondState};
use keel_runner::{Cmd, Runner};
use serde_json::Value;

use crate::error::{Error, Result};

/// One live link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// `ethernet` for a physical NIC, else the kernel's `info_kind` (`bond`, `vlan`,
    /// `bridge`, `veth`…) or `loopback`.
    pub kind: String,
    pub state: String,
    pub mtu: Option<u32>,
    pub mac: Option<String>,
    /// The permanent MAC (a bond slave's current one is the bond's).
    pub perm_mac: Option<String>,
    pub master: Option<String>,
    pub vlan_id: Option<u32>,
    pub vlan_parent: Option<String>,
    /// `192.0.2.10/24`, global scope only.
    pub addresses: Vec<String>,
}

const IP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn ip_link_cmd() -> Cmd {
    Cmd::argv(&["ip", "-j", "-d", "link", "show"]).timeout(IP_TIMEOUT)
}

pub fn ip_addr_cmd() -> Cmd {
    Cmd::argv(&["ip", "-j", "addr", "show"]).timeout(IP_TIMEOUT)
}

/// Links with their addresses, by name.
pub fn read_links(r: &dyn Runner) -> Result<BTreeMap<String, Link>> {
    let links = r
        .run_ok(&ip_link_cmd())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let addrs = r
        .run_ok(&ip_addr_cmd())
        .map_err(|e| Error::Internal(e.to_string()))?;
    parse_links(&links, &addrs)
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(String::from)
}

/// Parse `ip -j -d link` and `ip -j addr` output.
pub fn parse_links(link_json: &str, addr_json: &str) -> Result<BTreeMap<String, Link>> {
    let bad = |what: &str, e: serde_json::Error| {
        Error::Internal(format!("cannot read the output of `ip -j {what}`: {e}"))
    };
    let links: Vec<Value> = serde_json::from_str(link_json).map_err(|e| bad("-d link", e))?;
    let addrs: Vec<Value> = serde_json::from_str(addr_json).map_err(|e| bad("addr", e))?;
    let mut out = BTreeMap::new();
    for l in &links {
        let Some(name) = s(l, "ifname") else { continue };
        let info = l.get("linkinfo");
        let info_kind = info.and_then(|i| s(i, "info_kind"));
        let kind = match (s(l, "link_type").as_deref(), info_kind) {
            (Some("loopback"), _) => "loopback".to_string(),
            (_, Some(k)) => k,
            (Some("ether"), None) => "ethernet".to_string(),
            (t, None) => t.unwrap_or("unknown").to_string(),
        };
        let vlan_id = if kind == "vlan" {
            info.and_then(|i| i.get("info_data"))
                .and_then(|d| d.get("id"))
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
        } else {
            None
        };
        out.insert(
            name.clone(),
            Link {
                vlan_parent: if kind == "vlan" { s(l, "link") } else { None },
                name,
                kind,
                state: s(l, "operstate").unwrap_or_else(|| "UNKNOWN".into()),
                mtu: l
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|x| u32::try_from(x).ok()),
                mac: s(l, "address"),
                perm_mac: s(l, "permaddr").or_else(|| s(l, "address")),
                master: s(l, "master"),
                vlan_id,
                addresses: vec![],
            },
        );
    }
    for a in &addrs {
        let Some(name) = s(a, "ifname") else { continue };
        let Some(link) = out.get_mut(&name) else {
            continue;
        };
        for ai in a
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if s(ai, "scope").as_deref() != Some("global") {
                continue;
            }
            if let (Some(ip), Some(p)) =
                (s(ai, "local"), ai.get("prefixlen").and_then(Value::as_u64))
            {
                link.addresses.push(format!("{ip}/{p}"));
            }
        }
    }
    Ok(out)
}

/// The kernel's mode text (`fault-tolerance (active-backup)`) → its mode name.
fn mode_name(text: &str) -> String {
    let t = text.trim();
    let known = [
        ("(round-robin)", "balance-rr"),
        ("(active-backup)", "active-backup"),
        ("(xor)", "balance-xor"),
        ("(broadcast)", "broadcast"),
        ("802.3ad", "802.3ad"),
        ("transmit load balancing", "balance-tlb"),
        ("adaptive load balancing", "balance-alb"),
    ];
    known
        .iter()
        .find(|(k, _)| t.contains(k))
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Parse `/proc/net/bonding/BOND`: the bond's block, then one block per slave.
pub fn parse_bonding(text: &str) -> BondState {
    let mut st = BondState {
        mode: String::new(),
        active_slave: None,
        primary: None,
        mii_status: String::new(),
        slaves: vec![],
    };
    let mut cur: Option<BondSlaveState> = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match (k, cur.as_mut()) {
            ("Slave Interface", _) => {
                if let Some(s) = cur.take() {
                    st.slaves.push(s);
                }
                cur = Some(BondSlaveState {
                    name: v.to_string(),
                    mii_status: String::new(),
                    link_failures: 0,
                    permanent_mac: None,
                });
            }
            ("Bonding Mode", None) => st.mode = mode_name(v),
            ("Currently Active Slave", None) => {
                st.active_slave = (v != "None").then(|| v.to_string())
            }
            ("Primary Slave", None) => {
                let p = v.split_whitespace().next().unwrap_or_default();
                st.primary = (!p.is_empty() && p != "None").then(|| p.to_string());
            }
            ("MII Status", None) => st.mii_status = v.to_string(),
            ("MII Status", Some(s)) => s.mii_status = v.to_string(),
            ("Link Failure Count", Some(s)) => s.link_failures = v.parse().unwrap_or(0),
            ("Permanent HW addr", Some(s)) => s.permanent_mac = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    if let Some(s) = cur.take() {
        st.slaves.push(s);
    }
    st
}

/// The bonding driver's state of `bond`, if it has a `/proc/net/bonding` entry.
pub fn read_bonding(bond: &str) -> Option<BondState> {
    std::fs::read_to_string(format!("/proc/net/bonding/{bond}"))
        .ok()
        .map(|t| parse_bonding(&t))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The kernel's format with one slave's MII down and another active (the lab capture below,
    /// edited to the failed-over state).
    #[test]
    fn bonding_file_gives_mode_active_slave_and_each_slaves_mii_state() {
        let text = include_str!("../../tests/golden/hostnet/bond0-active-backup.txt");
        let b = parse_bonding(text);
        assert_eq!(b.mode, "active-backup");
        assert_eq!(b.active_slave.as_deref(), Some("ens4"));
        assert_eq!(b.primary.as_deref(), Some("ens3"));
        assert_eq!(b.mii_status, "up");
        assert_eq!(
            b.slaves,
            vec![
                BondSlaveState {
                    name: "ens3".into(),
                    mii_status: "down".into(),
                    link_failures: 1,
                    permanent_mac: Some("52:54:00:6b:00:01".into()),
                },
                BondSlaveState {
                    name: "ens4".into(),
                    mii_status: "up".into(),
                    link_failures: 0,
                    permanent_mac: Some("52:54:00:6b:00:02".into()),
                },
            ]
        );
    }

    /// Captured on the VM lab's installed node A (`vmlab_install`) after its cable-pull step:
    /// the primary (ens2) is active again and counts one link failure.
    #[test]
    fn captured_bonding_file_of_the_vm_lab() {
        let text = include_str!("../../tests/golden/hostnet/bond0-vmlab-node11.txt");
        let b = parse_bonding(text);
        assert_eq!(b.mode, "active-backup");
        assert_eq!(b.active_slave.as_deref(), Some("ens2"));
        assert_eq!(b.primary.as_deref(), Some("ens2"));
        assert_eq!(b.mii_status, "up");
        let s: Vec<(&str, &str, u64, Option<&str>)> = b
            .slaves
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.mii_status.as_str(),
                    s.link_failures,
                    s.permanent_mac.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            s,
            [
                ("ens3", "up", 0, Some("52:54:00:4b:0a:02")),
                ("ens2", "up", 1, Some("52:54:00:4b:0a:01")),
            ]
        );
    }

    #[test]
    fn ip_json_gives_kinds_masters_vlans_and_global_addresses() {
        let link = r#"[
 {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"operstate":"UNKNOWN","link_type":"loopback","address":"00:00:00:00:00:00"},
 {"ifindex":2,"ifname":"ens3","mtu":1500,"master":"bond0","operstate":"UP","link_type":"ether","address":"52:54:00:6b:00:01","linkinfo":{"info_slave_kind":"bond","info_slave_data":{"state":"ACTIVE","mii_status":"UP","perm_hwaddr":"52:54:00:6b:00:01"}}},
 {"ifindex":3,"ifname":"ens4","mtu":1500,"master":"bond0","operstate":"UP","link_type":"ether","address":"52:54:00:6b:00:01","permaddr":"52:54:00:6b:00:02","linkinfo":{"info_slave_kind":"bond"}},
 {"ifindex":4,"ifname":"bond0","mtu":1500,"master":"vmbr0","operstate":"UP","link_type":"ether","address":"52:54:00:6b:00:01","linkinfo":{"info_kind":"bond","info_data":{"mode":"active-backup"},"info_slave_kind":"bridge"}},
 {"ifindex":5,"ifname":"vmbr0","mtu":1500,"operstate":"UP","link_type":"ether","address":"52:54:00:6b:00:01","linkinfo":{"info_kind":"bridge"}},
 {"ifindex":6,"ifname":"bond0.100","link":"bond0","mtu":1500,"master":"vmbr100","operstate":"UP","link_type":"ether","address":"52:54:00:6b:00:01","linkinfo":{"info_kind":"vlan","info_data":{"protocol":"802.1Q","id":100}}}
]"#;
        let addr = r#"[
 {"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
 {"ifindex":5,"ifname":"vmbr0","addr_info":[{"family":"inet","local":"10.99.0.11","prefixlen":24,"scope":"global"},{"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}
]"#;
        let l = parse_links(link, addr).unwrap();
        assert_eq!(l["lo"].kind, "loopback");
        assert_eq!(l["ens3"].kind, "ethernet");
        assert_eq!(l["ens4"].perm_mac.as_deref(), Some("52:54:00:6b:00:02"));
        assert_eq!(l["ens4"].master.as_deref(), Some("bond0"));
        assert_eq!(l["bond0"].kind, "bond");
        assert_eq!(l["bond0"].master.as_deref(), Some("vmbr0"));
        assert_eq!(l["bond0.100"].kind, "vlan");
        assert_eq!(l["bond0.100"].vlan_id, Some(100));
        assert_eq!(l["bond0.100"].vlan_parent.as_deref(), Some("bond0"));
        assert_eq!(l["vmbr0"].addresses, vec!["10.99.0.11/24".to_string()]);
        assert!(l["lo"].addresses.is_empty());
        assert!(parse_links("not json", "[]").is_err());
    }
}
