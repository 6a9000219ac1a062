//! HA VMs (docs/ha.md): a VM whose disks are on a shared pool becomes a Pacemaker
//! `VirtualDomain` resource ([`clusterd::ha`]); Pacemaker restarts it on a survivor after its
//! node is fenced. Keel decides only what it may refuse; membership, fencing and recovery are
//! corosync's and Pacemaker's.
//!
//! The config store holds what every node needs:
//! * `/ha/vms/<vmid>` — the VM's domain XML and HA settings ([`HaRecord`]);
//! * `/storage/shared/<name>` — shared pools: a directory every node mounts from the same
//!   storage, proven by a marker file only that storage carries ([`SharedPool`]);
//! * `/nodefacts/<node>` — what each node publishes about itself ([`NodeFacts`]): memory,
//!   networks, bridges, which shared pools it can use and which HA domain XMLs it holds.
//!
//! A reconciler on every node ([`spawn_reconciler`]) materializes the HA XMLs into
//! `ha_config_dir` (the same path on every node: the resource's `config`), defines the shared
//! pools in libvirt, publishes the node's facts, and records where an HA VM runs now.
//!
//! While HA is on, the VM is a transient libvirt domain (VirtualDomain starts it with
//! `virsh create` and undefines any persistent copy), its configuration is the record in the
//! store, and start/stop go through Pacemaker's `target-role`.

mod reconcile;
pub mod routes;
pub mod rules;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clusterd::commands;
use clusterd::form;
use clusterd::ha::{self as cha, HaVm};
use keel_api::ha::{HaSet, HaVmStatus, SharedPoolCreate, SharedPoolInfo};
use keel_api::vm::{valid_object_name, VmSpec};
use keel_runner::{Cmd, RunError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::Store;
use crate::error::{Error, Result};
use crate::tasks::TaskHandle;
use crate::Node;

pub use reconcile::spawn_reconciler;

/// The file on a shared pool's storage that proves a node mounted the same storage.
pub const SHARED_MARKER: &str = ".keel-shared-pool";
/// Default `max_restarts` (Pacemaker's migration-threshold).
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
/// How long HA on waits for every online member to hold the VM's XML.
const MATERIALIZE_WAIT: Duration = Duration::from_secs(30);

/// `/ha/vms/<vmid>`: an HA VM's configuration, the source of truth while HA is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaRecord {
    pub vmid: u32,
    pub name: String,
    /// The persistent domain XML it was defined with (VirtualDomain's `config`).
    pub xml: String,
    pub priority: u32,
    pub max_restarts: u32,
    pub memory_mib: u64,
}

/// `/storage/shared/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPool {
    pub name: String,
    pub path: String,
    /// The marker file's content.
    pub id: String,
}

/// `/nodefacts/<node>`: what a node publishes about itself for the checks of other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub mem_total_mib: u64,
    /// Active libvirt networks.
    pub networks: Vec<String>,
    /// Host bridges.
    pub bridges: Vec<String>,
    /// Shared pool → `ok` or why this node cannot use it.
    pub shared: BTreeMap<String, String>,
    /// HA VM → SHA-256 of the domain XML materialized on this node.
    pub ha_xml: BTreeMap<u32, String>,
}

pub(crate) fn ha_key(vmid: u32) -> String {
    format!("/ha/vms/{vmid}")
}
fn facts_key(node: &str) -> String {
    format!("/nodefacts/{node}")
}
fn shared_key(name: &str) -> String {
    format!("/storage/shared/{name}")
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn not_clustered() -> Error {
    Error::Conflict(
        "this node is not in a cluster: HA and shared pools need one (keel cluster init)".into(),
    )
}

pub(crate) fn run_err(e: RunError) -> Error {
    if e.is_timeout() {
        Error::Unavailable(e.to_string())
    } else {
        Error::Internal(e.to_string())
    }
}

/// The config store of a clustered node.
fn store(node: &Node) -> Result<Store> {
    if node.cluster.record()?.is_none() {
        return Err(not_clustered());
    }
    Ok(Store::local())
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, v: &serde_json::Value) -> Result<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| Error::Internal(format!("config store entry {key} is not readable: {e}")))
}

/// The HA record of `vmid` (`None` on a standalone node or when the VM is not HA).
pub fn record(node: &Node, vmid: u32) -> Result<Option<HaRecord>> {
    if node.cluster.record()?.is_none() {
        return Ok(None);
    }
    let key = ha_key(vmid);
    match Store::local().get(&key)? {
        Some(e) => Ok(Some(decode(&key, &e.value)?)),
        None => Ok(None),
    }
}

fn records(st: &Store) -> Result<Vec<HaRecord>> {
    st.list("/ha/vms")?
        .iter()
        .map(|e| decode(&e.key, &e.value))
        .collect()
}

fn shared_pools(st: &Store) -> Result<Vec<SharedPool>> {
    st.list("/storage/shared")?
        .iter()
        .map(|e| decode(&e.key, &e.value))
        .collect()
}

/// Whether `pool` is a cluster shared pool (false on a standalone node): its files change
/// behind this node's libvirt, so listings refresh it first.
pub fn is_shared_pool(node: &Node, pool: &str) -> bool {
    store(node)
        .and_then(|st| shared_pools(&st))
        .is_ok_and(|v| v.iter().any(|p| p.name == pool))
}

fn all_facts(st: &Store) -> Result<BTreeMap<String, NodeFacts>> {
    let mut out = BTreeMap::new();
    for e in st.list("/nodefacts")? {
        let name = e.key.rsplit('/').next().unwrap_or_default().to_string();
        out.insert(name, decode(&e.key, &e.value)?);
    }
    Ok(out)
}

