//! Sans-I/O planning: turns a desired [`Config`] into the map writes that realise it.
//!
//! The [`Planner`] remembers which ids, generations and dispatch slots it handed out, so a new
//! configuration becomes a diff: unchanged services are not touched, real servers that stay
//! keep their id (and so their connections and counters), removed ones get their generation
//! bumped so the XDP program stops forwarding their connections, as IPVS does. Planning is
//! all-or-nothing: on error the planner is unchanged.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::Ipv4Addr,
};

use rvs_common::{
    DispatchKind, Forward, IPPROTO_TCP, IPPROTO_UDP, MAX_MARK_RULES, MarkRuleEntry, NO_REAL,
    RealEntry, SERVICE_KEY_FWMARK, SVC_F_ONE_PACKET, SVC_F_SLOPPY_TCP, SVC_F_STANDBY, ServiceEntry,
    ServiceKey,
    midflow::{self, SVC_F_MIDFLOW, SVC_F_SECOND_CHANCE},
    sched::{KIND_FO, KIND_LBLC, KIND_LBLCR, KIND_OVF, KIND_TWOS},
    tunnel,
};
use rvs_config::{
    Config, ForwardMethod, Limits, Persistence, Protocol, RealServer, SchedFlag, Scheduler,
    ServiceId, TunnelChecksum, TunnelType, VirtualService,
    fwmark::{self, MarkRule},
};
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
    /// The fwmark match rules cannot be written as the data path walks them.
    #[error("{0}")]
    MarkRules(String),
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
    /// The fwmark classification rules to write, when they changed (all of them).
    pub mark_rules: Option<Vec<MarkRuleEntry>>,
}

impl Plan {
    /// True when applying the plan would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// A pool of small integer ids. An id given back is held until the next plan: the batch
/// that freed it is still being written while the old configuration stays visible, so the
/// same batch must not hand it to someone else.
#[derive(Debug, Clone)]
struct IdPool {
    next: u32,
    limit: u32,
    free: Vec<u32>,
    held: Vec<u32>,
}

impl IdPool {
    fn new(limit: u32) -> Self {
        Self {
            next: 0,
            limit,
            free: Vec::new(),
            held: Vec::new(),
        }
    }

    /// A pool in which the ids of `used` (all below `limit`) are taken.
    fn with_used(limit: u32, used: &BTreeSet<u32>) -> Self {
        let next = used.last().map_or(0, |&m| m + 1);
        let free = (0..next).rev().filter(|i| !used.contains(i)).collect();
        Self {
            next,
            limit,
            free,
            held: Vec::new(),
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
        self.held.push(id);
    }

    /// Makes the ids given back by earlier (written) plans available.
    fn release_held(&mut self) {
        self.free.append(&mut self.held);
    }
}

/// First-fit allocator of contiguous dispatch slots with a grace period before reuse.
#[derive(Debug, Clone)]
struct SlotAlloc {
    /// Free ranges: start → length, coalesced.
    free: BTreeMap<u32, u32>,
    /// Ranges released and not reusable before a time (ms).
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

