//! The connection-count schedulers and IPVS's connection accounting through the real XDP
//! program (root): the kernel recordings of rvs-sched (`tests/fixtures/counts/*.out`, made in
//! the ipvs-vm with real IPVS) are replayed segment by segment through BPF_PROG_TEST_RUN, and
//! after every step each connection must be on the server kernel IPVS chose, in the state it
//! showed, and every server's ActiveConn/InActConn (read from REAL_LOAD) must be the kernel's.
//! `wait` steps let CLOSE entries expire (the CLOSE timeout is shortened to keep the test
//! short) and run rvsd's expiry pass, which unbinds them.

mod common;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use common::*;
use rvs_common::{ConnState, NO_REAL, NS_PER_SEC, Settings};
use rvs_config::Config;
use rvs_dataplane::Dataplane;

/// The client every recording used.
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
/// The CLOSE timeout during the replay (IPVS: 10 s; the recordings wait 12 s).
const CLOSE_SECS: u64 = 2;

/// A real server as the recording added it.
#[derive(Clone, Debug)]
struct Real {
    addr: Ipv4Addr,
    weight: u32,
    upper: u32,
    lower: u32,
}

/// What the kernel showed after a step.
#[derive(Debug, Default)]
struct Shown {
    /// Per real server: (weight, ActiveConn, InActConn).
    counts: BTreeMap<Ipv4Addr, (u32, u64, u64)>,
    /// Per client port: (state, real server).
    conns: BTreeMap<u16, (String, Ipv4Addr)>,
}

#[derive(Debug)]
enum Event {
    Add(Real),
    Edit(Real),
    Step(Vec<(char, u16)>, Shown),
    Wait(Shown),
}

struct Scenario {
    vip: SocketAddrV4,
    /// The scheduler's name, empty when the recording gave no `-s` (IPVS's wlc).
    sched: String,
    events: Vec<Event>,
}

fn flag(words: &[&str], f: &str) -> Option<u32> {
    let i = words.iter().position(|w| *w == f)?;
    words.get(i + 1)?.parse().ok()
}

fn parse_real(cmd: &str) -> Real {
    let w: Vec<&str> = cmd.split_whitespace().collect();
    let r = w[w.iter().position(|x| *x == "-r").expect("-r") + 1];
    Real {
        addr: r.split(':').next().expect("addr").parse().expect("addr"),
        weight: flag(&w, "-w").expect("-w"),
        upper: flag(&w, "-x").unwrap_or(0),
        lower: flag(&w, "-y").unwrap_or(0),
    }
}

fn parse(name: &str) -> Scenario {
    let path = format!(
        "{}/../rvs-sched/tests/fixtures/counts/{name}.out",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(text.contains("# kernel 6.1.0-56-amd64, ipvsadm v1.31"));
    let mut sc = Scenario {
        vip: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        sched: String::new(),
        events: Vec::new(),
    };
    let mut section = String::new();
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("# ipvsadm ") {
            if let Some(rest) = cmd.strip_prefix("-A -t ") {
                let mut it = rest.splitn(2, ' ');
                sc.vip = it.next().expect("vip").parse().expect("vip");
                let s = it.next().unwrap_or("").trim();
                sc.sched = s.strip_prefix("-s ").unwrap_or(s).trim().to_string();
            } else if cmd.starts_with("-a ") {
                sc.events.push(Event::Add(parse_real(cmd)));
            } else if cmd.starts_with("-e ") {
                sc.events.push(Event::Edit(parse_real(cmd)));
            }
            continue;
        }
        if let Some(ops) = line.strip_prefix("### step ") {
            let ops = ops
                .split_whitespace()
                .map(|o| {
                    let (op, port) = o.split_once(':').expect("op:port");
                    (op.chars().next().expect("op"), port.parse().expect("port"))
                })
                .collect();
            sc.events.push(Event::Step(ops, Shown::default()));
            continue;
        }
        if line.starts_with("### wait ") {
            sc.events.push(Event::Wait(Shown::default()));
            continue;
        }
        if let Some(s) = line.strip_prefix("### ") {
            section = s.to_string();
            continue;
        }
        let shown = match sc.events.last_mut() {
            Some(Event::Step(_, s)) | Some(Event::Wait(s)) => s,
            _ => continue,
        };
        let w: Vec<&str> = line.split_whitespace().collect();
        match section.as_str() {
            "ipvsadm -Ln" if w.first() == Some(&"->") && w[1] != "RemoteAddress:Port" => {
                let rs: SocketAddrV4 = w[1].parse().expect("real");
                let n = |i: usize| w[i].parse::<u64>().expect("count");
                shown.counts.insert(*rs.ip(), (n(3) as u32, n(4), n(5)));
            }
            "ipvsadm -Lnc" if w.first() == Some(&"TCP") => {
                let src: SocketAddrV4 = w[3].parse().expect("client");
                let rs: SocketAddrV4 = w[5].parse().expect("real");
                shown.conns.insert(src.port(), (w[2].to_string(), *rs.ip()));
            }
            _ => {}
        }
    }
    sc
}

