//! Fence devices (API spec → `clusterd::fence::FenceDevice` → CIB), the live list of stonith
//! devices, fence tests and their records, and the gate HA and cluster storage must pass.

use clusterd::cib::WATCHDOG_DEVICE_ID;
use clusterd::fence::{FenceAgent, FenceDevice, Secret};
use std::collections::BTreeMap;
use std::sync::Arc;

use clusterd::commands;
use clusterd::form;
use keel_api::cluster::{FenceAgentKind, FenceDeviceInfo, FenceDeviceSpec, FenceTestResult};
use keel_runner::Runner;
use rusqlite::params;

use super::store_api::store_err;
use super::{run_err, ClusterState};
use crate::db::now;
use crate::error::{Error, Result};
use crate::tasks::{self, TaskHandle};
use crate::Node;

/// Seconds `stonith_admin` may take for a fence test (its own `--timeout`).
const FENCE_TEST_TIMEOUT_S: u32 = 120;

/// (id, agent type, target node) of every stonith device in the live CIB; empty when
/// Pacemaker does not answer (for status pages).
pub(super) fn cib_stonith_devices(r: &dyn Runner) -> Vec<(String, String, String)> {
    stonith_devices(r).unwrap_or_default()
}

/// (id, agent type, target node) of every stonith device in the live CIB, or why they cannot
/// be read (the command's error, a timeout included).
pub(super) fn stonith_devices(r: &dyn Runner) -> Result<Vec<(String, String, String)>> {
    Ok(cib_devices(r)?
        .into_iter()
        .map(|d| (d.id, d.agent, d.target))
        .collect())
}

/// A stonith device as the live CIB has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CibDevice {
    pub id: String,
    /// The agent program (`type`).
    pub agent: String,
    /// The node it fences (`pcmk_host_list`).
    pub target: String,
    /// `pcmk_reboot_action`: what the agent is told to do when a reboot is asked for.
    pub reboot_action: Option<String>,
    /// The `keel-generation` meta attribute (see [`clusterd::cib::GENERATION_META`]).
    pub generation: Option<String>,
    /// `pcmk_delay_base` in seconds.
    pub delay_s: Option<u32>,
}

/// Every stonith device in the live CIB, or why they cannot be read.
pub(super) fn cib_devices(r: &dyn Runner) -> Result<Vec<CibDevice>> {
    let out = r
        .run_ok(&commands::cib_query("resources"))
        .map_err(run_err)?;
    parse_cib_devices(&out)
}

fn parse_cib_devices(xml: &str) -> Result<Vec<CibDevice>> {
    let root = keel_xml::Element::parse(xml)
        .map_err(|e| Error::Internal(format!("cibadmin --query --scope resources: {e}")))?;
    let nv = |p: &keel_xml::Element, set: &str, name: &str| -> Option<String> {
        p.descendants(set)
            .into_iter()
            .flat_map(|s| s.descendants("nvpair"))
            .find(|nv| nv.get_attr("name") == Some(name))?
            .get_attr("value")
            .map(str::to_string)
    };
    let mut out = vec![];
    for p in root
        .descendants("primitive")
        .into_iter()
        .filter(|p| p.get_attr("class") == Some("stonith"))
    {
        let (Some(id), Some(hosts)) = (
            p.get_attr("id"),
            nv(p, "instance_attributes", "pcmk_host_list"),
        ) else {
            continue;
        };
        let agent = p.get_attr("type").unwrap_or("").to_string();
        if id == WATCHDOG_DEVICE_ID {
            // the one watchdog device: a device of each node it lists, with that node's own
            // generation
            for h in hosts.split([' ', ',', ';']).filter(|h| !h.is_empty()) {
                out.push(CibDevice {
                    id: id.to_string(),
                    agent: agent.clone(),
                    target: h.to_string(),
                    reboot_action: None,
                    delay_s: None,
                    generation: nv(
                        p,
                        "meta_attributes",
                        &clusterd::cib::watchdog_generation_meta(h),
                    ),
                });
            }
            continue;
        }
        out.push(CibDevice {
            id: id.to_string(),
            agent,
            target: hosts,
            reboot_action: nv(p, "instance_attributes", "pcmk_reboot_action"),
            generation: nv(p, "meta_attributes", clusterd::cib::GENERATION_META),
            delay_s: nv(p, "instance_attributes", "pcmk_delay_base")
                .and_then(|v| v.trim().trim_end_matches('s').parse().ok()),
        });
    }
    Ok(out)
}

/// The nodes the watchdog device lists, with their generations.
fn watchdog_nodes(devs: &[CibDevice]) -> Vec<(String, String)> {
    devs.iter()
        .filter(|d| d.id == WATCHDOG_DEVICE_ID)
        .map(|d| (d.target.clone(), d.generation.clone().unwrap_or_default()))
        .collect()
}

/// The watchdog device listing `nodes`, or none when `nodes` is empty.
fn write_watchdog(r: &dyn Runner, nodes: &[(String, String)]) -> Result<()> {
    if nodes.is_empty() {
        form::apply_cib(r, &clusterd::cib::delete_watchdog_device())?;
    } else {
        form::apply_cib(r, &clusterd::cib::put_watchdog_device(nodes))?;
    }
    Ok(())
}

/// What a fence test through a device really does: `stonith_admin --fence` is an off; a
/// `--reboot` is handed to the agent as the device's `pcmk_reboot_action` when it has one
/// (Keel sets `off` there for `--param action=off`).
pub(super) fn performed_action(requested: &str, reboot_action: Option<&str>) -> String {
    match (requested, reboot_action) {
        ("off", _) => "off".into(),
        (_, Some(a)) if !a.is_empty() => a.to_string(),
        (r, _) => r.to_string(),
    }
}

/// A fresh configuration generation for a device being put: Unix time in nanoseconds (one
/// change at a time per device; a later change gets a larger value on a sane clock, and any
/// different value is enough: the gate compares for equality).
fn new_generation() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{ns:x}")
}

/// The stonith devices of this node's cluster; none on a node that is not in one (Pacemaker
/// is not even asked).
fn cluster_devices(node: &Node) -> Result<Vec<(String, String, String)>> {
    if node.cluster.record()?.is_none() {
        return Ok(vec![]);
    }
    stonith_devices(node.cluster.runner.as_ref())
}

/// Config store key of a node's last fence test (cluster-wide record).
pub(super) fn fence_test_key(node: &str) -> String {
    format!("/cluster/fence-tests/{node}")
}

/// The newer of this node's record and the cluster-wide one in the config store (when
/// keel-clusterd answers): a test run through any member counts everywhere.
pub(super) fn fence_test_of(cs: &ClusterState, node: &str) -> Option<FenceTestResult> {
    fence_tests_of(cs, &[node]).remove(node)
}

/// [`fence_test_of`] for each of `nodes`, with one config-store read for all of them: a
/// status or gate over a 16-node cluster costs one round trip to keel-clusterd (and at most
/// one 2 s bound when it is slow), not one per member.
pub(super) fn fence_tests_of(
    cs: &ClusterState,
    nodes: &[&str],
) -> BTreeMap<String, FenceTestResult> {
    let shared = tokio::runtime::Handle::try_current()
        .ok()
        .and_then(|h| {
            let c = clusterd::store::client::Client::local();
            h.block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    c.list(FENCE_TESTS_PREFIX),
                )
                .await
                .ok()?
                .ok()
            })
        })
        .unwrap_or_default();
    let mut shared = shared_fence_tests(shared);
    let conn = cs.db.conn();
    let mut out = BTreeMap::new();
    for &node in nodes {
        let local = conn
            .query_row(
                "SELECT t.at, t.ok, t.action, t.message, g.generation FROM cluster_fence_tests t \
                 LEFT JOIN cluster_fence_test_generations g ON g.node = t.node WHERE t.node=?1",
                params![node],
                |r| {
                    Ok(FenceTestResult {
                        at: r.get(0)?,
                        ok: r.get::<_, i64>(1)? != 0,
                        action: r.get(2)?,
                        message: r.get(3)?,
                        device_generation: r.get(4)?,
                    })
                },
            )
            .ok();
        let newest = match (local, shared.remove(node)) {
            (Some(a), Some(b)) => Some(if b.at > a.at { b } else { a }),
            (a, b) => a.or(b),
        };
        if let Some(t) = newest {
            out.insert(node.to_string(), t);
        }
    }
    out
}

