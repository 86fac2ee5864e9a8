//! Mid-flow packets: a TCP segment other than a SYN that has no connection entry, as a
//! director behind ECMP receives when the router re-hashes a flow to it. For the hash
//! schedulers (with `sloppy_tcp`) it is scheduled by the same hash and gets an entry; for
//! an mh service whose servers changed a moment ago, by the mid-flow table the planner
//! laid after the current one (the second chance: the previous table's server where it
//! stays, since that server most likely holds the connection). The rules are in
//! `rvs_common::midflow` and the planner; this module holds the counters.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use rvs_common::midflow::{MIDFLOW_COUNTS, MidflowCount};

/// Mid-flow counters (`MidflowCount` indexes).
#[map(name = "RVS_MIDFLOW_STATS")]
pub static MIDFLOW_STATS: PerCpuArray<u64> = PerCpuArray::pinned(MIDFLOW_COUNTS, 0);

/// Counts one mid-flow event.
#[inline(always)]
pub fn count(what: MidflowCount) {
    if let Some(c) = MIDFLOW_STATS.get_ptr_mut(what as u32) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *c += 1 };
    }
}
