//! The VRRP configuration model: plain structs mirroring keepalived's `vrrp_instance`,
//! `vrrp_script` and `vrrp_sync_group` blocks (same option names, same defaults), which
//! `rvs-vrrpd` reads from TOML and a keepalived.conf importer can fill in directly.
//! [`VrrpConfig::validate`] checks the whole file and names what to fix.
//!
//! Durations are written in seconds (fractions allowed), as in keepalived.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::{Family, MAX_ADVER_INT_V3, Version};

/// A configuration that cannot be used; the message names the block and option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Everything one VRRP process runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpConfig {
    /// Settings that apply to every instance (keepalived's `global_defs`).
    #[serde(default)]
    pub global: GlobalConfig,
    /// Health scripts that instances track (`vrrp_script NAME { ... }`).
    #[serde(default, rename = "vrrp_script")]
    pub scripts: Vec<VrrpScriptConfig>,
    /// The virtual routers (`vrrp_instance NAME { ... }`).
    #[serde(default, rename = "vrrp_instance")]
    pub instances: Vec<VrrpInstanceConfig>,
    /// Groups of instances that change state together (`vrrp_sync_group NAME { ... }`).
    #[serde(default, rename = "vrrp_sync_group")]
    pub sync_groups: Vec<SyncGroupConfig>,
}

/// keepalived `global_defs` options that concern VRRP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// Default protocol version of every instance (`vrrp_version`, keepalived default 2).
    #[serde(default = "default_version")]
    pub vrrp_version: Version,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            vrrp_version: default_version(),
        }
    }
}

fn default_version() -> Version {
    Version::V2
}

/// The state an instance is configured to start in (`state MASTER|BACKUP`). As in
/// keepalived, `MASTER` with a priority below 255 still waits one advertisement interval
/// (plus skew) as BACKUP before taking over, so it never fights a running master.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitialState {
    /// Take over after one advertisement interval unless a master is heard.
    #[serde(rename = "MASTER", alias = "master")]
    Master,
    /// Wait Master_Down_Interval before taking over.
    #[default]
    #[serde(rename = "BACKUP", alias = "backup")]
    Backup,
}

/// `authentication { auth_type PASS; auth_pass SECRET }` (VRRP version 2 only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `PASS` (supported) or `AH` (rejected by validation: rvs does not implement it).
    pub auth_type: AuthKind,
    /// The password; only the first 8 bytes are sent, as keepalived.
    #[serde(default)]
    pub auth_pass: String,
}

/// keepalived's `auth_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthKind {
    /// Simple password.
    #[serde(rename = "PASS", alias = "pass")]
    Pass,
    /// IPsec AH; not supported.
    #[serde(rename = "AH", alias = "ah")]
    Ah,
}

/// Address scope of a virtual address (`scope` in keepalived's `virtual_ipaddress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// RT_SCOPE_UNIVERSE (0), the default.
    Global,
    /// RT_SCOPE_SITE (200).
    Site,
    /// RT_SCOPE_LINK (253).
    Link,
    /// RT_SCOPE_HOST (254).
    Host,
    /// RT_SCOPE_NOWHERE (255).
    Nowhere,
}

impl Scope {
    /// The kernel's scope number.
    pub fn value(self) -> u8 {
        match self {
            Scope::Global => 0,
            Scope::Site => 200,
            Scope::Link => 253,
            Scope::Host => 254,
            Scope::Nowhere => 255,
        }
    }
}

/// One `virtual_ipaddress` line: `ADDRESS[/LEN] [dev IFNAME] [label LABEL] [scope
/// SCOPE]`, written in TOML as that same string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VipConfig {
    /// The virtual address.
    pub address: IpAddr,
    /// Prefix length (default 32 for IPv4, 128 for IPv6, as keepalived).
    pub prefix_len: u8,
    /// Interface to put it on (default: the instance's interface).
    pub dev: Option<String>,
    /// Address label (IPv4 only, e.g. `eth0:1`).
    pub label: Option<String>,
    /// Address scope (default global).
    pub scope: Option<Scope>,
}

