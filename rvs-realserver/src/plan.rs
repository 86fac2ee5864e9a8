//! What to change on a host to make it a real server, as plain data: no I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use rvs_config::TunnelType;
use serde::{Deserialize, Serialize};

/// How the load balancer reaches this real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Direct routing: frames for the VIP arrive with only the MAC rewritten.
    Dr,
    /// A tunnel of this type (GUE with its UDP port).
    Tun {
        /// ipip, gue or gre.
        kind: TunnelType,
        /// GUE's UDP port.
        port: Option<u16>,
    },
}

/// Which decapsulator a tunnel real server gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decap {
    /// The kernel's module when it has one, else rvs's program.
    #[default]
    Auto,
    /// The kernel's ipip / fou / ip_gre (fails without the module).
    Kernel,
    /// rvs's XDP decapsulation program.
    Program,
}

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// DR or a tunnel.
    pub mode: Mode,
    /// The VIPs this host serves.
    pub vips: Vec<Ipv4Addr>,
    /// Where the VIPs go: `lo` or a dummy (created when absent).
    pub vip_interface: String,
    /// TUN: the interface the encapsulated packets arrive on (for the program and rp_filter).
    pub tunnel_interface: Option<String>,
    /// TUN: which decapsulator.
    pub decap: Decap,
}

/// What the host has now, as far as a plan depends on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Current values of the sysctls a plan may touch (key as under /proc/sys, dotted).
    pub sysctls: BTreeMap<String, String>,
    /// Interfaces that exist.
    pub links: BTreeSet<String>,
    /// Interfaces that are administratively up.
    pub up: BTreeSet<String>,
    /// Interfaces that do ARP (neither loopback nor NOARP): no place for a VIP.
    pub arping: BTreeSet<String>,
    /// IPv4 addresses with a /32 prefix, per interface.
    pub addresses: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// Kernel modules that are loaded or built in.
    pub modules_loaded: BTreeSet<String>,
    /// Kernel modules that `modprobe` could load.
    pub modules_available: BTreeSet<String>,
    /// GUE ports the kernel's fou already receives on.
    pub fou_ports: BTreeSet<u16>,
    /// Interfaces with rvs's decapsulation program pinned.
    pub decap_on: BTreeSet<String>,
}

/// One change to the host, with what it replaces so it can be undone exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Load a kernel module.
    LoadModule {
        /// Module name.
        name: String,
    },
    /// Create a dummy interface (for VIPs), up.
    CreateDummy {
        /// Its name.
        name: String,
    },
    /// Bring an existing interface up (a tunnel module's fallback device).
    SetUp {
        /// Its name.
        name: String,
    },
    /// Add a /32 address.
    AddAddress {
        /// Interface.
        interface: String,
        /// The VIP.
        address: Ipv4Addr,
    },
    /// Set a sysctl.
    SetSysctl {
        /// Dotted key, e.g. `net.ipv4.conf.all.arp_ignore`.
        key: String,
        /// Value before (restored by undo).
        from: String,
        /// Value after.
        to: String,
    },
    /// Receive GUE on a UDP port with the kernel's fou (inner protocol IPIP).
    AddFou {
        /// UDP port.
        port: u16,
    },
    /// Attach rvs's decapsulation program to an interface (pinned so it stays).
    AttachDecap {
        /// Interface.
        interface: String,
        /// GUE ports it unwraps.
        gue_ports: Vec<u16>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::LoadModule { name } => write!(f, "load kernel module {name}"),
            Change::CreateDummy { name } => write!(f, "create dummy interface {name}"),
            Change::SetUp { name } => write!(f, "bring {name} up"),
            Change::AddAddress { interface, address } => {
                write!(f, "add {address}/32 to {interface}")
            }
            Change::SetSysctl { key, from, to } => write!(f, "set {key} = {to} (was {from})"),
            Change::AddFou { port } => write!(f, "receive GUE on UDP port {port} (fou)"),
            Change::AttachDecap {
                interface,
                gue_ports,
            } => {
                write!(f, "attach rvs's decapsulation program to {interface}")?;
                if !gue_ports.is_empty() {
                    write!(f, " (GUE ports {gue_ports:?})")?;
                }
                Ok(())
            }
        }
    }
}

