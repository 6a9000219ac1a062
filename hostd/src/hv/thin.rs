//! Node-local `lvm-thin` pools as the hypervisor's pools and volumes. libvirt does not know
//! them: LVM is their record (`keel_storage::thin`: a thin-pool LV tagged as Keel's, one thin
//! LV per volume), read with `lvs` and changed with `lvcreate`/`lvremove`/`lvextend` through
//! the runner. [`super::libvirt::Libvirt`] asks here first for a pool name libvirt does not
//! have, so every caller above the trait sees one list of pools.
use std::sync::Arc;

use keel_api::storage::{PoolInfo, VolumeInfo};
use keel_api::vm::DiskFormat;
use keel_runner::{RunError, Runner};
use keel_storage::thin::{self, Lv};
use keel_storage::StorageError;

use super::{HvError, HvResult};

/// The kind an `lvm-thin` pool reports in [`PoolInfo::kind`].
pub const KIND: &str = "lvm-thin";

pub struct ThinPools {
    runner: Arc<dyn Runner>,
}

fn lvm(e: StorageError) -> HvError {
    match e {
        StorageError::Invalid(m) | StorageError::Unsafe(m) => HvError::Refused(m),
        other => HvError::Lvm(other.to_string()),
    }
}

/// A pool as the API lists it: its size, what its volumes hold, and what is left.
pub fn pool_info(p: &Lv) -> PoolInfo {
    let used = p.used_bytes();
    PoolInfo {
        name: p.lv_name.clone(),
        kind: KIND.into(),
        path: None,
        active: p.active(),
        capacity: p.lv_size,
        allocation: used,
        available: p.lv_size.saturating_sub(used),
    }
}

pub fn volume_info(v: &Lv) -> VolumeInfo {
    VolumeInfo {
        name: v.lv_name.clone(),
        path: v.path(),
        format: "raw".into(),
        capacity: v.lv_size,
        allocation: v.used_bytes(),
        used_by: Vec::new(),
    }
}

impl ThinPools {
    pub fn new(runner: Arc<dyn Runner>) -> Self {
        ThinPools { runner }
    }

    /// Every LV this node sees. A node without LVM's tools has no thin pools.
    pub fn report(&self) -> HvResult<Vec<Lv>> {
        self.tolerant(thin::lvs(), thin::parse_lvs)
    }

    /// Every VG this node sees.
    pub fn vgs(&self) -> HvResult<Vec<keel_storage::thin::Vg>> {
        self.tolerant(thin::vgs(), thin::parse_vgs)
    }

    /// `lvs`/`vgs` exit non-zero when one VG cannot be read (a shared VG before its lockspace
    /// started) and still report the others: the report is used whenever there is one.
    fn tolerant<T>(
        &self,
        cmd: keel_runner::Cmd,
        parse: fn(&str) -> Result<Vec<T>, StorageError>,
    ) -> HvResult<Vec<T>> {
        match self.runner.run(&cmd) {
            Ok(out) => match parse(&out.stdout) {
                Ok(v) => {
                    if !out.success() {
                        tracing::warn!(cmd = %cmd, stderr = %out.stderr.trim(), "LVM reported with errors");
                    }
                    Ok(v)
                }
                Err(e) if out.success() => Err(lvm(e)),
                Err(_) => Err(lvm(StorageError::Run(RunError::Failed {
                    cmd: cmd.to_string(),
                    code: out.code,
                    stderr: out.stderr,
                    stdout: out.stdout,
                }))),
            },
            Err(RunError::Spawn { .. }) => Ok(Vec::new()),
            Err(e) => Err(lvm(e.into())),
        }
    }

    pub fn list(&self) -> HvResult<Vec<PoolInfo>> {
        Ok(self
            .report()?
            .iter()
            .filter(|l| l.is_keel_pool())
            .map(pool_info)
            .collect())
    }

    /// The LVM report and the pool `name`, when this node has such a thin pool.
    pub fn find(&self, name: &str) -> HvResult<Option<(Vec<Lv>, Lv)>> {
        let lvs = self.report()?;
        let found = thin::find_pool(&lvs, name).cloned();
        Ok(found.map(|p| (lvs, p)))
    }

