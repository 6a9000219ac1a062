//! `keel cluster qdevice …`: a corosync-qnetd arbiter's vote for a two-node cluster.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use keel_api::cluster::{QdeviceAdd, QdeviceStatus};
use keel_api::task::TaskRef;
use reqwest::Method;

use crate::client::{typed, Client};
use crate::task::{self, Mode};
use crate::{show, task_outcome, Outcome};

#[derive(Subcommand, Debug)]
pub enum QdeviceCmd {
    /// The QDevice as configured and its vote as votequorum counts it
    Show,
    /// Add a QDevice: HOST runs corosync-qnetd; the certificates come from it (see
    /// docs/cluster.md, "QDevice": corosync-qnetd-certutil -i, then the cluster certificate
    /// signed there)
    Add {
        /// The qnetd host (IP address or DNS name every node resolves)
        host: String,
        /// ffsplit (default) or lms
        #[arg(long, value_name = "ALGORITHM")]
        algorithm: Option<String>,
        /// qnetd's TCP port [default: 5403]
        #[arg(long)]
        port: Option<u16>,
        /// The qnetd CA certificate (qnetd-cacert.crt from the qnetd host)
        #[arg(long, value_name = "FILE")]
        ca_cert: PathBuf,
        /// The cluster's signed certificate with its key (the qdevice-net-node.p12 that
        /// `corosync-qdevice-net-certutil -M` wrote)
        #[arg(long, value_name = "FILE")]
        cluster_p12: PathBuf,
    },
    /// Remove the QDevice (two_node comes back on a two-node cluster)
    #[command(visible_alias = "rm")]
    Remove,
}

fn output(q: QdeviceStatus) {
    if !q.configured {
        println!("no QDevice (keel cluster qdevice add HOST …)");
        return;
    }
    println!(
        "qdevice:  {}:{}  algorithm {}  vote {}  corosync-qdevice {}",
        q.host.as_deref().unwrap_or("?"),
        q.port.unwrap_or(5403),
        q.algorithm.as_deref().unwrap_or("?"),
        q.votes
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none".into()),
        if q.daemon_running {
            "running"
        } else {
            "NOT running"
        }
    );
}

/// One line for `keel cluster status`.
pub fn status_line(q: &QdeviceStatus) -> Option<String> {
    q.configured.then(|| {
        format!(
            "qdevice:  {} ({})  vote {}{}",
            q.host.as_deref().unwrap_or("?"),
            q.algorithm.as_deref().unwrap_or("?"),
            q.votes
                .map(|v| v.to_string())
                .unwrap_or_else(|| "none".into()),
            if q.daemon_running {
                ""
            } else {
                "  (corosync-qdevice NOT running here)"
            }
        )
    })
}

pub async fn run(c: &Client, cmd: QdeviceCmd, mode: Mode) -> Result<Outcome> {
    let json = mode.json;
    match cmd {
        QdeviceCmd::Show => show(c.get(&["cluster", "qdevice"], &[]).await?, json, output)?,
        QdeviceCmd::Add {
            host,
            algorithm,
            port,
            ca_cert,
            cluster_p12,
        } => {
            if let Some(a) = &algorithm {
                if a != "ffsplit" && a != "lms" {
                    bail!("--algorithm {a:?}: use ffsplit or lms");
                }
            }
            let ca_cert_pem = std::fs::read_to_string(&ca_cert)
                .with_context(|| format!("--ca-cert {}", ca_cert.display()))?;
            let p12 = std::fs::read(&cluster_p12)
                .with_context(|| format!("--cluster-p12 {}", cluster_p12.display()))?;
            if p12.first() != Some(&0x30) {
                bail!(
                    "--cluster-p12 {}: not a PKCS#12 file (give the qdevice-net-node.p12 that corosync-qdevice-net-certutil -M wrote)",
                    cluster_p12.display()
                );
            }
            use base64::Engine;
            let body = QdeviceAdd {
                host,
                port,
                algorithm,
                ca_cert_pem,
                cluster_p12_b64: base64::engine::general_purpose::STANDARD.encode(p12),
            };
            let a = c
                .call(Method::POST, &["cluster", "qdevice"], &[], Some(&body))
                .await?;
            let r: TaskRef = typed(a.clone())?;
            let node = task::node_of_upid(&r.upid)
                .ok_or_else(|| anyhow!("the answer's task id {:?} names no node", r.upid))?
                .to_string();
            return task_outcome(c, &node, a, mode).await;
        }
        QdeviceCmd::Remove => {
            let a = c
                .call(Method::DELETE, &["cluster", "qdevice"], &[], None::<&()>)
                .await?;
            let r: TaskRef = typed(a.clone())?;
            let node = task::node_of_upid(&r.upid)
                .ok_or_else(|| anyhow!("the answer's task id {:?} names no node", r.upid))?
                .to_string();
            return task_outcome(c, &node, a, mode).await;
        }
    }
    Ok(Outcome::Done)
}
