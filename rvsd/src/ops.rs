//! Applies API ops to a desired state with ipvsadm's semantics (sans-I/O).
//!
//! A batch is worked out against the current state without copying it: the services it
//! touches are copied on first write, so a single op costs the same with 10 or 100 000
//! services. The first failing op stops the batch with an error naming it, and the caller
//! keeps its old state. Touched services are validated, and the totals against the limits.

use std::collections::HashMap;

use rvs_api::{ApiError, ErrorKind, Op};
use rvs_config::{
    Config, ServiceId, Timeouts, VirtualService, check_dataplane_service, validate_service,
};

/// What a batch asks for besides the new configuration.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SideEffects {
    /// Counters to zero: None inside = all services.
    pub zero: Vec<Option<ServiceId>>,
}

/// The outcome of a batch: the touched services' new versions (None = deleted), in the
/// order they were first touched, and the timeouts.
#[derive(Debug, PartialEq, Eq)]
pub struct Delta {
    /// Touched services.
    pub services: Vec<(ServiceId, Option<VirtualService>)>,
    /// Timeouts after the batch.
    pub timeouts: Timeouts,
}

/// A service list indexed by id, with its total number of real servers.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// Service id → position in the config's list.
    pub position: HashMap<ServiceId, usize>,
    /// Real servers over all services.
    pub reals: usize,
}

impl Index {
    /// Indexes `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            position: config
                .services
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id(), i))
                .collect(),
            reals: config.services.iter().map(|s| s.reals.len()).sum(),
        }
    }
}

/// Copy-on-write view of the configuration being edited.
struct Editing<'a> {
    base: &'a Config,
    index: &'a Index,
    touched: HashMap<ServiceId, Option<VirtualService>>,
    order: Vec<ServiceId>,
    timeouts: Timeouts,
    /// Index of the last op that touched each service (to name it when the result fails
    /// validation).
    last_op: HashMap<ServiceId, usize>,
    /// Index of the op being applied.
    current: usize,
}

fn no_service(id: &ServiceId) -> ApiError {
    ApiError::new(ErrorKind::NoService, format!("no such service {id}"))
}

