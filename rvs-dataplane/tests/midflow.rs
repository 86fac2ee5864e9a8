//! Mid-flow packets through the real XDP program (BPF_PROG_TEST_RUN, root): a TCP segment
//! other than a SYN with no connection entry — what a director behind ECMP receives when
//! the router re-hashes a flow to it. With sloppy_tcp, mh and sh schedule it by the same
//! hash a SYN would use and create an ESTABLISHED entry (IPVS's state for an ACK on a new
//! entry); without, or for rr, it is passed. The second chance sends it to the previous mh
//! table's server during the window after a change.

mod common;

use std::{net::Ipv4Addr, time::Duration};

use common::*;
use rvs_common::{ConnState, FlowKey, Verdict, midflow::MidflowCount};
use rvs_dataplane::Dataplane;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 60);

/// Client `i`: a distinct address in 198.19.0.0/16.
fn client_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8)
}

/// One TCP service on VIP:80 with the extra reals `reals`, and a `[flows]` section.
fn config(scheduler: &str, reals: &[u8], flows: &str) -> String {
    let mut c = format!("{flows}\n");
    c += &format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"{scheduler}\"\n"
    );
    for &i in reals {
        c += &format!("[[service.real]]\naddress = \"{}\"\n", extra_real(i).0);
    }
    c
}

/// Runs one frame and returns the action and the extra real it went to (by its MAC).
fn send(dp: &mut Dataplane, a0: u32, frame: &[u8]) -> (u32, Option<u8>) {
    let r = run(dp, frame, a0);
    let to = (0..rvs_lab::fib::EXTRA_REALS).find(|&k| r.frame[..6] == extra_real(k).1);
    if r.action == XDP_TX {
        let k = to.expect("sent to an extra real");
        assert_eq!(r.frame, dr_rewritten(frame, extra_real(k).1, A0_MAC));
        assert_checksums_ok(&r.frame);
    }
    (r.action, to)
}

fn verdict(dp: &Dataplane, v: Verdict) -> u64 {
    dp.verdicts()
        .expect("verdicts")
        .into_iter()
        .find(|(k, _)| *k == v)
        .map_or(0, |(_, n)| n)
}

fn midflow(dp: &Dataplane, c: MidflowCount) -> u64 {
    dp.midflow_counts().expect("midflow counters")[c as usize]
}

fn flow(src: (Ipv4Addr, u16)) -> FlowKey {
    FlowKey {
        src: u32::from_ne_bytes(src.0.octets()),
        dst: u32::from_ne_bytes(VIP.octets()),
        sport: src.1.to_be(),
        dport: 80u16.to_be(),
        proto: 6,
    }
}

/// The state and real-server address of the entry of `src`, if any.
fn entry(dp: &Dataplane, src: (Ipv4Addr, u16)) -> Option<(u8, Ipv4Addr)> {
    let key = flow(src);
    dp.connections()
        .into_iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, c, _)| {
            let real = dp.real(c.real).expect("real entry");
            (c.state, Ipv4Addr::from(real.addr.to_ne_bytes()))
        })
}

/// With sloppy_tcp on, a mid-flow ACK from a source goes where that source's SYN went (mh
/// and sh hash the source address only), gets an ESTABLISHED entry, and later packets
/// follow the entry.
fn picked_up_by_the_hash(scheduler: &str) {
    let env = PacketEnv::new().expect("packet env");
    let reals: Vec<u8> = (0..5).collect();
    env.with_dataplane(
        &config(scheduler, &reals, "[flows]\nsloppy_tcp = true"),
        |dp, ifs| {
            for i in 0..40 {
                let addr = client_addr(i);
                let syn = tcp_frame((addr, 1000), (VIP, 80), Tcp::Syn, b"");
                let (action, by_syn) = send(dp, ifs.a0, &syn);
                assert_eq!(action, XDP_TX);
                let before = verdict(dp, Verdict::FwdNew);
                let ack = tcp_frame((addr, 2000), (VIP, 80), Tcp::Ack, b"data");
                let (action, by_ack) = send(dp, ifs.a0, &ack);
                assert_eq!((action, by_ack), (XDP_TX, by_syn), "{scheduler} flow {i}");
                assert_eq!(verdict(dp, Verdict::FwdNew), before + 1);
                let k = by_ack.expect("a real");
                assert_eq!(
                    entry(dp, (addr, 2000)),
                    Some((ConnState::Established as u8, extra_real(k).0)),
                    "IPVS: ack on a new (NONE) entry → ESTABLISHED"
                );
                let est = verdict(dp, Verdict::FwdEstablished);
                assert_eq!(send(dp, ifs.a0, &ack), (XDP_TX, by_syn));
                assert_eq!(verdict(dp, Verdict::FwdEstablished), est + 1);
            }
            // A RST is never scheduled (IPVS's tcp_conn_schedule refuses it).
            let rst = tcp_frame((client_addr(1), 3000), (VIP, 80), Tcp::Rst, b"");
            let passed = midflow(dp, MidflowCount::Passed);
            assert_eq!(send(dp, ifs.a0, &rst).0, XDP_PASS);
            assert_eq!(midflow(dp, MidflowCount::Passed), passed + 1);
            assert_eq!(entry(dp, (client_addr(1), 3000)), None);
        },
    );
}

