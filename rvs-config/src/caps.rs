//! What rvs knows about IPVS's schedulers, scheduler flags and forwarding methods, and which of
//! them rvs's data path runs today: the one table that validation (TOML, API, rvsadm, the
//! keepalived importer) and the planner consult, so that turning a scheduler on in the XDP
//! program is one entry here.
//!
//! IPVS facts (ip_vs_*.c of Linux 6.1, ipvsadm 1.31, keepalived 2.2.7):
//! - the default scheduler, for `ipvsadm -A` without `-s` and keepalived without `lb_algo`, is
//!   wlc;
//! - scheduler flags are three bits; sh and mh name the first two (`sh-fallback`/`sh-port`,
//!   `mh-fallback`/`mh-port`) and act on them, every other scheduler ignores them, and ipvsadm
//!   lists them as `flag-1`..`flag-3`;
//! - weights are an `int`: 0..=2147483647.

use std::net::Ipv4Addr;

use crate::{ForwardMethod, SchedFlag, Scheduler};

/// What rvs knows about one scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerCaps {
    /// The scheduler.
    pub scheduler: Scheduler,
    /// What it does, in a few words (ipvsadm's man page).
    pub about: &'static str,
    /// The names ipvsadm lists flag-1, flag-2, flag-3 under for this scheduler.
    pub flag_names: [&'static str; 3],
    /// The flags that change this scheduler's choices in IPVS.
    pub meaningful_flags: &'static [SchedFlag],
    /// Whether rvs's XDP program runs this scheduler today.
    pub in_dataplane: bool,
    /// The meaningful flags the XDP program honours today (a meaningful flag it does not
    /// honour is refused, never ignored).
    pub dataplane_flags: &'static [SchedFlag],
    /// Whether the scheduler reads per-server connection counts (the count-based ones; they
    /// need the data path's ActiveConn/InActConn accounting).
    pub counts_connections: bool,
}

const PLAIN: [&str; 3] = ["flag-1", "flag-2", "flag-3"];

/// Every IPVS scheduler, in ipvsadm's order (its `--help` and man page).
pub const SCHEDULERS: [SchedulerCaps; 14] = [
    caps(Scheduler::Rr, "round robin", true),
    caps(Scheduler::Wrr, "weighted round robin", true),
    SchedulerCaps {
        in_dataplane: true,
        ..counting(Scheduler::Lc, "least-connection")
    },
    SchedulerCaps {
        in_dataplane: true,
        ..counting(Scheduler::Wlc, "weighted least-connection")
    },
    SchedulerCaps {
        in_dataplane: true,
        ..counting(Scheduler::Lblc, "locality-based least-connection")
    },
    SchedulerCaps {
        in_dataplane: true,
        ..counting(
            Scheduler::Lblcr,
            "locality-based least-connection with replication",
        )
    },
    caps(Scheduler::Dh, "destination hashing", true),
    SchedulerCaps {
        flag_names: ["sh-fallback", "sh-port", "flag-3"],
        meaningful_flags: &[SchedFlag::Flag1, SchedFlag::Flag2],
        dataplane_flags: &[SchedFlag::Flag1, SchedFlag::Flag2],
        ..caps(Scheduler::Sh, "source hashing", true)
    },
    SchedulerCaps {
        in_dataplane: true,
        ..counting(Scheduler::Sed, "shortest expected delay")
    },
    SchedulerCaps {
        in_dataplane: true,
        ..counting(Scheduler::Nq, "never queue")
    },
    SchedulerCaps {
        in_dataplane: true,
        ..counting(Scheduler::Fo, "weighted failover")
    },
    SchedulerCaps {
        in_dataplane: true,
        ..counting(Scheduler::Ovf, "weighted overflow")
    },
    SchedulerCaps {
        flag_names: ["mh-fallback", "mh-port", "flag-3"],
        meaningful_flags: &[SchedFlag::Flag1, SchedFlag::Flag2],
        dataplane_flags: &[SchedFlag::Flag1, SchedFlag::Flag2],
        ..caps(Scheduler::Mh, "maglev hashing", true)
    },
    SchedulerCaps {
        in_dataplane: true,
        ..counting(Scheduler::Twos, "weighted random twos choice")
    },
];

const fn caps(scheduler: Scheduler, about: &'static str, in_dataplane: bool) -> SchedulerCaps {
    SchedulerCaps {
        scheduler,
        about,
        flag_names: PLAIN,
        meaningful_flags: &[],
        in_dataplane,
        dataplane_flags: &[],
        counts_connections: false,
    }
}

const fn counting(scheduler: Scheduler, about: &'static str) -> SchedulerCaps {
    SchedulerCaps {
        counts_connections: true,
        ..caps(scheduler, about, false)
    }
}

