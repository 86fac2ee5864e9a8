//! One rvsd per pin path: a second rvsd on the same `--pin-path` refuses to start and
//! names the first's pid (without a config file too: `--pin-path` is honoured in every
//! mode); an API socket that cannot be bound stops rvsd at start.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Stops a process on drop (also when the test panics).
struct Kill(u32);

impl Drop for Kill {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
}

fn rvsd(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_rvsd")])
        .args(args)
        .args(["--metrics", "off"]);
    cmd
}

#[test]
fn a_second_rvsd_on_the_same_pin_path_refuses_naming_the_first() {
    if !rvs_lab::root_or_skip("a_second_rvsd_on_the_same_pin_path_refuses_naming_the_first") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let ns = rvs_lab::Netns::new(&format!("{prefix}-own")).expect("netns");
    let pin = format!("/sys/fs/bpf/{prefix}-own");
    let dir = std::env::temp_dir().join(format!("{prefix}-own"));
    let s1 = dir.join("a/rvsd.sock").display().to_string();
    let s2 = dir.join("b/rvsd.sock").display().to_string();
    let mut first = rvsd(ns.name(), &["--pin-path", &pin, "--socket", &s1])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("first rvsd");
    let guard = Kill(first.id());
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    let started = Instant::now();
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(20) {
        match lines.next() {
            Some(Ok(l)) if l.contains("rvsd ready") => {
                ready = true;
                break;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    assert!(ready, "the first rvsd started");
    let second = rvsd(ns.name(), &["--pin-path", &pin, "--socket", &s2])
        .output()
        .expect("second rvsd");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    drop(guard);
    let _ = first.wait();
    let _ = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["--cleanup", "--pin-path", &pin])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!second.status.success(), "second rvsd started:\n{out}");
    assert!(
        out.contains(&format!("another rvsd (pid {})", first.id())),
        "{out}"
    );
    // Without a config file too, the pin path is --pin-path's.
    assert!(out.contains(&format!("pin path {pin}")), "{out}");
}

#[test]
fn an_api_socket_that_cannot_be_bound_stops_rvsd_at_start() {
    if !rvs_lab::root_or_skip("an_api_socket_that_cannot_be_bound_stops_rvsd_at_start") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let ns = rvs_lab::Netns::new(&format!("{prefix}-sock")).expect("netns");
    let pin = format!("/sys/fs/bpf/{prefix}-sock");
    // A directory that cannot be created: its parent is a regular file.
    let out = rvsd(
        ns.name(),
        &["--pin-path", &pin, "--socket", "/proc/version/rvsd.sock"],
    )
    .output()
    .expect("rvsd");
    let _ = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["--cleanup", "--pin-path", &pin])
        .output();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "rvsd ran without its API:\n{text}");
    assert!(text.contains("/proc/version"), "{text}");
}
