//! Internet checksum arithmetic (RFC 1071) and its incremental update (RFC 1624).
//!
//! Every function works on 16-bit words and 32-bit fields *as they sit in memory*
//! (`from_ne_bytes` of the packet bytes): the one's-complement sum is independent of byte
//! order as long as fields and the checksum are read the same way (RFC 1071 §2(B)), so the
//! XDP program never swaps bytes. The result is written back with `to_ne_bytes`.

/// Folds a 32/64-bit one's-complement accumulator to 16 bits (not inverted).
#[inline(always)]
pub const fn fold(mut sum: u64) -> u16 {
    // Four rounds are enough for any u64 (each halves the carry width); a fixed count keeps
    // the verifier's loop analysis trivial.
    sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum as u16
}

/// Adds the two 16-bit halves of a memory-order u32 to an accumulator.
#[inline(always)]
const fn add32(acc: u64, v: u32) -> u64 {
    acc + (v & 0xFFFF) as u64 + (v >> 16) as u64
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit field changed from `old` to `new`:
/// `HC' = ~(~HC + ~m + m')`.
#[inline(always)]
pub const fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check) as u64 + (!old) as u64 + new as u64;
    !fold(sum)
}

/// RFC 1624 eqn. 3 for a 32-bit field (an IPv4 address) changed from `old` to `new`.
#[inline(always)]
pub const fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let sum = add32(add32((!check) as u64, !old), new);
    !fold(sum)
}

/// The UDP checksum after an update: 0 means "no checksum" and stays 0; a computed 0 is
/// sent as 0xFFFF (RFC 768).
#[inline(always)]
pub const fn udp_fixup(before: u16, after: u16) -> u16 {
    if before == 0 {
        0
    } else if after == 0 {
        0xFFFF
    } else {
        after
    }
}

/// One's-complement sum of `bytes` (odd length padded with a zero byte), memory order.
pub fn sum_bytes(bytes: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_ne_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += u16::from_ne_bytes([*last, 0]) as u64;
    }
    acc
}

/// The Internet checksum of `bytes` (to be stored with `to_ne_bytes`).
pub fn checksum(bytes: &[u8]) -> u16 {
    !fold(sum_bytes(bytes))
}

/// A running Internet checksum over several byte runs (a pseudo-header, then the
/// message), an odd byte at the end of one run carried into the next, as if the runs
/// were one buffer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sum {
    acc: u64,
    odd: Option<u8>,
}

impl Sum {
    /// Adds the next run of bytes.
    pub fn add(&mut self, mut bytes: &[u8]) -> &mut Sum {
        if let (Some(first), Some((&second, rest))) = (self.odd, bytes.split_first()) {
            self.acc += u16::from_ne_bytes([first, second]) as u64;
            self.odd = None;
            bytes = rest;
        }
        let (even, last) = bytes.split_at(bytes.len() & !1);
        self.acc += sum_bytes(even);
        if let [b] = last {
            self.odd = Some(*b);
        }
        self
    }

    /// The checksum of everything added (memory order, like [`checksum`]).
    pub fn checksum(&self) -> u16 {
        let tail = match self.odd {
            Some(b) => u16::from_ne_bytes([b, 0]) as u64,
            None => 0,
        };
        !fold(self.acc + tail)
    }

    /// The checksum as the big-endian number a header field holds
    /// (`u16::from_be_bytes` of the two bytes to store).
    pub fn checksum_be(&self) -> u16 {
        u16::from_be_bytes(self.checksum().to_ne_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (from a tcpdump of a real SYN) with its checksum 0xb1e6 at bytes 10..12.
    const IPV4: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn full_checksum_of_a_known_header() {
        let mut h = IPV4;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h).to_ne_bytes(), [0xb8, 0x61]);
        // A header with its checksum in place sums to zero.
        assert_eq!(checksum(&IPV4), 0);
    }

    #[test]
    fn incremental_address_change_equals_recomputation() {
        let mut h = IPV4;
        let old = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
        let new_bytes = [198, 18, 1, 11];
        let new = u32::from_ne_bytes(new_bytes);
        let check = u16::from_ne_bytes([h[10], h[11]]);
        let updated = replace32(check, old, new);
        h[16..20].copy_from_slice(&new_bytes);
        h[10..12].copy_from_slice(&updated.to_ne_bytes());
        assert_eq!(checksum(&h), 0);
        let mut z = h;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(checksum(&z), updated);
    }

    #[test]
    fn incremental_port_change_and_rfc1624_corner() {
        // RFC 1624 §4's example: a field 0x5555 -> 0x3285 ... with HC = 0xDD2F gives 0x0000
        // by eqn. 3 (never the -0 of eqn. 2).
        assert_eq!(replace16(0xDD2F, 0x5555, 0x3285), 0x0000);
        let data = [0x12u8, 0x34, 0x00, 0x50, 0xab, 0xcd];
        let c = checksum(&data);
        let mut d2 = data;
        d2[2..4].copy_from_slice(&[0x1f, 0x90]);
        let inc = replace16(
            c,
            u16::from_ne_bytes([0x00, 0x50]),
            u16::from_ne_bytes([0x1f, 0x90]),
        );
        assert_eq!(inc, checksum(&d2));
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        assert_eq!(udp_fixup(0, 0x1234), 0);
        assert_eq!(udp_fixup(0x1111, 0), 0xFFFF);
        assert_eq!(udp_fixup(0x1111, 0x2222), 0x2222);
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(sum_bytes(&[0xff]), u16::from_ne_bytes([0xff, 0]) as u64);
    }

    #[test]
    fn runs_carry_odd_bytes_like_one_buffer() {
        let mut a = Sum::default();
        a.add(&[1, 2, 3]).add(&[4, 5]);
        let mut b = Sum::default();
        b.add(&[1, 2, 3, 4, 5]);
        assert_eq!(a.checksum(), b.checksum());
        assert_eq!(a.checksum(), checksum(&[1, 2, 3, 4, 5]));
    }

    #[test]
    fn big_endian_value_of_a_known_icmp_echo() {
        // An echo request (id 0x1234, seq 1, no data): checksum field 0xe5ca.
        let pkt = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(Sum::default().add(&pkt).checksum_be(), 0xe5ca);
    }
}
