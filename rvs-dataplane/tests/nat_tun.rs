//! Packet tests of NAT, TUN, ICMP handling and the real-server decapsulation program through
//! BPF_PROG_TEST_RUN: one frame in, the verdict and the exact frame out; checksums are
//! checked with etherparse, an independent parser (root).

mod common;

use std::net::Ipv4Addr;

use common::*;
use etherparse::{
    Icmpv4Type, IpNumber, Ipv4HeaderSlice, PacketBuilder, SlicedPacket, TransportSlice,
    icmpv4::{DestUnreachableHeader, TimeExceededCode},
};
use rvs_common::{ConnState, Verdict};
use rvs_dataplane::{Dataplane, DecapOptions, DecapProgram, testrun::run_xdp};

const VIP_NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const VIP_TUN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 60);
const VIP_DR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 70);
/// The LB's own address on a0: the FIB's source towards real servers there.
const LB_A0: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

fn client(n: u8, port: u16) -> (Ipv4Addr, u16) {
    (Ipv4Addr::new(198, 19, 1, n), port)
}

/// NAT services on VIP_NAT: TCP :80 → .11:8080 and UDP :53 → .11:5353 (port mapping); TUN
/// services on VIP_TUN :80 (ipip → .12), :81 (gue 6080 csum → .13), :82 (gre csum → .12),
/// :83 (gue nocsum → .13).
fn config() -> String {
    let (rs, rs2, rs3) = (SEG_A[0].0, SEG_A[1].0, SEG_A[2].0);
    format!(
        r#"
[[service]]
protocol = "tcp"
address = "{VIP_NAT}"
port = 80
[[service.real]]
address = "{rs}"
port = 8080
forward = "nat"

[[service]]
protocol = "udp"
address = "{VIP_NAT}"
port = 53
[[service.real]]
address = "{rs}"
port = 5353
forward = "nat"

[[service]]
protocol = "tcp"
address = "{VIP_TUN}"
port = 80
[[service.real]]
address = "{rs2}"
forward = "tun"

[[service]]
protocol = "tcp"
address = "{VIP_TUN}"
port = 81
[[service.real]]
address = "{rs3}"
forward = "tun"
tunnel = {{ type = "gue", port = 6080, checksum = "csum" }}

[[service]]
protocol = "tcp"
address = "{VIP_TUN}"
port = 82
[[service.real]]
address = "{rs2}"
forward = "tun"
tunnel = {{ type = "gre", checksum = "csum" }}

[[service]]
protocol = "tcp"
address = "{VIP_DR}"
port = 80
[[service.real]]
address = "{rs2}"

[[service]]
protocol = "udp"
address = "{VIP_TUN}"
port = 83
[[service.real]]
address = "{rs3}"
forward = "tun"
tunnel = {{ type = "gue", port = 6080 }}
"#
    )
}

fn verdict(dp: &Dataplane, v: Verdict) -> u64 {
    dp.verdicts()
        .expect("verdicts")
        .into_iter()
        .find(|(k, _)| *k == v)
        .map_or(0, |(_, n)| n)
}

/// Runs `frame` on `ifindex`; asserts the action and the verdict counter; returns the output.
fn go(dp: &mut Dataplane, ifindex: u32, frame: &[u8], action: u32, why: Verdict) -> Vec<u8> {
    let before = verdict(dp, why);
    let r = run(dp, frame, ifindex);
    assert_eq!(r.action, action, "action for {}", why.name());
    assert_eq!(verdict(dp, why), before + 1, "counter {}", why.name());
    r.frame
}

/// Clients live behind the router 198.18.4.21 on b0 (two-armed NAT: clients on b0, real
/// servers on a0).
fn route_clients_via_b0(env: &PacketEnv) {
    env.fib
        .ns()
        .exec(&["ip", "route", "add", "198.19.0.0/16", "via", "198.18.4.21"])
        .expect("client route");
}

