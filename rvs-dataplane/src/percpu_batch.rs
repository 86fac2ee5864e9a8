//! Batched reads of a per-CPU array map (`BPF_MAP_LOOKUP_BATCH`).
//!
//! Why this exists: rvsd reads the service and real-server counters (per-CPU arrays of
//! [`rvs_common::Counters`]) for every id every 2 s (the rate estimator) and for every
//! listing. aya 0.14 has no batch API, so each id was one `bpf()` syscall plus a heap
//! allocation: 400 000 syscalls a round at 100 000 services × 3 real servers, and a 10 000
//! × 10 `rvsadm -L -n` paid 110 000 of them. One `BPF_MAP_LOOKUP_BATCH` copies up to
//! [`BATCH`] consecutive entries at once (kernel ≥ 5.6, `generic_map_lookup_batch`).
//!
//! The kernel's batch on an array map walks keys with `map_get_next_key`: it starts *after*
//! `in_batch` (or at key 0 when `in_batch` is NULL), copies `count` entries, writes the last
//! key it copied to `out_batch` and the number copied to `count`, and fails with ENOENT when
//! it reached the last key (the entries before it are still copied). A per-CPU value comes
//! as one slot per possible CPU, each rounded up to 8 bytes.

use std::{
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use aya::{Pod, maps::Map};

use crate::{DataplaneError, Result};

/// Entries copied by one syscall at most (a buffer of `BATCH × slot × CPUs` bytes).
pub const BATCH: u32 = 4_096;

/// Ids further apart than this are read by two batches rather than one that copies the
/// unused ids between them.
const GAP: u32 = 64;

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h); the kernel accepts
/// an attribute shorter than the whole union when it covers the fields the command uses.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// A second descriptor of a per-CPU array map of `V`, read in batches.
pub struct PerCpuBatch<V> {
    fd: OwnedFd,
    name: &'static str,
    max_entries: u32,
    ncpu: usize,
    /// Bytes of one CPU's value (`size_of::<V>()` rounded up to 8).
    slot: usize,
    _v: PhantomData<V>,
}

impl<V: Pod> std::fmt::Debug for PerCpuBatch<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerCpuBatch")
            .field("name", &self.name)
            .field("max_entries", &self.max_entries)
            .field("ncpu", &self.ncpu)
            .finish()
    }
}

fn io(what: String, source: std::io::Error) -> DataplaneError {
    DataplaneError::Io { what, source }
}

