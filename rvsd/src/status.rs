//! What operators watch: one [`View`] of the daemon's state, gathered by the main task on
//! each request, rendered as the live status page's JSON (`/status.json`) and, by
//! `metrics`, as Prometheus metrics; plus the state only this module keeps: a ring of
//! rate samples for the page's charts and the outcome of the last reload.
//!
//! Sans-I/O: every function takes the time it needs as an argument.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rvs_api::{Rates, RealStatus, ServiceList, Stats, Status};
use rvs_config::{RealServer, ServiceId};
use serde::Serialize;

/// The page itself: self-contained (inline CSS and JS, no external assets); it fetches
/// `/status.json` every few seconds.
pub const PAGE: &str = include_str!("status.html");

/// Samples kept per service: five minutes at the estimator's 2 s interval.
pub const HISTORY_LEN: usize = 150;

/// Services whose own history is kept (the totals cover every service).
pub const MAX_TRACKED: usize = 1_000;

/// Everything the page and the metrics show, gathered in one pass by the main task.
pub struct View {
    /// Daemon status (version, verdicts, interfaces, VRRP instances).
    pub status: Status,
    /// Services and the real servers in force, with counters and rates.
    pub services: ServiceList,
    /// Health checking, when rvsd follows a keepalived.conf.
    pub health: Option<HealthView>,
    /// VRRP instances with their counters (empty without VRRP).
    pub vrrp: Vec<rvs_vrrp::machine::InstanceStatus>,
    /// Connection sync daemons with their counters (empty when none runs).
    pub sync: rvs_api::SyncStatus,
    /// Connection-table entries that belong to a real server (the last scan's count).
    pub conn_entries: u64,
    /// Real servers whose ActiveConn/InActConn the expiry passes corrected to the connection
    /// table's (reconciliation), summed since start.
    pub conn_corrections: u64,
    /// The last (re)load of the configuration.
    pub reload: ReloadRecord,
    /// XDP attach mode in force (`native`, `generic`, …).
    pub xdp_mode: String,
    /// When the view was taken.
    pub now: SystemTime,
    /// The same moment on the monotonic clock (health times are monotonic).
    pub now_mono: Instant,
}

/// The health engine's view of every checked real server.
pub struct HealthView {
    /// Event counters.
    pub counters: rvs_health::Counters,
    /// Every checked real server, including those taken out of their service.
    pub reals: Vec<rvs_health::RealStatus>,
}

/// A real server's health as the page and the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Its checks pass.
    Up,
    /// A check fails: it is out of its service (or at weight 0 with inhibit_on_failure).
    Down,
    /// Nothing checks it (a TOML or rvsadm service, a sorry server): it is in.
    Unchecked,
}

impl Health {
    /// The `rvs_backend_up` value: 1 unless checks say it is down.
    pub fn gauge(self) -> i64 {
        i64::from(self != Health::Down)
    }
}

/// One real server of a service, merged from the dataplane and the health engine.
#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    /// Address.
    pub address: std::net::Ipv4Addr,
    /// Port (the service's when the real server sets none).
    pub port: u16,
    /// Forwarding method.
    pub forward: rvs_config::ForwardMethod,
    /// Weight in force (0 while out of the service).
    pub weight: u32,
    /// Weight it has when up.
    pub configured_weight: u32,
    /// Health state.
    pub health: Health,
    /// Whether its last check passed, if one ran.
    pub last_check_ok: Option<bool>,
    /// What its last check said.
    pub last_check: Option<String>,
    /// Unix seconds of the last check.
    pub last_check_at: Option<u64>,
    /// Unix seconds since when it is in its health state (or since checking started).
    pub since: Option<u64>,
    /// In the dataplane now (false when health checks took it out).
    pub in_service: bool,
    /// Established connections.
    pub active_conns: u64,
    /// Other connections.
    pub inactive_conns: u64,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
}

