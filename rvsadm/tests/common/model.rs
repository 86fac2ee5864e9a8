//! The kernel IPVS table as seen through rvsd's API, for replaying the golden fixtures
//! without root: applies [`Op`]s with IPVS's semantics (services in add order, real
//! servers newest first, `-e` replaces every field, zero timeouts leave a value alone) and
//! answers with IPVS's errors. Counters and connections are not simulated: the harness
//! learns them from the recorded listings (`@learn`).
//!
//! This is a test double for the sans-I/O part only; the integration tests drive the real
//! rvsd.

use std::net::Ipv4Addr;

use rvs_api::{
    ApiError, Applied, ClientError, Connection, ConnectionList, ErrorKind, Op, RealStatus,
    ServiceList, ServiceStatus, Status,
};
use rvs_config::{Protocol, Timeouts};
use rvsadm::{Api, Invocation, ListTarget, Resolver, format};

/// IPVS's table (CONFIG_IP_VS_TAB_BITS=12 in the VM the fixtures come from).
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Services in add order, real servers newest first.
    pub services: Vec<ServiceStatus>,
    /// Timeouts in force.
    pub timeouts: Timeouts,
    /// Connection entries (learned).
    pub connections: Vec<Connection>,
    /// Sync daemons (the VM has no interface the fixtures name, so none ever starts:
    /// every start is the kernel's "No such device", every stop "No daemon is running").
    pub sync: rvs_api::SyncStatus,
}

fn err(kind: ErrorKind, message: &str, op: usize) -> ApiError {
    ApiError {
        kind,
        message: message.to_string(),
        op: Some(op),
    }
}

impl Model {
    fn find(&mut self, id: rvs_config::ServiceId) -> Option<&mut ServiceStatus> {
        self.services.iter_mut().find(|s| s.service.id() == id)
    }

    fn apply_one(&mut self, op: &Op, i: usize) -> Result<(), ApiError> {
        match op {
            Op::AddService { service } => {
                if self.find(service.id()).is_some() {
                    return Err(err(ErrorKind::ServiceExists, "exists", i));
                }
                self.services.push(ServiceStatus {
                    service: service.clone(),
                    stats: Default::default(),
                    rates: Default::default(),
                    reals: Vec::new(),
                });
            }
            Op::EditService { service } => {
                let s = self
                    .find(service.id())
                    .ok_or_else(|| err(ErrorKind::NoService, "no service", i))?;
                let reals = std::mem::take(&mut s.service.reals);
                s.service = service.clone();
                s.service.reals = reals;
            }
            Op::DeleteService { service } => {
                let before = self.services.len();
                self.services.retain(|s| s.service.id() != *service);
                if self.services.len() == before {
                    return Err(err(ErrorKind::NoService, "no service", i));
                }
            }
            Op::AddReal { service, real } => {
                let s = self
                    .find(*service)
                    .ok_or_else(|| err(ErrorKind::NoService, "no service", i))?;
                let port = format::real_port(&s.service, real);
                if s.reals.iter().any(|r| {
                    r.real.address == real.address && format::real_port(&s.service, &r.real) == port
                }) {
                    return Err(err(ErrorKind::RealExists, "exists", i));
                }
                // The kernel's inet_addr_type check (only the table-free part: the VM's
                // subnet broadcast is not modelled).
                if rvs_config::not_unicast(real.address).is_some() {
                    return Err(err(ErrorKind::NotUnicast, "not unicast", i));
                }
                s.service.reals.push(real.clone());
                s.reals.insert(
                    0,
                    RealStatus {
                        real: real.clone(),
                        active_conns: 0,
                        inactive_conns: 0,
                        persist_conns: 0,
                        stats: Default::default(),
                        rates: Default::default(),
                    },
                );
            }
            Op::EditReal { service, real } => {
                let s = self
                    .find(*service)
                    .ok_or_else(|| err(ErrorKind::NoService, "no service", i))?;
                let port = format::real_port(&s.service, real);
                let svc = s.service.clone();
                let r = s
                    .reals
                    .iter_mut()
                    .find(|r| {
                        r.real.address == real.address && format::real_port(&svc, &r.real) == port
                    })
                    .ok_or_else(|| err(ErrorKind::NoReal, "no real", i))?;
                r.real = real.clone();
                for c in s.service.reals.iter_mut() {
                    if c.address == real.address && format::real_port(&svc, c) == port {
                        *c = real.clone();
                    }
                }
            }
            Op::DeleteReal {
                service,
                address,
                port,
            } => {
                let s = self
                    .find(*service)
                    .ok_or_else(|| err(ErrorKind::NoService, "no service", i))?;
                let port = port.unwrap_or(s.service.port);
                let svc = s.service.clone();
                let before = s.reals.len();
                s.reals.retain(|r| {
                    !(r.real.address == *address && format::real_port(&svc, &r.real) == port)
                });
                if s.reals.len() == before {
                    return Err(err(ErrorKind::NoReal, "no real", i));
                }
                s.service
                    .reals
                    .retain(|r| !(r.address == *address && format::real_port(&svc, r) == port));
            }
            Op::Clear => self.services.clear(),
            Op::Zero { service } => {
                let zero = |s: &mut ServiceStatus| {
                    s.stats = Default::default();
                    s.rates = Default::default();
                    for r in &mut s.reals {
                        r.stats = Default::default();
                        r.rates = Default::default();
                    }
                };
                match service {
                    Some(id) => zero(
                        self.find(*id)
                            .ok_or_else(|| err(ErrorKind::NoService, "no service", i))?,
                    ),
                    None => self.services.iter_mut().for_each(zero),
                }
            }
            Op::SetTimeouts { timeouts } => {
                if timeouts.tcp != 0 {
                    self.timeouts.tcp = timeouts.tcp;
                }
                if timeouts.tcp_fin != 0 {
                    self.timeouts.tcp_fin = timeouts.tcp_fin;
                }
                if timeouts.udp != 0 {
                    self.timeouts.udp = timeouts.udp;
                }
            }
        }
        Ok(())
    }
}

