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
mod check;
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
    /// Run from an existing keepalived.conf instead: its virtual servers, real servers,
    /// health checks and VRRP instances.
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
    /// Validate a configuration file and exit: rvs's TOML when the name ends in .toml, a
    /// keepalived.conf otherwise, read as the daemon reads it. Exit 0 exactly when the file
    /// runs as under keepalived (keepalived --config-test would pass and rvs runs all of
    /// it); 5 otherwise, as keepalived. Every problem is printed with file and line.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// With --check-config: also print the table the file builds at start (before any
    /// health check result) in `ipvsadm -Ln` form.
    #[arg(long, requires = "check_config")]
    table: bool,
    /// Detach the balancer and unpin every map under the pin path, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Address of the Prometheus metrics listener (`GET /metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9595")]
    metrics: String,
    /// XDP attach mode: native (driver), generic (skb, any NIC, slower) or auto (native,
    /// falling back to generic with a warning). Default: the TOML file's `xdp_mode`;
    /// with --keepalived, auto.
    #[arg(long, value_enum)]
    xdp_mode: Option<daemon::XdpChoice>,
    /// Log format: `text` (default) or `json` (one object per line). The level is
    /// RUST_LOG's (default `info`; e.g. `RUST_LOG=rvsd=debug`).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// bpffs directory: wins over the file's `[daemon] pin_path` in every mode (and for
    /// --cleanup). One rvsd per pin path: a second one refuses to start.
    #[arg(long)]
    pin_path: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    if let Some(path) = args.check_config {
        let verdict = check::check(&path, args.table);
        print!("{}", verdict.output);
        std::process::exit(verdict.code);
    }
    if args.cleanup {
        let pin_dir = match (args.pin_path, &args.config) {
            (Some(p), _) => p,
            (None, Some(c)) => read_config(c)?.daemon.pin_path,
            (None, None) => rvs_config::Daemon::default().pin_path,
        };
        let cleaned = rvs_dataplane::cleanup(&pin_dir)
            .with_context(|| format!("cleaning up {}", pin_dir.display()));
        // The links are gone (or never were): the forwarding sysctls rvsd turned on go
        // back to what they were.
        for r in daemon::restore_forwarding(std::path::Path::new(daemon::LOCK_DIR), &pin_dir)? {
            println!("restored net.ipv4.conf.{r}");
        }
        cleaned?;
        daemon::PinLock::remove_if_free(std::path::Path::new(daemon::LOCK_DIR), &pin_dir);
        println!("detached and unpinned {}", pin_dir.display());
        return Ok(());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            if args.keepalived.is_some() && args.interfaces.is_empty() {
                anyhow::bail!(
                    "--keepalived needs --interface IFACE (repeat for several): the interfaces that receive the VIPs' traffic, which keepalived.conf does not name"
                );
            }
            let xdp = args.xdp_mode.or(args
                .keepalived
                .is_some()
                .then_some(daemon::XdpChoice::Auto));
            let source = match args.keepalived {
                Some(path) => Source::Keepalived {
                    path,
                    interfaces: args.interfaces,
                    pin_path: args.pin_path.clone(),
                },
                None => Source::Toml(args.config),
            };
            // A socket that cannot be bound is fatal at start (before any map is touched),
            // not a log line later.
            let listener = api::bind(&args.socket)?;
            let daemon = match Daemon::start(source, args.pin_path, xdp).await {
                Ok(d) => d,
                Err(e) => {
                    let _ = std::fs::remove_file(&args.socket);
                    return Err(e);
                }
            };
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
                if let Err(e) = api::serve(listener, &socket, tx).await {
                    tracing::error!(error = format!("{e:#}"), "API server stopped");
                }
            });
            daemon.run(rx).await
        })
}
