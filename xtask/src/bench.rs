//! Benchmark placeholder, filled in by the bench work.
use clap::Args;

/// Options of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {}

/// Runs the benchmark.
pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
