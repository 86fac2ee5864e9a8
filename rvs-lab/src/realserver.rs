//! Real servers prepared the way an operator would: by running `rvs-realserver` in their
//! namespace. The guard runs `rvs-realserver undo` when dropped (also on panic), because a
//! pinned decapsulation program and the state file outlive the namespace otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::netns::{Netns, output_at};

/// How long one rvs-realserver run may take.
const RUN_WAIT: Duration = Duration::from_secs(30);

/// A namespace prepared by `rvs-realserver prepare`; undone on drop. Drop it before the
/// namespace (declare it after the lab in a struct, or drop it explicitly).
#[derive(Debug)]
pub struct Prepared {
    binary: PathBuf,
    netns_path: PathBuf,
    netns_name: String,
    output: String,
}

/// Runs `binary ARGS` in `ns` with only the network namespace switched (bpffs stays
/// visible); returns whether it succeeded and what it printed (stdout and stderr).
pub fn run(binary: &Path, ns: &Netns, args: &[&str]) -> Result<(bool, String)> {
    let bin = binary.to_string_lossy();
    let mut argv = vec![bin.as_ref()];
    argv.extend_from_slice(args);
    let out = ns.output(&argv, RUN_WAIT)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

impl Prepared {
    /// Runs `binary prepare ARGS...` in `ns`; fails with its output unless it succeeds.
    pub fn prepare(binary: &Path, ns: &Netns, args: &[&str]) -> Result<Prepared> {
        let mut full = vec!["prepare"];
        full.extend_from_slice(args);
        let (ok, output) = run(binary, ns, &full)?;
        // From here on Drop undoes whatever the run recorded, even a partial preparation.
        let prepared = Prepared {
            binary: binary.to_owned(),
            netns_path: ns.path().to_owned(),
            netns_name: ns.name().to_owned(),
            output,
        };
        if !ok {
            bail!(
                "rvs-realserver prepare {} in {} failed:\n{}",
                args.join(" "),
                ns.name(),
                prepared.output
            );
        }
        Ok(prepared)
    }

    /// What the preparation printed.
    pub fn output(&self) -> &str {
        &self.output
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let bin = self.binary.to_string_lossy().into_owned();
        match output_at(
            &self.netns_path,
            &self.netns_name,
            &[&bin, "undo"],
            RUN_WAIT,
        ) {
            Ok(out) if out.status.success() => {}
            Ok(out) => tracing::warn!(
                netns = %self.netns_name,
                output = %String::from_utf8_lossy(&out.stdout),
                "rvs-realserver undo failed"
            ),
            Err(e) => {
                tracing::warn!(netns = %self.netns_name, error = %format!("{e:#}"), "rvs-realserver undo")
            }
        }
    }
}
