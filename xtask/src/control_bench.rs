//! `cargo xtask bench-control`: how fast rvsd takes configuration changes.
//!
//! rvsd runs in a namespace of its own with no interface attached (the maps are real BPF
//! maps; no traffic is needed). Measured, each over several rounds:
//! - a whole configuration of N services × M real servers in one atomic API batch, and the
//!   same through `rvsadm -R` (rules in `ipvsadm -S` form on stdin), each after a clear;
//! - single `add_service` / `delete_service` calls with the N services present;
//! - the round trip of an empty batch, the baseline every change pays;
//! - `rvsadm -L -n --stats` (every counter read) with the whole configuration present;
//! - rvsd's own CPU when idle (ms of CPU per second of wall time) at 1 and 10 000 services
//!   (and 100 000 with `--full`) × 3 real servers, with an empty and with a modest
//!   connection table, printed with the ratio to 1 service: what an operator's idle
//!   balancer costs as the configuration grows (the periodic work: rate estimator,
//!   connection scan, neighbour refresh, status).

use std::{
    io::Write,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use clap::Args;
use rvs_api::{Client, Op};
use rvs_config::{Protocol, RealServer, VirtualService};
use rvs_lab::{Netns, Rvsd};

/// Options of `cargo xtask bench-control`.
#[derive(Args, Debug)]
pub struct ControlBenchArgs {
    /// Virtual services.
    #[arg(long, default_value_t = 10_000)]
    services: u32,
    /// Real servers per service.
    #[arg(long, default_value_t = 10)]
    reals: u32,
    /// Rounds of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Single adds/deletes timed with the services present.
    #[arg(long, default_value_t = 200)]
    singles: u32,
    /// Print Markdown.
    #[arg(long)]
    markdown: bool,
    /// Idle-CPU rows also at 100 000 services.
    #[arg(long)]
    full: bool,
    /// Seconds of each idle-CPU window.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Connections in the table for the idle-CPU rows "with connections".
    #[arg(long, default_value_t = 10_000)]
    idle_conns: u32,
    /// Only the idle-CPU rows (skip the configuration timings).
    #[arg(long)]
    idle_only: bool,
    /// The rvsd binary to measure (default: the one beside this xtask), e.g. an older
    /// build for a before/after comparison.
    #[arg(long)]
    rvsd: Option<PathBuf>,
}

/// Service `i`: 198.18.0.0/15 holds 131 072 addresses; VIPs from 198.19.0.0 on, port 80.
fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i)
}

/// Real server `j`: 198.18.2.(1 + j).
fn real(j: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 2, 1 + j as u8)
}

fn service(i: u32) -> VirtualService {
    VirtualService::new(Protocol::Tcp, vip(i), 80)
}

fn batch(services: u32, reals: u32) -> Vec<Op> {
    let mut ops = Vec::with_capacity((services * (reals + 1)) as usize);
    for i in 0..services {
        let svc = service(i);
        let id = svc.id();
        ops.push(Op::AddService { service: svc });
        for j in 0..reals {
            ops.push(Op::AddReal {
                service: id,
                real: RealServer::new(real(j)),
            });
        }
    }
    ops
}