#[test]
fn nat_tcp_request_reply_state_and_counters() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    route_clients_via_b0(&env);
    env.with_dataplane(&config(), |dp, ifs| {
        let (rs, rs_mac) = SEG_A[0];
        let c = client(1, 40000);
        // SYN in on b0: destination rewritten to .11:8080, out a0 (REDIRECT).
        let syn = tcp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 80), Tcp::Syn, b"");
        let out = go(dp, ifs.b0, &syn, XDP_REDIRECT, Verdict::FwdNew);
        let want = tcp_frame_macs((A0_MAC, rs_mac), c, (rs, 8080), Tcp::Syn, b"");
        assert_eq!(out, want, "DNAT'd SYN");
        assert_checksums_ok(&out);
        // SYN-ACK from the real server on a0: source back to VIP:80, out b0 to the router.
        let synack = tcp_frame_macs((rs_mac, A0_MAC), (rs, 8080), c, Tcp::SynAck, b"");
        let out = go(dp, ifs.a0, &synack, XDP_REDIRECT, Verdict::FwdNatReply);
        let want = tcp_frame_macs((B0_MAC, SEG_B.1), (VIP_NAT, 80), c, Tcp::SynAck, b"");
        assert_eq!(out, want, "SNAT'd SYN-ACK");
        assert_checksums_ok(&out);
        // The client's ACK establishes (IPVS INPUT table: SYN_RECV + ack → ESTABLISHED).
        let ack = tcp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 80), Tcp::Ack, b"GET /");
        let out = go(dp, ifs.b0, &ack, XDP_REDIRECT, Verdict::FwdEstablished);
        let want = tcp_frame_macs((A0_MAC, rs_mac), c, (rs, 8080), Tcp::Ack, b"GET /");
        assert_eq!(out, want);
        let data = tcp_frame_macs((rs_mac, A0_MAC), (rs, 8080), c, Tcp::Ack, b"200 OK");
        let out = go(dp, ifs.a0, &data, XDP_REDIRECT, Verdict::FwdNatReply);
        assert_checksums_ok(&out);
        let conns = dp.connections();
        assert_eq!(conns.len(), 1, "one connection listed for both halves");
        assert_eq!(conns[0].1.state, ConnState::Established as u8);
        assert_eq!(conns[0].1.peer_addr, u32::from_ne_bytes(rs.octets()));
        assert_eq!(u16::from_be(conns[0].1.peer_port), 8080);
        // The real server closes first (OUTPUT fin: ESTABLISHED → FIN_WAIT).
        let fin = tcp_frame_macs((rs_mac, A0_MAC), (rs, 8080), c, Tcp::Fin, b"");
        go(dp, ifs.a0, &fin, XDP_REDIRECT, Verdict::FwdNatReply);
        assert_eq!(dp.connections()[0].1.state, ConnState::FinWait as u8);
        // Counters: IPVS's InPkts/OutPkts for both directions.
        let rid = dp
            .planner()
            .real_id(
                &rvs_config::ServiceId {
                    protocol: rvs_config::Protocol::Tcp,
                    address: VIP_NAT,
                    port: 80,
                },
                rs,
                8080,
            )
            .expect("real id");
        let k = dp.real_counters(rid).expect("counters");
        assert_eq!((k.conns, k.packets_in, k.packets_out), (1, 2, 3));
        assert_eq!(k.bytes_out, (synack.len() + data.len() + fin.len()) as u64);
        // A packet from the real server that matches no connection is its own: untouched.
        let other = tcp_frame_macs((rs_mac, A0_MAC), (rs, 8080), client(2, 1), Tcp::Ack, b"");
        let out = go(dp, ifs.a0, &other, XDP_PASS, Verdict::PassNatNoConn);
        assert_eq!(out, other);
        let own = udp_frame_macs((rs_mac, A0_MAC), (rs, 33000), (SEG_B.0, 53), b"q");
        let out = go(dp, ifs.a0, &own, XDP_PASS, Verdict::PassNatNoConn);
        assert_eq!(out, own);
    });
}

