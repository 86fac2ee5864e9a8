//! The health engine: runs every checker on tokio as its schedule says, feeds the results
//! to the [`HealthState`], runs the notify and quorum scripts, logs every transition with
//! its reason, and publishes what the daemon applies:
//!
//! - the effective [`Config`] (a `watch`): the base configuration with each checked
//!   service's real servers as health checking wants them now;
//! - a stream of [`Change`]s (a `broadcast`): "real X of service Y: weight w / removed /
//!   restored", each with its reason;
//! - per-real-server status and [`Counters`] for metrics.
//!
//! ```no_run
//! # async fn f(config: rvs_config::Config, model: rvs_health::HealthModel) {
//! let handle = rvs_checkers::HealthEngine::spawn(config, model).expect("valid model");
//! let mut effective = handle.config();
//! while effective.changed().await.is_ok() {
//!     let config = effective.borrow_and_update().clone();
//!     // apply `config` as a diff
//! }
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rvs_config::{Config, RealServer, ServiceId};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinSet;

use crate::check::{Checkers, command};
use rvs_health::model::{HealthModel, RealId};
use rvs_health::state::{
    CheckId, Counters, HealthState, Outcome, Output, RealStatus, ScriptRun, TransitionKind,
};

/// Longest a notify or quorum script may run before it is killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many changes a slow subscriber may fall behind before it misses some.
pub const CHANGES_BUFFER: usize = 4096;

/// A model that does not fit the configuration it checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A health entry names a service the configuration does not have.
    #[error("health checks are configured for service {0}, which the configuration does not have")]
    UnknownService(ServiceId),
}

/// What happened to a real server in the effective configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeAction {
    /// It was put back (or in, for a sorry server) with this weight.
    Restored {
        /// Its weight.
        weight: u32,
    },
    /// It was taken out of the service.
    Removed,
    /// Its weight changed (0 = quiesced by `inhibit_on_failure`).
    Weight {
        /// Weight before.
        from: u32,
        /// Weight now.
        to: u32,
    },
}

/// A change of the effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The service.
    pub service: ServiceId,
    /// The real server.
    pub real: RealId,
    /// What happened.
    pub action: ChangeAction,
    /// Why (the transitions that caused it).
    pub reason: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "real {} of service {}: ", self.real, self.service)?;
        match self.action {
            ChangeAction::Restored { weight } => write!(f, "restored (weight {weight})")?,
            ChangeAction::Removed => write!(f, "removed")?,
            ChangeAction::Weight { to, .. } => write!(f, "weight {to}")?,
        }
        write!(f, " ({})", self.reason)
    }
}

/// Starts health checking.
#[derive(Debug)]
pub struct HealthEngine;

