//! The address filter's userspace half (sans-I/O): which addresses the XDP program must
//! look at (every VIP, every NAT real server's address, and the address of a removed NAT
//! real server while reply entries may still name it), as the bit array the program reads
//! (`rvs_common::addr_filter_slot`). A bit is cleared only when no address held hashes to
//! it any more, so the filter is always a superset: a false positive costs the full path,
//! never a verdict.

use std::collections::{BTreeSet, HashMap};

use rvs_common::{ADDR_FILTER_WORDS, addr_filter_slot};

/// Reference-counted addresses and the bit array they make.
#[derive(Debug, Clone)]
pub struct AddrFilter {
    /// Address → how many holders (services on the VIP, NAT real servers, …).
    refs: HashMap<u32, u32>,
    /// (word, bit) → how many distinct held addresses hash there.
    slots: HashMap<(u32, u64), u32>,
    words: Vec<u64>,
    /// Words changed since the last [`AddrFilter::take_dirty`].
    dirty: BTreeSet<u32>,
}

impl Default for AddrFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl AddrFilter {
    /// An empty filter (every word dirty, so the first write clears stale pinned bits).
    pub fn new() -> Self {
        Self {
            refs: HashMap::new(),
            slots: HashMap::new(),
            words: vec![0; ADDR_FILTER_WORDS as usize],
            dirty: (0..ADDR_FILTER_WORDS).collect(),
        }
    }

    /// One more holder of `addr` (memory order).
    pub fn add(&mut self, addr: u32) {
        let n = self.refs.entry(addr).or_default();
        *n += 1;
        if *n > 1 {
            return;
        }
        let slot = addr_filter_slot(addr);
        let s = self.slots.entry(slot).or_default();
        *s += 1;
        if *s == 1 {
            self.words[slot.0 as usize] |= slot.1;
            self.dirty.insert(slot.0);
        }
    }

    /// One holder of `addr` fewer (a no-op for an address not held).
    pub fn remove(&mut self, addr: u32) {
        let Some(n) = self.refs.get_mut(&addr) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.refs.remove(&addr);
        let slot = addr_filter_slot(addr);
        if let Some(s) = self.slots.get_mut(&slot) {
            *s -= 1;
            if *s == 0 {
                self.slots.remove(&slot);
                self.words[slot.0 as usize] &= !slot.1;
                self.dirty.insert(slot.0);
            }
        }
    }

    /// Whether a packet with `addr` would take the full path.
    #[cfg(test)]
    pub fn matches(&self, addr: u32) -> bool {
        let (w, m) = addr_filter_slot(addr);
        self.words[w as usize] & m != 0
    }

    /// Whether `addr` itself is held.
    #[cfg(test)]
    pub fn holds(&self, addr: u32) -> bool {
        self.refs.contains_key(&addr)
    }

    /// The words changed since the last call, with their values.
    pub fn take_dirty(&mut self) -> Vec<(u32, u64)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|w| (w, self.words[w as usize]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    #[test]
    fn slot_is_in_range_and_one_bit() {
        for a in [0u32, 1, u32::MAX, ip([198, 18, 64, 0]), ip([10, 0, 0, 1])] {
            let (w, m) = addr_filter_slot(a);
            assert!(w < ADDR_FILTER_WORDS);
            assert_eq!(m.count_ones(), 1);
        }
    }

    #[test]
    fn held_addresses_match_until_their_last_holder_goes() {
        let mut f = AddrFilter::new();
        assert_eq!(f.take_dirty().len(), ADDR_FILTER_WORDS as usize);
        let vip = ip([198, 18, 64, 1]);
        assert!(!f.matches(vip));
        f.add(vip);
        f.add(vip);
        assert!(f.matches(vip) && f.holds(vip));
        let (w, m) = addr_filter_slot(vip);
        assert_eq!(f.take_dirty(), vec![(w, m)]);
        f.remove(vip);
        assert!(f.matches(vip));
        assert!(f.take_dirty().is_empty());
        f.remove(vip);
        assert!(!f.matches(vip) && !f.holds(vip));
        assert_eq!(f.take_dirty(), vec![(w, 0)]);
        // Removing what is not held changes nothing.
        f.remove(vip);
        assert!(f.take_dirty().is_empty());
    }

    #[test]
    fn a_shared_bit_stays_while_another_address_hashes_there() {
        let mut f = AddrFilter::new();
        let a = ip([198, 18, 64, 1]);
        let slot = addr_filter_slot(a);
        // Another address with the same bit (about one in 2^20 does).
        let b = (1u32..)
            .map(|i| a.wrapping_add(i))
            .find(|&b| addr_filter_slot(b) == slot)
            .expect("a colliding address");
        f.add(a);
        f.add(b);
        f.remove(a);
        assert!(f.matches(a) && f.matches(b) && !f.holds(a));
        f.remove(b);
        assert!(!f.matches(b));
    }

    #[test]
    fn thousands_of_vips_leave_most_other_addresses_out() {
        let mut f = AddrFilter::new();
        for i in 0..100_000u32 {
            f.add((u32::from_be_bytes([198, 18, 64, 0]) + i).to_be());
        }
        let others = (0..10_000u32)
            .filter(|i| f.matches((u32::from_be_bytes([10, 1, 0, 0]) + i).to_be()))
            .count();
        // 100 000 of 2^20 bits set: about one in ten; well under one in five.
        assert!(
            others < 2_000,
            "{others} of 10000 unrelated addresses matched"
        );
    }
}
