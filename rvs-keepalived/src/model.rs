//! The typed keepalived model: the blocks rvs understands (`global_defs`, `virtual_server`,
//! `virtual_server_group`, the checkers, `vrrp_instance`, `vrrp_script`, `vrrp_sync_group`,
//! `SSL`), read from the syntax tree with keepalived's keywords and value rules.
//!
//! Values are kept as written (defaults are not filled in here: `None` means "not set"), so
//! the model says exactly what the file said and [`crate::import`] decides what it means.
//! Every keyword this module does not read becomes a [`Warning`] ("not supported by rvs;
//! ignored") naming its file and line; a value that does not parse is a located error.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::syntax::{Loc, Node, SyntaxError, Warning, Word};

/// Largest timer value accepted, in seconds (keepalived's timers are far below this).
const MAX_TIMER_SECS: f64 = 1e7;

/// The smallest timer keepalived takes where 0 is refused (its `read_decimal` minimum).
const MIN_TIMER_SECS: f64 = 0.000_001;

/// A whole keepalived.conf.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeepalivedConf {
    /// `global_defs` (merged, when there are several).
    pub global_defs: GlobalDefs,
    /// `virtual_server_group` blocks.
    pub virtual_server_groups: Vec<VirtualServerGroup>,
    /// `virtual_server` blocks.
    pub virtual_servers: Vec<VirtualServer>,
    /// `vrrp_script` blocks.
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `vrrp_sync_group` blocks.
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    /// `vrrp_instance` blocks.
    pub vrrp_instances: Vec<VrrpInstance>,
    /// The `SSL` block (client settings for SSL_GET).
    pub ssl: Option<SslConf>,
}

/// `global_defs`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GlobalDefs {
    /// Where the (first) block starts.
    pub loc: Option<Loc>,
    /// `router_id`.
    pub router_id: Option<String>,
    /// `notification_email { ... }`.
    pub notification_email: Vec<String>,
    /// `notification_email_from`.
    pub notification_email_from: Option<String>,
    /// `smtp_server ADDRESS [PORT]`.
    pub smtp_server: Option<(String, Option<u16>)>,
    /// `smtp_helo_name`.
    pub smtp_helo_name: Option<String>,
    /// `smtp_connect_timeout` (seconds).
    pub smtp_connect_timeout: Option<u32>,
    /// `lvs_timeouts [tcp S] [tcpfin S] [udp S]`.
    pub lvs_timeouts: Option<LvsTimeouts>,
    /// `lvs_flush`.
    pub lvs_flush: bool,
    /// `vrrp_version 2|3`.
    pub vrrp_version: Option<u8>,
    /// `vrrp_strict`.
    pub vrrp_strict: bool,
    /// `vrrp_mcast_group4`.
    pub vrrp_mcast_group4: Option<Ipv4Addr>,
    /// `vrrp_garp_master_delay` (seconds).
    pub vrrp_garp_master_delay: Option<u32>,
    /// `vrrp_garp_master_repeat`.
    pub vrrp_garp_master_repeat: Option<u32>,
    /// `vrrp_garp_master_refresh` (seconds).
    pub vrrp_garp_master_refresh: Option<u32>,
    /// `vrrp_garp_master_refresh_repeat`.
    pub vrrp_garp_master_refresh_repeat: Option<u32>,
    /// `vrrp_garp_interval`.
    pub vrrp_garp_interval: Option<Duration>,
    /// `vrrp_gna_interval`.
    pub vrrp_gna_interval: Option<Duration>,
    /// `vrrp_skip_check_adv_addr`.
    pub vrrp_skip_check_adv_addr: bool,
    /// `enable_script_security`.
    pub enable_script_security: bool,
    /// `script_user USER [GROUP]`.
    pub script_user: Option<(String, Option<String>)>,
    /// `default_interface`.
    pub default_interface: Option<String>,
    /// `checker_log_all_failures`.
    pub checker_log_all_failures: Option<bool>,
    /// `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`.
    pub lvs_sync_daemon: Option<At<LvsSyncDaemon>>,
    /// Every keyword read, with where (so the importer can name the exact line).
    pub keywords: Vec<At<String>>,
}

/// `lvs_sync_daemon`: IPVS's connection sync daemon, master or backup as the named VRRP
/// instance is MASTER or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvsSyncDaemon {
    /// Multicast interface.
    pub interface: String,
    /// The VRRP instance whose state the daemon follows.
    pub instance: String,
    /// `id` (sync id, 0..255; keepalived's default is the instance's virtual_router_id).
    pub syncid: Option<u8>,
    /// `maxlen` (1..65507).
    pub maxlen: Option<u16>,
    /// `port` (1..65535).
    pub port: Option<u16>,
    /// `ttl` (1..255).
    pub ttl: Option<u8>,
    /// `group` (a multicast address).
    pub group: Option<IpAddr>,
}

/// `lvs_timeouts`: IPVS idle timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LvsTimeouts {
    /// `tcp`.
    pub tcp: Option<u32>,
    /// `tcpfin`.
    pub tcpfin: Option<u32>,
    /// `udp`.
    pub udp: Option<u32>,
}

/// One entry of a `virtual_server_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEntry {
    /// An address range (first, last, inclusive; equal for one address) and optional port.
    Range {
        /// First address.
        first: IpAddr,
        /// Last address.
        last: IpAddr,
        /// Port.
        port: Option<u16>,
        /// Where.
        loc: Loc,
    },
    /// `fwmark N [inet|inet6]`.
    Fwmark {
        /// The mark.
        mark: u32,
        /// Where.
        loc: Loc,
    },
}

/// `virtual_server_group NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServerGroup {
    /// The name.
    pub name: String,
    /// Where.
    pub loc: Loc,
    /// Its entries.
    pub entries: Vec<GroupEntry>,
}

/// What a `virtual_server` is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsKey {
    /// `virtual_server IP [PORT]`.
    Address {
        /// The VIP.
        address: IpAddr,
        /// The port (keepalived allows none only for persistent services).
        port: Option<u16>,
    },
    /// `virtual_server fwmark N`.
    Fwmark(u32),
    /// `virtual_server group NAME`.
    Group(String),
}

/// IPVS forwarding method (`lb_kind` / `lvs_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    /// NAT (masquerading).
    Nat,
    /// Direct routing.
    Dr,
    /// A tunnel: IPIP unless `lvs_method TUN type gue port N|gre [nocsum|csum|remcsum]`.
    Tun(rvs_config::Tunnel),
}

/// Transport protocol of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VsProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A value with the location of the keyword that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// Where it was set.
    pub loc: Loc,
}

/// A script with optional user and group, and where it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptConf {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// `username`.
    pub user: Option<String>,
    /// `groupname`.
    pub group: Option<String>,
    /// Where.
    pub loc: Loc,
}

/// Options a virtual server, real server and checker can all set (the inner one wins).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckDefaults {
    /// `delay_loop`.
    pub delay_loop: Option<Duration>,
    /// `connect_timeout`.
    pub connect_timeout: Option<Duration>,
    /// `retry` (also the old `nb_get_retry`).
    pub retry: Option<u32>,
    /// `delay_before_retry`.
    pub delay_before_retry: Option<Duration>,
    /// `warmup`.
    pub warmup: Option<Duration>,
    /// `alpha`.
    pub alpha: Option<bool>,
}

/// `sorry_server IP [PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SorryServerConf {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: Option<u16>,
    /// Where.
    pub loc: Loc,
}

/// `virtual_server ... { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    /// What it is keyed by.
    pub key: VsKey,
    /// Where.
    pub loc: Loc,
    /// `lb_algo` / `lvs_sched`.
    pub lb_algo: Option<At<String>>,
    /// `lb_kind` / `lvs_method`.
    pub lb_kind: Option<At<LbKind>>,
    /// Scheduler flags (`mh-port`, `sh-port`, `flag-1`, `ops`, …).
    pub sched_flags: Vec<At<String>>,
    /// `persistence_timeout` (seconds; 360 when given without a value).
    pub persistence_timeout: Option<At<u32>>,
    /// `persistence_granularity`.
    pub persistence_granularity: Option<At<String>>,
    /// `protocol`.
    pub protocol: Option<At<VsProtocol>>,
    /// Checker defaults for its real servers.
    pub defaults: CheckDefaults,
    /// `sorry_server`.
    pub sorry_server: Option<SorryServerConf>,
    /// `sorry_server_inhibit`.
    pub sorry_server_inhibit: bool,
    /// `sorry_server_lvs_method`.
    pub sorry_server_lb_kind: Option<At<LbKind>>,
    /// `quorum`.
    pub quorum: Option<u32>,
    /// `hysteresis`.
    pub hysteresis: Option<u32>,
    /// `quorum_up`.
    pub quorum_up: Option<ScriptConf>,
    /// `quorum_down`.
    pub quorum_down: Option<ScriptConf>,
    /// `inhibit_on_failure`.
    pub inhibit_on_failure: bool,
    /// `omega`.
    pub omega: bool,
    /// `virtualhost` (default Host for HTTP checks).
    pub virtualhost: Option<String>,
    /// `real_server` blocks.
    pub real_servers: Vec<RealServerConf>,
}

/// `real_server IP [PORT] { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServerConf {
    /// Address.
    pub address: IpAddr,
    /// Port.
    pub port: Option<u16>,
    /// Where.
    pub loc: Loc,
    /// `weight`.
    pub weight: Option<At<i64>>,
    /// `lb_kind` / `lvs_method`.
    pub lb_kind: Option<At<LbKind>>,
    /// `notify_up`.
    pub notify_up: Option<ScriptConf>,
    /// `notify_down`.
    pub notify_down: Option<ScriptConf>,
    /// `inhibit_on_failure [BOOL]`.
    pub inhibit_on_failure: Option<bool>,
    /// `virtualhost`.
    pub virtualhost: Option<String>,
    /// `uthreshold`.
    pub uthreshold: Option<u32>,
    /// `lthreshold`.
    pub lthreshold: Option<u32>,
    /// Checker defaults.
    pub defaults: CheckDefaults,
    /// The checkers.
    pub checkers: Vec<CheckerConf>,
}

