//! Types and pure logic shared by the rvs XDP programs and userspace.
//!
//! Every BPF map key and value is defined here exactly once, `#[repr(C)]` with explicit
//! padding, so both sides agree on the layout byte for byte. Addresses and ports are kept in
//! network byte order, as they appear in packets, so the fast path never swaps bytes.
#![cfg_attr(not(test), no_std)]

pub mod commit;
pub mod csum;
pub mod events;
pub mod hash;
pub mod icmp;
pub mod midflow;
pub mod sched;
pub mod tcp;
pub mod tunnel;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Default capacity of the service map.
pub const DEFAULT_MAX_SERVICES: u32 = 65_536;
/// Default capacity of the real-server array (and its counters).
pub const DEFAULT_MAX_REALS: u32 = 262_144;
/// Default capacity of the connection table (LRU).
pub const DEFAULT_MAX_CONNS: u32 = 1_048_576;
/// Default capacity of the persistence-template table (LRU).
pub const DEFAULT_MAX_PERSIST: u32 = 262_144;
/// Default capacity of the dispatch-slot array shared by all services' scheduler tables.
pub const DEFAULT_DISPATCH_SLOTS: u32 = 4_194_304;

/// Marks a dispatch slot that has no real server (e.g. an empty Maglev table).
pub const NO_REAL: u32 = u32::MAX;

/// Key of the service map: (protocol, VIP, port); port 0 means "every port of the VIP".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServiceKey {
    /// Virtual IPv4 address, network byte order.
    pub vip: u32,
    /// Virtual port, network byte order; 0 for a port-0 (all ports) service.
    pub port: u16,
    /// IP protocol number (TCP or UDP).
    pub proto: u8,
    /// Explicit padding, always zero.
    pub pad: u8,
}

/// How a service picks the real server of a new connection, as the XDP program sees it.
///
/// rr and wrr are both a precomputed ring walked by an atomic cursor (the ring holds IPVS's
/// exact order); mh is a Maglev lookup table indexed by a hash of the source.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchKind {
    /// Walk the ring with the service's shared cursor (rr, wrr).
    Ring = 0,
    /// Index the table by IPVS's mh hash of the source address.
    MaglevSource = 1,
    /// Index the table by IPVS's mh hash of the source address and port (mh-port flag).
    MaglevSourcePort = 2,
    /// IPVS lc: walk the service's server list (newest first), least overhead wins.
    Lc = 3,
    /// IPVS wlc: least overhead / weight.
    Wlc = 4,
    /// IPVS sed: least (active + 1) / weight.
    Sed = 5,
    /// IPVS nq: the first idle server, else as sed.
    Nq = 6,
    /// IPVS sh: 256 buckets by `hash_32` of the source (and its port with sh-port, service
    /// `sched_flags` bit 1), rehashed past unusable servers with sh-fallback (bit 0).
    Sh = 7,
    /// IPVS dh: 256 buckets by `hash_32` of the destination.
    Dh = 8,
}

/// Buckets of the sh and dh tables (IPVS's CONFIG_IP_VS_SH_TAB_BITS / DH_TAB_BITS = 8).
pub const HASH_BUCKETS: u32 = 256;

/// The kernel's `hash_32(val, 8)`: multiply by GOLDEN_RATIO_32, keep the top 8 bits.
#[inline(always)]
pub fn hash_32_8(val: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> 24
}

/// The most servers a walking scheduler (lc, wlc, sed, nq) scans per new connection: the
/// `bpf_loop` count the program passes, checked by validation (a service with more is
/// refused by the planner, naming the scheduler and the limit).
pub const MAX_WALK: u32 = 256;

/// Service flag: schedule TCP packets that are not SYNs when no connection exists (IPVS's
/// `sloppy_tcp`); off by default as in IPVS.
pub const SVC_F_SLOPPY_TCP: u8 = 1 << 0;
/// Service flag: one-packet scheduling (`ipvsadm -o`): no connection entry is kept.
pub const SVC_F_ONE_PACKET: u8 = 1 << 1;
/// Service flag: this node is not the VRRP MASTER for the VIP: new connections are passed
/// to the kernel, not balanced (the maps stay warm for a takeover).
pub const SVC_F_STANDBY: u8 = 1 << 2;

