//! Command-line parsing: what each accepted form of each option turns into (the op sent to
//! rvsd, or the listing asked for), and rvsadm's own options. The messages and exit codes
//! of rejected forms are pinned by the golden fixtures (tests/golden.rs), recorded from
//! ipvsadm itself; a few are repeated here next to the accepted forms they border.

mod common;

use std::net::Ipv4Addr;

use rvs_api::Op;
use rvs_config::{
    ForwardMethod, Persistence, Protocol, RealServer, SchedFlag, Scheduler, ServiceId, Timeouts,
    Tunnel, TunnelChecksum, TunnelType, VirtualService,
};
use rvsadm::{Failure, Format, Invocation, ListRequest, ListTarget, split_rvs_options};

fn parse(line: &str) -> Result<Invocation, Failure> {
    let argv: Vec<String> = std::iter::once("ipvsadm".to_string())
        .chain(common::fixture::shell_words(line))
        .collect();
    rvsadm::parse(&argv, &common::fixture_resolver(), false, false)
}

fn op(line: &str) -> Op {
    match parse(line) {
        Ok(Invocation::Apply(op)) => op,
        other => panic!("`{line}` gave {other:?}"),
    }
}

fn err(line: &str) -> (i32, String) {
    match parse(line) {
        Err(f) => (f.code, f.stderr),
        other => panic!("`{line}` should fail, gave {other:?}"),
    }
}

fn id(p: Protocol, a: [u8; 4], port: u16) -> ServiceId {
    ServiceId {
        protocol: p,
        address: Ipv4Addr::from(a),
        port,
    }
}

fn svc(p: Protocol, a: [u8; 4], port: u16, s: Scheduler) -> VirtualService {
    let mut v = VirtualService::new(p, Ipv4Addr::from(a), port);
    v.scheduler = s;
    v
}

const TCP80: [u8; 4] = [198, 18, 0, 10];

#[test]
fn add_and_edit_service() {
    let want = svc(Protocol::Tcp, TCP80, 80, Scheduler::Rr);
    for line in [
        "-A -t 198.18.0.10:80 -s rr",
        "--add-service --tcp-service 198.18.0.10:80 --scheduler rr",
        "-At198.18.0.10:80 -srr",
        "-A --tcp-service=198.18.0.10:80 --scheduler=rr",
        "-A -t vip1.test:http -s rr",
        "-A -t vip1:www -s rr",
        "-A -t 198.18.10:80 -s rr",
        "-A -t 0xc612000a:80 -s rr",
        "-A -t 198.18.0.10:+80 -s rr",
        "-A -s rr -t 198.18.0.10:80",
    ] {
        assert_eq!(
            op(line),
            Op::AddService {
                service: want.clone()
            },
            "{line}"
        );
    }
    // No -s: ipvsadm 1.31's default, wlc (rvsd says whether it can run it).
    assert_eq!(
        op("-A -t 198.18.0.10:80"),
        Op::AddService {
            service: svc(Protocol::Tcp, TCP80, 80, Scheduler::Wlc)
        }
    );
    assert_eq!(
        op("-A -t 198.18.0.10:80 -s \"\""),
        Op::AddService {
            service: svc(Protocol::Tcp, TCP80, 80, Scheduler::Wlc)
        }
    );
    // -E sends the whole service: what is not given is reset, as IPVS does.
    assert_eq!(
        op("-E -u 198.18.0.10:53"),
        Op::EditService {
            service: svc(Protocol::Udp, TCP80, 53, Scheduler::Wlc)
        }
    );
    for s in Scheduler::ALL {
        let line = format!("-A -t 198.18.0.10:80 -s {}", s.name());
        assert_eq!(
            op(&line),
            Op::AddService {
                service: svc(Protocol::Tcp, TCP80, 80, s)
            },
            "{line}"
        );
    }
}

