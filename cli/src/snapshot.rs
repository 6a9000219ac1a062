//! `keel vm snapshot create|list|rollback|delete` and `keel vm resize`.

use anyhow::{anyhow, Result};
use clap::Subcommand;
use keel_api::snapshot::{DiskResize, SnapshotCreate, SnapshotInfo};
use reqwest::Method;

use crate::client::{typed, Client};
use crate::task::Mode;
use crate::{output, task_outcome, Outcome};

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Take a snapshot (every disk must be qcow2); a running VM needs --memory
    Create {
        vmid: u32,
        /// Starts with a letter; letters, digits, '-', '_'
        name: String,
        /// Free text shown in the list
        #[arg(long)]
        description: Option<String>,
        /// Include the running guest's memory (a rollback resumes it where it was)
        #[arg(long)]
        memory: bool,
    },
    /// The VM's snapshots as a tree
    #[command(visible_alias = "ls")]
    List { vmid: u32 },
    /// Roll back: a stopped VM to any snapshot, a running one only to a snapshot with memory
    Rollback { vmid: u32, name: String },
    /// Delete a snapshot (its children move to its parent)
    #[command(visible_alias = "rm")]
    Delete { vmid: u32, name: String },
}

pub async fn snapshot(c: &Client, node: &str, cmd: SnapshotCmd, mode: Mode) -> Result<Outcome> {
    let call = |method: Method, vmid: u32, rest: Vec<String>, body: Option<serde_json::Value>| async move {
        let id = vmid.to_string();
        let mut segs = vec!["nodes", node, "vms", id.as_str(), "snapshots"];
        segs.extend(rest.iter().map(String::as_str));
        c.call(method, &segs, &[], body.as_ref()).await
    };
    let a = match cmd {
        SnapshotCmd::Create {
            vmid,
            name,
            description,
            memory,
        } => {
            let req = SnapshotCreate {
                name,
                description,
                memory,
            };
            // the API's own rules, before sending
            req.validate()
                .map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
            call(Method::POST, vmid, vec![], Some(serde_json::to_value(req)?)).await?
        }
        SnapshotCmd::List { vmid } => {
            let v = call(Method::GET, vmid, vec![], None).await?;
            if mode.json {
                output::print_json(&v);
            } else {
                let list: Vec<SnapshotInfo> = typed(v)?;
                print!("{}", tree_table(&list));
            }
            return Ok(Outcome::Done);
        }
        SnapshotCmd::Rollback { vmid, name } => {
            call(Method::POST, vmid, vec![name, "rollback".into()], None).await?
        }
        SnapshotCmd::Delete { vmid, name } => call(Method::DELETE, vmid, vec![name], None).await?,
    };
    task_outcome(c, node, a, mode).await
}

pub async fn resize(
    c: &Client,
    node: &str,
    vmid: u32,
    disk: &str,
    size: &str,
    mode: Mode,
) -> Result<Outcome> {
    let size_mib = crate::spec::parse_size_mib(size).map_err(|e| anyhow!("SIZE: {e}"))?;
    let req = DiskResize { size_mib };
    req.validate()
        .map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
    let a = c
        .call(
            Method::POST,
            &[
                "nodes",
                node,
                "vms",
                &vmid.to_string(),
                "disks",
                disk,
                "resize",
            ],
            &[],
            Some(&req),
        )
        .await?;
    task_outcome(c, node, a, mode).await
}

/// The tree indented by depth; `*` marks the current snapshot.
pub fn tree_table(list: &[SnapshotInfo]) -> String {
    if list.is_empty() {
        return "no snapshots\n".into();
    }
    let depth = |s: &SnapshotInfo| -> usize {
        let mut d = 0;
        let mut p = s.parent.clone();
        while let Some(name) = p {
            d += 1;
            p = list
                .iter()
                .find(|x| x.name == name)
                .and_then(|x| x.parent.clone());
            if d > list.len() {
                break;
            }
        }
        d
    };
    let mut out = format!(
        "{:<32} {:<20} {:<20} {:<6} DESCRIPTION\n",
        "NAME", "CREATED", "VM STATE", "MEMORY"
    );
    for s in list {
        let name = format!(
            "{}{}{}",
            "  ".repeat(depth(s)),
            s.name,
            if s.current { " *" } else { "" }
        );
        out.push_str(&format!(
            "{:<32} {:<20} {:<20} {:<6} {}\n",
            name,
            keel_api::time::utc(s.created, ' '),
            s.vm_state,
            if s.has_memory { "yes" } else { "no" },
            s.description.as_deref().unwrap_or("").replace('\n', " ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, parent: Option<&str>, current: bool) -> SnapshotInfo {
        SnapshotInfo {
            name: name.into(),
            description: None,
            parent: parent.map(str::to_string),
            children: vec![],
            created: 0,
            vm_state: "stopped".into(),
            has_memory: false,
            current,
        }
    }

    #[test]
    fn tree_is_indented_and_marks_current() {
        let t = tree_table(&[
            s("A", None, false),
            s("B", Some("A"), false),
            s("C", Some("B"), true),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].starts_with("A "), "{t}");
        assert!(lines[2].starts_with("  B "), "{t}");
        assert!(lines[3].starts_with("    C *"), "{t}");
        assert_eq!(tree_table(&[]), "no snapshots\n");
    }
}