/// Refuse an operation HA VMs do not support while HA is on (`what`: "changing the
/// configuration", "deleting", …).
pub fn refuse_if_ha(node: &Node, vmid: u32, what: &str) -> Result<()> {
    if record(node, vmid)?.is_some() {
        return Err(Error::Conflict(format!(
            "VM {vmid} is highly available: {what} is not possible while Pacemaker manages it; turn HA off first (keel vm ha {vmid} off), then turn it on again"
        )));
    }
    Ok(())
}

// ------------------------------------------------------------------ the checks (pure)

/// Where a VM's disks, ISO and NICs must be found on every candidate node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Needs {
    /// Pools of disks and of the CD-ROM (by name).
    pub pools: Vec<String>,
    pub networks: Vec<String>,
    pub bridges: Vec<String>,
}

/// What `spec` needs from a node, or why it can never be HA (a disk given by path).
pub fn needs_of(spec: &VmSpec) -> std::result::Result<Needs, String> {
    let mut n = Needs::default();
    for (i, d) in spec.disks.iter().enumerate() {
        match &d.pool {
            Some(p) => n.pools.push(p.clone()),
            None => {
                return Err(format!(
                "disk {i} is a path, not a volume of a shared pool: move it to a shared pool first"
            ))
            }
        }
    }
    if let Some(c) = &spec.cdrom {
        match &c.pool {
            Some(p) => n.pools.push(p.clone()),
            None if c.path.is_some() => {
                return Err(
                    "the CD-ROM is a path on this node: eject it or use an ISO on a shared pool"
                        .into(),
                )
            }
            None => {}
        }
    }
    if let Some(k) = &spec.kernel {
        // the kernel it boots must be where it restarts
        n.pools.push(k.pool.clone());
    }
    if let Some(p) = crate::cloudinit::seed_pool(spec) {
        // the seed must be where the VM restarts
        n.pools.push(p);
    }
    for nic in &spec.nics {
        if let Some(x) = &nic.network {
            n.networks.push(x.clone());
        }
        if let Some(x) = &nic.bridge {
            n.bridges.push(x.clone());
        }
    }
    n.pools.sort();
    n.pools.dedup();
    Ok(n)
}