/// Value of the service map. Besides what the XDP program needs, it records the service's
/// configuration, so a restarted daemon can rebuild its state from the pinned maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ServiceEntry {
    /// Index of the service in the per-service arrays (counters, cursors).
    pub id: u32,
    /// First slot of this service's table in the dispatch array.
    pub table_off: u32,
    /// Number of slots in the table; 0 when no real server can take new connections.
    pub table_len: u32,
    /// A [`DispatchKind`] as u8.
    pub kind: u8,
    /// `SVC_F_*` flags.
    pub flags: u8,
    /// Configured scheduler (index in the configuration model's list; userspace only).
    pub scheduler: u8,
    /// Scheduler flags (`ipvsadm -b` bits flag-1..3; userspace only).
    pub sched_flags: u8,
    /// Persistence timeout in seconds (0 = not persistent).
    pub persist_timeout: u32,
    /// Persistence netmask, network byte order.
    pub persist_mask: u32,
    /// Configured Maglev table size (0 = default; userspace only).
    pub mh_table_size: u32,
}

/// Forwarding method of a real server, as IPVS names them.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Direct routing (`-g`): only the MAC header changes.
    DirectRoute = 0,
    /// IPIP tunnel (`-i`).
    Tunnel = 1,
    /// Masquerading (`-m`).
    Masq = 2,
}

/// Value of the real-server array, indexed by real-server id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RealEntry {
    /// Real server IPv4 address, network byte order.
    pub addr: u32,
    /// Real server port, network byte order (used by NAT).
    pub port: u16,
    /// A [`Forward`] as u8.
    pub forward: u8,
    /// Explicit padding, always zero.
    pub pad: u8,
    /// Bumped each time the id is given to a different real server, so connections that
    /// point at a removed server are recognised as such.
    pub generation: u32,
    /// Id of the service it belongs to (userspace only: rebuilding state after a restart).
    pub service: u32,
    /// Position in the service's list, in the order servers were added (userspace only).
    pub rank: u32,
    /// Configured weight (userspace only).
    pub weight: u32,
    /// Latest non-zero weight, IPVS's last_weight (userspace only; mh tables).
    pub last_weight: u32,
    /// Upper connection threshold (userspace only).
    pub u_threshold: u32,
    /// Lower connection threshold (userspace only).
    pub l_threshold: u32,
    /// Tunnel destination port (GUE), network byte order.
    pub tun_port: u16,
    /// Tunnel type for [`Forward::Tunnel`]: `tunnel::TUN_IPIP`, `TUN_GUE` or `TUN_GRE`.
    pub tun_type: u8,
    /// Tunnel flags: `tunnel::TUN_F_CSUM`, `TUN_F_REMCSUM` (0 = `--tun-nocsum`).
    pub tun_flags: u8,
}

/// A real-server entry is in use when its address is set; freed ids keep only their
/// generation.
impl RealEntry {
    /// Whether the id is in use.
    pub fn in_use(&self) -> bool {
        self.addr != 0
    }
}

/// Connection states: IPVS's TCP states (`ip_vs_proto_tcp.c`) plus UDP. The first five
/// values keep their numbers from before NAT (pinned maps and settings stay readable).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// SYN seen, handshake not completed (IPVS SYN_RECV).
    SynRecv = 0,
    /// Handshake completed (IPVS ESTABLISHED).
    Established = 1,
    /// IPVS FIN_WAIT.
    FinWait = 2,
    /// IPVS CLOSE.
    Close = 3,
    /// A UDP flow.
    Udp = 4,
    /// IPVS NONE (a connection before its first transition).
    None = 5,
    /// IPVS SYN_SENT.
    SynSent = 6,
    /// IPVS TIME_WAIT.
    TimeWait = 7,
    /// IPVS CLOSE_WAIT.
    CloseWait = 8,
    /// IPVS LAST_ACK.
    LastAck = 9,
    /// IPVS LISTEN.
    Listen = 10,
    /// IPVS SYNACK.
    SynAck = 11,
}

/// Number of [`ConnState`] values (size of the timeout table).
pub const CONN_STATES: usize = 12;

impl ConnState {
    /// Every state, by value.
    pub const ALL: [ConnState; CONN_STATES] = [
        ConnState::SynRecv,
        ConnState::Established,
        ConnState::FinWait,
        ConnState::Close,
        ConnState::Udp,
        ConnState::None,
        ConnState::SynSent,
        ConnState::TimeWait,
        ConnState::CloseWait,
        ConnState::LastAck,
        ConnState::Listen,
        ConnState::SynAck,
    ];

    /// The state of a stored value, if valid.
    pub fn from_u8(v: u8) -> Option<ConnState> {
        Self::ALL.get(v as usize).copied()
    }

