//! The VRRP advertisement on the wire (RFC 3768 §5 for version 2, RFC 5798 §5 for version
//! 3), in smoltcp's shape: [`Packet`] is a zero-copy view over bytes with checked accessors,
//! [`Repr`] is the plain value that parses from and emits to it. Also the small pieces the
//! I/O layer needs around it: the IPv4 header of a raw-socket datagram ([`Ipv4Header`]) and
//! the frames announcing a virtual address (gratuitous ARP, unsolicited neighbour
//! advertisement).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v2: |  Auth Type  |  Adver Int (s) |          Checksum             |
//! v3: |(rsvd)|  Max Adver Int (cs, 12 bits) |       Checksum         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 IPvX Address(es) (4 or 16 bytes each)         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v2 only: |            Authentication Data (8 bytes)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Checksums: version 2 sums the VRRP message alone (authentication data included);
//! version 3 prepends the IPv4 or IPv6 pseudo-header (source, destination, protocol 112,
//! VRRP length), with the destination the packet really is sent to (the multicast group,
//! or the unicast peer).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_common::csum::Sum;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group of VRRP (224.0.0.18).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP (ff02::12).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The IPv4 TTL / IPv6 hop limit every advertisement is sent with and must arrive with.
pub const TTL: u8 = 255;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 8;
/// Length of the version 2 authentication data.
pub const AUTH_LEN: usize = 8;
/// The only packet type: ADVERTISEMENT.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Largest version 3 advertisement interval (12 bits of centiseconds).
pub const MAX_ADVER_INT_V3: u16 = 0x0fff;

/// Address family of a VRRP instance (decides the address length in an advert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4: 4-byte addresses.
    V4,
    /// IPv6: 16-byte addresses (VRRP version 3 only).
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Length of one address of this family.
    pub fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// The VRRP multicast group of this family.
    pub fn multicast(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(MULTICAST_V4),
            Family::V6 => IpAddr::V6(MULTICAST_V6),
        }
    }
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Version {
    /// RFC 3768 (IPv4 only, interval in seconds, authentication field).
    V2,
    /// RFC 5798 (IPv4 and IPv6, interval in centiseconds, pseudo-header checksum).
    V3,
}

impl Version {
    /// The number in the version nibble.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl From<Version> for u8 {
    fn from(v: Version) -> u8 {
        v.number()
    }
}

impl TryFrom<u8> for Version {
    type Error = String;
    fn try_from(n: u8) -> Result<Version, String> {
        match n {
            2 => Ok(Version::V2),
            3 => Ok(Version::V3),
            other => Err(format!("VRRP version must be 2 or 3, not {other}")),
        }
    }
}

/// Version 2 authentication type values (RFC 3768 §5.3.6; 1 and 2 are from RFC 2338).
pub mod auth_type {
    /// No authentication.
    pub const NONE: u8 = 0;
    /// Simple text password (keepalived `auth_type PASS`).
    pub const PASS: u8 = 1;
    /// IPsec AH (keepalived `auth_type AH`); not supported by rvs.
    pub const AH: u8 = 2;
}

