//! The wiring the DR, HA and ECMP labs share: the client and router in front, the switch
//! with the real servers behind, and (HA, ECMP) N directors on an uplink bridge. Names and
//! addresses are the DR lab's constants; each lab keeps only what differs (see its docs).

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, ensure};

use crate::dr::{
    CLIENT_ADDR, CLIENT_IF, LB_SEGMENT_IF, LB_UPLINK_IF, MAX_REAL_SERVERS, ROUTER_CLIENT_ADDR,
    ROUTER_CLIENT_IF, ROUTER_LB_ADDR, ROUTER_LB_IF, ROUTER_SEGMENT_ADDR, ROUTER_SEGMENT_IF, RS_IF,
    RealServer, SWITCH_BRIDGE, SWITCH_ROUTER_PORT, VIP_NET, rs_addr,
};
use crate::netns::Netns;
use crate::responder::HttpResponder;
use crate::wire::{address, bridge, default_route, port, quiet, veth};

/// The uplink bridge (in the switch namespace).
pub const UPLINK_BRIDGE: &str = "ubr";
/// The switch port peering the router's uplink.
pub const UPLINK_ROUTER_PORT: &str = "urt";

/// One director of an [`HaLab`](crate::HaLab) or an [`EcmpLab`](crate::EcmpLab).
#[derive(Debug)]
pub struct Director {
    ns: Netns,
    index: usize,
    uplink_addr: Ipv4Addr,
    segment_addr: Ipv4Addr,
}

