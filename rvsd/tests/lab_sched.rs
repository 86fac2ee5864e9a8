//! The connection-count schedulers and thresholds end to end in the direct-routing lab
//! (root): real TCP connections held open from the client namespace through rvsd's XDP
//! balancer, services made with rvsadm as an operator would. `-A` without `-s` is wlc and
//! spreads 30 held connections 5/10/15 over weights 1:2:3; lc spreads them 10/10/10; a server
//! at its upper threshold (`-x`) gets no new connection until its count falls below the lower
//! (`-y`), `-L -n` shows the ActiveConn/InActConn the XDP program counted, and sh keeps a
//! client on one server and follows sh-fallback when that server is quiesced; lblc keeps the
//! VIP (one destination address) on one server until it is overloaded, and lblcr grows the
//! destination's server set, each connection where IPVS's model (`rvs_sched`) puts it.

mod lab_common;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use lab_common::{pass_programs, rvsadm, rvsd_bin};
use rvs_lab::{DrLab, HttpSession, Rvsd};

/// The wlc service (made without `-s`).
const VIP_WLC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The lc service.
const VIP_LC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
/// The rr service with thresholds.
const VIP_THR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
/// The sh service (sh-fallback).
const VIP_SH: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 13);

/// A DR lab with `vips`, HTTP responders on port 80 and rvsd balancing on its uplink (the
/// lab, what must live as long as it, rvsd's socket, the real servers' addresses and names).
struct SchedLab {
    lab: DrLab,
    _responders: Vec<rvs_lab::HttpResponder>,
    _pass: Vec<rvs_dataplane::PassProgram>,
    rvsd: Rvsd,
    sock: PathBuf,
    reals: Vec<Ipv4Addr>,
    names: Vec<String>,
}

impl SchedLab {
    /// Builds it; `extra` is appended to rvsd's TOML after `[daemon]`.
    fn start(vips: &[Ipv4Addr], extra: &str) -> SchedLab {
        let lab = DrLab::new(3, vips).expect("lab");
        let responders = lab.serve_http(80).expect("responders");
        let port = lab.switch_lb_port();
        let pass = pass_programs(&[(lab.switch(), port)]);
        let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
        let config = format!(
            "[daemon]\ninterfaces = [\"{}\"]\npin_path = \"{}\"\n{extra}",
            lab.lb_uplink(),
            pin.display()
        );
        let rvsd = Rvsd::start(lab.lb(), rvsd_bin(), &config, &pin).expect("rvsd starts");
        let sock = rvsd.socket().to_owned();
        let reals = lab.real_servers().iter().map(|r| r.addr()).collect();
        let names = lab
            .real_servers()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        SchedLab {
            lab,
            _responders: responders,
            _pass: pass,
            rvsd,
            sock,
            reals,
            names,
        }
    }
}

/// Opens `n` keep-alive connections to `vip`:80 one after the other, each answering once;
/// returns them with the server that answered.
fn hold(lab: &DrLab, vip: Ipv4Addr, n: usize) -> Vec<(HttpSession, String)> {
    (0..n)
        .map(|i| {
            let mut s = HttpSession::connect(lab.client(), SocketAddr::from((vip, 80)))
                .unwrap_or_else(|e| panic!("connection {i} to {vip}: {e:#}"));
            let name = s
                .get()
                .unwrap_or_else(|e| panic!("request {i} to {vip}: {e:#}"));
            (s, name)
        })
        .collect()
}

fn spread(held: &[(HttpSession, String)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, name) in held {
        *m.entry(name.clone()).or_insert(0) += 1;
    }
    m
}

/// (ActiveConn, InActConn) of every real server of `vip`:80 in `rvsadm -L -n`, by address.
fn counts(socket: &Path, vip: Ipv4Addr) -> BTreeMap<Ipv4Addr, (u64, u64)> {
    let listing = rvsadm(socket, &["-L", "-n", "-t", &format!("{vip}:80")]);
    listing
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.first() != Some(&"->") || w.get(1) == Some(&"RemoteAddress:Port") {
                return None;
            }
            let addr: std::net::SocketAddrV4 = w[1].parse().ok()?;
            Some((*addr.ip(), (w[4].parse().ok()?, w[5].parse().ok()?)))
        })
        .collect()
}

