//! ipvsadm's listings, byte for byte: `-L` in all its forms (`-n`, `--stats`, `--rate`,
//! `--thresholds`, `--persistent-conn`, `--tun-info`, `--exact`, `--nosort`), `-L -c`,
//! `-L --timeout` and `-S`, built from rvsd's [`ServiceList`] and [`ConnectionList`].
//!
//! The layouts are ipvsadm 1.31's `print_title`, `print_service_entry`, `print_largenum`,
//! `list_conn` and `print_conn`, including its truncations (a service name to 33 bytes, a
//! real server to 28, any `host:port` to 59) and its sort (see [`glibc_msort`]).

use std::{fmt::Write as _, net::Ipv4Addr};

use rvs_api::{Connection, ConnectionList, RealStatus, ServiceList, ServiceStatus};
use rvs_config::{
    ForwardMethod, Protocol, SchedFlag, Scheduler, Timeouts, Tunnel, TunnelChecksum, TunnelType,
    VirtualService,
};

use crate::{
    args::Format,
    resolve::{Proto, Resolver},
};

/// The IPVS version ipvsadm prints from the kernel (`IP Virtual Server version …`); rvs
/// reports the version whose interface it reproduces, so parsers of that line keep working.
pub const IPVS_VERSION: &str = "1.2.1";

/// glibc's `qsort` as ipvsadm gets it (glibc 2.36, Debian 12): a top-down merge sort that
/// splits `n` into `n/2` and `n - n/2` and takes from the left run while `cmp <= 0`.
///
/// ipvsadm's comparators subtract 32-bit addresses and read the result as a signed int, so
/// two addresses more than 2^31 apart compare "wrapped" and the order is not transitive;
/// the result then depends on the algorithm, which is why this one is reproduced rather
/// than using `sort_by`.
pub fn glibc_msort<T: Clone>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_msort(&mut v[..n1], cmp);
    glibc_msort(&mut v[n1..], cmp);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            merged.push(v[i].clone());
            i += 1;
        } else {
            merged.push(v[j].clone());
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    merged.extend_from_slice(&v[j..]);
    v.clone_from_slice(&merged);
}

fn wrapped(a: Ipv4Addr, b: Ipv4Addr) -> i32 {
    u32::from(a).wrapping_sub(u32::from(b)) as i32
}

