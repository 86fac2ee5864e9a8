//! keepalived-compatible health checking for rvs.
//!
//! - [`model`]: what is checked and how (plain data, defaults resolved).
//! - [`state`]: the sans-I/O state machine: checker retries, real-server up/down, quorum,
//!   sorry server, the effective set of real servers and every transition with its reason.
//! - [`check`]: the async checkers (TCP, HTTP/HTTPS, script, DNS, SMTP, UDP, ICMP).
//! - [`engine`]: runs the checkers on tokio, drives the state machine and publishes the
//!   effective `rvs_config::Config`, the changes and counters.

#![warn(missing_docs)]

pub mod check;
pub mod engine;
pub mod model;
pub mod state;

pub use engine::{Change, ChangeAction, EngineError, HealthEngine, HealthHandle};
pub use model::HealthModel;
pub use state::{Counters, LastCheck, RealStatus};
