//! The connection sync transport (IPVS's sync daemon, `--start-daemon`): multicast UDP
//! sockets around the sans-I/O `rvs-sync` core.
//!
//! - MASTER: the XDP program reports new connections and state changes through a ring
//!   buffer (docs/design/sync-ringbuf.md); rvsd drains it whenever it is readable (tokio
//!   `AsyncFd`) and the [`Tracker`] picks what to send. The whole table is still scanned
//!   every [`REFRESH_SCAN_INTERVAL`] (re-sends of long-lived connections, templates, reply-
//!   direction state changes), at once when the ring overflowed, and for table requests;
//!   without the ring (it could not be polled) every [`SCAN_INTERVAL`], as phase 1 did.
//!   The records are packed into messages of at most `maxlen` bytes and
//!   sent to the group from the multicast interface (TTL as configured, loop off, as the
//!   kernel). It also listens on the group for rvs's table request and answers with the
//!   whole table.
//! - BACKUP: joins the group on the interface, decodes every datagram (sync id filtered
//!   as the kernel does) and installs the connections into the local table; when it starts
//!   it asks the group for the whole table (an extension kernel IPVS ignores), again after
//!   [`REQUEST_RETRY`] until a record arrives (three times at most).
//!
//! Sockets are plain non-blocking std sockets driven by tokio; receiving runs in small
//! tasks that hand datagrams to the main loop, which alone owns the dataplane.

use std::{
    net::{SocketAddrV4, UdpSocket},
    time::Duration,
};

