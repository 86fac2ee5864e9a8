//! Loads, attaches and pins rvs's XDP programs and keeps their maps in sync with the
//! desired state.
//!
//! The eBPF object is built by this crate's build script and embedded in the binary. Maps
//! are pinned under the configured bpffs directory, so a restarted daemon finds them again.
//! The balancer is two programs: `rvs_xdp` (attached) tail-calls `rvs_xdp_new` through the
//! pinned program array `RVS_PROGS` for packets that need scheduling; every load points the
//! array at its own `rvs_xdp_new` before anything is attached (see [`Dataplane::load`]).
//! [`plan`] computes what to write; [`Dataplane::apply`] writes it.

mod batch;
mod conn_sync;
mod decap;
mod events;
mod filter;
pub mod inspect;
mod link;
mod locality;
pub mod map_batch;
mod mmap;
pub mod neigh;
pub mod plan;
pub mod second_chance;
pub mod testrun;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues, ProgramArray},
    programs::{ProgramError, Xdp, XdpMode, links::FdLink},
};
use rvs_common::{
    ConnEntry, ConnState, Counters, FlowKey, Forward, LOAD_F_OVERLOAD, MarkRuleEntry, PersistEntry,
    PersistKey, RealEntry, RealLoad, SERVICE_KEY_FWMARK, SETTINGS_F_ALL_PACKETS, SETTINGS_F_NAT,
    ServiceEntry, ServiceKey, Settings, TaggedFlowKey, Verdict,
    commit::{self, CommitState, JournalRecord},
    maps,
    midflow::{MIDFLOW_COUNTS, MIDFLOW_STATS_MAP},
    programs, tcp,
};
use rvs_config::{Config, Limits, Timeouts, XdpMode as ConfigXdpMode};

use crate::{
    filter::AddrFilter,
    map_batch::{HashBatch, PerCpuBatch},
    mmap::MmapArray,
};

pub use conn_sync::{ConnInstall, ConnView, InstallStats, TemplateInstall, TemplateView};
pub use decap::{DecapCounters, DecapOptions, DecapProgram};
pub use locality::{LblcrSet, LocalityExpiry};
pub use plan::{Plan, PlanError, Planner};

/// The eBPF object, built for bpfel-unknown-none by build.rs.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rvs-ebpf.o"));

/// Failures of the dataplane, each saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Loading the object or creating/opening the pinned maps failed.
    #[error("loading the eBPF object (is bpffs mounted at {pin_dir}? are you root?): {source}")]
    Load {
        /// Pin directory.
        pin_dir: PathBuf,
        /// Cause.
        source: Box<aya::EbpfError>,
    },
    /// A program is missing or failed verification.
    #[error("program {name}: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// Cause.
        source: Box<ProgramError>,
    },
    /// A map is missing or has the wrong type.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        source: Box<MapError>,
    },
    /// A map is missing from the object.
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    /// Attaching to an interface failed.
    #[error("attaching XDP to {interface}: {source}")]
    Attach {
        /// Interface.
        interface: String,
        /// Cause.
        source: Box<ProgramError>,
    },
    /// A batch writes more real servers than the journal holds (never for a valid plan).
    #[error("a batch of {0} real-server writes does not fit the journal ([limits] reals)")]
    Journal(usize),
    /// The desired state cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Filesystem work (pin directory, sysctl) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, DataplaneError>;

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        name,
        source: Box::new(source),
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DataplaneError {
    let what = what.into();
    move |source| DataplaneError::Io { what, source }
}

/// Result of one pass over the connection table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConnScan {
    /// Entries freed because they expired.
    pub expired: usize,
    /// Real-server id → (active, inactive) connection entries the table holds, as IPVS
    /// counts them (what the reconciliation compared REAL_LOAD with).
    pub per_real: std::collections::HashMap<u32, (u64, u64)>,
    /// Real servers whose REAL_LOAD counts were corrected to the table's (drift from LRU
    /// evictions, or counts adopted from an older rvsd).
    pub corrected: usize,
}

/// A real server's counts as IPVS shows them (ipvsadm ActiveConn, InActConn, PersistConn).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RealConns {
    /// ActiveConn.
    pub active: u64,
    /// InActConn.
    pub inactive: u64,
    /// PersistConn.
    pub persist: u64,
    /// Whether the upper threshold flagged it overloaded.
    pub overloaded: bool,
}

/// The atomics of one REAL_LOAD value (the XDP program updates the same memory with atomic
/// instructions).
struct LoadRef<'a> {
    conns: &'a AtomicU64,
    flags: &'a AtomicU32,
    load: *mut RealLoad,
}

impl LoadRef<'_> {
    /// IPVS's unbind rule for the OVERLOAD flag (`ip_vs_unbind_dest`) on the current total.
    fn unbind_rule(&self) {
        // SAFETY: plain reads of fields only userspace writes.
        let (upper, lower) = unsafe { ((*self.load).u_threshold, (*self.load).l_threshold) };
        let c = self.conns.load(Ordering::SeqCst);
        let total = u64::from(RealLoad::active(c)) + u64::from(RealLoad::inactive(c));
        let clear = if lower != 0 {
            total < u64::from(lower)
        } else if upper != 0 {
            total * 4 < u64::from(upper) * 3
        } else {
            true
        };
        if clear {
            self.flags.fetch_and(!LOAD_F_OVERLOAD, Ordering::SeqCst);
        }
    }
}

