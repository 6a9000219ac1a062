//! Migration of a VM to another cluster member through libvirt, peer-to-peer: this node's
//! libvirtd connects to the target's over TLS with the cluster CA (`qemu+tls://`, see
//! [`pki`]), QEMU's migration stream and the NBD copy of node-local disks are TLS too
//! (`VIR_MIGRATE_TLS`): nothing travels unauthenticated. A running VM moves live with its
//! disks copied while it runs (`VIR_MIGRATE_NON_SHARED_DISK`), defined on the target
//! (`PERSIST_DEST`) and undefined here (`UNDEFINE_SOURCE`); its volumes here are deleted only
//! after libvirt reported success, and the cluster-wide record `/vms/<vmid>` names the target.
//!
//! Everything that can refuse is decided by [`plan`] (pure) from facts about this VM and the
//! target's own API answers, before any task exists: the target must be another member that
//! answers, have the VM's libvirt networks, the pools of its disks (same names, with a path)
//! and no volume of the same name, the CPU model, and the memory; a VM with snapshots is
//! refused (libvirt copies only the disks' current state: internal snapshots would be lost).
//! Docs: docs/migration.md.

pub mod pki;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Json, Router};
use keel_api::migration::MigrateRequest;
use keel_api::network::NetworkInfo;
use keel_api::node::NodeInfo;
use keel_api::storage::{PoolInfo, VolumeInfo};
use keel_api::task::TaskRef;
use keel_api::vm::{CpuModel, VmState};
use keel_api::ErrorBody;
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::domain::ParsedDomain;
use crate::error::{Error, Result};
use crate::http::{accepted, blocking, check_node, ApiResult, JsonBody, Path};
use crate::hv::{JobProgress, MigrateCall};
use crate::tasks::{self, TaskHandle};
use crate::xml::Element;
use crate::{vms, Node};

const MIB: u64 = 1024 * 1024;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/nodes/{node}/vms/{vmid}/migrate", post(migrate_vm))
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/migrate/cancel",
            post(cancel_migration),
        )
}

// ------------------------------------------------------------------ facts and the plan

/// The VM as this node sees it.
#[derive(Debug, Clone)]
pub struct SourceVm {
    /// libvirt domain name.
    pub name: String,
    pub vmid: u32,
    pub state: VmState,
    pub parsed: ParsedDomain,
    pub snapshots: usize,
    /// The pools of its disks that are node-local `lvm-thin` pools here.
    pub thin_pools: Vec<String>,
    /// The pools of its disks that are `iscsi-lvm` cluster pools (one LV per disk, active on
    /// one node at a time).
    pub san_pools: Vec<String>,
}

/// The target as its API describes it.
#[derive(Debug, Clone, Default)]
pub struct TargetFacts {
    pub name: String,
    /// Host part of its API address: where its libvirtd and QEMU are reached.
    pub host: String,
    pub memory_free: u64,
    pub networks: Vec<NetworkInfo>,
    pub pools: Vec<PoolInfo>,
    /// Volumes of the pools the VM's disks need: (pool, volumes).
    pub volumes: Vec<(String, Vec<VolumeInfo>)>,
    /// CPU models the target's QEMU offers (empty: not known, not checked).
    pub cpu_models: Vec<String>,
    /// Cluster shared pools (docs/ha.md) that this node and the target both see, proven by
    /// their marker: a disk there is the same file on both, so it is not copied.
    pub shared_pools: Vec<String>,
}

/// One disk copied to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskMove {
    /// Target device (`vda`).
    pub dev: String,
    pub pool: String,
    pub volume: String,
    pub src_path: String,
    pub dst_path: String,
}

/// What moves where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub live: bool,
    pub disks: Vec<DiskMove>,
    /// Read-only media (the CD-ROM): (path here, path of the same volume there).
    pub media: Vec<(String, String)>,
    /// Disks (targets) left where they are: on a shared pool both nodes see.
    pub shared: Vec<String>,
    /// The cloud-init seed (pool, volume) when it is on a pool the target does not share: copied
    /// there before the move (its path is in `media`), released here after it.
    pub seed: Option<(String, String)>,
}

fn conflict(m: String) -> Error {
    Error::Conflict(m)
}