/// The same configuration as `ipvsadm -S -n` prints it.
fn rules(services: u32, reals: u32) -> String {
    let mut out = String::new();
    for i in 0..services {
        out += &format!("-A -t {}:80 -s wrr\n", vip(i));
        for j in 0..reals {
            out += &format!("-a -t {}:80 -r {}:80 -g -w 1\n", vip(i), real(j));
        }
    }
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Runs the benchmark.
pub fn run(args: ControlBenchArgs) -> Result<()> {
    ensure!(
        args.rounds > 0 && args.services > 0,
        "rounds and services must be positive"
    );
    ensure!(args.reals <= 250, "at most 250 real servers per service");
    ensure!(
        args.services <= 100_000,
        "at most 100 000 services (addresses of 198.19.0.0/16+)"
    );
    let dir = std::env::current_exe()?;
    let rvsd_bin = args
        .rvsd
        .clone()
        .unwrap_or_else(|| dir.with_file_name("rvsd"));
    let rvsadm_bin = dir.with_file_name("rvsadm");
    ensure!(
        rvsd_bin.exists(),
        "{} not found: cargo build --release -p rvsd -p rvsadm -p xtask",
        rvsd_bin.display()
    );
    rvs_dataplane::ensure_bpffs()?;
    let idle = idle_rows(&rvsd_bin, &args)?;
    if args.idle_only {
        print_idle(&idle, args.markdown);
        return Ok(());
    }
    let ns = Netns::new(&format!("{}-ctl", rvs_lab::unique_prefix()))?;
    let pin = PathBuf::from(format!("/sys/fs/bpf/{}", ns.name()));
    let config = format!("[daemon]\npin_path = \"{}\"\n", pin.display());
    let rvsd = Rvsd::start(&ns, &rvsd_bin, &config, &pin)?;
    let client = Client::new(rvsd.socket());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let timed = |ops: Vec<Op>| -> Result<Duration> {
        let started = Instant::now();
        rt.block_on(client.apply(ops))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(started.elapsed())
    };
    let total = args.services * (args.reals + 1);
    eprintln!(
        "control-plane bench: {} services × {} real servers ({total} ops), {} rounds",
        args.services, args.reals, args.rounds
    );

    let mut empty = Vec::new();
    for _ in 0..20 {
        empty.push(timed(Vec::new())?);
    }
    let mut api = Vec::new();
    for _ in 0..args.rounds {
        timed(vec![Op::Clear])?;
        api.push(timed(batch(args.services, args.reals))?);
    }
    let rvsadm = if rvsadm_bin.exists() {
        let text = rules(args.services, args.reals);
        let mut times = Vec::new();
        for _ in 0..args.rounds {
            timed(vec![Op::Clear])?;
            times.push(restore(&rvsadm_bin, rvsd.socket(), &text)?);
        }
        Some(median(times))
    } else {
        eprintln!(
            "{} not built: skipping the rvsadm -R figure",
            rvsadm_bin.display()
        );
        None
    };
    // Singles with the full configuration present.
    let mut adds = Vec::new();
    let mut dels = Vec::new();
    for k in 0..args.singles {
        let svc = service(args.services + k);
        let id = svc.id();
        adds.push(timed(vec![Op::AddService { service: svc }])?);
        dels.push(timed(vec![Op::DeleteService { service: id }])?);
    }
    let listing = if rvsadm_bin.exists() {
        let mut times = Vec::new();
        for _ in 0..args.rounds {
            times.push(list(&rvsadm_bin, rvsd.socket())?);
        }
        Some(median(times))
    } else {
        None
    };
    let rows = [
        ("empty batch (round trip)", median(empty), None),
        (
            "whole config via API (one batch)",
            median(api),
            Some(Duration::from_secs(1)),
        ),
    ];
    let mut rows: Vec<(&str, Duration, Option<Duration>)> = rows.to_vec();
    if let Some(r) = rvsadm {
        rows.push((
            "whole config via rvsadm -R",
            r,
            Some(Duration::from_secs(1)),
        ));
    }
    let max_add = adds.iter().max().copied().unwrap_or_default();
    let max_del = dels.iter().max().copied().unwrap_or_default();
    rows.push((
        "single add_service (median)",
        median(adds),
        Some(Duration::from_millis(5)),
    ));
    rows.push(("single add_service (max)", max_add, None));
    rows.push((
        "single delete_service (median)",
        median(dels),
        Some(Duration::from_millis(5)),
    ));
    rows.push(("single delete_service (max)", max_del, None));
    if let Some(l) = listing {
        rows.push(("rvsadm -L -n --stats (whole listing)", l, None));
    }
    let title = format!(
        "{} services × {} real servers, rvsd in a namespace, medians of {} rounds ({} singles)",
        args.services, args.reals, args.rounds, args.singles
    );
    if args.markdown {
        println!(
            "{title}\n\n| measurement | time | target | time / target |\n|---|---:|---:|---:|"
        );
        for (name, t, target) in &rows {
            let (tgt, ratio) = target.map_or(("".into(), "".into()), |g| {
                (ms(g), format!("{:.2}", t.as_secs_f64() / g.as_secs_f64()))
            });
            println!("| {name} | {} | {tgt} | {ratio} |", ms(*t));
        }
    } else {
        println!("{title}");
        for (name, t, target) in &rows {
            let verdict = target.map_or(String::new(), |g| {
                format!(
                    "  target {} ({:.2}× {})",
                    ms(g),
                    t.as_secs_f64() / g.as_secs_f64(),
                    if *t <= g { "met" } else { "MISSED" }
                )
            });
            println!("  {name:<34} {:>12}{verdict}", ms(*t));
        }
    }
    drop(rvsd);
    print_idle(&idle, args.markdown);
    Ok(())
}

/// One idle-CPU measurement.
struct IdleRow {
    services: u32,
    conns: u32,
    /// ms of CPU per second of wall time.
    ms_per_s: f64,
}

/// CPU time rvsd's threads used so far, in ns: the sum of `/proc/PID/task/*/schedstat`'s
/// first field (ns, where `/proc/PID/stat`'s utime+stime count 10 ms ticks, too coarse
/// for an idle daemon over a few seconds). rvsd's threads are its two runtime workers and
/// the main thread, alive for the whole window.
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let ns: u64 = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("parsing {}", path.display()))?;
        total += ns;
    }
    Ok(total)
}

