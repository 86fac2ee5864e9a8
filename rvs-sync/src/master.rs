//! What a MASTER sends, decided from periodic snapshots of its connection table.
//!
//! IPVS decides per packet (`ip_vs_sync_conn_needed`): a TCP connection is sent when it
//! enters ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT or TIME_WAIT (never in the others), and
//! again every `sync_period` (50) packets counted from `sync_threshold` (3); UDP at the
//! threshold and every period; templates with the connections they control. rvs's fast
//! path counts no packets per connection, so [`Tracker`] sees the table through periodic
//! snapshots instead and sends:
//!
//! - a connection it has not sent yet, once its state is one IPVS syncs (the TCP states
//!   above; UDP at once);
//! - a connection whose state or real server changed since it was last sent;
//! - a connection that carried traffic since it was last sent, once half its state's
//!   timeout has passed since (at least 10 s, as the kernel's `sync_refresh_period`
//!   logic), so the BACKUP's copy never expires while the MASTER's lives;
//! - everything, on [`Tracker::full`] (a BACKUP asked for the table: an rvs extension).
//!
//! Connections that vanish from the table are forgotten; the BACKUP lets its copies
//! expire by their timeouts, as IPVS backups do.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddrV4};

use crate::ipvs::{
    CONN_F_INACTIVE, CONN_F_NOOUTPUT, CONN_F_TEMPLATE, CTPL_ASSURED, CTPL_NONE, FlowState, Forward,
};
use crate::wire::{Builder, ConnRepr, WireError};

/// Nanoseconds per second.
const NS: u64 = 1_000_000_000;
/// Shortest refresh interval (the kernel's 10 s floor on half a timeout).
const MIN_REFRESH_NS: u64 = 10 * NS;

/// One entry of the local connection table, as the MASTER's dataplane reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalConn {
    /// IP protocol (TCP or UDP).
    pub protocol: u8,
    /// Client address and port.
    pub client: SocketAddrV4,
    /// Virtual address and port.
    pub vip: SocketAddrV4,
    /// Real server address and port.
    pub real: SocketAddrV4,
    /// Forwarding method.
    pub forward: Forward,
    /// Flow state.
    pub state: FlowState,
    /// When the flow last carried a packet (monotonic nanoseconds).
    pub last_seen: u64,
}

/// Timeouts per flow state, in seconds (what the record's timeout field carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTimeouts {
    /// SYN_RECV.
    pub syn_recv: u32,
    /// ESTABLISHED.
    pub established: u32,
    /// FIN_WAIT.
    pub fin_wait: u32,
    /// CLOSE.
    pub close: u32,
    /// UDP.
    pub udp: u32,
}

impl StateTimeouts {
    /// IPVS's defaults.
    pub const IPVS: StateTimeouts = StateTimeouts {
        syn_recv: 60,
        established: 900,
        fin_wait: 120,
        close: 10,
        udp: 300,
    };

    /// The timeout of `state`.
    pub fn of(&self, state: FlowState) -> u32 {
        match state {
            FlowState::SynRecv => self.syn_recv,
            FlowState::Established => self.established,
            FlowState::FinWait => self.fin_wait,
            FlowState::Close => self.close,
            FlowState::Udp => self.udp,
            // Not configurable (ipvsadm --set has tcp, tcpfin, udp): IPVS's defaults.
            s => s.ipvs_timeout(),
        }
    }
}

impl Default for StateTimeouts {
    fn default() -> Self {
        Self::IPVS
    }
}

