//! `keel storage pool create|delete` and `keel storage status`: cluster pools (`drbd-gfs2`,
//! `iscsi-gfs2`) and their health on every node (docs/storage.md).

use anyhow::Result;
use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use keel_api::cluster_storage::{
    ClusterPoolCreate, ClusterPoolKind, ClusterPoolStatus, IscsiLunSpec, SplitBrainResolve,
};
use reqwest::Method;

use crate::client::Client;
use crate::output::bytes;
use crate::task::Mode;
use crate::{show, task_outcome, Outcome};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// DRBD between exactly two nodes, shared LVM under lvmlockd, GFS2 mounted on both
    #[value(name = "drbd-gfs2")]
    DrbdGfs2,
    /// One iSCSI LUN logged in on every node (two or more), shared LVM, GFS2 on every node
    #[value(name = "iscsi-gfs2")]
    IscsiGfs2,
}

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Create a cluster pool from a disk of each node, as one task (every node's fencing must
    /// have passed a test: keel fence test NODE --yes)
    Create {
        name: String,
        #[arg(long = "type", value_enum)]
        kind: Kind,
        /// drbd-gfs2: the block device on each node (the same name on both), e.g. /dev/vdb
        #[arg(long)]
        device: Option<String>,
        /// iscsi-gfs2: the target's portal, ADDRESS[:PORT] (port 3260 by default)
        #[arg(long)]
        portal: Option<String>,
        /// iscsi-gfs2: the target's IQN
        #[arg(long)]
        target: Option<String>,
        /// iscsi-gfs2: the LUN number
        #[arg(long, default_value_t = 0)]
        lun: u32,
        /// iscsi-gfs2: the CHAP user name
        #[arg(long)]
        chap_user: Option<String>,
        /// iscsi-gfs2: a file holding the CHAP secret ('-' reads it from standard input; the
        /// secret is never taken on the command line)
        #[arg(long, value_name = "FILE")]
        chap_secret_file: Option<String>,
        /// Erase the devices' (or the LUN's) partition table, file system or LVM/DRBD
        /// signatures first (without it such a device is refused; a mounted one always is)
        #[arg(long)]
        wipe: bool,
    },
    /// Delete a cluster pool (refused while it holds VM disks)
    #[command(visible_alias = "rm")]
    Delete { name: String },
    /// Resolve a drbd-gfs2 pool's split brain: NODE's changes since the split are discarded
    /// and the other node's data is copied over them (stop or move the VMs on NODE first)
    ResolveSplitBrain {
        name: String,
        /// The node whose changes since the split are thrown away
        #[arg(long, value_name = "NODE")]
        discard: String,
        /// Confirm: the discarded changes cannot be recovered
        #[arg(long)]
        yes: bool,
    },
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

/// The CHAP secret from a file or stdin, without its final newline.
fn read_secret(path: &str) -> Result<String> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading the CHAP secret from standard input")?;
        s
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the CHAP secret from {path}"))?
    };
    let s = text.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        bail!("the CHAP secret in {path} is empty");
    }
    Ok(s)
}

fn print_iscsi_status(p: ClusterPoolStatus) {
    if let Some(l) = &p.iscsi {
        println!(
            "{}  iscsi-gfs2  {}  {}  (LUN {} of {} at {}, CHAP user {})",
            p.name, p.path, p.state, l.lun, l.target, l.portal, l.chap_user
        );
    } else {
        println!("{}  iscsi-gfs2  {}  {}", p.name, p.path, p.state);
    }
    print_notes(&p);
    println!(
        "    {:<10} {:<10} {:<7} {:>9} {:>9}",
        "NODE", "SESSION", "MOUNTED", "SIZE", "FREE"
    );
    for n in p.nodes {
        if let Some(e) = &n.error {
            println!("    {:<10} not answering: {e}", n.node);
            continue;
        }
        println!(
            "    {:<10} {:<10} {:<7} {:>9} {:>9}",
            n.node,
            match n.logged_in {
                Some(true) => "logged-in",
                Some(false) => "NONE",
                None => "-",
            },
            if n.mounted { "yes" } else { "no" },
            n.size_bytes.map(bytes).unwrap_or_else(|| "-".into()),
            n.free_bytes.map(bytes).unwrap_or_else(|| "-".into()),
        );
    }
}

fn print_notes(p: &ClusterPoolStatus) {
    for n in &p.notes {
        println!("    note: {n}");
    }
}

fn split_brain_hint(p: &ClusterPoolStatus) {
    let split: Vec<&str> = p
        .nodes
        .iter()
        .filter(|n| n.split_brain)
        .map(|n| n.node.as_str())
        .collect();
    if !split.is_empty() {
        println!(
            "    SPLIT BRAIN reported by {}: both nodes changed the pool while apart. Decide whose \
             changes to discard, then: keel storage pool resolve-split-brain {} --discard NODE --yes",
            split.join(", "),
            p.name
        );
    }
}

