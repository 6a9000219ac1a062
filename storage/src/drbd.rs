//! A DRBD 8.4 resource replicated between exactly two nodes, rendered as a `.res` file.
//!
//! The policies are the seeds' and are not options: protocol C (a write completes when both
//! disks have it), the automatic split-brain recovery that only ever discards a side with no
//! changes or a secondary (`after-sb-0pri discard-zero-changes`, `after-sb-1pri
//! discard-secondary`, `after-sb-2pri disconnect`: with two primaries nobody's data is thrown
//! away silently), and `fencing resource-and-stonith` with the crm-fence-peer handlers, so a
//! primary that loses its peer freezes I/O until Pacemaker has fenced it. Dual-primary
//! (`allow-two-primaries`) is a separate rendering step, only once both sides are UpToDate.

use std::fmt::Write as _;
use std::net::IpAddr;

use keel_runner::Cmd;
use std::time::Duration;

use crate::{check_name, StorageError};

/// Where the DRBD 8.4 user-space tools live (drbd-utils ships them beside the DRBD 9 ones and
/// picks by the loaded kernel module; Keel calls the 8.4 ones by path so that a host without
/// the module parses the same way).
pub const DRBDADM: &str = "/usr/lib/drbd/drbdadm-84";
/// The directory drbdadm reads resources from.
pub const RES_DIR: &str = "/etc/drbd.d";
/// Where the split-brain handler leaves one marker per resource (`split_brain`).
pub const SPLIT_BRAIN_DIR: &str = "/run/keel/drbd-split-brain";

/// One side of the resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrbdPeer {
    /// The node's name as corosync and `uname -n` know it (drbdadm matches `on NAME`).
    pub node: String,
    /// The replication address (a cluster link address).
    pub address: IpAddr,
    /// The backing block device, e.g. `/dev/vdb` or `/dev/disk/by-id/…`.
    pub disk: String,
}

/// A two-node DRBD resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrbdResource {
    pub name: String,
    /// `/dev/drbd{minor}`.
    pub minor: u32,
    pub port: u16,
    pub peers: Vec<DrbdPeer>,
    /// Render `allow-two-primaries yes` (and `become-primary-on both`). Only set once both
    /// disks are UpToDate; the initial sync runs single-primary.
    pub dual_primary: bool,
    /// The peers authenticate each other with HMAC-SHA256 over this secret. The `.res` file
    /// holding it is written 0600.
    pub shared_secret: String,
    /// Resync rate cap in KiB/s (DRBD 8.4's dynamic controller: `c-max-rate`).
    pub resync_max_kib: u32,
}

impl DrbdResource {
    /// The replicated device the file system or LVM sits on.
    pub fn device(&self) -> String {
        format!("/dev/drbd{}", self.minor)
    }

