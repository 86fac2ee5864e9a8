//! rvsd run from a keepalived.conf in the DR lab (root): clients keep making requests
//! while real servers are killed and restored; every request started after a dead server
//! has left the service succeeds, and the failures all fall in the detection window.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rvs_dataplane::PassProgram;
use rvs_lab::{DrLab, HttpResponder, Rvsd, http_get};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// delay_loop + retry × (connect_timeout + delay_before_retry) + 1 s of slack.
const DETECTION: Duration = Duration::from_secs(1 + (1 + 1) + 1);

fn keepalived_conf(lab: &DrLab) -> String {
    let mut c = String::from(
        "! rvs lab: keepalived's own syntax\nglobal_defs {\n   router_id rvs_lab\n}\n\n\
         virtual_server 198.18.0.10 80 {\n    delay_loop 1\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n\n",
    );
    for rs in lab.real_servers() {
        c += &format!(
            "    real_server {} 80 {{\n        weight 1\n        TCP_CHECK {{\n            connect_timeout 1\n            retry 1\n            delay_before_retry 1\n        }}\n    }}\n",
            rs.addr()
        );
    }
    c + "}\n"
}

/// How long before a kill a request may have started and still be cut by it.
const IN_FLIGHT: Duration = Duration::from_millis(500);

/// One client request: when it started, and which server answered (None = failed).
type Sample = (Instant, Option<String>);

#[test]
fn killed_servers_leave_and_return_under_keepalived_checks() {
    if !rvs_lab::root_or_skip("keepalived.conf lab test") {
        return;
    }
    let lab = DrLab::new(3, &[VIP]).expect("lab");
    let spawn = |i: usize| {
        let rs = &lab.real_servers()[i];
        HttpResponder::spawn(rs.ns(), SocketAddr::from(([0, 0, 0, 0], 80)), rs.name())
            .expect("responder")
    };
    let mut responders: Vec<Option<HttpResponder>> = (0..3).map(|i| Some(spawn(i))).collect();
    let port = lab.switch_lb_port();
    let _pass = lab
        .switch()
        .run(|| PassProgram::attach(port))
        .expect("switch namespace")
        .expect("pass program");

    let rvsd_bin = Path::new(env!("CARGO_BIN_EXE_rvsd"));
    let text = keepalived_conf(&lab);
    let conf = std::env::temp_dir().join(format!("{}-check.conf", lab.prefix()));
    std::fs::write(&conf, &text).expect("write keepalived.conf");
    let check = std::process::Command::new(rvsd_bin)
        .arg("--check-config")
        .arg(&conf)
        .output()
        .expect("rvsd --check-config");
    let _ = std::fs::remove_file(&conf);
    assert!(check.status.success(), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("valid (1 services, 3 real servers, 0 VRRP instances)")
    );
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let rvsd = Rvsd::start_keepalived(lab.lb(), rvsd_bin, &text, lab.lb_uplink(), &pin)
        .expect("rvsd starts");

    // Clients: one request after another, each with its own connection, until told to stop.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let vip = SocketAddr::from((VIP, 80));
    let client_ns = lab.client();
    std::thread::scope(|scope| {
        let (samples_in, stop_in) = (samples.clone(), stop.clone());
        scope.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop_in.load(Ordering::Relaxed) && Instant::now() < deadline {
                let started = Instant::now();
                let answer = http_get(client_ns, vip).ok();
                if let Ok(mut s) = samples_in.lock() {
                    s.push((started, answer));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut kills = Vec::new();
        for victim in [1usize, 2] {
            std::thread::sleep(Duration::from_secs(1));
            responders[victim] = None;
            let killed = Instant::now();
            std::thread::sleep(DETECTION + Duration::from_secs(1));
            responders[victim] = Some(spawn(victim));
            let restored = Instant::now();
            kills.push((victim, killed, restored));
            std::thread::sleep(DETECTION);
        }
        stop.store(true, Ordering::Relaxed);

        let samples = samples.lock().expect("samples");
        let names: Vec<&str> = lab.real_servers().iter().map(|r| r.name()).collect();
        let mut failed = 0;
        for (started, answer) in samples.iter() {
            let Some(answer) = answer else {
                failed += 1;
                // A failure must come from a detection window (a request already in flight
                // when its server is killed counts too).
                let in_window = kills.iter().any(|(_, killed, _)| {
                    *started + IN_FLIGHT >= *killed && *started < *killed + DETECTION
                });
                let offsets: Vec<String> = kills
                    .iter()
                    .map(|(v, killed, restored)| {
                        format!(
                            "rs{}: {:+.3}s after kill, {:+.3}s after restore",
                            v + 1,
                            started.saturating_duration_since(*killed).as_secs_f64()
                                - killed.saturating_duration_since(*started).as_secs_f64(),
                            started.saturating_duration_since(*restored).as_secs_f64()
                                - restored.saturating_duration_since(*started).as_secs_f64()
                        )
                    })
                    .collect();
                assert!(
                    in_window,
                    "a request failed outside the detection window: {offsets:?}"
                );
                continue;
            };
            for (victim, killed, restored) in &kills {
                if *started >= *killed + DETECTION && *started < *restored {
                    assert_ne!(answer, names[*victim], "request landed on a removed server");
                }
            }
        }
        // Each restored server serves again once its check passes.
        for (victim, _, restored) in &kills {
            let back = samples.iter().any(|(started, answer)| {
                *started > *restored + DETECTION / 2 && answer.as_deref() == Some(names[*victim])
            });
            assert!(back, "{} did not come back", names[*victim]);
        }
        println!(
            "{} requests, {failed} failed (all inside detection windows of {DETECTION:?})",
            samples.len()
        );
        assert!(samples.len() > 100, "the client loop ran");
    });
    let log = rvsd.output();
    assert!(log.contains("health change applied"), "{log}");
    // Every transition is counted in the metrics: two servers went down and came back.
    let metrics = rvs_lab::http_get_path(
        lab.lb(),
        SocketAddr::from(([127, 0, 0, 1], 9595)),
        "/metrics",
    )
    .expect("metrics");
    for line in [
        "rvs_health_transitions_total{to=\"down\"} 2",
        "rvs_health_transitions_total{to=\"up\"} 2",
        // All three are back: the gauge says so (a gauge of the present, not a count).
        "rvs_ipvs_service_backends_up{local_address=\"198.18.0.10\",local_port=\"80\",proto=\"TCP\",local_mark=\"\"} 3",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
}