    /// The name `ipvsadm -L -c` prints for it.
    pub const fn name(self) -> &'static str {
        match self {
            ConnState::SynRecv => "SYN_RECV",
            ConnState::Established => "ESTABLISHED",
            ConnState::FinWait => "FIN_WAIT",
            ConnState::Close => "CLOSE",
            ConnState::Udp => "UDP",
            ConnState::None => "NONE",
            ConnState::SynSent => "SYN_SENT",
            ConnState::TimeWait => "TIME_WAIT",
            ConnState::CloseWait => "CLOSE_WAIT",
            ConnState::LastAck => "LAST_ACK",
            ConnState::Listen => "LISTEN",
            ConnState::SynAck => "SYNACK",
        }
    }
}

/// Key of the IPv4 connection table: a packet's 5-tuple as it arrives (client → VIP for
/// the request direction, real server → client for a NAT reply entry). IPv6 gets its own
/// map with its own key (measured: a 16-byte key hashes faster than a family-tagged 40-byte
/// one, and v4 lookups keep their cost).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Client address, network byte order.
    pub src: u32,
    /// Virtual address, network byte order.
    pub dst: u32,
    /// Client port, network byte order.
    pub sport: u16,
    /// Virtual port, network byte order.
    pub dport: u16,
    /// IP protocol number, widened so the key has no padding bytes to zero.
    pub proto: u32,
}

/// A family-tagged flow key (IPv4 in the first word of each address), the alternative to
/// separate v4/v6 maps that the benchmark measures (`REF_TAGGED`); not used by the balancer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TaggedFlowKey {
    /// Address family (2 = IPv4, 10 = IPv6).
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding, always zero.
    pub pad: u16,
    /// Source port, network order.
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
    /// Source address (IPv4: first word, rest zero).
    pub src: [u32; 4],
    /// Destination address (IPv4: first word, rest zero).
    pub dst: [u32; 4],
}

/// Value of the connection table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnEntry {
    /// Last time a packet of the flow was seen (CLOCK_MONOTONIC ns, coarse).
    pub last_seen: u64,
    /// Real server id the flow is bound to.
    pub real: u32,
    /// Generation of that real server id when the flow was bound.
    pub real_gen: u32,
    /// Service id the flow belongs to (for counters).
    pub service: u32,
    /// Egress interface towards the real server (from the kernel's FIB).
    pub ifindex: u32,
    /// Next-hop MAC address.
    pub dmac: [u8; 6],
    /// Egress interface MAC address.
    pub smac: [u8; 6],
    /// A [`ConnState`] as u8.
    pub state: u8,
    /// `CONN_F_*` flags.
    pub flags: u8,
    /// Request entry of a NAT connection: the real server's port (network order). Reply
    /// entry: the virtual port the reply is rewritten to.
    pub peer_port: u16,
    /// Request entry of a NAT connection: the real server's address. Reply entry: the VIP.
    /// Tunnel entry: the outer source address (the LB's address towards the real server).
    pub peer_addr: u32,
    /// Largest IPv4 total length (after encapsulation) the last FIB lookup accepted for this
    /// path; a larger packet asks the FIB again, which checks the egress MTU.
    pub fits: u16,
    /// Explicit padding, always zero.
    pub pad: [u8; 2],
}

/// Connection flag: this entry is the reply direction (real server → client) of a NAT
/// connection; userspace skips it in listings and counts.
pub const CONN_F_REPLY: u8 = 1 << 0;
/// Connection flag: a NAT connection (its request entry has a reply entry).
pub const CONN_F_NAT: u8 = 1 << 1;

impl ConnEntry {
    /// Whether this is the reply half of a NAT connection.
    pub fn is_reply(&self) -> bool {
        self.flags & CONN_F_REPLY != 0
    }
}

/// Key of the persistence-template table: the service and the client address under the
/// service's persistence netmask.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PersistKey {
    /// Service id.
    pub service: u32,
    /// Client address & netmask, network byte order.
    pub client: u32,
}

/// Value of the persistence-template table (IPVS's persistent connection template).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PersistEntry {
    /// Last time a connection was scheduled through it (CLOCK_MONOTONIC ns, coarse).
    pub last_seen: u64,
    /// Real server id.
    pub real: u32,
    /// Generation of that id when the template was made.
    pub real_gen: u32,
}

