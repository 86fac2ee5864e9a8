//! keepalived.conf → [`VrrpConfig`]: the VRRP blocks (`vrrp_instance`, `vrrp_script`,
//! `vrrp_sync_group` and the `vrrp_*` settings of `global_defs`) of the typed model that
//! `rvs-keepalived` reads, mapped onto rvs-vrrp's configuration, so `rvs-vrrpd --keepalived
//! /etc/keepalived/keepalived.conf` replaces keepalived's VRRP.
//!
//! Every option both sides know is carried over; everything rvs-vrrp cannot do becomes a
//! warning naming the keepalived file and line (never dropped silently). Where keepalived
//! itself repairs a setting with a warning (a fractional VRRPv2 `advert_int`, a
//! `track_script` naming no script, a sync group member that does not exist), the same
//! repair is made here and reported. The result always passes [`VrrpConfig::validate`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::Loc;
use crate::model::{
    AuthType, KeepalivedConf, ScriptConf, Tracked, VirtualIp, VrrpInstance, VrrpNotify, VrrpScript,
    VrrpState, VrrpSyncGroup,
};

use rvs_vrrp::config::{
    AuthConfig, AuthKind, ConfigError, InitialState, Scope, SyncGroupConfig, TrackInterfaceConfig,
    TrackScriptConfig, VipConfig, VrrpConfig, VrrpInstanceConfig, VrrpScriptConfig,
};
use rvs_vrrp::wire::{Family, MAX_ADVER_INT_V3, Version};

/// Why the VRRP blocks of a keepalived.conf cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A block lacks something rvs-vrrp (and keepalived) cannot do without.
    #[error("{at}: {message}")]
    Block {
        /// `file:line` of the block.
        at: String,
        /// What is missing or wrong and how to fix it.
        message: String,
    },
    /// The mapped configuration does not validate.
    #[error("the VRRP configuration mapped from keepalived.conf is invalid: {0}")]
    Invalid(#[from] ConfigError),
}

/// `file:line` of an optional location (`keepalived.conf` when the model has none).
fn at(loc: Option<&Loc>) -> String {
    loc.map(Loc::file_line)
        .unwrap_or_else(|| "keepalived.conf".to_owned())
}

/// Collects the warnings, each prefixed with `file:line`.
struct Warn(Vec<String>);

impl Warn {
    fn at(&mut self, loc: Option<&Loc>, message: impl AsRef<str>) {
        self.0.push(format!("{}: {}", at(loc), message.as_ref()));
    }
}

/// Maps the VRRP blocks of `conf` onto a validated [`VrrpConfig`], with a warning (naming
/// the keepalived file and line) for every setting rvs-vrrp does not carry out.
pub fn from_keepalived(conf: &KeepalivedConf) -> Result<(VrrpConfig, Vec<String>), Error> {
    let mut w = Warn(Vec::new());
    let mut config = VrrpConfig::default();
    let g = &conf.global_defs;
    if let Some(v) = g.vrrp_version {
        config.global.vrrp_version = if v == 3 { Version::V3 } else { Version::V2 };
    }
    global_warnings(conf, &mut w);

    for s in &conf.vrrp_scripts {
        if let Some(s) = script(s, &mut w) {
            config.scripts.push(s);
        }
    }
    let scripts: BTreeSet<&str> = config.scripts.iter().map(|s| s.name.as_str()).collect();
    for i in &conf.vrrp_instances {
        let mapped = instance(conf, i, &scripts, &mut w)?;
        config.instances.push(mapped);
    }
    let mut member_of: BTreeSet<String> = BTreeSet::new();
    for g in &conf.vrrp_sync_groups {
        if let Some(g) = sync_group(g, &config, &mut member_of, &mut w) {
            config.sync_groups.push(g);
        }
    }
    config.validate()?;
    Ok((config, w.0))
}

