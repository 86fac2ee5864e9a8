//! The BIRD 2 configuration rvsd writes: one eBGP session per `[[bgp.peer]]`, the announced
//! VIPs as /32 routes of a static protocol, an export filter that lets only those out.
//!
//! rvsd rewrites the whole file on every change and sends `configure`: BIRD compares the
//! new configuration with the running one and only touches what changed — the static
//! protocol's routes (announcements and withdrawals go out at once) — while the BGP
//! sessions, whose configuration did not change, stay up.

use std::{collections::BTreeSet, fmt::Write as _, net::Ipv4Addr};

use rvs_config::bgp::Bgp;

/// The static protocol holding the announced VIPs.
pub const VIPS_PROTOCOL: &str = "rvs_vips";
/// The export filter every session uses.
pub const EXPORT_FILTER: &str = "rvs_export";

/// The BGP protocol name of `peer` (`rvs_198_18_3_1`): stable, so a reload that keeps
/// the peer keeps its session.
pub fn peer_protocol(peer: Ipv4Addr) -> String {
    let [a, b, c, d] = peer.octets();
    format!("rvs_{a}_{b}_{c}_{d}")
}

/// Renders the whole BIRD configuration for `bgp` with `announced` VIPs; `origin` names
/// the file the settings came from (in the header comment).
pub fn render(bgp: &Bgp, announced: &BTreeSet<Ipv4Addr>, origin: &str) -> String {
    let mut c = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        c,
        "# Written by rvsd from [bgp] in {origin}; rewritten on every change, do not edit.\n\
         # Announced VIPs: {}.\n",
        if announced.is_empty() {
            "none".to_owned()
        } else {
            announced
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(
        c,
        "log stderr {{ info, remote, warning, error, auth, fatal, bug }};\n\
         timeformat protocol \"%T\";\n\
         router id {};\n\n\
         # Interfaces and their addresses (BGP needs them to pick a session's local end).\n\
         protocol device {{\n  scan time 10;\n}}\n",
        bgp.router_id
    );
    if bgp.peers.iter().any(|p| p.bfd) {
        let _ = writeln!(
            c,
            "protocol bfd rvs_bfd {{\n  interface \"*\" {{\n    min rx interval {i} ms;\n    min tx interval {i} ms;\n    idle tx interval 1000 ms;\n    multiplier {m};\n  }};\n}}\n",
            i = bgp.bfd.interval_ms,
            m = bgp.bfd.multiplier
        );
    }
    let _ = writeln!(c, "protocol static {VIPS_PROTOCOL} {{\n  ipv4;");
    for vip in announced {
        // The route only exists to be exported; no kernel protocol installs it here.
        let _ = writeln!(c, "  route {vip}/32 blackhole;");
    }
    let _ = writeln!(c, "}}\n");
    let _ = writeln!(
        c,
        "filter {EXPORT_FILTER} {{\n  if proto = \"{VIPS_PROTOCOL}\" then {{"
    );
    for community in &bgp.communities {
        let _ = writeln!(
            c,
            "    bgp_community.add(({}, {}));",
            community.0, community.1
        );
    }
    let _ = writeln!(c, "    accept;\n  }}\n  reject;\n}}\n");
    for p in &bgp.peers {
        let _ = writeln!(c, "protocol bgp {} {{", peer_protocol(p.address));
        match p.source {
            Some(s) => {
                let _ = writeln!(c, "  local {s} as {};", bgp.local_as);
            }
            None => {
                let _ = writeln!(c, "  local as {};", bgp.local_as);
            }
        }
        let _ = writeln!(c, "  neighbor {} as {};", p.address, p.asn);
        let _ = writeln!(c, "  direct;");
        let _ = writeln!(c, "  hold time {};", p.hold_time);
        if p.hold_time >= 3 {
            let _ = writeln!(c, "  keepalive time {};", (p.hold_time / 3).max(1));
        }
        // BIRD waits 120 s by default before reconnecting after a failure; a director
        // that comes back should be in the ECMP group within seconds.
        let _ = writeln!(c, "  connect retry time 2;");
        let _ = writeln!(c, "  error wait time 1, 16;");
        if p.bfd {
            let _ = writeln!(c, "  bfd on;");
        }
        let next_hop = match bgp.next_hop {
            Some(nh) => format!("next hop address {nh}"),
            None => "next hop self".to_owned(),
        };
        let _ = writeln!(
            c,
            "  ipv4 {{\n    import none;\n    export filter {EXPORT_FILTER};\n    {next_hop};\n  }};\n}}\n"
        );
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_config::bgp::BgpFile;

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

    fn settings(extra: &str, peer: &str) -> Bgp {
        BgpFile::from_toml(&format!(
            "[bgp]\nlocal_as = 65001\nrouter_id = \"198.18.3.2\"\n{extra}\n[[bgp.peer]]\naddress = \"198.18.3.1\"\nas = 65000\n{peer}"
        ))
        .expect("valid")
    }

    #[test]
    fn announced_vips_are_static_routes_of_the_exported_protocol() {
        let text = render(&settings("", ""), &BTreeSet::from([VIP]), "rvs.toml");
        assert!(text.contains("router id 198.18.3.2;"), "{text}");
        assert!(
            text.contains(
                "protocol static rvs_vips {\n  ipv4;\n  route 198.18.0.10/32 blackhole;\n}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "protocol bgp rvs_198_18_3_1 {\n  local as 65001;\n  neighbor 198.18.3.1 as 65000;"
            ),
            "{text}"
        );
        assert!(text.contains("hold time 9;\n  keepalive time 3;"), "{text}");
        assert!(text.contains("next hop self;"), "{text}");
        assert!(!text.contains("bfd"), "no BFD unless asked: {text}");
    }

    #[test]
    fn withdrawn_means_no_route_but_the_same_sessions() {
        let s = settings("", "");
        let on = render(&s, &BTreeSet::from([VIP]), "f");
        let off = render(&s, &BTreeSet::new(), "f");
        assert!(!off.contains("route 198.18.0.10/32"), "{off}");
        let session = |t: &str| t[t.find("protocol bgp").expect("bgp")..].to_owned();
        assert_eq!(
            session(&on),
            session(&off),
            "sessions untouched by a withdrawal"
        );
    }

    #[test]
    fn bfd_communities_next_hop_and_source() {
        let s = settings(
            "communities = [\"65001:100\"]\nnext_hop = \"198.18.3.20\"\n[bgp.bfd]\ninterval_ms = 50\nmultiplier = 4\n",
            "bfd = true\nhold_time = 30\nsource = \"198.18.3.2\"\n",
        );
        let text = render(&s, &BTreeSet::from([VIP]), "f");
        assert!(text.contains("min rx interval 50 ms;"), "{text}");
        assert!(text.contains("multiplier 4;"), "{text}");
        assert!(text.contains("bfd on;"), "{text}");
        assert!(text.contains("bgp_community.add((65001, 100));"), "{text}");
        assert!(text.contains("next hop address 198.18.3.20;"), "{text}");
        assert!(text.contains("local 198.18.3.2 as 65001;"), "{text}");
        assert!(text.contains("keepalive time 10;"), "{text}");
    }
}
