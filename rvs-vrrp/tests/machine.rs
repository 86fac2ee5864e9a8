//! The VRRP state machine on a simulated LAN with a fake clock: election, failover,
//! preemption, nopreempt, preempt_delay, priority-0 resignation, address tie-break,
//! tracked scripts and interfaces, sync groups, malformed adverts, notify arguments.
//!
//! Every node's sends are delivered at once to the same instance index of every other
//! live node; timers fire in time order.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rvs_vrrp::config::{
    AuthConfig, AuthKind, InitialState, SyncGroupConfig, TrackInterfaceConfig, TrackScriptConfig,
    VipConfig, VrrpConfig, VrrpInstanceConfig, VrrpScriptConfig,
};
use rvs_vrrp::machine::{Action, Event, Node, State, TimerKind};
use rvs_vrrp::wire::{Auth, MULTICAST_V4, Repr, Version};

const VIP: &str = "198.18.0.100/24";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

/// One instance `VI_1` on eth0, VRID 51, version `v`, advert 1 s.
fn config(priority: u8, v: Version) -> VrrpConfig {
    let mut i = VrrpInstanceConfig::new("VI_1", "eth0", 51);
    i.priority = priority;
    i.version = Some(v);
    i.virtual_ipaddress = vec![VIP.parse::<VipConfig>().unwrap()];
    i.notify = Some(vec!["/bin/notify".into()]);
    i.notify_master = Some(vec!["/bin/m".into(), "a b".into()]);
    let c = VrrpConfig {
        instances: vec![i],
        ..VrrpConfig::default()
    };
    c.validate().unwrap();
    c
}

struct SimNode {
    node: Node,
    addr: IpAddr,
    alive: bool,
    isolated: bool,
    timers: BTreeMap<(usize, TimerKind), Duration>,
    holds: BTreeMap<usize, bool>,
    notifies: Vec<Vec<String>>,
    announces: Vec<(Duration, usize, u32)>,
    transitions: Vec<(Duration, usize, State)>,
    /// Every advert sent: (time, instance, the advert as parsed back).
    sent: Vec<(Duration, usize, Repr)>,
    /// Addresses removed one by one (a reload's stale ones).
    removed: Vec<(usize, Vec<VipConfig>)>,
}