/// The loaded programs and maps, and what has been written to them.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    limits: Limits,
    planner: Planner,
    adopted: Config,
    /// The two copies of the service map (rvs_common::commit): readers use `epoch & 1`.
    services: HashMap<MapData, ServiceKey, ServiceEntry>,
    services_b: HashMap<MapData, ServiceKey, ServiceEntry>,
    /// The commit word.
    commit: MmapArray<CommitState>,
    /// The open batch's real-server journal.
    journal: MmapArray<JournalRecord>,
    /// Connection events for the sync MASTER, and the count of those lost to a full ring.
    sync_events: aya::maps::RingBuf<MapData>,
    sync_lost: PerCpuArray<MapData, u64>,
    /// Whether rvsd asked for connection events.
    sync_events_on: bool,
    reals: MmapArray<RealEntry>,
    real_load: MmapArray<RealLoad>,
    dispatch: MmapArray<u32>,
    cursors: Array<MapData, u64>,
    conns: HashMap<MapData, FlowKey, ConnEntry>,
    /// The connection table walked in batches (the periodic scan, the listing).
    conns_batch: HashBatch<FlowKey, ConnEntry>,
    persist: HashMap<MapData, PersistKey, PersistEntry>,
    service_stats: PerCpuArray<MapData, Counters>,
    real_stats: PerCpuArray<MapData, Counters>,
    /// The same two maps read in batches (every id every 2 s, and every listing).
    service_stats_batch: PerCpuBatch<Counters>,
    real_stats_batch: PerCpuBatch<Counters>,
    verdicts: PerCpuArray<MapData, u64>,
    settings_map: Array<MapData, Settings>,
    settings: Settings,
    mark_rules: Array<MapData, MarkRuleEntry>,
    mark_count: Array<MapData, u32>,
    attached: Vec<String>,
    nat_sources: HashMap<MapData, u32, u32>,
    /// NAT real-server id → its address, as written to the real-server array.
    nat_reals: std::collections::HashMap<u32, u32>,
    /// What NAT_SOURCES holds: address → number of NAT real servers with it.
    nat_counts: std::collections::HashMap<u32, u32>,
    /// The address filter the program reads first.
    filter_map: MmapArray<u64>,
    /// What it holds: the VIP of every key in `service_keys`, every address in `nat_held`.
    filter: AddrFilter,
    /// The address-service keys written to SERVICES (each holds its VIP in the filter).
    service_keys: std::collections::HashSet<ServiceKey>,
    /// NAT addresses held in the filter: the current NAT real servers' and those of removed
    /// ones while a reply entry may still come from them (released by `scan_conns`).
    nat_held: std::collections::HashSet<u32>,
    /// fwmark rules are in use: they may match any address, so the filter is off.
    fwmark_rules: bool,
    /// Connections adopted at load whose addresses the filter may not hold yet: the filter
    /// is off until the first `scan_conns`.
    unscanned: bool,
    /// Mid-flow packets: their counters.
    midflow: Midflow,
    /// The lblc/lblcr tables' periodic check.
    locality: locality::Locality,
}

/// The dataplane's part of mid-flow handling (`[flows]`).
struct Midflow {
    /// The last `[flows]` applied.
    flows: rvs_config::flows::Flows,
    /// Set by rvsd when it announces the VIPs over BGP (besides a `[bgp]` in the config).
    ecmp: bool,
    stats: PerCpuArray<MapData, u64>,
}

/// Maps an mmapable BPF array.
fn mmap_array<T: Copy>(map: aya::maps::Map, name: &'static str, len: u32) -> Result<MmapArray<T>> {
    match map {
        aya::maps::Map::Array(data) => {
            MmapArray::new(data, len).map_err(io_err(format!("mmap of {name}")))
        }
        _ => Err(DataplaneError::MissingMap(name)),
    }
}

/// Points the balancer's program array at this object's `rvs_xdp_new`.
///
/// On a restart the array is the pinned one of the earlier rvsd, and the interfaces stay
/// attached to its `rvs_xdp` through their pinned links: from this write on, that entry
/// program tail-calls the new object's `rvs_xdp_new` (one atomic slot update; until then
/// the old one, which the array keeps alive, schedules). Both halves share the pinned maps,
/// the scratch slot included. It runs right after the programs are verified and before
/// anything is attached, so a fresh attach never sees an empty slot.
fn fill_prog_array(ebpf: &mut Ebpf) -> Result<()> {
    set_prog_slot(
        ebpf,
        maps::PROGS,
        rvs_common::PROG_NEW_FLOW,
        programs::BALANCER_NEW,
    )
}

/// Puts the loaded program `program` in slot `slot` of the program array `array` (a
/// restarted rvsd points the slots at its own object's programs).
pub(crate) fn set_prog_slot(
    ebpf: &mut Ebpf,
    array: &'static str,
    slot: u32,
    program: &'static str,
) -> Result<()> {
    let prog_err = |e: ProgramError| DataplaneError::Program {
        name: program,
        source: Box::new(e),
    };
    let fd = xdp_of(ebpf, program)?
        .fd()
        .map_err(prog_err)?
        .try_clone()
        .map_err(|e| DataplaneError::Io {
            what: format!("duplicating the fd of {program}"),
            source: e,
        })?;
    let map = ebpf
        .map_mut(array)
        .ok_or(DataplaneError::MissingMap(array))?;
    let mut progs = ProgramArray::try_from(map).map_err(map_err(array))?;
    progs.set(slot, &fd, 0).map_err(map_err(array))
}

/// The XDP program `name` of a loaded object.
fn xdp_of<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    ebpf.program_mut(name)
        .ok_or(DataplaneError::Program {
            name,
            source: Box::new(ProgramError::UnexpectedProgramType),
        })?
        .try_into()
        .map_err(|e| DataplaneError::Program {
            name,
            source: Box::new(e),
        })
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name))
}

/// Nanoseconds of CLOCK_MONOTONIC_COARSE: the clock the XDP program stamps connections
/// with (bpf_ktime_get_coarse_ns).
pub fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * rvs_common::NS_PER_SEC + ts.tv_nsec as u64
}

/// Mounts bpffs at /sys/fs/bpf if nothing is mounted there.
pub fn ensure_bpffs() -> Result<()> {
    // The calling thread's mount namespace (a lab thread may have one of its own).
    let mounts = fs::read_to_string("/proc/thread-self/mounts")
        .map_err(io_err("reading /proc/thread-self/mounts"))?;
    if mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.nth(1) == Some("/sys/fs/bpf") && f.next() == Some("bpf")
    }) {
        return Ok(());
    }
    // The mount(2) call itself: no `mount` binary or PATH needed (rvsd under systemd with
    // an empty PATH, a minimal container).
    nix::mount::mount(
        Some("bpf"),
        "/sys/fs/bpf",
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| DataplaneError::Io {
        what: "mounting bpffs at /sys/fs/bpf".into(),
        source: e.into(),
    })?;
    Ok(())
}

