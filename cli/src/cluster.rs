//! `keel cluster …`, `keel join`, `keel node remove`, `keel fence …`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use keel_api::cluster::{
    parse_duration_s, ClusterInit, ClusterNode, ClusterStatus, FenceAgentKind, FenceDeviceInfo,
    FenceDeviceSpec, JoinAuth, JoinToken, JoinTokenCreate, LocalJoin, VipSet, VipStatus,
};
use keel_api::task::TaskRef;
use reqwest::Method;

use crate::client::{typed, Client};
use crate::config::Settings;
use crate::task::{self, Mode};
use crate::{output, show, task_outcome, Global, Outcome};

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Create a cluster with this node as its first member (corosync + Pacemaker, fencing on)
    Init {
        /// Cluster name: letters, digits, '-'
        #[arg(long)]
        name: String,
        /// This node's address on the cluster network [default: the management address]
        #[arg(long, value_name = "ADDR")]
        link0: Option<String>,
        /// A second, independent cluster network (knet redundancy)
        #[arg(long, value_name = "ADDR")]
        link1: Option<String>,
        /// corosync token timeout in ms [default: chosen for the link]
        #[arg(long, value_name = "MS")]
        token_ms: Option<u32>,
    },
    /// Create a one-time join token for `keel join`
    JoinToken {
        /// Lifetime, e.g. 30m, 1h, 3600 [default: 1h]
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// Members, quorum, links, DC, fencing and failed actions
    Status,
    /// Members as configured in corosync
    Nodes,
    /// Check the cluster for the known traps (fencing, links, clocks, keys, config drift…);
    /// exits non-zero when any error is found (codes: docs/verify.md)
    Verify,
    /// The replicated config store (writable while quorate)
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The floating management address: one address for the UI and API of the whole cluster
    #[command(subcommand)]
    Vip(VipCmd),
    /// A QDevice: a corosync-qnetd arbiter's vote, so either node of a two-node cluster stays
    /// quorate alone (docs/cluster.md)
    #[command(subcommand)]
    Qdevice(crate::qdevice::QdeviceCmd),
    /// HA VMs: where Pacemaker runs each, its target state, fail counts, rules and failures
    Ha,
    /// Forget an HA VM's failures and fail counts once their cause is fixed (crm_resource
    /// --cleanup): a VM banned from a node after max-restarts failures may run there again
    HaCleanup { vmid: u32 },
    /// Placement rules of HA VMs: node affinity, together, apart (docs/ha.md)
    #[command(subcommand)]
    HaRule(crate::ha::HaRuleCmd),
    /// What would happen to the HA VMs if NODE failed now (Pacemaker's own scheduler on the
    /// live configuration; nothing is changed)
    WhatIf {
        #[arg(long, value_name = "NODE")]
        node_fail: String,
    },
    /// Shared pools: directories every node mounts from the same storage (for HA VMs' disks)
    #[command(subcommand)]
    SharedPool(crate::ha::SharedPoolCmd),
}

