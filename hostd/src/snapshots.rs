//! VM snapshots (libvirt internal snapshots: every disk qcow2 on a file-based pool) and disk
//! growth: what is allowed, checked before a task exists, and the tasks themselves; plus their
//! HTTP handlers and routes (merged into the API router by `api.rs`).
//!
//! Internal snapshots live inside each qcow2 image; libvirt keeps the tree (parent, current)
//! as metadata next to the domain. Deleting one anywhere in the tree needs no merge of data
//! (qcow2 refcounts its clusters); libvirt re-parents its children. QEMU snapshots a running
//! guest internally only together with its memory (`savevm`), so a running VM's snapshot must
//! include the memory; a disk-only one needs the VM stopped.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use keel_api::snapshot::{validate_snapshot_name, DiskResize, SnapshotCreate, SnapshotInfo};
use keel_api::task::TaskRef;
use keel_api::vm::{DiskFormat, VmState};
use keel_api::ErrorBody;

use crate::auth::Principal;
use crate::domain::{self, ParsedDomain};
use crate::error::{Error, Result};
use crate::http::{accepted, blocking, check_node, ApiResult, JsonBody, Path};
use crate::hv::{DomainRow, SnapshotRow};
use crate::tasks::{self, TaskHandle};
use crate::xml::Element;
use crate::{vms, Node};

/// libvirt pool types whose volumes are files qemu opens as qcow2 (internal snapshots work).
pub const SNAPSHOT_POOL_KINDS: &[&str] = &["dir", "fs", "netfs"];

const MIB: u64 = 1024 * 1024;

// ------------------------------------------------------------------ decisions (pure)

/// One disk as the checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFacts {
    /// `disk0`, `disk1`… (the names the boot order uses).
    pub id: String,
    /// `vda`…
    pub target: String,
    pub format: DiskFormat,
    /// `pool/volume`, or the host path.
    pub source: String,
    /// libvirt pool type, when the disk is a pool volume.
    pub pool_kind: Option<String>,
}