impl Dataplane {
    /// Loads the object with maps sized by `limits`, pinned (or adopted) under `pin_dir`.
    pub fn load(pin_dir: &Path, limits: Limits) -> Result<Self> {
        fs::create_dir_all(pin_dir).map_err(io_err(format!("creating {}", pin_dir.display())))?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .map_max_entries(maps::SERVICES, limits.services)
            .map_max_entries(commit::SERVICES_B, limits.services)
            .map_max_entries(commit::JOURNAL, limits.reals)
            .map_max_entries(maps::CURSORS, limits.services)
            .map_max_entries(maps::SERVICE_STATS, limits.services)
            .map_max_entries(maps::REALS, limits.reals)
            .map_max_entries(maps::REAL_LOAD, limits.reals)
            .map_max_entries(maps::REAL_STATS, limits.reals)
            .map_max_entries(maps::ROUTES, limits.reals)
            .map_max_entries(maps::CONNS, limits.connections)
            // One template per persistent client; a quarter of the connection table.
            .map_max_entries(maps::PERSIST, (limits.connections / 4).max(1024))
            .map_max_entries(maps::DISPATCH, limits.dispatch_slots)
            // The benchmark's key-layout references hold one flow each.
            .map_max_entries(maps::REF_V4, 16)
            .map_max_entries(maps::REF_TAGGED, 16)
            .load(EBPF_OBJECT)
            .map_err(|source| DataplaneError::Load {
                pin_dir: pin_dir.to_owned(),
                source: Box::new(source),
            })?;
        for name in [
            programs::BALANCER,
            programs::BALANCER_NEW,
            programs::PASS,
            programs::MINIMAL_TX,
            programs::REF_CONN_V4,
            programs::REF_CONN_TAGGED,
            programs::REF_CONN,
            rvs_common::sched::LBL_PROGRAM,
        ] {
            xdp_of(&mut ebpf, name)?
                .load()
                .map_err(|e| DataplaneError::Program {
                    name,
                    source: Box::new(e),
                })?;
            if let Ok(info) = xdp_of(&mut ebpf, name)?.info() {
                tracing::debug!(
                    program = name,
                    verified_insns = info.verified_instruction_count(),
                    "verified"
                );
            }
        }
        fill_prog_array(&mut ebpf)?;
        locality::fill_prog_array(&mut ebpf)?;
        let services = HashMap::try_from(take_map(&mut ebpf, maps::SERVICES)?)
            .map_err(map_err(maps::SERVICES))?;
        let reals: MmapArray<RealEntry> =
            mmap_array(take_map(&mut ebpf, maps::REALS)?, maps::REALS, limits.reals)?;
        let real_load: MmapArray<RealLoad> = mmap_array(
            take_map(&mut ebpf, maps::REAL_LOAD)?,
            maps::REAL_LOAD,
            limits.reals,
        )?;
        let dispatch = mmap_array(
            take_map(&mut ebpf, maps::DISPATCH)?,
            maps::DISPATCH,
            limits.dispatch_slots,
        )?;
        let cursors =
            Array::try_from(take_map(&mut ebpf, maps::CURSORS)?).map_err(map_err(maps::CURSORS))?;
        let conns_map = take_map(&mut ebpf, maps::CONNS)?;
        let conns_batch = HashBatch::new(&conns_map, maps::CONNS)?;
        let conns = HashMap::try_from(conns_map).map_err(map_err(maps::CONNS))?;
        let persist = HashMap::try_from(take_map(&mut ebpf, maps::PERSIST)?)
            .map_err(map_err(maps::PERSIST))?;
        let service_stats_map = take_map(&mut ebpf, maps::SERVICE_STATS)?;
        let service_stats_batch = PerCpuBatch::new(&service_stats_map, maps::SERVICE_STATS)?;
        let service_stats =
            PerCpuArray::try_from(service_stats_map).map_err(map_err(maps::SERVICE_STATS))?;
        let real_stats_map = take_map(&mut ebpf, maps::REAL_STATS)?;
        let real_stats_batch = PerCpuBatch::new(&real_stats_map, maps::REAL_STATS)?;
        let real_stats =
            PerCpuArray::try_from(real_stats_map).map_err(map_err(maps::REAL_STATS))?;
        let verdicts = PerCpuArray::try_from(take_map(&mut ebpf, maps::VERDICTS)?)
            .map_err(map_err(maps::VERDICTS))?;
        let settings_map = Array::try_from(take_map(&mut ebpf, maps::SETTINGS)?)
            .map_err(map_err(maps::SETTINGS))?;
        let nat_sources = HashMap::try_from(take_map(&mut ebpf, maps::NAT_SOURCES)?)
            .map_err(map_err(maps::NAT_SOURCES))?;
        let mark_rules = Array::try_from(take_map(&mut ebpf, maps::MARK_RULES)?)
            .map_err(map_err(maps::MARK_RULES))?;
        let mark_count = Array::try_from(take_map(&mut ebpf, maps::MARK_COUNT)?)
            .map_err(map_err(maps::MARK_COUNT))?;
        let filter_map = mmap_array(
            take_map(&mut ebpf, maps::ADDR_FILTER)?,
            maps::ADDR_FILTER,
            rvs_common::ADDR_FILTER_WORDS,
        )?;
        // Adopted connections may come from NAT real servers removed meanwhile: look at
        // every packet until a walk of the table has put their addresses in the filter.
        let unscanned = conns.keys().next().is_some();
        let midflow = Midflow {
            flows: rvs_config::flows::Flows::default(),
            ecmp: false,
            stats: PerCpuArray::try_from(take_map(&mut ebpf, MIDFLOW_STATS_MAP)?)
                .map_err(map_err(MIDFLOW_STATS_MAP))?,
        };
        let services_b = HashMap::try_from(take_map(&mut ebpf, commit::SERVICES_B)?)
            .map_err(map_err(commit::SERVICES_B))?;
        let commit_word = mmap_array(take_map(&mut ebpf, commit::COMMIT)?, commit::COMMIT, 1)?;
        let journal = mmap_array(
            take_map(&mut ebpf, commit::JOURNAL)?,
            commit::JOURNAL,
            limits.reals,
        )?;
        let sync_events = events::take_ring(&mut ebpf)?;
        let sync_lost = PerCpuArray::try_from(take_map(&mut ebpf, rvs_common::events::SYNC_LOST)?)
            .map_err(map_err(rvs_common::events::SYNC_LOST))?;
        let nat_counts: std::collections::HashMap<u32, u32> =
            nat_sources.iter().filter_map(|e| e.ok()).collect();
        let stored: Settings = settings_map.get(&0, 0).map_err(map_err(maps::SETTINGS))?;
        let fresh_settings = stored.timeouts_ns.iter().all(|&t| t == 0);
        let settings = if fresh_settings {
            Settings::default()
        } else {
            stored
        };
        let mut dp = Self {
            ebpf,
            pin_dir: pin_dir.to_owned(),
            limits,
            planner: Planner::new(&limits),
            adopted: Config::default(),
            services,
            services_b,
            commit: commit_word,
            journal,
            sync_events,
            sync_lost,
            sync_events_on: false,
            reals,
            real_load,
            dispatch,
            cursors,
            conns,
            conns_batch,
            persist,
            service_stats,
            real_stats,
            service_stats_batch,
            real_stats_batch,
            verdicts,
            settings_map,
            settings,
            mark_rules,
            mark_count,
            attached: Vec::new(),
            nat_sources,
            nat_reals: std::collections::HashMap::new(),
            nat_counts,
            filter_map,
            filter: AddrFilter::new(),
            service_keys: std::collections::HashSet::new(),
            nat_held: std::collections::HashSet::new(),
            fwmark_rules: false,
            unscanned,
            midflow,
            locality: locality::Locality::default(),
        };
        // A batch a crash interrupted is finished (rolled back or forward) before anything
        // reads the maps as the state of record.
        dp.recover()?;
        let (orphans, real_entries) = dp.adopt_maps();
        if !dp.adopted.services.iter().any(|s| s.fwmark.is_some()) {
            // No fwmark service: nothing to classify (the planner starts from no rules).
            dp.mark_count
                .set(0, 0, 0)
                .map_err(map_err(maps::MARK_COUNT))?;
        }
        dp.fwmark_rules = dp
            .mark_count
            .get(&0, 0)
            .map_err(map_err(maps::MARK_COUNT))?
            != 0;
        // The filter from the adopted state, written whole (a pinned one may be stale).
        for (key, _) in &dp.live_services() {
            dp.hold_service_key(*key);
        }
        let nat_addrs: Vec<u32> = dp.nat_reals.values().copied().collect();
        for addr in nat_addrs {
            dp.hold_nat(addr);
        }
        dp.flush_filter();
        dp.write(&orphans)?;
        // Weights and thresholds of adopted servers into REAL_LOAD (the program's copy): a
        // map created by this load (an rvsd without it ran before) would otherwise read 0.
        for (id, e) in real_entries.iter().filter(|(_, e)| e.in_use()) {
            dp.write_load(*id, e);
        }
        dp.set_settings(&settings)?;
        if !dp.adopted.services.is_empty() {
            tracing::info!(
                services = dp.adopted.services.len(),
                pin_dir = %pin_dir.display(),
                "adopted the pinned dataplane state"
            );
        }
        Ok(dp)
    }

