//! Every checker against a real server in a network namespace: the health engine runs in
//! an "lb" namespace, the servers in an "rs" namespace joined by a veth pair
//! (198.18.40.1 ↔ 198.18.40.2). For each checker the server is broken in each way it can
//! break; the real server must leave the effective configuration within
//! delay_loop + retry × (connect_timeout + delay_before_retry) + 1 s (keepalived's
//! detection window plus one second), and come back once the server is healed.
//!
//! Needs root (skipped with a notice otherwise). Intervals are short (delay_loop 1 s,
//! connect_timeout 0.5 s, retry 1, delay_before_retry 0.5 s) to keep the suite fast.

mod servers;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rvs_checkers::{ChangeAction, HealthEngine};
use rvs_config::{
    Config, ForwardMethod, Protocol, RealServer, Scheduler, ServiceId, VirtualService,
};
use rvs_health::HealthModel;
use rvs_health::model::{
    CheckKind, Checker, DnsCheck, DnsType, HttpCheck, HttpVersion, MiscCheck, RealHealth, Script,
    ServiceHealth, SmtpCheck, Timing, TlsCheck, UdpCheck, UrlCheck,
};
use rvs_lab::Netns;
use servers::{Mode, Server};

const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 40, 1);
const RS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 40, 2);
const DELAY_LOOP: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(500);
const RETRY: u32 = 1;
const DELAY_BEFORE_RETRY: Duration = Duration::from_millis(500);

/// keepalived's detection window plus one second of slack.
fn detection_bound() -> Duration {
    DELAY_LOOP + (TIMEOUT + DELAY_BEFORE_RETRY) * RETRY + Duration::from_secs(1)
}

/// How long a healed server may take to be seen up: a delay_loop, a check, and slack.
fn recovery_bound() -> Duration {
    DELAY_LOOP + TIMEOUT + Duration::from_secs(1)
}

struct Lab {
    lb: Netns,
    rs: Netns,
}

fn lab(what: &str) -> Option<Lab> {
    if !rvs_lab::root_or_skip(what) {
        return None;
    }
    let _ = rvs_lab::cleanup_stale();
    let prefix = rvs_lab::unique_prefix();
    let lb = Netns::new(&format!("{prefix}-lb")).expect("lb netns");
    let rs = Netns::new(&format!("{prefix}-rs")).expect("rs netns");
    lb.exec(&[
        "ip",
        "link",
        "add",
        "v0",
        "type",
        "veth",
        "peer",
        "name",
        "v1",
        "netns",
        rs.name(),
    ])
    .expect("veth");
    lb.exec(&["ip", "addr", "add", &format!("{LB_IP}/24"), "dev", "v0"])
        .expect("addr");
    lb.exec(&["ip", "link", "set", "v0", "up"]).expect("up");
    rs.exec(&["ip", "addr", "add", &format!("{RS_IP}/24"), "dev", "v1"])
        .expect("addr");
    rs.exec(&["ip", "link", "set", "v1", "up"]).expect("up");
    Some(Lab { lb, rs })
}

fn checker(kind: CheckKind, port: u16) -> Checker {
    Checker {
        kind,
        target: SocketAddr::from((RS_IP, port)),
        bind_addr: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
        timeout: TIMEOUT,
        timing: Timing {
            delay_loop: DELAY_LOOP,
            retry: RETRY,
            delay_before_retry: DELAY_BEFORE_RETRY,
            warmup: Duration::ZERO,
            alpha: false,
        },
        origin: "checkers.rs".into(),
    }
}

const SERVICE: ServiceId = ServiceId {
    protocol: Protocol::Tcp,
    address: Ipv4Addr::new(198, 18, 0, 100),
    port: 80,
};

