//! rvsadm against a real rvsd (root): the golden fixtures replayed through the rvsadm
//! binary byte for byte, and the direct-routing lab driven only through rvsadm with real
//! traffic checked after each change (add/edit/delete of services and real servers, weight
//! changes, -C, -R of a saved file) and bad input refused with the state unchanged.

mod common;

use std::{
    collections::BTreeMap,
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use rvs_api::ServiceList;
use rvs_dataplane::PassProgram;
use rvs_lab::{DrLab, HttpResponder, HttpSession, Netns, Rvsd, run_many};
use rvsadm::Outcome;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// The rvsd binary of this build (built here when `cargo test -p rvsadm` did not).
fn rvsd_binary() -> &'static Path {
    static RVSD: OnceLock<PathBuf> = OnceLock::new();
    RVSD.get_or_init(|| {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_rvsadm"));
        let dir = exe.parent().expect("binary directory").to_path_buf();
        let target = dir.parent().expect("target directory");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "-p", "rvsd", "--target-dir"])
            .arg(target)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo build -p rvsd");
        assert!(status.success(), "cargo build -p rvsd failed");
        dir.join("rvsd")
    })
}

/// Runs the rvsadm binary (as `ipvsadm`, so messages name it as ipvsadm's do) against
/// `socket` with `args` and `stdin`.
fn rvsadm(socket: &Path, args: &[String], stdin: &[u8]) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .arg0("ipvsadm")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning rvsadm");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("writing stdin");
    drop(input);
    let out = child.wait_with_output().expect("rvsadm runs");
    Outcome {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().expect("exit code"),
    }
}

fn adm(socket: &Path, line: &str) -> Outcome {
    rvsadm(socket, &common::fixture::shell_words(line), b"")
}

/// Runs `line` and requires success.
fn ok(socket: &Path, line: &str) -> String {
    let o = adm(socket, line);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (0, ""),
        "rvsadm {line} failed: {o:?}"
    );
    o.stdout
}

/// Runs `line` and requires a refusal with exit code `code` and stderr containing `needle`.
fn refused(socket: &Path, line: &str, code: i32, needle: &str) {
    let o = adm(socket, line);
    assert_eq!(o.code, code, "rvsadm {line}: {o:?}");
    assert!(o.stderr.contains(needle), "rvsadm {line}: {o:?}");
    assert!(o.stdout.is_empty(), "rvsadm {line}: {o:?}");
}

#[test]
fn golden_fixtures_against_rvsd() {
    if !rvs_lab::root_or_skip("rvsadm golden fixtures against rvsd") {
        return;
    }
    let ns = Netns::new(&format!("{}-adm", rvs_lab::unique_prefix())).expect("netns");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", ns.name()));
    // The fixtures come from a kernel with a 4096-entry connection table (size=4096).
    let config = format!(
        "[daemon]\npin_path = \"{}\"\n[limits]\nconnections = 4096\n",
        pin.display()
    );
    let rvsd = Rvsd::start(&ns, rvsd_binary(), &config, &pin).expect("rvsd starts");
    let socket = rvsd.socket().to_path_buf();
    let mut problems = Vec::new();
    for name in ["basic", "sort", "rvs"] {
        ok(&socket, "-C");
        ok(&socket, "--set 900 120 300");
        problems.extend(common::replay(
            name,
            |_, argv, stdin| rvsadm(&socket, &argv[1..], stdin),
            |_, _| {},
        ));
    }
    assert!(
        problems.is_empty(),
        "{} mismatch(es) with ipvsadm through rvsd:\n\n{}",
        problems.len(),
        problems.join("\n")
    );
    // sched and validate make services of every scheduler and flag; they also hold inputs
    // rvs refuses on purpose (README, differences from IPVS: a port-0 service's real server
    // with a port, a service as its own real server, multicast VIPs), which change the
    // listings after them. What concerns lblc and lblcr must be ipvsadm's byte for byte: each
    // command naming them, and each listing line naming them.
    let mut locality = Vec::new();
    for name in ["sched", "validate"] {
        ok(&socket, "-C");
        ok(&socket, "--set 900 120 300");
        for p in common::replay(
            name,
            |_, argv, stdin| rvsadm(&socket, &argv[1..], stdin),
            |_, _| {},
        ) {
            let (want, got) = p.split_once("--- got").unwrap_or((&p, ""));
            let command = want.lines().next().unwrap_or("");
            let lost: Vec<&str> = want
                .lines()
                .skip(1)
                // (Names such as vip1.test come from the fixtures' hosts file, which rvsadm
                // run against rvsd does not read: numeric listings only.)
                .filter(|l| l.contains("lblc") && !l.contains(".test"))
                .filter(|l| !got.lines().any(|g| g == *l))
                .collect();
            if command.contains("lblc") || !lost.is_empty() {
                locality.push(format!("{p}\n(lines not shown by rvs: {lost:?})"));
            }
        }
    }
    assert!(
        locality.is_empty(),
        "lblc/lblcr differ from ipvsadm through rvsd:\n\n{}",
        locality.join("\n")
    );
    drop(rvsd);
}

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

