//! The connection table as connection sync sees it: a snapshot of the live flows (what a
//! MASTER streams) and installing flows a MASTER reported (what a BACKUP does), by
//! addresses rather than map ids, so the sync layer never knows the table's layout.
//!
//! An installed flow has no FIB result yet: its last-seen time is set more than
//! [`CONN_REFRESH_NS`] in the past, so the first packet it carries (after a takeover)
//! makes the XDP program look the route up, as it does for a flow idle for a while.
//!
//! A NAT connection is one record (client, VIP, real server, as IPVS sends it) for two
//! table entries: the request entry (keyed by the client's tuple, naming the real server)
//! and the reply entry (keyed by the real server's tuple, naming the VIP), installed as the
//! XDP program creates them; the reply entry's route is looked up on the first reply.
//!
//! Persistence templates (the PERSIST map, IPVS's templates) are snapshotted and installed
//! by address the same way, so a persistent client sticks to its real server after a
//! takeover.

use std::net::{Ipv4Addr, SocketAddrV4};

use rvs_common::{
    CONN_F_NAT, CONN_F_REPLY, CONN_REFRESH_NS, ConnEntry, ConnState, FlowKey, Forward, NS_PER_SEC,
    PersistEntry, PersistKey, ServiceEntry, maps,
};
use rvs_config::{Protocol, ServiceId};

use crate::{Dataplane, map_err, monotonic_coarse_ns};

/// `BPF_NOEXIST`: create the element only if it does not exist.
const BPF_NOEXIST: u64 = 1;

/// One live flow of the table, by addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnView {
    /// IP protocol number.
    pub protocol: u8,
    /// Client address and port.
    pub client: SocketAddrV4,
    /// Virtual address and port.
    pub vip: SocketAddrV4,
    /// Real server address and port.
    pub real: SocketAddrV4,
    /// Forwarding method of the real server.
    pub forward: Forward,
    /// Flow state.
    pub state: ConnState,
    /// Last packet (CLOCK_MONOTONIC_COARSE ns, the XDP program's clock).
    pub last_seen: u64,
}

/// A flow to install, by addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInstall {
    /// IP protocol number.
    pub protocol: u8,
    /// Client address and port.
    pub client: SocketAddrV4,
    /// Virtual address and port.
    pub vip: SocketAddrV4,
    /// Real server address and port.
    pub real: SocketAddrV4,
    /// Flow state.
    pub state: ConnState,
    /// Seconds the flow lives from now without traffic.
    pub timeout_secs: u32,
}

/// What became of a batch of installs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstallStats {
    /// Written to the table.
    pub installed: u64,
    /// Already there, fresher than the report (left alone).
    pub fresh: u64,
    /// No local service for (protocol, VIP, port) nor (protocol, VIP, 0).
    pub no_service: u64,
    /// The service has no such real server here.
    pub no_real: u64,
    /// The map refused the write (full, or a map error).
    pub failed: u64,
}

/// One live persistence template, by addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateView {
    /// IP protocol of its service.
    pub protocol: u8,
    /// Client address under the service's persistence netmask.
    pub client: Ipv4Addr,
    /// Virtual address and port of its service (port 0 for a port-0 service).
    pub vip: SocketAddrV4,
    /// Real server address and port.
    pub real: SocketAddrV4,
    /// Forwarding method of the real server.
    pub forward: Forward,
    /// The service's persistence timeout, seconds.
    pub timeout_secs: u32,
    /// Last connection scheduled through it (CLOCK_MONOTONIC_COARSE ns).
    pub last_seen: u64,
}

/// A persistence template to install, by addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateInstall {
    /// IP protocol of the service; 0 (IPVS's IPPROTO_IP, a port-0 service's template)
    /// matches the VIP's port-0 services of every protocol.
    pub protocol: u8,
    /// Client address (masked again with the local service's netmask).
    pub client: Ipv4Addr,
    /// Virtual address and port.
    pub vip: SocketAddrV4,
    /// Real server address and port.
    pub real: SocketAddrV4,
    /// Seconds the template lives from now.
    pub timeout_secs: u32,
}

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a.to_ne_bytes())
}

