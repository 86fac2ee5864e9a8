//! rvsd's management API: JSON over HTTP/1.1 on a Unix socket (root only).
//!
//! Everything that changes state is a batch of [`Op`]s sent to `POST /v1/ops`: rvsd applies
//! the ops in order to a copy of its desired state, validates the result and writes it to
//! the dataplane as a diff; if any op fails, nothing changes and the error names the op.
//! `rvsadm` is a client of this API; `docs/api.md` describes it.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/v1/status` | | [`Status`] |
//! | GET | `/v1/config` | | the desired state, [`rvs_config::Config`] |
//! | PUT | `/v1/config` | [`rvs_config::Config`] | [`Applied`] (replaces the whole state as a diff) |
//! | POST | `/v1/ops` | [`OpBatch`] | [`Applied`] |
//! | POST | `/v1/reload` | | [`Applied`] (re-reads the config file) |
//! | GET | `/v1/services` | | [`ServiceList`] (with counters, rates, connection counts) |
//! | GET | `/v1/connections` | | [`ConnectionList`] |
//! | GET, POST | `/v1/sync`, `/v1/sync/start`, `/v1/sync/stop` | | connection sync ([`sync`]) |
//!
//! Errors come back with a 4xx/5xx status and an [`ApiError`] body.

pub mod client;
pub mod sync;

use std::net::Ipv4Addr;

use rvs_config::{Protocol, RealServer, ServiceId, Timeouts, VirtualService};
use serde::{Deserialize, Serialize};

pub use client::{Client, ClientError};
pub use sync::{SyncCounters, SyncDaemonConfig, SyncDaemonStatus, SyncRole, SyncStatus, SyncStop};

/// Default path of rvsd's API socket.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";

/// One change, with ipvsadm's semantics (the flag it corresponds to in brackets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Add a virtual service (`-A`); its `reals` must be empty. Fails if it exists.
    AddService {
        /// The service.
        service: VirtualService,
    },
    /// Change a service's scheduler, flags, persistence (`-E`); its real servers stay.
    EditService {
        /// The service with its new settings (`reals` ignored).
        service: VirtualService,
    },
    /// Delete a service and its real servers (`-D`).
    DeleteService {
        /// Which.
        service: ServiceId,
    },
    /// Add a real server to a service (`-a`). Fails if it exists.
    AddReal {
        /// The service.
        service: ServiceId,
        /// The real server.
        real: RealServer,
    },
    /// Change a real server's weight, forwarding method, thresholds (`-e`).
    EditReal {
        /// The service.
        service: ServiceId,
        /// The real server with its new settings.
        real: RealServer,
    },
    /// Remove a real server (`-d`).
    DeleteReal {
        /// The service.
        service: ServiceId,
        /// Real server address.
        address: Ipv4Addr,
        /// Real server port (defaults to the service's).
        #[serde(default)]
        port: Option<u16>,
    },
    /// Delete every service (`-C`).
    Clear,
    /// Zero the counters of one service or of all (`-Z`).
    Zero {
        /// The service, or all when absent.
        #[serde(default)]
        service: Option<ServiceId>,
    },
    /// Set the connection timeouts (`--set tcp tcpfin udp`); 0 keeps a value unchanged.
    SetTimeouts {
        /// New timeouts in seconds.
        timeouts: Timeouts,
    },
}

/// A batch of ops applied atomically (`POST /v1/ops`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpBatch {
    /// The ops, applied in order.
    pub ops: Vec<Op>,
}

/// What an accepted change did to the dataplane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Services now configured.
    pub services: usize,
    /// Service entries written.
    pub services_written: usize,
    /// Services removed.
    pub services_deleted: usize,
    /// Real-server entries written.
    pub reals_written: usize,
    /// On a reload: services changed through the API or rvsadm since the file was last
    /// loaded, whose changes the file replaced (the file is the truth, as keepalived's).
    #[serde(default)]
    pub runtime_edits_dropped: usize,
}

