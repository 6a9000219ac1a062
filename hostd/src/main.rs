//! `keel-hostd`: run the node daemon, or probe the accelerator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hostd::config::{AccelSetting, Config};
use hostd::hv::libvirt::Libvirt;
use hostd::{accel, api, tls, Node};
use tracing::info;

#[derive(Parser)]
#[command(
    name = "keel-hostd",
    version,
    about = "Keel node daemon: HTTPS API and VM host on libvirt/QEMU"
)]
struct Cli {
    /// Config file (TOML). Missing default file = defaults.
    #[arg(long, default_value = "/etc/keel/hostd.toml")]
    config: PathBuf,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long)]
    listen: Option<String>,
    #[arg(long)]
    libvirt_uri: Option<String>,
    #[arg(long, value_enum)]
    accel: Option<AccelSetting>,
    #[arg(long)]
    node: Option<String>,
    /// Directory of the built web UI (ui/dist), served at `/`.
    #[arg(long)]
    ui_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the API (default).
    Run,
    /// Decide KVM or TCG for this host and print why.
    ProbeAccel,
}

fn load(cli: &Cli) -> Result<Config> {
    let explicit = cli.config.as_path() != std::path::Path::new("/etc/keel/hostd.toml");
    let mut c = Config::load(&cli.config, explicit)?;
    if let Some(v) = &cli.state_dir {
        c.state_dir = v.clone();
    }
    if let Some(v) = &cli.listen {
        c.listen = v.clone();
    }
    if let Some(v) = &cli.libvirt_uri {
        c.libvirt_uri = v.clone();
    }
    if let Some(v) = cli.accel {
        c.accel = v;
    }
    if let Some(v) = &cli.node {
        c.node = v.clone();
    }
    if let Some(v) = &cli.ui_dir {
        c.ui_dir = Some(v.clone());
    }
    c.validate("command line")?;
    Ok(c)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // plain lines in the journal and log files (fail2ban reads them)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let cfg = load(&cli)?;
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let decision = accel::decide(cfg.accel, cfg.probe_kernel.as_deref(), &cfg.state_dir);
    if let Some(Cmd::ProbeAccel) = cli.cmd {
        println!("{} ({})", decision.accel_name(), decision.reason);
        return Ok(());
    }
    info!(accel = decision.accel_name(), reason = %decision.reason, "guests will use this accelerator");
    let hv = Libvirt::connect(&cfg.libvirt_uri).with_context(|| {
        format!(
            "connecting to libvirt at {} (is libvirtd running?)",
            cfg.libvirt_uri
        )
    })?;
    let names = vec![
        cfg.node.clone(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let id = tls::load_or_generate(
        &cfg.state_dir,
        cfg.tls_cert.as_deref(),
        cfg.tls_key.as_deref(),
        &names,
    )?;
    let addr: SocketAddr = cfg.listen.parse().context("listen address")?;
    let (node, report) = Node::open(cfg, Arc::new(hv), decision)?;
    // a cluster member serves its CA-signed certificate
    let mut id = id;
    if let Some((cert_pem, key_pem)) = node.cluster.node_identity() {
        let fingerprint = clusterd::ca::fingerprint_of_pem(&String::from_utf8_lossy(&cert_pem))
            .context("the cluster node certificate")?;
        std::fs::write(
            node.cfg.state_dir.join("hostd.fingerprint"),
            format!("{fingerprint}\n"),
        )?;
        id.cert_pem = cert_pem;
        id.key_pem = key_pem;
        id.fingerprint = fingerprint;
    }
    let local_token = hostd::cluster::write_local_token(&node)?;
    info!(path = %local_token.display(), "root-only local API token written");
    if let Some(pw) = report.generated_root_password {
        println!(
            "initial root password: {pw}  (stored 0600 in {})",
            node.cfg.state_dir.join("root-password").display()
        );
    }
    println!(
        "keel-hostd {} on node {}",
        env!("CARGO_PKG_VERSION"),
        node.cfg.node
    );
    println!(
        "API: https://{addr}/api/v1/  certificate SHA-256 fingerprint: {}",
        id.fingerprint
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // optional client certificates (members), verified against the cluster CA
        let tls_cfg = axum_server::tls_rustls::RustlsConfig::from_config(
            tls::server_config(
                &id.cert_pem,
                &id.key_pem,
                node.cluster.client_verifier.clone(),
            )
            .context("loading TLS certificate")?,
        );
        let handle = axum_server::Handle::new();
        let h2 = handle.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            info!("shutting down");
            h2.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        });
        let node = Arc::new(node);
        let _ = node.cluster.tls.set(tls_cfg.clone());
        let n = node.clone();
        tokio::task::spawn_blocking(move || hostd::cluster::boot(&n));
        hostd::backup::jobs::spawn_scheduler(node.clone());
        hostd::ha::spawn_reconciler(node.clone());
        hostd::metrics::spawn_sampler(node.clone());
        hostd::hostnet::apply::spawn_watchdog(node.clone());
        let idle = std::time::Duration::from_secs(node.cfg.client_idle_timeout_s.max(1));
        let app = api::router(node);
        let mut server = axum_server::bind(addr)
            .acceptor(tls::PeerCertAcceptor::new(tls_cfg))
            .handle(handle);
        // a client that does not finish its request headers in time is dropped
        server
            .http_builder()
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(idle);
        server
            // the peer address feeds login throttling and the fail2ban log lines
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .context("serving the API")
    })
}
