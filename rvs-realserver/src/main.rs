//! `rvs-realserver`: prepares this host as a real server (DR or TUN), shows what it did, and
//! undoes it. Each run plans against the host as it is, so a second `prepare` changes nothing.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rvs_config::TunnelType;
use rvs_realserver::plan::{self, Decap, Mode, Request};
use rvs_realserver::state::{self, State};
use rvs_realserver::system::{Host, read_sysctl};

#[derive(Parser)]
#[command(
    name = "rvs-realserver",
    version,
    about = "Prepare a Linux host as an LVS/rvs real server (direct routing or tunnel), idempotently, with undo"
)]
struct Cli {
    /// State file recording what was changed (default: /run/rvs/realserver-net<NETNS>.json).
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make the changes a mode needs (only those not already in place).
    Prepare {
        #[command(subcommand)]
        mode: PrepareMode,
        /// Print the plan without changing anything.
        #[arg(long, global = true)]
        dry_run: bool,
    },
    /// Restore everything earlier `prepare` runs changed, to the values it had.
    Undo,
    /// Show what `prepare` changed and whether it is still in place.
    Status,
}

#[derive(Subcommand)]
enum PrepareMode {
    /// Direct routing: VIPs on a non-ARPing interface, arp_ignore=1, arp_announce=2.
    Dr {
        /// A VIP this host serves (repeat for more).
        #[arg(long = "vip", required = true)]
        vips: Vec<Ipv4Addr>,
        /// Interface for the VIPs: lo, or a dummy (created when absent).
        #[arg(long, default_value = "lo")]
        interface: String,
    },
    /// Tunnel: the DR set-up plus a decapsulator and rp_filter off where packets arrive.
    Tun {
        /// A VIP this host serves (repeat for more).
        #[arg(long = "vip", required = true)]
        vips: Vec<Ipv4Addr>,
        /// Tunnel type the director uses (ipvsadm --tun-type).
        #[arg(long = "type", value_enum, default_value_t = TunType::Ipip)]
        kind: TunType,
        /// GUE's UDP port (ipvsadm --tun-port).
        #[arg(long)]
        port: Option<u16>,
        /// Interface the tunnelled packets arrive on (where rvs's program is attached).
        #[arg(long)]
        interface: Option<String>,
        /// Interface for the VIPs: lo, or a dummy (created when absent).
        #[arg(long, default_value = "lo")]
        vip_interface: String,
        /// Who unwraps the tunnel: the kernel's module if present (auto), or always one.
        #[arg(long, value_enum, default_value_t = DecapArg::Auto)]
        decap: DecapArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TunType {
    Ipip,
    Gue,
    Gre,
}

#[derive(Clone, Copy, ValueEnum)]
enum DecapArg {
    Auto,
    Kernel,
    Program,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rvs-realserver: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvs-realserver: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn request(mode: PrepareMode) -> Request {
    match mode {
        PrepareMode::Dr { vips, interface } => Request {
            mode: Mode::Dr,
            vips,
            vip_interface: interface,
            tunnel_interface: None,
            decap: Decap::Auto,
        },
        PrepareMode::Tun {
            vips,
            kind,
            port,
            interface,
            vip_interface,
            decap,
        } => Request {
            mode: Mode::Tun {
                kind: match kind {
                    TunType::Ipip => TunnelType::Ipip,
                    TunType::Gue => TunnelType::Gue,
                    TunType::Gre => TunnelType::Gre,
                },
                port,
            },
            vips,
            vip_interface,
            tunnel_interface: interface,
            decap: match decap {
                DecapArg::Auto => Decap::Auto,
                DecapArg::Kernel => Decap::Kernel,
                DecapArg::Program => Decap::Program,
            },
        },
    }
}

async fn run(cli: Cli) -> Result<()> {
    let path = match cli.state {
        Some(p) => p,
        None => state::default_path().context("finding this network namespace")?,
    };
    let host = Host::new()?;
    match cli.command {
        Cmd::Prepare { mode, dry_run } => {
            let req = request(mode);
            let seen = host.observe(&req).await?;
            let changes = plan::prepare(&req, &seen)?;
            if changes.is_empty() {
                println!("already prepared: nothing to change");
                return Ok(());
            }
            if dry_run {
                for c in &changes {
                    println!("would {c}");
                }
                return Ok(());
            }
            let mut st = State::load(&path)?;
            for c in changes {
                // Record each change as soon as it is made, so a failure half-way leaves a
                // state file that undoes exactly what was done.
                host.apply(&c)
                    .await
                    .with_context(|| format!("cannot {c}"))?;
                println!("{c}");
                st.changes.push(c);
                st.save(&path)?;
            }
            println!("recorded in {} (undo: rvs-realserver undo)", path.display());
            Ok(())
        }
        Cmd::Undo => {
            let mut st = State::load(&path)?;
            if st.changes.is_empty() {
                println!("nothing to undo ({} has no changes)", path.display());
                return Ok(());
            }
            // Reverts are idempotent: after a failure the state file is kept whole and a
            // second `undo` skips what is undone already.
            for r in plan::undo(&st.changes) {
                let done = host.revert(&r).await.with_context(|| {
                    format!(
                        "cannot {r}; nothing else was undone after it, {} still lists everything, run undo again once fixed",
                        path.display()
                    )
                })?;
                if done {
                    println!("{r}");
                } else {
                    println!("{r}: already undone");
                }
            }
            st.changes.clear();
            st.save(&path)?;
            Ok(())
        }
        Cmd::Status => {
            let st = State::load(&path)?;
            if st.changes.is_empty() {
                println!("not prepared by rvs-realserver ({})", path.display());
                return Ok(());
            }
            println!("prepared ({}):", path.display());
            for c in &st.changes {
                match c {
                    plan::Change::SetSysctl { key, to, .. } => {
                        let now = read_sysctl(key)?;
                        let mark = if &now == to { "" } else { "  [changed since]" };
                        println!("  {c}; now {now}{mark}");
                    }
                    _ => println!("  {c}"),
                }
            }
            Ok(())
        }
    }
}
