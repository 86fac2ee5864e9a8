//! The connection sync daemons (IPVS's `--start-daemon`), over the API:
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/v1/sync` | | [`SyncStatus`] |
//! | POST | `/v1/sync/start` | [`SyncDaemonConfig`] | [`SyncStatus`] |
//! | POST | `/v1/sync/stop` | [`SyncStop`] | [`SyncStatus`] |

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Which side a sync daemon runs (`ipvsadm --start-daemon master|backup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncRole {
    /// Sends the connection table.
    Master,
    /// Receives and installs it.
    Backup,
}

impl std::fmt::Display for SyncRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyncRole::Master => "master",
            SyncRole::Backup => "backup",
        })
    }
}

/// A sync daemon to start, with ipvsadm's options (absent ones take IPVS's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncDaemonConfig {
    /// Master or backup.
    pub role: SyncRole,
    /// `--mcast-interface`.
    pub interface: String,
    /// `--syncid` (0: a backup accepts every sync id).
    #[serde(default)]
    pub syncid: u8,
    /// `--sync-maxlen` (default: from the interface's MTU).
    #[serde(default)]
    pub maxlen: Option<u16>,
    /// `--mcast-group` (default 224.0.0.81).
    #[serde(default)]
    pub group: Option<Ipv4Addr>,
    /// `--mcast-port` (default 8848).
    #[serde(default)]
    pub port: Option<u16>,
    /// `--mcast-ttl` (default 1).
    #[serde(default)]
    pub ttl: Option<u8>,
}

/// Counters of one sync daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounters {
    /// Messages sent.
    pub messages_sent: u64,
    /// Connection records sent.
    pub records_sent: u64,
    /// Messages that could not be sent.
    pub send_errors: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Records received (connections and templates, installed or not).
    #[serde(default)]
    pub records_received: u64,
    /// Connections installed from received records.
    pub installed: u64,
    /// Persistence templates installed from received records.
    #[serde(default)]
    pub templates_installed: u64,
    /// Records for which this node has no such service or real server.
    pub unmatched: u64,
    /// Received datagrams dropped (malformed, other sync id, unsupported records).
    pub dropped: u64,
    /// Full-table requests sent (backup) or answered (master).
    pub table_requests: u64,
}

/// One running sync daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDaemonStatus {
    /// Master or backup.
    pub role: SyncRole,
    /// Multicast interface.
    pub interface: String,
    /// Sync id.
    pub syncid: u8,
    /// Effective maximum message length.
    pub maxlen: u16,
    /// Multicast group.
    pub group: Ipv4Addr,
    /// UDP port.
    pub port: u16,
    /// Multicast TTL.
    pub ttl: u8,
    /// Who started it: `api` (rvsadm) or `keepalived` (lvs_sync_daemon, following a VRRP
    /// instance).
    pub origin: String,
    /// Counters.
    pub counters: SyncCounters,
}

/// The sync daemons, master first (as `ipvsadm -L --daemon` lists them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Running daemons.
    pub daemons: Vec<SyncDaemonStatus>,
}

/// Which daemon to stop (`ipvsadm --stop-daemon master|backup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncStop {
    /// Master or backup.
    pub role: SyncRole,
}