/// The rvs configuration for the recording's servers so far; the kernel's server `k` (in
/// the order added) is the packet namespace's extra real `k`.
fn config(sc: &Scenario, reals: &[Real]) -> String {
    let mut c = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{}\"\nport = {}\n",
        sc.vip.ip(),
        sc.vip.port()
    );
    if !sc.sched.is_empty() {
        c += &format!("scheduler = \"{}\"\n", sc.sched);
    }
    for (k, r) in reals.iter().enumerate() {
        c += &format!(
            "[[service.real]]\naddress = \"{}\"\nweight = {}\n",
            extra_real(k as u8).0,
            r.weight
        );
        if r.upper != 0 {
            c += &format!("u_threshold = {}\n", r.upper);
        }
        if r.lower != 0 {
            c += &format!("l_threshold = {}\n", r.lower);
        }
    }
    if sc.sched == "lblcr" {
        // The recording set lblcr_expiration to 5 s and waited 12 s once; the replay's wait
        // is CLOSE_SECS + 1.2 s, so the set may shed a member only after that wait, as in
        // the kernel.
        c += &format!("[schedulers]\nlblcr_expiration = {LBLCR_EXPIRATION_SECS}\n");
    }
    c
}

/// lblcr_expiration during the replay: shorter than its wait, longer than its steps.
const LBLCR_EXPIRATION_SECS: u64 = CLOSE_SECS;

fn apply(dp: &mut Dataplane, text: &str) -> Config {
    let cfg = Config::from_toml(text).expect("replay config is valid");
    dp.apply(&cfg).expect("apply");
    let mut s = Settings::default();
    s.timeouts_ns[ConnState::Close as usize] = CLOSE_SECS * NS_PER_SEC;
    dp.set_settings(&s).expect("settings");
    cfg
}

/// Checks REAL_LOAD's counts and the connection table against what the kernel showed.
fn check(name: &str, step: usize, dp: &Dataplane, cfg: &Config, reals: &[Real], shown: &Shown) {
    let svc = &cfg.services[0];
    for (k, r) in reals.iter().enumerate() {
        let addr = extra_real(k as u8).0;
        let rid = dp
            .planner()
            .real_id(&svc.id(), addr, svc.port)
            .expect("real id");
        let got = dp.real_conns(rid);
        let (_, active, inactive) = shown.counts[&r.addr];
        assert_eq!(
            (got.active, got.inactive),
            (active, inactive),
            "{name} step {step}: ActiveConn/InActConn of {} (kernel's {})",
            addr,
            r.addr
        );
    }
    let ours: BTreeMap<u16, (String, Ipv4Addr)> = dp
        .connections()
        .into_iter()
        .map(|(key, c, _)| {
            let k = reals
                .iter()
                .enumerate()
                .find(|(k, _)| {
                    dp.real(c.real).map(|e| e.addr)
                        == Some(u32::from_ne_bytes(extra_real(*k as u8).0.octets()))
                })
                .map(|(_, r)| r.addr)
                .expect("a connection of a known server");
            let state = ConnState::from_u8(c.state)
                .expect("state")
                .name()
                .to_string();
            (u16::from_be(key.sport), (state, k))
        })
        .collect();
    assert_eq!(ours, shown.conns, "{name} step {step}: connections");
}

fn replay(name: &str) {
    replay_with(name, |_, _, _| {});
}

