//! Prometheus metrics (OpenMetrics text), rendered from one [`View`] on each scrape.
//!
//! The IPVS ones carry node_exporter's IPVS collector's names, labels and meanings
//! (`node_ipvs_*` there, `rvs_ipvs_*` here), so dashboards built on it work after a prefix
//! change: totals over every service without labels; per backend `local_address`,
//! `local_port`, `remote_address`, `remote_port`, `proto` and `local_mark` (always empty:
//! rvs has no fwmark services). rvs adds per-backend and per-service counters, a health
//! gauge that stays while a server is down, VRRP state, connection-table fill, build info
//! and the last reload's outcome. Counters only ever grow; gauges say what is now.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::status::{Health, View};

/// node_exporter's backend labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Backend {
    local_address: String,
    local_port: u16,
    remote_address: String,
    remote_port: u16,
    proto: String,
    local_mark: String,
}

/// A service, labelled as node_exporter labels the local side of a backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Service {
    local_address: String,
    local_port: u16,
    proto: String,
    local_mark: String,
}

/// A label set with one name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Name {
    name: String,
}

/// Which way a transition went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct To {
    to: String,
}

/// Labels of a VRRP instance (not `instance`: Prometheus gives that label to the target,
/// and would rename ours to `exported_instance`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Instance {
    vrrp_instance: String,
}

/// Labels of a VRRP counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceCounter {
    vrrp_instance: String,
    counter: String,
}

/// Labels of a sync daemon.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncDaemon {
    role: String,
    interface: String,
    syncid: u8,
}

/// Labels of a sync daemon's counter.
/// Labels of an announced (or withdrawn) VIP.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Vip {
    vip: String,
}

/// Labels of a BGP session (BIRD's protocol name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Session {
    session: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncRole {
    role: String,
}

/// Build labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
}

fn counters<L>(r: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    r.register(name, help, family.clone());
    family
}

fn gauges<L>(r: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    r.register(name, help, family.clone());
    family
}

fn counter(r: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    r.register(name, help, c);
}

fn gauge(r: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    r.register(name, help, g);
}

