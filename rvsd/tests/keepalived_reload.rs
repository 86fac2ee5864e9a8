//! A SIGHUP under `--keepalived` never deletes live services by accident: an empty file,
//! or one whose service rvs would leave out, is refused (as the TOML path refuses a bad
//! file) and the running services stay.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ONE: &str = "virtual_server 198.18.0.10 80 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    real_server 198.18.2.11 80 {\n        weight 1\n    }\n}\n";

fn services(socket: &Path) -> serde_json::Value {
    let mut s = UnixStream::connect(socket).expect("API socket");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /v1/services HTTP/1.1\r\nHost: rvsd\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("answer");
    serde_json::from_str(out.split_once("\r\n\r\n").map_or("", |x| x.1)).expect("JSON")
}

#[test]
fn sighup_with_an_empty_file_or_a_left_out_service_is_refused() {
    if !rvs_lab::root_or_skip("sighup_with_an_empty_file_or_a_left_out_service_is_refused") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let ns = rvs_lab::Netns::new(&format!("{prefix}-kr")).expect("netns");
    ns.exec(&[
        "ip", "link", "add", "kr0", "type", "veth", "peer", "name", "kr1",
    ])
    .expect("veth");
    ns.exec(&["ip", "link", "set", "kr0", "up"]).expect("up");
    ns.exec(&["ip", "link", "set", "kr1", "up"]).expect("up");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{prefix}-kr"));
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rvsd"));
    let mut rvsd =
        rvs_lab::Rvsd::start_keepalived(&ns, &bin, ONE, "kr0", &pin).expect("rvsd starts");
    let count = |rvsd: &rvs_lab::Rvsd| {
        services(rvsd.socket())["services"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(count(&rvsd), 1);
    rvsd.reload_refused("").expect("an empty file is refused");
    assert_eq!(count(&rvsd), 1, "the live service stays");
    let sctp = ONE.replace("protocol TCP", "protocol SCTP");
    rvsd.reload_refused(&sctp)
        .expect("a file whose service rvs leaves out is refused");
    assert_eq!(count(&rvsd), 1, "the live service stays");
    assert!(rvsd.output().contains("SCTP"), "the refusal names why");
    let two = format!("{ONE}{}", ONE.replace("198.18.0.10", "198.18.0.11"));
    rvsd.reload(&two).expect("a file rvs runs whole reloads");
    assert_eq!(count(&rvsd), 2);
}
