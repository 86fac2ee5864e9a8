//! Mid-flow packets (a TCP segment other than a SYN with no connection entry, as a director
//! sees when an ECMP router re-hashes a flow to it) and the second chance: the types both
//! the XDP program and userspace use, and the rule for which services pick such packets up.

use crate::DispatchKind;

/// Service flag (beside `SVC_F_*`): mid-flow TCP packets of this service are scheduled.
/// Set by the planner when [`picks_up`] says so, i.e. the service's own `sloppy_tcp`, or the
/// global one (`[flows] sloppy_tcp`) and a hash scheduler, so the program tests one bit.
pub const SVC_F_MIDFLOW: u8 = 1 << 3;
/// Service flag: within a second-chance window: the service's dispatch range holds two
/// tables of `table_len` slots, the current one and then the mid-flow one, which mid-flow
/// packets are scheduled by (the planner clears the flag when the window ends).
pub const SVC_F_SECOND_CHANCE: u8 = 1 << 4;

/// Name of the mid-flow counters (per CPU, [`MidflowCount`] indexes).
pub const MIDFLOW_STATS_MAP: &str = "RVS_MIDFLOW_STATS";

/// Mid-flow counters, index of the per-CPU counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MidflowCount {
    /// Mid-flow TCP packets passed to the kernel (sloppy_tcp off, not a hash scheduler, or
    /// a RST). (Those scheduled are counted as `fwd_new`: counting them here as well cost
    /// the verifier more states than the program may have.)
    Passed = 0,
}

/// Number of [`MidflowCount`] values.
pub const MIDFLOW_COUNTS: u32 = 1;

/// Whether `kind` is a function of the packet and the configuration only (every director
/// with the same configuration chooses the same server): mh, sh, dh.
#[inline(always)]
pub fn consistent(kind: u8) -> bool {
    kind == DispatchKind::MaglevSource as u8
        || kind == DispatchKind::MaglevSourcePort as u8
        || kind == DispatchKind::Sh as u8
        || kind == DispatchKind::Dh as u8
}

/// Whether a TCP packet without SYN and without a connection entry is scheduled rather than
/// passed (a RST never is: IPVS's `tcp_conn_schedule` refuses it even with sloppy_tcp). The
/// service's own `sloppy_tcp` is IPVS's behaviour for every scheduler; the global one
/// (`[flows] sloppy_tcp`, on for ECMP) only for the hash schedulers.
pub fn picks_up(service_sloppy: bool, kind: u8, global_sloppy: bool) -> bool {
    service_sloppy || (global_sloppy && consistent(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_schedulers_only_under_the_global_switch() {
        for k in [
            DispatchKind::MaglevSource,
            DispatchKind::MaglevSourcePort,
            DispatchKind::Sh,
            DispatchKind::Dh,
        ] {
            assert!(picks_up(false, k as u8, true), "{k:?}");
            assert!(!picks_up(false, k as u8, false), "{k:?} off");
        }
        for k in [DispatchKind::Ring, DispatchKind::Wlc, DispatchKind::Lc] {
            assert!(!picks_up(false, k as u8, true), "{k:?}");
            // The service's own sloppy_tcp is IPVS's: any scheduler.
            assert!(picks_up(true, k as u8, false), "{k:?}");
        }
    }
}
