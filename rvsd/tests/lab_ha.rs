//! High availability with two rvs directors run from one keepalived.conf (VRRP +
//! virtual_server + lvs_sync_daemon), DR and NAT (root):
//!
//! - failover: 30 keep-alive connections (a request each 0.5 s) through the MASTER; the
//!   MASTER dies (rvsd SIGKILLed and its uplink down, as a machine losing power); every
//!   connection keeps getting answers from the same real server once the BACKUP took
//!   over; then the old MASTER comes back, resyncs (it asks for the table) and preempts,
//!   again with no connection lost; for NAT the real servers route through a second VRRP
//!   address on their segment, in a sync group with the VIP's instance, so their replies
//!   follow the director that holds the VIP;
//! - planned stop: SIGTERM on the MASTER makes it resign with priority 0 and remove its
//!   VIP, so the BACKUP holds the VIP within Skew_Time (the issue asks ≤ 1.5 s).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use rvs_dataplane::PassProgram;
use rvs_lab::{HaLab, HttpSession, Rvsd};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// NAT: the real servers' gateway, a VRRP address on their segment.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 250);
const SESSIONS: usize = 30;

/// The keepalived.conf both directors run; only the priority differs between them. NAT
/// adds the gateway's instance on the segment, in one sync group with the VIP's.
fn keepalived_conf(lab: &HaLab, priority: u8) -> String {
    let up = lab.uplink();
    let seg = lab.segment();
    let mut c = format!(
        "global_defs {{\n    lvs_sync_daemon {up} VI_1 id 51\n}}\n\n\
         vrrp_instance VI_1 {{\n    state BACKUP\n    interface {up}\n    virtual_router_id 51\n    priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP}/32 dev {up}\n    }}\n}}\n\n"
    );
    let kind = if let Some(gw) = lab.nat_gateway() {
        c += &format!(
            "vrrp_instance VI_GW {{\n    state BACKUP\n    interface {seg}\n    virtual_router_id 52\n    priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        {gw}/24 dev {seg}\n    }}\n}}\n\n\
             vrrp_sync_group VG_1 {{\n    group {{\n        VI_1\n        VI_GW\n    }}\n}}\n\n"
        );
        "NAT"
    } else {
        "DR"
    };
    c += &format!(
        "virtual_server {VIP} 80 {{\n    delay_loop 5\n    lb_algo rr\n    lb_kind {kind}\n    protocol TCP\n"
    );
    for rs in lab.real_servers() {
        c += &format!(
            "    real_server {} 80 {{\n        weight 1\n    }}\n",
            rs.addr()
        );
    }
    c + "}\n"
}

struct Directors {
    rvsd: Vec<Rvsd>,
    _pass: Vec<PassProgram>,
}

fn start(lab: &HaLab, priorities: [u8; 2]) -> Directors {
    let mut pass = Vec::new();
    let mut ports = lab.switch_lb_ports().to_vec();
    let mut interfaces = vec![lab.uplink()];
    if lab.nat_gateway().is_some() {
        // NAT: replies come in on the segment and are redirected to the uplink.
        ports.extend(lab.switch_uplink_ports());
        interfaces.push(lab.segment());
    }
    for port in ports {
        pass.push(
            lab.switch()
                .run(|| PassProgram::attach(port))
                .expect("switch namespace")
                .expect("pass program"),
        );
    }
    let rvsd = lab
        .directors()
        .iter()
        .zip(priorities)
        .enumerate()
        .map(|(i, (d, prio))| {
            let pin = PathBuf::from(format!("/sys/fs/bpf/{}-lb{}", lab.prefix(), i + 1));
            Rvsd::start_keepalived_on(
                d.ns(),
                Path::new(env!("CARGO_BIN_EXE_rvsd")),
                &keepalived_conf(lab, prio),
                &interfaces,
                &pin,
            )
            .expect("rvsd starts")
        })
        .collect();
    Directors { rvsd, _pass: pass }
}

fn sync_status(rvsd: &Rvsd) -> rvs_api::SyncStatus {
    let client = rvs_api::Client::new(rvsd.socket());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(client.sync_status())
        .expect("GET /v1/sync")
}

/// Waits (bounded) until `cond` holds; returns how long it took.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

/// One client connection and what it was answered, request by request.
struct Session {
    first: String,
    answers: Vec<(Instant, Result<String, String>)>,
}