impl FromStr for VipConfig {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<VipConfig, ConfigError> {
        let err = |why: String| ConfigError(format!("virtual_ipaddress {text:?}: {why}"));
        let mut words = text.split_whitespace();
        let first = words.next().ok_or_else(|| err("empty".into()))?;
        let (addr, len) = match first.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (first, None),
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| err(format!("{addr:?} is not an IP address")))?;
        let max = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix_len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| err(format!("prefix length {l:?} is not 0..={max}")))?,
        };
        let mut vip = VipConfig {
            address,
            prefix_len,
            dev: None,
            label: None,
            scope: None,
        };
        while let Some(key) = words.next() {
            let value = words
                .next()
                .ok_or_else(|| err(format!("`{key}` needs a value")))?;
            match key {
                "dev" => vip.dev = Some(value.to_owned()),
                "label" => vip.label = Some(value.to_owned()),
                "scope" => {
                    vip.scope = Some(match value {
                        "global" => Scope::Global,
                        "site" => Scope::Site,
                        "link" => Scope::Link,
                        "host" => Scope::Host,
                        "nowhere" => Scope::Nowhere,
                        other => return Err(err(format!("unknown scope {other:?}"))),
                    })
                }
                other => {
                    return Err(err(format!(
                        "unknown option {other:?} (supported: dev, label, scope)"
                    )));
                }
            }
        }
        Ok(vip)
    }
}

impl TryFrom<String> for VipConfig {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<VipConfig, ConfigError> {
        s.parse()
    }
}

impl From<VipConfig> for String {
    fn from(v: VipConfig) -> String {
        v.to_string()
    }
}

impl fmt::Display for VipConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)?;
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        if let Some(l) = &self.label {
            write!(f, " label {l}")?;
        }
        if let Some(s) = self.scope {
            let name = match s {
                Scope::Global => "global",
                Scope::Site => "site",
                Scope::Link => "link",
                Scope::Host => "host",
                Scope::Nowhere => "nowhere",
            };
            write!(f, " scope {name}")?;
        }
        Ok(())
    }
}

/// `track_interface { IFNAME [weight W] }`: the interface going down puts the instance in
/// FAULT (weight 0) or lowers its priority by `-weight` (negative weight) / raises it by
/// `weight` while up (positive weight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackInterfaceConfig {
    /// Interface name.
    pub name: String,
    /// Weight, -254..=254 (0: FAULT when down).
    #[serde(default)]
    pub weight: i32,
}

/// `track_script { NAME [weight W] }`: overrides the script's own weight when given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackScriptConfig {
    /// Name of a `vrrp_script`.
    pub name: String,
    /// Weight for this instance (default: the script's).
    #[serde(default)]
    pub weight: Option<i32>,
}

/// `vrrp_script NAME { script ...; interval ...; weight ...; rise ...; fall ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpScriptConfig {
    /// The name instances refer to.
    pub name: String,
    /// The command and its arguments, run without a shell (as keepalived does); in TOML
    /// an array of words. Exit status 0 is success.
    pub script: Vec<String>,
    /// Seconds between runs (keepalived default 1).
    #[serde(default = "one_second", with = "secs")]
    pub interval: Duration,
    /// Seconds a run may take before it counts as a failure (default: the interval).
    #[serde(default, with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// Priority change, -254..=254: positive adds while succeeding, negative subtracts
    /// while failing, 0 puts tracking instances in FAULT while failing (default 0).
    #[serde(default)]
    pub weight: i32,
    /// Successes in a row needed to count as up (default 1).
    #[serde(default = "one")]
    pub rise: u32,
    /// Failures in a row needed to count as down (default 1).
    #[serde(default = "one")]
    pub fall: u32,
    /// Start in the failed state rather than the successful one.
    #[serde(default)]
    pub init_fail: bool,
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn one() -> u32 {
    1
}

