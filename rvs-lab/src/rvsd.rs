//! Runs an `rvsd` daemon inside a lab namespace with a config file the lab writes, and
//! reloads it (rewrite + SIGHUP) the way an operator would.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use crate::netns::{ChildGuard, Netns};

/// How long rvsd may take to start or to apply a reload: a failure bound, not a timing
/// (the kernel's verifier alone took over 20 s on a loaded 2-CPU machine).
const RVSD_WAIT: Duration = Duration::from_secs(60);

/// A running rvsd; stopped on drop, and its pinned programs and maps removed.
pub struct Rvsd {
    child: ChildGuard,
    ns_name: String,
    binary: PathBuf,
    /// How rvsd is told what to run: `--config FILE` or `--keepalived FILE ...`.
    args: Vec<String>,
    config_path: PathBuf,
    socket: PathBuf,
    pin_path: PathBuf,
    reloads: usize,
    refusals: usize,
}

impl Rvsd {
    /// Writes `config` (TOML; its `[daemon] pin_path` must be `pin_path`) to a file and
    /// starts `binary --config FILE --socket SOCK` inside `ns` (the socket is private to
    /// this lab); returns when rvsd says it is ready.
    pub fn start(ns: &Netns, binary: &Path, config: &str, pin_path: &Path) -> Result<Rvsd> {
        let config_path = std::env::temp_dir().join(format!("{}-rvsd.toml", ns.name()));
        let args = vec!["--config".to_owned(), config_path.display().to_string()];
        Self::launch(ns, binary, config, config_path, args, pin_path)
    }

