//! A local user cannot take rvsd's API away: hundreds of idle connections to the metrics
//! port, more than rvsd has file descriptors, leave `GET /v1/status` answered and the
//! log free of an accept-error flood.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `GET path` over the API socket; the whole answer.
fn api_get(socket: &Path, path: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    // A failure bound, not a timing assertion: a starved API never answers.
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn idle_connection_flood_on_metrics_leaves_the_api_served() {
    if !rvs_lab::root_or_skip("idle_connection_flood_on_metrics_leaves_the_api_served") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let ns = rvs_lab::Netns::new(&format!("{prefix}-fl")).expect("netns");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{prefix}-fl"));
    let config = format!("[daemon]\npin_path = \"{}\"\n", pin.display());
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvsd"));
    let rvsd = rvs_lab::Rvsd::start(&ns, &bin, &config, &pin).expect("rvsd starts");
    let pid = rvsd
        .output()
        .split("pid=")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .map(str::to_owned)
        .expect("rvsd logs its pid");
    // Fewer descriptors than the flood has connections.
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=128:128"])
        .status()
        .expect("prlimit");
    assert!(limited.success());
    let metrics: SocketAddr = "127.0.0.1:9595".parse().expect("addr");
    let idle: Vec<TcpStream> = ns
        .run(|| {
            (0..400)
                .filter_map(|_| TcpStream::connect_timeout(&metrics, Duration::from_secs(2)).ok())
                .collect()
        })
        .expect("in the namespace");
    assert!(idle.len() >= 300, "only {} connections opened", idle.len());
    std::thread::sleep(Duration::from_millis(500));
    let status = api_get(rvsd.socket(), "/v1/status").expect("the API answers");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(status.contains("\"verdicts\""), "{status}");
    drop(idle);
    let log = rvsd.output();
    let accept_lines = log.matches("accept failed").count();
    assert!(accept_lines <= 5, "{accept_lines} accept-failure lines");
}
