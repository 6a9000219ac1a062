//! In-memory hypervisor for unit tests of decision logic (refusals, ordering, rollbacks).
//! It records every call so a test can state exactly what a workflow asked of the engine.

use std::collections::BTreeMap;
use std::sync::Mutex;

use keel_api::network::{NetworkInfo, NetworkKind};
use keel_api::storage::{PoolInfo, VolumeInfo};
use keel_api::vm::{DiskFormat, VmState};

use super::{
    BlockCounters, DomainRow, DomainStats, HvError, HvResult, Hypervisor, NetCounters, Power,
};
use crate::xml::Element;

/// (path, volumes: name → (bytes, format))
type FakePool = (String, BTreeMap<String, (u64, String)>);

#[derive(Default)]
struct State {
    domains: BTreeMap<String, (String, VmState)>,
    /// pool → (path, volumes name → (bytes, format))
    pools: BTreeMap<String, FakePool>,
    /// name → (XML, active, autostart)
    networks: BTreeMap<String, (String, bool, bool)>,
    calls: Vec<String>,
    /// Guests that ignore the ACPI power button (and hot-unplug requests, also ACPI).
    deaf: Vec<String>,
    /// Running definitions that differ from the persistent one (hot-plug tests).
    live: BTreeMap<String, String>,
    /// Counters `domain_stats` reports (metrics tests), set by [`FakeHv::set_stats`].
    stats: BTreeMap<String, DomainStats>,
    /// Guest agents that answer, with what they report and how many file systems they
    /// freeze ([`FakeHv::set_agent`]); any other domain's agent does not answer.
    agents: BTreeMap<String, (super::AgentFacts, u32)>,
    /// Snapshots per domain, each with the definition saved with it.
    snapshots: BTreeMap<String, Vec<(super::SnapshotRow, String)>>,
    /// Files another node wrote into a pool's directory, unknown to this "libvirt" until the
    /// pool is refreshed ([`FakeHv::write_behind`]).
    unscanned: BTreeMap<String, Vec<(String, u64)>>,
    /// Pools that are `lvm-thin` ([`FakeHv::add_thin_pool`]): no directory, raw volumes only.
    thin: std::collections::BTreeSet<String>,
}

#[derive(Default)]
pub struct FakeHv {
    s: Mutex<State>,
}

impl FakeHv {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.s.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A raw file of `bytes` written into `pool`'s directory behind libvirt's back (as another
    /// node writes into a shared pool): listed only after the pool's next refresh.
    pub fn write_behind(&self, pool: &str, name: &str, bytes: u64) {
        self.lock()
            .unscanned
            .entry(pool.to_string())
            .or_default()
            .push((name.to_string(), bytes));
    }

    /// A node-local `lvm-thin` pool on volume group `vg` (volumes `/dev/VG/NAME`, raw only),
    /// as the real backend reports one from LVM.
    pub fn add_thin_pool(&self, name: &str, vg: &str) {
        let mut s = self.lock();
        s.pools
            .insert(name.to_string(), (format!("/dev/{vg}"), BTreeMap::new()));
        s.thin.insert(name.to_string());
    }

    /// Engine calls so far, e.g. `define web1`, `power web1 Start`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The counters `domain_stats(name)` reports from now on (a domain without any reports
    /// its state only).
    pub fn set_stats(&self, name: &str, stats: DomainStats) {
        self.lock().stats.insert(name.to_string(), stats);
    }

    /// Make the domain's guest agent answer with `facts` and freeze `filesystems` file
    /// systems (`None`: it stops answering).
    pub fn set_agent(&self, name: &str, agent: Option<(super::AgentFacts, u32)>) {
        let mut s = self.lock();
        match agent {
            Some(a) => s.agents.insert(name.to_string(), a),
            None => s.agents.remove(name),
        };
    }

    /// The answering agent of a running domain, else the error libvirt would give.
    fn agent(&self, name: &str, call: &str) -> HvResult<(super::AgentFacts, u32)> {
        let mut s = self.lock();
        s.calls.push(format!("{call} {name}"));
        let running = s.domains.get(name).is_some_and(|d| d.1 == VmState::Running);
        match s.agents.get(name) {
            Some(a) if running => Ok(a.clone()),
            _ => Err(HvError::Engine {
                op: "guest agent",
                msg: "Guest agent is not responding: QEMU guest agent is not connected".into(),
            }),
        }
    }

    /// Make a guest ignore ACPI shutdown requests.
    pub fn ignore_acpi(&self, name: &str) {
        self.lock().deaf.push(name.to_string());
    }

    /// Give a domain a running definition of its own (what `domain_xml(name, false)` returns
    /// until it stops); live attach and detach then edit it.
    pub fn set_live_xml(&self, name: &str, xml: &str) {
        self.lock().live.insert(name.to_string(), xml.to_string());
    }

    /// Edit the live definition's `<devices>` with `f`.
    fn edit_live(
        &self,
        name: &str,
        f: impl FnOnce(&mut Vec<Element>) -> HvResult<()>,
    ) -> HvResult<()> {
        let mut s = self.lock();
        let Some(xml) = s.live.get(name) else {
            return Ok(());
        };
        let bad = |e: crate::xml::XmlError| HvError::Engine {
            op: "live XML",
            msg: e.to_string(),
        };
        let mut dom = Element::parse(xml).map_err(bad)?;
        if let Some(d) = dom.children.iter_mut().find(|c| c.name == "devices") {
            f(&mut d.children)?;
        }
        s.live.insert(name.to_string(), dom.render());
        Ok(())
    }
}

impl Hypervisor for FakeHv {
    fn version(&self) -> HvResult<String> {
        Ok("fake 0.0.0".into())
    }