impl<V: Pod> PerCpuBatch<V> {
    /// Duplicates the descriptor of `map` (a per-CPU array named `name` whose values are
    /// `V`), so the typed aya map can go on owning the original.
    pub fn new(map: &Map, name: &'static str) -> Result<PerCpuBatch<V>> {
        let Map::PerCpuArray(data) = map else {
            return Err(io(
                format!("map {name} is not a per-CPU array"),
                std::io::ErrorKind::InvalidInput.into(),
            ));
        };
        let info = data.info().map_err(crate::map_err(name))?;
        if info.value_size() as usize != std::mem::size_of::<V>() || info.key_size() != 4 {
            return Err(io(
                format!(
                    "map {name}: value size {} (expected {}), key size {}",
                    info.value_size(),
                    std::mem::size_of::<V>(),
                    info.key_size()
                ),
                std::io::ErrorKind::InvalidData.into(),
            ));
        }
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| io(format!("duplicating the descriptor of {name}"), e))?;
        let ncpu = aya::util::nr_cpus()
            .map_err(|(_, e)| io("counting possible CPUs".into(), e))?;
        Ok(PerCpuBatch {
            fd,
            name,
            max_entries: info.max_entries(),
            ncpu,
            slot: std::mem::size_of::<V>().div_ceil(8) * 8,
            _v: PhantomData,
        })
    }

    /// Number of entries of the array.
    pub fn len(&self) -> u32 {
        self.max_entries
    }

    /// Whether the array has no entries.
    pub fn is_empty(&self) -> bool {
        self.max_entries == 0
    }

    /// Reads `count` consecutive entries from key `start` (clipped to the array) and calls
    /// `f(key, per_cpu_values)` for each, in key order.
    pub fn read_range(&self, start: u32, count: u32, mut f: impl FnMut(u32, &[V])) -> Result<()> {
        let end = start.saturating_add(count).min(self.max_entries);
        if start >= end {
            return Ok(());
        }
        let stride = self.slot * self.ncpu;
        let chunk = (end - start).min(BATCH);
        let mut keys = vec![0u32; chunk as usize];
        let mut values = vec![0u8; stride * chunk as usize];
        let mut per_cpu: Vec<V> = Vec::with_capacity(self.ncpu);
        let mut next = start;
        while next < end {
            let want = (end - next).min(BATCH);
            // The walk starts after `prev` (or at 0 without one).
            let prev: u32 = next.wrapping_sub(1);
            let mut out_batch: u32 = 0;
            let mut attr = BatchAttr {
                in_batch: if next == 0 {
                    0
                } else {
                    std::ptr::addr_of!(prev) as u64
                },
                out_batch: std::ptr::addr_of_mut!(out_batch) as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: want,
                map_fd: self.fd.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            // SAFETY: `attr` is a valid `bpf_attr.batch` whose pointers name live buffers
            // of `want` keys (`keys.len() >= want`) and `want × stride` value bytes
            // (`values.len() >= want × stride`), and `prev`/`out_batch` (4 bytes, the
            // key size checked in `new`); the kernel writes no more than that.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    std::ptr::addr_of_mut!(attr),
                    std::mem::size_of::<BatchAttr>(),
                )
            };
            let err = (rc < 0).then(std::io::Error::last_os_error);
            let got = attr.count.min(want);
            match &err {
                None => {}
                // The last key was reached: what was copied before it stands.
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Some(e) => {
                    return Err(io(
                        format!("batched lookup of {} from key {next}", self.name),
                        std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
                    ));
                }
            }
            for i in 0..got as usize {
                per_cpu.clear();
                let base = i * stride;
                for cpu in 0..self.ncpu {
                    let at = base + cpu * self.slot;
                    let bytes = &values[at..at + std::mem::size_of::<V>()];
                    // SAFETY: `bytes` holds size_of::<V>() bytes the kernel copied from a
                    // value of the map, whose value type is `V` (checked in `new`); V is
                    // Pod, so any bytes are a valid V; read_unaligned needs no alignment.
                    per_cpu.push(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<V>()) });
                }
                f(keys[i], &per_cpu);
            }
            if got == 0 {
                // Nothing more to copy (the end, or an empty answer): never spin.
                break;
            }
            next = keys[got as usize - 1].saturating_add(1);
            if err.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// Reads the entries of `ids` (any order, repeats allowed) and returns, in the order of
    /// `ids`, `fold` of each one's per-CPU values; ids close together are read by one batch.
    /// An id outside the array is an error, as a single lookup of it would be.
    pub fn read_many<T: Default + Clone>(
        &self,
        ids: &[u32],
        fold: impl Fn(&[V]) -> T,
    ) -> Result<Vec<T>> {
        if let Some(&bad) = ids.iter().find(|&&id| id >= self.max_entries) {
            return Err(io(
                format!(
                    "map {}: key {bad} is outside the array ({} entries)",
                    self.name, self.max_entries
                ),
                std::io::ErrorKind::InvalidInput.into(),
            ));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_unstable_by_key(|&i| ids[i]);
        let mut out = vec![T::default(); ids.len()];
        let mut at = 0;
        while at < order.len() {
            // One run: ids no more than GAP apart, at most BATCH keys long.
            let first = ids[order[at]];
            let mut last = first;
            let mut stop = at + 1;
            while stop < order.len() {
                let id = ids[order[stop]];
                if id - last > GAP || id - first >= BATCH {
                    break;
                }
                last = id;
                stop += 1;
            }
            let run = &order[at..stop];
            let mut cursor = 0;
            self.read_range(first, last - first + 1, |key, values| {
                if cursor >= run.len() || ids[run[cursor]] != key {
                    return;
                }
                let v = fold(values);
                while cursor < run.len() && ids[run[cursor]] == key {
                    out[run[cursor]] = v.clone();
                    cursor += 1;
                }
            })?;
            if cursor != run.len() {
                return Err(io(
                    format!(
                        "map {}: the batched lookup of keys {first}..={last} came back short",
                        self.name
                    ),
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            at = stop;
        }
        Ok(out)
    }
}
