//! fwmark classification: XDP runs before netfilter, so no mangle rule has marked the packet
//! yet; rvs gives it the mark its own rules say, and the fwmark service of that mark takes it
//! (IPVS looks fwmark services up before address/port ones).
//!
//! The rules are a small array walked from the last in use to the first, stopping at the
//! first match: the same as netfilter's walk where `MARK` does not stop and the last match
//! wins. The walk is bounded by [`MAX_MARK_RULES`] for the verifier; with no fwmark service
//! the count is 0 and the cost is one array lookup.

use rvs_common::{MAX_MARK_RULES, SERVICE_KEY_FWMARK, ServiceEntry, ServiceKey};

use crate::{
    maps::{MARK_COUNT, MARK_RULES},
    parse::Packet,
};

/// The fwmark service a packet belongs to, if a rule marks it and that mark has a service.
#[inline(always)]
pub fn fwmark_service(pkt: &Packet) -> Option<ServiceEntry> {
    let mark = classify(pkt)?;
    let key = ServiceKey {
        vip: mark,
        port: 0,
        proto: 0,
        pad: SERVICE_KEY_FWMARK,
    };
    crate::commit::service(&key)
}

/// The mark of the last rule that matches the packet.
#[inline(always)]
fn classify(pkt: &Packet) -> Option<u32> {
    let n = *MARK_COUNT.get(0)?;
    if n == 0 {
        return None;
    }
    let dport = u16::from_be(pkt.dport);
    let mut i = if n > MAX_MARK_RULES {
        MAX_MARK_RULES
    } else {
        n
    };
    for _ in 0..MAX_MARK_RULES {
        if i == 0 {
            return None;
        }
        i -= 1;
        let r = MARK_RULES.get(i)?;
        if r.matches(pkt.proto, pkt.saddr, pkt.daddr, dport) {
            return Some(r.mark);
        }
    }
    None
}