#[test]
fn failover_and_return_lose_no_connection() {
    if !rvs_lab::root_or_skip("HA failover lab test") {
        return;
    }
    failover_and_return(&HaLab::new(3, &[VIP]).expect("lab"));
}

#[test]
fn nat_failover_and_return_lose_no_connection() {
    if !rvs_lab::root_or_skip("HA NAT failover lab test") {
        return;
    }
    failover_and_return(&HaLab::new_nat(3, &[VIP], GATEWAY).expect("NAT lab"));
}

/// Whether director `d` holds every address its VRRP moves (NAT: the gateway too).
fn holds_all(lab: &HaLab, d: &rvs_lab::ha::Director) -> bool {
    d.holds(VIP).unwrap_or(false)
        && lab
            .nat_gateway()
            .is_none_or(|gw| d.holds_on_segment(gw).unwrap_or(false))
}

/// Whether director `d` holds none of them.
fn holds_none(lab: &HaLab, d: &rvs_lab::ha::Director) -> bool {
    !d.holds(VIP).unwrap_or(true)
        && lab
            .nat_gateway()
            .is_none_or(|gw| !d.holds_on_segment(gw).unwrap_or(true))
}

fn failover_and_return(lab: &HaLab) {
    let nat = lab.nat_gateway().is_some();
    let _responders = lab.serve_http(80).expect("responders");
    // As a switch that knows where every MAC is: no unknown-unicast flooding to the
    // directors, so frames for the dead MASTER's MAC never reach the BACKUP (whose XDP
    // program would forward synced flows at once) and the connections really wait for
    // the takeover.
    for port in ["ulb1", "ulb2"] {
        lab.switch()
            .exec(&["bridge", "link", "set", "dev", port, "flood", "off"])
            .expect("bridge flood off");
    }
    let mut dirs = start(lab, [150, 100]);
    let (lb1, lb2) = (&lab.directors()[0], &lab.directors()[1]);
    dirs.rvsd[0]
        .wait_for_output(
            "VRRP: MASTER for every managed VIP",
            Duration::from_secs(20),
        )
        .expect("lb1 becomes MASTER");
    dirs.rvsd[1]
        .wait_for_output(
            "lvs_sync_daemon follows the VRRP instance",
            Duration::from_secs(10),
        )
        .expect("lb2 runs the sync backup");
    // New connections and state changes reach the BACKUP through the program's event ring.
    dirs.rvsd[0]
        .wait_for_output(
            "sync MASTER follows the connection-event ring",
            Duration::from_secs(10),
        )
        .expect("lb1's sync MASTER reads the event ring");
    wait_until(
        "lb1 holds the VRRP addresses",
        Duration::from_secs(10),
        || holds_all(lab, lb1),
    );

    // 30 keep-alive connections through lb1, a request each 0.5 s from a thread each.
    let vip = SocketAddr::from((VIP, 80));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..SESSIONS {
        let mut s = HttpSession::connect(lab.client(), vip).expect("connect");
        s.set_io_timeout(Duration::from_secs(20)).expect("timeout");
        let first = s.get().expect("first answer");
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut answers = Vec::new();
            // Bounded: the test stops it, and at most 400 requests (200 s).
            for _ in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
                answers.push((Instant::now(), s.get().map_err(|e| format!("{e:#}"))));
            }
            Session { first, answers }
        }));
    }
    // The BACKUP has them all (sent from the MASTER's event ring).
    wait_until(
        "lb2 installs the 30 connections",
        Duration::from_secs(10),
        || {
            sync_status(&dirs.rvsd[1])
                .daemons
                .first()
                .is_some_and(|d| d.counters.installed >= SESSIONS as u64)
        },
    );

    // lb1 loses power: rvsd killed, uplink down.
    std::thread::sleep(Duration::from_secs(1));
    let died = Instant::now();
    dirs.rvsd[0].kill().expect("kill lb1");
    lb1.set_uplink(false).expect("lb1 uplink down");
    if nat {
        lb1.set_segment(false).expect("lb1 segment down");
    }
    let takeover = wait_until("lb2 holds the VIP", Duration::from_secs(15), || {
        holds_all(lab, lb2)
    });
    println!(
        "{}failover: lb2 held the VIP {:.2} s after lb1 died",
        if nat { "NAT " } else { "" },
        takeover.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    let after_failover = Instant::now();

    // lb1 comes back: rvsd first (it removes the VIP its killed run left), then the link;
    // it starts as BACKUP, asks lb2 for the table, and preempts (priority 150 > 100).
    dirs.rvsd[0].restart(lb1.ns()).expect("lb1 restarts");
    lb1.set_uplink(true).expect("lb1 uplink up");
    if nat {
        lb1.set_segment(true).expect("lb1 segment up");
    }
    let back = Instant::now();
    wait_until("lb1 holds the VIP again", Duration::from_secs(20), || {
        holds_all(lab, lb1) && holds_none(lab, lb2)
    });
    println!(
        "return: lb1 preempted {:.2} s after coming back",
        back.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(5));
    let after_return = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let sessions: Vec<Session> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();

    // Every connection: no error, the same real server throughout, and answers after the
    // failover and after the return.
    let failed: Vec<String> = sessions
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let (at, e) = s
                .answers
                .iter()
                .find_map(|(at, a)| a.as_ref().err().map(|e| (at, e)))?;
            Some(format!(
                "{i} at {:.2} s: {e}",
                at.duration_since(died).as_secs_f64()
            ))
        })
        .collect();
    if !failed.is_empty() {
        for (n, r) in dirs.rvsd.iter().enumerate() {
            eprintln!("--- lb{} output:\n{}", n + 1, r.output());
            let d = &lab.directors()[n];
            for cmd in [
                &["ip", "neigh"][..],
                &["ip", "-4", "addr"],
                &["ip", "route"],
            ] {
                eprintln!(
                    "--- lb{} {cmd:?}:\n{}",
                    n + 1,
                    d.ns().exec(cmd).unwrap_or_default()
                );
            }
            let client = rvs_api::Client::new(r.socket());
            let st = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(client.status());
            if let Ok(st) = st {
                eprintln!("--- lb{} verdicts: {:?}", n + 1, st.verdicts);
            }
        }
        for rs in lab.real_servers() {
            eprintln!(
                "--- {} neigh:\n{}",
                rs.name(),
                rs.ns().exec(&["ip", "neigh"]).unwrap_or_default()
            );
        }
        panic!(
            "{} connections failed (lb1 died at 0, lb2 held at {:.2} s, lb1 back at {:.2} s):\n{}",
            failed.len(),
            takeover.as_secs_f64(),
            back.duration_since(died).as_secs_f64(),
            failed.join("\n")
        );
    }
    let mut per_rs: BTreeMap<String, usize> = BTreeMap::new();
    let mut longest_gap = Duration::ZERO;
    let mut gap_at = Duration::ZERO;
    for (i, s) in sessions.iter().enumerate() {
        *per_rs.entry(s.first.clone()).or_default() += 1;
        for (at, a) in &s.answers {
            match a {
                Ok(name) => assert_eq!(
                    name, &s.first,
                    "connection {i} moved to another real server"
                ),
                Err(e) => panic!(
                    "connection {i} failed at {:?} after lb1 died: {e}",
                    at.duration_since(died)
                ),
            }
        }
        assert!(
            s.answers.iter().any(|(at, _)| *at > after_failover),
            "connection {i}: no answer after the failover"
        );
        assert!(
            s.answers.iter().any(|(at, _)| *at > after_return),
            "connection {i}: no answer after the return"
        );
        for w in s.answers.windows(2) {
            let gap = w[1].0.duration_since(w[0].0);
            if gap > longest_gap {
                longest_gap = gap;
                gap_at = w[0].0.saturating_duration_since(died);
            }
        }
    }
    println!(
        "{}{SESSIONS} connections, {} answers, none lost; per real server {per_rs:?}; longest wait between two answers {:.2} s (from {:.2} s after lb1 died; it was back at {:.2} s)",
        if nat { "NAT: " } else { "DR: " },
        sessions.iter().map(|s| s.answers.len()).sum::<usize>(),
        longest_gap.as_secs_f64(),
        gap_at.as_secs_f64(),
        back.duration_since(died).as_secs_f64()
    );
    assert_eq!(
        per_rs.len(),
        3,
        "rr spread the connections over the three servers"
    );
    for (n, r) in dirs.rvsd.iter().enumerate() {
        let client = rvs_api::Client::new(r.socket());
        if let Ok(st) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(client.status())
        {
            let nonzero: Vec<_> = st.verdicts.iter().filter(|(_, v)| *v > 0).collect();
            println!("lb{} verdicts: {nonzero:?}", n + 1);
        }
    }
    // The returning lb1 asked for the table, and lb2 (MASTER then) answered with it.
    let out = dirs.rvsd[1].output();
    assert!(out.contains("a sync backup asked for the table"), "{out}");
}

