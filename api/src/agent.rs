//! The QEMU guest agent as the API reports it: whether a VM's agent answers, and what it says
//! about the guest (host name, OS, addresses).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether Keel can talk to a VM's guest agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    /// The VM has no guest agent channel (`guest_agent: false`).
    NoChannel,
    /// The VM has the channel but is not running.
    NotRunning,
    /// The channel exists but nothing in the guest answers on it (agent not installed, not
    /// started, or hung).
    NotAnswering,
    /// The agent answered.
    Ok,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::NoChannel => "no-channel",
            AgentState::NotRunning => "not-running",
            AgentState::NotAnswering => "not-answering",
            AgentState::Ok => "ok",
        }
    }
}

/// What the guest's operating system says it is (`guest-get-osinfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GuestOs {
    /// e.g. `debian` (os-release `ID`).
    pub id: Option<String>,
    pub name: Option<String>,
    /// e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub pretty_name: Option<String>,
    pub version: Option<String>,
    pub version_id: Option<String>,
    pub kernel_release: Option<String>,
    pub kernel_version: Option<String>,
    /// e.g. `x86_64`.
    pub machine: Option<String>,
}

/// One IP address of a guest interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GuestAddress {
    /// `ipv4` or `ipv6`.
    pub family: String,
    pub address: String,
    pub prefix: u32,
}

/// One network interface as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GuestInterface {
    /// The guest's name for it, e.g. `eth0`.
    pub name: String,
    pub mac: Option<String>,
    pub addresses: Vec<GuestAddress>,
}

/// A VM's guest agent: its state and, when it answers, what it reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GuestAgentInfo {
    pub vmid: u32,
    pub state: AgentState,
    /// The state in words, with what to do about it.
    pub message: String,
    pub hostname: Option<String>,
    pub os: Option<GuestOs>,
    #[serde(default)]
    pub interfaces: Vec<GuestInterface>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_kebab_case_on_the_wire() {
        for s in [
            AgentState::NoChannel,
            AgentState::NotRunning,
            AgentState::NotAnswering,
            AgentState::Ok,
        ] {
            assert_eq!(
                serde_json::to_string(&s).ok(),
                Some(format!("\"{}\"", s.as_str()))
            );
        }
    }
}