fn print_status(v: Vec<ClusterPoolStatus>) {
    if v.is_empty() {
        println!(
            "no cluster pools (keel storage pool create NAME --type drbd-gfs2 --device /dev/…, \
             or --type iscsi-gfs2 --portal … --target … --chap-user … --chap-secret-file …)"
        );
        return;
    }
    for p in v {
        if p.kind == ClusterPoolKind::IscsiGfs2 {
            print_iscsi_status(p);
            continue;
        }
        println!("{}  drbd-gfs2  {}  {}", p.name, p.path, p.state);
        split_brain_hint(&p);
        print_notes(&p);
        println!(
            "    {:<10} {:<12} {:<12} {:<18} {:<22} {:<7} {:>9} {:>9}",
            "NODE", "DEVICE", "CONNECTION", "ROLE", "DISK", "MOUNTED", "SIZE", "FREE"
        );
        for n in p.nodes {
            if let Some(e) = &n.error {
                println!("    {:<10} {:<12} not answering: {e}", n.node, n.device);
                continue;
            }
            let mut conn = opt(&n.connection).to_string();
            if n.split_brain {
                conn = format!("{conn} SPLIT-BRAIN");
            }
            if let Some(pct) = n.sync_percent {
                conn = format!("{conn} {pct:.1}%");
            }
            println!(
                "    {:<10} {:<12} {:<12} {:<18} {:<22} {:<7} {:>9} {:>9}",
                n.node,
                n.device,
                conn,
                format!("{}/{}", opt(&n.role), opt(&n.peer_role)),
                format!("{}/{}", opt(&n.disk), opt(&n.peer_disk)),
                if n.mounted { "yes" } else { "no" },
                n.size_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                n.free_bytes.map(bytes).unwrap_or_else(|| "-".into()),
            );
        }
    }
}

/// `keel storage status`.
pub async fn status(c: &Client, json: bool) -> Result<Outcome> {
    show(
        c.get(&["cluster", "storage-pools"], &[]).await?,
        json,
        print_status,
    )?;
    Ok(Outcome::Done)
}

/// `keel storage pool …`.
pub async fn pool(c: &Client, node: &str, cmd: PoolCmd, mode: Mode) -> Result<Outcome> {
    let a = match cmd {
        PoolCmd::Create {
            name,
            kind,
            device,
            portal,
            target,
            lun,
            chap_user,
            chap_secret_file,
            wipe,
        } => {
            let iscsi = match kind {
                Kind::DrbdGfs2 => {
                    if portal.is_some() || target.is_some() || chap_user.is_some() {
                        bail!("--portal, --target and --chap-user are for --type iscsi-gfs2");
                    }
                    None
                }
                Kind::IscsiGfs2 => {
                    let need = |v: Option<String>, flag: &str| {
                        v.ok_or_else(|| anyhow::anyhow!("--type iscsi-gfs2 needs {flag}"))
                    };
                    let secret_file = need(chap_secret_file, "--chap-secret-file FILE")?;
                    Some(IscsiLunSpec {
                        portal: need(portal, "--portal ADDRESS[:PORT]")?,
                        target: need(target, "--target IQN")?,
                        lun,
                        chap_user: need(chap_user, "--chap-user USER")?,
                        chap_secret: read_secret(&secret_file)?,
                    })
                }
            };
            let body = ClusterPoolCreate {
                name,
                kind: match kind {
                    Kind::DrbdGfs2 => ClusterPoolKind::DrbdGfs2,
                    Kind::IscsiGfs2 => ClusterPoolKind::IscsiGfs2,
                },
                device,
                iscsi,
                wipe,
            };
            c.call(
                Method::POST,
                &["cluster", "storage-pools"],
                &[],
                Some(&body),
            )
            .await?
        }
        PoolCmd::ResolveSplitBrain { name, discard, yes } => {
            if !yes {
                bail!(
                    "`keel storage pool resolve-split-brain {name} --discard {discard}` throws \
                     away every change made on {discard} since the split (its copy of {name} is \
                     overwritten with the other node's): add --yes to confirm"
                );
            }
            c.call(
                Method::POST,
                &["cluster", "storage-pools", &name, "resolve-split-brain"],
                &[],
                Some(&SplitBrainResolve { discard }),
            )
            .await?
        }
        PoolCmd::Delete { name } => {
            c.call::<()>(
                Method::DELETE,
                &["cluster", "storage-pools", &name],
                &[],
                None,
            )
            .await?
        }
    };
    task_outcome(c, node, a, mode).await
}