#[test]
fn persistence_flags_and_one_packet() {
    let with = |timeout, mask: [u8; 4]| {
        let mut s = svc(Protocol::Tcp, TCP80, 80, Scheduler::Wlc);
        s.persistence = Some(Persistence {
            timeout,
            netmask: Ipv4Addr::from(mask),
        });
        Op::AddService { service: s }
    };
    assert_eq!(op("-A -t 198.18.0.10:80 -p"), with(360, [255; 4]));
    assert_eq!(op("-A -t 198.18.0.10:80 -p 600"), with(600, [255; 4]));
    assert_eq!(op("-A -t 198.18.0.10:80 -p600"), with(600, [255; 4]));
    assert_eq!(
        op("-A -t 198.18.0.10:80 --persistent=600"),
        with(600, [255; 4])
    );
    assert_eq!(
        op("-A -t 198.18.0.10:80 -p -M 255.255.255.0"),
        with(360, [255, 255, 255, 0])
    );
    assert_eq!(
        op("-A -t 198.18.0.10:80 --persistent 10 --netmask 255.255.0.0"),
        with(10, [255, 255, 0, 0])
    );
    // -M without -p: IPVS keeps a mask it never uses; rvs has nothing to keep.
    assert_eq!(
        op("-A -t 198.18.0.10:80 -M 255.255.255.0"),
        Op::AddService {
            service: svc(Protocol::Tcp, TCP80, 80, Scheduler::Wlc)
        }
    );
    // Port 0 needs persistence.
    let Op::AddService { service } = op("-A -t 198.18.0.10:0 -s rr -p") else {
        panic!()
    };
    assert_eq!(
        (service.port, service.persistence.map(|p| p.timeout)),
        (0, Some(360))
    );
    assert_eq!(
        err("-A -t 198.18.0.10:0 -s rr"),
        (2, "Zero port specified for non-persistent service\n".into())
    );

    let flags = |line: &str| match op(line) {
        Op::AddService { service } => service.sched_flags,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        flags("-A -t 198.18.0.10:80 -s mh -b mh-port"),
        vec![SchedFlag::Flag2]
    );
    assert_eq!(
        flags("-A -t 198.18.0.10:80 -s mh -b mh-port,mh-fallback"),
        vec![SchedFlag::Flag1, SchedFlag::Flag2]
    );
    assert_eq!(
        flags("-A -t 198.18.0.10:80 -s sh --sched-flags sh-fallback"),
        vec![SchedFlag::Flag1]
    );
    assert_eq!(
        flags("-A -t 198.18.0.10:80 -s rr -b flag-3,flag-1"),
        vec![SchedFlag::Flag1, SchedFlag::Flag3]
    );
    assert_eq!(
        err("-A -t 198.18.0.10:80 -s rr -b mh-port"),
        (2, "incompatible scheduler flag `mh-port'\n".into())
    );
    // ipvsadm 1.31 crashes on a flag list with no flag in it; rvsadm says what is wrong.
    assert_eq!(
        err("-A -t 198.18.0.10:80 -s rr -b ,"),
        (2, "invalid scheduler flag `'\n".into())
    );

    let Op::AddService { service } = op("-A -u 198.18.0.10:53 -s rr -o") else {
        panic!()
    };
    assert!(service.one_packet);
    assert_eq!(
        err("-A -t 198.18.0.10:80 -s rr --ops"),
        (
            2,
            "One-Packet Scheduling is only for UDP virtual services\n".into()
        )
    );
}

