//! `keel node network …`: the node's NICs, bonds, VLANs and bridges; staged changes, their
//! diff, apply with automatic rollback and confirm (docs/host-networks.md).

use anyhow::Result;
use clap::{Args, Subcommand};
use keel_api::hostnet::{
    BondPut, BridgePut, HostL3, HostNetwork, NetworkApply, PendingNetwork, VlanPut,
};
use reqwest::Method;
use serde_json::Value;

use crate::client::{typed, Client};
use crate::output::{print_json, table};
use crate::task::Mode;
use crate::{task_outcome, Outcome};

#[derive(Subcommand, Debug)]
pub enum HostNetCmd {
    /// NICs, bonds (mode, active slave, each slave's MII state), VLANs, bridges: link state,
    /// addresses, MTU; which carries the management address and the corosync links
    #[command(visible_alias = "ls")]
    List,
    /// The staged changes as a diff of the networkd files
    Pending,
    /// Stage a bond (created, or changed when it exists)
    Bond {
        #[command(subcommand)]
        cmd: BondCmd,
    },
    /// Stage a VLAN
    Vlan {
        #[command(subcommand)]
        cmd: VlanCmd,
    },
    /// Stage a bridge
    Bridge {
        #[command(subcommand)]
        cmd: BridgeCmd,
    },
    /// Stage the deletion of a bond, VLAN or bridge
    Delete { iface: String },
    /// Discard the staged changes
    Discard,
    /// Apply the staged changes; rolled back unless confirmed in time (or at once if the
    /// management address or a corosync link address is gone)
    Apply {
        /// Seconds to confirm before the rollback (10–600)
        #[arg(long, default_value_t = 60)]
        confirm_timeout: u64,
    },
    /// Keep the applied configuration
    Confirm,
}

#[derive(Args, Debug, Clone)]
pub struct L3Args {
    /// Static address with prefix, e.g. 192.0.2.10/24 (repeat)
    #[arg(long = "address")]
    addresses: Vec<String>,
    /// Gateway (repeat)
    #[arg(long = "gateway")]
    gateways: Vec<String>,
    #[arg(long)]
    dhcp: bool,
    #[arg(long)]
    mtu: Option<u32>,
}

impl L3Args {
    fn l3(self) -> HostL3 {
        HostL3 {
            addresses: self.addresses,
            gateways: self.gateways,
            dhcp: self.dhcp,
            mtu: self.mtu,
        }
    }
}

macro_rules! with_l3 {
    ($l3:expr, $t:ident { $($f:ident $(: $v:expr)?),* $(,)? }) => {{
        let l = $l3;
        $t {
            $($f $(: $v)?,)*
            addresses: l.addresses,
            gateways: l.gateways,
            dhcp: l.dhcp,
            mtu: l.mtu,
        }
    }};
}

#[derive(Subcommand, Debug)]
pub enum BondCmd {
    /// keel node network bond add bond1 --slave ens5 --slave ens6 [--mode active-backup]
    Add {
        name: String,
        /// A NIC (repeat)
        #[arg(long = "slave", required = true)]
        slaves: Vec<String>,
        #[arg(long, default_value = "active-backup")]
        mode: String,
        #[arg(long)]
        primary: Option<String>,
        /// MII monitoring interval, ms
        #[arg(long, default_value_t = 100)]
        miimon: u32,
        #[command(flatten)]
        l3: L3Args,
    },
}

#[derive(Subcommand, Debug)]
pub enum VlanCmd {
    /// keel node network vlan add bond0 200 [--name bond0.200]
    Add {
        parent: String,
        id: u32,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        l3: L3Args,
    },
}

#[derive(Subcommand, Debug)]
pub enum BridgeCmd {
    /// keel node network bridge add vmbr200 --port bond0.200
    Add {
        name: String,
        /// A port (repeat)
        #[arg(long = "port")]
        ports: Vec<String>,
        #[arg(long)]
        stp: bool,
        #[command(flatten)]
        l3: L3Args,
    },
}

