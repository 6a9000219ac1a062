//! corosync.conf from a typed model, and back.
//!
//! [`CorosyncConf`] is the whole configuration Keel writes: totem (knet, aes256 + sha256,
//! passive link mode, a token timeout from the link latency class), the nodelist (one to two
//! links per node), votequorum (`two_node` + `wait_for_all` switched on at exactly two nodes
//! without a QDevice, off otherwise; optional QDevice `net` with `ffsplit`) and logging.
//! [`CorosyncConf::render`] validates before writing; [`CorosyncConf::parse`] reads back the
//! subset Keel writes (members use it to add and remove nodes), refusing anything else rather
//! than silently dropping it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

/// A problem with a corosync configuration, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("corosync.conf: {field}: {msg}")]
    Invalid { field: String, msg: String },
    #[error("corosync.conf line {line}: {msg}")]
    Parse { line: usize, msg: String },
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> ConfError {
    ConfError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// Round-trip latency class of the cluster links; picks corosync's token timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyClass {
    /// Same switch / namespaces on one host: RTT under 0.5 ms.
    Local,
    /// A LAN: RTT under 5 ms (corosync 3's default token).
    Lan,
    /// Stretched/metro links: RTT under 30 ms.
    Metro,
}

impl LatencyClass {
    pub fn from_rtt_ms(rtt: f64) -> LatencyClass {
        if rtt < 0.5 {
            LatencyClass::Local
        } else if rtt < 5.0 {
            LatencyClass::Lan
        } else {
            LatencyClass::Metro
        }
    }
    /// Token timeout (ms) for this class.
    pub fn token_ms(self) -> u32 {
        match self {
            LatencyClass::Local => 1000,
            LatencyClass::Lan => 3000,
            LatencyClass::Metro => 10000,
        }
    }
}

/// One member in the nodelist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfNode {
    pub nodeid: u32,
    pub name: String,
    /// `ringN_addr` for N = 0, 1: link0 and optional link1 addresses (IP literals).
    pub addrs: Vec<String>,
}

/// corosync-qnetd's decision algorithm for a QDevice `net`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QDeviceAlgorithm {
    /// Fifty-fifty split: the vote goes to the half with more nodes, or on a tie to the half
    /// holding the lowest node id (even node counts only).
    #[default]
    Ffsplit,
    /// Last man standing: the vote goes to the partition qnetd sees as largest, even a single
    /// node.
    Lms,
}

impl QDeviceAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            QDeviceAlgorithm::Ffsplit => "ffsplit",
            QDeviceAlgorithm::Lms => "lms",
        }
    }
    /// `ffsplit` or `lms`.
    pub fn parse(s: &str) -> Option<QDeviceAlgorithm> {
        match s {
            "ffsplit" => Some(QDeviceAlgorithm::Ffsplit),
            "lms" => Some(QDeviceAlgorithm::Lms),
            _ => None,
        }
    }
}

/// A corosync-qnetd arbiter as a third vote for two-node clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QDevice {
    pub host: String,
    /// Defaults to 5403 when `None`.
    pub port: Option<u16>,
    pub algorithm: QDeviceAlgorithm,
}

/// Where corosync logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub logfile: Option<String>,
    pub to_syslog: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            logfile: Some("/var/log/corosync/corosync.log".into()),
            to_syslog: true,
        }
    }
}

/// Everything Keel writes to corosync.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorosyncConf {
    pub cluster_name: String,
    /// Token timeout (ms); see [`LatencyClass::token_ms`].
    pub token_ms: u32,
    /// `token_coefficient` (ms per node above two); `None` = corosync's default (650).
    pub token_coefficient_ms: Option<u32>,
    /// `join` timeout (ms); `None` = corosync's default (50).
    pub join_ms: Option<u32>,
    /// `totem.keyfile`; `None` = `/etc/corosync/authkey`.
    pub keyfile: Option<String>,
    pub nodes: Vec<ConfNode>,
    pub qdevice: Option<QDevice>,
    pub logging: Logging,
}

pub const CRYPTO_CIPHER: &str = "aes256";
pub const CRYPTO_HASH: &str = "sha256";

