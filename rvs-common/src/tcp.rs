//! IPVS's TCP connection state machine (`tcp_states` in net/netfilter/ipvs/ip_vs_proto_tcp.c,
//! the normal, non-`secure_tcp` table, as in Linux >= 3.12 where an ACK on a NONE entry —
//! which only `sloppy_tcp` creates — goes to ESTABLISHED), so ActiveConn/InActConn and `-c` match IPVS.
//!
//! IPVS keeps three tables: INPUT (client → server packets of a NAT connection), OUTPUT
//! (server → client packets of a NAT connection) and INPUT-ONLY (DR and TUN connections,
//! whose replies bypass the director). A packet's row is picked by its flags, RST first,
//! then SYN, FIN, ACK (`tcp_state_idx`); a packet with none of them moves the connection to
//! CLOSE, as IPVS does.

use crate::ConnState;

/// TCP flag bits as in the header's byte 13.
pub const TCP_FIN: u8 = 0x01;
/// SYN.
pub const TCP_SYN: u8 = 0x02;
/// RST.
pub const TCP_RST: u8 = 0x04;
/// ACK.
pub const TCP_ACK: u8 = 0x10;

/// Which of IPVS's tables a packet is looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → server of a NAT connection (IPVS INPUT).
    Input = 0,
    /// Server → client of a NAT connection (IPVS OUTPUT).
    Output = 1,
    /// Client → server of a DR/TUN connection (IPVS INPUT-ONLY).
    InputOnly = 2,
}

// The rvs value of each IPVS state name used in the table (SYNACK only appears in the
// secure_tcp table, which rvs does not implement).
#[cfg(test)]
const NO: u8 = ConnState::None as u8;
const ES: u8 = ConnState::Established as u8;
const SS: u8 = ConnState::SynSent as u8;
const SR: u8 = ConnState::SynRecv as u8;
const FW: u8 = ConnState::FinWait as u8;
const TW: u8 = ConnState::TimeWait as u8;
const CL: u8 = ConnState::Close as u8;
const CW: u8 = ConnState::CloseWait as u8;
const LA: u8 = ConnState::LastAck as u8;
const LI: u8 = ConnState::Listen as u8;

/// IPVS's state number (column) of each rvs [`ConnState`] value, by rvs value; UDP maps to
/// CLOSE (never looked up: UDP has no transitions).
const IPVS_COLUMN: [u8; crate::CONN_STATES] = [
    3,  // SynRecv
    1,  // Established
    4,  // FinWait
    6,  // Close
    6,  // Udp (unused)
    0,  // None
    2,  // SynSent
    5,  // TimeWait
    7,  // CloseWait
    8,  // LastAck
    9,  // Listen
    10, // SynAck
];

