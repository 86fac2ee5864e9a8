//! Sockets: the raw IP-protocol-112 sockets of an instance (one to receive, bound to its
//! interface and joined to the VRRP group; one to send, bound to the interface adverts go
//! out of, with TTL / hop limit 255 and the source address set per packet), and the
//! AF_PACKET socket that sends gratuitous ARPs and unsolicited neighbour advertisements.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, recvmsg, sendmsg,
    setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use rvs_vrrp::wire::{Family, Ipv4Header, MULTICAST_V4, MULTICAST_V6, PROTOCOL, TTL};

/// One received VRRP datagram, with what the checks need from its IP header.
#[derive(Debug)]
pub(crate) struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub data: Vec<u8>,
}

fn ctx(what: String) -> impl FnOnce(io::Error) -> crate::IoError {
    move |source| crate::IoError::Io { what, source }
}

fn raw(family: Family) -> io::Result<Socket> {
    let domain = match family {
        Family::V4 => Domain::IPV4,
        Family::V6 => Domain::IPV6,
    };
    let s = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(PROTOCOL))))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The receiving socket of an instance: all protocol-112 datagrams arriving on the
/// interface (multicast group joined, unicast to any local address).
pub(crate) struct RecvSocket {
    fd: AsyncFd<Socket>,
    family: Family,
}

impl RecvSocket {
    /// Opens it on interface `ifname` (index `ifindex`).
    pub fn open(family: Family, ifname: &str, ifindex: u32) -> Result<RecvSocket, crate::IoError> {
        let what = || format!("VRRP receive socket on {ifname}");
        let s = raw(family).map_err(ctx(what()))?;
        s.bind_device(Some(ifname.as_bytes()))
            .map_err(ctx(what()))?;
        match family {
            Family::V4 => s
                .join_multicast_v4_n(
                    &MULTICAST_V4,
                    &socket2::InterfaceIndexOrAddress::Index(ifindex),
                )
                .map_err(ctx(what()))?,
            Family::V6 => {
                s.join_multicast_v6(&MULTICAST_V6, ifindex)
                    .map_err(ctx(what()))?;
                s.set_recv_hoplimit_v6(true).map_err(ctx(what()))?;
                setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true)
                    .map_err(|e| io::Error::from_raw_os_error(e as i32))
                    .map_err(ctx(what()))?;
            }
        }
        // SAFETY: the Socket owns its descriptor, which stays open and the same for as
        // long as the AsyncFd owns the Socket.
        let fd = unsafe { AsyncFd::register_with_interest(s, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)
            .map_err(ctx(what()))?;
        Ok(RecvSocket { fd, family })
    }

    /// Waits for the next datagram; `Ok(None)` for one that is not VRRP-shaped at the IP
    /// level (the caller counts nothing for those: they are not adverts).
    pub async fn recv(&self) -> io::Result<Option<Received>> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| self.recv_now(fd.get_ref())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    fn recv_now(&self, s: &Socket) -> io::Result<Option<Received>> {
        let mut buf = vec![0u8; 2048];
        match self.family {
            Family::V4 => {
                let n = {
                    let mut iov = [IoSliceMut::new(&mut buf)];
                    let msg =
                        recvmsg::<SockaddrIn>(s.as_raw_fd(), &mut iov, None, MsgFlags::empty())
                            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
                    msg.bytes
                };
                buf.truncate(n);
                // A raw IPv4 socket hands over the IP header too.
                let Ok(h) = Ipv4Header::parse(&buf) else {
                    return Ok(None);
                };
                if h.protocol != PROTOCOL {
                    return Ok(None);
                }
                let data = buf[h.header_len..].to_vec();
                Ok(Some(Received {
                    src: IpAddr::V4(h.src),
                    dst: IpAddr::V4(h.dst),
                    ttl: h.ttl,
                    data,
                }))
            }
            Family::V6 => {
                let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
                let (n, src, dst, hops) = {
                    let mut iov = [IoSliceMut::new(&mut buf)];
                    let msg = recvmsg::<SockaddrIn6>(
                        s.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::empty(),
                    )
                    .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
                    let mut dst = None;
                    let mut hops = None;
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            match c {
                                ControlMessageOwned::Ipv6PacketInfo(info) => {
                                    dst = Some(std::net::Ipv6Addr::from(info.ipi6_addr.s6_addr))
                                }
                                ControlMessageOwned::Ipv6HopLimit(h) => hops = Some(h),
                                _ => {}
                            }
                        }
                    }
                    (msg.bytes, msg.address.map(|a| a.ip()), dst, hops)
                };
                buf.truncate(n);
                let (Some(src), Some(dst), Some(hops)) = (src, dst, hops) else {
                    return Ok(None);
                };
                Ok(Some(Received {
                    src: IpAddr::V6(src),
                    dst: IpAddr::V6(dst),
                    ttl: u8::try_from(hops).unwrap_or(0),
                    data: buf,
                }))
            }
        }
    }
}