/// As [`replay`], calling `after_step(dp, cfg, step)` after each checked step.
fn replay_with(name: &str, mut after_step: impl FnMut(&mut Dataplane, &Config, usize) + Send) {
    let sc = parse(name);
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane("", |dp, ifs| {
        let mut reals: Vec<Real> = Vec::new();
        let mut cfg = apply(dp, "");
        let mut dirty = false;
        let mut steps = 0;
        for (n, ev) in sc.events.iter().enumerate() {
            match ev {
                Event::Add(r) => {
                    reals.push(r.clone());
                    dirty = true;
                }
                Event::Edit(r) => {
                    let i = reals.iter().position(|x| x.addr == r.addr).expect("edited");
                    reals[i] = r.clone();
                    dirty = true;
                }
                Event::Step(ops, shown) => {
                    if dirty {
                        cfg = apply(dp, &config(&sc, &reals));
                        dirty = false;
                    }
                    for &(op, sport) in ops {
                        let flags = match op {
                            's' => Tcp::Syn,
                            'a' => Tcp::Ack,
                            'f' => Tcp::Fin,
                            'r' => Tcp::Rst,
                            other => panic!("{name}: op {other}"),
                        };
                        let frame =
                            tcp_frame((CLIENT, sport), (*sc.vip.ip(), sc.vip.port()), flags, b"");
                        let r = run(dp, &frame, ifs.a0);
                        if r.action == XDP_TX {
                            // Sent to the server the entry names (checked below).
                            assert!(
                                (0..reals.len() as u8).any(|k| r.frame[..6] == extra_real(k).1),
                                "{name} event {n}: {op}:{sport} sent to an unknown MAC"
                            );
                        }
                    }
                    steps += 1;
                    check(name, steps, dp, &cfg, &reals, shown);
                    after_step(dp, &cfg, steps);
                }
                Event::Wait(shown) => {
                    std::thread::sleep(Duration::from_millis(CLOSE_SECS * 1000 + 1200));
                    dp.scan_conns().expect("expiry pass");
                    steps += 1;
                    check(name, steps, dp, &cfg, &reals, shown);
                }
            }
        }
        assert!(steps >= 2, "{name}: replayed {steps} steps");
    });
}

#[test]
fn lc_matches_kernel_ipvs() {
    if root() {
        replay("lc");
    }
}

#[test]
fn wlc_matches_kernel_ipvs() {
    if root() {
        replay("wlc");
    }
}

#[test]
fn wlc_many_servers_matches_kernel_ipvs() {
    if root() {
        replay("wlc-big");
    }
}

#[test]
fn no_scheduler_is_wlc_as_in_kernel_ipvs() {
    if root() {
        replay("wlc-default");
    }
}

#[test]
fn sed_matches_kernel_ipvs() {
    if root() {
        replay("sed");
    }
}

#[test]
fn nq_matches_kernel_ipvs() {
    if root() {
        replay("nq");
    }
}

/// The service id the planner gave the replay's one service.
fn service_id(dp: &Dataplane, cfg: &Config) -> u32 {
    dp.planner()
        .service_entry(&cfg.services[0].id())
        .expect("service planned")
        .id
}

#[test]
fn lblc_matches_kernel_ipvs() {
    if !root() {
        return;
    }
    let vip = parse("lblc").vip;
    let mut entries = Vec::new();
    replay_with("lblc", |dp, cfg, _| {
        let id = service_id(dp, cfg);
        entries.push(dp.lblc_entry(id, *vip.ip()).map(|e| e.0));
    });
    // The destination's server changed during the recording (overload, then quiesce).
    assert!(entries.iter().all(Option::is_some), "{entries:?}");
    let mut distinct = entries.clone();
    distinct.dedup();
    assert!(distinct.len() >= 2, "{entries:?}");
}

#[test]
fn lblcr_matches_kernel_ipvs() {
    if !root() {
        return;
    }
    let vip = parse("lblcr").vip;
    let mut sizes = Vec::new();
    replay_with("lblcr", |dp, cfg, _| {
        let id = service_id(dp, cfg);
        sizes.push(dp.lblcr_set(id, *vip.ip()).map_or(0, |s| s.members.len()));
    });
    let max = sizes.iter().copied().max().unwrap_or(0);
    assert!(max >= 2, "the set grew: {sizes:?}");
    assert!(
        sizes.windows(2).any(|w| w[1] < w[0]),
        "the set shed a member after the expiration: {sizes:?}"
    );
}

#[test]
fn lc_with_thresholds_matches_kernel_ipvs() {
    if root() {
        replay("thresh-lc");
    }
}

/// Which extra real a forwarded frame went to.
fn sent_to(r: &rvs_dataplane::testrun::XdpRun) -> Option<u8> {
    (r.action == XDP_TX)
        .then(|| (0..rvs_lab::fib::EXTRA_REALS).find(|&k| r.frame[..6] == extra_real(k).1))
        .flatten()
}

