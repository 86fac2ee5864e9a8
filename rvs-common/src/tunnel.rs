//! Tunnel encapsulation as kernel IPVS does it (`ip_vs_tunnel_xmit`, `ipvs_gue_encap`,
//! `ipvs_gre_encap` in net/netfilter/ipvs/ip_vs_xmit.c): the outer headers, their lengths
//! and checksums, as plain arithmetic the XDP program writes into the frame.
//!
//! Outer IPv4: version 4, IHL 5, DSCP copied with ECN as `INET_ECN_encapsulate`, TTL copied,
//! DF copied (IPVS's default `pmtu_disc` = 1), protocol IPIP/UDP/GRE. GUE: UDP from a flow
//! hash in the local port range to `--tun-port`, a 4-byte version-0 header whose proto is
//! IPIP; UDP checksum 0 unless `--tun-csum`/`--tun-remcsum`. GRE: 4 bytes (flags, protocol
//! 0x0800), 8 with the checksum option under `--tun-csum`.
//!
//! Checksums over the inner packet use the inner packet's own valid checksums (local
//! checksum offload, as the kernel's `lco_csum`): the inner IPv4 header sums to zero and
//! the inner TCP/UDP segment sums to the complement of its pseudo-header, so the outer sum
//! needs only the headers rvs adds.

use crate::csum;

/// `--tun-type ipip` (IPVS `IP_VS_CONN_F_TUNNEL_TYPE_IPIP`).
pub const TUN_IPIP: u8 = 0;
/// `--tun-type gue`.
pub const TUN_GUE: u8 = 1;
/// `--tun-type gre`.
pub const TUN_GRE: u8 = 2;

/// `--tun-csum` (IPVS `IP_VS_TUNNEL_ENCAP_FLAG_CSUM`).
pub const TUN_F_CSUM: u8 = 1 << 0;
/// `--tun-remcsum` (IPVS `IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM`).
pub const TUN_F_REMCSUM: u8 = 1 << 1;

/// IP protocol numbers of the encapsulations.
pub const IPPROTO_IPIP: u8 = 4;
/// GRE.
pub const IPPROTO_GRE: u8 = 47;
/// UDP (GUE).
pub const IPPROTO_UDP: u8 = 17;

/// GRE flag: checksum present.
pub const GRE_CSUM: u16 = 0x8000;
/// GRE flag: key present.
pub const GRE_KEY: u16 = 0x2000;
/// GRE flag: sequence number present.
pub const GRE_SEQ: u16 = 0x1000;
/// GRE version and routing bits that rvs (and Linux's gre for IP) refuses.
pub const GRE_VERSION_ROUTING: u16 = 0x4007;

/// Bytes the encapsulation adds in front of the inner IPv4 packet. `--tun-remcsum` adds
/// its private option only for packets with a partial checksum, which a forwarded packet
/// never has (IPVS behaves alike), so it does not change the length.
pub const fn overhead(tun_type: u8, tun_flags: u8) -> u16 {
    match tun_type {
        TUN_GUE => 20 + 8 + 4,
        TUN_GRE => {
            if tun_flags & TUN_F_CSUM != 0 {
                20 + 8
            } else {
                20 + 4
            }
        }
        _ => 20,
    }
}

/// The outer IPv4 protocol of a tunnel type.
pub const fn outer_proto(tun_type: u8) -> u8 {
    match tun_type {
        TUN_GUE => IPPROTO_UDP,
        TUN_GRE => IPPROTO_GRE,
        _ => IPPROTO_IPIP,
    }
}

/// `INET_ECN_encapsulate(tos, tos)`: the outer TOS byte; a CE inner becomes ECT(0).
pub const fn ecn_encapsulate(tos: u8) -> u8 {
    if tos & 3 == 3 { (tos & !3) | 2 } else { tos }
}

/// IPVS's GUE source port: `udp_flow_src_port` maps a 32-bit flow hash into the local port
/// range (Linux default 32768..60999). Network byte order.
pub const fn gue_source_port(hash: u32) -> u16 {
    let (min, max) = (32768u64, 60999u64);
    let mut h = hash;
    h ^= h << 16;
    ((((h as u64) * (max - min)) >> 32) + min) as u16
}

