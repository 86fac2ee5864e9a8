//! Commit-or-nothing service lookups: the service map exists twice and a batch writes the
//! copy readers do not use, then flips the commit word (rvs_common::commit). The program
//! looks every service up through [`service`], so it sees the whole old or the whole new
//! configuration of a batch. Established packets never look a service up: no cost there.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use rvs_common::{
    DEFAULT_MAX_REALS, DEFAULT_MAX_SERVICES, ServiceEntry, ServiceKey,
    commit::{CommitState, JournalRecord},
};

use crate::maps::SERVICES;

/// Lets userspace flip the commit word with one store (and write the journal) via mmap.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The second copy of (proto, VIP, port) → service.
#[map(name = "RVS_SERVICES_B")]
pub static SERVICES_B: HashMap<ServiceKey, ServiceEntry> = HashMap::pinned(DEFAULT_MAX_SERVICES, 0);
/// The commit word: which copy is live.
#[map(name = "RVS_COMMIT")]
pub static COMMIT: Array<CommitState> = Array::pinned(1, BPF_F_MMAPABLE);
/// The open batch's real-server journal (userspace only; pinned so a crash leaves it).
#[map(name = "RVS_JOURNAL")]
pub static JOURNAL: Array<JournalRecord> = Array::pinned(DEFAULT_MAX_REALS, BPF_F_MMAPABLE);

/// The committed entry of service `key`.
#[inline(always)]
pub fn service(key: &ServiceKey) -> Option<ServiceEntry> {
    let odd = COMMIT.get(0).is_some_and(|c| c.active() != 0);
    // SAFETY: the value is only read while the program runs (RCU-protected).
    unsafe {
        if odd {
            SERVICES_B.get(key)
        } else {
            SERVICES.get(key)
        }
    }
    .copied()
}
