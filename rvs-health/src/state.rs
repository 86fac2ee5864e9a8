//! The sans-I/O health state machine, with keepalived's semantics (check_api.c,
//! ipwrapper.c of keepalived 2.2.7):
//!
//! - a checker starts up (down with `alpha`), and its first failure takes it down at once;
//!   later, a failure is retried `retry` times, `delay_before_retry` apart, before the
//!   checker goes down; one success brings it back; checks repeat every `delay_loop`, the
//!   first one at a random point of `[0, warmup]`;
//! - a real server is up while all of its checkers are up;
//! - a down real server leaves its service, or stays with weight 0 with
//!   `inhibit_on_failure`; `notify_up`/`notify_down` run on its transitions;
//! - a service has quorum while the weights of its live servers add up to `quorum`
//!   (± `hysteresis` against flapping); losing it runs `quorum_down` and, with a
//!   `sorry_server`, swaps every real server for the sorry server until quorum is back;
//! - `MISC_CHECK` with `misc_dynamic` sets the weight to exit code − 2.
//!
//! Inputs are check results and the time; outputs are [`Transition`]s (each with its
//! reason), scripts to run and the services whose effective real servers changed. Time is an
//! [`Instant`] the caller passes in, so tests drive it with a fake clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use rvs_config::{Config, RealServer, ServiceId};

use crate::model::{Checker, HealthModel, RealId, Script, ServiceHealth};

/// Identifies one checker: indices into the model's services, reals and checkers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckId {
    /// Index of the service in [`HealthModel::services`].
    pub service: usize,
    /// Index of the real server in the service.
    pub real: usize,
    /// Index of the checker in the real server.
    pub checker: usize,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Up,
    /// It passed and asks for this weight (MISC_CHECK `misc_dynamic`, exit code − 2).
    UpWithWeight(u32),
    /// It failed, and why.
    Down(String),
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionKind {
    /// A checker passed after failing (or passed first under `alpha`).
    CheckerUp {
        /// The real server.
        real: RealId,
        /// Which checker (`TCP_CHECK at file:line`).
        checker: String,
    },
    /// A checker failed `retry` + 1 times in a row.
    CheckerDown {
        /// The real server.
        real: RealId,
        /// Which checker.
        checker: String,
    },
    /// All checkers of a real server are up: it is back in service.
    RealUp {
        /// The real server.
        real: RealId,
    },
    /// A checker of a real server is down: it leaves the service (or gets weight 0).
    RealDown {
        /// The real server.
        real: RealId,
    },
    /// A dynamic weight changed.
    WeightChanged {
        /// The real server.
        real: RealId,
        /// Weight before.
        from: u32,
        /// Weight now.
        to: u32,
    },
    /// The live weight reached the quorum.
    QuorumGained,
    /// The live weight fell below the quorum.
    QuorumLost,
}

/// A transition of a service, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The service.
    pub service: ServiceId,
    /// What changed.
    pub kind: TransitionKind,
    /// Why (the failing check's message, the weights against the quorum…).
    pub reason: String,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.service;
        match &self.kind {
            TransitionKind::CheckerUp { real, checker } => {
                write!(f, "service {s}: real {real}: {checker} up")?
            }
            TransitionKind::CheckerDown { real, checker } => {
                write!(f, "service {s}: real {real}: {checker} down")?
            }
            TransitionKind::RealUp { real } => write!(f, "service {s}: real {real} is up")?,
            TransitionKind::RealDown { real } => write!(f, "service {s}: real {real} is down")?,
            TransitionKind::WeightChanged { real, from, to } => {
                write!(f, "service {s}: real {real}: weight {from} -> {to}")?
            }
            TransitionKind::QuorumGained => write!(f, "service {s}: quorum gained")?,
            TransitionKind::QuorumLost => write!(f, "service {s}: quorum lost")?,
        }
        write!(f, " ({})", self.reason)
    }
}

/// A script to run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRun {
    /// The script.
    pub script: Script,
    /// What it announces (`notify_up for TCP 198.18.0.1:80 198.18.2.1:80`).
    pub why: String,
}

/// What one input produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// Transitions, in order.
    pub transitions: Vec<Transition>,
    /// Scripts to start, in order.
    pub scripts: Vec<ScriptRun>,
    /// Services (indices) whose effective real servers may have changed.
    pub changed: Vec<usize>,
}

impl Output {
    /// Appends `other`.
    pub fn merge(&mut self, other: Output) {
        self.transitions.extend(other.transitions);
        self.scripts.extend(other.scripts);
        for s in other.changed {
            if !self.changed.contains(&s) {
                self.changed.push(s);
            }
        }
    }
}