#[test]
fn sigterm_hands_the_vip_over_within_skew_time() {
    if !rvs_lab::root_or_skip("HA planned stop lab test") {
        return;
    }
    let lab = HaLab::new(1, &[VIP]).expect("lab");
    let mut dirs = start(&lab, [150, 100]);
    let (lb1, lb2) = (&lab.directors()[0], &lab.directors()[1]);
    dirs.rvsd[0]
        .wait_for_output(
            "VRRP: MASTER for every managed VIP",
            Duration::from_secs(20),
        )
        .expect("lb1 becomes MASTER");
    wait_until("lb1 holds the VIP", Duration::from_secs(5), || {
        lb1.holds(VIP).unwrap_or(false)
    });
    assert!(!lb2.holds(VIP).expect("lb2 addresses"));
    dirs.rvsd[0].signal(Signal::SIGTERM).expect("SIGTERM");
    let took = wait_until("lb2 holds the VIP", Duration::from_secs(10), || {
        lb2.holds(VIP).unwrap_or(false)
    });
    dirs.rvsd[0]
        .wait_exit(Duration::from_secs(10))
        .expect("lb1 exits");
    println!(
        "planned stop: lb2 held the VIP {:.3} s after SIGTERM",
        took.as_secs_f64()
    );
    assert!(
        !lb1.holds(VIP).expect("lb1 addresses"),
        "the stopped node still holds the VIP"
    );
    // The bound: Skew_Time for priority 100 is 0.61 s; 1.5 s is what it demands.
    assert!(took <= Duration::from_millis(1500), "took {took:?}");
    assert!(
        dirs.rvsd[0].output().contains("VRRP stopping"),
        "{}",
        dirs.rvsd[0].output()
    );
}

