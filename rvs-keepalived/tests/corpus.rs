//! The corpus: keepalived.conf files written from keepalived.conf(5) covering every block and
//! option rvs reads, includes, comments, quotes and odd spacing.
//!
//! - `corpus/valid/*.conf` (and `includes/main.conf`): each must load, map to the golden
//!   rvs configuration `NAME.toml`, report exactly the warnings in `NAME.warnings`, and
//!   produce the health model asserted below; real keepalived 2.2.7 must accept each too
//!   (`keepalived --config-test`, run in a namespace that has the eth0/eth1 the VRRP file
//!   names; skipped without root or without keepalived).
//! - `corpus/invalid/*.conf`: each must fail with the located error its first line names
//!   (`# error: LINE:COLUMN: MESSAGE`).
//!
//! `RVS_BLESS=1 cargo test -p rvs-keepalived --test corpus` rewrites the golden files; read
//! the diff before committing it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rvs_config::{ForwardMethod, Protocol, Scheduler};
use rvs_health::model::{CheckKind, DnsType, HttpVersion};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The valid files, by short name.
fn valid_files() -> Vec<(String, PathBuf)> {
    let dir = corpus().join("valid");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.push(("includes".into(), dir.join("includes/main.conf")));
    out.sort();
    out
}

fn load(name: &str) -> rvs_keepalived::Import {
    let (_, path) = valid_files()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no corpus file {name}"));
    rvs_keepalived::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Warnings as `FILE:LINE:COL: message`, the file relative to the corpus directory.
fn warning_lines(import: &rvs_keepalived::Import) -> String {
    let base = corpus().join("valid");
    import
        .warnings
        .iter()
        .map(|w| {
            let file = w.loc.file.strip_prefix(&base).unwrap_or(&w.loc.file);
            format!(
                "{}:{}:{}: {}\n",
                file.display(),
                w.loc.line,
                w.loc.column,
                w.message
            )
        })
        .collect()
}

fn golden(path: &Path, actual: &str) {
    if std::env::var_os("RVS_BLESS").is_some() {
        std::fs::write(path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (RVS_BLESS=1 writes it)", path.display()));
    assert_eq!(actual, expected, "{} differs", path.display());
}

#[test]
fn valid_files_match_their_golden_config_and_warnings() {
    let dir = corpus().join("valid");
    for (name, path) in valid_files() {
        let import = rvs_keepalived::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        golden(&dir.join(format!("{name}.toml")), &import.config.to_toml());
        golden(
            &dir.join(format!("{name}.warnings")),
            &warning_lines(&import),
        );
        // The golden TOML is itself a valid rvs configuration.
        let back = rvs_config::Config::from_toml(&import.config.to_toml())
            .unwrap_or_else(|e| panic!("{name}: golden TOML does not validate: {e}"));
        assert_eq!(back, import.config, "{name}");
        // Every service with checks has a health entry, and every health entry a service.
        for h in &import.health.services {
            assert!(
                import.config.services.iter().any(|s| s.id() == h.service),
                "{name}: {}",
                h.service
            );
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn lvs_tcp_model() {
    let i = load("lvs_tcp");
    assert_eq!(
        (
            i.config.timeouts.tcp,
            i.config.timeouts.tcp_fin,
            i.config.timeouts.udp
        ),
        (600, 60, 120)
    );
    let svc = &i.config.services[0];
    assert_eq!(
        (svc.protocol, svc.port, svc.scheduler),
        (Protocol::Tcp, 80, Scheduler::Wrr)
    );
    let weights: Vec<u32> = svc.reals.iter().map(|r| r.weight).collect();
    assert_eq!(weights, [3, 1, 0]);
    assert!(svc.reals.iter().all(|r| r.forward == ForwardMethod::Dr));
    let h = &i.health.services[0];
    assert_eq!(
        (h.quorum, h.hysteresis, h.sorry_server.is_none()),
        (1, 0, true)
    );
    // real 1: every option on the checker itself.
    let r1 = &h.reals[0];
    assert_eq!(
        r1.notify_up.as_ref().unwrap().argv,
        ["/bin/true", "up", "198.18.2.11"]
    );
    let down = r1.notify_down.as_ref().unwrap();
    assert_eq!((down.argv.len(), down.user.as_deref()), (3, Some("root")));
    // script_user root is the default user of scripts that name none.
    assert_eq!(r1.notify_up.as_ref().unwrap().user.as_deref(), Some("root"));
    assert!(!r1.inhibit_on_failure);
    let c = &r1.checkers[0];
    assert_eq!(c.kind, CheckKind::Tcp);
    assert_eq!(c.target, "198.18.3.11:8080".parse().unwrap());
    assert_eq!(c.bind_addr, Some("198.18.0.1".parse().unwrap()));
    assert_eq!((c.bind_port, c.fwmark), (Some(40000), Some(7)));
    assert_eq!(c.timeout, secs(3.0));
    assert_eq!(
        (
            c.timing.retry,
            c.timing.delay_before_retry,
            c.timing.delay_loop,
            c.timing.warmup
        ),
        (4, secs(2.0), secs(5.0), secs(1.0))
    );
    assert!(c.origin.ends_with("lvs_tcp.conf:24"), "{}", c.origin);
    // real 2: inherits from the virtual server, delay_loop from the real server.
    let r2 = &h.reals[1];
    assert!(r2.inhibit_on_failure);
    let c = &r2.checkers[0];
    assert_eq!(c.target, "198.18.2.12:80".parse().unwrap());
    assert_eq!(c.timeout, secs(2.0));
    assert_eq!(
        (
            c.timing.retry,
            c.timing.delay_before_retry,
            c.timing.delay_loop,
            c.timing.warmup
        ),
        (2, secs(1.5), secs(4.0), secs(0.0))
    );
    assert!(!c.timing.alpha);
    // real 3: no checker, always up.
    assert!(h.reals[2].checkers.is_empty());
}

#[test]
fn lvs_http_model() {
    let i = load("lvs_http");
    let svc80 = &i.config.services[0];
    assert_eq!(
        (svc80.scheduler, svc80.reals[0].forward, svc80.reals[0].port),
        (Scheduler::Rr, ForwardMethod::Nat, Some(8080))
    );
    let svc443 = &i.config.services[1];
    assert_eq!(svc443.scheduler, Scheduler::Mh);
    assert_eq!(svc443.sched_flags, [rvs_config::SchedFlag::Flag2]);
    let h = &i.health.services[0];
    let CheckKind::Http(http) = &h.reals[0].checkers[0].kind else {
        panic!("http")
    };
    assert!(http.tls.is_none());
    assert_eq!(http.version, HttpVersion::Http11);
    assert_eq!(http.urls.len(), 3);
    assert_eq!(http.urls[0].status, [(200, 200)]);
    assert_eq!(http.urls[0].virtualhost.as_deref(), Some("vs.example"));
    assert_eq!(http.urls[1].status, [(200, 299), (301, 301), (400, 404)]);
    assert_eq!(http.urls[1].digest.unwrap()[..2], [0x9b, 0x3a]);
    assert_eq!(http.urls[1].virtualhost.as_deref(), Some("url.example"));
    // No status_code: keepalived accepts 200-299.
    assert_eq!(http.urls[2].status, [(200, 299)]);
    let c = &h.reals[0].checkers[0];
    assert_eq!(
        (
            c.timeout,
            c.timing.retry,
            c.timing.delay_before_retry,
            c.timing.delay_loop
        ),
        (secs(2.0), 1, secs(1.0), secs(3.0))
    );
    // Real 2: defaults (HTTP's delay_before_retry is 3 s, connect_timeout 5 s), rs vhost.
    let c = &h.reals[1].checkers[0];
    assert_eq!(
        (c.timeout, c.timing.retry, c.timing.delay_before_retry),
        (secs(5.0), 1, secs(3.0))
    );
    let CheckKind::Http(http) = &c.kind else {
        panic!("http")
    };
    assert_eq!(http.version, HttpVersion::Http10Close);
    assert_eq!(http.urls[0].virtualhost.as_deref(), Some("rs.example"));
    assert_eq!(i.config.services[0].reals[1].weight, 1);
    // SSL_GET: SNI from the checker's virtualhost, CA from the SSL block.
    let CheckKind::Http(https) = &i.health.services[1].reals[0].checkers[0].kind else {
        panic!("https")
    };
    let tls = https.tls.as_ref().expect("tls");
    assert_eq!(tls.sni.as_deref(), Some("tls.example"));
    assert_eq!(
        tls.verify_ca.as_deref(),
        Some(Path::new("/etc/ssl/certs/ca-certificates.crt"))
    );
    assert_eq!(https.urls[0].virtualhost.as_deref(), Some("tls.example"));
}

#[test]
fn lvs_checks_model() {
    let i = load("lvs_checks");
    let udp = &i.config.services[0];
    assert_eq!(
        (udp.protocol, udp.reals[0].forward),
        (Protocol::Udp, ForwardMethod::Tun)
    );
    let h = &i.health.services[0];
    let dns = &h.reals[0].checkers[0];
    let CheckKind::Dns(d) = &dns.kind else {
        panic!("dns")
    };
    assert_eq!((d.qtype, d.name.as_str()), (DnsType::A, "www.example."));
    // DNS_CHECK: delay_before_retry defaults to the delay_loop.
    assert_eq!(
        (dns.timing.retry, dns.timing.delay_before_retry, dns.timeout),
        (2, secs(2.0), secs(1.0))
    );
    assert_eq!(h.reals[0].checkers[1].kind, CheckKind::Ping);
    let misc = &h.reals[1].checkers[0];
    let CheckKind::Misc(m) = &misc.kind else {
        panic!("misc")
    };
    assert_eq!(m.script.argv, ["/bin/true", "198.18.2.32", "two words"]);
    assert!(m.dynamic);
    assert_eq!(m.script.user.as_deref(), Some("root"));
    // MISC_CHECK: misc_timeout is the check's time limit; retry defaults to 0.
    assert_eq!((misc.timeout, misc.timing.retry), (secs(5.0), 0));
    let CheckKind::Udp(u) = &h.reals[1].checkers[1].kind else {
        panic!("udp")
    };
    assert_eq!(u.payload.as_deref(), Some(&[0x0a, 0x0b, 0x0c][..]));
    assert!(u.require_reply);
    assert_eq!(u.reply_pattern, [(0x0a, 0xff), (0x0b, 0x0f)]);
    assert_eq!((u.min_reply_length, u.max_reply_length), (2, 512));
    let smtp = &i.health.services[1];
    let CheckKind::Smtp(s) = &smtp.reals[0].checkers[0].kind else {
        panic!("smtp")
    };
    assert_eq!(s.helo_name, "mail.example");
    let CheckKind::Misc(m) = &smtp.reals[0].checkers[1].kind else {
        panic!("misc")
    };
    assert!(!m.dynamic);
    // misc_timeout absent: the delay_loop.
    assert_eq!(smtp.reals[0].checkers[1].timeout, secs(5.0));
    let CheckKind::Smtp(s) = &smtp.reals[1].checkers[0].kind else {
        panic!("smtp")
    };
    assert_eq!(s.helo_name, "smtpchecker.keepalived.org");
    let c = &smtp.reals[1].checkers[1];
    let CheckKind::Udp(u) = &c.kind else {
        panic!("udp")
    };
    assert!(u.require_reply && u.reply_pattern.is_empty() && u.payload.is_none());
    assert_eq!((u.min_reply_length, u.max_reply_length), (0, 255));
    assert_eq!(c.target.port(), 2525);
}

#[test]
fn lvs_quorum_model() {
    let i = load("lvs_quorum");
    let svc = &i.config.services[0];
    let p = svc.persistence.expect("persistence");
    assert_eq!(
        (p.timeout, p.netmask),
        (600, "255.255.255.0".parse().unwrap())
    );
    let h = &i.health.services[0];
    assert_eq!((h.quorum, h.hysteresis, h.omega), (3, 1, true));
    assert_eq!(
        h.quorum_up.as_ref().unwrap().argv,
        ["/bin/true", "quorum", "up"]
    );
    assert_eq!(
        h.quorum_down.as_ref().unwrap().argv,
        ["/bin/true", "quorum", "down"]
    );
    let sorry = h.sorry_server.as_ref().expect("sorry");
    assert_eq!(
        (
            sorry.real.address,
            sorry.real.port,
            sorry.real.forward,
            sorry.real.weight,
            sorry.inhibit
        ),
        (
            "198.18.2.99".parse().unwrap(),
            Some(8080),
            ForwardMethod::Nat,
            1,
            true
        )
    );
    // alpha: vs sets it, real 1 turns it off, real 2's checker turns it on again.
    assert!(!h.reals[0].checkers[0].timing.alpha);
    assert!(h.reals[1].checkers[0].timing.alpha);
    // inhibit_on_failure: vs sets it, real 2 turns it off.
    assert!(h.reals[0].inhibit_on_failure && !h.reals[1].inhibit_on_failure);
    // The port-0 service: persistence without a value is 360 s; the sorry server keeps
    // the service's (every) port.
    let any = &i.config.services[1];
    assert_eq!((any.port, any.persistence.unwrap().timeout), (0, 360));
    let h = &i.health.services[1];
    assert_eq!(h.sorry_server.as_ref().unwrap().real.port, None);
    assert!(!h.omega);
}

#[test]
fn lvs_groups_model() {
    let i = load("lvs_groups");
    let vips: Vec<String> = i
        .config
        .services
        .iter()
        .map(|s| s.id().to_string())
        .collect();
    assert_eq!(
        vips,
        [
            "TCP 198.18.0.50:80",
            "TCP 198.18.0.51:80",
            "TCP 198.18.0.52:80",
            "TCP 198.18.0.56:80",
            "TCP 198.18.0.57:80",
            "TCP 198.18.0.53:80",
            "TCP 198.18.0.54:80"
        ]
    );
    assert_eq!(i.health.services.len(), 7);
    // The wlc and sh services (198.18.0.53, .54) have no checker.
    for h in &i.health.services[..5] {
        assert_eq!(
            h.reals[0].checkers[0].target,
            "198.18.2.51:80".parse().unwrap()
        );
    }
    // The fwmark services are reported and left out (wlc and sh are kept).
    assert_eq!(i.warnings.len(), 2, "{:?}", i.warnings);
}

#[test]
fn includes_model() {
    let i = load("includes");
    let dir = corpus().join("valid/includes");
    assert_eq!(
        i.files,
        [
            dir.join("main.conf"),
            dir.join("conf.d/10-global.conf"),
            dir.join("conf.d/20-vs.conf"),
            dir.join("conf.d/../extra/reals443.inc"),
            dir.join("extra/reals.inc")
        ]
    );
    assert_eq!(i.config.timeouts.udp, 60);
    let ids: Vec<String> = i
        .config
        .services
        .iter()
        .map(|s| s.id().to_string())
        .collect();
    assert_eq!(ids, ["TCP 198.18.0.61:443", "TCP 198.18.0.60:80"]);
    assert_eq!(i.config.services[1].reals[0].weight, 4);
    assert_eq!(i.config.services[0].reals[0].weight, 2);
    // A checker read from an included file names that file.
    assert!(
        i.health.services[1].reals[0].checkers[0]
            .origin
            .ends_with("extra/reals.inc:3")
    );
}

#[test]
fn odd_spacing_model() {
    let i = load("odd_spacing");
    let svc = &i.config.services[0];
    assert_eq!(
        (
            svc.scheduler,
            svc.reals.len(),
            svc.reals[0].weight,
            svc.reals[1].weight
        ),
        (Scheduler::Rr, 2, 7, 2)
    );
    let h = &i.health.services[0];
    assert_eq!(
        h.quorum_up.as_ref().unwrap().argv,
        ["/bin/true", "two", "spaces", "kept"]
    );
    assert_eq!(
        h.reals[0].notify_up.as_ref().unwrap().argv,
        ["/bin/true", "single", "quoted"]
    );
    let c = &h.reals[0].checkers;
    assert_eq!(
        (c.len(), c[0].timeout, c[0].timing.delay_loop),
        (2, secs(0.5), secs(1.5))
    );
    let CheckKind::Misc(m) = &c[1].kind else {
        panic!("misc")
    };
    assert_eq!(m.script.argv, ["/bin/echo", "#not-a-comment", "!nor-this"]);
}

#[test]
fn vrrp_model() {
    use rvs_keepalived::model::{AuthType, VrrpState};
    let i = load("vrrp");
    let k = &i.keepalived;
    assert!(i.config.services.is_empty());
    let s = &k.vrrp_scripts[0];
    assert_eq!(s.name, "chk_service");
    assert_eq!(s.script.as_ref().unwrap().argv, ["/bin/true", "--check"]);
    assert_eq!(
        (s.interval, s.timeout, s.weight, s.rise, s.fall, s.init_fail),
        (
            Some(secs(2.0)),
            Some(secs(1.0)),
            Some(0),
            Some(2),
            Some(3),
            true
        )
    );
    assert_eq!(s.user, Some(("root".into(), None)));
    assert_eq!(
        (k.vrrp_scripts[1].weight, k.vrrp_scripts[1].weight_reverse),
        (Some(10), true)
    );
    let g = &k.vrrp_sync_groups[0];
    assert_eq!(g.group, ["VI_1", "VI_2"]);
    assert_eq!(
        g.notify.master.as_ref().unwrap().argv,
        ["/bin/true", "master", "SG1"]
    );
    assert!(
        g.notify.backup.is_some()
            && g.notify.fault.is_some()
            && g.notify.stop.is_some()
            && g.notify.any.is_some()
    );
    assert_eq!(g.track_script[0].name, "chk_service");
    let v = &k.vrrp_instances[0];
    assert_eq!(
        (
            v.state,
            v.interface.as_deref(),
            v.virtual_router_id,
            v.priority,
            v.advert_int
        ),
        (
            Some(VrrpState::Master),
            Some("eth0"),
            Some(51),
            Some(150),
            Some(secs(1.0))
        )
    );
    let auth = v.authentication.as_ref().unwrap();
    assert_eq!(
        (auth.auth_type, auth.auth_pass.as_deref()),
        (Some(AuthType::Pass), Some("secret12"))
    );
    assert_eq!(v.virtual_ipaddress.len(), 3);
    let vip = &v.virtual_ipaddress[0];
    assert_eq!(
        (
            vip.address,
            vip.prefix_len,
            vip.dev.as_deref(),
            vip.label.as_deref(),
            vip.scope.as_deref()
        ),
        (
            "198.18.0.10".parse().unwrap(),
            Some(32),
            Some("eth0"),
            Some("eth0:1"),
            Some("global")
        )
    );
    let vip = &v.virtual_ipaddress[2];
    assert_eq!(
        (vip.brd, vip.no_track),
        (Some("198.18.0.255".parse().unwrap()), true)
    );
    assert_eq!(v.virtual_ipaddress_excluded.len(), 1);
    assert_eq!(v.track_interface[0].name, "eth1");
    assert_eq!(v.unicast_src_ip, Some("198.18.0.1".parse().unwrap()));
    assert_eq!(v.unicast_peer.len(), 2);
    assert_eq!(
        (v.unicast_peer[1].min_ttl, v.unicast_peer[1].max_ttl),
        (Some(1), Some(64))
    );
    assert_eq!(v.version, Some(2));
    assert_eq!(
        (
            v.garp_master_delay,
            v.garp_master_repeat,
            v.garp_master_refresh,
            v.garp_master_refresh_repeat,
            v.garp_lower_prio_delay,
            v.garp_lower_prio_repeat
        ),
        (Some(5), Some(3), Some(60), Some(2), Some(5), Some(1))
    );
    assert_eq!(
        v.notify.master.as_ref().unwrap().argv,
        ["/bin/true", "master", "VI_1"]
    );
    let v2 = &k.vrrp_instances[1];
    assert_eq!(
        v2.use_vmac.as_ref().unwrap().name.as_deref(),
        Some("vrrp52")
    );
    assert!(v2.nopreempt);
    assert_eq!((v2.advert_int, v2.version), (Some(secs(0.5)), Some(3)));
    let v3 = &k.vrrp_instances[2];
    assert_eq!(
        (v3.preempt_delay, v3.mcast_src_ip),
        (Some(secs(2.5)), Some("198.18.2.1".parse().unwrap()))
    );
    assert_eq!(
        (v3.track_script[0].name.as_str(), v3.track_script[0].weight),
        ("chk_other", Some(5))
    );
    // Every keyword location is exact.
    assert_eq!((v.loc.as_ref().unwrap().line, vip.loc.line), (39, 52));
}

#[test]
fn invalid_values_are_refused_or_ignored_with_located_messages() {
    let dir = corpus().join("invalid");
    let mut n = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("invalid dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be `# error: LINE:COL: MESSAGE`",
                    path.display()
                )
            });
        let expected = expected.replace("INVALID", &dir.display().to_string());
        let want = format!("{}:{expected}", path.display());
        // What keepalived refuses stops the load; what it ignores (a bad value, a block
        // it skips) is a located warning, and the rest loads.
        let err = match rvs_keepalived::load(&path) {
            Ok(i) => i
                .warnings
                .iter()
                .map(|w| format!("{}: {}", w.loc, w.message))
                .find(|w| w.starts_with(&want) && w.ends_with("as keepalived does"))
                .unwrap_or_else(|| format!("{}: loaded without error", path.display())),
            Err(e) => e.to_string(),
        };
        if !err.starts_with(&want) {
            wrong.push(format!(
                "{}\n  expected: {expected}\n  got:      {err}",
                path.display()
            ));
        }
        n += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(n >= 10, "only {n} invalid files");
}