/// A request that cannot be planned, with what to do instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// No VIP given.
    #[error("no VIP given (--vip ADDRESS)")]
    NoVip,
    /// A VIP that cannot be one.
    #[error("{0} cannot be a VIP")]
    BadVip(Ipv4Addr),
    /// GUE without a port, or a port on another type.
    #[error("{0}")]
    Tunnel(&'static str),
    /// The kernel decapsulator was asked for but the module is missing.
    #[error(
        "the kernel has no {module} module for {kind} tunnels; use --decap program (rvs's XDP decapsulation) or --decap auto"
    )]
    NoModule {
        /// Tunnel type.
        kind: TunnelType,
        /// The module needed.
        module: &'static str,
    },
    /// The program needs an interface to attach to.
    #[error(
        "rvs's decapsulation program needs the interface the tunnelled packets arrive on: --interface IF"
    )]
    NoTunnelInterface,
    /// The VIP interface answers ARP, so the VIP would be announced from the real server.
    #[error(
        "{0} does ARP: a VIP there would be answered for and steal the director's traffic; use lo or a dummy interface (--interface)"
    )]
    ArpingInterface(String),
    /// The tunnel interface does not exist.
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
}

/// The kernel module that receives `kind`, and the fallback device it creates.
pub fn tunnel_module(kind: TunnelType) -> (&'static str, &'static str) {
    match kind {
        TunnelType::Ipip | TunnelType::Gue => ("ipip", "tunl0"),
        TunnelType::Gre => ("ip_gre", "gre0"),
    }
}

fn sysctl(plan: &mut Vec<Change>, seen: &Observed, key: String, to: &str) {
    let from = seen.sysctls.get(&key).cloned().unwrap_or_default();
    if from != to
        && !plan
            .iter()
            .any(|c| matches!(c, Change::SetSysctl { key: k, .. } if *k == key))
    {
        plan.push(Change::SetSysctl {
            key,
            from,
            to: to.to_string(),
        });
    }
}

/// The sysctl keys a plan for `req` reads (so the I/O layer knows what to observe).
pub fn sysctl_keys(req: &Request, tunnel_device: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    for dev in ["all", req.vip_interface.as_str()] {
        keys.push(format!("net.ipv4.conf.{dev}.arp_ignore"));
        keys.push(format!("net.ipv4.conf.{dev}.arp_announce"));
    }
    if matches!(req.mode, Mode::Tun { .. }) {
        keys.push("net.ipv4.conf.all.rp_filter".into());
        for dev in [req.tunnel_interface.as_deref(), tunnel_device]
            .into_iter()
            .flatten()
        {
            keys.push(format!("net.ipv4.conf.{dev}.rp_filter"));
        }
    }
    keys.dedup();
    keys
}

/// Whether a tunnel of `kind` is decapsulated by the kernel (else by rvs's program).
pub fn uses_kernel(req: &Request, seen: &Observed, kind: TunnelType) -> Result<bool, PlanError> {
    let (module, _) = tunnel_module(kind);
    let mut needed = vec![module];
    if kind == TunnelType::Gue {
        needed.push("fou");
    }
    let have = needed
        .iter()
        .all(|m| seen.modules_loaded.contains(*m) || seen.modules_available.contains(*m));
    match req.decap {
        Decap::Program => Ok(false),
        Decap::Kernel if !have => Err(PlanError::NoModule { kind, module }),
        Decap::Kernel => Ok(true),
        Decap::Auto => Ok(have),
    }
}