/// Unix seconds of a monotonic instant, as seen from `view`.
fn unix_of(view: &View, at: Instant) -> u64 {
    let ago = view.now_mono.saturating_duration_since(at);
    unix_secs(view.now.checked_sub(ago).unwrap_or(UNIX_EPOCH))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Health records by (service, address, port).
type HealthIndex<'a> = HashMap<(ServiceId, std::net::Ipv4Addr, u16), &'a rvs_health::RealStatus>;

impl View {
    /// Every service's real servers: those in force (newest first, as IPVS lists them),
    /// then the checked ones that health checks took out, so a down server stays visible.
    pub fn backends(&self) -> Vec<(ServiceId, Vec<Backend>)> {
        // One index per call: a scrape stays linear in the number of real servers.
        let checked: HealthIndex<'_> = self
            .health
            .iter()
            .flat_map(|h| h.reals.iter())
            .map(|h| ((h.service, h.real.address, h.real.port), h))
            .collect();
        let mut taken_out: HashMap<ServiceId, Vec<&rvs_health::RealStatus>> = HashMap::new();
        for h in self.health.iter().flat_map(|h| h.reals.iter()) {
            taken_out.entry(h.service).or_default().push(h);
        }
        self.services
            .services
            .iter()
            .map(|st| {
                let svc = &st.service;
                let sid = svc.id();
                let mut out: Vec<Backend> = st
                    .reals
                    .iter()
                    .map(|rs| {
                        let port = rs.real.port.unwrap_or(svc.port);
                        self.backend_in(
                            port,
                            rs,
                            checked.get(&(sid, rs.real.address, port)).copied(),
                        )
                    })
                    .collect();
                let present: std::collections::HashSet<(std::net::Ipv4Addr, u16)> =
                    out.iter().map(|b| (b.address, b.port)).collect();
                for hr in taken_out.get(&sid).into_iter().flatten() {
                    if !present.contains(&(hr.real.address, hr.real.port)) {
                        out.push(self.backend_out(hr));
                    }
                }
                (sid, out)
            })
            .collect()
    }

    fn backend_in(
        &self,
        port: u16,
        rs: &RealStatus,
        h: Option<&rvs_health::RealStatus>,
    ) -> Backend {
        let r: &RealServer = &rs.real;
        let mut b = Backend {
            address: r.address,
            port,
            forward: r.forward,
            weight: r.weight,
            configured_weight: h.map_or(r.weight, |h| h.weight),
            health: Health::Unchecked,
            last_check_ok: None,
            last_check: None,
            last_check_at: None,
            since: None,
            in_service: true,
            active_conns: rs.active_conns,
            inactive_conns: rs.inactive_conns,
            stats: rs.stats,
            rates: rs.rates,
        };
        if let Some(h) = h {
            self.annotate(&mut b, h);
        }
        b
    }

    fn backend_out(&self, h: &rvs_health::RealStatus) -> Backend {
        let mut b = Backend {
            address: h.real.address,
            port: h.real.port,
            forward: rvs_config::ForwardMethod::default(),
            weight: 0,
            configured_weight: h.weight,
            health: Health::Unchecked,
            last_check_ok: None,
            last_check: None,
            last_check_at: None,
            since: None,
            in_service: false,
            active_conns: 0,
            inactive_conns: 0,
            stats: Stats::default(),
            rates: Rates::default(),
        };
        self.annotate(&mut b, h);
        b
    }

    fn annotate(&self, b: &mut Backend, h: &rvs_health::RealStatus) {
        b.health = if h.alive { Health::Up } else { Health::Down };
        b.since = Some(unix_of(self, h.since));
        if let Some(c) = &h.last_check {
            b.last_check_ok = Some(c.ok);
            b.last_check = Some(c.text.clone());
            b.last_check_at = Some(unix_of(self, c.at));
        }
    }
}

/// The outcome of the last load or reload of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadRecord {
    /// Whether it was applied.
    pub ok: bool,
    /// Unix seconds when it happened.
    pub at: u64,
    /// Why it was refused (empty when applied).
    pub message: String,
    /// Reloads attempted since start.
    pub attempts: u64,
}

impl ReloadRecord {
    /// The start: the configuration was applied at `now`.
    pub fn started(now: SystemTime) -> ReloadRecord {
        ReloadRecord {
            ok: true,
            at: unix_secs(now),
            message: String::new(),
            attempts: 0,
        }
    }

    /// Records a reload's outcome.
    pub fn record<T, E: std::fmt::Display>(&mut self, outcome: &Result<T, E>, now: SystemTime) {
        self.attempts += 1;
        self.at = unix_secs(now);
        match outcome {
            Ok(_) => {
                self.ok = true;
                self.message.clear();
            }
            Err(e) => {
                self.ok = false;
                self.message = e.to_string();
            }
        }
    }
}

/// One sample of the rates: unix seconds, then cps, inpps, outpps, inbps, outbps.
pub type Sample = [u64; 6];

/// Rings of rate samples: the totals over every service, and each of the first
/// [`MAX_TRACKED`] services' own.
#[derive(Debug, Default)]
pub struct History {
    totals: VecDeque<Sample>,
    services: HashMap<ServiceId, VecDeque<Sample>>,
}

fn push(ring: &mut VecDeque<Sample>, s: Sample) {
    if ring.len() == HISTORY_LEN {
        ring.pop_front();
    }
    ring.push_back(s);
}

