//! Fence devices: one per node, never run on the node it fences.
//!
//! A [`FenceDevice`] names the node it fences and the agent that does it. The agents are
//! fence-agents' own: `fence_ipmilan`, `fence_redfish` and `fence_sbd` with typed parameters,
//! or any other installed agent by program name ([`FenceAgent::Agent`], e.g. `fence_virsh`;
//! the labs register theirs this way) with its parameters as given. Keel only renders them into
//! Pacemaker stonith primitives (see [`crate::cib`]); Pacemaker's fencer runs them.
//!
//! Secrets (BMC passwords) are [`Secret`]s: serialized where they must be stored (the config
//! store, files kept 0600) but never shown by `Debug`/`Display`, so a log line or an error message
//! cannot leak one.

use std::collections::BTreeMap;
use std::fmt;

use keel_api::FieldError;
use serde::{Deserialize, Serialize};

/// A value that must never be logged. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself: only for handing to the engine (CIB on stdin), never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The agent and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FenceAgent {
    /// IPMI over LAN (`fence_ipmilan`), the seeds' choice.
    Ipmilan {
        ip: String,
        #[serde(default)]
        port: Option<u16>,
        username: String,
        password: Secret,
        /// IPMI v2.0 (lanplus); almost every BMC made since 2010 wants it.
        #[serde(default = "yes")]
        lanplus: bool,
        /// `callback`, `user`, `operator` or `administrator`.
        #[serde(default)]
        privlvl: Option<String>,
    },
    /// Redfish (`fence_redfish`).
    Redfish {
        ip: String,
        #[serde(default)]
        port: Option<u16>,
        username: String,
        password: Secret,
        /// Accept a self-signed BMC certificate.
        #[serde(default)]
        ssl_insecure: bool,
        #[serde(default)]
        systems_uri: Option<String>,
    },
    /// Shared-disk poison pill (`fence_sbd`); needs the sbd daemon with a hardware watchdog on
    /// every node.
    Sbd {
        /// Stable paths (`/dev/disk/by-id/...`), 1 to 3 devices.
        devices: Vec<String>,
    },
    /// Diskless SBD (`fence_watchdog`, a stand-in whose fencing Pacemaker does itself): the
    /// target resets itself through its own watchdog, which sbd stops feeding when the node is
    /// asked to die or loses quorum; the fencer counts it dead after `stonith-watchdog-timeout`.
    /// Needs sbd without disks on every node and three votes or more.
    Watchdog {},
    /// Another installed fence-agents program (`fence_virsh`, a lab's agent…): its parameters
    /// as given (names checked against the agent's metadata by the caller, which can run it).
    Agent {
        /// `fence_…`, found by Pacemaker in /usr/sbin.
        program: String,
        #[serde(default)]
        params: BTreeMap<String, String>,
        #[serde(default)]
        secrets: BTreeMap<String, Secret>,
    },
}

/// The value Pacemaker reads as "this parameter's value is in a CIB-secrets file"
/// (`/var/lib/pacemaker/lrm/secrets/<resource>/<parameter>`, checked against its `.sign` md5):
/// Keel puts every fence secret there on every node, so the CIB — and Pacemaker's detail log,
/// which records CIB changes with their values — never holds a BMC password.
pub const CIB_SECRET: &str = "lrm://";

/// Instance attributes Keel sets itself on every stonith primitive: not agent parameters.
pub const RESERVED_PARAMS: &[&str] = &["pcmk_host_list", "pcmk_delay_base", "pcmk_reboot_action"];

fn yes() -> bool {
    true
}

/// A fence device for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceDevice {
    /// Pacemaker resource id, e.g. `fence-node1`.
    pub id: String,
    /// The node this device fences (its corosync node name).
    pub node: String,
    /// The agent and its parameters: `{"type": "ipmilan", "ip": …}`.
    pub agent: FenceAgent,
    /// Seconds Pacemaker waits before fencing *this* node (`pcmk_delay_base`). In a two-node
    /// cluster set it on the node that should survive a split: when the link is cut both nodes
    /// race to fence, and the one protected by the delay wins.
    #[serde(default)]
    pub delay_s: Option<u32>,
    /// Action used when Pacemaker fences: `reboot` (default) or `off`.
    #[serde(default)]
    pub action: Option<String>,
}

