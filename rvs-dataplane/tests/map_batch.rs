//! The batched reads (`BPF_MAP_LOOKUP_BATCH`) give exactly what one lookup per key gives:
//! on a real kernel per-CPU array of `Counters`, and on a real hash map of connections
//! (root).

use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuValues};
use rvs_common::{ConnEntry, Counters, FlowKey};
use rvs_dataplane::map_batch::{BATCH, HashBatch, PerCpuBatch};

/// A distinct value for each (key, cpu, field).
fn value(key: u32, cpu: usize) -> Counters {
    let k = u64::from(key);
    let c = cpu as u64;
    Counters {
        conns: k * 1_000 + c,
        packets_in: k * 3 + c * 7 + 1,
        bytes_in: (k << 20) ^ (c << 3) ^ 0xabcd,
        packets_out: k.wrapping_mul(0x9e37_79b9) + c,
        bytes_out: u64::MAX - k - c,
    }
}

fn sum(per_cpu: &[Counters]) -> Counters {
    per_cpu.iter().fold(Counters::default(), |mut a, c| {
        a.conns += c.conns;
        a.packets_in += c.packets_in;
        a.bytes_in = a.bytes_in.wrapping_add(c.bytes_in);
        a.packets_out = a.packets_out.wrapping_add(c.packets_out);
        a.bytes_out = a.bytes_out.wrapping_add(c.bytes_out);
        a
    })
}

/// Removes the pinned test map on every exit.
struct Pin(std::path::PathBuf);
impl Drop for Pin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn batched_reads_equal_per_key_reads() {
    if !rvs_lab::root_or_skip("per-CPU batch test") {
        return;
    }
    rvs_dataplane::ensure_bpffs().expect("bpffs");
    // More than two batches, and not a multiple of one, so the last batch ends at the
    // array's end (the kernel's ENOENT) part-way.
    let len = 2 * BATCH + 123;
    let ncpu = aya::util::nr_cpus().expect("cpus");
    let mut array = PerCpuArray::<MapData, Counters>::create(len, 0).expect("create map");
    // Every 5th key is written; the rest stay zero, as unused ids do.
    for key in (0..len).step_by(5) {
        let v: Vec<Counters> = (0..ncpu).map(|cpu| value(key, cpu)).collect();
        array
            .set(key, PerCpuValues::try_from(v).expect("values"), 0)
            .expect("set");
    }
    let pin = Pin(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/{}-percpu-batch",
        rvs_lab::unique_prefix()
    )));
    array.pin(&pin.0).expect("pin");
    let map = Map::PerCpuArray(MapData::from_pin(&pin.0).expect("open pinned"));
    let batch = PerCpuBatch::<Counters>::new(&map, "test").expect("batch reader");
    let single = PerCpuArray::<_, Counters>::try_from(&map).expect("typed map");
    assert_eq!(batch.len(), len);
    let per_key = |key: u32| -> Vec<Counters> {
        single
            .get(&key, 0)
            .expect("lookup")
            .iter()
            .copied()
            .collect()
    };

    // Whole array, per-CPU values as they are (not only their sums).
    let mut seen = Vec::new();
    batch
        .read_range(0, len, |key, values| {
            seen.push(key);
            assert_eq!(values.len(), ncpu);
            assert_eq!(values, per_key(key).as_slice(), "key {key}");
        })
        .expect("read whole array");
    assert_eq!(
        seen,
        (0..len).collect::<Vec<_>>(),
        "every key once, in order"
    );

    // A range from the middle, a range past the end (clipped), an empty range.
    let mut keys = Vec::new();
    batch
        .read_range(BATCH - 3, 10, |k, v| {
            assert_eq!(v, per_key(k).as_slice());
            keys.push(k);
        })
        .expect("middle");
    assert_eq!(keys, (BATCH - 3..BATCH + 7).collect::<Vec<_>>());
    keys.clear();
    batch
        .read_range(len - 2, 100, |k, _| keys.push(k))
        .expect("tail");
    assert_eq!(keys, vec![len - 2, len - 1]);
    keys.clear();
    batch.read_range(len, 5, |k, _| keys.push(k)).expect("past");
    assert!(keys.is_empty());

    // Sparse ids in any order with repeats and gaps wider than one batch: the sums in the
    // order asked, equal to per-key reads.
    let ids: Vec<u32> = vec![
        len - 1,
        0,
        7,
        5,
        5,
        BATCH + 500,
        3_000,
        1,
        len - 1,
        2 * BATCH,
        200,
        201,
        BATCH,
    ];
    let many = batch.read_many(&ids, sum).expect("read many");
    let expected: Vec<Counters> = ids.iter().map(|&k| sum(&per_key(k))).collect();
    assert_eq!(many, expected);
    assert!(
        many.iter().any(|c| c.conns != 0),
        "non-zero values compared"
    );
    assert!(batch.read_many(&[], sum).expect("none").is_empty());
    // An id outside the array is refused, as a single lookup refuses it.
    assert!(batch.read_many(&[1, len], sum).is_err());
    assert!(single.get(&len, 0).is_err());
}

