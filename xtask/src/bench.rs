//! `cargo xtask bench`: the per-packet cost of the balancer (`rvs_xdp`) beside the
//! connection-table floor (`rvs_xdp_ref_conn`: parse + one 5-tuple lookup in the same
//! RVS_CONNS + MAC rewrite + XDP_TX) and XDP_PASS, all measured in the same run with the
//! kernel's BPF_PROG_TEST_RUN, at 1 to 100 000 services and 1 to 1 000 000 connections.
//!
//! # Method
//!
//! - Everything runs inside a [`FibNs`] namespace (the balancer asks the kernel's FIB for
//!   the real server's MAC), on frames "received" on `a0`, with the dataplanes' maps pinned
//!   under `/sys/fs/bpf/rvs-bench-<pid>/`. The namespace and the pins are removed on return,
//!   also on error; a killed run's leftovers are removed by the next run.
//! - One testbed (a loaded dataplane, same map sizes for all) per row of the table: for each
//!   service count, `services` TCP services, each on its own VIP (198.18.64.0 + i, port 80)
//!   with two direct-routing real servers of `SEG_A` (wrr 2:1); for each connection count,
//!   the connection table filled from userspace with valid established entries (flows
//!   spread over the services, pointing at the planner's real-server ids and generations,
//!   `last_seen` = now on CLOCK_MONOTONIC_COARSE, the clock the XDP program reads).
//!   All testbeds stay loaded so that each round measures every row back to back.
//! - The reference (connection-table floor) looks the 5-tuple up in the testbed's own
//!   `RVS_CONNS`, so it sees the same table size and fill: the comparison isolates what rvs
//!   does beyond one connection lookup. The empty `rvs_xdp_pass` runs in the same round on
//!   the same frames: the floor for a packet rvs hands to the kernel, and what a single run
//!   costs without any program work (subtracted for the new-flow "program work").
//! - **Established flow** and **non-service packet**: one frame repeated `--repeat` times per
//!   call; the kernel reports the mean time per run (in whole nanoseconds).
//! - **New flow**: BPF_PROG_TEST_RUN repeats one frame, so a repeated SYN would find its own
//!   connection entry from the second run on and measure the established path. New flows
//!   are therefore timed over `--new-flows` *distinct* SYNs (distinct client address/port),
//!   one call each with repeat = 1, and the figure is the mean of the kernel-reported
//!   durations; the reference and XDP_PASS are timed over the same frames the same way. A
//!   single run's duration includes the kernel's clock reads, the same for every program:
//!   the new-flow target is on rvs's program work, rvs less XDP_PASS in the same round. The entries the SYNs create are deleted after each round,
//!   so every round starts from the same table.
//! - Each figure is the median (and minimum) of `--rounds` rounds. In a round, every row
//!   runs the three programs back to back (rotating which goes first), then the next row,
//!   so drift of a noisy machine's speed hits a round's figures alike. The ratios are
//!   medians over the rounds of rvs / reference and rvs / XDP_PASS within the round, and
//!   the growth of each case's cost across scales the median over the rounds of scale /
//!   baseline.
//! - The harness floor, the empty `rvs_xdp_pass` program timed the same two ways, is
//!   printed too: it is part of every figure, so readers can compare the programs' own work.
//! - Nothing is timed on the wrong path: each case is run once and its verdict checked before
//!   timing (established → XDP_TX, non-service → XDP_PASS, new flow → XDP_TX), and every
//!   timed call is checked again, for rvs through its per-verdict counters (e.g. exactly
//!   `repeat` more `fwd_established`). A mismatch aborts the bench.
//!
//! These are benchmarks, not tests: missed targets are reported, not failed.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use rvs_common::{ConnEntry, ConnState, FlowKey, IPPROTO_TCP, Verdict, csum, programs};
use rvs_config::{Config, Limits, Protocol, RealServer, Scheduler, ServiceId, VirtualService};
use rvs_dataplane::{Dataplane, testrun::run_xdp};
use rvs_lab::fib::{A0_MAC, FibNs, SEG_A};

/// Options of `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Runs per BPF_PROG_TEST_RUN call for the repeated-frame cases (established flow,
    /// non-service packet) [default: 1000000; 20000 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_REPEAT))]
    repeat: Option<u32>,
    /// Distinct SYN frames per round for the new-flow case [default: 100000; 2000 with
    /// --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_NEW_FLOWS))]
    new_flows: Option<u32>,
    /// Interleaved rounds per figure; the median and the minimum are reported [default: 5;
    /// 3 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_ROUNDS))]
    rounds: Option<u32>,
    /// Small numbers everywhere (1 and 100 services, 1 and 10000 connections) for a smoke
    /// test; explicit --repeat/--new-flows/--rounds still apply.
    #[arg(long)]
    quick: bool,
    /// Print the results as Markdown (for the README).
    #[arg(long)]
    markdown: bool,
    /// Only the per-packet table (established, non-service, new flow) and its growth: no
    /// forwarding methods, schedulers or sync events; for quick before/after comparisons.
    #[arg(long)]
    fast_path: bool,
    /// Service counts of the rows, comma-separated, instead of the run's defaults.
    #[arg(long, value_name = "N,..", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=MAX_SERVICES as i64))]
    services: Vec<u32>,
    /// Connection-table fills of the rows, comma-separated, instead of the run's defaults.
    #[arg(long, value_name = "N,..", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=MAX_FILL))]
    conns: Vec<u32>,
}

/// Most connections `--conns` may pre-fill.
const MAX_FILL: i64 = 4_000_000;

/// Upper bounds on the options, so a typo cannot start a run of hours.
const MAX_REPEAT: i64 = 100_000_000;
const MAX_NEW_FLOWS: i64 = 1_000_000;
const MAX_ROUNDS: i64 = 101;

/// XDP actions (uapi `enum xdp_action`).
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// TCP flags of the frames sent.
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Source MAC of every input frame.
const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Service `i` listens on `VIP_BASE + i`, port [`VIP_PORT`] (room for 114 688 services
/// below [`CLIENT_BASE`]; the lab's own links use 198.18.2.0/24 and 198.18.4.0/24).
const VIP_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 64, 0);
const VIP_PORT: u16 = 80;
/// A destination with no service (nor a port-0 one) behind it.
const NO_SERVICE_VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 1);
/// Clients: 198.19.200.0–198.19.255.255, ports 1024–65535.
const CLIENT_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 200, 0);
const CLIENT_ADDRS: u64 = 56 * 256;
const CLIENT_PORT_MIN: u16 = 1024;
const CLIENT_PORTS: u64 = 65_536 - CLIENT_PORT_MIN as u64;
/// Flow numbers of the new-flow SYNs start here, above every pre-filled connection.
const NEW_FLOW_BASE: u64 = 1 << 24;
/// Most services the VIP range holds.
const MAX_SERVICES: u32 = 114_688;
/// Spare connection-table room, so the LRU never evicts (its per-CPU free lists make it
/// evict a little before it is full).
const CONN_MARGIN: u32 = 65_536;

