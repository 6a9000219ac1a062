//! open-iscsi, the initiator side of a LUN every node of a pool logs in to.
//!
//! One LUN is named by its portal (an IPv4 address and port), the target's IQN and the LUN
//! number. Keel keeps one node record per pool (`iscsiadm -m node -o new`), never the records
//! of every target a portal offers: discovery runs with `-o nonpersistent` and only tells
//! whether the portal offers the target. The CHAP user and secret, and `node.startup =
//! automatic` (so the node logs in again at boot, before Pacemaker starts), are written into
//! that record through standard input ([`IscsiLun::set_auth`]): the secret is never on a
//! command line, where `ps` would show it, nor in a log.
//!
//! The LUN's block device is the udev name `/dev/disk/by-path/ip-ADDR:PORT-iscsi-IQN-lun-N`,
//! the same on every node and across reboots (a `/dev/sdX` name is neither).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use keel_runner::{Cmd, Runner};
use serde::{Deserialize, Serialize};

use crate::StorageError;

pub const ISCSIADM: &str = "iscsiadm";
/// Where open-iscsi keeps its node records (Debian).
pub const NODES_DIR: &str = "/etc/iscsi/nodes";
/// This node's initiator name.
pub const INITIATOR_FILE: &str = "/etc/iscsi/initiatorname.iscsi";
/// The default iSCSI port.
pub const PORT: u16 = 3260;

/// `iscsiadm` exit codes Keel reads (open-iscsi's `iscsi_err.h`).
pub const ERR_SESS_EXISTS: i32 = 15;
pub const ERR_NO_OBJS_FOUND: i32 = 21;
pub const ERR_LOGIN_AUTH_FAILED: i32 = 24;

const T: Duration = Duration::from_secs(30);
const LOGIN_T: Duration = Duration::from_secs(90);

/// One LUN of an iSCSI target, and the CHAP credentials this cluster logs in with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IscsiLun {
    /// `ADDRESS:PORT` (the port added when the operator gave none).
    pub portal: String,
    /// The target's IQN.
    pub target: String,
    pub lun: u32,
    pub chap_user: String,
    /// Blank wherever the LUN is stored or shown; only the node records hold it.
    #[serde(default)]
    pub chap_secret: String,
}

impl std::fmt::Debug for IscsiLun {
    /// Without the CHAP secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IscsiLun")
            .field("portal", &self.portal)
            .field("target", &self.target)
            .field("lun", &self.lun)
            .field("chap_user", &self.chap_user)
            .finish()
    }
}

/// `ADDRESS` or `ADDRESS:PORT` as an IPv4 socket address (the port defaults to 3260).
pub fn parse_portal(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let a = s
        .parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, PORT)))
        .map_err(|_| {
            format!(
                "portal {s:?} is not an IP address with an optional port (e.g. 192.0.2.10 or \
                 192.0.2.10:3260)"
            )
        })?;
    if !a.is_ipv4() {
        return Err(format!(
            "portal {s:?}: give the target's IPv4 address (IPv6 portals are not supported yet)"
        ));
    }
    if a.port() == 0 {
        return Err(format!("portal {s:?}: port 0 is not a port"));
    }
    Ok(a)
}

/// An iSCSI qualified name (`iqn.YYYY-MM.reversed.domain[:anything]`) or an `eui.`/`naa.` name,
/// as RFC 3720 writes them: lower case, no spaces.
pub fn check_iqn(what: &str, name: &str) -> Result<(), String> {
    let ok_chars = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-:".contains(c))
    };
    let ok = if let Some(rest) = name.strip_prefix("iqn.") {
        let b = rest.as_bytes();
        rest.len() >= 9
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
            && b[7] == b'.'
            && ok_chars(rest)
    } else if let Some(hex) = name
        .strip_prefix("eui.")
        .or_else(|| name.strip_prefix("naa."))
    {
        !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())
    } else {
        false
    };
    if ok && name.len() <= 223 {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not an iSCSI name: write it as the target shows it, e.g. \
             iqn.2024-01.com.example:storage.lun0 (lower case, no spaces)"
        ))
    }
}

impl IscsiLun {
    /// Every problem of the LUN's description in one error, each naming its field.
    pub fn validate(&self) -> Result<(), StorageError> {
        let mut why = Vec::new();
        if let Err(e) = parse_portal(&self.portal) {
            why.push(format!("iscsi.portal: {e}"));
        }
        if let Err(e) = check_iqn("target", &self.target) {
            why.push(format!("iscsi.target: {e}"));
        }
        if self.lun > 16383 {
            why.push(format!(
                "iscsi.lun: {} is not a LUN number (0-16383)",
                self.lun
            ));
        }
        let u = &self.chap_user;
        if u.is_empty()
            || u.len() > 255
            || !u.chars().all(|c| c.is_ascii_graphic())
            || u.contains('"')
        {
            why.push(
                "iscsi.chap_user: give the CHAP user name the target expects (1-255 printable \
                 characters, no spaces or quotes)"
                    .into(),
            );
        }
        let s = &self.chap_secret;
        if s.len() < 12 || s.len() > 255 {
            why.push(
                "iscsi.chap_secret: a CHAP secret has 12 to 255 characters (RFC 3720 asks for at \
                 least 12; most targets refuse fewer)"
                    .into(),
            );
        } else if !s.chars().all(|c| c.is_ascii_graphic()) || s.contains('"') {
            why.push("iscsi.chap_secret: use printable characters without spaces or quotes".into());
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(StorageError::Invalid(why.join("; ")))
        }
    }

