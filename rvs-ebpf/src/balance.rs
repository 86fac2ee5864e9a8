//! The balancer's driver, as Katran's `process_packet`, in two programs so that each
//! verifies on its own (one program held both at the verifier's 1M-instruction limit):
//! [`run`] (`rvs_xdp`) parses, filters, follows a known connection (either direction of
//! NAT) and sends by its entry; a packet with no usable entry goes by tail call to
//! [`run_new`] (`rvs_xdp_new`), which finds the service, schedules, remembers the
//! connection and forwards by the real server's method.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use rvs_common::{
    CONN_F_NAT, CONN_F_REPLY, CONN_REFRESH_NS, ConnEntry, ConnState, FlowKey, Forward, IPPROTO_TCP,
    NO_REAL, NewFlowScratch, PROG_NEW_FLOW, PersistKey, RealEntry, RouteCache,
    SETTINGS_F_ALL_PACKETS, SETTINGS_F_NAT, SVC_F_ONE_PACKET, SVC_F_SLOPPY_TCP, SVC_F_STANDBY,
    ServiceKey, Settings, Verdict, addr_filter_slot,
    midflow::{MidflowCount, SVC_F_MIDFLOW, SVC_F_SECOND_CHANCE},
    tcp::{Direction, TCP_ACK, TCP_RST, TCP_SYN},
    tunnel::overhead,
};

use crate::{
    classify::fwmark_service,
    flow::{bind, moved, next_state, reusable, timeout_ns, unbind},
    fwd::{dr::l2_out, icmp::frag_needed, nat, tun},
    maps::{ADDR_FILTER, CONNS, NAT_SOURCES, PROGS, REALS, ROUTES, SCRATCH, SETTINGS},
    midflow,
    parse::{Packet, Parsed, parse_frame},
    route::{self, NoRoute, Query},
    schedule::{persisted_real, remember, schedule},
    stats::count_in,
};

/// How a frame leaves: decided by [`balance`], carried out once by [`finish`] (one copy of
/// each rewriter in the program keeps the verifier's work small).
/// (Small and plain: copying a large enum let LLVM store undefined registers, which the
/// verifier refuses.)
pub enum Outcome {
    /// Done: the verdict and the action.
    Done(Verdict, u32),
    /// Forward by the real server's method, as the `Tx` filled in says.
    Send(Verdict),
    /// Too big for the egress MTU (the MTU less the encapsulation).
    TooBig(u16),
}

/// What sending needs from the connection and its real server.
#[derive(Clone, Copy, Default)]
pub struct Tx {
    /// Egress interface.
    pub ifindex: u32,
    /// Next-hop MAC.
    pub dmac: [u8; 6],
    /// Egress MAC.
    pub smac: [u8; 6],
    /// NAT: the real server's address; TUN: the outer source.
    pub peer_addr: u32,
    /// NAT: the real server's port.
    pub peer_port: u16,
    /// A `Forward` as u8.
    pub forward: u8,
    /// The real server (tunnel destination).
    pub real: RealEntry,
}

impl Tx {
    #[inline(always)]
    pub fn set(&mut self, conn: &ConnEntry, real: &RealEntry) {
        self.ifindex = conn.ifindex;
        self.dmac = conn.dmac;
        self.smac = conn.smac;
        self.peer_addr = conn.peer_addr;
        self.peer_port = conn.peer_port;
        self.forward = real.forward;
        self.real = *real;
    }
}

