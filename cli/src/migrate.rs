//! `keel vm migrate` and `keel vm migrate-cancel`: move a VM to another cluster member (live
//! when running, offline when stopped) and abort a running live migration.

use anyhow::Result;
use clap::Args;
use keel_api::migration::MigrateRequest;
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::task::Mode;
use crate::{task_outcome, Outcome};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The VM to move
    pub vmid: u32,
    /// The cluster member to move it to
    pub target: String,
    /// Limit of the memory migration stream, MiB/s (not the disk copy) [default: unlimited]
    #[arg(long, value_name = "MIB_S")]
    pub bandwidth: Option<u64>,
    /// Longest pause of the guest at the switch-over, ms [default: QEMU's, 300]
    #[arg(long, value_name = "MS")]
    pub max_downtime: Option<u64>,
    /// Do not slow the guest's vCPUs down to make the migration converge
    #[arg(long)]
    pub no_auto_converge: bool,
}

impl MigrateArgs {
    /// The API request, checked as the server checks it (a typo fails before any call).
    pub fn request(&self) -> Result<MigrateRequest> {
        let r = MigrateRequest {
            target: self.target.clone(),
            bandwidth_mib_s: self.bandwidth,
            max_downtime_ms: self.max_downtime,
            auto_converge: !self.no_auto_converge,
        };
        r.validate().map_err(|e| {
            let flag = match e.field.as_str() {
                "bandwidth_mib_s" => "--bandwidth",
                "max_downtime_ms" => "--max-downtime",
                _ => "NODE",
            };
            anyhow::anyhow!("{flag}: {}", e.message)
        })?;
        Ok(r)
    }
}

pub async fn migrate(c: &Client, node: &str, a: &MigrateArgs, mode: Mode) -> Result<Outcome> {
    let req = a.request()?;
    let ans = c
        .call(
            Method::POST,
            &["nodes", node, "vms", &a.vmid.to_string(), "migrate"],
            &[],
            Some(&req),
        )
        .await?;
    task_outcome(c, node, ans, mode).await
}

pub async fn cancel(c: &Client, node: &str, vmid: u32, mode: Mode) -> Result<Outcome> {
    let ans = c
        .call::<()>(
            Method::POST,
            &["nodes", node, "vms", &vmid.to_string(), "migrate", "cancel"],
            &[],
            None,
        )
        .await?;
    if mode.json {
        println!("{ans}");
    } else {
        println!(
            "{}",
            ans.get("message")
                .and_then(Value::as_str)
                .unwrap_or("cancelled")
        );
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: &str) -> MigrateArgs {
        MigrateArgs {
            vmid: 100,
            target: target.into(),
            bandwidth: Some(50),
            max_downtime: None,
            no_auto_converge: true,
        }
    }

    #[test]
    fn flags_become_the_request_and_bad_ones_fail_early() -> Result<()> {
        let r = args("node2").request()?;
        assert_eq!(r.bandwidth_mib_s, Some(50));
        assert!(!r.auto_converge);
        let mut a = args("node2");
        a.bandwidth = Some(0);
        let e = a.request().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("--bandwidth:"), "{e}");
        let e = args("bad name")
            .request()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("NODE:"), "{e}");
        Ok(())
    }
}