    pub fn volumes(lvs: &[Lv], pool: &Lv) -> Vec<VolumeInfo> {
        let mut v: Vec<VolumeInfo> = thin::volumes(lvs, pool).map(volume_info).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn volume(lvs: &[Lv], pool: &Lv, name: &str) -> HvResult<VolumeInfo> {
        thin::volumes(lvs, pool)
            .find(|l| l.lv_name == name)
            .map(volume_info)
            .ok_or_else(|| {
                HvError::NotFound(format!(
                    "volume {name:?} in pool {:?} not found",
                    pool.lv_name
                ))
            })
    }

    /// A thin LV; its device path. Raw only: a thin LV is a block device the guest sees as is.
    pub fn create_volume(
        &self,
        lvs: &[Lv],
        pool: &Lv,
        name: &str,
        bytes: u64,
        format: DiskFormat,
    ) -> HvResult<String> {
        if format != DiskFormat::Raw {
            return Err(HvError::Refused(format!(
                "pool {:?} is lvm-thin: its volumes are raw block devices (thin LVs), so a \
                 {} volume cannot live there; use format raw",
                pool.lv_name,
                format.as_str()
            )));
        }
        if thin::volumes(lvs, pool).any(|l| l.lv_name == name) {
            return Err(HvError::Conflict(format!(
                "volume {name:?} already exists in pool {:?}",
                pool.lv_name
            )));
        }
        thin::check_volume_create(lvs, pool, name).map_err(lvm)?;
        self.runner
            .run_ok(&thin::create_volume(
                &pool.vg_name,
                &pool.lv_name,
                name,
                bytes,
            ))
            .map_err(|e| lvm(e.into()))?;
        Ok(format!("/dev/{}/{name}", pool.vg_name))
    }

    pub fn delete_volume(&self, lvs: &[Lv], pool: &Lv, name: &str) -> HvResult<()> {
        let v = Self::volume(lvs, pool, name)?;
        if thin::volumes(lvs, pool).any(|l| l.lv_name == name && l.open()) {
            return Err(HvError::Conflict(format!(
                "volume {name:?} ({}) is open, by a running VM's QEMU: stop it first",
                v.path
            )));
        }
        self.runner
            .run_ok(&thin::remove(&pool.vg_name, name))
            .map(|_| ())
            .map_err(|e| lvm(e.into()))
    }

    pub fn resize_volume(&self, lvs: &[Lv], pool: &Lv, name: &str, bytes: u64) -> HvResult<()> {
        let v = Self::volume(lvs, pool, name)?;
        if bytes < v.capacity {
            return Err(HvError::Refused(format!(
                "volume {name:?} is {} bytes: a thin LV only grows",
                v.capacity
            )));
        }
        if bytes == v.capacity {
            return Ok(());
        }
        self.runner
            .run_ok(&thin::extend(&pool.vg_name, name, bytes))
            .map(|_| ())
            .map_err(|e| lvm(e.into()))
    }

    /// (pool, volume) of a device path `/dev/VG/LV` that is a thin volume of a Keel pool.
    pub fn by_path(&self, path: &str) -> HvResult<Option<(String, String)>> {
        let Some(rest) = path.strip_prefix("/dev/") else {
            return Ok(None);
        };
        let Some((vg, lv)) = rest.split_once('/') else {
            return Ok(None);
        };
        let lvs = self.report()?;
        Ok(lvs
            .iter()
            .find(|l| l.is_thin_volume() && l.vg_name == vg && l.lv_name == lv)
            .filter(|l| {
                lvs.iter()
                    .any(|p| p.is_keel_pool() && p.vg_name == vg && p.lv_name == l.pool_lv)
            })
            .map(|l| (l.pool_lv.clone(), l.lv_name.clone())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_runner::{Fake, Reply};

    const LVS: &str = r#"{"report":[{"lv":[
        {"vg_name":"keel","lv_name":"fast","lv_attr":"twi-aotz--","lv_size":"1073741824","pool_lv":"","data_percent":"50.00","metadata_percent":"11.00","lv_tags":"keel_pool"},
        {"vg_name":"keel","lv_name":"d0","lv_attr":"Vwi-a-tz--","lv_size":"536870912","pool_lv":"fast","data_percent":"10.00","metadata_percent":"","lv_tags":""},
        {"vg_name":"keel","lv_name":"d1","lv_attr":"Vwi-aotz--","lv_size":"536870912","pool_lv":"fast","data_percent":"90.00","metadata_percent":"","lv_tags":""}
    ]}]}"#;

