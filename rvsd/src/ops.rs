//! Applies API ops to a desired state with ipvsadm's semantics (sans-I/O).
//!
//! A batch is applied to a copy; the first failing op stops it with an error naming the
//! op, and the caller keeps its old state. The result is validated as a whole.

use std::collections::HashMap;

use rvs_api::{ApiError, ErrorKind, Op};
use rvs_config::{Config, ServiceId, VirtualService};

/// What a batch asks for besides the new configuration.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SideEffects {
    /// Counters to zero: None inside = all services.
    pub zero: Vec<Option<ServiceId>>,
}

/// The configuration being edited, with its services indexed by id (a batch of 100 000
/// ops must not search the list for each).
struct Editing {
    config: Config,
    index: HashMap<ServiceId, usize>,
}

impl Editing {
    fn new(config: &Config) -> Self {
        let index = config
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id(), i))
            .collect();
        Self {
            config: config.clone(),
            index,
        }
    }

    fn find(&mut self, id: &ServiceId) -> Result<&mut VirtualService, ApiError> {
        let i = *self
            .index
            .get(id)
            .ok_or_else(|| ApiError::new(ErrorKind::NoService, format!("no such service {id}")))?;
        Ok(&mut self.config.services[i])
    }

    fn reindex(&mut self) {
        self.index = self
            .config
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id(), i))
            .collect();
    }
}

fn apply_one(ed: &mut Editing, op: &Op, effects: &mut SideEffects) -> Result<(), ApiError> {
    match op {
        Op::AddService { service } => {
            let id = service.id();
            if ed.index.contains_key(&id) {
                return Err(ApiError::new(
                    ErrorKind::ServiceExists,
                    format!("service {id} already exists"),
                ));
            }
            ed.index.insert(id, ed.config.services.len());
            ed.config.services.push(service.clone());
        }
        Op::EditService { service } => {
            let svc = ed.find(&service.id())?;
            let reals = std::mem::take(&mut svc.reals);
            *svc = VirtualService {
                reals,
                ..service.clone()
            };
        }
        Op::DeleteService { service } => {
            ed.find(service)?;
            ed.config.services.retain(|s| s.id() != *service);
            ed.reindex();
        }
        Op::AddReal { service, real } => {
            let svc = ed.find(service)?;
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
            let svc = ed.find(service)?;
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
            let svc = ed.find(service)?;
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
            ed.config.services.clear();
            ed.index.clear();
        }
        Op::Zero { service } => {
            if let Some(id) = service {
                ed.find(id)?;
            }
            effects.zero.push(*service);
        }
        Op::SetTimeouts { timeouts } => {
            let t = &mut ed.config.timeouts;
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

/// Applies `ops` in order to a copy of `config` and validates the result.
pub fn apply_ops(config: &Config, ops: &[Op]) -> Result<(Config, SideEffects), ApiError> {
    let mut ed = Editing::new(config);
    let mut effects = SideEffects::default();
    for (i, op) in ops.iter().enumerate() {
        apply_one(&mut ed, op, &mut effects).map_err(|mut e| {
            e.op = Some(i);
            e
        })?;
    }
    let next = ed.config;
    next.validate()
        .map_err(|e| ApiError::new(ErrorKind::Invalid, e.to_string()))?;
    Ok((next, effects))
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
            &[Op::AddReal {
                service: id,
                real: real(11, 70_000),
            }],
        )
        .expect_err("bad weight");
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(err.message.contains("weights are 0..=65535"), "{err}");
        let err = apply_ops(
            &base,
            &[Op::EditService {
                service: VirtualService {
                    scheduler: Scheduler::Lc,
                    ..svc(80)
                },
            }],
        )
        .expect_err("unsupported scheduler");
        assert!(
            err.message.contains("scheduler lc is not supported"),
            "{err}"
        );
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
