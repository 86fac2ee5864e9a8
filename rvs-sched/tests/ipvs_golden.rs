//! Golden tests: rvs-sched must reproduce every choice kernel IPVS made.
//!
//! `fixtures/ipvs-sched.out` was recorded by `fixtures/record.sh` (scenarios in
//! `fixtures/ipvs-sched.sh`) in the ipvs-vm: Debian's 6.1.0-56-amd64 kernel with
//! CONFIG_IP_VS_MH_TAB_INDEX=12 and ipvsadm 1.31. Each scenario adds real servers to one virtual
//! service in a known order, then one SYN arrives from each of 198.18.100.10 ..
//! 198.18.100.249 in that order, 20 ms apart, and `ipvsadm -Lnc` shows where each went.
//!
//! The connection listing is in hash-table order, not in time order; the source address gives
//! the order instead (synner sends from .10 upwards), which is what the rr/wrr tests use.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use rvs_common::NO_REAL;
use rvs_sched::{Dest, IPVS_MH_TABLE_SIZE, maglev_table, mh_pick, rr_ring, wrr_ring};

const FIXTURE: &str = include_str!("fixtures/ipvs-sched.out");
const FIRST_SOURCE: u8 = 10;
const SOURCES: usize = 240;

/// One recorded scenario.
#[derive(Debug, Default)]
struct Scenario {
    /// `ipvsadm -A` arguments after the service address (`-s mh -b mh-port`).
    sched: String,
    /// Real servers in the order they were added: (address, weight as added).
    added: Vec<(Ipv4Addr, u32)>,
    /// Weight edits made afterwards, in order.
    edits: Vec<(Ipv4Addr, u32)>,
    /// Real server port as `ipvsadm -Ln` shows it (IPVS forces the virtual port for DR).
    listed_port: BTreeMap<Ipv4Addr, u16>,
    /// Connections: source → (source port, real server).
    conns: BTreeMap<Ipv4Addr, (u16, SocketAddrV4)>,
}

/// The real server address in an `ipvsadm -a/-e ... -r ADDR[:PORT] ... -w W` line.
fn parse_real(line: &str) -> (Ipv4Addr, u32) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        let i = words.iter().position(|w| *w == flag).expect(flag);
        words[i + 1]
    };
    let r = after("-r");
    let addr = r
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("real server address");
    (addr, after("-w").parse().expect("weight"))
}

fn parse() -> BTreeMap<String, Scenario> {
    let mut out = BTreeMap::new();
    let (mut name, mut section) = (String::new(), String::new());
    for line in FIXTURE.lines() {
        if let Some(n) = line.strip_prefix("### scenario ") {
            name = n.to_string();
            out.insert(name.clone(), Scenario::default());
            section.clear();
            continue;
        }
        if let Some(s) = line.strip_prefix("### ") {
            section = s.to_string();
            continue;
        }
        let Some(sc) = out.get_mut(&name) else {
            continue;
        };
        if let Some(cmd) = line.strip_prefix("# ipvsadm ") {
            if let Some(rest) = cmd.strip_prefix("-A -t ") {
                sc.sched = rest.split_once(' ').unwrap().1.to_string();
            } else if cmd.starts_with("-a ") {
                sc.added.push(parse_real(cmd));
            } else if cmd.starts_with("-e ") {
                sc.edits.push(parse_real(cmd));
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match section.as_str() {
            "ipvsadm -Ln" if words.first() == Some(&"->") && words[1] != "RemoteAddress:Port" => {
                let rs: SocketAddrV4 = words[1].parse().expect("listed real server");
                sc.listed_port.insert(*rs.ip(), rs.port());
            }
            "ipvsadm -Lnc" if words.first() == Some(&"TCP") => {
                let src: SocketAddrV4 = words[3].parse().expect("source");
                let rs: SocketAddrV4 = words[5].parse().expect("destination");
                let old = sc.conns.insert(*src.ip(), (src.port(), rs));
                assert!(old.is_none(), "{name}: two connections from {}", src.ip());
            }
            _ => {}
        }
    }
    out
}

fn scenario(name: &str) -> Scenario {
    let mut all = parse();
    let sc = all
        .remove(name)
        .unwrap_or_else(|| panic!("scenario {name} not in the fixture"));
    assert!(!sc.added.is_empty(), "{name}: no real servers recorded");
    sc
}

fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 100, FIRST_SOURCE + i as u8)
}