#[test]
fn sighup_with_a_raised_priority_preempts_and_leaves_other_instances_alone() {
    if !rvs_lab::root_or_skip("HA reload lab test") {
        return;
    }
    const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
    let lab = HaLab::new(1, &[VIP, VIP2]).expect("lab");
    let up = lab.uplink();
    let with_second = |c: String, priority: u8| {
        c + &format!(
            "\nvrrp_instance VI_2 {{\n    state BACKUP\n    interface {up}\n    virtual_router_id 52\n    priority {priority}\n    advert_int 1\n    virtual_ipaddress {{\n        {VIP2}/32 dev {up}\n    }}\n}}\n"
        )
    };
    let mut dirs = start(&lab, [150, 100]);
    let (lb1, lb2) = (&lab.directors()[0], &lab.directors()[1]);
    // Both instances: lb1 150 (MASTER of both), lb2 100.
    dirs.rvsd[0]
        .reload(&with_second(keepalived_conf(&lab, 150), 150))
        .expect("lb1 reload");
    dirs.rvsd[1]
        .reload(&with_second(keepalived_conf(&lab, 100), 100))
        .expect("lb2 reload");
    wait_until("lb1 MASTER of both VIPs", Duration::from_secs(20), || {
        lb1.holds(VIP).unwrap_or(false) && lb1.holds(VIP2).unwrap_or(false)
    });
    let runs = |r: &Rvsd| r.output().matches("VRRP running").count();
    let before = runs(&dirs.rvsd[1]);
    // lb2: VI_1's priority raised to 200, VI_2 unchanged.
    dirs.rvsd[1]
        .reload(&with_second(keepalived_conf(&lab, 200), 100))
        .expect("lb2 reload");
    let took = wait_until("lb2 preempts VI_1", Duration::from_secs(15), || {
        lb2.holds(VIP).unwrap_or(false) && !lb1.holds(VIP).unwrap_or(true)
    });
    println!(
        "reload: lb2 took VI_1 over {:.2} s after SIGHUP",
        took.as_secs_f64()
    );
    assert!(lb1.holds(VIP2).expect("lb1 addresses"), "VI_2 stays on lb1");
    assert!(!lb2.holds(VIP2).expect("lb2 addresses"));
    assert_eq!(
        runs(&dirs.rvsd[1]),
        before,
        "VI_1 took its new priority in place; nothing was restarted on lb2"
    );
}

