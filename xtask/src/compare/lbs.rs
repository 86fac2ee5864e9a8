//! The load balancers `bench-compare` puts side by side, each set up in the lab's LB
//! namespace with N services (distinct VIP:port) of which only one carries traffic, and
//! torn down on drop.
//!
//! Service layout, the same for every balancer: the traffic service is 198.18.0.10:80; the
//! idle ones are 198.18.0.10:10001…; services added for the update timing use ports 40000+;
//! every service round-robins over the lab's real servers.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rvs_dataplane::PassProgram;
use rvs_lab::{ChildGuard, DrLab, Netns, Rvsd};

/// The traffic service's VIP (every service shares it; ports tell them apart).
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The traffic service's port.
pub const PORT: u16 = 80;
/// First port of the idle services.
const IDLE_BASE: u16 = 10_000;
/// First port of the services added while timing updates.
const ADDED_BASE: u16 = 40_000;
/// Longest any one setup command (a whole ruleset restore) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);

/// Which balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No balancer: the client, from its second address, talks to the last real server's
    /// own address straight through the router, never crossing the LB namespace (the CPU
    /// baseline; no balancer's setup changes this path, so it runs beside each of them).
    Baseline,
    /// The LB namespace as a plain kernel router on the DR path (requests through it to a
    /// real server's own address, replies straight back): what forwarding alone costs.
    Router,
    /// rvsd's XDP program, direct routing.
    RvsDr,
    /// rvsd's XDP program, NAT (masquerading): requests and replies both cross the LB.
    RvsNat,
    /// iptables DNAT, `statistic --mode nth` round robin, a chain per service.
    Iptables,
    /// nftables DNAT: a verdict map VIP.port → per-service chain, `numgen inc mod N map`.
    Nftables,
    /// HAProxy, TCP mode, one `listen` per service.
    Haproxy,
    /// nginx's stream proxy, one `server` per service.
    Nginx,
}

impl Kind {
    /// The name in tables and charts.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Baseline => "baseline (no LB)",
            Kind::Router => "plain router (ref.)",
            Kind::RvsDr => "rvs DR (XDP)",
            Kind::RvsNat => "rvs NAT (XDP)",
            Kind::Iptables => "iptables DNAT",
            Kind::Nftables => "nftables DNAT map",
            Kind::Haproxy => "HAProxy (tcp)",
            Kind::Nginx => "nginx stream",
        }
    }
}

/// Where the binaries come from.
pub struct Tools {
    /// rvsd.
    pub rvsd: PathBuf,
    /// rvsadm.
    pub rvsadm: PathBuf,
}

/// One balancer running in the lab.
pub struct Running<'a> {
    kind: Kind,
    lab: &'a DrLab,
    target: SocketAddr,
    // Field order is drop order: processes before the state they use.
    rvsd: Option<Rvsd>,
    proxy: Option<ChildGuard>,
    /// rvs NAT transmits replies into the router's `rl`, whose veth peer must run an XDP
    /// program for them to arrive (the lab's veth fact).
    router_pass: Option<PassProgram>,
    rvsadm: PathBuf,
    files: Vec<PathBuf>,
    added: u16,
}

/// Port of idle service `i` (1-based).
fn idle_port(i: u32) -> Result<u16> {
    u16::try_from(i)
        .ok()
        .and_then(|i| IDLE_BASE.checked_add(i))
        .filter(|p| *p < ADDED_BASE)
        .with_context(|| format!("idle service {i} has no port below {ADDED_BASE}"))
}

/// The ports of `services` services: the idle ones first, the traffic service last (the
/// worst place in a rule list walked in order, and the place it would have if it were the
/// newest).
fn ports(services: u32) -> Result<Vec<u16>> {
    ensure!(services >= 1, "at least one service");
    let mut v: Vec<u16> = (1..services).map(idle_port).collect::<Result<_>>()?;
    v.push(PORT);
    Ok(v)
}

fn reals(lab: &DrLab) -> Vec<Ipv4Addr> {
    lab.real_servers().iter().map(|r| r.addr()).collect()
}

