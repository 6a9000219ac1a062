//! VM lifecycle: the decisions (what is allowed, in which order, what to undo on failure),
//! executed on the [`Hypervisor`](crate::hv::Hypervisor). Synchronous: callers run these on
//! the blocking pool, usually inside a task.

use std::time::{Duration, Instant};

use keel_api::storage::VolumeInfo;
use keel_api::vm::{
    AdoptRequest, DiskStats, NicStats, ShutdownRequest, VmConfig, VmSpec, VmState, VmStatus,
    VmSummary, MAC_PREFIX,
};
use rand::{distributions::Alphanumeric, Rng, RngCore};
use tracing::warn;

use crate::domain::{self, ParsedDomain, RenderCtx};
use crate::error::{Error, Result};
use crate::hv::{DomainRow, HvError, Power};
use crate::tasks::TaskHandle;
use crate::xml::Element;
use crate::Node;

// ------------------------------------------------------------ cluster-wide VM ids

/// The config store, when this node is clustered (VM ids and the VM view are cluster-wide).
fn cluster_store(node: &Node) -> Option<crate::db::Store> {
    node.auth.store().cloned()
}

fn vmid_key(vmid: u32) -> String {
    format!("/vmids/{vmid}")
}

fn vm_key(vmid: u32) -> String {
    format!("/vms/{vmid}")
}

