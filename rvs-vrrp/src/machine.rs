//! The VRRP state machine (RFC 3768 §6 / RFC 5798 §6) for every instance of one node,
//! with keepalived's additions: tracked scripts and interfaces changing priority or
//! forcing FAULT, sync groups whose members change state together, notify commands.
//!
//! [`Node`] is sans-I/O: it takes [`Event`]s stamped with a monotonic time (a
//! [`Duration`] since any fixed epoch, so tests drive it with a fake clock) and returns
//! [`Action`]s for the I/O layer: packets to send, addresses to add or remove, gratuitous
//! ARPs / NAs, timers to arm, commands to run.
//!
//! Timers: each instance has one protocol timer (Adver_Timer while MASTER,
//! Master_Down_Timer while BACKUP) and one announcement timer (the delayed second burst of
//! gratuitous ARPs and the periodic refresh). Arming a timer replaces the previous one of
//! the same kind; a [`Event::Timer`] that arrives before the node's own deadline (a stale
//! one) is ignored.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::config::{InitialState, VipConfig, VrrpConfig, VrrpInstanceConfig};
use crate::wire::{Auth, Family, Packet, Repr, TTL, TYPE_ADVERTISEMENT, Version, WireError};

/// An instance's protocol state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Not started yet, or stopped.
    Init,
    /// Listening to a master; takes over when it goes quiet.
    Backup,
    /// Holding the virtual addresses and advertising.
    Master,
    /// A tracked interface or script (or the instance's own interface) is down.
    Fault,
}

impl State {
    /// keepalived's spelling, as passed to notify scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of an instance's two timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Adver_Timer (MASTER) or Master_Down_Timer (BACKUP).
    Protocol,
    /// Delayed or periodic gratuitous ARP / NA burst (MASTER).
    Announce,
}

/// An input to the node.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Start every instance (after the initial interface and address events).
    Start,
    /// A VRRP datagram received on instance `instance`'s socket.
    Packet {
        /// Instance index.
        instance: usize,
        /// IP source address.
        src: IpAddr,
        /// IP destination address.
        dst: IpAddr,
        /// IPv4 TTL or IPv6 hop limit it arrived with.
        ttl: u8,
        /// The VRRP message (after the IP header).
        data: &'a [u8],
    },
    /// A timer armed by [`Action::ArmTimer`] fired.
    Timer {
        /// Instance index.
        instance: usize,
        /// Which timer.
        kind: TimerKind,
    },
    /// A run of `vrrp_script` number `script` (index in the config) finished.
    ScriptResult {
        /// Script index.
        script: usize,
        /// Exit status 0 (and within the timeout).
        success: bool,
    },
    /// An interface went up or down (interfaces never reported count as up).
    Interface {
        /// Interface name.
        name: &'a str,
        /// Whether it is up (administratively and with carrier).
        up: bool,
    },
    /// The address instance `instance` sends from changed (the interface's primary
    /// address, or `unicast_src_ip`); `None` while it has none (the instance is in FAULT).
    SourceAddress {
        /// Instance index.
        instance: usize,
        /// The address.
        addr: Option<IpAddr>,
    },
    /// Stop: masters resign with a priority-0 advert and release their addresses.
    Shutdown,
}

/// An output for the I/O layer, in the order they must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `data` (a VRRP message) from the instance's socket to `dst` with TTL 255.
    Send {
        /// Instance index.
        instance: usize,
        /// Destination: the multicast group or a unicast peer.
        dst: IpAddr,
        /// The advertisement, checksummed for this destination.
        data: Vec<u8>,
    },
    /// Add the instance's virtual addresses (and create its VMAC if configured).
    AddAddresses {
        /// Instance index.
        instance: usize,
    },
    /// Remove the instance's virtual addresses.
    RemoveAddresses {
        /// Instance index.
        instance: usize,
    },
    /// Remove these addresses, which the instance held under its previous configuration
    /// and the reloaded one no longer has (see [`Node::reconfigure`]).
    RemoveStaleAddresses {
        /// Instance index.
        instance: usize,
        /// The addresses, as the previous configuration had them.
        vips: Vec<VipConfig>,
    },
    /// Send `repeat` gratuitous ARPs (IPv4) or unsolicited NAs (IPv6) per virtual address.
    Announce {
        /// Instance index.
        instance: usize,
        /// How many per address.
        repeat: u32,
    },
    /// Fire [`Event::Timer`] at `at` (replacing this kind's previous timer).
    ArmTimer {
        /// Instance index.
        instance: usize,
        /// Which timer.
        kind: TimerKind,
        /// When.
        at: Duration,
    },
    /// Cancel a timer.
    DisarmTimer {
        /// Instance index.
        instance: usize,
        /// Which timer.
        kind: TimerKind,
    },
    /// Run a notify command (argv, no shell) and do not wait for it.
    Notify {
        /// The command and its arguments.
        argv: Vec<String>,
    },
    /// An instance changed state (for logs and the published state).
    StateChanged {
        /// Instance index.
        instance: usize,
        /// Old state.
        from: State,
        /// New state.
        to: State,
    },
}

