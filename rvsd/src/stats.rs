//! Rate estimation as IPVS does it (ip_vs_est.c): every 2 seconds the counters are sampled
//! and each rate moves a quarter of the way towards the rate over the last interval.

use rvs_api::{Rates, Stats};
use rvs_common::Counters;

/// Seconds between two samples, as IPVS's estimator.
pub const ESTIMATOR_INTERVAL_SECS: u64 = 2;

/// Whose counters: a service id or a real-server id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterId {
    /// A service id.
    Service(u32),
    /// A real-server id.
    Real(u32),
}

/// The API's view of counters.
pub fn stats(c: &Counters) -> Stats {
    Stats {
        conns: c.conns,
        inpkts: c.packets_in,
        outpkts: c.packets_out,
        inbytes: c.bytes_in,
        outbytes: c.bytes_out,
    }
}

/// Rates are kept scaled by 2^10, as IPVS keeps them, so small rates decay to zero
/// instead of sticking at the last integer step.
const SCALE: u64 = 1 << 10;

/// One counter set's estimator state: the last sample and the smoothed rates (cps,
/// inpps, outpps, inbps, outbps, scaled by [`SCALE`]).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    last: Counters,
    rates: [u64; 5],
}

/// Smoothed rates per counter set. Kept in two vectors indexed by id (service ids and
/// real-server ids are small and dense: the planner hands out the lowest free one), so a
/// round over 400 000 counter sets is a walk over arrays, not 400 000 hash-map updates.
#[derive(Debug, Default)]
pub struct Estimator {
    services: Vec<Option<Slot>>,
    reals: Vec<Option<Slot>>,
}

fn ewma(avg: u64, per_sec: u64) -> u64 {
    // avg += (sample - avg) / 4, in signed arithmetic on scaled values.
    let sample = per_sec.saturating_mul(SCALE) as i128;
    let delta = (sample - avg as i128) / 4;
    (avg as i128 + delta).max(0) as u64
}

impl Estimator {
    fn table(&self, id: CounterId) -> (&[Option<Slot>], usize) {
        match id {
            CounterId::Service(i) => (&self.services, i as usize),
            CounterId::Real(i) => (&self.reals, i as usize),
        }
    }

    fn slot_mut(&mut self, id: CounterId) -> &mut Option<Slot> {
        let (table, i) = match id {
            CounterId::Service(i) => (&mut self.services, i as usize),
            CounterId::Real(i) => (&mut self.reals, i as usize),
        };
        if table.len() <= i {
            table.resize(i + 1, None);
        }
        &mut table[i]
    }

    /// Feeds one sample taken `interval_secs` after the previous one.
    pub fn sample(&mut self, id: CounterId, now: Counters, interval_secs: u64) {
        let interval = interval_secs.max(1);
        let slot = self.slot_mut(id);
        match slot {
            Some(s) => {
                let prev = s.last;
                let per_sec = |a: u64, b: u64| a.saturating_sub(b) / interval;
                let samples = [
                    per_sec(now.conns, prev.conns),
                    per_sec(now.packets_in, prev.packets_in),
                    per_sec(now.packets_out, prev.packets_out),
                    per_sec(now.bytes_in, prev.bytes_in),
                    per_sec(now.bytes_out, prev.bytes_out),
                ];
                for (a, v) in s.rates.iter_mut().zip(samples) {
                    *a = ewma(*a, v);
                }
                s.last = now;
            }
            None => {
                *slot = Some(Slot {
                    last: now,
                    rates: [0; 5],
                })
            }
        }
    }

    /// The current rates of `id` (zero until two samples were taken).
    pub fn rates(&self, id: CounterId) -> Rates {
        let (table, i) = self.table(id);
        let r = table.get(i).copied().flatten().map_or([0; 5], |s| s.rates);
        let unscale = |v: u64| (v + SCALE / 2) / SCALE;
        Rates {
            cps: unscale(r[0]),
            inpps: unscale(r[1]),
            outpps: unscale(r[2]),
            inbps: unscale(r[3]),
            outbps: unscale(r[4]),
        }
    }

    /// Forgets `id` (its counters were zeroed or its id was reused).
    pub fn reset(&mut self, id: CounterId) {
        let (table, i) = match id {
            CounterId::Service(i) => (&mut self.services, i as usize),
            CounterId::Real(i) => (&mut self.reals, i as usize),
        };
        if let Some(s) = table.get_mut(i) {
            *s = None;
        }
    }

    /// Forgets every id not in `live`.
    pub fn retain(&mut self, live: &[CounterId]) {
        let mut keep_services = vec![false; self.services.len()];
        let mut keep_reals = vec![false; self.reals.len()];
        for id in live {
            let (keep, i) = match *id {
                CounterId::Service(i) => (&mut keep_services, i as usize),
                CounterId::Real(i) => (&mut keep_reals, i as usize),
            };
            if let Some(k) = keep.get_mut(i) {
                *k = true;
            }
        }
        for (slot, keep) in self
            .services
            .iter_mut()
            .zip(keep_services)
            .chain(self.reals.iter_mut().zip(keep_reals))
        {
            if !keep {
                *slot = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(conns: u64, bytes: u64) -> Counters {
        Counters {
            conns,
            packets_in: conns * 10,
            bytes_in: bytes,
            ..Counters::default()
        }
    }

    #[test]
    fn converges_like_ipvs() {
        let mut e = Estimator::default();
        let id = CounterId::Service(0);
        e.sample(id, counters(0, 0), 2);
        assert_eq!(e.rates(id), Rates::default(), "one sample gives no rate");
        // A steady 100 connections/s: the average climbs a quarter of the gap each time.
        let mut total = 0;
        let mut seen = Vec::new();
        for _ in 0..30 {
            total += 200;
            e.sample(id, counters(total, total * 1000), 2);
            seen.push(e.rates(id).cps);
        }
        assert_eq!(
            &seen[..3],
            &[25, 44, 58],
            "a quarter of the way each time, rounded"
        );
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert!((97..=100).contains(&e.rates(id).cps), "{:?}", e.rates(id));
        assert!((97_000..=100_000).contains(&e.rates(id).inbps));
        // Traffic stops: the rate decays towards zero.
        for _ in 0..40 {
            e.sample(id, counters(total, total * 1000), 2);
        }
        assert_eq!(e.rates(id).cps, 0);
        e.reset(id);
        assert_eq!(e.rates(id), Rates::default());
    }

    #[test]
    fn retain_forgets_ids_no_longer_live() {
        let mut e = Estimator::default();
        let (s0, s1, r3) = (
            CounterId::Service(0),
            CounterId::Service(1),
            CounterId::Real(3),
        );
        for id in [s0, s1, r3] {
            e.sample(id, counters(0, 0), 2);
            e.sample(id, counters(200, 0), 2);
            assert_eq!(e.rates(id).cps, 25);
        }
        e.retain(&[s1]);
        assert_eq!(e.rates(s0), Rates::default());
        assert_eq!(e.rates(r3), Rates::default());
        assert_eq!(e.rates(s1).cps, 25, "a live id keeps its rate");
        // A forgotten id starts again: one sample gives no rate.
        e.sample(s0, counters(400, 0), 2);
        assert_eq!(e.rates(s0), Rates::default());
        assert_eq!(
            e.rates(CounterId::Real(1_000)),
            Rates::default(),
            "never seen"
        );
    }
}
