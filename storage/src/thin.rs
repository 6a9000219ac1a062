//! Node-local LVM thin pools (`lvm-thin`): a thin-pool LV in a node's own volume group (the
//! installer's `keel` VG, or any local VG), and one thin LV per VM disk, allocated as the guest
//! writes. What Proxmox calls `local-lvm`.
//!
//! LVM is the only record: a Keel pool is a thin-pool LV carrying the tag [`POOL_TAG`], its
//! volumes are the thin LVs whose `pool_lv` is that pool. `lvs` reports both; nothing else
//! keeps a copy that could drift.
//!
//! A thin pool that runs out of data or metadata space stalls every LV on it, so new volumes
//! are refused once either is [`FULL_PERCENT`] used, with what to do, and the usage is part of
//! every pool listing.
use std::time::Duration;

use keel_runner::Cmd;
use serde::Deserialize;

use crate::StorageError;

const T: Duration = Duration::from_secs(60);

/// The tag that makes a thin-pool LV a Keel pool.
pub const POOL_TAG: &str = "keel_pool";

/// At this data or metadata usage (percent) a pool takes no new volumes.
pub const FULL_PERCENT: f64 = 90.0;

/// Smallest thin pool Keel creates (LVM's own minimum is far lower; below this a pool holds
/// nothing useful).
pub const MIN_POOL_BYTES: u64 = 64 << 20;

/// How big a new thin pool is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PoolSize {
    Bytes(u64),
    /// This percentage of the VG's free space (1–95: LVM needs room for the pool's metadata
    /// and its spare).
    PercentFree(u8),
}

/// One row of `lvs`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Lv {
    pub vg_name: String,
    pub lv_name: String,
    pub lv_attr: String,
    #[serde(deserialize_with = "de_u64")]
    pub lv_size: u64,
    #[serde(default)]
    pub pool_lv: String,
    #[serde(default, deserialize_with = "de_percent")]
    pub data_percent: Option<f64>,
    #[serde(default, deserialize_with = "de_percent")]
    pub metadata_percent: Option<f64>,
    #[serde(default)]
    pub lv_tags: String,
}

impl Lv {
    pub fn is_thin_pool(&self) -> bool {
        self.lv_attr.starts_with('t')
    }
    pub fn is_thin_volume(&self) -> bool {
        self.lv_attr.starts_with('V')
    }
    pub fn is_keel_pool(&self) -> bool {
        self.is_thin_pool() && self.lv_tags.split(',').any(|t| t == POOL_TAG)
    }
    /// Active on this node (the device node exists).
    pub fn active(&self) -> bool {
        self.lv_attr.chars().nth(4) == Some('a')
    }
    /// Open by a process (a running VM's QEMU).
    pub fn open(&self) -> bool {
        self.lv_attr.chars().nth(5) == Some('o')
    }
    /// The device path of an LV.
    pub fn path(&self) -> String {
        format!("/dev/{}/{}", self.vg_name, self.lv_name)
    }
    /// Bytes the guest has written (a thin LV) or the pool has handed out (a pool).
    pub fn used_bytes(&self) -> u64 {
        let p = self.data_percent.unwrap_or(0.0).clamp(0.0, 100.0);
        (self.lv_size as f64 * p / 100.0) as u64
    }
}

/// One row of `vgs`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Vg {
    pub vg_name: String,
    #[serde(deserialize_with = "de_u64")]
    pub vg_size: u64,
    #[serde(deserialize_with = "de_u64")]
    pub vg_free: u64,
    /// `dlm` or `sanlock` for a shared VG (a cluster pool's), empty for a local one.
    #[serde(default)]
    pub vg_lock_type: String,
    /// Comma-separated (`keel_volumes` on an `iscsi-lvm` pool's VG).
    #[serde(default)]
    pub vg_tags: String,
}

impl Vg {
    /// The shared VG of an `iscsi-lvm` pool (tagged [`crate::lvm::VOLUMES_TAG`]).
    pub fn is_volume_pool(&self) -> bool {
        !self.vg_lock_type.is_empty()
            && self
                .vg_tags
                .split(',')
                .any(|t| t == crate::lvm::VOLUMES_TAG)
    }
    /// The Keel pool name of such a VG (`keel-NAME`).
    pub fn pool_name(&self) -> Option<&str> {
        self.vg_name.strip_prefix("keel-")
    }
}

