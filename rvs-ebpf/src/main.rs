//! rvs's XDP programs: the load balancer's fast path and two helpers.
//!
//! `rvs_xdp` parses Ethernet (+ one 802.1Q tag), IPv4 (with options), TCP/UDP; finds the
//! virtual service by (proto, VIP, port) then (proto, VIP, 0); follows the connection table
//! for known flows and schedules new ones; rewrites the MAC header towards the real server
//! (direct routing) and sends the frame out with XDP_TX or XDP_REDIRECT. Anything that is not
//! for a service goes to the kernel untouched. Every return is counted by reason.
#![no_std]
#![no_main]
// The BPF target has no `Atomic*::fetch_add`; the intrinsic lowers to BPF_ATOMIC|BPF_FETCH.
#![allow(internal_features)]
#![feature(core_intrinsics)]

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::size_of,
};

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action},
    helpers::generated::{bpf_fib_lookup, bpf_ktime_get_coarse_ns, bpf_redirect},
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use rvs_common::{
    CONN_REFRESH_NS, ConnEntry, ConnState, Counters, DEFAULT_DISPATCH_SLOTS, DEFAULT_MAX_CONNS,
    DEFAULT_MAX_PERSIST, DEFAULT_MAX_REALS, DEFAULT_MAX_SERVICES, DispatchKind, FlowKey, Forward,
    IPPROTO_TCP, IPPROTO_UDP, NO_REAL, NS_PER_SEC, PersistEntry, PersistKey, RealEntry,
    SVC_F_ONE_PACKET, SVC_F_SLOPPY_TCP, SVC_F_STANDBY, ServiceEntry, ServiceKey, Settings,
    VERDICTS, Verdict, hash::ipvs_mh_source_hash,
};

// Map sizes here are defaults; the loader resizes them from the configuration before load.
#[map(name = "RVS_SERVICES")]
static SERVICES: HashMap<ServiceKey, ServiceEntry> = HashMap::pinned(DEFAULT_MAX_SERVICES, 0);
#[map(name = "RVS_REALS")]
static REALS: Array<RealEntry> = Array::pinned(DEFAULT_MAX_REALS, BPF_F_MMAPABLE);
#[map(name = "RVS_DISPATCH")]
static DISPATCH: Array<u32> = Array::pinned(DEFAULT_DISPATCH_SLOTS, BPF_F_MMAPABLE);
#[map(name = "RVS_CURSORS")]
static CURSORS: Array<u64> = Array::pinned(DEFAULT_MAX_SERVICES, 0);
#[map(name = "RVS_CONNS")]
static CONNS: LruHashMap<FlowKey, ConnEntry> = LruHashMap::pinned(DEFAULT_MAX_CONNS, 0);
#[map(name = "RVS_SERVICE_STATS")]
static SERVICE_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(DEFAULT_MAX_SERVICES, 0);
#[map(name = "RVS_REAL_STATS")]
static REAL_STATS: PerCpuArray<Counters> = PerCpuArray::pinned(DEFAULT_MAX_REALS, 0);
#[map(name = "RVS_VERDICTS")]
static VERDICT_COUNTS: PerCpuArray<u64> = PerCpuArray::pinned(VERDICTS, 0);
#[map(name = "RVS_PERSIST")]
static PERSIST: LruHashMap<PersistKey, PersistEntry> = LruHashMap::pinned(DEFAULT_MAX_PERSIST, 0);
#[map(name = "RVS_SETTINGS")]
static SETTINGS: Array<Settings> = Array::pinned(1, 0);

/// Lets userspace read and write arrays through mmap instead of a syscall per element.
const BPF_F_MMAPABLE: u32 = 1 << 10;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPV4_MIN_HLEN: usize = 20;
const TCP_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const IP_MF_OFFSET_MASK: u16 = 0x3FFF;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const AF_INET: u8 = 2;
const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;

/// The load balancer.
#[xdp]
pub fn rvs_xdp(ctx: XdpContext) -> u32 {
    let (verdict, action) = balance(&ctx);
    count_verdict(verdict);
    action
}

/// Passes every frame; attached to veth peers so XDP_TX/XDP_REDIRECT frames reach them.
#[xdp]
pub fn rvs_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark reference: parse Ethernet/IPv4/L4 ports, one hash lookup, swap MACs, XDP_TX.
#[xdp]
pub fn rvs_xdp_minimal_tx(ctx: XdpContext) -> u32 {
    let Some(pkt) = parse(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let key = ServiceKey {
        vip: pkt.daddr,
        port: pkt.dport,
        proto: pkt.proto,
        pad: 0,
    };
    if unsafe { SERVICES.get(key) }.is_none() {
        return xdp_action::XDP_PASS;
    }
    let Some(eth) = ptr_at::<[u8; 12]>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        let macs = &mut *eth;
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&macs[..6]);
        macs.copy_within(6..12, 0);
        macs[6..12].copy_from_slice(&dst);
    }
    xdp_action::XDP_TX
}