#[test]
fn mh_mid_flow_packet_is_scheduled_by_the_hash_with_sloppy_tcp() {
    if root() {
        picked_up_by_the_hash("mh");
    }
}

#[test]
fn sh_mid_flow_packet_is_scheduled_by_the_hash_with_sloppy_tcp() {
    if root() {
        picked_up_by_the_hash("sh");
    }
}

/// `flows` must leave a mid-flow ACK of a `scheduler` service passed, counted, no entry.
fn passed(scheduler: &str, flows: &str) {
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(scheduler, &[0, 1, 2], flows), |dp, ifs| {
        let src = (client_addr(7), 2000);
        let ack = tcp_frame(src, (VIP, 80), Tcp::Ack, b"data");
        let (pass, counted) = (
            verdict(dp, Verdict::PassNoConn),
            midflow(dp, MidflowCount::Passed),
        );
        let r = run(dp, &ack, ifs.a0);
        assert_eq!(r.action, XDP_PASS, "{scheduler} with {flows:?}");
        assert_eq!(r.frame, ack, "passed untouched");
        assert_eq!(verdict(dp, Verdict::PassNoConn), pass + 1);
        assert_eq!(midflow(dp, MidflowCount::Passed), counted + 1);
        assert_eq!(entry(dp, src), None);
        // A SYN of the same service is still scheduled.
        let syn = tcp_frame((client_addr(7), 2001), (VIP, 80), Tcp::Syn, b"");
        assert_eq!(send(dp, ifs.a0, &syn).0, XDP_TX);
    });
}

#[test]
fn mid_flow_packet_is_passed_without_sloppy_tcp_as_ipvs() {
    if !root() {
        return;
    }
    for scheduler in ["mh", "sh"] {
        passed(scheduler, "[flows]\nsloppy_tcp = false");
        // "auto" without [bgp]: one director, IPVS's default (sloppy_tcp = 0).
        passed(scheduler, "");
    }
}

#[test]
fn non_hash_schedulers_pass_mid_flow_packets_even_with_sloppy_tcp() {
    if !root() {
        return;
    }
    // Another director's rr/wlc would have chosen differently: passed, not guessed.
    for scheduler in ["rr", "wlc"] {
        passed(scheduler, "[flows]\nsloppy_tcp = true");
    }
}

/// Where a new connection (a SYN from a fresh port) of source `i` goes now.
fn syn_choice(dp: &mut Dataplane, a0: u32, i: u32, port: u16) -> u8 {
    let syn = tcp_frame((client_addr(i), port), (VIP, 80), Tcp::Syn, b"");
    let (action, to) = send(dp, a0, &syn);
    assert_eq!(action, XDP_TX);
    to.expect("a real")
}

#[test]
fn second_chance_sends_a_mid_flow_miss_to_the_previous_tables_server_during_the_window() {
    if !root() {
        return;
    }
    const FLOWS: u32 = 400;
    const WINDOW_S: u64 = 2;
    let flows = format!("[flows]\nsloppy_tcp = true\nsecond_chance = {WINDOW_S}");
    let five: Vec<u8> = (0..5).collect();
    let six: Vec<u8> = (0..6).collect();
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config("mh", &five, &flows), |dp, ifs| {
        let before: Vec<u8> = (0..FLOWS)
            .map(|i| syn_choice(dp, ifs.a0, i, 1000))
            .collect();
        let cfg = rvs_config::Config::from_toml(&config("mh", &six, &flows)).expect("config");
        dp.apply(&cfg).expect("add a real server");
        let svc = cfg.services[0].id();
        assert!(dp.planner().in_second_chance(&svc), "window opened");
        // The new table, seen by new connections (SYNs are never given a second chance).
        let after: Vec<u8> = (0..FLOWS)
            .map(|i| syn_choice(dp, ifs.a0, i, 3000))
            .collect();
        let moved: Vec<u32> = (0..FLOWS)
            .filter(|&i| before[i as usize] != after[i as usize])
            .collect();
        assert!(
            !moved.is_empty() && moved.len() < FLOWS as usize / 2,
            "{} moved",
            moved.len()
        );
        // Mid-flow misses within the window: the previous table's server for every flow.
        for i in 0..FLOWS {
            let ack = tcp_frame((client_addr(i), 2000), (VIP, 80), Tcp::Ack, b"");
            let to = send(dp, ifs.a0, &ack);
            assert_eq!(
                to,
                (XDP_TX, Some(before[i as usize])),
                "flow {i} in the window"
            );
        }
        // After the window (ended by the periodic scan): the new table's choice.
        std::thread::sleep(Duration::from_millis(WINDOW_S * 1000 + 500));
        dp.scan_conns().expect("scan");
        assert!(!dp.planner().in_second_chance(&svc), "window closed");
        for &i in &moved {
            let ack = tcp_frame((client_addr(i), 4000), (VIP, 80), Tcp::Ack, b"");
            let to = send(dp, ifs.a0, &ack);
            assert_eq!(
                to,
                (XDP_TX, Some(after[i as usize])),
                "flow {i} after the window"
            );
        }
    });
}