/// `tcp_states[]`: [direction][syn, fin, ack, rst][IPVS state] → next state (rvs values).
const TABLE: [[[u8; 11]; 4]; 3] = [
    // INPUT
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// IPVS's `tcp_state_idx`: the table row for a packet's flags, or None (no SYN/FIN/ACK/RST).
#[inline(always)]
pub const fn row(flags: u8) -> Option<usize> {
    if flags & TCP_RST != 0 {
        Some(3)
    } else if flags & TCP_SYN != 0 {
        Some(0)
    } else if flags & TCP_FIN != 0 {
        Some(1)
    } else if flags & TCP_ACK != 0 {
        Some(2)
    } else {
        None
    }
}

/// [`TABLE`] with its columns in rvs's state order, so the XDP program indexes it with the
/// stored state directly (one bounds check the verifier can see).
const BY_RVS_STATE: [[[u8; crate::CONN_STATES]; 4]; 3] = {
    let mut t = [[[CL; crate::CONN_STATES]; 4]; 3];
    let mut d = 0;
    while d < 3 {
        let mut r = 0;
        while r < 4 {
            let mut st = 0;
            while st < crate::CONN_STATES {
                t[d][r][st] = TABLE[d][r][IPVS_COLUMN[st] as usize];
                st += 1;
            }
            r += 1;
        }
        d += 1;
    }
    t
};

/// The state a TCP packet with `flags`, seen in `dir`, moves a connection in `state` to.
/// A fresh connection starts from [`ConnState::None`].
#[inline(always)]
pub fn next_state(dir: Direction, state: u8, flags: u8) -> u8 {
    let Some(r) = row(flags) else {
        return CL;
    };
    let table = match dir {
        Direction::Input => &BY_RVS_STATE[0],
        Direction::Output => &BY_RVS_STATE[1],
        Direction::InputOnly => &BY_RVS_STATE[2],
    };
    let cols = match r {
        0 => &table[0],
        1 => &table[1],
        2 => &table[2],
        _ => &table[3],
    };
    match cols.get(state as usize) {
        Some(s) => *s,
        None => CL,
    }
}

/// Whether IPVS counts a connection in `state` as active (ActiveConn): `tcp_state_active`
/// (Linux >= 4.8) holds SYN_RECV, SYN_SENT, ESTABLISHED and SYNACK, so a SYN alone already
/// counts (recorded from the real kernel, rvs-sched's `ipvs_counts` replay). UDP never does.
pub const fn is_active(state: u8) -> bool {
    state == ES || state == SR || state == SS || state == ConnState::SynAck as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flag bytes from the TCP headers of a real handshake and close (tcpdump -x byte 13).
    const SYN: u8 = 0x02;
    const SYNACK: u8 = 0x12;
    const ACK: u8 = 0x10;
    const PSHACK: u8 = 0x18;
    const FINACK: u8 = 0x11;
    const RSTACK: u8 = 0x14;

    fn walk(steps: &[(Direction, u8)]) -> u8 {
        steps
            .iter()
            .fold(NO, |s, &(dir, flags)| next_state(dir, s, flags))
    }

    #[test]
    fn nat_handshake_data_and_close_from_both_directions() {
        use Direction::*;
        assert_eq!(walk(&[(Input, SYN)]), SR);
        assert_eq!(walk(&[(Input, SYN), (Output, SYNACK)]), SR);
        let est = [(Input, SYN), (Output, SYNACK), (Input, ACK)];
        assert_eq!(walk(&est), ES);
        let mut s = walk(&est);
        s = next_state(Input, s, PSHACK);
        s = next_state(Output, s, PSHACK);
        assert_eq!(s, ES);
        // Client closes first: INPUT fin from ES goes to CLOSE_WAIT, then the server's FIN
        // (OUTPUT fin from CW) to TIME_WAIT, the last ACK keeps TIME_WAIT.
        s = next_state(Input, s, FINACK);
        assert_eq!(s, CW);
        s = next_state(Output, s, FINACK);
        assert_eq!(s, TW);
        s = next_state(Input, s, ACK);
        assert_eq!(s, TW);
        // Server closes first: OUTPUT fin from ES to FIN_WAIT; client's FIN to TIME_WAIT.
        let mut s = walk(&est);
        s = next_state(Output, s, FINACK);
        assert_eq!(s, FW);
        s = next_state(Input, s, FINACK);
        assert_eq!(s, TW);
        // A reset from the server.
        assert_eq!(next_state(Output, walk(&est), RSTACK), CL);
    }

    #[test]
    fn input_only_table_for_dr_and_tun() {
        use Direction::InputOnly;
        let s = walk(&[(InputOnly, SYN), (InputOnly, ACK)]);
        assert_eq!(s, ES);
        assert_eq!(next_state(InputOnly, s, FINACK), FW);
        assert_eq!(next_state(InputOnly, FW, ACK), FW);
        assert_eq!(next_state(InputOnly, s, RSTACK), CL);
        // A sloppy-TCP connection created by an ACK is ESTABLISHED, as IPVS since the
        // sloppy_tcp change (Linux 3.12; kernel 6.1's ip_vs_proto_tcp.c: ack, sNO → sES).
        assert_eq!(next_state(InputOnly, NO, ACK), ES);
        assert_eq!(next_state(Direction::Input, NO, PSHACK), ES);
        // A FIN or a bare segment on a new entry closes it, as IPVS.
        assert_eq!(next_state(InputOnly, NO, FINACK), CL);
        // A SYN on a SYN_RECV connection stays there (retransmission).
        assert_eq!(next_state(InputOnly, SR, SYN), SR);
    }

    #[test]
    fn no_flags_closes_and_bad_state_is_safe() {
        assert_eq!(next_state(Direction::Input, ES, 0x00), CL);
        assert_eq!(next_state(Direction::Input, 200, ACK), CL);
        assert!(is_active(ES));
        assert!(is_active(SR));
        assert!(!is_active(FW));
        assert!(!is_active(ConnState::Udp as u8));
    }
}
