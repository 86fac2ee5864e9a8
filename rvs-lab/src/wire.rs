//! Wiring helpers every lab topology shares: veth pairs with checksum offload off, addresses,
//! and the sysctls every lab namespace gets.

use std::net::Ipv4Addr;
use std::sync::Once;

use anyhow::Result;

use crate::netns::{Netns, cleanup_stale};

static CLEANUP: Once = Once::new();

/// Deletes the namespaces that killed runs left behind, once per process.
pub(crate) fn cleanup_once() {
    CLEANUP.call_once(|| match cleanup_stale() {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "deleted stale lab namespaces"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "stale namespace clean-up failed"),
    });
}

/// IPv6 off (no router solicitations or MLD reports in the way of packet counts) and
/// reverse-path filtering off (lab routers see replies on other interfaces than requests).
pub(crate) fn quiet(ns: &Netns) -> Result<()> {
    for (key, value) in [
        ("net.ipv6.conf.all.disable_ipv6", "1"),
        ("net.ipv6.conf.default.disable_ipv6", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
    ] {
        ns.sysctl(key, value)?;
    }
    Ok(())
}

/// Adds a bridge `name` in `ns`, enslaves `ports` and brings everything up.
pub(crate) fn bridge(ns: &Netns, name: &str, ports: &[String]) -> Result<()> {
    ns.exec(&[
        "ip",
        "link",
        "add",
        name,
        "type",
        "bridge",
        "stp_state",
        "0",
    ])?;
    for p in ports {
        port(ns, p, name)?;
    }
    ns.exec(&["ip", "link", "set", name, "up"])?;
    Ok(())
}

/// Enslaves `name` to `bridge` in `ns` and brings it up.
pub(crate) fn port(ns: &Netns, name: &str, bridge: &str) -> Result<()> {
    ns.exec(&["ip", "link", "set", name, "master", bridge])?;
    ns.exec(&["ip", "link", "set", name, "up"])?;
    Ok(())
}

/// Adds a default route via `gateway` in `ns`.
pub(crate) fn default_route(ns: &Netns, gateway: Ipv4Addr) -> Result<()> {
    ns.exec(&["ip", "route", "add", "default", "via", &gateway.to_string()])?;
    Ok(())
}

/// Creates a veth pair `a_if` (in `a`) — `b_if` (in `b`), turns off checksum offload on
/// both ends and brings both up.
pub(crate) fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.exec(&[
        "ip",
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    for (ns, ifname) in [(a, a_if), (b, b_if)] {
        ns.exec(&["ethtool", "-K", ifname, "tx", "off"])?;
        ns.exec(&["ip", "link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// Adds `addr/len` to `ifname` in `ns`.
pub(crate) fn address(ns: &Netns, ifname: &str, addr: Ipv4Addr, len: u8) -> Result<()> {
    ns.exec(&["ip", "addr", "add", &format!("{addr}/{len}"), "dev", ifname])?;
    Ok(())
}