/// Per-instance counters (the RFC 6527 statistics keepalived keeps, plus a few).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Valid adverts received.
    pub adverts_received: u64,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Transitions to MASTER.
    pub became_master: u64,
    /// Transitions out of MASTER.
    pub released_master: u64,
    /// Valid adverts received with priority 0.
    pub priority_zero_received: u64,
    /// Adverts sent with priority 0.
    pub priority_zero_sent: u64,
    /// Dropped: TTL / hop limit not 255.
    pub ttl_errors: u64,
    /// Dropped: version not the instance's (or not 2/3).
    pub version_errors: u64,
    /// Dropped: checksum did not verify.
    pub checksum_errors: u64,
    /// Dropped: shorter or longer than its header says.
    pub length_errors: u64,
    /// Dropped: type not ADVERTISEMENT.
    pub type_errors: u64,
    /// Dropped: VRID of another virtual router on this interface.
    pub vrid_errors: u64,
    /// Dropped: auth type not 0, 1 or 2.
    pub invalid_auth_type: u64,
    /// Dropped: auth type other than configured.
    pub auth_type_mismatch: u64,
    /// Dropped: wrong password.
    pub auth_failures: u64,
    /// Dropped (version 2): advertisement interval other than configured.
    pub interval_errors: u64,
    /// Dropped: address list other than configured.
    pub address_list_errors: u64,
}

/// What an operator (rvsadm, metrics) sees of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// VRID.
    pub vrid: u8,
    /// Protocol version.
    pub version: u8,
    /// Current state.
    pub state: State,
    /// Configured priority.
    pub base_priority: u8,
    /// Priority after tracked scripts and interfaces.
    pub effective_priority: u8,
    /// Address of the current master, when BACKUP and one was heard.
    pub master: Option<IpAddr>,
    /// The virtual addresses.
    pub addresses: Vec<IpAddr>,
    /// Sync group, if any.
    pub sync_group: Option<String>,
    /// Time of the last state change (node clock).
    pub last_transition: Duration,
    /// Counters.
    pub counters: Counters,
}

/// One instance's protocol state.
#[derive(Debug)]
struct Instance {
    cfg: VrrpInstanceConfig,
    version: Version,
    family: Family,
    vips: Vec<IpAddr>,
    auth: Auth,
    group: Option<usize>,
    state: State,
    effective_priority: u8,
    fault: bool,
    master_adver_int: Duration,
    src: Option<IpAddr>,
    protocol_at: Option<Duration>,
    announce_at: Option<Duration>,
    announce_refresh: bool,
    preempt_at: Option<Duration>,
    want_master: bool,
    master: Option<IpAddr>,
    last_transition: Duration,
    counters: Counters,
    drop_log: DropLog,
}

/// How often a dropped-advert log line of one reason repeats for one instance: a peer
/// with a wrong password or a broken sender sends one a second, and the counters already
/// count each.
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Rate limit of the dropped-advert log lines of one instance, per reason: the first is
/// logged at once, the next after [`DROP_LOG_EVERY`] with the number left out since.
#[derive(Debug, Default)]
struct DropLog {
    /// (reason, when last logged, drops not logged since).
    reasons: Vec<(&'static str, Duration, u64)>,
}

impl DropLog {
    /// Whether a drop for `reason` at `now` is logged: `Some(left out since the last line)`.
    fn admit(&mut self, now: Duration, reason: &'static str) -> Option<u64> {
        match self.reasons.iter_mut().find(|(r, _, _)| *r == reason) {
            None => {
                self.reasons.push((reason, now, 0));
                Some(0)
            }
            Some((_, last, left_out)) if now.saturating_sub(*last) >= DROP_LOG_EVERY => {
                let n = *left_out;
                *last = now;
                *left_out = 0;
                Some(n)
            }
            Some((_, _, left_out)) => {
                *left_out += 1;
                None
            }
        }
    }
}

/// Logs a dropped advert of instance `$inst` unless [`DropLog`] holds it back.
macro_rules! log_drop {
    ($inst:expr, $now:expr, $msg:literal, $($field:tt)*) => {
        if let Some(suppressed) = $inst.drop_log.admit($now, $msg) {
            tracing::info!(instance = %$inst.cfg.name, $($field)*, suppressed, $msg);
        }
    };
}

impl Instance {
    fn adver_int(&self) -> Duration {
        self.cfg.advert_int
    }

    /// Skew_Time for priority weight `p` (256 − priority): RFC 3768 (`p/256` seconds,
    /// independent of the interval) or RFC 5798 (`p × Master_Adver_Interval / 256`, in
    /// centiseconds).
    fn skew(&self, p: u32) -> Duration {
        match self.version {
            Version::V2 => Duration::from_micros(u64::from(p) * 1_000_000 / 256),
            Version::V3 => {
                let cs = self.master_adver_int.as_millis() as u64 / 10;
                Duration::from_millis(u64::from(p) * cs / 256 * 10)
            }
        }
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    fn master_down_interval(&self) -> Duration {
        3 * self.master_adver_int + self.skew(256 - u32::from(self.effective_priority))
    }

    fn multicast(&self) -> bool {
        self.cfg.unicast_peer.is_empty()
    }
}

#[derive(Debug)]
struct ScriptState {
    ok: bool,
    weight: i32,
    rise: u32,
    fall: u32,
    streak: u32,
}

#[derive(Debug)]
struct Group {
    name: String,
    members: Vec<usize>,
    state: State,
    notify_master: Option<Vec<String>>,
    notify_backup: Option<Vec<String>>,
    notify_fault: Option<Vec<String>>,
    notify_stop: Option<Vec<String>>,
    notify: Option<Vec<String>>,
}

/// Every VRRP instance of one node, driven by events (see the module docs).
#[derive(Debug)]
pub struct Node {
    instances: Vec<Instance>,
    scripts: Vec<ScriptState>,
    script_names: BTreeMap<String, usize>,
    groups: Vec<Group>,
    interfaces: BTreeMap<String, bool>,
    started: bool,
    stopped: bool,
}

impl Node {
    /// A node for `config` (which should have passed [`VrrpConfig::validate`]; unknown
    /// script or instance names are ignored here).
    pub fn new(config: &VrrpConfig) -> Node {
        let scripts = config
            .scripts
            .iter()
            .map(|s| ScriptState {
                ok: !s.init_fail,
                weight: s.weight,
                rise: s.rise.max(1),
                fall: s.fall.max(1),
                streak: 0,
            })
            .collect();
        let script_names = config
            .scripts
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let mut instances: Vec<Instance> = config
            .instances
            .iter()
            .map(|c| {
                let version = config.version_of(c);
                let auth = match &c.authentication {
                    Some(a) if version == Version::V2 => Auth::pass(&a.auth_pass),
                    _ => Auth::None,
                };
                Instance {
                    version,
                    family: c.family(),
                    vips: c.virtual_ipaddress.iter().map(|v| v.address).collect(),
                    auth,
                    group: None,
                    state: State::Init,
                    effective_priority: c.priority,
                    fault: false,
                    master_adver_int: c.advert_int,
                    src: c.unicast_src_ip,
                    protocol_at: None,
                    announce_at: None,
                    announce_refresh: false,
                    preempt_at: None,
                    want_master: false,
                    master: None,
                    last_transition: Duration::ZERO,
                    counters: Counters::default(),
                    drop_log: DropLog::default(),
                    cfg: c.clone(),
                }
            })
            .collect();
        let mut groups = Vec::new();
        for g in &config.sync_groups {
            let members: Vec<usize> = g
                .group
                .iter()
                .filter_map(|m| instances.iter().position(|i| &i.cfg.name == m))
                .collect();
            for &m in &members {
                instances[m].group = Some(groups.len());
            }
            groups.push(Group {
                name: g.name.clone(),
                members,
                state: State::Init,
                notify_master: g.notify_master.clone(),
                notify_backup: g.notify_backup.clone(),
                notify_fault: g.notify_fault.clone(),
                notify_stop: g.notify_stop.clone(),
                notify: g.notify.clone(),
            });
        }
        Node {
            instances,
            scripts,
            script_names,
            groups,
            interfaces: BTreeMap::new(),
            started: false,
            stopped: false,
        }
    }