/// Packet and byte counters; per CPU in the maps, summed by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    /// New connections scheduled.
    pub conns: u64,
    /// Packets in (client → real server).
    pub packets_in: u64,
    /// Bytes in (client → real server), whole frames.
    pub bytes_in: u64,
    /// Packets out (real server → client; NAT only).
    pub packets_out: u64,
    /// Bytes out (real server → client; NAT only).
    pub bytes_out: u64,
}

/// Global settings read by the XDP program (one element array).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Idle timeout per [`ConnState`], in nanoseconds.
    pub timeouts_ns: [u64; CONN_STATES],
    /// `SETTINGS_F_*` flags.
    pub flags: u64,
}

/// Settings flag: some real server is NAT: look packets up in the reply direction too.
pub const SETTINGS_F_NAT: u64 = 1 << 0;
/// Settings flag: the address filter is off and every IPv4 TCP/UDP packet takes the full
/// path (fwmark rules may match any address; connections adopted from an earlier rvsd may
/// name addresses the filter does not hold yet).
pub const SETTINGS_F_ALL_PACKETS: u64 = 1 << 1;

/// log2 of the address filter's bits (2^20 bits, 128 KiB): at 100 000 addresses one in ten
/// other addresses still takes the full path (a false positive costs time, never a verdict).
pub const ADDR_FILTER_BITS_LOG2: u32 = 20;
/// The address filter's 64-bit words.
pub const ADDR_FILTER_WORDS: u32 = 1 << (ADDR_FILTER_BITS_LOG2 - 6);

/// The address filter's word index and bit mask for `addr` (memory order, as packets carry
/// it): one multiplicative hash, so the XDP program and the loader agree bit for bit.
#[inline(always)]
pub fn addr_filter_slot(addr: u32) -> (u32, u64) {
    let h = addr.wrapping_mul(0x9E37_79B1) >> (32 - ADDR_FILTER_BITS_LOG2);
    (h >> 6, 1u64 << (h & 63))
}

impl Settings {
    /// IPVS's default timeouts (`tcp_timeouts`, `udp_timeouts`): SYN_RECV 60 s,
    /// ESTABLISHED 900 s, FIN_WAIT 120 s, CLOSE 10 s, UDP 300 s, NONE 2 s, SYN_SENT 120 s,
    /// TIME_WAIT 120 s, CLOSE_WAIT 60 s, LAST_ACK 30 s, LISTEN 120 s, SYNACK 120 s.
    pub const IPVS_DEFAULTS: Settings = Settings {
        timeouts_ns: [
            60 * NS_PER_SEC,
            900 * NS_PER_SEC,
            120 * NS_PER_SEC,
            10 * NS_PER_SEC,
            300 * NS_PER_SEC,
            2 * NS_PER_SEC,
            120 * NS_PER_SEC,
            120 * NS_PER_SEC,
            60 * NS_PER_SEC,
            30 * NS_PER_SEC,
            120 * NS_PER_SEC,
            120 * NS_PER_SEC,
        ],
        flags: 0,
    };
}

impl Default for Settings {
    fn default() -> Self {
        Self::IPVS_DEFAULTS
    }
}

/// Service-key `pad` value of an fwmark service: its key is (mark as `vip`, port 0, proto 0).
pub const SERVICE_KEY_FWMARK: u8 = 1;

/// How many classification rules the XDP program walks (the verifier's loop bound): rvs's
/// fwmark rules, one entry per (destination prefix, source prefix, port range) combination.
pub const MAX_MARK_RULES: u32 = 64;

/// One classification rule as the XDP program walks it: a packet matching every field gets
/// `mark` (the fwmark service's number). Addresses and masks are in network byte order, ports
/// in host order; `proto` 0 matches TCP and UDP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MarkRuleEntry {
    /// Destination network (host bits zero).
    pub dst: u32,
    /// Destination mask.
    pub dst_mask: u32,
    /// Source network (host bits zero).
    pub src: u32,
    /// Source mask.
    pub src_mask: u32,
    /// First destination port.
    pub port_first: u16,
    /// Last destination port.
    pub port_last: u16,
    /// IP protocol number, 0 for TCP and UDP.
    pub proto: u8,
    /// Explicit padding, always zero.
    pub pad: [u8; 3],
    /// The mark it sets.
    pub mark: u32,
}