/// Why bytes are not a valid advertisement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the fixed header, or than the header's address count needs.
    #[error("VRRP packet too short: {len} bytes, need {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// More bytes than the header's address count explains.
    #[error("VRRP packet too long: {len} bytes, expected {expected}")]
    TooLong {
        /// Bytes present.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The version nibble is neither 2 nor 3, or version 2 over IPv6.
    #[error("unsupported VRRP version {0}")]
    Version(u8),
    /// The type nibble is not ADVERTISEMENT (1).
    #[error("VRRP packet type {0}, expected 1 (ADVERTISEMENT)")]
    Type(u8),
    /// The checksum does not verify.
    #[error("VRRP checksum 0x{got:04x} does not verify (computed 0x{expected:04x})")]
    Checksum {
        /// Checksum field of the packet.
        got: u16,
        /// What the field should hold.
        expected: u16,
    },
    /// An IPv4 header that cannot carry VRRP (short, bad IHL, total length, version).
    #[error("malformed IPv4 header: {0}")]
    Ipv4(&'static str),
}

/// The VRRP checksum of `message` (with its checksum field as it is): version 2 sums the
/// message alone; version 3 adds the pseudo-header of `src` → `dst`. A message whose
/// checksum field is right yields 0.
pub fn checksum(version: Version, src: IpAddr, dst: IpAddr, message: &[u8]) -> u16 {
    let mut sum = Sum::default();
    if version == Version::V3 {
        let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                sum.add(&s.octets());
                sum.add(&d.octets());
                sum.add(&[0, PROTOCOL]);
                sum.add(&(len as u16).to_be_bytes());
            }
            (s, d) => {
                sum.add(&ip_octets16(s));
                sum.add(&ip_octets16(d));
                sum.add(&len.to_be_bytes());
                sum.add(&[0, 0, 0, PROTOCOL]);
            }
        }
    }
    sum.add(message);
    sum.checksum_be()
}

/// An address as 16 bytes (IPv4-mapped for IPv4; only reached for a mixed pair).
fn ip_octets16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// A zero-copy view of a VRRP advertisement.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    family: Family,
}

