//! Templates and clones (docs/clones.md).
//!
//! A **template** is a stopped VM marked `<keel:template/>` in its Keel metadata (libvirt stays
//! the one record): Keel never starts it and never writes its disks, so they can serve as the
//! read-only base of **linked clones** (qcow2 overlays whose backing file is the template's
//! disk). A **full clone** copies every disk with `qemu-img convert` into a `dir` pool. Every
//! clone gets a new vmid (reserved cluster-wide as a create's), name, UUID, MACs and disk
//! serials. What can be refused is refused before a task exists ([`check_clone`]); a clone
//! that fails part-way removes the files it made and releases its vmid.
//!
//! A clone **from a snapshot** (libvirt internal qcow2 snapshots, `snapshots.rs`) is always a
//! full one: `qemu-img convert -l snapshot.name=S` of each disk, and the configuration libvirt
//! saved with the snapshot (never its memory state). Its source may be running (see
//! [`convert_argv`] for why reading the snapshot under a running guest is safe).
//!
//! `qemu-img` runs through the node's `keel_runner::Runner` (`ClusterState::runner`).

use std::os::unix::fs::MetadataExt;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use keel_api::clone::{derived_clone_name, CloneRequest};
use keel_api::storage::PoolInfo;
use keel_api::vm::{DiskFormat, VmSpec, MAC_PREFIX, VMID_MIN};
use keel_api::ErrorBody;
use keel_runner::Cmd;
use rand::RngCore;

use crate::auth::Principal;
use crate::domain::{self, ParsedDomain, KEEL_NS};
use crate::error::{Error, Result};
use crate::http::{accepted, blocking, check_node, ApiResult, JsonBody, Path};
use crate::hv::DomainRow;
use crate::tasks::TaskHandle;
use crate::vms;
use crate::xml::Element;
use crate::Node;

/// Local name of the template marker inside Keel's metadata element.
const TEMPLATE: &str = "template";
/// Bound of one `qemu-img info`/`create`.
const QEMU_IMG_SHORT: Duration = Duration::from_secs(60);
/// Bound of one disk copy (`qemu-img convert`): large disks on slow storage take long.
const QEMU_IMG_COPY: Duration = Duration::from_secs(6 * 3600);

/// A qemu-img failure: a timeout is the engine not answering (503), anything else its words.
fn run_err(e: keel_runner::RunError) -> Error {
    if e.is_timeout() {
        Error::Unavailable(e.to_string())
    } else {
        Error::Internal(e.to_string())
    }
}

// ------------------------------------------------------------ templates

/// Whether a Keel metadata element (as libvirt returns it) marks a template.
pub fn is_template_meta(meta: &str) -> bool {
    Element::parse(meta).is_ok_and(|el| {
        el.children
            .iter()
            .any(|c| c.name == TEMPLATE || c.name.ends_with(":template"))
    })
}

pub fn is_template(row: &DomainRow) -> bool {
    row.keel_metadata.as_deref().is_some_and(is_template_meta)
}

/// 409 when the VM is a template: what would start it or write its disks is refused.
pub fn refuse_template(row: &DomainRow, vmid: u32) -> Result<()> {
    if is_template(row) {
        return Err(Error::Conflict(format!(
            "VM {vmid} is a template; clone it (`keel vm clone {vmid}`): a template is never started and its disks are never written"
        )));
    }
    Ok(())
}

/// The same, by vmid (for operations elsewhere: snapshots, resize…).
pub fn refuse_if_template(node: &Node, vmid: u32) -> Result<()> {
    refuse_template(&vms::find(node, vmid)?, vmid)
}

/// Domain XML with `<keel:template/>` added to Keel's metadata element.
pub fn mark_template_xml(xml: &str) -> Result<String> {
    let mut dom = Element::parse(xml).map_err(|e| Error::Internal(format!("domain XML: {e}")))?;
    let meta = dom
        .children
        .iter_mut()
        .find(|c| c.name == "metadata")
        .and_then(|md| {
            md.children.iter_mut().find(|c| {
                c.name.split_once(':').is_some_and(|(prefix, local)| {
                    local == "vm" && c.get_attr(&format!("xmlns:{prefix}")) == Some(KEEL_NS)
                })
            })
        })
        .ok_or_else(|| {
            Error::Conflict("the domain carries no Keel metadata: adopt it first".into())
        })?;
    let prefix = meta
        .name
        .split_once(':')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    if !meta
        .children
        .iter()
        .any(|c| c.name.ends_with(&format!(":{TEMPLATE}")))
    {
        meta.push(Element::new(&format!("{prefix}:{TEMPLATE}")));
    }
    Ok(dom.render())
}

/// What converting to a template checks before a task exists (and again inside it).
pub fn check_template(node: &Node, vmid: u32) -> Result<DomainRow> {
    let row = vms::find(node, vmid)?;
    if is_template(&row) {
        return Err(Error::Conflict(format!("VM {vmid} is already a template")));
    }
    if row.state.is_active() {
        return Err(Error::Conflict(format!(
            "VM {vmid} is {}: shut it down before converting it to a template",
            row.state.as_str()
        )));
    }
    Ok(row)
}

pub fn make_template(node: &Node, vmid: u32, task: &TaskHandle) -> Result<()> {
    let row = check_template(node, vmid)?;
    let xml = mark_template_xml(&node.hv.domain_xml(&row.name, true)?)?;
    node.hv.define(&xml)?;
    task.log(format!(
        "VM {vmid} ({}) is now a template: it will not start, its disks stay where they are and are not written; clone it",
        row.name
    ));
    Ok(())
}

/// `qemu-img info` of an image (`-U`: it may be in use by a running guest; only read).
fn image_info(node: &Node, path: &str) -> Result<serde_json::Value> {
    let out = node
        .cluster
        .runner
        .run_ok(
            &Cmd::argv(&["qemu-img", "info", "-U", "--output=json", path]).timeout(QEMU_IMG_SHORT),
        )
        .map_err(run_err)?;
    serde_json::from_str(&out)
        .map_err(|e| Error::Internal(format!("qemu-img info {path}: unreadable answer: {e}")))
}

/// The disk a qcow2 image is layered on (`qemu-img info`'s full backing file name), if any.
fn backing_of(node: &Node, path: &str) -> Result<Option<String>> {
    Ok(backing_name(&image_info(node, path)?))
}

/// The backing file named by `qemu-img info`'s answer.
fn backing_name(v: &serde_json::Value) -> Option<String> {
    v["full-backing-filename"]
        .as_str()
        .or(v["backing-filename"].as_str())
        .map(str::to_string)
}