struct Sim {
    now: Duration,
    nodes: Vec<SimNode>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            now: Duration::ZERO,
            nodes: Vec::new(),
        }
    }

    /// Adds a node (source address 198.18.0.`last`) and starts it now.
    fn add(&mut self, config: &VrrpConfig, last: u8) -> usize {
        let node = Node::new(config);
        let n = self.nodes.len();
        self.nodes.push(SimNode {
            node,
            addr: addr(last),
            alive: true,
            isolated: false,
            timers: BTreeMap::new(),
            holds: BTreeMap::new(),
            notifies: Vec::new(),
            announces: Vec::new(),
            transitions: Vec::new(),
            sent: Vec::new(),
            removed: Vec::new(),
        });
        self.start(n);
        n
    }

    fn start(&mut self, n: usize) {
        let a = self.nodes[n].addr;
        for i in 0..self.nodes[n].node.len() {
            self.event(
                n,
                Event::SourceAddress {
                    instance: i,
                    addr: Some(a),
                },
            );
        }
        self.event(n, Event::Start);
    }

    /// Replaces node `n` by a fresh one (a restarted process) and starts it.
    fn restart(&mut self, n: usize, config: &VrrpConfig) {
        let s = &mut self.nodes[n];
        s.node = Node::new(config);
        s.alive = true;
        s.timers.clear();
        s.holds.clear();
        self.start(n);
    }

    /// SIGHUP: node `n` takes `config` in place.
    fn reload(&mut self, n: usize, config: &VrrpConfig) {
        assert!(self.nodes[n].node.can_reconfigure(config));
        let actions = self.nodes[n].node.reconfigure(self.now, config);
        self.apply(n, actions);
    }

    /// SIGKILL: the node stops sending and its timers never fire.
    fn kill(&mut self, n: usize) {
        self.nodes[n].alive = false;
        self.nodes[n].timers.clear();
    }

    fn event(&mut self, n: usize, event: Event<'_>) {
        let actions = self.nodes[n].node.handle(self.now, event);
        self.apply(n, actions);
    }

    fn apply(&mut self, n: usize, actions: Vec<Action>) {
        let mut sends = Vec::new();
        {
            let s = &mut self.nodes[n];
            for a in actions {
                match a {
                    Action::Send {
                        instance,
                        dst,
                        data,
                    } => sends.push((instance, dst, data)),
                    Action::AddAddresses { instance } => {
                        s.holds.insert(instance, true);
                    }
                    Action::RemoveAddresses { instance } => {
                        s.holds.insert(instance, false);
                    }
                    Action::RemoveStaleAddresses { instance, vips } => {
                        s.removed.push((instance, vips))
                    }
                    Action::Announce { instance, repeat } => {
                        s.announces.push((self.now, instance, repeat))
                    }
                    Action::ArmTimer { instance, kind, at } => {
                        assert!(at >= self.now, "timer armed in the past");
                        s.timers.insert((instance, kind), at);
                    }
                    Action::DisarmTimer { instance, kind } => {
                        s.timers.remove(&(instance, kind));
                    }
                    Action::Notify { argv } => s.notifies.push(argv),
                    Action::StateChanged { instance, to, .. } => {
                        s.transitions.push((self.now, instance, to))
                    }
                }
            }
        }
        let src = self.nodes[n].addr;
        for (instance, dst, data) in &sends {
            let family = rvs_vrrp::wire::Family::of(*dst);
            let packet =
                rvs_vrrp::wire::Packet::new_checked(&data[..], family).expect("own advert");
            let repr = Repr::parse(&packet, src, *dst).expect("own advert parses");
            self.nodes[n].sent.push((self.now, *instance, repr));
        }
        for (instance, dst, data) in sends {
            self.deliver(n, instance, src, dst, 255, &data);
        }
    }

    fn deliver(
        &mut self,
        from: usize,
        instance: usize,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        data: &[u8],
    ) {
        for m in 0..self.nodes.len() {
            let cut = self.nodes[m].isolated || self.nodes.get(from).is_some_and(|s| s.isolated);
            if m == from || cut || !self.nodes[m].alive || instance >= self.nodes[m].node.len() {
                continue;
            }
            self.event(
                m,
                Event::Packet {
                    instance,
                    src,
                    dst,
                    ttl,
                    data,
                },
            );
        }
    }

    /// Fires every timer due up to `until`, in time order, then sets the clock to it.
    fn run_until(&mut self, until: Duration) {
        for _ in 0..1_000_000 {
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, s)| s.alive)
                .flat_map(|(n, s)| s.timers.iter().map(move |(k, at)| (*at, n, *k)))
                .min();
            match next {
                Some((at, n, (instance, kind))) if at <= until => {
                    self.now = at;
                    self.nodes[n].timers.remove(&(instance, kind));
                    self.event(n, Event::Timer { instance, kind });
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("simulation did not settle");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn state(&self, n: usize) -> State {
        self.nodes[n].node.state(0).unwrap()
    }

    fn holds(&self, n: usize) -> bool {
        self.nodes[n].holds.get(&0).copied().unwrap_or(false)
    }

    /// When node `n` last entered `state`.
    fn entered(&self, n: usize, state: State) -> Option<Duration> {
        self.nodes[n]
            .transitions
            .iter()
            .rev()
            .find(|(_, i, s)| *i == 0 && *s == state)
            .map(|(t, _, _)| *t)
    }
}

/// RFC 3768: Master_Down_Interval = 3 × 1 s + (256 − priority)/256 s.
fn mdi_v2(priority: u64) -> Duration {
    Duration::from_secs(3) + Duration::from_micros((256 - priority) * 1_000_000 / 256)
}

#[test]
fn election_failover_and_preemption_v2() {
    let mut sim = Sim::new();
    let low = sim.add(&config(100, Version::V2), 1);
    let high = sim.add(&config(200, Version::V2), 2);
    assert_eq!(
        sim.nodes[high].node.master_down_interval(0),
        Some(mdi_v2(200))
    );
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(high), State::Master);
    assert_eq!(sim.state(low), State::Backup);
    assert_eq!(sim.entered(high, State::Master), Some(mdi_v2(200)));
    assert!(sim.holds(high) && !sim.holds(low));
    // Announced with garp_master_repeat (5) at once and again after garp_master_delay.
    let ann: Vec<_> = sim.nodes[high]
        .announces
        .iter()
        .map(|a| (a.0, a.2))
        .collect();
    assert_eq!(ann, vec![(mdi_v2(200), 5), (mdi_v2(200) + ms(5000), 5)]);

    // Kill the master: the backup takes over one Master_Down_Interval after the last
    // advert it heard.
    let last_advert = sim.nodes[high].timers[&(0, TimerKind::Protocol)] - ms(1000);
    sim.kill(high);
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(low), State::Master);
    assert_eq!(
        sim.entered(low, State::Master),
        Some(last_advert + mdi_v2(100))
    );
    assert!(sim.holds(low));

    // The old master comes back: it preempts after its own down interval.
    let back = sim.now;
    sim.restart(high, &config(200, Version::V2));
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(high), State::Master);
    assert_eq!(sim.state(low), State::Backup);
    assert_eq!(sim.entered(high, State::Master), Some(back + mdi_v2(200)));
    assert!(!sim.holds(low));
}

