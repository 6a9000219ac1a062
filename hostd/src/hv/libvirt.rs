//! The real engine: libvirtd (QEMU driver, or any URI such as `test:///default`).

use std::sync::Mutex;

use keel_api::network::{NetworkInfo, NetworkKind};
use keel_api::storage::{PoolInfo, VolumeInfo};
use keel_api::vm::{DiskFormat, VmState};
use tracing::debug;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::ErrorNumber;
use virt::network::Network;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

use super::shared_lvm::{SharedLvm, VolumePool};
use super::thin::ThinPools;
use super::{
    BlockCounters, DomainRow, DomainStats, HvError, HvResult, Hypervisor, NetCounters, Power,
    SnapshotRow,
};
use crate::domain::KEEL_NS;
use crate::xml::Element;

pub struct Libvirt {
    uri: String,
    conn: Mutex<Option<Connect>>,
    /// Node-local `lvm-thin` pools, which libvirt does not know (LVM is their record).
    thin: ThinPools,
    /// `iscsi-lvm` cluster pools (shared VGs whose LVs are VM disks), unknown to libvirt too.
    san: SharedLvm,
}

/// The block devices a domain's disks name (`<source dev=…>`).
fn block_sources(xml: &str) -> Vec<String> {
    let Ok(d) = Element::parse(xml) else {
        return Vec::new();
    };
    d.descendants("disk")
        .into_iter()
        .filter_map(|disk| disk.find("source")?.get_attr("dev"))
        .map(str::to_string)
        .collect()
}

fn engine(op: &'static str) -> impl Fn(virt::error::Error) -> HvError {
    move |e| {
        let code = e.code();
        let msg = e.message().to_string();
        if code.is_known_and(|c| {
            matches!(
                c,
                ErrorNumber::NoDomain
                    | ErrorNumber::NoNetwork
                    | ErrorNumber::NoStoragePool
                    | ErrorNumber::NoStorageVolume
                    | ErrorNumber::NoDomainMetadata
            )
        }) {
            HvError::NotFound(msg)
        } else if code.is_known_and(|c| matches!(c, ErrorNumber::OperationInvalid)) {
            HvError::Conflict(msg)
        } else if code.is_known_and(|c| matches!(c, ErrorNumber::NoSupport)) {
            // Not a failure of the engine: this node's libvirt driver cannot do it (libvirt's
            // test driver setting a VNC password, say). The caller can do nothing but choose
            // another node or operation: 409, with libvirt's words.
            HvError::Conflict(format!("this node's libvirt cannot {op}: {msg}"))
        } else {
            HvError::Engine { op, msg }
        }
    }
}

fn map_state(s: DomainState) -> VmState {
    match s {
        DomainState::Running | DomainState::Blocked => VmState::Running,
        DomainState::Paused => VmState::Paused,
        DomainState::Shutdown => VmState::Shutdown,
        DomainState::Shutoff | DomainState::NoState => VmState::Stopped,
        DomainState::Crashed => VmState::Crashed,
        DomainState::PMSuspended => VmState::Suspended,
    }
}

impl Libvirt {
    /// Connect now (fails fast with a clear error when libvirtd is not running).
    pub fn connect(uri: &str) -> HvResult<Self> {
        Self::connect_with(uri, std::sync::Arc::new(keel_runner::System))
    }

    /// [`Libvirt::connect`], with LVM's commands (the `lvm-thin` pools) run by `runner`.
    pub fn connect_with(
        uri: &str,
        runner: std::sync::Arc<dyn keel_runner::Runner>,
    ) -> HvResult<Self> {
        // libvirt prints every error to stderr by default; we report them ourselves.
        virt::error::clear_error_callback();
        let c = Connect::open(Some(uri)).map_err(engine("connect"))?;
        Ok(Libvirt {
            uri: uri.to_string(),
            conn: Mutex::new(Some(c)),
            thin: ThinPools::new(runner.clone()),
            san: SharedLvm::new(runner),
        })
    }

    /// The `iscsi-lvm` pool `name` (its VG and LVs) when libvirt has no pool of that name.
    fn san_pool(&self, c: &Connect, name: &str) -> HvResult<Option<VolumePool>> {
        if c.lookup_storage_pool_by_name(name).is_ok() {
            return Ok(None);
        }
        self.san.find(name)
    }

    /// The thin pool `name` (with the LVM report it was found in) when libvirt has no pool of
    /// that name.
    fn thin_pool(
        &self,
        c: &Connect,
        name: &str,
    ) -> HvResult<Option<(Vec<keel_storage::thin::Lv>, keel_storage::thin::Lv)>> {
        if c.lookup_storage_pool_by_name(name).is_ok() {
            return Ok(None);
        }
        self.thin.find(name)
    }