/// Most servers a service of a connection-count scheduler may have: the XDP program walks the
/// list on every new connection (docs/design/schedulers-xdp.md: ~4-5 ns per server, so 256 servers cost about
/// 1.2 µs per new connection), and the walk must have a bound the verifier accepts.
pub const MAX_WALK_SERVERS: usize = 256;

/// IPVS's default scheduler (ipvsadm `-A` without `-s`, keepalived without `lb_algo`).
pub const DEFAULT_SCHEDULER: Scheduler = Scheduler::Wlc;

/// Largest weight IPVS accepts (an `int`).
pub const MAX_WEIGHT: u32 = i32::MAX as u32;

/// Largest connection threshold ipvsadm accepts for `-x`/`-y` (it parses an `int`).
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;

/// Whether the data path enforces `-x`/`-y` connection thresholds: the XDP program sets
/// OVERLOAD at bind (`active + inactive >= upper`), rvsd clears it at unbind with IPVS's rule,
/// and every scheduler skips an overloaded server as IPVS's do.
pub const THRESHOLDS_IN_DATAPLANE: bool = true;

/// Why rvs cannot run a real server with these thresholds today, None when it can.
pub fn threshold_refusal(upper: u32, lower: u32) -> Option<String> {
    ((upper != 0 || lower != 0) && !THRESHOLDS_IN_DATAPLANE).then(|| {
        format!(
            "connection thresholds (-x {upper} -y {lower}, keepalived uthreshold/lthreshold) are not enforced by rvs's data path yet"
        )
    })
}

/// Whether the data path runs fwmark services (`ipvsadm -f`, keepalived `virtual_server
/// fwmark`): the XDP program classifies packets by the marks' match rules itself (it runs
/// before netfilter) and looks the fwmark service up before the address ones, as IPVS does.
pub const FWMARK_IN_DATAPLANE: bool = true;

/// Why rvs cannot run an fwmark service today, None when it can.
pub fn fwmark_refusal(mark: u32) -> Option<String> {
    (!FWMARK_IN_DATAPLANE).then(|| {
        format!(
            "fwmark service {mark}: firewall-mark services are not supported by rvs's data path yet"
        )
    })
}

impl Scheduler {
    /// This scheduler's entry of [`SCHEDULERS`].
    pub fn caps(self) -> &'static SchedulerCaps {
        // SCHEDULERS lists every variant in Scheduler::ALL's order (checked by a test).
        &SCHEDULERS[self as usize]
    }

    /// Most real servers the data path takes for this scheduler (the walking ones are bounded
    /// by [`MAX_WALK_SERVERS`]); None for the table schedulers.
    pub fn server_limit(self) -> Option<usize> {
        self.caps().counts_connections.then_some(MAX_WALK_SERVERS)
    }

    /// The name ipvsadm lists `flag` under for this scheduler.
    pub fn flag_name(self, flag: SchedFlag) -> &'static str {
        self.caps().flag_names[flag as usize]
    }

    /// Why rvs cannot run this scheduler with `flags` today, None when it can. (Every IPVS
    /// scheduler and flag runs today; the check stays so that a new entry of the table that
    /// the XDP program does not run yet is refused, never accepted and dropped.)
    pub fn refusal(self, flags: &[SchedFlag]) -> Option<String> {
        self.caps().refusal(flags)
    }
}

impl SchedulerCaps {
    /// Why rvs cannot run this scheduler with `flags`, by this entry; None when it can.
    pub fn refusal(&self, flags: &[SchedFlag]) -> Option<String> {
        let s = self.scheduler;
        if !self.in_dataplane {
            return Some(format!(
                "scheduler {} ({}) is not supported by rvs's data path yet (supported: {})",
                s.name(),
                self.about,
                supported_names().join(", ")
            ));
        }
        let missing: Vec<&str> = flags
            .iter()
            .filter(|f| self.meaningful_flags.contains(f) && !self.dataplane_flags.contains(f))
            .map(|&f| self.flag_names[f as usize])
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "scheduler flag {} of {} is not supported by rvs's data path yet",
                missing.join(", "),
                s.name()
            )
        })
    }
}

/// Names of the schedulers the data path runs today.
pub fn supported_names() -> Vec<&'static str> {
    SCHEDULERS
        .iter()
        .filter(|c| c.in_dataplane)
        .map(|c| c.scheduler.name())
        .collect()
}

