//! The QEMU guest agent (docs/guest-agent.md): whether a VM's agent answers and what it
//! reports (host name, OS, addresses), a clean shutdown through it, and file systems frozen
//! around backups.
//!
//! The state is decided from libvirt's live XML before the agent is asked anything: no
//! channel, or a channel the guest has not opened (`state='disconnected'`), answers at once
//! without an agent call; only a connected channel is queried, bounded by the short agent
//! timeout of [`crate::hv::libvirt`]. A silent agent therefore never holds a request long.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use keel_api::agent::{AgentState, GuestAgentInfo, GuestOs};
use keel_api::vm::VmState;
use keel_api::ErrorBody;

use crate::error::{Error, Result};
use crate::http::{blocking, check_node, ApiResult, Path};
use crate::hv::AgentFacts;
use crate::tasks::TaskHandle;
use crate::xml::Element;
use crate::{vms, Node};

/// The virtio-serial port name of the QEMU guest agent.
pub const CHANNEL: &str = "org.qemu.guest_agent.0";

/// The agent channel of a domain, from its XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Absent,
    /// The running guest has not opened the port (no agent started in it).
    Disconnected,
    /// Opened by the guest, or a definition that does not say (inactive XML).
    Present,
}

/// The agent channel in a domain XML (live XML carries libvirt's `state` of the port).
pub fn channel(xml: &str) -> Result<Channel> {
    let dom = Element::parse(xml).map_err(|e| Error::Internal(e.to_string()))?;
    let target = dom
        .find("devices")
        .into_iter()
        .flat_map(|d| d.find_all("channel"))
        .filter_map(|c| c.find("target"))
        .find(|t| t.get_attr("name") == Some(CHANNEL));
    Ok(match target {
        None => Channel::Absent,
        Some(t) if t.get_attr("state") == Some("disconnected") => Channel::Disconnected,
        Some(_) => Channel::Present,
    })
}

/// The API's answer from what the agent reported.
pub fn info_from_facts(vmid: u32, f: AgentFacts) -> GuestAgentInfo {
    let get = |k: &str| {
        f.os.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let os = GuestOs {
        id: get("id"),
        name: get("name"),
        pretty_name: get("pretty-name"),
        version: get("version"),
        version_id: get("version-id"),
        kernel_release: get("kernel-release"),
        kernel_version: get("kernel-version"),
        machine: get("machine"),
    };
    GuestAgentInfo {
        vmid,
        state: AgentState::Ok,
        message: "the guest agent answers".into(),
        hostname: f.hostname.filter(|h| !h.is_empty()),
        os: (os != GuestOs::default()).then_some(os),
        interfaces: f.interfaces,
    }
}

fn without(vmid: u32, state: AgentState, message: String) -> GuestAgentInfo {
    GuestAgentInfo {
        vmid,
        state,
        message,
        hostname: None,
        os: None,
        interfaces: Vec::new(),
    }
}

/// Whether the running domain `name`'s agent can be asked; `Err(info)`: the answer when not.
fn reachable(node: &Node, vmid: u32, name: &str, state: VmState) -> Result<Option<GuestAgentInfo>> {
    if state != VmState::Running {
        let ch = channel(&node.hv.domain_xml(name, true)?)?;
        return Ok(Some(if ch == Channel::Absent {
            no_channel(vmid)
        } else {
            without(
                vmid,
                AgentState::NotRunning,
                format!(
                    "VM {vmid} is {}: its guest agent answers only while it runs",
                    state.as_str()
                ),
            )
        }));
    }
    Ok(match channel(&node.hv.domain_xml(name, false)?)? {
        Channel::Absent => Some(no_channel(vmid)),
        Channel::Disconnected => Some(without(
            vmid,
            AgentState::NotAnswering,
            format!("VM {vmid}'s guest has not opened the agent channel: install and start qemu-guest-agent in the guest"),
        )),
        Channel::Present => None,
    })
}

fn no_channel(vmid: u32) -> GuestAgentInfo {
    without(
        vmid,
        AgentState::NoChannel,
        format!("VM {vmid} has no guest agent channel: set guest_agent to true (takes effect at the next boot) and install qemu-guest-agent in the guest"),
    )
}

/// `GET …/vms/{vmid}/agent`.
pub fn info(node: &Node, vmid: u32) -> Result<GuestAgentInfo> {
    let row = vms::find(node, vmid)?;
    if let Some(i) = reachable(node, vmid, &row.name, row.state)? {
        return Ok(i);
    }
    match node.hv.agent_facts(&row.name) {
        Ok(f) => Ok(info_from_facts(vmid, f)),
        Err(crate::hv::HvError::NotFound(m)) => Err(Error::NotFound(m)),
        Err(e) => Ok(without(
            vmid,
            AgentState::NotAnswering,
            format!("VM {vmid}'s guest agent does not answer: {e}"),
        )),
    }
}

/// Shut the running domain down through its agent when it answers. Returns whether the
/// agent took the request; otherwise the task log says why ACPI is used instead.
pub fn try_shutdown(node: &Node, vmid: u32, name: &str, task: &TaskHandle) -> Result<bool> {
    if let Some(i) = reachable(node, vmid, name, VmState::Running)? {
        task.log(format!(
            "shutdown through the ACPI power button ({})",
            i.message
        ));
        return Ok(false);
    }
    match node.hv.agent_shutdown(name) {
        Ok(()) => {
            task.log("shutdown through the guest agent");
            Ok(true)
        }
        Err(e) => {
            task.log(format!(
                "the guest agent did not take the shutdown ({e}): ACPI power button instead"
            ));
            Ok(false)
        }
    }
}

/// File systems frozen through the guest agent, thawed when dropped (every path out of the
/// caller's scope, errors included). See [`freeze`].
pub struct Frozen<'a> {
    node: &'a Node,
    name: String,
    task: &'a TaskHandle,
    /// Whether a freeze was asked of the agent (then a thaw is always sent).
    asked: bool,
}

