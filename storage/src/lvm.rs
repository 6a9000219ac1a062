//! LVM on shared storage, locked by lvmlockd (with DLM): a shared VG, its lockspace, and the
//! two activation modes Keel uses — shared (`-asy`, for the LV under GFS2, active on every
//! node) and exclusive (`-aey`, for a VM's raw disk: the lock manager refuses a second node).
//!
//! Under DRBD, LVM must see only the replicated device: if it also scanned the backing disk it
//! would find the same PV twice and might activate the stale one. [`global_filter`] renders the
//! `devices { global_filter }` rule that lets LVM see only what it should.

use std::time::Duration;

use keel_runner::Cmd;

const T: Duration = Duration::from_secs(60);

/// `vgcreate --shared`: a VG whose every change takes a DLM lock through lvmlockd.
pub fn vgcreate_shared(vg: &str, pv: &str) -> Cmd {
    Cmd::argv(&["vgcreate", "--shared", vg, pv]).timeout(T)
}

/// The tag on the shared VG of an `iscsi-lvm` pool: its LVs are VM disks, one each.
pub const VOLUMES_TAG: &str = "keel_volumes";

/// The VG of an `iscsi-lvm` pool: shared, tagged [`VOLUMES_TAG`].
pub fn vgcreate_volumes(vg: &str, pv: &str) -> Cmd {
    Cmd::argv(&["vgcreate", "--shared", "--addtag", VOLUMES_TAG, vg, pv]).timeout(T)
}

/// A VM disk in a shared VG, created active on this node only, so LVM zeroes its start and
/// wipes any signature a deleted disk left in those extents; [`lvchange`] `Off` releases it.
pub fn lvcreate_disk(vg: &str, lv: &str, bytes: u64) -> Cmd {
    Cmd::argv(&[
        "lvcreate",
        "-aey",
        "--wipesignatures",
        "y",
        "--yes",
        "-n",
        lv,
        "-L",
        &format!("{bytes}b"),
        vg,
    ])
    .timeout(T)
}

/// `lvremove` of one LV (lvmlockd refuses it while another node has it active).
pub fn lvremove(vg: &str, lv: &str) -> Cmd {
    Cmd::argv(&["lvremove", "--yes", &format!("{vg}/{lv}")]).timeout(T)
}

/// `lvextend` of one LV to `bytes`.
pub fn lvextend(vg: &str, lv: &str, bytes: u64) -> Cmd {
    Cmd::argv(&[
        "lvextend",
        "-L",
        &format!("{bytes}b"),
        &format!("{vg}/{lv}"),
    ])
    .timeout(T)
}

/// lvmlockd's refusal: another node holds the LV's lock (it has the LV active).
pub fn held_by_other_host(stderr: &str) -> bool {
    stderr.contains("locked by other host")
}

/// `vgchange --lock-start` of a VG whose lockspace already runs here: not a failure.
pub fn already_started(stderr: &str) -> bool {
    stderr.contains("already started") || stderr.contains("already running")
}

/// Join this node to the VG's lockspace (each node, after lvmlockd started).
pub fn lockstart(vg: &str) -> Cmd {
    Cmd::argv(&["vgchange", "--lock-start", vg]).timeout(T)
}

/// Leave the lockspace (before the node stops using the VG).
pub fn lockstop(vg: &str) -> Cmd {
    Cmd::argv(&["vgchange", "--lock-stop", vg]).timeout(T)
}

/// Create an LV, left inactive: Pacemaker (LVM-activate) or the VM start activates it.
pub fn lvcreate(vg: &str, lv: &str, size: LvSize) -> Cmd {
    let size = match size {
        LvSize::Bytes(b) => vec!["-L".to_string(), format!("{b}b")],
        LvSize::AllFree => vec!["-l".to_string(), "100%FREE".to_string()],
    };
    Cmd::argv(&["lvcreate", "-an", "-n", lv])
        .args(size)
        .arg(vg)
        .timeout(T)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LvSize {
    Bytes(u64),
    AllFree,
}

/// Activation a node takes on an LV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `-aey`: this node only; lvmlockd refuses it while another node holds the LV.
    Exclusive,
    /// `-asy`: every node at once (the LV under a cluster file system).
    Shared,
    /// `-an`: release.
    Off,
}

