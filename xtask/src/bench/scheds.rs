//! New-flow cost per scheduler with 2, 32 and 256 real servers: one service per (scheduler,
//! server count) on its own VIP, direct-routing servers on a /24 routed through a0 with
//! static neighbours; each round times `calls` distinct SYNs per case (one run each, as the
//! new-flow case of the main table), cases interleaved, and the ratio is the median over
//! rounds of the case / rr with as many servers in the same round. The connection-count
//! schedulers (lc, wlc, sed, nq, fo, ovf) walk the whole list per new connection (bound 256),
//! so their cost grows with the server count; the ring and hash schedulers' (rr, wrr, mh, sh,
//! dh) does not. lblc and lblcr (all SYNs of a case go to one VIP, so one destination entry)
//! pay two more tail calls and a second run of the new-flow program besides their table
//! lookup, and walk the list when the destination's server is overloaded (the SYNs stay
//! counted, so it soon is).

use super::*;

/// Schedulers measured, the reference (rr) first.
const SCHEDS: [Scheduler; 13] = [
    Scheduler::Rr,
    Scheduler::Wrr,
    Scheduler::Mh,
    Scheduler::Sh,
    Scheduler::Dh,
    Scheduler::Lc,
    Scheduler::Wlc,
    Scheduler::Sed,
    Scheduler::Nq,
    Scheduler::Fo,
    Scheduler::Ovf,
    Scheduler::Lblc,
    Scheduler::Lblcr,
];
/// Real servers per service.
const SIZES: [u32; 3] = [2, 32, 256];
/// The servers: 198.18.160.0 + i on a0, MAC 02:00:00:00:a0:(i % 256) with i / 256 in the
/// fifth byte.
const REAL_BASE: u32 = u32::from_be_bytes([198, 18, 160, 0]);
/// Service `k` is VIP_SCHED_BASE + k, port 80.
const VIP_SCHED_BASE: u32 = u32::from_be_bytes([198, 18, 10, 0]);
/// Target at 32 servers: within 2× of rr's new-flow cost (issue 13).
const TARGET_AT_32: f64 = 2.0;
/// Clients of these SYNs: 198.19.100.0/22.
const CLIENT_SCHED_BASE: u32 = u32::from_be_bytes([198, 19, 100, 0]);

fn real_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(REAL_BASE + i)
}

fn real_mac(i: u32) -> [u8; 6] {
    [0x02, 0, 0, 0xa0 + (i >> 8) as u8, 0xa0, i as u8]
}

/// The route and static neighbours for the servers, in the benchmark namespace.
pub fn prepare(fib: &FibNs) -> Result<()> {
    let max = *SIZES.iter().max().unwrap_or(&2);
    fib.ns()
        .exec(&["ip", "route", "add", "198.18.160.0/23", "dev", "a0"])
        .context("route for the scheduler bench's real servers")?;
    for i in 0..max {
        let mac = real_mac(i)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        fib.ns()
            .exec(&[
                "ip",
                "neigh",
                "replace",
                &real_addr(i).to_string(),
                "lladdr",
                &mac,
                "dev",
                "a0",
                "nud",
                "permanent",
            ])
            .context("static neighbour for a scheduler bench server")?;
    }
    Ok(())
}

/// One case's figures.
#[derive(Debug, Clone)]
pub struct SchedFigure {
    /// Scheduler.
    pub sched: Scheduler,
    /// Real servers.
    pub servers: u32,
    /// ns per new flow over the rounds.
    pub ns: Stats,
    /// Median over rounds of case / rr with as many servers.
    pub ratio: f64,
}

/// SYNs per case per round.
fn calls(opts: &Options) -> u32 {
    opts.new_flows.clamp(1, 5_000)
}

fn config() -> Config {
    let mut services = Vec::new();
    for (k, (sched, n)) in cases().into_iter().enumerate() {
        let mut s = VirtualService::new(
            Protocol::Tcp,
            Ipv4Addr::from(VIP_SCHED_BASE + k as u32),
            VIP_PORT,
        );
        s.scheduler = sched;
        s.reals = (0..n)
            .map(|i| {
                let mut r = RealServer::new(real_addr(i));
                // ovf stops taking connections once every server's ActiveConn passes its
                // weight (the bench's SYNs stay counted): weights far above the SYNs sent.
                let base = if sched == Scheduler::Ovf {
                    1_000_000
                } else {
                    1
                };
                r.weight = base + i % 3;
                r
            })
            .collect();
        services.push(s);
    }
    Config {
        services,
        ..Config::default()
    }
}

