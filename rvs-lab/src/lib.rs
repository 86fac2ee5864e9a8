//! Network-namespace lab used by tests, the demo and benchmarks.
//!
//! Everything the lab makes lives in network namespaces it creates and deletes on drop
//! (also on panic; [`cleanup_stale`] removes what a killed run left). Addresses are only
//! from 198.18.0.0/15 and loopback, and every loop is bounded in count and time.
//!
//! - [`Netns`]: one namespace; run closures, commands and child processes inside it.
//! - [`DrLab`]: the direct-routing topology (client, router, LB, switch, real servers).
//! - [`EcmpLab`]: N active directors behind a router running BIRD (BGP, ECMP, L4 hash).
//! - [`HaLab`]: two directors (VRRP, connection sync) in front of the DR lab's servers.
//! - [`NatLab`]: the NAT topologies, two-armed and one-armed (real servers' gateway = LB).
//! - [`TunLab`]: the tunnel topology (real servers behind a router, L3 away from the LB).
//! - [`FibNs`]: one namespace with static neighbours, for BPF_PROG_TEST_RUN tests.
//! - [`HttpResponder`], [`UdpResponder`]: servers that answer with their name.
//! - [`realserver::Prepared`]: a namespace prepared by `rvs-realserver`, undone on drop;
//!   [`bins::workspace_binary`] builds such another binary of the workspace for a test.
//! - [`http_get`], [`HttpSession`], [`udp_ask`], [`run_many`]: clients with timeouts.
//!
//! Needs root, `ip` (iproute2) and `ethtool`.

#![warn(missing_docs)]

pub mod bins;
pub mod client;
mod cmd;
pub mod dr;
pub mod ecmp;
pub mod fib;
pub mod ha;
mod http;
pub mod nat;
pub mod netns;
pub mod realserver;
pub mod responder;
pub mod rvsd;
mod topo;
pub mod tun;
mod wire;

pub use client::{HttpSession, http_get, http_get_path, run_many, udp_ask};
pub use dr::{DrLab, RealServer};
pub use ecmp::EcmpLab;
pub use fib::FibNs;
pub use ha::{Director, HaLab};
pub use nat::{NatLab, NatLayout};
pub use netns::{
    ChildGuard, Netns, SKIP_ROOT_TESTS, cleanup_stale, list_netns, root_or_skip, run_prefix,
    skip_or_fail, unique_prefix,
};
pub use responder::{HttpResponder, UdpResponder};
pub use rvsd::Rvsd;
pub use tun::TunLab;