#[test]
fn nopreempt_keeps_the_running_master() {
    let mut sim = Sim::new();
    let low = sim.add(&config(100, Version::V3), 1);
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(low), State::Master);
    let mut c = config(200, Version::V3);
    c.instances[0].nopreempt = true;
    let high = sim.add(&c, 2);
    sim.run_for(ms(20_000));
    assert_eq!(sim.state(high), State::Backup);
    assert_eq!(sim.state(low), State::Master);
    // ... but takes over when the master dies.
    sim.kill(low);
    sim.run_for(ms(5_000));
    assert_eq!(sim.state(high), State::Master);
}

#[test]
fn preempt_delay_waits_before_preempting() {
    let mut sim = Sim::new();
    let low = sim.add(&config(100, Version::V3), 1);
    sim.run_for(ms(10_000));
    let mut c = config(200, Version::V3);
    c.instances[0].preempt_delay = ms(4_000);
    let t0 = sim.now;
    let high = sim.add(&c, 2);
    sim.run_for(ms(20_000));
    assert_eq!(sim.state(high), State::Master);
    assert_eq!(sim.state(low), State::Backup);
    let took = sim.entered(high, State::Master).unwrap() - t0;
    // First advert heard within 1 s; preemption no earlier than 4 s after it.
    assert!(took >= ms(4_000), "took {took:?}");
    assert!(took <= ms(1_000) + ms(4_000) + mdi_v2(200), "took {took:?}");
}

#[test]
fn resigning_master_hands_over_after_skew_only() {
    let mut sim = Sim::new();
    let low = sim.add(&config(100, Version::V3), 1);
    let high = sim.add(&config(200, Version::V3), 2);
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(high), State::Master);
    let t = sim.now;
    sim.event(high, Event::Shutdown);
    sim.kill(high);
    assert!(!sim.holds(high));
    assert_eq!(
        sim.nodes[high].node.counters(0).unwrap().priority_zero_sent,
        1
    );
    assert_eq!(
        sim.nodes[low]
            .node
            .counters(0)
            .unwrap()
            .priority_zero_received,
        1
    );
    sim.run_for(ms(2_000));
    assert_eq!(sim.state(low), State::Master);
    // v3 Skew_Time = (256 − 100) × 100 cs / 256 = 60 cs.
    assert_eq!(sim.entered(low, State::Master), Some(t + ms(600)));
    // notify got STOP on shutdown.
    assert!(sim.nodes[high].notifies.contains(&vec![
        "/bin/notify".to_owned(),
        "INSTANCE".into(),
        "VI_1".into(),
        "STOP".into(),
        "200".into()
    ]));
}

#[test]
fn equal_priority_higher_address_wins() {
    let mut sim = Sim::new();
    let mut c = config(100, Version::V3);
    c.instances[0].state = InitialState::Master;
    let a = sim.add(&c, 1);
    let b = sim.add(&c, 2);
    // A partition makes both MASTER; when it heals, the higher address keeps it (a
    // BACKUP accepts an equal priority, so the tie-break happens between masters).
    sim.nodes[a].isolated = true;
    sim.run_for(ms(5_000));
    assert_eq!(sim.state(a), State::Master);
    assert_eq!(sim.state(b), State::Master);
    sim.nodes[a].isolated = false;
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(b), State::Master);
    assert_eq!(sim.state(a), State::Backup);
}

#[test]
fn owner_is_master_at_once_and_state_master_waits_one_interval() {
    let mut sim = Sim::new();
    let owner = sim.add(&config(255, Version::V3), 1);
    assert_eq!(sim.state(owner), State::Master);
    let mut sim = Sim::new();
    let mut c = config(100, Version::V3);
    c.instances[0].state = InitialState::Master;
    let m = sim.add(&c, 1);
    sim.run_for(ms(5_000));
    // One interval + the smallest skew (1 × 100 cs / 256 = 0 cs).
    assert_eq!(sim.entered(m, State::Master), Some(ms(1_000)));
}

#[test]
fn notify_arguments_are_keepalived_s() {
    let mut sim = Sim::new();
    let n = sim.add(&config(150, Version::V2), 1);
    sim.run_for(ms(5_000));
    let notifies = &sim.nodes[n].notifies;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        notifies,
        &vec![
            s(&["/bin/notify", "INSTANCE", "VI_1", "BACKUP", "150"]),
            s(&["/bin/m", "a b"]),
            s(&["/bin/notify", "INSTANCE", "VI_1", "MASTER", "150"]),
        ]
    );
}

#[test]
fn v3_backup_learns_the_master_s_interval() {
    let mut sim = Sim::new();
    let mut fast = config(200, Version::V3);
    fast.instances[0].advert_int = ms(500);
    let m = sim.add(&fast, 2);
    let b = sim.add(&config(100, Version::V3), 1);
    sim.run_for(ms(5_000));
    assert_eq!(sim.state(m), State::Master);
    // 3 × 50 cs + (156 × 50 / 256 = 30) cs.
    assert_eq!(sim.nodes[b].node.master_down_interval(0), Some(ms(1_800)));
}

