//! What a BACKUP does with a received datagram: the kernel's checks
//! (`ip_vs_process_message`: size, sync id), then each record as a connection-table
//! install with IPVS's timeout rules (`ip_vs_proc_conn`): a version 1 record's timeout as
//! sent, a version 0 record's from the state's default (3 minutes for templates).

use std::net::{IpAddr, SocketAddrV4};

use crate::ipvs::{
    CONN_F_TEMPLATE, FlowState, Forward, IPPROTO_TCP, IPPROTO_UDP, V0_TEMPLATE_TIMEOUT,
};
use crate::wire::{ConnRepr, ExtKind, Kind, MessageRepr, WireError};

/// A connection for the local table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Install {
    /// IP protocol (TCP or UDP).
    pub protocol: u8,
    /// Client address and port.
    pub client: SocketAddrV4,
    /// Virtual address and port.
    pub vip: SocketAddrV4,
    /// Real server address and port.
    pub real: SocketAddrV4,
    /// Forwarding method the master used (the local one comes from the local service).
    pub forward: Option<Forward>,
    /// Flow state.
    pub state: FlowState,
    /// Seconds the entry lives without traffic from now.
    pub timeout: u32,
}

/// A persistence template for the local table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateInstall {
    /// Protocol of the template (0 for a port-0 service's).
    pub protocol: u8,
    /// Client address under the persistence netmask.
    pub client: std::net::Ipv4Addr,
    /// Virtual address and port (0 for a port-0 service).
    pub vip: SocketAddrV4,
    /// Real server address and port.
    pub real: SocketAddrV4,
    /// Seconds the template lives from now.
    pub timeout: u32,
}

/// Why a record was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// An IPv6 connection (rvs balances IPv4).
    Ipv6,
    /// A protocol rvs does not balance (SCTP).
    Protocol(u8),
    /// A state number out of range for its protocol (the kernel drops these too).
    State(u16),
    /// Persistence-engine data (rvs has no SIP engine).
    PersistenceEngine,
}

/// What a datagram amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Connections and templates to install, and records skipped.
    Records {
        /// Protocol version of the message.
        version: u8,
        /// Connections.
        conns: Vec<Install>,
        /// Templates.
        templates: Vec<TemplateInstall>,
        /// Records not installed, with why.
        skipped: Vec<Skip>,
        /// Why decoding stopped early, if it did.
        stopped: Option<WireError>,
    },
    /// A peer asks for the whole table (rvs extension).
    TableRequest,
    /// Another sync id (filtered as the kernel does when ours is not 0).
    OtherSyncId(u8),
    /// Not a valid message (dropped whole).
    Invalid(WireError),
}

/// Receives datagrams for one sync id (0 = any, as in the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receiver {
    syncid: u8,
}

fn v4(a: IpAddr) -> Option<std::net::Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

impl Receiver {
    /// A receiver of messages with sync id `syncid` (0 accepts every sync id).
    pub fn new(syncid: u8) -> Receiver {
        Receiver { syncid }
    }

    /// Decodes one datagram.
    pub fn receive(&self, bytes: &[u8]) -> Received {
        let msg = match MessageRepr::parse(bytes) {
            Ok(m) => m,
            Err(e) => return Received::Invalid(e),
        };
        if self.syncid != 0 && msg.syncid != self.syncid {
            return Received::OtherSyncId(msg.syncid);
        }
        let version = match msg.kind {
            Kind::Ext(ExtKind::TableRequest) => return Received::TableRequest,
            Kind::V1 => 1,
            Kind::V0 => 0,
        };
        let mut conns = Vec::with_capacity(msg.conns.len());
        let mut templates = Vec::new();
        let mut skipped = Vec::new();
        for c in &msg.conns {
            match Self::install(c) {
                Ok(Ok(i)) => conns.push(i),
                Ok(Err(t)) => templates.push(t),
                Err(s) => skipped.push(s),
            }
        }
        Received::Records {
            version,
            conns,
            templates,
            skipped,
            stopped: msg.stopped,
        }
    }

