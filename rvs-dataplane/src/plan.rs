//! Sans-I/O planning: turns a desired [`Config`] into the map writes that realise it.
//!
//! The [`Planner`] remembers which ids, generations and dispatch slots it handed out, so a new
//! configuration becomes a diff: unchanged services are not touched, real servers that stay
//! keep their id (and so their connections and counters), removed ones get their generation
//! bumped so the XDP program stops forwarding their connections, as IPVS does. Planning is
//! all-or-nothing: on error the planner is unchanged.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use rvs_common::{
    DispatchKind, Forward, NO_REAL, RealEntry, SVC_F_SLOPPY_TCP, ServiceEntry, ServiceKey,
};
use rvs_config::{Config, ForwardMethod, Limits, Scheduler, ServiceId, VirtualService};
use rvs_sched::Dest;

/// Longest scheduler table one service may have (a wrr cycle or a Maglev table).
pub const MAX_TABLE_LEN: usize = 1 << 20;

/// How long a replaced dispatch range stays untouched before it is reused, so an XDP
/// program that read the old service entry an instant ago never sees it rewritten.
pub const SLOT_GRACE_MS: u64 = 1_000;

/// Why a configuration cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// No free service id (limits.services reached).
    #[error("no room for service {0}: [limits] services is exhausted")]
    NoServiceId(ServiceId),
    /// No free real-server id (limits.reals reached).
    #[error("no room for the real servers of service {0}: [limits] reals is exhausted")]
    NoRealId(ServiceId),
    /// No contiguous free dispatch slots for the table.
    #[error(
        "no room for the {len}-slot scheduler table of service {service}: raise [limits] dispatch_slots"
    )]
    NoSlots {
        /// Service.
        service: ServiceId,
        /// Slots needed.
        len: usize,
    },
    /// The dataplane has no implementation of this scheduler yet.
    #[error("service {service}: scheduler {scheduler} is not supported by rvs yet")]
    UnsupportedScheduler {
        /// Service.
        service: ServiceId,
        /// The scheduler.
        scheduler: rvs_config::Scheduler,
    },
    /// The scheduler refused the real servers (e.g. a wrr cycle too long).
    #[error("service {service}: {source}")]
    Scheduler {
        /// Service.
        service: ServiceId,
        /// What the scheduler said.
        source: rvs_sched::Error,
    },
}

/// Map writes that take the maps from the previous state to the new one, in the order the
/// I/O layer must apply them (new reals and tables before the service entries that point
/// at them; removals last).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Real-server entries to write (new ones, and tombstones with a bumped generation).
    pub reals: Vec<(u32, RealEntry)>,
    /// Real-server ids whose counters start from zero.
    pub reset_real_counters: Vec<u32>,
    /// Service ids whose counters and cursors start from zero.
    pub reset_services: Vec<u32>,
    /// Scheduler tables to write: (first slot, real ids).
    pub tables: Vec<(u32, Vec<u32>)>,
    /// Service entries to insert or replace.
    pub upsert_services: Vec<(ServiceKey, ServiceEntry)>,
    /// Service keys to delete.
    pub delete_services: Vec<ServiceKey>,
    /// Tombstones for removed real servers, written after the services stop pointing at them.
    pub retire_reals: Vec<(u32, RealEntry)>,
}

impl Plan {
    /// True when applying the plan would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// A pool of small integer ids.
#[derive(Debug, Clone)]
struct IdPool {
    next: u32,
    limit: u32,
    free: Vec<u32>,
}

impl IdPool {
    fn new(limit: u32) -> Self {
        Self {
            next: 0,
            limit,
            free: Vec::new(),
        }
    }

    fn take(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop() {
            return Some(id);
        }
        if self.next < self.limit {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }

    fn give(&mut self, id: u32) {
        self.free.push(id);
    }
}

/// First-fit allocator of contiguous dispatch slots with a grace period before reuse.
#[derive(Debug, Clone)]
struct SlotAlloc {
    /// Free ranges: start → length, coalesced.
    free: BTreeMap<u32, u32>,
    /// Ranges released at a time (ms) and not yet reusable.
    quarantine: Vec<(u64, u32, u32)>,
}

impl SlotAlloc {
    fn new(capacity: u32) -> Self {
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        Self {
            free,
            quarantine: Vec::new(),
        }
    }

