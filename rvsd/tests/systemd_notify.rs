//! rvsd speaks systemd's notify protocol as `Type=notify` + `WatchdogSec=` units expect
//! (root): started with `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` set, as systemd
//! sets them, it sends READY=1 once it serves (its API socket answers by then) and
//! WATCHDOG=1 over and over; on SIGTERM it sends STOPPING=1. rvsd runs in a throwaway namespace with its own
//! pin path and socket and no interface, so it touches nothing else.

use std::{
    os::unix::net::{UnixDatagram, UnixStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rvs_lab::Netns;

/// Reads datagrams until one holds `line` or the deadline passes; returns everything read.
fn wait_for(sock: &UnixDatagram, line: &str, within: Duration) -> (bool, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.lines().any(|l| l == line);
            seen.push(msg);
            if hit {
                return (true, seen);
            }
        }
    }
    (false, seen)
}

#[test]
fn ready_watchdog_and_stopping_reach_systemd() {
    if !rvs_lab::root_or_skip("sd_notify test") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let ns = Netns::new(&format!("{prefix}-sd")).expect("namespace");
    let dir = std::env::temp_dir().join(format!("{prefix}-sd"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{prefix}-sd"));
    let config = dir.join("rvs.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ninterfaces = []\npin_path = \"{}\"\n",
            pin.display()
        ),
    )
    .expect("config");
    let api = dir.join("rvsd.sock");
    let rvsd = env!("CARGO_BIN_EXE_rvsd");
    // Spawned from a thread inside the namespace, so rvsd runs there.
    let mut child = ns
        .run(|| {
            // systemd sets WATCHDOG_PID to the main pid: the shell's, kept by exec.
            Command::new("sh")
                .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
                .arg(rvsd)
                .arg("--config")
                .arg(&config)
                .arg("--socket")
                .arg(&api)
                .args(["--metrics", "off"])
                .env("NOTIFY_SOCKET", &notify_path)
                // Pet every 150 ms (half the period), so the test sees several quickly.
                .env("WATCHDOG_USEC", "300000")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .expect("namespace")
        .expect("rvsd spawns");

    let (ready, seen) = wait_for(&notify, "READY=1", Duration::from_secs(20));
    let api_answers = UnixStream::connect(&api).is_ok();
    let (pets, more) = (0..3).fold((0, Vec::new()), |(n, mut all), _| {
        let (hit, seen) = wait_for(&notify, "WATCHDOG=1", Duration::from_secs(5));
        all.extend(seen);
        (n + usize::from(hit), all)
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let (stopping, last) = wait_for(&notify, "STOPPING=1", Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let _ = Command::new(rvsd)
        .args(["--cleanup", "--pin-path"])
        .arg(&pin)
        .output();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(ready, "no READY=1: {seen:?}");
    assert!(api_answers, "READY=1 came before the API socket answered");
    assert_eq!(pets, 3, "watchdog pets: {more:?}");
    assert!(stopping, "no STOPPING=1: {last:?}");
}