/// Warns about the `global_defs` settings that concern VRRP and are not carried out.
fn global_warnings(conf: &KeepalivedConf, w: &mut Warn) {
    let has_scripts = !conf.vrrp_scripts.is_empty()
        || conf.vrrp_instances.iter().any(|i| has_notify(&i.notify))
        || conf.vrrp_sync_groups.iter().any(|g| has_notify(&g.notify));
    for kw in &conf.global_defs.keywords {
        let why = match kw.value.as_str() {
            "vrrp_version"
            | "vrrp_garp_master_delay"
            | "vrrp_garp_master_repeat"
            | "vrrp_garp_master_refresh"
            | "vrrp_garp_master_refresh_repeat" => continue,
            "vrrp_strict" => {
                "rvs-vrrp does not enforce keepalived's strict RFC mode (no extra checks on received adverts, no iptables rules); ignored"
            }
            "vrrp_mcast_group4" | "vrrp_mcast_group6" => {
                "rvs-vrrp sends to the standard VRRP multicast group only; ignored (use unicast_peer for other destinations)"
            }
            "vrrp_garp_interval" | "vrrp_gna_interval" => {
                "rvs-vrrp sends each burst's gratuitous ARPs / NAs back to back; ignored"
            }
            "vrrp_skip_check_adv_addr" => {
                "rvs-vrrp does not compare the addresses in adverts with its own; ignored"
            }
            "script_user" if has_scripts => {
                "rvs-vrrpd runs scripts as its own user; set the user by running rvs-vrrpd as it; ignored"
            }
            "enable_script_security" if has_scripts => {
                "rvs-vrrpd does not check the ownership and permissions of scripts; ignored"
            }
            "default_interface" => continue,
            name if name.starts_with("vrrp_") => "not supported by rvs-vrrp; ignored",
            _ => continue,
        };
        w.at(Some(&kw.loc), format!("global_defs: `{}`: {why}", kw.value));
    }
}

fn has_notify(n: &VrrpNotify) -> bool {
    n.master.is_some()
        || n.backup.is_some()
        || n.fault.is_some()
        || n.stop.is_some()
        || n.any.is_some()
}

/// A notify or check script's words (split by the keepalived model's one splitter,
/// [`crate::model::split_script`]); warns about a user/group rvs cannot apply.
fn script_line(s: &ScriptConf, what: &str, w: &mut Warn) -> Option<Vec<String>> {
    if s.argv.is_empty() {
        w.at(Some(&s.loc), format!("`{what}` is empty; ignored"));
        return None;
    }
    if s.user.is_some() || s.group.is_some() {
        w.at(
            Some(&s.loc),
            format!(
                "`{what}`: rvs-vrrpd runs scripts as its own user, not as the user/group given; user ignored"
            ),
        );
    }
    Some(s.argv.clone())
}

fn script(s: &VrrpScript, w: &mut Warn) -> Option<VrrpScriptConfig> {
    let loc = s.loc.as_ref();
    let Some(cmd) = &s.script else {
        w.at(
            loc,
            format!(
                "vrrp_script {} has no `script`; ignored (as keepalived), and so are the track_script entries naming it",
                s.name
            ),
        );
        return None;
    };
    let line = script_line(cmd, "script", w)?;
    if s.weight_reverse {
        w.at(
            loc,
            format!(
                "vrrp_script {}: `weight ... reverse` is not supported by rvs-vrrp; the weight applies unreversed",
                s.name
            ),
        );
    }
    if s.user.is_some() {
        w.at(
            loc,
            format!(
                "vrrp_script {}: `user`: rvs-vrrpd runs scripts as its own user; ignored",
                s.name
            ),
        );
    }
    Some(VrrpScriptConfig {
        name: s.name.clone(),
        script: line,
        interval: s
            .interval
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(1)),
        timeout: s.timeout.filter(|d| !d.is_zero()),
        weight: s.weight.unwrap_or(0),
        rise: s.rise.unwrap_or(1).max(1),
        fall: s.fall.unwrap_or(1).max(1),
        init_fail: s.init_fail,
    })
}

