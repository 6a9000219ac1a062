//! The safety probe every pool creation starts with, on every node, before anything is
//! written: the device exists, is a whole block device of at least the size asked for, is not
//! mounted (nor any partition of it), and carries no partition table, file system, LVM or DRBD
//! signature — unless the operator asked for a wipe, in which case the signatures are erased
//! with `wipefs -a` and nothing else. A mounted device is refused even with a wipe.

use std::time::Duration;

use keel_runner::{Cmd, Runner};
use serde::Deserialize;

use crate::StorageError;

const T: Duration = Duration::from_secs(20);

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceFacts {
    pub path: String,
    pub size_bytes: u64,
    /// `disk`, `loop`, `part`, `lvm`, …
    pub kind: String,
    /// Mount points of the device or any of its children.
    pub mounted_at: Vec<String>,
    /// Partitions and other children (LVs, DRBD devices) by path.
    pub children: Vec<String>,
    /// Signature types wipefs reports (`gpt`, `dos`, `ext4`, `LVM2_member`, `drbd`, …).
    pub signatures: Vec<String>,
}

#[derive(Deserialize)]
struct Lsblk {
    blockdevices: Vec<LsblkDev>,
}

#[derive(Deserialize)]
struct LsblkDev {
    path: String,
    size: u64,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    mountpoints: Vec<Option<String>>,
    #[serde(default)]
    children: Vec<LsblkDev>,
}

#[derive(Deserialize)]
struct Wipefs {
    #[serde(default)]
    signatures: Vec<WipefsSig>,
}

#[derive(Deserialize)]
struct WipefsSig {
    #[serde(rename = "type")]
    kind: String,
}

fn collect(d: &LsblkDev, mounts: &mut Vec<String>, children: &mut Vec<String>, top: bool) {
    mounts.extend(d.mountpoints.iter().flatten().cloned());
    if !top {
        children.push(d.path.clone());
    }
    for c in &d.children {
        collect(c, mounts, children, false);
    }
}

/// The commands [`probe`] runs.
pub fn lsblk(path: &str) -> Cmd {
    Cmd::argv(&[
        "lsblk",
        "-J",
        "-b",
        "-o",
        "PATH,SIZE,TYPE,MOUNTPOINTS",
        path,
    ])
    .timeout(T)
}
pub fn wipefs_list(path: &str) -> Cmd {
    Cmd::argv(&["wipefs", "--no-act", "-J", path]).timeout(T)
}
pub fn wipefs_all(path: &str) -> Cmd {
    Cmd::argv(&["wipefs", "-a", path]).timeout(Duration::from_secs(60))
}

/// Look at `path` on this node. A device that does not exist is an error naming it.
pub fn probe(r: &dyn Runner, node: &str, path: &str) -> Result<DeviceFacts, StorageError> {
    let cmd = lsblk(path);
    let out = r.run(&cmd)?;
    if !out.success() {
        return Err(StorageError::Unsafe(format!(
            "node {node}: {path} is not a block device ({}): check the name with `lsblk` on \
             {node}; use a stable name such as /dev/disk/by-id/…",
            out.stderr.trim().trim_start_matches("lsblk: ")
        )));
    }
    let parsed: Lsblk = serde_json::from_str(&out.stdout).map_err(|e| StorageError::Parse {
        what: format!("node {node}: {path}"),
        cmd: cmd.to_string(),
        why: e.to_string(),
    })?;
    let d = parsed
        .blockdevices
        .first()
        .ok_or_else(|| StorageError::Unsafe(format!("node {node}: lsblk lists no {path}")))?;
    let mut mounted_at = Vec::new();
    let mut children = Vec::new();
    collect(d, &mut mounted_at, &mut children, true);
    let cmd = wipefs_list(path);
    let text = r.run_ok(&cmd)?;
    let w: Wipefs = if text.trim().is_empty() {
        Wipefs { signatures: vec![] }
    } else {
        serde_json::from_str(&text).map_err(|e| StorageError::Parse {
            what: format!("node {node}: {path}"),
            cmd: cmd.to_string(),
            why: e.to_string(),
        })?
    };
    let mut signatures: Vec<String> = w.signatures.into_iter().map(|s| s.kind).collect();
    signatures.dedup();
    Ok(DeviceFacts {
        path: path.to_string(),
        size_bytes: d.size,
        kind: d.kind.clone(),
        mounted_at,
        children,
        signatures,
    })
}

