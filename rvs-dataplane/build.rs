//! Builds the eBPF object (crate rvs-ebpf) for bpfel-unknown-none and leaves it in OUT_DIR,
//! where the loader embeds it. Stable rustc builds `core` for the BPF target when
//! RUSTC_BOOTSTRAP=1 (set only for this inner build); bpf-linker does the final link.
//! aya-build's helper insists on a nightly toolchain or a global RUSTC_BOOTSTRAP, hence our own.

use std::{env, path::PathBuf, process::Command};

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .context("rvs-dataplane has no parent directory")?
        .to_path_buf();
    for dir in [
        "rvs-ebpf/src",
        "rvs-ebpf/Cargo.toml",
        "rvs-common/src",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let target_dir = out_dir.join("ebpf-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--package",
            "rvs-ebpf",
            "--bin",
            "rvs-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        // BPF ISA v3 gives 32-bit jumps and atomic fetch-and-add (kernel >= 5.12).
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-Cdebuginfo=2", "-Clink-arg=--btf", "-Ctarget-cpu=v3"].join("\x1f"),
        );
    // The outer build's compiler settings must not leak into the BPF build.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(key);
    }
    let output = cmd
        .output()
        .context("running cargo for the eBPF build (is the toolchain installed? see README)")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
        bail!(
            "building rvs-ebpf failed (needs rust-src and bpf-linker: run `cargo xtask setup`):\n{stderr}"
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/rvs-ebpf");
    std::fs::copy(&object, out_dir.join("rvs-ebpf.o"))
        .with_context(|| format!("copying {}", object.display()))?;
    Ok(())
}
