//! A read-only view of pinned maps as the XDP program sees them: no recovery, no writes
//! (unlike [`crate::Dataplane::load`], which finishes an interrupted batch first). For
//! tests and diagnostics after a crash: which services are live, and what the balancer does
//! with a frame through BPF_PROG_TEST_RUN against exactly those maps.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap},
};
use rvs_common::{ServiceEntry, ServiceKey, commit, commit::CommitState, maps, programs};

use crate::{
    DataplaneError, Result, map_err,
    testrun::{XdpRun, run_xdp},
    xdp_of,
};

/// The balancer loaded over the maps pinned under a directory.
pub struct PinnedView {
    ebpf: Ebpf,
}

impl PinnedView {
    /// Loads the balancer program over the maps pinned in `pin_dir` (maps missing there
    /// are created, as by any load).
    pub fn open(pin_dir: &Path) -> Result<PinnedView> {
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(crate::EBPF_OBJECT)
            .map_err(|source| DataplaneError::Load {
                pin_dir: pin_dir.to_owned(),
                source: Box::new(source),
            })?;
        xdp_of(&mut ebpf, programs::BALANCER)?
            .load()
            .map_err(|e| DataplaneError::Program {
                name: programs::BALANCER,
                source: Box::new(e),
            })?;
        Ok(PinnedView { ebpf })
    }

    /// The commit word.
    pub fn commit_state(&self) -> Result<CommitState> {
        let map = self
            .ebpf
            .map(commit::COMMIT)
            .ok_or(DataplaneError::MissingMap(commit::COMMIT))?;
        let word: Array<_, CommitState> = Array::try_from(map).map_err(map_err(commit::COMMIT))?;
        word.get(&0, 0).map_err(map_err(commit::COMMIT))
    }

    /// The entries of one copy of the service map (0: `RVS_SERVICES`, 1: the other).
    pub fn services_copy(&self, copy: u32) -> Result<Vec<(ServiceKey, ServiceEntry)>> {
        let name = if copy == 0 {
            maps::SERVICES
        } else {
            commit::SERVICES_B
        };
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap(name))?;
        let services: HashMap<_, ServiceKey, ServiceEntry> =
            HashMap::try_from(map).map_err(map_err(name))?;
        Ok(services.iter().filter_map(|e| e.ok()).collect())
    }

    /// The services the program finds: the copy the commit word names.
    pub fn live_services(&self) -> Result<Vec<(ServiceKey, ServiceEntry)>> {
        self.services_copy(self.commit_state()?.active())
    }

    /// Runs the balancer once on `frame` as received on `ingress_ifindex` (0: loopback).
    pub fn run(&mut self, frame: &[u8], ingress_ifindex: u32) -> Result<XdpRun> {
        let prog = xdp_of(&mut self.ebpf, programs::BALANCER)?;
        run_xdp(prog, frame, ingress_ifindex, 1).map_err(|e| DataplaneError::Program {
            name: programs::BALANCER,
            source: Box::new(e),
        })
    }
}

/// Keys in one copy of the pinned service map (0: `RVS_SERVICES`, 1: the other), counted
/// up to `cap`; 0 when the map is not pinned. Cheap enough to poll while a batch is written.
pub fn pinned_service_keys(pin_dir: &Path, copy: u32, cap: usize) -> usize {
    let name = if copy == 0 {
        maps::SERVICES
    } else {
        commit::SERVICES_B
    };
    let Ok(data) = aya::maps::MapData::from_pin(pin_dir.join(name)) else {
        return 0;
    };
    let map = aya::maps::Map::HashMap(data);
    match HashMap::<_, ServiceKey, ServiceEntry>::try_from(&map) {
        Ok(services) => services.keys().take(cap).count(),
        Err(_) => 0,
    }
}

/// For benchmarks: writes `count` established TCP connections into the pinned connection
/// table under `pin_dir`, spread over the first in-use real servers (up to 256 of them,
/// with their current generations, so rvsd counts them as live), clients from
/// 198.18.128.0/17, last seen now. Returns how many were written.
pub fn fill_pinned_conns(pin_dir: &Path, count: u32) -> Result<u32> {
    use aya::maps::{Map, MapData};
    use rvs_common::{ConnEntry, ConnState, FlowKey, RealEntry};
    let open = |name: &'static str| MapData::from_pin(pin_dir.join(name)).map_err(map_err(name));
    let reals_map = Map::Array(open(maps::REALS)?);
    let reals: Array<_, RealEntry> = Array::try_from(&reals_map).map_err(map_err(maps::REALS))?;
    let mut targets = Vec::new();
    for id in 0..reals.len() {
        if targets.len() >= 256 {
            break;
        }
        if let Ok(r) = reals.get(&id, 0)
            && r.in_use()
        {
            targets.push((id, r));
        }
    }
    if targets.is_empty() {
        return Ok(0);
    }
    let conns_map = Map::LruHashMap(open(maps::CONNS)?);
    let mut conns: HashMap<_, FlowKey, ConnEntry> =
        HashMap::try_from(conns_map).map_err(map_err(maps::CONNS))?;
    let now = crate::monotonic_coarse_ns();
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 128, 0));
    for i in 0..count {
        let (id, r): (u32, RealEntry) = targets[i as usize % targets.len()];
        let key = FlowKey {
            src: (base + (i >> 8) % 32_768).to_be(),
            dst: u32::from(std::net::Ipv4Addr::new(198, 19, 0, 0)).to_be(),
            sport: (1_024 + (i & 0xff) as u16).to_be(),
            dport: 80u16.to_be(),
            proto: 6,
        };
        let entry = ConnEntry {
            last_seen: now,
            real: id,
            real_gen: r.generation,
            service: r.service,
            state: ConnState::Established as u8,
            ..ConnEntry::default()
        };
        conns.insert(key, entry, 0).map_err(map_err(maps::CONNS))?;
    }
    Ok(count)
}
