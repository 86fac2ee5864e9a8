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

use std::net::Ipv4Addr;

use anyhow::{Context, Result, ensure};

use crate::dr::{LB_SEGMENT_IF, LB_UPLINK_IF, ROUTER_LB_IF, ROUTER_SEGMENT_ADDR};
use crate::netns::{Netns, unique_prefix};
use crate::topo;
pub use crate::topo::{Director, UPLINK_BRIDGE, UPLINK_ROUTER_PORT};

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
        topo::check_sizes("an HA lab", real_servers, vips)?;
        crate::netns::cleanup_stale().ok();
        let prefix = unique_prefix();
        let make = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let client = make("client")?;
        let router = make("router")?;
        let switch = make("switch")?;
        let directors = topo::make_directors(2, make)?;
        let rs = topo::make_real_servers(real_servers, make)?;
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
        // Forwarding before any link exists, so every interface starts with it.
        if self.nat_gateway.is_some() {
            for d in &self.directors {
                d.ns().sysctl("net.ipv4.ip_forward", "1")?;
            }
        }
        topo::director_links(
            &self.client,
            &self.router,
            &self.switch,
            &self.directors,
            &self.real_servers,
            true,
        )?;
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
        let gateway = self.nat_gateway.unwrap_or(ROUTER_SEGMENT_ADDR);
        let dr_vips = self.nat_gateway.is_none().then_some(self.vips.as_slice());
        topo::real_servers(&self.switch, &self.real_servers, gateway, dr_vips)
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
        topo::serve_http(&self.real_servers, port)
    }
}
