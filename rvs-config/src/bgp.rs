//! `[bgp]`: announcing the VIPs through a BGP daemon (BIRD 2) for active-active directors
//! behind a router doing ECMP. The section is the same in `rvs.toml` and in the file given
//! beside a keepalived.conf (`rvsd --keepalived FILE --bgp BGP.toml`, keepalived has no BGP).
//!
//! ```toml
//! [bgp]
//! local_as = 65001
//! router_id = "198.18.3.2"
//! drain_seconds = 10
//!
//! [[bgp.peer]]
//! address = "198.18.3.1"
//! as = 65000
//! hold_time = 3
//! bfd = true
//! ```
//!
//! Validation is here (plain data, no I/O); rvs-bgp renders the daemon's configuration
//! from it and decides what is announced.

use std::{collections::HashSet, fmt, net::Ipv4Addr, path::PathBuf, str::FromStr};

use serde::{Deserialize, Serialize};

/// The BGP daemon rvsd drives (only BIRD 2; others are refused by name).
pub const SUPPORTED_DAEMON: &str = "bird";

/// `[bgp]`: what rvsd announces, to whom, and how it drives the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    /// The daemon: `"bird"` (BIRD 2). GoBGP and FRR are refused with a message.
    #[serde(default = "default_daemon")]
    pub daemon: String,
    /// Whether rvsd starts the daemon itself (`bird -f -c CONFIG -s SOCKET`) and stops it
    /// when it exits; `false`: the operator runs `bird -c CONFIG -s SOCKET` (e.g. from a
    /// systemd unit) and rvsd only rewrites CONFIG and reconfigures through SOCKET.
    #[serde(default = "default_true")]
    pub spawn: bool,
    /// The daemon binary (when `spawn`).
    #[serde(default = "default_bird")]
    pub bird: PathBuf,
    /// The daemon configuration file rvsd writes (whole; rewritten on every change).
    #[serde(default = "default_config_path")]
    pub config: PathBuf,
    /// The daemon's control socket (`bird -s`, `birdc -s`).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// This director's AS number.
    pub local_as: u32,
    /// The BGP router id (an IPv4 address of this director, unique among the speakers).
    pub router_id: Ipv4Addr,
    /// The next hop announced for the VIPs; default: the address of the session's local
    /// end (BIRD's `next hop self`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<Ipv4Addr>,
    /// Standard communities (`"ASN:VALUE"`, each 0..=65535) added to every announced VIP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// A VIP is announced while each of its services (or one, see `require`) has at least
    /// this many healthy real servers (weight > 0 and in service).
    #[serde(default = "default_min_healthy")]
    pub min_healthy: u32,
    /// Whether every service of a VIP must have `min_healthy` servers (`"all"`) or one
    /// service is enough (`"any"`).
    #[serde(default)]
    pub require: Require,
    /// On SIGTERM: seconds rvsd keeps balancing after withdrawing the VIPs, so the router
    /// moves new flows away and established ones finish or move, before it exits.
    #[serde(default = "default_drain")]
    pub drain_seconds: u32,
    /// Whether VIPs are announced unless a `[[bgp.vip]]` says otherwise (`false`: only
    /// the VIPs listed with `announce = true`).
    #[serde(default = "default_true")]
    pub announce_all: bool,
    /// BFD timers for the peers with `bfd = true`.
    #[serde(default)]
    pub bfd: BfdTimers,
    /// The BGP sessions (the routers).
    #[serde(default, rename = "peer")]
    pub peers: Vec<Peer>,
    /// Per-VIP settings.
    #[serde(default, rename = "vip", skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<VipPolicy>,
}

/// `[[bgp.peer]]`: one BGP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's address (directly connected: eBGP, one hop).
    pub address: Ipv4Addr,
    /// The peer's AS number.
    #[serde(rename = "as")]
    pub asn: u32,
    /// Hold time in seconds (0 = none, else 3..=65535); keepalives go at a third of it.
    #[serde(default = "default_hold")]
    pub hold_time: u16,
    /// Whether BFD watches the session (the router must run BFD too).
    #[serde(default)]
    pub bfd: bool,
    /// The local address of the session (default: the daemon picks the outgoing one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Ipv4Addr>,
}

