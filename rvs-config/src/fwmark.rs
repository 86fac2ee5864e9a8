//! Firewall-mark services without netfilter: rvs's own packet classes.
//!
//! IPVS matches an fwmark service (`ipvsadm -A -f N`, keepalived `virtual_server fwmark N`)
//! on the mark that an iptables/nftables rule set on the packet earlier in the kernel. rvs's
//! fast path runs at XDP, before netfilter, so no mark exists yet: rvs classifies the packet
//! itself, with match rules that say what the mangle rules said. A [`MarkRule`] is one such
//! rule (protocol, destination and source prefixes, destination ports and port ranges, the
//! mark it sets); [`import_iptables_save`] and [`import_nft`] turn the usual mangle rules into
//! them and refuse, by line, any rule they cannot express exactly.
//!
//! Semantics follow netfilter's: rules are evaluated in order and `MARK` does not stop the
//! walk, so when several rules match a packet the *last* one's mark wins. (The data path
//! evaluates the list from the end and stops at the first match, which is the same.)

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::Protocol;

/// An IPv4 prefix, `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix {
    /// Network address (host bits zero).
    pub addr: Ipv4Addr,
    /// Prefix length 0..=32.
    pub len: u8,
}

impl Prefix {
    /// Whether `a` is inside the prefix.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
        u32::from(a) & mask == u32::from(self.addr)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl TryFrom<String> for Prefix {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.to_string()
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (
                a,
                l.parse::<u8>()
                    .map_err(|_| format!("bad prefix length in {s:?}"))?,
            ),
            None => (s, 32),
        };
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 address or prefix"))?;
        if len > 32 {
            return Err(format!("prefix length {len} in {s:?} is above 32"));
        }
        let p = Prefix { addr, len };
        // iptables and nft print the network address; a host part is refused, not rounded.
        if !p.contains(addr) {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(p)
    }
}

/// A destination port or an inclusive range of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (equal to `first` for one port).
    pub last: u16,
}

impl PortRange {
    fn parse(s: &str, sep: char) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port"))
        };
        let (first, last) = match s.split_once(sep) {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(format!("port range {s:?} runs backwards"));
        }
        Ok(PortRange { first, last })
    }
}

/// One classification rule: a packet that matches every given field gets `mark`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRule {
    /// The mark it sets (the fwmark service's number).
    pub mark: u32,
    /// Protocol; None matches TCP and UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Destination prefixes (any of them); empty matches any destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<Prefix>,
    /// Source prefixes (any of them); empty matches any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<Prefix>,
    /// Destination ports and ranges (any of them); empty matches any port. Needs `protocol`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
}

impl MarkRule {
    /// Whether a packet with these fields matches.
    pub fn matches(&self, proto: Protocol, src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> bool {
        self.protocol.is_none_or(|p| p == proto)
            && (self.destination.is_empty() || self.destination.iter().any(|p| p.contains(dst)))
            && (self.source.is_empty() || self.source.iter().any(|p| p.contains(src)))
            && (self.ports.is_empty()
                || self
                    .ports
                    .iter()
                    .any(|r| (r.first..=r.last).contains(&dport)))
    }
}

/// One `[[service.match]]` rule of an fwmark service: a [`MarkRule`] whose mark is the
/// service's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Protocol; None matches TCP and UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Destination prefixes (any of them); empty matches any destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination: Vec<Prefix>,
    /// Source prefixes (any of them); empty matches any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<Prefix>,
    /// Destination ports and ranges (any of them); empty matches any port. Needs `protocol`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRange>,
}

impl Match {
    /// The rule with the service's mark.
    pub fn with_mark(&self, mark: u32) -> MarkRule {
        MarkRule {
            mark,
            protocol: self.protocol,
            destination: self.destination.clone(),
            source: self.source.clone(),
            ports: self.ports.clone(),
        }
    }
}

impl From<&MarkRule> for Match {
    fn from(r: &MarkRule) -> Self {
        Match {
            protocol: r.protocol,
            destination: r.destination.clone(),
            source: r.source.clone(),
            ports: r.ports.clone(),
        }
    }
}

/// The match rules `rules` give mark `mark`, in order (rules of marks no service has are not
/// used: IPVS ignores such marks too).
pub fn rules_of(rules: &[MarkRule], mark: u32) -> Vec<Match> {
    rules
        .iter()
        .filter(|r| r.mark == mark)
        .map(Match::from)
        .collect()
}