    fn install(c: &ConnRepr<'_>) -> Result<Result<Install, TemplateInstall>, Skip> {
        let (Some(ca), Some(va), Some(da)) = (v4(c.caddr), v4(c.vaddr), v4(c.daddr)) else {
            return Err(Skip::Ipv6);
        };
        if c.caddr.is_ipv6() {
            return Err(Skip::Ipv6);
        }
        if c.pe_data.is_some() {
            return Err(Skip::PersistenceEngine);
        }
        let vip = SocketAddrV4::new(va, c.vport);
        let real = SocketAddrV4::new(da, c.dport);
        if c.flags & CONN_F_TEMPLATE != 0 {
            let timeout = if c.timeout == 0 {
                V0_TEMPLATE_TIMEOUT
            } else {
                c.timeout
            };
            return Ok(Err(TemplateInstall {
                protocol: c.protocol,
                client: ca,
                vip,
                real,
                timeout,
            }));
        }
        if c.protocol != IPPROTO_TCP && c.protocol != IPPROTO_UDP {
            return Err(Skip::Protocol(c.protocol));
        }
        let state = FlowState::from_ipvs(c.protocol, c.state).ok_or(Skip::State(c.state))?;
        let timeout = if c.timeout == 0 {
            // Version 0: the default timeout of the state as sent (IPVS's table).
            if c.protocol == IPPROTO_TCP {
                crate::ipvs::tcp::TIMEOUTS[c.state as usize]
            } else {
                crate::ipvs::UDP_TIMEOUT
            }
        } else {
            c.timeout
        };
        Ok(Ok(Install {
            protocol: c.protocol,
            client: SocketAddrV4::new(ca, c.cport),
            vip,
            real,
            forward: Forward::from_flags(c.flags),
            state,
            timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::{LocalConn, Packer, StateTimeouts};
    use crate::wire::{ext_message, v0_message};
    use std::net::Ipv4Addr;

    fn local(i: u16) -> LocalConn {
        LocalConn {
            protocol: IPPROTO_TCP,
            client: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 10000 + i),
            vip: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 80),
            real: SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 8080),
            forward: Forward::Dr,
            state: FlowState::Established,
            last_seen: 0,
        }
    }

    #[test]
    fn installs_what_a_master_packed() {
        let recs: Vec<_> = (0..3)
            .map(|i| local(i).repr(&StateTimeouts::IPVS))
            .collect();
        let msgs = Packer::new(5, 1472).pack(&recs).unwrap();
        let Received::Records { conns, version, .. } = Receiver::new(5).receive(&msgs[0]) else {
            panic!("not records");
        };
        assert_eq!(version, 1);
        assert_eq!(conns.len(), 3);
        assert_eq!(conns[2].client.port(), 10002);
        assert_eq!(
            conns[2].real,
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 8080)
        );
        assert_eq!(conns[2].forward, Some(Forward::Dr));
        assert_eq!(conns[2].timeout, 900);
        assert_eq!(Receiver::new(6).receive(&msgs[0]), Received::OtherSyncId(5));
        assert!(matches!(
            Receiver::new(0).receive(&msgs[0]),
            Received::Records { .. }
        ));
    }

    #[test]
    fn version_0_gets_default_timeouts() {
        let mut r = local(1).repr(&StateTimeouts::IPVS);
        r.state = crate::ipvs::tcp::TIME_WAIT;
        let m = v0_message(1, &[r], 1472).unwrap();
        let Received::Records { conns, version, .. } = Receiver::new(1).receive(&m) else {
            panic!("not records");
        };
        assert_eq!(version, 0);
        assert_eq!(conns[0].state, FlowState::TimeWait);
        assert_eq!(conns[0].timeout, 120);
    }

    #[test]
    fn table_requests_and_garbage() {
        assert_eq!(
            Receiver::new(3).receive(&ext_message(3, ExtKind::TableRequest)),
            Received::TableRequest
        );
        assert!(matches!(
            Receiver::new(3).receive(&[0, 3]),
            Received::Invalid(WireError::TooShort)
        ));
        let mut m = ext_message(3, ExtKind::TableRequest);
        m[3] = 99;
        assert!(matches!(
            Receiver::new(3).receive(&m),
            Received::Invalid(WireError::SizeMismatch { .. })
        ));
    }
}