/// One service with two real servers: the checked one and an unchecked one (so the
/// service keeps quorum and only the checked server moves).
fn setup(checkers: Vec<Checker>) -> (Config, HealthModel) {
    let mut svc = VirtualService::new(SERVICE.protocol, SERVICE.address, SERVICE.port);
    svc.scheduler = Scheduler::Rr;
    let mut checked = RealServer::new(RS_IP);
    checked.weight = 5;
    checked.forward = ForwardMethod::Dr;
    let other = RealServer::new(Ipv4Addr::new(198, 18, 40, 3));
    svc.reals = vec![checked.clone(), other.clone()];
    let config = Config {
        services: vec![svc],
        ..Config::default()
    };
    let real = |r: RealServer, checkers| RealHealth {
        real: r,
        inhibit_on_failure: false,
        notify_up: None,
        notify_down: None,
        checkers,
    };
    let model = HealthModel {
        services: vec![ServiceHealth {
            service: SERVICE,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            omega: false,
            sorry_server: None,
            reals: vec![real(checked, checkers), real(other, vec![])],
        }],
    };
    (config, model)
}

/// A step of a scenario: break the server (expect it removed) or heal it (restored).
enum Step<'a> {
    Break(&'a str, Box<dyn Fn() + Send + 'a>),
    Heal(Box<dyn Fn() + Send + 'a>),
}

/// Runs the engine in the lb namespace and walks through `steps`, checking each
/// transition's timing.
fn scenario(lab: &Lab, checkers: Vec<Checker>, steps: Vec<Step<'_>>) -> Result<()> {
    lab.lb.run(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let (config, model) = setup(checkers);
            let handle = HealthEngine::spawn(config, model)?;
            let mut changes = handle.subscribe();
            // The first check must pass before anything is broken.
            let status = handle.status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while status.borrow().iter().all(|s| s.checks_ok == 0) {
                if Instant::now() > deadline {
                    bail!("the first check never passed: {:?}", status.borrow());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for step in steps {
                // Forget what happened before this step (a check slowed down by a loaded
                // machine must not be taken for this step's transition).
                while changes.try_recv().is_ok() {}
                let (what, bound, removed) = match &step {
                    Step::Break(what, f) => {
                        f();
                        (format!("broken ({what})"), detection_bound(), true)
                    }
                    Step::Heal(f) => {
                        f();
                        ("healed".to_owned(), recovery_bound(), false)
                    }
                };
                let t0 = Instant::now();
                let change = tokio::time::timeout(bound + Duration::from_secs(3), async {
                    loop {
                        match changes.recv().await {
                            Ok(c) if c.real.address == RS_IP => return Ok(c),
                            Ok(_) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                })
                .await
                .with_context(|| {
                    format!(
                        "{what}: no change within {:?}; status {:?}",
                        bound + Duration::from_secs(3),
                        handle.status().borrow()
                    )
                })??;
                let took = t0.elapsed();
                eprintln!("{what}: {change} after {took:?} (bound {bound:?})");
                match (removed, change.action) {
                    (true, ChangeAction::Removed)
                    | (false, ChangeAction::Restored { weight: 5 }) => {}
                    _ => bail!("{what}: unexpected change {change}"),
                }
                if took > bound {
                    bail!("{what}: took {took:?}, more than {bound:?}");
                }
                let present = handle.config().borrow().services[0]
                    .reals
                    .iter()
                    .any(|r| r.address == RS_IP);
                if present == removed {
                    bail!("{what}: the effective configuration disagrees with the change");
                }
            }
            handle.shutdown().await;
            Ok(())
        })
    })?
}

fn listen(ns: &Netns, port: u16) -> TcpListener {
    ns.run(|| TcpListener::bind((RS_IP, port)))
        .expect("ns")
        .expect("bind")
}

fn bind_udp(ns: &Netns, port: u16) -> UdpSocket {
    ns.run(|| UdpSocket::bind((RS_IP, port)))
        .expect("ns")
        .expect("bind")
}

/// Breaks `server` with `mode` and heals it with `Ok`, once per mode.
fn modes<'a>(server: &'a Server, modes: &[(&'a str, Mode)]) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for &(what, mode) in modes {
        steps.push(Step::Break(what, Box::new(move || server.set(mode))));
        steps.push(Step::Heal(Box::new(move || server.set(Mode::Ok))));
    }
    steps
}

#[test]
fn tcp_check() {
    let Some(lab) = lab("TCP_CHECK") else { return };
    // The TCP server reopens its port itself, so it runs in the rs namespace.
    let server = lab
        .rs
        .run(|| servers::tcp(TcpListener::bind((RS_IP, 8001)).expect("bind")))
        .expect("ns");
    let steps = modes(&server, &[("listener closed", Mode::Off)]);
    scenario(&lab, vec![checker(CheckKind::Tcp, 8001)], steps).expect("TCP_CHECK");
}

fn url(path: &str, digest: Option<&[u8]>) -> UrlCheck {
    UrlCheck {
        path: path.into(),
        status: vec![(200, 299)],
        digest: digest.map(|b| {
            use md5::Digest;
            md5::Md5::digest(b).into()
        }),
        virtualhost: Some("www.example".into()),
    }
}

#[test]
fn http_get() {
    let Some(lab) = lab("HTTP_GET") else { return };
    let server = servers::http(listen(&lab.rs, 8080));
    let kind = CheckKind::Http(HttpCheck {
        tls: None,
        urls: vec![url("/", None), url("/health", Some(servers::BODY))],
        version: HttpVersion::Http10,
    });
    let steps = modes(
        &server,
        &[
            ("status 500", Mode::Fail),
            ("hangs", Mode::Hang),
            ("closes", Mode::Close),
            ("body changed", Mode::OtherBody),
        ],
    );
    scenario(&lab, vec![checker(kind, 8080)], steps).expect("HTTP_GET");
}

struct Cert {
    der: Vec<u8>,
    key: Vec<u8>,
    pem_path: PathBuf,
}

fn self_signed(name: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("rcgen");
    let pem_path =
        std::env::temp_dir().join(format!("rvs-health-{}-{name}.pem", std::process::id()));
    std::fs::write(&pem_path, ck.cert.pem()).expect("write pem");
    Cert {
        der: ck.cert.der().to_vec(),
        key: ck.signing_key.serialize_der(),
        pem_path,
    }
}

fn ssl_kind(sni: Option<&str>, ca: Option<PathBuf>) -> CheckKind {
    CheckKind::Http(HttpCheck {
        tls: Some(TlsCheck {
            sni: sni.map(str::to_owned),
            verify_ca: ca,
        }),
        urls: vec![url("/", Some(servers::BODY))],
        version: HttpVersion::Http11,
    })
}

#[test]
fn ssl_get_with_sni_and_verification() {
    let Some(lab) = lab("SSL_GET") else { return };
    let cert = self_signed("tls.example");
    let server = servers::https(listen(&lab.rs, 8443), cert.der.clone(), cert.key.clone());
    let kind = ssl_kind(Some("tls.example"), Some(cert.pem_path.clone()));
    let steps = modes(
        &server,
        &[
            ("status 500", Mode::Fail),
            ("hangs", Mode::Hang),
            ("body changed", Mode::OtherBody),
        ],
    );
    scenario(&lab, vec![checker(kind, 8443)], steps).expect("SSL_GET");
    let seen = server.sni_seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s.as_deref() == Some("tls.example")),
        "{seen:?}"
    );
    let _ = std::fs::remove_file(&cert.pem_path);
}