/// The resolved options.
#[derive(Debug, Clone)]
struct Options {
    repeat: u32,
    new_flows: u32,
    rounds: u32,
    /// Service counts, ascending.
    services: Vec<u32>,
    /// Connection-table fills, ascending; one testbed (and row) per (services, conns).
    conns: Vec<u32>,
    markdown: bool,
    /// Only the per-packet table (`--fast-path`).
    fast_path: bool,
}

impl Options {
    /// The options with the defaults of a full or a `--quick` run filled in (clap has
    /// already checked the bounds).
    fn from_args(args: &BenchArgs) -> Options {
        let (repeat, new_flows, rounds, services, conns) = if args.quick {
            (20_000, 2_000, 3, vec![1, 100], vec![1, 10_000])
        } else {
            (
                1_000_000,
                100_000,
                5,
                vec![1, 1_000, 100_000],
                vec![1, 1_000_000],
            )
        };
        let pick = |given: &[u32], default: Vec<u32>| {
            if given.is_empty() {
                default
            } else {
                let mut v = given.to_vec();
                v.sort_unstable();
                v.dedup();
                v
            }
        };
        Options {
            repeat: args.repeat.unwrap_or(repeat),
            new_flows: args.new_flows.unwrap_or(new_flows),
            rounds: args.rounds.unwrap_or(rounds),
            services: pick(&args.services, services),
            conns: pick(&args.conns, conns),
            markdown: args.markdown,
            fast_path: args.fast_path,
        }
    }

    /// Map capacities big enough for the largest row without LRU evictions.
    fn limits(&self) -> Limits {
        let max_conns = self.conns.iter().copied().max().unwrap_or(1);
        Limits {
            services: 131_072,
            connections: max_conns + self.new_flows + CONN_MARGIN,
            ..Limits::default()
        }
    }
}

/// Runs the benchmark and prints the table (see the module documentation for the method).
pub fn run(args: BenchArgs) -> Result<()> {
    let opts = Options::from_args(&args);
    // SAFETY: plain syscall.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "cargo xtask bench needs root (network namespace, BPF programs and bpffs pins)"
    );
    rvs_dataplane::ensure_bpffs()?;
    remove_stale_pin_dirs();
    let started = Instant::now();
    let fib = FibNs::new().context("creating the benchmark namespace")?;
    let pin_root = PathBuf::from(format!("{PIN_PREFIX}{}", std::process::id()));
    // Clients sit behind a router on a0 (one-armed): NAT replies are routed back there.
    fib.ns()
        .exec(&["ip", "route", "add", "198.19.0.0/16", "via", "198.18.2.11"])
        .context("client route for the NAT reply case")?;
    scheds::prepare(&fib)?;
    let (floor, rows, sync, methods, scheds) = fib.ns().run(|| -> Result<_> {
        let (floor, rows, sync) = measure(&opts, &pin_root)?;
        if opts.fast_path {
            return Ok((floor, rows, sync, None, None));
        }
        let methods = methods::measure(&opts, &pin_root)?;
        let scheds = scheds::measure(&opts, &pin_root)?;
        Ok((floor, rows, sync, Some(methods), Some(scheds)))
    })??;
    drop(fib);
    let report = Report {
        opts: &opts,
        floor,
        rows: &rows,
        methods: methods.as_ref(),
        scheds: scheds.as_deref(),
        wall_secs: started.elapsed().as_secs_f64(),
    };
    print!("{}", report.render());
    let Some(sync) = sync else {
        return Ok(());
    };
    println!(
        "\nNew flow with the sync MASTER's connection events on vs off ({} services, {} SYNs per \
         pass, {} rounds, same run): on {} ns, off {} ns (min / median): {:+.1} % (target <= +10 %)",
        rows[0].services,
        opts.new_flows.min(20_000),
        opts.rounds,
        min_median(&sync.rvs()),
        min_median(&sync.reference()),
        (sync.ratio() - 1.0) * 100.0
    );
    Ok(())
}

/// Every pin directory of a run is under `<PIN_PREFIX><pid>`, one subdirectory per testbed.
const PIN_PREFIX: &str = "/sys/fs/bpf/rvs-bench-";

/// Removes the pin directories of earlier bench runs whose process is gone (killed runs).
fn remove_stale_pin_dirs() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(pid) = path.to_str().and_then(|p| p.strip_prefix(PIN_PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            drop(PinRoot(path));
        }
    }
}

/// Removes a run's pin root and every testbed directory under it when dropped.
struct PinRoot(PathBuf);

impl Drop for PinRoot {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for entry in entries.flatten() {
                drop(PinDir(entry.path()));
            }
        }
        if let Err(e) = rvs_dataplane::cleanup(&self.0) {
            tracing::error!("cleaning up {}: {e}", self.0.display());
        }
    }
}

/// Unpins everything under one testbed's directory when dropped.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = rvs_dataplane::cleanup(&self.0) {
            tracing::error!("cleaning up {}: {e}", self.0.display());
        }
    }
}

/// One row of results: a service count and a connection-table fill.
#[derive(Debug, Clone)]
struct Row {
    services: u32,
    conns: u32,
    established: Figure,
    non_service: Figure,
    new_flow: Figure,
}

/// Loads one testbed per (services, connections) pair (inside the namespace), then measures
/// each case on all of them round by round, so drift of the machine's speed hits every
/// row of a round alike and rows can be compared round by round.
fn measure(opts: &Options, pin_root: &Path) -> Result<(Floor, Vec<Row>, Option<Figure>)> {
    let _root = PinRoot(pin_root.to_owned());
    let mut beds = Vec::new();
    for &services in &opts.services {
        for &conns in &opts.conns {
            let dir = pin_root.join(format!("{services}-services-{conns}-conns"));
            beds.push(Testbed::new(dir, opts.limits(), services, conns)?);
        }
    }
    let floor = harness_floor(&mut beds[0], opts)?;
    let established = established(&mut beds, opts)?;
    let non_service = non_service(&mut beds, opts)?;
    let new_flow = new_flow(&mut beds, opts)?;
    let sync = if opts.fast_path {
        None
    } else {
        Some(sync_events::measure(&mut beds[0], opts)?)
    };
    let rows = beds
        .iter()
        .zip(established.into_iter().zip(non_service).zip(new_flow))
        .map(|(bed, ((established, non_service), new_flow))| Row {
            services: bed.services() as u32,
            conns: bed.conns,
            established,
            non_service,
            new_flow,
        })
        .collect();
    Ok((floor, rows, sync))
}

