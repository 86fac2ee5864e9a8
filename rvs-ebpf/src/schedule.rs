//! Scheduling a new connection: the service's dispatch table (ring cursor for rr/wrr,
//! IPVS's mh hash for Maglev), the connection-count walks (lc, wlc, sed, nq, fo, ovf, twos)
//! over the service's server list, the hook of the locality schedulers (lblc, lblcr:
//! `crate::locality`), and persistence templates.

use core::{
    ffi::c_void,
    intrinsics::{AtomicOrdering, atomic_xadd},
};

use aya_ebpf::{
    helpers::generated::{bpf_get_prandom_u32, bpf_loop},
    programs::XdpContext,
};
use rvs_common::{
    DispatchKind, HASH_BUCKETS, LOAD_F_OVERLOAD, MAX_WALK, NO_REAL, NS_PER_SEC, PersistEntry,
    PersistKey, RealLoad, ServiceEntry, hash::ipvs_mh_source_hash, hash_32_8,
};

use rvs_common::{
    hash::{IPVS_MH_KEY1, ipvs_mh_hashkey},
    sched::{KIND_FO, KIND_LBLC, KIND_LBLCR, KIND_OVF, KIND_TWOS, SCHED_FLAG_1},
};

use crate::maps::{CURSORS, DISPATCH, PERSIST, REAL_LOAD, REALS};

/// The most ring slots looked at past an overloaded one (one turn of the largest ring the
/// planner writes; `bpf_loop` verifies the step once whatever the count).
const MAX_RING_SKIP: u32 = 1 << 20;

/// State of one walk over a service's server list (the `bpf_loop` context).
#[repr(C)]
struct Walk {
    /// First slot of the list in the dispatch array.
    off: u32,
    /// The walk's [`DispatchKind`].
    kind: u8,
    /// Whether `least` holds a server yet.
    found: u8,
    /// Explicit padding.
    pad: [u8; 2],
    /// The server chosen so far.
    least: u32,
    /// Its overhead (the kernel's `loh`).
    loh: i64,
    /// Its weight.
    lw: i64,
    /// Servers in the walk (at most [`MAX_WALK`]).
    n: u32,
    /// Explicit padding.
    pad2: u32,
}

/// Servers one `bpf_loop` step looks at. Each step is a call into the callback and its
/// return, which on this kernel's mitigations (retpolines, SRSO safe RET) cost about as much
/// as a server's comparisons: two servers a step halve those calls (at 32 servers a walk went
/// from 1.9-2.0x to 1.5x rr's new-flow cost, `./x bench`). The servers are still visited one
/// by one in list order, so the choice is the same. Four a step would save more, but the
/// verifier checks the callback once per call site and state: `rvs_xdp_new` went over its
/// 1 000 000 instructions (two: 799 k, one: 706 k).
const WALK_UNROLL: u32 = 2;

/// `bpf_loop` steps for a walk over `n` servers, [`WALK_UNROLL`] at a time.
#[inline(always)]
fn walk_steps(n: u32) -> u32 {
    n.div_ceil(WALK_UNROLL)
}

/// Runs `one` on the servers of step `i` in list order; 1 (stop the loop) once `one` says
/// stop or the list ends.
#[inline(always)]
fn unrolled(w: &mut Walk, i: u32, one: impl Fn(&mut Walk, u32) -> bool) -> i64 {
    let base = i.wrapping_mul(WALK_UNROLL);
    for j in 0..WALK_UNROLL {
        let k = base.wrapping_add(j);
        if k >= w.n || one(w, k) {
            return 1;
        }
    }
    0
}

