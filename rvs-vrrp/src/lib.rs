//! VRRP for rvs, interoperable with keepalived: version 2 (RFC 3768, with keepalived's
//! `auth_type PASS`) and version 3 (RFC 5798, IPv4 and IPv6).
//!
//! - [`wire`]: the advertisement codec (zero-copy [`wire::Packet`] view and
//!   [`wire::Repr`]), checksums, gratuitous ARP and unsolicited NA frames.
//! - [`config`]: the configuration model mirroring keepalived's `vrrp_instance`,
//!   `vrrp_script` and `vrrp_sync_group`.
//! - [`machine`]: the sans-I/O state machine of a node's instances ([`machine::Node`]):
//!   events in, actions out, driven by any clock.
//! - [`keepalived`]: the VRRP blocks of a keepalived.conf mapped onto [`config`].
//! - [`io`]: the Linux I/O layer (raw sockets, rtnetlink, scripts) and [`io::run`], the
//!   entry point the daemon and `rvs-vrrpd` call.

#![warn(missing_docs)]

pub mod config;
pub mod io;
pub mod keepalived;
pub mod machine;
pub mod wire;

pub use config::{SyncGroupConfig, VrrpConfig, VrrpInstanceConfig, VrrpScriptConfig};
pub use machine::{Action, Event, InstanceStatus, Node, State, TimerKind};