/// `rvs_xdp`: balances one frame of a known connection (or an ICMP error about one) and
/// sends it; hands any other TCP/UDP packet to `rvs_xdp_new`. The verdict to count and the
/// XDP action.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> (Verdict, u32) {
    let parsed = match parse_frame(ctx) {
        Ok(p) => p,
        // What the kernel's IP layer would route on is dropped; the rest it drops itself.
        Err(Verdict::DropBadL4Header) => {
            return (Verdict::DropBadL4Header, xdp_action::XDP_DROP);
        }
        Err(verdict) => return (verdict, xdp_action::XDP_PASS),
    };
    let Some(settings) = SETTINGS.get(0) else {
        return (Verdict::PassMalformed, xdp_action::XDP_PASS);
    };
    // The host's own traffic (neither address a VIP nor a NAT real server's) leaves first,
    // before any hash lookup, as Katran checks the VIP before the flow table.
    if let Parsed::Flow(p) = &parsed
        && !maybe_ours(p, settings.flags)
    {
        return (Verdict::PassNotService, xdp_action::XDP_PASS);
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let mut tx = Tx::default();
    // One place sends (each rewriter appears once in the program): flows and ICMP errors
    // about DR/TUN connections alike.
    let (pkt, outcome) = match parsed {
        Parsed::Flow(p) => {
            let o = established(ctx, &p, settings, bytes, &mut tx);
            (p, o)
        }
        Parsed::Icmp(e) => (e.outer(), nat::icmp(ctx, &e, bytes, &mut tx)),
    };
    finish(ctx, &pkt, outcome, &tx)
}

/// `rvs_xdp_new`, tail-called by `rvs_xdp` for a TCP/UDP packet with no usable connection
/// entry: parses the frame again (the verifier checks this program's packet accesses on
/// their own), takes what the lookup found from the scratch slot, schedules and sends.
#[inline(always)]
pub fn run_new(ctx: &XdpContext) -> (Verdict, u32) {
    // rvs_xdp parsed this very frame as a flow; anything else cannot reach here.
    let Ok(Parsed::Flow(pkt)) = parse_frame(ctx) else {
        return (Verdict::PassMalformed, xdp_action::XDP_PASS);
    };
    let (Some(settings), Some(scratch)) = (SETTINGS.get(0), SCRATCH.get(0)) else {
        return (Verdict::PassMalformed, xdp_action::XDP_PASS);
    };
    let scratch = *scratch;
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let mut tx = Tx::default();
    let outcome = new_flow(ctx, &pkt, settings, &scratch, bytes, &mut tx);
    finish(ctx, &pkt, outcome, &tx)
}

/// Carries out an [`Outcome`]: one copy of each rewriter per program.
#[inline(always)]
fn finish(ctx: &XdpContext, pkt: &Packet, outcome: Outcome, tx: &Tx) -> (Verdict, u32) {
    match outcome {
        Outcome::Done(v, a) => (v, a),
        Outcome::Send(_)
            if tx.forward == Forward::Tunnel as u8 && tun::encap_refused(pkt, &tx.real) =>
        {
            (Verdict::DropUnsupported, xdp_action::XDP_DROP)
        }
        Outcome::Send(v) => (v, transmit(ctx, pkt, tx)),
        Outcome::TooBig(mtu) => too_big(ctx, pkt, mtu),
    }
}

/// The flow key of a TCP/UDP packet.
#[inline(always)]
fn flow_key(pkt: &Packet) -> FlowKey {
    FlowKey {
        src: pkt.saddr,
        dst: pkt.daddr,
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto as u32,
    }
}

