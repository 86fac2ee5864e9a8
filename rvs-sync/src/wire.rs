//! Sync messages on the wire, in smoltcp's shape: [`Header`] and [`ConnRecord`] are
//! zero-copy views over bytes with checked accessors, [`ConnRepr`] is the plain value that
//! parses from and emits to a record, [`MessageRepr`] is a whole received datagram and
//! [`Builder`] packs records into datagrams exactly as the kernel's master does.
//!
//! Version 1 (what `ip_vs_sync.c` sends unless `sync_version` is 0):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Reserved (0) |    SyncID     |            Size               |  header
//! |  Count Conns  |  Version (1)  |        Spare (0)              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Type       |    Protocol   | Ver.  |        Size           |  record
//! |                             Flags                             |
//! |            State              |         cport                 |
//! |            vport              |         dport                 |
//! |                             fwmark                            |
//! |                       timeout (seconds)                       |
//! |        caddr, vaddr, daddr (4 bytes each, 16 if Type bit 0)   |
//! |  options: type, length, data (sequence adjust, PE data/name)  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Records start on 4-byte boundaries: the kernel pads *before* a record that follows an
//! unaligned one (so the last record is never padded), and the header's Size counts that
//! padding. Version 0 (a 4-byte header: count, syncid, size; 24-byte records, no timeout
//! or fwmark) is decoded too. rvs adds one message kind (see [`EXT_VERSION`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ipvs::{CONN_F_BACKUP_MASK, CONN_F_HASHED, CONN_F_SEQ_MASK, CONN_F_TEMPLATE};

/// Protocol version in a version 1 header.
pub const VERSION_1: u8 = 1;
/// Length of the version 1 message header.
pub const HEADER_LEN: usize = 8;
/// Length of the version 0 message header.
pub const V0_HEADER_LEN: usize = 4;
/// Length of an IPv4 version 1 record without options (`struct ip_vs_sync_v4`).
pub const CONN_V4_LEN: usize = 36;
/// Length of an IPv6 version 1 record without options (`struct ip_vs_sync_v6`).
pub const CONN_V6_LEN: usize = 72;
/// Length of a version 0 record without options (`struct ip_vs_sync_conn_v0`).
pub const CONN_V0_LEN: usize = 24;
/// Length of the sequence-adjust data (`struct ip_vs_sync_conn_options`).
pub const SEQ_DATA_LEN: usize = 24;
/// Option type: sequence adjustment data.
pub const OPT_SEQ_DATA: u8 = 1;
/// Option type: persistence-engine data.
pub const OPT_PE_DATA: u8 = 2;
/// Option type: persistence-engine name.
pub const OPT_PE_NAME: u8 = 3;
/// Option type bit: the option may be skipped by a receiver that does not know it.
pub const OPT_F_PARAM: u8 = 1 << 6;
/// Longest PE data the kernel accepts (`IP_VS_PEDATA_MAXLEN`).
pub const PE_DATA_MAX: usize = 255;
/// Longest PE name the kernel accepts (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAX: usize = 16;
/// Record type bit: IPv6 addresses.
pub const TYPE_F_INET6: u8 = 1;
/// Most records one message can count (the header's count is one byte).
pub const MAX_CONNS_PER_MESSAGE: usize = 255;

/// rvs's extension: a header with Reserved 0 and this Version. The kernel takes any header
/// whose Version is not 1 for version 0 and reads its first byte (0 here) as the record
/// count, so it processes nothing: kernel IPVS ignores these messages. Payload: the magic
/// [`EXT_MAGIC`], one kind byte ([`ExtKind`]), three zero bytes.
pub const EXT_VERSION: u8 = 0x72;
/// Magic of rvs's extension payload.
pub const EXT_MAGIC: [u8; 4] = *b"RVS\0";
/// Length of an extension message.
pub const EXT_LEN: usize = HEADER_LEN + 8;