impl Api for Model {
    fn sync_status(&mut self) -> Result<rvs_api::SyncStatus, ClientError> {
        Ok(self.sync.clone())
    }

    fn sync_start(
        &mut self,
        _config: &rvs_api::SyncDaemonConfig,
    ) -> Result<rvs_api::SyncStatus, ClientError> {
        Err(ClientError::Api(ApiError {
            kind: ErrorKind::Invalid,
            message: "No such device".into(),
            op: None,
        }))
    }

    fn sync_stop(&mut self, _role: rvs_api::SyncRole) -> Result<rvs_api::SyncStatus, ClientError> {
        Err(ClientError::Api(ApiError {
            kind: ErrorKind::Invalid,
            message: "No daemon is running".into(),
            op: None,
        }))
    }

    fn apply(&mut self, ops: Vec<Op>) -> Result<Applied, ClientError> {
        let mut next = self.clone();
        for (i, op) in ops.iter().enumerate() {
            next.apply_one(op, i)?;
        }
        *self = next;
        Ok(Applied {
            services: self.services.len(),
            services_written: 0,
            services_deleted: 0,
            reals_written: 0,
            runtime_edits_dropped: 0,
        })
    }

    fn services(&mut self) -> Result<ServiceList, ClientError> {
        Ok(ServiceList {
            conn_table_size: 4096,
            services: self.services.clone(),
        })
    }

    fn connections(&mut self) -> Result<ConnectionList, ClientError> {
        Ok(ConnectionList {
            connections: self.connections.clone(),
        })
    }

    fn status(&mut self) -> Result<Status, ClientError> {
        // Through JSON so that fields rvsd adds with a default need no change here.
        serde_json::from_value(serde_json::json!({
            "version": "model",
            "conn_table_size": 4096,
            "timeouts": self.timeouts,
            "interfaces": [],
            "verdicts": [],
        }))
        .map_err(|e| ClientError::Decode(e.to_string()))
    }

    fn config(&mut self) -> Result<rvs_config::Config, ClientError> {
        let mut c = rvs_config::Config::default();
        c.limits.connections = 4096;
        c.timeouts = self.timeouts;
        c.services = self
            .services
            .iter()
            .map(|s| {
                let mut v = s.service.clone();
                // The model keeps the newest-first list; the configuration is in add order.
                v.reals = s.reals.iter().rev().map(|r| r.real.clone()).collect();
                v
            })
            .collect();
        Ok(c)
    }
}

/// A number as ipvsadm printed it (exact, or abbreviated with K/M/G/T).
fn number(s: &str) -> u64 {
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'K') => (&s[..s.len() - 1], 1_000),
        Some(b'M') => (&s[..s.len() - 1], 1_000_000),
        Some(b'G') => (&s[..s.len() - 1], 1_000_000_000),
        Some(b'T') => (&s[..s.len() - 1], 1_000_000_000_000),
        _ => (s, 1),
    };
    digits.parse::<u64>().expect("a counter") * mult
}

