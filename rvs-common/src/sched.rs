//! Scheduler kinds and map types of the schedulers added after [`crate::DispatchKind`]'s
//! list (fo, ovf, twos, lblc, lblcr): `ServiceEntry::kind` values continuing its numbering,
//! and the locality tables of lblc/lblcr. Kept in their own module so the scheduler work does
//! not edit the fast path's shared definitions.

/// IPVS fo (ip_vs_fo.c): walk the list, the non-overloaded server of highest weight.
pub const KIND_FO: u8 = 9;
/// IPVS ovf (ip_vs_ovf.c): highest weight among servers with `active <= weight`.
pub const KIND_OVF: u8 = 10;
/// IPVS twos (ip_vs_twos.c, Linux >= 6.2): two weighted random draws, lighter per weight wins.
pub const KIND_TWOS: u8 = 11;
/// IPVS lblc (ip_vs_lblc.c): the destination's server from [`LblKey`]'s table, else wlc.
pub const KIND_LBLC: u8 = 12;
/// IPVS lblcr (ip_vs_lblcr.c): the least loaded member of the destination's server set.
pub const KIND_LBLCR: u8 = 13;

/// `ServiceEntry::sched_flags` bit 0: sh-fallback / mh-fallback (ipvsadm flag-1).
pub const SCHED_FLAG_1: u8 = 1 << 0;
/// `ServiceEntry::sched_flags` bit 1: sh-port / mh-port (ipvsadm flag-2).
pub const SCHED_FLAG_2: u8 = 1 << 1;

/// Most members of an lblcr server set (IPVS's is unbounded; see the README's differences):
/// a set that is full when the fallback adds a server loses its oldest member.
pub const LBLCR_MAX_SET: usize = 8;

/// Entries of each of the lblc and lblcr tables (LRU hashes shared by every service of the
/// scheduler). IPVS keeps up to 16 384 entries per service (1024 buckets x 16) before its
/// periodic check trims it; 65 536 in all holds four such services at their limit, and the LRU
/// evicts the least recently used destination beyond that (a later packet to it is scheduled
/// afresh by the wlc fallback, as after IPVS's own trimming).
pub const LBL_MAX_ENTRIES: u32 = 65_536;

/// Names of the locality schedulers' maps (pinned beside the others).
pub mod maps {
    /// lblc: [`super::LblKey`] → [`super::LblcEntry`] (LRU).
    pub const LBLC: &str = "RVS_LBLC";
    /// lblcr: [`super::LblKey`] → [`super::LblcrEntry`] (LRU).
    pub const LBLCR: &str = "RVS_LBLCR";
    /// Two u64: `lblc_expiration` and `lblcr_expiration` in ns ([`super::LBL_EXPIRE_LBLC`],
    /// [`super::LBL_EXPIRE_LBLCR`]); 0 means IPVS's default, 24 h.
    pub const LBL_EXPIRE: &str = "RVS_LBL_EXPIRE";
    /// Per-CPU [`super::LblcrEntry`] the program builds a new lblcr entry in (too large for
    /// its stack).
    pub const LBL_SCRATCH: &str = "RVS_LBL_SCRATCH";
    /// Per-CPU [`super::LblRequest`]: what `rvs_xdp_new` asks `rvs_xdp_lbl` and its answer.
    pub const LBL_REQUEST: &str = "RVS_LBL_REQUEST";
    /// Program array: slot [`super::PROG_LOCALITY`] holds `rvs_xdp_lbl`.
    pub const LBL_PROGS: &str = "RVS_LBL_PROGS";
}

/// The locality schedulers' XDP program, tail-called by `rvs_xdp_new`.
pub const LBL_PROGRAM: &str = "rvs_xdp_lbl";

/// Slot of `rvs_xdp_lbl` in [`maps::LBL_PROGS`].
pub const PROG_LOCALITY: u32 = 0;

/// [`LblRequest::state`]: nothing asked.
pub const LBL_REQ_NONE: u32 = 0;
/// [`LblRequest::state`]: `rvs_xdp_new` asked, `rvs_xdp_lbl` has not answered.
pub const LBL_REQ_ASKED: u32 = 1;
/// [`LblRequest::state`]: answered in [`LblRequest::real`].
pub const LBL_REQ_DONE: u32 = 2;

/// The locality schedulers run in a program of their own, `rvs_xdp_lbl` (the new-flow
/// program's stack and verifier budget have no room for them): `rvs_xdp_new` fills this
/// per-CPU slot and tail-calls it; it schedules, answers here and tail-calls `rvs_xdp_new`
/// again, which finds the answer for the same packet (same `now`, service and destination)
/// and goes on with it. One slot per CPU: a frame runs to its end on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LblRequest {
    /// The packet's clock (`NewFlowScratch::now`): tells this packet's answer from a stale one.
    pub now: u64,
    /// Service id.
    pub service: u32,
    /// First slot of the service's server list in the dispatch array.
    pub table_off: u32,
    /// Servers in the list.
    pub table_len: u32,
    /// The scheduler ([`KIND_LBLC`] or [`KIND_LBLCR`]).
    pub kind: u32,
    /// Destination address of the packet, network byte order.
    pub daddr: u32,
    /// `LBL_REQ_*`.
    pub state: u32,
    /// The answer: the real id chosen, or `NO_REAL`.
    pub real: u32,
    /// Explicit padding.
    pub pad: u32,
}

/// Index of `lblc_expiration` in [`maps::LBL_EXPIRE`].
pub const LBL_EXPIRE_LBLC: u32 = 0;
/// Index of `lblcr_expiration` in [`maps::LBL_EXPIRE`].
pub const LBL_EXPIRE_LBLCR: u32 = 1;
/// IPVS's default `lblc_expiration` / `lblcr_expiration`: 24 hours, in ns.
pub const LBL_DEFAULT_EXPIRATION_NS: u64 = 24 * 60 * 60 * 1_000_000_000;

/// Key of the lblc/lblcr tables: one entry per (service, destination address), as IPVS keeps
/// one table per service keyed by the destination.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LblKey {
    /// Service id (`ServiceEntry::id`).
    pub service: u32,
    /// Destination address of the packet, network byte order.
    pub daddr: u32,
}

/// lblc's entry: the destination's server and when it was last used.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LblcEntry {
    /// Real id.
    pub real: u32,
    /// Generation of the real id when the entry was made.
    pub real_gen: u32,
    /// Last use, `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
    pub lastuse: u64,
}

/// One member of an lblcr set.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LblcrMember {
    /// Real id.
    pub real: u32,
    /// Its generation when added.
    pub real_gen: u32,
}

/// lblcr's entry: the destination's server set, newest first (IPVS's list order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LblcrEntry {
    /// Members in use (`members[..n]`).
    pub n: u32,
    /// Explicit padding.
    pub pad: u32,
    /// Last change of the set (IPVS's `lastmod`), ns.
    pub lastmod: u64,
    /// Last use (IPVS's `lastuse`), ns.
    pub lastuse: u64,
    /// The members, newest first.
    pub members: [LblcrMember; LBLCR_MAX_SET],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), no padding holes (explicit fields), every bit pattern valid.
    unsafe impl aya::Pod for super::LblKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LblcEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LblcrEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LblRequest {}
}