/// The sending socket of an instance.
pub(crate) struct SendSocket {
    socket: Socket,
    family: Family,
    ifindex: u32,
}

impl SendSocket {
    /// Opens it on interface `ifname` (index `ifindex`): TTL / hop limit 255, TOS
    /// internet control (as keepalived), multicast out of this interface, no loopback.
    pub fn open(family: Family, ifname: &str, ifindex: u32) -> Result<SendSocket, crate::IoError> {
        let what = || format!("VRRP send socket on {ifname}");
        let s = raw(family).map_err(ctx(what()))?;
        s.bind_device(Some(ifname.as_bytes()))
            .map_err(ctx(what()))?;
        // Nothing arrives here that we want: the receive socket reads.
        s.shutdown(std::net::Shutdown::Read).ok();
        match family {
            Family::V4 => {
                s.set_ttl_v4(u32::from(TTL)).map_err(ctx(what()))?;
                s.set_multicast_ttl_v4(u32::from(TTL))
                    .map_err(ctx(what()))?;
                s.set_multicast_loop_v4(false).map_err(ctx(what()))?;
                s.set_tos_v4(0xc0).map_err(ctx(what()))?;
            }
            Family::V6 => {
                s.set_unicast_hops_v6(u32::from(TTL)).map_err(ctx(what()))?;
                s.set_multicast_hops_v6(u32::from(TTL))
                    .map_err(ctx(what()))?;
                s.set_multicast_loop_v6(false).map_err(ctx(what()))?;
                s.set_multicast_if_v6(ifindex).map_err(ctx(what()))?;
            }
        }
        Ok(SendSocket {
            socket: s,
            family,
            ifindex,
        })
    }

    /// Sends one VRRP message from `src` to `dst` (the source set per packet with
    /// IP_PKTINFO / IPV6_PKTINFO, so a changed primary address needs no new socket).
    pub fn send(&self, src: IpAddr, dst: IpAddr, data: &[u8]) -> io::Result<()> {
        let iov = [IoSlice::new(data)];
        let fd = self.socket.as_raw_fd();
        let sent = match (self.family, src, dst) {
            (Family::V4, IpAddr::V4(s), IpAddr::V4(d)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as i32,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(s).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let to = SockaddrIn::from(std::net::SocketAddrV4::new(d, 0));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
            }
            (Family::V6, IpAddr::V6(s), IpAddr::V6(d)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: s.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                let to = SockaddrIn6::from(SocketAddrV6::new(d, 0, 0, self.ifindex));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("address family mismatch sending from {src} to {dst}"),
                ));
            }
        };
        sent.map(|_| ())
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
    }
}

/// An AF_PACKET socket for whole Ethernet frames (gratuitous ARP, unsolicited NA).
pub(crate) struct FrameSocket {
    fd: OwnedFd,
}

impl FrameSocket {
    /// Opens it (needs CAP_NET_RAW).
    pub fn open() -> Result<FrameSocket, crate::IoError> {
        // socket2 has no AF_PACKET address type for sending to an ifindex, so this one
        // socket is made and used through libc directly.
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(crate::IoError::Io {
                what: "opening an AF_PACKET socket for gratuitous ARP".into(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        Ok(FrameSocket {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Sends `frame` (starting with its Ethernet header) out of interface `ifindex`.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        if frame.len() < 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame too short",
            ));
        }
        // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