impl<'a> Running<'a> {
    /// Sets `kind` up with `services` services and waits until the traffic service answers.
    pub fn start(kind: Kind, lab: &'a DrLab, services: u32, tools: &Tools) -> Result<Self> {
        let mut me = Running {
            kind,
            lab,
            target: SocketAddr::from((VIP, PORT)),
            rvsd: None,
            proxy: None,
            router_pass: None,
            rvsadm: tools.rvsadm.clone(),
            files: Vec::new(),
            added: 0,
        };
        let lb = lab.lb();
        let ports = ports(services)?;
        let rs = reals(lab);
        match kind {
            Kind::Baseline => me.target = baseline_target(lab)?,
            Kind::Router => {
                // The router sends real server 1's own address to the LB, which forwards it
                // onto the segment; the reply goes straight back through the router.
                let first = *rs.first().context("the lab has no real server")?;
                lb.sysctl("net.ipv4.ip_forward", "1")?;
                lab.router().exec(&[
                    "ip",
                    "route",
                    "add",
                    &format!("{first}/32"),
                    "via",
                    &rvs_lab::dr::LB_UPLINK_ADDR.to_string(),
                ])?;
                me.target = SocketAddr::from((first, PORT));
            }
            Kind::RvsDr | Kind::RvsNat => {
                let pin = PathBuf::from(format!("/sys/fs/bpf/{}-cmp", lab.prefix()));
                let nat = kind == Kind::RvsNat;
                if nat {
                    // Replies come back through the LB: the real servers route the client
                    // via the LB's segment address, where the program also runs.
                    me.route_client_via_lb(true)?;
                    me.router_pass = Some(
                        lab.router()
                            .run(|| PassProgram::attach(rvs_lab::dr::ROUTER_LB_IF))??,
                    );
                }
                let config = rvs_config(lab.lb_uplink(), nat, &pin, &ports, &rs);
                me.rvsd = Some(Rvsd::start(lb, &tools.rvsd, &config, &pin)?);
            }
            Kind::Iptables | Kind::Nftables => {
                // DNAT needs the replies back through the LB: forwarding on, and the real
                // servers' route to the client via the LB (undone on drop; the baseline's
                // second client address keeps its direct route).
                lb.sysctl("net.ipv4.ip_forward", "1")?;
                me.route_client_via_lb(true)?;
                if kind == Kind::Iptables {
                    run_in(
                        lb,
                        &["iptables-restore"],
                        &iptables_rules(&ports, &rs),
                        SETUP_TIMEOUT,
                    )?;
                } else {
                    run_in(
                        lb,
                        &["nft", "-f", "-"],
                        &nft_rules(&ports, &rs),
                        SETUP_TIMEOUT,
                    )?;
                }
            }
            Kind::Haproxy | Kind::Nginx => {
                // A proxy terminates the client's connection: the VIP is a local address.
                lb.exec(&["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
                let path = std::env::temp_dir().join(format!(
                    "{}-{}.conf",
                    lab.prefix(),
                    if kind == Kind::Haproxy {
                        "haproxy"
                    } else {
                        "nginx"
                    }
                ));
                let (text, argv): (String, Vec<String>) = if kind == Kind::Haproxy {
                    (
                        haproxy_config(&ports, &rs),
                        vec!["haproxy".into(), "-db".into(), "-f".into(), path_str(&path)],
                    )
                } else {
                    let pid = std::env::temp_dir().join(format!("{}-nginx.pid", lab.prefix()));
                    me.files.push(pid.clone());
                    (
                        nginx_config(&ports, &rs, &pid),
                        vec![
                            "nginx".into(),
                            "-e".into(),
                            "stderr".into(),
                            "-p".into(),
                            path_str(&std::env::temp_dir()),
                            "-c".into(),
                            path_str(&path),
                        ],
                    )
                };
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                me.files.push(path);
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                me.proxy = Some(lb.spawn(&argv)?);
            }
        }
        me.wait_ready()?;
        Ok(me)
    }

    /// The address the client sends to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The balancer's own processes (their CPU is part of the balancer's).
    pub fn pids(&self) -> Vec<u32> {
        let mut v = Vec::new();
        if let Some(p) = &self.proxy {
            v.push(p.pid());
        }
        if let Some(r) = &self.rvsd {
            v.push(r.pid());
        }
        v
    }

    /// Times adding one more service with the lab's real servers, the way an operator of
    /// this balancer would: one `rvsadm -R`, one `iptables-restore --noflush`, one `nft -f`.
    /// `None` where a service is not added at run time (the proxies reload their config).
    pub fn add_service(&mut self) -> Result<Option<Duration>> {
        let port = ADDED_BASE + self.added;
        self.added += 1;
        let rs = reals(self.lab);
        let lb = self.lab.lb();
        let took = match self.kind {
            Kind::Baseline | Kind::Router | Kind::Haproxy | Kind::Nginx => return Ok(None),
            Kind::RvsDr | Kind::RvsNat => {
                let rvsd = self.rvsd.as_ref().context("rvsd is not running")?;
                let method = if self.kind == Kind::RvsNat {
                    "-m"
                } else {
                    "-g"
                };
                let mut rules = format!("-A -t {VIP}:{port} -s rr\n");
                for r in &rs {
                    rules += &format!("-a -t {VIP}:{port} -r {r}:{port} {method} -w 1\n");
                }
                let socket = path_str(rvsd.socket());
                let bin = path_str(&self.rvsadm);
                run_timed(
                    &[&bin, "--socket", &socket, "-R"],
                    None,
                    &rules,
                    SETUP_TIMEOUT,
                )?
            }
            Kind::Iptables => {
                let chain = format!("A{port}");
                let mut rules = format!("*nat\n:{chain} - [0:0]\n");
                rules += &format!("-A RVSB -d {VIP}/32 -p tcp --dport {port} -j {chain}\n");
                rules += &nth_rules(&chain, &rs);
                rules += "COMMIT\n";
                run_in(
                    lb,
                    &["iptables-restore", "--noflush"],
                    &rules,
                    SETUP_TIMEOUT,
                )?
            }
            Kind::Nftables => {
                let chain = format!("a{port}");
                let rules = format!(
                    "add chain ip rvsb {chain}\nadd rule ip rvsb {chain} {}\nadd element ip rvsb svc {{ {VIP} . {port} : jump {chain} }}\n",
                    numgen_dnat(&rs)
                );
                run_in(lb, &["nft", "-f", "-"], &rules, SETUP_TIMEOUT)?
            }
        };
        Ok(Some(took))
    }

    /// Waits (up to 30 s) until one request through the traffic service is answered.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rvs_lab::http_get(self.lab.client(), self.target) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    super::check_interrupted()?;
                    if let Some(p) = &mut self.proxy
                        && !p.is_running()
                    {
                        bail!("{} exited:\n{}", self.kind.name(), p.output());
                    }
                    if Instant::now() >= deadline || super::interrupted() {
                        return Err(e).context(format!(
                            "{} did not answer on {}",
                            self.kind.name(),
                            self.target
                        ));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Adds (or deletes) every real server's route to the client's main address via the LB.
    fn route_client_via_lb(&self, add: bool) -> Result<()> {
        let client = format!("{}/32", rvs_lab::dr::CLIENT_ADDR);
        let via = rvs_lab::dr::LB_SEGMENT_ADDR.to_string();
        for r in self.lab.real_servers() {
            let verb = if add { "add" } else { "del" };
            r.ns().exec(&["ip", "route", verb, &client, "via", &via])?;
        }
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        let lb = self.lab.lb();
        if let Some(mut p) = self.proxy.take() {
            p.stop()?;
        }
        self.rvsd = None;
        self.router_pass = None;
        match self.kind {
            Kind::Baseline | Kind::RvsDr => {}
            Kind::RvsNat => self.route_client_via_lb(false)?,
            Kind::Router => {
                let first = *reals(self.lab).first().context("no real server")?;
                self.lab
                    .router()
                    .exec(&["ip", "route", "del", &format!("{first}/32")])?;
                lb.sysctl("net.ipv4.ip_forward", "0")?;
            }
            Kind::Iptables => {
                lb.exec(&["iptables", "-t", "nat", "-F"])?;
                lb.exec(&["iptables", "-t", "nat", "-X"])?;
            }
            Kind::Nftables => {
                lb.exec(&["nft", "delete", "table", "ip", "rvsb"])?;
            }
            Kind::Haproxy | Kind::Nginx => {
                lb.exec(&["ip", "addr", "del", &format!("{VIP}/32"), "dev", "lo"])?;
            }
        }
        if matches!(self.kind, Kind::Iptables | Kind::Nftables) {
            lb.sysctl("net.ipv4.ip_forward", "0")?;
            self.route_client_via_lb(false)?;
        }
        Ok(())
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!(lb = self.kind.name(), error = %format!("{e:#}"), "teardown");
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The client's second address, the baseline's source.
pub const BASELINE_SOURCE: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);

/// The baseline's destination: the last real server's own address (the plain-router
/// reference routes the first one's through the LB).
pub fn baseline_target(lab: &DrLab) -> Result<SocketAddr> {
    let last = lab
        .real_servers()
        .last()
        .context("the lab has no real server")?;
    Ok(SocketAddr::from((last.addr(), PORT)))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// rvsd's TOML: the balancer on `uplink` (and, for NAT, on the segment port where the
/// replies arrive), one rr service per port.
fn rvs_config(uplink: &str, nat: bool, pin: &Path, ports: &[u16], reals: &[Ipv4Addr]) -> String {
    let (interfaces, forward) = if nat {
        (
            format!("\"{uplink}\", \"{}\"", rvs_lab::dr::LB_SEGMENT_IF),
            "\nforward = \"nat\"",
        )
    } else {
        (format!("\"{uplink}\""), "")
    };
    let mut c = format!(
        "[daemon]\ninterfaces = [{interfaces}]\npin_path = \"{}\"\nxdp_mode = \"native\"\n",
        pin.display()
    );
    for p in ports {
        c += &format!(
            "\n[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = {p}\nscheduler = \"rr\"\n"
        );
        for r in reals {
            c += &format!("[[service.real]]\naddress = \"{r}\"{forward}\n");
        }
    }
    c
}

/// Round robin with `statistic --mode nth`: rule j takes every (R−j)th packet that reaches
/// it, the last takes the rest.
fn nth_rules(chain: &str, reals: &[Ipv4Addr]) -> String {
    let mut s = String::new();
    let n = reals.len();
    for (j, r) in reals.iter().enumerate() {
        if j + 1 < n {
            s += &format!(
                "-A {chain} -m statistic --mode nth --every {} --packet 0 -j DNAT --to-destination {r}\n",
                n - j
            );
        } else {
            s += &format!("-A {chain} -j DNAT --to-destination {r}\n");
        }
    }
    s
}

/// The nat table for `iptables-restore`: PREROUTING → RVSB, one match rule per service
/// jumping to the service's chain (kube-proxy's layout).
fn iptables_rules(ports: &[u16], reals: &[Ipv4Addr]) -> String {
    let mut s = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:RVSB - [0:0]\n");
    for p in ports {
        s += &format!(":S{p} - [0:0]\n");
    }
    s += "-A PREROUTING -j RVSB\n";
    for p in ports {
        s += &format!("-A RVSB -d {VIP}/32 -p tcp --dport {p} -j S{p}\n");
    }
    for p in ports {
        s += &nth_rules(&format!("S{p}"), reals);
    }
    s + "COMMIT\n"
}

fn numgen_dnat(reals: &[Ipv4Addr]) -> String {
    let elems: Vec<String> = reals
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{i} : {r}"))
        .collect();
    format!(
        "dnat to numgen inc mod {} map {{ {} }}",
        reals.len(),
        elems.join(", ")
    )
}

/// The nftables ruleset: one verdict map lookup by VIP . port, a chain per service.
fn nft_rules(ports: &[u16], reals: &[Ipv4Addr]) -> String {
    let mut s = String::from(
        "table ip rvsb {\n  map svc {\n    type ipv4_addr . inet_service : verdict\n  }\n  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n    ip daddr . tcp dport vmap @svc\n  }\n",
    );
    let dnat = numgen_dnat(reals);
    for p in ports {
        s += &format!("  chain s{p} {{\n    {dnat}\n  }}\n");
    }
    s += "}\n";
    // Elements in batches: one huge line is slow for nft to parse.
    for chunk in ports.chunks(500) {
        let elems: Vec<String> = chunk
            .iter()
            .map(|p| format!("{VIP} . {p} : jump s{p}"))
            .collect();
        s += &format!("add element ip rvsb svc {{ {} }}\n", elems.join(", "));
    }
    s
}

fn haproxy_config(ports: &[u16], reals: &[Ipv4Addr]) -> String {
    let mut s = String::from(
        "global\n    nbthread 1\n    maxconn 4000\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n",
    );
    for p in ports {
        s += &format!("\nlisten s{p}\n    bind {VIP}:{p}\n    balance roundrobin\n");
        for (i, r) in reals.iter().enumerate() {
            s += &format!("    server r{i} {r}:{p}\n");
        }
    }
    s
}

fn nginx_config(ports: &[u16], reals: &[Ipv4Addr], pid: &Path) -> String {
    let mut s = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\ndaemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 20000;\npid {};\nerror_log stderr warn;\nevents {{\n    worker_connections 19000;\n}}\nstream {{\n",
        pid.display()
    );
    for p in ports {
        s += &format!("    upstream u{p} {{\n");
        for r in reals {
            s += &format!("        server {r}:{p};\n");
        }
        s += &format!(
            "    }}\n    server {{\n        listen {VIP}:{p};\n        proxy_pass u{p};\n    }}\n"
        );
    }
    s + "}\n"
}

/// Runs `argv` inside `ns` (network namespace only, like `Netns::spawn`) with `stdin`, and
/// returns how long it took.
fn run_in(ns: &Netns, argv: &[&str], stdin: &str, limit: Duration) -> Result<Duration> {
    run_timed(argv, Some(ns), stdin, limit).with_context(|| format!("in namespace {}", ns.name()))
}

/// Runs `argv` (in `ns` when given) with `stdin` to completion within `limit`; returns the
/// wall time from start to exit.
fn run_timed(argv: &[&str], ns: Option<&Netns>, stdin: &str, limit: Duration) -> Result<Duration> {
    use std::os::{fd::AsRawFd, unix::process::CommandExt};
    let line = argv.join(" ");
    let (program, args) = argv.split_first().context("empty command")?;
    let netns = ns
        .map(|ns| std::fs::File::open(ns.path()))
        .transpose()
        .context("opening the namespace")?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(fd) = netns.as_ref().map(AsRawFd::as_raw_fd) {
        // SAFETY: between fork and exec the closure makes one syscall on an fd that stays
        // open in this process until spawn returns.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    drop(netns);
    let mut pipe = child.stdin.take().context("child stdin")?;
    let text = stdin.to_owned();
    let writer = std::thread::spawn(move || pipe.write_all(text.as_bytes()));
    let deadline = started + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{line}` did not finish within {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let took = started.elapsed();
    let _ = writer.join();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("`{line}` failed ({status}): {}", err.trim());
    }
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_round_robin_splits_evenly() {
        let rs = [
            Ipv4Addr::new(198, 18, 2, 11),
            Ipv4Addr::new(198, 18, 2, 12),
            Ipv4Addr::new(198, 18, 2, 13),
        ];
        assert_eq!(
            nth_rules("S80", &rs),
            "-A S80 -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 198.18.2.11\n\
             -A S80 -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 198.18.2.12\n\
             -A S80 -j DNAT --to-destination 198.18.2.13\n"
        );
        assert_eq!(
            numgen_dnat(&rs[..2]),
            "dnat to numgen inc mod 2 map { 0 : 198.18.2.11, 1 : 198.18.2.12 }"
        );
    }

    #[test]
    fn traffic_service_is_last_and_ports_are_distinct() {
        let p = ports(3).unwrap();
        assert_eq!(p, vec![10_001, 10_002, 80]);
        assert!(ports(0).is_err());
        assert_eq!(ports(10_000).unwrap().len(), 10_000);
        assert!(ports(40_000).is_err());
    }
}
