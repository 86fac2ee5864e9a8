//! The direct-routing (DR) lab: client, router, load balancer, an L2 switch and N real
//! servers, each in its own namespace, built by one call and deleted on drop.
//!
//! ```text
//!  client            router                          lb
//!  c0 198.18.1.2 ── rc 198.18.1.1
//!                    rl 198.18.3.1 ───────────────── up0 198.18.3.2  (XDP in)
//!                    rs 198.18.2.254                 seg0 198.18.2.1 (XDP redirect out)
//!                     │                               │
//!  switch (bridge br0): srt ────────── slb ───────────┘
//!                       srs1 … srsN
//!                        │
//!  rsN: eth0 198.18.2.(10+N), VIPs /32 on lo, arp_ignore=1, arp_announce=2
//! ```
//!
//! The router sends the VIP range 198.18.0.0/24 to the LB's uplink. The LB forwards a
//! request by rewriting only the destination MAC and sending it out of `seg0` onto the
//! switch; the real server, which holds the VIP on `lo` and never answers ARP for it,
//! replies straight to the router through the switch, never through the LB.
//!
//! Two veth facts shape the lab (real NICs have neither problem):
//! - veths offload TCP/UDP checksums, so a packet that XDP forwards would arrive with an
//!   unfinished checksum and the real server would drop it; every veth end here therefore
//!   runs with `ethtool -K IF tx off`, so senders compute full checksums.
//! - a frame sent with `XDP_REDIRECT` (or `XDP_TX`) into a veth reaches the peer only when
//!   the peer has an XDP program of its own. The LB's program runs on `up0` and redirects
//!   into `seg0`, whose peer is the switch port `slb`: the caller must attach an
//!   `XDP_PASS` program to `slb` (in the switch namespace) or redirected frames vanish.
//!
//! IPv6 is disabled in every lab namespace (no router solicitations or MLD reports in the
//! way of packet counts) and reverse-path filtering is off (the router receives the real
//! servers' replies, sourced from the VIP, on another interface than the VIP route's).

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail, ensure};

use crate::client::http_get;
use crate::netns::{Netns, unique_prefix};
use crate::responder::HttpResponder;
use crate::topo;
use crate::wire::{address, bridge, cleanup_once, default_route, port, veth};

/// The client's interface.
pub const CLIENT_IF: &str = "c0";
/// The router's interface towards the client.
pub const ROUTER_CLIENT_IF: &str = "rc";
/// The router's interface towards the LB's uplink.
pub const ROUTER_LB_IF: &str = "rl";
/// The router's port into the switch.
pub const ROUTER_SEGMENT_IF: &str = "rs";
/// The LB's uplink, where its XDP program receives traffic for the VIPs.
pub const LB_UPLINK_IF: &str = "up0";
/// The LB's port into the switch, where it sends forwarded frames.
pub const LB_SEGMENT_IF: &str = "seg0";
/// The bridge in the switch namespace.
pub const SWITCH_BRIDGE: &str = "br0";
/// The switch port peering the LB's `seg0`; needs an XDP_PASS program (see module docs).
pub const SWITCH_LB_PORT: &str = "slb";
/// The switch port peering the router's `rs`.
pub const SWITCH_ROUTER_PORT: &str = "srt";
/// Each real server's interface.
pub const RS_IF: &str = "eth0";

/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The router's address on the client link (the client's default gateway).
pub const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The router's address on the LB link (the LB's default gateway).
pub const ROUTER_LB_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
/// The router's address on the segment (the real servers' default gateway).
pub const ROUTER_SEGMENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
/// The LB's uplink address (the router's next hop for the VIP range).
pub const LB_UPLINK_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 2);
/// The LB's address on the segment.
pub const LB_SEGMENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The VIP range (a /24) that the router sends to the LB.
pub const VIP_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
/// Most real servers a lab can have.
pub const MAX_REAL_SERVERS: usize = 200;

/// The address of real server `n` (1-based): 198.18.2.(10+n).
pub fn rs_addr(n: usize) -> Option<Ipv4Addr> {
    let host = u8::try_from(n)
        .ok()
        .filter(|&n| (1..=MAX_REAL_SERVERS as u8).contains(&n))?;
    Some(Ipv4Addr::new(198, 18, 2, 10 + host))
}

/// One real server of a [`DrLab`].
#[derive(Debug)]
pub struct RealServer {
    index: usize,
    name: String,
    addr: Ipv4Addr,
    ns: Netns,
}

impl RealServer {
    /// A real server `rs<index>` at `addr` in `ns` (the labs build these).
    pub(crate) fn new(ns: Netns, index: usize, name: String, addr: Ipv4Addr) -> RealServer {
        RealServer {
            index,
            name,
            addr,
            ns,
        }
    }

    /// Its number, 1-based.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its short name, `rs<N>` (handy as a responder name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its own address on the segment.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The name of its port on the switch, `srs<N>`.
    pub fn switch_port(&self) -> String {
        format!("srs{}", self.index)
    }

    /// The MAC address of its `eth0` (what the LB writes as destination).
    pub fn mac(&self) -> Result<[u8; 6]> {
        self.ns.mac(RS_IF)
    }
}

/// The direct-routing topology (see the module docs); every namespace is deleted on drop.
#[derive(Debug)]
pub struct DrLab {
    prefix: String,
    vips: Vec<Ipv4Addr>,
    client: Netns,
    router: Netns,
    lb: Netns,
    switch: Netns,
    real_servers: Vec<RealServer>,
}