impl MarkRuleEntry {
    /// Whether a packet (addresses network order, port host order) matches.
    #[inline(always)]
    pub fn matches(&self, proto: u8, src: u32, dst: u32, dport: u16) -> bool {
        (self.proto == 0 || self.proto == proto)
            && dst & self.dst_mask == self.dst
            && src & self.src_mask == self.src
            && dport >= self.port_first
            && dport <= self.port_last
    }
}

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// One connection counted active in [`RealLoad::conns`] (the high word).
pub const LOAD_ACTIVE: u64 = 1 << 32;
/// One connection counted inactive in [`RealLoad::conns`] (the low word).
pub const LOAD_INACTIVE: u64 = 1;
/// [`RealLoad::flags`]: IPVS's IP_VS_DEST_F_OVERLOAD (over the upper threshold).
pub const LOAD_F_OVERLOAD: u32 = 1 << 0;

/// Per-real-server load, as IPVS's dest counters: one shared (not per-CPU) value, because
/// every new connection of a count-based scheduler reads every server's total. Updated only
/// on new connections and state changes (atomic adds), never per packet.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RealLoad {
    /// `(active << 32) | inactive`: a move active → inactive is one atomic add of
    /// `LOAD_INACTIVE - LOAD_ACTIVE` (wrapping), so a reader never sees it twice or not at all.
    pub conns: u64,
    /// Weight as the kernel's int (0 = quiesced), written by the planner.
    pub weight: i32,
    /// `LOAD_F_*` bits.
    pub flags: u32,
    /// Upper connection threshold (`-x`, 0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`, 0 = none).
    pub l_threshold: u32,
    /// Live persistence templates (PersistConn).
    pub persist: u32,
    /// Generation of the real id this load belongs to (as `RealEntry::generation`).
    pub generation: u32,
}

impl RealLoad {
    /// ActiveConn.
    #[inline(always)]
    pub fn active(conns: u64) -> u32 {
        (conns >> 32) as u32
    }

    /// InActConn.
    #[inline(always)]
    pub fn inactive(conns: u64) -> u32 {
        conns as u32
    }

    /// IPVS's `ip_vs_dest_conn_overhead`, `(active << 8) + inactive` in the kernel's int.
    #[inline(always)]
    pub fn overhead(conns: u64) -> i64 {
        ((Self::active(conns) as i32)
            .wrapping_shl(8)
            .wrapping_add(Self::inactive(conns) as i32)) as i64
    }

    /// What one connection in TCP/UDP state `state` adds to `conns`.
    #[inline(always)]
    pub fn unit(state: u8) -> u64 {
        if tcp::is_active(state) {
            LOAD_ACTIVE
        } else {
            LOAD_INACTIVE
        }
    }
}

/// Only refresh a connection's last-seen time (and its FIB result) when it is older than
/// this, so an established flow does not write its entry on every packet.
pub const CONN_REFRESH_NS: u64 = NS_PER_SEC;

