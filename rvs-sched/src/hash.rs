//! IPVS's hash schedulers over 256 buckets: source hashing `sh` (ip_vs_sh.c, with its
//! `sh-port` and `sh-fallback` flags) and destination hashing `dh` (ip_vs_dh.c).
//!
//! Both tables are filled from the server list in IPVS's order (newest first), wrapping around
//! it: `sh` gives each server `weight` buckets in a row (a weight-0 server still takes one),
//! `dh` one bucket each. The tables only change when servers are added, edited or removed; a
//! lookup then reads one bucket and checks that server is usable.

use std::net::Ipv4Addr;

use crate::load::Load;

/// Buckets of the sh table (CONFIG_IP_VS_SH_TAB_BITS=8, Debian's and the default).
pub const SH_TAB_BITS: u32 = 8;
/// Buckets of the sh and dh tables.
pub const HASH_TAB_SIZE: usize = 1 << SH_TAB_BITS;

/// The kernel's `hash_32(val, bits)`: multiply by GOLDEN_RATIO_32 and keep the top bits.
pub fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// ip_vs_sh.c `ip_vs_sh_hashkey`: `(offset + hash_32(port + addr, 8)) & 255`, port and
/// address in host order (the port is 0 without `sh-port`).
pub fn sh_hashkey(addr: Ipv4Addr, port: u16, offset: u32) -> usize {
    let h = hash_32(u32::from(port).wrapping_add(u32::from(addr)), SH_TAB_BITS);
    (offset.wrapping_add(h) as usize) & (HASH_TAB_SIZE - 1)
}

/// IPVS's sh table for servers with these weights (list order): each bucket holds an index
/// into the list; empty when there is no server.
pub fn sh_table(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let mut table = Vec::with_capacity(HASH_TAB_SIZE);
    let (mut d, mut count) = (0usize, 0i64);
    for _ in 0..HASH_TAB_SIZE {
        table.push(d as u32);
        // ip_vs_sh_reassign: `if (++d_count >= weight)` move on; a weight-0 server takes one.
        count += 1;
        if count >= i64::from(weights[d] as i32) {
            d = (d + 1) % weights.len();
            count = 0;
        }
    }
    table
}

/// sh's `is_unavailable`: weight <= 0 or overloaded.
fn sh_unavailable(l: &Load) -> bool {
    l.w() <= 0 || l.overloaded
}

/// IPVS `sh` for a new connection from `src`:`sport`: the index of the chosen server in
/// `loads`, or None (IPVS drops the packet). `table` is [`sh_table`] of the same list.
/// `with_port` is the `sh-port` flag (the source port joins the hash), `fallback` the
/// `sh-fallback` flag: when the bucket's server is unusable, walk the buckets `offset + ihash`
/// rehashed, as ip_vs_sh_get_fallback does, to the first usable one.
pub fn sh_pick(
    table: &[u32],
    loads: &[Load],
    src: Ipv4Addr,
    sport: u16,
    with_port: bool,
    fallback: bool,
) -> Option<usize> {
    let port = if with_port { sport } else { 0 };
    let at = |bucket: usize| -> Option<usize> {
        let i = *table.get(bucket)? as usize;
        loads.get(i).map(|_| i)
    };
    let ihash = sh_hashkey(src, port, 0);
    let first = at(ihash)?;
    if !sh_unavailable(&loads[first]) {
        return Some(first);
    }
    if !fallback {
        return None;
    }
    (0..HASH_TAB_SIZE as u32)
        .map(|offset| {
            let roffset = (offset + ihash as u32) % HASH_TAB_SIZE as u32;
            at(sh_hashkey(src, port, roffset))
        })
        .find_map(|i| i.filter(|&i| !sh_unavailable(&loads[i])))
}

/// ip_vs_dh.c `ip_vs_dh_hashkey`: `hash_32(addr, 8)`, address in host order. (Older kernels
/// multiplied by 2654435761 and kept the low byte; Linux 6.1 hashes as sh does, which the
/// golden test confirms.)
pub fn dh_hashkey(addr: Ipv4Addr) -> usize {
    hash_32(u32::from(addr), SH_TAB_BITS) as usize
}

/// IPVS's dh table for `n` servers: bucket `i` holds server `i % n`; empty for none.
pub fn dh_table(n: usize) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    (0..HASH_TAB_SIZE).map(|i| (i % n) as u32).collect()
}

/// IPVS `dh` for a new connection to `dst`: the bucket's server if it has a weight and is not
/// overloaded, else None (dh has no fallback).
pub fn dh_pick(table: &[u32], loads: &[Load], dst: Ipv4Addr) -> Option<usize> {
    let i = *table.get(dh_hashkey(dst))? as usize;
    let l = loads.get(i)?;
    (l.w() > 0 && !l.overloaded).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_32_matches_the_kernel() {
        // hash_32(1, 8) = 0x61C88647 >> 24.
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
    }

    #[test]
    fn sh_table_gives_weight_buckets_in_a_row() {
        let t = sh_table(&[2, 0, 3]);
        assert_eq!(&t[..8], &[0, 0, 1, 2, 2, 2, 0, 0]);
        assert_eq!(t.len(), 256);
        assert!(sh_table(&[]).is_empty());
    }

    #[test]
    fn sh_fallback_skips_quiesced() {
        let loads = [
            Load {
                weight: 0,
                ..Load::default()
            },
            Load {
                weight: 1,
                ..Load::default()
            },
        ];
        let t = sh_table(&[0, 1]);
        let src = (0..=255u8)
            .map(|i| Ipv4Addr::new(198, 18, 100, i))
            .find(|&a| t[sh_hashkey(a, 0, 0)] == 0)
            .unwrap();
        assert_eq!(sh_pick(&t, &loads, src, 1, false, false), None);
        assert_eq!(sh_pick(&t, &loads, src, 1, false, true), Some(1));
    }

    #[test]
    fn dh_round_robins_buckets() {
        assert_eq!(&dh_table(3)[..5], &[0, 1, 2, 0, 1]);
    }
}