fn cases() -> Vec<(Scheduler, u32)> {
    SIZES
        .iter()
        .flat_map(|&n| SCHEDS.iter().map(move |&s| (s, n)))
        .collect()
}

/// Measures every case; entries the SYNs create are deleted after each case's round.
pub fn measure(opts: &Options, pin_root: &Path) -> Result<Vec<SchedFigure>> {
    let dir = pin_root.join("schedulers");
    let _pins = PinDir(dir.clone());
    let mut dp = Dataplane::load(&dir, Limits::default())?;
    dp.apply(&config())?;
    // SAFETY: NUL-terminated name; if_nametoindex only reads it.
    let a0 = unsafe { libc::if_nametoindex(c"a0".as_ptr()) };
    ensure!(a0 != 0, "no a0 in the benchmark namespace");
    let cases = cases();
    let calls = calls(opts);
    let flows: Vec<Vec<(Vec<u8>, FlowKey)>> = (0..cases.len())
        .map(|k| {
            let vip = Ipv4Addr::from(VIP_SCHED_BASE + k as u32);
            (0..calls)
                .map(|i| {
                    let c = (
                        Ipv4Addr::from(CLIENT_SCHED_BASE + (i >> 8)),
                        1024 + (i & 255) as u16,
                    );
                    let flow = Flow {
                        client: c,
                        vip: (vip, VIP_PORT),
                    };
                    (flow.frame(TCP_SYN), flow.key())
                })
                .collect()
        })
        .collect();
    let fwd_new = |dp: &Dataplane| -> Result<u64> {
        Ok(dp
            .verdicts()?
            .into_iter()
            .find(|(v, _)| *v == Verdict::FwdNew)
            .map_or(0, |(_, n)| n))
    };
    let mut samples = vec![Vec::new(); cases.len()];
    for round in 0..opts.rounds {
        for j in 0..cases.len() {
            let k = if round % 2 == 0 {
                j
            } else {
                cases.len() - 1 - j
            };
            let before = fwd_new(&dp)?;
            let mut total = 0u64;
            for (frame, _) in &flows[k] {
                let prog = dp.xdp_program(programs::BALANCER)?;
                let out = run_xdp(prog, frame, a0, 1)?;
                ensure!(
                    out.action == XDP_TX,
                    "{} with {} servers: action {} instead of XDP_TX; refusing to time the wrong path",
                    cases[k].0.name(),
                    cases[k].1,
                    out.action
                );
                total += out.ns_per_run;
            }
            ensure!(
                fwd_new(&dp)? - before == u64::from(calls),
                "{} with {} servers: not every SYN was a new flow",
                cases[k].0.name(),
                cases[k].1
            );
            for (_, key) in &flows[k] {
                dp.conns_mut()
                    .remove(key)
                    .context("deleting a scheduler bench flow")?;
            }
            samples[k].push(total as f64 / f64::from(calls));
        }
    }
    Ok(cases
        .iter()
        .enumerate()
        .map(|(k, &(sched, servers))| {
            // The rr case with as many servers.
            let rr = cases
                .iter()
                .position(|&(s, n)| s == Scheduler::Rr && n == servers)
                .unwrap_or(0);
            SchedFigure {
                sched,
                servers,
                ns: Stats::of(samples[k].clone()),
                ratio: paired_median(&samples[k], &samples[rr]),
            }
        })
        .collect())
}

/// The section of the report.
pub fn render(out: &mut String, opts: &Options, figures: &[SchedFigure]) {
    let _ = writeln!(
        out,
        "New flow per scheduler ({} distinct SYNs per case per round, {} rounds, one run \
         each; ratio to rr with as many servers in the same round; the walks of lc, wlc, sed, \
         nq, fo and ovf read every server's load; ovf's weights are far above the SYNs sent, \
         so it never runs out of servers; lblc and lblcr run in their own program, two tail \
         calls and a second new-flow run more):\n",
        calls(opts),
        opts.rounds
    );
    let lines: Vec<[String; 5]> = figures
        .iter()
        .map(|f| {
            [
                f.sched.name().to_owned(),
                f.servers.to_string(),
                min_median(&f.ns),
                format!("{:.2}×", f.ratio),
                if f.servers == 32 && f.sched != Scheduler::Rr {
                    format!("≤ {TARGET_AT_32}×: {}", verdict(f.ratio <= TARGET_AT_32))
                } else {
                    "—".into()
                },
            ]
        })
        .collect();
    write_table(
        out,
        opts.markdown,
        &[
            "scheduler",
            "servers",
            "ns (min / median)",
            "ratio to rr",
            "target",
        ],
        &lines,
    );
}
