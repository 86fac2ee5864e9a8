//! keepalived's schedulers and what rvs leaves out, each named in a located warning: no
//! `lb_algo` is keepalived's wlc (its log: "no scheduler set, setting default 'wlc'"), every
//! `lb_algo` is kept, an unknown one is refused, and real servers IPVS itself refuses are
//! left out.

use std::path::Path;

fn import(text: &str) -> rvs_keepalived::Import {
    rvs_keepalived::load_str(Path::new("k.conf"), text).expect("loads")
}

fn warnings(i: &rvs_keepalived::Import) -> String {
    i.warnings
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

const RS: &str = "    real_server 198.18.2.11 80 {\n        weight 1\n    }\n";

#[test]
fn no_lb_algo_is_wlc_and_left_out_by_name() {
    let i = import(&format!(
        "virtual_server 198.18.0.10 80 {{\n    lb_kind DR\n    protocol TCP\n{RS}}}\n"
    ));
    assert_eq!(i.config.services.len(), 1, "{}", warnings(&i));
    assert_eq!(i.config.services[0].scheduler, rvs_config::Scheduler::Wlc);
}

#[test]
fn mh_fallback_and_mh_port_are_kept() {
    let conf = |flags: &str| {
        format!(
            "virtual_server 198.18.0.10 80 {{\n    lb_algo mh\n{flags}    lb_kind DR\n    protocol TCP\n{RS}}}\n"
        )
    };
    for flags in [
        "    mh-port\n",
        "    mh-fallback\n",
        "    mh-fallback\n    mh-port\n",
    ] {
        let i = import(&conf(flags));
        assert_eq!(i.config.services.len(), 1, "{flags}: {}", warnings(&i));
        assert!(i.warnings.is_empty(), "{flags}: {}", warnings(&i));
    }
    let i = import(&conf("    mh-fallback\n    mh-port\n"));
    let svc = &i.config.services[0];
    assert!(
        svc.has_flag(rvs_config::SchedFlag::Flag1) && svc.has_flag(rvs_config::SchedFlag::Flag2)
    );
}

#[test]
fn every_lb_algo_is_kept() {
    // Every IPVS scheduler runs in the data path now (lblc and lblcr were the last left
    // out): each lb_algo gives a service with that scheduler and no warning.
    for c in &rvs_config::caps::SCHEDULERS {
        let algo = c.scheduler.name();
        let i = import(&format!(
            "virtual_server 198.18.0.10 80 {{\n    lb_algo {algo}\n    lb_kind DR\n    protocol TCP\n{RS}}}\n"
        ));
        assert_eq!(i.config.services.len(), 1, "{algo}: {}", warnings(&i));
        assert_eq!(i.config.services[0].scheduler, c.scheduler, "{algo}");
        assert!(i.warnings.is_empty(), "{algo}: {}", warnings(&i));
    }
}

#[test]
fn an_unknown_lb_algo_is_refused_by_name() {
    let e = rvs_keepalived::load_str(
        Path::new("k.conf"),
        &format!(
            "virtual_server 198.18.0.10 80 {{\n    lb_algo fastest\n    lb_kind DR\n    protocol TCP\n{RS}}}\n"
        ),
    )
    .map(|i| warnings(&i))
    .unwrap_or_else(|e| e.to_string());
    assert!(
        e.contains("lb_algo \"fastest\" is not an IPVS scheduler (rr, wrr, lc, wlc, lblc, lblcr"),
        "{e}"
    );
}

#[test]
fn servers_ipvs_refuses_or_rvs_cannot_reach_are_left_out() {
    let i = import(
        "virtual_server 198.18.0.10 80 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    real_server 224.0.0.5 80 {\n        weight 1\n    }\n    real_server 198.18.0.10 80 {\n        weight 1\n    }\n    real_server 198.18.2.12 80 {\n        weight 2147483647\n        uthreshold 100\n    }\n    real_server 198.18.2.13 80 {\n        weight 70000\n    }\n}\n",
    );
    let w = warnings(&i);
    assert!(
        w.contains("k.conf:5:5: warning: real_server 224.0.0.5 is not a unicast address"),
        "{w}"
    );
    assert!(
        w.contains("real_server 198.18.0.10 is the virtual server's own address"),
        "{w}"
    );
    // Thresholds are enforced by the data path now: that server is kept with them.
    assert!(!w.contains("connection thresholds"), "{w}");
    let reals = &i.config.services[0].reals;
    assert_eq!(reals.len(), 2);
    assert_eq!(
        (
            reals[0].address.octets()[3],
            reals[0].weight,
            reals[0].u_threshold
        ),
        (12, 2_147_483_647, 100)
    );
    assert_eq!((reals[1].address.octets()[3], reals[1].weight), (13, 70000));
}
