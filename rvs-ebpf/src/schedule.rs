//! Scheduling a new connection: the service's dispatch table (ring cursor for rr/wrr,
//! IPVS's mh hash for Maglev) and persistence templates.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use rvs_common::{
    DispatchKind, NO_REAL, NS_PER_SEC, PersistEntry, PersistKey, ServiceEntry,
    hash::ipvs_mh_source_hash,
};

use crate::maps::{CURSORS, DISPATCH, PERSIST, REALS};

/// Picks a real server id for a new flow of `svc`, or None when none is available.
#[inline(always)]
pub fn schedule(svc: &ServiceEntry, saddr: u32, sport: u16) -> Option<u32> {
    if svc.table_len == 0 {
        return None;
    }
    let pos = if svc.kind == DispatchKind::Ring as u8 {
        let cursor = CURSORS.get_ptr_mut(svc.id)?;
        // SAFETY: the pointer is a valid u64 slot of the cursor array, shared by all CPUs,
        // hence the atomic add (IPVS's rr/wrr advance one shared position too). SeqCst, not
        // Relaxed: LLVM's BPF backend lowers a relaxed add to the old XADD, which returns
        // nothing, and silently uses the operand as the "previous value".
        let n = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(cursor, 1) };
        (n % svc.table_len as u64) as u32
    } else {
        let with_port = svc.kind == DispatchKind::MaglevSourcePort as u8;
        ipvs_mh_source_hash(saddr, sport, with_port) % svc.table_len
    };
    let real = *DISPATCH.get(svc.table_off.wrapping_add(pos))?;
    if real == NO_REAL { None } else { Some(real) }
}

/// The real server a live persistence template sends this client to, if any.
#[inline(always)]
pub fn persisted_real(key: &PersistKey, timeout_secs: u32, now: u64) -> Option<u32> {
    // SAFETY: read while the program runs (RCU-protected).
    let t = unsafe { PERSIST.get(key) }?;
    if now.saturating_sub(t.last_seen) > timeout_secs as u64 * NS_PER_SEC {
        return None;
    }
    let real = REALS.get(t.real)?;
    (real.generation == t.real_gen && real.addr != 0).then_some(t.real)
}

/// (Re)makes the client's persistence template.
#[inline(always)]
pub fn remember(key: &PersistKey, real: u32, real_gen: u32, now: u64) {
    let template = PersistEntry {
        last_seen: now,
        real,
        real_gen,
    };
    let _ = PERSIST.insert(key, template, 0);
}
