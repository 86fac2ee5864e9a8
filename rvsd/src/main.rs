//! rvsd: loads the configuration, attaches the XDP balancer, keeps its maps in sync.
//!
//! - start: validate the config, load (or adopt) the pinned maps, apply the config, attach
//!   the balancer to each configured interface, resolve real servers' neighbours;
//! - SIGHUP: re-read the config and apply it as a diff (unchanged services and real
//!   servers keep their connections and counters); a bad file changes nothing;
//! - SIGTERM/SIGINT: exit, leaving the programs attached and the maps pinned, so
//!   forwarding goes on (as IPVS rules outlive ipvsadm); `rvsd --cleanup` removes them.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Parser;
use rvs_config::Config;
use rvs_dataplane::{Dataplane, neigh::NeighbourResolver};
use tokio::signal::unix::{SignalKind, signal};

/// How often real servers' neighbour entries are refreshed.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);
/// How often idle connection entries are freed.
const CONN_EXPIRY: Duration = Duration::from_secs(10);

/// rvs daemon.
#[derive(Parser, Debug)]
#[command(name = "rvsd", version, about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, default_value = "/etc/rvs/rvs.toml")]
    config: PathBuf,
    /// Validate the configuration file and exit (0 = valid).
    #[arg(long)]
    check_config: bool,
    /// Detach the balancer and unpin every map under the pin path, then exit.
    #[arg(long)]
    cleanup: bool,
    /// bpffs directory for --cleanup when no config file is at hand.
    #[arg(long)]
    pin_path: Option<PathBuf>,
}

fn read_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    Config::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.check_config {
        let config = read_config(&args.config)?;
        println!(
            "{}: valid ({} services, {} real servers)",
            args.config.display(),
            config.services.len(),
            config.services.iter().map(|s| s.reals.len()).sum::<usize>()
        );
        return Ok(());
    }
    if args.cleanup {
        let pin_dir = match args.pin_path {
            Some(p) => p,
            None => read_config(&args.config)?.daemon.pin_path,
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
        .block_on(run(args.config))
}

async fn resolve_neighbours(resolver: &NeighbourResolver, config: &Config) {
    let mut addrs: Vec<_> = config
        .services
        .iter()
        .flat_map(|s| s.reals.iter().map(|r| r.address))
        .collect();
    addrs.sort();
    addrs.dedup();
    for addr in addrs {
        if let Err(e) = resolver.resolve(addr).await {
            tracing::warn!(real = %addr, error = %e, "cannot resolve real server's next hop");
        }
    }
}

async fn run(config_path: PathBuf) -> Result<()> {
    let mut config = read_config(&config_path)?;
    rvs_dataplane::ensure_bpffs()?;
    let mut dp = Dataplane::load(&config.daemon.pin_path, config.limits)?;
    let resolver = NeighbourResolver::new()?;
    let plan = dp.apply(&config)?;
    tracing::info!(
        services = config.services.len(),
        tables = plan.tables.len(),
        "config applied"
    );
    resolve_neighbours(&resolver, &config).await;
    for iface in &config.daemon.interfaces {
        dp.attach(iface, config.daemon.xdp_mode)?;
        tracing::info!(interface = %iface, mode = ?config.daemon.xdp_mode, "balancer attached");
    }
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut neigh_tick = tokio::time::interval(NEIGHBOUR_REFRESH);
    let mut expiry_tick = tokio::time::interval(CONN_EXPIRY);
    tracing::info!(pid = std::process::id(), "rvsd ready");
    loop {
        tokio::select! {
            _ = hup.recv() => {
                match read_config(&config_path) {
                    Err(e) => tracing::error!(error = format!("{e:#}"), "reload refused; state unchanged"),
                    Ok(new) if new.limits != config.limits || new.daemon != config.daemon => {
                        tracing::error!("reload refused: [daemon] and [limits] only change with a restart; state unchanged");
                    }
                    Ok(new) => match dp.apply(&new) {
                        Ok(plan) => {
                            config = new;
                            tracing::info!(
                                services = config.services.len(),
                                upserted = plan.upsert_services.len(),
                                deleted = plan.delete_services.len(),
                                "config reloaded"
                            );
                            resolve_neighbours(&resolver, &config).await;
                        }
                        Err(e) => tracing::error!(error = %e, "reload refused; state unchanged"),
                    },
                }
            }
            _ = neigh_tick.tick() => resolve_neighbours(&resolver, &config).await,
            _ = expiry_tick.tick() => match dp.expire_conns() {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "idle connections freed"),
                Err(e) => tracing::warn!(error = %e, "connection expiry failed"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(
        pin_path = %config.daemon.pin_path.display(),
        "rvsd exiting; the balancer stays attached (rvsd --cleanup removes it)"
    );
    Ok(())
}