#[test]
fn rr_skips_a_server_over_its_upper_threshold_until_it_falls_below() {
    if !root() {
        return;
    }
    let vip = Ipv4Addr::new(198, 18, 0, 10);
    let mut text = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{vip}\"\nport = 80\nscheduler = \"rr\"\n"
    );
    for k in 0..3u8 {
        text += &format!("[[service.real]]\naddress = \"{}\"\n", extra_real(k).0);
    }
    // The newest server (IPVS's list head, rr's first choice) takes one connection at most.
    text += "u_threshold = 1\n";
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane("", |dp, ifs| {
        apply(dp, &text);
        let syn = |dp: &mut Dataplane, port: u16| {
            let f = tcp_frame((CLIENT, port), (vip, 80), Tcp::Syn, b"");
            sent_to(&run(dp, &f, ifs.a0))
        };
        let got: Vec<Option<u8>> = (0..6).map(|i| syn(dp, 2000 + i)).collect();
        // IPVS's rr over the list 2, 1, 0 with 2 overloaded after its first connection.
        assert_eq!(got, [2, 1, 0, 1, 0, 1].map(Some));
        // Its connection closes (RST after the handshake: CLOSE) and expires: the unbind
        // clears OVERLOAD (no lower threshold: total * 4 < upper * 3), and rr reaches it again.
        for flags in [Tcp::Ack, Tcp::Rst] {
            run(
                dp,
                &tcp_frame((CLIENT, 2000), (vip, 80), flags, b""),
                ifs.a0,
            );
        }
        std::thread::sleep(Duration::from_millis(CLOSE_SECS * 1000 + 1200));
        dp.scan_conns().expect("expiry pass");
        let next: Vec<Option<u8>> = (0..3).map(|i| syn(dp, 3000 + i)).collect();
        assert!(next.contains(&Some(2)), "{next:?}");
    });
}

#[test]
fn persistence_templates_are_counted_as_persistconn() {
    if !root() {
        return;
    }
    let vip = Ipv4Addr::new(198, 18, 0, 10);
    let text = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{vip}\"\nport = 80\nscheduler = \"wlc\"\npersistence = {{ timeout = 300, netmask = \"255.255.255.255\" }}\n[[service.real]]\naddress = \"{}\"\n",
        extra_real(0).0
    );
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane("", |dp, ifs| {
        let cfg = apply(dp, &text);
        // Two connections of one client share one template; a second client makes another.
        for (client, port) in [
            (CLIENT, 1000),
            (CLIENT, 1001),
            (Ipv4Addr::new(198, 18, 100, 2), 1000),
        ] {
            let f = tcp_frame((client, port), (vip, 80), Tcp::Syn, b"");
            assert_eq!(run(dp, &f, ifs.a0).action, XDP_TX);
        }
        dp.scan_conns().expect("scan");
        let svc = &cfg.services[0];
        let rid = dp
            .planner()
            .real_id(&svc.id(), extra_real(0).0, 80)
            .expect("real id");
        let c = dp.real_conns(rid);
        // IPVS: templates count in PersistConn only, connections in ActiveConn.
        assert_eq!((c.active, c.inactive, c.persist), (3, 0, 2));
    });
}

/// The hash recordings: the final server list (after `-e` edits), then one SYN from each
/// of many sources and the server kernel IPVS gave each (`ipvsadm -Lnc`).
fn replay_hash(name: &str) {
    let path = format!(
        "{}/../rvs-sched/tests/fixtures/counts/{name}.out",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(text.contains("# kernel 6.1.0-56-amd64, ipvsadm v1.31"));
    let mut vip = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let mut sched = String::new();
    let mut reals: Vec<Real> = Vec::new();
    let mut conns: Vec<(SocketAddrV4, Ipv4Addr)> = Vec::new();
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("# ipvsadm ") {
            if let Some(rest) = cmd.strip_prefix("-A -t ") {
                let mut it = rest.splitn(2, ' ');
                vip = it.next().expect("vip").parse().expect("vip");
                sched = it.next().unwrap_or("").trim().to_string();
            } else if cmd.starts_with("-a ") {
                reals.push(parse_real(cmd));
            } else if cmd.starts_with("-e ") {
                let r = parse_real(cmd);
                let i = reals.iter().position(|x| x.addr == r.addr).expect("edited");
                reals[i] = r;
            }
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&"TCP") && w.len() == 6 {
            let src: SocketAddrV4 = w[3].parse().expect("client");
            let rs: SocketAddrV4 = w[5].parse().expect("real");
            conns.push((src, *rs.ip()));
        }
    }
    assert!(conns.len() >= 100, "{name}: {} connections", conns.len());
    let words: Vec<&str> = sched.split_whitespace().collect();
    let flags: Vec<String> = words
        .iter()
        .position(|w| *w == "-b")
        .map(|i| {
            words[i + 1]
                .split(',')
                .map(|f| format!("\"{f}\""))
                .collect()
        })
        .unwrap_or_default();
    let sc = Scenario {
        vip,
        sched: "sh".into(),
        events: Vec::new(),
    };
    let text = config(&sc, &reals).replacen(
        "scheduler = \"sh\"\n",
        &format!("scheduler = \"sh\"\nsched_flags = [{}]\n", flags.join(", ")),
        1,
    );
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane("", |dp, ifs| {
        apply(dp, &text);
        for (src, want) in &conns {
            let f = tcp_frame(
                (*src.ip(), src.port()),
                (*vip.ip(), vip.port()),
                Tcp::Syn,
                b"",
            );
            let k = reals
                .iter()
                .position(|r| r.addr == *want)
                .expect("known server") as u8;
            let got = sent_to(&run(dp, &f, ifs.a0));
            assert_eq!(got, Some(k), "{name}: {src} (kernel: {want})");
        }
    });
}

