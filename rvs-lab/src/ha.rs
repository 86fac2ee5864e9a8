//! The two-director lab: the DR lab's client, router, switch and real servers, with two
//! load balancers that share an uplink segment (for VRRP and connection sync) instead of
//! one LB on a point-to-point link. Built by one call, deleted on drop.
//!
//! ```text
//!  client c0 198.18.1.2 ── rc 198.18.1.1  router
//!                          rl 198.18.3.1 ── uplink bridge ubr ── lb1 up0 198.18.3.2
//!                                                             └─ lb2 up0 198.18.3.3
//!                          rs 198.18.2.254 ── DR switch br0 ──── lb1 seg0 198.18.2.1
//!                                                             ├─ lb2 seg0 198.18.2.2
//!                                                             └─ rsN eth0 198.18.2.(10+N)
//! ```
//!
//! The router reaches each VIP on-link over the uplink (a /32 route through `rl`), so it
//! ARPs for it and follows whichever director holds it (VRRP's gratuitous ARPs move it).
//! As in the DR lab, each director's `seg0` peer on the switch (`slb1`, `slb2`) needs an
//! XDP_PASS program for redirected frames to arrive ([`HaLab::switch_lb_ports`]).
//!
//! The NAT variant ([`HaLab::new_nat`]) differs only on the real servers: they hold no VIP
//! and route through a gateway address on the segment that the directors pass between
//! them by VRRP (a second instance, synced with the VIP's, as keepalived NAT set-ups do),
//! so the replies follow the director that holds the VIP; the directors forward, and
//! their uplink peers (`ulb1`, `ulb2`) need XDP_PASS programs too (the replies are
//! redirected there).

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, ensure};

use crate::dr::{
    CLIENT_ADDR, CLIENT_IF, LB_SEGMENT_IF, LB_UPLINK_IF, MAX_REAL_SERVERS, ROUTER_CLIENT_ADDR,
    ROUTER_CLIENT_IF, ROUTER_LB_ADDR, ROUTER_LB_IF, ROUTER_SEGMENT_ADDR, ROUTER_SEGMENT_IF, RS_IF,
    SWITCH_BRIDGE, SWITCH_ROUTER_PORT, VIP_NET, rs_addr,
};
use crate::netns::{Netns, unique_prefix};
use crate::wire::{address, veth};

/// The uplink bridge (in the switch namespace).
pub const UPLINK_BRIDGE: &str = "ubr";
/// The switch port peering the router's uplink.
pub const UPLINK_ROUTER_PORT: &str = "urt";

/// One director of an [`HaLab`].
#[derive(Debug)]
pub struct Director {
    ns: Netns,
    uplink_addr: Ipv4Addr,
    segment_addr: Ipv4Addr,
}

impl Director {
    /// Its namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
    /// Its uplink (`up0`) address, the VRRP source.
    pub fn uplink_addr(&self) -> Ipv4Addr {
        self.uplink_addr
    }
    /// Its segment (`seg0`) address.
    pub fn segment_addr(&self) -> Ipv4Addr {
        self.segment_addr
    }
    /// Whether `vip` is configured on its uplink.
    pub fn holds(&self, vip: Ipv4Addr) -> Result<bool> {
        let out = self
            .ns
            .exec(&["ip", "-4", "-o", "addr", "show", "dev", LB_UPLINK_IF])?;
        Ok(out.contains(&format!(" {vip}/32 ")))
    }
    /// Takes its segment link down (`up = false`) or up.
    pub fn set_segment(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.ns
            .exec(&["ip", "link", "set", LB_SEGMENT_IF, state])
            .map(|_| ())
    }
    /// Whether `addr` is configured on its segment link.
    pub fn holds_on_segment(&self, addr: Ipv4Addr) -> Result<bool> {
        let out = self
            .ns
            .exec(&["ip", "-4", "-o", "addr", "show", "dev", LB_SEGMENT_IF])?;
        Ok(out.contains(&format!(" {addr}/")))
    }
    /// Takes its uplink down (`up = false`) or up, as a cable pulled or put back; up also
    /// restores the default route the kernel dropped with the link (as the machine's
    /// network configuration would at boot).
    pub fn set_uplink(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.ns.exec(&["ip", "link", "set", LB_UPLINK_IF, state])?;
        if up {
            self.ns.exec(&[
                "ip",
                "route",
                "replace",
                "default",
                "via",
                &ROUTER_LB_ADDR.to_string(),
            ])?;
        }
        Ok(())
    }
}