/// A 32-bit hash of a flow for the GUE source port (murmur3's finaliser over the tuple, in
/// memory order); any well-mixed hash does, IPVS uses the skb's flow hash.
#[inline(always)]
pub const fn flow_hash(src: u32, dst: u32, ports: u32, proto: u8) -> u32 {
    let mut h = src ^ dst.rotate_left(7) ^ ports.rotate_left(13) ^ proto as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Fields of an outer IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterIpv4 {
    /// Source (memory order).
    pub src: u32,
    /// Destination (memory order).
    pub dst: u32,
    /// Total length, host order.
    pub tot_len: u16,
    /// TOS byte.
    pub tos: u8,
    /// TTL.
    pub ttl: u8,
    /// Protocol.
    pub proto: u8,
    /// Whether DF is set.
    pub df: bool,
}

impl OuterIpv4 {
    /// The 20 header bytes with their checksum (identification 0).
    #[inline(always)]
    pub fn bytes(&self) -> [u8; 20] {
        let len = self.tot_len.to_be_bytes();
        let s = self.src.to_ne_bytes();
        let d = self.dst.to_ne_bytes();
        let mut h = [
            0x45,
            self.tos,
            len[0],
            len[1],
            0,
            0,
            if self.df { 0x40 } else { 0 },
            0,
            self.ttl,
            self.proto,
            0,
            0,
            s[0],
            s[1],
            s[2],
            s[3],
            d[0],
            d[1],
            d[2],
            d[3],
        ];
        let mut sum = 0u64;
        let mut i = 0;
        while i < 20 {
            sum += u16::from_ne_bytes([h[i], h[i + 1]]) as u64;
            i += 2;
        }
        let c = (!csum::fold(sum)).to_ne_bytes();
        h[10] = c[0];
        h[11] = c[1];
        h
    }
}

/// One's-complement sum of an IPv4 pseudo-header (memory order): addresses, protocol and
/// the L4 length (host order).
#[inline(always)]
pub const fn pseudo_sum(src: u32, dst: u32, proto: u8, l4_len: u16) -> u64 {
    let p = u16::from_ne_bytes([0, proto]) as u64;
    let l = u16::from_ne_bytes(l4_len.to_be_bytes()) as u64;
    (src & 0xFFFF) as u64 + (src >> 16) as u64 + (dst & 0xFFFF) as u64 + (dst >> 16) as u64 + p + l
}

/// The one's-complement sum of an inner IPv4 TCP/UDP packet with valid checksums: its IPv4
/// header contributes zero and its segment the complement of its pseudo-header.
#[inline(always)]
pub const fn inner_sum(inner_pseudo: u64) -> u64 {
    (!csum::fold(inner_pseudo)) as u64
}

/// The GUE UDP header (8 bytes) and GUE header (4 bytes) for an inner IPv4 packet of
/// `inner_len` bytes; the UDP checksum is filled when `with_csum` (from `inner` =
/// [`inner_sum`]), otherwise 0 (IPVS without `--tun-csum`).
#[inline(always)]
pub fn gue_headers(
    outer_src: u32,
    outer_dst: u32,
    sport: u16,
    dport_be: u16,
    inner_len: u16,
    with_csum: bool,
    inner: u64,
) -> [u8; 12] {
    let ulen = (inner_len + 12).to_be_bytes();
    let sp = sport.to_be_bytes();
    let dp = dport_be.to_ne_bytes();
    let mut h = [
        sp[0],
        sp[1],
        dp[0],
        dp[1],
        ulen[0],
        ulen[1],
        0,
        0,
        // GUE version 0, hlen 0, proto IPIP, flags 0.
        0,
        IPPROTO_IPIP,
        0,
        0,
    ];
    if with_csum {
        let mut sum = pseudo_sum(outer_src, outer_dst, IPPROTO_UDP, inner_len + 12) + inner;
        let mut i = 0;
        while i < 12 {
            sum += u16::from_ne_bytes([h[i], h[i + 1]]) as u64;
            i += 2;
        }
        let c = csum::udp_fixup(1, !csum::fold(sum)).to_ne_bytes();
        h[6] = c[0];
        h[7] = c[1];
    }
    h
}

/// The GRE header for an inner IPv4 packet: 4 bytes, or 8 with the checksum (over the GRE
/// header and payload, RFC 2784) when `with_csum`. Returns the bytes and their length.
#[inline(always)]
pub fn gre_header(with_csum: bool, inner: u64) -> ([u8; 8], usize) {
    if !with_csum {
        return ([0, 0, 0x08, 0x00, 0, 0, 0, 0], 4);
    }
    let mut h = [0x80, 0, 0x08, 0x00, 0, 0, 0, 0];
    let sum =
        inner + u16::from_ne_bytes([h[0], h[1]]) as u64 + u16::from_ne_bytes([h[2], h[3]]) as u64;
    let c = (!csum::fold(sum)).to_ne_bytes();
    h[4] = c[0];
    h[5] = c[1];
    (h, 8)
}

/// Length of a GRE header from its first two bytes (flags), or None for a GRE header rvs
/// cannot decapsulate (version ≠ 0, routing present).
pub const fn gre_header_len(flags_be: [u8; 2]) -> Option<usize> {
    let f = u16::from_be_bytes(flags_be);
    if f & GRE_VERSION_ROUTING != 0 {
        return None;
    }
    let mut len = 4;
    if f & GRE_CSUM != 0 {
        len += 4;
    }
    if f & GRE_KEY != 0 {
        len += 4;
    }
    if f & GRE_SEQ != 0 {
        len += 4;
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csum::checksum;

    fn ip(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    /// An inner IPv4/UDP packet 198.19.1.1:5353 → 198.18.0.10:80 "hello", checksums valid.
    const INNER: [u8; 33] = [
        0x45, 0x00, 0x00, 0x21, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 198, 19, 1, 1, 198,
        18, 0, 10, 0x14, 0xe9, 0x00, 0x50, 0x00, 0x0d, 0x00, 0x00, b'h', b'e', b'l', b'l', b'o',
    ];

    fn inner_packet() -> Vec<u8> {
        let mut p = INNER.to_vec();
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_ne_bytes());
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17, 0, 13]);
        pseudo.extend_from_slice(&p[20..]);
        let c = checksum(&pseudo);
        p[26..28].copy_from_slice(&c.to_ne_bytes());
        p
    }

    #[test]
    fn outer_header_bytes_and_checksum() {
        let h = OuterIpv4 {
            src: ip([198, 18, 1, 1]),
            dst: ip([198, 18, 2, 11]),
            tot_len: 53,
            tos: ecn_encapsulate(0x03),
            ttl: 64,
            proto: IPPROTO_IPIP,
            df: true,
        }
        .bytes();
        assert_eq!(&h[..10], &[0x45, 0x02, 0, 53, 0, 0, 0x40, 0, 64, 4]);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn gue_checksum_by_lco_equals_full_sum() {
        let inner = inner_packet();
        let (s, d) = (ip([198, 18, 1, 1]), ip([198, 18, 2, 11]));
        let ip_pseudo = pseudo_sum(ip([198, 19, 1, 1]), ip([198, 18, 0, 10]), 17, 13);
        let h = gue_headers(s, d, 40000, 6080u16.to_be(), 33, true, inner_sum(ip_pseudo));
        let mut seg = h.to_vec();
        seg.extend_from_slice(&inner);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&s.to_ne_bytes());
        pseudo.extend_from_slice(&d.to_ne_bytes());
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&seg);
        assert_eq!(checksum(&pseudo), 0, "UDP checksum verifies");
        assert_eq!(&h[8..12], &[0, 4, 0, 0]);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 6080);
        assert_eq!(u16::from_be_bytes([h[4], h[5]]), 45);
        let h = gue_headers(s, d, 40000, 6080u16.to_be(), 33, false, 0);
        assert_eq!(&h[6..8], &[0, 0]);
    }

    #[test]
    fn gre_checksum_by_lco_equals_full_sum() {
        let inner = inner_packet();
        let ip_pseudo = pseudo_sum(ip([198, 19, 1, 1]), ip([198, 18, 0, 10]), 17, 13);
        let (h, n) = gre_header(true, inner_sum(ip_pseudo));
        assert_eq!(n, 8);
        let mut all = h[..n].to_vec();
        all.extend_from_slice(&inner);
        assert_eq!(checksum(&all), 0);
        assert_eq!(gre_header(false, 0).1, 4);
        assert_eq!(gre_header_len([0x80, 0]), Some(8));
        assert_eq!(gre_header_len([0x30, 0]), Some(12));
        assert_eq!(gre_header_len([0x00, 0x01]), None);
    }

    #[test]
    fn overheads_and_ports() {
        assert_eq!(overhead(TUN_IPIP, 0), 20);
        assert_eq!(overhead(TUN_GUE, TUN_F_REMCSUM), 32);
        assert_eq!(overhead(TUN_GRE, TUN_F_CSUM), 28);
        assert_eq!(overhead(TUN_GRE, 0), 24);
        assert_eq!(gue_source_port(0), 32768);
        let p = gue_source_port(u32::MAX);
        assert!((32768..=60999).contains(&p));
        assert_eq!(ecn_encapsulate(0xb8), 0xb8);
    }
}
