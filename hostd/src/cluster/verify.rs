//! `keel cluster verify` (`GET /api/v1/cluster/verify`): facts collected from every member,
//! turned into findings with stable codes (docs/verify.md), in the spirit of
//! `gnt-cluster verify --error-codes`.
//!
//! Two halves: collecting (this node's view of the cluster configuration — corosync.conf,
//! Pacemaker's CIB, the recorded fence tests — plus each member's own [`NodeFacts`], asked
//! through the member-to-member peer endpoint `POST /api/v1/cluster/peer/verify-facts`, HMAC +
//! mutual TLS like every peer call), and deciding ([`evaluate`], pure, unit-tested with fake
//! facts, one test per code). Every local command runs through the cluster's
//! `keel_runner::Runner` with a timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use clusterd::commands;
use clusterd::form;
use keel_api::verify::{Finding, Severity, VerifyReport};
use keel_runner::Cmd;
use serde::{Deserialize, Serialize};

use super::forward::check_member_request;
use crate::cluster_net::{self, Signed, PEER_HEADER};
use crate::error::{Error, Result};
use crate::tls::PeerCert;
use crate::Node;

/// Path of the peer endpoint a member answers with its [`NodeFacts`].
pub const FACTS_PATH: &str = "/api/v1/cluster/peer/verify-facts";

/// Clocks further apart than this are an `ECLOCKSKEW` (after subtracting the uncertainty of the
/// reading: half the request's round trip).
pub const CLOCK_SKEW_MAX_MS: i64 = 1000;

/// How long a member has to answer with its facts.
const FACTS_TIMEOUT: Duration = Duration::from_secs(15);

/// Test-only hook, read only on a node whose libvirt URI is libvirt's `test://` driver (the
/// netns lab; never a production node): milliseconds added to the clock reading this node
/// reports, so the lab, whose namespace nodes share one kernel clock, can show a skewed node.
pub const TEST_CLOCK_OFFSET_FILE: &str = "test-clock-offset-ms";

/// One file whose presence, mode and owner verify checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFact {
    /// What the file is: `corosync.conf`, `corosync-authkey`, `pacemaker-authkey`, `node-key`,
    /// `ca-key`, `local-root-token` (the expectations are in [`expectation`]).
    pub kind: String,
    pub path: String,
    pub exists: bool,
    pub mode: u32,
    pub uid: u32,
}

/// What chrony says about a node's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChronyFact {
    /// The system clock's offset from NTP time (ms; "System time").
    pub offset_ms: i64,
    /// Leap status is not "Not synchronised".
    pub synchronised: bool,
}

/// `chronyc -c tracking` (CSV; the 5th field is the system time's offset in seconds, the last
/// the leap status).
pub fn parse_chrony_tracking(out: &str) -> Option<ChronyFact> {
    let f: Vec<&str> = out.lines().next()?.split(',').collect();
    if f.len() < 14 {
        return None;
    }
    let secs: f64 = f[4].trim().parse().ok()?;
    Some(ChronyFact {
        offset_ms: (secs * 1000.0).round() as i64,
        synchronised: f[f.len() - 1].trim() != "Not synchronised",
    })
}

/// The links to one peer as a node's corosync sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLinkFact {
    pub nodeid: u32,
    /// The link numbers that are connected.
    pub connected: Vec<u8>,
}

/// A NIC of a VM on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNicFact {
    pub vm: String,
    pub network: Option<String>,
    pub bridge: Option<String>,
}

/// A storage pool of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolFact {
    pub name: String,
    pub kind: String,
    pub path: Option<String>,
}

/// A DRBD minor the node's kernel runs (`/proc/drbd`), with what its configuration file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrbdFact {
    pub minor: u32,
    /// The resource whose configuration names this minor (`None`: no file names it).
    pub resource: Option<String>,
    /// `/proc/drbd`'s `cs:`, `ro:` and `ds:`.
    pub connection: String,
    pub role: String,
    pub peer_role: String,
    pub disk: String,
    pub peer_disk: String,
    /// The configuration allows two primaries.
    pub two_primaries: bool,
    /// The configuration's `fencing` policy (`None`: none set, DRBD's default of no fencing).
    pub fencing: Option<String>,
}

/// What one member reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub node: String,
    /// The node's clock (Unix ms) when it collected these facts.
    pub clock_ms: i64,
    /// SHA-256 of its corosync.conf (`None`: unreadable).
    pub corosync_conf_sha256: Option<String>,
    pub files: Vec<FileFact>,
    /// Each member name as this node resolves it (`getent ahosts`); empty: does not resolve.
    pub resolved: BTreeMap<String, Vec<String>>,
    /// The node's own addresses (`ip -o addr show`, without prefix length).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// chrony's view (`chronyc -c tracking`); `None` when chronyd does not answer.
    #[serde(default)]
    pub chrony: Option<ChronyFact>,
    /// `None`: `corosync-cfgtool -n` did not answer.
    pub links: Option<Vec<PeerLinkFact>>,
    /// libvirt networks defined on the node.
    pub networks: Vec<String>,
    /// Linux bridges present on the node.
    pub bridges: Vec<String>,
    pub vm_nics: Vec<VmNicFact>,
    pub pools: Vec<PoolFact>,
    /// Every configured DRBD minor the kernel reports (empty without the module).
    #[serde(default)]
    pub drbd: Vec<DrbdFact>,
    /// Pacemaker's CIB-secret files on the node: device → parameter → the file matches its
    /// signature. `None`: not readable, or a member too old to report them.
    #[serde(default)]
    pub cib_secrets: Option<BTreeMap<String, BTreeMap<String, bool>>>,
    /// `sbd.service` is active (`None`: the stack is not under systemd, or a member too old to
    /// report it).
    #[serde(default)]
    pub sbd_active: Option<bool>,
    /// The fence agents installed where Pacemaker runs them (`/usr/sbin/fence_*`). `None`: the
    /// directory could not be read, or a member too old to report them.
    #[serde(default)]
    pub fence_agents: Option<Vec<String>>,
}

/// A member as corosync.conf and the cluster record list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFact {
    pub name: String,
    pub nodeid: u32,
    /// Its corosync link addresses (link 0, 1, …).
    pub addrs: Vec<String>,
    /// The host part of its API address.
    pub api_host: String,
}

/// A stonith device of the CIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFact {
    pub id: String,
    /// The node it fences (`pcmk_host_list`).
    pub target: String,
    /// A `-INFINITY` location keeps it off its target.
    pub avoids_target: bool,
    /// It has a fence delay (`pcmk_delay_base`/`pcmk_delay_max`/`delay`, not zero).
    pub delay: bool,
    /// Secret-looking parameters (a password, an SNMP community) whose value is in the CIB
    /// itself rather than `lrm://`.
    pub plaintext: Vec<String>,
    /// Parameters whose value is a CIB secret (`lrm://`): each node needs its file.
    pub cib_secrets: Vec<String>,
    /// A `fence_sbd` device: it only kills a node whose own sbd runs.
    pub sbd: bool,
    /// The agent program (the primitive's `type`, e.g. `fence_ipmilan`).
    pub agent: String,
}

/// A fence-agent parameter that holds a secret: a password (`password`, `passwd`,
/// `snmp_priv_passwd`…) or an SNMP community; not a `*_script` (a path to a program that
/// prints the password).
pub fn secret_like(param: &str) -> bool {
    let p = param.to_ascii_lowercase();
    (p.contains("passw") || p == "community") && !p.ends_with("_script")
}

/// The last fence test of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFact {
    pub ok: bool,
    pub message: String,
}

/// The cluster configuration as the checking node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFacts {
    pub name: String,
    pub checked_by: String,
    pub members: Vec<MemberFact>,
    pub two_node: bool,
    /// Pacemaker's `stonith-enabled` (`None`: Pacemaker did not answer).
    pub stonith_enabled: Option<bool>,
    /// `None`: the CIB could not be read.
    pub devices: Option<Vec<DeviceFact>>,
    pub tests: BTreeMap<String, TestFact>,
    /// DRBD resources of Keel's `drbd-gfs2` pools (resource → pool): dual-primary by design.
    pub drbd_pools: BTreeMap<String, String>,
    /// HA VMs on cluster pools whose storage constraints are missing from the CIB (empty when
    /// the store or the CIB could not be read).
    pub ha_storage: Vec<HaStorageFact>,
}

/// An HA VM on cluster pools, with the storage constraints the CIB lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaStorageFact {
    pub vmid: u32,
    /// Pacemaker clones (`fs-POOL-clone`) the VM is not ordered after and colocated with.
    pub missing: Vec<String>,
}

/// A member's answer: its facts (or why there are none) and this node's clock before the
/// request and after the answer (Unix ms).
#[derive(Debug, Clone)]
pub struct NodeAnswer {
    pub node: String,
    pub facts: std::result::Result<NodeFacts, String>,
    pub sent_ms: i64,
    pub received_ms: i64,
}

/// What a file of a given kind must be: (required, forbidden mode bits, owner uid).
fn expectation(kind: &str) -> Option<(bool, u32, Option<u32>)> {
    Some(match kind {
        "corosync.conf" => (true, 0o022, Some(0)),
        "corosync-authkey" => (true, 0o077, Some(0)),
        "pacemaker-authkey" => (true, 0o027, Some(0)),
        "node-key" => (true, 0o077, Some(0)),
        "ca-key" => (false, 0o077, Some(0)),
        "local-root-token" => (false, 0o077, Some(0)),
        _ => return None,
    })
}

struct Out(Vec<Finding>);

impl Out {
    fn add(
        &mut self,
        code: &str,
        severity: Severity,
        node: Option<&str>,
        object: impl Into<String>,
        message: impl Into<String>,
        action: impl Into<String>,
    ) {
        self.0.push(Finding {
            code: code.into(),
            severity,
            node: node.map(str::to_string),
            object: object.into(),
            message: message.into(),
            action: action.into(),
        });
    }
}