mod field {
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    pub const AUTH_TYPE: usize = 4;
    pub const ADVER_INT_V2: usize = 5;
    pub const ADVER_INT_V3: std::ops::Range<usize> = 4..6;
    pub const CHECKSUM: std::ops::Range<usize> = 6..8;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length (accessors may then panic).
    pub fn new_unchecked(buffer: T, family: Family) -> Packet<T> {
        Packet { buffer, family }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    pub fn new_checked(buffer: T, family: Family) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer, family);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds exactly the advertisement its header describes (so
    /// that every accessor is in bounds): the fixed header, `count` addresses of the
    /// family and, for version 2, the authentication data. The version must be 2 or 3
    /// (2 only over IPv4), since the length depends on it.
    pub fn check_len(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated {
                len: data.len(),
                need: HEADER_LEN,
            });
        }
        let version = self.version_number();
        let auth = match (version, self.family) {
            (2, Family::V4) => AUTH_LEN,
            (3, _) => 0,
            (v, _) => return Err(WireError::Version(v)),
        };
        let expected = HEADER_LEN + usize::from(self.count()) * self.family.addr_len() + auth;
        if data.len() < expected {
            return Err(WireError::Truncated {
                len: data.len(),
                need: expected,
            });
        }
        if data.len() > expected {
            return Err(WireError::TooLong {
                len: data.len(),
                expected,
            });
        }
        Ok(())
    }

    /// The address family the view was made for.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The version nibble as a number.
    pub fn version_number(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// The version, if it is 2 or 3.
    pub fn version(&self) -> Option<Version> {
        Version::try_from(self.version_number()).ok()
    }

    /// The type nibble (1 = ADVERTISEMENT).
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    /// The virtual router id.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    /// The sender's priority (255 owner, 0 master resigning).
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    /// The number of addresses.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// Version 2: the authentication type.
    pub fn auth_type(&self) -> u8 {
        self.buffer.as_ref()[field::AUTH_TYPE]
    }

    /// The advertisement interval: seconds (version 2) or centiseconds (version 3, the
    /// 12 low bits; the 4 reserved bits are ignored as RFC 5798 says).
    pub fn adver_int(&self) -> u16 {
        let data = self.buffer.as_ref();
        if self.version_number() == 2 {
            u16::from(data[field::ADVER_INT_V2])
        } else {
            let r = field::ADVER_INT_V3;
            u16::from_be_bytes([data[r.start], data[r.start + 1]]) & MAX_ADVER_INT_V3
        }
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        let r = field::CHECKSUM;
        let data = self.buffer.as_ref();
        u16::from_be_bytes([data[r.start], data[r.start + 1]])
    }

    /// Address number `i` (0-based), if there is one.
    pub fn addr(&self, i: usize) -> Option<IpAddr> {
        if i >= usize::from(self.count()) {
            return None;
        }
        let len = self.family.addr_len();
        let at = HEADER_LEN + i * len;
        let bytes = self.buffer.as_ref().get(at..at + len)?;
        Some(match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        })
    }

    /// Version 2: the 8 bytes of authentication data (after the addresses).
    pub fn auth_data(&self) -> Option<[u8; AUTH_LEN]> {
        let at = HEADER_LEN + usize::from(self.count()) * self.family.addr_len();
        let bytes = self.buffer.as_ref().get(at..at + AUTH_LEN)?;
        <[u8; AUTH_LEN]>::try_from(bytes).ok()
    }

    /// Whether the checksum verifies for a packet sent from `src` to `dst`.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        match self.version() {
            Some(v) => checksum(v, src, dst, self.buffer.as_ref()) == 0,
            None => false,
        }
    }

    /// The bytes.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version and type.
    pub fn set_version_type(&mut self, version: Version, kind: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version.number() << 4) | (kind & 0x0f);
    }

    /// Sets the virtual router id.
    pub fn set_vrid(&mut self, vrid: u8) {
        self.buffer.as_mut()[field::VRID] = vrid;
    }

    /// Sets the priority.
    pub fn set_priority(&mut self, priority: u8) {
        self.buffer.as_mut()[field::PRIORITY] = priority;
    }

    /// Sets the address count.
    pub fn set_count(&mut self, count: u8) {
        self.buffer.as_mut()[field::COUNT] = count;
    }

    /// Sets bytes 4..6: version 2 auth type and seconds, or version 3 centiseconds with
    /// the reserved bits zero.
    pub fn set_auth_and_interval(&mut self, version: Version, auth_type: u8, adver_int: u16) {
        let data = self.buffer.as_mut();
        match version {
            Version::V2 => {
                data[field::AUTH_TYPE] = auth_type;
                data[field::ADVER_INT_V2] = u8::try_from(adver_int).unwrap_or(u8::MAX);
            }
            Version::V3 => {
                let bytes = (adver_int & MAX_ADVER_INT_V3).to_be_bytes();
                data[field::ADVER_INT_V3].copy_from_slice(&bytes);
            }
        }
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Writes address number `i` (its family must be the view's).
    pub fn set_addr(&mut self, i: usize, addr: IpAddr) {
        let len = self.family.addr_len();
        let at = HEADER_LEN + i * len;
        let dst = &mut self.buffer.as_mut()[at..at + len];
        match addr {
            IpAddr::V4(a) => dst.copy_from_slice(&a.octets()),
            IpAddr::V6(a) => dst.copy_from_slice(&a.octets()),
        }
    }

    /// Version 2: writes the authentication data after the addresses.
    pub fn set_auth_data(&mut self, data: &[u8; AUTH_LEN]) {
        let at = HEADER_LEN + usize::from(self.count()) * self.family.addr_len();
        self.buffer.as_mut()[at..at + AUTH_LEN].copy_from_slice(data);
    }

    /// Computes and writes the checksum for a packet sent from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let version = self.version().unwrap_or(Version::V3);
        let sum = checksum(version, src, dst, self.buffer.as_ref());
        self.set_checksum(sum);
    }
}

/// Version 2 authentication as carried in an advert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Type 0.
    None,
    /// Type 1, with the 8 bytes of the password (zero-padded, as keepalived).
    Pass([u8; AUTH_LEN]),
    /// Any other type value (2 = AH, which rvs does not implement).
    Other(u8),
}

