//! Apply with automatic rollback (as `netplan try` does): the previous file set is kept in
//! `<state>/network/apply.json` before anything is written; networkd reloads the new files;
//! unless `confirm` comes within the timeout — or at once if the management address or a
//! corosync link address is gone — the previous files are restored and networkd reloads again.
//! The record is on disk, so a hostd restart mid-window still rolls back (see [`spawn_watchdog`]).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_api::hostnet::{ApplyState, NetworkApply, CONFIRM_MAX_S, CONFIRM_MIN_S};
use keel_runner::{Cmd, Runner};
use netcfg::render::NetFile;
use netcfg::NetConfig;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{live, TASK_TARGET};
use crate::error::{Error, Result};
use crate::tasks::{self, TaskHandle};
use crate::Node;

/// Serializes apply, confirm and rollback on this node.
static LOCK: Mutex<()> = Mutex::new(());

/// Seconds the addresses the node must keep have to reappear after a reload.
const SETTLE_S: u64 = 20;

/// What an unconfirmed apply left on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRecord {
    pub deadline: i64,
    pub upid: String,
    pub user: String,
    /// Keel's files before the apply.
    pub previous: Vec<NetFile>,
    /// Keel's files the apply wrote.
    pub written: Vec<NetFile>,
    /// Virtual devices the apply created (deleted again by a rollback).
    pub created: Vec<String>,
}

fn record_path(node: &Node) -> std::path::PathBuf {
    super::state_dir(node).join("apply.json")
}

