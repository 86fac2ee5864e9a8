//! `rvs-vrrpd --keepalived FILE` against the real keepalived: both nodes run the same
//! keepalived.conf (VRRPv3, 0.1 s adverts, unicast peers, a tracked script, a notify
//! script) but for priority and addresses; rvs-vrrpd, with the higher priority, takes
//! the VIP from the running keepalived master, keeps it, runs its notify_master script,
//! and keepalived logs the move to BACKUP with no protocol error from either side.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{Lab, VIP, holds_for, protocol_errors, wait_until};

/// The keepalived.conf of a node at `me` with peer `peer`; `extra` goes in the instance.
fn conf(me: &str, peer: &str, priority: u8, extra: &str) -> String {
    format!(
        r#"
global_defs {{
    router_id {me}
    vrrp_version 3
    vrrp_garp_master_delay 1
    enable_script_security
    script_user root
}}

vrrp_script chk_true {{
    script "/bin/true"
    interval 1
    weight 10
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    unicast_src_ip {me}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {VIP}/24 dev eth0
    }}
    track_script {{
        chk_true
    }}
    {extra}
}}
"#
    )
}

#[test]
fn rvs_vrrpd_on_keepalived_conf_takes_master_from_keepalived() -> Result<()> {
    if !rvs_lab::root_or_skip("rvs_vrrpd_on_keepalived_conf_takes_master_from_keepalived") {
        return Ok(());
    }
    let mut lab = Lab::new(2)?;
    let (rvs_ip, ka_ip) = (lab.nodes[0].addr.clone(), lab.nodes[1].addr.clone());
    // keepalived first, alone: it becomes master, so rvs-vrrpd has to win an election.
    let mut ka = lab.keepalived(1, &conf(&ka_ip, &rvs_ip, 100, ""))?;
    wait_until(Duration::from_secs(5), || lab.nodes[1].holds(VIP)).context("keepalived master")?;

    let marker = std::env::temp_dir().join(format!("{}-became-master", lab.prefix));
    let notify = format!("notify_master \"/bin/touch {}\"", marker.display());
    let mut rvs = lab.rvs_keepalived_conf(0, &conf(&rvs_ip, &ka_ip, 200, &notify))?;
    wait_until(Duration::from_secs(5), || {
        Ok(lab.nodes[0].holds(VIP)? && !lab.nodes[1].holds(VIP)?)
    })
    .context("rvs-vrrpd takes over")?;
    holds_for(Duration::from_secs(1), || {
        Ok(lab.nodes[0].holds(VIP)? && !lab.nodes[1].holds(VIP)?)
    })
    .context("rvs-vrrpd stays master")?;
    let n1 = lab.nodes[0].name.clone();
    wait_until(Duration::from_secs(5), || {
        Ok(lab.ask(VIP).ok().as_deref() == Some(n1.as_str()))
    })
    .context("the client reaches rvs-vrrpd's node")?;
    wait_until(Duration::from_secs(5), || Ok(marker.exists())).context("notify_master ran")?;
    let _ = std::fs::remove_file(&marker);

    rvs.stop()?;
    ka.stop()?;
    let (rvs_log, ka_log) = (rvs.output(), ka.output());
    let errors = protocol_errors(&format!("{rvs_log}\n{ka_log}"));
    ensure!(errors.is_empty(), "protocol errors logged: {errors:#?}");
    ensure!(
        ka_log.contains("Entering BACKUP STATE"),
        "keepalived never went BACKUP:\n{ka_log}"
    );
    ensure!(
        rvs_log.contains("to=MASTER"),
        "rvs-vrrpd never logged MASTER:\n{rvs_log}"
    );
    Ok(())
}