/// Why the XDP program returned what it returned; index of the global verdict counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed: not an IPv4 frame (ARP, IPv6, …).
    PassNotIpv4 = 0,
    /// Passed: IPv4 but neither TCP nor UDP.
    PassNotTcpUdp = 1,
    /// Passed: no virtual service for (proto, VIP, port) nor (proto, VIP, 0).
    PassNotService = 2,
    /// Passed: an IP fragment (the kernel reassembles).
    PassFragment = 3,
    /// Passed: truncated or malformed headers.
    PassMalformed = 4,
    /// Passed: TCP non-SYN with no connection entry (IPVS does not schedule those).
    PassNoConn = 5,
    /// Dropped: the service has no real server that can take a new connection.
    DropNoReal = 6,
    /// Dropped: the kernel has no route or neighbour for the real server.
    DropNoRoute = 7,
    /// Dropped: the connection's real server was removed (IPVS drops these too).
    DropRealGone = 8,
    /// Dropped: the real server's forwarding method is not supported yet.
    DropUnsupported = 9,
    /// Forwarded: a new connection was scheduled.
    FwdNew = 10,
    /// Forwarded: a packet of a known connection.
    FwdEstablished = 11,
    /// Passed: a new connection for a VIP this node is VRRP BACKUP for.
    PassStandby = 12,
    /// Forwarded: a NAT reply rewritten back to VIP:port, towards the client.
    FwdNatReply = 13,
    /// Passed: a packet from a NAT real server that matches no connection (its own traffic).
    PassNatNoConn = 14,
    /// Forwarded: an ICMP error about a NAT connection, translated with its quoted header.
    FwdIcmp = 15,
    /// Answered: the packet (DF set) would exceed the egress MTU once encapsulated or NAT'd;
    /// the client got an ICMP fragmentation-needed.
    TxFragNeeded = 16,
    /// Dropped: too big for the egress MTU and DF clear (XDP cannot fragment).
    DropTooBig = 17,
    /// Passed: the IPv4 header checksum is wrong. The kernel drops it (`ip_rcv_core`,
    /// counted in `IpExtInCsumErrors`) before any routing.
    PassBadChecksum = 18,
    /// Passed: malformed IPv4 options (an option length below 2 or past the header). The
    /// kernel drops it with an ICMP parameter problem (`ip_options_compile`), as for IPVS.
    PassBadOptions = 19,
    /// Passed: loose or strict source routing (LSRR/SSRR). The kernel drops it unless
    /// `accept_source_route` is set (default off); IPVS sees only what the kernel accepts.
    PassSourceRoute = 20,
    /// Passed: a martian source (0.0.0.0/8, 127.0.0.0/8, multicast, 255.255.255.255). The
    /// kernel drops it in `ip_route_input` before forwarding or local delivery.
    PassMartianSource = 21,
    /// Dropped: the IPv4 total length cannot hold the TCP/UDP header, or the TCP data
    /// offset is below 5 or past the total length. Dropped here, as IPVS does, because the
    /// kernel's IP layer would accept it and route it on.
    DropBadL4Header = 22,
    /// Dropped: a packet for a service whose source address is the VIP itself (the kernel
    /// drops a local source; a VIP not configured locally would be routed back out).
    DropSourceIsVip = 23,
    /// Passed: the tail call into the new-flow program (`rvs_xdp_new`) failed (its slot in
    /// the program array empty, e.g. while a loader is mid-update); the packet goes to the
    /// kernel untouched instead of being dropped.
    PassTailCallFailed = 24,
}

/// Number of [`Verdict`] values (size of the verdict counter array).
pub const VERDICTS: u32 = 25;

impl Verdict {
    /// All verdicts, in counter-index order.
    pub const ALL: [Verdict; VERDICTS as usize] = [
        Verdict::PassNotIpv4,
        Verdict::PassNotTcpUdp,
        Verdict::PassNotService,
        Verdict::PassFragment,
        Verdict::PassMalformed,
        Verdict::PassNoConn,
        Verdict::DropNoReal,
        Verdict::DropNoRoute,
        Verdict::DropRealGone,
        Verdict::DropUnsupported,
        Verdict::FwdNew,
        Verdict::FwdEstablished,
        Verdict::PassStandby,
        Verdict::FwdNatReply,
        Verdict::PassNatNoConn,
        Verdict::FwdIcmp,
        Verdict::TxFragNeeded,
        Verdict::DropTooBig,
        Verdict::PassBadChecksum,
        Verdict::PassBadOptions,
        Verdict::PassSourceRoute,
        Verdict::PassMartianSource,
        Verdict::DropBadL4Header,
        Verdict::DropSourceIsVip,
        Verdict::PassTailCallFailed,
    ];

    /// Stable snake_case name, used in metrics and listings.
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::PassNotIpv4 => "pass_not_ipv4",
            Verdict::PassNotTcpUdp => "pass_not_tcp_udp",
            Verdict::PassNotService => "pass_not_service",
            Verdict::PassFragment => "pass_fragment",
            Verdict::PassMalformed => "pass_malformed",
            Verdict::PassNoConn => "pass_no_conn",
            Verdict::DropNoReal => "drop_no_real",
            Verdict::DropNoRoute => "drop_no_route",
            Verdict::DropRealGone => "drop_real_gone",
            Verdict::DropUnsupported => "drop_unsupported",
            Verdict::FwdNew => "fwd_new",
            Verdict::FwdEstablished => "fwd_established",
            Verdict::PassStandby => "pass_standby",
            Verdict::FwdNatReply => "fwd_nat_reply",
            Verdict::PassNatNoConn => "pass_nat_no_conn",
            Verdict::FwdIcmp => "fwd_icmp",
            Verdict::TxFragNeeded => "tx_frag_needed",
            Verdict::DropTooBig => "drop_too_big",
            Verdict::PassBadChecksum => "pass_bad_checksum",
            Verdict::PassBadOptions => "pass_bad_options",
            Verdict::PassSourceRoute => "pass_source_route",
            Verdict::PassMartianSource => "pass_martian_source",
            Verdict::DropBadL4Header => "drop_bad_l4_header",
            Verdict::DropSourceIsVip => "drop_source_is_vip",
            Verdict::PassTailCallFailed => "pass_tail_call_failed",
        }
    }
}

