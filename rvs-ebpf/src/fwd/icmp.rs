//! The ICMP fragmentation-needed answer (type 3 code 4) for a DF packet that would exceed the
//! egress MTU, as IPVS sends it with `icmp_send`: from the address the client talked to (the
//! VIP, local on an IPVS director), TOS with precedence "internetwork control", TTL 64, the
//! next-hop MTU field set to the MTU less any encapsulation, identification 0. rvs quotes the IPv4 header and
//! the first 8 bytes of TCP/UDP (RFC 792's minimum, what PMTU discovery reads); Linux quotes
//! up to 576 bytes in total.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use rvs_common::{icmp::frag_needed_header, tunnel::OuterIpv4};

use crate::{
    access::ptr_at,
    parse::{ETH_HLEN, IPPROTO_ICMP, Packet},
};

const IPTOS_PREC_INTERNETCONTROL: u8 = 0xC0;
const IPTOS_TOS_MASK: u8 = 0x1E;

/// Turns the frame into the ICMP answer and sends it back where it came from.
#[inline(always)]
pub fn frag_needed(ctx: &XdpContext, pkt: &Packet, mtu: u16) -> Option<u32> {
    let ihl = pkt.l4 - pkt.l3;
    let quote = ihl + 8;
    let keep = pkt.l3 + quote;
    let len = ctx.data_end() - ctx.data();
    if len < keep {
        return None;
    }
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
    let shrink = (len - keep) as i32;
    // SAFETY: plain helper calls; packet pointers are derived again afterwards.
    if shrink > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -shrink) } != 0 {
        return None;
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -28) } != 0 {
        return None;
    }
    // Back to the sender: the MACs swap, any VLAN tag and the ethertype stay.
    let mut out = l2;
    out[..6].copy_from_slice(&l2[6..12]);
    out[6..12].copy_from_slice(&l2[..6]);
    if l2_vlan {
        // SAFETY: bounds checked by ptr_at.
        unsafe { *ptr_at::<[u8; 18]>(ctx, 0)? = out };
    } else {
        // SAFETY: bounds checked by ptr_at.
        unsafe { (*ptr_at::<[u8; 14]>(ctx, 0)?).copy_from_slice(&out[..14]) };
    }
    let l3 = pkt.l3;
    // Every pointer is taken before any write, widest check last: LLVM drops a bounds check
    // implied by an earlier one, and the verifier only knows the pointer it was done on.
    let ip_p = ptr_at::<[u8; 20]>(ctx, l3)?;
    let icmp_p = ptr_at::<[u8; 8]>(ctx, l3 + 20)?;
    let l4_p = ptr_at::<[u8; 8]>(ctx, l3 + 28 + ihl)?;
    let ip = OuterIpv4 {
        src: pkt.daddr,
        dst: pkt.saddr,
        tot_len: (28 + quote) as u16,
        tos: (pkt.tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL,
        ttl: 64,
        proto: IPPROTO_ICMP,
        df: false,
    };
    // The quoted IPv4 header sums to zero (its checksum is valid: the kernel would have
    // dropped the packet otherwise), so only the 8 quoted L4 bytes count.
    // SAFETY: bounds checked by ptr_at.
    let q = unsafe { *l4_p };
    let h = frag_needed_header(mtu, q);
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        *ip_p = ip.bytes();
        *icmp_p = h;
    }
    Some(xdp_action::XDP_TX)
}
