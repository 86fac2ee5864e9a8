//! Per-real-server connection accounting as IPVS keeps it (ip_vs_conn.c, ip_vs_proto_tcp.c):
//! ActiveConn/InActConn, the persistence-template count, and the overload flag that the
//! `-x`/`-y` thresholds drive. The count-based schedulers read these.
//!
//! What IPVS counts (Debian 6.1, confirmed by `tests/ipvs_counts.rs`):
//! - a new connection is bound *inactive* (`__ip_vs_update_dest` adds IP_VS_CONN_F_INACTIVE to
//!   every server's connection flags), then its first TCP state change moves it: SYN_RECV,
//!   SYN_SENT, ESTABLISHED and SYNACK count as active (`tcp_state_active`, since Linux 4.8),
//!   every other state as inactive. So a SYN alone already makes a connection active;
//! - UDP and other protocols without states stay inactive for their whole life;
//! - a persistence template counts in `persistconns`, not in ActiveConn/InActConn;
//! - a connection leaves its server's counts when its entry is freed (expiry), not when it
//!   closes: a FIN moves it from active to inactive, and it stays counted until it expires.
//!
//! Thresholds (ip_vs_bind_dest / ip_vs_unbind_dest): after a connection is bound, a server with
//! an upper threshold `u` whose `active + inactive >= u` is flagged overloaded (no scheduler
//! picks it). The flag is only cleared when a connection is unbound: with a lower threshold
//! `l`, once `active + inactive < l`; without one, once `(active + inactive) * 4 < u * 3`;
//! with neither threshold, at once.

/// The load of one real server as a scheduler reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Current weight (0 = quiesced).
    pub weight: u32,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// IP_VS_DEST_F_OVERLOAD (set by the thresholds).
    pub overloaded: bool,
}

impl Load {
    /// IPVS's `ip_vs_dest_conn_overhead`: `(activeconns << 8) + inactconns`, in the kernel's
    /// `int` arithmetic (wrapping).
    pub fn overhead(&self) -> i64 {
        i64::from(
            (self.active as i32)
                .wrapping_shl(8)
                .wrapping_add(self.inactive as i32),
        )
    }

    /// The weight as the kernel's `int`.
    pub(crate) fn w(&self) -> i64 {
        i64::from(self.weight as i32)
    }
}

/// A server's `-x` (upper) and `-y` (lower) connection thresholds; 0 means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// Upper threshold (`-x`, keepalived `uthreshold`).
    pub upper: u32,
    /// Lower threshold (`-y`, keepalived `lthreshold`).
    pub lower: u32,
}

/// How a connection counts on its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// In ActiveConn.
    Active,
    /// In InActConn.
    Inactive,
    /// A persistence template (`persistconns`).
    Template,
}

/// The counters IPVS keeps per real server, with the threshold rule applied on every bind and
/// unbind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// Persistence templates.
    pub persist: u32,
    /// IP_VS_DEST_F_OVERLOAD.
    pub overloaded: bool,
}

impl Counters {
    /// `active + inactive` (ip_vs_dest_totalconns; templates do not count).
    pub fn total(&self) -> u32 {
        self.active.saturating_add(self.inactive)
    }

    /// A connection is bound to the server (ip_vs_bind_dest): count it, then set the overload
    /// flag when the upper threshold is reached.
    pub fn bind(&mut self, how: Counted, t: Thresholds) {
        match how {
            Counted::Active => self.active = self.active.saturating_add(1),
            Counted::Inactive => self.inactive = self.inactive.saturating_add(1),
            Counted::Template => self.persist = self.persist.saturating_add(1),
        }
        if t.upper != 0 && self.total() >= t.upper {
            self.overloaded = true;
        }
    }