/// The changes that make the host what `req` asks, given what it has: empty when it is
/// already prepared.
pub fn prepare(req: &Request, seen: &Observed) -> Result<Vec<Change>, PlanError> {
    if req.vips.is_empty() {
        return Err(PlanError::NoVip);
    }
    if let Some(bad) = req
        .vips
        .iter()
        .find(|v| v.is_unspecified() || v.is_broadcast() || v.is_multicast() || v.is_loopback())
    {
        return Err(PlanError::BadVip(*bad));
    }
    if seen.arping.contains(&req.vip_interface) {
        return Err(PlanError::ArpingInterface(req.vip_interface.clone()));
    }
    let mut plan = Vec::new();

    // The decapsulator first: a VIP that answers before packets can be unwrapped is harmless,
    // but checking the request before touching anything keeps a refused run change-free.
    let mut tunnel_device = None;
    if let Mode::Tun { kind, port } = req.mode {
        match (kind, port) {
            (TunnelType::Gue, None | Some(0)) => {
                return Err(PlanError::Tunnel(
                    "a gue tunnel needs its UDP port (--port N)",
                ));
            }
            (TunnelType::Ipip | TunnelType::Gre, Some(_)) => {
                return Err(PlanError::Tunnel("only gue tunnels have a port"));
            }
            _ => {}
        }
        if uses_kernel(req, seen, kind)? {
            let (module, device) = tunnel_module(kind);
            let mut modules = vec![module];
            if kind == TunnelType::Gue {
                modules.push("fou");
            }
            for m in modules {
                if !seen.modules_loaded.contains(m) {
                    plan.push(Change::LoadModule { name: m.into() });
                }
            }
            // A module loaded by this plan creates its device in every namespace; one
            // already loaded has it here already.
            if !seen.up.contains(device) {
                plan.push(Change::SetUp {
                    name: device.into(),
                });
            }
            if let (TunnelType::Gue, Some(p)) = (kind, port)
                && !seen.fou_ports.contains(&p)
            {
                plan.push(Change::AddFou { port: p });
            }
            tunnel_device = Some(device);
        } else {
            let interface = req
                .tunnel_interface
                .clone()
                .ok_or(PlanError::NoTunnelInterface)?;
            if !seen.links.contains(&interface) {
                return Err(PlanError::NoSuchInterface(interface));
            }
            if !seen.decap_on.contains(&interface) {
                plan.push(Change::AttachDecap {
                    interface,
                    gue_ports: port.into_iter().collect(),
                });
            }
        }
    }

    let dev = &req.vip_interface;
    if !seen.links.contains(dev) {
        plan.push(Change::CreateDummy { name: dev.clone() });
    }
    for vip in &req.vips {
        let present = seen.addresses.get(dev).is_some_and(|a| a.contains(vip));
        if !present
            && !plan
                .iter()
                .any(|c| matches!(c, Change::AddAddress { address, .. } if address == vip))
        {
            plan.push(Change::AddAddress {
                interface: dev.clone(),
                address: *vip,
            });
        }
    }
    // arp_ignore/arp_announce take the larger of `all` and the interface's value, so `all`
    // covers the interface ARP arrives on; the VIP interface is set too, as LVS's guides do.
    for d in ["all", dev.as_str()] {
        sysctl(
            &mut plan,
            seen,
            format!("net.ipv4.conf.{d}.arp_ignore"),
            "1",
        );
        sysctl(
            &mut plan,
            seen,
            format!("net.ipv4.conf.{d}.arp_announce"),
            "2",
        );
    }
    if matches!(req.mode, Mode::Tun { .. }) {
        // rp_filter is also the larger of `all` and the interface: both must be 0.
        sysctl(&mut plan, seen, "net.ipv4.conf.all.rp_filter".into(), "0");
        let receiving = tunnel_device
            .map(str::to_string)
            .or(req.tunnel_interface.clone());
        if let Some(d) = receiving {
            sysctl(&mut plan, seen, format!("net.ipv4.conf.{d}.rp_filter"), "0");
        }
    }
    Ok(plan)
}

