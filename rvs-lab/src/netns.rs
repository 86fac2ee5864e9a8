//! Network namespaces as RAII values: create, enter from a thread, run commands inside,
//! delete on drop; plus the per-run naming scheme and clean-up of namespaces left behind
//! by a run that was killed.
//!
//! Lab namespace names look like `rvs<pid>x<seq>-<role>` (e.g. `rvs4242x0-lb`): `rvs` is
//! the lab's marker, `<pid>` the creating process (so [`cleanup_stale`] can tell a dead
//! run's leftovers from a live one's), `<seq>` a per-process counter so several labs in one
//! test binary never collide. Interface names live inside the namespaces and need no
//! prefix, so they stay short (the kernel allows 15 characters).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cmd;

/// The marker that starts every lab namespace name.
pub const NAME_MARKER: &str = "rvs";

/// Directory where `ip netns` keeps the namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// How much of a spawned child's combined stdout/stderr is kept (the tail).
const CHILD_OUTPUT_KEEP: usize = 64 * 1024;

/// How long a spawned child gets between SIGTERM and SIGKILL.
const CHILD_TERM_GRACE: Duration = Duration::from_secs(2);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Names of the namespaces this process holds (registered before `ip netns add`), so
/// [`cleanup_stale`] can tell ours from leftovers of an earlier process with the same pid.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Records (`true`) or forgets (`false`) that this process holds namespace `name`.
fn set_live(name: &str, live: bool) {
    match LIVE.lock() {
        Ok(mut set) if live => {
            set.insert(name.to_owned());
        }
        Ok(mut set) => {
            set.remove(name);
        }
        Err(_) => tracing::error!(netns = %name, "namespace registry poisoned"),
    }
}

/// Whether this process holds namespace `name`.
fn is_live(name: &str) -> bool {
    LIVE.lock().map(|set| set.contains(name)).unwrap_or(true)
}

/// The prefix shared by every lab namespace this process creates: `rvs<pid>x`.
pub fn run_prefix() -> String {
    format!("{NAME_MARKER}{}x", std::process::id())
}

