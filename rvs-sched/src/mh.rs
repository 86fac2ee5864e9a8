//! IPVS Maglev hashing (ip_vs_mh.c): the lookup table and the lookup.
//!
//! Table population, as ip_vs_mh.c does it:
//! - keys: two fixed hsiphash keys ([`rvs_common::hash::IPVS_MH_KEY1`] / `KEY2`);
//! - each server's permutation: `offset = h1 % size`, `skip = h2 % (size - 1) + 1`, where `hN` is
//!   hsiphash over the host-order `u32` sum `addr + port` of the server (its address and its
//!   port, both host order, added, not concatenated);
//! - turns: `g` = gcd of the positive weights, `shift = max(0, fls(max_weight / g) - bits)`
//!   with `bits` = [`IPVS_MH_TAB_BITS`], `turns = (weight / g) >> shift`, or 1 when that is 0
//!   but the weight is not; a weight-0 server has no turns and gets no slot;
//! - rounds over the list (newest first): each server with turns claims that many slots in a
//!   row, each time the next free slot of its permutation, until the table is full.
//!
//! A packet goes to `table[hsiphash(src + sport_or_0) % size]` (see [`mh_pick`]).

use std::net::Ipv4Addr;

use rvs_common::NO_REAL;
use rvs_common::hash::{IPVS_MH_KEY1, IPVS_MH_KEY2, ipvs_mh_hashkey, ipvs_mh_source_hash};

use crate::{Dest, Error, check_weights, gcd_of_weights};

/// IPVS's mh table size: `primes[CONFIG_IP_VS_MH_TAB_INDEX - 8]` with the default (and
/// Debian's) CONFIG_IP_VS_MH_TAB_INDEX=12, from primes {251, 509, 1021, 2039, 4093, ...}.
pub const IPVS_MH_TABLE_SIZE: u32 = 4093;

/// IPVS's `IP_VS_MH_TAB_BITS` (CONFIG_IP_VS_MH_TAB_INDEX / 2): bits of `weight / gcd` kept
/// as turns before the weights are shifted down.
pub const IPVS_MH_TAB_BITS: u32 = 6;

/// Largest table [`maglev_table`] builds (the largest prime below it is 1 048 573).
pub const MAX_MAGLEV_TABLE_SIZE: u32 = 1 << 20;

/// `fls()`: position of the highest set bit, 1-based; 0 for 0.
fn fls(x: u32) -> u32 {
    u32::BITS - x.leading_zeros()
}

/// `IP_VS_MH_TAB_BITS` for a table size: CONFIG_IP_VS_MH_TAB_INDEX / 2, where the kernel's
/// index for each of its primes is `fls(prime)` (251 → 8, 4093 → 12, 131071 → 17). Exact for
/// every size a kernel can be built with, and the natural extension for other primes.
fn tab_bits(size: u32) -> u32 {
    fls(size) / 2
}

/// Trial division; `n` is at most [`MAX_MAGLEV_TABLE_SIZE`].
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// Slots each server claims per round (ip_vs_mh_permutate's `turns`), in list order.
fn turns(dests: &[Dest], size: u32) -> Vec<u32> {
    let g = gcd_of_weights(dests.iter().map(|d| d.weight));
    if g == 0 {
        return vec![0; dests.len()];
    }
    let mw = dests.iter().map(|d| d.weight).max().unwrap_or(0) / g;
    let shift = fls(mw).saturating_sub(tab_bits(size));
    dests
        .iter()
        .map(|d| match (d.weight / g) >> shift {
            0 => u32::from(d.weight != 0),
            t => t,
        })
        .collect()
}

