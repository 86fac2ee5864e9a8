//! Connection sync through the real maps and program (root): flows installed by address
//! (what a sync BACKUP does) are forwarded by the XDP program to the real server they were
//! on — a mid-connection ACK, no SYN, even while the service stands by (a BACKUP's) — after
//! it looks the route up; the snapshot (what a MASTER streams) lists them back. NAT
//! connections are installed as both halves (the request DNAT'd, the reply SNAT'd back to
//! the VIP), and persistence templates keep a client on its real server across nodes.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::*;
use rvs_common::{CONN_F_NAT, ConnEntry, ConnState, FlowKey, Forward, Verdict};
use rvs_dataplane::{ConnInstall, ConnView, Dataplane, TemplateInstall, TemplateView};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn config() -> String {
    let mut c = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n"
    );
    for (ip, _) in SEG_A.iter() {
        c += &format!("[[service.real]]\naddress = \"{ip}\"\n");
    }
    c
}

fn install(client: u16, real: usize) -> ConnInstall {
    ConnInstall {
        protocol: 6,
        client: SocketAddrV4::new(Ipv4Addr::new(198, 19, 1, 1), client),
        vip: SocketAddrV4::new(VIP, 80),
        real: SocketAddrV4::new(SEG_A[real].0, 80),
        state: ConnState::Established,
        timeout_secs: 900,
    }
}

#[test]
fn installed_flows_are_forwarded_to_their_real_server() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(), |dp, ifs| {
        // As a VRRP BACKUP: the VIP's new connections pass.
        dp.set_standby([VIP].into_iter().collect())
            .expect("standby");
        let mut other = install(40002, 0);
        other.vip = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 99), 80);
        let mut unknown_real = install(40003, 0);
        unknown_real.real = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 99), 80);
        let stats = dp.install_conns(&[install(40001, 1), other, unknown_real]);
        assert_eq!(
            (stats.installed, stats.no_service, stats.no_real),
            (1, 1, 1)
        );
        // Installing it again changes nothing (the entry is as fresh as the report).
        assert_eq!(dp.install_conns(&[install(40001, 1)]).fresh, 1);
        // A mid-connection packet of the synced flow goes to SEG_A[1], MAC from the FIB.
        let ack = tcp_frame(
            (Ipv4Addr::new(198, 19, 1, 1), 40001),
            (VIP, 80),
            Tcp::Ack,
            b"x",
        );
        let r = run(dp, &ack, ifs.a0);
        assert_eq!(r.action, XDP_TX);
        assert_eq!(r.frame, dr_rewritten(&ack, SEG_A[1].1, A0_MAC));
        // Any other ACK is not a known flow: passed, as IPVS does for non-SYNs.
        let stray = tcp_frame(
            (Ipv4Addr::new(198, 19, 1, 1), 40009),
            (VIP, 80),
            Tcp::Ack,
            b"x",
        );
        assert_eq!(run(dp, &stray, ifs.a0).action, XDP_PASS);
        let fwd = dp
            .verdicts()
            .expect("verdicts")
            .into_iter()
            .find(|(v, _)| *v == Verdict::FwdEstablished)
            .map(|(_, n)| n);
        assert_eq!(fwd, Some(1));
        // The snapshot lists it by address, with its state.
        let snap = dp.conn_snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].client.port(), 40001);
        assert_eq!(*snap[0].real.ip(), SEG_A[1].0);
        assert_eq!(snap[0].state, ConnState::Established);
    });
}

const VIP_NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const VIP_PERSIST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);

/// A NAT service VIP_NAT:80 → SEG_A[0]:8080, and a persistent DR service VIP_PERSIST:80
/// (rr over SEG_A[0], SEG_A[1]; every client address its own template).
fn nat_persist_config() -> String {
    let (rs0, rs1) = (SEG_A[0].0, SEG_A[1].0);
    format!(
        r#"
[[service]]
protocol = "tcp"
address = "{VIP_NAT}"
port = 80
[[service.real]]
address = "{rs0}"
port = 8080
forward = "nat"

[[service]]
protocol = "tcp"
address = "{VIP_PERSIST}"
port = 80
scheduler = "rr"
persistence = {{ timeout = 300, netmask = "255.255.255.255" }}
[[service.real]]
address = "{rs0}"
[[service.real]]
address = "{rs1}"
"#
    )
}

