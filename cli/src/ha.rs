//! `keel vm ha`, `keel cluster ha` and `keel cluster shared-pool`: HA VMs and the shared pools
//! their disks live on (docs/ha.md).

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use keel_api::ha::{
    HaRule, HaRuleKind, HaRuleNode, HaSet, HaVmStatus, SharedPoolCreate, SharedPoolInfo, WhatIf,
};
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

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    NodeAffinity,
    Together,
    Apart,
}

#[derive(Subcommand, Debug)]
pub enum HaRuleCmd {
    /// Placement rules
    #[command(visible_alias = "ls")]
    List,
    /// Add a rule: node-affinity (--nodes), together or apart; --hard makes Pacemaker never
    /// break it (a VM stays down rather). Conflicts are refused when added
    Add {
        id: String,
        #[arg(long, value_enum)]
        kind: RuleKind,
        /// HA VMs, e.g. 100,101
        #[arg(long, value_delimiter = ',', required = true)]
        vms: Vec<u32>,
        /// node-affinity: NODE[:PRIORITY],… (priority default 100; higher preferred)
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        #[arg(long)]
        hard: bool,
    },
    /// Remove a rule
    #[command(visible_alias = "rm")]
    Remove { id: String },
}

fn parse_rule_node(s: &str) -> Result<HaRuleNode> {
    match s.split_once(':') {
        None => Ok(HaRuleNode {
            node: s.to_string(),
            priority: 100,
        }),
        Some((n, p)) => Ok(HaRuleNode {
            node: n.to_string(),
            priority: p.parse().map_err(|_| {
                anyhow::anyhow!("--nodes {s:?}: the priority after ':' is a number")
            })?,
        }),
    }
}

/// `keel cluster ha-rule …`.
pub async fn rule(c: &Client, cmd: HaRuleCmd, json: bool) -> Result<()> {
    match cmd {
        HaRuleCmd::List => show(
            c.get(&["cluster", "ha", "rules"], &[]).await?,
            json,
            |v: Vec<HaRule>| {
                if v.is_empty() {
                    println!("no placement rules (keel cluster ha-rule add …)");
                }
                for r in v {
                    let nodes: Vec<String> = r
                        .nodes
                        .iter()
                        .map(|n| format!("{}:{}", n.node, n.priority))
                        .collect();
                    println!(
                        "{:<16} {:<14} {:<5} VMs {}{}",
                        r.id,
                        r.kind.as_str(),
                        if r.hard { "hard" } else { "soft" },
                        r.vms
                            .iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        if nodes.is_empty() {
                            String::new()
                        } else {
                            format!(" on {}", nodes.join(","))
                        }
                    );
                }
            },
        )?,
        HaRuleCmd::Add {
            id,
            kind,
            vms,
            nodes,
            hard,
        } => {
            let kind = match kind {
                RuleKind::NodeAffinity => HaRuleKind::NodeAffinity,
                RuleKind::Together => HaRuleKind::Together,
                RuleKind::Apart => HaRuleKind::Apart,
            };
            let nodes = nodes
                .iter()
                .map(|n| parse_rule_node(n))
                .collect::<Result<Vec<_>>>()?;
            let body = HaRule {
                id,
                kind,
                vms,
                nodes,
                hard,
            };
            let v = c
                .call(Method::POST, &["cluster", "ha", "rules"], &[], Some(&body))
                .await?;
            show(v, json, |r: HaRule| println!("rule {} added", r.id))?;
        }
        HaRuleCmd::Remove { id } => {
            c.call::<()>(Method::DELETE, &["cluster", "ha", "rules", &id], &[], None)
                .await?;
            if !json {
                println!("rule {id} removed");
            }
        }
    }
    Ok(())
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

/// `keel cluster ha-cleanup VMID`.
pub async fn cleanup(c: &Client, vmid: u32, json: bool) -> Result<()> {
    let v = c
        .call::<()>(
            Method::POST,
            &["cluster", "ha", &vmid.to_string(), "cleanup"],
            &[],
            None,
        )
        .await?;
    show(v, json, |r: keel_api::ha::HaCleanup| {
        println!("{}", r.message)
    })
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
                "{:<6} {:<20} {:<8} {:<10} {:<8} {:<9} {:<14} {:<14} FAILURES",
                "VMID", "NAME", "TARGET", "NODE", "PRIO", "RESTARTS", "FAIL COUNTS", "RULES"
            );
            let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
            for h in v {
                println!(
                    "{:<6} {:<20} {:<8} {:<10} {:<8} {:<9} {:<14} {:<14} {}",
                    h.vmid,
                    h.name,
                    h.target,
                    h.node
                        .as_deref()
                        .unwrap_or(if h.active { "?" } else { "-" }),
                    h.priority,
                    h.max_restarts,
                    dash(
                        h.fail_counts
                            .iter()
                            .map(|(n, c)| format!("{n}:{c}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    dash(h.rules.join(",")),
                    dash(h.failures.join("; "))
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