/// Every disk must be qcow2 on a file-based pool (or a qcow2 host file): otherwise a 409
/// naming the first disk that cannot, and what to do.
pub fn check_snapshot_disks(vmid: u32, disks: &[DiskFacts]) -> Result<()> {
    for d in disks {
        let what = format!("{} ({}, {})", d.id, d.target, d.source);
        if d.format != DiskFormat::Qcow2 {
            return Err(Error::Conflict(format!(
                "VM {vmid} cannot be snapshotted: disk {what} is {}; snapshots need every disk in qcow2 format (convert the volume with qemu-img convert -O qcow2, or detach the disk)",
                d.format.as_str()
            )));
        }
        if let Some(k) = &d.pool_kind {
            if !SNAPSHOT_POOL_KINDS.contains(&k.as_str()) {
                return Err(Error::Conflict(format!(
                    "VM {vmid} cannot be snapshotted: disk {what} is on a pool of type {k:?}, which cannot hold internal snapshots (types that can: {})",
                    SNAPSHOT_POOL_KINDS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// Whether a snapshot may be taken in this VM state with/without memory.
pub fn check_snapshot_state(vmid: u32, state: VmState, memory: bool) -> Result<()> {
    match state {
        VmState::Running | VmState::Paused if !memory => Err(Error::Conflict(format!(
            "VM {vmid} is {}: QEMU snapshots a running guest's disks only together with its memory; set \"memory\": true (keel vm snapshot create --memory), or stop the VM first for a disk-only snapshot",
            state.as_str()
        ))),
        VmState::Running | VmState::Paused => Ok(()),
        VmState::Stopped if memory => Err(Error::validation(
            "memory",
            format!("VM {vmid} is stopped: it has no memory state to save; leave \"memory\" false"),
        )),
        VmState::Stopped => Ok(()),
        other => Err(Error::Conflict(format!(
            "VM {vmid} is {}: wait until it is running or stopped",
            other.as_str()
        ))),
    }
}

/// libvirt's snapshot state word as Keel's VM state.
fn vm_state_word(libvirt: &str) -> String {
    match libvirt {
        "shutoff" | "nostate" => "stopped".into(),
        "disk-snapshot" => "running (disks only)".into(),
        "pmsuspended" => "suspended".into(),
        other => other.into(),
    }
}

/// The snapshot tree as a list (parents before children, siblings oldest first), each with its
/// children named.
pub fn tree(rows: &[SnapshotRow]) -> Vec<SnapshotInfo> {
    let mut rows: Vec<&SnapshotRow> = rows.iter().collect();
    rows.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let children_of = |p: Option<&str>| -> Vec<&SnapshotRow> {
        rows.iter()
            .filter(|r| match p {
                // a parent libvirt no longer lists makes the child a root
                None => r
                    .parent
                    .as_deref()
                    .is_none_or(|pn| !rows.iter().any(|x| x.name == pn)),
                Some(p) => r.parent.as_deref() == Some(p),
            })
            .copied()
            .collect()
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut stack: Vec<&SnapshotRow> = children_of(None).into_iter().rev().collect();
    while let Some(r) = stack.pop() {
        if out.iter().any(|o: &SnapshotInfo| o.name == r.name) {
            continue; // a cycle cannot come from libvirt; never loop on one
        }
        let kids = children_of(Some(&r.name));
        out.push(SnapshotInfo {
            name: r.name.clone(),
            description: r.description.clone(),
            parent: r.parent.clone(),
            children: kids.iter().map(|k| k.name.clone()).collect(),
            created: r.created,
            vm_state: vm_state_word(&r.state),
            has_memory: r.memory,
            current: r.current,
        });
        stack.extend(kids.into_iter().rev());
    }
    out
}

/// How to roll back: `Ok(run)` — the guest runs afterwards (a memory snapshot) — or a 409.
pub fn check_rollback(vmid: u32, state: VmState, snap: &SnapshotInfo) -> Result<bool> {
    if state.is_active() && !snap.has_memory {
        return Err(Error::Conflict(format!(
            "VM {vmid} is {} and snapshot {:?} holds no memory state: stop the VM first (keel vm stop {vmid}), then roll back",
            state.as_str(),
            snap.name
        )));
    }
    if !matches!(state, VmState::Running | VmState::Paused | VmState::Stopped) {
        return Err(Error::Conflict(format!(
            "VM {vmid} is {}: wait until it is running or stopped",
            state.as_str()
        )));
    }
    Ok(snap.has_memory)
}

/// The new size in bytes, or a 400 saying why not: only growth, within the pool's free space
/// (the worst case of a thin qcow2 image is the guest filling the added space).
pub fn check_resize(
    disk: &str,
    current_bytes: u64,
    new_mib: u64,
    pool: &str,
    pool_available: u64,
) -> Result<u64> {
    let new = new_mib.saturating_mul(MIB);
    let cur_mib = current_bytes.div_ceil(MIB);
    if new <= current_bytes {
        return Err(Error::validation(
            "size_mib",
            format!(
                "{disk} is {cur_mib} MiB ({current_bytes} bytes) now; shrinking is not supported (it would cut the guest's file systems): give a size larger than {cur_mib} MiB"
            ),
        ));
    }
    let grow = new - current_bytes;
    if grow > pool_available {
        return Err(Error::validation(
            "size_mib",
            format!(
                "growing {disk} by {} MiB needs that much room in pool {pool:?}, which has {} MiB free: free space there or choose a smaller size",
                grow.div_ceil(MIB),
                pool_available / MIB
            ),
        ));
    }
    Ok(new)
}

/// `(version, internal snapshots)` from a qcow2 image's first 64 bytes; `None` if not qcow2.
pub fn qcow2_header(head: &[u8]) -> Option<(u32, u32)> {
    let be = |o: usize| -> Option<u32> {
        Some(u32::from_be_bytes(head.get(o..o + 4)?.try_into().ok()?))
    };
    (head.get(..4)? == b"QFI\xfb").then_some(())?;
    Some((be(4)?, be(60)?))
}

/// QEMU cannot resize a qcow2 version 2 image that holds internal snapshots: a 409 saying what
/// to do, before the task.
pub fn check_qcow2_resizable(disk: &str, path: &str, header: Option<(u32, u32)>) -> Result<()> {
    match header {
        Some((2, n)) if n > 0 => Err(Error::Conflict(format!(
            "{disk} ({path}) is a qcow2 version 2 image (compat 0.10) holding {n} internal snapshot(s), which QEMU cannot resize: delete the VM's snapshots first, or stop the VM and upgrade the image with qemu-img amend -o compat=1.1 {path}"
        ))),
        _ => Ok(()),
    }
}

/// `<domainsnapshot>` for libvirt: internal snapshots of the writable disks, none of
/// read-only ones (a CD-ROM); the memory goes with it when the domain is active.
pub fn snapshot_xml(req: &SnapshotCreate, domain_xml: &str) -> Result<String> {
    let dom = Element::parse(domain_xml).map_err(|e| Error::Internal(e.to_string()))?;
    let mut disks = Element::new("disks");
    for d in dom.descendants("disk") {
        let Some(target) = d.find("target").and_then(|t| t.get_attr("dev")) else {
            continue;
        };
        let readonly = d.get_attr("device") == Some("cdrom") || d.find("readonly").is_some();
        disks.push(
            Element::new("disk")
                .attr("name", target)
                .attr("snapshot", if readonly { "no" } else { "internal" }),
        );
    }
    Ok(Element::new("domainsnapshot")
        .child(Element::new("name").text(&req.name))
        .child_opt(
            req.description
                .as_ref()
                .map(|d| Element::new("description").text(d)),
        )
        .child(disks)
        .render())
}

// ------------------------------------------------------------------ engine-facing steps

fn parsed_inactive(node: &Node, name: &str) -> Result<ParsedDomain> {
    Ok(domain::parse(&node.hv.domain_xml(name, true)?)?)
}

/// The VM's disks with what the checks need (pool type looked up per disk).
fn disk_facts(node: &Node, p: &ParsedDomain) -> Result<Vec<DiskFacts>> {
    let mut out = Vec::with_capacity(p.spec.disks.len());
    for (i, d) in p.spec.disks.iter().enumerate() {
        let path = p.disk_paths.get(i).cloned().unwrap_or_default();
        let pv = match (&d.pool, &d.volume) {
            (Some(pool), Some(vol)) => Some((pool.clone(), vol.clone())),
            _ => node.hv.volume_by_path(&path)?,
        };
        let pool_kind = match &pv {
            Some((pool, _)) => Some(node.hv.pool(pool)?.kind),
            None => None,
        };
        out.push(DiskFacts {
            id: format!("disk{i}"),
            target: p.disk_targets.get(i).cloned().unwrap_or_default(),
            format: d.format,
            source: pv.map_or(path, |(p, v)| format!("{p}/{v}")),
            pool_kind,
        });
    }
    Ok(out)
}

pub fn list(node: &Node, vmid: u32) -> Result<Vec<SnapshotInfo>> {
    let row = vms::find(node, vmid)?;
    Ok(tree(&node.hv.list_snapshots(&row.name)?))
}

fn find_snapshot(node: &Node, vmid: u32, row: &DomainRow, name: &str) -> Result<SnapshotInfo> {
    validate_snapshot_name(name)?;
    tree(&node.hv.list_snapshots(&row.name)?)
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "VM {vmid} has no snapshot {name:?} (keel vm snapshot list {vmid} shows them)"
            ))
        })
}

/// Everything a snapshot request is refused for, before its task.
pub fn check_create(node: &Node, vmid: u32, req: &SnapshotCreate) -> Result<DomainRow> {
    crate::ha::refuse_if_ha(node, vmid, "taking a snapshot")?;
    req.validate()?;
    let row = vms::find(node, vmid)?;
    crate::clones::refuse_template(&row, vmid)?;
    check_snapshot_disks(vmid, &disk_facts(node, &parsed_inactive(node, &row.name)?)?)?;
    check_snapshot_state(vmid, row.state, req.memory)?;
    if node
        .hv
        .list_snapshots(&row.name)?
        .iter()
        .any(|s| s.name == req.name)
    {
        return Err(Error::Conflict(format!(
            "VM {vmid} already has a snapshot named {:?}: choose another name",
            req.name
        )));
    }
    Ok(row)
}

pub fn create(node: &Node, vmid: u32, req: &SnapshotCreate, task: &TaskHandle) -> Result<()> {
    let row = check_create(node, vmid, req)?;
    let xml = snapshot_xml(req, &node.hv.domain_xml(&row.name, false)?)?;
    task.log(format!(
        "taking snapshot {:?} of VM {vmid} ({}, {}{})",
        req.name,
        row.name,
        row.state.as_str(),
        if req.memory { ", with memory" } else { "" }
    ));
    if req.memory {
        task.log("the guest is paused while its memory is saved");
        // freezing would save a frozen guest: rolled back, it would stay frozen
        task.log("file systems not frozen: the memory state saved with the disks makes the snapshot consistent");
    }
    let t0 = std::time::Instant::now();
    node.hv.create_snapshot(&row.name, &xml)?;
    task.log(format!(
        "snapshot {:?} taken in {:.1}s",
        req.name,
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Checks of a rollback before its task; `(row, run afterwards)`.
pub fn check_rollback_req(node: &Node, vmid: u32, snap: &str) -> Result<(DomainRow, bool)> {
    let row = vms::find(node, vmid)?;
    crate::clones::refuse_template(&row, vmid)?;
    let s = find_snapshot(node, vmid, &row, snap)?;
    let run = check_rollback(vmid, row.state, &s)?;
    Ok((row, run))
}

pub fn rollback(node: &Node, vmid: u32, snap: &str, task: &TaskHandle) -> Result<()> {
    let (row, run) = check_rollback_req(node, vmid, snap)?;
    task.log(format!(
        "rolling VM {vmid} ({}) back to snapshot {snap:?}{}",
        row.name,
        if run {
            ": the guest resumes from its saved memory"
        } else {
            ": disks only, the VM stays stopped"
        }
    ));
    node.hv.revert_snapshot(&row.name, snap, run)?;
    task.log(format!(
        "VM {vmid} is {} at snapshot {snap:?}",
        node.hv.domain(&row.name)?.state.as_str()
    ));
    Ok(())
}

pub fn check_delete(node: &Node, vmid: u32, snap: &str) -> Result<(DomainRow, SnapshotInfo)> {
    let row = vms::find(node, vmid)?;
    crate::clones::refuse_template(&row, vmid)?;
    let s = find_snapshot(node, vmid, &row, snap)?;
    Ok((row, s))
}

pub fn delete_snapshot(node: &Node, vmid: u32, snap: &str, task: &TaskHandle) -> Result<()> {
    let (row, s) = check_delete(node, vmid, snap)?;
    task.log(format!(
        "deleting snapshot {snap:?} of VM {vmid} ({}){}",
        row.name,
        if s.children.is_empty() {
            String::new()
        } else {
            format!(
                "; its children {} move to {}",
                s.children.join(", "),
                s.parent
                    .as_deref()
                    .map_or("the top of the tree".to_string(), |p| format!("{p:?}"))
            )
        }
    ));
    node.hv.delete_snapshot(&row.name, snap)?;
    task.log(format!("snapshot {snap:?} deleted"));
    Ok(())
}

/// Before a VM is undefined: unless its volumes go too, delete its snapshots through libvirt so
/// no internal snapshot is left inside a kept qcow2 volume. (The undefine itself removes any
/// remaining snapshot metadata.)
pub fn before_undefine(node: &Node, name: &str, purge: bool, task: &TaskHandle) -> Result<()> {
    let snaps = match node.hv.list_snapshots(name) {
        Ok(s) => s,
        Err(e) => {
            task.log(format!(
                "snapshots not listed ({e}): only their metadata is removed"
            ));
            return Ok(());
        }
    };
    if snaps.is_empty() {
        return Ok(());
    }
    if purge {
        task.log(format!(
            "{} snapshot(s) go with the VM's volumes",
            snaps.len()
        ));
        return Ok(());
    }
    // leaves first: each deletion is then a plain removal
    for s in tree(&snaps).iter().rev() {
        task.log(format!("deleting snapshot {:?}", s.name));
        node.hv.delete_snapshot(name, &s.name)?;
    }
    Ok(())
}

/// Which disk `disk` names: `disk0`… or a target (`vda`); a CD-ROM is refused.
fn find_disk(vmid: u32, p: &ParsedDomain, disk: &str) -> Result<usize> {
    if disk == "cdrom" || p.spec.cdrom.is_some() && p.cdrom_path.as_deref() == Some(disk) {
        return Err(Error::validation(
            "disk",
            "a CD-ROM cannot be resized: it shows its ISO image as it is",
        ));
    }
    let idx = disk
        .strip_prefix("disk")
        .and_then(|n| n.parse::<usize>().ok())
        .or_else(|| p.disk_targets.iter().position(|t| t == disk));
    match idx {
        Some(i) if i < p.spec.disks.len() => Ok(i),
        _ => Err(Error::NotFound(format!(
            "VM {vmid} has no disk {disk:?}: its disks are {}",
            (0..p.spec.disks.len())
                .map(|i| format!(
                    "disk{i} ({})",
                    p.disk_targets.get(i).map_or("?", |s| s.as_str())
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A planned resize: (row, target, pool, volume, new bytes).
pub struct ResizePlan {
    pub row: DomainRow,
    pub id: String,
    pub target: String,
    pub pool: String,
    pub volume: String,
    pub bytes: u64,
}

pub fn check_resize_req(
    node: &Node,
    vmid: u32,
    disk: &str,
    req: &DiskResize,
) -> Result<ResizePlan> {
    req.validate()?;
    let row = vms::find(node, vmid)?;
    crate::clones::refuse_template(&row, vmid)?;
    let p = parsed_inactive(node, &row.name)?;
    let i = find_disk(vmid, &p, disk)?;
    let id = format!("disk{i}");
    let path = p.disk_paths.get(i).cloned().unwrap_or_default();
    let d = &p.spec.disks[i];
    let (pool, volume) = match (&d.pool, &d.volume) {
        (Some(pool), Some(vol)) => (pool.clone(), vol.clone()),
        _ => node.hv.volume_by_path(&path)?.ok_or_else(|| {
            Error::validation(
                "disk",
                format!("{id} ({path}) is not a volume of a storage pool: Keel resizes pool volumes only"),
            )
        })?,
    };
    if !matches!(
        row.state,
        VmState::Running | VmState::Paused | VmState::Stopped
    ) {
        return Err(Error::Conflict(format!(
            "VM {vmid} is {}: wait until it is running or stopped",
            row.state.as_str()
        )));
    }
    if d.format == DiskFormat::Qcow2 {
        let mut head = [0u8; 64];
        let header = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .ok()
            .and_then(|()| qcow2_header(&head));
        check_qcow2_resizable(&id, &path, header)?;
    }
    let cur = node.hv.volume(&pool, &volume)?.capacity;
    let avail = node.hv.pool(&pool)?.available;
    let bytes = check_resize(&id, cur, req.size_mib, &pool, avail)?;
    Ok(ResizePlan {
        target: p.disk_targets.get(i).cloned().unwrap_or_default(),
        row,
        id,
        pool,
        volume,
        bytes,
    })
}

pub fn resize(
    node: &Node,
    vmid: u32,
    disk: &str,
    req: &DiskResize,
    task: &TaskHandle,
) -> Result<()> {
    let plan = check_resize_req(node, vmid, disk, req)?;
    if plan.row.state.is_active() {
        task.log(format!(
            "growing {} ({}, {}/{}) of running VM {vmid} to {} MiB (block resize: the guest sees it at once)",
            plan.id, plan.target, plan.pool, plan.volume, req.size_mib
        ));
        node.hv
            .block_resize(&plan.row.name, &plan.target, plan.bytes)?;
    } else {
        task.log(format!(
            "growing volume {}/{} ({} of VM {vmid}) to {} MiB",
            plan.pool, plan.volume, plan.id, req.size_mib
        ));
        node.hv
            .resize_volume(&plan.pool, &plan.volume, plan.bytes)?;
    }
    let _ = node.hv.refresh_pool(&plan.pool);
    task.log(format!("{} is now {} MiB", plan.id, req.size_mib));
    Ok(())
}

// ------------------------------------------------------------------ HTTP

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/snapshots",
            get(list_snapshots).post(create_snapshot),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/snapshots/{snapshot}",
            delete(delete_snapshot_h),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/snapshots/{snapshot}/rollback",
            post(rollback_snapshot),
        )
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/disks/{disk}/resize",
            post(resize_disk),
        )
}

/// The VM's snapshots as a tree: parents before children, each naming its children.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}/snapshots", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path)),
    responses((status = 200, body = Vec<SnapshotInfo>), (status = 404, body = ErrorBody)))]
pub async fn list_snapshots(
    State(node): State<Arc<Node>>,
    Path((name, vmid)): Path<(String, u32)>,
) -> ApiResult<Json<Vec<SnapshotInfo>>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || list(&node, vmid)).await?))
}

/// Take a snapshot (every disk qcow2). A running VM's snapshot includes its memory.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/snapshots", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path)), request_body = SnapshotCreate,
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_snapshot(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<SnapshotCreate>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        check_create(&node, vmid, &req)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "vmsnapshot",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| create(&n, vmid, &req, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// Roll back to a snapshot: a stopped VM to any; a running VM only to one with memory.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/snapshots/{snapshot}/rollback", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path), ("snapshot" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback_snapshot(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid, snap)): Path<(String, u32, String)>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        check_rollback_req(&node, vmid, &snap)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "vmrollback",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| rollback(&n, vmid, &snap, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// Delete a snapshot wherever it is in the tree; its children move to its parent.
#[utoipa::path(delete, path = "/api/v1/nodes/{node}/vms/{vmid}/snapshots/{snapshot}", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path), ("snapshot" = String, Path)),
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_snapshot_h(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid, snap)): Path<(String, u32, String)>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        check_delete(&node, vmid, &snap)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "vmdelsnapshot",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| delete_snapshot(&n, vmid, &snap, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

/// Grow a disk (`disk0`… or its target, `vda`…) to `size_mib` (absolute). Live through
/// libvirt's block resize while the VM runs; the volume otherwise. Never shrinks.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/disks/{disk}/resize", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path), ("disk" = String, Path, description = "disk0, disk1… or the target (vda…)")),
    request_body = DiskResize,
    responses((status = 202, body = TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resize_disk(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid, disk)): Path<(String, u32, String)>,
    JsonBody(req): JsonBody<DiskResize>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        check_resize_req(&node, vmid, &disk, &req)?;
        let n = node.clone();
        tasks::spawn(
            &node.tasks,
            "vmresize",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| resize(&n, vmid, &disk, &req, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(name: &str, parent: Option<&str>, created: i64, memory: bool) -> SnapshotRow {
        SnapshotRow {
            name: name.into(),
            description: None,
            parent: parent.map(str::to_string),
            created,
            state: if memory { "running" } else { "shutoff" }.into(),
            memory,
            current: false,
        }
    }

    fn disk(format: DiskFormat, kind: Option<&str>) -> DiskFacts {
        DiskFacts {
            id: "disk1".into(),
            target: "vdb".into(),
            format,
            source: "local/data.raw".into(),
            pool_kind: kind.map(str::to_string),
        }
    }

    #[test]
    fn tree_orders_parents_first_and_names_children() {
        // A → B, A → C (taken after rolling back to A), C → D; listed shuffled
        let rows = vec![
            row("D", Some("C"), 40, false),
            row("B", Some("A"), 20, true),
            row("A", None, 10, false),
            row("C", Some("A"), 30, false),
        ];
        let t = tree(&rows);
        let names: Vec<&str> = t.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C", "D"]);
        assert_eq!(t[0].children, ["B", "C"]);
        assert_eq!(t[2].children, ["D"]);
        assert_eq!(t[0].vm_state, "stopped");
        assert_eq!(t[1].vm_state, "running");
        assert!(t[1].has_memory);
        // after deleting A (libvirt re-parents B and C to none) both are roots
        let rows = vec![row("B", None, 20, true), row("C", None, 30, false)];
        let t = tree(&rows);
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|s| s.parent.is_none()));
        // a parent that is not listed makes a root, never a lost snapshot
        let t = tree(&[row("X", Some("gone"), 1, false)]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn raw_or_block_pool_disks_refused_by_name() {
        let e = check_snapshot_disks(100, &[disk(DiskFormat::Raw, Some("dir"))]).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)));
        let m = e.to_string();
        assert!(m.contains("disk1 (vdb, local/data.raw) is raw"), "{m}");
        let e = check_snapshot_disks(100, &[disk(DiskFormat::Qcow2, Some("logical"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("type \"logical\""), "{e}");
        assert!(check_snapshot_disks(100, &[disk(DiskFormat::Qcow2, Some("dir"))]).is_ok());
        assert!(check_snapshot_disks(100, &[disk(DiskFormat::Qcow2, None)]).is_ok());
        assert!(check_snapshot_disks(100, &[]).is_ok());
    }

    #[test]
    fn running_needs_memory_stopped_cannot_have_it() {
        let e = check_snapshot_state(100, VmState::Running, false).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert!(e.to_string().contains("stop the VM first"), "{e}");
        assert!(check_snapshot_state(100, VmState::Running, true).is_ok());
        assert!(check_snapshot_state(100, VmState::Paused, true).is_ok());
        assert!(check_snapshot_state(100, VmState::Stopped, false).is_ok());
        assert!(matches!(
            check_snapshot_state(100, VmState::Stopped, true),
            Err(Error::Validation(_))
        ));
        assert!(check_snapshot_state(100, VmState::Crashed, false).is_err());
    }

    #[test]
    fn rollback_rules() {
        let t = tree(&[row("disk", None, 1, false), row("mem", None, 2, true)]);
        let (disk_only, mem) = (&t[0], &t[1]);
        let e = check_rollback(100, VmState::Running, disk_only).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)));
        assert!(e.to_string().contains("stop the VM first"), "{e}");
        assert!(!check_rollback(100, VmState::Stopped, disk_only).unwrap());
        assert!(check_rollback(100, VmState::Running, mem).unwrap());
        assert!(check_rollback(100, VmState::Stopped, mem).unwrap());
    }

    #[test]
    fn resize_only_grows_within_free_space() {
        let m = |x: u64| x * MIB;
        let e = check_resize("disk0", m(64), 32, "local", m(1000)).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, Error::Validation(_)));
        assert!(
            s.contains("disk0 is 64 MiB") && s.contains("shrinking is not supported"),
            "{s}"
        );
        assert!(check_resize("disk0", m(64), 64, "local", m(1000)).is_err());
        assert_eq!(
            check_resize("disk0", m(64), 96, "local", m(32)).unwrap(),
            m(96)
        );
        let s = check_resize("disk0", m(64), 97, "local", m(32))
            .unwrap_err()
            .to_string();
        assert!(s.contains("by 33 MiB") && s.contains("32 MiB free"), "{s}");
    }

    #[test]
    fn qcow2_v2_with_snapshots_cannot_grow() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[7] = 2;
        h[63] = 3;
        assert_eq!(qcow2_header(&h), Some((2, 3)));
        let e = check_qcow2_resizable("disk0", "/i/a.qcow2", qcow2_header(&h)).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)));
        assert!(
            e.to_string()
                .contains("qemu-img amend -o compat=1.1 /i/a.qcow2"),
            "{e}"
        );
        h[7] = 3;
        assert!(check_qcow2_resizable("disk0", "/i/a.qcow2", qcow2_header(&h)).is_ok());
        h[7] = 2;
        h[63] = 0;
        assert!(check_qcow2_resizable("disk0", "/i/a.qcow2", qcow2_header(&h)).is_ok());
        assert_eq!(qcow2_header(b"KEEL-SCRATCH"), None);
        assert_eq!(qcow2_header(&h[..10]), None);
    }

    #[test]
    fn snapshot_xml_skips_the_cdrom() {
        let dom = r#"<domain><devices>
            <disk type='file' device='disk'><source file='/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='cdrom'><source file='/l.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
            </devices></domain>"#;
        let req = SnapshotCreate {
            name: "s1".into(),
            description: Some("before <upgrade>".into()),
            memory: true,
        };
        let x = snapshot_xml(&req, dom).unwrap();
        let el = Element::parse(&x).unwrap();
        assert_eq!(el.path_text("name"), Some("s1"));
        assert_eq!(el.path_text("description"), Some("before <upgrade>"));
        let disks: Vec<(String, String)> = el
            .descendants("disk")
            .iter()
            .map(|d| {
                (
                    d.get_attr("name").unwrap_or("").to_string(),
                    d.get_attr("snapshot").unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            disks,
            [
                ("vda".into(), "internal".into()),
                ("sda".into(), "no".into())
            ]
        );
    }
}