/// Every member can run a VM that needs `needs`: its pools are shared pools every member
/// can use, its networks and bridges exist on every member. One message listing every gap.
pub fn check_placement(
    needs: &Needs,
    shared: &[String],
    members: &[String],
    facts: &BTreeMap<String, NodeFacts>,
) -> std::result::Result<(), String> {
    let mut why = vec![];
    for p in &needs.pools {
        if !shared.contains(p) {
            why.push(format!(
                "pool {p:?} is node-local storage (not a shared pool): move the disk to a shared pool (keel storage shared list)"
            ));
        }
    }
    for m in members {
        let Some(f) = facts.get(m) else {
            why.push(format!(
                "{m} has not reported its networks and pools yet (is its keel-hostd running?)"
            ));
            continue;
        };
        for p in needs.pools.iter().filter(|p| shared.contains(p)) {
            match f.shared.get(p).map(String::as_str) {
                Some("ok") => {}
                Some(e) => why.push(format!("{m} cannot use shared pool {p:?}: {e}")),
                None => why.push(format!("{m} has not checked shared pool {p:?} yet")),
            }
        }
        for x in needs.networks.iter().filter(|x| !f.networks.contains(x)) {
            why.push(format!(
                "network {x:?} is missing or stopped on {m}: create and start it there"
            ));
        }
        for x in needs.bridges.iter().filter(|x| !f.bridges.contains(x)) {
            why.push(format!("bridge {x:?} is missing on {m}"));
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

/// Ganeti's N+1: after the loss of any one member, the others still hold every HA VM's
/// memory (each member keeps `reserve_mib` for itself). `ha_mib`: the HA VMs' memory,
/// including the one being added.
pub fn n_plus_one(
    members: &[(String, u64)],
    reserve_mib: u64,
    ha_mib: u64,
) -> std::result::Result<(), String> {
    if members.len() < 2 {
        return Err("HA needs at least two nodes".into());
    }
    let usable = |m: &u64| m.saturating_sub(reserve_mib);
    let total: u64 = members.iter().map(|(_, m)| usable(m)).sum();
    let (worst, worst_mib) = members
        .iter()
        .max_by_key(|(_, m)| usable(m))
        .map(|(n, m)| (n.as_str(), usable(m)))
        .unwrap_or(("", 0));
    let left = total - worst_mib;
    if ha_mib > left {
        return Err(format!(
            "N+1: the HA VMs would need {ha_mib} MiB, but after losing {worst} the other nodes have {left} MiB for VMs ({reserve_mib} MiB kept per node): add memory or a node, or lower the VMs' memory"
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ HA on / off

fn members(node: &Node) -> Result<Vec<String>> {
    Ok(form::read_corosync_conf(&node.cluster.paths)?
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect())
}

fn validate_set(req: &HaSet) -> Result<()> {
    if req.priority.is_some_and(|p| p > 1_000_000) {
        return Err(Error::validation(
            "priority",
            "priority must be from 0 to 1000000",
        ));
    }
    if req.max_restarts.is_some_and(|m| !(1..=1000).contains(&m)) {
        return Err(Error::validation(
            "max_restarts",
            "max_restarts must be from 1 to 1000",
        ));
    }
    Ok(())
}

/// Everything HA on can refuse, before a task exists (and again inside it).
pub fn check_enable(node: &Node, vmid: u32, req: &HaSet) -> Result<VmSpec> {
    validate_set(req)?;
    let st = store(node)?;
    if record(node, vmid)?.is_some() {
        return Err(Error::Conflict(format!(
            "VM {vmid} is already highly available"
        )));
    }
    let row = crate::vms::find(node, vmid)?;
    crate::clones::refuse_template(&row, vmid)?;
    let snaps = node.hv.list_snapshots(&row.name).unwrap_or_default();
    if !snaps.is_empty() {
        return Err(Error::Conflict(format!(
            "VM {vmid} has {} snapshot(s): an HA VM is a transient libvirt domain, which keeps no snapshot metadata; delete them first",
            snaps.len()
        )));
    }
    crate::cluster::require_fence_tested(node)?;
    let spec = crate::domain::parse(&node.hv.domain_xml(&row.name, true)?)?.spec;
    let needs = needs_of(&spec).map_err(|m| Error::Conflict(format!("VM {vmid}: {m}")))?;
    let san = crate::cluster_pools::volume_pools(&st);
    if let Some(p) = needs.pools.iter().find(|p| san.contains(p)) {
        return Err(Error::Conflict(format!(
            "VM {vmid} cannot be HA yet: a disk of it is on iscsi-lvm pool {p:?}, whose LVs \
             Keel activates on one node at a time when the VM starts, and Pacemaker does not \
             do that for an HA VM yet; keep HA VMs' disks on an iscsi-gfs2 or drbd-gfs2 pool"
        )));
    }
    let shared: Vec<String> = shared_pools(&st)?.into_iter().map(|p| p.name).collect();
    let members = members(node)?;
    let facts = all_facts(&st)?;
    check_placement(&needs, &shared, &members, &facts)
        .map_err(|m| Error::Conflict(format!("VM {vmid} cannot be HA: {m}")))?;
    let mems: Vec<(String, u64)> = members
        .iter()
        .map(|m| (m.clone(), facts.get(m).map_or(0, |f| f.mem_total_mib)))
        .collect();
    let ha_mib: u64 = records(&st)?.iter().map(|r| r.memory_mib).sum::<u64>() + spec.memory_mib;
    n_plus_one(&mems, node.cfg.cluster.ha_host_reserve_mib, ha_mib)
        .map_err(|m| Error::Conflict(format!("VM {vmid} cannot be HA: {m}")))?;
    Ok(spec)
}

/// Pacemaker's status for a task's step (HA on/off, migration, maintenance): allowed a change's
/// timeout, not a query's, so a loaded node's slow `crm_mon` does not fail the task.
pub(crate) fn crm(node: &Node) -> Result<clusterd::crm::CrmStatus> {
    form::crm_status_within(
        node.cluster.runner.as_ref(),
        clusterd::commands::CHANGE_TIMEOUT,
    )
    .map_err(Error::from)
}

/// Poll `f` (a read-only check: Pacemaker's status, the nodes' facts) until it says yes or
/// `limit` passes. A check that fails is tried again until then — on a loaded node one
/// `crm_mon` can take longer than its own timeout, which must not fail the whole task — and
/// the last failure is named when time runs out.
pub(crate) fn wait_for(what: &str, limit: Duration, f: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_with_pause(what, limit, Duration::from_millis(300), f)
}

fn wait_with_pause(
    what: &str,
    limit: Duration,
    pause: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let last_err = match f() {
            Ok(true) => return Ok(()),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!("while waiting for {what}: {e} (trying again)");
                Some(e)
            }
        };
        if t0.elapsed() > limit {
            return Err(Error::Unavailable(match last_err {
                Some(e) => format!(
                    "timed out after {}s waiting for {what}; the last check failed: {e}",
                    limit.as_secs()
                ),
                None => format!("timed out after {}s waiting for {what}", limit.as_secs()),
            }));
        }
        std::thread::sleep(pause);
    }
}

fn config_path(node: &Node, vmid: u32) -> String {
    node.cfg
        .cluster
        .ha_config_dir
        .join(format!("{vmid}.xml"))
        .display()
        .to_string()
}

/// HA on: the record into the store, every online member holding the XML, the resource into
/// the CIB (Pacemaker's probe finds the VM where it runs), then the persistent definition
/// dropped (the running domain stays, transient). Undone in reverse on failure.
pub fn enable(node: &Node, vmid: u32, req: &HaSet, t: &TaskHandle) -> Result<()> {
    let spec = check_enable(node, vmid, req)?;
    let st = store(node)?;
    let row = crate::vms::find(node, vmid)?;
    let running = row.state.is_active();
    let xml = node.hv.domain_xml(&row.name, true)?;
    let rec = HaRecord {
        vmid,
        name: row.name.clone(),
        xml: xml.clone(),
        priority: req.priority.unwrap_or(0),
        max_restarts: req.max_restarts.unwrap_or(DEFAULT_MAX_RESTARTS),
        memory_mib: spec.memory_mib,
    };
    let v = serde_json::to_value(&rec).map_err(|e| Error::Internal(e.to_string()))?;
    st.put(&ha_key(vmid), &v)?;
    t.log("HA record written to the config store");
    t.progress(0.2);
    let undo_record = |t: &TaskHandle| {
        if let Err(e) = st.delete(&ha_key(vmid)) {
            t.log(format!("warning: could not remove the HA record: {e}"));
        }
    };
    // every online member must hold the XML before Pacemaker probes for the VM
    let sha = sha256_hex(xml.as_bytes());
    let r = wait_for(
        "every online member to hold the VM's domain XML",
        MATERIALIZE_WAIT,
        || {
            let c = crm(node)?;
            let facts = all_facts(&st)?;
            Ok(c.nodes.iter().filter(|n| n.online).all(|n| {
                facts
                    .get(&n.name)
                    .and_then(|f| f.ha_xml.get(&vmid))
                    .is_some_and(|h| *h == sha)
            }))
        },
    );
    if let Err(e) = r {
        undo_record(t);
        return Err(e);
    }
    t.log("domain XML materialized on every online member");
    t.progress(0.4);
    let ha = HaVm {
        vmid,
        config: config_path(node, vmid),
        priority: rec.priority,
        max_restarts: rec.max_restarts,
        started: running,
        remoteuri: Some(node.cluster.migration_tls.peer_uri("%n")),
        migrate_extra: node
            .cfg
            .cluster
            .ha_migrate_unsafe
            .then(|| "--unsafe".to_string()),
    };
    let r = node.cluster.runner.as_ref();
    // a VM on a cluster pool starts after the pool's file system and only where it is mounted
    let clones = match needs_of(&spec)
        .map_err(Error::Conflict)
        .and_then(|n| crate::cluster_pools::pacemaker_clones(&st, &n.pools))
    {
        Ok(c) => c,
        Err(e) => {
            undo_record(t);
            return Err(e);
        }
    };
    if let Err(e) = form::apply_cib(r, &cha::put(&ha, &clones)) {
        undo_record(t);
        return Err(e.into());
    }
    t.log(format!(
        "Pacemaker resource {} added (VirtualDomain, allow-migrate, target-role {})",
        cha::resource_id(vmid),
        cha::target_role(running)
    ));
    for c in &clones {
        t.log(format!(
            "it starts after {c} (its cluster pool's file system) and only where that runs"
        ));
    }
    t.progress(0.6);
    let here = node.cfg.node.clone();
    let rid = cha::resource_id(vmid);
    let probed = wait_for(
        "Pacemaker to find the VM where it runs",
        Duration::from_secs(60),
        || {
            let c = crm(node)?;
            let res = c.resource(&rid);
            Ok(if running {
                res.is_some_and(|x| x.active && x.nodes.contains(&here))
            } else {
                res.is_some_and(|x| !x.active)
            })
        },
    );
    if let Err(e) = probed {
        t.log(format!("{e}: removing the resource again"));
        let _ = r.run_ok(&Cmd::argv(&cha::unmanage(vmid)).timeout(Duration::from_secs(30)));
        let _ = form::apply_cib(
            r,
            &cha::delete(vmid, &cha::storage_constraints(vmid, &clones)),
        );
        undo_record(t);
        return Err(e);
    }
    // the VM's definition now lives in the store: drop the persistent copy (a running
    // domain stays, transient)
    node.hv.undefine(&row.name)?;
    t.log(if running {
        "running under Pacemaker here; the persistent libvirt definition is dropped (the domain is transient now)"
    } else {
        "stopped; Pacemaker keeps it stopped until it is started (keel vm start)"
    });
    t.progress(1.0);
    Ok(())
}

/// For `keel cluster verify`: every HA VM on cluster pools with the storage constraints the
/// CIB lacks (HA turned on before Keel added them, or removed by hand). Empty when the store
/// or the CIB cannot be read (verify reports those on their own).
pub fn storage_facts(node: &Node) -> Vec<crate::cluster::verify::HaStorageFact> {
    let Ok(st) = store(node) else {
        return vec![];
    };
    let Ok(recs) = records(&st) else {
        return vec![];
    };
    let r = node.cluster.runner.as_ref();
    let Ok(cons) = r.run_ok(&commands::cib_query("constraints")) else {
        return vec![];
    };
    let mut out = vec![];
    for rec in recs {
        let Ok(d) = crate::domain::parse(&rec.xml) else {
            continue;
        };
        let Ok(needs) = needs_of(&d.spec) else {
            continue;
        };
        let Ok(clones) = crate::cluster_pools::pacemaker_clones(&st, &needs.pools) else {
            continue;
        };
        let Ok(found) = cha::storage_constraints_in(&cons, rec.vmid) else {
            continue;
        };
        out.push(crate::cluster::verify::HaStorageFact {
            vmid: rec.vmid,
            missing: missing_storage(rec.vmid, &clones, &found),
        });
    }
    out
}

/// The clones of `clones` whose order or colocation constraint for VM `vmid` is not among
/// `found`.
fn missing_storage(vmid: u32, clones: &[String], found: &[keel_xml::Element]) -> Vec<String> {
    clones
        .iter()
        .filter(|c| {
            cha::storage_constraints(vmid, std::slice::from_ref(*c))
                .iter()
                .any(|want| {
                    !found
                        .iter()
                        .any(|f| f.name == want.name && f.get_attr("id") == want.get_attr("id"))
                })
        })
        .cloned()
        .collect()
}

/// Before HA off: the VM is HA, and runs here or nowhere.
pub fn check_disable(node: &Node, vmid: u32) -> Result<HaRecord> {
    let rec = record(node, vmid)?
        .ok_or_else(|| Error::Conflict(format!("VM {vmid} is not highly available")))?;
    let named = rules::naming(&store(node)?, vmid)?;
    if !named.is_empty() {
        return Err(Error::Conflict(format!(
            "VM {vmid} is in placement rule(s) {}: remove them first (keel cluster ha-rule remove ID)",
            named.join(", ")
        )));
    }
    let c = crm(node)?;
    if let Some(res) = c.resource(&cha::resource_id(vmid)) {
        if let Some(other) = res.nodes.iter().find(|n| **n != node.cfg.node) {
            return Err(Error::Conflict(format!(
                "VM {vmid} runs on {other}: turn HA off there (keel --node {other} vm ha {vmid} off)"
            )));
        }
    }
    Ok(rec)
}

/// HA off: the resource unmanaged and removed (the VM keeps running), its record defined
/// again as a persistent libvirt domain on this node, the record removed.
pub fn disable(node: &Node, vmid: u32, t: &TaskHandle) -> Result<()> {
    let rec = check_disable(node, vmid)?;
    let st = store(node)?;
    let r = node.cluster.runner.as_ref();
    let rid = cha::resource_id(vmid);
    let in_cib = cha::from_resources(
        &r.run_ok(&commands::cib_query("resources"))
            .map_err(run_err)?,
    )
    .map_err(Error::Internal)?
    .iter()
    .any(|h| h.vmid == vmid);
    if in_cib {
        r.run_ok(&Cmd::argv(&cha::unmanage(vmid)).timeout(Duration::from_secs(30)))
            .map_err(run_err)?;
        t.log(format!(
            "{rid} unmanaged: Pacemaker no longer stops or starts it"
        ));
        // A resource deleted from the configuration while its history says it runs is an
        // orphan, and Pacemaker stops orphans: hold that off until its history is forgotten.
        let q = Duration::from_secs(30);
        r.run_ok(&Cmd::argv(&cha::stop_orphans(false)).timeout(q))
            .map_err(run_err)?;
        let removed = (|| -> Result<()> {
            let constraints = cha::storage_constraints_in(
                &r.run_ok(&commands::cib_query("constraints"))
                    .map_err(run_err)?,
                vmid,
            )
            .map_err(Error::Internal)?;
            form::apply_cib(r, &cha::delete(vmid, &constraints))?;
            r.run_ok(&Cmd::argv(&["crm_resource", "--refresh", "--resource", &rid]).timeout(q))
                .map_err(run_err)?;
            wait_for(
                "Pacemaker to forget the removed resource",
                Duration::from_secs(30),
                || Ok(crm(node)?.resource(&rid).is_none()),
            )
        })();
        let restored = r
            .run_ok(&Cmd::argv(&cha::stop_orphans(true)).timeout(q))
            .map_err(run_err);
        removed?;
        restored?;
        t.log(format!("{rid} removed from the CIB; the VM keeps running"));
    }
    node.hv.define(&rec.xml)?;
    t.log("defined again as a persistent libvirt domain on this node");
    st.delete(&ha_key(vmid))?;
    reconcile::claim_vm(node, vmid, &st);
    t.log("HA record removed");
    Ok(())
}

/// Start or stop an HA VM through Pacemaker (`target-role`), waiting until it is so.
pub fn set_started(node: &Node, vmid: u32, started: bool, t: &TaskHandle) -> Result<()> {
    let r = node.cluster.runner.as_ref();
    r.run_ok(&Cmd::argv(&cha::set_target_role(vmid, started)).timeout(Duration::from_secs(30)))
        .map_err(run_err)?;
    t.log(format!(
        "asked Pacemaker to keep VM {vmid} {}",
        if started { "running" } else { "stopped" }
    ));
    let rid = cha::resource_id(vmid);
    let limit = Duration::from_secs(cha::STOP_TIMEOUT_S as u64 + 60);
    let mut on = None;
    wait_for(
        if started {
            "Pacemaker to start the VM"
        } else {
            "Pacemaker to stop the VM"
        },
        limit,
        || {
            let c = crm(node)?;
            let res = c.resource(&rid);
            on = res.and_then(|x| x.nodes.first().cloned());
            Ok(res.is_some_and(|x| x.active == started && !x.failed || !started && !x.active))
        },
    )?;
    if let Some(n) = on {
        t.log(format!("running on {n}"));
    } else {
        t.log("stopped");
    }
    Ok(())
}

/// Forget an HA VM's failed operations and fail counts (`crm_resource --cleanup`), once their
/// cause is fixed: a VM banned from a node after `max_restarts` failures may run there again.
pub fn cleanup(node: &Node, vmid: u32) -> Result<String> {
    if record(node, vmid)?.is_none() {
        return Err(Error::NotFound(format!(
            "VM {vmid} is not highly available"
        )));
    }
    let r = node.cluster.runner.as_ref();
    r.run_ok(&Cmd::argv(&cha::cleanup(vmid)).timeout(Duration::from_secs(60)))
        .map_err(run_err)?;
    Ok(format!(
        "failures and fail counts of VM {vmid} cleared: Pacemaker re-checks where it runs"
    ))
}

/// Every HA VM with where Pacemaker runs it.
pub fn list(node: &Node) -> Result<Vec<HaVmStatus>> {
    let st = store(node)?;
    let c = crm(node)?;
    let r = node.cluster.runner.as_ref();
    let cib = cha::from_resources(
        &r.run_ok(&commands::cib_query("resources"))
            .map_err(run_err)?,
    )
    .map_err(Error::Internal)?;
    let all_rules = rules::all(&st)?;
    let mut out = vec![];
    for rec in records(&st)? {
        let rid = cha::resource_id(rec.vmid);
        let res = c.resource(&rid);
        let h = cib.iter().find(|h| h.vmid == rec.vmid);
        out.push(HaVmStatus {
            fail_counts: c
                .fail_counts
                .iter()
                .filter(|f| f.resource == rid)
                .map(|f| (f.node.clone(), f.count))
                .collect(),
            rules: all_rules
                .iter()
                .filter(|r| r.vms.contains(&rec.vmid))
                .map(|r| r.id.clone())
                .collect(),
            vmid: rec.vmid,
            name: rec.name.clone(),
            resource: rid.clone(),
            target: if h.is_none_or(|h| h.started) {
                "started"
            } else {
                "stopped"
            }
            .into(),
            node: res
                .filter(|x| x.active)
                .and_then(|x| x.nodes.first().cloned()),
            active: res.is_some_and(|x| x.active),
            failed: res.is_some_and(|x| x.failed),
            managed: res.is_none_or(|x| x.managed),
            priority: rec.priority,
            max_restarts: rec.max_restarts,
            failures: c
                .failures
                .iter()
                .filter(|f| f.op_key.starts_with(&format!("{rid}_")))
                .map(|f| {
                    format!(
                        "{}: {}: {} {}",
                        f.node, f.task, f.exit_status, f.exit_reason
                    )
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Stopped HA VMs this node owns in the cluster-wide view: they are in no libvirt while
/// stopped (transient domains), so the VM list shows them from their record.
pub fn stopped_here(
    node: &Node,
    listed: &[keel_api::vm::VmSummary],
) -> Vec<keel_api::vm::VmSummary> {
    let Ok(st) = store(node) else { return vec![] };
    let Ok(recs) = records(&st) else {
        return vec![];
    };
    let mut out = vec![];
    for r in recs {
        if listed.iter().any(|v| v.name == r.name) {
            continue;
        }
        let here = st
            .get(&format!("/vms/{}", r.vmid))
            .ok()
            .flatten()
            .is_some_and(|e| e.value["node"].as_str() == Some(node.cfg.node.as_str()));
        if !here {
            continue;
        }
        let Ok(p) = crate::domain::parse(&r.xml) else {
            continue;
        };
        out.push(keel_api::vm::VmSummary {
            vmid: Some(r.vmid),
            name: r.name,
            uuid: p.uuid,
            state: keel_api::vm::VmState::Stopped,
            vcpus: p.spec.vcpus,
            memory_mib: p.spec.memory_mib,
            uptime_s: None,
            managed: true,
            template: false,
        });
    }
    out
}

/// What if `fail` died now: Pacemaker's scheduler (`crm_simulate` on the live CIB) says where
/// each HA VM would run.
pub fn what_if(node: &Node, fail: &str) -> Result<keel_api::ha::WhatIf> {
    let st = store(node)?;
    let members = members(node)?;
    if !members.iter().any(|m| m == fail) {
        return Err(Error::validation(
            "node_fail",
            format!("{fail:?} is not a member (members: {})", members.join(", ")),
        ));
    }
    let r = node.cluster.runner.as_ref();
    let sim = cha::parse_simulation(&r.run_ok(&cha::what_if_cmd(fail)).map_err(run_err)?)
        .map_err(Error::Internal)?;
    let names: BTreeMap<u32, String> = records(&st)?
        .into_iter()
        .map(|r| (r.vmid, r.name))
        .collect();
    Ok(keel_api::ha::WhatIf {
        node_fail: fail.to_string(),
        vms: sim
            .into_iter()
            .map(|s| {
                let (outcome, detail) = outcome(fail, s.before.as_deref(), s.after.as_deref());
                keel_api::ha::WhatIfVm {
                    vmid: s.vmid,
                    name: names.get(&s.vmid).cloned().unwrap_or_default(),
                    now: s.before,
                    after: s.after,
                    outcome: outcome.into(),
                    detail,
                }
            })
            .collect(),
    })
}

/// The outcome of one VM in a simulation, in a word and in words.
pub fn outcome(fail: &str, before: Option<&str>, after: Option<&str>) -> (&'static str, String) {
    match (before, after) {
        (None, None) => ("stopped", "stopped now; stays stopped".into()),
        (Some(b), Some(a)) if a == b => ("unaffected", format!("keeps running on {b}")),
        (Some(b), Some(a)) if b == fail => (
            "restarts",
            format!("restarts on {a} after {fail} is fenced (a reboot for the guest)"),
        ),
        (_, Some(a)) => ("moves", format!("moves to {a} (placement rules or priorities)")),
        (Some(b), None) if b == fail => (
            "stays-down",
            "stays down: no other node may run it (placement rules, failures, or capacity); check keel cluster ha and the Pacemaker constraints".to_string(),
        ),
        (Some(b), None) => (
            "stays-down",
            format!("stops on {b}: Pacemaker would stop it to make room (priorities)"),
        ),
    }
}

/// Live-migrate an HA VM through Pacemaker: a move (VirtualDomain's migrate_to/migrate_from,
/// libvirt and QEMU over TLS with the cluster CA), then the move's constraint cleared, so no
/// stale location preference is left behind. Refused before anything moves when the target is
/// not an online member that can run the VM.
pub fn check_move(node: &Node, vmid: u32, target: &str) -> Result<HaRecord> {
    let st = store(node)?;
    let rec = record(node, vmid)?
        .ok_or_else(|| Error::Conflict(format!("VM {vmid} is not highly available")))?;
    let c = crm(node)?;
    let rid = cha::resource_id(vmid);
    let res = c
        .resource(&rid)
        .filter(|r| r.active)
        .ok_or_else(|| Error::Conflict(format!("HA VM {vmid} is not running: start it first")))?;
    if res.nodes.iter().any(|n| n == target) {
        return Err(Error::validation(
            "target",
            format!("VM {vmid} already runs on {target}"),
        ));
    }
    match c.nodes.iter().find(|n| n.name == target) {
        Some(n) if n.online && !n.standby => {}
        Some(_) => {
            return Err(Error::Conflict(format!(
                "{target} is offline or in standby: it cannot take VM {vmid}"
            )))
        }
        None => return Err(Error::Conflict(format!("{target} is not a member"))),
    }
    // the hard placement rules, against where the other HA VMs run now
    let running_on = |v: u32| -> Option<String> {
        c.resource(&cha::resource_id(v))
            .filter(|r| r.active)
            .and_then(|r| r.nodes.first().cloned())
    };
    for rule in rules::all(&st)?
        .iter()
        .filter(|r| r.hard && r.vms.contains(&vmid))
    {
        use keel_api::ha::HaRuleKind as K;
        let mut others = rule.vms.iter().copied().filter(|v| *v != vmid);
        let why = match rule.kind {
            K::NodeAffinity if !rule.nodes.iter().any(|n| n.node == target) => Some(format!(
                "it may run only on {}",
                rule.nodes
                    .iter()
                    .map(|n| n.node.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            K::Apart => others
                .find(|v| running_on(*v).as_deref() == Some(target))
                .map(|v| format!("VM {v} runs there and must stay apart")),
            K::Together => others
                .find_map(|v| running_on(v).filter(|n| n != target).map(|n| (v, n)))
                .map(|(v, n)| format!("it must run together with VM {v}, which runs on {n}")),
            _ => None,
        };
        if let Some(why) = why {
            return Err(Error::Conflict(format!(
                "VM {vmid} cannot move to {target}: {why} (rule {})",
                rule.id
            )));
        }
    }
    let needs =
        needs_of(&domain_spec(&rec)?).map_err(|m| Error::Conflict(format!("VM {vmid}: {m}")))?;
    let shared: Vec<String> = shared_pools(&st)?.into_iter().map(|p| p.name).collect();
    check_placement(&needs, &shared, &[target.to_string()], &all_facts(&st)?)
        .map_err(|m| Error::Conflict(format!("VM {vmid} cannot move to {target}: {m}")))?;
    Ok(rec)
}

fn domain_spec(rec: &HaRecord) -> Result<VmSpec> {
    Ok(crate::domain::parse(&rec.xml)?.spec)
}

pub fn move_to(node: &Node, vmid: u32, target: &str, t: &TaskHandle) -> Result<()> {
    check_move(node, vmid, target)?;
    let r = node.cluster.runner.as_ref();
    let q = Duration::from_secs(30);
    let rid = cha::resource_id(vmid);
    t.log(format!(
        "HA VM {vmid}: asking Pacemaker to move it to {target} (live migration over TLS)"
    ));
    let t0 = Instant::now();
    r.run_ok(&Cmd::argv(&cha::move_to(vmid, target)).timeout(q))
        .map_err(run_err)?;
    let moved = wait_for(
        &format!("Pacemaker to run VM {vmid} on {target}"),
        Duration::from_secs(600),
        || {
            let c = crm(node)?;
            Ok(c.resource(&rid).is_some_and(|x| {
                x.active && x.nodes.iter().any(|n| n == target) && x.nodes.len() == 1
            }))
        },
    );
    // whatever happened, the move's constraint goes
    let cleared = r
        .run_ok(&Cmd::argv(&cha::clear(vmid)).timeout(q))
        .map_err(run_err);
    moved?;
    cleared?;
    t.log(format!(
        "running on {target} after {:.2} s; the move's constraint is cleared",
        t0.elapsed().as_secs_f64()
    ));
    let c = crm(node)?;
    let migrated = c
        .failures
        .iter()
        .all(|f| !f.op_key.starts_with(&format!("{rid}_migrate")));
    if !migrated {
        t.log("warning: the live migration failed and Pacemaker restarted the VM instead (see keel cluster ha)");
    }
    Ok(())
}

// ------------------------------------------------------------------ shared pools

/// Create a shared pool: the directory must exist here; a marker with a fresh id is written
/// into it, and every node's reconciler defines the pool once it sees the same marker.
pub fn create_shared(node: &Node, req: &SharedPoolCreate) -> Result<SharedPoolInfo> {
    if !valid_object_name(&req.name) {
        return Err(Error::validation(
            "name",
            format!(
                "{:?} is not a valid pool name (letters, digits, '-', '_', '.', '+')",
                req.name
            ),
        ));
    }
    let path = std::path::Path::new(&req.path);
    if !path.is_absolute() || req.path.contains("/../") || req.path.ends_with("/..") {
        return Err(Error::validation(
            "path",
            format!("{:?} must be an absolute path", req.path),
        ));
    }
    let st = store(node)?;
    if st.get(&shared_key(&req.name))?.is_some() || node.hv.pool(&req.name).is_ok() {
        return Err(Error::Conflict(format!(
            "a pool named {:?} already exists: choose another name",
            req.name
        )));
    }
    if !path.is_dir() {
        return Err(Error::validation(
            "path",
            format!(
                "{} is not a directory on {}: mount the shared storage there first",
                req.path, node.cfg.node
            ),
        ));
    }
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    let id = format!("keel-shared-pool {} {}", req.name, sha256_hex(&b));
    let marker = path.join(SHARED_MARKER);
    std::fs::write(&marker, format!("{id}\n")).map_err(|e| {
        Error::Conflict(format!(
            "cannot write {}: {e} (is the shared storage mounted, and not read-only? A Keel pool's mount point refuses writes while its file system is not mounted)",
            marker.display()
        ))
    })?;
    let p = SharedPool {
        name: req.name.clone(),
        path: req.path.clone(),
        id,
    };
    st.create(
        &shared_key(&req.name),
        &serde_json::to_value(&p).map_err(|e| Error::Internal(e.to_string()))?,
    )?;
    let pools = list_shared(node)?;
    pools
        .into_iter()
        .find(|x| x.name == req.name)
        .ok_or_else(|| Error::Internal("the new pool is not listed".into()))
}

pub fn list_shared(node: &Node) -> Result<Vec<SharedPoolInfo>> {
    let st = store(node)?;
    let facts = all_facts(&st)?;
    let members = members(node)?;
    Ok(shared_pools(&st)?
        .into_iter()
        .map(|p| SharedPoolInfo {
            nodes: members
                .iter()
                .map(|m| {
                    let s = facts
                        .get(m)
                        .and_then(|f| f.shared.get(&p.name).cloned())
                        .unwrap_or_else(|| "not checked yet".into());
                    (m.clone(), s)
                })
                .collect(),
            name: p.name,
            path: p.path,
        })
        .collect())
}

/// Remove a shared pool from the cluster (refused while a VM's disk is on it); the libvirt
/// pools are undefined by each node's reconciler, the files stay.
pub fn delete_shared(node: &Node, name: &str) -> Result<()> {
    let st = store(node)?;
    if st.get(&shared_key(name))?.is_none() {
        return Err(Error::NotFound(format!("no shared pool named {name:?}")));
    }
    let mut users = vec![];
    for e in st.list("/vms")? {
        let Ok(spec) = serde_json::from_value::<VmSpec>(e.value["spec"].clone()) else {
            continue;
        };
        if spec.disks.iter().any(|d| d.pool.as_deref() == Some(name))
            || spec
                .cdrom
                .as_ref()
                .is_some_and(|c| c.pool.as_deref() == Some(name))
            || spec.kernel.as_ref().is_some_and(|k| k.pool == name)
        {
            users.push(spec.vmid.to_string());
        }
    }
    for rec in records(&st)? {
        if rec.xml.contains(&format!("pool='{name}'"))
            || rec.xml.contains(&format!("pool=\"{name}\""))
        {
            users.push(rec.vmid.to_string());
        }
    }
    users.sort();
    users.dedup();
    if !users.is_empty() {
        return Err(Error::Conflict(format!(
            "shared pool {name:?} holds disks of VM(s) {}: move or delete them first",
            users.join(", ")
        )));
    }
    st.delete(&shared_key(name))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn facts(networks: &[&str], shared: &[(&str, &str)]) -> NodeFacts {
        NodeFacts {
            mem_total_mib: 8192,
            networks: networks.iter().map(|s| s.to_string()).collect(),
            bridges: vec![],
            shared: shared
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ha_xml: BTreeMap::new(),
        }
    }

    #[test]
    fn placement_names_every_gap() {
        let needs = Needs {
            pools: vec!["local".into(), "san".into()],
            networks: vec!["lan".into()],
            bridges: vec![],
        };
        let members = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
        let mut f = BTreeMap::new();
        f.insert("n1".to_string(), facts(&["lan"], &[("san", "ok")]));
        f.insert("n2".to_string(), facts(&[], &[("san", "marker missing")]));
        let e = check_placement(&needs, &["san".into()], &members, &f).unwrap_err();
        assert!(e.contains("pool \"local\" is node-local"), "{e}");
        assert!(
            e.contains("n2 cannot use shared pool \"san\": marker missing"),
            "{e}"
        );
        assert!(
            e.contains("network \"lan\" is missing or stopped on n2"),
            "{e}"
        );
        assert!(e.contains("n3 has not reported"), "{e}");
        assert!(!e.contains("on n1"), "{e}");
        let ok = Needs {
            pools: vec!["san".into()],
            networks: vec!["lan".into()],
            bridges: vec![],
        };
        f.insert("n2".to_string(), facts(&["lan"], &[("san", "ok")]));
        check_placement(&ok, &["san".into()], &members[..2], &f).unwrap();
    }

    #[test]
    fn n_plus_one_survives_the_largest_loss() {
        let m = |v: &[u64]| -> Vec<(String, u64)> {
            v.iter()
                .enumerate()
                .map(|(i, x)| (format!("n{}", i + 1), *x))
                .collect()
        };
        // 3 × (4096 − 1024) usable; losing one leaves 6144
        n_plus_one(&m(&[4096, 4096, 4096]), 1024, 6144).unwrap();
        let e = n_plus_one(&m(&[4096, 4096, 4096]), 1024, 6145).unwrap_err();
        assert!(
            e.contains("after losing n") && e.contains("6144 MiB"),
            "{e}"
        );
        // the largest node is the one whose loss counts
        let e = n_plus_one(&m(&[2048, 8192]), 1024, 2000).unwrap_err();
        assert!(e.contains("after losing n2"), "{e}");
        assert!(n_plus_one(&m(&[8192]), 0, 1).is_err());
    }

    #[test]
    fn what_if_outcomes() {
        assert_eq!(outcome("n1", Some("n1"), Some("n2")).0, "restarts");
        assert_eq!(outcome("n1", Some("n2"), Some("n2")).0, "unaffected");
        assert_eq!(outcome("n1", Some("n1"), None).0, "stays-down");
        assert_eq!(outcome("n1", Some("n2"), Some("n3")).0, "moves");
        assert_eq!(outcome("n1", None, None).0, "stopped");
    }

    #[test]
    fn a_failed_check_is_tried_again_until_the_limit() {
        // one slow crm_mon (an error) between two answers: the wait goes on and succeeds
        let mut answers = vec![
            Ok(true),
            Err(Error::Internal("crm_mon did not finish within 10s".into())),
            Ok(false),
        ];
        let r = wait_with_pause("x", Duration::from_secs(5), Duration::ZERO, || {
            answers.pop().unwrap_or(Ok(false))
        });
        assert!(r.is_ok(), "{r:?}");
        // a check that keeps failing: the timeout names the last failure
        let e = wait_with_pause("the VM", Duration::from_millis(20), Duration::ZERO, || {
            Err(Error::Internal("crm_mon did not finish".into()))
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("waiting for the VM")
                && e.contains("the last check failed: ")
                && e.contains("crm_mon did not finish"),
            "{e}"
        );
        let e = wait_with_pause("the VM", Duration::from_millis(20), Duration::ZERO, || {
            Ok(false)
        })
        .unwrap_err()
        .to_string();
        assert!(!e.contains("last check"), "{e}");
    }

    #[test]
    fn missing_storage_constraints_are_named() {
        let clones = vec!["fs-a-clone".to_string(), "fs-b-clone".to_string()];
        let all = cha::storage_constraints(100, &clones);
        assert!(missing_storage(100, &clones, &all).is_empty());
        // only the order for pool b left: b is missing (its colocation is gone), a too
        let some: Vec<_> = all
            .iter()
            .filter(|e| e.get_attr("id") == Some("keel-vm-100-storage-after-fs-b-clone"))
            .cloned()
            .collect();
        assert_eq!(missing_storage(100, &clones, &some), clones);
        // another VM's constraints do not count
        assert_eq!(
            missing_storage(100, &clones, &cha::storage_constraints(101, &clones)),
            clones
        );
        assert!(missing_storage(100, &[], &[]).is_empty());
    }

    #[test]
    fn needs_refuse_paths() {
        let mut spec: VmSpec = serde_json::from_value(serde_json::json!({
            "vmid": 100, "name": "a", "vcpus": 1, "memory_mib": 256,
            "disks": [{"pool": "san", "volume": "a.qcow2"}],
            "nics": [{"network": "lan"}]
        }))
        .unwrap();
        let n = needs_of(&spec).unwrap();
        assert_eq!(n.pools, vec!["san".to_string()]);
        assert_eq!(n.networks, vec!["lan".to_string()]);
        // a directly booted kernel must be where the VM restarts too
        spec.kernel = Some(keel_api::vm::KernelBoot {
            pool: "boot".into(),
            kernel: "vmlinuz".into(),
            ..Default::default()
        });
        assert_eq!(needs_of(&spec).unwrap().pools, vec!["boot", "san"]);
        spec.disks[0].pool = None;
        spec.disks[0].path = Some("/x.img".into());
        assert!(needs_of(&spec).unwrap_err().contains("disk 0 is a path"));
    }
}
