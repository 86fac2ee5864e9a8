//! `xtask bench-ecmp`: connections lost when an ECMP router re-hashes flows between rvs
//! directors, measured on the real XDP program (BPF_PROG_TEST_RUN), not a model of it.
//!
//! Three directors are three loaded dataplanes (own maps, own pins) in one [`FibNs`]
//! namespace, with the same mh service. 1 000 connections are opened (a SYN each) at the
//! director the router's hash gives them; the real server each SYN reached holds it. Then
//! the event: a director removed (the router re-hashes over the survivors), a real server
//! added (on every director), or both at once. Every connection then sends one mid-flow
//! packet to the director the router now gives it; it is lost when that packet reaches
//! another real server than the one holding it (or is not forwarded).
//!
//! The router is modelled: Linux's hash-threshold multipath (`fib_select_multipath`): the
//! flow's L4 hash, 31 bits, against equal upper bounds, one per next hop in order. The
//! hash function here is a fixed mix of the 5-tuple (the kernel's is seeded per boot): which
//! flows move differs, how many is the same in expectation.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, ensure};
use clap::Args;
use rvs_common::{
    IPPROTO_TCP,
    tcp::{TCP_ACK, TCP_SYN},
};
use rvs_config::{Config, Limits};
use rvs_dataplane::{Dataplane, testrun::run_xdp};
use rvs_lab::fib::{EXTRA_REALS, FibNs, extra_real};

use crate::bench::tcp_frame;

/// Options of `xtask bench-ecmp`.
#[derive(Args, Debug)]
pub struct EcmpBenchArgs {
    /// Open connections.
    #[arg(long, default_value_t = 1_000)]
    pub connections: u32,
    /// Real servers before the change (one is added).
    #[arg(long, default_value_t = 5)]
    pub reals: u8,
}

const DIRECTORS: usize = 3;
const XDP_TX: u32 = 3;
const PIN_PREFIX: &str = "/sys/fs/bpf/rvs-bench-ecmp-";

/// What happens at once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The router loses director 2 of 0..3.
    DirectorRemoved,
    /// A real server is added on every director.
    RealAdded,
    /// Both.
    Both,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::DirectorRemoved => "director removed",
            Event::RealAdded => "real server added",
            Event::Both => "director removed + real server added",
        }
    }
}

/// How the directors treat mid-flow packets.
#[derive(Clone, Copy)]
struct Mode {
    name: &'static str,
    flows: &'static str,
}

const PASS: Mode = Mode {
    name: "sloppy_tcp off (IPVS default)",
    flows: "[flows]\nsloppy_tcp = false\n",
};
const PLAIN: Mode = Mode {
    name: "plain mh (sloppy_tcp)",
    flows: "[flows]\nsloppy_tcp = true\n",
};
const SECOND: Mode = Mode {
    name: "mh + second chance",
    flows: "[flows]\nsloppy_tcp = true\nsecond_chance = 600\n",
};

/// Which connections are measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opened {
    /// Opened before the real server was added (the case second chance is for).
    Before,
    /// Opened after it (during the window), by the new table, then re-hashed.
    After,
}

/// One measured line.
struct Line {
    event: Event,
    opened: Opened,
    mode: &'static str,
    rehashed: u32,
    /// Connections whose server the new table no longer chooses.
    moved: u32,
    lost: u32,
    total: u32,
}

/// Runs the benchmark and prints its table.
pub fn run(args: EcmpBenchArgs) -> Result<()> {
    // SAFETY: plain syscall.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "xtask bench-ecmp needs root (network namespace, BPF programs and bpffs pins)"
    );
    ensure!(
        args.reals >= 2 && args.reals < EXTRA_REALS,
        "--reals must be 2..{}",
        EXTRA_REALS - 1
    );
    ensure!(
        (1..=50_000).contains(&args.connections),
        "--connections must be 1..=50000"
    );
    rvs_dataplane::ensure_bpffs()?;
    let started = Instant::now();
    let fib = FibNs::new().context("creating the benchmark namespace")?;
    let pin_root = PathBuf::from(format!("{PIN_PREFIX}{}", std::process::id()));
    let lines = fib
        .ns()
        .run(|| -> Result<Vec<Line>> { measure(&args, &pin_root) })?;
    let cleanup = cleanup(&pin_root);
    drop(fib);
    let lines = lines?;
    cleanup?;
    print!("{}", render(&args, &lines, started.elapsed().as_secs_f64()));
    Ok(())
}