fn scope(text: &str) -> Option<Scope> {
    Some(match text {
        "global" => Scope::Global,
        "site" => Scope::Site,
        "link" => Scope::Link,
        "host" => Scope::Host,
        "nowhere" => Scope::Nowhere,
        _ => return None,
    })
}

fn vip(v: &VirtualIp, instance: &str, w: &mut Warn) -> VipConfig {
    let max = if v.address.is_ipv4() { 32 } else { 128 };
    if v.brd.is_some() {
        w.at(
            Some(&v.loc),
            format!(
                "vrrp_instance {instance}: virtual address {}: `brd` is not supported by rvs-vrrp; the kernel's default broadcast is used",
                v.address
            ),
        );
    }
    if v.no_track {
        w.at(
            Some(&v.loc),
            format!(
                "vrrp_instance {instance}: virtual address {}: `no_track` is not supported by rvs-vrrp; its interface going down still counts",
                v.address
            ),
        );
    }
    let mut label = v.label.clone();
    if label.is_some() && !v.address.is_ipv4() {
        w.at(
            Some(&v.loc),
            format!(
                "vrrp_instance {instance}: virtual address {}: `label` is IPv4-only; ignored",
                v.address
            ),
        );
        label = None;
    }
    let scope = v.scope.as_deref().and_then(|s| {
        let sc = scope(s);
        if sc.is_none() {
            w.at(
                Some(&v.loc),
                format!("vrrp_instance {instance}: unknown scope {s:?}; global used"),
            );
        }
        sc
    });
    VipConfig {
        address: v.address,
        prefix_len: v.prefix_len.unwrap_or(max),
        dev: v.dev.clone(),
        label,
        scope,
    }
}

fn tracked_interfaces(list: &[Tracked], instance: &str, w: &mut Warn) -> Vec<TrackInterfaceConfig> {
    list.iter()
        .map(|t| {
            if t.reverse {
                w.at(
                    Some(&t.loc),
                    format!(
                        "vrrp_instance {instance}: track_interface {}: `reverse` is not supported by rvs-vrrp; the weight applies unreversed",
                        t.name
                    ),
                );
            }
            TrackInterfaceConfig {
                name: t.name.clone(),
                weight: t.weight.unwrap_or(0),
            }
        })
        .collect()
}

/// Rounds `d` to what `version` can carry, warning when that changes it.
fn advert_int(
    d: Duration,
    version: Version,
    loc: Option<&Loc>,
    name: &str,
    w: &mut Warn,
) -> Duration {
    let fixed = match version {
        Version::V2 => {
            let s = d.as_secs_f64().round().clamp(1.0, 255.0);
            Duration::from_secs(s as u64)
        }
        Version::V3 => {
            let cs = (d.as_secs_f64() * 100.0)
                .round()
                .clamp(1.0, f64::from(MAX_ADVER_INT_V3));
            Duration::from_millis(cs as u64 * 10)
        }
    };
    if fixed != d {
        let why = match version {
            Version::V2 => "VRRP version 2 carries whole seconds 1..=255",
            Version::V3 => "VRRP version 3 carries hundredths of a second, 0.01..=40.95",
        };
        w.at(
            loc,
            format!(
                "vrrp_instance {name}: advert_int {} s is rounded to {} s: {why}",
                d.as_secs_f64(),
                fixed.as_secs_f64()
            ),
        );
    }
    fixed
}

fn notify_line(s: &Option<ScriptConf>, what: &str, w: &mut Warn) -> Option<Vec<String>> {
    s.as_ref().and_then(|s| script_line(s, what, w))
}