    fn take(&mut self, len: u32) -> Option<u32> {
        let (&start, &have) = self.free.iter().find(|&(_, &have)| have >= len)?;
        self.free.remove(&start);
        if have > len {
            self.free.insert(start + len, have - len);
        }
        Some(start)
    }

    fn release(&mut self, now_ms: u64, start: u32, len: u32) {
        if len > 0 {
            self.quarantine.push((now_ms, start, len));
        }
    }

    fn expire(&mut self, now_ms: u64) {
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .quarantine
            .drain(..)
            .partition(|&(at, _, _)| now_ms.saturating_sub(at) >= SLOT_GRACE_MS);
        self.quarantine = waiting;
        for (_, start, len) in ready {
            self.insert_free(start, len);
        }
    }

    fn insert_free(&mut self, mut start: u32, mut len: u32) {
        if let Some((&prev, &plen)) = self.free.range(..start).next_back()
            && prev + plen == start
        {
            self.free.remove(&prev);
            start = prev;
            len += plen;
        }
        if let Some(&nlen) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += nlen;
        }
        self.free.insert(start, len);
    }
}

/// What the planner remembers about one service it wrote.
#[derive(Debug, Clone)]
struct ServiceState {
    config: VirtualService,
    entry: ServiceEntry,
    /// (address, port) → real-server id and the entry written for it.
    reals: HashMap<(Ipv4Addr, u16), (u32, RealEntry)>,
    /// (address, port) → latest non-zero weight (IPVS's last_weight, used by mh).
    last_weights: HashMap<(Ipv4Addr, u16), u32>,
}

/// Remembers what was written to the maps and plans the next change.
#[derive(Debug, Clone)]
pub struct Planner {
    services: HashMap<ServiceId, ServiceState>,
    service_ids: IdPool,
    real_ids: IdPool,
    generations: Vec<u32>,
    slots: SlotAlloc,
}

fn service_key(id: &ServiceId) -> ServiceKey {
    ServiceKey {
        vip: u32::from_ne_bytes(id.address.octets()),
        port: id.port.to_be(),
        proto: id.protocol.number(),
        pad: 0,
    }
}

fn forward(method: ForwardMethod) -> Forward {
    match method {
        ForwardMethod::Dr => Forward::DirectRoute,
        ForwardMethod::Tun => Forward::Tunnel,
        ForwardMethod::Nat => Forward::Masq,
    }
}

/// The scheduler table for a service's real servers given in config order, as indices
/// into that list. `last_weight(i)` is real `i`'s latest non-zero weight (mh keeps a
/// quiesced server's slots, as IPVS does).
fn table_for(
    svc: &VirtualService,
    last_weight: impl Fn(usize) -> u32,
) -> Result<(DispatchKind, Vec<u32>), PlanError> {
    let sched_err = |source| PlanError::Scheduler {
        service: svc.id(),
        source,
    };
    // IPVS keeps a service's servers newest first; the config lists them in the order they
    // were added, so the kernel's list is the config reversed.
    let n = svc.reals.len();
    let to_config_index = |i: u32| {
        if i == NO_REAL {
            NO_REAL
        } else {
            (n as u32) - 1 - i
        }
    };
    let dests = |weight: &dyn Fn(usize) -> u32| -> Vec<Dest> {
        (0..n)
            .rev()
            .map(|i| Dest {
                addr: svc.reals[i].address,
                port: svc.reals[i].port.unwrap_or(svc.port),
                weight: weight(i),
            })
            .collect()
    };
    let current = |i: usize| svc.reals[i].weight;
    let (kind, table) = match svc.scheduler {
        Scheduler::Rr => (DispatchKind::Ring, rvs_sched::rr_ring(&dests(&current))),
        Scheduler::Wrr => (
            DispatchKind::Ring,
            rvs_sched::wrr_ring(&dests(&current), MAX_TABLE_LEN).map_err(sched_err)?,
        ),
        Scheduler::Mh => {
            let size = svc.mh_table_size.unwrap_or(rvs_sched::IPVS_MH_TABLE_SIZE);
            let kind = if svc.has_flag(rvs_config::SchedFlag::Flag2) {
                DispatchKind::MaglevSourcePort
            } else {
                DispatchKind::MaglevSource
            };
            let table = rvs_sched::maglev_table(&dests(&last_weight), size).map_err(sched_err)?;
            // A quiesced server keeps its slots, but they take no new connection (IPVS
            // drops those SYNs: mh without mh-fallback does not rehash).
            let table: Vec<u32> = table
                .into_iter()
                .map(|i| {
                    if i != NO_REAL && current(n - 1 - i as usize) == 0 {
                        NO_REAL
                    } else {
                        i
                    }
                })
                .collect();
            // A table with no server at all is the same as no table.
            let table = if table.iter().all(|&i| i == NO_REAL) {
                Vec::new()
            } else {
                table
            };
            (kind, table)
        }
        other => {
            return Err(PlanError::UnsupportedScheduler {
                service: svc.id(),
                scheduler: other,
            });
        }
    };
    Ok((kind, table.into_iter().map(to_config_index).collect()))
}

impl Planner {
    /// A planner for empty maps of the given capacities.
    pub fn new(limits: &Limits) -> Self {
        Self {
            services: HashMap::new(),
            service_ids: IdPool::new(limits.services),
            real_ids: IdPool::new(limits.reals),
            generations: vec![0; limits.reals as usize],
            slots: SlotAlloc::new(limits.dispatch_slots),
        }
    }