/// The service's real servers in IPVS's list order (newest first), with their current weight,
/// plus each one's last non-zero weight (IPVS's `last_weight`, what mh builds its table from).
fn list(sc: &Scenario) -> (Vec<Dest>, Vec<Dest>) {
    let mut current: Vec<Dest> = sc
        .added
        .iter()
        .rev()
        .map(|&(addr, weight)| Dest {
            addr,
            port: sc.listed_port[&addr],
            weight,
        })
        .collect();
    let mut last = current.clone();
    for &(addr, weight) in &sc.edits {
        let i = current.iter().position(|d| d.addr == addr).unwrap();
        current[i].weight = weight;
        if weight != 0 {
            last[i].weight = weight;
        }
    }
    (current, last)
}

fn check_mh(name: &str) {
    let sc = scenario(name);
    let with_port = sc.sched.contains("mh-port");
    let (current, last) = list(&sc);
    let table = maglev_table(&last, IPVS_MH_TABLE_SIZE).unwrap();
    let mut dropped = 0;
    for i in 0..SOURCES {
        let src = source(i);
        match sc.conns.get(&src) {
            Some(&(sport, rs)) => {
                let pick = mh_pick(&table, src, sport, with_port);
                assert_ne!(pick, NO_REAL, "{name}: {src}");
                let d = current[pick as usize];
                assert_eq!(
                    SocketAddrV4::new(d.addr, d.port),
                    rs,
                    "{name}: source {src}:{sport}"
                );
                assert_ne!(d.weight, 0, "{name}: IPVS used quiesced {rs} for {src}");
            }
            None => {
                // No connection: IPVS found a quiesced server in the slot and dropped the SYN.
                // The source port does not count without mh-port.
                assert!(!with_port, "{name}: no connection from {src}");
                let pick = mh_pick(&table, src, 0, false);
                assert_eq!(
                    current[pick as usize].weight, 0,
                    "{name}: no connection from {src}"
                );
                dropped += 1;
            }
        }
    }
    assert_eq!(
        sc.conns.len() + dropped,
        SOURCES,
        "{name}: stray connections"
    );
}

/// rr and wrr: the i-th source's connection must go to ring[i % len].
fn check_ring(name: &str, ring: impl Fn(&[Dest]) -> Vec<u32>) {
    let sc = scenario(name);
    assert!(sc.edits.is_empty());
    let (list, _) = list(&sc);
    let ring = ring(&list);
    assert!(!ring.is_empty(), "{name}");
    assert_eq!(sc.conns.len(), SOURCES, "{name}: every SYN was scheduled");
    for i in 0..SOURCES {
        let src = source(i);
        let (_, rs) = sc.conns[&src];
        let d = list[ring[i % ring.len()] as usize];
        assert_eq!(
            SocketAddrV4::new(d.addr, d.port),
            rs,
            "{name}: connection #{i} from {src}"
        );
    }
}

#[test]
fn fixture_is_the_expected_kernel() {
    assert!(FIXTURE.contains("# kernel 6.1.0-56-amd64, ipvsadm v1.31"));
    assert_eq!(parse().len(), 11);
}

#[test]
fn kernel_keeps_servers_newest_first() {
    // rr from a fresh service hands out the list in order; the first connection went to the
    // server added last.
    let sc = scenario("rr");
    let newest = sc.added.iter().rev().find(|a| a.1 > 0).unwrap().0;
    assert_eq!(*sc.conns[&source(0)].1.ip(), newest);
}

#[test]
fn mh_source_only() {
    check_mh("mh-basic");
}

#[test]
fn mh_source_and_port() {
    check_mh("mh-port");
}

#[test]
fn mh_direct_routing_ports() {
    // With -g IPVS forces each real server's port to the virtual port; the permutation hashes
    // that port.
    check_mh("mh-dr");
}

#[test]
fn mh_weight_shift() {
    check_mh("mh-shift");
}

#[test]
fn mh_weight_gcd() {
    check_mh("mh-gcd");
}

#[test]
fn mh_quiesced_server_keeps_its_slots() {
    check_mh("mh-quiesced");
    let sc = scenario("mh-quiesced");
    assert!(
        sc.conns.len() < SOURCES,
        "some SYNs hit the quiesced server and were dropped"
    );
}

#[test]
fn rr_order() {
    check_ring("rr", rr_ring);
}

#[test]
fn wrr_order() {
    for name in ["wrr-desc", "wrr-asc", "wrr-gcd", "wrr-mixed"] {
        check_ring(name, |d| wrr_ring(d, 10_000).unwrap());
    }
}