pub fn lvchange(vg: &str, lv: &str, a: Activation) -> Cmd {
    let flag = match a {
        Activation::Exclusive => "-aey",
        Activation::Shared => "-asy",
        Activation::Off => "-an",
    };
    Cmd::argv(&["lvchange", flag, &format!("{vg}/{lv}")]).timeout(T)
}

/// The `devices { global_filter = [...] }` line of lvm.conf on a node that holds a DRBD
/// backing disk: DRBD devices and the node's own `pvs` (its local VG, a shared iSCSI LUN, each
/// by one exact path) are accepted, everything else rejected.
///
/// An accept-list, not a reject-list, because LVM sees a disk under several names (`/dev/vdb`,
/// `/dev/disk/by-id/…`, `/dev/disk/by-path/…`) and accepts a device when *any* of its names
/// matches an accept rule before a reject rule: rejecting the backing disk by one name and
/// accepting the rest would let it in through an alias. Accepting one name of each wanted PV
/// and rejecting all else cannot leak.
pub fn global_filter(pvs: &[&str]) -> String {
    let mut rules = vec!["\"a|^/dev/drbd[0-9]+$|\"".to_string()];
    rules.extend(pvs.iter().map(|d| format!("\"a|^{}$|\"", regex_escape(d))));
    rules.push("\"r|.*|\"".into());
    format!("global_filter = [ {} ]", rules.join(", "))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if ".+*?()[]{}^$|\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv() {
        assert_eq!(
            vgcreate_shared("keel-vmstore", "/dev/drbd0").to_argv(),
            ["vgcreate", "--shared", "keel-vmstore", "/dev/drbd0"]
        );
        assert_eq!(
            lvcreate("vg", "vm-100-disk-0", LvSize::Bytes(1 << 30)).to_argv(),
            [
                "lvcreate",
                "-an",
                "-n",
                "vm-100-disk-0",
                "-L",
                "1073741824b",
                "vg"
            ]
        );
        assert_eq!(
            lvchange("vg", "vm-100-disk-0", Activation::Exclusive).to_argv(),
            ["lvchange", "-aey", "vg/vm-100-disk-0"]
        );
    }

    #[test]
    fn disk_argv() {
        assert_eq!(
            vgcreate_volumes("keel-san", "/dev/sdb").to_argv(),
            [
                "vgcreate",
                "--shared",
                "--addtag",
                "keel_volumes",
                "keel-san",
                "/dev/sdb"
            ]
        );
        assert_eq!(
            lvcreate_disk("keel-san", "vm-100-disk-0", 1 << 30).to_argv(),
            [
                "lvcreate",
                "-aey",
                "--wipesignatures",
                "y",
                "--yes",
                "-n",
                "vm-100-disk-0",
                "-L",
                "1073741824b",
                "keel-san"
            ]
        );
        assert_eq!(
            lvremove("keel-san", "d0").to_argv(),
            ["lvremove", "--yes", "keel-san/d0"]
        );
        assert_eq!(
            lvextend("keel-san", "d0", 2 << 30).to_argv(),
            ["lvextend", "-L", "2147483648b", "keel-san/d0"]
        );
        assert!(held_by_other_host(
            "  LV locked by other host: keel-san/d0\n  Failed to lock logical volume keel-san/d0.\n"
        ));
    }

    #[test]
    fn filter_accepts_drbd_and_named_pvs_only() {
        assert_eq!(
            global_filter(&[
                "/dev/vda5",
                "/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-x.1-lun-0"
            ]),
            "global_filter = [ \"a|^/dev/drbd[0-9]+$|\", \"a|^/dev/vda5$|\", \
             \"a|^/dev/disk/by-path/ip-10\\.0\\.0\\.1:3260-iscsi-x\\.1-lun-0$|\", \"r|.*|\" ]"
        );
    }
}