    /// A live connection, reconnecting once if libvirtd restarted. The lock covers only this
    /// check: libvirt's connection is thread-safe, so calls run concurrently on their own
    /// reference (one slow domain operation never queues every other request behind it;
    /// exclusion per VM, pool or network is the task layer's job).
    fn conn(&self) -> HvResult<Connect> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let alive = g.as_ref().is_some_and(|c| c.is_alive().unwrap_or(false));
        if !alive {
            debug!(uri = %self.uri, "reconnecting to libvirt");
            *g = Some(Connect::open(Some(&self.uri)).map_err(engine("connect"))?);
        }
        g.as_ref().cloned().ok_or_else(|| HvError::Engine {
            op: "connect",
            msg: "no connection".into(),
        })
    }

    /// Run `f` with a live connection (see [`Libvirt::conn`]).
    fn with<T>(&self, f: impl FnOnce(&Connect) -> HvResult<T>) -> HvResult<T> {
        let c = self.conn()?;
        f(&c)
    }

    fn dom(c: &Connect, name: &str) -> HvResult<Domain> {
        c.lookup_domain_by_name(name)
            .map_err(|e| match engine("lookup domain")(e) {
                HvError::NotFound(_) => HvError::NotFound(format!("domain {name:?} not found")),
                other => other,
            })
    }

    fn pool_h(c: &Connect, name: &str) -> HvResult<StoragePool> {
        c.lookup_storage_pool_by_name(name)
            .map_err(|e| match engine("lookup pool")(e) {
                HvError::NotFound(_) => {
                    HvError::NotFound(format!("storage pool {name:?} not found"))
                }
                other => other,
            })
    }

    fn row(&self, d: &Domain) -> HvResult<DomainRow> {
        let name = d.name().map_err(engine("domain name"))?;
        let info = d.info().map_err(engine("domain info"))?;
        let state = map_state(info.state.unwrap_or(DomainState::NoState));
        let keel_metadata = d
            .metadata(sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(KEEL_NS), 0)
            .ok();
        let started_at = if state.is_active() {
            self.started_at(&name)
        } else {
            None
        };
        Ok(DomainRow {
            uuid: d.uuid_string().map_err(engine("domain uuid"))?,
            name,
            state,
            vcpus: info.nr_virt_cpu,
            memory_kib: info.memory,
            max_memory_kib: info.max_mem,
            cpu_time_ns: info.cpu_time,
            keel_metadata,
            started_at,
        })
    }

    /// libvirt writes `/run/libvirt/qemu/NAME.pid` when it starts QEMU: its mtime is the start.
    fn started_at(&self, name: &str) -> Option<i64> {
        if !self.uri.starts_with("qemu:///system") {
            return None;
        }
        let m = std::fs::metadata(format!("/run/libvirt/qemu/{name}.pid")).ok()?;
        let t = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        i64::try_from(t.as_secs()).ok()
    }

    fn pool_info(p: &StoragePool) -> HvResult<PoolInfo> {
        let name = p.name().map_err(engine("pool name"))?;
        let info = p.info().map_err(engine("pool info"))?;
        let xml = p.xml_desc(0).map_err(engine("pool xml"))?;
        let el = Element::parse(&xml).map_err(|e| HvError::Engine {
            op: "pool xml",
            msg: e.to_string(),
        })?;
        Ok(PoolInfo {
            name,
            kind: el.get_attr("type").unwrap_or("").to_string(),
            path: el.path_text("target/path").map(str::to_string),
            active: p.is_active().unwrap_or(false),
            capacity: info.capacity,
            allocation: info.allocation,
            available: info.available,
        })
    }

    /// Volume `name` of pool `p`. libvirt lists a pool's volumes from its last scan, so a
    /// volume another node wrote into a shared or cluster pool (the same directory on every
    /// node) is unknown here until the pool is scanned again: on a miss the pool is refreshed
    /// once and looked up again.
    fn vol_h(p: &StoragePool, pool: &str, name: &str) -> HvResult<StorageVol> {
        if let Ok(v) = p.lookup_storage_vol_by_name(name) {
            return Ok(v);
        }
        if p.is_active().unwrap_or(false) && p.refresh(0).is_ok() {
            if let Ok(v) = p.lookup_storage_vol_by_name(name) {
                return Ok(v);
            }
        }
        Err(HvError::NotFound(format!(
            "volume {name:?} in pool {pool:?} not found"
        )))
    }

    fn vol_info(v: &StorageVol) -> HvResult<VolumeInfo> {
        let name = v.name().map_err(engine("volume name"))?;
        let info = v.info().map_err(engine("volume info"))?;
        let xml = v.xml_desc(0).map_err(engine("volume xml"))?;
        let el = Element::parse(&xml).map_err(|e| HvError::Engine {
            op: "volume xml",
            msg: e.to_string(),
        })?;
        let mut format = el
            .path("target/format")
            .and_then(|f| f.get_attr("type"))
            .unwrap_or("raw")
            .to_string();
        if format == "raw" && name.to_ascii_lowercase().ends_with(".iso") || format == "iso" {
            format = "iso".into();
        }
        Ok(VolumeInfo {
            path: v.path().map_err(engine("volume path"))?,
            name,
            format,
            capacity: info.capacity,
            allocation: info.allocation,
            used_by: Vec::new(),
        })
    }

    fn net_info(n: &Network) -> HvResult<NetworkInfo> {
        let xml = n.xml_desc(0).map_err(engine("network xml"))?;
        let el = Element::parse(&xml).map_err(|e| HvError::Engine {
            op: "network xml",
            msg: e.to_string(),
        })?;
        let fwd = el.find("forward").and_then(|f| f.get_attr("mode"));
        let kind = match fwd {
            Some("nat") => NetworkKind::Nat,
            Some("bridge") => NetworkKind::Bridge,
            None => NetworkKind::Isolated,
            Some(_) => NetworkKind::Other,
        };
        let cidr = el.find("ip").and_then(|ip| {
            let addr = ip.get_attr("address")?;
            let prefix = match (ip.get_attr("prefix"), ip.get_attr("netmask")) {
                (Some(p), _) => p.parse().ok()?,
                (None, Some(m)) => m
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
                    .map(|m| u32::from(m).count_ones())?,
                _ => 24,
            };
            Some(format!("{addr}/{prefix}"))
        });
        Ok(NetworkInfo {
            name: n.name().map_err(engine("network name"))?,
            kind,
            bridge: el
                .find("bridge")
                .and_then(|b| b.get_attr("name"))
                .map(str::to_string),
            active: n.is_active().unwrap_or(false),
            autostart: n.autostart().unwrap_or(false),
            cidr,
            used_by: Vec::new(),
        })
    }
}

