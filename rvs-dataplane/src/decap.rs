//! The real-server side of TUN: loads rvs's decapsulation XDP program (`rvs_decap`) onto an
//! interface of a real server whose kernel has no ipip/fou/gre module. It strips IPIP, GUE
//! and GRE packets addressed to one of the host's addresses and passes the inner packet to
//! the kernel, which delivers it to the VIP held on a non-ARPing interface.

use std::{fs, net::Ipv4Addr, path::Path};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{ProgramError, XdpMode, links::FdLink},
};
use rvs_common::{DecapCount, maps, programs};

use crate::{DataplaneError, Result, io_err, map_err, xdp_of};

/// What the decapsulation program accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecapOptions {
    /// Outer destinations to decapsulate for; empty means every IPv4 address of the
    /// network namespace at attach time.
    pub local: Vec<Ipv4Addr>,
    /// UDP ports GUE arrives on (ipvsadm's `--tun-port`); none means GUE is not accepted.
    pub gue_ports: Vec<u16>,
}

/// Packets handled so far, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecapCounters {
    /// IPIP packets decapsulated.
    pub ipip: u64,
    /// GUE packets decapsulated.
    pub gue: u64,
    /// GRE packets decapsulated.
    pub gre: u64,
    /// Tunnel packets for this host left untouched (malformed or unsupported options).
    pub passed: u64,
}

/// The decapsulation program attached to one interface; detached when dropped unless
/// [`DecapProgram::pin`]ned.
pub struct DecapProgram {
    ebpf: Ebpf,
    interface: String,
    link: Option<aya::programs::xdp::XdpLinkId>,
}

impl DecapProgram {
    /// Loads the program and attaches it to `interface` (native XDP, else generic) in the
    /// caller's network namespace.
    pub fn attach(interface: &str, opts: &DecapOptions) -> Result<DecapProgram> {
        let mut ebpf = crate::load_side_object("decap", &[maps::DECAP_ADDRS, maps::DECAP_PORTS])?;
        let local = if opts.local.is_empty() {
            local_ipv4_addrs()?
        } else {
            opts.local.clone()
        };
        {
            let mut addrs: HashMap<&mut MapData, u32, u8> = HashMap::try_from(
                ebpf.map_mut(maps::DECAP_ADDRS)
                    .ok_or(DataplaneError::MissingMap(maps::DECAP_ADDRS))?,
            )
            .map_err(map_err(maps::DECAP_ADDRS))?;
            for a in &local {
                addrs
                    .insert(u32::from_ne_bytes(a.octets()), 1, 0)
                    .map_err(map_err(maps::DECAP_ADDRS))?;
            }
        }
        {
            let mut ports: HashMap<&mut MapData, u16, u8> = HashMap::try_from(
                ebpf.map_mut(maps::DECAP_PORTS)
                    .ok_or(DataplaneError::MissingMap(maps::DECAP_PORTS))?,
            )
            .map_err(map_err(maps::DECAP_PORTS))?;
            for p in &opts.gue_ports {
                ports
                    .insert(p.to_be(), 1, 0)
                    .map_err(map_err(maps::DECAP_PORTS))?;
            }
        }
        let prog = xdp_of(&mut ebpf, programs::DECAP)?;
        let attach_err = |source: ProgramError| DataplaneError::Attach {
            interface: interface.to_owned(),
            source: Box::new(source),
        };
        prog.load().map_err(attach_err)?;
        let link = match prog.attach(interface, XdpMode::Driver) {
            Ok(l) => l,
            // Drivers without native XDP still run it in generic mode.
            Err(_) => prog.attach(interface, XdpMode::Skb).map_err(attach_err)?,
        };
        Ok(DecapProgram {
            ebpf,
            interface: interface.to_owned(),
            link: Some(link),
        })
    }

    /// The loaded program (e.g. to run it through BPF_PROG_TEST_RUN).
    pub fn program(&mut self) -> Result<&mut aya::programs::Xdp> {
        xdp_of(&mut self.ebpf, programs::DECAP)
    }

    /// The interface it is attached to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Result<DecapCounters> {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
            self.ebpf
                .map(maps::DECAP_STATS)
                .ok_or(DataplaneError::MissingMap(maps::DECAP_STATS))?,
        )
        .map_err(map_err(maps::DECAP_STATS))?;
        let get = |c: DecapCount| -> Result<u64> {
            let v = map
                .get(&(c as u32), 0)
                .map_err(map_err(maps::DECAP_STATS))?;
            Ok(v.iter().sum())
        };
        Ok(DecapCounters {
            ipip: get(DecapCount::Ipip)?,
            gue: get(DecapCount::Gue)?,
            gre: get(DecapCount::Gre)?,
            passed: get(DecapCount::Passed)?,
        })
    }

    /// Keeps the program attached after this process exits: its bpf_link is pinned at
    /// `path` (on bpffs). [`DecapProgram::unpin`] detaches it again.
    pub fn pin(mut self, path: &Path) -> Result<()> {
        let id = self.link.take().ok_or_else(|| DataplaneError::Io {
            what: "decapsulation program has no link".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
        let interface = self.interface.clone();
        let prog = xdp_of(&mut self.ebpf, programs::DECAP)?;
        let link = prog
            .take_link(id)
            .map_err(|source| DataplaneError::Attach {
                interface: interface.clone(),
                source: Box::new(source),
            })?;
        let fd_link = FdLink::try_from(link).map_err(|e| DataplaneError::Io {
            what: format!("XDP on {interface} is not a bpf_link (kernel too old?)"),
            source: std::io::Error::other(e.to_string()),
        })?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        fd_link.pin(path).map_err(|e| DataplaneError::Io {
            what: format!("pinning the decapsulation link at {}", path.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(())
    }

    /// Detaches a decapsulation program pinned at `path` (idempotent: nothing pinned is
    /// fine).
    pub fn unpin(path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DataplaneError::Io {
                what: format!("removing {}", path.display()),
                source: e,
            }),
        }
    }

    /// Whether a decapsulation link is pinned at `path`.
    pub fn is_pinned(path: &Path) -> bool {
        path.exists()
    }
}

/// Every IPv4 address of the caller's network namespace.
pub fn local_ipv4_addrs() -> Result<Vec<Ipv4Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(DataplaneError::Io {
            what: "listing interface addresses".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr whose family says its type.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET {
                // SAFETY: an AF_INET sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let a = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}
