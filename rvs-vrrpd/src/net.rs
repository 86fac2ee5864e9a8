//! The kernel side over rtnetlink: interface index, MAC and state, the address adverts
//! are sent from, virtual addresses (with label and scope), and the VMAC macvlan.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, MacVlanMode};
use rtnetlink::{AddressMessageBuilder, Handle, LinkMacVlan};

use crate::IoError;
use rvs_vrrp::config::VipConfig;

/// What the I/O layer needs to know about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// Interface index.
    pub index: u32,
    /// Hardware address, if it has one.
    pub mac: Option<[u8; 6]>,
    /// Administratively up with carrier.
    pub up: bool,
}

/// An rtnetlink connection in the caller's network namespace.
#[derive(Clone)]
pub(crate) struct Net {
    handle: Handle,
}

/// errno of a netlink error, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> IoError {
    let what = what.into();
    move |source| IoError::Netlink { what, source }
}

impl Net {
    /// Opens the connection; its driver runs on the current tokio runtime.
    pub fn new() -> Result<Net, IoError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| IoError::Io {
                what: "opening a netlink socket".into(),
                source,
            })?;
        tokio::spawn(connection);
        Ok(Net { handle })
    }

    /// The interface called `name`, or `None` if there is none.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, IoError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let msg = match links.try_next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(nl(format!("looking up interface {name}"))(e)),
        };
        let mac = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        let flags = msg.header.flags;
        Ok(Some(Link {
            index: msg.header.index,
            mac,
            up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
        }))
    }

    /// The address adverts are sent from on interface `index`: the first IPv4 address
    /// that is not secondary and not one of `exclude` (the VIPs), or the first IPv6
    /// link-local address that has finished duplicate address detection.
    pub async fn source_address(
        &self,
        index: u32,
        family: rvs_vrrp::wire::Family,
        exclude: &[IpAddr],
    ) -> Result<Option<IpAddr>, IoError> {
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut found = None;
        while let Some(msg) = addrs
            .try_next()
            .await
            .map_err(nl(format!("listing addresses of interface {index}")))?
        {
            if msg.header.index != index || found.is_some() {
                continue;
            }
            let addr = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = addr.or_else(|| {
                msg.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            let Some(addr) = addr else { continue };
            if exclude.contains(&addr) {
                continue;
            }
            let flags = msg.header.flags;
            match (family, addr) {
                (rvs_vrrp::wire::Family::V4, IpAddr::V4(_))
                    if !flags.contains(AddressHeaderFlags::Secondary) =>
                {
                    found = Some(addr)
                }
                (rvs_vrrp::wire::Family::V6, IpAddr::V6(a))
                    if is_link_local(a)
                        && !flags.contains(AddressHeaderFlags::Tentative)
                        && !flags.contains(AddressHeaderFlags::Dadfailed) =>
                {
                    found = Some(addr)
                }
                _ => {}
            }
        }
        Ok(found)
    }

    /// Adds virtual address `vip` to interface `index` (replacing an identical one).
    pub async fn add_address(&self, index: u32, vip: &VipConfig) -> Result<(), IoError> {
        let mut req = self
            .handle
            .address()
            .add(index, vip.address, vip.prefix_len)
            .replace();
        let msg = req.message_mut();
        if let Some(scope) = vip.scope {
            msg.header.scope = AddressScope::from(scope.value());
        }
        if let Some(label) = &vip.label {
            msg.attributes.push(AddressAttribute::Label(label.clone()));
        }
        if vip.address.is_ipv6() {
            // No duplicate address detection: the VIP must work at once after failover
            // (keepalived adds IPv6 VIPs with IFA_F_NODAD too).
            msg.header.flags |= AddressHeaderFlags::Nodad;
        }
        req.execute()
            .await
            .map_err(nl(format!("adding {vip} to interface {index}")))
    }

    /// Removes virtual address `vip` from interface `index`; an absent address is fine.
    pub async fn del_address(&self, index: u32, vip: &VipConfig) -> Result<(), IoError> {
        let msg: AddressMessage = match vip.address {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, vip.prefix_len)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, vip.prefix_len)
                .build(),
        };
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    errno(&e),
                    Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(nl(format!("removing {vip} from interface {index}"))(e)),
        }
    }

    /// Creates (or re-creates) macvlan `name` on `base` with hardware address `mac`,
    /// private mode, up; returns its index.
    pub async fn create_vmac(&self, name: &str, base: u32, mac: [u8; 6]) -> Result<u32, IoError> {
        if let Some(old) = self.link(name).await? {
            self.delete_link(old.index).await?;
        }
        let msg = LinkMacVlan::new(name, base, MacVlanMode::Private)
            .address(mac.to_vec())
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(format!("creating VMAC interface {name}")))?;
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| IoError::NoInterface(name.into()))?;
        Ok(link.index)
    }

    /// Deletes interface `index`.
    pub async fn delete_link(&self, index: u32) -> Result<(), IoError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(nl(format!("deleting interface {index}"))(e)),
        }
    }
}

/// fe80::/10.
fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}