#[test]
fn sh_matches_kernel_ipvs() {
    if root() {
        replay_hash("sh");
    }
}

#[test]
fn sh_port_matches_kernel_ipvs() {
    if root() {
        replay_hash("sh-port");
    }
}

#[test]
fn sh_fallback_matches_kernel_ipvs() {
    if root() {
        replay_hash("sh-fallback");
    }
}

#[test]
fn sh_port_and_fallback_match_kernel_ipvs() {
    if root() {
        replay_hash("sh-both");
    }
}

#[test]
fn fo_matches_kernel_ipvs() {
    if root() {
        replay("fo");
    }
}

#[test]
fn fo_with_thresholds_matches_kernel_ipvs() {
    if root() {
        replay("thresh-fo");
    }
}

#[test]
fn ovf_matches_kernel_ipvs() {
    if root() {
        replay("ovf");
    }
}

/// dh's recording: one dh service on each of 40 VIPs (`ipvsadm -A -t A..B:80`, one per
/// address) with the same servers, one SYN to each VIP; the kernel's choice per VIP
/// (`ipvsadm -Lnc`), and no entry where the bucket's server has weight 0 (IPVS drops).
#[test]
fn dh_matches_kernel_ipvs() {
    if !root() {
        return;
    }
    let name = "dh";
    let path = format!(
        "{}/../rvs-sched/tests/fixtures/counts/{name}.out",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(text.contains("# kernel 6.1.0-56-amd64, ipvsadm v1.31"));
    let mut vips: Vec<Ipv4Addr> = Vec::new();
    let mut port = 0u16;
    let mut reals: Vec<Real> = Vec::new();
    let mut chosen: BTreeMap<Ipv4Addr, (u16, Ipv4Addr)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("# ipvsadm ") {
            if let Some(rest) = cmd.strip_prefix("-A -t ") {
                // 198.18.0.100..139:80
                let (range, p) = rest
                    .split_whitespace()
                    .next()
                    .expect("vip")
                    .split_once(':')
                    .expect("port");
                port = p.parse().expect("port");
                let (first, last) = range.split_once("..").expect("range");
                let first: Ipv4Addr = first.parse().expect("first vip");
                let o = first.octets();
                let last: u8 = last.parse().expect("last octet");
                vips = (o[3]..=last)
                    .map(|d| Ipv4Addr::new(o[0], o[1], o[2], d))
                    .collect();
            } else if cmd.starts_with("-a ") {
                reals.push(parse_real(cmd));
            }
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&"TCP") && w.len() == 6 {
            let src: SocketAddrV4 = w[3].parse().expect("client");
            let vip: SocketAddrV4 = w[4].parse().expect("vip");
            let rs: SocketAddrV4 = w[5].parse().expect("real");
            chosen.insert(*vip.ip(), (src.port(), *rs.ip()));
        }
    }
    assert_eq!(vips.len(), 40);
    // Only the weight-0 server's buckets lose their SYNs (the recording's sendto errors).
    let dropped = text.matches("sendto: Operation not permitted").count();
    assert_eq!(chosen.len() + dropped, vips.len());
    assert!(dropped > 0);
    let mut toml = String::new();
    for vip in &vips {
        let sc = Scenario {
            vip: SocketAddrV4::new(*vip, port),
            sched: "dh".into(),
            events: Vec::new(),
        };
        toml += &config(&sc, &reals);
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane("", |dp, ifs| {
        apply(dp, &toml);
        let (mut forwarded, mut none) = (0, 0);
        for (n, vip) in vips.iter().enumerate() {
            // The recording's client port for VIP .1NN is 11NN; a dropped one has none shown.
            let sport = chosen.get(vip).map_or(1100 + n as u16, |c| c.0);
            let f = tcp_frame((CLIENT, sport), (*vip, port), Tcp::Syn, b"");
            let got = sent_to(&run(dp, &f, ifs.a0));
            match chosen.get(vip) {
                Some(&(_, want)) => {
                    let k = reals.iter().position(|r| r.addr == want).expect("known") as u8;
                    assert_eq!(got, Some(k), "{vip}: kernel chose {want}");
                    forwarded += 1;
                }
                None => {
                    assert_eq!(got, None, "{vip}: IPVS found no server");
                    none += 1;
                }
            }
        }
        assert_eq!((forwarded, none), (chosen.len(), dropped));
    });
}

/// mh-fallback's recordings: the servers as added (the planner's last_weight), then the
/// `-e` that quiesces one of them, which keeps its slots; one SYN from each of 240 sources
/// and the kernel's server for each: the XDP program rehashes past the quiesced slots to
/// the same server.
fn replay_mh_fallback(name: &str, flags: &str) {
    let path = format!(
        "{}/../rvs-sched/tests/fixtures/counts/{name}.out",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(text.contains("# kernel 6.1.0-56-amd64, ipvsadm v1.31"));
    let mut vip = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let mut added: Vec<Real> = Vec::new();
    let mut edited: Vec<Real> = Vec::new();
    let mut conns: Vec<(SocketAddrV4, Ipv4Addr)> = Vec::new();
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("# ipvsadm ") {
            if let Some(rest) = cmd.strip_prefix("-A -t ") {
                vip = rest
                    .split_whitespace()
                    .next()
                    .expect("vip")
                    .parse()
                    .expect("vip");
                assert!(rest.contains(flags), "{name}: -b {flags}");
            } else if cmd.starts_with("-a ") {
                added.push(parse_real(cmd));
                edited.push(parse_real(cmd));
            } else if cmd.starts_with("-e ") {
                let r = parse_real(cmd);
                let i = edited
                    .iter()
                    .position(|x| x.addr == r.addr)
                    .expect("edited");
                edited[i] = r;
            }
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&"TCP") && w.len() == 6 {
            let src: SocketAddrV4 = w[3].parse().expect("client");
            let rs: SocketAddrV4 = w[5].parse().expect("real");
            conns.push((src, *rs.ip()));
        }
    }
    assert_eq!(conns.len(), 240, "{name}: every SYN was scheduled");
    assert!(
        added
            .iter()
            .zip(&edited)
            .any(|(a, e)| a.weight > 0 && e.weight == 0),
        "{name}: a server was quiesced"
    );
    let sc = Scenario {
        vip,
        sched: "mh".into(),
        events: Vec::new(),
    };
    let flag_list: Vec<String> = flags.split(',').map(|f| format!("\"{f}\"")).collect();
    let with_flags = |reals: &[Real]| {
        config_as_kernel(&sc, reals).replacen(
            "scheduler = \"mh\"\n",
            &format!(
                "scheduler = \"mh\"\nsched_flags = [{}]\n",
                flag_list.join(", ")
            ),
            1,
        )
    };
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane("", |dp, ifs| {
        // mh's table hashes the servers' own addresses: use the kernel's, on a0's segment.
        kernel_reals_on_a0(&edited);
        apply(dp, &with_flags(&added));
        apply(dp, &with_flags(&edited));
        // The table as IPVS built it (newest first, last non-zero weights): how many of the
        // sources' first slots belong to the quiesced server, so the rehash is exercised.
        let dests: Vec<rvs_sched::Dest> = added
            .iter()
            .rev()
            .map(|r| rvs_sched::Dest {
                addr: r.addr,
                port: vip.port(),
                weight: r.weight,
            })
            .collect();
        let table = rvs_sched::maglev_table(&dests, rvs_sched::IPVS_MH_TABLE_SIZE).expect("table");
        let n = edited.len();
        let mut rehashed = 0;
        for (src, want) in &conns {
            let first =
                rvs_sched::mh_pick(&table, *src.ip(), src.port(), flags.contains("mh-port"));
            if first != NO_REAL && edited[n - 1 - first as usize].weight == 0 {
                rehashed += 1;
            }
            let f = tcp_frame(
                (*src.ip(), src.port()),
                (*vip.ip(), vip.port()),
                Tcp::Syn,
                b"",
            );
            let k = edited
                .iter()
                .position(|r| r.addr == *want)
                .expect("known server") as u8;
            assert!(
                edited[k as usize].weight > 0,
                "{name}: kernel chose a quiesced server"
            );
            let r = run(dp, &f, ifs.a0);
            let got = (r.action == XDP_TX)
                .then(|| (0..n as u8).find(|&k| r.frame[..6] == kernel_mac(k)))
                .flatten();
            assert_eq!(got, Some(k), "{name}: {src} (kernel: {want})");
        }
        assert!(rehashed > 10, "{name}: {rehashed} sources rehashed");
    });
}

#[test]
fn mh_fallback_matches_kernel_ipvs() {
    if root() {
        replay_mh_fallback("mh-fallback", "mh-fallback");
    }
}

#[test]
fn mh_fallback_and_port_match_kernel_ipvs() {
    if root() {
        replay_mh_fallback("mh-fallback-port", "mh-fallback,mh-port");
    }
}

/// The MAC given to the recording's server `k` (in the order added) on a0's segment.
fn kernel_mac(k: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x04, k]
}