impl DrLab {
    /// Builds the lab with `real_servers` real servers holding `vips` (each in
    /// 198.18.0.0/24); first deletes stale namespaces of killed runs (once per process).
    pub fn new(real_servers: usize, vips: &[Ipv4Addr]) -> Result<DrLab> {
        ensure!(
            (1..=MAX_REAL_SERVERS).contains(&real_servers),
            "a DR lab needs 1..={MAX_REAL_SERVERS} real servers, not {real_servers}"
        );
        for vip in vips {
            let o = vip.octets();
            ensure!(
                o[..3] == VIP_NET.octets()[..3] && o[3] != 0 && o[3] != 255,
                "VIP {vip} is not a host of {VIP_NET}/24"
            );
        }
        cleanup_once();
        let prefix = unique_prefix();
        let make = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let client = make("client")?;
        let router = make("router")?;
        let lb = make("lb")?;
        let switch = make("switch")?;
        let rs = topo::make_real_servers(real_servers, make)?;
        // Every namespace is owned from here on, so any error below deletes them all.
        let lab = DrLab {
            prefix,
            vips: vips.to_vec(),
            client,
            router,
            lb,
            switch,
            real_servers: rs,
        };
        lab.wire()
            .with_context(|| format!("building DR lab {}", lab.prefix))?;
        tracing::info!(prefix = %lab.prefix, real_servers, "DR lab ready");
        Ok(lab)
    }

    /// Configures every namespace: sysctls, veths, bridge, addresses, routes.
    fn wire(&self) -> Result<()> {
        let all: Vec<&Netns> = [&self.client, &self.router, &self.lb, &self.switch]
            .into_iter()
            .chain(self.real_servers.iter().map(|r| &r.ns))
            .collect();
        topo::sysctls(&all, &self.router)?;
        let sw = &self.switch;
        bridge(sw, SWITCH_BRIDGE, &[])?;
        topo::front(&self.client, &self.router, sw, (&self.lb, LB_UPLINK_IF))?;
        veth(&self.lb, LB_SEGMENT_IF, sw, SWITCH_LB_PORT)?;
        port(sw, SWITCH_LB_PORT, SWITCH_BRIDGE)?;
        let vip_net = format!("{VIP_NET}/24");
        self.router.exec(&[
            "ip",
            "route",
            "add",
            &vip_net,
            "via",
            &LB_UPLINK_ADDR.to_string(),
        ])?;
        address(&self.lb, LB_UPLINK_IF, LB_UPLINK_ADDR, 24)?;
        address(&self.lb, LB_SEGMENT_IF, LB_SEGMENT_ADDR, 24)?;
        default_route(&self.lb, ROUTER_LB_ADDR)?;
        topo::real_servers(
            sw,
            &self.real_servers,
            ROUTER_SEGMENT_ADDR,
            Some(&self.vips),
        )
    }

    /// The per-lab prefix every namespace name starts with (`rvs<pid>x<seq>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The VIPs the real servers hold on `lo`.
    pub fn vips(&self) -> &[Ipv4Addr] {
        &self.vips
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

    /// The switch namespace (bridge `br0`).
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// The real servers, `rs1` first.
    pub fn real_servers(&self) -> &[RealServer] {
        &self.real_servers
    }

    /// The LB interface where its XDP program is attached (`up0`, in the lb namespace).
    pub fn lb_uplink(&self) -> &'static str {
        LB_UPLINK_IF
    }

    /// The LB interface its XDP program redirects into (`seg0`, in the lb namespace).
    pub fn lb_segment(&self) -> &'static str {
        LB_SEGMENT_IF
    }

    /// The switch port peering `seg0` (`slb`, in the switch namespace), which needs an
    /// XDP_PASS program so that redirected frames arrive (see module docs).
    pub fn switch_lb_port(&self) -> &'static str {
        SWITCH_LB_PORT
    }

    /// Starts an HTTP responder on `port` of every real server, answering with its name.
    pub fn serve_http(&self, port: u16) -> Result<Vec<HttpResponder>> {
        topo::serve_http(&self.real_servers, port)
    }

    /// The ifindex of `up0` in the lb namespace.
    pub fn lb_uplink_ifindex(&self) -> Result<u32> {
        self.lb.ifindex(LB_UPLINK_IF)
    }

    /// The ifindex of `seg0` in the lb namespace.
    pub fn lb_segment_ifindex(&self) -> Result<u32> {
        self.lb.ifindex(LB_SEGMENT_IF)
    }

    /// The ifindex of `slb` in the switch namespace.
    pub fn switch_lb_port_ifindex(&self) -> Result<u32> {
        self.switch.ifindex(SWITCH_LB_PORT)
    }

    /// The MAC of `seg0` (the source MAC of frames the LB forwards).
    pub fn lb_segment_mac(&self) -> Result<[u8; 6]> {
        self.lb.mac(LB_SEGMENT_IF)
    }

    /// Checks plain routing without any load balancer: the client and the LB each reach
    /// every real server's own address over HTTP, and the client reaches the LB's uplink.
    pub fn check_routing(&self) -> Result<()> {
        let lb_probe = HttpResponder::spawn(&self.lb, SocketAddr::from((LB_UPLINK_ADDR, 0)), "lb")?;
        expect_name(&self.client, lb_probe.local_addr(), "lb")?;
        for rs in &self.real_servers {
            let probe = HttpResponder::spawn(&rs.ns, SocketAddr::from((rs.addr, 0)), &rs.name)?;
            expect_name(&self.client, probe.local_addr(), &rs.name)?;
            expect_name(&self.lb, probe.local_addr(), &rs.name)?;
        }
        Ok(())
    }
}

/// Fails unless an HTTP GET from `from` to `addr` answers `name`.
fn expect_name(from: &Netns, addr: SocketAddr, name: &str) -> Result<()> {
    let got = http_get(from, addr).context("routing check")?;
    if got != name {
        bail!(
            "routing check: {addr} from {} answered {got:?}, expected {name:?}",
            from.name()
        );
    }
    Ok(())
}