fn default_priority() -> u8 {
    100
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn five() -> u32 {
    5
}

/// `vrrp_instance NAME { ... }`: one virtual router on one interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpInstanceConfig {
    /// Instance name (used in logs and notify arguments).
    pub name: String,
    /// Initial state (`MASTER` or `BACKUP`, default BACKUP).
    #[serde(default)]
    pub state: InitialState,
    /// Interface that adverts are sent and received on.
    pub interface: String,
    /// VRID, 1..=255.
    pub virtual_router_id: u8,
    /// Priority, 1..=255 (255: address owner; default 100).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Seconds between adverts (default 1; version 3 allows hundredths).
    #[serde(default = "one_second", with = "secs")]
    pub advert_int: Duration,
    /// Protocol version (default: `global.vrrp_version`).
    #[serde(default)]
    pub version: Option<Version>,
    /// Never take over from a lower-priority master.
    #[serde(default)]
    pub nopreempt: bool,
    /// Seconds to keep accepting a lower-priority master after starting to hear it.
    #[serde(default, with = "secs")]
    pub preempt_delay: Duration,
    /// Version 2 authentication.
    #[serde(default)]
    pub authentication: Option<AuthConfig>,
    /// The virtual addresses (all of one family; IPv6 needs version 3).
    #[serde(default)]
    pub virtual_ipaddress: Vec<VipConfig>,
    /// Source address of unicast adverts (default: the interface's primary address).
    #[serde(default)]
    pub unicast_src_ip: Option<IpAddr>,
    /// Send adverts to these peers instead of the multicast group.
    #[serde(default)]
    pub unicast_peer: Vec<IpAddr>,
    /// Interfaces whose state changes the instance's.
    #[serde(default)]
    pub track_interface: Vec<TrackInterfaceConfig>,
    /// Scripts whose results change the instance's priority or state.
    #[serde(default)]
    pub track_script: Vec<TrackScriptConfig>,
    /// Command run on becoming MASTER.
    #[serde(default)]
    pub notify_master: Option<Vec<String>>,
    /// Command run on becoming BACKUP.
    #[serde(default)]
    pub notify_backup: Option<Vec<String>>,
    /// Command run on entering FAULT.
    #[serde(default)]
    pub notify_fault: Option<Vec<String>>,
    /// Command run when the instance stops.
    #[serde(default)]
    pub notify_stop: Option<Vec<String>>,
    /// Command run on every change, with `INSTANCE NAME STATE PRIORITY` appended.
    #[serde(default)]
    pub notify: Option<Vec<String>>,
    /// Seconds after becoming MASTER before the second burst of gratuitous ARPs / NAs
    /// (default 5; 0 = no second burst).
    #[serde(default = "five_seconds", with = "secs")]
    pub garp_master_delay: Duration,
    /// Gratuitous ARPs / NAs per address in each burst (default 5).
    #[serde(default = "five")]
    pub garp_master_repeat: u32,
    /// Seconds between refresh bursts while MASTER (default 0 = none).
    #[serde(default, with = "secs")]
    pub garp_master_refresh: Duration,
    /// Gratuitous ARPs / NAs per address in a refresh burst (default 1).
    #[serde(default = "one")]
    pub garp_master_refresh_repeat: u32,
    /// Use a macvlan with the virtual MAC 00:00:5E:00:01:VRID for the VIPs and adverts.
    #[serde(default)]
    pub use_vmac: bool,
    /// Name of the VMAC interface (default `vrrp.VRID`, as keepalived).
    #[serde(default)]
    pub vmac_name: Option<String>,
}

