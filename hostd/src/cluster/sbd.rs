//! SBD on every member: what `keel fence add NODE --agent sbd` does before Pacemaker gets the
//! `fence_sbd` device. A poison pill only kills a node whose own sbd daemon watches the disk and
//! feeds a watchdog, so every member must run sbd first.
//!
//! 1. Check, here and on every member (nothing changed yet): the cluster stack runs under
//!    systemd, sbd is installed, a watchdog device exists, each disk is a block device.
//! 2. Here: a disk without an SBD header gets one (`sbd create`), refused when the disk holds
//!    anything (a file system, a partition table); a disk with a header keeps it, refused when
//!    its timeouts differ from the ones asked for.
//! 3. Here, then on every member: the header read back must have the same UUID (the path names
//!    the same shared disk everywhere), `/etc/default/sbd` written, `sbd.service` enabled and
//!    started. The unit refuses a manual start (`RefuseManualStart`): it is `RequiredBy`
//!    corosync, so `systemctl start corosync.service`, a no-op for the running corosync, pulls
//!    it in without restarting the stack.
//!
//! A member that fails any step refuses the device: Pacemaker is not changed, and running the
//! command again repairs the members it reached (every step is idempotent).
//!
//! Must not: speak HTTP (the push is `peer`'s), decide the CIB (`fencing` does).

use clusterd::sbd::{self, SbdConfig};
use keel_runner::Cmd;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::{run_err, ClusterState};
use crate::error::{Error, Result};
use crate::Node;
use clusterd::commands;

/// How long sbd may stay `activating` after corosync pulled it in.
const START_WAIT: Duration = Duration::from_secs(90);

/// What a member is asked to do (`PeerUpdate::sbd`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum SbdPeer {
    /// Step 1 only: may this member run sbd on these disks?
    Check(SbdConfig),
    /// Step 3: the disks carry these header UUIDs (in `devices` order); configure and start.
    Start {
        config: SbdConfig,
        uuids: Vec<String>,
    },
    /// Diskless SBD: restart Pacemaker here if it started before sbd (Pacemaker looks for sbd
    /// when it starts, and only then fences through the watchdog).
    Pacemaker,
}

pub(super) fn apply_peer(cs: &ClusterState, name: &str, p: &SbdPeer) -> Result<()> {
    match p {
        SbdPeer::Check(c) => check(cs, name, c),
        SbdPeer::Start { config, uuids } => start(cs, name, config, uuids),
        SbdPeer::Pacemaker => restart_pacemaker_if_needed(cs, name).map(|_| ()),
    }
}

fn systemctl(args: &[&str]) -> Cmd {
    let mut a = vec!["systemctl"];
    a.extend_from_slice(args);
    Cmd::argv(&a).timeout(Duration::from_secs(90))
}

/// Step 1 on this node.
fn check(cs: &ClusterState, name: &str, c: &SbdConfig) -> Result<()> {
    let r = cs.runner.as_ref();
    if cs.svc.kind() != "systemd" {
        return Err(Error::Conflict(format!(
            "node {name}: sbd needs the cluster stack under systemd (sbd.service starts with \
             corosync.service); this node runs it through Keel's own supervisor ({})",
            cs.svc.kind()
        )));
    }
    if !r
        .run(&Cmd::argv(&["test", "-x", "/usr/sbin/sbd"]))
        .map_err(run_err)?
        .success()
    {
        return Err(Error::Conflict(format!(
            "node {name}: sbd is not installed (/usr/sbin/sbd): apt-get install sbd (a node installed from Keel's ISO has it)"
        )));
    }
    if !r
        .run(&Cmd::argv(&["test", "-c", sbd::WATCHDOG_DEV]))
        .map_err(run_err)?
        .success()
    {
        return Err(Error::Conflict(format!(
            "node {name} has no watchdog device ({}): without one, sbd cannot reset the node, so \
             a fence through SBD would report success on a node that is still running. Enable the \
             board's watchdog (iTCO_wdt, ipmi_watchdog, i6300esb under KVM) or load softdog \
             (modprobe softdog; echo softdog > /etc/modules-load.d/watchdog.conf), then run this again",
            sbd::WATCHDOG_DEV
        )));
    }
    for d in &c.devices {
        if !r
            .run(&Cmd::argv(&["test", "-b", d]))
            .map_err(run_err)?
            .success()
        {
            return Err(Error::Conflict(format!(
                "node {name}: {d} is not a block device here: every node must see the same shared \
                 disk under the same path (iSCSI logged in, multipath up?)"
            )));
        }
    }
    // sbd reads its configuration only when it starts (with the cluster stack): a running sbd
    // set up otherwise would go on with its old disks and timeout while the CIB says new ones
    if active(cs)? {
        let now = std::fs::read_to_string(&cs.paths.sbd_defaults)
            .ok()
            .and_then(|t| SbdConfig::parse_defaults(&t));
        if let Some(n) = now.as_ref().filter(|n| n.devices == c.devices && n != &c) {
            return Err(Error::Conflict(format!(
                "node {name}: sbd already runs here with a {} s watchdog timeout, not the {} s \
                 asked for (sbd reads it only when it starts): add the device with \
                 `--param watchdog_timeout={}` to keep it",
                n.watchdog_timeout_s, c.watchdog_timeout_s, n.watchdog_timeout_s
            )));
        }
        if now.as_ref() != Some(c) {
            return Err(Error::Conflict(format!(
                "node {name}: sbd already runs with another configuration ({}), and sbd reads its \
                 configuration only when it starts, with the cluster stack. To change it to {}: \
                 change or delete the fence devices that use the old one, then reboot the nodes \
                 one at a time with sbd disabled (`systemctl disable sbd && systemctl reboot`; \
                 move the node's VMs first, and wait until it is back in the cluster before the \
                 next); then run this again",
                now.map(|n| n.describe())
                    .unwrap_or_else(|| format!("{} unreadable", cs.paths.sbd_defaults.display())),
                c.describe()
            )));
        }
    }
    Ok(())
}