#[test]
fn ssl_get_without_verification_accepts_any_certificate_and_without_sni() {
    let Some(lab) = lab("SSL_GET (no verification)") else {
        return;
    };
    let cert = self_signed("other.example");
    let server = servers::https(listen(&lab.rs, 8444), cert.der.clone(), cert.key.clone());
    let steps = modes(&server, &[("status 500", Mode::Fail)]);
    scenario(&lab, vec![checker(ssl_kind(None, None), 8444)], steps).expect("SSL_GET");
    let seen = server.sni_seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(Option::is_none),
        "no SNI without enable_sni: {seen:?}"
    );
    let _ = std::fs::remove_file(&cert.pem_path);
}

#[test]
fn ssl_get_verification_rejects_a_wrong_name() {
    let Some(lab) = lab("SSL_GET (wrong name)") else {
        return;
    };
    let cert = self_signed("tls.example");
    let _server = servers::https(listen(&lab.rs, 8445), cert.der.clone(), cert.key.clone());
    let kind = ssl_kind(Some("wrong.example"), Some(cert.pem_path.clone()));
    let mut c = checker(kind, 8445);
    c.timing.alpha = true;
    let result = lab.lb.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let (config, model) = setup(vec![c]);
            let handle = HealthEngine::spawn(config, model).expect("engine");
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let status = handle.status().borrow().clone();
            let present = handle.config().borrow().services[0]
                .reals
                .iter()
                .any(|r| r.address == RS_IP);
            handle.shutdown().await;
            (status, present)
        })
    });
    let (status, present) = result.expect("ns");
    assert!(
        !present,
        "a certificate for another name must not pass verification"
    );
    assert!(
        !status[0].alive && status[0].checks_failed >= 2,
        "{status:?}"
    );
    let _ = std::fs::remove_file(&cert.pem_path);
}

