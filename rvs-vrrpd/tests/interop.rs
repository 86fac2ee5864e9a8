//! rvs-vrrpd and the real keepalived (Debian 2.2.7, VRRP only) in one virtual router, in
//! both roles, for VRRPv2 (with PASS authentication), VRRPv3 over IPv4 and VRRPv3 over
//! IPv6: each elects correctly against the other, the backup takes over when the master's
//! node crashes (SIGKILL + link down) within Master_Down_Interval + 200 ms, the master
//! preempts when it comes back, and neither logs a protocol error about the other.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::{Lab, VIP, VIP6, holds_for, protocol_errors, sigkill, wait_until};
use rvs_lab::ChildGuard;

#[derive(Clone, Copy, PartialEq)]
enum Flavour {
    V2,
    V3,
    V3Ipv6,
    /// VRRPv3 to unicast peers (the checksum's pseudo-header uses the peer's address).
    V3Unicast,
}

impl Flavour {
    fn vip(self) -> &'static str {
        match self {
            Flavour::V3Ipv6 => VIP6,
            _ => VIP,
        }
    }

    fn prefix(self) -> u8 {
        match self {
            Flavour::V3Ipv6 => 64,
            _ => 24,
        }
    }

    fn version(self) -> u8 {
        match self {
            Flavour::V2 => 2,
            _ => 3,
        }
    }

    /// Advert interval in seconds: VRRPv2 counts whole seconds, v3 hundredths.
    fn advert(self) -> &'static str {
        match self {
            Flavour::V2 => "1",
            _ => "0.1",
        }
    }

    /// Master_Down_Interval of a priority-100 backup.
    fn mdi_100(self) -> Duration {
        match self {
            // 3 × 1 s + 156/256 s
            Flavour::V2 => Duration::from_micros(3_000_000 + 156 * 1_000_000 / 256),
            // 3 × 10 cs + 156 × 10 / 256 cs (keepalived: 60.9 ms of skew)
            _ => Duration::from_millis(361),
        }
    }
}

fn rvs_config(f: Flavour, priority: u8) -> String {
    let auth = match f {
        Flavour::V2 => "authentication = { auth_type = \"PASS\", auth_pass = \"rvs-ka\" }",
        // rvs runs on n1 (198.18.50.1), keepalived on n2 (198.18.50.2).
        Flavour::V3Unicast => "unicast_src_ip = \"198.18.50.1\"\nunicast_peer = [\"198.18.50.2\"]",
        _ => "",
    };
    format!(
        r#"
[global]
vrrp_version = {v}

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = {priority}
advert_int = {adv}
garp_master_delay = 1
{auth}
virtual_ipaddress = ["{vip}/{len} dev eth0"]
"#,
        v = f.version(),
        adv = f.advert(),
        vip = f.vip(),
        len = f.prefix(),
    )
}

fn keepalived_config(f: Flavour, priority: u8) -> String {
    let auth = match f {
        Flavour::V2 => "authentication {\n        auth_type PASS\n        auth_pass rvs-ka\n    }",
        Flavour::V3Unicast => {
            "unicast_src_ip 198.18.50.2\n    unicast_peer {\n        198.18.50.1\n    }"
        }
        _ => "",
    };
    format!(
        r#"
global_defs {{
    router_id ka
    vrrp_version {v}
    vrrp_garp_master_delay 1
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {adv}
    {auth}
    virtual_ipaddress {{
        {vip}/{len} dev eth0
    }}
}}
"#,
        v = f.version(),
        adv = f.advert(),
        vip = f.vip(),
        len = f.prefix(),
    )
}

const SLACK: Duration = Duration::from_millis(200);

/// Starts node `n`'s daemon: rvs on node 0, keepalived on node 1.
fn start(lab: &mut Lab, n: usize, f: Flavour, priority: u8) -> Result<ChildGuard> {
    if n == 0 {
        lab.rvs(0, &rvs_config(f, priority))
    } else {
        lab.keepalived(1, &keepalived_config(f, priority))
    }
}

