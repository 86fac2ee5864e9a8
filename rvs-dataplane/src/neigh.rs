//! Keeps the kernel's neighbour entries for real servers resolved.
//!
//! The XDP program takes the egress interface and MAC addresses from the kernel's FIB
//! (bpf_fib_lookup); when the kernel has no neighbour entry for a real server yet, the
//! lookup fails and the packet is dropped (`drop_no_route`). IPVS's own transmit path would
//! trigger ARP; XDP cannot, so the daemon asks the kernel to resolve each real server's
//! next hop (RTM_NEWNEIGH with NTF_USE: create if missing, then probe; an existing entry is
//! never overwritten) and repeats it periodically so entries do not age out.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::{
    neighbour::{NeighbourFlags, NeighbourState},
    route::{RouteAddress, RouteAttribute},
};
use rtnetlink::{Handle, RouteMessageBuilder};

/// A netlink failure while resolving a real server's next hop.
#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The kernel refused a request.
    #[error("{what} for {addr}: {source}")]
    Netlink {
        /// What was asked.
        what: &'static str,
        /// Real server.
        addr: Ipv4Addr,
        /// Cause.
        source: rtnetlink::Error,
    },
    /// The kernel has no route to the real server.
    #[error("no route to real server {0}")]
    NoRoute(Ipv4Addr),
}

/// Talks rtnetlink to the kernel of the caller's network namespace.
pub struct NeighbourResolver {
    handle: Handle,
}

impl NeighbourResolver {
    /// Opens the netlink connection; its driver task runs on the current tokio runtime.
    pub fn new() -> Result<Self, NeighError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The next hop (interface, address) the kernel would use towards `addr`.
    pub async fn next_hop(&self, addr: Ipv4Addr) -> Result<(u32, Ipv4Addr), NeighError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(addr, 32)
            .build();
        let mut routes = self.handle.route().get(msg).execute();
        let route = routes
            .try_next()
            .await
            .map_err(|source| NeighError::Netlink {
                what: "route lookup",
                addr,
                source,
            })?
            .ok_or(NeighError::NoRoute(addr))?;
        let mut oif = None;
        let mut gateway = addr;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => gateway = *gw,
                _ => {}
            }
        }
        Ok((oif.ok_or(NeighError::NoRoute(addr))?, gateway))
    }

    /// Makes the kernel resolve the next hop towards `addr` (never disturbs a valid entry).
    pub async fn resolve(&self, addr: Ipv4Addr) -> Result<(), NeighError> {
        let (ifindex, hop) = self.next_hop(addr).await?;
        if hop != addr {
            tracing::warn!(real = %addr, gateway = %hop, "real server is not on-link; direct routing needs it on the same L2 segment");
        }
        self.handle
            .neighbours()
            .add(ifindex, IpAddr::V4(hop))
            .state(NeighbourState::None)
            .flags(NeighbourFlags::Use)
            .replace()
            .execute()
            .await
            .map_err(|source| NeighError::Netlink {
                what: "neighbour resolution",
                addr,
                source,
            })
    }
}
