//! Maps the typed keepalived model onto rvs's own: the desired state
//! ([`rvs_config::Config`]: services, real servers, schedulers, timeouts) and the health
//! model ([`rvs_health::HealthModel`]: checkers, retries, quorum, sorry server, scripts).
//!
//! keepalived's defaults and inheritance are resolved here (virtual server → real server →
//! checker, the inner one winning), as keepalived 2.2.7 resolves them. What rvs cannot do
//! yet (other schedulers, fwmark services, IPv6, SCTP, persistence, SMTP
//! alerts…) becomes a warning naming the line; services that rvs cannot run as written are
//! left out rather than run differently.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use rvs_config::{
    Config, ForwardMethod, Persistence, Protocol, RealServer, SchedFlag, Scheduler, ServiceId,
    VirtualService,
};
use rvs_health::model::{
    CheckKind, Checker, DnsCheck, DnsType, HealthModel, HttpCheck, HttpVersion, MiscCheck,
    RealHealth, Script, ServiceHealth, SmtpCheck, SorryServer, Timing, TlsCheck, UdpCheck,
    UrlCheck,
};

use crate::model::{
    CheckDefaults, CheckerConf, CheckerKindConf, GroupEntry, HttpConf, KeepalivedConf, LbKind,
    RealServerConf, ScriptConf, VirtualServer, VsKey, VsProtocol,
};
use crate::syntax::{Loc, SyntaxError, Warning};

/// keepalived's `delay_loop` default.
pub const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
/// keepalived's `connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// keepalived's scheduler when `lb_algo` is missing.
pub const DEFAULT_SCHEDULER: &str = rvs_config::DEFAULT_SCHEDULER.name();
/// keepalived's SMTP_CHECK HELO name.
pub const DEFAULT_HELO: &str = "smtpchecker.keepalived.org";
/// Most addresses one virtual_server_group range may expand to.
pub const MAX_RANGE: u32 = 65_536;

/// The result of mapping: rvs's desired state, its health model, and the warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// Services and real servers (every real server at its configured weight).
    pub config: Config,
    /// Health checking of those services.
    pub health: HealthModel,
}

/// Maps `conf` onto rvs's model, appending warnings.
pub fn map(
    conf: &KeepalivedConf,
    warnings: &mut Vec<Warning>,
    marks: &[rvs_config::fwmark::MarkRule],
) -> Result<Mapped, SyntaxError> {
    let mut m = Mapper {
        conf,
        marks,
        warnings,
        config: Config::default(),
        health: HealthModel::default(),
        seen: HashMap::new(),
    };
    m.global()?;
    m.vrrp();
    for vs in &conf.virtual_servers {
        m.virtual_server(vs)?;
    }
    Ok(Mapped {
        config: m.config,
        health: m.health,
    })
}

struct Mapper<'a> {
    conf: &'a KeepalivedConf,
    /// The classification rules of the fwmark services (from rvs-fwmark.toml).
    marks: &'a [rvs_config::fwmark::MarkRule],
    warnings: &'a mut Vec<Warning>,
    config: Config,
    health: HealthModel,
    /// Services already defined, with where.
    seen: HashMap<ServiceId, Loc>,
}

fn err<T>(loc: &Loc, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        loc: loc.clone(),
        message: message.into(),
    })
}

/// The model's script, running as its own user, else global_defs' `script_user`.
fn script_as(s: &ScriptConf, default_user: Option<&(String, Option<String>)>) -> Script {
    let (user, group) = match (&s.user, default_user) {
        (Some(u), _) => (Some(u.clone()), s.group.clone()),
        (None, Some((u, g))) => (Some(u.clone()), g.clone()),
        (None, None) => (None, None),
    };
    Script {
        argv: s.argv.clone(),
        user,
        group,
    }
}

fn forward(kind: LbKind) -> (ForwardMethod, rvs_config::Tunnel) {
    match kind {
        LbKind::Nat => (ForwardMethod::Nat, rvs_config::Tunnel::default()),
        LbKind::Dr => (ForwardMethod::Dr, rvs_config::Tunnel::default()),
        LbKind::Tun(t) => (ForwardMethod::Tun, t),
    }
}

