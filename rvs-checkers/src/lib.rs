//! keepalived's health checkers for rvs: the I/O around rvs-health's state machine.
//!
//! - [`check`]: the async checkers (TCP, HTTP/HTTPS, script, DNS, SMTP, UDP, ICMP).
//! - [`engine`]: runs the checkers on tokio, drives [`rvs_health::state`] and publishes
//!   the effective `rvs_config::Config`, the changes and counters.

#![warn(missing_docs)]

pub mod check;
pub mod engine;

pub use engine::{Change, ChangeAction, EngineError, HealthEngine, HealthHandle};