#[test]
fn real_servers() {
    let tcp80 = id(Protocol::Tcp, TCP80, 80);
    let real = |a: [u8; 4], port, weight, forward, u, l| RealServer {
        address: Ipv4Addr::from(a),
        port,
        weight,
        forward,
        tunnel: Default::default(),
        u_threshold: u,
        l_threshold: l,
    };
    let rs1 = [198, 18, 2, 11];
    for line in [
        "-a -t 198.18.0.10:80 -r 198.18.2.11",
        "-a -t 198.18.0.10:80 -r 198.18.2.11:80 -g -w 1",
        "-a -t 198.18.0.10:80 -r rs1.test",
        "--add-server --tcp-service 198.18.0.10:80 --real-server 198.18.2.11 --gatewaying --weight 1",
        // Direct routing keeps the service's port, whatever -r says (as ipvsadm).
        "-a -t 198.18.0.10:80 -r 198.18.2.11:8080",
    ] {
        assert_eq!(
            op(line),
            Op::AddReal {
                service: tcp80,
                real: real(rs1, None, 1, ForwardMethod::Dr, 0, 0)
            },
            "{line}"
        );
    }
    assert_eq!(
        op("-a -t 198.18.0.10:80 -r 198.18.2.11:8080 -m -w 3 -x 100 -y 50"),
        Op::AddReal {
            service: tcp80,
            real: real(rs1, Some(8080), 3, ForwardMethod::Nat, 100, 50)
        }
    );
    assert_eq!(
        op("-a -t 198.18.0.10:80 -r 198.18.2.11 -mw 0"),
        Op::AddReal {
            service: tcp80,
            real: real(rs1, None, 0, ForwardMethod::Nat, 0, 0)
        }
    );
    assert_eq!(
        op("-e -t 198.18.0.10:80 -r 198.18.2.11 -i -w 65535"),
        Op::EditReal {
            service: tcp80,
            real: real(rs1, None, 65535, ForwardMethod::Tun, 0, 0)
        }
    );
    // Tunnel options land in the real server's tunnel, as ipvsadm fills ipvs_dest_t.
    for (line, kind, port, checksum) in [
        (
            "-i --tun-type ipip",
            TunnelType::Ipip,
            None,
            TunnelChecksum::Nocsum,
        ),
        (
            "-i --tun-type gue --tun-port 6080",
            TunnelType::Gue,
            Some(6080),
            TunnelChecksum::Nocsum,
        ),
        (
            "-i --tun-type gue --tun-port 6081 --tun-remcsum",
            TunnelType::Gue,
            Some(6081),
            TunnelChecksum::Remcsum,
        ),
        (
            "-i --tun-type gre --tun-csum",
            TunnelType::Gre,
            None,
            TunnelChecksum::Csum,
        ),
        (
            "-i --tun-type gre --tun-nocsum",
            TunnelType::Gre,
            None,
            TunnelChecksum::Nocsum,
        ),
    ] {
        let mut want = real(rs1, None, 1, ForwardMethod::Tun, 0, 0);
        want.tunnel = Tunnel {
            kind,
            port,
            checksum,
        };
        assert_eq!(
            op(&format!("-a -t 198.18.0.10:80 -r 198.18.2.11 {line}")),
            Op::AddReal {
                service: tcp80,
                real: want
            },
            "{line}"
        );
    }
    // ipvsadm accepts weights up to INT_MAX; rvsd refuses above 65535 with its reason.
    assert_eq!(
        op("-a -t 198.18.0.10:80 -r 198.18.2.11 -w 2147483647"),
        Op::AddReal {
            service: tcp80,
            real: real(rs1, None, 2147483647, ForwardMethod::Dr, 0, 0)
        }
    );
    assert_eq!(
        op("-d -t 198.18.0.10:80 -r 198.18.2.11"),
        Op::DeleteReal {
            service: tcp80,
            address: Ipv4Addr::from(rs1),
            port: None
        }
    );
    // -d takes the port as given (a NAT server on another port).
    assert_eq!(
        op("-d -t 198.18.0.10:80 -r 198.18.2.11:8080"),
        Op::DeleteReal {
            service: tcp80,
            address: Ipv4Addr::from(rs1),
            port: Some(8080)
        }
    );
    // A port name is looked up for the service's protocol, so -r after -t.
    assert_eq!(
        op("-a -u 198.18.0.10:53 -r rs1:domain -m"),
        Op::AddReal {
            service: id(Protocol::Udp, TCP80, 53),
            real: real(rs1, None, 1, ForwardMethod::Nat, 0, 0)
        }
    );
    assert_eq!(
        err("-a -r rs1:http-alt -t 198.18.0.10:80 -m"),
        (2, "illegal real server address[:port] specified\n".into())
    );
    for (line, message) in [
        (
            "-a -t 198.18.0.10:80 -r 198.18.2.11 -w -1",
            "illegal weight specified",
        ),
        (
            "-a -t 198.18.0.10:80 -r 198.18.2.11 -w 2147483648",
            "illegal weight specified",
        ),
        (
            "-a -t 198.18.0.10:80 -r 198.18.2.11 -w 1x",
            "illegal weight specified",
        ),
        (
            "-a -t 198.18.0.10:80 -r 198.18.2.11 -x abc",
            "illegal u_threshold specified",
        ),
        (
            "-a -t 198.18.0.10:80 -r 198.18.2.11 -y -5",
            "illegal l_threshold specified",
        ),
        (
            "-a -t 198.18.0.10:80 -r 198.18.2.11:99999",
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t 198.18.0.10:80",
            "You need to supply the 'real-server' option for the 'add-server' command",
        ),
        (
            "-a -t 198.18.0.10:80 -r 198.18.2.11 -g -m",
            "multiple 'forwarding-method' options specified",
        ),
    ] {
        assert_eq!(err(line), (2, format!("{message}\n")), "{line}");
    }
    // IPVS's threshold rule, with ipvsadm's text for the kernel's ERANGE.
    assert_eq!(
        err("-a -t 198.18.0.10:80 -r 198.18.2.11 -y 5"),
        (255, "Numerical result out of range\n".into())
    );
}