impl VrrpInstanceConfig {
    /// An instance with keepalived's defaults for everything but the required options.
    pub fn new(name: &str, interface: &str, vrid: u8) -> VrrpInstanceConfig {
        VrrpInstanceConfig {
            name: name.to_owned(),
            state: InitialState::Backup,
            interface: interface.to_owned(),
            virtual_router_id: vrid,
            priority: default_priority(),
            advert_int: one_second(),
            version: None,
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            authentication: None,
            virtual_ipaddress: Vec::new(),
            unicast_src_ip: None,
            unicast_peer: Vec::new(),
            track_interface: Vec::new(),
            track_script: Vec::new(),
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
            garp_master_delay: five_seconds(),
            garp_master_repeat: five(),
            garp_master_refresh: Duration::ZERO,
            garp_master_refresh_repeat: one(),
            use_vmac: false,
            vmac_name: None,
        }
    }

    /// Whether `other` is the same virtual router as keepalived matches instances on
    /// reload (`vrrp_exist`: VRID, family, interface, unicast or multicast,
    /// `unicast_src_ip`, VMAC), under the same name (rvs addresses instances by name).
    pub fn same_router(&self, other: &VrrpInstanceConfig) -> bool {
        self.name == other.name
            && self.virtual_router_id == other.virtual_router_id
            && self.family() == other.family()
            && self.interface == other.interface
            && self.unicast_peer.is_empty() == other.unicast_peer.is_empty()
            && self.unicast_src_ip == other.unicast_src_ip
            && self.use_vmac == other.use_vmac
            && (!self.use_vmac || self.vmac_ifname() == other.vmac_ifname())
    }

    /// The address family of the instance (of its VIPs; IPv4 when it has none).
    pub fn family(&self) -> Family {
        self.virtual_ipaddress
            .first()
            .map(|v| Family::of(v.address))
            .or_else(|| self.unicast_peer.first().map(|a| Family::of(*a)))
            .unwrap_or(Family::V4)
    }

    /// The instance's VRRP virtual MAC (`use_vmac`): 00:00:5e:00:01:VRID for IPv4,
    /// 00:00:5e:00:02:VRID for IPv6 (RFC 5798 §7.3, as keepalived).
    pub fn virtual_mac(&self) -> [u8; 6] {
        crate::wire::virtual_mac(self.family(), self.virtual_router_id)
    }

    /// The VMAC interface name.
    pub fn vmac_ifname(&self) -> String {
        self.vmac_name
            .clone()
            .unwrap_or_else(|| format!("vrrp.{}", self.virtual_router_id))
    }

    /// The advertisement interval in the unit of `version`'s packet field (seconds or
    /// centiseconds).
    pub fn adver_int_field(&self, version: Version) -> u16 {
        let field = match version {
            Version::V2 => self.advert_int.as_secs(),
            Version::V3 => (self.advert_int.as_millis() / 10) as u64,
        };
        u16::try_from(field).unwrap_or(u16::MAX)
    }
}

/// `vrrp_sync_group NAME { group { I1 I2 } notify_* }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncGroupConfig {
    /// Group name.
    pub name: String,
    /// Names of the member instances.
    pub group: Vec<String>,
    /// Command run when the group becomes MASTER.
    #[serde(default)]
    pub notify_master: Option<Vec<String>>,
    /// Command run when the group becomes BACKUP.
    #[serde(default)]
    pub notify_backup: Option<Vec<String>>,
    /// Command run when the group enters FAULT.
    #[serde(default)]
    pub notify_fault: Option<Vec<String>>,
    /// Command run when the group stops.
    #[serde(default)]
    pub notify_stop: Option<Vec<String>>,
    /// Command run on every change, with `GROUP NAME STATE 0` appended.
    #[serde(default)]
    pub notify: Option<Vec<String>>,
}

