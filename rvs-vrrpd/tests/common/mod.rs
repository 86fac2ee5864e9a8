//! The VRRP lab: a switch namespace (bridge `br0`) with a client and two or three node
//! namespaces on it, each on `eth0` with 198.18.50.x/24 and fd00:50::x/64; helpers to run
//! `rvs-vrrpd` and the real keepalived in a node, to kill a node the way a crash does, to
//! watch addresses and neighbour entries, and a client polling the VIP over HTTP.
//!
//! (Kept here rather than in rvs-lab: only the VRRP tests use this topology.)

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use rvs_lab::{ChildGuard, HttpResponder, Netns, cleanup_stale, http_get, unique_prefix};

/// The virtual IPv4 address the tests fail over.
pub const VIP: &str = "198.18.50.200";
/// The virtual IPv6 address.
pub const VIP6: &str = "fd00:50::200";
/// The port the responders listen on.
pub const HTTP_PORT: u16 = 8080;

static CLEANUP: Once = Once::new();

/// One node namespace.
pub struct Node {
    pub name: String,
    pub ns: Netns,
    pub addr: String,
    pub addr6: String,
    pub responder: Option<HttpResponder>,
}

impl Node {
    /// Whether `eth0` holds `ip`.
    pub fn holds(&self, ip: &str) -> Result<bool> {
        let out = self.ns.exec(&["ip", "-o", "addr", "show", "dev", "eth0"])?;
        Ok(out
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(ip)))
    }

    /// The MAC of `eth0`.
    pub fn mac(&self) -> Result<String> {
        let m = self.ns.mac("eth0")?;
        Ok(m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"))
    }

    /// A crash: the link goes down (after the process was SIGKILLed) so the node neither
    /// sends nor answers; its VIP, if any, stays configured as on a dead machine.
    pub fn link_down(&self) -> Result<()> {
        self.ns.exec(&["ip", "link", "set", "eth0", "down"])?;
        Ok(())
    }

    /// The node is back.
    pub fn link_up(&self) -> Result<()> {
        self.ns.exec(&["ip", "link", "set", "eth0", "up"])?;
        Ok(())
    }
}

/// The lab; every namespace is deleted on drop.
pub struct Lab {
    pub prefix: String,
    pub client: Netns,
    pub nodes: Vec<Node>,
    pub switch: Netns,
    files: Vec<PathBuf>,
    vrrp_pid_files: std::collections::BTreeMap<usize, PathBuf>,
}

fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.exec(&[
        "ip",
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.exec(&["ip", "link", "set", a_if, "up"])?;
    b.exec(&["ip", "link", "set", b_if, "up"])?;
    Ok(())
}

impl Lab {
    /// Builds the lab with `nodes` nodes (n1, n2, ...), each running an HTTP responder
    /// on every address, port [`HTTP_PORT`], answering its name.
    pub fn new(nodes: usize) -> Result<Lab> {
        CLEANUP.call_once(|| {
            let _ = cleanup_stale();
        });
        let prefix = unique_prefix();
        let mk = |role: &str| Netns::new(&format!("{prefix}-{role}"));
        let switch = mk("sw")?;
        let client = mk("cl")?;
        let mut list = Vec::new();
        for n in 1..=nodes {
            let name = format!("n{n}");
            list.push(Node {
                ns: mk(&name)?,
                addr: format!("198.18.50.{n}"),
                addr6: format!("fd00:50::{n}"),
                name,
                responder: None,
            });
        }
        let lab = Lab {
            prefix,
            client,
            nodes: list,
            switch,
            files: Vec::new(),
            vrrp_pid_files: Default::default(),
        };
        lab.wire()
            .with_context(|| format!("building VRRP lab {}", lab.prefix))?;
        let mut lab = lab;
        for node in &mut lab.nodes {
            let any = SocketAddr::from(([0u16; 8], HTTP_PORT));
            node.responder = Some(HttpResponder::spawn(&node.ns, any, &node.name)?);
        }
        Ok(lab)
    }

    fn wire(&self) -> Result<()> {
        let sw = &self.switch;
        sw.exec(&[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
        ])?;
        // No multicast snooping: every port sees 224.0.0.18 / ff02::12.
        sw.exec(&[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        sw.exec(&["ip", "link", "set", "br0", "up"])?;
        let mut hosts: Vec<(&Netns, String, String, String)> = vec![(
            &self.client,
            "scl".to_owned(),
            "198.18.50.100/24".to_owned(),
            "fd00:50::100/64".to_owned(),
        )];
        for n in &self.nodes {
            hosts.push((
                &n.ns,
                format!("s{}", n.name),
                format!("{}/24", n.addr),
                format!("{}/64", n.addr6),
            ));
        }
        for (ns, port, v4, v6) in hosts {
            // Addresses usable at once: no duplicate address detection in the lab.
            for key in [
                "net.ipv6.conf.all.accept_dad",
                "net.ipv6.conf.default.accept_dad",
            ] {
                ns.sysctl(key, "0")?;
            }
            veth(ns, "eth0", sw, &port)?;
            sw.exec(&["ip", "link", "set", &port, "master", "br0"])?;
            ns.exec(&["ip", "addr", "add", &v4, "dev", "eth0"])?;
            ns.exec(&["ip", "addr", "add", &v6, "dev", "eth0", "nodad"])?;
        }
        Ok(())
    }

    /// Writes `text` to a per-lab file named `name` and returns its path (deleted on
    /// drop).
    pub fn file(&mut self, name: &str, text: &str) -> Result<PathBuf> {
        let path = std::env::temp_dir().join(format!("{}-{name}", self.prefix));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        self.files.push(path.clone());
        Ok(path)
    }

    /// Starts `rvs-vrrpd` with `config` (TOML) in node `n` (0-based); returns when it is
    /// running.
    pub fn rvs(&mut self, n: usize, config: &str) -> Result<ChildGuard> {
        let path = self.file(&format!("{}-rvs.toml", self.nodes[n].name), config)?;
        let bin = env!("CARGO_BIN_EXE_rvs-vrrpd");
        let p = path.to_string_lossy().into_owned();
        let mut child = self.nodes[n].ns.spawn(&[bin, "--config", &p])?;
        child.wait_for_output("rvs-vrrpd ready", 1, Duration::from_secs(10))?;
        Ok(child)
    }

    /// Starts `rvs-vrrpd --keepalived` on the keepalived.conf `conf` in node `n`; returns
    /// when it is running.
    pub fn rvs_keepalived_conf(&mut self, n: usize, conf: &str) -> Result<ChildGuard> {
        let path = self.file(&format!("{}-rvs-keepalived.conf", self.nodes[n].name), conf)?;
        let bin = env!("CARGO_BIN_EXE_rvs-vrrpd");
        let p = path.to_string_lossy().into_owned();
        let mut child = self.nodes[n].ns.spawn(&[bin, "--keepalived", &p])?;
        child.wait_for_output("rvs-vrrpd ready", 1, Duration::from_secs(10))?;
        Ok(child)
    }

    /// Starts the real keepalived (VRRP only) with `conf` in node `n`.
    pub fn keepalived(&mut self, n: usize, conf: &str) -> Result<ChildGuard> {
        let name = self.nodes[n].name.clone();
        let conf_path = self.file(&format!("{name}-keepalived.conf"), conf)?;
        // Fresh pid files per start: a crashed run's files would make keepalived think
        // it is still running.
        let k = self.files.len();
        let pid = std::env::temp_dir().join(format!("{}-{name}-ka{k}.pid", self.prefix));
        let vpid = std::env::temp_dir().join(format!("{}-{name}-ka{k}-vrrp.pid", self.prefix));
        self.vrrp_pid_files.insert(n, vpid.clone());
        self.files.push(pid.clone());
        self.files.push(vpid.clone());
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let check = std::process::Command::new("keepalived")
            .args(["--config-test", "-f", &s(&conf_path)])
            .output()
            .context("running keepalived --config-test")?;
        if !check.status.success() {
            bail!(
                "keepalived rejects the test's config: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
        let mut child = self.nodes[n].ns.spawn(&[
            "keepalived",
            "-P",
            "-n",
            "-l",
            "-D",
            "-f",
            &s(&conf_path),
            "-p",
            &s(&pid),
            "-r",
            &s(&vpid),
        ])?;
        child.wait_for_output("Entering", 1, Duration::from_secs(15))?;
        Ok(child)
    }

    /// Crashes keepalived in node `n`: SIGKILL to its VRRP child (pid from its pid file;
    /// otherwise the child outlives the parent, which it watches, and resigns cleanly)
    /// and then to `parent`.
    pub fn kill_keepalived(&self, n: usize, parent: &mut ChildGuard) -> Result<()> {
        let vpid = self
            .vrrp_pid_files
            .get(&n)
            .context("keepalived was not started in that node")?;
        let text =
            std::fs::read_to_string(vpid).with_context(|| format!("reading {}", vpid.display()))?;
        let pid: i32 = text.trim().parse().context("VRRP child pid")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
            .context("killing keepalived's VRRP child")?;
        sigkill(parent)
    }

    /// The MAC the client's neighbour table has for `ip`, if any.
    pub fn client_neigh(&self, ip: &str) -> Result<Option<String>> {
        let out = self
            .client
            .exec(&["ip", "neigh", "show", ip, "dev", "eth0"])?;
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return Ok(words.next().map(str::to_owned));
            }
        }
        Ok(None)
    }

    /// One HTTP GET of the VIP from the client: the name of the node that answered.
    pub fn ask(&self, vip: &str) -> Result<String> {
        let ip: IpAddr = vip.parse()?;
        http_get(&self.client, SocketAddr::new(ip, HTTP_PORT))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Polls `cond` every 10 ms until it holds (returns how long that took) or `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if cond()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("condition not met within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Checks that `cond` holds during all of `duration`.
pub fn holds_for(duration: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < duration {
        if !cond()? {
            bail!("condition broke after {:?}", start.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// SIGKILLs a child.
pub fn sigkill(child: &mut ChildGuard) -> Result<()> {
    child.signal(Signal::SIGKILL)?;
    let _ = wait_until(Duration::from_secs(5), || Ok(!child.is_running()));
    Ok(())
}

/// When a request finished and who answered (or why it failed).
pub type Answer = (Instant, Result<String, String>);

/// A client asking the VIP over HTTP in a loop (every 50 ms, at most 2 000 requests)
/// until stopped; records who answered when.
pub struct ClientLoop {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Answer>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl ClientLoop {
    /// Starts asking `vip` from the lab's client.
    pub fn start(lab: &Lab, vip: &str) -> Result<ClientLoop> {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let path = lab.client.path().to_owned();
        let addr = SocketAddr::new(vip.parse()?, HTTP_PORT);
        let (s, l) = (Arc::clone(&stop), Arc::clone(&log));
        let handle = thread::spawn(move || {
            // Enter the client namespace on this thread.
            let Ok(f) = std::fs::File::open(&path) else {
                return;
            };
            if nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                return;
            }
            for _ in 0..2_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let r = get(addr).map_err(|e| format!("{e:#}"));
                if let Ok(mut v) = l.lock() {
                    v.push((Instant::now(), r));
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        Ok(ClientLoop {
            stop,
            log,
            handle: Some(handle),
        })
    }

    /// Answers so far.
    pub fn log(&self) -> Vec<Answer> {
        self.log.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits until `name` has answered `n` times in a row after `since`.
    pub fn wait_for(
        &self,
        name: &str,
        n: usize,
        since: Instant,
        timeout: Duration,
    ) -> Result<Duration> {
        wait_until(timeout, || {
            let log = self.log();
            let after: Vec<_> = log.iter().filter(|(t, _)| *t >= since).collect();
            Ok(after.len() >= n
                && after[after.len() - n..]
                    .iter()
                    .all(|(_, r)| r.as_deref() == Ok(name)))
        })
        .with_context(|| {
            format!(
                "client never saw {name} answer {n} times: {:?}",
                self.log().iter().rev().take(5).collect::<Vec<_>>()
            )
        })
    }
}

impl Drop for ClientLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One HTTP GET on a new connection (in the calling thread's namespace) with short
/// timeouts; the body, trimmed.
fn get(addr: SocketAddr) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.set_write_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("status {head:?}");
    }
    Ok(body.trim().to_owned())
}

/// Lines of `output` that report a protocol problem: keepalived's messages about bad
/// adverts (strings from keepalived/vrrp/vrrp.c: "invalid", "wrong version", "mismatch",
/// "Checksum ERROR", "unexpected", "not present in MASTER advert", "too short"/"too long",
/// "Expected ...icast", "bogus") and rvs's "dropped" lines.
pub fn protocol_errors(output: &str) -> Vec<String> {
    const NEEDLES: [&str; 14] = [
        "invalid",
        "wrong version",
        "mismatch",
        "checksum error",
        "invalid vrrpv",
        "unexpected",
        "not present in master advert",
        "too short",
        "too long",
        "icast packet",
        "bogus",
        "bad ",
        " dropped",
        "error",
    ];
    output
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            NEEDLES.iter().any(|n| l.contains(n))
        })
        .map(str::to_owned)
        .collect()
}