use rvs_api::{
    ApiError, ErrorKind, SyncCounters, SyncDaemonConfig, SyncDaemonStatus, SyncRole, SyncStatus,
};
use rvs_common::{ConnState, Forward as DpForward};
use rvs_dataplane::{ConnInstall, ConnView, Dataplane, TemplateInstall, TemplateView};
use rvs_sync::{
    FlowState, LocalConn, LocalTemplate, Packer, Received, Receiver, Tracker,
    ipvs::Forward,
    master::StateTimeouts,
    wire::{ExtKind, ext_message},
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::sync::mpsc;

/// How often a MASTER scans its connection table for changes when it has no event ring.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(500);
/// How often a MASTER fed by the event ring still scans the whole table: refreshes
/// (IPVS re-sends a live connection; the tracker every half timeout, at least 10 s),
/// templates and NAT reply-direction state changes, which have no event.
pub const REFRESH_SCAN_INTERVAL: Duration = Duration::from_secs(5);
/// Events taken off the ring per read (all waiting are drained, in such chunks).
const EVENT_CHUNK: usize = 4096;

/// The dataplane's connection-event ring, registered with tokio for readiness.
pub struct EventRing {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    /// Events lost to a full ring as last seen (a rise means: scan the table).
    lost: u64,
}

/// Resolves when the ring has events (never without a ring).
pub async fn events_ready(ring: Option<&EventRing>) {
    match ring {
        Some(r) => match r.fd.readable().await {
            // Cleared before the drain: an event submitted after it wakes us again.
            Ok(mut guard) => guard.clear_ready(),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
/// How long a BACKUP waits for records before asking for the table again.
pub const REQUEST_RETRY: Duration = Duration::from_secs(1);
/// Table requests a BACKUP sends at most after it starts.
const MAX_REQUESTS: u32 = 3;

/// A datagram received by one of the daemons.
pub struct Inbound {
    role: SyncRole,
    bytes: Vec<u8>,
}

struct Side {
    status: SyncDaemonStatus,
    /// Connected to the group (MASTER: records; BACKUP: table requests).
    send: UdpSocket,
    recv_task: tokio::task::JoinHandle<()>,
}

impl Drop for Side {
    fn drop(&mut self) {
        self.recv_task.abort();
    }
}

/// The sync daemons of this rvsd and the protocol state they drive.
pub struct SyncEngine {
    master: Option<(Side, Tracker, Packer)>,
    backup: Option<(Side, Receiver, u32, tokio::time::Instant, bool)>,
    tx: mpsc::Sender<Inbound>,
    rx: mpsc::Receiver<Inbound>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Invalid, message)
}

fn io_error(what: &str, e: std::io::Error) -> ApiError {
    ApiError::new(ErrorKind::Internal, format!("{what}: {e}"))
}

/// rvs-sync's state for the dataplane's: the same IPVS state (both are IPVS's full set).
fn flow_state(s: ConnState) -> FlowState {
    match s {
        ConnState::None => FlowState::None,
        ConnState::Established => FlowState::Established,
        ConnState::SynSent => FlowState::SynSent,
        ConnState::SynRecv => FlowState::SynRecv,
        ConnState::FinWait => FlowState::FinWait,
        ConnState::TimeWait => FlowState::TimeWait,
        ConnState::Close => FlowState::Close,
        ConnState::CloseWait => FlowState::CloseWait,
        ConnState::LastAck => FlowState::LastAck,
        ConnState::Listen => FlowState::Listen,
        ConnState::SynAck => FlowState::SynAck,
        ConnState::Udp => FlowState::Udp,
    }
}

/// The dataplane's state for rvs-sync's (the inverse of [`flow_state`]).
fn conn_state(s: FlowState) -> ConnState {
    match s {
        FlowState::None => ConnState::None,
        FlowState::Established => ConnState::Established,
        FlowState::SynSent => ConnState::SynSent,
        FlowState::SynRecv => ConnState::SynRecv,
        FlowState::FinWait => ConnState::FinWait,
        FlowState::TimeWait => ConnState::TimeWait,
        FlowState::Close => ConnState::Close,
        FlowState::CloseWait => ConnState::CloseWait,
        FlowState::LastAck => ConnState::LastAck,
        FlowState::Listen => ConnState::Listen,
        FlowState::SynAck => ConnState::SynAck,
        FlowState::Udp => ConnState::Udp,
    }
}

fn local(v: &ConnView) -> LocalConn {
    LocalConn {
        protocol: v.protocol,
        client: v.client,
        vip: v.vip,
        real: v.real,
        forward: forward(v.forward),
        state: flow_state(v.state),
        last_seen: v.last_seen,
    }
}

fn forward(f: DpForward) -> Forward {
    match f {
        DpForward::DirectRoute => Forward::Dr,
        DpForward::Tunnel => Forward::Tun,
        DpForward::Masq => Forward::Nat,
    }
}

fn local_template(t: &TemplateView) -> LocalTemplate {
    LocalTemplate {
        // A port-0 service's template carries IPPROTO_IP, as IPVS's.
        protocol: if t.vip.port() == 0 { 0 } else { t.protocol },
        client: t.client,
        vip: t.vip,
        real: t.real,
        forward: forward(t.forward),
        timeout: t.timeout_secs,
        last_seen: t.last_seen,
    }
}

/// The record timeouts for the configured ones (SYN_RECV and CLOSE are IPVS's fixed ones).
pub fn state_timeouts(t: &rvs_config::Timeouts) -> StateTimeouts {
    StateTimeouts {
        established: t.tcp,
        fin_wait: t.tcp_fin,
        udp: t.udp,
        ..StateTimeouts::IPVS
    }
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

fn mtu(name: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

/// Sets IP_MULTICAST_IF by interface index (socket2 takes an address only).
fn set_multicast_ifindex(sock: &Socket, index: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index as i32,
    };
    // SAFETY: a valid socket and a properly sized ip_mreqn.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreq as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A socket that sends to the group from the interface, as the kernel's `make_send_sock`.
fn send_socket(
    iface: &str,
    index: u32,
    group: SocketAddrV4,
    ttl: u8,
) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind_device(Some(iface.as_bytes()))?;
    set_multicast_ifindex(&s, index)?;
    s.set_multicast_loop_v4(false)?;
    s.set_multicast_ttl_v4(u32::from(ttl))?;
    s.connect(&SockAddr::from(group))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A socket that receives the group on the interface, as the kernel's `make_receive_sock`.
fn recv_socket(iface: &str, index: u32, group: SocketAddrV4) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind_device(Some(iface.as_bytes()))?;
    s.bind(&SockAddr::from(group))?;
    s.join_multicast_v4_n(group.ip(), &InterfaceIndexOrAddress::Index(index))?;
    // A MASTER answering a table request sends its whole table in one burst: give the
    // socket room for it (SO_RCVBUFFORCE, above net.core.rmem_max; rvsd runs as root).
    force_rcvbuf(&s, RECV_BUFFER);
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Receive buffer of a sync socket (about 20 000 full messages).
const RECV_BUFFER: i32 = 32 << 20;

fn force_rcvbuf(sock: &Socket, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and an int-sized option value.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot enlarge the sync receive buffer");
    }
}

fn spawn_receiver(
    sock: UdpSocket,
    role: SyncRole,
    maxlen: u16,
    tx: mpsc::Sender<Inbound>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let sock = tokio::net::UdpSocket::from_std(sock)?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; usize::from(maxlen).max(1500)];
        loop {
            match sock.recv(&mut buf).await {
                Ok(n) => {
                    let bytes = buf[..n].to_vec();
                    if tx.send(Inbound { role, bytes }).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(%role, error = %e, "sync receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

impl Default for SyncEngine {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(4096);
        SyncEngine {
            master: None,
            backup: None,
            tx,
            rx,
        }
    }
}

impl SyncEngine {
    /// Whether a daemon of `role` runs.
    pub fn running(&self, role: SyncRole) -> bool {
        match role {
            SyncRole::Master => self.master.is_some(),
            SyncRole::Backup => self.backup.is_some(),
        }
    }

    /// Whether a MASTER runs (the main loop scans only then).
    pub fn is_master(&self) -> bool {
        self.master.is_some()
    }

    /// The daemons, master first.
    pub fn status(&self) -> SyncStatus {
        let mut daemons = Vec::new();
        if let Some((s, ..)) = &self.master {
            daemons.push(s.status.clone());
        }
        if let Some((s, ..)) = &self.backup {
            daemons.push(s.status.clone());
        }
        SyncStatus { daemons }
    }

    /// Starts a daemon, with ipvsadm's and the kernel's errors: an unknown interface is
    /// "No such device", a second daemon of one role "Daemon has already run".
    pub fn start(
        &mut self,
        cfg: &SyncDaemonConfig,
        origin: &str,
        timeouts: StateTimeouts,
    ) -> Result<(), ApiError> {
        if self.running(cfg.role) {
            return Err(invalid("Daemon has already run"));
        }
        let index = ifindex(&cfg.interface).ok_or_else(|| invalid("No such device"))?;
        let group = cfg.group.unwrap_or(rvs_sync::DEFAULT_GROUP);
        if !group.is_multicast() {
            return Err(invalid(format!("invalid IPv4 mcast-group `{group}'")));
        }
        let port = cfg.port.unwrap_or(rvs_sync::DEFAULT_PORT);
        if port == 0 {
            return Err(invalid("illegal mcast-port specified"));
        }
        let ttl = cfg.ttl.unwrap_or(rvs_sync::DEFAULT_TTL).max(1);
        let role = match cfg.role {
            SyncRole::Master => rvs_sync::Role::Master,
            SyncRole::Backup => rvs_sync::Role::Backup,
        };
        let maxlen = rvs_sync::effective_maxlen(role, cfg.maxlen, mtu(&cfg.interface));
        let addr = SocketAddrV4::new(group, port);
        let send = send_socket(&cfg.interface, index, addr, ttl)
            .map_err(|e| io_error("opening the sync send socket", e))?;
        let recv = recv_socket(&cfg.interface, index, addr)
            .map_err(|e| io_error("joining the sync multicast group", e))?;
        let recv_task = spawn_receiver(recv, cfg.role, maxlen, self.tx.clone())
            .map_err(|e| io_error("registering the sync socket", e))?;
        let side = Side {
            status: SyncDaemonStatus {
                role: cfg.role,
                interface: cfg.interface.clone(),
                syncid: cfg.syncid,
                maxlen,
                group,
                port,
                ttl,
                origin: origin.to_owned(),
                counters: SyncCounters::default(),
            },
            send,
            recv_task,
        };
        tracing::info!(role = %cfg.role, interface = %cfg.interface, syncid = cfg.syncid, maxlen, %group, port, ttl, origin, "sync daemon started");
        match cfg.role {
            SyncRole::Master => {
                self.master = Some((
                    side,
                    Tracker::new(timeouts),
                    Packer::new(cfg.syncid, maxlen),
                ));
            }
            SyncRole::Backup => {
                let mut backup = (
                    side,
                    Receiver::new(cfg.syncid),
                    0,
                    tokio::time::Instant::now(),
                    false,
                );
                Self::request_table(&mut backup);
                self.backup = Some(backup);
            }
        }
        Ok(())
    }

    fn request_table(b: &mut (Side, Receiver, u32, tokio::time::Instant, bool)) {
        let msg = ext_message(b.0.status.syncid, ExtKind::TableRequest);
        match b.0.send.send(&msg) {
            Ok(_) => b.0.status.counters.table_requests += 1,
            Err(e) => {
                b.0.status.counters.send_errors += 1;
                tracing::warn!(error = %e, "sending the sync table request failed");
            }
        }
        b.2 += 1;
        b.3 = tokio::time::Instant::now() + REQUEST_RETRY;
    }

    /// Stops the daemon of `role` ("No daemon is running" if none does).
    pub fn stop(&mut self, role: SyncRole) -> Result<(), ApiError> {
        let was = match role {
            SyncRole::Master => self.master.take().is_some(),
            SyncRole::Backup => self.backup.take().is_some(),
        };
        if !was {
            return Err(invalid("No daemon is running"));
        }
        tracing::info!(%role, "sync daemon stopped");
        Ok(())
    }

    /// Changes the timeouts a MASTER's records carry.
    pub fn set_timeouts(&mut self, timeouts: StateTimeouts) {
        if let Some((_, t, _)) = &mut self.master {
            t.set_timeouts(timeouts);
        }
    }

    /// The next received datagram (pending forever when no daemon runs).
    pub async fn next_inbound(&mut self) -> Option<Inbound> {
        self.rx.recv().await
    }

    /// When the BACKUP should ask for the table again, if it should.
    pub fn request_due(&self) -> Option<tokio::time::Instant> {
        let b = self.backup.as_ref()?;
        (!b.4 && b.2 < MAX_REQUESTS).then_some(b.3)
    }

    /// Asks for the table again (see [`request_due`](Self::request_due)).
    pub fn retry_request(&mut self) {
        if let Some(b) = &mut self.backup {
            Self::request_table(b);
        }
    }

    /// Keeps the dataplane's connection events on exactly while a MASTER runs; returns the
    /// ring to poll (None: no MASTER, or the ring cannot be polled and the scan serves).
    pub fn follow_events(
        &mut self,
        dp: &mut Dataplane,
        ring: Option<EventRing>,
    ) -> Option<EventRing> {
        let want = self.is_master();
        if want == ring.is_some() {
            return ring;
        }
        if !want {
            if let Err(e) = dp.set_sync_events(false) {
                tracing::warn!(error = %e, "turning connection events off failed");
            }
            return None;
        }
        let ring = dp.sync_events_fd().and_then(|fd| {
            // SAFETY: an OwnedFd, owned by the AsyncFd for its whole life.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
            .map_err(|e| rvs_dataplane::DataplaneError::Io {
                what: "polling the sync event ring".into(),
                source: e.into(),
            })?;
            let lost = dp.sync_events_lost()?;
            dp.set_sync_events(true)?;
            Ok(EventRing { fd, lost })
        });
        match ring {
            Ok(r) => {
                // Whatever waited from an earlier MASTER is stale: the scan sends it.
                while !dp.drain_sync_events(EVENT_CHUNK).is_empty() {}
                tracing::info!("sync MASTER follows the connection-event ring");
                Some(r)
            }
            Err(e) => {
                let _ = dp.set_sync_events(false);
                tracing::warn!(error = %e, "no connection-event ring; the sync MASTER scans the table every 0.5 s");
                None
            }
        }
    }

    /// MASTER: sends the connections the event ring reports (all that wait); a ring that
    /// overflowed (events lost) is made up for by one scan of the whole table.
    pub fn drain_events(&mut self, dp: &mut Dataplane, ring: &mut EventRing) {
        loop {
            let views = dp.drain_sync_events(EVENT_CHUNK);
            if views.is_empty() {
                break;
            }
            if let Some((side, tracker, packer)) = &mut self.master {
                let now = rvs_dataplane::monotonic_coarse_ns();
                let records = tracker.observe_events(now, views.iter().map(local));
                Self::send_records(side, packer, &records);
            }
        }
        match dp.sync_events_lost() {
            Ok(lost) if lost > ring.lost => {
                tracing::warn!(
                    lost = lost - ring.lost,
                    "the connection-event ring overflowed; scanning the table"
                );
                ring.lost = lost;
                self.scan(dp);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "reading lost events failed"),
        }
    }

    /// MASTER: one delta scan of the table; sends what changed.
    pub fn scan(&mut self, dp: &Dataplane) {
        let Some((side, tracker, packer)) = &mut self.master else {
            return;
        };
        let now = rvs_dataplane::monotonic_coarse_ns();
        let snapshot = dp.conn_snapshot();
        let mut records = tracker.observe(now, snapshot.iter().map(local));
        let templates = dp.template_snapshot();
        records.extend(tracker.observe_templates(now, templates.iter().map(local_template)));
        Self::send_records(side, packer, &records);
    }

    fn send_records(side: &mut Side, packer: &mut Packer, records: &[rvs_sync::ConnRepr<'_>]) {
        if records.is_empty() {
            return;
        }
        let messages = match packer.pack(records) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "packing sync records failed");
                return;
            }
        };
        for m in messages {
            match side.send.send(&m) {
                Ok(_) => {
                    side.status.counters.messages_sent += 1;
                    side.status.counters.records_sent += u64::from(m[4]);
                }
                Err(e) => {
                    side.status.counters.send_errors += 1;
                    tracing::debug!(error = %e, "sending a sync message failed");
                }
            }
        }
    }

    /// Handles one received datagram; returns the client addresses of the connections a
    /// BACKUP installed from it (the daemon resolves the way back to them for NAT).
    pub fn handle(&mut self, inbound: Inbound, dp: &mut Dataplane) -> Vec<std::net::Ipv4Addr> {
        match inbound.role {
            SyncRole::Master => {
                let Some((side, tracker, packer)) = &mut self.master else {
                    return Vec::new();
                };
                side.status.counters.messages_received += 1;
                // The MASTER hears only the table requests (its own sends are not looped).
                match Receiver::new(side.status.syncid).receive(&inbound.bytes) {
                    Received::TableRequest => {
                        side.status.counters.table_requests += 1;
                        let now = rvs_dataplane::monotonic_coarse_ns();
                        let snapshot = dp.conn_snapshot();
                        let mut records = tracker.full(now, snapshot.iter().map(local));
                        let templates = dp.template_snapshot();
                        records.extend(
                            tracker.full_templates(now, templates.iter().map(local_template)),
                        );
                        tracing::info!(
                            records = records.len(),
                            "a sync backup asked for the table"
                        );
                        Self::send_records(side, packer, &records);
                    }
                    _ => side.status.counters.dropped += 1,
                }
                Vec::new()
            }
            SyncRole::Backup => {
                let Some(b) = &mut self.backup else {
                    return Vec::new();
                };
                let c = &mut b.0.status.counters;
                c.messages_received += 1;
                match b.1.receive(&inbound.bytes) {
                    Received::Records {
                        conns,
                        templates,
                        skipped,
                        stopped,
                        ..
                    } => {
                        b.4 = true;
                        let tpl: Vec<TemplateInstall> = templates
                            .iter()
                            .map(|t| TemplateInstall {
                                protocol: t.protocol,
                                client: t.client,
                                vip: t.vip,
                                real: t.real,
                                timeout_secs: t.timeout,
                            })
                            .collect();
                        c.records_received +=
                            (conns.len() + templates.len() + skipped.len()) as u64;
                        let tstats = dp.install_templates(&tpl);
                        c.templates_installed += tstats.installed;
                        c.unmatched += tstats.no_service + tstats.no_real;
                        c.dropped += tstats.failed;
                        let installs: Vec<ConnInstall> = conns
                            .iter()
                            .map(|i| ConnInstall {
                                protocol: i.protocol,
                                client: i.client,
                                vip: i.vip,
                                real: i.real,
                                state: conn_state(i.state),
                                timeout_secs: i.timeout,
                            })
                            .collect();
                        let stats = dp.install_conns(&installs);
                        c.installed += stats.installed;
                        c.unmatched += stats.no_service + stats.no_real;
                        c.dropped += skipped.len() as u64 + stats.failed;
                        if stats.no_service + stats.no_real > 0 {
                            tracing::debug!(
                                no_service = stats.no_service,
                                no_real = stats.no_real,
                                "synced connections without a local service or real server"
                            );
                        }
                        if let Some(e) = stopped {
                            tracing::debug!(error = %e, "sync message cut short");
                        }
                        conns.iter().map(|i| *i.client.ip()).collect()
                    }
                    Received::TableRequest => Vec::new(),
                    Received::OtherSyncId(_) | Received::Invalid(_) => {
                        c.dropped += 1;
                        Vec::new()
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_crosses_sync_exactly_both_ways() {
        for s in ConnState::ALL {
            let f = flow_state(s);
            assert_eq!(conn_state(f), s);
            // The number on the wire is IPVS's for the state's name.
            if s != ConnState::Udp {
                assert_eq!(
                    rvs_sync::ipvs::tcp::NAMES[f.ipvs_state() as usize],
                    s.name()
                );
            }
        }
    }
}