impl Auth {
    /// A PASS authentication for `password` (only its first 8 bytes count, as keepalived).
    pub fn pass(password: &str) -> Auth {
        let mut data = [0u8; AUTH_LEN];
        for (d, s) in data.iter_mut().zip(password.bytes()) {
            *d = s;
        }
        Auth::Pass(data)
    }

    /// The auth type field value.
    pub fn type_value(&self) -> u8 {
        match self {
            Auth::None => auth_type::NONE,
            Auth::Pass(_) => auth_type::PASS,
            Auth::Other(t) => *t,
        }
    }
}

/// A parsed advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id (1..=255).
    pub vrid: u8,
    /// Sender's priority.
    pub priority: u8,
    /// Advertisement interval: seconds for version 2, centiseconds for version 3.
    pub adver_int: u16,
    /// Version 2 authentication ([`Auth::None`] for version 3).
    pub auth: Auth,
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
}

impl Repr {
    /// Parses an advertisement that was sent from `src` to `dst` (whose family decides
    /// the address length), verifying its length, type and checksum.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<Repr, WireError> {
        packet.check_len()?;
        let version = packet
            .version()
            .ok_or(WireError::Version(packet.version_number()))?;
        if packet.kind() != TYPE_ADVERTISEMENT {
            return Err(WireError::Type(packet.kind()));
        }
        if !packet.verify_checksum(src, dst) {
            let mut copy = packet.buffer.as_ref().to_vec();
            let mut view = Packet::new_unchecked(&mut copy[..], packet.family);
            view.fill_checksum(src, dst);
            return Err(WireError::Checksum {
                got: packet.checksum(),
                expected: view.checksum(),
            });
        }
        let addresses = (0..usize::from(packet.count()))
            .filter_map(|i| packet.addr(i))
            .collect();
        let auth = match version {
            Version::V3 => Auth::None,
            Version::V2 => match packet.auth_type() {
                auth_type::NONE => Auth::None,
                auth_type::PASS => Auth::Pass(packet.auth_data().unwrap_or_default()),
                other => Auth::Other(other),
            },
        };
        Ok(Repr {
            version,
            vrid: packet.vrid(),
            priority: packet.priority(),
            adver_int: packet.adver_int(),
            auth,
            addresses,
        })
    }

    /// The family of the addresses (IPv4 when there are none).
    pub fn family(&self) -> Family {
        self.addresses
            .first()
            .map_or(Family::V4, |a| Family::of(*a))
    }

    /// Length of the emitted advertisement for `family`.
    pub fn buffer_len(&self, family: Family) -> usize {
        let auth = if self.version == Version::V2 {
            AUTH_LEN
        } else {
            0
        };
        HEADER_LEN + self.addresses.len().min(255) * family.addr_len() + auth
    }

    /// Writes the advertisement into `packet` (of [`Repr::buffer_len`] bytes) with the
    /// checksum for `src` → `dst`. At most 255 addresses of `packet`'s family are written.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) {
        let family = packet.family();
        packet.set_version_type(self.version, TYPE_ADVERTISEMENT);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        let addrs: Vec<IpAddr> = self
            .addresses
            .iter()
            .copied()
            .filter(|a| Family::of(*a) == family)
            .take(255)
            .collect();
        packet.set_count(addrs.len() as u8);
        packet.set_auth_and_interval(self.version, self.auth.type_value(), self.adver_int);
        for (i, a) in addrs.iter().enumerate() {
            packet.set_addr(i, *a);
        }
        if self.version == Version::V2 {
            let data = match &self.auth {
                Auth::Pass(d) => *d,
                _ => [0; AUTH_LEN],
            };
            packet.set_auth_data(&data);
        }
        packet.fill_checksum(src, dst);
    }

    /// The advertisement as bytes, checksummed for `src` → `dst`.
    pub fn to_bytes(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let family = Family::of(src);
        let mut buf = vec![0u8; self.buffer_len(family)];
        let mut packet = Packet::new_unchecked(&mut buf[..], family);
        self.emit(&mut packet, src, dst);
        buf
    }
}

