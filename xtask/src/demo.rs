//! `cargo xtask demo`: the direct-routing lab with rvsd and a sample config, real traffic
//! from the client, and a summary of which real server answered.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use rvs_config::Config;
use rvs_dataplane::PassProgram;
use rvs_lab::{DrLab, HttpResponder, HttpSession, Rvsd, run_many};

/// Options of `cargo xtask demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Configuration to run (its services' real servers must be lab addresses
    /// 198.18.2.11…; the demo uses the first TCP service).
    #[arg(long, default_value = "examples/demo.toml")]
    config: PathBuf,
    /// Connections to open from the client.
    #[arg(long, default_value_t = 600)]
    connections: usize,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    ensure!(
        nix_is_root(),
        "the demo builds network namespaces and loads XDP programs: run it as root"
    );
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config = Config::from_toml(&text)
        .with_context(|| format!("invalid config {}", args.config.display()))?;
    let svc = config
        .services
        .iter()
        .find(|s| s.protocol == rvs_config::Protocol::Tcp)
        .context("the demo config needs a TCP service")?;
    let rvsd_bin = std::env::current_exe()?.with_file_name("rvsd");
    if !rvsd_bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p rvsd -p xtask)",
            rvsd_bin.display()
        );
    }
    rvs_dataplane::ensure_bpffs()?;
    let vip = SocketAddr::from((svc.address, svc.port));
    println!(
        "Building the lab: client — router — load balancer + {} real servers on one segment…",
        svc.reals.len()
    );
    let lab = DrLab::new(svc.reals.len(), &[svc.address])?;
    let by_addr: BTreeMap<Ipv4Addr, String> = lab
        .real_servers()
        .iter()
        .map(|rs| (rs.addr(), rs.name().to_owned()))
        .collect();
    for r in &svc.reals {
        ensure!(
            by_addr.contains_key(&r.address),
            "real server {} is not a lab address (the lab has {:?})",
            r.address,
            by_addr.keys().collect::<Vec<_>>()
        );
    }
    let _responders: Vec<HttpResponder> = lab
        .real_servers()
        .iter()
        .map(|rs| {
            HttpResponder::spawn(
                rs.ns(),
                SocketAddr::from(([0, 0, 0, 0], svc.port)),
                rs.name(),
            )
        })
        .collect::<Result<_>>()?;
    let port = lab.switch_lb_port();
    let _pass = lab.switch().run(|| PassProgram::attach(port))??;
    println!(
        "Starting rvsd with {} in the load balancer's namespace…",
        args.config.display()
    );
    let rvsd = Rvsd::start(lab.lb(), &rvsd_bin, &text, &config.daemon.pin_path)?;

    println!(
        "Opening {} TCP connections from the client to {vip}…\n",
        args.connections
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for r in run_many(lab.client(), vip, args.connections, 8) {
        match r {
            Ok(name) => *counts.entry(name).or_default() += 1,
            Err(_) => failed += 1,
        }
    }
    let total_weight: u32 = svc.reals.iter().map(|r| r.weight).sum();
    println!("{} {} scheduler {}", svc.protocol, vip, svc.scheduler);
    println!(
        "  {:<6} {:<15} {:>6} {:>8} {:>7} {:>9}",
        "server", "address", "weight", "answered", "share", "expected"
    );
    for r in &svc.reals {
        let name = &by_addr[&r.address];
        let n = counts.get(name).copied().unwrap_or(0);
        let expected = if total_weight == 0 {
            0.0
        } else {
            100.0 * f64::from(r.weight) / f64::from(total_weight)
        };
        println!(
            "  {:<6} {:<15} {:>6} {:>8} {:>6.1}% {:>8.1}%",
            name,
            r.address,
            r.weight,
            n,
            100.0 * n as f64 / args.connections as f64,
            expected
        );
    }
    println!("  failed connections: {failed}");

    // An open keep-alive connection survives its server being quiesced (weight 0).
    let mut session = HttpSession::connect(lab.client(), vip)?;
    let first = session.get()?;
    let mut cfg = config.clone();
    for svc in &mut cfg.services {
        for r in &mut svc.reals {
            if by_addr.get(&r.address) == Some(&first) {
                r.weight = 0;
            }
        }
    }
    let mut rvsd = rvsd;
    rvsd.reload(&cfg.to_toml())?;
    let after = run_many(lab.client(), vip, 60, 8);
    let landed = after
        .iter()
        .filter(|r| r.as_deref().ok() == Some(first.as_str()))
        .count();
    let still = session.get()?;
    println!(
        "\nQuiesced {first} (weight 0) with a connection open: the open connection is still served by {still}; {landed} of 60 new connections went to {first}."
    );

    let verdicts = rvs_dataplane::pinned_verdicts(&config.daemon.pin_path)?;
    println!("\nXDP verdicts on the load balancer:");
    for (v, n) in verdicts.iter().filter(|(_, n)| *n > 0) {
        println!("  {:<18} {n}", v.name());
    }
    drop(rvsd);
    drop(lab);
    println!("\nDone: balancer detached, lab removed.");
    Ok(())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
