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
    /// health checks and VRRP instances (a VIP is balanced while this node is its MASTER).
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
    /// Path of the API socket.
    #[arg(long, default_value = rvs_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Validate a configuration file and exit (0 = valid): rvs's TOML when the name ends
    /// in .toml, a keepalived.conf otherwise (its warnings are printed).
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,
    /// Detach the balancer and unpin every map under the pin path, then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Address of the Prometheus metrics listener (`GET /metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9595")]
    pub metrics: String,
    /// bpffs directory (for --cleanup without a config file, and with --keepalived).
    #[arg(long)]
    pub pin_path: Option<PathBuf>,
}
