//! IPVS's locality-based schedulers: `lblc` (ip_vs_lblc.c) keeps one server per destination
//! address, `lblcr` (ip_vs_lblcr.c) a set of servers per destination address. Both are meant
//! for caches: a destination sticks to its server(s) until they are overloaded.
//!
//! State is keyed by server identity (address and port), not list position, because the
//! kernel's entries point at the server objects and survive list changes. Time is a plain
//! millisecond clock the caller passes in (sans I/O).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::least::wlc;
use crate::load::Load;

/// IPVS's default `lblc_expiration` / `lblcr_expiration` sysctl: 24 hours.
pub const DEFAULT_EXPIRATION_MS: u64 = 24 * 60 * 60 * 1000;
/// ENTRY_TIMEOUT of both modules: 6 minutes unused before the periodic check may drop an
/// entry of a table that is over its size.
pub const ENTRY_TIMEOUT_MS: u64 = 6 * 60 * 1000;
/// Buckets of the lblc/lblcr tables (CONFIG_IP_VS_LBLC_TAB_BITS=10); a table holds at most
/// 16 entries per bucket before the periodic check trims it.
pub const LBL_TAB_SIZE: usize = 1 << 10;

/// A server as the locality schedulers see it: its identity and its load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// Address and port (identity).
    pub id: SocketAddrV4,
    /// Current load.
    pub load: Load,
}

/// The locality schedulers' `is_overloaded`: the server has more active connections than its
/// weight, and some server of the service has fewer than half its weight.
fn is_overloaded(l: &Load, servers: &[Server]) -> bool {
    i64::from(l.active as i32) > l.w()
        && servers
            .iter()
            .any(|d| i64::from(d.load.active as i32) * 2 < d.load.w())
}

/// The weighted-least-connection fallback both modules use (`__ip_vs_lblc_schedule`, the same
/// walk as wlc).
fn least(servers: &[Server]) -> Option<usize> {
    let loads: Vec<Load> = servers.iter().map(|s| s.load).collect();
    wlc(&loads)
}

fn position(servers: &[Server], id: SocketAddrV4) -> Option<usize> {
    servers.iter().position(|s| s.id == id)
}

/// One lblc entry: the server a destination address goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LblcEntry {
    dest: SocketAddrV4,
    lastuse: u64,
}

/// IPVS `lblc` state of one service.
#[derive(Clone, Debug)]
pub struct Lblc {
    entries: HashMap<Ipv4Addr, LblcEntry>,
    /// `lblc_expiration` in ms.
    pub expiration_ms: u64,
}

impl Default for Lblc {
    fn default() -> Self {
        Lblc {
            entries: HashMap::new(),
            expiration_ms: DEFAULT_EXPIRATION_MS,
        }
    }
}

impl Lblc {
    /// A new connection to `daddr` at `now`: the index of the chosen server in `servers`
    /// (list order), or None. The destination's entry is used while its server is in the list,
    /// has a weight and is not overloaded; otherwise wlc picks and the entry is replaced.
    pub fn schedule(&mut self, daddr: Ipv4Addr, servers: &[Server], now: u64) -> Option<usize> {
        if let Some(en) = self.entries.get_mut(&daddr) {
            en.lastuse = now;
            if let Some(i) = position(servers, en.dest) {
                let l = &servers[i].load;
                if l.w() > 0 && !is_overloaded(l, servers) {
                    return Some(i);
                }
            }
        }
        let i = least(servers)?;
        // ip_vs_lblc_new: a different server replaces the entry (with a fresh lastuse); the
        // same server keeps it.
        let dest = servers[i].id;
        match self.entries.get_mut(&daddr) {
            Some(en) if en.dest == dest => {}
            _ => {
                self.entries.insert(daddr, LblcEntry { dest, lastuse: now });
            }
        }
        Some(i)
    }

    /// The periodic full check (every 30 minutes in the kernel): drops entries unused for more
    /// than `expiration_ms`.
    pub fn full_check(&mut self, now: u64) {
        let exp = self.expiration_ms;
        self.entries.retain(|_, e| e.lastuse + exp > now);
    }

