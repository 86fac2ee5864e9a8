//! VIP announcements for active-active directors behind an ECMP router.
//!
//! rvs does not speak BGP: it drives BIRD 2 (Debian's `bird2`). This crate holds the
//! parts that need no daemon, no socket and no clock of their own:
//!
//! - [`policy`]: which VIPs are announced — while rvsd runs and a VIP's services have
//!   enough healthy real servers — and the stop sequence (withdraw, drain, stop), as a
//!   state machine fed with health snapshots and times;
//! - [`bird`]: the BIRD configuration rendered from `[bgp]` and the announced set;
//! - [`control`]: BIRD's control-socket protocol (the one `birdc` speaks): reply
//!   parsing, `show protocols` parsing, and a small blocking client with timeouts.
//!
//! rvsd's `bgp` module is the thin async layer: it starts BIRD, writes the file, sends
//! `configure`, and feeds the policy.

#![warn(missing_docs)]

pub mod bird;
pub mod control;
pub mod policy;

pub use control::{BirdControl, ControlError, ProtocolState, Reply};
pub use policy::{Announcer, Change, Phase, Reason, ServiceHealth, VipState};