/// What the parser extracted from a frame that is IPv4 TCP/UDP and not a fragment.
struct Packet {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    tcp_flags: u8,
    tot_len: u16,
}

/// Returns a pointer to a `T` at `offset` if the whole `T` lies inside the frame.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Reads a big-endian u16 at `offset`.
#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p = ptr_at::<[u8; 2]>(ctx, offset)?;
    // SAFETY: bounds checked by ptr_at.
    Some(u16::from_be_bytes(unsafe { *p }))
}

/// Parser outcome that is not a packet to balance: the reason it is passed.
type ParseResult = Result<Packet, Verdict>;

#[inline(always)]
fn parse(ctx: &XdpContext) -> Option<Packet> {
    parse_frame(ctx).ok()
}

#[inline(always)]
fn parse_frame(ctx: &XdpContext) -> ParseResult {
    let mut l3 = ETH_HLEN;
    let mut ethertype = read_be16(ctx, 12).ok_or(Verdict::PassMalformed)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = read_be16(ctx, ETH_HLEN + 2).ok_or(Verdict::PassMalformed)?;
        l3 += VLAN_HLEN;
    }
    if ethertype != ETH_P_IP {
        return Err(Verdict::PassNotIpv4);
    }
    let ip = ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, l3).ok_or(Verdict::PassMalformed)?;
    // SAFETY: bounds checked by ptr_at.
    let ip = unsafe { &*ip };
    let version = ip[0] >> 4;
    let ihl = ((ip[0] & 0x0F) as usize) * 4;
    let tot_len = u16::from_be_bytes([ip[2], ip[3]]);
    if version != 4 || ihl < IPV4_MIN_HLEN || (tot_len as usize) < ihl {
        return Err(Verdict::PassMalformed);
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & IP_MF_OFFSET_MASK != 0 {
        return Err(Verdict::PassFragment);
    }
    let proto = ip[9];
    let saddr = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let daddr = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let l4 = l3 + ihl;
    let (ports, tcp_flags) = match proto {
        IPPROTO_TCP => {
            let tcp = ptr_at::<[u8; TCP_MIN_HLEN]>(ctx, l4).ok_or(Verdict::PassMalformed)?;
            // SAFETY: bounds checked by ptr_at.
            let tcp = unsafe { &*tcp };
            ([tcp[0], tcp[1], tcp[2], tcp[3]], tcp[13])
        }
        IPPROTO_UDP => {
            let udp = ptr_at::<[u8; UDP_HLEN]>(ctx, l4).ok_or(Verdict::PassMalformed)?;
            // SAFETY: bounds checked by ptr_at.
            let udp = unsafe { &*udp };
            ([udp[0], udp[1], udp[2], udp[3]], 0)
        }
        _ => return Err(Verdict::PassNotTcpUdp),
    };
    Ok(Packet {
        saddr,
        daddr,
        sport: u16::from_ne_bytes([ports[0], ports[1]]),
        dport: u16::from_ne_bytes([ports[2], ports[3]]),
        proto,
        tcp_flags,
        tot_len,
    })
}

#[inline(always)]
fn count_verdict(verdict: Verdict) {
    if let Some(c) = VERDICT_COUNTS.get_ptr_mut(verdict as u32) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn add_counters(map: &PerCpuArray<Counters>, id: u32, new_conn: bool, bytes: u64) {
    if let Some(c) = map.get_ptr_mut(id) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe {
            (*c).conns += new_conn as u64;
            (*c).packets_in += 1;
            (*c).bytes_in += bytes;
        }
    }
}

/// The TCP state a packet moves a connection to (client→server view, as IPVS's
/// input-only table for DR/TUN).
#[inline(always)]
fn next_state(current: u8, proto: u8, flags: u8) -> u8 {
    if proto != IPPROTO_TCP {
        return ConnState::Udp as u8;
    }
    if flags & TCP_RST != 0 {
        ConnState::Close as u8
    } else if flags & TCP_FIN != 0 {
        ConnState::FinWait as u8
    } else if flags & TCP_ACK != 0 && current == ConnState::SynRecv as u8 {
        ConnState::Established as u8
    } else {
        current
    }
}

