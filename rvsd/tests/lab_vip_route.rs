//! Packets for a VIP that rvs passes to the kernel are not forwarded back out (root, DR
//! lab). Before rvsd held a route for its VIPs, a datagram for a port no service takes
//! (or a SYN to VIP:22) left the LB by its default route, came back from the router, and
//! looped until its TTL ran out: 32 crossings of the router per packet. The router's
//! iptables counters count the crossings; each packet must cross it once.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    time::Duration,
};

use rvs_lab::{DrLab, Netns, Rvsd};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// A VIP whose service comes and goes by reload.
const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
/// A VIP for which the operator has a route of their own.
const VIP3: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 12);
/// rvsd's routing protocol number (rvsd/src/vip_routes.rs).
const PROTO: &str = "82";

fn config(lab: &DrLab, pin: &Path, vips: &[Ipv4Addr]) -> String {
    let mut c = format!(
        "[daemon]\ninterfaces = [\"{}\"]\npin_path = \"{}\"\n",
        lab.lb_uplink(),
        pin.display()
    );
    for vip in vips {
        c += &format!(
            "\n[[service]]\nprotocol = \"tcp\"\naddress = \"{vip}\"\nport = 80\nscheduler = \"rr\"\n[[service.real]]\naddress = \"{}\"\n",
            lab.real_servers()[0].addr()
        );
    }
    c
}

/// The VIPs with an rvs route in the LB's main table.
fn rvs_routes(lb: &Netns) -> Vec<String> {
    lb.exec(&["ip", "-4", "route", "show", "proto", PROTO])
        .expect("ip route")
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The packet count of the router's FORWARD counting rule for `proto`/`port` to `vip`.
fn crossings(router: &Netns, vip: Ipv4Addr, proto: &str, port: u16) -> u64 {
    let rules = router
        .exec(&["iptables", "-w", "-S", "FORWARD", "-v"])
        .expect("iptables -S");
    let want = format!("-d {vip}/32 -p {proto} -m {proto} --dport {port} -c ");
    rules
        .lines()
        .find_map(|l| l.split_once(&want))
        .and_then(|(_, c)| c.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no counting rule {want} in:\n{rules}"))
}

fn count_rule(router: &Netns, vip: Ipv4Addr, proto: &str, port: u16) {
    let (vip, port) = (vip.to_string(), port.to_string());
    router
        .exec(&[
            "iptables", "-w", "-A", "FORWARD", "-d", &vip, "-p", proto, "--dport", &port,
        ])
        .expect("iptables -A");
}

#[test]
fn packets_for_a_vip_that_rvs_passes_to_the_kernel_cross_the_router_once() {
    if !rvs_lab::root_or_skip(
        "packets_for_a_vip_that_rvs_passes_to_the_kernel_cross_the_router_once",
    ) {
        return;
    }
    let lab = DrLab::new(1, &[VIP, VIP2, VIP3]).expect("lab");
    let (router, lb) = (lab.router(), lab.lb());
    count_rule(router, VIP, "tcp", 22);
    count_rule(router, VIP, "udp", 9);
    // The operator's own route for VIP3, which rvs must leave alone.
    lb.exec(&["ip", "route", "add", "unreachable", &format!("{VIP3}/32")])
        .expect("operator's route");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let bin = Path::new(env!("CARGO_BIN_EXE_rvsd"));

    // check-config reads the file and changes nothing in the kernel.
    let file = std::env::temp_dir().join(format!("{}-vr.toml", lab.prefix()));
    std::fs::write(&file, config(&lab, &pin, &[VIP])).expect("config file");
    let checked = lb
        .output(
            &[
                &bin.to_string_lossy(),
                "--check-config",
                &file.to_string_lossy(),
            ],
            Duration::from_secs(20),
        )
        .expect("check-config");
    let _ = std::fs::remove_file(&file);
    assert!(checked.status.success(), "{checked:?}");
    assert!(rvs_routes(lb).is_empty(), "check-config added routes");

    let mut rvsd = Rvsd::start(lb, bin, &config(&lab, &pin, &[VIP]), &pin).expect("rvsd starts");

    // A SYN to VIP:22 (no service): the kernel refuses it at once, it does not loop.
    let syn = lab
        .client()
        .run(|| {
            TcpStream::connect_timeout(&SocketAddr::from((VIP, 22)), Duration::from_millis(300))
        })
        .expect("in the client namespace");
    // Datagrams to VIP:9 (no service).
    const DATAGRAMS: u64 = 4;
    lab.client()
        .run(|| -> std::io::Result<()> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            for _ in 0..DATAGRAMS {
                s.send_to(b"rvs", (VIP, 9))?;
            }
            Ok(())
        })
        .expect("in the client namespace")
        .expect("datagrams sent");
    // Let any loop run its course (it takes well under a millisecond per packet).
    std::thread::sleep(Duration::from_millis(500));

    assert_eq!(
        crossings(router, VIP, "udp", 9),
        DATAGRAMS,
        "each datagram crosses the router once"
    );
    assert_eq!(
        crossings(router, VIP, "tcp", 22),
        1,
        "the SYN crossed the router"
    );
    let err = syn.expect_err("nothing serves VIP:22");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::HostUnreachable,
        "the LB answers host unreachable: {err}"
    );
    // rvsd's own route, the one that keeps them from looping.
    let routes = rvs_routes(lb);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(
        routes[0].starts_with(&format!("unreachable {VIP} ")),
        "{routes:?}"
    );

    // A VIP's route comes with its first service and goes with its last; the operator's
    // route for VIP3 stays as it was, even while rvs balances VIP3.
    rvsd.reload(&config(&lab, &pin, &[VIP, VIP2, VIP3]))
        .expect("reload");
    let routes = rvs_routes(lb);
    assert_eq!(routes.len(), 3, "{routes:?}");
    rvsd.reload(&config(&lab, &pin, &[VIP])).expect("reload");
    let routes = rvs_routes(lb);
    assert_eq!(routes.len(), 1, "{routes:?}");
    let operator = lb
        .exec(&[
            "ip",
            "route",
            "show",
            &format!("{VIP3}/32"),
            "proto",
            "boot",
        ])
        .expect("ip route");
    assert!(
        operator.contains("unreachable"),
        "operator's route: {operator:?}"
    );

    // The routes stay when rvsd exits (the balancer stays too); --cleanup removes them.
    rvsd.signal(nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    rvsd.wait_exit(Duration::from_secs(20)).expect("exit");
    assert_eq!(rvs_routes(lb).len(), 1);
    let cleanup = lb
        .output(
            &[
                &bin.to_string_lossy(),
                "--cleanup",
                "--pin-path",
                &pin.to_string_lossy(),
            ],
            Duration::from_secs(20),
        )
        .expect("cleanup");
    assert!(cleanup.status.success(), "{cleanup:?}");
    assert!(
        String::from_utf8_lossy(&cleanup.stdout).contains(&format!("route of VIP {VIP}")),
        "{cleanup:?}"
    );
    assert!(rvs_routes(lb).is_empty());
    let operator = lb
        .exec(&["ip", "route", "show", &format!("{VIP3}/32")])
        .expect("ip route");
    assert!(
        operator.contains("unreachable"),
        "operator's route: {operator:?}"
    );
}
