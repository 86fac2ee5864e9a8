//! Connection events for the sync MASTER (rvs_common::events): written only where the
//! program already writes a connection entry, and only while rvsd asks for them (one flag
//! test otherwise). A full ring counts a lost event; rvsd then scans the table instead.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use rvs_common::{
    ConnEntry, FlowKey, Settings,
    events::{EVENT_NEW, EVENT_STATE, SETTINGS_F_SYNC_EVENTS, SYNC_EVENTS_BYTES, SyncEvent},
};

/// The events.
#[map(name = "RVS_SYNC_EVENTS")]
pub static SYNC_EVENTS: RingBuf = RingBuf::pinned(SYNC_EVENTS_BYTES, 0);
/// Events lost to a full ring.
#[map(name = "RVS_SYNC_LOST")]
pub static SYNC_LOST: PerCpuArray<u64> = PerCpuArray::pinned(1, 0);

#[inline(always)]
fn emit(kind: u8, key: &FlowKey, conn: &ConnEntry, state: u8) {
    let event = SyncEvent {
        key: *key,
        last_seen: conn.last_seen,
        real: conn.real,
        real_gen: conn.real_gen,
        peer_addr: conn.peer_addr,
        peer_port: conn.peer_port,
        state,
        flags: conn.flags,
        kind,
        pad: [0; 7],
    };
    if SYNC_EVENTS.output::<SyncEvent>(&event, 0).is_err()
        && let Some(lost) = SYNC_LOST.get_ptr_mut(0)
    {
        // SAFETY: this CPU's slot; atomic anyway (cheap, and preemption-safe).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(lost, 1) };
    }
}

/// A new connection `conn` was stored under `key`.
#[inline(always)]
pub fn new_conn(settings: &Settings, key: &FlowKey, conn: &ConnEntry) {
    if settings.flags & SETTINGS_F_SYNC_EVENTS != 0 {
        emit(EVENT_NEW, key, conn, conn.state);
    }
}

/// Connection `conn` (under `key`) moves to `state`.
#[inline(always)]
pub fn state_change(settings: &Settings, key: &FlowKey, conn: &ConnEntry, state: u8) {
    if state != conn.state && settings.flags & SETTINGS_F_SYNC_EVENTS != 0 {
        emit(EVENT_STATE, key, conn, state);
    }
}