/// Why bytes are not a valid sync message or record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header.
    #[error("message shorter than its header")]
    TooShort,
    /// The header's Size is not the datagram's length (the kernel drops these).
    #[error("message size field {field} but {len} bytes received")]
    SizeMismatch {
        /// Size field.
        field: u16,
        /// Bytes received.
        len: usize,
    },
    /// A record runs past the end of the message.
    #[error("connection record runs past the message")]
    Truncated,
    /// A record's version nibble is not 0.
    #[error("connection record of unknown version {0}")]
    RecordVersion(u8),
    /// A record type other than IPv4 / IPv6.
    #[error("connection record of unknown type {0}")]
    RecordType(u8),
    /// Options malformed (zero or overlong length, repeated, wrong size).
    #[error("malformed connection option")]
    BadOption,
    /// An option the receiver does not know and may not skip.
    #[error("unknown mandatory option {0}")]
    UnknownOption(u8),
    /// A record that does not fit a message of the configured maximum length.
    #[error("record of {0} bytes does not fit a message")]
    RecordTooLong(usize),
    /// An unknown rvs extension message.
    #[error("unknown rvs extension message")]
    BadExtension,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A zero-copy view of a version 1 message header.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` without checking its length.
    pub fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wraps `buffer`, checking it holds a header.
    pub fn new_checked(buffer: T) -> Result<Header<T>, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::TooShort);
        }
        Ok(Header { buffer })
    }

    /// Reserved byte (0 in version 1; the record count in version 0).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Sync id.
    pub fn syncid(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Whole message length.
    pub fn size(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Number of records.
    pub fn nr_conns(&self) -> u8 {
        self.buffer.as_ref()[4]
    }
    /// Protocol version.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[5]
    }
    /// Spare (0).
    pub fn spare(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
    /// Whether the kernel takes this header for version 1 (else it reads version 0).
    pub fn is_v1(&self) -> bool {
        self.version() == VERSION_1 && self.reserved() == 0 && self.spare() == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Writes a version 1 header.
    pub fn fill(&mut self, syncid: u8, size: u16, nr_conns: u8, version: u8) {
        let b = self.buffer.as_mut();
        b[0] = 0;
        b[1] = syncid;
        b[2..4].copy_from_slice(&size.to_be_bytes());
        b[4] = nr_conns;
        b[5] = version;
        b[6] = 0;
        b[7] = 0;
    }
}

/// A zero-copy view of one version 1 connection record (IPv4 or IPv6), options included.
#[derive(Debug, Clone)]
pub struct ConnRecord<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ConnRecord<T> {
    /// Wraps `buffer` without checks.
    pub fn new_unchecked(buffer: T) -> ConnRecord<T> {
        ConnRecord { buffer }
    }

    /// Wraps `buffer`, checking its fixed part and that it is as long as the record says.
    pub fn new_checked(buffer: T) -> Result<ConnRecord<T>, WireError> {
        let r = ConnRecord { buffer };
        let b = r.buffer.as_ref();
        if b.len() < CONN_V4_LEN {
            return Err(WireError::Truncated);
        }
        if r.version() != 0 {
            return Err(WireError::RecordVersion(r.version()));
        }
        let fixed = match r.kind() {
            0 => CONN_V4_LEN,
            TYPE_F_INET6 => CONN_V6_LEN,
            t => return Err(WireError::RecordType(t)),
        };
        if r.size() < fixed || r.size() > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(r)
    }

    /// Type byte (bit 0: IPv6).
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// IP protocol.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Record version (the top 4 bits of ver_size; 0).
    pub fn version(&self) -> u8 {
        (be16(self.buffer.as_ref(), 2) >> 12) as u8
    }
    /// Record length, options included, padding excluded.
    pub fn size(&self) -> usize {
        (be16(self.buffer.as_ref(), 2) & 0x0fff) as usize
    }
    /// Connection flags (`IP_VS_CONN_F_*`).
    pub fn flags(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
    /// Protocol state.
    pub fn state(&self) -> u16 {
        be16(self.buffer.as_ref(), 8)
    }
    /// Client port.
    pub fn cport(&self) -> u16 {
        be16(self.buffer.as_ref(), 10)
    }
    /// Virtual port.
    pub fn vport(&self) -> u16 {
        be16(self.buffer.as_ref(), 12)
    }
    /// Destination (real server) port.
    pub fn dport(&self) -> u16 {
        be16(self.buffer.as_ref(), 14)
    }
    /// Firewall mark.
    pub fn fwmark(&self) -> u32 {
        be32(self.buffer.as_ref(), 16)
    }
    /// Timeout, seconds (the state's full timeout, not the time left).
    pub fn timeout(&self) -> u32 {
        be32(self.buffer.as_ref(), 20)
    }
    fn fixed_len(&self) -> usize {
        if self.kind() & TYPE_F_INET6 != 0 {
            CONN_V6_LEN
        } else {
            CONN_V4_LEN
        }
    }
    fn addr(&self, n: usize) -> IpAddr {
        let b = self.buffer.as_ref();
        if self.kind() & TYPE_F_INET6 != 0 {
            let at = 24 + 16 * n;
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::from(be32(b, 24 + 4 * n)))
        }
    }
    /// Client address.
    pub fn caddr(&self) -> IpAddr {
        self.addr(0)
    }
    /// Virtual address.
    pub fn vaddr(&self) -> IpAddr {
        self.addr(1)
    }
    /// Destination (real server) address.
    pub fn daddr(&self) -> IpAddr {
        self.addr(2)
    }
    /// The options area (after the addresses, up to the record's size).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[self.fixed_len()..self.size()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ConnRecord<T> {
    fn put16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    fn put32(&mut self, at: usize, v: u32) {
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// One direction's TCP sequence adjustment (`struct ip_vs_seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seq {
    /// Add delta from this sequence number on.
    pub init_seq: u32,
    /// Delta in the sequence numbers.
    pub delta: i32,
    /// Delta before the last change.
    pub previous_delta: i32,
}