#[test]
fn tracked_script_weight_moves_mastership() {
    let script = VrrpScriptConfig {
        name: "chk".into(),
        script: vec!["/bin/true".into()],
        interval: ms(1_000),
        timeout: None,
        weight: -60,
        rise: 2,
        fall: 1,
        init_fail: false,
    };
    let mut a = config(150, Version::V3);
    a.scripts = vec![script];
    a.instances[0].track_script = vec![TrackScriptConfig {
        name: "chk".into(),
        weight: None,
    }];
    a.validate().unwrap();
    let mut sim = Sim::new();
    let na = sim.add(&a, 1);
    let nb = sim.add(&config(100, Version::V3), 2);
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(na), State::Master);
    sim.event(
        na,
        Event::ScriptResult {
            script: 0,
            success: false,
        },
    );
    assert_eq!(sim.nodes[na].node.effective_priority(0), Some(90));
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(nb), State::Master);
    assert_eq!(sim.state(na), State::Backup);
    // rise = 2: one success is not enough.
    sim.event(
        na,
        Event::ScriptResult {
            script: 0,
            success: true,
        },
    );
    assert_eq!(sim.nodes[na].node.effective_priority(0), Some(90));
    sim.event(
        na,
        Event::ScriptResult {
            script: 0,
            success: true,
        },
    );
    assert_eq!(sim.nodes[na].node.effective_priority(0), Some(150));
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(na), State::Master);
    assert_eq!(sim.state(nb), State::Backup);
}

#[test]
fn script_with_weight_zero_and_tracked_interface_cause_fault() {
    let script = VrrpScriptConfig {
        name: "chk".into(),
        script: vec!["/bin/true".into()],
        interval: ms(1_000),
        timeout: None,
        weight: 0,
        rise: 1,
        fall: 1,
        init_fail: false,
    };
    let mut a = config(200, Version::V3);
    a.scripts = vec![script];
    a.instances[0].track_script = vec![TrackScriptConfig {
        name: "chk".into(),
        weight: None,
    }];
    a.instances[0].track_interface = vec![TrackInterfaceConfig {
        name: "uplink".into(),
        weight: 0,
    }];
    a.instances[0].notify_fault = Some(vec!["/bin/f".into()]);
    let mut sim = Sim::new();
    let na = sim.add(&a, 2);
    let nb = sim.add(&config(100, Version::V3), 1);
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(na), State::Master);

    let t = sim.now;
    sim.event(
        na,
        Event::ScriptResult {
            script: 0,
            success: false,
        },
    );
    assert_eq!(sim.state(na), State::Fault);
    assert!(!sim.holds(na));
    assert!(sim.nodes[na].notifies.contains(&vec!["/bin/f".to_owned()]));
    sim.run_for(ms(2_000));
    // FAULT resigns with priority 0, so the backup needs only Skew_Time.
    assert_eq!(sim.entered(nb, State::Master), Some(t + ms(600)));
    sim.event(
        na,
        Event::ScriptResult {
            script: 0,
            success: true,
        },
    );
    assert_eq!(sim.state(na), State::Backup);
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(na), State::Master);

    sim.event(
        na,
        Event::Interface {
            name: "uplink",
            up: false,
        },
    );
    assert_eq!(sim.state(na), State::Fault);
    sim.event(
        na,
        Event::Interface {
            name: "eth9",
            up: false,
        },
    );
    sim.event(
        na,
        Event::Interface {
            name: "uplink",
            up: true,
        },
    );
    assert_eq!(sim.state(na), State::Backup);
    // Its own interface going down is a fault too.
    sim.event(
        na,
        Event::Interface {
            name: "eth0",
            up: false,
        },
    );
    assert_eq!(sim.state(na), State::Fault);
}

fn group_config(priority: u8) -> VrrpConfig {
    let mut i1 = VrrpInstanceConfig::new("VI_1", "eth0", 51);
    i1.priority = priority;
    i1.version = Some(Version::V3);
    i1.virtual_ipaddress = vec!["198.18.0.100".parse().unwrap()];
    i1.track_interface = vec![TrackInterfaceConfig {
        name: "eth1".into(),
        weight: 0,
    }];
    let mut i2 = VrrpInstanceConfig::new("VI_2", "eth0", 52);
    i2.priority = priority;
    i2.version = Some(Version::V3);
    i2.virtual_ipaddress = vec!["198.18.0.101".parse().unwrap()];
    let c = VrrpConfig {
        instances: vec![i1, i2],
        sync_groups: vec![SyncGroupConfig {
            name: "G".into(),
            group: vec!["VI_1".into(), "VI_2".into()],
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: Some(vec!["/bin/gn".into()]),
        }],
        ..VrrpConfig::default()
    };
    c.validate().unwrap();
    c
}

