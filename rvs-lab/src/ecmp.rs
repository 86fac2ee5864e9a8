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
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use crate::dr::{LB_UPLINK_IF, ROUTER_LB_ADDR, ROUTER_LB_IF, ROUTER_SEGMENT_ADDR};
use crate::netns::{ChildGuard, Netns, unique_prefix};
use crate::topo;

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

/// One director of an [`EcmpLab`] (the same type as [`ha::Director`](crate::ha::Director)).
pub use crate::topo::Director as EcmpDirector;

impl EcmpDirector {
    /// The `[bgp]` section for this director's rvsd (its BIRD's files under `dir`): one
    /// session to the router with `detection`'s timers, `drain_seconds` on SIGTERM.
    pub fn bgp_toml(&self, dir: &Path, detection: Detection, drain_seconds: u32) -> String {
        let mut t = format!(
            "[bgp]\nlocal_as = {DIRECTOR_AS}\nrouter_id = \"{id}\"\nconfig = \"{dir}/lb{i}-bird.conf\"\nsocket = \"{dir}/lb{i}-bird.ctl\"\ndrain_seconds = {drain_seconds}\n",
            id = self.uplink_addr(),
            dir = dir.display(),
            i = self.index()
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
        topo::check_sizes("an ECMP lab", real_servers, vips)?;
        ensure!(
            detection.hold() >= 3,
            "the router's hold time must be at least 3 s"
        );
        crate::netns::cleanup_stale().ok();
        let prefix = unique_prefix();
        let make = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let client = make("client")?;
        let router = make("router")?;
        let switch = make("switch")?;
        let ds = topo::make_directors(directors, make)?;
        let rs = topo::make_real_servers(real_servers, make)?;
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
        // ECMP by the 5-tuple (L4 hash), not by addresses only: flows of one client
        // spread over the directors.
        self.router
            .sysctl("net.ipv4.fib_multipath_hash_policy", "1")?;
        topo::director_links(
            &self.client,
            &self.router,
            &self.switch,
            &self.directors,
            &self.real_servers,
            false,
        )?;
        topo::real_servers(
            &self.switch,
            &self.real_servers,
            ROUTER_SEGMENT_ADDR,
            Some(&self.vips),
        )
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
                i = dir.index(),
                addr = dir.uplink_addr(),
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
            .map(EcmpDirector::uplink_addr)
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
            .map(EcmpDirector::switch_port)
            .collect()
    }
    /// Starts an HTTP responder on `port` of every real server, answering with its name.
    pub fn serve_http(&self, port: u16) -> Result<Vec<crate::HttpResponder>> {
        topo::serve_http(&self.real_servers, port)
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