/// One step of the walk ([`WALK_UNROLL`] servers, see [`walk_one`]). Returns 1 to stop the
/// loop.
#[inline(never)]
extern "C" fn walk_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Walk`.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    unrolled(w, i, walk_one)
}

/// Server `i` of the walk, with IPVS's comparisons (ip_vs_lc.c, ip_vs_wlc.c, ip_vs_sed.c,
/// ip_vs_nq.c; the host model is `rvs_sched::least`): strict comparisons, so ties keep the
/// server met first in the newest-first list. True to stop the walk.
#[inline(always)]
fn walk_one(w: &mut Walk, i: u32) -> bool {
    let Some(&id) = DISPATCH.get(w.off.wrapping_add(i)) else {
        return true;
    };
    let Some(load) = REAL_LOAD.get(id) else {
        return false;
    };
    // SAFETY: an aligned 64-bit read of a map value is single-copy atomic.
    let conns = unsafe { core::ptr::read_volatile(&load.conns) };
    let weight = load.weight as i64;
    let overloaded = load.flags & LOAD_F_OVERLOAD != 0;
    let usable = !overloaded && weight > 0;
    let active = RealLoad::active(conns) as i32 as i64;
    let kind = w.kind;
    let doh = if kind == DispatchKind::Lc as u8 || kind == DispatchKind::Wlc as u8 {
        RealLoad::overhead(conns)
    } else {
        active + 1
    };
    if kind == DispatchKind::Lc as u8 {
        if usable && (w.found == 0 || doh < w.loh) {
            w.take(id, doh, weight);
        }
    } else if kind == DispatchKind::Nq as u8 {
        if !usable {
            return false;
        }
        if active == 0 {
            w.take(id, doh, weight);
            return true;
        }
        if w.found == 0 || w.loh * weight > doh * w.lw {
            w.take(id, doh, weight);
        }
    } else if w.found == 0 {
        // wlc, sed: the first usable server, then any later non-overloaded one with a
        // strictly smaller overhead / weight (a weight-0 server never wins that).
        if usable {
            w.take(id, doh, weight);
        }
    } else if !overloaded && w.loh * weight > doh * w.lw {
        w.take(id, doh, weight);
    }
    false
}

impl Walk {
    #[inline(always)]
    fn take(&mut self, id: u32, oh: i64, weight: i64) {
        self.found = 1;
        self.least = id;
        self.loh = oh;
        self.lw = weight;
    }
}

/// One server of fo's or ovf's walk (ip_vs_fo.c, ip_vs_ovf.c; host model
/// `rvs_sched::least::{fo, ovf}`): the highest weight wins, the first of equals. fo skips
/// overloaded servers (its `hw` starts at 0, so weight 0 never wins); ovf also skips weight 0
/// and servers with more active connections than their weight. A callback of its own so
/// that the lc/wlc/sed/nq step the verifier checks stays as small as it was.
#[inline(never)]
extern "C" fn heaviest_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Walk`.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    unrolled(w, i, heaviest_one)
}

/// Server `i` of fo's or ovf's walk; true to stop.
#[inline(always)]
fn heaviest_one(w: &mut Walk, i: u32) -> bool {
    let Some(&id) = DISPATCH.get(w.off.wrapping_add(i)) else {
        return true;
    };
    let Some(load) = REAL_LOAD.get(id) else {
        return false;
    };
    if load.flags & LOAD_F_OVERLOAD != 0 {
        return false;
    }
    let weight = load.weight as i64;
    if w.kind == KIND_OVF {
        // SAFETY: as in `walk_one`.
        let conns = unsafe { core::ptr::read_volatile(&load.conns) };
        if weight <= 0 || RealLoad::active(conns) as i32 as i64 > weight {
            return false;
        }
    }
    if weight > w.lw {
        w.take(id, 0, weight);
    }
    false
}

/// State of twos' walk (the `bpf_loop` context).
#[repr(C)]
struct Twos {
    /// First slot of the list in the dispatch array.
    off: u32,
    /// Servers in the list (the walk takes steps `0..n`, then `n..2n`).
    n: u32,
    /// The last usable server (the kernel's choice1 after its first loop).
    last: u32,
    /// The total weight of the usable servers.
    total: i32,
    /// The first draw, decremented by each usable server's weight.
    r1: i32,
    /// The second draw, likewise.
    r2: i32,
    /// The first choice (NO_REAL while not found).
    c1: u32,
    /// The second choice (NO_REAL while not found).
    c2: u32,
}

/// The kernel's `get_random_u32_below(ceil)` up to its rejection step: `(r * ceil) >> 32` of
/// one prandom draw (a bias below `ceil / 2^32`, which no bounded sample can see).
#[inline(always)]
fn random_below(ceil: u32) -> i32 {
    // SAFETY: a helper without arguments.
    let r = unsafe { bpf_get_prandom_u32() };
    ((r as u64 * ceil as u64) >> 32) as i32
}

