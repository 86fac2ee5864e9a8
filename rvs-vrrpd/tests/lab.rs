//! Two rvs-vrrpd nodes on a bridge with real processes (root): the MASTER is SIGKILLed and
//! its host goes silent; the BACKUP owns the VIP within Master_Down_Interval + 200 ms,
//! answers ARP for it, and a client asking in a loop sees service resume; the old MASTER
//! comes back and preempts (or, with nopreempt, does not).

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use common::{ClientLoop, Lab, VIP, holds_for, protocol_errors, sigkill, wait_until};

/// VRRPv3, advert 0.1 s.
fn rvs_config(priority: u8, nopreempt: bool) -> String {
    format!(
        r#"
[global]
vrrp_version = 3

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = {priority}
advert_int = 0.1
nopreempt = {nopreempt}
garp_master_delay = 1
virtual_ipaddress = ["{VIP}/24 dev eth0 label eth0:vip"]
"#
    )
}

/// Master_Down_Interval of the priority-100 backup: 3 × 10 cs + 156 × 10 / 256 cs.
const MDI_100: Duration = Duration::from_millis(360);
const SLACK: Duration = Duration::from_millis(200);

fn failover(nopreempt: bool) -> Result<()> {
    let mut lab = Lab::new(2)?;
    let mut master = lab.rvs(0, &rvs_config(200, nopreempt))?;
    let mut backup = lab.rvs(1, &rvs_config(100, nopreempt))?;
    let (n1, n2) = (&lab.nodes[0], &lab.nodes[1]);
    wait_until(Duration::from_secs(5), || n1.holds(VIP))?;
    holds_for(Duration::from_millis(500), || {
        Ok(n1.holds(VIP)? && !n2.holds(VIP)?)
    })?;
    ensure!(lab.ask(VIP)? == "n1");
    ensure!(lab.client_neigh(VIP)? == Some(n1.mac()?));
    // The label was applied.
    let shown = n1.ns.exec(&["ip", "-o", "addr", "show", "dev", "eth0"])?;
    ensure!(shown.contains("eth0:vip"), "no label in {shown}");

    let client = ClientLoop::start(&lab, VIP)?;
    client.wait_for("n1", 3, Instant::now(), Duration::from_secs(5))?;

    // Crash n1.
    sigkill(&mut master)?;
    let killed = Instant::now();
    lab.nodes[0].link_down()?;
    let took = wait_until(Duration::from_secs(5), || lab.nodes[1].holds(VIP))?;
    ensure!(
        took <= MDI_100 + SLACK,
        "backup took {took:?} to own the VIP (Master_Down_Interval {MDI_100:?} + {SLACK:?})"
    );
    // The gratuitous ARP moved the client's entry, and the client gets answers again.
    let n2mac = lab.nodes[1].mac()?;
    wait_until(Duration::from_secs(3), || {
        Ok(lab.client_neigh(VIP)? == Some(n2mac.clone()))
    })?;
    client.wait_for("n2", 3, killed, Duration::from_secs(10))?;
    // n2 answers ARP for the VIP: forget the entry and ask again.
    lab.client.exec(&["ip", "neigh", "flush", "dev", "eth0"])?;
    ensure!(lab.ask(VIP)? == "n2");
    ensure!(lab.client_neigh(VIP)? == Some(n2mac));

    // n1 comes back.
    lab.nodes[0].link_up()?;
    let back = Instant::now();
    let _restarted = lab.rvs(0, &rvs_config(200, nopreempt))?;
    let (n1, n2) = (&lab.nodes[0], &lab.nodes[1]);
    if nopreempt {
        holds_for(Duration::from_secs(2), || {
            Ok(n2.holds(VIP)? && !n1.holds(VIP)?)
        })?;
        ensure!(lab.ask(VIP)? == "n2");
    } else {
        wait_until(Duration::from_secs(5), || {
            Ok(n1.holds(VIP)? && !n2.holds(VIP)?)
        })?;
        client.wait_for("n1", 3, back, Duration::from_secs(10))?;
    }
    drop(client);
    backup.stop()?;
    let errors = protocol_errors(&backup.output());
    ensure!(errors.is_empty(), "rvs logged protocol errors: {errors:?}");
    Ok(())
}

