//! Measurement (not a test): how long the router takes to withdraw a dead director, with
//! BFD and with the BGP hold timer alone. Root; builds the ECMP lab (rvs-lab) with two
//! directors, kills one (uplink down, then rvsd and its BIRD SIGKILLed, as a machine losing
//! power) and times until the router's multipath route to the VIP lost that next hop.
//!
//! `cargo run -p rvsd --example ecmp_withdrawal [RUNS]` (default 3 runs per mode) prints
//! the median and worst time per mode and each mode's ratio to BFD's, measured in this run.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rvs_dataplane::PassProgram;
use rvs_lab::{
    Rvsd,
    ecmp::{Detection, EcmpLab},
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn keepalived_conf(lab: &EcmpLab) -> String {
    let mut c = format!(
        "virtual_server {VIP} 80 {{\n    delay_loop 5\n    lb_algo mh\n    mh-port\n    lb_kind DR\n    protocol TCP\n"
    );
    for rs in lab.real_servers() {
        c += &format!(
            "    real_server {} 80 {{\n        weight 1\n    }}\n",
            rs.addr()
        );
    }
    c + "}\n"
}

/// One director death under `detection`: the time until the router dropped it.
fn one_run(rvsd_bin: &Path, detection: Detection) -> Result<Duration> {
    let lab = EcmpLab::new(2, 2, &[VIP], detection)?;
    let _pass: Vec<PassProgram> = lab
        .switch_lb_ports()
        .iter()
        .map(|p| Ok(lab.switch().run(|| PassProgram::attach(p))??))
        .collect::<Result<_>>()?;
    let mut dirs = Vec::new();
    for d in lab.directors() {
        let bgp = lab.dir().join(format!("lb{}-bgp.toml", d.index()));
        std::fs::write(&bgp, d.bgp_toml(lab.dir(), detection, 1))?;
        let pin = PathBuf::from(format!("/sys/fs/bpf/{}-lb{}", lab.prefix(), d.index()));
        dirs.push(Rvsd::start_keepalived_with(
            d.ns(),
            rvsd_bin,
            &keepalived_conf(&lab),
            &[lab.uplink()],
            &pin,
            &["--bgp", &bgp.display().to_string()],
        )?);
    }
    lab.wait_next_hops(VIP, &[1, 2], Duration::from_secs(60))
        .context("both directors announced")?;
    // Let the sessions settle (BFD up, timers in their steady state).
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    lab.directors()[0].set_uplink(false)?;
    dirs[0].kill()?;
    lab.wait_next_hops(
        VIP,
        &[2],
        Duration::from_secs(u64::from(detection.hold()) + 30),
    )
    .context("the router withdrew lb1")?;
    Ok(t0.elapsed())
}

fn main() -> Result<()> {
    anyhow::ensure!(
        nix::unistd::Uid::effective().is_root(),
        "run as root: the lab builds network namespaces"
    );
    let runs: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .with_context(|| format!("RUNS {a:?}: expected a number"))?,
        None => 3,
    };
    anyhow::ensure!((1..=20).contains(&runs), "RUNS: 1..=20");
    let exe = std::env::current_exe()?;
    let anchor = exe
        .parent()
        .and_then(Path::parent)
        .context("target directory")?
        .join("rvsd");
    let rvsd_bin = rvs_lab::bins::workspace_binary(env!("CARGO"), &anchor, "rvsd")?;
    let modes = [
        (
            "BFD 100 ms x 3 (hold 3 s)",
            Detection::Bfd {
                interval_ms: 100,
                hold: 3,
            },
        ),
        (
            "hold timer 3 s (keepalive 1 s)",
            Detection::HoldTimer { hold: 3 },
        ),
        (
            "hold timer 9 s (rvs default)",
            Detection::HoldTimer { hold: 9 },
        ),
    ];
    let mut rows = Vec::new();
    for (name, detection) in modes {
        let mut times = Vec::new();
        for i in 0..runs {
            let t =
                one_run(&rvsd_bin, detection).with_context(|| format!("{name}, run {}", i + 1))?;
            eprintln!("{name}: run {}: {:.0} ms", i + 1, t.as_secs_f64() * 1e3);
            times.push(t);
        }
        times.sort();
        rows.push((name, times[times.len() / 2], times[times.len() - 1]));
    }
    let base = rows[0].1.as_secs_f64();
    println!("director death → router withdrawal ({runs} runs per mode)");
    println!(
        "{:<32} {:>10} {:>10} {:>8}",
        "detection", "median", "worst", "× BFD"
    );
    for (name, median, worst) in rows {
        println!(
            "{name:<32} {:>8.0}ms {:>8.0}ms {:>8.1}",
            median.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            median.as_secs_f64() / base
        );
    }
    Ok(())
}
