//! The tunnel (TUN) lab: the real servers sit behind a router, one L3 hop away from the LB,
//! so only an encapsulated packet can reach them with the VIP as its destination.
//!
//! ```text
//!  client c0 198.18.1.2/24 ── router rc 198.18.1.1/24
//!                             router rl 198.18.3.1/24 ── lb up0 198.18.3.2/24 (XDP in, encapsulated out; gw 198.18.3.1)
//!                             router rs 198.18.4.254/24
//!                               │
//!                             switch br0: srt, srs1 … srsN
//!                               │
//!                             rsN eth0 198.18.4.(10+N)/24, gw 198.18.4.254
//! ```
//!
//! The router sends the VIP range 198.18.0.0/24 to the LB; the LB wraps a request in an
//! outer IPv4 header to the real server and sends it back to the router (its route to
//! 198.18.4.0/24), which forwards it like any packet. The real server unwraps it and
//! answers the client directly, from the VIP, through the router.
//!
//! The lab does not prepare the real servers: no VIP, no ARP sysctls, no decapsulation.
//! That is `rvs-realserver prepare tun`'s job, which the TUN tests run in each server.
//!
//! veth facts as in the DR lab: checksum offload is off everywhere, and the router's `rl`
//! (which receives what the LB's XDP program transmits) needs an XDP_PASS program:
//! see [`TunLab::pass_ports`].

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};

use crate::dr::{MAX_REAL_SERVERS, RS_IF, RealServer, VIP_NET};
use crate::netns::{Netns, unique_prefix};
use crate::responder::HttpResponder;
use crate::topo;
use crate::wire::{address, bridge, cleanup_once, default_route, quiet, veth};

/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The router's address on the client link.
pub const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The router's address on the LB link.
pub const ROUTER_LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
/// The LB's address (the outer source of its tunnels).
pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 2);
/// The router's address on the real servers' subnet (their gateway).
pub const ROUTER_SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 4, 254);

/// Real server `n`'s address (1-based): 198.18.4.(10+n).
pub fn tun_rs_addr(n: usize) -> Option<Ipv4Addr> {
    let host = u8::try_from(n)
        .ok()
        .filter(|&n| (1..=MAX_REAL_SERVERS as u8).contains(&n))?;
    Some(Ipv4Addr::new(198, 18, 4, 10 + host))
}

/// A TUN lab; every namespace is deleted on drop.
pub struct TunLab {
    prefix: String,
    client: Netns,
    router: Netns,
    lb: Netns,
    switch: Netns,
    real_servers: Vec<RealServer>,
}

impl TunLab {
    /// Builds the lab with `real_servers` real servers behind the router.
    pub fn new(real_servers: usize) -> Result<TunLab> {
        topo::check_sizes("a TUN lab", real_servers, &[])?;
        cleanup_once();
        let prefix = unique_prefix();
        let make = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let client = make("client")?;
        let router = make("router")?;
        let lb = make("lb")?;
        let switch = make("switch")?;
        let rs = topo::make_real_servers_at(real_servers, tun_rs_addr, make)?;
        let lab = TunLab {
            prefix,
            client,
            router,
            lb,
            switch,
            real_servers: rs,
        };
        lab.wire()
            .with_context(|| format!("building TUN lab {}", lab.prefix))?;
        tracing::info!(prefix = %lab.prefix, real_servers, "TUN lab ready");
        Ok(lab)
    }

    fn wire(&self) -> Result<()> {
        for ns in [&self.client, &self.router, &self.lb, &self.switch] {
            quiet(ns)?;
        }
        // The real servers keep the kernel's defaults (rp_filter included): preparing them
        // is the real-server command's job. Only IPv6 is off, to keep the wire quiet.
        for rs in &self.real_servers {
            rs.ns().sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
            rs.ns().sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        }
        let r = &self.router;
        r.sysctl("net.ipv4.ip_forward", "1")?;
        veth(&self.client, "c0", r, "rc")?;
        veth(r, "rl", &self.lb, "up0")?;
        veth(r, "rs", &self.switch, "srt")?;
        let mut ports = vec!["srt".to_string()];
        for rs in &self.real_servers {
            veth(rs.ns(), RS_IF, &self.switch, &rs.switch_port())?;
            ports.push(rs.switch_port());
        }
        bridge(&self.switch, "br0", &ports)?;
        address(&self.client, "c0", CLIENT_ADDR, 24)?;
        default_route(&self.client, ROUTER_CLIENT_ADDR)?;
        address(r, "rc", ROUTER_CLIENT_ADDR, 24)?;
        address(r, "rl", ROUTER_LB_ADDR, 24)?;
        address(r, "rs", ROUTER_SERVER_ADDR, 24)?;
        r.exec(&[
            "ip",
            "route",
            "add",
            &format!("{VIP_NET}/24"),
            "via",
            &LB_ADDR.to_string(),
        ])?;
        address(&self.lb, "up0", LB_ADDR, 24)?;
        default_route(&self.lb, ROUTER_LB_ADDR)?;
        for rs in &self.real_servers {
            address(rs.ns(), RS_IF, rs.addr(), 24)?;
            default_route(rs.ns(), ROUTER_SERVER_ADDR)?;
        }
        Ok(())
    }

    /// The per-lab namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The client namespace.
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The router namespace.
    pub fn router(&self) -> &Netns {
        &self.router
    }

    /// The load balancer namespace.
    pub fn lb(&self) -> &Netns {
        &self.lb
    }

    /// The real servers, `rs1` first.
    pub fn real_servers(&self) -> &[RealServer] {
        &self.real_servers
    }

    /// The LB's interface (the balancer's, in and out).
    pub fn lb_interface(&self) -> &'static str {
        "up0"
    }

    /// The veth ends that receive what the LB's XDP program transmits (see module docs).
    pub fn pass_ports(&self) -> Vec<(&Netns, &'static str)> {
        vec![(&self.router, "rl")]
    }

    /// Starts an HTTP responder on `port` of every real server (on all its addresses, so
    /// also on the VIP once it is prepared), answering with its name.
    pub fn serve_http(&self, port: u16) -> Result<Vec<HttpResponder>> {
        self.real_servers
            .iter()
            .map(|rs| {
                HttpResponder::spawn(rs.ns(), SocketAddr::from(([0, 0, 0, 0], port)), rs.name())
            })
            .collect()
    }
}
