//! Packet tests of the balancer through BPF_PROG_TEST_RUN: one frame in, the verdict and
//! the exact frame out (root).

mod common;

use std::net::Ipv4Addr;

use common::*;
use rvs_common::Verdict;
use rvs_dataplane::Dataplane;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const VIP_ALLPORTS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
const VIP_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 30);
const VIP_NOROUTE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 40);

fn client(n: u8, port: u16) -> (Ipv4Addr, u16) {
    (Ipv4Addr::new(198, 19, 1, n), port)
}

/// rr on TCP and UDP 198.18.0.10:80 with three reals added .11, .12, .13; a port-0 UDP
/// service; a service whose real server sits behind b0; one whose real has no neighbour.
fn config(weights: [u32; 3], extra: &str) -> String {
    let mut c = String::new();
    for proto in ["tcp", "udp"] {
        c += &format!(
            "[[service]]\nprotocol = \"{proto}\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n"
        );
        for (i, (ip, _)) in SEG_A.iter().enumerate() {
            c += &format!(
                "[[service.real]]\naddress = \"{ip}\"\nweight = {}\n",
                weights[i]
            );
        }
    }
    c += &format!(
        "[[service]]\nprotocol = \"udp\"\naddress = \"{VIP_ALLPORTS}\"\nport = 0\nscheduler = \"rr\"\n[[service.real]]\naddress = \"{}\"\n",
        SEG_A[0].0
    );
    c += &format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP_B}\"\nport = 443\n[[service.real]]\naddress = \"{}\"\n",
        SEG_B.0
    );
    c += &format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP_NOROUTE}\"\nport = 80\n[[service.real]]\naddress = \"198.18.2.99\"\n"
    );
    c + extra
}

fn verdict(dp: &Dataplane, v: Verdict) -> u64 {
    dp.verdicts()
        .expect("verdicts")
        .into_iter()
        .find(|(k, _)| *k == v)
        .map(|(_, n)| n)
        .unwrap_or(0)
}

/// Runs `frame` and asserts the action, the verdict counter it bumped and the exact output.
fn expect(dp: &mut Dataplane, ifindex: u32, frame: &[u8], action: u32, why: Verdict, out: &[u8]) {
    let before = verdict(dp, why);
    let r = run(dp, frame, ifindex);
    assert_eq!(r.action, action, "action for {why:?}");
    assert_eq!(verdict(dp, why), before + 1, "counter {}", why.name());
    assert_eq!(r.frame, out, "output frame for {why:?}");
    if action == XDP_TX || action == XDP_REDIRECT {
        // The program's output, not the test's expectation, is what a real server parses.
        assert_checksums_ok(&r.frame);
    }
}

#[test]
fn tcp_new_established_and_rr_order() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        // IPVS keeps servers newest first: rr hands out .13, .12, .11, .13, …
        let order = [2usize, 1, 0, 2, 1, 0];
        for (n, &rs) in order.iter().enumerate() {
            let syn = tcp_frame(client(n as u8 + 1, 40000), (VIP, 80), Tcp::Syn, b"");
            let want = dr_rewritten(&syn, SEG_A[rs].1, A0_MAC);
            expect(dp, ifs.a0, &syn, XDP_TX, Verdict::FwdNew, &want);
        }
        // The first flow's next packets follow its entry, with payload, ACK, FIN.
        for flags in [Tcp::Ack, Tcp::Ack, Tcp::Fin] {
            let pkt = tcp_frame(
                client(1, 40000),
                (VIP, 80),
                flags,
                b"GET / HTTP/1.0\r\n\r\n",
            );
            let want = dr_rewritten(&pkt, SEG_A[2].1, A0_MAC);
            expect(dp, ifs.a0, &pkt, XDP_TX, Verdict::FwdEstablished, &want);
        }
        // Counters on .13 (added last, so first in rr): flows 1 and 4, 5 packets.
        let rid = dp
            .planner()
            .real_id(&svc_id(rvs_config::Protocol::Tcp), SEG_A[2].0, 80)
            .expect("real id");
        let c = dp.real_counters(rid).expect("counters");
        assert_eq!((c.conns, c.packets_in), (2, 5));
    });
}

fn svc_id(protocol: rvs_config::Protocol) -> rvs_config::ServiceId {
    rvs_config::ServiceId {
        protocol,
        address: VIP,
        port: 80,
    }
}