fn de_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(serde::de::Error::custom)
}

/// LVM prints an empty string where a percentage does not apply (an inactive LV).
fn de_percent<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let s = String::deserialize(d)?;
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

#[derive(Deserialize)]
struct Report<T> {
    report: Vec<T>,
}
#[derive(Deserialize)]
struct LvPart {
    #[serde(default)]
    lv: Vec<Lv>,
}
#[derive(Deserialize)]
struct VgPart {
    #[serde(default)]
    vg: Vec<Vg>,
}

/// Every LV of every VG this node sees, as JSON with byte sizes.
pub fn lvs() -> Cmd {
    Cmd::argv(&[
        "lvs",
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "vg_name,lv_name,lv_attr,lv_size,pool_lv,data_percent,metadata_percent,lv_tags",
    ])
    .timeout(T)
}

/// Every VG this node sees, as JSON with byte sizes.
pub fn vgs() -> Cmd {
    Cmd::argv(&[
        "vgs",
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "vg_name,vg_size,vg_free,vg_lock_type,vg_tags",
    ])
    .timeout(T)
}

pub fn parse_lvs(out: &str) -> Result<Vec<Lv>, StorageError> {
    let r: Report<LvPart> = serde_json::from_str(out).map_err(|e| StorageError::Parse {
        what: "logical volumes".into(),
        cmd: "lvs".into(),
        why: e.to_string(),
    })?;
    Ok(r.report.into_iter().flat_map(|p| p.lv).collect())
}

pub fn parse_vgs(out: &str) -> Result<Vec<Vg>, StorageError> {
    let r: Report<VgPart> = serde_json::from_str(out).map_err(|e| StorageError::Parse {
        what: "volume groups".into(),
        cmd: "vgs".into(),
        why: e.to_string(),
    })?;
    Ok(r.report.into_iter().flat_map(|p| p.vg).collect())
}

/// `lvcreate --type thin-pool`, tagged as Keel's. Zeroing stays on (LVM's default): a new thin
/// LV reads as zeros, never as another VM's old blocks.
pub fn create_pool(vg: &str, name: &str, size: PoolSize) -> Cmd {
    let size = match size {
        PoolSize::Bytes(b) => ["-L".to_string(), format!("{b}b")],
        PoolSize::PercentFree(p) => ["-l".to_string(), format!("{p}%FREE")],
    };
    Cmd::argv(&["lvcreate", "--type", "thin-pool"])
        .args(size)
        .args(["-n", name, "--addtag", POOL_TAG, "-y", vg])
        .timeout(T)
}

/// A thin LV of `bytes` (virtual size) in pool `vg/pool`, active at once.
pub fn create_volume(vg: &str, pool: &str, name: &str, bytes: u64) -> Cmd {
    Cmd::argv(&[
        "lvcreate",
        "-V",
        &format!("{bytes}b"),
        "-T",
        &format!("{vg}/{pool}"),
        "-n",
        name,
        "-y",
    ])
    .timeout(T)
}

/// Remove an LV (a thin volume, or an empty pool).
pub fn remove(vg: &str, lv: &str) -> Cmd {
    Cmd::argv(&["lvremove", "-y", &format!("{vg}/{lv}")]).timeout(T)
}

/// Grow a thin LV's virtual size to `bytes`.
pub fn extend(vg: &str, lv: &str, bytes: u64) -> Cmd {
    Cmd::argv(&[
        "lvextend",
        "-L",
        &format!("{bytes}b"),
        &format!("{vg}/{lv}"),
    ])
    .timeout(T)
}

