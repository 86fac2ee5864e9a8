//! Rate estimation as IPVS does it (ip_vs_est.c): every 2 seconds the counters are sampled
//! and each rate moves a quarter of the way towards the rate over the last interval.

use std::collections::HashMap;

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

/// Smoothed rates per counter set: cps, inpps, outpps, inbps, outbps, scaled by [`SCALE`].
#[derive(Debug, Default)]
pub struct Estimator {
    last: HashMap<CounterId, Counters>,
    rates: HashMap<CounterId, [u64; 5]>,
}

fn ewma(avg: u64, per_sec: u64) -> u64 {
    // avg += (sample - avg) / 4, in signed arithmetic on scaled values.
    let sample = per_sec.saturating_mul(SCALE) as i128;
    let delta = (sample - avg as i128) / 4;
    (avg as i128 + delta).max(0) as u64
}

impl Estimator {
    /// Feeds one sample taken `interval_secs` after the previous one.
    pub fn sample(&mut self, id: CounterId, now: Counters, interval_secs: u64) {
        let interval = interval_secs.max(1);
        if let Some(prev) = self.last.get(&id) {
            let per_sec = |a: u64, b: u64| a.saturating_sub(b) / interval;
            let samples = [
                per_sec(now.conns, prev.conns),
                per_sec(now.packets_in, prev.packets_in),
                per_sec(now.packets_out, prev.packets_out),
                per_sec(now.bytes_in, prev.bytes_in),
                per_sec(now.bytes_out, prev.bytes_out),
            ];
            let avg = self.rates.entry(id).or_default();
            for (a, s) in avg.iter_mut().zip(samples) {
                *a = ewma(*a, s);
            }
        }
        self.last.insert(id, now);
    }

    /// The current rates of `id` (zero until two samples were taken).
    pub fn rates(&self, id: CounterId) -> Rates {
        let r = self.rates.get(&id).copied().unwrap_or_default();
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
        self.last.remove(&id);
        self.rates.remove(&id);
    }

    /// Forgets every id not in `live`.
    pub fn retain(&mut self, live: &std::collections::HashSet<CounterId>) {
        self.last.retain(|k, _| live.contains(k));
        self.rates.retain(|k, _| live.contains(k));
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
}
