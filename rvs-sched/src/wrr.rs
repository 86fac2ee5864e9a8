//! IPVS weighted round robin (ip_vs_wrr.c).
//!
//! ip_vs_wrr.c keeps `di` (gcd of the positive weights, 1 when there is none), `mw` (largest
//! weight minus `di - 1`), `cw` (the current weight) and `cl` (the last server chosen, or the
//! list head). A new connection goes to the next server after `cl` whose weight is `>= cw`;
//! when the walk reaches the end of the list, `cw -= di`, and when `cw <= 0` it wraps to `mw`.
//! So each pass at a given `cw` hands out, in list order, every server with weight `>= cw`,
//! and one full cycle gives each server `weight / di` connections.
//!
//! What is easy to get wrong is where a fresh service *starts*. `ip_vs_wrr_dest_changed` (run
//! for every added, edited or removed server) moves `cl` back to the head but sets `cw = mw`
//! only when `cw` is 0 or above the new `mw`; otherwise, when `di > 1`, it rounds `cw` to
//! `(cw / di) * di + 1`, and when `di == 1` it keeps `cw`. A service is created with `cw = 0`;
//! the first server with a weight `w` added to it makes `di = w`, `mw = 1`, hence `cw = 1`, and
//! no later add moves `cw` away from 1. So a fresh service starts with the `cw = 1` pass
//! (every server with a weight once, in list order) and only then goes to `mw`, `mw - di`, ...
//! (kernel IPVS confirms it: tests/ipvs_golden.rs). Edits of weights on a live service can
//! leave `cw` elsewhere; [`wrr_ring`] describes a fresh service only.

use crate::{Dest, Error, check_weights, gcd_of_weights};

/// `di` and `mw` of ip_vs_wrr.c for a list of weights.
fn di_mw(weights: impl Iterator<Item = u32> + Clone) -> (i64, i64) {
    let di = i64::from(gcd_of_weights(weights.clone()).max(1));
    let max = i64::from(weights.max().unwrap_or(0));
    (di, max - (di - 1))
}

