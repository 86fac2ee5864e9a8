//! The engine end to end on loopback (no root): a keepalived.conf-shaped model with
//! notify and quorum scripts, a sorry server and omega, against a real TCP listener that
//! is closed and reopened; the scripts must really run, the sorry server must take over
//! while quorum is lost, and the changes must say so.

mod servers;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use rvs_checkers::{ChangeAction, EngineError, HealthEngine};
use rvs_config::{
    Config, ForwardMethod, Protocol, RealServer, Scheduler, ServiceId, VirtualService,
};
use rvs_health::HealthModel;
use rvs_health::model::{
    CheckKind, Checker, RealHealth, Script, ServiceHealth, SorryServer, Timing,
};
use servers::Mode;

fn script(log: &Path, word: &str) -> Script {
    Script::new(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("echo {word} >> {}", log.display()),
    ])
}

fn wait_for_line(log: &Path, line: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|t| t.lines().any(|l| l == line)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn scripts_quorum_and_sorry_server() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = servers::tcp(listener);
    let log = std::env::temp_dir().join(format!("rvs-health-engine-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);

    let id = ServiceId {
        protocol: Protocol::Tcp,
        address: Ipv4Addr::new(127, 0, 0, 10),
        port: 80,
    };
    let mut svc = VirtualService::new(id.protocol, id.address, id.port);
    svc.scheduler = Scheduler::Wrr;
    let mut checked = RealServer::new(Ipv4Addr::new(127, 0, 0, 21));
    checked.weight = 2;
    checked.forward = ForwardMethod::Nat;
    let mut sorry = RealServer::new(Ipv4Addr::new(127, 0, 0, 99));
    sorry.forward = ForwardMethod::Nat;
    svc.reals = vec![checked.clone()];
    let config = Config {
        services: vec![svc],
        ..Config::default()
    };
    let checker = Checker {
        kind: CheckKind::Tcp,
        target: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        bind_addr: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
        timeout: Duration::from_millis(500),
        timing: Timing {
            delay_loop: Duration::from_millis(500),
            retry: 0,
            delay_before_retry: Duration::from_millis(200),
            warmup: Duration::ZERO,
            alpha: false,
        },
        origin: "engine.rs".into(),
    };
    let model = HealthModel {
        services: vec![ServiceHealth {
            service: id,
            quorum: 2,
            hysteresis: 0,
            quorum_up: Some(script(&log, "quorum_up")),
            quorum_down: Some(script(&log, "quorum_down")),
            omega: true,
            sorry_server: Some(SorryServer {
                real: sorry,
                inhibit: false,
            }),
            reals: vec![RealHealth {
                real: checked,
                inhibit_on_failure: false,
                notify_up: Some(script(&log, "notify_up")),
                notify_down: Some(script(&log, "notify_down")),
                checkers: vec![checker],
            }],
        }],
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        // A health entry for a service the configuration lacks is refused.
        let mut wrong = model.clone();
        wrong.services[0].service.port = 81;
        assert!(matches!(
            HealthEngine::spawn(config.clone(), wrong),
            Err(EngineError::UnknownService(_))
        ));

        let handle = HealthEngine::spawn(config, model).expect("engine");
        let addrs = |h: &rvs_checkers::HealthHandle| -> Vec<u8> {
            h.config().borrow().services[0]
                .reals
                .iter()
                .map(|r| r.address.octets()[3])
                .collect()
        };
        assert_eq!(addrs(&handle), [21]);
        let mut changes = handle.subscribe();

        server.set(Mode::Off);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let c = tokio::time::timeout(Duration::from_secs(3), changes.recv())
                .await
                .expect("changes in time")
                .expect("change");
            seen.push((c.real.address.octets()[3], c.action));
        }
        seen.sort_by_key(|s| s.0);
        assert_eq!(
            seen,
            [
                (21, ChangeAction::Removed),
                (99, ChangeAction::Restored { weight: 1 })
            ]
        );
        assert_eq!(addrs(&handle), [99]);

        server.set(Mode::Ok);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let c = tokio::time::timeout(Duration::from_secs(3), changes.recv())
                .await
                .expect("changes in time")
                .expect("change");
            seen.push((c.real.address.octets()[3], c.action));
        }
        seen.sort_by_key(|s| s.0);
        assert_eq!(
            seen,
            [
                (21, ChangeAction::Restored { weight: 2 }),
                (99, ChangeAction::Removed)
            ]
        );
        let c = handle.counters();
        assert!(
            c.reals_down == 1 && c.reals_up == 1 && c.quorum_lost == 1 && c.quorum_gained == 1,
            "{c:?}"
        );
        // omega: shutting down runs the down notifiers.
        handle.shutdown().await;
    });
    for line in ["notify_down", "quorum_down", "notify_up", "quorum_up"] {
        assert!(
            wait_for_line(&log, line, Duration::from_secs(3)),
            "{line} did not run"
        );
    }
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        text.lines().filter(|l| *l == "notify_down").count(),
        2,
        "omega runs notify_down at shutdown:\n{text}"
    );
    assert_eq!(
        text.lines().filter(|l| *l == "quorum_down").count(),
        2,
        "and quorum_down:\n{text}"
    );
    let _ = std::fs::remove_file(&log);
}