/// Decide the migration of `src` to `t`, or refuse with the reason (409; 400 for a bad
/// target name). Nothing is changed.
pub fn plan(me: &str, src: &SourceVm, t: &TargetFacts, memory_mib: u64) -> Result<Plan> {
    let vm = format!("VM {} ({})", src.vmid, src.name);
    if t.name == me {
        return Err(Error::validation(
            "target",
            format!("{vm} already runs on {me}: choose another node"),
        ));
    }
    let live = match src.state {
        // a paused VM migrates live too and stays paused on the target
        VmState::Running | VmState::Paused => true,
        VmState::Stopped => false,
        s => {
            return Err(conflict(format!(
                "{vm} is {s:?}: only a running or paused VM (live) or a stopped one (offline) can be migrated"
            )))
        }
    };
    if src.snapshots > 0 {
        return Err(conflict(format!(
            "{vm} has {} snapshot(s): libvirt copies only the current state of the disks to the target, so internal snapshots would be lost; delete them first",
            src.snapshots
        )));
    }
    let spec = &src.parsed.spec;
    for nic in &spec.nics {
        if let Some(n) = &nic.network {
            match t.networks.iter().find(|x| &x.name == n) {
                None => {
                    return Err(conflict(format!(
                        "{} has no libvirt network {n:?}, which {vm} uses: create it there first",
                        t.name
                    )))
                }
                Some(x) if !x.active && live => {
                    return Err(conflict(format!(
                        "network {n:?} is not started on {}: start it there first",
                        t.name
                    )))
                }
                Some(_) => {}
            }
        }
    }
    if let CpuModel::Named(m) = &spec.cpu_model {
        if !t.cpu_models.is_empty() && !t.cpu_models.iter().any(|x| x == m) {
            return Err(conflict(format!(
                "{}'s QEMU does not offer CPU model {m:?}, which {vm} uses",
                t.name
            )));
        }
    }
    if live && t.memory_free < memory_mib * MIB {
        return Err(conflict(format!(
            "{} has {} MiB of free memory, {vm} needs {memory_mib} MiB",
            t.name,
            t.memory_free / MIB
        )));
    }
    let pool_path = |pool: &str, what: &str| -> Result<String> {
        let p = t.pools.iter().find(|p| p.name == pool).ok_or_else(|| {
            conflict(format!(
                "{} has no storage pool {pool:?}, which {what} of {vm} is on: Keel copies a volume into the pool of the same name",
                t.name
            ))
        })?;
        if p.kind == crate::hv::thin::KIND {
            return Err(conflict(format!(
                "{what} of {vm} is on lvm-thin pool {pool:?}: Keel does not move disks of node-local thin pools between nodes yet; back the VM up and restore it on {}, or keep its disks on a dir or shared pool",
                t.name
            )));
        }
        if !p.active {
            return Err(conflict(format!(
                "storage pool {pool:?} is not active on {}",
                t.name
            )));
        }
        p.path.clone().ok_or_else(|| {
            conflict(format!(
                "storage pool {pool:?} on {} has no directory to copy {what} into",
                t.name
            ))
        })
    };
    let vols = |pool: &str| {
        t.volumes
            .iter()
            .find(|(p, _)| p == pool)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    };
    let mut disks = vec![];
    let mut shared = vec![];
    for (i, d) in spec.disks.iter().enumerate() {
        let dev = src
            .parsed
            .disk_targets
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("disk {i}"));
        let (Some(pool), Some(volume)) = (&d.pool, &d.volume) else {
            return Err(conflict(format!(
                "disk {dev} of {vm} is not a volume of a storage pool: Keel cannot copy it"
            )));
        };
        if src.thin_pools.contains(pool) {
            return Err(conflict(format!(
                "disk {dev} of {vm} is on lvm-thin pool {pool:?}: Keel does not move disks of node-local thin pools between nodes yet; back the VM up and restore it on {}, or keep its disks on a dir or shared pool",
                t.name
            )));
        }
        if src.san_pools.contains(pool) {
            if live {
                return Err(conflict(format!(
                    "disk {dev} of {vm} is on iscsi-lvm pool {pool:?}: its LV is active on one node at a time (lvmlockd), and a live migration needs it open on both nodes at once; shut {vm} down and migrate it offline (the disk stays where it is), or keep disks that must move live on an iscsi-gfs2 or drbd-gfs2 pool"
                )));
            }
            // offline: the target sees the same VG on the same LUN; nothing is copied
            if !vols(pool).iter().any(|v| &v.name == volume) {
                return Err(conflict(format!(
                    "{} does not see volume {volume:?} of iscsi-lvm pool {pool:?} (disk {dev} of {vm}): check its iSCSI session there (keel storage status)",
                    t.name
                )));
            }
            shared.push(dev);
            continue;
        }
        let dir = pool_path(pool, &format!("disk {dev}"))?;
        if t.shared_pools.iter().any(|p| p == pool) {
            // the same storage on both nodes: the target must see the very volume
            if !vols(pool).iter().any(|v| &v.name == volume) {
                return Err(conflict(format!(
                    "{} does not see volume {volume:?} of shared pool {pool:?} (disk {dev} of {vm}): check the pool's mount there",
                    t.name
                )));
            }
            shared.push(dev);
            continue;
        }
        if vols(pool).iter().any(|v| &v.name == volume) {
            return Err(conflict(format!(
                "{} already has a volume {volume:?} in pool {pool:?}: remove or rename it before migrating {vm}",
                t.name
            )));
        }
        disks.push(DiskMove {
            dev,
            pool: pool.clone(),
            volume: volume.clone(),
            src_path: src.parsed.disk_paths.get(i).cloned().unwrap_or_default(),
            dst_path: format!("{}/{volume}", dir.trim_end_matches('/')),
        });
    }
    let mut media = vec![];
    if let (Some(c), Some(path)) = (&spec.cdrom, &src.parsed.cdrom_path) {
        match (&c.pool, &c.volume) {
            (Some(pool), Some(volume)) => {
                pool_path(pool, "the CD-ROM")?;
                let v = vols(pool).iter().find(|v| &v.name == volume).ok_or_else(|| {
                    conflict(format!(
                        "{} has no volume {volume:?} in pool {pool:?} for the CD-ROM of {vm}: upload it there or eject it",
                        t.name
                    ))
                })?;
                media.push((path.clone(), v.path.clone()));
            }
            _ => media.push((path.clone(), path.clone())),
        }
    }
    if let Some(k) = &spec.kernel {
        // like the CD-ROM: read-only, found (not copied) in the pool of the same name there
        pool_path(&k.pool, "the kernel")?;
        for (vol, path) in [
            (Some(&k.kernel), &src.parsed.kernel_path),
            (k.initrd.as_ref(), &src.parsed.initrd_path),
        ] {
            let (Some(vol), Some(path)) = (vol, path) else {
                continue;
            };
            let v = vols(&k.pool).iter().find(|v| &v.name == vol).ok_or_else(|| {
                conflict(format!(
                    "{} has no volume {vol:?} in pool {:?}, which {vm} boots directly: upload it there first",
                    t.name, k.pool
                ))
            })?;
            media.push((path.clone(), v.path.clone()));
        }
    }
    let mut seed_move = None;
    if let (Some(pool), Some(path)) = (
        crate::cloudinit::seed_pool(spec),
        &src.parsed.cloudinit_path,
    ) {
        let seed = crate::cloudinit::volume_name(spec.vmid);
        if t.shared_pools.iter().any(|p| p == &pool) {
            let v = vols(&pool).iter().find(|v| v.name == seed).ok_or_else(|| {
                conflict(format!(
                    "{} does not see the cloud-init seed {seed:?} of shared pool {pool:?}: check the pool's mount there",
                    t.name
                ))
            })?;
            media.push((path.clone(), v.path.clone()));
        } else {
            // a node-local pool: the seed (a small ISO) is copied like a disk
            let dir = pool_path(&pool, "the cloud-init seed")?;
            if vols(&pool).iter().any(|v| v.name == seed) {
                return Err(conflict(format!(
                    "{} already has a volume {seed:?} in pool {pool:?}: remove it before migrating {vm} (it would be the cloud-init seed's copy)",
                    t.name
                )));
            }
            media.push((
                path.clone(),
                format!("{}/{seed}", dir.trim_end_matches('/')),
            ));
            seed_move = Some((pool, seed));
        }
    }
    Ok(Plan {
        live,
        disks,
        media,
        shared,
        seed: seed_move,
    })
}