/// How many data-path entries a rule takes: one per (destination, source, port range).
pub fn entry_count(r: &MarkRule) -> usize {
    r.destination.len().max(1) * r.source.len().max(1) * r.ports.len().max(1)
}

/// Whether two rules can match the same packet.
pub fn overlap(a: &MarkRule, b: &MarkRule) -> bool {
    fn prefixes_meet(x: &[Prefix], y: &[Prefix]) -> bool {
        x.is_empty()
            || y.is_empty()
            || x.iter()
                .any(|p| y.iter().any(|q| p.contains(q.addr) || q.contains(p.addr)))
    }
    let protos = match (a.protocol, b.protocol) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    let ports = a.ports.is_empty()
        || b.ports.is_empty()
        || a.ports.iter().any(|p| {
            b.ports
                .iter()
                .any(|q| p.first <= q.last && q.first <= p.last)
        });
    protos
        && ports
        && prefixes_meet(&a.destination, &b.destination)
        && prefixes_meet(&a.source, &b.source)
}

/// The checks of an fwmark service's own fields (rules across services are the planner's).
pub fn validate_service(mark: u32, svc: &crate::VirtualService) -> Result<(), String> {
    if mark == 0 {
        return Err("fwmark 0 is not a firewall mark (ipvsadm: invalid fwmark value)".into());
    }
    if let Some(why) = crate::caps::fwmark_refusal(mark) {
        return Err(why);
    }
    if !svc.address.is_unspecified() || svc.port != 0 {
        return Err(format!(
            "fwmark service {mark}: an fwmark service has no address or port; its [[service.match]] rules say which packets it takes"
        ));
    }
    if svc.matches.is_empty() {
        return Err(format!(
            "fwmark service {mark}: no match rules for mark {mark} ([[service.match]], [[fwmark_rule]] or [fwmark_import]); rvs classifies packets itself (XDP runs before netfilter) and needs the rules that set the mark"
        ));
    }
    for m in &svc.matches {
        if !m.ports.is_empty() && m.protocol.is_none() {
            return Err(format!(
                "fwmark service {mark}: a match rule with ports needs a protocol"
            ));
        }
    }
    Ok(())
}

/// The mark `rules` give a packet (netfilter's order: the last matching rule wins).
pub fn classify(
    rules: &[MarkRule],
    proto: Protocol,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dport: u16,
) -> Option<u32> {
    rules
        .iter()
        .rev()
        .find(|r| r.matches(proto, src, dst, dport))
        .map(|r| r.mark)
}

/// A rule the importers cannot express, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}: {rule}")]
pub struct ImportError {
    /// 1-based line number in the input.
    pub line: usize,
    /// The rule as written.
    pub rule: String,
    /// What rvs cannot express.
    pub why: String,
}

fn refuse(line: usize, rule: &str, why: impl Into<String>) -> ImportError {
    ImportError {
        line,
        rule: rule.trim().to_string(),
        why: why.into(),
    }
}

fn prefixes(v: &str) -> Result<Vec<Prefix>, String> {
    v.split(',').map(|p| p.trim().parse()).collect()
}

fn mark_value(v: &str) -> Result<u32, String> {
    let v = v.trim();
    let n = match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => v.parse(),
    };
    n.map_err(|_| format!("mark {v:?} is not a 32-bit number"))
}

/// Reads the `mangle` table of `iptables-save` output (or the same rules written as
/// `iptables -t mangle -A PREROUTING ...` commands) into mark rules.
///
/// Understood in PREROUTING: `-d`, `-s` (one or a comma list), `-p tcp|udp`, `-m tcp|udp`,
/// `--dport N[:M]`, `-m multiport --dports a,b,c:d`, `-j MARK --set-mark V` and
/// `--set-xmark V/0xffffffff` (what iptables-save prints for `--set-mark`). Refused, naming
/// the line: any other match or option, negation (`!`), a mask other than 0xffffffff, any other
/// target or chain in the mangle table (they change which later rules apply). Other tables are
/// skipped: they set no marks.
pub fn import_iptables_save(text: &str) -> Result<Vec<MarkRule>, ImportError> {
    let mut rules = Vec::new();
    let mut table = String::from("mangle");
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l == "COMMIT" || l.starts_with(':') {
            continue;
        }
        if let Some(t) = l.strip_prefix('*') {
            table = t.trim().to_string();
            continue;
        }
        let mut words: Vec<&str> = l.split_whitespace().collect();
        if words.first() == Some(&"iptables") {
            words.remove(0);
            if let Some(i) = words.iter().position(|w| *w == "-t") {
                table = words.get(i + 1).copied().unwrap_or("").to_string();
                words.drain(i..(i + 2).min(words.len()));
            } else {
                table = "filter".into();
            }
        }
        if table != "mangle" {
            continue;
        }
        let (Some(&"-A"), Some(&chain)) = (words.first(), words.get(1)) else {
            return Err(refuse(
                line,
                raw,
                "not an iptables rule (expected -A CHAIN ...)",
            ));
        };
        if chain != "PREROUTING" {
            return Err(refuse(
                line,
                raw,
                format!("chain {chain}: only mangle PREROUTING rules classify arriving packets"),
            ));
        }
        rules.push(iptables_rule(&words[2..]).map_err(|why| refuse(line, raw, why))?);
    }
    Ok(rules)
}

