//! Fence devices (API spec → `clusterd::fence::FenceDevice` → CIB), the live list of stonith
//! devices, fence tests and their records, and the gate HA and cluster storage must pass.

use clusterd::fence::{FenceAgent, FenceDevice, Secret};
use clusterd::form::{self};
use clusterd::service;
use keel_api::cluster::{FenceAgentKind, FenceDeviceSpec, FenceTestResult};
use rusqlite::params;

use super::ClusterState;
use crate::error::{Error, Result};
use crate::Node;

pub(super) fn cib_stonith_devices() -> Vec<(String, String, String)> {
    // (id, agent type, target node) from the live CIB
    let Ok((true, out, _)) = service::run(&["cibadmin", "--query", "--scope", "resources"]) else {
        return vec![];
    };
    let Ok(root) = keel_xml::Element::parse(&out) else {
        return vec![];
    };
    root.descendants("primitive")
        .into_iter()
        .filter(|p| p.get_attr("class") == Some("stonith"))
        .filter_map(|p| {
            let target = p
                .descendants("nvpair")
                .into_iter()
                .find(|nv| nv.get_attr("name") == Some("pcmk_host_list"))?
                .get_attr("value")?
                .to_string();
            Some((
                p.get_attr("id")?.to_string(),
                p.get_attr("type").unwrap_or("").to_string(),
                target,
            ))
        })
        .collect()
}

/// Config store key of a node's last fence test (cluster-wide record).
pub(super) fn fence_test_key(node: &str) -> String {
    format!("/cluster/fence-tests/{node}")
}

/// The newer of this node's record and the cluster-wide one in the config store (when
/// keel-clusterd answers): a test run through any member counts everywhere.
pub(super) fn fence_test_of(cs: &ClusterState, node: &str) -> Option<FenceTestResult> {
    let local = cs
        .db
        .conn()
        .query_row(
            "SELECT at, ok, action, message FROM cluster_fence_tests WHERE node=?1",
            params![node],
            |r| {
                Ok(FenceTestResult {
                    at: r.get(0)?,
                    ok: r.get::<_, i64>(1)? != 0,
                    action: r.get(2)?,
                    message: r.get(3)?,
                })
            },
        )
        .ok();
    let shared = tokio::runtime::Handle::try_current().ok().and_then(|h| {
        let c = clusterd::store::client::Client::local();
        h.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(2),
                c.get(&fence_test_key(node)),
            )
            .await
            .ok()?
            .ok()
        })
        .and_then(|e| serde_json::from_value::<FenceTestResult>(e.value).ok())
    });
    match (local, shared) {
        (Some(a), Some(b)) => Some(if b.at > a.at { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A FenceDevice with only the identity fields needed to delete it from the CIB.
pub(super) fn lab_shell_device(id: &str, node: &str) -> FenceDevice {
    FenceDevice {
        id: id.to_string(),
        node: node.to_string(),
        agent: FenceAgent::KeelNetnsLab {
            lab_dir: String::new(),
        },
        delay_s: None,
        action: None,
    }
}

// ------------------------------------------------------------------ fencing

pub(super) fn param(spec: &FenceDeviceSpec, k: &str) -> Result<String> {
    spec.params.get(k).cloned().ok_or_else(|| {
        Error::validation(
            &format!("params.{k}"),
            format!("{k} is required for this agent"),
        )
    })
}

pub(super) fn secret(spec: &FenceDeviceSpec, k: &str) -> Result<Secret> {
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

pub(super) fn port(spec: &FenceDeviceSpec, k: &str) -> Result<Option<u16>> {
    spec.params
        .get(k)
        .map(|v| {
            v.parse().map_err(|_| {
                Error::validation(&format!("params.{k}"), format!("{v:?} is not a port"))
            })
        })
        .transpose()
}

pub(super) fn to_device(spec: &FenceDeviceSpec) -> Result<FenceDevice> {
    spec.validate()?;
    let agent = match spec.agent {
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
        FenceAgentKind::FenceKeellab => FenceAgent::KeelNetnsLab {
            lab_dir: param(spec, "lab_dir")?,
        },
        FenceAgentKind::FenceKeelLab => FenceAgent::KeelVmLab {
            ipaddr: spec.params.get("ipaddr").cloned(),
            ipport: port(spec, "ipport")?,
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

pub(super) fn agent_kind(program: &str) -> Option<FenceAgentKind> {
    Some(match program {
        "fence_ipmilan" => FenceAgentKind::FenceIpmilan,
        "fence_redfish" => FenceAgentKind::FenceRedfish,
        "fence_sbd" => FenceAgentKind::Sbd,
        "fence_keellab" => FenceAgentKind::FenceKeellab,
        "fence_keel_lab" => FenceAgentKind::FenceKeelLab,
        _ => return None,
    })
}

/// Refuse HA or cluster storage until every member passed a fence test.
pub fn require_fence_tested(node: &Node) -> Result<()> {
    let cs = &node.cluster;
    let conf = form::read_corosync_conf(&cs.paths)?;
    let untested: Vec<String> = conf
        .nodes
        .iter()
        .filter(|n| !fence_test_of(cs, &n.name).is_some_and(|t| t.ok))
        .map(|n| n.name.clone())
        .collect();
    if !untested.is_empty() {
        return Err(Error::Conflict(format!(
            "fencing is not proven on {}: run `keel fence test NODE --yes` for each before enabling HA or cluster storage",
            untested.join(", ")
        )));
    }
    Ok(())
}