/// Sequence adjustment of both directions (the SEQ_DATA option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqOptions {
    /// Client → server.
    pub in_seq: Seq,
    /// Server → client.
    pub out_seq: Seq,
}

/// One connection (or persistence template) as a sync record says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRepr<'a> {
    /// IP protocol.
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` flags, as sent (HASHED never is).
    pub flags: u32,
    /// IPVS protocol state (or template state).
    pub state: u16,
    /// Client address (a template's: the client under the persistence netmask).
    pub caddr: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
    /// Firewall mark.
    pub fwmark: u32,
    /// Timeout, seconds (0 in version 0: the receiver uses its own for the state).
    pub timeout: u32,
    /// Sequence adjustment, when the flags say there is one.
    pub seq: Option<SeqOptions>,
    /// Persistence-engine data (e.g. a SIP Call-ID).
    pub pe_data: Option<&'a [u8]>,
    /// Persistence-engine name.
    pub pe_name: Option<&'a [u8]>,
}

fn parse_seq(b: &[u8]) -> Seq {
    Seq {
        init_seq: be32(b, 0),
        delta: be32(b, 4) as i32,
        previous_delta: be32(b, 8) as i32,
    }
}

fn emit_seq(s: &Seq, b: &mut [u8]) {
    b[0..4].copy_from_slice(&s.init_seq.to_be_bytes());
    b[4..8].copy_from_slice(&s.delta.to_be_bytes());
    b[8..12].copy_from_slice(&s.previous_delta.to_be_bytes());
}

impl<'a> ConnRepr<'a> {
    /// Parses a version 1 record with the kernel's checks on its options
    /// (`ip_vs_proc_sync_conn`).
    pub fn parse(record: &ConnRecord<&'a [u8]>) -> Result<ConnRepr<'a>, WireError> {
        let mut repr = ConnRepr {
            protocol: record.protocol(),
            flags: record.flags(),
            state: record.state(),
            caddr: record.caddr(),
            cport: record.cport(),
            vaddr: record.vaddr(),
            vport: record.vport(),
            daddr: record.daddr(),
            dport: record.dport(),
            fwmark: record.fwmark(),
            timeout: record.timeout(),
            seq: None,
            pe_data: None,
            pe_name: None,
        };
        let fixed = record.fixed_len();
        let opts: &'a [u8] = &record.buffer[fixed..record.size()];
        let mut p = 0;
        while p < opts.len() {
            if p + 2 > opts.len() {
                return Err(WireError::BadOption);
            }
            let (ptype, plen) = (opts[p], opts[p + 1] as usize);
            p += 2;
            if plen == 0 || p + plen > opts.len() {
                return Err(WireError::BadOption);
            }
            let data = &opts[p..p + plen];
            match ptype & !OPT_F_PARAM {
                OPT_SEQ_DATA => {
                    if plen != SEQ_DATA_LEN || repr.seq.is_some() {
                        return Err(WireError::BadOption);
                    }
                    repr.seq = Some(SeqOptions {
                        in_seq: parse_seq(&data[..12]),
                        out_seq: parse_seq(&data[12..]),
                    });
                }
                OPT_PE_DATA => {
                    if plen > PE_DATA_MAX || repr.pe_data.is_some() {
                        return Err(WireError::BadOption);
                    }
                    repr.pe_data = Some(data);
                }
                OPT_PE_NAME => {
                    if plen > PE_NAME_MAX || repr.pe_name.is_some() {
                        return Err(WireError::BadOption);
                    }
                    repr.pe_name = Some(data);
                }
                other if ptype & OPT_F_PARAM == 0 => {
                    return Err(WireError::UnknownOption(other));
                }
                _ => {}
            }
            p += plen;
        }
        Ok(repr)
    }

    /// Whether this is a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags & CONN_F_TEMPLATE != 0
    }

    /// Length of the record this emits (the kernel's `len`, padding excluded).
    pub fn buffer_len(&self) -> usize {
        let mut len = match self.caddr {
            IpAddr::V4(_) => CONN_V4_LEN,
            IpAddr::V6(_) => CONN_V6_LEN,
        };
        if self.seq.is_some() {
            len += SEQ_DATA_LEN + 2;
        }
        if let Some(d) = self.pe_data {
            len += d.len() + 2;
            if let Some(n) = self.pe_name {
                len += n.len() + 2;
            }
        }
        len
    }

    /// Writes the record as the kernel's `ip_vs_sync_conn` does; `buf` must be
    /// [`buffer_len`](Self::buffer_len) bytes. Addresses of mixed families are written in
    /// the client address's family.
    pub fn emit(&self, record: &mut ConnRecord<&mut [u8]>) {
        let v6 = self.caddr.is_ipv6();
        let len = self.buffer_len();
        record.buffer[0] = if v6 { TYPE_F_INET6 } else { 0 };
        record.buffer[1] = self.protocol;
        record.put16(2, (len & 0x0fff) as u16);
        record.put32(4, self.flags & !CONN_F_HASHED);
        record.put16(8, self.state);
        record.put16(10, self.cport);
        record.put16(12, self.vport);
        record.put16(14, self.dport);
        record.put32(16, self.fwmark);
        record.put32(20, self.timeout);
        let mut p = 24;
        for a in [self.caddr, self.vaddr, self.daddr] {
            match (v6, a) {
                (false, IpAddr::V4(a)) => {
                    record.buffer[p..p + 4].copy_from_slice(&a.octets());
                    p += 4;
                }
                (false, IpAddr::V6(_)) => p += 4,
                (true, IpAddr::V6(a)) => {
                    record.buffer[p..p + 16].copy_from_slice(&a.octets());
                    p += 16;
                }
                (true, IpAddr::V4(a)) => {
                    record.buffer[p..p + 16].copy_from_slice(&a.to_ipv6_mapped().octets());
                    p += 16;
                }
            }
        }
        if let Some(seq) = &self.seq {
            record.buffer[p] = OPT_SEQ_DATA;
            record.buffer[p + 1] = SEQ_DATA_LEN as u8;
            emit_seq(&seq.in_seq, &mut record.buffer[p + 2..p + 14]);
            emit_seq(&seq.out_seq, &mut record.buffer[p + 14..p + 26]);
            p += SEQ_DATA_LEN + 2;
        }
        if let Some(d) = self.pe_data {
            record.buffer[p] = OPT_PE_DATA;
            record.buffer[p + 1] = d.len() as u8;
            record.buffer[p + 2..p + 2 + d.len()].copy_from_slice(d);
            p += d.len() + 2;
            if let Some(n) = self.pe_name {
                record.buffer[p] = OPT_PE_NAME;
                record.buffer[p + 1] = n.len() as u8;
                record.buffer[p + 2..p + 2 + n.len()].copy_from_slice(n);
            }
        }
    }

    /// Parses a version 0 record (`ip_vs_process_message_v0`); returns it and its length.
    fn parse_v0(b: &'a [u8]) -> Result<(ConnRepr<'a>, usize), WireError> {
        if b.len() < CONN_V0_LEN {
            return Err(WireError::Truncated);
        }
        let flags = u32::from(be16(b, 20)) & !CONN_F_HASHED;
        let v4 = |at| IpAddr::V4(Ipv4Addr::from(be32(b, at)));
        let mut repr = ConnRepr {
            protocol: b[1],
            flags,
            state: be16(b, 22),
            caddr: v4(8),
            cport: be16(b, 2),
            vaddr: v4(12),
            vport: be16(b, 4),
            daddr: v4(16),
            dport: be16(b, 6),
            fwmark: 0,
            timeout: 0,
            seq: None,
            pe_data: None,
            pe_name: None,
        };
        let mut len = CONN_V0_LEN;
        if flags & CONN_F_SEQ_MASK != 0 {
            if b.len() < CONN_V0_LEN + SEQ_DATA_LEN {
                return Err(WireError::Truncated);
            }
            // Version 0 copies struct ip_vs_seq in the sender's byte order; the fields are
            // __u32 in host order, which is little-endian on every director in practice.
            let le = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let seq = |at: usize| Seq {
                init_seq: le(at),
                delta: le(at + 4) as i32,
                previous_delta: le(at + 8) as i32,
            };
            repr.seq = Some(SeqOptions {
                in_seq: seq(CONN_V0_LEN),
                out_seq: seq(CONN_V0_LEN + 12),
            });
            len += SEQ_DATA_LEN;
        }
        Ok((repr, len))
    }

    /// The flags a receiver keeps (`IP_VS_CONN_F_BACKUP_MASK`).
    pub fn backup_flags(&self) -> u32 {
        self.flags & CONN_F_BACKUP_MASK
    }
}

/// rvs extension message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtKind {
    /// A BACKUP that just started asks the MASTER for its whole table.
    TableRequest = 1,
}

/// What a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Version 1 records.
    V1,
    /// Version 0 records.
    V0,
    /// An rvs extension message.
    Ext(ExtKind),
}

/// A received datagram, decoded as the kernel's backup decodes it
/// (`ip_vs_process_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRepr<'a> {
    /// Sync id of the sender.
    pub syncid: u8,
    /// Version / kind.
    pub kind: Kind,
    /// The records, in order, up to the first malformed one.
    pub conns: Vec<ConnRepr<'a>>,
    /// Why decoding stopped before the count was reached (the kernel drops the rest of
    /// a message at a malformed record, keeping the ones before it).
    pub stopped: Option<WireError>,
}

