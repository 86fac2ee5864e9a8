//! rvs's XDP programs: the load balancer's fast path, the real-server decapsulation and
//! two helpers. Laid out as Katran's `balancer_kern.c` and its headers: this file holds the
//! entry points only; the modules hold one role each.
//!
//! The balancer is two programs, so that each passes the verifier on its own (as one it sat
//! at the 1M-instruction limit). `rvs_xdp`, the attached entry point, parses Ethernet (+ one
//! 802.1Q tag), IPv4 (with options), TCP/UDP and ICMP errors, applies the address filter,
//! follows the connection table (both directions of NAT) and forwards known flows. A TCP/UDP
//! packet with no usable entry (new, expired, reused or of a removed real server) goes on by
//! `bpf_tail_call` through `RVS_PROGS` to `rvs_xdp_new`, with what the lookup found in the
//! per-CPU `RVS_SCRATCH` slot; it parses the frame again, finds the service, applies
//! persistence, schedules, inserts the connection and forwards the first packet. Both
//! forward by direct routing, NAT or tunnelling, with XDP_TX or XDP_REDIRECT. Anything that
//! is not for a service goes to the kernel untouched. Every return is counted by reason,
//! once, by the program that returns (a failed tail call as `pass_tail_call_failed`).
#![no_std]
#![no_main]
// The BPF target has no `Atomic*::fetch_add`; the intrinsic lowers to BPF_ATOMIC|BPF_FETCH.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod access;
mod balance;
mod classify;
mod commit;
mod csum;
mod decap;
mod events;
mod flow;
mod fwd;
mod locality;
mod maps;
mod midflow;
mod parse;
mod route;
mod schedule;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use rvs_common::{FlowKey, ServiceKey, TaggedFlowKey};

use crate::{access::ptr_at, maps::SERVICES, parse::Parsed};

/// The load balancer.
#[xdp]
pub fn rvs_xdp(ctx: XdpContext) -> u32 {
    let (verdict, action) = balance::run(&ctx);
    stats::count_verdict(verdict);
    action
}

/// The balancer's new-flow half, reached only by tail call from `rvs_xdp`.
#[xdp]
pub fn rvs_xdp_new(ctx: XdpContext) -> u32 {
    let (verdict, action) = balance::run_new(&ctx);
    stats::count_verdict(verdict);
    action
}

/// The locality schedulers (lblc, lblcr), reached by tail call from `rvs_xdp_new` and
/// going back to it by tail call (see `locality`).
#[xdp]
pub fn rvs_xdp_lbl(ctx: XdpContext) -> u32 {
    locality::run(&ctx)
}

/// Passes every frame; attached to veth peers so XDP_TX/XDP_REDIRECT frames reach them.
#[xdp]
pub fn rvs_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Real-server side: strips IPIP/GUE/GRE addressed to this host.
#[xdp]
pub fn rvs_decap(ctx: XdpContext) -> u32 {
    decap::decap(&ctx)
}

/// Benchmark reference: parse Ethernet/IPv4/L4 ports, one hash lookup, swap MACs, XDP_TX.
#[xdp]
pub fn rvs_xdp_minimal_tx(ctx: XdpContext) -> u32 {
    let Ok(Parsed::Flow(pkt)) = parse::parse_frame(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = ServiceKey {
        vip: pkt.daddr,
        port: pkt.dport,
        proto: pkt.proto,
        pad: 0,
    };
    // SAFETY: read while the program runs (RCU-protected).
    if unsafe { SERVICES.get(key) }.is_none() {
        return xdp_action::XDP_PASS;
    }
    let Some(eth) = ptr_at::<[u8; 12]>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        let macs = &mut *eth;
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&macs[..6]);
        macs.copy_within(6..12, 0);
        macs[6..12].copy_from_slice(&dst);
    }
    xdp_action::XDP_TX
}

/// Benchmark reference, the connection-table floor: parse, one lookup of the 5-tuple in the
/// balancer's own connection table (same size and fill as rvs sees), MACs from the entry,
/// XDP_TX; XDP_PASS when the tuple has no entry.
#[xdp]
pub fn rvs_xdp_ref_conn(ctx: XdpContext) -> u32 {
    let Ok(Parsed::Flow(pkt)) = parse::parse_frame(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = FlowKey {
        src: pkt.saddr,
        dst: pkt.daddr,
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto as u32,
    };
    match maps::CONNS.get_ptr(key) {
        // SAFETY: a valid map value, read while the program runs (RCU-protected).
        Some(c) => unsafe { fwd::dr::l2_out(&ctx, (*c).ifindex, &(*c).dmac, &(*c).smac) },
        None => xdp_action::XDP_PASS,
    }
}

/// Benchmark reference for the key layout: the connection-table floor with a 16-byte key.
#[xdp]
pub fn rvs_xdp_ref_conn_v4(ctx: XdpContext) -> u32 {
    let Ok(Parsed::Flow(pkt)) = parse::parse_frame(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = FlowKey {
        src: pkt.saddr,
        dst: pkt.daddr,
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto as u32,
    };
    // SAFETY: read while the program runs (RCU-protected).
    match unsafe { maps::REF_V4.get(key) } {
        Some(c) => fwd::dr::l2_out(&ctx, c.ifindex, &c.dmac, &c.smac),
        None => xdp_action::XDP_PASS,
    }
}

/// Benchmark reference for the key layout: the same with a 40-byte family-tagged key.
#[xdp]
pub fn rvs_xdp_ref_conn_tagged(ctx: XdpContext) -> u32 {
    let Ok(Parsed::Flow(pkt)) = parse::parse_frame(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = TaggedFlowKey {
        family: 2,
        proto: pkt.proto,
        pad: 0,
        sport: pkt.sport,
        dport: pkt.dport,
        src: [pkt.saddr, 0, 0, 0],
        dst: [pkt.daddr, 0, 0, 0],
    };
    // SAFETY: read while the program runs (RCU-protected).
    match unsafe { maps::REF_TAGGED.get(key) } {
        Some(c) => fwd::dr::l2_out(&ctx, c.ifindex, &c.dmac, &c.smac),
        None => xdp_action::XDP_PASS,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
