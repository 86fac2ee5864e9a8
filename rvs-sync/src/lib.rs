//! IPVS's connection synchronisation protocol, as `net/netfilter/ipvs/ip_vs_sync.c` speaks
//! it, without any I/O (a protocol crate: no sockets, no clock of its own).
//!
//! - [`wire`]: the messages on the wire (version 1 as the kernel sends it, version 0 as it
//!   still accepts it, and rvs's one extension message), smoltcp-style views and reprs;
//! - [`ipvs`]: IPVS's numbers (connection flags, TCP/UDP/template states, default
//!   timeouts) and their mapping onto rvs's flow states;
//! - [`master`]: which connection changes a MASTER sends, and packing them into messages;
//! - [`backup`]: turning received messages into connection-table installs.
//!
//! The transport (multicast UDP to 224.0.0.81:8848 by default) lives in rvsd.

pub mod backup;
pub mod interop;
pub mod ipvs;
pub mod master;
pub mod wire;

pub use backup::{Install, Received, Receiver};
pub use ipvs::FlowState;
pub use master::{LocalConn, LocalTemplate, Packer, Tracker};
pub use wire::{ConnRepr, WireError};

use std::net::Ipv4Addr;

/// IPVS's default sync multicast group (224.0.0.81).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// IPVS's default sync UDP port.
pub const DEFAULT_PORT: u16 = 8848;
/// IPVS's default multicast TTL.
pub const DEFAULT_TTL: u8 = 1;
/// IPv4 + UDP header length, subtracted from the MTU to get a message's maximum length.
pub const IPV4_UDP_HLEN: u16 = 28;

/// Which side of the sync a daemon runs, as `ipvsadm --start-daemon` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends the connection table.
    Master,
    /// Receives and installs it.
    Backup,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Backup => "backup",
        })
    }
}

/// The maximum message length the kernel uses when none is configured, or clamps a
/// configured one to: a MASTER sends at most 1500 − 28 bytes (whatever the interface's
/// MTU), a BACKUP accepts up to its interface's MTU (at least 1500) − 28, and a configured
/// `--sync-maxlen` is clamped to [1, 65507] for a MASTER and [1024, 65507] for a BACKUP
/// (`start_sync_thread`).
pub fn effective_maxlen(role: Role, configured: Option<u16>, interface_mtu: u32) -> u16 {
    let top = u16::MAX - IPV4_UDP_HLEN;
    match (role, configured) {
        (Role::Master, Some(m)) if m > 0 => m.clamp(1, top),
        (Role::Backup, Some(m)) if m > 0 => m.clamp(1024, top),
        (Role::Master, _) => 1500 - IPV4_UDP_HLEN,
        (Role::Backup, _) => (interface_mtu.clamp(1500, 65535) as u16) - IPV4_UDP_HLEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxlen_as_the_kernel_clamps_it() {
        assert_eq!(effective_maxlen(Role::Master, None, 9000), 1472);
        assert_eq!(effective_maxlen(Role::Backup, None, 9000), 8972);
        assert_eq!(effective_maxlen(Role::Backup, None, 1280), 1472);
        assert_eq!(effective_maxlen(Role::Backup, Some(100), 1500), 1024);
        assert_eq!(effective_maxlen(Role::Master, Some(100), 1500), 100);
        assert_eq!(effective_maxlen(Role::Master, Some(65535), 1500), 65507);
    }
}
