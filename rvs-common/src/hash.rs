//! Hash functions both the XDP program and userspace compute identically.
//!
//! IPVS's `mh` (Maglev) scheduler hashes with the kernel's `hsiphash`. On 64-bit kernels
//! (`BITS_PER_LONG == 64`, every x86_64 / arm64 kernel) `hsiphash` is **SipHash-1-3** with a
//! 128-bit key (`hsiphash_key_t` is two `unsigned long`s) whose 64-bit result is truncated to
//! `u32`; only 32-bit kernels run the real HalfSipHash-1-3. rvs implements the 64-bit variant
//! (lib/siphash.c, include/linux/siphash.h), checked against the kernel's own test vectors
//! (lib/test_siphash.c) and against kernel IPVS's choices (rvs-sched's golden tests).
//!
//! Everything here is `no_std`, allocation-free, panic-free and loop-free, so the verifier
//! accepts it in the XDP program.

/// The 128-bit key of the kernel's `hsiphash` on 64-bit kernels (`hsiphash_key_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HsiphashKey {
    /// `key[0]`.
    pub k0: u64,
    /// `key[1]`.
    pub k1: u64,
}

/// ip_vs_mh.c's first fixed key (`hash1`): source lookup and each server's permutation offset.
pub const IPVS_MH_KEY1: HsiphashKey = HsiphashKey {
    k0: 2_654_435_761,
    k1: 2_654_435_761,
};

/// ip_vs_mh.c's second fixed key (`hash2`): each server's permutation skip.
pub const IPVS_MH_KEY2: HsiphashKey = HsiphashKey {
    k0: 2_654_446_892,
    k1: 2_654_446_892,
};

/// SipHash state (v0..v3).
#[derive(Clone, Copy)]
struct Sip {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl Sip {
    /// The kernel's `PREAMBLE`: constants xor key.
    #[inline(always)]
    const fn new(key: &HsiphashKey) -> Sip {
        Sip {
            v0: 0x736f_6d65_7073_6575 ^ key.k0,
            v1: 0x646f_7261_6e64_6f6d ^ key.k1,
            v2: 0x6c79_6765_6e65_7261 ^ key.k0,
            v3: 0x7465_6462_7974_6573 ^ key.k1,
        }
    }

    /// One SipRound (`SIPROUND` / `SIPHASH_PERMUTATION`).
    #[inline(always)]
    const fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// Absorbs one full little-endian 64-bit word (1 compression round: the "1" of 1-3).
    #[inline(always)]
    const fn absorb(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.v0 ^= m;
    }