impl LocalConn {
    /// The sync record for this connection, as IPVS would send it: forwarding bits,
    /// NOOUTPUT for DR/TUN, INACTIVE unless established; the state's full timeout.
    pub fn repr(&self, timeouts: &StateTimeouts) -> ConnRepr<'static> {
        let mut flags = self.forward.flags();
        if self.forward != Forward::Nat {
            flags |= CONN_F_NOOUTPUT;
        }
        if self.state != FlowState::Established {
            flags |= CONN_F_INACTIVE;
        }
        ConnRepr {
            protocol: self.protocol,
            flags,
            state: self.state.ipvs_state(),
            caddr: IpAddr::V4(*self.client.ip()),
            cport: self.client.port(),
            vaddr: IpAddr::V4(*self.vip.ip()),
            vport: self.vip.port(),
            daddr: IpAddr::V4(*self.real.ip()),
            dport: self.real.port(),
            fwmark: 0,
            timeout: timeouts.of(self.state),
            seq: None,
            pe_data: None,
            pe_name: None,
        }
    }
}

/// One persistence template of the local table (IPVS's connection template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTemplate {
    /// IP protocol of its service (0, IPVS's IPPROTO_IP, for a port-0 service's).
    pub protocol: u8,
    /// Client address under the persistence netmask.
    pub client: std::net::Ipv4Addr,
    /// Virtual address and port (port 0 for a port-0 service).
    pub vip: SocketAddrV4,
    /// Real server address and port.
    pub real: SocketAddrV4,
    /// Forwarding method.
    pub forward: Forward,
    /// The persistence timeout, seconds (what IPVS sends as a template's timeout).
    pub timeout: u32,
    /// When a connection was last scheduled through it (monotonic nanoseconds).
    pub last_seen: u64,
}

impl LocalTemplate {
    /// The sync record for this template, as IPVS sends one: TEMPLATE, the forwarding
    /// bits, NOOUTPUT for DR/TUN, INACTIVE, client port 0, the persistence timeout; state
    /// NONE the first time, ASSURED after (`assured`).
    pub fn repr(&self, assured: bool) -> ConnRepr<'static> {
        let mut flags = CONN_F_TEMPLATE | CONN_F_INACTIVE | self.forward.flags();
        if self.forward != Forward::Nat {
            flags |= CONN_F_NOOUTPUT;
        }
        ConnRepr {
            protocol: self.protocol,
            flags,
            state: if assured { CTPL_ASSURED } else { CTPL_NONE },
            caddr: IpAddr::V4(self.client),
            cport: 0,
            vaddr: IpAddr::V4(*self.vip.ip()),
            vport: self.vip.port(),
            daddr: IpAddr::V4(*self.real.ip()),
            dport: self.real.port(),
            fwmark: 0,
            timeout: self.timeout,
            seq: None,
            pe_data: None,
            pe_name: None,
        }
    }
}

type FlowId = (u8, SocketAddrV4, SocketAddrV4);

#[derive(Debug, Clone, Copy)]
struct Sent {
    state: FlowState,
    real: SocketAddrV4,
    /// The connection's last_seen when it was sent.
    seen: u64,
    /// When it was sent.
    at: u64,
    /// Scan round that last saw it (entries not seen in a round are forgotten).
    round: u64,
}

/// Remembers what was sent and decides, per snapshot, what to send next.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    sent: HashMap<FlowId, Sent>,
    /// Templates sent, by (protocol, client with port 0, VIP).
    templates: HashMap<FlowId, Sent>,
    template_round: u64,
    round: u64,
    timeouts: StateTimeouts,
}

impl Tracker {
    /// A tracker that sends records with `timeouts`.
    pub fn new(timeouts: StateTimeouts) -> Tracker {
        Tracker {
            timeouts,
            ..Tracker::default()
        }
    }

    /// Changes the timeouts records carry (`ipvsadm --set`).
    pub fn set_timeouts(&mut self, timeouts: StateTimeouts) {
        self.timeouts = timeouts;
    }

