//! The NAT (masquerading) labs: the real servers' replies come back through the LB, which
//! is their default gateway. Two layouts, as LVS operators build them:
//!
//! ```text
//! two-armed                                       one-armed (one segment, two subnets)
//!  client c0 198.18.1.2/24 (gw .1.1)               switch br0: sc ── client c0 198.18.1.2/24 (gw 198.18.1.1)
//!    │                                                         slb ── lb   eth0 198.18.1.1/24 + 198.18.2.1/24 (XDP_TX)
//!  lb  up0 198.18.1.1/24   (XDP in, replies out)                srsN ── rsN eth0 198.18.2.(10+N)/24 (gw 198.18.2.1)
//!      seg0 198.18.2.1/24  (XDP replies in)
//!    │
//!  switch br0: slb, srs1 … srsN
//!    │
//!  rsN eth0 198.18.2.(10+N)/24, gw 198.18.2.1
//! ```
//!
//! The LB forwards (ip_forward=1), so a real server's own connections (to the client
//! namespace, say) are routed by its kernel when the XDP program passes them; in the
//! one-armed layout it sends no ICMP redirects (client and servers share its interface).
//! The real servers hold no VIP: NAT rewrites the destination to their own address.
//!
//! As in the DR lab (see there), veths run with checksum offload off, and a frame that XDP
//! transmits into a veth arrives only when the peer runs an XDP program: the caller
//! attaches an XDP_PASS program to every `(namespace, interface)` of [`NatLab::pass_ports`].

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};

use crate::dr::{RealServer, VIP_NET};
use crate::netns::{Netns, unique_prefix};
use crate::responder::HttpResponder;
use crate::topo;
use crate::wire::{address, bridge, cleanup_once, default_route, quiet, veth};

/// Which NAT layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatLayout {
    /// Clients on one LB interface, real servers on another.
    TwoArmed,
    /// Clients and real servers on one segment and one LB interface (different subnets).
    OneArmed,
}

/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The LB's address on the client side (the client's gateway).
pub const LB_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The LB's address on the real servers' subnet (their gateway).
pub const LB_SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

/// A NAT lab; every namespace is deleted on drop.
pub struct NatLab {
    layout: NatLayout,
    prefix: String,
    client: Netns,
    lb: Netns,
    switch: Netns,
    real_servers: Vec<RealServer>,
}

impl NatLab {
    /// Builds `layout` with `real_servers` real servers (198.18.2.11, .12, …).
    pub fn new(layout: NatLayout, real_servers: usize) -> Result<NatLab> {
        topo::check_sizes("a NAT lab", real_servers, &[])?;
        cleanup_once();
        let prefix = unique_prefix();
        let make = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let client = make("client")?;
        let lb = make("lb")?;
        let switch = make("switch")?;
        let rs = topo::make_real_servers(real_servers, make)?;
        let lab = NatLab {
            layout,
            prefix,
            client,
            lb,
            switch,
            real_servers: rs,
        };
        lab.wire()
            .with_context(|| format!("building NAT lab {} ({layout:?})", lab.prefix))?;
        tracing::info!(prefix = %lab.prefix, real_servers, ?layout, "NAT lab ready");
        Ok(lab)
    }

    fn wire(&self) -> Result<()> {
        for ns in [&self.client, &self.lb, &self.switch]
            .into_iter()
            .chain(self.real_servers.iter().map(|r| r.ns()))
        {
            quiet(ns)?;
        }
        let lb = &self.lb;
        lb.sysctl("net.ipv4.ip_forward", "1")?;
        let mut ports: Vec<String> = self.real_servers.iter().map(|r| r.switch_port()).collect();
        for rs in &self.real_servers {
            veth(rs.ns(), crate::dr::RS_IF, &self.switch, &rs.switch_port())?;
        }
        match self.layout {
            NatLayout::TwoArmed => {
                veth(&self.client, "c0", lb, "up0")?;
                veth(lb, "seg0", &self.switch, "slb")?;
                ports.push("slb".into());
                address(lb, "up0", LB_CLIENT_ADDR, 24)?;
                address(lb, "seg0", LB_SERVER_ADDR, 24)?;
            }
            NatLayout::OneArmed => {
                veth(&self.client, "c0", &self.switch, "sc")?;
                veth(lb, "eth0", &self.switch, "slb")?;
                ports.push("sc".into());
                ports.push("slb".into());
                address(lb, "eth0", LB_CLIENT_ADDR, 24)?;
                address(lb, "eth0", LB_SERVER_ADDR, 24)?;
                // Client and servers share the LB's interface: routing between them is
                // what the LB is for here, not something to redirect them around.
                for conf in ["all", "default", "eth0"] {
                    lb.sysctl(&format!("net.ipv4.conf.{conf}.send_redirects"), "0")?;
                }
            }
        }
        bridge(&self.switch, "br0", &ports)?;
        address(&self.client, "c0", CLIENT_ADDR, 24)?;
        default_route(&self.client, LB_CLIENT_ADDR)?;
        for rs in &self.real_servers {
            address(rs.ns(), crate::dr::RS_IF, rs.addr(), 24)?;
            default_route(rs.ns(), LB_SERVER_ADDR)?;
        }
        Ok(())
    }

    /// The layout.
    pub fn layout(&self) -> NatLayout {
        self.layout
    }

    /// The per-lab namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The client namespace.
    pub fn client(&self) -> &Netns {
        &self.client
    }

    /// The load balancer namespace.
    pub fn lb(&self) -> &Netns {
        &self.lb
    }

    /// The switch namespace.
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// The real servers, `rs1` first.
    pub fn real_servers(&self) -> &[RealServer] {
        &self.real_servers
    }

    /// The LB interfaces the balancer is attached to (requests and replies).
    pub fn lb_interfaces(&self) -> &'static [&'static str] {
        match self.layout {
            NatLayout::TwoArmed => &["up0", "seg0"],
            NatLayout::OneArmed => &["eth0"],
        }
    }

    /// The veth ends that receive frames the LB's XDP program transmits, by namespace:
    /// each needs an XDP_PASS program (see module docs).
    pub fn pass_ports(&self) -> Vec<(&Netns, &'static str)> {
        match self.layout {
            NatLayout::TwoArmed => vec![(&self.client, "c0"), (&self.switch, "slb")],
            NatLayout::OneArmed => vec![(&self.switch, "slb")],
        }
    }

    /// A VIP for this lab (any host of 198.18.0.0/24; the LB routes none of them itself).
    pub fn vip(&self, host: u8) -> Ipv4Addr {
        let o = VIP_NET.octets();
        Ipv4Addr::new(o[0], o[1], o[2], host)
    }

    /// Starts an HTTP responder on `port` of every real server, answering with its name.
    pub fn serve_http(&self, port: u16) -> Result<Vec<HttpResponder>> {
        self.real_servers
            .iter()
            .map(|rs| {
                HttpResponder::spawn(rs.ns(), SocketAddr::from(([0, 0, 0, 0], port)), rs.name())
            })
            .collect()
    }
}