impl<'a> MessageRepr<'a> {
    /// Decodes a datagram. Whole-message errors (too short, size field not the datagram's
    /// length) are `Err`, as the kernel drops those messages entirely.
    pub fn parse(bytes: &'a [u8]) -> Result<MessageRepr<'a>, WireError> {
        if bytes.len() < V0_HEADER_LEN {
            return Err(WireError::TooShort);
        }
        let size = be16(bytes, 2);
        if usize::from(size) != bytes.len() {
            return Err(WireError::SizeMismatch {
                field: size,
                len: bytes.len(),
            });
        }
        let syncid = bytes[1];
        if bytes.len() >= HEADER_LEN {
            let h = Header::new_unchecked(bytes);
            if h.is_v1() {
                let mut out = MessageRepr {
                    syncid,
                    kind: Kind::V1,
                    conns: Vec::with_capacity(h.nr_conns().into()),
                    stopped: None,
                };
                let mut at = HEADER_LEN;
                for _ in 0..h.nr_conns() {
                    match Self::record_at(bytes, at) {
                        Ok((c, size)) => {
                            out.conns.push(c);
                            at += (size + 3) & !3;
                        }
                        Err(e) => {
                            out.stopped = Some(e);
                            break;
                        }
                    }
                }
                return Ok(out);
            }
            if h.reserved() == 0 && h.version() == EXT_VERSION && h.spare() == 0 {
                if bytes.len() != EXT_LEN || bytes[8..12] != EXT_MAGIC {
                    return Err(WireError::BadExtension);
                }
                let kind = match bytes[12] {
                    1 => ExtKind::TableRequest,
                    _ => return Err(WireError::BadExtension),
                };
                return Ok(MessageRepr {
                    syncid,
                    kind: Kind::Ext(kind),
                    conns: Vec::new(),
                    stopped: None,
                });
            }
        }
        let count = bytes[0];
        let mut out = MessageRepr {
            syncid,
            kind: Kind::V0,
            conns: Vec::with_capacity(count.into()),
            stopped: None,
        };
        let mut at = V0_HEADER_LEN;
        for _ in 0..count {
            match ConnRepr::parse_v0(&bytes[at..]) {
                Ok((c, len)) => {
                    out.conns.push(c);
                    at += len;
                }
                Err(e) => {
                    out.stopped = Some(e);
                    break;
                }
            }
        }
        Ok(out)
    }

    fn record_at(bytes: &'a [u8], at: usize) -> Result<(ConnRepr<'a>, usize), WireError> {
        if at + CONN_V4_LEN > bytes.len() {
            return Err(WireError::Truncated);
        }
        let rest = &bytes[at..];
        let size = (be16(rest, 2) & 0x0fff) as usize;
        if size > rest.len() {
            return Err(WireError::Truncated);
        }
        let record = ConnRecord::new_checked(&rest[..size])?;
        Ok((ConnRepr::parse(&record)?, size))
    }
}

/// Builds rvs's extension message of kind `kind`.
pub fn ext_message(syncid: u8, kind: ExtKind) -> [u8; EXT_LEN] {
    let mut b = [0u8; EXT_LEN];
    Header::new_unchecked(&mut b[..]).fill(syncid, EXT_LEN as u16, 0, EXT_VERSION);
    b[8..12].copy_from_slice(&EXT_MAGIC);
    b[12] = kind as u8;
    b
}

/// Packs records into version 1 messages of at most `maxlen` bytes, as the kernel's
/// master fills its sync buffers: a record goes into the current message if it fits with
/// the padding that aligns it, else the message is finished and a new one started (a
/// record longer than `maxlen` gets a message of its own, as the kernel allocates
/// `max(len + header, maxlen)`). The count never passes 255.
#[derive(Debug, Clone)]
pub struct Builder {
    syncid: u8,
    maxlen: usize,
    buf: Vec<u8>,
    count: u8,
}

impl Builder {
    /// A builder for sync id `syncid` and messages of at most `maxlen` bytes.
    pub fn new(syncid: u8, maxlen: u16) -> Builder {
        Builder {
            syncid,
            maxlen: usize::from(maxlen).max(HEADER_LEN),
            buf: Vec::with_capacity(maxlen.into()),
            count: 0,
        }
    }

