//! IPVS's numbers as they travel in sync messages (`include/uapi/linux/ip_vs.h`,
//! `include/net/ip_vs.h`), and rvs's flow states, which are IPVS's.

/// Forwarding method bits of a connection's flags.
pub const CONN_F_FWD_MASK: u32 = 0x0007;
/// Forwarding method: masquerading (NAT).
pub const CONN_F_MASQ: u32 = 0x0000;
/// Forwarding method: local node.
pub const CONN_F_LOCALNODE: u32 = 0x0001;
/// Forwarding method: IPIP tunnel.
pub const CONN_F_TUNNEL: u32 = 0x0002;
/// Forwarding method: direct routing.
pub const CONN_F_DROUTE: u32 = 0x0003;
/// Forwarding method: bypass.
pub const CONN_F_BYPASS: u32 = 0x0004;
/// The connection came from a sync message (set by the receiver).
pub const CONN_F_SYNC: u32 = 0x0020;
/// Hashed in the kernel's table (never sent: the kernel masks it off).
pub const CONN_F_HASHED: u32 = 0x0040;
/// No output packets expected (DR/TUN).
pub const CONN_F_NOOUTPUT: u32 = 0x0080;
/// Not established (counted in InActConn).
pub const CONN_F_INACTIVE: u32 = 0x0100;
/// Outgoing sequence adjustment in use.
pub const CONN_F_OUT_SEQ: u32 = 0x0200;
/// Incoming sequence adjustment in use.
pub const CONN_F_IN_SEQ: u32 = 0x0400;
/// Either sequence adjustment.
pub const CONN_F_SEQ_MASK: u32 = 0x0600;
/// Client port not known yet (FTP data templates).
pub const CONN_F_NO_CPORT: u32 = 0x0800;
/// A persistence template, not a connection.
pub const CONN_F_TEMPLATE: u32 = 0x1000;
/// One-packet scheduling (never synced).
pub const CONN_F_ONE_PACKET: u32 = 0x2000;
/// The flags a backup takes from a message (`IP_VS_CONN_F_BACKUP_MASK`).
pub const CONN_F_BACKUP_MASK: u32 = CONN_F_FWD_MASK
    | CONN_F_NOOUTPUT
    | CONN_F_INACTIVE
    | CONN_F_SEQ_MASK
    | CONN_F_NO_CPORT
    | CONN_F_TEMPLATE;

/// IPVS TCP states (`IP_VS_TCP_S_*`).
pub mod tcp {
    /// NONE.
    pub const NONE: u16 = 0;
    /// ESTABLISHED.
    pub const ESTABLISHED: u16 = 1;
    /// SYN_SENT.
    pub const SYN_SENT: u16 = 2;
    /// SYN_RECV.
    pub const SYN_RECV: u16 = 3;
    /// FIN_WAIT.
    pub const FIN_WAIT: u16 = 4;
    /// TIME_WAIT.
    pub const TIME_WAIT: u16 = 5;
    /// CLOSE.
    pub const CLOSE: u16 = 6;
    /// CLOSE_WAIT.
    pub const CLOSE_WAIT: u16 = 7;
    /// LAST_ACK.
    pub const LAST_ACK: u16 = 8;
    /// LISTEN.
    pub const LISTEN: u16 = 9;
    /// SYNACK.
    pub const SYNACK: u16 = 10;
    /// Number of TCP states.
    pub const LAST: u16 = 11;
    /// IPVS's default timeout per TCP state, in seconds (`tcp_timeouts`).
    pub const TIMEOUTS: [u32; LAST as usize] = [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120];
    /// IPVS's state names, as `ipvsadm -Lc` prints them.
    pub const NAMES: [&str; LAST as usize] = [
        "NONE",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "SYNACK",
    ];
}

/// IPVS's single UDP state (`IP_VS_UDP_S_NORMAL`).
pub const UDP_NORMAL: u16 = 0;
/// IPVS's default UDP timeout, seconds.
pub const UDP_TIMEOUT: u32 = 300;
/// Timeout a v0 template gets (v0 carries none): 3 minutes, as the kernel.
pub const V0_TEMPLATE_TIMEOUT: u32 = 180;
/// Template state NONE (`IP_VS_CTPL_S_NONE`).
pub const CTPL_NONE: u16 = 0;
/// Template state ASSURED (`IP_VS_CTPL_S_ASSURED`).
pub const CTPL_ASSURED: u16 = 1;

/// IP protocol numbers.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number "IP" (0), what persistence templates of port-0 services carry.
pub const IPPROTO_IP: u8 = 0;