#[test]
fn udp_flows_and_port_zero_service() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let first = udp_frame(client(1, 5353), (VIP, 80), b"hello");
        let want = dr_rewritten(&first, SEG_A[2].1, A0_MAC);
        expect(dp, ifs.a0, &first, XDP_TX, Verdict::FwdNew, &want);
        expect(dp, ifs.a0, &first, XDP_TX, Verdict::FwdEstablished, &want);
        // Port-0 service: every destination port of the VIP goes to its real server.
        for port in [1u16, 53, 8080, 65535] {
            let f = udp_frame(client(2, 1000), (VIP_ALLPORTS, port), b"x");
            expect(
                dp,
                ifs.a0,
                &f,
                XDP_TX,
                Verdict::FwdNew,
                &dr_rewritten(&f, SEG_A[0].1, A0_MAC),
            );
        }
    });
}

#[test]
fn quiesced_real_keeps_its_flows_and_gets_no_new_ones() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let syn = tcp_frame(client(1, 40000), (VIP, 80), Tcp::Syn, b"");
        expect(
            dp,
            ifs.a0,
            &syn,
            XDP_TX,
            Verdict::FwdNew,
            &dr_rewritten(&syn, SEG_A[2].1, A0_MAC),
        );
        // Weight of .13 → 0.
        let cfg = rvs_config::Config::from_toml(&config([1, 1, 0], "")).expect("config");
        dp.apply(&cfg).expect("apply");
        let ack = tcp_frame(client(1, 40000), (VIP, 80), Tcp::Ack, b"more");
        expect(
            dp,
            ifs.a0,
            &ack,
            XDP_TX,
            Verdict::FwdEstablished,
            &dr_rewritten(&ack, SEG_A[2].1, A0_MAC),
        );
        for n in 2..8 {
            let syn = tcp_frame(client(n, 40000), (VIP, 80), Tcp::Syn, b"");
            let r = run(dp, &syn, ifs.a0);
            assert_eq!(r.action, XDP_TX);
            assert_ne!(
                &r.frame[..6],
                &SEG_A[2].1,
                "new flow landed on the quiesced real"
            );
        }
        // All weights 0: new flows have nowhere to go; established ones still flow.
        let cfg = rvs_config::Config::from_toml(&config([0, 0, 0], "")).expect("config");
        dp.apply(&cfg).expect("apply");
        let syn = tcp_frame(client(50, 1), (VIP, 80), Tcp::Syn, b"");
        expect(dp, ifs.a0, &syn, XDP_DROP, Verdict::DropNoReal, &syn);
        expect(
            dp,
            ifs.a0,
            &ack,
            XDP_TX,
            Verdict::FwdEstablished,
            &dr_rewritten(&ack, SEG_A[2].1, A0_MAC),
        );
    });
}

#[test]
fn removed_real_drops_its_flows_like_ipvs() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let syn = tcp_frame(client(1, 40000), (VIP, 80), Tcp::Syn, b"");
        expect(
            dp,
            ifs.a0,
            &syn,
            XDP_TX,
            Verdict::FwdNew,
            &dr_rewritten(&syn, SEG_A[2].1, A0_MAC),
        );
        // Remove .13 from both services.
        let text = config([1, 1, 1], "").replace(
            &format!(
                "[[service.real]]\naddress = \"{}\"\nweight = 1\n",
                SEG_A[2].0
            ),
            "",
        );
        dp.apply(&rvs_config::Config::from_toml(&text).expect("config"))
            .expect("apply");
        let ack = tcp_frame(client(1, 40000), (VIP, 80), Tcp::Ack, b"");
        expect(dp, ifs.a0, &ack, XDP_DROP, Verdict::DropRealGone, &ack);
        // A new SYN on the same 5-tuple is scheduled afresh.
        let r = run(dp, &syn, ifs.a0);
        assert_eq!(r.action, XDP_TX);
        assert!(r.frame[..6] == SEG_A[0].1 || r.frame[..6] == SEG_A[1].1);
    });
}

