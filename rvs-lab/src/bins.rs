//! The workspace's other binaries for a test: a test gets `CARGO_BIN_EXE_*` only for its own
//! package, so a lab test that also needs rvsadm or rvs-realserver builds them into the same
//! target directory (a no-op when `cargo test` already did).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// The binary of `package` next to `anchor` (a binary of this build, e.g.
/// `env!("CARGO_BIN_EXE_rvsd")`), built with `cargo` (`env!("CARGO")`) into the same target
/// directory and profile first.
pub fn workspace_binary(cargo: &str, anchor: &Path, package: &str) -> Result<PathBuf> {
    let dir = anchor.parent().context("binary directory")?;
    let target = dir.parent().context("target directory")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace directory")?;
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", package, "--target-dir"])
        .arg(target)
        .current_dir(workspace);
    if dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .with_context(|| format!("running cargo build -p {package}"))?;
    ensure!(status.success(), "cargo build -p {package} failed");
    Ok(dir.join(package))
}