/// `[bgp.bfd]`: BFD timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BfdTimers {
    /// Transmit and receive interval, milliseconds (10..=10000).
    pub interval_ms: u32,
    /// Missed packets before the session is down (2..=255).
    pub multiplier: u32,
}

impl Default for BfdTimers {
    fn default() -> Self {
        Self {
            interval_ms: 100,
            multiplier: 3,
        }
    }
}

/// `[[bgp.vip]]`: one VIP's announcement settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipPolicy {
    /// The VIP.
    pub address: Ipv4Addr,
    /// Whether it is announced at all.
    #[serde(default = "default_true")]
    pub announce: bool,
    /// Overrides `[bgp] min_healthy` for this VIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy: Option<u32>,
}

/// How many of a VIP's services must be healthy for it to be announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Every service of the VIP.
    #[default]
    All,
    /// At least one.
    Any,
}

/// A standard BGP community, `ASN:VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u16, pub u16);

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

impl FromStr for Community {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("community {s:?}: expected ASN:VALUE, each 0..=65535 (e.g. 65001:100)");
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        Ok(Community(
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ))
    }
}

impl Serialize for Community {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Community {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_daemon() -> String {
    SUPPORTED_DAEMON.to_owned()
}
fn default_true() -> bool {
    true
}
fn default_bird() -> PathBuf {
    PathBuf::from("/usr/sbin/bird")
}
fn default_config_path() -> PathBuf {
    PathBuf::from("/run/rvs/bird.conf")
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/rvs/bird.ctl")
}
fn default_min_healthy() -> u32 {
    1
}
fn default_drain() -> u32 {
    10
}
fn default_hold() -> u16 {
    9
}

/// Longest drain rvsd accepts (an hour: a stop that takes longer is a misconfiguration).
pub const MAX_DRAIN_SECONDS: u32 = 3600;

/// `AS_TRANS` (RFC 6793), never a real AS.
const AS_TRANS: u32 = 23456;

fn check_asn(what: &str, asn: u32) -> Result<(), String> {
    if asn == 0 || asn == AS_TRANS || asn == u32::MAX {
        return Err(format!(
            "{what} {asn} is reserved; use a real AS number (private ones: 64512-65534, 4200000000-4294967294)"
        ));
    }
    Ok(())
}

fn unicast(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() || addr.is_loopback())
}

impl Bgp {
    /// Checks everything parsing alone does not; the message names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        match self.daemon.as_str() {
            SUPPORTED_DAEMON => {}
            "gobgp" | "gobgpd" | "frr" | "bgpd" | "quagga" | "exabgp" => {
                return Err(format!(
                    "[bgp] daemon = {:?} is not supported: rvsd drives BIRD 2 (daemon = \"bird\", Debian package bird2)",
                    self.daemon
                ));
            }
            other => {
                return Err(format!(
                    "[bgp] daemon = {other:?}: unknown daemon; rvsd drives BIRD 2 (daemon = \"bird\")"
                ));
            }
        }
        check_asn("[bgp] local_as", self.local_as)?;
        if !unicast(self.router_id) {
            return Err(format!(
                "[bgp] router_id {}: must be a unicast IPv4 address of this director",
                self.router_id
            ));
        }
        if let Some(nh) = self.next_hop
            && !unicast(nh)
        {
            return Err(format!(
                "[bgp] next_hop {nh}: must be a unicast address the router reaches directly"
            ));
        }
        if self.config == self.socket {
            return Err(format!(
                "[bgp] config and socket are both {}",
                self.config.display()
            ));
        }
        if self.drain_seconds > MAX_DRAIN_SECONDS {
            return Err(format!(
                "[bgp] drain_seconds {}: at most {MAX_DRAIN_SECONDS}",
                self.drain_seconds
            ));
        }
        let b = self.bfd;
        if !(10..=10_000).contains(&b.interval_ms) {
            return Err(format!(
                "[bgp.bfd] interval_ms {}: must be 10..=10000",
                b.interval_ms
            ));
        }
        if !(2..=255).contains(&b.multiplier) {
            return Err(format!(
                "[bgp.bfd] multiplier {}: must be 2..=255",
                b.multiplier
            ));
        }
        if self.peers.is_empty() {
            return Err(
                "[bgp] has no [[bgp.peer]]: name the router(s) to announce the VIPs to".to_owned(),
            );
        }
        let mut seen = HashSet::new();
        for p in &self.peers {
            let at = format!("[[bgp.peer]] {}", p.address);
            if !unicast(p.address) {
                return Err(format!("{at}: not a unicast address"));
            }
            if !seen.insert(p.address) {
                return Err(format!("{at}: listed twice"));
            }
            check_asn(&format!("{at}: as"), p.asn)?;
            if p.hold_time != 0 && p.hold_time < 3 {
                return Err(format!(
                    "{at}: hold_time {}: must be 0 (no hold timer) or 3..=65535 seconds (RFC 4271)",
                    p.hold_time
                ));
            }
            if p.hold_time == 0 && !p.bfd {
                return Err(format!(
                    "{at}: hold_time 0 without bfd: a dead director would never be withdrawn"
                ));
            }
            if let Some(s) = p.source
                && !unicast(s)
            {
                return Err(format!("{at}: source {s}: not a unicast address"));
            }
        }
        let mut vips = HashSet::new();
        for v in &self.vips {
            if !vips.insert(v.address) {
                return Err(format!("[[bgp.vip]] {}: listed twice", v.address));
            }
            if v.min_healthy == Some(0) {
                return Err(format!(
                    "[[bgp.vip]] {}: min_healthy 0 would announce a VIP with no server; use 1 or more (or announce = false)",
                    v.address
                ));
            }
        }
        if self.min_healthy == 0 {
            return Err(
                "[bgp] min_healthy 0 would announce VIPs with no server; use 1 or more".to_owned(),
            );
        }
        Ok(())
    }

    /// The settings of `vip`: whether it is announced and its minimum of healthy servers.
    pub fn vip_policy(&self, vip: Ipv4Addr) -> (bool, u32) {
        match self.vips.iter().find(|v| v.address == vip) {
            Some(v) => (v.announce, v.min_healthy.unwrap_or(self.min_healthy)),
            None => (self.announce_all, self.min_healthy),
        }
    }
}

