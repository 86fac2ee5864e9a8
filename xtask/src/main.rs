//! `cargo xtask …`: the lab demo, the benchmarks and the Debian package.

mod bench;
mod compare;
mod control_bench;
mod demo;
mod ecmp_bench;
mod package;
mod sync_bench;

use clap::{Parser, Subcommand};

/// rvs developer tasks.
#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// How fast rvsd takes configuration changes (API batches, rvsadm -R, single ops).
    BenchControl(control_bench::ControlBenchArgs),
    /// The direct-routing lab with rvsd, a sample config and real traffic.
    Demo(demo::DemoArgs),
    /// rvs beside iptables/nftables DNAT, HAProxy and nginx: one lab, one generator, one run.
    BenchCompare(compare::CompareArgs),
    /// Per-packet cost of the XDP program beside a minimal XDP_TX program (BPF_PROG_TEST_RUN).
    Bench(bench::BenchArgs),
    /// Connections lost when ECMP re-hashes flows between directors, with and without second chance.
    BenchEcmp(ecmp_bench::EcmpBenchArgs),
    /// Connection sync throughput (encode, decode, install, end to end over UDP).
    BenchSync(sync_bench::SyncBenchArgs),
    /// The Debian package (target/debian/rvs_VERSION_ARCH.deb); --check tests it.
    Package(package::PackageArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(args),
        Command::BenchControl(args) => control_bench::run(args),
        Command::BenchCompare(args) => compare::run(args),
        Command::BenchSync(args) => sync_bench::run(args),
        Command::BenchEcmp(args) => ecmp_bench::run(args),
        Command::Package(args) => package::run_package(args),
    }
}
