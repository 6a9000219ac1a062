//! Cluster storage pools (`drbd-gfs2`): what the operator asks for and the health each node
//! reports.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of cluster pool Keel builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ClusterPoolKind {
    /// DRBD 8.4 dual-primary between exactly two nodes, a shared VG under lvmlockd, GFS2.
    #[serde(rename = "drbd-gfs2")]
    DrbdGfs2,
}

/// `POST /api/v1/cluster/storage-pools`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterPoolCreate {
    /// Pool name: 1-30 of a-z, 0-9 and '-', starting with a letter (the DRBD resource, the VG
    /// `keel-NAME`, the GFS2 lock table `CLUSTER:NAME`, the libvirt pool).
    #[schema(max_length = 30)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ClusterPoolKind,
    /// The block device on each of the two nodes (the same name on both), e.g. `/dev/vdb` or
    /// `/dev/disk/by-id/…`.
    #[schema(max_length = 255)]
    pub device: String,
    /// Erase the devices' signatures (partition table, file system, LVM, DRBD) first; without
    /// it a device that holds any is refused. A mounted device is refused either way.
    #[serde(default)]
    pub wipe: bool,
}

/// One node's view of a cluster pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterPoolNode {
    pub node: String,
    pub device: String,
    /// DRBD connection state (`Connected`, `SyncSource`, `StandAlone`, …); none when the
    /// resource is down on the node.
    pub connection: Option<String>,
    pub role: Option<String>,
    pub peer_role: Option<String>,
    pub disk: Option<String>,
    pub peer_disk: Option<String>,
    /// Resync progress while one runs.
    pub sync_percent: Option<f64>,
    /// The GFS2 file system is mounted at the pool's path.
    pub mounted: bool,
    pub size_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// Why the node could not be asked (down, fenced, not answering).
    pub error: Option<String>,
}

/// A cluster pool and its health on each node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterPoolStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ClusterPoolKind,
    /// Where the file system is mounted on every node (the libvirt `dir` pool's path).
    pub path: String,
    /// `creating`, `ready` or `failed: …`.
    pub state: String,
    pub nodes: Vec<ClusterPoolNode>,
}