/// rvs on n1 and keepalived on n2; `master` (0 = rvs, 1 = keepalived) has priority 200.
fn interop(f: Flavour, master: usize) -> Result<()> {
    let backup = 1 - master;
    let vip = f.vip();
    let mut lab = Lab::new(2)?;
    let mut procs: Vec<Option<ChildGuard>> = vec![None, None];
    // The backup first, so the master's takeover is an election, not a start in silence.
    procs[backup] = Some(start(&mut lab, backup, f, 100)?);
    procs[master] = Some(start(&mut lab, master, f, 200)?);
    let settle = f.mdi_100() * 2 + Duration::from_secs(2);
    wait_until(settle, || {
        Ok(lab.nodes[master].holds(vip)? && !lab.nodes[backup].holds(vip)?)
    })
    .context("initial election")?;
    holds_for(Duration::from_secs(1), || {
        Ok(lab.nodes[master].holds(vip)? && !lab.nodes[backup].holds(vip)?)
    })
    .context("initial election is stable")?;
    let master_name = lab.nodes[master].name.clone();
    let backup_name = lab.nodes[backup].name.clone();
    wait_until(Duration::from_secs(5), || {
        Ok(lab.ask(vip).ok().as_deref() == Some(&master_name))
    })?;

    // The master's node crashes.
    let mut dead = procs[master].take().context("master process")?;
    if master == 1 {
        lab.kill_keepalived(1, &mut dead)?;
    } else {
        sigkill(&mut dead)?;
    }
    let master_log = dead.output();
    drop(dead);
    let crashed = Instant::now();
    lab.nodes[master].link_down()?;
    let took = wait_until(Duration::from_secs(10), || lab.nodes[backup].holds(vip))
        .context("backup takeover")?;
    ensure!(
        took <= f.mdi_100() + SLACK,
        "backup took {took:?} (Master_Down_Interval {:?} + {SLACK:?})",
        f.mdi_100()
    );
    wait_until(Duration::from_secs(5), || {
        Ok(lab.ask(vip).ok().as_deref() == Some(&backup_name))
    })
    .context("client reaches the new master")?;
    eprintln!(
        "{:?}: {} took over after {took:?}",
        crashed.elapsed(),
        backup_name
    );

    // It comes back and preempts.
    lab.nodes[master].link_up()?;
    procs[master] = Some(start(&mut lab, master, f, 200)?);
    wait_until(settle, || {
        Ok(lab.nodes[master].holds(vip)? && !lab.nodes[backup].holds(vip)?)
    })
    .context("preemption")?;
    wait_until(Duration::from_secs(5), || {
        Ok(lab.ask(vip).ok().as_deref() == Some(&master_name))
    })?;
    holds_for(Duration::from_secs(1), || {
        Ok(lab.nodes[master].holds(vip)? && !lab.nodes[backup].holds(vip)?)
    })?;

    // Stop both cleanly and read what they said about each other.
    // keepalived's log: its first run if it was the crashed master, and its last run.
    let mut ka_logs = Vec::new();
    if master == 1 {
        ka_logs.push(master_log.clone());
    }
    let mut logs = vec![master_log];
    for (n, p) in procs.iter_mut().enumerate() {
        if let Some(p) = p {
            p.stop()?;
            logs.push(p.output());
            if n == 1 {
                ka_logs.push(p.output());
            }
        }
    }
    let all = logs.join("\n");
    if std::env::var_os("RVS_VRRP_SHOW_LOGS").is_some() {
        eprintln!("{all}");
    }
    let errors = protocol_errors(&all);
    ensure!(errors.is_empty(), "protocol errors logged: {errors:#?}");
    // keepalived saw both transitions.
    let ka_text = ka_logs.join("\n");
    ensure!(
        ka_text.contains("Entering MASTER STATE"),
        "keepalived never became MASTER:\n{ka_text}"
    );
    ensure!(
        ka_text.contains("Entering BACKUP STATE"),
        "keepalived never became BACKUP:\n{ka_text}"
    );
    Ok(())
}

macro_rules! interop_test {
    ($name:ident, $flavour:expr, $master:expr) => {
        #[test]
        fn $name() -> Result<()> {
            if !rvs_lab::root_or_skip(stringify!($name)) {
                return Ok(());
            }
            if std::process::Command::new("keepalived")
                .arg("--version")
                .output()
                .is_err()
            {
                panic!("keepalived is not installed (scripts/setup.sh installs it)");
            }
            interop($flavour, $master)
        }
    };
}