/// The watchdog timeout sbd runs with here on exactly `devices` (none: diskless), if it runs:
/// what a device added without `watchdog_timeout` keeps.
pub(super) fn running_timeout(cs: &ClusterState, devices: &[String]) -> Option<u32> {
    if !active(cs).ok()? {
        return None;
    }
    let now = SbdConfig::parse_defaults(&std::fs::read_to_string(&cs.paths.sbd_defaults).ok()?)?;
    (now.devices == devices).then_some(now.watchdog_timeout_s)
}

/// `sbd.service` is active on this node.
fn active(cs: &ClusterState) -> Result<bool> {
    let o = cs
        .runner
        .run(&systemctl(&["is-active", sbd::UNIT]))
        .map_err(run_err)?;
    Ok(o.stdout.trim() == "active")
}

/// The disk's header, None when it has none.
fn header(cs: &ClusterState, dev: &str) -> Result<Option<sbd::SbdHeader>> {
    let o = cs.runner.run(&sbd::dump(dev)).map_err(run_err)?;
    Ok(if o.success() {
        sbd::parse_dump(&o.stdout)
    } else {
        None
    })
}

/// Step 2 (on the node that adds the device): every disk has a header with the asked-for
/// timeouts; their UUIDs.
fn format(cs: &ClusterState, c: &SbdConfig) -> Result<Vec<String>> {
    let r = cs.runner.as_ref();
    let mut uuids = vec![];
    for d in &c.devices {
        let h = match header(cs, d)? {
            Some(h) => h,
            None => {
                let probe = r.run(&sbd::probe(d)).map_err(run_err)?;
                let found: Vec<&str> = probe
                    .stdout
                    .lines()
                    .filter(|l| l.starts_with("TYPE=") || l.starts_with("PTTYPE="))
                    .collect();
                if probe.success() && !found.is_empty() {
                    return Err(Error::Conflict(format!(
                        "{d} is not blank ({}): formatting it for SBD would destroy that; give an \
                         empty shared disk (a few MiB is enough), or clear this one with \
                         `wipefs -a {d}` if its contents are not needed",
                        found.join(", ")
                    )));
                }
                r.run_ok(&sbd::create(d, c.watchdog_timeout_s, c.msgwait_s()))
                    .map_err(run_err)?;
                tracing::info!(device = %d, watchdog_s = c.watchdog_timeout_s, "SBD disk formatted");
                header(cs, d)?.ok_or_else(|| {
                    Error::Internal(format!(
                        "{d}: sbd create succeeded but no header reads back"
                    ))
                })?
            }
        };
        if h.watchdog_timeout_s != c.watchdog_timeout_s || h.msgwait_s != c.msgwait_s() {
            return Err(Error::Conflict(format!(
                "{d} already carries an SBD header with a {} s watchdog timeout and {} s msgwait, \
                 not the {} s / {} s asked for: add the device with watchdog_timeout={} to keep \
                 it, or re-create the header while sbd is stopped on every node \
                 (sbd -d {d} -1 {} -4 {} create)",
                h.watchdog_timeout_s,
                h.msgwait_s,
                c.watchdog_timeout_s,
                c.msgwait_s(),
                h.watchdog_timeout_s,
                c.watchdog_timeout_s,
                c.msgwait_s()
            )));
        }
        uuids.push(h.uuid);
    }
    Ok(uuids)
}