#[inline(always)]
fn timeout_ns(settings: &Settings, state: u8) -> u64 {
    match state {
        0 => settings.timeouts_ns[0],
        1 => settings.timeouts_ns[1],
        2 => settings.timeouts_ns[2],
        3 => settings.timeouts_ns[3],
        _ => settings.timeouts_ns[4],
    }
}

/// Asks the kernel's FIB for the egress interface and MACs towards `real`.
#[inline(always)]
fn fib_to_real(ctx: &XdpContext, pkt: &Packet, real: u32, entry: &mut ConnEntry) -> bool {
    // Zeroed with eight u64 stores (core::mem::zeroed becomes a byte-by-byte memset
    // subprogram on BPF). SAFETY: all-zero is a valid bpf_fib_lookup (plain integers and
    // unions of them), and it fits in 64 bytes.
    const _: () = assert!(size_of::<FibParams>() <= size_of::<[u64; 8]>());
    let mut raw = [0u64; 8];
    let params = unsafe { &mut *(raw.as_mut_ptr() as *mut FibParams) };
    params.family = AF_INET;
    params.l4_protocol = pkt.proto;
    params.sport = pkt.sport;
    params.dport = pkt.dport;
    params.__bindgen_anon_1.tot_len = pkt.tot_len;
    params.ifindex = ctx.ingress_ifindex() as u32;
    params.__bindgen_anon_3.ipv4_src = pkt.saddr;
    params.__bindgen_anon_4.ipv4_dst = real;
    // SAFETY: params is a valid, initialised struct of the size passed.
    let rc = unsafe { bpf_fib_lookup(ctx.ctx as *mut _, params, size_of::<FibParams>() as i32, 0) };
    if rc != BPF_FIB_LKUP_RET_SUCCESS {
        return false;
    }
    entry.ifindex = params.ifindex;
    entry.dmac = params.dmac;
    entry.smac = params.smac;
    true
}

/// Picks a real server id for a new flow of `svc`, or None when none is available.
#[inline(always)]
fn schedule(svc: &ServiceEntry, pkt: &Packet) -> Option<u32> {
    if svc.table_len == 0 {
        return None;
    }
    let pos = if svc.kind == DispatchKind::Ring as u8 {
        let cursor = CURSORS.get_ptr_mut(svc.id)?;
        // SAFETY: the pointer is a valid u64 slot of the cursor array, shared by all CPUs,
        // hence the atomic add (IPVS's rr/wrr advance one shared position too). SeqCst, not
        // Relaxed: LLVM's BPF backend lowers a relaxed add to the old XADD, which returns
        // nothing, and silently uses the operand as the "previous value".
        let n = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(cursor, 1) };
        (n % svc.table_len as u64) as u32
    } else {
        let with_port = svc.kind == DispatchKind::MaglevSourcePort as u8;
        ipvs_mh_source_hash(pkt.saddr, pkt.sport, with_port) % svc.table_len
    };
    let real = *DISPATCH.get(svc.table_off.wrapping_add(pos))?;
    if real == NO_REAL { None } else { Some(real) }
}

