//! rvsd: owns the desired state, keeps the XDP dataplane in sync with it, serves the
//! management API.
//!
//! - start: load (or adopt) the pinned maps, apply the config file as a diff, attach the
//!   balancer to each configured interface, resolve real servers' neighbours;
//! - API (Unix socket, JSON over HTTP): atomic batches of ipvsadm-like ops, listings;
//! - SIGHUP: re-read the config file and apply it as a diff (unchanged services and real
//!   servers keep their connections and counters); a bad file changes nothing;
//! - with `[bgp]` (or `--bgp FILE` beside a keepalived.conf): announce the VIPs that have
//!   healthy real servers through BIRD; SIGTERM withdraws them, drains, then exits;
//! - SIGTERM/SIGINT (or SIGKILL): exit, leaving the programs attached and the maps pinned,
//!   so forwarding goes on; the next rvsd adopts them; `rvsd --cleanup` removes them.

mod api;
mod bgp;
mod check;
mod cli;
mod daemon;
mod metrics;
mod ops;
mod stats;
mod status;
mod sync;
mod systemd;
mod vip_routes;
mod web;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::mpsc;

use crate::{
    cli::{Args, LogFormat},
    daemon::{Daemon, Source, read_config},
};

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
        // The VIPs' unreachable routes of this pin path (in this namespace) go too.
        let routes = vip_routes::cleanup(&pin_dir).context("removing the VIPs' routes");
        for vip in routes.as_deref().unwrap_or_default() {
            println!("removed the unreachable route of VIP {vip}");
        }
        cleaned?;
        routes?;
        daemon::PinLock::remove_if_free(std::path::Path::new(daemon::LOCK_DIR), &pin_dir);
        println!("detached and unpinned {}", pin_dir.display());
        return Ok(());
    }
    // The main loop runs on this thread (block_on); the API, metrics and checker tasks on
    // two workers, so `GET /v1/status` is answered while the main loop is busy (a huge
    // batch holds it for seconds).
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
                    bgp: args.bgp,
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
            let ctx = api::ApiContext {
                calls: tx,
                status: daemon.status_feed(),
                max_body: args.api_max_body,
            };
            tokio::spawn(async move {
                if let Err(e) = api::serve(listener, &socket, ctx).await {
                    tracing::error!(error = format!("{e:#}"), "API server stopped");
                }
            });
            systemd::spawn(calls_for_systemd);
            let result = daemon.run(rx).await;
            systemd::stopping();
            result
        })
}