#[test]
fn passes_what_is_not_for_a_service() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let other_vip = tcp_frame(
            client(1, 1),
            (Ipv4Addr::new(198, 18, 0, 99), 80),
            Tcp::Syn,
            b"",
        );
        expect(
            dp,
            ifs.a0,
            &other_vip,
            XDP_PASS,
            Verdict::PassNotService,
            &other_vip,
        );
        let other_port = tcp_frame(client(1, 1), (VIP, 81), Tcp::Syn, b"");
        expect(
            dp,
            ifs.a0,
            &other_port,
            XDP_PASS,
            Verdict::PassNotService,
            &other_port,
        );
        // Mid-stream TCP without an entry: IPVS does not schedule it (no sloppy_tcp).
        let ack = tcp_frame(client(9, 9), (VIP, 80), Tcp::Ack, b"");
        expect(dp, ifs.a0, &ack, XDP_PASS, Verdict::PassNoConn, &ack);
        let rst = tcp_frame(client(9, 9), (VIP, 80), Tcp::Rst, b"");
        expect(dp, ifs.a0, &rst, XDP_PASS, Verdict::PassNoConn, &rst);
        // ARP request (who-has 198.18.0.10), literal bytes.
        let arp: Vec<u8> = [
            &[0xff; 6][..],
            &CLIENT_MAC,
            &[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01],
            &CLIENT_MAC,
            &[198, 19, 1, 1],
            &[0; 6],
            &[198, 18, 0, 10],
        ]
        .concat();
        expect(dp, ifs.a0, &arp, XDP_PASS, Verdict::PassNotIpv4, &arp);
        // IPv6 frame: ethertype 0x86dd, 40-byte header, no payload.
        let mut v6 = [&A0_MAC[..], &CLIENT_MAC, &[0x86, 0xdd]].concat();
        v6.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 59, 64]);
        v6.extend_from_slice(&[0u8; 32]);
        expect(dp, ifs.a0, &v6, XDP_PASS, Verdict::PassNotIpv4, &v6);
        // ICMP echo to the VIP.
        let mut icmp = tcp_frame(client(1, 1), (VIP, 80), Tcp::Syn, b"");
        icmp[23] = 1;
        fix_ip_checksum(&mut icmp, 14);
        expect(dp, ifs.a0, &icmp, XDP_PASS, Verdict::PassNotTcpUdp, &icmp);
    });
}

#[test]
fn fragments_are_passed() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let base = udp_frame(client(1, 5000), (VIP, 80), &[7u8; 64]);
        // More-fragments set (first fragment), then a non-zero offset (a later one).
        for (b6, b7) in [(0x20u8, 0u8), (0x00, 0x08), (0x20, 0x08)] {
            let mut f = base.clone();
            f[20] = b6;
            f[21] = b7;
            fix_ip_checksum(&mut f, 14);
            expect(dp, ifs.a0, &f, XDP_PASS, Verdict::PassFragment, &f);
        }
        // Don't-fragment alone is not a fragment.
        let mut df = base.clone();
        df[20] = 0x40;
        fix_ip_checksum(&mut df, 14);
        let want = dr_rewritten(&df, SEG_A[2].1, A0_MAC);
        expect(dp, ifs.a0, &df, XDP_TX, Verdict::FwdNew, &want);
    });
}

