//! End to end in the direct-routing lab (root): real TCP connections from the client
//! namespace through rvsd's XDP balancer to three real servers that answer with their
//! name; rr shares, wrr weights, quiescing with an open connection.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use rvs_dataplane::PassProgram;
use rvs_lab::{DrLab, HttpResponder, HttpSession, Rvsd, run_many};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

/// rvsd's config for the lab: the balancer on the LB's uplink, one TCP service.
fn config(pin: &Path, scheduler: &str, lab: &DrLab, weights: &[u32]) -> String {
    let mut c = format!(
        "[daemon]\ninterfaces = [\"{}\"]\npin_path = \"{}\"\n\n[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"{scheduler}\"\n",
        lab.lb_uplink(),
        pin.display()
    );
    for (rs, w) in lab.real_servers().iter().zip(weights) {
        c += &format!(
            "[[service.real]]\naddress = \"{}\"\nweight = {w}\n",
            rs.addr()
        );
    }
    c
}

/// Opens `n` connections (one request each) and counts answers per real server; every
/// connection must succeed.
fn shares(lab: &DrLab, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (i, r) in run_many(lab.client(), vip(), n, 8).into_iter().enumerate() {
        match r {
            Ok(name) => *counts.entry(name).or_insert(0) += 1,
            Err(e) => panic!("connection {i} of {n} failed: {e:#}"),
        }
    }
    counts
}

struct Setup {
    // Field order is drop order: daemon and programs before the lab's namespaces.
    rvsd: Rvsd,
    _pass: PassProgram,
    _responders: Vec<HttpResponder>,
    pin: PathBuf,
    lab: DrLab,
}

fn setup(scheduler: &str, weights: &[u32]) -> Setup {
    let lab = DrLab::new(3, &[VIP]).expect("lab");
    let responders = lab.serve_http(80).expect("responders");
    let port = lab.switch_lb_port();
    let pass = lab
        .switch()
        .run(|| PassProgram::attach(port))
        .expect("in switch namespace")
        .expect("XDP pass program on the switch port");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let rvsd = Rvsd::start(
        lab.lb(),
        Path::new(env!("CARGO_BIN_EXE_rvsd")),
        &config(&pin, scheduler, &lab, weights),
        &pin,
    )
    .expect("rvsd starts");
    Setup {
        rvsd,
        _pass: pass,
        _responders: responders,
        pin,
        lab,
    }
}

#[test]
fn dr_rr_wrr_and_quiesce_through_rvsd() {
    if !rvs_lab::root_or_skip("DR lab end-to-end test") {
        return;
    }
    let mut s = setup("rr", &[1, 1, 1]);

    // rr: 300 connections, each real server gets 100 ± 2.
    let counts = shares(&s.lab, 300);
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (name, n) in &counts {
        assert!(
            (98..=102).contains(n),
            "rr share of {name}: {n} ({counts:?})"
        );
    }

    // wrr 1:2:3: 600 connections follow the weights within ±2 % of the total.
    let text = config(&s.pin, "wrr", &s.lab, &[1, 2, 3]);
    s.rvsd.reload(&text).expect("reload");
    let counts = shares(&s.lab, 600);
    for (rs, w) in s.lab.real_servers().iter().zip([1usize, 2, 3]) {
        let got = counts.get(rs.name()).copied().unwrap_or(0);
        let want = 600 * w / 6;
        assert!(
            got.abs_diff(want) <= 12,
            "wrr share of {}: {got}, want {want} ({counts:?})",
            rs.name()
        );
    }

    // Quiesce: a keep-alive connection stays on its server after its weight drops to 0,
    // and new connections avoid it.
    let mut session = HttpSession::connect(s.lab.client(), vip()).expect("session");
    let pinned = session.get().expect("first request");
    let weights: Vec<u32> = s
        .lab
        .real_servers()
        .iter()
        .map(|rs| if rs.name() == pinned { 0 } else { 1 })
        .collect();
    let text = config(&s.pin, "wrr", &s.lab, &weights);
    s.rvsd.reload(&text).expect("reload");
    let counts = shares(&s.lab, 100);
    assert!(
        !counts.contains_key(&pinned),
        "new connections reached quiesced {pinned}: {counts:?}"
    );
    for _ in 0..5 {
        assert_eq!(
            session.get().expect("request on the open connection"),
            pinned
        );
    }
    // Every connection went through the XDP program, and no reply did: replies (VIP:80 →
    // client) would show up as packets that are not for a service.
    let verdicts: BTreeMap<&str, u64> = rvs_dataplane::pinned_verdicts(&s.pin)
        .expect("verdict counters")
        .into_iter()
        .map(|(v, n)| (v.name(), n))
        .collect();
    assert_eq!(verdicts["fwd_new"], 300 + 600 + 1 + 100, "{verdicts:?}");
    assert_eq!(verdicts["pass_not_service"], 0, "{verdicts:?}");
    assert_eq!(verdicts["drop_no_route"], 0, "{verdicts:?}");
    assert!(
        !s.rvsd.output().contains("ERROR"),
        "rvsd logged errors:\n{}",
        s.rvsd.output()
    );
}