    /// Number of services currently planned.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The real-server id given to `(service, address, port)`, if any.
    pub fn real_id(&self, service: &ServiceId, address: Ipv4Addr, port: u16) -> Option<u32> {
        self.services
            .get(service)?
            .reals
            .get(&(address, port))
            .map(|&(rid, _)| rid)
    }

    /// The service id and map entry given to `service`, if any.
    pub fn service_entry(&self, service: &ServiceId) -> Option<ServiceEntry> {
        self.services.get(service).map(|s| s.entry)
    }

    /// Plans the writes that take the maps to `config`; `now_ms` is a monotonic clock used
    /// to age replaced tables. On error nothing is changed.
    pub fn plan(&mut self, config: &Config, now_ms: u64) -> Result<Plan, PlanError> {
        let mut next = self.clone();
        let plan = next.plan_into(config, now_ms)?;
        *self = next;
        Ok(plan)
    }

    fn tombstone(&mut self, id: u32, plan: &mut Plan) {
        let g = &mut self.generations[id as usize];
        *g = g.wrapping_add(1);
        plan.retire_reals.push((
            id,
            RealEntry {
                generation: *g,
                ..RealEntry::default()
            },
        ));
        self.real_ids.give(id);
    }

    fn plan_into(&mut self, config: &Config, now_ms: u64) -> Result<Plan, PlanError> {
        self.slots.expire(now_ms);
        let mut plan = Plan::default();
        let wanted: HashMap<ServiceId, &VirtualService> =
            config.services.iter().map(|s| (s.id(), s)).collect();

        // Removed services first, so their ids and slots can serve new ones (slots only
        // after the grace period).
        let mut removed: Vec<ServiceId> = self
            .services
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        removed.sort();
        for id in removed {
            let Some(old) = self.services.remove(&id) else {
                continue;
            };
            plan.delete_services.push(service_key(&id));
            self.slots
                .release(now_ms, old.entry.table_off, old.entry.table_len);
            self.service_ids.give(old.entry.id);
            let mut ids: Vec<u32> = old.reals.values().map(|&(rid, _)| rid).collect();
            ids.sort();
            for rid in ids {
                self.tombstone(rid, &mut plan);
            }
        }

        for svc in &config.services {
            let id = svc.id();
            let old = self.services.get(&id);
            if old.is_some_and(|o| o.config == *svc) {
                continue;
            }
            let (service_id, mut reals) = match old {
                Some(o) => (o.entry.id, o.reals.clone()),
                None => {
                    let sid = self.service_ids.take().ok_or(PlanError::NoServiceId(id))?;
                    plan.reset_services.push(sid);
                    (sid, HashMap::new())
                }
            };
            // Real servers: keep ids of those that stay, retire the rest, add the new.
            let keys: Vec<(Ipv4Addr, u16)> = svc
                .reals
                .iter()
                .map(|r| (r.address, r.port.unwrap_or(svc.port)))
                .collect();
            let mut gone: Vec<u32> = reals
                .iter()
                .filter(|(k, _)| !keys.contains(k))
                .map(|(_, &(rid, _))| rid)
                .collect();
            gone.sort();
            reals.retain(|k, _| keys.contains(k));
            for (real, key) in svc.reals.iter().zip(&keys) {
                let entry_for = |generation| RealEntry {
                    addr: u32::from_ne_bytes(real.address.octets()),
                    port: key.1.to_be(),
                    forward: forward(real.forward) as u8,
                    pad: 0,
                    generation,
                };
                match reals.get(key) {
                    Some(&(rid, written)) => {
                        let entry = entry_for(self.generations[rid as usize]);
                        if entry != written {
                            plan.reals.push((rid, entry));
                            reals.insert(*key, (rid, entry));
                        }
                    }
                    None => {
                        let rid = self.real_ids.take().ok_or(PlanError::NoRealId(id))?;
                        let entry = entry_for(self.generations[rid as usize]);
                        reals.insert(*key, (rid, entry));
                        plan.reals.push((rid, entry));
                        plan.reset_real_counters.push(rid);
                    }
                }
            }
            let old_last = old.map(|o| &o.last_weights);
            let last_weights: HashMap<(Ipv4Addr, u16), u32> = svc
                .reals
                .iter()
                .zip(&keys)
                .map(|(r, k)| {
                    let last = if r.weight > 0 {
                        r.weight
                    } else {
                        old_last.and_then(|l| l.get(k)).copied().unwrap_or(0)
                    };
                    (*k, last)
                })
                .collect();
            let (kind, table) = table_for(svc, |i| last_weights[&keys[i]])?;
            let table: Vec<u32> = table
                .into_iter()
                .map(|i| {
                    if i == NO_REAL {
                        NO_REAL
                    } else {
                        reals[&keys[i as usize]].0
                    }
                })
                .collect();
            let len = table.len();
            let off = if len == 0 {
                0
            } else {
                self.slots
                    .take(len as u32)
                    .ok_or(PlanError::NoSlots { service: id, len })?
            };
            if let Some(o) = old {
                self.slots
                    .release(now_ms, o.entry.table_off, o.entry.table_len);
            }
            if len > 0 {
                plan.tables.push((off, table));
            }
            let entry = ServiceEntry {
                id: service_id,
                table_off: off,
                table_len: len as u32,
                kind: kind as u8,
                flags: if svc.sloppy_tcp { SVC_F_SLOPPY_TCP } else { 0 },
                pad: 0,
            };
            plan.upsert_services.push((service_key(&id), entry));
            for rid in gone {
                self.tombstone(rid, &mut plan);
            }
            self.services.insert(
                id,
                ServiceState {
                    config: svc.clone(),
                    entry,
                    reals,
                    last_weights,
                },
            );
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text).expect("valid config")
    }

