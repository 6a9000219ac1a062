//! `keel storage pool create|delete` and `keel storage status`: cluster pools (`drbd-gfs2`)
//! and their health on every node (docs/storage.md).

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use keel_api::cluster_storage::{ClusterPoolCreate, ClusterPoolKind, ClusterPoolStatus};
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
}

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Create a cluster pool from a disk of each node, as one task (every node's fencing must
    /// have passed a test: keel fence test NODE --yes)
    Create {
        name: String,
        #[arg(long = "type", value_enum)]
        kind: Kind,
        /// The block device on each node (the same name on both), e.g. /dev/vdb
        #[arg(long)]
        device: String,
        /// Erase the devices' partition table, file system or LVM/DRBD signatures first
        /// (without it such a device is refused; a mounted one always is)
        #[arg(long)]
        wipe: bool,
    },
    /// Delete a cluster pool (refused while it holds VM disks)
    #[command(visible_alias = "rm")]
    Delete { name: String },
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

fn print_status(v: Vec<ClusterPoolStatus>) {
    if v.is_empty() {
        println!(
            "no cluster pools (keel storage pool create NAME --type drbd-gfs2 --device /dev/…)"
        );
        return;
    }
    for p in v {
        println!("{}  drbd-gfs2  {}  {}", p.name, p.path, p.state);
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
            wipe,
        } => {
            let body = ClusterPoolCreate {
                name,
                kind: match kind {
                    Kind::DrbdGfs2 => ClusterPoolKind::DrbdGfs2,
                },
                device,
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
