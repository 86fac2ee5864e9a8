//! rvsd runs the VRRP instance of a keepalived.conf and balances the VIP only while it is
//! MASTER for it (root): as BACKUP it passes the VIP's new connections (its maps stay
//! warm); once MASTER (no peer answers), the same connections are balanced.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use rvs_dataplane::PassProgram;
use rvs_lab::{DrLab, Rvsd, run_many};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn keepalived_conf(lab: &DrLab) -> String {
    let mut c = format!(
        "vrrp_instance VI_1 {{\n    state BACKUP\n    interface {}\n    virtual_router_id 51\n    priority 100\n    advert_int 2\n    virtual_ipaddress {{\n        {VIP}/32 dev {}\n    }}\n}}\n\n\
         virtual_server {VIP} 80 {{\n    delay_loop 5\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n",
        lab.lb_uplink(),
        lab.lb_uplink()
    );
    for rs in lab.real_servers() {
        c += &format!(
            "    real_server {} 80 {{\n        weight 1\n    }}\n",
            rs.addr()
        );
    }
    c + "}\n"
}

#[test]
fn balances_only_as_vrrp_master() {
    if !rvs_lab::root_or_skip("VRRP tie-in lab test") {
        return;
    }
    let lab = DrLab::new(3, &[VIP]).expect("lab");
    let _responders = lab.serve_http(80).expect("responders");
    let port = lab.switch_lb_port();
    let _pass = lab
        .switch()
        .run(|| PassProgram::attach(port))
        .expect("switch namespace")
        .expect("pass program");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let mut rvsd = Rvsd::start_keepalived(
        lab.lb(),
        Path::new(env!("CARGO_BIN_EXE_rvsd")),
        &keepalived_conf(&lab),
        lab.lb_uplink(),
        &pin,
    )
    .expect("rvsd starts");
    let verdicts = || -> BTreeMap<&'static str, u64> {
        rvs_dataplane::pinned_verdicts(&pin)
            .expect("verdicts")
            .into_iter()
            .map(|(v, n)| (v.name(), n))
            .collect()
    };
    // BACKUP at first (state BACKUP, no advert heard yet, Master_Down_Interval = 3 × 2 s
    // + skew): a connection to the VIP within its 2 s timeout is passed, not balanced.
    let vip = SocketAddr::from((VIP, 80));
    let early = rvs_lab::http_get(lab.client(), vip);
    assert!(early.is_err(), "balanced while BACKUP: {early:?}");
    assert!(
        verdicts()["pass_standby"] > 0,
        "no pass_standby while BACKUP"
    );
    // Then it is MASTER and balances the VIP.
    rvsd.wait_for_output(
        "VRRP: MASTER for every managed VIP",
        Duration::from_secs(15),
    )
    .expect("became MASTER");
    let results = run_many(lab.client(), vip, 30, 4);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        *counts.entry(r.expect("connection as MASTER")).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "rr over three servers: {counts:?}");
    assert!(verdicts()["fwd_new"] >= 30);
    // The state is visible in the metrics (and in GET /v1/status).
    let metrics = rvs_lab::http_get_path(
        lab.lb(),
        SocketAddr::from(([127, 0, 0, 1], 9595)),
        "/metrics",
    )
    .expect("metrics");
    for line in [
        "rvs_vrrp_state{vrrp_instance=\"VI_1\"} 2",
        "rvs_vrrp_events_total{vrrp_instance=\"VI_1\",counter=\"became_master\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    assert!(
        metrics.contains("rvs_xdp_verdicts_total{name=\"pass_standby\"}"),
        "{metrics}"
    );
}