/// ipvsadm's `ipvs_cmp_services` for IPv4 TCP/UDP services.
pub fn cmp_services(a: &VirtualService, b: &VirtualService) -> i32 {
    // The mark first (0 for an address service), as an unsigned difference read as int.
    let r = a.fwmark.unwrap_or(0).wrapping_sub(b.fwmark.unwrap_or(0)) as i32;
    if r != 0 {
        return r;
    }
    let r = i32::from(a.protocol.number()) - i32::from(b.protocol.number());
    if r != 0 {
        return r;
    }
    let r = wrapped(a.address, b.address);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// The port a real server of `svc` uses (its own, or the service's).
pub fn real_port(svc: &VirtualService, real: &rvs_config::RealServer) -> u16 {
    real.port.unwrap_or(svc.port)
}

/// Services in listing order: sorted as ipvsadm sorts them, or rvsd's order (the order they
/// were added) with `nosort`.
pub fn ordered_services(list: &ServiceList, nosort: bool) -> Vec<&ServiceStatus> {
    let mut v: Vec<&ServiceStatus> = list.services.iter().collect();
    if !nosort {
        glibc_msort(&mut v, &|a, b| cmp_services(&a.service, &b.service));
    }
    v
}

/// A service's real servers in listing order: sorted by address and port as ipvsadm sorts
/// them (starting from the kernel's newest-first list), or newest first with `nosort`.
pub fn ordered_reals(svc: &ServiceStatus, nosort: bool) -> Vec<&RealStatus> {
    let mut v: Vec<&RealStatus> = svc.reals.iter().collect();
    if !nosort {
        let s = &svc.service;
        glibc_msort(&mut v, &|a, b| {
            let r = wrapped(a.real.address, b.real.address);
            if r != 0 {
                return r;
            }
            i32::from(real_port(s, &a.real)) - i32::from(real_port(s, &b.real))
        });
    }
    v
}

fn proto(p: Protocol) -> Proto {
    match p {
        Protocol::Tcp => Proto::Tcp,
        Protocol::Udp => Proto::Udp,
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// ipvsadm's `addrport_to_anyname`: `addr:port`, with names unless `numeric`, at most 59
/// bytes (its 60-byte buffer).
pub fn addrport(addr: Ipv4Addr, port: u16, p: Protocol, numeric: bool, r: &dyn Resolver) -> String {
    let mut s = if numeric {
        format!("{addr}:{port}")
    } else {
        let host = r.addr_name(addr).unwrap_or_else(|| addr.to_string());
        let service = r
            .port_service(port, proto(p))
            .unwrap_or_else(|| port.to_string());
        format!("{host}:{service}")
    };
    truncate(&mut s, 59);
    s
}

/// ipvsadm's `print_largenum`: right-aligned in 9 columns, abbreviated with K, M, G, T
/// unless `exact`.
pub fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        write!(out, "{i:>width$}")
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// ipvsadm's `print_title`.
pub fn title(f: Format) -> String {
    const PROT: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port\n";
    if f.stats {
        format!(
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if f.rate {
        format!(
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        )
    } else if f.thresholds {
        format!(
            "{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n{REMOTE}",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if f.persistent_conn {
        format!(
            "{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n{REMOTE}",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if f.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n".to_string()
    } else if !f.rule {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    } else {
        String::new()
    }
}

/// ipvsadm's `print_sched_flags`: the names depend on the scheduler.
pub fn sched_flags(s: &VirtualService) -> String {
    // Names from the capability table; ipvsadm prints nothing for sh's and mh's third bit.
    let hidden = |f: SchedFlag| {
        f == SchedFlag::Flag3 && matches!(s.scheduler, Scheduler::Sh | Scheduler::Mh)
    };
    [SchedFlag::Flag1, SchedFlag::Flag2, SchedFlag::Flag3]
        .into_iter()
        .filter(|&f| s.has_flag(f) && !hidden(f))
        .map(|f| s.scheduler.flag_name(f))
        .collect::<Vec<_>>()
        .join(",")
}

fn fwd_name(f: ForwardMethod) -> &'static str {
    match f {
        ForwardMethod::Dr => "Route",
        ForwardMethod::Tun => "Tunnel",
        ForwardMethod::Nat => "Masq",
    }
}

fn fwd_switch(f: ForwardMethod) -> &'static str {
    match f {
        ForwardMethod::Dr => "-g",
        ForwardMethod::Tun => "-i",
        ForwardMethod::Nat => "-m",
    }
}

/// ipvsadm's `print_tunnel_rule`: the tunnel options of a `-S` line for a tunnelled server.
fn tunnel_rule(t: &Tunnel) -> String {
    let csum = match t.checksum {
        TunnelChecksum::Nocsum => "--tun-nocsum",
        TunnelChecksum::Csum => "--tun-csum",
        TunnelChecksum::Remcsum => "--tun-remcsum",
    };
    match t.kind {
        TunnelType::Ipip => " --tun-type ipip".to_string(),
        TunnelType::Gue => format!(" --tun-type gue --tun-port {} {csum}", t.port.unwrap_or(0)),
        TunnelType::Gre => format!(" --tun-type gre {csum}"),
    }
}

/// The end of a `-S` real-server line. ipvsadm's `-S` leaves connection thresholds out, so
/// its rules lose them; rvsadm adds `-x`/`-y` when they are set (ipvsadm's `-R` reads
/// them too) so that `-S`, `-C`, `-R` gives back the same state. Without thresholds the
/// line is ipvsadm's, byte for byte.
fn thresholds_rule(out: &mut String, real: &rvs_config::RealServer) -> std::fmt::Result {
    if real.u_threshold != 0 {
        write!(out, " -x {}", real.u_threshold)?;
    }
    if real.l_threshold != 0 {
        write!(out, " -y {}", real.l_threshold)?;
    }
    writeln!(out)
}

/// ipvsadm's `print_service_entry`: the service line and its real servers.
pub fn service_entry(out: &mut String, st: &ServiceStatus, f: Format, r: &dyn Resolver) {
    let s = &st.service;
    let vname = addrport(s.address, s.port, s.protocol, f.numeric, r);
    let svc_name = if let Some(mark) = s.fwmark {
        if f.rule {
            format!("-f {mark}")
        } else {
            format!("FWM  {mark}")
        }
    } else if f.rule {
        let opt = match s.protocol {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        };
        format!("{opt} {vname}")
    } else {
        let mut n = format!("{:<4} {vname}", s.protocol.to_string());
        truncate(&mut n, 33);
        n
    };
    let has_flags = !s.sched_flags.is_empty();
    if f.rule {
        let _ = write!(out, "-A {svc_name} -s {}", s.scheduler);
        if let Some(p) = s.persistence {
            let _ = write!(out, " -p {}", p.timeout);
            if p.netmask != Ipv4Addr::BROADCAST {
                let _ = write!(out, " -M {}", p.netmask);
            }
        }
        if s.one_packet {
            out.push_str(" -o");
        }
        if has_flags {
            let _ = write!(out, " -b {}", sched_flags(s));
        }
    } else if f.stats || f.rate {
        let _ = write!(out, "{svc_name:<33}");
        let v = if f.stats {
            let t = &st.stats;
            [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes]
        } else {
            let t = &st.rates;
            [t.cps, t.inpps, t.outpps, t.inbps, t.outbps]
        };
        for x in v {
            largenum(out, x, f.exact);
        }
    } else {
        let _ = write!(out, "{svc_name} {}", s.scheduler);
        if has_flags {
            let _ = write!(out, " ({})", sched_flags(s));
        }
        if let Some(p) = s.persistence {
            let _ = write!(out, " persistent {}", p.timeout);
            if p.netmask != Ipv4Addr::BROADCAST {
                let _ = write!(out, " mask {}", p.netmask);
            }
        }
        if s.one_packet {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    for rs in ordered_reals(st, f.nosort) {
        let real = &rs.real;
        let mut dname = addrport(real.address, real_port(s, real), s.protocol, f.numeric, r);
        if !f.rule {
            truncate(&mut dname, 28);
        }
        let _ = if f.rule {
            if real.forward == ForwardMethod::Tun {
                write!(
                    out,
                    "-a {svc_name} -r {dname} -i -w {}{}",
                    real.weight,
                    tunnel_rule(&real.tunnel)
                )
                .and_then(|()| thresholds_rule(out, real))
            } else {
                write!(
                    out,
                    "-a {svc_name} -r {dname} {} -w {}",
                    fwd_switch(real.forward),
                    real.weight
                )
                .and_then(|()| thresholds_rule(out, real))
            }
        } else if f.stats {
            let _ = write!(out, "  -> {dname:<28}");
            let t = &rs.stats;
            for x in [t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes] {
                largenum(out, x, f.exact);
            }
            writeln!(out)
        } else if f.rate {
            let t = &rs.rates;
            let _ = write!(
                out,
                "  -> {dname:<28} {:>8} {:>8} {:>8}",
                t.cps, t.inpps, t.outpps
            );
            largenum(out, t.inbps, f.exact);
            largenum(out, t.outbps, f.exact);
            writeln!(out)
        } else if f.thresholds {
            writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                real.u_threshold, real.l_threshold, rs.active_conns, rs.inactive_conns
            )
        } else if f.persistent_conn {
            writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                real.weight, rs.persist_conns, rs.active_conns, rs.inactive_conns
            )
        } else if f.tun_info {
            let info = if real.forward == ForwardMethod::Tun {
                real.tunnel.info()
            } else {
                "n/a".to_string()
            };
            writeln!(
                out,
                "  -> {dname:<28} {:<7} {info:<13} {:<6} {:<10} {:<10}",
                fwd_name(real.forward),
                real.weight,
                rs.active_conns,
                rs.inactive_conns
            )
        } else {
            writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                fwd_name(real.forward),
                real.weight,
                rs.active_conns,
                rs.inactive_conns
            )
        };
    }
}

/// ipvsadm's `list_all` (`-L`, and `-S` with `f.rule`).
pub fn list_all(list: &ServiceList, f: Format, r: &dyn Resolver) -> String {
    let mut out = String::new();
    if !f.rule {
        let _ = writeln!(
            out,
            "IP Virtual Server version {IPVS_VERSION} (size={})",
            list.conn_table_size
        );
    }
    out.push_str(&title(f));
    for st in ordered_services(list, f.nosort) {
        service_entry(&mut out, st, f, r);
    }
    out
}

/// ipvsadm's `list_service` (`-L -t VIP:PORT`): no version line.
pub fn list_service(st: &ServiceStatus, f: Format, r: &dyn Resolver) -> String {
    let mut out = title(f);
    service_entry(&mut out, st, f, r);
    out
}

/// ipvsadm's `list_timeout`.
pub fn list_timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcp_fin, t.udp
    )
}

/// ipvsadm's `print_conn` for one entry.
pub fn connection(out: &mut String, c: &Connection, f: Format, r: &dyn Resolver) {
    let expire = format!("{:02}:{:02}", c.expires_in / 60, c.expires_in % 60);
    let name = |(a, p): (Ipv4Addr, u16)| addrport(a, p, c.protocol, f.numeric, r);
    let _ = writeln!(
        out,
        "{:<3} {expire:<6} {:<11} {:<18} {:<18} {}",
        c.protocol.to_string(),
        c.state,
        name(c.client),
        name(c.virtual_addr),
        name(c.real)
    );
}

/// ipvsadm's `list_conn` (`-L -c`). rvs has no persistence engines, so an entry never
/// carries the pe name and data columns, as IPVS's entries without an engine do not.
pub fn list_connections(list: &ConnectionList, f: Format, r: &dyn Resolver) -> String {
    let mut out = String::from("IPVS connection entries\n");
    let _ = if f.persistent_conn {
        writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        )
    } else {
        writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        )
    };
    for c in &list.connections {
        connection(&mut out, c, f, r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largenum_like_ipvsadm() {
        let l = |i, exact| {
            let mut s = String::new();
            largenum(&mut s, i, exact);
            s
        };
        assert_eq!(l(0, false), "        0");
        assert_eq!(l(99_999_999, false), " 99999999");
        assert_eq!(l(100_000_000, false), "  100000K");
        assert_eq!(l(999_999_999, false), "  999999K");
        assert_eq!(l(1_000_000_000, false), "    1000M");
        assert_eq!(l(99_999_999_999, false), "   99999M");
        assert_eq!(l(100_000_000_000, false), "     100G");
        assert_eq!(l(100_000_000_000_000, false), "     100T");
        assert_eq!(l(u64::MAX, false), "18446744T");
        assert_eq!(l(12345678, true), " 12345678");
        assert_eq!(l(123456789, true), " 123456789");
        assert_eq!(l(u64::MAX, true), " 18446744073709551615");
    }

    #[test]
    fn msort_reproduces_the_wrapped_order() {
        // Recorded from ipvsadm in the VM: real servers added 198.18.2.11, 10.0.0.1,
        // 200.0.0.1, 100.0.0.1 (kernel list newest first) list as below.
        let mut v: Vec<Ipv4Addr> = ["100.0.0.1", "200.0.0.1", "10.0.0.1", "198.18.2.11"]
            .iter()
            .map(|s| s.parse().expect("address"))
            .collect();
        glibc_msort(&mut v, &|a, b| wrapped(*a, *b));
        let got: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["100.0.0.1", "198.18.2.11", "200.0.0.1", "10.0.0.1"]);
    }
}