/// Names of the internal snapshots `qemu-img info` lists in an image.
fn image_snapshots(v: &serde_json::Value) -> Vec<String> {
    v["snapshots"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// VMs (labels such as `VM 101 (web-clone)`) with a disk layered on one of `base_paths`.
fn dependents(node: &Node, self_uuid: &str, base_paths: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (label, p) in vms::parsed_domains(node)? {
        if p.uuid == self_uuid {
            continue;
        }
        for (d, path) in p.spec.disks.iter().zip(&p.disk_paths) {
            if d.format != DiskFormat::Qcow2 || path.is_empty() || !FsPath::new(path).exists() {
                continue;
            }
            if backing_of(node, path)?.is_some_and(|b| base_paths.contains(&b)) {
                out.push(label.clone());
                break;
            }
        }
    }
    Ok(out)
}

/// Deleting a template is refused while linked clones are layered on its disks (409 naming
/// them). Anything else passes.
pub fn check_delete(node: &Node, vmid: u32) -> Result<()> {
    let row = vms::find(node, vmid)?;
    if !is_template(&row) {
        return Ok(());
    }
    let p = domain::parse(&node.hv.domain_xml(&row.name, true)?)?;
    let bases: Vec<String> = p
        .disk_paths
        .iter()
        .filter(|x| !x.is_empty())
        .cloned()
        .collect();
    let users = dependents(node, &row.uuid, &bases)?;
    if !users.is_empty() {
        return Err(Error::Conflict(format!(
            "VM {vmid} is a template with linked clones: {} use its disks as their base; delete them (or replace them with full clones) first",
            users.join(", ")
        )));
    }
    Ok(())
}

// ------------------------------------------------------------ identities

/// A MAC in Keel's prefix that is not in `taken` (and is added to it).
pub fn fresh_mac(taken: &mut Vec<String>, mut random: impl FnMut() -> [u8; 3]) -> String {
    loop {
        let b = random();
        let m = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            MAC_PREFIX[0], MAC_PREFIX[1], MAC_PREFIX[2], b[0], b[1], b[2]
        );
        if !taken.contains(&m) {
            taken.push(m.clone());
            return m;
        }
    }
}

/// A disk serial (`keel` + 16 hex digits: 20 characters, the spec's limit) not in `taken`.
pub fn fresh_serial(taken: &mut Vec<String>, mut random: impl FnMut() -> [u8; 8]) -> String {
    loop {
        let s = format!("keel{}", hex::encode(random()));
        if !taken.contains(&s) {
            taken.push(s.clone());
            return s;
        }
    }
}

/// A random (version 4) UUID not in `taken`.
pub fn fresh_uuid(taken: &[String], mut random: impl FnMut() -> [u8; 16]) -> String {
    loop {
        let mut b = random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        let u = format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        if !taken.iter().any(|t| t.eq_ignore_ascii_case(&u)) {
            return u;
        }
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

/// What a clone takes from its source and what it gets new: vmid, name, MACs, serials (only
/// where the source has one). `taken_*` are the node's MACs and serials (extended).
pub fn clone_spec(
    src: &VmSpec,
    vmid: u32,
    name: &str,
    taken_macs: &mut Vec<String>,
    taken_serials: &mut Vec<String>,
) -> VmSpec {
    let mut spec = src.clone();
    spec.vmid = vmid;
    spec.name = name.to_string();
    for n in &mut spec.nics {
        n.mac = Some(fresh_mac(taken_macs, rand_bytes::<3>));
    }
    for d in &mut spec.disks {
        if d.serial.is_some() {
            d.serial = Some(fresh_serial(taken_serials, rand_bytes::<8>));
        }
        d.size_mib = None;
    }
    spec
}

// ------------------------------------------------------------ clones

/// One disk of a clone: where it comes from and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskCopy {
    pub index: usize,
    pub src_path: String,
    pub src_format: DiskFormat,
    pub pool: String,
    pub volume: String,
    pub path: String,
    pub format: DiskFormat,
    /// Bytes the copy may take in its pool (0 for an overlay).
    pub need: u64,
}

/// A checked clone: everything the task does, decided before it exists.
#[derive(Debug, Clone)]
pub struct ClonePlan {
    pub source: u32,
    pub source_name: String,
    pub linked: bool,
    /// Cloned from this snapshot of the source (a full clone; the source may run).
    pub snapshot: Option<String>,
    pub spec: VmSpec,
    pub uuid: String,
    pub disks: Vec<DiskCopy>,
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The lowest vmid ≥ 100 not in `used`.
pub fn next_free(used: &[u32]) -> u32 {
    (VMID_MIN..).find(|v| !used.contains(v)).unwrap_or(VMID_MIN)
}

/// The source's configuration at snapshot `snap`, or a 404 naming the snapshots it has.
fn snapshot_source(node: &Node, vmid: u32, row: &DomainRow, snap: &str) -> Result<ParsedDomain> {
    let names: Vec<String> = crate::snapshots::tree(&node.hv.list_snapshots(&row.name)?)
        .into_iter()
        .map(|s| s.name)
        .collect();
    if !names.iter().any(|n| n == snap) {
        return Err(Error::NotFound(if names.is_empty() {
            format!("VM {vmid} has no snapshot {snap:?}: it has no snapshots at all (take one with `keel vm snapshot create {vmid} NAME`)")
        } else {
            format!(
                "VM {vmid} has no snapshot {snap:?}; its snapshots: {} (`keel vm snapshot list {vmid}`)",
                names.join(", ")
            )
        }));
    }
    let xml = node.hv.snapshot_domain_xml(&row.name, snap)?;
    domain::parse(&xml).map_err(|e| {
        Error::Internal(format!(
            "the configuration libvirt saved with snapshot {snap:?} of VM {vmid} cannot be read: {e}"
        ))
    })
}

/// Everything that can refuse a clone, before a task exists: 404 unknown VM, 409 source
/// running / linked clone of a non-template / vmid or name taken, 400 target pool missing,
/// inactive, not `dir`, without space for a full copy, or a linked clone to another pool.
/// From a snapshot: 404 unknown snapshot (naming those the VM has), 400 `linked`, 409 a disk
/// of the snapshot that is not qcow2, gone, or does not hold the snapshot.
pub fn check_clone(node: &Node, vmid: u32, req: &CloneRequest) -> Result<ClonePlan> {
    req.validate()?;
    let row = vms::find(node, vmid)?;
    let template = is_template(&row);
    let src = match &req.snapshot {
        None => {
            if row.state.is_active() {
                return Err(Error::Conflict(format!(
                    "VM {vmid} is {}: clones are made from a stopped VM (its disks must not change during the copy); shut it down first, or clone it from one of its snapshots",
                    row.state.as_str()
                )));
            }
            if req.linked && !template {
                return Err(Error::Conflict(format!(
                    "VM {vmid} is not a template: a linked clone is layered on its source's disks, which must never change again; convert it first (`keel vm template {vmid}`) or make a full clone"
                )));
            }
            domain::parse(&node.hv.domain_xml(&row.name, true)?)?
        }
        Some(snap) => {
            if req.linked {
                return Err(Error::validation(
                    "linked",
                    format!("a linked clone cannot be made from snapshot {snap:?} of VM {vmid}: a linked clone needs a read-only base, and a snapshot lives inside disks the VM keeps writing; make a full clone from the snapshot (leave linked out), or convert the VM to a template (`keel vm template {vmid}`) and make a linked clone of that"),
                ));
            }
            // A template can hold snapshots taken before it was converted (they can no
            // longer be taken, rolled back or deleted): cloning from one only reads them.
            snapshot_source(node, vmid, &row, snap)?
        }
    };
    let others = vms::parsed_domains(node)?;
    let mut used: Vec<u32> = others
        .iter()
        .filter(|(_, p)| p.managed)
        .map(|(_, p)| p.spec.vmid)
        .collect();
    used.extend(vms::reserved_vmids(node)?);
    let new_id = match req.vmid {
        Some(v) => {
            if let Some((_, p)) = others.iter().find(|(_, p)| p.managed && p.spec.vmid == v) {
                return Err(Error::Conflict(format!(
                    "vmid {v} is already used by VM {:?}; leave vmid out for the next free one",
                    p.spec.name
                )));
            }
            v
        }
        None => next_free(&used),
    };
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| derived_clone_name(&row.name, new_id));
    if others.iter().any(|(_, p)| p.spec.name == name) {
        return Err(Error::Conflict(format!(
            "a VM named {name:?} already exists on node {}; give the clone another name",
            node.cfg.node
        )));
    }
    let pools = node.hv.list_pools()?;
    let mut disks: Vec<DiskCopy> = Vec::new();
    for (i, (d, src_path)) in src.spec.disks.iter().zip(&src.disk_paths).enumerate() {
        let (Some(spool), Some(svol)) = (&d.pool, &d.volume) else {
            return Err(Error::validation(
                &format!("disks[{i}]"),
                format!("disk {i} of VM {vmid} is a host path ({src_path}), not a volume in a storage pool: only pool volumes can be cloned"),
            ));
        };
        let target = match (&req.pool, req.linked) {
            (Some(p), true) if p != spool => {
                return Err(Error::validation(
                    "pool",
                    format!("a linked clone's disks stay in the template's pool {spool:?} (their base is there); leave pool out, or make a full clone to put it in {p:?}"),
                ))
            }
            (Some(p), false) => p.clone(),
            _ => spool.clone(),
        };
        let pool = pools.iter().find(|p| p.name == target).ok_or_else(|| {
            Error::validation(
                "pool",
                format!(
                    "storage pool {target:?} does not exist on node {}",
                    node.cfg.node
                ),
            )
        })?;
        if !pool.active {
            return Err(Error::validation(
                "pool",
                format!("storage pool {target:?} is not active"),
            ));
        }
        let (true, Some(dir)) = (pool.kind == "dir", pool.path.as_deref()) else {
            return Err(Error::validation(
                "pool",
                format!(
                    "storage pool {target:?} is a {} pool: clones are made in dir pools",
                    pool.kind
                ),
            ));
        };
        let vinfo = match (&req.snapshot, node.hv.volume(spool, svol)) {
            (Some(snap), Err(crate::hv::HvError::NotFound(_))) => {
                return Err(Error::Conflict(format!(
                    "disk {i} of VM {vmid} at snapshot {snap:?} ({spool}/{svol}) no longer exists: the snapshot cannot be cloned"
                )))
            }
            (_, r) => r?,
        };
        // From a snapshot: the image must be qcow2 (internal snapshots live inside qcow2
        // images) and hold that snapshot.
        let info = match &req.snapshot {
            None => None,
            Some(snap) => {
                if d.format != DiskFormat::Qcow2 {
                    return Err(Error::Conflict(format!(
                        "disk {i} of VM {vmid} at snapshot {snap:?} ({spool}/{svol}) is {}: only qcow2 images hold internal snapshots, so this one cannot be read as it was then; clone the VM without a snapshot (stopped) instead",
                        d.format.as_str()
                    )));
                }
                let v = image_info(node, &vinfo.path)?;
                if !image_snapshots(&v).iter().any(|n| n == snap) {
                    return Err(Error::Conflict(format!(
                        "disk {i} of VM {vmid} ({spool}/{svol}) does not hold snapshot {snap:?} (libvirt lists it, the image does not: it was changed outside Keel); the snapshot cannot be cloned"
                    )));
                }
                Some(v)
            }
        };
        let format = if req.linked {
            DiskFormat::Qcow2
        } else {
            d.format
        };
        let mut n = i;
        let volume = loop {
            let cand = format!("vm-{new_id}-disk-{n}.{}", format.as_str());
            let planned = disks.iter().any(|x| x.pool == target && x.volume == cand);
            if !planned
                && node.hv.volume(&target, &cand).is_err()
                && !FsPath::new(dir).join(&cand).exists()
            {
                break cand;
            }
            n += 1;
        };
        // A full copy holds the data the source holds; one of a layered image holds the whole
        // chain, up to the virtual size.
        // (The image's allocation also bounds the data of any snapshot it holds.)
        let layered = match &info {
            Some(v) => backing_name(v).is_some(),
            None => {
                d.format == DiskFormat::Qcow2
                    && FsPath::new(&vinfo.path).exists()
                    && backing_of(node, &vinfo.path)?.is_some()
            }
        };
        let need = if req.linked {
            0
        } else if layered {
            vinfo.capacity
        } else {
            vinfo.allocation
        };
        disks.push(DiskCopy {
            index: i,
            src_path: vinfo.path.clone(),
            src_format: d.format,
            path: FsPath::new(dir).join(&volume).display().to_string(),
            pool: target,
            volume,
            format,
            need,
        });
    }
    check_space(vmid, &disks, &pools)?;
    let mut macs: Vec<String> = others
        .iter()
        .flat_map(|(_, p)| p.spec.nics.iter().filter_map(|n| n.mac.clone()))
        .map(|m| m.to_ascii_lowercase())
        .collect();
    let mut serials: Vec<String> = others
        .iter()
        .flat_map(|(_, p)| p.spec.disks.iter().filter_map(|d| d.serial.clone()))
        .collect();
    let mut spec = clone_spec(&src.spec, new_id, &name, &mut macs, &mut serials);
    for c in &disks {
        let d = &mut spec.disks[c.index];
        d.pool = Some(c.pool.clone());
        d.volume = Some(c.volume.clone());
        d.format = c.format;
    }
    spec.validate()?;
    let uuids: Vec<String> = others.iter().map(|(_, p)| p.uuid.clone()).collect();
    Ok(ClonePlan {
        source: vmid,
        source_name: row.name,
        linked: req.linked,
        snapshot: req.snapshot.clone(),
        spec,
        uuid: fresh_uuid(&uuids, rand_bytes::<16>),
        disks,
    })
}

/// 400 when a pool has less free space than the disks going there need together.
pub fn check_space(vmid: u32, disks: &[DiskCopy], pools: &[PoolInfo]) -> Result<()> {
    let mut per_pool: Vec<(&str, u64)> = Vec::new();
    for d in disks {
        match per_pool.iter_mut().find(|(p, _)| *p == d.pool) {
            Some((_, n)) => *n += d.need,
            None => per_pool.push((&d.pool, d.need)),
        }
    }
    for (p, need) in per_pool {
        let avail = pools
            .iter()
            .find(|x| x.name == p)
            .map_or(0, |x| x.available);
        if need > avail {
            return Err(Error::validation(
                "pool",
                format!(
                    "storage pool {p:?} has {} free; a full clone of VM {vmid} needs {} there (the data its disks hold): free space or choose another pool",
                    mib(avail),
                    mib(need)
                ),
            ));
        }
    }
    Ok(())
}

/// Bytes a file occupies on disk.
fn allocated(path: &str) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// Where a disk copy reads from: the image's current state, or one of its internal snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFrom<'a> {
    Current,
    /// `shared`: the source VM runs, its QEMU holds the image's lock; read with `-U`.
    Snapshot {
        name: &'a str,
        shared: bool,
    },
}

/// The `qemu-img convert` argv of one disk copy.
///
/// From a snapshot of a running VM, `-U` (force-share) reads the image under the running
/// guest's QEMU. That is safe because the snapshot's clusters are immutable while it exists:
/// qcow2 copies on write every cluster (and L2 table) a snapshot shares, so the guest's
/// writes never touch them, and QEMU flushed them when it took the snapshot. And the snapshot
/// exists for the whole copy: the clone task is an exclusive task on the source's vmid
/// (`tasks::begin`), as are the only operations that create, roll back or delete snapshots
/// (`vmsnapshot`, `vmrollback`, `vmdelsnapshot` in snapshots.rs, and `vmdelete`, whose
/// `before_undefine` deletes them), so none of them can run until the copy ends.
pub fn convert_argv(d: &DiskCopy, from: CopyFrom<'_>) -> Vec<String> {
    let mut a: Vec<String> = vec!["qemu-img".into(), "convert".into()];
    if let CopyFrom::Snapshot { name, shared } = from {
        if shared {
            a.push("-U".into());
        }
        a.push("-l".into());
        a.push(format!("snapshot.name={name}"));
    }
    for x in [
        "-f",
        d.src_format.as_str(),
        "-O",
        d.format.as_str(),
        &d.src_path,
        &d.path,
    ] {
        a.push(x.to_string());
    }
    a
}

/// `qemu-img convert`, with the task's progress following the bytes written.
fn copy_disk(
    node: &Node,
    d: &DiskCopy,
    from: CopyFrom<'_>,
    task: &TaskHandle,
    done_before: u64,
    total: u64,
) -> Result<()> {
    let argv = convert_argv(d, from);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let cmd = Cmd::argv(&argv).timeout(QEMU_IMG_COPY);
    let finished = AtomicBool::new(false);
    // iscsi-lvm disks (the source's, the clone's) are active only while something uses them
    let held = node.hv.hold_disks(
        &format!("the copy of {} into {}", d.src_path, d.path),
        &[d.src_path.clone(), d.path.clone()],
    )?;
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                let now = allocated(&d.path).min(d.need);
                task.progress(0.05 + 0.85 * (done_before + now) as f64 / total as f64);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let r = node.cluster.runner.run_ok(&cmd).map_err(run_err);
        finished.store(true, Ordering::Relaxed);
        r
    });
    node.hv.unhold_disks(&held);
    r.map(|_| ())
}