use Severity::{Error as E, Warning as W};

/// The decision: findings from the cluster facts and every member's answer, sorted by
/// severity, code, node and object.
pub fn evaluate(c: &ClusterFacts, answers: &[NodeAnswer]) -> Vec<Finding> {
    let mut o = Out(vec![]);
    fencing(c, &mut o);
    let facts: Vec<&NodeFacts> = answers
        .iter()
        .filter_map(|a| {
            if let Err(e) = &a.facts {
                o.add(
                    "ENODEUNREACH",
                    E,
                    Some(&a.node),
                    "node",
                    format!("no facts from {}: {e}", a.node),
                    "check that keel-hostd runs on the node and that its API is reachable from the other members; the node's other checks were skipped",
                );
            }
            a.facts.as_ref().ok()
        })
        .collect();
    ha_storage(c, &mut o);
    for a in answers {
        if let Ok(f) = &a.facts {
            clock(a, f, &mut o);
            files(f, &mut o);
            links(c, f, &mut o);
        }
    }
    for f in &facts {
        names(c, &facts, f, &mut o);
    }
    conf_diff(c, &facts, &mut o);
    networks(&facts, &mut o);
    pools(&facts, &mut o);
    for f in &facts {
        drbd(c, f, &mut o);
        secrets(c, f, &mut o);
        sbd(c, f, &mut o);
        agents(c, f, &mut o);
    }
    let mut v = o.0;
    v.sort_by(|a, b| {
        (a.severity, &a.code, &a.node, &a.object).cmp(&(b.severity, &b.code, &b.node, &b.object))
    });
    v
}

fn fencing(c: &ClusterFacts, o: &mut Out) {
    let n = c.members.len();
    if c.two_node && n > 2 {
        o.add(
            "ETWONODE",
            E,
            None,
            "corosync.conf quorum.two_node",
            format!("two_node is on with {n} nodes: a partition can leave two quorate halves"),
            "remove two_node (and wait_for_all) from corosync.conf on every node, then `corosync-cfgtool -R`; Keel sets it only at exactly two nodes",
        );
    }
    match c.stonith_enabled {
        None => o.add(
            "EPCMKDOWN",
            E,
            Some(&c.checked_by),
            "pacemaker",
            "Pacemaker does not answer: fencing cannot be checked",
            "start Pacemaker on the node (`keel cluster status` shows the daemons)",
        ),
        Some(false) if n > 1 => o.add(
            "EFENCEOFF",
            E,
            None,
            "stonith-enabled",
            "fencing is disabled (stonith-enabled=false): a node that stops answering is never fenced and its resources may run twice",
            "enable it: `crm_attribute --type crm_config --name stonith-enabled --update true`",
        ),
        _ => {}
    }
    let Some(devices) = &c.devices else {
        if c.stonith_enabled.is_some() {
            o.add(
                "EPCMKDOWN",
                E,
                Some(&c.checked_by),
                "cib",
                "the CIB could not be read: fence devices cannot be checked",
                "check Pacemaker on the node (`cibadmin --query`)",
            );
        }
        return;
    };
    if n < 2 {
        return;
    }
    for m in &c.members {
        let mine: Vec<&DeviceFact> = devices.iter().filter(|d| d.target == m.name).collect();
        if mine.is_empty() {
            o.add(
                "ENODEVICE",
                E,
                Some(&m.name),
                "fence device",
                format!("{} has no fence device: it cannot be fenced", m.name),
                format!("add one: `keel fence add {} --agent …`, then test it with `keel fence test {}`", m.name, m.name),
            );
            continue;
        }
        for d in &mine {
            if !d.plaintext.is_empty() {
                o.add(
                    "EFENCEPLAINTEXT",
                    W,
                    Some(&m.name),
                    d.id.clone(),
                    format!(
                        "fence device {} keeps {} in the CIB in clear text: anyone who can read the CIB (the haclient group, crm_report archives, CIB backups) can read it",
                        d.id,
                        d.plaintext.join(", ")
                    ),
                    format!(
                        "set the device again with `keel fence add {} … --secret {}=@FILE`: Keel keeps it in Pacemaker's root-only CIB-secret files and the CIB says lrm://",
                        m.name, d.plaintext[0]
                    ),
                );
            }
            if !d.avoids_target {
                o.add(
                    "EFENCESELF",
                    E,
                    Some(&m.name),
                    d.id.clone(),
                    format!("fence device {} may run on {}, the node it fences: a hung node would have to fence itself", d.id, m.name),
                    format!("restore its -INFINITY location on {} (`keel fence add` again writes it)", m.name),
                );
            }
        }
        match c.tests.get(&m.name) {
            None => o.add(
                "EFENCEUNTESTED",
                W,
                Some(&m.name),
                mine[0].id.clone(),
                format!("the fence device of {} was never tested", m.name),
                format!(
                    "test it in a maintenance window: `keel fence test {}` (the node is rebooted)",
                    m.name
                ),
            ),
            Some(t) if !t.ok => o.add(
                "EFENCEFAILED",
                E,
                Some(&m.name),
                mine[0].id.clone(),
                format!("the last fence test of {} failed: {}", m.name, t.message),
                format!(
                    "fix the device's parameters or the BMC, then `keel fence test {}` again",
                    m.name
                ),
            ),
            Some(_) => {}
        }
    }
    if c.two_node && devices.iter().any(|d| d.agent == "fence_watchdog") {
        o.add(
            "EWATCHDOGVOTES",
            E,
            None,
            clusterd::cib::WATCHDOG_DEVICE_ID,
            "nodes are fenced through their own watchdogs (diskless SBD) in a two_node cluster: a node cut off alone stays quorate, never resets itself, and is counted as fenced while it runs",
            "add a QDevice (`keel cluster qdevice add`) or a third node, or give the nodes another fence device (`keel fence add NODE --agent fence_ipmilan|fence_redfish|sbd …`)",
        );
    }
    if c.two_node && n == 2 && !devices.iter().any(|d| d.delay) {
        o.add(
            "EFENCEDELAY",
            E,
            None,
            "fence devices",
            "two_node cluster without a fence delay: after a split both nodes fence each other at once (fence race)",
            "give one node's device a delay (pcmk_delay_base, e.g. 10s) so the other wins the race",
        );
    }
}

/// With an SBD device in the CIB, every node's sbd must run: a poison pill written to a node
/// without sbd is counted as a fence after msgwait while the node goes on running.
fn sbd(c: &ClusterFacts, f: &NodeFacts, o: &mut Out) {
    let Some(devices) = &c.devices else { return };
    if f.sbd_active != Some(false) {
        return;
    }
    let mut ids: Vec<&str> = devices
        .iter()
        .filter(|d| d.sbd)
        .map(|d| d.id.as_str())
        .collect();
    // the watchdog device reads as one per node it lists
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    o.add(
        "ESBDINACTIVE",
        E,
        Some(&f.node),
        "sbd.service",
        format!(
            "sbd is not running on {} while the CIB fences through SBD ({}): a fence of {} would be counted as done after msgwait (stonith-watchdog-timeout for the watchdog device) while it goes on running",
            f.node,
            ids.join(", "),
            f.node
        ),
        format!(
            "set the SBD device up again (`keel fence add NODE --agent sbd --param devices=…`, or `--agent watchdog` for diskless SBD, for any node): it checks the watchdog and starts sbd on every node; `journalctl -u sbd` on {} says why it stopped",
            f.node
        ),
    );
}

/// Every device's agent must be installed on every node that may run it (all but its target):
/// Pacemaker picks the fencing node itself, and one without the program fails the fence.
fn agents(c: &ClusterFacts, f: &NodeFacts, o: &mut Out) {
    let (Some(devices), Some(have)) = (&c.devices, &f.fence_agents) else {
        return;
    };
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in devices {
        if d.target != f.node && !d.agent.is_empty() && !have.contains(&d.agent) {
            missing
                .entry(d.agent.as_str())
                .or_default()
                .push(d.id.as_str());
        }
    }
    for (agent, mut ids) in missing {
        ids.dedup();
        o.add(
            "EFENCEAGENT",
            E,
            Some(&f.node),
            format!("/usr/sbin/{agent}"),
            format!(
                "{agent} is not installed on {}, which Pacemaker may choose to run {}: that fence would fail and the node stay unfenced",
                f.node,
                ids.join(", ")
            ),
            format!(
                "install it on {}: Debian's agents come with `apt-get install fence-agents` (nodes installed from Keel's ISO carry fence_ipmilan, fence_redfish and fence_sbd); a custom agent goes to /usr/sbin on every node",
                f.node
            ),
        );
    }
}

/// Each `lrm://` parameter of each device needs its file, with a matching signature, on every
/// node: Pacemaker on a node without it cannot start or run the device there.
fn secrets(c: &ClusterFacts, f: &NodeFacts, o: &mut Out) {
    let (Some(devices), Some(have)) = (&c.devices, &f.cib_secrets) else {
        return;
    };
    for d in devices {
        for p in &d.cib_secrets {
            match have.get(&d.id).and_then(|m| m.get(p)) {
                Some(true) => {}
                Some(false) => o.add(
                    "ECIBSECRETSIGN",
                    E,
                    Some(&f.node),
                    format!("{}/{p}", d.id),
                    format!(
                        "the CIB secret {p} of fence device {} on {} does not match its signature: Pacemaker there refuses to run the device",
                        d.id, f.node
                    ),
                    format!(
                        "set the device again (`keel fence add {} …` with its `--secret`): Keel rewrites the secret and its signature on every member",
                        d.target
                    ),
                ),
                None => o.add(
                    "ECIBSECRETMISSING",
                    E,
                    Some(&f.node),
                    format!("{}/{p}", d.id),
                    format!(
                        "{} has no CIB secret {p} for fence device {} (the CIB says lrm://): Pacemaker there cannot start or monitor the device",
                        f.node, d.id
                    ),
                    format!(
                        "set the device again (`keel fence add {} …` with its `--secret`): Keel writes the secret on every member before the CIB",
                        d.target
                    ),
                ),
            }
        }
    }
}

