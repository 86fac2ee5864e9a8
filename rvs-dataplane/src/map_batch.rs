//! Batched reads of BPF maps (`BPF_MAP_LOOKUP_BATCH`): per-CPU arrays ([`PerCpuBatch`]) and
//! hash maps ([`HashBatch`]).
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
//!
//! The connection scan walks the connection table (an LRU hash) every few seconds; aya's
//! iterator costs two syscalls per entry (next key, then lookup). On a hash map the batch
//! copies whole buckets: `in_batch`/`out_batch` are an opaque bucket cursor, ENOSPC says a
//! bucket holds more entries than `count` (and sets `count` to its size), ENOENT says the
//! walk is over (entries copied before stand). Like aya's lookups, a batched lookup does
//! not mark LRU entries used.

use std::{
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use aya::{Pod, maps::Map};

/// Size of a map's key and value, and its entries.
fn sizes(map: &aya::maps::MapData, name: &'static str) -> Result<(u32, u32, u32)> {
    let info = map.info().map_err(crate::map_err(name))?;
    Ok((info.key_size(), info.value_size(), info.max_entries()))
}

/// Runs `BPF_MAP_LOOKUP_BATCH` with `attr`: Ok(true) when the walk is over (ENOENT),
/// Ok(false) when there is more, the errno otherwise.
fn lookup_batch(attr: &mut BatchAttr) -> std::result::Result<bool, std::io::Error> {
    // SAFETY: the callers build `attr` as a valid `bpf_attr.batch` whose pointers name live
    // buffers large enough for `count` keys and values and for one cursor each (they say
    // so where they build it); the kernel writes no more than that.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            std::ptr::from_mut(attr),
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc >= 0 {
        return Ok(false);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok(true)
    } else {
        Err(e)
    }
}

use crate::{DataplaneError, Result};

/// Entries copied by one syscall at most (a buffer of `BATCH × slot × CPUs` bytes).
pub const BATCH: u32 = 4_096;

/// Largest hash bucket a walk makes room for (a bucket holds a handful of entries).
const MAX_BUCKET: usize = 1 << 20;

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

/// A descriptor of its own for map `name`, so the typed aya map can go on owning the original.
fn own_fd(data: &aya::maps::MapData, name: &str) -> Result<OwnedFd> {
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| io(format!("duplicating the descriptor of {name}"), e))
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
        let (key_size, value_size, max_entries) = sizes(data, name)?;
        if value_size as usize != std::mem::size_of::<V>() || key_size != 4 {
            return Err(io(
                format!(
                    "map {name}: value size {value_size} (expected {}), key size {key_size}",
                    std::mem::size_of::<V>(),
                ),
                std::io::ErrorKind::InvalidData.into(),
            ));
        }
        let fd = own_fd(data, name)?;
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| io("counting possible CPUs".into(), e))?;
        Ok(PerCpuBatch {
            fd,
            name,
            max_entries,
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
            // `keys` holds >= want keys, `values` >= want × stride bytes, `prev` and
            // `out_batch` one 4-byte key each (the key size checked in `new`).
            let done = lookup_batch(&mut attr).map_err(|e| {
                io(
                    format!("batched lookup of {} from key {next}", self.name),
                    e,
                )
            })?;
            let got = attr.count.min(want);
            for (i, &key) in keys.iter().take(got as usize).enumerate() {
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
                f(key, &per_cpu);
            }
            if got == 0 {
                // Nothing more to copy (the end, or an empty answer): never spin.
                break;
            }
            next = keys[got as usize - 1].saturating_add(1);
            if done {
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

/// A second descriptor of a hash map (or LRU hash map) of `K` → `V`, walked in batches.
pub struct HashBatch<K, V> {
    fd: OwnedFd,
    name: &'static str,
    _kv: PhantomData<(K, V)>,
}

impl<K: Pod, V: Pod> std::fmt::Debug for HashBatch<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashBatch")
            .field("name", &self.name)
            .finish()
    }
}

impl<K: Pod, V: Pod> HashBatch<K, V> {
    /// Duplicates the descriptor of `map` (a hash or LRU hash map named `name` of `K` →
    /// `V`), so the typed aya map can go on owning the original.
    pub fn new(map: &Map, name: &'static str) -> Result<HashBatch<K, V>> {
        let (Map::HashMap(data) | Map::LruHashMap(data)) = map else {
            return Err(io(
                format!("map {name} is not a hash map"),
                std::io::ErrorKind::InvalidInput.into(),
            ));
        };
        let (key_size, value_size, _) = sizes(data, name)?;
        if key_size as usize != std::mem::size_of::<K>()
            || value_size as usize != std::mem::size_of::<V>()
        {
            return Err(io(
                format!(
                    "map {name}: key/value sizes {key_size}/{value_size} (expected {}/{})",
                    std::mem::size_of::<K>(),
                    std::mem::size_of::<V>()
                ),
                std::io::ErrorKind::InvalidData.into(),
            ));
        }
        let fd = own_fd(data, name)?;
        Ok(HashBatch {
            fd,
            name,
            _kv: PhantomData,
        })
    }

    /// Calls `f(key, value)` for every entry, bucket by bucket. As with any walk of a map
    /// the program writes meanwhile, an entry added or removed during it may be missed.
    pub fn for_each(&self, mut f: impl FnMut(K, V)) -> Result<()> {
        let (ks, vs) = (std::mem::size_of::<K>(), std::mem::size_of::<V>());
        let mut cap = BATCH as usize;
        let mut keys = vec![0u8; cap * ks];
        let mut values = vec![0u8; cap * vs];
        let mut cursor: u32 = 0;
        let mut started = false;
        loop {
            let mut out_batch: u32 = 0;
            let mut attr = BatchAttr {
                in_batch: if started {
                    std::ptr::addr_of!(cursor) as u64
                } else {
                    0
                },
                out_batch: std::ptr::addr_of_mut!(out_batch) as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: cap as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            // `keys` holds cap × key size bytes, `values` cap × value size (the sizes
            // checked in `new`); the bucket cursor is a u32 (htab's batch).
            let done = match lookup_batch(&mut attr) {
                Ok(done) => done,
                // One bucket holds more than `cap` entries (the kernel answers count 0):
                // a larger buffer, up to a bound.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && cap < MAX_BUCKET => {
                    cap *= 2;
                    keys.resize(cap * ks, 0);
                    values.resize(cap * vs, 0);
                    continue;
                }
                Err(e) => return Err(io(format!("batched walk of {}", self.name), e)),
            };
            let got = (attr.count as usize).min(cap);
            for i in 0..got {
                // SAFETY: the kernel copied `got` keys of key size and values of value
                // size, whose types are K and V (sizes checked in `new`); both are Pod, so
                // any bytes are valid; read_unaligned needs no alignment.
                let (k, v) = unsafe {
                    (
                        std::ptr::read_unaligned(keys[i * ks..].as_ptr().cast::<K>()),
                        std::ptr::read_unaligned(values[i * vs..].as_ptr().cast::<V>()),
                    )
                };
                f(k, v);
            }
            if done {
                return Ok(());
            }
            cursor = out_batch;
            started = true;
        }
    }
}