    /// Rebuilds the planner, the adopted configuration and the NAT bookkeeping from the
    /// maps (the live service copy): the state of record an earlier rvsd left. Returns the
    /// tombstones for orphaned real servers (to be written) and the real-server entries read.
    fn adopt_maps(&mut self) -> (Plan, Vec<(u32, RealEntry)>) {
        let limits = self.limits;
        let service_entries = self.live_services();
        let real_entries: Vec<(u32, RealEntry)> = (0..limits.reals)
            .filter_map(|i| self.reals.get(i).map(|e: RealEntry| (i, e)))
            .filter(|(_, e)| e.in_use() || e.generation != 0)
            .collect();
        let (planner, adopted, orphans) = Planner::adopt(&limits, &service_entries, &real_entries);
        self.planner = planner;
        self.adopted = Config {
            timeouts: Timeouts::from_settings(&self.settings),
            limits,
            services: adopted,
            ..Config::default()
        };
        self.nat_reals = real_entries
            .iter()
            .filter(|(_, e)| e.in_use() && e.forward == Forward::Masq as u8)
            .map(|(id, e)| (*id, e.addr))
            .collect();
        (orphans, real_entries)
    }

    /// The map capacities this dataplane was loaded with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The planner, to look up the ids given to services and real servers.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The settings flags the dataplane's state calls for.
    fn settings_flags(&self) -> u64 {
        let nat = if self.nat_reals.is_empty() {
            0
        } else {
            SETTINGS_F_NAT
        };
        let all = if self.fwmark_rules || self.unscanned {
            SETTINGS_F_ALL_PACKETS
        } else {
            0
        };
        nat | all | self.sync_events_flag()
    }

    /// Rewrites the settings when their flags no longer match the state.
    fn refresh_flags(&mut self) -> Result<()> {
        if self.settings_flags() != self.settings.flags {
            let s = self.settings;
            self.set_settings(&s)?;
        }
        Ok(())
    }

    /// The address-service key `key` is (about to be) in SERVICES: its VIP in the filter.
    fn hold_service_key(&mut self, key: ServiceKey) {
        if key.pad != SERVICE_KEY_FWMARK && self.service_keys.insert(key) {
            self.filter.add(key.vip);
        }
    }

    /// NAT address `addr` may send replies: in the filter.
    fn hold_nat(&mut self, addr: u32) {
        if self.nat_held.insert(addr) {
            self.filter.add(addr);
        }
    }

    /// Writes the filter words that changed.
    fn flush_filter(&mut self) {
        for (i, word) in self.filter.take_dirty() {
            self.filter_map.set(i, word);
        }
    }

    /// Writes the global settings (timeouts); the flags are the dataplane's own.
    pub fn set_settings(&mut self, settings: &Settings) -> Result<()> {
        let mut settings = *settings;
        settings.flags = self.settings_flags();
        self.settings_map
            .set(0, settings, 0)
            .map_err(map_err(maps::SETTINGS))?;
        self.settings = settings;
        Ok(())
    }

