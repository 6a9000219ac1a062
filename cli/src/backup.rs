//! `keel backup …`: backup targets, backup now, list, verify, restore (docs/backups.md).

use anyhow::Result;
use clap::Subcommand;
use keel_api::backup::{
    BackupCreate, BackupInfo, BackupJob, BackupJobConfig, BackupKind, BackupTarget,
    BackupTargetCreate, KeepPolicy, PruneEntry, PruneRequest, PruneResult, RestoreRequest,
};
use reqwest::Method;

use crate::client::Client;
use crate::task::Mode;
use crate::{output, show, task_outcome, Outcome};

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Backup targets: where backups are kept
    #[command(subcommand)]
    Target(TargetCmd),
    /// Back a VM up now: live when it runs (incremental when its chain on the target is
    /// whole), a copy of its disks when it is stopped
    Create {
        vmid: u32,
        /// The target's name
        #[arg(long)]
        target: String,
        /// A full backup even when an incremental is possible
        #[arg(long)]
        full: bool,
    },
    /// A VM's backups (id, time, kind, size, parent, verify state)
    List {
        vmid: u32,
        /// Only this target [default: every target]
        #[arg(long)]
        target: Option<String>,
    },
    /// Re-read a backup and its chain, compare every file with its manifest's SHA-256
    Verify {
        vmid: u32,
        /// The backup's id (`keel backup list` shows them)
        backup: String,
        /// The target holding it
        #[arg(long)]
        target: String,
    },
    /// Restore a backup (any point of a chain) into a new VM (--new-vmid), or over the
    /// backed-up VM itself (--replace: stopped, no snapshots, not HA; its disks are replaced)
    Restore {
        /// The backed-up VM
        vmid: u32,
        /// The backup's id: any point of a chain
        backup: String,
        /// The target holding it
        #[arg(long)]
        target: String,
        /// The new VM's id
        #[arg(long = "new-vmid", required_unless_present = "replace")]
        new_vmid: Option<u32>,
        /// The pool the disks are created in
        #[arg(long)]
        pool: String,
        /// The new VM's name [default: <name>-restore-<new vmid>]
        #[arg(long)]
        name: Option<String>,
        /// Start it once restored
        #[arg(long)]
        start: bool,
        /// Restore over the backed-up VM itself: its configuration and disks become the
        /// backup's (new disks are written before the old ones are removed)
        #[arg(long, conflicts_with_all = ["new_vmid", "name"])]
        replace: bool,
    },
    /// Remove a VM's backups on a target that a retention policy does not keep (a kept
    /// incremental keeps its whole chain)
    Prune {
        vmid: u32,
        /// The target holding the backups
        #[arg(long)]
        target: String,
        #[command(flatten)]
        keep: KeepArgs,
        /// Only show what would be kept and removed, and why
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Backup jobs: scheduled backups of VMs with retention
    #[command(subcommand)]
    Job(JobCmd),
    /// Delete one backup (refused while incrementals depend on it)
    Delete {
        vmid: u32,
        /// The backup's id
        backup: String,
        /// The target holding it
        #[arg(long)]
        target: String,
    },
}

/// A retention policy on the command line (docs/backups.md, "Retention").
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeepArgs {
    /// Keep the newest N backups
    #[arg(long = "keep-last")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one
    #[arg(long = "keep-hourly")]
    pub keep_hourly: Option<u32>,
    /// … of each of the last N days (local time)
    #[arg(long = "keep-daily")]
    pub keep_daily: Option<u32>,
    /// … of each of the last N ISO weeks
    #[arg(long = "keep-weekly")]
    pub keep_weekly: Option<u32>,
    /// … of each of the last N months
    #[arg(long = "keep-monthly")]
    pub keep_monthly: Option<u32>,
    /// … of each of the last N years
    #[arg(long = "keep-yearly")]
    pub keep_yearly: Option<u32>,
}

impl KeepArgs {
    pub fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
        }
    }
}

