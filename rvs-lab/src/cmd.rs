//! The lab's one way to run an external command: bounded in time, stderr kept for errors.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long any one lab command (`ip`, `ethtool`, ...) may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `argv` to completion and returns its stdout; the error names the command, its exit
/// status and its stderr.
pub(crate) fn run(argv: &[&str]) -> Result<String> {
    let line = argv.join(" ");
    let (program, args) = argv.split_first().context("empty command line")?;
    tracing::trace!(command = %line, "run");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    // The waiter thread owns the child; until it reaps it the pid cannot be reused, so a
    // kill by pid on timeout is safe.
    thread::spawn(move || {
        // The receiver may be gone after a timeout; nothing to do then.
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(result) => result.with_context(|| format!("waiting for `{line}`"))?,
        Err(_) => {
            let raw = i32::try_from(pid).context("pid out of range")?;
            if let Err(e) = kill(Pid::from_raw(raw), Signal::SIGKILL) {
                tracing::warn!(command = %line, error = %e, "cannot kill timed-out command");
            }
            // Give the waiter a moment to reap it; a stuck pipe is not our problem anymore.
            let _ = rx.recv_timeout(Duration::from_secs(2));
            bail!("`{line}` timed out after {COMMAND_TIMEOUT:?} and was killed");
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("`{line}` failed ({}): {}", output.status, stderr.trim());
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{line}` printed non-UTF-8 output"))
}
