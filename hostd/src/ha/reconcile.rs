//! The per-node reconciler: every 2 s on a clustered node, make this node match the config
//! store (HA domain XMLs materialized, shared pools defined in libvirt) and publish what other
//! nodes' checks need (`/nodefacts/<node>`), only when it changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::{records, sha256_hex, shared_pools, HaRecord, NodeFacts, SharedPool, SHARED_MARKER};
use crate::db::Store;
use crate::error::{Error, Result};
use crate::Node;

const EVERY: Duration = Duration::from_secs(2);

pub fn spawn_reconciler(node: Arc<Node>) {
    tokio::spawn(async move {
        let mut last: Option<NodeFacts> = None;
        loop {
            let n = node.clone();
            let prev = last.clone();
            match tokio::task::spawn_blocking(move || pass(&n, prev)).await {
                Ok(Ok(f)) => last = f,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "HA reconciler pass failed");
                    last = None;
                }
                Err(e) => warn!(error = %e, "HA reconciler pass panicked"),
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}

/// One pass; returns the facts as published (`None` when not clustered).
fn pass(node: &Node, last: Option<NodeFacts>) -> Result<Option<NodeFacts>> {
    if node.cluster.record()?.is_none() {
        return Ok(None);
    }
    let st = Store::local();
    let recs = records(&st)?;
    let ha_xml = materialize(&node.cfg.cluster.ha_config_dir, &recs)?;
    let mut shared = BTreeMap::new();
    for p in shared_pools(&st)? {
        shared.insert(p.name.clone(), attach(node, &p));
    }
    // a shared pool removed from the cluster: this node's libvirt pool goes with it (the files
    // stay). What was attached here is read from the published facts, so a restart between
    // the removal and this pass does not leave the pool behind.
    let published = match last.as_ref() {
        Some(f) => Some(f.shared.clone()),
        None => st
            .get(&super::facts_key(&node.cfg.node))?
            .and_then(|e| serde_json::from_value::<NodeFacts>(e.value).ok())
            .map(|f| f.shared),
    };
    for name in removed_shared(published.as_ref(), &shared) {
        match node.hv.undefine_pool(&name) {
            Ok(()) => {
                tracing::info!(pool = %name, "shared pool removed from the cluster: libvirt pool undefined")
            }
            Err(e) => {
                warn!(pool = %name, error = %e, "shared pool removed from the cluster: undefining its libvirt pool failed")
            }
        }
    }
    let facts = NodeFacts {
        mem_total_mib: mem_total_mib(),
        networks: node
            .hv
            .list_networks()?
            .into_iter()
            .filter(|n| n.active)
            .map(|n| n.name)
            .collect(),
        bridges: bridges(),
        shared,
        ha_xml,
    };
    if last.as_ref() != Some(&facts) {
        st.put(
            &super::facts_key(&node.cfg.node),
            &serde_json::to_value(&facts).map_err(|e| Error::Internal(e.to_string()))?,
        )?;
    }
    // an HA VM running here is this node's in the cluster-wide VM view
    let running: Vec<String> = node
        .hv
        .list_domains()?
        .into_iter()
        .filter(|d| d.state.is_active())
        .map(|d| d.name)
        .collect();
    for r in recs.iter().filter(|r| running.contains(&r.name)) {
        claim_vm(node, r.vmid, &st);
    }
    // an iscsi-lvm disk whose VM stopped (from inside, or crashed) is released here, so the
    // VM can start on another node
    if crate::cluster_pools::has_volume_pools(&st) {
        match node.hv.release_idle_disks() {
            Ok(released) => {
                for p in released {
                    tracing::info!(disk = %p, "iscsi-lvm disk released: nothing here uses it");
                }
            }
            Err(e) => warn!(error = %e, "releasing idle iscsi-lvm disks"),
        }
    }
    Ok(Some(facts))
}

/// Shared pools this node had attached (`ok` in its published facts) that the cluster no
/// longer has.
fn removed_shared(
    published: Option<&BTreeMap<String, String>>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    published
        .map(|p| {
            p.iter()
                .filter(|(name, status)| *status == "ok" && !now.contains_key(*name))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Record in `/vms/<vmid>` that the VM is on this node (when it says otherwise).
pub(super) fn claim_vm(node: &Node, vmid: u32, st: &Store) {
    let key = format!("/vms/{vmid}");
    let Ok(Some(e)) = st.get(&key) else { return };
    if e.value["node"].as_str() == Some(node.cfg.node.as_str()) {
        return;
    }
    let mut v = e.value.clone();
    v["node"] = serde_json::Value::String(node.cfg.node.clone());
    if let Err(e) = st.put(&key, &v) {
        warn!(vmid, error = %e, "could not record the HA VM's node");
    }
}

/// Write each record's XML to `dir/<vmid>.xml` when it differs; remove files of VMs that are
/// no longer HA. Returns vmid → SHA-256 of what is on disk.
fn materialize(dir: &Path, recs: &[HaRecord]) -> Result<BTreeMap<u32, String>> {
    std::fs::create_dir_all(dir)?;
    let mut out = BTreeMap::new();
    for r in recs {
        let p = dir.join(format!("{}.xml", r.vmid));
        if std::fs::read(&p).ok().as_deref() != Some(r.xml.as_bytes()) {
            let tmp = dir.join(format!(".{}.xml.tmp", r.vmid));
            std::fs::write(&tmp, &r.xml)?;
            std::fs::rename(&tmp, &p)?;
        }
        out.insert(r.vmid, sha256_hex(r.xml.as_bytes()));
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_suffix(".xml")
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if !out.contains_key(&id) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(out)
}

/// `ok` when this node sees the pool's marker and has the libvirt pool; else why not.
fn attach(node: &Node, p: &SharedPool) -> String {
    let marker = Path::new(&p.path).join(SHARED_MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(s) if s.trim() == p.id => {}
        Ok(_) => {
            return format!(
                "{} belongs to another pool: {} is not the shared storage of {:?} on this node",
                marker.display(),
                p.path,
                p.name
            )
        }
        Err(_) => {
            return format!(
                "{} is missing: mount the shared storage at {} on this node",
                marker.display(),
                p.path
            )
        }
    }
    if node.hv.pool(&p.name).is_err() {
        if let Err(e) = node.hv.ensure_dir_pool(&p.name, &p.path) {
            return format!("defining the libvirt pool failed: {e}");
        }
    }
    "ok".into()
}

fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn bridges() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("bridge").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_pools_attached_here_and_gone_from_the_cluster_are_undefined() {
        let m = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let before = m(&[
            ("san", "ok"),
            ("vmstore", "ok"),
            (
                "far",
                "/x/.keel-shared-pool is missing: mount the shared storage at /x on this node",
            ),
        ]);
        assert_eq!(
            removed_shared(Some(&before), &m(&[("vmstore", "ok")])),
            vec!["san".to_string()]
        );
        assert!(removed_shared(Some(&before), &before).is_empty());
        assert!(removed_shared(None, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn materialize_writes_changes_and_removes_stale_files() {
        let d = tempfile::tempdir().unwrap();
        let rec = |vmid, xml: &str| HaRecord {
            vmid,
            name: format!("vm{vmid}"),
            xml: xml.into(),
            priority: 0,
            max_restarts: 3,
            memory_mib: 256,
        };
        std::fs::write(d.path().join("7.xml"), "old").unwrap();
        std::fs::write(d.path().join("notes.txt"), "keep").unwrap();
        let h = materialize(d.path(), &[rec(100, "<domain/>")]).unwrap();
        assert_eq!(h[&100], sha256_hex(b"<domain/>"));
        assert_eq!(
            std::fs::read_to_string(d.path().join("100.xml")).unwrap(),
            "<domain/>"
        );
        assert!(!d.path().join("7.xml").exists());
        assert!(d.path().join("notes.txt").exists());
    }
}