fn prune_table(r: &PruneResult) {
    println!(
        "{:<22} {:<7} {:<19} {:<11} REASON",
        "ID", "ACTION", "TIME (UTC)", "KIND"
    );
    let mut rows: Vec<(&PruneEntry, &str)> = r
        .kept
        .iter()
        .map(|e| (e, "keep"))
        .chain(r.removed.iter().map(|e| (e, "remove")))
        .collect();
    rows.sort_by(|a, b| (b.0.start_time, &b.0.id).cmp(&(a.0.start_time, &a.0.id)));
    for (e, a) in rows {
        println!(
            "{:<22} {:<7} {:<19} {:<11} {}",
            e.id,
            a,
            output::time(e.start_time),
            match e.kind {
                BackupKind::Full => "full",
                BackupKind::Incremental => "incremental",
            },
            e.reason
        );
    }
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Define a job
    Add {
        /// The job's id (letters, digits, '-', '_')
        id: String,
        /// The VMs, comma-separated (or --all)
        #[arg(long, value_delimiter = ',')]
        vms: Vec<u32>,
        /// Every VM of the node at each run
        #[arg(long)]
        all: bool,
        /// The target's name
        #[arg(long)]
        target: String,
        /// When: daily, hourly, weekly, monthly, "sat 02:30", "mon..fri 21:00", "*:0/15"
        /// (local time; docs/backups.md)
        #[arg(long)]
        schedule: String,
        /// A full backup every N runs
        #[arg(long = "full-every")]
        full_every: Option<u32>,
        #[command(flatten)]
        keep: KeepArgs,
        /// Defined but not run on schedule
        #[arg(long)]
        disabled: bool,
        /// A verify job: makes no backups, re-reads and checks every stored file of the VMs'
        /// backups on the target at each run
        #[arg(long, conflicts_with = "full_every")]
        verify: bool,
    },
    /// The node's jobs with their next and last run
    List,
    /// Change a job (only the options given)
    Set {
        id: String,
        #[arg(long, value_delimiter = ',')]
        vms: Option<Vec<u32>>,
        /// Every VM of the node at each run
        #[arg(long)]
        all: bool,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long = "full-every")]
        full_every: Option<u32>,
        /// Replaces the retention policy when any keep option is given
        #[command(flatten)]
        keep: KeepArgs,
        /// Keep every backup (drop the retention policy)
        #[arg(long = "no-retention")]
        no_retention: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Remove a job (its backups stay)
    Remove { id: String },
    /// Run a job now and follow its task
    Run { id: String },
}