/// Machine-readable error kinds; rvsadm maps them to ipvsadm's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request body is not valid JSON or has unknown fields.
    BadRequest,
    /// The service already exists (ipvsadm: "Service already exists").
    ServiceExists,
    /// No such service (ipvsadm: "No such service").
    NoService,
    /// The real server already exists (ipvsadm: "Destination already exists").
    RealExists,
    /// No such real server (ipvsadm: "No such destination").
    NoReal,
    /// The resulting state is invalid (bad weight, unsupported scheduler, …).
    Invalid,
    /// A real server address that is not unicast (multicast, broadcast, 0.0.0.0), which the
    /// kernel refuses with EINVAL (ipvsadm: "Invalid operation.  Possibly wrong module
    /// version, address not unicast, ...").
    NotUnicast,
    /// The state is fine but the dataplane cannot hold it (limits, table space).
    Capacity,
    /// No such API path or method.
    NotFound,
    /// Something failed inside rvsd.
    Internal,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of error.
    pub kind: ErrorKind,
    /// What is wrong, for people.
    pub message: String,
    /// Index of the failing op in the batch, if an op failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<usize>,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            op: None,
        }
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadRequest | ErrorKind::Invalid | ErrorKind::NotUnicast => 400,
            ErrorKind::NotFound | ErrorKind::NoService | ErrorKind::NoReal => 404,
            ErrorKind::ServiceExists | ErrorKind::RealExists => 409,
            ErrorKind::Capacity => 507,
            ErrorKind::Internal => 500,
        }
    }
}

/// Daemon status (`GET /v1/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// rvsd's version.
    pub version: String,
    /// Connection table capacity.
    pub conn_table_size: u32,
    /// Timeouts in force.
    pub timeouts: Timeouts,
    /// Interfaces the balancer is attached to.
    pub interfaces: Vec<String>,
    /// Verdict counters by name (`fwd_new`, `pass_not_service`, …).
    pub verdicts: Vec<(String, u64)>,
    /// VRRP instances run by this rvsd (from a keepalived.conf), if any.
    #[serde(default)]
    pub vrrp: Vec<VrrpStatus>,
    /// BGP announcements (ECMP scale-out), when `[bgp]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpStatus>,
}

/// BGP announcements as this director sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// `running`, `draining` (withdrawn, still balancing) or `stopped`.
    pub phase: String,
    /// Every VIP with a service: announced or not, and why.
    pub vips: Vec<BgpVip>,
    /// The BGP sessions as BIRD reports them.
    pub peers: Vec<BgpPeer>,
    /// The last failure talking to BIRD, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_error: Option<String>,
}

/// One VIP's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpVip {
    /// The VIP.
    pub vip: std::net::Ipv4Addr,
    /// Whether BIRD announces it now.
    pub announced: bool,
    /// Why (or why not).
    pub reason: String,
}

/// One BGP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpPeer {
    /// BIRD's protocol name.
    pub name: String,
    /// BIRD's state column (`up`, `start`, …).
    pub state: String,
    /// BIRD's info column (`Established`, `Active`, …).
    pub info: String,
    /// Whether the session is established.
    pub established: bool,
}

/// One VRRP instance as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpStatus {
    /// Instance name.
    pub instance: String,
    /// Interface.
    pub interface: String,
    /// Virtual router id.
    pub vrid: u8,
    /// INIT, BACKUP, MASTER or FAULT.
    pub state: String,
    /// Priority after tracked scripts and interfaces.
    pub priority: u8,
    /// Its virtual addresses.
    pub addresses: Vec<std::net::IpAddr>,
}

/// Cumulative counters (as `ipvsadm --stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out (NAT only).
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out (NAT only).
    pub outbytes: u64,
}

/// Rates per second over the last estimation interval (as `ipvsadm --rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets in per second.
    pub inpps: u64,
    /// Packets out per second.
    pub outpps: u64,
    /// Bytes in per second.
    pub inbps: u64,
    /// Bytes out per second.
    pub outbps: u64,
}

/// A real server with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealStatus {
    /// Its configuration.
    pub real: RealServer,
    /// Established connections (IPVS ActiveConn).
    pub active_conns: u64,
    /// Other connections (IPVS InActConn).
    pub inactive_conns: u64,
    /// Persistence templates pointing at it (IPVS PersistConn).
    pub persist_conns: u64,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
}

/// A service with its counters and real servers, in the kernel's list order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Its configuration (`reals` in the order they were added).
    pub service: VirtualService,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
    /// Real servers newest first, as IPVS lists them with `--nosort`.
    pub reals: Vec<RealStatus>,
}

/// `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    /// Connection table capacity (the `size=` of ipvsadm's header).
    pub conn_table_size: u32,
    /// Services in the order they were added.
    pub services: Vec<ServiceStatus>,
}

/// One connection-table entry (`ipvsadm -Lc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Protocol.
    pub protocol: Protocol,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// IPVS state name (ESTABLISHED, SYN_RECV, FIN_WAIT, CLOSE, UDP, NONE for templates).
    pub state: String,
    /// Client address and port.
    pub client: (Ipv4Addr, u16),
    /// Virtual address and port.
    pub virtual_addr: (Ipv4Addr, u16),
    /// Real server address and port.
    pub real: (Ipv4Addr, u16),
}

/// `GET /v1/connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionList {
    /// The entries.
    pub connections: Vec<Connection>,
}