/// One step of twos (ip_vs_twos.c, Linux >= 6.2; host model `rvs_sched::twos`): steps `0..n`
/// sum the usable weights (not overloaded, weight > 0), step `n` draws twice in `[0, W]`,
/// steps `n..2n` give each draw the first usable server at which the running sum reaches it.
/// Returns 1 to stop the loop.
#[inline(never)]
extern "C" fn twos_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Twos`.
    let t = unsafe { &mut *(ctx as *mut Twos) };
    let second = i >= t.n;
    if i == t.n {
        if t.last == NO_REAL {
            return 1;
        }
        let ceil = t.total.wrapping_add(1) as u32;
        t.r1 = random_below(ceil);
        t.r2 = random_below(ceil);
    }
    let j = if second { i - t.n } else { i };
    let Some(&id) = DISPATCH.get(t.off.wrapping_add(j)) else {
        return 1;
    };
    let Some(load) = REAL_LOAD.get(id) else {
        return 0;
    };
    let weight = load.weight;
    if load.flags & LOAD_F_OVERLOAD != 0 || weight <= 0 {
        return 0;
    }
    if !second {
        t.total = t.total.wrapping_add(weight);
        t.last = id;
        return 0;
    }
    t.r1 = t.r1.wrapping_sub(weight);
    t.r2 = t.r2.wrapping_sub(weight);
    if t.r1 <= 0 && t.c1 == NO_REAL {
        t.c1 = id;
    }
    if t.r2 <= 0 && t.c2 == NO_REAL {
        t.c2 = id;
    }
    (t.c1 != NO_REAL && t.c2 != NO_REAL) as i64
}

/// Weight and overhead (`(active << 8) + inactive`) of real `id`; (-1, 0) for none, the
/// kernel's values for a choice its draw did not find.
#[inline(always)]
fn weight_overhead(id: u32) -> (i32, i32) {
    match REAL_LOAD.get(id) {
        Some(l) => {
            // SAFETY: an aligned 64-bit read of a map value is single-copy atomic.
            let conns = unsafe { core::ptr::read_volatile(&l.conns) };
            (l.weight, RealLoad::overhead(conns) as i32)
        }
        None => (-1, 0),
    }
}

/// IPVS twos: two turns of one bounded `bpf_loop` over the list (2 x MAX_WALK steps), then
/// the second choice wins when its overhead per weight is strictly lower
/// (`w2 * oh1 > w1 * oh2`, the kernel's int arithmetic); the choices' weight and overhead
/// are read after the walk, not during it (the same values unless a connection of that
/// server changes state in between, as it can in the kernel's walk too).
#[inline(always)]
fn twos(svc: &ServiceEntry) -> Option<u32> {
    let n = if svc.table_len > MAX_WALK {
        MAX_WALK
    } else {
        svc.table_len
    };
    let mut t = Twos {
        off: svc.table_off,
        n,
        last: NO_REAL,
        total: 0,
        r1: 0,
        r2: 0,
        c1: NO_REAL,
        c2: NO_REAL,
    };
    // SAFETY: as in `walk`.
    unsafe {
        bpf_loop(
            2 * n,
            twos_step as *mut c_void,
            &mut t as *mut Twos as *mut c_void,
            0,
        )
    };
    if t.last == NO_REAL {
        return None;
    }
    let c1 = if t.c1 == NO_REAL { t.last } else { t.c1 };
    if t.c2 == NO_REAL {
        return Some(c1);
    }
    let (w1, oh1) = if t.c1 == NO_REAL {
        (-1, 0)
    } else {
        weight_overhead(t.c1)
    };
    let (w2, oh2) = weight_overhead(t.c2);
    Some(if w2.wrapping_mul(oh1) > w1.wrapping_mul(oh2) {
        t.c2
    } else {
        c1
    })
}

/// The server a connection-count scheduler picks from the service's list, walked once.
#[inline(always)]
fn walk(svc: &ServiceEntry) -> Option<u32> {
    walk_as(svc, svc.kind)
}

/// wlc's choice from the service's list: the fallback of lblc and lblcr, whose
/// `__ip_vs_lblc(r)_schedule` is wlc's walk with IPVS's overhead.
#[inline(always)]
pub fn wlc(svc: &ServiceEntry) -> Option<u32> {
    walk_as(svc, DispatchKind::Wlc as u8)
}

/// The walk of scheduler `kind` over the service's list.
#[inline(always)]
fn walk_as(svc: &ServiceEntry, kind: u8) -> Option<u32> {
    let mut w = Walk {
        off: svc.table_off,
        kind,
        found: 0,
        pad: [0; 2],
        least: NO_REAL,
        loh: 0,
        lw: 0,
        n: if svc.table_len > MAX_WALK {
            MAX_WALK
        } else {
            svc.table_len
        },
        pad2: 0,
    };
    let n = walk_steps(w.n);
    // SAFETY: the callback and its context live for the call; bpf_loop verifies the
    // callback once, whatever the count (the bound is MAX_WALK, see the capability table).
    let ctx = &mut w as *mut Walk as *mut c_void;
    unsafe {
        if kind == KIND_FO || kind == KIND_OVF {
            bpf_loop(n, heaviest_step as *mut c_void, ctx, 0)
        } else {
            bpf_loop(n, walk_step as *mut c_void, ctx, 0)
        }
    };
    (w.found != 0).then_some(w.least)
}

/// Picks a real server id for a new flow of `svc`, or None when none is available. `now` is
/// the packet's clock; lblc and lblcr go through their own program (see `crate::locality`).
#[inline(always)]
pub fn schedule(
    ctx: &XdpContext,
    svc: &ServiceEntry,
    saddr: u32,
    sport: u16,
    daddr: u32,
    now: u64,
) -> Option<u32> {
    if svc.table_len == 0 {
        return None;
    }
    if svc.kind == DispatchKind::Sh as u8 {
        return source_hash(svc, saddr, sport);
    }
    if svc.kind == DispatchKind::Dh as u8 {
        return dest_hash(svc, daddr);
    }
    if svc.kind == KIND_TWOS {
        return twos(svc);
    }
    if svc.kind == KIND_LBLC || svc.kind == KIND_LBLCR {
        return crate::locality::schedule(ctx, svc, daddr, now);
    }
    if svc.kind >= DispatchKind::Lc as u8 {
        return walk(svc);
    }
    let pos = if svc.kind == DispatchKind::Ring as u8 {
        let cursor = CURSORS.get_ptr_mut(svc.id)?;
        // SAFETY: the pointer is a valid u64 slot of the cursor array, shared by all CPUs,
        // hence the atomic add (IPVS's rr/wrr advance one shared position too). SeqCst, not
        // Relaxed: LLVM's BPF backend lowers a relaxed add to the old XADD, which returns
        // nothing, and silently uses the operand as the "previous value".
        let n = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(cursor, 1) };
        (n % svc.table_len as u64) as u32
    } else {
        let with_port = svc.kind == DispatchKind::MaglevSourcePort as u8;
        ipvs_mh_source_hash(saddr, sport, with_port) % svc.table_len
    };
    let real = *DISPATCH.get(svc.table_off.wrapping_add(pos))?;
    if real == NO_REAL {
        return None;
    }
    if svc.kind != DispatchKind::Ring as u8 && svc.sched_flags & SCHED_FLAG_1 != 0 {
        // mh-fallback: the planner keeps a quiesced server's slots (IPVS's last_weight), so
        // weight and OVERLOAD are checked here, and an unusable slot rehashes.
        if !unavailable(real) {
            return Some(real);
        }
        return mh_rehash(svc, saddr, sport);
    }
    if !overloaded(real) {
        return Some(real);
    }
    // Over its upper threshold (IPVS's IP_VS_DEST_F_OVERLOAD): rr and wrr go on to the next
    // server of their sequence that is not, as the kernel's loops do; the ring is that
    // sequence, so the next usable slot is the kernel's choice. mh without mh-fallback
    // finds no server (ip_vs_mh_get).
    if svc.kind != DispatchKind::Ring as u8 {
        return None;
    }
    ring_skip(svc, pos)
}

/// sh's and dh's `is_unavailable`: no weight, or over the upper threshold.
#[inline(always)]
fn unavailable(id: u32) -> bool {
    match REAL_LOAD.get(id) {
        Some(l) => l.weight <= 0 || l.flags & LOAD_F_OVERLOAD != 0,
        None => true,
    }
}

/// The server in bucket `b` of the service's 256-bucket table.
#[inline(always)]
fn bucket(off: u32, b: u32) -> u32 {
    match DISPATCH.get(off.wrapping_add(b & (HASH_BUCKETS - 1))) {
        Some(&r) => r,
        None => NO_REAL,
    }
}

/// State of sh-fallback's rehash (the `bpf_loop` context).
#[repr(C)]
struct Rehash {
    /// First slot of the table.
    off: u32,
    /// `hash_32(port + addr, 8)`.
    ihash: u32,
    /// The server found, or NO_REAL.
    real: u32,
}

/// ip_vs_sh_get_fallback's loop: offset `i`, bucket `(i + ihash) % 256` rehashed as
/// `(roffset + ihash) & 255`; the first usable server wins.
#[inline(never)]
extern "C" fn rehash_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Rehash`.
    let r = unsafe { &mut *(ctx as *mut Rehash) };
    let roffset = i.wrapping_add(r.ihash) % HASH_BUCKETS;
    let real = bucket(r.off, roffset.wrapping_add(r.ihash));
    if real != NO_REAL && !unavailable(real) {
        r.real = real;
        return 1;
    }
    0
}

