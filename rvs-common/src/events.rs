//! Connection events for the sync MASTER (docs/design/sync-ringbuf.md): the XDP program
//! writes one to the `RVS_SYNC_EVENTS` ring buffer where it already writes a connection
//! entry (a new flow, a state change), when `SETTINGS_F_SYNC_EVENTS` is set.

use crate::FlowKey;

/// Ring buffer of [`SyncEvent`]s.
pub const SYNC_EVENTS: &str = "RVS_SYNC_EVENTS";
/// Per-CPU u64: events the program could not write because the ring was full.
pub const SYNC_LOST: &str = "RVS_SYNC_LOST";
/// Bytes of the ring buffer (a power of two): about 87 000 events of 48 bytes (each with
/// the ring's 8-byte header).
pub const SYNC_EVENTS_BYTES: u32 = 4 << 20;

/// Settings flag: a sync MASTER runs; write connection events.
pub const SETTINGS_F_SYNC_EVENTS: u64 = 1 << 1;

/// A connection entered the table.
pub const EVENT_NEW: u8 = 1;
/// A connection's state changed.
pub const EVENT_STATE: u8 = 2;

/// One connection event: the request entry's key and what the entry now holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncEvent {
    /// The request direction's 5-tuple.
    pub key: FlowKey,
    /// The entry's last-seen (bpf_ktime_get_coarse_ns).
    pub last_seen: u64,
    /// Real-server id.
    pub real: u32,
    /// Its generation when the connection was bound.
    pub real_gen: u32,
    /// NAT: the real server's address (network order).
    pub peer_addr: u32,
    /// NAT: the real server's port (network order).
    pub peer_port: u16,
    /// The new `ConnState` as u8.
    pub state: u8,
    /// `CONN_F_*` flags of the entry.
    pub flags: u8,
    /// `EVENT_*`.
    pub kind: u8,
    /// Explicit padding.
    pub pad: [u8; 7],
}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, plain integers with explicit padding.
unsafe impl aya::Pod for SyncEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_48_bytes_without_implicit_padding() {
        assert_eq!(size_of::<SyncEvent>(), 48);
        assert!(SYNC_EVENTS_BYTES.is_power_of_two());
    }
}
