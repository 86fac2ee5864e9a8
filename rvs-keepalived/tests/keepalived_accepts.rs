//! Real keepalived (Debian's 2.2.7) must accept every file the corpus calls valid:
//! `keepalived --config-test -f FILE` exits 0 (it exits non-zero even for its warnings).
//! Runs inside a fresh network namespace that has the eth0/eth1 the VRRP file names.
//! Skipped, with a notice, without root or without the keepalived binary.

use std::path::{Path, PathBuf};

fn valid_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/valid");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    out.push(dir.join("includes/main.conf"));
    out.sort();
    out
}

fn keepalived() -> Option<PathBuf> {
    ["/usr/sbin/keepalived", "/usr/local/sbin/keepalived"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn keepalived_config_test_accepts_the_valid_corpus() {
    let Some(bin) = keepalived() else {
        rvs_lab::skip_or_fail(
            "keepalived_config_test_accepts_the_valid_corpus",
            "needs keepalived (apt-get install keepalived)",
        );
        return;
    };
    if !rvs_lab::root_or_skip("keepalived --config-test in a namespace") {
        return;
    }
    let ns = rvs_lab::Netns::new(&format!("{}-ka", rvs_lab::unique_prefix())).expect("netns");
    ns.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])
    .expect("veth");
    ns.exec(&["ip", "link", "set", "eth0", "up"])
        .expect("eth0 up");
    ns.exec(&["ip", "link", "set", "eth1", "up"])
        .expect("eth1 up");
    let bin = bin.to_string_lossy().into_owned();
    let mut failures = Vec::new();
    for file in valid_files() {
        let f = file.to_string_lossy().into_owned();
        if let Err(e) = ns.exec(&[&bin, "--config-test", "-f", &f]) {
            failures.push(format!("{f}: {e:#}"));
        }
    }
    assert!(
        failures.is_empty(),
        "keepalived rejects:\n{}",
        failures.join("\n")
    );
}