#[test]
fn nat_udp_port_mapping_and_zero_checksum() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    route_clients_via_b0(&env);
    env.with_dataplane(&config(), |dp, ifs| {
        let (rs, rs_mac) = SEG_A[0];
        let c = client(3, 5000);
        let q = udp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 53), b"query");
        let out = go(dp, ifs.b0, &q, XDP_REDIRECT, Verdict::FwdNew);
        assert_eq!(
            out,
            udp_frame_macs((A0_MAC, rs_mac), c, (rs, 5353), b"query")
        );
        assert_checksums_ok(&out);
        let a = udp_frame_macs((rs_mac, A0_MAC), (rs, 5353), c, b"answer");
        let out = go(dp, ifs.a0, &a, XDP_REDIRECT, Verdict::FwdNatReply);
        assert_eq!(
            out,
            udp_frame_macs((B0_MAC, SEG_B.1), (VIP_NAT, 53), c, b"answer")
        );
        assert_checksums_ok(&out);
        // A datagram without checksum (0) keeps none in both directions.
        let zero = |mut f: Vec<u8>| {
            f[40] = 0;
            f[41] = 0;
            f
        };
        let q0 = zero(udp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 53), b"q2"));
        let out = go(dp, ifs.b0, &q0, XDP_REDIRECT, Verdict::FwdEstablished);
        assert_eq!(
            out,
            zero(udp_frame_macs((A0_MAC, rs_mac), c, (rs, 5353), b"q2"))
        );
        let a0 = zero(udp_frame_macs((rs_mac, A0_MAC), (rs, 5353), c, b"a2"));
        let out = go(dp, ifs.a0, &a0, XDP_REDIRECT, Verdict::FwdNatReply);
        assert_eq!(
            out,
            zero(udp_frame_macs((B0_MAC, SEG_B.1), (VIP_NAT, 53), c, b"a2"))
        );
    });
}

/// An ICMP error frame from `src` to `dst` of `kind` quoting `quoted` (an IPv4 packet).
fn icmp_frame(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    kind: Icmpv4Type,
    quoted: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4(kind)
        .write(&mut out, quoted)
        .expect("icmp frame");
    out
}

/// The IPv4 header and first 8 L4 bytes of a frame (what an ICMP error quotes).
fn quote(frame: &[u8]) -> Vec<u8> {
    let ihl = ((frame[14] & 0x0f) as usize) * 4;
    frame[14..14 + ihl + 8].to_vec()
}

#[test]
fn nat_icmp_errors_are_translated_both_ways() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    route_clients_via_b0(&env);
    env.with_dataplane(&config(), |dp, ifs| {
        let (rs, rs_mac) = SEG_A[0];
        let c = client(4, 6000);
        let q = udp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 53), b"query");
        let to_rs = go(dp, ifs.b0, &q, XDP_REDIRECT, Verdict::FwdNew);
        // Outbound: the real server's port unreachable about the datagram it got.
        let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
        let err = icmp_frame((rs_mac, A0_MAC), rs, c.0, unreach.clone(), &quote(&to_rs));
        let out = go(dp, ifs.a0, &err, XDP_REDIRECT, Verdict::FwdIcmp);
        // Expected: outer source VIP, quoted destination VIP:53 (quoted IPv4 checksum
        // fixed, quoted UDP checksum left as IPVS leaves it), ICMP checksum right.
        let mut quoted = quote(&to_rs);
        quoted[16..20].copy_from_slice(&VIP_NAT.octets());
        quoted[10] = 0;
        quoted[11] = 0;
        let h = Ipv4HeaderSlice::from_slice(&quoted).expect("quoted header");
        let csum = h.to_header().calc_header_checksum();
        quoted[10..12].copy_from_slice(&csum.to_be_bytes());
        quoted[22..24].copy_from_slice(&53u16.to_be_bytes());
        let want = icmp_frame((B0_MAC, SEG_B.1), VIP_NAT, c.0, unreach, &quoted);
        assert_eq!(out, want, "outbound ICMP translation");
        // Inbound: a router on the client side says the reply (VIP:53 → client) exceeded
        // its TTL; the error goes to the real server about .11:5353 → client.
        let reply = udp_frame_macs((B0_MAC, SEG_B.1), (VIP_NAT, 53), c, b"answer");
        let te = Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit);
        let err = icmp_frame(
            (SEG_B.1, B0_MAC),
            SEG_B.0,
            VIP_NAT,
            te.clone(),
            &quote(&reply),
        );
        let out = go(dp, ifs.b0, &err, XDP_REDIRECT, Verdict::FwdIcmp);
        let mut quoted = quote(&reply);
        quoted[12..16].copy_from_slice(&rs.octets());
        quoted[10] = 0;
        quoted[11] = 0;
        let h = Ipv4HeaderSlice::from_slice(&quoted).expect("quoted header");
        let csum = h.to_header().calc_header_checksum();
        quoted[10..12].copy_from_slice(&csum.to_be_bytes());
        quoted[20..22].copy_from_slice(&5353u16.to_be_bytes());
        let mut want = icmp_frame((A0_MAC, rs_mac), SEG_B.0, rs, te, &quoted);
        // The outer header keeps the router as source; only its destination changed.
        want[..6].copy_from_slice(&rs_mac);
        assert_eq!(out, want, "inbound ICMP translation");
        // An ICMP error about no connection of ours is the host's.
        let stray = udp_frame_macs((B0_MAC, SEG_B.1), (VIP_NAT, 53), client(9, 1), b"x");
        let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
        let err = icmp_frame((SEG_B.1, B0_MAC), SEG_B.0, VIP_NAT, unreach, &quote(&stray));
        let out = go(dp, ifs.b0, &err, XDP_PASS, Verdict::PassNotTcpUdp);
        assert_eq!(out, err);
    });
}