/// The file given with `rvsd --keepalived FILE --bgp BGP.toml`: only a `[bgp]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpFile {
    /// The section.
    pub bgp: Bgp,
}

impl BgpFile {
    /// Parses and validates the file's text.
    pub fn from_toml(text: &str) -> Result<Bgp, String> {
        let file: BgpFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.bgp.validate()?;
        Ok(file.bgp)
    }
}

/// Whether a scheduler picks the same real server for a flow on every director (given the
/// same servers), which ECMP needs: the router may send a flow's packets to any director.
pub fn consistent_scheduler(s: crate::Scheduler) -> bool {
    matches!(s, crate::Scheduler::Mh | crate::Scheduler::Sh)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[bgp]\nlocal_as = 65001\nrouter_id = \"198.18.3.2\"\n\n[[bgp.peer]]\naddress = \"198.18.3.1\"\nas = 65000\n";

    fn parse(extra: &str) -> Result<Bgp, String> {
        BgpFile::from_toml(&format!("{BASE}{extra}"))
    }

    #[test]
    fn defaults_are_bird_spawned_one_healthy_ten_second_drain() {
        let b = parse("").expect("valid");
        assert_eq!(b.daemon, "bird");
        assert!(b.spawn);
        assert_eq!(b.min_healthy, 1);
        assert_eq!(b.drain_seconds, 10);
        assert_eq!(b.peers[0].hold_time, 9);
        assert!(!b.peers[0].bfd);
        assert_eq!(b.socket, PathBuf::from("/run/rvs/bird.ctl"));
        assert_eq!(
            b.vip_policy(Ipv4Addr::new(198, 18, 0, 10)),
            (true, 1),
            "VIPs are announced by default"
        );
    }

    #[test]
    fn per_vip_settings_override_the_section() {
        let b = parse(
            "[[bgp.vip]]\naddress = \"198.18.0.10\"\nmin_healthy = 2\n\n[[bgp.vip]]\naddress = \"198.18.0.11\"\nannounce = false\n",
        )
        .expect("valid");
        assert_eq!(b.vip_policy(Ipv4Addr::new(198, 18, 0, 10)), (true, 2));
        assert_eq!(b.vip_policy(Ipv4Addr::new(198, 18, 0, 11)), (false, 1));
    }

    #[test]
    fn communities_parse_and_print_as_asn_value() {
        let b = parse("").expect("valid");
        assert!(b.communities.is_empty());
        let b = BgpFile::from_toml(&BASE.replace(
            "[bgp]\n",
            "[bgp]\ncommunities = [\"65001:100\", \"0:65535\"]\n",
        ))
        .expect("valid");
        assert_eq!(
            b.communities,
            vec![Community(65001, 100), Community(0, 65535)]
        );
        assert_eq!(b.communities[0].to_string(), "65001:100");
        let e =
            BgpFile::from_toml(&BASE.replace("[bgp]\n", "[bgp]\ncommunities = [\"65536:1\"]\n"))
                .expect_err("out of range");
        assert!(e.contains("expected ASN:VALUE, each 0..=65535"), "{e}");
    }

    #[test]
    fn other_daemons_are_refused_by_name() {
        let e = BgpFile::from_toml(&BASE.replace("[bgp]\n", "[bgp]\ndaemon = \"gobgp\"\n"))
            .expect_err("gobgp");
        assert!(
            e.contains("\"gobgp\" is not supported: rvsd drives BIRD 2"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                BASE.replace("as = 65000", "as = 0"),
                "[[bgp.peer]] 198.18.3.1: as 0 is reserved",
            ),
            (
                BASE.replace("local_as = 65001", "local_as = 23456"),
                "[bgp] local_as 23456 is reserved",
            ),
            (
                BASE.replace("198.18.3.2", "0.0.0.0"),
                "[bgp] router_id 0.0.0.0",
            ),
            (format!("{BASE}hold_time = 2\n"), "hold_time 2: must be 0"),
            (format!("{BASE}hold_time = 0\n"), "hold_time 0 without bfd"),
            (
                format!("{BASE}\n[[bgp.peer]]\naddress = \"198.18.3.1\"\nas = 65000\n"),
                "[[bgp.peer]] 198.18.3.1: listed twice",
            ),
            (
                BASE.replace("[bgp]\n", "[bgp]\ndrain_seconds = 7200\n"),
                "drain_seconds 7200: at most 3600",
            ),
            (
                BASE.replace("[bgp]\n", "[bgp]\nmin_healthy = 0\n"),
                "min_healthy 0",
            ),
            (
                format!("{BASE}\n[bgp.bfd]\ninterval_ms = 1\n"),
                "[bgp.bfd] interval_ms 1",
            ),
            (
                "[bgp]\nlocal_as = 65001\nrouter_id = \"198.18.3.2\"\n".to_owned(),
                "has no [[bgp.peer]]",
            ),
        ];
        for (text, want) in cases {
            let e = BgpFile::from_toml(&text).expect_err(&text);
            assert!(e.contains(want), "{text}\n=> {e}\n(wanted {want})");
        }
    }

    #[test]
    fn rvs_toml_carries_the_section_and_refuses_a_bad_one() {
        let ok = crate::Config::from_toml(BASE).expect("valid rvs.toml");
        assert_eq!(ok.bgp.as_ref().map(|b| b.local_as), Some(65001));
        let round = crate::Config::from_toml(&ok.to_toml()).expect("round trip");
        assert_eq!(round, ok);
        let e =
            crate::Config::from_toml(&BASE.replace("as = 65000", "as = 0")).expect_err("bad peer");
        assert!(
            e.to_string()
                .contains("[[bgp.peer]] 198.18.3.1: as 0 is reserved"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_syntax_errors() {
        let e = parse("passwrd = \"x\"\n").expect_err("unknown key");
        assert!(e.contains("unknown field `passwrd`"), "{e}");
    }

    #[test]
    fn only_hash_schedulers_are_consistent_across_directors() {
        use crate::Scheduler;
        assert!(consistent_scheduler(Scheduler::Mh));
        assert!(consistent_scheduler(Scheduler::Sh));
        assert!(!consistent_scheduler(Scheduler::Rr));
        assert!(!consistent_scheduler(Scheduler::Wlc));
    }
}