#[test]
fn smtp_check() {
    let Some(lab) = lab("SMTP_CHECK") else { return };
    let server = servers::smtp(listen(&lab.rs, 2525));
    let kind = CheckKind::Smtp(SmtpCheck {
        helo_name: "lb.example".into(),
    });
    let steps = modes(
        &server,
        &[("554 banner", Mode::Fail), ("hangs", Mode::Hang)],
    );
    scenario(&lab, vec![checker(kind, 2525)], steps).expect("SMTP_CHECK");
}

#[test]
fn dns_check() {
    let Some(lab) = lab("DNS_CHECK") else { return };
    let server = servers::dns(bind_udp(&lab.rs, 5353));
    let kind = CheckKind::Dns(DnsCheck {
        qtype: DnsType::A,
        name: "www.example.".into(),
    });
    let steps = modes(
        &server,
        &[("SERVFAIL", Mode::Fail), ("no answer", Mode::Hang)],
    );
    scenario(&lab, vec![checker(kind, 5353)], steps).expect("DNS_CHECK");
}

#[test]
fn udp_check() {
    let Some(lab) = lab("UDP_CHECK") else { return };
    // The echo server reopens its port itself, so it runs in the rs namespace.
    let server = lab
        .rs
        .run(|| servers::udp_echo(UdpSocket::bind((RS_IP, 5454)).expect("bind")))
        .expect("ns");
    let payload = b"rvs-udp-check".to_vec();
    let kind = CheckKind::Udp(UdpCheck {
        payload: Some(payload.clone()),
        require_reply: true,
        reply_pattern: payload.iter().map(|&b| (b, 0xff)).collect(),
        min_reply_length: 1,
        max_reply_length: 255,
    });
    let steps = modes(&server, &[("port closed", Mode::Off)]);
    scenario(&lab, vec![checker(kind, 5454)], steps).expect("UDP_CHECK");
}

#[test]
fn ping_check() {
    let Some(lab) = lab("PING_CHECK") else { return };
    let rs = &lab.rs;
    let steps = vec![
        Step::Break(
            "link down",
            Box::new(move || {
                rs.exec(&["ip", "link", "set", "v1", "down"]).expect("down");
            }),
        ),
        Step::Heal(Box::new(move || {
            rs.exec(&["ip", "link", "set", "v1", "up"]).expect("up");
        })),
    ];
    scenario(&lab, vec![checker(CheckKind::Ping, 0)], steps).expect("PING_CHECK");
}

#[test]
fn misc_check_exit_codes_and_timeout() {
    let Some(lab) = lab("MISC_CHECK") else { return };
    let state = std::env::temp_dir().join(format!("rvs-health-misc-{}", std::process::id()));
    std::fs::write(&state, "0").expect("state file");
    // Exits with the code in the state file; "hang" sleeps past the timeout.
    let script = format!(
        "s=$(cat {0}); if [ \"$s\" = hang ]; then exec sleep 10; fi; exit $s",
        state.display()
    );
    let kind = CheckKind::Misc(MiscCheck {
        script: Script::new(vec!["/bin/sh".into(), "-c".into(), script]),
        dynamic: false,
    });
    let set = |v: &'static str| {
        let state = state.clone();
        Box::new(move || std::fs::write(&state, v).expect("write")) as Box<dyn Fn() + Send>
    };
    let steps = vec![
        Step::Break("exit 1", set("1")),
        Step::Heal(set("0")),
        Step::Break("runs past misc_timeout", set("hang")),
        Step::Heal(set("0")),
    ];
    scenario(&lab, vec![checker(kind, 0)], steps).expect("MISC_CHECK");
    let _ = std::fs::remove_file(&state);
}

