//! The provisioning plan: one typed value derived from a valid answer, the node index and the
//! discovered hardware. Every renderer works from this and nothing else.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::answer::{Answer, FirstBoot, Webhook};
use crate::hw::{select_disk, DiskInfo, Hardware, NicInfo, GIB};
use crate::util::{expand_hostname, glob_match, valid_ifname, Cidr};
use crate::validate::{self, vlan_name, Role};
use crate::{Error, Issue, Issues};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub node_index: Option<u32>,
    pub hostname: String,
    pub domain: String,
    pub fqdn: String,
    pub timezone: String,
    pub keyboard: String,
    pub locale: String,
    pub root_password: Password,
    pub admin: Option<AdminPlan>,
    pub reboot: Reboot,
    pub disk: DiskPlan,
    pub network: NetPlan,
    /// Other nodes' /etc/hosts entries (entries naming this node are left out).
    pub hosts: Vec<HostLine>,
    pub time: TimePlan,
    pub ssh: SshPlan,
    pub cluster: Option<JoinPlan>,
    pub first_boot: Option<FirstBoot>,
    pub post_install: Option<Webhook>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Password {
    /// A crypt(3) hash.
    Hash(String),
    /// Clear text; the install program hashes it before writing anything.
    Plain(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminPlan {
    pub name: String,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reboot {
    Reboot,
    Poweroff,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskPlan {
    pub device: DiskInfo,
    /// The disk holds partitions and `allow_wipe` permitted erasing them.
    pub wipe: bool,
    pub root_fs: String,
    pub root_size_gib: u64,
    pub swap_size_gib: u64,
    pub vg_name: String,
}

/// The node's networking: the shared host network model, rendered for Debian by
/// `keel-netcfg`'s networkd renderer (the same one hostd uses for day-2 changes).
pub use netcfg::{Device, DeviceKind, NetConfig as NetPlan};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostLine {
    pub address: IpAddr,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimePlan {
    pub servers: Vec<String>,
    pub pools: Vec<String>,
    pub iburst: bool,
    pub local_stratum: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SshPlan {
    /// Root's keys, then the pre-shared node keys.
    pub root_keys: Vec<String>,
    pub admin_keys: Vec<String>,
    pub permit_root_login: String,
    pub password_authentication: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JoinPlan {
    pub address: String,
    pub fingerprint: String,
    pub token: String,
}

impl Plan {
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.network.devices.iter().find(|d| d.name == name)
    }

    /// The first static address of the management device, if any.
    pub fn management_address(&self) -> Option<Cidr> {
        self.device(&self.network.management)
            .and_then(|d| d.addresses.first().copied())
    }
}

fn nic_list(nics: &[NicInfo]) -> String {
    if nics.is_empty() {
        return "none".into();
    }
    nics.iter()
        .map(|n| format!("{} ({})", n.name, n.mac))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validate the answer, then derive the plan for this node and hardware. Every problem is
/// reported, whether in the answer alone or against the hardware.
pub fn plan(a: &Answer, node_index: Option<u32>, hw: &Hardware) -> Result<Plan, Error> {
    let mut issues = validate::validate(a);
    if !issues.is_empty() {
        return Err(Error::Invalid(Issues(issues)));
    }

    let hostname = match expand_hostname(&a.global.hostname, node_index) {
        Ok(h) => h,
        Err(e) => {
            issues.push(Issue::new("global.hostname", e));
            String::new()
        }
    };

    // Disk.
    let device = match select_disk(&a.disk, &hw.disks) {
        Ok(d) => {
            let l = &a.disk.layout;
            // Room for the boot partitions (~1 GiB) and at least 1 GiB of volume group.
            let need = (l.root_size_gib + l.swap_size_gib + 2) * GIB;
            if d.size_bytes < need {
                issues.push(Issue::new(
                    "disk.layout",
                    format!(
                        "{} is too small: root {} GiB + swap {} GiB + 2 GiB (boot partitions, volume group) do not fit; lower root_size_gib/swap_size_gib or choose a larger disk",
                        d, l.root_size_gib, l.swap_size_gib
                    ),
                ));
            }
            Some(d)
        }
        Err(e) => {
            issues.push(Issue::new("disk.filter", e.to_string()));
            None
        }
    };

    // NICs: each entry must match exactly one discovered NIC, and no NIC twice.
    let n = &a.network;
    let mut sysname: HashMap<String, String> = HashMap::new();
    let mut macs: HashMap<String, String> = HashMap::new();
    let mut taken: HashMap<String, String> = HashMap::new();
    for (i, nic) in n.nics.iter().enumerate() {
        let p = format!("network.nics[{i}]");
        let (what, found): (String, Vec<&NicInfo>) = match (&nic.mac, &nic.name) {
            (Some(m), _) => (
                format!("mac {m}"),
                hw.nics
                    .iter()
                    .filter(|x| x.mac.eq_ignore_ascii_case(m))
                    .collect(),
            ),
            (None, Some(g)) => (
                format!("name `{g}`"),
                hw.nics.iter().filter(|x| glob_match(g, &x.name)).collect(),
            ),
            (None, None) => (String::new(), vec![]),
        };
        match found.as_slice() {
            [] => issues.push(Issue::new(
                p,
                format!("no NIC matches {what}; NICs found: {}", nic_list(&hw.nics)),
            )),
            [one] => {
                if let Some(first) = taken.get(&one.name) {
                    issues.push(Issue::new(
                        p,
                        format!(
                            "{} is already matched by {first}; each NIC is matched by one entry",
                            one.name
                        ),
                    ));
                } else {
                    taken.insert(one.name.clone(), p);
                    sysname.insert(nic.id.clone(), one.name.clone());
                    macs.insert(nic.id.clone(), one.mac.to_ascii_lowercase());
                }
            }
            many => issues.push(Issue::new(
                p,
                format!(
                    "{} NICs match {what}: {}; narrow the glob or match by mac",
                    many.len(),
                    many.iter()
                        .map(|x| format!("{} ({})", x.name, x.mac))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
    for b in &n.bonds {
        sysname.insert(b.name.clone(), b.name.clone());
    }
    // VLAN names: explicit, or PARENT.ID with the parent's name on the system.
    for (i, v) in n.vlans.iter().enumerate() {
        let name = match &v.name {
            Some(x) => x.clone(),
            None => {
                let parent = sysname.get(&v.parent).cloned().unwrap_or(v.parent.clone());
                format!("{parent}.{}", v.id)
            }
        };
        if !valid_ifname(&name) {
            issues.push(Issue::new(
                format!("network.vlans[{i}]"),
                format!("the VLAN's name would be `{name}`, longer than 15 characters; set network.vlans[{i}].name"),
            ));
        }
        sysname.insert(vlan_name(v), name);
    }
    for b in &n.bridges {
        sysname.insert(b.name.clone(), b.name.clone());
    }
    if !issues.is_empty() {
        return Err(Error::Invalid(Issues(issues)));
    }
    let sys = |x: &String| sysname.get(x).cloned().unwrap_or_else(|| x.clone());

    // Every address parsed already in validation; parse again for the typed plan.
    let cidrs =
        |v: &[String]| -> Vec<Cidr> { v.iter().filter_map(|s| Cidr::parse(s).ok()).collect() };
    let ips = |v: &[String]| -> Vec<IpAddr> { v.iter().filter_map(|s| s.parse().ok()).collect() };
    let role = |r: &Option<String>| r.as_deref().and_then(|r| Role::parse(r).ok());

    let mut devices: Vec<Device> = Vec::new();
    for nic in &n.nics {
        devices.push(Device {
            name: sys(&nic.id),
            kind: DeviceKind::Ethernet {
                mac: macs.get(&nic.id).cloned().unwrap_or_default(),
            },
            master: None,
            role: role(&nic.role),
            addresses: cidrs(&nic.addresses),
            dhcp: nic.dhcp,
            gateways: ips(&nic.gateways),
            mtu: nic.mtu,
            vlans: vec![],
        });
    }
    for b in &n.bonds {
        let mode = validate::bond_mode_from_spec(&b.mode)
            .map_err(|e| Error::Invalid(Issues(vec![Issue::new("network.bonds", e)])))?;
        devices.push(Device {
            name: b.name.clone(),
            kind: DeviceKind::Bond {
                mode,
                miimon: b.miimon,
                lacp_rate: b.lacp_rate.clone(),
                primary: b.primary.as_ref().map(sys),
                slaves: b.slaves.iter().map(sys).collect(),
            },
            master: None,
            role: role(&b.role),
            addresses: cidrs(&b.addresses),
            dhcp: b.dhcp,
            gateways: ips(&b.gateways),
            mtu: b.mtu,
            vlans: vec![],
        });
    }
    for v in &n.vlans {
        devices.push(Device {
            name: sys(&vlan_name(v)),
            kind: DeviceKind::Vlan {
                parent: sys(&v.parent),
                id: v.id,
            },
            master: None,
            role: role(&v.role),
            addresses: cidrs(&v.addresses),
            dhcp: v.dhcp,
            gateways: ips(&v.gateways),
            mtu: v.mtu,
            vlans: vec![],
        });
    }
    for b in &n.bridges {
        devices.push(Device {
            name: b.name.clone(),
            kind: DeviceKind::Bridge {
                ports: b.ports.iter().map(sys).collect(),
                stp: b.stp,
            },
            master: None,
            role: role(&b.role),
            addresses: cidrs(&b.addresses),
            dhcp: b.dhcp,
            gateways: ips(&b.gateways),
            mtu: b.mtu,
            vlans: vec![],
        });
    }
    let management = devices
        .iter()
        .find(|d| d.role == Some(Role::Management))
        .map(|d| d.name.clone())
        .unwrap_or_default();

    let domain = a.global.domain.clone();
    let fqdn = format!("{hostname}.{domain}");
    let hosts = n
        .hosts
        .iter()
        .filter(|h| !h.names.iter().any(|x| *x == hostname || *x == fqdn))
        .filter_map(|h| {
            Some(HostLine {
                address: h.address.parse().ok()?,
                names: h.names.clone(),
            })
        })
        .collect();

    let root_password = match (&a.global.root_password_hash, &a.global.root_password) {
        (Some(h), _) => Password::Hash(h.clone()),
        (None, Some(p)) => Password::Plain(p.clone()),
        (None, None) => Password::Plain(String::new()),
    };
    let cluster = (a.cluster.mode == "join").then(|| JoinPlan {
        address: a.cluster.address.clone().unwrap_or_default(),
        fingerprint: a.cluster.fingerprint.clone().unwrap_or_default(),
        token: a.cluster.token.clone().unwrap_or_default(),
    });
    let Some(device) = device else {
        return Err(Error::Invalid(Issues(vec![Issue::new(
            "disk.filter",
            "no disk selected",
        )])));
    };
    Ok(Plan {
        node_index,
        hostname,
        domain,
        fqdn,
        timezone: a
            .global
            .timezone
            .clone()
            .or(a.time.timezone.clone())
            .unwrap_or_else(|| "UTC".into()),
        keyboard: a.global.keyboard.clone(),
        locale: a.global.locale.clone(),
        root_password,
        admin: a.global.admin.as_ref().map(|x| AdminPlan {
            name: x.name.clone(),
            password_hash: x.password_hash.clone(),
        }),
        reboot: if a.global.reboot == "poweroff" {
            Reboot::Poweroff
        } else {
            Reboot::Reboot
        },
        disk: DiskPlan {
            wipe: device.partitions > 0,
            device,
            root_fs: a.disk.layout.root_fs.clone(),
            root_size_gib: a.disk.layout.root_size_gib,
            swap_size_gib: a.disk.layout.swap_size_gib,
            vg_name: a.disk.layout.vg_name.clone(),
        },
        network: {
            let mut net = NetPlan {
                devices,
                dns_servers: ips(&n.dns_servers),
                dns_search: n.dns_search.clone(),
                management,
            };
            // Back-links: masters and stacked VLANs.
            net.relink();
            net
        },
        hosts,
        time: TimePlan {
            servers: a.time.servers.clone(),
            pools: a.time.pools.clone(),
            iburst: a.time.iburst,
            local_stratum: a.time.local_stratum,
        },
        ssh: SshPlan {
            root_keys: a
                .ssh
                .root_keys
                .iter()
                .chain(&a.ssh.node_keys)
                .cloned()
                .collect(),
            admin_keys: a.ssh.admin_keys.clone(),
            permit_root_login: a
                .ssh
                .permit_root_login
                .clone()
                .unwrap_or_else(|| "prohibit-password".into()),
            password_authentication: a.ssh.password_authentication,
        },
        cluster,
        first_boot: a.first_boot.clone(),
        post_install: a.post_install.clone(),
    })
}