/// The clone task: make the disks, define the VM (new UUID, MACs, serials), record it in the
/// cluster; on failure remove what it made and release the vmid.
pub fn run_clone(node: &Node, plan: ClonePlan, task: &TaskHandle) -> Result<()> {
    let new_id = plan.spec.vmid;
    task.log(format!(
        "{} clone of VM {} ({}){} as VM {new_id} ({})",
        if plan.linked { "linked" } else { "full" },
        plan.source,
        plan.source_name,
        plan.snapshot
            .as_deref()
            .map_or(String::new(), |s| format!(" at snapshot {s:?}")),
        plan.spec.name
    ));
    let mut made: Vec<String> = Vec::new();
    let total: u64 = plan.disks.iter().map(|d| d.need).sum::<u64>().max(1);
    let r = (|| -> Result<()> {
        let row = vms::find(node, plan.source)?;
        let from = match &plan.snapshot {
            // the source must still be stopped (nothing ran between the check and now)
            None if row.state.is_active() => {
                return Err(Error::Conflict(format!(
                    "VM {} was started: clones are made from a stopped VM",
                    plan.source
                )));
            }
            None => CopyFrom::Current,
            Some(snap) => {
                // Held by this task from here on: the snapshot cannot go away and the VM
                // cannot be started or stopped by Keel until the copy ends.
                if !node
                    .hv
                    .list_snapshots(&row.name)?
                    .iter()
                    .any(|s| &s.name == snap)
                {
                    return Err(Error::Conflict(format!(
                        "snapshot {snap:?} of VM {} was deleted meanwhile",
                        plan.source
                    )));
                }
                let shared = row.state.is_active();
                if shared {
                    task.log(format!(
                        "VM {} is {}: reading snapshot {snap:?} beside it (qemu-img -U); a snapshot's data never changes while it exists, and it cannot be deleted during this task",
                        plan.source,
                        row.state.as_str()
                    ));
                }
                CopyFrom::Snapshot { name: snap, shared }
            }
        };
        std::fs::create_dir_all(node.cfg.serial_dir())?;
        let mut done = 0u64;
        for d in &plan.disks {
            if FsPath::new(&d.path).exists() {
                return Err(Error::Conflict(format!(
                    "{} appeared meanwhile; retry the clone",
                    d.path
                )));
            }
            made.push(d.path.clone());
            if plan.linked {
                task.log(format!(
                    "disk {}: qcow2 overlay {}/{} on {} (backing format {})",
                    d.index,
                    d.pool,
                    d.volume,
                    d.src_path,
                    d.src_format.as_str()
                ));
                node.cluster
                    .runner
                    .run_ok(
                        &Cmd::argv(&[
                            "qemu-img",
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            "-F",
                            d.src_format.as_str(),
                            "-b",
                            &d.src_path,
                            &d.path,
                        ])
                        .timeout(QEMU_IMG_SHORT),
                    )
                    .map_err(run_err)?;
            } else {
                task.log(format!(
                    "disk {}: copying {} to {}/{} ({}, {} of data)",
                    d.index,
                    d.src_path,
                    d.pool,
                    d.volume,
                    d.format.as_str(),
                    mib(d.need)
                ));
                copy_disk(node, d, from, task, done, total)?;
                done += d.need;
            }
        }
        let mut pools: Vec<&str> = plan.disks.iter().map(|d| d.pool.as_str()).collect();
        pools.dedup();
        for p in pools {
            node.hv.refresh_pool(p)?;
        }
        task.progress(0.95);
        let xml = vms::render(node, &plan.spec, &plan.uuid, None)?;
        node.hv.define(&xml)?;
        Ok(())
    })();
    if let Err(e) = r {
        for p in made.iter().rev() {
            task.log(format!("rolling back: removing {p}"));
            if let Err(re) = std::fs::remove_file(p) {
                if re.kind() != std::io::ErrorKind::NotFound {
                    task.log(format!("rollback of {p} failed: {re}"));
                }
            }
        }
        let mut pools: Vec<&str> = plan.disks.iter().map(|d| d.pool.as_str()).collect();
        pools.dedup();
        for p in pools {
            let _ = node.hv.refresh_pool(p);
        }
        if let Err(re) = vms::release_vmid(node, new_id) {
            task.log(format!("warning: vmid {new_id} stays reserved: {re}"));
        }
        return Err(e);
    }
    vms::record_vm(node, &plan.spec, task);
    task.log(format!(
        "defined VM {new_id} ({}) with a new UUID, new MACs{}",
        plan.spec.name,
        if plan.spec.disks.iter().any(|d| d.serial.is_some()) {
            " and new disk serials"
        } else {
            ""
        }
    ));
    Ok(())
}