    /// The periodic size check (every minute): when the table holds more than 16 entries per
    /// bucket, drops entries unused for [`ENTRY_TIMEOUT_MS`].
    pub fn size_check(&mut self, now: u64) {
        if self.entries.len() > LBL_TAB_SIZE * 16 {
            self.entries
                .retain(|_, e| now < e.lastuse + ENTRY_TIMEOUT_MS);
        }
    }

    /// A server was removed from the service: IPVS flushes nothing, but an entry pointing at a
    /// server no longer in the list is never used again; dropping it is equivalent.
    pub fn forget(&mut self, id: SocketAddrV4) {
        self.entries.retain(|_, e| e.dest != id);
    }

    /// The server `daddr` is mapped to, if any.
    pub fn entry(&self, daddr: Ipv4Addr) -> Option<SocketAddrV4> {
        self.entries.get(&daddr).map(|e| e.dest)
    }
}

/// One lblcr entry: a destination address's server set, newest member first.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LblcrEntry {
    set: Vec<SocketAddrV4>,
    lastmod: u64,
    lastuse: u64,
}

/// IPVS `lblcr` state of one service.
#[derive(Clone, Debug)]
pub struct Lblcr {
    entries: HashMap<Ipv4Addr, LblcrEntry>,
    /// `lblcr_expiration` in ms: how long a set must stay unchanged before it sheds its most
    /// loaded member, and how long an entry may stay unused.
    pub expiration_ms: u64,
}

impl Default for Lblcr {
    fn default() -> Self {
        Lblcr {
            entries: HashMap::new(),
            expiration_ms: DEFAULT_EXPIRATION_MS,
        }
    }
}

/// The members of `set` that are in the list, as (list index) in set order.
fn members(set: &[SocketAddrV4], servers: &[Server]) -> Vec<usize> {
    set.iter().filter_map(|&id| position(servers, id)).collect()
}

/// ip_vs_dest_set_min: the first non-overloaded member with a weight, then any later
/// non-overloaded one with a strictly smaller overhead per weight.
fn set_min(set: &[usize], servers: &[Server]) -> Option<usize> {
    let start = set
        .iter()
        .position(|&i| !servers[i].load.overloaded && servers[i].load.w() > 0)?;
    let mut least = set[start];
    let mut loh = servers[least].load.overhead();
    for &i in &set[start + 1..] {
        let d = &servers[i].load;
        if d.overloaded {
            continue;
        }
        let doh = d.overhead();
        if loh * d.w() > doh * servers[least].load.w() {
            least = i;
            loh = doh;
        }
    }
    Some(least)
}

/// ip_vs_dest_set_max: the first member with a weight, then any later one with a weight and a
/// strictly larger overhead per weight. Over the members still in the service, as rvs's data
/// path does (the kernel's set_max also weighs a removed server still held by the set; see the
/// README's differences).
fn set_max(set: &[usize], servers: &[Server]) -> Option<usize> {
    let start = set.iter().position(|&i| servers[i].load.w() > 0)?;
    let mut most = set[start];
    let mut moh = servers[most].load.overhead();
    for &i in &set[start + 1..] {
        let d = &servers[i].load;
        let doh = d.overhead();
        if moh * d.w() < doh * servers[most].load.w() && d.w() > 0 {
            most = i;
            moh = doh;
        }
    }
    Some(most)
}