    fn list_domains(&self) -> HvResult<Vec<DomainRow>> {
        let names: Vec<String> = self.lock().domains.keys().cloned().collect();
        names.iter().map(|n| self.domain(n)).collect()
    }

    fn domain(&self, name: &str) -> HvResult<DomainRow> {
        let s = self.lock();
        let (xml, state) = s
            .domains
            .get(name)
            .ok_or_else(|| HvError::NotFound(format!("domain {name:?} not found")))?;
        let el = Element::parse(xml).map_err(|e| HvError::Engine {
            op: "parse",
            msg: e.to_string(),
        })?;
        let meta = el
            .find("metadata")
            .and_then(|m| m.children.first())
            .map(|m| m.render());
        Ok(DomainRow {
            name: name.to_string(),
            uuid: el.path_text("uuid").unwrap_or("").to_string(),
            state: *state,
            vcpus: 1,
            memory_kib: 0,
            max_memory_kib: 0,
            cpu_time_ns: 0,
            keel_metadata: meta,
            started_at: None,
        })
    }

    fn domain_xml(&self, name: &str, inactive: bool) -> HvResult<String> {
        let s = self.lock();
        if let (false, Some(x)) = (inactive, s.live.get(name)) {
            return Ok(x.clone());
        }
        s.domains
            .get(name)
            .map(|d| d.0.clone())
            .ok_or_else(|| HvError::NotFound(format!("domain {name:?} not found")))
    }

    fn define(&self, xml: &str) -> HvResult<()> {
        let el = Element::parse(xml).map_err(|e| HvError::Engine {
            op: "define",
            msg: e.to_string(),
        })?;
        let name = el.path_text("name").unwrap_or("").to_string();
        let mut s = self.lock();
        s.calls.push(format!("define {name}"));
        let state = s.domains.get(&name).map_or(VmState::Stopped, |d| d.1);
        s.domains.insert(name, (xml.to_string(), state));
        Ok(())
    }

    fn undefine(&self, name: &str) -> HvResult<()> {
        let mut s = self.lock();
        s.calls.push(format!("undefine {name}"));
        match s.domains.get(name) {
            None => Err(HvError::NotFound(format!("domain {name:?} not found"))),
            Some((_, st)) if st.is_active() => Err(HvError::Conflict("domain is running".into())),
            Some(_) => {
                s.domains.remove(name);
                s.snapshots.remove(name);
                Ok(())
            }
        }
    }

