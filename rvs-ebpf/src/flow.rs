//! Connection state: timeouts by state, IPVS's TCP transitions by direction
//! (`rvs_common::tcp`), and the rule for reusing a closed entry for a new connection.

use core::intrinsics::{AtomicOrdering, atomic_or, atomic_xadd};

use aya_ebpf::helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use rvs_common::{ConnState, IPPROTO_TCP, LOAD_F_OVERLOAD, RealLoad, Settings, tcp};

use crate::maps::{CLOCK, REAL_LOAD};

/// CLOCK_MONOTONIC_COARSE in ns, the clock of every `last_seen`: the helper is called once
/// per tick and CPU, other packets reuse that reading (`rvs_common::ClockCache`). The
/// verifier inlines `bpf_jiffies64` into a load and the per-CPU array lookup into a few
/// instructions, where each helper call costs ~13 ns here. A reading taken in the instant
/// between the tick's jiffies and clock updates stays one tick behind until the next tick:
/// within the coarse clock's own granularity.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: plain helper calls.
    let jiffies = unsafe { bpf_jiffies64() };
    match CLOCK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; a program runs to its end on one CPU.
        Some(c) => unsafe {
            if (*c).jiffies != jiffies {
                (*c).now = bpf_ktime_get_coarse_ns();
                (*c).jiffies = jiffies;
            }
            (*c).now
        },
        // SAFETY: plain helper call.
        None => unsafe { bpf_ktime_get_coarse_ns() },
    }
}

/// Adds `delta` (wrapping) to real `id`'s `(active << 32) | inactive` when its load still
/// belongs to generation `generation`; the counts before the add.
#[inline(always)]
fn add_load(id: u32, generation: u32, delta: u64) -> Option<(u64, *mut RealLoad)> {
    let load = REAL_LOAD.get_ptr_mut(id)?;
    // SAFETY: a valid array value shared by all CPUs, hence the atomic add. SeqCst: the BPF
    // backend lowers a relaxed add to XADD, which returns nothing (see schedule.rs).
    unsafe {
        if (*load).generation != generation {
            return None;
        }
        let old = atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(&mut (*load).conns, delta);
        Some((old, load))
    }
}

/// A new connection in `state` is bound to real `id` (IPVS's `ip_vs_bind_dest` plus the
/// first state change): counted, then the upper threshold checked as the kernel does
/// (`active + inactive >= upper` sets OVERLOAD).
#[inline(always)]
pub fn bind(id: u32, generation: u32, state: u8) {
    let unit = RealLoad::unit(state);
    if let Some((old, load)) = add_load(id, generation, unit) {
        let now = old.wrapping_add(unit);
        let total = RealLoad::active(now).wrapping_add(RealLoad::inactive(now));
        // SAFETY: as in add_load.
        unsafe {
            let upper = (*load).u_threshold;
            if upper != 0 && total >= upper {
                atomic_or::<u32, u32, { AtomicOrdering::SeqCst }>(
                    &mut (*load).flags,
                    LOAD_F_OVERLOAD,
                );
            }
        }
    }
}

/// A connection of real `id` moved from state `from` to `to`: counted on the other side
/// when that changes active ↔ inactive (IPVS's `set_tcp_state`; no threshold is checked).
#[inline(always)]
pub fn moved(id: u32, generation: u32, from: u8, to: u8) {
    let (a, b) = (RealLoad::unit(from), RealLoad::unit(to));
    if a != b {
        let _ = add_load(id, generation, b.wrapping_sub(a));
    }
}

/// An entry in `state` is replaced (reused for a new connection): no longer counted.
/// (Clearing OVERLOAD is rvsd's, at its next expiry pass, as the kernel's unbind would.)
#[inline(always)]
pub fn unbind(id: u32, generation: u32, state: u8) {
    let _ = add_load(id, generation, 0u64.wrapping_sub(RealLoad::unit(state)));
}

/// The idle timeout of a connection in `state`.
#[inline(always)]
pub fn timeout_ns(settings: &Settings, state: u8) -> u64 {
    // Constant indexes: the verifier cannot follow a bounds check on a copy of the index.
    let t = &settings.timeouts_ns;
    match state {
        0 => t[0],
        1 => t[1],
        2 => t[2],
        3 => t[3],
        5 => t[5],
        6 => t[6],
        7 => t[7],
        8 => t[8],
        9 => t[9],
        10 => t[10],
        11 => t[11],
        _ => t[ConnState::Udp as usize],
    }
}

/// The state a packet moves a connection to: UDP flows have one state; TCP follows IPVS's
/// table for the direction.
#[inline(always)]
pub fn next_state(dir: tcp::Direction, current: u8, proto: u8, flags: u8) -> u8 {
    if proto != IPPROTO_TCP {
        return ConnState::Udp as u8;
    }
    tcp::next_state(dir, current, flags)
}

/// Whether a SYN on an entry in `state` starts a new connection (scheduled afresh), as
/// IPVS's `conn_reuse_mode` does for TIME_WAIT and CLOSE (and rvs for FIN_WAIT too).
#[inline(always)]
pub fn reusable(state: u8) -> bool {
    state == ConnState::FinWait as u8
        || state == ConnState::Close as u8
        || state == ConnState::TimeWait as u8
}