/// Saturating conversion for gauges.
fn g(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Renders `v` in the OpenMetrics text format.
pub fn render(v: &View) -> String {
    let mut r = Registry::with_prefix("rvs");
    // node_exporter's totals (its /proc/net/ip_vs_stats): the sums over every service.
    let mut total = rvs_api::Stats::default();
    for st in &v.services.services {
        total.conns += st.stats.conns;
        total.inpkts += st.stats.inpkts;
        total.outpkts += st.stats.outpkts;
        total.inbytes += st.stats.inbytes;
        total.outbytes += st.stats.outbytes;
    }
    counter(
        &mut r,
        "ipvs_connections",
        "The total number of connections made",
        total.conns,
    );
    counter(
        &mut r,
        "ipvs_incoming_packets",
        "The total number of incoming packets",
        total.inpkts,
    );
    counter(
        &mut r,
        "ipvs_outgoing_packets",
        "The total number of outgoing packets",
        total.outpkts,
    );
    counter(
        &mut r,
        "ipvs_incoming_bytes",
        "The total amount of incoming data",
        total.inbytes,
    );
    counter(
        &mut r,
        "ipvs_outgoing_bytes",
        "The total amount of outgoing data",
        total.outbytes,
    );

    let active = gauges::<Backend>(
        &mut r,
        "ipvs_backend_connections_active",
        "The current active connections by local and remote address",
    );
    let inactive = gauges::<Backend>(
        &mut r,
        "ipvs_backend_connections_inactive",
        "The current inactive connections by local and remote address",
    );
    let weight = gauges::<Backend>(
        &mut r,
        "ipvs_backend_weight",
        "The current backend weight by local and remote address",
    );
    let up = gauges::<Backend>(
        &mut r,
        "ipvs_backend_up",
        "1 when the backend's health checks pass (or nothing checks it), 0 while it is down",
    );
    let b_conns = counters::<Backend>(
        &mut r,
        "ipvs_backend_connections",
        "Connections scheduled to the backend",
    );
    let b_inpkts = counters::<Backend>(
        &mut r,
        "ipvs_backend_incoming_packets",
        "Incoming packets forwarded to the backend",
    );
    let b_outpkts = counters::<Backend>(
        &mut r,
        "ipvs_backend_outgoing_packets",
        "Outgoing packets from the backend (NAT)",
    );
    let b_inbytes = counters::<Backend>(
        &mut r,
        "ipvs_backend_incoming_bytes",
        "Incoming bytes forwarded to the backend",
    );
    let b_outbytes = counters::<Backend>(
        &mut r,
        "ipvs_backend_outgoing_bytes",
        "Outgoing bytes from the backend (NAT)",
    );
    let s_conns = counters::<Service>(
        &mut r,
        "ipvs_service_connections",
        "Connections scheduled by the service",
    );
    let s_inpkts = counters::<Service>(
        &mut r,
        "ipvs_service_incoming_packets",
        "Incoming packets of the service",
    );
    let s_outpkts = counters::<Service>(
        &mut r,
        "ipvs_service_outgoing_packets",
        "Outgoing packets of the service (NAT)",
    );
    let s_inbytes = counters::<Service>(
        &mut r,
        "ipvs_service_incoming_bytes",
        "Incoming bytes of the service",
    );
    let s_outbytes = counters::<Service>(
        &mut r,
        "ipvs_service_outgoing_bytes",
        "Outgoing bytes of the service (NAT)",
    );
    let s_up = gauges::<Service>(
        &mut r,
        "ipvs_service_backends_up",
        "Backends of the service that are up now",
    );
    for (st, (_, backends)) in v.services.services.iter().zip(v.backends()) {
        let svc = &st.service;
        let sl = Service {
            local_address: svc.address.to_string(),
            local_port: svc.port,
            proto: svc.protocol.to_string(),
            local_mark: String::new(),
        };
        s_conns.get_or_create(&sl).inc_by(st.stats.conns);
        s_inpkts.get_or_create(&sl).inc_by(st.stats.inpkts);
        s_outpkts.get_or_create(&sl).inc_by(st.stats.outpkts);
        s_inbytes.get_or_create(&sl).inc_by(st.stats.inbytes);
        s_outbytes.get_or_create(&sl).inc_by(st.stats.outbytes);
        let n_up = backends.iter().filter(|b| b.health != Health::Down).count();
        s_up.get_or_create(&sl).set(g(n_up as u64));
        for b in &backends {
            let bl = Backend {
                local_address: sl.local_address.clone(),
                local_port: sl.local_port,
                remote_address: b.address.to_string(),
                remote_port: b.port,
                proto: sl.proto.clone(),
                local_mark: String::new(),
            };
            active.get_or_create(&bl).set(g(b.active_conns));
            inactive.get_or_create(&bl).set(g(b.inactive_conns));
            weight.get_or_create(&bl).set(i64::from(b.weight));
            up.get_or_create(&bl).set(b.health.gauge());
            b_conns.get_or_create(&bl).inc_by(b.stats.conns);
            b_inpkts.get_or_create(&bl).inc_by(b.stats.inpkts);
            b_outpkts.get_or_create(&bl).inc_by(b.stats.outpkts);
            b_inbytes.get_or_create(&bl).inc_by(b.stats.inbytes);
            b_outbytes.get_or_create(&bl).inc_by(b.stats.outbytes);
        }
    }

    let verdicts = counters::<Name>(&mut r, "xdp_verdicts", "Packets by XDP verdict");
    for (name, n) in &v.status.verdicts {
        verdicts
            .get_or_create(&Name { name: name.clone() })
            .inc_by(*n);
    }
    gauge(
        &mut r,
        "connection_table_entries",
        "Connection-table entries that belong to a real server (last scan)",
        g(v.conn_entries),
    );
    gauge(
        &mut r,
        "connection_table_size",
        "Connection-table capacity",
        i64::from(v.status.conn_table_size),
    );
    let build = gauges::<Build>(&mut r, "build_info", "rvsd's version (always 1)");
    build
        .get_or_create(&Build {
            version: v.status.version.clone(),
        })
        .set(1);
    gauge(
        &mut r,
        "config_last_reload_successful",
        "1 when the last load or reload of the configuration was applied, 0 when refused",
        i64::from(v.reload.ok),
    );
    gauge(
        &mut r,
        "config_last_reload_timestamp_seconds",
        "Unix time of the last load or reload attempt",
        g(v.reload.at),
    );
    counter(
        &mut r,
        "conn_count_corrections",
        "Real servers whose ActiveConn/InActConn the expiry pass set to the connection table's (reconciliation after LRU evictions), since start",
        v.conn_corrections,
    );
    counter(
        &mut r,
        "config_reloads",
        "Reloads attempted since start",
        v.reload.attempts,
    );

    if let Some(h) = &v.health {
        let c = h.counters;
        counter(&mut r, "health_checks", "Health checks completed", c.checks);
        counter(
            &mut r,
            "health_check_failures",
            "Health checks that failed",
            c.check_failures,
        );
        let moves = counters::<To>(
            &mut r,
            "health_transitions",
            "Real servers going up or down",
        );
        moves
            .get_or_create(&To { to: "up".into() })
            .inc_by(c.reals_up);
        moves
            .get_or_create(&To { to: "down".into() })
            .inc_by(c.reals_down);
        let quorum = counters::<To>(
            &mut r,
            "health_quorum_transitions",
            "Services gaining or losing quorum",
        );
        quorum
            .get_or_create(&To {
                to: "gained".into(),
            })
            .inc_by(c.quorum_gained);
        quorum
            .get_or_create(&To { to: "lost".into() })
            .inc_by(c.quorum_lost);
        counter(
            &mut r,
            "health_scripts",
            "Notify and quorum scripts started",
            c.scripts,
        );
    }
    if !v.vrrp.is_empty() {
        let state = gauges::<Instance>(
            &mut r,
            "vrrp_state",
            "VRRP state: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT",
        );
        let prio = gauges::<Instance>(&mut r, "vrrp_priority", "Effective VRRP priority");
        let events =
            counters::<InstanceCounter>(&mut r, "vrrp_events", "VRRP adverts and errors by kind");
        for i in &v.vrrp {
            let l = Instance {
                vrrp_instance: i.name.clone(),
            };
            let code = match i.state {
                rvs_vrrp::machine::State::Init => 0,
                rvs_vrrp::machine::State::Backup => 1,
                rvs_vrrp::machine::State::Master => 2,
                rvs_vrrp::machine::State::Fault => 3,
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
                events
                    .get_or_create(&InstanceCounter {
                        vrrp_instance: i.name.clone(),
                        counter: name.into(),
                    })
                    .inc_by(n);
            }
        }
    }
    if !v.sync.daemons.is_empty() {
        sync_metrics(&mut r, &v.sync);
    }
    if let Some(b) = &v.status.bgp {
        bgp_metrics(&mut r, b);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// BGP: one gauge per VIP with a service (1 announced, 0 withdrawn), one per session
/// (1 established), and whether a stop is draining.
fn bgp_metrics(r: &mut Registry, b: &rvs_api::BgpStatus) {
    let vips = gauges::<Vip>(
        r,
        "bgp_vip_announced",
        "Whether this director announces the VIP over BGP (1) or has withdrawn it (0)",
    );
    for v in &b.vips {
        vips.get_or_create(&Vip {
            vip: v.vip.to_string(),
        })
        .set(i64::from(v.announced));
    }
    let sessions = gauges::<Session>(
        r,
        "bgp_session_established",
        "Whether the BGP session is established (1) or not (0)",
    );
    for p in &b.peers {
        sessions
            .get_or_create(&Session {
                session: p.name.clone(),
            })
            .set(i64::from(p.established));
    }
    gauge(
        r,
        "bgp_draining",
        "1 while a planned stop drains (VIPs withdrawn, still balancing)",
        i64::from(b.phase == "draining"),
    );
}

/// The connection sync daemons: one gauge per running daemon (its role, interface and
/// sync id as labels) and each daemon's counters by role.
fn sync_metrics(r: &mut Registry, sync: &rvs_api::SyncStatus) {
    let daemon = gauges::<SyncDaemon>(
        r,
        "sync_daemon",
        "A running connection sync daemon (1), by role, interface and sync id",
    );
    let families = [
        ("sync_messages_sent", "Sync messages sent"),
        ("sync_records_sent", "Connection and template records sent"),
        ("sync_send_errors", "Sync messages that could not be sent"),
        ("sync_messages_received", "Sync messages received"),
        (
            "sync_records_received",
            "Connection and template records received",
        ),
        (
            "sync_installed",
            "Connections installed from received records",
        ),
        (
            "sync_templates_installed",
            "Persistence templates installed from received records",
        ),
        (
            "sync_unmatched",
            "Received records with no such local service or real server",
        ),
        ("sync_dropped", "Received datagrams or records dropped"),
        (
            "sync_table_requests",
            "Full-table requests sent (backup) or answered (master)",
        ),
    ]
    .map(|(name, help)| counters::<SyncRole>(r, name, help));
    for d in &sync.daemons {
        let role = d.role.to_string();
        daemon
            .get_or_create(&SyncDaemon {
                role: role.clone(),
                interface: d.interface.clone(),
                syncid: d.syncid,
            })
            .set(1);
        let c = &d.counters;
        let values = [
            c.messages_sent,
            c.records_sent,
            c.send_errors,
            c.messages_received,
            c.records_received,
            c.installed,
            c.templates_installed,
            c.unmatched,
            c.dropped,
            c.table_requests,
        ];
        for (family, n) in families.iter().zip(values) {
            family
                .get_or_create(&SyncRole { role: role.clone() })
                .inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::example_view;

    #[test]
    fn node_exporter_names_and_labels_and_a_down_backend_stays() {
        let mut view = example_view();
        view.conn_corrections = 2;
        assert!(
            render(&view).contains("\nrvs_conn_count_corrections_total 2\n"),
            "{}",
            render(&view)
        );
        view.services.services[0].stats.conns = 7;
        view.services.services[0].stats.inpkts = 70;
        view.status.verdicts = vec![("fwd_new".into(), 7)];
        let text = render(&view);
        let b = |addr: &str| {
            format!(
                "{{local_address=\"198.18.0.10\",local_port=\"80\",remote_address=\"{addr}\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"}}"
            )
        };
        for line in [
            "# TYPE rvs_ipvs_connections counter".to_owned(),
            "rvs_ipvs_connections_total 7".to_owned(),
            "rvs_ipvs_incoming_packets_total 70".to_owned(),
            "# TYPE rvs_ipvs_backend_connections_active gauge".to_owned(),
            format!("rvs_ipvs_backend_connections_active{} 2", b("198.18.2.11")),
            format!("rvs_ipvs_backend_connections_inactive{} 1", b("198.18.2.11")),
            format!("rvs_ipvs_backend_weight{} 1", b("198.18.2.11")),
            format!("rvs_ipvs_backend_up{} 1", b("198.18.2.11")),
            // Taken out by its health check: still there, down, at weight 0.
            format!("rvs_ipvs_backend_up{} 0", b("198.18.2.12")),
            format!("rvs_ipvs_backend_weight{} 0", b("198.18.2.12")),
            "rvs_ipvs_service_backends_up{local_address=\"198.18.0.10\",local_port=\"80\",proto=\"TCP\",local_mark=\"\"} 1".to_owned(),
            "rvs_xdp_verdicts_total{name=\"fwd_new\"} 7".to_owned(),
            "rvs_connection_table_entries 3".to_owned(),
            "rvs_connection_table_size 16".to_owned(),
            "rvs_build_info{version=\"0\"} 1".to_owned(),
            "rvs_config_last_reload_successful 1".to_owned(),
            "rvs_config_last_reload_timestamp_seconds 10000".to_owned(),
            "# TYPE rvs_health_transitions counter".to_owned(),
            "rvs_health_transitions_total{to=\"down\"} 0".to_owned(),
            // The example's sync backup.
            "rvs_sync_daemon{role=\"backup\",interface=\"eth1\",syncid=\"51\"} 1".to_owned(),
            "# TYPE rvs_sync_installed counter".to_owned(),
            "rvs_sync_installed_total{role=\"backup\"} 37".to_owned(),
            "rvs_sync_templates_installed_total{role=\"backup\"} 2".to_owned(),
            "rvs_sync_records_received_total{role=\"backup\"} 40".to_owned(),
            "rvs_sync_messages_received_total{role=\"backup\"} 4".to_owned(),
            "rvs_sync_dropped_total{role=\"backup\"} 0".to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}

#[cfg(test)]
mod dashboard {
    use std::collections::BTreeSet;

    use super::*;
    use crate::status::tests::example_view;

    /// The Grafana dashboard in the repo queries only metrics rvsd exports.
    #[test]
    fn every_metric_the_dashboard_queries_exists() {
        let mut view = example_view();
        view.status.verdicts = vec![("fwd_new".into(), 1)];
        view.vrrp.push(rvs_vrrp::machine::InstanceStatus {
            name: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 51,
            version: 2,
            state: rvs_vrrp::machine::State::Master,
            base_priority: 150,
            effective_priority: 150,
            master: None,
            addresses: vec![],
            sync_group: None,
            last_transition: std::time::Duration::ZERO,
            counters: rvs_vrrp::machine::Counters::default(),
        });
        let text = render(&view);
        let families: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| {
                let (name, kind) = l.split_once(' ')?;
                Some(if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                })
            })
            .collect();
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../../packaging/grafana/rvs-dashboard.json"))
                .expect("dashboard JSON");
        let mut queried = BTreeSet::new();
        for panel in json["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let mut rest = expr;
                while let Some(at) = rest.find("rvs_") {
                    let name: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    rest = &rest[at + name.len()..];
                    queried.insert(name);
                }
            }
        }
        assert!(queried.len() >= 10, "{queried:?}");
        let missing: Vec<_> = queried.difference(&families).collect();
        assert!(
            missing.is_empty(),
            "the dashboard queries {missing:?}, not in:\n{text}"
        );
    }
}