impl Hypervisor for Libvirt {
    fn version(&self) -> HvResult<String> {
        self.with(|c| {
            let lv = c.lib_version().map_err(engine("version"))?;
            let hv = c.hyp_version().unwrap_or(0);
            let f = |v: u32| format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000);
            Ok(format!(
                "libvirt {}, hypervisor {} {}",
                f(lv),
                c.driver_type().unwrap_or_default(),
                f(hv)
            ))
        })
    }

    fn list_domains(&self) -> HvResult<Vec<DomainRow>> {
        self.with(|c| {
            let doms = c.list_all_domains(0).map_err(engine("list domains"))?;
            let mut out = Vec::with_capacity(doms.len());
            for d in &doms {
                match self.row(d) {
                    Ok(r) => out.push(r),
                    // A domain undefined between the list and the lookup is simply gone.
                    Err(HvError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    fn domain(&self, name: &str) -> HvResult<DomainRow> {
        self.with(|c| self.row(&Self::dom(c, name)?))
    }

    fn domain_xml(&self, name: &str, inactive: bool) -> HvResult<String> {
        self.with(|c| {
            let mut flags = sys::VIR_DOMAIN_XML_SECURE;
            if inactive {
                flags |= sys::VIR_DOMAIN_XML_INACTIVE;
            }
            Self::dom(c, name)?
                .xml_desc(flags)
                .map_err(engine("dumpxml"))
        })
    }

    fn define(&self, xml: &str) -> HvResult<()> {
        self.with(|c| {
            c.define_domain_xml(xml)
                .map(|_| ())
                .map_err(engine("define"))
        })
    }

    fn undefine(&self, name: &str) -> HvResult<()> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            // snapshot metadata goes with the definition (hostd::snapshots removes the
            // snapshots themselves first when the volumes stay); checkpoints (backups' dirty
            // bitmaps, docs/backups.md) would otherwise make libvirt refuse
            match d.undefine_flags(
                sys::VIR_DOMAIN_UNDEFINE_NVRAM
                    | sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
            ) {
                Ok(()) => Ok(()),
                // Drivers without NVRAM/managed-save support (libvirt's test driver, some remote
                // ones) refuse the flags themselves; a domain that has neither can be undefined
                // plainly. One that has them makes the plain undefine fail too, and the first
                // error is the one reported.
                Err(first)
                    if matches!(
                        first.code(),
                        virt::enumutil::Enum::Known(virt::error::ErrorNumber::InvalidArg)
                    ) =>
                {
                    d.undefine().map_err(|_| engine("undefine")(first))
                }
                Err(e) => Err(engine("undefine")(e)),
            }
        })
    }

    fn power(&self, name: &str, op: Power) -> HvResult<()> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            // iscsi-lvm disks: active exclusively here before QEMU opens them, released once
            // it is gone (a guest that powers off by itself: the reconciler's sweep)
            if matches!(op, Power::Start | Power::Destroy) {
                let disks = block_sources(&d.xml_desc(0).map_err(engine("domain xml"))?);
                if op == Power::Start {
                    return self
                        .san
                        .with_disks_active(&format!("VM {name}"), &disks, || {
                            d.create().map(|_| ()).map_err(engine("power"))
                        });
                }
                d.destroy().map_err(engine("power"))?;
                if let Err(e) = self.san.release(&disks) {
                    tracing::warn!("releasing the iscsi-lvm disks of {name}: {e}");
                }
                return Ok(());
            }
            let r = match op {
                Power::Start => d.create(),
                Power::Shutdown => d.shutdown(),
                Power::Destroy => d.destroy(),
                Power::Reboot => d.reboot(sys::VIR_DOMAIN_REBOOT_DEFAULT),
                Power::Reset => d.reset(),
                Power::Suspend => d.suspend(),
                Power::Resume => d.resume(),
            };
            r.map(|_| ()).map_err(engine("power"))
        })
    }

    fn block_counters(&self, name: &str, target: &str) -> HvResult<BlockCounters> {
        self.with(|c| {
            let s = Self::dom(c, name)?
                .block_stats(target)
                .map_err(engine("block stats"))?;
            Ok(BlockCounters {
                rd_bytes: s.rd_bytes,
                wr_bytes: s.wr_bytes,
                rd_req: s.rd_req,
                wr_req: s.wr_req,
            })
        })
    }

    fn net_counters(&self, name: &str, mac: &str) -> HvResult<NetCounters> {
        self.with(|c| {
            let s = Self::dom(c, name)?
                .interface_stats(mac)
                .map_err(engine("interface stats"))?;
            Ok(NetCounters {
                rx_bytes: s.rx_bytes,
                tx_bytes: s.tx_bytes,
                rx_packets: s.rx_packets,
                tx_packets: s.tx_packets,
            })
        })
    }

    fn domain_stats(&self, name: &str) -> HvResult<DomainStats> {
        self.with(|c| {
            let dom = Self::dom(c, name)?;
            let info = dom.info().map_err(engine("domain info"))?;
            let state = map_state(info.state.unwrap_or(DomainState::NoState));
            let mut st = DomainStats {
                active: state.is_active(),
                vcpus: info.nr_virt_cpu,
                cpu_time_ns: info.cpu_time,
                memory_kib: info.memory,
                ..DomainStats::default()
            };
            if !st.active {
                return Ok(st);
            }
            // balloon statistics: present when the guest runs a balloon driver
            if let Ok(mem) = dom.memory_stats(0) {
                let tag = |t: u32| mem.iter().find(|m| m.tag == t).map(|m| m.val);
                if let Some(actual) = tag(sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON) {
                    st.memory_kib = actual;
                }
                st.rss_kib = tag(sys::VIR_DOMAIN_MEMORY_STAT_RSS);
                if let (Some(avail), Some(unused)) = (
                    tag(sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE),
                    tag(sys::VIR_DOMAIN_MEMORY_STAT_UNUSED),
                ) {
                    st.guest_used_kib = Some(avail.saturating_sub(unused));
                }
            }
            let live = dom.xml_desc(0).map_err(engine("dumpxml"))?;
            let (disks, nics) = stats_devices(&live)?;
            // a device without statistics (an empty CD-ROM drive) adds nothing
            for t in disks {
                if let Ok(b) = dom.block_stats(&t) {
                    st.block.rd_bytes += b.rd_bytes.max(0);
                    st.block.wr_bytes += b.wr_bytes.max(0);
                    st.block.rd_req += b.rd_req.max(0);
                    st.block.wr_req += b.wr_req.max(0);
                }
            }
            for n in nics {
                if let Ok(i) = dom.interface_stats(&n) {
                    st.net.rx_bytes += i.rx_bytes.max(0);
                    st.net.tx_bytes += i.tx_bytes.max(0);
                    st.net.rx_packets += i.rx_packets.max(0);
                    st.net.tx_packets += i.tx_packets.max(0);
                }
            }
            Ok(st)
        })
    }

    fn set_vnc_password(&self, name: &str, password: &str, valid_to: i64) -> HvResult<()> {
        self.with(|c| {
            let dom = Self::dom(c, name)?;
            let live = dom
                .xml_desc(sys::VIR_DOMAIN_XML_SECURE)
                .map_err(engine("dumpxml"))?;
            let xml = vnc_password_update(&live, password, valid_to)?;
            dom.update_device_flags(&xml, sys::VIR_DOMAIN_AFFECT_LIVE)
                .map(|_| ())
                .map_err(engine("set the VNC password"))
        })
    }

    fn set_live_vcpus(&self, name: &str, vcpus: u32) -> HvResult<()> {
        self.with(|c| {
            Self::dom(c, name)?
                .set_vcpus_flags(vcpus, sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(engine("set vcpus"))
        })
    }

    fn set_live_memory(&self, name: &str, mib: u64) -> HvResult<()> {
        self.with(|c| {
            Self::dom(c, name)?
                .set_memory_flags(mib * 1024, sys::VIR_DOMAIN_AFFECT_LIVE)
                .map(|_| ())
                .map_err(engine("set memory"))
        })
    }

    fn list_pools(&self) -> HvResult<Vec<PoolInfo>> {
        self.with(|c| {
            let pools = c.list_all_storage_pools(0).map_err(engine("list pools"))?;
            // a pool removed between the listing and its details is simply gone
            let mut out = Vec::with_capacity(pools.len());
            for p in &pools {
                match Self::pool_info(p) {
                    Ok(i) => out.push(i),
                    Err(HvError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            // LVM failing must not hide libvirt's pools (nor stop VM creation on them)
            match self.thin.list() {
                Ok(thin) => {
                    for t in thin {
                        if !out.iter().any(|p| p.name == t.name) {
                            out.push(t);
                        }
                    }
                }
                Err(e) => tracing::warn!("lvm-thin pools not listed: {e}"),
            }
            match self.san.list() {
                Ok(san) => {
                    for t in san {
                        if !out.iter().any(|p| p.name == t.name) {
                            out.push(t);
                        }
                    }
                }
                Err(e) => tracing::warn!("iscsi-lvm pools not listed: {e}"),
            }
            Ok(out)
        })
    }

    fn pool(&self, name: &str) -> HvResult<PoolInfo> {
        self.with(|c| {
            if let Some((_, p)) = self.thin_pool(c, name)? {
                return Ok(super::thin::pool_info(&p));
            }
            if let Some(p) = self.san_pool(c, name)? {
                return Ok(super::shared_lvm::pool_info(&p));
            }
            Self::pool_info(&Self::pool_h(c, name)?)
        })
    }

    fn release_idle_disks(&self) -> HvResult<Vec<String>> {
        self.san.release_idle()
    }

    fn hold_disks(&self, who: &str, paths: &[String]) -> HvResult<Vec<String>> {
        self.san.hold(who, paths)
    }

    fn unhold_disks(&self, paths: &[String]) {
        self.san.unhold(paths)
    }

    fn ensure_dir_pool(&self, name: &str, path: &str) -> HvResult<()> {
        self.with(|c| {
            let p = match c.lookup_storage_pool_by_name(name) {
                Ok(p) => p,
                Err(_) => {
                    let xml = Element::new("pool")
                        .attr("type", "dir")
                        .child(Element::new("name").text(name))
                        .child(Element::new("target").child(Element::new("path").text(path)))
                        .render();
                    let p = c
                        .define_storage_pool_xml(&xml, 0)
                        .map_err(engine("define pool"))?;
                    p.build(0).map_err(engine("build pool"))?;
                    p
                }
            };
            if !p.is_active().unwrap_or(false) {
                p.create(0).map_err(engine("start pool"))?;
            }
            p.set_autostart(true).map_err(engine("autostart pool"))?;
            Ok(())
        })
    }

    fn undefine_pool(&self, name: &str) -> HvResult<()> {
        self.with(|c| {
            let Ok(p) = c.lookup_storage_pool_by_name(name) else {
                return Ok(());
            };
            if p.is_active().unwrap_or(false) {
                p.destroy().map_err(engine("stop pool"))?;
            }
            p.undefine().map_err(engine("undefine pool"))
        })
    }

    fn refresh_pool(&self, name: &str) -> HvResult<()> {
        self.with(|c| {
            if self.thin_pool(c, name)?.is_some() || self.san_pool(c, name)?.is_some() {
                return Ok(()); // every read of an LVM pool asks LVM afresh
            }
            Self::pool_h(c, name)?
                .refresh(0)
                .map_err(engine("refresh pool"))
        })
    }

    fn list_volumes(&self, pool: &str) -> HvResult<Vec<VolumeInfo>> {
        self.with(|c| {
            if let Some((lvs, tp)) = self.thin_pool(c, pool)? {
                return Ok(ThinPools::volumes(&lvs, &tp));
            }
            if let Some(p) = self.san_pool(c, pool)? {
                return Ok(SharedLvm::volumes(&p));
            }
            let p = Self::pool_h(c, pool)?;
            let vols = p.list_all_volumes(0).map_err(engine("list volumes"))?;
            let mut out: Vec<VolumeInfo> = Vec::with_capacity(vols.len());
            for v in &vols {
                match Self::vol_info(v) {
                    // a dir pool lists every file, hidden ones too: those are Keel's own (a
                    // shared pool's marker, an upload in progress), never a volume's name
                    Ok(i) if i.name.starts_with('.') => {}
                    Ok(i) => out.push(i),
                    // deleted between the listing and its details
                    Err(HvError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn volume(&self, pool: &str, name: &str) -> HvResult<VolumeInfo> {
        self.with(|c| {
            if let Some((lvs, tp)) = self.thin_pool(c, pool)? {
                return ThinPools::volume(&lvs, &tp, name);
            }
            if let Some(p) = self.san_pool(c, pool)? {
                return SharedLvm::volume(&p, name);
            }
            let p = Self::pool_h(c, pool)?;
            Self::vol_info(&Self::vol_h(&p, pool, name)?)
        })
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        bytes: u64,
        format: DiskFormat,
    ) -> HvResult<String> {
        self.with(|c| {
            if let Some((lvs, tp)) = self.thin_pool(c, pool)? {
                return self.thin.create_volume(&lvs, &tp, name, bytes, format);
            }
            if let Some(p) = self.san_pool(c, pool)? {
                return self.san.create_volume(&p, name, bytes, format);
            }
            let p = Self::pool_h(c, pool)?;
            if Self::vol_h(&p, pool, name).is_ok() {
                return Err(HvError::Conflict(format!(
                    "volume {name:?} already exists in pool {pool:?}"
                )));
            }
            let xml = Element::new("volume")
                .child(Element::new("name").text(name))
                .child(Element::new("capacity").attr("unit", "bytes").text(bytes))
                .child(Element::new("allocation").attr("unit", "bytes").text(0))
                .child(
                    Element::new("target")
                        .child(Element::new("format").attr("type", format.as_str()))
                        // qcow2 version 3: libvirt's default (0.10, version 2) cannot be grown
                        // once it holds internal snapshots
                        .child_opt(
                            (format == DiskFormat::Qcow2)
                                .then(|| Element::new("compat").text("1.1")),
                        ),
                )
                .render();
            let v = StorageVol::create_xml(&p, &xml, 0).map_err(engine("create volume"))?;
            v.path().map_err(engine("volume path"))
        })
    }

    fn delete_volume(&self, pool: &str, name: &str) -> HvResult<()> {
        self.with(|c| {
            if let Some((lvs, tp)) = self.thin_pool(c, pool)? {
                return self.thin.delete_volume(&lvs, &tp, name);
            }
            if let Some(p) = self.san_pool(c, pool)? {
                return self.san.delete_volume(&p, name);
            }
            let p = Self::pool_h(c, pool)?;
            Self::vol_h(&p, pool, name)?
                .delete(0)
                .map_err(engine("delete volume"))
        })
    }

    fn volume_by_path(&self, path: &str) -> HvResult<Option<(String, String)>> {
        if path.starts_with("/dev/") {
            if let Ok(Some(found)) = self.thin.by_path(path) {
                return Ok(Some(found));
            }
            if let Ok(Some(found)) = self.san.by_path(path) {
                return Ok(Some(found));
            }
        }
        self.with(|c| match c.lookup_storage_vol_by_path(path) {
            Ok(v) => {
                let p = v.lookup_storage_pool().map_err(engine("pool of volume"))?;
                Ok(Some((
                    p.name().map_err(engine("pool name"))?,
                    v.name().map_err(engine("volume name"))?,
                )))
            }
            Err(_) => Ok(None),
        })
    }

    fn list_networks(&self) -> HvResult<Vec<NetworkInfo>> {
        self.with(|c| {
            let nets = c.list_all_networks(0).map_err(engine("list networks"))?;
            // a network removed between the listing and its details is simply gone
            let mut out = Vec::with_capacity(nets.len());
            for n in &nets {
                match Self::net_info(n) {
                    Ok(i) => out.push(i),
                    Err(HvError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    fn create_network(&self, xml: &str, autostart: bool) -> HvResult<()> {
        self.with(|c| {
            let n = c
                .define_network_xml(xml)
                .map_err(engine("define network"))?;
            if let Err(e) = n.create() {
                let _ = n.undefine();
                return Err(engine("start network")(e));
            }
            n.set_autostart(autostart)
                .map_err(engine("autostart network"))?;
            Ok(())
        })
    }

    fn set_network_active(&self, name: &str, active: bool) -> HvResult<()> {
        self.with(|c| {
            let n = c
                .lookup_network_by_name(name)
                .map_err(|_| HvError::NotFound(format!("network {name:?} not found")))?;
            if n.is_active().map_err(engine("network state"))? == active {
                return Ok(());
            }
            if active {
                n.create().map_err(engine("start network"))
            } else {
                n.destroy().map_err(engine("stop network"))
            }
        })
    }

    fn set_network_autostart(&self, name: &str, autostart: bool) -> HvResult<()> {
        self.with(|c| {
            c.lookup_network_by_name(name)
                .map_err(|_| HvError::NotFound(format!("network {name:?} not found")))?
                .set_autostart(autostart)
                .map_err(engine("autostart network"))
        })
    }

    fn delete_network(&self, name: &str) -> HvResult<()> {
        self.with(|c| {
            let n = c
                .lookup_network_by_name(name)
                .map_err(|_| HvError::NotFound(format!("network {name:?} not found")))?;
            if n.is_active().unwrap_or(false) {
                n.destroy().map_err(engine("stop network"))?;
            }
            n.undefine().map_err(engine("undefine network"))
        })
    }

    fn list_snapshots(&self, name: &str) -> HvResult<Vec<SnapshotRow>> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            let snaps = d.list_all_snapshots(0).map_err(engine("list snapshots"))?;
            let mut out = Vec::with_capacity(snaps.len());
            for s in &snaps {
                let xml = s.xml_desc(0).map_err(engine("snapshot XML"))?;
                let current = s.is_current(0).map_err(engine("current snapshot"))?;
                out.push(snapshot_row(&xml, current)?);
            }
            Ok(out)
        })
    }

    fn snapshot_domain_xml(&self, name: &str, snapshot: &str) -> HvResult<String> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            let s = Domain::lookup_snapshot_by_name(&d, snapshot, 0)
                .map_err(|_| HvError::NotFound(format!("snapshot {snapshot:?} not found")))?;
            let xml = s
                .xml_desc(sys::VIR_DOMAIN_SNAPSHOT_XML_SECURE)
                .map_err(engine("snapshot XML"))?;
            snapshot_domain(&xml)
        })
    }

    fn create_snapshot(&self, name: &str, xml: &str) -> HvResult<()> {
        self.with(|c| {
            Self::dom(c, name)?
                .create_snapshot_xml(xml, 0)
                .map(|_| ())
                .map_err(engine("create snapshot"))
        })
    }

    fn revert_snapshot(&self, name: &str, snapshot: &str, run: bool) -> HvResult<()> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            let s = Domain::lookup_snapshot_by_name(&d, snapshot, 0)
                .map_err(|_| HvError::NotFound(format!("snapshot {snapshot:?} not found")))?;
            let flags = if run {
                sys::VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
            } else {
                0
            };
            s.revert(flags).map_err(engine("revert snapshot"))
        })
    }

    fn delete_snapshot(&self, name: &str, snapshot: &str) -> HvResult<()> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            let s = Domain::lookup_snapshot_by_name(&d, snapshot, 0)
                .map_err(|_| HvError::NotFound(format!("snapshot {snapshot:?} not found")))?;
            s.delete(0).map_err(engine("delete snapshot"))
        })
    }

    fn block_resize(&self, name: &str, target: &str, bytes: u64) -> HvResult<()> {
        self.with(|c| {
            Self::dom(c, name)?
                .block_resize(target, bytes, sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES)
                .map_err(engine("block resize"))
        })
    }

    fn resize_volume(&self, pool: &str, volume: &str, bytes: u64) -> HvResult<()> {
        self.with(|c| {
            if let Some((lvs, tp)) = self.thin_pool(c, pool)? {
                return self.thin.resize_volume(&lvs, &tp, volume, bytes);
            }
            if let Some(p) = self.san_pool(c, pool)? {
                return self.san.resize_volume(&p, volume, bytes);
            }
            let p = Self::pool_h(c, pool)?;
            Self::vol_h(&p, pool, volume)?
                .resize(bytes, 0)
                .map_err(engine("resize volume"))
        })
    }

    fn attach_device_live(&self, name: &str, xml: &str) -> HvResult<()> {
        self.with(|c| {
            Self::dom(c, name)?
                .attach_device_flags(xml, sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(engine("attach device"))
        })
    }

    fn detach_device_live(&self, name: &str, xml: &str) -> HvResult<()> {
        self.with(|c| {
            Self::dom(c, name)?
                .detach_device_flags(xml, sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(engine("detach device"))
        })
    }

    fn migratable_xml(&self, name: &str) -> HvResult<String> {
        self.with(|c| {
            Self::dom(c, name)?
                .xml_desc(sys::VIR_DOMAIN_XML_SECURE | sys::VIR_DOMAIN_XML_MIGRATABLE)
                .map_err(engine("dumpxml --migratable"))
        })
    }

    fn migrate(&self, name: &str, call: &super::MigrateCall) -> HvResult<()> {
        // A connection of its own: on the shared one, libvirt's job queries (progress,
        // abort) wait behind the migration call for its whole length.
        let own = Connect::open(Some(&self.uri)).map_err(engine("connect"))?;
        let r = (|| {
            let c = &own;
            let d = Self::dom(c, name)?;
            if let Some(ms) = call.max_downtime_ms {
                d.migrate_set_max_downtime(ms, 0)
                    .map_err(engine("migrate-setmaxdowntime"))?;
            }
            let params = virt::domain::MigrateParameters {
                uri: Some(call.migrate_uri.clone()),
                tls_destination: Some(call.tls_destination.clone()),
                dest_xml: Some(call.dest_xml.clone()),
                persist_xml: Some(call.persist_xml.clone()),
                migrate_disks: call.copy_disks.clone(),
                bandwidth: call.bandwidth_mib_s,
                ..Default::default()
            };
            let mut flags = sys::VIR_MIGRATE_LIVE
                | sys::VIR_MIGRATE_PEER2PEER
                | sys::VIR_MIGRATE_PERSIST_DEST
                | sys::VIR_MIGRATE_UNDEFINE_SOURCE
                | sys::VIR_MIGRATE_TLS;
            if !call.copy_disks.is_empty() {
                flags |= sys::VIR_MIGRATE_NON_SHARED_DISK;
            }
            if call.auto_converge {
                flags |= sys::VIR_MIGRATE_AUTO_CONVERGE;
            }
            if call.unsafe_shared {
                flags |= sys::VIR_MIGRATE_UNSAFE;
            }
            d.migrate_to_uri3(Some(&call.dest_uri), params, flags)
                .map_err(engine("migrate"))
        })();
        drop(own);
        r
    }

    fn job_progress(&self, name: &str) -> HvResult<Option<super::JobProgress>> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            Ok(job_progress(
                &job_stats(&d, 0).map_err(engine("domjobinfo"))?,
            ))
        })
    }

    fn abort_job(&self, name: &str) -> HvResult<()> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            // SAFETY: `d` is a live domain handle for the whole call; virDomainAbortJob only
            // reads it. The `virt` crate has no binding for this call.
            #[allow(unsafe_code)]
            let r = unsafe { sys::virDomainAbortJob(d.as_ptr()) };
            if r < 0 {
                return Err(engine("domjobabort")(virt::error::Error::last_error()));
            }
            Ok(())
        })
    }

    fn completed_job_at(&self, uri: &str, name: &str) -> HvResult<Option<super::JobProgress>> {
        let c = Connect::open(Some(uri)).map_err(engine("connect to the migration target"))?;
        let r = Self::dom(&c, name).and_then(|d| {
            job_stats(
                &d,
                sys::VIR_DOMAIN_JOB_STATS_COMPLETED | sys::VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED,
            )
            .map_err(engine("domjobinfo --completed"))
        });
        drop(c);
        Ok(job_progress(&r?))
    }

    fn copy_volume_to(
        &self,
        uri: &str,
        pool: &str,
        volume: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> HvResult<u64> {
        let c = self.conn()?;
        let v = Self::vol_h(&Self::pool_h(&c, pool)?, pool, volume)?;
        let info = v.info().map_err(engine("volume info"))?;
        let vxml = Element::parse(&v.xml_desc(0).map_err(engine("volume XML"))?).map_err(|e| {
            HvError::Engine {
                op: "volume XML",
                msg: e.to_string(),
            }
        })?;
        let format = vxml
            .path("target/format")
            .and_then(|f| f.get_attr("type"))
            .unwrap_or("raw")
            .to_string();
        let size = std::fs::metadata(v.path().map_err(engine("volume path"))?)
            .map(|m| m.len())
            .unwrap_or(info.allocation);
        let dc = Connect::open(Some(uri)).map_err(engine("connect to the migration target"))?;
        let dpool = Self::pool_h(&dc, pool)?;
        if Self::vol_h(&dpool, pool, volume).is_ok() {
            return Err(HvError::Conflict(format!(
                "volume {volume:?} already exists in pool {pool:?} on the target"
            )));
        }
        let xml = Element::new("volume")
            .child(Element::new("name").text(volume))
            .child(
                Element::new("capacity")
                    .attr("unit", "bytes")
                    .text(info.capacity),
            )
            .child(Element::new("allocation").attr("unit", "bytes").text(0))
            .child(Element::new("target").child(Element::new("format").attr("type", &format)))
            .render();
        let dv = StorageVol::create_xml(&dpool, &xml, 0)
            .map_err(engine("create volume on the target"))?;
        let up = virt::stream::Stream::new(&dc, 0).map_err(engine("stream"))?;
        dv.upload(&up, 0, 0, 0).map_err(engine("volume upload"))?;
        let down = virt::stream::Stream::new(&c, 0).map_err(engine("stream"))?;
        v.download(&down, 0, 0, 0)
            .map_err(engine("volume download"))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = down.recv(&mut buf).map_err(engine("volume download"))?;
            if n <= 0 {
                break;
            }
            let chunk = &buf[..n as usize];
            let mut off = 0;
            while off < chunk.len() {
                let w = up.send(&chunk[off..]).map_err(engine("volume upload"))?;
                if w <= 0 {
                    return Err(HvError::Engine {
                        op: "volume upload",
                        msg: "the target stopped accepting data".into(),
                    });
                }
                off += w as usize;
            }
            done += n as u64;
            progress(done, size);
        }
        down.finish().map_err(engine("volume download"))?;
        up.finish().map_err(engine("volume upload"))?;
        Ok(done)
    }

    fn delete_volume_at(&self, uri: &str, pool: &str, volume: &str) -> HvResult<()> {
        let dc = Connect::open(Some(uri)).map_err(engine("connect to the migration target"))?;
        match Self::pool_h(&dc, pool)?.lookup_storage_vol_by_name(volume) {
            Ok(v) => v.delete(0).map_err(engine("delete volume on the target")),
            Err(_) => Ok(()),
        }
    }

    fn cpu_models_at(&self, uri: &str, virttype: &str) -> HvResult<Vec<String>> {
        let dc = Connect::open(Some(uri)).map_err(engine("connect to the migration target"))?;
        let xml = dc
            .domain_capabilities(None, Some("x86_64"), None, Some(virttype), 0)
            .map_err(engine("domcapabilities"))?;
        drop(dc);
        let el = Element::parse(&xml).map_err(|e| HvError::Engine {
            op: "domcapabilities",
            msg: e.to_string(),
        })?;
        Ok(el
            .descendants("mode")
            .into_iter()
            .filter(|m| m.get_attr("name") == Some("custom"))
            .flat_map(|m| m.find_all("model"))
            .filter(|m| m.get_attr("usable") != Some("no"))
            .filter_map(|m| m.text.as_deref().map(|t| t.trim().to_string()))
            .collect())
    }

    fn define_at(&self, uri: &str, xml: &str) -> HvResult<()> {
        let dc = Connect::open(Some(uri)).map_err(engine("connect to the migration target"))?;
        dc.define_domain_xml(xml)
            .map(|_| ())
            .map_err(engine("define on the target"))
    }

    fn agent_facts(&self, name: &str) -> HvResult<super::AgentFacts> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            agent_timeout(&d, AGENT_QUERY_TIMEOUT_S)?;
            let params = guest_info(
                &d,
                sys::VIR_DOMAIN_GUEST_INFO_OS | sys::VIR_DOMAIN_GUEST_INFO_HOSTNAME,
            )
            .map_err(engine("guest info"))?;
            let mut facts = super::AgentFacts::default();
            for (k, v) in params {
                if k == "hostname" {
                    facts.hostname = Some(v);
                } else if let Some(f) = k.strip_prefix("os.") {
                    facts.os.push((f.to_string(), v));
                }
            }
            facts.interfaces = agent_interfaces(&d).map_err(engine("guest interfaces"))?;
            Ok(facts)
        })
    }

    fn agent_shutdown(&self, name: &str) -> HvResult<()> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            agent_timeout(&d, AGENT_QUERY_TIMEOUT_S)?;
            d.shutdown_flags(sys::VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)
                .map_err(engine("shutdown through the guest agent"))
        })
    }

    fn fs_freeze(&self, name: &str) -> HvResult<u32> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            agent_timeout(&d, AGENT_FREEZE_TIMEOUT_S)?;
            // SAFETY: `d` is a live domain handle for the call; no mount points are passed
            // (NULL, 0: every file system). The `virt` crate has no binding for this call.
            #[allow(unsafe_code)]
            let r = unsafe { sys::virDomainFSFreeze(d.as_ptr(), std::ptr::null_mut(), 0, 0) };
            if r < 0 {
                return Err(engine("fsfreeze")(virt::error::Error::last_error()));
            }
            Ok(u32::try_from(r).unwrap_or(0))
        })
    }

    fn fs_thaw(&self, name: &str) -> HvResult<u32> {
        self.with(|c| {
            let d = Self::dom(c, name)?;
            agent_timeout(&d, AGENT_FREEZE_TIMEOUT_S)?;
            // SAFETY: as in fs_freeze.
            #[allow(unsafe_code)]
            let r = unsafe { sys::virDomainFSThaw(d.as_ptr(), std::ptr::null_mut(), 0, 0) };
            if r < 0 {
                return Err(engine("fsthaw")(virt::error::Error::last_error()));
            }
            Ok(u32::try_from(r).unwrap_or(0))
        })
    }

    fn set_live_metadata(&self, name: &str, xml: &str) -> HvResult<()> {
        self.with(|c| {
            Self::dom(c, name)?
                .set_metadata(
                    sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
                    Some(xml),
                    Some("keel"),
                    Some(KEEL_NS),
                    sys::VIR_DOMAIN_AFFECT_LIVE,
                )
                .map_err(engine("set metadata"))
        })
    }
}

