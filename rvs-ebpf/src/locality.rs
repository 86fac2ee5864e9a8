//! IPVS's locality-based schedulers: lblc (ip_vs_lblc.c) keeps one server per (service,
//! destination address), lblcr (ip_vs_lblcr.c) a set of servers; both fall back to their wlc
//! walk when the destination's server is unusable or overloaded. The host model is
//! `rvs_sched::{Lblc, Lblcr}`, replayed against kernel recordings.
//!
//! They run in a third program, `rvs_xdp_lbl`, reached from `rvs_xdp_new` by tail call and
//! returning to it by tail call (see [`schedule`]): `rvs_xdp_new`'s 512-byte stack is full
//! (its frame is 480 bytes, and the verifier counts a `bpf_loop` callback's frame on top of
//! it), and this way their walks do not add to its verifier budget either.
//!
//! The tables are LRU hashes shared by every service of the scheduler, keyed by
//! [`LblKey`]; rvsd expires them as IPVS's periodic check does (`rvs_dataplane::locality`).
//! An entry names a real id and its generation: a server removed from the service (the
//! kernel's dest without IP_VS_DEST_F_AVAILABLE) has another generation and is not used.
//! Walks are `bpf_loop`s: the service's list at most [`MAX_WALK`] servers (the bound the
//! planner enforces for every walking scheduler), an lblcr set at most [`LBLCR_MAX_SET`].
//! Two CPUs scheduling one destination at once may both update its entry (IPVS takes
//! `sched_lock` for the set); the last write wins, as a lost `lastuse` refresh would.

use core::ffi::c_void;

use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_loop, programs::XdpContext};
use rvs_common::{
    LOAD_F_OVERLOAD, MAX_WALK, NO_REAL, PROG_NEW_FLOW, RealLoad, ServiceEntry, Verdict,
    sched::{
        KIND_LBLC, LBL_DEFAULT_EXPIRATION_NS, LBL_EXPIRE_LBLCR, LBL_REQ_ASKED, LBL_REQ_DONE,
        LBL_REQ_NONE, LBLCR_MAX_SET, LblKey, LblcEntry, PROG_LOCALITY,
    },
};

use crate::{
    maps::{
        DISPATCH, LBL_EXPIRE, LBL_PROGS, LBL_REQUEST, LBL_SCRATCH, LBLC, LBLCR, PROGS, REAL_LOAD,
        REALS,
    },
    schedule::wlc,
    stats::count_verdict,
};

/// Whether real `id` still is the server an entry made at generation `generation` named.
#[inline(always)]
fn current(id: u32, generation: u32) -> bool {
    REALS
        .get(id)
        .is_some_and(|r| r.generation == generation && r.addr != 0)
}

/// Generation of real `id` (a chosen server always has an entry).
#[inline(always)]
fn generation(id: u32) -> u32 {
    REALS.get(id).map_or(0, |r| r.generation)
}

/// (ActiveConn as the kernel's int, weight, overhead, OVERLOAD flag) of real `id`.
#[inline(always)]
fn load(id: u32) -> Option<(i64, i64, i64, bool)> {
    let l = REAL_LOAD.get(id)?;
    // SAFETY: an aligned 64-bit read of a map value is single-copy atomic.
    let conns = unsafe { core::ptr::read_volatile(&l.conns) };
    Some((
        RealLoad::active(conns) as i32 as i64,
        l.weight as i64,
        RealLoad::overhead(conns),
        l.flags & LOAD_F_OVERLOAD != 0,
    ))
}

/// The `bpf_loop` context of [`is_overloaded`]'s walk.
#[repr(C)]
struct Half {
    /// First slot of the service's list in the dispatch array.
    off: u32,
    /// 1 once a server under half its weight is found.
    found: u32,
}

