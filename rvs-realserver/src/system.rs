//! The I/O layer: observes the host for [`crate::plan`] and applies or reverts its changes.
//! Sysctls are files under /proc/sys; links and addresses go over rtnetlink; kernel modules
//! through `modprobe` and GUE ports through `ip fou` (generic netlink, which rtnetlink does
//! not cover); the decapsulation program through rvs-dataplane.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::{AddressMessageBuilder, Handle, LinkDummy, LinkUnspec};

use crate::plan::{Change, Observed, Request, Revert, sysctl_keys, tunnel_module};
use crate::state::netns_inode;

/// Modules a tunnel plan may ask about.
const MODULES: [&str; 3] = ["ipip", "ip_gre", "fou"];

/// Where this namespace's decapsulation programs are pinned (bpffs is shared by all
/// namespaces of a host, so the path carries the namespace).
pub fn decap_pin_dir() -> Result<PathBuf> {
    Ok(PathBuf::from(format!(
        "/sys/fs/bpf/rvs-realserver/net{}",
        netns_inode().context("reading /proc/self/ns/net")?
    )))
}

fn decap_pin(interface: &str) -> Result<PathBuf> {
    Ok(decap_pin_dir()?.join(format!("decap-{interface}")))
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// A sysctl's value, or "" when it does not exist (an interface not created yet).
pub fn read_sysctl(key: &str) -> Result<String> {
    match std::fs::read_to_string(sysctl_path(key)) {
        Ok(v) => Ok(v.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading sysctl {key}")),
    }
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    std::fs::write(sysctl_path(key), value).with_context(|| format!("setting {key} = {value}"))
}

fn run(argv: &[&str]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `modprobe` could load `module` (a dry run; no `modprobe` means no).
fn module_available(module: &str) -> bool {
    Command::new("modprobe")
        .args(["-n", "-q", module])
        .status()
        .is_ok_and(|s| s.success())
}

/// An rtnetlink connection in the caller's namespace.
pub struct Host {
    handle: Handle,
}

impl Host {
    /// Opens the connection (its driver runs on the current tokio runtime).
    pub fn new() -> Result<Host> {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(connection);
        Ok(Host { handle })
    }

    /// Interfaces by name: (index, up, does ARP).
    async fn links(&self) -> Result<BTreeMap<String, (u32, bool, bool)>> {
        let mut out = BTreeMap::new();
        let mut links = self.handle.link().get().execute();
        while let Some(msg) = links.try_next().await.context("listing interfaces")? {
            let name = msg.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if let Some(name) = name {
                let f = msg.header.flags;
                let arping = !f.contains(LinkFlags::Loopback) && !f.contains(LinkFlags::Noarp);
                out.insert(name, (msg.header.index, f.contains(LinkFlags::Up), arping));
            }
        }
        Ok(out)
    }

    async fn index(&self, name: &str) -> Result<u32> {
        match self.links().await?.get(name) {
            Some((index, _, _)) => Ok(*index),
            None => bail!("interface {name} does not exist"),
        }
    }

    /// What a plan for `req` depends on.
    pub async fn observe(&self, req: &Request) -> Result<Observed> {
        let mut seen = Observed::default();
        let links = self.links().await?;
        let mut names = BTreeMap::new();
        for (name, (index, up, arping)) in &links {
            seen.links.insert(name.clone());
            if *up {
                seen.up.insert(name.clone());
            }
            if *arping {
                seen.arping.insert(name.clone());
            }
            names.insert(*index, name.clone());
        }
        let mut addrs = self.handle.address().get().execute();
        while let Some(msg) = addrs.try_next().await.context("listing addresses")? {
            if msg.header.prefix_len != 32 {
                continue;
            }
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let (Some(ip), Some(name)) = (local, names.get(&msg.header.index)) {
                seen.addresses.entry(name.clone()).or_default().insert(ip);
            }
        }
        let device = match req.mode {
            crate::plan::Mode::Tun { kind, .. } => Some(tunnel_module(kind).1),
            crate::plan::Mode::Dr => None,
        };
        for key in sysctl_keys(req, device) {
            let value = read_sysctl(&key)?;
            seen.sysctls.insert(key, value);
        }
        if matches!(req.mode, crate::plan::Mode::Tun { .. }) {
            for m in MODULES {
                if Path::new("/sys/module").join(m).exists() {
                    seen.modules_loaded.insert(m.into());
                } else if module_available(m) {
                    seen.modules_available.insert(m.into());
                }
            }
            if seen.modules_loaded.contains("fou") {
                seen.fou_ports = fou_ports()?;
            }
            for name in links.keys() {
                if decap_pin(name)?.exists() {
                    seen.decap_on.insert(name.clone());
                }
            }
        }
        Ok(seen)
    }

    /// Makes one change.
    pub async fn apply(&self, change: &Change) -> Result<()> {
        match change {
            Change::LoadModule { name } => run(&["modprobe", name]).map(drop),
            Change::CreateDummy { name } => {
                match self
                    .handle
                    .link()
                    .add(LinkDummy::new(name).up().build())
                    .execute()
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(rtnetlink::Error::NetlinkError(m))
                        if m.code.map(|c| -c.get()) == Some(libc::EOPNOTSUPP) =>
                    {
                        bail!(
                            "this kernel has no dummy interfaces (no dummy module); put the VIPs on lo (--interface lo)"
                        )
                    }
                    Err(e) => Err(e).with_context(|| format!("creating dummy interface {name}")),
                }
            }
            Change::SetUp { name } => self.set_up(name, true).await,
            Change::AddAddress { interface, address } => {
                let index = self.index(interface).await?;
                self.handle
                    .address()
                    .add(index, IpAddr::V4(*address), 32)
                    .execute()
                    .await
                    .with_context(|| format!("adding {address}/32 to {interface}"))
            }
            Change::SetSysctl { key, to, .. } => write_sysctl(key, to),
            Change::AddFou { port } => {
                run(&["ip", "fou", "add", "port", &port.to_string(), "gue"]).map(drop)
            }
            Change::AttachDecap {
                interface,
                gue_ports,
            } => attach_decap(interface, gue_ports),
        }
    }

    /// Undoes one change; `Ok(false)` when it was undone already (the address, interface or
    /// pin is gone), so `undo` can be run again after a failure.
    pub async fn revert(&self, revert: &Revert) -> Result<bool> {
        let exists = |name: &str| {
            let name = name.to_owned();
            async move { Ok::<bool, anyhow::Error>(self.links().await?.contains_key(&name)) }
        };
        match revert {
            Revert::UnloadModule(m) => {
                if !Path::new("/sys/module").join(m).exists() {
                    return Ok(false);
                }
                run(&["modprobe", "-r", m]).map(|_| true)
            }
            Revert::DeleteLink(name) => {
                if !exists(name).await? {
                    return Ok(false);
                }
                let index = self.index(name).await?;
                self.handle
                    .link()
                    .del(index)
                    .execute()
                    .await
                    .with_context(|| format!("deleting {name}"))?;
                Ok(true)
            }
            Revert::SetDown(name) => {
                if !exists(name).await? {
                    return Ok(false);
                }
                self.set_up(name, false).await.map(|()| true)
            }
            Revert::DelAddress { interface, address } => {
                if !exists(interface).await? {
                    return Ok(false);
                }
                let index = self.index(interface).await?;
                let msg = AddressMessageBuilder::<Ipv4Addr>::new()
                    .index(index)
                    .address(*address, 32)
                    .build();
                match self.handle.address().del(msg).execute().await {
                    Ok(()) => Ok(true),
                    Err(rtnetlink::Error::NetlinkError(m))
                        if m.code.map(|c| -c.get()) == Some(libc::EADDRNOTAVAIL) =>
                    {
                        Ok(false)
                    }
                    Err(e) => {
                        Err(e).with_context(|| format!("removing {address}/32 from {interface}"))
                    }
                }
            }
            Revert::SetSysctl { key, value } => {
                if !sysctl_path(key).exists() {
                    return Ok(false);
                }
                write_sysctl(key, value).map(|()| true)
            }
            Revert::DelFou(port) => {
                if !fou_ports().unwrap_or_default().contains(port) {
                    return Ok(false);
                }
                run(&["ip", "fou", "del", "port", &port.to_string()]).map(|_| true)
            }
            Revert::DetachDecap(interface) => {
                if !decap_pin(interface)?.exists() {
                    return Ok(false);
                }
                detach_decap(interface).map(|()| true)
            }
        }
    }

    async fn set_up(&self, name: &str, up: bool) -> Result<()> {
        let index = self.index(name).await?;
        let msg = LinkUnspec::new_with_index(index);
        let msg = if up { msg.up() } else { msg.down() };
        self.handle
            .link()
            .set(msg.build())
            .execute()
            .await
            .with_context(|| format!("setting {name} {}", if up { "up" } else { "down" }))
    }
}

/// GUE ports the kernel's fou receives on (`ip fou show`: `port 6080 gue`).
fn fou_ports() -> Result<std::collections::BTreeSet<u16>> {
    let out = run(&["ip", "fou", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("port")).then(|| w.next()?.parse().ok())?
        })
        .collect())
}