    /// Number of instances (indices are those of the config's `vrrp_instance` list).
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether there are no instances.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The state of instance `i`.
    pub fn state(&self, i: usize) -> Option<State> {
        self.instances.get(i).map(|x| x.state)
    }

    /// The effective priority of instance `i`.
    pub fn effective_priority(&self, i: usize) -> Option<u8> {
        self.instances.get(i).map(|x| x.effective_priority)
    }

    /// The counters of instance `i`.
    pub fn counters(&self, i: usize) -> Option<Counters> {
        self.instances.get(i).map(|x| x.counters)
    }

    /// The state of sync group `g` (index in the config's list).
    pub fn group_state(&self, g: usize) -> Option<State> {
        self.groups.get(g).map(|x| x.state)
    }

    /// The Master_Down_Interval instance `i` uses now.
    pub fn master_down_interval(&self, i: usize) -> Option<Duration> {
        self.instances.get(i).map(Instance::master_down_interval)
    }

    /// Whether some instance in MASTER state holds `vip` (the load-balancing tie-in: a
    /// node forwards a VIP's traffic only while this is true).
    pub fn is_master_for(&self, vip: IpAddr) -> bool {
        self.instances
            .iter()
            .any(|i| i.state == State::Master && i.vips.contains(&vip))
    }

    /// What an operator sees of every instance.
    pub fn snapshot(&self) -> Vec<InstanceStatus> {
        self.instances
            .iter()
            .map(|i| InstanceStatus {
                name: i.cfg.name.clone(),
                interface: i.cfg.interface.clone(),
                vrid: i.cfg.virtual_router_id,
                version: i.version.number(),
                state: i.state,
                base_priority: i.cfg.priority,
                effective_priority: i.effective_priority,
                master: match i.state {
                    State::Master => i.src,
                    State::Backup => i.master,
                    _ => None,
                },
                addresses: i.vips.clone(),
                sync_group: i.group.map(|g| self.groups[g].name.clone()),
                last_transition: i.last_transition,
                counters: i.counters,
            })
            .collect()
    }

    /// Handles one event at time `now` and returns what to do, in order.
    pub fn handle(&mut self, now: Duration, event: Event<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        match event {
            Event::Start => self.start(now, &mut out),
            Event::Packet {
                instance,
                src,
                dst,
                ttl,
                data,
            } => {
                if instance < self.instances.len() {
                    self.on_packet(now, instance, src, dst, ttl, data, &mut out);
                }
            }
            Event::Timer { instance, kind } => {
                if instance < self.instances.len() {
                    self.on_timer(now, instance, kind, &mut out);
                }
            }
            Event::ScriptResult { script, success } => {
                self.on_script(now, script, success, &mut out)
            }
            Event::Interface { name, up } => {
                let old = self.interfaces.insert(name.to_owned(), up);
                if old != Some(up) && self.started {
                    for i in 0..self.instances.len() {
                        let c = &self.instances[i].cfg;
                        if c.interface == name || c.track_interface.iter().any(|t| t.name == name) {
                            self.reevaluate(now, i, &mut out);
                        }
                    }
                }
            }
            Event::SourceAddress { instance, addr } => {
                if let Some(inst) = self.instances.get_mut(instance) {
                    let addr = inst.cfg.unicast_src_ip.or(addr);
                    if inst.src != addr {
                        inst.src = addr;
                        if self.started {
                            self.reevaluate(now, instance, &mut out);
                        }
                    }
                }
            }
            Event::Shutdown => self.shutdown(now, &mut out),
        }
        out
    }

    /// Whether [`Node::reconfigure`] can take `config` in place: the same instances in the
    /// same order, each the same virtual router as keepalived matches them on reload
    /// (VRID, family, interface, unicast or multicast, `unicast_src_ip`, VMAC), under
    /// the same name. Otherwise the I/O around the node has to be rebuilt (sockets, VMAC
    /// interfaces), and the node with it.
    pub fn can_reconfigure(&self, config: &VrrpConfig) -> bool {
        self.instances.len() == config.instances.len()
            && self
                .instances
                .iter()
                .zip(&config.instances)
                .all(|(old, new)| old.cfg.same_router(new) && old.version == config.version_of(new))
    }