/// The fields of an IPv4 header that VRRP reception needs (a raw IPv4 socket hands the
/// header to the reader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Protocol number.
    pub protocol: u8,
    /// Header length in bytes.
    pub header_len: usize,
    /// Total length field.
    pub total_len: usize,
}

impl Ipv4Header {
    /// Parses the header at the start of `data` and checks that `data` holds exactly
    /// `total_len` bytes (a raw socket delivers one whole datagram).
    pub fn parse(data: &[u8]) -> Result<Ipv4Header, WireError> {
        if data.len() < 20 {
            return Err(WireError::Ipv4("shorter than 20 bytes"));
        }
        if data[0] >> 4 != 4 {
            return Err(WireError::Ipv4("version is not 4"));
        }
        let header_len = usize::from(data[0] & 0x0f) * 4;
        if header_len < 20 || header_len > data.len() {
            return Err(WireError::Ipv4("bad header length"));
        }
        let total_len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        if total_len != data.len() {
            return Err(WireError::Ipv4("total length differs from the datagram"));
        }
        Ok(Ipv4Header {
            src: Ipv4Addr::new(data[12], data[13], data[14], data[15]),
            dst: Ipv4Addr::new(data[16], data[17], data[18], data[19]),
            ttl: data[8],
            protocol: data[9],
            header_len,
            total_len,
        })
    }
}

/// The virtual MAC address of a VRID (RFC 5798 §7.3): 00:00:5E:00:01:VRID for IPv4 and
/// 00:00:5E:00:02:VRID for IPv6.
pub fn virtual_mac(family: Family, vrid: u8) -> [u8; 6] {
    let kind = match family {
        Family::V4 => 1,
        Family::V6 => 2,
    };
    [0x00, 0x00, 0x5e, 0x00, kind, vrid]
}