#[test]
fn sigkill_master_backup_takes_over_and_old_master_preempts() -> Result<()> {
    if !rvs_lab::root_or_skip("VRRP failover lab") {
        return Ok(());
    }
    failover(false)
}

#[test]
fn nopreempt_keeps_the_new_master_after_restart() -> Result<()> {
    if !rvs_lab::root_or_skip("VRRP nopreempt lab") {
        return Ok(());
    }
    failover(true)
}

/// Real processes for the keepalived extras: a `vrrp_script` whose weight moves mastership,
/// `notify` with keepalived's arguments, and `use_vmac` (the client sees the virtual MAC
/// 00:00:5e:00:01:33 for the VIP whichever node holds it).
#[test]
fn track_script_notify_and_vmac() -> Result<()> {
    if !rvs_lab::root_or_skip("VRRP script/notify/VMAC lab") {
        return Ok(());
    }
    let mut lab = Lab::new(2)?;
    let flag = lab.file("n1-unhealthy", "")?;
    std::fs::remove_file(&flag)?;
    let notify_out = lab.file("n1-notify.log", "")?;
    let notify_sh = lab.file(
        "notify.sh",
        &format!("#!/bin/sh\necho \"$@\" >> {}\n", notify_out.display()),
    )?;
    let config = |priority: u8, script: bool| {
        let track = if script {
            format!(
                r#"
[[vrrp_script]]
name = "chk"
script = ["/bin/sh", "-c", "! test -e {flag}"]
interval = 0.1
weight = -100
"#,
                flag = flag.display()
            )
        } else {
            String::new()
        };
        format!(
            r#"
[global]
vrrp_version = 3
{track}
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = {priority}
advert_int = 0.1
use_vmac = true
garp_master_delay = 0
virtual_ipaddress = ["{VIP}/24"]
{tracks}
notify = ["/bin/sh", "{notify}"]
"#,
            tracks = if script {
                "track_script = [{ name = \"chk\" }]"
            } else {
                ""
            },
            notify = notify_sh.display(),
        )
    };
    let n1_config = config(150, true);
    let n2_config = config(100, false);
    let _a = lab.rvs(0, &n1_config)?;
    let _b = lab.rvs(1, &n2_config)?;
    let on_vmac = |n: usize| -> Result<bool> {
        let out = lab.nodes[n]
            .ns
            .exec(&["ip", "-o", "addr", "show", "dev", "vrrp.51"])?;
        Ok(out.contains(&format!("inet {VIP}/")))
    };
    wait_until(Duration::from_secs(5), || Ok(on_vmac(0)? && !on_vmac(1)?))?;
    wait_until(Duration::from_secs(5), || {
        Ok(lab.ask(VIP).ok().as_deref() == Some("n1"))
    })?;
    let vmac = "00:00:5e:00:01:33".to_owned();
    ensure!(lab.client_neigh(VIP)? == Some(vmac.clone()));

    // The check fails: priority 150 − 100 = 50 < 100, so n2 preempts.
    std::fs::write(&flag, "")?;
    wait_until(Duration::from_secs(5), || Ok(on_vmac(1)? && !on_vmac(0)?))?;
    wait_until(Duration::from_secs(5), || {
        Ok(lab.ask(VIP).ok().as_deref() == Some("n2"))
    })?;
    ensure!(lab.client_neigh(VIP)? == Some(vmac));
    // It recovers: n1 takes the VIP back.
    std::fs::remove_file(&flag)?;
    wait_until(Duration::from_secs(5), || Ok(on_vmac(0)? && !on_vmac(1)?))?;

    // Both nodes run notify with keepalived's arguments (they share the script and log).
    let log = std::fs::read_to_string(&notify_out)?;
    for line in [
        "INSTANCE VI_1 BACKUP 150",
        "INSTANCE VI_1 MASTER 150",
        "INSTANCE VI_1 BACKUP 50",
        "INSTANCE VI_1 MASTER 100",
    ] {
        ensure!(
            log.lines().any(|l| l == line),
            "no {line:?} in notify log:\n{log}"
        );
    }
    Ok(())
}
