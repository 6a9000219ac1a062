//! Keel's cluster layer. Two halves that meet only through typed values:
//!
//! * formation — typed models rendered to corosync.conf and CIB XML, the cluster CA, the
//!   service manager that starts corosync/Pacemaker, and the init/join/remove procedures that
//!   hostd runs as tasks;
//! * the replicated config store — key/value state totally ordered by corosync CPG, persisted
//!   in SQLite on every node, served to hostd over a local Unix socket by `keel-clusterd`.
//!
//! Consensus, membership, quorum and fencing are corosync's and Pacemaker's; nothing here
//! re-implements them.

// --- formation (corosync.conf, CIB, CA, services, init/join) ---
pub mod ca;
pub mod corosync_conf;
pub mod form;
pub mod service;

// --- CIB fragments, fence devices, cluster status parsing ---
pub mod cib;
pub mod commands;
pub mod crm;
pub mod fence;
pub mod ha;
pub mod qdevice;
pub mod sbd;
pub mod vip;

// --- replicated config store ---
pub mod store;