/// Idle rvsd CPU at 1 and 10 000 services (and 100 000 with `--full`) × 3 real servers,
/// with no connections and with `--idle-conns`; a fresh rvsd and namespace each, the same
/// map sizes for all.
fn idle_rows(rvsd_bin: &Path, args: &ControlBenchArgs) -> Result<Vec<IdleRow>> {
    let mut sizes = vec![1, 10_000];
    if args.full {
        sizes.push(100_000);
    }
    let limits = if args.full {
        "[limits]\nservices = 131072\nreals = 524288\n"
    } else {
        ""
    };
    let window = Duration::from_secs(args.idle_secs.max(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &services in &sizes {
        for conns in [0, args.idle_conns] {
            let ns = Netns::new(&format!("{}-idle", rvs_lab::unique_prefix()))?;
            let pin = PathBuf::from(format!("/sys/fs/bpf/{}", ns.name()));
            let config = format!("[daemon]\npin_path = \"{}\"\n{limits}", pin.display());
            let rvsd = Rvsd::start(&ns, rvsd_bin, &config, &pin)?;
            let client = Client::new(rvsd.socket());
            rt.block_on(client.apply(batch(services, 3)))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if conns > 0 {
                let n = rvs_dataplane::inspect::fill_pinned_conns(&pin, conns)?;
                ensure!(n == conns, "only {n} connections written");
            }
            // Past the work a change starts (a route per VIP, the first rate rounds and
            // connection scans): 5 s, and 1 s more per 5 000 services.
            std::thread::sleep(Duration::from_secs(5 + u64::from(services / 5_000)));
            let before = cpu_ns(rvsd.pid())?;
            let started = Instant::now();
            std::thread::sleep(window);
            let used = cpu_ns(rvsd.pid())?.saturating_sub(before);
            let ms_per_s = used as f64 / 1e6 / started.elapsed().as_secs_f64();
            eprintln!("idle rvsd: {services} services, {conns} connections: {ms_per_s:.2} ms/s");
            rows.push(IdleRow {
                services,
                conns,
                ms_per_s,
            });
            drop(rvsd);
        }
    }
    Ok(rows)
}

fn print_idle(rows: &[IdleRow], markdown: bool) {
    let base = |conns: u32| {
        rows.iter()
            .find(|r| r.services == 1 && r.conns == conns)
            .map(|r| r.ms_per_s)
    };
    let title = "rvsd idle CPU (ms of CPU per second of wall time), × 3 real servers each";
    if markdown {
        println!(
            "\n{title}\n\n| services | connections | CPU ms/s | ratio to 1 service |\n|---:|---:|---:|---:|"
        );
    } else {
        println!("{title}");
    }
    for r in rows {
        let ratio = base(r.conns)
            .filter(|b| *b > 0.0)
            .map_or("-".to_owned(), |b| format!("{:.1}×", r.ms_per_s / b));
        if markdown {
            println!(
                "| {} | {} | {:.2} | {ratio} |",
                r.services, r.conns, r.ms_per_s
            );
        } else {
            println!(
                "  {:>7} services, {:>7} connections: {:>8.2} ms/s  ({ratio} of 1 service)",
                r.services, r.conns, r.ms_per_s
            );
        }
    }
}

/// Times `rvsadm -L -n --stats` (the whole listing, every counter).
fn list(rvsadm: &Path, socket: &Path) -> Result<Duration> {
    let started = Instant::now();
    let out = Command::new(rvsadm)
        .args(["--socket"])
        .arg(socket)
        .args(["-L", "-n", "--stats"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {}", rvsadm.display()))?;
    let took = started.elapsed();
    ensure!(
        out.status.success(),
        "rvsadm -L -n --stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

/// Times `rvsadm -R` fed `rules` on stdin.
fn restore(rvsadm: &Path, socket: &Path, rules: &str) -> Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new(rvsadm)
        .args(["--socket"])
        .arg(socket)
        .arg("-R")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", rvsadm.display()))?;
    child
        .stdin
        .take()
        .context("rvsadm stdin")?
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    let took = started.elapsed();
    ensure!(
        out.status.success(),
        "rvsadm -R failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}
