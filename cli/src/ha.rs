//! `keel vm ha`, `keel cluster ha` and `keel cluster shared-pool`: HA VMs and the shared pools
//! their disks live on (docs/ha.md).

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use keel_api::ha::{HaSet, HaVmStatus, SharedPoolCreate, SharedPoolInfo, WhatIf};
use reqwest::Method;

use crate::client::Client;
use crate::task::Mode;
use crate::{show, task_outcome, Outcome};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum SharedPoolCmd {
    /// Shared pools and whether each node can use them
    #[command(visible_alias = "ls")]
    List,
    /// Declare a directory every node mounts from the same storage (NFS, a cluster file
    /// system) as a shared pool: a marker is written into it here, every node checks it
    Add { name: String, path: String },
    /// Remove a shared pool from the cluster (its files stay); refused while a VM uses it
    #[command(visible_alias = "rm")]
    Remove { name: String },
}

/// `keel vm ha VMID on|off`.
pub async fn vm_ha(
    c: &Client,
    node: &str,
    vmid: u32,
    state: OnOff,
    priority: Option<u32>,
    max_restarts: Option<u32>,
    mode: Mode,
) -> Result<Outcome> {
    if state == OnOff::Off && (priority.is_some() || max_restarts.is_some()) {
        bail!("--priority and --max-restarts go with `on`");
    }
    if max_restarts.is_some_and(|m| !(1..=1000).contains(&m)) {
        bail!("--max-restarts must be from 1 to 1000");
    }
    let body = HaSet {
        enabled: state == OnOff::On,
        priority,
        max_restarts,
    };
    let a = c
        .call(
            Method::PUT,
            &["nodes", node, "vms", &vmid.to_string(), "ha"],
            &[],
            Some(&body),
        )
        .await?;
    task_outcome(c, node, a, mode).await
}

/// `keel cluster ha`.
pub async fn list(c: &Client, json: bool) -> Result<()> {
    show(
        c.get(&["cluster", "ha"], &[]).await?,
        json,
        |v: Vec<HaVmStatus>| {
            if v.is_empty() {
                println!("no HA VMs (keel vm ha VMID on)");
                return;
            }
            println!(
                "{:<6} {:<20} {:<8} {:<10} {:<8} {:<9} FAILURES",
                "VMID", "NAME", "TARGET", "NODE", "PRIO", "RESTARTS"
            );
            for h in v {
                println!(
                    "{:<6} {:<20} {:<8} {:<10} {:<8} {:<9} {}",
                    h.vmid,
                    h.name,
                    h.target,
                    h.node
                        .as_deref()
                        .unwrap_or(if h.active { "?" } else { "-" }),
                    h.priority,
                    h.max_restarts,
                    if h.failures.is_empty() {
                        "-".to_string()
                    } else {
                        h.failures.join("; ")
                    }
                );
            }
        },
    )
}

fn print_pools(v: Vec<SharedPoolInfo>) {
    if v.is_empty() {
        println!("no shared pools (keel cluster shared-pool add NAME PATH)");
        return;
    }
    for p in v {
        println!("{}  {}", p.name, p.path);
        for (n, s) in p.nodes {
            println!("    {n:<12} {s}");
        }
    }
}

/// `keel cluster shared-pool …`.
pub async fn shared_pool(c: &Client, cmd: SharedPoolCmd, json: bool) -> Result<()> {
    match cmd {
        SharedPoolCmd::List => show(
            c.get(&["cluster", "shared-pools"], &[]).await?,
            json,
            print_pools,
        )?,
        SharedPoolCmd::Add { name, path } => {
            let v = c
                .call(
                    Method::POST,
                    &["cluster", "shared-pools"],
                    &[],
                    Some(&SharedPoolCreate { name, path }),
                )
                .await?;
            show(v, json, |p: SharedPoolInfo| print_pools(vec![p]))?;
        }
        SharedPoolCmd::Remove { name } => {
            c.call::<()>(
                Method::DELETE,
                &["cluster", "shared-pools", &name],
                &[],
                None,
            )
            .await?;
            if !json {
                println!("shared pool {name} removed (its files stay)");
            }
        }
    }
    Ok(())
}

/// `keel cluster what-if --node-fail NODE`.
pub async fn what_if(c: &Client, node: &str, json: bool) -> Result<()> {
    show(
        c.get(&["cluster", "what-if"], &[("node_fail", node.to_string())])
            .await?,
        json,
        |w: WhatIf| {
            println!(
                "if {} failed now (Pacemaker's scheduler on the live CIB):",
                w.node_fail
            );
            if w.vms.is_empty() {
                println!("  no HA VMs");
            }
            for v in w.vms {
                println!("  VM {:<6} {:<20} {}", v.vmid, v.name, v.detail);
            }
        },
    )
}
