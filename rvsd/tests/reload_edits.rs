//! One owner of the state: under `--config` the file is the truth, as keepalived's. A
//! runtime edit (`ipvsadm -e -w 0` through the API) lasts until the next reload, and
//! that reload says in its log line and its API reply that it replaced it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rvs_config::{Protocol, ServiceId};

fn api(socket: &Path, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = UnixStream::connect(socket).expect("API socket");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: rvsd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("answer");
    let code = out[9..12].parse().expect("status code");
    let json = out.split_once("\r\n\r\n").map_or("", |x| x.1);
    (code, serde_json::from_str(json).expect("JSON answer"))
}

#[test]
fn a_reload_that_replaces_runtime_edits_says_so() {
    if !rvs_lab::root_or_skip("a_reload_that_replaces_runtime_edits_says_so") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let ns = rvs_lab::Netns::new(&format!("{prefix}-ed")).expect("netns");
    let pin = format!("/sys/fs/bpf/{prefix}-ed");
    let dir = std::env::temp_dir().join(format!("{prefix}-ed"));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("rvs.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\npin_path = \"{pin}\"\n\n[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10\"\nport = 80\nscheduler = \"rr\"\n\n[[service.real]]\naddress = \"198.18.2.11\"\nweight = 1\n"
        ),
    )
    .expect("config");
    let socket = dir.join("rvsd.sock");
    let bin = env!("CARGO_BIN_EXE_rvsd");
    let (c, s) = (config.display().to_string(), socket.display().to_string());
    let mut rvsd = ns
        .spawn(&[bin, "--config", &c, "--socket", &s, "--metrics", "off"])
        .expect("rvsd");
    rvsd.wait_for_output("rvsd ready", 1, Duration::from_secs(20))
        .expect("ready");
    let service = ServiceId {
        protocol: Protocol::Tcp,
        address: "198.18.0.10".parse().expect("vip"),
        port: 80,
    };
    let mut real: rvs_config::RealServer =
        serde_json::from_str(r#"{"address":"198.18.2.11"}"#).expect("real");
    real.weight = 0;
    let batch = serde_json::json!({ "ops": [rvs_api::Op::EditReal { service, real }] });
    let (code, answer) = api(&socket, "POST", "/v1/ops", &batch.to_string());
    assert_eq!(code, 200, "{answer}");
    let (code, first) = api(&socket, "POST", "/v1/reload", "");
    let (_, second) = api(&socket, "POST", "/v1/reload", "");
    let log = rvsd.output();
    let _ = rvsd.stop();
    let _ = std::process::Command::new(bin)
        .args(["--cleanup", "--pin-path", &pin])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["runtime_edits_dropped"], 1, "{first}");
    assert_eq!(second["runtime_edits_dropped"], 0, "{second}");
    assert!(log.contains("replaced runtime changes"), "{log}");
}
