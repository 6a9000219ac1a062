//! Node facts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub node: String,
    /// `kvm` or `tcg`: what this host's guests run on.
    pub accel: String,
    /// Why that accelerator was chosen (probe result or config override).
    pub accel_reason: String,
    pub cpus: u32,
    pub memory_total: u64,
    pub memory_free: u64,
    pub uptime_s: u64,
    pub loadavg: [f64; 3],
    pub libvirt_version: String,
    pub keel_version: String,
    pub vms_running: u32,
    pub vms_total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// This node's name (a cheap way for clients to learn it).
    pub node: String,
}