/// Counters over the engine's life, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Checks that completed.
    pub checks: u64,
    /// Checks that failed.
    pub check_failures: u64,
    /// Real servers that came up.
    pub reals_up: u64,
    /// Real servers that went down.
    pub reals_down: u64,
    /// Quorums gained.
    pub quorum_gained: u64,
    /// Quorums lost.
    pub quorum_lost: u64,
    /// Scripts asked for.
    pub scripts: u64,
}

/// The state of one real server, for status displays and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealStatus {
    /// Service.
    pub service: ServiceId,
    /// Real server.
    pub real: RealId,
    /// Whether all its checkers are up.
    pub alive: bool,
    /// Its weight when alive (configured, or the dynamic one).
    pub weight: u32,
    /// How many of its checkers are down.
    pub failed_checkers: usize,
    /// Checks that passed.
    pub checks_ok: u64,
    /// Checks that failed.
    pub checks_failed: u64,
    /// The latest check result of any of its checkers, if one has run.
    pub last_check: Option<LastCheck>,
    /// When it last went up or down (or when checking started).
    pub since: Instant,
}

/// One check's result, for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCheck {
    /// Whether it passed.
    pub ok: bool,
    /// What was checked and, on failure, why it failed.
    pub text: String,
    /// When it finished.
    pub at: Instant,
}

#[derive(Debug, Clone)]
struct CheckerState {
    up: bool,
    has_run: bool,
    retry_it: u32,
    /// When it runs next; `None` while a check is in flight.
    due: Option<Instant>,
    ok: u64,
    failed: u64,
}

#[derive(Debug, Clone)]
struct RealState {
    alive: bool,
    failed: usize,
    dyn_weight: Option<u32>,
    checkers: Vec<CheckerState>,
    last_check: Option<LastCheck>,
    since: Instant,
}

#[derive(Debug, Clone)]
struct ServiceState {
    spec: ServiceHealth,
    reals: Vec<RealState>,
    quorum_up: bool,
}

/// The health state of every checked service.
#[derive(Debug)]
pub struct HealthState {
    services: Vec<ServiceState>,
    queue: BinaryHeap<Reverse<(Instant, CheckId)>>,
    counters: Counters,
}

fn real_id(svc: &ServiceHealth, real: &RealServer) -> RealId {
    RealId {
        address: real.address,
        port: real.port.unwrap_or(svc.service.port),
    }
}

/// A random duration in `[0, max]` (the first check's offset, spreading the checks).
fn jitter(rng: &mut fastrand::Rng, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    max.mul_f64(rng.f64())
}