#[test]
fn sync_group_members_change_state_together() {
    let mut sim = Sim::new();
    let a = sim.add(&group_config(200), 2);
    let b = sim.add(&group_config(100), 1);
    sim.run_for(ms(10_000));
    for i in 0..2 {
        assert_eq!(sim.nodes[a].node.state(i), Some(State::Master));
        assert_eq!(sim.nodes[b].node.state(i), Some(State::Backup));
    }
    assert_eq!(sim.nodes[a].node.group_state(0), Some(State::Master));
    // A fault on one member of A takes the whole group to FAULT; B takes both over.
    sim.event(
        a,
        Event::Interface {
            name: "eth1",
            up: false,
        },
    );
    assert_eq!(sim.nodes[a].node.state(0), Some(State::Fault));
    assert_eq!(sim.nodes[a].node.state(1), Some(State::Fault));
    sim.run_for(ms(5_000));
    for i in 0..2 {
        assert_eq!(sim.nodes[b].node.state(i), Some(State::Master));
    }
    assert!(sim.nodes[a].notifies.contains(&vec![
        "/bin/gn".to_owned(),
        "GROUP".into(),
        "G".into(),
        "FAULT".into(),
        "0".into()
    ]));
    // Recovery: A's group comes back and preempts both instances.
    sim.event(
        a,
        Event::Interface {
            name: "eth1",
            up: true,
        },
    );
    sim.run_for(ms(10_000));
    for i in 0..2 {
        assert_eq!(sim.nodes[a].node.state(i), Some(State::Master));
        assert_eq!(sim.nodes[b].node.state(i), Some(State::Backup));
    }
    // A member hearing a better master takes its group to BACKUP.
    let better = Repr {
        version: Version::V3,
        vrid: 52,
        priority: 254,
        adver_int: 100,
        auth: Auth::None,
        addresses: vec!["198.18.0.101".parse().unwrap()],
    };
    let src = addr(9);
    let dst = IpAddr::V4(MULTICAST_V4);
    let data = better.to_bytes(src, dst);
    sim.event(
        a,
        Event::Packet {
            instance: 1,
            src,
            dst,
            ttl: 255,
            data: &data,
        },
    );
    assert_eq!(sim.nodes[a].node.state(0), Some(State::Backup));
    assert_eq!(sim.nodes[a].node.state(1), Some(State::Backup));
}

#[test]
fn malformed_and_foreign_adverts_are_counted_and_dropped() {
    let mut c = config(100, Version::V2);
    c.instances[0].authentication = Some(AuthConfig {
        auth_type: AuthKind::Pass,
        auth_pass: "secret".into(),
    });
    let mut sim = Sim::new();
    let n = sim.add(&c, 1);
    assert_eq!(sim.state(n), State::Backup);
    let src = addr(2);
    let dst = IpAddr::V4(MULTICAST_V4);
    let good = Repr {
        version: Version::V2,
        vrid: 51,
        priority: 200,
        adver_int: 1,
        auth: Auth::pass("secret"),
        addresses: vec![addr(100)],
    };
    let with = |f: &dyn Fn(&mut Repr)| {
        let mut r = good.clone();
        f(&mut r);
        r.to_bytes(src, dst)
    };
    let mut bad_sum = good.to_bytes(src, dst);
    bad_sum[6] ^= 0xff;
    let cases: Vec<(Vec<u8>, u8)> = vec![
        (good.to_bytes(src, dst)[..10].to_vec(), 255),
        (bad_sum, 255),
        (good.to_bytes(src, dst), 254),
        (with(&|r| r.version = Version::V3), 255),
        (with(&|r| r.vrid = 52), 255),
        (with(&|r| r.auth = Auth::pass("wrong")), 255),
        (with(&|r| r.auth = Auth::None), 255),
        (with(&|r| r.auth = Auth::Other(7)), 255),
        (with(&|r| r.adver_int = 2), 255),
        (with(&|r| r.addresses = vec![addr(101)]), 255),
        (vec![], 255),
        (vec![0xff; 64], 255),
    ];
    let timer_before = sim.nodes[n].timers.clone();
    for (data, ttl) in &cases {
        sim.deliver(99, 0, src, dst, *ttl, data);
    }
    assert_eq!(
        sim.nodes[n].timers, timer_before,
        "a dropped advert moved a timer"
    );
    let k = sim.nodes[n].node.counters(0).unwrap();
    assert_eq!(k.length_errors, 2);
    assert_eq!(k.checksum_errors, 1);
    assert_eq!(k.ttl_errors, 1);
    // v3 bytes under a v2 instance, and the 0xff garbage (version 15).
    assert_eq!(k.version_errors, 2);
    assert_eq!(k.vrid_errors, 1);
    assert_eq!(k.auth_failures, 1);
    assert_eq!(k.auth_type_mismatch, 1);
    assert_eq!(k.invalid_auth_type, 1);
    assert_eq!(k.interval_errors, 1);
    assert_eq!(k.address_list_errors, 1);
    assert_eq!(k.adverts_received, 0);
    // The good one is accepted and resets the down timer.
    sim.now += ms(500);
    sim.deliver(99, 0, src, dst, 255, &good.to_bytes(src, dst));
    assert_eq!(sim.nodes[n].node.counters(0).unwrap().adverts_received, 1);
    assert_eq!(
        sim.nodes[n].timers[&(0, TimerKind::Protocol)],
        ms(500) + mdi_v2(100)
    );
}

