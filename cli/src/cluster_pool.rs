//! `keel storage pool create|delete` and `keel storage status`: cluster pools (`drbd-gfs2`,
//! `iscsi-gfs2`, `iscsi-lvm`) and their health on every node, and node-local pools (`dir`, `lvm-thin`)
//! (docs/storage.md).

use anyhow::Result;
use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use keel_api::cluster_storage::{
    ClusterPoolCreate, ClusterPoolExtend, ClusterPoolKind, ClusterPoolStatus, IscsiLunSpec,
    SplitBrainResolve,
};
use keel_api::storage::{LocalPoolCreate, LocalPoolKind};
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
    /// One iSCSI LUN logged in on every node (two or more), shared LVM: each VM disk a raw LV,
    /// active on the one node that runs its VM
    #[value(name = "iscsi-lvm")]
    IscsiLvm,
    /// This node only: a directory that exists (e.g. a data disk's mount point)
    #[value(name = "dir")]
    Dir,
    /// This node only: a thin pool in one of its LVM volume groups (raw disks, allocated as
    /// guests write)
    #[value(name = "lvm-thin")]
    LvmThin,
}

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Create a pool as one task: a cluster pool from a disk of each node (every node's
    /// fencing must have passed a test: keel fence test NODE --yes), or a node-local one
    /// (dir, lvm-thin) on the node --node names
    Create {
        name: String,
        #[arg(long = "type", value_enum)]
        kind: Kind,
        /// dir: the directory (it must exist), e.g. /srv/vmdata
        #[arg(long)]
        path: Option<String>,
        /// lvm-thin: the volume group, e.g. keel (the installer's)
        #[arg(long)]
        vg: Option<String>,
        /// lvm-thin: the thin pool's size, in MiB or with a unit (200G), or a percentage of the
        /// volume group's free space (50%) [default: 90%]
        #[arg(long)]
        size: Option<String>,
        /// drbd-gfs2: the block device on each node (the same name on both), e.g. /dev/vdb
        #[arg(long)]
        device: Option<String>,
        /// iscsi-gfs2, iscsi-lvm: the target's portal, ADDRESS[:PORT] (port 3260 by default)
        #[arg(long)]
        portal: Option<String>,
        /// iscsi-gfs2, iscsi-lvm: the target's IQN
        #[arg(long)]
        target: Option<String>,
        /// iscsi-gfs2, iscsi-lvm: the LUN number
        #[arg(long, default_value_t = 0)]
        lun: u32,
        /// iscsi-gfs2, iscsi-lvm: the CHAP user name
        #[arg(long)]
        chap_user: Option<String>,
        /// iscsi-gfs2, iscsi-lvm: a file holding the CHAP secret ('-' reads it from standard input; the
        /// secret is never taken on the command line)
        #[arg(long, value_name = "FILE")]
        chap_secret_file: Option<String>,
        /// Erase the devices' (or the LUN's) partition table, file system or LVM/DRBD
        /// signatures first (without it such a device is refused; a mounted one always is)
        #[arg(long)]
        wipe: bool,
    },
    /// Delete a pool: a cluster pool, or a node-local one (refused while it holds volumes; a
    /// dir pool's directory stays)
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
    /// Extend an iscsi-gfs2 or iscsi-lvm pool to nodes that joined the cluster after it was
    /// made: login with the pool's CHAP secret, LVM filter, lock space, a GFS2 journal when no
    /// spare is left, Pacemaker's mount there (run on a node of the pool; each new node must
    /// have passed a fence test and be allowed by the target's ACL)
    Extend {
        name: String,
        /// The nodes to add; none: every member the pool does not reach
        #[arg(value_name = "NODE")]
        nodes: Vec<String>,
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
    let kind = p.kind.as_str();
    let lvm = p.kind == ClusterPoolKind::IscsiLvm;
    if let Some(l) = &p.iscsi {
        println!(
            "{}  {kind}  {}  {}  (LUN {} of {} at {}, CHAP user {})",
            p.name, p.path, p.state, l.lun, l.target, l.portal, l.chap_user
        );
    } else {
        println!("{}  {kind}  {}  {}", p.name, p.path, p.state);
    }
    print_notes(&p);
    println!(
        "    {:<10} {:<10} {:<9} {:>9} {:>9}",
        "NODE",
        "SESSION",
        if lvm { "LOCKSPACE" } else { "MOUNTED" },
        "SIZE",
        "FREE"
    );
    for n in p.nodes {
        if let Some(e) = &n.error {
            println!("    {:<10} not answering: {e}", n.node);
            continue;
        }
        println!(
            "    {:<10} {:<10} {:<9} {:>9} {:>9}",
            n.node,
            match n.logged_in {
                Some(true) => "logged-in",
                Some(false) => "NONE",
                None => "-",
            },
            match (lvm, n.lockspace, n.mounted) {
                (true, Some(true), _) => "joined",
                // a node joins when it first starts or changes a disk (after a reboot)
                (true, _, _) => "not-yet",
                (false, _, true) => "yes",
                (false, _, false) => "no",
            },
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
             or --type iscsi-gfs2|iscsi-lvm --portal … --target … --chap-user … \
             --chap-secret-file …)"
        );
        return;
    }
    for p in v {
        if p.kind.is_iscsi() {
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
            path,
            vg,
            size,
        } => {
            if matches!(kind, Kind::Dir | Kind::LvmThin) {
                if device.is_some() || portal.is_some() || target.is_some() || wipe {
                    bail!("--device, --portal, --target and --wipe are for cluster pools; a {} pool takes {}",
                        if kind == Kind::Dir { "dir" } else { "lvm-thin" },
                        if kind == Kind::Dir { "--path" } else { "--vg and --size" });
                }
                let (size_mib, size_percent) = match size.as_deref() {
                    None => (None, None),
                    Some(s) => match s.strip_suffix('%') {
                        Some(p) => (
                            None,
                            Some(p.trim().parse::<u8>().map_err(|_| {
                                anyhow::anyhow!("--size {s}: a percentage is 1% to 95%")
                            })?),
                        ),
                        None => (
                            Some(crate::spec::parse_size_mib(s).map_err(anyhow::Error::msg)?),
                            None,
                        ),
                    },
                };
                let body = LocalPoolCreate {
                    name,
                    kind: if kind == Kind::Dir {
                        LocalPoolKind::Dir
                    } else {
                        LocalPoolKind::LvmThin
                    },
                    path,
                    vg,
                    size_mib,
                    size_percent,
                };
                let a = c
                    .call(Method::POST, &["nodes", node, "storage"], &[], Some(&body))
                    .await?;
                return task_outcome(c, node, a, mode).await;
            }
            if path.is_some() || vg.is_some() || size.is_some() {
                bail!("--path, --vg and --size are for node-local pools (--type dir, lvm-thin)");
            }
            let iscsi = match kind {
                Kind::Dir | Kind::LvmThin => None,
                Kind::DrbdGfs2 => {
                    if portal.is_some() || target.is_some() || chap_user.is_some() {
                        bail!(
                            "--portal, --target and --chap-user are for --type iscsi-gfs2 and \
                             iscsi-lvm"
                        );
                    }
                    None
                }
                Kind::IscsiGfs2 | Kind::IscsiLvm => {
                    let t = if kind == Kind::IscsiLvm {
                        "iscsi-lvm"
                    } else {
                        "iscsi-gfs2"
                    };
                    let need = |v: Option<String>, flag: &str| {
                        v.ok_or_else(|| anyhow::anyhow!("--type {t} needs {flag}"))
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
                    Kind::IscsiLvm => ClusterPoolKind::IscsiLvm,
                    _ => ClusterPoolKind::IscsiGfs2,
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
        PoolCmd::Extend { name, nodes } => {
            c.call(
                Method::POST,
                &["cluster", "storage-pools", &name, "extend"],
                &[],
                Some(&ClusterPoolExtend { nodes }),
            )
            .await?
        }
        PoolCmd::Delete { name } => {
            // a cluster pool when the cluster has one of that name; else this node's own
            let cluster = c
                .get(&["cluster", "storage-pools"], &[])
                .await
                .ok()
                .and_then(|v| serde_json::from_value::<Vec<ClusterPoolStatus>>(v).ok())
                .is_some_and(|v| v.iter().any(|p| p.name == name));
            let segs: Vec<&str> = if cluster {
                vec!["cluster", "storage-pools", &name]
            } else {
                vec!["nodes", node, "storage", &name]
            };
            c.call::<()>(Method::DELETE, &segs, &[], None).await?
        }
    };
    task_outcome(c, node, a, mode).await
}
