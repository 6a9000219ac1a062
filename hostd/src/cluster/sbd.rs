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
}

pub(super) fn apply_peer(cs: &ClusterState, name: &str, p: &SbdPeer) -> Result<()> {
    match p {
        SbdPeer::Check(c) => check(cs, name, c),
        SbdPeer::Start { config, uuids } => start(cs, name, config, uuids),
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
    Ok(())
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
    r.run_ok(&systemctl(&["start", "corosync.service"]))
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
pub(super) fn configure(node: &Node, c: &SbdConfig) -> Result<()> {
    let cs = &node.cluster;
    let me = node.cfg.node.as_str();
    check(cs, me, c)?;
    push(node, SbdPeer::Check(c.clone()))?;
    let uuids = format(cs, c)?;
    start(cs, me, c, &uuids)?;
    push(
        node,
        SbdPeer::Start {
            config: c.clone(),
            uuids,
        },
    )
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

    fn checks(f: Fake) -> Fake {
        f.expect(&["test", "-x", "/usr/sbin/sbd"], Reply::ok(""))
            .expect(&["test", "-c", "/dev/watchdog"], Reply::ok(""))
            .expect(&["test", "-b", DEV], Reply::ok(""))
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
        configure(&lab.node, &cfg())?;
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
        let e = refusal(configure(&lab.node, &cfg()));
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
        let e = refusal(configure(&lab.node, &cfg()));
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
        let e = refusal(configure(&lab.node, &cfg()));
        lab.fake.assert_done();
        assert!(e.contains("watchdog_timeout=5"), "{e}");
        Ok(())
    }

    /// Under Keel's own supervisor (the netns lab) sbd cannot start with corosync: refused.
    #[test]
    fn without_systemd_sbd_is_refused() -> Result<()> {
        let lab = testlab::clustered(&[(testlab::SELF, "192.0.2.1", "127.0.0.1:1")], Fake::new())?;
        let e = refusal(configure(&lab.node, &cfg()));
        assert!(e.contains("needs the cluster stack under systemd"), "{e}");
        Ok(())
    }
}
