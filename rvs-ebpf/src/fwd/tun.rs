//! Tunnelling (IPVS `-i`): the frame grows in front of the IPv4 header
//! (bpf_xdp_adjust_head) by an outer IPv4 header to the real server, plus a UDP+GUE or GRE
//! header as `--tun-type` asks. Header arithmetic lives in `rvs_common::tunnel`.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use rvs_common::{
    IPPROTO_UDP, RealEntry,
    tunnel::{
        OuterIpv4, TUN_F_CSUM, TUN_F_REMCSUM, TUN_GRE, TUN_GUE, ecn_encapsulate, flow_hash,
        gre_header, gue_headers, gue_source_port, inner_sum, outer_proto, overhead, pseudo_sum,
    },
};

use crate::{
    access::ptr_at,
    parse::{ETH_HLEN, IPPROTO_ICMP},
};

/// Whether `real`'s encapsulation cannot carry `pkt`: a GRE checksum over a UDP datagram
/// that has no checksum of its own would need a sum over the whole payload, which rvs does
/// not compute in XDP (such packets are counted as `drop_unsupported`).
#[inline(always)]
pub fn encap_refused(pkt: &Packet, real: &RealEntry) -> bool {
    real.tun_type == TUN_GRE
        && real.tun_flags & TUN_F_CSUM != 0
        && pkt.proto == IPPROTO_UDP
        && pkt.udp_csum_zero
}

/// Encapsulates the frame's IPv4 packet towards `real`, from `src`.
#[inline(always)]
pub fn encap(ctx: &XdpContext, pkt: &Packet, real: &RealEntry, src: u32) -> Option<()> {
    let ov = overhead(real.tun_type, real.tun_flags);
    let with_csum = real.tun_flags & (TUN_F_CSUM | TUN_F_REMCSUM) != 0;
    let ihl = pkt.l4 - pkt.l3;
    let l4_len = pkt.tot_len.checked_sub(ihl as u16)?;
    // The sum of the inner packet comes from its own checksums (local checksum offload).
    // A UDP datagram without checksum has none to derive it from: GUE then sends its UDP
    // checksum as 0 (allowed over IPv4), GRE refuses (see `encap_refused`).
    let no_inner_csum = pkt.udp_csum_zero && pkt.proto == IPPROTO_UDP;
    let with_csum = with_csum && !no_inner_csum;
    // An ICMP message has no pseudo-header and sums to zero, as its IPv4 header does.
    let inner = if with_csum && pkt.proto != IPPROTO_ICMP {
        inner_sum(pseudo_sum(pkt.saddr, pkt.daddr, pkt.proto, l4_len))
    } else {
        0
    };
    let l2_vlan = pkt.l3 != ETH_HLEN;
    let l2: [u8; 18] = if l2_vlan {
        // SAFETY: bounds checked by ptr_at.
        unsafe { *ptr_at::<[u8; 18]>(ctx, 0)? }
    } else {
        let mut b = [0u8; 18];
        // SAFETY: bounds checked by ptr_at.
        b[..14].copy_from_slice(unsafe { &*ptr_at::<[u8; 14]>(ctx, 0)? });
        b
    };
    // SAFETY: plain helper call; all packet pointers are derived again afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(ov as i32)) } != 0 {
        return None;
    }
    if l2_vlan {
        // SAFETY: bounds checked by ptr_at.
        unsafe { *ptr_at::<[u8; 18]>(ctx, 0)? = l2 };
    } else {
        // SAFETY: bounds checked by ptr_at.
        unsafe { (*ptr_at::<[u8; 14]>(ctx, 0)?).copy_from_slice(&l2[..14]) };
    }
    let l3 = pkt.l3;
    let outer = OuterIpv4 {
        src,
        dst: real.addr,
        tot_len: pkt.tot_len.checked_add(ov)?,
        tos: ecn_encapsulate(pkt.tos),
        ttl: pkt.ttl,
        proto: outer_proto(real.tun_type),
        df: pkt.df,
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe { *ptr_at::<[u8; 20]>(ctx, l3)? = outer.bytes() };
    if real.tun_type == TUN_GUE {
        let ports = (pkt.sport as u32) << 16 | pkt.dport as u32;
        let sport = gue_source_port(flow_hash(pkt.saddr, pkt.daddr, ports, pkt.proto));
        let h = gue_headers(
            src,
            real.addr,
            sport,
            real.tun_port,
            pkt.tot_len,
            with_csum,
            inner,
        );
        // SAFETY: bounds checked by ptr_at.
        unsafe { *ptr_at::<[u8; 12]>(ctx, l3 + 20)? = h };
    } else if real.tun_type == TUN_GRE {
        let (h, n) = gre_header(with_csum && real.tun_flags & TUN_F_CSUM != 0, inner);
        if n == 8 {
            // SAFETY: bounds checked by ptr_at.
            unsafe { *ptr_at::<[u8; 8]>(ctx, l3 + 20)? = h };
        } else {
            // SAFETY: bounds checked by ptr_at.
            unsafe { (*ptr_at::<[u8; 4]>(ctx, l3 + 20)?).copy_from_slice(&h[..4]) };
        }
    }
    Some(())
}

use crate::parse::Packet;
