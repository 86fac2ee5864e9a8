//! rvs-vrrpd: the Linux I/O layer around rvs-vrrp's [`Node`]: raw VRRP sockets, rtnetlink for interfaces,
//! addresses and the VMAC, AF_PACKET for gratuitous ARP / unsolicited NA, child processes
//! for `vrrp_script` checks and notify commands, and the timers. [`run`] is the entry point
//! (the daemon and `rvs-vrrpd` call it); the published [`Snapshot`] is the state and
//! counters view for operators and the load-balancing tie-in ("am I MASTER for this
//! VIP?").
//!
//! Interface state and the advert source address are polled over rtnetlink every
//! [`POLL_INTERVAL`] (keepalived listens to netlink events instead; polling is simpler and
//! bounded, and 200 ms is far below any Master_Down_Interval).

#![warn(missing_docs)]

mod net;
mod socket;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use net::{Link, Net};
use rvs_vrrp::config::{ConfigError, VipConfig, VrrpConfig};
use rvs_vrrp::machine::{Action, Event, InstanceStatus, Node, State, TimerKind};
use rvs_vrrp::wire::{self, Family};
use socket::{FrameSocket, Received, RecvSocket, SendSocket};

/// How often interface state and source addresses are re-read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Why the VRRP I/O layer cannot run.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The configuration is invalid.
    #[error("invalid VRRP configuration: {0}")]
    Config(#[from] ConfigError),
    /// A configured interface does not exist.
    #[error("interface {0} does not exist")]
    NoInterface(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// Cause.
        source: rtnetlink::Error,
    },
}

/// The published state of every instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// One entry per configured instance, in config order.
    pub instances: Vec<InstanceStatus>,
}

impl Snapshot {
    /// Whether this node is MASTER for `vip` (forward its traffic only then).
    pub fn is_master_for(&self, vip: IpAddr) -> bool {
        self.instances
            .iter()
            .any(|i| i.state == State::Master && i.addresses.contains(&vip))
    }

    /// The state of instance `name`.
    pub fn state_of(&self, name: &str) -> Option<State> {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.state)
    }
}

/// A channel for [`run`]'s snapshots: give the sender to `run`, keep receivers (cheap to
/// clone) wherever the state is needed.
pub fn status_channel() -> (watch::Sender<Snapshot>, watch::Receiver<Snapshot>) {
    watch::channel(Snapshot::default())
}

/// Every instance of `config` in FAULT: what to publish when the I/O layer cannot run
/// at all (an interface missing at start, no raw sockets), so the failure shows in the
/// status and metrics, not only in the log.
pub fn fault_snapshot(config: &VrrpConfig) -> Snapshot {
    let mut instances = Node::new(config).snapshot();
    for i in &mut instances {
        i.state = State::Fault;
    }
    Snapshot { instances }
}

/// Something for the main loop, from the helper tasks.
enum Input {
    Packet(usize, Received),
    /// A `vrrp_script` result: (generation of the script set, script index, success).
    Script(u64, usize, bool),
    /// Instance's socket failed (true) or works again (false).
    SocketFault(usize, bool),
}

/// Per-instance I/O resources.
struct Wire {
    family: Family,
    ifname: String,
    ifindex: u32,
    /// Interface adverts and announcements leave from (the VMAC when configured).
    send_ifname: String,
    send_ifindex: u32,
    vmac: Option<u32>,
    send: SendSocket,
    src: Option<IpAddr>,
}

/// Runs every instance of `config` until `shutdown` completes, publishing state changes
/// on `status`; then resigns (priority-0 advert), removes the addresses, runs the STOP
/// notifications and deletes VMAC interfaces. Needs CAP_NET_ADMIN and CAP_NET_RAW.
pub async fn run(
    config: VrrpConfig,
    shutdown: impl Future<Output = ()>,
    status: watch::Sender<Snapshot>,
) -> Result<(), IoError> {
    run_reloadable(config, shutdown, None, status).await
}