fn fix_ip_checksum(frame: &mut [u8], l3: usize) {
    let ihl = ((frame[l3] & 0x0f) as usize) * 4;
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let mut sum = 0u32;
    for i in (l3..l3 + ihl).step_by(2) {
        sum += u32::from(u16::from_be_bytes([frame[i], frame[i + 1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn vlan_tag_and_ip_options_are_parsed() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        // One 802.1Q tag (VLAN 100) inserted after the MACs: forwarded, tag kept.
        let plain = tcp_frame(client(1, 1234), (VIP, 80), Tcp::Syn, b"");
        let tagged = [&plain[..12], &[0x81, 0x00, 0x00, 0x64], &plain[12..]].concat();
        let want = dr_rewritten(&tagged, SEG_A[2].1, A0_MAC);
        expect(dp, ifs.a0, &tagged, XDP_TX, Verdict::FwdNew, &want);
        // IPv4 with 8 bytes of options (two NOPs, a 4-byte option, END padding).
        let mut opt = tcp_frame(client(2, 1234), (VIP, 80), Tcp::Syn, b"");
        let options = [0x01u8, 0x01, 0x94, 0x04, 0x00, 0x00, 0x00, 0x00];
        opt.splice(34..34, options);
        opt[14] = 0x47; // version 4, IHL 7
        let tot = u16::from_be_bytes([opt[16], opt[17]]) + 8;
        opt[16..18].copy_from_slice(&tot.to_be_bytes());
        fix_ip_checksum(&mut opt, 14);
        let want = dr_rewritten(&opt, SEG_A[1].1, A0_MAC);
        expect(dp, ifs.a0, &opt, XDP_TX, Verdict::FwdNew, &want);
    });
}

#[test]
fn truncated_frames_are_passed_at_every_length() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let tcp = tcp_frame(client(1, 1), (VIP, 80), Tcp::Syn, b"");
        let udp = udp_frame(client(1, 1), (VIP, 80), b"");
        let tagged = [&tcp[..12], &[0x81, 0x00, 0x00, 0x64], &tcp[12..]].concat();
        for (name, frame, full) in [("tcp", &tcp, 54), ("udp", &udp, 42), ("vlan", &tagged, 58)] {
            assert_eq!(frame.len(), full, "{name} header length");
            // The kernel refuses frames shorter than an Ethernet header before any program
            // runs (EINVAL); a NIC never delivers them either.
            for len in 0..14 {
                let prog = dp
                    .xdp_program(rvs_common::programs::BALANCER)
                    .expect("program");
                let err = rvs_dataplane::testrun::run_xdp(prog, &frame[..len], ifs.a0, 1)
                    .expect_err("kernel refuses runt frames");
                assert!(
                    format!("{err:?}").contains("code: 22"),
                    "{name} at {len}: {err:?}"
                );
            }
            // From an Ethernet header up to one byte short of the L4 header: passed
            // untouched, counted as malformed.
            for len in 14..full {
                let cut = &frame[..len];
                expect(dp, ifs.a0, cut, XDP_PASS, Verdict::PassMalformed, cut);
            }
        }
        // Nonsense IPv4 headers: version 6 in an IPv4 frame, IHL < 5, total length < IHL.
        for (offset, value) in [(14usize, 0x65u8), (14, 0x44), (17, 10)] {
            let mut bad = tcp.clone();
            bad[offset] = value;
            if offset == 17 {
                bad[16] = 0;
            }
            expect(dp, ifs.a0, &bad, XDP_PASS, Verdict::PassMalformed, &bad);
        }
    });
}

/// `frame` with IPv4 options inserted (IHL and total length adjusted, checksum fixed).
fn with_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "options are whole words");
    let mut f = frame.to_vec();
    f.splice(34..34, options.iter().copied());
    f[14] = 0x45 + (options.len() / 4) as u8;
    let tot = u16::from_be_bytes([f[16], f[17]]) + options.len() as u16;
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    fix_ip_checksum(&mut f, 14);
    f
}

/// `frame` with its IPv4 total length set to `tot` (checksum fixed).
fn with_tot_len(frame: &[u8], tot: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    fix_ip_checksum(&mut f, 14);
    f
}

