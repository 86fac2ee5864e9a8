//! keepalived's tolerance: files that real keepalived 2.2.7 runs although it complains
//! (an out-of-range value, an unknown or misspelt keyword, lowercase `dr`, `{` glued or
//! followed by a comment, CRLF, no final newline, Latin-1 comments…). Each
//! `tests/tolerant/NAME.conf` has `NAME.keepalived`: keepalived's own verdict, recorded
//! with `keepalived --config-test -f NAME.conf` in a namespace with eth0/eth1 (first line
//! `exit N`, then its messages, each once). rvs must read each file as keepalived runs it:
//! what keepalived ignores is ignored with a located warning, and its default applies.

use std::path::{Path, PathBuf};

use rvs_config::{ForwardMethod, Protocol};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tolerant");

fn files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(DIR)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    out.sort();
    out
}

/// keepalived's recorded exit status for `file`.
fn recorded_exit(file: &Path) -> i32 {
    let text = std::fs::read_to_string(file.with_extension("keepalived"))
        .unwrap_or_else(|e| panic!("{}: no recorded verdict: {e}", file.display()));
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("exit "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}: first line is not `exit N`", file.display()))
}

fn load(name: &str) -> rvs_keepalived::Import {
    let path = Path::new(DIR).join(name);
    rvs_keepalived::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Whether some warning of `import` is located on `line` and says `what`.
fn warned(import: &rvs_keepalived::Import, line: u32, what: &str) -> bool {
    import
        .warnings
        .iter()
        .any(|w| w.loc.line == line && w.message.contains(what))
}

#[test]
fn every_file_keepalived_runs_loads_and_warns_where_keepalived_complains() {
    let mut failures = Vec::new();
    for file in files() {
        let exit = recorded_exit(&file);
        match rvs_keepalived::load(&file) {
            Ok(import) => {
                let problems = import
                    .warnings
                    .iter()
                    .filter(|w| w.kind == rvs_keepalived::WarningKind::Problem)
                    .count();
                // VRRP-only complaints are rvs-vrrp's (checked through rvsd's check-config).
                if exit != 0 && problems == 0 && import.keepalived.vrrp_instances.is_empty() {
                    failures.push(format!(
                        "{}: keepalived exits {exit}, rvs has no warning",
                        file.display()
                    ));
                }
                if exit == 0 && problems > 0 {
                    failures.push(format!(
                        "{}: keepalived exits 0, rvs warns: {:?}",
                        file.display(),
                        import.warnings
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: refused: {e}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn out_of_range_values_are_ignored_and_the_default_applies() {
    // persistence_timeout 0: keepalived says "invalid" and the service is not persistent.
    let i = load("persist0.conf");
    assert!(warned(&i, 6, "persistence_timeout"), "{:?}", i.warnings);
    assert_eq!(i.config.services[0].persistence, None);
    // quorum 0: keepalived sets 1.
    let i = load("quorum0.conf");
    assert!(warned(&i, 6, "quorum"), "{:?}", i.warnings);
    assert_eq!(i.health.services[0].quorum, 1);
    // priority 100,comment: keepalived uses its default, 100 (rvs-vrrp's default too).
    let i = load("prio.conf");
    assert!(warned(&i, 5, "priority"), "{:?}", i.warnings);
    assert_eq!(i.keepalived.vrrp_instances[0].priority, None);
    // advert_int 0, a VRID out of range and state FOO are ignored.
    let i = load("vrrp_bad.conf");
    let v = &i.keepalived.vrrp_instances[0];
    assert_eq!(
        (v.state, v.virtual_router_id, v.advert_int),
        (None, None, None)
    );
    // vrrp_garp_interval 0 is refused by keepalived (its range starts above 0).
    let i = load("globals.conf");
    assert!(warned(&i, 4, "vrrp_garp_interval"), "{:?}", i.warnings);
    assert_eq!(i.keepalived.global_defs.vrrp_garp_interval, None);
    // delay_loop 0 and connect_timeout 0: ignored, the defaults apply.
    let i = load("delay0.conf");
    assert!(warned(&i, 6, "delay_loop"), "{:?}", i.warnings);
    let i = load("ct0.conf");
    assert!(warned(&i, 10, "connect_timeout"), "{:?}", i.warnings);
    // A negative weight: ignored (weight 1, the default).
    let i = load("weight_neg.conf");
    assert_eq!(i.config.services[0].reals[0].weight, 1);
}

/// What keepalived 2.2.7 did with these files on the real kernel IPVS is recorded in
/// `tolerant/leftovers.vm.out` (`/work/shared/tools/ipvs-vm/run.sh leftovers.vm.sh`).
#[test]
fn unknown_scheduler_big_weights_and_gapped_masks_run_as_keepalived_runs_them() {
    // lb_algo foo: "Invalid lvs_scheduler 'foo' - ignoring", then keepalived's default wlc.
    let i = load("algo_unknown.conf");
    assert!(warned(&i, 3, "foo"), "{:?}", i.warnings);
    assert_eq!(i.config.services.len(), 1, "{:?}", i.warnings);
    assert_eq!(i.config.services[0].scheduler.to_string(), "wlc");
    // Weights are an int in keepalived 2.2.7 and IPVS: 70000 is kept; 2147483648 is out of
    // range, reported and ignored (weight 1, as ipvsadm -Ln showed there).
    let i = load("weight_big.conf");
    assert!(warned(&i, 10, "weight"), "{:?}", i.warnings);
    let weights: Vec<u32> = i.config.services[0]
        .reals
        .iter()
        .map(|r| r.weight)
        .collect();
    assert_eq!(weights, vec![70000, 1]);
    // A mask with a gap is IPVS's too: applied bit by bit (198.18.100.10 and
    // 198.19.100.10 share the template 198.0.100.0 there); keepalived says nothing.
    let i = load("gran_gap.conf");
    let p = i.config.services[0].persistence.expect("persistent");
    assert_eq!(p.netmask, std::net::Ipv4Addr::new(255, 0, 255, 0));
    assert!(
        i.warnings
            .iter()
            .all(|w| w.kind != rvs_keepalived::WarningKind::Problem),
        "{:?}",
        i.warnings
    );
}

#[test]
fn unknown_forwarding_methods_fall_back_to_nat_as_keepalived() {
    for (file, line) in [("fnat.conf", 4), ("lower.conf", 4)] {
        let i = load(file);
        assert!(
            warned(&i, line, "routing method"),
            "{file}: {:?}",
            i.warnings
        );
        assert_eq!(
            i.config.services[0].reals[0].forward,
            ForwardMethod::Nat,
            "{file}: keepalived's default method"
        );
    }
    // The newer keyword names work: lvs_sched wrr; `lvs_method dr` is unknown and
    // ignored, so the `lb_kind DR` before it stays.
    let i = load("lvsnames.conf");
    assert!(warned(&i, 7, "routing method"), "{:?}", i.warnings);
    assert_eq!(i.config.services[0].reals[0].forward, ForwardMethod::Dr);
    assert_eq!(i.config.services[0].scheduler.to_string(), "wrr");
}

#[test]
fn nb_get_retry_is_deprecated_in_http_checks_and_unknown_elsewhere() {
    let i = load("deprecated.conf");
    assert!(warned(&i, 14, "deprecated"), "{:?}", i.warnings);
    let retry = i.health.services[0].reals[0].checkers[0].timing.retry;
    assert_eq!(retry, 3, "applied as retry");
    for (file, line) in [
        ("nbget_tcp.conf", 12),
        ("nb_rs.conf", 9),
        ("nb_vs.conf", 6),
        ("nb_DNS_CHECK.conf", 12),
    ] {
        let i = load(file);
        assert!(warned(&i, line, "nb_get_retry"), "{file}: {:?}", i.warnings);
        let checkers = &i.health.services[0].reals[0].checkers;
        assert!(
            checkers.iter().all(|c| c.timing.retry != 7),
            "{file}: not applied"
        );
    }
}

#[test]
fn odd_syntax_reads_as_keepalived_reads_it() {
    let clean = load("clean.conf").config;
    for file in ["crlf.conf", "nofinal.conf", "latin1.conf"] {
        let i = load(file);
        assert_eq!(i.config, clean, "{file}");
        assert!(i.warnings.is_empty(), "{file}: {:?}", i.warnings);
    }
    // `80{`, `{ # comment` and an empty MISC_CHECK {}: keepalived skips the checker
    // (no misc_path) and keeps the real server, always up.
    let i = load("glued.conf");
    assert_eq!(i.config.services[0].port, 80);
    assert_eq!(i.config.services[0].reals.len(), 1);
    assert!(
        i.health
            .services
            .iter()
            .all(|s| s.reals.iter().all(|r| r.checkers.is_empty()))
    );
    assert!(warned(&i, 8, "misc_path"), "{:?}", i.warnings);
    // A typo is an unknown keyword: reported, and the default weight applies.
    let i = load("typo.conf");
    assert!(warned(&i, 9, "weigth"), "{:?}", i.warnings);
    assert_eq!(i.config.services[0].reals[0].weight, 1);
}

#[test]
fn blocks_keepalived_skips_are_left_out_with_a_warning() {
    let i = load("badip.conf");
    assert!(i.config.services.is_empty());
    assert!(warned(&i, 1, "left out"), "{:?}", i.warnings);
    let i = load("badrs.conf");
    assert!(i.config.services.is_empty(), "no real server left: ignored");
    let i = load("noreal.conf");
    assert!(i.config.services.is_empty());
    assert!(warned(&i, 1, "no real servers"), "{:?}", i.warnings);
    let i = load("proto_lower.conf");
    assert_eq!(i.config.services[0].protocol, Protocol::Tcp);
}

#[test]
fn recorded_verdicts_are_keepalived_s() {
    let bin = ["/usr/sbin/keepalived", "/usr/local/sbin/keepalived"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(bin) = bin else {
        rvs_lab::skip_or_fail(
            "recorded_verdicts_are_keepalived_s",
            "needs keepalived (apt-get install keepalived)",
        );
        return;
    };
    if !rvs_lab::root_or_skip("recorded_verdicts_are_keepalived_s") {
        return;
    }
    let ns = rvs_lab::Netns::new(&format!("{}-kt", rvs_lab::unique_prefix())).expect("netns");
    for cmd in [
        "ip link add eth0 type veth peer name eth1",
        "ip link set eth0 up",
        "ip link set eth1 up",
    ] {
        ns.exec(&cmd.split(' ').collect::<Vec<_>>()).expect(cmd);
    }
    let mut failures = Vec::new();
    for file in files() {
        let status = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                bin,
                "--config-test",
                "-l",
                "-n",
                "-f",
            ])
            .arg(&file)
            .current_dir(DIR)
            .output()
            .expect("running keepalived");
        let code = status.status.code().unwrap_or(-1);
        if code != recorded_exit(&file) {
            failures.push(format!(
                "{}: keepalived now exits {code}, recorded {}",
                file.display(),
                recorded_exit(&file)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