fn clock(a: &NodeAnswer, f: &NodeFacts, o: &mut Out) {
    if let Some(ch) = &f.chrony {
        if ch.offset_ms.abs() > CLOCK_SKEW_MAX_MS {
            o.add(
                "ECLOCKSKEW",
                E,
                Some(&f.node),
                "chrony",
                format!(
                    "chrony on {}: the system clock is {:+.1} s off NTP time (limit {:.1} s)",
                    f.node,
                    ch.offset_ms as f64 / 1000.0,
                    CLOCK_SKEW_MAX_MS as f64 / 1000.0
                ),
                "let chrony step the clock (`chronyc makestep`) and check its sources (`chronyc sources`)",
            );
        }
        if !ch.synchronised {
            o.add(
                "ECLOCKUNSYNC",
                W,
                Some(&f.node),
                "chrony",
                format!("chrony on {} is not synchronised to any source", f.node),
                "check the NTP sources and their reachability (`chronyc sources`, UDP 123)",
            );
        }
    }
    let mid = (a.sent_ms + a.received_ms) / 2;
    let uncertainty = (a.received_ms - a.sent_ms).max(0) / 2;
    let skew = f.clock_ms - mid;
    if skew.abs() - uncertainty > CLOCK_SKEW_MAX_MS {
        o.add(
            "ECLOCKSKEW",
            E,
            Some(&f.node),
            "clock",
            format!(
                "the clock of {} is {:+.1} s off the checking node's (limit {:.1} s)",
                f.node,
                skew as f64 / 1000.0,
                CLOCK_SKEW_MAX_MS as f64 / 1000.0
            ),
            "synchronise every node with the same NTP sources (chrony: `chronyc tracking`, `chronyc sources`)",
        );
    }
}

fn mode_str(m: u32) -> String {
    format!("{:04o}", m & 0o7777)
}

fn files(f: &NodeFacts, o: &mut Out) {
    for x in &f.files {
        let Some((required, forbidden, uid)) = expectation(&x.kind) else {
            continue;
        };
        if !x.exists {
            if required {
                o.add(
                    "EFILEMISSING",
                    E,
                    Some(&f.node),
                    x.path.clone(),
                    format!("{} ({}) is missing", x.path, x.kind),
                    "copy it back from another member (corosync.conf, authkeys) or re-join the node",
                );
            }
            continue;
        }
        let bad_mode = x.mode & forbidden != 0;
        let bad_owner = uid.is_some_and(|u| u != x.uid);
        if bad_mode || bad_owner {
            o.add(
                "EKEYPERM",
                E,
                Some(&f.node),
                x.path.clone(),
                format!(
                    "{} ({}) has mode {} owner uid {}: it must not be {}",
                    x.path,
                    x.kind,
                    mode_str(x.mode),
                    x.uid,
                    if bad_mode {
                        format!("accessible with bits {}", mode_str(x.mode & forbidden))
                    } else {
                        "owned by anyone but root".into()
                    }
                ),
                format!(
                    "`chown root {} && chmod go-rwx {}` (corosync authkey 0400, Pacemaker authkey 0640 root:haclient)",
                    x.path, x.path
                ),
            );
        }
    }
}

fn links(c: &ClusterFacts, f: &NodeFacts, o: &mut Out) {
    let Some(me) = c.members.iter().find(|m| m.name == f.node) else {
        return;
    };
    let Some(view) = &f.links else {
        o.add(
            "ECOROSYNCDOWN",
            E,
            Some(&f.node),
            "corosync",
            format!("corosync does not answer on {}", f.node),
            "start corosync on the node (`keel cluster status` shows the daemons)",
        );
        return;
    };
    for peer in c.members.iter().filter(|m| m.nodeid != me.nodeid) {
        let up = view
            .iter()
            .find(|p| p.nodeid == peer.nodeid)
            .map(|p| p.connected.clone())
            .unwrap_or_default();
        for (i, addr) in peer.addrs.iter().enumerate() {
            if !up.iter().any(|l| usize::from(*l) == i) {
                o.add(
                    "ELINKDOWN",
                    E,
                    Some(&f.node),
                    format!("link {i} to {}", peer.name),
                    format!(
                        "{}: corosync link {i} to {} ({addr}) is down ({} of {} links up)",
                        f.node,
                        peer.name,
                        up.len(),
                        peer.addrs.len()
                    ),
                    "check the cable, switch port, address and firewall (UDP 5405) of that link on both nodes",
                );
            }
        }
    }
}

/// An address without brackets and zone, for comparisons.
fn bare(a: &str) -> String {
    let a = a.trim_start_matches('[');
    let a = a.split(']').next().unwrap_or(a);
    a.split('%').next().unwrap_or(a).to_ascii_lowercase()
}

fn names(c: &ClusterFacts, all: &[&NodeFacts], f: &NodeFacts, o: &mut Out) {
    for m in &c.members {
        let Some(addrs) = f.resolved.get(&m.name) else {
            continue;
        };
        if addrs.is_empty() {
            o.add(
                "ENAMEUNRES",
                W,
                Some(&f.node),
                format!("name {}", m.name),
                format!("{} does not resolve the member name {}", f.node, m.name),
                format!(
                    "add {} to /etc/hosts (or DNS) on {} with one of its addresses: {}",
                    m.name,
                    f.node,
                    m.addrs.join(", ")
                ),
            );
            continue;
        }
        // the member's own addresses as it reports them; its configured ones when it did not
        let own = all
            .iter()
            .find(|g| g.node == m.name)
            .map(|g| g.addresses.clone())
            .unwrap_or_default();
        let known: BTreeSet<String> = m
            .addrs
            .iter()
            .chain(std::iter::once(&m.api_host))
            .chain(own.iter())
            .map(|a| bare(a))
            .collect();
        let wrong: Vec<&String> = addrs.iter().filter(|a| !known.contains(&bare(a))).collect();
        // loopback for the node's own name is common (Debian's 127.0.1.1): only foreign
        // addresses of other members, or no matching address at all, are wrong
        let own_loopback = m.name == f.node
            && wrong
                .iter()
                .all(|a| a.starts_with("127.") || bare(a) == "::1");
        if !wrong.is_empty() && !own_loopback {
            o.add(
                "ENAMERES",
                E,
                Some(&f.node),
                format!("name {}", m.name),
                format!(
                    "{} resolves {} to {}, which is not an address of {} (cluster addresses {})",
                    f.node,
                    m.name,
                    wrong
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    m.name,
                    m.addrs.join(", ")
                ),
                format!(
                    "fix /etc/hosts (or DNS) on {} so {} resolves to its cluster address",
                    f.node, m.name
                ),
            );
        }
    }
}

fn conf_diff(c: &ClusterFacts, facts: &[&NodeFacts], o: &mut Out) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for f in facts {
        if let Some(h) = &f.corosync_conf_sha256 {
            *count.entry(h.as_str()).or_default() += 1;
        }
    }
    if count.len() < 2 {
        return;
    }
    let mine = facts
        .iter()
        .find(|f| f.node == c.checked_by)
        .and_then(|f| f.corosync_conf_sha256.as_deref());
    let top = count.values().copied().max().unwrap_or(0);
    let tied = count.values().filter(|v| **v == top).count() > 1;
    // the majority's file is the reference; on a tie, the checking node's
    let reference = match mine {
        Some(m) if tied && count.get(m) == Some(&top) => m,
        _ => count
            .iter()
            .find(|(_, v)| **v == top)
            .map(|(k, _)| *k)
            .unwrap_or(""),
    };
    for f in facts {
        if let Some(h) = &f.corosync_conf_sha256 {
            if h != reference {
                o.add(
                    "ECONFDIFF",
                    E,
                    Some(&f.node),
                    "corosync.conf",
                    format!(
                        "corosync.conf on {} differs from the one on {} of {} nodes (sha256 {} vs {})",
                        f.node,
                        top,
                        facts.len(),
                        &h[..h.len().min(12)],
                        &reference[..reference.len().min(12)]
                    ),
                    "copy corosync.conf from a good member to this node, then `corosync-cfgtool -R`",
                );
            }
        }
    }
}

fn networks(facts: &[&NodeFacts], o: &mut Out) {
    for f in facts {
        for nic in &f.vm_nics {
            for other in facts.iter().filter(|g| g.node != f.node) {
                let missing = match (&nic.network, &nic.bridge) {
                    (Some(n), _) if !other.networks.contains(n) => Some(format!("network {n}")),
                    (None, Some(b)) if !other.bridges.contains(b) => Some(format!("bridge {b}")),
                    _ => None,
                };
                if let Some(what) = missing {
                    o.add(
                        "ENETMISSING",
                        E,
                        Some(&other.node),
                        what.clone(),
                        format!(
                            "VM {} on {} uses {what}, which {} lacks: migrating it there would fail",
                            nic.vm, f.node, other.node
                        ),
                        format!("create {what} on {} with the same name", other.node),
                    );
                }
            }
        }
    }
}

