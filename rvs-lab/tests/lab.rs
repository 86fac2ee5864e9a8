//! Lab tests: they create real network namespaces, so they need root and skip otherwise.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use rvs_lab::{
    DrLab, HttpResponder, HttpSession, Netns, UdpResponder, http_get, list_netns, root_or_skip,
    run_many, udp_ask, unique_prefix,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// Logs to the test output (RUST_LOG=debug for detail) and tells whether we are root.
fn setup(test: &str) -> bool {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    root_or_skip(test)
}

/// Namespaces whose names start with `prefix`.
fn namespaces_with(prefix: &str) -> Result<Vec<String>> {
    Ok(list_netns()?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// Waits (bounded) until `pid` is gone.
fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn dr_lab_reaches_every_real_server_and_cleans_up() -> Result<()> {
    if !setup("dr_lab_reaches_every_real_server_and_cleans_up") {
        return Ok(());
    }
    let lab = DrLab::new(3, &[VIP])?;
    let prefix = lab.prefix().to_owned();
    assert_eq!(
        namespaces_with(&format!("{prefix}-"))?.len(),
        7,
        "client, router, lb, switch, 3 rs"
    );
    lab.check_routing()?;

    let mut responders = Vec::new();
    for rs in lab.real_servers() {
        responders.push(HttpResponder::spawn(
            rs.ns(),
            "0.0.0.0:80".parse()?,
            rs.name(),
        )?);
        responders.push(HttpResponder::spawn(
            rs.ns(),
            "0.0.0.0:0".parse()?,
            rs.name(),
        )?);
    }
    let udp: Vec<UdpResponder> = lab
        .real_servers()
        .iter()
        .map(|rs| UdpResponder::spawn(rs.ns(), "0.0.0.0:53".parse()?, rs.name()))
        .collect::<Result<_>>()?;

    for rs in lab.real_servers() {
        let web = SocketAddr::from((rs.addr(), 80));
        assert_eq!(http_get(lab.client(), web)?, rs.name());
        assert_eq!(
            udp_ask(lab.client(), SocketAddr::from((rs.addr(), 53)))?,
            rs.name()
        );

        let mut session = HttpSession::connect(lab.client(), web)?;
        for _ in 0..3 {
            assert_eq!(session.get()?, rs.name());
        }
        let answers = run_many(lab.client(), web, 20, 4);
        assert_eq!(answers.len(), 20);
        for answer in answers {
            assert_eq!(answer?, rs.name());
        }

        // The DR-specific host settings.
        assert_eq!(rs.ns().read_sysctl("net.ipv4.conf.eth0.arp_ignore")?, "1");
        assert_eq!(rs.ns().read_sysctl("net.ipv4.conf.all.arp_announce")?, "2");
        let lo = rs.ns().exec(&["ip", "-o", "addr", "show", "dev", "lo"])?;
        assert!(lo.contains("198.18.0.10/32"), "VIP not on lo: {lo}");
        let mac = rs.mac()?;
        assert_eq!(mac[0] & 1, 0, "unicast MAC expected: {mac:02x?}");
    }
    // 1 check_routing probe is gone; each port-80 responder served 1 + 3 + 20 requests.
    for r in responders.iter().filter(|r| r.local_addr().port() == 80) {
        assert_eq!(r.served(), 24, "{}", r.name());
    }
    for u in &udp {
        assert_eq!(u.served(), 1, "{}", u.name());
    }

    // Interface facts the load balancer relies on.
    assert!(lab.lb_uplink_ifindex()? > 0);
    assert!(lab.lb_segment_ifindex()? > 0);
    assert!(lab.switch_lb_port_ifindex()? > 0);
    assert_eq!(lab.lb_segment_mac()?.len(), 6);
    for (ns, ifname) in [
        (lab.lb(), lab.lb_uplink()),
        (lab.switch(), lab.switch_lb_port()),
        (lab.client(), "c0"),
    ] {
        let features = ns.exec(&["ethtool", "-k", ifname])?;
        ensure!(
            features.contains("tx-checksumming: off"),
            "{ifname}: checksum offload still on"
        );
    }
    assert_eq!(lab.router().read_sysctl("net.ipv4.ip_forward")?, "1");

    drop(udp);
    drop(responders);
    drop(lab);
    assert_eq!(
        namespaces_with(&format!("{prefix}-"))?,
        Vec::<String>::new()
    );
    Ok(())
}

/// Routing the VIP straight to rs1 (standing in for the LB) shows the whole DR return
/// path: the RS answers as the VIP, through the switch and the router, not via the LB.
#[test]
fn vip_answers_come_back_from_the_vip() -> Result<()> {
    if !setup("vip_answers_come_back_from_the_vip") {
        return Ok(());
    }
    let lab = DrLab::new(2, &[VIP])?;
    let rs1 = &lab.real_servers()[0];
    let _web = HttpResponder::spawn(rs1.ns(), "0.0.0.0:80".parse()?, rs1.name())?;
    let _udp = UdpResponder::spawn(rs1.ns(), "0.0.0.0:53".parse()?, rs1.name())?;
    lab.router().exec(&[
        "ip",
        "route",
        "add",
        &format!("{VIP}/32"),
        "via",
        &rs1.addr().to_string(),
    ])?;
    assert_eq!(http_get(lab.client(), SocketAddr::from((VIP, 80)))?, "rs1");
    // The client's UDP socket is connected to the VIP: a reply from 198.18.2.11 would be
    // dropped, so this also checks that the responder answers from the VIP.
    assert_eq!(udp_ask(lab.client(), SocketAddr::from((VIP, 53)))?, "rs1");
    // No real server answers ARP for the VIP.
    let neigh = lab
        .router()
        .exec(&["ip", "neigh", "show", &VIP.to_string()])?;
    assert!(
        neigh.trim().is_empty(),
        "someone answered ARP for the VIP: {neigh}"
    );
    Ok(())
}

#[test]
fn panic_inside_a_test_still_cleans_up() -> Result<()> {
    if !setup("panic_inside_a_test_still_cleans_up") {
        return Ok(());
    }
    let prefix = Mutex::new(String::new());
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let lab = match DrLab::new(1, &[VIP]) {
            Ok(lab) => lab,
            Err(e) => panic!("lab not built: {e:#}"),
        };
        if let Ok(mut p) = prefix.lock() {
            *p = lab.prefix().to_owned();
        }
        panic!("deliberate panic with the lab alive");
    }));
    assert!(outcome.is_err());
    let prefix = prefix.into_inner().unwrap_or_default();
    ensure!(!prefix.is_empty(), "the lab was never built");
    assert_eq!(
        namespaces_with(&format!("{prefix}-"))?,
        Vec::<String>::new()
    );
    Ok(())
}