/// Step 3 on this node.
fn start(cs: &ClusterState, name: &str, c: &SbdConfig, uuids: &[String]) -> Result<()> {
    check(cs, name, c)?;
    let r = cs.runner.as_ref();
    for (d, want) in c.devices.iter().zip(uuids) {
        let got = header(cs, d)?.map(|h| h.uuid);
        if got.as_deref() != Some(want.as_str()) {
            return Err(Error::Conflict(format!(
                "node {name}: {d} is not the SBD disk the other node formatted (header UUID {} \
                 here, {want} there): the path must name the same shared disk on every node",
                got.as_deref().unwrap_or("none")
            )));
        }
    }
    clusterd::ca::write_file_mode(&cs.paths.sbd_defaults, c.render().as_bytes(), 0o644)
        .map_err(|e| Error::Internal(e.to_string()))?;
    r.run_ok(&systemctl(&["enable", sbd::UNIT]))
        .map_err(run_err)?;
    // (diskless: sbd waits SBD_DELAY_START, twice the watchdog timeout, before it is started;
    // systemd gives it 90 s)
    r.run_ok(&systemctl(&["start", "corosync.service"]).timeout(Duration::from_secs(150)))
        .map_err(run_err)?;
    // Type=forking: sbd is `activating` until its servants have read the disk and found
    // Pacemaker, which takes seconds
    let deadline = std::time::Instant::now() + START_WAIT;
    loop {
        let o = r
            .run(&systemctl(&["is-active", sbd::UNIT]))
            .map_err(run_err)?;
        let state = o.stdout.trim().to_string();
        if state == "active" {
            break;
        }
        if state != "activating" || std::time::Instant::now() > deadline {
            let journal = r
                .run(
                    &Cmd::argv(&[
                        "journalctl",
                        "-u",
                        sbd::UNIT,
                        "-n",
                        "12",
                        "--no-pager",
                        "-o",
                        "cat",
                    ])
                    .timeout(Duration::from_secs(15)),
                )
                .map(|o| o.stdout)
                .unwrap_or_default();
            return Err(Error::Conflict(format!(
                "node {name}: sbd did not start ({state}); its log (journalctl -u sbd):\n{}",
                journal.trim_end()
            )));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    tracing::info!(devices = ?c.devices, "sbd configured and running");
    Ok(())
}

/// Make every member run sbd on `c`'s disks (steps 1 to 3), this node first. `c` is
/// validated by the caller (`fencing::sbd_config`).
/// Step 1 here and on every member: may each run sbd as `c` says? Nothing changes.
pub(super) fn check_all(node: &Node, c: &SbdConfig) -> Result<()> {
    check(&node.cluster, node.cfg.node.as_str(), c)?;
    push(node, SbdPeer::Check(c.clone()))
}

/// How a long sbd setup reports its steps: the task's log and progress (0..1).
pub(super) type Say<'a> = &'a dyn Fn(f64, &str);

pub(super) fn configure(node: &Node, c: &SbdConfig, say: Say<'_>) -> Result<()> {
    let cs = &node.cluster;
    let me = node.cfg.node.as_str();
    check_all(node, c)?;
    say(0.1, &format!("every member can run sbd ({})", c.describe()));
    let uuids = format(cs, c)?;
    if !uuids.is_empty() {
        say(
            0.15,
            &format!("SBD disk header(s) ready: {}", c.devices.join(", ")),
        );
    }
    say(
        0.2,
        &format!(
            "starting sbd here and on every member at once{}",
            if c.devices.is_empty() {
                format!(
                    " (diskless: sbd waits {} s, twice its watchdog timeout, before it starts)",
                    2 * c.watchdog_timeout_s
                )
            } else {
                String::new()
            }
        ),
    );
    // here and on the members at once: each start may wait (diskless: SBD_DELAY_START, twice
    // the watchdog timeout), and one member's failure does not undo the others' (a rerun
    // repairs)
    let peers = SbdPeer::Start {
        config: c.clone(),
        uuids: uuids.clone(),
    };
    let (mine, theirs) = std::thread::scope(|sc| {
        let here = sc.spawn(|| start(cs, me, c, &uuids));
        let there = push(node, peers);
        (
            here.join()
                .unwrap_or_else(|_| Err(Error::Internal("starting sbd here panicked".into()))),
            there,
        )
    });
    mine.and(theirs)?;
    say(0.5, "sbd runs on every member");
    Ok(())
}

/// Did Pacemaker start after sbd on this node? (systemd's activation times.) Pacemaker looks
/// for a running sbd when it starts: only then does it fence through the watchdog, and a
/// `stonith-watchdog-timeout` on a node whose Pacemaker started without sbd stops it.
fn pacemaker_after_sbd(cs: &ClusterState) -> Result<bool> {
    let o = cs
        .runner
        .run_ok(&systemctl(&[
            "show",
            "--property=ActiveEnterTimestampMonotonic",
            "--value",
            sbd::UNIT,
            "pacemaker.service",
        ]))
        .map_err(run_err)?;
    let t: Vec<u64> = o.lines().filter_map(|l| l.trim().parse().ok()).collect();
    match t[..] {
        [sbd_t, pcmk_t] => Ok(sbd_t > 0 && pcmk_t > sbd_t),
        _ => Err(Error::Internal(format!(
            "systemctl show ActiveEnterTimestampMonotonic of sbd and pacemaker: {o:?}"
        ))),
    }
}

/// Restart Pacemaker on this node when it started before sbd; whether it did.
fn restart_pacemaker_if_needed(cs: &ClusterState, name: &str) -> Result<bool> {
    if !active(cs)? {
        return Err(Error::Conflict(format!(
            "node {name}: sbd is not running, so Pacemaker cannot fence through the watchdog"
        )));
    }
    if pacemaker_after_sbd(cs)? {
        return Ok(false);
    }
    cs.runner
        .run_ok(&systemctl(&["restart", "pacemaker.service"]))
        .map_err(run_err)?;
    tracing::info!("Pacemaker restarted to run with sbd's watchdog");
    Ok(true)
}

/// How long a member's Pacemaker may take to be back online after its restart.
const PACEMAKER_BACK: Duration = Duration::from_secs(180);

/// Wait until `name` is online in Pacemaker (not pending) in this node's view.
fn wait_pacemaker_online(cs: &ClusterState, name: &str) -> Result<()> {
    // the restart has begun: the old controller's leaving must not count as "online"
    std::thread::sleep(Duration::from_secs(2));
    let deadline = std::time::Instant::now() + PACEMAKER_BACK;
    loop {
        if let Some(st) = clusterd::form::crm_status(cs.runner.as_ref()) {
            if st
                .nodes
                .iter()
                .any(|n| n.name == name && n.online && !n.pending)
            {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Conflict(format!(
                "node {name}: Pacemaker was restarted to use sbd's watchdog and is not back \
                 online after {} s: check `systemctl status pacemaker` and `journalctl -u \
                 pacemaker` there",
                PACEMAKER_BACK.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Diskless SBD (`keel fence add NODE --agent watchdog`): sbd without disks on every member,
/// every member's Pacemaker started after it, and `stonith-watchdog-timeout` set. Refused,
/// before anything changes, with fewer than three votes: a node cut off alone in a two-node
/// cluster stays quorate (`two_node`), so it would neither reset itself nor be safe to count
/// as dead.
///
/// Pacemaker is restarted one member at a time, and only where it started before sbd, with
/// the cluster in maintenance mode so that no resource is stopped or moved meanwhile (an
/// operator's own maintenance mode is left as it was).
pub(super) fn configure_watchdog(node: &Node, c: &SbdConfig, say: Say<'_>) -> Result<()> {
    check_watchdog(node, c)?;
    configure(node, c, say)?;
    let cs = &node.cluster;
    let r = cs.runner.as_ref();
    let me = node.cfg.node.as_str();
    let was_maintenance = r
        .run(&commands::query_property("maintenance-mode"))
        .map_err(run_err)?;
    // Pacemaker's booleans: true, yes, on, y, 1 (any case)
    let operator_maintenance = was_maintenance.success()
        && matches!(
            was_maintenance.stdout.trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "on" | "y" | "1"
        );
    if !operator_maintenance {
        r.run_ok(&commands::set_property("maintenance-mode", "true"))
            .map_err(run_err)?;
    }
    say(
        0.55,
        "restarting Pacemaker, one member at a time, where it started before sbd (the cluster \
         in maintenance mode meanwhile: no resource stopped or moved)",
    );
    let restarted = restart_members(node, me, say);
    if !operator_maintenance {
        if let Err(e) = r.run_ok(&commands::delete_property("maintenance-mode")) {
            tracing::error!(error = %e, "leaving maintenance mode after the Pacemaker restarts");
            if let Err(first) = &restarted {
                tracing::error!(error = %first, "the Pacemaker restarts had failed before");
            }
            return Err(Error::Conflict(format!(
                "the cluster is still in maintenance mode (no resource is managed): {e}; run \
                 `crm_attribute --type crm_config --name maintenance-mode --delete` on any node"
            )));
        }
    }
    let n = restarted?;
    if n > 0 {
        tracing::info!(
            restarted = n,
            "Pacemaker restarted on member(s) to use sbd's watchdog"
        );
    }
    say(0.85, "every member's Pacemaker runs with sbd's watchdog");
    Ok(())
}

/// The refusals of diskless SBD that depend on the cluster's votes, before anything changes.
pub(super) fn check_watchdog(node: &Node, c: &SbdConfig) -> Result<()> {
    let cs = &node.cluster;
    let conf = clusterd::form::read_corosync_conf(&cs.paths)?;
    let votes = conf.nodes.len() + usize::from(conf.qdevice.is_some());
    if votes < 3 {
        return Err(Error::Conflict(format!(
            "diskless SBD needs three votes or more, and this cluster has {votes} ({} node(s){}): \
             a node cut off alone must lose quorum to reset itself, and with two votes it keeps \
             it. Add a QDevice (`keel cluster qdevice add`) or a third node first, or fence \
             through a BMC (fence_ipmilan, fence_redfish) or a shared SBD disk (--agent sbd)",
            conf.nodes.len(),
            if conf.qdevice.is_some() {
                " and a QDevice"
            } else {
                ", no QDevice"
            }
        )));
    }
    if conf.qdevice.is_some() && c.watchdog_timeout_s <= sbd::QDEVICE_SYNC_TIMEOUT_S {
        return Err(Error::Conflict(format!(
            "with a QDevice, sbd trusts corosync's quorum only when its watchdog timeout is \
             longer than corosync-qdevice's sync_timeout ({} s), and would not start with {} s: \
             use watchdog_timeout={} or more (the default with a QDevice; a node cut off alone \
             is then reset within that time and counted as fenced after twice it)",
            sbd::QDEVICE_SYNC_TIMEOUT_S,
            c.watchdog_timeout_s,
            sbd::DISKLESS_QDEVICE_TIMEOUT_S
        )));
    }
    Ok(())
}

/// Pacemaker's side of diskless SBD, once the `watchdog` device lists the node (set before
/// it, a failure in between would leave a timeout that makes the fencer count any node it
/// cannot otherwise fence as reset): `stonith-watchdog-timeout`, and `stonith-timeout` with
/// room beyond it.
pub(super) fn set_watchdog_timeouts(r: &dyn keel_runner::Runner, c: &SbdConfig) -> Result<()> {
    // a fence through the watchdog lasts stonith-watchdog-timeout: Pacemaker's stonith-timeout
    // must leave room beyond it
    let need = c.stonith_watchdog_timeout_s() + STONITH_TIMEOUT_MARGIN_S;
    let keel_raised = current_watchdog_timeouts(r)? == Some(true);
    if need > DEFAULT_STONITH_TIMEOUT_S {
        r.run_ok(&commands::set_property(
            "stonith-timeout",
            &format!("{need}s"),
        ))
        .map_err(run_err)?;
    } else if keel_raised {
        // a shorter watchdog timeout than before: Keel's raise for the old one goes
        r.run_ok(&commands::set_property(
            "stonith-timeout",
            &format!("{DEFAULT_STONITH_TIMEOUT_S}s"),
        ))
        .map_err(run_err)?;
    }
    r.run_ok(&commands::set_property(
        "stonith-watchdog-timeout",
        &format!("{}s", c.stonith_watchdog_timeout_s()),
    ))
    .map_err(run_err)?;
    Ok(())
}

/// Undo [`set_watchdog_timeouts`] once no watchdog device is left: `stonith-watchdog-timeout`
/// deleted (set, it would make the fencer count any node it cannot fence otherwise as reset by
/// its watchdog after the timeout), and `stonith-timeout` back to Keel's 60 s if it is still
/// the value Keel raised it to (an operator's own value is kept). Whether anything was set.
pub(super) fn clear_watchdog_timeouts(r: &dyn keel_runner::Runner) -> Result<bool> {
    let Some(keel_raised) = current_watchdog_timeouts(r)? else {
        return Ok(false);
    };
    if keel_raised {
        r.run_ok(&commands::set_property(
            "stonith-timeout",
            &format!("{DEFAULT_STONITH_TIMEOUT_S}s"),
        ))
        .map_err(run_err)?;
    }
    r.run_ok(&commands::delete_property("stonith-watchdog-timeout"))
        .map_err(run_err)?;
    Ok(true)
}

/// `None` when `stonith-watchdog-timeout` is not set; else whether `stonith-timeout` still has
/// the value [`set_watchdog_timeouts`] raised it to for that timeout (Keel's, not an
/// operator's).
fn current_watchdog_timeouts(r: &dyn keel_runner::Runner) -> Result<Option<bool>> {
    let swt = r
        .run(&commands::query_property("stonith-watchdog-timeout"))
        .map_err(run_err)?;
    if !swt.success() {
        return Ok(None);
    }
    let raised = swt
        .stdout
        .trim()
        .trim_end_matches('s')
        .parse::<u32>()
        .ok()
        .map(|t| t + STONITH_TIMEOUT_MARGIN_S)
        .filter(|t| *t > DEFAULT_STONITH_TIMEOUT_S);
    let Some(raised) = raised else {
        return Ok(Some(false));
    };
    let st = r
        .run(&commands::query_property("stonith-timeout"))
        .map_err(run_err)?;
    Ok(Some(
        st.success() && st.stdout.trim() == format!("{raised}s"),
    ))
}

/// Keel's `stonith-timeout` (`clusterd::cib::ClusterProperties`).
const DEFAULT_STONITH_TIMEOUT_S: u32 = 60;
/// How much longer than `stonith-watchdog-timeout` a fence may take before Pacemaker gives up.
const STONITH_TIMEOUT_MARGIN_S: u32 = 20;

/// Every other member first, one at a time, then this node: Pacemaker restarted where it
/// started before sbd, and back online before the next. How many were restarted is not known
/// for the other members (they restart only when needed); this node's is counted.
fn restart_members(node: &Node, me: &str, say: Say<'_>) -> Result<usize> {
    let cs = &node.cluster;
    let Some(rec) = cs.record()? else {
        return Ok(0);
    };
    for m in rec.members.iter().filter(|m| m.name != me) {
        let others: Vec<&str> = rec
            .members
            .iter()
            .filter(|o| o.name != m.name)
            .map(|o| o.name.as_str())
            .collect();
        super::peer::push_one(node, &others, |u| u.sbd = Some(SbdPeer::Pacemaker)).map_err(
            |e| {
                Error::Conflict(format!(
                    "Pacemaker could not be made to use sbd's watchdog on {}: {e}; fix it and \
                     run the command again",
                    m.name
                ))
            },
        )?;
        wait_pacemaker_online(cs, &m.name)?;
        say(0.6, &format!("{}: Pacemaker online with sbd", m.name));
    }
    let mine = restart_pacemaker_if_needed(cs, me)?;
    if mine {
        wait_pacemaker_online(cs, me)?;
    }
    Ok(usize::from(mine))
}

fn push(node: &Node, p: SbdPeer) -> Result<()> {
    super::peer::push_one(node, &[], |u| u.sbd = Some(p)).map_err(|e| {
        Error::Conflict(format!(
            "sbd could not be set up on every member, so Pacemaker was not changed: {e}; \
                 fix it and run the command again (it repairs the members it already reached)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::super::testlab;
    use super::*;
    use keel_runner::{Fake, Reply};

    const DEV: &str = "/dev/disk/by-id/virtio-keel-sbd";

    fn refusal(r: Result<()>) -> String {
        match r {
            Ok(()) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn cfg() -> SbdConfig {
        SbdConfig {
            devices: vec![DEV.into()],
            watchdog_timeout_s: 15,
        }
    }

    fn dump(uuid: &str, wd: u32) -> String {
        format!(
            "==Dumping header on disk {DEV}\nHeader version     : 2.1\nUUID               : {uuid}\n\
             Number of slots    : 255\nSector size        : 512\nTimeout (watchdog) : {wd}\n\
             Timeout (allocate) : 2\nTimeout (loop)     : 1\nTimeout (msgwait)  : {}\n\
             ==Header on disk {DEV} is dumped\n",
            wd * 2
        )
    }

    fn inactive() -> Reply {
        Reply::Exit(keel_runner::Output {
            code: Some(3),
            stdout: "inactive\n".into(),
            stderr: String::new(),
        })
    }

    fn checks(f: Fake) -> Fake {
        f.expect(&["test", "-x", "/usr/sbin/sbd"], Reply::ok(""))
            .expect(&["test", "-c", "/dev/watchdog"], Reply::ok(""))
            .expect(&["test", "-b", DEV], Reply::ok(""))
            .expect(&["systemctl", "is-active", "sbd.service"], inactive())
    }

    fn diskless_checks(f: Fake) -> Fake {
        f.expect(&["test", "-x", "/usr/sbin/sbd"], Reply::ok(""))
            .expect(&["test", "-c", "/dev/watchdog"], Reply::ok(""))
            .expect(&["systemctl", "is-active", "sbd.service"], inactive())
    }

    /// `crm_attribute --type crm_config --name NAME ARGS…` as the workflow runs it.
    fn prop<'a>(name: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["crm_attribute", "--type", "crm_config", "--name", name];
        a.extend_from_slice(args);
        a
    }

    fn diskless() -> SbdConfig {
        SbdConfig {
            devices: vec![],
            watchdog_timeout_s: 10,
        }
    }

    /// The lab's corosync.conf with `n` nodes (the record keeps this node alone, so nothing is
    /// pushed) and optionally a QDevice: the votes diskless SBD counts.
    fn votes(lab: &testlab::Lab, n: u32, qdevice: bool) -> Result<()> {
        use clusterd::corosync_conf::{ConfNode, CorosyncConf, LatencyClass, QDevice};
        let node = |i: u32| ConfNode {
            nodeid: i,
            name: if i == 1 {
                testlab::SELF.into()
            } else {
                format!("n{i}")
            },
            addrs: vec![format!("192.0.2.{i}")],
        };
        let mut c = CorosyncConf::new("c1", node(1), LatencyClass::Local);
        for i in 2..=n {
            c.add_node(node(i))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        if qdevice {
            c.qdevice = Some(QDevice {
                host: "192.0.2.99".into(),
                port: None,
                algorithm: Default::default(),
            });
        }
        clusterd::form::write_corosync_conf(&lab.paths, &c)?;
        Ok(())
    }

    /// Two votes (two nodes, no QDevice): refused before any command runs, saying what gives
    /// the third.
    #[test]
    fn diskless_sbd_needs_three_votes() -> Result<()> {
        let lab = testlab::systemd_single(Fake::new())?;
        votes(&lab, 2, false)?;
        let e = refusal(configure_watchdog(&lab.node, &diskless(), &|_, _| {}));
        lab.fake.assert_done();
        assert!(
            e.contains("three votes")
                && e.contains("has 2 (2 node(s), no QDevice)")
                && e.contains("keel cluster qdevice add"),
            "{e}"
        );
        assert!(!lab.paths.sbd_defaults.exists());
        Ok(())
    }

    /// The last watchdog device gone: stonith-timeout back to 60 s where Keel had raised it
    /// (70 s + 20), stonith-watchdog-timeout deleted; an operator's stonith-timeout is kept.
    #[test]
    fn clearing_the_watchdog_timeouts_undoes_only_what_keel_set() -> Result<()> {
        let swt = prop("stonith-watchdog-timeout", &["--query", "--quiet"]);
        let st = prop("stonith-timeout", &["--query", "--quiet"]);
        let del = prop("stonith-watchdog-timeout", &["--delete"]);
        let f = Fake::new()
            .expect(&swt, Reply::ok("70s\n"))
            .expect(&st, Reply::ok("90s\n"))
            .expect(
                &prop("stonith-timeout", &["--update", "60s"]),
                Reply::ok(""),
            )
            .expect(&del, Reply::ok(""));
        assert!(clear_watchdog_timeouts(&f)?);
        f.assert_done();
        let f = Fake::new()
            .expect(&swt, Reply::ok("70s\n"))
            .expect(&st, Reply::ok("120s\n"))
            .expect(&del, Reply::ok(""));
        assert!(clear_watchdog_timeouts(&f)?);
        f.assert_done();
        // 20 s (a 10 s watchdog): Keel left stonith-timeout alone
        let f = Fake::new()
            .expect(&swt, Reply::ok("20s\n"))
            .expect(&del, Reply::ok(""));
        assert!(clear_watchdog_timeouts(&f)?);
        f.assert_done();
        let f = Fake::new().expect(&swt, Reply::fail(6, "not found"));
        assert!(!clear_watchdog_timeouts(&f)?);
        f.assert_done();
        Ok(())
    }

    /// Three votes (three nodes): sbd set up without a disk, Pacemaker (started
    /// before sbd) restarted under maintenance mode and back online, maintenance mode left,
    /// then stonith-watchdog-timeout at twice the watchdog timeout — these commands, in this
    /// order.
    #[test]
    fn diskless_sbd_restarts_pacemaker_under_maintenance_then_sets_the_timeout() -> Result<()> {
        let crm = include_str!("../../../clusterd/tests/samples/crm_mon-3-nodes.xml")
            .replace("\"node1\"", "\"n1\"");
        let f = diskless_checks(Fake::new());
        let f = diskless_checks(f)
            .expect(&["systemctl", "enable", "sbd.service"], Reply::ok(""))
            .expect(&["systemctl", "start", "corosync.service"], Reply::ok(""))
            .expect(
                &["systemctl", "is-active", "sbd.service"],
                Reply::ok("active\n"),
            )
            .expect(
                &prop("maintenance-mode", &["--query", "--quiet"]),
                Reply::fail(6, "not found"),
            )
            .expect(
                &prop("maintenance-mode", &["--update", "true"]),
                Reply::ok(""),
            )
            .expect(
                &["systemctl", "is-active", "sbd.service"],
                Reply::ok("active\n"),
            )
            .expect(
                &[
                    "systemctl",
                    "show",
                    "--property=ActiveEnterTimestampMonotonic",
                    "--value",
                    "sbd.service",
                    "pacemaker.service",
                ],
                Reply::ok("9000000\n\n4000000\n"),
            )
            .expect(
                &["systemctl", "restart", "pacemaker.service"],
                Reply::ok(""),
            )
            .expect(&["crm_mon", "-1", "--output-as=xml"], Reply::ok(crm))
            .expect(&prop("maintenance-mode", &["--delete"]), Reply::ok(""))
            // a 35 s watchdog before: Keel had raised stonith-timeout to 90 s, which goes back
            .expect(
                &prop("stonith-watchdog-timeout", &["--query", "--quiet"]),
                Reply::ok("70s\n"),
            )
            .expect(
                &prop("stonith-timeout", &["--query", "--quiet"]),
                Reply::ok("90s\n"),
            )
            .expect(
                &prop("stonith-timeout", &["--update", "60s"]),
                Reply::ok(""),
            )
            .expect(
                &prop("stonith-watchdog-timeout", &["--update", "20s"]),
                Reply::ok(""),
            );
        let lab = testlab::systemd_single(f)?;
        votes(&lab, 3, false)?;
        configure_watchdog(&lab.node, &diskless(), &|_, _| {})?;
        // (the device is written in between, by `fencing`)
        set_watchdog_timeouts(lab.fake.as_ref(), &diskless())?;
        lab.fake.assert_done();
        let written = std::fs::read_to_string(&lab.paths.sbd_defaults)?;
        assert!(written.contains("SBD_DEVICE=\"\"\n"), "{written}");
        assert!(written.contains("SBD_WATCHDOG_TIMEOUT=10"), "{written}");
        Ok(())
    }

    /// With a QDevice, a watchdog timeout not above corosync-qdevice's sync_timeout is refused
    /// before anything runs (sbd would distrust the quorum and never finish starting).
    #[test]
    fn with_a_qdevice_the_watchdog_timeout_must_exceed_its_sync_timeout() -> Result<()> {
        let lab = testlab::systemd_single(Fake::new())?;
        votes(&lab, 2, true)?;
        let e = refusal(configure_watchdog(&lab.node, &diskless(), &|_, _| {}));
        lab.fake.assert_done();
        assert!(
            e.contains("sync_timeout (30 s)") && e.contains("watchdog_timeout=35"),
            "{e}"
        );
        assert!(!lab.paths.sbd_defaults.exists());
        Ok(())
    }

    /// sbd already running with a disk: a diskless setup is refused before anything is
    /// written, saying what runs and how to stop it (sbd reads its file only at start).
    #[test]
    fn a_running_sbd_with_another_configuration_is_refused() -> Result<()> {
        let f = Fake::new()
            .expect(&["test", "-x", "/usr/sbin/sbd"], Reply::ok(""))
            .expect(&["test", "-c", "/dev/watchdog"], Reply::ok(""))
            .expect(
                &["systemctl", "is-active", "sbd.service"],
                Reply::ok("active\n"),
            );
        let lab = testlab::systemd_single(f)?;
        votes(&lab, 3, false)?;
        let running = cfg();
        if let Some(d) = lab.paths.sbd_defaults.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&lab.paths.sbd_defaults, running.render())?;
        let e = refusal(configure_watchdog(&lab.node, &diskless(), &|_, _| {}));
        lab.fake.assert_done();
        assert!(
            e.contains(&format!(
                "already runs with another configuration (disk(s) {DEV}, watchdog timeout 15 s)"
            )) && e.contains("diskless (watchdog only), watchdog timeout 10 s")
                && e.contains("systemctl disable sbd && systemctl reboot"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&lab.paths.sbd_defaults)?,
            running.render()
        );
        Ok(())
    }

    /// A blank disk on a lone member: checked, formatted, read back, configured, started —
    /// these commands, in this order.
    #[test]
    fn a_blank_disk_is_formatted_then_sbd_starts_with_corosync() -> Result<()> {
        let f = checks(Fake::new())
            .expect(&["sbd", "-d", DEV, "dump"], Reply::fail(1, "no header"))
            .expect(&["blkid", "-p", "-o", "export", DEV], Reply::fail(2, ""))
            .expect(
                &["sbd", "-d", DEV, "-1", "15", "-4", "30", "create"],
                Reply::ok(""),
            )
            .expect(&["sbd", "-d", DEV, "dump"], Reply::ok(dump("u-1", 15)));
        let f = checks(f)
            .expect(&["sbd", "-d", DEV, "dump"], Reply::ok(dump("u-1", 15)))
            .expect(&["systemctl", "enable", "sbd.service"], Reply::ok(""))
            .expect(&["systemctl", "start", "corosync.service"], Reply::ok(""))
            .expect(
                &["systemctl", "is-active", "sbd.service"],
                Reply::Exit(keel_runner::Output {
                    code: Some(3),
                    stdout: "activating\n".into(),
                    stderr: String::new(),
                }),
            )
            .expect(
                &["systemctl", "is-active", "sbd.service"],
                Reply::ok("active\n"),
            );
        let lab = testlab::systemd_single(f)?;
        configure(&lab.node, &cfg(), &|_, _| {})?;
        lab.fake.assert_done();
        let written = std::fs::read_to_string(&lab.paths.sbd_defaults)?;
        assert!(
            written.contains(&format!("SBD_DEVICE=\"{DEV}\"")),
            "{written}"
        );
        assert!(written.contains("SBD_WATCHDOG_TIMEOUT=15"), "{written}");
        Ok(())
    }

    /// No watchdog: refused before anything is written or formatted, saying how to get one.
    #[test]
    fn no_watchdog_refuses_before_anything_changes() -> Result<()> {
        let f = Fake::new()
            .expect(&["test", "-x", "/usr/sbin/sbd"], Reply::ok(""))
            .expect(&["test", "-c", "/dev/watchdog"], Reply::fail(1, ""));
        let lab = testlab::systemd_single(f)?;
        let e = refusal(configure(&lab.node, &cfg(), &|_, _| {}));
        lab.fake.assert_done();
        assert!(
            e.contains("no watchdog device") && e.contains("modprobe softdog"),
            "{e}"
        );
        assert!(!lab.paths.sbd_defaults.exists());
        Ok(())
    }

    /// A disk holding a file system is never formatted.
    #[test]
    fn a_disk_with_data_is_refused() -> Result<()> {
        let f = checks(Fake::new())
            .expect(&["sbd", "-d", DEV, "dump"], Reply::fail(1, "no header"))
            .expect(
                &["blkid", "-p", "-o", "export", DEV],
                Reply::ok("DEVNAME=/dev/vdc\nUUID=x\nTYPE=ext4\nUSAGE=filesystem\n"),
            );
        let lab = testlab::systemd_single(f)?;
        let e = refusal(configure(&lab.node, &cfg(), &|_, _| {}));
        lab.fake.assert_done();
        assert!(
            e.contains("is not blank (TYPE=ext4)") && e.contains("wipefs -a"),
            "{e}"
        );
        Ok(())
    }

    /// A header with other timeouts is kept, and the refusal says which value keeps it.
    #[test]
    fn a_header_with_other_timeouts_is_not_rewritten() -> Result<()> {
        let f = checks(Fake::new()).expect(&["sbd", "-d", DEV, "dump"], Reply::ok(dump("u-1", 5)));
        let lab = testlab::systemd_single(f)?;
        let e = refusal(configure(&lab.node, &cfg(), &|_, _| {}));
        lab.fake.assert_done();
        assert!(e.contains("watchdog_timeout=5"), "{e}");
        Ok(())
    }

    /// Under Keel's own supervisor (the netns lab) sbd cannot start with corosync: refused.
    #[test]
    fn without_systemd_sbd_is_refused() -> Result<()> {
        let lab = testlab::clustered(&[(testlab::SELF, "192.0.2.1", "127.0.0.1:1")], Fake::new())?;
        let e = refusal(configure(&lab.node, &cfg(), &|_, _| {}));
        assert!(e.contains("needs the cluster stack under systemd"), "{e}");
        Ok(())
    }
}
