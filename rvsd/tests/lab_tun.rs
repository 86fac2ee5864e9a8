//! TUN end to end (root): real servers behind a router, prepared only by
//! `rvs-realserver prepare tun` (which picks rvs's decapsulation program on this kernel,
//! which has no ipip module), rvsd encapsulating with IPIP, GUE and GRE, changed through
//! rvsadm, real TCP traffic answered straight from the real servers; and rvsd run from a
//! keepalived.conf with `lb_kind TUN` and health checks, whose listing must be what
//! keepalived + IPVS listed for the same file and the same live servers.

mod lab_common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use lab_common::{
    assert_rr, pass_programs, realserver_bin, recorded_listing, rvsadm, rvsd_bin, shares,
    wait_listing, without_table_size,
};
use rvs_dataplane::PassProgram;
use rvs_lab::realserver::Prepared;
use rvs_lab::{HttpResponder, HttpSession, Rvsd, TunLab};

/// One VIP per tunnel type, all on port 80.
const VIPS: [(Ipv4Addr, &str); 3] = [
    (
        Ipv4Addr::new(198, 18, 0, 20),
        "tunnel = { type = \"ipip\" }",
    ),
    (
        Ipv4Addr::new(198, 18, 0, 21),
        "tunnel = { type = \"gue\", port = 6080 }",
    ),
    (
        Ipv4Addr::new(198, 18, 0, 22),
        "tunnel = { type = \"gre\", checksum = \"csum\" }",
    ),
];

fn config(lab: &TunLab, pin: &std::path::Path) -> String {
    let mut c = format!(
        "[daemon]\ninterfaces = [\"{}\"]\npin_path = \"{}\"\n",
        lab.lb_interface(),
        pin.display()
    );
    for (vip, tunnel) in VIPS {
        c += &format!(
            "\n[[service]]\nprotocol = \"tcp\"\naddress = \"{vip}\"\nport = 80\nscheduler = \"rr\"\n"
        );
        for rs in lab.real_servers() {
            c += &format!(
                "[[service.real]]\naddress = \"{}\"\nforward = \"tun\"\n{tunnel}\n",
                rs.addr()
            );
        }
    }
    c
}

struct Setup {
    // Drop order: daemon, programs, real-server undo, then the lab's namespaces.
    rvsd: Rvsd,
    _pass: Vec<PassProgram>,
    _http: Vec<HttpResponder>,
    prepared: Vec<Prepared>,
    lab: TunLab,
}

