//! Host and service names, as ipvsadm resolves them: `gethostbyname` for a host that is not
//! a dotted address, `getservbyname` for a port that is not a number, and
//! `gethostbyaddr`/`getservbyport` when listing without `-n`.
//!
//! [`SystemResolver`] asks the C library (so `/etc/hosts`, DNS and `/etc/services` apply as
//! configured in nsswitch); [`FileResolver`] answers from given `hosts` and `services`
//! texts with the C library's rules, for tests that must not depend on the machine.

use std::{cell::RefCell, collections::HashMap, ffi::CString, net::Ipv4Addr};

/// The transport protocol a service name is looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `tcp` in /etc/services.
    Tcp,
    /// `udp` in /etc/services.
    Udp,
    /// `sctp` in /etc/services.
    Sctp,
}

impl Proto {
    /// The protocol's name in /etc/services.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// Name lookups used while parsing arguments and printing listings.
pub trait Resolver {
    /// `gethostbyname`: the first IPv4 address of a host name.
    fn host_v4(&self, name: &str) -> Option<Ipv4Addr>;
    /// `gethostbyaddr`: the canonical name of an address.
    fn addr_name(&self, addr: Ipv4Addr) -> Option<String>;
    /// `getservbyname`: the port of a service name.
    fn service_port(&self, name: &str, proto: Proto) -> Option<u16>;
    /// `getservbyport`: the name of a port.
    fn port_service(&self, port: u16, proto: Proto) -> Option<String>;
}

/// Whether `name` is made of digits and dots only: the C library answers such a name
/// without asking DNS (`__nss_hostname_digits_dots`), and so does [`SystemResolver`].
fn digits_dots(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Lookups through the C library, with answers cached for the run (a listing asks for the
/// same addresses many times).
#[derive(Debug, Default)]
pub struct SystemResolver {
    names: RefCell<HashMap<Ipv4Addr, Option<String>>>,
    ports: RefCell<HashMap<(u16, Proto), Option<String>>>,
}

impl SystemResolver {
    /// A resolver with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Resolver for SystemResolver {
    fn host_v4(&self, name: &str) -> Option<Ipv4Addr> {
        if digits_dots(name) {
            return None;
        }
        let cname = CString::new(name).ok()?;
        // SAFETY: `hints` is a zeroed addrinfo with the fields getaddrinfo reads set; the
        // result list is walked only while valid and freed exactly once.
        unsafe {
            let mut hints: libc::addrinfo = std::mem::zeroed();
            hints.ai_family = libc::AF_INET;
            hints.ai_socktype = libc::SOCK_STREAM;
            let mut res: *mut libc::addrinfo = std::ptr::null_mut();
            if libc::getaddrinfo(cname.as_ptr(), std::ptr::null(), &hints, &mut res) != 0 {
                return None;
            }
            let mut found = None;
            let mut p = res;
            while !p.is_null() {
                if (*p).ai_family == libc::AF_INET && !(*p).ai_addr.is_null() {
                    let sin = (*p).ai_addr as *const libc::sockaddr_in;
                    found = Some(Ipv4Addr::from(u32::from_be((*sin).sin_addr.s_addr)));
                    break;
                }
                p = (*p).ai_next;
            }
            libc::freeaddrinfo(res);
            found
        }
    }

    fn addr_name(&self, addr: Ipv4Addr) -> Option<String> {
        if let Some(hit) = self.names.borrow().get(&addr) {
            return hit.clone();
        }
        // SAFETY: a valid sockaddr_in and output buffer of the sizes passed.
        let name = unsafe {
            let mut sin: libc::sockaddr_in = std::mem::zeroed();
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(addr).to_be();
            let mut host = [0 as libc::c_char; 1025];
            let rc = libc::getnameinfo(
                &sin as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                host.as_mut_ptr(),
                host.len() as libc::socklen_t,
                std::ptr::null_mut(),
                0,
                libc::NI_NAMEREQD,
            );
            (rc == 0).then(|| {
                std::ffi::CStr::from_ptr(host.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            })
        };
        self.names.borrow_mut().insert(addr, name.clone());
        name
    }

    fn service_port(&self, name: &str, proto: Proto) -> Option<u16> {
        let cname = CString::new(name).ok()?;
        let cproto = CString::new(proto.name()).ok()?;
        // SAFETY: getservbyname returns NULL or a pointer into static storage that stays
        // valid until the next call on this thread; the port is copied out at once. rvsadm
        // is single-threaded, which the non-reentrant call needs.
        unsafe {
            let s = libc::getservbyname(cname.as_ptr(), cproto.as_ptr());
            (!s.is_null()).then(|| u16::from_be((*s).s_port as u16))
        }
    }

    fn port_service(&self, port: u16, proto: Proto) -> Option<String> {
        if let Some(hit) = self.ports.borrow().get(&(port, proto)) {
            return hit.clone();
        }
        let cproto = CString::new(proto.name()).ok()?;
        // SAFETY: as in `service_port`; the name is copied before any other call.
        let name = unsafe {
            let s = libc::getservbyport(libc::c_int::from(port.to_be()), cproto.as_ptr());
            (!s.is_null() && !(*s).s_name.is_null()).then(|| {
                std::ffi::CStr::from_ptr((*s).s_name)
                    .to_string_lossy()
                    .into_owned()
            })
        };
        self.ports.borrow_mut().insert((port, proto), name.clone());
        name
    }
}

/// Lookups answered from the texts of a `hosts` and a `services` file, with the C
/// library's `files` rules: host names match case-insensitively on the canonical name or an
/// alias, the first matching line wins, an address maps to its line's canonical name.
#[derive(Debug, Clone, Default)]
pub struct FileResolver {
    hosts: Vec<(Ipv4Addr, Vec<String>)>,
    services: Vec<(String, Vec<String>, u16, String)>,
}

fn words(line: &str) -> Vec<&str> {
    line.split('#')
        .next()
        .unwrap_or("")
        .split_ascii_whitespace()
        .collect()
}

impl FileResolver {
    /// A resolver over `hosts` (/etc/hosts format; IPv6 lines are ignored) and `services`
    /// (/etc/services format).
    pub fn new(hosts: &str, services: &str) -> Self {
        let hosts = hosts
            .lines()
            .filter_map(|l| {
                let w = words(l);
                let addr: Ipv4Addr = w.first()?.parse().ok()?;
                (w.len() > 1).then(|| (addr, w[1..].iter().map(|s| s.to_string()).collect()))
            })
            .collect();
        let services = services
            .lines()
            .filter_map(|l| {
                let w = words(l);
                let (port, proto) = w.get(1)?.split_once('/')?;
                Some((
                    w[0].to_string(),
                    w[2..].iter().map(|s| s.to_string()).collect(),
                    port.parse().ok()?,
                    proto.to_string(),
                ))
            })
            .collect();
        Self { hosts, services }
    }
}

impl Resolver for FileResolver {
    fn host_v4(&self, name: &str) -> Option<Ipv4Addr> {
        self.hosts
            .iter()
            .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
            .map(|(a, _)| *a)
    }

    fn addr_name(&self, addr: Ipv4Addr) -> Option<String> {
        self.hosts
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, names)| names[0].clone())
    }

    fn service_port(&self, name: &str, proto: Proto) -> Option<u16> {
        self.services
            .iter()
            .find(|(n, aliases, _, p)| {
                p == proto.name() && (n == name || aliases.iter().any(|a| a == name))
            })
            .map(|(_, _, port, _)| *port)
    }

    fn port_service(&self, port: u16, proto: Proto) -> Option<String> {
        self.services
            .iter()
            .find(|(_, _, p, pr)| *p == port && pr == proto.name())
            .map(|(n, ..)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_resolver_follows_files_rules() {
        let r = FileResolver::new(
            "127.0.0.1 localhost\n198.18.0.10\tvip1.test vip1 # comment\n198.18.0.10 other\n::1 ip6-localhost\n",
            "http 80/tcp www\nhttp 80/udp\nshell 514/tcp cmd\nsyslog 514/udp\n",
        );
        assert_eq!(r.host_v4("VIP1"), Some(Ipv4Addr::new(198, 18, 0, 10)));
        assert_eq!(r.host_v4("other"), Some(Ipv4Addr::new(198, 18, 0, 10)));
        assert_eq!(r.host_v4("ip6-localhost"), None);
        assert_eq!(
            r.addr_name(Ipv4Addr::new(198, 18, 0, 10)).as_deref(),
            Some("vip1.test")
        );
        assert_eq!(r.service_port("www", Proto::Tcp), Some(80));
        assert_eq!(r.service_port("www", Proto::Udp), None);
        assert_eq!(r.port_service(514, Proto::Tcp).as_deref(), Some("shell"));
        assert_eq!(r.port_service(514, Proto::Udp).as_deref(), Some("syslog"));
        assert_eq!(r.port_service(0, Proto::Tcp), None);
    }

    #[test]
    fn system_resolver_never_asks_for_digits_and_dots() {
        let r = SystemResolver::new();
        assert_eq!(r.host_v4("198.18.0.300"), None);
        assert_eq!(r.host_v4("localhost"), Some(Ipv4Addr::LOCALHOST));
    }
}