/// Whether the device may be used, and the wipe to run first when the operator asked for one.
pub fn check(
    node: &str,
    f: &DeviceFacts,
    min_bytes: u64,
    wipe: bool,
) -> Result<Option<Cmd>, StorageError> {
    let p = &f.path;
    if !f.mounted_at.is_empty() {
        return Err(StorageError::Unsafe(format!(
            "node {node}: {p} is in use, mounted at {}: pick another device (a wipe is never \
             done on a mounted one)",
            f.mounted_at.join(", ")
        )));
    }
    if f.kind == "part" || f.kind == "lvm" {
        return Err(StorageError::Unsafe(format!(
            "node {node}: {p} is a {} — give a whole disk",
            if f.kind == "part" {
                "partition"
            } else {
                "logical volume"
            }
        )));
    }
    if f.size_bytes < min_bytes {
        return Err(StorageError::Unsafe(format!(
            "node {node}: {p} has {} MiB, the pool needs at least {} MiB",
            f.size_bytes >> 20,
            min_bytes >> 20
        )));
    }
    if f.signatures.is_empty() && f.children.is_empty() {
        return Ok(None);
    }
    if !wipe {
        let mut what = f.signatures.clone();
        if !f.children.is_empty() {
            what.push(format!("children {}", f.children.join(", ")));
        }
        return Err(StorageError::Unsafe(format!(
            "node {node}: {p} is not blank (it holds {}): nothing was changed; if its data may \
             be destroyed, repeat with --wipe",
            what.join(", ")
        )));
    }
    Ok(Some(wipefs_all(p)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_runner::{Fake, Reply};

    const BLANK: &str = r#"{"blockdevices":[{"path":"/dev/vdb","size":4294967296,"type":"disk","mountpoints":[null]}]}"#;

    #[test]
    fn blank_disk_passes() {
        let f = Fake::new()
            .expect(&lsblk("/dev/vdb").to_argv(), Reply::ok(BLANK))
            .expect(
                &wipefs_list("/dev/vdb").to_argv(),
                Reply::ok("{\n   \"signatures\": [\n\n   ]\n}\n"),
            );
        let facts = probe(&f, "node1", "/dev/vdb").unwrap();
        f.assert_done();
        assert!(facts.signatures.is_empty() && facts.children.is_empty());
        assert!(check("node1", &facts, 1 << 30, false).unwrap().is_none());
    }

    #[test]
    fn partitioned_disk_names_what_it_holds() {
        let lsblk_out = r#"{"blockdevices":[{"path":"/dev/vdb","size":4294967296,"type":"disk","mountpoints":[null],
            "children":[{"path":"/dev/vdb1","size":1048576,"type":"part","mountpoints":["/srv"]}]}]}"#;
        let f = Fake::new()
            .expect(&lsblk("/dev/vdb").to_argv(), Reply::ok(lsblk_out))
            .expect(
                &wipefs_list("/dev/vdb").to_argv(),
                Reply::ok(r#"{"signatures":[{"device":"vdb","offset":"0x200","type":"gpt"}]}"#),
            );
        let facts = probe(&f, "node1", "/dev/vdb").unwrap();
        f.assert_done();
        assert_eq!(facts.children, ["/dev/vdb1"]);
        assert_eq!(facts.mounted_at, ["/srv"]);
        let e = check("node1", &facts, 1 << 30, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mounted at /srv") && e.contains("never"), "{e}");
    }

    #[test]
    fn signatures_need_wipe() {
        let facts = DeviceFacts {
            path: "/dev/vdb".into(),
            size_bytes: 4 << 30,
            kind: "disk".into(),
            mounted_at: vec![],
            children: vec![],
            signatures: vec!["LVM2_member".into()],
        };
        let e = check("node2", &facts, 1 << 30, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node node2: /dev/vdb is not blank (it holds LVM2_member)")
                && e.contains("--wipe"),
            "{e}"
        );
        let w = check("node2", &facts, 1 << 30, true).unwrap().unwrap();
        assert_eq!(w.to_argv(), ["wipefs", "-a", "/dev/vdb"]);
        let e = check("node2", &facts, 8 << 30, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has 4096 MiB, the pool needs at least 8192 MiB"),
            "{e}"
        );
    }

    #[test]
    fn missing_device() {
        let f = Fake::new().expect(
            &lsblk("/dev/vdz").to_argv(),
            Reply::fail(32, "lsblk: /dev/vdz: not a block device"),
        );
        let e = probe(&f, "node1", "/dev/vdz").unwrap_err().to_string();
        assert!(
            e.contains("node node1: /dev/vdz is not a block device (/dev/vdz: not a block device)"),
            "{e}"
        );
    }
}