fn iptables_rule(w: &[&str]) -> Result<MarkRule, String> {
    let mut r = MarkRule {
        mark: 0,
        protocol: None,
        destination: Vec::new(),
        source: Vec::new(),
        ports: Vec::new(),
    };
    let mut mark = None;
    let mut i = 0;
    let arg = |i: usize| {
        w.get(i + 1)
            .copied()
            .ok_or_else(|| format!("{} needs a value", w[i]))
    };
    while i < w.len() {
        match w[i] {
            "!" => return Err("negated matches (!) are not supported".into()),
            "-d" | "--destination" => r.destination.extend(prefixes(arg(i)?)?),
            "-s" | "--source" => r.source.extend(prefixes(arg(i)?)?),
            "-p" | "--protocol" => {
                r.protocol = Some(match arg(i)? {
                    "tcp" | "6" => Protocol::Tcp,
                    "udp" | "17" => Protocol::Udp,
                    p => return Err(format!("protocol {p}: rvs services are TCP or UDP")),
                })
            }
            "-m" | "--match" => match arg(i)? {
                "tcp" | "udp" | "multiport" => {}
                m => return Err(format!("match -m {m} is not supported")),
            },
            "--dport" | "--destination-port" => r.ports.push(PortRange::parse(arg(i)?, ':')?),
            "--dports" | "--destination-ports" => {
                for p in arg(i)?.split(',') {
                    r.ports.push(PortRange::parse(p, ':')?);
                }
            }
            "-j" | "--jump" => {
                if arg(i)? != "MARK" {
                    return Err(format!(
                        "target {}: only -j MARK rules can be expressed (other targets change which rules apply)",
                        w[i + 1]
                    ));
                }
            }
            "--set-mark" => mark = Some(mark_value(arg(i)?)?),
            "--set-xmark" => {
                let v = arg(i)?;
                let (value, mask) = v.split_once('/').unwrap_or((v, "0xffffffff"));
                if mark_value(mask)? != u32::MAX {
                    return Err(format!(
                        "--set-xmark {v}: only a full mask (0xffffffff) sets a plain mark"
                    ));
                }
                mark = Some(mark_value(value)?);
            }
            o => return Err(format!("option {o} is not supported")),
        }
        i += 2;
    }
    r.mark = mark.ok_or("no -j MARK --set-mark")?;
    if !r.ports.is_empty() && r.protocol.is_none() {
        return Err("ports without -p tcp|udp".into());
    }
    Ok(r)
}

/// Reads `nft list ruleset` output into mark rules: the rules of chains hooked at
/// `prerouting` in `ip` or `inet` tables that end in `meta mark set V` (or `mark set V`).
///
/// Understood before the mark: `ip daddr X`, `ip saddr X` (an address, a prefix or a
/// `{ ... }` set of them), `ip protocol tcp|udp`, `meta l4proto tcp|udp`,
/// `tcp|udp dport N|N-M|{ ... }`, and `counter ...` / `comment "..."`, which change nothing.
/// Refused, naming the line: anything else (negation `!=`, interfaces, conntrack, verdicts,
/// jumps) in such a chain.
pub fn import_nft(text: &str) -> Result<Vec<MarkRule>, ImportError> {
    let mut rules = Vec::new();
    let mut family = String::new();
    let mut chain_hooked = false;
    let mut depth = 0usize;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(rest) = l.strip_prefix("table ") {
            family = rest.split_whitespace().next().unwrap_or("").to_string();
            depth = 1;
            continue;
        }
        if l.starts_with("chain ") {
            chain_hooked = false;
            depth = 2;
            continue;
        }
        if l == "}" {
            depth = depth.saturating_sub(1);
            continue;
        }
        if l.starts_with("type ") {
            chain_hooked = l.contains("hook prerouting");
            continue;
        }
        if depth < 2 || !chain_hooked || !matches!(family.as_str(), "ip" | "inet") {
            continue;
        }
        if l.starts_with("policy ") {
            continue;
        }
        rules.push(nft_rule(l).map_err(|why| refuse(line, raw, why))?);
    }
    Ok(rules)
}