/// One full cycle of IPVS `wrr` from a fresh service, as indices into `dests` (list order,
/// newest first).
///
/// "Fresh" means: the service was created with no servers, then the servers were added one by
/// one, oldest first (the reverse of `dests`), each with its weight as given, and no connection
/// has been scheduled since. The cycle starts with the connection IPVS schedules first; IPVS
/// then repeats it forever as long as nothing changes, so the data path can walk the ring with
/// a cursor. Servers with weight 0 never appear; the ring is empty when no server has a weight
/// (IPVS: "no destination available"). A cycle is `sum(weight) / gcd(weights)` long: above
/// `max_len`, this returns [`Error::WrrCycleTooLong`].
pub fn wrr_ring(dests: &[Dest], max_len: usize) -> Result<Vec<u32>, Error> {
    check_weights(dests)?;
    let (di, mw) = di_mw(dests.iter().map(|d| d.weight));
    if mw <= 0 {
        return Ok(Vec::new());
    }
    let len: u64 = dests.iter().map(|d| u64::from(d.weight) / di as u64).sum();
    if len > max_len as u64 {
        return Err(Error::WrrCycleTooLong { len, max: max_len });
    }
    // The passes of one cycle: cw = 1 (where a fresh service is), then mw, mw - di, .., 1 + di.
    let passes = (mw - 1) / di + 1;
    let mut ring = Vec::with_capacity(len as usize);
    let mut cw = 1;
    for _ in 0..passes {
        ring.extend(
            dests
                .iter()
                .enumerate()
                .filter(|(_, d)| i64::from(d.weight) >= cw)
                .map(|(i, _)| i as u32),
        );
        cw -= di;
        if cw <= 0 {
            cw = mw;
        }
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::dests;

    /// A line-by-line model of ip_vs_wrr.c (mark, init_svc, dest_changed, schedule with its
    /// last_pass / restarted / stop rules), to check the closed form against.
    struct Kernel {
        weights: Vec<i64>,
        /// Index of `mark->cl`, None for the list head.
        cl: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl Kernel {
        fn new() -> Kernel {
            Kernel {
                weights: Vec::new(),
                cl: None,
                cw: 0,
                mw: 0,
                di: 1,
            }
        }

        fn gcd_max(&self) -> (i64, i64) {
            let w = self.weights.iter().map(|&w| w as u32);
            let di = i64::from(gcd_of_weights(w.clone()).max(1));
            (di, i64::from(w.max().unwrap_or(0)))
        }

        /// `list_add_rcu` at the head, then `ip_vs_wrr_dest_changed`.
        fn add(&mut self, weight: u32) {
            self.weights.insert(0, i64::from(weight));
            self.changed();
        }

        fn changed(&mut self) {
            self.cl = None;
            let (di, max) = self.gcd_max();
            self.di = di;
            self.mw = max - (di - 1);
            if self.cw > self.mw || self.cw == 0 {
                self.cw = self.mw;
            } else if self.di > 1 {
                self.cw = (self.cw / self.di) * self.di + 1;
            }
        }

        fn schedule(&mut self) -> Option<usize> {
            let mut dest = self.cl;
            if self.mw == 0 {
                return None;
            }
            let last = dest;
            let mut stop = None;
            let (mut last_pass, mut restarted) = (false, false);
            loop {
                for j in dest.map_or(0, |d| d + 1)..self.weights.len() {
                    dest = Some(j);
                    if self.weights[j] >= self.cw {
                        self.cl = dest;
                        return dest;
                    }
                    if dest == stop {
                        self.cl = dest;
                        return None;
                    }
                }
                dest = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cl = dest;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = last;
                }
            }
        }
    }

    fn kernel_picks(weights: &[u32], n: usize) -> Vec<u32> {
        let mut k = Kernel::new();
        for &w in weights.iter().rev() {
            k.add(w);
        }
        (0..n)
            .map(|_| k.schedule().map_or(u32::MAX, |i| i as u32))
            .collect()
    }

    #[test]
    fn small_weight_sets() {
        // Added 1, 2, 3 (list: 3, 2, 1): the cw = 1 pass first, then cw = 3, 2.
        assert_eq!(
            wrr_ring(&dests(&[3, 2, 1]), 100).unwrap(),
            vec![0, 1, 2, 0, 0, 1]
        );
        // Added 3, 2, 1 (list: 1, 2, 3).
        assert_eq!(
            wrr_ring(&dests(&[1, 2, 3]), 100).unwrap(),
            vec![0, 1, 2, 2, 1, 2]
        );
        // di = 2, mw = 5: passes cw = 1, 5, 3 (list: 2, 6, 4).
        assert_eq!(
            wrr_ring(&dests(&[2, 6, 4]), 100).unwrap(),
            vec![0, 1, 2, 1, 1, 2]
        );
        // Equal weights behave like rr.
        assert_eq!(wrr_ring(&dests(&[5, 5, 5]), 100).unwrap(), vec![0, 1, 2]);
        // gcd 2 and a quiesced server: each server weight/2 times.
        assert_eq!(wrr_ring(&dests(&[4, 0, 2]), 100).unwrap(), vec![0, 2, 0]);
        assert!(wrr_ring(&dests(&[0, 0]), 100).unwrap().is_empty());
        assert!(wrr_ring(&[], 100).unwrap().is_empty());
    }

    #[test]
    fn cycle_limit() {
        let err = wrr_ring(&dests(&[1000, 999]), 1000).unwrap_err();
        assert_eq!(
            err,
            Error::WrrCycleTooLong {
                len: 1999,
                max: 1000
            }
        );
        assert!(err.to_string().contains("1999 picks"), "{err}");
        assert_eq!(wrr_ring(&dests(&[1000, 999]), 1999).unwrap().len(), 1999);
    }

    #[test]
    fn matches_line_by_line_kernel_model() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..2000 {
            let n = 1 + next(6) as usize;
            let scale = [1, 2, 3, 10][next(4) as usize];
            let weights: Vec<u32> = (0..n).map(|_| (next(6) * scale) as u32).collect();
            let ring = wrr_ring(&dests(&weights), 10_000).unwrap();
            if ring.is_empty() {
                assert_eq!(kernel_picks(&weights, 3), vec![u32::MAX; 3], "{weights:?}");
                continue;
            }
            let di = u64::from(gcd_of_weights(weights.iter().copied()));
            for (i, &w) in weights.iter().enumerate() {
                let count = ring.iter().filter(|&&r| r == i as u32).count() as u64;
                assert_eq!(count, u64::from(w) / di, "{weights:?}");
            }
            // Three cycles: the kernel repeats the ring from its first pick.
            let want = kernel_picks(&weights, ring.len() * 3);
            let got: Vec<u32> = ring.iter().cycle().take(ring.len() * 3).copied().collect();
            assert_eq!(got, want, "{weights:?}");
        }
    }
}