#[inline(always)]
fn balance(ctx: &XdpContext) -> (Verdict, u32) {
    let pkt = match parse_frame(ctx) {
        Ok(pkt) => pkt,
        Err(verdict) => return (verdict, xdp_action::XDP_PASS),
    };
    let Some(settings) = SETTINGS.get(0) else {
        return (Verdict::PassMalformed, xdp_action::XDP_PASS);
    };
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let flow = FlowKey {
        src: pkt.saddr,
        dst: pkt.daddr,
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto as u32,
    };
    let is_tcp = pkt.proto == IPPROTO_TCP;
    let opens = !is_tcp || (pkt.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN;
    let bytes = (ctx.data_end() - ctx.data()) as u64;

    // Known connections first: the entry names its service and real server, so an
    // established packet needs no service lookup. An entry whose real server was removed
    // (generation changed) — which is also what deleting its service does — is not used.
    let mut real_gone = false;
    if let Some(conn) = CONNS.get_ptr_mut(flow) {
        // SAFETY: a valid map value; concurrent writers only race on plain integers.
        let conn = unsafe { &mut *conn };
        let expired = now.saturating_sub(conn.last_seen) > timeout_ns(settings, conn.state);
        let reused = is_tcp
            && opens
            && (conn.state == ConnState::FinWait as u8 || conn.state == ConnState::Close as u8);
        let real = REALS.get(conn.real);
        let real_ok = real.is_some_and(|r| r.generation == conn.real_gen);
        if !expired && !reused {
            if let (true, Some(real)) = (real_ok, real) {
                let state = next_state(conn.state, pkt.proto, pkt.tcp_flags);
                if state != conn.state || now.saturating_sub(conn.last_seen) > CONN_REFRESH_NS {
                    // A route or neighbour may have changed: refresh with the kernel.
                    if !fib_to_real(ctx, &pkt, real.addr, conn) {
                        return (Verdict::DropNoRoute, xdp_action::XDP_DROP);
                    }
                    conn.state = state;
                    conn.last_seen = now;
                }
                add_counters(&SERVICE_STATS, conn.service, false, bytes);
                add_counters(&REAL_STATS, conn.real, false, bytes);
                return (Verdict::FwdEstablished, forward(ctx, conn));
            }
            real_gone = true;
        }
    }

    let mut key = ServiceKey {
        vip: pkt.daddr,
        port: pkt.dport,
        proto: pkt.proto,
        pad: 0,
    };
    // SAFETY: the value is only read while the program runs (RCU-protected).
    let svc = match unsafe { SERVICES.get(key) } {
        Some(svc) => *svc,
        None => {
            key.port = 0;
            match unsafe { SERVICES.get(key) } {
                Some(svc) => *svc,
                None => return (Verdict::PassNotService, xdp_action::XDP_PASS),
            }
        }
    };
    if svc.flags & SVC_F_STANDBY != 0 {
        return (Verdict::PassStandby, xdp_action::XDP_PASS);
    }
    // A packet of a connection whose real server was removed: IPVS drops it; only a new
    // connection (SYN, or any UDP datagram) on the same tuple is scheduled again.
    if real_gone && !opens {
        return (Verdict::DropRealGone, xdp_action::XDP_DROP);
    }
    let one_packet = svc.flags & SVC_F_ONE_PACKET != 0 && !is_tcp;

    // A new flow (or one whose entry expired, was closed, or lost its real server).
    if is_tcp && !opens && svc.flags & SVC_F_SLOPPY_TCP == 0 {
        return (Verdict::PassNoConn, xdp_action::XDP_PASS);
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
    let Some(real_id) = persisted.or_else(|| schedule(&svc, &pkt)) else {
        return (Verdict::DropNoReal, xdp_action::XDP_DROP);
    };
    let Some(real) = REALS.get(real_id) else {
        return (Verdict::DropNoReal, xdp_action::XDP_DROP);
    };
    if svc.persist_timeout != 0 {
        let template = PersistEntry {
            last_seen: now,
            real: real_id,
            real_gen: real.generation,
        };
        let _ = PERSIST.insert(persist_key, template, 0);
    }
    if real.forward != Forward::DirectRoute as u8 {
        return (Verdict::DropUnsupported, xdp_action::XDP_DROP);
    }
    let mut conn = ConnEntry {
        last_seen: now,
        real: real_id,
        real_gen: real.generation,
        service: svc.id,
        state: next_state(ConnState::SynRecv as u8, pkt.proto, pkt.tcp_flags),
        ..ConnEntry::default()
    };
    if !fib_to_real(ctx, &pkt, real.addr, &mut conn) {
        return (Verdict::DropNoRoute, xdp_action::XDP_DROP);
    }
    // If the table is full the LRU evicts the least recently used flow; a failed insert
    // only means this flow is scheduled again on its next packet.
    if !one_packet {
        let _ = CONNS.insert(flow, conn, 0);
    }
    add_counters(&SERVICE_STATS, svc.id, true, bytes);
    add_counters(&REAL_STATS, real_id, true, bytes);
    (Verdict::FwdNew, forward(ctx, &conn))
}

/// The real server a live persistence template sends this client to, if any.
#[inline(always)]
fn persisted_real(key: &PersistKey, timeout_secs: u32, now: u64) -> Option<u32> {
    // SAFETY: read while the program runs (RCU-protected).
    let t = unsafe { PERSIST.get(key) }?;
    if now.saturating_sub(t.last_seen) > timeout_secs as u64 * NS_PER_SEC {
        return None;
    }
    let real = REALS.get(t.real)?;
    (real.generation == t.real_gen && real.addr != 0).then_some(t.real)
}

/// Rewrites the MAC header towards the real server and picks TX or REDIRECT.
#[inline(always)]
fn forward(ctx: &XdpContext, conn: &ConnEntry) -> u32 {
    let Some(eth) = ptr_at::<[u8; 12]>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at.
    let eth = unsafe { &mut *eth };
    eth[..6].copy_from_slice(&conn.dmac);
    eth[6..].copy_from_slice(&conn.smac);
    if conn.ifindex == ctx.ingress_ifindex() as u32 {
        xdp_action::XDP_TX
    } else {
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(conn.ifindex, 0) as u32 }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
