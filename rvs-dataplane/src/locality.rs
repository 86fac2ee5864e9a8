//! The locality schedulers' side in userspace: their program's slot (`rvs_xdp_lbl`, reached
//! from `rvs_xdp_new` by tail call), their expirations (`[schedulers]`, IPVS's
//! `lblc_expiration`/`lblcr_expiration` sysctls) and IPVS's periodic check of their tables
//! (`rvs_sched::ExpiryCheck`, once a minute per service). The tables are pinned with the
//! other maps (a restart keeps them; `rvsd --cleanup` removes them).

use std::collections::{HashMap as StdHashMap, HashSet};
use std::net::Ipv4Addr;

use aya::{
    Ebpf,
    maps::{Array, HashMap},
};
use rvs_common::{
    NS_PER_SEC,
    sched::{
        KIND_LBLC, KIND_LBLCR, LBL_EXPIRE_LBLC, LBL_EXPIRE_LBLCR, LBL_PROGRAM, LblKey, LblcEntry,
        LblcrEntry, PROG_LOCALITY, maps,
    },
};
use rvs_config::locality::Schedulers;
use rvs_sched::{CHECK_EXPIRE_INTERVAL_MS, ExpiryCheck};

use crate::{Dataplane, DataplaneError, Result, map_err, monotonic_coarse_ns};

/// Puts the loaded `rvs_xdp_lbl` in its program-array slot (a restarted rvsd points it at
/// its own object's program, as it does `rvs_xdp_new`).
pub(crate) fn fill_prog_array(ebpf: &mut Ebpf) -> Result<()> {
    crate::set_prog_slot(ebpf, maps::LBL_PROGS, PROG_LOCALITY, LBL_PROGRAM)
}

/// What the dataplane keeps for the periodic check.
#[derive(Debug, Default)]
pub(crate) struct Locality {
    /// `[schedulers]` as last applied.
    settings: Schedulers,
    /// Per (scheduler kind, service id): IPVS's per-table check state.
    checks: StdHashMap<(u8, u32), ExpiryCheck>,
    /// When the check last ran (ms, CLOCK_MONOTONIC_COARSE); None before the first.
    last_run_ms: Option<u64>,
}

/// What one run of the periodic check removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LocalityExpiry {
    /// lblc entries removed.
    pub lblc: usize,
    /// lblcr entries removed.
    pub lblcr: usize,
}

/// An lblcr entry as userspace shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LblcrSet {
    /// The members' real ids, newest first (a member whose server left the service is
    /// listed until the set sheds it or the entry expires, as IPVS keeps it).
    pub members: Vec<u32>,
    /// Last change of the set, ns (CLOCK_MONOTONIC_COARSE).
    pub lastmod_ns: u64,
    /// Last use, ns.
    pub lastuse_ns: u64,
}

/// ns → the map value (0 in the map means "IPVS's default"; an expiration of 0 s is 1 ns).
fn expiration_ns(secs: u32) -> u64 {
    (u64::from(secs) * NS_PER_SEC).max(1)
}