impl Frozen<'_> {
    /// Thaw now (the same as dropping it), so the log shows the thaw where it happens.
    pub fn thaw(mut self) {
        self.thaw_once();
    }

    fn thaw_once(&mut self) {
        if !std::mem::take(&mut self.asked) {
            return;
        }
        match self.node.hv.fs_thaw(&self.name) {
            Ok(n) => self.task.log(format!("filesystems thawed: {n}")),
            Err(e) => self.task.log(format!(
                "warning: the guest agent did not thaw the file systems ({e}); they thaw by themselves when the agent restarts, or run `virsh domfsthaw {}`",
                self.name
            )),
        }
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.thaw_once();
    }
}

/// Freeze the running domain's file systems when its agent answers, and log what the copy
/// will be: "filesystems frozen: N", or crash-consistent with the reason.
pub fn freeze<'a>(
    node: &'a Node,
    vmid: u32,
    name: &str,
    state: VmState,
    task: &'a TaskHandle,
) -> Frozen<'a> {
    let mut g = Frozen {
        node,
        name: name.to_string(),
        task,
        asked: false,
    };
    match reachable(node, vmid, name, state) {
        Ok(Some(i)) if i.state == AgentState::NoChannel => {
            task.log("no guest agent: crash-consistent");
            return g;
        }
        Ok(Some(i)) => {
            task.log(format!(
                "guest agent not answering: crash-consistent ({})",
                i.message
            ));
            return g;
        }
        Err(e) => {
            task.log(format!("guest agent unknown ({e}): crash-consistent"));
            return g;
        }
        Ok(None) => {}
    }
    g.asked = true;
    match node.hv.fs_freeze(name) {
        Ok(n) => task.log(format!("filesystems frozen: {n}")),
        Err(e) => {
            // a freeze that failed half-way leaves some frozen: the guard still thaws
            task.log(format!(
                "guest agent did not freeze the file systems ({e}): crash-consistent"
            ));
        }
    }
    g
}

// ------------------------------------------------------------------ HTTP

pub fn routes() -> Router<Arc<Node>> {
    Router::new().route("/api/v1/nodes/{node}/vms/{vmid}/agent", get(agent_info))
}

/// The VM's guest agent: `ok` with the host name, OS and interfaces it reports, or why not
/// (`no-channel`, `not-running`, `not-answering`). Answers within a few seconds even when the
/// agent is silent.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}/agent", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path)),
    responses((status = 200, body = GuestAgentInfo), (status = 404, body = ErrorBody)))]
