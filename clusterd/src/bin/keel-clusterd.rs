//! keel-clusterd: the replicated config store daemon of one node (see `clusterd::store` and
//! docs/config-store.md). Joins a corosync CPG group, keeps the store in SQLite and serves
//! local clients (hostd) on a Unix socket.

use anyhow::Context;
use clap::Parser;
use clusterd::store::server::{self, ServerOpts};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "keel-clusterd",
    about = "Keel's replicated config store on corosync CPG"
)]
struct Args {
    /// SQLite database (its directory is made 0700, the file 0600).
    #[arg(long, env = "KEEL_CLUSTERD_DB", default_value = server::DEFAULT_DB)]
    db: PathBuf,
    /// Unix socket for local clients (0600).
    #[arg(long, env = "KEEL_CLUSTERD_SOCKET", default_value = server::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// CPG group name.
    #[arg(long, default_value = server::DEFAULT_GROUP)]
    group: String,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let a = Args::parse();
    if a.group.is_empty() || a.group.len() > 127 {
        anyhow::bail!(
            "--group: {:?} must be 1 to 127 bytes (a corosync CPG group name)",
            a.group
        );
    }
    server::run(ServerOpts {
        db: a.db,
        socket: a.socket,
        group: a.group,
    })
    .context("keel-clusterd")
}