/// Seconds libvirt waits for the guest agent in queries and the shutdown request: a silent
/// agent must not hold an API request (libvirt's own default waits forever).
const AGENT_QUERY_TIMEOUT_S: i32 = 3;
/// Seconds for a freeze or thaw: the guest flushes its file systems first.
const AGENT_FREEZE_TIMEOUT_S: i32 = 30;

/// Bound the domain's guest agent calls (virDomainAgentSetResponseTimeout; the setting is the
/// domain's, so it is set before every call).
fn agent_timeout(d: &Domain, secs: i32) -> HvResult<()> {
    // SAFETY: `d` is a live domain handle for the call; the call only stores the value.
    #[allow(unsafe_code)]
    let r = unsafe { sys::virDomainAgentSetResponseTimeout(d.as_ptr(), secs, 0) };
    if r < 0 {
        return Err(engine("set the guest agent timeout")(
            virt::error::Error::last_error(),
        ));
    }
    Ok(())
}

/// virDomainInterfaceAddresses from the guest agent. The `virt` crate's binding frees the
/// strings but never the interfaces themselves (a leak on every call of a polled endpoint), so
/// here every interface is copied and then freed with virDomainInterfaceFree.
fn agent_interfaces(
    d: &Domain,
) -> Result<Vec<keel_api::agent::GuestInterface>, virt::error::Error> {
    use keel_api::agent::{GuestAddress, GuestInterface};
    let mut ifaces: *mut sys::virDomainInterfacePtr = std::ptr::null_mut();
    // SAFETY: `d` is a live domain handle; `ifaces` is a valid out-pointer; libvirt either
    // fails (nothing allocated) or sets it to an array of `n` interfaces it allocated.
    #[allow(unsafe_code)]
    let n = unsafe {
        sys::virDomainInterfaceAddresses(
            d.as_ptr(),
            &mut ifaces,
            sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
            0,
        )
    };
    if n < 0 {
        return Err(virt::error::Error::last_error());
    }
    let mut out = Vec::with_capacity(n as usize);
    if ifaces.is_null() {
        return Ok(out);
    }
    let text = |p: *const std::os::raw::c_char| -> Option<String> {
        // SAFETY: a non-null pointer here is a NUL-terminated string of the interface being
        // read, alive until it is freed below.
        #[allow(unsafe_code)]
        (!p.is_null()).then(|| {
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        })
    };
    // SAFETY: libvirt returned `n` interface pointers at `ifaces` (checked non-null), each
    // with `naddrs` addresses at `addrs`; everything is copied before each interface is freed
    // by virDomainInterfaceFree and the array by free(), as libvirt documents.
    #[allow(unsafe_code)]
    unsafe {
        for &ip in std::slice::from_raw_parts(ifaces, n as usize) {
            if ip.is_null() {
                continue;
            }
            let i = &*ip;
            let addrs = if i.addrs.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(i.addrs, i.naddrs as usize)
            };
            out.push(GuestInterface {
                name: text(i.name).unwrap_or_default(),
                mac: text(i.hwaddr).filter(|m| !m.is_empty()),
                addresses: addrs
                    .iter()
                    .filter_map(|a| {
                        Some(GuestAddress {
                            family: if a.type_ == sys::VIR_IP_ADDR_TYPE_IPV6 as i32 {
                                "ipv6".into()
                            } else {
                                "ipv4".into()
                            },
                            address: text(a.addr)?,
                            prefix: a.prefix,
                        })
                    })
                    .collect(),
            });
            sys::virDomainInterfaceFree(ip);
        }
        libc::free(ifaces.cast());
    }
    Ok(out)
}