    /// The portal with its port, as `ADDRESS:PORT` (validated first).
    pub fn addr(&self) -> String {
        parse_portal(&self.portal)
            .map(|a| a.to_string())
            .unwrap_or_else(|_| self.portal.clone())
    }

    /// The LUN's stable block device name (udev's `by-path` link).
    pub fn device(&self) -> String {
        format!(
            "/dev/disk/by-path/ip-{}-iscsi-{}-lun-{}",
            self.addr(),
            self.target,
            self.lun
        )
    }

    fn node_args(&self) -> Vec<String> {
        vec![
            ISCSIADM.into(),
            "-m".into(),
            "node".into(),
            "-T".into(),
            self.target.clone(),
            "-p".into(),
            self.addr(),
        ]
    }

    /// The targets the portal offers, without storing a record of each.
    pub fn discover(&self) -> Cmd {
        Cmd::argv(&[
            ISCSIADM,
            "-m",
            "discovery",
            "-t",
            "sendtargets",
            "-p",
            &self.addr(),
            "-o",
            "nonpersistent",
        ])
        .timeout(T)
    }

    /// This pool's node record (exit [`ERR_SESS_EXISTS`]-free: a record that exists is updated).
    pub fn new_record(&self) -> Cmd {
        Cmd::argv(&self.node_args()).args(["-o", "new"]).timeout(T)
    }

    /// What [`IscsiLun::set_auth`] writes into the record.
    pub fn auth_lines(&self) -> String {
        format!(
            "node.startup = automatic\nnode.session.auth.authmethod = CHAP\n\
             node.session.auth.username = {}\nnode.session.auth.password = {}\n",
            self.chap_user, self.chap_secret
        )
    }

    /// The record's CHAP settings and `node.startup = automatic`, from standard input: the
    /// record's earlier values for these keys are dropped and the new ones appended (iscsiadm's
    /// `-o update -v VALUE` would put the secret on a command line). The record stays 0600.
    pub fn set_auth(&self) -> Cmd {
        let script = r#"set -e
umask 077
f=$(find "$1/$2" -type f \( -name default -path "*/$3,*" -o -name "$3" \) | head -n 1)
if [ -z "$f" ]; then echo "no open-iscsi node record for $2 at $3 under $1" >&2; exit 1; fi
grep -v -e '^node\.session\.auth\.' -e '^node\.startup ' "$f" > "$f.keel" || true
cat >> "$f.keel"
mv "$f.keel" "$f""#;
        let rec = self.addr().replacen(':', ",", 1);
        Cmd::argv(&[
            "sh",
            "-c",
            script,
            "keel-iscsi-auth",
            NODES_DIR,
            &self.target,
            &rec,
        ])
        .stdin(self.auth_lines())
        .timeout(T)
    }

    /// The record with its masked values shown (`-S`): read by a node of a pool to hand the
    /// CHAP secret to a node that joins it (over the signed peer call only).
    pub fn show_record(&self) -> Cmd {
        Cmd::argv(&self.node_args())
            .args(["-o", "show", "-S"])
            .timeout(T)
    }

    pub fn login(&self) -> Cmd {
        Cmd::argv(&self.node_args()).arg("--login").timeout(LOGIN_T)
    }

    pub fn logout(&self) -> Cmd {
        Cmd::argv(&self.node_args()).arg("--logout").timeout(T)
    }

    pub fn delete_record(&self) -> Cmd {
        Cmd::argv(&self.node_args())
            .args(["-o", "delete"])
            .timeout(T)
    }

    /// Whether `sessions` (parsed [`sessions`] output) holds this LUN's target at its portal.
    pub fn logged_in(&self, sessions: &[(String, String)]) -> bool {
        let a = self.addr();
        sessions.iter().any(|(p, t)| *p == a && *t == self.target)
    }
}

/// The CHAP secret in a record [`IscsiLun::show_record`] printed (`None` when it has none).
pub fn parse_record_secret(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "node.session.auth.password")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != "<empty>" && !v.chars().all(|c| c == '*'))
}

/// open-iscsi's daemon (socket-activated on Debian; started here for nodes where the socket is
/// disabled).
pub fn start_iscsid() -> Cmd {
    Cmd::argv(&["systemctl", "start", "iscsid.service"]).timeout(T)
}

/// `iscsiadm -m session`: the sessions of this node (exit [`ERR_NO_OBJS_FOUND`]: none).
pub fn sessions() -> Cmd {
    Cmd::argv(&[ISCSIADM, "-m", "session"]).timeout(T)
}

/// `(ADDRESS:PORT, IQN)` of each line `tcp: [1] 10.0.0.1:3260,1 iqn.… (non-flash)`.
pub fn parse_sessions(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(2);
            let portal = w.next()?.split(',').next()?.to_string();
            let target = w.next()?.to_string();
            Some((portal, target))
        })
        .collect()
}