/// Checks a TUN output: Ethernet to `rs_mac`, an outer IPv4 header LB_A0 → `rs` of
/// `proto` with a valid checksum, DF and TTL copied; returns the bytes after it.
fn outer(out: &[u8], rs: Ipv4Addr, rs_mac: [u8; 6], proto: IpNumber, inner: &[u8]) -> Vec<u8> {
    assert_eq!(&out[..6], &rs_mac);
    assert_eq!(&out[6..12], &A0_MAC);
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    let h = Ipv4HeaderSlice::from_slice(&out[14..]).expect("outer header");
    assert_eq!(h.source_addr(), LB_A0);
    assert_eq!(h.destination_addr(), rs);
    assert_eq!(h.protocol(), proto);
    assert_eq!(h.ttl(), inner[8]);
    assert!(h.dont_fragment(), "DF copied from the inner header");
    assert_eq!(h.total_len() as usize, out.len() - 14);
    let hdr = h.to_header();
    assert_eq!(hdr.calc_header_checksum(), hdr.header_checksum);
    out[34..].to_vec()
}

/// RFC 1071 sum, written out here so the test does not use rvs's own checksum code.
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = 0;
    for ch in bytes.chunks(2) {
        let w = if ch.len() == 2 {
            u16::from_be_bytes([ch[0], ch[1]])
        } else {
            u16::from_be_bytes([ch[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn tun_ipip_gue_and_gre_encapsulation() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(), |dp, ifs| {
        let c = client(5, 41000);
        // IPIP to .12.
        let syn = tcp_frame(c, (VIP_TUN, 80), Tcp::Syn, b"");
        let out = go(dp, ifs.a0, &syn, XDP_TX, Verdict::FwdNew);
        let rest = outer(&out, SEG_A[1].0, SEG_A[1].1, IpNumber::IPV4, &syn[14..]);
        assert_eq!(rest, syn[14..], "inner packet unchanged");
        assert_eq!(out.len(), syn.len() + 20);
        // GUE with checksum to .13:6080.
        let syn = tcp_frame(c, (VIP_TUN, 81), Tcp::Syn, b"hi");
        let out = go(dp, ifs.a0, &syn, XDP_TX, Verdict::FwdNew);
        let rest = outer(&out, SEG_A[2].0, SEG_A[2].1, IpNumber::UDP, &syn[14..]);
        let udp = &rest[..8];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        assert!((32768..=60999).contains(&sport), "GUE source port {sport}");
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 6080);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, rest.len());
        assert_eq!(&rest[8..12], &[0, 4, 0, 0], "GUE v0, proto IPIP");
        assert_eq!(&rest[12..], &syn[14..]);
        let pseudo = [
            &LB_A0.octets()[..],
            &SEG_A[2].0.octets(),
            &[0, 17],
            &(rest.len() as u16).to_be_bytes(),
        ]
        .concat();
        assert_eq!(internet_checksum(&[&pseudo, &rest]), 0, "GUE UDP checksum");
        // GRE with checksum to .12.
        let syn = tcp_frame(c, (VIP_TUN, 82), Tcp::Syn, b"abc");
        let out = go(dp, ifs.a0, &syn, XDP_TX, Verdict::FwdNew);
        let rest = outer(&out, SEG_A[1].0, SEG_A[1].1, IpNumber::GRE, &syn[14..]);
        assert_eq!(&rest[..4], &[0x80, 0, 0x08, 0x00], "GRE C bit, IPv4");
        assert_eq!(&rest[6..8], &[0, 0]);
        assert_eq!(internet_checksum(&[&rest]), 0, "GRE checksum");
        assert_eq!(&rest[8..], &syn[14..]);
        // GUE without checksum, UDP inside, next packet follows the entry.
        for v in [Verdict::FwdNew, Verdict::FwdEstablished] {
            let d = udp_frame(c, (VIP_TUN, 83), b"dgram");
            let out = go(dp, ifs.a0, &d, XDP_TX, v);
            let rest = outer(&out, SEG_A[2].0, SEG_A[2].1, IpNumber::UDP, &d[14..]);
            assert_eq!(&rest[6..8], &[0, 0], "--tun-nocsum: UDP checksum 0");
            assert_eq!(&rest[12..], &d[14..]);
        }
    });
}

#[test]
fn too_big_df_packet_gets_frag_needed() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.fib
        .ns()
        .exec(&["ip", "link", "set", "a0", "mtu", "1000"])
        .expect("mtu");
    env.with_dataplane(&config(), |dp, ifs| {
        let c = client(6, 42000);
        // 40 + 950 = 990 bytes of IPv4: fits 1000, not once IPIP adds 20.
        let payload = vec![0x5a; 950];
        let big = tcp_frame(c, (VIP_TUN, 80), Tcp::Syn, &payload);
        let out = go(dp, ifs.a0, &big, XDP_TX, Verdict::TxFragNeeded);
        let p = SlicedPacket::from_ethernet(&out).expect("ICMP frame");
        assert_eq!(&out[..6], &CLIENT_MAC);
        assert_eq!(&out[6..12], &A0_MAC);
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
        assert_eq!(ip.header().source_addr(), VIP_TUN, "from the VIP, as IPVS");
        assert_eq!(ip.header().destination_addr(), c.0);
        assert_eq!(ip.header().ttl(), 64);
        assert_eq!(out[15], 0xc0, "TOS: precedence internetwork control");
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 980
            }),
            "MTU less the IPIP header"
        );
        assert_eq!(icmp.payload(), &quote(&big)[..], "quotes header + 8 bytes");
        let expected = icmp.header().icmp_type.calc_checksum(icmp.payload());
        assert_eq!(icmp.checksum(), expected, "ICMP checksum");
        // Without DF it cannot be fragmented in XDP: dropped and counted.
        let mut nodf = big.clone();
        nodf[20] = 0;
        let h = Ipv4HeaderSlice::from_slice(&nodf[14..])
            .expect("hdr")
            .to_header();
        nodf[24..26].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
        go(dp, ifs.a0, &nodf, XDP_DROP, Verdict::DropTooBig);
    });
}