    /// An allocator whose `used` ranges (start, len) are taken.
    fn with_used(capacity: u32, used: &[(u32, u32)]) -> Self {
        let mut ranges: Vec<(u32, u32)> = used.iter().copied().filter(|r| r.1 > 0).collect();
        ranges.sort();
        let mut free = BTreeMap::new();
        let mut at = 0u32;
        for (start, len) in ranges {
            if start > at {
                free.insert(at, start - at);
            }
            at = at.max(start.saturating_add(len));
        }
        if capacity > at {
            free.insert(at, capacity - at);
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
        self.release_held(now_ms, 0, start, len);
    }

    /// Releases a range that must stay as it is for `hold_ms` (at least the grace period):
    /// a replaced mh table the second chance still reads.
    fn release_held(&mut self, now_ms: u64, hold_ms: u64, start: u32, len: u32) {
        if len > 0 {
            let ready = now_ms.saturating_add(hold_ms.max(SLOT_GRACE_MS));
            self.quarantine.push((ready, start, len));
        }
    }

    fn expire(&mut self, now_ms: u64) {
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .quarantine
            .drain(..)
            .partition(|&(ready, _, _)| now_ms >= ready);
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
}

/// Remembers what was written to the maps and plans the next change.
#[derive(Debug, Clone)]
pub struct Planner {
    services: HashMap<ServiceId, ServiceState>,
    service_ids: IdPool,
    real_ids: IdPool,
    generations: Vec<u32>,
    slots: SlotAlloc,
    /// VIPs this node is VRRP BACKUP for: their services pass new connections.
    standby: HashSet<Ipv4Addr>,
    /// The fwmark rules last planned; None when unknown (adopted maps), so the next plan
    /// writes them.
    mark_rules: Option<Vec<MarkRuleEntry>>,
    /// How long (ms) an mh service's replaced table is kept for the second chance; 0 = off.
    second_chance_ms: u64,
    /// The global sloppy_tcp (`[flows]`, resolved): mid-flow packets of hash schedulers.
    sloppy_tcp: bool,
    /// Services in a second-chance window → when it ends (ms, the planner's clock).
    windows: HashMap<ServiceId, u64>,
}

fn service_key(id: &ServiceId, fwmark: bool) -> ServiceKey {
    if fwmark {
        // The mark as a plain number: what the classifier finds (see VirtualService::id).
        return ServiceKey {
            vip: u32::from(id.address),
            port: 0,
            proto: 0,
            pad: SERVICE_KEY_FWMARK,
        };
    }
    ServiceKey {
        vip: u32::from_ne_bytes(id.address.octets()),
        port: id.port.to_be(),
        proto: id.protocol.number(),
        pad: 0,
    }
}

/// The tunnel fields of a real server's map entry (zero unless it is a TUN real server).
fn tunnel_fields(real: &RealServer) -> RealEntry {
    if real.forward != ForwardMethod::Tun {
        return RealEntry::default();
    }
    let t = &real.tunnel;
    RealEntry {
        tun_type: match t.kind {
            TunnelType::Ipip => tunnel::TUN_IPIP,
            TunnelType::Gue => tunnel::TUN_GUE,
            TunnelType::Gre => tunnel::TUN_GRE,
        },
        tun_port: t.port.unwrap_or(0).to_be(),
        tun_flags: match t.checksum {
            TunnelChecksum::Nocsum => 0,
            TunnelChecksum::Csum => tunnel::TUN_F_CSUM,
            TunnelChecksum::Remcsum => tunnel::TUN_F_REMCSUM,
        },
        ..RealEntry::default()
    }
}

/// The tunnel configuration read back from a real server's map entry (adoption).
fn tunnel_of(r: &RealEntry) -> rvs_config::Tunnel {
    rvs_config::Tunnel {
        kind: match r.tun_type {
            tunnel::TUN_GUE => TunnelType::Gue,
            tunnel::TUN_GRE => TunnelType::Gre,
            _ => TunnelType::Ipip,
        },
        port: (r.tun_type == tunnel::TUN_GUE).then(|| u16::from_be(r.tun_port)),
        checksum: if r.tun_flags & tunnel::TUN_F_REMCSUM != 0 {
            TunnelChecksum::Remcsum
        } else if r.tun_flags & tunnel::TUN_F_CSUM != 0 {
            TunnelChecksum::Csum
        } else {
            TunnelChecksum::Nocsum
        },
    }
}

fn forward(method: ForwardMethod) -> Forward {
    match method {
        ForwardMethod::Dr => Forward::DirectRoute,
        ForwardMethod::Tun => Forward::Tunnel,
        ForwardMethod::Nat => Forward::Masq,
    }
}

const SCHED_FLAGS: [SchedFlag; 3] = [SchedFlag::Flag1, SchedFlag::Flag2, SchedFlag::Flag3];

/// A service's configuration in one canonical form (flags sorted, a real server's port
/// only when it differs from the service's), so equal configurations compare equal.
fn canonical(svc: &VirtualService) -> VirtualService {
    let mut c = svc.clone();
    c.sched_flags.sort();
    c.sched_flags.dedup();
    for r in &mut c.reals {
        if r.port == Some(svc.port) {
            r.port = None;
        }
    }
    c
}

/// Second chance for a service changing from `old` to the mh `table` over `reals`: the
/// mid-flow table (see [`crate::second_chance`]); None when off (`window` 0), not mh both
/// times, or nothing differs.
fn second_chance_table(
    window: u64,
    old: &ServiceState,
    reals: &HashMap<(Ipv4Addr, u16), (u32, RealEntry)>,
    kind: u8,
    table: &[u32],
) -> Option<Vec<u32>> {
    if window == 0 || !is_mh(old.entry.kind) || !is_mh(kind) {
        return None;
    }
    // The previous table, recomputed from what the planner remembers of the service.
    let cfg = &old.config;
    let old_keys: Vec<(Ipv4Addr, u16)> = cfg
        .reals
        .iter()
        .map(|r| (r.address, r.port.unwrap_or(cfg.port)))
        .collect();
    let id_of = |i: usize| old_keys.get(i).and_then(|k| old.reals.get(k));
    let (_, previous) = table_for(cfg, |i| id_of(i).map_or(0, |(_, e)| e.last_weight)).ok()?;
    let previous: Vec<u32> = previous
        .into_iter()
        .map(|i| {
            id_of(i as usize)
                .filter(|_| i != NO_REAL)
                .map_or(NO_REAL, |(id, _)| *id)
        })
        .collect();
    let kept: HashSet<u32> = reals.values().map(|(id, _)| *id).collect();
    crate::second_chance::merged_table(&previous, table, |id| kept.contains(&id))
}

/// The dispatch range a service entry holds: its table, and the mid-flow table after it
/// during a second-chance window.
fn range_of(entry: &ServiceEntry) -> (u32, u32) {
    let len = entry.table_len;
    if entry.flags & SVC_F_SECOND_CHANCE != 0 {
        (entry.table_off, len.saturating_mul(2))
    } else {
        (entry.table_off, len)
    }
}

/// `entry` with SVC_F_MIDFLOW as `rvs_common::midflow::picks_up` decides it.
fn with_midflow(
    mut entry: ServiceEntry,
    service_sloppy: bool,
    global_sloppy: bool,
) -> ServiceEntry {
    entry.flags &= !SVC_F_MIDFLOW;
    if midflow::picks_up(service_sloppy, entry.kind, global_sloppy) {
        entry.flags |= SVC_F_MIDFLOW;
    }
    entry
}

/// Whether a dispatch kind is a Maglev table (the tables the second chance keeps).
fn is_mh(kind: u8) -> bool {
    kind == DispatchKind::MaglevSource as u8 || kind == DispatchKind::MaglevSourcePort as u8
}

/// The service map entry: what the XDP program needs plus the configuration.
fn service_entry(svc: &VirtualService, id: u32, kind: u8, off: u32, len: u32) -> ServiceEntry {
    let mut flags = 0;
    if svc.sloppy_tcp {
        flags |= SVC_F_SLOPPY_TCP;
    }
    if svc.one_packet {
        flags |= SVC_F_ONE_PACKET;
    }
    let sched_flags = SCHED_FLAGS
        .iter()
        .enumerate()
        .filter(|(_, f)| svc.has_flag(**f))
        .fold(0u8, |acc, (bit, _)| acc | (1 << bit));
    let scheduler = Scheduler::ALL
        .iter()
        .position(|s| *s == svc.scheduler)
        .unwrap_or(0) as u8;
    ServiceEntry {
        id,
        table_off: off,
        table_len: len,
        kind,
        flags,
        scheduler,
        sched_flags,
        persist_timeout: svc.persistence.map_or(0, |p| p.timeout),
        persist_mask: svc
            .persistence
            .map_or(0, |p| u32::from_ne_bytes(p.netmask.octets())),
        mh_table_size: svc.mh_table_size.unwrap_or(0),
    }
}

/// Rebuilds a service's configuration from its map entries (the inverse of
/// [`service_entry`] and the real-server entries); None if the key is not one rvs writes.
fn service_from_maps(
    key: &ServiceKey,
    entry: &ServiceEntry,
    reals: &[RealEntry],
) -> Option<VirtualService> {
    if key.pad == SERVICE_KEY_FWMARK {
        // The match rules are not in the service map: the next plan writes them again.
        let mut svc = VirtualService::fwmark(key.vip);
        fill_from_maps(&mut svc, entry, reals)?;
        return Some(svc);
    }
    let protocol = match key.proto {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    let port = u16::from_be(key.port);
    let mut svc = VirtualService::new(protocol, Ipv4Addr::from(key.vip.to_ne_bytes()), port);
    fill_from_maps(&mut svc, entry, reals)?;
    Some(svc)
}

/// The service's settings and real servers as its map entries recorded them.
fn fill_from_maps(
    svc: &mut VirtualService,
    entry: &ServiceEntry,
    reals: &[RealEntry],
) -> Option<()> {
    let port = svc.port;
    svc.scheduler = *Scheduler::ALL.get(entry.scheduler as usize)?;
    svc.mh_table_size = (entry.mh_table_size != 0).then_some(entry.mh_table_size);
    svc.sched_flags = SCHED_FLAGS
        .iter()
        .enumerate()
        .filter(|(bit, _)| entry.sched_flags & (1 << bit) != 0)
        .map(|(_, f)| *f)
        .collect();
    svc.persistence = (entry.persist_timeout != 0).then(|| Persistence {
        timeout: entry.persist_timeout,
        netmask: Ipv4Addr::from(entry.persist_mask.to_ne_bytes()),
    });
    svc.one_packet = entry.flags & SVC_F_ONE_PACKET != 0;
    svc.sloppy_tcp = entry.flags & SVC_F_SLOPPY_TCP != 0;
    let mut ranked: Vec<&RealEntry> = reals.iter().collect();
    ranked.sort_by_key(|r| r.rank);
    svc.reals = ranked
        .into_iter()
        .map(|r| {
            let real_port = u16::from_be(r.port);
            RealServer {
                address: Ipv4Addr::from(r.addr.to_ne_bytes()),
                port: (real_port != port).then_some(real_port),
                weight: r.weight,
                forward: match r.forward {
                    1 => ForwardMethod::Tun,
                    2 => ForwardMethod::Nat,
                    _ => ForwardMethod::Dr,
                },
                tunnel: tunnel_of(r),
                u_threshold: r.u_threshold,
                l_threshold: r.l_threshold,
            }
        })
        .collect();
    Some(())
}

/// The classification rules of every fwmark service as the XDP program walks them: by mark,
/// each service's rules in order, one entry per (destination, source, port range). Rules of
/// different marks must not overlap (so no order between services is needed), and the total
/// must fit the program's bound.
pub fn mark_rules<'a>(
    services: impl Iterator<Item = &'a VirtualService>,
) -> Result<Vec<MarkRuleEntry>, PlanError> {
    let mut marked: Vec<(u32, &VirtualService)> =
        services.filter_map(|s| s.fwmark.map(|m| (m, s))).collect();
    marked.sort_by_key(|(m, _)| *m);
    let rules: Vec<MarkRule> = marked
        .iter()
        .flat_map(|(m, s)| s.matches.iter().map(|r| r.with_mark(*m)))
        .collect();
    for (i, a) in rules.iter().enumerate() {
        if let Some(b) = rules[i + 1..]
            .iter()
            .find(|b| b.mark != a.mark && fwmark::overlap(a, b))
        {
            return Err(PlanError::MarkRules(format!(
                "match rules of fwmark {} and fwmark {} can match the same packets ({a:?} / {b:?}); rvs needs the rules of different marks to be disjoint",
                a.mark, b.mark
            )));
        }
    }
    let total: usize = rules.iter().map(fwmark::entry_count).sum();
    if total > MAX_MARK_RULES as usize {
        return Err(PlanError::MarkRules(format!(
            "the fwmark match rules need {total} classifier entries (one per destination x source x port range); the data path walks at most {MAX_MARK_RULES}"
        )));
    }
    let any = [None];
    let mut out = Vec::with_capacity(total);
    for r in &rules {
        let net = |p: &Option<&fwmark::Prefix>| match p {
            Some(p) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(p.len)).unwrap_or(0);
                (
                    u32::from_ne_bytes(p.addr.octets()),
                    u32::from_ne_bytes(mask.to_be_bytes()),
                )
            }
            None => (0, 0),
        };
        let dsts: Vec<Option<&fwmark::Prefix>> = if r.destination.is_empty() {
            any.to_vec()
        } else {
            r.destination.iter().map(Some).collect()
        };
        let srcs: Vec<Option<&fwmark::Prefix>> = if r.source.is_empty() {
            any.to_vec()
        } else {
            r.source.iter().map(Some).collect()
        };
        let ports: Vec<(u16, u16)> = if r.ports.is_empty() {
            vec![(0, u16::MAX)]
        } else {
            r.ports.iter().map(|p| (p.first, p.last)).collect()
        };
        for d in &dsts {
            for sp in &srcs {
                for &(first, last) in &ports {
                    let (dst, dst_mask) = net(d);
                    let (src, src_mask) = net(sp);
                    out.push(MarkRuleEntry {
                        dst,
                        dst_mask,
                        src,
                        src_mask,
                        port_first: first,
                        port_last: last,
                        proto: r.protocol.map_or(0, |p| p.number()),
                        pad: [0; 3],
                        mark: r.mark,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The scheduler table for a service's real servers given in config order, as indices
/// into that list. `last_weight(i)` is real `i`'s latest non-zero weight (mh keeps a
/// quiesced server's slots, as IPVS does).
fn table_for(
    svc: &VirtualService,
    last_weight: impl Fn(usize) -> u32,
) -> Result<(u8, Vec<u32>), PlanError> {
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
        Scheduler::Rr => (
            DispatchKind::Ring as u8,
            rvs_sched::rr_ring(&dests(&current)),
        ),
        Scheduler::Wrr => (
            DispatchKind::Ring as u8,
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
            // A quiesced server keeps its slots (IPVS's last_weight). Without mh-fallback
            // they take no new connection (IPVS drops those SYNs), so they become NO_REAL;
            // with it the program checks each slot's server (weight, OVERLOAD) and
            // rehashes past unusable ones, so the slots stay as IPVS's table has them.
            let fallback = svc.has_flag(rvs_config::SchedFlag::Flag1)
                && Scheduler::Mh
                    .caps()
                    .dataplane_flags
                    .contains(&rvs_config::SchedFlag::Flag1);
            let table: Vec<u32> = table
                .into_iter()
                .map(|i| {
                    if i != NO_REAL && !fallback && current(n - 1 - i as usize) == 0 {
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
            (kind as u8, table)
        }
        // The connection-count walks read the servers' loads from REAL_LOAD in IPVS's list
        // order (newest first); weight-0 and overloaded servers stay listed and are skipped
        // by the walk, as the kernel's list keeps them.
        walker @ (Scheduler::Lc
        | Scheduler::Wlc
        | Scheduler::Sed
        | Scheduler::Nq
        | Scheduler::Fo
        | Scheduler::Ovf
        | Scheduler::Twos
        | Scheduler::Lblc
        | Scheduler::Lblcr)
            if walker.caps().in_dataplane =>
        {
            let kind = match walker {
                Scheduler::Lc => DispatchKind::Lc as u8,
                Scheduler::Wlc => DispatchKind::Wlc as u8,
                Scheduler::Sed => DispatchKind::Sed as u8,
                Scheduler::Nq => DispatchKind::Nq as u8,
                Scheduler::Fo => KIND_FO,
                Scheduler::Ovf => KIND_OVF,
                Scheduler::Twos => KIND_TWOS,
                Scheduler::Lblc => KIND_LBLC,
                _ => KIND_LBLCR,
            };
            (kind, (0..n as u32).collect())
        }
        // sh and dh: IPVS's 256 buckets from the newest-first list (sh with the current
        // weights, rebuilt on every edit as ip_vs_sh_dest_changed does); the program checks
        // the bucket's server (weight, OVERLOAD) and, for sh-fallback, rehashes.
        Scheduler::Sh if Scheduler::Sh.caps().in_dataplane => {
            let weights: Vec<u32> = (0..n).rev().map(current).collect();
            (DispatchKind::Sh as u8, rvs_sched::sh_table(&weights))
        }
        Scheduler::Dh if Scheduler::Dh.caps().in_dataplane => {
            (DispatchKind::Dh as u8, rvs_sched::dh_table(n))
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
            standby: HashSet::new(),
            mark_rules: None,
            second_chance_ms: 0,
            sloppy_tcp: false,
            windows: HashMap::new(),
        }
    }

    /// Sets `[flows]`: the global sloppy_tcp (resolved) and the second-chance window for
    /// the next changes; returns the service entries whose mid-flow flag changes.
    pub fn set_flows(&mut self, sloppy_tcp: bool, second_chance_ms: u64) -> Plan {
        self.second_chance_ms = second_chance_ms;
        self.sloppy_tcp = sloppy_tcp;
        let mut plan = Plan::default();
        for (id, state) in &mut self.services {
            let entry = with_midflow(state.entry, state.config.sloppy_tcp, sloppy_tcp);
            if entry != state.entry {
                state.entry = entry;
                plan.upsert_services
                    .push((service_key(id, state.config.fwmark.is_some()), entry));
            }
        }
        plan
    }

    /// A planner for maps that already hold state (pinned by an earlier rvsd): rebuilds
    /// ids, generations, slot use and every service's configuration from the map contents.
    /// Returns the planner, the services in id order, and tombstones for real-server
    /// entries whose service is gone (to be written).
    pub fn adopt(
        limits: &Limits,
        services: &[(ServiceKey, ServiceEntry)],
        reals: &[(u32, RealEntry)],
    ) -> (Planner, Vec<VirtualService>, Plan) {
        let mut generations = vec![0; limits.reals as usize];
        let mut by_service: HashMap<u32, Vec<(u32, RealEntry)>> = HashMap::new();
        for &(rid, entry) in reals {
            if let Some(g) = generations.get_mut(rid as usize) {
                *g = entry.generation;
                if entry.in_use() {
                    by_service
                        .entry(entry.service)
                        .or_default()
                        .push((rid, entry));
                }
            }
        }
        let mut sorted: Vec<&(ServiceKey, ServiceEntry)> = services.iter().collect();
        sorted.sort_by_key(|(_, e)| e.id);
        let mut states = HashMap::new();
        let mut configs = Vec::new();
        let mut service_ids = BTreeSet::new();
        let mut real_ids = BTreeSet::new();
        let mut ranges = Vec::new();
        let mut windows = HashMap::new();
        for (key, entry) in sorted {
            let members = by_service.remove(&entry.id).unwrap_or_default();
            let entries: Vec<RealEntry> = members.iter().map(|&(_, e)| e).collect();
            let Some(config) = service_from_maps(key, entry, &entries) else {
                continue;
            };
            service_ids.insert(entry.id);
            ranges.push(range_of(entry));
            if entry.flags & SVC_F_SECOND_CHANCE != 0 {
                // A window an earlier rvsd opened: its end is unknown, it ends now.
                windows.insert(config.id(), 0);
            }
            let mut state_reals = HashMap::new();
            for (rid, e) in members {
                real_ids.insert(rid);
                let key = (Ipv4Addr::from(e.addr.to_ne_bytes()), u16::from_be(e.port));
                state_reals.insert(key, (rid, e));
            }
            states.insert(
                config.id(),
                ServiceState {
                    config: canonical(&config),
                    entry: *entry,
                    reals: state_reals,
                },
            );
            configs.push(config);
        }
        // Real servers of services that no longer exist (a crash between two writes): taken
        // here, then retired like any removed server.
        let mut orphans: Vec<u32> = by_service
            .into_values()
            .flatten()
            .map(|(rid, _)| rid)
            .collect();
        orphans.sort();
        real_ids.extend(&orphans);
        // Without an fwmark service the rules are empty (the loader clears the count);
        // with one, they are not in the maps' records, so the next plan writes them.
        let mark_rules = configs.iter().all(|c| c.fwmark.is_none()).then(Vec::new);
        let mut planner = Planner {
            services: states,
            service_ids: IdPool::with_used(limits.services, &service_ids),
            real_ids: IdPool::with_used(limits.reals, &real_ids),
            generations,
            slots: SlotAlloc::with_used(limits.dispatch_slots, &ranges),
            standby: HashSet::new(),
            mark_rules,
            // rvsd sets them from [flows] before its first plan.
            second_chance_ms: 0,
            sloppy_tcp: false,
            windows,
        };
        let mut plan = Plan::default();
        for rid in orphans {
            planner.tombstone(rid, &mut plan);
        }
        (planner, configs, plan)
    }

    /// Ends the second-chance windows that are over at `now_ms`: the services go back to
    /// their current table for every packet and the mid-flow tables' slots are released.
    pub fn expire_second_chance(&mut self, now_ms: u64) -> Plan {
        let mut plan = Plan::default();
        let over: Vec<ServiceId> = self
            .windows
            .iter()
            .filter(|&(_, &until)| now_ms >= until)
            .map(|(id, _)| *id)
            .collect();
        for id in over {
            self.windows.remove(&id);
            let Some(state) = self.services.get_mut(&id) else {
                continue;
            };
            if state.entry.flags & SVC_F_SECOND_CHANCE == 0 {
                continue;
            }
            state.entry.flags &= !SVC_F_SECOND_CHANCE;
            let (off, len) = (state.entry.table_off, state.entry.table_len);
            self.slots.release(now_ms, off.saturating_add(len), len);
            plan.upsert_services
                .push((service_key(&id, state.config.fwmark.is_some()), state.entry));
        }
        plan
    }

    /// Whether `service` is in a second-chance window (mid-flow packets use the mid-flow
    /// table).
    pub fn in_second_chance(&self, service: &ServiceId) -> bool {
        self.services
            .get(service)
            .is_some_and(|s| s.entry.flags & SVC_F_SECOND_CHANCE != 0)
    }

    /// Marks the services of `vips` as standby (VRRP BACKUP: new connections passed) and
    /// all others as active; returns the service entries to rewrite.
    pub fn set_standby(&mut self, vips: HashSet<Ipv4Addr>) -> Plan {
        let mut plan = Plan::default();
        for (id, state) in &mut self.services {
            let mut entry = state.entry;
            entry.flags &= !SVC_F_STANDBY;
            // An fwmark service has no VIP of its own (its id's address is the mark).
            if vips.contains(&id.address) && state.config.fwmark.is_none() {
                entry.flags |= SVC_F_STANDBY;
            }
            if entry != state.entry {
                state.entry = entry;
                plan.upsert_services
                    .push((service_key(id, state.config.fwmark.is_some()), entry));
            }
        }
        self.standby = vips;
        plan
    }

    /// Number of services currently planned.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Every real-server id in use.
    pub fn real_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.services
            .values()
            .flat_map(|s| s.reals.values().map(|&(rid, _)| rid))
    }

    /// The real-server id given to `(service, address, port)`, if any.
    pub fn real_id(&self, service: &ServiceId, address: Ipv4Addr, port: u16) -> Option<u32> {
        self.services
            .get(service)?
            .reals
            .get(&(address, port))
            .map(|&(rid, _)| rid)
    }

    /// (scheduler kind, service id) of every lblc and lblcr service.
    pub fn locality_services(&self) -> impl Iterator<Item = (u8, u32)> + '_ {
        self.services
            .values()
            .map(|s| (s.entry.kind, s.entry.id))
            .filter(|&(kind, _)| kind == KIND_LBLC || kind == KIND_LBLCR)
    }

    /// The service id and map entry given to `service`, if any.
    pub fn service_entry(&self, service: &ServiceId) -> Option<ServiceEntry> {
        self.services.get(service).map(|s| s.entry)
    }

    /// Plans the writes that take the maps to `config`; `now_ms` is a monotonic clock used
    /// to age replaced tables. On error nothing is changed.
    pub fn plan(&mut self, config: &Config, now_ms: u64) -> Result<Plan, PlanError> {
        let wanted: HashSet<ServiceId> = config.services.iter().map(|s| s.id()).collect();
        // Removed services first, so their ids and slots can serve new ones (slots only
        // after the grace period).
        let mut removed: Vec<ServiceId> = self
            .services
            .keys()
            .filter(|id| !wanted.contains(id))
            .copied()
            .collect();
        removed.sort();
        let updates: Vec<(ServiceId, Option<&VirtualService>)> = removed
            .into_iter()
            .map(|id| (id, None))
            .chain(config.services.iter().map(|s| (s.id(), Some(s))))
            .collect();
        self.plan_updates(&updates, now_ms)
    }

    /// Plans only the given services: `Some` to add or change one (a no-op when it did not
    /// change), `None` to remove one. What is not listed is left alone, so a single change
    /// costs the same with 10 or 100 000 services. On error nothing is changed.
    pub fn plan_updates(
        &mut self,
        updates: &[(ServiceId, Option<&VirtualService>)],
        now_ms: u64,
    ) -> Result<Plan, PlanError> {
        // The allocators are flat and cheap to copy; the per-service states are not, so
        // their changes are collected and committed only when planning succeeded.
        let saved = (
            self.service_ids.clone(),
            self.real_ids.clone(),
            self.generations.clone(),
            self.slots.clone(),
        );
        let mut changes = Vec::new();
        let planned = self
            .plan_into(updates, now_ms, &mut changes)
            .and_then(|plan| {
                let changed: HashMap<ServiceId, Option<&ServiceState>> =
                    changes.iter().map(|(id, s)| (*id, s.as_ref())).collect();
                let kept = self
                    .services
                    .iter()
                    .filter(|(id, _)| !changed.contains_key(id))
                    .map(|(_, s)| &s.config);
                let new = changed.values().flatten().map(|s| &s.config);
                mark_rules(kept.chain(new)).map(|rules| (plan, rules))
            });
        match planned {
            Ok((mut plan, rules)) => {
                if self.mark_rules.as_ref() != Some(&rules) {
                    plan.mark_rules = Some(rules.clone());
                    self.mark_rules = Some(rules);
                }
                for (id, state) in changes {
                    match state {
                        Some(state) => self.services.insert(id, state),
                        None => self.services.remove(&id),
                    };
                }
                Ok(plan)
            }
            Err(e) => {
                (
                    self.service_ids,
                    self.real_ids,
                    self.generations,
                    self.slots,
                ) = saved;
                Err(e)
            }
        }
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

    fn plan_into(
        &mut self,
        updates: &[(ServiceId, Option<&VirtualService>)],
        now_ms: u64,
        changes: &mut Vec<(ServiceId, Option<ServiceState>)>,
    ) -> Result<Plan, PlanError> {
        self.slots.expire(now_ms);
        self.service_ids.release_held();
        self.real_ids.release_held();
        let mut plan = Plan::default();
        for (id, _) in updates.iter().filter(|(_, u)| u.is_none()) {
            let id = *id;
            let Some(old) = self.services.get(&id) else {
                continue;
            };
            plan.delete_services
                .push(service_key(&id, old.config.fwmark.is_some()));
            self.windows.remove(&id);
            let (off, len) = range_of(&old.entry);
            self.slots.release(now_ms, off, len);
            self.service_ids.give(old.entry.id);
            let mut ids: Vec<u32> = old.reals.values().map(|&(rid, _)| rid).collect();
            changes.push((id, None));
            ids.sort();
            for rid in ids {
                self.tombstone(rid, &mut plan);
            }
        }

        for (id, svc) in updates.iter().filter_map(|(id, u)| u.map(|s| (*id, s))) {
            let old = self.services.get(&id);
            // Most services are unchanged and already canonical: compare before copying.
            if old.is_some_and(|o| o.config == *svc || o.config == canonical(svc)) {
                continue;
            }
            let canonical = canonical(svc);
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
            for (rank, (real, key)) in svc.reals.iter().zip(&keys).enumerate() {
                let prev = reals.get(key).copied();
                let (rid, fresh) = match prev {
                    Some((rid, _)) => (rid, false),
                    None => (self.real_ids.take().ok_or(PlanError::NoRealId(id))?, true),
                };
                let last_weight = if real.weight > 0 {
                    real.weight
                } else {
                    prev.map_or(0, |(_, e)| e.last_weight)
                };
                let entry = RealEntry {
                    addr: u32::from_ne_bytes(real.address.octets()),
                    port: key.1.to_be(),
                    forward: forward(real.forward) as u8,
                    pad: 0,
                    generation: self.generations[rid as usize],
                    service: service_id,
                    rank: rank as u32,
                    weight: real.weight,
                    last_weight,
                    u_threshold: real.u_threshold,
                    l_threshold: real.l_threshold,
                    ..tunnel_fields(real)
                };
                if prev.map(|(_, e)| e) != Some(entry) {
                    plan.reals.push((rid, entry));
                }
                if fresh {
                    plan.reset_real_counters.push(rid);
                }
                reals.insert(*key, (rid, entry));
            }
            let (kind, table) = table_for(svc, |i| reals[&keys[i]].1.last_weight)?;
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
            // Second chance: the mid-flow table goes right after the current one.
            let window = self.second_chance_ms;
            let merged = old.and_then(|o| second_chance_table(window, o, &reals, kind, &table));
            let span = if merged.is_some() { 2 * len } else { len };
            let off = if len == 0 {
                0
            } else {
                self.slots.take(span as u32).ok_or(PlanError::NoSlots {
                    service: id,
                    len: span,
                })?
            };
            if let Some(o) = old {
                let (old_off, old_len) = range_of(&o.entry);
                self.slots.release(now_ms, old_off, old_len);
            }
            if len > 0 {
                plan.tables.push((off, table));
            }
            let second_chance = merged.is_some();
            if let Some(m) = merged {
                plan.tables.push((off + len as u32, m));
                self.windows.insert(id, now_ms.saturating_add(window));
            } else {
                self.windows.remove(&id);
            }
            let mut entry = service_entry(svc, service_id, kind, off, len as u32);
            entry = with_midflow(entry, svc.sloppy_tcp, self.sloppy_tcp);
            if second_chance {
                entry.flags |= SVC_F_SECOND_CHANCE;
            }
            if self.standby.contains(&id.address) && svc.fwmark.is_none() {
                entry.flags |= SVC_F_STANDBY;
            }
            plan.upsert_services
                .push((service_key(&id, svc.fwmark.is_some()), entry));
            for rid in gone {
                self.tombstone(rid, &mut plan);
            }
            changes.push((
                id,
                Some(ServiceState {
                    config: canonical,
                    entry,
                    reals,
                }),
            ));
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
        // Same id and generation, only the recorded weight changes.
        assert_eq!(plan.reals.len(), 1, "{plan:?}");
        assert_eq!((plan.reals[0].0, plan.reals[0].1.weight), (1, 0));
        assert_eq!(plan.reals[0].1.generation, 0);
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
    fn ids_freed_by_a_batch_are_not_reused_by_the_same_batch() {
        // The old configuration stays visible until the batch commits: a new service must
        // not take the removed one's service or real-server ids in the same batch.
        let mut p = Planner::new(&Limits::default());
        p.plan(&config(TWO), 0).expect("plan");
        let old = p
            .service_entry(&config(TWO).services[0].id())
            .expect("planned");
        let old_reals: Vec<u32> = p.real_ids().collect();
        let moved = config(&TWO.replace("198.18.0.10", "198.18.0.20"));
        let plan = p.plan(&moved, 10).expect("plan");
        assert_eq!(plan.delete_services.len(), 1);
        let (_, new) = plan.upsert_services[0];
        assert_ne!(new.id, old.id);
        for (rid, _) in &plan.reals {
            assert!(
                !old_reals.contains(rid),
                "real id {rid} reused in its batch"
            );
        }
        // The next batch may use them again.
        let plan = p.plan(&config(TWO), 20).expect("plan");
        assert_eq!(plan.upsert_services[0].1.id, old.id);
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

    /// Service-map and real-array contents.
    type Maps = (Vec<(ServiceKey, ServiceEntry)>, Vec<(u32, RealEntry)>);

    /// What the maps hold after `plans` were written to empty maps.
    fn maps_after(plans: &[&Plan]) -> Maps {
        let mut services = BTreeMap::new();
        let mut reals = BTreeMap::new();
        for plan in plans {
            for (k, e) in &plan.upsert_services {
                services.insert((k.vip, k.port, k.proto), (*k, *e));
            }
            for k in &plan.delete_services {
                services.remove(&(k.vip, k.port, k.proto));
            }
            for (id, e) in plan.reals.iter().chain(&plan.retire_reals) {
                reals.insert(*id, *e);
            }
        }
        (
            services.into_values().collect(),
            reals.into_iter().collect(),
        )
    }

    #[test]
    fn adopting_the_maps_rebuilds_the_same_state() {
        let text = TWO.replace("scheduler = \"rr\"", "scheduler = \"mh\"\nsched_flags = [\"mh-port\"]\npersistence = { timeout = 300, netmask = \"255.255.255.0\" }")
            + "[[service]]\nprotocol = \"udp\"\naddress = \"198.18.0.11\"\nport = 53\none_packet = true\n[[service.real]]\naddress = \"198.18.2.21\"\nweight = 0\nport = 53\nu_threshold = 10\n";
        let cfg = config(&text);
        let mut p = Planner::new(&Limits::default());
        let first = p.plan(&cfg, 0).expect("plan");
        // Remove and re-add one real so generations are not all zero.
        let mut fewer = cfg.clone();
        fewer.services[0].reals.pop();
        let second = p.plan(&fewer, 0).expect("plan");
        let third = p.plan(&cfg, 0).expect("plan");
        let (services, reals) = maps_after(&[&first, &second, &third]);
        let (mut adopted, configs, orphans) = Planner::adopt(&Limits::default(), &services, &reals);
        assert!(orphans.is_empty());
        let mut want: Vec<VirtualService> = cfg.services.iter().map(canonical).collect();
        let mut got: Vec<VirtualService> = configs.iter().map(canonical).collect();
        want.sort_by_key(|s| s.id());
        got.sort_by_key(|s| s.id());
        assert_eq!(got, want);
        for svc in &cfg.services {
            assert_eq!(adopted.service_entry(&svc.id()), p.service_entry(&svc.id()));
            for r in &svc.reals {
                let port = r.port.unwrap_or(svc.port);
                assert_eq!(
                    adopted.real_id(&svc.id(), r.address, port),
                    p.real_id(&svc.id(), r.address, port)
                );
            }
        }
        // Re-applying the same configuration to the adopted state writes nothing.
        assert!(adopted.plan(&cfg, SLOT_GRACE_MS).expect("plan").is_empty());
        // And new allocations do not collide with adopted ones.
        let mut more = cfg.clone();
        more.services[1]
            .reals
            .push(rvs_config::RealServer::new(Ipv4Addr::new(198, 18, 2, 30)));
        let plan = adopted.plan(&more, SLOT_GRACE_MS).expect("plan");
        let used: BTreeSet<u32> = reals
            .iter()
            .filter(|(_, e)| e.in_use())
            .map(|(i, _)| *i)
            .collect();
        assert!(plan.reset_real_counters.iter().all(|id| !used.contains(id)));
    }

    #[test]
    fn nat_and_tunnel_reals_are_written_and_adopted_back() {
        let text = r#"
[[service]]
protocol = "tcp"
address = "198.18.0.10"
port = 80
[[service.real]]
address = "198.18.2.11"
port = 8080
forward = "nat"
[[service.real]]
address = "198.18.2.12"
forward = "tun"
tunnel = { type = "gue", port = 6080, checksum = "remcsum" }
[[service.real]]
address = "198.18.2.13"
forward = "tun"
tunnel = { type = "gre", checksum = "csum" }
"#;
        let cfg = config(text);
        let mut p = Planner::new(&Limits::default());
        let plan = p.plan(&cfg, 0).expect("plan");
        let by_addr = |last: u8| {
            plan.reals
                .iter()
                .map(|(_, e)| *e)
                .find(|e| e.addr.to_ne_bytes() == [198, 18, 2, last])
                .expect("real written")
        };
        let nat = by_addr(11);
        assert_eq!(
            (nat.forward, u16::from_be(nat.port), nat.tun_type),
            (Forward::Masq as u8, 8080, 0)
        );
        let gue = by_addr(12);
        assert_eq!(
            (
                gue.forward,
                gue.tun_type,
                u16::from_be(gue.tun_port),
                gue.tun_flags
            ),
            (
                Forward::Tunnel as u8,
                tunnel::TUN_GUE,
                6080,
                tunnel::TUN_F_REMCSUM
            )
        );
        let gre = by_addr(13);
        assert_eq!(
            (gre.tun_type, gre.tun_port, gre.tun_flags),
            (tunnel::TUN_GRE, 0, tunnel::TUN_F_CSUM)
        );
        let (services, reals) = maps_after(&[&plan]);
        let (_, configs, _) = Planner::adopt(&Limits::default(), &services, &reals);
        assert_eq!(
            configs.iter().map(canonical).collect::<Vec<_>>(),
            cfg.services.iter().map(canonical).collect::<Vec<_>>()
        );
    }

    #[test]
    fn adopting_retires_orphaned_reals() {
        let mut p = Planner::new(&Limits::default());
        let plan = p.plan(&config(TWO), 0).expect("plan");
        let (_, reals) = maps_after(&[&plan]);
        let (adopted, configs, orphans) = Planner::adopt(&Limits::default(), &[], &reals);
        assert!(configs.is_empty());
        assert_eq!(orphans.retire_reals.len(), 2);
        assert!(
            orphans
                .retire_reals
                .iter()
                .all(|(_, e)| !e.in_use() && e.generation == 1)
        );
        assert_eq!(adopted.service_count(), 0);
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
