//! The health-check model: which real servers are checked, how, and what happens when they
//! fail. It is plain data with every default already resolved (the keepalived importer fills
//! it in from `keepalived.conf`), so the state machine and the checkers never guess.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use rvs_config::{RealServer, ServiceId};

/// Health checking for every service that has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthModel {
    /// One entry per virtual service whose real servers are checked (or that has a
    /// quorum, sorry server or notify scripts).
    pub services: Vec<ServiceHealth>,
}

/// Health policy of one virtual service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    /// The service, as in `rvs_config::Config`.
    pub service: ServiceId,
    /// Minimum total weight of live real servers for the service to have quorum (keepalived
    /// `quorum`, default 1).
    pub quorum: u32,
    /// Flap damper around `quorum` (keepalived `hysteresis`, default 0).
    pub hysteresis: u32,
    /// Run when quorum is gained.
    pub quorum_up: Option<Script>,
    /// Run when quorum is lost.
    pub quorum_down: Option<Script>,
    /// Run the down notifiers when the engine shuts down (keepalived `omega`).
    pub omega: bool,
    /// Put in the service instead of the real servers while quorum is lost.
    pub sorry_server: Option<SorryServer>,
    /// Real servers, in the order of the service's `reals` in the `Config`.
    pub reals: Vec<RealHealth>,
}

/// A real server's identity inside its service: address and effective port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealId {
    /// Address.
    pub address: Ipv4Addr,
    /// Port (the service's port when the real server sets none).
    pub port: u16,
}

impl fmt::Display for RealId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.address, self.port)
    }
}

/// The server used while a service has no quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SorryServer {
    /// The server as it is put in the service (keepalived gives it weight 1).
    pub real: RealServer,
    /// Keep it in the service with weight 0 while unused (`sorry_server_inhibit`), instead
    /// of removing it.
    pub inhibit: bool,
}

/// Health policy of one real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealHealth {
    /// The real server as configured (the same as in the `Config`; its weight is the
    /// configured one).
    pub real: RealServer,
    /// When down, keep it with weight 0 instead of removing it (`inhibit_on_failure`).
    pub inhibit_on_failure: bool,
    /// Run when it comes up.
    pub notify_up: Option<Script>,
    /// Run when it goes down.
    pub notify_down: Option<Script>,
    /// Its checkers; it is up only while all of them are up (none: always up).
    pub checkers: Vec<Checker>,
}

/// A command to run: program and arguments (keepalived splits the configured string on
/// unquoted spaces; single quotes group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Program and arguments; never empty.
    pub argv: Vec<String>,
    /// User to run it as (keepalived `[username [groupname]]`); `None`: as the daemon.
    pub user: Option<String>,
    /// Group to run it as.
    pub group: Option<String>,
}

impl Script {
    /// A script from its argument vector.
    pub fn new(argv: Vec<String>) -> Script {
        Script {
            argv,
            user: None,
            group: None,
        }
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argv.join(" "))
    }
}

/// When a checker runs and how many failures bring it down (keepalived semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between checks (`delay_loop`).
    pub delay_loop: Duration,
    /// Extra attempts after a failure before the checker is declared down (`retry`).
    pub retry: u32,
    /// Time before a retry (`delay_before_retry`).
    pub delay_before_retry: Duration,
    /// The first check starts at a random time in `[0, warmup]` (`warmup`).
    pub warmup: Duration,
    /// Start down until the first success (`alpha`).
    pub alpha: bool,
}

/// One checker of a real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    /// What it checks.
    pub kind: CheckKind,
    /// Where network checks connect (`connect_ip`/`connect_port`, defaulting to the real
    /// server's address and port); `MISC_CHECK` ignores it, `PING_CHECK` uses the address.
    pub target: SocketAddr,
    /// Source address (`bindto`).
    pub bind_addr: Option<IpAddr>,
    /// Source port (`bind_port`).
    pub bind_port: Option<u16>,
    /// Interface to bind to (`bind_if`).
    pub bind_if: Option<String>,
    /// `SO_MARK` for the checker's packets (`fwmark`).
    pub fwmark: Option<u32>,
    /// Time allowed for the whole check (`connect_timeout`; `misc_timeout` for scripts).
    pub timeout: Duration,
    /// Scheduling and retries.
    pub timing: Timing,
    /// Where it was configured (`file:line`), for logs.
    pub origin: String,
}

/// What a checker does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// TCP_CHECK: a TCP connection is accepted.
    Tcp,
    /// HTTP_GET / SSL_GET.
    Http(HttpCheck),
    /// MISC_CHECK: a script exits 0.
    Misc(MiscCheck),
    /// DNS_CHECK: a DNS server answers a query without error.
    Dns(DnsCheck),
    /// SMTP_CHECK: a 220 banner and a 250 reply to HELO.
    Smtp(SmtpCheck),
    /// UDP_CHECK: a datagram is not refused (and optionally answered).
    Udp(UdpCheck),
    /// PING_CHECK: an ICMP echo is answered.
    Ping,
}

