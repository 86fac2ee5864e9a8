//! `rvs-vrrpd`: runs the VRRP instances of a TOML file (see docs/vrrp.md) until SIGTERM
//! or SIGINT, then resigns mastership and removes its virtual addresses.
//!
//! ```text
//! rvs-vrrpd --config /etc/rvs/vrrp.toml        # run
//! rvs-vrrpd --check-config /etc/rvs/vrrp.toml  # validate only (exit 0 = valid)
//! ```
//!
//! Logs go to stderr (`RUST_LOG` filters, default `info`); every state change is one
//! line `state change instance=NAME from=STATE to=STATE priority=N`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use rvs_vrrp::VrrpConfig;
use rvs_vrrp::io::{run, status_channel};
use tokio::signal::unix::{SignalKind, signal};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "rvs-vrrpd",
    about = "VRRP (v2/v3) daemon interoperable with keepalived"
)]
struct Args {
    /// TOML configuration to run.
    #[arg(long, conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate this TOML configuration and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn load(path: &PathBuf) -> Result<VrrpConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    VrrpConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        let config = load(path)?;
        println!(
            "{}: valid ({} instances, {} scripts, {} sync groups)",
            path.display(),
            config.instances.len(),
            config.scripts.len(),
            config.sync_groups.len()
        );
        return Ok(());
    }
    let path = args
        .config
        .context("give --config FILE (or --check-config FILE)")?;
    let config = load(&path)?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let (tx, mut rx) = status_channel();
    tokio::spawn(async move {
        if rx.changed().await.is_ok() {
            tracing::info!("rvs-vrrpd ready");
        }
        // Keep the receiver alive so the sender never sees a closed channel.
        while rx.changed().await.is_ok() {}
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    };
    run(config, shutdown, tx).await.context("VRRP failed")?;
    Ok(())
}