/// A gratuitous ARP request announcing that `ip` is at `mac` (Ethernet frame, 42 bytes):
/// broadcast, sender and target protocol address both `ip`, target hardware address
/// zero.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // target hardware address stays zero
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) for `target` at `mac`, from
/// `src` (the interface's link-local address) to all-nodes ff02::1, hop limit 255,
/// Override flag set, with the target link-layer address option (Ethernet frame, 86
/// bytes).
pub fn unsolicited_na(mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> [u8; 86] {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&32u16.to_be_bytes()); // payload length
    ip[6] = 58; // ICMPv6
    ip[7] = 255;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&all_nodes.octets());
    let icmp = &mut f[54..86];
    icmp[0] = 136; // neighbour advertisement
    icmp[4] = 0x20; // Override
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = 2; // target link-layer address option
    icmp[25] = 1; // 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let mut sum = Sum::default();
    sum.add(&src.octets());
    sum.add(&all_nodes.octets());
    sum.add(&32u32.to_be_bytes());
    sum.add(&[0, 0, 0, 58]);
    sum.add(icmp);
    let value = sum.checksum_be();
    icmp[2..4].copy_from_slice(&value.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    /// VRRPv2, VRID 51, priority 100, 1 address 198.18.0.100, auth PASS "secret",
    /// interval 1 s. The checksum (RFC 1071 over the 20 bytes, no pseudo-header) was
    /// computed with an independent implementation (Python `struct` + fold): 0x7707.
    const V2_PASS: [u8; 20] = [
        0x21, 0x33, 0x64, 0x01, // v2 advert, vrid 51, prio 100, 1 addr
        0x01, 0x01, 0x77, 0x07, // auth PASS, 1 s, checksum
        198, 18, 0, 100, // 198.18.0.100
        b's', b'e', b'c', b'r', b'e', b't', 0, 0, // password, zero-padded
    ];

    #[test]
    fn v2_pass_vector_parses() {
        let src = v4(198, 18, 0, 1);
        let dst = IpAddr::V4(MULTICAST_V4);
        let p = Packet::new_checked(&V2_PASS[..], Family::V4).unwrap();
        assert_eq!(p.checksum(), 0x7707);
        assert!(p.verify_checksum(src, dst));
        let r = Repr::parse(&p, src, dst).unwrap();
        assert_eq!(
            r,
            Repr {
                version: Version::V2,
                vrid: 51,
                priority: 100,
                adver_int: 1,
                auth: Auth::pass("secret"),
                addresses: vec![v4(198, 18, 0, 100)],
            }
        );
        // The v2 checksum ignores the IP addresses.
        assert!(p.verify_checksum(v4(198, 18, 9, 9), v4(198, 18, 9, 8)));
        assert_eq!(r.to_bytes(src, dst), V2_PASS);
    }

    /// VRRPv3 over IPv4, VRID 7, priority 200, interval 100 cs, two addresses; checksum
    /// over pseudo-header 198.18.0.1 -> 224.0.0.18, proto 112, length 16, then the
    /// message; computed independently (Python) as 0xd2fc.
    const V3_V4: [u8; 16] = [
        0x31, 0x07, 0xc8, 0x02, // v3 advert, vrid 7, prio 200, 2 addrs
        0x00, 0x64, 0xd2, 0xfc, // 100 cs, checksum
        198, 18, 0, 100, //
        198, 18, 0, 101,
    ];

    #[test]
    fn v3_ipv4_vector_parses_and_checksum_uses_pseudo_header() {
        let src = v4(198, 18, 0, 1);
        let dst = IpAddr::V4(MULTICAST_V4);
        let p = Packet::new_checked(&V3_V4[..], Family::V4).unwrap();
        assert!(p.verify_checksum(src, dst));
        // A different destination (unicast) gives another checksum.
        assert!(!p.verify_checksum(src, v4(198, 18, 0, 2)));
        let r = Repr::parse(&p, src, dst).unwrap();
        assert_eq!(r.version, Version::V3);
        assert_eq!(r.vrid, 7);
        assert_eq!(r.priority, 200);
        assert_eq!(r.adver_int, 100);
        assert_eq!(r.auth, Auth::None);
        assert_eq!(r.addresses, vec![v4(198, 18, 0, 100), v4(198, 18, 0, 101)]);
        assert_eq!(r.to_bytes(src, dst), V3_V4);
    }

    /// VRRPv3 over IPv6, VRID 9, priority 150, 10 cs, one address fd00::100, from
    /// fe80::1 to ff02::12 (pseudo-header: 32-bit length, next header 112); checksum
    /// computed independently (Python) as 0x3ccb.
    const V3_V6: [u8; 24] = [
        0x31, 0x09, 0x96, 0x01, //
        0x00, 0x0a, 0x3c, 0xcb, //
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
    ];

    #[test]
    fn v3_ipv6_vector_parses() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MULTICAST_V6);
        let p = Packet::new_checked(&V3_V6[..], Family::V6).unwrap();
        assert!(p.verify_checksum(src, dst));
        let r = Repr::parse(&p, src, dst).unwrap();
        assert_eq!(r.addresses, vec!["fd00::100".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.adver_int, 10);
        assert_eq!(r.to_bytes(src, dst), V3_V6);
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        let src = v4(198, 18, 0, 1);
        let dst = IpAddr::V4(MULTICAST_V4);
        // Every truncation of every vector.
        for full in [&V2_PASS[..], &V3_V4[..]] {
            for len in 0..full.len() {
                let p = Packet::new_unchecked(&full[..len], Family::V4);
                assert!(matches!(
                    Repr::parse(&p, src, dst),
                    Err(WireError::Truncated { .. })
                ));
                assert!(Packet::new_checked(&full[..len], Family::V4).is_err());
            }
        }
        // Trailing garbage.
        let mut long = V3_V4.to_vec();
        long.push(0);
        assert!(matches!(
            Packet::new_checked(&long[..], Family::V4),
            Err(WireError::TooLong { .. })
        ));
        // Bad checksum.
        let mut bad = V2_PASS;
        bad[7] ^= 1;
        let p = Packet::new_checked(&bad[..], Family::V4).unwrap();
        assert_eq!(
            Repr::parse(&p, src, dst),
            Err(WireError::Checksum {
                got: 0x7706,
                expected: 0x7707
            })
        );
        // Version 1 and 4, and version 2 over IPv6.
        for ver in [0x11u8, 0x41] {
            let mut b = V3_V4;
            b[0] = ver;
            let p = Packet::new_unchecked(&b[..], Family::V4);
            assert!(matches!(
                Repr::parse(&p, src, dst),
                Err(WireError::Version(_))
            ));
        }
        let mut b = V3_V6;
        b[0] = 0x21;
        assert_eq!(
            Packet::new_checked(&b[..], Family::V6).err(),
            Some(WireError::Version(2))
        );
        // Type 2.
        let mut b = V3_V4;
        b[0] = 0x32;
        let p = Packet::new_unchecked(&b[..], Family::V4);
        assert_eq!(Repr::parse(&p, src, dst), Err(WireError::Type(2)));
        // Every single byte value in every position never panics.
        for i in 0..V3_V4.len() {
            for v in 0..=255u8 {
                let mut b = V3_V4;
                b[i] = v;
                let p = Packet::new_unchecked(&b[..], Family::V4);
                let _ = Repr::parse(&p, src, dst);
            }
        }
    }

    #[test]
    fn v3_reserved_bits_are_ignored_and_emitted_zero() {
        let mut b = V3_V4;
        b[4] |= 0xf0;
        let p = Packet::new_unchecked(&b[..], Family::V4);
        assert_eq!(p.adver_int(), 100);
    }

    #[test]
    fn ipv4_header_parses_and_rejects() {
        let mut d = vec![
            0x45, 0xc0, 0, 40, 0, 0, 0, 0, 255, 112, 0, 0, 198, 18, 0, 1, 224, 0, 0, 18,
        ];
        d.extend_from_slice(&V2_PASS);
        let h = Ipv4Header::parse(&d).unwrap();
        assert_eq!(h.ttl, 255);
        assert_eq!(h.protocol, PROTOCOL);
        assert_eq!(h.src, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(h.dst, MULTICAST_V4);
        assert_eq!(h.header_len, 20);
        assert!(Ipv4Header::parse(&d[..19]).is_err());
        assert!(Ipv4Header::parse(&d[..39]).is_err());
        d[0] = 0x44;
        assert!(Ipv4Header::parse(&d).is_err());
    }

    #[test]
    fn garp_and_na_frames() {
        let mac = [0x02, 0, 0, 0, 0, 1];
        let f = gratuitous_arp(mac, Ipv4Addr::new(198, 18, 0, 100));
        assert_eq!(
            f.to_vec(),
            [
                &[0xffu8; 6][..],
                &mac,
                &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1],
                &mac,
                &[198, 18, 0, 100],
                &[0; 6],
                &[198, 18, 0, 100],
            ]
            .concat()
        );
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let target: Ipv6Addr = "fd00::100".parse().unwrap();
        let na = unsolicited_na(mac, src, target);
        assert_eq!(&na[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(na[14 + 7], 255);
        // The ICMPv6 checksum verifies: summing pseudo-header + message gives 0.
        let mut sum = Sum::default();
        sum.add(&src.octets());
        sum.add(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        sum.add(&32u32.to_be_bytes());
        sum.add(&[0, 0, 0, 58]);
        sum.add(&na[54..]);
        assert_eq!(sum.checksum_be(), 0);
        assert_eq!(virtual_mac(Family::V4, 51), [0, 0, 0x5e, 0, 1, 51]);
    }
}