/// What the harness itself costs per run (see [`harness_floor`]).
#[derive(Debug, Clone, Copy)]
struct Floor {
    /// One frame repeated `--repeat` times.
    repeated: Stats,
    /// Distinct frames, one run each.
    single: Stats,
}

/// The harness floor: the empty `rvs_xdp_pass` program timed exactly like the cases (an
/// established-flow frame repeated, and the new-flow SYNs one run each). Part of every
/// figure, for both programs; a single run also pays the kernel's clock reads.
fn harness_floor(bed: &mut Testbed, opts: &Options) -> Result<Floor> {
    let want = Want {
        case: "harness floor",
        action: XDP_PASS,
        verdict: Verdict::PassNotService,
        ref_action: XDP_PASS,
    };
    let repeated = [bed.flow(0).frame(TCP_ACK)];
    let (single, _) = bed.new_flows(opts.new_flows);
    let mut measure = |frames: &[Vec<u8>], repeat| -> Result<Stats> {
        let samples = (0..opts.rounds)
            .map(|_| bed.measure(Prog::Pass, frames, repeat, &want))
            .collect::<Result<Vec<f64>>>()?;
        tracing::debug!("harness floor, repeat {repeat}: {samples:.1?}");
        Ok(Stats::of(samples))
    };
    Ok(Floor {
        repeated: measure(&repeated, opts.repeat)?,
        single: measure(&single, 1)?,
    })
}

/// Established flow: an ACK of flow 0, whose entry is in the table, repeated.
fn established(beds: &mut [Testbed], opts: &Options) -> Result<Vec<Figure>> {
    let want = Want {
        case: "established flow",
        action: XDP_TX,
        verdict: Verdict::FwdEstablished,
        ref_action: XDP_TX,
    };
    let mut frames = Vec::new();
    for bed in beds.iter_mut() {
        let frame = bed.flow(0).frame(TCP_ACK);
        let out = bed.probe(&frame, &want)?;
        ensure!(
            out[..6] == bed.backend(0).mac && out[6..12] == A0_MAC,
            "established flow: frame not rewritten towards its real server ({:02x?})",
            &out[..12]
        );
        frames.push(vec![frame]);
    }
    compare(
        beds,
        &frames,
        opts.repeat,
        opts.rounds,
        &want,
        |_, _| Ok(()),
    )
}

/// Non-service packet: TCP to an address without a service, repeated.
fn non_service(beds: &mut [Testbed], opts: &Options) -> Result<Vec<Figure>> {
    let want = Want {
        case: "non-service packet",
        action: XDP_PASS,
        verdict: Verdict::PassNotService,
        ref_action: XDP_PASS,
    };
    let frame = tcp_frame(client(0), (NO_SERVICE_VIP, VIP_PORT), TCP_ACK);
    for bed in beds.iter_mut() {
        bed.probe(&frame, &want)?;
    }
    let frames = vec![vec![frame]; beds.len()];
    compare(
        beds,
        &frames,
        opts.repeat,
        opts.rounds,
        &want,
        |_, _| Ok(()),
    )
}

/// New flow: `--new-flows` distinct SYNs, one run each (a repeated SYN would hit the entry
/// its first run created), the reference and XDP_PASS over the same frames; the entries created
/// are deleted after each round.
fn new_flow(beds: &mut [Testbed], opts: &Options) -> Result<Vec<Figure>> {
    let want = Want {
        case: "new flow",
        action: XDP_TX,
        verdict: Verdict::FwdNew,
        ref_action: XDP_PASS,
    };
    let (mut frames, mut keys) = (Vec::new(), Vec::new());
    for bed in beds.iter_mut() {
        let probe = bed.flow(NEW_FLOW_BASE - 1);
        bed.probe(&probe.frame(TCP_SYN), &want)?;
        bed.forget(&[probe.key()])?;
        let (f, k) = bed.new_flows(opts.new_flows);
        frames.push(f);
        keys.push(k);
    }
    compare(beds, &frames, 1, opts.rounds, &want, |bed, i| {
        bed.forget(&keys[i])
    })
}

/// `rounds` rounds; in each, every testbed `i` runs both programs back to back over
/// `frames[i]` (rvs first or second in turn); `after_rvs(bed, i)` restores what rvs changed.
fn compare(
    beds: &mut [Testbed],
    frames: &[Vec<Vec<u8>>],
    repeat: u32,
    rounds: u32,
    want: &Want,
    mut after_rvs: impl FnMut(&mut Testbed, usize) -> Result<()>,
) -> Result<Vec<Figure>> {
    let started = Instant::now();
    let mut figures = vec![Figure::default(); beds.len()];
    for round in 0..rounds {
        for (i, bed) in beds.iter_mut().enumerate() {
            let mut order = [Prog::Rvs, Prog::Reference, Prog::Pass];
            order.rotate_left((round as usize + i) % 3);
            for prog in order {
                let ns = bed.measure(prog, &frames[i], repeat, want)?;
                match prog {
                    Prog::Rvs => {
                        figures[i].rvs.push(ns);
                        after_rvs(bed, i)?;
                    }
                    Prog::Reference => figures[i].reference.push(ns),
                    Prog::Pass => figures[i].pass.push(ns),
                }
            }
        }
    }
    for (bed, f) in beds.iter().zip(&figures) {
        tracing::debug!(
            "{} ({} services, {} conns): rvs {:.1?}, reference {:.1?}, pass {:.1?}",
            want.case,
            bed.services(),
            bed.conns,
            f.rvs,
            f.reference,
            f.pass
        );
    }
    tracing::info!(
        "{}: measured in {:.1} s",
        want.case,
        started.elapsed().as_secs_f64()
    );
    Ok(figures)
}

/// The programs compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prog {
    /// The balancer.
    Rvs,
    /// The connection-table floor: parse + one RVS_CONNS lookup + MACs + XDP_TX.
    Reference,
    /// An empty program (XDP_PASS): the harness's own cost per run.
    Pass,
}

impl Prog {
    fn name(self) -> &'static str {
        match self {
            Prog::Rvs => programs::BALANCER,
            Prog::Reference => programs::REF_CONN,
            Prog::Pass => programs::PASS,
        }
    }
}

/// What a case must do, for each program.
struct Want {
    case: &'static str,
    /// rvs's action.
    action: u32,
    /// rvs's verdict counter that each run must bump (only rvs counts verdicts).
    verdict: Verdict,
    /// The reference's action (XDP_PASS when the tuple has no connection entry).
    ref_action: u32,
}

impl Want {
    fn action(&self, prog: Prog) -> u32 {
        match prog {
            Prog::Rvs => self.action,
            Prog::Reference => self.ref_action,
            Prog::Pass => XDP_PASS,
        }
    }
}