interop_test!(v2_rvs_master_keepalived_backup, Flavour::V2, 0);
interop_test!(v2_keepalived_master_rvs_backup, Flavour::V2, 1);
interop_test!(v3_rvs_master_keepalived_backup, Flavour::V3, 0);
interop_test!(v3_keepalived_master_rvs_backup, Flavour::V3, 1);
interop_test!(v3_ipv6_rvs_master_keepalived_backup, Flavour::V3Ipv6, 0);
interop_test!(v3_ipv6_keepalived_master_rvs_backup, Flavour::V3Ipv6, 1);
interop_test!(
    v3_unicast_rvs_master_keepalived_backup,
    Flavour::V3Unicast,
    0
);
interop_test!(
    v3_unicast_keepalived_master_rvs_backup,
    Flavour::V3Unicast,
    1
);

/// SIGHUP on both sides of a mixed pair (v3, 0.1 s): the real keepalived, MASTER, reloaded
/// with a lower priority (still above rvs's) stays MASTER and rvs stays BACKUP — the
/// keepalived behaviour `Node::reconfigure` follows; rvs, BACKUP, reloaded with a priority
/// above keepalived's preempts; rvs, now MASTER, reloaded with another priority stays
/// MASTER and keepalived stays BACKUP.
#[test]
fn sighup_keeps_the_master_on_either_side() -> Result<()> {
    if !rvs_lab::root_or_skip("sighup_keeps_the_master_on_either_side") {
        return Ok(());
    }
    let f = Flavour::V3;
    let vip = f.vip();
    let mut lab = Lab::new(2)?;
    let mut rvs = lab.rvs(0, &rvs_config(f, 100))?;
    let mut ka = lab.keepalived(1, &keepalived_config(f, 200))?;
    let settle = f.mdi_100() * 2 + Duration::from_secs(2);
    let ka_master =
        |lab: &Lab| -> Result<bool> { Ok(lab.nodes[1].holds(vip)? && !lab.nodes[0].holds(vip)?) };
    let rvs_master =
        |lab: &Lab| -> Result<bool> { Ok(lab.nodes[0].holds(vip)? && !lab.nodes[1].holds(vip)?) };
    wait_until(settle, || ka_master(&lab)).context("keepalived elected")?;
    let count = |log: &str, what: &str| log.matches(what).count();

    // keepalived MASTER: 200 -> 150.
    let ka_name = lab.nodes[1].name.clone();
    lab.file(
        &format!("{ka_name}-keepalived.conf"),
        &keepalived_config(f, 150),
    )?;
    let ka_backups = count(&ka.output(), "Entering BACKUP STATE");
    let rvs_changes = count(&rvs.output(), "state change");
    ka.signal(nix::sys::signal::Signal::SIGHUP)?;
    wait_until(Duration::from_secs(10), || {
        Ok(ka.output().contains("Reload complete"))
    })
    .with_context(|| format!("keepalived reloaded:\n{}", ka.output()))?;
    holds_for(Duration::from_secs(2), || ka_master(&lab))
        .context("keepalived stays MASTER through its reload")?;
    ensure!(count(&ka.output(), "Entering BACKUP STATE") == ka_backups);
    ensure!(count(&rvs.output(), "state change") == rvs_changes);

    // rvs BACKUP: 100 -> 250 preempts keepalived's 150.
    let rvs_name = lab.nodes[0].name.clone();
    lab.file(&format!("{rvs_name}-rvs.toml"), &rvs_config(f, 250))?;
    rvs.signal(nix::sys::signal::Signal::SIGHUP)?;
    wait_until(settle, || rvs_master(&lab)).context("rvs preempts after its reload")?;

    // rvs MASTER: 250 -> 220, still above 150: nothing changes hands.
    let ka_masters = count(&ka.output(), "Entering MASTER STATE");
    let rvs_changes = count(&rvs.output(), "state change");
    lab.file(&format!("{rvs_name}-rvs.toml"), &rvs_config(f, 220))?;
    rvs.signal(nix::sys::signal::Signal::SIGHUP)?;
    wait_until(Duration::from_secs(5), || {
        Ok(rvs.output().contains("reloaded in place"))
    })
    .context("rvs reloaded")?;
    holds_for(Duration::from_secs(2), || rvs_master(&lab))
        .context("rvs stays MASTER through its reload")?;
    ensure!(count(&ka.output(), "Entering MASTER STATE") == ka_masters);
    ensure!(count(&rvs.output(), "state change") == rvs_changes);
    rvs.stop()?;
    ka.stop()?;
    let all = format!("{}\n{}", rvs.output(), ka.output());
    let errors = protocol_errors(&all);
    ensure!(errors.is_empty(), "protocol errors logged: {errors:#?}");
    Ok(())
}