    const TWO: &str = r#"
[[service]]
protocol = "tcp"
address = "198.18.0.10"
port = 80
scheduler = "rr"
[[service.real]]
address = "198.18.2.11"
[[service.real]]
address = "198.18.2.12"
"#;

    #[test]
    fn first_plan_writes_everything_in_ipvs_order() {
        let mut p = Planner::new(&Limits::default());
        let plan = p.plan(&config(TWO), 0).expect("plan");
        assert_eq!(plan.reals.len(), 2);
        assert_eq!(plan.reset_real_counters, vec![0, 1]);
        assert_eq!(plan.reset_services, vec![0]);
        // rr walks the kernel's list, newest first: .12 (id 1) then .11 (id 0).
        assert_eq!(plan.tables, vec![(0, vec![1, 0])]);
        let (key, entry) = plan.upsert_services[0];
        assert_eq!(key.port, 80u16.to_be());
        assert_eq!(key.vip, u32::from_ne_bytes([198, 18, 0, 10]));
        assert_eq!(entry.table_len, 2);
        assert_eq!(entry.kind, DispatchKind::Ring as u8);
    }

    #[test]
    fn unchanged_config_plans_nothing() {
        let mut p = Planner::new(&Limits::default());
        p.plan(&config(TWO), 0).expect("plan");
        assert!(p.plan(&config(TWO), 1).expect("plan").is_empty());
    }

    #[test]
    fn weight_change_keeps_real_ids_and_counters() {
        let mut p = Planner::new(&Limits::default());
        p.plan(&config(TWO), 0).expect("plan");
        let changed = TWO.replacen(
            "address = \"198.18.2.12\"",
            "address = \"198.18.2.12\"\nweight = 0",
            1,
        );
        let plan = p.plan(&config(&changed), 5).expect("plan");
        assert!(plan.reals.is_empty(), "no real entry rewritten: {plan:?}");
        assert!(plan.reset_real_counters.is_empty());
        assert!(plan.retire_reals.is_empty());
        assert_eq!(plan.tables.len(), 1);
        assert_eq!(plan.tables[0].1, vec![0], "only .11 left in rr");
        // The old range is still in quarantine, so the new table goes elsewhere.
        assert_eq!(plan.tables[0].0, 2);
    }