/// What rvs knows about one forwarding method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardCaps {
    /// The method.
    pub method: ForwardMethod,
    /// ipvsadm's option for it.
    pub option: &'static str,
    /// The word `ipvsadm -L` prints in the Forward column.
    pub listed_as: &'static str,
    /// keepalived's `lb_kind` word.
    pub lb_kind: &'static str,
    /// Whether a real server may listen on another port than the service's (IPVS forces the
    /// virtual port for DR and TUN).
    pub maps_ports: bool,
}

/// Every forwarding method IPVS has that rvs's data path runs (IPVS's "Local" is the
/// director itself as real server, which rvs does not offer).
pub const FORWARDS: [ForwardCaps; 3] = [
    ForwardCaps {
        method: ForwardMethod::Dr,
        option: "-g",
        listed_as: "Route",
        lb_kind: "DR",
        maps_ports: false,
    },
    ForwardCaps {
        method: ForwardMethod::Tun,
        option: "-i",
        listed_as: "Tunnel",
        lb_kind: "TUN",
        maps_ports: false,
    },
    ForwardCaps {
        method: ForwardMethod::Nat,
        option: "-m",
        listed_as: "Masq",
        lb_kind: "NAT",
        maps_ports: true,
    },
];

impl ForwardMethod {
    /// This method's entry of [`FORWARDS`].
    pub fn caps(self) -> &'static ForwardCaps {
        &FORWARDS[self as usize]
    }
}

/// What a non-unicast address is, by the kernel's `inet_addr_type` rules that need no routing
/// table: None for a unicast one (including 0.0.0.1 and 240/4, which Linux 6.1 treats as
/// unicast). A subnet's broadcast address is only known from the host's routes.
pub fn not_unicast(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_unspecified() {
        Some("0.0.0.0")
    } else if a.is_broadcast() {
        Some("the limited broadcast address")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order() {
        for (i, s) in Scheduler::ALL.iter().enumerate() {
            assert_eq!(SCHEDULERS[i].scheduler, *s);
            assert_eq!(s.caps().scheduler, *s);
        }
        for m in [ForwardMethod::Dr, ForwardMethod::Tun, ForwardMethod::Nat] {
            assert_eq!(m.caps().method, m);
        }
    }

    #[test]
    fn flag_names_as_ipvsadm_lists_them() {
        assert_eq!(Scheduler::Sh.flag_name(SchedFlag::Flag2), "sh-port");
        assert_eq!(Scheduler::Mh.flag_name(SchedFlag::Flag1), "mh-fallback");
        assert_eq!(Scheduler::Rr.flag_name(SchedFlag::Flag1), "flag-1");
        assert_eq!(Scheduler::Sh.flag_name(SchedFlag::Flag3), "flag-3");
    }

    #[test]
    fn walking_schedulers_are_bounded() {
        assert_eq!(Scheduler::Wlc.server_limit(), Some(256));
        assert_eq!(Scheduler::Twos.server_limit(), Some(256));
        assert_eq!(Scheduler::Sh.server_limit(), None);
        assert_eq!(Scheduler::Rr.server_limit(), None);
    }

    #[test]
    fn refusals_name_what_is_missing() {
        assert_eq!(Scheduler::Rr.refusal(&[SchedFlag::Flag1]), None);
        assert_eq!(Scheduler::Mh.refusal(&[SchedFlag::Flag2]), None);
        assert_eq!(
            Scheduler::Mh.refusal(&[SchedFlag::Flag1, SchedFlag::Flag2]),
            None
        );
        assert_eq!(Scheduler::Wlc.refusal(&[]), None);
        // Every IPVS scheduler and every meaningful flag runs in the data path now.
        for c in &SCHEDULERS {
            assert_eq!(c.refusal(c.meaningful_flags), None, "{:?}", c.scheduler);
        }
        assert_eq!(Scheduler::Lblc.refusal(&[]), None);
        assert_eq!(Scheduler::Lblcr.refusal(&[SchedFlag::Flag3]), None);
        // An entry the data path does not run (as lblc's was) is refused, naming it and
        // what runs; so is a meaningful flag it does not honour.
        let off = SchedulerCaps {
            in_dataplane: false,
            ..counting(Scheduler::Lblc, "locality-based least-connection")
        };
        let e = off.refusal(&[]).expect("refused");
        assert!(
            e.contains("scheduler lblc (locality-based least-connection) is not supported")
                && e.contains("rr, wrr, lc, wlc, lblc, lblcr"),
            "{e}"
        );
        let no_port = SchedulerCaps {
            dataplane_flags: &[SchedFlag::Flag1],
            ..*Scheduler::Sh.caps()
        };
        let e = no_port
            .refusal(&[SchedFlag::Flag1, SchedFlag::Flag2])
            .expect("refused");
        assert_eq!(
            e,
            "scheduler flag sh-port of sh is not supported by rvs's data path yet"
        );
    }
}
