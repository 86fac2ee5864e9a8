//! The daemon's state and main loop: the one place that changes the desired state and
//! writes it to the dataplane, fed by signals, timers and API calls.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rvs_api::{
    ApiError, Applied, Connection, ConnectionList, ErrorKind, RealStatus, ServiceList,
    ServiceStatus, Status,
};
use rvs_common::{ConnState, IPPROTO_TCP};
use rvs_config::{Config, Protocol};
use rvs_dataplane::{ConnScan, Dataplane, DataplaneError, PlanError, neigh::NeighbourResolver};
use serde_json::Value;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    api::{Call, Request},
    ops::{Index, SideEffects, commit, plan_ops},
    stats::{CounterId, ESTIMATOR_INTERVAL_SECS, Estimator, stats},
};

/// Counter sets sampled per slice of a rate round (a slice every 20 ms).
const RATE_SLICE: usize = 2_000;
/// How often real servers' neighbour entries are refreshed.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);
/// Real servers whose neighbours one refresh tick re-resolves (a large configuration is
/// refreshed a slice per tick, so the main loop never stalls on netlink).
const NEIGHBOUR_SLICE: usize = 1_000;
/// Shortest interval between two passes over the connection table (expiry and counts);
/// a large table is scanned less often (four times the last pass's duration).
const CONN_SCAN_MIN: Duration = Duration::from_secs(2);

/// Where the desired state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// rvs's TOML file (or none: the pinned state, driven through the API).
    Toml(Option<PathBuf>),
    /// An existing keepalived.conf: services from its virtual_server blocks, real servers
    /// in and out of them as its health checks say.
    Keepalived {
        /// The keepalived.conf.
        path: PathBuf,
        /// Interfaces to attach to (keepalived.conf has no such setting).
        interfaces: Vec<String>,
        /// bpffs directory.
        pin_path: Option<PathBuf>,
    },
}

/// Reads a keepalived.conf into rvs's configuration and health model, logging every
/// warning with its file and line.
pub fn read_keepalived(
    path: &Path,
    interfaces: &[String],
    pin_path: Option<&Path>,
) -> Result<(
    Config,
    rvs_health::HealthModel,
    rvs_keepalived::model::KeepalivedConf,
)> {
    let import = rvs_keepalived::load(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("invalid keepalived config {}", path.display()))?;
    for w in &import.warnings {
        tracing::warn!("{w}");
    }
    let mut config = import.config;
    config.daemon.interfaces = interfaces.to_vec();
    if let Some(p) = pin_path {
        config.daemon.pin_path = p.to_owned();
    }
    Ok((config, import.health, import.keepalived))
}

/// The VRRP side of a keepalived.conf, running inside rvsd.
struct Vrrp {
    /// What the instances are doing.
    status: watch::Receiver<rvs_vrrp::io::Snapshot>,
    /// Every VIP the instances manage.
    managed: HashSet<std::net::Ipv4Addr>,
    /// Dropping it stops the instances (a MASTER resigns with priority 0).
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Vrrp {
    /// Starts the keepalived.conf's vrrp_instance blocks, if it has any.
    fn start(conf: &rvs_keepalived::model::KeepalivedConf) -> Result<Option<Vrrp>> {
        if conf.vrrp_instances.is_empty() {
            return Ok(None);
        }
        let (config, warnings) =
            rvs_vrrp::keepalived::from_keepalived(conf).map_err(|e| anyhow::anyhow!("{e}"))?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let managed = config
            .instances
            .iter()
            .flat_map(|i| i.virtual_ipaddress.iter())
            .filter_map(|v| match v.address {
                std::net::IpAddr::V4(a) => Some(a),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        let (tx, rx) = rvs_vrrp::io::status_channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stop_rx.await;
            };
            if let Err(e) = rvs_vrrp::io::run(config, shutdown, tx).await {
                tracing::error!(error = %e, "VRRP stopped");
            }
        });
        Ok(Some(Vrrp {
            status: rx,
            managed,
            _stop: stop_tx,
        }))
    }

    /// The managed VIPs this node is not MASTER for.
    fn standby(&self) -> HashSet<std::net::Ipv4Addr> {
        let snapshot = self.status.borrow();
        self.managed
            .iter()
            .filter(|v| !snapshot.is_master_for(std::net::IpAddr::V4(**v)))
            .copied()
            .collect()
    }
}