#[test]
fn truncated_frames_on_the_new_paths_are_passed() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    route_clients_via_b0(&env);
    env.with_dataplane(&config(), |dp, ifs| {
        let (rs, rs_mac) = SEG_A[0];
        let c = client(7, 7000);
        let q = udp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 53), b"q");
        let to_rs = go(dp, ifs.b0, &q, XDP_REDIRECT, Verdict::FwdNew);
        let reply = udp_frame_macs((rs_mac, A0_MAC), (rs, 5353), c, b"");
        let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
        let icmp = icmp_frame((rs_mac, A0_MAC), rs, c.0, unreach, &quote(&to_rs));
        let tun = tcp_frame(c, (VIP_TUN, 81), Tcp::Syn, b"");
        for (name, frame, ifindex, headers) in [
            ("nat reply", &reply, ifs.a0, 42),
            // IPVS reads the quoted ports (4 bytes); shorter quotes are the host's.
            ("icmp", &icmp, ifs.a0, icmp.len() - 4),
            ("tun", &tun, ifs.a0, 54),
        ] {
            for len in 14..headers {
                let cut = &frame[..len];
                let r = run(dp, cut, ifindex);
                assert_eq!(r.action, XDP_PASS, "{name} cut at {len}");
                assert_eq!(r.frame, cut, "{name} cut at {len} untouched");
            }
        }
    });
}