#[test]
fn netns_runs_closures_commands_and_children_inside() -> Result<()> {
    if !setup("netns_runs_closures_commands_and_children_inside") {
        return Ok(());
    }
    let ns = Netns::new(&format!("{}-t", unique_prefix()))?;
    let ns_ino = std::fs::metadata(ns.path())?.ino();
    let thread_ino =
        ns.run(|| std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()))??;
    assert_eq!(thread_ino, ns_ino, "run() thread is not in the namespace");

    assert!(
        ns.exec(&["ip", "-o", "link", "show", "lo"])?.contains("UP"),
        "lo should be up"
    );
    let err = match ns.exec(&["ip", "link", "show", "nosuchif0"]) {
        Ok(out) => bail!("expected an error, got {out}"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(ns.name()) && err.contains("nosuchif0") && err.contains("does not exist"),
        "{err}"
    );

    let caught = catch_unwind(AssertUnwindSafe(|| ns.run(|| panic!("inside"))));
    assert!(
        caught.is_err(),
        "a panic inside run() should reach the caller"
    );

    let mut child = ns.spawn(&["sleep", "30"])?;
    let pid = child.pid();
    assert!(child.is_running());
    // `ip netns exec` enters the namespace and then execs, so give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino() != ns_ino {
        ensure!(
            Instant::now() < deadline,
            "child {pid} never entered the namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(child);
    assert!(wait_gone(pid), "child {pid} survived its guard");

    let echo = ns.spawn(&["sh", "-c", "echo hello-from-child; sleep 30"])?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !echo.output().contains("hello-from-child") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        echo.output().contains("hello-from-child"),
        "output: {:?}",
        echo.output()
    );
    Ok(())
}
