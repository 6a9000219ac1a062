//! Keel's cluster storage engines as typed models, rendered to the engines' own formats and
//! driven through [`keel_runner`] (one runner, a timeout on every command), so that each
//! workflow's unit test states the exact commands it runs, in order.
//!
//! * [`drbd`]: a DRBD 8.4 two-node resource (`.res`), with the split-brain policies and the
//!   resource-and-stonith fencing the seeds prescribe; `drbdadm-84 dump` accepts every golden.
//! * [`lvm`]: shared volume groups under lvmlockd, exclusive and shared activation, and the
//!   device filter that hides a DRBD backing disk from LVM.
//! * [`gfs2`]: `mkfs.gfs2` with DLM locking and one journal per node plus a spare, and
//!   `gfs2_jadd` when the cluster grows.
//! * [`stack`]: the Pacemaker resource chain a shared pool runs as (dlm → DRBD promotable →
//!   lvmlockd → LVM-activate → Filesystem), as CIB fragments `crm_verify` accepts.
//! * [`drbd_state`]: `/proc/drbd` parsed (connection, roles, disk states, resync progress).
//! * [`drbd_conf`]: what a node's DRBD configuration files say about each resource's safety
//!   (dual-primary allowed, peer fencing), for `keel cluster verify`.
//! * [`drbd_gfs2`]: the `drbd-gfs2` pool workflow, each node's half and the creating node's
//!   ordered steps, through a [`keel_runner::Runner`].
//! * [`iscsi`]: an open-iscsi LUN (discovery, a node record with CHAP written through stdin,
//!   login at boot, the stable `by-path` device); [`lio`]: an LIO target exporting one LUN.
//! * [`iscsi_gfs2`]: the `iscsi-gfs2` pool workflow: every node logs in (all or none), then a
//!   shared VG, GFS2 and the Pacemaker chain without DRBD.
//! * [`split_brain`]: a `drbd-gfs2` pool's split brain, detected by DRBD's handler and
//!   resolved only by an explicit choice of the side whose changes are discarded.
//! * [`thin`]: node-local LVM thin pools (`lvm-thin`): a tagged thin-pool LV in a local VG,
//!   one thin LV per VM disk, `lvs`/`vgs` parsed, refusals before any command.
//! * [`device`]: the safety probe every pool creation starts with: a missing, small, mounted
//!   or signed device (partition table, file system, LVM) is refused unless the operator asks
//!   for a wipe.
//!
//! Nothing here decides cluster membership, replication or locking: DRBD, DLM, lvmlockd and
//! Pacemaker do. This crate describes what Keel asks of them and checks the answers.

pub mod device;
pub mod drbd;
pub mod drbd_conf;
pub mod drbd_gfs2;
pub mod drbd_state;
pub mod gfs2;
pub mod iscsi;
pub mod iscsi_gfs2;
pub mod lio;
pub mod lvm;
pub mod split_brain;
pub mod stack;
pub mod thin;

mod name;

pub use name::{check_name, NameError};

/// Why a storage model or workflow refused. Every message names the object and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsafe(String),
    #[error(transparent)]
    Run(#[from] keel_runner::RunError),
    #[error("{what}: cannot read the output of {cmd}: {why}")]
    Parse {
        what: String,
        cmd: String,
        why: String,
    },
}
