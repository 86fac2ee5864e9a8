//! ICMP rules of IPVS as arithmetic: which errors are translated for NAT (`ip_vs_in_icmp`,
//! `ip_vs_out_icmp`), the checksum updates of `ip_vs_nat_icmp`, and the header of the
//! fragmentation-needed error the director sends (`icmp_send`).

use crate::csum;

/// ICMP destination unreachable (code 4: fragmentation needed).
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP source quench.
pub const ICMP_SOURCE_QUENCH: u8 = 4;
/// ICMP time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// Code of "fragmentation needed and DF set".
pub const ICMP_FRAG_NEEDED: u8 = 4;

/// Whether IPVS relates an ICMP message of `kind` to a connection: only these three error
/// types; echo and everything else is the host's.
pub const fn is_translated(kind: u8) -> bool {
    matches!(
        kind,
        ICMP_DEST_UNREACH | ICMP_SOURCE_QUENCH | ICMP_TIME_EXCEEDED
    )
}

/// New (ICMP checksum, quoted IPv4 header checksum) after `ip_vs_nat_icmp` changed one
/// quoted address `addr` and one quoted port `port` (memory order): the quoted header's
/// checksum follows its address; the ICMP checksum covers all three changed fields. The
/// quoted TCP/UDP checksum is left as it is (IPVS does not touch it).
pub const fn nat_icmp_checksums(
    icmp: u16,
    quoted_ip: u16,
    addr: (u32, u32),
    port: (u16, u16),
) -> (u16, u16) {
    let q = csum::replace32(quoted_ip, addr.0, addr.1);
    let c = csum::replace32(icmp, addr.0, addr.1);
    let c = csum::replace16(c, quoted_ip, q);
    let c = csum::replace16(c, port.0, port.1);
    (c, q)
}

/// The 8-byte ICMP header of a fragmentation-needed error with next-hop `mtu`, quoting a
/// valid IPv4 header (which sums to zero) and the 8 L4 bytes `l4`.
pub fn frag_needed_header(mtu: u16, l4: [u8; 8]) -> [u8; 8] {
    let m = mtu.to_be_bytes();
    let mut h = [ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, 0, 0, m[0], m[1]];
    let mut sum = u16::from_ne_bytes([h[0], h[1]]) as u64 + u16::from_ne_bytes([h[6], h[7]]) as u64;
    let mut i = 0;
    while i < 8 {
        sum += u16::from_ne_bytes([l4[i], l4[i + 1]]) as u64;
        i += 2;
    }
    let c = (!csum::fold(sum)).to_ne_bytes();
    h[2] = c[0];
    h[3] = c[1];
    h
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::csum::checksum;

    /// A port-unreachable from 198.18.2.11 quoting the UDP datagram 198.19.1.4:6000 →
    /// 198.18.2.11:5353 it received (IPv4 header + 8 bytes), as a real server sends it.
    fn error_from_rs() -> Vec<u8> {
        let mut quoted = std::vec![
            0x45, 0x00, 0x00, 0x21, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 198, 19, 1, 4,
            198, 18, 2, 11, 0x17, 0x70, 0x14, 0xe9, 0x00, 0x0d, 0x12, 0x34,
        ];
        let c = checksum(&quoted[..20]);
        quoted[10..12].copy_from_slice(&c.to_ne_bytes());
        let mut icmp = std::vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted);
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_ne_bytes());
        icmp
    }

    #[test]
    fn outbound_translation_keeps_both_checksums_valid() {
        let mut m = error_from_rs();
        let vip = u32::from_ne_bytes([198, 18, 0, 50]);
        let rs = u32::from_ne_bytes([m[24], m[25], m[26], m[27]]);
        let rport = u16::from_ne_bytes([m[30], m[31]]);
        let vport = 53u16.to_be();
        let (c, q) = nat_icmp_checksums(
            u16::from_ne_bytes([m[2], m[3]]),
            u16::from_ne_bytes([m[18], m[19]]),
            (rs, vip),
            (rport, vport),
        );
        m[24..28].copy_from_slice(&vip.to_ne_bytes());
        m[30..32].copy_from_slice(&vport.to_ne_bytes());
        m[2..4].copy_from_slice(&c.to_ne_bytes());
        m[18..20].copy_from_slice(&q.to_ne_bytes());
        assert_eq!(checksum(&m[8..28]), 0, "quoted IPv4 header");
        assert_eq!(checksum(&m), 0, "ICMP message");
        assert_eq!(&m[24..28], &[198, 18, 0, 50]);
        assert_eq!(&m[30..32], &[0, 53]);
    }

    #[test]
    fn frag_needed_checksum_covers_the_quote() {
        let l4 = [0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8];
        let ip = {
            let mut h = [
                0x45u8, 0, 0x03, 0xde, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 19, 1, 6, 198, 18, 0, 60,
            ];
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_ne_bytes());
            h
        };
        let h = frag_needed_header(980, l4);
        assert_eq!(&h[..2], &[3, 4]);
        assert_eq!(&h[6..8], &980u16.to_be_bytes());
        let msg = [&h[..], &ip[..], &l4[..]].concat();
        assert_eq!(checksum(&msg), 0);
    }

    #[test]
    fn only_errors_are_translated() {
        assert!(is_translated(3) && is_translated(4) && is_translated(11));
        assert!(!is_translated(0) && !is_translated(8) && !is_translated(5));
    }
}