/// Client, router, two directors, switch and real servers.
#[derive(Debug)]
pub struct HaLab {
    prefix: String,
    vips: Vec<Ipv4Addr>,
    client: Netns,
    router: Netns,
    switch: Netns,
    directors: Vec<Director>,
    real_servers: Vec<crate::RealServer>,
    /// NAT: the real servers' gateway (a VRRP address on the segment).
    nat_gateway: Option<Ipv4Addr>,
}

impl HaLab {
    /// Builds the lab with two directors and `real_servers` real servers holding `vips`.
    pub fn new(real_servers: usize, vips: &[Ipv4Addr]) -> Result<HaLab> {
        Self::build(real_servers, vips, None)
    }

    /// Builds the NAT variant: the real servers hold no VIP and route via `gateway` (an
    /// address of the segment, 198.18.2.0/24, that the directors' VRRP moves).
    pub fn new_nat(real_servers: usize, vips: &[Ipv4Addr], gateway: Ipv4Addr) -> Result<HaLab> {
        ensure!(
            gateway.octets()[..3] == ROUTER_SEGMENT_ADDR.octets()[..3],
            "gateway {gateway} is not on the segment 198.18.2.0/24"
        );
        Self::build(real_servers, vips, Some(gateway))
    }

    fn build(
        real_servers: usize,
        vips: &[Ipv4Addr],
        nat_gateway: Option<Ipv4Addr>,
    ) -> Result<HaLab> {
        ensure!(
            (1..=MAX_REAL_SERVERS).contains(&real_servers),
            "an HA lab needs 1..={MAX_REAL_SERVERS} real servers, not {real_servers}"
        );
        for vip in vips {
            ensure!(
                vip.octets()[..3] == VIP_NET.octets()[..3],
                "VIP {vip} is not in {VIP_NET}/24"
            );
        }
        crate::netns::cleanup_stale().ok();
        let prefix = unique_prefix();
        let make = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let client = make("client")?;
        let router = make("router")?;
        let switch = make("switch")?;
        let mut directors = Vec::new();
        for i in 1..=2u8 {
            directors.push(Director {
                ns: make(&format!("lb{i}"))?,
                uplink_addr: Ipv4Addr::new(198, 18, 3, 1 + i),
                segment_addr: Ipv4Addr::new(198, 18, 2, i),
            });
        }
        let mut rs = Vec::with_capacity(real_servers);
        for index in 1..=real_servers {
            let name = format!("rs{index}");
            let addr = rs_addr(index).context("real server index out of range")?;
            rs.push(crate::RealServer::new(make(&name)?, index, name, addr));
        }
        let lab = HaLab {
            prefix,
            vips: vips.to_vec(),
            client,
            router,
            switch,
            directors,
            real_servers: rs,
            nat_gateway,
        };
        lab.wire()
            .with_context(|| format!("building HA lab {}", lab.prefix))?;
        Ok(lab)
    }

