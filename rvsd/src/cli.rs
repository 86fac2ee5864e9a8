//! rvsd's command line. Its own file so that `xtask package` can build the manual page
//! and shell completions from the same definition (it includes this file).

use std::path::PathBuf;

use clap::Parser;

/// rvs daemon.
#[derive(Parser, Debug)]
#[command(
    name = "rvsd",
    version,
    about = "rvs daemon: keeps the XDP load balancer in line with rvs.toml or a keepalived.conf"
)]
pub struct Args {
    /// Configuration file (TOML). Without one, rvsd keeps the state it finds pinned (as
    /// IPVS keeps its table) and is driven through the API and rvsadm.
    #[arg(short, long, conflicts_with = "keepalived")]
    pub config: Option<PathBuf>,
    /// Run from an existing keepalived.conf instead: its virtual servers, real servers,
    /// health checks and VRRP instances.
    #[arg(short = 'k', long, value_name = "KEEPALIVED_CONF")]
    pub keepalived: Option<PathBuf>,
    /// With --keepalived: an interface to attach the balancer to (repeat for several).
    #[arg(
        short,
        long = "interface",
        value_name = "IFACE",
        requires = "keepalived"
    )]
    pub interfaces: Vec<String>,
    /// With --keepalived: a TOML file with a `[bgp]` section (keepalived.conf has no BGP):
    /// announce the VIPs through BIRD for ECMP scale-out (docs/ecmp.md).
    #[arg(long, value_name = "BGP_TOML", requires = "keepalived")]
    pub bgp: Option<PathBuf>,
    /// Path of the API socket.
    #[arg(long, default_value = rvs_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Validate a configuration file and exit: rvs's TOML when the name ends in .toml, a
    /// keepalived.conf otherwise, read as the daemon reads it. Exit 0 exactly when the file
    /// runs as under keepalived (keepalived --config-test would pass and rvs runs all of
    /// it); 5 otherwise, as keepalived. Every problem is printed with file and line.
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,
    /// With --check-config: also print the table the file builds at start (before any
    /// health check result) in `ipvsadm -Ln` form.
    #[arg(long, requires = "check_config")]
    pub table: bool,
    /// Detach the balancer and unpin every map under the pin path, then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Address of the Prometheus metrics listener (`GET /metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9595")]
    pub metrics: String,
    /// XDP attach mode: native (driver), generic (skb, any NIC, slower) or auto (native,
    /// falling back to generic with a warning). Default: the TOML file's `xdp_mode`;
    /// with --keepalived, auto.
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpChoice>,
    /// Log format: `text` (default) or `json` (one object per line). The level is
    /// RUST_LOG's (default `info`; e.g. `RUST_LOG=rvsd=debug`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Largest API request body in bytes (a `POST /v1/ops` batch, a `PUT /v1/config`); a
    /// larger one is refused with 413 naming the limit.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    pub api_max_body: usize,
    /// bpffs directory: wins over the file's `[daemon] pin_path` in every mode (and for
    /// --cleanup). One rvsd per pin path: a second one refuses to start.
    #[arg(long)]
    pub pin_path: Option<PathBuf>,
}

/// How the balancer is attached (`--xdp-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpChoice {
    /// Driver mode; an interface whose driver has none is an error.
    Native,
    /// skb mode: any interface, slower.
    Generic,
    /// Native, falling back to generic with a warning where the driver has no XDP.
    Auto,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}