    fn power(&self, name: &str, op: Power) -> HvResult<()> {
        let mut s = self.lock();
        s.calls.push(format!("power {name} {op:?}"));
        let deaf = s.deaf.iter().any(|d| d == name);
        let d = s
            .domains
            .get_mut(name)
            .ok_or_else(|| HvError::NotFound(format!("domain {name:?} not found")))?;
        let next = match (op, d.1) {
            (Power::Start, VmState::Stopped | VmState::Crashed) => VmState::Running,
            (Power::Start, _) => return Err(HvError::Conflict("domain is already running".into())),
            (_, VmState::Stopped) => return Err(HvError::Conflict("domain is not running".into())),
            (Power::Shutdown, st) => {
                if deaf {
                    st
                } else {
                    VmState::Stopped
                }
            }
            (Power::Destroy, _) => VmState::Stopped,
            (Power::Reboot | Power::Reset, st) => st,
            (Power::Suspend, _) => VmState::Paused,
            (Power::Resume, _) => VmState::Running,
        };
        d.1 = next;
        if !next.is_active() {
            s.live.remove(name);
        }
        Ok(())
    }

    fn block_counters(&self, _name: &str, _target: &str) -> HvResult<BlockCounters> {
        Ok(BlockCounters::default())
    }

    fn net_counters(&self, _name: &str, _mac: &str) -> HvResult<NetCounters> {
        Ok(NetCounters::default())
    }

    fn domain_stats(&self, name: &str) -> HvResult<DomainStats> {
        let s = self.lock();
        let Some((_, state)) = s.domains.get(name) else {
            return Err(HvError::NotFound(format!("domain {name:?} not found")));
        };
        let active = state.is_active();
        Ok(s.stats.get(name).cloned().unwrap_or(DomainStats {
            active,
            ..DomainStats::default()
        }))
    }

    fn set_vnc_password(&self, name: &str, password: &str, valid_to: i64) -> HvResult<()> {
        let mut s = self.lock();
        if !s.domains.contains_key(name) {
            return Err(HvError::NotFound(format!("domain {name:?} not found")));
        }
        s.calls
            .push(format!("set_vnc_password {name} {password} {valid_to}"));
        Ok(())
    }

    fn set_live_vcpus(&self, name: &str, vcpus: u32) -> HvResult<()> {
        self.lock()
            .calls
            .push(format!("set_live_vcpus {name} {vcpus}"));
        Ok(())
    }

    fn set_live_memory(&self, name: &str, mib: u64) -> HvResult<()> {
        self.lock()
            .calls
            .push(format!("set_live_memory {name} {mib}"));
        Ok(())
    }

    fn list_pools(&self) -> HvResult<Vec<PoolInfo>> {
        let names: Vec<String> = self.lock().pools.keys().cloned().collect();
        names.iter().map(|n| self.pool(n)).collect()
    }

    fn pool(&self, name: &str) -> HvResult<PoolInfo> {
        let s = self.lock();
        let (path, vols) = s
            .pools
            .get(name)
            .ok_or_else(|| HvError::NotFound(format!("storage pool {name:?} not found")))?;
        let used: u64 = vols.values().map(|v| v.0).sum();
        let thin = s.thin.contains(name);
        Ok(PoolInfo {
            name: name.to_string(),
            kind: if thin { super::thin::KIND } else { "dir" }.into(),
            path: (!thin).then(|| path.clone()),
            active: true,
            capacity: 1 << 40,
            allocation: used,
            available: (1u64 << 40).saturating_sub(used),
        })
    }

    fn ensure_dir_pool(&self, name: &str, path: &str) -> HvResult<()> {
        let mut s = self.lock();
        s.pools
            .entry(name.to_string())
            .or_insert_with(|| (path.to_string(), BTreeMap::new()));
        Ok(())
    }

    fn undefine_pool(&self, name: &str) -> HvResult<()> {
        let mut s = self.lock();
        if s.pools.remove(name).is_some() {
            s.calls.push(format!("undefine pool {name}"));
        }
        Ok(())
    }

    fn refresh_pool(&self, name: &str) -> HvResult<()> {
        let mut s = self.lock();
        if !s.pools.contains_key(name) {
            return Err(HvError::NotFound(format!(
                "storage pool {name:?} not found"
            )));
        }
        s.calls.push(format!("refresh pool {name}"));
        let found = s.unscanned.remove(name).unwrap_or_default();
        if let Some((_, vols)) = s.pools.get_mut(name) {
            for (v, bytes) in found {
                vols.insert(v, (bytes, "raw".into()));
            }
        }
        Ok(())
    }

