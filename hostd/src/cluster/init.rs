//! `cluster init` on this node: the management address, the link latency class and pinning
//! this node's own SSH host keys. The procedure on files and daemons is `clusterd::form::init`.

use clusterd::corosync_conf::LatencyClass;
use clusterd::form::{self};
use clusterd::service;

use super::ClusterState;
use crate::error::{Error, Result};
use crate::Node;

// ------------------------------------------------------------------ init

/// The local source address used to reach `dst` (`ip route get`).
pub(super) fn source_addr_for(dst: &str) -> Option<String> {
    let (ok, out, _) = service::run(&["ip", "-o", "route", "get", dst]).ok()?;
    if !ok {
        return None;
    }
    let mut it = out.split_whitespace();
    while let Some(w) = it.next() {
        if w == "src" {
            return it.next().map(str::to_string);
        }
    }
    None
}

pub(super) fn default_link0(cs: &ClusterState) -> Result<String> {
    if !cs.listen_ip.is_unspecified() && !cs.listen_ip.is_loopback() {
        return Ok(cs.listen_ip.to_string());
    }
    for probe in ["192.0.2.1", "2001:db8::1"] {
        if let Some(a) = source_addr_for(probe) {
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
pub(super) fn latency_class() -> LatencyClass {
    if source_addr_for("192.0.2.1").is_none() && source_addr_for("2001:db8::1").is_none() {
        LatencyClass::Local
    } else {
        LatencyClass::Lan
    }
}

/// Pin this node's own host keys in known_hosts (so the file handed to joiners lists it) and
/// make sure root has a migration key.
pub(super) fn pin_self(node: &Node, links: &[String]) -> Result<()> {
    let cs = &node.cluster;
    let keys = form::ssh_host_keys(&cs.paths);
    let lines = form::known_hosts_lines(&node.cfg.node, links, &keys);
    form::pin_known_hosts(&cs.paths, &node.cfg.node, links, &lines)?;
    form::ensure_root_key(&cs.paths)?;
    Ok(())
}