/// `n` connections, one request each; every one must succeed; answers per real server.
fn shares(lab: &DrLab, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (i, r) in run_many(lab.client(), vip(), n, 8).into_iter().enumerate() {
        match r {
            Ok(name) => *counts.entry(name).or_insert(0) += 1,
            Err(e) => panic!("connection {i} of {n} failed: {e:#}"),
        }
    }
    counts
}

struct Setup {
    // Field order is drop order: daemon and programs before the lab's namespaces.
    rvsd: Rvsd,
    _pass: PassProgram,
    _responders: Vec<HttpResponder>,
    lab: DrLab,
}

fn setup() -> Setup {
    let lab = DrLab::new(3, &[VIP]).expect("lab");
    let responders = lab
        .real_servers()
        .iter()
        .map(|rs| {
            HttpResponder::spawn(rs.ns(), SocketAddr::from(([0, 0, 0, 0], 80)), rs.name())
                .expect("responder")
        })
        .collect();
    let port = lab.switch_lb_port();
    let pass = lab
        .switch()
        .run(|| PassProgram::attach(port))
        .expect("in switch namespace")
        .expect("XDP pass program on the switch port");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    // No services: everything comes through rvsadm.
    let config = format!(
        "[daemon]\ninterfaces = [\"{}\"]\npin_path = \"{}\"\n",
        lab.lb_uplink(),
        pin.display()
    );
    let rvsd = Rvsd::start(lab.lb(), rvsd_binary(), &config, &pin).expect("rvsd starts");
    Setup {
        rvsd,
        _pass: pass,
        _responders: responders,
        lab,
    }
}

/// The `-Ln --stats --exact` connection count of the service line.
fn service_conns(socket: &Path) -> u64 {
    let out = ok(socket, "-Ln --stats --exact");
    let line = out
        .lines()
        .find(|l| l.starts_with("TCP  198.18.0.10:80 "))
        .unwrap_or_else(|| panic!("no service line in\n{out}"));
    line.split_whitespace()
        .nth(2)
        .expect("Conns")
        .parse()
        .expect("a number")
}