    fn lvs_argv() -> Vec<String> {
        thin::lvs().to_argv()
    }

    fn pools(f: Fake) -> (Arc<Fake>, ThinPools) {
        let f = Arc::new(f);
        (f.clone(), ThinPools::new(f))
    }

    #[test]
    fn pools_and_volumes_come_from_one_lvs_report() {
        let (f, t) = pools(Fake::new().expect(&lvs_argv(), Reply::ok(LVS)));
        let list = t.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].kind, "lvm-thin");
        assert_eq!(
            list[0].path, None,
            "no directory: uploads and seeds refuse it"
        );
        assert_eq!(list[0].available, 1 << 29);
        f.assert_done();
        let lvs = thin::parse_lvs(LVS).unwrap();
        let pool = thin::find_pool(&lvs, "fast").unwrap();
        let vols = ThinPools::volumes(&lvs, pool);
        assert_eq!(
            vols.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(),
            ["/dev/keel/d0", "/dev/keel/d1"]
        );
        assert!(matches!(
            ThinPools::volume(&lvs, pool, "nope"),
            Err(HvError::NotFound(_))
        ));
    }

    #[test]
    fn create_delete_resize_run_lvm() {
        let lvs = thin::parse_lvs(LVS).unwrap();
        let pool = thin::find_pool(&lvs, "fast").unwrap().clone();
        let (f, t) = pools(
            Fake::new()
                .expect(
                    &[
                        "lvcreate",
                        "-V",
                        "1048576b",
                        "-T",
                        "keel/fast",
                        "-n",
                        "d2",
                        "-y",
                    ],
                    Reply::ok(""),
                )
                .expect(&["lvremove", "-y", "keel/d0"], Reply::ok(""))
                .expect(&["lvextend", "-L", "1073741824b", "keel/d0"], Reply::ok("")),
        );
        assert_eq!(
            t.create_volume(&lvs, &pool, "d2", 1 << 20, DiskFormat::Raw)
                .unwrap(),
            "/dev/keel/d2"
        );
        t.delete_volume(&lvs, &pool, "d0").unwrap();
        t.resize_volume(&lvs, &pool, "d0", 1 << 30).unwrap();
        f.assert_done();
        // refused before LVM runs: qcow2, a taken name, an open LV, a shrink
        let (f, t) = pools(Fake::new());
        let e = t
            .create_volume(&lvs, &pool, "d3", 1 << 20, DiskFormat::Qcow2)
            .unwrap_err();
        assert!(
            matches!(e, HvError::Refused(ref m) if m.contains("use format raw")),
            "{e}"
        );
        assert!(matches!(
            t.create_volume(&lvs, &pool, "d0", 1 << 20, DiskFormat::Raw),
            Err(HvError::Conflict(_))
        ));
        let e = t.delete_volume(&lvs, &pool, "d1").unwrap_err();
        assert!(e.to_string().contains("is open"), "{e}");
        assert!(matches!(
            t.resize_volume(&lvs, &pool, "d0", 1 << 20),
            Err(HvError::Refused(_))
        ));
        f.assert_done();
    }

    #[test]
    fn paths_map_back_and_no_lvm_means_no_pools() {
        let (_, t) = pools(Fake::new().expect(&lvs_argv(), Reply::ok(LVS)));
        assert_eq!(
            t.by_path("/dev/keel/d1").unwrap(),
            Some(("fast".into(), "d1".into()))
        );
        let (_, t) = pools(Fake::new());
        assert_eq!(t.by_path("/var/lib/keel/images/x.qcow2").unwrap(), None);
        let (_, t) = pools(Fake::new().expect(&lvs_argv(), Reply::fail(5, "boom")));
        assert!(
            t.list().is_err(),
            "a failing lvs is an error, not an empty list"
        );
        // a VG it could not read (exit 5) does not hide the pools it did report
        let (_, t) = pools(Fake::new().expect(
            &lvs_argv(),
            Reply::Exit(keel_runner::Output {
                code: Some(5),
                stdout: LVS.into(),
                stderr: "Skipping global lock: lockspace not found or started".into(),
            }),
        ));
        assert_eq!(t.list().unwrap().len(), 1);
    }
}