/// Names LVM refuses or keeps for itself, checked before any command runs. Keel volume names
/// are already `[A-Za-z0-9._+-]`, not starting with a dot.
pub fn check_lv_name(name: &str) -> Result<(), StorageError> {
    const RESERVED: [&str; 12] = [
        "_cdata", "_cmeta", "_corig", "_mimage", "_mlog", "_pmspare", "_rimage", "_rmeta",
        "_tdata", "_tmeta", "_vorigin", "_vdata",
    ];
    let bad = |why: String| {
        Err(StorageError::Invalid(format!(
            "volume name {name:?}: {why}"
        )))
    };
    if name.is_empty() || name.len() > 120 {
        return bad("an LVM volume name has 1 to 120 characters".into());
    }
    if name.starts_with('-') || name == "." || name == ".." {
        return bad("LVM does not accept it".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return bad(format!("{c:?} is not allowed in an LVM volume name"));
    }
    if let Some(r) = RESERVED.iter().find(|r| name.contains(*r)) {
        return bad(format!(
            "LVM keeps names containing {r:?} for its own volumes"
        ));
    }
    if name.starts_with("snapshot") || name.starts_with("pvmove") {
        return bad("LVM keeps names starting with \"snapshot\" or \"pvmove\"".into());
    }
    Ok(())
}

/// The Keel pool `name`, from an `lvs` report.
pub fn find_pool<'a>(lvs: &'a [Lv], name: &str) -> Option<&'a Lv> {
    lvs.iter().find(|l| l.is_keel_pool() && l.lv_name == name)
}

/// The thin volumes of `pool`.
pub fn volumes<'a>(lvs: &'a [Lv], pool: &'a Lv) -> impl Iterator<Item = &'a Lv> {
    lvs.iter().filter(move |l| {
        l.is_thin_volume() && l.vg_name == pool.vg_name && l.pool_lv == pool.lv_name
    })
}

/// Before `create_pool`: the VG exists on this node, is local (a shared VG belongs to a cluster
/// pool), has the room, and holds no LV of that name.
pub fn check_pool_create(
    vgs: &[Vg],
    lvs: &[Lv],
    vg: &str,
    name: &str,
    size: PoolSize,
) -> Result<(), StorageError> {
    let Some(v) = vgs.iter().find(|v| v.vg_name == vg) else {
        let have: Vec<&str> = vgs.iter().map(|v| v.vg_name.as_str()).collect();
        return Err(StorageError::Invalid(format!(
            "volume group {vg:?} does not exist on this node ({}); an installed Keel node has \
             the one its answer file named (disk.layout.vg_name, \"keel\" by default)",
            if have.is_empty() {
                "it has none".to_string()
            } else {
                format!("it has {}", have.join(", "))
            }
        )));
    };
    if !v.vg_lock_type.is_empty() && v.vg_lock_type != "none" {
        return Err(StorageError::Invalid(format!(
            "volume group {vg:?} is shared (lock type {}): it belongs to a cluster pool, and a \
             thin pool cannot be shared between nodes; use a local volume group",
            v.vg_lock_type
        )));
    }
    if let Some(l) = lvs.iter().find(|l| l.vg_name == vg && l.lv_name == name) {
        return Err(StorageError::Invalid(format!(
            "volume group {vg:?} already has a logical volume named {name:?} ({}); choose \
             another pool name",
            if l.is_keel_pool() {
                "a Keel thin pool"
            } else {
                "not Keel's"
            }
        )));
    }
    let bytes = match size {
        PoolSize::Bytes(b) => b,
        PoolSize::PercentFree(p) => {
            if !(1..=95).contains(&p) {
                return Err(StorageError::Invalid(format!(
                    "size {p}% of the free space: give 1 to 95 % (LVM needs room for the \
                     pool's metadata)"
                )));
            }
            v.vg_free / 100 * u64::from(p)
        }
    };
    if bytes < MIN_POOL_BYTES {
        return Err(StorageError::Invalid(format!(
            "a thin pool of {} MiB is too small: give at least {} MiB (volume group {vg:?} \
             has {} MiB free)",
            bytes >> 20,
            MIN_POOL_BYTES >> 20,
            v.vg_free >> 20
        )));
    }
    // the pool's metadata LV and its spare come from the same free space
    let room = v.vg_free.saturating_sub(v.vg_free / 20);
    if bytes > room {
        return Err(StorageError::Invalid(format!(
            "volume group {vg:?} has {} MiB free: a {} MiB thin pool and its metadata do not \
             fit; give at most {} MiB, or a percentage (--size 90%)",
            v.vg_free >> 20,
            bytes >> 20,
            room >> 20
        )));
    }
    Ok(())
}

/// Before `create_volume`: the name is free in the pool's VG and LVM accepts it, and the pool
/// is not so full that a new disk would soon stall every VM on it.
pub fn check_volume_create(lvs: &[Lv], pool: &Lv, name: &str) -> Result<(), StorageError> {
    check_lv_name(name)?;
    if lvs
        .iter()
        .any(|l| l.vg_name == pool.vg_name && l.lv_name == name)
    {
        return Err(StorageError::Invalid(format!(
            "volume group {:?} (under pool {:?}) already has a logical volume named {name:?}",
            pool.vg_name, pool.lv_name
        )));
    }
    check_not_full(pool)
}