/// Resolves when the VRRP instances change state; never without VRRP.
async fn vrrp_changed(vrrp: &mut Option<Vrrp>) -> Result<(), watch::error::RecvError> {
    match vrrp {
        Some(v) => v.status.changed().await,
        None => std::future::pending().await,
    }
}

/// Reads and validates a TOML config file.
pub fn read_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    Config::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// The running daemon.
pub struct Daemon {
    dp: Dataplane,
    /// The desired state; the dataplane holds exactly this after every successful change.
    desired: Config,
    /// `desired`'s services by id.
    index: Index,
    /// Real servers of services just changed through the API, to resolve next.
    pending_neighbours: Vec<std::net::Ipv4Addr>,
    /// Counter sets still to sample in the current rate round.
    rate_queue: Vec<CounterId>,
    /// Where the periodic neighbour refresh goes on.
    neigh_cursor: usize,
    source: Source,
    /// The health engine when the state comes from a keepalived.conf.
    health: Option<rvs_health::HealthHandle>,
    /// The engine's effective configuration (real servers in or out by their checks).
    health_config: Option<watch::Receiver<Arc<Config>>>,
    /// VRRP from the keepalived.conf: services of VIPs this node is not MASTER for stand by.
    vrrp: Option<Vrrp>,
    resolver: NeighbourResolver,
    estimator: Estimator,
    scan: ConnScan,
}

