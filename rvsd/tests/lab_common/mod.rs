//! What the NAT and TUN lab tests share: connection shares, rvsadm against the lab's rvsd,
//! XDP_PASS programs on the veth ends that receive transmitted frames, and the listings
//! recorded from keepalived + IPVS in the IPVS VM.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rvs_dataplane::PassProgram;
use rvs_lab::{Netns, run_many};

/// The rvsd binary of this test build.
pub fn rvsd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rvsd"))
}

/// The rvsadm binary, built next to rvsd.
pub fn rvsadm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        rvs_lab::bins::workspace_binary(env!("CARGO"), rvsd_bin(), "rvsadm").expect("rvsadm builds")
    })
}

/// The rvs-realserver binary, built next to rvsd.
pub fn realserver_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        rvs_lab::bins::workspace_binary(env!("CARGO"), rvsd_bin(), "rvs-realserver")
            .expect("rvs-realserver builds")
    })
}

/// Runs `rvsadm ARGS` against rvsd's socket; panics unless it succeeds; returns stdout.
pub fn rvsadm(socket: &Path, args: &[&str]) -> String {
    let out = Command::new(rvsadm_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("running rvsadm");
    assert!(
        out.status.success(),
        "rvsadm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A listing with the connection table size of its first line blanked: IPVS prints its hash
/// table's 4096, rvsd its connection map's capacity (docs/rvsadm.md, "Differences").
pub fn without_table_size(listing: &str) -> String {
    match listing.split_once('\n') {
        Some((first, rest)) if first.starts_with("IP Virtual Server version 1.2.1 (size=") => {
            format!("IP Virtual Server version 1.2.1 (size=…)\n{rest}")
        }
        _ => listing.to_string(),
    }
}

/// Waits (at most `timeout`) until `rvsadm ARGS` prints `want` (but for the table size, see
/// [`without_table_size`]); panics with the last listing otherwise.
pub fn wait_listing(socket: &Path, args: &[&str], want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let want = without_table_size(want);
    loop {
        let got = without_table_size(&rvsadm(socket, args));
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            panic!("rvsadm {args:?} after {timeout:?}:\n{got}\nexpected:\n{want}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// XDP_PASS programs on `ports`, so frames the LB transmits into their veths arrive.
pub fn pass_programs(ports: &[(&Netns, &str)]) -> Vec<PassProgram> {
    ports
        .iter()
        .map(|(ns, port)| {
            ns.run(|| PassProgram::attach(port))
                .expect("namespace")
                .unwrap_or_else(|e| panic!("XDP pass program on {port}: {e:#}"))
        })
        .collect()
}

/// Opens `n` connections (one request each) from `client` to `vip` and counts answers per
/// real server; every connection must succeed.
pub fn shares(client: &Netns, vip: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (i, r) in run_many(client, vip, n, 8).into_iter().enumerate() {
        match r {
            Ok(name) => *counts.entry(name).or_insert(0) += 1,
            Err(e) => panic!("connection {i} of {n} to {vip} failed: {e:#}"),
        }
    }
    counts
}

/// Asserts rr shares: every one of `names` got `each` ± 2 and nobody else got any.
pub fn assert_rr(counts: &BTreeMap<String, usize>, names: &[&str], each: usize) {
    assert_eq!(counts.len(), names.len(), "{counts:?}");
    for name in names {
        let n = counts.get(*name).copied().unwrap_or(0);
        assert!(
            n.abs_diff(each) <= 2,
            "rr share of {name}: {n} ({counts:?})"
        );
    }
}

/// A listing the real keepalived 2.2.7 + kernel IPVS printed for the same keepalived.conf
/// and the same live servers (rvsd/tests/fixtures/ipvs-vm/nat_tun.out, recorded with
/// nat_tun.sh): the `ipvsadm ARGS` output that follows `### run RUN`.
pub fn recorded_listing(run: &str, args: &str) -> String {
    let text = include_str!("../fixtures/ipvs-vm/nat_tun.out");
    let start = text
        .find(&format!("### run {run}\n"))
        .unwrap_or_else(|| panic!("no run {run} in the fixture"));
    let rest = &text[start..];
    let cmd = format!("$ ipvsadm {args}\n");
    let from = rest
        .find(&cmd)
        .unwrap_or_else(|| panic!("no {cmd} in run {run}"))
        + cmd.len();
    let to = rest[from..].find("exit=").expect("exit line") + from;
    rest[from..to].to_string()
}
