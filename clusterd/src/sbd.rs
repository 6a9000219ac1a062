//! SBD (storage-based death): the sbd daemon's configuration (`/etc/default/sbd`), the
//! commands that format and read an SBD disk, and parsers of their output.
//!
//! With a shared disk, each node's sbd watches its slot on the disk and feeds a watchdog
//! (`/dev/watchdog`: the board's, or `softdog`). `fence_sbd` fences a node by writing a `reset`
//! (or `off`) message into its slot; the node's sbd reads it and resets the machine at once,
//! and a node whose sbd stops feeding the watchdog is reset by the watchdog itself. The writer
//! waits `msgwait` (twice the watchdog timeout) and then counts the node as fenced.
//!
//! Must not: run anything (hostd's `cluster::sbd` runs these commands through its runner).

use std::time::Duration;

use keel_runner::Cmd;
use serde::{Deserialize, Serialize};

/// The watchdog timeout Keel formats an SBD disk with unless told otherwise (SUSE's and sbd's
/// own default); `msgwait` is twice it.
pub const DEFAULT_WATCHDOG_TIMEOUT_S: u32 = 5;
/// Bounds of the watchdog timeout. Above 20 s, msgwait (40 s) plus the agent's start-up would
/// approach Pacemaker's default 60 s `stonith-timeout`.
pub const WATCHDOG_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 3..=20;
/// corosync-qdevice's `sync_timeout` (its default; Keel does not change it). sbd trusts a
/// quorum that counts a QDevice's vote only when its watchdog timeout is longer: otherwise it
/// stays `activating` at start ("quorum using qdevice is distrusted").
pub const QDEVICE_SYNC_TIMEOUT_S: u32 = 30;
/// Diskless SBD's watchdog timeout with a QDevice unless told otherwise: above
/// [`QDEVICE_SYNC_TIMEOUT_S`], as crmsh chooses.
pub const DISKLESS_QDEVICE_TIMEOUT_S: u32 = 35;
/// Bounds of a diskless SBD's watchdog timeout (no msgwait; Keel raises `stonith-timeout`
/// above twice it).
/// Up to 40 s: a diskless node delays its sbd start (and so its stack) by twice the timeout
/// at boot, and systemd gives `sbd.service` 90 s to start.
pub const DISKLESS_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 3..=40;
/// The watchdog device sbd feeds.
pub const WATCHDOG_DEV: &str = "/dev/watchdog";
/// The sbd daemon's unit: `RefuseManualStart`, started with corosync (`RequiredBy=`).
pub const UNIT: &str = "sbd.service";

/// One cluster's SBD setup: the shared disks and the watchdog timeout they are formatted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SbdConfig {
    /// Stable paths (`/dev/disk/by-id/...`) of 1 to 3 shared disks, the same on every node;
    /// none: diskless SBD (watchdog only, fencing by Pacemaker's `stonith-watchdog-timeout`).
    pub devices: Vec<String>,
    pub watchdog_timeout_s: u32,
}

impl SbdConfig {
    /// Watchdog only: no shared disk.
    pub fn diskless(&self) -> bool {
        self.devices.is_empty()
    }

    /// Pacemaker's `stonith-watchdog-timeout` for diskless SBD: how long the fencer waits
    /// before it counts a node that was told to die (or lost quorum) as reset by its watchdog.
    /// Twice the watchdog timeout, as sbd's own documentation advises (Pacemaker refuses a
    /// value not above it).
    pub fn stonith_watchdog_timeout_s(&self) -> u32 {
        self.watchdog_timeout_s * 2
    }