    /// Adds one record; returns the finished message when this record did not fit in it.
    pub fn push(&mut self, conn: &ConnRepr<'_>) -> Result<Option<Vec<u8>>, WireError> {
        let len = conn.buffer_len();
        if len > 0x0fff || len + HEADER_LEN > usize::from(u16::MAX) {
            return Err(WireError::RecordTooLong(len));
        }
        let mut done = None;
        if self.count > 0 {
            let pad = self.buf.len().wrapping_neg() & 3;
            if self.buf.len() + pad + len > self.maxlen
                || usize::from(self.count) == MAX_CONNS_PER_MESSAGE
            {
                done = self.finish();
            }
        }
        if self.count == 0 {
            self.buf.clear();
            self.buf.resize(HEADER_LEN, 0);
        }
        let pad = self.buf.len().wrapping_neg() & 3;
        self.buf.resize(self.buf.len() + pad, 0);
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        conn.emit(&mut ConnRecord::new_unchecked(&mut self.buf[start..]));
        self.count += 1;
        Ok(done)
    }

    /// Finishes the current message, if it has any record.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let size = self.buf.len() as u16;
        let (syncid, count) = (self.syncid, self.count);
        Header::new_unchecked(&mut self.buf[..]).fill(syncid, size, count, VERSION_1);
        self.count = 0;
        let cap = self.maxlen;
        Some(std::mem::replace(&mut self.buf, Vec::with_capacity(cap)))
    }

