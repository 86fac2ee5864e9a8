//! Keeps the director's kernel from forwarding packets for the VIPs rvs balances.
//!
//! XDP passes to the kernel what it does not balance: a packet for a port of the VIP that
//! no service takes, a mid-flow TCP packet without a connection, ICMP. An IPVS director
//! holds the VIP as a local address, so its stack answers those (a RST, a port
//! unreachable). rvs needs no local VIP, so on a director with forwarding on (rvsd turns it
//! on) the kernel routed such a packet back out of its default route, to the router, which
//! sent it back: it looped until its TTL ran out (32 crossings of the router per packet).
//!
//! rvsd therefore holds one `unreachable` /32 route in the main table for every VIP it
//! balances: the kernel drops the packet and tells the sender (ICMP host unreachable, rate
//! limited by `net.ipv4.icmp_ratelimit`), and never forwards it. Why `unreachable`:
//! - not `local`: a local route makes the kernel answer ARP for the VIP on every
//!   interface, which a VRRP BACKUP (or a DR segment) must never do;
//! - not `blackhole`: the sender would wait for a timeout where IPVS's director answers at
//!   once; `unreachable` fails a client's connect to a port no service takes promptly.
//!
//! Under VRRP the MASTER holds the VIP as a local address; the local table is looked up
//! before the main table, so the MASTER's stack answers (as IPVS's director does) and the
//! route only acts on the BACKUP, where the VIP is not local and forwarding it would loop.
//!
//! The routes carry rvs's routing protocol number ([`ROUTE_PROTOCOL`]) and a metric
//! derived from the pin path ([`metric_of`]), so rvsd only ever lists, adopts and deletes
//! its own: an operator's route for the same prefix (any other protocol or metric) is never
//! touched, and two rvsds with different pin paths in one namespace keep theirs apart. The
//! routes stay when rvsd exits (the balancer stays attached too) and `rvsd --cleanup`
//! removes them. fwmark services have no VIP (their rules match packets), so they get none.

use std::{collections::BTreeSet, net::Ipv4Addr, path::Path};

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use netlink_packet_route::{
    AddressFamily,
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType},
};
use rtnetlink::{Handle, RouteMessageBuilder};
use rvs_config::Config;

/// rvs's routing protocol number (`ip route show proto 82`); not one of iproute2's
/// reserved numbers (/etc/iproute2/rt_protos).
pub const ROUTE_PROTOCOL: u8 = 82;

/// The VIPs of `config` that get a route: every address a service balances (port 0
/// included), fwmark services left out.
pub fn vips(config: &Config) -> BTreeSet<Ipv4Addr> {
    config
        .services
        .iter()
        .filter(|s| s.fwmark.is_none())
        .map(|s| s.address)
        .collect()
}

/// The metric of the routes of the rvsd with `pin_path`: FNV-1a of the path, folded into
/// 1..=65535 so it stays clear of an operator's usual metric 0.
pub fn metric_of(pin_path: &Path) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in pin_path.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ((h >> 16) ^ (h & 0xffff)).max(1)
}

/// What to change so that the routes present become the routes wanted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteDiff {
    /// VIPs that get a route.
    pub add: Vec<Ipv4Addr>,
    /// VIPs whose route goes.
    pub remove: Vec<Ipv4Addr>,
}

/// The routes to add and to remove, in address order.
pub fn diff(want: &BTreeSet<Ipv4Addr>, have: &BTreeSet<Ipv4Addr>) -> RouteDiff {
    RouteDiff {
        add: want.difference(have).copied().collect(),
        remove: have.difference(want).copied().collect(),
    }
}

/// The message of rvs's unreachable route for `vip` with `metric`.
fn route(vip: Ipv4Addr, metric: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(vip, 32)
        .kind(RouteType::Unreachable)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .priority(metric)
        .build()
}

/// The VIP of `msg` when it is one of rvs's routes with `metric`, else `None`.
fn ours(msg: &RouteMessage, metric: u32) -> Option<Ipv4Addr> {
    let h = &msg.header;
    if h.protocol != RouteProtocol::Other(ROUTE_PROTOCOL)
        || h.kind != RouteType::Unreachable
        || h.table != RouteHeader::RT_TABLE_MAIN
        || h.address_family != AddressFamily::Inet
        || h.destination_prefix_length != 32
    {
        return None;
    }
    let prio = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    if prio.unwrap_or(0) != metric {
        return None;
    }
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v)) => Some(*v),
        _ => None,
    })
}

/// rvsd's routes in the kernel of the caller's network namespace.
pub struct VipRoutes {
    handle: Handle,
    metric: u32,
    /// What the kernel holds (as last listed or changed).
    present: BTreeSet<Ipv4Addr>,
}