impl VrrpConfig {
    /// Reads a TOML configuration and validates it.
    pub fn from_toml(text: &str) -> Result<VrrpConfig, ConfigError> {
        let config: VrrpConfig =
            toml::from_str(text).map_err(|e| ConfigError(format!("invalid TOML: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Whether `other` has the same instances in the same order, each the same virtual
    /// router ([`VrrpInstanceConfig::same_router`]) with the same version: a reload from
    /// `self` to `other` can then keep every instance's state (`Node::reconfigure`).
    pub fn same_routers(&self, other: &VrrpConfig) -> bool {
        self.instances.len() == other.instances.len()
            && self
                .instances
                .iter()
                .zip(&other.instances)
                .all(|(a, b)| a.same_router(b) && self.version_of(a) == other.version_of(b))
    }

    /// The version instance `i` uses.
    pub fn version_of(&self, instance: &VrrpInstanceConfig) -> Version {
        instance.version.unwrap_or(self.global.vrrp_version)
    }

    /// The configuration split into independent parts: each `vrrp_sync_group` with its
    /// members, and every other instance alone, each with the scripts it tracks. A reload
    /// restarts only the parts that changed, so unchanged instances are left untouched.
    pub fn components(&self) -> Vec<VrrpConfig> {
        let mut out = Vec::new();
        let mut grouped = std::collections::HashSet::new();
        let part = |names: &[&str], groups: Vec<SyncGroupConfig>| {
            let instances: Vec<VrrpInstanceConfig> = self
                .instances
                .iter()
                .filter(|i| names.contains(&i.name.as_str()))
                .cloned()
                .collect();
            let scripts = self
                .scripts
                .iter()
                .filter(|s| {
                    instances
                        .iter()
                        .any(|i| i.track_script.iter().any(|t| t.name == s.name))
                })
                .cloned()
                .collect();
            VrrpConfig {
                global: self.global.clone(),
                scripts,
                instances,
                sync_groups: groups,
            }
        };
        for g in &self.sync_groups {
            let names: Vec<&str> = g.group.iter().map(String::as_str).collect();
            grouped.extend(names.iter().copied());
            out.push(part(&names, vec![g.clone()]));
        }
        for i in &self.instances {
            if !grouped.contains(i.name.as_str()) {
                out.push(part(&[i.name.as_str()], Vec::new()));
            }
        }
        out
    }

    /// Checks the whole configuration; the error names the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut scripts = BTreeMap::new();
        for s in &self.scripts {
            let e = |why: &str| Err(ConfigError(format!("vrrp_script {}: {why}", s.name)));
            if s.name.is_empty() {
                return Err(ConfigError("vrrp_script with an empty name".into()));
            }
            if scripts.insert(s.name.as_str(), s).is_some() {
                return e("defined twice");
            }
            if s.script.first().is_none_or(|p| p.is_empty()) {
                return e("`script` is empty");
            }
            if s.interval.is_zero() {
                return e("`interval` must be greater than 0");
            }
            if s.timeout.is_some_and(|t| t.is_zero()) {
                return e("`timeout` must be greater than 0");
            }
            if !(-254..=254).contains(&s.weight) {
                return e("`weight` must be in -254..=254");
            }
            if s.rise == 0 || s.fall == 0 {
                return e("`rise` and `fall` must be at least 1");
            }
        }
        let mut names = BTreeSet::new();
        let mut vrids = BTreeSet::new();
        for i in &self.instances {
            let e = |why: String| Err(ConfigError(format!("vrrp_instance {}: {why}", i.name)));
            if i.name.is_empty() {
                return Err(ConfigError("vrrp_instance with an empty name".into()));
            }
            if !names.insert(i.name.as_str()) {
                return e("defined twice".into());
            }
            if i.interface.is_empty() {
                return e("`interface` is required".into());
            }
            if i.virtual_router_id == 0 {
                return e("`virtual_router_id` must be 1..=255".into());
            }
            if i.priority == 0 {
                return e(
                    "`priority` must be 1..=255 (0 is reserved for a resigning master)".into(),
                );
            }
            let version = self.version_of(i);
            let family = i.family();
            if !vrids.insert((i.interface.as_str(), family, i.virtual_router_id)) {
                return e(format!(
                    "virtual_router_id {} is used twice on {} for the same address family",
                    i.virtual_router_id, i.interface
                ));
            }
            match version {
                Version::V2 => {
                    let s = i.advert_int.as_secs();
                    if i.advert_int.subsec_nanos() != 0 || !(1..=255).contains(&s) {
                        return e(format!(
                            "`advert_int` {:?} must be whole seconds 1..=255 for VRRP version 2 (version 3 allows hundredths)",
                            i.advert_int
                        ));
                    }
                    if family == Family::V6 {
                        return e("IPv6 virtual addresses need `version = 3`".into());
                    }
                }
                Version::V3 => {
                    let cs = i.advert_int.as_millis() / 10;
                    if i.advert_int.as_nanos() % 10_000_000 != 0
                        || !(1..=u128::from(MAX_ADVER_INT_V3)).contains(&cs)
                    {
                        return e(format!(
                            "`advert_int` {:?} must be 0.01..=40.95 s in hundredths for VRRP version 3",
                            i.advert_int
                        ));
                    }
                }
            }
            if let Some(a) = &i.authentication {
                if version == Version::V3 {
                    return e("`authentication` exists only in VRRP version 2 (RFC 5798 removed it); remove it or set `version = 2`".into());
                }
                if a.auth_type == AuthKind::Ah {
                    return e(
                        "auth_type AH is not supported by rvs; use PASS or no authentication"
                            .into(),
                    );
                }
                if a.auth_pass.is_empty() {
                    return e("auth_type PASS needs `auth_pass`".into());
                }
            }
            if i.virtual_ipaddress.len() > 255 {
                return e("at most 255 virtual addresses fit in an advertisement".into());
            }
            for v in &i.virtual_ipaddress {
                if Family::of(v.address) != family {
                    return e(format!(
                        "virtual address {} is not of the instance's family; put IPv4 and IPv6 addresses in separate instances",
                        v.address
                    ));
                }
                if v.label.is_some() && family == Family::V6 {
                    return e(format!(
                        "`label` is IPv4-only (virtual address {})",
                        v.address
                    ));
                }
            }
            for p in i.unicast_peer.iter().chain(i.unicast_src_ip.iter()) {
                if Family::of(*p) != family {
                    return e(format!(
                        "unicast address {p} is not of the instance's family"
                    ));
                }
            }
            if i.unicast_src_ip.is_some() && i.unicast_peer.is_empty() {
                return e("`unicast_src_ip` needs at least one `unicast_peer`".into());
            }
            for t in &i.track_interface {
                if !(-254..=254).contains(&t.weight) {
                    return e(format!(
                        "track_interface {}: weight must be in -254..=254",
                        t.name
                    ));
                }
            }
            for t in &i.track_script {
                if !scripts.contains_key(t.name.as_str()) {
                    return e(format!(
                        "track_script {:?} is not a defined vrrp_script",
                        t.name
                    ));
                }
                if t.weight.is_some_and(|w| !(-254..=254).contains(&w)) {
                    return e(format!(
                        "track_script {}: weight must be in -254..=254",
                        t.name
                    ));
                }
            }
            if i.garp_master_repeat == 0 {
                return e("`garp_master_repeat` must be at least 1".into());
            }
            for (what, cmd) in [
                ("notify_master", &i.notify_master),
                ("notify_backup", &i.notify_backup),
                ("notify_fault", &i.notify_fault),
                ("notify_stop", &i.notify_stop),
                ("notify", &i.notify),
            ] {
                if cmd
                    .as_ref()
                    .is_some_and(|c| c.first().is_none_or(|p| p.is_empty()))
                {
                    return e(format!("`{what}` is empty"));
                }
            }
            if i.use_vmac && i.vmac_ifname().len() > 15 {
                return e("`vmac_name` is longer than 15 characters".into());
            }
        }
        let mut member_of = BTreeMap::new();
        let mut groups = BTreeSet::new();
        for g in &self.sync_groups {
            let e = |why: String| Err(ConfigError(format!("vrrp_sync_group {}: {why}", g.name)));
            if !groups.insert(g.name.as_str()) {
                return e("defined twice".into());
            }
            if g.group.is_empty() {
                return e("`group` lists no instance".into());
            }
            for m in &g.group {
                if !names.contains(m.as_str()) {
                    return e(format!("{m:?} is not a defined vrrp_instance"));
                }
                if let Some(other) = member_of.insert(m.as_str(), g.name.as_str()) {
                    return e(format!("instance {m} is already in sync group {other}"));
                }
            }
        }
        Ok(())
    }
}

/// Serde for a [`Duration`] written as seconds (integer or fraction).
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let value = f64::deserialize(d)?;
        from_f64(value).map_err(D::Error::custom)
    }

    /// Seconds to a duration rounded to the millisecond.
    pub fn from_f64(value: f64) -> Result<Duration, String> {
        if !value.is_finite() || !(0.0..=86_400.0).contains(&value) {
            return Err(format!("{value} is not a number of seconds in 0..=86400"));
        }
        Ok(Duration::from_millis((value * 1000.0).round() as u64))
    }
}

/// Serde for an optional [`Duration`] in seconds.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let value = Option::<f64>::deserialize(d)?;
        value
            .map(super::secs::from_f64)
            .transpose()
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn components_are_sync_groups_and_lone_instances_with_their_scripts() {
        let mut c = VrrpConfig::default();
        for (n, vrid) in [("A", 1), ("B", 2), ("C", 3)] {
            c.instances.push(VrrpInstanceConfig::new(n, "eth0", vrid));
        }
        c.instances[2].track_script.push(TrackScriptConfig {
            name: "chk".into(),
            weight: None,
        });
        c.scripts.push(VrrpScriptConfig {
            name: "chk".into(),
            ..toml::from_str("name = \"x\"\nscript = [\"true\"]").unwrap()
        });
        c.sync_groups.push(SyncGroupConfig {
            name: "G".into(),
            group: vec!["A".into(), "B".into()],
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
        });
        let parts = c.components();
        let names: Vec<Vec<&str>> = parts
            .iter()
            .map(|p| p.instances.iter().map(|i| i.name.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["A", "B"], vec!["C"]]);
        assert_eq!(parts[0].sync_groups.len(), 1);
        assert!(parts[0].scripts.is_empty());
        assert_eq!(parts[1].scripts.len(), 1);
        for p in &parts {
            p.validate().unwrap();
        }
    }