    /// Whether a message is being filled.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Encodes records as a version 0 message (for tests and for directors that only speak
/// version 0); `None` when they do not fit in `maxlen` or are not IPv4.
pub fn v0_message(syncid: u8, conns: &[ConnRepr<'_>], maxlen: usize) -> Option<Vec<u8>> {
    let mut b = vec![0u8; V0_HEADER_LEN];
    if conns.len() > MAX_CONNS_PER_MESSAGE {
        return None;
    }
    for c in conns {
        let (IpAddr::V4(ca), IpAddr::V4(va), IpAddr::V4(da)) = (c.caddr, c.vaddr, c.daddr) else {
            return None;
        };
        let mut r = [0u8; CONN_V0_LEN];
        r[1] = c.protocol;
        r[2..4].copy_from_slice(&c.cport.to_be_bytes());
        r[4..6].copy_from_slice(&c.vport.to_be_bytes());
        r[6..8].copy_from_slice(&c.dport.to_be_bytes());
        r[8..12].copy_from_slice(&ca.octets());
        r[12..16].copy_from_slice(&va.octets());
        r[16..20].copy_from_slice(&da.octets());
        let flags = (c.flags & !CONN_F_HASHED & !CONN_F_SEQ_MASK) as u16;
        r[20..22].copy_from_slice(&flags.to_be_bytes());
        r[22..24].copy_from_slice(&c.state.to_be_bytes());
        b.extend_from_slice(&r);
    }
    if b.len() > maxlen {
        return None;
    }
    b[0] = conns.len() as u8;
    b[1] = syncid;
    let size = b.len() as u16;
    b[2..4].copy_from_slice(&size.to_be_bytes());
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn rec(seq: bool) -> ConnRepr<'static> {
        let v4 = |d| IpAddr::V4(Ipv4Addr::new(198, 18, 0, d));
        ConnRepr {
            protocol: 6,
            flags: if seq { 0x0600 } else { 0 },
            state: 1,
            caddr: v4(1),
            cport: 1000,
            vaddr: v4(2),
            vport: 21,
            daddr: v4(3),
            dport: 21,
            fwmark: 7,
            timeout: 900,
            seq: seq.then_some(SeqOptions {
                in_seq: Seq {
                    init_seq: 1,
                    delta: 2,
                    previous_delta: -3,
                },
                out_seq: Seq {
                    init_seq: 4,
                    delta: -5,
                    previous_delta: 6,
                },
            }),
            pe_data: None,
            pe_name: None,
        }
    }

    #[test]
    fn records_after_an_unaligned_one_are_padded_as_the_kernel_pads() {
        let mut b = Builder::new(1, 1472);
        b.push(&rec(true)).unwrap();
        b.push(&rec(false)).unwrap();
        let m = b.finish().unwrap();
        // 8 header + 62 (36 + 2 + 24) + 2 padding + 36; the last record is not padded.
        assert_eq!(m.len(), 8 + 62 + 2 + 36);
        assert_eq!(&m[8 + 62..8 + 64], &[0, 0]);
        assert_eq!(
            u16::from_be_bytes([m[10], m[11]]),
            62,
            "ver_size counts no padding"
        );
        assert_eq!(m[8 + 36], OPT_SEQ_DATA);
        assert_eq!(m[8 + 37], 24);
        let back = MessageRepr::parse(&m).unwrap();
        assert_eq!(back.conns, vec![rec(true), rec(false)]);
    }

    #[test]
    fn malformed_records_stop_decoding_as_in_the_kernel() {
        let mut b = Builder::new(1, 1472);
        b.push(&rec(false)).unwrap();
        b.push(&rec(false)).unwrap();
        let mut m = b.finish().unwrap();
        // Second record: a record version nibble the kernel refuses.
        m[8 + 36 + 2] |= 0x10;
        let r = MessageRepr::parse(&m).unwrap();
        assert_eq!(r.conns.len(), 1);
        assert_eq!(r.stopped, Some(WireError::RecordVersion(1)));
        // An unknown optional option (F_PARAM set) is skipped, a mandatory one is not.
        let mut one = rec(false);
        one.flags = 0;
        let mut b = Builder::new(1, 1472);
        b.push(&one).unwrap();
        let mut m = b.finish().unwrap();
        m.extend_from_slice(&[OPT_F_PARAM | 9, 2, 0xaa, 0xbb]);
        m[8 + 3] += 4;
        let size = m.len() as u16;
        m[2..4].copy_from_slice(&size.to_be_bytes());
        assert!(MessageRepr::parse(&m).unwrap().stopped.is_none());
        m[8 + 36] = 9;
        assert_eq!(
            MessageRepr::parse(&m).unwrap().stopped,
            Some(WireError::UnknownOption(9))
        );
    }

    #[test]
    fn a_record_longer_than_maxlen_gets_its_own_message() {
        let mut b = Builder::new(1, 40);
        assert_eq!(b.push(&rec(false)).unwrap(), None);
        let first = b.push(&rec(false)).unwrap().expect("first finished");
        assert_eq!(first.len(), 44);
        assert_eq!(b.finish().unwrap().len(), 44);
    }
}