fn pools(facts: &[&NodeFacts], o: &mut Out) {
    let names: BTreeSet<&str> = facts
        .iter()
        .flat_map(|f| f.pools.iter().map(|p| p.name.as_str()))
        .collect();
    for name in names {
        let variants: BTreeMap<(&str, Option<&str>), Vec<&str>> =
            facts.iter().fold(BTreeMap::new(), |mut m, f| {
                if let Some(p) = f.pools.iter().find(|p| p.name == name) {
                    m.entry((p.kind.as_str(), p.path.as_deref()))
                        .or_insert_with(Vec::new)
                        .push(f.node.as_str());
                }
                m
            });
        for f in facts {
            if !f.pools.iter().any(|p| p.name == name) {
                o.add(
                    "EPOOLDIFF",
                    W,
                    Some(&f.node),
                    format!("pool {name}"),
                    format!(
                        "storage pool {name} is missing on {} (present on other members)",
                        f.node
                    ),
                    format!(
                        "define pool {name} on {} like on the others, or remove it everywhere",
                        f.node
                    ),
                );
            }
        }
        if variants.len() > 1 {
            let desc: Vec<String> = variants
                .iter()
                .map(|((k, p), ns)| format!("{k} {} on {}", p.unwrap_or("-"), ns.join(",")))
                .collect();
            o.add(
                "EPOOLDIFF",
                W,
                None,
                format!("pool {name}"),
                format!(
                    "storage pool {name} differs between members: {}",
                    desc.join("; ")
                ),
                format!("give pool {name} the same type and path on every node"),
            );
        }
    }
}

fn ha_storage(c: &ClusterFacts, o: &mut Out) {
    for h in &c.ha_storage {
        if h.missing.is_empty() {
            continue;
        }
        o.add(
            "EHASTORAGE",
            E,
            None,
            format!("keel-vm-{}", h.vmid),
            format!(
                "HA VM {} has disks on a cluster pool but is not tied to its file system ({} missing): Pacemaker may start it before the pool is usable or on a node where it is not mounted",
                h.vmid,
                h.missing.join(", ")
            ),
            format!(
                "turn HA off and on again, which adds the constraints: keel vm ha {0} off, then keel vm ha {0} on",
                h.vmid
            ),
        );
    }
}

fn drbd(c: &ClusterFacts, f: &NodeFacts, o: &mut Out) {
    let n = Some(f.node.as_str());
    for d in &f.drbd {
        let name = d
            .resource
            .clone()
            .unwrap_or_else(|| format!("minor {}", d.minor));
        let obj = format!("drbd {name}");
        let pool = d.resource.as_ref().and_then(|r| c.drbd_pools.get(r));
        if d.resource.is_some() && d.fencing.as_deref() != Some("resource-and-stonith") {
            o.add(
                "EDRBDNOFENCE",
                E,
                n,
                &obj,
                format!(
                    "DRBD resource {name} on {} does not fence its peer (fencing {}): after a split both sides can go on alone and their data diverge",
                    f.node,
                    d.fencing.as_deref().unwrap_or("not set")
                ),
                format!(
                    "set `fencing resource-and-stonith;` in its disk section with the crm-fence-peer.sh / crm-unfence-peer.sh handlers (Keel's own pools have them), then `drbdadm adjust {name}` on both nodes"
                ),
            );
        }
        let both_primary = d.role == "Primary" && d.peer_role == "Primary";
        if (d.two_primaries || both_primary) && pool.is_none() {
            o.add(
                "EDRBDDUALPRI",
                E,
                n,
                &obj,
                format!(
                    "DRBD resource {name} on {} {} but no Keel drbd-gfs2 pool uses it: two primaries are only safe under a cluster file system, and this is likely left over from a migration or a manual setup",
                    f.node,
                    if both_primary { "is primary on both nodes" } else { "allows two primaries" }
                ),
                format!(
                    "demote one side (`drbdadm secondary {name}` where it is not in use) and turn it off: `drbdadm net-options --allow-two-primaries=no {name}`, and remove allow-two-primaries from its .res file"
                ),
            );
        }
        let held = pool.map(|p| format!(" (pool {p})")).unwrap_or_default();
        match d.connection.as_str() {
            "Connected" => {
                if d.disk != "UpToDate" || d.peer_disk != "UpToDate" {
                    o.add(
                        "EDRBDDEGRADED",
                        W,
                        n,
                        &obj,
                        format!(
                            "DRBD resource {name}{held} on {} is connected but its disks are {}/{} (local/peer), not UpToDate/UpToDate",
                            f.node, d.disk, d.peer_disk
                        ),
                        format!("look at `drbdadm status {name}` and the kernel log on both nodes; an Outdated or Inconsistent side needs a resync (`drbdadm invalidate` on that side if it does not start)"),
                    );
                }
            }
            "StandAlone" => o.add(
                "EDRBDSTANDALONE",
                E,
                n,
                &obj,
                format!(
                    "DRBD resource {name}{held} on {} is StandAlone: it does not replicate (a split brain — the kernel log says 'Split-Brain detected' — or disconnected by hand)",
                    f.node
                ),
                format!(
                    "decide which node's data to keep (docs/storage.md, \"Split brain\"); on the other: `drbdadm disconnect {name}; drbdadm secondary {name}; drbdadm connect --discard-my-data {name}`, then `drbdadm connect {name}` on the one kept"
                ),
            ),
            s if s.starts_with("Sync") || s.starts_with("PausedSync") => o.add(
                "EDRBDSYNCING",
                W,
                n,
                &obj,
                format!(
                    "DRBD resource {name}{held} on {} is resyncing ({s}, disks {}/{}): the SyncTarget side holds no complete copy until it ends",
                    f.node, d.disk, d.peer_disk
                ),
                "wait for the resync to end (`keel storage status` shows its progress) before taking the SyncSource node down",
            ),
            s => o.add(
                "EDRBDDISCONNECTED",
                W,
                n,
                &obj,
                format!(
                    "DRBD resource {name}{held} on {} is not connected to its peer ({s}): writes are not replicated",
                    f.node
                ),
                format!("check the peer node and the replication link; `drbdadm connect {name}` on both sides once it is back"),
            ),
        }
    }
}

// ---- collecting ----

fn file_fact(kind: &str, p: &std::path::Path) -> FileFact {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(p).ok();
    FileFact {
        kind: kind.into(),
        path: p.display().to_string(),
        exists: md.is_some(),
        mode: md.as_ref().map(|m| m.mode() & 0o7777).unwrap_or(0),
        uid: md.as_ref().map(|m| m.uid()).unwrap_or(0),
    }
}

/// `getent ahosts NAME`: the addresses NAME resolves to (empty: it does not resolve).
fn resolve(r: &dyn keel_runner::Runner, name: &str) -> Vec<String> {
    let cmd = Cmd::argv(&["getent", "ahosts", name]).timeout(Duration::from_secs(5));
    let Ok(out) = r.run(&cmd) else {
        return vec![];
    };
    let set: BTreeSet<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    set.into_iter().collect()
}

/// This node's facts.
pub fn local_facts(node: &Node) -> Result<NodeFacts> {
    let cs = &node.cluster;
    let rec = cs
        .record()?
        .ok_or_else(|| Error::Conflict("this node is not in a cluster".into()))?;
    let r = cs.runner.as_ref();
    let conf_path = cs.paths.corosync_conf();
    let corosync_conf_sha256 = std::fs::read(&conf_path).ok().map(|b| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&b))
    });
    let files = vec![
        file_fact("corosync.conf", &conf_path),
        file_fact("corosync-authkey", &cs.paths.corosync_authkey()),
        file_fact("pacemaker-authkey", &cs.paths.pacemaker_authkey()),
        file_fact("node-key", &cs.paths.node_key()),
        file_fact("ca-key", &cs.paths.cluster_dir.join("ca.key")),
        file_fact(
            "local-root-token",
            &node.cfg.state_dir.join(super::LOCAL_TOKEN_FILE),
        ),
    ];
    let resolved = rec
        .members
        .iter()
        .map(|m| (m.name.clone(), resolve(r, &m.name)))
        .collect();
    let links = r
        .run(&commands::link_status())
        .ok()
        .and_then(|o| clusterd::crm::LinkStatus::parse(&o.stdout).ok())
        .map(|l| {
            l.peers
                .iter()
                .map(|p| PeerLinkFact {
                    nodeid: p.nodeid,
                    connected: p
                        .links
                        .iter()
                        .filter(|k| k.connected)
                        .map(|k| k.link)
                        .collect(),
                })
                .collect()
        });
    let addresses = r
        .run(&Cmd::argv(&["ip", "-o", "addr", "show"]).timeout(Duration::from_secs(5)))
        .map(|o| parse_ip_addr(&o.stdout))
        .unwrap_or_default();
    let chrony = r
        .run(&Cmd::argv(&["chronyc", "-c", "tracking"]).timeout(Duration::from_secs(3)))
        .ok()
        .and_then(|o| parse_chrony_tracking(&o.stdout));
    let networks = node
        .hv
        .list_networks()?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let mut vm_nics = vec![];
    for d in node.hv.list_domains()? {
        let Ok(xml) = node.hv.domain_xml(&d.name, true) else {
            continue;
        };
        let Ok(p) = crate::domain::parse(&xml) else {
            continue;
        };
        for n in p.spec.nics {
            vm_nics.push(VmNicFact {
                vm: d.name.clone(),
                network: n.network,
                bridge: n.bridge,
            });
        }
    }
    let pools = node
        .hv
        .list_pools()?
        .into_iter()
        .map(|p| PoolFact {
            name: p.name,
            kind: p.kind,
            path: p.path,
        })
        .collect();
    let drbd = read_proc_drbd(r)
        .map(|p| {
            drbd_facts(
                &p,
                &keel_storage::drbd_conf::read_dir(std::path::Path::new(
                    keel_storage::drbd::RES_DIR,
                )),
            )
        })
        .unwrap_or_default();
    Ok(NodeFacts {
        node: node.cfg.node.clone(),
        clock_ms: crate::db::now_ms() + test_clock_offset(node),
        corosync_conf_sha256,
        files,
        resolved,
        addresses,
        chrony,
        links,
        networks,
        bridges: crate::network::host_bridges(),
        vm_nics,
        pools,
        drbd,
        cib_secrets: form::cib_secret_status(&cs.paths).ok(),
        fence_agents: installed_fence_agents(std::path::Path::new("/usr/sbin")),
        sbd_active: (cs.svc.kind() == "systemd").then(|| {
            r.run(
                &keel_runner::Cmd::argv(&["systemctl", "is-active", "--quiet", "sbd.service"])
                    .timeout(commands::QUERY_TIMEOUT),
            )
            .is_ok_and(|o| o.success())
        }),
    })
}

