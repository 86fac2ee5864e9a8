//! Commit-or-nothing batch writes and recovery (rvs_common::commit, docs/design/commit.md).
//!
//! A plan is written in this order, so the XDP program sees the whole old or the whole new
//! configuration of every service the batch touches, and a crash at any point leaves maps a
//! restarted rvsd finishes deterministically:
//!
//! 1. the journal (every real-server write of the batch), then `open` = next epoch;
//! 2. new real servers, counters and scheduler tables: fresh ids and slots, which no
//!    visible service points at;
//! 3. service adds, edits and deletes into the copy the program does not read;
//! 4. the flip: `epoch` = next (the commit point, one aligned store);
//! 5. the journaled changes to real servers in use (edits, removed servers' tombstones), the
//!    fwmark rules and the NAT bookkeeping;
//! 6. the same service writes into the other copy, then `open` = 0.
//!
//! At load, [`Dataplane::recover`] rolls a batch stopped before step 4 back (its new real
//! servers become unused again) and one stopped after it forward (step 5 redone), and
//! brings the idle copy in line with the live one.

use std::{collections::HashSet, sync::atomic::Ordering, sync::atomic::fence};

use aya::maps::{HashMap, MapData, MapError};
use rvs_common::{
    RealEntry, ServiceEntry, ServiceKey,
    commit::{CommitState, JOURNAL_EDIT, JOURNAL_FRESH, JOURNAL_RETIRE, JournalRecord, Recovery},
    maps,
};

use crate::{Dataplane, DataplaneError, Plan, Result, map_err};

/// Which field of the commit word a store writes.
#[derive(Clone, Copy)]
enum Field {
    Epoch,
    Open,
    JournalLen,
}

impl Dataplane {
    /// The commit word as the maps hold it.
    pub(crate) fn commit_state(&self) -> CommitState {
        self.commit.get(0).unwrap_or_default()
    }

    /// One aligned 32-bit store into the commit word, ordered after every earlier write
    /// (map syscalls have returned; mmap stores are fenced).
    fn store(&mut self, field: Field, value: u32) {
        let Some(p) = self.commit.ptr(0) else {
            return;
        };
        fence(Ordering::SeqCst);
        // SAFETY: p points into the one-element mapping; u32 fields are 4-byte aligned.
        unsafe {
            let f = match field {
                Field::Epoch => std::ptr::addr_of_mut!((*p).epoch),
                Field::Open => std::ptr::addr_of_mut!((*p).open),
                Field::JournalLen => std::ptr::addr_of_mut!((*p).journal_len),
            };
            f.write_volatile(value);
        }
        fence(Ordering::SeqCst);
    }

    /// The service map copy `copy` (0 or 1).
    fn copy_mut(&mut self, copy: u32) -> &mut HashMap<MapData, ServiceKey, ServiceEntry> {
        if copy == 0 {
            &mut self.services
        } else {
            &mut self.services_b
        }
    }

    /// Every entry of the service copy the program reads.
    pub(crate) fn live_services(&self) -> Vec<(ServiceKey, ServiceEntry)> {
        let live = if self.commit_state().active() == 0 {
            &self.services
        } else {
            &self.services_b
        };
        live.iter().filter_map(|e| e.ok()).collect()
    }