/// Waits until `vip`'s listing shows `want` (rvsd's expiry pass runs every few seconds).
fn wait_counts(socket: &Path, vip: Ipv4Addr, want: &BTreeMap<Ipv4Addr, (u64, u64)>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = counts(socket, vip);
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{vip}: counts {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn wlc_lc_and_thresholds_through_rvsd() {
    if !rvs_lab::root_or_skip("scheduler lab test") {
        return;
    }
    // FIN_WAIT lasts 1 s (ipvsadm --set's tcpfin), so closed connections are freed quickly.
    let SchedLab {
        lab,
        _responders,
        _pass,
        rvsd,
        sock,
        reals,
        names,
    } = SchedLab::start(
        &[VIP_WLC, VIP_LC, VIP_THR, VIP_SH],
        "\n[timeouts]\ntcp = 900\ntcp_fin = 1\nudp = 300\n",
    );

    // `-A` without `-s`: IPVS's wlc. Weights 1:2:3, 30 connections held open: 5/10/15.
    rvsadm(&sock, &["-A", "-t", &format!("{VIP_WLC}:80")]);
    for (r, w) in reals.iter().zip(["1", "2", "3"]) {
        rvsadm(
            &sock,
            &[
                "-a",
                "-t",
                &format!("{VIP_WLC}:80"),
                "-r",
                &r.to_string(),
                "-g",
                "-w",
                w,
            ],
        );
    }
    let listing = rvsadm(&sock, &["-L", "-n", "-t", &format!("{VIP_WLC}:80")]);
    assert!(
        listing.contains(&format!("TCP  {VIP_WLC}:80 wlc")),
        "{listing}"
    );
    let wlc = hold(&lab, VIP_WLC, 30);
    let got = spread(&wlc);
    for (name, want) in names.iter().zip([5, 10, 15]) {
        assert_eq!(
            got.get(name).copied(),
            Some(want),
            "wlc 1:2:3 spread {got:?}"
        );
    }
    let want: BTreeMap<Ipv4Addr, (u64, u64)> = reals
        .iter()
        .zip([5, 10, 15])
        .map(|(r, n)| (*r, (n, 0)))
        .collect();
    assert_eq!(
        counts(&sock, VIP_WLC),
        want,
        "ActiveConn of the held connections"
    );

    // lc ignores the weights: 10/10/10.
    rvsadm(&sock, &["-A", "-t", &format!("{VIP_LC}:80"), "-s", "lc"]);
    for (r, w) in reals.iter().zip(["1", "2", "3"]) {
        rvsadm(
            &sock,
            &[
                "-a",
                "-t",
                &format!("{VIP_LC}:80"),
                "-r",
                &r.to_string(),
                "-g",
                "-w",
                w,
            ],
        );
    }
    let lc = hold(&lab, VIP_LC, 30);
    let got = spread(&lc);
    for name in &names {
        assert_eq!(got.get(name).copied(), Some(10), "lc spread {got:?}");
    }

    // Closing the wlc connections: inactive (FIN_WAIT) until they expire, then gone.
    drop(wlc);
    let zero: BTreeMap<Ipv4Addr, (u64, u64)> = reals.iter().map(|r| (*r, (0, 0))).collect();
    wait_counts(&sock, VIP_WLC, &zero);

    // Thresholds under rr: the newest server (rr's first) takes 2 connections (-x 2), then
    // none until its count is below 1 (-y 1).
    let thr = format!("{VIP_THR}:80");
    rvsadm(&sock, &["-A", "-t", &thr, "-s", "rr"]);
    for (i, r) in reals.iter().enumerate() {
        let mut args = vec!["-a", "-t", &thr, "-r"];
        let addr = r.to_string();
        args.push(&addr);
        args.push("-g");
        if i == 2 {
            args.extend(["-x", "2", "-y", "1"]);
        }
        rvsadm(&sock, &args);
    }
    let listing = rvsadm(&sock, &["-L", "-n", "--thresholds", "-t", &thr]);
    assert!(listing.contains("Uthreshold Lthreshold"), "{listing}");
    let first = hold(&lab, VIP_THR, 9);
    let got = spread(&first);
    assert_eq!(
        got.get(&names[2]).copied(),
        Some(2),
        "capped at -x 2: {got:?}"
    );
    // Its two connections close and expire: below the lower threshold, it is chosen again.
    let (mine, others): (Vec<_>, Vec<_>) = first.into_iter().partition(|(_, n)| *n == names[2]);
    drop(mine);
    let mut want = counts(&sock, VIP_THR);
    want.insert(reals[2], (0, 0));
    wait_counts(&sock, VIP_THR, &want);
    let again = hold(&lab, VIP_THR, 3);
    assert!(
        again.iter().any(|(_, n)| *n == names[2]),
        "below -y 1 it takes connections again: {:?}",
        spread(&again)
    );
    drop((others, again, lc));

    // sh: the client (one source address) always reaches the same server; quiesced, that
    // server takes no new connection and sh-fallback sends them all to one other server.
    let sh = format!("{VIP_SH}:80");
    rvsadm(&sock, &["-A", "-t", &sh, "-s", "sh", "-b", "sh-fallback"]);
    for r in &reals {
        rvsadm(&sock, &["-a", "-t", &sh, "-r", &r.to_string(), "-g"]);
    }
    let first = hold(&lab, VIP_SH, 10);
    let got = spread(&first);
    assert_eq!(got.len(), 1, "sh keeps one client on one server: {got:?}");
    let chosen = first[0].1.clone();
    let k = names
        .iter()
        .position(|n| *n == chosen)
        .expect("a lab server");
    rvsadm(
        &sock,
        &[
            "-e",
            "-t",
            &sh,
            "-r",
            &reals[k].to_string(),
            "-g",
            "-w",
            "0",
        ],
    );
    let after = hold(&lab, VIP_SH, 10);
    let moved = spread(&after);
    assert_eq!(
        moved.len(),
        1,
        "sh-fallback picks one other server: {moved:?}"
    );
    assert!(
        !moved.contains_key(&chosen),
        "quiesced {chosen} took new connections: {moved:?}"
    );
    // The open connections stay where they are.
    for (mut s, name) in first {
        assert_eq!(s.get().expect("request on an open connection"), name);
    }
    drop(after);
    assert!(
        !rvsd.output().contains("ERROR"),
        "rvsd logged errors:\n{}",
        rvsd.output()
    );
}

/// The fo service.
const VIP_FO: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 14);
/// The ovf service.
const VIP_OVF: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 15);