/// [`run`], also taking reloaded configurations (SIGHUP) from `reloads`: each is applied
/// in place by [`Node::reconfigure`] (states kept as keepalived keeps them), when
/// [`Node::can_reconfigure`] says it can be; otherwise it is refused with an error log
/// and the running configuration stays (the caller restarts such instances instead).
pub async fn run_reloadable(
    config: VrrpConfig,
    shutdown: impl Future<Output = ()>,
    mut reloads: Option<mpsc::Receiver<VrrpConfig>>,
    status: watch::Sender<Snapshot>,
) -> Result<(), IoError> {
    config.validate()?;
    let net = Net::new()?;
    let frames = FrameSocket::open()?;
    let all_vips = vips_of(&config);

    let (tx, mut rx) = mpsc::channel::<Input>(1024);
    let mut tasks = JoinSet::new();
    let mut wires = Vec::new();
    let mut cleanup = Cleanup::default();
    let result = async {
        for (i, c) in config.instances.iter().enumerate() {
            let link = net
                .link(&c.interface)
                .await?
                .ok_or_else(|| IoError::NoInterface(c.interface.clone()))?;
            let family = c.family();
            // A VIP left behind by a killed run must not answer while we are BACKUP
            // (keepalived removes them at start too).
            for v in &c.virtual_ipaddress {
                let idx = vip_ifindex(&net, v, &c.interface, link.index).await?;
                net.del_address(idx, v).await?;
            }
            let (send_ifname, send_ifindex, vmac) = if c.use_vmac {
                let name = c.vmac_ifname();
                let idx = net.create_vmac(&name, link.index, c.virtual_mac()).await?;
                cleanup.vmacs.push(idx);
                // As keepalived: the VMAC answers ARP only for its own VIPs and hears
                // the group; the base interface stops answering for addresses it does
                // not hold itself.
                for (ifname, key, value) in [
                    (name.as_str(), "arp_ignore", "1"),
                    (name.as_str(), "accept_local", "1"),
                    (name.as_str(), "rp_filter", "0"),
                    (c.interface.as_str(), "arp_ignore", "1"),
                    (c.interface.as_str(), "arp_filter", "1"),
                    // Not done by keepalived: ARP requests from the base interface (for
                    // replies sourced from a VIP) must not announce the VIP with the
                    // base MAC, or neighbours would bypass the VMAC.
                    (c.interface.as_str(), "arp_announce", "2"),
                ] {
                    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/{key}");
                    if let Err(e) = std::fs::write(&path, value) {
                        tracing::warn!(%path, error = %e, "cannot set sysctl for use_vmac");
                    }
                }
                (name, idx, Some(idx))
            } else {
                (c.interface.clone(), link.index, None)
            };
            // With a VMAC, adverts are received on it too: the macvlan driver hands a
            // multicast frame whose source MAC is one of its own (the peer's VMAC is
            // ours) to that macvlan only, never to the base interface.
            let recv = RecvSocket::open(family, &send_ifname, send_ifindex)?;
            let send = SendSocket::open(family, &send_ifname, send_ifindex)?;
            let tx = tx.clone();
            tasks.spawn(async move {
                // A failing socket puts the instance in FAULT (as keepalived does) until
                // it receives again.
                let mut failing = false;
                loop {
                    match recv.recv().await {
                        Ok(p) => {
                            if failing {
                                failing = false;
                                tracing::info!("VRRP socket receives again");
                                if tx.send(Input::SocketFault(i, false)).await.is_err() {
                                    break;
                                }
                            }
                            if let Some(p) = p
                                && tx.send(Input::Packet(i, p)).await.is_err()
                            {
                                break;
                            }
                        }
                        Err(e) => {
                            if !failing {
                                failing = true;
                                tracing::error!(error = %e, "VRRP receive failed; instance in FAULT");
                                if tx.send(Input::SocketFault(i, true)).await.is_err() {
                                    break;
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
            wires.push(Wire {
                family,
                ifname: c.interface.clone(),
                ifindex: link.index,
                send_ifname,
                send_ifindex,
                vmac,
                send,
                src: None,
            });
        }
        let mut scripts = JoinSet::new();
        let mut generation = 0u64;
        spawn_scripts(&config, generation, &tx, &mut scripts);

        let mut node = Node::new(&config);
        let mut lp = Loop {
            config: config.clone(),
            net: &net,
            frames: &frames,
            wires: &mut wires,
            timers: BTreeMap::new(),
            epoch: Instant::now(),
            links: BTreeMap::new(),
            all_vips,
            socket_fault: vec![false; config.instances.len()],
        };
        lp.poll_links(&mut node, true).await?;
        let actions = node.handle(lp.now(), Event::Start);
        lp.apply(&node, actions).await;
        status.send_replace(Snapshot {
            instances: node.snapshot(),
        });
        tracing::info!(instances = config.instances.len(), "VRRP running");

        tokio::pin!(shutdown);
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Bounded by the shutdown future: the loop ends when it completes.
        loop {
            let next = lp.timers.values().min().copied();
            let sleep = tokio::time::sleep_until(
                next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                _ = &mut shutdown => break,
                _ = sleep, if next.is_some() => {
                    let now = Instant::now();
                    let due: Vec<(usize, TimerKind)> = lp
                        .timers
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(k, _)| *k)
                        .collect();
                    for (instance, kind) in due {
                        lp.timers.remove(&(instance, kind));
                        let actions = node.handle(lp.now(), Event::Timer { instance, kind });
                        lp.apply(&node, actions).await;
                    }
                }
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    let actions = match &input {
                        Input::Packet(instance, p) => node.handle(
                            lp.now(),
                            Event::Packet {
                                instance: *instance,
                                src: p.src,
                                dst: p.dst,
                                ttl: p.ttl,
                                data: &p.data,
                            },
                        ),
                        // A result from before a reload names the old script list.
                        Input::Script(g, _, _) if *g != generation => Vec::new(),
                        Input::Script(_, script, ok) => node.handle(
                            lp.now(),
                            Event::ScriptResult { script: *script, success: *ok },
                        ),
                        Input::SocketFault(instance, fault) => {
                            lp.socket_fault[*instance] = *fault;
                            let addr = if *fault { None } else { lp.wires[*instance].src };
                            node.handle(lp.now(), Event::SourceAddress { instance: *instance, addr })
                        }
                    };
                    lp.apply(&node, actions).await;
                }
                new = recv_reload(&mut reloads) => {
                    let Some(new) = new else {
                        reloads = None;
                        continue;
                    };
                    if let Err(e) = new.validate() {
                        tracing::error!(error = %e, "VRRP reload refused; the running configuration stays");
                        continue;
                    }
                    if !node.can_reconfigure(&new) {
                        tracing::error!("VRRP reload refused: other instances than the running ones (restart these instances instead)");
                        continue;
                    }
                    let actions = node.reconfigure(lp.now(), &new);
                    lp.all_vips = vips_of(&new);
                    lp.config = new;
                    // The scripts restart with the new list (their results are kept by
                    // name in the node).
                    scripts.abort_all();
                    generation += 1;
                    spawn_scripts(&lp.config, generation, &tx, &mut scripts);
                    lp.apply(&node, actions).await;
                    tracing::info!(instances = lp.config.instances.len(), "VRRP configuration reloaded in place");
                }
                _ = poll.tick() => {
                    if let Err(e) = lp.poll_links(&mut node, false).await {
                        tracing::warn!(error = %e, "reading interface state failed");
                    }
                }
            }
            status.send_if_modified(|s| {
                let fresh = node.snapshot();
                let changed = s.instances != fresh;
                s.instances = fresh;
                changed
            });
        }
        tracing::info!("VRRP stopping");
        let actions = node.handle(lp.now(), Event::Shutdown);
        lp.apply(&node, actions).await;
        status.send_replace(Snapshot {
            instances: node.snapshot(),
        });
        Ok(())
    }
    .await;
    tasks.abort_all();
    for idx in cleanup.vmacs {
        if let Err(e) = net.delete_link(idx).await {
            tracing::warn!(error = %e, "deleting VMAC interface failed");
        }
    }
    result
}

/// The next reloaded configuration; never without a reload channel.
async fn recv_reload(reloads: &mut Option<mpsc::Receiver<VrrpConfig>>) -> Option<VrrpConfig> {
    match reloads {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Every virtual address of `config`.
fn vips_of(config: &VrrpConfig) -> Vec<IpAddr> {
    config
        .instances
        .iter()
        .flat_map(|i| i.virtual_ipaddress.iter().map(|v| v.address))
        .collect()
}

/// Starts one task per `vrrp_script` of `config`, each sending its results tagged with
/// `generation`.
fn spawn_scripts(
    config: &VrrpConfig,
    generation: u64,
    tx: &mpsc::Sender<Input>,
    set: &mut JoinSet<()>,
) {
    for (s, sc) in config.scripts.iter().enumerate() {
        let tx = tx.clone();
        let argv = sc.script.clone();
        let interval = sc.interval;
        let timeout = sc.timeout.unwrap_or(sc.interval);
        let name = sc.name.clone();
        set.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let ok = run_check(&argv, timeout).await;
                tracing::trace!(script = %name, ok, "vrrp_script result");
                if tx.send(Input::Script(generation, s, ok)).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[derive(Default)]
struct Cleanup {
    vmacs: Vec<u32>,
}

/// The interface index a VIP goes on: its `dev`, else the instance's interface.
async fn vip_ifindex(
    net: &Net,
    vip: &VipConfig,
    default: &str,
    default_index: u32,
) -> Result<u32, IoError> {
    match vip.dev.as_deref() {
        Some(dev) if dev != default => Ok(net
            .link(dev)
            .await?
            .ok_or_else(|| IoError::NoInterface(dev.to_owned()))?
            .index),
        _ => Ok(default_index),
    }
}

/// Runs a check command with a timeout; success is exit status 0 in time.
async fn run_check(argv: &[String], timeout: Duration) -> bool {
    let Some((program, args)) = argv.split_first() else {
        return false;
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(command = %program, error = %e, "cannot run vrrp_script");
            return false;
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!(command = %program, ?timeout, "vrrp_script timed out");
            false
        }
    }
}

/// Starts a notify command and reaps it in the background (never waited for).
fn spawn_notify(argv: Vec<String>) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn();
    match child {
        Ok(mut child) => {
            let line = Arc::new(argv.join(" "));
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(s) if s.success() => {}
                    Ok(s) => tracing::warn!(command = %line, status = %s, "notify command failed"),
                    Err(e) => tracing::warn!(command = %line, error = %e, "notify command"),
                }
            });
        }
        Err(e) => tracing::warn!(command = %program, error = %e, "cannot run notify command"),
    }
}

/// The main loop's state.
struct Loop<'a> {
    config: VrrpConfig,
    net: &'a Net,
    frames: &'a FrameSocket,
    wires: &'a mut Vec<Wire>,
    timers: BTreeMap<(usize, TimerKind), Instant>,
    epoch: Instant,
    links: BTreeMap<String, Link>,
    all_vips: Vec<IpAddr>,
    /// Instances whose socket fails (held in FAULT through a missing source address).
    socket_fault: Vec<bool>,
}

impl Loop<'_> {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.epoch)
    }

    /// Re-reads every interface the config names and every instance's source address,
    /// feeding changes to the node (all of them when `initial`).
    async fn poll_links(&mut self, node: &mut Node, initial: bool) -> Result<(), IoError> {
        let mut names: Vec<String> = Vec::new();
        for c in &self.config.instances {
            names.push(c.interface.clone());
            names.extend(c.track_interface.iter().map(|t| t.name.clone()));
        }
        names.sort();
        names.dedup();
        for name in names {
            let link = self.net.link(&name).await?;
            let up = link.as_ref().is_some_and(|l| l.up);
            let old = self.links.get(&name).map(|l| l.up);
            if initial || old != Some(up) {
                if !initial {
                    tracing::info!(interface = %name, up, "interface state changed");
                }
                let actions = node.handle(self.now(), Event::Interface { name: &name, up });
                self.apply(node, actions).await;
            }
            match link {
                Some(l) => {
                    self.links.insert(name, l);
                }
                None => {
                    self.links.insert(
                        name,
                        Link {
                            index: 0,
                            mac: None,
                            up: false,
                        },
                    );
                }
            }
        }
        for i in 0..self.wires.len() {
            let c = &self.config.instances[i];
            let src = match c.unicast_src_ip {
                Some(a) => Some(a),
                None => {
                    let w = &self.wires[i];
                    self.net
                        .source_address(w.ifindex, w.family, &self.all_vips)
                        .await?
                }
            };
            if initial || src != self.wires[i].src {
                self.wires[i].src = src;
                if !initial {
                    tracing::info!(instance = %c.name, source = ?src, "advert source address changed");
                }
                let addr = if self.socket_fault[i] { None } else { src };
                let actions = node.handle(self.now(), Event::SourceAddress { instance: i, addr });
                self.apply(node, actions).await;
            }
        }
        Ok(())
    }

    /// Carries out the node's actions in order.
    async fn apply(&mut self, node: &Node, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send {
                    instance,
                    dst,
                    data,
                } => {
                    let w = &self.wires[instance];
                    let Some(src) = w.src else { continue };
                    if let Err(e) = w.send.send(src, dst, &data) {
                        tracing::warn!(instance = %self.config.instances[instance].name, %dst, error = %e, "sending advert failed");
                    }
                }
                Action::AddAddresses { instance } => self.addresses(instance, true).await,
                Action::RemoveAddresses { instance } => self.addresses(instance, false).await,
                Action::RemoveStaleAddresses { instance, vips } => {
                    self.remove_stale(instance, &vips).await
                }
                Action::Announce { instance, repeat } => self.announce(instance, repeat).await,
                Action::ArmTimer { instance, kind, at } => {
                    self.timers.insert((instance, kind), self.epoch + at);
                }
                Action::DisarmTimer { instance, kind } => {
                    self.timers.remove(&(instance, kind));
                }
                Action::Notify { argv } => spawn_notify(argv),
                Action::StateChanged { instance, from, to } => {
                    let c = &self.config.instances[instance];
                    tracing::info!(
                        instance = %c.name,
                        %from,
                        %to,
                        priority = node.effective_priority(instance).unwrap_or(0),
                        "state change"
                    );
                }
            }
        }
    }

    /// Removes addresses a reload took from instance `instance`.
    async fn remove_stale(&mut self, instance: usize, vips: &[VipConfig]) {
        let c = &self.config.instances[instance];
        let w = &self.wires[instance];
        let (dflt_name, dflt_idx) = match w.vmac {
            Some(idx) => (w.send_ifname.as_str(), idx),
            None => (w.ifname.as_str(), w.ifindex),
        };
        for v in vips {
            let result = match vip_ifindex(self.net, v, dflt_name, dflt_idx).await {
                Ok(idx) => self.net.del_address(idx, v).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    tracing::info!(instance = %c.name, vip = %v, "virtual address removed by reload")
                }
                Err(e) => {
                    tracing::warn!(instance = %c.name, error = %e, "virtual address removal failed")
                }
            }
        }
    }

    async fn addresses(&mut self, instance: usize, add: bool) {
        let c = &self.config.instances[instance];
        let w = &self.wires[instance];
        for v in &c.virtual_ipaddress {
            // With use_vmac the VIPs live on the VMAC unless a dev says otherwise.
            let (dflt_name, dflt_idx) = match w.vmac {
                Some(idx) => (w.send_ifname.as_str(), idx),
                None => (w.ifname.as_str(), w.ifindex),
            };
            let result = match vip_ifindex(self.net, v, dflt_name, dflt_idx).await {
                Ok(idx) if add => self.net.add_address(idx, v).await,
                Ok(idx) => self.net.del_address(idx, v).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => tracing::debug!(instance = %c.name, vip = %v, add, "virtual address"),
                Err(e) => {
                    tracing::warn!(instance = %c.name, error = %e, "virtual address change failed")
                }
            }
        }
    }

    /// Sends `repeat` gratuitous ARPs / unsolicited NAs per VIP, from the interface the
    /// VIP is on and with its MAC (the virtual MAC with use_vmac).
    async fn announce(&mut self, instance: usize, repeat: u32) {
        let c = &self.config.instances[instance];
        let w = &self.wires[instance];
        for v in &c.virtual_ipaddress {
            let ifname = match (&v.dev, w.vmac) {
                (Some(d), _) => d.clone(),
                (None, Some(_)) => w.send_ifname.clone(),
                (None, None) => w.ifname.clone(),
            };
            let link = match self.net.link(&ifname).await {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "gratuitous ARP: interface lookup failed");
                    continue;
                }
            };
            let Some(mac) = link.mac else { continue };
            let frame: Vec<u8> = match v.address {
                IpAddr::V4(a) => wire::gratuitous_arp(mac, a).to_vec(),
                IpAddr::V6(a) => {
                    let src = match self.net.source_address(link.index, Family::V6, &[]).await {
                        Ok(Some(IpAddr::V6(s))) => s,
                        _ => match w.src {
                            Some(IpAddr::V6(s)) => s,
                            _ => continue,
                        },
                    };
                    wire::unsolicited_na(mac, src, a).to_vec()
                }
            };
            for _ in 0..repeat.min(1000) {
                if let Err(e) = self.frames.send(link.index, &frame) {
                    tracing::warn!(instance = %c.name, vip = %v.address, error = %e, "sending gratuitous ARP/NA failed");
                    break;
                }
            }
        }
        tracing::debug!(instance = %c.name, repeat, "announced virtual addresses");
        let _ = &w.send_ifindex;
    }
}