/// IPVS sh (ip_vs_sh.c): source address (host order) plus, with sh-port, the source port.
#[inline(always)]
fn source_hash(svc: &ServiceEntry, saddr: u32, sport: u16) -> Option<u32> {
    let port = if svc.sched_flags & SH_PORT != 0 {
        u16::from_be(sport) as u32
    } else {
        0
    };
    let ihash = hash_32_8(port.wrapping_add(u32::from_be(saddr)));
    let first = bucket(svc.table_off, ihash);
    if first == NO_REAL {
        return None;
    }
    if !unavailable(first) {
        return Some(first);
    }
    if svc.sched_flags & SH_FALLBACK == 0 {
        return None;
    }
    let mut r = Rehash {
        off: svc.table_off,
        ihash,
        real: NO_REAL,
    };
    // SAFETY: as in `walk`; the bound is the table's 256 buckets, as the kernel's loop.
    unsafe {
        bpf_loop(
            HASH_BUCKETS,
            rehash_step as *mut c_void,
            &mut r as *mut Rehash as *mut c_void,
            0,
        )
    };
    (r.real != NO_REAL).then_some(r.real)
}

/// IPVS dh (ip_vs_dh.c): the destination address's bucket, if its server is usable.
#[inline(always)]
fn dest_hash(svc: &ServiceEntry, daddr: u32) -> Option<u32> {
    let real = bucket(svc.table_off, hash_32_8(u32::from_be(daddr)));
    (real != NO_REAL && !unavailable(real)).then_some(real)
}