#[test]
fn batched_hash_walk_equals_the_entry_by_entry_walk() {
    if !rvs_lab::root_or_skip("hash batch test") {
        return;
    }
    rvs_dataplane::ensure_bpffs().expect("bpffs");
    // More entries than one batch holds, in a map larger than them (empty buckets).
    let n = 3 * BATCH + 17;
    let mut map = HashMap::<MapData, FlowKey, ConnEntry>::create(4 * BATCH, 0).expect("create");
    for i in 0..n {
        let key = FlowKey {
            src: 0xc612_0000 + i,
            dst: 0xc613_0001,
            sport: (i % 60_000) as u16,
            dport: 80,
            proto: 6,
        };
        let entry = ConnEntry {
            last_seen: u64::from(i) * 1_000_003,
            real: i % 97,
            real_gen: i / 97,
            state: (i % 6) as u8,
            ..ConnEntry::default()
        };
        map.insert(key, entry, 0).expect("insert");
    }
    let pin = Pin(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/{}-hash-batch",
        rvs_lab::unique_prefix()
    )));
    map.pin(&pin.0).expect("pin");
    let map = Map::HashMap(MapData::from_pin(&pin.0).expect("open pinned"));
    let walk = HashBatch::<FlowKey, ConnEntry>::new(&map, "test").expect("batch walker");
    let typed = HashMap::<_, FlowKey, ConnEntry>::try_from(&map).expect("typed map");
    let key_of = |k: &FlowKey| (k.src, k.dst, k.sport, k.dport, k.proto);
    let mut batched = Vec::new();
    walk.for_each(|k, v| batched.push((key_of(&k), v)))
        .expect("batched walk");
    let mut single: Vec<_> = typed
        .iter()
        .map(|e| e.expect("entry"))
        .map(|(k, v)| (key_of(&k), v))
        .collect();
    assert_eq!(batched.len(), n as usize, "every entry once");
    batched.sort_by_key(|(k, _)| *k);
    single.sort_by_key(|(k, _)| *k);
    assert_eq!(batched, single);
    // A per-CPU array is not a hash map: refused by name.
    let array = PerCpuArray::<MapData, Counters>::create(4, 0).expect("array");
    let apin = Pin(std::path::PathBuf::from(format!(
        "/sys/fs/bpf/{}-hash-batch-array",
        rvs_lab::unique_prefix()
    )));
    array.pin(&apin.0).expect("pin array");
    let amap = Map::PerCpuArray(MapData::from_pin(&apin.0).expect("open array"));
    let err = HashBatch::<FlowKey, ConnEntry>::new(&amap, "an-array").expect_err("not a hash");
    assert!(err.to_string().contains("an-array"), "{err}");
}