/// One server of the list: stops at the first with `2 * active < weight`.
#[inline(never)]
extern "C" fn half_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Half`.
    let h = unsafe { &mut *(ctx as *mut Half) };
    let Some(&id) = DISPATCH.get(h.off.wrapping_add(i)) else {
        return 1;
    };
    let Some((active, weight, _, _)) = load(id) else {
        return 0;
    };
    if active * 2 < weight {
        h.found = 1;
        return 1;
    }
    0
}

/// The modules' `is_overloaded`: more active connections than its weight, while some server
/// of the service (any: quiesced and over-threshold ones count too) is under half its own.
#[inline(always)]
fn is_overloaded(svc: &ServiceEntry, id: u32) -> bool {
    let Some((active, weight, _, _)) = load(id) else {
        return true;
    };
    if active <= weight {
        return false;
    }
    let mut h = Half {
        off: svc.table_off,
        found: 0,
    };
    let n = if svc.table_len > MAX_WALK {
        MAX_WALK
    } else {
        svc.table_len
    };
    // SAFETY: the callback and its context live for the call (bound: MAX_WALK servers).
    unsafe {
        bpf_loop(
            n,
            half_step as *mut c_void,
            &mut h as *mut Half as *mut c_void,
            0,
        )
    };
    h.found != 0
}

/// The locality schedulers' hook in `rvs_xdp_new` (`schedule`): the first time for this
/// packet it fills this CPU's [`LblRequest`] and tail-calls `rvs_xdp_lbl` (which does not
/// return, and runs `rvs_xdp_new` again with the answer); the second time it takes the
/// answer. `now` is the packet's clock from `rvs_xdp` (the same on both runs). None when no
/// server is available, or when the tail call fails (the caller then drops the packet as
/// having no real server, as a failed scheduler would).
#[inline(always)]
pub fn schedule(ctx: &XdpContext, svc: &ServiceEntry, daddr: u32, now: u64) -> Option<u32> {
    let req = LBL_REQUEST.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; the frame runs to its end (every program) on this CPU.
    let req = unsafe { &mut *req };
    if req.state == LBL_REQ_DONE && req.now == now && req.service == svc.id && req.daddr == daddr {
        req.state = LBL_REQ_NONE;
        return (req.real != NO_REAL).then_some(req.real);
    }
    req.now = now;
    req.service = svc.id;
    req.table_off = svc.table_off;
    req.table_len = svc.table_len;
    req.kind = svc.kind as u32;
    req.daddr = daddr;
    req.real = NO_REAL;
    req.state = LBL_REQ_ASKED;
    // SAFETY: a tail call to a program of the same type; returns only on failure.
    unsafe { LBL_PROGS.tail_call(ctx, PROG_LOCALITY) };
    req.state = LBL_REQ_NONE;
    None
}

/// `rvs_xdp_lbl`: answers this CPU's [`LblRequest`] and tail-calls `rvs_xdp_new` again.
/// Returns only when there is nothing to answer or that tail call fails; the packet is then
/// passed and counted as a failed tail call.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    if let Some(req) = LBL_REQUEST.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, as in `schedule`.
        let req = unsafe { &mut *req };
        if req.state == LBL_REQ_ASKED {
            let svc = ServiceEntry {
                id: req.service,
                table_off: req.table_off,
                table_len: req.table_len,
                kind: req.kind as u8,
                ..ServiceEntry::default()
            };
            let chosen = if req.kind == KIND_LBLC as u32 {
                lblc(&svc, req.daddr, req.now)
            } else {
                lblcr(&svc, req.daddr, req.now)
            };
            req.real = chosen.unwrap_or(NO_REAL);
            req.state = LBL_REQ_DONE;
            // SAFETY: as above; returns only on failure.
            unsafe { PROGS.tail_call(ctx, PROG_NEW_FLOW) };
        }
    }
    count_verdict(Verdict::PassTailCallFailed);
    xdp_action::XDP_PASS
}

/// IPVS lblc: the destination's server while it is in the service, has a weight and is not
/// overloaded (the upper threshold is not looked at: ip_vs_lblc_schedule does not); otherwise
/// the wlc choice, which replaces the entry unless it is the same server.
#[inline(always)]
fn lblc(svc: &ServiceEntry, daddr: u32, now: u64) -> Option<u32> {
    let key = LblKey {
        service: svc.id,
        daddr,
    };
    let (mut had, mut had_gen) = (NO_REAL, 0);
    if let Some(en) = LBLC.get_ptr_mut(key) {
        // SAFETY: a valid map value; concurrent writers only race on plain integers.
        let en = unsafe { &mut *en };
        en.lastuse = now;
        (had, had_gen) = (en.real, en.real_gen);
        if current(had, had_gen)
            && load(had).is_some_and(|(_, w, _, _)| w > 0)
            && !is_overloaded(svc, had)
        {
            return Some(had);
        }
    }
    let d = wlc(svc)?;
    let gen_d = generation(d);
    // ip_vs_lblc_new: the same server keeps its entry; another one replaces it.
    if d != had || gen_d != had_gen {
        let en = LblcEntry {
            real: d,
            real_gen: gen_d,
            lastuse: now,
        };
        let _ = LBLC.insert(key, en, 0);
    }
    Some(d)
}

/// The `bpf_loop` context of the walk over an lblcr set: ip_vs_dest_set_min and
/// ip_vs_dest_set_max in one pass.
#[repr(C)]
struct SetScan {
    /// The entry (a map value).
    en: *mut rvs_common::sched::LblcrEntry,
    /// The least loaded usable member so far (NO_REAL: none yet), its overhead and weight.
    min: u32,
    /// Explicit padding.
    pad: u32,
    min_oh: i64,
    min_w: i64,
    /// The most loaded member with a weight so far (NO_REAL: none yet), its position,
    /// overhead and weight.
    max: u32,
    max_at: u32,
    max_oh: i64,
    max_w: i64,
}

/// One member of the set. A member whose server left the service (another generation) is
/// skipped by both: set_min's IP_VS_DEST_F_AVAILABLE test; for set_max see the README.
#[inline(never)]
extern "C" fn set_step(i: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `SetScan`.
    let s = unsafe { &mut *(ctx as *mut SetScan) };
    // SAFETY: the map value the caller looked up, valid during the program.
    let en = unsafe { &*s.en };
    let Some(m) = en.members.get(i as usize) else {
        return 1;
    };
    let (id, member_gen) = (m.real, m.real_gen);
    if !current(id, member_gen) {
        return 0;
    }
    let Some((_, weight, oh, overloaded)) = load(id) else {
        return 0;
    };
    if !overloaded
        && ((s.min == NO_REAL && weight > 0)
            || (s.min != NO_REAL && s.min_oh * weight > oh * s.min_w))
    {
        s.min = id;
        s.min_oh = oh;
        s.min_w = weight;
    }
    if weight > 0 && (s.max == NO_REAL || s.max_oh * weight < oh * s.max_w) {
        s.max = id;
        s.max_at = i;
        s.max_oh = oh;
        s.max_w = weight;
    }
    0
}

/// IPVS lblcr: the least loaded member of the destination's set unless it is overloaded,
/// else the wlc choice, which joins the set (newest first). A set of more than one member
/// unchanged for `lblcr_expiration` first loses its most loaded member. A set is at most
/// [`LBLCR_MAX_SET`] members: one joining a full set pushes out the oldest.
#[inline(always)]
fn lblcr(svc: &ServiceEntry, daddr: u32, now: u64) -> Option<u32> {
    let key = LblKey {
        service: svc.id,
        daddr,
    };
    let Some(en) = LBLCR.get_ptr_mut(key) else {
        let d = wlc(svc)?;
        let fresh = LBL_SCRATCH.get_ptr_mut(0)?;
        // SAFETY: this CPU's scratch slot, used only here.
        let fresh = unsafe { &mut *fresh };
        fresh.n = 1;
        fresh.lastmod = now;
        fresh.lastuse = now;
        fresh.members[0].real = d;
        fresh.members[0].real_gen = generation(d);
        let _ = LBLCR.insert(key, fresh, 0);
        return Some(d);
    };
    // SAFETY: a valid map value; concurrent writers only race on plain integers.
    let en = unsafe { &mut *en };
    en.lastuse = now;
    let n = if en.n > LBLCR_MAX_SET as u32 {
        LBLCR_MAX_SET as u32
    } else {
        en.n
    };
    let mut s = SetScan {
        en,
        min: NO_REAL,
        pad: 0,
        min_oh: 0,
        min_w: 0,
        max: NO_REAL,
        max_at: 0,
        max_oh: 0,
        max_w: 0,
    };
    // SAFETY: as in `is_overloaded` (bound: LBLCR_MAX_SET members).
    unsafe {
        bpf_loop(
            n,
            set_step as *mut c_void,
            &mut s as *mut SetScan as *mut c_void,
            0,
        )
    };
    let expiration = match LBL_EXPIRE.get(LBL_EXPIRE_LBLCR) {
        Some(&e) if e != 0 => e,
        _ => LBL_DEFAULT_EXPIRATION_NS,
    };
    if n > 1 && now > en.lastmod.wrapping_add(expiration) && s.max != NO_REAL {
        remove_member(en, s.max_at);
        en.lastmod = now;
    }
    if s.min != NO_REAL && !is_overloaded(svc, s.min) {
        return Some(s.min);
    }
    let d = wlc(svc)?;
    let gen_d = generation(d);
    if !has_member(en, d, gen_d) {
        add_member(en, d, gen_d);
        en.lastmod = now;
    }
    Some(d)
}

/// Whether the set holds server `id` of generation `generation`.
#[inline(always)]
fn has_member(en: &rvs_common::sched::LblcrEntry, id: u32, generation: u32) -> bool {
    let n = en.n as usize;
    let mut k = 0;
    while k < LBLCR_MAX_SET {
        let m = &en.members[k];
        if k < n && m.real == id && m.real_gen == generation {
            return true;
        }
        k += 1;
    }
    false
}

/// Puts a member at the head of the set (IPVS's list_add_rcu), the oldest falling off a full
/// set.
#[inline(always)]
fn add_member(en: &mut rvs_common::sched::LblcrEntry, id: u32, generation: u32) {
    let mut k = LBLCR_MAX_SET - 1;
    while k > 0 {
        en.members[k].real = en.members[k - 1].real;
        en.members[k].real_gen = en.members[k - 1].real_gen;
        k -= 1;
    }
    en.members[0].real = id;
    en.members[0].real_gen = generation;
    if en.n < LBLCR_MAX_SET as u32 {
        en.n += 1;
    }
}

/// Takes the member at position `at` out of the set, keeping the others' order.
#[inline(always)]
fn remove_member(en: &mut rvs_common::sched::LblcrEntry, at: u32) {
    let mut k = 0;
    while k + 1 < LBLCR_MAX_SET {
        if k as u32 >= at {
            en.members[k].real = en.members[k + 1].real;
            en.members[k].real_gen = en.members[k + 1].real_gen;
        }
        k += 1;
    }
    en.n = en.n.saturating_sub(1);
}