#[derive(Subcommand, Debug)]
pub enum VipCmd {
    /// The address, its URL and the node holding it
    Show,
    /// Set (or change) it: ADDRESS/PREFIX on a network the nodes are on, e.g. 192.0.2.10/24
    Set { address: String },
    /// Remove it
    #[command(visible_alias = "rm")]
    Remove,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Keys (with their versions and values)
    #[command(visible_alias = "ls")]
    List {
        #[arg(long)]
        prefix: Option<String>,
    },
    /// One key's value
    Get { key: String },
    /// Set a key to a JSON value
    Set {
        key: String,
        /// JSON, e.g. '{"a":1}' or '"text"'
        value: String,
        /// Only if the key is still at this version (0: only if absent)
        #[arg(long, value_name = "VERSION")]
        if_version: Option<u64>,
    },
    /// Delete a key
    #[command(visible_alias = "rm")]
    Delete { key: String },
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    /// HOST or HOST:PORT of a member's API (port 8006 by default)
    pub address: String,
    /// This node's state directory (for the local root token and certificate fingerprint)
    #[arg(long, env = "KEEL_STATE_DIR", default_value = "/var/lib/keel")]
    pub state_dir: PathBuf,
    /// This node's API
    #[arg(long, default_value = "https://127.0.0.1:8006")]
    pub local_url: String,
    /// This node's address on the cluster network [default: the address that reaches the member]
    #[arg(long, value_name = "ADDR")]
    pub link0: Option<String>,
    #[arg(long, value_name = "ADDR")]
    pub link1: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Host networks: NICs, bonds, VLANs, bridges; staged changes, apply with rollback
    Network {
        #[command(subcommand)]
        cmd: crate::hostnet::HostNetCmd,
    },
    /// The node's CPU, memory, disk and network I/O: latest value, average and peak over a range
    Metrics {
        #[arg(long, value_enum, default_value = "hour")]
        range: crate::metrics::RangeArg,
    },
    /// Remove a node from the cluster (refuses if that would cost quorum, unless --force)
    Remove {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Maintenance of NODE. on: every running VM leaves it live (HA VMs through Pacemaker,
    /// respecting their placement rules; stopped VMs too, offline, with --include-stopped),
    /// then NODE is in standby, across reboots; refused before anything moves when a VM cannot
    /// leave. off: NODE takes VMs again; the moved VMs stay where they are unless --return
    /// brings them back (a task).
    Maintenance {
        name: String,
        state: crate::ha::OnOff,
        /// With off: bring back, live, the VMs this maintenance moved away (HA VMs through
        /// Pacemaker, the others by live migration); also retries the ones that did not come
        /// back after the node left maintenance
        #[arg(long = "return")]
        return_vms: bool,
        /// With on: also move the stopped VMs (not HA) offline, so they can be started while
        /// NODE is down (node-local disks are copied; templates stay)
        #[arg(long)]
        include_stopped: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum FenceCmd {
    /// Fence devices (one per node)
    #[command(visible_alias = "ls")]
    List,
    /// Configure the fence device of NODE
    Add {
        node: String,
        /// fence_ipmilan, fence_redfish, sbd, or any installed fence-agents program (fence_virsh…)
        /// whose parameters are given as --param/--secret. sbd: --param
        /// devices=/dev/disk/by-id/DISK[,…] (a shared disk, formatted if blank) and optionally
        /// --param watchdog_timeout=SECONDS (default 5); sets up and starts sbd on every node.
        /// watchdog: diskless SBD (the node resets itself through its watchdog), only with three
        /// votes or more (a QDevice or a third node); --param watchdog_timeout=SECONDS
        #[arg(long)]
        agent: String,
        /// Agent parameter KEY=VALUE (repeat)
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Secret parameter, e.g. password (stored by Pacemaker, never logged): KEY=@FILE reads
        /// the value from FILE (first line), KEY=- from standard input; KEY=VALUE also works but
        /// leaves the secret in the process list and the shell history
        #[arg(long = "secret", value_name = "KEY=@FILE|KEY=-")]
        secrets: Vec<String>,
        /// Delay (s) before fencing NODE: set it on the node that should win a two-node split
        #[arg(long, value_name = "SECONDS")]
        delay: Option<u32>,
    },
    /// Remove the fence device of NODE
    #[command(visible_alias = "rm")]
    Delete { node: String },
    /// Really fence NODE (reboot, or power off with --off) and record the result
    Test {
        node: String,
        /// Confirm: NODE will be reset
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        off: bool,
    },
}

fn kv(list: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for s in list {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("--{what} {s:?}: expected KEY=VALUE"))?;
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// Resolve `@FILE` and `-` (standard input, read once) in secret values; the value is the first
/// line, without its line ending.
fn secret_values(
    mut m: BTreeMap<String, String>,
    stdin: &mut dyn std::io::BufRead,
) -> Result<BTreeMap<String, String>> {
    let mut stdin_used = false;
    for (k, v) in m.iter_mut() {
        let text = if let Some(path) = v.strip_prefix('@') {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow!("--secret {k}=@{path}: cannot read {path}: {e}"))?
        } else if v == "-" {
            if stdin_used {
                return Err(anyhow!(
                    "--secret {k}=-: standard input is already used by another secret; use @FILE"
                ));
            }
            stdin_used = true;
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .map_err(|e| anyhow!("--secret {k}=-: reading standard input: {e}"))?;
            line
        } else {
            continue;
        };
        let first = text.lines().next().unwrap_or_default().to_string();
        if first.is_empty() {
            return Err(anyhow!("--secret {k}: the value read is empty"));
        }
        *v = first;
    }
    Ok(m)
}

fn agent_kind(s: &str) -> Result<FenceAgentKind> {
    Ok(match s {
        "fence_ipmilan" | "ipmilan" => FenceAgentKind::FenceIpmilan,
        "fence_redfish" | "redfish" => FenceAgentKind::FenceRedfish,
        "sbd" | "fence_sbd" => FenceAgentKind::Sbd,
        "watchdog" | "fence_watchdog" => FenceAgentKind::Watchdog,
        p if keel_api::cluster::valid_agent_program(p) => FenceAgentKind::Agent(p.to_string()),
        _ => bail!(
            "--agent {s:?}: use fence_ipmilan, fence_redfish, sbd, watchdog or an installed fence-agents program (fence_...)"
        ),
    })
}

fn local_node(upid: &str) -> String {
    task::node_of_upid(upid).unwrap_or("").to_string()
}

pub async fn cluster(c: &Client, cmd: ClusterCmd, mode: Mode) -> Result<Outcome> {
    let json = mode.json;
    match cmd {
        ClusterCmd::Init {
            name,
            link0,
            link1,
            token_ms,
        } => {
            let body = ClusterInit {
                name,
                link0,
                link1,
                token_ms,
            };
            body.validate().map_err(|e| anyhow!("{e}"))?;
            let a = c
                .call(Method::POST, &["cluster", "init"], &[], Some(&body))
                .await?;
            let r: TaskRef = typed(a.clone())?;
            let node = local_node(&r.upid);
            let out = task_outcome(c, &node, a, mode).await?;
            if !json && !mode.no_wait {
                let st: ClusterStatus = typed(c.get(&["cluster", "status"], &[]).await?)?;
                output_status(&st);
                eprintln!(
                    "\nThe API certificate changed (now signed by the cluster CA); see the task log above for its fingerprint."
                );
            }
            return Ok(out);
        }
        ClusterCmd::JoinToken { ttl } => {
            let ttl_s = ttl
                .map(|t| {
                    parse_duration_s(&t)
                        .ok_or_else(|| anyhow!("--ttl {t:?}: use e.g. 30m, 1h or seconds"))
                })
                .transpose()?;
            let body = JoinTokenCreate { ttl_s };
            body.validate().map_err(|e| anyhow!("{e}"))?;
            let v = c
                .call(Method::POST, &["cluster", "join-token"], &[], Some(&body))
                .await?;
            // stdout: the bare token (scripts capture it); stderr: the whole command
            show(v, json, |t: JoinToken| {
                println!("{}", t.token);
                eprintln!(
                    "one-time join token, valid until {}: on the new node run, as root,\n  {}",
                    output::time(t.expires_at),
                    t.join_command()
                );
            })?;
        }
        ClusterCmd::Status => show(
            c.get(&["cluster", "status"], &[]).await?,
            json,
            |s: ClusterStatus| output_status(&s),
        )?,
        ClusterCmd::Config(cc) => config(c, cc, json).await?,
        ClusterCmd::Ha => crate::ha::list(c, json).await?,
        ClusterCmd::HaCleanup { vmid } => crate::ha::cleanup(c, vmid, json).await?,
        ClusterCmd::HaRule(cmd) => crate::ha::rule(c, cmd, json).await?,
        ClusterCmd::WhatIf { node_fail } => crate::ha::what_if(c, &node_fail, json).await?,
        ClusterCmd::SharedPool(cmd) => crate::ha::shared_pool(c, cmd, json).await?,
        ClusterCmd::Qdevice(cmd) => return crate::qdevice::run(c, cmd, mode).await,
        ClusterCmd::Vip(VipCmd::Show) => {
            show(c.get(&["cluster", "vip"], &[]).await?, json, output_vip)?
        }
        ClusterCmd::Vip(VipCmd::Set { address }) => {
            // the API's own check of the form, before anything is sent
            check_vip_shape(&address)?;
            let v = c
                .call(
                    Method::PUT,
                    &["cluster", "vip"],
                    &[],
                    Some(&VipSet { address }),
                )
                .await?;
            show(v, json, output_vip)?;
        }
        ClusterCmd::Vip(VipCmd::Remove) => {
            c.call::<()>(Method::DELETE, &["cluster", "vip"], &[], None)
                .await?;
            if !json {
                println!("floating management address removed");
            }
        }
        ClusterCmd::Verify => crate::verify::verify(c, json).await?,
        ClusterCmd::Nodes => show(
            c.get(&["cluster", "nodes"], &[]).await?,
            json,
            |ns: Vec<ClusterNode>| {
                println!("{:<20} {:>6}  {:<40} API", "NAME", "NODEID", "LINKS");
                for n in ns {
                    println!(
                        "{:<20} {:>6}  {:<40} {}",
                        n.name,
                        n.nodeid,
                        n.links.join(","),
                        n.api
                    );
                }
            },
        )?,
    }
    Ok(Outcome::Done)
}

async fn config(c: &Client, cmd: ConfigCmd, json: bool) -> Result<()> {
    use keel_api::cluster::{ConfigEntry, ConfigPut};
    match cmd {
        ConfigCmd::List { prefix } => {
            let q: Vec<(&str, String)> = prefix.map(|p| ("prefix", p)).into_iter().collect();
            show(
                c.get(&["cluster", "config"], &q).await?,
                json,
                |es: Vec<ConfigEntry>| {
                    for e in es {
                        println!("{} (v{}) {}", e.key, e.version, e.value);
                    }
                },
            )?;
        }
        ConfigCmd::Get { key } => {
            let segs: Vec<&str> = ["cluster", "config"]
                .into_iter()
                .chain(key.split('/'))
                .collect();
            show(c.get(&segs, &[]).await?, json, |e: ConfigEntry| {
                println!("{}", e.value)
            })?;
        }
        ConfigCmd::Set {
            key,
            value,
            if_version: version,
        } => {
            let value: serde_json::Value = serde_json::from_str(&value)
                .map_err(|e| anyhow!("VALUE is not JSON ({e}); quote text as '\"text\"'"))?;
            let segs: Vec<&str> = ["cluster", "config"]
                .into_iter()
                .chain(key.split('/'))
                .collect();
            let v = c
                .call(Method::PUT, &segs, &[], Some(&ConfigPut { value, version }))
                .await?;
            show(v, json, |e: ConfigEntry| {
                println!("{} set (v{})", e.key, e.version)
            })?;
        }
        ConfigCmd::Delete { key } => {
            let segs: Vec<&str> = ["cluster", "config"]
                .into_iter()
                .chain(key.split('/'))
                .collect();
            c.call::<()>(Method::DELETE, &segs, &[], None).await?;
            if !json {
                println!("{key} deleted");
            }
        }
    }
    Ok(())
}

pub fn output_status(s: &ClusterStatus) {
    if !s.clustered {
        println!("not in a cluster");
        for n in &s.notes {
            println!("note: {n}");
        }
        return;
    }
    println!("cluster:  {}  (answered by {})", s.name, s.local_node);
    println!(
        "quorum:   {}  votes {}/{} expected{}",
        if s.quorate { "yes" } else { "NO" },
        s.total_votes,
        s.expected_votes,
        if s.two_node { "  (two_node)" } else { "" }
    );
    if let Some(l) = s.qdevice.as_ref().and_then(crate::qdevice::status_line) {
        println!("{l}");
    }
    println!("DC:       {}", s.dc.as_deref().unwrap_or("-"));
    println!(
        "fencing:  {}",
        if s.stonith_enabled {
            "enabled"
        } else {
            "DISABLED"
        }
    );
    if let Some(st) = &s.store {
        println!("store:    {}", store_line(st));
    }
    for d in &s.daemons {
        println!("daemon:   {}", daemon_line(d));
    }
    println!();
    println!(
        "{:<16} {:>6} {:<8} {:>5} {:<3} {:<30} {:<18} LAST FENCE TEST",
        "NODE", "NODEID", "STATE", "VOTES", "DC", "LINKS", "FENCE DEVICE"
    );
    for m in &s.members {
        let state = if m.unclean {
            "unclean"
        } else if !m.online {
            "offline"
        } else if m.standby {
            "standby"
        } else {
            "online"
        };
        let links: Vec<String> = m
            .links
            .iter()
            .map(|l| {
                format!(
                    "{}:{}{}",
                    l.link,
                    l.address,
                    if l.connected { "" } else { "(down)" }
                )
            })
            .collect();
        let test = m
            .last_fence_test
            .as_ref()
            .map(|t| {
                format!(
                    "{} {} ({})",
                    if t.ok { "ok" } else { "FAILED" },
                    output::time(t.at),
                    t.action
                )
            })
            .unwrap_or_else(|| "never".into());
        println!(
            "{:<16} {:>6} {:<8} {:>5} {:<3} {:<30} {:<18} {}",
            m.name,
            m.nodeid,
            state,
            m.votes,
            if m.is_dc { "*" } else { "" },
            links.join(" "),
            m.fence_device.as_deref().unwrap_or("-"),
            test
        );
    }
    if !s.failed_actions.is_empty() {
        println!("\nfailed actions:");
        for f in &s.failed_actions {
            println!(
                "  {} on {}: {} {}",
                f.resource, f.node, f.operation, f.status
            );
        }
    }
    for n in &s.notes {
        println!("note: {n}");
    }
}

/// `writable, version 42, 3 members` / `READ-ONLY: why` / `UNREACHABLE: error`.
pub fn store_line(st: &keel_api::cluster::StoreState) -> String {
    if !st.reachable {
        return format!(
            "UNREACHABLE on this node: {}",
            st.error.as_deref().unwrap_or("no answer")
        );
    }
    let mut line = if st.writable {
        "writable".to_string()
    } else {
        format!(
            "READ-ONLY: {}",
            st.read_only_reason.as_deref().unwrap_or("unknown")
        )
    };
    if let Some(v) = st.version {
        line.push_str(&format!(", version {v}"));
    }
    line.push_str(&format!(", {} member(s)", st.members.len()));
    if st.syncing {
        line.push_str(", syncing");
    }
    line
}

/// `corosync       running  pid 812 since 12:00:01, 0 restarts` / `pacemaker DEAD …`.
pub fn daemon_line(d: &keel_api::cluster::DaemonStatus) -> String {
    use keel_api::cluster::DaemonRunState as S;
    let state = match d.state {
        S::Running => "running",
        S::Dead => "DEAD",
        S::Restarting => "RESTARTING",
        S::Stopped => "stopped",
    };
    let mut line = format!("{:<14} {:<10}", d.name, state);
    if let Some(p) = d.pid {
        line.push_str(&format!(" pid {p}"));
    }
    if let Some(t) = d.since {
        line.push_str(&format!(" since {}", output::time(t as i64)));
    }
    line.push_str(&format!(", {} restart(s)", d.restarts));
    if let Some(e) = &d.last_exit {
        line.push_str(&format!(
            ", last exit: {}{}",
            e.status,
            e.at.map(|t| format!(" at {}", output::time(t as i64)))
                .unwrap_or_default()
        ));
    }
    if let Some(t) = d.next_attempt {
        line.push_str(&format!(", next attempt {}", output::time(t as i64)));
    }
    if let Some(m) = &d.message {
        line.push_str(&format!(" — {m}"));
    }
    line
}

pub async fn node_cmd(c: &Client, cmd: NodeCmd, mode: Mode) -> Result<Outcome> {
    match cmd {
        NodeCmd::Network { cmd } => crate::hostnet::run(c, cmd, mode).await,
        NodeCmd::Metrics { range } => {
            let node = c.node().await?;
            crate::metrics::show(c, &["nodes", node, "metrics"], range, mode.json).await?;
            Ok(Outcome::Done)
        }
        NodeCmd::Remove { name, force } => {
            let q = if force {
                vec![("force", "true".to_string())]
            } else {
                vec![]
            };
            let a = c
                .call::<()>(Method::DELETE, &["cluster", "nodes", &name], &q, None)
                .await?;
            let r: TaskRef = typed(a.clone())?;
            let node = local_node(&r.upid);
            task_outcome(c, &node, a, mode).await
        }
        NodeCmd::Maintenance {
            name,
            state,
            return_vms,
            include_stopped,
        } => {
            let on = state == crate::ha::OnOff::On;
            if on && return_vms {
                bail!("--return goes with off: it brings the moved VMs back when maintenance ends");
            }
            if !on && include_stopped {
                bail!("--include-stopped goes with on: it moves the stopped VMs away when maintenance starts");
            }
            let a = c
                .call(
                    Method::PUT,
                    &["nodes", &name, "maintenance"],
                    &[],
                    Some(&keel_api::ha::MaintenanceSet {
                        enabled: on,
                        return_vms,
                        include_stopped,
                    }),
                )
                .await?;
            if on || return_vms {
                task_outcome(c, &name, a, mode).await
            } else {
                if !mode.json {
                    println!("{name} left maintenance: it takes VMs again (moved VMs stay where they are; --return brings them back)");
                }
                Ok(Outcome::Done)
            }
        }
    }
}

pub async fn fence(c: &Client, cmd: FenceCmd, mode: Mode) -> Result<Outcome> {
    let json = mode.json;
    match cmd {
        FenceCmd::List => show(
            c.get(&["cluster", "fencing"], &[]).await?,
            json,
            |ds: Vec<FenceDeviceInfo>| {
                println!(
                    "{:<20} {:<16} {:<16} {:<6} LAST TEST",
                    "ID", "NODE", "AGENT", "DELAY"
                );
                for d in ds {
                    // a test through an earlier configuration of the device proves nothing now
                    let changed = |t: &keel_api::cluster::FenceTestResult| {
                        d.generation.is_some() && t.device_generation != d.generation
                    };
                    let t = d
                        .last_test
                        .as_ref()
                        .map(|t| {
                            format!(
                                "{} {} ({}){}",
                                if t.ok { "ok" } else { "FAILED" },
                                output::time(t.at),
                                t.action,
                                if changed(t) {
                                    ", device changed since: test again"
                                } else {
                                    ""
                                }
                            )
                        })
                        .unwrap_or_else(|| "never".into());
                    println!(
                        "{:<20} {:<16} {:<16} {:<6} {t}",
                        d.id,
                        d.node,
                        output::wire_name(&d.agent),
                        d.delay_base_s
                            .map(|s| format!("{s}s"))
                            .unwrap_or_else(|| "-".into())
                    );
                }
            },
        )?,
        FenceCmd::Add {
            node,
            agent,
            params,
            secrets,
            delay,
        } => {
            let spec = FenceDeviceSpec {
                node,
                agent: agent_kind(&agent)?,
                params: kv(&params, "param")?,
                secrets: secret_values(kv(&secrets, "secret")?, &mut std::io::stdin().lock())?,
                delay_base_s: delay,
            };
            spec.validate().map_err(|e| anyhow!("{e}"))?;
            // a task: sbd (disk or watchdog) starts sbd on every member, which waits twice the
            // watchdog timeout with diskless SBD, and restarts Pacemaker one member at a time
            let a = c
                .call::<FenceDeviceSpec>(Method::POST, &["cluster", "fencing"], &[], Some(&spec))
                .await?;
            let r: TaskRef = typed(a.clone())?;
            let n = local_node(&r.upid);
            return task_outcome(c, &n, a, mode).await;
        }
        FenceCmd::Delete { node } => {
            c.call::<()>(Method::DELETE, &["cluster", "fencing", &node], &[], None)
                .await?;
            if !json {
                println!("fence device of {node} deleted");
            }
        }
        FenceCmd::Test { node, yes, off } => {
            if !yes {
                bail!("`keel fence test {node}` really resets {node}: add --yes to confirm");
            }
            let q = vec![("action", if off { "off" } else { "reboot" }.to_string())];
            let a = c
                .call::<()>(
                    Method::POST,
                    &["cluster", "fencing", &node, "test"],
                    &q,
                    None,
                )
                .await?;
            let r: TaskRef = typed(a.clone())?;
            let n = local_node(&r.upid);
            return task_outcome(c, &n, a, mode).await;
        }
    }
    Ok(Outcome::Done)
}

fn read_trim(p: &std::path::Path) -> Result<String> {
    Ok(std::fs::read_to_string(p)
        .with_context(|| {
            format!(
                "reading {} (run `keel join` as root on the joining node)",
                p.display()
            )
        })?
        .trim()
        .to_string())
}

async fn local_client(j: &JoinArgs) -> Result<Client> {
    let s = Settings {
        url: j.local_url.clone(),
        fingerprint: Some(read_trim(&j.state_dir.join("hostd.fingerprint"))?),
        token: Some(read_trim(&j.state_dir.join("local-root.token"))?),
        user: "root".into(),
        password: None,
        node: None,
    };
    Client::connect(&s).await
}

/// `keel join ADDRESS --fingerprint FP (--token T | --password PW)`: the global `--fingerprint`,
/// `--token` and `--password` here mean the member's certificate, a join token and the
/// member's root password; this node's own API is reached with its local root token.
pub async fn join(j: JoinArgs, g: &Global, mode: Mode) -> Result<Outcome> {
    let fingerprint = g
        .fingerprint
        .clone()
        .ok_or_else(|| anyhow!("--fingerprint: give the member's certificate fingerprint (printed by `keel cluster init`, or in its hostd.fingerprint); KEEL_FINGERPRINT is not used by `keel join`"))?;
    let auth = match (&g.token, &g.password) {
        (Some(t), None) => JoinAuth::Token(t.clone()),
        (None, Some(p)) => JoinAuth::Password(p.clone()),
        _ => bail!("give exactly one of --token JOIN_TOKEN (from `keel cluster join-token`) or --password (the member's root password) on the join command line; KEEL_TOKEN and KEEL_PASSWORD are not used by `keel join` (they belong to the node you were talking to)"),
    };
    let req = LocalJoin {
        address: j.address.clone(),
        fingerprint,
        auth,
        link0: j.link0.clone(),
        link1: j.link1.clone(),
    };
    req.validate().map_err(|e| anyhow!("{e}"))?;
    let c = local_client(&j).await?;
    let a = c
        .call(Method::POST, &["cluster", "local-join"], &[], Some(&req))
        .await?;
    let r: TaskRef = typed(a.clone())?;
    let node = local_node(&r.upid);
    if mode.no_wait {
        return task_outcome(&c, &node, a, mode).await;
    }
    // The local API swaps to its CA-signed certificate at the end of the join: on a handshake
    // failure, reconnect with the fingerprint hostd wrote and keep following the task.
    let (info, raw) = match task::wait(&c, &node, &r.upid, mode.json).await {
        Ok(x) => x,
        Err(_) => {
            let c2 = local_client(&j).await?;
            task::wait(&c2, &node, &r.upid, mode.json).await?
        }
    };
    task::conclude(&info, &raw, mode.json)?;
    if !mode.json {
        let fp = read_trim(&j.state_dir.join("hostd.fingerprint")).unwrap_or_default();
        println!("joined; this node's API certificate fingerprint is now {fp}");
    }
    Ok(Outcome::Done)
}

/// `ADDRESS/PREFIX` shape only (the server checks members, interfaces and address kinds).
fn check_vip_shape(address: &str) -> Result<()> {
    let (a, p) = address
        .trim()
        .split_once('/')
        .ok_or_else(|| anyhow!("{address:?}: write ADDRESS/PREFIX, e.g. 192.0.2.10/24"))?;
    a.parse::<std::net::IpAddr>()
        .map_err(|_| anyhow!("{a:?} is not an IPv4 or IPv6 address"))?;
    p.parse::<u8>()
        .map_err(|_| anyhow!("prefix {p:?} is not a number"))?;
    Ok(())
}

fn output_vip(v: VipStatus) {
    match v.address {
        None => println!("no floating management address (keel cluster vip set ADDRESS/PREFIX)"),
        Some(a) => {
            println!("address     {a}");
            println!("url         {}", v.url.unwrap_or_default());
            println!(
                "running on  {}{}",
                v.running_on.as_deref().unwrap_or("(not running)"),
                if v.failed {
                    "  (failed actions: see keel cluster status)"
                } else {
                    ""
                }
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn daemon_and_store_lines_say_what_is_down() {
        use keel_api::cluster::{DaemonExit, DaemonRunState, DaemonStatus, StoreState};
        let d = DaemonStatus {
            name: "keel-clusterd".into(),
            state: DaemonRunState::Restarting,
            pid: None,
            since: None,
            restarts: 2,
            last_exit: Some(DaemonExit {
                at: None,
                status: "killed by signal 9 (SIGKILL)".into(),
                pid: Some(42),
            }),
            next_attempt: None,
            message: Some("died; restart in 4 s".into()),
            manager: "direct".into(),
        };
        assert_eq!(
            daemon_line(&d),
            "keel-clusterd  RESTARTING, 2 restart(s), last exit: killed by signal 9 (SIGKILL) — died; restart in 4 s"
        );
        let st = StoreState {
            reachable: false,
            error: Some("connecting to /run/keel/clusterd.sock: refused".into()),
            writable: false,
            read_only_reason: None,
            held: None,
            version: None,
            syncing: false,
            members: vec![],
            entries: None,
        };
        assert_eq!(
            store_line(&st),
            "UNREACHABLE on this node: connecting to /run/keel/clusterd.sock: refused"
        );
    }

    #[test]
    fn secrets_from_a_file_stdin_or_inline() {
        let dir = std::env::temp_dir().join(format!("keel-cli-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        let mut input: &[u8] = b"from-stdin\n";
        let out = secret_values(
            m(&[
                ("password", &format!("@{}", f.display())),
                ("token", "-"),
                ("other", "inline"),
            ]),
            &mut input,
        )
        .unwrap();
        assert_eq!(out["password"], "s3cret");
        assert_eq!(out["token"], "from-stdin");
        assert_eq!(out["other"], "inline");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_errors_say_what_to_do() {
        let mut input: &[u8] = b"a\nb\n";
        let e = secret_values(m(&[("a", "-"), ("b", "-")]), &mut input)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use @FILE"), "{e}");
        let mut empty: &[u8] = b"";
        let e = secret_values(m(&[("password", "-")]), &mut empty)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        let e = secret_values(m(&[("password", "@/nonexistent/keel")]), &mut empty)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read /nonexistent/keel"), "{e}");
    }
}