// ------------------------------------------------------------ HTTP

/// Clone a stopped VM or a template: a full copy of its disks (`qemu-img convert`, into
/// `pool` or each disk's own pool), or a linked clone of a template (qcow2 overlays in the
/// template's pool). With `snapshot`, a full clone of any VM (running or stopped) as it was
/// at that snapshot: its disks then and its configuration then, without its memory state.
/// The new VM gets the vmid given (or the next free one), the name given (or
/// `<source>-clone-<vmid>`), a new UUID, new MACs and new disk serials. Besides `VM.Clone`
/// on the source, needs `VM.Allocate` on `/vms` and `Datastore.AllocateSpace` on the target
/// pools.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/clone", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path)), request_body = CloneRequest,
    responses((status = 202, body = keel_api::task::TaskRef), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn clone_vm(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Extension(who): Extension<crate::access::Subject>,
    Extension(acl): Extension<Arc<crate::access::AccessConfig>>,
    Path((name, vmid)): Path<(String, u32)>,
    JsonBody(req): JsonBody<CloneRequest>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        use keel_api::access::Privilege;
        if !acl.has(&who, Privilege::VmAllocate, "/vms") {
            return Err(Error::Forbidden(
                "permission denied: a clone is a new VM and needs VM.Allocate on /vms".into(),
            ));
        }
        let plan = check_clone(&node, vmid, &req)?;
        for d in &plan.disks {
            let path = format!("/storage/{}", d.pool);
            if !acl.has(&who, Privilege::DatastoreAllocateSpace, &path) {
                return Err(Error::Forbidden(format!(
                    "permission denied: disk {} of the clone needs Datastore.AllocateSpace on {path}",
                    d.index
                )));
            }
        }
        let new_id = plan.spec.vmid;
        // clustered: the new vmid is unique cluster-wide (409 naming the holder)
        vms::reserve_vmid(&node, new_id, &plan.spec.name)?;
        let n = node.clone();
        let r = crate::tasks::spawn(
            &node.tasks,
            "vmclone",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| run_clone(&n, plan, t),
        );
        if r.is_err() {
            let _ = vms::release_vmid(&node, new_id);
        }
        r
    })
    .await?;
    Ok(accepted(upid))
}

