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
mod cli;
mod daemon;
mod metrics;
mod ops;
mod stats;
mod status;
mod systemd;
mod web;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::mpsc;

use crate::{
    cli::Args,
    daemon::{Daemon, Source, read_config},
};

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
            let calls_for_systemd = tx.clone();
            if args.metrics != "off" {
                let addr: std::net::SocketAddr = args.metrics.parse().with_context(|| {
                    format!("--metrics {}: expected ADDRESS:PORT or off", args.metrics)
                })?;
                let calls = tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = web::serve(addr, calls).await {
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
            systemd::spawn(calls_for_systemd);
            let result = daemon.run(rx).await;
            systemd::stopping();
            result
        })
}