#[test]
fn packets_the_kernel_discards_are_not_scheduled() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let syn = tcp_frame(client(1, 1000), (VIP, 80), Tcp::Syn, b"");
        let udp = udp_frame(client(1, 1000), (VIP, 80), b"data");
        let pass = |dp: &mut Dataplane, f: &[u8], why| expect(dp, ifs.a0, f, XDP_PASS, why, f);
        let dropped = |dp: &mut Dataplane, f: &[u8], why| expect(dp, ifs.a0, f, XDP_DROP, why, f);

        // A wrong header checksum: ip_rcv_core drops it (IpExtInCsumErrors).
        let mut bad = syn.clone();
        bad[24] ^= 0x01;
        pass(dp, &bad, Verdict::PassBadChecksum);
        let mut bad = udp.clone();
        bad[25] ^= 0x80;
        pass(dp, &bad, Verdict::PassBadChecksum);

        // Total length too short for the L4 header, TCP data offset < 5 or past the total
        // length: the kernel's IP layer would route these on, so they are dropped here.
        dropped(dp, &with_tot_len(&syn, 20 + 19), Verdict::DropBadL4Header);
        dropped(dp, &with_tot_len(&udp, 20 + 7), Verdict::DropBadL4Header);
        for doff in [0u8, 4, 6, 15] {
            let mut f = syn.clone();
            f[46] = (doff << 4) | (f[46] & 0x0F);
            dropped(dp, &f, Verdict::DropBadL4Header);
        }
        // A data offset covering options inside the total length is fine.
        let mut opts = tcp_frame(client(1, 1001), (VIP, 80), Tcp::Syn, &[1, 1, 1, 0]);
        opts[46] = (6 << 4) | (opts[46] & 0x0F);
        let r = run(dp, &opts, ifs.a0);
        assert_eq!(r.action, XDP_TX, "TCP options inside the segment");
        // The frame shorter than the total length: truncated.
        let long = tcp_frame(client(1, 1000), (VIP, 80), Tcp::Syn, b"abcd");
        pass(dp, &long[..long.len() - 2], Verdict::PassMalformed);
        // Ethernet padding past the total length is no error.
        let mut padded = tcp_frame(client(1, 1002), (VIP, 80), Tcp::Syn, b"");
        padded.extend_from_slice(&[0; 6]);
        let r = run(dp, &padded, ifs.a0);
        assert_eq!(r.action, XDP_TX, "padded frame");

        // Martian sources: ip_route_input_slow drops them before routing.
        for src in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(0, 1, 2, 3),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(224, 0, 0, 1),
            Ipv4Addr::new(239, 255, 255, 250),
            Ipv4Addr::BROADCAST,
        ] {
            let f = tcp_frame((src, 1000), (VIP, 80), Tcp::Syn, b"");
            pass(dp, &f, Verdict::PassMartianSource);
        }
        // The VIP as its own client is dropped once the service is found; the same
        // addresses for no service are none of rvs's business.
        let land = tcp_frame((VIP, 80), (VIP, 80), Tcp::Syn, b"");
        dropped(dp, &land, Verdict::DropSourceIsVip);
        let other = Ipv4Addr::new(198, 18, 0, 99);
        let not_ours = tcp_frame((other, 80), (other, 80), Tcp::Syn, b"");
        pass(dp, &not_ours, Verdict::PassNotService);

        // Malformed options (as ip_options_compile): length 0 or 1, past the header, a
        // type byte with no room for its length.
        for options in [
            [0x94u8, 0x00, 0x00, 0x00],
            [0x94, 0x01, 0x00, 0x00],
            [0x94, 0x05, 0x00, 0x00],
            [0x01, 0x01, 0x01, 0x94],
        ] {
            pass(dp, &with_options(&syn, &options), Verdict::PassBadOptions);
        }
        let overlong = [0x07u8, 0x27, 0x04, 0, 0, 0, 0, 0];
        pass(dp, &with_options(&syn, &overlong), Verdict::PassBadOptions);
        // Loose and strict source routing: the kernel drops them unless
        // accept_source_route is set.
        for kind in [0x83u8, 0x89] {
            let srr = [0x01, kind, 0x07, 0x04, 198, 18, 1, 11];
            pass(dp, &with_options(&syn, &srr), Verdict::PassSourceRoute);
        }
        // Well-formed options after END are not parsed; a record-route option is fine.
        let rr = [0x07u8, 0x07, 0x04, 0, 0, 0, 0, 0x00];
        let f = with_options(&tcp_frame(client(2, 1003), (VIP, 80), Tcp::Syn, b""), &rr);
        let r = run(dp, &f, ifs.a0);
        assert_eq!(r.action, XDP_TX, "record route");
        let after_end = [0x00u8, 0x83, 0x00, 0x00];
        let f = with_options(
            &tcp_frame(client(2, 1004), (VIP, 80), Tcp::Syn, b""),
            &after_end,
        );
        let r = run(dp, &f, ifs.a0);
        assert_eq!(r.action, XDP_TX, "bytes after END");
    });
}

#[test]
fn redirects_to_the_egress_interface_and_drops_without_neighbour() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let syn = tcp_frame(client(1, 1), (VIP_B, 443), Tcp::Syn, b"");
        let want = dr_rewritten(&syn, SEG_B.1, B0_MAC);
        expect(dp, ifs.a0, &syn, XDP_REDIRECT, Verdict::FwdNew, &want);
        let ack = tcp_frame(client(1, 1), (VIP_B, 443), Tcp::Ack, b"data");
        expect(
            dp,
            ifs.a0,
            &ack,
            XDP_REDIRECT,
            Verdict::FwdEstablished,
            &dr_rewritten(&ack, SEG_B.1, B0_MAC),
        );
        let lost = tcp_frame(client(1, 1), (VIP_NOROUTE, 80), Tcp::Syn, b"");
        expect(dp, ifs.a0, &lost, XDP_DROP, Verdict::DropNoRoute, &lost);
    });
}