impl Mapper<'_> {
    fn script(&self, s: &ScriptConf) -> Script {
        script_as(s, self.conf.global_defs.script_user.as_ref())
    }

    fn warn(&mut self, loc: &Loc, message: impl Into<String>) {
        self.warnings.push(Warning::problem(loc, message));
    }

    /// A warning about something that runs as under keepalived anyway.
    fn note(&mut self, loc: &Loc, message: impl Into<String>) {
        self.warnings.push(Warning::note(loc, message));
    }

    fn global(&mut self) -> Result<(), SyntaxError> {
        let g = &self.conf.global_defs;
        if let Some(t) = g.lvs_timeouts {
            let timeouts = &mut self.config.timeouts;
            if let Some(v) = t.tcp {
                timeouts.tcp = v;
            }
            if let Some(v) = t.tcpfin {
                timeouts.tcp_fin = v;
            }
            if let Some(v) = t.udp {
                timeouts.udp = v;
            }
        }
        if let Some(d) = &g.lvs_sync_daemon {
            if !self
                .conf
                .vrrp_instances
                .iter()
                .any(|i| i.name == d.value.instance)
            {
                return Err(SyntaxError {
                    loc: d.loc.clone(),
                    message: format!(
                        "lvs_sync_daemon follows VRRP instance {:?}, which is not defined",
                        d.value.instance
                    ),
                });
            }
            if d.value.group.is_some_and(|a| a.is_ipv6()) {
                return Err(SyntaxError {
                    loc: d.loc.clone(),
                    message: "an IPv6 lvs_sync_daemon group is not supported by rvs yet".into(),
                });
            }
        }
        for kw in &g.keywords {
            let why = match kw.value.as_str() {
                "notification_email"
                | "notification_email_from"
                | "smtp_server"
                | "smtp_helo_name"
                | "smtp_connect_timeout" => "e-mail alerts are not sent by rvs; ignored",
                "router_id" => {
                    "router_id only names this node in keepalived's e-mail alerts, which rvs does not send; ignored"
                }
                "enable_script_security" => {
                    "rvs does not check the ownership and permissions of scripts; ignored"
                }
                "checker_log_all_failures" => {
                    "not needed: rvs logs every failed check (at debug level) and counts it; ignored"
                }
                "lvs_timeouts" | "lvs_flush" | "script_user" | "lvs_sync_daemon" => continue,
                // Read by rvs-vrrp's mapping, which warns about what it cannot do.
                name if name.starts_with("vrrp_") || name == "default_interface" => continue,
                // Unknown keywords were already reported by the model.
                _ => continue,
            };
            self.note(&kw.loc, format!("global_defs: `{}`: {why}", kw.value));
        }
        Ok(())
    }

    fn vrrp(&mut self) {
        let conf = self.conf;
        // VRRP blocks are mapped (and warned about) by rvs-vrrp, which rvsd and rvs-vrrpd
        // run with --keepalived.
        if let Some(ssl) = &conf.ssl
            && let Some(loc) = &ssl.loc
            && (ssl.certificate.is_some() || ssl.key.is_some() || ssl.password.is_some())
        {
            self.warn(
                loc,
                "SSL: client certificates (certificate, key, password) are not supported by rvs; SSL_GET connects without one",
            );
        }
    }

    /// The (address, port, where) triples a virtual server stands for; empty when rvs
    /// cannot run it (with a warning saying why).
    fn addresses(&mut self, vs: &VirtualServer) -> Result<Vec<(Ipv4Addr, u16, Loc)>, SyntaxError> {
        match &vs.key {
            // rvs's identity of an fwmark service (VirtualService::id): the mark as an
            // address, port 0; the match rules come from rvs-fwmark.toml (crate::load).
            VsKey::Fwmark(mark) => {
                if self.marks.iter().any(|r| r.mark == *mark) {
                    return Ok(vec![(Ipv4Addr::from(*mark), 0, vs.loc.clone())]);
                }
                self.warn(
                    &vs.loc,
                    format!("virtual_server fwmark {mark}: no classification rules for mark {mark} (rvs classifies packets itself at XDP, before netfilter: give them in {} beside this file); the service is left out", crate::FWMARK_RULES_FILE),
                );
                Ok(Vec::new())
            }
            VsKey::Address { address, port } => match address {
                IpAddr::V4(a) => Ok(vec![(*a, port.unwrap_or(0), vs.loc.clone())]),
                IpAddr::V6(_) => {
                    self.warn(
                        &vs.loc,
                        format!("virtual_server {address}: IPv6 services are not supported by rvs yet; the service is left out"),
                    );
                    Ok(Vec::new())
                }
            },
            VsKey::Group(name) => {
                let conf = self.conf;
                let Some(group) = conf.virtual_server_groups.iter().find(|g| &g.name == name)
                else {
                    return err(
                        &vs.loc,
                        format!(
                            "virtual_server group {name}: no virtual_server_group {name} is defined"
                        ),
                    );
                };
                let mut out = Vec::new();
                for entry in &group.entries {
                    match entry {
                        GroupEntry::Fwmark { mark, loc } => self.warn(
                            loc,
                            format!("virtual_server_group {name}: fwmark {mark} is not supported by rvs yet; this entry is left out"),
                        ),
                        GroupEntry::Range {
                            first: IpAddr::V4(first),
                            last: IpAddr::V4(last),
                            port,
                            loc,
                        } => {
                            let (a, b) = (u32::from(*first), u32::from(*last));
                            if b - a >= MAX_RANGE {
                                return err(loc, format!("this range has more than {MAX_RANGE} addresses"));
                            }
                            for ip in a..=b {
                                out.push((Ipv4Addr::from(ip), port.unwrap_or(0), loc.clone()));
                            }
                        }
                        GroupEntry::Range { loc, .. } => self.warn(
                            loc,
                            format!("virtual_server_group {name}: IPv6 addresses are not supported by rvs yet; this entry is left out"),
                        ),
                    }
                }
                Ok(out)
            }
        }
    }

    fn virtual_server(&mut self, vs: &VirtualServer) -> Result<(), SyntaxError> {
        let addresses = self.addresses(vs)?;
        if addresses.is_empty() {
            return Ok(());
        }
        let protocol = match &vs.protocol {
            // keepalived ignores an fwmark service's protocol (it warns when one is set);
            // the mark's rules say which packets it takes.
            _ if matches!(vs.key, VsKey::Fwmark(_)) => Protocol::Tcp,
            Some(p) => match p.value {
                VsProtocol::Tcp => Protocol::Tcp,
                VsProtocol::Udp => Protocol::Udp,
                VsProtocol::Sctp => {
                    self.warn(
                        &p.loc,
                        "protocol SCTP is not supported by rvs yet; the service is left out",
                    );
                    return Ok(());
                }
            },
            None => {
                self.warn(
                    &vs.loc,
                    "no protocol set: keepalived 2.2.7 then uses UDP (as the kernel does), and so does rvs; add `protocol TCP` if you meant TCP",
                );
                Protocol::Udp
            }
        };
        let (algo, algo_loc) = match &vs.lb_algo {
            Some(a) => (a.value.as_str(), a.loc.clone()),
            None => (DEFAULT_SCHEDULER, vs.loc.clone()),
        };
        // keepalived 2.2.7 reports an unknown name ("Invalid lvs_scheduler 'foo' -
        // ignoring") and runs the service with its default scheduler.
        let (algo, scheduler) = match Scheduler::from_name(algo) {
            Some(s) => (algo, s),
            None => {
                self.warn(
                    &algo_loc,
                    format!(
                        "lb_algo {algo:?} is not an IPVS scheduler ({}); ignored: the default scheduler {DEFAULT_SCHEDULER} applies, as keepalived does",
                        Scheduler::ALL.map(Scheduler::name).join(", ")
                    ),
                );
                (DEFAULT_SCHEDULER, rvs_config::DEFAULT_SCHEDULER)
            }
        };
        let mut sched_flags = Vec::new();
        let mut one_packet = false;
        for flag in &vs.sched_flags {
            let f = match flag.value.as_str() {
                "flag-1" | "sh-fallback" | "mh-fallback" => SchedFlag::Flag1,
                "flag-2" | "sh-port" | "mh-port" => SchedFlag::Flag2,
                "flag-3" => SchedFlag::Flag3,
                _ => {
                    if protocol == Protocol::Udp {
                        one_packet = true;
                    } else {
                        self.warn(&flag.loc, "ops (one-packet scheduling) needs protocol UDP; ignored, as keepalived does");
                    }
                    continue;
                }
            };
            if !sched_flags.contains(&f) {
                sched_flags.push(f);
            }
        }
        // What IPVS runs but rvs's data path does not yet (rvs_config::caps): left out, named.
        if let Some(reason) = scheduler.refusal(&sched_flags) {
            let why = if vs.lb_algo.is_none() {
                format!(
                    "no lb_algo set: keepalived's default scheduler is {algo}; {reason}; the service is left out"
                )
            } else {
                format!("lb_algo {algo}: {reason}; the service is left out")
            };
            self.warn(&algo_loc, why);
            return Ok(());
        }
        let mut persistence = vs.persistence_timeout.as_ref().map(|p| Persistence {
            timeout: p.value,
            ..Persistence::default()
        });
        if let Some(g) = &vs.persistence_granularity {
            let Ok(mask) = g.value.parse::<Ipv4Addr>() else {
                return err(
                    &g.loc,
                    format!(
                        "persistence_granularity must be an IPv4 netmask such as 255.255.255.0, not {:?}",
                        g.value
                    ),
                );
            };
            // A mask with gaps (255.0.255.0) is passed on by keepalived and applied bit by
            // bit by IPVS, as by rvs's data path: nothing to say.
            match &mut persistence {
                Some(p) => p.netmask = mask,
                None => self.note(
                    &g.loc,
                    "persistence_granularity without persistence_timeout has no effect; ignored",
                ),
            }
        }
        if persistence.is_none() && matches!(vs.key, VsKey::Address { port: None, .. }) {
            self.warn(
                &vs.loc,
                "a virtual server without a port takes every port and is only valid with persistence: using persistence_timeout 360, as keepalived does",
            );
            persistence = Some(Persistence::default());
        }
        let vs_kind = match &vs.lb_kind {
            Some(k) => k.value,
            None => {
                self.warn(
                    &vs.loc,
                    "no lb_kind set: keepalived then uses NAT, and so does rvs",
                );
                LbKind::Nat
            }
        };

        // Real servers: the Config side and the health side, built once and shared by every
        // address of a group.
        let mut reals: Vec<(RealServer, RealHealth, Loc)> = Vec::new();
        for rs in &vs.real_servers {
            let Some(pair) = self.real_server(vs, rs, vs_kind, &addresses)? else {
                continue;
            };
            reals.push(pair);
        }
        if vs.real_servers.is_empty() && vs.sorry_server.is_none() {
            // keepalived 2.2.7: "Virtual server ... has no real servers - ignoring".
            self.warn(
                &vs.loc,
                "this virtual_server has no real servers; keepalived ignores it, and so does rvs",
            );
            return Ok(());
        }
        let sorry = self.sorry_server(vs, vs_kind)?;
        let quorum = vs.quorum.unwrap_or(1);
        let mut hysteresis = vs.hysteresis.unwrap_or(0);
        if hysteresis >= quorum {
            self.warn(
                &vs.loc,
                format!(
                    "hysteresis {hysteresis} >= quorum {quorum}; using {} as keepalived does",
                    quorum - 1
                ),
            );
            hysteresis = quorum - 1;
        }

        let fwmark = match vs.key {
            VsKey::Fwmark(mark) => Some(mark),
            _ => None,
        };
        for (address, port, loc) in addresses {
            let id = ServiceId {
                // An fwmark service takes TCP and UDP alike (as its rules say).
                protocol: if fwmark.is_some() {
                    Protocol::Tcp
                } else {
                    protocol
                },
                address,
                port,
            };
            if let Some(first) = self.seen.get(&id) {
                return err(
                    &loc,
                    format!("service {id} is already defined at {}", first.file_line()),
                );
            }
            self.seen.insert(id, loc.clone());
            let mut svc_reals = Vec::new();
            let mut health_reals = Vec::new();
            let mut dup = HashSet::new();
            for (real, health, rloc) in &reals {
                let mut real = real.clone();
                let mut health = health.clone();
                if (real.forward != ForwardMethod::Nat && real.port.is_some_and(|p| p != port))
                    || port == 0
                {
                    // DR/TUN keep the service's port (only a group's entries can differ);
                    // a port-0 service forwards every port.
                    real.port = None;
                    health.real.port = None;
                }
                let eff = real.port.unwrap_or(port);
                if !dup.insert((real.address, eff)) {
                    return err(
                        rloc,
                        format!(
                            "real server {}:{eff} is listed twice in this virtual_server",
                            real.address
                        ),
                    );
                }
                svc_reals.push(real);
                health_reals.push(health);
            }
            let mut svc = match fwmark {
                Some(mark) => VirtualService::fwmark(mark),
                None => VirtualService::new(protocol, address, port),
            };
            svc.scheduler = scheduler;
            svc.sched_flags = sched_flags.clone();
            svc.persistence = persistence;
            svc.one_packet = one_packet;
            svc.reals = svc_reals;
            self.config.services.push(svc);
            let sorry_here = sorry.clone().map(|mut s| {
                if s.real.forward != ForwardMethod::Nat || port == 0 {
                    s.real.port = None;
                }
                s
            });
            self.health.services.push(ServiceHealth {
                service: id,
                quorum,
                hysteresis,
                quorum_up: vs.quorum_up.as_ref().map(|s| self.script(s)),
                quorum_down: vs.quorum_down.as_ref().map(|s| self.script(s)),
                omega: vs.omega,
                sorry_server: sorry_here,
                reals: health_reals,
            });
        }
        Ok(())
    }

    fn sorry_server(
        &mut self,
        vs: &VirtualServer,
        vs_kind: LbKind,
    ) -> Result<Option<SorryServer>, SyntaxError> {
        let Some(s) = &vs.sorry_server else {
            if vs.sorry_server_inhibit {
                self.warn(
                    &vs.loc,
                    "sorry_server_inhibit without sorry_server; ignored",
                );
            }
            return Ok(None);
        };
        let IpAddr::V4(address) = s.address else {
            self.warn(
                &s.loc,
                "an IPv6 sorry_server is not supported by rvs yet; ignored",
            );
            return Ok(None);
        };
        let kind = vs
            .sorry_server_lb_kind
            .as_ref()
            .map_or(vs_kind, |k| k.value);
        let mut real = RealServer::new(address);
        real.port = s.port;
        (real.forward, real.tunnel) = forward(kind);
        Ok(Some(SorryServer {
            real,
            inhibit: vs.sorry_server_inhibit,
        }))
    }

    fn real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServerConf,
        vs_kind: LbKind,
        addresses: &[(Ipv4Addr, u16, Loc)],
    ) -> Result<Option<(RealServer, RealHealth, Loc)>, SyntaxError> {
        let IpAddr::V4(address) = rs.address else {
            self.warn(
                &rs.loc,
                format!(
                    "real_server {}: IPv6 real servers are not supported by rvs yet; left out",
                    rs.address
                ),
            );
            return Ok(None);
        };
        // What IPVS refuses (keepalived logs the kernel's error and goes on without the
        // server) and what rvs cannot forward to (the director itself): left out, named.
        let unusable = if let Some(class) = rvs_config::caps::not_unicast(address) {
            Some(format!(
                "real_server {address} is not a unicast address ({class}): IPVS refuses it (\"Invalid operation.  Possibly wrong module version, address not unicast, ...\"); left out"
            ))
        } else if addresses.iter().any(|a| a.0 == address) {
            Some(format!(
                "real_server {address} is the virtual server's own address: IPVS would deliver to the director itself, which rvs does not do; left out"
            ))
        } else {
            None
        };
        if let Some(why) = unusable {
            self.warn(&rs.loc, why);
            return Ok(None);
        }
        if let Some(why) = rvs_config::caps::threshold_refusal(
            rs.uthreshold.unwrap_or(0),
            rs.lthreshold.unwrap_or(0),
        ) {
            self.warn(&rs.loc, format!("real_server {address}: {why}; left out"));
            return Ok(None);
        }
        let kind = rs.lb_kind.as_ref().map_or(vs_kind, |k| k.value);
        let (fwd, tunnel) = forward(kind);
        let weight = match &rs.weight {
            Some(w) if w.value > i64::from(rvs_config::MAX_WEIGHT) => {
                return err(
                    &w.loc,
                    format!(
                        "weight {} is above IPVS's maximum of {}",
                        w.value,
                        rvs_config::MAX_WEIGHT
                    ),
                );
            }
            Some(w) => w.value as u32,
            None => 1,
        };
        // The port every address of the service shares, if any (groups may differ).
        let vs_port = addresses.first().map(|a| a.1).unwrap_or(0);
        let mut port = rs.port;
        if fwd != ForwardMethod::Nat
            && let Some(p) = rs.port
            && addresses.iter().any(|a| a.1 != p && a.1 != 0)
        {
            self.warn(
                &rs.loc,
                format!("real server port {p} differs from the virtual server's: direct routing and tunnelling keep the service port (keepalived resets it too)"),
            );
            port = None;
        }
        let mut real = RealServer::new(address);
        real.port = port;
        real.weight = weight;
        real.forward = fwd;
        real.tunnel = tunnel;
        real.u_threshold = rs.uthreshold.unwrap_or(0);
        real.l_threshold = rs.lthreshold.unwrap_or(0);
        // Checkers connect to the port written on the real server, else the service's.
        let check_port = rs.port.unwrap_or(vs_port);
        let mut checkers = Vec::new();
        for c in &rs.checkers {
            checkers.push(self.checker(vs, rs, c, address, check_port)?);
        }
        let health = RealHealth {
            real: real.clone(),
            inhibit_on_failure: rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure),
            notify_up: rs.notify_up.as_ref().map(|s| self.script(s)),
            notify_down: rs.notify_down.as_ref().map(|s| self.script(s)),
            checkers,
        };
        Ok(Some((real, health, rs.loc.clone())))
    }

    fn checker(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServerConf,
        c: &CheckerConf,
        rs_addr: Ipv4Addr,
        rs_port: u16,
    ) -> Result<Checker, SyntaxError> {
        let pick = |f: fn(&CheckDefaults) -> Option<Duration>| {
            f(&c.defaults).or(f(&rs.defaults)).or(f(&vs.defaults))
        };
        let delay_loop = pick(|d| d.delay_loop).unwrap_or(DEFAULT_DELAY_LOOP);
        if delay_loop.is_zero() {
            return err(&c.loc, "delay_loop must be more than 0 seconds");
        }
        let connect_timeout = pick(|d| d.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let (default_retry, default_dbr) = match &c.kind {
            CheckerKindConf::Misc(_) => (0, Duration::from_secs(1)),
            CheckerKindConf::Dns(_) => (3, delay_loop),
            CheckerKindConf::HttpGet(_) | CheckerKindConf::SslGet(_) => (1, Duration::from_secs(3)),
            _ => (1, Duration::from_secs(1)),
        };
        let retry = c
            .defaults
            .retry
            .or(rs.defaults.retry)
            .or(vs.defaults.retry)
            .unwrap_or(default_retry);
        let delay_before_retry = pick(|d| d.delay_before_retry).unwrap_or(default_dbr);
        let warmup = pick(|d| d.warmup).unwrap_or(delay_loop);
        let alpha = c
            .defaults
            .alpha
            .or(rs.defaults.alpha)
            .or(vs.defaults.alpha)
            .unwrap_or(false);
        let ip = c.conn.connect_ip.unwrap_or(IpAddr::V4(rs_addr));
        let port = c.conn.connect_port.unwrap_or(rs_port);
        let needs_port = !matches!(c.kind, CheckerKindConf::Misc(_) | CheckerKindConf::Ping);
        if needs_port && port == 0 {
            return err(
                &c.loc,
                "this checker has no port to connect to: set connect_port (the real server and the virtual server have none)",
            );
        }
        let vhost = |h: &HttpConf| {
            h.virtualhost
                .clone()
                .or(rs.virtualhost.clone())
                .or(vs.virtualhost.clone())
        };
        let mut timeout = connect_timeout;
        let kind = match &c.kind {
            CheckerKindConf::Tcp => CheckKind::Tcp,
            CheckerKindConf::Ping => CheckKind::Ping,
            CheckerKindConf::HttpGet(h) | CheckerKindConf::SslGet(h) => {
                let tls = matches!(c.kind, CheckerKindConf::SslGet(_));
                let default_host = vhost(h);
                if !tls && h.enable_sni {
                    self.warn(&c.loc, "enable_sni only applies to SSL_GET; ignored");
                }
                let urls = h
                    .urls
                    .iter()
                    .map(|u| UrlCheck {
                        path: u.path.clone().unwrap_or_else(|| "/".into()),
                        status: if u.status_code.is_empty() {
                            vec![(200, 299)]
                        } else {
                            u.status_code.clone()
                        },
                        digest: u.digest,
                        virtualhost: u.virtualhost.clone().or(default_host.clone()),
                    })
                    .collect();
                let version = match h.http_protocol.as_deref() {
                    Some("1.1") => HttpVersion::Http11,
                    Some("1.0C") => HttpVersion::Http10Close,
                    _ => HttpVersion::Http10,
                };
                let verify_ca = self
                    .conf
                    .ssl
                    .as_ref()
                    .and_then(|s| s.ca.clone())
                    .map(PathBuf::from);
                CheckKind::Http(HttpCheck {
                    tls: tls.then(|| TlsCheck {
                        sni: if h.enable_sni {
                            default_host.clone()
                        } else {
                            None
                        },
                        verify_ca,
                    }),
                    urls,
                    version,
                })
            }
            CheckerKindConf::Misc(m) => {
                let Some(path) = &m.misc_path else {
                    return err(&c.loc, "MISC_CHECK needs misc_path");
                };
                let mut s = self.script(path);
                if let Some((u, g)) = &m.user {
                    s.user = Some(u.clone());
                    s.group = g.clone();
                }
                // keepalived: misc_timeout, else the delay_loop.
                timeout = m
                    .misc_timeout
                    .map_or(delay_loop, |t| Duration::from_secs(u64::from(t)));
                CheckKind::Misc(MiscCheck {
                    script: s,
                    dynamic: m.misc_dynamic,
                })
            }
            CheckerKindConf::Dns(d) => {
                let qtype = match &d.qtype {
                    Some(t) => match DnsType::parse(t) {
                        Some(q) => q,
                        None => {
                            return err(
                                &c.loc,
                                format!(
                                    "DNS_CHECK type must be A, NS, CNAME, SOA, MX, TXT or AAAA, not {t:?}"
                                ),
                            );
                        }
                    },
                    None => DnsType::Soa,
                };
                CheckKind::Dns(DnsCheck {
                    qtype,
                    name: d.name.clone().unwrap_or_else(|| ".".into()),
                })
            }
            CheckerKindConf::Smtp(s) => CheckKind::Smtp(SmtpCheck {
                helo_name: s
                    .helo_name
                    .clone()
                    .or(self.conf.global_defs.smtp_helo_name.clone())
                    .unwrap_or_else(|| DEFAULT_HELO.into()),
            }),
            CheckerKindConf::Udp(u) => CheckKind::Udp(UdpCheck {
                payload: u.payload.clone(),
                require_reply: u.require_reply.is_some(),
                reply_pattern: u.require_reply.clone().unwrap_or_default(),
                min_reply_length: u.min_reply_length.unwrap_or(0) as usize,
                max_reply_length: u.max_reply_length.unwrap_or(255) as usize,
            }),
        };
        Ok(Checker {
            kind,
            target: SocketAddr::new(ip, port),
            bind_addr: c.conn.bindto,
            bind_port: c.conn.bind_port,
            bind_if: c.conn.bind_if.clone(),
            fwmark: c.conn.fwmark,
            timeout,
            timing: Timing {
                delay_loop,
                retry,
                delay_before_retry,
                warmup,
                alpha,
            },
            origin: c.loc.file_line(),
        })
    }
}