impl HealthState {
    /// Starts checking `model` at `now`; `seed` drives the warmup jitter. Returns the
    /// state and what starting produced (a sorry server put in, `quorum_down`…).
    pub fn new(model: HealthModel, now: Instant, seed: u64) -> (HealthState, Output) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut queue = BinaryHeap::new();
        let mut services = Vec::new();
        for (si, spec) in model.services.into_iter().enumerate() {
            let mut reals = Vec::new();
            for (ri, real) in spec.reals.iter().enumerate() {
                let mut checkers = Vec::new();
                let mut failed = 0;
                for (ci, c) in real.checkers.iter().enumerate() {
                    let due = now + jitter(&mut rng, c.timing.warmup);
                    queue.push(Reverse((
                        due,
                        CheckId {
                            service: si,
                            real: ri,
                            checker: ci,
                        },
                    )));
                    if c.timing.alpha {
                        failed += 1;
                    }
                    checkers.push(CheckerState {
                        up: !c.timing.alpha,
                        has_run: false,
                        // Before the first result one failure is enough (keepalived).
                        retry_it: c.timing.retry,
                        due: Some(due),
                        ok: 0,
                        failed: 0,
                    });
                }
                reals.push(RealState {
                    alive: failed == 0,
                    failed,
                    dyn_weight: None,
                    checkers,
                    last_check: None,
                    since: now,
                });
            }
            let mut s = ServiceState {
                spec,
                reals,
                quorum_up: false,
            };
            s.quorum_up =
                s.live_weight() >= u64::from(s.spec.quorum) + u64::from(s.spec.hysteresis);
            services.push(s);
        }
        let mut state = HealthState {
            services,
            queue,
            counters: Counters::default(),
        };
        let mut out = Output::default();
        for si in 0..state.services.len() {
            out.merge(state.update_quorum(si, true));
            out.changed.push(si);
        }
        state.counters.scripts += out.scripts.len() as u64;
        (state, out)
    }

    /// The model's checker behind `id`.
    pub fn checker(&self, id: CheckId) -> Option<&Checker> {
        self.services
            .get(id.service)?
            .spec
            .reals
            .get(id.real)?
            .checkers
            .get(id.checker)
    }

    /// The service and real server a check is for.
    pub fn check_target(&self, id: CheckId) -> Option<(ServiceId, RealId)> {
        let s = self.services.get(id.service)?;
        let r = s.spec.reals.get(id.real)?;
        Some((s.spec.service, real_id(&s.spec, &r.real)))
    }

    /// When the next check is due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _))| *t)
    }

    /// The checks due at `now`; each is in flight until its result is given to
    /// [`HealthState::on_result`].
    pub fn take_due(&mut self, now: Instant) -> Vec<CheckId> {
        let mut out = Vec::new();
        while let Some(Reverse((t, id))) = self.queue.peek().copied() {
            if t > now {
                break;
            }
            self.queue.pop();
            if let Some(c) = self.checker_state_mut(id) {
                c.due = None;
                out.push(id);
            }
        }
        out
    }

    fn checker_state_mut(&mut self, id: CheckId) -> Option<&mut CheckerState> {
        self.services
            .get_mut(id.service)?
            .reals
            .get_mut(id.real)?
            .checkers
            .get_mut(id.checker)
    }

    /// Feeds the result of check `id` that finished at `now`, and schedules its next run.
    pub fn on_result(&mut self, id: CheckId, outcome: Outcome, now: Instant) -> Output {
        let mut out = Output::default();
        let Some(spec) = self.checker(id).cloned() else {
            return out;
        };
        let Some((service, real)) = self.check_target(id) else {
            return out;
        };
        let timing = spec.timing;
        let what = format!("{} at {}", spec.kind.name(), spec.origin);
        let ok = !matches!(outcome, Outcome::Down(_));
        self.counters.checks += 1;
        if !ok {
            self.counters.check_failures += 1;
        }
        let Some(c) = self.checker_state_mut(id) else {
            return out;
        };
        if ok {
            c.ok += 1;
        } else {
            c.failed += 1;
        }
        let delay;
        let mut change: Option<bool> = None;
        let mut first_unchanged = false;
        if ok || c.retry_it >= timing.retry {
            delay = timing.delay_loop;
            c.retry_it = 0;
            if ok && (!c.up || !c.has_run) {
                change = Some(true);
            } else if !ok && (c.up || !c.has_run) {
                change = Some(false);
            }
        } else {
            delay = timing.delay_before_retry;
            c.retry_it += 1;
            if let Outcome::Down(why) = &outcome {
                tracing::debug!(%service, %real, checker = %what, retry = c.retry_it, of = timing.retry, reason = %why, "check failed; retrying");
            }
        }
        if let Some(up) = change
            && c.up == up
        {
            // The first result agrees with the initial state: nothing changes, but an
            // alpha server confirmed down announces it (keepalived does).
            change = None;
            first_unchanged = !c.has_run;
        }
        c.has_run = true;
        let due = now + delay;
        c.due = Some(due);
        self.queue.push(Reverse((due, id)));

        let reason = match &outcome {
            Outcome::Down(why) if timing.retry > 0 => {
                format!("{why}; failed {} time(s) in a row", timing.retry + 1)
            }
            Outcome::Down(why) => why.clone(),
            Outcome::Up | Outcome::UpWithWeight(_) => "check succeeded".to_owned(),
        };
        if let Some(r) = self
            .services
            .get_mut(id.service)
            .and_then(|s| s.reals.get_mut(id.real))
        {
            r.last_check = Some(LastCheck {
                ok,
                text: match &outcome {
                    Outcome::Down(why) => format!("{what}: {why}"),
                    _ => format!("{what}: ok"),
                },
                at: now,
            });
        }
        let was_alive = self.alive(id);
        if first_unchanged && timing.alpha && !ok {
            let s = &self.services[id.service];
            if let Some(script) = &s.spec.reals[id.real].notify_down {
                out.scripts.push(ScriptRun {
                    script: script.clone(),
                    why: format!("notify_down for {service} {real} (alpha: first check failed)"),
                });
            }
        }
        if let Some(up) = change {
            out.transitions.push(Transition {
                service,
                kind: if up {
                    TransitionKind::CheckerUp {
                        real,
                        checker: what.clone(),
                    }
                } else {
                    TransitionKind::CheckerDown {
                        real,
                        checker: what.clone(),
                    }
                },
                reason: reason.clone(),
            });
            out.merge(self.checker_changed(id, up, &reason));
        }
        if self.alive(id) != was_alive
            && let Some(r) = self
                .services
                .get_mut(id.service)
                .and_then(|s| s.reals.get_mut(id.real))
        {
            r.since = now;
        }
        if let Outcome::UpWithWeight(w) = outcome {
            out.merge(self.set_dynamic_weight(id, w));
        }
        self.counters.scripts += out.scripts.len() as u64;
        out
    }

    /// Whether the real server of check `id` is alive.
    fn alive(&self, id: CheckId) -> Option<bool> {
        Some(self.services.get(id.service)?.reals.get(id.real)?.alive)
    }

    /// keepalived's update_svr_checker_state + set_checker_state: moves the real server
    /// when its first checker fails or its last failed one recovers.
    fn checker_changed(&mut self, id: CheckId, up: bool, reason: &str) -> Output {
        let mut out = Output::default();
        let r = &mut self.services[id.service].reals[id.real];
        let failed_before = r.failed;
        r.checkers[id.checker].up = up;
        if up {
            r.failed = r.failed.saturating_sub(1);
        } else {
            r.failed += 1;
        }
        let real_change = if up {
            failed_before <= 1
        } else {
            failed_before == 0
        };
        if real_change {
            out.merge(self.set_alive(id.service, id.real, up, reason));
        }
        out
    }

    /// keepalived's perform_svr_state.
    fn set_alive(&mut self, si: usize, ri: usize, alive: bool, reason: &str) -> Output {
        let mut out = Output::default();
        let s = &mut self.services[si];
        if s.reals[ri].alive == alive {
            return out;
        }
        s.reals[ri].alive = alive;
        let spec = &s.spec.reals[ri];
        let real = real_id(&s.spec, &spec.real);
        let service = s.spec.service;
        let action = match (alive, spec.inhibit_on_failure) {
            (true, true) => "weight restored",
            (true, false) => "added back to the service",
            (false, true) => "weight set to 0 (inhibit_on_failure)",
            (false, false) => "removed from the service",
        };
        out.transitions.push(Transition {
            service,
            kind: if alive {
                TransitionKind::RealUp { real }
            } else {
                TransitionKind::RealDown { real }
            },
            reason: format!("{reason}; {action}"),
        });
        let script = if alive {
            self.counters.reals_up += 1;
            spec.notify_up.as_ref().map(|s| (s, "notify_up"))
        } else {
            self.counters.reals_down += 1;
            spec.notify_down.as_ref().map(|s| (s, "notify_down"))
        };
        if let Some((script, name)) = script {
            out.scripts.push(ScriptRun {
                script: script.clone(),
                why: format!("{name} for {service} {real}"),
            });
        }
        out.changed.push(si);
        out.merge(self.update_quorum(si, false));
        out
    }

    /// MISC_CHECK `misc_dynamic`: keepalived's update_svr_wgt.
    fn set_dynamic_weight(&mut self, id: CheckId, weight: u32) -> Output {
        let mut out = Output::default();
        let s = &mut self.services[id.service];
        let r = &mut s.reals[id.real];
        let spec = &s.spec.reals[id.real];
        let from = r.dyn_weight.unwrap_or(spec.real.weight);
        let to = weight.min(rvs_config::MAX_WEIGHT);
        r.dyn_weight = Some(to);
        if from == to {
            return out;
        }
        out.transitions.push(Transition {
            service: s.spec.service,
            kind: TransitionKind::WeightChanged {
                real: real_id(&s.spec, &spec.real),
                from,
                to,
            },
            reason: format!("MISC_CHECK exit code {}", u64::from(to) + 2),
        });
        out.changed.push(id.service);
        out.merge(self.update_quorum(id.service, false));
        out
    }

    /// keepalived's update_quorum_state.
    fn update_quorum(&mut self, si: usize, init: bool) -> Output {
        let mut out = Output::default();
        let s = &mut self.services[si];
        let sum = s.live_weight();
        let quorum = u64::from(s.spec.quorum);
        let hyst = u64::from(s.spec.hysteresis);
        let threshold = if s.quorum_up {
            quorum.saturating_sub(hyst)
        } else {
            quorum + hyst
        };
        let service = s.spec.service;
        if !s.quorum_up && sum >= threshold {
            s.quorum_up = true;
            self.counters.quorum_gained += 1;
            let sorry = if s.spec.sorry_server.is_some() {
                "; the sorry server leaves, the live real servers return"
            } else {
                ""
            };
            out.transitions.push(Transition {
                service,
                kind: TransitionKind::QuorumGained,
                reason: format!("live weight {sum} >= {quorum}+{hyst}{sorry}"),
            });
            if let Some(script) = &s.spec.quorum_up {
                out.scripts.push(ScriptRun {
                    script: script.clone(),
                    why: format!("quorum_up for {service}"),
                });
            }
            out.changed.push(si);
        } else if (s.quorum_up && (sum == 0 || sum < threshold))
            || (init && !s.quorum_up && s.spec.sorry_server.is_some())
        {
            s.quorum_up = false;
            self.counters.quorum_lost += 1;
            let sorry = if s.spec.sorry_server.is_some() {
                "; the sorry server replaces the real servers"
            } else {
                ""
            };
            out.transitions.push(Transition {
                service,
                kind: TransitionKind::QuorumLost,
                reason: format!(
                    "{}live weight {sum} < {quorum}-{hyst}{sorry}",
                    if init { "at start: " } else { "" }
                ),
            });
            if let Some(script) = &s.spec.quorum_down {
                out.scripts.push(ScriptRun {
                    script: script.clone(),
                    why: format!("quorum_down for {service}"),
                });
            }
            out.changed.push(si);
        }
        out
    }

    /// The real servers service `si` should have now, in the model's order (the sorry
    /// server last): present ones with their weights.
    pub fn effective_reals(&self, si: usize) -> Vec<RealServer> {
        let Some(s) = self.services.get(si) else {
            return Vec::new();
        };
        let sorry_active = !s.quorum_up && s.spec.sorry_server.is_some();
        let mut out: Vec<RealServer> = Vec::new();
        for (spec, st) in s.spec.reals.iter().zip(&s.reals) {
            let mut real = spec.real.clone();
            if st.alive && !sorry_active {
                real.weight = st.dyn_weight.unwrap_or(spec.real.weight);
            } else if spec.inhibit_on_failure {
                real.weight = 0;
            } else {
                continue;
            }
            out.push(real);
        }
        if let Some(sorry) = &s.spec.sorry_server {
            let id = real_id(&s.spec, &sorry.real);
            let taken = out.iter().any(|r| real_id(&s.spec, r) == id);
            if !taken && (sorry_active || sorry.inhibit) {
                let mut real = sorry.real.clone();
                if !sorry_active {
                    real.weight = 0;
                }
                out.push(real);
            }
        }
        out
    }

    /// `base` with every checked service's real servers replaced by the effective ones.
    pub fn effective_config(&self, base: &Config) -> Config {
        let mut config = base.clone();
        for (si, s) in self.services.iter().enumerate() {
            if let Some(svc) = config
                .services
                .iter_mut()
                .find(|v| v.id() == s.spec.service)
            {
                svc.reals = self.effective_reals(si);
            }
        }
        config
    }

    /// The service behind index `si`.
    pub fn service_id(&self, si: usize) -> Option<ServiceId> {
        self.services.get(si).map(|s| s.spec.service)
    }

    /// Whether service `si` has quorum.
    pub fn has_quorum(&self, si: usize) -> bool {
        self.services.get(si).is_some_and(|s| s.quorum_up)
    }

    /// Every real server's state.
    pub fn status(&self) -> Vec<RealStatus> {
        let mut out = Vec::new();
        for s in &self.services {
            for (spec, st) in s.spec.reals.iter().zip(&s.reals) {
                out.push(RealStatus {
                    service: s.spec.service,
                    real: real_id(&s.spec, &spec.real),
                    alive: st.alive,
                    weight: st.dyn_weight.unwrap_or(spec.real.weight),
                    failed_checkers: st.failed,
                    checks_ok: st.checkers.iter().map(|c| c.ok).sum(),
                    checks_failed: st.checkers.iter().map(|c| c.failed).sum(),
                    last_check: st.last_check.clone(),
                    since: st.since,
                });
            }
        }
        out
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Shutting down: with `omega`, the down notifiers of live real servers and the
    /// `quorum_down` of services that have quorum run, as keepalived does on exit.
    pub fn shutdown(&mut self) -> Output {
        let mut out = Output::default();
        for s in &self.services {
            if !s.spec.omega {
                continue;
            }
            for (spec, st) in s.spec.reals.iter().zip(&s.reals) {
                if st.alive
                    && let Some(script) = &spec.notify_down
                {
                    out.scripts.push(ScriptRun {
                        script: script.clone(),
                        why: format!(
                            "notify_down for {} {} (omega: shutting down)",
                            s.spec.service,
                            real_id(&s.spec, &spec.real)
                        ),
                    });
                }
            }
            if s.quorum_up
                && let Some(script) = &s.spec.quorum_down
            {
                out.scripts.push(ScriptRun {
                    script: script.clone(),
                    why: format!("quorum_down for {} (omega: shutting down)", s.spec.service),
                });
            }
        }
        self.counters.scripts += out.scripts.len() as u64;
        out
    }
}