#[test]
fn a_literal_syn_leaves_with_only_its_macs_rewritten() {
    if !root() {
        return;
    }
    // 198.19.1.1:40000 → 198.18.0.10:80 SYN, DF, seq 1000, window 64240, TTL 64; the IP
    // checksum is computed here, the TCP one taken from the builder, both checked by etherparse.
    let syn: Vec<u8> = [
        &A0_MAC[..],
        &CLIENT_MAC,
        &[0x08, 0x00],
        &[0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06],
        &[0x00, 0x00],
        &[198, 19, 1, 1, 198, 18, 0, 10],
        &[
            0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00,
        ],
        &[0x50, 0x02, 0xfa, 0xf0, 0x00, 0x00, 0x00, 0x00],
    ]
    .concat();
    let mut syn = syn;
    fix_ip_checksum(&mut syn, 14);
    // TCP checksum filled from the builder's identical frame.
    let built = tcp_frame(client(1, 40000), (VIP, 80), Tcp::Syn, b"");
    assert_eq!(
        syn[..50],
        built[..50],
        "hand-written header matches the builder"
    );
    syn[50..52].copy_from_slice(&built[50..52]);
    assert_checksums_ok(&syn);
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let r = run(dp, &syn, ifs.a0);
        assert_eq!(r.action, XDP_TX);
        let mut want = syn.clone();
        want[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x02, 0x0d]);
        want[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xa0]);
        assert_eq!(r.frame, want);
    });
}

/// The real server a frame was sent to (index into SEG_A).
fn landed(frame: &[u8]) -> usize {
    SEG_A
        .iter()
        .position(|(_, mac)| frame[..6] == *mac)
        .expect("sent to a real server")
}

#[test]
fn persistence_keeps_a_client_network_on_its_server() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    let persistent = |weights: [u32; 3]| {
        config(weights, "").replacen(
            "scheduler = \"rr\"\n",
            "scheduler = \"rr\"\npersistence = { timeout = 300, netmask = \"255.255.255.0\" }\n",
            1,
        )
    };
    env.with_dataplane(&persistent([1, 1, 1]), |dp, ifs| {
        let mut syn = |n: u8, net: u8, port: u16| {
            let f = tcp_frame(
                (Ipv4Addr::new(198, 19, net, n), port),
                (VIP, 80),
                Tcp::Syn,
                b"",
            );
            let r = run(dp, &f, ifs.a0);
            assert_eq!(r.action, XDP_TX);
            landed(&r.frame)
        };
        // rr would hand out .13, .12, .11: persistence keeps the /24 on .13.
        assert_eq!(syn(1, 1, 1000), 2);
        assert_eq!(syn(1, 1, 1001), 2, "same client, new connection");
        assert_eq!(syn(77, 1, 1002), 2, "same /24");
        assert_eq!(
            syn(1, 2, 1000),
            1,
            "another /24 is scheduled: rr goes on to .12"
        );
        // Quiesced: persistent clients still go there (IPVS's default behaviour).
        let cfg = rvs_config::Config::from_toml(&persistent([1, 1, 0])).expect("config");
        dp.apply(&cfg).expect("apply");
        let mut syn2 = |n: u8, net: u8, port: u16| {
            let f = tcp_frame(
                (Ipv4Addr::new(198, 19, net, n), port),
                (VIP, 80),
                Tcp::Syn,
                b"",
            );
            landed(&run(dp, &f, ifs.a0).frame)
        };
        assert_eq!(syn2(5, 1, 2000), 2);
        assert_ne!(syn2(5, 3, 2000), 2, "new clients avoid the quiesced server");
    });
}

#[test]
fn one_packet_scheduling_keeps_no_entry() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    let text = config([1, 1, 1], "").replacen(
        "protocol = \"udp\"\naddress = \"198.18.0.10\"\nport = 80\nscheduler = \"rr\"\n",
        "protocol = \"udp\"\naddress = \"198.18.0.10\"\nport = 80\nscheduler = \"rr\"\none_packet = true\n",
        1,
    );
    env.with_dataplane(&text, |dp, ifs| {
        let dgram = udp_frame(client(1, 5353), (VIP, 80), b"q");
        for want in [2usize, 1, 0, 2] {
            let before = verdict(dp, Verdict::FwdNew);
            let r = run(dp, &dgram, ifs.a0);
            assert_eq!((r.action, landed(&r.frame)), (XDP_TX, want));
            assert_eq!(
                verdict(dp, Verdict::FwdNew),
                before + 1,
                "every datagram is new"
            );
        }
        assert_eq!(dp.connections().len(), 0, "no connection entry kept");
    });
}

