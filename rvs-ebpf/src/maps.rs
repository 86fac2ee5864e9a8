//! Every BPF map of the object. Sizes here are defaults; the loader resizes them from the
//! configuration before load.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray},
};
use rvs_common::sched::{LBL_MAX_ENTRIES, LblKey, LblRequest, LblcEntry, LblcrEntry};
use rvs_common::{
    ADDR_FILTER_WORDS, ClockCache, ConnEntry, Counters, DECAP_COUNTS, DEFAULT_DISPATCH_SLOTS,
    DEFAULT_MAX_CONNS, DEFAULT_MAX_PERSIST, DEFAULT_MAX_REALS, DEFAULT_MAX_SERVICES, FlowKey,
    MAX_MARK_RULES, MarkRuleEntry, NewFlowScratch, PROG_SLOTS, PersistEntry, PersistKey, RealEntry,
    RealLoad, RouteCache, ServiceEntry, ServiceKey, Settings, TaggedFlowKey, VERDICTS,
};

/// Lets userspace read and write arrays through mmap instead of a syscall per element.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// (proto, VIP, port) → service.
#[map(name = "RVS_SERVICES")]
pub static SERVICES: HashMap<ServiceKey, ServiceEntry> = HashMap::pinned(DEFAULT_MAX_SERVICES, 0);
/// Real-server id → real server.
#[map(name = "RVS_REALS")]
pub static REALS: Array<RealEntry> = Array::pinned(DEFAULT_MAX_REALS, BPF_F_MMAPABLE);
/// Every service's scheduler table (real-server ids).
#[map(name = "RVS_DISPATCH")]
pub static DISPATCH: Array<u32> = Array::pinned(DEFAULT_DISPATCH_SLOTS, BPF_F_MMAPABLE);
/// Real-server id → its load (ActiveConn/InActConn, weight, thresholds), IPVS's dest counters.
#[map(name = "RVS_REAL_LOAD")]
pub static REAL_LOAD: Array<RealLoad> = Array::pinned(DEFAULT_MAX_REALS, BPF_F_MMAPABLE);
/// Service id → rr/wrr cursor.
#[map(name = "RVS_CURSORS")]
pub static CURSORS: Array<u64> = Array::pinned(DEFAULT_MAX_SERVICES, 0);
/// IPv4 connection table: request entries and NAT reply entries.
#[map(name = "RVS_CONNS")]
pub static CONNS: LruHashMap<FlowKey, ConnEntry> = LruHashMap::pinned(DEFAULT_MAX_CONNS, 0);
/// Per-service counters.
#[map(name = "RVS_SERVICE_STATS")]
pub static SERVICE_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(DEFAULT_MAX_SERVICES, 0);
/// Per-real-server counters.
#[map(name = "RVS_REAL_STATS")]
pub static REAL_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(DEFAULT_MAX_REALS, 0);
/// Verdict counters.
#[map(name = "RVS_VERDICTS")]
pub static VERDICT_COUNTS: PerCpuArray<u64> = PerCpuArray::pinned(VERDICTS, 0);
/// Persistence templates.
#[map(name = "RVS_PERSIST")]
pub static PERSIST: LruHashMap<PersistKey, PersistEntry> =
    LruHashMap::pinned(DEFAULT_MAX_PERSIST, 0);