#[test]
fn ipv6_instances_elect_too() {
    let mk = |p: u8| {
        let mut i = VrrpInstanceConfig::new("VI_6", "eth0", 60);
        i.priority = p;
        i.version = Some(Version::V3);
        i.virtual_ipaddress = vec!["fd00::100/64".parse().unwrap()];
        let c = VrrpConfig {
            instances: vec![i],
            ..VrrpConfig::default()
        };
        c.validate().unwrap();
        c
    };
    let mut sim = Sim::new();
    let a = sim.add(&mk(100), 1);
    let b = sim.add(&mk(200), 2);
    // IPv6 sources (link-local).
    for (n, last) in [(a, 1u16), (b, 2)] {
        let ll = IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last));
        sim.nodes[n].addr = ll;
        sim.event(
            n,
            Event::SourceAddress {
                instance: 0,
                addr: Some(ll),
            },
        );
    }
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(b), State::Master);
    assert_eq!(sim.state(a), State::Backup);
    assert!(
        sim.nodes[b]
            .node
            .is_master_for("fd00::100".parse().unwrap())
    );
    assert!(
        !sim.nodes[a]
            .node
            .is_master_for("fd00::100".parse().unwrap())
    );
    assert!(sim.nodes[a].node.counters(0).unwrap().adverts_received > 5);
}

/// A log sink for one test: what the subscriber wrote.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn repeated_bad_adverts_are_logged_once_a_minute_per_reason() {
    let mut sim = Sim::new();
    let n = sim.add(&config(100, Version::V2), 1);
    let src = addr(2);
    let dst = IpAddr::V4(MULTICAST_V4);
    let good = Repr {
        version: Version::V2,
        vrid: 51,
        priority: 200,
        adver_int: 1,
        auth: Auth::None,
        addresses: vec![addr(100)],
    };
    let mut bad_sum = good.to_bytes(src, dst);
    bad_sum[6] ^= 0xff;
    let mut other_int = good.clone();
    other_int.adver_int = 3;
    let other_int = other_int.to_bytes(src, dst);
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // One bad advert a second for 150 s, and one with another interval at 10 s.
        for s in 0..150u64 {
            sim.now = Duration::from_secs(s);
            sim.deliver(99, 0, src, dst, 255, &bad_sum);
            if s == 10 {
                sim.deliver(99, 0, src, dst, 255, &other_int);
            }
        }
    });
    let k = sim.nodes[n].node.counters(0).unwrap();
    assert_eq!(k.checksum_errors, 150, "every drop is counted");
    assert_eq!(k.interval_errors, 1);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let sums: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("bad checksum"))
        .collect();
    // At 0 s, 60 s and 120 s; the later lines say how many were left out.
    assert_eq!(sums.len(), 3, "{text}");
    assert!(sums[0].contains("suppressed=0"), "{}", sums[0]);
    assert!(sums[1].contains("suppressed=59"), "{}", sums[1]);
    assert!(sums[2].contains("suppressed=59"), "{}", sums[2]);
    // Another reason is not hidden behind the first.
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("another interval"))
            .count(),
        1
    );
}

/// Two nodes on `config(_, V3)`, settled: node 0 MASTER at 200, node 1 BACKUP at 100.
fn settled_pair() -> Sim {
    let mut sim = Sim::new();
    sim.add(&config(200, Version::V3), 2);
    sim.add(&config(100, Version::V3), 1);
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(0), State::Master);
    assert_eq!(sim.state(1), State::Backup);
    sim
}

/// What node `n` did from time `since` on: (transitions, notifies, announces, adverts).
fn since(sim: &Sim, n: usize, t: Duration) -> (usize, usize, Vec<u32>, Vec<(Duration, Repr)>) {
    let s = &sim.nodes[n];
    (
        s.transitions.iter().filter(|(at, _, _)| *at >= t).count(),
        s.notifies.len(),
        s.announces
            .iter()
            .filter(|(at, _, _)| *at >= t)
            .map(|(_, _, r)| *r)
            .collect(),
        s.sent
            .iter()
            .filter(|(at, _, _)| *at >= t)
            .map(|(at, _, r)| (*at, r.clone()))
            .collect(),
    )
}