/// Puts the recording's own server addresses on a0's segment of the test namespace (the
/// calling thread is in it): an on-link route and a permanent neighbour each.
fn kernel_reals_on_a0(reals: &[Real]) {
    for (k, r) in reals.iter().enumerate() {
        let mac = rvs_lab::fib::mac_string(kernel_mac(k as u8));
        for cmd in [
            format!("ip route replace {}/32 dev a0", r.addr),
            format!(
                "ip neigh replace {} lladdr {mac} dev a0 nud permanent",
                r.addr
            ),
        ] {
            let argv: Vec<&str> = cmd.split(' ').collect();
            let st = std::process::Command::new(argv[0])
                .args(&argv[1..])
                .status()
                .expect("run ip");
            assert!(st.success(), "{cmd}");
        }
    }
}

/// As [`config`], with the recording's own server addresses.
fn config_as_kernel(sc: &Scenario, reals: &[Real]) -> String {
    let mut c = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{}\"\nport = {}\nscheduler = \"{}\"\n",
        sc.vip.ip(),
        sc.vip.port(),
        sc.sched
    );
    for r in reals {
        c += &format!(
            "[[service.real]]\naddress = \"{}\"\nweight = {}\n",
            r.addr, r.weight
        );
    }
    c
}

/// Sets real `rid`'s ActiveConn/InActConn in the pinned REAL_LOAD map (its first word).
fn set_conns(dp: &Dataplane, rid: u32, active: u32, inactive: u32) {
    let md = aya::maps::MapData::from_pin(dp.pin_dir().join(rvs_common::maps::REAL_LOAD))
        .expect("pinned REAL_LOAD");
    let mut a: aya::maps::Array<_, [u64; 4]> =
        aya::maps::Array::try_from(aya::maps::Map::Array(md)).expect("array");
    let mut v = a.get(&rid, 0).expect("load");
    v[0] = (u64::from(active) << 32) | u64::from(inactive);
    a.set(rid, v, 0).expect("set load");
}

