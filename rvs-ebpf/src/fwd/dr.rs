//! The last step of every forward: the MAC header towards the next hop and XDP_TX (same
//! interface) or XDP_REDIRECT. Direct routing is only this.

use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_redirect, programs::XdpContext};

use crate::access::ptr_at;

/// Rewrites the MAC header (towards `dmac`, from `smac`) and picks TX or REDIRECT.
#[inline(always)]
pub fn l2_out(ctx: &XdpContext, ifindex: u32, dmac: &[u8; 6], smac: &[u8; 6]) -> u32 {
    let Some(eth) = ptr_at::<[u8; 12]>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at.
    let eth = unsafe { &mut *eth };
    eth[..6].copy_from_slice(dmac);
    eth[6..].copy_from_slice(smac);
    if ifindex == ctx.ingress_ifindex() as u32 {
        xdp_action::XDP_TX
    } else {
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(ifindex, 0) as u32 }
    }
}