/// Convert a stopped VM to a template: from then on it is never started and its disks are
/// never written (start, configuration changes and delete-while-linked-clones-exist answer
/// 409); clone it instead.
#[utoipa::path(post, path = "/api/v1/nodes/{node}/vms/{vmid}/template", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path)),
    responses((status = 202, body = keel_api::task::TaskRef), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn template_vm(
    State(node): State<Arc<Node>>,
    Extension(p): Extension<Principal>,
    Path((name, vmid)): Path<(String, u32)>,
) -> ApiResult<Response> {
    check_node(&node, &name)?;
    let upid = blocking(move || {
        check_template(&node, vmid)?;
        let n = node.clone();
        crate::tasks::spawn(
            &node.tasks,
            "vmtemplate",
            &vmid.to_string(),
            &p.user,
            true,
            move |t| make_template(&n, vmid, t),
        )
    })
    .await?;
    Ok(accepted(upid))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::tests_support::fake_node;
    use keel_api::vm::VmState;

    fn spec(v: serde_json::Value) -> VmSpec {
        serde_json::from_value(v).unwrap()
    }

    fn node_with(hv: Arc<FakeHv>) -> (Node, tempfile::TempDir) {
        fake_node(hv).unwrap()
    }

    /// A VM on the fake engine with one disk in `local` (serial set) and one NIC.
    fn make_vm(node: &Node, vmid: u32, name: &str) {
        node.hv
            .create_volume(
                "local",
                &format!("vm-{vmid}-disk-0.qcow2"),
                1 << 20,
                DiskFormat::Qcow2,
            )
            .unwrap();
        let s = spec(serde_json::json!({
            "vmid": vmid, "name": name,
            "disks": [{"pool": "local", "volume": format!("vm-{vmid}-disk-0.qcow2"), "serial": "abc"}],
            "nics": [{"bridge": "br0", "mac": "02:4b:45:00:00:01"}]
        }));
        let xml = vms::render(node, &s, &fresh_uuid(&[], rand_bytes::<16>), None).unwrap();
        node.hv.define(&xml).unwrap();
    }

    #[test]
    fn template_marker_roundtrip() {
        let hv = Arc::new(FakeHv::new());
        let (node, _d) = node_with(hv.clone());
        make_vm(&node, 100, "base");
        let row = vms::find(&node, 100).unwrap();
        assert!(!is_template(&row));
        refuse_template(&row, 100).unwrap();
        let t = node.tasks.begin("vmtemplate", "100", "root", true).unwrap();
        make_template(&node, 100, &t).unwrap();
        t.finish(&Ok(()));
        let row = vms::find(&node, 100).unwrap();
        assert!(is_template(&row));
        match refuse_template(&row, 100) {
            Err(Error::Conflict(m)) => assert!(m.contains("VM 100 is a template; clone it"), "{m}"),
            other => panic!("{other:?}"),
        }
        // twice: refused; the XML is still Keel's (vmid kept, parse works)
        assert!(matches!(
            check_template(&node, 100),
            Err(Error::Conflict(_))
        ));
        let p = domain::parse(&node.hv.domain_xml("base", true).unwrap()).unwrap();
        assert_eq!(p.spec.vmid, 100);
        // libvirt may hand the metadata back with the default namespace
        assert!(is_template_meta(&format!(
            "<vm xmlns=\"{KEEL_NS}\"><vmid>1</vmid><template/></vm>"
        )));
        assert!(!is_template_meta(&format!(
            "<vm xmlns=\"{KEEL_NS}\"><vmid>1</vmid></vm>"
        )));
        // start and config updates are refused
        let t = node.tasks.begin("vmstart", "100", "root", true).unwrap();
        assert!(matches!(
            vms::power(&node, 100, crate::hv::Power::Start, &t),
            Err(Error::Conflict(_))
        ));
        let mut s = vms::config(&node, 100).unwrap().spec;
        assert!(vms::config(&node, 100).unwrap().template);
        assert!(matches!(
            vms::check_update(&node, 100, &mut s),
            Err(Error::Conflict(_))
        ));
        assert!(vms::list(&node).unwrap()[0].template);
        // a running VM cannot become a template
        make_vm(&node, 101, "runs");
        node.hv.power("runs", crate::hv::Power::Start).unwrap();
        assert!(
            matches!(check_template(&node, 101), Err(Error::Conflict(m)) if m.contains("shut it down"))
        );
    }

    #[test]
    fn identities_are_new_and_unique() {
        // a random source that repeats: the generators skip what is taken
        let mut seq = vec![[1u8, 2, 3], [1, 2, 3], [4, 5, 6]].into_iter();
        let mut taken = vec!["02:4b:45:01:02:03".to_string()];
        let m = fresh_mac(&mut taken, || seq.next().unwrap());
        assert_eq!(m, "02:4b:45:04:05:06");
        assert!(taken.contains(&m));
        let mut s8 = vec![[0u8; 8], [0u8; 8], [1u8; 8]].into_iter();
        let mut serials = vec!["keel0000000000000000".to_string()];
        let s = fresh_serial(&mut serials, || s8.next().unwrap());
        assert_eq!(s, "keel0101010101010101");
        assert_eq!(s.len(), 20);
        let mut u = vec![[0u8; 16], [0u8; 16], [7u8; 16]].into_iter();
        let first = fresh_uuid(&[], || [0u8; 16]);
        assert_eq!(first, "00000000-0000-4000-8000-000000000000");
        let second = fresh_uuid(&[first.to_uppercase()], || u.next().unwrap());
        assert_ne!(second, first);
        // a clone's spec: new vmid/name/MACs/serials, everything else kept
        let src = spec(serde_json::json!({
            "vmid": 100, "name": "base", "memory_mib": 256,
            "disks": [{"pool": "local", "volume": "a.qcow2", "serial": "s1"}, {"pool": "local", "volume": "b.qcow2"}],
            "nics": [{"bridge": "br0", "mac": "02:4b:45:00:00:01"}, {"network": "default", "mac": "02:4b:45:00:00:02"}]
        }));
        let mut macs = vec!["02:4b:45:00:00:01".into(), "02:4b:45:00:00:02".into()];
        let mut ser = vec!["s1".to_string()];
        let c = clone_spec(&src, 200, "copy", &mut macs, &mut ser);
        assert_eq!((c.vmid, c.name.as_str(), c.memory_mib), (200, "copy", 256));
        let cm: Vec<_> = c.nics.iter().filter_map(|n| n.mac.clone()).collect();
        assert_eq!(cm.len(), 2);
        assert!(cm[0] != cm[1] && !cm.contains(&"02:4b:45:00:00:01".to_string()));
        assert!(c.disks[0].serial.as_deref().is_some_and(|s| s != "s1"));
        assert_eq!(c.disks[1].serial, None);
        c.validate().unwrap();
        assert_eq!(next_free(&[100, 101, 103]), 102);
    }

    #[test]
    fn clone_checks_refuse_before_anything_changes() {
        let hv = Arc::new(FakeHv::new());
        let (node, dir) = node_with(hv.clone());
        make_vm(&node, 100, "base");
        make_vm(&node, 101, "other");
        let calls = hv.calls().len();
        let req = |v: serde_json::Value| -> CloneRequest { serde_json::from_value(v).unwrap() };
        let field = |r: Result<ClonePlan>| match r {
            Err(Error::Validation(f)) => f.field,
            other => panic!("expected 400, got {other:?}"),
        };
        // linked clone of an ordinary VM: 409 with the way out
        match check_clone(&node, 100, &req(serde_json::json!({"linked": true}))) {
            Err(Error::Conflict(m)) => assert!(
                m.contains("not a template") && m.contains("keel vm template 100"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        // vmid or name taken
        assert!(matches!(
            check_clone(&node, 100, &req(serde_json::json!({"vmid": 101}))),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            check_clone(&node, 100, &req(serde_json::json!({"name": "other"}))),
            Err(Error::Conflict(_))
        ));
        // target pool missing
        assert_eq!(
            field(check_clone(
                &node,
                100,
                &req(serde_json::json!({"pool": "nope"}))
            )),
            "pool"
        );
        // a full clone: next free vmid, derived name, new volume in the same pool
        let plan = check_clone(&node, 100, &CloneRequest::default()).unwrap();
        assert_eq!(plan.spec.vmid, 102);
        assert_eq!(plan.spec.name, "base-clone-102");
        assert_eq!(plan.disks[0].volume, "vm-102-disk-0.qcow2");
        assert_eq!(plan.disks[0].pool, "local");
        assert!(plan.disks[0]
            .path
            .starts_with(&dir.path().display().to_string()));
        let src = vms::find(&node, 100).unwrap();
        assert_ne!(plan.uuid, src.uuid);
        assert_ne!(plan.spec.nics[0].mac.as_deref(), Some("02:4b:45:00:00:01"));
        assert_ne!(plan.spec.disks[0].serial.as_deref(), Some("abc"));
        // source running: 409
        node.hv.power("base", crate::hv::Power::Start).unwrap();
        assert!(
            matches!(check_clone(&node, 100, &CloneRequest::default()), Err(Error::Conflict(m)) if m.contains("shut it down"))
        );
        node.hv.power("base", crate::hv::Power::Destroy).unwrap();
        // a template: a linked clone stays in the template's pool
        let t = node.tasks.begin("vmtemplate", "100", "root", true).unwrap();
        make_template(&node, 100, &t).unwrap();
        node.hv
            .ensure_dir_pool("fast", "/nonexistent/fast")
            .unwrap();
        assert_eq!(
            field(check_clone(
                &node,
                100,
                &req(serde_json::json!({"linked": true, "pool": "fast"}))
            )),
            "pool"
        );
        let plan = check_clone(
            &node,
            100,
            &req(serde_json::json!({"linked": true, "vmid": 150, "name": "l1"})),
        )
        .unwrap();
        assert!(
            plan.linked && plan.disks[0].need == 0 && plan.disks[0].format == DiskFormat::Qcow2
        );
        // nothing was asked of the engine beyond what the setup did
        let after: Vec<String> = hv.calls()[calls..].to_vec();
        assert!(
            after
                .iter()
                .all(|c| !c.starts_with("create_volume") && !c.starts_with("delete")),
            "{after:?}"
        );
    }

    #[test]
    fn a_full_clone_needs_the_space_its_disks_hold() {
        let pool = |name: &str, available: u64| keel_api::storage::PoolInfo {
            name: name.into(),
            kind: "dir".into(),
            path: Some(format!("/p/{name}")),
            active: true,
            capacity: 1 << 30,
            allocation: 0,
            available,
        };
        let disk = |pool: &str, need: u64| DiskCopy {
            index: 0,
            src_path: "/src".into(),
            src_format: DiskFormat::Qcow2,
            pool: pool.into(),
            volume: "v".into(),
            path: "/p/v".into(),
            format: DiskFormat::Qcow2,
            need,
        };
        let pools = vec![pool("small", 3 << 20), pool("big", 1 << 30)];
        // two disks of 2 MiB each do not fit in 3 MiB together, though each would alone
        match check_space(
            100,
            &[disk("small", 2 << 20), disk("small", 2 << 20)],
            &pools,
        ) {
            Err(Error::Validation(f)) => {
                assert_eq!(f.field, "pool");
                assert!(
                    f.message.contains("3.0 MiB free") && f.message.contains("needs 4.0 MiB"),
                    "{}",
                    f.message
                );
            }
            other => panic!("{other:?}"),
        }
        check_space(100, &[disk("small", 2 << 20), disk("big", 2 << 20)], &pools).unwrap();
        // overlays take no space up front
        check_space(100, &[disk("small", 0)], &[pool("small", 0)]).unwrap();
    }

    /// A full clone whose second disk copy fails: the first copy is removed again, the vmid
    /// released, nothing defined; the commands are exactly the two copies, in order.
    #[test]
    fn a_failed_clone_undoes_what_it_made() {
        let hv = Arc::new(FakeHv::new());
        let (mut node, _d) = node_with(hv.clone());
        for n in ["a.qcow2", "b.raw"] {
            let f = if n.ends_with("raw") {
                DiskFormat::Raw
            } else {
                DiskFormat::Qcow2
            };
            node.hv.create_volume("local", n, 1 << 20, f).unwrap();
        }
        let s = spec(serde_json::json!({
            "vmid": 100, "name": "two",
            "disks": [{"pool": "local", "volume": "a.qcow2"}, {"pool": "local", "volume": "b.raw", "format": "raw"}]
        }));
        let xml = vms::render(&node, &s, &fresh_uuid(&[], rand_bytes::<16>), None).unwrap();
        node.hv.define(&xml).unwrap();
        let plan = check_clone(
            &node,
            100,
            &CloneRequest {
                vmid: Some(300),
                name: Some("copy".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let (d0, d1) = (plan.disks[0].clone(), plan.disks[1].clone());
        assert_eq!(
            (d0.volume.as_str(), d1.volume.as_str()),
            ("vm-300-disk-0.qcow2", "vm-300-disk-1.raw")
        );
        let fake = Arc::new(
            keel_runner::Fake::new()
                .expect(
                    &[
                        "qemu-img",
                        "convert",
                        "-f",
                        "qcow2",
                        "-O",
                        "qcow2",
                        &d0.src_path,
                        &d0.path,
                    ],
                    keel_runner::Reply::ok(""),
                )
                .expect(
                    &[
                        "qemu-img",
                        "convert",
                        "-f",
                        "raw",
                        "-O",
                        "raw",
                        &d1.src_path,
                        &d1.path,
                    ],
                    keel_runner::Reply::fail(1, "No space left on device"),
                ),
        );
        node.cluster.runner = fake.clone();
        let t = node.tasks.begin("vmclone", "100", "root", true).unwrap();
        let r = run_clone(&node, plan, &t);
        let upid = t.upid.clone();
        t.finish(&r);
        match r {
            Err(e) => assert!(e.to_string().contains("No space left on device"), "{e}"),
            Ok(()) => panic!("the clone must fail"),
        }
        fake.assert_done();
        let log: Vec<String> = node
            .tasks
            .log(&upid, 0, 100)
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        for p in [&d1.path, &d0.path] {
            assert!(
                log.iter()
                    .any(|l| l == &format!("rolling back: removing {p}")),
                "{log:?}"
            );
        }
        assert!(vms::find(&node, 300).is_err(), "nothing defined");
        assert!(
            !hv.calls().iter().any(|c| c == "define copy"),
            "{:?}",
            hv.calls()
        );
    }

    /// Clones from a snapshot: refused before anything changes (no snapshots, an unknown one
    /// named among those the VM has, linked, a raw disk, an image without the snapshot), the
    /// configuration saved with the snapshot, and a running source read with `-U`.
    #[test]
    fn clones_from_a_snapshot() {
        let hv = Arc::new(FakeHv::new());
        let (mut node, _d) = node_with(hv.clone());
        make_vm(&node, 100, "base");
        let fake = Arc::new(keel_runner::Fake::new());
        node.cluster.runner = fake.clone();
        let req = |v: serde_json::Value| -> CloneRequest { serde_json::from_value(v).unwrap() };
        let from = |snap: &str| req(serde_json::json!({"snapshot": snap, "vmid": 200}));
        match check_clone(&node, 100, &from("S")) {
            Err(Error::NotFound(m)) => assert!(
                m.contains("VM 100 has no snapshot \"S\"") && m.contains("no snapshots at all"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        // S with the first configuration; then the memory changes and T is taken
        let snap = |vm: &str, n: &str| {
            node.hv
                .create_snapshot(
                    vm,
                    &format!("<domainsnapshot><name>{n}</name></domainsnapshot>"),
                )
                .unwrap()
        };
        snap("base", "S");
        let old = vms::config(&node, 100).unwrap().spec;
        let mut changed = old.clone();
        changed.memory_mib = old.memory_mib + 128;
        let uuid = vms::find(&node, 100).unwrap().uuid;
        node.hv
            .define(&vms::render(&node, &changed, &uuid, None).unwrap())
            .unwrap();
        snap("base", "T");
        match check_clone(&node, 100, &from("X")) {
            Err(Error::NotFound(m)) => assert!(m.contains("its snapshots: S, T"), "{m}"),
            other => panic!("{other:?}"),
        }
        match check_clone(
            &node,
            100,
            &req(serde_json::json!({"snapshot": "S", "linked": true})),
        ) {
            Err(Error::Validation(f)) => {
                assert_eq!(f.field, "linked");
                assert!(
                    f.message.contains("snapshot \"S\" of VM 100")
                        && f.message.contains("template"),
                    "{}",
                    f.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_clone(&node, 100, &from("1bad")),
            Err(Error::Validation(f)) if f.field == "snapshot"
        ));
        // the image does not hold S (changed outside Keel): 409
        let src = node.hv.volume("local", "vm-100-disk-0.qcow2").unwrap().path;
        let info = ["qemu-img", "info", "-U", "--output=json", src.as_str()];
        fake.push(
            &info,
            None,
            keel_runner::Reply::ok(r#"{"snapshots": [{"name": "T"}]}"#),
        );
        match check_clone(&node, 100, &from("S")) {
            Err(Error::Conflict(m)) => assert!(m.contains("does not hold snapshot \"S\""), "{m}"),
            other => panic!("{other:?}"),
        }
        // the configuration at S (memory before the change), new identities
        let holds = r#"{"snapshots": [{"name": "S"}, {"name": "T"}]}"#;
        fake.push(&info, None, keel_runner::Reply::ok(holds));
        let plan = check_clone(&node, 100, &from("S")).unwrap();
        assert_eq!(plan.spec.memory_mib, old.memory_mib);
        assert_eq!(plan.snapshot.as_deref(), Some("S"));
        assert_eq!(plan.disks[0].volume, "vm-200-disk-0.qcow2");
        assert_ne!(plan.uuid, uuid);
        assert_ne!(plan.spec.nics[0].mac.as_deref(), Some("02:4b:45:00:00:01"));
        // a running source: allowed; the copy reads the snapshot with -U
        node.hv.power("base", crate::hv::Power::Start).unwrap();
        fake.push(&info, None, keel_runner::Reply::ok(holds));
        let plan = check_clone(&node, 100, &from("S")).unwrap();
        let dst = plan.disks[0].path.clone();
        fake.push(
            &[
                "qemu-img",
                "convert",
                "-U",
                "-l",
                "snapshot.name=S",
                "-f",
                "qcow2",
                "-O",
                "qcow2",
                &src,
                &dst,
            ],
            None,
            keel_runner::Reply::ok(""),
        );
        // what the copy makes, as the pool refresh finds it
        node.hv
            .create_volume("local", "vm-200-disk-0.qcow2", 1 << 20, DiskFormat::Qcow2)
            .unwrap();
        let t = node.tasks.begin("vmclone", "100", "root", true).unwrap();
        let r = run_clone(&node, plan, &t);
        t.finish(&r);
        r.unwrap();
        fake.assert_done();
        let c = vms::config(&node, 200).unwrap();
        assert_eq!(c.spec.memory_mib, old.memory_mib);
        assert!(!c.template);
        assert!(node.hv.list_snapshots(&c.spec.name).unwrap().is_empty());
        assert_eq!(vms::find(&node, 100).unwrap().state, VmState::Running);
        // a stopped source: no -U
        let d = DiskCopy {
            index: 0,
            src_path: "/a".into(),
            src_format: DiskFormat::Qcow2,
            pool: "p".into(),
            volume: "v".into(),
            path: "/b".into(),
            format: DiskFormat::Qcow2,
            need: 0,
        };
        assert_eq!(
            convert_argv(
                &d,
                CopyFrom::Snapshot {
                    name: "S",
                    shared: false
                }
            )
            .join(" "),
            "qemu-img convert -l snapshot.name=S -f qcow2 -O qcow2 /a /b"
        );
        assert_eq!(
            convert_argv(&d, CopyFrom::Current).join(" "),
            "qemu-img convert -f qcow2 -O qcow2 /a /b"
        );
        // a raw disk in a snapshot's configuration: 409 naming it, before any command
        node.hv
            .create_volume("local", "r.raw", 1 << 20, DiskFormat::Raw)
            .unwrap();
        let s = spec(serde_json::json!({
            "vmid": 101, "name": "rawvm",
            "disks": [{"pool": "local", "volume": "r.raw", "format": "raw"}]
        }));
        let xml = vms::render(&node, &s, &fresh_uuid(&[], rand_bytes::<16>), None).unwrap();
        node.hv.define(&xml).unwrap();
        snap("rawvm", "S");
        match check_clone(&node, 101, &req(serde_json::json!({"snapshot": "S"}))) {
            Err(Error::Conflict(m)) => assert!(
                m.contains("disk 0 of VM 101 at snapshot \"S\" (local/r.raw) is raw"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        fake.assert_done();
        // a template keeps the snapshots it had: a full clone from one only reads it
        node.hv.power("base", crate::hv::Power::Destroy).unwrap();
        let t = node.tasks.begin("vmtemplate", "100", "root", true).unwrap();
        make_template(&node, 100, &t).unwrap();
        t.finish(&Ok(()));
        fake.push(&info, None, keel_runner::Reply::ok(holds));
        let plan = check_clone(&node, 100, &req(serde_json::json!({"snapshot": "T"}))).unwrap();
        assert_eq!(plan.spec.memory_mib, old.memory_mib + 128);
        fake.assert_done();
    }
}