impl HealthEngine {
    /// Starts checking `model` against `base` on the current tokio runtime. The effective
    /// configuration is published at once (alpha servers left out, sorry servers in).
    pub fn spawn(base: Config, model: HealthModel) -> Result<HealthHandle, EngineError> {
        for s in &model.services {
            if !base.services.iter().any(|v| v.id() == s.service) {
                return Err(EngineError::UnknownService(s.service));
            }
        }
        let now = std::time::Instant::now();
        let (state, out) = HealthState::new(model, now, fastrand::u64(..));
        let effective = state.effective_config(&base);
        let (config_tx, config_rx) = watch::channel(Arc::new(effective));
        let (status_tx, status_rx) = watch::channel(Arc::new(state.status()));
        let (counters_tx, counters_rx) = watch::channel(state.counters());
        let (changes_tx, _) = broadcast::channel(CHANGES_BUFFER);
        let (stop_tx, stop_rx) = oneshot::channel();
        let mut runner = Runner {
            state,
            config_tx,
            status_tx,
            counters_tx,
            changes_tx: changes_tx.clone(),
            checkers: Arc::new(Checkers::new()),
            scripts: JoinSet::new(),
        };
        for t in &out.transitions {
            tracing::info!(transition = %t, "health: starting state");
        }
        runner.run_scripts(out.scripts);
        let task = tokio::spawn(runner.run(stop_rx));
        Ok(HealthHandle {
            config: config_rx,
            status: status_rx,
            counters: counters_rx,
            changes: changes_tx,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// The running engine: what it publishes, and how to stop it.
#[derive(Debug)]
pub struct HealthHandle {
    config: watch::Receiver<Arc<Config>>,
    status: watch::Receiver<Arc<Vec<RealStatus>>>,
    counters: watch::Receiver<Counters>,
    changes: broadcast::Sender<Change>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HealthHandle {
    /// The effective configuration, updated on every change.
    pub fn config(&self) -> watch::Receiver<Arc<Config>> {
        self.config.clone()
    }

    /// The changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Every real server's state.
    pub fn status(&self) -> watch::Receiver<Arc<Vec<RealStatus>>> {
        self.status.clone()
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        *self.counters.borrow()
    }

    /// Stops checking; with `omega` the down notifiers run first (and are waited for up to
    /// one second each, as keepalived does on exit).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Runner {
    state: HealthState,
    config_tx: watch::Sender<Arc<Config>>,
    status_tx: watch::Sender<Arc<Vec<RealStatus>>>,
    counters_tx: watch::Sender<Counters>,
    changes_tx: broadcast::Sender<Change>,
    checkers: Arc<Checkers>,
    scripts: JoinSet<()>,
}

impl Runner {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut checks: JoinSet<(CheckId, Outcome)> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, CheckId> = HashMap::new();
        loop {
            let next = self.state.next_due();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => break,
                Some(done) = checks.join_next_with_id(), if !checks.is_empty() => {
                    // Take every check that has finished, then publish once: with
                    // thousands of checks, one publication per result would not keep up.
                    let mut out = Output::default();
                    let mut next = Some(done);
                    while let Some(done) = next {
                        let (id, outcome) = match done {
                            Ok((task, (id, outcome))) => {
                                in_flight.remove(&task);
                                (id, outcome)
                            }
                            Err(e) => match in_flight.remove(&e.id()) {
                                Some(id) => (id, Outcome::Down(format!("checker task failed: {e}"))),
                                None => {
                                    next = checks.try_join_next_with_id();
                                    continue;
                                }
                            },
                        };
                        if let Outcome::Down(why) = &outcome
                            && let Some((service, real)) = self.state.check_target(id)
                        {
                            tracing::debug!(%service, %real, reason = %why, "health: check failed");
                        }
                        out.merge(self.state.on_result(id, outcome, std::time::Instant::now()));
                        next = checks.try_join_next_with_id();
                    }
                    self.apply(out);
                }
                _ = sleep => {
                    for id in self.state.take_due(std::time::Instant::now()) {
                        let Some(spec) = self.state.checker(id).cloned() else { continue };
                        let checkers = self.checkers.clone();
                        let handle = checks.spawn(async move { (id, checkers.run(&spec).await) });
                        in_flight.insert(handle.id(), id);
                    }
                }
                Some(_) = self.scripts.join_next(), if !self.scripts.is_empty() => {}
            }
        }
        checks.shutdown().await;
        let out = self.state.shutdown();
        self.run_scripts(out.scripts);
        // keepalived gives scripts run at exit a second each; wait for them that long.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while self.scripts.join_next().await.is_some() {}
        })
        .await;
    }

    fn apply(&mut self, out: Output) {
        for t in &out.transitions {
            tracing::info!(transition = %t, "health");
        }
        // Each change carries the reason of the transition that moved its real server
        // (or of the service's quorum transition, which moves the sorry server).
        let mut reasons: HashMap<(ServiceId, Option<RealId>), &str> = HashMap::new();
        for t in &out.transitions {
            let real = match &t.kind {
                TransitionKind::RealUp { real }
                | TransitionKind::RealDown { real }
                | TransitionKind::WeightChanged { real, .. } => Some(*real),
                TransitionKind::QuorumGained | TransitionKind::QuorumLost => None,
                TransitionKind::CheckerUp { .. } | TransitionKind::CheckerDown { .. } => continue,
            };
            reasons.insert((t.service, real), &t.reason);
        }
        if !out.changed.is_empty() {
            let mut config = (**self.config_tx.borrow()).clone();
            let mut changes = Vec::new();
            for &si in &out.changed {
                let Some(id) = self.state.service_id(si) else {
                    continue;
                };
                let Some(svc) = config.services.iter_mut().find(|s| s.id() == id) else {
                    continue;
                };
                let new = self.state.effective_reals(si);
                let reason = |real: RealId| {
                    reasons
                        .get(&(id, Some(real)))
                        .or_else(|| reasons.get(&(id, None)))
                        .map_or_else(String::new, |r| (*r).to_owned())
                };
                changes.extend(diff(id, &svc.reals, &new, reason));
                svc.reals = new;
            }
            if !changes.is_empty() {
                for c in &changes {
                    tracing::info!(change = %c, "health: effective configuration");
                    // Nobody listening is fine.
                    let _ = self.changes_tx.send(c.clone());
                }
                self.config_tx.send_replace(Arc::new(config));
            }
        }
        self.run_scripts(out.scripts);
        self.status_tx.send_replace(Arc::new(self.state.status()));
        self.counters_tx.send_replace(self.state.counters());
    }

    fn run_scripts(&mut self, scripts: Vec<ScriptRun>) {
        for run in scripts {
            tracing::info!(script = %run.script, why = %run.why, "health: running script");
            let mut cmd = match command(&run.script) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(why = %run.why, error = %e, "health: cannot run script");
                    continue;
                }
            };
            self.scripts.spawn(async move {
                let mut child = match cmd.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(script = %run.script, error = %e, "health: cannot start script");
                        return;
                    }
                };
                match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
                    Ok(Ok(status)) if !status.success() => {
                        tracing::warn!(script = %run.script, %status, "health: script failed")
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!(script = %run.script, "health: script ran too long; killed");
                        let _ = child.kill().await;
                    }
                }
            });
        }
    }
}

fn rid(service: ServiceId, r: &RealServer) -> RealId {
    RealId {
        address: r.address,
        port: r.port.unwrap_or(service.port),
    }
}

/// The changes from `old` to `new` real servers of `service`.
fn diff(
    service: ServiceId,
    old: &[RealServer],
    new: &[RealServer],
    reason: impl Fn(RealId) -> String,
) -> Vec<Change> {
    let before: HashMap<RealId, u32> = old.iter().map(|o| (rid(service, o), o.weight)).collect();
    let after: HashMap<RealId, u32> = new.iter().map(|n| (rid(service, n), n.weight)).collect();
    let mut out = Vec::new();
    let mut push = |real, action| {
        out.push(Change {
            service,
            real,
            action,
            reason: reason(real),
        })
    };
    for n in new {
        let id = rid(service, n);
        match before.get(&id) {
            None => push(id, ChangeAction::Restored { weight: n.weight }),
            Some(&w) if w != n.weight => push(
                id,
                ChangeAction::Weight {
                    from: w,
                    to: n.weight,
                },
            ),
            Some(_) => {}
        }
    }
    for o in old {
        let id = rid(service, o);
        if !after.contains_key(&id) {
            push(id, ChangeAction::Removed);
        }
    }
    out
}