/// State of mh-fallback's rehash (the `bpf_loop` context).
#[repr(C)]
struct MhRehash {
    /// First slot of the table.
    off: u32,
    /// Table size (IPVS's IP_VS_MH_TAB_SIZE, or the configured prime).
    len: u32,
    /// Source address, host order.
    addr: u32,
    /// The first slot, `hash(addr + port) % len`.
    ihash: u32,
    /// Source port (host order) with mh-port, else 0.
    port: u16,
    /// Explicit padding.
    pad: u16,
    /// The server found, or NO_REAL.
    real: u32,
}

/// ip_vs_mh_get_fallback's loop: offset `i`, `roffset = (i + ihash) % size`, slot
/// `hsiphash(addr + roffset + port) % size`; an empty slot ends the search (the kernel's
/// `break`), the first usable server wins. Returns 1 to stop the loop.
#[inline(never)]
extern "C" fn mh_rehash_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `MhRehash`.
    let r = unsafe { &mut *(ctx as *mut MhRehash) };
    if r.len == 0 {
        return 1;
    }
    let roffset = i.wrapping_add(r.ihash) % r.len;
    let slot = ipvs_mh_hashkey(r.addr.wrapping_add(roffset), r.port, &IPVS_MH_KEY1) % r.len;
    let Some(&real) = DISPATCH.get(r.off.wrapping_add(slot)) else {
        return 1;
    };
    if real == NO_REAL {
        return 1;
    }
    if !unavailable(real) {
        r.real = real;
        return 1;
    }
    0
}

