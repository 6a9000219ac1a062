//! An LIO iSCSI target (the kernel's target, configured with targetcli-fb), for a Keel node
//! that exports a LUN to the cluster and for the labs' shared storage.
//!
//! One target with one LUN on a backstore (a block device, or a file for labs), an ACL per
//! initiator with its CHAP credentials, and CHAP enforced on the portal group. As with the
//! initiator, the CHAP secret never appears on a command line: targetcli creates the ACL and
//! sets the user, and the secret is written to the ACL's `auth/password` file in configfs
//! through standard input. `targetcli saveconfig` keeps the whole target across reboots.

use std::time::Duration;

use keel_runner::Cmd;
use serde::{Deserialize, Serialize};

use crate::iscsi::check_iqn;
use crate::{check_name, StorageError};

pub const TARGETCLI: &str = "targetcli";
/// LIO's configfs tree.
pub const CONFIGFS: &str = "/sys/kernel/config/target/iscsi";

const T: Duration = Duration::from_secs(60);

/// Where the LUN's blocks live on the target node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backstore {
    /// A whole block device.
    Block { device: String },
    /// A file of this size (created when missing).
    Fileio { path: String, size_bytes: u64 },
}

/// One initiator allowed in, with its CHAP credentials.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub initiator: String,
    pub chap_user: String,
    pub chap_secret: String,
}

impl std::fmt::Debug for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acl")
            .field("initiator", &self.initiator)
            .field("chap_user", &self.chap_user)
            .finish()
    }
}

/// A target with LUN 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LioTarget {
    pub iqn: String,
    /// The backstore's name in targetcli.
    pub name: String,
    pub backstore: Backstore,
    pub acls: Vec<Acl>,
}

impl LioTarget {
    pub fn validate(&self) -> Result<(), StorageError> {
        let mut why = Vec::new();
        if let Err(e) = check_iqn("target", &self.iqn) {
            why.push(e);
        }
        if let Err(e) = check_name("backstore", &self.name, 30) {
            why.push(e.to_string());
        }
        match &self.backstore {
            Backstore::Block { device } if !device.starts_with("/dev/") => {
                why.push(format!("backstore device {device:?} is not under /dev/"))
            }
            Backstore::Fileio { path, size_bytes } => {
                if !path.starts_with('/') {
                    why.push(format!("backstore file {path:?} is not an absolute path"));
                }
                if *size_bytes < (1 << 20) {
                    why.push("a backstore file needs at least 1 MiB".into());
                }
            }
            Backstore::Block { .. } => {}
        }
        if self.acls.is_empty() {
            why.push("a target without an ACL lets no initiator in: add one per node".into());
        }
        for a in &self.acls {
            if let Err(e) = check_iqn("initiator", &a.initiator) {
                why.push(e);
            }
            if a.chap_user.is_empty() || a.chap_user.contains(char::is_whitespace) {
                why.push(format!("ACL {}: a CHAP user without spaces", a.initiator));
            }
            if a.chap_secret.len() < 12 || a.chap_secret.contains(char::is_whitespace) {
                why.push(format!(
                    "ACL {}: a CHAP secret of at least 12 characters, without spaces",
                    a.initiator
                ));
            }
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(StorageError::Invalid(why.join("; ")))
        }
    }

    fn tc(args: &[&str]) -> Cmd {
        Cmd::argv(&[TARGETCLI])
            .args(args.iter().copied())
            .timeout(T)
    }

