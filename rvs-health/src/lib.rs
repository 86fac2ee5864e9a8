//! keepalived-compatible health checking for rvs, as plain types (no sockets, no clock).
//!
//! - [`model`]: what is checked and how (plain data, defaults resolved).
//! - [`state`]: the sans-I/O state machine: checker retries, real-server up/down, quorum,
//!   sorry server, the effective set of real servers and every transition with its reason.
//!
//! The checkers themselves (TCP, HTTP/HTTPS, MISC, DNS, SMTP, UDP, PING) and the engine
//! that runs them on tokio are in `rvs-checkers`.

#![warn(missing_docs)]

pub mod model;
pub mod state;

pub use model::HealthModel;
pub use state::{Counters, LastCheck, RealStatus};