/// Reserve `vmid` cluster-wide (create-if-absent on `/vmids/<vmid>` = {node, name}). A
/// reservation by this node (left by a failed create) is taken over; one by another node is a
/// 409 naming it. Standalone nodes have nothing to reserve. A store that cannot answer refuses.
pub fn reserve_vmid(node: &Node, vmid: u32, name: &str) -> Result<()> {
    let Some(st) = cluster_store(node) else {
        return Ok(());
    };
    let me = &node.cfg.node;
    let v = serde_json::json!({"node": me, "name": name});
    match st.create(&vmid_key(vmid), &v) {
        Ok(_) => Ok(()),
        Err(crate::db::StoreError::Conflict { .. }) => {
            let held = st.get(&vmid_key(vmid))?;
            let (hn, hname) = held
                .as_ref()
                .map(|e| {
                    (
                        e.value["node"].as_str().unwrap_or("?").to_string(),
                        e.value["name"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .unwrap_or_default();
            if held.is_some() && hn != *me {
                return Err(Error::Conflict(format!(
                    "vmid {vmid} is already used in the cluster: node {hn} holds it (VM {hname:?}); GET nextid gives a free one"
                )));
            }
            // ours (a failed create left it) or released meanwhile: take it
            st.put(&vmid_key(vmid), &v)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Release `vmid` if this node holds it (and drop its cluster-wide VM record).
pub fn release_vmid(node: &Node, vmid: u32) -> Result<()> {
    let Some(st) = cluster_store(node) else {
        return Ok(());
    };
    st.delete(&vm_key(vmid))?;
    if let Some(e) = st.get(&vmid_key(vmid))? {
        if e.value["node"].as_str() == Some(node.cfg.node.as_str()) {
            st.delete(&vmid_key(vmid))?;
        }
    }
    Ok(())
}

/// Record `/vms/<vmid>` = {node, name, spec} for the cluster-wide VM view.
pub(crate) fn record_vm(node: &Node, spec: &VmSpec, task: &TaskHandle) {
    let Some(st) = cluster_store(node) else {
        return;
    };
    let v = serde_json::json!({"node": node.cfg.node, "name": spec.name, "spec": spec});
    match st.put(&vm_key(spec.vmid), &v) {
        Ok(_) => task.log("recorded in the cluster config store"),
        Err(e) => task.log(format!(
            "warning: not recorded in the cluster config store ({e}); the cluster-wide view misses this change"
        )),
    }
}

/// The node the cluster-wide VM view (`/vms/<vmid>`) places VM `vmid` on; `None` on a
/// standalone node or for a VM the view does not have.
pub(crate) fn recorded_node(node: &Node, vmid: u32) -> Result<Option<String>> {
    let Some(st) = cluster_store(node) else {
        return Ok(None);
    };
    Ok(st.get(&vm_key(vmid))?.and_then(|e| {
        e.value
            .get("node")
            .and_then(|n| n.as_str())
            .map(str::to_string)
    }))
}

/// After a migration: `/vms/<vmid>` and the vmid's reservation name node `to`.
pub(crate) fn record_vm_moved(node: &Node, spec: &VmSpec, to: &str, task: &TaskHandle) {
    let Some(st) = cluster_store(node) else {
        return;
    };
    let v = serde_json::json!({"node": to, "name": spec.name, "spec": spec});
    let r = st.put(&vm_key(spec.vmid), &v).and_then(|_| {
        st.put(
            &vmid_key(spec.vmid),
            &serde_json::json!({"node": to, "name": spec.name}),
        )
    });
    match r {
        Ok(_) => task.log(format!(
            "cluster config store: /vms/{} is on {to}",
            spec.vmid
        )),
        Err(e) => task.log(format!(
            "warning: the cluster config store still places VM {} here ({e})",
            spec.vmid
        )),
    }
}

/// Every vmid reserved in the cluster (empty on a standalone node).
pub fn reserved_vmids(node: &Node) -> Result<Vec<u32>> {
    let Some(st) = cluster_store(node) else {
        return Ok(vec![]);
    };
    Ok(st
        .list("/vmids")?
        .iter()
        .filter_map(|e| e.key.rsplit('/').next()?.parse().ok())
        .collect())
}

/// vmid from a Keel metadata element.
pub(crate) fn vmid_of(row: &DomainRow) -> Option<u32> {
    let el = Element::parse(row.keel_metadata.as_deref()?).ok()?;
    el.children
        .iter()
        .find(|c| c.name == "vmid" || c.name.ends_with(":vmid"))
        .and_then(|c| c.text.as_deref())
        .and_then(|t| t.trim().parse().ok())
}

fn uptime(row: &DomainRow) -> Option<u64> {
    row.started_at.map(|s| (crate::db::now() - s).max(0) as u64)
}

pub fn list(node: &Node) -> Result<Vec<VmSummary>> {
    let mut out: Vec<VmSummary> = node
        .hv
        .list_domains()?
        .into_iter()
        .map(|r| VmSummary {
            vmid: vmid_of(&r),
            managed: r.keel_metadata.is_some(),
            template: crate::clones::is_template(&r),
            uptime_s: uptime(&r),
            vcpus: r.vcpus,
            memory_mib: r.memory_kib / 1024,
            state: r.state,
            uuid: r.uuid,
            name: r.name,
        })
        .collect();
    out.extend(crate::ha::stopped_here(node, &out));
    out.sort_by(|a, b| {
        (a.vmid.is_none(), a.vmid, &a.name).cmp(&(b.vmid.is_none(), b.vmid, &b.name))
    });
    Ok(out)
}

/// The domain carrying this vmid.
pub fn find(node: &Node, vmid: u32) -> Result<DomainRow> {
    node.hv
        .list_domains()?
        .into_iter()
        .find(|r| vmid_of(r) == Some(vmid))
        .ok_or_else(|| Error::NotFound(format!("VM {vmid} not found on node {}", node.cfg.node)))
}

fn parsed(node: &Node, name: &str, inactive: bool) -> Result<ParsedDomain> {
    Ok(domain::parse(&node.hv.domain_xml(name, inactive)?)?)
}

/// Top-level spec fields that differ between two specs.
fn diff_fields(a: &VmSpec, b: &VmSpec) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn pending(node: &Node, row: &DomainRow) -> Result<Vec<String>> {
    if !row.state.is_active() {
        return Ok(Vec::new());
    }
    let live = parsed(node, &row.name, false)?;
    let persistent = parsed(node, &row.name, true)?;
    // The live currentMemory is what the balloon has reached, not a setting: not "pending".
    Ok(diff_fields(&live.spec, &persistent.spec)
        .into_iter()
        .filter(|f| f != "balloon_mib")
        .collect())
}

pub fn config(node: &Node, vmid: u32) -> Result<VmConfig> {
    let row = find(node, vmid)?;
    let p = parsed(node, &row.name, true)?;
    Ok(VmConfig {
        pending: pending(node, &row)?,
        managed: p.managed,
        template: crate::clones::is_template(&row),
        spec: p.spec,
    })
}

pub fn status(node: &Node, vmid: u32) -> Result<VmStatus> {
    let row = find(node, vmid)?;
    let active = row.state.is_active();
    let p = parsed(node, &row.name, !active)?;
    let mut disks = Vec::new();
    let mut nics = Vec::new();
    if active {
        for t in p.disk_targets.iter().filter(|t| !t.is_empty()) {
            if let Ok(c) = node.hv.block_counters(&row.name, t) {
                disks.push(DiskStats {
                    dev: t.clone(),
                    rd_bytes: c.rd_bytes,
                    wr_bytes: c.wr_bytes,
                    rd_req: c.rd_req,
                    wr_req: c.wr_req,
                });
            }
        }
        for (i, n) in p.spec.nics.iter().enumerate() {
            let Some(mac) = &n.mac else { continue };
            if let Ok(c) = node.hv.net_counters(&row.name, mac) {
                nics.push(NicStats {
                    dev: format!("net{i}"),
                    mac: mac.clone(),
                    rx_bytes: c.rx_bytes,
                    tx_bytes: c.tx_bytes,
                    rx_packets: c.rx_packets,
                    tx_packets: c.tx_packets,
                });
            }
        }
    }
    Ok(VmStatus {
        vmid: Some(vmid),
        pending_changes: !pending(node, &row)?.is_empty(),
        uptime_s: uptime(&row),
        cpu_time_ns: row.cpu_time_ns,
        vcpus: row.vcpus,
        memory_mib: row.memory_kib / 1024,
        max_memory_mib: row.max_memory_kib / 1024,
        domain_type: p.domain_type,
        state: row.state,
        uuid: row.uuid,
        name: row.name,
        disks,
        nics,
    })
}

fn random_mac(taken: &[String]) -> String {
    loop {
        let mut b = [0u8; 3];
        rand::thread_rng().fill_bytes(&mut b);
        let m = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            MAC_PREFIX[0], MAC_PREFIX[1], MAC_PREFIX[2], b[0], b[1], b[2]
        );
        if !taken.contains(&m) {
            return m;
        }
    }
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn host_bridge_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net")
        .join(name)
        .join("bridge")
        .exists()
}

/// Check a spec against this host (pools, volumes, networks, uniqueness) and fill in the
/// MACs. `current` is the VM being updated, if any.
pub fn check_against_host(
    node: &Node,
    spec: &mut VmSpec,
    current: Option<&DomainRow>,
) -> Result<()> {
    spec.validate()?;
    let rows = node.hv.list_domains()?;
    for r in &rows {
        if current.is_some_and(|c| c.uuid == r.uuid) {
            continue;
        }
        if vmid_of(r) == Some(spec.vmid) {
            return Err(Error::Conflict(format!(
                "vmid {} is already used by VM {:?}",
                spec.vmid, r.name
            )));
        }
        if r.name == spec.name {
            return Err(Error::Conflict(format!(
                "a VM named {:?} already exists on node {}",
                spec.name, node.cfg.node
            )));
        }
    }
    let pools = node.hv.list_pools()?;
    let check_pool = |field: String, pool: &str| -> Result<()> {
        match pools.iter().find(|p| p.name == pool) {
            None => Err(Error::validation(
                &field,
                format!(
                    "storage pool {pool:?} does not exist on node {}",
                    node.cfg.node
                ),
            )),
            Some(p) if !p.active => Err(Error::validation(
                &field,
                format!("storage pool {pool:?} is not active"),
            )),
            Some(_) => Ok(()),
        }
    };
    let mut new_bytes: u64 = 0;
    for (i, d) in spec.disks.iter().enumerate() {
        if let Some(pool) = &d.pool {
            check_pool(format!("disks[{i}].pool"), pool)?;
            let lvm_kind = pools
                .iter()
                .find(|p| &p.name == pool)
                .map(|p| p.kind.as_str())
                .filter(|k| *k == crate::hv::thin::KIND || *k == crate::hv::shared_lvm::KIND);
            let thin = lvm_kind == Some(crate::hv::thin::KIND);
            if let Some(kind) = lvm_kind {
                if d.format != keel_api::vm::DiskFormat::Raw {
                    return Err(Error::validation(
                        &format!("disks[{i}].format"),
                        format!(
                            "pool {pool:?} is {kind}: its disks are LVs, raw block devices; give format raw (on the command line: --disk {pool}:SIZE:raw)"
                        ),
                    ));
                }
            }
            if let Some(v) = &d.volume {
                if let Err(e) = node.hv.volume(pool, v) {
                    return Err(match e {
                        HvError::NotFound(_) => Error::validation(
                            &format!("disks[{i}].volume"),
                            format!("volume {v:?} does not exist in pool {pool:?}"),
                        ),
                        other => other.into(),
                    });
                }
            }
            if let Some(s) = d.size_mib {
                new_bytes += s * 1024 * 1024;
                let avail = pools
                    .iter()
                    .find(|p| &p.name == pool)
                    .map_or(0, |p| p.available);
                // a thin pool hands out space as guests write: its disks may add up to more
                if new_bytes > avail && d.format == keel_api::vm::DiskFormat::Raw && !thin {
                    return Err(Error::validation(
                        &format!("disks[{i}].size_mib"),
                        format!(
                            "pool {pool:?} has {} MiB free; a raw disk of {s} MiB does not fit",
                            avail / 1024 / 1024
                        ),
                    ));
                }
            }
        }
        if let Some(p) = &d.path {
            if node.cfg.libvirt_uri.starts_with("qemu") && !std::path::Path::new(p).exists() {
                return Err(Error::validation(
                    &format!("disks[{i}].path"),
                    format!("{p} does not exist"),
                ));
            }
        }
    }
    if let Some(c) = &spec.cdrom {
        if let (Some(pool), Some(v)) = (&c.pool, &c.volume) {
            check_pool("cdrom.pool".into(), pool)?;
            if node.hv.volume(pool, v).is_err() {
                return Err(Error::validation(
                    "cdrom.volume",
                    format!("volume {v:?} does not exist in pool {pool:?}; upload the ISO first"),
                ));
            }
        }
    }
    if let Some(k) = &spec.kernel {
        check_pool("kernel.pool".into(), &k.pool)?;
        for (field, v) in [
            ("kernel.kernel", Some(&k.kernel)),
            ("kernel.initrd", k.initrd.as_ref()),
        ] {
            if let Some(v) = v {
                if node.hv.volume(&k.pool, v).is_err() {
                    return Err(Error::validation(
                        field,
                        format!(
                            "volume {v:?} does not exist in pool {:?}; upload the file first (`keel storage upload`)",
                            k.pool
                        ),
                    ));
                }
            }
        }
    }
    crate::cloudinit::check(node, spec, &pools)?;
    let nets = node.hv.list_networks()?;
    let mut taken: Vec<String> = spec
        .nics
        .iter()
        .filter_map(|n| n.mac.clone())
        .map(|m| m.to_ascii_lowercase())
        .collect();
    for (i, n) in spec.nics.iter_mut().enumerate() {
        if let Some(net) = &n.network {
            match nets.iter().find(|x| &x.name == net) {
                None => {
                    return Err(Error::validation(
                        &format!("nics[{i}].network"),
                        format!(
                            "libvirt network {net:?} does not exist on node {} (`keel net list` shows the networks; `keel net create` makes one)",
                            node.cfg.node
                        ),
                    ))
                }
                // A new VM on a stopped network could be defined but never started (libvirt
                // refuses at start); say so now, with the fix.
                Some(x) if !x.active && current.is_none() => {
                    return Err(Error::validation(
                        &format!("nics[{i}].network"),
                        format!(
                            "libvirt network {net:?} is not active on node {}: start it with `virsh net-start {net}` (and `virsh net-autostart {net}` to start it at boot), then create the VM",
                            node.cfg.node
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(br) = &n.bridge {
            if !host_bridge_exists(br) && node.cfg.libvirt_uri.starts_with("qemu") {
                return Err(Error::validation(
                    &format!("nics[{i}].bridge"),
                    format!(
                        "host bridge {br:?} does not exist on node {}",
                        node.cfg.node
                    ),
                ));
            }
        }
        match &mut n.mac {
            Some(m) => *m = m.to_ascii_lowercase(),
            None => {
                let m = random_mac(&taken);
                taken.push(m.clone());
                n.mac = Some(m);
            }
        }
    }
    Ok(())
}

/// Resolve volume paths and render.
pub(crate) fn render(
    node: &Node,
    spec: &VmSpec,
    uuid: &str,
    vnc_password: Option<String>,
) -> Result<String> {
    let mut disk_paths = Vec::new();
    for d in &spec.disks {
        let path = match (&d.pool, &d.volume, &d.path) {
            (Some(p), Some(v), _) => node.hv.volume(p, v)?.path,
            (_, _, Some(path)) => path.clone(),
            _ => {
                return Err(Error::Internal(
                    "disk without a volume at render time".into(),
                ))
            }
        };
        disk_paths.push(path);
    }
    let cdrom_path = match &spec.cdrom {
        Some(c) => match (&c.pool, &c.volume, &c.path) {
            (Some(p), Some(v), _) => Some(node.hv.volume(p, v)?.path),
            (_, _, Some(path)) => Some(path.clone()),
            _ => None,
        },
        None => None,
    };
    let (kernel_path, initrd_path) = match &spec.kernel {
        Some(k) => (
            Some(node.hv.volume(&k.pool, &k.kernel)?.path),
            match &k.initrd {
                Some(i) => Some(node.hv.volume(&k.pool, i)?.path),
                None => None,
            },
        ),
        None => (None, None),
    };
    let cloudinit_path = crate::cloudinit::write_seed(node, spec, uuid)?;
    let ctx = RenderCtx {
        kernel_path,
        initrd_path,
        domain_type: node.accel.domain_type,
        uuid: uuid.to_string(),
        disk_paths,
        cdrom_path,
        cloudinit_path,
        vnc_password: if spec.vnc {
            vnc_password.or_else(|| Some(random_vnc_password()))
        } else {
            None
        },
        serial_log: spec.serial.then(|| {
            node.cfg
                .serial_dir()
                .join(format!("{}.log", spec.vmid))
                .display()
                .to_string()
        }),
    };
    Ok(domain::render(spec, &ctx)?)
}

fn random_vnc_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(8)
        .map(char::from)
        .collect()
}

/// Allocate new volumes (disks with `size_mib`), turning them into `volume` references.
/// Returns what was created so a failure can undo it.
fn allocate(node: &Node, spec: &mut VmSpec, task: &TaskHandle) -> Result<Vec<(String, String)>> {
    let mut created = Vec::new();
    let existing: Vec<String> = spec.disks.iter().filter_map(|d| d.volume.clone()).collect();
    for i in 0..spec.disks.len() {
        let d = &spec.disks[i];
        let (Some(pool), Some(size)) = (d.pool.clone(), d.size_mib) else {
            continue;
        };
        let mut n = i;
        let name = loop {
            let cand = format!("vm-{}-disk-{n}.{}", spec.vmid, d.format.as_str());
            if !existing.contains(&cand) && node.hv.volume(&pool, &cand).is_err() {
                break cand;
            }
            n += 1;
        };
        task.log(format!(
            "allocating {pool}/{name} ({size} MiB, {})",
            d.format.as_str()
        ));
        match node
            .hv
            .create_volume(&pool, &name, size * 1024 * 1024, d.format)
        {
            Ok(_) => created.push((pool.clone(), name.clone())),
            Err(e) => {
                undo_volumes(node, &created, task);
                return Err(e.into());
            }
        }
        let d = &mut spec.disks[i];
        d.volume = Some(name);
        d.size_mib = None;
    }
    Ok(created)
}

fn undo_volumes(node: &Node, created: &[(String, String)], task: &TaskHandle) {
    for (p, v) in created {
        task.log(format!("rolling back: deleting {p}/{v}"));
        if let Err(e) = node.hv.delete_volume(p, v) {
            warn!(pool = %p, volume = %v, error = %e, "rollback failed");
            task.log(format!("rollback of {p}/{v} failed: {e}"));
        }
    }
}

/// Allocate the spec's new volumes, render and define; on failure delete what was allocated.
fn allocate_and_define(
    node: &Node,
    spec: &mut VmSpec,
    uuid: &str,
    vnc_password: Option<String>,
    task: &TaskHandle,
) -> Result<()> {
    let created = allocate(node, spec, task)?;
    task.progress(0.5);
    let defined =
        render(node, spec, uuid, vnc_password).and_then(|xml| Ok(node.hv.define(&xml)?));
    if defined.is_err() {
        undo_volumes(node, &created, task);
    }
    defined
}

/// Create a VM whose vmid the caller reserved ([`reserve_vmid`]); a failed definition
/// releases the reservation.
pub fn create(node: &Node, mut spec: VmSpec, start: bool, task: &TaskHandle) -> Result<()> {
    task.log(format!("creating VM {} ({})", spec.vmid, spec.name));
    let defined = std::fs::create_dir_all(node.cfg.serial_dir())
        .map_err(Error::from)
        .and_then(|_| allocate_and_define(node, &mut spec, &random_uuid(), None, task));
    if let Err(e) = defined {
        if let Err(r) = release_vmid(node, spec.vmid) {
            task.log(format!("warning: vmid {} stays reserved: {r}", spec.vmid));
        }
        return Err(e);
    }
    record_vm(node, &spec, task);
    task.log(format!(
        "defined domain {:?} ({} guest)",
        spec.name,
        node.accel.domain_type.as_str()
    ));
    task.progress(0.8);
    if start {
        task.log("starting");
        node.hv.power(&spec.name, Power::Start)?;
        task.log("started");
    }
    Ok(())
}

/// Simple power operations; each checks the state it needs first.
pub fn power(node: &Node, vmid: u32, op: Power, task: &TaskHandle) -> Result<()> {
    if crate::ha::record(node, vmid)?.is_some() {
        // an HA VM is started and stopped by Pacemaker (target-role), wherever it runs
        match op {
            Power::Start => return crate::ha::set_started(node, vmid, true, task),
            Power::Destroy => return crate::ha::set_started(node, vmid, false, task),
            _ => {}
        }
    }
    let row = find(node, vmid)?;
    if op == Power::Start {
        crate::clones::refuse_template(&row, vmid)?;
    }
    let need = match op {
        Power::Start => (!row.state.is_active(), "already running"),
        Power::Resume => (row.state == VmState::Paused, "not paused"),
        Power::Suspend => (row.state == VmState::Running, "not running"),
        Power::Reboot | Power::Reset | Power::Shutdown => (
            matches!(row.state, VmState::Running | VmState::Shutdown),
            "not running",
        ),
        Power::Destroy => (row.state.is_active(), "not running"),
    };
    if !need.0 {
        return Err(Error::Conflict(format!(
            "VM {vmid} is {}: {}",
            row.state.as_str(),
            need.1
        )));
    }
    task.log(format!("{op:?} VM {vmid} ({})", row.name));
    node.hv.power(&row.name, op)?;
    Ok(())
}

pub const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 60;

pub fn shutdown(node: &Node, vmid: u32, req: &ShutdownRequest, task: &TaskHandle) -> Result<()> {
    let timeout = Duration::from_secs(req.timeout_s.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_S));
    if crate::ha::record(node, vmid)?.is_some() {
        task.log("HA VM: Pacemaker stops it (ACPI shutdown, then a hard stop at its stop timeout)");
        return crate::ha::set_started(node, vmid, false, task);
    }
    let row = find(node, vmid)?;
    let by_agent = matches!(row.state, VmState::Running)
        && crate::agent::try_shutdown(node, vmid, &row.name, task)?;
    if !by_agent {
        power(node, vmid, Power::Shutdown, task)?;
    }
    task.log(format!(
        "{} shutdown sent; waiting up to {}s",
        if by_agent { "guest agent" } else { "ACPI" },
        timeout.as_secs()
    ));
    let t0 = Instant::now();
    loop {
        let row = find(node, vmid)?;
        if !row.state.is_active() {
            task.log(format!(
                "guest powered off after {:.1}s",
                t0.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if t0.elapsed() >= timeout {
            if req.force_stop {
                task.log("timeout: guest still running, stopping it hard (force_stop)");
                node.hv.power(&row.name, Power::Destroy)?;
                return Ok(());
            }
            return Err(Error::Conflict(format!(
                "VM {vmid} did not shut down within {}s (the guest may ignore ACPI); retry with force_stop or stop it",
                timeout.as_secs()
            )));
        }
        task.progress(t0.elapsed().as_secs_f64() / timeout.as_secs_f64().max(1.0));
        // Re-press the power button every 10 s: some guests miss the first one early in boot.
        if t0.elapsed().as_secs() % 10 == 9 {
            let _ = node.hv.power(&row.name, Power::Shutdown);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn delete(node: &Node, vmid: u32, purge: bool, task: &TaskHandle) -> Result<()> {
    crate::ha::refuse_if_ha(node, vmid, "deleting it")?;
    crate::clones::check_delete(node, vmid)?;
    let row = find(node, vmid)?;
    if row.state.is_active() {
        return Err(Error::Conflict(format!(
            "VM {vmid} is {}: stop it before deleting",
            row.state.as_str()
        )));
    }
    let p = parsed(node, &row.name, true)?;
    crate::snapshots::before_undefine(node, &row.name, purge, task)?;
    node.hv.undefine(&row.name)?;
    task.log(format!("undefined domain {:?}", row.name));
    // the domain is gone: a volume that cannot be deleted is named, the rest of the clean-up
    // still runs, and the task fails naming what is left
    let mut left: Vec<(String, crate::hv::HvError)> = Vec::new();
    if purge {
        for d in &p.spec.disks {
            if let (Some(pool), Some(vol)) = (&d.pool, &d.volume) {
                task.log(format!("deleting volume {pool}/{vol}"));
                match node.hv.delete_volume(pool, vol) {
                    Ok(()) => {}
                    Err(crate::hv::HvError::NotFound(_)) => {
                        task.log(format!("volume {pool}/{vol} was already gone"));
                    }
                    Err(e) => {
                        task.log(format!("warning: volume {pool}/{vol} left: {e}"));
                        left.push((format!("{pool}/{vol}"), e));
                    }
                }
            }
        }
    }
    // the seed is generated from the VM's settings: it goes with the VM, purge or not
    if let Some(pool) = crate::cloudinit::seed_pool(&p.spec) {
        crate::cloudinit::remove_seed(node, &pool, vmid, task);
    }
    let log = node.cfg.serial_dir().join(format!("{vmid}.log"));
    let _ = std::fs::remove_file(log);
    if let Err(e) = crate::metrics::forget_vm(node, vmid) {
        task.log(format!(
            "warning: the VM's performance graphs stay in metrics.db: {e}"
        ));
    }
    match release_vmid(node, vmid) {
        Ok(()) => {
            if cluster_store(node).is_some() {
                task.log(format!("vmid {vmid} released in the cluster"));
            }
        }
        Err(e) => task.log(format!(
            "warning: vmid {vmid} stays reserved in the cluster ({e}): delete /vmids/{vmid} from the config store once it is writable"
        )),
    }
    if !left.is_empty() {
        let what: Vec<String> = left.iter().map(|(v, e)| format!("{v} ({e})")).collect();
        return Err(Error::Conflict(format!(
            "VM {vmid} is deleted, but not all of its volumes: {}; delete each with `keel storage delete-volume POOL VOLUME` once that is fixed",
            what.join(", ")
        )));
    }
    Ok(())
}

/// Validate an update before its task starts.
pub fn check_update(node: &Node, vmid: u32, spec: &mut VmSpec) -> Result<DomainRow> {
    crate::ha::refuse_if_ha(node, vmid, "changing its configuration")?;
    if spec.vmid != vmid {
        return Err(Error::validation(
            "vmid",
            format!("vmid cannot change (this is VM {vmid})"),
        ));
    }
    let row = find(node, vmid)?;
    crate::clones::refuse_template(&row, vmid)?;
    if spec.name != row.name {
        return Err(Error::validation(
            "name",
            format!("renaming is not supported: keep the name {:?}", row.name),
        ));
    }
    check_against_host(node, spec, Some(&row))?;
    if spec.kernel.is_none() {
        // a kernel Keel knows (a volume in `kernel`) may be dropped; one given by path may not
        let cur = parsed(node, &row.name, true)?;
        if let (None, Some(k)) = (cur.spec.kernel, cur.kernel_path) {
            return Err(Error::validation(
                "kernel",
                format!(
                    "VM {vmid} boots the kernel {k}, which is not a volume Keel knows: copy it into a pool and name it in `kernel` (docs/vm-spec.md), or remove it with virsh edit first"
                ),
            ));
        }
    }
    Ok(row)
}

pub fn update(node: &Node, row: DomainRow, mut spec: VmSpec, task: &TaskHandle) -> Result<()> {
    let old = parsed(node, &row.name, true)?;
    allocate_and_define(node, &mut spec, &row.uuid, old.vnc_password.clone(), task)?;
    record_vm(node, &spec, task);
    if spec.cloud_init.is_some() {
        task.log(format!(
            "cloud-init seed {} written; the guest applies it when it next starts",
            crate::cloudinit::volume_name(spec.vmid)
        ));
    }
    if let Some(old_pool) = crate::cloudinit::seed_pool(&old.spec) {
        if crate::cloudinit::seed_pool(&spec).as_ref() != Some(&old_pool) {
            crate::cloudinit::remove_seed(node, &old_pool, spec.vmid, task);
        }
    }
    task.log(format!(
        "changed: {}",
        diff_fields(&old.spec, &spec).join(", ")
    ));
    let state = node.hv.domain(&row.name)?.state;
    if state.is_active() {
        // disks and NICs first (hot-plug), so a refused detach still lets vCPUs and the
        // balloon apply below; its error ends the task after them
        let plugged = crate::hotplug::apply(node, &row.name, task);
        let live = parsed(node, &row.name, false)?;
        if live.spec.vcpus != spec.vcpus
            && spec.vcpus <= live.spec.max_vcpus.unwrap_or(live.spec.vcpus)
        {
            match node.hv.set_live_vcpus(&row.name, spec.vcpus) {
                Ok(()) => task.log(format!("vCPUs set to {} live", spec.vcpus)),
                Err(e) => task.log(format!("vCPUs pending until next boot ({e})")),
            }
        }
        let want = spec.balloon_mib.unwrap_or(spec.memory_mib);
        let have = live.spec.balloon_mib.unwrap_or(live.spec.memory_mib);
        if want != have && want <= live.spec.memory_mib {
            match node.hv.set_live_memory(&row.name, want) {
                Ok(()) => task.log(format!("balloon set to {want} MiB live")),
                Err(e) => task.log(format!("memory pending until next boot ({e})")),
            }
        }
        let still = pending(node, &node.hv.domain(&row.name)?)?;
        if !still.is_empty() {
            task.log(format!(
                "pending until the next cold boot: {}",
                still.join(", ")
            ));
        }
        plugged?;
    }
    Ok(())
}

/// Give the stopped VM `row` the configuration `spec` on NEW volumes that `fill` writes (a
/// restore over the original, docs/backups.md). Nothing of the old VM changes until every new
/// volume is written: a failure of `fill` or of the definition deletes the new volumes and
/// leaves the VM as it was. Only then are the old volumes deleted (a failure there is a
/// warning naming the volume left behind). The VM keeps its UUID and VNC password.
pub(crate) fn replace_disks(
    node: &Node,
    row: &DomainRow,
    mut spec: VmSpec,
    fill: &dyn Fn(&VmSpec) -> Result<()>,
    before_define: &dyn Fn(),
    task: &TaskHandle,
) -> Result<VmSpec> {
    let old = parsed(node, &row.name, true)?;
    let created = allocate(node, &mut spec, task)?;
    let defined = fill(&spec).and_then(|()| {
        before_define();
        let xml = render(node, &spec, &row.uuid, old.vnc_password.clone())?;
        Ok(node.hv.define(&xml)?)
    });
    if let Err(e) = defined {
        task.log(format!("{e}: VM {} is left as it was", spec.vmid));
        undo_volumes(node, &created, task);
        return Err(e);
    }
    record_vm(node, &spec, task);
    for d in &old.spec.disks {
        let (Some(pool), Some(vol)) = (&d.pool, &d.volume) else {
            continue;
        };
        if spec
            .disks
            .iter()
            .any(|n| n.pool.as_ref() == Some(pool) && n.volume.as_ref() == Some(vol))
        {
            continue;
        }
        match node.hv.delete_volume(pool, vol) {
            Ok(()) => task.log(format!("deleted the replaced volume {pool}/{vol}")),
            Err(e) => task.log(format!(
                "warning: the replaced volume {pool}/{vol} is left behind ({e}): delete it with `keel storage delete-volume {pool} {vol}`"
            )),
        }
    }
    Ok(spec)
}

/// Give a domain defined outside Keel a vmid.
/// What adoption checks before a task exists (and again inside it): a vmid in range and free,
/// a domain of that name that Keel does not manage yet.
pub fn check_adopt(node: &Node, req: &AdoptRequest) -> Result<()> {
    req.validate()?;
    let rows = node.hv.list_domains()?;
    if let Some(r) = rows.iter().find(|r| vmid_of(r) == Some(req.vmid)) {
        return Err(Error::Conflict(format!(
            "vmid {} is already used by VM {:?}",
            req.vmid, r.name
        )));
    }
    let row = rows.iter().find(|r| r.name == req.name).ok_or_else(|| {
        Error::validation(
            "name",
            format!(
                "no libvirt domain named {:?} on node {} (virsh list --all shows them)",
                req.name, node.cfg.node
            ),
        )
    })?;
    if row.keel_metadata.is_some() {
        return Err(Error::Conflict(format!(
            "domain {:?} is already managed by Keel",
            req.name
        )));
    }
    Ok(())
}

pub fn adopt(node: &Node, req: &AdoptRequest, task: &TaskHandle) -> Result<()> {
    check_adopt(node, req)?;
    reserve_vmid(node, req.vmid, &req.name)?;
    let xml = node.hv.domain_xml(&req.name, true)?;
    let adopted = domain::adopt_xml(&xml, req.vmid)
        .map_err(Error::from)
        .and_then(|x| Ok(node.hv.define(&x)?));
    if let Err(e) = adopted {
        if let Err(r) = release_vmid(node, req.vmid) {
            task.log(format!("warning: vmid {} stays reserved: {r}", req.vmid));
        }
        return Err(e);
    }
    task.log(format!("domain {:?} adopted as VM {}", req.name, req.vmid));
    if let Ok(p) = parsed(node, &req.name, true) {
        record_vm(node, &p.spec, task);
    }
    Ok(())
}

/// Every VM's label (`VM 100 (web1)`) and its parsed definition, for volume-use checks.
pub(crate) fn parsed_domains(node: &Node) -> Result<Vec<(String, ParsedDomain)>> {
    let mut out = Vec::new();
    for r in node.hv.list_domains()? {
        let Ok(xml) = node.hv.domain_xml(&r.name, true) else {
            continue;
        };
        let Ok(p) = domain::parse(&xml) else { continue };
        out.push((
            vmid_of(&r).map_or(r.name.clone(), |v| format!("VM {v} ({})", r.name)),
            p,
        ));
    }
    Ok(out)
}

/// Whether a VM's disks or CD-ROM use `pool`/`volume` (by name, or by `path` when known).
fn uses_volume(p: &ParsedDomain, pool: &str, volume: &str, path: &str) -> bool {
    p.spec
        .disks
        .iter()
        .any(|d| d.pool.as_deref() == Some(pool) && d.volume.as_deref() == Some(volume))
        || p.spec
            .cdrom
            .as_ref()
            .is_some_and(|c| c.pool.as_deref() == Some(pool) && c.volume.as_deref() == Some(volume))
        || p.spec.kernel.as_ref().is_some_and(|k| {
            k.pool == pool && (k.kernel == volume || k.initrd.as_deref() == Some(volume))
        })
        || (!path.is_empty()
            && (p.disk_paths.iter().any(|x| x == path)
                || p.cdrom_path.as_deref() == Some(path)
                || p.kernel_path.as_deref() == Some(path)
                || p.initrd_path.as_deref() == Some(path)
                || p.cloudinit_path.as_deref() == Some(path)))
}

/// Names (pool, volume) referenced by any VM's disks or CD-ROM.
pub fn volume_users(node: &Node, pool: &str, volume: &str) -> Result<Vec<String>> {
    let path = node
        .hv
        .volume(pool, volume)
        .map(|v| v.path)
        .unwrap_or_default();
    Ok(parsed_domains(node)?
        .into_iter()
        .filter(|(_, p)| uses_volume(p, pool, volume, &path))
        .map(|(l, _)| l)
        .collect())
}

/// A pool's volumes with the VMs using each (`used_by`), every VM definition read once.
pub fn volumes_with_users(node: &Node, pool: &str) -> Result<Vec<VolumeInfo>> {
    let mut vols = node.hv.list_volumes(pool)?;
    let doms = parsed_domains(node)?;
    for v in &mut vols {
        v.used_by = doms
            .iter()
            .filter(|(_, p)| uses_volume(p, pool, &v.name, &v.path))
            .map(|(l, _)| l.clone())
            .collect();
    }
    Ok(vols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::hv::Hypervisor as _;
    use crate::tests_support::fake_node;
    use keel_api::vm::{DiskSpec, NicSpec};
    use std::sync::Arc;

    fn spec(vmid: u32, name: &str) -> VmSpec {
        serde_json::from_value(serde_json::json!({"vmid": vmid, "name": name}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_purge_whose_volume_is_already_gone_still_deletes_the_vm() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv.clone())?;
        let mut s = spec(100, "a");
        s.disks.push(
            serde_json::from_value(serde_json::json!({"pool": "local", "size_mib": 8}))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        check_against_host(&node, &mut s, None)?;
        let t = node.tasks.begin("vmcreate", "100", "root", true)?;
        create(&node, s, false, &t)?;
        t.finish(&Ok(()));
        // removed behind Keel's back (another node of a shared pool, an operator)
        hv.delete_volume("local", "vm-100-disk-0.qcow2")?;
        let t = node.tasks.begin("vmdelete", "100", "root", true)?;
        delete(&node, 100, true, &t)?;
        t.finish(&Ok(()));
        assert!(find(&node, 100).is_err(), "VM 100 still defined");
        Ok(())
    }

    #[test]
    fn a_disk_on_an_lvm_thin_pool_is_a_raw_block_device() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        hv.add_thin_pool("fast", "keel");
        let (node, _dir) = fake_node(hv.clone())?;
        let disk = |v: serde_json::Value| -> DiskSpec {
            serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
        };
        // qcow2 (the default format) is refused before any task, naming the field
        let mut s = spec(100, "a");
        s.disks
            .push(disk(serde_json::json!({"pool": "fast", "size_mib": 8})));
        match check_against_host(&node, &mut s, None) {
            Err(Error::Validation(f)) => {
                assert_eq!(f.field, "disks[0].format");
                assert!(f.message.contains("give format raw"), "{}", f.message);
            }
            other => panic!("qcow2 on lvm-thin: {other:?}"),
        }
        // raw is taken, also beyond the pool's free space (the fake's 1 TiB: thin LVs are
        // allocated as the guest writes)
        let mut s = spec(100, "a");
        s.disks.push(disk(
            serde_json::json!({"pool": "fast", "size_mib": 2_097_152, "format": "raw"}),
        ));
        check_against_host(&node, &mut s, None)?;
        let t = node.tasks.begin("vmcreate", "100", "root", true)?;
        create(&node, s, false, &t)?;
        t.finish(&Ok(()));
        let xml = hv.domain_xml(&find(&node, 100)?.name, true)?;
        assert!(
            xml.contains("<disk type=\"block\" device=\"disk\">")
                && xml.contains("<source dev=\"/dev/keel/vm-100-disk-0.raw\"/>"),
            "{xml}"
        );
        Ok(())
    }

    #[test]
    fn create_then_delete_refuses_while_running_and_purges() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv.clone())?;
        let mut s = spec(100, "a");
        let d: DiskSpec =
            serde_json::from_value(serde_json::json!({"pool": "local", "size_mib": 8}))
                .unwrap_or_else(|e| panic!("{e}"));
        s.disks.push(d);
        check_against_host(&node, &mut s, None)?;
        let t = node.tasks.begin("vmcreate", "100", "root", true)?;
        create(&node, s, true, &t)?;
        t.finish(&Ok(()));
        // the pool's listing names the VM using its disk
        let vols = volumes_with_users(&node, "local")?;
        let disk = vols.iter().find(|v| v.name == "vm-100-disk-0.qcow2");
        assert_eq!(
            disk.map(|v| v.used_by.clone()),
            Some(vec!["VM 100 (a)".to_string()]),
            "{vols:?}"
        );
        let t = node.tasks.begin("vmdelete", "100", "root", true)?;
        assert!(matches!(
            delete(&node, 100, true, &t),
            Err(Error::Conflict(_))
        ));
        power(&node, 100, Power::Destroy, &t)?;
        delete(&node, 100, true, &t)?;
        t.finish(&Ok(()));
        assert_eq!(
            hv.calls(),
            vec![
                "create_volume local/vm-100-disk-0.qcow2",
                "define a",
                "power a Start",
                "power a Destroy",
                "undefine a",
                "delete_volume local/vm-100-disk-0.qcow2"
            ]
        );
        Ok(())
    }

    #[test]
    fn a_known_kernel_may_be_dropped_a_foreign_one_may_not() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv.clone())?;
        hv.create_volume("local", "vmlinuz-1", 1, keel_api::vm::DiskFormat::Raw)?;
        let mut s = spec(100, "k");
        s.kernel = Some(keel_api::vm::KernelBoot {
            pool: "local".into(),
            kernel: "vmlinuz-1".into(),
            ..Default::default()
        });
        check_against_host(&node, &mut s, None)?;
        let t = node.tasks.begin("vmcreate", "100", "root", true)?;
        create(&node, s.clone(), false, &t)?;
        t.finish(&Ok(()));
        let mut plain = s.clone();
        plain.kernel = None;
        check_update(&node, 100, &mut plain)?;
        // a foreign domain booting a kernel by path, adopted: an update without it is refused
        hv.define(
            "<domain type='qemu'><name>f</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             <metadata><keel:vm xmlns:keel='https://keel.dev/xmlns/vm/1'><keel:vmid>101</keel:vmid></keel:vm></metadata>\
             <os><type arch='x86_64'>hvm</type><kernel>/boot/vmlinuz</kernel></os></domain>",
        )?;
        let mut f = spec(101, "f");
        f.memory_mib = 64;
        match check_update(&node, 101, &mut f) {
            Err(Error::Validation(e)) => assert!(e.message.contains("/boot/vmlinuz"), "{e:?}"),
            other => panic!("not refused: {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn duplicate_vmid_and_name_conflict_unknown_network_is_validation() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv)?;
        let t = node.tasks.begin("vmcreate", "100", "root", false)?;
        let mut s = spec(100, "a");
        check_against_host(&node, &mut s, None)?;
        create(&node, s, false, &t)?;
        assert!(matches!(
            check_against_host(&node, &mut spec(100, "b"), None),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            check_against_host(&node, &mut spec(101, "a"), None),
            Err(Error::Conflict(_))
        ));
        let mut s = spec(102, "c");
        s.nics.push(NicSpec {
            network: Some("nope".into()),
            bridge: None,
            model: Default::default(),
            mac: None,
        });
        match check_against_host(&node, &mut s, None) {
            Err(Error::Validation(f)) => assert_eq!(f.field, "nics[0].network"),
            other => panic!("unexpected {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn shutdown_falls_back_to_stop_only_when_asked() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv.clone())?;
        let t = node.tasks.begin("x", "100", "root", false)?;
        let mut s = spec(100, "deaf");
        check_against_host(&node, &mut s, None)?;
        create(&node, s, true, &t)?;
        hv.ignore_acpi("deaf");
        let r = shutdown(
            &node,
            100,
            &ShutdownRequest {
                timeout_s: Some(1),
                force_stop: false,
            },
            &t,
        );
        assert!(matches!(r, Err(Error::Conflict(_))));
        shutdown(
            &node,
            100,
            &ShutdownRequest {
                timeout_s: Some(1),
                force_stop: true,
            },
            &t,
        )?;
        assert_eq!(find(&node, 100)?.state, VmState::Stopped);
        Ok(())
    }

    /// On a clustered node (fake store, fake hypervisor): vmids are reserved in the store, a
    /// vmid another node holds is a 409 naming it, a stale reservation of this node is taken
    /// over, nextid's reserved set, create records /vms, delete releases only what this node
    /// holds; a store that cannot answer refuses with 503.
    #[test]
    fn vmids_are_reserved_cluster_wide() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (mut node, dir) = fake_node(hv.clone())?;
        let sock = dir.path().join("store.sock");
        let map = crate::db::fake_store::serve(&sock);
        let record = dir.path().join("cluster.json");
        std::fs::write(&record, "{}")?;
        node.auth = crate::auth::Auth::new(crate::db::Db::open(&dir.path().join("c.db"))?)
            .in_cluster(record.clone())
            .with_store(crate::db::Store::at(&sock));
        let st = crate::db::Store::at(&sock);
        st.put(
            "/vmids/100",
            &serde_json::json!({"node": "n2", "name": "other"}),
        )?;
        match reserve_vmid(&node, 100, "a") {
            Err(Error::Conflict(m)) => assert!(m.contains("node n2") && m.contains("other"), "{m}"),
            r => panic!("expected 409: {r:?}"),
        }
        // a reservation of this node left by a failed create is taken over
        st.put(
            "/vmids/101",
            &serde_json::json!({"node": "n1", "name": "old"}),
        )?;
        reserve_vmid(&node, 101, "b")?;
        assert_eq!(
            st.get("/vmids/101")?.map(|e| e.value["name"].clone()),
            Some(serde_json::json!("b"))
        );
        let mut ids = reserved_vmids(&node)?;
        ids.sort();
        assert_eq!(ids, vec![100, 101]);
        // create records /vms/101, delete releases /vmids/101 and /vms/101
        let mut s = spec(101, "b");
        check_against_host(&node, &mut s, None)?;
        let t = node.tasks.begin("vmcreate", "101", "root", true)?;
        create(&node, s, false, &t)?;
        t.finish(&Ok(()));
        assert_eq!(
            st.get("/vms/101")?.map(|e| e.value["node"].clone()),
            Some(serde_json::json!("n1"))
        );
        let t = node.tasks.begin("vmdelete", "101", "root", true)?;
        delete(&node, 101, false, &t)?;
        t.finish(&Ok(()));
        assert!(st.get("/vmids/101")?.is_none() && st.get("/vms/101")?.is_none());
        // another node's reservation is never released by this one
        release_vmid(&node, 100)?;
        assert!(st.get("/vmids/100")?.is_some());
        assert_eq!(map.lock().map(|m| m.len()).unwrap_or(0), 1);
        // store down: refuse, 503
        node.auth = crate::auth::Auth::new(crate::db::Db::open(&dir.path().join("d.db"))?)
            .in_cluster(record)
            .with_store(crate::db::Store::at(dir.path().join("nothing.sock")));
        let e = reserve_vmid(&node, 102, "c").err().map(|e| e.status().0);
        assert_eq!(e, Some(503));
        Ok(())
    }
}