pub async fn agent_info(
    State(node): State<Arc<Node>>,
    Path((name, vmid)): Path<(String, u32)>,
) -> ApiResult<Json<GuestAgentInfo>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || info(&node, vmid)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::hv::Hypervisor;
    use crate::tests_support::fake_node;
    use keel_api::agent::{GuestAddress, GuestInterface};
    use keel_api::vm::VmSpec;

    fn spec(vmid: u32, name: &str, agent: bool) -> VmSpec {
        serde_json::from_value(
            serde_json::json!({"vmid": vmid, "name": name, "guest_agent": agent}),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn facts() -> AgentFacts {
        AgentFacts {
            hostname: Some("keel-live".into()),
            os: vec![
                ("id".into(), "keel-live".into()),
                ("pretty-name".into(), "Keel live guest 1 (busybox)".into()),
                ("kernel-release".into(), "6.1.0".into()),
            ],
            interfaces: vec![GuestInterface {
                name: "eth0".into(),
                mac: Some("52:54:00:00:00:01".into()),
                addresses: vec![GuestAddress {
                    family: "ipv4".into(),
                    address: "192.0.2.15".into(),
                    prefix: 24,
                }],
            }],
        }
    }

    #[test]
    fn channel_states_from_the_xml() -> Result<()> {
        let x = |t: &str| {
            format!("<domain><devices><channel type='unix'>{t}</channel></devices></domain>")
        };
        assert_eq!(channel("<domain><devices/></domain>")?, Channel::Absent);
        assert_eq!(
            channel(&x("<target type='virtio' name='org.qemu.spice.0'/>"))?,
            Channel::Absent
        );
        assert_eq!(
            channel(&x(
                "<target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/>"
            ))?,
            Channel::Disconnected
        );
        assert_eq!(
            channel(&x(
                "<target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>"
            ))?,
            Channel::Present
        );
        assert_eq!(
            channel(&x("<target type='virtio' name='org.qemu.guest_agent.0'/>"))?,
            Channel::Present
        );
        Ok(())
    }

    #[test]
    fn os_fields_map_and_empty_ones_drop() {
        let i = info_from_facts(7, facts());
        assert_eq!(i.state, AgentState::Ok);
        assert_eq!(i.hostname.as_deref(), Some("keel-live"));
        let os = i.os.unwrap_or_default();
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Keel live guest 1 (busybox)")
        );
        assert_eq!(os.kernel_release.as_deref(), Some("6.1.0"));
        assert_eq!(os.machine, None);
        let bare = info_from_facts(7, AgentFacts::default());
        assert_eq!((bare.os, bare.hostname), (None, None));
    }

    /// The four states; an agent is only asked when the VM runs with the channel.
    #[test]
    fn states_and_what_is_asked() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv.clone())?;
        let t = node.tasks.begin("x", "1", "root", false)?;
        for (vmid, name, agent) in [(100, "with", true), (101, "without", false)] {
            let mut s = spec(vmid, name, agent);
            vms::check_against_host(&node, &mut s, None)?;
            vms::create(&node, s, false, &t)?;
        }
        assert_eq!(info(&node, 100)?.state, AgentState::NotRunning);
        assert_eq!(info(&node, 101)?.state, AgentState::NoChannel);
        hv.power("with", crate::hv::Power::Start)?;
        hv.power("without", crate::hv::Power::Start)?;
        let i = info(&node, 101)?;
        assert_eq!(i.state, AgentState::NoChannel);
        assert!(i.message.contains("guest_agent"), "{}", i.message);
        // channel, agent silent
        let i = info(&node, 100)?;
        assert_eq!(i.state, AgentState::NotAnswering, "{i:?}");
        hv.set_agent("with", Some((facts(), 1)));
        let i = info(&node, 100)?;
        assert_eq!(i.state, AgentState::Ok);
        assert_eq!(i.interfaces[0].addresses[0].address, "192.0.2.15");
        // the VM without a channel never reaches the agent
        assert!(!hv.calls().iter().any(|c| c == "agent-info without"));
        assert!(hv.calls().iter().any(|c| c == "agent-info with"));
        assert!(matches!(info(&node, 999), Err(Error::NotFound(_))));
        Ok(())
    }

    /// Frozen while the guard lives, thawed when it goes (also on an error path); nothing
    /// asked of a VM without an agent; a failed freeze still thaws.
    #[test]
    fn freeze_thaws_on_every_path() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv.clone())?;
        let t = node.tasks.begin("x", "1", "root", false)?;
        let mut s = spec(100, "g", true);
        vms::check_against_host(&node, &mut s, None)?;
        vms::create(&node, s, true, &t)?;
        hv.set_agent("g", Some((facts(), 2)));
        let agent_calls = |hv: &FakeHv| -> Vec<String> {
            hv.calls()
                .into_iter()
                .filter(|c| c.starts_with("fs"))
                .collect()
        };
        let failing = || -> Result<()> {
            let _f = freeze(&node, 100, "g", VmState::Running, &t);
            Err(Error::Conflict("the job failed".into()))
        };
        assert!(failing().is_err());
        assert_eq!(agent_calls(&hv), ["fsfreeze g", "fsthaw g"]);
        let f = freeze(&node, 100, "g", VmState::Running, &t);
        f.thaw();
        assert_eq!(agent_calls(&hv).len(), 4);
        // agent gone: the freeze fails, a thaw is still sent
        hv.set_agent("g", None);
        drop(freeze(&node, 100, "g", VmState::Running, &t));
        assert_eq!(agent_calls(&hv)[4..], ["fsfreeze g", "fsthaw g"]);
        // a paused VM's agent cannot answer: nothing asked
        drop(freeze(&node, 100, "g", VmState::Paused, &t));
        assert_eq!(agent_calls(&hv).len(), 6);
        let log: Vec<String> = node
            .tasks
            .log(&t.upid, 0, 100)?
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert!(log.iter().any(|l| l == "filesystems frozen: 2"), "{log:?}");
        assert!(log.iter().any(|l| l == "filesystems thawed: 2"), "{log:?}");
        assert!(
            log.iter().any(|l| l.contains("crash-consistent")),
            "{log:?}"
        );
        Ok(())
    }

    #[test]
    fn shutdown_prefers_the_agent() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv.clone())?;
        let t = node.tasks.begin("x", "1", "root", false)?;
        let mut s = spec(100, "g", true);
        vms::check_against_host(&node, &mut s, None)?;
        vms::create(&node, s, true, &t)?;
        assert!(!try_shutdown(&node, 100, "g", &t)?);
        hv.set_agent("g", Some((facts(), 0)));
        assert!(try_shutdown(&node, 100, "g", &t)?);
        assert_eq!(vms::find(&node, 100)?.state, VmState::Stopped);
        Ok(())
    }
}