    fn write_services(
        &mut self,
        copy: u32,
        upserts: &[(ServiceKey, ServiceEntry)],
        deletes: &[ServiceKey],
    ) -> Result<()> {
        let map = self.copy_mut(copy);
        for (key, entry) in upserts {
            map.insert(key, entry, 0).map_err(map_err(maps::SERVICES))?;
        }
        for key in deletes {
            match map.remove(key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(maps::SERVICES)(e)),
            }
        }
        Ok(())
    }

    /// Writes `plan` commit-or-nothing (see the module comment).
    pub(crate) fn write(&mut self, plan: &Plan) -> Result<()> {
        if plan.is_empty() {
            return Ok(());
        }
        if self.commit_state().open != 0 {
            // An earlier write of this process failed half-way: finish it first.
            self.recover()?;
        }
        // The address filter first holds every new VIP and NAT address (before a packet can
        // need them); addresses are released only after their services are gone.
        for (key, _) in &plan.upsert_services {
            self.hold_service_key(*key);
        }
        for (_, entry) in plan.reals.iter().chain(&plan.retire_reals) {
            if entry.in_use() && entry.forward == rvs_common::Forward::Masq as u8 {
                self.hold_nat(entry.addr);
            }
        }
        self.flush_filter();
        if plan.mark_rules.as_ref().is_some_and(|r| !r.is_empty()) {
            // Off before any rule can mark a packet for an address the filter lacks.
            self.fwmark_rules = true;
            self.refresh_flags()?;
        }
        let next = self.commit_state().next_epoch();
        let fresh: HashSet<u32> = plan.reset_real_counters.iter().copied().collect();
        let records: Vec<JournalRecord> = plan
            .reals
            .iter()
            .map(|&(id, entry)| JournalRecord {
                id,
                kind: if fresh.contains(&id) {
                    JOURNAL_FRESH
                } else {
                    JOURNAL_EDIT
                },
                entry,
            })
            .chain(plan.retire_reals.iter().map(|&(id, entry)| JournalRecord {
                id,
                kind: JOURNAL_RETIRE,
                entry,
            }))
            .collect();
        if records.len() > self.limits.reals as usize {
            return Err(DataplaneError::Journal(records.len()));
        }
        // 1. The journal, then the batch is open.
        self.journal.write(0, &records);
        self.store(Field::JournalLen, records.len() as u32);
        self.store(Field::Open, next);
        match self.write_before_flip(plan, &records, next) {
            Ok(()) => {}
            Err(e) => {
                // Nothing is visible yet: undo, and plan from what the maps hold again.
                self.recover()?;
                let _ = self.adopt_maps();
                return Err(e);
            }
        }
        // 4. The commit point.
        self.store(Field::Epoch, next);
        // 5. Changes to real servers in use, then what follows from them.
        self.redo(&records);
        if let Some(rules) = &plan.mark_rules {
            // Count 0 first, so no walk sees half-written rules (new flows in that moment
            // meet the address services only).
            self.mark_count
                .set(0, 0, 0)
                .map_err(map_err(maps::MARK_COUNT))?;
            for (i, r) in rules.iter().enumerate() {
                self.mark_rules
                    .set(i as u32, *r, 0)
                    .map_err(map_err(maps::MARK_RULES))?;
            }
            self.mark_count
                .set(0, rules.len() as u32, 0)
                .map_err(map_err(maps::MARK_COUNT))?;
            // With no rules left the filter goes back on (the flags follow below).
            self.fwmark_rules = !rules.is_empty();
        }
        for key in &plan.delete_services {
            if self.service_keys.remove(key) {
                self.filter.remove(key.vip);
            }
        }
        self.flush_filter();
        for (id, entry) in plan.reals.iter().chain(&plan.retire_reals) {
            if entry.in_use() && entry.forward == rvs_common::Forward::Masq as u8 {
                self.nat_reals.insert(*id, entry.addr);
            } else {
                self.nat_reals.remove(id);
            }
        }
        self.sync_nat_sources()?;
        // 6. The idle copy catches up; the batch is closed.
        self.write_services((next & 1) ^ 1, &plan.upsert_services, &plan.delete_services)?;
        self.store(Field::Open, 0);
        self.store(Field::JournalLen, 0);
        Ok(())
    }

    /// Steps 2 and 3: what no reader sees until the flip.
    fn write_before_flip(
        &mut self,
        plan: &Plan,
        records: &[JournalRecord],
        next: u32,
    ) -> Result<()> {
        for r in records.iter().filter(|r| r.kind == JOURNAL_FRESH) {
            self.write_load(r.id, &r.entry);
            self.reals.set(r.id, r.entry);
        }
        for id in &plan.reset_real_counters {
            self.real_stats
                .set(*id, Self::zeros()?, 0)
                .map_err(map_err(maps::REAL_STATS))?;
        }
        for id in &plan.reset_services {
            self.service_stats
                .set(*id, Self::zeros()?, 0)
                .map_err(map_err(maps::SERVICE_STATS))?;
            self.cursors
                .set(*id, 0, 0)
                .map_err(map_err(maps::CURSORS))?;
        }
        for (off, table) in &plan.tables {
            self.dispatch.write(*off, table);
        }
        self.write_services(next & 1, &plan.upsert_services, &plan.delete_services)
    }

    /// Step 5's real-server writes (also the roll-forward of a batch a crash interrupted).
    fn redo(&mut self, records: &[JournalRecord]) {
        for r in records {
            match r.kind {
                JOURNAL_EDIT => {
                    self.write_load(r.id, &r.entry);
                    self.reals.set(r.id, r.entry);
                }
                JOURNAL_RETIRE => self.reals.set(r.id, r.entry),
                _ => {}
            }
        }
    }

    /// Finishes a batch an earlier writer left open (rolled back before its flip, forward
    /// after it) and makes the idle service copy equal to the live one (which also fills a
    /// copy created by this load, when an rvsd without it pinned the maps). Returns what
    /// was done.
    pub(crate) fn recover(&mut self) -> Result<Recovery> {
        let state = self.commit_state();
        let recovery = state.recovery();
        let len = state.journal_len.min(self.limits.reals);
        let records: Vec<JournalRecord> = (0..len).filter_map(|i| self.journal.get(i)).collect();
        match recovery {
            Recovery::Clean => {}
            Recovery::RollBack => {
                // A new real server's id was unused before the batch: an entry of the same
                // generation and nothing else, as the planner left it.
                for r in records.iter().filter(|r| r.kind == JOURNAL_FRESH) {
                    let unused = RealEntry {
                        generation: r.entry.generation,
                        ..RealEntry::default()
                    };
                    self.reals.set(r.id, unused);
                }
            }
            Recovery::RollForward => self.redo(&records),
        }
        let repaired = self.resync_copies()?;
        if state.open != 0 {
            self.store(Field::Open, 0);
            self.store(Field::JournalLen, 0);
        }
        if recovery != Recovery::Clean {
            tracing::warn!(
                ?recovery,
                epoch = state.epoch,
                batch = state.open,
                real_servers = records.len(),
                services = repaired,
                "finished a map batch an interrupted rvsd left open"
            );
        }
        Ok(recovery)
    }

    /// Makes the idle service copy equal to the live one; the number of entries fixed.
    fn resync_copies(&mut self) -> Result<usize> {
        let live: std::collections::HashMap<ServiceKey, ServiceEntry> =
            self.live_services().into_iter().collect();
        let idle_copy = self.commit_state().active() ^ 1;
        let idle: Vec<(ServiceKey, ServiceEntry)> = self
            .copy_mut(idle_copy)
            .iter()
            .filter_map(|e| e.ok())
            .collect();
        let idle_keys: HashSet<ServiceKey> = idle.iter().map(|(k, _)| *k).collect();
        let deletes: Vec<ServiceKey> = idle
            .iter()
            .filter(|(k, _)| !live.contains_key(k))
            .map(|(k, _)| *k)
            .collect();
        let idle_map: std::collections::HashMap<ServiceKey, ServiceEntry> =
            idle.into_iter().collect();
        let upserts: Vec<(ServiceKey, ServiceEntry)> = live
            .iter()
            .filter(|(k, e)| !idle_keys.contains(k) || idle_map.get(k) != Some(e))
            .map(|(k, e)| (*k, *e))
            .collect();
        let fixed = upserts.len() + deletes.len();
        self.write_services(idle_copy, &upserts, &deletes)?;
        Ok(fixed)
    }
}
