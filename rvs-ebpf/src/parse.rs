//! Parsing: Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (with options), TCP/UDP ports and
//! flags, and ICMP errors with their quoted IPv4 header and ports. Offsets are kept so the
//! rewriters touch the frame without parsing again. IPv6 (next) adds a sibling of
//! [`parse_ipv4`] behind the same ethertype switch.

use aya_ebpf::programs::XdpContext;
use rvs_common::{IPPROTO_TCP, IPPROTO_UDP, Verdict, csum};

use crate::access::{ptr_at, ptr_at_fresh, read_be16};

/// Length of an Ethernet header.
pub const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// Minimum IPv4 header length.
pub const IPV4_MIN_HLEN: usize = 20;
const TCP_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const IP_MF_OFFSET_MASK: u16 = 0x3FFF;
const IP_DF: u8 = 0x40;
/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// Most IPv4 option bytes a header can carry (IHL 15).
const IPV4_MAX_OPT_LEN: usize = 40;
const IPOPT_END: u8 = 0;
const IPOPT_NOOP: u8 = 1;
const IPOPT_LSRR: u8 = 131;
const IPOPT_SSRR: u8 = 137;

/// What the parser extracted from an IPv4 TCP/UDP frame that is not a fragment.
#[derive(Clone, Copy)]
pub struct Packet {
    /// Source address (memory order).
    pub saddr: u32,
    /// Destination address (memory order).
    pub daddr: u32,
    /// Source port (memory order).
    pub sport: u16,
    /// Destination port (memory order).
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    /// IPv4 total length (host order).
    pub tot_len: u16,
    /// TOS byte.
    pub tos: u8,
    /// TTL.
    pub ttl: u8,
    /// Whether DF is set.
    pub df: bool,
    /// A UDP datagram without checksum (0).
    pub udp_csum_zero: bool,
    /// Offset of the IPv4 header (after Ethernet and VLAN).
    pub l3: usize,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
}

/// An ICMP error (unreachable, source quench, time exceeded) quoting an IPv4 TCP/UDP
/// packet: the outer header and the quoted tuple, as IPVS's `ip_vs_in_icmp` reads it.
#[derive(Clone, Copy)]
pub struct IcmpError {
    /// Outer source.
    pub saddr: u32,
    /// Outer destination.
    pub daddr: u32,
    /// Outer total length.
    pub tot_len: u16,
    /// Outer TOS.
    pub tos: u8,
    /// Outer TTL.
    pub ttl: u8,
    /// Outer DF.
    pub df: bool,
    /// Offset of the outer IPv4 header.
    pub l3: usize,
    /// Offset of the ICMP header.
    pub icmp: usize,
    /// Offset of the quoted IPv4 header.
    pub q_l3: usize,
    /// Offset of the quoted ports.
    pub q_l4: usize,
    /// Quoted source, destination, ports and protocol.
    pub q_saddr: u32,
    /// Quoted destination.
    pub q_daddr: u32,
    /// Quoted source port.
    pub q_sport: u16,
    /// Quoted destination port.
    pub q_dport: u16,
    /// Quoted protocol.
    pub q_proto: u8,
}

impl IcmpError {
    /// The outer packet as the forwarders see one (no ports; the ICMP header as "L4").
    #[inline(always)]
    pub fn outer(&self) -> Packet {
        Packet {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: 0,
            dport: 0,
            proto: IPPROTO_ICMP,
            tcp_flags: 0,
            tot_len: self.tot_len,
            tos: self.tos,
            ttl: self.ttl,
            df: self.df,
            udp_csum_zero: false,
            l3: self.l3,
            l4: self.icmp,
        }
    }
}

/// A frame the balancer looks at.
pub enum Parsed {
    /// TCP or UDP.
    Flow(Packet),
    /// An ICMP error about a TCP/UDP packet.
    Icmp(IcmpError),
}

/// Parses the L2 header: the offset of the IPv4 header, or why the frame is passed.
#[inline(always)]
pub fn parse_l2(ctx: &XdpContext) -> Result<usize, Verdict> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = read_be16(ctx, 12).ok_or(Verdict::PassMalformed)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = read_be16(ctx, ETH_HLEN + 2).ok_or(Verdict::PassMalformed)?;
        l3 += VLAN_HLEN;
    }
    if ethertype != ETH_P_IP {
        return Err(Verdict::PassNotIpv4);
    }
    Ok(l3)
}

/// The fields of a (non-fragment) IPv4 header at `l3`: (header length, protocol, tot_len,
/// source, destination, tos, ttl, df).
#[derive(Clone, Copy)]
pub struct Ipv4 {
    /// Header length in bytes.
    pub ihl: usize,
    /// Protocol.
    pub proto: u8,
    /// Total length.
    pub tot_len: u16,
    /// Source.
    pub saddr: u32,
    /// Destination.
    pub daddr: u32,
    /// TOS.
    pub tos: u8,
    /// TTL.
    pub ttl: u8,
    /// DF.
    pub df: bool,
}