/// The flow states rvs's connection table keeps: IPVS's TCP states one for one, and UDP's
/// single state (so a state crosses sync exactly, both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// NONE.
    None,
    /// ESTABLISHED.
    Established,
    /// SYN_SENT.
    SynSent,
    /// SYN_RECV.
    SynRecv,
    /// FIN_WAIT.
    FinWait,
    /// TIME_WAIT.
    TimeWait,
    /// CLOSE.
    Close,
    /// CLOSE_WAIT.
    CloseWait,
    /// LAST_ACK.
    LastAck,
    /// LISTEN.
    Listen,
    /// SYNACK.
    SynAck,
    /// A UDP flow (IPVS's UDP NORMAL).
    Udp,
}

impl FlowState {
    /// Every TCP state, indexed by its IPVS number.
    pub const TCP: [FlowState; tcp::LAST as usize] = [
        FlowState::None,
        FlowState::Established,
        FlowState::SynSent,
        FlowState::SynRecv,
        FlowState::FinWait,
        FlowState::TimeWait,
        FlowState::Close,
        FlowState::CloseWait,
        FlowState::LastAck,
        FlowState::Listen,
        FlowState::SynAck,
    ];

    /// The IPVS state number this state is sent as.
    pub fn ipvs_state(self) -> u16 {
        match self {
            FlowState::None => tcp::NONE,
            FlowState::Established => tcp::ESTABLISHED,
            FlowState::SynSent => tcp::SYN_SENT,
            FlowState::SynRecv => tcp::SYN_RECV,
            FlowState::FinWait => tcp::FIN_WAIT,
            FlowState::TimeWait => tcp::TIME_WAIT,
            FlowState::Close => tcp::CLOSE,
            FlowState::CloseWait => tcp::CLOSE_WAIT,
            FlowState::LastAck => tcp::LAST_ACK,
            FlowState::Listen => tcp::LISTEN,
            FlowState::SynAck => tcp::SYNACK,
            FlowState::Udp => UDP_NORMAL,
        }
    }

    /// rvs's state for IPVS state `state` of protocol `protocol`; `None` for a protocol
    /// rvs does not balance or a state number out of range (the kernel drops those too).
    pub fn from_ipvs(protocol: u8, state: u16) -> Option<FlowState> {
        match protocol {
            IPPROTO_UDP => (state == UDP_NORMAL).then_some(FlowState::Udp),
            IPPROTO_TCP => Self::TCP.get(usize::from(state)).copied(),
            _ => None,
        }
    }

    /// Whether IPVS's master would send a connection in this state: TCP in ESTABLISHED,
    /// FIN_WAIT, CLOSE, CLOSE_WAIT and TIME_WAIT only (`ip_vs_sync_conn_needed`), UDP always.
    pub fn synced(self) -> bool {
        matches!(
            self,
            FlowState::Established
                | FlowState::FinWait
                | FlowState::Close
                | FlowState::CloseWait
                | FlowState::TimeWait
                | FlowState::Udp
        )
    }

    /// IPVS's default timeout of this state, seconds.
    pub fn ipvs_timeout(self) -> u32 {
        match self {
            FlowState::Udp => UDP_TIMEOUT,
            s => tcp::TIMEOUTS[s.ipvs_state() as usize],
        }
    }
}

/// The forwarding method bits for rvs's methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    /// Direct routing.
    Dr,
    /// IPIP tunnel.
    Tun,
    /// Masquerading.
    Nat,
}

impl Forward {
    /// The `IP_VS_CONN_F_*` forwarding bits.
    pub fn flags(self) -> u32 {
        match self {
            Forward::Dr => CONN_F_DROUTE,
            Forward::Tun => CONN_F_TUNNEL,
            Forward::Nat => CONN_F_MASQ,
        }
    }

    /// The method of flags `flags`; `None` for local node and bypass.
    pub fn from_flags(flags: u32) -> Option<Forward> {
        match flags & CONN_F_FWD_MASK {
            CONN_F_DROUTE => Some(Forward::Dr),
            CONN_F_TUNNEL => Some(Forward::Tun),
            CONN_F_MASQ => Some(Forward::Nat),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_ipvs_numbers() {
        for n in 0..tcp::LAST {
            let s = FlowState::from_ipvs(IPPROTO_TCP, n).expect("a TCP state");
            assert_eq!(s.ipvs_state(), n, "{}", tcp::NAMES[n as usize]);
        }
        assert_eq!(FlowState::from_ipvs(IPPROTO_UDP, 0), Some(FlowState::Udp));
        assert_eq!(FlowState::from_ipvs(IPPROTO_UDP, 1), None);
        assert_eq!(FlowState::from_ipvs(IPPROTO_TCP, tcp::LAST), None);
        assert_eq!(
            FlowState::from_ipvs(IPPROTO_TCP, tcp::TIME_WAIT),
            Some(FlowState::TimeWait)
        );
        assert_eq!(FlowState::Established.ipvs_timeout(), 900);
        assert_eq!(FlowState::LastAck.ipvs_timeout(), 30);
        assert_eq!(FlowState::Udp.ipvs_timeout(), 300);
        assert!(FlowState::CloseWait.synced() && !FlowState::LastAck.synced());
    }
}
