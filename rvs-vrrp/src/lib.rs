//! VRRP for rvs, interoperable with keepalived, as plain types (no sockets, no clock):
//! version 2 (RFC 3768, with keepalived's `auth_type PASS`) and version 3 (RFC 5798, IPv4
//! and IPv6).
//!
//! - [`wire`]: the advertisement codec (zero-copy [`wire::Packet`] view and
//!   [`wire::Repr`]), checksums, gratuitous ARP and unsolicited NA frames.
//! - [`config`]: the configuration model mirroring keepalived's `vrrp_instance`,
//!   `vrrp_script` and `vrrp_sync_group`.
//! - [`machine`]: the sans-I/O state machine of a node's instances ([`machine::Node`]):
//!   events in, actions out, driven by any clock.
//!
//! The Linux I/O layer and the `rvs-vrrpd` binary are in `rvs-vrrpd`; the mapping of a
//! keepalived.conf onto [`config`] is in `rvs-keepalived` (`rvs_keepalived::vrrp`).

#![warn(missing_docs)]

pub mod config;
pub mod machine;
pub mod wire;

pub use config::{SyncGroupConfig, VrrpConfig, VrrpInstanceConfig, VrrpScriptConfig};
pub use machine::{Action, Event, InstanceStatus, Node, State, TimerKind};
