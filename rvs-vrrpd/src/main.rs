//! `rvs-vrrpd`: runs the VRRP instances of a TOML file (see docs/vrrp.md) until SIGTERM
//! or SIGINT, then resigns mastership and removes its virtual addresses. SIGHUP reads the
//! file again and applies it keeping every instance's state, as keepalived does.
//!
//! ```text
//! rvs-vrrpd --config /etc/rvs/vrrp.toml        # run
//! rvs-vrrpd --check-config /etc/rvs/vrrp.toml  # validate only (exit 0 = valid)
//! rvs-vrrpd --keepalived /etc/keepalived/keepalived.conf  # run its VRRP blocks
//! rvs-vrrpd --keepalived FILE --check-config FILE        # validate those only
//! ```
//!
//! With `--keepalived`, the `vrrp_instance`, `vrrp_script` and `vrrp_sync_group` blocks
//! (and the `vrrp_*` settings of `global_defs`) are mapped by
//! [`rvs_keepalived::vrrp::from_keepalived`]; every option rvs-vrrp does not carry out is
//! logged as a warning with its file and line. `virtual_server` blocks are left to rvsd.
//!
//! Logs go to stderr (`RUST_LOG` filters, default `info`); every state change is one
//! line `state change instance=NAME from=STATE to=STATE priority=N`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use rvs_keepalived::vrrp::from_keepalived;
use rvs_vrrp::VrrpConfig;
use rvs_vrrpd::{run_reloadable, status_channel};
use tokio::signal::unix::{SignalKind, signal};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "rvs-vrrpd",
    about = "VRRP (v2/v3) daemon interoperable with keepalived"
)]
struct Args {
    /// TOML configuration to run.
    #[arg(long, conflicts_with_all = ["check_config", "keepalived"])]
    config: Option<PathBuf>,
    /// keepalived.conf whose VRRP blocks to run (or validate, with `--check-config`
    /// naming the same file).
    #[arg(long, value_name = "FILE")]
    keepalived: Option<PathBuf>,
    /// Validate this TOML configuration and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn load(path: &PathBuf) -> Result<VrrpConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    VrrpConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))
}

/// Reads the VRRP blocks of a keepalived.conf, logging every located warning.
fn load_keepalived(path: &Path) -> Result<VrrpConfig> {
    let doc = rvs_keepalived::syntax::parse_file(path)?;
    let mut warnings = doc.warnings;
    let conf = rvs_keepalived::model::build(&doc.nodes, &mut warnings)?;
    // The reader's and the model's warnings name unsupported keywords in any block; they
    // are all shown, so nothing in the file is ignored silently.
    warnings.sort_by(|a, b| a.loc.cmp(&b.loc));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let (config, mapped) =
        from_keepalived(&conf).with_context(|| format!("in {}", path.display()))?;
    for w in &mapped {
        tracing::warn!("{w}");
    }
    if !conf.virtual_servers.is_empty() {
        tracing::info!(
            "{} virtual_server blocks in {} are not run by rvs-vrrpd (rvsd runs them)",
            conf.virtual_servers.len(),
            path.display()
        );
    }
    Ok(config)
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
        let config = match &args.keepalived {
            Some(k) if k == path => load_keepalived(path)?,
            Some(_) => anyhow::bail!("with --keepalived, --check-config must name the same file"),
            None => load(path)?,
        };
        println!(
            "{}: valid ({} instances, {} scripts, {} sync groups)",
            path.display(),
            config.instances.len(),
            config.scripts.len(),
            config.sync_groups.len()
        );
        return Ok(());
    }
    let read = {
        let args_config = args.config.clone();
        let args_keepalived = args.keepalived.clone();
        move || match (&args_config, &args_keepalived) {
            (Some(path), _) => load(path),
            (None, Some(path)) => load_keepalived(path),
            (None, None) => {
                anyhow::bail!("give --config FILE, --keepalived FILE or --check-config FILE")
            }
        }
    };
    let config = read()?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let (tx, mut rx) = status_channel();
    tokio::spawn(async move {
        if rx.changed().await.is_ok() {
            tracing::info!("rvs-vrrpd ready");
        }
        // Keep the receiver alive so the sender never sees a closed channel.
        while rx.changed().await.is_ok() {}
    });
    // SIGHUP: the file is read again and applied in place, states kept as keepalived
    // keeps them (a file that does not load leaves the running configuration).
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            match read() {
                Ok(config) => {
                    if reload_tx.send(config).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "reload refused; the running configuration stays")
                }
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    };
    run_reloadable(config, shutdown, Some(reload_rx), tx)
        .await
        .context("VRRP failed")?;
    Ok(())
}