/// Minimum and median of the rounds of one program, in ns per packet.
#[derive(Debug, Clone, Copy)]
struct Stats {
    min: f64,
    median: f64,
}

impl Stats {
    fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        Stats {
            min: samples[0],
            median,
        }
    }
}

/// One case at one scale: the per-round ns/packet of rvs, the reference and XDP_PASS.
#[derive(Debug, Clone, Default)]
struct Figure {
    rvs: Vec<f64>,
    reference: Vec<f64>,
    pass: Vec<f64>,
}

impl Figure {
    fn rvs(&self) -> Stats {
        Stats::of(self.rvs.clone())
    }

    fn reference(&self) -> Stats {
        Stats::of(self.reference.clone())
    }

    fn pass(&self) -> Stats {
        Stats::of(self.pass.clone())
    }

    /// Median over the rounds of rvs / reference within the round (they ran back to back,
    /// so this is steadier than a ratio of medians when the machine's speed drifts).
    fn ratio(&self) -> f64 {
        paired_median(&self.rvs, &self.reference)
    }

    /// Median over the rounds of rvs / XDP_PASS within the round.
    fn ratio_to_pass(&self) -> f64 {
        paired_median(&self.rvs, &self.pass)
    }

    /// Median over the rounds of rvs − XDP_PASS within the round: the program's own work.
    fn work(&self) -> f64 {
        Stats::of(
            self.rvs
                .iter()
                .zip(&self.pass)
                .map(|(r, p)| r - p)
                .collect(),
        )
        .median
    }
}

/// Median over the rounds of `a[r] / b[r]`.
fn paired_median(a: &[f64], b: &[f64]) -> f64 {
    Stats::of(a.iter().zip(b).map(|(a, b)| a / b).collect()).median
}

/// A real server as the connection entries point at it.
#[derive(Debug, Clone, Copy)]
struct Backend {
    service: u32,
    real: u32,
    generation: u32,
    mac: [u8; 6],
}

/// A flow numbered `n`: client `n` to service `n % services`.
struct Flow {
    client: (Ipv4Addr, u16),
    vip: (Ipv4Addr, u16),
}

impl Flow {
    fn key(&self) -> FlowKey {
        FlowKey {
            src: u32::from_ne_bytes(self.client.0.octets()),
            dst: u32::from_ne_bytes(self.vip.0.octets()),
            sport: self.client.1.to_be(),
            dport: self.vip.1.to_be(),
            proto: u32::from(IPPROTO_TCP),
        }
    }

    fn frame(&self, tcp_flags: u8) -> Vec<u8> {
        tcp_frame(self.client, self.vip, tcp_flags)
    }
}

/// Client address and port of flow number `n` (distinct for every `n` below
/// `CLIENT_ADDRS * CLIENT_PORTS`, all inside 198.19.200.0–198.19.255.255).
fn client(n: u64) -> (Ipv4Addr, u16) {
    debug_assert!(n < CLIENT_ADDRS * CLIENT_PORTS);
    let addr = u32::from(CLIENT_BASE) + (n / CLIENT_PORTS) as u32;
    let port = CLIENT_PORT_MIN + (n % CLIENT_PORTS) as u16;
    (Ipv4Addr::from(addr), port)
}

/// Address of service `i`.
fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(VIP_BASE) + i)
}

/// `services` TCP services on their own VIPs, each with two direct-routing real servers on
/// a0's segment, wrr 2:1.
fn bench_config(services: u32, limits: Limits) -> Config {
    let real = |i: usize, weight| {
        let mut real = RealServer::new(SEG_A[i].0);
        real.weight = weight;
        real
    };
    Config {
        limits,
        services: (0..services)
            .map(|i| {
                let mut svc = VirtualService::new(Protocol::Tcp, vip(i), VIP_PORT);
                svc.scheduler = Scheduler::Wrr;
                svc.reals = vec![real(0, 2), real(1, 1)];
                svc
            })
            .collect(),
        ..Config::default()
    }
}

/// A loaded dataplane with the bench's services and connections, inside the namespace.
struct Testbed {
    dp: Dataplane,
    /// Ingress interface of every frame.
    a0: u32,
    /// By service index: the two real servers.
    backends: Vec<[Backend; 2]>,
    /// Flows `0..conns` are in the connection table.
    conns: u32,
    /// Unpins the maps once `dp` is dropped (fields drop in order).
    _pins: PinDir,
}