    use super::*;

    const EXAMPLE: &str = r#"
[global]
vrrp_version = 3

[[vrrp_script]]
name = "chk_http"
script = ["/usr/bin/curl", "-sf", "http://127.0.0.1/"]
interval = 2
weight = -20
fall = 2

[[vrrp_instance]]
name = "VI_1"
state = "MASTER"
interface = "eth0"
virtual_router_id = 51
priority = 150
advert_int = 0.1
virtual_ipaddress = ["198.18.0.10/24 dev eth0 label eth0:vip scope global", "198.18.0.11"]
track_script = [{ name = "chk_http" }]
notify = ["/etc/rvs/notify.sh"]

[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 52
version = 2
authentication = { auth_type = "PASS", auth_pass = "secret" }
virtual_ipaddress = ["198.18.0.20"]

[[vrrp_sync_group]]
name = "G1"
group = ["VI_1", "VI_2"]
"#;

    #[test]
    fn an_ipv6_instance_s_vmac_is_00_00_5e_00_02_vrid() {
        let mut v6 = VrrpInstanceConfig::new("VI_6", "eth0", 51);
        v6.virtual_ipaddress = vec!["2001:db8::10".parse().expect("vip")];
        assert_eq!(v6.virtual_mac(), [0, 0, 0x5e, 0, 2, 51]);
        let mut v4 = VrrpInstanceConfig::new("VI_4", "eth0", 51);
        v4.virtual_ipaddress = vec!["198.18.0.10".parse().expect("vip")];
        assert_eq!(v4.virtual_mac(), [0, 0, 0x5e, 0, 1, 51]);
    }

    #[test]
    fn parses_example_with_keepalived_defaults() {
        let c = VrrpConfig::from_toml(EXAMPLE).unwrap();
        let i = &c.instances[0];
        assert_eq!(i.state, InitialState::Master);
        assert_eq!(i.advert_int, Duration::from_millis(100));
        assert_eq!(i.adver_int_field(Version::V3), 10);
        assert_eq!(i.garp_master_delay, Duration::from_secs(5));
        assert_eq!(i.garp_master_repeat, 5);
        assert_eq!(i.virtual_ipaddress[0].prefix_len, 24);
        assert_eq!(i.virtual_ipaddress[0].label.as_deref(), Some("eth0:vip"));
        assert_eq!(i.virtual_ipaddress[1].prefix_len, 32);
        assert_eq!(c.version_of(i), Version::V3);
        let j = &c.instances[1];
        assert_eq!(j.priority, 100);
        assert_eq!(j.state, InitialState::Backup);
        assert_eq!(c.version_of(j), Version::V2);
        assert_eq!(c.scripts[0].rise, 1);
        assert_eq!(c.scripts[0].interval, Duration::from_secs(2));
        assert_eq!(
            c.scripts[0].script,
            ["/usr/bin/curl", "-sf", "http://127.0.0.1/"]
        );
    }

    #[test]
    fn refuses_bad_configs_naming_the_problem() {
        let cases = [
            (
                EXAMPLE.replace("advert_int = 0.1", "advert_int = 0.105"),
                "hundredths",
            ),
            (
                EXAMPLE.replace("version = 2", "version = 3"),
                "authentication",
            ),
            (EXAMPLE.replace("\"PASS\"", "\"AH\""), "AH is not supported"),
            (
                EXAMPLE.replace("name = \"chk_http\" }", "name = \"nope\" }"),
                "not a defined vrrp_script",
            ),
            (
                EXAMPLE.replace("\"VI_2\"]", "\"VI_3\"]"),
                "not a defined vrrp_instance",
            ),
            (
                EXAMPLE.replace("priority = 150", "priority = 0"),
                "priority",
            ),
            (EXAMPLE.replace("\"198.18.0.11\"", "\"fd00::1\""), "family"),
            (
                EXAMPLE.replace("198.18.0.20", "198.18.0.20/33"),
                "prefix length",
            ),
            (EXAMPLE.replace("scope global", "scope galaxy"), "scope"),
            (
                EXAMPLE.replace("virtual_router_id = 52", "virtual_router_id = 51"),
                "used twice",
            ),
            (EXAMPLE.replace("weight = -20", "weight = -300"), "weight"),
            (
                EXAMPLE.replace(
                    "nterface = \"eth0\"\nvirtual_router_id = 52",
                    "nterface = \"eth0\"\nbogus = 1\nvirtual_router_id = 52",
                ),
                "bogus",
            ),
        ];
        for (text, needle) in cases {
            let err = VrrpConfig::from_toml(&text).unwrap_err().0;
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
        let v2 = EXAMPLE.replace("vrrp_version = 3", "vrrp_version = 2");
        let err = VrrpConfig::from_toml(&v2).unwrap_err().0;
        assert!(err.contains("whole seconds"), "{err}");
    }

    #[test]
    fn a_command_is_an_array_of_words_and_a_string_is_refused() {
        let ok = "name = \"x\"\nscript = [\"/bin/test\", \"-e\", \"/run/a b\"]";
        let s: VrrpScriptConfig = toml::from_str(ok).unwrap();
        assert_eq!(s.script, ["/bin/test", "-e", "/run/a b"]);
        // No second splitter: a command line as one string does not parse.
        let line = "name = \"x\"\nscript = \"/bin/test -e /run/x\"";
        assert!(toml::from_str::<VrrpScriptConfig>(line).is_err());
    }
}
