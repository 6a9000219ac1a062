//! `cluster init` on this node: the plan (management address, link latency class, certificate
//! names), the `clusterinit` task, and pinning this node's own SSH host keys. The procedure on
//! files and daemons is `clusterd::form::init`.

use std::sync::Arc;

use clusterd::commands;
use clusterd::corosync_conf::LatencyClass;
use clusterd::form;
use keel_api::cluster::ClusterInit;
use keel_runner::Runner;

use super::store_api::copy_access_to_store;
use super::{clusterd_svc, ClusterState, TaskProgress};
use crate::error::{Error, Result};
use crate::tasks::{self, TaskHandle};
use crate::Node;

/// The local source address used to reach `dst` (`ip route get`).
pub(super) fn source_addr_for(r: &dyn Runner, dst: &str) -> Option<String> {
    let out = r.run_ok(&commands::route_get(dst)).ok()?;
    let mut it = out.split_whitespace();
    while let Some(w) = it.next() {
        if w == "src" {
            return it.next().map(str::to_string);
        }
    }
    None
}

fn default_link0(cs: &ClusterState) -> Result<String> {
    if !cs.listen_ip.is_unspecified() && !cs.listen_ip.is_loopback() {
        return Ok(cs.listen_ip.to_string());
    }
    for probe in ["192.0.2.1", "2001:db8::1"] {
        if let Some(a) = source_addr_for(cs.runner.as_ref(), probe) {
            return Ok(a);
        }
    }
    Err(Error::validation(
        "link0",
        "cannot tell this node's management address (no default route and the API listens on a wildcard address): give link0",
    ))
}

/// Link latency class from the RTT to ourselves is meaningless; assume a LAN unless the link is
/// on a loopback-like lab network (ULA/private with no default route) — the operator can always
/// override `token_ms`.
fn latency_class(r: &dyn Runner) -> LatencyClass {
    if source_addr_for(r, "192.0.2.1").is_none() && source_addr_for(r, "2001:db8::1").is_none() {
        LatencyClass::Local
    } else {
        LatencyClass::Lan
    }
}

/// Refuse at once what cannot work (already clustered, missing programs, no address), then
/// start the `clusterinit` task; its UPID.
pub(super) fn start(node: &Arc<Node>, req: ClusterInit, user: &str) -> Result<String> {
    let cs = &node.cluster;
    form::check_unclustered(&cs.paths, cs.runner.as_ref())?;
    super::prereq::check(cs, "cluster init")?;
    let link0 = match &req.link0 {
        Some(a) => a.clone(),
        None => default_link0(cs)?,
    };
    let mut links = vec![link0.clone()];
    links.extend(req.link1.clone());
    let plan = form::InitPlan {
        cluster_name: req.name.clone(),
        node: node.cfg.node.clone(),
        links,
        token_ms: req.token_ms,
        latency: latency_class(cs.runner.as_ref()),
        api: form::api_addr(&link0, cs.api_port),
        dns: vec!["localhost".into()],
        extra_ips: vec![
            cs.listen_ip,
            "127.0.0.1"
                .parse()
                .map_err(|_| Error::Internal("ip".into()))?,
        ],
        clusterd_installed: cs.clusterd_bin.is_some(),
    };
    let n = node.clone();
    tasks::spawn(
        &node.tasks,
        "clusterinit",
        "cluster",
        user,
        true,
        move |t| run(&n, &plan, t),
    )
}

/// The `clusterinit` task: form the one-node cluster, pin our keys, serve the CA-signed
/// certificate, and make this node's users the cluster's.
fn run(n: &Node, plan: &form::InitPlan, t: &TaskHandle) -> Result<()> {
    let cs = &n.cluster;
    let _g = cs.change.lock().unwrap_or_else(|p| p.into_inner());
    let cert = form::init(
        &cs.paths,
        clusterd_svc(cs).as_ref(),
        cs.runner.as_ref(),
        plan,
        &TaskProgress(t),
    )?;
    pin_self(n, &plan.links)?;
    cs.swap_cert(&cert)?;
    t.log(format!("API certificate fingerprint: {}", cert.fingerprint));
    copy_access_to_store(n, t)?;
    Ok(())
}

/// Pin this node's own host keys in known_hosts (so the file handed to joiners lists it) and
/// make sure root has a migration key.
fn pin_self(node: &Node, links: &[String]) -> Result<()> {
    let cs = &node.cluster;
    let keys = form::ssh_host_keys(&cs.paths);
    let lines = form::known_hosts_lines(&node.cfg.node, links, &keys);
    form::pin_known_hosts(&cs.paths, &node.cfg.node, links, &lines)?;
    form::ensure_root_key(&cs.paths, cs.runner.as_ref())?;
    Ok(())
}