    /// Number of connections remembered as sent.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Takes one snapshot of the table at `now` (monotonic ns) and returns the records to
    /// send, in table order; forgets connections the snapshot no longer has.
    pub fn observe(
        &mut self,
        now: u64,
        conns: impl IntoIterator<Item = LocalConn>,
    ) -> Vec<ConnRepr<'static>> {
        self.round += 1;
        let out = self.consider(now, conns);
        let round = self.round;
        self.sent.retain(|_, s| s.round == round);
        out
    }

    /// Connections the dataplane reported as new or changed (its event ring), not a whole
    /// table: the records to send, by the same rules as [`Tracker::observe`]; nothing is
    /// forgotten (the next snapshot does that).
    pub fn observe_events(
        &mut self,
        now: u64,
        conns: impl IntoIterator<Item = LocalConn>,
    ) -> Vec<ConnRepr<'static>> {
        self.consider(now, conns)
    }

    fn consider(
        &mut self,
        now: u64,
        conns: impl IntoIterator<Item = LocalConn>,
    ) -> Vec<ConnRepr<'static>> {
        let round = self.round;
        let mut out = Vec::new();
        for c in conns {
            if !c.state.synced() {
                continue;
            }
            let id = (c.protocol, c.client, c.vip);
            let refresh = (u64::from(self.timeouts.of(c.state)) * NS / 2).max(MIN_REFRESH_NS);
            let send = match self.sent.get_mut(&id) {
                None => true,
                Some(s) => {
                    s.round = round;
                    s.state != c.state
                        || s.real != c.real
                        || (c.last_seen > s.seen && now.saturating_sub(s.at) >= refresh)
                }
            };
            if send {
                out.push(c.repr(&self.timeouts));
                self.sent.insert(
                    id,
                    Sent {
                        state: c.state,
                        real: c.real,
                        seen: c.last_seen,
                        at: now,
                        round,
                    },
                );
            }
        }
        out
    }

    /// Every connection of the snapshot IPVS would sync (answering a table request); they
    /// count as sent now.
    pub fn full(
        &mut self,
        now: u64,
        conns: impl IntoIterator<Item = LocalConn>,
    ) -> Vec<ConnRepr<'static>> {
        self.sent.clear();
        self.observe(now, conns)
    }

    /// Takes one snapshot of the persistence templates at `now` and returns the records to
    /// send: a template not sent yet, one whose real server changed, and one used since it
    /// was last sent once half its timeout (at least 10 s) has passed, so the BACKUP's copy
    /// lives as long as the MASTER's; forgets templates the snapshot no longer has.
    pub fn observe_templates(
        &mut self,
        now: u64,
        templates: impl IntoIterator<Item = LocalTemplate>,
    ) -> Vec<ConnRepr<'static>> {
        self.template_round += 1;
        let round = self.template_round;
        let mut out = Vec::new();
        for t in templates {
            let id = (t.protocol, SocketAddrV4::new(t.client, 0), t.vip);
            let refresh = (u64::from(t.timeout) * NS / 2).max(MIN_REFRESH_NS);
            let (send, assured) = match self.templates.get_mut(&id) {
                None => (true, false),
                Some(s) => {
                    s.round = round;
                    let send = s.real != t.real
                        || (t.last_seen > s.seen && now.saturating_sub(s.at) >= refresh);
                    (send, s.real == t.real)
                }
            };
            if send {
                out.push(t.repr(assured));
                self.templates.insert(
                    id,
                    Sent {
                        state: FlowState::None,
                        real: t.real,
                        seen: t.last_seen,
                        at: now,
                        round,
                    },
                );
            }
        }
        self.templates.retain(|_, s| s.round == round);
        out
    }

    /// Every template of the snapshot (answering a table request).
    pub fn full_templates(
        &mut self,
        now: u64,
        templates: impl IntoIterator<Item = LocalTemplate>,
    ) -> Vec<ConnRepr<'static>> {
        self.templates.clear();
        self.observe_templates(now, templates)
    }
}

/// Packs records into messages (a [`Builder`] that collects what it finishes).
#[derive(Debug, Clone)]
pub struct Packer {
    builder: Builder,
}