/// The `fence_*` programs in `dir` (sorted; executable files, symlinks followed, as `test -x`
/// sees them), `None` when it cannot be read.
fn installed_fence_agents(dir: &std::path::Path) -> Option<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::metadata(e.path())
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("fence_"))
        .collect();
    v.sort();
    Some(v)
}

/// `/proc/drbd`, only when the DRBD module is loaded (`None` otherwise).
fn read_proc_drbd(r: &dyn keel_runner::Runner) -> Option<String> {
    if !std::path::Path::new("/proc/drbd").exists() {
        return None;
    }
    r.run(&keel_storage::drbd_gfs2::proc_drbd())
        .ok()
        .map(|o| o.stdout)
}

/// `/proc/drbd` joined with the configuration: one fact per configured minor (an unconfigured
/// minor is nothing to check).
pub fn drbd_facts(
    proc_drbd: &str,
    conf: &[keel_storage::drbd_conf::ResourceConf],
) -> Vec<DrbdFact> {
    keel_storage::drbd_state::parse_proc_drbd(proc_drbd)
        .into_iter()
        .filter(|s| s.connection != "Unconfigured")
        .map(|s| {
            let rc = conf.iter().find(|c| c.minors.contains(&s.minor));
            DrbdFact {
                minor: s.minor,
                resource: rc.map(|c| c.name.clone()),
                connection: s.connection,
                role: s.role,
                peer_role: s.peer_role,
                disk: s.disk,
                peer_disk: s.peer_disk,
                two_primaries: rc.is_some_and(|c| c.two_primaries),
                fencing: rc.and_then(|c| c.fencing.clone()),
            }
        })
        .collect()
}

/// The addresses of `ip -o addr show` (`2: eth0    inet 10.0.0.1/24 brd …`), no prefix.
pub fn parse_ip_addr(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip(2);
            match w.next() {
                Some("inet") | Some("inet6") => w.next(),
                _ => None,
            }
        })
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect()
}