    /// [`Rvsd::start`] with more command-line arguments (e.g. `--api-max-body 1024`).
    pub fn start_with_args(
        ns: &Netns,
        binary: &Path,
        config: &str,
        pin_path: &Path,
        extra: &[&str],
    ) -> Result<Rvsd> {
        let config_path = std::env::temp_dir().join(format!("{}-rvsd.toml", ns.name()));
        let mut args = vec!["--config".to_owned(), config_path.display().to_string()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Self::launch(ns, binary, config, config_path, args, pin_path)
    }

    /// Writes `keepalived_conf` to a file and starts `binary --keepalived FILE --interface
    /// IFACE --pin-path PIN --socket SOCK` inside `ns`; returns when rvsd says it is ready.
    pub fn start_keepalived(
        ns: &Netns,
        binary: &Path,
        keepalived_conf: &str,
        interface: &str,
        pin_path: &Path,
    ) -> Result<Rvsd> {
        Self::start_keepalived_on(ns, binary, keepalived_conf, &[interface], pin_path)
    }

    /// [`Rvsd::start_keepalived`] with the balancer on several interfaces (a two-armed NAT
    /// LB receives requests on one and replies on the other).
    pub fn start_keepalived_on(
        ns: &Netns,
        binary: &Path,
        keepalived_conf: &str,
        interfaces: &[&str],
        pin_path: &Path,
    ) -> Result<Rvsd> {
        Self::start_keepalived_with(ns, binary, keepalived_conf, interfaces, pin_path, &[])
    }

    /// [`Rvsd::start_keepalived_on`] with more arguments (e.g. `--bgp FILE`).
    pub fn start_keepalived_with(
        ns: &Netns,
        binary: &Path,
        keepalived_conf: &str,
        interfaces: &[&str],
        pin_path: &Path,
        extra: &[&str],
    ) -> Result<Rvsd> {
        let config_path = std::env::temp_dir().join(format!("{}-keepalived.conf", ns.name()));
        let mut args = vec!["--keepalived".to_owned(), config_path.display().to_string()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        for interface in interfaces {
            args.push("--interface".to_owned());
            args.push((*interface).to_owned());
        }
        args.push("--pin-path".to_owned());
        args.push(pin_path.display().to_string());
        Self::launch(ns, binary, keepalived_conf, config_path, args, pin_path)
    }

    fn launch(
        ns: &Netns,
        binary: &Path,
        config: &str,
        config_path: PathBuf,
        args: Vec<String>,
        pin_path: &Path,
    ) -> Result<Rvsd> {
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let socket = Path::new("/run/rvs-lab").join(format!("{}.sock", ns.name()));
        let child = spawn_rvsd(ns, binary, &args, &socket)?;
        let mut rvsd = Rvsd {
            child,
            ns_name: ns.name().to_owned(),
            binary: binary.to_owned(),
            args,
            config_path,
            socket,
            pin_path: pin_path.to_owned(),
            reloads: 0,
            refusals: 0,
        };
        rvsd.child.wait_for_output("rvsd ready", 1, RVSD_WAIT)?;
        Ok(rvsd)
    }

    /// Kills rvsd with SIGKILL (no chance to clean anything up) and starts a new one with
    /// the same config file and socket in `ns`; returns when it is ready. The pinned
    /// programs and maps are left as the killed one left them.
    pub fn kill_and_restart(&mut self, ns: &Netns) -> Result<()> {
        anyhow::ensure!(
            ns.name() == self.ns_name,
            "restart in the namespace rvsd ran in"
        );
        self.child.signal(Signal::SIGKILL)?;
        self.child.stop()?;
        self.child = spawn_rvsd(ns, &self.binary, &self.args, &self.socket)?;
        self.reloads = 0;
        self.refusals = 0;
        self.child.wait_for_output("rvsd ready", 1, RVSD_WAIT)
    }

    /// The daemon's pid (e.g. to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends `signal` to rvsd (SIGTERM: a planned stop; SIGHUP: a reload).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        self.child.signal(signal)
    }

    /// Kills rvsd with SIGKILL, as a machine losing power would (see [`Rvsd::restart`]).
    pub fn kill(&mut self) -> Result<()> {
        self.child.signal(Signal::SIGKILL)?;
        self.child.stop()?;
        Ok(())
    }

    /// Waits (bounded by `timeout`) for rvsd to exit after a signal; its output stays
    /// readable.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let end = std::time::Instant::now() + timeout;
        while self.child.is_running() {
            anyhow::ensure!(
                std::time::Instant::now() < end,
                "rvsd did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts rvsd again (after [`Rvsd::kill`] or an exit) with the same files in `ns`;
    /// returns when it is ready.
    pub fn restart(&mut self, ns: &Netns) -> Result<()> {
        anyhow::ensure!(
            ns.name() == self.ns_name,
            "restart in the namespace rvsd ran in"
        );
        self.child = spawn_rvsd(ns, &self.binary, &self.args, &self.socket)?;
        self.reloads = 0;
        self.refusals = 0;
        self.child.wait_for_output("rvsd ready", 1, RVSD_WAIT)
    }

    /// The API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn send_reload(&mut self, config: &str) -> Result<()> {
        std::fs::write(&self.config_path, config)
            .with_context(|| format!("writing {}", self.config_path.display()))?;
        self.child.signal(Signal::SIGHUP)
    }

    /// Rewrites the config file and sends SIGHUP; returns once rvsd applied it.
    pub fn reload(&mut self, config: &str) -> Result<()> {
        self.send_reload(config)?;
        self.reloads += 1;
        self.child
            .wait_for_output("config reloaded", self.reloads, RVSD_WAIT)
    }

    /// Like [`Rvsd::reload`] for a config rvsd must refuse; returns once it did.
    pub fn reload_refused(&mut self, config: &str) -> Result<()> {
        self.send_reload(config)?;
        self.refusals += 1;
        // The one line rvsd logs per refused reload (the error it carries may itself say
        // "reload refused", so the bare phrase can match twice per refusal).
        self.child
            .wait_for_output("reload refused; state unchanged", self.refusals, RVSD_WAIT)
    }

    /// Waits until rvsd's output holds `needle` (see [`ChildGuard::wait_for_output`]).
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.child.wait_for_output(needle, 1, timeout)
    }

    /// rvsd's output so far.
    pub fn output(&self) -> String {
        self.child.output()
    }
}

fn spawn_rvsd(ns: &Netns, binary: &Path, args: &[String], socket: &Path) -> Result<ChildGuard> {
    let bin = binary.to_string_lossy().into_owned();
    let sock = socket.to_string_lossy().into_owned();
    let mut argv: Vec<&str> = vec![&bin];
    argv.extend(args.iter().map(String::as_str));
    argv.extend(["--socket", &sock]);
    ns.spawn(&argv)
}

impl Drop for Rvsd {
    fn drop(&mut self) {
        if let Err(e) = self.child.stop() {
            tracing::warn!(error = %e, "stopping rvsd");
        }
        let bin = self.binary.to_string_lossy().into_owned();
        let pin = self.pin_path.to_string_lossy().into_owned();
        // In rvsd's network namespace (only that: the pins are in the host's bpffs), so
        // the forwarding sysctls it recorded there are put back.
        let ns_path = Path::new("/run/netns").join(&self.ns_name);
        let cleaned = std::thread::scope(|s| {
            s.spawn(|| {
                crate::netns::enter(&ns_path)?;
                std::process::Command::new(&bin)
                    .args(["--cleanup", "--pin-path", &pin])
                    .output()
                    .map_err(anyhow::Error::from)
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("cleanup thread panicked")))
        });
        match cleaned {
            Ok(out) if out.status.success() => {}
            Ok(out) => tracing::warn!(
                stderr = %String::from_utf8_lossy(&out.stderr),
                "rvsd --cleanup failed"
            ),
            Err(e) => tracing::warn!(error = %e, "running rvsd --cleanup"),
        }
        let _ = std::fs::remove_file(&self.config_path);
        let _ = std::fs::remove_file(&self.socket);
    }
}
