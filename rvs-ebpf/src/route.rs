//! Routing through the kernel's FIB (bpf_fib_lookup): egress interface, next-hop and source
//! MACs, the preferred source address (tunnels) and the MTU check.

use core::mem::size_of;

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams, helpers::generated::bpf_fib_lookup, programs::XdpContext,
};

const AF_INET: u8 = 2;
const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;
const BPF_FIB_LKUP_RET_FRAG_NEEDED: i64 = 8;
/// Ask the FIB for the source address it would choose (kernel ≥ 6.7).
const BPF_FIB_LOOKUP_SRC: u32 = 1 << 4;

/// A route: where to send and with which MACs.
#[derive(Clone, Copy)]
pub struct Route {
    /// Egress interface.
    pub ifindex: u32,
    /// Next-hop MAC.
    pub dmac: [u8; 6],
    /// Egress interface MAC.
    pub smac: [u8; 6],
    /// The kernel's preferred source address on that route (only with `want_src`).
    pub src: u32,
}

/// Why no route came back.
pub enum NoRoute {
    /// Unreachable, no neighbour, forwarding disabled, …
    Unreachable,
    /// The packet of `tot_len` exceeds the egress MTU (the MTU).
    FragNeeded(u16),
}

/// What a lookup is for.
pub struct Query {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// L4 protocol.
    pub proto: u8,
    /// IPv4 total length of the packet that will leave (checked against the MTU).
    pub tot_len: u16,
    /// Also return the preferred source address.
    pub want_src: bool,
}

/// Asks the FIB for the route of `q`, as if the packet was received on the ingress interface.
#[inline(always)]
pub fn lookup(ctx: &XdpContext, q: &Query) -> Result<Route, NoRoute> {
    // Zeroed with eight u64 stores (core::mem::zeroed becomes a byte-by-byte memset
    // subprogram on BPF). SAFETY: all-zero is a valid bpf_fib_lookup (plain integers and
    // unions of them), and it fits in 64 bytes.
    const _: () = assert!(size_of::<FibParams>() <= size_of::<[u64; 8]>());
    let mut raw = [0u64; 8];
    let params = unsafe { &mut *(raw.as_mut_ptr() as *mut FibParams) };
    params.family = AF_INET;
    params.l4_protocol = q.proto;
    params.sport = q.sport;
    params.dport = q.dport;
    params.__bindgen_anon_1.tot_len = q.tot_len;
    params.ifindex = ctx.ingress_ifindex() as u32;
    params.__bindgen_anon_3.ipv4_src = q.src;
    params.__bindgen_anon_4.ipv4_dst = q.dst;
    let flags = if q.want_src { BPF_FIB_LOOKUP_SRC } else { 0 };
    // SAFETY: params is a valid, initialised struct of the size passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            params,
            size_of::<FibParams>() as i32,
            flags,
        )
    };
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        // SAFETY: the helper wrote mtu_result into the union.
        return Err(NoRoute::FragNeeded(unsafe {
            params.__bindgen_anon_1.mtu_result
        }));
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS {
        return Err(NoRoute::Unreachable);
    }
    Ok(Route {
        ifindex: params.ifindex,
        dmac: params.dmac,
        smac: params.smac,
        // SAFETY: plain integer union member.
        src: unsafe { params.__bindgen_anon_3.ipv4_src },
    })
}
