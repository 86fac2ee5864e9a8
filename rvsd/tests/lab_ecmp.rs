//! Scale-out: three active rvs directors behind a router (BIRD, ECMP with an L4 hash), each
//! announcing the VIP over BGP through its own BIRD, started by rvsd from a keepalived.conf
//! and `--bgp FILE` (root):
//!
//! - a director dies (uplink down, rvsd and its BIRD killed): the router withdraws it (BFD)
//!   and each of 30 keep-alive connections spread over the three directors keeps getting
//!   answers from its real server; 60 new connections afterwards all succeed;
//! - a planned stop (SIGTERM): the VIP is withdrawn while rvsd still runs (it drains,
//!   then exits), and no connection is lost;
//! - real servers all down: every director withdraws the VIP (the router has no route);
//!   one comes back: announced again and answering.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use rvs_dataplane::PassProgram;
use rvs_lab::{
    HttpResponder, HttpSession, Rvsd,
    ecmp::{Detection, EcmpLab},
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const SESSIONS: usize = 30;
/// BFD at 100 ms × 3 (the hold timer, 3 s, backs it up).
const BFD: Detection = Detection::Bfd {
    interval_ms: 100,
    hold: 3,
};
/// How long a session waits for an answer: TCP retransmits while the router converges.
const SESSION_TIMEOUT: Duration = Duration::from_secs(20);

/// The keepalived.conf every director runs: mh with the mh-port flag (every director picks
/// the same real server for a flow), DR, a TCP check each second.
fn keepalived_conf(lab: &EcmpLab) -> String {
    let mut c = format!(
        "virtual_server {VIP} 80 {{\n    delay_loop 1\n    lb_algo mh\n    mh-port\n    lb_kind DR\n    protocol TCP\n"
    );
    for rs in lab.real_servers() {
        c += &format!(
            "    real_server {} 80 {{\n        weight 1\n        TCP_CHECK {{\n            connect_timeout 1\n            retry 1\n        }}\n    }}\n",
            rs.addr()
        );
    }
    c + "}\n"
}

struct Directors {
    rvsd: Vec<Rvsd>,
    _pass: Vec<PassProgram>,
}

fn start(lab: &EcmpLab, detection: Detection, drain_seconds: u32) -> Directors {
    let pass = lab
        .switch_lb_ports()
        .iter()
        .map(|port| {
            lab.switch()
                .run(|| PassProgram::attach(port))
                .expect("switch namespace")
                .expect("pass program")
        })
        .collect();
    let rvsd = lab
        .directors()
        .iter()
        .map(|d| {
            let bgp = lab.dir().join(format!("lb{}-bgp.toml", d.index()));
            std::fs::write(&bgp, d.bgp_toml(lab.dir(), detection, drain_seconds))
                .expect("write bgp.toml");
            let pin = PathBuf::from(format!("/sys/fs/bpf/{}-lb{}", lab.prefix(), d.index()));
            Rvsd::start_keepalived_with(
                d.ns(),
                Path::new(env!("CARGO_BIN_EXE_rvsd")),
                &keepalived_conf(lab),
                &[lab.uplink()],
                &pin,
                &["--bgp", &bgp.display().to_string()],
            )
            .expect("rvsd starts")
        })
        .collect();
    Directors { rvsd, _pass: pass }
}

/// Waits (bounded) until `cond` holds.
fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn status(rvsd: &Rvsd) -> rvs_api::Status {
    block_on(rvs_api::Client::new(rvsd.socket()).status()).expect("GET /v1/status")
}

/// Client port → the director (index) whose connection table holds it.
fn carriers(dirs: &Directors) -> BTreeMap<u16, usize> {
    let mut by_port = BTreeMap::new();
    for (i, r) in dirs.rvsd.iter().enumerate() {
        let list = block_on(rvs_api::Client::new(r.socket()).connections()).expect("connections");
        for c in list.connections {
            if c.virtual_addr == (VIP, 80) {
                by_port.insert(c.client.1, i + 1);
            }
        }
    }
    by_port
}

/// Opens the keep-alive sessions; each one's first answer names its real server.
fn open_sessions(lab: &EcmpLab) -> Vec<(HttpSession, String)> {
    (0..SESSIONS)
        .map(|i| {
            let mut s = HttpSession::connect(lab.client(), SocketAddr::from((VIP, 80)))
                .unwrap_or_else(|e| panic!("session {i}: {e:#}"));
            s.set_io_timeout(SESSION_TIMEOUT).expect("timeout");
            let first = s.get().unwrap_or_else(|e| panic!("session {i}: {e:#}"));
            (s, first)
        })
        .collect()
}

/// Every session answers once more, from the real server it started on.
fn all_answer(sessions: &mut [(HttpSession, String)], when: &str) {
    for (i, (s, first)) in sessions.iter_mut().enumerate() {
        match s.get() {
            Ok(name) => assert_eq!(
                &name, first,
                "{when}: session {i} moved from {first} to {name}"
            ),
            Err(e) => panic!("{when}: session {i} (on {first}) lost: {e:#}"),
        }
    }
}

/// Sessions per director; each must carry some (the ECMP hash spread them).
fn assert_spread(dirs: &Directors, sessions: &[(HttpSession, String)]) -> BTreeMap<usize, usize> {
    let by_port = carriers(dirs);
    let mut per = BTreeMap::new();
    for (s, _) in sessions {
        let port = s.local_addr().expect("local addr").port();
        let d = by_port
            .get(&port)
            .unwrap_or_else(|| panic!("no director holds the session from port {port}"));
        *per.entry(*d).or_insert(0) += 1;
    }
    assert_eq!(
        per.len(),
        dirs.rvsd.len(),
        "the router spread the sessions over every director: {per:?}"
    );
    per
}

fn new_connections_succeed(lab: &EcmpLab, n: usize) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for (i, r) in rvs_lab::run_many(lab.client(), SocketAddr::from((VIP, 80)), n, 8)
        .into_iter()
        .enumerate()
    {
        match r {
            Ok(name) => *names.entry(name).or_insert(0) += 1,
            Err(e) => panic!("new connection {i} of {n} failed: {e:#}"),
        }
    }
    names
}