impl FenceAgent {
    /// The fence-agents program name.
    pub fn program(&self) -> &str {
        match self {
            FenceAgent::Ipmilan { .. } => "fence_ipmilan",
            FenceAgent::Redfish { .. } => "fence_redfish",
            FenceAgent::Sbd { .. } => "fence_sbd",
            FenceAgent::Watchdog {} => "fence_watchdog",
            FenceAgent::Agent { program, .. } => program,
        }
    }

    /// Agent parameters in a stable order, secrets included (they go to the engine on stdin,
    /// never onto a command line or into a log).
    pub fn params(&self) -> Vec<(&str, String)> {
        let mut p = Vec::new();
        match self {
            FenceAgent::Ipmilan {
                ip,
                port,
                username,
                password,
                lanplus,
                privlvl,
            } => {
                p.push(("ip", ip.clone()));
                if let Some(port) = port {
                    p.push(("ipport", port.to_string()));
                }
                p.push(("username", username.clone()));
                p.push(("password", password.expose().to_string()));
                if *lanplus {
                    p.push(("lanplus", "1".into()));
                }
                if let Some(l) = privlvl {
                    p.push(("privlvl", l.clone()));
                }
            }
            FenceAgent::Redfish {
                ip,
                port,
                username,
                password,
                ssl_insecure,
                systems_uri,
            } => {
                p.push(("ip", ip.clone()));
                if let Some(port) = port {
                    p.push(("ipport", port.to_string()));
                }
                p.push(("username", username.clone()));
                p.push(("password", password.expose().to_string()));
                p.push(("ssl", "1".into()));
                if *ssl_insecure {
                    p.push(("ssl_insecure", "1".into()));
                }
                if let Some(u) = systems_uri {
                    p.push(("systems_uri", u.clone()));
                }
            }
            FenceAgent::Sbd { devices } => p.push(("devices", devices.join(","))),
            FenceAgent::Watchdog {} => {}
            FenceAgent::Agent {
                params, secrets, ..
            } => {
                for (k, v) in params {
                    p.push((k.as_str(), v.clone()));
                }
                for (k, v) in secrets {
                    p.push((k.as_str(), v.expose().to_string()));
                }
            }
        }
        p
    }