/// The inverse of one applied change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// Unload a module that the preparation loaded.
    UnloadModule(String),
    /// Delete a dummy interface that the preparation created.
    DeleteLink(String),
    /// Bring an interface down again.
    SetDown(String),
    /// Remove an address the preparation added.
    DelAddress {
        /// Interface.
        interface: String,
        /// Address.
        address: Ipv4Addr,
    },
    /// Put a sysctl back.
    SetSysctl {
        /// Key.
        key: String,
        /// The value it had.
        value: String,
    },
    /// Stop receiving GUE on a port.
    DelFou(u16),
    /// Detach rvs's decapsulation program.
    DetachDecap(String),
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revert::UnloadModule(m) => write!(f, "unload kernel module {m}"),
            Revert::DeleteLink(l) => write!(f, "delete interface {l}"),
            Revert::SetDown(l) => write!(f, "bring {l} down"),
            Revert::DelAddress { interface, address } => {
                write!(f, "remove {address}/32 from {interface}")
            }
            Revert::SetSysctl { key, value } => write!(f, "set {key} = {value} (restored)"),
            Revert::DelFou(p) => write!(f, "stop receiving GUE on UDP port {p}"),
            Revert::DetachDecap(i) => write!(f, "detach rvs's decapsulation program from {i}"),
        }
    }
}