/// IPVS's `mh` lookup table of `size` entries for `dests` (list order, newest first): each
/// entry is an index into `dests`, or [`NO_REAL`] everywhere when no server has a weight.
///
/// With `size` = [`IPVS_MH_TABLE_SIZE`] this is exactly the table kernel IPVS builds for
/// `-s mh`, so rvs and IPVS directors send each client to the same real server. Any other prime
/// gives rvs's larger Maglev table, same algorithm (a larger table balances weights more
/// finely and moves fewer flows when servers change).
///
/// `weight` is IPVS's `last_weight`, the server's latest non-zero weight: IPVS keeps a
/// server quiesced with `-w 0` in the table with its old share, and packets that land on its
/// slots find no server (IPVS drops them; with the `mh-fallback` flag it rehashes). To
/// reproduce that, pass the last non-zero weight here and let the data path treat the
/// quiesced server's slots as unavailable. A server that never had a weight has no slots.
///
/// Errors: `size` not prime or above [`MAX_MAGLEV_TABLE_SIZE`], more servers than `size`
/// (IPVS: EINVAL), a weight above [`crate::MAX_WEIGHT`].
pub fn maglev_table(dests: &[Dest], size: u32) -> Result<Vec<u32>, Error> {
    check_weights(dests)?;
    if size > MAX_MAGLEV_TABLE_SIZE {
        return Err(Error::TableSizeTooLarge {
            size,
            max: MAX_MAGLEV_TABLE_SIZE,
        });
    }
    if !is_prime(size) {
        return Err(Error::TableSizeNotPrime(size));
    }
    if dests.len() > size as usize {
        return Err(Error::TooManyDests {
            dests: dests.len(),
            size,
        });
    }
    let slots = size as usize;
    let mut table = vec![NO_REAL; slots];
    let turns = turns(dests, size);
    if turns.iter().all(|&t| t == 0) {
        return Ok(table);
    }
    // Permutation of each server: (next candidate slot, skip).
    let mut perm: Vec<(usize, usize)> = dests
        .iter()
        .map(|d| {
            let addr = u32::from(d.addr);
            let offset = ipvs_mh_hashkey(addr, d.port, &IPVS_MH_KEY1) % size;
            let skip = ipvs_mh_hashkey(addr, d.port, &IPVS_MH_KEY2) % (size - 1) + 1;
            (offset as usize, skip as usize)
        })
        .collect();
    let mut filled = 0usize;
    // Each round places at least one entry (some server has turns), and each placement finds
    // a free slot because skip < size and size is prime: the loop ends.
    'fill: loop {
        for (i, (t, p)) in turns.iter().zip(perm.iter_mut()).enumerate() {
            for _ in 0..*t {
                let (next, skip) = p;
                while table.get(*next).is_some_and(|&e| e != NO_REAL) {
                    *next += *skip;
                    if *next >= slots {
                        *next -= slots;
                    }
                }
                if let Some(e) = table.get_mut(*next) {
                    *e = i as u32;
                }
                filled += 1;
                if filled == slots {
                    break 'fill;
                }
            }
        }
    }
    Ok(table)
}

/// The entry of an mh `table` that IPVS picks for a new connection from `src`:`sport` (port in
/// host order; it only counts with the `mh-port` flag, `with_port`). Computes what the XDP
/// program computes: [`rvs_common::hash::ipvs_mh_source_hash`] `% table.len()`. [`NO_REAL`]
/// for an empty table.
pub fn mh_pick(table: &[u32], src: Ipv4Addr, sport: u16, with_port: bool) -> u32 {
    if table.is_empty() {
        return NO_REAL;
    }
    let hash = ipvs_mh_source_hash(u32::from(src).to_be(), sport.to_be(), with_port);
    let slot = u64::from(hash) % table.len() as u64;
    table.get(slot as usize).copied().unwrap_or(NO_REAL)
}

