//! The messages of the kernel-interop check: what rvs sends a kernel IPVS backup in the
//! VM (`vm/interop.sh`), kept here so the committed fixture, the example that prints it and
//! the test that compares them are one definition.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::ipvs::{FlowState, Forward, IPPROTO_TCP, IPPROTO_UDP};
use crate::master::{LocalConn, Packer, StateTimeouts};
use crate::wire::{ExtKind, ext_message, v0_message};

/// Sync id of the interop messages.
pub const SYNCID: u8 = 9;

fn conn(client: u8, cport: u16, protocol: u8, vport: u16, state: FlowState) -> LocalConn {
    LocalConn {
        protocol,
        client: SocketAddrV4::new(Ipv4Addr::new(198, 18, 101, client), cport),
        vip: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), vport),
        real: SocketAddrV4::new(Ipv4Addr::new(198, 18, 200, 11), vport),
        forward: Forward::Dr,
        state,
        last_seen: 0,
    }
}

/// The flows the messages carry: two established TCP, one FIN_WAIT, one CLOSE, one UDP.
pub fn flows() -> Vec<LocalConn> {
    vec![
        conn(1, 41001, IPPROTO_TCP, 80, FlowState::Established),
        conn(2, 41002, IPPROTO_TCP, 80, FlowState::Established),
        conn(3, 41003, IPPROTO_TCP, 80, FlowState::FinWait),
        conn(4, 41004, IPPROTO_TCP, 80, FlowState::Close),
        conn(5, 5353, IPPROTO_UDP, 53, FlowState::Udp),
    ]
}

/// The datagrams: a table request (kernel must ignore it), the flows in one version 1
/// message, and one more flow as version 0.
pub fn rvs_messages() -> Vec<Vec<u8>> {
    let recs: Vec<_> = flows()
        .iter()
        .map(|c| c.repr(&StateTimeouts::IPVS))
        .collect();
    let mut out = vec![ext_message(SYNCID, ExtKind::TableRequest).to_vec()];
    out.extend(Packer::new(SYNCID, 1472).pack(&recs).unwrap_or_default());
    let v0 = conn(6, 41006, IPPROTO_TCP, 80, FlowState::Established).repr(&StateTimeouts::IPVS);
    out.extend(v0_message(SYNCID, &[v0], 1472));
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of lower-case or upper-case hex (whitespace ignored); `None` if not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}