#[test]
fn other_changes() {
    assert_eq!(op("-C"), Op::Clear);
    assert_eq!(op("--clear"), Op::Clear);
    assert_eq!(op("-Z"), Op::Zero { service: None });
    assert_eq!(
        op("-Z -u 198.18.0.10:53"),
        Op::Zero {
            service: Some(id(Protocol::Udp, TCP80, 53))
        }
    );
    assert_eq!(
        op("-D -t 198.18.0.10:80"),
        Op::DeleteService {
            service: id(Protocol::Tcp, TCP80, 80)
        }
    );
    assert_eq!(
        op("--set 900 0 60"),
        Op::SetTimeouts {
            timeouts: Timeouts {
                tcp: 900,
                tcp_fin: 0,
                udp: 60
            }
        }
    );
    assert_eq!(
        err("--set 1 2"),
        (2, "--set option requires 3 timeout values\n".into())
    );
}

#[test]
fn listings() {
    let list = |line: &str| match parse(line) {
        Ok(Invocation::List(req)) => req,
        other => panic!("`{line}` gave {other:?}"),
    };
    let numeric = Format {
        numeric: true,
        ..Format::default()
    };
    for line in [
        "-L -n",
        "-Ln",
        "-ln",
        "-nL",
        "--list --numeric",
        "-L --numeric --sort",
    ] {
        if line == "-nL" {
            // The first option must be the command (ipvsadm's rule).
            assert_eq!(
                err(line),
                (
                    255,
                    "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n".into()
                )
            );
            continue;
        }
        assert_eq!(
            list(line),
            ListRequest {
                target: ListTarget::All,
                format: numeric,
                json: false
            },
            "{line}"
        );
    }
    let r = list("-L --stats --exact --nosort");
    assert!(r.format.stats && r.format.exact && r.format.nosort && !r.format.numeric);
    assert!(list("-L --rate").format.rate);
    assert!(list("-L --thresholds").format.thresholds);
    assert!(list("-L --persistent-conn").format.persistent_conn);
    assert!(list("-L --tun-info").format.tun_info);
    assert_eq!(list("-Lc").target, ListTarget::Connections);
    assert_eq!(list("-L --connection -n").target, ListTarget::Connections);
    assert_eq!(list("-L --timeout").target, ListTarget::Timeouts);
    assert_eq!(list("-L --daemon").target, ListTarget::Daemons);
    assert_eq!(
        list("-L -t 198.18.0.10:80").target,
        ListTarget::Service(id(Protocol::Tcp, TCP80, 80))
    );
    assert_eq!(parse("-S"), Ok(Invocation::Save { numeric: false }));
    assert_eq!(parse("--save -n"), Ok(Invocation::Save { numeric: true }));
    assert_eq!(parse("-R"), Ok(Invocation::Restore));
    assert_eq!(parse("-h"), Ok(Invocation::Usage));
    assert_eq!(parse("--version"), Ok(Invocation::Version));
    assert_eq!(
        err("-L -c --stats"),
        (2, "options conflicts in the list command\n".into())
    );
}

#[test]
fn what_rvs_does_not_have_yet() {
    for (line, code, message) in [
        (
            "-A -t [fd00::1]:80 -s rr",
            255,
            "IPv6 services are not supported by rvs yet",
        ),
        (
            "-A --sctp-service 198.18.0.10:80 -s rr",
            255,
            "SCTP services (--sctp-service) are not supported by rvs yet",
        ),
        (
            "-a -t 198.18.0.10:80 -r [fd00::1]:80 -i",
            255,
            "IPv6 real servers are not supported by rvs yet",
        ),
        (
            "--start-daemon master --mcast-interface eth0 --mcast-group ff02::81",
            255,
            "an IPv6 sync multicast group is not supported by rvs yet",
        ),
        (
            "-A -t 198.18.0.10:80 -s rr --pe sip",
            255,
            "Scheduler or persistence engine not found",
        ),
        // Such services never exist in rvs: looking one up is ipvsadm's "missing" answer.
        ("-L -t [fd00::1]:80", 1, "No such service"),
        // ipvsadm's own checks still come first.
        ("-A -f 0", 2, "invalid fwmark value `0' specified"),
        (
            "--start-daemon foo",
            2,
            "illegal start-daemon parameter specified",
        ),
    ] {
        assert_eq!(err(line), (code, format!("{message}\n")), "{line}");
    }
}