/// Options every network checker has.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnOpts {
    /// `connect_ip`.
    pub connect_ip: Option<IpAddr>,
    /// `connect_port`.
    pub connect_port: Option<u16>,
    /// `bindto`.
    pub bindto: Option<IpAddr>,
    /// `bind_port`.
    pub bind_port: Option<u16>,
    /// `bind_if`.
    pub bind_if: Option<String>,
    /// `fwmark`.
    pub fwmark: Option<u32>,
}

/// A checker block inside a `real_server`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckerConf {
    /// What kind, with its own options.
    pub kind: CheckerKindConf,
    /// Where.
    pub loc: Loc,
    /// Connection options.
    pub conn: ConnOpts,
    /// Timing options.
    pub defaults: CheckDefaults,
}

/// Checker kinds with their specific options.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckerKindConf {
    /// `TCP_CHECK`.
    Tcp,
    /// `HTTP_GET`.
    HttpGet(HttpConf),
    /// `SSL_GET`.
    SslGet(HttpConf),
    /// `MISC_CHECK`.
    Misc(MiscConf),
    /// `DNS_CHECK`.
    Dns(DnsConf),
    /// `SMTP_CHECK`.
    Smtp(SmtpConf),
    /// `UDP_CHECK`.
    Udp(UdpConf),
    /// `PING_CHECK`.
    Ping,
}

/// `HTTP_GET` / `SSL_GET` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpConf {
    /// `url` blocks.
    pub urls: Vec<UrlConf>,
    /// `virtualhost`.
    pub virtualhost: Option<String>,
    /// `http_protocol` (`1.0`, `1.0C`, `1.1`).
    pub http_protocol: Option<String>,
    /// `enable_sni` (SSL_GET).
    pub enable_sni: bool,
}

/// `url { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlConf {
    /// Where.
    pub loc: Loc,
    /// `path`.
    pub path: Option<String>,
    /// `digest` (MD5 of the body, 16 bytes).
    pub digest: Option<[u8; 16]>,
    /// `status_code` as inclusive ranges.
    pub status_code: Vec<(u16, u16)>,
    /// `virtualhost`.
    pub virtualhost: Option<String>,
}

/// `MISC_CHECK` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscConf {
    /// `misc_path`.
    pub misc_path: Option<ScriptConf>,
    /// `misc_timeout` (seconds).
    pub misc_timeout: Option<u32>,
    /// `misc_dynamic`.
    pub misc_dynamic: bool,
    /// `user USER [GROUP]`.
    pub user: Option<(String, Option<String>)>,
}

/// `DNS_CHECK` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConf {
    /// `type`.
    pub qtype: Option<String>,
    /// `name`.
    pub name: Option<String>,
}

/// `SMTP_CHECK` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmtpConf {
    /// `helo_name`.
    pub helo_name: Option<String>,
}

/// `UDP_CHECK` options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpConf {
    /// `payload HEX`.
    pub payload: Option<Vec<u8>>,
    /// `require_reply [HEX]` as (value, mask) per byte.
    pub require_reply: Option<Vec<(u8, u8)>>,
    /// `min_reply_length`.
    pub min_reply_length: Option<u32>,
    /// `max_reply_length`.
    pub max_reply_length: Option<u32>,
}

/// The `SSL` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslConf {
    /// Where.
    pub loc: Option<Loc>,
    /// `ca`.
    pub ca: Option<String>,
    /// `certificate`.
    pub certificate: Option<String>,
    /// `key`.
    pub key: Option<String>,
    /// `password`.
    pub password: Option<String>,
}

/// VRRP state (`state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpState {
    /// MASTER.
    Master,
    /// BACKUP.
    Backup,
}

/// VRRP authentication type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// Simple password.
    Pass,
    /// IPsec AH.
    Ah,
}

/// `authentication { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// `auth_type`.
    pub auth_type: Option<AuthType>,
    /// `auth_pass` (keepalived uses the first 8 characters).
    pub auth_pass: Option<String>,
}

/// One `virtual_ipaddress` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualIp {
    /// Address.
    pub address: IpAddr,
    /// Prefix length (`/N`).
    pub prefix_len: Option<u8>,
    /// `brd`.
    pub brd: Option<IpAddr>,
    /// `dev`.
    pub dev: Option<String>,
    /// `scope`.
    pub scope: Option<String>,
    /// `label`.
    pub label: Option<String>,
    /// `no_track`.
    pub no_track: bool,
    /// Where.
    pub loc: Loc,
}

/// A tracked interface or script, with its optional weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// Interface or script name.
    pub name: String,
    /// `weight N`.
    pub weight: Option<i32>,
    /// `reverse`.
    pub reverse: bool,
    /// Where.
    pub loc: Loc,
}

/// One `unicast_peer` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnicastPeer {
    /// Address.
    pub address: IpAddr,
    /// `min_ttl`.
    pub min_ttl: Option<u8>,
    /// `max_ttl`.
    pub max_ttl: Option<u8>,
}

/// `use_vmac [NAME] [MAC]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UseVmac {
    /// Interface name.
    pub name: Option<String>,
    /// MAC address as written.
    pub mac: Option<String>,
}

/// The notify scripts of a VRRP instance or sync group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VrrpNotify {
    /// `notify_master`.
    pub master: Option<ScriptConf>,
    /// `notify_backup`.
    pub backup: Option<ScriptConf>,
    /// `notify_fault`.
    pub fault: Option<ScriptConf>,
    /// `notify_stop`.
    pub stop: Option<ScriptConf>,
    /// `notify`.
    pub any: Option<ScriptConf>,
    /// `notify_master_rx_lower_pri`.
    pub master_rx_lower_pri: Option<ScriptConf>,
}

/// `vrrp_instance NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VrrpInstance {
    /// The name.
    pub name: String,
    /// Where.
    pub loc: Option<Loc>,
    /// `state`.
    pub state: Option<VrrpState>,
    /// `interface`.
    pub interface: Option<String>,
    /// `virtual_router_id` (1..=255).
    pub virtual_router_id: Option<u8>,
    /// `priority` (1..=255).
    pub priority: Option<u8>,
    /// `advert_int`.
    pub advert_int: Option<Duration>,
    /// `authentication`.
    pub authentication: Option<Authentication>,
    /// `virtual_ipaddress`.
    pub virtual_ipaddress: Vec<VirtualIp>,
    /// `virtual_ipaddress_excluded`.
    pub virtual_ipaddress_excluded: Vec<VirtualIp>,
    /// `track_interface`.
    pub track_interface: Vec<Tracked>,
    /// `track_script`.
    pub track_script: Vec<Tracked>,
    /// `nopreempt` (and `preempt` to undo it).
    pub nopreempt: bool,
    /// `preempt_delay`.
    pub preempt_delay: Option<Duration>,
    /// `mcast_src_ip`.
    pub mcast_src_ip: Option<IpAddr>,
    /// `unicast_src_ip`.
    pub unicast_src_ip: Option<IpAddr>,
    /// `unicast_peer`.
    pub unicast_peer: Vec<UnicastPeer>,
    /// `version` (2 or 3).
    pub version: Option<u8>,
    /// `accept` (true) / `no_accept` (false).
    pub accept: Option<bool>,
    /// `dont_track_primary`.
    pub dont_track_primary: bool,
    /// `use_vmac`.
    pub use_vmac: Option<UseVmac>,
    /// `vmac_xmit_base`.
    pub vmac_xmit_base: bool,
    /// `garp_master_delay` (seconds).
    pub garp_master_delay: Option<u32>,
    /// `garp_master_repeat`.
    pub garp_master_repeat: Option<u32>,
    /// `garp_master_refresh` (seconds).
    pub garp_master_refresh: Option<u32>,
    /// `garp_master_refresh_repeat`.
    pub garp_master_refresh_repeat: Option<u32>,
    /// `garp_lower_prio_delay` (seconds).
    pub garp_lower_prio_delay: Option<u32>,
    /// `garp_lower_prio_repeat`.
    pub garp_lower_prio_repeat: Option<u32>,
    /// `strict_mode`.
    pub strict_mode: Option<bool>,
    /// Notify scripts.
    pub notify: VrrpNotify,
}

/// `vrrp_script NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VrrpScript {
    /// The name.
    pub name: String,
    /// Where.
    pub loc: Option<Loc>,
    /// `script`.
    pub script: Option<ScriptConf>,
    /// `interval` (seconds).
    pub interval: Option<Duration>,
    /// `timeout` (seconds).
    pub timeout: Option<Duration>,
    /// `weight N`.
    pub weight: Option<i32>,
    /// `weight N reverse`.
    pub weight_reverse: bool,
    /// `rise`.
    pub rise: Option<u32>,
    /// `fall`.
    pub fall: Option<u32>,
    /// `user USER [GROUP]`.
    pub user: Option<(String, Option<String>)>,
    /// `init_fail`.
    pub init_fail: bool,
}

/// `vrrp_sync_group NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VrrpSyncGroup {
    /// The name.
    pub name: String,
    /// Where.
    pub loc: Option<Loc>,
    /// `group { ... }`: instance names.
    pub group: Vec<String>,
    /// `track_interface`.
    pub track_interface: Vec<Tracked>,
    /// `track_script`.
    pub track_script: Vec<Tracked>,
    /// Notify scripts.
    pub notify: VrrpNotify,
}

