//! Maglev (mh) through the real XDP program: its choice for 10 000 flows equals the
//! userspace model's (rvs-sched, checked against kernel IPVS by its golden tests), and
//! removing one of 10 real servers moves few flows (root).

mod common;

use std::net::Ipv4Addr;

use common::*;
use rvs_dataplane::Dataplane;
use rvs_sched::Dest;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
const FLOWS: u32 = 10_000;

/// Client `i`: a distinct address in 198.19.0.0/16.
fn client_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8)
}

fn config(reals: &[u8], table_size: Option<u32>, mh_port: bool) -> String {
    let mut c = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"mh\"\nsched_flags = {}\n",
        if mh_port { "[\"mh-port\"]" } else { "[]" }
    );
    if let Some(size) = table_size {
        c += &format!("mh_table_size = {size}\n");
    }
    for &i in reals {
        c += &format!(
            "[[service.real]]\naddress = \"{}\"\nweight = {}\n",
            extra_real(i).0,
            u32::from(i % 3) + 1
        );
    }
    c
}

/// The userspace model: IPVS's list is newest first, i.e. the config order reversed.
fn model_table(reals: &[u8], size: u32) -> (Vec<u32>, Vec<u8>) {
    let order: Vec<u8> = reals.iter().rev().copied().collect();
    let dests: Vec<Dest> = order
        .iter()
        .map(|&i| Dest {
            addr: extra_real(i).0,
            port: 80,
            weight: u32::from(i % 3) + 1,
        })
        .collect();
    (
        rvs_sched::maglev_table(&dests, size).expect("model table"),
        order,
    )
}

/// Sends one SYN per flow (source port `sport_base + i` when `vary_port`) and returns which
/// extra real (index) each went to, read from the destination MAC.
fn choices(dp: &mut Dataplane, a0: u32, sport: u16, vary_port: bool) -> Vec<u8> {
    (0..FLOWS)
        .map(|i| {
            let port = if vary_port {
                sport.wrapping_add(i as u16)
            } else {
                sport
            };
            let syn = tcp_frame((client_addr(i), port), (VIP, 80), Tcp::Syn, b"");
            let r = run(dp, &syn, a0);
            assert_eq!(r.action, XDP_TX, "flow {i}");
            let idx = (0..rvs_lab::fib::EXTRA_REALS)
                .find(|&k| r.frame[..6] == extra_real(k).1)
                .expect("frame sent to one of the real servers");
            assert_eq!(
                &r.frame[..],
                &dr_rewritten(&syn, extra_real(idx).1, A0_MAC)[..]
            );
            idx
        })
        .collect()
}

fn check_against_model(table_size: Option<u32>, mh_port: bool) {
    let reals: Vec<u8> = (0..10).collect();
    let env = PacketEnv::new().expect("packet env");
    let size = table_size.unwrap_or(rvs_sched::IPVS_MH_TABLE_SIZE);
    let (table, order) = model_table(&reals, size);
    env.with_dataplane(&config(&reals, table_size, mh_port), |dp, ifs| {
        let got = choices(dp, ifs.a0, 1000, mh_port);
        for (i, &idx) in got.iter().enumerate() {
            let port = if mh_port {
                1000u16.wrapping_add(i as u16)
            } else {
                1000
            };
            let want = rvs_sched::mh_pick(&table, client_addr(i as u32), port, mh_port);
            assert_eq!(
                idx,
                order[want as usize],
                "flow {i} ({}:{port})",
                client_addr(i as u32)
            );
        }
    });
}

#[test]
fn xdp_matches_model_with_ipvs_table() {
    if root() {
        check_against_model(None, false);
    }
}

#[test]
fn xdp_matches_model_with_mh_port_and_large_table() {
    if root() {
        check_against_model(Some(65_537), true);
    }
}

#[test]
fn removing_one_of_ten_moves_only_its_flows_and_under_one_percent_of_others() {
    if !root() {
        return;
    }
    let all: Vec<u8> = (0..10).collect();
    let nine: Vec<u8> = (0..10).filter(|&i| i != 4).collect();
    let env = PacketEnv::new().expect("packet env");
    for (size, bound) in [(Some(65_537), Some(0.01)), (None, None)] {
        let (before, after) = env.with_dataplane(&config(&all, size, false), |dp, ifs| {
            let before = choices(dp, ifs.a0, 1000, false);
            let cfg = rvs_config::Config::from_toml(&config(&nine, size, false)).expect("config");
            dp.apply(&cfg).expect("apply");
            // Same sources, another port: new flows, same mh hash (port not hashed).
            (before, choices(dp, ifs.a0, 2000, false))
        });
        let stayed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != 4).collect();
        let moved = stayed.iter().filter(|&&i| before[i] != after[i]).count();
        let share = moved as f64 / stayed.len() as f64;
        println!(
            "mh table {}: {moved} of {} flows on surviving servers moved ({:.2}%)",
            size.unwrap_or(rvs_sched::IPVS_MH_TABLE_SIZE),
            stayed.len(),
            share * 100.0
        );
        assert!(
            after.iter().all(|&r| r != 4),
            "a flow still goes to the removed server"
        );
        if let Some(bound) = bound {
            assert!(share <= bound, "{share} of the other flows moved");
        }
    }
}