impl Director {
    /// Its namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
    /// Its number, 1-based.
    pub fn index(&self) -> usize {
        self.index
    }
    /// Its uplink (`up0`) address: VRRP source, BGP session, router id and next hop.
    pub fn uplink_addr(&self) -> Ipv4Addr {
        self.uplink_addr
    }
    /// Its segment (`seg0`) address.
    pub fn segment_addr(&self) -> Ipv4Addr {
        self.segment_addr
    }
    /// The name of the switch port peering its `seg0`, `slb<N>` (needs XDP_PASS).
    pub fn switch_port(&self) -> String {
        format!("slb{}", self.index)
    }
    /// The name of the uplink bridge port peering its `up0`, `ulb<N>`.
    pub fn switch_uplink_port(&self) -> String {
        format!("ulb{}", self.index)
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

/// Fails unless `real_servers` is in range and every VIP is in 198.18.0.0/24 (`lab` names
/// the lab in the message, as in "an HA lab").
pub(crate) fn check_sizes(lab: &str, real_servers: usize, vips: &[Ipv4Addr]) -> Result<()> {
    ensure!(
        (1..=MAX_REAL_SERVERS).contains(&real_servers),
        "{lab} needs 1..={MAX_REAL_SERVERS} real servers, not {real_servers}"
    );
    for vip in vips {
        ensure!(
            vip.octets()[..3] == VIP_NET.octets()[..3],
            "VIP {vip} is not in {VIP_NET}/24"
        );
    }
    Ok(())
}

/// Creates the namespaces of real servers `rs1` … `rs<count>` with `make` (role → netns).
pub(crate) fn make_real_servers(
    count: usize,
    make: impl Fn(&str) -> Result<Netns>,
) -> Result<Vec<RealServer>> {
    make_real_servers_at(count, rs_addr, make)
}

/// Creates the namespaces of real servers `rs1` … `rs<count>` with `make`, real server N
/// at `addr(N)`.
pub(crate) fn make_real_servers_at(
    count: usize,
    addr: fn(usize) -> Option<Ipv4Addr>,
    make: impl Fn(&str) -> Result<Netns>,
) -> Result<Vec<RealServer>> {
    let mut rs = Vec::with_capacity(count);
    for index in 1..=count {
        let name = format!("rs{index}");
        let addr = addr(index).context("real server index out of range")?;
        rs.push(RealServer::new(make(&name)?, index, name, addr));
    }
    Ok(rs)
}

/// Creates the namespaces of directors `lb1` … `lb<count>` with `make`: uplink address
/// 198.18.3.(1+N), segment address 198.18.2.N.
pub(crate) fn make_directors(
    count: usize,
    make: impl Fn(&str) -> Result<Netns>,
) -> Result<Vec<Director>> {
    let mut ds = Vec::with_capacity(count);
    for index in 1..=count {
        let n = u8::try_from(index)
            .ok()
            .filter(|&n| n < 250)
            .context("director index out of range")?;
        ds.push(Director {
            ns: make(&format!("lb{index}"))?,
            index,
            uplink_addr: Ipv4Addr::new(198, 18, 3, 1 + n),
            segment_addr: Ipv4Addr::new(198, 18, 2, n),
        });
    }
    Ok(ds)
}

/// The quiet sysctls (see [`quiet`]) in every namespace of `all`, and forwarding on `router`.
pub(crate) fn sysctls(all: &[&Netns], router: &Netns) -> Result<()> {
    for ns in all {
        quiet(ns)?;
    }
    router.sysctl("net.ipv4.ip_forward", "1")
}

/// The front of the lab: client `c0` ── router `rc`, the router's uplink `rl` ── `uplink`
/// (namespace, interface), the router's `rs` ── switch `srt` (a port of `br0`, which must
/// exist), the client's and the router's addresses, the client's default route.
pub(crate) fn front(
    client: &Netns,
    router: &Netns,
    switch: &Netns,
    uplink: (&Netns, &str),
) -> Result<()> {
    veth(client, CLIENT_IF, router, ROUTER_CLIENT_IF)?;
    veth(router, ROUTER_LB_IF, uplink.0, uplink.1)?;
    veth(router, ROUTER_SEGMENT_IF, switch, SWITCH_ROUTER_PORT)?;
    port(switch, SWITCH_ROUTER_PORT, SWITCH_BRIDGE)?;
    address(client, CLIENT_IF, CLIENT_ADDR, 24)?;
    default_route(client, ROUTER_CLIENT_ADDR)?;
    address(router, ROUTER_CLIENT_IF, ROUTER_CLIENT_ADDR, 24)?;
    address(router, ROUTER_LB_IF, ROUTER_LB_ADDR, 24)?;
    address(router, ROUTER_SEGMENT_IF, ROUTER_SEGMENT_ADDR, 24)?;
    Ok(())
}

/// The directors on the switch: each `up0` on the uplink bridge `ubr` (`ulbN`, unknown
/// unicast flooding off unless `flood`), each `seg0` on `br0` (`slbN`), their addresses and
/// default routes via the router. `ubr` and `urt` must exist.
pub(crate) fn directors(switch: &Netns, directors: &[Director], flood: bool) -> Result<()> {
    for d in directors {
        let (up, seg) = (d.switch_uplink_port(), d.switch_port());
        veth(&d.ns, LB_UPLINK_IF, switch, &up)?;
        port(switch, &up, UPLINK_BRIDGE)?;
        if !flood {
            switch.exec(&["bridge", "link", "set", "dev", &up, "flood", "off"])?;
        }
        veth(&d.ns, LB_SEGMENT_IF, switch, &seg)?;
        port(switch, &seg, SWITCH_BRIDGE)?;
        address(&d.ns, LB_UPLINK_IF, d.uplink_addr, 24)?;
        address(&d.ns, LB_SEGMENT_IF, d.segment_addr, 24)?;
        default_route(&d.ns, ROUTER_LB_ADDR)?;
    }
    Ok(())
}

/// Everything of an HA or ECMP lab but its real servers' own set-up: the sysctls in every
/// namespace, both bridges, the [`front`] with the router's uplink on `ubr`, and the
/// [`directors`]; the real servers' veths follow with [`real_servers`].
pub(crate) fn director_links(
    client: &Netns,
    router: &Netns,
    switch: &Netns,
    directors: &[Director],
    real_servers: &[RealServer],
    flood: bool,
) -> Result<()> {
    let mut all: Vec<&Netns> = vec![client, router, switch];
    all.extend(directors.iter().map(Director::ns));
    all.extend(real_servers.iter().map(RealServer::ns));
    sysctls(&all, router)?;
    bridge(switch, SWITCH_BRIDGE, &[])?;
    bridge(switch, UPLINK_BRIDGE, &[])?;
    front(client, router, switch, (switch, UPLINK_ROUTER_PORT))?;
    port(switch, UPLINK_ROUTER_PORT, UPLINK_BRIDGE)?;
    self::directors(switch, directors, flood)
}

/// The real servers on `br0` (`srsN`), their addresses and default routes via `gateway`;
/// with `dr_vips`, also those VIPs on `lo` with arp_ignore=1 and arp_announce=2 (DR).
pub(crate) fn real_servers(
    switch: &Netns,
    real_servers: &[RealServer],
    gateway: Ipv4Addr,
    dr_vips: Option<&[Ipv4Addr]>,
) -> Result<()> {
    for rs in real_servers {
        veth(rs.ns(), RS_IF, switch, &rs.switch_port())?;
        port(switch, &rs.switch_port(), SWITCH_BRIDGE)?;
        address(rs.ns(), RS_IF, rs.addr(), 24)?;
        default_route(rs.ns(), gateway)?;
        let Some(vips) = dr_vips else { continue };
        for vip in vips {
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

/// Starts an HTTP responder on `port` of every real server, answering with its name.
pub(crate) fn serve_http(real_servers: &[RealServer], port: u16) -> Result<Vec<HttpResponder>> {
    real_servers
        .iter()
        .map(|rs| HttpResponder::spawn(rs.ns(), SocketAddr::from(([0, 0, 0, 0], port)), rs.name()))
        .collect()
}