/// virDomainGetGuestInfo's string parameters as (field, value) pairs (numbers are skipped:
/// the types asked for here report strings). The `virt` crate has no binding for it.
fn guest_info(d: &Domain, types: u32) -> Result<Vec<(String, String)>, virt::error::Error> {
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut n: std::os::raw::c_int = 0;
    // SAFETY: `d` is a live domain handle; the out-pointers are valid locals; libvirt either
    // fails (nothing allocated) or sets `params` to an array of `n` parameters it allocated.
    #[allow(unsafe_code)]
    let r = unsafe { sys::virDomainGetGuestInfo(d.as_ptr(), types, &mut params, &mut n, 0) };
    if r < 0 {
        return Err(virt::error::Error::last_error());
    }
    if params.is_null() || n <= 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(n as usize);
    // SAFETY: libvirt returned `n` initialised parameters at `params` (checked non-null); the
    // field names are NUL-terminated within their 80 bytes and a string parameter's value is
    // a NUL-terminated string libvirt owns; both are copied before the array is freed.
    #[allow(unsafe_code)]
    unsafe {
        for p in std::slice::from_raw_parts(params, n as usize) {
            if p.type_ != sys::VIR_TYPED_PARAM_STRING as i32 || p.value.s.is_null() {
                continue;
            }
            let field = std::ffi::CStr::from_ptr(p.field.as_ptr()).to_string_lossy();
            let value = std::ffi::CStr::from_ptr(p.value.s).to_string_lossy();
            out.push((field.into_owned(), value.into_owned()));
        }
        sys::virTypedParamsFree(params, n);
    }
    Ok(out)
}