#[test]
fn sighup_keeps_a_changed_master_master_and_advertises_the_new_settings_at_once() {
    let mut sim = settled_pair();
    let notifies_before = sim.nodes[0].notifies.len();
    // keepalived.conf edited on both nodes: a second VIP; on the MASTER also a lower
    // priority (still above the BACKUP's) and a 2 s interval (v3: the BACKUP learns it).
    let extra: VipConfig = "198.18.0.101/24".parse().unwrap();
    let mut backup = config(100, Version::V3);
    backup.instances[0].virtual_ipaddress.push(extra.clone());
    let mut master = config(150, Version::V3);
    master.instances[0].virtual_ipaddress.push(extra.clone());
    master.instances[0].advert_int = ms(2000);
    let t = sim.now;
    sim.reload(1, &backup);
    sim.reload(0, &master);
    let (transitions, notifies, announces, adverts) = since(&sim, 0, t);
    assert_eq!(transitions, 0, "the MASTER kept its state");
    assert_eq!(notifies, notifies_before, "no notify for a state that held");
    assert_eq!(announces, vec![5], "one burst, for the added address");
    assert!(sim.nodes[0].removed.is_empty());
    // keepalived: one advert under the old settings before reloading, one under the new
    // at once after.
    let old: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap()];
    let new: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap(), extra.address];
    assert_eq!(adverts.len(), 2, "{adverts:?}");
    assert_eq!(
        (adverts[0].0, adverts[0].1.priority, adverts[0].1.adver_int),
        (t, 200, 100)
    );
    assert_eq!(adverts[0].1.addresses, old);
    assert_eq!(
        (adverts[1].0, adverts[1].1.priority, adverts[1].1.adver_int),
        (t, 150, 200)
    );
    assert_eq!(adverts[1].1.addresses, new);
    sim.run_for(ms(20_000));
    let (transitions, _, _, adverts) = since(&sim, 0, t);
    assert_eq!(transitions, 0);
    assert_eq!(sim.state(1), State::Backup);
    // Then every 2 s.
    assert_eq!(adverts[2].0, t + ms(2000));
    assert_eq!(adverts[3].0, t + ms(4000));
    let c = sim.nodes[1].node.counters(0).unwrap();
    // Only the MASTER's last advert before its reload had the old list (the BACKUP had
    // reloaded first); every later one matches.
    assert_eq!(c.address_list_errors, 1);
    assert_eq!(c.interval_errors, 0);
}

#[test]
fn sighup_removes_only_the_addresses_the_file_dropped_without_announcing() {
    let mut sim = settled_pair();
    let mut two = config(200, Version::V3);
    two.instances[0]
        .virtual_ipaddress
        .push("198.18.0.101/24".parse().unwrap());
    let mut two_backup = two.clone();
    two_backup.instances[0].priority = 100;
    sim.reload(1, &two_backup);
    sim.reload(0, &two);
    sim.run_for(ms(3000));
    // Now the first VIP goes.
    let mut one = config(200, Version::V3);
    one.instances[0].virtual_ipaddress = vec!["198.18.0.101/24".parse().unwrap()];
    let mut one_backup = one.clone();
    one_backup.instances[0].priority = 100;
    let t = sim.now;
    sim.reload(1, &one_backup);
    sim.reload(0, &one);
    let (transitions, _, announces, _) = since(&sim, 0, t);
    assert_eq!(transitions, 0);
    assert!(announces.is_empty(), "nothing was added: {announces:?}");
    assert_eq!(
        sim.nodes[0].removed,
        vec![(0, vec![VIP.parse::<VipConfig>().unwrap()])]
    );
    assert!(sim.holds(0));
}

#[test]
fn sighup_with_an_unchanged_file_changes_no_state_and_sends_no_gratuitous_arp() {
    let mut sim = settled_pair();
    let notifies = [sim.nodes[0].notifies.len(), sim.nodes[1].notifies.len()];
    let t = sim.now;
    sim.reload(1, &config(100, Version::V3));
    sim.reload(0, &config(200, Version::V3));
    sim.run_for(ms(20_000));
    for (n, before) in notifies.into_iter().enumerate() {
        let (transitions, notified, announces, _) = since(&sim, n, t);
        assert_eq!(transitions, 0, "node {n}");
        assert_eq!(notified, before, "node {n}");
        assert!(announces.is_empty(), "node {n}: {announces:?}");
    }
    // The MASTER's one extra advert is keepalived's (before and after the reload); the
    // counters survive the reload.
    let (_, _, _, adverts) = since(&sim, 0, t);
    assert_eq!(adverts[0].0, t);
    assert_eq!(adverts[1].0, t);
    assert_eq!(adverts[2].0, t + ms(1000));
    assert!(sim.nodes[0].node.counters(0).unwrap().became_master == 1);
}

