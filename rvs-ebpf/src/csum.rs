//! Checksum updates in the frame (RFC 1624, arithmetic in `rvs_common::csum`): IPv4 header
//! and TCP/UDP checksums after an address or port changed.

use aya_ebpf::programs::XdpContext;
use rvs_common::{IPPROTO_TCP, csum};

use crate::access::{read_ne16, write_ne16};

/// Offset of the checksum inside the L4 header.
#[inline(always)]
pub fn l4_csum_offset(proto: u8) -> usize {
    if proto == IPPROTO_TCP { 16 } else { 6 }
}

/// Updates the IPv4 header checksum at `l3 + 10` for a 32-bit field change.
#[inline(always)]
pub fn ip_replace32(ctx: &XdpContext, l3: usize, old: u32, new: u32) -> Option<()> {
    let c = read_ne16(ctx, l3 + 10)?;
    write_ne16(ctx, l3 + 10, csum::replace32(c, old, new))
}

/// Updates the TCP/UDP checksum at `at` for an address change `addr` and a port change
/// `port` (pass equal old/new to skip one). A UDP checksum of 0 ("none") stays 0.
#[inline(always)]
pub fn l4_replace(
    ctx: &XdpContext,
    at: usize,
    is_tcp: bool,
    addr: (u32, u32),
    port: (u16, u16),
) -> Option<()> {
    let before = read_ne16(ctx, at)?;
    if !is_tcp && before == 0 {
        return Some(());
    }
    let c = csum::replace32(before, addr.0, addr.1);
    let c = csum::replace16(c, port.0, port.1);
    let c = if is_tcp {
        c
    } else {
        csum::udp_fixup(before, c)
    };
    write_ne16(ctx, at, c)
}