/// Reads a syntax tree into the typed model, collecting warnings.
pub fn build(nodes: &[Node], warnings: &mut Vec<Warning>) -> Result<KeepalivedConf, SyntaxError> {
    let mut cx = Cx { warnings };
    let mut conf = KeepalivedConf::default();
    for node in nodes {
        let r = (|| -> Result<(), SyntaxError> {
            match node.name() {
                "global_defs" => {
                    cx.block(node)?;
                    cx.global_defs(node, &mut conf.global_defs)?;
                }
                "virtual_server_group" => {
                    cx.block(node)?;
                    let g = cx.vsg(node)?;
                    conf.virtual_server_groups.push(g);
                }
                "virtual_server" => {
                    cx.block(node)?;
                    let vs = cx.virtual_server(node)?;
                    conf.virtual_servers.push(vs);
                }
                "vrrp_instance" => {
                    cx.block(node)?;
                    let i = cx.vrrp_instance(node)?;
                    conf.vrrp_instances.push(i);
                }
                "vrrp_script" => {
                    cx.block(node)?;
                    let s = cx.vrrp_script(node)?;
                    conf.vrrp_scripts.push(s);
                }
                "vrrp_sync_group" => {
                    cx.block(node)?;
                    let g = cx.vrrp_sync_group(node)?;
                    conf.vrrp_sync_groups.push(g);
                }
                "SSL" => {
                    cx.block(node)?;
                    conf.ssl = Some(cx.ssl(node)?);
                }
                _ => cx.unsupported(node, "at top level"),
            }
            Ok(())
        })();
        // keepalived skips a block it cannot read (a bad address, a missing block) and
        // runs the rest.
        cx.tolerate(r, &format!("this `{}` is left out", node.name()));
    }
    Ok(conf)
}

fn err<T>(loc: &Loc, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        loc: loc.clone(),
        message: message.into(),
    })
}

/// Parses a `<BOOL>` word.
fn parse_bool(word: &Word) -> Result<bool, SyntaxError> {
    match word.text.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => err(
            &word.loc,
            format!(
                "{:?} is not a boolean: use on|off|true|false|yes|no",
                word.text
            ),
        ),
    }
}

/// Parses an unsigned integer in `lo..=hi`.
fn parse_uint(word: &Word, what: &str, lo: u64, hi: u64) -> Result<u64, SyntaxError> {
    match word.text.parse::<u64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => err(
            &word.loc,
            format!(
                "{what} must be an integer from {lo} to {hi}, not {:?}",
                word.text
            ),
        ),
    }
}

/// Parses a signed integer in `lo..=hi`.
fn parse_int(word: &Word, what: &str, lo: i64, hi: i64) -> Result<i64, SyntaxError> {
    match word.text.parse::<i64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => err(
            &word.loc,
            format!(
                "{what} must be an integer from {lo} to {hi}, not {:?}",
                word.text
            ),
        ),
    }
}

/// Parses a `<TIMER>`: seconds, fractions allowed.
fn parse_timer(word: &Word, what: &str) -> Result<Duration, SyntaxError> {
    match word.text.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_TIMER_SECS).contains(&v) => {
            Ok(Duration::from_secs_f64(v))
        }
        _ => err(
            &word.loc,
            format!(
                "{what} must be a number of seconds (e.g. 3 or 1.5), not {:?}",
                word.text
            ),
        ),
    }
}

/// Parses an IPv4 or IPv6 address.
fn parse_ip(word: &Word, what: &str) -> Result<IpAddr, SyntaxError> {
    word.text.parse::<IpAddr>().or_else(|_| {
        err(
            &word.loc,
            format!("{what} must be an IP address, not {:?}", word.text),
        )
    })
}

/// Parses a port 0..=65535.
fn parse_port(word: &Word, what: &str) -> Result<u16, SyntaxError> {
    parse_uint(word, what, 0, 65535).map(|p| p as u16)
}

/// Parses `lvs_method NAT|DR|TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]` with
/// keepalived 2.2.7's rules and messages (its `svr_forwarding_handler`): the options are read
/// for every method, later ones override earlier ones, and only a tunnel keeps them.
fn parse_lb_kind(node: &Node, server: &str) -> Result<LbKind, SyntaxError> {
    let Some(word) = node.args.first() else {
        return err(node.loc(), format!("{} needs NAT, DR or TUN", node.name()));
    };
    // Case matters: keepalived 2.2.7 compares with strcmp and fails `--config-test` on `nat`.
    let base = match word.text.as_str() {
        "NAT" => LbKind::Nat,
        "DR" => LbKind::Dr,
        "TUN" => LbKind::Tun(rvs_config::Tunnel::default()),
        _ => {
            return err(
                &word.loc,
                format!(
                    "unknown [{}] routing method for {server} server: keepalived knows NAT, DR and TUN (in capitals)",
                    word.text
                ),
            );
        }
    };
    let mut tunnel = rvs_config::Tunnel::default();
    let mut args = node.args[1..].iter();
    while let Some(w) = args.next() {
        match w.text.as_str() {
            "type" => {
                let Some(t) = args.next() else {
                    return err(&w.loc, format!("Missing tunnel type for {server} server."));
                };
                let Some(kind) = rvs_config::TunnelType::from_name(&t.text) else {
                    return err(
                        &t.loc,
                        format!("Unknown tunnel type {} for {server} server.", t.text),
                    );
                };
                tunnel.kind = kind;
            }
            "port" => {
                let Some(p) = args.next() else {
                    return err(
                        &w.loc,
                        format!("Missing port for {server} server gue tunnel."),
                    );
                };
                match p.text.parse::<u16>() {
                    Ok(port) if port != 0 => tunnel.port = Some(port),
                    _ => {
                        return err(
                            &p.loc,
                            format!("Invalid gue tunnel port {} for {server} server.", p.text),
                        );
                    }
                }
            }
            other => match rvs_config::TunnelChecksum::from_name(other) {
                Some(c) => tunnel.checksum = c,
                None => {
                    return err(
                        &w.loc,
                        format!("Invalid tunnel option {other} for {server} server."),
                    );
                }
            },
        }
    }
    let message = match (tunnel.kind, tunnel.port, tunnel.checksum) {
        (rvs_config::TunnelType::Gue, None, _)
        | (rvs_config::TunnelType::Ipip | rvs_config::TunnelType::Gre, Some(_), _) => {
            Some("gue tunnels require port, otherwise cannot have port.")
        }
        (rvs_config::TunnelType::Ipip, _, c) if c != rvs_config::TunnelChecksum::Nocsum => {
            Some("ipip tunnels do not support checksum option.")
        }
        (rvs_config::TunnelType::Gre, _, rvs_config::TunnelChecksum::Remcsum) => {
            Some("gre tunnels do not support remote checksum option.")
        }
        _ => None,
    };
    if let Some(message) = message {
        return err(node.loc(), message);
    }
    Ok(match base {
        LbKind::Tun(_) => LbKind::Tun(tunnel),
        other => other,
    })
}

