//! NAT end to end (root): the two-armed and the one-armed lab, rvsd balancing with
//! masquerading and port mapping, changed through rvsadm, real TCP and UDP traffic; and
//! rvsd run from a keepalived.conf with `lb_kind NAT` and health checks, whose listing must
//! be what keepalived + IPVS listed for the same file and the same live servers.

mod lab_common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use lab_common::{
    assert_rr, pass_programs, recorded_listing, rvsadm, rvsd_bin, shares, wait_listing,
};
use rvs_dataplane::PassProgram;
use rvs_lab::nat::CLIENT_ADDR;
use rvs_lab::{
    HttpResponder, HttpSession, NatLab, NatLayout, Rvsd, UdpResponder, http_get, udp_ask,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The real servers listen here; the service is VIP:80 (NAT maps the port).
const RS_PORT: u16 = 8080;
const UDP_VIP_PORT: u16 = 53;
const UDP_RS_PORT: u16 = 5353;

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

fn config(lab: &NatLab, pin: &std::path::Path) -> String {
    let ifaces: Vec<String> = lab
        .lb_interfaces()
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect();
    let mut c = format!(
        "[daemon]\ninterfaces = [{}]\npin_path = \"{}\"\n",
        ifaces.join(", "),
        pin.display()
    );
    for (proto, port, rs_port) in [("tcp", 80, RS_PORT), ("udp", UDP_VIP_PORT, UDP_RS_PORT)] {
        c += &format!(
            "\n[[service]]\nprotocol = \"{proto}\"\naddress = \"{VIP}\"\nport = {port}\nscheduler = \"rr\"\n"
        );
        for rs in lab.real_servers() {
            c += &format!(
                "[[service.real]]\naddress = \"{}\"\nport = {rs_port}\nforward = \"nat\"\n",
                rs.addr()
            );
        }
    }
    c
}

struct Setup {
    // Drop order: daemon and programs before the lab's namespaces.
    rvsd: Rvsd,
    _pass: Vec<PassProgram>,
    _http: Vec<HttpResponder>,
    _udp: Vec<UdpResponder>,
    lab: NatLab,
}

fn setup(layout: NatLayout) -> Setup {
    let lab = NatLab::new(layout, 3).expect("lab");
    let http = lab.serve_http(RS_PORT).expect("http responders");
    let udp = lab
        .real_servers()
        .iter()
        .map(|rs| {
            UdpResponder::spawn(
                rs.ns(),
                SocketAddr::from(([0, 0, 0, 0], UDP_RS_PORT)),
                rs.name(),
            )
            .expect("udp responder")
        })
        .collect();
    let pass = pass_programs(&lab.pass_ports());
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let rvsd = Rvsd::start(lab.lb(), rvsd_bin(), &config(&lab, &pin), &pin).expect("rvsd starts");
    Setup {
        rvsd,
        _pass: pass,
        _http: http,
        _udp: udp,
        lab,
    }
}

fn names(lab: &NatLab) -> Vec<&str> {
    lab.real_servers().iter().map(|r| r.name()).collect()
}

fn nat_end_to_end(layout: NatLayout) {
    let s = setup(layout);
    let lab = &s.lab;
    let socket = s.rvsd.socket();
    let listing = rvsadm(socket, &["-Ln"]);
    assert!(
        listing.contains(&format!("  -> 198.18.2.11:{RS_PORT}             Masq    1")),
        "{listing}"
    );

    // TCP: 300 connections, rr, 100 ± 2 each, none fails.
    let counts = shares(lab.client(), vip(), 300);
    assert_rr(&counts, &names(lab), 100);
    // IPVS counts both directions of a NAT service: OutPkts/OutBytes are the replies.
    let stats = rvsadm(socket, &["-Ln", "--stats", "--exact"]);
    let line = stats
        .lines()
        .find(|l| l.starts_with(&format!("TCP  {VIP}:80")))
        .unwrap_or_else(|| panic!("no service line in\n{stats}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(2)
        .map(|f| f.parse().expect("a counter"))
        .collect();
    assert_eq!(n.len(), 5, "{line}");
    assert!(n[0] >= 300, "Conns {line}");
    assert!(
        n[2] > 0 && n[4] > 0,
        "NAT replies counted as OutPkts/OutBytes: {line}"
    );

    // UDP request/response through NAT (port 53 mapped to 5353), rr per datagram flow.
    let mut udp = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..30 {
        let answer = udp_ask(lab.client(), SocketAddr::from((VIP, UDP_VIP_PORT)))
            .unwrap_or_else(|e| panic!("UDP question {i} through NAT: {e:#}"));
        *udp.entry(answer).or_insert(0) += 1;
    }
    assert_rr(&udp, &names(lab), 10);

    // A keep-alive connection survives its server's weight going to 0 (rvsadm -e), and new
    // connections avoid that server.
    let mut session = HttpSession::connect(lab.client(), vip()).expect("session");
    let pinned = session.get().expect("first request");
    let rs = lab
        .real_servers()
        .iter()
        .find(|r| r.name() == pinned)
        .expect("answered by a real server");
    let target = format!("{}:{RS_PORT}", rs.addr());
    rvsadm(
        socket,
        &[
            "-e",
            "-t",
            &vip().to_string(),
            "-r",
            &target,
            "-m",
            "-w",
            "0",
        ],
    );
    let counts = shares(lab.client(), vip(), 60);
    assert!(
        !counts.contains_key(&pinned),
        "new connections reached quiesced {pinned}: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), 60);
    for _ in 0..5 {
        assert_eq!(
            session.get().expect("request on the kept connection"),
            pinned
        );
    }

    // A real server's own outbound traffic through the NAT LB still works: rs1 connects to
    // a server in the client namespace (its packets match no connection and are routed).
    let outside = HttpResponder::spawn(lab.client(), SocketAddr::from((CLIENT_ADDR, 0)), "outside")
        .expect("client-side server");
    for rs in lab.real_servers() {
        assert_eq!(
            http_get(rs.ns(), outside.local_addr()).expect("real server's own connection"),
            "outside",
            "{} reaching the client network through the LB",
            rs.name()
        );
    }
    assert!(
        !s.rvsd.output().contains("ERROR"),
        "rvsd logged errors:\n{}",
        s.rvsd.output()
    );
}

#[test]
fn nat_two_armed() {
    if !rvs_lab::root_or_skip("NAT two-armed lab test") {
        return;
    }
    nat_end_to_end(NatLayout::TwoArmed);
}

#[test]
fn nat_one_armed() {
    if !rvs_lab::root_or_skip("NAT one-armed lab test") {
        return;
    }
    nat_end_to_end(NatLayout::OneArmed);
}

/// rvs-keepalived's corpus file that the IPVS VM ran (rvsd/tests/fixtures/ipvs-vm/nat_tun.sh).
const NAT_CONF: &str = include_str!("../../rvs-keepalived/tests/corpus/valid/lvs_nat.conf");

#[test]
fn keepalived_lb_kind_nat_lists_as_keepalived_and_ipvs_do() {
    if !rvs_lab::root_or_skip("keepalived.conf NAT lab test") {
        return;
    }
    // Same addresses as the VM run: rs1 and rs2 answer on 8080, rs3 has nothing listening.
    let lab = NatLab::new(NatLayout::TwoArmed, 3).expect("lab");
    let http: Vec<HttpResponder> = lab.real_servers()[..2]
        .iter()
        .map(|rs| {
            HttpResponder::spawn(
                rs.ns(),
                SocketAddr::from(([0, 0, 0, 0], RS_PORT)),
                rs.name(),
            )
            .expect("responder")
        })
        .collect();
    let _pass = pass_programs(&lab.pass_ports());
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let rvsd = Rvsd::start_keepalived_on(lab.lb(), rvsd_bin(), NAT_CONF, lab.lb_interfaces(), &pin)
        .expect("rvsd starts from keepalived.conf");
    let want = recorded_listing("nat", "-Ln");
    wait_listing(rvsd.socket(), &["-Ln"], &want, Duration::from_secs(20));
    assert_eq!(
        rvsadm(rvsd.socket(), &["-S", "-n"]),
        recorded_listing("nat", "-S -n")
    );
    // And it carries traffic: rr over the two live servers, none to the dead one.
    let counts = shares(lab.client(), vip(), 40);
    assert_rr(&counts, &["rs1", "rs2"], 20);
    drop(rvsd);
    drop(http);
}
