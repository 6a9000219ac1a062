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
    /// The VMs whose disks or CD-ROM use this volume (`VM 100 (web1)`); such a volume cannot be
    /// deleted.
    #[serde(default)]
    pub used_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreate {
    /// Letters, digits, `-`, `_`, `.`, `+`; not starting with a dot; at most 200 characters.
    #[schema(
        pattern = r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,199}$",
        min_length = 1,
        max_length = 200
    )]
    pub name: String,
    #[schema(minimum = 1, maximum = 67_108_864)]
    pub size_mib: u64,
    #[serde(default)]
    pub format: DiskFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
pub struct UploadQuery {
    /// Volume name to create, e.g. `debian.iso`: letters, digits, `-`, `_`, `.`, `+`, ending in
    /// `.iso`, `.img`, `.qcow2`, `.raw` or `.vmdk`.
    #[param(
        pattern = r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.([iI][sS][oO]|[iI][mM][gG]|[qQ][cC][oO][wW]2|[rR][aA][wW]|[vV][mM][dD][kK])$",
        max_length = 200
    )]
    #[schema(
        pattern = r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.([iI][sS][oO]|[iI][mM][gG]|[qQ][cC][oO][wW]2|[rR][aA][wW]|[vV][mM][dD][kK])$",
        max_length = 200
    )]
    pub filename: String,
    /// Exact size in bytes; the upload fails (and leaves nothing) if the body differs.
    #[param(minimum = 1)]
    #[schema(minimum = 1)]
    pub size: u64,
}