impl<'a> Editing<'a> {
    fn base_service(&self, id: &ServiceId) -> Option<&'a VirtualService> {
        self.index
            .position
            .get(id)
            .and_then(|&i| self.base.services.get(i))
    }

    fn exists(&self, id: &ServiceId) -> bool {
        match self.touched.get(id) {
            Some(s) => s.is_some(),
            None => self.index.position.contains_key(id),
        }
    }

    fn set(&mut self, id: ServiceId, svc: Option<VirtualService>) {
        self.last_op.insert(id, self.current);
        if self.touched.insert(id, svc).is_none() {
            self.order.push(id);
        }
    }

    fn find(&mut self, id: &ServiceId) -> Result<&mut VirtualService, ApiError> {
        self.last_op.insert(*id, self.current);
        if !self.touched.contains_key(id) {
            let copy = self
                .base_service(id)
                .cloned()
                .ok_or_else(|| no_service(id))?;
            self.set(*id, Some(copy));
        }
        self.touched
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or_else(|| no_service(id))
    }

    /// rvsadm `-A -f N` and keepalived's fwmark services bring no rules: the
    /// configuration's `[[fwmark_rule]]`s (set or imported) of that mark apply.
    fn with_mark_rules(&self, service: &VirtualService) -> VirtualService {
        let mut service = service.clone();
        if let Some(mark) = service.fwmark
            && service.matches.is_empty()
        {
            service.matches = rvs_config::fwmark::rules_of(&self.base.fwmark_rules, mark);
        }
        service
    }

    fn apply(&mut self, op: &Op, effects: &mut SideEffects) -> Result<(), ApiError> {
        match op {
            Op::AddService { service } => {
                let id = service.id();
                if self.exists(&id) {
                    return Err(ApiError::new(
                        ErrorKind::ServiceExists,
                        format!("service {id} already exists"),
                    ));
                }
                self.set(id, Some(self.with_mark_rules(service)));
            }
            Op::EditService { service } => {
                let service = self.with_mark_rules(service);
                let svc = self.find(&service.id())?;
                let reals = std::mem::take(&mut svc.reals);
                *svc = VirtualService { reals, ..service };
            }
            Op::DeleteService { service } => {
                if !self.exists(service) {
                    return Err(no_service(service));
                }
                self.set(*service, None);
            }
            Op::AddReal { service, real } => {
                let svc = self.find(service)?;
                let port = real.port.unwrap_or(svc.port);
                if svc
                    .reals
                    .iter()
                    .any(|r| r.address == real.address && r.port.unwrap_or(svc.port) == port)
                {
                    return Err(ApiError::new(
                        ErrorKind::RealExists,
                        format!(
                            "real server {}:{port} already exists in service {service}",
                            real.address
                        ),
                    ));
                }
                svc.reals.push(real.clone());
            }
            Op::EditReal { service, real } => {
                let svc = self.find(service)?;
                let svc_port = svc.port;
                let port = real.port.unwrap_or(svc_port);
                let existing = svc
                    .reals
                    .iter_mut()
                    .find(|r| r.address == real.address && r.port.unwrap_or(svc_port) == port)
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorKind::NoReal,
                            format!(
                                "no real server {}:{port} in service {service}",
                                real.address
                            ),
                        )
                    })?;
                *existing = real.clone();
            }
            Op::DeleteReal {
                service,
                address,
                port,
            } => {
                let svc = self.find(service)?;
                let svc_port = svc.port;
                let port = port.unwrap_or(svc_port);
                let before = svc.reals.len();
                svc.reals
                    .retain(|r| !(r.address == *address && r.port.unwrap_or(svc_port) == port));
                if svc.reals.len() == before {
                    return Err(ApiError::new(
                        ErrorKind::NoReal,
                        format!("no real server {address}:{port} in service {service}"),
                    ));
                }
            }
            Op::Clear => {
                let ids: Vec<ServiceId> = self
                    .base
                    .services
                    .iter()
                    .map(|s| s.id())
                    .chain(self.touched.keys().copied())
                    .collect();
                for id in ids {
                    self.set(id, None);
                }
            }
            Op::Zero { service } => {
                if let Some(id) = service
                    && !self.exists(id)
                {
                    return Err(no_service(id));
                }
                effects.zero.push(*service);
            }
            Op::SetTimeouts { timeouts } => {
                let t = &mut self.timeouts;
                for (slot, new) in [
                    (&mut t.tcp, timeouts.tcp),
                    (&mut t.tcp_fin, timeouts.tcp_fin),
                    (&mut t.udp, timeouts.udp),
                ] {
                    if new != 0 {
                        *slot = new;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Works out `ops` against `config` (indexed by `index`) and validates the result.
pub fn plan_ops(
    config: &Config,
    index: &Index,
    ops: &[Op],
) -> Result<(Delta, SideEffects), ApiError> {
    let mut ed = Editing {
        base: config,
        index,
        touched: HashMap::new(),
        order: Vec::new(),
        timeouts: config.timeouts,
        last_op: HashMap::new(),
        current: 0,
    };
    let mut effects = SideEffects::default();
    for (i, op) in ops.iter().enumerate() {
        ed.current = i;
        ed.apply(op, &mut effects).map_err(|mut e| {
            e.op = Some(i);
            e
        })?;
    }
    let invalid = |e: rvs_config::ConfigError| {
        let kind = match e {
            rvs_config::ConfigError::NotUnicast { .. } => ErrorKind::NotUnicast,
            _ => ErrorKind::Invalid,
        };
        ApiError::new(kind, e.to_string())
    };
    let (mut services, mut reals) = (config.services.len(), index.reals);
    for (id, svc) in &ed.touched {
        if let Some(old) = ed.base_service(id) {
            services -= 1;
            reals -= old.reals.len();
        }
        if let Some(svc) = svc {
            validate_service(svc)
                .and_then(|()| check_dataplane_service(svc))
                .map_err(|e| ApiError {
                    op: ed.last_op.get(id).copied(),
                    ..invalid(e)
                })?;
            services += 1;
            reals += svc.reals.len();
        }
    }
    let totals = Config {
        limits: config.limits,
        timeouts: ed.timeouts,
        ..Config::default()
    };
    totals.validate_totals(services, reals).map_err(invalid)?;
    let mut touched = ed.touched;
    let services = ed
        .order
        .into_iter()
        .filter_map(|id| touched.remove(&id).map(|s| (id, s)))
        .collect();
    Ok((
        Delta {
            services,
            timeouts: ed.timeouts,
        },
        effects,
    ))
}

/// Applies `ops` to a copy of `config` and returns the whole result (for the tests).
#[cfg(test)]
pub fn apply_ops(config: &Config, ops: &[Op]) -> Result<(Config, SideEffects), ApiError> {
    let index = Index::of(config);
    let (delta, effects) = plan_ops(config, &index, ops)?;
    let mut next = config.clone();
    commit(&mut next, &mut Index::of(config), delta);
    Ok((next, effects))
}

/// Writes `delta` into `config`, keeping `index` up to date.
pub fn commit(config: &mut Config, index: &mut Index, delta: Delta) {
    let mut removed = false;
    for (id, svc) in delta.services {
        match (index.position.get(&id).copied(), svc) {
            (Some(i), Some(svc)) => {
                index.reals = index.reals - config.services[i].reals.len() + svc.reals.len();
                config.services[i] = svc;
            }
            (None, Some(svc)) => {
                index.reals += svc.reals.len();
                index.position.insert(id, config.services.len());
                config.services.push(svc);
            }
            (Some(i), None) => {
                index.reals -= config.services[i].reals.len();
                index.position.remove(&id);
                removed = true;
            }
            (None, None) => {}
        }
    }
    if removed {
        config
            .services
            .retain(|s| index.position.contains_key(&s.id()));
        *index = Index::of(config);
    }
    config.timeouts = delta.timeouts;
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rvs_config::{Protocol, RealServer, Scheduler, Timeouts};

    use super::*;

    fn svc(port: u16) -> VirtualService {
        VirtualService::new(Protocol::Tcp, Ipv4Addr::new(198, 18, 0, 10), port)
    }

    fn real(last: u8, weight: u32) -> RealServer {
        RealServer {
            weight,
            ..RealServer::new(Ipv4Addr::new(198, 18, 2, last))
        }
    }

    fn run(config: &Config, ops: Vec<Op>) -> Result<Config, ApiError> {
        apply_ops(config, &ops).map(|(c, _)| c)
    }

    #[test]
    fn ipvsadm_sequence() {
        let id = svc(80).id();
        let c = run(
            &Config::default(),
            vec![
                Op::AddService { service: svc(80) },
                Op::AddReal {
                    service: id,
                    real: real(11, 1),
                },
                Op::AddReal {
                    service: id,
                    real: real(12, 2),
                },
                Op::EditReal {
                    service: id,
                    real: real(11, 5),
                },
                Op::EditService {
                    service: VirtualService {
                        scheduler: Scheduler::Rr,
                        ..svc(80)
                    },
                },
            ],
        )
        .expect("valid");
        let s = &c.services[0];
        assert_eq!(s.scheduler, Scheduler::Rr);
        assert_eq!(s.reals.len(), 2, "-E keeps the real servers");
        assert_eq!(
            (s.reals[0].weight, s.reals[1].weight),
            (5, 2),
            "-e keeps the order"
        );
        let c = run(
            &c,
            vec![Op::DeleteReal {
                service: id,
                address: Ipv4Addr::new(198, 18, 2, 11),
                port: None,
            }],
        )
        .expect("valid");
        assert_eq!(c.services[0].reals.len(), 1);
        let c = run(&c, vec![Op::Clear]).expect("valid");
        assert!(c.services.is_empty());
    }

    #[test]
    fn errors_name_the_op_and_change_nothing() {
        let base = run(
            &Config::default(),
            vec![Op::AddService { service: svc(80) }],
        )
        .expect("ok");
        let id = svc(80).id();
        let cases = vec![
            (
                vec![Op::AddService { service: svc(80) }],
                ErrorKind::ServiceExists,
                0,
            ),
            (
                vec![Op::DeleteService {
                    service: svc(81).id(),
                }],
                ErrorKind::NoService,
                0,
            ),
            (
                vec![
                    Op::AddReal {
                        service: id,
                        real: real(11, 1),
                    },
                    Op::AddReal {
                        service: id,
                        real: real(11, 3),
                    },
                ],
                ErrorKind::RealExists,
                1,
            ),
            (
                vec![Op::EditReal {
                    service: id,
                    real: real(11, 1),
                }],
                ErrorKind::NoReal,
                0,
            ),
            (
                vec![Op::Zero {
                    service: Some(svc(81).id()),
                }],
                ErrorKind::NoService,
                0,
            ),
        ];
        for (ops, kind, at) in cases {
            let err = apply_ops(&base, &ops).expect_err("must fail");
            assert_eq!((err.kind, err.op), (kind, Some(at)), "{err}");
        }
        // Validation of the result: weight out of range.
        let err = apply_ops(
            &base,
            &[
                Op::AddService { service: svc(90) },
                Op::AddReal {
                    service: id,
                    real: real(11, 2_147_483_648),
                },
                Op::AddReal {
                    service: svc(90).id(),
                    real: real(12, 1),
                },
            ],
        )
        .expect_err("bad weight");
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert_eq!(
            err.op,
            Some(1),
            "the op that made the service invalid is named"
        );
        assert!(err.message.contains("weights are 0..=2147483647"), "{err}");
        // Every IPVS scheduler runs in the data path: lblc (the last refused) is taken.
        apply_ops(
            &base,
            &[Op::EditService {
                service: VirtualService {
                    scheduler: Scheduler::Lblc,
                    ..svc(80)
                },
            }],
        )
        .expect("lblc is in the data path");
    }

    #[test]
    fn set_timeouts_keeps_zero_fields() {
        let (c, _) = apply_ops(
            &Config::default(),
            &[Op::SetTimeouts {
                timeouts: Timeouts {
                    tcp: 100,
                    tcp_fin: 0,
                    udp: 0,
                },
            }],
        )
        .expect("ok");
        assert_eq!(
            c.timeouts,
            Timeouts {
                tcp: 100,
                tcp_fin: 120,
                udp: 300
            }
        );
    }

    #[test]
    fn zero_is_a_side_effect() {
        let base = run(
            &Config::default(),
            vec![Op::AddService { service: svc(80) }],
        )
        .expect("ok");
        let (c, fx) = apply_ops(
            &base,
            &[
                Op::Zero { service: None },
                Op::Zero {
                    service: Some(svc(80).id()),
                },
            ],
        )
        .expect("ok");
        assert_eq!(c, base);
        assert_eq!(fx.zero, vec![None, Some(svc(80).id())]);
    }
}