impl Testbed {
    /// Loads the programs pinned under `pin_dir`, applies `services` services, reads back
    /// the ids they got and fills the connection table with `conns` established flows.
    fn new(pin_dir: PathBuf, limits: Limits, services: u32, conns: u32) -> Result<Testbed> {
        ensure!(
            (1..=MAX_SERVICES).contains(&services),
            "service count must be 1..={MAX_SERVICES}"
        );
        // SAFETY: NUL-terminated name; if_nametoindex only reads it.
        let a0 = unsafe { libc::if_nametoindex(c"a0".as_ptr()) };
        ensure!(a0 != 0, "no a0 link in the benchmark namespace");
        let started = Instant::now();
        let pins = PinDir(pin_dir);
        let mut dp = Dataplane::load(&pins.0, limits).context("loading the dataplane")?;
        let config = bench_config(services, limits);
        let plan = dp.apply(&config).context("applying the bench services")?;
        let generations: std::collections::HashMap<u32, u32> = plan
            .reals
            .iter()
            .map(|(id, e)| (*id, e.generation))
            .collect();
        let planner = dp.planner();
        let mut backends = Vec::with_capacity(services as usize);
        for svc in &config.services {
            let sid: ServiceId = svc.id();
            let service = planner
                .service_entry(&sid)
                .with_context(|| format!("service {sid} was not planned"))?
                .id;
            let backend = |i: usize| -> Result<Backend> {
                let (addr, mac) = SEG_A[i];
                let real = planner
                    .real_id(&sid, addr, VIP_PORT)
                    .with_context(|| format!("real server {addr} of {sid} was not planned"))?;
                let generation = *generations
                    .get(&real)
                    .with_context(|| format!("real server id {real} was not written"))?;
                Ok(Backend {
                    service,
                    real,
                    generation,
                    mac,
                })
            };
            backends.push([backend(0)?, backend(1)?]);
        }
        let mut bed = Testbed {
            dp,
            a0,
            backends,
            conns: 0,
            _pins: pins,
        };
        bed.fill_conns(conns)?;
        tracing::info!(
            "testbed with {services} services and {conns} connections ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(bed)
    }

    fn services(&self) -> u64 {
        self.backends.len() as u64
    }

    /// Flow number `n`: client `n`, service `n % services`.
    fn flow(&self, n: u64) -> Flow {
        Flow {
            client: client(n),
            vip: (vip((n % self.services()) as u32), VIP_PORT),
        }
    }

    /// The SYN frames of `count` new flows (distinct clients, spread over the services) and
    /// the connection keys they create.
    fn new_flows(&self, count: u32) -> (Vec<Vec<u8>>, Vec<FlowKey>) {
        (0..u64::from(count))
            .map(|i| {
                let flow = self.flow(NEW_FLOW_BASE + i);
                (flow.frame(TCP_SYN), flow.key())
            })
            .unzip()
    }

    /// The real server pre-filled flow `n` is bound to (alternating between the two).
    fn backend(&self, n: u64) -> Backend {
        let services = self.services();
        self.backends[(n % services) as usize][((n / services) % 2) as usize]
    }

    /// Fills the connection table with established flows `conns..target`.
    fn fill_conns(&mut self, target: u32) -> Result<()> {
        ensure!(
            u64::from(target) < NEW_FLOW_BASE,
            "at most {NEW_FLOW_BASE} pre-filled connections"
        );
        let now = monotonic_coarse_ns();
        for n in self.conns..target {
            let n = u64::from(n);
            let b = self.backend(n);
            let entry = ConnEntry {
                last_seen: now,
                real: b.real,
                real_gen: b.generation,
                service: b.service,
                ifindex: self.a0,
                dmac: b.mac,
                smac: A0_MAC,
                state: ConnState::Established as u8,
                // Frames of any size fit: no MTU lookup on the measured path.
                fits: u16::MAX,
                ..ConnEntry::default()
            };
            let key = self.flow(n).key();
            self.dp
                .conns_mut()
                .insert(key, entry, 0)
                .with_context(|| format!("pre-filling connection {n}"))?;
        }
        self.conns = self.conns.max(target);
        Ok(())
    }

    /// Deletes connection entries the new-flow SYNs created.
    fn forget(&mut self, keys: &[FlowKey]) -> Result<()> {
        for key in keys {
            self.dp.conns_mut().remove(key).context(
                "deleting a new flow's connection entry (missing: did the LRU table evict it?)",
            )?;
        }
        Ok(())
    }

    fn verdict_count(&self, verdict: Verdict) -> Result<u64> {
        Ok(self
            .dp
            .verdicts()?
            .into_iter()
            .find(|(v, _)| *v == verdict)
            .map_or(0, |(_, n)| n))
    }

    /// One BPF_PROG_TEST_RUN call of `prog` on `frame`, checked against `want`.
    fn run(
        &mut self,
        prog: Prog,
        frame: &[u8],
        repeat: u32,
        want: &Want,
    ) -> Result<rvs_dataplane::testrun::XdpRun> {
        let a0 = self.a0;
        let program = self.dp.xdp_program(prog.name())?;
        let out = run_xdp(program, frame, a0, repeat)
            .with_context(|| format!("BPF_PROG_TEST_RUN of {}", prog.name()))?;
        if out.action != want.action(prog) {
            bail!(
                "{}: {} returned action {} instead of {}; refusing to time the wrong path",
                want.case,
                prog.name(),
                out.action,
                want.action(prog)
            );
        }
        Ok(out)
    }

    /// Runs `prog` over `frames`, each `repeat` times, checking every action and (rvs) that
    /// `want.verdict` was counted once per run; returns the mean kernel-reported ns per run.
    fn measure(&mut self, prog: Prog, frames: &[Vec<u8>], repeat: u32, want: &Want) -> Result<f64> {
        let counts = prog == Prog::Rvs;
        let before = if counts {
            self.verdict_count(want.verdict)?
        } else {
            0
        };
        let mut total_ns = 0u64;
        for frame in frames {
            total_ns += self.run(prog, frame, repeat, want)?.ns_per_run;
        }
        if counts {
            let counted = self.verdict_count(want.verdict)? - before;
            let runs = frames.len() as u64 * u64::from(repeat);
            ensure!(
                counted == runs,
                "{}: {counted} of {runs} runs were counted as {}; refusing to report them",
                want.case,
                want.verdict.name()
            );
        }
        Ok(total_ns as f64 / frames.len() as f64)
    }

    /// Runs one frame through both programs once and checks the verdicts; returns rvs's
    /// output frame.
    fn probe(&mut self, frame: &[u8], want: &Want) -> Result<Vec<u8>> {
        let frames = [frame.to_vec()];
        self.measure(Prog::Reference, &frames, 1, want)?;
        self.measure(Prog::Pass, &frames, 1, want)?;
        let before = self.verdict_count(want.verdict)?;
        let out = self.run(Prog::Rvs, frame, 1, want)?;
        ensure!(
            self.verdict_count(want.verdict)? == before + 1,
            "{}: rvs did not count {}",
            want.case,
            want.verdict.name()
        );
        Ok(out.frame)
    }
}

/// CLOCK_MONOTONIC_COARSE in ns: the clock of `bpf_ktime_get_coarse_ns`.
fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// An Ethernet/IPv4/TCP frame from the client to a0, no payload, valid checksums.
pub(crate) fn tcp_frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
    const IP: usize = 14;
    const TCP: usize = IP + 20;
    let mut f = Vec::with_capacity(TCP + 20);
    f.extend_from_slice(&A0_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    // IPv4: version 4, IHL 5, total length 40, DF, TTL 64.
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
    f.extend_from_slice(&src.0.octets());
    f.extend_from_slice(&dst.0.octets());
    let ip_sum = csum::checksum(&f[IP..TCP]);
    f[IP + 10..IP + 12].copy_from_slice(&ip_sum.to_ne_bytes());
    let ack_no: u32 = if flags & TCP_ACK != 0 { 1 } else { 0 };
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&1000u32.to_be_bytes());
    f.extend_from_slice(&ack_no.to_be_bytes());
    f.extend_from_slice(&[5 << 4, flags]);
    f.extend_from_slice(&64240u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    // Pseudo header: addresses, protocol, TCP length.
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.0.octets());
    pseudo[4..8].copy_from_slice(&dst.0.octets());
    pseudo[9] = IPPROTO_TCP;
    pseudo[10..].copy_from_slice(&20u16.to_be_bytes());
    let tcp_sum = !csum::fold(csum::sum_bytes(&pseudo) + csum::sum_bytes(&f[TCP..]));
    f[TCP + 16..TCP + 18].copy_from_slice(&tcp_sum.to_ne_bytes());
    f
}

/// The printed results.
struct Report<'a> {
    opts: &'a Options,
    floor: Floor,
    rows: &'a [Row],
    /// None with `--fast-path`.
    methods: Option<&'a methods::Methods>,
    /// None with `--fast-path`.
    scheds: Option<&'a [scheds::SchedFigure]>,
    wall_secs: f64,
}

