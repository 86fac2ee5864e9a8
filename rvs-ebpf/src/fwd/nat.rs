//! NAT (IPVS masquerading): the request's destination becomes the real server's address
//! and port, the reply's source becomes VIP:port again, with incremental IPv4 and TCP/UDP
//! checksum updates (a UDP checksum of 0 stays 0). ICMP errors about a NAT connection are
//! translated both ways with their quoted header, as IPVS's `ip_vs_nat_icmp` does: the
//! outer address, the quoted address and port, the outer and quoted IPv4 checksums and the
//! ICMP checksum (the quoted TCP/UDP checksum is left alone, as in IPVS).

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use rvs_common::{
    CONN_F_NAT, CONN_F_REPLY, CONN_REFRESH_NS, ConnEntry, FlowKey, IPPROTO_TCP, Settings, Verdict,
    icmp, tcp::Direction,
};

use crate::{
    access::{read_ne16, write_ne16, write_ne32},
    balance::{Outcome, Tx},
    csum::{ip_replace32, l4_csum_offset, l4_replace},
    flow::{moved, next_state, timeout_ns},
    fwd::dr::l2_out,
    maps::{CONNS, REALS},
    parse::{IcmpError, Packet},
    route::{self, NoRoute, Query},
    stats::{count_in, count_out},
};

/// Rewrites the destination of a request to `addr:port`.
#[inline(always)]
pub fn dnat(ctx: &XdpContext, pkt: &Packet, addr: u32, port: u16) -> Option<()> {
    let is_tcp = pkt.proto == IPPROTO_TCP;
    write_ne32(ctx, pkt.l3 + 16, addr)?;
    ip_replace32(ctx, pkt.l3, pkt.daddr, addr)?;
    write_ne16(ctx, pkt.l4 + 2, port)?;
    l4_replace(
        ctx,
        pkt.l4 + l4_csum_offset(pkt.proto),
        is_tcp,
        (pkt.daddr, addr),
        (pkt.dport, port),
    )
}

/// Rewrites the source of a reply to `addr:port`.
#[inline(always)]
pub fn snat(ctx: &XdpContext, pkt: &Packet, addr: u32, port: u16) -> Option<()> {
    let is_tcp = pkt.proto == IPPROTO_TCP;
    write_ne32(ctx, pkt.l3 + 12, addr)?;
    ip_replace32(ctx, pkt.l3, pkt.saddr, addr)?;
    write_ne16(ctx, pkt.l4, port)?;
    l4_replace(
        ctx,
        pkt.l4 + l4_csum_offset(pkt.proto),
        is_tcp,
        (pkt.saddr, addr),
        (pkt.sport, port),
    )
}

/// The request-direction key of a NAT connection from its reply entry.
#[inline(always)]
fn request_key(reply_key: &FlowKey, reply: &ConnEntry) -> FlowKey {
    FlowKey {
        src: reply_key.dst,
        dst: reply.peer_addr,
        sport: reply_key.dport,
        dport: reply.peer_port,
        proto: reply_key.proto,
    }
}

/// The reply-direction key of a NAT connection from its request entry.
#[inline(always)]
pub fn reply_key(request_key: &FlowKey, request: &ConnEntry) -> FlowKey {
    FlowKey {
        src: request.peer_addr,
        dst: request_key.src,
        sport: request.peer_port,
        dport: request_key.sport,
        proto: request_key.proto,
    }
}

/// Copies a state change and the refresh time to the other half of a NAT connection.
#[inline(always)]
pub fn sync_peer(peer: &FlowKey, state: u8, now: u64) {
    if let Some(p) = CONNS.get_ptr_mut(peer) {
        // SAFETY: a valid map value; concurrent writers only race on plain integers.
        unsafe {
            (*p).state = state;
            (*p).last_seen = now;
        }
    }
}

/// A packet from a real server matching the reply entry `rev` of a NAT connection:
/// rewritten back to VIP:port and sent towards the client through the FIB.
#[inline(always)]
pub fn reply(
    ctx: &XdpContext,
    pkt: &Packet,
    key: &FlowKey,
    rev: &mut ConnEntry,
    settings: &Settings,
    now: u64,
    bytes: u64,
) -> (Verdict, u32) {
    let idle = now.saturating_sub(rev.last_seen);
    if idle > timeout_ns(settings, rev.state) {
        // IPVS no longer knows the connection: the packet is the real server's own.
        return (Verdict::PassNatNoConn, xdp_action::XDP_PASS);
    }
    let state = next_state(Direction::Output, rev.state, pkt.proto, pkt.tcp_flags);
    if state != rev.state || idle > CONN_REFRESH_NS || pkt.tot_len > rev.fits {
        let q = Query {
            src: rev.peer_addr,
            dst: pkt.daddr,
            sport: rev.peer_port,
            dport: pkt.dport,
            proto: pkt.proto,
            tot_len: pkt.tot_len,
            want_src: false,
        };
        match route::lookup(ctx, &q) {
            Ok(r) => {
                rev.ifindex = r.ifindex;
                rev.dmac = r.dmac;
                rev.smac = r.smac;
                rev.fits = pkt.tot_len;
            }
            // The client side's MTU is smaller than the real server's: XDP cannot fragment
            // and rvs does not answer the real server with ICMP (yet).
            Err(NoRoute::FragNeeded(_)) => return (Verdict::DropTooBig, xdp_action::XDP_DROP),
            Err(NoRoute::Unreachable) => return (Verdict::DropNoRoute, xdp_action::XDP_DROP),
        }
        sync_peer(&request_key(key, rev), state, now);
        moved(rev.real, rev.real_gen, rev.state, state);
        rev.state = state;
        rev.last_seen = now;
    }
    if snat(ctx, pkt, rev.peer_addr, rev.peer_port).is_none() {
        return (Verdict::PassMalformed, xdp_action::XDP_PASS);
    }
    count_out(rev.service, rev.real, bytes);
    (
        Verdict::FwdNatReply,
        l2_out(ctx, rev.ifindex, &rev.dmac, &rev.smac),
    )
}

