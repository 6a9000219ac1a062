//! `keel vm clone` and `keel vm template`: clones of stopped VMs and templates (full copies or,
//! of a template, linked qcow2 overlays), full clones of any VM from one of its snapshots
//! (`--snapshot`), and the conversion of a VM to a template.

use anyhow::Result;
use clap::Args;
use keel_api::clone::CloneRequest;
use reqwest::Method;

use crate::client::Client;
use crate::task::Mode;
use crate::{task_outcome, Outcome};

#[derive(Args, Debug)]
pub struct CloneArgs {
    /// The VM or template to clone (must be stopped, unless cloned from a snapshot)
    pub vmid: u32,
    /// vmid of the clone [default: the next free one]
    #[arg(long = "vmid", value_name = "N")]
    pub new_vmid: Option<u32>,
    /// Name of the clone [default: <source>-clone-<vmid>]
    #[arg(long)]
    pub name: Option<String>,
    /// Linked clone: qcow2 overlays on the template's disks (templates only; stays in the
    /// template's pool)
    #[arg(long)]
    pub linked: bool,
    /// dir pool for a full clone's disks [default: each disk's own pool]
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
    /// Full clone of the disks and configuration as they were at this snapshot (the source
    /// may be running; `keel vm snapshot list VMID` shows the names)
    #[arg(long, value_name = "NAME", conflicts_with = "linked")]
    pub snapshot: Option<String>,
}

impl CloneArgs {
    /// The API request, checked as the server checks it (so a typo fails before any call).
    pub fn request(&self) -> Result<CloneRequest> {
        let r = CloneRequest {
            vmid: self.new_vmid,
            name: self.name.clone(),
            linked: self.linked,
            pool: self.pool.clone(),
            snapshot: self.snapshot.clone(),
        };
        r.validate()
            .map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.message))?;
        Ok(r)
    }
}

pub async fn clone(c: &Client, node: &str, a: &CloneArgs, mode: Mode) -> Result<Outcome> {
    let req = a.request()?;
    let ans = c
        .call(
            Method::POST,
            &["nodes", node, "vms", &a.vmid.to_string(), "clone"],
            &[],
            Some(&req),
        )
        .await?;
    task_outcome(c, node, ans, mode).await
}

pub async fn template(c: &Client, node: &str, vmid: u32, mode: Mode) -> Result<Outcome> {
    let ans = c
        .call::<()>(
            Method::POST,
            &["nodes", node, "vms", &vmid.to_string(), "template"],
            &[],
            None,
        )
        .await?;
    task_outcome(c, node, ans, mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_the_request_and_bad_ones_fail_early() {
        let a = CloneArgs {
            vmid: 100,
            new_vmid: Some(200),
            name: Some("web2".into()),
            linked: true,
            pool: None,
            snapshot: None,
        };
        let r = a.request().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.vmid, r.linked), (Some(200), true));
        let bad = CloneArgs {
            new_vmid: Some(5),
            ..a
        };
        let e = bad
            .request()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("--vmid:"), "{e}");
        let snap = CloneArgs {
            vmid: 100,
            new_vmid: None,
            name: None,
            linked: false,
            pool: None,
            snapshot: Some("before-upgrade".into()),
        };
        let r = snap.request().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.snapshot.as_deref(), Some("before-upgrade"));
        let e = CloneArgs {
            snapshot: Some("9x".into()),
            ..snap
        }
        .request()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.starts_with("--snapshot:"), "{e}");
    }
}
