//! Cluster storage pools (`drbd-gfs2`, `iscsi-gfs2`): what the operator asks for and the
//! health each node reports.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of cluster pool Keel builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ClusterPoolKind {
    /// DRBD 8.4 dual-primary between exactly two nodes, a shared VG under lvmlockd, GFS2.
    #[serde(rename = "drbd-gfs2")]
    DrbdGfs2,
    /// One LUN of an iSCSI target logged in on every node (two or more), a shared VG under
    /// lvmlockd, GFS2.
    #[serde(rename = "iscsi-gfs2")]
    IscsiGfs2,
    /// One LUN of an iSCSI target logged in on every node (two or more), a shared VG under
    /// lvmlockd whose LVs are the VM disks (raw), each active on one node at a time.
    #[serde(rename = "iscsi-lvm")]
    IscsiLvm,
}

impl ClusterPoolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterPoolKind::DrbdGfs2 => "drbd-gfs2",
            ClusterPoolKind::IscsiGfs2 => "iscsi-gfs2",
            ClusterPoolKind::IscsiLvm => "iscsi-lvm",
        }
    }
    /// The pool lives on an iSCSI LUN.
    pub fn is_iscsi(self) -> bool {
        matches!(self, ClusterPoolKind::IscsiGfs2 | ClusterPoolKind::IscsiLvm)
    }
}

/// The LUN of an `iscsi-gfs2` pool and the CHAP credentials every node logs in with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IscsiLunSpec {
    /// The target's portal: an IPv4 address, optionally with `:PORT` (default 3260).
    #[schema(max_length = 64)]
    pub portal: String,
    /// The target's IQN, e.g. `iqn.2024-01.com.example:storage`.
    #[schema(max_length = 223)]
    pub target: String,
    /// The LUN number (default 0).
    #[serde(default)]
    pub lun: u32,
    /// The CHAP user name the target's ACLs expect.
    #[schema(max_length = 255)]
    pub chap_user: String,
    /// The CHAP secret (12-255 characters). Write-only: never stored in the config store,
    /// shown, or logged; each node keeps it in its 0600 open-iscsi record.
    #[schema(max_length = 255)]
    pub chap_secret: String,
}

impl std::fmt::Debug for IscsiLunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IscsiLunSpec")
            .field("portal", &self.portal)
            .field("target", &self.target)
            .field("lun", &self.lun)
            .field("chap_user", &self.chap_user)
            .finish()
    }
}

/// Where an `iscsi-gfs2` pool's LUN is (without the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IscsiLunInfo {
    /// `ADDRESS:PORT`.
    pub portal: String,
    pub target: String,
    pub lun: u32,
    pub chap_user: String,
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
    /// `drbd-gfs2` (required there, refused otherwise): the block device on each of the two
    /// nodes (the same name on both), e.g. `/dev/vdb` or `/dev/disk/by-id/…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 255)]
    pub device: Option<String>,
    /// `iscsi-gfs2` and `iscsi-lvm` (required there, refused otherwise): the LUN every node
    /// logs in to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<IscsiLunSpec>,
    /// Erase the devices' (or the LUN's) signatures (partition table, file system, LVM, DRBD)
    /// first; without it a device that holds any is refused. A mounted device is refused
    /// either way.
    #[serde(default)]
    pub wipe: bool,
}

/// `POST /api/v1/cluster/storage-pools/{name}/resolve-split-brain`: resolve a `drbd-gfs2`
/// pool's split brain by discarding one node's changes since the split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitBrainResolve {
    /// The node whose changes since the split are thrown away; the other node's data is kept
    /// and copied over.
    #[schema(max_length = 64)]
    pub discard: String,
}

/// `POST /api/v1/cluster/storage-pools/{name}/extend`: an `iscsi-gfs2` or `iscsi-lvm` pool
/// reaches nodes that joined the cluster after it was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterPoolExtend {
    /// The members to add; empty or absent: every member the pool does not reach yet.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub nodes: Vec<String>,
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
    /// `drbd-gfs2`: DRBD's split-brain handler ran on this node: both sides changed while
    /// apart and DRBD refused to choose. Resolve with `POST …/{name}/resolve-split-brain`.
    #[serde(default)]
    pub split_brain: bool,
    /// `iscsi-gfs2`: whether the node has a session with the LUN's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_in: Option<bool>,
    /// `iscsi-lvm`: whether the node joined the VG's lockspace (it can then activate VM disks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockspace: Option<bool>,
    /// The GFS2 file system is mounted at the pool's path (always false for `iscsi-lvm`).
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
    /// Where the file system is mounted on every node (the libvirt `dir` pool's path); for
    /// `iscsi-lvm`, the VG's directory `/dev/keel-NAME` (its LVs, on the node that has them
    /// active).
    pub path: String,
    /// `creating`, `ready` or `failed: …`.
    pub state: String,
    /// `iscsi-gfs2`: the LUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<IscsiLunInfo>,
    /// What the operator should know about the pool and the cluster, e.g. members the pool
    /// does not reach and what to do about it.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Cluster members the pool does not reach (they joined after it was made). An iSCSI
    /// pool extends to them with `POST …/{name}/extend`; a `drbd-gfs2` pool never does.
    #[serde(default)]
    pub not_on: Vec<String>,
    pub nodes: Vec<ClusterPoolNode>,
}
