//! `cleanup_stale` in a test binary of its own: the other lab tests run it concurrently
//! (once per process, from `DrLab::new`) and would race this test's deliberate leftovers.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use rvs_lab::{Netns, cleanup_stale, list_netns, root_or_skip, unique_prefix};

/// Runs `ip netns add NAME` behind the lab's back, as a killed run would have.
fn add_raw(name: &str) -> Result<()> {
    let status = Command::new("ip").args(["netns", "add", name]).status()?;
    ensure!(status.success(), "ip netns add {name} failed");
    Ok(())
}

#[test]
fn cleanup_stale_removes_only_dead_runs() -> Result<()> {
    if !root_or_skip("cleanup_stale_removes_only_dead_runs") {
        return Ok(());
    }
    // A pid that existed and is gone: a finished child's.
    let mut gone = Command::new("true").spawn().context("running true")?;
    gone.wait()?;
    let stale = format!("rvs{}x0-stale", gone.id());
    add_raw(&stale)?;
    // A leftover of an earlier process that had our pid.
    let reused = format!("rvs{}x999999-old", std::process::id());
    add_raw(&reused)?;
    // A live namespace of this run, which must survive.
    let live = Netns::new(&format!("{}-live", unique_prefix()))?;

    // A process left running inside the stale namespace, as after a SIGKILLed test.
    let mut orphan = Command::new("ip")
        .args(["netns", "exec", &stale, "sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .context("starting the orphan")?;
    let stale_ino = std::fs::metadata(format!("/run/netns/{stale}"))?.ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(format!("/proc/{}/ns/net", orphan.id()))?.ino() != stale_ino {
        ensure!(
            Instant::now() < deadline,
            "the orphan never entered {stale}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let deleted = cleanup_stale()?;
    ensure!(
        deleted >= 2,
        "cleanup_stale deleted {deleted}, expected at least 2"
    );
    let names = list_netns()?;
    ensure!(
        !names.contains(&stale),
        "stale namespace survived: {names:?}"
    );
    ensure!(
        !names.contains(&reused),
        "pid-reuse leftover survived: {names:?}"
    );
    ensure!(
        names.iter().any(|n| n == live.name()),
        "a live run's namespace was deleted"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while orphan.try_wait()?.is_none() {
        ensure!(
            Instant::now() < deadline,
            "the orphan in the stale namespace was not killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
