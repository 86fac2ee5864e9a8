//! Real-server preparation for rvs (and any LVS director): what a Linux host needs before it
//! can answer for a VIP that a load balancer forwards to it with direct routing or a tunnel.
//!
//! - DR: the VIP as a /32 on a non-ARPing interface (`lo` or a dummy), and
//!   `arp_ignore=1`/`arp_announce=2` so the host never answers or announces ARP for it.
//! - TUN: the same VIP set-up, plus something that unwraps the tunnel — the kernel's
//!   ipip/fou/ip_gre device when the module exists, otherwise rvs's own XDP decapsulation
//!   program on the receiving interface — and reverse-path filtering off there (the inner
//!   source is the client, which the host does not route via the tunnel).
//!
//! [`plan`] is the sans-I/O core: given what the host has ([`plan::Observed`]) and what is
//! asked ([`plan::Request`]) it returns the [`plan::Change`]s to make, each with the value it
//! replaces, so a second run plans nothing and [`plan::undo`] restores exactly what was
//! changed. [`state`] keeps the applied changes in a file under `/run/rvs/`, [`system`]
//! observes and applies them (sysctls under /proc/sys, addresses and links over rtnetlink).

pub mod plan;
pub mod state;
pub mod system;