impl Dataplane {
    /// Applies `[schedulers]`: the expirations the XDP program (lblcr's set shrink) and the
    /// periodic check read.
    pub fn set_schedulers(&mut self, settings: &Schedulers) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(maps::LBL_EXPIRE)
            .ok_or(DataplaneError::MissingMap(maps::LBL_EXPIRE))?;
        let mut a: Array<_, u64> = Array::try_from(map).map_err(map_err(maps::LBL_EXPIRE))?;
        a.set(LBL_EXPIRE_LBLC, expiration_ns(settings.lblc_expiration), 0)
            .map_err(map_err(maps::LBL_EXPIRE))?;
        a.set(
            LBL_EXPIRE_LBLCR,
            expiration_ns(settings.lblcr_expiration),
            0,
        )
        .map_err(map_err(maps::LBL_EXPIRE))?;
        self.locality.settings = *settings;
        Ok(())
    }

    /// Runs IPVS's periodic check of the lblc/lblcr tables when a minute
    /// (CHECK_EXPIRE_INTERVAL) has passed since the last run; None when it did not run.
    /// rvsd calls this from its loop.
    pub fn maybe_check_locality(&mut self) -> Result<Option<LocalityExpiry>> {
        let now_ms = monotonic_coarse_ns() / 1_000_000;
        match self.locality.last_run_ms {
            None => {
                // The first minute starts now (the kernel arms each table's timer a minute
                // after the service is made).
                self.locality.last_run_ms = Some(now_ms);
                Ok(None)
            }
            Some(t) if now_ms.saturating_sub(t) < CHECK_EXPIRE_INTERVAL_MS => Ok(None),
            Some(_) => {
                self.locality.last_run_ms = Some(now_ms);
                self.check_locality().map(Some)
            }
        }
    }

    /// One run of IPVS's periodic check over both tables: entries of services that no longer
    /// exist (or no longer use the scheduler) go at once; each live service's table gets
    /// `rvs_sched::ExpiryCheck` (every 30th run a full expiration of entries unused for the
    /// expiration; a table over 16 384 entries loses entries unused for 6 minutes).
    pub fn check_locality(&mut self) -> Result<LocalityExpiry> {
        let now_ms = monotonic_coarse_ns() / 1_000_000;
        let live: HashSet<(u8, u32)> = self.planner.locality_services().collect();
        self.locality.checks.retain(|k, _| live.contains(k));
        let lblc_ms = u64::from(self.locality.settings.lblc_expiration) * 1000;
        let lblcr_ms = u64::from(self.locality.settings.lblcr_expiration) * 1000;
        let lblc = {
            let entries: Vec<(LblKey, u64)> = self
                .lblc_table()?
                .iter()
                .filter_map(|e| e.ok())
                .map(|(k, v)| (k, v.lastuse / 1_000_000))
                .collect();
            let gone = self.expired(KIND_LBLC, &live, &entries, now_ms, lblc_ms);
            let mut t = self.lblc_table()?;
            gone.iter().filter(|k| t.remove(k).is_ok()).count()
        };
        let lblcr = {
            let entries: Vec<(LblKey, u64)> = self
                .lblcr_table()?
                .iter()
                .filter_map(|e| e.ok())
                .map(|(k, v)| (k, v.lastuse / 1_000_000))
                .collect();
            let gone = self.expired(KIND_LBLCR, &live, &entries, now_ms, lblcr_ms);
            let mut t = self.lblcr_table()?;
            gone.iter().filter(|k| t.remove(k).is_ok()).count()
        };
        if lblc + lblcr > 0 {
            tracing::debug!(lblc, lblcr, "locality tables: entries expired");
        }
        Ok(LocalityExpiry { lblc, lblcr })
    }

    /// The keys of one table to delete: those of dead services, and what each live
    /// service's check gives.
    fn expired(
        &mut self,
        kind: u8,
        live: &HashSet<(u8, u32)>,
        entries: &[(LblKey, u64)],
        now_ms: u64,
        expiration_ms: u64,
    ) -> Vec<LblKey> {
        let mut per_service: StdHashMap<u32, Vec<(LblKey, u64)>> = StdHashMap::new();
        let mut gone = Vec::new();
        for &(k, lastuse) in entries {
            if live.contains(&(kind, k.service)) {
                per_service.entry(k.service).or_default().push((k, lastuse));
            } else {
                gone.push(k);
            }
        }
        for &(_, service) in live.iter().filter(|(k, _)| *k == kind) {
            let table = per_service.remove(&service).unwrap_or_default();
            let check = self.locality.checks.entry((kind, service)).or_default();
            gone.extend(check.run(&table, now_ms, expiration_ms));
        }
        gone
    }

    fn lblc_table(&mut self) -> Result<HashMap<&mut aya::maps::MapData, LblKey, LblcEntry>> {
        let map = self
            .ebpf
            .map_mut(maps::LBLC)
            .ok_or(DataplaneError::MissingMap(maps::LBLC))?;
        HashMap::try_from(map).map_err(map_err(maps::LBLC))
    }

    fn lblcr_table(&mut self) -> Result<HashMap<&mut aya::maps::MapData, LblKey, LblcrEntry>> {
        let map = self
            .ebpf
            .map_mut(maps::LBLCR)
            .ok_or(DataplaneError::MissingMap(maps::LBLCR))?;
        HashMap::try_from(map).map_err(map_err(maps::LBLCR))
    }

    /// lblc's entry for destination `daddr` of service id `service`: (real id, last use ns).
    pub fn lblc_entry(&mut self, service: u32, daddr: Ipv4Addr) -> Option<(u32, u64)> {
        let key = LblKey {
            service,
            daddr: u32::from_ne_bytes(daddr.octets()),
        };
        let e = self.lblc_table().ok()?.get(&key, 0).ok()?;
        Some((e.real, e.lastuse))
    }

    /// lblcr's server set for destination `daddr` of service id `service`.
    pub fn lblcr_set(&mut self, service: u32, daddr: Ipv4Addr) -> Option<LblcrSet> {
        let key = LblKey {
            service,
            daddr: u32::from_ne_bytes(daddr.octets()),
        };
        let e = self.lblcr_table().ok()?.get(&key, 0).ok()?;
        let n = (e.n as usize).min(e.members.len());
        Some(LblcrSet {
            members: e.members[..n].iter().map(|m| m.real).collect(),
            lastmod_ns: e.lastmod,
            lastuse_ns: e.lastuse,
        })
    }

    /// Entries in the lblc and lblcr tables (all services).
    pub fn locality_entries(&mut self) -> Result<(usize, usize)> {
        let a = self.lblc_table()?.keys().count();
        let b = self.lblcr_table()?.keys().count();
        Ok((a, b))
    }
}