fn instance(
    conf: &KeepalivedConf,
    i: &VrrpInstance,
    scripts: &BTreeSet<&str>,
    w: &mut Warn,
) -> Result<VrrpInstanceConfig, Error> {
    let loc = i.loc.as_ref();
    let name = i.name.as_str();
    let missing = |what: &str| Error::Block {
        at: at(loc),
        message: format!("vrrp_instance {name}: {what}"),
    };
    let interface = match (&i.interface, &conf.global_defs.default_interface) {
        (Some(ifname), _) => ifname.clone(),
        (None, Some(ifname)) => ifname.clone(),
        (None, None) => {
            return Err(missing(
                "`interface` is required (or `default_interface` in global_defs)",
            ));
        }
    };
    let vrid = i
        .virtual_router_id
        .ok_or_else(|| missing("`virtual_router_id` is required (1..=255)"))?;
    let mut out = VrrpInstanceConfig::new(name, &interface, vrid);
    out.state = match i.state {
        Some(VrrpState::Master) => InitialState::Master,
        Some(VrrpState::Backup) | None => InitialState::Backup,
    };
    if let Some(p) = i.priority {
        out.priority = p;
    }

    // The family comes from the VIPs (as keepalived: the first one decides); addresses
    // of the other family cannot go in the same advert.
    let family = i
        .virtual_ipaddress
        .first()
        .map(|v| Family::of(v.address))
        .or_else(|| i.unicast_peer.first().map(|p| Family::of(p.address)))
        .unwrap_or(Family::V4);
    for v in &i.virtual_ipaddress {
        if Family::of(v.address) != family {
            w.at(
                Some(&v.loc),
                format!(
                    "vrrp_instance {name}: virtual address {} is not of the instance's family (its first address decides); not added: put it in an instance of its own",
                    v.address
                ),
            );
            continue;
        }
        out.virtual_ipaddress.push(vip(v, name, w));
    }
    for v in &i.virtual_ipaddress_excluded {
        w.at(
            Some(&v.loc),
            format!(
                "vrrp_instance {name}: virtual_ipaddress_excluded {} is not supported by rvs-vrrp; not added (move it to virtual_ipaddress)",
                v.address
            ),
        );
    }

    let mut version = i
        .version
        .map(|v| if v == 3 { Version::V3 } else { Version::V2 });
    let effective = version.unwrap_or(match conf.global_defs.vrrp_version {
        Some(3) => Version::V3,
        _ => Version::V2,
    });
    if family == Family::V6 && effective == Version::V2 {
        w.at(
            loc,
            format!(
                "vrrp_instance {name}: IPv6 needs VRRP version 3; version 3 used (as keepalived)"
            ),
        );
        version = Some(Version::V3);
    }
    out.version = version;
    let effective = version.unwrap_or(effective);
    if let Some(d) = i.advert_int {
        out.advert_int = advert_int(d, effective, loc, name, w);
    }

    if let Some(a) = &i.authentication {
        match (effective, a.auth_type) {
            (Version::V3, _) => w.at(
                loc,
                format!("vrrp_instance {name}: `authentication` does not exist in VRRP version 3; ignored (as keepalived)"),
            ),
            (Version::V2, Some(AuthType::Ah)) => w.at(
                loc,
                format!("vrrp_instance {name}: auth_type AH is not supported by rvs-vrrp; adverts are sent without authentication, which a keepalived peer using AH rejects: use auth_type PASS (or none) on every node"),
            ),
            (Version::V2, Some(AuthType::Pass) | None) => match a.auth_pass.as_deref() {
                Some(pass) if !pass.is_empty() => {
                    out.authentication = Some(AuthConfig {
                        auth_type: AuthKind::Pass,
                        auth_pass: pass.to_owned(),
                    })
                }
                _ => w.at(
                    loc,
                    format!("vrrp_instance {name}: `authentication` without `auth_pass`; no authentication used"),
                ),
            },
        }
    }

    out.nopreempt = i.nopreempt;
    if let Some(d) = i.preempt_delay {
        out.preempt_delay = d;
    }

    out.unicast_peer = i
        .unicast_peer
        .iter()
        .filter(|p| {
            let ok = Family::of(p.address) == family;
            if !ok {
                w.at(
                    loc,
                    format!("vrrp_instance {name}: unicast_peer {} is not of the instance's family; ignored", p.address),
                );
            }
            ok
        })
        .map(|p| p.address)
        .collect();
    if i.unicast_peer
        .iter()
        .any(|p| p.min_ttl.is_some() || p.max_ttl.is_some())
    {
        w.at(
            loc,
            format!("vrrp_instance {name}: unicast_peer `min_ttl`/`max_ttl` are not supported by rvs-vrrp; adverts are accepted whatever their TTL"),
        );
    }
    let src = |a: IpAddr, what: &str, w: &mut Warn| -> Option<IpAddr> {
        if Family::of(a) != family {
            w.at(
                loc,
                format!(
                    "vrrp_instance {name}: {what} {a} is not of the instance's family; ignored"
                ),
            );
            None
        } else {
            Some(a)
        }
    };
    out.unicast_src_ip = i.unicast_src_ip.and_then(|a| src(a, "unicast_src_ip", w));
    if let Some(m) = i.mcast_src_ip {
        // keepalived uses either keyword as the source of the adverts.
        if out.unicast_src_ip.is_none() && !out.unicast_peer.is_empty() {
            out.unicast_src_ip = src(m, "mcast_src_ip", w);
        } else {
            w.at(
                loc,
                format!("vrrp_instance {name}: `mcast_src_ip` {m}: rvs-vrrp sends multicast adverts from the interface's primary address; ignored"),
            );
        }
    }
    if out.unicast_src_ip.is_some() && out.unicast_peer.is_empty() {
        w.at(
            loc,
            format!("vrrp_instance {name}: `unicast_src_ip` without any unicast_peer; ignored (adverts are multicast)"),
        );
        out.unicast_src_ip = None;
    }

    out.track_interface = tracked_interfaces(&i.track_interface, name, w);
    for t in &i.track_script {
        if !scripts.contains(t.name.as_str()) {
            w.at(
                Some(&t.loc),
                format!("vrrp_instance {name}: track_script {} names no usable vrrp_script; ignored (as keepalived)", t.name),
            );
            continue;
        }
        if t.reverse {
            w.at(
                Some(&t.loc),
                format!("vrrp_instance {name}: track_script {}: `reverse` is not supported by rvs-vrrp; the weight applies unreversed", t.name),
            );
        }
        out.track_script.push(TrackScriptConfig {
            name: t.name.clone(),
            weight: t.weight,
        });
    }

    out.notify_master = notify_line(&i.notify.master, "notify_master", w);
    out.notify_backup = notify_line(&i.notify.backup, "notify_backup", w);
    out.notify_fault = notify_line(&i.notify.fault, "notify_fault", w);
    out.notify_stop = notify_line(&i.notify.stop, "notify_stop", w);
    out.notify = notify_line(&i.notify.any, "notify", w);
    if let Some(s) = &i.notify.master_rx_lower_pri {
        w.at(
            Some(&s.loc),
            format!("vrrp_instance {name}: `notify_master_rx_lower_pri` is not supported by rvs-vrrp; ignored"),
        );
    }

    let g = &conf.global_defs;
    if let Some(d) = i.garp_master_delay.or(g.vrrp_garp_master_delay) {
        out.garp_master_delay = Duration::from_secs(u64::from(d));
    }
    if let Some(r) = i.garp_master_repeat.or(g.vrrp_garp_master_repeat) {
        if r == 0 {
            w.at(
                loc,
                format!("vrrp_instance {name}: garp_master_repeat 0 would send no gratuitous ARP; 1 used"),
            );
        }
        out.garp_master_repeat = r.max(1);
    }
    if let Some(d) = i.garp_master_refresh.or(g.vrrp_garp_master_refresh) {
        out.garp_master_refresh = Duration::from_secs(u64::from(d));
    }
    if let Some(r) = i
        .garp_master_refresh_repeat
        .or(g.vrrp_garp_master_refresh_repeat)
    {
        out.garp_master_refresh_repeat = r.max(1);
    }
    if let Some(v) = &i.use_vmac {
        out.use_vmac = true;
        out.vmac_name = v.name.clone();
        if let Some(mac) = &v.mac {
            w.at(
                loc,
                format!("vrrp_instance {name}: use_vmac MAC {mac}: rvs-vrrp always uses the VRRP virtual MAC (00:00:5e:00:01:VRID, 00:00:5e:00:02:VRID for IPv6); ignored"),
            );
        }
    }

    let mut unsupported = Vec::new();
    if i.vmac_xmit_base {
        unsupported.push("vmac_xmit_base (adverts are sent from the VMAC interface)");
    }
    if i.garp_lower_prio_delay.is_some() || i.garp_lower_prio_repeat.is_some() {
        unsupported.push("garp_lower_prio_delay / garp_lower_prio_repeat");
    }
    if i.accept.is_some() {
        unsupported.push("accept / no_accept (rvs-vrrp adds the addresses and lets the kernel accept traffic to them)");
    }
    if i.dont_track_primary {
        unsupported
            .push("dont_track_primary (the instance's interface going down always means FAULT)");
    }
    if i.strict_mode.is_some() {
        unsupported.push("strict_mode");
    }
    for what in unsupported {
        w.at(
            loc,
            format!("vrrp_instance {name}: `{what}` is not supported by rvs-vrrp; ignored"),
        );
    }
    Ok(out)
}