    /// Brings NAT_SOURCES and the NAT settings flag in line with the NAT real servers.
    fn sync_nat_sources(&mut self) -> Result<()> {
        let mut want: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for addr in self.nat_reals.values() {
            *want.entry(*addr).or_default() += 1;
        }
        for (addr, n) in &want {
            if self.nat_counts.get(addr) != Some(n) {
                self.nat_sources
                    .insert(addr, n, 0)
                    .map_err(map_err(maps::NAT_SOURCES))?;
            }
        }
        for addr in self.nat_counts.keys() {
            if !want.contains_key(addr) {
                match self.nat_sources.remove(addr) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(map_err(maps::NAT_SOURCES)(e)),
                }
            }
        }
        self.nat_counts = want;
        self.refresh_flags()
    }

    /// Publishes a real server's weight and thresholds to REAL_LOAD; an id given to another
    /// server (new generation) starts from zero counts. As IPVS's `__ip_vs_update_dest`, a
    /// raised or removed upper threshold clears OVERLOAD.
    fn write_load(&mut self, id: u32, entry: &RealEntry) {
        let Some(p) = self.real_load.ptr(id) else {
            return;
        };
        let Some(l) = self.load_ref(id) else {
            return;
        };
        // SAFETY: p points into the mapping; userspace alone writes these 32-bit fields
        // (aligned stores, so the program never reads a torn value).
        unsafe {
            let old_upper = (*p).u_threshold;
            if (*p).generation != entry.generation {
                // Generation first: the program only counts for the generation it sees.
                std::ptr::addr_of_mut!((*p).generation).write_volatile(entry.generation);
                l.conns.store(0, Ordering::SeqCst);
                l.flags.store(0, Ordering::SeqCst);
                std::ptr::addr_of_mut!((*p).persist).write_volatile(0);
            }
            let weight = i32::try_from(entry.weight).unwrap_or(i32::MAX);
            let weight = if entry.in_use() { weight } else { 0 };
            std::ptr::addr_of_mut!((*p).weight).write_volatile(weight);
            std::ptr::addr_of_mut!((*p).l_threshold).write_volatile(entry.l_threshold);
            std::ptr::addr_of_mut!((*p).u_threshold).write_volatile(entry.u_threshold);
            if entry.u_threshold == 0 || entry.u_threshold > old_upper {
                l.flags.fetch_and(!LOAD_F_OVERLOAD, Ordering::SeqCst);
            }
        }
    }

    /// Time left before `conn` expires (0 when it has), by its state's timeout.
    fn time_left(&self, conn: &ConnEntry, now: u64) -> u64 {
        let timeouts = &self.settings.timeouts_ns;
        let timeout = timeouts
            .get(conn.state as usize)
            .copied()
            .unwrap_or(timeouts[ConnState::Udp as usize]);
        timeout.saturating_sub(now.saturating_sub(conn.last_seen))
    }

    /// Calls `f` on every entry of the connection table, read in batches (a syscall per few thousand
    /// entries instead of two per entry); a kernel without batched lookups on hash maps
    /// (before 5.6) gets the walk entry by entry.
    fn walk_conns(&self, mut f: impl FnMut(FlowKey, ConnEntry)) {
        let mut seen = 0usize;
        if let Err(e) = self.conns_batch.for_each(|k, v| {
            seen += 1;
            f(k, v);
        }) {
            if seen == 0 {
                tracing::debug!(error = %e, "batched walk of the connection table; walking it entry by entry");
                for (k, v) in self.conns.iter().filter_map(|entry| entry.ok()) {
                    f(k, v);
                }
            } else {
                // As an entry-by-entry walk skips what fails to read.
                tracing::debug!(error = %e, seen, "batched walk of the connection table stopped");
            }
        }
    }

    /// Whether `conn` still points at the real server its id names now.
    fn conn_is_current(&self, conn: &ConnEntry) -> bool {
        self.reals
            .get(conn.real)
            .is_some_and(|r| r.in_use() && r.generation == conn.real_gen)
    }

    /// One pass over the connection table: deletes entries idle longer than their state's
    /// timeout (the XDP program already ignores them; this frees their memory) and counts
    /// the live ones per real-server id, as IPVS's ActiveConn (established) and InActConn.
    pub fn scan_conns(&mut self) -> Result<ConnScan> {
        self.expire_second_chance()?;
        let now = monotonic_coarse_ns();
        let mut scan = ConnScan::default();
        let mut expired = Vec::new();
        // Counts before the walk, to tell which servers' counts the program changed meanwhile.
        let before: Vec<(u32, u64)> = self.counted_reals();
        // Sources of reply entries: the NAT addresses the filter must keep holding.
        let mut reply_sources = std::collections::HashSet::new();
        self.walk_conns(|key, conn| {
            if conn.is_reply() {
                reply_sources.insert(key.src);
            }
            if self.time_left(&conn, now) == 0 {
                expired.push(key);
            } else if !conn.is_reply() && self.conn_is_current(&conn) {
                // One connection per request entry (a NAT reply entry is its other half).
                let counts = scan.per_real.entry(conn.real).or_default();
                if tcp::is_active(conn.state) {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
        });
        // What this pass itself takes off each server's counts (the expiry unbinds).
        let mut unbound: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        for key in &expired {
            // Look again right before deleting: a packet may have refreshed it meanwhile.
            let Ok(conn) = self.conns.get(key, 0) else {
                continue;
            };
            if self.time_left(&conn, now) == 0 && self.conns.remove(key).is_ok() {
                scan.expired += 1;
                // Deleted by us, so exactly once: IPVS's unbind at the entry's free.
                if !conn.is_reply() && self.unbind(&conn) {
                    let d = unbound.entry(conn.real).or_default();
                    *d = d.wrapping_add(RealLoad::unit(conn.state));
                }
            }
        }
        scan.corrected = self.reconcile(&before, &unbound, &scan.per_real);
        // The ids walked once for both (a walk over every service's real servers).
        let ids: Vec<u32> = before.iter().map(|&(id, _)| id).collect();
        self.count_templates(now, &ids);
        self.release_nat_addrs(&reply_sources)?;
        Ok(scan)
    }

    /// After a walk of the table: holds every reply entry's source in the filter (entries
    /// adopted at load), releases removed NAT servers' addresses no entry names any more,
    /// and turns the filter on if adoption had it off.
    fn release_nat_addrs(&mut self, reply_sources: &std::collections::HashSet<u32>) -> Result<()> {
        for addr in reply_sources {
            self.hold_nat(*addr);
        }
        let gone: Vec<u32> = self
            .nat_held
            .iter()
            .copied()
            .filter(|a| !self.nat_counts.contains_key(a) && !reply_sources.contains(a))
            .collect();
        for addr in gone {
            self.nat_held.remove(&addr);
            self.filter.remove(addr);
        }
        self.flush_filter();
        self.unscanned = false;
        self.refresh_flags()
    }

    /// PersistConn: the live persistence templates per real server (IPVS counts a template
    /// from its creation to its expiry, the service's persistence timeout after its last
    /// use), written to REAL_LOAD's `persist` (only userspace reads it).
    fn count_templates(&mut self, now: u64, ids: &[u32]) {
        let templates: Vec<(PersistKey, PersistEntry)> =
            self.persist.iter().filter_map(|e| e.ok()).collect();
        // The service map is walked (a syscall per service) only when there are templates
        // to check against it: most tables have none, and a walk over 100 000 services on
        // every scan was most of an idle rvsd's CPU.
        let timeouts: std::collections::HashMap<u32, u64> = if templates.is_empty() {
            std::collections::HashMap::new()
        } else {
            self.services
                .iter()
                .filter_map(|e| e.ok())
                .map(|(_, e)| (e.id, u64::from(e.persist_timeout) * rvs_common::NS_PER_SEC))
                .collect()
        };
        let mut per_real: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for (key, t) in templates {
            let live = timeouts
                .get(&key.service)
                .is_some_and(|&to| now.saturating_sub(t.last_seen) <= to);
            let current = self.real_load.get(t.real).map(|l| l.generation) == Some(t.real_gen);
            if live && current {
                *per_real.entry(t.real).or_default() += 1;
            }
        }
        for &id in ids {
            if let Some(p) = self.real_load.ptr(id) {
                let n = per_real.get(&id).copied().unwrap_or(0);
                // SAFETY: p points into the mapping; the program never writes this field.
                unsafe { std::ptr::addr_of_mut!((*p).persist).write_volatile(n) };
            }
        }
    }

    /// The atomics of real `id`'s load.
    fn load_ref(&self, id: u32) -> Option<LoadRef<'_>> {
        let p = self.real_load.ptr(id)?;
        // SAFETY: p points into the mapping, 16-byte aligned (the value's alignment); the
        // fields are aligned for their atomic types and live as long as `self`.
        unsafe {
            Some(LoadRef {
                conns: AtomicU64::from_ptr(std::ptr::addr_of_mut!((*p).conns)),
                flags: AtomicU32::from_ptr(std::ptr::addr_of_mut!((*p).flags)),
                load: p,
            })
        }
    }

    /// Takes a freed entry off its real server's counts (if its generation is still the
    /// load's) and applies the unbind rule for OVERLOAD; whether it was counted.
    fn unbind(&self, conn: &ConnEntry) -> bool {
        let Some(l) = self.load_ref(conn.real) else {
            return false;
        };
        if self.real_load.get(conn.real).map(|v| v.generation) != Some(conn.real_gen) {
            return false;
        }
        l.conns
            .fetch_sub(RealLoad::unit(conn.state), Ordering::SeqCst);
        l.unbind_rule();
        true
    }

    /// (id, conns) of every real server in use.
    fn counted_reals(&self) -> Vec<(u32, u64)> {
        self.planner
            .real_ids()
            .filter_map(|id| {
                self.load_ref(id)
                    .map(|l| (id, l.conns.load(Ordering::SeqCst)))
            })
            .collect()
    }

    /// Sets each server's counts to what the table holds, when the program changed none of
    /// them during the walk (its counts now are the ones before less our own unbinds);
    /// servers that changed are corrected on a later pass. A delta is added, so a change
    /// landing between the read and the add is kept. Returns how many were corrected.
    fn reconcile(
        &self,
        before: &[(u32, u64)],
        unbound: &std::collections::HashMap<u32, u64>,
        table: &std::collections::HashMap<u32, (u64, u64)>,
    ) -> usize {
        let mut corrected = 0;
        for &(id, c0) in before {
            let Some(l) = self.load_ref(id) else {
                continue;
            };
            let expected = c0.wrapping_sub(unbound.get(&id).copied().unwrap_or(0));
            let c1 = l.conns.load(Ordering::SeqCst);
            if c1 != expected {
                continue;
            }
            let (a, i) = table.get(&id).copied().unwrap_or_default();
            let truth = (a << 32) | (i & 0xffff_ffff);
            if truth != c1 {
                l.conns.fetch_add(truth.wrapping_sub(c1), Ordering::SeqCst);
                l.unbind_rule();
                corrected += 1;
            }
        }
        corrected
    }

    /// Real server `id`'s counts from REAL_LOAD (what ipvsadm shows).
    pub fn real_conns(&self, id: u32) -> RealConns {
        self.real_load
            .get(id)
            .map(|l| RealConns {
                active: RealLoad::active(l.conns).into(),
                inactive: RealLoad::inactive(l.conns).into(),
                persist: l.persist.into(),
                overloaded: l.flags & LOAD_F_OVERLOAD != 0,
            })
            .unwrap_or_default()
    }

    /// The live connections, one per connection (NAT reply entries are left out; the
    /// request entry carries the state both directions moved it to): (flow, entry,
    /// nanoseconds until it expires). For NAT, `entry.peer_addr`/`peer_port` are the real
    /// server's address and port.
    pub fn connections(&self) -> Vec<(FlowKey, ConnEntry, u64)> {
        let now = monotonic_coarse_ns();
        let mut out = Vec::new();
        self.walk_conns(|k, c| {
            if !c.is_reply() && self.conn_is_current(&c) {
                let left = self.time_left(&c, now);
                if left > 0 {
                    out.push((k, c, left));
                }
            }
        });
        out
    }

    /// The real-server entry of id `id`.
    pub fn real(&self, id: u32) -> Option<RealEntry> {
        self.reals.get(id)
    }

    /// Zeroes the counters of service id `service` and of real-server ids `reals`.
    pub fn zero_counters(&mut self, service: u32, reals: &[u32]) -> Result<()> {
        self.service_stats
            .set(service, Self::zeros()?, 0)
            .map_err(map_err(maps::SERVICE_STATS))?;
        for id in reals {
            self.real_stats
                .set(*id, Self::zeros()?, 0)
                .map_err(map_err(maps::REAL_STATS))?;
        }
        Ok(())
    }

    fn zeros() -> Result<PerCpuValues<Counters>> {
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Io {
            what: "counting possible CPUs".into(),
            source: e,
        })?;
        PerCpuValues::try_from(vec![Counters::default(); ncpu]).map_err(|e| DataplaneError::Io {
            what: "building per-CPU zeros".into(),
            source: e,
        })
    }

    /// Brings the maps to `config` (services, real servers, timeouts) as a diff.
    /// Planning errors change nothing.
    pub fn apply(&mut self, config: &Config) -> Result<Plan> {
        let ecmp = config.bgp.is_some() || self.midflow.ecmp;
        self.set_flows(&config.flows, ecmp)?;
        self.expire_second_chance()?;
        let plan = self
            .planner
            .plan(config, monotonic_coarse_ns() / 1_000_000)?;
        self.write(&plan)?;
        self.set_settings(&config.timeouts.to_settings())?;
        self.set_schedulers(&config.schedulers)?;
        Ok(plan)
    }

    /// Applies changes to some services only (see [`Planner::plan_updates`]) and the
    /// timeouts; the cost follows the size of the change, not of the state.
    pub fn apply_updates(
        &mut self,
        updates: &[(rvs_config::ServiceId, Option<&rvs_config::VirtualService>)],
        timeouts: &Timeouts,
    ) -> Result<Plan> {
        let plan = self
            .planner
            .plan_updates(updates, monotonic_coarse_ns() / 1_000_000)?;
        self.write(&plan)?;
        let settings = timeouts.to_settings();
        if settings != self.settings {
            self.set_settings(&settings)?;
        }
        Ok(plan)
    }

    /// Applies `[flows]`: sloppy_tcp (resolved with `ecmp`, whether the VIPs are announced
    /// over BGP) into the settings, the second-chance window into the planner (for the
    /// next changes).
    pub fn set_flows(&mut self, flows: &rvs_config::flows::Flows, ecmp: bool) -> Result<()> {
        self.midflow.flows = *flows;
        let plan = self.planner.set_flows(
            flows.sloppy_tcp_on(ecmp),
            u64::from(flows.second_chance) * 1_000,
        );
        self.write(&plan)
    }

    /// Tells the dataplane the VIPs are announced over BGP (ECMP) even when the config it
    /// is given has no `[bgp]` (e.g. `rvsd --bgp FILE`): `sloppy_tcp = "auto"` turns on.
    pub fn set_ecmp(&mut self, on: bool) -> Result<()> {
        self.midflow.ecmp = on;
        let flows = self.midflow.flows;
        self.set_flows(&flows, on)
    }

    /// The mid-flow counters summed over CPUs, by `MidflowCount` index.
    pub fn midflow_counts(&self) -> Result<[u64; MIDFLOW_COUNTS as usize]> {
        let mut out = [0u64; MIDFLOW_COUNTS as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let v = self
                .midflow
                .stats
                .get(&(i as u32), 0)
                .map_err(map_err(MIDFLOW_STATS_MAP))?;
            *slot = v.iter().sum();
        }
        Ok(out)
    }

    /// Ends the second-chance windows that are over (rvsd calls it with its periodic
    /// connection scan, so a window lasts up to one scan interval longer).
    pub fn expire_second_chance(&mut self) -> Result<()> {
        let plan = self
            .planner
            .expire_second_chance(monotonic_coarse_ns() / 1_000_000);
        if plan.is_empty() {
            return Ok(());
        }
        self.write(&plan)
    }

    /// Marks the services of `vips` standby (this node is VRRP BACKUP for them) and the
    /// others active.
    pub fn set_standby(
        &mut self,
        vips: std::collections::HashSet<std::net::Ipv4Addr>,
    ) -> Result<()> {
        let plan = self.planner.set_standby(vips);
        self.write(&plan)
    }

    /// The state adopted from pinned maps at load (services in id order, timeouts from the
    /// settings map); empty for fresh maps. The caller tracks what it applies since.
    pub fn adopted(&self) -> &Config {
        &self.adopted
    }

    /// Attaches the balancer to `interface` through a bpf_link pinned under the pin
    /// directory, so forwarding goes on if the daemon exits. Enables IPv4 forwarding on the
    /// interface: the kernel's FIB lookup from XDP requires it.
    pub fn attach(&mut self, interface: &str, mode: ConfigXdpMode) -> Result<()> {
        let link_pin = self.pin_dir.join(format!("link_{interface}"));
        if link_pin.exists() {
            let ifindex = ifindex_of(interface);
            match link::pinned_xdp_ifindex(&link_pin) {
                // A previous rvsd's link still holds the interface: keep it, so traffic
                // never passes through the kernel while rvsd restarts. It runs the same
                // program on the same pinned maps.
                Some(i) if i != 0 && Some(i) == ifindex => {
                    tracing::info!(interface, "balancer already attached (adopted)");
                    set_forwarding(interface)?;
                    self.attached.push(interface.to_owned());
                    return Ok(());
                }
                _ => {
                    // The interface went away or was recreated: replace the stale link.
                    fs::remove_file(&link_pin)
                        .map_err(io_err(format!("removing {}", link_pin.display())))?;
                }
            }
        }
        set_forwarding(interface)?;
        let mode = match mode {
            ConfigXdpMode::Native => XdpMode::Driver,
            ConfigXdpMode::Generic => XdpMode::Skb,
        };
        let attach_err = |source: ProgramError| DataplaneError::Attach {
            interface: interface.to_owned(),
            source: Box::new(source),
        };
        let prog = self.xdp_program(programs::BALANCER)?;
        let link_id = prog.attach(interface, mode).map_err(attach_err)?;
        let link = prog.take_link(link_id).map_err(attach_err)?;
        let fd_link = FdLink::try_from(link).map_err(|e| DataplaneError::Io {
            what: format!("XDP on {interface} is not a bpf_link (kernel too old?)"),
            source: std::io::Error::other(e.to_string()),
        })?;
        fd_link.pin(&link_pin).map_err(|e| DataplaneError::Io {
            what: format!("pinning XDP link at {}", link_pin.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        self.attached.push(interface.to_owned());
        Ok(())
    }

    /// The loaded XDP program `name` (one of [`rvs_common::programs`]).
    pub fn xdp_program(&mut self, name: &'static str) -> Result<&mut Xdp> {
        xdp_of(&mut self.ebpf, name)
    }

    /// Global verdict counters summed over CPUs.
    pub fn verdicts(&self) -> Result<Vec<(Verdict, u64)>> {
        sum_verdicts(&self.verdicts)
    }

    /// Counters of one service id, summed over CPUs.
    pub fn service_counters(&self, id: u32) -> Result<Counters> {
        sum_counters(&self.service_stats, id, maps::SERVICE_STATS)
    }

    /// Counters of one real-server id, summed over CPUs.
    pub fn real_counters(&self, id: u32) -> Result<Counters> {
        sum_counters(&self.real_stats, id, maps::REAL_STATS)
    }

    /// Counters of the service ids `ids`, summed over CPUs, in the order of `ids`: the
    /// values [`Dataplane::service_counters`] gives one by one, read in batches.
    pub fn service_counters_many(&self, ids: &[u32]) -> Result<Vec<Counters>> {
        self.service_stats_batch
            .read_many(ids, sum_cpus)
            .or_else(|e| one_by_one(e, ids, |id| self.service_counters(id)))
    }

    /// Counters of the real-server ids `ids`, summed over CPUs, in the order of `ids` (see
    /// [`Dataplane::service_counters_many`]).
    pub fn real_counters_many(&self, ids: &[u32]) -> Result<Vec<Counters>> {
        self.real_stats_batch
            .read_many(ids, sum_cpus)
            .or_else(|e| one_by_one(e, ids, |id| self.real_counters(id)))
    }

    /// The connection table (the benchmark fills it).
    pub fn conns_mut(&mut self) -> &mut HashMap<MapData, FlowKey, ConnEntry> {
        &mut self.conns
    }

    /// Benchmark reference: inserts into the 16-byte-key connection map.
    pub fn insert_ref_v4(&mut self, key: FlowKey, entry: ConnEntry) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(maps::REF_V4)
            .ok_or(DataplaneError::MissingMap(maps::REF_V4))?;
        let mut m: HashMap<&mut MapData, FlowKey, ConnEntry> =
            HashMap::try_from(map).map_err(map_err(maps::REF_V4))?;
        m.insert(key, entry, 0).map_err(map_err(maps::REF_V4))
    }

    /// Benchmark reference: inserts into the 40-byte family-tagged-key connection map.
    pub fn insert_ref_tagged(&mut self, key: TaggedFlowKey, entry: ConnEntry) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(maps::REF_TAGGED)
            .ok_or(DataplaneError::MissingMap(maps::REF_TAGGED))?;
        let mut m: HashMap<&mut MapData, TaggedFlowKey, ConnEntry> =
            HashMap::try_from(map).map_err(map_err(maps::REF_TAGGED))?;
        m.insert(key, entry, 0).map_err(map_err(maps::REF_TAGGED))
    }

    /// The pin directory.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }
}