#[test]
fn vrrp_backup_passes_new_connections_and_keeps_its_maps() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let open = tcp_frame(client(1, 1000), (VIP, 80), Tcp::Syn, b"");
        expect(
            dp,
            ifs.a0,
            &open,
            XDP_TX,
            Verdict::FwdNew,
            &dr_rewritten(&open, SEG_A[2].1, A0_MAC),
        );
        dp.set_standby([VIP].into_iter().collect())
            .expect("standby");
        let syn = tcp_frame(client(2, 1000), (VIP, 80), Tcp::Syn, b"");
        expect(dp, ifs.a0, &syn, XDP_PASS, Verdict::PassStandby, &syn);
        // Other VIPs are not affected, and a connection already open keeps flowing.
        let other = udp_frame(client(3, 1), (VIP_ALLPORTS, 9), b"x");
        expect(
            dp,
            ifs.a0,
            &other,
            XDP_TX,
            Verdict::FwdNew,
            &dr_rewritten(&other, SEG_A[0].1, A0_MAC),
        );
        let ack = tcp_frame(client(1, 1000), (VIP, 80), Tcp::Ack, b"");
        expect(
            dp,
            ifs.a0,
            &ack,
            XDP_TX,
            Verdict::FwdEstablished,
            &dr_rewritten(&ack, SEG_A[2].1, A0_MAC),
        );
        // MASTER again: the warm maps balance at once (rr carries on with .12).
        dp.set_standby(Default::default()).expect("active");
        expect(
            dp,
            ifs.a0,
            &syn,
            XDP_TX,
            Verdict::FwdNew,
            &dr_rewritten(&syn, SEG_A[1].1, A0_MAC),
        );
    });
}

/// The new-flow half runs by tail call: with its program-array slot empty a new flow is
/// passed untouched and counted as a failed tail call (never dropped), known connections
/// still go out from the entry program alone, and a reload on the same pins (a restart)
/// points the array at its own `rvs_xdp_new` again.
#[test]
fn failed_tail_call_passes_and_a_reload_refills_the_slot() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config([1, 1, 1], ""), |dp, ifs| {
        let syn = tcp_frame(client(1, 40000), (VIP, 80), Tcp::Syn, b"");
        let want = dr_rewritten(&syn, SEG_A[2].1, A0_MAC);
        expect(dp, ifs.a0, &syn, XDP_TX, Verdict::FwdNew, &want);

        let pin = dp.pin_dir().join(rvs_common::maps::PROGS);
        let data = aya::maps::MapData::from_pin(&pin).expect("pinned program array");
        let mut progs = aya::maps::ProgramArray::try_from(aya::maps::Map::ProgramArray(data))
            .expect("program array");
        progs
            .clear_index(&rvs_common::PROG_NEW_FLOW)
            .expect("clear the new-flow slot");

        let other = tcp_frame(client(2, 40000), (VIP, 80), Tcp::Syn, b"");
        expect(
            dp,
            ifs.a0,
            &other,
            XDP_PASS,
            Verdict::PassTailCallFailed,
            &other,
        );
        let ack = tcp_frame(client(1, 40000), (VIP, 80), Tcp::Ack, b"");
        let want_ack = dr_rewritten(&ack, SEG_A[2].1, A0_MAC);
        expect(dp, ifs.a0, &ack, XDP_TX, Verdict::FwdEstablished, &want_ack);

        // A second load on the same pins, as a restarted rvsd does: it adopts the maps and
        // fills the slot, so the first object's entry program schedules again.
        let limits = rvs_config::Limits::default();
        let again = Dataplane::load(dp.pin_dir(), limits).expect("reload on the same pins");
        let want_other = dr_rewritten(&other, SEG_A[1].1, A0_MAC);
        expect(dp, ifs.a0, &other, XDP_TX, Verdict::FwdNew, &want_other);
        drop(again);
    });
}