fn jobs_table(js: &[BackupJob]) {
    println!(
        "{:<16} {:<16} {:<10} {:<18} {:<8} {:<19} LAST RUN (THIS NODE)",
        "ID", "VMS", "TARGET", "SCHEDULE", "ENABLED", "NEXT RUN (UTC)"
    );
    for j in js {
        let c = &j.config;
        let vms = if c.all_vms {
            "all".to_string()
        } else {
            c.vms
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let last = match &j.last_run {
            Some(r) => format!("{} {}", output::time(r.time), r.state),
            None => "-".into(),
        };
        let id = if c.mode == keel_api::backup::JobMode::Verify {
            format!("{} (verify)", c.id)
        } else {
            c.id.clone()
        };
        println!(
            "{:<16} {:<16} {:<10} {:<18} {:<8} {:<19} {}",
            id,
            vms,
            c.target,
            c.schedule,
            if c.enabled { "yes" } else { "no" },
            j.next_run.map(output::time).unwrap_or_else(|| "-".into()),
            last
        );
        // a cluster job: every node's last run below (each backs up the VMs it holds)
        for r in &j.node_runs {
            println!(
                "{:<16} {}: {} {} ({})",
                "",
                r.node,
                output::time(r.time),
                r.state,
                r.upid
            );
            if let Some(m) = r.message.as_ref().filter(|_| r.state == "error") {
                println!("{:<16}   -> {m}", "");
            }
        }
        if !j.node_runs.is_empty() {
            continue;
        }
        if let Some(m) = j.last_run.as_ref().and_then(|r| r.message.as_ref()) {
            if j.last_run.as_ref().is_some_and(|r| r.state == "error") {
                println!("{:<16} -> {m}", "");
            }
        }
    }
}

fn keep_given(k: &KeepArgs) -> bool {
    [
        k.keep_last,
        k.keep_hourly,
        k.keep_daily,
        k.keep_weekly,
        k.keep_monthly,
        k.keep_yearly,
    ]
    .iter()
    .any(Option::is_some)
}

async fn job(c: &Client, node: &str, cmd: JobCmd, mode: Mode) -> Result<Outcome> {
    let json = mode.json;
    match cmd {
        JobCmd::List => show(
            c.get(&["nodes", node, "backup-jobs"], &[]).await?,
            json,
            |j: Vec<BackupJob>| jobs_table(&j),
        )?,
        JobCmd::Add {
            id,
            vms,
            all,
            target,
            schedule,
            full_every,
            keep,
            disabled,
            verify,
        } => {
            let body = BackupJobConfig {
                id,
                vms,
                all_vms: all,
                target,
                schedule,
                full_every,
                retention: keep_given(&keep).then(|| keep.policy()),
                enabled: !disabled,
                mode: if verify {
                    keel_api::backup::JobMode::Verify
                } else {
                    keel_api::backup::JobMode::Backup
                },
            };
            let v = c
                .call(
                    Method::POST,
                    &["nodes", node, "backup-jobs"],
                    &[],
                    Some(&body),
                )
                .await?;
            show(v, json, |j: BackupJob| jobs_table(&[j]))?;
        }
        JobCmd::Set {
            id,
            vms,
            all,
            target,
            schedule,
            full_every,
            keep,
            no_retention,
            enable,
            disable,
        } => {
            let cur: BackupJob =
                crate::client::typed(c.get(&["nodes", node, "backup-jobs", &id], &[]).await?)?;
            let mut cfg = cur.config;
            if let Some(v) = vms {
                cfg.vms = v;
                cfg.all_vms = false;
            }
            if all {
                cfg.vms.clear();
                cfg.all_vms = true;
            }
            if let Some(t) = target {
                cfg.target = t;
            }
            if let Some(s) = schedule {
                cfg.schedule = s;
            }
            if full_every.is_some() {
                cfg.full_every = full_every;
            }
            if no_retention {
                cfg.retention = None;
            } else if keep_given(&keep) {
                cfg.retention = Some(keep.policy());
            }
            if enable {
                cfg.enabled = true;
            }
            if disable {
                cfg.enabled = false;
            }
            let v = c
                .call(
                    Method::PUT,
                    &["nodes", node, "backup-jobs", &id],
                    &[],
                    Some(&cfg),
                )
                .await?;
            show(v, json, |j: BackupJob| jobs_table(&[j]))?;
        }
        JobCmd::Remove { id } => {
            c.call::<()>(
                Method::DELETE,
                &["nodes", node, "backup-jobs", &id],
                &[],
                None,
            )
            .await?;
            if !json {
                println!("backup job {id} removed (its backups stay)");
            }
        }
        JobCmd::Run { id } => {
            let a = c
                .call::<()>(
                    Method::POST,
                    &["nodes", node, "backup-jobs", &id, "run"],
                    &[],
                    None,
                )
                .await?;
            return task_outcome(c, node, a, mode).await;
        }
    }
    Ok(Outcome::Done)
}

#[derive(Subcommand, Debug)]
pub enum TargetCmd {
    /// Add a target: `--path DIR` (a directory on the node), `--sftp user@host[:port]:/path
    /// --key FILE` (a remote host over SSH; its host key is pinned now) or `--nfs
    /// server:/export` (an NFS export every node mounts itself)
    Add {
        name: String,
        /// Absolute path of an existing, writable directory on the node
        #[arg(long, required_unless_present_any = ["sftp", "nfs"], conflicts_with_all = ["sftp", "nfs"])]
        path: Option<String>,
        /// A directory on a remote host over SSH/SFTP: user@host[:port]:/path
        #[arg(long, requires = "key", conflicts_with = "nfs")]
        sftp: Option<String>,
        /// An NFS export, server:/path, mounted by each node at /run/keel/backup-nfs/NAME
        /// (root on the nodes must be able to write there: rw,no_root_squash)
        #[arg(long)]
        nfs: Option<String>,
        /// Extra NFS mount options, comma-separated (e.g. vers=4.2,nconnect=4)
        #[arg(long, requires = "nfs")]
        mount_options: Option<String>,
        /// The private key file on the node that hostd authenticates with (mode 0600)
        #[arg(long)]
        key: Option<String>,
        /// The host key's SHA256:… fingerprint (as `ssh-keygen -lf` prints it on the
        /// host); without it the key the host presents now is pinned and shown
        #[arg(long, requires = "sftp")]
        host_key_fingerprint: Option<String>,
    },
    /// The node's targets with free space and whether each is usable
    List,
    /// Forget a target (its backups stay in the directory)
    Remove { name: String },
}

/// The key file as hostd (on this machine or another) must read it: relative paths are
/// made absolute against the current directory.
fn absolute(p: &str) -> String {
    if p.starts_with('/') {
        return p.to_string();
    }
    std::env::current_dir()
        .map(|d| d.join(p).display().to_string())
        .unwrap_or_else(|_| p.to_string())
}

fn targets_table(ts: &[BackupTarget]) {
    println!(
        "{:<16} {:<5} {:<10} {:>10} {:>10} PATH",
        "NAME", "KIND", "STATE", "FREE", "SIZE"
    );
    for t in ts {
        println!(
            "{:<16} {:<5} {:<10} {:>10} {:>10} {}",
            t.name,
            t.kind,
            if t.ok { "ok" } else { "unusable" },
            output::bytes(t.available),
            output::bytes(t.total),
            match &t.export {
                Some(e) => format!("{e} (mounted at {})", t.path),
                None => t.path.clone(),
            }
        );
        if let Some(e) = &t.error {
            println!("{:<16} -> {e}", "");
        }
    }
}

fn backups_table(bs: &[BackupInfo]) {
    println!(
        "{:<22} {:<10} {:<19} {:<11} {:>10} {:<22} VERIFY",
        "ID", "TARGET", "TIME (UTC)", "KIND", "SIZE", "PARENT"
    );
    for b in bs {
        println!(
            "{:<22} {:<10} {:<19} {:<11} {:>10} {:<22} {}",
            b.id,
            b.target,
            output::time(b.start_time),
            match b.kind {
                BackupKind::Full => "full",
                BackupKind::Incremental => "incremental",
            },
            output::bytes(b.size),
            b.parent.as_deref().unwrap_or("-"),
            b.verify_state
        );
        if let Some(e) = &b.verify_error {
            println!("{:<22} -> {e}", "");
        }
    }
}

pub async fn backup(c: &Client, cmd: BackupCmd, mode: Mode) -> Result<Outcome> {
    let node = c.node().await?.to_string();
    let node = node.as_str();
    let json = mode.json;
    match cmd {
        BackupCmd::Target(TargetCmd::List) => show(
            c.get(&["nodes", node, "backup-targets"], &[]).await?,
            json,
            |t: Vec<BackupTarget>| targets_table(&t),
        )?,
        BackupCmd::Target(TargetCmd::Add {
            name,
            path,
            sftp,
            key,
            host_key_fingerprint,
            nfs,
            mount_options,
        }) => {
            let body = match (sftp, nfs) {
                (Some(loc), _) => BackupTargetCreate {
                    name,
                    kind: "sftp".into(),
                    path: loc,
                    key_file: key.map(|k| absolute(&k)),
                    host_key_fingerprint,
                    // given anyway (clap's `requires` does not hold next to conflicts_with):
                    // hostd refuses it with a 400 rather than it being dropped unseen
                    mount_options,
                },
                (None, Some(export)) => BackupTargetCreate {
                    name,
                    kind: "nfs".into(),
                    path: export,
                    key_file: None,
                    host_key_fingerprint: None,
                    mount_options,
                },
                (None, None) => BackupTargetCreate {
                    name,
                    kind: "dir".into(),
                    path: path.unwrap_or_default(),
                    key_file: None,
                    host_key_fingerprint: None,
                    mount_options,
                },
            };
            let v = c
                .call(
                    Method::POST,
                    &["nodes", node, "backup-targets"],
                    &[],
                    Some(&body),
                )
                .await?;
            show(v, json, |t: BackupTarget| {
                targets_table(std::slice::from_ref(&t));
                if let Some(fp) = &t.host_key_fingerprint {
                    println!(
                        "host key pinned: {fp} (compare it with `ssh-keygen -lf` on the host; a host presenting another key is refused)"
                    );
                }
            })?;
        }
        BackupCmd::Target(TargetCmd::Remove { name }) => {
            c.call::<()>(
                Method::DELETE,
                &["nodes", node, "backup-targets", &name],
                &[],
                None,
            )
            .await?;
            if !json {
                println!("backup target {name} removed (its backups stay in the directory)");
            }
        }
        BackupCmd::Create { vmid, target, full } => {
            let a = c
                .call(
                    Method::POST,
                    &["nodes", node, "vms", &vmid.to_string(), "backups"],
                    &[],
                    Some(&BackupCreate { target, full }),
                )
                .await?;
            return task_outcome(c, node, a, mode).await;
        }
        BackupCmd::List { vmid, target } => {
            let q: Vec<(&str, String)> = target.map(|t| ("target", t)).into_iter().collect();
            show(
                c.get(&["nodes", node, "vms", &vmid.to_string(), "backups"], &q)
                    .await?,
                json,
                |b: Vec<BackupInfo>| backups_table(&b),
            )?
        }
        BackupCmd::Verify {
            vmid,
            backup,
            target,
        } => {
            let a = c
                .call::<()>(
                    Method::POST,
                    &[
                        "nodes",
                        node,
                        "vms",
                        &vmid.to_string(),
                        "backups",
                        &backup,
                        "verify",
                    ],
                    &[("target", target)],
                    None,
                )
                .await?;
            return task_outcome(c, node, a, mode).await;
        }
        BackupCmd::Restore {
            vmid,
            backup,
            target,
            new_vmid,
            pool,
            name,
            start,
            replace,
        } => {
            let body = RestoreRequest {
                target,
                new_vmid,
                pool,
                name,
                start,
                replace,
            };
            let a = c
                .call(
                    Method::POST,
                    &[
                        "nodes",
                        node,
                        "vms",
                        &vmid.to_string(),
                        "backups",
                        &backup,
                        "restore",
                    ],
                    &[],
                    Some(&body),
                )
                .await?;
            return task_outcome(c, node, a, mode).await;
        }
        BackupCmd::Prune {
            vmid,
            target,
            keep,
            dry_run,
        } => {
            let p = keep.policy();
            let body = PruneRequest {
                target,
                keep_last: p.keep_last,
                keep_hourly: p.keep_hourly,
                keep_daily: p.keep_daily,
                keep_weekly: p.keep_weekly,
                keep_monthly: p.keep_monthly,
                keep_yearly: p.keep_yearly,
                dry_run,
            };
            let v = c
                .call(
                    Method::POST,
                    &["nodes", node, "vms", &vmid.to_string(), "backups", "prune"],
                    &[],
                    Some(&body),
                )
                .await?;
            if dry_run {
                show(v, json, |r: PruneResult| prune_table(&r))?;
            } else {
                return task_outcome(c, node, v, mode).await;
            }
        }
        BackupCmd::Job(j) => return job(c, node, j, mode).await,
        BackupCmd::Delete {
            vmid,
            backup,
            target,
        } => {
            let a = c
                .call::<()>(
                    Method::DELETE,
                    &["nodes", node, "vms", &vmid.to_string(), "backups", &backup],
                    &[("target", target)],
                    None,
                )
                .await?;
            return task_outcome(c, node, a, mode).await;
        }
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_cli, Command};

    fn backup_cmd(args: &[&str]) -> BackupCmd {
        let mut v = vec!["keel", "backup"];
        v.extend_from_slice(args);
        match parse_cli(v).map(|c| c.cmd) {
            Ok(Command::Backup(b)) => b,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn target_add_takes_a_directory_or_an_sftp_host_with_a_key() {
        match backup_cmd(&[
            "target",
            "add",
            "nas",
            "--sftp",
            "bk@nas:2222:/srv",
            "--key",
            "/root/k",
            "--host-key-fingerprint",
            "SHA256:x",
        ]) {
            BackupCmd::Target(TargetCmd::Add {
                name,
                path: None,
                sftp: Some(l),
                key: Some(k),
                host_key_fingerprint: Some(f),
                nfs: None,
                mount_options: None,
            }) => assert_eq!(
                (name.as_str(), l.as_str(), k.as_str(), f.as_str()),
                ("nas", "bk@nas:2222:/srv", "/root/k", "SHA256:x")
            ),
            other => panic!("{other:?}"),
        }
        let bad = |a: &[&str]| {
            let mut v = vec!["keel", "backup", "target", "add", "t"];
            v.extend_from_slice(a);
            parse_cli(v).is_err()
        };
        assert!(bad(&["--sftp", "bk@nas:/srv"]), "--sftp without --key");
        assert!(bad(&[
            "--path",
            "/srv",
            "--sftp",
            "bk@nas:/srv",
            "--key",
            "/k"
        ]));
        assert!(bad(&[
            "--path",
            "/srv",
            "--host-key-fingerprint",
            "SHA256:x"
        ]));
        assert!(bad(&[]), "neither --path nor --sftp");
        assert!(bad(&["--path", "/srv", "--nfs", "nas:/x"]));
        assert!(bad(&[
            "--sftp",
            "bk@nas:/srv",
            "--key",
            "/k",
            "--nfs",
            "nas:/x"
        ]));
        match backup_cmd(&[
            "target",
            "add",
            "nas",
            "--nfs",
            "10.0.0.5:/backups",
            "--mount-options",
            "vers=4.2",
        ]) {
            BackupCmd::Target(TargetCmd::Add {
                nfs: Some(e),
                mount_options: Some(o),
                path: None,
                sftp: None,
                ..
            }) => assert_eq!((e.as_str(), o.as_str()), ("10.0.0.5:/backups", "vers=4.2")),
            other => panic!("{other:?}"),
        }
        assert!(!bad(&["--path", "/srv"]));
        assert_eq!(absolute("/a/b"), "/a/b");
        assert!(absolute("k").ends_with("/k") && absolute("k").starts_with('/'));
    }

    #[test]
    fn prune_delete_and_job_command_lines() {
        match backup_cmd(&[
            "prune",
            "100",
            "--target",
            "main",
            "--keep-last",
            "3",
            "--keep-daily",
            "7",
            "--dry-run",
        ]) {
            BackupCmd::Prune {
                vmid,
                target,
                keep,
                dry_run,
            } => {
                assert_eq!((vmid, target.as_str(), dry_run), (100, "main", true));
                let p = keep.policy();
                assert_eq!(
                    (p.keep_last, p.keep_daily, p.keep_weekly),
                    (Some(3), Some(7), None)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            backup_cmd(&["delete", "100", "20261202T172316Z", "--target", "main"]),
            BackupCmd::Delete { vmid: 100, .. }
        ));
        match backup_cmd(&[
            "job",
            "add",
            "nightly",
            "--vms",
            "100,101",
            "--target",
            "main",
            "--schedule",
            "mon..fri 21:00",
            "--keep-last",
            "7",
            "--full-every",
            "7",
        ]) {
            BackupCmd::Job(JobCmd::Add {
                id,
                vms,
                all,
                schedule,
                full_every,
                keep,
                disabled,
                ..
            }) => {
                assert_eq!(id, "nightly");
                assert_eq!(vms, vec![100, 101]);
                assert!(!all && !disabled);
                assert_eq!(schedule, "mon..fri 21:00");
                assert_eq!(full_every, Some(7));
                assert!(keep_given(&keep));
            }
            other => panic!("{other:?}"),
        }
        match backup_cmd(&[
            "job",
            "set",
            "nightly",
            "--all",
            "--no-retention",
            "--disable",
        ]) {
            BackupCmd::Job(JobCmd::Set {
                all,
                no_retention,
                disable,
                keep,
                ..
            }) => assert!(all && no_retention && disable && !keep_given(&keep)),
            other => panic!("{other:?}"),
        }
        assert!(parse_cli(["keel", "backup", "job", "set", "j", "--enable", "--disable"]).is_err());
        assert!(matches!(
            backup_cmd(&["job", "run", "nightly"]),
            BackupCmd::Job(JobCmd::Run { .. })
        ));
    }
}
