//! The ECMP lab: N active directors behind a router that runs BIRD, learns each VIP from
//! every director over BGP and spreads flows over them with an L4 hash (multipath route,
//! `net.ipv4.fib_multipath_hash_policy = 1`). Built by one call, deleted on drop; the
//! router's BIRD runs with its own `-c` config and `-s` socket in a per-lab temp dir and
//! is killed on drop.
//!
//! ```text
//!  client c0 198.18.1.2 ── rc 198.18.1.1  router (BIRD, AS 65000)
//!                          rl 198.18.3.1 ── uplink bridge ubr ── lbN up0 198.18.3.(1+N)  (BGP, XDP in)
//!                          rs 198.18.2.254 ── DR switch br0 ──── lbN seg0 198.18.2.N     (DR out)
//!                                                             └─ rsN eth0 198.18.2.(10+N)
//! ```
//!
//! The directors (AS 65001 each) sit on the real servers' segment and forward by direct
//! routing; the real servers hold the VIPs on `lo` and answer the client through the
//! router. Each director's `seg0` peer on the switch (`slbN`) needs an XDP_PASS program for
//! redirected frames to arrive ([`EcmpLab::switch_lb_ports`], the veth fact in DESIGN.md).
//! The uplink bridge does not flood unknown unicast to the directors, so a flow the router
//! sends to one director never reaches another one by flooding.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use crate::dr::{
    CLIENT_ADDR, CLIENT_IF, LB_SEGMENT_IF, LB_UPLINK_IF, MAX_REAL_SERVERS, ROUTER_CLIENT_ADDR,
    ROUTER_CLIENT_IF, ROUTER_LB_ADDR, ROUTER_LB_IF, ROUTER_SEGMENT_ADDR, ROUTER_SEGMENT_IF, RS_IF,
    SWITCH_BRIDGE, SWITCH_ROUTER_PORT, VIP_NET, rs_addr,
};
use crate::ha::{UPLINK_BRIDGE, UPLINK_ROUTER_PORT};
use crate::netns::{ChildGuard, Netns, unique_prefix};
use crate::wire::{address, veth};

/// The router's AS.
pub const ROUTER_AS: u32 = 65000;
/// Every director's AS.
pub const DIRECTOR_AS: u32 = 65001;
/// Most directors a lab can have.
pub const MAX_DIRECTORS: usize = 8;

/// How the router detects a dead director.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// BFD (interval in ms, multiplier 3) besides a hold timer of `hold` seconds.
    Bfd {
        /// BFD interval, milliseconds.
        interval_ms: u32,
        /// BGP hold time, seconds.
        hold: u16,
    },
    /// The BGP hold timer only (seconds, ≥ 3).
    HoldTimer {
        /// BGP hold time, seconds.
        hold: u16,
    },
}

impl Detection {
    /// The BGP hold time.
    pub fn hold(self) -> u16 {
        match self {
            Detection::Bfd { hold, .. } | Detection::HoldTimer { hold } => hold,
        }
    }
    /// Whether BFD runs.
    pub fn bfd(self) -> Option<u32> {
        match self {
            Detection::Bfd { interval_ms, .. } => Some(interval_ms),
            Detection::HoldTimer { .. } => None,
        }
    }
}

/// One director of an [`EcmpLab`].
#[derive(Debug)]
pub struct EcmpDirector {
    ns: Netns,
    index: usize,
    uplink_addr: Ipv4Addr,
    segment_addr: Ipv4Addr,
}

impl EcmpDirector {
    /// Its namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
    /// Its number, 1-based.
    pub fn index(&self) -> usize {
        self.index
    }
    /// Its uplink (`up0`) address: BGP session, router id and next hop.
    pub fn uplink_addr(&self) -> Ipv4Addr {
        self.uplink_addr
    }
    /// Its segment (`seg0`) address.
    pub fn segment_addr(&self) -> Ipv4Addr {
        self.segment_addr
    }
    /// Takes its uplink down (`up = false`) or up, as a cable pulled or put back.
    pub fn set_uplink(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.ns.exec(&["ip", "link", "set", LB_UPLINK_IF, state])?;
        if up {
            self.ns.exec(&[
                "ip",
                "route",
                "replace",
                "default",
                "via",
                &ROUTER_LB_ADDR.to_string(),
            ])?;
        }
        Ok(())
    }
    /// The `[bgp]` section for this director's rvsd (its BIRD's files under `dir`): one
    /// session to the router with `detection`'s timers, `drain_seconds` on SIGTERM.
    pub fn bgp_toml(&self, dir: &Path, detection: Detection, drain_seconds: u32) -> String {
        let mut t = format!(
            "[bgp]\nlocal_as = {DIRECTOR_AS}\nrouter_id = \"{id}\"\nconfig = \"{dir}/lb{i}-bird.conf\"\nsocket = \"{dir}/lb{i}-bird.ctl\"\ndrain_seconds = {drain_seconds}\n",
            id = self.uplink_addr,
            dir = dir.display(),
            i = self.index
        );
        if let Some(ms) = detection.bfd() {
            t += &format!("\n[bgp.bfd]\ninterval_ms = {ms}\nmultiplier = 3\n");
        }
        t += &format!(
            "\n[[bgp.peer]]\naddress = \"{ROUTER_LB_ADDR}\"\nas = {ROUTER_AS}\nhold_time = {}\nbfd = {}\n",
            detection.hold(),
            detection.bfd().is_some()
        );
        t
    }
}