#[test]
fn sighup_keeps_a_changed_master_master_and_leaves_an_unchanged_backup_alone() {
    if !rvs_lab::root_or_skip("HA reload lab test") {
        return;
    }
    let lab = HaLab::new(1, &[VIP]).expect("lab");
    let mut dirs = start(&lab, [150, 100]);
    let (lb1, lb2) = (&lab.directors()[0], &lab.directors()[1]);
    wait_until("lb1 MASTER", Duration::from_secs(20), || {
        lb1.holds(VIP).unwrap_or(false)
    });
    let runs = |r: &Rvsd| r.output().matches("VRRP running").count();
    let changes = |r: &Rvsd| r.output().matches("state change").count();
    let before = [runs(&dirs.rvsd[0]), changes(&dirs.rvsd[0])];
    let backup_changes = changes(&dirs.rvsd[1]);
    // lb1 (MASTER): priority 150 -> 120, still above lb2's 100. keepalived keeps MASTER
    // (no priority-0 advert, no re-election); rvsd used to restart the instance, which
    // handed the VIP to lb2 for a while.
    dirs.rvsd[0]
        .reload(&keepalived_conf(&lab, 120))
        .expect("lb1 reload");
    // lb2 (BACKUP): the same file again.
    dirs.rvsd[1]
        .reload(&keepalived_conf(&lab, 100))
        .expect("lb2 reload");
    // Longer than lb2's Master_Down_Interval (3.6 s): it would have taken over by then.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        assert!(lb1.holds(VIP).expect("lb1 addresses"), "lb1 lost the VIP");
        assert!(!lb2.holds(VIP).expect("lb2 addresses"), "lb2 took the VIP");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        vrrp_states(&dirs.rvsd[0]),
        vec![("VI_1".to_owned(), "MASTER".to_owned())]
    );
    assert_eq!(
        [runs(&dirs.rvsd[0]), changes(&dirs.rvsd[0])],
        before,
        "lb1 restarted or changed state: {}",
        dirs.rvsd[0].output()
    );
    assert_eq!(
        changes(&dirs.rvsd[1]),
        backup_changes,
        "the unchanged BACKUP changed state: {}",
        dirs.rvsd[1].output()
    );
    assert!(
        dirs.rvsd[0]
            .output()
            .contains("applied in place, states kept")
    );
}

fn vrrp_states(rvsd: &Rvsd) -> Vec<(String, String)> {
    let client = rvs_api::Client::new(rvsd.socket());
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(client.status())
        .expect("GET /v1/status");
    status
        .vrrp
        .into_iter()
        .map(|v| (v.instance, v.state))
        .collect()
}

#[test]
fn vrrp_failures_show_as_fault() {
    if !rvs_lab::root_or_skip("VRRP FAULT lab test") {
        return;
    }
    let lab = HaLab::new(1, &[VIP]).expect("lab");
    let mut dirs = start(&lab, [150, 100]);
    let (lb1, lb2) = (&lab.directors()[0], &lab.directors()[1]);
    dirs.rvsd[0]
        .wait_for_output(
            "VRRP: MASTER for every managed VIP",
            Duration::from_secs(20),
        )
        .expect("lb1 becomes MASTER");
    // The interface goes down under a MASTER: FAULT, the VIP leaves, the peer takes over.
    lb1.set_uplink(false).expect("uplink down");
    wait_until("lb1 in FAULT", Duration::from_secs(5), || {
        vrrp_states(&dirs.rvsd[0]) == vec![("VI_1".to_owned(), "FAULT".to_owned())]
    });
    wait_until("lb2 holds the VIP", Duration::from_secs(10), || {
        lb2.holds(VIP).unwrap_or(false)
    });
    assert!(!lb1.holds(VIP).expect("lb1 addresses"));
    let metrics = rvs_lab::http_get_path(
        lb1.ns(),
        SocketAddr::from(([127, 0, 0, 1], 9595)),
        "/metrics",
    )
    .expect("metrics");
    assert!(
        metrics.contains("rvs_vrrp_state{vrrp_instance=\"VI_1\"} 3"),
        "{metrics}"
    );
    // VRRP that cannot start at all (its interface does not exist): FAULT too, not only a
    // log line, and the VIP stays on standby.
    let broken =
        keepalived_conf(&lab, 100).replace("    interface up0\n", "    interface nosuch0\n");
    dirs.rvsd[1].reload(&broken).expect("lb2 reload");
    wait_until("lb2's VI_1 in FAULT", Duration::from_secs(10), || {
        vrrp_states(&dirs.rvsd[1]) == vec![("VI_1".to_owned(), "FAULT".to_owned())]
    });
    assert!(
        dirs.rvsd[1]
            .output()
            .contains("VRRP failed; its instances are in FAULT")
    );
}