/// `(ADDRESS:PORT, IQN)` of each discovery line `10.0.0.1:3260,1 iqn.…`.
pub fn parse_discovery(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let portal = w.next()?.split(',').next()?.to_string();
            let target = w.next()?.to_string();
            Some((portal, target))
        })
        .collect()
}

/// This node's initiator name (what a target's ACL must allow).
pub fn initiator_name(r: &dyn Runner) -> Option<String> {
    let out = r
        .run(&Cmd::argv(&["cat", INITIATOR_FILE]).timeout(T))
        .ok()?;
    out.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("InitiatorName="))
        .map(|s| s.trim().to_string())
}

/// The sessions on this node; none when open-iscsi has none (or is not running).
pub fn read_sessions(r: &dyn Runner) -> Result<Vec<(String, String)>, StorageError> {
    let out = r.run(&sessions())?;
    if out.success() {
        Ok(parse_sessions(&out.stdout))
    } else {
        Ok(Vec::new())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub fn lun() -> IscsiLun {
        IscsiLun {
            portal: "10.99.0.1".into(),
            target: "iqn.2024-01.lab.keel:pool0".into(),
            lun: 0,
            chap_user: "keelpool".into(),
            chap_secret: "Chap-Secret-0123".into(),
        }
    }

    #[test]
    fn record_secret() {
        let rec = "node.name = iqn.2024-01.lab.keel:shared\n\
            node.session.auth.authmethod = CHAP\n\
            node.session.auth.username = keelinit\n\
            node.session.auth.password = Keel-Lab-Chap-7x\n\
            node.session.auth.username_in = <empty>\n";
        assert_eq!(
            parse_record_secret(rec).as_deref(),
            Some("Keel-Lab-Chap-7x")
        );
        // without -S iscsiadm masks it: not a secret
        assert_eq!(
            parse_record_secret("node.session.auth.password = ********\n"),
            None
        );
        assert_eq!(
            parse_record_secret("node.session.auth.password = <empty>\n"),
            None
        );
        assert!(lun().show_record().to_argv().ends_with(&[
            "-o".into(),
            "show".into(),
            "-S".into()
        ]));
    }

    #[test]
    fn portal_gets_its_port_and_device_its_by_path_name() {
        let l = lun();
        l.validate().unwrap();
        assert_eq!(l.addr(), "10.99.0.1:3260");
        assert_eq!(
            l.device(),
            "/dev/disk/by-path/ip-10.99.0.1:3260-iscsi-iqn.2024-01.lab.keel:pool0-lun-0"
        );
        assert_eq!(parse_portal("10.1.2.3:3261").unwrap().port(), 3261);
    }

    #[test]
    fn bad_fields_are_named_together() {
        let l = IscsiLun {
            portal: "storage.example".into(),
            target: "IQN.2024-01.X".into(),
            lun: 20000,
            chap_user: "".into(),
            chap_secret: "short".into(),
        };
        let e = l.validate().unwrap_err().to_string();
        for f in [
            "iscsi.portal",
            "iscsi.target",
            "iscsi.lun",
            "iscsi.chap_user",
            "iscsi.chap_secret",
        ] {
            assert!(e.contains(f), "{f} not named in {e}");
        }
        assert!(!e.contains("short"), "the secret is never echoed: {e}");
        assert!(parse_portal("[fe80::1]:3260").is_err());
        assert!(check_iqn("t", "naa.6001405abcdef").is_ok());
        assert!(check_iqn("t", "iqn.2024-1.x").is_err());
    }

    #[test]
    fn the_secret_goes_through_stdin_only() {
        let l = lun();
        let c = l.set_auth();
        let argv = c.to_argv().join(" ");
        assert!(!argv.contains(&l.chap_secret), "{argv}");
        assert!(!format!("{c} {c:?} {l:?}").contains(&l.chap_secret));
        let stdin = String::from_utf8(c.get_stdin().unwrap().to_vec()).unwrap();
        assert!(stdin.contains("node.session.auth.password = Chap-Secret-0123\n"));
        assert!(stdin.contains("node.startup = automatic\n"));
        assert!(argv.ends_with(
            "keel-iscsi-auth /etc/iscsi/nodes iqn.2024-01.lab.keel:pool0 10.99.0.1,3260"
        ));
    }

    #[test]
    fn sessions_and_discovery_parse() {
        let s = "tcp: [1] 10.99.0.1:3260,1 iqn.2024-01.lab.keel:pool0 (non-flash)\n\
                 tcp: [2] 10.99.0.2:3260,1 iqn.2024-01.lab.keel:other (non-flash)\n";
        let p = parse_sessions(s);
        assert_eq!(p.len(), 2);
        assert!(lun().logged_in(&p));
        let d = parse_discovery("10.99.0.1:3260,1 iqn.2024-01.lab.keel:pool0\n");
        assert_eq!(
            d,
            vec![("10.99.0.1:3260".into(), "iqn.2024-01.lab.keel:pool0".into())]
        );
    }
}