fn sum_counters(
    map: &PerCpuArray<MapData, Counters>,
    id: u32,
    name: &'static str,
) -> Result<Counters> {
    let per_cpu = map.get(&id, 0).map_err(map_err(name))?;
    Ok(sum_cpus(&per_cpu))
}

/// After a failed batched read (a kernel before 5.6 has no batched lookups; an id outside
/// the array fails either way): the same ids one lookup each.
fn one_by_one(
    batch_error: DataplaneError,
    ids: &[u32],
    one: impl Fn(u32) -> Result<Counters>,
) -> Result<Vec<Counters>> {
    tracing::debug!(error = %batch_error, "batched counter read; reading one by one");
    ids.iter().map(|&id| one(id)).collect()
}

/// One counter set summed over its per-CPU copies.
fn sum_cpus(per_cpu: &[Counters]) -> Counters {
    per_cpu.iter().fold(Counters::default(), |mut acc, c| {
        acc.conns += c.conns;
        acc.packets_in += c.packets_in;
        acc.bytes_in += c.bytes_in;
        acc.packets_out += c.packets_out;
        acc.bytes_out += c.bytes_out;
        acc
    })
}

/// The balancer's maps, which a side program (pass, decapsulation) never uses: loaded with
/// one entry each so a side program costs no real memory.
const BALANCER_MAPS: &[&str] = &[
    maps::SERVICES,
    commit::SERVICES_B,
    commit::JOURNAL,
    maps::REALS,
    maps::REAL_LOAD,
    maps::DISPATCH,
    maps::CURSORS,
    maps::CONNS,
    maps::PERSIST,
    maps::SERVICE_STATS,
    maps::REAL_STATS,
    maps::NAT_SOURCES,
    maps::MARK_RULES,
    maps::DECAP_ADDRS,
    maps::DECAP_PORTS,
    maps::REF_V4,
    maps::REF_TAGGED,
    maps::ADDR_FILTER,
    rvs_common::sched::maps::LBLC,
    rvs_common::sched::maps::LBLCR,
];