impl Packer {
    /// Messages for sync id `syncid`, at most `maxlen` bytes each.
    pub fn new(syncid: u8, maxlen: u16) -> Packer {
        Packer {
            builder: Builder::new(syncid, maxlen),
        }
    }

    /// Packs `conns` into as few messages as the kernel would.
    pub fn pack(&mut self, conns: &[ConnRepr<'_>]) -> Result<Vec<Vec<u8>>, WireError> {
        let mut out = Vec::new();
        for c in conns {
            if let Some(m) = self.builder.push(c)? {
                out.push(m);
            }
        }
        out.extend(self.builder.finish());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::IPPROTO_TCP;
    use crate::wire::MessageRepr;
    use std::net::Ipv4Addr;

    fn template(real: u8, seen: u64) -> LocalTemplate {
        LocalTemplate {
            protocol: IPPROTO_TCP,
            client: Ipv4Addr::new(198, 18, 1, 0),
            vip: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 80),
            real: SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, real), 80),
            forward: Forward::Dr,
            timeout: 300,
            last_seen: seen,
        }
    }

    #[test]
    fn templates_sent_as_ipvs_sends_them_and_refreshed() {
        let mut t = Tracker::new(StateTimeouts::IPVS);
        let s = 1_000 * NS;
        let first = t.observe_templates(s, [template(1, s)]);
        assert_eq!(first.len(), 1);
        let r = &first[0];
        assert!(r.is_template());
        assert_eq!(
            r.flags,
            CONN_F_TEMPLATE | CONN_F_INACTIVE | CONN_F_NOOUTPUT | crate::ipvs::CONN_F_DROUTE
        );
        assert_eq!(
            (r.cport, r.vport, r.timeout, r.state),
            (0, 80, 300, CTPL_NONE)
        );
        // Unchanged, or used but within half its timeout: nothing.
        assert!(t.observe_templates(s + NS, [template(1, s)]).is_empty());
        assert!(
            t.observe_templates(s + 100 * NS, [template(1, s + 100 * NS)])
                .is_empty()
        );
        // Used, and half the timeout passed: refreshed, now ASSURED.
        let again = t.observe_templates(s + 151 * NS, [template(1, s + 150 * NS)]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].state, CTPL_ASSURED);
        // Another real server: sent at once.
        assert_eq!(t.observe_templates(s + 152 * NS, [template(2, s)]).len(), 1);
        assert_eq!(t.full_templates(s + 153 * NS, [template(2, s)]).len(), 1);
    }

    fn conn(i: u16, state: FlowState, seen: u64) -> LocalConn {
        LocalConn {
            protocol: IPPROTO_TCP,
            client: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 10000 + i),
            vip: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 80),
            real: SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 80),
            forward: Forward::Dr,
            state,
            last_seen: seen,
        }
    }

    #[test]
    fn events_send_what_changed_and_forget_nothing() {
        let mut t = Tracker::new(StateTimeouts::IPVS);
        let s = 1_000 * NS;
        t.observe(s, [conn(1, FlowState::Established, s)]);
        // SYN_RECV is never sent; the state event to ESTABLISHED is.
        assert!(
            t.observe_events(s, [conn(2, FlowState::SynRecv, s)])
                .is_empty()
        );
        let sent = t.observe_events(s, [conn(2, FlowState::Established, s)]);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].cport, 10002);
        // An event batch is not a table: connection 1 is still known as sent.
        assert_eq!(t.len(), 2);
        assert!(
            t.observe_events(s, [conn(2, FlowState::Established, s)])
                .is_empty()
        );
        assert_eq!(
            t.observe_events(s, [conn(2, FlowState::FinWait, s)]).len(),
            1
        );
    }

    #[test]
    fn sends_new_established_and_state_changes_only() {
        let mut t = Tracker::new(StateTimeouts::IPVS);
        let s = 1_000 * NS;
        let first = t.observe(
            s,
            [
                conn(1, FlowState::SynRecv, s),
                conn(2, FlowState::Established, s),
            ],
        );
        assert_eq!(first.len(), 1, "SYN_RECV is not synced, as in IPVS");
        assert_eq!(first[0].cport, 10002);
        assert_eq!(first[0].timeout, 900);
        assert_eq!(first[0].flags, crate::ipvs::CONN_F_DROUTE | CONN_F_NOOUTPUT);
        // Nothing changed: nothing sent, even with traffic, before the refresh interval.
        let again = t.observe(
            s + NS,
            [
                conn(1, FlowState::SynRecv, s),
                conn(2, FlowState::Established, s + NS),
            ],
        );
        assert!(again.is_empty());
        // 1 becomes established, 2 closes.
        let next = t.observe(
            s + 2 * NS,
            [
                conn(1, FlowState::Established, s),
                conn(2, FlowState::FinWait, s),
            ],
        );
        assert_eq!(
            next.iter().map(|c| (c.cport, c.state)).collect::<Vec<_>>(),
            vec![(10001, 1), (10002, 4)]
        );
        assert_ne!(next[1].flags & CONN_F_INACTIVE, 0);
        assert_eq!(next[1].timeout, 120);
    }

    #[test]
    fn refreshes_active_connections_at_half_their_timeout() {
        let mut t = Tracker::new(StateTimeouts::IPVS);
        let s = 1_000 * NS;
        assert_eq!(t.observe(s, [conn(1, FlowState::Established, s)]).len(), 1);
        // Idle since: no refresh however long.
        assert!(
            t.observe(s + 500 * NS, [conn(1, FlowState::Established, s)])
                .is_empty()
        );
        // Active, but before 450 s since the send: none; after: one.
        assert!(
            t.observe(
                s + 449 * NS,
                [conn(1, FlowState::Established, s + 400 * NS)]
            )
            .is_empty()
        );
        assert_eq!(
            t.observe(
                s + 451 * NS,
                [conn(1, FlowState::Established, s + 450 * NS)]
            )
            .len(),
            1
        );
    }

    #[test]
    fn forgets_vanished_connections_and_full_sends_everything() {
        let mut t = Tracker::new(StateTimeouts::IPVS);
        let s = 1_000 * NS;
        t.observe(
            s,
            [
                conn(1, FlowState::Established, s),
                conn(2, FlowState::Established, s),
            ],
        );
        assert_eq!(t.len(), 2);
        t.observe(s + NS, [conn(2, FlowState::Established, s)]);
        assert_eq!(t.len(), 1);
        // Connection 1 comes back (e.g. re-established): sent again.
        assert_eq!(
            t.observe(
                s + 2 * NS,
                [
                    conn(1, FlowState::Established, s),
                    conn(2, FlowState::Established, s)
                ]
            )
            .len(),
            1
        );
        assert_eq!(
            t.full(
                s + 3 * NS,
                [
                    conn(1, FlowState::Established, s),
                    conn(2, FlowState::Established, s)
                ]
            )
            .len(),
            2
        );
    }

    #[test]
    fn packs_as_many_records_as_fit_maxlen() {
        let conns: Vec<_> = (0..100)
            .map(|i| conn(i, FlowState::Established, 0).repr(&StateTimeouts::IPVS))
            .collect();
        let msgs = Packer::new(7, 1472).pack(&conns).unwrap();
        // (1472 - 8) / 36 = 40 records per message.
        assert_eq!(
            msgs.iter().map(|m| m.len()).collect::<Vec<_>>(),
            vec![1448, 1448, 728]
        );
        let mut back = Vec::new();
        for m in &msgs {
            let r = MessageRepr::parse(m).unwrap();
            assert_eq!(r.syncid, 7);
            assert!(r.stopped.is_none());
            back.extend(r.conns);
        }
        assert_eq!(back, conns);
    }
}