fn sync_group(
    g: &VrrpSyncGroup,
    config: &VrrpConfig,
    member_of: &mut BTreeSet<String>,
    w: &mut Warn,
) -> Option<SyncGroupConfig> {
    let loc = g.loc.as_ref();
    let name = g.name.as_str();
    let mut group = Vec::new();
    for m in &g.group {
        if !config.instances.iter().any(|i| &i.name == m) {
            w.at(
                loc,
                format!(
                    "vrrp_sync_group {name}: {m} is not a vrrp_instance; ignored (as keepalived)"
                ),
            );
        } else if !member_of.insert(m.clone()) {
            w.at(
                loc,
                format!(
                    "vrrp_sync_group {name}: {m} is already in another sync group; ignored here"
                ),
            );
        } else {
            group.push(m.clone());
        }
    }
    for t in g.track_interface.iter().chain(&g.track_script) {
        w.at(
            Some(&t.loc),
            format!("vrrp_sync_group {name}: track_interface / track_script {} in a sync group is not supported by rvs-vrrp; ignored: track it in each member vrrp_instance", t.name),
        );
    }
    if let Some(s) = &g.notify.master_rx_lower_pri {
        w.at(
            Some(&s.loc),
            format!("vrrp_sync_group {name}: `notify_master_rx_lower_pri` is not supported by rvs-vrrp; ignored"),
        );
    }
    if group.is_empty() {
        w.at(
            loc,
            format!("vrrp_sync_group {name} has no usable member; ignored"),
        );
        return None;
    }
    Some(SyncGroupConfig {
        name: name.to_owned(),
        group,
        notify_master: notify_line(&g.notify.master, "notify_master", w),
        notify_backup: notify_line(&g.notify.backup, "notify_backup", w),
        notify_fault: notify_line(&g.notify.fault, "notify_fault", w),
        notify_stop: notify_line(&g.notify.stop, "notify_stop", w),
        notify: notify_line(&g.notify.any, "notify", w),
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::Path;

    use super::*;

    fn map(text: &str) -> (VrrpConfig, Vec<String>) {
        let import =
            crate::load_str(Path::new("/etc/keepalived/keepalived.conf"), text).expect("loads");
        from_keepalived(&import.keepalived).expect("maps")
    }

    const TWO_INSTANCES: &str = r#"
global_defs {
    router_id lb1
    vrrp_version 3
    vrrp_garp_master_refresh 60
}

vrrp_script chk_http {
    script "/usr/bin/curl -sf 'http://127.0.0.1/'"
    interval 2
    timeout 3
    weight -20
    rise 2
    fall 3
}

vrrp_sync_group G1 {
    group {
        VI_1
        VI_2
    }
    notify_master "/etc/keepalived/master.sh G1"
    notify /etc/keepalived/notify.sh
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.5
    nopreempt
    preempt_delay 10
    unicast_src_ip 198.18.0.1
    unicast_peer {
        198.18.0.2
        198.18.0.3
    }
    virtual_ipaddress {
        198.18.1.10/24 dev eth1 label eth1:vip scope link
        198.18.1.11
    }
    track_interface {
        eth1 weight -10
        eth2
    }
    track_script {
        chk_http weight -30
    }
    notify_master "'/etc/keepalived/to master.sh' VI_1"
    notify_backup /etc/keepalived/backup.sh
    notify_fault /etc/keepalived/fault.sh
    notify_stop /etc/keepalived/stop.sh
    garp_master_delay 2
    garp_master_repeat 3
    garp_master_refresh_repeat 2
    use_vmac vrrp51
}

vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 52
    version 2
    authentication {
        auth_type PASS
        auth_pass s3cret
    }
    virtual_ipaddress {
        198.18.2.20
    }
    track_script {
        chk_http
    }
}
"#;

    #[test]
    fn maps_two_instances_a_sync_group_a_script_and_unicast_peers() {
        let (config, warnings) = map(TWO_INSTANCES);
        assert!(warnings.is_empty(), "{warnings:#?}");
        let ip = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
        let mut vi1 = VrrpInstanceConfig::new("VI_1", "eth0", 51);
        vi1.state = InitialState::Master;
        vi1.priority = 150;
        vi1.advert_int = Duration::from_millis(500);
        vi1.nopreempt = true;
        vi1.preempt_delay = Duration::from_secs(10);
        vi1.unicast_src_ip = Some(ip([198, 18, 0, 1]));
        vi1.unicast_peer = vec![ip([198, 18, 0, 2]), ip([198, 18, 0, 3])];
        vi1.virtual_ipaddress = vec![
            VipConfig {
                address: ip([198, 18, 1, 10]),
                prefix_len: 24,
                dev: Some("eth1".into()),
                label: Some("eth1:vip".into()),
                scope: Some(Scope::Link),
            },
            VipConfig {
                address: ip([198, 18, 1, 11]),
                prefix_len: 32,
                dev: None,
                label: None,
                scope: None,
            },
        ];
        vi1.track_interface = vec![
            TrackInterfaceConfig {
                name: "eth1".into(),
                weight: -10,
            },
            TrackInterfaceConfig {
                name: "eth2".into(),
                weight: 0,
            },
        ];
        vi1.track_script = vec![TrackScriptConfig {
            name: "chk_http".into(),
            weight: Some(-30),
        }];
        vi1.notify_master = Some(vec!["/etc/keepalived/to master.sh".into(), "VI_1".into()]);
        vi1.notify_backup = Some(vec!["/etc/keepalived/backup.sh".into()]);
        vi1.notify_fault = Some(vec!["/etc/keepalived/fault.sh".into()]);
        vi1.notify_stop = Some(vec!["/etc/keepalived/stop.sh".into()]);
        vi1.garp_master_delay = Duration::from_secs(2);
        vi1.garp_master_repeat = 3;
        vi1.garp_master_refresh = Duration::from_secs(60);
        vi1.garp_master_refresh_repeat = 2;
        vi1.use_vmac = true;
        vi1.vmac_name = Some("vrrp51".into());

        let mut vi2 = VrrpInstanceConfig::new("VI_2", "eth0", 52);
        vi2.version = Some(Version::V2);
        vi2.authentication = Some(AuthConfig {
            auth_type: AuthKind::Pass,
            auth_pass: "s3cret".into(),
        });
        vi2.virtual_ipaddress = vec![VipConfig {
            address: ip([198, 18, 2, 20]),
            prefix_len: 32,
            dev: None,
            label: None,
            scope: None,
        }];
        vi2.track_script = vec![TrackScriptConfig {
            name: "chk_http".into(),
            weight: None,
        }];
        vi2.garp_master_refresh = Duration::from_secs(60);

        let mut expected = VrrpConfig::default();
        expected.global.vrrp_version = Version::V3;
        expected.scripts = vec![VrrpScriptConfig {
            name: "chk_http".into(),
            script: vec![
                "/usr/bin/curl".into(),
                "-sf".into(),
                "http://127.0.0.1/".into(),
            ],
            interval: Duration::from_secs(2),
            timeout: Some(Duration::from_secs(3)),
            weight: -20,
            rise: 2,
            fall: 3,
            init_fail: false,
        }];
        expected.instances = vec![vi1, vi2];
        expected.sync_groups = vec![SyncGroupConfig {
            name: "G1".into(),
            group: vec!["VI_1".into(), "VI_2".into()],
            notify_master: Some(vec!["/etc/keepalived/master.sh".into(), "G1".into()]),
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: Some(vec!["/etc/keepalived/notify.sh".into()]),
        }];
        assert_eq!(config, expected);
    }

    #[test]
    fn options_rvs_lacks_warn_with_file_and_line() {
        let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 7\n    authentication {\n        auth_type AH\n        auth_pass x\n    }\n    virtual_ipaddress {\n        198.18.0.10 brd 198.18.0.255\n    }\n    track_script {\n        nope\n    }\n    dont_track_primary\n    advert_int 1.5\n}\n";
        let (config, warnings) = map(text);
        let i = &config.instances[0];
        assert_eq!(i.authentication, None);
        assert_eq!(i.advert_int, Duration::from_secs(2));
        assert!(i.track_script.is_empty());
        let expect = [
            ("keepalived.conf:1: ", "auth_type AH is not supported"),
            ("keepalived.conf:9: ", "`brd` is not supported"),
            (
                "keepalived.conf:12: ",
                "track_script nope names no usable vrrp_script",
            ),
            ("keepalived.conf:1: ", "`dont_track_primary"),
            ("keepalived.conf:1: ", "advert_int 1.5 s is rounded to 2 s"),
        ];
        for (at, what) in expect {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.starts_with(&format!("/etc/keepalived/{at}")) && w.contains(what)),
                "no {at}{what:?} in {warnings:#?}"
            );
        }
        assert_eq!(warnings.len(), expect.len(), "{warnings:#?}");
    }

    #[test]
    fn missing_required_options_are_located_errors() {
        let text = "vrrp_instance VI_1 {\n    interface eth0\n}\n";
        let import = crate::load_str(Path::new("k.conf"), text).unwrap();
        let err = from_keepalived(&import.keepalived).unwrap_err().to_string();
        assert!(
            err.starts_with("k.conf:1: ") && err.contains("virtual_router_id"),
            "{err}"
        );
        let text = "vrrp_instance VI_1 {\n    virtual_router_id 1\n}\n";
        let import = crate::load_str(Path::new("k.conf"), text).unwrap();
        let err = from_keepalived(&import.keepalived).unwrap_err().to_string();
        assert!(err.contains("`interface` is required"), "{err}");
        let with_default = format!("global_defs {{\n    default_interface eth9\n}}\n{text}");
        assert_eq!(map(&with_default).0.instances[0].interface, "eth9");
    }
}