/// A fresh prefix for one lab (unique within this machine while this process lives):
/// `rvs<pid>x<seq>`; namespace names are `<prefix>-<role>`.
pub fn unique_prefix() -> String {
    format!("{}{}", run_prefix(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// The environment switch that lets tests needing root (or a tool such as keepalived)
/// be skipped: `RVS_SKIP_ROOT_TESTS=1`. Without it such a test fails, so a green run
/// means every test ran.
pub const SKIP_ROOT_TESTS: &str = "RVS_SKIP_ROOT_TESTS";

/// Whether a test that needs root can run: true as root; otherwise false (skip, with a
/// notice) when [`SKIP_ROOT_TESTS`] is set to 1, and a panic naming the switch when not.
pub fn root_or_skip(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_or_fail(what, "needs root (creates network namespaces)")
}

/// A test's prerequisite is missing (`why`): returns false (skip, with a notice) when
/// [`SKIP_ROOT_TESTS`] is set to 1, and panics otherwise, so a skipped test is never
/// counted as a pass by accident.
pub fn skip_or_fail(what: &str, why: &str) -> bool {
    if std::env::var(SKIP_ROOT_TESTS).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {what}: {why} ({SKIP_ROOT_TESTS}=1)");
        return false;
    }
    panic!("{what} {why}: run the tests as root, or set {SKIP_ROOT_TESTS}=1 to skip it");
}

/// The pid encoded in a lab namespace name (`rvs<pid>x<seq>-<role>`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_MARKER)?;
    let (pid, rest) = rest.split_once('x')?;
    let (seq, role) = rest.split_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(pid) || !all_digits(seq) || role.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Names of all named network namespaces, as `ip netns list` prints them.
pub fn list_netns() -> Result<Vec<String>> {
    let out = cmd::run(&["ip", "netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Deletes lab namespaces whose creating process no longer exists (a run that was
/// SIGKILLed), killing any process still inside them first; returns how many it deleted.
/// (A leftover whose pid now belongs to another live process stays until that ends.)
pub fn cleanup_stale() -> Result<usize> {
    let me = std::process::id();
    let mut deleted = 0;
    for name in list_netns()? {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        let alive = if pid == me {
            is_live(&name)
        } else {
            Path::new(&format!("/proc/{pid}")).exists()
        };
        if alive {
            continue;
        }
        tracing::info!(netns = %name, owner = pid, "deleting stale lab namespace");
        match delete_netns(&name) {
            Ok(()) => deleted += 1,
            Err(e) => {
                tracing::warn!(netns = %name, error = %format!("{e:#}"), "cannot delete stale namespace")
            }
        }
    }
    deleted += cleanup_stale_pins();
    Ok(deleted)
}

/// The pid in the name of a bpffs directory a test or benchmark of this project pinned
/// into: a lab prefix (`rvs<pid>x<seq>[-role]`) or `rvs-{test,bench,pass}-<pid>[-n]`.
fn pin_owner(name: &str) -> Option<u32> {
    if let Some(pid) = owner_pid(name).or_else(|| owner_pid(&format!("{name}-pin"))) {
        return Some(pid);
    }
    let rest = ["rvs-test-", "rvs-bench-", "rvs-pass-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    rest.split('-').next()?.parse().ok()
}

/// Removes pin directories under /sys/fs/bpf left by dead test runs (a killed test never
/// ran its cleanup); unpinning their links detaches what is still attached.
fn cleanup_stale_pins() -> usize {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return 0;
    };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = pin_owner(&name) else {
            continue;
        };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        if let Ok(files) = std::fs::read_dir(&dir) {
            for f in files.flatten() {
                let _ = std::fs::remove_file(f.path());
            }
        }
        if std::fs::remove_dir(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), owner = pid, "removed stale pins");
            removed += 1;
        }
    }
    removed
}

/// Kills every process (other than this one) whose network namespace is `name`, then
/// removes the namespace handle.
fn delete_netns(name: &str) -> Result<()> {
    let me = std::process::id();
    let pids = cmd::run(&["ip", "netns", "pids", name])?;
    for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        if u32::try_from(pid).ok() == Some(me) {
            continue;
        }
        tracing::warn!(netns = %name, pid, "killing process left in namespace");
        if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
            tracing::warn!(netns = %name, pid, error = %e, "cannot kill process");
        }
    }
    cmd::run(&["ip", "netns", "del", name])?;
    Ok(())
}

/// Moves the calling thread into the network namespace at `path`.
pub(crate) fn enter(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns(CLONE_NEWNET) into {}", path.display()))
}