/// Client, router (BIRD), N directors, switch and real servers.
pub struct EcmpLab {
    prefix: String,
    vips: Vec<Ipv4Addr>,
    client: Netns,
    router: Netns,
    switch: Netns,
    directors: Vec<EcmpDirector>,
    real_servers: Vec<crate::RealServer>,
    dir: PathBuf,
    detection: Detection,
    bird: Option<ChildGuard>,
}

impl std::fmt::Debug for EcmpLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcmpLab")
            .field("prefix", &self.prefix)
            .field("directors", &self.directors.len())
            .field("real_servers", &self.real_servers.len())
            .finish()
    }
}

impl EcmpLab {
    /// Builds the lab with `directors` directors, `real_servers` real servers holding
    /// `vips`, and the router's BIRD peering with every director (`detection`'s timers).
    pub fn new(
        directors: usize,
        real_servers: usize,
        vips: &[Ipv4Addr],
        detection: Detection,
    ) -> Result<EcmpLab> {
        ensure!(
            (1..=MAX_DIRECTORS).contains(&directors),
            "an ECMP lab needs 1..={MAX_DIRECTORS} directors, not {directors}"
        );
        ensure!(
            (1..=MAX_REAL_SERVERS).contains(&real_servers),
            "an ECMP lab needs 1..={MAX_REAL_SERVERS} real servers, not {real_servers}"
        );
        ensure!(
            detection.hold() >= 3,
            "the router's hold time must be at least 3 s"
        );
        for vip in vips {
            ensure!(
                vip.octets()[..3] == VIP_NET.octets()[..3],
                "VIP {vip} is not in {VIP_NET}/24"
            );
        }
        crate::netns::cleanup_stale().ok();
        let prefix = unique_prefix();
        let make = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let client = make("client")?;
        let router = make("router")?;
        let switch = make("switch")?;
        let mut ds = Vec::new();
        for i in 1..=directors {
            let n = u8::try_from(i).context("director index")?;
            ds.push(EcmpDirector {
                ns: make(&format!("lb{i}"))?,
                index: i,
                uplink_addr: Ipv4Addr::new(198, 18, 3, 1 + n),
                segment_addr: Ipv4Addr::new(198, 18, 2, n),
            });
        }
        let mut rs = Vec::with_capacity(real_servers);
        for index in 1..=real_servers {
            let name = format!("rs{index}");
            let addr = rs_addr(index).context("real server index out of range")?;
            rs.push(crate::RealServer::new(make(&name)?, index, name, addr));
        }
        let dir = std::env::temp_dir().join(format!("{prefix}-ecmp"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut lab = EcmpLab {
            prefix,
            vips: vips.to_vec(),
            client,
            router,
            switch,
            directors: ds,
            real_servers: rs,
            dir,
            detection,
            bird: None,
        };
        lab.wire()
            .with_context(|| format!("building ECMP lab {}", lab.prefix))?;
        lab.start_router_bird()
            .with_context(|| format!("starting the router's BIRD in {}", lab.prefix))?;
        Ok(lab)
    }

    fn wire(&self) -> Result<()> {
        let mut all: Vec<&Netns> = vec![&self.client, &self.router, &self.switch];
        all.extend(self.directors.iter().map(|d| &d.ns));
        all.extend(self.real_servers.iter().map(|r| r.ns()));
        for ns in &all {
            for (key, value) in [
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
            ] {
                ns.sysctl(key, value)?;
            }
        }
        self.router.sysctl("net.ipv4.ip_forward", "1")?;
        // ECMP by the 5-tuple (L4 hash), not by addresses only: flows of one client
        // spread over the directors.
        self.router
            .sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;
        let sw = &self.switch;
        for bridge in [SWITCH_BRIDGE, UPLINK_BRIDGE] {
            sw.exec(&[
                "ip",
                "link",
                "add",
                bridge,
                "type",
                "bridge",
                "stp_state",
                "0",
            ])?;
            sw.exec(&["ip", "link", "set", bridge, "up"])?;
        }
        let port = |name: &str, bridge: &str| -> Result<()> {
            sw.exec(&["ip", "link", "set", name, "master", bridge])?;
            sw.exec(&["ip", "link", "set", name, "up"])?;
            Ok(())
        };
        veth(&self.client, CLIENT_IF, &self.router, ROUTER_CLIENT_IF)?;
        veth(&self.router, ROUTER_LB_IF, sw, UPLINK_ROUTER_PORT)?;
        port(UPLINK_ROUTER_PORT, UPLINK_BRIDGE)?;
        veth(&self.router, ROUTER_SEGMENT_IF, sw, SWITCH_ROUTER_PORT)?;
        port(SWITCH_ROUTER_PORT, SWITCH_BRIDGE)?;
        for d in &self.directors {
            let (up, seg) = (format!("ulb{}", d.index), format!("slb{}", d.index));
            veth(&d.ns, LB_UPLINK_IF, sw, &up)?;
            port(&up, UPLINK_BRIDGE)?;
            sw.exec(&["bridge", "link", "set", "dev", &up, "flood", "off"])?;
            veth(&d.ns, LB_SEGMENT_IF, sw, &seg)?;
            port(&seg, SWITCH_BRIDGE)?;
            address(&d.ns, LB_UPLINK_IF, d.uplink_addr, 24)?;
            address(&d.ns, LB_SEGMENT_IF, d.segment_addr, 24)?;
            d.ns.exec(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &ROUTER_LB_ADDR.to_string(),
            ])?;
        }
        for rs in &self.real_servers {
            veth(rs.ns(), RS_IF, sw, &rs.switch_port())?;
            port(&rs.switch_port(), SWITCH_BRIDGE)?;
        }
        address(&self.client, CLIENT_IF, CLIENT_ADDR, 24)?;
        self.client.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &ROUTER_CLIENT_ADDR.to_string(),
        ])?;
        address(&self.router, ROUTER_CLIENT_IF, ROUTER_CLIENT_ADDR, 24)?;
        address(&self.router, ROUTER_LB_IF, ROUTER_LB_ADDR, 24)?;
        address(&self.router, ROUTER_SEGMENT_IF, ROUTER_SEGMENT_ADDR, 24)?;
        for rs in &self.real_servers {
            address(rs.ns(), RS_IF, rs.addr(), 24)?;
            rs.ns().exec(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &ROUTER_SEGMENT_ADDR.to_string(),
            ])?;
            for vip in &self.vips {
                rs.ns()
                    .exec(&["ip", "addr", "add", &format!("{vip}/32"), "dev", "lo"])?;
            }
            for conf in ["all", RS_IF] {
                rs.ns()
                    .sysctl(&format!("net.ipv4.conf.{conf}.arp_ignore"), "1")?;
                rs.ns()
                    .sysctl(&format!("net.ipv4.conf.{conf}.arp_announce"), "2")?;
            }
        }
        Ok(())
    }

    /// The router's BIRD configuration: a session per director, routes merged into one
    /// multipath kernel route per VIP.
    pub fn router_bird_conf(&self) -> String {
        let d = self.detection;
        let mut c = format!(
            "log stderr {{ info, remote, warning, error, auth, fatal, bug }};\n\
             timeformat protocol \"%T\";\n\
             router id {ROUTER_LB_ADDR};\n\n\
             protocol device {{\n  scan time 1;\n}}\n\n\
             # One ECMP route per VIP over every director that announces it.\n\
             protocol kernel {{\n  ipv4 {{\n    import none;\n    export all;\n  }};\n  merge paths on;\n}}\n\n"
        );
        if let Some(ms) = d.bfd() {
            c += &format!(
                "protocol bfd {{\n  interface \"{ROUTER_LB_IF}\" {{\n    min rx interval {ms} ms;\n    min tx interval {ms} ms;\n    idle tx interval 1000 ms;\n    multiplier 3;\n  }};\n}}\n\n"
            );
        }
        for dir in &self.directors {
            c += &format!(
                "protocol bgp lb{i} {{\n  local {ROUTER_LB_ADDR} as {ROUTER_AS};\n  neighbor {addr} as {DIRECTOR_AS};\n  direct;\n  hold time {hold};\n  keepalive time {ka};\n  connect retry time 2;\n  error wait time 1, 16;\n{bfd}  ipv4 {{\n    import all;\n    export none;\n  }};\n}}\n\n",
                i = dir.index,
                addr = dir.uplink_addr,
                hold = d.hold(),
                ka = (d.hold() / 3).max(1),
                bfd = if d.bfd().is_some() { "  bfd on;\n" } else { "" },
            );
        }
        c
    }

    fn start_router_bird(&mut self) -> Result<()> {
        let conf = self.dir.join("router-bird.conf");
        std::fs::write(&conf, self.router_bird_conf())
            .with_context(|| format!("writing {}", conf.display()))?;
        let sock = self.router_socket();
        let (c, s) = (conf.display().to_string(), sock.display().to_string());
        let mut child = self
            .router
            .spawn(&["/usr/sbin/bird", "-f", "-c", &c, "-s", &s])
            .context("starting bird (install bird2: scripts/setup.sh)")?;
        let end = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if !child.is_running() {
                bail!("the router's bird exited:\n{}", child.output());
            }
            ensure!(
                Instant::now() < end,
                "the router's bird opened no control socket within 10 s:\n{}",
                child.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.bird = Some(child);
        Ok(())
    }

    /// The router's BIRD control socket (for `birdc -s`).
    pub fn router_socket(&self) -> PathBuf {
        self.dir.join("router-bird.ctl")
    }

    /// The router BIRD's output so far.
    pub fn router_bird_output(&self) -> String {
        self.bird
            .as_ref()
            .map(ChildGuard::output)
            .unwrap_or_default()
    }

    /// The next hops (director uplink addresses) of the router's kernel route to `vip`;
    /// empty when no director announces it.
    pub fn next_hops(&self, vip: Ipv4Addr) -> Result<Vec<Ipv4Addr>> {
        let out = self
            .router
            .exec(&["ip", "-4", "route", "show", &format!("{vip}/32")])?;
        let mut hops: Vec<Ipv4Addr> = out
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        hops.sort();
        hops.dedup();
        Ok(hops)
    }

    /// Waits (at most `timeout`) until the router's route to `vip` goes through exactly
    /// the directors `want` (by index); returns how long that took.
    pub fn wait_next_hops(
        &self,
        vip: Ipv4Addr,
        want: &[usize],
        timeout: Duration,
    ) -> Result<Duration> {
        let mut expected: Vec<Ipv4Addr> = want
            .iter()
            .filter_map(|&i| self.directors.get(i.wrapping_sub(1)))
            .map(|d| d.uplink_addr)
            .collect();
        expected.sort();
        let t0 = Instant::now();
        loop {
            let got = self.next_hops(vip)?;
            if got == expected {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                bail!(
                    "route to {vip} via {got:?}, not {expected:?}, after {timeout:?}\nrouter bird:\n{}",
                    self.router_bird_output()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The per-lab prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The per-lab temp dir (BIRD configs and sockets).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The client namespace.
    pub fn client(&self) -> &Netns {
        &self.client
    }
    /// The router namespace.
    pub fn router(&self) -> &Netns {
        &self.router
    }
    /// The switch namespace (both bridges).
    pub fn switch(&self) -> &Netns {
        &self.switch
    }
    /// The directors.
    pub fn directors(&self) -> &[EcmpDirector] {
        &self.directors
    }
    /// The real servers.
    pub fn real_servers(&self) -> &[crate::RealServer] {
        &self.real_servers
    }
    /// The directors' uplink interface (BGP, XDP in).
    pub fn uplink(&self) -> &'static str {
        LB_UPLINK_IF
    }
    /// The switch ports peering each director's `seg0`, which need an XDP_PASS program.
    pub fn switch_lb_ports(&self) -> Vec<String> {
        self.directors
            .iter()
            .map(|d| format!("slb{}", d.index))
            .collect()
    }
    /// Starts an HTTP responder on `port` of every real server, answering with its name.
    pub fn serve_http(&self, port: u16) -> Result<Vec<crate::HttpResponder>> {
        self.real_servers
            .iter()
            .map(|rs| {
                crate::HttpResponder::spawn(
                    rs.ns(),
                    SocketAddr::from(([0, 0, 0, 0], port)),
                    rs.name(),
                )
            })
            .collect()
    }
}

impl Drop for EcmpLab {
    fn drop(&mut self) {
        // BIRD first (its guard stops it), then the files; the namespaces go with their
        // own drops.
        self.bird = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
