//! Which VIPs are announced, and the stop sequence.
//!
//! A VIP is announced while rvsd runs, its `[[bgp.vip]]` (or `announce_all`) allows it,
//! and its services have at least `min_healthy` healthy real servers each (`require =
//! "all"`, the default) or one of them has (`"any"`). A director that cannot serve a VIP
//! stops attracting its traffic; the router sends it to the directors that can.
//!
//! Stop: [`Announcer::stop`] withdraws every VIP at once and starts the drain; rvsd keeps
//! balancing (the router still sends packets in flight, and established flows that
//! re-hash elsewhere need the other directors to carry them) until [`Announcer::poll`]
//! says the drain is over; then rvsd stops the daemon and exits.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use rvs_config::bgp::{Bgp, Require};

/// One service's health, as rvsd sees it after health checks and edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    /// The service's VIP.
    pub vip: Ipv4Addr,
    /// The service, as operators write it (`TCP 198.18.0.10:80`), for log lines.
    pub service: String,
    /// Real servers in service with weight > 0.
    pub healthy: u32,
}

/// Where the announcer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Announcing what is healthy.
    Running,
    /// Everything withdrawn; balancing goes on until `until`.
    Draining {
        /// When the drain ends.
        until: Instant,
    },
    /// The drain is over: stop the daemon and exit.
    Stopped,
}

/// Why a VIP is (not) announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Its services have enough healthy servers (the fewest any has).
    Healthy {
        /// The fewest healthy servers among the services that count.
        healthy: u32,
        /// The minimum required.
        min: u32,
    },
    /// A service (`require = "all"`) or every service (`"any"`) has too few.
    TooFewHealthy {
        /// The service that decided (the worst one for "all", the best for "any").
        service: String,
        /// Its healthy servers.
        healthy: u32,
        /// The minimum required.
        min: u32,
    },
    /// `[[bgp.vip]] announce = false` (or `announce_all = false` without an entry).
    Disabled,
    /// No service has this VIP any more.
    NoService,
    /// rvsd is stopping (withdrawn for the drain).
    Stopping,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Healthy { healthy, min } => {
                write!(f, "{healthy} healthy real server(s), at least {min} needed")
            }
            Reason::TooFewHealthy {
                service,
                healthy,
                min,
            } => write!(
                f,
                "{service} has {healthy} healthy real server(s), at least {min} needed"
            ),
            Reason::Disabled => write!(f, "announce = false"),
            Reason::NoService => write!(f, "no service has this VIP"),
            Reason::Stopping => write!(f, "rvsd is stopping (draining)"),
        }
    }
}

/// One VIP's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipState {
    /// The VIP.
    pub vip: Ipv4Addr,
    /// Whether it is announced.
    pub announced: bool,
    /// Why.
    pub reason: Reason,
}

/// A VIP that changed between announced and withdrawn (one log line each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The VIP.
    pub vip: Ipv4Addr,
    /// Announced now (`false`: withdrawn).
    pub announced: bool,
    /// Why.
    pub reason: Reason,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.announced {
            "announced"
        } else {
            "withdrawn"
        };
        write!(f, "VIP {} {verb}: {}", self.vip, self.reason)
    }
}

/// The announcement state machine.
#[derive(Debug, Clone)]
pub struct Announcer {
    settings: Bgp,
    phase: Phase,
    vips: BTreeMap<Ipv4Addr, VipState>,
    /// The last health snapshot, kept so a policy change re-decides without new input.
    last: Vec<ServiceHealth>,
}

