//! A huge batch does not take the API away (root): while rvsd reads, decodes and applies
//! a batch of tens of MB, `GET /v1/status` goes on being answered; a body over the limit
//! is refused with 413 naming the limit.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rvs_lab::{Netns, Rvsd};

/// One HTTP/1.1 request over the API socket; the whole answer.
fn http(socket: &Path, method: &str, path: &str, body: &[u8]) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    // A failure bound, not a timing assertion: a starved API never answers.
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: rvsd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    // A refusal (413) may come, and the connection close, before the whole body is sent:
    // the answer is read all the same.
    let _ = s.write_all(body);
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A batch adding `services` services (ports 1.. of one VIP) with `reals` real servers each.
fn batch(services: u16, reals: u8) -> Vec<u8> {
    let mut b = String::from("{\"ops\":[");
    for port in 1..=services {
        let svc = format!("{{\"protocol\":\"tcp\",\"address\":\"198.18.0.10\",\"port\":{port}}}");
        b += &format!(
            "{{\"op\":\"add_service\",\"service\":{{\"protocol\":\"tcp\",\"address\":\"198.18.0.10\",\"port\":{port},\"scheduler\":\"wrr\"}}}},"
        );
        for r in 0..reals {
            b += &format!(
                "{{\"op\":\"add_real\",\"service\":{svc},\"real\":{{\"address\":\"198.18.2.{}\",\"port\":{port},\"weight\":{},\"forward\":\"dr\"}}}},",
                11 + u16::from(r),
                1 + u16::from(r)
            );
        }
    }
    b.pop();
    b += "]}";
    b.into_bytes()
}

fn start(ns: &Netns, extra: &[&str]) -> Rvsd {
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", ns.name()));
    let config = format!("[daemon]\npin_path = \"{}\"\n", pin.display());
    Rvsd::start_with_args(
        ns,
        Path::new(env!("CARGO_BIN_EXE_rvsd")),
        &config,
        &pin,
        extra,
    )
    .expect("rvsd starts")
}

#[test]
fn status_is_answered_while_a_huge_batch_is_applied() {
    if !rvs_lab::root_or_skip("status_is_answered_while_a_huge_batch_is_applied") {
        return;
    }
    let ns = Netns::new(&format!("{}-bb", rvs_lab::unique_prefix())).expect("netns");
    let mut rvsd = start(&ns, &[]);
    let socket = rvsd.socket().to_path_buf();
    // 300 000 ops, 44 MB: the main loop needs seconds to plan and write them.
    let body = batch(60_000, 4);
    let done = Arc::new(AtomicBool::new(false));
    let poster = {
        let (socket, done) = (socket.clone(), done.clone());
        std::thread::spawn(move || {
            let reply = http(&socket, "POST", "/v1/ops", &body);
            done.store(true, Ordering::SeqCst);
            reply
        })
    };
    // Once rvsd says it is applying the batch (read and decoded: the part that was already
    // off the main loop), a status request must be answered before the batch is.
    rvsd.wait_for_output("applying a batch of 300000 ops", Duration::from_secs(120))
        .expect("rvsd starts applying the batch");
    let status = http(&socket, "GET", "/v1/status", b"").expect("status");
    let batch_done = done.load(Ordering::SeqCst);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        status.contains("\"verdicts\":[[\""),
        "live counters: {status}"
    );
    let reply = poster.join().expect("poster").expect("batch reply");
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "{}",
        &reply[..reply.len().min(400)]
    );
    assert!(
        !batch_done,
        "GET /v1/status waited for the batch: answered only after it"
    );
    let log = rvsd.output();
    assert!(log.contains("batch applied"), "{log}");
}

#[test]
fn a_body_over_the_limit_gets_413_naming_the_limit() {
    if !rvs_lab::root_or_skip("a_body_over_the_limit_gets_413_naming_the_limit") {
        return;
    }
    let ns = Netns::new(&format!("{}-bl", rvs_lab::unique_prefix())).expect("netns");
    let rvsd = start(&ns, &["--api-max-body", "100000"]);
    let big = batch(1_000, 1);
    assert!(big.len() > 100_000);
    let reply = http(rvsd.socket(), "POST", "/v1/ops", &big).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("limit of 100000 bytes"), "{reply}");
    assert!(reply.contains("--api-max-body"), "{reply}");
    // Under the limit, the same kind of batch goes in.
    let small = batch(100, 1);
    assert!(small.len() < 100_000);
    let reply = http(rvsd.socket(), "POST", "/v1/ops", &small).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}