impl CheckKind {
    /// keepalived's name for the checker.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http(h) if h.tls.is_some() => "SSL_GET",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Misc(_) => "MISC_CHECK",
            CheckKind::Dns(_) => "DNS_CHECK",
            CheckKind::Smtp(_) => "SMTP_CHECK",
            CheckKind::Udp(_) => "UDP_CHECK",
            CheckKind::Ping => "PING_CHECK",
        }
    }
}

/// HTTP version used by HTTP_GET / SSL_GET (`http_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// HTTP/1.0 (keepalived's default).
    #[default]
    Http10,
    /// HTTP/1.0 with `Connection: close`.
    Http10Close,
    /// HTTP/1.1 (always with `Connection: close`).
    Http11,
}

/// HTTP_GET / SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// TLS (SSL_GET), or plain HTTP.
    pub tls: Option<TlsCheck>,
    /// The URLs; every one must pass.
    pub urls: Vec<UrlCheck>,
    /// HTTP version of the request.
    pub version: HttpVersion,
}

/// TLS settings of SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCheck {
    /// Server name sent as SNI (`enable_sni`: the virtualhost); `None`: no SNI.
    pub sni: Option<String>,
    /// Verify the server's certificate against this CA bundle (PEM); `None`: accept any
    /// certificate, as keepalived does.
    pub verify_ca: Option<PathBuf>,
}

/// One `url` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCheck {
    /// Request path.
    pub path: String,
    /// Accepted status codes as inclusive ranges (default 200-299).
    pub status: Vec<(u16, u16)>,
    /// MD5 of the body, if it must match.
    pub digest: Option<[u8; 16]>,
    /// Host header (`virtualhost`); `None`: the target address.
    pub virtualhost: Option<String>,
}

impl UrlCheck {
    /// Whether `code` is accepted.
    pub fn accepts(&self, code: u16) -> bool {
        self.status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

/// MISC_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscCheck {
    /// The script.
    pub script: Script,
    /// Exit codes 2..=255 set the weight to code − 2 (`misc_dynamic`).
    pub dynamic: bool,
}

/// DNS query types DNS_CHECK can ask (keepalived's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsType {
    /// A.
    A,
    /// NS.
    Ns,
    /// CNAME.
    Cname,
    /// SOA (keepalived's default).
    #[default]
    Soa,
    /// MX.
    Mx,
    /// TXT.
    Txt,
    /// AAAA.
    Aaaa,
}

impl DnsType {
    /// The type code in DNS messages.
    pub fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
        }
    }

    /// Parses keepalived's spelling (case-insensitive).
    pub fn parse(text: &str) -> Option<DnsType> {
        Some(match text.to_ascii_uppercase().as_str() {
            "A" => DnsType::A,
            "NS" => DnsType::Ns,
            "CNAME" => DnsType::Cname,
            "SOA" => DnsType::Soa,
            "MX" => DnsType::Mx,
            "TXT" => DnsType::Txt,
            "AAAA" => DnsType::Aaaa,
            _ => return None,
        })
    }
}

/// DNS_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// Query type (default SOA).
    pub qtype: DnsType,
    /// Query name (default `.`).
    pub name: String,
}

/// SMTP_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpCheck {
    /// Name sent with HELO.
    pub helo_name: String,
}

/// UDP_CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpCheck {
    /// Datagram to send (`payload`); `None`: a few random bytes, as keepalived.
    pub payload: Option<Vec<u8>>,
    /// A reply is required (`require_reply`).
    pub require_reply: bool,
    /// Expected reply prefix as (value, mask) nibble pairs per byte; `X` nibbles are masked.
    pub reply_pattern: Vec<(u8, u8)>,
    /// Shortest acceptable reply.
    pub min_reply_length: usize,
    /// Longest acceptable reply.
    pub max_reply_length: usize,
}

impl UdpCheck {
    /// Whether `reply` satisfies the pattern and the length limits.
    pub fn reply_matches(&self, reply: &[u8]) -> bool {
        if reply.len() < self.min_reply_length || reply.len() > self.max_reply_length {
            return false;
        }
        // keepalived compares up to the shorter of the reply and the pattern.
        reply
            .iter()
            .zip(&self.reply_pattern)
            .all(|(byte, &(value, mask))| byte & mask == value & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_and_udp_patterns() {
        let url = UrlCheck {
            path: "/".into(),
            status: vec![(200, 299), (503, 503)],
            digest: None,
            virtualhost: None,
        };
        assert!(url.accepts(200) && url.accepts(299) && url.accepts(503));
        assert!(!url.accepts(300) && !url.accepts(500));
        let udp = UdpCheck {
            payload: None,
            require_reply: true,
            reply_pattern: vec![(0xab, 0xff), (0x10, 0xf0)],
            min_reply_length: 1,
            max_reply_length: 4,
        };
        assert!(udp.reply_matches(&[0xab, 0x1f]));
        assert!(udp.reply_matches(&[0xab]));
        assert!(!udp.reply_matches(&[0xab, 0x2f]));
        assert!(!udp.reply_matches(&[]));
        assert!(!udp.reply_matches(&[0xab, 0x10, 0, 0, 0]));
        assert_eq!(DnsType::parse("aaaa"), Some(DnsType::Aaaa));
        assert_eq!(DnsType::parse("PTR"), None);
    }
}