    /// The secret parameters and their values: what goes into Pacemaker's CIB-secrets files
    /// on every node (the CIB itself holds [`CIB_SECRET`] for them).
    pub fn secret_values(&self) -> std::collections::BTreeMap<String, String> {
        let names = self.secret_params();
        self.params()
            .into_iter()
            .filter(|(k, _)| names.contains(k))
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Names of the parameters that are secrets.
    pub fn secret_params(&self) -> Vec<&str> {
        match self {
            FenceAgent::Ipmilan { .. } | FenceAgent::Redfish { .. } => vec!["password"],
            FenceAgent::Agent { secrets, .. } => secrets.keys().map(String::as_str).collect(),
            FenceAgent::Sbd { .. } | FenceAgent::Watchdog {} => vec![],
        }
    }
}

pub(crate) fn valid_id(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn valid_host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// An agent parameter name as fence-agents spell them (`ipaddr`, `lab_dir`, `ssl-insecure`).
fn valid_param_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// No control characters, no newlines: a parameter value is one line of the agent's stdin.
fn one_line(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

impl FenceDevice {
    /// Check the device on its own. `nodes`: the cluster's node names (the target must be one).
    pub fn validate(&self, nodes: &[String]) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if !valid_id(&self.id) {
            e.push(FieldError::new(
                "id",
                format!(
                    "{:?} is not a valid resource id: start with a letter, then letters, digits, \
                     '-', '_' or '.', at most 64 characters",
                    self.id
                ),
            ));
        }
        if !nodes.iter().any(|n| n == &self.node) {
            e.push(FieldError::new(
                "node",
                format!(
                    "{:?} is not a cluster node; known nodes: {}",
                    self.node,
                    if nodes.is_empty() {
                        "(none)".to_string()
                    } else {
                        nodes.join(", ")
                    }
                ),
            ));
        }
        if let Some(d) = self.delay_s {
            if d > 120 {
                e.push(FieldError::new(
                    "delay_s",
                    format!("{d} s is too long: use 0–120 (5–15 is typical for two nodes)"),
                ));
            }
        }
        if let Some(a) = &self.action {
            if a != "reboot" && a != "off" {
                e.push(FieldError::new(
                    "action",
                    format!("{a:?} is not a fencing action: use \"reboot\" or \"off\""),
                ));
            }
        }
        match &self.agent {
            FenceAgent::Ipmilan {
                ip,
                username,
                password,
                privlvl,
                ..
            } => {
                bmc_checks(&mut e, ip, username, password);
                if let Some(l) = privlvl {
                    if !["callback", "user", "operator", "administrator"].contains(&l.as_str()) {
                        e.push(FieldError::new(
                            "privlvl",
                            format!(
                                "{l:?} is not an IPMI privilege level: use callback, user, \
                                 operator or administrator"
                            ),
                        ));
                    }
                }
            }
            FenceAgent::Redfish {
                ip,
                username,
                password,
                systems_uri,
                ..
            } => {
                bmc_checks(&mut e, ip, username, password);
                if let Some(u) = systems_uri {
                    if !u.starts_with('/') || !one_line(u) || u.contains(char::is_whitespace) {
                        e.push(FieldError::new(
                            "systems_uri",
                            format!("{u:?} must be an absolute path such as /redfish/v1/Systems/1"),
                        ));
                    }
                }
            }
            FenceAgent::Sbd { devices } => {
                if devices.is_empty() || devices.len() > 3 {
                    e.push(FieldError::new(
                        "devices",
                        format!("sbd needs 1 to 3 shared devices, got {}", devices.len()),
                    ));
                }
                for (i, d) in devices.iter().enumerate() {
                    if !d.starts_with("/dev/") || d.contains(',') || !one_line(d) {
                        e.push(FieldError::new(
                            &format!("devices[{i}]"),
                            format!(
                                "{d:?} is not a device path: use a stable /dev/disk/by-id/... path"
                            ),
                        ));
                    } else if !d.starts_with("/dev/disk/by-") {
                        e.push(FieldError::new(
                            &format!("devices[{i}]"),
                            format!(
                                "{d:?} may change name across reboots: use /dev/disk/by-id/... \
                                 or /dev/disk/by-path/..."
                            ),
                        ));
                    }
                }
            }
            FenceAgent::Watchdog {} => {}
            FenceAgent::Agent {
                program,
                params,
                secrets,
            } => {
                if !keel_api::cluster::valid_agent_program(program) {
                    e.push(FieldError::new(
                        "program",
                        format!("{program:?} is not a fence-agents program name (fence_...)"),
                    ));
                }
                let values = params
                    .iter()
                    .map(|(k, v)| (k, v.as_str()))
                    .chain(secrets.iter().map(|(k, v)| (k, v.expose())));
                for (k, v) in values {
                    if !valid_param_name(k) || RESERVED_PARAMS.contains(&k.as_str()) {
                        e.push(FieldError::new(
                            &format!("params.{k}"),
                            if valid_param_name(k) {
                                format!("{k} is set by Keel itself")
                            } else {
                                format!("{k:?} is not a parameter name: letters, digits, '_'")
                            },
                        ));
                    } else if !one_line(v) {
                        e.push(FieldError::new(
                            &format!("params.{k}"),
                            "values must not contain control characters or newlines",
                        ));
                    }
                }
            }
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

fn bmc_checks(e: &mut Vec<FieldError>, ip: &str, username: &str, password: &Secret) {
    if !valid_host(ip) {
        e.push(FieldError::new(
            "ip",
            format!("{ip:?} is not the BMC's address or host name"),
        ));
    }
    if username.is_empty() || !one_line(username) {
        e.push(FieldError::new(
            "username",
            "the BMC user name must be one non-empty line",
        ));
    }
    if password.is_empty() {
        e.push(FieldError::new("password", "the BMC password is empty"));
    } else if !one_line(password.expose()) {
        e.push(FieldError::new(
            "password",
            "the BMC password must not contain control characters or newlines",
        ));
    }
}

/// Checks across all devices of a cluster: one device per node at most, ids unique, and every
/// node covered. Returns the nodes left without a device (an error for HA, a warning at setup).
pub fn check_set(
    devices: &[FenceDevice],
    nodes: &[String],
) -> Result<Vec<String>, Vec<FieldError>> {
    let mut e = Vec::new();
    let mut ids = BTreeMap::new();
    let mut per_node: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, d) in devices.iter().enumerate() {
        if let Err(errs) = d.validate(nodes) {
            e.extend(errs.into_iter().map(|mut f| {
                f.field = format!("devices[{i}].{}", f.field);
                f
            }));
        }
        if let Some(prev) = ids.insert(d.id.as_str(), i) {
            e.push(FieldError::new(
                &format!("devices[{i}].id"),
                format!("{:?} is already used by devices[{prev}]", d.id),
            ));
        }
        if let Some(prev) = per_node.insert(d.node.as_str(), d.id.as_str()) {
            e.push(FieldError::new(
                &format!("devices[{i}].node"),
                format!(
                    "{:?} already has a fence device ({prev}); Keel keeps exactly one per node",
                    d.node
                ),
            ));
        }
    }
    if !e.is_empty() {
        return Err(e);
    }
    Ok(nodes
        .iter()
        .filter(|n| !per_node.contains_key(n.as_str()))
        .cloned()
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        vec!["node1".into(), "node2".into()]
    }

    fn ipmi(node: &str) -> FenceDevice {
        FenceDevice {
            id: format!("fence-{node}"),
            node: node.into(),
            agent: FenceAgent::Ipmilan {
                ip: "10.0.0.101".into(),
                port: None,
                username: "admin".into(),
                password: Secret::new("hunter2"),
                lanplus: true,
                privlvl: None,
            },
            delay_s: None,
            action: None,
        }
    }

    #[test]
    fn secrets_never_print() {
        let d = ipmi("node1");
        let dbg = format!("{d:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        // ...but they are stored.
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("hunter2"));
        let back: FenceDevice = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn json_shape_is_strict() {
        let j = r#"{"id":"fence-node2","node":"node2","agent":{"type":"redfish","ip":"bmc2",
                   "username":"root","password":"pw","ssl_insecure":true}}"#;
        let d: FenceDevice = serde_json::from_str(j).unwrap();
        assert_eq!(d.agent.program(), "fence_redfish");
        assert!(d.validate(&nodes()).is_ok());
        let bad =
            r#"{"id":"f","node":"node2","agent":{"type":"sbd","devices":["/dev/sdb"],"colour":1}}"#;
        assert!(serde_json::from_str::<FenceDevice>(bad).is_err());
        let bad = r#"{"id":"f","node":"node2","agent":{"type":"sbd","devices":[]},"colour":1}"#;
        assert!(serde_json::from_str::<FenceDevice>(bad).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let mut d = ipmi("node9");
        d.id = "9bad id".into();
        d.delay_s = Some(600);
        d.action = Some("explode".into());
        if let FenceAgent::Ipmilan {
            password, privlvl, ..
        } = &mut d.agent
        {
            *password = Secret::new("");
            *privlvl = Some("root".into());
        }
        let e = d.validate(&nodes()).unwrap_err();
        let fields: Vec<_> = e.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            ["id", "node", "delay_s", "action", "password", "privlvl"]
        );
        assert!(e[1].message.contains("node1, node2"), "{}", e[1].message);
    }

    #[test]
    fn sbd_wants_stable_paths() {
        let d = FenceDevice {
            id: "fence-node1".into(),
            node: "node1".into(),
            agent: FenceAgent::Sbd {
                devices: vec!["/dev/sdb".into()],
            },
            delay_s: None,
            action: None,
        };
        let e = d.validate(&nodes()).unwrap_err();
        assert_eq!(e[0].field, "devices[0]");
        assert!(e[0].message.contains("by-id"));
    }

    #[test]
    fn one_device_per_node() {
        let mut second = ipmi("node1");
        second.id = "fence-node1-b".into();
        let e = check_set(&[ipmi("node1"), second], &nodes()).unwrap_err();
        assert_eq!(e[0].field, "devices[1].node");
        let missing = check_set(&[ipmi("node1")], &nodes()).unwrap();
        assert_eq!(missing, ["node2"]);
    }

    #[test]
    fn newline_in_a_parameter_is_refused() {
        let d = FenceDevice {
            id: "fence-node1".into(),
            node: "node1".into(),
            agent: FenceAgent::Agent {
                program: "fence_keellab".into(),
                params: [("lab_dir".to_string(), "/tmp/x\naction=off".to_string())].into(),
                secrets: BTreeMap::new(),
            },
            delay_s: None,
            action: None,
        };
        assert_eq!(d.validate(&nodes()).unwrap_err()[0].field, "params.lab_dir");
        let mut d = d;
        d.agent = FenceAgent::Agent {
            program: "fence_keellab; rm".into(),
            params: [("pcmk_host_list".to_string(), "node2".to_string())].into(),
            secrets: [("passwd".to_string(), Secret::new("hunter2"))].into(),
        };
        let fields: Vec<_> = d
            .validate(&nodes())
            .unwrap_err()
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["program", "params.pcmk_host_list"]);
        assert!(!format!("{d:?}").contains("hunter2"));
        assert_eq!(d.agent.secret_params(), ["passwd"]);
    }
}