/// A corosync.conf section: `name {`, `key: value` lines, subsections, `}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub kvs: Vec<(String, String)>,
    pub children: Vec<Section>,
}

impl Section {
    pub fn new(name: &str) -> Self {
        Section {
            name: name.into(),
            ..Default::default()
        }
    }
    fn kv(mut self, k: &str, v: impl ToString) -> Self {
        self.kvs.push((k.into(), v.to_string()));
        self
    }
    fn child(mut self, c: Section) -> Self {
        self.children.push(c);
        self
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.kvs
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }
    fn sections<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Render this section (a root section renders its children) in corosync syntax.
    pub fn to_text(&self) -> Result<String, ConfError> {
        let mut out = String::new();
        self.render(&mut out, 0)?;
        Ok(out)
    }

    fn render(&self, out: &mut String, depth: usize) -> Result<(), ConfError> {
        let bad = |s: &str| s.is_empty() || s.contains(['{', '}', '\n', '#']) || s.trim() != s;
        let named = !self.name.is_empty();
        let inner = if named { depth + 1 } else { depth };
        let pad = "    ".repeat(depth);
        let ipad = "    ".repeat(inner);
        if named {
            if bad(&self.name) || self.name.contains([':', ' ']) {
                return Err(invalid(&self.name, "bad section name"));
            }
            let _ = writeln!(out, "{pad}{} {{", self.name);
        }
        for (k, v) in &self.kvs {
            if bad(k) || k.contains([':', ' ']) || bad(v) {
                return Err(invalid(
                    format!("{}.{k}", self.name),
                    format!("{v:?} cannot be written to corosync.conf"),
                ));
            }
            let _ = writeln!(out, "{ipad}{k}: {v}");
        }
        for (i, c) in self.children.iter().enumerate() {
            if !named && i > 0 {
                out.push('\n');
            }
            c.render(out, inner)?;
        }
        if named {
            let _ = writeln!(out, "{pad}}}");
        }
        Ok(())
    }