/// Both raw entries of the table with what only the FIB and the clock decide zeroed.
fn raw_entries(dp: &mut Dataplane) -> Vec<(FlowKey, ConnEntry)> {
    let mut v: Vec<(FlowKey, ConnEntry)> = dp
        .conns_mut()
        .iter()
        .filter_map(|e| e.ok())
        .map(|(k, c)| {
            (
                k,
                ConnEntry {
                    last_seen: 0,
                    ifindex: 0,
                    dmac: [0; 6],
                    smac: [0; 6],
                    fits: 0,
                    ..c
                },
            )
        })
        .collect();
    v.sort_by_key(|(k, _)| (k.src, k.sport));
    v
}

fn installs(views: &[ConnView]) -> Vec<ConnInstall> {
    views
        .iter()
        .map(|v| ConnInstall {
            protocol: v.protocol,
            client: v.client,
            vip: v.vip,
            real: v.real,
            state: v.state,
            timeout_secs: 900,
        })
        .collect()
}

#[test]
fn nat_connections_are_installed_as_both_halves() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    // Two-armed NAT: clients behind the router 198.18.4.21 on b0, real servers on a0.
    env.fib
        .ns()
        .exec(&["ip", "route", "add", "198.19.0.0/16", "via", "198.18.4.21"])
        .expect("client route");
    let (rs, rs_mac) = SEG_A[0];
    let c = (Ipv4Addr::new(198, 19, 1, 1), 40000);
    // The MASTER: a connection made by the XDP program (SYN, SYN-ACK, ACK).
    let (views, master) = env.with_dataplane(&nat_persist_config(), |dp, ifs| {
        let syn = tcp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 80), Tcp::Syn, b"");
        assert_eq!(run(dp, &syn, ifs.b0).action, XDP_REDIRECT);
        let synack = tcp_frame_macs((rs_mac, A0_MAC), (rs, 8080), c, Tcp::SynAck, b"");
        assert_eq!(run(dp, &synack, ifs.a0).action, XDP_REDIRECT);
        let ack = tcp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 80), Tcp::Ack, b"");
        assert_eq!(run(dp, &ack, ifs.b0).action, XDP_REDIRECT);
        (dp.conn_snapshot(), raw_entries(dp))
    });
    // One record for both halves, with the real server as IPVS's daddr:dport.
    assert_eq!(views.len(), 1);
    let v = views[0];
    assert_eq!(v.client, SocketAddrV4::new(c.0, c.1));
    assert_eq!(v.vip, SocketAddrV4::new(VIP_NAT, 80));
    assert_eq!(v.real, SocketAddrV4::new(rs, 8080));
    assert_eq!(
        (v.forward, v.state),
        (Forward::Masq, ConnState::Established)
    );
    assert_eq!(master.len(), 2, "request and reply entries");
    // The BACKUP (standing by for the VIP) installs it.
    env.with_dataplane(&nat_persist_config(), |dp, ifs| {
        dp.set_standby([VIP_NAT].into_iter().collect())
            .expect("standby");
        let stats = dp.install_conns(&installs(&views));
        assert_eq!((stats.installed, stats.failed), (1, 0));
        // Both entries exactly as the XDP program made them (but the FIB's and clock's).
        let backup = raw_entries(dp);
        assert_eq!(backup, master);
        assert!(backup.iter().all(|(_, e)| e.flags & CONN_F_NAT != 0));
        // A mid-connection client packet is DNAT'd to the real server (route looked up).
        let data = tcp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 80), Tcp::Ack, b"GET /");
        let r = run(dp, &data, ifs.b0);
        assert_eq!(r.action, XDP_REDIRECT);
        assert_eq!(
            r.frame,
            tcp_frame_macs((A0_MAC, rs_mac), c, (rs, 8080), Tcp::Ack, b"GET /")
        );
        assert_checksums_ok(&r.frame);
        // The real server's reply is rewritten back to the VIP, towards the client.
        let reply = tcp_frame_macs((rs_mac, A0_MAC), (rs, 8080), c, Tcp::Ack, b"200 OK");
        let r = run(dp, &reply, ifs.a0);
        assert_eq!(r.action, XDP_REDIRECT);
        assert_eq!(
            r.frame,
            tcp_frame_macs((B0_MAC, SEG_B.1), (VIP_NAT, 80), c, Tcp::Ack, b"200 OK")
        );
        assert_checksums_ok(&r.frame);
        let verdicts = dp.verdicts().expect("verdicts");
        let n = |v: Verdict| verdicts.iter().find(|(k, _)| *k == v).map_or(0, |x| x.1);
        assert_eq!(
            (n(Verdict::FwdEstablished), n(Verdict::FwdNatReply)),
            (1, 1)
        );
        assert_eq!(n(Verdict::FwdNew), 0);
        // Listed back once, as on the MASTER.
        assert_eq!(dp.conn_snapshot().len(), 1);
    });
}