/// A snapshot's facts from libvirt's `<domainsnapshot>` XML.
/// virDomainGetJobStats. The `virt` crate's `Domain::job_stats` builds a `Vec` from the
/// pointer libvirt returns, which is NULL when no job runs (the moment a migration ends or
/// before it starts): undefined behaviour that aborts the process. Here the parameters are
/// copied out of libvirt's array (strings are copied too) and the array is freed by libvirt.
fn job_stats(d: &Domain, flags: u32) -> Result<virt::domain::JobStats, virt::error::Error> {
    let mut kind: std::os::raw::c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut n: std::os::raw::c_int = 0;
    // SAFETY: `d` is a live domain handle; the out-pointers are valid locals; libvirt either
    // fails (nothing allocated) or sets `params` to an array of `n` parameters it allocated.
    #[allow(unsafe_code)]
    let r = unsafe { sys::virDomainGetJobStats(d.as_ptr(), &mut kind, &mut params, &mut n, flags) };
    if r < 0 {
        return Err(virt::error::Error::last_error());
    }
    if params.is_null() || n <= 0 {
        return Ok(virt::domain::JobStats {
            r#type: kind,
            ..Default::default()
        });
    }
    // SAFETY: libvirt returned `n` initialised parameters at `params` (checked non-null);
    // they are copied (the type is Copy, and the conversion below copies strings) before
    // libvirt frees its array, and never used afterwards.
    #[allow(unsafe_code)]
    let copied = unsafe { std::slice::from_raw_parts(params, n as usize) }.to_vec();
    let stats = virt::domain::JobStats::from((kind, copied));
    // SAFETY: the array and its strings were allocated by libvirt for this call.
    #[allow(unsafe_code)]
    unsafe {
        sys::virTypedParamsFree(params, n)
    };
    Ok(stats)
}