/// Whether a packet may open a connection: any UDP datagram, a TCP SYN (no ACK, no RST).
#[inline(always)]
fn opens(pkt: &Packet) -> bool {
    pkt.proto != IPPROTO_TCP || (pkt.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN
}

/// A packet of a known connection goes out by its entry (filling `tx`); any other is handed
/// to `rvs_xdp_new` with what the lookup found. The tail call does not return; when it
/// fails (an empty program slot) the packet is passed and counted as such.
#[inline(always)]
fn established(
    ctx: &XdpContext,
    pkt: &Packet,
    settings: &Settings,
    bytes: u64,
    tx: &mut Tx,
) -> Outcome {
    let pkt = *pkt;
    let now = crate::flow::now();
    let flow = flow_key(&pkt);
    let is_tcp = pkt.proto == IPPROTO_TCP;

    // Known connections first: the entry names its service and real server, so an
    // established packet needs no service lookup. An entry whose real server was removed
    // (generation changed) — which is also what deleting its service does — is not used.
    // The entry a new connection replaces (real, generation, state): no longer counted.
    // (Plain initialised integers, not an Option: LLVM stores an Option's undefined payload
    // from a clobbered register, which the verifier refuses.)
    let mut handoff = NewFlowScratch {
        now,
        old_real: NO_REAL,
        ..NewFlowScratch::default()
    };
    if let Some(conn) = CONNS.get_ptr_mut(flow) {
        // SAFETY: a valid map value; concurrent writers only race on plain integers.
        let conn = unsafe { &mut *conn };
        if conn.flags & CONN_F_REPLY != 0 {
            let (v, a) = nat::reply(ctx, &pkt, &flow, conn, settings, now, bytes);
            return Outcome::Done(v, a);
        }
        let idle = now.saturating_sub(conn.last_seen);
        let expired = idle > timeout_ns(settings, conn.state);
        let reused = is_tcp && opens(&pkt) && reusable(conn.state);
        let real = REALS.get(conn.real);
        let real_ok = real.is_some_and(|r| r.generation == conn.real_gen);
        (handoff.old_real, handoff.old_gen, handoff.old_state) =
            (conn.real, conn.real_gen, conn.state);
        if !expired && !reused {
            if let (true, Some(real)) = (real_ok, real) {
                let dir = direction(real);
                let state = next_state(dir, conn.state, pkt.proto, pkt.tcp_flags);
                let size = out_len(&pkt, real);
                if state != conn.state || idle > CONN_REFRESH_NS || size > conn.fits {
                    // A route or neighbour may have changed: refresh with the kernel.
                    if let Err(o) = route_to_real(ctx, &pkt, real, size, conn) {
                        return o;
                    }
                    if conn.flags & CONN_F_NAT != 0 {
                        nat::sync_peer(&nat::reply_key(&flow, conn), state, now);
                    }
                    moved(conn.real, conn.real_gen, conn.state, state);
                    crate::events::state_change(settings, &flow, conn, state);
                    conn.state = state;
                    conn.last_seen = now;
                }
                count_in(conn.service, conn.real, false, bytes);
                tx.set(conn, real);
                return Outcome::Send(Verdict::FwdEstablished);
            }
            handoff.real_gone = 1;
        }
    }
    if let Some(slot) = SCRATCH.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; the frame runs to its end (both programs) on this CPU.
        unsafe { *slot = handoff };
        // SAFETY: a tail call to a program of the same type; returns only on failure.
        unsafe { PROGS.tail_call(ctx, PROG_NEW_FLOW) };
    }
    Outcome::Done(Verdict::PassTailCallFailed, xdp_action::XDP_PASS)
}