    fn wire(&self) -> Result<()> {
        let mut all: Vec<&Netns> = vec![&self.client, &self.router, &self.switch];
        all.extend(self.directors.iter().map(|d| &d.ns));
        all.extend(self.real_servers.iter().map(|r| r.ns()));
        for ns in &all {
            for (key, value) in [
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
            ] {
                ns.sysctl(key, value)?;
            }
        }
        self.router.sysctl("net.ipv4.ip_forward", "1")?;
        if self.nat_gateway.is_some() {
            for d in &self.directors {
                d.ns.sysctl("net.ipv4.ip_forward", "1")?;
            }
        }
        let sw = &self.switch;
        for bridge in [SWITCH_BRIDGE, UPLINK_BRIDGE] {
            sw.exec(&[
                "ip",
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
            ])?;
            sw.exec(&["ip", "link", "set", bridge, "up"])?;
        }
        let port = |name: &str, bridge: &str| -> Result<()> {
            sw.exec(&["ip", "link", "set", name, "master", bridge])?;
            sw.exec(&["ip", "link", "set", name, "up"])?;
            Ok(())
        };
        veth(&self.client, CLIENT_IF, &self.router, ROUTER_CLIENT_IF)?;
        veth(&self.router, ROUTER_LB_IF, sw, UPLINK_ROUTER_PORT)?;
        port(UPLINK_ROUTER_PORT, UPLINK_BRIDGE)?;
        veth(&self.router, ROUTER_SEGMENT_IF, sw, SWITCH_ROUTER_PORT)?;
        port(SWITCH_ROUTER_PORT, SWITCH_BRIDGE)?;
        for (i, d) in self.directors.iter().enumerate() {
            let (up, seg) = (format!("ulb{}", i + 1), format!("slb{}", i + 1));
            veth(&d.ns, LB_UPLINK_IF, sw, &up)?;
            port(&up, UPLINK_BRIDGE)?;
            veth(&d.ns, LB_SEGMENT_IF, sw, &seg)?;
            port(&seg, SWITCH_BRIDGE)?;
            address(&d.ns, LB_UPLINK_IF, d.uplink_addr, 24)?;
            address(&d.ns, LB_SEGMENT_IF, d.segment_addr, 24)?;
            d.ns.exec(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &ROUTER_LB_ADDR.to_string(),
            ])?;
        }
        for rs in &self.real_servers {
            veth(rs.ns(), RS_IF, sw, &rs.switch_port())?;
            port(&rs.switch_port(), SWITCH_BRIDGE)?;
        }
        address(&self.client, CLIENT_IF, CLIENT_ADDR, 24)?;
        self.client.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &ROUTER_CLIENT_ADDR.to_string(),
        ])?;
        address(&self.router, ROUTER_CLIENT_IF, ROUTER_CLIENT_ADDR, 24)?;
        address(&self.router, ROUTER_LB_IF, ROUTER_LB_ADDR, 24)?;
        address(&self.router, ROUTER_SEGMENT_IF, ROUTER_SEGMENT_ADDR, 24)?;
        for vip in &self.vips {
            self.router.exec(&[
                "ip",
                "route",
                "add",
                &format!("{vip}/32"),
                "dev",
                ROUTER_LB_IF,
            ])?;
        }
        for rs in &self.real_servers {
            address(rs.ns(), RS_IF, rs.addr(), 24)?;
            let gateway = self.nat_gateway.unwrap_or(ROUTER_SEGMENT_ADDR);
            rs.ns()
                .exec(&["ip", "route", "add", "default", "via", &gateway.to_string()])?;
            if self.nat_gateway.is_some() {
                continue;
            }
            for vip in &self.vips {
                rs.ns()
                    .exec(&["ip", "addr", "add", &format!("{vip}/32"), "dev", "lo"])?;
            }
            for conf in ["all", RS_IF] {
                rs.ns()
                    .sysctl(&format!("net.ipv4.conf.{conf}.arp_ignore"), "1")?;
                rs.ns()
                    .sysctl(&format!("net.ipv4.conf.{conf}.arp_announce"), "2")?;
            }
        }
        Ok(())
    }

    /// The per-lab prefix.
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
    /// The switch namespace (both bridges).
    pub fn switch(&self) -> &Netns {
        &self.switch
    }
    /// The two directors.
    pub fn directors(&self) -> &[Director] {
        &self.directors
    }
    /// The real servers.
    pub fn real_servers(&self) -> &[crate::RealServer] {
        &self.real_servers
    }
    /// The directors' uplink interface (VRRP, sync, XDP in).
    pub fn uplink(&self) -> &'static str {
        LB_UPLINK_IF
    }
    /// The switch ports peering each director's `seg0`, which need an XDP_PASS program.
    pub fn switch_lb_ports(&self) -> [&'static str; 2] {
        ["slb1", "slb2"]
    }
    /// The switch ports peering each director's `up0` (NAT replies are redirected there).
    pub fn switch_uplink_ports(&self) -> [&'static str; 2] {
        ["ulb1", "ulb2"]
    }
    /// The directors' segment interface (NAT: replies in, the gateway address).
    pub fn segment(&self) -> &'static str {
        LB_SEGMENT_IF
    }
    /// NAT: the real servers' gateway.
    pub fn nat_gateway(&self) -> Option<Ipv4Addr> {
        self.nat_gateway
    }
    /// Starts an HTTP responder on `port` of every real server, answering with its name.
    pub fn serve_http(&self, port: u16) -> Result<Vec<crate::HttpResponder>> {
        self.real_servers
            .iter()
            .map(|rs| {
                crate::HttpResponder::spawn(
                    rs.ns(),
                    SocketAddr::from(([0, 0, 0, 0], port)),
                    rs.name(),
                )
            })
            .collect()
    }
}