#[test]
fn fo_and_ovf_through_rvsd() {
    if !rvs_lab::root_or_skip("scheduler lab test") {
        return;
    }
    let SchedLab {
        lab,
        _responders,
        _pass,
        rvsd,
        sock,
        reals,
        names,
    } = SchedLab::start(&[VIP_FO, VIP_OVF], "");
    let add = |vip: &str, sched: &str, weights: [&str; 3]| {
        rvsadm(&sock, &["-A", "-t", vip, "-s", sched]);
        for (r, w) in reals.iter().zip(weights) {
            rvsadm(
                &sock,
                &["-a", "-t", vip, "-r", &r.to_string(), "-g", "-w", w],
            );
        }
    };

    // fo: every new connection to the heaviest server (weight 3); quiesced, to the next
    // heaviest (weight 2), while the open ones stay.
    let fo = format!("{VIP_FO}:80");
    add(&fo, "fo", ["1", "3", "2"]);
    let listing = rvsadm(&sock, &["-L", "-n", "-t", &fo]);
    assert!(listing.contains(&format!("TCP  {fo} fo")), "{listing}");
    let first = hold(&lab, VIP_FO, 6);
    let got = spread(&first);
    assert_eq!(
        got,
        BTreeMap::from([(names[1].clone(), 6)]),
        "fo: the heaviest takes all"
    );
    rvsadm(
        &sock,
        &[
            "-e",
            "-t",
            &fo,
            "-r",
            &reals[1].to_string(),
            "-g",
            "-w",
            "0",
        ],
    );
    let after = hold(&lab, VIP_FO, 6);
    assert_eq!(
        spread(&after),
        BTreeMap::from([(names[2].clone(), 6)]),
        "fo: the next heaviest once quiesced"
    );
    for (mut s, name) in first {
        assert_eq!(s.get().expect("request on an open connection"), name);
    }
    drop(after);

    // ovf: the heaviest server (weight 3) until its active connections pass its weight,
    // then the next (weight 2) up to 3 active, then the last (weight 1): with 9 held open
    // one after the other, 4 / 3 / 2 (IPVS: a server takes one past its weight).
    let ovf = format!("{VIP_OVF}:80");
    add(&ovf, "ovf", ["1", "3", "2"]);
    let held = hold(&lab, VIP_OVF, 9);
    assert_eq!(
        spread(&held),
        BTreeMap::from([
            (names[0].clone(), 2),
            (names[1].clone(), 4),
            (names[2].clone(), 3)
        ]),
        "ovf overflows by weight"
    );
    drop(held);
    assert!(
        !rvsd.output().contains("ERROR"),
        "rvsd logged errors:\n{}",
        rvsd.output()
    );
}