impl History {
    /// Records the rates of every service at `now`; services not listed are forgotten.
    pub fn record(&mut self, now: SystemTime, rates: &[(ServiceId, Rates)]) {
        let t = unix_secs(now);
        let sample = |r: &Rates| [t, r.cps, r.inpps, r.outpps, r.inbps, r.outbps];
        let mut total = [t, 0, 0, 0, 0, 0];
        for (_, r) in rates {
            for (acc, v) in total[1..].iter_mut().zip(&sample(r)[1..]) {
                *acc = acc.saturating_add(*v);
            }
        }
        push(&mut self.totals, total);
        let tracked: HashMap<ServiceId, Sample> = rates
            .iter()
            .take(MAX_TRACKED)
            .map(|(id, r)| (*id, sample(r)))
            .collect();
        self.services.retain(|id, _| tracked.contains_key(id));
        for (id, s) in tracked {
            push(self.services.entry(id).or_default(), s);
        }
    }

    /// The totals' samples, oldest first.
    pub fn totals(&self) -> impl Iterator<Item = &Sample> {
        self.totals.iter()
    }

    /// A service's samples, oldest first (none for an untracked one).
    pub fn service(&self, id: &ServiceId) -> impl Iterator<Item = &Sample> {
        self.services.get(id).into_iter().flatten()
    }
}

