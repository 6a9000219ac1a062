//! Discovered hardware (what the install program finds on the machine) and the choice of the
//! target disk.

use serde::{Deserialize, Serialize};

use crate::answer::Disk;
use crate::util::glob_match;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskInfo {
    /// `/dev/sda`
    pub path: String,
    pub size_bytes: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub serial: String,
    /// Number of partitions already on the disk.
    #[serde(default)]
    pub partitions: u32,
}

impl std::fmt::Display for DiskInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, model `{}`, serial `{}`, {} partition(s))",
            self.path,
            human_size(self.size_bytes),
            self.model,
            self.serial,
            self.partitions
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NicInfo {
    /// Kernel name (`enp1s0`).
    pub name: String,
    pub mac: String,
}

/// The hardware an answer is planned against.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    #[serde(default)]
    pub nics: Vec<NicInfo>,
    #[serde(default)]
    pub disks: Vec<DiskInfo>,
}

pub const GIB: u64 = 1 << 30;

pub fn human_size(bytes: u64) -> String {
    if bytes >= GIB {
        let tenths = bytes * 10 / GIB;
        format!("{}.{} GiB", tenths / 10, tenths % 10)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    #[error("no disk matches the filter ({filter}); disks found: {}", list(.candidates))]
    NoMatch {
        filter: String,
        candidates: Vec<DiskInfo>,
    },
    #[error("{} disks match the filter ({filter}): {}; narrow the filter (model, serial or path) so that exactly one matches", .matched.len(), list(.matched))]
    Ambiguous {
        filter: String,
        matched: Vec<DiskInfo>,
    },
    #[error(
        "{disk} holds partitions; set disk.allow_wipe = true to erase it, or choose another disk"
    )]
    HasPartitions { disk: DiskInfo },
}

fn list(d: &[DiskInfo]) -> String {
    if d.is_empty() {
        "none".into()
    } else {
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Describe a filter in words, for messages.
pub fn describe_filter(disk: &Disk) -> String {
    let f = &disk.filter;
    let mut parts = Vec::new();
    if let Some(n) = f.min_size_gib {
        parts.push(format!("size >= {n} GiB"));
    }
    if let Some(n) = f.max_size_gib {
        parts.push(format!("size <= {n} GiB"));
    }
    if let Some(m) = &f.model {
        parts.push(format!("model `{m}`"));
    }
    if let Some(s) = &f.serial {
        parts.push(format!("serial `{s}`"));
    }
    if let Some(p) = &f.path {
        parts.push(format!("path `{p}`"));
    }
    if parts.is_empty() {
        "any disk".into()
    } else {
        parts.join(", ")
    }
}

pub fn disk_matches(disk: &Disk, d: &DiskInfo) -> bool {
    let f = &disk.filter;
    f.min_size_gib.is_none_or(|n| d.size_bytes >= n * GIB)
        && f.max_size_gib.is_none_or(|n| d.size_bytes <= n * GIB)
        && f.model.as_deref().is_none_or(|g| glob_match(g, &d.model))
        && f.serial.as_deref().is_none_or(|g| glob_match(g, &d.serial))
        && f.path.as_deref().is_none_or(|g| glob_match(g, &d.path))
}

/// Choose the one disk the filter matches. Zero or several matches is an error listing the
/// candidates; a disk that holds partitions is refused unless `allow_wipe` is set.
pub fn select_disk(disk: &Disk, disks: &[DiskInfo]) -> Result<DiskInfo, DiskError> {
    let matched: Vec<DiskInfo> = disks
        .iter()
        .filter(|d| disk_matches(disk, d))
        .cloned()
        .collect();
    match matched.as_slice() {
        [] => Err(DiskError::NoMatch {
            filter: describe_filter(disk),
            candidates: disks.to_vec(),
        }),
        [one] => {
            if one.partitions > 0 && !disk.allow_wipe {
                Err(DiskError::HasPartitions { disk: one.clone() })
            } else {
                Ok(one.clone())
            }
        }
        _ => Err(DiskError::Ambiguous {
            filter: describe_filter(disk),
            matched,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::answer::{DiskFilter, Layout};

    fn d(path: &str, gib: u64, model: &str, serial: &str, parts: u32) -> DiskInfo {
        DiskInfo {
            path: path.into(),
            size_bytes: gib * GIB,
            model: model.into(),
            serial: serial.into(),
            partitions: parts,
        }
    }

    fn disk(filter: DiskFilter, allow_wipe: bool) -> Disk {
        Disk {
            filter,
            allow_wipe,
            layout: Layout::default(),
        }
    }

    #[test]
    fn selects_exactly_one() {
        let disks = [
            d("/dev/sda", 100, "QEMU HARDDISK", "A1", 0),
            d("/dev/sdb", 500, "QEMU HARDDISK", "B2", 2),
        ];
        let f = DiskFilter {
            max_size_gib: Some(200),
            ..Default::default()
        };
        assert_eq!(
            select_disk(&disk(f, false), &disks).unwrap().path,
            "/dev/sda"
        );
        let f = DiskFilter {
            serial: Some("B*".into()),
            ..Default::default()
        };
        assert!(matches!(
            select_disk(&disk(f.clone(), false), &disks),
            Err(DiskError::HasPartitions { .. })
        ));
        assert_eq!(
            select_disk(&disk(f, true), &disks).unwrap().path,
            "/dev/sdb"
        );
        let e = select_disk(&disk(DiskFilter::default(), false), &disks).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("2 disks match the filter (any disk)"),
            "{e}"
        );
        let f = DiskFilter {
            model: Some("Samsung*".into()),
            ..Default::default()
        };
        let e = select_disk(&disk(f, false), &disks).unwrap_err();
        assert!(
            e.to_string().contains(
                "/dev/sdb (500.0 GiB, model `QEMU HARDDISK`, serial `B2`, 2 partition(s))"
            ),
            "{e}"
        );
    }
}