fn print_list(n: &HostNetwork) {
    let mut t = table(&[
        "NAME",
        "KIND",
        "STATE",
        "MTU",
        "ADDRESSES",
        "MASTER",
        "DETAIL",
        "ROLE",
        "KEEL",
    ]);
    for i in &n.interfaces {
        let detail = if let Some(b) = &i.bond {
            let slaves: Vec<String> = b
                .slaves
                .iter()
                .map(|s| format!("{} mii {}", s.name, s.mii_status))
                .collect();
            format!(
                "{} active {}; {}",
                b.mode,
                b.active_slave.as_deref().unwrap_or("-"),
                slaves.join(", ")
            )
        } else if let Some(id) = i.vlan_id {
            format!("vlan {id} on {}", i.vlan_parent.as_deref().unwrap_or("?"))
        } else if !i.ports.is_empty() {
            format!("ports {}", i.ports.join(", "))
        } else {
            String::new()
        };
        let mut role: Vec<String> = Vec::new();
        if i.management {
            role.push("management".into());
        }
        role.extend(i.corosync_links.iter().map(|l| format!("corosync {l}")));
        t.add_row(vec![
            i.name.clone(),
            i.kind.clone(),
            i.state.clone().unwrap_or_else(|| "absent".into()),
            i.mtu.map(|m| m.to_string()).unwrap_or_default(),
            i.addresses.join(" "),
            i.master.clone().unwrap_or_default(),
            detail,
            role.join(", "),
            if i.managed { "yes" } else { "" }.into(),
        ]);
    }
    println!("{t}");
    if let Some(a) = &n.apply {
        println!(
            "An applied change waits for confirmation: {}s left (keel node network confirm)",
            a.remaining_s
        );
    } else if n.pending {
        println!("Changes are staged: keel node network pending");
    }
}

fn print_pending(p: &PendingNetwork) {
    if !p.pending {
        println!("No changes are staged.");
    } else {
        print!("{}", p.diff);
    }
}

fn done(v: Value, json: bool) -> Result<Outcome> {
    if json {
        print_json(&v);
    } else {
        print_pending(&typed(v)?);
    }
    Ok(Outcome::Done)
}

pub async fn run(c: &Client, cmd: HostNetCmd, mode: Mode) -> Result<Outcome> {
    let node = c.node().await?.to_string();
    match cmd {
        HostNetCmd::List => {
            let v = c.get(&["nodes", &node, "network"], &[]).await?;
            if mode.json {
                print_json(&v);
            } else {
                print_list(&typed(v)?);
            }
            Ok(Outcome::Done)
        }
        HostNetCmd::Pending => done(
            c.get(&["nodes", &node, "network", "pending"], &[]).await?,
            mode.json,
        ),
        HostNetCmd::Bond {
            cmd:
                BondCmd::Add {
                    name,
                    slaves,
                    mode: m,
                    primary,
                    miimon,
                    l3,
                },
        } => {
            let body = with_l3!(
                l3.l3(),
                BondPut {
                    name,
                    mode: m,
                    slaves,
                    primary,
                    miimon
                }
            );
            let v = c
                .call(
                    Method::PUT,
                    &["nodes", &node, "network", "bonds"],
                    &[],
                    Some(&body),
                )
                .await?;
            done(v, mode.json)
        }
        HostNetCmd::Vlan {
            cmd:
                VlanCmd::Add {
                    parent,
                    id,
                    name,
                    l3,
                },
        } => {
            let body = with_l3!(l3.l3(), VlanPut { name, parent, id });
            let v = c
                .call(
                    Method::PUT,
                    &["nodes", &node, "network", "vlans"],
                    &[],
                    Some(&body),
                )
                .await?;
            done(v, mode.json)
        }
        HostNetCmd::Bridge {
            cmd:
                BridgeCmd::Add {
                    name,
                    ports,
                    stp,
                    l3,
                },
        } => {
            let body = with_l3!(l3.l3(), BridgePut { name, ports, stp });
            let v = c
                .call(
                    Method::PUT,
                    &["nodes", &node, "network", "bridges"],
                    &[],
                    Some(&body),
                )
                .await?;
            done(v, mode.json)
        }
        HostNetCmd::Delete { iface } => {
            let v = c
                .call::<()>(
                    Method::DELETE,
                    &["nodes", &node, "network", "interfaces", &iface],
                    &[],
                    None,
                )
                .await?;
            done(v, mode.json)
        }
        HostNetCmd::Discard => {
            c.call::<()>(
                Method::DELETE,
                &["nodes", &node, "network", "pending"],
                &[],
                None,
            )
            .await?;
            if !mode.json {
                println!("Staged network changes discarded.");
            }
            Ok(Outcome::Done)
        }
        HostNetCmd::Apply { confirm_timeout } => {
            let body = NetworkApply {
                confirm_timeout_s: confirm_timeout,
            };
            let a = c
                .call(
                    Method::POST,
                    &["nodes", &node, "network", "apply"],
                    &[],
                    Some(&body),
                )
                .await?;
            let out = task_outcome(c, &node, a, mode).await?;
            if !mode.json && !mode.no_wait {
                println!(
                    "Applied. Check the node, then within {confirm_timeout}s: keel node network confirm"
                );
            }
            Ok(out)
        }
        HostNetCmd::Confirm => {
            c.call::<()>(
                Method::POST,
                &["nodes", &node, "network", "confirm"],
                &[],
                None,
            )
            .await?;
            if !mode.json {
                println!("Network change confirmed: it stays.");
            }
            Ok(Outcome::Done)
        }
    }
}
