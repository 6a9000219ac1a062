//! `keel vm disk add|remove` and `keel vm nic add|remove`: the VM's spec with one device added
//! or removed, PUT back. hostd attaches or detaches it live when the VM runs and the device
//! allows (docs/hotplug.md); the task log, printed while waiting, says what went live and what
//! is pending until the next cold boot.

use anyhow::{anyhow, Result};
use clap::Subcommand;
use keel_api::vm::{DiskSpec, NicSpec, VmConfig, VmSpec};
use reqwest::Method;

use crate::client::{typed, Client};
use crate::task::Mode;
use crate::{task_outcome, Outcome};

#[derive(Subcommand, Debug)]
pub enum DiskCmd {
    /// Add a new disk (attached live to a running VM when on the virtio bus)
    Add {
        vmid: u32,
        /// POOL:SIZE[:FORMAT[:BUS]], SIZE in MiB or e.g. 20G, FORMAT qcow2|raw, BUS virtio|sata|scsi
        #[arg(value_parser = crate::spec::parse_disk)]
        disk: DiskSpec,
    },
    /// Remove a disk (detached live from a running VM when the guest releases it); its volume
    /// stays in the pool
    #[command(visible_alias = "rm")]
    Remove {
        vmid: u32,
        /// disk0, disk1… (as `keel vm show` numbers them)
        disk: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NicCmd {
    /// Add a NIC (attached live to a running VM)
    Add {
        vmid: u32,
        /// network=NAME or bridge=NAME, then optionally ,model=virtio|e1000 ,mac=…
        #[arg(value_parser = crate::spec::parse_net)]
        nic: NicSpec,
    },
    /// Remove a NIC (detached live from a running VM)
    #[command(visible_alias = "rm")]
    Remove {
        vmid: u32,
        /// net0, net1… or the NIC's MAC address
        nic: String,
    },
}

/// The index named by `disk3` / `net0` (`prefix` without the number).
fn index_of(word: &str, prefix: &str, len: usize) -> Result<usize> {
    let i: usize = word
        .strip_prefix(prefix)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("{word:?}: expected {prefix}0, {prefix}1…"))?;
    if i >= len {
        let what = if prefix == "disk" { "disk" } else { "NIC" };
        return Err(match len {
            0 => anyhow!("{word:?}: this VM has no {what}"),
            1 => anyhow!("{word:?}: this VM has one {what}, {prefix}0"),
            n => anyhow!(
                "{word:?}: this VM has {n} {what}s, {prefix}0…{prefix}{}",
                n - 1
            ),
        });
    }
    Ok(i)
}

/// Remove one NIC by `netN` or by MAC.
fn remove_nic(spec: &mut VmSpec, which: &str) -> Result<()> {
    let i = if which.contains(':') {
        spec.nics
            .iter()
            .position(|n| {
                n.mac
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(which))
            })
            .ok_or_else(|| anyhow!("no NIC with MAC {which} on this VM"))?
    } else {
        index_of(which, "net", spec.nics.len())?
    };
    spec.nics.remove(i);
    Ok(())
}

pub(crate) async fn put(
    c: &Client,
    node: &str,
    vmid: u32,
    spec: &VmSpec,
    mode: Mode,
) -> Result<Outcome> {
    spec.validate()
        .map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
    let a = c
        .call(
            Method::PUT,
            &["nodes", node, "vms", &vmid.to_string()],
            &[],
            Some(spec),
        )
        .await?;
    task_outcome(c, node, a, mode).await
}

pub(crate) async fn current(c: &Client, node: &str, vmid: u32) -> Result<VmSpec> {
    let cfg: VmConfig = typed(
        c.get(&["nodes", node, "vms", &vmid.to_string()], &[])
            .await?,
    )?;
    Ok(cfg.spec)
}

pub async fn disk(c: &Client, node: &str, cmd: DiskCmd, mode: Mode) -> Result<Outcome> {
    match cmd {
        DiskCmd::Add { vmid, disk } => {
            let mut spec = current(c, node, vmid).await?;
            spec.disks.push(disk);
            put(c, node, vmid, &spec, mode).await
        }
        DiskCmd::Remove { vmid, disk } => {
            let mut spec = current(c, node, vmid).await?;
            let i = index_of(&disk, "disk", spec.disks.len())?;
            spec.disks.remove(i);
            put(c, node, vmid, &spec, mode).await
        }
    }
}

pub async fn nic(c: &Client, node: &str, cmd: NicCmd, mode: Mode) -> Result<Outcome> {
    match cmd {
        NicCmd::Add { vmid, nic } => {
            let mut spec = current(c, node, vmid).await?;
            spec.nics.push(nic);
            put(c, node, vmid, &spec, mode).await
        }
        NicCmd::Remove { vmid, nic } => {
            let mut spec = current(c, node, vmid).await?;
            remove_nic(&mut spec, &nic)?;
            put(c, node, vmid, &spec, mode).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        serde_json::from_value(serde_json::json!({
            "vmid": 100, "name": "a",
            "nics": [{"network": "default", "mac": "02:4b:45:00:00:01"},
                     {"bridge": "br0", "mac": "02:4b:45:00:00:02"}]
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn devices_are_named_like_keel_vm_show() {
        assert_eq!(index_of("disk1", "disk", 2).ok(), Some(1));
        let e = index_of("disk2", "disk", 2).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("\"disk2\": this VM has 2 disks, disk0…disk1")
        );
        assert!(index_of("vdb", "disk", 2).is_err());
        let mut s = spec();
        remove_nic(&mut s, "02:4B:45:00:00:02").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.nics.len(), 1);
        remove_nic(&mut s, "net0").unwrap_or_else(|e| panic!("{e}"));
        assert!(s.nics.is_empty());
        assert!(remove_nic(&mut spec(), "02:4b:45:00:00:09").is_err());
    }
}