/// `host:port` as printed (numbers or names) back to an address and port.
fn addrport(s: &str, proto: Protocol, r: &dyn Resolver) -> (Ipv4Addr, u16) {
    let (h, p) = s.rsplit_once(':').expect("host:port");
    let addr = h
        .parse()
        .ok()
        .or_else(|| r.host_v4(h))
        .unwrap_or_else(|| panic!("unknown host {h}"));
    let pr = match proto {
        Protocol::Tcp => rvsadm::resolve::Proto::Tcp,
        Protocol::Udp => rvsadm::resolve::Proto::Udp,
    };
    let port = p
        .parse()
        .ok()
        .or_else(|| r.service_port(p, pr))
        .unwrap_or_else(|| panic!("unknown port {p}"));
    (addr, port)
}

/// Takes the counters, connection counts and connection entries that a recorded listing
/// shows into the model (lines are matched to services and real servers by position, in
/// the order rvsadm lists them, so truncated names need no lookup).
pub fn learn(model: &mut Model, argv: &[String], stdout: &str, r: &dyn Resolver) {
    let Ok(Invocation::List(req)) = rvsadm::parse(argv, r, false, false) else {
        panic!("@learn needs a listing, not {argv:?}");
    };
    let f = req.format;
    if req.target == ListTarget::Connections {
        model.connections = stdout
            .lines()
            .skip(2)
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let protocol = if w[0] == "UDP" {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                };
                let (m, s) = w[1].split_once(':').expect("mm:ss");
                Connection {
                    protocol,
                    expires_in: m.parse::<u64>().expect("minutes") * 60
                        + s.parse::<u64>().expect("seconds"),
                    state: w[2].to_string(),
                    client: addrport(w[3], protocol, r),
                    virtual_addr: addrport(w[4], protocol, r),
                    real: addrport(w[5], protocol, r),
                }
            })
            .collect();
        return;
    }
    let list = ServiceList {
        conn_table_size: 4096,
        services: model.services.clone(),
    };
    // (service, real server or None for the service's own line), in listing order.
    let mut order = Vec::new();
    for s in format::ordered_services(&list, f.nosort) {
        if let ListTarget::Service(id) = req.target
            && s.service.id() != id
        {
            continue;
        }
        order.push((s.service.id(), None));
        for rs in format::ordered_reals(s, f.nosort) {
            let port = format::real_port(&s.service, &rs.real);
            order.push((s.service.id(), Some((rs.real.address, port))));
        }
    }
    let body: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.starts_with("TCP ")
                || l.starts_with("UDP ")
                || (l.starts_with("  -> ") && !l.starts_with("  -> RemoteAddress"))
        })
        .collect();
    assert_eq!(
        body.len(),
        order.len(),
        "learned listing does not match the model:\n{stdout}"
    );
    for (line, (id, real)) in body.iter().zip(order) {
        // Service names are printed 33 columns wide, "  -> " and real servers 5 + 28.
        let cols: Vec<&str> = line.get(33..).unwrap_or("").split_whitespace().collect();
        let svc = model.find(id).expect("service");
        let s = svc.service.clone();
        if f.stats || f.rate {
            let v: Vec<u64> = cols.iter().map(|c| number(c)).collect();
            let (stats, rates) = match real {
                None => (&mut svc.stats, &mut svc.rates),
                Some((a, p)) => {
                    let rs = svc
                        .reals
                        .iter_mut()
                        .find(|r| r.real.address == a && format::real_port(&s, &r.real) == p)
                        .expect("real");
                    (&mut rs.stats, &mut rs.rates)
                }
            };
            if f.stats {
                *stats = rvs_api::Stats {
                    conns: v[0],
                    inpkts: v[1],
                    outpkts: v[2],
                    inbytes: v[3],
                    outbytes: v[4],
                };
            } else {
                *rates = rvs_api::Rates {
                    cps: v[0],
                    inpps: v[1],
                    outpps: v[2],
                    inbps: v[3],
                    outbps: v[4],
                };
            }
            continue;
        }
        let Some((a, p)) = real else { continue };
        let rs = svc
            .reals
            .iter_mut()
            .find(|r| r.real.address == a && format::real_port(&s, &r.real) == p)
            .expect("real");
        let n = |i: usize| cols[i].parse::<u64>().expect("count");
        if f.persistent_conn && !f.thresholds {
            rs.persist_conns = n(1);
        }
        // Default: Forward Weight Active InAct; thresholds: U L Active InAct;
        // persistent-conn: Weight Persist Active InAct. Active and InAct are columns 2, 3.
        rs.active_conns = n(2);
        rs.inactive_conns = n(3);
    }
}