/// Decides what happens to a TCP/UDP packet with no usable connection entry (a new flow, or
/// one whose entry expired, was closed, or lost its real server, as `handoff` says); for a
/// forward, fills `tx`.
#[inline(always)]
fn new_flow(
    ctx: &XdpContext,
    pkt: &Packet,
    settings: &Settings,
    handoff: &NewFlowScratch,
    bytes: u64,
    tx: &mut Tx,
) -> Outcome {
    let pkt = *pkt;
    let now = handoff.now;
    let flow = flow_key(&pkt);
    let is_tcp = pkt.proto == IPPROTO_TCP;
    let opens = opens(&pkt);
    let real_gone = handoff.real_gone != 0;
    let (old_real, old_gen, old_state) = (handoff.old_real, handoff.old_gen, handoff.old_state);

    let mut key = ServiceKey {
        vip: pkt.daddr,
        port: pkt.dport,
        proto: pkt.proto,
        pad: 0,
    };
    // fwmark services first, as IPVS looks up a marked packet's service by its mark.
    let marked = fwmark_service(&pkt);
    let svc = match marked.or_else(|| crate::commit::service(&key)) {
        Some(svc) => svc,
        None => {
            key.port = 0;
            match crate::commit::service(&key) {
                Some(svc) => svc,
                None => {
                    let (v, a) = not_for_a_service(&pkt, settings.flags);
                    return Outcome::Done(v, a);
                }
            }
        }
    };
    // A spoofed source equal to the VIP (a LAND packet): never scheduled.
    if pkt.saddr == pkt.daddr {
        return Outcome::Done(Verdict::DropSourceIsVip, xdp_action::XDP_DROP);
    }
    if svc.flags & SVC_F_STANDBY != 0 {
        return Outcome::Done(Verdict::PassStandby, xdp_action::XDP_PASS);
    }
    // A packet of a connection whose real server was removed: IPVS drops it; only a new
    // connection (SYN, or any UDP datagram) on the same tuple is scheduled again.
    if real_gone && !opens {
        return Outcome::Done(Verdict::DropRealGone, xdp_action::XDP_DROP);
    }
    let one_packet = svc.flags & SVC_F_ONE_PACKET != 0 && !is_tcp;

    // A new flow (or one whose entry expired, was closed, or lost its real server).
    // A mid-flow TCP packet (no SYN, no entry): scheduled by the hash schedulers under
    // sloppy_tcp (ECMP re-hashed the flow here), passed otherwise (rvs_common::midflow).
    // (One flag, set by the planner: testing the scheduler kind here as well multiplied
    // the verifier's states past its limit.) A RST is never scheduled, as in IPVS.
    let mid = is_tcp && !opens;
    if mid && (svc.flags & (SVC_F_SLOPPY_TCP | SVC_F_MIDFLOW) == 0 || pkt.tcp_flags & TCP_RST != 0)
    {
        midflow::count(MidflowCount::Passed);
        return Outcome::Done(Verdict::PassNoConn, xdp_action::XDP_PASS);
    }
    // Persistence: a client (under the netmask) goes back to its real server while its
    // template lives, even when that server is quiesced (IPVS with expire_quiescent_template
    // off, its default); otherwise it is scheduled and the template (re)made.
    let persist_key = PersistKey {
        service: svc.id,
        client: pkt.saddr & svc.persist_mask,
    };
    let persisted = if svc.persist_timeout != 0 {
        persisted_real(&persist_key, svc.persist_timeout, now)
    } else {
        None
    };
    // Second chance: within the window after an mh table change, a mid-flow packet is
    // scheduled by the mid-flow table (the previous choice where that server stays).
    // The planner lays that table right after the current one and flags the service while
    // the window lasts (no map lookup here: one more walked the verifier past its limit).
    // Branch-free: any branch here doubled the states the verifier walks through the rest
    // of the function, past its limit.
    let second = (mid as u32) & (svc.flags as u32 >> SVC_F_SECOND_CHANCE.trailing_zeros()) & 1;
    let mut svc = svc;
    svc.table_off = svc
        .table_off
        .wrapping_add(svc.table_len & 0u32.wrapping_sub(second));
    let Some(real_id) =
        persisted.or_else(|| schedule(ctx, &svc, pkt.saddr, pkt.sport, pkt.daddr, now))
    else {
        return Outcome::Done(Verdict::DropNoReal, xdp_action::XDP_DROP);
    };
    let Some(real) = REALS.get(real_id) else {
        return Outcome::Done(Verdict::DropNoReal, xdp_action::XDP_DROP);
    };
    if svc.persist_timeout != 0 {
        remember(&persist_key, real_id, real.generation, now);
    }
    let nat = real.forward == Forward::Masq as u8;
    // A port-0 service keeps the port the client asked for (IPVS: dest port 0).
    let rport = if real.port == 0 { pkt.dport } else { real.port };
    let mut conn = ConnEntry {
        last_seen: now,
        real: real_id,
        real_gen: real.generation,
        service: svc.id,
        state: next_state(
            direction(real),
            ConnState::None as u8,
            pkt.proto,
            pkt.tcp_flags,
        ),
        ..ConnEntry::default()
    };
    if nat {
        conn.flags = CONN_F_NAT;
        conn.peer_addr = real.addr;
        conn.peer_port = rport;
    }
    let size = out_len(&pkt, real);
    if let Err(o) = route_new(ctx, &pkt, real_id, real, size, now, &mut conn) {
        return o;
    }
    // If the table is full the LRU evicts the least recently used flow; a failed insert
    // only means this flow is scheduled again on its next packet.
    if !one_packet && CONNS.insert(flow, conn, 0).is_ok() {
        // IPVS counts a connection from its bind to its free; the entry replaced (expired,
        // closed and reused, or of a removed server) is freed here.
        if old_real != NO_REAL {
            unbind(old_real, old_gen, old_state);
        }
        bind(real_id, real.generation, conn.state);
        crate::events::new_conn(settings, &flow, &conn);
        if nat {
            // The reply half: found by the real server's packets, routed on first use.
            let rev = ConnEntry {
                flags: CONN_F_NAT | CONN_F_REPLY,
                peer_addr: pkt.daddr,
                peer_port: pkt.dport,
                fits: 0,
                ..conn
            };
            let _ = CONNS.insert(nat::reply_key(&flow, &conn), rev, 0);
        }
    }
    count_in(svc.id, real_id, true, bytes);
    tx.set(&conn, real);
    Outcome::Send(Verdict::FwdNew)
}