/// Target for the established flow: at most this many times the connection-table floor.
const TARGET_RATIO: f64 = 1.25;
/// Target for a packet for no service: at most this many times XDP_PASS.
const TARGET_PASS_RATIO: f64 = 2.0;
/// Target for a new flow's program work (rvs less XDP_PASS, single runs), in ns.
const TARGET_NEW_FLOW_NS: f64 = 300.0;
/// Target for the growth of the established-flow cost across scales.
const TARGET_GROWTH: f64 = 0.10;

impl Report<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        let md = self.opts.markdown;
        let o = self.opts;
        let _ = writeln!(
            out,
            "{}rvs XDP cost per packet, BPF_PROG_TEST_RUN (kernel {}, {} CPUs{})\n",
            if md { "### " } else { "" },
            kernel_release(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model().map_or(String::new(), |m| format!(", {m}")),
        );
        let _ = writeln!(
            out,
            "ns/packet as min / median of {} interleaved rounds; repeat {} for the repeated \
             frames, {} distinct SYNs per round for new flows. Ratio and growth are medians \
             over the rounds of figures measured in the same round (rvs / reference, rvs / \
             XDP_PASS, scale / baseline).\n",
            o.rounds, o.repeat, o.new_flows
        );
        let f = &self.floor;
        let _ = writeln!(
            out,
            "Harness floor, included in every figure (empty XDP program, same harness): {} ns \
             repeated, {} ns single run.\n",
            min_median(&f.repeated),
            min_median(&f.single)
        );
        self.table(&mut out);
        out.push('\n');
        self.growth(&mut out);
        out.push('\n');
        if let Some(methods) = self.methods {
            methods::render(&mut out, self.opts, methods);
            out.push('\n');
        }
        if let Some(scheds) = self.scheds {
            scheds::render(&mut out, self.opts, scheds);
            out.push('\n');
        }
        self.notes(&mut out);
        let _ = writeln!(out, "\nwall time: {:.0} s", self.wall_secs);
        out
    }

    fn table(&self, out: &mut String) {
        let header = [
            "services",
            "connections",
            "case",
            "rvs ns",
            "reference ns",
            "XDP_PASS ns",
            "rvs / reference",
            "target",
        ];
        let mut lines: Vec<[String; 8]> = Vec::new();
        for r in self.rows {
            for (case, fig) in [
                ("established flow", &r.established),
                ("non-service packet", &r.non_service),
                ("new flow (distinct SYNs)", &r.new_flow),
            ] {
                lines.push([
                    r.services.to_string(),
                    r.conns.to_string(),
                    case.into(),
                    min_median(&fig.rvs()),
                    min_median(&fig.reference()),
                    min_median(&fig.pass()),
                    format!("{:.2}×", fig.ratio()),
                    target(case, fig),
                ]);
            }
        }
        write_table(out, self.opts.markdown, &header, &lines);
    }

    /// The row at (services, conns).
    fn row(&self, services: u32, conns: u32) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.services == services && r.conns == conns)
    }

    /// Each case's growth from the smallest scale to the largest service count, connection
    /// count, and both (rvs's figure, and the reference's beside it).
    fn growth(&self, out: &mut String) {
        let o = self.opts;
        let (s0, s1) = (o.services[0], *o.services.last().unwrap_or(&o.services[0]));
        let (c0, c1) = (o.conns[0], *o.conns.last().unwrap_or(&o.conns[0]));
        let Some(base) = self.row(s0, c0) else {
            return;
        };
        let header = [
            "growth",
            "case",
            "rvs ns (median)",
            "growth",
            "reference ns (median)",
            "target",
        ];
        let mut lines = Vec::new();
        for (what, row) in [
            (
                format!("{s0} → {s1} services ({c0} conn.)"),
                self.row(s1, c0),
            ),
            (
                format!("{c0} → {c1} connections ({s0} svc.)"),
                self.row(s0, c1),
            ),
            (format!("both ({s1} svc., {c1} conn.)"), self.row(s1, c1)),
        ] {
            let Some(row) = row else { continue };
            for (case, from, to) in [
                ("established", &base.established, &row.established),
                ("non-service", &base.non_service, &row.non_service),
                ("new flow", &base.new_flow, &row.new_flow),
            ] {
                let g = paired_median(&to.rvs, &from.rvs) - 1.0;
                let gr = paired_median(&to.reference, &from.reference) - 1.0;
                lines.push([
                    what.clone(),
                    case.into(),
                    format!("{:.1} → {:.1}", from.rvs().median, to.rvs().median),
                    format!("{:+.1}%", g * 100.0),
                    format!(
                        "{:.1} → {:.1} ({:+.1}%)",
                        from.reference().median,
                        to.reference().median,
                        gr * 100.0
                    ),
                    format!(
                        "≤ {:.0}%: {}",
                        TARGET_GROWTH * 100.0,
                        verdict(g <= TARGET_GROWTH)
                    ),
                ]);
            }
        }
        write_table(out, self.opts.markdown, &header, &lines);
    }

    fn notes(&self, out: &mut String) {
        let bullet = if self.opts.markdown { "- " } else { "  " };
        let notes = [
            "reference = rvs_xdp_ref_conn, the connection-table floor: parse + one lookup of \
             the 5-tuple in the testbed's own RVS_CONNS (same size and fill) + MACs from the \
             entry + XDP_TX; it passes a tuple without entry (non-service, new flow).",
            "targets: established ≤ 1.25× the reference; non-service ≤ 2× XDP_PASS (rvs / \
             XDP_PASS in the same round); new flow: program work = rvs − XDP_PASS over the \
             same single runs ≤ 300 ns; every case ≤ 10% growth across scales.",
            "established / non-service: one frame repeated per call; the kernel reports the \
             mean per run in whole ns (1 ns resolution).",
            "new flow: test_run repeats one frame, so a repeated SYN would hit the entry its \
             first run created; instead each round times distinct SYNs (distinct client \
             address/port, spread over the services), one call each with repeat = 1, as the \
             mean kernel-reported duration, and the other programs over the same frames the \
             same way. A single run includes the kernel's clock reads (the same for all). \
             Created entries are deleted after each round.",
            "a repeated frame keeps its cache lines hot: growth across scales shows what \
             bigger maps cost a hot flow, not the cache misses of a real traffic mix; the \
             new-flow SYNs touch a different service each, so their growth does show misses.",
        ];
        let _ = writeln!(out, "Notes:");
        for n in notes {
            let _ = writeln!(out, "{bullet}{n}");
        }
    }
}

