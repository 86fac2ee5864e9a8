//! rvsd: owns the desired state, keeps the XDP dataplane in sync with it, serves the
//! management API.
//!
//! - start: load (or adopt) the pinned maps, apply the config file as a diff, attach the
//!   balancer to each configured interface, resolve real servers' neighbours;
//! - API (Unix socket, JSON over HTTP): atomic batches of ipvsadm-like ops, listings;
//! - SIGHUP: re-read the config file and apply it as a diff (unchanged services and real
//!   servers keep their connections and counters); a bad file changes nothing;
//! - SIGTERM/SIGINT (or SIGKILL): exit, leaving the programs attached and the maps pinned,
//!   so forwarding goes on; the next rvsd adopts them; `rvsd --cleanup` removes them.

mod api;
mod daemon;
mod metrics;
mod ops;
mod stats;
mod sync;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::mpsc;

use crate::daemon::{Daemon, Source, read_config};

/// rvs daemon.
#[derive(Parser, Debug)]
#[command(name = "rvsd", version, about)]
struct Args {
    /// Configuration file (TOML). Without one, rvsd keeps the state it finds pinned (as
    /// IPVS keeps its table) and is driven through the API and rvsadm.
    #[arg(short, long, conflicts_with = "keepalived")]
    config: Option<PathBuf>,
    /// Run from an existing keepalived.conf instead: its virtual servers, real servers and
    /// health checks (its VRRP blocks are reported, not run, by rvsd).
    #[arg(short = 'k', long, value_name = "KEEPALIVED_CONF")]
    keepalived: Option<PathBuf>,
    /// With --keepalived: an interface to attach the balancer to (repeat for several).
    #[arg(
        short,
        long = "interface",
        value_name = "IFACE",
        requires = "keepalived"
    )]
    interfaces: Vec<String>,
    /// Path of the API socket.
    #[arg(long, default_value = rvs_api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Validate a configuration file and exit (0 = valid): rvs's TOML when the name ends
    /// in .toml, a keepalived.conf otherwise (its warnings are printed).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Detach the balancer and unpin every map under the pin path, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Address of the Prometheus metrics listener (`GET /metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9595")]
    metrics: String,
    /// bpffs directory (for --cleanup without a config file, and with --keepalived).
    #[arg(long)]
    pin_path: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if let Some(path) = args.check_config {
        let config = if path.extension().is_some_and(|e| e == "toml") {
            read_config(&path)?
        } else {
            let (config, _, warnings) =
                rvs_keepalived::check_file(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            for w in &warnings {
                println!("{w}");
            }
            config
        };
        println!(
            "{}: valid ({} services, {} real servers)",
            path.display(),
            config.services.len(),
            config.services.iter().map(|s| s.reals.len()).sum::<usize>()
        );
        return Ok(());
    }
    if args.cleanup {
        let pin_dir = match (args.pin_path, &args.config) {
            (Some(p), _) => p,
            (None, Some(c)) => read_config(c)?.daemon.pin_path,
            (None, None) => rvs_config::Daemon::default().pin_path,
        };
        rvs_dataplane::cleanup(&pin_dir)
            .with_context(|| format!("cleaning up {}", pin_dir.display()))?;
        println!("detached and unpinned {}", pin_dir.display());
        return Ok(());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            let source = match args.keepalived {
                Some(path) => Source::Keepalived {
                    path,
                    interfaces: args.interfaces,
                    pin_path: args.pin_path,
                },
                None => Source::Toml(args.config),
            };
            let daemon = Daemon::start(source).await?;
            let (tx, rx) = mpsc::channel(64);
            if args.metrics != "off" {
                let addr: std::net::SocketAddr = args.metrics.parse().with_context(|| {
                    format!("--metrics {}: expected ADDRESS:PORT or off", args.metrics)
                })?;
                let calls = tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = api::serve_metrics(addr, calls).await {
                        tracing::error!(error = format!("{e:#}"), "metrics listener stopped");
                    }
                });
            }
            let socket = args.socket;
            tokio::spawn(async move {
                if let Err(e) = api::serve(socket, tx).await {
                    tracing::error!(error = format!("{e:#}"), "API server stopped");
                }
            });
            daemon.run(rx).await
        })
}