#[test]
fn a_dead_director_is_withdrawn_and_every_connection_keeps_answering() {
    if !rvs_lab::root_or_skip("ECMP director loss lab test") {
        return;
    }
    let lab = EcmpLab::new(3, 3, &[VIP], BFD).expect("lab");
    let _responders = lab.serve_http(80).expect("responders");
    let mut dirs = start(&lab, BFD, 5);
    lab.wait_next_hops(VIP, &[1, 2, 3], Duration::from_secs(30))
        .expect("every director announces the VIP");
    let mut sessions = open_sessions(&lab);
    let per = assert_spread(&dirs, &sessions);
    eprintln!("sessions per director: {per:?}");

    // lb1 dies as a machine losing power: the cable first (no BGP Cease reaches the
    // router), then its processes.
    let t0 = Instant::now();
    lab.directors()[0].set_uplink(false).expect("uplink down");
    dirs.rvsd[0].kill().expect("kill lb1's rvsd");
    lab.wait_next_hops(VIP, &[2, 3], Duration::from_secs(20))
        .expect("the router withdraws lb1");
    eprintln!(
        "lb1 withdrawn by the router {:?} after its death",
        t0.elapsed()
    );
    all_answer(&mut sessions, "after lb1's death");
    all_answer(&mut sessions, "again");
    let names = new_connections_succeed(&lab, 60);
    assert_eq!(names.values().sum::<usize>(), 60);
    eprintln!("60 new connections: {names:?}");
}