/// Prepares every real server of `lab` with the real-server command, as an operator would.
fn prepare_all(lab: &TunLab, vips: &[Ipv4Addr]) -> Vec<Prepared> {
    let mut args = vec!["tun".to_string()];
    for v in vips {
        args.push("--vip".into());
        args.push(v.to_string());
    }
    args.extend(["--type", "gue", "--port", "6080", "--interface", "eth0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.real_servers()
        .iter()
        .map(|rs| {
            Prepared::prepare(realserver_bin(), rs.ns(), &args)
                .unwrap_or_else(|e| panic!("{}: {e:#}", rs.name()))
        })
        .collect()
}

fn setup() -> Setup {
    let lab = TunLab::new(3).expect("lab");
    let vips: Vec<Ipv4Addr> = VIPS.iter().map(|(v, _)| *v).collect();
    let prepared = prepare_all(&lab, &vips);
    for p in &prepared {
        assert!(
            p.output()
                .contains("attach rvs's decapsulation program to eth0")
                || p.output().contains("bring tunl0 up"),
            "{}",
            p.output()
        );
    }
    // The responders listen on every address, so on the VIPs too once they are prepared.
    let http = lab.serve_http(80).expect("responders");
    let pass = pass_programs(&lab.pass_ports());
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let rvsd = Rvsd::start(lab.lb(), rvsd_bin(), &config(&lab, &pin), &pin).expect("rvsd starts");
    Setup {
        rvsd,
        _pass: pass,
        _http: http,
        prepared,
        lab,
    }
}

#[test]
fn tun_ipip_gue_gre_with_real_servers_prepared_by_the_command() {
    if !rvs_lab::root_or_skip("TUN lab test") {
        return;
    }
    let s = setup();
    let lab = &s.lab;
    let socket = s.rvsd.socket();
    let names: Vec<&str> = lab.real_servers().iter().map(|r| r.name()).collect();
    let info = rvsadm(socket, &["-Ln", "--tun-info"]);
    for want in ["Tunnel  ipip ", "Tunnel  gue:6080:-c ", "Tunnel  gre:+c "] {
        assert!(info.contains(want), "{want:?} in\n{info}");
    }

    // Preparing again changes nothing (idempotent), and says so.
    let (ok, again) = rvs_lab::realserver::run(
        realserver_bin(),
        lab.real_servers()[0].ns(),
        &[
            "prepare",
            "tun",
            "--vip",
            "198.18.0.20",
            "--vip",
            "198.18.0.21",
            "--vip",
            "198.18.0.22",
            "--type",
            "gue",
            "--port",
            "6080",
            "--interface",
            "eth0",
        ],
    )
    .expect("runs");
    assert!(
        ok && again.trim() == "already prepared: nothing to change",
        "{again}"
    );

    // 300 TCP connections per tunnel type, rr 100 ± 2 each, none fails.
    for (vip, tunnel) in VIPS {
        let counts = shares(lab.client(), SocketAddr::from((vip, 80)), 300);
        eprintln!("{tunnel}: {counts:?}");
        assert_rr(&counts, &names, 100);
    }

    // A keep-alive connection survives its server's weight going to 0; new ones avoid it.
    let vip = SocketAddr::from((VIPS[0].0, 80));
    let mut session = HttpSession::connect(lab.client(), vip).expect("session");
    let pinned = session.get().expect("first request");
    let rs = lab
        .real_servers()
        .iter()
        .find(|r| r.name() == pinned)
        .expect("a real server answered");
    rvsadm(
        socket,
        &[
            "-e",
            "-t",
            &vip.to_string(),
            "-r",
            &rs.addr().to_string(),
            "-i",
            "-w",
            "0",
        ],
    );
    let counts = shares(lab.client(), vip, 60);
    assert!(
        !counts.contains_key(&pinned),
        "new connections reached quiesced {pinned}: {counts:?}"
    );
    for _ in 0..5 {
        assert_eq!(
            session.get().expect("request on the kept connection"),
            pinned
        );
    }
    assert!(
        !s.rvsd.output().contains("ERROR"),
        "rvsd logged errors:\n{}",
        s.rvsd.output()
    );
    drop(s.prepared);
}

/// The keepalived.conf the IPVS VM ran for the TUN listing (see rvsd/tests/fixtures/ipvs-vm/nat_tun.sh).
const TUN_CONF: &str = "global_defs {
    router_id lab_tun
}
virtual_server 198.18.0.20 80 {
    delay_loop 1
    lb_algo rr
    lb_kind TUN
    protocol TCP
    real_server 198.18.4.11 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 198.18.4.12 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 198.18.4.13 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
";

#[test]
fn keepalived_lb_kind_tun_lists_as_keepalived_and_ipvs_do() {
    if !rvs_lab::root_or_skip("keepalived.conf TUN lab test") {
        return;
    }
    let lab = TunLab::new(3).expect("lab");
    // rs1 and rs2 are prepared and serve; rs3 is down (nothing listens), as in the VM run.
    let vip = Ipv4Addr::new(198, 18, 0, 20);
    let http: Vec<HttpResponder> = lab.real_servers()[..2]
        .iter()
        .map(|rs| {
            HttpResponder::spawn(rs.ns(), SocketAddr::from(([0, 0, 0, 0], 80)), rs.name())
                .expect("responder")
        })
        .collect();
    let _pass = pass_programs(&lab.pass_ports());
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", lab.prefix()));
    let rvsd = Rvsd::start_keepalived(lab.lb(), rvsd_bin(), TUN_CONF, lab.lb_interface(), &pin)
        .expect("rvsd starts from keepalived.conf");
    wait_listing(
        rvsd.socket(),
        &["-Ln"],
        &recorded_listing("tun", "-Ln"),
        Duration::from_secs(20),
    );
    assert_eq!(
        without_table_size(&rvsadm(rvsd.socket(), &["-Ln", "--tun-info"])),
        without_table_size(&recorded_listing("tun", "-Ln --tun-info"))
    );
    assert_eq!(
        rvsadm(rvsd.socket(), &["-S", "-n"]),
        recorded_listing("tun", "-S -n")
    );
    // Health checks reach the servers directly; traffic needs them prepared for the tunnel.
    let prepared: Vec<Prepared> = lab.real_servers()[..2]
        .iter()
        .map(|rs| {
            Prepared::prepare(
                realserver_bin(),
                rs.ns(),
                &["tun", "--vip", "198.18.0.20", "--interface", "eth0"],
            )
            .expect("prepared")
        })
        .collect();
    let counts = shares(lab.client(), SocketAddr::from((vip, 80)), 40);
    assert_rr(&counts, &["rs1", "rs2"], 20);
    drop(rvsd);
    drop(http);
    drop(prepared);
}