fn raw(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

fn forward_of(f: u8) -> Forward {
    match f {
        x if x == Forward::Tunnel as u8 => Forward::Tunnel,
        x if x == Forward::Masq as u8 => Forward::Masq,
        _ => Forward::DirectRoute,
    }
}

fn state_of(s: u8) -> ConnState {
    ConnState::from_u8(s).unwrap_or(ConnState::Close)
}

/// The reply-direction key of a NAT connection from its request entry (the XDP program's
/// `nat::reply_key`).
fn reply_key(request: &FlowKey, conn: &ConnEntry) -> FlowKey {
    FlowKey {
        src: conn.peer_addr,
        dst: request.src,
        sport: conn.peer_port,
        dport: request.sport,
        proto: request.proto,
    }
}

/// The local id of real server `real` of service `sid`; a port-0 service's real servers
/// are configured with port 0 while its connections carry the port the client asked for.
fn real_id(planner: &crate::Planner, sid: &ServiceId, real: SocketAddrV4) -> Option<u32> {
    planner
        .real_id(sid, *real.ip(), real.port())
        .or_else(|| (sid.port == 0).then(|| planner.real_id(sid, *real.ip(), 0))?)
}

/// The local service for `(protocol, vip)`: the exact port, else the VIP's port-0 service.
fn service_for(
    planner: &crate::Planner,
    protocol: Protocol,
    vip: SocketAddrV4,
) -> Option<(ServiceId, ServiceEntry)> {
    let exact = ServiceId {
        protocol,
        address: *vip.ip(),
        port: vip.port(),
    };
    let any_port = ServiceId { port: 0, ..exact };
    [exact, any_port]
        .into_iter()
        .find_map(|id| planner.service_entry(&id).map(|e| (id, e)))
}

impl Dataplane {
    /// The live flows of the connection table (bound to a current real server, not
    /// expired), by addresses.
    pub fn conn_snapshot(&self) -> Vec<ConnView> {
        let now = monotonic_coarse_ns();
        self.conns
            .iter()
            .filter_map(|entry| entry.ok())
            // A NAT connection is listed once, by its request entry (as IPVS has one
            // connection for both directions).
            .filter(|(_, c)| c.flags & CONN_F_REPLY == 0)
            .filter(|(_, c)| self.conn_is_current(c) && self.time_left(c, now) > 0)
            .filter_map(|(k, c)| self.view_of(&k, &c))
            .collect()
    }

    /// A request entry by addresses (None when its real server id is out of range).
    pub(crate) fn view_of(&self, k: &FlowKey, c: &ConnEntry) -> Option<ConnView> {
        let real = self.reals.get(c.real)?;
        // NAT: the port the XDP program rewrote to (a port-0 real keeps the client's),
        // IPVS's dport.
        let (raddr, rport) = if c.flags & CONN_F_NAT != 0 {
            (c.peer_addr, c.peer_port)
        } else {
            (real.addr, real.port)
        };
        Some(ConnView {
            protocol: k.proto as u8,
            client: SocketAddrV4::new(ip(k.src), u16::from_be(k.sport)),
            vip: SocketAddrV4::new(ip(k.dst), u16::from_be(k.dport)),
            real: SocketAddrV4::new(ip(raddr), u16::from_be(rport)),
            forward: forward_of(real.forward),
            state: state_of(c.state),
            last_seen: c.last_seen,
        })
    }

    /// Installs flows reported by a sync MASTER: each is bound to the local service for its
    /// (protocol, VIP, port) — or the VIP's port-0 service — and the local id of its real
    /// server, and expires `timeout_secs` from now unless traffic refreshes it. A flow
    /// already in the table with the same real server and a later last-seen is kept.
    pub fn install_conns(&mut self, flows: &[ConnInstall]) -> InstallStats {
        let now = monotonic_coarse_ns();
        let mut stats = InstallStats::default();
        for f in flows {
            let protocol = match f.protocol {
                rvs_common::IPPROTO_TCP => Protocol::Tcp,
                rvs_common::IPPROTO_UDP => Protocol::Udp,
                _ => {
                    stats.no_service += 1;
                    continue;
                }
            };
            let planner = &self.planner;
            let Some((sid, entry)) = service_for(planner, protocol, f.vip) else {
                stats.no_service += 1;
                continue;
            };
            let Some(rid) = real_id(planner, &sid, f.real) else {
                stats.no_real += 1;
                continue;
            };
            let Some(real) = self.reals.get(rid).filter(|r| r.in_use()) else {
                stats.no_real += 1;
                continue;
            };
            // Expire `timeout_secs` from now under the state's (global) timeout, and be
            // old enough that the first packet refreshes the route.
            let state_timeout = self
                .settings
                .timeouts_ns
                .get(f.state as usize)
                .copied()
                .unwrap_or(0);
            let age = state_timeout
                .saturating_sub(u64::from(f.timeout_secs) * NS_PER_SEC)
                .max(2 * CONN_REFRESH_NS);
            if age >= state_timeout {
                stats.fresh += 1;
                continue;
            }
            let key = FlowKey {
                src: raw(*f.client.ip()),
                dst: raw(*f.vip.ip()),
                sport: f.client.port().to_be(),
                dport: f.vip.port().to_be(),
                proto: u32::from(f.protocol),
            };
            let last_seen = now.saturating_sub(age);
            let mut conn = ConnEntry {
                last_seen,
                real: rid,
                real_gen: real.generation,
                service: entry.id,
                state: f.state as u8,
                ..ConnEntry::default()
            };
            // NAT: the request entry names the real server (a port-0 real keeps the
            // client's port), and a reply entry keyed by the real server's tuple names the
            // VIP, exactly as the XDP program makes them for a new connection.
            let nat = real.forward == Forward::Masq as u8;
            let reply = nat.then(|| {
                conn.flags = CONN_F_NAT;
                conn.peer_addr = real.addr;
                conn.peer_port = if real.port == 0 { key.dport } else { real.port };
                let rev = ConnEntry {
                    flags: CONN_F_NAT | CONN_F_REPLY,
                    peer_addr: key.dst,
                    peer_port: key.dport,
                    ..conn
                };
                (reply_key(&key, &conn), rev)
            });
            // A new flow (the common case) costs one syscall: insert only if absent.
            if self.conns.insert(key, conn, BPF_NOEXIST).is_ok() {
                match reply.map(|(k, v)| self.conns.insert(k, v, 0)) {
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "installing a synced NAT reply entry failed");
                        let _ = self.conns.remove(&key);
                        stats.failed += 1;
                    }
                    _ => stats.installed += 1,
                }
                continue;
            }
            if let Ok(old) = self.conns.get(&key, 0)
                && old.real == rid
                && old.real_gen == real.generation
                && old.last_seen >= last_seen
                && old.state == f.state as u8
            {
                stats.fresh += 1;
                continue;
            }
            let written = self.conns.insert(key, conn, 0).and_then(|()| match reply {
                Some((k, v)) => self.conns.insert(k, v, 0),
                None => Ok(()),
            });
            match written.map_err(map_err(maps::CONNS)) {
                Ok(()) => stats.installed += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "installing a synced connection failed");
                    stats.failed += 1;
                }
            }
        }
        stats
    }

    /// The live persistence templates (their real server current, younger than their
    /// service's persistence timeout), by addresses.
    pub fn template_snapshot(&self) -> Vec<TemplateView> {
        let now = monotonic_coarse_ns();
        // Service id → its key and entry (persistence timeout), from the services map.
        let services: std::collections::HashMap<u32, (rvs_common::ServiceKey, ServiceEntry)> = self
            .services
            .iter()
            .filter_map(|e| e.ok())
            .map(|(k, e)| (e.id, (k, e)))
            .collect();
        self.persist
            .iter()
            .filter_map(|e| e.ok())
            .filter_map(|(k, t)| {
                let (skey, svc) = services.get(&k.service)?;
                let real = self.reals.get(t.real)?;
                let live = svc.persist_timeout != 0
                    && real.in_use()
                    && real.generation == t.real_gen
                    && now.saturating_sub(t.last_seen)
                        <= u64::from(svc.persist_timeout) * NS_PER_SEC;
                live.then(|| TemplateView {
                    protocol: skey.proto,
                    client: ip(k.client),
                    vip: SocketAddrV4::new(ip(skey.vip), u16::from_be(skey.port)),
                    real: SocketAddrV4::new(ip(real.addr), u16::from_be(real.port)),
                    forward: forward_of(real.forward),
                    timeout_secs: svc.persist_timeout,
                    last_seen: t.last_seen,
                })
            })
            .collect()
    }

    /// Installs persistence templates reported by a sync MASTER into the PERSIST map: each
    /// is bound to the local service for its (protocol, VIP, port) — protocol 0 meaning the
    /// VIP's port-0 services of TCP and UDP — and the local id of its real server, and lives
    /// `timeout_secs` from now (capped by the local persistence timeout) unless a new
    /// connection refreshes it. A local template that is younger is kept.
    pub fn install_templates(&mut self, templates: &[TemplateInstall]) -> InstallStats {
        let now = monotonic_coarse_ns();
        let mut stats = InstallStats::default();
        let mut writes = Vec::new();
        for t in templates {
            let protocols: &[Protocol] = match t.protocol {
                rvs_common::IPPROTO_TCP => &[Protocol::Tcp],
                rvs_common::IPPROTO_UDP => &[Protocol::Udp],
                0 => &[Protocol::Tcp, Protocol::Udp],
                _ => {
                    stats.no_service += 1;
                    continue;
                }
            };
            let mut found = false;
            let mut matched = false;
            for &protocol in protocols {
                let Some((sid, entry)) = service_for(&self.planner, protocol, t.vip) else {
                    continue;
                };
                found = true;
                if entry.persist_timeout == 0 {
                    continue;
                }
                let Some(rid) = real_id(&self.planner, &sid, t.real) else {
                    continue;
                };
                let Some(real) = self.reals.get(rid).filter(|r| r.in_use()) else {
                    continue;
                };
                matched = true;
                let age =
                    u64::from(entry.persist_timeout.saturating_sub(t.timeout_secs)) * NS_PER_SEC;
                let key = PersistKey {
                    service: entry.id,
                    client: raw(t.client) & entry.persist_mask,
                };
                let value = PersistEntry {
                    last_seen: now.saturating_sub(age),
                    real: rid,
                    real_gen: real.generation,
                };
                writes.push((key, value));
            }
            if !found {
                stats.no_service += 1;
            } else if !matched {
                stats.no_real += 1;
            }
        }
        let persist = &mut self.persist;
        for (key, value) in writes {
            if let Ok(old) = persist.get(&key, 0)
                && old.real == value.real
                && old.real_gen == value.real_gen
                && old.last_seen >= value.last_seen
            {
                stats.fresh += 1;
                continue;
            }
            match persist.insert(key, value, 0) {
                Ok(()) => stats.installed += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "installing a synced template failed");
                    stats.failed += 1;
                }
            }
        }
        stats
    }
}