/// mh-fallback past an unusable first slot: at most one rehash per table slot (the kernel's
/// bound, IP_VS_MH_TAB_SIZE; here the service's table length, capped at [`MAX_RING_SKIP`]).
#[inline(always)]
fn mh_rehash(svc: &ServiceEntry, saddr: u32, sport: u16) -> Option<u32> {
    let with_port = svc.kind == DispatchKind::MaglevSourcePort as u8;
    let addr = u32::from_be(saddr);
    let port = if with_port { u16::from_be(sport) } else { 0 };
    let len = svc.table_len;
    let mut r = MhRehash {
        off: svc.table_off,
        len,
        addr,
        ihash: ipvs_mh_hashkey(addr, port, &IPVS_MH_KEY1) % len,
        port,
        pad: 0,
        real: NO_REAL,
    };
    let n = if len > MAX_RING_SKIP {
        MAX_RING_SKIP
    } else {
        len
    };
    // SAFETY: as in `walk`.
    unsafe {
        bpf_loop(
            n,
            mh_rehash_step as *mut c_void,
            &mut r as *mut MhRehash as *mut c_void,
            0,
        )
    };
    (r.real != NO_REAL).then_some(r.real)
}

/// `ServiceEntry::sched_flags` bits (ipvsadm `-b` flag-1, flag-2): sh-fallback, sh-port.
const SH_FALLBACK: u8 = 1 << 0;
const SH_PORT: u8 = 1 << 1;

/// Whether real `id` is flagged over its upper threshold.
#[inline(always)]
fn overloaded(id: u32) -> bool {
    REAL_LOAD
        .get(id)
        .is_some_and(|l| l.flags & LOAD_F_OVERLOAD != 0)
}

/// State of the search for the next usable ring slot (the `bpf_loop` context).
#[repr(C)]
struct Skip {
    /// First slot of the ring.
    off: u32,
    /// Ring length.
    len: u32,
    /// The overloaded slot the cursor gave.
    pos: u32,
    /// Slots skipped so far.
    skipped: u32,
    /// The server found, or NO_REAL.
    real: u32,
}

/// One ring slot after the overloaded one; 1 stops the loop.
#[inline(never)]
extern "C" fn skip_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Skip`.
    let s = unsafe { &mut *(ctx as *mut Skip) };
    if s.len == 0 {
        return 1;
    }
    let pos = (s.pos.wrapping_add(i).wrapping_add(1)) % s.len;
    let Some(&real) = DISPATCH.get(s.off.wrapping_add(pos)) else {
        return 1;
    };
    s.skipped = i + 1;
    if real != NO_REAL && !overloaded(real) {
        s.real = real;
        return 1;
    }
    0
}

/// The next ring slot whose server is not overloaded (at most one turn of the ring), with
/// the shared cursor moved past it as the kernel's rr/wrr position moves.
#[inline(always)]
fn ring_skip(svc: &ServiceEntry, pos: u32) -> Option<u32> {
    let mut s = Skip {
        off: svc.table_off,
        len: svc.table_len,
        pos,
        skipped: 0,
        real: NO_REAL,
    };
    let n = if svc.table_len > MAX_RING_SKIP {
        MAX_RING_SKIP
    } else {
        svc.table_len
    };
    // SAFETY: as in `walk`.
    unsafe {
        bpf_loop(
            n,
            skip_step as *mut c_void,
            &mut s as *mut Skip as *mut c_void,
            0,
        )
    };
    if s.real == NO_REAL {
        return None;
    }
    if let Some(cursor) = CURSORS.get_ptr_mut(svc.id) {
        // SAFETY: as in `schedule`.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(cursor, s.skipped as u64) };
    }
    Some(s.real)
}

/// The real server a live persistence template sends this client to, if any.
#[inline(always)]
pub fn persisted_real(key: &PersistKey, timeout_secs: u32, now: u64) -> Option<u32> {
    // SAFETY: read while the program runs (RCU-protected).
    let t = unsafe { PERSIST.get(key) }?;
    if now.saturating_sub(t.last_seen) > timeout_secs as u64 * NS_PER_SEC {
        return None;
    }
    let real = REALS.get(t.real)?;
    (real.generation == t.real_gen && real.addr != 0).then_some(t.real)
}

/// (Re)makes the client's persistence template.
#[inline(always)]
pub fn remember(key: &PersistKey, real: u32, real_gen: u32, now: u64) {
    let template = PersistEntry {
        last_seen: now,
        real,
        real_gen,
    };
    let _ = PERSIST.insert(key, template, 0);
}