    /// Applies a reloaded configuration (SIGHUP) as keepalived 2.2.7 does, keeping each
    /// instance's state: a MASTER stays MASTER (its adverts carry the new priority,
    /// addresses and interval at once; it drops the addresses the new file no longer has,
    /// adds the new ones and announces them only when some were added); a BACKUP stays
    /// BACKUP with its down timer restarted; tracked scripts keep their results by name
    /// and the priorities are recomputed; a fault found now, or cleared, changes the state
    /// as at start. No state change, notification or gratuitous ARP for an instance whose
    /// state holds. Like keepalived, every MASTER first sends one advert under the old
    /// configuration. `config` must pass [`Node::can_reconfigure`] (otherwise nothing is
    /// changed and nothing returned).
    pub fn reconfigure(&mut self, now: Duration, config: &VrrpConfig) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.can_reconfigure(config) || self.stopped {
            return out;
        }
        let mut new = Node::new(config);
        new.interfaces = std::mem::take(&mut self.interfaces);
        if !self.started {
            *self = new;
            return out;
        }
        // keepalived's sigreload_vrrp: each MASTER advertises once before reloading.
        for i in 0..self.instances.len() {
            if self.instances[i].state == State::Master {
                let prio = self.instances[i].effective_priority;
                self.send_advert(i, prio, &mut out);
            }
        }
        // Scripts keep their results (keepalived's clear_diff_script); new ones start as
        // at start.
        for (name, &n) in &new.script_names {
            if let Some(&o) = self.script_names.get(name) {
                new.scripts[n].ok = self.scripts[o].ok;
            }
        }
        new.started = true;
        let old_groups: BTreeMap<String, State> = self
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.state))
            .collect();
        let old = std::mem::take(&mut self.instances);
        *self = new;
        for (i, o) in old.into_iter().enumerate() {
            let inst = &mut self.instances[i];
            inst.state = o.state;
            inst.src = o.src;
            inst.master = o.master;
            inst.last_transition = o.last_transition;
            inst.counters = o.counters;
            inst.drop_log = o.drop_log;
            inst.announce_at = o.announce_at;
            inst.announce_refresh = o.announce_refresh;
            inst.fault = o.state == State::Fault;
            let (fault, prio) = self.compute(i);
            self.instances[i].effective_priority = prio;
            if o.state == State::Master {
                // keepalived's clear_diff_vrrp_vip and restore_vrrp_state.
                let stale: Vec<VipConfig> = o
                    .cfg
                    .virtual_ipaddress
                    .iter()
                    .filter(|v| !self.instances[i].cfg.virtual_ipaddress.contains(v))
                    .cloned()
                    .collect();
                if !stale.is_empty() {
                    out.push(Action::RemoveStaleAddresses {
                        instance: i,
                        vips: stale,
                    });
                }
                let added = self.instances[i]
                    .cfg
                    .virtual_ipaddress
                    .iter()
                    .any(|v| !o.cfg.virtual_ipaddress.contains(v));
                if added && !fault {
                    out.push(Action::AddAddresses { instance: i });
                    // keepalived announces every address when some were added.
                    let repeat = self.instances[i].cfg.garp_master_repeat;
                    out.push(Action::Announce {
                        instance: i,
                        repeat,
                    });
                }
            }
            if fault {
                if o.state != State::Fault {
                    self.instances[i].fault = true;
                    // keepalived's vrrp_init_state after a reload: the addresses go, no
                    // priority-0 advert.
                    self.enter_with(now, i, State::Fault, false, &mut out);
                }
                continue;
            }
            self.instances[i].fault = false;
            match o.state {
                State::Master => {
                    if let Some(at) = self.instances[i].announce_at {
                        self.arm(i, TimerKind::Announce, at, &mut out);
                    }
                    // reload_master: the next advert goes out at once.
                    let prio = self.instances[i].effective_priority;
                    self.send_advert(i, prio, &mut out);
                    let adv = self.instances[i].adver_int();
                    self.arm(i, TimerKind::Protocol, now + adv, &mut out);
                }
                State::Backup => {
                    let wait = self.instances[i].master_down_interval();
                    self.arm(i, TimerKind::Protocol, now + wait, &mut out);
                }
                State::Fault | State::Init => {
                    // Out of FAULT now: as at start.
                    self.instances[i].state = State::Fault;
                    let c = &self.instances[i].cfg;
                    if c.priority == 255 && self.instances[i].group.is_none() {
                        self.enter(now, i, State::Master, &mut out);
                    } else {
                        let inst = &self.instances[i];
                        let wait = if inst.cfg.state == InitialState::Master {
                            inst.master_adver_int + inst.skew(1)
                        } else {
                            inst.master_down_interval()
                        };
                        self.enter_backup(now, i, wait, &mut out);
                    }
                }
            }
        }
        // Sync groups: MASTER only when every member kept MASTER, FAULT when one is in
        // FAULT, else BACKUP with the members that were MASTER giving it up; notified only
        // when the group's state is not the one it had (keepalived's state_same_at_reload).
        for g in 0..self.groups.len() {
            let members = self.groups[g].members.clone();
            let state = if members
                .iter()
                .any(|&m| self.instances[m].state == State::Fault)
            {
                State::Fault
            } else if members
                .iter()
                .all(|&m| self.instances[m].state == State::Master)
            {
                State::Master
            } else {
                State::Backup
            };
            self.groups[g].state = state;
            if old_groups.get(&self.groups[g].name) != Some(&state) {
                self.notify_group(g, &mut out);
            }
            for m in members {
                let current = self.instances[m].state;
                if state == State::Fault && current != State::Fault {
                    self.enter(now, m, State::Fault, &mut out);
                } else if state == State::Backup && current == State::Master {
                    // keepalived waits one interval for another master before asking.
                    let inst = &self.instances[m];
                    let wait = inst.master_adver_int + inst.skew(1);
                    self.enter_backup(now, m, wait, &mut out);
                }
            }
        }
        out
    }

    /// Looks up a script's index by name.
    pub fn script_index(&self, name: &str) -> Option<usize> {
        self.script_names.get(name).copied()
    }

    fn iface_up(&self, name: &str) -> bool {
        self.interfaces.get(name).copied().unwrap_or(true)
    }

    /// Recomputes fault and effective priority of instance `i` from its interface,
    /// source address, tracked interfaces and scripts.
    fn compute(&self, i: usize) -> (bool, u8) {
        let inst = &self.instances[i];
        let mut fault = !self.iface_up(&inst.cfg.interface) || inst.src.is_none();
        let mut delta: i32 = 0;
        let mut apply = |ok: bool, weight: i32| {
            if weight == 0 {
                fault |= !ok;
            } else if (weight > 0) == ok {
                delta += weight;
            }
        };
        for t in &inst.cfg.track_interface {
            apply(self.iface_up(&t.name), t.weight);
        }
        for t in &inst.cfg.track_script {
            if let Some(s) = self.script_index(&t.name).and_then(|x| self.scripts.get(x)) {
                apply(s.ok, t.weight.unwrap_or(s.weight));
            }
        }
        let base = inst.cfg.priority;
        let prio = if base == 255 {
            // The address owner's priority is not changed by weights (keepalived too).
            255
        } else {
            (i32::from(base) + delta).clamp(1, 254) as u8
        };
        (fault, prio)
    }

    fn start(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.started {
            return;
        }
        self.started = true;
        for i in 0..self.instances.len() {
            let (fault, prio) = self.compute(i);
            let inst = &mut self.instances[i];
            inst.effective_priority = prio;
            inst.fault = fault;
        }
        for g in 0..self.groups.len() {
            let any_fault = self.groups[g]
                .members
                .iter()
                .any(|&m| self.instances[m].fault);
            self.groups[g].state = if any_fault {
                State::Fault
            } else {
                State::Backup
            };
            self.notify_group(g, out);
        }
        for i in 0..self.instances.len() {
            let inst = &self.instances[i];
            let group_fault = inst
                .group
                .is_some_and(|g| self.groups[g].state == State::Fault);
            if inst.fault || group_fault {
                self.enter(now, i, State::Fault, out);
            } else if inst.cfg.priority == 255 && inst.group.is_none() {
                self.enter(now, i, State::Master, out);
            } else {
                // keepalived: `state MASTER` waits one interval (plus the smallest skew)
                // for a running master before taking over; BACKUP waits the full
                // Master_Down_Interval. An owner in a sync group asks at once.
                let wait = if inst.cfg.priority == 255 {
                    Duration::ZERO
                } else if inst.cfg.state == InitialState::Master {
                    inst.master_adver_int + inst.skew(1)
                } else {
                    inst.master_down_interval()
                };
                self.enter_backup(now, i, wait, out);
            }
        }
    }

    fn shutdown(&mut self, now: Duration, out: &mut Vec<Action>) {
        for i in 0..self.instances.len() {
            let from = self.instances[i].state;
            if from == State::Master {
                self.send_advert(i, 0, out);
                out.push(Action::RemoveAddresses { instance: i });
                self.instances[i].counters.released_master += 1;
            }
            out.push(Action::DisarmTimer {
                instance: i,
                kind: TimerKind::Protocol,
            });
            out.push(Action::DisarmTimer {
                instance: i,
                kind: TimerKind::Announce,
            });
            let inst = &mut self.instances[i];
            inst.protocol_at = None;
            inst.announce_at = None;
            inst.state = State::Init;
            inst.last_transition = now;
            if from != State::Init {
                out.push(Action::StateChanged {
                    instance: i,
                    from,
                    to: State::Init,
                });
            }
            let c = &self.instances[i].cfg;
            push_notify(out, c.notify_stop.as_deref(), None);
            push_notify(
                out,
                c.notify.as_deref(),
                Some(["INSTANCE", &c.name, "STOP", &c.priority.to_string()]),
            );
        }
        for g in &self.groups {
            push_notify(out, g.notify_stop.as_deref(), None);
            push_notify(
                out,
                g.notify.as_deref(),
                Some(["GROUP", &g.name, "STOP", "0"]),
            );
        }
        self.stopped = true;
    }

    /// Sends an advert with `priority` to the multicast group or every unicast peer.
    fn send_advert(&mut self, i: usize, priority: u8, out: &mut Vec<Action>) {
        let inst = &mut self.instances[i];
        let Some(src) = inst.src else {
            return;
        };
        let repr = Repr {
            version: inst.version,
            vrid: inst.cfg.virtual_router_id,
            priority,
            adver_int: inst.cfg.adver_int_field(inst.version),
            auth: inst.auth.clone(),
            addresses: inst.vips.clone(),
        };
        let dsts: Vec<IpAddr> = if inst.multicast() {
            vec![inst.family.multicast()]
        } else {
            inst.cfg.unicast_peer.clone()
        };
        for dst in dsts {
            out.push(Action::Send {
                instance: i,
                dst,
                data: repr.to_bytes(src, dst),
            });
        }
        inst.counters.adverts_sent += 1;
        if priority == 0 {
            inst.counters.priority_zero_sent += 1;
        }
    }

    fn arm(&mut self, i: usize, kind: TimerKind, at: Duration, out: &mut Vec<Action>) {
        let inst = &mut self.instances[i];
        match kind {
            TimerKind::Protocol => inst.protocol_at = Some(at),
            TimerKind::Announce => inst.announce_at = Some(at),
        }
        out.push(Action::ArmTimer {
            instance: i,
            kind,
            at,
        });
    }

    fn disarm(&mut self, i: usize, kind: TimerKind, out: &mut Vec<Action>) {
        let inst = &mut self.instances[i];
        let slot = match kind {
            TimerKind::Protocol => &mut inst.protocol_at,
            TimerKind::Announce => &mut inst.announce_at,
        };
        if slot.take().is_some() {
            out.push(Action::DisarmTimer { instance: i, kind });
        }
    }

    /// Moves instance `i` alone into BACKUP with the down timer at `now + wait`.
    fn enter_backup(&mut self, now: Duration, i: usize, wait: Duration, out: &mut Vec<Action>) {
        self.enter(now, i, State::Backup, out);
        self.arm(i, TimerKind::Protocol, now + wait, out);
    }

    /// Moves instance `i` alone into `to` (no sync-group propagation): the RFC's actions
    /// on leaving the old state and entering the new one, then the notifications.
    fn enter(&mut self, now: Duration, i: usize, to: State, out: &mut Vec<Action>) {
        self.enter_with(now, i, to, true, out);
    }

    /// [`Node::enter`]; `resign`: a MASTER going to FAULT sends a priority-0 advert first
    /// (keepalived does not when a reload finds the fault).
    fn enter_with(
        &mut self,
        now: Duration,
        i: usize,
        to: State,
        resign: bool,
        out: &mut Vec<Action>,
    ) {
        let from = self.instances[i].state;
        if from == to {
            return;
        }
        if from == State::Master {
            if to == State::Fault && resign {
                // keepalived resigns with priority 0 when a fault takes it out of MASTER,
                // so the backup takes over after Skew_Time instead of the full interval.
                self.send_advert(i, 0, out);
            }
            out.push(Action::RemoveAddresses { instance: i });
            self.disarm(i, TimerKind::Announce, out);
            self.instances[i].counters.released_master += 1;
        }
        self.instances[i].want_master = false;
        match to {
            State::Master => {
                let inst = &mut self.instances[i];
                inst.master_adver_int = inst.adver_int();
                inst.preempt_at = None;
                inst.master = None;
                inst.counters.became_master += 1;
                // The advert first, so the old master releases the addresses before our
                // gratuitous ARPs go out (as keepalived orders it).
                let prio = inst.effective_priority;
                self.send_advert(i, prio, out);
                out.push(Action::AddAddresses { instance: i });
                let c = &self.instances[i].cfg;
                out.push(Action::Announce {
                    instance: i,
                    repeat: c.garp_master_repeat,
                });
                let next = if !c.garp_master_delay.is_zero() {
                    Some((c.garp_master_delay, false))
                } else if !c.garp_master_refresh.is_zero() {
                    Some((c.garp_master_refresh, true))
                } else {
                    None
                };
                if let Some((d, refresh)) = next {
                    self.instances[i].announce_refresh = refresh;
                    self.arm(i, TimerKind::Announce, now + d, out);
                }
                let adv = self.instances[i].adver_int();
                self.arm(i, TimerKind::Protocol, now + adv, out);
            }
            State::Backup => {
                let inst = &mut self.instances[i];
                inst.preempt_at = None;
            }
            State::Fault | State::Init => {
                self.disarm(i, TimerKind::Protocol, out);
                self.disarm(i, TimerKind::Announce, out);
                let inst = &mut self.instances[i];
                inst.master_adver_int = inst.adver_int();
                inst.master = None;
            }
        }
        let inst = &mut self.instances[i];
        inst.state = to;
        inst.last_transition = now;
        out.push(Action::StateChanged {
            instance: i,
            from,
            to,
        });
        let c = &inst.cfg;
        let specific = match to {
            State::Master => c.notify_master.as_deref(),
            State::Backup => c.notify_backup.as_deref(),
            State::Fault => c.notify_fault.as_deref(),
            State::Init => None,
        };
        push_notify(out, specific, None);
        push_notify(
            out,
            c.notify.as_deref(),
            Some([
                "INSTANCE",
                &c.name,
                to.as_str(),
                &inst.effective_priority.to_string(),
            ]),
        );
    }

    fn notify_group(&self, g: usize, out: &mut Vec<Action>) {
        let group = &self.groups[g];
        let specific = match group.state {
            State::Master => group.notify_master.as_deref(),
            State::Backup => group.notify_backup.as_deref(),
            State::Fault => group.notify_fault.as_deref(),
            State::Init => None,
        };
        push_notify(out, specific, None);
        push_notify(
            out,
            group.notify.as_deref(),
            Some(["GROUP", &group.name, group.state.as_str(), "0"]),
        );
    }

    fn set_group_state(&mut self, g: usize, state: State, out: &mut Vec<Action>) {
        if self.groups[g].state != state {
            self.groups[g].state = state;
            self.notify_group(g, out);
        }
    }

    /// Instance `i`'s Master_Down_Timer expired: become MASTER, unless a sync group holds
    /// it back (keepalived: the group goes MASTER only when every member wants to).
    fn request_master(&mut self, now: Duration, i: usize, out: &mut Vec<Action>) {
        let Some(g) = self.instances[i].group else {
            self.enter(now, i, State::Master, out);
            return;
        };
        if self.groups[g].state != State::Master {
            let others_ready = self.groups[g].members.iter().all(|&m| {
                m == i || self.instances[m].want_master || self.instances[m].state == State::Master
            });
            if !others_ready {
                let inst = &mut self.instances[i];
                inst.want_master = true;
                let wait = inst.master_down_interval();
                self.arm(i, TimerKind::Protocol, now + wait, out);
                return;
            }
        }
        self.set_group_state(g, State::Master, out);
        let members = self.groups[g].members.clone();
        for m in members {
            if self.instances[m].state != State::Master {
                self.enter(now, m, State::Master, out);
            }
        }
    }

    /// Instance `i` (MASTER) heard a better master: it and its sync group go BACKUP.
    fn fall_back(&mut self, now: Duration, i: usize, out: &mut Vec<Action>) {
        let members = match self.instances[i].group {
            Some(g) => {
                self.set_group_state(g, State::Backup, out);
                self.groups[g].members.clone()
            }
            None => vec![i],
        };
        for m in members {
            if matches!(self.instances[m].state, State::Master | State::Init) {
                let wait = self.instances[m].master_down_interval();
                self.enter_backup(now, m, wait, out);
            }
        }
    }

    /// Applies a change of instance `i`'s tracked state: priority, and FAULT in or out
    /// (for the whole sync group).
    fn reevaluate(&mut self, now: Duration, i: usize, out: &mut Vec<Action>) {
        let (fault, prio) = self.compute(i);
        let inst = &mut self.instances[i];
        inst.effective_priority = prio;
        let was_fault = inst.fault;
        inst.fault = fault;
        if fault && !was_fault {
            let members = match inst.group {
                Some(g) => {
                    self.set_group_state(g, State::Fault, out);
                    self.groups[g].members.clone()
                }
                None => vec![i],
            };
            for m in members {
                self.enter(now, m, State::Fault, out);
            }
        } else if !fault && was_fault {
            match inst.group {
                Some(g) => {
                    let members = self.groups[g].members.clone();
                    if members.iter().all(|&m| !self.instances[m].fault) {
                        self.set_group_state(g, State::Backup, out);
                        for m in members {
                            let wait = self.instances[m].master_down_interval();
                            self.enter_backup(now, m, wait, out);
                        }
                    }
                }
                None if inst.cfg.priority == 255 => self.enter(now, i, State::Master, out),
                None => {
                    let wait = inst.master_down_interval();
                    self.enter_backup(now, i, wait, out);
                }
            }
        }
    }

    fn on_script(&mut self, now: Duration, script: usize, success: bool, out: &mut Vec<Action>) {
        let Some(s) = self.scripts.get_mut(script) else {
            return;
        };
        let changed = if success == s.ok {
            s.streak = 0;
            false
        } else {
            s.streak += 1;
            let need = if success { s.rise } else { s.fall };
            if s.streak >= need {
                s.ok = success;
                s.streak = 0;
                true
            } else {
                false
            }
        };
        if !changed || !self.started {
            return;
        }
        let name = self
            .script_names
            .iter()
            .find(|(_, v)| **v == script)
            .map(|(k, _)| k.clone());
        for i in 0..self.instances.len() {
            if self.instances[i]
                .cfg
                .track_script
                .iter()
                .any(|t| Some(&t.name) == name.as_ref())
            {
                self.reevaluate(now, i, out);
            }
        }
    }

    fn on_timer(&mut self, now: Duration, i: usize, kind: TimerKind, out: &mut Vec<Action>) {
        let inst = &self.instances[i];
        let deadline = match kind {
            TimerKind::Protocol => inst.protocol_at,
            TimerKind::Announce => inst.announce_at,
        };
        match deadline {
            Some(at) if at <= now => {}
            _ => return,
        }
        match (kind, inst.state) {
            (TimerKind::Protocol, State::Master) => {
                let prio = inst.effective_priority;
                self.send_advert(i, prio, out);
                let adv = self.instances[i].adver_int();
                self.arm(i, TimerKind::Protocol, now + adv, out);
            }
            (TimerKind::Protocol, State::Backup) => {
                self.instances[i].protocol_at = None;
                self.request_master(now, i, out);
            }
            (TimerKind::Announce, State::Master) => {
                let c = &inst.cfg;
                // The first firing after becoming MASTER is garp_master_delay's second
                // burst; later ones are garp_master_refresh's.
                let repeat = if inst.announce_refresh {
                    c.garp_master_refresh_repeat
                } else {
                    c.garp_master_repeat
                };
                let refresh = c.garp_master_refresh;
                out.push(Action::Announce {
                    instance: i,
                    repeat,
                });
                self.instances[i].announce_at = None;
                if !refresh.is_zero() {
                    self.instances[i].announce_refresh = true;
                    self.arm(i, TimerKind::Announce, now + refresh, out);
                }
            }
            _ => {
                let inst = &mut self.instances[i];
                match kind {
                    TimerKind::Protocol => inst.protocol_at = None,
                    TimerKind::Announce => inst.announce_at = None,
                }
            }
        }
    }

    /// Validates an advert as RFC 3768 §7.1 / RFC 5798 §7.1 (and keepalived) do,
    /// counting each reason for a drop; returns the parsed advert if it is to be processed.
    fn check_packet(
        &mut self,
        now: Duration,
        i: usize,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        data: &[u8],
    ) -> Option<Repr> {
        let inst = &mut self.instances[i];
        let packet = match Packet::new_checked(data, inst.family) {
            Ok(p) => p,
            Err(WireError::Version(v)) => {
                inst.counters.version_errors += 1;
                log_drop!(inst, now, "advert of an unsupported VRRP version dropped", %src, version = v);
                return None;
            }
            Err(e) => {
                inst.counters.length_errors += 1;
                log_drop!(inst, now, "malformed advert dropped", %src, error = %e);
                return None;
            }
        };
        if packet.vrid() != inst.cfg.virtual_router_id {
            inst.counters.vrid_errors += 1;
            return None;
        }
        if inst.multicast() && ttl != TTL {
            // keepalived checks the TTL only for multicast (unicast may cross routers).
            inst.counters.ttl_errors += 1;
            log_drop!(inst, now, "advert with TTL/hop limit other than 255 dropped", %src, ttl);
            return None;
        }
        if packet.version() != Some(inst.version) {
            inst.counters.version_errors += 1;
            log_drop!(inst, now, "advert of another VRRP version dropped", %src, version = packet.version_number());
            return None;
        }
        if packet.kind() != TYPE_ADVERTISEMENT {
            inst.counters.type_errors += 1;
            log_drop!(inst, now, "VRRP packet of an unknown type dropped", %src, kind = packet.kind());
            return None;
        }
        let repr = match Repr::parse(&packet, src, dst) {
            Ok(r) => r,
            Err(WireError::Checksum { .. }) => {
                inst.counters.checksum_errors += 1;
                log_drop!(inst, now, "advert with a bad checksum dropped", %src);
                return None;
            }
            Err(_) => {
                inst.counters.length_errors += 1;
                return None;
            }
        };
        if inst.version == Version::V2 {
            let got = repr.auth.type_value();
            if got > 2 {
                inst.counters.invalid_auth_type += 1;
                log_drop!(inst, now, "advert with an invalid auth type dropped", %src, auth_type = got);
                return None;
            }
            if got != inst.auth.type_value() {
                inst.counters.auth_type_mismatch += 1;
                log_drop!(inst, now, "advert with another auth type dropped", %src);
                return None;
            }
            if repr.auth != inst.auth {
                inst.counters.auth_failures += 1;
                log_drop!(inst, now, "advert with a wrong password dropped", %src);
                return None;
            }
            if repr.adver_int != inst.cfg.adver_int_field(Version::V2) {
                inst.counters.interval_errors += 1;
                log_drop!(inst, now, "advert with another interval dropped", %src, got = repr.adver_int);
                return None;
            }
        }
        let mut theirs = repr.addresses.clone();
        let mut ours = inst.vips.clone();
        theirs.sort();
        ours.sort();
        if theirs != ours {
            // RFC: MAY check and MUST log; keepalived drops such adverts, and so do we, so
            // that both behave alike in a mixed group.
            inst.counters.address_list_errors += 1;
            log_drop!(inst, now, "advert with another address list dropped", %src);
            return None;
        }
        inst.counters.adverts_received += 1;
        if repr.priority == 0 {
            inst.counters.priority_zero_received += 1;
        }
        Some(repr)
    }

    #[allow(clippy::too_many_arguments)]
    fn on_packet(
        &mut self,
        now: Duration,
        i: usize,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        data: &[u8],
        out: &mut Vec<Action>,
    ) {
        let state = self.instances[i].state;
        if !matches!(state, State::Backup | State::Master) {
            return;
        }
        if Some(src) == self.instances[i].src {
            // Our own advert looped back.
            return;
        }
        let Some(repr) = self.check_packet(now, i, src, dst, ttl, data) else {
            return;
        };
        let inst = &mut self.instances[i];
        let mine = inst.effective_priority;
        match state {
            State::Backup => {
                if repr.priority == 0 {
                    let skew = inst.skew(256 - u32::from(mine));
                    self.arm(i, TimerKind::Protocol, now + skew, out);
                } else if inst.cfg.nopreempt
                    || repr.priority >= mine
                    || (!inst.cfg.preempt_delay.is_zero()
                        && inst.preempt_at.is_none_or(|at| now < at))
                {
                    if inst.version == Version::V3 {
                        inst.master_adver_int =
                            Duration::from_millis(u64::from(repr.adver_int.max(1)) * 10);
                    }
                    inst.master = Some(src);
                    inst.want_master = false;
                    if !inst.cfg.preempt_delay.is_zero() {
                        if repr.priority >= mine {
                            inst.preempt_at = None;
                        } else if inst.preempt_at.is_none() {
                            inst.preempt_at = Some(now + inst.cfg.preempt_delay);
                        }
                    }
                    let wait = inst.master_down_interval();
                    self.arm(i, TimerKind::Protocol, now + wait, out);
                } else {
                    // A lower priority master while we may preempt: ignore it, and our
                    // down timer takes us to MASTER.
                    inst.master = Some(src);
                }
            }
            State::Master => {
                let ours = inst.src;
                if repr.priority == 0 {
                    // The other master resigned (or a stale one stopped): advertise at
                    // once so backups see us.
                    self.send_advert(i, mine, out);
                    let adv = self.instances[i].adver_int();
                    self.arm(i, TimerKind::Protocol, now + adv, out);
                } else if repr.priority > mine
                    || (repr.priority == mine && ours.is_some_and(|o| src > o))
                {
                    if inst.version == Version::V3 {
                        inst.master_adver_int =
                            Duration::from_millis(u64::from(repr.adver_int.max(1)) * 10);
                    }
                    self.fall_back(now, i, out);
                    self.instances[i].master = Some(src);
                } else {
                    // A lower priority master: keepalived answers with an advert at once
                    // ("forcing new election") so it steps down quickly; we do the same.
                    self.send_advert(i, mine, out);
                }
            }
            _ => {}
        }
    }
}

/// Appends a Notify action for `command` (plus `args`), if configured.
fn push_notify(out: &mut Vec<Action>, command: Option<&[String]>, args: Option<[&str; 4]>) {
    let Some(command) = command else { return };
    let mut argv = command.to_vec();
    if argv.is_empty() {
        return;
    }
    if let Some(args) = args {
        argv.extend(args.iter().map(|s| (*s).to_owned()));
    }
    out.push(Action::Notify { argv });
}