/// `xml` with every disk source path of the plan (and the paths of a direct kernel boot)
/// replaced by its path on the target.
pub fn retarget_xml(xml: &str, plan: &Plan) -> Result<String> {
    let mut root = Element::parse(xml).map_err(|e| Error::Internal(format!("domain XML: {e}")))?;
    let map: Vec<(&str, &str)> = plan
        .disks
        .iter()
        .map(|d| (d.src_path.as_str(), d.dst_path.as_str()))
        .chain(plan.media.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .collect();
    for os in root.children.iter_mut().filter(|c| c.name == "os") {
        for f in os
            .children
            .iter_mut()
            .filter(|c| c.name == "kernel" || c.name == "initrd")
        {
            if let Some(t) = f.text.as_mut() {
                if let Some((_, to)) = map.iter().find(|(from, _)| from == &t.trim()) {
                    *t = to.to_string();
                }
            }
        }
    }
    for dev in root.children.iter_mut().filter(|c| c.name == "devices") {
        for disk in dev.children.iter_mut().filter(|c| c.name == "disk") {
            for s in disk.children.iter_mut().filter(|c| c.name == "source") {
                for (k, v) in s.attrs.iter_mut() {
                    if k == "file" {
                        if let Some((_, to)) = map.iter().find(|(from, _)| from == v) {
                            *v = to.to_string();
                        }
                    }
                }
            }
        }
    }
    Ok(root.render())
}

// ------------------------------------------------------------------ gathering the facts

pub(crate) fn source_vm(node: &Node, vmid: u32) -> Result<SourceVm> {
    let row = vms::find(node, vmid)?;
    let xml = node.hv.domain_xml(&row.name, true)?;
    let parsed = crate::domain::parse(&xml)?;
    let snapshots = node
        .hv
        .list_snapshots(&row.name)
        .map(|v| v.len())
        .unwrap_or(0);
    let pools = node.hv.list_pools()?;
    let of_kind = |kind: &str| -> Vec<String> {
        pools
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.name.clone())
            .filter(|p| parsed.spec.disks.iter().any(|d| d.pool.as_ref() == Some(p)))
            .collect()
    };
    let thin_pools = of_kind(crate::hv::thin::KIND);
    let san_pools = of_kind(crate::hv::shared_lvm::KIND);
    Ok(SourceVm {
        name: row.name,
        vmid,
        state: row.state,
        parsed,
        snapshots,
        thin_pools,
        san_pools,
    })
}