/// twos draws at random in the kernel (and is not in the recording VM's 6.1), so its
/// distribution is checked, not a sequence: for fixed loads, the exact probability of each
/// server follows from `rvs_sched::twos` over every pair of draws in `[0, W]`; the XDP
/// program's choices over a bounded sample must fit it (Pearson's chi-square below 30 with 2
/// degrees of freedom: a false failure has probability about 3e-7). One-packet UDP
/// scheduling keeps the loads fixed (no entry is bound).
#[test]
fn twos_distribution_matches_ipvs() {
    if !root() {
        return;
    }
    const SAMPLES: u32 = 4000;
    let vip = Ipv4Addr::new(198, 18, 0, 10);
    let weights = [1u32, 2, 3];
    let mut text = format!(
        "[[service]]\nprotocol = \"udp\"\naddress = \"{vip}\"\nport = 53\nscheduler = \"twos\"\none_packet = true\n"
    );
    for (k, w) in weights.iter().enumerate() {
        text += &format!(
            "[[service.real]]\naddress = \"{}\"\nweight = {w}\n",
            extra_real(k as u8).0
        );
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane("", |dp, ifs| {
        let cfg = apply(dp, &text);
        let svc = &cfg.services[0];
        let rids: Vec<u32> = (0..weights.len() as u8)
            .map(|k| {
                dp.planner()
                    .real_id(&svc.id(), extra_real(k).0, 53)
                    .expect("real id")
            })
            .collect();
        // (active, inactive) per server in config order: idle, then unequal loads where
        // the lighter-per-weight rule changes the first draw's choice.
        for loads in [[(0, 0), (0, 0), (0, 0)], [(0, 3), (5, 0), (2, 7)]] {
            for (k, &(a, i)) in loads.iter().enumerate() {
                set_conns(dp, rids[k], a, i);
            }
            // IPVS's list is newest first: config order reversed.
            let list: Vec<rvs_sched::Load> = (0..weights.len())
                .rev()
                .map(|k| rvs_sched::Load {
                    weight: weights[k],
                    active: loads[k].0,
                    inactive: loads[k].1,
                    overloaded: false,
                })
                .collect();
            let bound = rvs_sched::twos_draw_bound(&list).expect("usable servers");
            let mut exact = vec![0u64; weights.len()];
            for r1 in 0..bound {
                for r2 in 0..bound {
                    let j = rvs_sched::twos(&list, r1, r2).expect("a choice");
                    exact[weights.len() - 1 - j] += 1;
                }
            }
            let pairs = u64::from(bound) * u64::from(bound);
            let mut seen = vec![0u64; weights.len()];
            for i in 0..SAMPLES {
                let f = udp_frame((CLIENT, 1000 + i as u16), (vip, 53), b"q");
                let k = sent_to(&run(dp, &f, ifs.a0)).expect("forwarded");
                seen[k as usize] += 1;
            }
            let chi2: f64 = exact
                .iter()
                .zip(&seen)
                .map(|(&e, &o)| {
                    let e = e as f64 * f64::from(SAMPLES) / pairs as f64;
                    (o as f64 - e).powi(2) / e
                })
                .sum();
            assert!(
                chi2 < 30.0,
                "loads {loads:?}: seen {seen:?}, exact {exact:?} of {pairs}, chi2 {chi2}"
            );
            // Nothing was bound: the loads stayed as set.
            for (k, &(a, i)) in loads.iter().enumerate() {
                let c = dp.real_conns(rids[k]);
                assert_eq!((c.active, c.inactive), (u64::from(a), u64::from(i)));
            }
        }
    });
}

/// lblc's table through the XDP program and IPVS's periodic check: a destination sticks to
/// its server; the full expiration (every 30th run) drops an entry unused for
/// `lblc_expiration`, an entry whose service is deleted goes at the next run, and a server
/// removed from the service is not used again by the entry that names it.
#[test]
fn lblc_table_expires_as_ipvs_checks_it() {
    if !root() {
        return;
    }
    let vip = Ipv4Addr::new(198, 18, 0, 10);
    let service = |reals: &[u8], expiration: u32| {
        let mut t = format!(
            "[[service]]\nprotocol = \"tcp\"\naddress = \"{vip}\"\nport = 80\nscheduler = \"lblc\"\n"
        );
        for &k in reals {
            t += &format!("[[service.real]]\naddress = \"{}\"\n", extra_real(k).0);
        }
        t + &format!("[schedulers]\nlblc_expiration = {expiration}\n")
    };
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane("", |dp, ifs| {
        let cfg = apply(dp, &service(&[0, 1, 2], 1));
        let id = service_id(dp, &cfg);
        let syn = |dp: &mut Dataplane, port: u16| {
            let f = tcp_frame((CLIENT, port), (vip, 80), Tcp::Syn, b"");
            sent_to(&run(dp, &f, ifs.a0))
        };
        // IPVS's list is newest first: wlc's first choice is the last server configured.
        let first = syn(dp, 1000);
        assert_eq!(first, Some(2));
        // A restarted rvsd (a second load on the same pins) adopts the table, and its
        // programs (now in the slots) keep the destination on its server: one active
        // connection is not more than weight 1, so it sticks.
        let first_entry = dp.lblc_entry(id, vip).map(|e| e.0);
        let mut again =
            Dataplane::load(dp.pin_dir(), rvs_config::Limits::default()).expect("reload");
        assert_eq!(again.lblc_entry(id, vip).map(|e| e.0), first_entry);
        assert_eq!(syn(dp, 1001), Some(2), "same destination, same server");
        drop(again);
        let (real, _) = dp.lblc_entry(id, vip).expect("entry");
        assert_eq!(
            dp.real(real).map(|r| r.addr),
            Some(u32::from_ne_bytes(extra_real(2).0.octets()))
        );
        // The full expiration is every 30th run; the entry was used just now.
        std::thread::sleep(Duration::from_millis(1300));
        for run in 1..rvs_sched::COUNT_FOR_FULL_EXPIRATION {
            let e = dp.check_locality().expect("check");
            assert_eq!(e.lblc, 0, "run {run}");
        }
        assert_eq!(dp.check_locality().expect("check").lblc, 1);
        assert_eq!(dp.lblc_entry(id, vip), None);
        // Server 2 removed: a new entry for the destination is made, never to server 2.
        assert!(syn(dp, 1002).is_some());
        let cfg = apply(dp, &service(&[0, 1], 86_400));
        let id = service_id(dp, &cfg);
        let next = syn(dp, 1003);
        assert!(matches!(next, Some(0 | 1)), "{next:?}");
        // The service deleted: its entries go at the next run.
        apply(dp, "");
        assert_eq!(dp.check_locality().expect("check").lblc, 1);
        assert_eq!(dp.lblc_entry(id, vip), None);
        assert_eq!(dp.locality_entries().expect("entries"), (0, 0));
    });
}