#[test]
fn dr_lab_driven_by_rvsadm() {
    if !rvs_lab::root_or_skip("rvsadm DR lab test") {
        return;
    }
    let s = setup();
    let sock = s.rvsd.socket().to_path_buf();
    let sock = sock.as_path();
    let rs: Vec<(String, Ipv4Addr)> = s
        .lab
        .real_servers()
        .iter()
        .map(|r| (r.name().to_string(), r.addr()))
        .collect();

    // Add the service and its real servers: rr shares the connections evenly.
    let empty = ok(sock, "-Ln");
    assert!(
        empty.starts_with("IP Virtual Server version 1.2.1 (size=")
            && empty.ends_with(")\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"),
        "{empty}"
    );
    ok(sock, "-A -t 198.18.0.10:80 -s rr");
    for (_, addr) in &rs {
        ok(sock, &format!("-a -t 198.18.0.10:80 -r {addr}:80 -g -w 1"));
    }
    let counts = shares(&s.lab, 300);
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (name, n) in &counts {
        assert!(
            (98..=102).contains(n),
            "rr share of {name}: {n} ({counts:?})"
        );
    }
    assert_eq!(
        service_conns(sock),
        300,
        "the service counted every connection"
    );
    let saved_rr = ok(sock, "-Sn");
    assert_eq!(
        saved_rr,
        format!(
            "-A -t 198.18.0.10:80 -s rr\n{}",
            rs.iter()
                .map(|(_, a)| format!("-a -t 198.18.0.10:80 -r {a}:80 -g -w 1\n"))
                .collect::<String>()
        )
    );

    // The socket can come from RVS_SOCKET too.
    let via_env = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .arg("-Sn")
        .env("RVS_SOCKET", sock)
        .output()
        .expect("rvsadm runs");
    assert_eq!(String::from_utf8_lossy(&via_env.stdout), saved_rr);

    // Weights through -E and -e: wrr 1:2:3 over 600 connections, within ±2 %.
    ok(sock, "-E -t 198.18.0.10:80 -s wrr");
    for (i, (_, addr)) in rs.iter().enumerate() {
        ok(
            sock,
            &format!("-e -t 198.18.0.10:80 -r {addr} -w {}", i + 1),
        );
    }
    let counts = shares(&s.lab, 600);
    for (i, (name, _)) in rs.iter().enumerate() {
        let got = counts.get(name).copied().unwrap_or(0);
        let want = 600 * (i + 1) / 6;
        assert!(
            got.abs_diff(want) <= 12,
            "wrr share of {name}: {got}, want {want} ({counts:?})"
        );
    }

    // Quiesce the server of an open keep-alive connection: it keeps that connection,
    // new ones avoid it; -Lnc shows the open connection.
    let mut session = HttpSession::connect(s.lab.client(), vip()).expect("session");
    let pinned = session.get().expect("first request");
    let (_, pinned_addr) = rs
        .iter()
        .find(|(n, _)| *n == pinned)
        .expect("known server")
        .clone();
    ok(sock, &format!("-e -t 198.18.0.10:80 -r {pinned_addr} -w 0"));
    let counts = shares(&s.lab, 100);
    assert!(
        !counts.contains_key(&pinned),
        "quiesced {pinned} got new connections: {counts:?}"
    );
    for _ in 0..3 {
        assert_eq!(
            session.get().expect("request on the open connection"),
            pinned
        );
    }
    let conns = ok(sock, "-Lnc");
    assert!(
        conns.starts_with("IPVS connection entries\npro expire state       source             virtual            destination\n"),
        "{conns}"
    );
    let client = session.local_addr().expect("client address");
    assert!(
        conns.lines().any(|l| l.starts_with("TCP ")
            && l.contains(&format!(" {client} "))
            && l.contains(" 198.18.0.10:80 ")
            && l.ends_with(&format!(" {pinned_addr}:80"))),
        "no entry for {client} → {pinned_addr}:80 in\n{conns}"
    );
    drop(session);

    // Delete a real server: the others take everything.
    ok(sock, &format!("-d -t 198.18.0.10:80 -r {pinned_addr}"));
    ok(sock, "-E -t 198.18.0.10:80 -s rr");
    let counts = shares(&s.lab, 60);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(!counts.contains_key(&pinned), "{counts:?}");

    // JSON listing of the same state.
    let list: ServiceList =
        serde_json::from_str(&ok(sock, "-Ln --json")).expect("JSON ServiceList");
    assert_eq!(list.services.len(), 1);
    assert_eq!(list.services[0].reals.len(), 2);

    // Save, clear (traffic stops), restore (traffic as before).
    let saved = ok(sock, "-Sn");
    ok(sock, "-C");
    assert_eq!(ok(sock, "-Sn"), "");
    let failed = run_many(s.lab.client(), vip(), 2, 2);
    assert!(
        failed.iter().all(|r| r.is_err()),
        "connections after -C: {failed:?}"
    );
    let o = rvsadm(sock, &["-R".to_string()], saved.as_bytes());
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{o:?}");
    assert_eq!(ok(sock, "-Sn"), saved, "-S, -C, -R round-trips");
    let counts = shares(&s.lab, 60);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![30, 30],
        "{counts:?}"
    );

    // Bad input: a clear refusal, and nothing changes (state and traffic).
    let before = ok(sock, "-Sn");
    let (_, a0) = &rs[0];
    for (line, code, needle) in [
        ("-A -t 198.18.0.10:80 -s rr", 255, "Service already exists"),
        (
            "-a -t 198.18.0.10:80 -r 224.0.0.5",
            255,
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        (
            "-a -t 198.18.0.10:80 -r 198.18.2.99 -w -1",
            2,
            "illegal weight specified",
        ),
        (
            "-a -t 198.18.0.99:80 -r 198.18.2.99",
            255,
            "Service not defined",
        ),
        (
            "-d -t 198.18.0.10:80 -r 198.18.2.99",
            255,
            "No such destination",
        ),
        (
            "-A -t 198.18.0.11:80 -s nosuch",
            255,
            "Scheduler or persistence engine not found",
        ),
        (
            "-A -t 198.18.0.11:65536 -s rr",
            2,
            "illegal virtual server address[:port] specified",
        ),
        (
            "-A -t 198.18.0.11:80 -s rr -p 0",
            2,
            "invalid timeout value `0' specified",
        ),
        // An fwmark service needs the rules that set its mark (rvs classifies in XDP).
        ("-A -f 1 -s rr", 255, "no match rules for mark 1"),
    ] {
        refused(sock, line, code, needle);
    }
    refused(
        sock,
        &format!("-a -t 198.18.0.10:80 -r {a0}"),
        255,
        "Destination already exists",
    );
    // A batch with a refused change in the middle: nothing of it is applied.
    let batch =
        "-A -t 198.18.0.12:80 -s rr\n-a -t 198.18.0.12:80 -r 198.18.2.11\n-D -t 198.18.0.99:80\n";
    let o = rvsadm(sock, &["-R".to_string()], batch.as_bytes());
    assert_eq!(o.code, 255, "{o:?}");
    assert_eq!(
        o.stderr,
        "No such service\nrvsadm: restore input line 3: `-D -t 198.18.0.99:80'; nothing was applied\n"
    );
    let bad = "-A -t 198.18.0.12:80 -s rr\n-a -t 198.18.0.12:80 -r 198.18.2.11 -w x\n";
    let o = rvsadm(sock, &["-R".to_string()], bad.as_bytes());
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr
            .starts_with("illegal weight specified\nrvsadm: restore input line 2:"),
        "{o:?}"
    );
    assert_eq!(ok(sock, "-Sn"), before, "refusals changed the state");
    let counts = shares(&s.lab, 60);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![30, 30],
        "{counts:?}"
    );

    // Counters: -Z zeroes them, traffic counts again.
    ok(sock, "-Z");
    assert_eq!(service_conns(sock), 0);
    shares(&s.lab, 20);
    assert_eq!(service_conns(sock), 20);
    assert!(
        !s.rvsd.output().contains("ERROR"),
        "rvsd logged errors:\n{}",
        s.rvsd.output()
    );
}