/// Counters of the decapsulation program (index of `maps::DECAP_STATS`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapCount {
    /// IPIP packets decapsulated.
    Ipip = 0,
    /// GUE packets decapsulated.
    Gue = 1,
    /// GRE packets decapsulated.
    Gre = 2,
    /// Tunnel packets for this host left to the kernel (malformed, options rvs does not
    /// handle such as GUE remote checksum offload, non-IPv4 inner packets).
    Passed = 3,
}

/// Number of [`DecapCount`] values.
pub const DECAP_COUNTS: u32 = 4;

/// Names of the maps in the eBPF object, shared so the loader never spells them differently.
pub mod maps {
    /// ServiceKey → ServiceEntry.
    pub const SERVICES: &str = "RVS_SERVICES";
    /// Real-server id → RealEntry.
    pub const REALS: &str = "RVS_REALS";
    /// Per-real-server load (ActiveConn/InActConn, weight, thresholds).
    pub const REAL_LOAD: &str = "RVS_REAL_LOAD";
    /// Dispatch slots (real-server ids) of every service's scheduler table.
    pub const DISPATCH: &str = "RVS_DISPATCH";
    /// Service id → ring cursor (u64), advanced atomically by rr/wrr.
    pub const CURSORS: &str = "RVS_CURSORS";
    /// FlowKey → ConnEntry (LRU).
    pub const CONNS: &str = "RVS_CONNS";
    /// PersistKey → PersistEntry (LRU).
    pub const PERSIST: &str = "RVS_PERSIST";
    /// Per-CPU counters per service id.
    pub const SERVICE_STATS: &str = "RVS_SERVICE_STATS";
    /// Per-CPU counters per real-server id.
    pub const REAL_STATS: &str = "RVS_REAL_STATS";
    /// Per-CPU verdict counters.
    pub const VERDICTS: &str = "RVS_VERDICTS";
    /// One-element array of Settings.
    pub const SETTINGS: &str = "RVS_SETTINGS";
    /// NAT real-server address → number of NAT real servers with it (their own traffic is
    /// recognised and passed).
    pub const NAT_SOURCES: &str = "RVS_NAT_SOURCES";
    /// Decapsulation: local IPv4 addresses tunnels may be addressed to (addr → 1).
    pub const DECAP_ADDRS: &str = "RVS_DECAP_ADDRS";
    /// Decapsulation: GUE UDP ports (network order → 1).
    pub const DECAP_PORTS: &str = "RVS_DECAP_PORTS";
    /// Benchmark reference: 16-byte IPv4 flow key → ConnEntry (LRU).
    pub const REF_V4: &str = "RVS_REF_V4";
    /// Benchmark reference: 40-byte family-tagged flow key → ConnEntry (LRU).
    pub const REF_TAGGED: &str = "RVS_REF_TAGGED";
    /// Decapsulation counters (per CPU): `DecapCount` indexes.
    pub const DECAP_STATS: &str = "RVS_DECAP_STATS";
    /// fwmark classification rules (MarkRuleEntry), walked from the last in use.
    pub const MARK_RULES: &str = "RVS_MARK_RULES";
    /// One-element array: how many MARK_RULES entries are in use (0: no fwmark service).
    pub const MARK_COUNT: &str = "RVS_MARK_COUNT";
    /// Address filter (u64 words, `addr_filter_slot`): a bit per hashed address that may
    /// concern the balancer (every VIP, every NAT real server's address); a packet whose
    /// source and destination both miss it goes to the kernel at once.
    pub const ADDR_FILTER: &str = "RVS_ADDR_FILTER";
    /// Program array the balancer tail-calls through ([`super::PROG_NEW_FLOW`]: `rvs_xdp_new`).
    pub const PROGS: &str = "RVS_PROGS";
    /// Per-CPU scratch slot ([`super::NewFlowScratch`]) `rvs_xdp` fills for `rvs_xdp_new`.
    pub const SCRATCH: &str = "RVS_SCRATCH";
    /// Per-CPU route cache by real-server id ([`super::RouteCache`]), not pinned.
    pub const ROUTES: &str = "RVS_ROUTES";
}

/// Index of `rvs_xdp_new` in the program array [`maps::PROGS`].
pub const PROG_NEW_FLOW: u32 = 0;
/// Number of slots in the program array.
pub const PROG_SLOTS: u32 = 1;