#[test]
fn bad_reload_changes_nothing() {
    if !rvs_lab::root_or_skip("DR lab reload test") {
        return;
    }
    let mut s = setup("rr", &[1, 1, 1]);
    let before = shares(&s.lab, 30);
    // A duplicate real server: rejected as a whole, traffic unchanged.
    let mut bad = config(&s.pin, "rr", &s.lab, &[1, 1, 1]);
    bad += &format!(
        "[[service.real]]\naddress = \"{}\"\n",
        s.lab.real_servers()[0].addr()
    );
    s.rvsd.reload_refused(&bad).expect("refusal logged");
    assert!(
        s.rvsd.output().contains("listed twice"),
        "{}",
        s.rvsd.output()
    );
    let after = shares(&s.lab, 30);
    assert_eq!(before, after, "same rr shares after a refused reload");
}

#[test]
fn sigkill_and_restart_keeps_every_connection() {
    if !rvs_lab::root_or_skip("DR lab restart test") {
        return;
    }
    let mut s = setup("rr", &[1, 1, 1]);
    let mut sessions: Vec<(HttpSession, String)> = (0..50)
        .map(|i| {
            let mut session = HttpSession::connect(s.lab.client(), vip())
                .unwrap_or_else(|e| panic!("session {i}: {e:#}"));
            let name = session.get().expect("first request");
            (session, name)
        })
        .collect();
    s.rvsd
        .kill_and_restart(s.lab.lb())
        .expect("rvsd restarts after SIGKILL");
    let log = s.rvsd.output();
    assert!(log.contains("adopted the pinned dataplane state"), "{log}");
    assert!(log.contains("balancer already attached (adopted)"), "{log}");
    for (i, (session, name)) in sessions.iter_mut().enumerate() {
        for _ in 0..2 {
            let again = session
                .get()
                .unwrap_or_else(|e| panic!("connection {i} broke across the restart: {e:#}"));
            assert_eq!(&again, name, "connection {i} moved to another server");
        }
    }
    // New connections are still balanced (the rr cursor carries on: 20 each ± 2).
    let counts = shares(&s.lab, 60);
    for (name, n) in &counts {
        assert!(
            (18..=22).contains(n),
            "rr share of {name} after restart: {n} ({counts:?})"
        );
    }
    let verdicts: BTreeMap<&str, u64> = rvs_dataplane::pinned_verdicts(&s.pin)
        .expect("verdict counters")
        .into_iter()
        .map(|(v, n)| (v.name(), n))
        .collect();
    assert_eq!(
        verdicts["pass_no_conn"], 0,
        "mid-stream packets lost their entry: {verdicts:?}"
    );
    assert_eq!(verdicts["pass_not_service"], 0, "{verdicts:?}");
}