/// The page's JSON (`GET /status.json`).
pub fn json(view: &View, history: &History, interval: Duration) -> serde_json::Value {
    let services: Vec<serde_json::Value> = view
        .services
        .services
        .iter()
        .zip(view.backends())
        .map(|(st, (sid, backends))| {
            let svc = &st.service;
            serde_json::json!({
                "protocol": svc.protocol.to_string(),
                "address": svc.address,
                "port": svc.port,
                "scheduler": svc.scheduler.to_string(),
                "flags": flags(svc),
                "stats": st.stats,
                "rates": st.rates,
                "reals": backends,
                "up": backends.iter().filter(|b| b.health != Health::Down).count(),
                "history": history.service(&sid).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "version": view.status.version,
        "now": unix_secs(view.now),
        "interval_secs": interval.as_secs(),
        "interfaces": view.status.interfaces,
        "xdp_mode": view.xdp_mode,
        "conn_table": {"entries": view.conn_entries, "size": view.status.conn_table_size},
        "reload": view.reload,
        "health_checks": view.health.is_some(),
        "vrrp": view.status.vrrp,
        "sync": view.sync.daemons,
        "verdicts": view.status.verdicts,
        "totals": history.totals().collect::<Vec<_>>(),
        "services": services,
    })
}

/// A service's flags as `ipvsadm -L` shows them (persistence, ops, scheduler flags).
pub fn flags(svc: &rvs_config::VirtualService) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = &svc.persistence {
        out.push(format!("persistent {}", p.timeout));
        if p.netmask != std::net::Ipv4Addr::BROADCAST {
            out.push(format!("mask {}", p.netmask));
        }
    }
    if svc.one_packet {
        out.push("ops".to_owned());
    }
    if svc.sloppy_tcp {
        out.push("sloppy-tcp".to_owned());
    }
    for f in &svc.sched_flags {
        if let Ok(serde_json::Value::String(name)) = serde_json::to_value(f) {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use rvs_api::ServiceStatus;
    use rvs_config::{Protocol, VirtualService};
    use rvs_health::{LastCheck, model::RealId};

    use super::*;

    fn rates(cps: u64) -> Rates {
        Rates {
            cps,
            inpps: cps * 10,
            ..Rates::default()
        }
    }

    #[test]
    fn history_keeps_a_bounded_ring_and_sums_totals() {
        let a = ServiceId {
            protocol: Protocol::Tcp,
            address: Ipv4Addr::new(198, 18, 0, 10),
            port: 80,
        };
        let b = ServiceId { port: 443, ..a };
        let mut h = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        for i in 0..(HISTORY_LEN as u64 + 5) {
            h.record(
                t0 + Duration::from_secs(2 * i),
                &[(a, rates(i)), (b, rates(1))],
            );
        }
        let totals: Vec<_> = h.totals().collect();
        assert_eq!(totals.len(), HISTORY_LEN);
        let last = totals[HISTORY_LEN - 1];
        let n = HISTORY_LEN as u64 + 4;
        assert_eq!(last, &[1_000 + 2 * n, n + 1, (n + 1) * 10, 0, 0, 0]);
        assert_eq!(totals[0][0], 1_000 + 2 * 5, "the oldest samples fell off");
        assert_eq!(h.service(&b).count(), HISTORY_LEN);
        // A deleted service's history goes with it.
        h.record(t0, &[(a, rates(0))]);
        assert_eq!(h.service(&b).count(), 0);
    }

    /// One TCP service with a server in force and a checked one taken out as down.
    pub(crate) fn example_view() -> View {
        let now_mono = Instant::now();
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let mut svc = VirtualService::new(Protocol::Tcp, Ipv4Addr::new(198, 18, 0, 10), 80);
        svc.reals
            .push(RealServer::new(Ipv4Addr::new(198, 18, 2, 11)));
        let sid = svc.id();
        let up = RealStatus {
            real: svc.reals[0].clone(),
            active_conns: 2,
            inactive_conns: 1,
            persist_conns: 0,
            stats: Stats::default(),
            rates: Rates::default(),
        };
        let health = |addr: Ipv4Addr, alive: bool, ago: u64| rvs_health::RealStatus {
            service: sid,
            real: RealId {
                address: addr,
                port: 80,
            },
            alive,
            weight: 3,
            failed_checkers: usize::from(!alive),
            checks_ok: 1,
            checks_failed: u64::from(!alive),
            last_check: Some(LastCheck {
                ok: alive,
                text: if alive {
                    "TCP_CHECK: ok".into()
                } else {
                    "TCP_CHECK: refused".into()
                },
                at: now_mono - Duration::from_secs(1),
            }),
            since: now_mono - Duration::from_secs(ago),
        };
        View {
            status: Status {
                version: "0".into(),
                conn_table_size: 16,
                timeouts: rvs_config::Timeouts::default(),
                interfaces: vec![],
                verdicts: vec![],
                vrrp: vec![],
                bgp: None,
            },
            services: ServiceList {
                conn_table_size: 16,
                services: vec![ServiceStatus {
                    service: svc,
                    stats: Stats::default(),
                    rates: Rates::default(),
                    reals: vec![up],
                }],
            },
            health: Some(HealthView {
                counters: rvs_health::Counters::default(),
                reals: vec![
                    health(Ipv4Addr::new(198, 18, 2, 11), true, 100),
                    health(Ipv4Addr::new(198, 18, 2, 12), false, 30),
                ],
            }),
            vrrp: vec![],
            sync: rvs_api::SyncStatus {
                daemons: vec![rvs_api::SyncDaemonStatus {
                    role: rvs_api::SyncRole::Backup,
                    interface: "eth1".into(),
                    syncid: 51,
                    maxlen: 1472,
                    group: Ipv4Addr::new(224, 0, 0, 81),
                    port: 8848,
                    ttl: 1,
                    origin: "keepalived".into(),
                    counters: rvs_api::SyncCounters {
                        messages_received: 4,
                        records_received: 40,
                        installed: 37,
                        templates_installed: 2,
                        unmatched: 1,
                        ..rvs_api::SyncCounters::default()
                    },
                }],
            },
            conn_entries: 3,
            conn_corrections: 0,
            reload: ReloadRecord::started(now),
            xdp_mode: "native".into(),
            now,
            now_mono,
        }
    }

    #[test]
    fn a_server_taken_out_by_health_checks_stays_visible_as_down() {
        let view = example_view();
        let rows = view.backends();
        let b = &rows[0].1;
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].health, b[0].weight, b[0].active_conns),
            (Health::Up, 1, 2)
        );
        assert_eq!(b[0].since, Some(10_000 - 100));
        assert_eq!(b[1].address, Ipv4Addr::new(198, 18, 2, 12));
        assert_eq!(
            (b[1].health, b[1].weight, b[1].in_service),
            (Health::Down, 0, false)
        );
        assert_eq!(b[1].since, Some(10_000 - 30));
        assert_eq!(b[1].last_check.as_deref(), Some("TCP_CHECK: refused"));
        assert_eq!(b[1].health.gauge(), 0);
        let j = json(&view, &History::default(), Duration::from_secs(2));
        assert_eq!(j["services"][0]["up"], 1);
        assert_eq!(j["services"][0]["reals"][1]["health"], "down");
        assert_eq!(j["conn_table"]["entries"], 3);
        assert_eq!(j["sync"][0]["role"], "backup");
        assert_eq!(j["sync"][0]["counters"]["installed"], 37);
    }

    #[test]
    fn reload_record_keeps_the_last_outcome() {
        let t = UNIX_EPOCH + Duration::from_secs(50);
        let mut r = ReloadRecord::started(t);
        r.record::<(), _>(&Err("line 3: bad"), t + Duration::from_secs(5));
        assert_eq!(
            (r.ok, r.at, r.attempts, r.message.as_str()),
            (false, 55, 1, "line 3: bad")
        );
        r.record::<(), &str>(&Ok(()), t + Duration::from_secs(9));
        assert_eq!(
            (r.ok, r.at, r.attempts, r.message.as_str()),
            (true, 59, 2, "")
        );
    }
}