pub fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("keel-tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn load(node: &Node) -> Result<Option<ApplyRecord>> {
    match std::fs::read_to_string(record_path(node)) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::Internal(format!("{}: {e}", record_path(node).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn state(node: &Node) -> Result<Option<ApplyState>> {
    Ok(load(node)?.map(|r| ApplyState {
        deadline: r.deadline,
        remaining_s: (r.deadline - crate::db::now()).max(0),
        upid: r.upid,
    }))
}

/// Replace Keel's files: remove those of `from` not in `to`, write `to`.
fn switch_files(from: &[NetFile], to: &[NetFile]) -> Result<()> {
    for f in from {
        if !to.iter().any(|t| t.path == f.path) {
            match std::fs::remove_file(&f.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    for f in to {
        if let Some(parent) = Path::new(&f.path).parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_atomic(Path::new(&f.path), &f.content, f.mode)?;
    }
    Ok(())
}

/// The devices whose files differ between two file sets (`PREFIX-NAME.EXT`), minus `gone`:
/// only those are reconfigured, so untouched links (the cluster's) do not flap.
pub fn changed_devices(a: &[NetFile], b: &[NetFile], gone: &[String]) -> Vec<String> {
    let mut v: Vec<String> = netcfg::diff::diff(a, b)
        .into_iter()
        .filter_map(|f| {
            let file = f.path.rsplit('/').next()?.to_string();
            let stem = file.rsplit_once('.').map(|(s, _)| s.to_string())?;
            stem.split_once('-').map(|(_, n)| n.to_string())
        })
        .filter(|n| !gone.contains(n))
        .collect();
    v.dedup();
    v
}

/// Virtual devices of `a` that `b` does not have (or has as another kind).
fn gone_virtual(a: &NetConfig, b: &NetConfig) -> Vec<String> {
    a.devices
        .iter()
        .filter(|d| d.kind.is_virtual())
        .filter(|d| {
            b.device(&d.name)
                .is_none_or(|x| x.kind.type_name() != d.kind.type_name())
        })
        .map(|d| d.name.clone())
        .collect()
}

/// The commands that make networkd follow the files: removed virtual devices deleted
/// (networkd never deletes a netdev), the files reloaded, every device reconfigured.
pub fn reload_cmds(removed: &[String], devices: &[String]) -> Vec<Cmd> {
    let mut v: Vec<Cmd> = removed
        .iter()
        .map(|n| Cmd::argv(&["ip", "link", "delete", n]).timeout(Duration::from_secs(10)))
        .collect();
    v.push(Cmd::argv(&["networkctl", "reload"]).timeout(Duration::from_secs(30)));
    if !devices.is_empty() {
        let mut argv = vec!["networkctl".to_string(), "reconfigure".to_string()];
        argv.extend(devices.iter().cloned());
        v.push(Cmd::argv(&argv).timeout(Duration::from_secs(30)));
    }
    v
}

fn run_reload(r: &dyn Runner, removed: &[String], devices: &[String], log: &dyn Fn(String)) {
    for c in reload_cmds(removed, devices) {
        match r.run_ok(&c) {
            Ok(_) => log(format!("ran {c}")),
            // A deleted device that was never created, a device not present: not fatal.
            Err(e) => log(format!("{e}")),
        }
    }
}

/// Every address the node must keep is on some live interface, within `SETTLE_S`.
fn wait_addresses(node: &Node, keep: &[super::Protected], log: &dyn Fn(String)) -> Option<String> {
    let end = std::time::Instant::now() + Duration::from_secs(SETTLE_S);
    loop {
        let missing = match live::read_links(node.cluster.runner.as_ref()) {
            Ok(links) => keep
                .iter()
                .find(|p| super::live_carrier(&links, p.ip).is_none())
                .map(|p| format!("{} {}", p.what, p.ip)),
            Err(e) => Some(format!("the live addresses ({e})")),
        };
        match missing {
            None => return None,
            Some(m) if std::time::Instant::now() >= end => return Some(m),
            Some(m) => {
                log(format!("waiting for {m} to come up"));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Checks before the task, then the `netapply` task.
pub fn start(node: &Arc<Node>, req: &NetworkApply, user: &str) -> Result<String> {
    if !(CONFIRM_MIN_S..=CONFIRM_MAX_S).contains(&req.confirm_timeout_s) {
        return Err(Error::validation(
            "confirm_timeout_s",
            format!(
                "{} is out of range; valid: {CONFIRM_MIN_S} to {CONFIRM_MAX_S} seconds",
                req.confirm_timeout_s
            ),
        ));
    }
    if load(node)?.is_some() {
        return Err(Error::Conflict(
            "an applied network change already waits for confirmation".into(),
        ));
    }
    let Some(_) = super::load_pending(node)? else {
        return Err(Error::Conflict(
            "no network changes are pending on this node: stage a bond, VLAN or bridge first"
                .into(),
        ));
    };
    let n = node.clone();
    let timeout = req.confirm_timeout_s;
    let u = user.to_string();
    tasks::spawn(&node.tasks, "netapply", TASK_TARGET, user, true, move |t| {
        apply(&n, timeout, &u, t)
    })
}

fn apply(node: &Arc<Node>, timeout: u64, user: &str, t: &TaskHandle) -> Result<()> {
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = super::dir_str(node);
    let previous = super::read_managed(&node.cfg.network_dir)?;
    let current = super::model_of(&previous)?;
    let Some(cfg) = super::load_pending(node)? else {
        return Err(Error::Conflict("the pending changes were discarded".into()));
    };
    let links = live::read_links(node.cluster.runner.as_ref())?;
    let keep = super::protected(node, &links);
    super::check_node_facts(&current, &cfg, &links, &keep, &super::vm_bridges(node)?)?;
    let written = super::render_settled(&cfg, &dir, &previous);
    let rec = ApplyRecord {
        deadline: crate::db::now() + timeout as i64,
        upid: t.upid.clone(),
        user: user.to_string(),
        previous: previous.clone(),
        written: written.clone(),
        created: gone_virtual(&cfg, &current),
    };
    std::fs::create_dir_all(super::state_dir(node))?;
    let text = serde_json::to_string_pretty(&rec).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&record_path(node), &text, 0o600)?;
    t.log(format!(
        "previous configuration kept ({} files); writing {} files to {dir}",
        previous.len(),
        written.len()
    ));
    let log = |m: String| t.log(m);
    if let Err(e) = switch_files(&previous, &written) {
        t.log(format!("writing failed ({e}): rolling back"));
        rollback_now(node, &rec, &log)?;
        return Err(e);
    }
    let _ = std::fs::remove_file(super::pending_path(node));
    let gone = gone_virtual(&current, &cfg);
    run_reload(
        node.cluster.runner.as_ref(),
        &gone,
        &changed_devices(&previous, &written, &gone),
        &log,
    );
    if let Some(missing) = wait_addresses(node, &keep, &log) {
        t.log(format!(
            "{missing} is not on any interface {SETTLE_S}s after the reload: rolling back now"
        ));
        rollback_now(node, &rec, &log)?;
        return Err(Error::Conflict(format!(
            "rolled back: {missing} was gone after the change"
        )));
    }
    t.log(format!(
        "applied; confirm within {timeout}s (`keel node network confirm`) or it is rolled back"
    ));
    spawn_watch(node.clone());
    Ok(())
}

/// Restore the previous files, delete what the apply created, reload.
fn rollback_now(node: &Node, rec: &ApplyRecord, log: &dyn Fn(String)) -> Result<()> {
    switch_files(&rec.written, &rec.previous)?;
    run_reload(
        node.cluster.runner.as_ref(),
        &rec.created,
        &changed_devices(&rec.written, &rec.previous, &rec.created),
        log,
    );
    match std::fs::remove_file(record_path(node)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    log("previous network configuration restored".into());
    Ok(())
}

pub fn confirm(node: &Node) -> Result<()> {
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if load(node)?.is_none() {
        return Err(Error::NotFound(
            "no applied network change waits for confirmation on this node".into(),
        ));
    }
    std::fs::remove_file(record_path(node))?;
    info!("host network change confirmed");
    Ok(())
}

/// Roll back if the record's deadline passed; whether a record is still waiting.
fn check_deadline(node: &Arc<Node>) -> bool {
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let rec = match load(node) {
        Ok(Some(r)) => r,
        Ok(None) => return false,
        Err(e) => {
            warn!(error = %e, "host network: cannot read the apply record");
            return false;
        }
    };
    if crate::db::now() < rec.deadline {
        return true;
    }
    let n = node.clone();
    let user = rec.user.clone();
    let r = tasks::spawn(
        &node.tasks,
        "netrollback",
        TASK_TARGET,
        &user,
        false,
        move |t| {
            t.log(format!(
                "the network change of {} was not confirmed in time: rolling back",
                rec.upid
            ));
            let log = |m: String| t.log(m);
            rollback_now(&n, &rec, &log)
        },
    );
    if let Err(e) = r {
        warn!(error = %e, "host network: cannot start the rollback task");
        return true;
    }
    // The task removes the record; wait for it so the watcher does not start a second one.
    for _ in 0..120 {
        if matches!(load(node), Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

fn spawn_watch(node: Arc<Node>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        warn!("host network: no runtime for the rollback watcher");
        return;
    };
    rt.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let n = node.clone();
            match tokio::task::spawn_blocking(move || check_deadline(&n)).await {
                Ok(true) => continue,
                _ => break,
            }
        }
    });
}

/// At start: an unconfirmed apply left by a previous hostd is watched again (rolled back at
/// once when its deadline passed).
pub fn spawn_watchdog(node: Arc<Node>) {
    match load(&node) {
        Ok(Some(r)) => {
            warn!(upid = %r.upid, deadline = r.deadline, "host network: an unconfirmed change is pending from before the restart");
            spawn_watch(node);
        }
        Ok(None) => {}
        Err(e) => warn!(error = %e, "host network: cannot read the apply record"),
    }
}
