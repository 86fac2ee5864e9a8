//! The sync MASTER's connection events (rvs_common::events): switching the program's
//! events on and off, draining the ring buffer into connections by address, and the count
//! of events lost to a full ring (the caller then scans the table instead).

use std::os::fd::{AsFd, OwnedFd};

use rvs_common::{
    ConnEntry,
    events::{SETTINGS_F_SYNC_EVENTS, SYNC_EVENTS, SYNC_LOST, SyncEvent},
};

use crate::{ConnView, Dataplane, DataplaneError, Result, io_err, map_err};

impl Dataplane {
    /// Asks the XDP program to write connection events (a sync MASTER runs) or to stop.
    pub fn set_sync_events(&mut self, on: bool) -> Result<()> {
        self.sync_events_on = on;
        let s = self.settings;
        self.set_settings(&s)
    }

    /// Whether the program writes connection events.
    pub fn sync_events_on(&self) -> bool {
        self.settings.flags & SETTINGS_F_SYNC_EVENTS != 0
    }

    /// The `SETTINGS_F_SYNC_EVENTS` bit as the settings should carry it.
    pub(crate) fn sync_events_flag(&self) -> u64 {
        if self.sync_events_on {
            SETTINGS_F_SYNC_EVENTS
        } else {
            0
        }
    }

    /// A descriptor of the ring buffer that becomes readable when events wait (for epoll,
    /// e.g. tokio's AsyncFd).
    pub fn sync_events_fd(&self) -> Result<OwnedFd> {
        self.sync_events
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_err("duplicating the sync events descriptor"))
    }

    /// Takes up to `max` events off the ring: the connections they name, by address (an
    /// event whose real server is no longer the one it was bound to is skipped).
    pub fn drain_sync_events(&mut self, max: usize) -> Vec<ConnView> {
        let mut raw = Vec::new();
        while raw.len() < max {
            let Some(item) = self.sync_events.next() else {
                break;
            };
            if item.len() >= size_of::<SyncEvent>() {
                // SAFETY: the program writes whole SyncEvents; read unaligned from the ring.
                raw.push(unsafe { item.as_ptr().cast::<SyncEvent>().read_unaligned() });
            }
        }
        raw.iter()
            .filter_map(|e| {
                let entry = ConnEntry {
                    last_seen: e.last_seen,
                    real: e.real,
                    real_gen: e.real_gen,
                    peer_addr: e.peer_addr,
                    peer_port: e.peer_port,
                    state: e.state,
                    flags: e.flags,
                    ..ConnEntry::default()
                };
                if !self.conn_is_current(&entry) {
                    return None;
                }
                self.view_of(&e.key, &entry)
            })
            .collect()
    }

    /// Events the program could not write because the ring was full, since load.
    pub fn sync_events_lost(&self) -> Result<u64> {
        let values = self.sync_lost.get(&0, 0).map_err(map_err(SYNC_LOST))?;
        Ok(values.iter().sum())
    }
}

/// The ring buffer map of a loaded object.
pub(crate) fn take_ring(ebpf: &mut aya::Ebpf) -> Result<aya::maps::RingBuf<aya::maps::MapData>> {
    let map = ebpf
        .take_map(SYNC_EVENTS)
        .ok_or(DataplaneError::MissingMap(SYNC_EVENTS))?;
    aya::maps::RingBuf::try_from(map).map_err(map_err(SYNC_EVENTS))
}
