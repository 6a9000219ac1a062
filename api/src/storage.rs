//! Storage pools and volumes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::vm::DiskFormat;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolInfo {
    pub name: String,
    /// libvirt pool type, e.g. `dir`, `logical`.
    pub kind: String,
    pub path: Option<String>,
    pub active: bool,
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeInfo {
    pub name: String,
    pub path: String,
    /// `qcow2`, `raw`, `iso` (by name) or what libvirt reports.
    pub format: String,
    pub capacity: u64,
    pub allocation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreate {
    pub name: String,
    pub size_mib: u64,
    #[serde(default)]
    pub format: DiskFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct UploadQuery {
    /// Volume name to create, e.g. `debian.iso`.
    pub filename: String,
    /// Exact size in bytes; the upload fails (and leaves nothing) if the body differs.
    pub size: u64,
}