#[test]
fn decap_program_strips_ipip_gue_and_gre_for_local_addresses() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    let rs = SEG_A[1].0;
    env.fib
        .ns()
        .run(move || {
            let mut decap = DecapProgram::attach(
                "a1",
                &DecapOptions {
                    local: vec![rs],
                    gue_ports: vec![6080],
                },
            )
            .expect("attach decap");
            let inner = tcp_frame(client(8, 43000), (VIP_TUN, 80), Tcp::Syn, b"in");
            let outer = |proto: u8, dst: Ipv4Addr, extra: &[u8]| -> Vec<u8> {
                let payload = [extra, &inner[14..]].concat();
                let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0, 198, 18, 2, 1];
                ip.extend_from_slice(&dst.octets());
                let len = (20 + payload.len()) as u16;
                ip[2..4].copy_from_slice(&len.to_be_bytes());
                let c = internet_checksum(&[&ip]);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                [&inner[..14], &ip[..], &payload].concat()
            };
            let gue_len = (8 + 4 + inner.len() - 14) as u16;
            let mut gue = vec![0x9c, 0x40, 0x17, 0xc0];
            gue.extend_from_slice(&gue_len.to_be_bytes());
            gue.extend_from_slice(&[0, 0, 0, 4, 0, 0]);
            let cases: [(&str, Vec<u8>, bool); 6] = [
                ("ipip", outer(4, rs, &[]), true),
                ("gue", outer(17, rs, &gue), true),
                ("gre", outer(47, rs, &[0, 0, 0x08, 0x00]), true),
                (
                    "gre csum",
                    outer(47, rs, &[0x80, 0, 0x08, 0x00, 0, 0, 0, 0]),
                    true,
                ),
                ("ipip to another host", outer(4, SEG_A[2].0, &[]), false),
                ("gre non-IPv4", outer(47, rs, &[0, 0, 0x86, 0xdd]), false),
            ];
            for (name, frame, stripped) in &cases {
                let prog = decap.program().expect("program");
                let r = run_xdp(prog, frame, 0, 1).expect("test run");
                assert_eq!(r.action, XDP_PASS, "{name}");
                if *stripped {
                    assert_eq!(r.frame, inner, "{name}: inner frame");
                } else {
                    assert_eq!(&r.frame, frame, "{name}: untouched");
                }
            }
            // Every truncation of a tunnel frame passes: untouched, or stripped once the
            // inner IPv4 header is whole (the kernel then judges the inner packet).
            let ipip = outer(4, rs, &[]);
            let stripped_cuts = (14 + 20 + 20..ipip.len()).count() as u64;
            for len in 14..ipip.len() {
                let prog = decap.program().expect("program");
                let r = run_xdp(prog, &ipip[..len], 0, 1).expect("test run");
                assert_eq!(r.action, XDP_PASS);
            }
            let k = decap.counters().expect("counters");
            assert_eq!(
                (k.ipip, k.gue, k.gre, k.passed),
                (1 + stripped_cuts, 1, 2, 1)
            );
        })
        .expect("run in namespace");
}

#[test]
fn one_armed_nat_replies_leave_by_the_same_interface() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    // Clients behind a router on a0 itself: requests and replies both use a0 (XDP_TX).
    env.fib
        .ns()
        .exec(&["ip", "route", "add", "198.19.0.0/16", "via", "198.18.2.13"])
        .expect("client route");
    env.with_dataplane(&config(), |dp, ifs| {
        let (rs, rs_mac) = SEG_A[0];
        let router = SEG_A[2].1;
        let c = client(10, 44000);
        let syn = tcp_frame_macs((router, A0_MAC), c, (VIP_NAT, 80), Tcp::Syn, b"");
        let out = go(dp, ifs.a0, &syn, XDP_TX, Verdict::FwdNew);
        assert_eq!(
            out,
            tcp_frame_macs((A0_MAC, rs_mac), c, (rs, 8080), Tcp::Syn, b"")
        );
        let synack = tcp_frame_macs((rs_mac, A0_MAC), (rs, 8080), c, Tcp::SynAck, b"");
        let out = go(dp, ifs.a0, &synack, XDP_TX, Verdict::FwdNatReply);
        assert_eq!(
            out,
            tcp_frame_macs((A0_MAC, router), (VIP_NAT, 80), c, Tcp::SynAck, b"")
        );
        assert_checksums_ok(&out);
    });
}