    /// Everything, in order: backstore, target (with its default portal on every address,
    /// port 3260), LUN 0, each ACL with its CHAP user then its secret (stdin), CHAP required,
    /// saved.
    pub fn create_commands(&self) -> Vec<Cmd> {
        let tpg = format!("/iscsi/{}/tpg1", self.iqn);
        let mut v = match &self.backstore {
            Backstore::Block { device } => vec![Self::tc(&[
                "/backstores/block",
                "create",
                &self.name,
                device,
            ])],
            Backstore::Fileio { path, size_bytes } => vec![Self::tc(&[
                "/backstores/fileio",
                "create",
                &self.name,
                path,
                &format!("{}M", size_bytes >> 20),
            ])],
        };
        let kind = match &self.backstore {
            Backstore::Block { .. } => "block",
            Backstore::Fileio { .. } => "fileio",
        };
        v.push(Self::tc(&["/iscsi", "create", &self.iqn]));
        v.push(Self::tc(&[
            &format!("{tpg}/luns"),
            "create",
            &format!("/backstores/{kind}/{}", self.name),
        ]));
        for a in &self.acls {
            v.push(Self::tc(&[&format!("{tpg}/acls"), "create", &a.initiator]));
            v.push(Self::tc(&[
                &format!("{tpg}/acls/{}", a.initiator),
                "set",
                "auth",
                &format!("userid={}", a.chap_user),
            ]));
            let file = format!(
                "{CONFIGFS}/{}/tpgt_1/acls/{}/auth/password",
                self.iqn, a.initiator
            );
            v.push(
                Cmd::argv(&["sh", "-c", "cat > \"$1\"", "keel-lio-secret", &file])
                    .stdin(a.chap_secret.clone())
                    .timeout(T),
            );
        }
        v.push(Self::tc(&[
            &tpg,
            "set",
            "attribute",
            "authentication=1",
            "generate_node_acls=0",
        ]));
        v.push(Self::tc(&["saveconfig"]));
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_in_order_secret_on_stdin() {
        let t = LioTarget {
            iqn: "iqn.2024-01.lab.keel:pool0".into(),
            name: "pool0".into(),
            backstore: Backstore::Fileio {
                path: "/var/lib/keel/lun0.img".into(),
                size_bytes: 512 << 20,
            },
            acls: vec![Acl {
                initiator: "iqn.2024-01.lab.keel:node2".into(),
                chap_user: "keelpool".into(),
                chap_secret: "Chap-Secret-0123".into(),
            }],
        };
        t.validate().unwrap();
        let c = t.create_commands();
        let lines: Vec<String> = c.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "targetcli /backstores/fileio create pool0 /var/lib/keel/lun0.img 512M",
                "targetcli /iscsi create iqn.2024-01.lab.keel:pool0",
                "targetcli /iscsi/iqn.2024-01.lab.keel:pool0/tpg1/luns create /backstores/fileio/pool0",
                "targetcli /iscsi/iqn.2024-01.lab.keel:pool0/tpg1/acls create iqn.2024-01.lab.keel:node2",
                "targetcli /iscsi/iqn.2024-01.lab.keel:pool0/tpg1/acls/iqn.2024-01.lab.keel:node2 set auth userid=keelpool",
                "sh -c 'cat > \"$1\"' keel-lio-secret /sys/kernel/config/target/iscsi/iqn.2024-01.lab.keel:pool0/tpgt_1/acls/iqn.2024-01.lab.keel:node2/auth/password",
                "targetcli /iscsi/iqn.2024-01.lab.keel:pool0/tpg1 set attribute authentication=1 generate_node_acls=0",
                "targetcli saveconfig",
            ]
        );
        assert_eq!(c[5].get_stdin().unwrap(), b"Chap-Secret-0123");
        assert!(!format!("{t:?}").contains("Chap-Secret"));
    }

    #[test]
    fn a_target_without_acls_is_refused() {
        let t = LioTarget {
            iqn: "iqn.2024-01.lab.keel:pool0".into(),
            name: "pool0".into(),
            backstore: Backstore::Block {
                device: "vdb".into(),
            },
            acls: vec![],
        };
        let e = t.validate().unwrap_err().to_string();
        assert!(
            e.contains("without an ACL") && e.contains("not under /dev/"),
            "{e}"
        );
    }
}