#[test]
fn misc_dynamic_sets_the_weight() {
    let Some(lab) = lab("MISC_CHECK misc_dynamic") else {
        return;
    };
    let state = std::env::temp_dir().join(format!("rvs-health-dyn-{}", std::process::id()));
    std::fs::write(&state, "12").expect("state file");
    let kind = CheckKind::Misc(MiscCheck {
        script: Script::new(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("exit $(cat {})", state.display()),
        ]),
        dynamic: true,
    });
    let c = checker(kind, 0);
    let st = state.clone();
    let result = lab.lb.run(move || -> Result<Vec<String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let (config, model) = setup(vec![c]);
            let handle = HealthEngine::spawn(config, model)?;
            let mut changes = handle.subscribe();
            let mut seen = Vec::new();
            // exit 12: weight 10.
            let c = tokio::time::timeout(Duration::from_secs(4), changes.recv()).await??;
            seen.push(c.to_string());
            // exit 1: down.
            std::fs::write(&st, "1")?;
            let c =
                tokio::time::timeout(detection_bound() + Duration::from_secs(1), changes.recv())
                    .await??;
            seen.push(c.to_string());
            // exit 0: back, with the weight it had.
            std::fs::write(&st, "0")?;
            let c = tokio::time::timeout(recovery_bound() + Duration::from_secs(1), changes.recv())
                .await??;
            seen.push(c.to_string());
            handle.shutdown().await;
            Ok(seen)
        })
    });
    let seen = result.expect("ns").expect("scenario");
    assert!(
        seen[0].starts_with("real 198.18.40.2:80 of service TCP 198.18.0.100:80: weight 10"),
        "{seen:?}"
    );
    assert!(seen[1].contains(": removed"), "{seen:?}");
    assert!(seen[2].contains(": restored (weight 10)"), "{seen:?}");
    let _ = std::fs::remove_file(&state);
}

#[test]
fn thousands_of_concurrent_checks_on_one_thread() {
    // 2000 TCP checks against one loopback listener, all driven by a current-thread
    // runtime: no thread per check. Loopback only; no namespace needed.
    // A deep accept queue: 2000 connections arrive within a second.
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind");
    sock.listen(4096).expect("listen");
    let listener = TcpListener::from(sock);
    let port = listener.local_addr().expect("addr").port();
    let server = servers::tcp(listener);
    let mut svc = VirtualService::new(Protocol::Tcp, Ipv4Addr::new(198, 18, 0, 200), 80);
    let mut reals = Vec::new();
    let mut health = Vec::new();
    for i in 0..2000u32 {
        let mut r = RealServer::new(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(198, 18, 100, 0)) + i,
        ));
        r.weight = 1;
        let mut c = checker(CheckKind::Tcp, port);
        c.target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        c.timing.warmup = Duration::from_secs(1);
        c.timeout = Duration::from_secs(2);
        reals.push(r.clone());
        health.push(RealHealth {
            real: r,
            inhibit_on_failure: false,
            notify_up: None,
            notify_down: None,
            checkers: vec![c],
        });
    }
    svc.reals = reals;
    let id = svc.id();
    let config = Config {
        services: vec![svc],
        ..Config::default()
    };
    let model = HealthModel {
        services: vec![ServiceHealth {
            service: id,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            omega: false,
            sorry_server: None,
            reals: health,
        }],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async move {
        let handle = HealthEngine::spawn(config, model).expect("engine");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let c = handle.counters();
            if c.checks >= 2000 {
                assert_eq!(c.check_failures, 0, "{c:?}");
                break;
            }
            assert!(Instant::now() < deadline, "only {c:?} after 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Close the port: every one of them must go down.
        server.set(Mode::Off);
        let deadline = Instant::now() + detection_bound() + Duration::from_secs(3);
        loop {
            let left = handle.config().borrow().services[0].reals.len();
            if left == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{left} real servers still in after the port closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        handle.shutdown().await;
    });
}