#[test]
fn second_chance_skips_a_previous_server_that_was_removed() {
    if !root() {
        return;
    }
    const FLOWS: u32 = 200;
    let flows = "[flows]\nsloppy_tcp = true\nsecond_chance = 600";
    let five: Vec<u8> = (0..5).collect();
    let four: Vec<u8> = (0..4).collect();
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config("mh", &five, flows), |dp, ifs| {
        let before: Vec<u8> = (0..FLOWS)
            .map(|i| syn_choice(dp, ifs.a0, i, 1000))
            .collect();
        let cfg = rvs_config::Config::from_toml(&config("mh", &four, flows)).expect("config");
        dp.apply(&cfg).expect("remove a real server");
        let after: Vec<u8> = (0..FLOWS)
            .map(|i| syn_choice(dp, ifs.a0, i, 3000))
            .collect();
        let mut on_removed = 0;
        for i in 0..FLOWS {
            let ack = tcp_frame((client_addr(i), 2000), (VIP, 80), Tcp::Ack, b"");
            let (action, to) = send(dp, ifs.a0, &ack);
            assert_eq!(action, XDP_TX);
            if before[i as usize] == 4 {
                // Its server is gone: the current table decides.
                on_removed += 1;
                assert_eq!(to, Some(after[i as usize]), "flow {i}");
            } else {
                assert_eq!(to, Some(before[i as usize]), "flow {i}");
            }
        }
        assert!(on_removed > 0);
        // The window outlives a later change only as that change's own window.
        let svc = cfg.services[0].id();
        assert!(dp.planner().in_second_chance(&svc));
        dp.apply(&rvs_config::Config::from_toml(flows).expect("empty config"))
            .expect("remove the service");
        assert!(!dp.planner().in_second_chance(&svc));
    });
}

#[test]
fn without_a_window_a_change_keeps_no_previous_table() {
    if !root() {
        return;
    }
    let flows = "[flows]\nsloppy_tcp = true";
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config("mh", &[0, 1, 2], flows), |dp, ifs| {
        let cfg = rvs_config::Config::from_toml(&config("mh", &[0, 1, 2, 3], flows)).expect("cfg");
        dp.apply(&cfg).expect("add");
        assert!(!dp.planner().in_second_chance(&cfg.services[0].id()));
        // Mid-flow packets follow the current table: as a SYN from the same source.
        for i in 0..50 {
            let want = syn_choice(dp, ifs.a0, i, 1000);
            let ack = tcp_frame((client_addr(i), 2000), (VIP, 80), Tcp::Ack, b"");
            assert_eq!(send(dp, ifs.a0, &ack), (XDP_TX, Some(want)));
        }
    });
}

#[test]
fn a_service_replaced_by_another_in_one_apply_forwards_to_the_new_servers() {
    if !root() {
        return;
    }
    // The removed service's real-server ids go to the new one within the same plan: its
    // entries must not be overwritten by the old ones' tombstones (found by bench-ecmp).
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config("mh", &[0, 1, 2], ""), |dp, ifs| {
        let other = config("mh", &[3, 4, 5], "").replace(&VIP.to_string(), "198.18.0.61");
        dp.apply(&rvs_config::Config::from_toml(&other).expect("config"))
            .expect("replace the service");
        for i in 0..20 {
            let syn = tcp_frame(
                (client_addr(i), 1000),
                (Ipv4Addr::new(198, 18, 0, 61), 80),
                Tcp::Syn,
                b"",
            );
            let r = run(dp, &syn, ifs.a0);
            assert_eq!(r.action, XDP_TX, "flow {i}");
            assert!((3..6).any(|k| r.frame[..6] == extra_real(k).1), "flow {i}");
        }
    });
}
