//! The connection table as connection sync sees it: a snapshot of the live flows (what a
//! MASTER streams) and installing flows a MASTER reported (what a BACKUP does), by
//! addresses rather than map ids, so the sync layer never knows the table's layout.
//!
//! An installed flow has no FIB result yet: its last-seen time is set more than
//! [`CONN_REFRESH_NS`] in the past, so the first packet it carries (after a takeover)
//! makes the XDP program look the route up, as it does for a flow idle for a while.

use std::net::{Ipv4Addr, SocketAddrV4};

use rvs_common::{CONN_REFRESH_NS, ConnEntry, ConnState, FlowKey, Forward, NS_PER_SEC, maps};
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
    /// NAT connections: not installed (syncing NAT needs the reply half too; not yet).
    pub nat: u64,
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

impl Dataplane {
    /// The live flows of the connection table (bound to a current real server, not
    /// expired), by addresses.
    pub fn conn_snapshot(&self) -> Vec<ConnView> {
        let now = monotonic_coarse_ns();
        self.conns
            .iter()
            .filter_map(|entry| entry.ok())
            // NAT connections are not synced yet (a BACKUP would need their reply half too).
            .filter(|(_, c)| c.flags & (rvs_common::CONN_F_REPLY | rvs_common::CONN_F_NAT) == 0)
            .filter(|(_, c)| self.conn_is_current(c) && self.time_left(c, now) > 0)
            .filter_map(|(k, c)| {
                let real = self.reals.get(c.real)?;
                Some(ConnView {
                    protocol: k.proto as u8,
                    client: SocketAddrV4::new(ip(k.src), u16::from_be(k.sport)),
                    vip: SocketAddrV4::new(ip(k.dst), u16::from_be(k.dport)),
                    real: SocketAddrV4::new(ip(real.addr), u16::from_be(real.port)),
                    forward: forward_of(real.forward),
                    state: state_of(c.state),
                    last_seen: c.last_seen,
                })
            })
            .collect()
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
            let exact = ServiceId {
                protocol,
                address: *f.vip.ip(),
                port: f.vip.port(),
            };
            let any_port = ServiceId { port: 0, ..exact };
            let planner = &self.planner;
            let Some((sid, entry)) = [exact, any_port]
                .into_iter()
                .find_map(|id| planner.service_entry(&id).map(|e| (id, e)))
            else {
                stats.no_service += 1;
                continue;
            };
            let Some(rid) = planner.real_id(&sid, *f.real.ip(), f.real.port()) else {
                stats.no_real += 1;
                continue;
            };
            let Some(real) = self.reals.get(rid).filter(|r| r.in_use()) else {
                stats.no_real += 1;
                continue;
            };
            if real.forward == Forward::Masq as u8 {
                stats.nat += 1;
                continue;
            }
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
            let conn = ConnEntry {
                last_seen,
                real: rid,
                real_gen: real.generation,
                service: entry.id,
                state: f.state as u8,
                ..ConnEntry::default()
            };
            // A new flow (the common case) costs one syscall: insert only if absent.
            if self.conns.insert(key, conn, BPF_NOEXIST).is_ok() {
                stats.installed += 1;
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
            match self
                .conns
                .insert(key, conn, 0)
                .map_err(map_err(maps::CONNS))
            {
                Ok(()) => stats.installed += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "installing a synced connection failed");
                    stats.failed += 1;
                }
            }
        }
        stats
    }
}