    /// Parse corosync.conf syntax into a tree (root section has an empty name).
    pub fn parse(text: &str) -> Result<Section, ConfError> {
        let mut stack: Vec<Section> = vec![Section::new("")];
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let perr = |msg: &str| ConfError::Parse {
                line,
                msg: msg.to_string(),
            };
            if l == "}" {
                if stack.len() < 2 {
                    return Err(perr("unexpected closing brace"));
                }
                let s = stack.pop().ok_or_else(|| perr("unexpected brace"))?;
                stack
                    .last_mut()
                    .ok_or_else(|| perr("unexpected brace"))?
                    .children
                    .push(s);
            } else if let Some(name) = l.strip_suffix('{') {
                let name = name.trim();
                if name.is_empty() || name.contains([':', ' ']) {
                    return Err(perr("bad section name"));
                }
                stack.push(Section::new(name));
            } else if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.is_empty() || k.contains(' ') {
                    return Err(perr("bad key"));
                }
                stack
                    .last_mut()
                    .ok_or_else(|| perr("no section"))?
                    .kvs
                    .push((k.to_string(), v.to_string()));
            } else {
                return Err(perr("expected `key: value`, `name {` or `}`"));
            }
        }
        if stack.len() != 1 {
            return Err(ConfError::Parse {
                line: text.lines().count(),
                msg: "missing closing brace".into(),
            });
        }
        stack.pop().ok_or_else(|| ConfError::Parse {
            line: 0,
            msg: "empty".into(),
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

impl CorosyncConf {
    /// A new single-node configuration with Keel's defaults.
    pub fn new(cluster_name: &str, first: ConfNode, latency: LatencyClass) -> CorosyncConf {
        CorosyncConf {
            cluster_name: cluster_name.into(),
            token_ms: latency.token_ms(),
            token_coefficient_ms: None,
            join_ms: None,
            keyfile: None,
            nodes: vec![first],
            qdevice: None,
            logging: Logging::default(),
        }
    }

    /// Number of links every node has.
    pub fn link_count(&self) -> usize {
        self.nodes.first().map(|n| n.addrs.len()).unwrap_or(0)
    }

    /// `two_node` (with `wait_for_all`) is on: exactly two nodes and no QDevice.
    pub fn two_node(&self) -> bool {
        self.nodes.len() == 2 && self.qdevice.is_none()
    }

    /// The next free node id.
    pub fn next_nodeid(&self) -> u32 {
        self.nodes.iter().map(|n| n.nodeid).max().unwrap_or(0) + 1
    }

    pub fn node(&self, name: &str) -> Option<&ConfNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Add a node (validated against the others: unique name, id and addresses, same link count).
    pub fn add_node(&mut self, n: ConfNode) -> Result<(), ConfError> {
        self.nodes.push(n);
        if let Err(e) = self.validate() {
            self.nodes.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Remove a node by name; errors if it is not a member or is the last one.
    pub fn remove_node(&mut self, name: &str) -> Result<ConfNode, ConfError> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| invalid("nodelist", format!("{name:?} is not a member")))?;
        if self.nodes.len() == 1 {
            return Err(invalid(
                "nodelist",
                "cannot remove the last node of a cluster",
            ));
        }
        Ok(self.nodes.remove(i))
    }

    /// Check everything corosync would refuse or misread.
    pub fn validate(&self) -> Result<(), ConfError> {
        if !valid_name(&self.cluster_name) || self.cluster_name.contains('.') {
            return Err(invalid(
                "totem.cluster_name",
                format!("{:?}: use 1-63 letters, digits or '-'", self.cluster_name),
            ));
        }
        if !(300..=60_000).contains(&self.token_ms) {
            return Err(invalid(
                "totem.token",
                format!("{} ms is out of range 300..=60000", self.token_ms),
            ));
        }
        if self.nodes.is_empty() {
            return Err(invalid("nodelist", "no nodes"));
        }
        let links = self.link_count();
        if links == 0 || links > 2 {
            return Err(invalid(
                "nodelist",
                format!("each node needs 1 or 2 link addresses, got {links}"),
            ));
        }
        let mut names = BTreeMap::new();
        let mut ids = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        let mut family: Vec<Option<bool>> = vec![None; links];
        for (i, n) in self.nodes.iter().enumerate() {
            let f = format!("nodelist.node[{i}]");
            if !valid_name(&n.name) {
                return Err(invalid(
                    format!("{f}.name"),
                    format!("{:?} is not a valid node name", n.name),
                ));
            }
            if n.nodeid == 0 {
                return Err(invalid(format!("{f}.nodeid"), "node ids start at 1"));
            }
            if let Some(o) = names.insert(n.name.clone(), i) {
                return Err(invalid(
                    format!("{f}.name"),
                    format!("{:?} is already node[{o}]", n.name),
                ));
            }
            if let Some(o) = ids.insert(n.nodeid, i) {
                return Err(invalid(
                    format!("{f}.nodeid"),
                    format!("nodeid {} is already node[{o}]'s", n.nodeid),
                ));
            }
            if n.addrs.len() != links {
                return Err(invalid(
                    f.to_string(),
                    format!(
                        "{} has {} link addresses, the cluster uses {links}",
                        n.name,
                        n.addrs.len()
                    ),
                ));
            }
            for (l, a) in n.addrs.iter().enumerate() {
                let ip: IpAddr = a.parse().map_err(|_| {
                    invalid(
                        format!("{f}.ring{l}_addr"),
                        format!("{a:?} is not an IP address"),
                    )
                })?;
                if let Some(o) = addrs.insert(ip, n.name.clone()) {
                    return Err(invalid(
                        format!("{f}.ring{l}_addr"),
                        format!("{a} is already used by {o}"),
                    ));
                }
                match family[l] {
                    None => family[l] = Some(ip.is_ipv6()),
                    Some(v6) if v6 != ip.is_ipv6() => {
                        return Err(invalid(
                            format!("{f}.ring{l}_addr"),
                            format!("link{l} mixes IPv4 and IPv6 addresses"),
                        ))
                    }
                    _ => {}
                }
            }
        }
        if let Some(q) = &self.qdevice {
            if q.host.is_empty() || q.host.contains([' ', '{', '}', '#']) {
                return Err(invalid(
                    "quorum.device.net.host",
                    format!("{:?} is not a host", q.host),
                ));
            }
            if q.algorithm == QDeviceAlgorithm::Ffsplit
                && self.nodes.len() % 2 == 1
                && self.nodes.len() > 1
            {
                return Err(invalid(
                    "quorum.device",
                    "a QDevice only helps an even number of nodes (ffsplit)",
                ));
            }
        }
        Ok(())
    }

    /// `ipv6`/`ipv4` when every link address is of that family; `ipv6-4` when links differ
    /// (corosync -t refuses an IPv4 link under `ip_version: ipv6`).
    fn ip_version(&self) -> &'static str {
        let fams: Vec<bool> = self
            .nodes
            .iter()
            .flat_map(|n| n.addrs.iter())
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .map(|ip| ip.is_ipv6())
            .collect();
        if fams.iter().all(|v6| *v6) {
            "ipv6"
        } else if fams.iter().all(|v6| !*v6) {
            "ipv4"
        } else {
            "ipv6-4"
        }
    }

    fn model(&self) -> Section {
        let mut totem = Section::new("totem")
            .kv("version", 2)
            .kv("cluster_name", &self.cluster_name)
            .kv("transport", "knet")
            .kv("ip_version", self.ip_version())
            .kv("crypto_cipher", CRYPTO_CIPHER)
            .kv("crypto_hash", CRYPTO_HASH)
            .kv("link_mode", "passive")
            .kv("token", self.token_ms);
        if let Some(c) = self.token_coefficient_ms {
            totem = totem.kv("token_coefficient", c);
        }
        if let Some(j) = self.join_ms {
            totem = totem.kv("join", j);
        }
        if let Some(k) = &self.keyfile {
            totem = totem.kv("keyfile", k);
        }
        for l in 0..self.link_count() {
            // passive mode uses the highest-priority link that is up: link0 first
            totem = totem.child(
                Section::new("interface")
                    .kv("linknumber", l)
                    .kv("knet_link_priority", 10 - l as u32 * 5),
            );
        }
        let mut nodelist = Section::new("nodelist");
        for n in &self.nodes {
            let mut s = Section::new("node");
            for (l, a) in n.addrs.iter().enumerate() {
                s = s.kv(&format!("ring{l}_addr"), a);
            }
            nodelist = nodelist.child(s.kv("name", &n.name).kv("nodeid", n.nodeid));
        }
        let mut quorum = Section::new("quorum").kv("provider", "corosync_votequorum");
        if self.two_node() {
            quorum = quorum.kv("two_node", 1).kv("wait_for_all", 1);
        }
        if let Some(q) = &self.qdevice {
            let mut net = Section::new("net")
                .kv("host", &q.host)
                .kv("algorithm", q.algorithm.as_str());
            if let Some(p) = q.port {
                net = net.kv("port", p);
            }
            quorum = quorum.child(
                Section::new("device")
                    .kv("model", "net")
                    .kv("votes", 1)
                    .child(net),
            );
        }
        let mut logging = Section::new("logging");
        match &self.logging.logfile {
            Some(f) => logging = logging.kv("to_logfile", "yes").kv("logfile", f),
            None => logging = logging.kv("to_logfile", "no"),
        }
        logging = logging
            .kv("to_stderr", "no")
            .kv(
                "to_syslog",
                if self.logging.to_syslog { "yes" } else { "no" },
            )
            .kv("timestamp", "on");
        let mut root = Section::new("");
        root.children = vec![totem, nodelist, quorum, logging];
        root
    }

    /// Validate and render corosync.conf.
    pub fn render(&self) -> Result<String, ConfError> {
        self.validate()?;
        let mut out = String::from(
            "# Written by Keel (keel-hostd). Change it with `keel cluster`/`keel join`/`keel node remove`:\n# edits by hand are overwritten on the next membership change.\n\n",
        );
        self.model().render(&mut out, 0)?;
        Ok(out)
    }

    /// Parse a corosync.conf Keel wrote. Keys outside that subset are an error (never dropped).
    pub fn parse(text: &str) -> Result<CorosyncConf, ConfError> {
        let root = Section::parse(text)?;
        for c in &root.children {
            if !["totem", "nodelist", "quorum", "logging"].contains(&c.name.as_str()) {
                return Err(invalid(&c.name, "section not written by Keel"));
            }
        }
        let one = |name: &'static str| -> Result<&Section, ConfError> {
            let mut it = root.sections(name);
            let s = it.next().ok_or_else(|| invalid(name, "section missing"))?;
            if it.next().is_some() {
                return Err(invalid(name, "section given twice"));
            }
            Ok(s)
        };
        let num = |s: &Section, k: &str| -> Result<Option<u32>, ConfError> {
            s.get(k)
                .map(|v| {
                    v.parse::<u32>().map_err(|_| {
                        invalid(format!("{}.{k}", s.name), format!("{v:?} is not a number"))
                    })
                })
                .transpose()
        };
        let totem = one("totem")?;
        let expect = |s: &Section, k: &str, want: &str| -> Result<(), ConfError> {
            match s.get(k) {
                Some(v) if v == want => Ok(()),
                other => Err(invalid(
                    format!("{}.{k}", s.name),
                    format!("expected {want:?}, found {other:?}"),
                )),
            }
        };
        expect(totem, "transport", "knet")?;
        expect(totem, "crypto_cipher", CRYPTO_CIPHER)?;
        expect(totem, "crypto_hash", CRYPTO_HASH)?;
        for (k, _) in &totem.kvs {
            if ![
                "version",
                "cluster_name",
                "transport",
                "ip_version",
                "crypto_cipher",
                "crypto_hash",
                "link_mode",
                "token",
                "token_coefficient",
                "join",
                "keyfile",
            ]
            .contains(&k.as_str())
            {
                return Err(invalid(format!("totem.{k}"), "key not written by Keel"));
            }
        }
        let cluster_name = totem
            .get("cluster_name")
            .ok_or_else(|| invalid("totem.cluster_name", "missing"))?
            .to_string();
        let token_ms = num(totem, "token")?.unwrap_or(3000);
        let mut nodes = vec![];
        for (i, n) in one("nodelist")?.sections("node").enumerate() {
            let f = format!("nodelist.node[{i}]");
            let mut addrs = vec![];
            for l in 0..8 {
                match n.get(&format!("ring{l}_addr")) {
                    Some(a) => addrs.push(a.to_string()),
                    None => break,
                }
            }
            nodes.push(ConfNode {
                nodeid: num(n, "nodeid")?
                    .ok_or_else(|| invalid(format!("{f}.nodeid"), "missing"))?,
                name: n
                    .get("name")
                    .ok_or_else(|| invalid(format!("{f}.name"), "missing"))?
                    .to_string(),
                addrs,
            });
        }
        let quorum = one("quorum")?;
        expect(quorum, "provider", "corosync_votequorum")?;
        let qdevice = match quorum.sections("device").next() {
            None => None,
            Some(d) => {
                let net = d
                    .sections("net")
                    .next()
                    .ok_or_else(|| invalid("quorum.device.net", "missing"))?;
                let algorithm = match net.get("algorithm") {
                    None => QDeviceAlgorithm::Ffsplit,
                    Some(a) => QDeviceAlgorithm::parse(a).ok_or_else(|| {
                        invalid(
                            "quorum.device.net.algorithm",
                            format!("{a:?}: Keel writes ffsplit or lms"),
                        )
                    })?,
                };
                Some(QDevice {
                    algorithm,
                    host: net
                        .get("host")
                        .ok_or_else(|| invalid("quorum.device.net.host", "missing"))?
                        .to_string(),
                    port: num(net, "port")?
                        .map(|p| {
                            u16::try_from(p)
                                .map_err(|_| invalid("quorum.device.net.port", "out of range"))
                        })
                        .transpose()?,
                })
            }
        };
        let logging = match root.sections("logging").next() {
            None => Logging {
                logfile: None,
                to_syslog: true,
            },
            Some(l) => Logging {
                logfile: if l.get("to_logfile") == Some("yes") {
                    l.get("logfile").map(str::to_string)
                } else {
                    None
                },
                to_syslog: l.get("to_syslog") != Some("no"),
            },
        };
        let c = CorosyncConf {
            cluster_name,
            token_ms,
            token_coefficient_ms: num(totem, "token_coefficient")?,
            join_ms: num(totem, "join")?,
            keyfile: totem.get("keyfile").map(str::to_string),
            nodes,
            qdevice,
            logging,
        };
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: u32, addrs: &[&str]) -> ConfNode {
        ConfNode {
            nodeid: id,
            name: format!("node{id}"),
            addrs: addrs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn err_field(r: Result<(), ConfError>) -> String {
        match r {
            Err(ConfError::Invalid { field, .. }) => field,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn round_trip_and_two_node_switch() -> Result<(), ConfError> {
        let mut c = CorosyncConf::new("c1", n(1, &["192.0.2.1"]), LatencyClass::Lan);
        assert!(!c.two_node());
        c.add_node(n(2, &["192.0.2.2"]))?;
        assert!(c.two_node());
        let text = c.render()?;
        assert!(text.contains("two_node: 1") && text.contains("wait_for_all: 1"));
        assert_eq!(CorosyncConf::parse(&text)?, c);
        c.add_node(n(3, &["192.0.2.3"]))?;
        assert!(!c.render()?.contains("two_node"));
        c.remove_node("node3")?;
        assert!(c.render()?.contains("two_node: 1"));
        Ok(())
    }

    #[test]
    fn qdevice_algorithms_and_two_node() -> Result<(), ConfError> {
        let mut c = CorosyncConf::new("c1", n(1, &["192.0.2.1"]), LatencyClass::Lan);
        c.add_node(n(2, &["192.0.2.2"]))?;
        c.qdevice = Some(QDevice {
            host: "192.0.2.9".into(),
            port: Some(5403),
            algorithm: QDeviceAlgorithm::Lms,
        });
        assert!(!c.two_node());
        let text = c.render()?;
        assert!(
            text.contains("algorithm: lms") && !text.contains("two_node"),
            "{text}"
        );
        assert_eq!(CorosyncConf::parse(&text)?, c);
        // ffsplit needs an even node count, lms does not
        c.add_node(n(3, &["192.0.2.3"]))?;
        if let Some(q) = c.qdevice.as_mut() {
            q.algorithm = QDeviceAlgorithm::Ffsplit;
        }
        assert_eq!(err_field(c.validate()), "quorum.device");
        let bad = text.replace("algorithm: lms", "algorithm: test");
        assert!(CorosyncConf::parse(&bad).is_err());
        Ok(())
    }

    #[test]
    fn refusals_name_the_field() {
        let mut c = CorosyncConf::new("c1", n(1, &["192.0.2.1"]), LatencyClass::Lan);
        let mut dup = n(1, &["192.0.2.2"]);
        dup.name = "other".into();
        assert_eq!(err_field(c.add_node(dup)), "nodelist.node[1].nodeid");
        assert_eq!(
            err_field(c.add_node(n(2, &["192.0.2.1"]))),
            "nodelist.node[1].ring0_addr"
        );
        assert_eq!(
            err_field(c.add_node(n(2, &["fd00::2"]))),
            "nodelist.node[1].ring0_addr"
        );
        assert_eq!(
            err_field(c.add_node(n(2, &["192.0.2.2", "198.51.100.2"]))),
            "nodelist.node[1]"
        );
        assert_eq!(c.nodes.len(), 1, "refused nodes are not kept");
        let mut d = c.clone();
        d.cluster_name = "a b".into();
        assert_eq!(err_field(d.validate()), "totem.cluster_name");
        let mut d = c.clone();
        d.token_ms = 10;
        assert_eq!(err_field(d.validate()), "totem.token");
        assert!(c.remove_node("node1").is_err());
    }

    #[test]
    fn parse_refuses_foreign_keys() {
        let text = "totem {\n version: 2\n cluster_name: x\n transport: knet\n crypto_cipher: aes256\n crypto_hash: sha256\n secauth: on\n}\n";
        assert!(matches!(
            CorosyncConf::parse(text),
            Err(ConfError::Invalid { field, .. }) if field == "totem.secauth"
        ));
        assert!(matches!(
            Section::parse("totem {\n"),
            Err(ConfError::Parse { .. })
        ));
    }

    #[test]
    fn latency_classes() {
        assert_eq!(LatencyClass::from_rtt_ms(0.05).token_ms(), 1000);
        assert_eq!(LatencyClass::from_rtt_ms(1.0).token_ms(), 3000);
        assert_eq!(LatencyClass::from_rtt_ms(12.0).token_ms(), 10000);
    }
}
