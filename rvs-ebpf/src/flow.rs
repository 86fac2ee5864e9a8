//! Connection state: timeouts by state, IPVS's TCP transitions by direction
//! (`rvs_common::tcp`), and the rule for reusing a closed entry for a new connection.

use rvs_common::{ConnState, IPPROTO_TCP, Settings, tcp};

/// The idle timeout of a connection in `state`.
#[inline(always)]
pub fn timeout_ns(settings: &Settings, state: u8) -> u64 {
    // Constant indexes: the verifier cannot follow a bounds check on a copy of the index.
    let t = &settings.timeouts_ns;
    match state {
        0 => t[0],
        1 => t[1],
        2 => t[2],
        3 => t[3],
        5 => t[5],
        6 => t[6],
        7 => t[7],
        8 => t[8],
        9 => t[9],
        10 => t[10],
        11 => t[11],
        _ => t[ConnState::Udp as usize],
    }
}

/// The state a packet moves a connection to: UDP flows have one state; TCP follows IPVS's
/// table for the direction.
#[inline(always)]
pub fn next_state(dir: tcp::Direction, current: u8, proto: u8, flags: u8) -> u8 {
    if proto != IPPROTO_TCP {
        return ConnState::Udp as u8;
    }
    tcp::next_state(dir, current, flags)
}

/// Whether a SYN on an entry in `state` starts a new connection (scheduled afresh), as
/// IPVS's `conn_reuse_mode` does for TIME_WAIT and CLOSE (and rvs for FIN_WAIT too).
#[inline(always)]
pub fn reusable(state: u8) -> bool {
    state == ConnState::FinWait as u8
        || state == ConnState::Close as u8
        || state == ConnState::TimeWait as u8
}
