//! rvsd's BGP part: drives BIRD 2 so that this director announces the VIPs it can serve.
//!
//! The decisions are rvs-bgp's [`Announcer`] (sans-I/O); this module is the I/O around it:
//! it writes BIRD's configuration (rvs-bgp's renderer), starts BIRD as rvsd's child (or
//! leaves that to the operator, `spawn = false`), sends `configure` over the control
//! socket when the announced set changes, polls `show protocols` for the status, and
//! logs changes only (a VIP announced or withdrawn, a session up or down, BIRD failing).
//!
//! BIRD runs with PR_SET_PDEATHSIG: if rvsd dies, so does BIRD, which closes its sessions
//! (a Cease to the router), so a VIP is never announced by a director whose rvsd is gone.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rvs_bgp::{Announcer, BirdControl, Phase, ProtocolState, ServiceHealth};
use rvs_config::{Config, bgp::Bgp as Settings};

/// How long one control-socket command may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a spawned BIRD may take to open its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The BGP part of a running rvsd.
pub struct Bgp {
    announcer: Announcer,
    control: BirdControl,
    /// Where the settings came from (for BIRD's config header).
    origin: String,
    child: Option<tokio::process::Child>,
    /// The announced set BIRD has been configured with (None: never, or the last failed).
    configured: Option<BTreeSet<Ipv4Addr>>,
    /// The last failure talking to BIRD (logged once until it changes).
    error: Option<String>,
    /// Sessions as last polled, by protocol name.
    sessions: BTreeMap<String, ProtocolState>,
    /// Services already warned about for a non-consistent scheduler.
    warned: BTreeSet<rvs_config::ServiceId>,
}