/// Splits a script string the way keepalived does: unquoted blanks separate arguments,
/// single quotes group.
pub fn split_script(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut has = false;
    for c in text.chars() {
        match c {
            '\'' => {
                in_quote = !in_quote;
                has = true;
            }
            ' ' | '\t' if !in_quote => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            _ => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

/// Parses `HEX_STR` words (keepalived's free format: each word is read as pairs of hex
/// digits, an odd final digit standing alone); `X` digits become masked nibbles when
/// `allow_x`.
fn parse_hex(words: &[Word], allow_x: bool) -> Result<Vec<(u8, u8)>, SyntaxError> {
    let mut out = Vec::new();
    for w in words {
        let digits: Vec<char> = w.text.chars().collect();
        for pair in digits.chunks(2) {
            let mut value = 0u8;
            let mut mask = 0u8;
            for &c in pair {
                value <<= 4;
                mask <<= 4;
                if allow_x && (c == 'x' || c == 'X') {
                    continue;
                }
                let Some(d) = c.to_digit(16) else {
                    return err(&w.loc, format!("{:?} is not hexadecimal", w.text));
                };
                value |= d as u8;
                mask |= 0xf;
            }
            out.push((value, mask));
        }
    }
    Ok(out)
}

/// Parses a 32-hex-digit MD5 digest.
fn parse_digest(word: &Word) -> Result<[u8; 16], SyntaxError> {
    let t = word.text.as_bytes();
    if t.len() != 32 || !t.iter().all(u8::is_ascii_hexdigit) {
        return err(
            &word.loc,
            format!(
                "digest must be 32 hexadecimal digits (an MD5, as genhash prints), not {:?}",
                word.text
            ),
        );
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        let s = &word.text[2 * i..2 * i + 2];
        *byte = u8::from_str_radix(s, 16).unwrap_or(0);
    }
    Ok(out)
}

/// Parses `status_code` arguments: codes and `LO-HI` ranges.
fn parse_status_codes(words: &[Word]) -> Result<Vec<(u16, u16)>, SyntaxError> {
    let mut out = Vec::new();
    for w in words {
        let code = |s: &str| match s.parse::<u16>() {
            Ok(v) if (100..=999).contains(&v) => Ok(v),
            _ => err(
                &w.loc,
                format!("{:?} is not an HTTP status code (100-999) or range", w.text),
            ),
        };
        let (lo, hi) = match w.text.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => {
                let c = code(&w.text)?;
                (c, c)
            }
        };
        if lo > hi {
            return err(
                &w.loc,
                format!("status code range {:?} is backwards", w.text),
            );
        }
        out.push((lo, hi));
    }
    Ok(out)
}

struct Cx<'a> {
    warnings: &'a mut Vec<Warning>,
}

impl Cx<'_> {
    fn warn(&mut self, loc: &Loc, message: impl Into<String>) {
        self.warnings.push(Warning::problem(loc, message));
    }

    /// keepalived's tolerance: a keyword (or block) it cannot use is reported and ignored,
    /// its default applies, and the rest of the file runs.
    fn tolerate(&mut self, r: Result<(), SyntaxError>, what: &str) {
        if let Err(e) = r {
            self.warn(&e.loc, format!("{}; {what}, as keepalived does", e.message));
        }
    }

    /// Warns that `node` is not supported where it is.
    fn unsupported(&mut self, node: &Node, place: &str) {
        self.warn(
            node.loc(),
            format!("`{}` {place} is not supported by rvs; ignored", node.name()),
        );
    }

    /// Requires a block after `node`.
    fn block(&mut self, node: &Node) -> Result<(), SyntaxError> {
        if node.block.is_none() {
            return err(
                node.loc(),
                format!("`{}` needs a {{ ... }} block", node.name()),
            );
        }
        Ok(())
    }

    /// Warns about a block where none belongs.
    fn no_block(&mut self, node: &Node) {
        if node.block.is_some() {
            self.warn(
                node.loc(),
                format!("`{}` takes no block; the block is ignored", node.name()),
            );
        }
    }

    /// The `i`-th argument, or a located error.
    fn arg<'n>(&mut self, node: &'n Node, i: usize) -> Result<&'n Word, SyntaxError> {
        match node.args.get(i) {
            Some(w) => Ok(w),
            None => err(node.loc(), format!("`{}` needs a value", node.name())),
        }
    }

    /// The single argument of `node` (extra words are warned about).
    fn one<'n>(&mut self, node: &'n Node) -> Result<&'n Word, SyntaxError> {
        self.no_block(node);
        let w = self.arg(node, 0)?;
        self.extra(node, 1);
        Ok(w)
    }

    /// Warns about arguments from index `n` on.
    fn extra(&mut self, node: &Node, n: usize) {
        if let Some(w) = node.args.get(n) {
            self.warn(
                &w.loc,
                format!(
                    "`{}`: extra words from {:?} on are ignored",
                    node.name(),
                    w.text
                ),
            );
        }
    }

    /// A flag keyword with an optional `<BOOL>` (absent = true).
    fn flag(&mut self, node: &Node) -> Result<bool, SyntaxError> {
        self.no_block(node);
        match node.args.first() {
            None => Ok(true),
            Some(w) => {
                self.extra(node, 1);
                parse_bool(w)
            }
        }
    }

    fn text(&mut self, node: &Node) -> Result<String, SyntaxError> {
        Ok(self.one(node)?.text.clone())
    }

    fn uint(&mut self, node: &Node, lo: u64, hi: u64) -> Result<u64, SyntaxError> {
        let w = self.one(node)?;
        parse_uint(w, &format!("`{}`", node.name()), lo, hi)
    }

    fn u32v(&mut self, node: &Node) -> Result<u32, SyntaxError> {
        Ok(self.uint(node, 0, u64::from(u32::MAX))? as u32)
    }

    fn timer(&mut self, node: &Node) -> Result<Duration, SyntaxError> {
        let w = self.one(node)?;
        parse_timer(w, &format!("`{}`", node.name()))
    }

    /// A timer keepalived only takes in `lo..=hi` seconds.
    fn timer_in(&mut self, node: &Node, lo: f64, hi: f64) -> Result<Duration, SyntaxError> {
        let d = self.timer(node)?;
        if !(lo..=hi).contains(&d.as_secs_f64()) {
            return err(
                node.loc(),
                format!(
                    "`{}` {} is outside keepalived's range [{lo}, {hi}]",
                    node.name(),
                    node.args.first().map_or("", |w| w.text.as_str())
                ),
            );
        }
        Ok(d)
    }

    fn ip(&mut self, node: &Node) -> Result<IpAddr, SyntaxError> {
        let w = self.one(node)?;
        parse_ip(w, &format!("`{}`", node.name()))
    }

    /// `KEYWORD SCRIPT [username [groupname]]`.
    fn script(&mut self, node: &Node) -> Result<ScriptConf, SyntaxError> {
        self.no_block(node);
        let w = self.arg(node, 0)?;
        let argv = split_script(&w.text);
        if argv.is_empty() {
            return err(&w.loc, format!("`{}` needs a script path", node.name()));
        }
        self.extra(node, 3);
        Ok(ScriptConf {
            argv,
            user: node.args.get(1).map(|w| w.text.clone()),
            group: node.args.get(2).map(|w| w.text.clone()),
            loc: node.loc().clone(),
        })
    }

    /// `user USER [GROUP]`.
    fn user(&mut self, node: &Node) -> Result<(String, Option<String>), SyntaxError> {
        self.no_block(node);
        let u = self.arg(node, 0)?.text.clone();
        self.extra(node, 2);
        Ok((u, node.args.get(1).map(|w| w.text.clone())))
    }

    /// Handles a checker-default keyword shared by virtual server, real server and checker;
    /// returns false if `node` is not one.
    fn check_default(&mut self, node: &Node, d: &mut CheckDefaults) -> Result<bool, SyntaxError> {
        match node.name() {
            // keepalived 2.2.7 refuses 0 for both (the default applies).
            "delay_loop" => {
                d.delay_loop = Some(self.timer_in(node, MIN_TIMER_SECS, MAX_TIMER_SECS)?)
            }
            "connect_timeout" => {
                d.connect_timeout = Some(self.timer_in(node, MIN_TIMER_SECS, MAX_TIMER_SECS)?)
            }
            "retry" => d.retry = Some(self.u32v(node)?),
            "delay_before_retry" => d.delay_before_retry = Some(self.timer(node)?),
            "warmup" => d.warmup = Some(self.timer(node)?),
            "alpha" => d.alpha = Some(self.flag(node)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn global_defs(&mut self, node: &Node, g: &mut GlobalDefs) -> Result<(), SyntaxError> {
        if g.loc.is_none() {
            g.loc = Some(node.loc().clone());
        }
        for n in node.children() {
            let r = (|| -> Result<(), SyntaxError> {
                g.keywords.push(At {
                    value: n.name().to_owned(),
                    loc: n.loc().clone(),
                });
                match n.name() {
                    "router_id" => g.router_id = Some(self.text(n)?),
                    "notification_email" => {
                        self.block(n)?;
                        for e in n.children() {
                            g.notification_email.push(e.keyword.text.clone());
                        }
                    }
                    "notification_email_from" => g.notification_email_from = Some(self.text(n)?),
                    "smtp_server" => {
                        self.no_block(n);
                        let host = self.arg(n, 0)?.text.clone();
                        let port = match n.args.get(1) {
                            Some(w) => Some(parse_port(w, "smtp_server port")?),
                            None => None,
                        };
                        self.extra(n, 2);
                        g.smtp_server = Some((host, port));
                    }
                    "smtp_helo_name" => g.smtp_helo_name = Some(self.text(n)?),
                    "smtp_connect_timeout" => g.smtp_connect_timeout = Some(self.u32v(n)?),
                    "lvs_timeouts" => {
                        self.no_block(n);
                        let mut t = LvsTimeouts::default();
                        let mut i = 0;
                        while i < n.args.len() {
                            let key = &n.args[i];
                            let Some(val) = n.args.get(i + 1) else {
                                return err(
                                    &key.loc,
                                    format!(
                                        "`lvs_timeouts {}` needs a number of seconds",
                                        key.text
                                    ),
                                );
                            };
                            let secs = parse_uint(val, "an lvs timeout", 1, 86400 * 365)? as u32;
                            match key.text.as_str() {
                                "tcp" => t.tcp = Some(secs),
                                "tcpfin" => t.tcpfin = Some(secs),
                                "udp" => t.udp = Some(secs),
                                _ => {
                                    return err(
                                        &key.loc,
                                        format!(
                                            "lvs_timeouts takes tcp, tcpfin and udp, not {:?}",
                                            key.text
                                        ),
                                    );
                                }
                            }
                            i += 2;
                        }
                        if t == LvsTimeouts::default() {
                            return err(
                                n.loc(),
                                "lvs_timeouts needs at least one of tcp, tcpfin, udp",
                            );
                        }
                        g.lvs_timeouts = Some(t);
                    }
                    "lvs_flush" => g.lvs_flush = self.flag(n)?,
                    "vrrp_version" => g.vrrp_version = Some(self.uint(n, 2, 3)? as u8),
                    "vrrp_strict" => g.vrrp_strict = self.flag(n)?,
                    "vrrp_mcast_group4" => match self.ip(n)? {
                        IpAddr::V4(a) => g.vrrp_mcast_group4 = Some(a),
                        IpAddr::V6(_) => {
                            return err(n.loc(), "vrrp_mcast_group4 must be an IPv4 address");
                        }
                    },
                    "vrrp_garp_master_delay" => g.vrrp_garp_master_delay = Some(self.u32v(n)?),
                    "vrrp_garp_master_repeat" => g.vrrp_garp_master_repeat = Some(self.u32v(n)?),
                    "vrrp_garp_master_refresh" => g.vrrp_garp_master_refresh = Some(self.u32v(n)?),
                    "vrrp_garp_master_refresh_repeat" => {
                        g.vrrp_garp_master_refresh_repeat = Some(self.u32v(n)?)
                    }
                    "vrrp_garp_interval" => {
                        g.vrrp_garp_interval =
                            Some(self.timer_in(n, MIN_TIMER_SECS, MAX_TIMER_SECS)?)
                    }
                    "vrrp_gna_interval" => g.vrrp_gna_interval = Some(self.timer(n)?),
                    "vrrp_skip_check_adv_addr" => g.vrrp_skip_check_adv_addr = self.flag(n)?,
                    "enable_script_security" => g.enable_script_security = self.flag(n)?,
                    "script_user" => g.script_user = Some(self.user(n)?),
                    "default_interface" => g.default_interface = Some(self.text(n)?),
                    "checker_log_all_failures" => g.checker_log_all_failures = Some(self.flag(n)?),
                    "lvs_sync_daemon" => {
                        self.no_block(n);
                        let interface = self.arg(n, 0)?.text.clone();
                        let instance = self.arg(n, 1)?.text.clone();
                        let mut d = LvsSyncDaemon {
                            interface,
                            instance,
                            syncid: None,
                            maxlen: None,
                            port: None,
                            ttl: None,
                            group: None,
                        };
                        let mut i = 2;
                        while i < n.args.len() {
                            let key = &n.args[i];
                            let Some(val) = n.args.get(i + 1) else {
                                return err(
                                    &key.loc,
                                    format!("`lvs_sync_daemon ... {}` needs a value", key.text),
                                );
                            };
                            match key.text.as_str() {
                                "id" => {
                                    d.syncid =
                                        Some(parse_uint(val, "lvs_sync_daemon id", 0, 255)? as u8)
                                }
                                "maxlen" => {
                                    d.maxlen =
                                        Some(parse_uint(val, "lvs_sync_daemon maxlen", 1, 65507)?
                                            as u16)
                                }
                                "port" => {
                                    d.port =
                                        Some(parse_uint(val, "lvs_sync_daemon port", 1, 65535)?
                                            as u16)
                                }
                                "ttl" => {
                                    d.ttl =
                                        Some(parse_uint(val, "lvs_sync_daemon ttl", 1, 255)? as u8)
                                }
                                "group" => match val.text.parse::<IpAddr>() {
                                    Ok(a) if a.is_multicast() => d.group = Some(a),
                                    _ => {
                                        return err(
                                            &val.loc,
                                            format!(
                                                "lvs_sync_daemon group must be a multicast address, not {:?}",
                                                val.text
                                            ),
                                        );
                                    }
                                },
                                other => {
                                    return err(
                                        &key.loc,
                                        format!(
                                            "lvs_sync_daemon takes id, maxlen, port, ttl and group, not {other:?}"
                                        ),
                                    );
                                }
                            }
                            i += 2;
                        }
                        g.lvs_sync_daemon = Some(At {
                            value: d,
                            loc: n.loc().clone(),
                        });
                    }
                    _ => self.unsupported(n, "in global_defs"),
                }
                Ok(())
            })();
            self.tolerate(r, "ignored");
        }
        Ok(())
    }

    fn vsg(&mut self, node: &Node) -> Result<VirtualServerGroup, SyntaxError> {
        let name = self.arg(node, 0)?.text.clone();
        self.extra(node, 1);
        let mut entries = Vec::new();
        for n in node.children() {
            self.no_block(n);
            if n.name() == "fwmark" {
                let mark = parse_uint(self.arg(n, 0)?, "fwmark", 1, u64::from(u32::MAX))? as u32;
                self.extra(n, 2);
                entries.push(GroupEntry::Fwmark {
                    mark,
                    loc: n.loc().clone(),
                });
                continue;
            }
            let (first, last) = parse_range(&n.keyword)?;
            let port = match n.args.first() {
                Some(w) => Some(parse_port(w, "a virtual server group port")?),
                None => None,
            };
            self.extra(n, 1);
            entries.push(GroupEntry::Range {
                first,
                last,
                port,
                loc: n.loc().clone(),
            });
        }
        Ok(VirtualServerGroup {
            name,
            loc: node.loc().clone(),
            entries,
        })
    }

    fn virtual_server(&mut self, node: &Node) -> Result<VirtualServer, SyntaxError> {
        let first = self.arg(node, 0)?;
        let key = match first.text.as_str() {
            "fwmark" => {
                let w = self.arg(node, 1)?;
                self.extra(node, 2);
                VsKey::Fwmark(parse_uint(w, "fwmark", 1, u64::from(u32::MAX))? as u32)
            }
            "group" => {
                let w = self.arg(node, 1)?;
                self.extra(node, 2);
                VsKey::Group(w.text.clone())
            }
            _ => {
                let address = parse_ip(first, "a virtual server address")?;
                let port = match node.args.get(1) {
                    Some(w) => Some(parse_port(w, "a virtual server port")?),
                    None => None,
                };
                self.extra(node, 2);
                VsKey::Address { address, port }
            }
        };
        let mut vs = VirtualServer {
            key,
            loc: node.loc().clone(),
            lb_algo: None,
            lb_kind: None,
            sched_flags: Vec::new(),
            persistence_timeout: None,
            persistence_granularity: None,
            protocol: None,
            defaults: CheckDefaults::default(),
            sorry_server: None,
            sorry_server_inhibit: false,
            sorry_server_lb_kind: None,
            quorum: None,
            hysteresis: None,
            quorum_up: None,
            quorum_down: None,
            inhibit_on_failure: false,
            omega: false,
            virtualhost: None,
            real_servers: Vec::new(),
        };
        for n in node.children() {
            let r = (|| -> Result<(), SyntaxError> {
                if self.check_default(n, &mut vs.defaults)? {
                    return Ok(());
                }
                let at = |value| At {
                    value,
                    loc: n.loc().clone(),
                };
                match n.name() {
                    "lb_algo" | "lvs_sched" => vs.lb_algo = Some(at(self.text(n)?)),
                    "lb_kind" | "lvs_method" => {
                        let kind = self.lb_kind(n, "virtual")?;
                        vs.lb_kind = Some(At {
                            value: kind,
                            loc: n.loc().clone(),
                        });
                    }
                    "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                    | "mh-fallback" | "ops" => {
                        self.no_block(n);
                        self.extra(n, 0);
                        vs.sched_flags.push(at(n.name().to_owned()));
                    }
                    "persistence_timeout" => {
                        self.no_block(n);
                        let secs = match n.args.first() {
                            Some(w) => {
                                parse_uint(w, "persistence_timeout", 1, u64::from(u32::MAX))? as u32
                            }
                            None => 360,
                        };
                        self.extra(n, 1);
                        vs.persistence_timeout = Some(At {
                            value: secs,
                            loc: n.loc().clone(),
                        });
                    }
                    "persistence_granularity" => {
                        vs.persistence_granularity = Some(At {
                            value: self.text(n)?,
                            loc: n.loc().clone(),
                        })
                    }
                    "protocol" => {
                        let w = self.one(n)?;
                        let p = match w.text.to_ascii_uppercase().as_str() {
                            "TCP" => VsProtocol::Tcp,
                            "UDP" => VsProtocol::Udp,
                            "SCTP" => VsProtocol::Sctp,
                            _ => {
                                return err(
                                    &w.loc,
                                    format!("protocol must be TCP, UDP or SCTP, not {:?}", w.text),
                                );
                            }
                        };
                        vs.protocol = Some(At {
                            value: p,
                            loc: n.loc().clone(),
                        });
                    }
                    "sorry_server" => {
                        self.no_block(n);
                        let address = parse_ip(self.arg(n, 0)?, "sorry_server")?;
                        let port = match n.args.get(1) {
                            Some(w) => Some(parse_port(w, "sorry_server port")?),
                            None => None,
                        };
                        self.extra(n, 2);
                        vs.sorry_server = Some(SorryServerConf {
                            address,
                            port,
                            loc: n.loc().clone(),
                        });
                    }
                    "sorry_server_inhibit" => vs.sorry_server_inhibit = self.flag(n)?,
                    "sorry_server_lvs_method" => {
                        let kind = self.lb_kind(n, "sorry")?;
                        vs.sorry_server_lb_kind = Some(At {
                            value: kind,
                            loc: n.loc().clone(),
                        });
                    }
                    "quorum" => vs.quorum = Some(self.uint(n, 1, u64::from(u32::MAX))? as u32),
                    "hysteresis" => vs.hysteresis = Some(self.u32v(n)?),
                    "quorum_up" => vs.quorum_up = Some(self.script(n)?),
                    "quorum_down" => vs.quorum_down = Some(self.script(n)?),
                    "inhibit_on_failure" => vs.inhibit_on_failure = self.flag(n)?,
                    "omega" => vs.omega = self.flag(n)?,
                    "virtualhost" => vs.virtualhost = Some(self.text(n)?),
                    "real_server" => {
                        self.block(n)?;
                        let rs = self.real_server(n)?;
                        vs.real_servers.push(rs);
                    }
                    _ => self.unsupported(n, "in virtual_server"),
                }
                Ok(())
            })();
            self.tolerate(r, "ignored");
        }
        Ok(vs)
    }

    /// `lvs_method` of a `server` ("virtual", "sorry", "real"): tunnel options on a NAT or DR
    /// server are checked as keepalived does, then warned about, since IPVS uses them only
    /// for tunnelled servers.
    fn lb_kind(&mut self, node: &Node, server: &str) -> Result<LbKind, SyntaxError> {
        self.no_block(node);
        let kind = parse_lb_kind(node, server)?;
        if !matches!(kind, LbKind::Tun(_))
            && let Some(w) = node.args.get(1)
        {
            self.warn(
                &w.loc,
                "tunnel options only apply to lvs_method TUN (IPVS ignores them here, and so does rvs)",
            );
        }
        Ok(kind)
    }

    fn real_server(&mut self, node: &Node) -> Result<RealServerConf, SyntaxError> {
        let address = parse_ip(self.arg(node, 0)?, "a real server address")?;
        let port = match node.args.get(1) {
            Some(w) => Some(parse_port(w, "a real server port")?),
            None => None,
        };
        self.extra(node, 2);
        let mut rs = RealServerConf {
            address,
            port,
            loc: node.loc().clone(),
            weight: None,
            lb_kind: None,
            notify_up: None,
            notify_down: None,
            inhibit_on_failure: None,
            virtualhost: None,
            uthreshold: None,
            lthreshold: None,
            defaults: CheckDefaults::default(),
            checkers: Vec::new(),
        };
        for n in node.children() {
            let r = (|| -> Result<(), SyntaxError> {
                if self.check_default(n, &mut rs.defaults)? {
                    return Ok(());
                }
                match n.name() {
                    "weight" => {
                        let w = self.one(n)?;
                        rs.weight = Some(At {
                            value: parse_int(w, "weight", 0, i64::from(i32::MAX))?,
                            loc: n.loc().clone(),
                        });
                    }
                    "lb_kind" | "lvs_method" => {
                        let kind = self.lb_kind(n, "real")?;
                        rs.lb_kind = Some(At {
                            value: kind,
                            loc: n.loc().clone(),
                        });
                    }
                    "notify_up" => rs.notify_up = Some(self.script(n)?),
                    "notify_down" => rs.notify_down = Some(self.script(n)?),
                    "inhibit_on_failure" => rs.inhibit_on_failure = Some(self.flag(n)?),
                    "virtualhost" => rs.virtualhost = Some(self.text(n)?),
                    "uthreshold" => rs.uthreshold = Some(self.u32v(n)?),
                    "lthreshold" => rs.lthreshold = Some(self.u32v(n)?),
                    "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" | "DNS_CHECK"
                    | "SMTP_CHECK" | "UDP_CHECK" | "PING_CHECK" => {
                        self.block(n)?;
                        let c = self.checker(n)?;
                        rs.checkers.push(c);
                    }
                    _ => self.unsupported(n, "in real_server"),
                }
                Ok(())
            })();
            self.tolerate(r, "ignored");
        }
        Ok(rs)
    }

    fn checker(&mut self, node: &Node) -> Result<CheckerConf, SyntaxError> {
        self.extra(node, 0);
        let mut kind = match node.name() {
            "TCP_CHECK" => CheckerKindConf::Tcp,
            "HTTP_GET" => CheckerKindConf::HttpGet(HttpConf::default()),
            "SSL_GET" => CheckerKindConf::SslGet(HttpConf::default()),
            "MISC_CHECK" => CheckerKindConf::Misc(MiscConf {
                misc_path: None,
                misc_timeout: None,
                misc_dynamic: false,
                user: None,
            }),
            "DNS_CHECK" => CheckerKindConf::Dns(DnsConf::default()),
            "SMTP_CHECK" => CheckerKindConf::Smtp(SmtpConf::default()),
            "UDP_CHECK" => CheckerKindConf::Udp(UdpConf::default()),
            _ => CheckerKindConf::Ping,
        };
        let mut conn = ConnOpts::default();
        let mut defaults = CheckDefaults::default();
        let is_misc = matches!(kind, CheckerKindConf::Misc(_));
        for n in node.children() {
            let r = (|| -> Result<(), SyntaxError> {
                // keepalived 2.2.7 knows nb_get_retry in HTTP_GET and SSL_GET only
                // (deprecated there, and applied as retry); elsewhere it is unknown.
                if n.name() == "nb_get_retry"
                    && matches!(
                        kind,
                        CheckerKindConf::HttpGet(_) | CheckerKindConf::SslGet(_)
                    )
                {
                    let retry = self.u32v(n)?;
                    self.warn(
                        n.loc(),
                        "nb_get_retry is deprecated (use retry); applied as retry, as keepalived does",
                    );
                    defaults.retry = Some(retry);
                    return Ok(());
                }
                if self.check_default(n, &mut defaults)? {
                    if is_misc && n.name() == "connect_timeout" {
                        self.warn(
                            n.loc(),
                            "MISC_CHECK has no connect_timeout (use misc_timeout); ignored",
                        );
                        defaults.connect_timeout = None;
                    }
                    return Ok(());
                }
                if !is_misc && self.conn_opt(n, &mut conn)? {
                    return Ok(());
                }
                let handled = match &mut kind {
                    CheckerKindConf::HttpGet(h) | CheckerKindConf::SslGet(h) => {
                        self.http_opt(n, h)?
                    }
                    CheckerKindConf::Misc(m) => self.misc_opt(n, m)?,
                    CheckerKindConf::Dns(d) => match n.name() {
                        "type" => {
                            d.qtype = Some(self.text(n)?);
                            true
                        }
                        "name" => {
                            d.name = Some(self.text(n)?);
                            true
                        }
                        _ => false,
                    },
                    CheckerKindConf::Smtp(s) => match n.name() {
                        "helo_name" => {
                            s.helo_name = Some(self.text(n)?);
                            true
                        }
                        _ => false,
                    },
                    CheckerKindConf::Udp(u) => self.udp_opt(n, u)?,
                    CheckerKindConf::Tcp | CheckerKindConf::Ping => false,
                };
                if !handled {
                    self.unsupported(n, &format!("in {}", node.name()));
                }
                Ok(())
            })();
            self.tolerate(r, "ignored");
        }
        if let CheckerKindConf::Misc(m) = &kind
            && m.misc_path.is_none()
        {
            return err(node.loc(), "MISC_CHECK needs misc_path");
        }
        if let CheckerKindConf::SslGet(h) | CheckerKindConf::HttpGet(h) = &kind
            && h.urls.is_empty()
        {
            return err(
                node.loc(),
                format!(
                    "{} needs at least one url {{ path ... }} block",
                    node.name()
                ),
            );
        }
        Ok(CheckerConf {
            kind,
            loc: node.loc().clone(),
            conn,
            defaults,
        })
    }

    fn conn_opt(&mut self, n: &Node, c: &mut ConnOpts) -> Result<bool, SyntaxError> {
        match n.name() {
            "connect_ip" => c.connect_ip = Some(self.ip(n)?),
            "connect_port" => {
                let w = self.one(n)?;
                c.connect_port = Some(parse_port(w, "connect_port")?);
            }
            "bindto" => c.bindto = Some(self.ip(n)?),
            "bind_port" => {
                let w = self.one(n)?;
                c.bind_port = Some(parse_port(w, "bind_port")?);
            }
            "bind_if" => c.bind_if = Some(self.text(n)?),
            "fwmark" => c.fwmark = Some(self.uint(n, 0, u64::from(u32::MAX))? as u32),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn http_opt(&mut self, n: &Node, h: &mut HttpConf) -> Result<bool, SyntaxError> {
        match n.name() {
            "url" => {
                self.block(n)?;
                self.extra(n, 0);
                let mut u = UrlConf {
                    loc: n.loc().clone(),
                    path: None,
                    digest: None,
                    status_code: Vec::new(),
                    virtualhost: None,
                };
                for m in n.children() {
                    match m.name() {
                        "path" => u.path = Some(self.text(m)?),
                        "digest" => {
                            let w = self.one(m)?;
                            u.digest = Some(parse_digest(w)?);
                        }
                        "status_code" => {
                            self.no_block(m);
                            if m.args.is_empty() {
                                return err(
                                    m.loc(),
                                    "status_code needs at least one code or range",
                                );
                            }
                            u.status_code.extend(parse_status_codes(&m.args)?);
                        }
                        "virtualhost" => u.virtualhost = Some(self.text(m)?),
                        _ => self.unsupported(m, "in url"),
                    }
                }
                if u.path.is_none() {
                    return err(n.loc(), "url needs a path");
                }
                h.urls.push(u);
            }
            "virtualhost" => h.virtualhost = Some(self.text(n)?),
            "http_protocol" => {
                let w = self.one(n)?;
                if !matches!(w.text.as_str(), "1.0" | "1.0C" | "1.0c" | "1.1") {
                    return err(
                        &w.loc,
                        format!("http_protocol must be 1.0, 1.0C or 1.1, not {:?}", w.text),
                    );
                }
                h.http_protocol = Some(w.text.to_ascii_uppercase());
            }
            "enable_sni" => h.enable_sni = self.flag(n)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn misc_opt(&mut self, n: &Node, m: &mut MiscConf) -> Result<bool, SyntaxError> {
        match n.name() {
            "misc_path" => m.misc_path = Some(self.script(n)?),
            "misc_timeout" => m.misc_timeout = Some(self.uint(n, 1, 86400)? as u32),
            "misc_dynamic" => m.misc_dynamic = self.flag(n)?,
            "user" => m.user = Some(self.user(n)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn udp_opt(&mut self, n: &Node, u: &mut UdpConf) -> Result<bool, SyntaxError> {
        match n.name() {
            "payload" => {
                self.no_block(n);
                if n.args.is_empty() {
                    return err(n.loc(), "payload needs hexadecimal data");
                }
                let bytes = parse_hex(&n.args, false)?;
                u.payload = Some(bytes.into_iter().map(|(v, _)| v).collect());
            }
            "require_reply" => {
                self.no_block(n);
                u.require_reply = Some(parse_hex(&n.args, true)?);
            }
            "min_reply_length" => u.min_reply_length = Some(self.uint(n, 0, 65535)? as u32),
            "max_reply_length" => u.max_reply_length = Some(self.uint(n, 0, 65535)? as u32),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn ssl(&mut self, node: &Node) -> Result<SslConf, SyntaxError> {
        self.extra(node, 0);
        let mut s = SslConf {
            loc: Some(node.loc().clone()),
            ..SslConf::default()
        };
        for n in node.children() {
            match n.name() {
                "ca" => s.ca = Some(self.text(n)?),
                "certificate" => s.certificate = Some(self.text(n)?),
                "key" => s.key = Some(self.text(n)?),
                "password" => s.password = Some(self.text(n)?),
                _ => self.unsupported(n, "in SSL"),
            }
        }
        Ok(s)
    }

    fn name(&mut self, node: &Node) -> Result<String, SyntaxError> {
        let w = self.arg(node, 0)?;
        self.extra(node, 1);
        Ok(w.text.clone())
    }

    /// `track_interface` / `track_script` entries: `NAME [weight N] [reverse|noreverse]`.
    fn tracked(&mut self, node: &Node, lo: i64, hi: i64) -> Result<Vec<Tracked>, SyntaxError> {
        self.block(node)?;
        let mut out = Vec::new();
        for n in node.children() {
            self.no_block(n);
            let mut t = Tracked {
                name: n.keyword.text.clone(),
                weight: None,
                reverse: false,
                loc: n.loc().clone(),
            };
            let mut i = 0;
            while i < n.args.len() {
                let w = &n.args[i];
                match w.text.as_str() {
                    "weight" => {
                        let Some(v) = n.args.get(i + 1) else {
                            return err(&w.loc, "weight needs a value");
                        };
                        t.weight = Some(parse_int(v, "a tracking weight", lo, hi)? as i32);
                        i += 2;
                    }
                    "reverse" => {
                        t.reverse = true;
                        i += 1;
                    }
                    "noreverse" | "no_reverse" => {
                        t.reverse = false;
                        i += 1;
                    }
                    _ => {
                        self.warn(
                            &w.loc,
                            format!(
                                "`{}` in {} is not supported by rvs; ignored",
                                w.text,
                                node.name()
                            ),
                        );
                        i += 1;
                    }
                }
            }
            out.push(t);
        }
        Ok(out)
    }

    /// A notify keyword shared by instances and sync groups; false if `n` is not one.
    fn vrrp_notify(&mut self, n: &Node, v: &mut VrrpNotify) -> Result<bool, SyntaxError> {
        match n.name() {
            "notify_master" => v.master = Some(self.script(n)?),
            "notify_backup" => v.backup = Some(self.script(n)?),
            "notify_fault" => v.fault = Some(self.script(n)?),
            "notify_stop" => v.stop = Some(self.script(n)?),
            "notify" => v.any = Some(self.script(n)?),
            "notify_master_rx_lower_pri" => v.master_rx_lower_pri = Some(self.script(n)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn vrrp_instance(&mut self, node: &Node) -> Result<VrrpInstance, SyntaxError> {
        let mut v = VrrpInstance {
            name: self.name(node)?,
            loc: Some(node.loc().clone()),
            ..VrrpInstance::default()
        };
        for n in node.children() {
            let r = (|| -> Result<(), SyntaxError> {
                if self.vrrp_notify(n, &mut v.notify)? {
                    return Ok(());
                }
                match n.name() {
                    "state" => {
                        let w = self.one(n)?;
                        v.state = Some(match w.text.to_ascii_uppercase().as_str() {
                            "MASTER" => VrrpState::Master,
                            "BACKUP" => VrrpState::Backup,
                            _ => {
                                return err(
                                    &w.loc,
                                    format!("state must be MASTER or BACKUP, not {:?}", w.text),
                                );
                            }
                        });
                    }
                    "interface" => v.interface = Some(self.text(n)?),
                    "virtual_router_id" => v.virtual_router_id = Some(self.uint(n, 1, 255)? as u8),
                    "priority" => v.priority = Some(self.uint(n, 1, 255)? as u8),
                    "advert_int" => v.advert_int = Some(self.timer_in(n, 0.01, 255.0)?),
                    "authentication" => {
                        self.block(n)?;
                        let mut a = Authentication {
                            auth_type: None,
                            auth_pass: None,
                        };
                        for m in n.children() {
                            match m.name() {
                                "auth_type" => {
                                    let w = self.one(m)?;
                                    a.auth_type =
                                        Some(match w.text.to_ascii_uppercase().as_str() {
                                            "PASS" => AuthType::Pass,
                                            "AH" => AuthType::Ah,
                                            _ => {
                                                return err(
                                                    &w.loc,
                                                    format!(
                                                        "auth_type must be PASS or AH, not {:?}",
                                                        w.text
                                                    ),
                                                );
                                            }
                                        });
                                }
                                "auth_pass" => a.auth_pass = Some(self.text(m)?),
                                _ => self.unsupported(m, "in authentication"),
                            }
                        }
                        v.authentication = Some(a);
                    }
                    "virtual_ipaddress" => {
                        self.block(n)?;
                        v.virtual_ipaddress = self.vips(n)?;
                    }
                    "virtual_ipaddress_excluded" => {
                        self.block(n)?;
                        v.virtual_ipaddress_excluded = self.vips(n)?;
                    }
                    "track_interface" => v.track_interface = self.tracked(n, -253, 253)?,
                    "track_script" => v.track_script = self.tracked(n, -253, 253)?,
                    "nopreempt" => v.nopreempt = self.flag(n)?,
                    "preempt" => {
                        self.no_block(n);
                        v.nopreempt = false;
                    }
                    "preempt_delay" => {
                        let d = self.timer(n)?;
                        if d > Duration::from_secs(1000) {
                            return err(n.loc(), "preempt_delay must be at most 1000 seconds");
                        }
                        v.preempt_delay = Some(d);
                    }
                    "mcast_src_ip" => v.mcast_src_ip = Some(self.ip(n)?),
                    "unicast_src_ip" => v.unicast_src_ip = Some(self.ip(n)?),
                    "unicast_peer" => {
                        self.block(n)?;
                        for m in n.children() {
                            self.no_block(m);
                            let mut p = UnicastPeer {
                                address: parse_ip(&m.keyword, "a unicast peer")?,
                                min_ttl: None,
                                max_ttl: None,
                            };
                            let mut i = 0;
                            while i < m.args.len() {
                                let w = &m.args[i];
                                let Some(val) = m.args.get(i + 1) else {
                                    return err(&w.loc, format!("`{}` needs a value", w.text));
                                };
                                let ttl = parse_uint(val, "a TTL", 0, 255)? as u8;
                                match w.text.as_str() {
                                    "min_ttl" => p.min_ttl = Some(ttl),
                                    "max_ttl" => p.max_ttl = Some(ttl),
                                    _ => {
                                        return err(
                                            &w.loc,
                                            format!(
                                                "unicast_peer takes min_ttl and max_ttl, not {:?}",
                                                w.text
                                            ),
                                        );
                                    }
                                }
                                i += 2;
                            }
                            v.unicast_peer.push(p);
                        }
                    }
                    "version" => v.version = Some(self.uint(n, 2, 3)? as u8),
                    "accept" => {
                        self.no_block(n);
                        v.accept = Some(true);
                    }
                    "no_accept" => {
                        self.no_block(n);
                        v.accept = Some(false);
                    }
                    "dont_track_primary" => v.dont_track_primary = self.flag(n)?,
                    "use_vmac" => {
                        self.no_block(n);
                        let mut u = UseVmac::default();
                        for w in &n.args {
                            if w.text.contains(':') {
                                u.mac = Some(w.text.clone());
                            } else {
                                u.name = Some(w.text.clone());
                            }
                        }
                        v.use_vmac = Some(u);
                    }
                    "vmac_xmit_base" => v.vmac_xmit_base = self.flag(n)?,
                    "garp_master_delay" => v.garp_master_delay = Some(self.u32v(n)?),
                    "garp_master_repeat" => v.garp_master_repeat = Some(self.u32v(n)?),
                    "garp_master_refresh" => v.garp_master_refresh = Some(self.u32v(n)?),
                    "garp_master_refresh_repeat" => {
                        v.garp_master_refresh_repeat = Some(self.u32v(n)?)
                    }
                    "garp_lower_prio_delay" => v.garp_lower_prio_delay = Some(self.u32v(n)?),
                    "garp_lower_prio_repeat" => v.garp_lower_prio_repeat = Some(self.u32v(n)?),
                    "strict_mode" => v.strict_mode = Some(self.flag(n)?),
                    _ => self.unsupported(n, "in vrrp_instance"),
                }
                Ok(())
            })();
            self.tolerate(r, "ignored");
        }
        if v.virtual_ipaddress.is_empty() {
            // keepalived 2.2.7: "No VIP specified; at least one is sensible" (a complaint).
            self.warn(
                node.loc(),
                "vrrp_instance has no virtual_ipaddress; at least one is sensible (keepalived complains too)",
            );
        }
        Ok(v)
    }

    fn vips(&mut self, node: &Node) -> Result<Vec<VirtualIp>, SyntaxError> {
        let mut out = Vec::new();
        for n in node.children() {
            self.no_block(n);
            let (addr, prefix) = match n.keyword.text.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (n.keyword.text.as_str(), None),
            };
            let address = addr.parse::<IpAddr>().or_else(|_| {
                err(
                    n.loc(),
                    format!("{:?} is not an IP address", n.keyword.text),
                )
            })?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix_len = match prefix {
                Some(p) => match p.parse::<u8>() {
                    Ok(v) if v <= max => Some(v),
                    _ => {
                        return err(
                            n.loc(),
                            format!("bad prefix length in {:?}", n.keyword.text),
                        );
                    }
                },
                None => None,
            };
            let mut vip = VirtualIp {
                address,
                prefix_len,
                brd: None,
                dev: None,
                scope: None,
                label: None,
                no_track: false,
                loc: n.loc().clone(),
            };
            let mut i = 0;
            while i < n.args.len() {
                let w = &n.args[i];
                let value = n.args.get(i + 1);
                let need = |v: Option<&Word>| match v {
                    Some(v) => Ok(v.text.clone()),
                    None => err(&w.loc, format!("`{}` needs a value", w.text)),
                };
                match w.text.as_str() {
                    "brd" => {
                        let v = need(value)?;
                        vip.brd =
                            Some(v.parse().or_else(|_| {
                                err(&w.loc, format!("brd {v:?} is not an IP address"))
                            })?);
                        i += 2;
                    }
                    "dev" => {
                        vip.dev = Some(need(value)?);
                        i += 2;
                    }
                    "scope" => {
                        let v = need(value)?;
                        if !matches!(v.as_str(), "site" | "link" | "host" | "nowhere" | "global") {
                            return err(
                                &w.loc,
                                format!(
                                    "scope must be site, link, host, nowhere or global, not {v:?}"
                                ),
                            );
                        }
                        vip.scope = Some(v);
                        i += 2;
                    }
                    "label" => {
                        vip.label = Some(need(value)?);
                        i += 2;
                    }
                    "no_track" => {
                        vip.no_track = true;
                        i += 1;
                    }
                    "peer" | "preferred_lft" | "track_group" => {
                        self.warn(
                            &w.loc,
                            format!(
                                "virtual address option `{}` is not supported by rvs; ignored",
                                w.text
                            ),
                        );
                        i += 2;
                    }
                    _ => {
                        self.warn(
                            &w.loc,
                            format!(
                                "virtual address option `{}` is not supported by rvs; ignored",
                                w.text
                            ),
                        );
                        i += 1;
                    }
                }
            }
            out.push(vip);
        }
        Ok(out)
    }

    fn vrrp_script(&mut self, node: &Node) -> Result<VrrpScript, SyntaxError> {
        let mut s = VrrpScript {
            name: self.name(node)?,
            loc: Some(node.loc().clone()),
            ..VrrpScript::default()
        };
        for n in node.children() {
            let r = (|| -> Result<(), SyntaxError> {
                match n.name() {
                    "script" => s.script = Some(self.script(n)?),
                    "interval" => s.interval = Some(self.timer(n)?),
                    "timeout" => s.timeout = Some(self.timer(n)?),
                    "weight" => {
                        self.no_block(n);
                        s.weight = Some(parse_int(self.arg(n, 0)?, "weight", -253, 253)? as i32);
                        match n.args.get(1).map(|w| w.text.as_str()) {
                            None => {}
                            Some("reverse") => s.weight_reverse = true,
                            Some("noreverse") | Some("no_reverse") => s.weight_reverse = false,
                            Some(_) => self.extra(n, 1),
                        }
                    }
                    "rise" => s.rise = Some(self.uint(n, 1, u64::from(u32::MAX))? as u32),
                    "fall" => s.fall = Some(self.uint(n, 1, u64::from(u32::MAX))? as u32),
                    "user" => s.user = Some(self.user(n)?),
                    "init_fail" => s.init_fail = self.flag(n)?,
                    _ => self.unsupported(n, "in vrrp_script"),
                }
                Ok(())
            })();
            self.tolerate(r, "ignored");
        }
        Ok(s)
    }

    fn vrrp_sync_group(&mut self, node: &Node) -> Result<VrrpSyncGroup, SyntaxError> {
        let mut g = VrrpSyncGroup {
            name: self.name(node)?,
            loc: Some(node.loc().clone()),
            ..VrrpSyncGroup::default()
        };
        for n in node.children() {
            let r = (|| -> Result<(), SyntaxError> {
                if self.vrrp_notify(n, &mut g.notify)? {
                    return Ok(());
                }
                match n.name() {
                    "group" => {
                        self.block(n)?;
                        for m in n.children() {
                            self.no_block(m);
                            g.group.push(m.keyword.text.clone());
                            for w in &m.args {
                                g.group.push(w.text.clone());
                            }
                        }
                    }
                    "track_interface" => g.track_interface = self.tracked(n, -253, 253)?,
                    "track_script" => g.track_script = self.tracked(n, -253, 253)?,
                    _ => self.unsupported(n, "in vrrp_sync_group"),
                }
                Ok(())
            })();
            self.tolerate(r, "ignored");
        }
        Ok(g)
    }
}

/// Parses a virtual server group address: `IP`, `A.B.C.D-E`, `A.B.C.D-E.F.G.H` or `IP/N`.
fn parse_range(word: &Word) -> Result<(IpAddr, IpAddr), SyntaxError> {
    let t = &word.text;
    let bad = || {
        err(
            &word.loc,
            format!("{t:?} is not an address, address range (A.B.C.D-E, A-B) or prefix (A/N)"),
        )
    };
    if let Some((a, n)) = t.split_once('/') {
        let Ok(IpAddr::V4(a)) = a.parse::<IpAddr>() else {
            return bad();
        };
        let Ok(n) = n.parse::<u32>() else {
            return bad();
        };
        if n > 32 {
            return bad();
        }
        let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
        let base = u32::from(a) & mask;
        return Ok((
            IpAddr::V4(Ipv4Addr::from(base)),
            IpAddr::V4(Ipv4Addr::from(base | !mask)),
        ));
    }
    if let Some((a, b)) = t.split_once('-') {
        let Ok(first) = a.parse::<IpAddr>() else {
            return bad();
        };
        let last = match (first, b.parse::<IpAddr>()) {
            (_, Ok(last)) => last,
            (IpAddr::V4(f), Err(_)) => {
                let Ok(tail) = b.parse::<u8>() else {
                    return bad();
                };
                let mut o = f.octets();
                o[3] = tail;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            (IpAddr::V6(f), Err(_)) => {
                let Ok(tail) = u16::from_str_radix(b, 16) else {
                    return bad();
                };
                let mut s = f.segments();
                s[7] = tail;
                IpAddr::V6(s.into())
            }
        };
        if first.is_ipv4() != last.is_ipv4() || last < first {
            return err(
                &word.loc,
                format!("address range {t:?} is empty or mixes families"),
            );
        }
        return Ok((first, last));
    }
    match t.parse::<IpAddr>() {
        Ok(a) => Ok((a, a)),
        Err(_) => bad(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse_str;
    use std::path::Path;

    fn build_str(text: &str) -> Result<(KeepalivedConf, Vec<Warning>), SyntaxError> {
        let doc = parse_str(Path::new("m.conf"), text)?;
        let mut w = doc.warnings;
        let c = build(&doc.nodes, &mut w)?;
        Ok((c, w))
    }

    #[test]
    fn lvs_sync_daemon_with_every_option() {
        let (c, w) = build_str(
            "global_defs {\n  lvs_sync_daemon eth1 VI_1 id 7 maxlen 1400 port 8850 ttl 2 group 224.0.0.99\n}\n",
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        let d = c.global_defs.lvs_sync_daemon.unwrap().value;
        assert_eq!(
            (d.interface.as_str(), d.instance.as_str()),
            ("eth1", "VI_1")
        );
        assert_eq!(
            (d.syncid, d.maxlen, d.port, d.ttl),
            (Some(7), Some(1400), Some(8850), Some(2))
        );
        assert_eq!(d.group, Some("224.0.0.99".parse().unwrap()));
        let (c, _) = build_str("global_defs {\n  lvs_sync_daemon eth1 VI_1\n}\n").unwrap();
        assert_eq!(c.global_defs.lvs_sync_daemon.unwrap().value.syncid, None);
        for bad in [
            "eth1",
            "eth1 VI_1 id 256",
            "eth1 VI_1 group 198.18.0.1",
            "eth1 VI_1 ttl",
            "eth1 VI_1 mtu 1",
        ] {
            // keepalived reports a bad lvs_sync_daemon and runs without a sync daemon.
            let text = format!("global_defs {{\n  lvs_sync_daemon {bad}\n}}\n");
            let (c, w) = build_str(&text).unwrap();
            assert!(
                c.global_defs.lvs_sync_daemon.is_none(),
                "{bad} must be ignored"
            );
            assert!(
                w.iter().any(|w| w.message.contains("lvs_sync_daemon")),
                "{bad} must be reported: {w:?}"
            );
        }
    }

    #[test]
    fn script_splitting() {
        assert_eq!(
            split_script("/bin/x a  'b c' d"),
            ["/bin/x", "a", "b c", "d"]
        );
        assert_eq!(split_script("  "), Vec::<String>::new());
        assert_eq!(split_script("x ''"), ["x", ""]);
    }

    #[test]
    fn ranges() {
        let w = |t: &str| Word {
            text: t.into(),
            loc: Loc {
                file: Path::new("x").into(),
                line: 1,
                column: 1,
            },
        };
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse_range(&w("198.18.0.3-10")).unwrap(),
            (v4("198.18.0.3"), v4("198.18.0.10"))
        );
        assert_eq!(
            parse_range(&w("198.18.0.250-198.18.1.2")).unwrap(),
            (v4("198.18.0.250"), v4("198.18.1.2"))
        );
        assert_eq!(
            parse_range(&w("198.18.0.9/29")).unwrap(),
            (v4("198.18.0.8"), v4("198.18.0.15"))
        );
        assert!(parse_range(&w("198.18.0.10-3")).is_err());
        assert!(parse_range(&w("nonsense")).is_err());
    }

    #[test]
    fn hex_and_digest() {
        let loc = Loc {
            file: Path::new("x").into(),
            line: 1,
            column: 1,
        };
        let w = |t: &str| Word {
            text: t.into(),
            loc: loc.clone(),
        };
        let v: Vec<u8> = parse_hex(&[w("Ab12f"), w("3"), w("456")], false)
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(v, [0xab, 0x12, 0x0f, 0x03, 0x45, 0x06]);
        assert_eq!(parse_hex(&[w("aX")], true).unwrap(), [(0xa0, 0xf0)]);
        assert!(parse_hex(&[w("zz")], false).is_err());
        assert_eq!(
            parse_digest(&w("640205b7b0fc66c1ea91c463fac6334d")).unwrap()[0],
            0x64
        );
        assert!(parse_digest(&w("640205")).is_err());
    }

    #[test]
    fn unknown_keywords_warn_with_location() {
        let (_, w) = build_str("global_defs {\n  router_id x\n  bogus 1\n}\nfoo { }\n").unwrap();
        let text: Vec<String> = w.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            text,
            [
                "m.conf:3:3: warning: `bogus` in global_defs is not supported by rvs; ignored",
                "m.conf:5:1: warning: `foo` at top level is not supported by rvs; ignored"
            ]
        );
    }

    #[test]
    fn bad_values_are_located_warnings_and_ignored_as_keepalived_does() {
        let (conf, w) =
            build_str("virtual_server 198.18.0.1 80 {\n  delay_loop soon\n}\n").unwrap();
        assert_eq!(conf.virtual_servers[0].defaults.delay_loop, None);
        assert_eq!(
            w[0].to_string(),
            "m.conf:2:14: warning: `delay_loop` must be a number of seconds (e.g. 3 or 1.5), not \"soon\"; ignored, as keepalived does"
        );
        let (conf, w) = build_str("virtual_server 198.18.0.1 99999 {\n}\n").unwrap();
        assert!(conf.virtual_servers.is_empty());
        assert!(
            w[0].to_string()
                .starts_with("m.conf:1:27: warning: a virtual server port must be an integer"),
            "{w:?}"
        );
        let (conf, w) = build_str("virtual_server 198.18.0.1 80\n").unwrap();
        assert!(conf.virtual_servers.is_empty());
        assert_eq!(
            w[0].to_string(),
            "m.conf:1:1: warning: `virtual_server` needs a { ... } block; this `virtual_server` is left out, as keepalived does"
        );
    }
}