#[test]
fn persistence_templates_keep_a_client_on_its_real_server() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    let a = Ipv4Addr::new(198, 19, 2, 1);
    let b = Ipv4Addr::new(198, 19, 2, 2);
    let syn = |ip: Ipv4Addr, port: u16| tcp_frame((ip, port), (VIP_PERSIST, 80), Tcp::Syn, b"");
    let dest_mac = |frame: &[u8]| -> [u8; 6] { frame[0..6].try_into().expect("a MAC") };
    // The MASTER schedules a, then b (rr: different real servers) and keeps templates.
    let (templates, mac_a, mac_b) = env.with_dataplane(&nat_persist_config(), |dp, ifs| {
        let ra = run(dp, &syn(a, 1000), ifs.a0);
        let rb = run(dp, &syn(b, 1000), ifs.a0);
        assert_eq!((ra.action, rb.action), (XDP_TX, XDP_TX));
        (
            dp.template_snapshot(),
            dest_mac(&ra.frame),
            dest_mac(&rb.frame),
        )
    });
    assert_ne!(mac_a, mac_b, "rr put the two clients on different servers");
    assert_eq!(templates.len(), 2);
    let tb: TemplateView = *templates
        .iter()
        .find(|t| t.client == b)
        .expect("b's template");
    assert_eq!(tb.vip, SocketAddrV4::new(VIP_PERSIST, 80));
    assert_eq!(tb.timeout_secs, 300);
    let real_b = SEG_A.iter().find(|(_, m)| *m == mac_b).expect("b's real").0;
    assert_eq!(*tb.real.ip(), real_b);
    // The BACKUP gets b's template only; after the takeover b's first connection there
    // goes where the MASTER sent b, not where a fresh rr would (a's server).
    env.with_dataplane(&nat_persist_config(), |dp, ifs| {
        let install = TemplateInstall {
            protocol: tb.protocol,
            client: tb.client,
            vip: tb.vip,
            real: tb.real,
            timeout_secs: 250,
        };
        let mut unknown = install;
        unknown.vip = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 99), 80);
        let stats = dp.install_templates(&[install, unknown]);
        assert_eq!((stats.installed, stats.no_service), (1, 1));
        assert_eq!(dp.install_templates(&[install]).fresh, 1);
        let listed = dp.template_snapshot();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].client, listed[0].real), (b, tb.real));
        let r = run(dp, &syn(b, 2000), ifs.a0);
        assert_eq!(r.action, XDP_TX);
        assert_eq!(dest_mac(&r.frame), mac_b);
        // A client without a template is scheduled afresh (rr's first pick: a's server).
        let r = run(dp, &syn(a, 2000), ifs.a0);
        assert_eq!(dest_mac(&r.frame), mac_a);
    });
}