/// Resolves when the health engine publishes a new effective configuration; never when
/// there is no engine.
async fn health_changed(
    rx: &mut Option<watch::Receiver<Arc<Config>>>,
) -> Result<(), watch::error::RecvError> {
    match rx {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

fn api_error(e: DataplaneError) -> ApiError {
    match e {
        DataplaneError::Plan(
            p @ (PlanError::NoServiceId(_) | PlanError::NoRealId(_) | PlanError::NoSlots { .. }),
        ) => ApiError::new(ErrorKind::Capacity, p.to_string()),
        DataplaneError::Plan(p) => ApiError::new(ErrorKind::Invalid, p.to_string()),
        other => ApiError::new(ErrorKind::Internal, other.to_string()),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
}

impl Daemon {
    /// Loads (or adopts) the dataplane, applies the config file if any, attaches.
    pub async fn start(source: Source) -> Result<Daemon> {
        let (file, model) = match &source {
            Source::Toml(path) => (path.as_deref().map(read_config).transpose()?, None),
            Source::Keepalived {
                path,
                interfaces,
                pin_path,
            } => {
                let (config, model, conf) = read_keepalived(path, interfaces, pin_path.as_deref())?;
                (Some(config), Some((model, conf)))
            }
        };
        let base = file.clone().unwrap_or_default();
        rvs_dataplane::ensure_bpffs()?;
        let dp = Dataplane::load(&base.daemon.pin_path, base.limits)?;
        // Without a file, the adopted maps are the desired state (as IPVS's table is for
        // ipvsadm); with one, the file is applied to them as a diff.
        let desired = match file {
            Some(f) => f,
            None => Config {
                daemon: base.daemon.clone(),
                ..dp.adopted().clone()
            },
        };
        // Under keepalived.conf, the health engine decides which real servers are in.
        let (health, health_config, desired, vrrp) = match model {
            Some((model, conf)) => {
                let vrrp = Vrrp::start(&conf)?;
                let handle = rvs_health::HealthEngine::spawn(desired, model)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let rx = handle.config();
                let effective = (**rx.borrow()).clone();
                (Some(handle), Some(rx), effective, vrrp)
            }
            None => (None, None, desired, None),
        };
        let mut daemon = Daemon {
            dp,
            desired: Config::default(),
            index: Index::default(),
            pending_neighbours: Vec::new(),
            rate_queue: Vec::new(),
            neigh_cursor: 0,
            source,
            health,
            health_config,
            vrrp,
            resolver: NeighbourResolver::new()?,
            estimator: Estimator::default(),
            scan: ConnScan::default(),
        };
        let applied = daemon.apply(desired).map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(services = applied.services, "config applied");
        daemon.resolve_neighbours().await;
        for iface in daemon.desired.daemon.interfaces.clone() {
            daemon.dp.attach(&iface, daemon.desired.daemon.xdp_mode)?;
            tracing::info!(interface = %iface, mode = ?daemon.desired.daemon.xdp_mode, "balancer attached");
        }
        daemon.follow_vrrp();
        Ok(daemon)
    }

    /// Makes `next` the desired state: planned and written as a diff, or nothing changes.
    fn apply(&mut self, next: Config) -> Result<Applied, ApiError> {
        if next.limits != self.dp.limits() {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "[limits] only change with a restart (and rvsd --cleanup, as the maps are sized at creation)",
            ));
        }
        let plan = self.dp.apply(&next).map_err(api_error)?;
        self.desired = next;
        self.index = Index::of(&self.desired);
        Ok(self.applied(&plan))
    }

    /// Applies a batch of ops: only the services it touches are planned and written.
    fn apply_ops(&mut self, ops: &[rvs_api::Op]) -> Result<(Applied, SideEffects), ApiError> {
        let (delta, effects) = plan_ops(&self.desired, &self.index, ops)?;
        let updates: Vec<(rvs_config::ServiceId, Option<&rvs_config::VirtualService>)> = delta
            .services
            .iter()
            .map(|(id, s)| (*id, s.as_ref()))
            .collect();
        let plan = self
            .dp
            .apply_updates(&updates, &delta.timeouts)
            .map_err(api_error)?;
        self.pending_neighbours.extend(
            delta
                .services
                .iter()
                .filter_map(|(_, s)| s.as_ref())
                .flat_map(|s| s.reals.iter().map(|r| r.address)),
        );
        commit(&mut self.desired, &mut self.index, delta);
        Ok((self.applied(&plan), effects))
    }

    /// Forgets the rates of reused ids and summarises a written plan.
    fn applied(&mut self, plan: &rvs_dataplane::Plan) -> Applied {
        for sid in &plan.reset_services {
            self.estimator.reset(CounterId::Service(*sid));
        }
        for rid in &plan.reset_real_counters {
            self.estimator.reset(CounterId::Real(*rid));
        }
        Applied {
            services: self.desired.services.len(),
            services_written: plan.upsert_services.len(),
            services_deleted: plan.delete_services.len(),
            reals_written: plan.reals.len() + plan.retire_reals.len(),
        }
    }

    /// Re-reads the config file and applies it; [daemon] must not change. Under a
    /// keepalived.conf the health checks start again from the new file (as keepalived's
    /// reload does), but unchanged services keep their connections and counters.
    async fn reload(&mut self) -> Result<Applied, ApiError> {
        let invalid = |e: anyhow::Error| ApiError::new(ErrorKind::Invalid, format!("{e:#}"));
        let next = match &self.source {
            Source::Toml(None) => {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    "rvsd runs without --config: nothing to reload",
                ));
            }
            Source::Toml(Some(path)) => read_config(path).map_err(invalid)?,
            Source::Keepalived {
                path,
                interfaces,
                pin_path,
            } => {
                // VRRP keeps running as started: its blocks change with a restart.
                let (config, model, _) =
                    read_keepalived(path, interfaces, pin_path.as_deref()).map_err(invalid)?;
                if config.daemon != self.desired.daemon {
                    return Err(ApiError::new(
                        ErrorKind::Invalid,
                        "[daemon] only changes with a restart",
                    ));
                }
                let handle = rvs_health::HealthEngine::spawn(config, model)
                    .map_err(|e| ApiError::new(ErrorKind::Invalid, e.to_string()))?;
                let rx = handle.config();
                let effective = (**rx.borrow()).clone();
                if let Some(old) = self.health.replace(handle) {
                    old.shutdown().await;
                }
                self.health_config = Some(rx);
                effective
            }
        };
        if next.daemon != self.desired.daemon {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "[daemon] only changes with a restart",
            ));
        }
        self.apply(next)
    }

    /// Every real server address, sorted, once.
    fn real_addresses(&self) -> Vec<std::net::Ipv4Addr> {
        let mut addrs: Vec<_> = self
            .desired
            .services
            .iter()
            .flat_map(|s| s.reals.iter().map(|r| r.address))
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Asks the kernel to resolve every real server's next hop.
    async fn resolve_neighbours(&self) {
        self.resolve(self.real_addresses()).await;
    }

    /// Re-resolves the next slice of real servers (periodic refresh).
    async fn refresh_neighbours(&mut self) {
        let addrs = self.real_addresses();
        if self.neigh_cursor >= addrs.len() {
            self.neigh_cursor = 0;
        }
        let end = (self.neigh_cursor + NEIGHBOUR_SLICE).min(addrs.len());
        let slice = addrs[self.neigh_cursor..end].to_vec();
        self.neigh_cursor = end;
        self.resolve(slice).await;
    }

    async fn resolve(&self, mut addrs: Vec<std::net::Ipv4Addr>) {
        addrs.sort();
        addrs.dedup();
        for addr in addrs {
            if let Err(e) = self.resolver.resolve(addr).await {
                tracing::warn!(real = %addr, error = %e, "cannot resolve real server's next hop");
            }
        }
    }

    /// The ids of every service and real server, for the estimator.
    fn counter_ids(&self) -> Vec<CounterId> {
        let planner = self.dp.planner();
        let mut ids = Vec::new();
        for svc in &self.desired.services {
            let id = svc.id();
            if let Some(e) = planner.service_entry(&id) {
                ids.push(CounterId::Service(e.id));
            }
            for r in &svc.reals {
                if let Some(rid) = planner.real_id(&id, r.address, r.port.unwrap_or(svc.port)) {
                    ids.push(CounterId::Real(rid));
                }
            }
        }
        ids
    }

    /// Starts a sampling round over every service and real server (every 2 s, as IPVS's
    /// estimator); the round is worked off in slices so API calls never wait behind it.
    fn start_rate_round(&mut self) {
        let ids = self.counter_ids();
        self.estimator
            .retain(&ids.iter().copied().collect::<HashSet<_>>());
        self.rate_queue = ids;
    }

    /// Samples the next slice of the current round.
    fn sample_rates(&mut self) {
        let from = self.rate_queue.len().saturating_sub(RATE_SLICE);
        for id in self.rate_queue.split_off(from) {
            let counters = match id {
                CounterId::Service(i) => self.dp.service_counters(i),
                CounterId::Real(i) => self.dp.real_counters(i),
            };
            if let Ok(c) = counters {
                self.estimator.sample(id, c, ESTIMATOR_INTERVAL_SECS);
            }
        }
    }

    /// Puts the services of VIPs this node is not VRRP MASTER for on standby.
    fn follow_vrrp(&mut self) {
        let Some(vrrp) = &self.vrrp else { return };
        for i in &vrrp.status.borrow().instances {
            tracing::debug!(instance = %i.name, state = ?i.state, "VRRP state");
        }
        let standby = vrrp.standby();
        if standby.is_empty() {
            tracing::info!("VRRP: MASTER for every managed VIP; balancing them");
        } else {
            tracing::info!(standby = ?standby, "VRRP: not MASTER for some VIPs; their new connections pass");
        }
        if let Err(e) = self.dp.set_standby(standby) {
            tracing::error!(error = %e, "cannot apply the VRRP state to the dataplane");
        }
    }

    fn status(&self) -> Result<Status, ApiError> {
        let verdicts = self.dp.verdicts().map_err(api_error)?;
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            conn_table_size: self.dp.limits().connections,
            timeouts: self.desired.timeouts,
            interfaces: self.desired.daemon.interfaces.clone(),
            verdicts: verdicts
                .into_iter()
                .map(|(v, n)| (v.name().to_owned(), n))
                .collect(),
            vrrp: self.vrrp.as_ref().map_or_else(Vec::new, |v| {
                v.status
                    .borrow()
                    .instances
                    .iter()
                    .map(|i| rvs_api::VrrpStatus {
                        instance: i.name.clone(),
                        interface: i.interface.clone(),
                        vrid: i.vrid,
                        state: format!("{:?}", i.state).to_uppercase(),
                        priority: i.effective_priority,
                        addresses: i.addresses.clone(),
                    })
                    .collect()
            }),
        })
    }

    fn services(&self) -> Result<ServiceList, ApiError> {
        let planner = self.dp.planner();
        let mut services = Vec::with_capacity(self.desired.services.len());
        for svc in &self.desired.services {
            let id = svc.id();
            let entry = planner.service_entry(&id).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Internal,
                    format!("service {id} has no map entry"),
                )
            })?;
            let counters = self.dp.service_counters(entry.id).map_err(api_error)?;
            let mut reals = Vec::with_capacity(svc.reals.len());
            // IPVS lists a service's servers newest first.
            for r in svc.reals.iter().rev() {
                let rid = planner
                    .real_id(&id, r.address, r.port.unwrap_or(svc.port))
                    .ok_or_else(|| {
                        ApiError::new(ErrorKind::Internal, format!("real {} has no id", r.address))
                    })?;
                let c = self.dp.real_counters(rid).map_err(api_error)?;
                let (active, inactive) = self.scan.per_real.get(&rid).copied().unwrap_or_default();
                reals.push(RealStatus {
                    real: r.clone(),
                    active_conns: active,
                    inactive_conns: inactive,
                    persist_conns: 0,
                    stats: stats(&c),
                    rates: self.estimator.rates(CounterId::Real(rid)),
                });
            }
            services.push(ServiceStatus {
                service: svc.clone(),
                stats: stats(&counters),
                rates: self.estimator.rates(CounterId::Service(entry.id)),
                reals,
            });
        }
        Ok(ServiceList {
            conn_table_size: self.dp.limits().connections,
            services,
        })
    }

    fn connections(&self) -> ConnectionList {
        let connections = self
            .dp
            .connections()
            .into_iter()
            .filter_map(|(key, conn, left_ns)| {
                let real = self.dp.real(conn.real)?;
                let state = ConnState::from_u8(conn.state).map_or("UDP", ConnState::name);
                let addr = |a: u32| std::net::Ipv4Addr::from(a.to_ne_bytes());
                Some(Connection {
                    protocol: if key.proto == u32::from(IPPROTO_TCP) {
                        Protocol::Tcp
                    } else {
                        Protocol::Udp
                    },
                    expires_in: left_ns.div_ceil(rvs_common::NS_PER_SEC),
                    state: state.to_owned(),
                    client: (addr(key.src), u16::from_be(key.sport)),
                    virtual_addr: (addr(key.dst), u16::from_be(key.dport)),
                    real: (addr(real.addr), u16::from_be(real.port)),
                })
            })
            .collect();
        ConnectionList { connections }
    }

    fn zero(&mut self, which: Option<rvs_config::ServiceId>) -> Result<(), ApiError> {
        let planner = self.dp.planner();
        let mut targets = Vec::new();
        for svc in &self.desired.services {
            let id = svc.id();
            if which.is_some_and(|w| w != id) {
                continue;
            }
            let Some(entry) = planner.service_entry(&id) else {
                continue;
            };
            let reals: Vec<u32> = svc
                .reals
                .iter()
                .filter_map(|r| planner.real_id(&id, r.address, r.port.unwrap_or(svc.port)))
                .collect();
            targets.push((entry.id, reals));
        }
        for (sid, reals) in targets {
            self.dp.zero_counters(sid, &reals).map_err(api_error)?;
            self.estimator.reset(CounterId::Service(sid));
            for rid in reals {
                self.estimator.reset(CounterId::Real(rid));
            }
        }
        Ok(())
    }

    fn call(&mut self, call: Call) -> Result<Value, ApiError> {
        if self.health.is_some() && matches!(call, Call::Ops(_) | Call::PutConfig(_)) {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "this rvsd follows a keepalived.conf and its health checks: edit the file and reload (SIGHUP or POST /v1/reload)",
            ));
        }
        match call {
            Call::Status => to_value(&self.status()?),
            Call::GetConfig => to_value(&self.desired),
            Call::PutConfig(next) => {
                if next.daemon != self.desired.daemon {
                    return Err(ApiError::new(
                        ErrorKind::Invalid,
                        "[daemon] only changes with a restart",
                    ));
                }
                next.validate()
                    .map_err(|e| ApiError::new(ErrorKind::Invalid, e.to_string()))?;
                to_value(&self.apply(*next)?)
            }
            Call::Ops(batch) => {
                let (applied, effects) = self.apply_ops(&batch.ops)?;
                for which in effects.zero {
                    self.zero(which)?;
                }
                to_value(&applied)
            }
            Call::Reload => Err(ApiError::new(
                ErrorKind::Internal,
                "reload is handled by the main loop",
            )),
            Call::Services => to_value(&self.services()?),
            Call::Connections => to_value(&self.connections()),
            Call::Metrics => {
                let status = self.status()?;
                let services = self.services()?;
                let vrrp = self
                    .vrrp
                    .as_ref()
                    .map(|v| v.status.borrow().instances.clone())
                    .unwrap_or_default();
                Ok(Value::String(crate::metrics::render(
                    &crate::metrics::Snapshot {
                        verdicts: &status.verdicts,
                        services: &services,
                        health: self.health.as_ref().map(|h| h.counters()),
                        vrrp,
                    },
                )))
            }
        }
    }

    /// Serves until SIGTERM/SIGINT; the balancer stays attached afterwards.
    pub async fn run(mut self, mut calls: mpsc::Receiver<Request>) -> Result<()> {
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut neigh_tick = tokio::time::interval(NEIGHBOUR_REFRESH);
        let mut rate_tick = tokio::time::interval(Duration::from_secs(ESTIMATOR_INTERVAL_SECS));
        let mut next_scan = Instant::now();
        tracing::info!(pid = std::process::id(), "rvsd ready");
        loop {
            let scan_at = tokio::time::Instant::from_std(next_scan);
            tokio::select! {
                _ = hup.recv() => match self.reload().await {
                    Ok(a) => {
                        tracing::info!(services = a.services, written = a.services_written, deleted = a.services_deleted, "config reloaded");
                        self.resolve_neighbours().await;
                    }
                    Err(e) => tracing::error!(error = %e, "reload refused; state unchanged"),
                },
                Some(req) = calls.recv() => {
                    let changes = matches!(req.call, Call::PutConfig(_) | Call::Reload);
                    let answer = if matches!(req.call, Call::Reload) {
                        self.reload().await.and_then(|a| to_value(&a))
                    } else {
                        self.call(req.call)
                    };
                    if let Err(e) = &answer {
                        tracing::info!(error = %e, "API request refused");
                    }
                    let _ = req.reply.send(answer);
                    if changes {
                        self.resolve_neighbours().await;
                    }
                    let pending = std::mem::take(&mut self.pending_neighbours);
                    if !pending.is_empty() {
                        self.resolve(pending).await;
                    }
                }
                Ok(()) = health_changed(&mut self.health_config) => {
                    let effective = self
                        .health_config
                        .as_ref()
                        .map(|rx| (**rx.borrow()).clone());
                    if let Some(next) = effective {
                        match self.apply(next) {
                            Ok(a) => tracing::info!(written = a.services_written, reals = a.reals_written, "health change applied"),
                            Err(e) => tracing::error!(error = %e, "health change could not be applied"),
                        }
                    }
                }
                Ok(()) = vrrp_changed(&mut self.vrrp) => self.follow_vrrp(),
                _ = neigh_tick.tick() => self.refresh_neighbours().await,
                _ = rate_tick.tick() => self.start_rate_round(),
                _ = tokio::time::sleep(Duration::from_millis(20)), if !self.rate_queue.is_empty() => {
                    self.sample_rates();
                }
                _ = tokio::time::sleep_until(scan_at) => {
                    let started = Instant::now();
                    match self.dp.scan_conns() {
                        Ok(scan) => {
                            if scan.expired > 0 {
                                tracing::debug!(expired = scan.expired, "idle connections freed");
                            }
                            self.scan = scan;
                        }
                        Err(e) => tracing::warn!(error = %e, "connection scan failed"),
                    }
                    next_scan = Instant::now() + CONN_SCAN_MIN.max(started.elapsed() * 4);
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        if let Some(h) = self.health.take() {
            h.shutdown().await;
        }
        tracing::info!(
            pin_path = %self.desired.daemon.pin_path.display(),
            "rvsd exiting; the balancer stays attached (rvsd --cleanup removes it)"
        );
        Ok(())
    }
}