#[test]
fn a_planned_stop_withdraws_first_and_loses_no_connection() {
    if !rvs_lab::root_or_skip("ECMP planned stop lab test") {
        return;
    }
    let lab = EcmpLab::new(3, 3, &[VIP], BFD).expect("lab");
    let _responders = lab.serve_http(80).expect("responders");
    let mut dirs = start(&lab, BFD, 4);
    lab.wait_next_hops(VIP, &[1, 2, 3], Duration::from_secs(30))
        .expect("every director announces the VIP");
    let mut sessions = open_sessions(&lab);
    assert_spread(&dirs, &sessions);

    dirs.rvsd[0].signal(Signal::SIGTERM).expect("SIGTERM lb1");
    lab.wait_next_hops(VIP, &[2, 3], Duration::from_secs(10))
        .expect("the router withdraws lb1");
    // Withdrawn first: rvsd still runs (draining) once the router has moved away.
    let out = dirs.rvsd[0].output();
    assert!(
        out.contains("BGP: VIPs withdrawn; balancing on for the drain period"),
        "{out}"
    );
    assert!(
        !out.contains("rvsd exiting"),
        "exited before the drain: {out}"
    );
    let st = status(&dirs.rvsd[0]);
    let bgp = st.bgp.expect("bgp status");
    assert_eq!(bgp.phase, "draining");
    assert!(bgp.vips.iter().all(|v| !v.announced), "{bgp:?}");
    all_answer(&mut sessions, "during lb1's drain");
    dirs.rvsd[0]
        .wait_exit(Duration::from_secs(15))
        .expect("lb1 exits after the drain");
    let out = dirs.rvsd[0].output();
    let withdrawn = out.find("BGP: VIPs withdrawn").expect("withdrawn line");
    let over = out.find("BGP: drain period over").expect("drain over line");
    let exiting = out.find("rvsd exiting").expect("exit line");
    assert!(withdrawn < over && over < exiting, "{out}");
    all_answer(&mut sessions, "after lb1 stopped");
    new_connections_succeed(&lab, 30);
}

#[test]
fn no_healthy_server_withdraws_the_vip_and_one_back_announces_it() {
    if !rvs_lab::root_or_skip("ECMP health withdrawal lab test") {
        return;
    }
    let lab = EcmpLab::new(3, 3, &[VIP], BFD).expect("lab");
    let mut responders = lab.serve_http(80).expect("responders");
    let dirs = start(&lab, BFD, 2);
    lab.wait_next_hops(VIP, &[1, 2, 3], Duration::from_secs(30))
        .expect("every director announces the VIP");
    for r in &dirs.rvsd {
        // The status polls BIRD once a second: it may lag the router by that much.
        wait_until(
            "the session shows established",
            Duration::from_secs(10),
            || {
                status(r)
                    .bgp
                    .is_some_and(|b| b.peers.len() == 1 && b.peers.iter().all(|p| p.established))
            },
        );
        let bgp = status(r).bgp.expect("bgp status");
        assert_eq!(bgp.phase, "running");
        assert_eq!(bgp.vips.len(), 1);
        assert!(bgp.vips[0].announced, "{bgp:?}");
    }

    responders.clear();
    lab.wait_next_hops(VIP, &[], Duration::from_secs(30))
        .expect("every director withdraws the VIP");
    for r in &dirs.rvsd {
        let bgp = status(r).bgp.expect("bgp status");
        assert!(!bgp.vips[0].announced, "{bgp:?}");
        assert!(
            bgp.vips[0].reason.contains("has 0 healthy real server(s)"),
            "{bgp:?}"
        );
    }

    let rs2 = &lab.real_servers()[1];
    let _back = HttpResponder::spawn(rs2.ns(), SocketAddr::from(([0, 0, 0, 0], 80)), rs2.name())
        .expect("rs2 back");
    lab.wait_next_hops(VIP, &[1, 2, 3], Duration::from_secs(30))
        .expect("every director announces the VIP again");
    let names = new_connections_succeed(&lab, 20);
    assert_eq!(names.keys().collect::<Vec<_>>(), vec!["rs2"], "{names:?}");
    for r in &dirs.rvsd {
        let out = r.output();
        assert_eq!(
            out.matches("VIP 198.18.0.10 withdrawn").count(),
            1,
            "one log line per change: {out}"
        );
    }
}
