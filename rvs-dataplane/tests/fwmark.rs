//! Packet tests of fwmark services: rvs's own classification of packets by match rules
//! (BPF_PROG_TEST_RUN, root).

mod common;

use std::net::Ipv4Addr;

use common::*;
use rvs_common::Verdict;
use rvs_dataplane::Dataplane;

/// The VIP of the fwmark service for ports 80 and 443.
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// A /28 of VIPs whose port range 1000-1999 is an fwmark service.
const NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 64);
/// An address service whose port 80 an fwmark rule also covers.
const ADDR_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 90);

fn client(n: u8, port: u16) -> (Ipv4Addr, u16) {
    (Ipv4Addr::new(198, 19, 1, n), port)
}

fn verdict(dp: &Dataplane, v: Verdict) -> u64 {
    dp.verdicts()
        .expect("verdicts")
        .into_iter()
        .find(|(k, _)| *k == v)
        .map(|(_, n)| n)
        .unwrap_or(0)
}

/// Runs `frame`: the verdict it was counted under and the real server (SEG_A index) it
/// went to, None when not forwarded.
fn send(dp: &mut Dataplane, ifindex: u32, frame: &[u8]) -> (Verdict, Option<usize>) {
    let before: Vec<u64> = Verdict::ALL.iter().map(|v| verdict(dp, *v)).collect();
    let r = run(dp, frame, ifindex);
    let counted = Verdict::ALL
        .iter()
        .zip(before)
        .find(|(v, n)| verdict(dp, **v) == n + 1)
        .map(|(v, _)| *v)
        .expect("one verdict counted");
    if r.action != XDP_TX {
        return (counted, None);
    }
    assert_checksums_ok(&r.frame);
    let rs = SEG_A
        .iter()
        .position(|(_, mac)| r.frame[..6] == mac[..])
        .expect("sent to a SEG_A real server");
    assert_eq!(
        r.frame,
        dr_rewritten(frame, SEG_A[rs].1, A0_MAC),
        "DR keeps the packet, ports included"
    );
    (counted, Some(rs))
}

fn reals() -> String {
    SEG_A
        .iter()
        .map(|(ip, _)| format!("[[service.real]]\naddress = \"{ip}\"\n"))
        .collect()
}

/// fwmark 1: TCP VIP ports 80 and 443, rr over SEG_A; fwmark 2: TCP NET/28 ports 1000-1999
/// and UDP from 198.19.2.0/24 to any port of NET/28; fwmark 3 covers ADDR_VIP:80, which is
/// also an address service.
fn config(extra: &str) -> String {
    format!(
        r#"[[service]]
fwmark = 1
scheduler = "rr"
{extra}[[service.match]]
protocol = "tcp"
destination = ["{VIP}/32"]
ports = [{{ first = 80, last = 80 }}, {{ first = 443, last = 443 }}]
{r}
[[service]]
fwmark = 2
scheduler = "rr"
[[service.match]]
protocol = "tcp"
destination = ["{NET}/28"]
ports = [{{ first = 1000, last = 1999 }}]
[[service.match]]
protocol = "udp"
destination = ["{NET}/28"]
source = ["198.19.2.0/24"]
[[service.real]]
address = "{a}"

[[service]]
fwmark = 3
scheduler = "rr"
[[service.match]]
protocol = "tcp"
destination = ["{ADDR_VIP}/32"]
ports = [{{ first = 80, last = 80 }}]
[[service.real]]
address = "{b}"

[[service]]
protocol = "tcp"
address = "{ADDR_VIP}"
port = 80
[[service.real]]
address = "{c}"
"#,
        r = reals(),
        a = SEG_A[0].0,
        b = SEG_A[1].0,
        c = SEG_A[2].0,
    )
}

#[test]
fn ports_80_and_443_of_a_vip_share_one_rr_service() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(""), |dp, ifs| {
        // One rr cursor across both ports: .13, .12, .11, .13, … (newest first, as IPVS).
        let order = [2usize, 1, 0, 2, 1, 0];
        for (n, &rs) in order.iter().enumerate() {
            let port = if n % 2 == 0 { 80 } else { 443 };
            let syn = tcp_frame(client(n as u8 + 1, 40000), (VIP, port), Tcp::Syn, b"");
            assert_eq!(
                send(dp, ifs.a0, &syn),
                (Verdict::FwdNew, Some(rs)),
                "flow {n}"
            );
        }
        // An established packet follows its connection entry (keyed by the 5-tuple).
        let ack = tcp_frame(client(2, 40000), (VIP, 443), Tcp::Ack, b"x");
        assert_eq!(send(dp, ifs.a0, &ack), (Verdict::FwdEstablished, Some(1)));
        // Not marked: another port, UDP on port 80.
        let other = tcp_frame(client(1, 40001), (VIP, 8080), Tcp::Syn, b"");
        assert_eq!(send(dp, ifs.a0, &other), (Verdict::PassNotService, None));
        let udp = udp_frame(client(1, 40001), (VIP, 80), b"x");
        assert_eq!(send(dp, ifs.a0, &udp), (Verdict::PassNotService, None));
    });
}