    /// A connection's entry is freed (ip_vs_unbind_dest): uncount it, then maybe clear the
    /// overload flag.
    pub fn unbind(&mut self, how: Counted, t: Thresholds) {
        match how {
            Counted::Active => self.active = self.active.saturating_sub(1),
            Counted::Inactive => self.inactive = self.inactive.saturating_sub(1),
            Counted::Template => self.persist = self.persist.saturating_sub(1),
        }
        let total = u64::from(self.total());
        if t.lower != 0 {
            if total < u64::from(t.lower) {
                self.overloaded = false;
            }
        } else if t.upper != 0 {
            if total * 4 < u64::from(t.upper) * 3 {
                self.overloaded = false;
            }
        } else {
            self.overloaded = false;
        }
    }

    /// A connection moves between active and inactive (a TCP state change); no threshold is
    /// checked here, as in the kernel.
    pub fn moved(&mut self, from: Counted, to: Counted) {
        if from == to {
            return;
        }
        match from {
            Counted::Active => self.active = self.active.saturating_sub(1),
            Counted::Inactive => self.inactive = self.inactive.saturating_sub(1),
            Counted::Template => self.persist = self.persist.saturating_sub(1),
        }
        match to {
            Counted::Active => self.active = self.active.saturating_add(1),
            Counted::Inactive => self.inactive = self.inactive.saturating_add(1),
            Counted::Template => self.persist = self.persist.saturating_add(1),
        }
    }

    /// The [`Load`] a scheduler sees with this server's `weight`.
    pub fn load(&self, weight: u32) -> Load {
        Load {
            weight,
            active: self.active,
            inactive: self.inactive,
            overloaded: self.overloaded,
        }
    }
}

/// IPVS's TCP connection states (`IP_VS_TCP_S_*`), in the kernel's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// NONE: just created.
    None = 0,
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
}

impl TcpState {
    /// Whether a connection in this state counts as active (`tcp_state_active`).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }

    /// The name `ipvsadm -Lnc` prints.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// The default timeout of the state in seconds (ip_vs_proto_tcp.c `tcp_timeouts`).
    pub fn timeout_secs(self) -> u32 {
        match self {
            TcpState::None => 2,
            TcpState::Established => 900,
            TcpState::SynSent => 120,
            TcpState::SynRecv => 60,
            TcpState::FinWait => 120,
            TcpState::TimeWait => 120,
            TcpState::Close => 10,
            TcpState::CloseWait => 60,
            TcpState::LastAck => 30,
            TcpState::Listen => 120,
            TcpState::SynAck => 120,
        }
    }
}

/// Which TCP flag of a segment IPVS's state table looks at (`tcp_state_idx`: RST first, then
/// SYN, FIN, ACK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    /// SYN set (and no RST).
    Syn,
    /// FIN set (no RST, no SYN).
    Fin,
    /// Only ACK.
    Ack,
    /// RST set.
    Rst,
}

impl TcpEvent {
    /// The event of a segment with these flags, None when IPVS ignores it (no flag it knows):
    /// its state then becomes CLOSE, as in the kernel.
    pub fn from_flags(syn: bool, fin: bool, ack: bool, rst: bool) -> Option<TcpEvent> {
        if rst {
            Some(TcpEvent::Rst)
        } else if syn {
            Some(TcpEvent::Syn)
        } else if fin {
            Some(TcpEvent::Fin)
        } else if ack {
            Some(TcpEvent::Ack)
        } else {
            None
        }
    }
}

/// Which of IPVS's state tables applies to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server, and the server's replies pass the director (NAT).
    Input,
    /// Server to client (NAT replies).
    Output,
    /// Client to server when no reply has been seen (DR, TUN, and NAT before its first reply:
    /// IP_VS_CONN_F_NOOUTPUT).
    InputOnly,
}

use TcpState::{
    CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI, SynRecv as SR,
    SynSent as SS, TimeWait as TW,
};
const CL: TcpState = TcpState::Close;

