//! `iscsi-lvm` cluster pools as the hypervisor's pools and volumes. libvirt does not know
//! them: the pool is a shared VG (`vgcreate --shared`, locked by lvmlockd in DLM) tagged
//! `keel_volumes`, named `keel-POOL`, and each of its LVs is one raw VM disk. Every node sees
//! the same VG on the same LUN, so every node lists the same volumes.
//!
//! What keeps two nodes from opening one disk is lvmlockd: a disk is activated exclusively
//! (`lvchange -aey`) on the node that starts its VM, and lvmlockd refuses that while another
//! node holds the LV. [`SharedLvm::activate`] runs before a VM starts, [`SharedLvm::release`]
//! after it stopped, and [`SharedLvm::release_idle`] (every reconciler pass) releases a disk
//! whose VM shut down from inside. One lock orders them, so the sweep never deactivates a disk
//! between its activation and QEMU opening it.
//!
//! A node joins the VG's lockspace lazily, before it first changes or activates anything in
//! it (after a reboot nothing else does: no Pacemaker resource activates these LVs).
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use keel_api::storage::{PoolInfo, VolumeInfo};
use keel_api::vm::DiskFormat;
use keel_runner::{Cmd, Runner};
use keel_storage::lvm::{self, Activation};
use keel_storage::thin::{self, Lv, Vg};

use super::thin::ThinPools;
use super::{HvError, HvResult};

/// The kind an `iscsi-lvm` pool reports in [`PoolInfo::kind`].
pub const KIND: &str = "iscsi-lvm";

/// One `iscsi-lvm` pool as LVM reports it: its VG and the VG's LVs.
#[derive(Debug, Clone)]
pub struct VolumePool {
    pub name: String,
    pub vg: Vg,
    pub lvs: Vec<Lv>,
}

pub struct SharedLvm {
    runner: Arc<dyn Runner>,
    /// `lvs`/`vgs`, tolerant of a shared VG whose lockspace this node has not joined.
    report: ThinPools,
    /// Held while disks are activated and their VM started, and by the idle sweep.
    activation: Mutex<()>,
    /// Disks a Keel operation activated and uses without QEMU (a cold backup, a restore): the
    /// idle sweep leaves them alone until [`SharedLvm::unhold`].
    held: Mutex<BTreeSet<String>>,
}

pub fn pool_info(p: &VolumePool) -> PoolInfo {
    PoolInfo {
        name: p.name.clone(),
        kind: KIND.into(),
        path: None,
        active: true,
        capacity: p.vg.vg_size,
        allocation: p.vg.vg_size.saturating_sub(p.vg.vg_free),
        available: p.vg.vg_free,
    }
}

fn volume_info(v: &Lv) -> VolumeInfo {
    VolumeInfo {
        name: v.lv_name.clone(),
        path: v.path(),
        format: "raw".into(),
        capacity: v.lv_size,
        allocation: v.lv_size,
        used_by: Vec::new(),
    }
}

/// `(vg, lv)` of a device path `/dev/VG/LV`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (vg, lv) = path.strip_prefix("/dev/")?.split_once('/')?;
    (!lv.contains('/')).then_some((vg, lv))
}

impl SharedLvm {
    pub fn new(runner: Arc<dyn Runner>) -> Self {
        SharedLvm {
            report: ThinPools::new(runner.clone()),
            runner,
            activation: Mutex::new(()),
            held: Mutex::new(BTreeSet::new()),
        }
    }

    fn volume_vgs(&self) -> HvResult<Vec<Vg>> {
        Ok(self
            .report
            .vgs()?
            .into_iter()
            .filter(|v| v.is_volume_pool() && v.pool_name().is_some())
            .collect())
    }

    pub fn list(&self) -> HvResult<Vec<PoolInfo>> {
        Ok(self
            .volume_vgs()?
            .into_iter()
            .filter_map(|vg| {
                let name = vg.pool_name()?.to_string();
                Some(pool_info(&VolumePool {
                    name,
                    vg,
                    lvs: Vec::new(),
                }))
            })
            .collect())
    }

