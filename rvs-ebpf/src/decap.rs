//! The real-server side of TUN: strips IPIP, GUE or GRE addressed to this host and hands the
//! inner IPv4 packet to the kernel (XDP_PASS), for kernels without the ipip/fou/gre modules.
//! Accepted: IPIP; GUE version 0 without options carrying IPIP (what IPVS sends) and GUE
//! version 1 (direct IPv4), on a configured UDP port; GRE version 0 without routing, with
//! any of checksum/key/sequence, protocol IPv4. Outer checksums are not verified (the inner
//! packet's own are, by the kernel). Anything else passes untouched.

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_xdp_adjust_head, programs::XdpContext,
};
use rvs_common::{
    DecapCount,
    tunnel::{IPPROTO_GRE, IPPROTO_IPIP, IPPROTO_UDP, gre_header_len},
};

use crate::{
    access::{ptr_at, ptr_at_fresh},
    maps::{DECAP_ADDRS, DECAP_PORTS, DECAP_STATS},
    parse::{ETH_HLEN, parse_ipv4, parse_l2},
};

const ETH_P_IP: u16 = 0x0800;

#[inline(always)]
fn count(c: DecapCount) {
    if let Some(p) = DECAP_STATS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *p += 1 };
    }
}

/// Decapsulates one frame; returns the XDP action (always XDP_PASS).
#[inline(always)]
pub fn decap(ctx: &XdpContext) -> u32 {
    match strip_len(ctx) {
        Some(Some((l3, strip, kind))) => {
            if move_l2(ctx, l3, strip).is_some() {
                count(kind);
            } else {
                count(DecapCount::Passed);
            }
        }
        Some(None) => count(DecapCount::Passed),
        None => {}
    }
    xdp_action::XDP_PASS
}

/// None: not a tunnel packet for us. Some(None): one, but not decapsulated. Otherwise the
/// L2 header length, the bytes to remove after it and the kind.
#[inline(always)]
fn strip_len(ctx: &XdpContext) -> Option<Option<(usize, usize, DecapCount)>> {
    let l3 = parse_l2(ctx).ok()?;
    let ip = parse_ipv4(ctx, l3).ok()?;
    let tunnel = matches!(ip.proto, IPPROTO_IPIP | IPPROTO_GRE | IPPROTO_UDP);
    // SAFETY: read while the program runs (RCU-protected).
    if !tunnel || unsafe { DECAP_ADDRS.get(ip.daddr) }.is_none() {
        return None;
    }
    let l4 = l3 + ip.ihl;
    let (strip, kind) = match ip.proto {
        IPPROTO_IPIP => (ip.ihl, DecapCount::Ipip),
        IPPROTO_GRE => {
            let h = ptr_at::<[u8; 4]>(ctx, l4)?;
            // SAFETY: bounds checked by ptr_at.
            let h = unsafe { *h };
            if u16::from_be_bytes([h[2], h[3]]) != ETH_P_IP {
                return Some(None);
            }
            match gre_header_len([h[0], h[1]]) {
                Some(n) => (ip.ihl + n, DecapCount::Gre),
                None => return Some(None),
            }
        }
        _ => {
            let u = ptr_at::<[u8; 12]>(ctx, l4)?;
            // SAFETY: bounds checked by ptr_at.
            let u = unsafe { *u };
            let dport = u16::from_ne_bytes([u[2], u[3]]);
            // SAFETY: read while the program runs (RCU-protected).
            unsafe { DECAP_PORTS.get(dport) }?;
            let b0 = u[8];
            match b0 >> 6 {
                // Version 0: no control messages, no options (IPVS's remote checksum
                // offload option is the only one it sends; rvs leaves such packets to the
                // kernel), inner protocol IPIP.
                0 if b0 & 0x3F == 0 && u[9] == IPPROTO_IPIP => (ip.ihl + 12, DecapCount::Gue),
                // Version 1: the inner IPv4 header follows the UDP header directly.
                1 if b0 >> 4 == 4 => (ip.ihl + 8, DecapCount::Gue),
                _ => return Some(None),
            }
        }
    };
    // The inner packet must be IPv4, with at least its minimum header present.
    let inner = ptr_at::<[u8; 20]>(ctx, l3 + strip)?;
    // SAFETY: bounds checked by ptr_at.
    if unsafe { (*inner)[0] } >> 4 != 4 {
        return Some(None);
    }
    Some(Some((l3, strip, kind)))
}

/// Moves the L2 header (with any VLAN tag) forward by `strip` bytes and drops what is in
/// front of it.
#[inline(always)]
fn move_l2(ctx: &XdpContext, l3: usize, strip: usize) -> Option<()> {
    if strip > 120 {
        return None;
    }
    if l3 != ETH_HLEN {
        // SAFETY: bounds checked by ptr_at_fresh (source and destination).
        let l2 = unsafe { *ptr_at_fresh::<[u8; 18]>(ctx, 0)? };
        unsafe { *ptr_at_fresh::<[u8; 18]>(ctx, strip)? = l2 };
    } else {
        // SAFETY: as above.
        let l2 = unsafe { *ptr_at_fresh::<[u8; ETH_HLEN]>(ctx, 0)? };
        unsafe { *ptr_at_fresh::<[u8; ETH_HLEN]>(ctx, strip)? = l2 };
    }
    // SAFETY: plain helper call.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) } != 0 {
        return None;
    }
    Some(())
}