/// Splits an nft rule into words, keeping `{ ... }` sets and quoted strings as one word.
fn nft_words(l: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut brace, mut quote) = (false, false);
    for c in l.chars() {
        match c {
            '"' => {
                quote = !quote;
                cur.push(c);
            }
            '{' if !quote => brace = true,
            '}' if !quote => {
                brace = false;
                out.push(std::mem::take(&mut cur).trim().to_string());
            }
            c if c.is_whitespace() && !brace && !quote => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if brace || quote {
        return Err("unbalanced { } or quotes".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn nft_rule(l: &str) -> Result<MarkRule, String> {
    let w = nft_words(l)?;
    let mut r = MarkRule {
        mark: 0,
        protocol: None,
        destination: Vec::new(),
        source: Vec::new(),
        ports: Vec::new(),
    };
    let mut mark = None;
    let mut i = 0;
    let get = |i: usize| {
        w.get(i)
            .map(String::as_str)
            .ok_or("a value is missing".to_string())
    };
    let proto = |p: &str| match p {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        p => Err(format!("protocol {p}: rvs services are TCP or UDP")),
    };
    while i < w.len() {
        match (w[i].as_str(), get(i + 1).unwrap_or("")) {
            ("ip", "daddr") | ("ip", "saddr") => {
                let v = get(i + 2)?;
                if v == "!=" {
                    return Err("negated matches (!=) are not supported".into());
                }
                let set = prefixes(&v.replace(' ', ""))?;
                if w[i + 1] == "daddr" {
                    r.destination.extend(set);
                } else {
                    r.source.extend(set);
                }
                i += 3;
            }
            ("ip", "protocol") | ("meta", "l4proto") => {
                r.protocol = Some(proto(get(i + 2)?)?);
                i += 3;
            }
            (p @ ("tcp" | "udp"), "dport") => {
                r.protocol = Some(proto(p)?);
                let v = get(i + 2)?;
                if v == "!=" {
                    return Err("negated matches (!=) are not supported".into());
                }
                for p in v.split(',') {
                    r.ports.push(PortRange::parse(p.trim(), '-')?);
                }
                i += 3;
            }
            ("meta", "mark") | ("mark", "set") => {
                let at = if w[i] == "meta" { i + 2 } else { i + 1 };
                if get(at)? != "set" {
                    return Err("matching on a mark is not supported (only setting one)".into());
                }
                mark = Some(mark_value(get(at + 1)?)?);
                i = at + 2;
            }
            ("counter", _) => {
                i += 1;
                // `counter packets N bytes M`
                while matches!(w.get(i).map(String::as_str), Some("packets" | "bytes")) {
                    i += 2;
                }
            }
            ("comment", _) => i += 2,
            (x, _) => return Err(format!("{x:?} is not supported")),
        }
    }
    r.mark = mark.ok_or("no meta mark set")?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -d 198.18.0.99/32 -p tcp -j DNAT --to-destination 198.18.2.1
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 198.18.0.10/32 -p tcp -m multiport --dports 80,443 -j MARK --set-xmark 0x1/0xffffffff
-A PREROUTING -d 198.18.0.0/24 -s 198.18.100.0/24 -p udp -m udp --dport 5000:5010 -j MARK --set-mark 2
-A PREROUTING -d 198.18.0.10/32 -p tcp -m tcp --dport 443 -j MARK --set-mark 0x3
COMMIT
";

    #[test]
    fn iptables_save_mangle_rules() {
        let r = import_iptables_save(SAVE).expect("imports");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].mark, 1);
        assert_eq!(
            r[0].ports,
            vec![
                PortRange {
                    first: 80,
                    last: 80
                },
                PortRange {
                    first: 443,
                    last: 443
                }
            ]
        );
        assert_eq!(
            r[1].ports,
            vec![PortRange {
                first: 5000,
                last: 5010
            }]
        );
        let vip = Ipv4Addr::new(198, 18, 0, 10);
        let client = Ipv4Addr::new(198, 18, 100, 7);
        assert_eq!(classify(&r, Protocol::Tcp, client, vip, 80), Some(1));
        // The later rule wins for 443, as in netfilter.
        assert_eq!(classify(&r, Protocol::Tcp, client, vip, 443), Some(3));
        assert_eq!(
            classify(
                &r,
                Protocol::Udp,
                client,
                Ipv4Addr::new(198, 18, 0, 77),
                5005
            ),
            Some(2)
        );
        assert_eq!(
            classify(&r, Protocol::Udp, Ipv4Addr::new(198, 19, 0, 1), vip, 5005),
            None
        );
        assert_eq!(classify(&r, Protocol::Tcp, client, vip, 22), None);
    }

    #[test]
    fn iptables_commands_too() {
        let r = import_iptables_save(
            "iptables -t mangle -A PREROUTING -d 198.18.0.10 -p tcp --dport 80 -j MARK --set-mark 7\n",
        )
        .unwrap();
        assert_eq!(r[0].destination, vec!["198.18.0.10/32".parse().unwrap()]);
        assert_eq!(r[0].mark, 7);
    }

    #[test]
    fn what_cannot_be_expressed_is_refused_by_line() {
        for (rule, why) in [
            (
                "-A PREROUTING -i eth0 -p tcp -j MARK --set-mark 1",
                "option -i",
            ),
            (
                "-A PREROUTING ! -d 198.18.0.10 -j MARK --set-mark 1",
                "negated",
            ),
            (
                "-A PREROUTING -m conntrack --ctstate NEW -j MARK --set-mark 1",
                "-m conntrack",
            ),
            (
                "-A PREROUTING -p tcp -j MARK --set-xmark 0x1/0xff",
                "full mask",
            ),
            ("-A PREROUTING -p tcp -j RETURN", "target RETURN"),
            ("-A OUTPUT -p tcp -j MARK --set-mark 1", "chain OUTPUT"),
            (
                "-A PREROUTING -p icmp -j MARK --set-mark 1",
                "protocol icmp",
            ),
            (
                "-A PREROUTING -d 198.18.0.10 -j MARK --set-mark 1 --dport 80",
                "ports without",
            ),
        ] {
            let text = format!("*mangle\n{rule}\nCOMMIT\n");
            let e = import_iptables_save(&text).expect_err(rule);
            assert_eq!(e.line, 2);
            assert!(e.to_string().contains(why), "{rule}: {e}");
            assert!(e.to_string().contains(rule), "the rule is named: {e}");
        }
    }

    const NFT: &str = r#"table ip mangle {
	chain PREROUTING {
		type filter hook prerouting priority mangle; policy accept;
		ip daddr 198.18.0.10 tcp dport { 80, 443 } counter packets 0 bytes 0 meta mark set 0x00000001
		ip saddr 198.18.100.0/24 ip daddr { 198.18.0.20, 198.18.0.21 } udp dport 6000-6010 mark set 0x2 comment "games"
	}
	chain OUTPUT {
		type route hook output priority mangle; policy accept;
		oifname "lo" accept
	}
}
table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy accept;
		iifname "lo" accept
	}
}
"#;

    #[test]
    fn nft_ruleset() {
        let r = import_nft(NFT).expect("imports");
        assert_eq!(r.len(), 2);
        let vip = Ipv4Addr::new(198, 18, 0, 10);
        let client = Ipv4Addr::new(198, 18, 100, 7);
        assert_eq!(classify(&r, Protocol::Tcp, client, vip, 443), Some(1));
        assert_eq!(
            classify(
                &r,
                Protocol::Udp,
                client,
                Ipv4Addr::new(198, 18, 0, 21),
                6003
            ),
            Some(2)
        );
        assert_eq!(
            classify(
                &r,
                Protocol::Udp,
                Ipv4Addr::new(198, 18, 101, 1),
                Ipv4Addr::new(198, 18, 0, 21),
                6003
            ),
            None
        );
        let bad = NFT.replace("tcp dport { 80, 443 }", "iifname \"eth0\" tcp dport 80");
        let e = import_nft(&bad).expect_err("iifname");
        assert_eq!(e.line, 4);
        assert!(e.to_string().contains("iifname"), "{e}");
    }

    #[test]
    fn prefixes_parse_strictly() {
        assert!("198.18.0.0/24".parse::<Prefix>().is_ok());
        assert!("198.18.0.1/24".parse::<Prefix>().is_err());
        assert!("198.18.0.0/33".parse::<Prefix>().is_err());
        assert!(
            "0.0.0.0/0"
                .parse::<Prefix>()
                .unwrap()
                .contains(Ipv4Addr::new(1, 2, 3, 4))
        );
    }
}
