//! IPVS's connection-count schedulers, each a walk over the server list in IPVS's order (newest
//! first) exactly as its kernel module walks it: lc, wlc, sed, nq (ip_vs_lc.c, ip_vs_wlc.c,
//! ip_vs_sed.c, ip_vs_nq.c), fo (ip_vs_fo.c), ovf (ip_vs_ovf.c) and twos (ip_vs_twos.c).
//!
//! Each takes the servers' [`Load`]s in list order and returns the index of the chosen one, or
//! None ("no destination available"). Loads compare by cross-multiplication in 64 bits, as the
//! kernel does (`(__s64)loh * w > (__s64)doh * lw`), and ties keep the server met first.

use crate::load::Load;

/// Whether a server may be chosen at all: not overloaded and a positive weight.
fn usable(l: &Load) -> bool {
    !l.overloaded && l.w() > 0
}

/// The weighted-least walk shared by wlc and sed: the first usable server, then every later
/// non-overloaded one whose `overhead / weight` is strictly smaller. (The second loop does not
/// test the weight: a weight-0 server never wins the strict comparison.)
fn weighted_least(loads: &[Load], overhead: impl Fn(&Load) -> i64) -> Option<usize> {
    let first = loads.iter().position(usable)?;
    let (mut least, mut loh) = (first, overhead(&loads[first]));
    for (i, d) in loads.iter().enumerate().skip(first + 1) {
        if d.overloaded {
            continue;
        }
        let doh = overhead(d);
        if loh * d.w() > doh * loads[least].w() {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// IPVS `lc`: the usable server with the smallest overhead `(active << 8) + inactive`.
pub fn lc(loads: &[Load]) -> Option<usize> {
    let mut least: Option<(usize, i64)> = None;
    for (i, d) in loads.iter().enumerate() {
        if !usable(d) {
            continue;
        }
        let doh = d.overhead();
        if least.is_none_or(|(_, loh)| doh < loh) {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// IPVS `wlc`: the smallest `overhead / weight`.
pub fn wlc(loads: &[Load]) -> Option<usize> {
    weighted_least(loads, Load::overhead)
}

/// IPVS `sed`: the smallest `(active + 1) / weight` (inactive connections do not count).
pub fn sed(loads: &[Load]) -> Option<usize> {
    weighted_least(loads, |d| i64::from(d.active as i32) + 1)
}

/// IPVS `nq`: the first usable server without an active connection; otherwise as sed.
pub fn nq(loads: &[Load]) -> Option<usize> {
    let mut least: Option<(usize, i64)> = None;
    for (i, d) in loads.iter().enumerate() {
        if !usable(d) {
            continue;
        }
        let doh = i64::from(d.active as i32) + 1;
        if d.active == 0 {
            return Some(i);
        }
        match least {
            Some((l, loh)) if loh * d.w() <= doh * loads[l].w() => {}
            _ => least = Some((i, doh)),
        }
    }
    least.map(|(i, _)| i)
}

/// IPVS `fo`: the non-overloaded server with the highest weight (the first of equals).
pub fn fo(loads: &[Load]) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (i, d) in loads.iter().enumerate() {
        if !d.overloaded && d.w() > best.map_or(0, |(_, w)| w) {
            best = Some((i, d.w()));
        }
    }
    best.map(|(i, _)| i)
}

/// IPVS `ovf`: the highest weight among servers with no more active connections than their
/// weight (the first of equals).
pub fn ovf(loads: &[Load]) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (i, d) in loads.iter().enumerate() {
        let w = d.w();
        if d.overloaded || i64::from(d.active as i32) > w || w == 0 {
            continue;
        }
        if best.is_none_or(|(_, hw)| w > hw) {
            best = Some((i, w));
        }
    }
    best.map(|(i, _)| i)
}

/// The bound of twos' two random draws: the sum of the usable servers' weights plus one (the
/// kernel draws each of its two numbers uniformly below it, `get_random_u32_below`). None when
/// no server is usable. (The kernel sums in an `int`; so does this, wrapping.)
pub fn twos_draw_bound(loads: &[Load]) -> Option<u32> {
    let mut total: i32 = 0;
    let mut any = false;
    for d in loads.iter().filter(|d| usable(d)) {
        total = total.wrapping_add(d.weight as i32);
        any = true;
    }
    any.then(|| total.wrapping_add(1) as u32)
}

/// IPVS `twos` with the kernel's two random numbers `r1`, `r2` (each uniform below
/// [`twos_draw_bound`]): each number picks the first usable server at which the running sum
/// of weights reaches it (so 0 picks the first one too, which makes the first server's chance
/// `(w + 1) / (W + 1)`); then the second pick wins if its `overhead / weight` is strictly
/// smaller. The comparison multiplies in `int`, as the kernel does.
pub fn twos(loads: &[Load], r1: u32, r2: u32) -> Option<usize> {
    twos_draw_bound(loads)?;
    let (mut r1, mut r2) = (r1 as i32, r2 as i32);
    let mut c1: Option<(usize, i32, i32)> = None;
    let mut c2: Option<(usize, i32, i32)> = None;
    for (i, d) in loads.iter().enumerate() {
        if !usable(d) {
            continue;
        }
        let w = d.weight as i32;
        r1 = r1.wrapping_sub(w);
        r2 = r2.wrapping_sub(w);
        let oh = d.overhead() as i32;
        if r1 <= 0 && c1.is_none() {
            c1 = Some((i, w, oh));
        }
        if r2 <= 0 && c2.is_none() {
            c2 = Some((i, w, oh));
        }
        if c1.is_some() && c2.is_some() {
            break;
        }
    }
    // The kernel's choice1 starts as the last usable server; r1 below the bound always finds one.
    let (i1, w1, oh1) = c1?;
    match c2 {
        Some((i2, w2, oh2)) if w2.wrapping_mul(oh1) > w1.wrapping_mul(oh2) => Some(i2),
        _ => Some(i1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(weight: u32, active: u32, inactive: u32) -> Load {
        Load {
            weight,
            active,
            inactive,
            overloaded: false,
        }
    }

    #[test]
    fn ties_go_to_the_first_in_list_order() {
        let loads = [l(1, 0, 0), l(1, 0, 0), l(1, 0, 0)];
        for f in [lc, wlc, sed, nq, fo, ovf] {
            assert_eq!(f(&loads), Some(0));
        }
    }

    #[test]
    fn quiesced_and_overloaded_are_skipped() {
        let mut o = l(5, 0, 0);
        o.overloaded = true;
        let loads = [l(0, 0, 0), o, l(1, 1, 9)];
        for f in [lc, wlc, sed, nq, fo, ovf] {
            assert_eq!(f(&loads), Some(2));
        }
        assert_eq!(twos(&loads, 0, 1), Some(2));
        let none = [l(0, 0, 0), o];
        for f in [lc, wlc, sed, nq, fo, ovf] {
            assert_eq!(f(&none), None);
        }
        assert_eq!(twos_draw_bound(&none), None);
    }

    #[test]
    fn wlc_weighs_active_256_times_inactive() {
        // 1 active on weight 2 (128 per weight) beats 200 inactive on weight 1.
        assert_eq!(wlc(&[l(1, 0, 200), l(2, 1, 0)]), Some(1));
        assert_eq!(wlc(&[l(1, 0, 100), l(2, 1, 0)]), Some(0));
    }

    #[test]
    fn sed_ignores_inactive_and_nq_prefers_idle() {
        assert_eq!(sed(&[l(1, 1, 0), l(3, 2, 50)]), Some(1));
        // nq: an idle server wins even with a small weight.
        assert_eq!(nq(&[l(10, 1, 0), l(1, 0, 0)]), Some(1));
        assert_eq!(sed(&[l(10, 1, 0), l(1, 0, 0)]), Some(0));
    }

    #[test]
    fn ovf_overflows_past_weight() {
        assert_eq!(ovf(&[l(1, 0, 0), l(3, 3, 0)]), Some(1));
        assert_eq!(ovf(&[l(1, 0, 0), l(3, 4, 0)]), Some(0));
    }

    #[test]
    fn twos_first_server_takes_draw_zero() {
        let loads = [l(1, 0, 0), l(2, 0, 0)];
        assert_eq!(twos_draw_bound(&loads), Some(4));
        assert_eq!(twos(&loads, 0, 0), Some(0));
        assert_eq!(twos(&loads, 1, 1), Some(0));
        assert_eq!(twos(&loads, 2, 2), Some(1));
        // Two picks: the lighter per weight wins, ties keep the first draw.
        let loads = [l(1, 1, 0), l(2, 1, 0)];
        assert_eq!(twos(&loads, 0, 3), Some(1));
        assert_eq!(twos(&loads, 3, 0), Some(1));
    }
}
