//! GFS2 on a shared block device, locked through DLM.
//!
//! The lock table is `CLUSTER:FS`: the kernel refuses to mount it in a cluster of another name,
//! which is what keeps a file system from being mounted by a cluster that does not fence for
//! it. A GFS2 mount needs a journal per node that mounts it; Keel makes one per node plus a
//! spare, and adds journals with `gfs2_jadd` when the cluster grows past them.

use std::time::Duration;

use keel_runner::Cmd;

use crate::StorageError;

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

    /// `gfs2_jadd` on a mounted file system (any one node).
    pub fn jadd(mountpoint: &str, add: u32) -> Cmd {
        Cmd::argv(&["gfs2_jadd", "-j", &add.to_string(), mountpoint])
            .timeout(Duration::from_secs(300))
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