    /// Everything wrong with the resource, in one error, before anything touches a disk.
    pub fn validate(&self) -> Result<(), StorageError> {
        let mut why = Vec::new();
        if let Err(e) = check_name("DRBD resource", &self.name, 32) {
            why.push(e.to_string());
        }
        match self.peers.len() {
            2 => {}
            n if n > 2 => why.push(format!(
                "a DRBD pool replicates between exactly two nodes, not {n} ({}): use an \
                 iscsi-gfs2 or iscsi-lvm pool for three nodes or more",
                self.peers
                    .iter()
                    .map(|p| p.node.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            n => why.push(format!(
                "a DRBD pool needs two nodes, {n} given: join a second node first"
            )),
        }
        if self.peers.len() == 2 {
            if self.peers[0].node == self.peers[1].node {
                why.push(format!(
                    "both sides are on node {:?}: name two different nodes",
                    self.peers[0].node
                ));
            }
            if self.peers[0].address == self.peers[1].address {
                why.push(format!(
                    "both sides use address {}: give each node its own replication address",
                    self.peers[0].address
                ));
            }
        }
        for p in &self.peers {
            if p.node.is_empty() || p.node.contains(char::is_whitespace) {
                why.push(format!("node name {:?} is not a host name", p.node));
            }
            if !p.disk.starts_with("/dev/")
                || p.disk.contains(char::is_whitespace)
                || p.disk.contains(['"', ';', '{', '}'])
            {
                why.push(format!(
                    "node {}: disk {:?} is not a block device path under /dev/",
                    p.node, p.disk
                ));
            }
            if p.address.is_unspecified() || p.address.is_loopback() {
                why.push(format!(
                    "node {}: address {} cannot carry replication traffic: use the node's \
                     cluster link address",
                    p.node, p.address
                ));
            }
        }
        if self.port < 1024 {
            why.push(format!(
                "port {} is privileged: DRBD ports are conventionally 7788 and up",
                self.port
            ));
        }
        if self.minor > 1_048_575 {
            why.push(format!("minor {} is out of range", self.minor));
        }
        if self.shared_secret.len() < 16
            || !self
                .shared_secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            why.push(
                "the shared secret must be 16+ characters of letters, digits, '-' or '_' \
                 (Keel generates one)"
                    .into(),
            );
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(StorageError::Invalid(why.join("; ")))
        }
    }

    /// The `.res` file. Validate first: rendering does not re-check.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Written by Keel; changes here are overwritten.");
        let _ = writeln!(s, "resource {} {{", self.name);
        let _ = writeln!(s, "  protocol C;");
        if self.dual_primary {
            let _ = writeln!(s, "  startup {{\n    become-primary-on both;\n  }}");
        }
        let _ = writeln!(s, "  net {{");
        if self.dual_primary {
            let _ = writeln!(s, "    allow-two-primaries yes;");
        }
        let _ = writeln!(s, "    after-sb-0pri discard-zero-changes;");
        let _ = writeln!(s, "    after-sb-1pri discard-secondary;");
        let _ = writeln!(s, "    after-sb-2pri disconnect;");
        let _ = writeln!(s, "    cram-hmac-alg sha256;");
        let _ = writeln!(s, "    shared-secret \"{}\";", self.shared_secret);
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "  disk {{");
        let _ = writeln!(s, "    fencing resource-and-stonith;");
        let _ = writeln!(s, "    c-max-rate {}k;", self.resync_max_kib);
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "  handlers {{");
        let _ = writeln!(s, "    fence-peer \"/usr/lib/drbd/crm-fence-peer.sh\";");
        let _ = writeln!(
            s,
            "    after-resync-target \"/usr/lib/drbd/crm-unfence-peer.sh\";"
        );
        // drbdadm runs handlers through `sh -c` with DRBD_RESOURCE set: the marker tells
        // `keel storage status` that this StandAlone is a split brain (split_brain module)
        let _ = writeln!(
            s,
            "    split-brain \"mkdir -p {SPLIT_BRAIN_DIR} && touch {SPLIT_BRAIN_DIR}/$DRBD_RESOURCE; /usr/lib/drbd/notify-split-brain.sh root\";"
        );
        let _ = writeln!(s, "  }}");
        for p in &self.peers {
            let addr = match p.address {
                IpAddr::V4(a) => format!("ipv4 {a}:{}", self.port),
                IpAddr::V6(a) => format!("ipv6 [{a}]:{}", self.port),
            };
            let _ = writeln!(s, "  on {} {{", p.node);
            let _ = writeln!(s, "    device {} minor {};", self.device(), self.minor);
            let _ = writeln!(s, "    disk {};", p.disk);
            let _ = writeln!(s, "    meta-disk internal;");
            let _ = writeln!(s, "    address {addr};");
            let _ = writeln!(s, "  }}");
        }
        let _ = writeln!(s, "}}");
        s
    }

    /// Where the resource file goes.
    pub fn res_path(&self) -> String {
        format!("{RES_DIR}/{}.res", self.name)
    }

    /// Bring the resource up on this node: write the `.res` (0600, through stdin so the secret
    /// is on no command line), check it with drbdadm's own parser, create the metadata on the
    /// backing disk, attach and connect. The first node of a new pool then calls
    /// [`Self::initial_sync_source`].
    pub fn up_commands(&self) -> Vec<Cmd> {
        let t = Duration::from_secs(30);
        vec![
            Cmd::argv(&[
                "install",
                "-D",
                "-m",
                "0600",
                "/dev/stdin",
                &self.res_path(),
            ])
            .stdin(self.render())
            .timeout(t),
            Cmd::argv(&[DRBDADM, "dump", &self.name]).timeout(t),
            Cmd::argv(&[DRBDADM, "--force", "create-md", &self.name])
                .timeout(Duration::from_secs(60)),
            Cmd::argv(&[DRBDADM, "up", &self.name]).timeout(t),
        ]
    }

    /// Make this node the source of the initial full sync (its data wins; the peer's backing
    /// disk is overwritten). Only for a pool being created on blank (or wiped) disks.
    pub fn initial_sync_source(&self) -> Cmd {
        Cmd::argv(&[DRBDADM, "primary", "--force", &self.name]).timeout(Duration::from_secs(30))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// The two-node resource the tests of this crate share.
    pub(crate) fn pair() -> DrbdResource {
        DrbdResource {
            name: "vmstore".into(),
            minor: 0,
            port: 7789,
            peers: vec![
                DrbdPeer {
                    node: "node1".into(),
                    address: "10.77.0.11".parse().unwrap(),
                    disk: "/dev/vdb".into(),
                },
                DrbdPeer {
                    node: "node2".into(),
                    address: "10.77.0.12".parse().unwrap(),
                    disk: "/dev/vdb".into(),
                },
            ],
            dual_primary: false,
            shared_secret: "0123456789abcdef0123".into(),
            resync_max_kib: 102_400,
        }
    }

    #[test]
    fn a_third_node_is_refused_with_the_alternative() {
        let mut r = pair();
        r.peers.push(DrbdPeer {
            node: "node3".into(),
            address: "10.77.0.13".parse().unwrap(),
            disk: "/dev/vdb".into(),
        });
        let e = r.validate().unwrap_err().to_string();
        assert!(
            e.contains("exactly two nodes, not 3 (node1, node2, node3)"),
            "{e}"
        );
        assert!(e.contains("iscsi-gfs2"), "{e}");
    }

    #[test]
    fn every_problem_in_one_error() {
        let mut r = pair();
        r.name = "VM store".into();
        r.peers[1].address = r.peers[0].address;
        r.peers[1].disk = "vdb".into();
        r.port = 80;
        r.shared_secret = "short".into();
        let e = r.validate().unwrap_err().to_string();
        for want in [
            "DRBD resource \"VM store\"",
            "both sides use address 10.77.0.11",
            "disk \"vdb\" is not a block device path",
            "port 80 is privileged",
            "shared secret",
        ] {
            assert!(e.contains(want), "{want:?} missing from {e}");
        }
        assert!(pair().validate().is_ok());
    }

    #[test]
    fn dual_primary_only_when_asked() {
        let r = pair();
        assert!(!r.render().contains("allow-two-primaries"));
        let mut d = pair();
        d.dual_primary = true;
        let s = d.render();
        assert!(s.contains("allow-two-primaries yes;"), "{s}");
        assert!(s.contains("become-primary-on both;"), "{s}");
    }

    #[test]
    fn up_keeps_the_secret_off_command_lines() {
        let r = pair();
        for c in r.up_commands() {
            assert!(!c.to_argv().join(" ").contains(&r.shared_secret), "{c}");
        }
        let first = &r.up_commands()[0];
        assert!(String::from_utf8_lossy(first.get_stdin().unwrap()).contains(&r.shared_secret));
    }
}