/// Which of IPVS's state tables a request packet uses.
#[inline(always)]
fn direction(real: &RealEntry) -> Direction {
    if real.forward == Forward::Masq as u8 {
        Direction::Input
    } else {
        Direction::InputOnly
    }
}

/// The IPv4 total length of the packet as it will leave towards `real`.
#[inline(always)]
fn out_len(pkt: &Packet, real: &RealEntry) -> u16 {
    if real.forward == Forward::Tunnel as u8 {
        pkt.tot_len
            .saturating_add(overhead(real.tun_type, real.tun_flags))
    } else {
        pkt.tot_len
    }
}

/// Whether a TCP/UDP packet may concern the balancer: its destination may be a VIP or its
/// source a NAT real server (reply entries), by the address filter; every packet when the
/// filter is off. A false positive only takes the full path.
#[inline(always)]
fn maybe_ours(pkt: &Packet, flags: u64) -> bool {
    flags & SETTINGS_F_ALL_PACKETS != 0 || in_filter(pkt.daddr) || in_filter(pkt.saddr)
}

/// Whether `addr`'s bit is set in the address filter.
#[inline(always)]
fn in_filter(addr: u32) -> bool {
    let (word, mask) = addr_filter_slot(addr);
    ADDR_FILTER.get(word).is_some_and(|w| w & mask != 0)
}

/// A packet for no service: a NAT real server's own traffic is told apart (counted), all of
/// it goes to the kernel untouched.
#[inline(always)]
fn not_for_a_service(pkt: &Packet, flags: u64) -> (Verdict, u32) {
    // SAFETY: read while the program runs (RCU-protected).
    if flags & SETTINGS_F_NAT != 0 && unsafe { NAT_SOURCES.get(pkt.saddr) }.is_some() {
        return (Verdict::PassNatNoConn, xdp_action::XDP_PASS);
    }
    (Verdict::PassNotService, xdp_action::XDP_PASS)
}

/// Routes towards the real server (with the MTU check for the packet as it will leave) and
/// stores the result in `conn`; the Err is what to return instead.
#[inline(always)]
fn route_to_real(
    ctx: &XdpContext,
    pkt: &Packet,
    real: &RealEntry,
    size: u16,
    conn: &mut ConnEntry,
) -> Result<(), Outcome> {
    let tunnel = real.forward == Forward::Tunnel as u8;
    let q = Query {
        src: if tunnel { 0 } else { pkt.saddr },
        dst: real.addr,
        sport: pkt.sport,
        dport: if real.forward == Forward::Masq as u8 {
            conn.peer_port
        } else {
            pkt.dport
        },
        proto: pkt.proto,
        tot_len: size,
        want_src: tunnel,
    };
    match route::lookup(ctx, &q) {
        Ok(r) => {
            conn.ifindex = r.ifindex;
            conn.dmac = r.dmac;
            conn.smac = r.smac;
            conn.fits = size;
            if tunnel {
                conn.peer_addr = r.src;
            }
            Ok(())
        }
        Err(NoRoute::FragNeeded(mtu)) => {
            Err(Outcome::TooBig(mtu.saturating_sub(size - pkt.tot_len)))
        }
        Err(NoRoute::Unreachable) => Err(Outcome::Done(Verdict::DropNoRoute, xdp_action::XDP_DROP)),
    }
}

