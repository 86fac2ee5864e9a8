//! The NAT and TUN topologies route as their docs draw them, before any balancer is
//! involved (root; skipped otherwise, as the other lab tests).

use std::net::SocketAddr;

use anyhow::{Result, ensure};
use rvs_lab::nat::{CLIENT_ADDR, LB_SERVER_ADDR};
use rvs_lab::tun::{LB_ADDR, ROUTER_SERVER_ADDR};
use rvs_lab::{HttpResponder, NatLab, NatLayout, TunLab, http_get, list_netns, root_or_skip};

fn setup(test: &str) -> bool {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    root_or_skip(test)
}

fn gone(prefix: &str) -> Result<bool> {
    Ok(!list_netns()?.iter().any(|n| n.starts_with(prefix)))
}

#[test]
fn nat_labs_route_both_ways_through_the_lb() -> Result<()> {
    if !setup("nat_labs_route_both_ways_through_the_lb") {
        return Ok(());
    }
    for layout in [NatLayout::TwoArmed, NatLayout::OneArmed] {
        let lab = NatLab::new(layout, 2)?;
        let prefix = lab.prefix().to_owned();
        // The client reaches each server's own address, and each server the client, only
        // through the LB (their gateways), which forwards like a router.
        let at_client =
            HttpResponder::spawn(lab.client(), SocketAddr::from((CLIENT_ADDR, 0)), "client")?;
        for rs in lab.real_servers() {
            let probe = HttpResponder::spawn(rs.ns(), SocketAddr::from((rs.addr(), 0)), rs.name())?;
            ensure!(
                http_get(lab.client(), probe.local_addr())? == rs.name(),
                "{layout:?}"
            );
            ensure!(
                http_get(rs.ns(), at_client.local_addr())? == "client",
                "{layout:?}"
            );
            let route = rs.ns().exec(&["ip", "route", "show", "default"])?;
            ensure!(
                route.contains(&LB_SERVER_ADDR.to_string()),
                "{layout:?}: {route}"
            );
        }
        drop(at_client);
        drop(lab);
        ensure!(gone(&prefix)?, "{prefix} namespaces left behind");
    }
    Ok(())
}

#[test]
fn tun_lab_puts_the_servers_behind_a_router() -> Result<()> {
    if !setup("tun_lab_puts_the_servers_behind_a_router") {
        return Ok(());
    }
    let lab = TunLab::new(2)?;
    let prefix = lab.prefix().to_owned();
    for rs in lab.real_servers() {
        let probe = HttpResponder::spawn(rs.ns(), SocketAddr::from((rs.addr(), 0)), rs.name())?;
        ensure!(http_get(lab.lb(), probe.local_addr())? == rs.name());
        ensure!(http_get(lab.client(), probe.local_addr())? == rs.name());
        // One routed hop between the LB and the servers: their gateway is the router.
        let route = rs.ns().exec(&["ip", "route", "show", "default"])?;
        ensure!(route.contains(&ROUTER_SERVER_ADDR.to_string()), "{route}");
        // Nothing is prepared: no VIP anywhere on the server.
        let addrs = rs.ns().exec(&["ip", "-4", "-o", "addr", "show"])?;
        ensure!(!addrs.contains("198.18.0."), "{addrs}");
    }
    ensure!(
        lab.lb()
            .exec(&["ip", "-4", "-o", "addr", "show", "up0"])?
            .contains(&LB_ADDR.to_string())
    );
    drop(lab);
    ensure!(gone(&prefix)?, "{prefix} namespaces left behind");
    Ok(())
}