/// Global settings.
#[map(name = "RVS_SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::pinned(1, 0);
/// NAT real-server addresses (→ how many NAT real servers have it).
#[map(name = "RVS_NAT_SOURCES")]
pub static NAT_SOURCES: HashMap<u32, u32> = HashMap::pinned(65_536, 0);
/// Decapsulation: local addresses (→ 1).
#[map(name = "RVS_DECAP_ADDRS")]
pub static DECAP_ADDRS: HashMap<u32, u8> = HashMap::pinned(256, 0);
/// Decapsulation: GUE ports, network order (→ 1).
#[map(name = "RVS_DECAP_PORTS")]
pub static DECAP_PORTS: HashMap<u16, u8> = HashMap::pinned(64, 0);
/// Decapsulation counters.
#[map(name = "RVS_DECAP_STATS")]
pub static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::pinned(DECAP_COUNTS, 0);
/// Benchmark reference: a 16-byte-key connection map.
#[map(name = "RVS_REF_V4")]
pub static REF_V4: LruHashMap<FlowKey, ConnEntry> = LruHashMap::pinned(4096, 0);
/// Benchmark reference: a 40-byte family-tagged-key connection map.
#[map(name = "RVS_REF_TAGGED")]
pub static REF_TAGGED: LruHashMap<TaggedFlowKey, ConnEntry> = LruHashMap::pinned(4096, 0);
/// fwmark classification rules, walked from the last in use.
#[map(name = "RVS_MARK_RULES")]
pub static MARK_RULES: Array<MarkRuleEntry> = Array::pinned(MAX_MARK_RULES, 0);
/// How many MARK_RULES entries are in use (0: no fwmark service, nothing walked).
#[map(name = "RVS_MARK_COUNT")]
pub static MARK_COUNT: Array<u32> = Array::pinned(1, 0);
/// Address filter: one bit per hashed VIP or NAT real-server address (see
/// `rvs_common::addr_filter_slot`); a packet whose addresses both miss goes to the kernel.
#[map(name = "RVS_ADDR_FILTER")]
pub static ADDR_FILTER: Array<u64> = Array::pinned(ADDR_FILTER_WORDS, BPF_F_MMAPABLE);
/// The balancer's second half: slot `PROG_NEW_FLOW` holds `rvs_xdp_new` (filled by the
/// loader; a restarted rvsd points it at its own object's program).
#[map(name = "RVS_PROGS")]
pub static PROGS: ProgramArray = ProgramArray::pinned(PROG_SLOTS, 0);
/// What `rvs_xdp` hands `rvs_xdp_new` (one slot per CPU). Pinned, so an entry program kept
/// by a pinned link over a restart and the new object's `rvs_xdp_new` share it.
#[map(name = "RVS_SCRATCH")]
pub static SCRATCH: PerCpuArray<NewFlowScratch> = PerCpuArray::pinned(1, 0);
/// Each CPU's last coarse-clock reading (`rvs_common::ClockCache`). Not pinned: a cache
/// that any program may refill, never state.
#[map(name = "RVS_CLOCK")]
pub static CLOCK: PerCpuArray<ClockCache> = PerCpuArray::with_max_entries(1, 0);
/// Each CPU's route towards each real server, for new connections (`rvs_common::RouteCache`).
/// Not pinned: a cache, refilled from the FIB.
#[map(name = "RVS_ROUTES")]
pub static ROUTES: PerCpuArray<RouteCache> = PerCpuArray::with_max_entries(DEFAULT_MAX_REALS, 0);
/// lblc's destination table: (service, destination address) → server and last use.
#[map(name = "RVS_LBLC")]
pub static LBLC: LruHashMap<LblKey, LblcEntry> = LruHashMap::pinned(LBL_MAX_ENTRIES, 0);
/// lblcr's destination table: (service, destination address) → server set.
#[map(name = "RVS_LBLCR")]
pub static LBLCR: LruHashMap<LblKey, LblcrEntry> = LruHashMap::pinned(LBL_MAX_ENTRIES, 0);
/// `lblc_expiration`, `lblcr_expiration` in ns (0: IPVS's default, 24 h).
#[map(name = "RVS_LBL_EXPIRE")]
pub static LBL_EXPIRE: Array<u64> = Array::pinned(2, 0);
/// Where a new lblcr entry is built before its insert (per CPU; too large for the stack).
#[map(name = "RVS_LBL_SCRATCH")]
pub static LBL_SCRATCH: PerCpuArray<LblcrEntry> = PerCpuArray::pinned(1, 0);
/// What `rvs_xdp_new` asks `rvs_xdp_lbl` (one slot per CPU) and its answer.
#[map(name = "RVS_LBL_REQUEST")]
pub static LBL_REQUEST: PerCpuArray<LblRequest> = PerCpuArray::pinned(1, 0);
/// The locality schedulers' program: slot `PROG_LOCALITY` holds `rvs_xdp_lbl`.
#[map(name = "RVS_LBL_PROGS")]
pub static LBL_PROGS: ProgramArray = ProgramArray::pinned(1, 0);
