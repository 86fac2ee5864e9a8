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