    /// The configuration `/etc/default/sbd` holds (the disks and the watchdog timeout), as
    /// sbd reads it at start; None when the file sets no timeout Keel can read.
    pub fn parse_defaults(text: &str) -> Option<SbdConfig> {
        let mut devices = None;
        let mut timeout = None;
        for l in text.lines() {
            let Some((k, v)) = l.trim().split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "SBD_DEVICE" => {
                    devices = Some(
                        v.split(';')
                            .map(str::trim)
                            .filter(|d| !d.is_empty())
                            .map(str::to_string)
                            .collect::<Vec<_>>(),
                    )
                }
                "SBD_WATCHDOG_TIMEOUT" => timeout = v.parse().ok(),
                _ => {}
            }
        }
        Some(SbdConfig {
            devices: devices.unwrap_or_default(),
            watchdog_timeout_s: timeout?,
        })
    }

    /// How an operator reads this configuration.
    pub fn describe(&self) -> String {
        if self.diskless() {
            format!(
                "diskless (watchdog only), watchdog timeout {} s",
                self.watchdog_timeout_s
            )
        } else {
            format!(
                "disk(s) {}, watchdog timeout {} s",
                self.devices.join(", "),
                self.watchdog_timeout_s
            )
        }
    }

    /// `msgwait`: how long a fencer waits after writing the message before it counts the
    /// target as dead.
    pub fn msgwait_s(&self) -> u32 {
        self.watchdog_timeout_s * 2
    }

    /// What makes this configuration unusable, in words an operator can act on.
    pub fn validate(&self) -> Result<(), String> {
        if self.diskless() {
            if !DISKLESS_TIMEOUT_RANGE.contains(&self.watchdog_timeout_s) {
                return Err(format!(
                    "watchdog_timeout {} s is out of range: use {} to {} seconds",
                    self.watchdog_timeout_s,
                    DISKLESS_TIMEOUT_RANGE.start(),
                    DISKLESS_TIMEOUT_RANGE.end()
                ));
            }
        } else if !WATCHDOG_TIMEOUT_RANGE.contains(&self.watchdog_timeout_s) {
            return Err(format!(
                "watchdog_timeout {} s is out of range: use {} to {} seconds (msgwait is twice it, \
                 and must stay inside Pacemaker's 60 s stonith-timeout)",
                self.watchdog_timeout_s,
                WATCHDOG_TIMEOUT_RANGE.start(),
                WATCHDOG_TIMEOUT_RANGE.end()
            ));
        }
        if self.devices.len() > 3 {
            return Err(format!(
                "sbd takes 1 to 3 shared disks (or none: diskless), got {}",
                self.devices.len()
            ));
        }
        for d in &self.devices {
            if !d.starts_with("/dev/disk/by-")
                || d.contains(|c: char| c.is_whitespace() || c == ',' || c == '"' || c == ';')
            {
                return Err(format!(
                    "{d:?} is not a stable device path: use /dev/disk/by-id/... or /dev/disk/by-path/..."
                ));
            }
        }
        Ok(())
    }

    /// `/etc/default/sbd` (read by `sbd.service`'s `EnvironmentFile=`): Debian's defaults with
    /// the disks (none for diskless SBD: sbd then only feeds the watchdog while the node is
    /// quorate and Pacemaker is healthy) and the timeout set. `SBD_STARTMODE=always`: a node reset by a fence test comes
    /// back into the cluster by itself, as with the other agents.
    pub fn render(&self) -> String {
        format!(
            "# Written by Keel (keel fence add --agent sbd|watchdog); Keel rewrites it on every change.\n\
             SBD_DEVICE=\"{}\"\n\
             SBD_PACEMAKER=yes\n\
             SBD_STARTMODE=always\n\
             SBD_DELAY_START={}\n\
             SBD_WATCHDOG_DEV={WATCHDOG_DEV}\n\
             SBD_WATCHDOG_TIMEOUT={}\n\
             SBD_TIMEOUT_ACTION=flush,reboot\n\
             SBD_MOVE_TO_ROOT_CGROUP=auto\n\
             SBD_SYNC_RESOURCE_STARTUP=yes\n\
             SBD_OPTS=\n",
            self.devices.join(";"),
            // diskless: a node reset by its watchdog waits twice the timeout at boot before its
            // stack starts, so it cannot rejoin before the fencer counted it as fenced
            if self.diskless() { "yes" } else { "no" },
            self.watchdog_timeout_s
        )
    }
}

/// An SBD disk's header, from `sbd -d DEV dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbdHeader {
    pub uuid: String,
    pub slots: u32,
    pub watchdog_timeout_s: u32,
    pub msgwait_s: u32,
}

/// Parse `sbd -d DEV dump`; None when it shows no header.
pub fn parse_dump(out: &str) -> Option<SbdHeader> {
    let field = |name: &str| -> Option<&str> {
        out.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim())
        })
    };
    Some(SbdHeader {
        uuid: field("UUID")?.to_string(),
        slots: field("Number of slots")?.parse().ok()?,
        watchdog_timeout_s: field("Timeout (watchdog)")?.parse().ok()?,
        msgwait_s: field("Timeout (msgwait)")?.parse().ok()?,
    })
}

/// One slot of `sbd -d DEV list`: slot number, node name, pending message (`clear`, `reset`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SbdSlot {
    pub slot: u32,
    pub node: String,
    pub message: String,
}

/// Parse `sbd -d DEV list` (`0\tnode1\tclear\t` per allocated slot).
pub fn parse_list(out: &str) -> Vec<SbdSlot> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(SbdSlot {
                slot: f.next()?.parse().ok()?,
                node: f.next()?.to_string(),
                message: f.next()?.to_string(),
            })
        })
        .collect()
}

/// `sbd -d DEV dump`: the header (fails when the disk has none).
pub fn dump(dev: &str) -> Cmd {
    Cmd::argv(&["sbd", "-d", dev, "dump"]).timeout(Duration::from_secs(30))
}

/// `sbd -d DEV list`: the allocated slots and their messages.
pub fn list(dev: &str) -> Cmd {
    Cmd::argv(&["sbd", "-d", dev, "list"]).timeout(Duration::from_secs(30))
}

