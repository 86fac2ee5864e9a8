//! Counters: the verdict of every return, and per service / real server packets and bytes
//! in each direction (IPVS's InPkts/InBytes, OutPkts/OutBytes).

use aya_ebpf::maps::PerCpuArray;
use rvs_common::{Counters, Verdict};

use crate::maps::{REAL_STATS, SERVICE_STATS, VERDICT_COUNTS};

/// Counts one return of the balancer.
#[inline(always)]
pub fn count_verdict(verdict: Verdict) {
    if let Some(c) = VERDICT_COUNTS.get_ptr_mut(verdict as u32) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn add(map: &PerCpuArray<Counters>, id: u32, new_conn: bool, bytes: u64, out: bool) {
    if let Some(c) = map.get_ptr_mut(id) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe {
            (*c).conns += new_conn as u64;
            if out {
                (*c).packets_out += 1;
                (*c).bytes_out += bytes;
            } else {
                (*c).packets_in += 1;
                (*c).bytes_in += bytes;
            }
        }
    }
}

/// Counts a client → real server packet on its service and real server.
#[inline(always)]
pub fn count_in(service: u32, real: u32, new_conn: bool, bytes: u64) {
    add(&SERVICE_STATS, service, new_conn, bytes, false);
    add(&REAL_STATS, real, new_conn, bytes, false);
}

/// Counts a real server → client packet (NAT replies).
#[inline(always)]
pub fn count_out(service: u32, real: u32, bytes: u64) {
    add(&SERVICE_STATS, service, false, bytes, true);
    add(&REAL_STATS, real, false, bytes, true);
}