/// ip_vs_proto_tcp.c `tcp_states` (secure_tcp off) of Linux 5.x/6.x, rows syn, fin, ack,
/// rst; columns the current state in [`TcpState`] order. (An ACK on a NONE entry, which only
/// `sloppy_tcp` creates, goes to ESTABLISHED; older kernels went to CLOSE.) The INPUT-ONLY
/// table is golden-tested (DR recordings); INPUT/OUTPUT, which NAT uses once a reply has
/// passed, are taken from the source and not yet recorded.
const INPUT: [[TcpState; 11]; 4] = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];
const OUTPUT: [[TcpState; 11]; 4] = [
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];
const INPUT_ONLY: [[TcpState; 11]; 4] = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// IPVS's next TCP state (`set_tcp_state`); `None` for a segment without a flag IPVS knows.
pub fn tcp_next_state(state: TcpState, dir: Direction, event: Option<TcpEvent>) -> TcpState {
    let Some(event) = event else {
        return CL;
    };
    let table = match dir {
        Direction::Input => &INPUT,
        Direction::Output => &OUTPUT,
        Direction::InputOnly => &INPUT_ONLY,
    };
    let row = match event {
        TcpEvent::Syn => 0,
        TcpEvent::Fin => 1,
        TcpEvent::Ack => 2,
        TcpEvent::Rst => 3,
    };
    table[row][state as usize]
}

/// How a TCP connection in `state` counts (a new one, state NONE, is bound inactive).
pub fn tcp_counted(state: TcpState) -> Counted {
    if state.is_active() {
        Counted::Active
    } else {
        Counted::Inactive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_active_times_256_plus_inactive() {
        let l = Load {
            weight: 1,
            active: 3,
            inactive: 5,
            overloaded: false,
        };
        assert_eq!(l.overhead(), 3 * 256 + 5);
    }

    #[test]
    fn syn_alone_is_active_fin_is_inactive() {
        let s = tcp_next_state(TcpState::None, Direction::InputOnly, Some(TcpEvent::Syn));
        assert_eq!(s, TcpState::SynRecv);
        assert!(s.is_active());
        let s = tcp_next_state(s, Direction::InputOnly, Some(TcpEvent::Ack));
        assert_eq!(s, TcpState::Established);
        let s = tcp_next_state(s, Direction::InputOnly, Some(TcpEvent::Fin));
        assert_eq!(s, TcpState::FinWait);
        assert!(!s.is_active());
        // A RST in SYN_RECV leaves it there (and active).
        let s = tcp_next_state(TcpState::SynRecv, Direction::InputOnly, Some(TcpEvent::Rst));
        assert_eq!(s, TcpState::SynRecv);
    }

    #[test]
    fn upper_threshold_sets_lower_clears() {
        let t = Thresholds { upper: 3, lower: 2 };
        let mut c = Counters::default();
        for _ in 0..3 {
            assert!(!c.overloaded);
            c.bind(Counted::Active, t);
        }
        assert!(c.overloaded);
        c.unbind(Counted::Active, t);
        assert!(c.overloaded, "2 is not below the lower threshold 2");
        c.unbind(Counted::Active, t);
        assert!(!c.overloaded);
    }

    #[test]
    fn without_lower_threshold_three_quarters_of_upper() {
        let t = Thresholds { upper: 4, lower: 0 };
        let mut c = Counters::default();
        for _ in 0..4 {
            c.bind(Counted::Inactive, t);
        }
        assert!(c.overloaded);
        c.unbind(Counted::Inactive, t);
        assert!(c.overloaded, "3 * 4 = 12 is not below 4 * 3");
        c.unbind(Counted::Inactive, t);
        assert!(!c.overloaded);
    }

    #[test]
    fn templates_do_not_count_towards_thresholds() {
        let t = Thresholds { upper: 1, lower: 0 };
        let mut c = Counters::default();
        c.bind(Counted::Template, t);
        assert!(!c.overloaded);
        assert_eq!(c.persist, 1);
    }
}