/// `sbd -d DEV -1 W -4 M create`: write a fresh header (every slot cleared).
pub fn create(dev: &str, watchdog_s: u32, msgwait_s: u32) -> Cmd {
    Cmd::argv(&[
        "sbd",
        "-d",
        dev,
        "-1",
        &watchdog_s.to_string(),
        "-4",
        &msgwait_s.to_string(),
        "create",
    ])
    .timeout(Duration::from_secs(60))
}

/// `blkid -p -o export DEV`: a signature on the disk (exit 2: none found).
pub fn probe(dev: &str) -> Cmd {
    Cmd::argv(&["blkid", "-p", "-o", "export", dev]).timeout(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As sbd 1.5.2 prints it (captured in the VM lab).
    const DUMP: &str = "==Dumping header on disk /dev/disk/by-id/virtio-keel-sbd\n\
        Header version     : 2.1\n\
        UUID               : 6b3c0a2e-4a4b-4bd2-9a36-0c1d2f7e9a10\n\
        Number of slots    : 255\n\
        Sector size        : 512\n\
        Timeout (watchdog) : 15\n\
        Timeout (allocate) : 2\n\
        Timeout (loop)     : 1\n\
        Timeout (msgwait)  : 30\n\
        ==Header on disk /dev/disk/by-id/virtio-keel-sbd is dumped\n";

    #[test]
    fn the_header_is_read_from_dump() {
        assert_eq!(
            parse_dump(DUMP),
            Some(SbdHeader {
                uuid: "6b3c0a2e-4a4b-4bd2-9a36-0c1d2f7e9a10".into(),
                slots: 255,
                watchdog_timeout_s: 15,
                msgwait_s: 30
            })
        );
        assert_eq!(parse_dump("sbd failed; please check the logs.\n"), None);
    }

    #[test]
    fn slots_are_read_from_list() {
        assert_eq!(
            parse_list("0\tnode1\tclear\t\n1\tnode2\treset\tnode1\n"),
            vec![
                SbdSlot {
                    slot: 0,
                    node: "node1".into(),
                    message: "clear".into()
                },
                SbdSlot {
                    slot: 1,
                    node: "node2".into(),
                    message: "reset".into()
                }
            ]
        );
    }

    #[test]
    fn the_defaults_file_is_golden() {
        let c = SbdConfig {
            devices: vec!["/dev/disk/by-id/virtio-keel-sbd".into()],
            watchdog_timeout_s: 15,
        };
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/sbd.default");
        if std::env::var_os("KEEL_BLESS").is_some() {
            std::fs::write(path, c.render()).expect("bless");
        }
        let want = std::fs::read_to_string(path).expect("golden sbd.default");
        assert_eq!(c.render(), want);
        assert_eq!(c.msgwait_s(), 30);
    }

    fn refusal(c: SbdConfig) -> String {
        match c.validate() {
            Ok(()) => panic!("{c:?} accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn bad_configurations_say_what_to_use() {
        let ok = SbdConfig {
            devices: vec!["/dev/disk/by-id/x".into()],
            watchdog_timeout_s: 5,
        };
        assert_eq!(ok.validate(), Ok(()));
        let e = refusal(SbdConfig {
            watchdog_timeout_s: 60,
            ..ok.clone()
        });
        assert!(e.contains("3 to 20 seconds"), "{e}");
        let e = refusal(SbdConfig {
            devices: vec!["/dev/sdb".into()],
            ..ok.clone()
        });
        assert!(e.contains("/dev/disk/by-id/"), "{e}");
        let e = refusal(SbdConfig {
            devices: vec!["/dev/disk/by-id/a".into(); 4],
            ..ok.clone()
        });
        assert!(e.contains("1 to 3"), "{e}");
        assert_eq!(
            SbdConfig {
                devices: vec![],
                ..ok
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn the_diskless_defaults_file_is_golden_and_reads_back() {
        let c = SbdConfig {
            devices: vec![],
            watchdog_timeout_s: 5,
        };
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/sbd-diskless.default"
        );
        if std::env::var_os("KEEL_BLESS").is_some() {
            std::fs::write(path, c.render()).expect("bless");
        }
        let want = std::fs::read_to_string(path).expect("golden sbd-diskless.default");
        assert_eq!(c.render(), want);
        assert!(c.diskless());
        assert_eq!(c.stonith_watchdog_timeout_s(), 10);
        assert_eq!(SbdConfig::parse_defaults(&want), Some(c));
        let disk = SbdConfig {
            devices: vec!["/dev/disk/by-id/a".into(), "/dev/disk/by-id/b".into()],
            watchdog_timeout_s: 15,
        };
        assert_eq!(SbdConfig::parse_defaults(&disk.render()), Some(disk));
        // Debian's own file as installed: every line commented out
        assert_eq!(
            SbdConfig::parse_defaults("#SBD_DEVICE=\n#SBD_WATCHDOG_TIMEOUT=5\n"),
            None
        );
    }
}
