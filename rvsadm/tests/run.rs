//! rvsadm's whole run (parse, ops, listing) against the IPVS model: the -S/-R round trip at
//! the formatter level, and the JSON listings.

mod common;

use std::io::Cursor;

use common::model::Model;
use rvs_api::{ConnectionList, ServiceList, ServiceStatus};
use rvs_config::Timeouts;
use rvsadm::Outcome;

fn run(model: &mut Model, line: &str, stdin: &str) -> Outcome {
    let argv: Vec<String> = std::iter::once("rvsadm".to_string())
        .chain(common::fixture::shell_words(line))
        .collect();
    let (argv, opts) = rvsadm::split_rvs_options(argv).expect("options");
    rvsadm::run(
        &argv,
        opts.json,
        model,
        &common::fixture_resolver(),
        &mut Cursor::new(stdin.as_bytes().to_vec()),
    )
}

fn ok(model: &mut Model, line: &str) -> String {
    let o = run(model, line, "");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{line}: {o:?}");
    o.stdout
}

/// A table with every kind of entry rvsadm can save, real servers added out of order.
fn populated() -> Model {
    let mut m = Model::default();
    for line in [
        "-A -t 198.18.0.10:80 -s rr",
        "-a -t 198.18.0.10:80 -r 198.18.2.13 -w 3",
        "-a -t 198.18.0.10:80 -r 198.18.2.11",
        "-a -t 198.18.0.10:80 -r 10.0.0.1 -w 0",
        "-a -t 198.18.0.10:80 -r 198.18.2.12 -i -w 2 -x 10 -y 5",
        "-A -u 198.18.0.10:53 -s wrr -o",
        "-a -u 198.18.0.10:53 -r 198.18.2.12:5353 -m -w 4",
        "-a -u 198.18.0.10:53 -r 198.18.2.11:53 -m",
        "-A -t 198.18.0.11:0 -s mh -b mh-port,mh-fallback -p 300 -M 255.255.255.0",
        "-a -t 198.18.0.11:0 -r 198.18.2.14",
        "-A -t 198.18.0.9:443 -s sh -b sh-port -p",
        "-A -t vip2.test:webcache -s rr",
        "-a -t vip2.test:webcache -r rs1.test:http-alt -m",
        "-a -t vip2.test:webcache -r a-very-long-real-server-name.example.test:ssh -m",
    ] {
        ok(&mut m, line);
    }
    m
}

fn state(m: &mut Model) -> ServiceList {
    let o = run(m, "-L --json --nosort", "");
    serde_json::from_str(&o.stdout).expect("JSON")
}

#[test]
fn save_clear_restore_round_trips() {
    for save in ["-Sn", "-S"] {
        let mut m = populated();
        let before = state(&mut m);
        let saved = ok(&mut m, save);
        ok(&mut m, "-C");
        assert_eq!(ok(&mut m, "-Sn"), "");
        let o = run(&mut m, "-R", &saved);
        assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{o:?}");
        assert_eq!(ok(&mut m, save), saved, "{save} after -R");
        let after = state(&mut m);
        // Same services and servers, same settings (services come back in -S's order,
        // which is the order listings show anyway)...
        assert_eq!(before.services.len(), after.services.len());
        let by_id = |l: &ServiceList| {
            let mut v = l.services.clone();
            v.sort_by_key(|s| s.service.id());
            v
        };
        for (b, a) in by_id(&before).iter().zip(&by_id(&after)) {
            let key = |s: &ServiceStatus| {
                let mut v: Vec<_> = s.reals.iter().map(|r| r.real.clone()).collect();
                v.sort_by_key(|r| (r.address, r.port));
                (
                    s.service.id(),
                    s.service.scheduler,
                    s.service.sched_flags.clone(),
                    s.service.persistence,
                    s.service.one_packet,
                    v,
                )
            };
            assert_eq!(key(b), key(a));
        }
        // ...and the real servers in the order ipvsadm's -S/-R leaves them in the kernel
        // (checked in the VM, fixture restore.cmds): -S sorts them, -R adds them in that
        // order, the kernel lists them newest first. So --nosort now shows them sorted
        // in reverse, and a second round trip changes nothing.
        for s in &after.services {
            let sorted: Vec<_> = rvsadm::format::ordered_reals(s, false)
                .into_iter()
                .rev()
                .map(|r| r.real.clone())
                .collect();
            let listed: Vec<_> = s.reals.iter().map(|r| r.real.clone()).collect();
            assert_eq!(listed, sorted, "{}", s.service.id());
        }
        let again = ok(&mut m, save);
        ok(&mut m, "-C");
        run(&mut m, "-R", &again);
        assert_eq!(state(&mut m), after, "a second round trip is a fixed point");
    }
}