    fn list_volumes(&self, pool: &str) -> HvResult<Vec<VolumeInfo>> {
        let s = self.lock();
        let (path, vols) = s
            .pools
            .get(pool)
            .ok_or_else(|| HvError::NotFound(format!("storage pool {pool:?} not found")))?;
        Ok(vols
            .iter()
            .map(|(n, (b, f))| VolumeInfo {
                name: n.clone(),
                path: format!("{path}/{n}"),
                format: f.clone(),
                capacity: *b,
                allocation: 0,
                used_by: Vec::new(),
            })
            .collect())
    }

    fn volume(&self, pool: &str, name: &str) -> HvResult<VolumeInfo> {
        self.list_volumes(pool)?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| HvError::NotFound(format!("volume {name:?} in pool {pool:?} not found")))
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        bytes: u64,
        format: DiskFormat,
    ) -> HvResult<String> {
        let mut s = self.lock();
        s.calls.push(format!("create_volume {pool}/{name}"));
        if s.thin.contains(pool) && format != DiskFormat::Raw {
            return Err(HvError::Refused(format!(
                "pool {pool:?} is lvm-thin: its volumes are raw block devices; use format raw"
            )));
        }
        let (path, vols) = s
            .pools
            .get_mut(pool)
            .ok_or_else(|| HvError::NotFound(format!("storage pool {pool:?} not found")))?;
        if vols.contains_key(name) {
            return Err(HvError::Conflict(format!(
                "volume {name:?} already exists in pool {pool:?}"
            )));
        }
        vols.insert(name.to_string(), (bytes, format.as_str().to_string()));
        Ok(format!("{path}/{name}"))
    }

    fn delete_volume(&self, pool: &str, name: &str) -> HvResult<()> {
        let mut s = self.lock();
        s.calls.push(format!("delete_volume {pool}/{name}"));
        let (_, vols) = s
            .pools
            .get_mut(pool)
            .ok_or_else(|| HvError::NotFound(format!("storage pool {pool:?} not found")))?;
        vols.remove(name)
            .map(|_| ())
            .ok_or_else(|| HvError::NotFound(format!("volume {name:?} not found")))
    }

    fn volume_by_path(&self, path: &str) -> HvResult<Option<(String, String)>> {
        let s = self.lock();
        for (pn, (pp, vols)) in &s.pools {
            for vn in vols.keys() {
                if format!("{pp}/{vn}") == path {
                    return Ok(Some((pn.clone(), vn.clone())));
                }
            }
        }
        Ok(None)
    }

    fn list_networks(&self) -> HvResult<Vec<NetworkInfo>> {
        Ok(self
            .lock()
            .networks
            .iter()
            .map(|(name, (_, active, autostart))| NetworkInfo {
                name: name.clone(),
                kind: NetworkKind::Other,
                bridge: None,
                active: *active,
                autostart: *autostart,
                cidr: None,
                used_by: Vec::new(),
            })
            .collect())
    }

    fn set_network_active(&self, name: &str, active: bool) -> HvResult<()> {
        let mut g = self.lock();
        let n = g
            .networks
            .get_mut(name)
            .ok_or_else(|| HvError::NotFound(format!("network {name:?} not found")))?;
        n.1 = active;
        Ok(())
    }

    fn set_network_autostart(&self, name: &str, autostart: bool) -> HvResult<()> {
        let mut g = self.lock();
        let n = g
            .networks
            .get_mut(name)
            .ok_or_else(|| HvError::NotFound(format!("network {name:?} not found")))?;
        n.2 = autostart;
        Ok(())
    }

    fn create_network(&self, xml: &str, autostart: bool) -> HvResult<()> {
        let el = Element::parse(xml).map_err(|e| HvError::Engine {
            op: "network",
            msg: e.to_string(),
        })?;
        let name = el.path_text("name").unwrap_or("").to_string();
        self.lock()
            .networks
            .insert(name, (xml.to_string(), true, autostart));
        Ok(())
    }