/// Writes `text` to `path` atomically (a reader never sees half a file).
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("rvs-tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}

/// One health snapshot per service: real servers in service with weight > 0.
fn health_of(config: &Config) -> Vec<ServiceHealth> {
    config
        .services
        .iter()
        .filter(|s| s.fwmark.is_none())
        .map(|s| ServiceHealth {
            vip: s.address,
            service: s.id().to_string(),
            healthy: s
                .reals
                .iter()
                .filter(|r| r.weight > 0)
                .count()
                .try_into()
                .unwrap_or(u32::MAX),
        })
        .collect()
}

impl Bgp {
    /// Writes BIRD's configuration (nothing announced yet) and, with `spawn`, starts BIRD
    /// and waits for its control socket. Fails with what to fix when BIRD cannot start.
    pub async fn start(settings: Settings, origin: String) -> Result<Bgp> {
        let announcer = Announcer::new(settings);
        let s = announcer.settings().clone();
        let text = rvs_bgp::bird::render(&s, &BTreeSet::new(), &origin);
        write_atomic(&s.config, &text)?;
        if let Some(dir) = s.socket.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let control = BirdControl::new(&s.socket, CONTROL_TIMEOUT);
        let mut bgp = Bgp {
            announcer,
            control,
            origin,
            child: None,
            configured: None,
            error: None,
            sessions: BTreeMap::new(),
            warned: BTreeSet::new(),
        };
        if s.spawn {
            bgp.spawn(&s).await?;
            bgp.configured = Some(BTreeSet::new());
        }
        tracing::info!(
            daemon = "bird",
            config = %s.config.display(),
            socket = %s.socket.display(),
            peers = s.peers.len(),
            spawned = s.spawn,
            "BGP: announcing VIPs through BIRD"
        );
        Ok(bgp)
    }

    async fn spawn(&mut self, s: &Settings) -> Result<()> {
        // A stale socket from a killed BIRD would make the wait below talk to nothing.
        let _ = std::fs::remove_file(&s.socket);
        let mut cmd = tokio::process::Command::new(&s.bird);
        cmd.arg("-f")
            .arg("-c")
            .arg(&s.config)
            .arg("-s")
            .arg(&s.socket)
            .kill_on_drop(true);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of
        // the parent; it makes the kernel send BIRD SIGTERM when rvsd dies, so BIRD
        // withdraws everything (closes its sessions) instead of announcing for a dead rvsd.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!(
                "[bgp] starting {} (install the bird2 package, or set [bgp] bird = PATH)",
                s.bird.display()
            )
        })?;
        self.child = Some(child);
        let end = Instant::now() + START_TIMEOUT;
        loop {
            let control = self.control.clone();
            let probe = tokio::task::spawn_blocking(move || control.command("show status")).await;
            match probe {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if Instant::now() >= end => {
                    anyhow::bail!("[bgp] bird did not answer on its control socket: {e}")
                }
                Err(e) => anyhow::bail!("[bgp] control socket task: {e}"),
                Ok(Err(_)) => {}
            }
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                anyhow::bail!(
                    "[bgp] bird exited at start ({status}); its messages are above (config {})",
                    s.config.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Follows a change of the desired state (health checks, API, rvsadm, reload). A
    /// state without `[bgp]` (an API `PUT /v1/config` of services only) keeps the settings
    /// in force; reloads that add or remove the section are refused before this.
    pub async fn follow(&mut self, config: &Config) {
        if let Some(next) = &config.bgp
            && next != self.announcer.settings()
        {
            self.reconfigure(next.clone());
        }
        self.warn_schedulers(config);
        let changes = self.announcer.update(&health_of(config));
        for c in &changes {
            tracing::info!(vip = %c.vip, announced = c.announced, "BGP: {c}");
        }
        self.push().await;
    }

    /// New settings from a reload. Paths and spawning only change with a restart (BIRD
    /// keeps running with the old ones, said in a warning); everything else applies.
    fn reconfigure(&mut self, mut next: Settings) {
        let old = self.announcer.settings();
        if (&next.bird, &next.config, &next.socket, next.spawn)
            != (&old.bird, &old.config, &old.socket, old.spawn)
        {
            tracing::warn!(
                "BGP: [bgp] bird/config/socket/spawn only change with a restart; the rest of the section applies"
            );
            next.bird = old.bird.clone();
            next.config = old.config.clone();
            next.socket = old.socket.clone();
            next.spawn = old.spawn;
        }
        for c in self.announcer.set_settings(next) {
            tracing::info!(vip = %c.vip, announced = c.announced, "BGP: {c}");
        }
        // The sessions' settings may have changed too: configure again even if the
        // announced set did not.
        self.configured = None;
    }

    fn warn_schedulers(&mut self, config: &Config) {
        for s in &config.services {
            let (on, _) = self.announcer.settings().vip_policy(s.address);
            if !on || rvs_config::bgp::consistent_scheduler(s.scheduler) {
                continue;
            }
            if self.warned.insert(s.id()) {
                tracing::warn!(
                    service = %s.id(),
                    scheduler = %s.scheduler,
                    "BGP: service {} uses scheduler {}, which chooses differently on each director: after an ECMP re-hash its connections break; use mh (with the mh-port flag) or sh",
                    s.id(),
                    s.scheduler
                );
            }
        }
    }

    /// Writes BIRD's configuration for the announced set and sends `configure`, when it
    /// differs from what BIRD has.
    async fn push(&mut self) {
        let want = self.announcer.announced();
        if self.configured.as_ref() == Some(&want) {
            return;
        }
        let settings = self.announcer.settings().clone();
        let text = rvs_bgp::bird::render(&settings, &want, &self.origin);
        let control = self.control.clone();
        let path = settings.config.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<()> {
            write_atomic(&path, &text)?;
            control.configure(&path)?;
            Ok(())
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        match result {
            Ok(()) => {
                if self.error.take().is_some() {
                    tracing::info!("BGP: BIRD reconfigured again");
                }
                tracing::debug!(announced = want.len(), "BGP: BIRD reconfigured");
                self.configured = Some(want);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                if self.error.as_deref() != Some(&msg) {
                    tracing::warn!(error = %msg, "BGP: cannot reconfigure BIRD; retrying every second");
                }
                self.error = Some(msg);
                self.configured = None;
            }
        }
    }

    /// Once a second: retries a failed reconfiguration, polls the sessions (logging
    /// each change), notices BIRD dying.
    pub async fn tick(&mut self) {
        if let Some(c) = &mut self.child
            && let Ok(Some(status)) = c.try_wait()
        {
            tracing::error!(%status, "BGP: bird exited; no VIP is announced until rvsd restarts");
            self.child = None;
            self.error = Some(format!("bird exited ({status})"));
        }
        self.push().await;
        let control = self.control.clone();
        let Ok(polled) = tokio::task::spawn_blocking(move || control.protocols()).await else {
            return;
        };
        let Ok(rows) = polled else { return };
        let next: BTreeMap<String, ProtocolState> = rows
            .into_iter()
            .filter(|p| p.proto == "BGP")
            .map(|p| (p.name.clone(), p))
            .collect();
        for (name, p) in &next {
            let was = self
                .sessions
                .get(name)
                .is_some_and(ProtocolState::established);
            if was != p.established() {
                if p.established() {
                    tracing::info!(session = %name, "BGP: session established");
                } else {
                    tracing::warn!(session = %name, state = %p.state, info = %p.info, "BGP: session down");
                }
            }
        }
        self.sessions = next;
    }

    /// SIGTERM: withdraws every VIP now; returns when the drain ends.
    pub async fn withdraw_for_stop(&mut self) -> Option<tokio::time::Instant> {
        let now = Instant::now();
        let changes = self.announcer.stop(now);
        for c in &changes {
            tracing::info!(vip = %c.vip, "BGP: {c}");
        }
        self.push().await;
        let until = self.announcer.drain_deadline()?;
        tracing::info!(
            seconds = self.announcer.settings().drain_seconds,
            "BGP: VIPs withdrawn; balancing on for the drain period before exiting"
        );
        Some(tokio::time::Instant::from_std(until))
    }

    /// Whether a stop is under way.
    pub fn draining(&self) -> bool {
        !matches!(self.announcer.phase(), Phase::Running)
    }

    /// Stops a spawned BIRD (SIGTERM: it closes its sessions with a Cease).
    pub async fn shutdown(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(_) => tracing::info!("BGP: bird stopped"),
            Err(_) => {
                tracing::warn!("BGP: bird did not stop on SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
    }

    /// The status for `GET /v1/status`.
    pub fn status(&self) -> rvs_api::BgpStatus {
        rvs_api::BgpStatus {
            phase: match self.announcer.phase() {
                Phase::Running => "running",
                Phase::Draining { .. } => "draining",
                Phase::Stopped => "stopped",
            }
            .to_owned(),
            vips: self
                .announcer
                .vips()
                .map(|v| rvs_api::BgpVip {
                    vip: v.vip,
                    // Announced in BIRD only once configured.
                    announced: v.announced
                        && self.configured.as_ref().is_some_and(|c| c.contains(&v.vip)),
                    reason: v.reason.to_string(),
                })
                .collect(),
            peers: self
                .sessions
                .values()
                .map(|p| rvs_api::BgpPeer {
                    name: p.name.clone(),
                    state: p.state.clone(),
                    info: p.info.clone(),
                    established: p.established(),
                })
                .collect(),
            daemon_error: self.error.clone(),
        }
    }
}

/// Reads the `--bgp FILE` given beside a keepalived.conf (only a `[bgp]` section).
pub fn read_bgp_file(path: &Path) -> Result<Settings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    rvs_config::bgp::BgpFile::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The settings' origin for BIRD's header: the file they came from.
pub fn origin(path: Option<&PathBuf>) -> String {
    path.map_or_else(|| "the API".to_owned(), |p| p.display().to_string())
}