/// Parses an IPv4 header at `l3`; fragments and malformed headers are refused.
#[inline(always)]
pub fn parse_ipv4(ctx: &XdpContext, l3: usize) -> Result<Ipv4, Verdict> {
    let ip = ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, l3).ok_or(Verdict::PassMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let version = ip[0] >> 4;
    let ihl = ((ip[0] & 0x0F) as usize) * 4;
    let tot_len = u16::from_be_bytes([ip[2], ip[3]]);
    if version != 4 || ihl < IPV4_MIN_HLEN || (tot_len as usize) < ihl {
        return Err(Verdict::PassMalformed);
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & IP_MF_OFFSET_MASK != 0 {
        return Err(Verdict::PassFragment);
    }
    Ok(Ipv4 {
        ihl,
        proto: ip[9],
        tot_len,
        saddr: u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
        daddr: u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
        tos: ip[1],
        ttl: ip[8],
        df: ip[6] & IP_DF != 0,
    })
}

/// What the kernel's `ip_rcv_core` and `ip_route_input` check before a received packet
/// goes anywhere: the frame holds the total length, the header checksum is right, the
/// options are well-formed and not source routing, the source is no martian. A packet
/// failing one of them is passed: the kernel drops it (and counts it in its own SNMP
/// counters, or answers a parameter problem), as it would have with IPVS.
///
/// It reads the header again through [`ptr_at_fresh`]: its comparisons then narrow only its
/// own copies of IHL, total length and source, so the verifier does not walk the rest of
/// the program once per header length it saw here.
#[inline(always)]
fn check_ipv4(ctx: &XdpContext, l3: usize) -> Result<(), Verdict> {
    let h = ptr_at_fresh::<[u8; IPV4_MIN_HLEN]>(ctx, l3).ok_or(Verdict::PassMalformed)?;
    // SAFETY: bounds checked by ptr_at_fresh.
    let h = unsafe { &*h };
    let ihl = ((h[0] & 0x0F) as usize) * 4;
    let tot_len = u16::from_be_bytes([h[2], h[3]]) as usize;
    if l3 + tot_len > ctx.data_end() - ctx.data() {
        return Err(Verdict::PassMalformed);
    }
    let mut sum = 0u64;
    let mut i = 0;
    while i < IPV4_MIN_HLEN {
        sum += u16::from_ne_bytes([h[i], h[i + 1]]) as u64;
        i += 2;
    }
    if ihl > IPV4_MIN_HLEN {
        // Options: up to 10 more words, each read with its own bounds check.
        let mut w = 0;
        while w < IPV4_MAX_OPT_LEN / 4 {
            let off = IPV4_MIN_HLEN + w * 4;
            if off >= ihl {
                break;
            }
            let o = ptr_at::<[u8; 4]>(ctx, l3 + off).ok_or(Verdict::PassMalformed)?;
            // SAFETY: bounds checked by ptr_at.
            let o = unsafe { *o };
            sum += u16::from_ne_bytes([o[0], o[1]]) as u64;
            sum += u16::from_ne_bytes([o[2], o[3]]) as u64;
            w += 1;
        }
    }
    if csum::fold(sum) != 0xFFFF {
        return Err(Verdict::PassBadChecksum);
    }
    if ihl > IPV4_MIN_HLEN {
        check_options(ctx, l3, ihl)?;
    }
    // As `ip_route_input_slow`: multicast, limited broadcast, 0.0.0.0/8 and (without
    // route_localnet) 127.0.0.0/8 are martian sources.
    let s = [h[12], h[13], h[14], h[15]];
    if s[0] == 0 || s[0] == 127 || s[0] & 0xF0 == 0xE0 || s == [0xFF; 4] {
        return Err(Verdict::PassMartianSource);
    }
    Ok(())
}

/// Walks the IPv4 options as `ip_options_compile` does: END stops, NOP is one byte, any
/// other option has a length of at least 2 that stays inside the header; LSRR/SSRR are
/// refused here (the kernel decides by `accept_source_route`).
#[inline(always)]
fn check_options(ctx: &XdpContext, l3: usize, ihl: usize) -> Result<(), Verdict> {
    let mut off = IPV4_MIN_HLEN;
    let mut n = 0;
    // At most one step per option byte.
    while n < IPV4_MAX_OPT_LEN {
        if off >= ihl || off >= IPV4_MIN_HLEN + IPV4_MAX_OPT_LEN {
            return Ok(());
        }
        // Type and length read together: a one-byte check is compiled to `ptr >= end`,
        // which gives the verifier no range. Past the header (no L4 at all) is malformed.
        let opt = ptr_at::<[u8; 2]>(ctx, l3 + off).ok_or(Verdict::PassMalformed)?;
        // SAFETY: bounds checked by ptr_at.
        let [kind, len] = unsafe { *opt };
        if kind == IPOPT_END {
            return Ok(());
        }
        if kind == IPOPT_NOOP {
            off += 1;
            n += 1;
            continue;
        }
        if off + 1 >= ihl {
            return Err(Verdict::PassBadOptions);
        }
        let len = len as usize;
        if len < 2 || off + len > ihl {
            return Err(Verdict::PassBadOptions);
        }
        if kind == IPOPT_LSRR || kind == IPOPT_SSRR {
            return Err(Verdict::PassSourceRoute);
        }
        off += len;
        n += 1;
    }
    Ok(())
}

/// Parses a frame for the balancer.
#[inline(always)]
pub fn parse_frame(ctx: &XdpContext) -> Result<Parsed, Verdict> {
    let l3 = parse_l2(ctx)?;
    let ip = parse_ipv4(ctx, l3)?;
    check_ipv4(ctx, l3)?;
    let l4 = l3 + ip.ihl;
    // The L4 header must fit the total length (the frame may carry Ethernet padding past
    // it): IPVS drops what it cannot read, and the kernel would route it on.
    let l4_room = ip.tot_len as usize - ip.ihl;
    let (ports, tcp_flags, udp_csum_zero) = match ip.proto {
        IPPROTO_TCP => {
            let tcp = ptr_at::<[u8; TCP_MIN_HLEN]>(ctx, l4).ok_or(Verdict::PassMalformed)?;
            // SAFETY: bounds checked by ptr_at.
            let tcp = unsafe { &*tcp };
            let doff = ((tcp[12] >> 4) as usize) * 4;
            if doff < TCP_MIN_HLEN || doff > l4_room {
                return Err(Verdict::DropBadL4Header);
            }
            ([tcp[0], tcp[1], tcp[2], tcp[3]], tcp[13], false)
        }
        IPPROTO_UDP => {
            if l4_room < UDP_HLEN {
                return Err(Verdict::DropBadL4Header);
            }
            let udp = ptr_at::<[u8; UDP_HLEN]>(ctx, l4).ok_or(Verdict::PassMalformed)?;
            // SAFETY: bounds checked by ptr_at.
            let udp = unsafe { &*udp };
            (
                [udp[0], udp[1], udp[2], udp[3]],
                0,
                udp[6] == 0 && udp[7] == 0,
            )
        }
        IPPROTO_ICMP => return parse_icmp(ctx, l3, &ip).map(Parsed::Icmp),
        _ => return Err(Verdict::PassNotTcpUdp),
    };
    Ok(Parsed::Flow(Packet {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: u16::from_ne_bytes([ports[0], ports[1]]),
        dport: u16::from_ne_bytes([ports[2], ports[3]]),
        proto: ip.proto,
        tcp_flags,
        tot_len: ip.tot_len,
        tos: ip.tos,
        ttl: ip.ttl,
        df: ip.df,
        udp_csum_zero,
        l3,
        l4,
    }))
}

/// An ICMP error quoting TCP/UDP (IPVS translates only these types); anything else ICMP
/// is the host's own business.
#[inline(always)]
fn parse_icmp(ctx: &XdpContext, l3: usize, ip: &Ipv4) -> Result<IcmpError, Verdict> {
    let icmp = l3 + ip.ihl;
    let h = ptr_at::<[u8; 8]>(ctx, icmp).ok_or(Verdict::PassMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let kind = unsafe { (*h)[0] };
    if !rvs_common::icmp::is_translated(kind) {
        return Err(Verdict::PassNotTcpUdp);
    }
    let q_l3 = icmp + 8;
    let q = parse_ipv4(ctx, q_l3).map_err(|_| Verdict::PassNotTcpUdp)?;
    if q.proto != IPPROTO_TCP && q.proto != IPPROTO_UDP {
        return Err(Verdict::PassNotTcpUdp);
    }
    let q_l4 = q_l3 + q.ihl;
    let ports = ptr_at::<[u8; 4]>(ctx, q_l4).ok_or(Verdict::PassMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ports = unsafe { *ports };
    Ok(IcmpError {
        saddr: ip.saddr,
        daddr: ip.daddr,
        tot_len: ip.tot_len,
        tos: ip.tos,
        ttl: ip.ttl,
        df: ip.df,
        l3,
        icmp,
        q_l3,
        q_l4,
        q_saddr: q.saddr,
        q_daddr: q.daddr,
        q_sport: u16::from_ne_bytes([ports[0], ports[1]]),
        q_dport: u16::from_ne_bytes([ports[2], ports[3]]),
        q_proto: q.proto,
    })
}