/// Loads the eBPF object for a side program: every map in [`BALANCER_MAPS`] but `keep`
/// shrunk to one entry, and no map left pinned (the object's maps ask to be pinned, so
/// they get a private directory that is removed right after the load; the program keeps
/// them alive).
pub(crate) fn load_side_object(tag: &str, keep: &[&str]) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    for name in BALANCER_MAPS.iter().filter(|n| !keep.contains(n)) {
        loader.map_max_entries(name, 1);
    }
    // A ring buffer is at least one page.
    loader.map_max_entries(rvs_common::events::SYNC_EVENTS, 4096);
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let pin_dir = PathBuf::from(format!(
        "/sys/fs/bpf/rvs-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    ensure_bpffs()?;
    fs::create_dir_all(&pin_dir).map_err(io_err(format!("creating {}", pin_dir.display())))?;
    let loaded = loader
        .default_map_pin_directory(&pin_dir)
        .load(EBPF_OBJECT)
        .map_err(|source| DataplaneError::Load {
            pin_dir: pin_dir.clone(),
            source: Box::new(source),
        });
    let unpinned = cleanup(&pin_dir);
    let ebpf = loaded?;
    unpinned?;
    Ok(ebpf)
}

/// An XDP program that passes every frame, attached to one interface until dropped.
///
/// A frame sent with XDP_TX or XDP_REDIRECT into a veth reaches the peer only when the
/// peer runs an XDP program of its own; this is that program. Real NICs do not need it.
pub struct PassProgram {
    _ebpf: Ebpf,
}

impl PassProgram {
    /// Loads the pass program (with minimal, unpinned maps) and attaches it to `interface`
    /// in the caller's network namespace.
    pub fn attach(interface: &str) -> Result<PassProgram> {
        let mut ebpf = load_side_object("pass", &[])?;
        let prog = xdp_of(&mut ebpf, programs::PASS)?;
        let attach_err = |source: ProgramError| DataplaneError::Attach {
            interface: interface.to_owned(),
            source: Box::new(source),
        };
        prog.load().map_err(attach_err)?;
        prog.attach(interface, XdpMode::Driver)
            .map_err(attach_err)?;
        Ok(PassProgram { _ebpf: ebpf })
    }
}

/// The index of `interface` in the caller's network namespace.
fn ifindex_of(interface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(interface).ok()?;
    // SAFETY: a valid NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i != 0).then_some(i)
}

/// Sets net.ipv4.conf.IFACE.forwarding=1 (bpf_fib_lookup refuses interfaces without it).
pub fn set_forwarding(interface: &str) -> Result<()> {
    if interface.contains('/') || interface.starts_with('.') {
        return Err(DataplaneError::Io {
            what: format!("bad interface name {interface:?}"),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    }
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/forwarding");
    fs::write(&path, "1").map_err(io_err(format!(
        "writing {path} (does the interface exist?)"
    )))
}

/// Verdict counters read from the maps pinned under `pin_dir` by a running daemon.
pub fn pinned_verdicts(pin_dir: &Path) -> Result<Vec<(Verdict, u64)>> {
    let path = pin_dir.join(maps::VERDICTS);
    let data = MapData::from_pin(&path).map_err(map_err(maps::VERDICTS))?;
    let map: PerCpuArray<MapData, u64> = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))
        .map_err(map_err(maps::VERDICTS))?;
    sum_verdicts(&map)
}

/// Every verdict counter of `map`, summed over CPUs, in counter-index order.
fn sum_verdicts(map: &PerCpuArray<MapData, u64>) -> Result<Vec<(Verdict, u64)>> {
    Verdict::ALL
        .iter()
        .map(|&v| {
            let per_cpu = map.get(&(v as u32), 0).map_err(map_err(maps::VERDICTS))?;
            Ok((v, per_cpu.iter().sum()))
        })
        .collect()
}

/// Detaches and unpins what rvs pinned under `pin_dir` (links first, so traffic stops
/// being balanced, then maps). Only on a bpffs mount, and only the names rvs creates
/// (`link_IFACE`, `RVS_*` maps): `--cleanup --pin-path` pointed at the wrong directory
/// deletes nothing of anyone else's. Foreign entries are left and named in the error.
pub fn cleanup(pin_dir: &Path) -> Result<()> {
    /// bpffs's `f_type` (linux/magic.h).
    const BPF_FS_MAGIC: u32 = 0xcafe_4a11;
    if !pin_dir.exists() {
        return Ok(());
    }
    let refuse = |why: String| DataplaneError::Io {
        what: why,
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    };
    let c_path = std::ffi::CString::new(pin_dir.as_os_str().as_encoded_bytes())
        .map_err(|_| refuse(format!("{}: a NUL in the path", pin_dir.display())))?;
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct for the kernel to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(DataplaneError::Io {
            what: format!("statfs {}", pin_dir.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    // f_type's width differs between targets; the magic fits in 32 bits.
    #[allow(clippy::unnecessary_cast)]
    if st.f_type as u32 != BPF_FS_MAGIC {
        return Err(refuse(format!(
            "{} is not on a bpffs mount: rvs pins only live on bpffs, nothing removed",
            pin_dir.display()
        )));
    }
    let entries =
        fs::read_dir(pin_dir).map_err(io_err(format!("reading {}", pin_dir.display())))?;
    let mut ours = Vec::new();
    let mut foreign = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().is_ok_and(|t| !t.is_dir());
        if is_file && (name.starts_with("link_") || name.starts_with("RVS_")) {
            ours.push(e.path());
        } else {
            foreign.push(name);
        }
    }
    ours.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("link_"))
    });
    for p in ours {
        fs::remove_file(&p).map_err(io_err(format!("unpinning {}", p.display())))?;
    }
    if !foreign.is_empty() {
        foreign.sort();
        return Err(refuse(format!(
            "{}: rvs's pins removed; left what rvs did not create: {}",
            pin_dir.display(),
            foreign.join(", ")
        )));
    }
    fs::remove_dir(pin_dir).map_err(io_err(format!("removing {}", pin_dir.display())))
}
