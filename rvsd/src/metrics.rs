//! Prometheus metrics (text exposition format), rendered from the daemon's state on each
//! scrape: verdict counters, per-service and per-real-server counters and connection
//! counts, health-check counters, VRRP instance states and counters.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use rvs_api::ServiceList;

/// Labels of a service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    protocol: String,
    vip: String,
    port: u16,
}

/// Labels of a real server within its service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RealLabels {
    protocol: String,
    vip: String,
    port: u16,
    real: String,
    real_port: u16,
}

/// A label set with one name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct One {
    name: String,
}

/// Labels of a VRRP instance.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Instance {
    instance: String,
}

/// Labels of a VRRP counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceCounter {
    instance: String,
    counter: String,
}

/// Everything one scrape shows.
pub struct Snapshot<'a> {
    /// Verdict counters by name.
    pub verdicts: &'a [(String, u64)],
    /// Services with counters.
    pub services: &'a ServiceList,
    /// Health-check counters, when rvsd runs health checks.
    pub health: Option<rvs_health::Counters>,
    /// VRRP instances, when rvsd runs VRRP.
    pub vrrp: Vec<rvs_vrrp::machine::InstanceStatus>,
}

fn counter_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

/// Renders `s` in Prometheus's text format.
pub fn render(s: &Snapshot<'_>) -> String {
    let mut r = Registry::with_prefix("rvs");
    let verdicts = counter_family::<One>(&mut r, "xdp_verdicts", "Packets by XDP verdict");
    for (name, n) in s.verdicts {
        verdicts
            .get_or_create(&One { name: name.clone() })
            .inc_by(*n);
    }
    let svc_conns =
        counter_family::<ServiceLabels>(&mut r, "service_connections", "Connections scheduled");
    let svc_pkts = counter_family::<ServiceLabels>(&mut r, "service_packets_in", "Packets in");
    let svc_bytes = counter_family::<ServiceLabels>(&mut r, "service_bytes_in", "Bytes in");
    let real_conns = counter_family::<RealLabels>(
        &mut r,
        "real_connections",
        "Connections scheduled to the real server",
    );
    let real_pkts =
        counter_family::<RealLabels>(&mut r, "real_packets_in", "Packets in to the real server");
    let real_bytes =
        counter_family::<RealLabels>(&mut r, "real_bytes_in", "Bytes in to the real server");
    let real_active = gauge_family::<RealLabels>(
        &mut r,
        "real_active_connections",
        "Established connections (ActiveConn)",
    );
    let real_inactive = gauge_family::<RealLabels>(
        &mut r,
        "real_inactive_connections",
        "Other connections (InActConn)",
    );
    let real_weight = gauge_family::<RealLabels>(&mut r, "real_weight", "Weight in force");
    for st in &s.services.services {
        let svc = &st.service;
        let sl = ServiceLabels {
            protocol: svc.protocol.to_string(),
            vip: svc.address.to_string(),
            port: svc.port,
        };
        svc_conns.get_or_create(&sl).inc_by(st.stats.conns);
        svc_pkts.get_or_create(&sl).inc_by(st.stats.inpkts);
        svc_bytes.get_or_create(&sl).inc_by(st.stats.inbytes);
        for rs in &st.reals {
            let rl = RealLabels {
                protocol: sl.protocol.clone(),
                vip: sl.vip.clone(),
                port: sl.port,
                real: rs.real.address.to_string(),
                real_port: rs.real.port.unwrap_or(svc.port),
            };
            real_conns.get_or_create(&rl).inc_by(rs.stats.conns);
            real_pkts.get_or_create(&rl).inc_by(rs.stats.inpkts);
            real_bytes.get_or_create(&rl).inc_by(rs.stats.inbytes);
            real_active.get_or_create(&rl).set(rs.active_conns as i64);
            real_inactive
                .get_or_create(&rl)
                .set(rs.inactive_conns as i64);
            real_weight
                .get_or_create(&rl)
                .set(i64::from(rs.real.weight));
        }
    }
    if let Some(h) = s.health {
        let c = counter_family::<One>(&mut r, "health", "Health-check events by kind");
        for (name, n) in [
            ("checks", h.checks),
            ("check_failures", h.check_failures),
            ("reals_up", h.reals_up),
            ("reals_down", h.reals_down),
            ("quorum_gained", h.quorum_gained),
            ("quorum_lost", h.quorum_lost),
            ("scripts", h.scripts),
        ] {
            c.get_or_create(&One { name: name.into() }).inc_by(n);
        }
    }
    if !s.vrrp.is_empty() {
        let state = gauge_family::<Instance>(
            &mut r,
            "vrrp_state",
            "VRRP state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT",
        );
        let prio = gauge_family::<Instance>(&mut r, "vrrp_priority", "Effective VRRP priority");
        let counters = counter_family::<InstanceCounter>(
            &mut r,
            "vrrp_events",
            "VRRP adverts and errors by kind",
        );
        for i in &s.vrrp {
            let l = Instance {
                instance: i.name.clone(),
            };
            let code = match format!("{:?}", i.state).to_uppercase().as_str() {
                "BACKUP" => 1,
                "MASTER" => 2,
                "FAULT" => 3,
                _ => 0,
            };
            state.get_or_create(&l).set(code);
            prio.get_or_create(&l).set(i64::from(i.effective_priority));
            let c = &i.counters;
            for (name, n) in [
                ("adverts_received", c.adverts_received),
                ("adverts_sent", c.adverts_sent),
                ("became_master", c.became_master),
                ("released_master", c.released_master),
                ("ttl_errors", c.ttl_errors),
                ("version_errors", c.version_errors),
                ("checksum_errors", c.checksum_errors),
                ("length_errors", c.length_errors),
                ("vrid_errors", c.vrid_errors),
                ("auth_failures", c.auth_failures),
                ("interval_errors", c.interval_errors),
                ("address_list_errors", c.address_list_errors),
            ] {
                counters
                    .get_or_create(&InstanceCounter {
                        instance: i.name.clone(),
                        counter: name.into(),
                    })
                    .inc_by(n);
            }
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rvs_api::{Rates, RealStatus, ServiceStatus, Stats};
    use rvs_config::{Protocol, RealServer, VirtualService};

    use super::*;

    #[test]
    fn renders_services_reals_and_verdicts() {
        let services = ServiceList {
            conn_table_size: 4096,
            services: vec![ServiceStatus {
                service: VirtualService::new(Protocol::Tcp, Ipv4Addr::new(198, 18, 0, 10), 80),
                stats: Stats {
                    conns: 7,
                    inpkts: 70,
                    ..Stats::default()
                },
                rates: Rates::default(),
                reals: vec![RealStatus {
                    real: RealServer::new(Ipv4Addr::new(198, 18, 2, 11)),
                    active_conns: 3,
                    inactive_conns: 1,
                    persist_conns: 0,
                    stats: Stats {
                        conns: 7,
                        ..Stats::default()
                    },
                    rates: Rates::default(),
                }],
            }],
        };
        let text = render(&Snapshot {
            verdicts: &[("fwd_new".into(), 7)],
            services: &services,
            health: None,
            vrrp: Vec::new(),
        });
        for line in [
            "rvs_xdp_verdicts_total{name=\"fwd_new\"} 7",
            "rvs_service_connections_total{protocol=\"TCP\",vip=\"198.18.0.10\",port=\"80\"} 7",
            "rvs_real_active_connections{protocol=\"TCP\",vip=\"198.18.0.10\",port=\"80\",real=\"198.18.2.11\",real_port=\"80\"} 3",
            "rvs_real_weight{protocol=\"TCP\",vip=\"198.18.0.10\",port=\"80\",real=\"198.18.2.11\",real_port=\"80\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
