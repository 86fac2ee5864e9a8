//! `cargo xtask bench-compare`: rvs side by side with what an operator would otherwise pick
//! (iptables DNAT, nftables DNAT with a map, HAProxy in TCP mode, nginx's stream proxy), in
//! one lab, with one client generator, in one run, at 1, 1 000 and 10 000 services.
//!
//! What a shared 2-core machine can measure honestly: the generator, the responders and the
//! balancer share the cores, so raw packets per second are the generator's limit, not the
//! balancer's. Instead, per balancer and service count:
//! - LB CPU per 100 000 packets the LB received (keep-alive requests) and per 10 000
//!   connections (connect, one request, close): the CPU time of every task that carries the
//!   lab's traffic (see [`load::CpuMeter`]) minus the same traffic with no balancer on the
//!   path (client → router → real server), measured in the same lab just before;
//! - the connection rate of that closed-loop connection run;
//! - request latency (new connection + GET) p50/p99 at a fixed open-loop offered load;
//! - the time to add one more service with N present.

mod chart;
mod lbs;
mod load;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use rvs_dataplane::PassProgram;
use rvs_lab::{DrLab, Netns};

use lbs::{Kind, Running, Tools};
use load::{CpuMeter, Outcome, Responders};

/// The balancers measured, in table order; the baseline is measured before them in every
/// lab. A new balancer is one entry here and one arm in `lbs::Running::start`.
const METHODS: &[Kind] = &[
    Kind::Router,
    Kind::RvsDr,
    Kind::RvsNat,
    Kind::Iptables,
    Kind::Nftables,
    Kind::Haproxy,
    Kind::Nginx,
];

/// Options of `cargo xtask bench-compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// A small, short run (1 and 100 services, few requests): the smoke run of `./x test`.
    #[arg(long)]
    quick: bool,
    /// Print Markdown.
    #[arg(long)]
    markdown: bool,
    /// Also print each run's CPU by part (this process, the balancer's processes, ksoftirqd).
    #[arg(long)]
    verbose: bool,
}

/// Sizes of one run.
struct Plan {
    services: Vec<u32>,
    /// Keep-alive connections of the request run.
    keepalive: usize,
    /// Requests of the request run.
    requests: u64,
    /// Connections of the connection run, and how many in flight.
    connections: u64,
    parallel: usize,
    /// Offered load and duration of the latency run.
    rate: u32,
    latency_for: Duration,
    /// Service adds timed per balancer.
    adds: usize,
    /// Interleaved rounds of balancer and baseline runs (the median is reported).
    rounds: usize,
    /// Longest any one workload may run.
    limit: Duration,
    /// Print CPU parts per run.
    verbose: bool,
}

