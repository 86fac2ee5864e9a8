//! End to end in the direct-routing lab (root): an fwmark service for ports 80 and 443 of
//! a VIP, defined by its mark's classification rule, balances both ports with one rr
//! cursor across three real servers.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use rvs_dataplane::PassProgram;
use rvs_lab::{DrLab, Rvsd, run_many};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// rvsd's config: the mark's rule (TCP to VIP ports 80 and 443 gets mark 1) and the fwmark
/// service of mark 1 with the lab's three real servers.
fn config(pin: &Path, lab: &DrLab) -> String {
    let mut c = format!(
        "[daemon]\ninterfaces = [\"{}\"]\npin_path = \"{}\"\n\n[[fwmark_rule]]\nmark = 1\nprotocol = \"tcp\"\ndestination = [\"{VIP}/32\"]\nports = [{{ first = 80, last = 80 }}, {{ first = 443, last = 443 }}]\n\n[[service]]\nfwmark = 1\nscheduler = \"rr\"\n",
        lab.lb_uplink(),
        pin.display()
    );
    for rs in lab.real_servers() {
        c += &format!("[[service.real]]\naddress = \"{}\"\n", rs.addr());
    }
    c
}

/// Opens `n` connections to `port` (one request each); answers per real server.
fn shares(lab: &DrLab, port: u16, n: usize, counts: &mut BTreeMap<(String, u16), usize>) {
    for (i, r) in run_many(lab.client(), SocketAddr::from((VIP, port)), n, 1)
        .into_iter()
        .enumerate()
    {
        match r {
            Ok(name) => *counts.entry((name, port)).or_insert(0) += 1,
            Err(e) => panic!("connection {i} of {n} to port {port} failed: {e:#}"),
        }
    }
}

#[test]
fn fwmark_service_balances_ports_80_and_443() {
    if !rvs_lab::root_or_skip("fwmark DR lab end-to-end test") {
        return;
    }
    let lab = DrLab::new(3, &[VIP]).expect("lab");
    let mut responders = lab.serve_http(80).expect("responders on 80");
    responders.extend(lab.serve_http(443).expect("responders on 443"));
    let port = lab.switch_lb_port();
    let _pass = lab
        .switch()
        .run(|| PassProgram::attach(port))
        .expect("in switch namespace")
        .expect("XDP pass program on the switch port");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let rvsd = Rvsd::start(
        lab.lb(),
        Path::new(env!("CARGO_BIN_EXE_rvsd")),
        &config(&pin, &lab),
        &pin,
    )
    .expect("rvsd starts");

    // One connection at a time, alternating ports in blocks: rr's one cursor serves both
    // ports, so each server gets exactly a third of each block.
    let mut counts = BTreeMap::new();
    for _ in 0..2 {
        shares(&lab, 80, 30, &mut counts);
        shares(&lab, 443, 30, &mut counts);
    }
    for rs in lab.real_servers() {
        for port in [80, 443] {
            let got = counts.get(&(rs.name().to_string(), port)).copied();
            assert_eq!(got, Some(20), "{}:{port} ({counts:?})", rs.name());
        }
    }
    drop(rvsd);
    drop(responders);
}