/// An ICMP error quoting a packet of a connection: translated as IPVS does for NAT,
/// forwarded as is (by the connection's method) for DR and TUN; any other ICMP error is the
/// host's.
#[inline(always)]
pub fn icmp(ctx: &XdpContext, e: &IcmpError, bytes: u64, tx: &mut Tx) -> Outcome {
    // The quoted packet travelled the other way: its reversed tuple is the key of the
    // entry for the direction this error travels.
    let key = FlowKey {
        src: e.q_daddr,
        dst: e.q_saddr,
        sport: e.q_dport,
        dport: e.q_sport,
        proto: e.q_proto as u32,
    };
    let Some(conn) = CONNS.get_ptr_mut(key) else {
        return Outcome::Done(Verdict::PassNotTcpUdp, xdp_action::XDP_PASS);
    };
    // SAFETY: a valid map value; concurrent writers only race on plain integers.
    let conn = unsafe { &mut *conn };
    if conn.flags & CONN_F_NAT == 0 {
        // A DR or TUN connection: IPVS forwards the error unchanged to the real server (so
        // PMTU discovery reaches it) by the connection's own method.
        let Some(real) = REALS.get(conn.real) else {
            return Outcome::Done(Verdict::PassNotTcpUdp, xdp_action::XDP_PASS);
        };
        if real.generation != conn.real_gen {
            return Outcome::Done(Verdict::PassNotTcpUdp, xdp_action::XDP_PASS);
        }
        count_in(conn.service, conn.real, false, bytes);
        tx.set(conn, real);
        return Outcome::Send(Verdict::FwdIcmp);
    }
    let outbound = conn.flags & CONN_F_REPLY != 0;
    let (addr, port) = (conn.peer_addr, conn.peer_port);
    if outbound && conn.fits == 0 {
        // No reply has been routed yet: find the way to the client now.
        let q = Query {
            src: addr,
            dst: e.daddr,
            sport: 0,
            dport: 0,
            proto: e.q_proto,
            tot_len: e.tot_len,
            want_src: false,
        };
        match route::lookup(ctx, &q) {
            Ok(r) => {
                conn.ifindex = r.ifindex;
                conn.dmac = r.dmac;
                conn.smac = r.smac;
            }
            Err(_) => return Outcome::Done(Verdict::DropNoRoute, xdp_action::XDP_DROP),
        }
    }
    if translate(ctx, e, outbound, addr, port).is_none() {
        return Outcome::Done(Verdict::PassMalformed, xdp_action::XDP_PASS);
    }
    if outbound {
        count_out(conn.service, conn.real, bytes);
    } else {
        count_in(conn.service, conn.real, false, bytes);
    }
    Outcome::Done(
        Verdict::FwdIcmp,
        l2_out(ctx, conn.ifindex, &conn.dmac, &conn.smac),
    )
}

/// `ip_vs_nat_icmp`: outbound (from the real server's side) the outer source, the quoted
/// destination and destination port become VIP:vport; inbound (from the client's side)
/// the outer destination, the quoted source and source port become RS:rport.
#[inline(always)]
fn translate(ctx: &XdpContext, e: &IcmpError, outbound: bool, addr: u32, port: u16) -> Option<()> {
    let (outer_at, outer_old, q_at, q_old, qp_at, qp_old) = if outbound {
        (12, e.saddr, 16, e.q_daddr, 2, e.q_dport)
    } else {
        (16, e.daddr, 12, e.q_saddr, 0, e.q_sport)
    };
    // Outer header.
    write_ne32(ctx, e.l3 + outer_at, addr)?;
    ip_replace32(ctx, e.l3, outer_old, addr)?;
    // Quoted header and its checksum; both are covered by the ICMP checksum.
    let (c, q) = icmp::nat_icmp_checksums(
        read_ne16(ctx, e.icmp + 2)?,
        read_ne16(ctx, e.q_l3 + 10)?,
        (q_old, addr),
        (qp_old, port),
    );
    write_ne32(ctx, e.q_l3 + q_at, addr)?;
    write_ne16(ctx, e.q_l3 + 10, q)?;
    write_ne16(ctx, e.q_l4 + qp_at, port)?;
    write_ne16(ctx, e.icmp + 2, c)
}
