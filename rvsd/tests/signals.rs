//! Signals and logs as keepalived's: SIGUSR1 writes the state to /tmp/rvsd.data and
//! SIGUSR2 the statistics to /tmp/rvsd.stats, and neither stops rvsd; a failure that
//! repeats (a real server's next hop that does not resolve) is logged once, not on every
//! API call; `--log-format json` writes one JSON object per line.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

fn api(socket: &Path, method: &str, path: &str) -> String {
    let mut s = UnixStream::connect(socket).expect("API socket");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: rvsd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("answer");
    out
}

fn wait_for_file(path: &Path, since: std::time::SystemTime) -> String {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(m) = std::fs::metadata(path)
            && m.modified().is_ok_and(|t| t >= since)
        {
            return std::fs::read_to_string(path).expect("read dump");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} was not written", path.display());
}

#[test]
fn usr1_and_usr2_write_state_and_stats_and_rvsd_keeps_running() {
    if !rvs_lab::root_or_skip("usr1_and_usr2_write_state_and_stats_and_rvsd_keeps_running") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let ns = rvs_lab::Netns::new(&format!("{prefix}-sig")).expect("netns");
    let pin = format!("/sys/fs/bpf/{prefix}-sig");
    let dir = std::env::temp_dir().join(format!("{prefix}-sig"));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("rvs.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\npin_path = \"{pin}\"\n\n[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10\"\nport = 80\nscheduler = \"rr\"\n\n[[service.real]]\naddress = \"198.18.2.11\"\n"
        ),
    )
    .expect("config");
    let socket = dir.join("rvsd.sock");
    let bin = env!("CARGO_BIN_EXE_rvsd");
    let (c, s) = (config.display().to_string(), socket.display().to_string());
    let mut rvsd = ns
        .spawn(&[
            bin,
            "--config",
            &c,
            "--socket",
            &s,
            "--metrics",
            "off",
            "--log-format",
            "json",
        ])
        .expect("rvsd");
    rvsd.wait_for_output("rvsd ready", 1, Duration::from_secs(20))
        .expect("ready");

    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    rvsd.signal(Signal::SIGUSR1).expect("USR1");
    let data = wait_for_file(Path::new("/tmp/rvsd.data"), since);
    let v: serde_json::Value = serde_json::from_str(&data).expect("JSON state");
    assert_eq!(
        v["config"]["service"][0]["address"], "198.18.0.10",
        "{data}"
    );
    assert!(v["status"]["verdicts"].is_array(), "{data}");
    rvsd.signal(Signal::SIGUSR2).expect("USR2");
    let stats = wait_for_file(Path::new("/tmp/rvsd.stats"), since);
    assert!(stats.contains("rvs_"), "{stats}");

    // The real server has no route here: resolving fails on every reload, logged once.
    for _ in 0..3 {
        let answer = api(&socket, "POST", "/v1/reload");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let status = api(&socket, "GET", "/v1/status");
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "rvsd survived USR1 and USR2"
    );
    assert!(rvsd.is_running());
    let log = rvsd.output();
    let repeats = log.matches("cannot resolve real server's next hop").count();
    let _ = rvsd.stop();
    let _ = std::process::Command::new(bin)
        .args(["--cleanup", "--pin-path", &pin])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(repeats, 1, "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every log line is JSON:\n{log}"
    );
}
