//! Keel's wire types: what crosses the API between hostd, the `keel` CLI and the web UI.
//!
//! Owns the shapes and their validation (bad input becomes a [`FieldError`] naming the field).
//! Must not depend on anything heavy: no libvirt, no HTTP stack, no database.

pub mod access;
pub mod agent;
pub mod auth;
pub mod backup;
pub mod clone;
pub mod cloudinit;
pub mod cluster;
pub mod cluster_storage;
pub mod error;
pub mod ha;
pub mod hostnet;
pub mod metrics;
pub mod migration;
pub mod network;
pub mod node;
pub mod password;
pub mod snapshot;
pub mod sshkey;
pub mod storage;
pub mod task;
pub mod time;
pub mod verify;
pub mod vm;

pub use error::{ErrorBody, ErrorDetail, FieldError};