/// A named network namespace (`ip netns add`), deleted again on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`) and brings its loopback up.
    pub fn new(name: &str) -> Result<Netns> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            bail!("invalid namespace name {name:?}");
        }
        set_live(name, true);
        if let Err(e) = cmd::run(&["ip", "netns", "add", name]) {
            set_live(name, false);
            return Err(e).with_context(|| format!("creating namespace {name}"));
        }
        tracing::debug!(netns = %name, "namespace created");
        // From here on, Drop deletes it, also when the next step fails.
        let ns = Netns {
            name: name.to_owned(),
            path: Path::new(NETNS_DIR).join(name),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace handle's path (`/run/netns/<name>`), e.g. for `setns` by other tools.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a fresh thread that has entered this namespace and returns its result
    /// (a panic in `f` is resumed here). Sockets made in `f` stay in the namespace wherever
    /// they are used later, and threads spawned from `f` start in the namespace too.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let path = self.path.as_path();
        let joined = thread::scope(|s| {
            let handle = thread::Builder::new()
                .name(format!("ns-{}", self.name))
                .spawn_scoped(s, move || -> Result<T> {
                    enter(path)?;
                    Ok(f())
                })?;
            Ok::<_, std::io::Error>(handle.join())
        })
        .with_context(|| format!("cannot start a thread for namespace {}", self.name))?;
        match joined {
            Ok(result) => result.with_context(|| format!("entering namespace {}", self.name)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Runs a command inside the namespace (`ip netns exec`) and returns its stdout; the
    /// error carries the namespace, the command and its stderr.
    pub fn exec(&self, argv: &[&str]) -> Result<String> {
        cmd::run(&self.exec_argv(argv)).with_context(|| format!("in namespace {}", self.name))
    }

    /// Runs a command with only its network namespace switched (unlike [`Netns::exec`],
    /// which also gives it a private mount namespace with its own /sys, where bpffs is not
    /// mounted) and waits for it: for commands that pin BPF objects. Bounded by `timeout`.
    /// The output's `stdout` holds stdout and stderr interleaved; `stderr` is empty.
    pub fn output(&self, argv: &[&str], timeout: Duration) -> Result<std::process::Output> {
        output_at(&self.path, &self.name, argv, timeout)
    }

    /// Starts a long-running command inside the namespace; the returned guard stops it
    /// (SIGTERM, then SIGKILL) when dropped. Only the network namespace changes (unlike
    /// `ip netns exec`, which also gives the command a private mount namespace): a daemon
    /// started here pins BPF objects in the host's bpffs, where they outlive it.
    pub fn spawn(&self, argv: &[&str]) -> Result<ChildGuard> {
        spawn_at(&self.path, &self.name, argv)
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.ip_forward` style key).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key)?;
        self.run(|| std::fs::write(&path, value))?
            .with_context(|| format!("setting {key}={value} in namespace {}", self.name))
    }

    /// Reads a sysctl inside the namespace, trimmed.
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key)?;
        let value = self
            .run(|| std::fs::read_to_string(&path))?
            .with_context(|| format!("reading {key} in namespace {}", self.name))?;
        Ok(value.trim().to_owned())
    }

    /// The ifindex of interface `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        self.run(|| nix::net::if_::if_nametoindex(ifname))?
            .with_context(|| format!("no interface {ifname} in namespace {}", self.name))
    }

    /// The MAC address of interface `ifname` in this namespace.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        let out = self.exec(&["ip", "-o", "link", "show", "dev", ifname])?;
        let text = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .with_context(|| format!("{ifname} in namespace {} has no MAC: {out}", self.name))?;
        parse_mac(text).with_context(|| format!("bad MAC {text:?} of {ifname} in {}", self.name))
    }

    /// `argv` prefixed with `ip netns exec <name>`.
    fn exec_argv<'a>(&'a self, argv: &[&'a str]) -> Vec<&'a str> {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(argv);
        full
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match delete_netns(&self.name) {
            Ok(()) => {
                set_live(&self.name, false);
                tracing::debug!(netns = %self.name, "namespace deleted");
            }
            Err(e) => {
                tracing::error!(netns = %self.name, error = %format!("{e:#}"), "cannot delete namespace")
            }
        }
    }
}

/// [`Netns::spawn`] for the namespace whose handle is `path` (named `name` in messages).
pub(crate) fn spawn_at(path: &Path, name: &str, argv: &[&str]) -> Result<ChildGuard> {
    use std::os::{fd::AsRawFd, unix::process::CommandExt};
    let line = argv.join(" ");
    let (program, args) = argv.split_first().context("empty command")?;
    let netns = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let fd = netns.as_raw_fd();
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure only makes one syscall on an fd that
    // stays open in this process until spawn returns.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{line}` in namespace {}", name))?;
    drop(netns);
    let output = Arc::new(Mutex::new(Vec::new()));
    if let Some(out) = child.stdout.take() {
        drain(out, Arc::clone(&output));
    }
    if let Some(err) = child.stderr.take() {
        drain(err, Arc::clone(&output));
    }
    tracing::debug!(netns = %name, command = %line, pid = child.id(), "spawned");
    Ok(ChildGuard {
        child,
        what: format!("`{line}` in {}", name),
        output,
        done: None,
    })
}

/// [`Netns::output`] for the namespace whose handle is `path` (named `name` in messages).
pub(crate) fn output_at(
    path: &Path,
    name: &str,
    argv: &[&str],
    timeout: Duration,
) -> Result<std::process::Output> {
    let mut child = spawn_at(path, name, argv)?;
    let deadline = Instant::now() + timeout;
    while child.is_running() {
        if Instant::now() > deadline {
            bail!(
                "`{}` in {} did not finish within {timeout:?}",
                argv.join(" "),
                name
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    let status = child.stop()?;
    // The drain threads have the whole output once the pipes closed at exit.
    thread::sleep(Duration::from_millis(20));
    Ok(std::process::Output {
        status,
        stdout: child.output().into_bytes(),
        stderr: Vec::new(),
    })
}

/// `/proc/sys/...` path of a dotted sysctl key.
fn sysctl_path(key: &str) -> Result<PathBuf> {
    if key.is_empty() || key.contains('/') || key.split('.').any(str::is_empty) {
        bail!("invalid sysctl key {key:?}");
    }
    Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Copies a child's pipe into `sink`, keeping only the last [`CHILD_OUTPUT_KEEP`] bytes;
/// the thread ends when the pipe closes.
fn drain(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let Ok(mut buf) = sink.lock() else { break };
                    buf.extend_from_slice(&chunk[..n]);
                    let excess = buf.len().saturating_sub(CHILD_OUTPUT_KEEP);
                    buf.drain(..excess);
                }
            }
        }
    });
}

/// A child process running inside a namespace; stopped (SIGTERM, then SIGKILL after a
/// grace period) on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    what: String,
    output: Arc<Mutex<Vec<u8>>>,
    done: Option<ExitStatus>,
}