/// [`route_to_real`] for a new connection, through this CPU's cache of the route to the
/// real server (`rvs_common::RouteCache`): a hit skips the FIB lookup; a miss asks the FIB
/// and refills the entry. Routes are per real server, not per client: a change of route or
/// neighbour reaches new connections within `CONN_REFRESH_NS`, as it reaches established
/// ones; routing that depends on the client's address (source policy rules, multipath
/// hashing towards one real server) sees the first client of that interval.
#[inline(always)]
fn route_new(
    ctx: &XdpContext,
    pkt: &Packet,
    real_id: u32,
    real: &RealEntry,
    size: u16,
    now: u64,
    conn: &mut ConnEntry,
) -> Result<(), Outcome> {
    let tunnel = real.forward == Forward::Tunnel as u8;
    let iif = ctx.ingress_ifindex() as u32;
    let cache = ROUTES.get_ptr_mut(real_id);
    if let Some(c) = cache {
        // SAFETY: this CPU's slot; a program runs to its end on one CPU.
        let c = unsafe { &*c };
        if c.stamp != 0
            && c.generation == real.generation
            && c.iif == iif
            && size <= c.fits
            && now.saturating_sub(c.stamp) <= CONN_REFRESH_NS
        {
            conn.ifindex = c.ifindex;
            conn.dmac = c.dmac;
            conn.smac = c.smac;
            conn.fits = size;
            if tunnel {
                conn.peer_addr = c.src;
            }
            return Ok(());
        }
    }
    route_to_real(ctx, pkt, real, size, conn)?;
    if let Some(c) = cache {
        // SAFETY: as above.
        unsafe {
            *c = RouteCache {
                stamp: now,
                generation: real.generation,
                iif,
                ifindex: conn.ifindex,
                dmac: conn.dmac,
                smac: conn.smac,
                src: conn.peer_addr,
                fits: size,
                pad: [0; 2],
            };
        }
    }
    Ok(())
}

/// A packet that does not fit the egress MTU: ICMP fragmentation-needed when DF is set
/// (with the MTU less the encapsulation, as IPVS), dropped otherwise (XDP cannot fragment).
#[inline(always)]
fn too_big(ctx: &XdpContext, pkt: &Packet, mtu: u16) -> (Verdict, u32) {
    if !pkt.df {
        return (Verdict::DropTooBig, xdp_action::XDP_DROP);
    }
    match frag_needed(ctx, pkt, mtu) {
        Some(action) => (Verdict::TxFragNeeded, action),
        None => (Verdict::DropTooBig, xdp_action::XDP_DROP),
    }
}

/// Sends the packet of `conn` by the real server's forwarding method.
#[inline(always)]
fn transmit(ctx: &XdpContext, pkt: &Packet, tx: &Tx) -> u32 {
    if tx.forward == Forward::Masq as u8 {
        if nat::dnat(ctx, pkt, tx.peer_addr, tx.peer_port).is_none() {
            return xdp_action::XDP_DROP;
        }
    } else if tx.forward == Forward::Tunnel as u8
        && tun::encap(ctx, pkt, &tx.real, tx.peer_addr).is_none()
    {
        return xdp_action::XDP_DROP;
    }
    l2_out(ctx, tx.ifindex, &tx.dmac, &tx.smac)
}
