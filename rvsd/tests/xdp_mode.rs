//! `--keepalived` on a real machine: without `--interface` it is an error; the XDP mode is
//! chosen before any map is written: `auto` (the default under --keepalived) falls back
//! from native to generic with a warning where the driver has no native XDP (a bridge
//! here), `native` makes that an error.

use std::path::PathBuf;
use std::time::Duration;

const CONF: &str = "virtual_server 198.18.0.10 80 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    real_server 198.18.2.11 80 {\n        weight 1\n    }\n}\n";

struct Setup {
    ns: rvs_lab::Netns,
    dir: PathBuf,
    conf: String,
    pin: String,
    socket: String,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let prefix = rvs_lab::unique_prefix();
        let ns = rvs_lab::Netns::new(&format!("{prefix}-{tag}")).expect("netns");
        ns.exec(&["ip", "link", "add", "br0", "type", "bridge"])
            .expect("bridge");
        ns.exec(&["ip", "link", "set", "br0", "up"]).expect("up");
        let dir = std::env::temp_dir().join(format!("{prefix}-{tag}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, CONF).expect("conf");
        Setup {
            ns,
            conf: conf.display().to_string(),
            pin: format!("/sys/fs/bpf/{prefix}-{tag}"),
            socket: dir.join("rvsd.sock").display().to_string(),
            dir,
        }
    }

    fn argv<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            env!("CARGO_BIN_EXE_rvsd"),
            "--keepalived",
            &self.conf,
            "--pin-path",
            &self.pin,
            "--socket",
            &self.socket,
            "--metrics",
            "off",
        ];
        v.extend_from_slice(extra);
        v
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // In the namespace: the forwarding sysctl rvsd recorded there is put back.
        let _ = self.ns.run(|| {
            std::process::Command::new(env!("CARGO_BIN_EXE_rvsd"))
                .args(["--cleanup", "--pin-path", &self.pin])
                .output()
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs rvsd until it exits (at most 20 s, then it is stopped); its status and output.
fn run_to_exit(s: &Setup, extra: &[&str]) -> (Option<bool>, String) {
    let mut child = s.ns.spawn(&s.argv(extra)).expect("rvsd");
    let started = std::time::Instant::now();
    while child.is_running() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited = !child.is_running();
    let out = child.output();
    let status = child.stop().ok().map(|st| st.success());
    (if exited { status } else { None }, out)
}

#[test]
fn keepalived_without_interface_is_an_error() {
    if !rvs_lab::root_or_skip("keepalived_without_interface_is_an_error") {
        return;
    }
    let s = Setup::new("noif");
    let (status, out) = run_to_exit(&s, &[]);
    assert_eq!(status, Some(false), "rvsd ran without --interface:\n{out}");
    assert!(out.contains("--interface"), "{out}");
}

#[test]
fn auto_falls_back_to_generic_xdp_where_native_is_missing() {
    if !rvs_lab::root_or_skip("auto_falls_back_to_generic_xdp_where_native_is_missing") {
        return;
    }
    let s = Setup::new("auto");
    let mut child = s.ns.spawn(&s.argv(&["--interface", "br0"])).expect("rvsd");
    child
        .wait_for_output("rvsd ready", 1, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", child.output()));
    let out = child.output();
    let _ = child.stop();
    assert!(out.contains("falling back to generic"), "{out}");
    assert!(out.contains("Generic"), "{out}");
}

#[test]
fn native_xdp_mode_refuses_an_interface_without_it() {
    if !rvs_lab::root_or_skip("native_xdp_mode_refuses_an_interface_without_it") {
        return;
    }
    let s = Setup::new("nat");
    let (status, out) = run_to_exit(&s, &["--interface", "br0", "--xdp-mode", "native"]);
    assert_eq!(status, Some(false), "{out}");
    assert!(out.contains("br0"), "{out}");
}