impl Plan {
    fn new(quick: bool, verbose: bool) -> Plan {
        if quick {
            Plan {
                services: vec![1, 100],
                keepalive: 8,
                requests: 3_000,
                connections: 400,
                parallel: 8,
                rate: 300,
                latency_for: Duration::from_millis(500),
                adds: 2,
                rounds: 3,
                limit: Duration::from_secs(10),
                verbose,
            }
        } else {
            Plan {
                services: vec![1, 1_000, 10_000],
                keepalive: 16,
                requests: 60_000,
                connections: 10_000,
                parallel: 16,
                rate: 500,
                latency_for: Duration::from_secs(4),
                adds: 5,
                rounds: 5,
                limit: Duration::from_secs(60),
                verbose,
            }
        }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C (SIGINT) or SIGTERM arrived: every loop stops, and the lab is dropped.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

pub(crate) fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted: lab removed");
    }
    Ok(())
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Turns SIGINT and SIGTERM into [`interrupted`], so the lab's drops run.
fn catch_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is fully initialised before the call.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        ensure!(rc == 0, "sigaction: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// One balancer at one service count.
struct Measured {
    kind: Kind,
    services: u32,
    /// Packets the LB namespace received during the request run.
    packets: u64,
    req: Outcome,
    conn: Outcome,
    latency: Vec<Duration>,
    latency_failed: u64,
    adds: Vec<Duration>,
}

/// A row of the result: the balancer's figures net of the baseline.
struct Row {
    m: Measured,
    /// LB CPU ms per 100 000 packets (None for the baseline).
    per_packet: Option<f64>,
    /// LB CPU ms per 10 000 connections.
    per_conn: Option<f64>,
}

/// Runs the comparison.
pub fn run(args: CompareArgs) -> Result<()> {
    ensure!(
        nix_is_root(),
        "bench-compare builds network namespaces, loads XDP programs and runs iptables: run it as root"
    );
    for tool in ["iptables-restore", "nft", "haproxy", "nginx"] {
        ensure!(
            which(tool),
            "{tool} not found: run scripts/setup.sh (it installs iptables, nftables, haproxy, nginx)"
        );
    }
    let dir = std::env::current_exe()?;
    let tools = Tools {
        rvsd: dir.with_file_name("rvsd"),
        rvsadm: dir.with_file_name("rvsadm"),
    };
    for bin in [&tools.rvsd, &tools.rvsadm] {
        ensure!(
            bin.exists(),
            "{} not found: cargo build -p rvsd -p rvsadm -p xtask (same profile)",
            bin.display()
        );
    }
    rvs_dataplane::ensure_bpffs()?;
    catch_signals()?;
    let plan = Plan::new(args.quick, args.verbose);
    let meter = CpuMeter::new()?;
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for &n in &plan.services {
        check_interrupted()?;
        eprintln!("— {n} service(s): building a fresh lab");
        rows.extend(measure_group(n, &plan, &tools, &meter)?);
    }
    let report = report(&rows, &plan, args.markdown, started.elapsed());
    println!("{report}");
    write_outputs(&rows, &plan, args.quick, &report)?;
    Ok(())
}

/// A fresh lab (no netfilter state carried over), the baseline, then every balancer.
fn measure_group(n: u32, plan: &Plan, tools: &Tools, meter: &CpuMeter) -> Result<Vec<Row>> {
    let lab = DrLab::new(3, &[lbs::VIP])?;
    // The baseline's source: a second client address whose replies always take the
    // direct route.
    lab.client().exec(&[
        "ip",
        "addr",
        "add",
        &format!("{}/24", lbs::BASELINE_SOURCE),
        "dev",
        rvs_lab::dr::CLIENT_IF,
    ])?;
    // Wide port ranges: tens of thousands of connections per run.
    for ns in [lab.client(), lab.lb()] {
        ns.sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
    }
    let servers: Vec<(&Netns, String)> = lab
        .real_servers()
        .iter()
        .map(|r| (r.ns(), r.name().to_owned()))
        .collect();
    let _responders = Responders::spawn(&servers, lbs::PORT)?;
    let port = lab.switch_lb_port();
    let _pass = lab.switch().run(|| PassProgram::attach(port))??;
    let mut rows = Vec::new();
    for kind in std::iter::once(Kind::Baseline).chain(METHODS.iter().copied()) {
        check_interrupted()?;
        let row = measure(kind, &lab, n, plan, tools, meter)
            .with_context(|| format!("{} with {n} services", kind.name()))?;
        if kind != Kind::Baseline {
            eprintln!(
                "  {:<20} {:>8.1} ms/100k pkts {:>8.1} ms/10k conns {:>7.0} conn/s",
                kind.name(),
                row.per_packet.unwrap_or(f64::NAN),
                row.per_conn.unwrap_or(f64::NAN),
                rate(row.m.conn)
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

fn rate(o: Outcome) -> f64 {
    o.done as f64 / o.elapsed.as_secs_f64().max(1e-9)
}

/// CPU seconds of one run of `work`, as [`CpuMeter`] counts it.
fn cpu_of(
    meter: &CpuMeter,
    pids: &[u32],
    work: impl FnOnce() -> Result<Outcome>,
) -> Result<(Outcome, load::Cpu)> {
    let before = meter.sample(pids)?;
    let outcome = work()?;
    let after = meter.sample(pids)?;
    check_interrupted()?;
    Ok((outcome, after.since(&before)))
}

fn median_f64(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Sets `kind` up, warms it, runs the request and connection runs in rounds, each beside a
/// baseline run of the same size (interleaved, so drifting load on the machine hits both),
/// then the latency run and the update timing.
fn measure(
    kind: Kind,
    lab: &DrLab,
    n: u32,
    plan: &Plan,
    tools: &Tools,
    meter: &CpuMeter,
) -> Result<Row> {
    let mut lb = Running::start(kind, lab, n, tools)?;
    let path = load::Path {
        to: lb.target(),
        from: (kind == Kind::Baseline).then_some(lbs::BASELINE_SOURCE),
    };
    let base = load::Path {
        to: lbs::baseline_target(lab)?,
        from: Some(lbs::BASELINE_SOURCE),
    };
    let client = lab.client();
    // Warm-up: caches, neighbour entries, the proxies' first allocations.
    for p in [path, base] {
        load::requests(client, p, plan.keepalive, 500, plan.limit)?;
        load::connections(client, p, plan.parallel, 100, plan.limit)?;
    }
    check_interrupted()?;
    let pids = lb.pids();
    let rounds = plan.rounds as u64;
    let (req_n, conn_n) = (plan.requests / rounds, plan.connections / rounds);
    let mut per_packet = Vec::new();
    let mut per_conn = Vec::new();
    let mut req = Outcome::default();
    let mut conn = Outcome::default();
    let mut packets = 0;
    for round in 0..plan.rounds {
        let (b, bc) = cpu_of(meter, &[], || {
            load::requests(client, base, plan.keepalive, req_n, plan.limit)
        })?;
        let p0 = lb_packets(lab)?;
        let (x, xc) = cpu_of(meter, &pids, || {
            load::requests(client, path, plan.keepalive, req_n, plan.limit)
        })?;
        let pk = lb_packets(lab)?.saturating_sub(p0);
        let (bconn, bcc) = cpu_of(meter, &[], || {
            load::connections(client, base, plan.parallel, conn_n, plan.limit)
        })?;
        let (xconn, xcc) = cpu_of(meter, &pids, || {
            load::connections(client, path, plan.parallel, conn_n, plan.limit)
        })?;
        let net = |x: &Outcome, xc: &load::Cpu, b: &Outcome, bc: &load::Cpu| {
            xc.total().as_secs_f64() - per(bc.total(), b.done) * x.done as f64
        };
        if pk > 0 {
            per_packet.push(net(&x, &xc, &b, &bc) * 1e3 / pk as f64 * 1e5);
        }
        if xconn.done > 0 {
            per_conn.push(net(&xconn, &xcc, &bconn, &bcc) * 1e3 / xconn.done as f64 * 1e4);
        }
        if plan.verbose {
            eprintln!(
                "    {} at {n}, round {round}: requests {:?} (baseline {:?}), {pk} packets; connections {:?} (baseline {:?})",
                kind.name(),
                xc,
                bc,
                xcc,
                bcc
            );
        }
        req.add(&x);
        conn.add(&xconn);
        packets += pk;
    }

    let (latency, latency_failed) = load::latency(client, path, plan.rate, plan.latency_for)?;
    check_interrupted()?;

    let mut adds = Vec::new();
    for _ in 0..plan.adds {
        if let Some(d) = lb.add_service()? {
            adds.push(d);
        }
    }
    adds.sort();
    for (what, o) in [("requests", req), ("connections", conn)] {
        if o.failed > 0 {
            eprintln!(
                "  {}: {} of {} {what} failed",
                kind.name(),
                o.failed,
                o.failed + o.done
            );
        }
    }
    let baseline = kind == Kind::Baseline;
    Ok(Row {
        m: Measured {
            kind,
            services: n,
            packets,
            req,
            conn,
            latency,
            latency_failed,
            adds,
        },
        per_packet: if baseline {
            None
        } else {
            median_f64(per_packet)
        },
        per_conn: if baseline { None } else { median_f64(per_conn) },
    })
}

/// Seconds of CPU per unit.
fn per(cpu: Duration, units: u64) -> f64 {
    if units == 0 {
        0.0
    } else {
        cpu.as_secs_f64() / units as f64
    }
}

/// Packets sent into the LB namespace so far: the router's `rl` (towards the LB's uplink)
/// and the switch's `slb` (towards the LB's segment port) transmit counters, which count
/// every frame whatever the LB does with it (XDP or stack).
fn lb_packets(lab: &DrLab) -> Result<u64> {
    let read = |ns: &Netns, ifname: &str| -> Result<u64> {
        let text = ns.exec(&[
            "cat",
            &format!("/sys/class/net/{ifname}/statistics/tx_packets"),
        ])?;
        text.trim()
            .parse()
            .with_context(|| format!("tx_packets of {ifname}: {text:?}"))
    };
    Ok(read(lab.router(), rvs_lab::dr::ROUTER_LB_IF)?
        + read(lab.switch(), rvs_lab::dr::SWITCH_LB_PORT)?)
}

fn find(rows: &[Row], kind: Kind, n: u32) -> Option<&Row> {
    rows.iter().find(|r| r.m.kind == kind && r.m.services == n)
}

fn ratio(x: Option<f64>, rvs: Option<f64>) -> Option<f64> {
    match (x, rvs) {
        (Some(x), Some(r)) if r > 0.0 => Some(x / r),
        _ => None,
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn us(d: Option<Duration>) -> String {
    d.map_or("—".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e6))
}

fn median_add(m: &Measured) -> Option<Duration> {
    m.adds.get(m.adds.len() / 2).copied()
}

/// The result table, the targets and the notes.
fn report(rows: &[Row], plan: &Plan, markdown: bool, wall: Duration) -> String {
    let mut out = String::new();
    let header = [
        "LB",
        "services",
        "pkts / req",
        "LB CPU ms / 100k pkts",
        "× rvs",
        "LB CPU ms / 10k conns",
        "× rvs",
        "conn/s",
        "p50 µs",
        "p99 µs",
        "add 1 service ms",
    ];
    let mut table: Vec<Vec<String>> = Vec::new();
    for r in rows {
        let rvs = find(rows, Kind::RvsDr, r.m.services);
        let base = r.m.kind == Kind::Baseline;
        table.push(vec![
            r.m.kind.name().to_owned(),
            r.m.services.to_string(),
            if base || r.m.req.done == 0 {
                "—".into()
            } else {
                format!("{:.2}", r.m.packets as f64 / r.m.req.done as f64)
            },
            if base {
                "(reference)".into()
            } else {
                fmt_opt(r.per_packet, 1)
            },
            fmt_opt(ratio(r.per_packet, rvs.and_then(|x| x.per_packet)), 2),
            if base {
                "(reference)".into()
            } else {
                fmt_opt(r.per_conn, 1)
            },
            fmt_opt(ratio(r.per_conn, rvs.and_then(|x| x.per_conn)), 2),
            format!("{:.0}", rate(r.m.conn)),
            us(load::quantile(&r.m.latency, 0.5)),
            us(load::quantile(&r.m.latency, 0.99)),
            median_add(&r.m).map_or("—".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3)),
        ]);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        out,
        "bench-compare: {} keep-alive requests on {} connections, {} connections ({} in flight), latency at {} new connections/s for {:.1} s; {cores} CPUs, kernel {}",
        plan.requests,
        plan.keepalive,
        plan.connections,
        plan.parallel,
        plan.rate,
        plan.latency_for.as_secs_f64(),
        kernel()
    );
    out.push('\n');
    if markdown {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            header
                .iter()
                .enumerate()
                .map(|(i, _)| if i < 1 { "---|" } else { "---:|" })
                .collect::<String>()
        );
        for row in &table {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
    } else {
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                table
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| -> String {
            cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    let pad = w.saturating_sub(c.chars().count());
                    if i == 0 {
                        format!("{c}{}", " ".repeat(pad))
                    } else {
                        format!("{}{c}", " ".repeat(pad))
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let h: Vec<String> = header.iter().map(|s| (*s).to_owned()).collect();
        let _ = writeln!(out, "{}", line(&h));
        for row in &table {
            let _ = writeln!(out, "{}", line(row));
        }
    }
    out.push('\n');
    let bullet = if markdown { "- " } else { "  " };
    let _ = writeln!(out, "Targets (measured in this run):");
    let first = plan.services.first().copied().unwrap_or(1);
    let last = plan.services.last().copied().unwrap_or(1);
    let pkt = |k: Kind, n: u32| {
        ratio(
            find(rows, k, n).and_then(|r| r.per_packet),
            find(rows, Kind::RvsDr, n).and_then(|r| r.per_packet),
        )
    };
    let conn = |k: Kind, n: u32| {
        ratio(
            find(rows, k, n).and_then(|r| r.per_conn),
            find(rows, Kind::RvsDr, n).and_then(|r| r.per_conn),
        )
    };
    let verdict = |v: Option<f64>, goal: f64| match v {
        Some(v) if v >= goal => format!("{v:.2}× (met)"),
        Some(v) => format!("{v:.2}× (NOT met)"),
        None => "not measurable (rvs's net cost ≤ 0)".into(),
    };
    let _ = writeln!(
        out,
        "{bullet}iptables DNAT / rvs, LB CPU per packet at {first} service(s): {} — target ≥ 4×",
        verdict(pkt(Kind::Iptables, first), 4.0)
    );
    let at_last = pkt(Kind::Iptables, last);
    let grows = match (at_last, pkt(Kind::Iptables, first)) {
        (Some(a), Some(b)) if a > b => "met",
        (Some(_), Some(_)) => "NOT met",
        _ => "not measurable",
    };
    let _ = writeln!(
        out,
        "{bullet}iptables DNAT / rvs, LB CPU per packet at {last} services: {} — target: more than at {first}: {grows}",
        fmt_opt(at_last, 2) + "×"
    );
    // Like for like: rvs NAT and DNAT both carry both halves of every connection.
    for &n in &plan.services {
        let v = ratio(
            find(rows, Kind::Iptables, n).and_then(|r| r.per_packet),
            find(rows, Kind::RvsNat, n).and_then(|r| r.per_packet),
        );
        let _ = writeln!(
            out,
            "{bullet}iptables DNAT / rvs NAT (both see both halves), LB CPU per packet at {n} service(s): {} — target ≥ 4×",
            verdict(v, 4.0)
        );
    }
    for k in [Kind::Haproxy, Kind::Nginx] {
        for &n in &plan.services {
            let _ = writeln!(
                out,
                "{bullet}{} / rvs, LB CPU per connection at {n} service(s): {} — target ≥ 2×",
                k.name(),
                verdict(conn(k, n), 2.0)
            );
        }
    }
    out.push('\n');
    let _ = writeln!(out, "Notes:");
    for note in [
        "LB CPU = CPU time of every task carrying the lab's traffic (the generator and responders with the softirq work run in their context, the balancer's processes, ksoftirqd) minus the same traffic with no balancer on the path (baseline row, same lab, measured just before), per packet the LB namespace received (router→LB and switch→LB transmit counters) or per connection. Other users' programs on the machine are not counted.".to_owned(),
        "Raw packets per second are not reported: on this machine the client generator, the responders and the balancer share 2 cores, so throughput is the generator's limit, not the balancer's.".to_owned(),
        "rvs DR: the LB sees only the client→server half of each connection (replies go straight back); rvs NAT and DNAT see both halves (the real servers route the client via the LB), and a proxy terminates two TCP connections per client connection.".to_owned(),
        "The service with traffic is the last of N (the worst place in a rule list walked in order); with conntrack, iptables and nftables walk their rules only for a connection's first packet.".to_owned(),
        "conn/s: closed loop of the connection run (connect, one GET, close with RST so that no TIME_WAIT piles up; the same for all). Latency: new connection + GET + response, open loop at a fixed rate.".to_owned(),
        "add 1 service: one `rvsadm -R` (a service and its 3 real servers), one `iptables-restore --noflush` (a chain, its 3 rules and the match rule), one `nft -f` (a chain and a map element), with N services present; median. The proxies add a service by rewriting their config and reloading: not timed.".to_owned(),
        format!("{}: one process, one worker thread each.", [Kind::Haproxy.name(), Kind::Nginx.name()].join(", ")),
    ] {
        let _ = writeln!(out, "{bullet}{note}");
    }
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.m.req.failed + r.m.conn.failed + r.m.latency_failed > 0)
        .map(|r| {
            format!(
                "{} at {}: {} requests, {} connections, {} latency probes failed",
                r.m.kind.name(),
                r.m.services,
                r.m.req.failed,
                r.m.conn.failed,
                r.m.latency_failed
            )
        })
        .collect();
    for f in &failed {
        let _ = writeln!(out, "{bullet}{f}");
    }
    let _ = writeln!(out, "\nwall time: {:.0} s", wall.as_secs_f64());
    out
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// The chart and the report under target/bench-compare/, and (full runs only) the chart in
/// docs/ for the README.
fn write_outputs(rows: &[Row], plan: &Plan, quick: bool, report: &str) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_owned();
    let out_dir = root.join("target/bench-compare");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let groups: Vec<String> = plan
        .services
        .iter()
        .map(|n| format!("{n} service{}", if *n == 1 { "" } else { "s" }))
        .collect();
    let series = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<chart::Series> {
        METHODS
            .iter()
            .map(|&k| chart::Series {
                name: k.name().to_owned(),
                values: plan
                    .services
                    .iter()
                    .map(|&n| find(rows, k, n).and_then(f))
                    .collect(),
            })
            .collect()
    };
    let panels = [
        chart::Panel {
            title: "LB CPU per 100 000 packets".into(),
            unit: "ms, log scale (lower is better)".into(),
            log: true,
            series: series(&|r| r.per_packet),
        },
        chart::Panel {
            title: "LB CPU per 10 000 connections".into(),
            unit: "ms, log scale (lower is better)".into(),
            log: true,
            series: series(&|r| r.per_conn),
        },
        chart::Panel {
            title: "Latency p99, new connection + GET".into(),
            unit: format!("µs at {} conn/s (lower is better)", plan.rate),
            log: false,
            series: series(&|r| load::quantile(&r.m.latency, 0.99).map(|d| d.as_secs_f64() * 1e6)),
        },
        chart::Panel {
            title: "Add one service with N present".into(),
            unit: "ms, log scale (proxies: reload, not timed)".into(),
            log: true,
            series: series(&|r| median_add(&r.m).map(|d| d.as_secs_f64() * 1e3)),
        },
    ];
    let svg = chart::render(
        "rvs beside iptables, nftables, HAProxy and nginx — one lab, one generator, one run",
        &format!(
            "{} CPUs, kernel {}; LB CPU = traffic-carrying tasks' CPU minus the no-LB baseline; `./x bench-compare`",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel()
        ),
        &groups,
        &panels,
    );
    let chart_path = out_dir.join("compare.svg");
    std::fs::write(&chart_path, &svg)?;
    std::fs::write(out_dir.join("compare.txt"), report)?;
    eprintln!("chart: {}", chart_path.display());
    if !quick {
        let docs = root.join("docs/bench-compare.svg");
        std::fs::write(&docs, &svg).with_context(|| format!("writing {}", docs.display()))?;
        eprintln!("chart: {}", docs.display());
    }
    Ok(())
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