    fn delete_network(&self, name: &str) -> HvResult<()> {
        self.lock()
            .networks
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| HvError::NotFound(format!("network {name:?} not found")))
    }

    fn attach_device_live(&self, name: &str, xml: &str) -> HvResult<()> {
        let dev = Element::parse(xml).map_err(|e| HvError::Engine {
            op: "attach device",
            msg: e.to_string(),
        })?;
        self.lock()
            .calls
            .push(format!("attach_device_live {name} {}", dev.name));
        self.edit_live(name, |d| {
            d.push(dev);
            Ok(())
        })
    }

    fn detach_device_live(&self, name: &str, xml: &str) -> HvResult<()> {
        let dev = Element::parse(xml).map_err(|e| HvError::Engine {
            op: "detach device",
            msg: e.to_string(),
        })?;
        let deaf = {
            let mut s = self.lock();
            s.calls
                .push(format!("detach_device_live {name} {}", dev.name));
            s.deaf.iter().any(|d| d == name)
        };
        if deaf {
            return Ok(());
        }
        self.edit_live(name, |d| {
            d.retain(|x| *x != dev);
            Ok(())
        })
    }

    fn agent_facts(&self, name: &str) -> HvResult<super::AgentFacts> {
        Ok(self.agent(name, "agent-info")?.0)
    }

    fn agent_shutdown(&self, name: &str) -> HvResult<()> {
        self.agent(name, "agent-shutdown")?;
        let mut s = self.lock();
        if let Some(d) = s.domains.get_mut(name) {
            d.1 = VmState::Stopped;
        }
        s.live.remove(name);
        Ok(())
    }

    fn fs_freeze(&self, name: &str) -> HvResult<u32> {
        Ok(self.agent(name, "fsfreeze")?.1)
    }

    fn fs_thaw(&self, name: &str) -> HvResult<u32> {
        Ok(self.agent(name, "fsthaw")?.1)
    }

    fn list_snapshots(&self, name: &str) -> HvResult<Vec<super::SnapshotRow>> {
        let s = self.lock();
        if !s.domains.contains_key(name) {
            return Err(HvError::NotFound(format!("domain {name:?} not found")));
        }
        Ok(s.snapshots
            .get(name)
            .map(|v| v.iter().map(|(r, _)| r.clone()).collect())
            .unwrap_or_default())
    }

    /// Records the snapshot with the domain's definition (the live one when running; the
    /// memory goes with it then), as libvirt does; disks are not touched.
    fn create_snapshot(&self, name: &str, xml: &str) -> HvResult<()> {
        let el = Element::parse(xml).map_err(|e| HvError::Engine {
            op: "create snapshot",
            msg: e.to_string(),
        })?;
        let snap = el.path_text("name").unwrap_or("").to_string();
        let mut s = self.lock();
        s.calls.push(format!("create_snapshot {name} {snap}"));
        let (def, state) = s
            .domains
            .get(name)
            .cloned()
            .ok_or_else(|| HvError::NotFound(format!("domain {name:?} not found")))?;
        let def = match (state.is_active(), s.live.get(name)) {
            (true, Some(live)) => live.clone(),
            _ => def,
        };
        let list = s.snapshots.entry(name.to_string()).or_default();
        if list.iter().any(|(r, _)| r.name == snap) {
            return Err(HvError::Conflict(format!("snapshot {snap:?} exists")));
        }
        let parent = list
            .iter()
            .find(|(r, _)| r.current)
            .map(|(r, _)| r.name.clone());
        for (r, _) in list.iter_mut() {
            r.current = false;
        }
        let created = list.len() as i64;
        list.push((
            super::SnapshotRow {
                name: snap,
                description: None,
                parent,
                created,
                state: if state.is_active() {
                    "running"
                } else {
                    "shutoff"
                }
                .into(),
                memory: state.is_active(),
                current: true,
            },
            def,
        ));
        Ok(())
    }

    fn snapshot_domain_xml(&self, name: &str, snapshot: &str) -> HvResult<String> {
        self.lock()
            .snapshots
            .get(name)
            .and_then(|v| v.iter().find(|(r, _)| r.name == snapshot))
            .map(|(_, x)| x.clone())
            .ok_or_else(|| HvError::NotFound(format!("snapshot {snapshot:?} not found")))
    }

    fn delete_snapshot(&self, name: &str, snapshot: &str) -> HvResult<()> {
        let mut s = self.lock();
        s.calls.push(format!("delete_snapshot {name} {snapshot}"));
        let list = s.snapshots.entry(name.to_string()).or_default();
        let before = list.len();
        list.retain(|(r, _)| r.name != snapshot);
        if list.len() == before {
            return Err(HvError::NotFound(format!(
                "snapshot {snapshot:?} not found"
            )));
        }
        Ok(())
    }

    fn set_live_metadata(&self, name: &str, _xml: &str) -> HvResult<()> {
        self.lock().calls.push(format!("set_live_metadata {name}"));
        Ok(())
    }
}