async fn member_json<T: DeserializeOwned>(
    node: &Node,
    target: &str,
    pq: &str,
    user: &str,
) -> Result<T> {
    let (status, body) = crate::cluster::member_request(node, target, "GET", pq, user).await?;
    if status != 200 {
        let msg = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        return Err(conflict(format!(
            "member {target} answered {status} to {pq}: {msg}"
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Error::Internal(format!("member {target}: unexpected answer to {pq}: {e}")))
}

/// The target's facts from its API (a member that does not answer is refused as offline).
pub(crate) async fn target_facts(
    node: &Node,
    target: &str,
    src: &SourceVm,
    user: &str,
) -> Result<TargetFacts> {
    let rec = node.cluster.record()?.ok_or_else(|| {
        conflict(format!(
            "{} is not in a cluster: there is no other node to migrate to",
            node.cfg.node
        ))
    })?;
    let m = rec
        .members
        .iter()
        .find(|m| m.name == target)
        .ok_or_else(|| {
            let names: Vec<&str> = rec.members.iter().map(|m| m.name.as_str()).collect();
            conflict(format!(
                "{target:?} is not a member of cluster {} (members: {})",
                rec.name,
                names.join(", ")
            ))
        })?;
    let host = api_host(&m.api);
    let base = format!("/api/v1/nodes/{target}");
    let info: NodeInfo = member_json(node, target, &base, user)
        .await
        .map_err(|e| conflict(format!("target {target} is offline or unreachable: {e}")))?;
    let networks: Vec<NetworkInfo> =
        member_json(node, target, &format!("{base}/networks"), user).await?;
    let pools: Vec<PoolInfo> = member_json(node, target, &format!("{base}/storage"), user).await?;
    let spec = &src.parsed.spec;
    let mut wanted: Vec<String> = spec.disks.iter().filter_map(|d| d.pool.clone()).collect();
    if let Some(p) = spec.cdrom.as_ref().and_then(|c| c.pool.clone()) {
        wanted.push(p);
    }
    if let Some(k) = &spec.kernel {
        wanted.push(k.pool.clone());
    }
    wanted.sort();
    wanted.dedup();
    let mut volumes = vec![];
    for p in wanted
        .into_iter()
        .filter(|p| pools.iter().any(|x| &x.name == p))
    {
        let v: Vec<VolumeInfo> =
            member_json(node, target, &format!("{base}/storage/{p}/content"), user).await?;
        volumes.push((p, v));
    }
    // a named CPU model must be one the target's QEMU can give this kind of guest (libvirt's
    // domain capabilities, read over the same TLS connection the migration uses)
    let cpu_models = match &spec.cpu_model {
        CpuModel::Named(_) => {
            let uri = node.cluster.migration_tls.peer_uri(&host);
            let virttype = src.parsed.domain_type.clone();
            let hv = node.hv.clone();
            let r = tokio::task::spawn_blocking(move || hv.cpu_models_at(&uri, &virttype))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
            r.map_err(|e| {
                conflict(format!(
                    "cannot read {target}'s CPU models over libvirt TLS (is its libvirtd listening on TLS with the cluster certificate?): {e}"
                ))
            })?
        }
        _ => vec![],
    };
    // shared pools both nodes see (their marker proven by each node's reconciler)
    let me = node.cfg.node.clone();
    let shared_pools = crate::ha::list_shared(node)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            [me.as_str(), target]
                .iter()
                .all(|n| p.nodes.get(*n).map(String::as_str) == Some("ok"))
        })
        .map(|p| p.name)
        .collect();
    Ok(TargetFacts {
        shared_pools,
        name: target.to_string(),
        host,
        memory_free: info.memory_free,
        networks,
        pools,
        volumes,
        cpu_models,
    })
}

/// `HOST` of `HOST:PORT` / `[V6]:PORT`, without brackets.
fn api_host(api: &str) -> String {
    if let Some(r) = api.strip_prefix('[') {
        return r.split(']').next().unwrap_or(r).to_string();
    }
    api.rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(api)
        .to_string()
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

// ------------------------------------------------------------------ the task

fn describe(p: &JobProgress) -> String {
    if p.data_total == 0 && p.disk_total == 0 {
        return "setting up (libvirt reports no figures yet)".into();
    }
    let mut s = format!(
        "{} of {} MiB remaining, {} MiB sent",
        p.data_remaining / MIB,
        p.data_total / MIB,
        p.data_processed / MIB
    );
    if p.mem_iteration > 0 {
        s.push_str(&format!(
            ", memory pass {} (dirty rate {} pages/s)",
            p.mem_iteration, p.mem_dirty_rate
        ));
    }
    if p.disk_total > 0 {
        s.push_str(&format!(
            ", disks {} of {} MiB",
            p.disk_processed / MIB,
            p.disk_total / MIB
        ));
    }
    s
}

/// Delete volumes of the plan that exist on the target (after a failed or cancelled live
/// migration nothing of the VM stays there).
fn clean_target(node: &Node, t: &TargetFacts, plan: &Plan, user: &str, task: &TaskHandle) {
    let h = tokio::runtime::Handle::current();
    for d in &plan.disks {
        let pq = format!(
            "/api/v1/nodes/{}/storage/{}/content/{}",
            t.name, d.pool, d.volume
        );
        let have = h
            .block_on(member_json::<Vec<VolumeInfo>>(
                node,
                &t.name,
                &format!("/api/v1/nodes/{}/storage/{}/content", t.name, d.pool),
                user,
            ))
            .map(|v| v.iter().any(|x| x.name == d.volume));
        match have {
            Ok(false) => task.log(format!("{}: nothing left of {} there", t.name, d.volume)),
            Ok(true) => {
                match h.block_on(crate::cluster::member_request(
                    node, &t.name, "DELETE", &pq, user,
                )) {
                    Ok((s, _)) if s < 300 => task.log(format!(
                        "{}: removed the partial copy {}/{}",
                        t.name, d.pool, d.volume
                    )),
                    Ok((s, b)) => task.log(format!(
                        "warning: {}: removing {}/{} answered {s}: {}",
                        t.name,
                        d.pool,
                        d.volume,
                        String::from_utf8_lossy(&b)
                    )),
                    Err(e) => task.log(format!("warning: {}: {e}", t.name)),
                }
            }
            Err(e) => task.log(format!(
                "warning: cannot check {} on {}: {e}",
                d.volume, t.name
            )),
        }
    }
}

pub(crate) fn run_live(
    node: &Node,
    src: &SourceVm,
    t: &TargetFacts,
    plan: &Plan,
    req: &MigrateRequest,
    user: &str,
    task: &TaskHandle,
) -> Result<()> {
    let files = &node.cluster.migration_tls;
    let dest_uri = files.peer_uri(&t.host);
    let live_xml = node.hv.migratable_xml(&src.name)?;
    let persist = node.hv.domain_xml(&src.name, true)?;
    let call = MigrateCall {
        dest_uri: dest_uri.clone(),
        migrate_uri: format!("tcp://{}", bracketed(&t.host)),
        tls_destination: t.name.clone(),
        dest_xml: retarget_xml(&live_xml, plan)?,
        persist_xml: retarget_xml(&persist, plan)?,
        copy_disks: plan.disks.iter().map(|d| d.dev.clone()).collect(),
        bandwidth_mib_s: req.bandwidth_mib_s,
        max_downtime_ms: req.max_downtime_ms,
        auto_converge: req.auto_converge,
        // libvirt recognizes NFS, GFS2, OCFS2, CephFS… as shared; a shared pool on another
        // file system (proven by Keel's marker) needs the operator's ha_migrate_unsafe
        unsafe_shared: !plan.shared.is_empty() && node.cfg.cluster.ha_migrate_unsafe,
    };
    task.log(format!(
        "live migration of VM {} to {} over TLS ({dest_uri}, stream {}, certificate name {}); disks copied: {}{}; bandwidth {}, max downtime {}, auto-converge {}",
        src.vmid,
        t.name,
        call.migrate_uri,
        call.tls_destination,
        if plan.disks.is_empty() {
            "none".to_string()
        } else {
            plan.disks
                .iter()
                .map(|d| format!("{} ({}/{} → {})", d.dev, d.pool, d.volume, d.dst_path))
                .collect::<Vec<_>>()
                .join(", ")
        },
        if plan.shared.is_empty() {
            String::new()
        } else {
            format!(
                "; on shared storage, not copied: {}",
                plan.shared.join(", ")
            )
        },
        req.bandwidth_mib_s
            .map(|b| format!("{b} MiB/s"))
            .unwrap_or_else(|| "unlimited".into()),
        req.max_downtime_ms
            .map(|b| format!("{b} ms"))
            .unwrap_or_else(|| "QEMU's default".into()),
        if req.auto_converge { "on" } else { "off" },
    ));
    copy_seed(node, &dest_uri, plan, &t.name, task)?;
    let t0 = Instant::now();
    let hv = node.hv.clone();
    let name = src.name.clone();
    // disk bytes as the source last reported them (the target's statistics have none)
    let mut disk_seen = 0u64;
    let r = std::thread::scope(|s| {
        let h = s.spawn(|| hv.migrate(&name, &call));
        let mut best = 0.0f64;
        let mut had_figures = false;
        let mut last_log = Instant::now() - Duration::from_secs(10);
        while !h.is_finished() {
            std::thread::sleep(Duration::from_millis(250));
            if let Ok(Some(p)) = node.hv.job_progress(&src.name) {
                disk_seen = disk_seen.max(p.disk_processed);
                if p.data_total > 0 {
                    let f = 1.0 - p.data_remaining as f64 / p.data_total as f64;
                    best = best.max(f.clamp(0.0, 0.99));
                    task.progress(best);
                }
                // every 2 s, and at once when libvirt's first figures arrive
                let has_figures = p.data_total > 0 || p.disk_total > 0;
                if last_log.elapsed() >= Duration::from_secs(2) || (has_figures && !had_figures) {
                    task.log(describe(&p));
                    last_log = Instant::now();
                }
                had_figures |= has_figures;
            }
        }
        h.join().unwrap_or_else(|_| {
            Err(crate::hv::HvError::Engine {
                op: "migrate",
                msg: "the migration thread panicked".into(),
            })
        })
    });
    let wall = t0.elapsed();
    if let Err(e) = r {
        task.log(format!(
            "migration failed after {:.1} s: {e}; VM {} stays on {}",
            wall.as_secs_f64(),
            src.vmid,
            node.cfg.node
        ));
        clean_target(node, t, plan, user, task);
        drop_seed_copy(node, &dest_uri, plan, &t.name, task);
        return Err(e.into());
    }
    task.progress(1.0);
    match node.hv.completed_job_at(&dest_uri, &src.name) {
        Ok(Some(p)) => task.log(format!(
            "migrated to {} in {:.2} s (libvirt: {} ms), downtime {} ms, {} MiB of memory transferred{}",
            t.name,
            wall.as_secs_f64(),
            p.time_elapsed_ms,
            p.downtime_ms.map(|d| d.to_string()).unwrap_or_else(|| "?".into()),
            p.data_processed / MIB,
            match disk_seen.max(p.disk_processed) / MIB {
                0 => String::new(),
                d => format!(", {d} MiB of disk seen copied"),
            }
        )),
        Ok(None) | Err(_) => task.log(format!(
            "migrated to {} in {:.2} s (the target kept no job statistics)",
            t.name,
            wall.as_secs_f64()
        )),
    }
    finish_move(node, src, t, plan, task)
}

/// Copy the cloud-init seed to the target when the plan says so (before libvirt moves anything).
fn copy_seed(
    node: &Node,
    dest_uri: &str,
    plan: &Plan,
    target: &str,
    task: &TaskHandle,
) -> Result<()> {
    let Some((pool, volume)) = &plan.seed else {
        return Ok(());
    };
    match node
        .hv
        .copy_volume_to(dest_uri, pool, volume, &mut |_, _| {})
    {
        Ok(_) => {
            task.log(format!(
                "copied the cloud-init seed {pool}/{volume} to {target}"
            ));
            Ok(())
        }
        Err(e) => {
            let _ = node.hv.delete_volume_at(dest_uri, pool, volume);
            task.log(format!(
                "copy of the cloud-init seed {pool}/{volume} to {target} failed: {e}; nothing moved"
            ));
            Err(e.into())
        }
    }
}

/// Remove the seed's copy on the target after a failed move.
fn drop_seed_copy(node: &Node, dest_uri: &str, plan: &Plan, target: &str, task: &TaskHandle) {
    if let Some((pool, volume)) = &plan.seed {
        match node.hv.delete_volume_at(dest_uri, pool, volume) {
            Ok(()) => task.log(format!(
                "{target}: removed the cloud-init seed's copy {pool}/{volume}"
            )),
            Err(e) => task.log(format!(
                "warning: {target}: the cloud-init seed's copy {pool}/{volume} stays ({e})"
            )),
        }
    }
}

/// After libvirt's success: the source's copies of the disks are released and the
/// cluster-wide record names the target.
fn finish_move(
    node: &Node,
    src: &SourceVm,
    t: &TargetFacts,
    plan: &Plan,
    task: &TaskHandle,
) -> Result<()> {
    if let Some((pool, volume)) = &plan.seed {
        match node.hv.delete_volume(pool, volume) {
            Ok(()) => task.log(format!(
                "released the cloud-init seed {pool}/{volume} here (it is on {} now)",
                t.name
            )),
            Err(e) => task.log(format!(
                "warning: the cloud-init seed {pool}/{volume} could not be deleted here: {e}"
            )),
        }
    }
    for d in &plan.disks {
        match node.hv.delete_volume(&d.pool, &d.volume) {
            Ok(()) => task.log(format!(
                "released {}/{} on {} (the VM's disk is now {} on {})",
                d.pool, d.volume, node.cfg.node, d.dst_path, t.name
            )),
            Err(e) => task.log(format!(
                "warning: {}/{} could not be deleted here: {e}",
                d.pool, d.volume
            )),
        }
    }
    vms::record_vm_moved(node, &src.parsed.spec, &t.name, task);
    Ok(())
}

pub(crate) fn run_offline(
    node: &Node,
    src: &SourceVm,
    t: &TargetFacts,
    plan: &Plan,
    task: &TaskHandle,
) -> Result<()> {
    let files = &node.cluster.migration_tls;
    let dest_uri = files.peer_uri(&t.host);
    task.log(format!(
        "offline migration of VM {} to {} over TLS ({dest_uri})",
        src.vmid, t.name
    ));
    let t0 = Instant::now();
    copy_seed(node, &dest_uri, plan, &t.name, task)?;
    let mut copied: Vec<&DiskMove> = vec![];
    let total = plan.disks.len().max(1) as f64;
    for (i, d) in plan.disks.iter().enumerate() {
        let r = node
            .hv
            .copy_volume_to(&dest_uri, &d.pool, &d.volume, &mut |done, of| {
                if of > 0 {
                    task.progress((i as f64 + done as f64 / of as f64) / total * 0.95);
                }
            });
        match r {
            Ok(bytes) => {
                task.log(format!(
                    "copied {}/{} ({} MiB) to {}",
                    d.pool,
                    d.volume,
                    bytes / MIB,
                    t.name
                ));
                copied.push(d);
            }
            Err(e) => {
                for c in copied.iter().chain(std::iter::once(&d)) {
                    let _ = node.hv.delete_volume_at(&dest_uri, &c.pool, &c.volume);
                }
                drop_seed_copy(node, &dest_uri, plan, &t.name, task);
                task.log(format!(
                    "copy of {}/{} failed: {e}; the copies on {} were removed, VM {} stays here",
                    d.pool, d.volume, t.name, src.vmid
                ));
                return Err(e.into());
            }
        }
    }
    let xml = retarget_xml(&node.hv.domain_xml(&src.name, true)?, plan)?;
    if let Err(e) = node.hv.define_at(&dest_uri, &xml) {
        for c in &copied {
            let _ = node.hv.delete_volume_at(&dest_uri, &c.pool, &c.volume);
        }
        drop_seed_copy(node, &dest_uri, plan, &t.name, task);
        return Err(e.into());
    }
    task.log(format!("defined on {}", t.name));
    node.hv.undefine(&src.name)?;
    task.log(format!(
        "undefined here; moved in {:.2} s",
        t0.elapsed().as_secs_f64()
    ));
    finish_move(node, src, t, plan, task)
}

// ------------------------------------------------------------------ handlers

/// Migrate the VM to another member: live when running (memory and node-local disks copied
/// while it runs), offline when stopped. Refused before anything moves when the target cannot
/// take it (409, the reason named).
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/migrate", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path)), request_body = MigrateRequest,
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn migrate_vm(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<MigrateRequest>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    req.validate().map_err(Error::Validation)?;
    // an HA VM moves through Pacemaker (its live migration, then the move cleared)
    let n = node.clone();
    if blocking(move || crate::ha::record(&n, vmid))
        .await?
        .is_some()
    {
        let target = req.target.clone();
        let user = p.user.clone();
        let node = node.clone();
        let upid = blocking(move || {
            crate::ha::check_move(&node, vmid, &target)?;
            let n = node.clone();
            tasks::spawn(
                &node.tasks,
                "vmmigrate",
                &vmid.to_string(),
                &user,
                true,
                move |task| crate::ha::move_to(&n, vmid, &target, task),
            )
        })
        .await?;
        return Ok(accepted(upid));
    }
    if req.target == node.cfg.node {
        return Err(Error::validation(
            "target",
            format!(
                "VM {vmid} already runs on {}: choose another node",
                req.target
            ),
        )
        .into());
    }
    let n = node.clone();
    let src = blocking(move || source_vm(&n, vmid)).await?;
    let t = target_facts(&node, &req.target, &src, &p.user).await?;
    let memory_mib = src.parsed.spec.memory_mib;
    let plan = plan(&node.cfg.node, &src, &t, memory_mib)?;
    let upid = blocking(move || {
        let n = node.clone();
        let user = p.user.clone();
        tasks::spawn(
            &node.tasks,
            "vmmigrate",
            &vmid.to_string(),
            &p.user,
            true,
            move |task| {
                if plan.live {
                    run_live(&n, &src, &t, &plan, &req, &user, task)
                } else {
                    run_offline(&n, &src, &t, &plan, task)
                }
            },
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// Cancel the VM's running live migration: libvirt aborts the job, the VM keeps running
/// here, and the migration task removes what it had copied to the target.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/migrate/cancel", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path)),
    responses((status = 200, body = MigrateCancelled), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_migration(
    State(node): State<Arc<Node>>,
    Path((name, vmid)): Path<(String, u32)>,
) -> ApiResult<Json<MigrateCancelled>> {
    check_node(&node, &name)?;
    let r = blocking(move || {
        let row = vms::find(&node, vmid)?;
        // only a migration started by Keel here (a backup job is no migration to abort)
        let migrating = node
            .tasks
            .list(Some(&vmid.to_string()), true, 100)?
            .iter()
            .any(|t| t.kind == "vmmigrate");
        if !migrating {
            return Err(conflict(format!(
                "VM {vmid} has no migration running on {}",
                node.cfg.node
            )));
        }
        match node.hv.job_progress(&row.name)? {
            None => Err(conflict(format!(
                "VM {vmid} has no migration running on {}",
                node.cfg.node
            ))),
            Some(_) => {
                node.hv.abort_job(&row.name)?;
                Ok(MigrateCancelled {
                    message: format!(
                        "migration of VM {vmid} aborted; it keeps running on {}",
                        node.cfg.node
                    ),
                })
            }
        }
    })
    .await?;
    Ok(Json(r))
}

/// Answer of a cancel.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MigrateCancelled {
    pub message: String,
}

#[cfg(test)]
mod tests;
