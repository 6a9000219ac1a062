//! Backups of VMs to backup targets (docs/backups.md).
//!
//! - [`targets`]: where backups go (a `dir` target: a directory on this node; an `sftp`
//!   target: a directory on a remote host over SSH; an `nfs` target), cluster-wide in the config
//!   store (a standalone node's in `hostd.db`).
//! - [`nfs`]: `nfs` targets: the export mounted by hostd where a node uses it, then a
//!   `dir` target at its mount point.
//! - [`sftp`]: the SSH/SFTP client of `sftp` targets (libssh2): the host key pinned, uploads
//!   of complete backups (manifest last, renamed into place), downloads for verify/restore.
//! - [`engine`]: the commands (virsh's backup/checkpoint verbs, qemu-img) through
//!   `keel-runner`; the `virt` crate has no binding for libvirt's backup API.
//! - [`store`]: the on-disk format: `<target>/<vmid>/<id>/manifest.json` plus one file per
//!   disk, written into `.partial-<id>` and renamed once complete and fsync'ed.
//! - [`merge`]: retention's merge of a kept incremental onto its nearest kept ancestor (or
//!   into a full backup), resumable after a crash.
//! - [`run`]: backup now (live through libvirt's backup job with a checkpoint, or a stopped
//!   VM's copy), verify and restore.

pub mod engine;
pub mod jobs;
pub mod merge;
pub mod nfs;
pub mod prune;
pub mod routes;
pub mod run;
pub mod schedule;
pub mod sftp;
pub mod store;
pub mod targets;

pub use routes::routes;
