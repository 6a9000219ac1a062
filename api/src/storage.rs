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

/// The kinds of node-local pool Keel creates (cluster pools: `cluster_storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum LocalPoolKind {
    /// A directory on this node (qcow2 or raw files; snapshots, backups, uploads).
    #[serde(rename = "dir")]
    Dir,
    /// A thin pool in one of this node's LVM volume groups: one thin LV per disk (raw),
    /// space taken as the guest writes.
    #[serde(rename = "lvm-thin")]
    LvmThin,
}

/// `POST /api/v1/nodes/{node}/storage`: a node-local pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalPoolCreate {
    /// Lower-case letters, digits and `-`, starting with a letter; at most 30 characters.
    #[schema(
        pattern = r"^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$",
        min_length = 1,
        max_length = 30
    )]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: LocalPoolKind,
    /// `dir`: an existing directory (absolute path), e.g. the mount point of a data disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096)]
    pub path: Option<String>,
    /// `lvm-thin`: the volume group, e.g. `keel` (the installer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 127)]
    pub vg: Option<String>,
    /// `lvm-thin`: the thin pool's size in MiB; or give `size_percent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 64, maximum = 1_073_741_824)]
    pub size_mib: Option<u64>,
    /// `lvm-thin`: this percentage of the volume group's free space (default 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 95)]
    pub size_percent: Option<u8>,
}

impl LocalPoolCreate {
    /// The fields each kind takes, and the ranges; the node's own checks (the directory, the
    /// volume group and its free space) come after.
    pub fn validate(&self) -> Result<(), crate::error::FieldError> {
        use crate::error::FieldError;
        let n = &self.name;
        let name_ok = !n.is_empty()
            && n.len() <= 30
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && !n.ends_with('-')
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(FieldError::new(
                "name",
                format!("{n:?} is not a pool name: 1 to 30 of a-z, 0-9 and '-', starting with a letter, not ending with '-'"),
            ));
        }
        match self.kind {
            LocalPoolKind::Dir => {
                for (f, set) in [
                    ("vg", self.vg.is_some()),
                    ("size_mib", self.size_mib.is_some()),
                    ("size_percent", self.size_percent.is_some()),
                ] {
                    if set {
                        return Err(FieldError::new(
                            f,
                            format!("{f} is for lvm-thin pools; a dir pool takes a path"),
                        ));
                    }
                }
                if self.path.as_deref().unwrap_or("").is_empty() {
                    return Err(FieldError::new(
                        "path",
                        "a dir pool needs the directory it lives in, e.g. /srv/vmdata",
                    ));
                }
            }
            LocalPoolKind::LvmThin => {
                if self.path.is_some() {
                    return Err(FieldError::new(
                        "path",
                        "path is for dir pools; an lvm-thin pool takes a volume group (vg)",
                    ));
                }
                if self.vg.as_deref().unwrap_or("").is_empty() {
                    return Err(FieldError::new(
                        "vg",
                        "an lvm-thin pool needs the volume group it lives in, e.g. keel (the installer's)",
                    ));
                }
                if self.size_mib.is_some() && self.size_percent.is_some() {
                    return Err(FieldError::new(
                        "size_percent",
                        "give the size in MiB or as a percentage of the free space, not both",
                    ));
                }
                if let Some(m) = self.size_mib {
                    if !(64..=1_073_741_824).contains(&m) {
                        return Err(FieldError::new(
                            "size_mib",
                            format!("size_mib {m} is out of range: use 64 to 1073741824"),
                        ));
                    }
                }
                if let Some(p) = self.size_percent {
                    if !(1..=95).contains(&p) {
                        return Err(FieldError::new(
                            "size_percent",
                            format!("size_percent {p} is out of range: use 1 to 95 (LVM needs room for the pool's metadata)"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod local_pool_tests {
    use super::*;

    fn thin() -> LocalPoolCreate {
        LocalPoolCreate {
            name: "fast".into(),
            kind: LocalPoolKind::LvmThin,
            path: None,
            vg: Some("keel".into()),
            size_mib: None,
            size_percent: None,
        }
    }

    #[test]
    fn each_kind_takes_its_own_fields() {
        thin().validate().unwrap();
        let dir = LocalPoolCreate {
            kind: LocalPoolKind::Dir,
            path: Some("/srv/vm".into()),
            vg: None,
            ..thin()
        };
        dir.validate().unwrap();
        let v: LocalPoolCreate = serde_json::from_str(
            r#"{"name":"fast","type":"lvm-thin","vg":"keel","size_percent":50}"#,
        )
        .unwrap();
        assert_eq!(v.kind, LocalPoolKind::LvmThin);
        for (bad, field) in [
            (
                LocalPoolCreate {
                    name: "Fast".into(),
                    ..thin()
                },
                "name",
            ),
            (
                LocalPoolCreate {
                    name: "f-".into(),
                    ..thin()
                },
                "name",
            ),
            (LocalPoolCreate { vg: None, ..thin() }, "vg"),
            (
                LocalPoolCreate {
                    path: Some("/x".into()),
                    ..thin()
                },
                "path",
            ),
            (
                LocalPoolCreate {
                    size_mib: Some(1),
                    ..thin()
                },
                "size_mib",
            ),
            (
                LocalPoolCreate {
                    size_percent: Some(99),
                    ..thin()
                },
                "size_percent",
            ),
            (
                LocalPoolCreate {
                    size_mib: Some(100),
                    size_percent: Some(5),
                    ..thin()
                },
                "size_percent",
            ),
            (
                LocalPoolCreate {
                    path: None,
                    ..dir.clone()
                },
                "path",
            ),
            (
                LocalPoolCreate {
                    vg: Some("keel".into()),
                    ..dir.clone()
                },
                "vg",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().field, field, "{bad:?}");
        }
    }
}