#[test]
fn restore_is_all_or_nothing() {
    let mut m = populated();
    let before = state(&mut m);
    let o = run(
        &mut m,
        "-R",
        "-A -t 198.18.0.50:80 -s rr\n-a -t 198.18.0.50:80 -r 198.18.2.11\n-a -t 198.18.0.50:80 -r 198.18.2.11\n",
    );
    assert_eq!(o.code, 255);
    assert_eq!(
        o.stderr,
        "Destination already exists\nrvsadm: restore input line 3: `-a -t 198.18.0.50:80 -r 198.18.2.11'; nothing was applied\n"
    );
    assert_eq!(state(&mut m), before);
    let o = run(&mut m, "-R", "-C\n\n-A -t 198.18.0.50:80 -s rr -w 1\n");
    assert_eq!(o.code, 2);
    assert_eq!(
        o.stderr,
        "Illegal 'weight' option with the 'add-service' command\nrvsadm: restore input line 3: `-A -t 198.18.0.50:80 -s rr -w 1'; nothing was applied\n"
    );
    assert_eq!(state(&mut m), before);
    // Every change kind in one batch.
    let o = run(
        &mut m,
        "-R",
        "-C\n-A -t 198.18.0.60:80 -s rr\n-a -t 198.18.0.60:80 -r 198.18.2.11\n-e -t 198.18.0.60:80 -r 198.18.2.11 -w 7\n-A -t 198.18.0.61:80 -s rr\n-D -t 198.18.0.61:80\n-E -t 198.18.0.60:80 -s wrr\n--set 100 0 0\n-Z\n",
    );
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{o:?}");
    assert_eq!(
        ok(&mut m, "-Sn"),
        "-A -t 198.18.0.60:80 -s wrr\n-a -t 198.18.0.60:80 -r 198.18.2.11:80 -g -w 7\n"
    );
    assert_eq!(
        ok(&mut m, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 100 120 300\n"
    );
}

#[test]
fn json_listings() {
    let mut m = populated();
    // All services, sorted as the text listing (unless --nosort), real servers too.
    let list: ServiceList = serde_json::from_str(&ok(&mut m, "-L --json")).expect("JSON");
    let order: Vec<String> = list
        .services
        .iter()
        .map(|s| s.service.id().to_string())
        .collect();
    assert_eq!(
        order,
        [
            "TCP 198.18.0.9:443",
            "TCP 198.18.0.10:80",
            "TCP 198.18.0.11:0",
            "TCP 198.18.0.11:8080",
            "UDP 198.18.0.10:53"
        ]
    );
    let reals: Vec<String> = list.services[1]
        .reals
        .iter()
        .map(|r| r.real.address.to_string())
        .collect();
    assert_eq!(
        reals,
        ["198.18.2.11", "198.18.2.12", "198.18.2.13", "10.0.0.1"]
    );
    let nosort: ServiceList =
        serde_json::from_str(&ok(&mut m, "--json -Ln --nosort")).expect("JSON");
    let reals: Vec<String> = nosort.services[0]
        .reals
        .iter()
        .map(|r| r.real.address.to_string())
        .collect();
    assert_eq!(
        reals,
        ["198.18.2.12", "10.0.0.1", "198.18.2.11", "198.18.2.13"],
        "newest first"
    );
    // One service.
    let one: ServiceStatus =
        serde_json::from_str(&ok(&mut m, "-L -u 198.18.0.10:53 --json")).expect("JSON");
    assert_eq!(one.service.id().to_string(), "UDP 198.18.0.10:53");
    assert!(one.service.one_packet);
    // Connections, timeouts, daemons.
    let c: ConnectionList = serde_json::from_str(&ok(&mut m, "-Lc --json")).expect("JSON");
    assert!(c.connections.is_empty());
    let t: Timeouts = serde_json::from_str(&ok(&mut m, "-L --timeout --json")).expect("JSON");
    assert_eq!(t, Timeouts::default());
    assert_eq!(ok(&mut m, "-L --daemon --json"), "[]\n");
    // No arguments but --json: everything, as JSON.
    let all: ServiceList = serde_json::from_str(&ok(&mut m, "--json")).expect("JSON");
    assert_eq!(all, list);
    // A missing service is ipvsadm's error, in JSON mode too.
    let o = run(&mut m, "-L -t 198.18.0.99:80 --json", "");
    assert_eq!((o.code, o.stderr.as_str()), (1, "No such service\n"));
}
