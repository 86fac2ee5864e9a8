//! A root-only test run without root fails unless `RVS_SKIP_ROOT_TESTS=1` says to skip
//! it: the test binary runs itself as user `nobody` and reads the child's verdict.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// The switch (spelt out, as operators type it).
const SKIP: &str = "RVS_SKIP_ROOT_TESTS";

/// The probe the parent runs as `nobody`: a root-only test as every lab test starts.
#[test]
#[ignore = "run by root_only_tests_fail_unless_skipped, as another user"]
fn probe_root_only_test() {
    if !rvs_lab::root_or_skip("probe") {
        return;
    }
    panic!("the probe ran as root: the parent should have dropped to nobody");
}

/// Runs the probe as `nobody` (uid/gid 65534) with `RVS_SKIP_ROOT_TESTS` set or not.
fn probe(skip: Option<&str>) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        "probe_root_only_test",
        "--nocapture",
    ])
    .env_remove(SKIP)
    .uid(65534)
    .gid(65534);
    if let Some(v) = skip {
        cmd.env(SKIP, v);
    }
    cmd.output().expect("running the probe as nobody")
}

#[test]
fn root_only_tests_fail_unless_skipped() {
    if !nix::unistd::geteuid().is_root() {
        // Cannot switch users: the parent itself is the non-root case.
        assert!(
            std::env::var(SKIP).is_ok_and(|v| v == "1"),
            "not root and {} unset: the root-only tests of this run fail",
            SKIP
        );
        return;
    }
    let failed = probe(None);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(
        !failed.status.success(),
        "a root-only test passed without root:\n{stdout}{stderr}"
    );
    assert!(
        format!("{stdout}{stderr}").contains("RVS_SKIP_ROOT_TESTS=1"),
        "the failure names the switch:\n{stdout}{stderr}"
    );
    let skipped = probe(Some("1"));
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&skipped.stdout),
        String::from_utf8_lossy(&skipped.stderr)
    );
    assert!(skipped.status.success(), "skipped on request:\n{out}");
    assert!(
        out.contains("SKIPPED probe"),
        "the skip is announced:\n{out}"
    );
    let other = probe(Some("0"));
    assert!(!other.status.success(), "only 1 skips");
}