impl Lblcr {
    /// A new connection to `daddr` at `now`: the index of the chosen server in `servers`, or
    /// None. The least loaded member of the destination's set is used unless it is overloaded;
    /// then wlc picks a server and it joins the set. A set of more than one member that has
    /// not changed for `expiration_ms` first sheds its most loaded member.
    pub fn schedule(&mut self, daddr: Ipv4Addr, servers: &[Server], now: u64) -> Option<usize> {
        let exp = self.expiration_ms;
        if let Some(en) = self.entries.get_mut(&daddr) {
            en.lastuse = now;
            let set = members(&en.set, servers);
            let dest = set_min(&set, servers);
            if en.set.len() > 1
                && now > en.lastmod + exp
                && let Some(m) = set_max(&set, servers)
            {
                let id = servers[m].id;
                en.set.retain(|&x| x != id);
                en.lastmod = now;
            }
            if let Some(d) = dest.filter(|&d| !is_overloaded(&servers[d].load, servers)) {
                return Some(d);
            }
            let d = least(servers)?;
            let id = servers[d].id;
            if !en.set.contains(&id) {
                en.set.insert(0, id);
                en.lastmod = now;
            }
            return Some(d);
        }
        let d = least(servers)?;
        self.entries.insert(
            daddr,
            LblcrEntry {
                set: vec![servers[d].id],
                lastmod: now,
                lastuse: now,
            },
        );
        Some(d)
    }

    /// The periodic full check: drops entries unused for more than `expiration_ms`.
    pub fn full_check(&mut self, now: u64) {
        let exp = self.expiration_ms;
        self.entries.retain(|_, e| e.lastuse + exp > now);
    }

    /// The periodic size check: when the table is over 16 entries per bucket, drops entries
    /// unused for [`ENTRY_TIMEOUT_MS`].
    pub fn size_check(&mut self, now: u64) {
        if self.entries.len() > LBL_TAB_SIZE * 16 {
            self.entries
                .retain(|_, e| now < e.lastuse + ENTRY_TIMEOUT_MS);
        }
    }

    /// A server was removed from the service (IPVS drops it from every set when it is freed).
    pub fn forget(&mut self, id: SocketAddrV4) {
        for e in self.entries.values_mut() {
            e.set.retain(|&x| x != id);
        }
    }

    /// The server set of `daddr`, newest member first.
    pub fn set(&self, daddr: Ipv4Addr) -> Vec<SocketAddrV4> {
        self.entries
            .get(&daddr)
            .map(|e| e.set.clone())
            .unwrap_or_default()
    }
}

/// How often IPVS's periodic check of an lblc/lblcr table runs (CHECK_EXPIRE_INTERVAL).
pub const CHECK_EXPIRE_INTERVAL_MS: u64 = 60 * 1000;
/// Every this many quiet runs the check is a full expiration (COUNT_FOR_FULL_EXPIRATION).
pub const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// The size over which the check trims a table (`max_size`: 16 entries per bucket).
pub const LBL_MAX_SIZE: usize = LBL_TAB_SIZE * 16;

/// IPVS's periodic check of one service's lblc or lblcr table (ip_vs_lblc_check_expire,
/// ip_vs_lblcr_check_expire), sans I/O: the caller runs it every
/// [`CHECK_EXPIRE_INTERVAL_MS`] with the table's entries and deletes what it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryCheck {
    /// The kernel's `tbl->counter`: runs since the last full expiration, from 1.
    counter: u32,
}

impl Default for ExpiryCheck {
    fn default() -> Self {
        ExpiryCheck { counter: 1 }
    }
}