fn attach_decap(interface: &str, gue_ports: &[u16]) -> Result<()> {
    let pin = decap_pin(interface)?;
    if let Some(dir) = pin.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let attached = rvs_dataplane::DecapProgram::attach(
        interface,
        &rvs_dataplane::DecapOptions {
            local: Vec::new(),
            gue_ports: gue_ports.to_vec(),
        },
    )
    .with_context(|| format!("attaching rvs's decapsulation program to {interface}"))
    .and_then(|program| {
        program
            .pin(&pin)
            .with_context(|| format!("pinning the decapsulation program at {}", pin.display()))
    });
    if attached.is_err() {
        remove_empty_pin_dirs(&pin);
    }
    attached
}

/// Removes this namespace's pin directory and the top one when nothing is pinned there.
fn remove_empty_pin_dirs(pin: &Path) {
    // remove_dir fails on a directory that still holds pins: exactly what is wanted.
    for dir in pin.ancestors().skip(1).take(2) {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

fn detach_decap(interface: &str) -> Result<()> {
    let pin = decap_pin(interface)?;
    rvs_dataplane::DecapProgram::unpin(&pin).with_context(|| {
        format!(
            "detaching the decapsulation program pinned at {}",
            pin.display()
        )
    })?;
    remove_empty_pin_dirs(&pin);
    Ok(())
}
