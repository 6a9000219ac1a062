//! GFS2 on a shared block device, locked through DLM.
//!
//! The lock table is `CLUSTER:FS`: the kernel refuses to mount it in a cluster of another name,
//! which is what keeps a file system from being mounted by a cluster that does not fence for
//! it. A GFS2 mount needs a journal per node that mounts it; Keel makes one per node plus a
//! spare, and adds journals with `gfs2_jadd` when the cluster grows past them.

use std::time::Duration;

use keel_runner::Cmd;

use crate::StorageError;

/// The size of each journal Keel makes (mkfs.gfs2's default, 128 MiB, leaves little of a small
/// disk once every node has one).
pub const JOURNAL_MIB: u32 = 32;

/// A GFS2 file system as Keel creates it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gfs2 {
    /// The corosync cluster name (`totem.cluster_name`).
    pub cluster: String,
    /// The file system's name in the lock table (the pool name).
    pub fs: String,
    /// Journals: one per node that may mount it, plus a spare.
    pub journals: u32,
    pub device: String,
}

impl Gfs2 {
    /// For `nodes` cluster members: one journal each plus one spare.
    pub fn for_nodes(cluster: &str, fs: &str, device: &str, nodes: u32) -> Self {
        Gfs2 {
            cluster: cluster.into(),
            fs: fs.into(),
            journals: nodes + 1,
            device: device.into(),
        }
    }

    pub fn lock_table(&self) -> String {
        format!("{}:{}", self.cluster, self.fs)
    }

    pub fn validate(&self) -> Result<(), StorageError> {
        let mut why = Vec::new();
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        // mkfs.gfs2's own limits: cluster name ≤ 32, file system name ≤ 30.
        if !ok(&self.cluster) || self.cluster.len() > 32 {
            why.push(format!(
                "cluster name {:?} cannot be a GFS2 lock table part (1-32 of A-Z a-z 0-9 - _)",
                self.cluster
            ));
        }
        if !ok(&self.fs) || self.fs.len() > 30 {
            why.push(format!(
                "file system name {:?} cannot be a GFS2 lock table part (1-30 of A-Z a-z 0-9 - _)",
                self.fs
            ));
        }
        if self.journals < 2 {
            why.push(format!(
                "{} journal(s): a cluster file system needs one per node plus a spare",
                self.journals
            ));
        }
        if !self.device.starts_with("/dev/") {
            why.push(format!("device {:?} is not under /dev/", self.device));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(StorageError::Invalid(why.join("; ")))
        }
    }

    /// `mkfs.gfs2` without questions (`-O`): the device-safety probe has already refused a
    /// device with a signature unless the operator asked for a wipe.
    pub fn mkfs(&self) -> Cmd {
        Cmd::argv(&[
            "mkfs.gfs2",
            "-O",
            "-p",
            "lock_dlm",
            "-t",
            &self.lock_table(),
            "-j",
            &self.journals.to_string(),
            &self.device,
        ])
        .timeout(Duration::from_secs(300))
    }

    /// [`Self::mkfs`] with journals of `mib` MiB (mkfs.gfs2's default, 128 MiB, leaves little
    /// of a small disk once every node has one).
    pub fn mkfs_with_journal_mib(&self, mib: u32) -> Cmd {
        Cmd::argv(&[
            "mkfs.gfs2",
            "-O",
            "-p",
            "lock_dlm",
            "-t",
            &self.lock_table(),
            "-j",
            &self.journals.to_string(),
            "-J",
            &mib.to_string(),
            &self.device,
        ])
        .timeout(Duration::from_secs(300))
    }

    /// Journals to add so that `nodes` members plus a spare each have one, given the count the
    /// mounted file system reports; `None` when there are enough.
    pub fn journals_to_add(have: u32, nodes: u32) -> Option<u32> {
        (nodes + 1).checked_sub(have).filter(|n| *n > 0)
    }

    /// `gfs2_jadd` on a mounted file system (any one node), journals of `mib` MiB (the size
    /// Keel's `mkfs.gfs2` gave the first ones).
    pub fn jadd(mountpoint: &str, add: u32, mib: u32) -> Cmd {
        Cmd::argv(&[
            "gfs2_jadd",
            "-j",
            &add.to_string(),
            "-J",
            &mib.to_string(),
            mountpoint,
        ])
        .timeout(Duration::from_secs(300))
    }

