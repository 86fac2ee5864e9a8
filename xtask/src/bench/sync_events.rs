//! The fast path's new-flow cost with the sync MASTER's connection events on vs off
//! (issue 14: target <= +10 %), on the first testbed, in one run: each round times the
//! same distinct SYNs with events off and on, in alternating order; the ring is drained
//! after each "on" pass, and every SYN must have produced exactly one event.

use anyhow::{Result, ensure};
use rvs_common::Verdict;

use super::{Figure, Options, Prog, Testbed, Want, XDP_TX};

/// SYNs per pass: well inside the ring (about 87 000 events), so none is lost.
const MAX_FLOWS: u32 = 20_000;

/// `rvs` holds the passes with events on, `reference` those with events off.
pub(super) fn measure(bed: &mut Testbed, opts: &Options) -> Result<Figure> {
    let want = Want {
        case: "new flow, sync events on/off",
        action: XDP_TX,
        verdict: Verdict::FwdNew,
        ref_action: XDP_TX,
    };
    let (frames, keys) = bed.new_flows(opts.new_flows.min(MAX_FLOWS));
    let lost_before = bed.dp.sync_events_lost()?;
    let mut figure = Figure::default();
    for round in 0..opts.rounds {
        let order = if round.is_multiple_of(2) {
            [false, true]
        } else {
            [true, false]
        };
        for on in order {
            bed.dp.set_sync_events(on)?;
            let ns = bed.measure(Prog::Rvs, &frames, 1, &want)?;
            bed.forget(&keys)?;
            let mut events = 0;
            loop {
                let n = bed.dp.drain_sync_events(8192).len();
                if n == 0 {
                    break;
                }
                events += n;
            }
            let expected = if on { frames.len() } else { 0 };
            ensure!(
                events == expected,
                "{events} connection events for {} new flows (events {})",
                frames.len(),
                if on { "on" } else { "off" }
            );
            if on {
                figure.rvs.push(ns);
            } else {
                figure.reference.push(ns);
            }
        }
    }
    bed.dp.set_sync_events(false)?;
    ensure!(
        bed.dp.sync_events_lost()? == lost_before,
        "the event ring overflowed during the measurement"
    );
    Ok(figure)
}