impl ExpiryCheck {
    /// One run at `now` (ms) over the table's `(key, lastuse ms)` entries with the
    /// `lblc_expiration`/`lblcr_expiration` `expiration_ms`: the keys to delete. Every
    /// [`COUNT_FOR_FULL_EXPIRATION`]th run (counted while the table is within its size) drops
    /// every entry unused for the expiration; a run that finds the table over
    /// [`LBL_MAX_SIZE`] drops entries unused for [`ENTRY_TIMEOUT_MS`] until it has dropped
    /// `4/3` of the excess (at most half the size). The kernel visits its buckets from a
    /// rover; the caller's entry order stands in for it.
    pub fn run<K: Copy>(&mut self, entries: &[(K, u64)], now: u64, expiration_ms: u64) -> Vec<K> {
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            self.counter = 1;
            return entries
                .iter()
                .filter(|(_, lastuse)| lastuse.saturating_add(expiration_ms) <= now)
                .map(|(k, _)| *k)
                .collect();
        }
        if entries.len() <= LBL_MAX_SIZE {
            self.counter += 1;
            return Vec::new();
        }
        let mut goal = ((entries.len() - LBL_MAX_SIZE) * 4 / 3).min(LBL_MAX_SIZE / 2);
        let mut gone = Vec::new();
        for (k, lastuse) in entries {
            if goal == 0 {
                break;
            }
            if now >= lastuse.saturating_add(ENTRY_TIMEOUT_MS) {
                gone.push(*k);
                goal -= 1;
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(last: u8, weight: u32, active: u32) -> Server {
        Server {
            id: SocketAddrV4::new(Ipv4Addr::new(198, 18, 200, last), 80),
            load: Load {
                weight,
                active,
                inactive: 0,
                overloaded: false,
            },
        }
    }

    #[test]
    fn lblc_sticks_until_overloaded() {
        let d = Ipv4Addr::new(198, 18, 0, 10);
        let mut t = Lblc::default();
        let mut s = vec![srv(1, 2, 0), srv(2, 1, 0)];
        assert_eq!(t.schedule(d, &s, 0), Some(0));
        s[0].load.active = 2;
        // 2 active is not more than weight 2: stays.
        assert_eq!(t.schedule(d, &s, 1), Some(0));
        s[0].load.active = 3;
        // over its weight and server 2 is under half of its: rescheduled by wlc, entry moves.
        assert_eq!(t.schedule(d, &s, 2), Some(1));
        assert_eq!(t.entry(d), Some(s[1].id));
        t.full_check(2 + DEFAULT_EXPIRATION_MS);
        assert_eq!(t.entry(d), None);
    }

    #[test]
    fn lblcr_grows_then_sheds() {
        let d = Ipv4Addr::new(198, 18, 0, 10);
        let mut t = Lblcr {
            expiration_ms: 1000,
            ..Lblcr::default()
        };
        let mut s = vec![srv(1, 2, 0), srv(2, 1, 0)];
        assert_eq!(t.schedule(d, &s, 0), Some(0));
        s[0].load.active = 3;
        assert_eq!(t.schedule(d, &s, 10), Some(1));
        assert_eq!(t.set(d), vec![s[1].id, s[0].id]);
        s[1].load.active = 1;
        // After the expiration the most loaded member (server 1, 3 active on weight 2) goes.
        assert_eq!(t.schedule(d, &s, 2000), Some(1));
        assert_eq!(t.set(d), vec![s[1].id]);
    }

    #[test]
    fn periodic_check_is_full_every_thirtieth_quiet_run() {
        let day = DEFAULT_EXPIRATION_MS;
        let entries = [(1u32, 0u64), (2, day)];
        let mut c = ExpiryCheck::default();
        // Runs 1..=29 only count (the table is within its size); run 30 is the full one.
        for run in 1..COUNT_FOR_FULL_EXPIRATION {
            assert!(c.run(&entries, day + 5, day).is_empty(), "run {run}");
        }
        assert_eq!(c.run(&entries, day + 5, day), vec![1]);
        // The counter starts again from 1.
        assert!(c.run(&entries, 3 * day, day).is_empty());
    }

    #[test]
    fn periodic_check_trims_an_oversized_table_by_entry_timeout() {
        let n = LBL_MAX_SIZE + 30;
        // Half the entries unused for 6 minutes, half just used.
        let now = 10 * ENTRY_TIMEOUT_MS;
        let entries: Vec<(usize, u64)> = (0..n)
            .map(|i| (i, if i % 2 == 0 { 0 } else { now }))
            .collect();
        let mut c = ExpiryCheck::default();
        let gone = c.run(&entries, now, DEFAULT_EXPIRATION_MS);
        // (excess 30) * 4 / 3 = 40 entries, only stale ones.
        assert_eq!(gone.len(), 40);
        assert!(gone.iter().all(|i| i % 2 == 0));
        // An oversized run does not advance the count towards the full check.
        assert_eq!(c, ExpiryCheck::default());
    }
}