    #[test]
    fn removed_real_is_retired_with_new_generation() {
        let mut p = Planner::new(&Limits::default());
        p.plan(&config(TWO), 0).expect("plan");
        let one = TWO.replacen("[[service.real]]\naddress = \"198.18.2.12\"\n", "", 1);
        let plan = p.plan(&config(&one), 0).expect("plan");
        assert_eq!(
            plan.retire_reals,
            vec![(
                1,
                RealEntry {
                    generation: 1,
                    ..RealEntry::default()
                }
            )]
        );
        // Re-adding gets the recycled id with the new generation and fresh counters.
        let plan = p.plan(&config(TWO), 0).expect("plan");
        assert_eq!(plan.reals.len(), 1);
        assert_eq!(plan.reals[0].0, 1);
        assert_eq!(plan.reals[0].1.generation, 1);
        assert_eq!(plan.reset_real_counters, vec![1]);
    }

    #[test]
    fn removed_service_frees_everything() {
        let mut p = Planner::new(&Limits::default());
        p.plan(&config(TWO), 0).expect("plan");
        let plan = p.plan(&Config::default(), 10).expect("plan");
        assert_eq!(plan.delete_services.len(), 1);
        assert_eq!(plan.retire_reals.len(), 2);
        assert_eq!(p.service_count(), 0);
        // After the grace period the slots are reused from the start.
        let plan = p.plan(&config(TWO), 10 + SLOT_GRACE_MS).expect("plan");
        assert_eq!(plan.tables[0].0, 0);
    }

    #[test]
    fn all_zero_weights_give_an_empty_table() {
        let text = TWO
            .replace(
                "address = \"198.18.2.11\"",
                "address = \"198.18.2.11\"\nweight = 0",
            )
            .replace(
                "address = \"198.18.2.12\"",
                "address = \"198.18.2.12\"\nweight = 0",
            );
        let mut p = Planner::new(&Limits::default());
        let plan = p.plan(&config(&text), 0).expect("plan");
        assert!(plan.tables.is_empty());
        assert_eq!(plan.upsert_services[0].1.table_len, 0);
    }

    #[test]
    fn mh_quiesced_real_keeps_its_slots_empty() {
        let mh = TWO.replace("scheduler = \"rr\"", "scheduler = \"mh\"");
        let mut p = Planner::new(&Limits::default());
        let plan = p.plan(&config(&mh), 0).expect("plan");
        let before = plan.tables[0].1.clone();
        assert_eq!(before.len(), rvs_sched::IPVS_MH_TABLE_SIZE as usize);
        let quiesced = mh.replacen(
            "address = \"198.18.2.12\"",
            "address = \"198.18.2.12\"\nweight = 0",
            1,
        );
        let plan = p.plan(&config(&quiesced), 0).expect("plan");
        let after = &plan.tables[0].1;
        // Same layout as IPVS's last_weight table; .12's slots (id 1) now take nobody.
        for (b, a) in before.iter().zip(after) {
            assert_eq!(*a, if *b == 1 { NO_REAL } else { *b });
        }
        assert!(after.contains(&NO_REAL));
    }

    #[test]
    fn exhausted_limits_change_nothing() {
        let limits = Limits {
            reals: 1,
            ..Limits::default()
        };
        let mut p = Planner::new(&limits);
        let err = p.plan(&config(TWO), 0).expect_err("too many reals");
        assert!(err.to_string().contains("reals is exhausted"), "{err}");
        assert_eq!(p.service_count(), 0);
        let limits = Limits {
            dispatch_slots: 1,
            ..Limits::default()
        };
        let mut p = Planner::new(&limits);
        let err = p.plan(&config(TWO), 0).expect_err("too few slots");
        assert!(err.to_string().contains("dispatch_slots"), "{err}");
    }

    #[test]
    fn slot_allocator_coalesces() {
        let mut s = SlotAlloc::new(10);
        let a = s.take(4).expect("a");
        let b = s.take(4).expect("b");
        assert_eq!((a, b), (0, 4));
        assert!(s.take(4).is_none());
        s.release(0, a, 4);
        s.release(0, b, 4);
        s.expire(SLOT_GRACE_MS);
        assert_eq!(s.take(10), Some(0));
    }
}