/// What restores the host to before `applied` (in the order to run it: last change first).
/// An address on a dummy that is deleted anyway is not removed separately.
pub fn undo(applied: &[Change]) -> Vec<Revert> {
    let created: BTreeSet<&str> = applied
        .iter()
        .filter_map(|c| match c {
            Change::CreateDummy { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    applied
        .iter()
        .rev()
        .filter_map(|c| match c {
            Change::LoadModule { name } => Some(Revert::UnloadModule(name.clone())),
            Change::CreateDummy { name } => Some(Revert::DeleteLink(name.clone())),
            Change::SetUp { name } => Some(Revert::SetDown(name.clone())),
            Change::AddAddress { interface, address } => (!created.contains(interface.as_str()))
                .then(|| Revert::DelAddress {
                    interface: interface.clone(),
                    address: *address,
                }),
            Change::SetSysctl { key, from, .. } => {
                // A sysctl of an interface this preparation created goes with it.
                let dev = key.split('.').nth(3).unwrap_or_default();
                (!created.contains(dev)).then(|| Revert::SetSysctl {
                    key: key.clone(),
                    value: from.clone(),
                })
            }
            Change::AddFou { port } => Some(Revert::DelFou(*port)),
            Change::AttachDecap { interface, .. } => Some(Revert::DetachDecap(interface.clone())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Observed {
        let mut o = Observed::default();
        for l in ["lo", "eth0"] {
            o.links.insert(l.into());
            o.up.insert(l.into());
        }
        for d in ["all", "lo", "eth0", "tunl0"] {
            o.sysctls
                .insert(format!("net.ipv4.conf.{d}.arp_ignore"), "0".into());
            o.sysctls
                .insert(format!("net.ipv4.conf.{d}.arp_announce"), "0".into());
            o.sysctls
                .insert(format!("net.ipv4.conf.{d}.rp_filter"), "2".into());
        }
        o
    }

    fn dr(vips: &[Ipv4Addr]) -> Request {
        Request {
            mode: Mode::Dr,
            vips: vips.to_vec(),
            vip_interface: "lo".into(),
            tunnel_interface: None,
            decap: Decap::Auto,
        }
    }

    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
    const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);

    /// Applies a plan to an observed state the way the host would change.
    fn apply(o: &mut Observed, plan: &[Change]) {
        for c in plan {
            match c {
                Change::LoadModule { name } => {
                    o.modules_loaded.insert(name.clone());
                }
                Change::CreateDummy { name } => {
                    o.links.insert(name.clone());
                    o.up.insert(name.clone());
                    for k in ["arp_ignore", "arp_announce"] {
                        o.sysctls
                            .insert(format!("net.ipv4.conf.{name}.{k}"), "0".into());
                    }
                }
                Change::SetUp { name } => {
                    o.links.insert(name.clone());
                    o.up.insert(name.clone());
                }
                Change::AddAddress { interface, address } => {
                    o.addresses
                        .entry(interface.clone())
                        .or_default()
                        .insert(*address);
                }
                Change::SetSysctl { key, to, .. } => {
                    o.sysctls.insert(key.clone(), to.clone());
                }
                Change::AddFou { port } => {
                    o.fou_ports.insert(*port);
                }
                Change::AttachDecap { interface, .. } => {
                    o.decap_on.insert(interface.clone());
                }
            }
        }
    }

    #[test]
    fn dr_puts_the_vips_on_lo_and_silences_arp_then_has_nothing_left_to_do() {
        let mut o = host();
        let plan = prepare(&dr(&[VIP, VIP2]), &o).expect("plan");
        let shown: Vec<String> = plan.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "add 198.18.0.10/32 to lo",
                "add 198.18.0.11/32 to lo",
                "set net.ipv4.conf.all.arp_ignore = 1 (was 0)",
                "set net.ipv4.conf.all.arp_announce = 2 (was 0)",
                "set net.ipv4.conf.lo.arp_ignore = 1 (was 0)",
                "set net.ipv4.conf.lo.arp_announce = 2 (was 0)",
            ]
        );
        apply(&mut o, &plan);
        assert_eq!(prepare(&dr(&[VIP, VIP2]), &o), Ok(vec![]));
        // A later VIP only adds itself.
        assert_eq!(
            prepare(&dr(&[VIP, Ipv4Addr::new(198, 18, 0, 12)]), &o),
            Ok(vec![Change::AddAddress {
                interface: "lo".into(),
                address: Ipv4Addr::new(198, 18, 0, 12)
            }])
        );
    }

    #[test]
    fn values_already_right_are_left_alone() {
        let mut o = host();
        o.sysctls
            .insert("net.ipv4.conf.all.arp_ignore".into(), "1".into());
        o.addresses.entry("lo".into()).or_default().insert(VIP);
        let plan = prepare(&dr(&[VIP]), &o).expect("plan");
        assert!(!plan.iter().any(|c| matches!(c, Change::AddAddress { .. })));
        assert!(!plan.iter().any(
            |c| matches!(c, Change::SetSysctl { key, .. } if key == "net.ipv4.conf.all.arp_ignore")
        ));
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn a_missing_vip_interface_becomes_a_dummy_and_undo_deletes_it_whole() {
        let mut o = host();
        let mut req = dr(&[VIP]);
        req.vip_interface = "vip0".into();
        let plan = prepare(&req, &o).expect("plan");
        assert_eq!(
            plan[0],
            Change::CreateDummy {
                name: "vip0".into()
            }
        );
        apply(&mut o, &plan);
        assert_eq!(prepare(&req, &o), Ok(vec![]));
        let back: Vec<String> = undo(&plan).iter().map(|r| r.to_string()).collect();
        assert_eq!(
            back,
            [
                "set net.ipv4.conf.all.arp_announce = 0 (restored)",
                "set net.ipv4.conf.all.arp_ignore = 0 (restored)",
                "delete interface vip0",
            ]
        );
    }

    #[test]
    fn undo_restores_exactly_the_previous_values_in_reverse_order() {
        let mut o = host();
        o.sysctls
            .insert("net.ipv4.conf.all.arp_announce".into(), "1".into());
        let plan = prepare(&dr(&[VIP]), &o).expect("plan");
        let back = undo(&plan);
        assert_eq!(
            back.first(),
            Some(&Revert::SetSysctl {
                key: "net.ipv4.conf.lo.arp_announce".into(),
                value: "0".into()
            })
        );
        assert!(back.contains(&Revert::SetSysctl {
            key: "net.ipv4.conf.all.arp_announce".into(),
            value: "1".into()
        }));
        assert_eq!(
            back.last(),
            Some(&Revert::DelAddress {
                interface: "lo".into(),
                address: VIP
            })
        );
        assert_eq!(back.len(), plan.len());
    }

    fn tun(kind: TunnelType, port: Option<u16>, decap: Decap) -> Request {
        Request {
            mode: Mode::Tun { kind, port },
            vips: vec![VIP],
            vip_interface: "lo".into(),
            tunnel_interface: Some("eth0".into()),
            decap,
        }
    }

    #[test]
    fn tun_without_the_module_uses_the_program_and_turns_rp_filter_off() {
        let mut o = host();
        let plan = prepare(&tun(TunnelType::Ipip, None, Decap::Auto), &o).expect("plan");
        assert_eq!(
            plan[0],
            Change::AttachDecap {
                interface: "eth0".into(),
                gue_ports: vec![]
            }
        );
        let tail: Vec<String> = plan[plan.len() - 2..]
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            tail,
            [
                "set net.ipv4.conf.all.rp_filter = 0 (was 2)",
                "set net.ipv4.conf.eth0.rp_filter = 0 (was 2)",
            ]
        );
        apply(&mut o, &plan);
        assert_eq!(
            prepare(&tun(TunnelType::Ipip, None, Decap::Auto), &o),
            Ok(vec![])
        );
        assert_eq!(
            undo(&plan)[0],
            Revert::SetSysctl {
                key: "net.ipv4.conf.eth0.rp_filter".into(),
                value: "2".into()
            }
        );
        assert_eq!(
            undo(&plan).last(),
            Some(&Revert::DetachDecap("eth0".into()))
        );
        // GUE through the program: it is told the port.
        let plan =
            prepare(&tun(TunnelType::Gue, Some(6080), Decap::Program), &host()).expect("plan");
        assert_eq!(
            plan[0],
            Change::AttachDecap {
                interface: "eth0".into(),
                gue_ports: vec![6080]
            }
        );
    }

    #[test]
    fn tun_with_the_module_uses_the_kernel_device() {
        let mut o = host();
        o.modules_available
            .extend(["ipip".to_string(), "fou".to_string()]);
        let plan = prepare(&tun(TunnelType::Gue, Some(6080), Decap::Auto), &o).expect("plan");
        let head: Vec<String> = plan[..4].iter().map(|c| c.to_string()).collect();
        assert_eq!(
            head,
            [
                "load kernel module ipip",
                "load kernel module fou",
                "bring tunl0 up",
                "receive GUE on UDP port 6080 (fou)",
            ]
        );
        assert!(plan.contains(&Change::SetSysctl {
            key: "net.ipv4.conf.tunl0.rp_filter".into(),
            from: "2".into(),
            to: "0".into()
        }));
        apply(&mut o, &plan);
        assert_eq!(
            prepare(&tun(TunnelType::Gue, Some(6080), Decap::Auto), &o),
            Ok(vec![])
        );
        assert_eq!(
            undo(&plan).last(),
            Some(&Revert::UnloadModule("ipip".into()))
        );
    }

    #[test]
    fn refusals_change_nothing() {
        let o = host();
        assert_eq!(prepare(&dr(&[]), &o), Err(PlanError::NoVip));
        assert_eq!(
            prepare(&dr(&[Ipv4Addr::new(127, 0, 0, 2)]), &o),
            Err(PlanError::BadVip(Ipv4Addr::new(127, 0, 0, 2)))
        );
        assert!(matches!(
            prepare(&tun(TunnelType::Gue, None, Decap::Auto), &o),
            Err(PlanError::Tunnel(_))
        ));
        assert!(matches!(
            prepare(&tun(TunnelType::Gre, Some(1), Decap::Auto), &o),
            Err(PlanError::Tunnel(_))
        ));
        assert_eq!(
            prepare(&tun(TunnelType::Gre, None, Decap::Kernel), &o),
            Err(PlanError::NoModule {
                kind: TunnelType::Gre,
                module: "ip_gre"
            })
        );
        let mut o2 = o.clone();
        o2.arping.insert("eth0".into());
        let mut on_eth0 = dr(&[VIP]);
        on_eth0.vip_interface = "eth0".into();
        assert_eq!(
            prepare(&on_eth0, &o2),
            Err(PlanError::ArpingInterface("eth0".into()))
        );
        let mut req = tun(TunnelType::Ipip, None, Decap::Program);
        req.tunnel_interface = None;
        assert_eq!(prepare(&req, &o), Err(PlanError::NoTunnelInterface));
        req.tunnel_interface = Some("eth9".into());
        assert_eq!(
            prepare(&req, &o),
            Err(PlanError::NoSuchInterface("eth9".into()))
        );
    }
}