fn test_clock_offset(node: &Node) -> i64 {
    if !node.cfg.libvirt_uri.starts_with("test://") {
        return 0;
    }
    std::fs::read_to_string(node.cfg.state_dir.join(TEST_CLOCK_OFFSET_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// stonith devices with their location and delay, from the CIB's resources and constraints.
fn devices(r: &dyn keel_runner::Runner) -> Option<Vec<DeviceFact>> {
    let res = r.run_ok(&commands::cib_query("resources")).ok()?;
    let cons = r.run_ok(&commands::cib_query("constraints")).ok()?;
    parse_devices(&res, &cons)
}

/// [`devices`] on the two CIB sections' XML.
pub fn parse_devices(resources: &str, constraints: &str) -> Option<Vec<DeviceFact>> {
    let res = keel_xml::Element::parse(resources).ok()?;
    let cons = keel_xml::Element::parse(constraints).ok()?;
    let locs = cons.descendants("rsc_location");
    Some(
        res.descendants("primitive")
            .into_iter()
            .filter(|p| p.get_attr("class") == Some("stonith"))
            .filter_map(|p| {
                let id = p.get_attr("id")?.to_string();
                let nv = p.descendants("nvpair");
                let get = |n: &str| {
                    nv.iter()
                        .find(|x| x.get_attr("name") == Some(n))
                        .and_then(|x| x.get_attr("value"))
                        .map(str::to_string)
                };
                let target = get("pcmk_host_list")?;
                let delay = ["pcmk_delay_base", "pcmk_delay_max", "delay"]
                    .iter()
                    .filter_map(|k| get(k))
                    .any(|v| {
                        let v = v.trim().trim_end_matches(['s', 'S']);
                        !v.is_empty() && v.chars().any(|c| c.is_ascii_digit() && c != '0')
                    });
                let avoids_target = locs.iter().any(|l| {
                    l.get_attr("rsc") == Some(id.as_str())
                        && l.get_attr("node") == Some(target.as_str())
                        && l.get_attr("score") == Some("-INFINITY")
                });
                let mut plaintext = vec![];
                let mut cib_secrets = vec![];
                for x in &nv {
                    let (Some(n), Some(v)) = (x.get_attr("name"), x.get_attr("value")) else {
                        continue;
                    };
                    if v == clusterd::fence::CIB_SECRET {
                        cib_secrets.push(n.to_string());
                    } else if secret_like(n) && !v.is_empty() {
                        plaintext.push(n.to_string());
                    }
                }
                let agent = p.get_attr("type").unwrap_or_default().to_string();
                if id == clusterd::cib::WATCHDOG_DEVICE_ID {
                    // the one watchdog device fences each node it lists through that node's
                    // own watchdog: nothing runs against the target, so nothing to keep off it
                    return Some(
                        target
                            .split([' ', ',', ';'])
                            .filter(|h| !h.is_empty())
                            .map(|h| DeviceFact {
                                sbd: true,
                                agent: agent.clone(),
                                id: id.clone(),
                                target: h.to_string(),
                                avoids_target: true,
                                delay,
                                plaintext: plaintext.clone(),
                                cib_secrets: cib_secrets.clone(),
                            })
                            .collect::<Vec<_>>(),
                    );
                }
                Some(vec![DeviceFact {
                    sbd: agent == "fence_sbd",
                    agent,
                    id,
                    target,
                    avoids_target,
                    delay,
                    plaintext,
                    cib_secrets,
                }])
            })
            .flatten()
            .collect(),
    )
}

fn cluster_facts(node: &Node) -> Result<(ClusterFacts, Vec<form::MemberRecord>)> {
    let cs = &node.cluster;
    let rec = cs
        .record()?
        .ok_or_else(|| Error::Conflict("this node is not in a cluster".into()))?;
    let conf = form::read_corosync_conf(&cs.paths)?;
    let r = cs.runner.as_ref();
    let crm = form::crm_status(r);
    let members = conf
        .nodes
        .iter()
        .map(|n| MemberFact {
            name: n.name.clone(),
            nodeid: n.nodeid,
            addrs: n.addrs.clone(),
            api_host: rec
                .members
                .iter()
                .find(|m| m.name == n.name)
                .map(|m| {
                    m.api
                        .rsplit_once(':')
                        .map(|(h, _)| h.to_string())
                        .unwrap_or_else(|| m.api.clone())
                })
                .unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    let tests = members
        .iter()
        .filter_map(|m| {
            super::fencing::fence_test_of(cs, &m.name).map(|t| {
                (
                    m.name.clone(),
                    TestFact {
                        ok: t.ok,
                        message: t.message,
                    },
                )
            })
        })
        .collect();
    Ok((
        ClusterFacts {
            name: rec.name.clone(),
            checked_by: node.cfg.node.clone(),
            members,
            two_node: conf.two_node(),
            stonith_enabled: crm.as_ref().map(|c| c.stonith_enabled.unwrap_or(true)),
            devices: devices(r),
            tests,
            drbd_pools: crate::cluster_pools::drbd_resources(),
            ha_storage: crate::ha::storage_facts(node),
        },
        rec.members,
    ))
}

/// Ask member `m` for its facts (peer call: HMAC keyed by the cluster key, mutual TLS).
async fn member_facts(node: &Node, m: &form::MemberRecord) -> Result<NodeFacts> {
    let cs = &node.cluster;
    let key = cs.authkey()?;
    let client = cs.member_client()?;
    let body = b"{}".to_vec();
    let digest = cluster_net::body_digest(&body);
    let signed = Signed {
        method: "POST",
        path: FACTS_PATH,
        user: "",
        body: &digest,
    };
    let h = cluster_net::peer_header(&key, &node.cfg.node, crate::db::now(), &signed)?;
    let r = client
        .post(format!("https://{}{FACTS_PATH}", m.api))
        .header(PEER_HEADER, h)
        .header("content-type", "application/json")
        .timeout(FACTS_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            Error::Internal(format!(
                "{} at {}: {}",
                m.name,
                m.api,
                cluster_net::error_chain(&e)
            ))
        })?;
    if !r.status().is_success() {
        let st = r.status();
        let msg = cluster_net::api_error_message(r).await;
        return Err(Error::Internal(format!("{} answered {st}: {msg}", m.name)));
    }
    r.json::<NodeFacts>()
        .await
        .map_err(|e| Error::Internal(format!("{}: facts: {e}", m.name)))
}

/// `POST /api/v1/cluster/peer/verify-facts` from a member: this node's facts.
pub(super) fn on_facts(
    node: &Node,
    headers: &HeaderMap,
    peer_cert: &PeerCert,
    body: &[u8],
) -> Result<NodeFacts> {
    let digest = cluster_net::body_digest(body);
    let signed = Signed {
        method: "POST",
        path: FACTS_PATH,
        user: "",
        body: &digest,
    };
    check_member_request(node, headers, peer_cert, &signed)?;
    local_facts(node)
}

/// `GET /api/v1/cluster/verify`: collect from every member (concurrently), evaluate.
pub async fn verify(node: Arc<Node>) -> Result<VerifyReport> {
    let n = node.clone();
    let (cf, members, local) = crate::http::blocking(move || {
        let (cf, members) = cluster_facts(&n)?;
        let t = crate::db::now_ms();
        let local = local_facts(&n).map_err(|e| e.to_string());
        Ok::<_, Error>((cf, members, (t, local)))
    })
    .await
    .map_err(|e| e.0)?;
    let mut futs = vec![];
    for m in members.iter().filter(|m| m.name != node.cfg.node) {
        let node = node.clone();
        let m = m.clone();
        futs.push(async move {
            let sent_ms = crate::db::now_ms();
            let facts = member_facts(&node, &m).await.map_err(|e| e.to_string());
            NodeAnswer {
                node: m.name.clone(),
                facts,
                sent_ms,
                received_ms: crate::db::now_ms(),
            }
        });
    }
    let mut answers = futures_util::future::join_all(futs).await;
    let (t, local) = local;
    answers.push(NodeAnswer {
        node: node.cfg.node.clone(),
        facts: local,
        sent_ms: t,
        received_ms: t,
    });
    // in member order
    let order: Vec<&str> = cf.members.iter().map(|m| m.name.as_str()).collect();
    answers.sort_by_key(|a| {
        order
            .iter()
            .position(|n| *n == a.node)
            .unwrap_or(usize::MAX)
    });
    let findings = evaluate(&cf, &answers);
    let errors = findings.iter().filter(|f| f.severity == E).count();
    Ok(VerifyReport {
        cluster: cf.name.clone(),
        checked_by: cf.checked_by.clone(),
        nodes: answers
            .iter()
            .filter(|a| a.facts.is_ok())
            .map(|a| a.node.clone())
            .collect(),
        warnings: findings.len() - errors,
        errors,
        findings,
    })
}

// ---- routes ----

/// `GET /api/v1/cluster/verify` (merged into the authenticated routes).
pub fn protected_routes() -> axum::Router<Arc<Node>> {
    axum::Router::new().route("/api/v1/cluster/verify", axum::routing::get(cluster_verify))
}

/// The peer endpoint members ask for facts (authenticated by the peer checks).
pub fn public_routes() -> axum::Router<Arc<Node>> {
    axum::Router::new().route(
        "/api/v1/cluster/peer/verify-facts",
        axum::routing::post(peer_facts),
    )
}

/// Check the cluster: fencing, two_node, corosync links, clocks, name resolution, key file
/// modes, corosync.conf on every member, networks and pools VMs need (codes: docs/verify.md).
#[utoipa::path(get, path = "/api/v1/cluster/verify", tag = "cluster",
    responses((status = 200, body = keel_api::verify::VerifyReport), (status = 409, body = keel_api::ErrorBody), (status = 503, body = keel_api::ErrorBody)))]
pub async fn cluster_verify(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
) -> crate::http::ApiResult<axum::Json<VerifyReport>> {
    Ok(axum::Json(verify(node).await?))
}

async fn peer_facts(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    peer_cert: Option<axum::Extension<PeerCert>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> crate::http::ApiResult<axum::Json<NodeFacts>> {
    let cert = peer_cert.map(|e| e.0).unwrap_or_default();
    Ok(axum::Json(
        crate::http::blocking(move || on_facts(&node, &headers, &cert, &body)).await?,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(name: &str, id: u32) -> MemberFact {
        MemberFact {
            name: name.into(),
            nodeid: id,
            addrs: vec![format!("10.0.0.{id}")],
            api_host: format!("10.0.0.{id}"),
        }
    }

    fn dev(target: &str) -> DeviceFact {
        DeviceFact {
            id: format!("fence-{target}"),
            target: target.into(),
            avoids_target: true,
            delay: false,
            plaintext: vec![],
            cib_secrets: vec!["password".into()],
            sbd: false,
            agent: "fence_ipmilan".into(),
        }
    }

    fn healthy_cluster(n: u32) -> ClusterFacts {
        let members: Vec<MemberFact> = (1..=n).map(|i| member(&format!("n{i}"), i)).collect();
        ClusterFacts {
            name: "c".into(),
            checked_by: "n1".into(),
            devices: Some(members.iter().map(|m| dev(&m.name)).collect()),
            tests: members
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        TestFact {
                            ok: true,
                            message: "ok".into(),
                        },
                    )
                })
                .collect(),
            members,
            two_node: false,
            stonith_enabled: Some(true),
            drbd_pools: BTreeMap::new(),
            ha_storage: vec![],
        }
    }

    fn healthy_facts(c: &ClusterFacts, name: &str) -> NodeFacts {
        let me = c.members.iter().find(|m| m.name == name).unwrap();
        NodeFacts {
            node: name.into(),
            clock_ms: 1_000_000,
            corosync_conf_sha256: Some("aaaa".into()),
            files: vec![
                FileFact {
                    kind: "corosync.conf".into(),
                    path: "/etc/corosync/corosync.conf".into(),
                    exists: true,
                    mode: 0o644,
                    uid: 0,
                },
                FileFact {
                    kind: "corosync-authkey".into(),
                    path: "/etc/corosync/authkey".into(),
                    exists: true,
                    mode: 0o400,
                    uid: 0,
                },
                FileFact {
                    kind: "pacemaker-authkey".into(),
                    path: "/etc/pacemaker/authkey".into(),
                    exists: true,
                    mode: 0o640,
                    uid: 0,
                },
                FileFact {
                    kind: "ca-key".into(),
                    path: "/var/lib/keel/cluster/ca.key".into(),
                    exists: false,
                    mode: 0,
                    uid: 0,
                },
            ],
            resolved: c
                .members
                .iter()
                .map(|m| (m.name.clone(), m.addrs.clone()))
                .collect(),
            addresses: me
                .addrs
                .iter()
                .cloned()
                .chain(["192.0.2.1".into()])
                .collect(),
            chrony: Some(ChronyFact {
                offset_ms: 3,
                synchronised: true,
            }),
            links: Some(
                c.members
                    .iter()
                    .filter(|m| m.nodeid != me.nodeid)
                    .map(|m| PeerLinkFact {
                        nodeid: m.nodeid,
                        connected: (0..m.addrs.len() as u8).collect(),
                    })
                    .collect(),
            ),
            networks: vec!["default".into()],
            bridges: vec!["vmbr0".into()],
            vm_nics: vec![],
            pools: vec![PoolFact {
                name: "local".into(),
                kind: "dir".into(),
                path: Some("/var/lib/keel/images".into()),
            }],
            drbd: vec![],
            cib_secrets: Some(
                c.members
                    .iter()
                    .map(|m| {
                        (
                            format!("fence-{}", m.name),
                            BTreeMap::from([("password".to_string(), true)]),
                        )
                    })
                    .collect(),
            ),
            sbd_active: Some(true),
            fence_agents: Some(vec![
                "fence_ipmilan".into(),
                "fence_redfish".into(),
                "fence_sbd".into(),
            ]),
        }
    }

    fn answers(c: &ClusterFacts) -> Vec<NodeAnswer> {
        c.members
            .iter()
            .map(|m| NodeAnswer {
                node: m.name.clone(),
                facts: Ok(healthy_facts(c, &m.name)),
                sent_ms: 999_990,
                received_ms: 1_000_010,
            })
            .collect()
    }

    fn facts_of<'a>(a: &'a mut [NodeAnswer], n: &str) -> &'a mut NodeFacts {
        a.iter_mut()
            .find(|x| x.node == n)
            .and_then(|x| x.facts.as_mut().ok())
            .unwrap()
    }

    /// The codes (with node) of the findings.
    fn codes(c: &ClusterFacts, a: &[NodeAnswer]) -> Vec<(String, Option<String>)> {
        evaluate(c, a)
            .into_iter()
            .map(|f| (f.code, f.node))
            .collect()
    }

    fn one(code: &str, node: Option<&str>) -> Vec<(String, Option<String>)> {
        vec![(code.to_string(), node.map(str::to_string))]
    }

    #[test]
    fn a_healthy_cluster_has_no_findings() {
        let c = healthy_cluster(3);
        assert_eq!(evaluate(&c, &answers(&c)), vec![]);
    }

    #[test]
    fn efenceoff_stonith_disabled() {
        let mut c = healthy_cluster(3);
        c.stonith_enabled = Some(false);
        assert_eq!(codes(&c, &answers(&c)), one("EFENCEOFF", None));
    }

    #[test]
    fn enodevice_a_member_without_a_device() {
        let mut c = healthy_cluster(3);
        c.devices.as_mut().unwrap().retain(|d| d.target != "n2");
        assert_eq!(codes(&c, &answers(&c)), one("ENODEVICE", Some("n2")));
    }

    #[test]
    fn efenceuntested_and_efencefailed() {
        let mut c = healthy_cluster(3);
        c.tests.remove("n3");
        c.tests.insert(
            "n2".into(),
            TestFact {
                ok: false,
                message: "timed out".into(),
            },
        );
        let f = evaluate(&c, &answers(&c));
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!((f[0].code.as_str(), f[0].severity), ("EFENCEFAILED", E));
        assert!(f[0].message.contains("timed out"));
        assert_eq!((f[1].code.as_str(), f[1].severity), ("EFENCEUNTESTED", W));
        assert_eq!(f[1].node.as_deref(), Some("n3"));
    }

    #[test]
    fn efenceplaintext_a_password_in_the_cib() {
        let mut c = healthy_cluster(3);
        let d = &mut c.devices.as_mut().unwrap()[2];
        d.cib_secrets.clear();
        d.plaintext = vec!["password".into()];
        let f = evaluate(&c, &answers(&c));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].code.as_str(), f[0].severity), ("EFENCEPLAINTEXT", W));
        assert_eq!(f[0].node.as_deref(), Some("n3"));
        assert!(
            f[0].action.contains("--secret password=@FILE"),
            "{}",
            f[0].action
        );
        assert!(secret_like("snmp_priv_passwd") && secret_like("community"));
        assert!(!secret_like("passwd_script") && !secret_like("login"));
    }

    #[test]
    fn ecibsecret_missing_or_unsigned_on_a_node() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n2")
            .cib_secrets
            .as_mut()
            .unwrap()
            .remove("fence-n1");
        facts_of(&mut a, "n3").cib_secrets.as_mut().unwrap().insert(
            "fence-n2".into(),
            BTreeMap::from([("password".into(), false)]),
        );
        let f = evaluate(&c, &a);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            (
                f[0].code.as_str(),
                f[0].node.as_deref(),
                f[0].object.as_str()
            ),
            ("ECIBSECRETMISSING", Some("n2"), "fence-n1/password")
        );
        assert!(f[0].action.contains("keel fence add n1"), "{}", f[0].action);
        assert_eq!(
            (
                f[1].code.as_str(),
                f[1].node.as_deref(),
                f[1].object.as_str()
            ),
            ("ECIBSECRETSIGN", Some("n3"), "fence-n2/password")
        );
        // a member too old to report its secrets is not accused of missing them
        facts_of(&mut a, "n2").cib_secrets = None;
        assert_eq!(codes(&c, &a), one("ECIBSECRETSIGN", Some("n3")));
    }

    #[test]
    fn esbdinactive_sbd_stopped_on_a_node_while_the_cib_uses_it() {
        let mut c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n3").sbd_active = Some(false);
        // no SBD device: sbd not running is nobody's business
        assert_eq!(codes(&c, &a), vec![]);
        c.devices.as_mut().unwrap()[1].sbd = true;
        let f = evaluate(&c, &a);
        assert_eq!(codes(&c, &a), one("ESBDINACTIVE", Some("n3")));
        assert!(f[0].message.contains("fence-n2"), "{}", f[0].message);
        assert!(f[0].action.contains("--agent sbd"), "{}", f[0].action);
        // a node outside systemd (or too old to say) is not accused
        facts_of(&mut a, "n3").sbd_active = None;
        assert_eq!(codes(&c, &a), vec![]);
    }

    #[test]
    fn efenceagent_an_agent_missing_where_it_may_run() {
        let mut c = healthy_cluster(3);
        c.devices.as_mut().unwrap()[1].agent = "fence_redfish".into();
        let mut a = answers(&c);
        assert_eq!(codes(&c, &a), vec![]);
        // n2 lacks fence_redfish: nobody's business, n2 never fences itself
        facts_of(&mut a, "n2").fence_agents = Some(vec!["fence_ipmilan".into()]);
        assert_eq!(codes(&c, &a), vec![]);
        // n3 lacks it: n3 may be the one Pacemaker picks to fence n2
        facts_of(&mut a, "n3").fence_agents = Some(vec!["fence_ipmilan".into()]);
        let f = evaluate(&c, &a);
        assert_eq!(codes(&c, &a), one("EFENCEAGENT", Some("n3")));
        assert_eq!(f[0].object, "/usr/sbin/fence_redfish");
        assert!(f[0].message.contains("fence-n2"), "{}", f[0].message);
        assert!(
            f[0].action.contains("apt-get install fence-agents"),
            "{}",
            f[0].action
        );
        // a member that does not report its agents is not accused
        facts_of(&mut a, "n3").fence_agents = None;
        assert_eq!(codes(&c, &a), vec![]);
    }

    #[test]
    fn installed_fence_agents_lists_fence_programs_only() {
        let d = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        for n in [
            "fence_sbd",
            "fence_ipmilan",
            "sbd",
            "crm_mon",
            "fence_noexec",
        ] {
            let p = d.path().join(n);
            std::fs::write(&p, "").unwrap();
            let mode = if n == "fence_noexec" { 0o644 } else { 0o755 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("fence_ipmilan", d.path().join("fence_idrac")).unwrap();
        std::os::unix::fs::symlink("gone", d.path().join("fence_broken")).unwrap();
        std::fs::create_dir(d.path().join("fence_dir")).unwrap();
        assert_eq!(
            installed_fence_agents(d.path()),
            Some(vec![
                "fence_idrac".to_string(),
                "fence_ipmilan".to_string(),
                "fence_sbd".to_string()
            ])
        );
        assert_eq!(installed_fence_agents(&d.path().join("none")), None);
    }

    /// An HA VM on a cluster pool without its storage constraints is an error naming the VM
    /// and the clone; one that has them is no finding.
    #[test]
    fn an_ha_vm_untied_from_its_pool_is_reported() {
        let mut c = healthy_cluster(2);
        c.ha_storage = vec![HaStorageFact {
            vmid: 100,
            missing: vec![],
        }];
        assert!(codes(&c, &answers(&c)).is_empty());
        c.ha_storage[0].missing = vec!["fs-vmstore-clone".into()];
        let f = evaluate(&c, &answers(&c));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].code.as_str(), f[0].severity, f[0].object.as_str()),
            ("EHASTORAGE", E, "keel-vm-100")
        );
        assert!(
            f[0].message.contains("fs-vmstore-clone"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].action.contains("keel vm ha 100 off"),
            "{}",
            f[0].action
        );
    }

    /// Diskless SBD's one `watchdog` device reads as a device of each node it lists (nothing
    /// to keep off its target); in a two_node cluster it is EWATCHDOGVOTES.
    #[test]
    fn the_watchdog_device_covers_each_listed_node() {
        let res = clusterd::cib::put_watchdog_device(&[
            ("n1".to_string(), "g1".to_string()),
            ("n2".to_string(), "g2".to_string()),
        ])
        .pop()
        .unwrap()
        .stdin;
        let d = parse_devices(&format!("<resources>{res}</resources>"), "<constraints/>").unwrap();
        assert_eq!(
            d.iter().map(|d| d.target.as_str()).collect::<Vec<_>>(),
            ["n1", "n2"]
        );
        assert!(d.iter().all(|d| d.id == "watchdog"
            && d.avoids_target
            && d.sbd
            && d.agent == "fence_watchdog"));
        let mut c = healthy_cluster(2);
        c.devices = Some(d);
        assert!(!codes(&c, &answers(&c))
            .iter()
            .any(|(code, _)| code == "EWATCHDOGVOTES"));
        c.two_node = true;
        assert!(codes(&c, &answers(&c))
            .iter()
            .any(|(code, node)| code == "EWATCHDOGVOTES" && node.is_none()));
    }

    #[test]
    fn efenceself_a_device_allowed_on_its_own_node() {
        let mut c = healthy_cluster(3);
        c.devices.as_mut().unwrap()[1].avoids_target = false;
        assert_eq!(codes(&c, &answers(&c)), one("EFENCESELF", Some("n2")));
    }

    #[test]
    fn etwonode_with_three_nodes_and_efencedelay_at_two() {
        let mut c = healthy_cluster(3);
        c.two_node = true;
        assert_eq!(codes(&c, &answers(&c)), one("ETWONODE", None));
        let mut c = healthy_cluster(2);
        c.two_node = true;
        assert_eq!(codes(&c, &answers(&c)), one("EFENCEDELAY", None));
        c.devices.as_mut().unwrap()[0].delay = true;
        assert_eq!(codes(&c, &answers(&c)), vec![]);
    }

    #[test]
    fn elinkdown_fewer_links_up_than_configured() {
        let mut c = healthy_cluster(3);
        for m in &mut c.members {
            m.addrs.push(format!("192.168.0.{}", m.nodeid));
        }
        let mut a = answers(&c);
        facts_of(&mut a, "n1").links.as_mut().unwrap()[0].connected = vec![0];
        let f = evaluate(&c, &a);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].code, "ELINKDOWN");
        assert_eq!(f[0].node.as_deref(), Some("n1"));
        assert_eq!(f[0].object, "link 1 to n2");
        assert!(f[0].message.contains("1 of 2 links up"), "{}", f[0].message);
    }

    #[test]
    fn ecorosyncdown_when_cfgtool_does_not_answer() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n3").links = None;
        assert_eq!(codes(&c, &a), one("ECOROSYNCDOWN", Some("n3")));
    }

    #[test]
    fn eclockskew_over_the_threshold_after_the_round_trip() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        // 1.005 s off with ±10 ms uncertainty: within the limit
        facts_of(&mut a, "n2").clock_ms += 1005;
        assert_eq!(codes(&c, &a), vec![]);
        facts_of(&mut a, "n2").clock_ms += 4000;
        let f = evaluate(&c, &a);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].code, "ECLOCKSKEW");
        assert!(f[0].message.contains("+5.0 s"), "{}", f[0].message);
    }

    #[test]
    fn chrony_offset_and_unsynchronised() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n3").chrony = parse_chrony_tracking(
            "C0A80001,192.168.0.1,3,1700000000.1,-2.500000,0.0001,0.0002,-1.2,0.0,0.1,0.01,0.02,64.0,Not synchronised\n",
        );
        let f = evaluate(&c, &a);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            (f[0].code.as_str(), f[0].object.as_str()),
            ("ECLOCKSKEW", "chrony")
        );
        assert!(f[0].message.contains("-2.5 s"), "{}", f[0].message);
        assert_eq!((f[1].code.as_str(), f[1].severity), ("ECLOCKUNSYNC", W));
        assert_eq!(parse_chrony_tracking("506 Cannot talk to daemon"), None);
    }

    #[test]
    fn enameres_and_enameunres() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n1")
            .resolved
            .insert("n3".into(), vec!["10.9.9.9".into()]);
        facts_of(&mut a, "n2").resolved.insert("n3".into(), vec![]);
        // another address the member has (it reports it) is fine
        facts_of(&mut a, "n3")
            .resolved
            .insert("n1".into(), vec!["192.0.2.1".into()]);
        // the node's own name on Debian's 127.0.1.1 is fine
        facts_of(&mut a, "n3")
            .resolved
            .insert("n3".into(), vec!["127.0.1.1".into()]);
        let f = evaluate(&c, &a);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            (f[0].code.as_str(), f[0].node.as_deref()),
            ("ENAMERES", Some("n1"))
        );
        assert_eq!(
            (f[1].code.as_str(), f[1].severity, f[1].node.as_deref()),
            ("ENAMEUNRES", W, Some("n2"))
        );
    }

    #[test]
    fn ekeyperm_and_efilemissing() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n2").files[1].mode = 0o644;
        let f = evaluate(&c, &a);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].code, "EKEYPERM");
        assert_eq!(f[0].object, "/etc/corosync/authkey");
        assert!(f[0].message.contains("0644"), "{}", f[0].message);
        let mut a = answers(&c);
        facts_of(&mut a, "n3").files[2].uid = 1000;
        assert_eq!(codes(&c, &a), one("EKEYPERM", Some("n3")));
        let mut a = answers(&c);
        facts_of(&mut a, "n3").files[0].exists = false;
        assert_eq!(codes(&c, &a), one("EFILEMISSING", Some("n3")));
    }

    #[test]
    fn econfdiff_names_the_odd_node_out() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n1").corosync_conf_sha256 = Some("bbbb".into());
        // the checking node is the odd one: the majority is the reference
        assert_eq!(codes(&c, &a), one("ECONFDIFF", Some("n1")));
        let c2 = healthy_cluster(2);
        let mut a = answers(&c2);
        facts_of(&mut a, "n2").corosync_conf_sha256 = Some("bbbb".into());
        // a tie: the checking node's file is the reference
        assert_eq!(codes(&c2, &a), one("ECONFDIFF", Some("n2")));
    }

    #[test]
    fn enetmissing_a_network_or_bridge_a_vm_uses() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n1").vm_nics = vec![
            VmNicFact {
                vm: "vm100".into(),
                network: Some("default".into()),
                bridge: None,
            },
            VmNicFact {
                vm: "vm100".into(),
                network: None,
                bridge: Some("vmbr0".into()),
            },
        ];
        assert_eq!(codes(&c, &a), vec![]);
        facts_of(&mut a, "n3").bridges.clear();
        let f = evaluate(&c, &a);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (
                f[0].code.as_str(),
                f[0].node.as_deref(),
                f[0].object.as_str()
            ),
            ("ENETMISSING", Some("n3"), "bridge vmbr0")
        );
        facts_of(&mut a, "n2").networks.clear();
        assert_eq!(evaluate(&c, &a).len(), 2);
    }

    #[test]
    fn epooldiff_missing_or_different() {
        let c = healthy_cluster(3);
        let mut a = answers(&c);
        facts_of(&mut a, "n2").pools.clear();
        assert_eq!(codes(&c, &a), one("EPOOLDIFF", Some("n2")));
        let mut a = answers(&c);
        facts_of(&mut a, "n3").pools[0].path = Some("/srv/images".into());
        let f = evaluate(&c, &a);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].code.as_str(), f[0].severity), ("EPOOLDIFF", W));
        assert!(
            f[0].message.contains("/srv/images on n3"),
            "{}",
            f[0].message
        );
    }

    fn drbd_fact(res: Option<&str>, cs: &str, ro: (&str, &str), ds: (&str, &str)) -> DrbdFact {
        DrbdFact {
            minor: 0,
            resource: res.map(str::to_string),
            connection: cs.into(),
            role: ro.0.into(),
            peer_role: ro.1.into(),
            disk: ds.0.into(),
            peer_disk: ds.1.into(),
            two_primaries: true,
            fencing: Some("resource-and-stonith".into()),
        }
    }

    /// A Keel pool's resource dual-primary and in sync is healthy; each DRBD trap is found.
    #[test]
    fn drbd_codes() {
        let mut c = healthy_cluster(2);
        c.two_node = true;
        c.devices.as_mut().unwrap()[0].delay = true;
        c.drbd_pools.insert("vmstore".into(), "vmstore".into());
        let pri = ("Primary", "Primary");
        let up = ("UpToDate", "UpToDate");
        let with = |f: DrbdFact| {
            let mut a = answers(&c);
            facts_of(&mut a, "n1").drbd = vec![f];
            codes(&c, &a)
        };
        assert_eq!(
            with(drbd_fact(Some("vmstore"), "Connected", pri, up)),
            vec![]
        );
        // left dual-primary outside a pool, and a minor no file names
        assert_eq!(
            with(drbd_fact(Some("r0"), "Connected", pri, up)),
            one("EDRBDDUALPRI", Some("n1"))
        );
        let mut f = drbd_fact(None, "Connected", ("Primary", "Secondary"), up);
        f.two_primaries = false;
        f.fencing = None;
        assert_eq!(with(f), vec![]);
        // no fencing
        let mut f = drbd_fact(Some("vmstore"), "Connected", pri, up);
        f.fencing = None;
        assert_eq!(with(f), one("EDRBDNOFENCE", Some("n1")));
        // split brain, peer gone, resync, degraded
        assert_eq!(
            with(drbd_fact(
                Some("vmstore"),
                "StandAlone",
                ("Primary", "Unknown"),
                ("UpToDate", "DUnknown")
            )),
            one("EDRBDSTANDALONE", Some("n1"))
        );
        assert_eq!(
            with(drbd_fact(
                Some("vmstore"),
                "WFConnection",
                ("Primary", "Unknown"),
                ("UpToDate", "DUnknown")
            )),
            one("EDRBDDISCONNECTED", Some("n1"))
        );
        assert_eq!(
            with(drbd_fact(
                Some("vmstore"),
                "SyncSource",
                ("Primary", "Secondary"),
                ("UpToDate", "Inconsistent")
            )),
            one("EDRBDSYNCING", Some("n1"))
        );
        assert_eq!(
            with(drbd_fact(
                Some("vmstore"),
                "Connected",
                pri,
                ("UpToDate", "Outdated")
            )),
            one("EDRBDDEGRADED", Some("n1"))
        );
        let mut a = answers(&c);
        facts_of(&mut a, "n2").drbd = vec![drbd_fact(Some("vmstore"), "StandAlone", pri, up)];
        let f = evaluate(&c, &a);
        assert!(
            f[0].message
                .contains("vmstore (pool vmstore) on n2 is StandAlone")
                && f[0].action.contains("--discard-my-data vmstore"),
            "{f:?}"
        );
    }

    #[test]
    fn drbd_facts_join_the_kernel_and_the_files() {
        let conf = keel_storage::drbd_conf::resources(&[
            "resource vmstore { net { allow-two-primaries yes; } disk { fencing resource-and-stonith; }\n on a { device /dev/drbd0 minor 0; } on b { device /dev/drbd0 minor 0; } }".into(),
        ]);
        let f = drbd_facts(
            "version: 8.4.11 (api:1/proto:86-101)\n 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r-----\n 1: cs:WFConnection ro:Secondary/Unknown ds:UpToDate/DUnknown C r-----\n 2: cs:Unconfigured\n",
            &conf,
        );
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].resource.as_deref(), Some("vmstore"));
        assert!(f[0].two_primaries);
        assert_eq!(f[0].fencing.as_deref(), Some("resource-and-stonith"));
        assert_eq!((f[1].minor, f[1].resource.as_deref()), (1, None));
        assert_eq!(f[1].connection, "WFConnection");
    }

    #[test]
    fn enodeunreach_and_epcmkdown() {
        let mut c = healthy_cluster(3);
        let mut a = answers(&c);
        a[2].facts = Err("connection refused".into());
        assert_eq!(codes(&c, &a), one("ENODEUNREACH", Some("n3")));
        c.stonith_enabled = None;
        c.devices = None;
        assert_eq!(codes(&c, &answers(&c)), one("EPCMKDOWN", Some("n1")));
    }

    #[test]
    fn addresses_from_ip_addr() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n2: eth0    inet6 fd00::1/64 scope global \\       valid_lft forever\n3: eth1    link/ether 02:00:00:00:00:01\n";
        assert_eq!(parse_ip_addr(out), vec!["127.0.0.1", "fd00::1"]);
    }

    #[test]
    fn devices_from_the_cib() {
        let res = r#"<resources>
  <primitive id="fence-n1" class="stonith" type="fence_ipmilan"><instance_attributes id="a"><nvpair id="a1" name="pcmk_host_list" value="n1"/><nvpair id="a2" name="pcmk_delay_base" value="10s"/><nvpair id="a3" name="password" value="lrm://"/></instance_attributes></primitive>
  <primitive id="fence-n2" class="stonith" type="fence_ipmilan"><instance_attributes id="b"><nvpair id="b1" name="pcmk_host_list" value="n2"/><nvpair id="b2" name="pcmk_delay_max" value="0"/><nvpair id="b3" name="passwd" value="hunter2"/><nvpair id="b4" name="passwd_script" value="/usr/local/bin/pw"/></instance_attributes></primitive>
  <primitive id="vm" class="ocf" provider="heartbeat" type="VirtualDomain"/>
</resources>"#;
        let cons = r#"<constraints><rsc_location id="l1" rsc="fence-n1" node="n1" score="-INFINITY"/><rsc_location id="l2" rsc="fence-n2" node="n1" score="-INFINITY"/></constraints>"#;
        let d = parse_devices(res, cons).unwrap();
        assert_eq!(
            d,
            vec![
                DeviceFact {
                    id: "fence-n1".into(),
                    target: "n1".into(),
                    avoids_target: true,
                    delay: true,
                    plaintext: vec![],
                    cib_secrets: vec!["password".into()],
                    sbd: false,
                    agent: "fence_ipmilan".into(),
                },
                DeviceFact {
                    id: "fence-n2".into(),
                    target: "n2".into(),
                    avoids_target: false,
                    delay: false,
                    plaintext: vec!["passwd".into()],
                    cib_secrets: vec![],
                    sbd: false,
                    agent: "fence_ipmilan".into(),
                },
            ]
        );
    }
}