    /// `blockdev --flushbufs DEV`: drop the device's cached blocks before [`Self::jindex`]
    /// reads it. GFS2 writes its metadata through its own cache, not the block device's, so a
    /// node that read the index through the device before a `gfs2_jadd` would read its old copy.
    pub fn flushbufs(device: &str) -> Cmd {
        Cmd::argv(&["blockdev", "--flushbufs", device]).timeout(Duration::from_secs(60))
    }

    /// `gfs2_edit -p jindex DEV`: the journal index, read from the device (reads only; the
    /// index changes only through `gfs2_jadd`; [`Self::flushbufs`] first).
    pub fn jindex(device: &str) -> Cmd {
        Cmd::argv(&["gfs2_edit", "-p", "jindex", device]).timeout(Duration::from_secs(60))
    }

    /// The journals [`Self::jindex`] lists (its `File    journalN` entries).
    pub fn parse_jindex(text: &str) -> u32 {
        text.lines()
            .filter(|l| {
                let mut w = l.split_whitespace().rev();
                matches!(
                    (w.next(), w.next()),
                    (Some(name), Some("File"))
                        if name.strip_prefix("journal").is_some_and(|n| {
                            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                        })
                )
            })
            .count() as u32
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_argv() {
        let g = Gfs2::for_nodes("lab", "vmstore", "/dev/keel-vmstore/fs", 2);
        g.validate().unwrap();
        assert_eq!(
            g.mkfs().to_argv(),
            [
                "mkfs.gfs2",
                "-O",
                "-p",
                "lock_dlm",
                "-t",
                "lab:vmstore",
                "-j",
                "3",
                "/dev/keel-vmstore/fs"
            ]
        );
    }

    #[test]
    fn journals_follow_the_cluster() {
        assert_eq!(Gfs2::journals_to_add(3, 2), None);
        assert_eq!(Gfs2::journals_to_add(3, 3), Some(1));
        assert_eq!(Gfs2::journals_to_add(3, 5), Some(3));
    }

    /// Captured from `gfs2_edit -p jindex` (gfs2-utils 3.5.0) on a file system made with
    /// `mkfs.gfs2 -j 3`.
    #[test]
    fn jindex_counts_the_journals() {
        let out = "Block #2073    (0x819) of 76800 (0x12c00) (inode)\n\
            --------------- Journal Index ------------------\n\
            Dinode:\n  mh_magic              0x01161970(hex)\n  di_entries            5                   0x5\n\n\
            Directory block: lf_depth:0, lf_entries:0, lf_inode: 0x0, lf_dist: 0, lf_nsec: 0, lf_sec: 0, fmt:0 next=0x0 (5 dirents).\n   \
            1/1 [0ED4E242] 5/2073 (0x5/0x819) +0: Dir     .\n   \
            2/2 [9608161C] 4/2072 (0x4/0x818) +0: Dir     ..\n   \
            3/3 [FC7745EB] 1/18 (0x1/0x12) +0: File    journal0\n   \
            4/4 [8B70757D] 2/2075 (0x2/0x81b) +0: File    journal1\n   \
            5/5 [127924C7] 3/4132 (0x3/0x1024) +0: File    journal2\n\
            ------------------------------------------------------\n";
        assert_eq!(Gfs2::parse_jindex(out), 3);
        assert_eq!(
            Gfs2::parse_jindex("Failed to open '(null)': Bad address\n"),
            0
        );
        assert_eq!(
            Gfs2::jadd("/var/lib/keel/pools/shared", 1, 32).to_argv(),
            [
                "gfs2_jadd",
                "-j",
                "1",
                "-J",
                "32",
                "/var/lib/keel/pools/shared"
            ]
        );
    }

    #[test]
    fn bad_names() {
        let mut g = Gfs2::for_nodes("a:b", &"x".repeat(31), "vdb", 1);
        g.journals = 1;
        let e = g.validate().unwrap_err().to_string();
        assert!(e.contains("cluster name \"a:b\""), "{e}");
        assert!(e.contains("file system name"), "{e}");
        assert!(e.contains("1 journal(s)"), "{e}");
        assert!(e.contains("device \"vdb\""), "{e}");
    }
}
