//! Waiting for tasks: poll the task, print its new log lines, draw progress on stderr.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use keel_api::task::{TaskInfo, TaskLogLine, TaskRef, TaskState};
use serde_json::Value;

use crate::client::{typed, Client};
use crate::output;

const POLL: Duration = Duration::from_millis(300);
const LOG_PAGE: u32 = 1000;

/// What to do with a task a command started.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub json: bool,
    pub no_wait: bool,
}

/// The node a UPID was made on (`UPID:{node}:…`).
pub fn node_of_upid(upid: &str) -> Option<&str> {
    let mut it = upid.split(':');
    match (it.next(), it.next()) {
        (Some("UPID"), Some(node)) if !node.is_empty() => Some(node),
        _ => None,
    }
}

/// Handle the 202 answer `{"upid"}` of a mutating call: print it (`--no-wait`) or wait.
pub async fn started(client: &Client, node: &str, answer: Value, mode: Mode) -> Result<()> {
    let r: TaskRef = typed(answer.clone())?;
    if mode.no_wait {
        if mode.json {
            output::print_json(&answer);
        } else {
            println!("{}", r.upid);
        }
        return Ok(());
    }
    let (info, raw) = wait(client, node, &r.upid, mode.json).await?;
    conclude(&info, &raw, mode.json)
}

/// Report a finished task: its JSON (with `--json`), and an error if it failed.
pub fn conclude(info: &TaskInfo, raw: &Value, json: bool) -> Result<()> {
    if json {
        output::print_json(raw);
    }
    match info.state {
        // The log's last line already says TASK OK.
        TaskState::Ok => Ok(()),
        TaskState::Error => Err(anyhow!(
            "{} (task {} {} failed; log: keel task log {})",
            info.message
                .as_deref()
                .unwrap_or("task failed without a message"),
            info.kind,
            info.target,
            info.upid
        )),
        TaskState::Running => bail!("task {} is still running", info.upid),
    }
}

/// A spinner (or, once the task reports progress, a bar) on stderr when it is a terminal.
fn new_bar(upid: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    // `UPID:node:pid:seq:start:kind:target:user:` until the first poll says better.
    let f: Vec<&str> = upid.split(':').collect();
    pb.set_message(match (f.get(5), f.get(6)) {
        (Some(k), Some(t)) => format!("{k} {t}"),
        _ => "task".to_string(),
    });
    pb.set_style(
        ProgressStyle::with_template("{spinner:.cyan} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn update_bar(pb: &ProgressBar, info: &TaskInfo) {
    pb.set_message(format!("{} {}", info.kind, info.target));
    if info.state != TaskState::Running {
        return;
    }
    if let Some(p) = info.progress {
        pb.set_position((p.clamp(0.0, 1.0) * 1000.0) as u64);
        if pb.length().is_none() {
            pb.set_length(1000);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {msg} [{bar:30.cyan/blue}] {percent:>3}% ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
    }
}

/// Print log lines from `next` on; returns the next line number to ask for.
async fn print_new_log(
    client: &Client,
    node: &str,
    upid: &str,
    mut next: u64,
    pb: &ProgressBar,
    to_stderr: bool,
) -> Result<u64> {
    loop {
        let lines = fetch_log(client, node, upid, next).await?;
        if !lines.is_empty() {
            pb.suspend(|| {
                for l in &lines {
                    if to_stderr {
                        eprintln!("{}", l.line);
                    } else {
                        println!("{}", l.line);
                    }
                }
            });
        }
        if let Some(last) = lines.last() {
            next = next.max(last.n + 1);
        }
        if lines.len() < LOG_PAGE as usize {
            return Ok(next);
        }
    }
}

async fn fetch_log(
    client: &Client,
    node: &str,
    upid: &str,
    start: u64,
) -> Result<Vec<TaskLogLine>> {
    typed(
        client
            .get(
                &["nodes", node, "tasks", upid, "log"],
                &[
                    ("start", start.to_string()),
                    ("limit", LOG_PAGE.to_string()),
                ],
            )
            .await?,
    )
}

async fn fetch_task(client: &Client, node: &str, upid: &str) -> Result<(TaskInfo, Value)> {
    let raw = client.get(&["nodes", node, "tasks", upid], &[]).await?;
    Ok((typed(raw.clone())?, raw))
}

/// Poll until the task ends, printing its log as it grows (to stderr when stdout carries JSON).
pub async fn wait(
    client: &Client,
    node: &str,
    upid: &str,
    log_to_stderr: bool,
) -> Result<(TaskInfo, Value)> {
    let pb = new_bar(upid);
    let mut next = 0;
    loop {
        // Task first, then its log: every line written before the task finished is then seen.
        let (info, raw) = fetch_task(client, node, upid).await?;
        update_bar(&pb, &info);
        next = print_new_log(client, node, upid, next, &pb, log_to_stderr).await?;
        if info.state != TaskState::Running {
            pb.finish_and_clear();
            return Ok((info, raw));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `keel task log`: the whole log, or (`follow`) the log until the task ends (then returns
/// the task's final state).
pub async fn show_log(
    client: &Client,
    node: &str,
    upid: &str,
    follow: bool,
    json: bool,
) -> Result<Option<TaskInfo>> {
    if !follow {
        let mut all: Vec<Value> = Vec::new();
        let mut next = 0;
        loop {
            let raw = client
                .get(
                    &["nodes", node, "tasks", upid, "log"],
                    &[("start", next.to_string()), ("limit", LOG_PAGE.to_string())],
                )
                .await?;
            let lines: Vec<TaskLogLine> = typed(raw.clone())?;
            if let Some(last) = lines.last() {
                next = last.n + 1;
            }
            if json {
                if let Value::Array(a) = raw {
                    all.extend(a);
                }
            } else {
                for l in &lines {
                    println!("{}", l.line);
                }
            }
            if lines.len() < LOG_PAGE as usize {
                break;
            }
        }
        if json {
            output::print_json(&Value::Array(all));
        }
        return Ok(None);
    }
    let mut next = 0;
    loop {
        let (info, _) = fetch_task(client, node, upid).await?;
        loop {
            let lines = fetch_log(client, node, upid, next).await?;
            for l in &lines {
                if json {
                    println!("{}", serde_json::to_string(l)?);
                } else {
                    println!("{}", l.line);
                }
                next = next.max(l.n + 1);
            }
            if lines.len() < LOG_PAGE as usize {
                break;
            }
        }
        if info.state != TaskState::Running {
            return Ok(Some(info));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_from_upid() {
        assert_eq!(
            node_of_upid("UPID:n1:0000ABCD:00000001:6740A1B2:vmstart:100:root:"),
            Some("n1")
        );
        assert_eq!(node_of_upid("UPID::x"), None);
        assert_eq!(node_of_upid("garbage"), None);
    }
}