#[test]
fn prefixes_ranges_and_sources_decide_the_mark() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(""), |dp, ifs| {
        let in_net = |host: u8| Ipv4Addr::new(198, 18, 0, 64 + host);
        for (dst, port, want) in [
            (in_net(0), 1000, Some(0)),
            (in_net(15), 1999, Some(0)),
            (in_net(7), 1500, Some(0)),
            (in_net(16), 1000, None), // outside the /28
            (in_net(1), 999, None),   // below the range
            (in_net(1), 2000, None),  // above it
        ] {
            let syn = tcp_frame(client(9, 1234), (dst, port), Tcp::Syn, b"");
            let got = send(dp, ifs.a0, &syn);
            match want {
                Some(rs) => assert_eq!(got, (Verdict::FwdNew, Some(rs)), "{dst}:{port}"),
                None => assert_eq!(got, (Verdict::PassNotService, None), "{dst}:{port}"),
            }
        }
        // The UDP rule: any port, but only from 198.19.2.0/24.
        let from = |net: u8| (Ipv4Addr::new(198, 19, net, 5), 5000);
        let inside = udp_frame(from(2), (in_net(3), 53), b"q");
        assert_eq!(send(dp, ifs.a0, &inside), (Verdict::FwdNew, Some(0)));
        let outside = udp_frame(from(3), (in_net(3), 53), b"q");
        assert_eq!(send(dp, ifs.a0, &outside), (Verdict::PassNotService, None));
    });
}

#[test]
fn the_fwmark_service_goes_before_the_address_service() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(""), |dp, ifs| {
        // IPVS looks a marked packet's fwmark service up first.
        let syn = tcp_frame(client(3, 3000), (ADDR_VIP, 80), Tcp::Syn, b"");
        assert_eq!(send(dp, ifs.a0, &syn), (Verdict::FwdNew, Some(1)));
        // Without the fwmark service the address service takes it again.
        let mut cfg = rvs_config::Config::from_toml(&config("")).expect("config");
        cfg.services.retain(|s| s.fwmark != Some(3));
        dp.apply(&cfg).expect("apply");
        let syn = tcp_frame(client(3, 3001), (ADDR_VIP, 80), Tcp::Syn, b"");
        assert_eq!(send(dp, ifs.a0, &syn), (Verdict::FwdNew, Some(2)));
        // No fwmark service at all: the classifier walks nothing and VIP:80 is passed.
        cfg.services.retain(|s| s.fwmark.is_none());
        dp.apply(&cfg).expect("apply");
        let syn = tcp_frame(client(3, 3002), (VIP, 80), Tcp::Syn, b"");
        assert_eq!(send(dp, ifs.a0, &syn), (Verdict::PassNotService, None));
    });
}

#[test]
fn persistence_spans_the_marks_ports() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    let persistent = "persistence = { timeout = 300, netmask = \"255.255.255.255\" }\n";
    env.with_dataplane(&config(persistent), |dp, ifs| {
        // Like a port-0 persistent service: the client's 443 connection joins its 80 one.
        let first = tcp_frame(client(1, 1000), (VIP, 80), Tcp::Syn, b"");
        let (_, rs) = send(dp, ifs.a0, &first);
        for (port, sport) in [(443, 1001), (80, 1002), (443, 1003)] {
            let syn = tcp_frame(client(1, sport), (VIP, port), Tcp::Syn, b"");
            assert_eq!(send(dp, ifs.a0, &syn), (Verdict::FwdNew, rs), "port {port}");
        }
        // Another client is scheduled: rr moves on.
        let other = tcp_frame(client(2, 1000), (VIP, 443), Tcp::Syn, b"");
        let (_, rs2) = send(dp, ifs.a0, &other);
        assert_ne!(rs2, rs);
    });
}