#[test]
fn sync_daemon_commands() {
    use rvs_api::{SyncDaemonConfig, SyncRole};
    let start = |line: &str| match parse(line) {
        Ok(Invocation::StartDaemon(c)) => c,
        other => panic!("`{line}` gave {other:?}"),
    };
    assert_eq!(
        start("--start-daemon master --mcast-interface eth1 --syncid 7"),
        SyncDaemonConfig {
            role: SyncRole::Master,
            interface: "eth1".into(),
            syncid: 7,
            maxlen: None,
            group: None,
            port: None,
            ttl: None,
        }
    );
    assert_eq!(
        start(
            "--start-daemon backup --mcast-interface eth1 --sync-maxlen 1400 --mcast-group 224.0.0.99 --mcast-port 8850 --mcast-ttl 3"
        ),
        SyncDaemonConfig {
            role: SyncRole::Backup,
            interface: "eth1".into(),
            syncid: 0,
            maxlen: Some(1400),
            group: Some(Ipv4Addr::new(224, 0, 0, 99)),
            port: Some(8850),
            ttl: Some(3),
        }
    );
    // No --mcast-interface: rvsd answers "No such device", as the kernel does.
    assert_eq!(start("--start-daemon master").interface, "");
    assert!(matches!(
        parse("--stop-daemon backup"),
        Ok(Invocation::StopDaemon(SyncRole::Backup))
    ));
    assert!(matches!(
        parse("--stop-daemon master"),
        Ok(Invocation::StopDaemon(SyncRole::Master))
    ));
    for (line, message) in [
        (
            "--start-daemon master --mcast-interface eth1 --syncid 300",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --mcast-interface eth1 --mcast-group 198.18.200.1",
            "invalid IPv4 mcast-group `198.18.200.1'",
        ),
        (
            "--start-daemon master --mcast-interface eth1 --mcast-port 0",
            "illegal mcast-port specified",
        ),
        (
            "--start-daemon master --mcast-interface eth1 --mcast-ttl 256",
            "illegal mcast-ttl specified",
        ),
        (
            "--start-daemon master --mcast-interface eth1 --sync-maxlen 65508",
            "illegal sync-maxlen specified",
        ),
    ] {
        assert_eq!(err(line), (2, format!("{message}\n")), "{line}");
    }
}

#[test]
fn daemon_listing_is_ipvsadms() {
    use rvs_api::{SyncCounters, SyncDaemonStatus, SyncRole, SyncStatus};
    let d = |role, syncid, maxlen, port| SyncDaemonStatus {
        role,
        interface: "dummy0".into(),
        syncid,
        maxlen,
        group: Ipv4Addr::new(224, 0, 0, 81),
        port,
        ttl: 1,
        origin: "api".into(),
        counters: SyncCounters::default(),
    };
    let status = SyncStatus {
        daemons: vec![
            d(SyncRole::Master, 8, 1472, 8848),
            d(SyncRole::Backup, 9, 1400, 8850),
        ],
    };
    // Recorded from ipvsadm 1.31 (rvs-sync/tests/fixtures/ipvsadm_daemon.txt).
    assert_eq!(
        rvsadm::exec::list_daemons(&status),
        "master sync daemon (mcast=dummy0, syncid=8, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=dummy0, syncid=9, maxlen=1400, group=224.0.0.81, port=8850, ttl=1)\n"
    );
    assert_eq!(rvsadm::exec::list_daemons(&SyncStatus::default()), "");
}

#[test]
fn rvsadm_options() {
    let split = |args: &[&str]| {
        split_rvs_options(args.iter().map(|s| s.to_string()).collect())
            .map(|(rest, o)| (rest, o.socket, o.json))
    };
    assert_eq!(
        split(&["rvsadm", "--socket", "/tmp/s", "-Ln", "--json"]),
        Ok((
            vec!["rvsadm".into(), "-Ln".into()],
            Some("/tmp/s".into()),
            true
        ))
    );
    assert_eq!(
        split(&["rvsadm", "-L", "--socket=/x", "-n"]),
        Ok((
            vec!["rvsadm".into(), "-L".into(), "-n".into()],
            Some("/x".into()),
            false
        ))
    );
    assert_eq!(
        split(&["rvsadm", "-L", "--", "--json"]),
        Ok((
            vec!["rvsadm".into(), "-L".into(), "--".into(), "--json".into()],
            None,
            false
        ))
    );
    assert!(split(&["rvsadm", "-L", "--socket"]).is_err());
    // --json belongs to listings.
    let argv: Vec<String> = ["ipvsadm", "-A", "-t", "198.18.0.10:80", "-s", "rr"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        rvsadm::parse(&argv, &common::fixture_resolver(), false, true),
        Err(Failure {
            stderr: "Illegal 'json' option with the 'add-service' command\n".into(),
            code: 2
        })
    );
}
