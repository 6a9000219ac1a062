//! Reading the engines' own view of the cluster:
//!
//! * [`CrmStatus::parse`] — `crm_mon --output-as=xml --inactive --fence-history=2` (Pacemaker
//!   2.1): nodes (online, standby, unclean, DC), resources and where they run, failed actions,
//!   fence history;
//! * [`QuorumInfo::parse`] — `corosync-quorumtool -s`: quorate, votes, members;
//! * [`LinkStatus::parse`] — `corosync-cfgtool -n`: knet links per peer.
//!
//! The samples these parsers are tested on were captured from the netns lab
//! (`clusterd/tests/samples/`).

use keel_xml::Element;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("crm_mon output is not XML: {0}")]
    Xml(#[from] keel_xml::XmlError),
    #[error("{tool} output: {what}")]
    Shape { tool: &'static str, what: String },
}

fn shape(tool: &'static str, what: impl Into<String>) -> ParseError {
    ParseError::Shape {
        tool,
        what: what.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrmNode {
    pub name: String,
    pub id: u32,
    pub online: bool,
    pub standby: bool,
    pub maintenance: bool,
    pub pending: bool,
    /// Lost without being fenced yet: Pacemaker will fence it.
    pub unclean: bool,
    pub is_dc: bool,
    pub resources_running: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrmResource {
    pub id: String,
    /// `class:provider:type`, e.g. `stonith:fence_ipmilan`.
    pub agent: String,
    pub role: String,
    pub active: bool,
    pub failed: bool,
    pub managed: bool,
    pub blocked: bool,
    /// Nodes it runs on.
    pub nodes: Vec<String>,
    /// The group or clone it belongs to.
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedAction {
    pub op_key: String,
    pub node: String,
    pub task: String,
    pub exit_status: String,
    pub exit_reason: String,
    pub exit_code: i32,
    pub last_rc_change: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FenceEvent {
    pub target: String,
    pub action: String,
    /// `success`, `failed`, `pending`.
    pub status: String,
    /// The node that ran the agent.
    pub delegate: Option<String>,
    /// The node that asked for it.
    pub origin: Option<String>,
    pub client: Option<String>,
    pub completed: Option<String>,
}

impl FenceEvent {
    /// `completed` as Unix seconds (crm_mon writes UTC: `2026-11-22 00:24:36Z`).
    pub fn completed_unix(&self) -> Option<u64> {
        parse_utc(self.completed.as_deref()?)
    }
}

/// `YYYY-MM-DD HH:MM:SS` followed by `Z` or `+00:00` → Unix seconds.
fn parse_utc(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .or_else(|| s.strip_suffix(" +00:00"))?;
    let (date, time) = s.split_once([' ', 'T'])?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || *ss > 60 {
        return None;
    }
    // days from civil (proleptic Gregorian), Howard Hinnant's algorithm
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + hh * 3600 + mm * 60 + ss).ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrmStatus {
    /// pacemakerd's state (`running`, `shutting_down`, …).
    pub pacemaker_state: Option<String>,
    pub dc: Option<String>,
    pub dc_with_quorum: bool,
    pub stonith_enabled: Option<bool>,
    pub no_quorum_policy: Option<String>,
    pub nodes: Vec<CrmNode>,
    pub resources: Vec<CrmResource>,
    pub failures: Vec<FailedAction>,
    pub fence_history: Vec<FenceEvent>,
    /// Non-zero fail counts from the node history.
    pub fail_counts: Vec<FailCount>,
}

/// A resource's fail count on a node (`node_history`; INFINITY is 1000000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailCount {
    pub node: String,
    pub resource: String,
    pub count: u64,
    pub last_failure: Option<String>,
}

fn flag(e: &Element, k: &str) -> bool {
    e.get_attr(k) == Some("true")
}

fn owned(e: &Element, k: &str) -> Option<String> {
    e.get_attr(k).map(str::to_string)
}

fn need(e: &Element, k: &str) -> Result<String, ParseError> {
    owned(e, k).ok_or_else(|| shape("crm_mon", format!("<{}> without {k}", e.name)))
}

impl CrmStatus {
    pub fn parse(xml: &str) -> Result<Self, ParseError> {
        let root = Element::parse(xml)?;
        if root.name != "pacemaker-result" {
            return Err(shape(
                "crm_mon",
                format!("root element is <{}>, not <pacemaker-result>", root.name),
            ));
        }
        if let Some(st) = root.find("status") {
            if st.get_attr("code").is_some_and(|c| c != "0") {
                return Err(shape(
                    "crm_mon",
                    format!(
                        "failed: {}",
                        st.get_attr("message").unwrap_or("(no message)")
                    ),
                ));
            }
        }
        let summary = root.find("summary");
        let dc = summary.and_then(|s| s.find("current_dc"));
        let opts = summary.and_then(|s| s.find("cluster_options"));
        let mut nodes = Vec::new();
        for n in root
            .find("nodes")
            .map(|n| n.find_all("node").collect::<Vec<_>>())
            .unwrap_or_default()
        {
            nodes.push(CrmNode {
                name: need(n, "name")?,
                id: need(n, "id")?
                    .parse()
                    .map_err(|_| shape("crm_mon", "node id is not a number"))?,
                online: flag(n, "online"),
                standby: flag(n, "standby"),
                maintenance: flag(n, "maintenance"),
                pending: flag(n, "pending"),
                unclean: flag(n, "unclean"),
                is_dc: flag(n, "is_dc"),
                resources_running: n
                    .get_attr("resources_running")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            });
        }
        let mut resources = Vec::new();
        if let Some(rs) = root.find("resources") {
            collect_resources(rs, None, &mut resources)?;
        }
        let mut failures = Vec::new();
        for f in root
            .find("failures")
            .map(|f| f.find_all("failure").collect::<Vec<_>>())
            .unwrap_or_default()
        {
            failures.push(FailedAction {
                op_key: need(f, "op_key")?,
                node: need(f, "node")?,
                task: owned(f, "task").unwrap_or_default(),
                exit_status: owned(f, "exitstatus").unwrap_or_default(),
                exit_reason: owned(f, "exitreason").unwrap_or_default(),
                exit_code: f
                    .get_attr("exitcode")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(-1),
                last_rc_change: owned(f, "last-rc-change").unwrap_or_default(),
            });
        }
        let mut fence_history = Vec::new();
        for e in root
            .find("fence_history")
            .map(|f| f.find_all("fence_event").collect::<Vec<_>>())
            .unwrap_or_default()
        {
            fence_history.push(FenceEvent {
                target: need(e, "target")?,
                action: need(e, "action")?,
                status: need(e, "status")?,
                delegate: owned(e, "delegate"),
                origin: owned(e, "origin"),
                client: owned(e, "client"),
                completed: owned(e, "completed"),
            });
        }
        let mut fail_counts = Vec::new();
        for n in root
            .find("node_history")
            .map(|h| h.find_all("node").collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let node = need(n, "name")?;
            for r in n.find_all("resource_history") {
                let count: u64 = r
                    .get_attr("fail-count")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if count > 0 {
                    fail_counts.push(FailCount {
                        node: node.clone(),
                        resource: need(r, "id")?,
                        count,
                        last_failure: owned(r, "last-failure"),
                    });
                }
            }
        }
        Ok(CrmStatus {
            fail_counts,
            pacemaker_state: root.find("pacemakerd").and_then(|p| owned(p, "state")),
            dc: dc
                .filter(|d| flag(d, "present"))
                .and_then(|d| owned(d, "name")),
            dc_with_quorum: dc.is_some_and(|d| flag(d, "with_quorum")),
            stonith_enabled: opts
                .and_then(|o| o.get_attr("stonith-enabled"))
                .map(|v| v == "true"),
            no_quorum_policy: opts.and_then(|o| owned(o, "no-quorum-policy")),
            nodes,
            resources,
            failures,
            fence_history,
        })
    }

    pub fn node(&self, name: &str) -> Option<&CrmNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn resource(&self, id: &str) -> Option<&CrmResource> {
        self.resources.iter().find(|r| r.id == id)
    }

    /// The node with corosync node id `id`.
    pub fn node_by_id(&self, id: u32) -> Option<&CrmNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The newest fence event against `node` (crm_mon lists newest first).
    pub fn last_fence_of(&self, node: &str) -> Option<&FenceEvent> {
        self.fence_history.iter().find(|e| e.target == node)
    }
}

fn collect_resources(
    parent: &Element,
    parent_id: Option<&str>,
    out: &mut Vec<CrmResource>,
) -> Result<(), ParseError> {
    for c in &parent.children {
        match c.name.as_str() {
            "resource" => out.push(CrmResource {
                id: need(c, "id")?,
                agent: owned(c, "resource_agent").unwrap_or_default(),
                role: owned(c, "role").unwrap_or_default(),
                active: flag(c, "active"),
                failed: flag(c, "failed"),
                managed: flag(c, "managed"),
                blocked: flag(c, "blocked"),
                nodes: c
                    .find_all("node")
                    .filter_map(|n| owned(n, "name"))
                    .collect(),
                parent: parent_id.map(str::to_string),
            }),
            "group" | "clone" | "bundle" => {
                let id = need(c, "id")?;
                collect_resources(c, Some(&id), out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumMember {
    pub nodeid: u32,
    pub votes: u32,
    pub name: String,
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuorumInfo {
    pub node_id: u32,
    pub ring_id: String,
    pub quorate: bool,
    pub expected_votes: u32,
    pub total_votes: u32,
    /// Votes needed for quorum.
    pub quorum: u32,
    /// votequorum flags: `Quorate`, `2Node`, `WaitForAll`, `Qdevice`, …
    pub flags: Vec<String>,
    pub members: Vec<QuorumMember>,
    /// The QDevice's line (`0  VOTES  Qdevice`): its votes now, `None` when no QDevice is
    /// registered with votequorum.
    pub qdevice_votes: Option<u32>,
}

impl QuorumInfo {
    /// `corosync-quorumtool -s` (exit status 2 when not quorate still prints all of it).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let field = |k: &str| -> Option<&str> {
            text.lines().find_map(|l| {
                let (a, b) = l.split_once(':')?;
                (a.trim() == k).then(|| b.trim())
            })
        };
        let num = |k: &str| -> Result<u32, ParseError> {
            field(k)
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| shape("corosync-quorumtool", format!("no numeric {k:?}")))
        };
        let quorate = match field("Quorate") {
            Some("Yes") => true,
            Some("No") => false,
            other => {
                return Err(shape(
                    "corosync-quorumtool",
                    format!("Quorate is {other:?}, expected Yes or No"),
                ))
            }
        };
        let mut members = Vec::new();
        let mut qdevice_votes = None;
        let mut in_members = false;
        // with a QDevice registered a `Qdevice` column (its flags per node, e.g. `A,V,NMW`)
        // sits between Votes and Name
        let mut qdevice_column = false;
        for l in text.lines() {
            let t = l.trim();
            if t.starts_with("Nodeid") && t.contains("Votes") {
                in_members = true;
                qdevice_column = t.split_whitespace().any(|w| w == "Qdevice");
                continue;
            }
            if !in_members || t.is_empty() {
                continue;
            }
            let mut w = t.split_whitespace();
            let (Some(id), Some(votes)) = (w.next(), w.next()) else {
                continue;
            };
            let (Ok(nodeid), Ok(votes)) = (id.parse::<u32>(), votes.parse()) else {
                continue;
            };
            let rest: Vec<&str> = w.collect();
            if nodeid == 0 && rest.last() == Some(&"Qdevice") {
                qdevice_votes = Some(votes);
                continue;
            }
            let rest = if qdevice_column && rest.len() > 1 {
                &rest[1..]
            } else {
                &rest[..]
            };
            let local = rest.contains(&"(local)");
            let name = rest
                .iter()
                .find(|s| !s.starts_with('('))
                .map(|s| s.to_string())
                .unwrap_or_default();
            members.push(QuorumMember {
                nodeid,
                votes,
                name,
                local,
            });
        }
        Ok(QuorumInfo {
            node_id: num("Node ID")?,
            ring_id: field("Ring ID").unwrap_or_default().to_string(),
            quorate,
            expected_votes: num("Expected votes")?,
            total_votes: num("Total votes")?,
            quorum: num("Quorum")?,
            flags: field("Flags")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            members,
            qdevice_votes,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub link: u8,
    pub transport: String,
    pub local_addr: String,
    pub remote_addr: String,
    pub enabled: bool,
    pub connected: bool,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerLinks {
    pub nodeid: u32,
    pub reachable: bool,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    pub local_node_id: u32,
    pub transport: String,
    /// Peers corosync knows a route to (a peer that is gone entirely is not listed).
    pub peers: Vec<PeerLinks>,
}

impl LinkStatus {
    /// `corosync-cfgtool -n`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut lines = text.lines();
        let head = lines
            .by_ref()
            .find(|l| !l.trim().is_empty())
            .ok_or_else(|| shape("corosync-cfgtool", "empty output"))?;
        // "Local node ID 1, transport knet"
        let (id_part, tr_part) = head
            .split_once(',')
            .ok_or_else(|| shape("corosync-cfgtool", format!("unexpected header {head:?}")))?;
        let local_node_id = id_part
            .trim()
            .strip_prefix("Local node ID")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| shape("corosync-cfgtool", format!("unexpected header {head:?}")))?;
        let transport = tr_part
            .trim()
            .strip_prefix("transport")
            .unwrap_or(tr_part)
            .trim()
            .to_string();
        let mut peers: Vec<PeerLinks> = Vec::new();
        for l in lines {
            let t = l.trim();
            if let Some(rest) = t.strip_prefix("nodeid:") {
                let mut w = rest.split_whitespace();
                let nodeid = w
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| shape("corosync-cfgtool", format!("bad peer line {t:?}")))?;
                let state: Vec<&str> = w.collect();
                peers.push(PeerLinks {
                    nodeid,
                    reachable: state.first() == Some(&"reachable"),
                    links: Vec::new(),
                });
            } else if let Some(rest) = t.strip_prefix("LINK:") {
                // " 0 udp (a->b) enabled connected mtu: 1365"
                let peer = peers
                    .last_mut()
                    .ok_or_else(|| shape("corosync-cfgtool", "LINK line before any nodeid"))?;
                let mut w = rest.split_whitespace();
                let link = w
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| shape("corosync-cfgtool", format!("bad link line {t:?}")))?;
                let transport = w.next().unwrap_or_default().to_string();
                let addrs = w.next().unwrap_or_default();
                let (local_addr, remote_addr) = addrs
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split_once("->")
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .unwrap_or_default();
                let words: Vec<&str> = w.collect();
                let mtu = words
                    .iter()
                    .position(|w| *w == "mtu:")
                    .and_then(|i| words.get(i + 1))
                    .and_then(|v| v.parse().ok());
                peer.links.push(Link {
                    link,
                    transport,
                    local_addr,
                    remote_addr,
                    enabled: words.contains(&"enabled"),
                    connected: words.contains(&"connected"),
                    mtu,
                });
            }
        }
        Ok(LinkStatus {
            local_node_id,
            transport,
            peers,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/samples")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn three_healthy_nodes() {
        let s = CrmStatus::parse(&sample("crm_mon-3-nodes.xml")).unwrap();
        assert_eq!(s.dc.as_deref(), Some("node1"));
        assert!(s.dc_with_quorum);
        assert_eq!(s.stonith_enabled, Some(true));
        assert_eq!(s.pacemaker_state.as_deref(), Some("running"));
        assert_eq!(s.nodes.len(), 3);
        assert!(s.nodes.iter().all(|n| n.online && !n.unclean));
        assert!(s.node("node1").unwrap().is_dc);
        let f1 = s.resource("fence-node1").unwrap();
        assert_eq!(f1.agent, "stonith:fence_keellab");
        assert_eq!(f1.nodes, ["node2"]);
        assert!(s.failures.is_empty());
        assert!(s.fence_history.is_empty());
    }

    #[test]
    fn failures_and_fence_history() {
        let s = CrmStatus::parse(&sample("crm_mon-fenced-failed.xml")).unwrap();
        assert_eq!(s.failures.len(), 1);
        let f = &s.failures[0];
        assert_eq!(f.op_key, "broken-ip_start_0");
        assert_eq!(f.node, "node2");
        assert_eq!(f.exit_code, 6);
        assert_eq!(f.exit_reason, "[findif] failed");
        // fail counts from the node history: only the failed resource, INFINITY as 1000000
        assert_eq!(
            s.fail_counts,
            vec![FailCount {
                node: "node2".into(),
                resource: "broken-ip".into(),
                count: 1_000_000,
                last_failure: Some("Sun Nov 22 00:24:37 2026".into()),
            }]
        );
        assert!(CrmStatus::parse(&sample("crm_mon-3-nodes.xml"))
            .unwrap()
            .fail_counts
            .is_empty());
        let e = s.last_fence_of("node3").unwrap();
        assert_eq!(
            (e.action.as_str(), e.status.as_str()),
            ("reboot", "success")
        );
        assert_eq!(e.delegate.as_deref(), Some("node1"));
        assert!(!s.resource("broken-ip").unwrap().active);
    }

    #[test]
    fn a_node_fenced_off() {
        let s = CrmStatus::parse(&sample("crm_mon-node-off.xml")).unwrap();
        assert!(!s.node("node3").unwrap().online);
        assert_eq!(s.last_fence_of("node3").unwrap().action, "off");
        let q = QuorumInfo::parse(&sample("quorumtool-node-off.txt")).unwrap();
        assert!(q.quorate);
        assert_eq!((q.expected_votes, q.total_votes, q.quorum), (3, 2, 2));
        assert_eq!(q.members.len(), 2);
        let l = LinkStatus::parse(&sample("cfgtool-n-node-off.txt")).unwrap();
        assert_eq!(l.peers.len(), 1);
    }

    #[test]
    fn quorum_with_a_qdevice() {
        // corosync-quorumtool 3.1 with corosync-qdevice 3.0.3 registered (netns lab): a
        // Qdevice flags column before the name, the QDevice's own line with node id 0
        let q = QuorumInfo::parse(&sample("quorumtool-qdevice.txt")).unwrap();
        assert_eq!((q.expected_votes, q.total_votes, q.quorum), (3, 3, 2));
        assert_eq!(q.flags, ["Quorate", "Qdevice"]);
        assert_eq!(q.qdevice_votes, Some(1));
        let names: Vec<&str> = q.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["node1", "node2"]);
        assert!(q.members[0].local && !q.members[1].local);
        let plain = QuorumInfo::parse(&sample("quorumtool-3-nodes.txt")).unwrap();
        assert_eq!(plain.qdevice_votes, None);
    }

    #[test]
    fn quorum_of_three() {
        let q = QuorumInfo::parse(&sample("quorumtool-3-nodes.txt")).unwrap();
        assert_eq!(q.node_id, 1);
        assert_eq!(q.ring_id, "1.d");
        assert_eq!(q.flags, ["Quorate"]);
        assert_eq!(
            q.members[0],
            QuorumMember {
                nodeid: 1,
                votes: 1,
                name: "node1".into(),
                local: true
            }
        );
        assert_eq!(q.members[2].name, "node3");
    }

    #[test]
    fn links_of_three() {
        let l = LinkStatus::parse(&sample("cfgtool-n-3-nodes.txt")).unwrap();
        assert_eq!((l.local_node_id, l.transport.as_str()), (1, "knet"));
        assert_eq!(l.peers.len(), 2);
        let p = &l.peers[1];
        assert_eq!(p.nodeid, 3);
        assert!(p.reachable);
        assert_eq!(p.links[0].link, 0);
        assert!(p.links[0].connected && p.links[0].enabled);
        assert_eq!(p.links[0].mtu, Some(1365));
        assert_eq!(p.links[0].remote_addr, "fd6b:6565:6c00:1::3%2");
    }

    #[test]
    fn fence_completion_time() {
        let s = CrmStatus::parse(&sample("crm_mon-node-off.xml")).expect("parse");
        let e = s.last_fence_of("node3").expect("fence");
        // date -u -d '2026-11-22 00:25:12' +%s
        assert_eq!(e.completed_unix(), Some(1_795_307_112));
        assert_eq!(s.node_by_id(3).expect("node3").name, "node3");
        assert_eq!(parse_utc("1970-01-01 00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2000-03-01T00:00:00+00:00"), Some(951_868_800));
        assert_eq!(
            parse_utc("2026-11-22 00:25:12"),
            None,
            "no zone: not trusted"
        );
        assert_eq!(parse_utc("2026-13-22 00:25:12Z"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(CrmStatus::parse("not xml <").is_err());
        assert!(CrmStatus::parse("<other/>").is_err());
        assert!(QuorumInfo::parse("Quorate: maybe").is_err());
        assert!(LinkStatus::parse("").is_err());
        let failed =
            r#"<pacemaker-result><status code="102" message="Not connected"/></pacemaker-result>"#;
        let e = CrmStatus::parse(failed).unwrap_err().to_string();
        assert!(e.contains("Not connected"), "{e}");
    }
}