/// Config store prefix of the cluster-wide fence test records ([`fence_test_key`]).
const FENCE_TESTS_PREFIX: &str = "/cluster/fence-tests";

/// The fence test records among `entries` of the config store, by node.
fn shared_fence_tests(entries: Vec<clusterd::store::Entry>) -> BTreeMap<String, FenceTestResult> {
    entries
        .into_iter()
        .filter_map(|e| {
            let node = e
                .key
                .strip_prefix(FENCE_TESTS_PREFIX)?
                .strip_prefix('/')?
                .to_string();
            (!node.is_empty() && !node.contains('/')).then_some(())?;
            Some((
                node,
                serde_json::from_value::<FenceTestResult>(e.value).ok()?,
            ))
        })
        .collect()
}

/// A FenceDevice with only the identity fields needed to delete it from the CIB.
pub(super) fn lab_shell_device(id: &str, node: &str) -> FenceDevice {
    FenceDevice {
        id: id.to_string(),
        node: node.to_string(),
        agent: FenceAgent::Agent {
            program: String::new(),
            params: BTreeMap::new(),
            secrets: BTreeMap::new(),
        },
        delay_s: None,
        action: None,
    }
}

fn param(spec: &FenceDeviceSpec, k: &str) -> Result<String> {
    spec.params.get(k).cloned().ok_or_else(|| {
        Error::validation(
            &format!("params.{k}"),
            format!("{k} is required for this agent"),
        )
    })
}

fn secret(spec: &FenceDeviceSpec, k: &str) -> Result<Secret> {
    spec.secrets
        .get(k)
        .map(|s| Secret::new(s.clone()))
        .ok_or_else(|| {
            Error::validation(
                &format!("secrets.{k}"),
                format!("{k} is required for this agent"),
            )
        })
}

fn port(spec: &FenceDeviceSpec, k: &str) -> Result<Option<u16>> {
    spec.params
        .get(k)
        .map(|v| {
            v.parse().map_err(|_| {
                Error::validation(&format!("params.{k}"), format!("{v:?} is not a port"))
            })
        })
        .transpose()
}

fn to_device(spec: &FenceDeviceSpec) -> Result<FenceDevice> {
    spec.validate()?;
    let agent = match &spec.agent {
        FenceAgentKind::FenceIpmilan => FenceAgent::Ipmilan {
            ip: param(spec, "ip")?,
            port: port(spec, "ipport")?,
            username: param(spec, "username")?,
            password: secret(spec, "password")?,
            lanplus: spec.params.get("lanplus").map(|v| v != "0").unwrap_or(true),
            privlvl: spec.params.get("privlvl").cloned(),
        },
        FenceAgentKind::FenceRedfish => FenceAgent::Redfish {
            ip: param(spec, "ip")?,
            port: port(spec, "ipport")?,
            username: param(spec, "username")?,
            password: secret(spec, "password")?,
            ssl_insecure: spec.params.get("ssl_insecure").is_some_and(|v| v == "1"),
            systems_uri: spec.params.get("systems_uri").cloned(),
        },
        FenceAgentKind::Sbd => FenceAgent::Sbd {
            devices: param(spec, "devices")?
                .split(',')
                .map(str::to_string)
                .collect(),
        },
        FenceAgentKind::Watchdog => {
            if spec.delay_base_s.is_some() {
                return Err(Error::validation(
                    "delay_base_s",
                    "a watchdog device takes no fence delay: the node resets itself when it \
                     loses quorum, and the side that keeps quorum survives. A delay to choose \
                     the survivor of a split needs a BMC device or an SBD disk",
                ));
            }
            if let Some(k) = spec
                .params
                .keys()
                .find(|k| k.as_str() != "watchdog_timeout" && k.as_str() != "action")
            {
                return Err(Error::validation(
                    &format!("params.{k}"),
                    format!("the watchdog agent takes only watchdog_timeout, not {k}"),
                ));
            }
            if let Some(k) = spec.secrets.keys().next() {
                return Err(Error::validation(
                    &format!("secrets.{k}"),
                    "the watchdog agent takes no secrets",
                ));
            }
            if spec.params.get("action").is_some_and(|a| a != "reboot") {
                return Err(Error::validation(
                    "params.action",
                    "a watchdog can only reset its node: its action is reboot",
                ));
            }
            FenceAgent::Watchdog {}
        }
        FenceAgentKind::Agent(program) => FenceAgent::Agent {
            program: program.clone(),
            // `action` is the device's (reboot or off), not an agent parameter
            params: spec
                .params
                .iter()
                .filter(|(k, _)| k.as_str() != "action")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            secrets: spec
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), Secret::new(v.clone())))
                .collect(),
        },
    };
    Ok(FenceDevice {
        id: format!("fence-{}", spec.node),
        node: spec.node.clone(),
        agent,
        delay_s: spec.delay_base_s,
        action: spec.params.get("action").cloned(),
    })
}

/// The SBD setup a `sbd` (or `watchdog`: no disks) device asks for: its disks and
/// `watchdog_timeout` (seconds; `default_s` when not given).
fn sbd_config(
    spec: &FenceDeviceSpec,
    devices: &[String],
    default_s: u32,
) -> Result<clusterd::sbd::SbdConfig> {
    let watchdog_timeout_s = match spec.params.get("watchdog_timeout") {
        None => default_s,
        Some(v) => v.parse().map_err(|_| {
            Error::validation(
                "params.watchdog_timeout",
                format!("{v:?} is not a number of seconds"),
            )
        })?,
    };
    let c = clusterd::sbd::SbdConfig {
        devices: devices.to_vec(),
        watchdog_timeout_s,
    };
    c.validate()
        .map_err(|m| Error::validation("params.watchdog_timeout", m))?;
    Ok(c)
}