#[test]
fn icmp_errors_about_dr_and_tun_connections_go_to_their_real_server() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(), |dp, ifs| {
        let c = client(11, 45000);
        let syn = tcp_frame(c, (VIP_DR, 80), Tcp::Syn, b"");
        go(dp, ifs.a0, &syn, XDP_TX, Verdict::FwdNew);
        // A router on the client's path says the real server's reply (VIP:80 → client) is
        // too big: forwarded unchanged, MACs towards the real server (IPVS: DR xmit).
        let reply = tcp_frame_macs((SEG_A[1].1, CLIENT_MAC), (VIP_DR, 80), c, Tcp::Ack, b"");
        let fneed =
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1400,
            });
        let err = icmp_frame((CLIENT_MAC, A0_MAC), SEG_B.0, VIP_DR, fneed, &quote(&reply));
        let out = go(dp, ifs.a0, &err, XDP_TX, Verdict::FwdIcmp);
        assert_eq!(out, dr_rewritten(&err, SEG_A[1].1, A0_MAC));
        // The same for a TUN connection: the error goes to the real server encapsulated
        // like its connection's packets (IPIP to .12).
        let syn = tcp_frame(c, (VIP_TUN, 80), Tcp::Syn, b"");
        go(dp, ifs.a0, &syn, XDP_TX, Verdict::FwdNew);
        let reply = tcp_frame_macs((SEG_A[1].1, CLIENT_MAC), (VIP_TUN, 80), c, Tcp::Ack, b"");
        let fneed =
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1400,
            });
        let err = icmp_frame(
            (CLIENT_MAC, A0_MAC),
            SEG_B.0,
            VIP_TUN,
            fneed,
            &quote(&reply),
        );
        let out = go(dp, ifs.a0, &err, XDP_TX, Verdict::FwdIcmp);
        let rest = outer(&out, SEG_A[1].0, SEG_A[1].1, IpNumber::IPV4, &err[14..]);
        assert_eq!(rest, err[14..], "the ICMP error, unchanged, inside IPIP");
    });
}

/// The address filter in front of the flow table: the host's own traffic leaves at once
/// (PassNotService), while the replies of a NAT real server removed from its service keep
/// being translated as long as their connection lives (IPVS keeps a removed server's
/// connections), also across a walk of the table that still finds them.
#[test]
fn address_filter_keeps_removed_nat_servers_replies() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    route_clients_via_b0(&env);
    env.with_dataplane(&config(), |dp, ifs| {
        let (rs, rs_mac) = SEG_A[0];
        let c = client(3, 40100);
        // Neither address is a VIP or a NAT real server's: passed untouched.
        let own = tcp_frame_macs(
            (SEG_B.1, B0_MAC),
            c,
            (Ipv4Addr::new(198, 18, 4, 1), 22),
            Tcp::Ack,
            b"",
        );
        let out = go(dp, ifs.b0, &own, XDP_PASS, Verdict::PassNotService);
        assert_eq!(out, own);
        let syn = tcp_frame_macs((SEG_B.1, B0_MAC), c, (VIP_NAT, 80), Tcp::Syn, b"");
        go(dp, ifs.b0, &syn, XDP_REDIRECT, Verdict::FwdNew);
        // Remove the NAT real servers (both NAT services go; the others stay).
        let mut config = rvs_config::Config::from_toml(&config()).expect("config");
        config.services.retain(|s| s.address != VIP_NAT);
        dp.apply(&config).expect("apply without the NAT services");
        let synack = tcp_frame_macs((rs_mac, A0_MAC), (rs, 8080), c, Tcp::SynAck, b"");
        let want = tcp_frame_macs((B0_MAC, SEG_B.1), (VIP_NAT, 80), c, Tcp::SynAck, b"");
        let out = go(dp, ifs.a0, &synack, XDP_REDIRECT, Verdict::FwdNatReply);
        assert_eq!(out, want, "reply of a removed NAT server, before a scan");
        dp.scan_conns().expect("scan");
        let out = go(dp, ifs.a0, &synack, XDP_REDIRECT, Verdict::FwdNatReply);
        assert_eq!(out, want, "reply of a removed NAT server, after a scan");
        // Once its entries are gone, a scan releases the address: the host's traffic again.
        let keys: Vec<_> = dp.conns_mut().keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            dp.conns_mut().remove(&k).expect("delete entry");
        }
        dp.scan_conns().expect("scan");
        let out = go(dp, ifs.a0, &synack, XDP_PASS, Verdict::PassNotService);
        assert_eq!(out, synack);
    });
}