/// The sync daemon commands against a real rvsd, with ipvsadm 1.31's answers recorded in
/// the IPVS VM (rvs-sync/tests/fixtures/ipvsadm_daemon.txt): the same listing lines, the
/// same errors and exit codes.
#[test]
fn sync_daemon_commands_against_rvsd() {
    if !rvs_lab::root_or_skip("rvsadm sync daemon against rvsd") {
        return;
    }
    let ns = Netns::new(&format!("{}-sync", rvs_lab::unique_prefix())).expect("netns");
    // The recorded listings name the interface dummy0; this kernel has no dummy driver, so
    // it is one end of a veth pair.
    ns.exec(&[
        "ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1",
    ])
    .expect("veth");
    ns.exec(&["ip", "link", "set", "dummy1", "up"]).expect("up");
    ns.exec(&["ip", "addr", "add", "198.18.200.1/24", "dev", "dummy0"])
        .expect("address");
    ns.exec(&["ip", "link", "set", "dummy0", "up"]).expect("up");
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", ns.name()));
    let config = format!("[daemon]\npin_path = \"{}\"\n", pin.display());
    let rvsd = Rvsd::start(&ns, rvsd_binary(), &config, &pin).expect("rvsd starts");
    let s = rvsd.socket().to_path_buf();
    assert_eq!(ok(&s, "-L --daemon"), "");
    refused(&s, "--start-daemon master", 255, "No such device");
    refused(
        &s,
        "--start-daemon master --mcast-interface nosuch0",
        255,
        "No such device",
    );
    refused(&s, "--stop-daemon master", 255, "No daemon is running");
    ok(
        &s,
        "--start-daemon master --mcast-interface dummy0 --syncid 8",
    );
    refused(
        &s,
        "--start-daemon master --mcast-interface dummy0",
        255,
        "Daemon has already run",
    );
    ok(
        &s,
        "--start-daemon backup --mcast-interface dummy0 --syncid 9 --sync-maxlen 1400 --mcast-port 8850",
    );
    assert_eq!(
        ok(&s, "-L --daemon"),
        "master sync daemon (mcast=dummy0, syncid=8, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=dummy0, syncid=9, maxlen=1400, group=224.0.0.81, port=8850, ttl=1)\n"
    );
    ok(&s, "--stop-daemon backup");
    ok(
        &s,
        "--start-daemon backup --mcast-interface dummy0 --mcast-group 224.0.0.99 --mcast-ttl 5 --syncid 0",
    );
    assert_eq!(
        ok(&s, "-Ln --daemon"),
        "master sync daemon (mcast=dummy0, syncid=8, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=dummy0, syncid=0, maxlen=1472, group=224.0.0.99, port=8848, ttl=5)\n"
    );
    ok(&s, "--stop-daemon master");
    ok(&s, "--stop-daemon backup");
    assert_eq!(ok(&s, "-L --daemon"), "");
    drop(rvsd);
}