/// The lblc service.
const VIP_LBLC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 16);
/// The lblcr service.
const VIP_LBLCR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 17);

/// Where IPVS's lblc or lblcr (`sched`) puts each of `n` connections to `vip` held open one
/// after the other (each active once answered) over servers of `weights` (in the order added;
/// IPVS's list is newest first): the lab servers' indexes.
fn locality_model(sched: &str, vip: Ipv4Addr, weights: &[u32], n: usize) -> Vec<usize> {
    let mut lblc = rvs_sched::Lblc::default();
    let mut lblcr = rvs_sched::Lblcr::default();
    let mut active = vec![0u32; weights.len()];
    (0..n)
        .map(|_| {
            // Newest first: list position j is server (len - 1 - j).
            let servers: Vec<rvs_sched::Server> = (0..weights.len())
                .rev()
                .map(|k| rvs_sched::Server {
                    id: std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, k as u8), 80),
                    load: rvs_sched::Load {
                        weight: weights[k],
                        active: active[k],
                        inactive: 0,
                        overloaded: false,
                    },
                })
                .collect();
            let j = match sched {
                "lblc" => lblc.schedule(vip, &servers, 0),
                _ => lblcr.schedule(vip, &servers, 0),
            }
            .expect("a server");
            let k = weights.len() - 1 - j;
            active[k] += 1;
            k
        })
        .collect()
}

#[test]
fn lblc_and_lblcr_through_rvsd() {
    if !rvs_lab::root_or_skip("scheduler lab test") {
        return;
    }
    let SchedLab {
        lab,
        _responders,
        _pass,
        rvsd,
        sock,
        reals,
        names,
    } = SchedLab::start(&[VIP_LBLC, VIP_LBLCR], "");
    let weights = [1u32, 3, 2];
    let add = |vip: &str, sched: &str| {
        rvsadm(&sock, &["-A", "-t", vip, "-s", sched]);
        for (r, w) in reals.iter().zip(weights) {
            rvsadm(
                &sock,
                &[
                    "-a",
                    "-t",
                    vip,
                    "-r",
                    &r.to_string(),
                    "-g",
                    "-w",
                    &w.to_string(),
                ],
            );
        }
        let listing = rvsadm(&sock, &["-L", "-n", "-t", vip]);
        assert!(
            listing.contains(&format!("TCP  {vip} {sched}")),
            "{listing}"
        );
    };
    const HELD: usize = 10;

    // lblc: the VIP's connections stay on wlc's first choice (the newest server, weight 2)
    // while it has no more active connections than its weight; the next (3 active > 2, and a
    // server under half its weight) goes to wlc's choice, which becomes the VIP's server.
    let lblc = format!("{VIP_LBLC}:80");
    add(&lblc, "lblc");
    let held = hold(&lab, VIP_LBLC, HELD);
    let want = locality_model("lblc", VIP_LBLC, &weights, HELD);
    let got: Vec<String> = held.iter().map(|(_, n)| n.clone()).collect();
    let want_names: Vec<String> = want.iter().map(|&k| names[k].clone()).collect();
    assert_eq!(got, want_names, "lblc: each connection where IPVS puts it");
    assert_eq!(
        &want[..4],
        &[2, 2, 2, 1],
        "sticks, then moves once overloaded"
    );
    drop(held);

    // lblcr: the set starts with wlc's choice; each overload adds wlc's choice to the set
    // and the least loaded member serves, so all three servers end up in it.
    let lblcr = format!("{VIP_LBLCR}:80");
    add(&lblcr, "lblcr");
    let held = hold(&lab, VIP_LBLCR, HELD);
    let want = locality_model("lblcr", VIP_LBLCR, &weights, HELD);
    let got: Vec<String> = held.iter().map(|(_, n)| n.clone()).collect();
    let want_names: Vec<String> = want.iter().map(|&k| names[k].clone()).collect();
    assert_eq!(got, want_names, "lblcr: each connection where IPVS puts it");
    assert_eq!(spread(&held).len(), 3, "the set grew to every server");
    // The held connections are counted active, as the schedulers saw them.
    let mut per = BTreeMap::new();
    for &k in &want {
        per.entry(reals[k]).or_insert((0u64, 0u64)).0 += 1;
    }
    assert_eq!(
        counts(&sock, VIP_LBLCR),
        per,
        "ActiveConn of the held connections"
    );
    drop(held);
    assert!(
        !rvsd.output().contains("ERROR"),
        "rvsd logged errors:\n{}",
        rvsd.output()
    );
}