/// The target cell of a case.
fn target(case: &str, fig: &Figure) -> String {
    match case {
        "established flow" => format!(
            "≤ {TARGET_RATIO}× ref.: {}",
            verdict(fig.ratio() <= TARGET_RATIO)
        ),
        "non-service packet" => format!(
            "{:.2}× PASS (≤ {TARGET_PASS_RATIO:.0}×): {}",
            fig.ratio_to_pass(),
            verdict(fig.ratio_to_pass() <= TARGET_PASS_RATIO)
        ),
        _ => format!(
            "work {:.0} ns (≤ {TARGET_NEW_FLOW_NS:.0}): {}",
            fig.work(),
            verdict(fig.work() <= TARGET_NEW_FLOW_NS)
        ),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn min_median(s: &Stats) -> String {
    format!("{:.1} / {:.1}", s.min, s.median)
}

/// Writes a table as Markdown or as aligned plain text.
fn write_table<const N: usize>(
    out: &mut String,
    markdown: bool,
    header: &[&str; N],
    lines: &[[String; N]],
) {
    if markdown {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(N));
        for l in lines {
            let _ = writeln!(out, "| {} |", l.join(" | "));
        }
        return;
    }
    let mut widths = header.map(|h| h.chars().count());
    for l in lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for l in lines {
        line(l.iter().map(String::as_str).collect());
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// The forwarding methods side by side: an established flow forwarded by direct routing,
/// NAT (each direction) and TUN (each encapsulation), in one dataplane, timed the same way.
mod scheds;
mod sync_events;

mod methods {
    use super::*;

    /// NAT service (TCP, to SEG_A[1]:8080), TUN services (to SEG_A[2]: ipip, gue, gre), DR.
    const VIP_DR: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 1);
    const VIP_NAT: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 2);
    const VIP_TUN: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 3);
    const NAT_PORT: u16 = 8080;
    const TCP_SYNACK: u8 = 0x12;

    /// The key-layout measurement for IPv6: the connection-table floor with the 16-byte
    /// IPv4 key against a 40-byte family-tagged key (one frame repeated, rounds interleaved).
    #[derive(Debug, Clone)]
    pub struct KeyLayout {
        /// ns per packet, 16-byte key.
        pub v4: Stats,
        /// ns per packet, 40-byte tagged key.
        pub tagged: Stats,
        /// Median over rounds of tagged / v4.
        pub ratio: f64,
    }

    /// Results of this section.
    #[derive(Debug, Clone)]
    pub struct Methods {
        /// Per forwarding method.
        pub figures: Vec<MethodFigure>,
        /// The key layout measurement.
        pub keys: KeyLayout,
    }

    /// One case's figures.
    #[derive(Debug, Clone)]
    pub struct MethodFigure {
        /// Case name.
        pub case: &'static str,
        /// ns per packet over the rounds.
        pub ns: Stats,
        /// Median over rounds of case / direct routing in the same round.
        pub ratio: f64,
        /// Target ratio, if any.
        pub target: Option<f64>,
    }

    struct Case {
        name: &'static str,
        frame: Vec<u8>,
        verdict: Verdict,
        action: u32,
        target: Option<f64>,
    }

    fn config() -> Config {
        let rs = |i: usize, port: Option<u16>, forward: rvs_config::ForwardMethod| {
            let mut r = RealServer::new(SEG_A[i].0);
            r.port = port;
            r.forward = forward;
            r
        };
        let svc = |address, port, reals| {
            let mut s = VirtualService::new(Protocol::Tcp, address, port);
            s.scheduler = Scheduler::Rr;
            s.reals = reals;
            s
        };
        let tun = |kind, port, checksum| {
            let mut r = rs(2, None, rvs_config::ForwardMethod::Tun);
            r.tunnel = rvs_config::Tunnel {
                kind,
                port,
                checksum,
            };
            r
        };
        use rvs_config::{TunnelChecksum as C, TunnelType as T};
        Config {
            services: vec![
                svc(
                    VIP_DR,
                    VIP_PORT,
                    vec![rs(0, None, rvs_config::ForwardMethod::Dr)],
                ),
                svc(
                    VIP_NAT,
                    VIP_PORT,
                    vec![rs(1, Some(NAT_PORT), rvs_config::ForwardMethod::Nat)],
                ),
                svc(VIP_TUN, 80, vec![tun(T::Ipip, None, C::Nocsum)]),
                svc(VIP_TUN, 81, vec![tun(T::Gue, Some(6080), C::Csum)]),
                svc(VIP_TUN, 82, vec![tun(T::Gre, None, C::Nocsum)]),
            ],
            ..Config::default()
        }
    }

    /// Loads the dataplane, opens one connection per case and times an established
    /// packet of each, one run per call (test_run runs a repeated frame on the buffer the
    /// previous run rewrote, so NAT and TUN cannot be repeated in one call), `--new-flows`
    /// calls per round (at most 20 000), interleaved round by round.
    pub fn measure(opts: &Options, pin_root: &Path) -> Result<Methods> {
        let dir = pin_root.join("methods");
        let _pins = PinDir(dir.clone());
        let mut dp = Dataplane::load(&dir, Limits::default())?;
        dp.apply(&config())?;
        // SAFETY: NUL-terminated name; if_nametoindex only reads it.
        let a0 = unsafe { libc::if_nametoindex(c"a0".as_ptr()) };
        ensure!(a0 != 0, "no a0 in the benchmark namespace");
        let c = (Ipv4Addr::new(198, 19, 7, 1), 40000);
        let rs_nat = (SEG_A[1].0, NAT_PORT);
        let from_rs = |mut f: Vec<u8>| {
            f[6..12].copy_from_slice(&SEG_A[1].1);
            f
        };
        // Open the connections: SYNs, and for NAT the SYN-ACK and the ACK.
        let setup = [
            (tcp_frame(c, (VIP_DR, VIP_PORT), TCP_SYN), XDP_TX),
            (tcp_frame(c, (VIP_NAT, VIP_PORT), TCP_SYN), XDP_TX),
            (from_rs(tcp_frame(rs_nat, c, TCP_SYNACK)), XDP_TX),
            (tcp_frame(c, (VIP_NAT, VIP_PORT), TCP_ACK), XDP_TX),
            (tcp_frame(c, (VIP_TUN, 80), TCP_SYN), XDP_TX),
            (tcp_frame(c, (VIP_TUN, 81), TCP_SYN), XDP_TX),
            (tcp_frame(c, (VIP_TUN, 82), TCP_SYN), XDP_TX),
        ];
        for (frame, action) in &setup {
            let prog = dp.xdp_program(programs::BALANCER)?;
            let out = run_xdp(prog, frame, a0, 1)?;
            ensure!(
                out.action == *action,
                "forwarding-methods setup: action {} instead of {action}",
                out.action
            );
        }
        let cases = [
            Case {
                name: "DR established (reference)",
                frame: tcp_frame(c, (VIP_DR, VIP_PORT), TCP_ACK),
                verdict: Verdict::FwdEstablished,
                action: XDP_TX,
                target: None,
            },
            Case {
                name: "NAT request (DNAT)",
                frame: tcp_frame(c, (VIP_NAT, VIP_PORT), TCP_ACK),
                verdict: Verdict::FwdEstablished,
                action: XDP_TX,
                target: Some(1.5),
            },
            Case {
                name: "NAT reply (SNAT)",
                frame: from_rs(tcp_frame(rs_nat, c, TCP_ACK)),
                verdict: Verdict::FwdNatReply,
                action: XDP_TX,
                target: Some(1.5),
            },
            Case {
                name: "TUN ipip",
                frame: tcp_frame(c, (VIP_TUN, 80), TCP_ACK),
                verdict: Verdict::FwdEstablished,
                action: XDP_TX,
                target: Some(1.3),
            },
            Case {
                name: "TUN gue + csum",
                frame: tcp_frame(c, (VIP_TUN, 81), TCP_ACK),
                verdict: Verdict::FwdEstablished,
                action: XDP_TX,
                target: Some(1.3),
            },
            Case {
                name: "TUN gre",
                frame: tcp_frame(c, (VIP_TUN, 82), TCP_ACK),
                verdict: Verdict::FwdEstablished,
                action: XDP_TX,
                target: Some(1.3),
            },
        ];
        let calls = opts.new_flows.min(20_000);
        let mut samples = vec![Vec::new(); cases.len()];
        for round in 0..opts.rounds {
            for k in 0..cases.len() {
                // Alternate the order so drift does not favour one case.
                let i = if round % 2 == 0 {
                    k
                } else {
                    cases.len() - 1 - k
                };
                let case = &cases[i];
                let count = |dp: &Dataplane| -> Result<u64> {
                    Ok(dp
                        .verdicts()?
                        .into_iter()
                        .find(|(v, _)| *v == case.verdict)
                        .map_or(0, |(_, n)| n))
                };
                let before = count(&dp)?;
                let mut total = 0u64;
                for _ in 0..calls {
                    let prog = dp.xdp_program(programs::BALANCER)?;
                    let out = run_xdp(prog, &case.frame, a0, 1)?;
                    ensure!(
                        out.action == case.action,
                        "{}: action {} instead of {}; refusing to time the wrong path",
                        case.name,
                        out.action,
                        case.action
                    );
                    total += out.ns_per_run;
                }
                ensure!(
                    count(&dp)? - before == u64::from(calls),
                    "{}: not every run was counted as {}",
                    case.name,
                    case.verdict.name()
                );
                samples[i].push(total as f64 / f64::from(calls));
            }
        }
        let figures = cases
            .iter()
            .zip(&samples)
            .map(|(case, s)| MethodFigure {
                case: case.name,
                ns: Stats::of(s.clone()),
                ratio: paired_median(s, &samples[0]),
                target: case.target,
            })
            .collect();
        let keys = key_layout(&mut dp, a0, opts)?;
        Ok(Methods { figures, keys })
    }

    /// Times the two reference programs on one established frame whose entry is in both
    /// maps.
    fn key_layout(dp: &mut Dataplane, a0: u32, opts: &Options) -> Result<KeyLayout> {
        let c = (Ipv4Addr::new(198, 19, 7, 2), 40001);
        let frame = tcp_frame(c, (VIP_DR, VIP_PORT), TCP_ACK);
        let entry = ConnEntry {
            ifindex: a0,
            dmac: SEG_A[0].1,
            smac: A0_MAC,
            ..ConnEntry::default()
        };
        let ip = |a: Ipv4Addr| u32::from_ne_bytes(a.octets());
        dp.insert_ref_v4(
            FlowKey {
                src: ip(c.0),
                dst: ip(VIP_DR),
                sport: c.1.to_be(),
                dport: VIP_PORT.to_be(),
                proto: u32::from(IPPROTO_TCP),
            },
            entry,
        )?;
        dp.insert_ref_tagged(
            rvs_common::TaggedFlowKey {
                family: 2,
                proto: IPPROTO_TCP,
                pad: 0,
                sport: c.1.to_be(),
                dport: VIP_PORT.to_be(),
                src: [ip(c.0), 0, 0, 0],
                dst: [ip(VIP_DR), 0, 0, 0],
            },
            entry,
        )?;
        let (mut v4, mut tagged) = (Vec::new(), Vec::new());
        for round in 0..opts.rounds {
            let order = if round % 2 == 0 {
                [programs::REF_CONN_V4, programs::REF_CONN_TAGGED]
            } else {
                [programs::REF_CONN_TAGGED, programs::REF_CONN_V4]
            };
            for name in order {
                let out = run_xdp(dp.xdp_program(name)?, &frame, a0, opts.repeat)?;
                ensure!(
                    out.action == XDP_TX && out.frame[..6] == SEG_A[0].1,
                    "{name}: the reference did not find its entry"
                );
                if name == programs::REF_CONN_V4 {
                    v4.push(out.ns_per_run as f64);
                } else {
                    tagged.push(out.ns_per_run as f64);
                }
            }
        }
        Ok(KeyLayout {
            ratio: paired_median(&tagged, &v4),
            v4: Stats::of(v4),
            tagged: Stats::of(tagged),
        })
    }

    /// The table of forwarding methods.
    pub fn render(out: &mut String, opts: &Options, methods: &Methods) {
        let figures = &methods.figures;
        let calls = opts.new_flows.min(20_000);
        let _ = writeln!(
            out,
            "Forwarding methods, established flow, one run per call ({calls} calls per \
             round, {} rounds; single runs include the kernel's clock reads, like the \
             new-flow case):\n",
            opts.rounds
        );
        let lines: Vec<[String; 4]> = figures
            .iter()
            .map(|f| {
                [
                    f.case.to_owned(),
                    min_median(&f.ns),
                    format!("{:.2}×", f.ratio),
                    f.target.map_or("reference".into(), |t| {
                        format!("≤ {t}×: {}", verdict(f.ratio <= t))
                    }),
                ]
            })
            .collect();
        write_table(
            out,
            opts.markdown,
            &["case", "ns (min / median)", "ratio to DR", "target"],
            &lines,
        );
        let k = &methods.keys;
        let _ = writeln!(
            out,
            "\nConnection-key layout for IPv6 (parse + one LRU lookup + MACs + XDP_TX, \
             repeat {}): 16-byte IPv4 key {} ns, 40-byte family-tagged key {} ns (min / \
             median), tagged / v4 = {:.2}×. rvs keeps separate v4 and v6 maps, so IPv4 \
             keeps the short key.",
            opts.repeat,
            min_median(&k.v4),
            min_median(&k.tagged),
            k.ratio
        );
    }
}