fn cleanup(root: &Path) -> Result<()> {
    for d in 0..DIRECTORS {
        rvs_dataplane::cleanup(&root.join(format!("d{d}")))?;
    }
    rvs_dataplane::cleanup(root)?;
    Ok(())
}

/// Loads the three directors once; each case uses a VIP of its own, so entries of earlier
/// cases (other VIPs) play no part.
fn measure(args: &EcmpBenchArgs, root: &Path) -> Result<Vec<Line>> {
    let limits = Limits {
        services: 64,
        reals: 1024,
        connections: 262_144,
        dispatch_slots: 1 << 20,
    };
    let mut dps = Vec::new();
    for d in 0..DIRECTORS {
        let dir = root.join(format!("d{d}"));
        dps.push(Dataplane::load(&dir, limits).with_context(|| format!("loading director {d}"))?);
    }
    // SAFETY: a NUL-terminated name.
    let a0 = unsafe { libc::if_nametoindex(c"a0".as_ptr()) };
    ensure!(a0 != 0, "no a0 in the benchmark namespace");
    let mut lines = Vec::new();
    let mut case = 0u8;
    for event in [Event::RealAdded, Event::DirectorRemoved, Event::Both] {
        for mode in [PASS, PLAIN, SECOND] {
            for opened in [Opened::Before, Opened::After] {
                if opened == Opened::After && event == Event::DirectorRemoved {
                    continue; // no table change: nothing is opened "after" it
                }
                case += 1;
                let vip = Ipv4Addr::new(198, 18, 0, 100 + case);
                let line = one_case(&mut dps, a0, args, vip, event, mode, opened)?;
                lines.push(line);
            }
        }
    }
    Ok(lines)
}

fn config(vip: Ipv4Addr, reals: u8, flows: &str, limits: Limits) -> Result<Config> {
    let mut c = format!(
        "{flows}[limits]\nservices = {}\nreals = {}\nconnections = {}\ndispatch_slots = {}\n",
        limits.services, limits.reals, limits.connections, limits.dispatch_slots
    );
    c += &format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{vip}\"\nport = 80\nscheduler = \"mh\"\n"
    );
    for i in 0..reals {
        c += &format!("[[service.real]]\naddress = \"{}\"\n", extra_real(i).0);
    }
    Config::from_toml(&c).context("bench config")
}

#[allow(clippy::too_many_arguments)]
fn one_case(
    dps: &mut [Dataplane],
    a0: u32,
    args: &EcmpBenchArgs,
    vip: Ipv4Addr,
    event: Event,
    mode: Mode,
    opened: Opened,
) -> Result<Line> {
    let limits = dps[0].limits();
    let before = config(vip, args.reals, mode.flows, limits)?;
    let real_added = event != Event::DirectorRemoved;
    let after_reals = if real_added {
        args.reals + 1
    } else {
        args.reals
    };
    let after = config(vip, after_reals, mode.flows, limits)?;
    for dp in dps.iter_mut() {
        dp.apply(&before)?;
    }
    let clients: Vec<(Ipv4Addr, u16)> = (0..args.connections).map(|i| client(vip, i)).collect();
    let open = |dps: &mut [Dataplane], n: usize| -> Result<Vec<u8>> {
        clients
            .iter()
            .map(|&c| {
                let d = director(c, vip, n);
                match send(&mut dps[d], a0, c, vip, TCP_SYN)? {
                    Some(k) => Ok(k),
                    None => {
                        let v: Vec<_> = dps[d]
                            .verdicts()?
                            .into_iter()
                            .filter(|(_, n)| *n > 0)
                            .map(|(v, n)| format!("{}={n}", v.name()))
                            .collect();
                        anyhow::bail!("a SYN of {c:?} was not forwarded ({})", v.join(" "))
                    }
                }
            })
            .collect()
    };
    // Where each connection lives: opened before the change, or after it (by the new
    // table, at the directors of the full set), as the case says.
    let holders = match opened {
        Opened::Before => {
            let h = open(dps, DIRECTORS)?;
            for dp in dps.iter_mut() {
                dp.apply(&after)?;
            }
            h
        }
        Opened::After => {
            for dp in dps.iter_mut() {
                dp.apply(&after)?;
            }
            open(dps, DIRECTORS)?
        }
    };
    let survivors = if event == Event::RealAdded {
        DIRECTORS
    } else {
        DIRECTORS - 1
    };
    let (mut lost, mut rehashed, mut moved) = (0, 0, 0);
    for (c, holder) in clients.iter().zip(&holders) {
        // The current table's choice for this source (mh hashes the address only): a new
        // connection from another port.
        let probe = (c.0, c.1.wrapping_add(10_000));
        if send(&mut dps[0], a0, probe, vip, TCP_SYN)? != Some(*holder) {
            moved += 1;
        }
        let d = director(*c, vip, survivors);
        if d != director(*c, vip, DIRECTORS) {
            rehashed += 1;
        }
        let got = send(&mut dps[d], a0, *c, vip, TCP_ACK)?;
        if got != Some(*holder) {
            lost += 1;
        }
    }
    Ok(Line {
        event,
        opened,
        mode: mode.name,
        rehashed,
        moved,
        lost,
        total: args.connections,
    })
}