    /// The pool `name`, when this node sees its VG.
    pub fn find(&self, name: &str) -> HvResult<Option<VolumePool>> {
        let Some(vg) = self
            .volume_vgs()?
            .into_iter()
            .find(|v| v.pool_name() == Some(name))
        else {
            return Ok(None);
        };
        let lvs = self
            .report
            .report()?
            .into_iter()
            .filter(|l| l.vg_name == vg.vg_name)
            .collect();
        Ok(Some(VolumePool {
            name: name.to_string(),
            vg,
            lvs,
        }))
    }

    pub fn volumes(p: &VolumePool) -> Vec<VolumeInfo> {
        let mut v: Vec<VolumeInfo> = p.lvs.iter().map(volume_info).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn volume(p: &VolumePool, name: &str) -> HvResult<VolumeInfo> {
        p.lvs
            .iter()
            .find(|l| l.lv_name == name)
            .map(volume_info)
            .ok_or_else(|| {
                HvError::NotFound(format!("volume {name:?} in pool {:?} not found", p.name))
            })
    }

    /// Join the VG's lockspace on this node (already joined is fine).
    fn lockstart(&self, vg: &str) -> HvResult<()> {
        let c = lvm::lockstart(vg);
        let o = self.run(&c)?;
        if o.success() || lvm::already_started(&o.stderr) {
            return Ok(());
        }
        Err(HvError::Lvm(format!(
            "this node cannot join the lockspace of {vg} ({c}: {}): check that it is logged in \
             to the pool's LUN (iscsiadm -m session) and that lvmlockd runs here (crm_mon)",
            o.stderr.trim()
        )))
    }

    fn run(&self, c: &Cmd) -> HvResult<keel_runner::Output> {
        self.runner
            .run(c)
            .map_err(|e| HvError::Lvm(format!("{c}: {e}")))
    }

    /// Run `c`; lvmlockd's "locked by other host" becomes a 409 saying `held`.
    fn run_locked(&self, c: &Cmd, held: impl FnOnce() -> String) -> HvResult<()> {
        let o = self.run(c)?;
        if o.success() {
            return Ok(());
        }
        if lvm::held_by_other_host(&o.stderr) {
            return Err(HvError::Conflict(held()));
        }
        Err(HvError::Lvm(format!("{c}: {}", o.stderr.trim())))
    }

    /// A raw LV of `bytes`, created active here (LVM wipes its start) and released again.
    pub fn create_volume(
        &self,
        p: &VolumePool,
        name: &str,
        bytes: u64,
        format: DiskFormat,
    ) -> HvResult<String> {
        if format != DiskFormat::Raw {
            return Err(HvError::Refused(format!(
                "pool {:?} is iscsi-lvm: its volumes are raw LVs on the shared LUN, so a {} \
                 volume cannot live there; use format raw",
                p.name,
                format.as_str()
            )));
        }
        thin::check_lv_name(name).map_err(|e| HvError::Refused(e.to_string()))?;
        if p.lvs.iter().any(|l| l.lv_name == name) {
            return Err(HvError::Conflict(format!(
                "volume {name:?} already exists in pool {:?}",
                p.name
            )));
        }
        if bytes > p.vg.vg_free {
            return Err(HvError::Refused(format!(
                "pool {:?} has {} MiB free, and the volume needs {} MiB: delete unused disks, \
                 or grow the LUN on the target and run pvresize on one node",
                p.name,
                p.vg.vg_free >> 20,
                bytes.div_ceil(1 << 20)
            )));
        }
        let vg = &p.vg.vg_name;
        let _g = self.activation.lock().unwrap_or_else(|e| e.into_inner());
        self.lockstart(vg)?;
        self.run_locked(&lvm::lvcreate_disk(vg, name, bytes), || {
            format!("the VG {vg} is locked by another node: try again")
        })?;
        self.run_locked(&lvm::lvchange(vg, name, Activation::Off), || {
            format!("{vg}/{name} is held by another node")
        })?;
        Ok(format!("/dev/{vg}/{name}"))
    }

    pub fn delete_volume(&self, p: &VolumePool, name: &str) -> HvResult<()> {
        let v = Self::volume(p, name)?;
        if p.lvs.iter().any(|l| l.lv_name == name && l.open()) {
            return Err(HvError::Conflict(format!(
                "volume {name:?} ({}) is open here, by a running VM's QEMU: stop it first",
                v.path
            )));
        }
        let vg = &p.vg.vg_name;
        let _g = self.activation.lock().unwrap_or_else(|e| e.into_inner());
        self.lockstart(vg)?;
        // active here but unused (a VM that just stopped): release it first
        if p.lvs.iter().any(|l| l.lv_name == name && l.active()) {
            self.run_locked(&lvm::lvchange(vg, name, Activation::Off), || {
                format!("volume {name:?} cannot be released here: try again")
            })?;
        }
        self.run_locked(&lvm::lvremove(vg, name), || {
            format!(
                "volume {name:?} ({}) is active on another node, where a VM using it runs: \
                 stop that VM first",
                v.path
            )
        })
    }

    /// Grow an LV (lvmlockd refuses while another node has it active: grow it there).
    pub fn resize_volume(&self, p: &VolumePool, name: &str, bytes: u64) -> HvResult<()> {
        let v = Self::volume(p, name)?;
        if bytes < v.capacity {
            return Err(HvError::Refused(format!(
                "volume {name:?} is {} bytes: an iscsi-lvm volume only grows",
                v.capacity
            )));
        }
        if bytes == v.capacity {
            return Ok(());
        }
        if bytes - v.capacity > p.vg.vg_free {
            return Err(HvError::Refused(format!(
                "pool {:?} has {} MiB free, and growing {name:?} needs {} MiB more",
                p.name,
                p.vg.vg_free >> 20,
                (bytes - v.capacity).div_ceil(1 << 20)
            )));
        }
        let vg = &p.vg.vg_name;
        self.lockstart(vg)?;
        self.run_locked(&lvm::lvextend(vg, name, bytes), || {
            format!("volume {name:?} is active on another node, where its VM runs: resize it there")
        })
    }

    /// (pool, volume) of a device path that is an LV of an `iscsi-lvm` pool.
    pub fn by_path(&self, path: &str) -> HvResult<Option<(String, String)>> {
        let Some((vg, lv)) = split_path(path) else {
            return Ok(None);
        };
        Ok(self
            .volume_vgs()?
            .iter()
            .find(|v| v.vg_name == vg)
            .and_then(|v| v.pool_name())
            .map(|p| (p.to_string(), lv.to_string())))
    }

    /// The `(vg, lv)` of each of `paths` that is an `iscsi-lvm` disk.
    fn disks_of(&self, paths: &[String]) -> HvResult<Vec<(String, String)>> {
        if !paths.iter().any(|p| split_path(p).is_some()) {
            return Ok(Vec::new());
        }
        let vgs = self.volume_vgs()?;
        Ok(paths
            .iter()
            .filter_map(|p| split_path(p))
            .filter(|(vg, _)| vgs.iter().any(|v| v.vg_name == *vg))
            .map(|(vg, lv)| (vg.to_string(), lv.to_string()))
            .collect())
    }

    /// Activate exclusively here each `iscsi-lvm` disk among `paths` (lock held); on a
    /// refusal (another node holds one) what was activated is released again.
    fn activate(&self, who: &str, disks: &[(String, String)]) -> HvResult<()> {
        let mut done: Vec<&(String, String)> = Vec::new();
        for d in disks {
            let (vg, lv) = d;
            let r = self.lockstart(vg).and_then(|()| {
                self.run_locked(&lvm::lvchange(vg, lv, Activation::Exclusive), || {
                    format!(
                        "{who}: its disk /dev/{vg}/{lv} is active on another node, where a VM \
                         using it runs (iscsi-lvm disks are opened by one node at a time); stop \
                         it there first"
                    )
                })
            });
            if let Err(e) = r {
                self.deactivate(done.into_iter().cloned());
                return Err(e);
            }
            done.push(d);
        }
        Ok(())
    }

    fn deactivate(&self, disks: impl IntoIterator<Item = (String, String)>) {
        for (vg, lv) in disks {
            match self.run(&lvm::lvchange(&vg, &lv, Activation::Off)) {
                Ok(o) if o.success() => {}
                Ok(o) => tracing::warn!("releasing /dev/{vg}/{lv}: {}", o.stderr.trim()),
                Err(e) => tracing::warn!("releasing /dev/{vg}/{lv}: {e}"),
            }
        }
    }

    /// Activate the `iscsi-lvm` disks among `paths`, then run `start` (a VM's start: QEMU
    /// opens them); on a refusal or a failed start, what was activated is released.
    pub fn with_disks_active<T>(
        &self,
        vm: &str,
        paths: &[String],
        start: impl FnOnce() -> HvResult<T>,
    ) -> HvResult<T> {
        let disks = self.disks_of(paths)?;
        if disks.is_empty() {
            return start();
        }
        let _g = self.activation.lock().unwrap_or_else(|e| e.into_inner());
        self.activate(&format!("{vm} cannot start here"), &disks)?;
        let out = start();
        if out.is_err() {
            self.deactivate(disks);
        }
        out
    }

    /// Activate the `iscsi-lvm` disks among `paths` for a Keel operation that reads or writes
    /// them without QEMU (`who` says which); the sweep leaves them until [`Self::unhold`].
    /// Returns the paths held.
    pub fn hold(&self, who: &str, paths: &[String]) -> HvResult<Vec<String>> {
        let disks = self.disks_of(paths)?;
        if disks.is_empty() {
            return Ok(Vec::new());
        }
        let _g = self.activation.lock().unwrap_or_else(|e| e.into_inner());
        self.activate(who, &disks)?;
        let held: Vec<String> = disks
            .iter()
            .map(|(vg, lv)| format!("/dev/{vg}/{lv}"))
            .collect();
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(held.iter().cloned());
        Ok(held)
    }

    /// Release what [`Self::hold`] activated, unless QEMU opened it meanwhile (a disk
    /// hot-plugged into a running VM stays active).
    pub fn unhold(&self, paths: &[String]) {
        if paths.is_empty() {
            return;
        }
        {
            let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
            for p in paths {
                h.remove(p);
            }
        }
        if let Err(e) = self.release_where(|l| paths.contains(&l.path())) {
            tracing::warn!("releasing {}: {e}", paths.join(", "));
        }
    }

    /// Release the `iscsi-lvm` disks among `paths` that are active here and not open (their VM
    /// stopped). Returns the ones released.
    pub fn release(&self, paths: &[String]) -> HvResult<Vec<String>> {
        let disks = self.disks_of(paths)?;
        if disks.is_empty() {
            return Ok(Vec::new());
        }
        self.release_where(|l| {
            disks
                .iter()
                .any(|(vg, lv)| *vg == l.vg_name && *lv == l.lv_name)
        })
    }

    /// Release every `iscsi-lvm` disk active here that nothing holds open: its VM shut down
    /// (from inside, or crashed), so another node may now start it.
    pub fn release_idle(&self) -> HvResult<Vec<String>> {
        self.release_where(|_| true)
    }

    fn release_where(&self, pick: impl Fn(&Lv) -> bool) -> HvResult<Vec<String>> {
        let vgs = self.volume_vgs()?;
        if vgs.is_empty() {
            return Ok(Vec::new());
        }
        let _g = self.activation.lock().unwrap_or_else(|e| e.into_inner());
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = Vec::new();
        for l in self.report.report()? {
            if !vgs.iter().any(|v| v.vg_name == l.vg_name)
                || !l.active()
                || l.open()
                || held.contains(&l.path())
            {
                continue;
            }
            if !pick(&l) {
                continue;
            }
            let c = lvm::lvchange(&l.vg_name, &l.lv_name, Activation::Off);
            match self.run(&c) {
                Ok(o) if o.success() => out.push(l.path()),
                Ok(o) => {
                    tracing::warn!(cmd = %c, stderr = %o.stderr.trim(), "releasing an idle disk")
                }
                Err(e) => tracing::warn!("releasing an idle disk: {e}"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_runner::{Fake, Reply};

    const VGS: &str = r#"{"report":[{"vg":[
        {"vg_name":"keel","vg_size":"8589934592","vg_free":"4294967296","vg_lock_type":"","vg_tags":""},
        {"vg_name":"keel-fs","vg_size":"536870912","vg_free":"0","vg_lock_type":"dlm","vg_tags":""},
        {"vg_name":"keel-san","vg_size":"536870912","vg_free":"402653184","vg_lock_type":"dlm","vg_tags":"keel_volumes"}
    ]}]}"#;
    const LVS: &str = r#"{"report":[{"lv":[
        {"vg_name":"keel-san","lv_name":"d0","lv_attr":"-wi-ao----","lv_size":"67108864","pool_lv":"","data_percent":"","metadata_percent":"","lv_tags":""},
        {"vg_name":"keel-san","lv_name":"d1","lv_attr":"-wi-a-----","lv_size":"67108864","pool_lv":"","data_percent":"","metadata_percent":"","lv_tags":""},
        {"vg_name":"keel-san","lv_name":"d2","lv_attr":"-wi-------","lv_size":"67108864","pool_lv":"","data_percent":"","metadata_percent":"","lv_tags":""},
        {"vg_name":"keel-fs","lv_name":"fs","lv_attr":"-wi-a-----","lv_size":"536870912","pool_lv":"","data_percent":"","metadata_percent":"","lv_tags":""}
    ]}]}"#;

    fn vgs() -> Vec<String> {
        thin::vgs().to_argv()
    }
    fn lvs() -> Vec<String> {
        thin::lvs().to_argv()
    }
    fn argv(c: Cmd) -> Vec<String> {
        c.to_argv()
    }

    fn shared(f: Fake) -> (Arc<Fake>, SharedLvm) {
        let f = Arc::new(f);
        (f.clone(), SharedLvm::new(f))
    }

    #[test]
    fn only_the_tagged_shared_vg_is_a_pool() {
        let (f, s) = shared(
            Fake::new()
                .expect(&vgs(), Reply::ok(VGS))
                .expect(&vgs(), Reply::ok(VGS))
                .expect(&lvs(), Reply::ok(LVS)),
        );
        let l = s.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].name.as_str(), l[0].kind.as_str()),
            ("san", "iscsi-lvm")
        );
        assert_eq!(l[0].available, 384 << 20);
        let p = s.find("san").unwrap().unwrap();
        let v = SharedLvm::volumes(&p);
        assert_eq!(
            v.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(),
            ["/dev/keel-san/d0", "/dev/keel-san/d1", "/dev/keel-san/d2"]
        );
        f.assert_done();
    }

    fn pool() -> VolumePool {
        VolumePool {
            name: "san".into(),
            vg: thin::parse_vgs(VGS).unwrap().remove(2),
            lvs: thin::parse_lvs(LVS).unwrap()[..3].to_vec(),
        }
    }

    #[test]
    fn a_volume_is_created_wiped_and_released() {
        let (f, s) = shared(
            Fake::new()
                .expect(&argv(lvm::lockstart("keel-san")), Reply::ok(""))
                .expect(
                    &argv(lvm::lvcreate_disk("keel-san", "d9", 1 << 26)),
                    Reply::ok(""),
                )
                .expect(
                    &argv(lvm::lvchange("keel-san", "d9", Activation::Off)),
                    Reply::ok(""),
                ),
        );
        let path = s
            .create_volume(&pool(), "d9", 1 << 26, DiskFormat::Raw)
            .unwrap();
        assert_eq!(path, "/dev/keel-san/d9");
        f.assert_done();
        // refusals before any command: qcow2, a taken name, more than the VG has free
        let e = s
            .create_volume(&pool(), "d8", 1 << 26, DiskFormat::Qcow2)
            .unwrap_err();
        assert!(e.to_string().contains("use format raw"), "{e}");
        assert!(matches!(
            s.create_volume(&pool(), "d0", 1 << 26, DiskFormat::Raw),
            Err(HvError::Conflict(_))
        ));
        let e = s
            .create_volume(&pool(), "big", 1 << 30, DiskFormat::Raw)
            .unwrap_err()
            .to_string();
        assert!(e.contains("384 MiB free") && e.contains("1024 MiB"), "{e}");
    }

    #[test]
    fn a_disk_held_by_another_node_refuses_the_start_and_releases_the_rest() {
        let (f, s) = shared(
            Fake::new()
                .expect(&vgs(), Reply::ok(VGS))
                .expect(&argv(lvm::lockstart("keel-san")), Reply::ok(""))
                .expect(
                    &argv(lvm::lvchange("keel-san", "d1", Activation::Exclusive)),
                    Reply::ok(""),
                )
                .expect(&argv(lvm::lockstart("keel-san")), Reply::ok(""))
                .expect(
                    &argv(lvm::lvchange("keel-san", "d2", Activation::Exclusive)),
                    Reply::fail(5, "  LV locked by other host: keel-san/d2\n"),
                )
                .expect(
                    &argv(lvm::lvchange("keel-san", "d1", Activation::Off)),
                    Reply::ok(""),
                ),
        );
        let paths = [
            "/var/lib/keel/images/seed.iso".to_string(),
            "/dev/keel-san/d1".into(),
            "/dev/keel-san/d2".into(),
        ];
        let mut started = false;
        let e = s
            .with_disks_active("vm 101", &paths, || {
                started = true;
                Ok(())
            })
            .unwrap_err();
        assert!(!started);
        assert!(matches!(e, HvError::Conflict(_)), "{e:?}");
        assert!(
            e.to_string()
                .contains("/dev/keel-san/d2 is active on another node"),
            "{e}"
        );
        f.assert_done();
    }

    #[test]
    fn a_vm_without_such_disks_starts_without_asking_lvm() {
        let (f, s) = shared(Fake::new());
        s.with_disks_active("vm 1", &["/var/lib/keel/images/a.qcow2".into()], || Ok(()))
            .unwrap();
        f.assert_done();
    }

    #[test]
    fn the_sweep_releases_only_active_unopened_disks_of_volume_pools() {
        let (f, s) = shared(
            Fake::new()
                .expect(&vgs(), Reply::ok(VGS))
                .expect(&lvs(), Reply::ok(LVS))
                .expect(
                    &argv(lvm::lvchange("keel-san", "d1", Activation::Off)),
                    Reply::ok(""),
                ),
        );
        // d0 is open (a running VM), d2 inactive, keel-fs/fs belongs to a GFS2 pool
        assert_eq!(s.release_idle().unwrap(), ["/dev/keel-san/d1"]);
        f.assert_done();
    }

    #[test]
    fn a_delete_of_a_disk_active_elsewhere_names_the_cause() {
        let (f, s) = shared(
            Fake::new()
                .expect(&argv(lvm::lockstart("keel-san")), Reply::ok(""))
                .expect(
                    &argv(lvm::lvremove("keel-san", "d2")),
                    Reply::fail(5, "  LV locked by other host: keel-san/d2\n"),
                ),
        );
        let e = s.delete_volume(&pool(), "d2").unwrap_err();
        assert!(matches!(e, HvError::Conflict(_)), "{e:?}");
        assert!(e.to_string().contains("active on another node"), "{e}");
        assert!(matches!(
            s.delete_volume(&pool(), "d0"),
            Err(HvError::Conflict(_))
        ));
        f.assert_done();
    }

    #[test]
    fn a_held_disk_is_left_to_its_operation_until_unheld() {
        let (f, s) = shared(
            Fake::new()
                .expect(&vgs(), Reply::ok(VGS))
                .expect(&argv(lvm::lockstart("keel-san")), Reply::ok(""))
                .expect(
                    &argv(lvm::lvchange("keel-san", "d1", Activation::Exclusive)),
                    Reply::ok(""),
                )
                // the sweep: d1 is active and not open, but held
                .expect(&vgs(), Reply::ok(VGS))
                .expect(&lvs(), Reply::ok(LVS))
                // the unhold: released, as nothing opened it
                .expect(&vgs(), Reply::ok(VGS))
                .expect(&lvs(), Reply::ok(LVS))
                .expect(
                    &argv(lvm::lvchange("keel-san", "d1", Activation::Off)),
                    Reply::ok(""),
                ),
        );
        let held = s
            .hold("backup of VM 101", &["/dev/keel-san/d1".into()])
            .unwrap();
        assert_eq!(held, ["/dev/keel-san/d1"]);
        assert!(s.release_idle().unwrap().is_empty());
        s.unhold(&held);
        f.assert_done();
    }
}