    /// The kernel's 64-bit `HPOSTAMBLE`: last block `b` (length << 56 | tail bytes), then
    /// 3 finalization rounds, truncated to u32.
    #[inline(always)]
    const fn finish(mut self, b: u64) -> u32 {
        self.absorb(b);
        self.v2 ^= 0xff;
        self.round();
        self.round();
        self.round();
        ((self.v0 ^ self.v1) ^ (self.v2 ^ self.v3)) as u32
    }
}

/// The kernel's `hsiphash_1u32(first, key)` on a 64-bit kernel; equal to `hsiphash()` over the
/// 4 bytes of `first` stored little-endian (what x86_64 stores for a host `u32`).
#[inline(always)]
pub const fn hsiphash_1u32(first: u32, key: &HsiphashKey) -> u32 {
    Sip::new(key).finish((4u64 << 56) | first as u64)
}

/// The kernel's `hsiphash_2u32(first, second, key)` on a 64-bit kernel (8 bytes, `first` in
/// the low half).
#[inline(always)]
pub const fn hsiphash_2u32(first: u32, second: u32, key: &HsiphashKey) -> u32 {
    let mut s = Sip::new(key);
    s.absorb(((second as u64) << 32) | first as u64);
    s.finish(8u64 << 56)
}

/// ip_vs_mh.c's `ip_vs_mh_hashkey` for IPv4 with offset 0: `hsiphash` of the host-order `u32`
/// `addr + port` (a wrapping sum, not a concatenation), both in host byte order.
///
/// rvs-sched calls it with a real server's address and port and [`IPVS_MH_KEY1`] (offset) or
/// [`IPVS_MH_KEY2`] (skip); [`ipvs_mh_source_hash`] calls it for a packet's source.
#[inline(always)]
pub const fn ipvs_mh_hashkey(addr: u32, port: u16, key: &HsiphashKey) -> u32 {
    hsiphash_1u32(addr.wrapping_add(port as u32), key)
}

/// The hash IPVS `mh` uses to index its lookup table for a packet (before `% table size`):
/// source address, plus source port only with the `mh-port` flag (the port counts as 0
/// otherwise), key [`IPVS_MH_KEY1`]. Inputs are as read from the packet (network byte order).
#[inline(always)]
pub const fn ipvs_mh_source_hash(src_be: u32, sport_be: u16, with_port: bool) -> u32 {
    let port = if with_port { u16::from_be(sport_be) } else { 0 };
    ipvs_mh_hashkey(u32::from_be(src_be), port, &IPVS_MH_KEY1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lib/test_siphash.c's key for the 64-bit hsiphash vectors.
    const TEST_KEY: HsiphashKey = HsiphashKey {
        k0: 0x0706_0504_0302_0100,
        k1: 0x0f0e_0d0c_0b0a_0908,
    };

    /// lib/test_siphash.c, `BITS_PER_LONG == 64`: hsiphash of bytes 0, 1, .., len-1, for
    /// len = 0..63.
    const VECTORS: [u32; 64] = [
        0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7,
        0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7,
        0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c, 0xb473e63e, 0x8d297d1c, 0xa6cce040,
        0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35,
        0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e,
        0xbf186b91, 0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944,
        0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46,
        0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0, 0x73f0bce6, 0x70a7e980,
        0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0,
        0xb7bbb3a8,
    ];

    /// The kernel's generic `__hsiphash_unaligned` (64-bit), over any length: test only.
    fn hsiphash_bytes(data: &[u8], key: &HsiphashKey) -> u32 {
        let mut s = Sip::new(key);
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            s.absorb(u64::from_le_bytes(w));
        }
        let mut b = (data.len() as u64) << 56;
        for (i, byte) in chunks.remainder().iter().enumerate() {
            b |= (*byte as u64) << (8 * i);
        }
        s.finish(b)
    }

    #[test]
    fn kernel_test_vectors_all_lengths() {
        let input: [u8; 64] = core::array::from_fn(|i| i as u8);
        for (len, want) in VECTORS.iter().enumerate() {
            assert_eq!(hsiphash_bytes(&input[..len], &TEST_KEY), *want, "len {len}");
        }
    }

    #[test]
    fn kernel_test_vectors_fixed_width() {
        // test_siphash.c: hsiphash_1u32(0x03020100) == vectors[4],
        // hsiphash_2u32(0x03020100, 0x07060504) == vectors[8].
        assert_eq!(hsiphash_1u32(0x0302_0100, &TEST_KEY), VECTORS[4]);
        assert_eq!(
            hsiphash_2u32(0x0302_0100, 0x0706_0504, &TEST_KEY),
            VECTORS[8]
        );
    }

    #[test]
    fn source_hash_byte_order_and_port_flag() {
        let src = u32::from_be_bytes([198, 18, 100, 10]);
        let sport: u16 = 40_000;
        // Without mh-port the port does not count.
        assert_eq!(
            ipvs_mh_source_hash(src.to_be(), sport.to_be(), false),
            hsiphash_1u32(src, &IPVS_MH_KEY1)
        );
        assert_eq!(
            ipvs_mh_source_hash(src.to_be(), 1234u16.to_be(), false),
            ipvs_mh_source_hash(src.to_be(), sport.to_be(), false)
        );
        // With it, IPVS hashes the host-order sum addr + port.
        assert_eq!(
            ipvs_mh_source_hash(src.to_be(), sport.to_be(), true),
            hsiphash_1u32(src + sport as u32, &IPVS_MH_KEY1)
        );
        // The sum wraps like the kernel's unsigned int.
        assert_eq!(
            ipvs_mh_hashkey(u32::MAX, 2, &IPVS_MH_KEY1),
            hsiphash_1u32(1, &IPVS_MH_KEY1)
        );
    }
}