/// A pool at [`FULL_PERCENT`] data or metadata use takes no more: say so, and how to grow it.
pub fn check_not_full(pool: &Lv) -> Result<(), StorageError> {
    for (what, p) in [
        ("data", pool.data_percent),
        ("metadata", pool.metadata_percent),
    ] {
        if let Some(p) = p {
            if p >= FULL_PERCENT {
                return Err(StorageError::Unsafe(format!(
                    "thin pool {:?} is {p:.0}% full ({what}): a full thin pool stops every VM \
                     on it, so it takes no new volumes; delete volumes, or grow it with \
                     'lvextend -L +SIZE {}/{}'{}",
                    pool.lv_name,
                    pool.vg_name,
                    pool.lv_name,
                    if what == "metadata" {
                        " --poolmetadatasize +SIZE"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    Ok(())
}

/// Before removing a pool: it holds no volume.
pub fn check_pool_delete(lvs: &[Lv], pool: &Lv) -> Result<(), StorageError> {
    let vols: Vec<&str> = volumes(lvs, pool).map(|l| l.lv_name.as_str()).collect();
    if !vols.is_empty() {
        return Err(StorageError::Unsafe(format!(
            "thin pool {:?} still holds {} volume(s): {}; delete them (or the VMs that use \
             them) first",
            pool.lv_name,
            vols.len(),
            vols.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `lvs` on a node with the installer's VG, a Keel pool holding one disk, a pool that is
    /// not Keel's and the root LV (the shape lvm2 2.03's JSON report has).
    const LVS: &str = r#"  {
      "report": [
          {
              "lv": [
                  {"vg_name":"keel", "lv_name":"fast", "lv_attr":"twi-aotz--", "lv_size":"1073741824", "pool_lv":"", "data_percent":"12.50", "metadata_percent":"10.94", "lv_tags":"keel_pool"},
                  {"vg_name":"keel", "lv_name":"other", "lv_attr":"twi-a-tz--", "lv_size":"104857600", "pool_lv":"", "data_percent":"0.00", "metadata_percent":"10.84", "lv_tags":""},
                  {"vg_name":"keel", "lv_name":"vm-100-disk-0.raw", "lv_attr":"Vwi-aotz--", "lv_size":"536870912", "pool_lv":"fast", "data_percent":"25.00", "metadata_percent":"", "lv_tags":""},
                  {"vg_name":"keel", "lv_name":"scratch", "lv_attr":"-wi-a-----", "lv_size":"4194304", "pool_lv":"", "data_percent":"", "metadata_percent":"", "lv_tags":""}
              ]
          }
      ]
      ,
      "log": [
      ]
  }
"#;

    const VGS: &str = r#"{"report":[{"vg":[
        {"vg_name":"keel", "vg_size":"7511998464", "vg_free":"5255462912", "vg_lock_type":""},
        {"vg_name":"keel-vmstore", "vg_size":"264241152", "vg_free":"0", "vg_lock_type":"dlm"}
    ]}]}"#;

    #[test]
    fn argv() {
        assert_eq!(
            create_pool("keel", "fast", PoolSize::Bytes(1 << 30)).to_argv(),
            [
                "lvcreate",
                "--type",
                "thin-pool",
                "-L",
                "1073741824b",
                "-n",
                "fast",
                "--addtag",
                "keel_pool",
                "-y",
                "keel"
            ]
        );
        assert_eq!(
            create_pool("keel", "fast", PoolSize::PercentFree(90)).to_argv()[3..5],
            ["-l", "90%FREE"]
        );
        assert_eq!(
            create_volume("keel", "fast", "vm-100-disk-0.raw", 1 << 20).to_argv(),
            [
                "lvcreate",
                "-V",
                "1048576b",
                "-T",
                "keel/fast",
                "-n",
                "vm-100-disk-0.raw",
                "-y"
            ]
        );
        assert_eq!(remove("keel", "x").to_argv(), ["lvremove", "-y", "keel/x"]);
        assert_eq!(
            extend("keel", "x", 2 << 20).to_argv(),
            ["lvextend", "-L", "2097152b", "keel/x"]
        );
        assert!(lvs().to_argv().contains(&"json".to_string()));
    }

    #[test]
    fn report_parsed_and_pools_told_apart() {
        let lvs = parse_lvs(LVS).unwrap();
        assert_eq!(lvs.len(), 4);
        let pool = find_pool(&lvs, "fast").unwrap();
        assert!(pool.active() && pool.is_keel_pool());
        assert_eq!(pool.used_bytes(), 1 << 27);
        assert!(
            find_pool(&lvs, "other").is_none(),
            "untagged pool is not Keel's"
        );
        assert!(find_pool(&lvs, "scratch").is_none());
        let vols: Vec<&Lv> = volumes(&lvs, pool).collect();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0].path(), "/dev/keel/vm-100-disk-0.raw");
        assert!(vols[0].open());
        assert_eq!(vols[0].metadata_percent, None);
        assert_eq!(vols[0].used_bytes(), 1 << 27);
        let vgs = parse_vgs(VGS).unwrap();
        assert_eq!(vgs[1].vg_lock_type, "dlm");
        assert!(parse_lvs("not json")
            .unwrap_err()
            .to_string()
            .contains("lvs"));
    }

    #[test]
    fn pool_create_refusals_name_what_to_do() {
        let lvs = parse_lvs(LVS).unwrap();
        let vgs = parse_vgs(VGS).unwrap();
        let ok = |vg: &str, name: &str, s: PoolSize| check_pool_create(&vgs, &lvs, vg, name, s);
        ok("keel", "bulk", PoolSize::Bytes(1 << 30)).unwrap();
        ok("keel", "bulk", PoolSize::PercentFree(90)).unwrap();
        for (vg, name, size, words) in [
            (
                "nope",
                "bulk",
                PoolSize::Bytes(1 << 30),
                "does not exist on this node (it has keel, keel-vmstore)",
            ),
            (
                "keel-vmstore",
                "bulk",
                PoolSize::Bytes(1 << 30),
                "is shared (lock type dlm)",
            ),
            (
                "keel",
                "fast",
                PoolSize::Bytes(1 << 30),
                "already has a logical volume named \"fast\" (a Keel thin pool)",
            ),
            ("keel", "scratch", PoolSize::Bytes(1 << 30), "(not Keel's)"),
            ("keel", "bulk", PoolSize::Bytes(1 << 20), "too small"),
            (
                "keel",
                "bulk",
                PoolSize::Bytes(6 << 30),
                "do not fit; give at most",
            ),
            ("keel", "bulk", PoolSize::PercentFree(99), "give 1 to 95"),
        ] {
            let e = ok(vg, name, size).unwrap_err().to_string();
            assert!(e.contains(words), "{vg}/{name}: {e}");
        }
    }

    #[test]
    fn volume_create_refusals() {
        let mut lvs = parse_lvs(LVS).unwrap();
        let pool = find_pool(&lvs, "fast").unwrap().clone();
        check_volume_create(&lvs, &pool, "vm-101-disk-0.raw").unwrap();
        for (name, words) in [
            ("vm-100-disk-0.raw", "already has a logical volume"),
            ("scratch", "already has a logical volume"),
            ("x_tmeta", "keeps names containing \"_tmeta\""),
            ("snapshot1", "keeps names starting"),
            ("-x", "does not accept"),
        ] {
            let e = check_volume_create(&lvs, &pool, name)
                .unwrap_err()
                .to_string();
            assert!(e.contains(words), "{name}: {e}");
        }
        lvs[0].metadata_percent = Some(91.0);
        let full = lvs[0].clone();
        let e = check_volume_create(&lvs, &full, "new")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("91% full (metadata)") && e.contains("--poolmetadatasize"),
            "{e}"
        );
    }

    #[test]
    fn a_pool_with_volumes_is_not_deleted() {
        let lvs = parse_lvs(LVS).unwrap();
        let pool = find_pool(&lvs, "fast").unwrap();
        let e = check_pool_delete(&lvs, pool).unwrap_err().to_string();
        assert!(e.contains("vm-100-disk-0.raw"), "{e}");
        let empty: Vec<Lv> = lvs
            .iter()
            .filter(|l| !l.is_thin_volume())
            .cloned()
            .collect();
        check_pool_delete(&empty, find_pool(&empty, "fast").unwrap()).unwrap();
    }
}