#[test]
fn sighup_lowering_the_master_below_the_backup_hands_over_by_preemption() {
    let mut sim = settled_pair();
    let t = sim.now;
    sim.reload(0, &config(50, Version::V3));
    // Still MASTER right after the reload (keepalived does not resign on reload) ...
    assert_eq!(sim.state(0), State::Master);
    assert_eq!(since(&sim, 0, t).0, 0);
    // ... until the BACKUP, which preempts a lower priority, takes over after its
    // Master_Down_Interval.
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(1), State::Master);
    assert_eq!(sim.state(0), State::Backup);
    assert!(sim.holds(1) && !sim.holds(0));
}

#[test]
fn sighup_raising_the_backup_above_the_master_preempts() {
    let mut sim = settled_pair();
    let t = sim.now;
    sim.reload(1, &config(250, Version::V3));
    assert_eq!(
        sim.state(1),
        State::Backup,
        "no state change on the reload itself"
    );
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(1), State::Master);
    assert_eq!(sim.state(0), State::Backup);
    let took = sim.entered(1, State::Master).unwrap() - t;
    // The restarted down timer: 3 × 1 s + skew for 250.
    assert!(took <= ms(3100), "{took:?}");
}

#[test]
fn sighup_keeps_a_tracked_scripts_result() {
    let mut c = config(200, Version::V3);
    c.scripts.push(VrrpScriptConfig {
        name: "chk".into(),
        script: vec!["/bin/true".into()],
        interval: ms(1_000),
        timeout: None,
        weight: 0,
        rise: 1,
        fall: 1,
        init_fail: false,
    });
    c.instances[0].track_script.push(TrackScriptConfig {
        name: "chk".into(),
        weight: Some(-150),
    });
    c.validate().unwrap();
    let mut sim = Sim::new();
    sim.add(&c, 2);
    sim.add(&config(100, Version::V3), 1);
    sim.event(
        0,
        Event::ScriptResult {
            script: 0,
            success: false,
        },
    );
    sim.run_for(ms(10_000));
    // 200 − 150 = 50 < 100: the other node is MASTER.
    assert_eq!(sim.nodes[0].node.effective_priority(0), Some(50));
    assert_eq!(sim.state(1), State::Master);
    // A reload with another priority keeps the failed result: 210 − 150 = 60.
    let mut c2 = c.clone();
    c2.instances[0].priority = 210;
    sim.reload(0, &c2);
    assert_eq!(sim.nodes[0].node.effective_priority(0), Some(60));
    sim.run_for(ms(10_000));
    assert_eq!(sim.state(1), State::Master);
    assert_eq!(sim.state(0), State::Backup);
}

#[test]
fn sighup_keeps_a_master_sync_group_master_without_group_notifications() {
    let mut sim = Sim::new();
    let a = sim.add(&group_config(200), 2);
    let b = sim.add(&group_config(100), 1);
    sim.run_for(ms(10_000));
    assert_eq!(sim.nodes[a].node.group_state(0), Some(State::Master));
    let notifies = sim.nodes[a].notifies.len();
    let t = sim.now;
    sim.reload(a, &group_config(180));
    sim.run_for(ms(10_000));
    assert_eq!(sim.nodes[a].node.group_state(0), Some(State::Master));
    assert_eq!(sim.nodes[b].node.group_state(0), Some(State::Backup));
    assert_eq!(since(&sim, a, t).0, 0, "no member changed state");
    assert_eq!(sim.nodes[a].notifies.len(), notifies, "no GROUP notify");
    for i in 0..2 {
        assert_eq!(sim.nodes[a].node.effective_priority(i), Some(180));
    }
}

#[test]
fn sighup_adding_a_tracked_interface_that_is_down_takes_the_master_to_fault() {
    let mut sim = settled_pair();
    sim.event(
        0,
        Event::Interface {
            name: "eth9",
            up: false,
        },
    );
    assert_eq!(sim.state(0), State::Master, "eth9 is not tracked yet");
    let mut c = config(200, Version::V3);
    c.instances[0].track_interface = vec![TrackInterfaceConfig {
        name: "eth9".into(),
        weight: 0,
    }];
    sim.reload(0, &c);
    // keepalived too: the new tracking puts the instance in FAULT and its addresses go,
    // without a priority-0 advert (vrrp_init_state after a reload), so the BACKUP takes
    // over after its Master_Down_Interval from the last advert heard.
    let t = sim.now;
    assert_eq!(sim.state(0), State::Fault);
    assert!(!sim.holds(0));
    let priorities: Vec<u8> = since(&sim, 0, t)
        .3
        .iter()
        .map(|(_, r)| r.priority)
        .collect();
    assert_eq!(priorities, [200], "the reload's advert only");
    sim.run_for(ms(5000));
    assert_eq!(sim.state(1), State::Master);
    let mdi = sim.nodes[1].node.master_down_interval(0).unwrap();
    assert_eq!(sim.entered(1, State::Master), Some(t + mdi));
}