/// An agent Keel has no model of must be installed where Pacemaker's fencer looks for it
/// (/usr/sbin) and know every parameter given: its own metadata (`-o metadata`) says so.
fn check_agent(r: &dyn Runner, dev: &FenceDevice) -> Result<()> {
    let FenceAgent::Agent { program, .. } = &dev.agent else {
        return Ok(());
    };
    let cmd = commands::agent_metadata(program);
    let meta = r.run_ok(&cmd).map_err(|e| {
        Error::validation(
            "agent",
            format!("{program} is not a usable fence agent on this node: {e}"),
        )
    })?;
    let root = keel_xml::Element::parse(&meta).map_err(|e| {
        Error::validation(
            "agent",
            format!("{program} -o metadata did not print its metadata: {e}"),
        )
    })?;
    let known: Vec<&str> = root
        .descendants("parameter")
        .into_iter()
        .filter_map(|p| p.get_attr("name"))
        .collect();
    for (k, _) in dev.agent.params() {
        if !known.contains(&k) {
            let field = if dev.agent.secret_params().contains(&k) {
                format!("secrets.{k}")
            } else {
                format!("params.{k}")
            };
            return Err(Error::validation(
                &field,
                format!(
                    "{program} has no parameter {k:?}; it knows: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Why `node`'s fencing is not proven, or None when its device passed a test in its current
/// configuration: a device, a successful test, and that test made through the device's
/// current generation (a test before the device was added or last changed proves nothing).
pub(super) fn unproven_reason(
    device: Option<&CibDevice>,
    test: Option<&FenceTestResult>,
) -> Option<&'static str> {
    let Some(d) = device else {
        return Some("no fence device");
    };
    let Some(t) = test else {
        return Some("never tested");
    };
    if !t.ok {
        return Some("its last test failed");
    }
    match (&d.generation, &t.device_generation) {
        (Some(g), Some(tg)) if g == tg => None,
        _ => Some("device added or changed since its last test"),
    }
}

/// Refuse HA or cluster storage until every member's fence device passed a test since it was
/// added or last changed; the error names each node and why.
pub fn require_fence_tested(node: &Node) -> Result<()> {
    let cs = &node.cluster;
    let conf = form::read_corosync_conf(&cs.paths)?;
    let devices = cib_devices(cs.runner.as_ref())?;
    let names: Vec<&str> = conf.nodes.iter().map(|n| n.name.as_str()).collect();
    let tests = fence_tests_of(cs, &names);
    let untested: Vec<String> = conf
        .nodes
        .iter()
        .filter_map(|n| {
            let dev = devices.iter().find(|d| d.target == n.name);
            let test = tests.get(&n.name);
            unproven_reason(dev, test).map(|why| format!("{} ({why})", n.name))
        })
        .collect();
    if !untested.is_empty() {
        return Err(Error::Conflict(format!(
            "fencing is not proven on {}: run `keel fence test NODE --yes` for each before enabling HA or cluster storage",
            untested.join(", ")
        )));
    }
    Ok(())
}

/// The stonith devices in the live CIB, with their last fence test.
pub(super) fn list(node: &Node) -> Result<Vec<FenceDeviceInfo>> {
    if node.cluster.record()?.is_none() {
        return Ok(vec![]);
    }
    let devices = cib_devices(node.cluster.runner.as_ref())?;
    let names: Vec<&str> = devices.iter().map(|d| d.target.as_str()).collect();
    let mut tests = fence_tests_of(&node.cluster, &names);
    Ok(devices
        .into_iter()
        .map(|d| FenceDeviceInfo {
            id: d.id,
            agent: FenceAgentKind::from_name(&d.agent),
            last_test: tests.remove(&d.target),
            node: d.target,
            // what a reboot through this device does (`off`: the node stays down)
            params: d
                .reboot_action
                .map(|a| BTreeMap::from([("action".to_string(), a)]))
                .unwrap_or_default(),
            secret_keys: vec![],
            delay_base_s: d.delay_s,
            generation: d.generation,
        })
        .collect())
}

/// `POST /api/v1/cluster/fencing`: every check before the task exists (a refusal changes
/// nothing), then the `fenceadd` task creates or replaces the fence device of `spec.node`:
/// its secrets written as Pacemaker CIB secrets on every member, sbd set up on every member for
/// `sbd`/`watchdog` devices (minutes: each sbd start, Pacemaker restarts), then the stonith
/// primitive (`lrm://` for each secret) and its location constraint through cibadmin.
pub(super) fn start_put(node: &Arc<Node>, spec: FenceDeviceSpec, user: &str) -> Result<String> {
    let checked = check_put(node, &spec, &|program, target| {
        check_agent_on_members(node, program, target)
    })?;
    let generation = new_generation();
    let n = node.clone();
    // sbd and the watchdog device are the whole cluster's (every member's /etc/default/sbd,
    // maintenance mode, the one `watchdog` device, the votes): such a task holds the cluster,
    // as the QDevice tasks do, and the node; another device only its node
    let cluster_wide = checked.sbd.is_some();
    let lock = if cluster_wide {
        node.cluster
            .record()?
            .map(|r| r.name)
            .ok_or_else(|| Error::Conflict("this node is not in a cluster".into()))?
    } else {
        spec.node.clone()
    };
    tasks::spawn(&node.tasks, "fenceadd", &lock, user, true, move |t| {
        let say = |p: f64, line: &str| {
            t.log(line);
            t.progress(p);
        };
        let (_hold, checked) = if cluster_wide {
            let hold = t.hold(&spec.node)?;
            // what another change did meanwhile (a QDevice gone, another sbd device) counts:
            // the checks again, on the state the task starts from
            let again = check_put(&n, &spec, &|program, target| {
                check_agent_on_members(&n, program, target)
            })?;
            (Some(hold), again)
        } else {
            (None, checked)
        };
        let info = apply_put(
            &n,
            &spec,
            checked,
            &generation,
            &|rsc, s| push_secrets(&n, rsc, s),
            &say,
        )?;
        t.log(format!(
            "fence device {} for {} configured: test it with `keel fence test {} --yes`",
            info.id, info.node, info.node
        ));
        Ok(())
    })
}

/// How a device's CIB secrets reach the other members: [`push_secrets`] (a recorder in tests).
type SecretsPush<'a> = &'a dyn Fn(&str, &form::DeviceSecrets) -> Result<()>;
/// How the other members are asked whether they have a device's agent (program, target):
/// [`check_agent_on_members`] (a recorder in tests).
type AgentCheck<'a> = &'a dyn Fn(&str, &str) -> Result<()>;

/// Pacemaker may run a device on any member but its target: this member (`me`) needs the
/// agent `program` in `/usr/sbin` unless it is `target`. 409 naming the member otherwise.
pub(super) fn require_agent(
    cs: &ClusterState,
    me: &str,
    program: &str,
    target: &str,
) -> Result<()> {
    if me == target {
        return Ok(());
    }
    if !keel_api::cluster::valid_agent_program(program) {
        return Err(Error::BadRequest(format!(
            "{program:?} is not a fence agent's program name"
        )));
    }
    let installed = cs
        .runner
        .run(&commands::agent_installed(program))
        .map_err(run_err)?
        .success();
    if installed {
        return Ok(());
    }
    let from = if program == "fence_watchdog" {
        "fence_watchdog comes with Pacemaker itself (`apt-get install --reinstall pacemaker`)"
    } else {
        "Debian's agents come with `apt-get install fence-agents`; a custom one goes to \
         /usr/sbin on every node; nodes installed from Keel's ISO carry fence_ipmilan, \
         fence_redfish and fence_sbd"
    };
    Err(Error::Conflict(format!(
        "{me}: fence agent {program} is not installed (/usr/sbin/{program}), and Pacemaker may \
         run the device for {target} on {me}: install it there ({from}), then run the command \
         again"
    )))
}

/// Ask every other member but the device's target (it never runs its own device, and may be
/// down: that is when its device gets fixed) whether it has `program`, before anything of the
/// device is written anywhere. The update is check-only: a member applies nothing else of it.
fn check_agent_on_members(node: &Node, program: &str, target: &str) -> Result<()> {
    super::peer::push_one(node, &[target], |u| {
        u.fence_agent = Some((program.to_string(), target.to_string()))
    })
}

/// Give a device's secrets (empty: remove them) to every other member, through the
/// authenticated peer update (mutual TLS to CA-verified members, HMAC by the cluster key).
fn push_secrets(node: &Node, rsc: &str, secrets: &form::DeviceSecrets) -> Result<()> {
    super::peer::push_one(node, &[], |u| {
        u.fence_secrets = Some((rsc.to_string(), secrets.clone()))
    })
}

/// What [`check_put`] found, for [`apply_put`].
pub(super) struct Checked {
    dev: FenceDevice,
    secrets: form::DeviceSecrets,
    /// The sbd setup of an `sbd` or `watchdog` device.
    sbd: Option<clusterd::sbd::SbdConfig>,
}

/// [`check_put`] then [`apply_put`], the device's configuration generation given (tests).
#[cfg(test)]
fn put_generation(
    node: &Node,
    spec: &FenceDeviceSpec,
    generation: &str,
    agents: AgentCheck<'_>,
    push: SecretsPush<'_>,
) -> Result<FenceDeviceInfo> {
    let c = check_put(node, spec, agents)?;
    apply_put(node, spec, c, generation, push, &|_, _| {})
}

/// Everything a device must pass before anything of it is written anywhere.
fn check_put(node: &Node, spec: &FenceDeviceSpec, agents: AgentCheck<'_>) -> Result<Checked> {
    let cs = &node.cluster;
    if cs.record()?.is_none() {
        return Err(Error::Conflict("this node is not in a cluster".into()));
    }
    let conf = form::read_corosync_conf(&cs.paths)?;
    let names: Vec<String> = conf.nodes.iter().map(|n| n.name.clone()).collect();
    let dev = to_device(spec)?;
    if let Err(errs) = dev.validate(&names) {
        if let Some(e) = errs.into_iter().next() {
            return Err(Error::Validation(e));
        }
    }
    check_agent(cs.runner.as_ref(), &dev)?;
    let secrets = dev.agent.secret_values();
    form::validate_cib_secrets(&dev.id, &secrets)?;
    // every member that may run the device has its agent (this one: checked above for an agent
    // by program name, which ran it)
    if !matches!(dev.agent, FenceAgent::Agent { .. }) {
        require_agent(cs, &node.cfg.node, dev.agent.program(), &dev.node)?;
    }
    agents(dev.agent.program(), &dev.node).map_err(|e| {
        Error::Conflict(format!(
            "{} is not confirmed on every member that may run the device, so nothing was \
             changed: {}",
            dev.agent.program(),
            match e {
                Error::Conflict(m) | Error::Internal(m) => m,
                e => e.to_string(),
            }
        ))
    })?;
    // SBD runs one way in a cluster: with the disks of fence_sbd devices, or without any for
    // watchdog devices (one /etc/default/sbd per node)
    if matches!(dev.agent, FenceAgent::Sbd { .. } | FenceAgent::Watchdog {}) {
        let other = match dev.agent {
            FenceAgent::Sbd { .. } => "fence_watchdog",
            _ => "fence_sbd",
        };
        let clash: Vec<String> = cib_devices(cs.runner.as_ref())?
            .into_iter()
            .filter(|d| d.agent == other && d.target != dev.node)
            .map(|d| format!("{} ({})", d.id, d.target))
            .collect();
        if !clash.is_empty() {
            return Err(Error::Conflict(format!(
                "{} cannot be added beside {}: sbd runs either with shared disks (fence_sbd) or \
                 without (fence_watchdog) on every node, not both; change those devices first",
                dev.agent.program(),
                clash.join(", ")
            )));
        }
    }
    // SBD: may every member run sbd on these disks (or without any)? Without a timeout given,
    // the one sbd already runs with is kept.
    let sbd = match &dev.agent {
        FenceAgent::Sbd { devices } => {
            let default_s = super::sbd::running_timeout(cs, devices)
                .unwrap_or(clusterd::sbd::DEFAULT_WATCHDOG_TIMEOUT_S);
            let c = sbd_config(spec, devices, default_s)?;
            super::sbd::check_all(node, &c)?;
            Some(c)
        }
        FenceAgent::Watchdog {} => {
            let default_s =
                super::sbd::running_timeout(cs, &[]).unwrap_or(if conf.qdevice.is_some() {
                    clusterd::sbd::DISKLESS_QDEVICE_TIMEOUT_S
                } else {
                    clusterd::sbd::DEFAULT_WATCHDOG_TIMEOUT_S
                });
            let c = sbd_config(spec, &[], default_s)?;
            super::sbd::check_watchdog(node, &c)?;
            super::sbd::check_all(node, &c)?;
            Some(c)
        }
        _ => None,
    };
    Ok(Checked { dev, secrets, sbd })
}

/// Write a device [`check_put`] accepted: sbd first where it needs it, then the secrets on
/// every member, then Pacemaker's CIB. `say` reports the steps (the task's log and progress).
fn apply_put(
    node: &Node,
    spec: &FenceDeviceSpec,
    c: Checked,
    generation: &str,
    push: SecretsPush<'_>,
    say: super::sbd::Say<'_>,
) -> Result<FenceDeviceInfo> {
    let cs = &node.cluster;
    let Checked { dev, secrets, sbd } = c;
    // SBD: every member runs sbd on the disks before Pacemaker may write a poison pill;
    // diskless SBD: sbd on every member, Pacemaker started after it (the timeouts follow the
    // device)
    let watchdog_cfg = match (&dev.agent, &sbd) {
        (FenceAgent::Sbd { .. }, Some(c)) => {
            super::sbd::configure(node, c, say)?;
            None
        }
        (FenceAgent::Watchdog {}, Some(c)) => {
            super::sbd::configure_watchdog(node, c, say)?;
            Some(c.clone())
        }
        _ => None,
    };
    // The secrets go to Pacemaker's CIB-secrets files on every member first (the CIB gets
    // `lrm://`): a member that cannot take them refuses the change before Pacemaker sees it.
    // (an empty set removes the files an earlier configuration of the device left)
    if !secrets.is_empty() || cs.paths.cib_secrets_dir().join(&dev.id).exists() {
        push(&dev.id, &secrets).map_err(|e| {
            Error::Conflict(format!(
                "the device's secrets could not be given to every member, so Pacemaker was not \
                 changed (a fencer without them could not use the device): {e}; run it again \
                 when every member is up"
            ))
        })?;
    }
    form::write_cib_secrets(&cs.paths, &dev.id, &secrets)?;
    if !secrets.is_empty() {
        say(
            0.9,
            "the device's secrets are in Pacemaker's CIB-secrets files on every member",
        );
    }
    // a new generation with every change: the node's earlier fence tests no longer count
    let r = cs.runner.as_ref();
    let devs_now = cib_devices(r)?;
    let watchdog = matches!(dev.agent, FenceAgent::Watchdog {});
    if watchdog {
        // one device per node: the node's own device of another agent goes; the cluster's one
        // watchdog device lists it, with its own generation (the others' are kept)
        for d in devs_now
            .iter()
            .filter(|d| d.target == dev.node && d.id != WATCHDOG_DEVICE_ID)
        {
            form::apply_cib(
                r,
                &clusterd::cib::delete_fence_device(&lab_shell_device(&d.id, &d.target)),
            )?;
        }
        let mut nodes: Vec<(String, String)> = watchdog_nodes(&devs_now)
            .into_iter()
            .filter(|(n, _)| n != &dev.node)
            .collect();
        nodes.push((dev.node.clone(), generation.to_string()));
        write_watchdog(r, &nodes)?;
        if let Some(c) = &watchdog_cfg {
            super::sbd::set_watchdog_timeouts(r, c)?;
        }
    } else {
        form::apply_cib(
            r,
            &clusterd::cib::put_fence_device_generation(&dev, generation),
        )?;
        // a node fenced through its watchdog until now leaves the watchdog device's list
        let wd = watchdog_nodes(&devs_now);
        if wd.iter().any(|(n, _)| n == &dev.node) {
            let rest: Vec<(String, String)> =
                wd.into_iter().filter(|(n, _)| n != &dev.node).collect();
            write_watchdog(r, &rest)?;
        }
    }
    let rsc = if watchdog {
        WATCHDOG_DEVICE_ID
    } else {
        dev.id.as_str()
    };
    // A start that failed under the old configuration (a wrong password) leaves a fail count
    // that keeps the device stopped everywhere: a new secret changes nothing Pacemaker can see
    // (the CIB says lrm:// before and after). Forget it, so the new configuration is judged.
    if let Err(e) = cs.runner.run_ok(&commands::resource_cleanup(rsc)) {
        tracing::warn!(device = %rsc, error = %e, "clearing the device's earlier failures");
    }
    tracing::info!(device = %dev.id, node = %dev.node, agent = dev.agent.program(), "fence device configured");
    // a watchdog device replaced by another agent may have been the last one
    drop_watchdog_timeout_if_unused(cs.runner.as_ref());
    Ok(FenceDeviceInfo {
        id: rsc.to_string(),
        node: dev.node.clone(),
        agent: spec.agent.clone(),
        params: spec.params.clone(),
        secret_keys: spec.secrets.keys().cloned().collect(),
        last_test: None,
        delay_base_s: spec.delay_base_s,
        generation: Some(generation.to_string()),
    })
}

/// With no `fence_watchdog` device left, Pacemaker's watchdog settings go
/// ([`super::sbd::clear_watchdog_timeouts`]). (sbd itself keeps running: see
/// docs/cluster.md.) Best effort: logged.
fn drop_watchdog_timeout_if_unused(r: &dyn Runner) {
    match cib_devices(r) {
        Ok(devs) if devs.iter().any(|d| d.agent == "fence_watchdog") => {}
        Ok(_) => match super::sbd::clear_watchdog_timeouts(r) {
            Ok(true) => tracing::info!(
                "no watchdog fence device left: stonith-watchdog-timeout removed (and \
                 stonith-timeout back to 60 s if Keel had raised it)"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "removing stonith-watchdog-timeout"),
        },
        Err(e) => tracing::warn!(error = %e, "reading the fence devices"),
    }
}

/// Take `target` off the watchdog device's list: the device goes with its last node, and
/// `stonith-watchdog-timeout` with it.
pub(super) fn unlist_watchdog(r: &dyn Runner, target: &str) -> Result<()> {
    let rest: Vec<(String, String)> = watchdog_nodes(&cib_devices(r)?)
        .into_iter()
        .filter(|(n, _)| n != target)
        .collect();
    write_watchdog(r, &rest)?;
    drop_watchdog_timeout_if_unused(r);
    Ok(())
}

/// Delete the fence device(s) of `target` and their constraints.
pub(super) fn delete(node: &Node, target: &str) -> Result<()> {
    // not under a fenceadd or fencetest of the node (the task would write the device back, or
    // test one that is gone)
    if let Some(upid) = node.tasks.busy_with(target) {
        return Err(Error::Conflict(format!(
            "{target} is busy with task {upid}; wait for it to finish"
        )));
    }
    let r = node.cluster.runner.as_ref();
    let devs: Vec<_> = cluster_devices(node)?
        .into_iter()
        .filter(|d| d.2 == target)
        .collect();
    if devs.is_empty() {
        return Err(Error::NotFound(format!("no fence device for {target:?}")));
    }
    for (id, _, t) in devs {
        if id == WATCHDOG_DEVICE_ID {
            unlist_watchdog(r, &t)?;
            continue;
        }
        form::apply_cib(
            r,
            &clusterd::cib::delete_fence_device(&lab_shell_device(&id, &t)),
        )?;
        drop_watchdog_timeout_if_unused(r);
        // the device is gone from the CIB: its secrets too, here and on the members
        if node.cluster.paths.cib_secrets_dir().join(&id).exists() {
            form::write_cib_secrets(&node.cluster.paths, &id, &Default::default())?;
            if let Err(e) = push_secrets(node, &id, &Default::default()) {
                tracing::warn!(device = %id, error = %e, "removing the device's secrets on the other members");
            }
        }
    }
    Ok(())
}

/// Refuse at once what cannot be tested (this node, a node without device), then start the
/// `fencetest` task; its UPID.
pub(super) fn start_test(
    node: &Arc<Node>,
    target: String,
    action: String,
    user: &str,
) -> Result<String> {
    if target == node.cfg.node {
        return Err(Error::Conflict(format!(
            "{target} is the node answering this request: test its fencing from another member"
        )));
    }
    let dev = if node.cluster.record()?.is_none() {
        None
    } else {
        cib_devices(node.cluster.runner.as_ref())?
            .into_iter()
            .find(|d| d.target == target)
    };
    let Some(dev) = dev else {
        return Err(Error::Conflict(format!(
            "{target} has no fence device: add one first"
        )));
    };
    if dev.agent == "fence_watchdog" && action == "off" {
        return Err(Error::Conflict(format!(
            "{target} is fenced by its own watchdog, which resets the node and cannot power it \
             off: test it with reboot"
        )));
    }
    let n = node.clone();
    let tgt = target.clone();
    tasks::spawn(&node.tasks, "fencetest", &tgt, user, true, move |t| {
        run_test(&n, &target, &action, &dev, t)
    })
}

/// What an operator checks when a fence test failed: Pacemaker's own error says little more
/// than that no device could do it ("No such device", "No data available") when the agent
/// cannot reach or log in to its BMC.
fn failure_hint(dev: &CibDevice) -> String {
    let what = match dev.agent.as_str() {
        "fence_ipmilan" => "the BMC's address and port, user, password, privilege level and lanplus (IPMI 2.0)",
        "fence_redfish" => "the BMC's address and port, user, password, systems_uri and TLS (ssl_insecure for a self-signed certificate)",
        "fence_watchdog" => "that sbd runs on the target (`systemctl status sbd`), that Pacemaker there started after it, and that stonith-watchdog-timeout is set (`crm_attribute -t crm_config -n stonith-watchdog-timeout -G`); `keel fence add NODE --agent watchdog` again repairs all three",
        "fence_sbd" => "that every node sees the SBD disk (`sbd -d DISK list` shows a slot per node) and that sbd runs on the target (`systemctl status sbd`; `keel cluster verify` reports ESBDINACTIVE)",
        _ => "the agent's parameters and what it talks to",
    };
    format!(
        "The device {} ({}) could not fence {}: check {what}. `crm_mon -1 --show-detail` shows \
         the device's failed actions and `journalctl -u pacemaker | grep {}` the agent's own \
         error; fix the device with `keel fence add {} …` (its test is then due again)",
        dev.id, dev.agent, dev.target, dev.agent, dev.target
    )
}

/// The `fencetest` task: `stonith_admin --reboot|--fence` (this really fences the node), the
/// outcome recorded here and in the config store.
fn run_test(
    n: &Node,
    target: &str,
    requested: &str,
    dev: &CibDevice,
    t: &TaskHandle,
) -> Result<()> {
    let cmd = commands::stonith(requested == "off", target, FENCE_TEST_TIMEOUT_S);
    let action = performed_action(requested, dev.reboot_action.as_deref());
    t.log(format!("{cmd}: this really fences the node"));
    let why = if action == requested {
        String::new()
    } else {
        format!(
            " ({requested} asked; {} has pcmk_reboot_action={action})",
            dev.id
        )
    };
    if !why.is_empty() {
        t.log(format!("the device performs {action}{why}"));
    }
    let t0 = std::time::Instant::now();
    let (ok, msg) = match n.cluster.runner.run(&cmd) {
        Ok(o) if o.success() => (
            true,
            format!(
                "fenced ({action}) in {:.1}s{why}",
                t0.elapsed().as_secs_f64()
            ),
        ),
        Ok(o) => (
            false,
            format!(
                "failed: {}{}. {}",
                o.stderr.trim(),
                o.stdout.trim(),
                failure_hint(dev)
            ),
        ),
        Err(e) => (false, format!("failed: {e}. {}", failure_hint(dev))),
    };
    let at = now();
    {
        let conn = n.cluster.db.conn();
        conn.execute(
            "INSERT OR REPLACE INTO cluster_fence_tests(node,at,ok,action,message) VALUES (?1,?2,?3,?4,?5)",
            params![target, at, ok as i64, action, msg],
        )?;
        conn.execute(
            "INSERT OR REPLACE INTO cluster_fence_test_generations(node,generation) VALUES (?1,?2)",
            params![target, dev.generation],
        )?;
    }
    let rec = FenceTestResult {
        at,
        ok,
        action: action.clone(),
        message: msg.clone(),
        device_generation: dev.generation.clone(),
    };
    let shared = serde_json::to_value(&rec).map_err(|e| Error::Internal(e.to_string()));
    // right after fencing the other node of a two-node cluster the store holds writes until
    // Pacemaker's confirmation reached it: retry for a while rather than keep the result here
    // only (the other members' gates would not see it)
    let put = shared.and_then(|v| {
        let c = clusterd::store::client::Client::local();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            use clusterd::store::StoreError as S;
            match tokio::runtime::Handle::current().block_on(c.put(&fence_test_key(target), &v)) {
                Ok(x) => break Ok(x),
                // only the passing states are waited out (a store that is down is not)
                Err(S::NotQuorate | S::Syncing) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_secs(1))
                }
                Err(S::Unavailable { message })
                    if message.contains("held") && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_secs(1))
                }
                Err(e) => break Err(store_err(e)),
            }
        }
    });
    match put {
        Ok(_) => t.log("result recorded in the cluster config store"),
        Err(e) => t.log(format!("result recorded on this node only: {e}")),
    }
    t.log(&msg);
    if ok {
        Ok(())
    } else {
        Err(Error::Internal(format!("fence test of {target} {msg}")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testlab::{self, Lab, SELF};
    use super::*;
    use keel_runner::{Fake, Reply};

    /// One config-store list serves every node's fence test: records are read by node name,
    /// a nested key or an unreadable value is not a node's record.
    #[test]
    fn fence_tests_read_from_one_store_list() {
        let e = |key: &str, value: serde_json::Value| clusterd::store::Entry {
            key: key.into(),
            version: 1,
            value,
        };
        let rec = |at: i64| serde_json::json!({"at": at, "ok": true, "action": "off", "message": "done", "device_generation": "g1"});
        let m = shared_fence_tests(vec![
            e("/cluster/fence-tests/node1", rec(10)),
            e("/cluster/fence-tests/node16", rec(20)),
            e("/cluster/fence-tests/x/y", rec(30)),
            e("/cluster/fence-tests/bad", serde_json::json!({"ok": "yes"})),
        ]);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["node1", "node16"]);
        assert_eq!(m.get("node16").map(|t| t.at), Some(20));
        assert_eq!(
            m.get("node1").and_then(|t| t.device_generation.as_deref()),
            Some("g1")
        );
    }

    fn two_nodes(fake: Fake) -> Result<Lab> {
        testlab::clustered(
            &[
                (SELF, "192.0.2.1", "192.0.2.1:8006"),
                ("node2", "192.0.2.2", "192.0.2.2:8006"),
            ],
            fake,
        )
    }

    fn spec(
        agent: FenceAgentKind,
        params: &[(&str, &str)],
        secrets: &[(&str, &str)],
    ) -> FenceDeviceSpec {
        let m = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        FenceDeviceSpec {
            node: "node2".into(),
            agent,
            params: m(params),
            secrets: m(secrets),
            delay_base_s: Some(5),
        }
    }

    const GEN: &str = "g1";

    fn cib_calls(spec: &FenceDeviceSpec) -> Result<Vec<(Vec<String>, String)>> {
        Ok(
            clusterd::cib::put_fence_device_generation(&to_device(spec)?, GEN)
                .into_iter()
                .map(|u| {
                    let mut argv = vec!["cibadmin".to_string()];
                    argv.extend(u.args);
                    (argv, u.stdin)
                })
                .collect(),
        )
    }

    /// Fence device add: the stonith primitive, then its location constraint, each through
    /// `cibadmin --modify … --xml-pipe` with the fragment on stdin — the BMC password is in
    /// that fragment and in no argument of any command.
    #[test]
    fn fence_device_add_puts_the_fragment_on_stdin_only() -> Result<()> {
        let s = spec(
            FenceAgentKind::FenceIpmilan,
            &[("ip", "10.0.0.12"), ("username", "admin")],
            &[("password", "hunter2")],
        );
        let calls = cib_calls(&s)?;
        assert_eq!(calls.len(), 3);
        // the CIB names Pacemaker's secrets file, never the password
        assert!(
            calls[0].1.contains(r#"name="password" value="lrm://""#)
                && !calls[0].1.contains("hunter2"),
            "{}",
            calls[0].1
        );
        assert!(calls[0].1.contains(r#"name="pcmk_delay_base" value="5s""#));
        assert!(
            calls[2].1.contains(r#"score="-INFINITY""#),
            "{}",
            calls[2].1
        );
        // the primitive replaced wholesale after the merge: no earlier parameter survives
        assert!(calls[1].1.starts_with("<primitive"), "{}", calls[1].1);
        assert_eq!(
            calls[1].0[1..],
            ["--replace", "--scope", "resources", "--xml-pipe"]
        );
        assert_eq!(
            calls[0].0[1..],
            [
                "--modify",
                "--allow-create",
                "--scope",
                "resources",
                "--xml-pipe"
            ]
        );
        assert_eq!(
            calls[2].0[1..],
            [
                "--modify",
                "--allow-create",
                "--scope",
                "constraints",
                "--xml-pipe"
            ]
        );
        // this node may run node2's device: its agent must be here
        let mut fake = Fake::new()
            .expect(&["test", "-x", "/usr/sbin/fence_ipmilan"], Reply::ok(""))
            // the devices now (is node2 on the watchdog device's list?)
            .expect(
                &["cibadmin", "--query", "--scope", "resources"],
                Reply::ok("<resources/>"),
            );
        for (argv, stdin) in &calls {
            fake = fake.expect_stdin(argv, stdin.as_bytes(), Reply::ok(""));
        }
        // then the device's earlier failures are forgotten
        let fake = fake.expect(
            &["crm_resource", "--cleanup", "--resource", "fence-node2"],
            Reply::ok(""),
        );
        let lab = two_nodes(fake)?;
        let pushed = std::sync::Mutex::new(vec![]);
        let record = |what: String| -> Result<()> {
            pushed
                .lock()
                .map_err(|_| Error::Internal("poisoned".into()))?
                .push(what);
            Ok(())
        };
        let info = put_generation(
            &lab.node,
            &s,
            GEN,
            &|program, target| record(format!("agent {program} for {target}")),
            &|rsc, sec| record(format!("secrets {rsc} {sec:?}")),
        )?;
        lab.fake.assert_done();
        assert_eq!(info.id, "fence-node2");
        assert_eq!(info.secret_keys, ["password"]);
        // the members were asked for the agent, then got the secrets, before Pacemaker did;
        // this node has Pacemaker's files
        let want = form::DeviceSecrets::from([("password".to_string(), "hunter2".to_string())]);
        assert_eq!(
            *pushed
                .lock()
                .map_err(|_| Error::Internal("poisoned".into()))?,
            [
                "agent fence_ipmilan for node2".to_string(),
                format!("secrets fence-node2 {want:?}")
            ]
        );
        let dir = lab.node.cluster.paths.cib_secrets_dir().join("fence-node2");
        assert_eq!(std::fs::read_to_string(dir.join("password"))?, "hunter2");
        // md5("hunter2"), as Pacemaker's fencer checks it
        assert_eq!(
            std::fs::read_to_string(dir.join("password.sign"))?,
            "2ab96390c7dbe3439de74d0c9b0b1767"
        );
        assert_eq!(
            form::read_cib_secrets(&lab.node.cluster.paths)?["fence-node2"],
            want
        );
        let ran = lab.fake.ran();
        assert!(
            ran.iter().flatten().all(|a| !a.contains("hunter2")),
            "a secret reached a command line: {ran:?}"
        );
        Ok(())
    }

    /// A member without the device's agent refuses it before anything is written anywhere:
    /// no secrets pushed, no cibadmin, no secrets file here; the 409 names the member.
    #[test]
    fn a_member_without_the_agent_refuses_the_device() -> Result<()> {
        let s = spec(
            FenceAgentKind::FenceRedfish,
            &[("ip", "10.0.0.12"), ("username", "admin")],
            &[("password", "calvin")],
        );
        let lab = two_nodes(
            Fake::new().expect(&["test", "-x", "/usr/sbin/fence_redfish"], Reply::ok("")),
        )?;
        let r = put_generation(
            &lab.node,
            &s,
            GEN,
            &|_, _| {
                Err(Error::Internal(
                    "updating member node3: member at 192.0.2.3:8006 answered 409 Conflict: node3: \
                     fence agent fence_redfish is not installed (/usr/sbin/fence_redfish)"
                        .into(),
                ))
            },
            &|_, _| Err(Error::Internal("must not be asked".into())),
        );
        match r {
            Err(Error::Conflict(m)) => {
                assert!(
                    m.starts_with("fence_redfish is not confirmed on every member")
                        && m.contains("nothing was changed")
                        && m.contains("node3: fence agent fence_redfish is not installed"),
                    "{m}"
                );
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        lab.fake.assert_done();
        assert!(!lab
            .node
            .cluster
            .paths
            .cib_secrets_dir()
            .join("fence-node2")
            .exists());

        // this node without it: refused before the members are asked
        let lab = two_nodes(Fake::new().expect(
            &["test", "-x", "/usr/sbin/fence_redfish"],
            Reply::fail(1, ""),
        ))?;
        match put_generation(
            &lab.node,
            &s,
            GEN,
            &|_, _| Err(Error::Internal("must not be asked".into())),
            &|_, _| Err(Error::Internal("must not be asked".into())),
        ) {
            Err(Error::Conflict(m)) => assert!(
                m.starts_with(&format!(
                    "{SELF}: fence agent fence_redfish is not installed"
                )) && m.contains("apt-get install fence-agents"),
                "{m}"
            ),
            other => panic!("expected a conflict, got {other:?}"),
        }
        lab.fake.assert_done();
        Ok(())
    }

    /// A watchdog device is `fence_watchdog` with no agent parameter (the timeout is sbd's and
    /// Pacemaker's); anything else given is refused by name, and so is an action it cannot do.
    #[test]
    fn a_watchdog_device_takes_only_its_timeout() -> Result<()> {
        let wd = |params: &[(&str, &str)], secrets: &[(&str, &str)]| FenceDeviceSpec {
            delay_base_s: None,
            ..spec(FenceAgentKind::Watchdog, params, secrets)
        };
        let d = to_device(&wd(&[("watchdog_timeout", "10")], &[]))?;
        assert_eq!(d.agent.program(), "fence_watchdog");
        assert!(d.agent.params().is_empty());
        let calls = cib_calls(&wd(&[], &[]))?;
        let xml: String = calls.iter().map(|(_, x)| x.as_str()).collect();
        assert!(
            xml.contains("type=\"fence_watchdog\"") && xml.contains("value=\"node2\""),
            "{xml}"
        );
        for (params, secrets, field) in [
            (&[("ip", "10.0.0.1")][..], &[][..], "params.ip"),
            (&[][..], &[("password", "x")][..], "secrets.password"),
            (&[("action", "off")][..], &[][..], "params.action"),
        ] {
            match to_device(&wd(params, secrets)) {
                Err(Error::Validation(e)) => assert_eq!(e.field, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        match to_device(&spec(FenceAgentKind::Watchdog, &[], &[])) {
            Err(Error::Validation(e)) => assert_eq!(e.field, "delay_base_s"),
            other => panic!("delay: {other:?}"),
        }
        Ok(())
    }

    /// What a member checks when asked: nothing on the device's target, the program on others,
    /// and a name that is not an agent's refused without running anything.
    #[test]
    fn require_agent_on_a_member() -> Result<()> {
        let lab = two_nodes(
            Fake::new().expect(&["test", "-x", "/usr/sbin/fence_ipmilan"], Reply::ok("")),
        )?;
        let cs = &lab.node.cluster;
        require_agent(cs, "node2", "fence_ipmilan", "node2")?;
        require_agent(cs, SELF, "fence_ipmilan", "node2")?;
        for bad in ["fence_../../bin/sh", "sh", "fence_a b"] {
            assert!(
                matches!(
                    require_agent(cs, SELF, bad, "node2"),
                    Err(Error::BadRequest(_))
                ),
                "{bad}"
            );
        }
        lab.fake.assert_done();
        Ok(())
    }

    /// A member that cannot take the device's secrets: refused (409) before Pacemaker is
    /// touched — no cibadmin runs, no secrets file is left on this node.
    #[test]
    fn secrets_a_member_cannot_take_refuse_the_device() -> Result<()> {
        let s = spec(
            FenceAgentKind::FenceRedfish,
            &[("ip", "10.0.0.12"), ("username", "admin")],
            &[("password", "calvin")],
        );
        let lab = two_nodes(
            Fake::new().expect(&["test", "-x", "/usr/sbin/fence_redfish"], Reply::ok("")),
        )?;
        match put_generation(&lab.node, &s, GEN, &|_, _| Ok(()), &|_, _| {
            Err(Error::Internal(
                "updating member node2: connection refused".into(),
            ))
        }) {
            Err(Error::Conflict(m)) => {
                assert!(
                    m.contains("node2: connection refused")
                        && m.contains("Pacemaker was not changed"),
                    "{m}"
                );
                assert!(!m.contains("calvin"), "{m}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // a password Pacemaker's secrets file could not hold: 400, before any member is asked
        let bad = spec(
            FenceAgentKind::FenceRedfish,
            &[("ip", "10.0.0.12"), ("username", "admin")],
            &[("password", "calvin ")],
        );
        match put_generation(
            &lab.node,
            &bad,
            GEN,
            &|_, _| Err(Error::Internal("must not be asked".into())),
            &|_, _| Err(Error::Internal("must not be asked".into())),
        ) {
            Err(Error::Validation(f)) => assert_eq!(f.field, "secrets.password"),
            other => panic!("expected a validation error, got {other:?}"),
        }
        lab.fake.assert_done();
        assert!(!lab
            .node
            .cluster
            .paths
            .cib_secrets_dir()
            .join("fence-node2")
            .exists());
        Ok(())
    }

    /// A device is not deleted under a task of its node (a fenceadd would write it back).
    #[test]
    fn a_device_is_not_deleted_under_a_task_of_its_node() -> Result<()> {
        let lab = two_nodes(Fake::new())?;
        let t = lab.node.tasks.begin("fenceadd", "node2", "root", true)?;
        match delete(&lab.node, "node2") {
            Err(Error::Conflict(m)) => assert!(m.contains(&t.upid), "{m}"),
            other => panic!("expected 409, got {other:?}"),
        }
        lab.fake.assert_done();
        t.finish(&Ok(()));
        Ok(())
    }

    /// A node that is not in a cluster lists no devices without asking Pacemaker, and has
    /// none to delete or test.
    #[test]
    fn an_unclustered_node_has_no_devices_and_runs_nothing() -> Result<()> {
        let (mut node, _dir) =
            crate::tests_support::fake_node(Arc::new(crate::hv::fake::FakeHv::new()))?;
        let fake = Arc::new(Fake::new());
        node.cluster.runner = fake.clone();
        let node = Arc::new(node);
        assert!(list(&node)?.is_empty());
        assert!(matches!(delete(&node, "node2"), Err(Error::NotFound(_))));
        let r = start_test(&node, "node2".into(), "reboot".into(), "root");
        assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
        assert!(fake.ran().is_empty(), "{:?}", fake.ran());
        Ok(())
    }

    const METADATA: &str = r#"<?xml version="1.0" ?>
<resource-agent name="fence_keellab"><parameters>
  <parameter name="action"/><parameter name="port"/><parameter name="lab_dir"/>
</parameters></resource-agent>"#;

    /// An agent Keel has no model of (how the labs register theirs): its metadata first, then
    /// the same two CIB updates; `action` is the device's, not passed to the agent.
    #[test]
    fn an_agent_by_program_name_is_checked_against_its_metadata() -> Result<()> {
        let agent = FenceAgentKind::Agent("fence_keellab".into());
        let s = spec(
            agent.clone(),
            &[("lab_dir", "/run/lab"), ("action", "off")],
            &[],
        );
        let meta = ["/usr/sbin/fence_keellab", "-o", "metadata"];
        let mut fake = Fake::new().expect(&meta, Reply::ok(METADATA)).expect(
            &["cibadmin", "--query", "--scope", "resources"],
            Reply::ok("<resources/>"),
        );
        for (argv, stdin) in cib_calls(&s)? {
            assert!(!stdin.contains(r#"name="action""#), "{stdin}");
            fake = fake.expect_stdin(&argv, stdin.as_bytes(), Reply::ok(""));
        }
        let lab = two_nodes(fake)?;
        // no secrets: nothing to give the members
        put_generation(&lab.node, &s, GEN, &|_, _| Ok(()), &|_, _| {
            Err(Error::Internal("no secrets, no push".into()))
        })?;
        lab.fake.assert_done();

        // a parameter the agent does not know: refused with its name, nothing configured
        let typo = spec(agent, &[("labdir", "/run/lab")], &[]);
        let lab = two_nodes(Fake::new().expect(&meta, Reply::ok(METADATA)))?;
        match check_put(&lab.node, &typo, &|_, _| Ok(())).map(|_| ()) {
            Err(Error::Validation(f)) => {
                assert_eq!(f.field, "params.labdir");
                assert!(f.message.contains("lab_dir"), "{}", f.message);
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        lab.fake.assert_done();

        // an agent that is not installed
        let missing = spec(FenceAgentKind::Agent("fence_nonesuch".into()), &[], &[]);
        let lab = two_nodes(Fake::new().expect(
            &["/usr/sbin/fence_nonesuch", "-o", "metadata"],
            Reply::fail(127, "No such file or directory"),
        ))?;
        match check_put(&lab.node, &missing, &|_, _| Ok(())).map(|_| ()) {
            Err(Error::Validation(f)) => assert_eq!(f.field, "agent"),
            other => panic!("expected a validation error, got {other:?}"),
        }
        Ok(())
    }

    /// node2's device as the CIB has it after `keel fence add node2 … --param action=off`
    /// (generation `gen`), n1's without action.
    fn cib_resources(gen: &str) -> String {
        format!(
            r#"<resources>
  <primitive id="fence-n1" class="stonith" type="fence_keellab"><instance_attributes id="fence-n1-instance_attributes"><nvpair id="fence-n1-instance_attributes-pcmk_host_list" name="pcmk_host_list" value="n1"/></instance_attributes><meta_attributes id="fence-n1-meta_attributes"><nvpair id="fence-n1-meta_attributes-keel-generation" name="keel-generation" value="a1"/></meta_attributes></primitive>
  <primitive id="fence-node2" class="stonith" type="fence_keellab"><instance_attributes id="fence-node2-instance_attributes"><nvpair id="fence-node2-instance_attributes-pcmk_host_list" name="pcmk_host_list" value="node2"/><nvpair id="fence-node2-instance_attributes-pcmk_reboot_action" name="pcmk_reboot_action" value="off"/><nvpair id="fence-node2-instance_attributes-pcmk_delay_base" name="pcmk_delay_base" value="5s"/></instance_attributes><meta_attributes id="fence-node2-meta_attributes"><nvpair id="fence-node2-meta_attributes-keel-generation" name="keel-generation" value="{gen}"/></meta_attributes></primitive>
</resources>"#
        )
    }

    /// What a test really does: `--fence` is an off; `--reboot` is the device's
    /// `pcmk_reboot_action` when it has one.
    #[test]
    fn the_action_performed_follows_the_device() {
        assert_eq!(performed_action("reboot", None), "reboot");
        assert_eq!(performed_action("reboot", Some("off")), "off");
        assert_eq!(performed_action("off", None), "off");
        assert_eq!(performed_action("off", Some("reboot")), "off");
        assert_eq!(performed_action("reboot", Some("")), "reboot");
    }

    #[test]
    fn cib_devices_carry_their_action_and_generation() -> Result<()> {
        let d = parse_cib_devices(&cib_resources("g7"))?;
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].target, "n1");
        assert_eq!(d[0].reboot_action, None);
        assert_eq!(d[0].generation.as_deref(), Some("a1"));
        assert_eq!(d[1].id, "fence-node2");
        assert_eq!(d[1].agent, "fence_keellab");
        assert_eq!(d[1].reboot_action.as_deref(), Some("off"));
        assert_eq!(d[1].generation.as_deref(), Some("g7"));
        assert_eq!((d[0].delay_s, d[1].delay_s), (None, Some(5)));
        Ok(())
    }

    /// The one watchdog device reads as a device of each node it lists, each with its own
    /// generation; putting a watchdog device for one more node keeps the others' generations
    /// and drops that node's own device of another agent.
    #[test]
    fn the_watchdog_device_is_one_per_listed_node() -> Result<()> {
        let put = clusterd::cib::put_watchdog_device(&[
            ("n1".to_string(), "w1".to_string()),
            ("node2".to_string(), "w2".to_string()),
        ]);
        let xml = format!(
            "<resources>{}</resources>",
            put.last().map(|u| u.stdin.as_str()).unwrap_or_default()
        );
        let d = parse_cib_devices(&xml)?;
        assert_eq!(d.len(), 2);
        assert!(d
            .iter()
            .all(|d| d.id == "watchdog" && d.agent == "fence_watchdog"));
        assert_eq!(
            watchdog_nodes(&d),
            vec![
                ("n1".to_string(), "w1".to_string()),
                ("node2".to_string(), "w2".to_string())
            ]
        );
        Ok(())
    }

    /// A device set to `action=off` tested with the default (reboot): `stonith_admin --reboot`
    /// runs, and the recorded (and shown) action is the off the device performed.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_test_through_an_off_device_records_off() -> Result<()> {
        let query = ["cibadmin", "--query", "--scope", "resources"];
        let lab = two_nodes(
            Fake::new()
                .expect(&query, Reply::ok(cib_resources("g7")))
                .expect(
                    &["stonith_admin", "--reboot", "node2", "--timeout", "120"],
                    Reply::ok(""),
                )
                // the listing
                .expect(&query, Reply::ok(cib_resources("g7"))),
        )?;
        let upid = start_test(&lab.node, "node2".into(), "reboot".into(), "root")?;
        let mut state = String::new();
        for _ in 0..200 {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            let n = lab.node.clone();
            let u = upid.clone();
            let info = tokio::task::spawn_blocking(move || n.tasks.get(&u))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            state = format!("{:?}", info.state);
            if !state.to_lowercase().contains("running") {
                break;
            }
        }
        assert!(state.to_lowercase().contains("ok"), "task state {state}");
        let n = lab.node.clone();
        let devs = tokio::task::spawn_blocking(move || list(&n))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        lab.fake.assert_done();
        let d2 = devs
            .iter()
            .find(|d| d.node == "node2")
            .ok_or_else(|| Error::Internal("node2's device not listed".into()))?;
        assert_eq!(d2.params.get("action").map(String::as_str), Some("off"));
        assert_eq!(d2.delay_base_s, Some(5));
        assert_eq!(d2.generation.as_deref(), Some("g7"));
        let t = d2
            .last_test
            .clone()
            .ok_or_else(|| Error::Internal("no test recorded".into()))?;
        assert!(t.ok, "{t:?}");
        assert_eq!(t.action, "off", "{t:?}");
        assert!(t.message.starts_with("fenced (off) in "), "{}", t.message);
        assert!(
            t.message.contains("pcmk_reboot_action=off"),
            "{}",
            t.message
        );
        assert_eq!(t.device_generation.as_deref(), Some("g7"));
        Ok(())
    }

    /// `POST /cluster/fencing` refuses a device before its `fenceadd` task exists.
    #[test]
    fn a_refused_device_starts_no_task() -> Result<()> {
        let missing = spec(FenceAgentKind::Agent("fence_nonesuch".into()), &[], &[]);
        let lab = two_nodes(Fake::new().expect(
            &["/usr/sbin/fence_nonesuch", "-o", "metadata"],
            Reply::fail(127, "No such file or directory"),
        ))?;
        match start_put(&lab.node, missing, "root") {
            Err(Error::Validation(f)) => assert_eq!(f.field, "agent"),
            other => panic!("expected a validation error, got {other:?}"),
        }
        lab.fake.assert_done();
        assert!(lab.node.tasks.list(None, false, 10)?.is_empty());
        Ok(())
    }

    fn record(lab: &Lab, node: &str, ok: bool, generation: Option<&str>) -> Result<()> {
        let c = lab.node.cluster.db.conn();
        c.execute(
            "INSERT OR REPLACE INTO cluster_fence_tests(node,at,ok,action,message) VALUES (?1,100,?2,'off','x')",
            params![node, ok as i64],
        )?;
        c.execute(
            "INSERT OR REPLACE INTO cluster_fence_test_generations(node,generation) VALUES (?1,?2)",
            params![node, generation],
        )?;
        Ok(())
    }

    fn gate_error(lab: &Lab) -> String {
        match require_fence_tested(&lab.node) {
            Err(Error::Conflict(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The gate: refused before any test, naming every node and why; refused while one node's
    /// test failed or predates its device's change; allowed once each device passed a test
    /// through its current generation; refused again after a device change.
    #[test]
    fn the_gate_names_the_nodes_not_proven() -> Result<()> {
        let query = ["cibadmin", "--query", "--scope", "resources"];
        let mut fake = Fake::new();
        for g in ["g7", "g7", "g7", "g7", "g8"] {
            fake = fake.expect(&query, Reply::ok(cib_resources(g)));
        }
        let lab = two_nodes(fake)?;
        // nothing tested
        let m = gate_error(&lab);
        assert!(m.contains("n1 (never tested), node2 (never tested)"), "{m}");
        assert!(m.contains("keel fence test"), "{m}");
        // n1 passed, node2 failed
        record(&lab, SELF, true, Some("a1"))?;
        record(&lab, "node2", false, Some("g7"))?;
        let m = gate_error(&lab);
        assert!(!m.contains("n1 ("), "{m}");
        assert!(m.contains("node2 (its last test failed)"), "{m}");
        // node2 passed through an older configuration (or a record without generation)
        record(&lab, "node2", true, Some("g6"))?;
        let m = gate_error(&lab);
        assert!(
            m.contains("node2 (device added or changed since its last test)"),
            "{m}"
        );
        // both proven
        record(&lab, "node2", true, Some("g7"))?;
        require_fence_tested(&lab.node)?;
        // node2's device changed (g8): its test no longer counts
        let m = gate_error(&lab);
        assert!(
            m.contains("node2 (device added or changed since its last test)")
                && !m.contains("n1 ("),
            "{m}"
        );
        lab.fake.assert_done();
        Ok(())
    }

    #[test]
    fn a_node_without_device_is_not_proven() {
        let t = FenceTestResult {
            at: 1,
            ok: true,
            action: "reboot".into(),
            message: String::new(),
            device_generation: None,
        };
        assert_eq!(unproven_reason(None, Some(&t)), Some("no fence device"));
        let d = CibDevice {
            id: "fence-x".into(),
            agent: "fence_ipmilan".into(),
            target: "x".into(),
            reboot_action: None,
            generation: None,
            delay_s: None,
        };
        // a device Keel did not put (no generation) is never proven by a test
        assert!(unproven_reason(Some(&d), Some(&t)).is_some());
    }
}