/// IPVS `mh` with the `mh-fallback` flag: the entry's server when `usable(index)`, else the
/// first usable one found by rehashing with offsets `ihash, ihash + 1, ...` (ip_vs_mh.c
/// `ip_vs_mh_get_fallback`: `hsiphash(offset + port + addr) % size` for each offset). None for
/// an empty table or when no server is usable (IPVS drops the packet).
pub fn mh_pick_fallback(
    table: &[u32],
    usable: impl Fn(u32) -> bool,
    src: Ipv4Addr,
    sport: u16,
    with_port: bool,
) -> Option<u32> {
    if table.is_empty() {
        return None;
    }
    let size = table.len() as u32;
    let port = if with_port { sport } else { 0 };
    let addr = u32::from(src);
    let slot = |offset: u32| {
        let h = ipvs_mh_hashkey(addr.wrapping_add(offset), port, &IPVS_MH_KEY1) % size;
        table.get(h as usize).copied().filter(|&i| i != NO_REAL)
    };
    let ihash = ipvs_mh_hashkey(addr, port, &IPVS_MH_KEY1) % size;
    let first = slot(0)?;
    if usable(first) {
        return Some(first);
    }
    (0..size)
        .filter_map(|offset| slot((offset + ihash) % size))
        .find(|&i| usable(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::dests;

    fn counts(table: &[u32], n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| table.iter().filter(|&&e| e == i as u32).count())
            .collect()
    }

    #[test]
    fn table_size_is_ipvs_default() {
        // primes[CONFIG_IP_VS_MH_TAB_INDEX - 8] with INDEX 12; bits = INDEX / 2.
        let primes = [
            251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
        ];
        assert_eq!(primes[12 - 8], IPVS_MH_TABLE_SIZE);
        assert_eq!(tab_bits(IPVS_MH_TABLE_SIZE), IPVS_MH_TAB_BITS);
        for (i, &p) in primes.iter().enumerate() {
            assert!(is_prime(p));
            assert_eq!(tab_bits(p), (i as u32 + 8) / 2, "{p}");
        }
        assert!(is_prime(65537));
    }

    #[test]
    fn bad_sizes_are_refused() {
        let d = dests(&[1, 1]);
        assert_eq!(maglev_table(&d, 4096), Err(Error::TableSizeNotPrime(4096)));
        assert_eq!(maglev_table(&d, 0), Err(Error::TableSizeNotPrime(0)));
        assert_eq!(maglev_table(&d, 1), Err(Error::TableSizeNotPrime(1)));
        assert!(matches!(
            maglev_table(&d, 4_294_967_291),
            Err(Error::TableSizeTooLarge { .. })
        ));
        assert_eq!(
            maglev_table(&dests(&[1, 1, 1]), 2),
            Err(Error::TooManyDests { dests: 3, size: 2 })
        );
        let msg = Error::TableSizeNotPrime(4096).to_string();
        assert!(msg.contains("4096") && msg.contains("4093"), "{msg}");
    }

    #[test]
    fn no_weight_no_server() {
        assert_eq!(
            maglev_table(&dests(&[0, 0]), 251).unwrap(),
            vec![NO_REAL; 251]
        );
        assert_eq!(maglev_table(&[], 251).unwrap(), vec![NO_REAL; 251]);
        assert_eq!(
            mh_pick(&[], Ipv4Addr::new(198, 18, 0, 1), 1, false),
            NO_REAL
        );
    }

    #[test]
    fn turns_follow_gcd_and_shift() {
        // gcd 1, max 1000: fls(1000) = 10, shift 10 - 6 = 4; 7 >> 4 = 0 becomes 1.
        assert_eq!(
            turns(&dests(&[100, 300, 1000, 7, 0]), 4093),
            vec![6, 18, 62, 1, 0]
        );
        // gcd 2: 6/2, 4/2, 2/2, no shift.
        assert_eq!(turns(&dests(&[6, 4, 2]), 4093), vec![3, 2, 1]);
        // A larger table keeps more bits: 65537 → 8 bits, shift 2.
        assert_eq!(
            turns(&dests(&[100, 300, 1000, 7]), 65537),
            vec![25, 75, 250, 1]
        );
    }

    #[test]
    fn weights_share_the_table() {
        let weights = [1u32, 2, 3, 4, 0, 5];
        for size in [IPVS_MH_TABLE_SIZE, 65537] {
            let table = maglev_table(&dests(&weights), size).unwrap();
            assert!(table.iter().all(|&e| (e as usize) < weights.len()));
            let total: u32 = weights.iter().sum();
            for (i, c) in counts(&table, weights.len()).into_iter().enumerate() {
                let want = f64::from(size) * f64::from(weights[i]) / f64::from(total);
                assert!(
                    (c as f64 - want).abs() <= 0.03 * want + 1.0,
                    "size {size} dest {i}: {c} slots, want {want:.0}"
                );
            }
        }
    }

    #[test]
    fn equal_weights_are_nearly_equal() {
        let table = maglev_table(&dests(&[1; 10]), IPVS_MH_TABLE_SIZE).unwrap();
        // One slot per server per round: counts differ by at most one.
        let c = counts(&table, 10);
        assert!(
            c.iter().max().unwrap() - c.iter().min().unwrap() <= 1,
            "{c:?}"
        );
    }

    /// Fraction of flows that stay on a surviving server yet move when one of 10 equal
    /// servers is removed; 10 000 flows from distinct sources (198.18.0.0 + i). Printed for the record (`cargo test -- --nocapture`); Maglev only
    /// promises that this is small, so the test asserts what is certain.
    #[test]
    fn disruption_when_one_of_ten_is_removed() {
        let all = dests(&[1; 10]);
        let removed = 3usize;
        let rest: Vec<Dest> = all
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, d)| *d)
            .collect();
        for size in [IPVS_MH_TABLE_SIZE, 65537] {
            let before = maglev_table(&all, size).unwrap();
            let after = maglev_table(&rest, size).unwrap();
            let (mut stayed_eligible, mut moved) = (0u32, 0u32);
            for f in 0..10_000u32 {
                let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + f);
                let a = all[mh_pick(&before, src, 0, false) as usize];
                let b = rest[mh_pick(&after, src, 0, false) as usize];
                assert_ne!(b, all[removed]);
                if a != all[removed] {
                    stayed_eligible += 1;
                    if a != b {
                        moved += 1;
                    }
                }
            }
            // The same at the level of table slots.
            let kept: Vec<(u32, u32)> = before
                .iter()
                .zip(&after)
                .filter(|&(&a, _)| a as usize != removed)
                .map(|(&a, &b)| (a, b))
                .collect();
            let slots_moved = kept
                .iter()
                .filter(|&&(a, b)| all[a as usize] != rest[b as usize])
                .count();
            println!(
                "size {size}: {moved} of {stayed_eligible} flows on surviving servers moved \
                 ({:.2}%); slots: {slots_moved} of {} ({:.2}%)",
                100.0 * f64::from(moved) / f64::from(stayed_eligible),
                kept.len(),
                100.0 * slots_moved as f64 / kept.len() as f64
            );
        }
    }
}