/// Client of connection `i` for VIP `vip`: distinct addresses in 198.19.0.0/16.
fn client(vip: Ipv4Addr, i: u32) -> (Ipv4Addr, u16) {
    let a = Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8);
    (a, 20_000 + (vip.octets()[3] as u16) * 16 + (i % 16) as u16)
}

/// Linux's hash-threshold multipath over `n` equal next hops (`fib_select_multipath`):
/// next hop i takes the 31-bit hashes up to (i + 1) · 2^31 / n.
fn director(c: (Ipv4Addr, u16), vip: Ipv4Addr, n: usize) -> usize {
    let h = (l4_hash(c, vip) >> 1) as u64;
    let n = n as u64;
    for i in 0..n {
        if h < ((i + 1) << 31) / n {
            return i as usize;
        }
    }
    (n - 1) as usize
}

/// A fixed 32-bit mix of the 5-tuple (murmur3's finaliser over the words).
fn l4_hash(c: (Ipv4Addr, u16), vip: Ipv4Addr) -> u32 {
    let words = [
        u32::from(c.0),
        u32::from(vip),
        (u32::from(c.1) << 16) | 80,
        u32::from(IPPROTO_TCP),
    ];
    words.iter().fold(0x9747_b28c_u32, |h, &w| {
        let mut x = h ^ w;
        x ^= x >> 16;
        x = x.wrapping_mul(0x85eb_ca6b);
        x ^= x >> 13;
        x = x.wrapping_mul(0xc2b2_ae35);
        x ^ (x >> 16)
    })
}

/// Runs one TCP packet through a director; the extra real it reached, if forwarded.
fn send(
    dp: &mut Dataplane,
    a0: u32,
    c: (Ipv4Addr, u16),
    vip: Ipv4Addr,
    flags: u8,
) -> Result<Option<u8>> {
    let frame = tcp_frame(c, (vip, 80), flags);
    let prog = dp.xdp_program(rvs_common::programs::BALANCER)?;
    let r = run_xdp(prog, &frame, a0, 1).context("BPF_PROG_TEST_RUN")?;
    if r.action != XDP_TX {
        return Ok(None);
    }
    Ok((0..EXTRA_REALS).find(|&k| r.frame.get(..6) == Some(&extra_real(k).1[..])))
}

fn render(args: &EcmpBenchArgs, lines: &[Line], secs: f64) -> String {
    let mut out = format!(
        "Connections lost on an ECMP re-hash: {} connections, {DIRECTORS} directors (router: \
         hash-threshold model), mh over {} real servers (+1 when added); the real XDP program \
         per director (BPF_PROG_TEST_RUN)\n\n",
        args.connections, args.reals
    );
    out += "| event | connections opened | directors | re-hashed | server not the new table's | lost | lost % |\n";
    out += "|---|---|---|---:|---:|---:|---:|\n";
    for l in lines {
        let opened = match (l.opened, l.event) {
            (_, Event::DirectorRemoved) => "before",
            (Opened::Before, _) => "before the change",
            (Opened::After, _) => "after the change (window open)",
        };
        out += &format!(
            "| {} | {opened} | {} | {} | {} | {} | {:.1} % |\n",
            l.event.name(),
            l.mode,
            l.rehashed,
            l.moved,
            l.lost,
            100.0 * f64::from(l.lost) / f64::from(l.total)
        );
    }
    out += &format!("\n({secs:.0} s)\n");
    out
}