impl VipRoutes {
    /// Opens the netlink connection (its driver runs on the current tokio runtime) and
    /// lists the routes an earlier rvsd with this pin path left (adopted, as the maps are).
    pub async fn open(pin_path: &Path) -> Result<Self> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(connection);
        let metric = metric_of(pin_path);
        let mut me = Self {
            handle,
            metric,
            present: BTreeSet::new(),
        };
        me.present = me.list().await?;
        Ok(me)
    }

    /// The VIPs that have an rvs route of this pin path now.
    pub async fn list(&self) -> Result<BTreeSet<Ipv4Addr>> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(msg).execute();
        let mut out = BTreeSet::new();
        loop {
            match routes.try_next().await {
                Ok(Some(r)) => out.extend(ours(&r, self.metric)),
                Ok(None) => return Ok(out),
                Err(e) => return Err(e).context("listing routes"),
            }
        }
    }

    /// Adds and removes routes until the VIPs of `want` have one each and no other VIP
    /// has one; a refused change is logged and tried again at the next sync.
    pub async fn sync(&mut self, want: &BTreeSet<Ipv4Addr>) {
        let d = diff(want, &self.present);
        for vip in d.add {
            match self
                .handle
                .route()
                .add(route(vip, self.metric))
                .execute()
                .await
            {
                Ok(()) => {
                    tracing::info!(%vip, "unreachable route added: the kernel never forwards this VIP's packets");
                    self.present.insert(vip);
                }
                Err(e) => {
                    tracing::warn!(%vip, error = %e, "cannot add the VIP's unreachable route; packets for it that rvs passes to the kernel may be forwarded")
                }
            }
        }
        for vip in d.remove {
            match self.delete(vip).await {
                Ok(()) => {
                    tracing::info!(%vip, "unreachable route removed (no service on the VIP)");
                    self.present.remove(&vip);
                }
                Err(e) => tracing::warn!(%vip, error = %e, "cannot remove the VIP's route"),
            }
        }
    }

    /// Deletes rvs's route for `vip`: the request names protocol, type and metric, so
    /// the kernel matches no other route.
    async fn delete(&self, vip: Ipv4Addr) -> Result<()> {
        self.handle
            .route()
            .del(route(vip, self.metric))
            .execute()
            .await
            .with_context(|| format!("deleting rvs's route for {vip}"))
    }

    /// Deletes every route of this pin path (for `--cleanup`); returns the VIPs freed.
    pub async fn remove_all(&mut self) -> Result<Vec<Ipv4Addr>> {
        let mut freed = Vec::new();
        for vip in self.list().await? {
            self.delete(vip).await?;
            self.present.remove(&vip);
            freed.push(vip);
        }
        Ok(freed)
    }
}

/// `rvsd --cleanup`'s part: removes the VIP routes of `pin_path` in this namespace.
pub fn cleanup(pin_path: &Path) -> Result<Vec<Ipv4Addr>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut routes = VipRoutes::open(pin_path).await?;
            routes.remove_all().await
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[[u8; 4]]) -> BTreeSet<Ipv4Addr> {
        v.iter().map(|a| Ipv4Addr::from(*a)).collect()
    }

    #[test]
    fn a_vip_gets_a_route_with_its_first_service_and_loses_it_with_its_last() {
        let text = "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10\"\nport = 80\n[[service]]\nprotocol = \"udp\"\naddress = \"198.18.0.10\"\nport = 53\n[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.11\"\nport = 0\npersistence = { timeout = 60 }\n";
        let c = Config::from_toml(text).expect("config");
        let want = vips(&c);
        assert_eq!(want, set(&[[198, 18, 0, 10], [198, 18, 0, 11]]));
        let have = set(&[[198, 18, 0, 11], [198, 18, 0, 12]]);
        assert_eq!(
            diff(&want, &have),
            RouteDiff {
                add: vec![Ipv4Addr::new(198, 18, 0, 10)],
                remove: vec![Ipv4Addr::new(198, 18, 0, 12)],
            }
        );
        assert_eq!(diff(&want, &want), RouteDiff::default());
    }

    #[test]
    fn only_rvs_s_own_routes_are_recognised() {
        let vip = Ipv4Addr::new(198, 18, 0, 10);
        let m = metric_of(Path::new("/sys/fs/bpf/rvs"));
        assert_ne!(m, 0);
        assert_eq!(ours(&route(vip, m), m), Some(vip));
        // Another rvsd's (pin path), an operator's static or blackhole route: not ours.
        assert_eq!(ours(&route(vip, m ^ 1), m), None);
        let mut static_route = route(vip, m);
        static_route.header.protocol = RouteProtocol::Static;
        assert_eq!(ours(&static_route, m), None);
        let mut blackhole = route(vip, m);
        blackhole.header.kind = RouteType::BlackHole;
        assert_eq!(ours(&blackhole, m), None);
    }
}