impl Announcer {
    /// An announcer for `settings` that announces nothing until the first [`update`].
    ///
    /// [`update`]: Announcer::update
    pub fn new(settings: Bgp) -> Announcer {
        Announcer {
            settings,
            phase: Phase::Running,
            vips: BTreeMap::new(),
            last: Vec::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Bgp {
        &self.settings
    }

    /// New settings (a reload): decides again on the last health snapshot.
    pub fn set_settings(&mut self, settings: Bgp) -> Vec<Change> {
        self.settings = settings;
        let last = std::mem::take(&mut self.last);
        self.update(&last)
    }

    /// Decides every VIP from a full health snapshot; returns what changed.
    pub fn update(&mut self, services: &[ServiceHealth]) -> Vec<Change> {
        self.last = services.to_vec();
        let mut by_vip: BTreeMap<Ipv4Addr, Vec<&ServiceHealth>> = BTreeMap::new();
        for s in services {
            by_vip.entry(s.vip).or_default().push(s);
        }
        // VIPs known before but without a service now are withdrawn (and then forgotten).
        let mut next: BTreeMap<Ipv4Addr, VipState> = BTreeMap::new();
        for (vip, list) in &by_vip {
            let reason = self.decide(*vip, list);
            let announced = matches!(reason, Reason::Healthy { .. });
            next.insert(
                *vip,
                VipState {
                    vip: *vip,
                    announced,
                    reason,
                },
            );
        }
        let mut changes = Vec::new();
        for (vip, old) in &self.vips {
            if old.announced && !next.contains_key(vip) {
                changes.push(Change {
                    vip: *vip,
                    announced: false,
                    reason: Reason::NoService,
                });
            }
        }
        for (vip, state) in &next {
            let was = self.vips.get(vip).is_some_and(|o| o.announced);
            if was != state.announced {
                changes.push(Change {
                    vip: *vip,
                    announced: state.announced,
                    reason: state.reason.clone(),
                });
            }
        }
        self.vips = next;
        changes.sort_by_key(|c| c.vip);
        changes
    }

    fn decide(&self, vip: Ipv4Addr, services: &[&ServiceHealth]) -> Reason {
        if !matches!(self.phase, Phase::Running) {
            return Reason::Stopping;
        }
        let (on, min) = self.settings.vip_policy(vip);
        if !on {
            return Reason::Disabled;
        }
        let pick = match self.settings.require {
            Require::All => services.iter().min_by_key(|s| s.healthy),
            Require::Any => services.iter().max_by_key(|s| s.healthy),
        };
        match pick {
            None => Reason::NoService,
            Some(s) if s.healthy >= min => Reason::Healthy {
                healthy: s.healthy,
                min,
            },
            Some(s) => Reason::TooFewHealthy {
                service: s.service.clone(),
                healthy: s.healthy,
                min,
            },
        }
    }

    /// Starts the stop sequence at `now`: every VIP withdrawn, the drain runs for
    /// `drain_seconds`. A second call changes nothing.
    pub fn stop(&mut self, now: Instant) -> Vec<Change> {
        if !matches!(self.phase, Phase::Running) {
            return Vec::new();
        }
        let drain = Duration::from_secs(u64::from(self.settings.drain_seconds));
        self.phase = Phase::Draining { until: now + drain };
        let last = std::mem::take(&mut self.last);
        self.update(&last)
    }

    /// Advances the clock; returns the phase (`Stopped` once the drain is over).
    pub fn poll(&mut self, now: Instant) -> Phase {
        if let Phase::Draining { until } = self.phase
            && now >= until
        {
            self.phase = Phase::Stopped;
        }
        self.phase
    }

    /// When the drain ends, if draining.
    pub fn drain_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Draining { until } => Some(until),
            _ => None,
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The VIPs to announce now.
    pub fn announced(&self) -> BTreeSet<Ipv4Addr> {
        self.vips
            .values()
            .filter(|v| v.announced)
            .map(|v| v.vip)
            .collect()
    }

    /// Every VIP with a service and its state, by address.
    pub fn vips(&self) -> impl Iterator<Item = &VipState> {
        self.vips.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_config::bgp::BgpFile;

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
    const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);

    fn settings(extra: &str) -> Bgp {
        BgpFile::from_toml(&format!(
            "[bgp]\nlocal_as = 65001\nrouter_id = \"198.18.3.2\"\ndrain_seconds = 5\n{extra}\n[[bgp.peer]]\naddress = \"198.18.3.1\"\nas = 65000\n"
        ))
        .expect("valid settings")
    }

    fn svc(vip: Ipv4Addr, port: u16, healthy: u32) -> ServiceHealth {
        ServiceHealth {
            vip,
            service: format!("TCP {vip}:{port}"),
            healthy,
        }
    }

    #[test]
    fn nothing_is_announced_before_the_first_snapshot() {
        let a = Announcer::new(settings(""));
        assert!(a.announced().is_empty());
        assert_eq!(a.phase(), Phase::Running);
    }

    #[test]
    fn a_vip_is_announced_with_one_healthy_server_and_withdrawn_with_none() {
        let mut a = Announcer::new(settings(""));
        let c = a.update(&[svc(VIP, 80, 3)]);
        assert_eq!(
            c,
            vec![Change {
                vip: VIP,
                announced: true,
                reason: Reason::Healthy { healthy: 3, min: 1 }
            }]
        );
        assert_eq!(a.announced(), BTreeSet::from([VIP]));
        // Same answer again: no change, no log line.
        assert!(a.update(&[svc(VIP, 80, 2)]).is_empty());
        let c = a.update(&[svc(VIP, 80, 0)]);
        assert_eq!(c.len(), 1);
        assert!(!c[0].announced);
        assert_eq!(
            c[0].to_string(),
            "VIP 198.18.0.10 withdrawn: TCP 198.18.0.10:80 has 0 healthy real server(s), at least 1 needed"
        );
        assert!(a.announced().is_empty());
        // One comes back: announced again.
        let c = a.update(&[svc(VIP, 80, 1)]);
        assert!(c[0].announced);
        assert_eq!(a.announced(), BTreeSet::from([VIP]));
    }

    #[test]
    fn require_all_needs_every_service_require_any_one() {
        let both = [svc(VIP, 80, 2), svc(VIP, 443, 0)];
        let mut all = Announcer::new(settings(""));
        all.update(&both);
        assert!(all.announced().is_empty());
        let v = all.vips().next().expect("state");
        assert_eq!(
            v.reason,
            Reason::TooFewHealthy {
                service: "TCP 198.18.0.10:443".into(),
                healthy: 0,
                min: 1
            }
        );
        let mut any = Announcer::new(settings("require = \"any\"\n"));
        any.update(&both);
        assert_eq!(any.announced(), BTreeSet::from([VIP]));
    }

    #[test]
    fn per_vip_minimum_and_off_switch() {
        let extra = "[[bgp.vip]]\naddress = \"198.18.0.10\"\nmin_healthy = 2\n\n[[bgp.vip]]\naddress = \"198.18.0.11\"\nannounce = false\n";
        let mut a = Announcer::new(settings(extra));
        a.update(&[svc(VIP, 80, 1), svc(VIP2, 80, 5)]);
        assert!(a.announced().is_empty());
        a.update(&[svc(VIP, 80, 2), svc(VIP2, 80, 5)]);
        assert_eq!(a.announced(), BTreeSet::from([VIP]));
        let off = a.vips().find(|v| v.vip == VIP2).expect("VIP2");
        assert_eq!(off.reason, Reason::Disabled);
    }

    #[test]
    fn a_removed_service_withdraws_its_vip() {
        let mut a = Announcer::new(settings(""));
        a.update(&[svc(VIP, 80, 1), svc(VIP2, 80, 1)]);
        let c = a.update(&[svc(VIP, 80, 1)]);
        assert_eq!(
            c,
            vec![Change {
                vip: VIP2,
                announced: false,
                reason: Reason::NoService
            }]
        );
        assert_eq!(a.announced(), BTreeSet::from([VIP]));
    }

    #[test]
    fn stop_withdraws_everything_first_then_drains_for_the_configured_time() {
        let mut a = Announcer::new(settings(""));
        a.update(&[svc(VIP, 80, 3), svc(VIP2, 80, 1)]);
        let t0 = Instant::now();
        let c = a.stop(t0);
        assert_eq!(c.len(), 2);
        assert!(
            c.iter()
                .all(|c| !c.announced && c.reason == Reason::Stopping)
        );
        assert!(a.announced().is_empty());
        assert_eq!(a.drain_deadline(), Some(t0 + Duration::from_secs(5)));
        // Health changes during the drain announce nothing.
        assert!(a.update(&[svc(VIP, 80, 5)]).is_empty());
        assert!(a.announced().is_empty());
        assert!(matches!(
            a.poll(t0 + Duration::from_secs(4)),
            Phase::Draining { .. }
        ));
        assert_eq!(a.poll(t0 + Duration::from_secs(5)), Phase::Stopped);
        assert!(a.stop(t0 + Duration::from_secs(6)).is_empty());
    }

    #[test]
    fn a_settings_change_decides_again_on_the_last_snapshot() {
        let mut a = Announcer::new(settings(""));
        a.update(&[svc(VIP, 80, 1)]);
        let c = a.set_settings(settings("min_healthy = 2\n"));
        assert_eq!(c.len(), 1);
        assert!(!c[0].announced);
        let c = a.set_settings(settings(""));
        assert!(c[0].announced);
    }
}