/// libvirt's job statistics as Keel's progress (None: no job, or none recorded).
fn job_progress(s: &virt::domain::JobStats) -> Option<super::JobProgress> {
    if s.r#type == sys::VIR_DOMAIN_JOB_NONE as i32 {
        return None;
    }
    Some(super::JobProgress {
        data_total: s.data_total.unwrap_or(0),
        data_processed: s.data_processed.unwrap_or(0),
        data_remaining: s.data_remaining.unwrap_or(0),
        mem_dirty_rate: s.mem_dirty_rate.unwrap_or(0),
        mem_iteration: s.mem_iteration.unwrap_or(0),
        disk_total: s.disk_total.unwrap_or(0),
        disk_processed: s.disk_processed.unwrap_or(0),
        time_elapsed_ms: s.time_elapsed.unwrap_or(0),
        downtime_ms: s.downtime,
    })
}

pub fn snapshot_row(xml: &str, current: bool) -> HvResult<SnapshotRow> {
    let bad = |m: String| HvError::Engine {
        op: "snapshot XML",
        msg: m,
    };
    let el = Element::parse(xml).map_err(|e| bad(e.to_string()))?;
    let name = el
        .path_text("name")
        .ok_or_else(|| bad("snapshot without a name".into()))?
        .to_string();
    let memory = el
        .find("memory")
        .and_then(|m| m.get_attr("snapshot"))
        .is_some_and(|m| m == "internal" || m == "external");
    Ok(SnapshotRow {
        description: el
            .find("description")
            .and_then(|d| d.text.clone())
            .filter(|d| !d.is_empty()),
        parent: el.path_text("parent/name").map(str::to_string),
        created: el
            .path_text("creationTime")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
        state: el.path_text("state").unwrap_or("").to_string(),
        memory,
        current,
        name,
    })
}

