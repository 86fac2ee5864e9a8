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

/// Most members of an lblcr server set (IPVS's is unbounded; see the README's differences).
pub const LBLCR_MAX_SET: usize = 8;

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
}