impl ServiceState {
    /// Sum of the weights of live real servers (keepalived's weigh_live_realservers).
    fn live_weight(&self) -> u64 {
        self.spec
            .reals
            .iter()
            .zip(&self.reals)
            .filter(|(_, st)| st.alive)
            .map(|(spec, st)| u64::from(st.dyn_weight.unwrap_or(spec.real.weight)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rvs_config::{ForwardMethod, Protocol};

    use super::*;
    use crate::model::{CheckKind, RealHealth, SorryServer, Timing};

    const SVC: ServiceId = ServiceId {
        protocol: Protocol::Tcp,
        address: Ipv4Addr::new(198, 18, 0, 10),
        port: 80,
    };

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn checker(retry: u32, alpha: bool) -> Checker {
        Checker {
            kind: CheckKind::Tcp,
            target: "198.18.2.1:80".parse().unwrap(),
            bind_addr: None,
            bind_port: None,
            bind_if: None,
            fwmark: None,
            timeout: secs(1.0),
            timing: Timing {
                delay_loop: secs(5.0),
                retry,
                delay_before_retry: secs(1.0),
                warmup: Duration::ZERO,
                alpha,
            },
            origin: "t.conf:1".into(),
        }
    }

    fn real(n: u8, weight: u32, checkers: Vec<Checker>) -> RealHealth {
        let mut r = RealServer::new(Ipv4Addr::new(198, 18, 2, n));
        r.weight = weight;
        r.forward = ForwardMethod::Nat;
        RealHealth {
            real: r,
            inhibit_on_failure: false,
            notify_up: Some(Script::new(vec!["up".into(), n.to_string()])),
            notify_down: Some(Script::new(vec!["down".into(), n.to_string()])),
            checkers,
        }
    }

    fn service(reals: Vec<RealHealth>) -> ServiceHealth {
        ServiceHealth {
            service: SVC,
            quorum: 1,
            hysteresis: 0,
            quorum_up: Some(Script::new(vec!["qup".into()])),
            quorum_down: Some(Script::new(vec!["qdown".into()])),
            omega: false,
            sorry_server: None,
            reals,
        }
    }

    fn start(s: ServiceHealth) -> (HealthState, Output, Instant) {
        let t0 = Instant::now();
        let (st, out) = HealthState::new(HealthModel { services: vec![s] }, t0, 7);
        (st, out, t0)
    }

    fn id(real: usize, checker: usize) -> CheckId {
        CheckId {
            service: 0,
            real,
            checker,
        }
    }

    fn weights(st: &HealthState) -> Vec<(u8, u32)> {
        st.effective_reals(0)
            .iter()
            .map(|r| (r.address.octets()[3], r.weight))
            .collect()
    }

    fn scripts(out: &Output) -> Vec<String> {
        out.scripts
            .iter()
            .map(|s| s.script.argv.join(" "))
            .collect()
    }

    fn down(why: &str) -> Outcome {
        Outcome::Down(why.into())
    }

    #[test]
    fn first_failure_is_enough_then_retries_count() {
        let (mut st, out, t0) = start(service(vec![real(1, 3, vec![checker(2, false)])]));
        assert!(out.transitions.is_empty());
        assert_eq!(weights(&st), [(1, 3)]);
        assert_eq!(st.take_due(t0), [id(0, 0)]);
        assert_eq!(st.next_due(), None, "in flight");
        // First result fails: down at once, as keepalived (retry_it starts at retry).
        let out = st.on_result(id(0, 0), down("connection refused"), t0);
        let kinds: Vec<_> = out.transitions.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            kinds,
            [
                "service TCP 198.18.0.10:80: real 198.18.2.1:80: TCP_CHECK at t.conf:1 down (connection refused; failed 3 time(s) in a row)",
                "service TCP 198.18.0.10:80: real 198.18.2.1:80 is down (connection refused; failed 3 time(s) in a row; removed from the service)",
                "service TCP 198.18.0.10:80: quorum lost (live weight 0 < 1-0)",
            ]
        );
        assert_eq!(scripts(&out), ["down 1", "qdown"]);
        assert_eq!(out.changed, [0]);
        assert!(weights(&st).is_empty());
        assert_eq!(st.next_due(), Some(t0 + secs(5.0)));
        // One success brings it back.
        let t1 = t0 + secs(5.0);
        assert_eq!(st.take_due(t1), [id(0, 0)]);
        let out = st.on_result(id(0, 0), Outcome::Up, t1);
        assert_eq!(scripts(&out), ["up 1", "qup"]);
        assert_eq!(weights(&st), [(1, 3)]);
        // Now a failure is retried twice, 1 s apart, before the checker goes down.
        let mut t = t1 + secs(5.0);
        for attempt in 0..2 {
            assert_eq!(st.take_due(t), [id(0, 0)], "attempt {attempt}");
            let out = st.on_result(id(0, 0), down("timeout"), t);
            assert!(out.transitions.is_empty(), "attempt {attempt}: {out:?}");
            assert_eq!(st.next_due(), Some(t + secs(1.0)));
            t += secs(1.0);
        }
        st.take_due(t);
        let out = st.on_result(id(0, 0), down("timeout"), t);
        assert_eq!(out.transitions.len(), 3);
        assert_eq!(st.next_due(), Some(t + secs(5.0)));
        // A success between failures resets the count.
        t += secs(5.0);
        st.take_due(t);
        st.on_result(id(0, 0), Outcome::Up, t);
        t += secs(5.0);
        st.take_due(t);
        assert!(st.on_result(id(0, 0), down("x"), t).transitions.is_empty());
        t += secs(1.0);
        st.take_due(t);
        assert!(
            st.on_result(id(0, 0), Outcome::Up, t)
                .transitions
                .is_empty()
        );
        t += secs(5.0);
        st.take_due(t);
        assert!(st.on_result(id(0, 0), down("x"), t).transitions.is_empty());
        let c = st.counters();
        assert_eq!(
            (c.checks, c.check_failures, c.reals_down, c.reals_up),
            (9, 6, 2, 2)
        );
    }

    #[test]
    fn a_real_server_is_up_only_when_all_its_checkers_are() {
        let (mut st, _, t0) = start(service(vec![
            real(1, 1, vec![checker(0, false), checker(0, false)]),
            real(2, 1, vec![]),
        ]));
        st.take_due(t0);
        let out = st.on_result(id(0, 0), down("a"), t0);
        assert_eq!(out.transitions.len(), 2, "checker down, real down");
        assert_eq!(weights(&st), [(2, 1)]);
        let out = st.on_result(id(0, 1), down("b"), t0);
        assert_eq!(out.transitions.len(), 1, "only the checker: {out:?}");
        assert!(out.scripts.is_empty());
        let t1 = t0 + secs(5.0);
        st.take_due(t1);
        let out = st.on_result(id(0, 0), Outcome::Up, t1);
        assert_eq!(out.transitions.len(), 1, "one checker still down");
        assert_eq!(weights(&st), [(2, 1)]);
        let out = st.on_result(id(0, 1), Outcome::Up, t1);
        assert_eq!(out.transitions.len(), 2, "checker up, real up");
        assert_eq!(weights(&st), [(1, 1), (2, 1)]);
        let status = st.status();
        assert!(status[0].alive && status[0].checks_failed == 2 && status[0].checks_ok == 2);
        // Down at t0, up again at t1: the status says since when, and what the last check said.
        assert_eq!(status[0].since, t1);
        let last = status[0].last_check.as_ref().expect("a check ran");
        assert!(last.ok && last.at == t1, "{last:?}");
        assert_eq!(status[1].since, t0, "never changed: since checking started");
        assert!(status[1].last_check.is_none());
        let t2 = t1 + secs(5.0);
        st.take_due(t2);
        st.on_result(id(0, 1), down("connection refused"), t2);
        let status = st.status();
        assert!(!status[0].alive && status[0].since == t2);
        let last = status[0].last_check.as_ref().expect("a check ran");
        assert!(
            !last.ok && last.text.ends_with(": connection refused"),
            "{last:?}"
        );
    }

    #[test]
    fn alpha_starts_down_and_announces_a_confirmed_failure() {
        let mut s = service(vec![
            real(1, 1, vec![checker(1, true)]),
            real(2, 1, vec![checker(1, true)]),
        ]);
        s.quorum = 1;
        let (mut st, out, t0) = start(s);
        // No live weight: quorum is down from the start, without a sorry server silently.
        assert!(out.transitions.is_empty() && out.scripts.is_empty());
        assert!(weights(&st).is_empty());
        assert!(!st.has_quorum(0));
        st.take_due(t0);
        let out = st.on_result(id(0, 0), down("refused"), t0);
        assert!(out.transitions.is_empty());
        assert_eq!(scripts(&out), ["down 1"]);
        let out = st.on_result(id(1, 0), Outcome::Up, t0);
        assert_eq!(scripts(&out), ["up 2", "qup"]);
        assert_eq!(weights(&st), [(2, 1)]);
    }

    #[test]
    fn inhibit_on_failure_keeps_the_server_at_weight_zero() {
        let mut r = real(1, 5, vec![checker(0, false)]);
        r.inhibit_on_failure = true;
        let (mut st, _, t0) = start(service(vec![r, real(2, 1, vec![])]));
        st.take_due(t0);
        let out = st.on_result(id(0, 0), down("refused"), t0);
        assert!(
            out.transitions[1]
                .reason
                .ends_with("weight set to 0 (inhibit_on_failure)")
        );
        assert_eq!(weights(&st), [(1, 0), (2, 1)]);
    }

    #[test]
    fn sorry_server_replaces_the_reals_while_quorum_is_lost() {
        let mut s = service(vec![
            real(1, 1, vec![checker(0, false)]),
            real(2, 1, vec![checker(0, false)]),
        ]);
        let mut sorry = RealServer::new(Ipv4Addr::new(198, 18, 2, 99));
        sorry.forward = ForwardMethod::Nat;
        s.sorry_server = Some(SorryServer {
            real: sorry,
            inhibit: false,
        });
        let (mut st, _, t0) = start(s);
        st.take_due(t0);
        st.on_result(id(0, 0), down("x"), t0);
        assert_eq!(weights(&st), [(2, 1)]);
        let out = st.on_result(id(1, 0), down("x"), t0);
        assert!(
            out.transitions
                .iter()
                .any(|t| t.kind == TransitionKind::QuorumLost)
        );
        assert_eq!(weights(&st), [(99, 1)]);
        let t1 = t0 + secs(5.0);
        st.take_due(t1);
        let out = st.on_result(id(1, 0), Outcome::Up, t1);
        assert!(
            out.transitions
                .iter()
                .any(|t| t.kind == TransitionKind::QuorumGained)
        );
        assert_eq!(weights(&st), [(2, 1)]);
    }

    #[test]
    fn sorry_server_at_start_under_alpha_and_sorry_inhibit() {
        let mut s = service(vec![real(1, 1, vec![checker(0, true)])]);
        let sorry = RealServer::new(Ipv4Addr::new(198, 18, 2, 99));
        s.sorry_server = Some(SorryServer {
            real: sorry,
            inhibit: true,
        });
        let (mut st, out, t0) = start(s);
        // keepalived: "Starting with quorum down", the sorry server goes in at once.
        assert_eq!(out.transitions[0].kind, TransitionKind::QuorumLost);
        assert_eq!(scripts(&out), ["qdown"]);
        assert_eq!(weights(&st), [(99, 1)]);
        st.take_due(t0);
        st.on_result(id(0, 0), Outcome::Up, t0);
        // Quorum back: the sorry server stays with weight 0 (sorry_server_inhibit).
        assert_eq!(weights(&st), [(1, 1), (99, 0)]);
    }

    #[test]
    fn quorum_with_hysteresis() {
        let reals = (1..=4)
            .map(|n| real(n, 1, vec![checker(0, false)]))
            .collect();
        let mut s = service(reals);
        s.quorum = 3;
        s.hysteresis = 1;
        let (mut st, out, t0) = start(s);
        assert!(out.transitions.is_empty());
        assert!(st.has_quorum(0), "4 >= 3+1");
        st.take_due(t0);
        let mut lost_at = None;
        for r in 0..3 {
            let out = st.on_result(id(r, 0), down("x"), t0);
            if out
                .transitions
                .iter()
                .any(|t| t.kind == TransitionKind::QuorumLost)
            {
                lost_at = Some(r);
                assert!(scripts(&out).contains(&"qdown".to_string()));
            }
        }
        // 3 live, 2 live: still >= 3-1; 1 live: lost.
        assert_eq!(lost_at, Some(2));
        let t1 = t0 + secs(5.0);
        st.take_due(t1);
        let mut gained_at = None;
        for r in 0..3 {
            let out = st.on_result(id(r, 0), Outcome::Up, t1);
            if out
                .transitions
                .iter()
                .any(|t| t.kind == TransitionKind::QuorumGained)
            {
                gained_at = Some(r);
            }
        }
        // Back to 2 live, 3 live: below 3+1; 4 live: gained.
        assert_eq!(gained_at, Some(2));
    }

    #[test]
    fn dynamic_weight_from_misc_check() {
        let (mut st, _, t0) = start(service(vec![real(1, 1, vec![checker(0, false)])]));
        st.take_due(t0);
        let out = st.on_result(id(0, 0), Outcome::UpWithWeight(10), t0);
        assert_eq!(
            out.transitions[0].kind,
            TransitionKind::WeightChanged {
                real: RealId {
                    address: Ipv4Addr::new(198, 18, 2, 1),
                    port: 80
                },
                from: 1,
                to: 10
            }
        );
        assert_eq!(weights(&st), [(1, 10)]);
        let t1 = t0 + secs(5.0);
        st.take_due(t1);
        // Exit 0 keeps the weight, a repeat changes nothing.
        assert!(
            st.on_result(id(0, 0), Outcome::Up, t1)
                .transitions
                .is_empty()
        );
        assert_eq!(weights(&st), [(1, 10)]);
    }

    #[test]
    fn warmup_spreads_the_first_checks_within_the_bound() {
        let mut c = checker(0, false);
        c.timing.warmup = secs(3.0);
        let reals = (1..=50).map(|n| real(n, 1, vec![c.clone()])).collect();
        let (mut st, _, t0) = start(service(reals));
        let first = st.next_due().unwrap();
        assert!(first >= t0 && first <= t0 + secs(3.0));
        assert!(st.take_due(t0 + secs(3.0)).len() == 50);
        let (mut st2, _, t0) = start(service(
            (1..=50).map(|n| real(n, 1, vec![c.clone()])).collect(),
        ));
        assert!(st2.take_due(t0 + secs(1.5)).len() < 50, "not all at once");
    }

    #[test]
    fn omega_runs_the_down_notifiers_on_shutdown() {
        let mut s = service(vec![
            real(1, 1, vec![]),
            real(2, 1, vec![checker(0, false)]),
        ]);
        s.omega = true;
        let (mut st, _, t0) = start(s);
        st.take_due(t0);
        st.on_result(id(1, 0), down("x"), t0);
        assert_eq!(scripts(&st.shutdown()), ["down 1", "qdown"]);
        let (mut st, _, _) = start(service(vec![real(1, 1, vec![])]));
        assert!(st.shutdown().scripts.is_empty(), "no omega, no notifiers");
    }
}