/// What `rvs_xdp` hands `rvs_xdp_new` with the tail call (one per-CPU slot: XDP runs a
/// frame to its end on one CPU). The new-flow program parses the frame again (the verifier
/// must see the packet bounds itself); this holds only what the connection lookup found.
/// Shared by an old entry program (kept by a pinned link over a restart) and a new
/// second program: the layout is part of the pinned state, change it only with a new name.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlowScratch {
    /// The time `rvs_xdp` read (bpf_ktime_get_coarse_ns), so both halves agree.
    pub now: u64,
    /// The entry this new connection replaces: its real server ([`NO_REAL`] when none).
    pub old_real: u32,
    /// The replaced entry's real-server generation.
    pub old_gen: u32,
    /// The replaced entry's state.
    pub old_state: u8,
    /// 1: the entry's real server was removed (only an opening packet is scheduled again).
    pub real_gone: u8,
    /// Explicit padding.
    pub pad: [u8; 6],
}

/// One CPU's last reading of the coarse clock and the jiffies it was read at. The coarse
/// clock only moves when the tick moves jiffies, so while jiffies (one inlined load) has not
/// changed the program reuses the reading instead of calling the clock helper again (each
/// helper call costs about as much as the rest of an established packet's bookkeeping).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockCache {
    /// `bpf_jiffies64()` when `now` was read.
    pub jiffies: u64,
    /// `bpf_ktime_get_coarse_ns()` then.
    pub now: u64,
}

/// One CPU's cached route towards a real server (RVS_ROUTES, indexed by real-server id):
/// a new connection to that server reuses it instead of asking the FIB, for as long as an
/// established connection reuses its own route ([`CONN_REFRESH_NS`]), for packets up to the
/// size the FIB accepted, on the same ingress interface and server generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCache {
    /// When the FIB gave the route (coarse clock ns); 0: empty.
    pub stamp: u64,
    /// The real server's generation then.
    pub generation: u32,
    /// The ingress interface the lookup was made for.
    pub iif: u32,
    /// Egress interface.
    pub ifindex: u32,
    /// Next-hop MAC.
    pub dmac: [u8; 6],
    /// Egress MAC.
    pub smac: [u8; 6],
    /// Preferred source address (tunnels: the outer source).
    pub src: u32,
    /// Largest IPv4 total length the FIB accepted on it.
    pub fits: u16,
    /// Explicit padding.
    pub pad: [u8; 2],
}

/// Names of the programs in the eBPF object.
pub mod programs {
    /// The load balancer's XDP entry point.
    pub const BALANCER: &str = "rvs_xdp";
    /// An XDP program that passes everything (veth peers need one to receive XDP frames).
    pub const PASS: &str = "rvs_xdp_pass";
    /// Reference program for benchmarks: parse, one map lookup, MAC swap, XDP_TX.
    pub const MINIMAL_TX: &str = "rvs_xdp_minimal_tx";
    /// Benchmark reference: parse, look the 5-tuple up in a 16-byte-key LRU map, MACs from
    /// the entry, XDP_TX.
    pub const REF_CONN_V4: &str = "rvs_xdp_ref_conn_v4";
    /// Benchmark reference: the same with a 40-byte family-tagged key.
    pub const REF_CONN_TAGGED: &str = "rvs_xdp_ref_conn_tagged";
    /// Benchmark reference, the connection-table floor: parse, look the 5-tuple up in the
    /// balancer's own connection table (RVS_CONNS), MACs from the entry, XDP_TX.
    pub const REF_CONN: &str = "rvs_xdp_ref_conn";
    /// The balancer's second half, tail-called by [`BALANCER`] for a packet with no usable
    /// connection entry: service lookup, persistence, scheduling, connection insert, send.
    pub const BALANCER_NEW: &str = "rvs_xdp_new";
    /// Real-server side: strips IPIP/GUE/GRE addressed to the host, passes the inner packet.
    pub const DECAP: &str = "rvs_decap";
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for every map type: all are `repr(C)`, `Copy`, with explicit padding.
    use super::*;
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceEntry {}
    unsafe impl aya::Pod for RealEntry {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for TaggedFlowKey {}
    unsafe impl aya::Pod for ConnEntry {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for PersistKey {}
    unsafe impl aya::Pod for MarkRuleEntry {}
    unsafe impl aya::Pod for PersistEntry {}
    unsafe impl aya::Pod for NewFlowScratch {}
}
