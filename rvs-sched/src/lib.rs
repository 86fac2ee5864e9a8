//! Every IPVS scheduler, sans I/O, with IPVS's exact choices.
//!
//! The table schedulers (rr, wrr, mh, sh, dh) compute tables the XDP program indexes; the
//! connection-count ones (lc, wlc, sed, nq, fo, ovf, twos, lblc, lblcr) are models of the
//! per-connection walk the kernel makes, which the data path must reproduce. Either way rvs
//! picks exactly the real server kernel IPVS would pick for the same rules and the same
//! sequence of connection opens and closes:
//!
//! - [`rr_ring`]: IPVS `rr` (ip_vs_rr.c), one cycle walked by the data path's cursor;
//! - [`wrr_ring`]: IPVS `wrr` (ip_vs_wrr.c), one cycle, starting where a fresh service starts;
//! - [`maglev_table`] and [`mh_pick`]: IPVS `mh` (ip_vs_mh.c) lookup table and lookup, and
//!   [`mh_pick_fallback`] for its `mh-fallback` flag;
//! - [`sh_table`]/[`sh_pick`] and [`dh_table`]/[`dh_pick`]: IPVS `sh` (with `sh-port` and
//!   `sh-fallback`) and `dh`, 256 buckets each;
//! - [`lc`], [`wlc`], [`sed`], [`nq`], [`fo`], [`ovf`], [`twos`]: the connection-count
//!   schedulers, each one walk over the servers' [`Load`]s as the kernel walks its list;
//! - [`Lblc`] and [`Lblcr`]: the locality schedulers' destination tables;
//! - [`Counters`], [`tcp_next_state`]: IPVS's ActiveConn/InActConn accounting and the
//!   overload flag of the `-x`/`-y` thresholds.
//!
//! **Order matters.** Every function takes the real servers in IPVS's list order. The kernel
//! inserts a new real server at the *head* of the service's list (`list_add_rcu`), so that
//! order is **newest first**: the server added last comes first. (`ipvsadm -Ln` sorts the
//! servers it prints by address; `ipvsadm -Ln --nosort` shows the kernel's order.) Indices in
//! the returned tables are positions in the slice the caller passed.
//!
//! The golden tests (`tests/ipvs_golden.rs`) replay choices recorded from the real kernel
//! (Debian 6.1, ipvsadm 1.31) and require every one to match.

#![warn(missing_docs)]

use std::net::Ipv4Addr;

mod hash;
mod lblc;
mod least;
mod load;
mod mh;
mod rr;
mod wrr;

pub use hash::{
    HASH_TAB_SIZE, SH_TAB_BITS, dh_hashkey, dh_pick, dh_table, hash_32, sh_hashkey, sh_pick,
    sh_table,
};
pub use lblc::{
    CHECK_EXPIRE_INTERVAL_MS, COUNT_FOR_FULL_EXPIRATION, DEFAULT_EXPIRATION_MS, ENTRY_TIMEOUT_MS,
    ExpiryCheck, LBL_MAX_SIZE, LBL_TAB_SIZE, Lblc, Lblcr, Server,
};
pub use least::{fo, lc, nq, ovf, sed, twos, twos_draw_bound, wlc};
pub use load::{
    Counted, Counters, Direction, Load, TcpEvent, TcpState, Thresholds, tcp_counted, tcp_next_state,
};
pub use mh::{
    IPVS_MH_TAB_BITS, IPVS_MH_TABLE_SIZE, MAX_MAGLEV_TABLE_SIZE, maglev_table, mh_pick,
    mh_pick_fallback,
};
pub use rr::rr_ring;
pub use wrr::wrr_ring;

/// A real server as the schedulers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dest {
    /// Real server address.
    pub addr: Ipv4Addr,
    /// Real server port, host byte order (IPVS forces it to the virtual port for DR and TUN).
    pub port: u16,
    /// Weight, 0..=[`MAX_WEIGHT`]; 0 means no new connections (see each scheduler for details).
    pub weight: u32,
}

/// Largest weight IPVS accepts (the kernel keeps weights in an `int` and rejects negatives).
pub const MAX_WEIGHT: u32 = i32::MAX as u32;

/// Why a scheduler table could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A weight above [`MAX_WEIGHT`].
    #[error("real server {addr}:{port} has weight {weight}, above IPVS's maximum of {max}")]
    WeightTooLarge {
        /// Real server address.
        addr: Ipv4Addr,
        /// Real server port.
        port: u16,
        /// The offending weight.
        weight: u32,
        /// [`MAX_WEIGHT`].
        max: u32,
    },
    /// One wrr cycle is longer than the ring may be.
    #[error(
        "one wrr cycle for these weights is {len} picks long (sum of weights / their gcd), \
         more than the {max} ring slots allowed; use smaller weights or weights with a larger \
         common divisor"
    )]
    WrrCycleTooLong {
        /// Length of one full cycle.
        len: u64,
        /// The limit the caller set.
        max: usize,
    },
    /// A Maglev table size that is not a prime number.
    #[error(
        "Maglev table size {0} is not prime; the table needs a prime size \
         (IPVS's mh uses {size}; 65537 is a larger choice)",
        size = IPVS_MH_TABLE_SIZE
    )]
    TableSizeNotPrime(u32),
    /// A Maglev table size above [`MAX_MAGLEV_TABLE_SIZE`].
    #[error("Maglev table size {size} is above the maximum of {max}")]
    TableSizeTooLarge {
        /// The requested size.
        size: u32,
        /// [`MAX_MAGLEV_TABLE_SIZE`].
        max: u32,
    },
    /// More real servers than Maglev table entries (IPVS refuses this with EINVAL).
    #[error("{dests} real servers do not fit in a Maglev table of {size} entries")]
    TooManyDests {
        /// Number of real servers passed.
        dests: usize,
        /// The table size.
        size: u32,
    },
}

/// Checks every weight is one IPVS could hold.
fn check_weights(dests: &[Dest]) -> Result<(), Error> {
    match dests.iter().find(|d| d.weight > MAX_WEIGHT) {
        Some(d) => Err(Error::WeightTooLarge {
            addr: d.addr,
            port: d.port,
            weight: d.weight,
            max: MAX_WEIGHT,
        }),
        None => Ok(()),
    }
}

/// Greatest common divisor (the kernel's `gcd()`), for positive inputs.
fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// gcd of the positive weights, 0 when none is positive (both ip_vs_wrr.c and ip_vs_mh.c
/// compute it this way before their own fix-ups).
fn gcd_of_weights(weights: impl Iterator<Item = u32>) -> u32 {
    weights
        .filter(|&w| w > 0)
        .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w })
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::Dest;
    use std::net::Ipv4Addr;

    /// Real servers 198.18.200.(10+i):80 with the given weights, in list order.
    pub fn dests(weights: &[u32]) -> Vec<Dest> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Dest {
                addr: Ipv4Addr::new(198, 18, 200, 10 + i as u8),
                port: 80,
                weight,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcd_basics() {
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(7, 1), 1);
        assert_eq!(gcd_of_weights([0, 4, 6, 0, 10].into_iter()), 2);
        assert_eq!(gcd_of_weights([0, 0].into_iter()), 0);
    }

    #[test]
    fn weight_limit_is_checked() {
        let mut d = test_util::dests(&[1, 2]);
        d[1].weight = MAX_WEIGHT + 1;
        let err = check_weights(&d).unwrap_err();
        assert!(err.to_string().contains("198.18.200.11:80"), "{err}");
        assert!(err.to_string().contains("2147483648"), "{err}");
    }
}