impl ChildGuard {
    /// The child's pid (the command itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        if self.done.is_none() {
            self.done = self.child.try_wait().ok().flatten();
        }
        self.done.is_none()
    }

    /// The tail of the child's combined stdout and stderr so far.
    pub fn output(&self) -> String {
        match self.output.lock() {
            Ok(buf) => String::from_utf8_lossy(&buf).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).context("pid out of range")?);
        kill(pid, signal).with_context(|| format!("sending {signal} to {}", self.what))
    }

    /// Waits until the child's output holds `needle` at least `count` times; fails after
    /// `timeout` or if the child exits first, with the output in the error.
    pub fn wait_for_output(&mut self, needle: &str, count: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if out.matches(needle).count() >= count {
                return Ok(());
            }
            if !self.is_running() {
                bail!("{} exited before printing {needle:?}:\n{out}", self.what);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}:\n{out}",
                    self.what
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the child (SIGTERM, SIGKILL after a grace period) and returns its exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.done {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).context("pid out of range")?);
        // It may have exited already; then the signal fails harmlessly.
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + CHILD_TERM_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for {}", self.what))?
            {
                self.done = Some(status);
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(child = %self.what, "did not stop on SIGTERM; killing");
        self.child
            .kill()
            .with_context(|| format!("killing {}", self.what))?;
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for {}", self.what))?;
        self.done = Some(status);
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(child = %self.what, error = %format!("{e:#}"), "cannot stop child");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_lab_names() {
        assert_eq!(owner_pid("rvs4242x0-lb"), Some(4242));
        assert_eq!(owner_pid("rvs1x12-rs3"), Some(1));
        assert_eq!(owner_pid("rvs4242x0-"), None);
        assert_eq!(owner_pid("rvs4242-lb"), None);
        assert_eq!(owner_pid("rvsx0-lb"), None);
        assert_eq!(owner_pid("rvs12ax0-lb"), None);
        assert_eq!(owner_pid("foo"), None);
        let mine = unique_prefix();
        assert_eq!(owner_pid(&format!("{mine}-lb")), Some(std::process::id()));
    }

    #[test]
    fn pin_owner_knows_every_pin_directory_name() {
        assert_eq!(pin_owner("rvs22214x0"), Some(22214));
        assert_eq!(pin_owner("rvs22214x0-api"), Some(22214));
        assert_eq!(pin_owner("rvs-test-77-3"), Some(77));
        assert_eq!(pin_owner("rvs-bench-78"), Some(78));
        assert_eq!(pin_owner("rvs-pass-79-0"), Some(79));
        assert_eq!(pin_owner("rvs"), None);
        assert_eq!(pin_owner("rvs-demo"), None);
        assert_eq!(pin_owner("maps.debug"), None);
    }

    #[test]
    fn parses_macs_and_sysctl_keys() {
        assert_eq!(parse_mac("02:00:0a:ff:10:01"), Some([2, 0, 10, 255, 16, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:10"), None);
        assert_eq!(parse_mac("02:00:0a:ff:10:01:02"), None);
        assert_eq!(
            sysctl_path("net.ipv4.conf.all.arp_ignore").ok(),
            Some(PathBuf::from("/proc/sys/net/ipv4/conf/all/arp_ignore"))
        );
        assert!(sysctl_path("net/../x").is_err());
        assert!(sysctl_path("net..x").is_err());
    }
}