/// The `<domain>` element of libvirt's `<domainsnapshot>` XML, as a document of its own.
pub fn snapshot_domain(xml: &str) -> HvResult<String> {
    let bad = |m: String| HvError::Engine {
        op: "snapshot XML",
        msg: m,
    };
    let el = Element::parse(xml).map_err(|e| bad(e.to_string()))?;
    el.find("domain")
        .map(|d| d.render())
        .ok_or_else(|| bad("the snapshot carries no domain definition".into()))
}

/// The live `<graphics type='vnc'>` device of `domain_xml` with `passwd` and `passwdValidTo`
/// replaced: what `virDomainUpdateDeviceFlags` takes to change the password of a running VNC
/// server (everything else must stay as it is).
pub fn vnc_password_update(domain_xml: &str, password: &str, valid_to: i64) -> HvResult<String> {
    let bad = |m: String| HvError::Engine {
        op: "set the VNC password",
        msg: m,
    };
    let root = crate::xml::Element::parse(domain_xml).map_err(|e| bad(e.to_string()))?;
    let mut g = root
        .path("devices")
        .into_iter()
        .flat_map(|d| d.find_all("graphics"))
        .find(|g| g.get_attr("type") == Some("vnc"))
        .cloned()
        .ok_or_else(|| bad("the domain has no VNC graphics device".into()))?;
    g.attrs
        .retain(|(k, _)| k != "passwd" && k != "passwdValidTo");
    g.attrs.push(("passwd".into(), password.into()));
    g.attrs
        .push(("passwdValidTo".into(), utc_timestamp(valid_to)));
    Ok(g.render())
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC (libvirt's `passwdValidTo` format).
pub fn utc_timestamp(secs: i64) -> String {
    keel_api::time::utc(secs, 'T')
}

/// The disk targets (`vda`) and interface paths (host device, else MAC) of a live domain XML:
/// what libvirt's block and interface statistics take.
fn stats_devices(xml: &str) -> HvResult<(Vec<String>, Vec<String>)> {
    let dom = Element::parse(xml).map_err(|e| HvError::Engine {
        op: "parse live XML",
        msg: e.to_string(),
    })?;
    let Some(devices) = dom.find("devices") else {
        return Ok((Vec::new(), Vec::new()));
    };
    let disks = devices
        .find_all("disk")
        .filter_map(|d| d.find("target").and_then(|t| t.get_attr("dev")))
        .map(str::to_string)
        .collect();
    let nics = devices
        .find_all("interface")
        .filter_map(|i| {
            i.find("target")
                .and_then(|t| t.get_attr("dev"))
                .or_else(|| i.find("mac").and_then(|m| m.get_attr("address")))
        })
        .map(str::to_string)
        .collect();
    Ok((disks, nics))
}

#[cfg(test)]
mod vnc_tests {
    use super::*;

    #[test]
    fn utc_timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(utc_timestamp(1_795_000_000), "2026-11-18T11:06:40");
        assert_eq!(utc_timestamp(4_102_444_799), "2099-12-31T23:59:59");
    }

    /// Only the VNC device, as it runs, with the new password and its expiry.
    #[test]
    fn vnc_password_update_keeps_the_device() {
        let live = "<domain type='qemu'><name>x</name><devices>\
            <graphics type='spice' port='5901'/>\
            <graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.1' passwd='old'>\
            <listen type='address' address='127.0.0.1'/></graphics></devices></domain>";
        let g = vnc_password_update(live, "n3wPassw", 0).unwrap_or_else(|e| panic!("{e}"));
        let el = crate::xml::Element::parse(&g).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(el.get_attr("type"), Some("vnc"));
        assert_eq!(el.get_attr("port"), Some("5900"));
        assert_eq!(el.get_attr("passwd"), Some("n3wPassw"));
        assert_eq!(el.get_attr("passwdValidTo"), Some("1970-01-01T00:00:00"));
        assert!(el.find("listen").is_some());
        assert!(!g.contains("old"));
        assert!(vnc_password_update("<domain><devices/></domain>", "x", 0).is_err());
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;

    #[test]
    fn statistics_devices_of_a_live_domain() -> HvResult<()> {
        let xml = "<domain><devices>\
            <disk type='file' device='disk'><source file='/a'/><target dev='vda' bus='virtio'/></disk>\
            <disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>\
            <interface type='network'><mac address='52:54:00:00:00:01'/><target dev='vnet3'/></interface>\
            <interface type='user'><mac address='52:54:00:00:00:02'/></interface>\
            </devices></domain>";
        let (disks, nics) = stats_devices(xml)?;
        assert_eq!(disks, ["vda", "sda"]);
        assert_eq!(nics, ["vnet3", "52:54:00:00:00:02"]);
        Ok(())
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    /// The configuration saved with a snapshot, Keel's metadata (and its namespace) kept.
    #[test]
    fn the_domain_inside_a_snapshot() -> HvResult<()> {
        let xml = "<domainsnapshot><name>S</name><state>shutoff</state>\
            <memory snapshot='no'/><disks><disk name='vda' snapshot='internal'/></disks>\
            <domain type='qemu'><name>web</name><memory unit='KiB'>262144</memory>\
            <metadata><keel:vm xmlns:keel='https://keel.dev/xmlns/vm/1'><keel:vmid>100</keel:vmid></keel:vm></metadata>\
            <devices><graphics type='vnc' passwd='secret'/></devices></domain></domainsnapshot>";
        let d = snapshot_domain(xml)?;
        let el = Element::parse(&d).map_err(|e| HvError::NotFound(e.to_string()))?;
        assert_eq!(el.name, "domain");
        assert_eq!(el.path_text("memory"), Some("262144"));
        assert!(
            d.contains("xmlns:keel=\"https://keel.dev/xmlns/vm/1\""),
            "{d}"
        );
        assert!(d.contains("secret") && !d.contains("domainsnapshot"), "{d}");
        assert!(snapshot_domain("<domainsnapshot><name>S</name></domainsnapshot>").is_err());
        Ok(())
    }
}
