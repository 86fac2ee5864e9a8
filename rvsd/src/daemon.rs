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
    api::{Call, Reply, Request},
    ops::{Index, SideEffects, commit, plan_ops},
    stats::{CounterId, ESTIMATOR_INTERVAL_SECS, Estimator, stats},
    sync::{SyncEngine, state_timeouts},
};

/// Services whose configuration differs between `a` and `b` (present in one only, or
/// changed), by (protocol, VIP, port).
fn edited_services(a: &Config, b: &Config) -> usize {
    let index = |c: &Config| {
        c.services
            .iter()
            .map(|s| (s.id(), s.clone()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let (ia, ib) = (index(a), index(b));
    let changed = ia.iter().filter(|(id, s)| ib.get(id) != Some(s)).count();
    changed + ib.keys().filter(|id| !ia.contains_key(id)).count()
}

/// The reload's log line; dropped runtime edits are said so.
fn log_reload(a: &Applied) {
    if a.runtime_edits_dropped > 0 {
        tracing::warn!(
            services = a.services,
            written = a.services_written,
            deleted = a.services_deleted,
            runtime_edits_dropped = a.runtime_edits_dropped,
            "config reloaded: the file replaced runtime changes (API/rvsadm) to {} services since it was last loaded",
            a.runtime_edits_dropped
        );
    } else {
        tracing::info!(
            services = a.services,
            written = a.services_written,
            deleted = a.services_deleted,
            "config reloaded"
        );
    }
}

/// A batch of this many ops or more is logged with its timings.
const LARGE_BATCH: usize = 10_000;

/// Where SIGUSR1 writes the state (keepalived writes /tmp/keepalived.data).
pub const DATA_FILE: &str = "/tmp/rvsd.data";
/// Where SIGUSR2 writes the statistics (keepalived writes /tmp/keepalived.stats).
pub const STATS_FILE: &str = "/tmp/rvsd.stats";

/// Writes `text` to `path` through a fresh file renamed over it: a symlink planted at
/// `path` (in /tmp, by anyone) is replaced, never followed.
fn write_dump(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Counter sets sampled per slice of a rate round (a slice every 20 ms). Each slice is a
/// few batched map reads (`BPF_MAP_LOOKUP_BATCH`), so a round over 100 000 services × 3
/// real servers takes 25 slices, well inside the 2 s between rounds.
const RATE_SLICE: usize = 16_384;
/// How often real servers' neighbour entries are refreshed.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);
/// Real servers whose neighbours one refresh tick re-resolves (a large configuration is
/// refreshed a slice per tick, so the main loop never stalls on netlink).
const NEIGHBOUR_SLICE: usize = 1_000;
/// Client networks (/24) whose next hop a NAT BACKUP looks up at most.
const MAX_CLIENT_NETS: usize = 4_096;
/// Shortest interval between two passes over the connection table (expiry and counts);
/// a large table is scanned less often (four times the last pass's duration).
const CONN_SCAN_MIN: Duration = Duration::from_secs(2);

pub use crate::cli::XdpChoice;

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
        /// `--bgp FILE`: the `[bgp]` section keepalived.conf cannot hold.
        bgp: Option<PathBuf>,
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
    let import = import_keepalived(path, interfaces, pin_path)?;
    for w in &import.warnings {
        tracing::warn!("{w}");
    }
    Ok((import.config, import.health, import.keepalived))
}

/// The one reading of a keepalived.conf that the daemon and `--check-config` share: the
/// import with the interfaces and pin path of the command line applied.
pub fn import_keepalived(
    path: &Path,
    interfaces: &[String],
    pin_path: Option<&Path>,
) -> Result<rvs_keepalived::Import> {
    let mut import = rvs_keepalived::load(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("invalid keepalived config {}", path.display()))?;
    import.config.daemon.interfaces = interfaces.to_vec();
    if let Some(p) = pin_path {
        import.config.daemon.pin_path = p.to_owned();
    }
    Ok(import)
}

/// Why a reloaded keepalived.conf must not replace the running one, if it must not: a file
/// with no service at all (an empty or truncated file would delete every live service),
/// or one where rvs leaves a service or real server out (it would be deleted although
/// keepalived would run it). The TOML path refuses invalid files the same way.
pub fn reload_refusal(import: &rvs_keepalived::Import) -> Option<String> {
    if let Some(w) = import
        .warnings
        .iter()
        .find(|w| w.kind == rvs_keepalived::WarningKind::Problem && w.message.contains("left out"))
    {
        return Some(format!(
            "reload refused: {w} (rvs would delete what keepalived runs; fix the file or restart rvsd to accept it)"
        ));
    }
    if import.config.services.is_empty() {
        return Some(
            "reload refused: the file has no virtual_server rvs can run, which would delete every service (restart rvsd to run it)"
                .to_owned(),
        );
    }
    None
}

/// The VRRP side of a keepalived.conf as the daemon runs it (none without
/// `vrrp_instance` blocks), with the mapping's warnings.
pub fn map_vrrp(
    conf: &rvs_keepalived::model::KeepalivedConf,
) -> Result<Option<(rvs_vrrp::config::VrrpConfig, Vec<String>)>> {
    if conf.vrrp_instances.is_empty() {
        return Ok(None);
    }
    rvs_keepalived::vrrp::from_keepalived(conf)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// One independent part of the VRRP configuration (a sync group, or a lone instance)
/// and the task running it.
struct Runner {
    config: rvs_vrrp::config::VrrpConfig,
    id: u64,
    /// Sending (or dropping) it stops the part (a MASTER resigns with priority 0).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Reloaded configurations of the same instances, applied in place by the task.
    reload: tokio::sync::mpsc::Sender<rvs_vrrp::config::VrrpConfig>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Runner {
    /// Stops the part as keepalived does on SIGTERM: a MASTER sends priority-0 adverts,
    /// removes its VIPs and runs its notify scripts; waits for that (bounded).
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("VRRP did not stop within 5 s");
        }
    }
}

/// The parts' snapshots, merged into one in configuration order.
#[derive(Default)]
struct Parts {
    order: Vec<String>,
    snapshots: std::collections::BTreeMap<u64, rvs_vrrpd::Snapshot>,
}

impl Parts {
    fn merged(&self) -> rvs_vrrpd::Snapshot {
        let mut instances: Vec<_> = self
            .snapshots
            .values()
            .flat_map(|s| s.instances.iter().cloned())
            .collect();
        instances.sort_by_key(|i| self.order.iter().position(|n| *n == i.name));
        rvs_vrrpd::Snapshot { instances }
    }
}

/// The VRRP side of a keepalived.conf, running inside rvsd: one task per independent
/// part, so a reload restarts only the parts whose configuration changed.
struct Vrrp {
    /// What the instances are doing (all parts merged).
    status: watch::Receiver<rvs_vrrpd::Snapshot>,
    merged: watch::Sender<rvs_vrrpd::Snapshot>,
    parts: Arc<std::sync::Mutex<Parts>>,
    runners: Vec<Runner>,
    next_id: u64,
    /// Every VIP the instances manage.
    managed: HashSet<std::net::Ipv4Addr>,
}

/// keepalived's `lvs_sync_daemon`: the sync daemon follows a VRRP instance, master while
/// it is MASTER and backup otherwise (keepalived does the same with the kernel's daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SyncFollow {
    /// The VRRP instance.
    instance: String,
    /// The daemon's settings (`role` is set from the instance's state).
    config: rvs_api::SyncDaemonConfig,
}

impl SyncFollow {
    fn of(conf: &rvs_keepalived::model::KeepalivedConf) -> Option<SyncFollow> {
        let d = &conf.global_defs.lvs_sync_daemon.as_ref()?.value;
        // keepalived's default sync id is the instance's virtual_router_id.
        let vrid = conf
            .vrrp_instances
            .iter()
            .find(|i| i.name == d.instance)
            .and_then(|i| i.virtual_router_id)
            .unwrap_or(0);
        Some(SyncFollow {
            instance: d.instance.clone(),
            config: rvs_api::SyncDaemonConfig {
                role: rvs_api::SyncRole::Backup,
                interface: d.interface.clone(),
                syncid: d.syncid.unwrap_or(vrid),
                maxlen: d.maxlen,
                group: d.group.and_then(|g| match g {
                    std::net::IpAddr::V4(a) => Some(a),
                    std::net::IpAddr::V6(_) => None,
                }),
                port: d.port,
                ttl: d.ttl,
            },
        })
    }
}

impl Vrrp {
    /// Starts the keepalived.conf's vrrp_instance blocks, if it has any.
    fn start(conf: &rvs_keepalived::model::KeepalivedConf) -> Result<Option<Vrrp>> {
        if conf.vrrp_instances.is_empty() {
            return Ok(None);
        }
        let config = Self::config_of(conf)?;
        let (merged, status) = rvs_vrrpd::status_channel();
        let mut vrrp = Vrrp {
            status,
            merged,
            parts: Arc::default(),
            runners: Vec::new(),
            next_id: 0,
            managed: HashSet::new(),
        };
        vrrp.set_config(&config);
        for part in config.components() {
            vrrp.spawn(part);
        }
        Ok(Some(vrrp))
    }

    /// The VRRP configuration of a keepalived.conf (through [`map_vrrp`], as check-config),
    /// validated; its warnings are logged.
    fn config_of(
        conf: &rvs_keepalived::model::KeepalivedConf,
    ) -> Result<rvs_vrrp::config::VrrpConfig> {
        let Some((config, warnings)) = map_vrrp(conf)? else {
            anyhow::bail!("the file has no vrrp_instance blocks");
        };
        for w in &warnings {
            tracing::warn!("{w}");
        }
        config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(config)
    }

    fn set_config(&mut self, config: &rvs_vrrp::config::VrrpConfig) {
        self.managed = config
            .instances
            .iter()
            .flat_map(|i| i.virtual_ipaddress.iter())
            .filter_map(|v| match v.address {
                std::net::IpAddr::V4(a) => Some(a),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        if let Ok(mut p) = self.parts.lock() {
            p.order = config.instances.iter().map(|i| i.name.clone()).collect();
        }
    }

    /// Starts one part; its snapshots feed the merged status.
    fn spawn(&mut self, config: rvs_vrrp::config::VrrpConfig) {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, mut rx) = rvs_vrrpd::status_channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        let parts = self.parts.clone();
        let merged = self.merged.clone();
        let publish = move |snap: Option<rvs_vrrpd::Snapshot>| {
            if let Ok(mut p) = parts.lock() {
                match snap {
                    Some(s) => p.snapshots.insert(id, s),
                    None => p.snapshots.remove(&id),
                };
                let m = p.merged();
                merged.send_if_modified(|cur| {
                    let changed = *cur != m;
                    *cur = m;
                    changed
                });
            }
        };
        let run_config = config.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stop_rx.await;
            };
            let fault = rvs_vrrpd::fault_snapshot(&run_config);
            let run = rvs_vrrpd::run_reloadable(run_config, shutdown, Some(reload_rx), tx.clone());
            tokio::pin!(run);
            let result = loop {
                tokio::select! {
                    r = &mut run => break r,
                    Ok(()) = rx.changed() => publish(Some(rx.borrow_and_update().clone())),
                }
            };
            match result {
                Ok(()) => publish(None),
                Err(e) => {
                    // Not only a log line: the part's instances show FAULT (status,
                    // metrics) and their VIPs stay on standby.
                    tracing::error!(error = %e, "VRRP failed; its instances are in FAULT");
                    publish(Some(fault));
                }
            }
        });
        self.runners.push(Runner {
            config,
            id,
            stop: Some(stop_tx),
            reload: reload_tx,
            task: Some(task),
        });
    }

    /// Applies a reloaded keepalived.conf (SIGHUP) as keepalived does: a part whose
    /// instances are the same virtual routers gets the new configuration in place and
    /// keeps its states (a MASTER stays MASTER with the new priority, addresses and
    /// timers; see `rvs_vrrp::Node::reconfigure`); unchanged parts are left untouched;
    /// parts with other instances are restarted (a MASTER among them resigns first), new
    /// parts started, removed ones stopped. Returns how many parts were (re)started and
    /// stopped.
    async fn reload(
        &mut self,
        conf: &rvs_keepalived::model::KeepalivedConf,
    ) -> Result<(usize, usize)> {
        let config = Self::config_of(conf)?;
        let mut wanted = config.components();
        let mut keep = Vec::new();
        let mut gone = Vec::new();
        for mut r in std::mem::take(&mut self.runners) {
            if let Some(n) = wanted.iter().position(|p| *p == r.config) {
                wanted.remove(n);
                keep.push(r);
            } else if let Some(n) = wanted.iter().position(|p| r.config.same_routers(p)) {
                let part = wanted.remove(n);
                let names: Vec<String> = part.instances.iter().map(|i| i.name.clone()).collect();
                if r.reload.send(part.clone()).await.is_ok() {
                    tracing::info!(instances = ?names, "VRRP: configuration changed; applied in place, states kept");
                    r.config = part;
                    keep.push(r);
                } else {
                    // The part's task ended (it failed): run the new configuration afresh.
                    wanted.push(part);
                    gone.push(r);
                }
            } else {
                gone.push(r);
            }
        }
        self.runners = keep;
        let stopped = gone.len();
        for r in gone {
            let names: Vec<String> = r.config.instances.iter().map(|i| i.name.clone()).collect();
            tracing::info!(instances = ?names, "VRRP: instances changed; restarting these");
            let id = r.id;
            r.stop().await;
            if let Ok(mut p) = self.parts.lock() {
                p.snapshots.remove(&id);
            }
        }
        self.set_config(&config);
        let started = wanted.len();
        for part in wanted {
            self.spawn(part);
        }
        Ok((started, stopped))
    }

    /// Stops every part (SIGTERM).
    async fn stop(&mut self) {
        for r in std::mem::take(&mut self.runners) {
            r.stop().await;
        }
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
    // [fwmark_import] paths are relative to the config file's directory.
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = Config::from_toml_reading(&text, |p| std::fs::read_to_string(dir.join(p)))
        .with_context(|| format!("invalid config file {}", path.display()))?;
    config
        .check_dataplane()
        .with_context(|| format!("config file {}", path.display()))?;
    Ok(config)
}

/// What is wrong with the daemon settings' paths and names, if anything: the pin path must
/// be an absolute path under a bpffs mount point (`/sys/fs/bpf/...`) without `..`, and
/// each interface a Linux interface name (1–15 bytes, no `/`, blank or `:`, not `.`/`..`).
/// The daemon refuses to start on any of these and `--check-config` reports them.
pub fn check_daemon_settings(d: &rvs_config::Daemon) -> Vec<String> {
    let mut problems = Vec::new();
    let pin = &d.pin_path;
    if !pin.is_absolute()
        || pin
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        || !pin.starts_with("/sys/fs/bpf")
        || pin == Path::new("/sys/fs/bpf")
    {
        problems.push(format!(
            "pin_path {}: must be a directory under /sys/fs/bpf (absolute, without ..)",
            pin.display()
        ));
    }
    for i in &d.interfaces {
        let bad = i.is_empty()
            || i.len() > 15
            || i == "."
            || i == ".."
            || i.bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
        if bad {
            problems.push(format!("interface {i:?}: not a Linux interface name"));
        }
    }
    problems
}

/// Where rvsd keeps one lock per pin path (bpffs holds no regular files).
pub const LOCK_DIR: &str = "/run/rvs";

/// The lock that makes one rvsd the owner of a pin path: an exclusive `flock` on
/// `/run/rvs/pin-<path>.lock` holding the owner's pid, released when the process ends
/// (even by SIGKILL), so a second rvsd refuses to start instead of rewriting the first's
/// maps.
pub struct PinLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

impl PinLock {
    /// Takes the lock for `pin_path` under `dir`, or names the pid that holds it.
    pub fn take(dir: &Path, pin_path: &Path) -> Result<PinLock> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = pin_path.display().to_string().replace('/', "%");
        let path = dir.join(format!("pin-{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut file = match nix::fcntl::Flock::lock(
            file,
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(f) => f,
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                anyhow::bail!(
                    "another rvsd (pid {}) owns the pin path {} (lock {}): stop it, or use another --pin-path",
                    pid.trim(),
                    pin_path.display(),
                    path.display()
                );
            }
        };
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(PinLock { _file: file })
    }

    /// Removes the lock file of `pin_path` unless an rvsd holds it (for `--cleanup`).
    pub fn remove_if_free(dir: &Path, pin_path: &Path) {
        let name = pin_path.display().to_string().replace('/', "%");
        let path = dir.join(format!("pin-{name}.lock"));
        if let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            && nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Where rvsd records the forwarding sysctls it turned on for a pin path, so that
/// `--cleanup` puts them back: `/run/rvs/forwarding-<path>` with `NETNS IFACE VALUE`
/// lines (NETNS: the network namespace's inode, so a cleanup run elsewhere never writes
/// another namespace's interface of the same name).
fn forwarding_record(dir: &Path, pin_path: &Path) -> PathBuf {
    let name = pin_path.display().to_string().replace('/', "%");
    dir.join(format!("forwarding-{name}"))
}

/// Records `interface`'s IPv4 forwarding sysctl before rvsd turns it on (the first
/// value recorded is the one before any rvsd, and is kept across restarts).
pub fn record_forwarding(dir: &Path, pin_path: &Path, interface: &str) -> Result<()> {
    anyhow::ensure!(
        !interface.contains('/') && !interface.starts_with('.') && !interface.is_empty(),
        "bad interface name {interface:?}"
    );
    let sysctl = format!("/proc/sys/net/ipv4/conf/{interface}/forwarding");
    let value = std::fs::read_to_string(&sysctl)
        .with_context(|| format!("reading {sysctl} (does the interface exist?)"))?;
    let record = forwarding_record(dir, pin_path);
    let known = std::fs::read_to_string(&record).unwrap_or_default();
    let netns = netns_id()?;
    if known.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some(netns.as_str()) && w.next() == Some(interface)
    }) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = known;
    text.push_str(&format!("{netns} {interface} {}\n", value.trim()));
    std::fs::write(&record, text).with_context(|| format!("writing {}", record.display()))
}

/// Puts back the forwarding sysctls recorded for `pin_path` (for `--cleanup`); returns
/// the interfaces restored. An interface that is gone is skipped.
pub fn restore_forwarding(dir: &Path, pin_path: &Path) -> Result<Vec<String>> {
    let record = forwarding_record(dir, pin_path);
    let Ok(text) = std::fs::read_to_string(&record) else {
        return Ok(Vec::new());
    };
    let netns = netns_id()?;
    let mut restored = Vec::new();
    let mut elsewhere = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(ns), Some(iface), Some(value)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if ns != netns {
            // Another namespace's: kept for a cleanup run there.
            elsewhere.push_str(line);
            elsewhere.push('\n');
            continue;
        }
        if iface.contains('/') || iface.starts_with('.') || !matches!(value, "0" | "1") {
            continue;
        }
        let sysctl = format!("/proc/sys/net/ipv4/conf/{iface}/forwarding");
        if std::fs::write(&sysctl, value).is_ok() {
            restored.push(format!("{iface}.forwarding={value}"));
        }
    }
    if elsewhere.is_empty() {
        std::fs::remove_file(&record).with_context(|| format!("removing {}", record.display()))?;
    } else {
        std::fs::write(&record, elsewhere)
            .with_context(|| format!("writing {}", record.display()))?;
    }
    Ok(restored)
}

/// This process's network namespace, as its inode number.
fn netns_id() -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self/ns/net")
        .context("reading /proc/self/ns/net")?
        .ino()
        .to_string())
}

/// The counter ids of the applied state, in the desired state's order.
#[derive(Debug, Default)]
struct CounterIds {
    /// Every service's and real server's, each service followed by its real servers.
    all: Vec<CounterId>,
    /// Each service with its map id.
    services: Vec<(rvs_config::ServiceId, u32)>,
}

/// The running daemon.
pub struct Daemon {
    /// Held for the daemon's life: this rvsd owns its pin path.
    _lock: PinLock,
    dp: Dataplane,
    /// The desired state; the dataplane holds exactly this after every successful change.
    desired: Config,
    /// `desired`'s services by id.
    index: Index,
    /// Real servers of services just changed through the API, to resolve next.
    pending_neighbours: Vec<std::net::Ipv4Addr>,
    /// Counter sets still to sample in the current rate round.
    rate_queue: Vec<CounterId>,
    /// The counter ids of the applied state (see [`CounterIds`]); None after a change.
    counter_ids: Option<Arc<CounterIds>>,
    /// Where the periodic neighbour refresh goes on.
    neigh_cursor: usize,
    source: Source,
    /// `--pin-path`, which wins over the file's `[daemon] pin_path` (also on reload).
    pin_override: Option<PathBuf>,
    /// The TOML file's state as last loaded, to tell a reload what runtime edits it drops.
    loaded: Option<Config>,
    /// The health engine when the state comes from a keepalived.conf.
    health: Option<rvs_checkers::HealthHandle>,
    /// The engine's effective configuration (real servers in or out by their checks).
    health_config: Option<watch::Receiver<Arc<Config>>>,
    /// VRRP from the keepalived.conf: services of VIPs this node is not MASTER for stand by.
    vrrp: Option<Vrrp>,
    resolver: NeighbourResolver,
    /// The VIPs' unreachable routes (see [`crate::vip_routes`]).
    routes: crate::vip_routes::VipRoutes,
    /// The status but for the counters, for `GET /v1/status` outside the main loop.
    status_tx: watch::Sender<Arc<Status>>,
    /// Real servers whose next hop failed to resolve last time (logged once per failure).
    unresolved: HashSet<std::net::Ipv4Addr>,
    /// NAT: client networks (/24) of synced connections whose way back was looked up, and
    /// the next hops towards them, kept resolved like the real servers' (the XDP program's
    /// FIB lookup for a reply finds no neighbour entry on a node that never sent there).
    client_nets: HashSet<u32>,
    client_hops: std::collections::BTreeSet<std::net::Ipv4Addr>,
    /// The VIPs on standby as last logged (VRRP state is logged when it changes).
    logged_standby: Option<HashSet<std::net::Ipv4Addr>>,
    estimator: Estimator,
    scan: ConnScan,
    /// Servers whose counts the expiry passes corrected, since start (a metric).
    conn_corrections: u64,
    /// Connection sync daemons (IPVS's --start-daemon).
    sync: SyncEngine,
    /// The dataplane's connection-event ring while a sync MASTER runs (readiness only).
    sync_events: Option<crate::sync::EventRing>,
    /// keepalived's lvs_sync_daemon, when the keepalived.conf has one.
    sync_follow: Option<SyncFollow>,
    /// The status page's rate history.
    history: crate::status::History,
    /// The last (re)load's outcome.
    reload_record: crate::status::ReloadRecord,
    /// VIP announcements through BIRD, when `[bgp]` is configured.
    bgp: Option<crate::bgp::Bgp>,
    /// The desired state changed since the announcer last looked at it.
    bgp_dirty: bool,
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

fn to_value<T: serde::Serialize>(v: &T) -> Result<Reply, ApiError> {
    serde_json::to_value(v)
        .map(Reply::Value)
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
}

/// `v` serialized straight to a body (no `Value` tree: for the large listings).
fn to_json<T: serde::Serialize>(v: &T) -> Result<Reply, ApiError> {
    serde_json::to_vec(v)
        .map(|b| Reply::Json(b.into()))
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
}

impl Daemon {
    /// Loads (or adopts) the dataplane, applies the config file if any, attaches.
    pub async fn start(
        source: Source,
        pin_path: Option<PathBuf>,
        xdp: Option<XdpChoice>,
    ) -> Result<Daemon> {
        let (file, model) = match &source {
            Source::Toml(path) => (path.as_deref().map(read_config).transpose()?, None),
            Source::Keepalived {
                path,
                interfaces,
                pin_path,
                bgp,
            } => {
                let (mut config, model, conf) =
                    read_keepalived(path, interfaces, pin_path.as_deref())?;
                if let Some(b) = bgp {
                    config.bgp = Some(crate::bgp::read_bgp_file(b)?);
                }
                (Some(config), Some((model, conf)))
            }
        };
        let mut file = file;
        if let (Some(p), Some(f)) = (&pin_path, &mut file) {
            f.daemon.pin_path = p.clone();
        }
        let mut base = file.clone().unwrap_or_default();
        if let Some(p) = &pin_path {
            base.daemon.pin_path = p.clone();
        }
        let mut settings = base.daemon.clone();
        if let Source::Keepalived { interfaces, .. } = &source {
            settings.interfaces = interfaces.clone();
        }
        let problems = check_daemon_settings(&settings);
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
        let lock = PinLock::take(Path::new(LOCK_DIR), &base.daemon.pin_path)?;
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
        let mut sync_follow = None;
        let (health, health_config, desired, vrrp) = match model {
            Some((model, conf)) => {
                sync_follow = SyncFollow::of(&conf);
                let vrrp = Vrrp::start(&conf)?;
                let handle = rvs_checkers::HealthEngine::spawn(desired, model)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let rx = handle.config();
                let effective = (**rx.borrow()).clone();
                (Some(handle), Some(rx), effective, vrrp)
            }
            None => (None, None, desired, None),
        };
        let mut daemon = Daemon {
            _lock: lock,
            pin_override: pin_path,
            loaded: None,
            dp,
            desired: Config::default(),
            index: Index::default(),
            pending_neighbours: Vec::new(),
            rate_queue: Vec::new(),
            counter_ids: None,
            neigh_cursor: 0,
            source,
            health,
            health_config,
            vrrp,
            resolver: NeighbourResolver::new()?,
            routes: crate::vip_routes::VipRoutes::open(&base.daemon.pin_path).await?,
            // Published for real below, before the API serves.
            status_tx: watch::Sender::new(Arc::new(Status {
                version: String::new(),
                conn_table_size: 0,
                timeouts: Default::default(),
                interfaces: Vec::new(),
                verdicts: Vec::new(),
                vrrp: Vec::new(),
                bgp: None,
            })),
            unresolved: HashSet::new(),
            client_nets: HashSet::new(),
            client_hops: std::collections::BTreeSet::new(),
            logged_standby: None,
            estimator: Estimator::default(),
            scan: ConnScan::default(),
            conn_corrections: 0,
            sync: SyncEngine::default(),
            sync_events: None,
            sync_follow,
            history: crate::status::History::default(),
            reload_record: crate::status::ReloadRecord::started(std::time::SystemTime::now()),
            bgp: None,
            bgp_dirty: true,
        };
        // Attached before the file's state is written: an interface the balancer cannot
        // attach to stops rvsd with the maps as they were (nothing half-applied).
        let mode = xdp.unwrap_or(match desired.daemon.xdp_mode {
            rvs_config::XdpMode::Native => XdpChoice::Native,
            rvs_config::XdpMode::Generic => XdpChoice::Generic,
        });
        for iface in desired.daemon.interfaces.clone() {
            record_forwarding(Path::new(LOCK_DIR), &desired.daemon.pin_path, &iface)?;
            daemon.attach(&iface, mode)?;
        }
        if matches!(daemon.source, Source::Toml(Some(_))) {
            daemon.loaded = Some(desired.clone());
        }
        // BIRD starts before the state is applied, with nothing announced: the first
        // announcement follows the applied state (in the loop), never precedes it.
        if let Some(settings) = desired.bgp.clone() {
            let origin = match &daemon.source {
                Source::Toml(p) => crate::bgp::origin(p.as_ref()),
                Source::Keepalived { bgp, .. } => crate::bgp::origin(bgp.as_ref()),
            };
            daemon.bgp = Some(crate::bgp::Bgp::start(settings, origin).await?);
        }
        let applied = daemon.apply(desired).map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(services = applied.services, "config applied");
        daemon.sync_routes().await;
        daemon.resolve_neighbours().await;
        daemon.follow_vrrp();
        daemon.publish_status();
        Ok(daemon)
    }

    /// Attaches the balancer to `iface` in `mode`; `Auto` tries native (driver) XDP and
    /// falls back to generic (skb) mode with a warning saying why.
    fn attach(&mut self, iface: &str, mode: XdpChoice) -> Result<()> {
        use rvs_config::XdpMode;
        let used = match mode {
            XdpChoice::Native => XdpMode::Native,
            XdpChoice::Generic => XdpMode::Generic,
            XdpChoice::Auto => match self.dp.attach(iface, XdpMode::Native) {
                Ok(()) => {
                    tracing::info!(interface = %iface, mode = "native", "balancer attached");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(interface = %iface, error = %e, "native XDP is not available on this interface; falling back to generic (skb) XDP, which is slower (--xdp-mode native makes this an error)");
                    XdpMode::Generic
                }
            },
        };
        self.dp
            .attach(iface, used)
            .with_context(|| format!("attaching the balancer to {iface} ({used:?} XDP)"))?;
        tracing::info!(interface = %iface, mode = ?used, "balancer attached");
        Ok(())
    }

    /// Runs the lvs_sync_daemon as its VRRP instance's state says: master while MASTER,
    /// backup otherwise (a BACKUP that starts asks the master for the whole table).
    fn follow_sync(&mut self) {
        let (Some(follow), Some(vrrp)) = (&self.sync_follow, &self.vrrp) else {
            return;
        };
        let state = vrrp.status.borrow().state_of(&follow.instance);
        let role = if state == Some(rvs_vrrp::machine::State::Master) {
            rvs_api::SyncRole::Master
        } else {
            rvs_api::SyncRole::Backup
        };
        let other = match role {
            rvs_api::SyncRole::Master => rvs_api::SyncRole::Backup,
            rvs_api::SyncRole::Backup => rvs_api::SyncRole::Master,
        };
        if self.sync.running(other) {
            let _ = self.sync.stop(other);
        }
        if !self.sync.running(role) {
            let config = rvs_api::SyncDaemonConfig {
                role,
                ..follow.config.clone()
            };
            let timeouts = state_timeouts(&self.desired.timeouts);
            match self.sync.start(&config, "keepalived", timeouts) {
                Ok(()) => {
                    tracing::info!(instance = %follow.instance, %role, "lvs_sync_daemon follows the VRRP instance")
                }
                Err(e) => {
                    tracing::error!(instance = %follow.instance, %role, error = %e, "lvs_sync_daemon cannot start")
                }
            }
        }
    }

    fn sync_call(
        &mut self,
        start: Option<rvs_api::SyncDaemonConfig>,
        stop: Option<rvs_api::SyncRole>,
    ) -> Result<Reply, ApiError> {
        if let Some(f) = &self.sync_follow
            && (start.is_some() || stop.is_some())
        {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                format!(
                    "the sync daemon follows VRRP instance {} (lvs_sync_daemon in the keepalived.conf): change it there",
                    f.instance
                ),
            ));
        }
        if let Some(cfg) = start {
            let timeouts = state_timeouts(&self.desired.timeouts);
            self.sync.start(&cfg, "api", timeouts)?;
        }
        if let Some(role) = stop {
            self.sync.stop(role)?;
        }
        to_value(&self.sync.status())
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
        self.bgp_dirty = true;
        Ok(self.applied(&plan))
    }

    /// Applies a batch of ops: only the services it touches are planned and written.
    fn apply_ops(&mut self, ops: &[rvs_api::Op]) -> Result<(Applied, SideEffects), ApiError> {
        let started = Instant::now();
        let large = ops.len() >= LARGE_BATCH;
        if large {
            tracing::info!(
                ops = ops.len(),
                "applying a batch of {} ops (GET /v1/status stays answered; other calls wait)",
                ops.len()
            );
        }
        let (delta, effects) = plan_ops(&self.desired, &self.index, ops)?;
        let planned = started.elapsed();
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
        let written = started.elapsed();
        commit(&mut self.desired, &mut self.index, delta);
        if large {
            tracing::info!(ops = ops.len(), ?planned, ?written, committed = ?started.elapsed(), "batch applied");
        }
        self.bgp_dirty = true;
        Ok((self.applied(&plan), effects))
    }

    /// Gives each VIP of the desired state its unreachable route and takes the route of a
    /// VIP whose last service went (only netlink when the set of VIPs changed).
    async fn sync_routes(&mut self) {
        let want = crate::vip_routes::vips(&self.desired);
        self.routes.sync(&want).await;
    }

    /// Forgets the rates of reused ids and summarises a written plan.
    fn applied(&mut self, plan: &rvs_dataplane::Plan) -> Applied {
        // Services or real servers may have come, gone or been given other ids.
        self.counter_ids = None;
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
            runtime_edits_dropped: 0,
        }
    }

    /// Re-reads the config file and applies it; [daemon] must not change. Under a
    /// keepalived.conf the health checks start again from the new file (as keepalived's
    /// reload does), but unchanged services keep their connections and counters; VRRP
    /// parts (sync groups, lone instances) whose blocks changed are restarted, the others
    /// left untouched; a changed lvs_sync_daemon is restarted.
    async fn reload(&mut self) -> Result<Applied, ApiError> {
        let invalid = |e: anyhow::Error| ApiError::new(ErrorKind::Invalid, format!("{e:#}"));
        let next = match &self.source {
            Source::Toml(None) => {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    "rvsd runs without --config: nothing to reload",
                ));
            }
            Source::Toml(Some(path)) => {
                let mut c = read_config(path).map_err(invalid)?;
                if let Some(p) = &self.pin_override {
                    c.daemon.pin_path = p.clone();
                }
                c
            }
            Source::Keepalived {
                path,
                interfaces,
                pin_path,
                bgp,
            } => {
                let bgp = bgp
                    .as_deref()
                    .map(crate::bgp::read_bgp_file)
                    .transpose()
                    .map_err(invalid)?;
                let import =
                    import_keepalived(path, interfaces, pin_path.as_deref()).map_err(invalid)?;
                if let Some(why) = reload_refusal(&import) {
                    return Err(ApiError::new(ErrorKind::Invalid, why));
                }
                for w in &import.warnings {
                    tracing::warn!("{w}");
                }
                if !import.keepalived.vrrp_instances.is_empty() {
                    // Refuse a broken VRRP part before anything changes.
                    Vrrp::config_of(&import.keepalived).map_err(invalid)?;
                }
                let (mut config, model, conf) = (import.config, import.health, import.keepalived);
                config.bgp = bgp;
                self.check_bgp_reload(&config)?;
                if config.daemon != self.desired.daemon {
                    return Err(ApiError::new(
                        ErrorKind::Invalid,
                        "[daemon] only changes with a restart",
                    ));
                }
                // The new file's start state (before any check result) is applied first;
                // only then does its health engine start, so a refused file never leaves
                // a new engine running against the old state.
                let (state, _) =
                    rvs_health::state::HealthState::new(model.clone(), Instant::now(), 0);
                let applied = self.apply(state.effective_config(&config))?;
                let handle = rvs_checkers::HealthEngine::spawn(config, model)
                    .map_err(|e| ApiError::new(ErrorKind::Invalid, e.to_string()))?;
                self.health_config = Some(handle.config());
                if let Some(old) = self.health.replace(handle) {
                    old.shutdown().await;
                }
                self.reload_vrrp(&conf).await.map_err(invalid)?;
                return Ok(applied);
            }
        };
        if next.daemon != self.desired.daemon {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "[daemon] only changes with a restart",
            ));
        }
        self.check_bgp_reload(&next)?;
        // The file is the truth: API/rvsadm changes since the last load are replaced.
        let edited = self
            .loaded
            .as_ref()
            .map_or(0, |l| edited_services(l, &self.desired));
        let mut applied = self.apply(next.clone())?;
        self.loaded = Some(next);
        applied.runtime_edits_dropped = edited;
        Ok(applied)
    }

    /// A reload may change `[bgp]` but not add or remove it (BIRD starts and stops with
    /// rvsd).
    fn check_bgp_reload(&self, next: &Config) -> Result<(), ApiError> {
        match (self.bgp.is_some(), next.bgp.is_some()) {
            (false, true) => Err(ApiError::new(
                ErrorKind::Invalid,
                "[bgp] is new in this file: BGP starts only with a restart of rvsd",
            )),
            (true, false) => Err(ApiError::new(
                ErrorKind::Invalid,
                "[bgp] is gone from this file: BGP stops only with a restart of rvsd (a planned stop withdraws the VIPs first)",
            )),
            _ => Ok(()),
        }
    }

    /// The VRRP and lvs_sync_daemon part of a keepalived.conf reload.
    async fn reload_vrrp(&mut self, conf: &rvs_keepalived::model::KeepalivedConf) -> Result<()> {
        match (&mut self.vrrp, conf.vrrp_instances.is_empty()) {
            (Some(v), false) => {
                let (started, stopped) = v.reload(conf).await?;
                tracing::info!(started, stopped, "VRRP reloaded");
            }
            (Some(v), true) => {
                v.stop().await;
                self.vrrp = None;
                tracing::info!("VRRP reloaded: no vrrp_instance left");
            }
            (None, false) => {
                self.vrrp = Vrrp::start(conf)?;
                tracing::info!("VRRP reloaded: started");
            }
            (None, true) => {}
        }
        let follow = SyncFollow::of(conf);
        if follow != self.sync_follow {
            for role in [rvs_api::SyncRole::Master, rvs_api::SyncRole::Backup] {
                if self.sync.running(role) {
                    let _ = self.sync.stop(role);
                }
            }
            self.sync_follow = follow;
        }
        self.follow_vrrp();
        self.follow_sync();
        Ok(())
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
    async fn resolve_neighbours(&mut self) {
        self.resolve(self.real_addresses()).await;
    }

    /// NAT: looks up the next hop towards the clients of synced connections (once per
    /// /24, at most [`MAX_CLIENT_NETS`] networks) and resolves it, so a BACKUP that takes
    /// over can send the real servers' replies back at once.
    async fn resolve_client_hops(&mut self, clients: Vec<std::net::Ipv4Addr>) {
        let nat = self.desired.services.iter().any(|s| {
            s.reals
                .iter()
                .any(|r| r.forward == rvs_config::ForwardMethod::Nat)
        });
        if !nat {
            return;
        }
        for client in clients {
            let net = u32::from(client) & 0xffff_ff00;
            if self.client_nets.len() >= MAX_CLIENT_NETS || !self.client_nets.insert(net) {
                continue;
            }
            match self.resolver.next_hop(client).await {
                Ok((_, hop)) if self.client_hops.insert(hop) => self.resolve(vec![hop]).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(client = %client, error = %e, "no route back to a synced client")
                }
            }
        }
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
        let hops: Vec<_> = self.client_hops.iter().copied().collect();
        self.resolve(hops).await;
    }

    /// Resolves `addrs`; a failure is logged when it starts and its end when it ends, not
    /// on every attempt (an API call or refresh tick would repeat it).
    async fn resolve(&mut self, mut addrs: Vec<std::net::Ipv4Addr>) {
        addrs.sort();
        addrs.dedup();
        for addr in addrs {
            match self.resolver.resolve(addr).await {
                Err(e) => {
                    if self.unresolved.insert(addr) {
                        tracing::warn!(real = %addr, error = %e, "cannot resolve real server's next hop (logged again only after it resolves)");
                    }
                }
                Ok(_) => {
                    if self.unresolved.remove(&addr) {
                        tracing::info!(real = %addr, "real server's next hop resolves again");
                    }
                }
            }
        }
    }

    /// The ids of every service and real server, for the estimator and the history:
    /// worked out once per applied change (a walk over every service and real server with
    /// a planner lookup each), not on every 2 s round.
    fn counter_ids(&mut self) -> Arc<CounterIds> {
        if let Some(ids) = &self.counter_ids {
            return ids.clone();
        }
        let planner = self.dp.planner();
        let mut ids = CounterIds::default();
        for svc in &self.desired.services {
            let id = svc.id();
            if let Some(e) = planner.service_entry(&id) {
                ids.all.push(CounterId::Service(e.id));
                ids.services.push((id, e.id));
            }
            for r in &svc.reals {
                if let Some(rid) = planner.real_id(&id, r.address, r.port.unwrap_or(svc.port)) {
                    ids.all.push(CounterId::Real(rid));
                }
            }
        }
        let ids = Arc::new(ids);
        self.counter_ids = Some(ids.clone());
        ids
    }

    /// Starts a sampling round over every service and real server (every 2 s, as IPVS's
    /// estimator); the round is worked off in slices so API calls never wait behind it.
    fn start_rate_round(&mut self) {
        let ids = self.counter_ids();
        self.estimator.retain(&ids.all);
        self.rate_queue.clear();
        self.rate_queue.extend_from_slice(&ids.all);
    }

    /// Samples the next slice of the current round: the slice's service counters in one
    /// batched read and its real servers' in another.
    fn sample_rates(&mut self) {
        let from = self.rate_queue.len().saturating_sub(RATE_SLICE);
        let slice = self.rate_queue.split_off(from);
        let mut services = Vec::new();
        let mut reals = Vec::new();
        for id in &slice {
            match *id {
                CounterId::Service(i) => services.push(i),
                CounterId::Real(i) => reals.push(i),
            }
        }
        let read = self
            .dp
            .service_counters_many(&services)
            .and_then(|s| Ok((s, self.dp.real_counters_many(&reals)?)));
        let (service_counters, real_counters) = match read {
            Ok(c) => c,
            Err(e) => {
                // As a failed single read skipped its id: the round goes on.
                tracing::debug!(error = %e, "reading counters for the estimator");
                return;
            }
        };
        for (i, c) in services.into_iter().zip(service_counters) {
            self.estimator
                .sample(CounterId::Service(i), c, ESTIMATOR_INTERVAL_SECS);
        }
        for (i, c) in reals.into_iter().zip(real_counters) {
            self.estimator
                .sample(CounterId::Real(i), c, ESTIMATOR_INTERVAL_SECS);
        }
    }

    /// Puts the services of VIPs this node is not VRRP MASTER for on standby.
    fn follow_vrrp(&mut self) {
        let Some(vrrp) = &self.vrrp else { return };
        for i in &vrrp.status.borrow().instances {
            tracing::debug!(instance = %i.name, state = ?i.state, "VRRP state");
        }
        let standby = vrrp.standby();
        // Logged when it changes, not on every VRRP status update.
        if self.logged_standby.as_ref() != Some(&standby) {
            if standby.is_empty() {
                tracing::info!("VRRP: MASTER for every managed VIP; balancing them");
            } else {
                tracing::info!(standby = ?standby, "VRRP: not MASTER for some VIPs; their new connections pass");
            }
            self.logged_standby = Some(standby.clone());
        }
        if let Err(e) = self.dp.set_standby(standby) {
            tracing::error!(error = %e, "cannot apply the VRRP state to the dataplane");
        }
    }

    fn status(&self) -> Result<Status, ApiError> {
        let verdicts = self.dp.verdicts().map_err(api_error)?;
        Ok(Status {
            verdicts: verdicts
                .into_iter()
                .map(|(v, n)| (v.name().to_owned(), n))
                .collect(),
            ..self.status_base()
        })
    }

    /// Where `GET /v1/status` is answered from (see [`crate::api::StatusFeed`]).
    pub fn status_feed(&self) -> crate::api::StatusFeed {
        crate::api::StatusFeed {
            base: self.status_tx.subscribe(),
            pin_dir: self.dp.pin_dir().to_path_buf(),
        }
    }

    /// Publishes the status for [`Daemon::status_feed`] (cheap: no counters, no services),
    /// only when it changed: the loop turns at every timer, and readers need no wake-up
    /// for the same status.
    fn publish_status(&self) {
        let next = self.status_base();
        self.status_tx.send_if_modified(|current| {
            if **current == next {
                return false;
            }
            *current = Arc::new(next);
            true
        });
    }

    /// The status without the verdict counters.
    fn status_base(&self) -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            conn_table_size: self.dp.limits().connections,
            timeouts: self.desired.timeouts,
            interfaces: self.desired.daemon.interfaces.clone(),
            verdicts: Vec::new(),
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
            bgp: self.bgp.as_ref().map(crate::bgp::Bgp::status),
        }
    }

    /// Every service with its real servers, counters and rates. The counters are read in
    /// two batched passes (services, then real servers) rather than one map lookup each: a
    /// 10 000 × 10 listing was 110 000 syscalls.
    fn services(&self) -> Result<ServiceList, ApiError> {
        let planner = self.dp.planner();
        // First the ids, with the same refusals as before.
        let mut service_ids = Vec::with_capacity(self.desired.services.len());
        let mut real_ids = Vec::new();
        for svc in &self.desired.services {
            let id = svc.id();
            let entry = planner.service_entry(&id).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Internal,
                    format!("service {id} has no map entry"),
                )
            })?;
            service_ids.push(entry.id);
            // IPVS lists a service's servers newest first.
            for r in svc.reals.iter().rev() {
                let rid = planner
                    .real_id(&id, r.address, r.port.unwrap_or(svc.port))
                    .ok_or_else(|| {
                        ApiError::new(ErrorKind::Internal, format!("real {} has no id", r.address))
                    })?;
                real_ids.push(rid);
            }
        }
        let service_counters = self
            .dp
            .service_counters_many(&service_ids)
            .map_err(api_error)?;
        let real_counters = self.dp.real_counters_many(&real_ids).map_err(api_error)?;
        let mut next_real = real_ids.iter().zip(real_counters);
        let mut services = Vec::with_capacity(self.desired.services.len());
        for ((svc, sid), counters) in self
            .desired
            .services
            .iter()
            .zip(service_ids)
            .zip(service_counters)
        {
            let mut reals = Vec::with_capacity(svc.reals.len());
            for r in svc.reals.iter().rev() {
                let (&rid, c) = next_real.next().ok_or_else(|| {
                    ApiError::new(ErrorKind::Internal, "real-server counters came back short")
                })?;
                let load = self.dp.real_conns(rid);
                reals.push(RealStatus {
                    real: r.clone(),
                    active_conns: load.active,
                    inactive_conns: load.inactive,
                    persist_conns: load.persist,
                    stats: stats(&c),
                    rates: self.estimator.rates(CounterId::Real(rid)),
                });
            }
            services.push(ServiceStatus {
                service: svc.clone(),
                stats: stats(&counters),
                rates: self.estimator.rates(CounterId::Service(sid)),
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

    /// Everything the status page and the metrics show, in one pass.
    fn view(&self) -> Result<crate::status::View, ApiError> {
        Ok(crate::status::View {
            status: self.status()?,
            services: self.services()?,
            health: self.health.as_ref().map(|h| crate::status::HealthView {
                counters: h.counters(),
                reals: h.status().borrow().as_ref().clone(),
            }),
            vrrp: self
                .vrrp
                .as_ref()
                .map(|v| v.status.borrow().instances.clone())
                .unwrap_or_default(),
            sync: self.sync.status(),
            conn_entries: self.scan.per_real.values().map(|(a, i)| a + i).sum(),
            conn_corrections: self.conn_corrections,
            reload: self.reload_record.clone(),
            xdp_mode: format!("{:?}", self.desired.daemon.xdp_mode).to_lowercase(),
            now: std::time::SystemTime::now(),
            now_mono: Instant::now(),
        })
    }

    /// Adds every service's current rates to the status page's history.
    fn record_history(&mut self) {
        let ids = self.counter_ids();
        let rates: Vec<_> = ids
            .services
            .iter()
            .map(|(id, sid)| (*id, self.estimator.rates(CounterId::Service(*sid))))
            .collect();
        self.history.record(std::time::SystemTime::now(), &rates);
    }

    /// Reloads and remembers the outcome for the status page and the metrics.
    async fn reload_recorded(&mut self) -> Result<Applied, ApiError> {
        let outcome = self.reload().await;
        self.reload_record
            .record(&outcome, std::time::SystemTime::now());
        outcome
    }

    fn call(&mut self, call: Call) -> Result<Reply, ApiError> {
        if self.health.is_some() && matches!(call, Call::Ops(_) | Call::PutConfig(_)) {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                "this rvsd follows a keepalived.conf and its health checks: edit the file and reload (SIGHUP or POST /v1/reload)",
            ));
        }
        match call {
            Call::GetConfig => to_value(&self.desired),
            Call::PutConfig(next) => {
                if next.daemon != self.desired.daemon {
                    return Err(ApiError::new(
                        ErrorKind::Invalid,
                        "[daemon] only changes with a restart",
                    ));
                }
                let mut next = next;
                // A state without [bgp] keeps the section in force; one with [bgp] may
                // change it, but BGP starts only with rvsd.
                if next.bgp.is_none() {
                    next.bgp = self.desired.bgp.clone();
                } else if self.bgp.is_none() {
                    return Err(ApiError::new(
                        ErrorKind::Invalid,
                        "[bgp]: BGP starts only with a restart of rvsd",
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
            Call::Services => to_json(&self.services()?),
            Call::SyncStatus => self.sync_call(None, None),
            Call::SyncStart(cfg) => self.sync_call(Some(cfg), None),
            Call::SyncStop(role) => self.sync_call(None, Some(role)),
            Call::Connections => to_json(&self.connections()),
            Call::Metrics => Ok(Reply::Value(Value::String(crate::metrics::render(
                &self.view()?,
            )))),
            Call::StatusPage => Ok(Reply::Value(crate::status::json(
                &self.view()?,
                &self.history,
                Duration::from_secs(ESTIMATOR_INTERVAL_SECS),
            ))),
            Call::Ping => Ok(Reply::Value(Value::Null)),
        }
    }

    /// SIGUSR1: the state (status, VRRP, the desired configuration) as JSON in
    /// [`DATA_FILE`], as keepalived writes /tmp/keepalived.data.
    fn dump_data(&mut self) {
        let dump = self.status().map(|status| {
            serde_json::json!({
                "status": status,
                "config": &self.desired,
            })
        });
        let written = dump.map_err(|e| anyhow::anyhow!("{e}")).and_then(|v| {
            let text = serde_json::to_string_pretty(&v)?;
            write_dump(Path::new(DATA_FILE), &(text + "\n"))
        });
        match written {
            Ok(()) => tracing::info!(file = DATA_FILE, "state written (SIGUSR1)"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot write the state"),
        }
    }

    /// SIGUSR2: the statistics (every counter, as the metrics listener serves them) in
    /// [`STATS_FILE`], as keepalived writes /tmp/keepalived.stats.
    fn dump_stats(&mut self) {
        let written = match self.call(Call::Metrics) {
            Ok(Reply::Value(Value::String(text))) => write_dump(Path::new(STATS_FILE), &text),
            Ok(_) => Err(anyhow::anyhow!("unexpected metrics value")),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        match written {
            Ok(()) => tracing::info!(file = STATS_FILE, "statistics written (SIGUSR2)"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot write the statistics"),
        }
    }

    /// Serves until SIGTERM/SIGINT; the balancer stays attached afterwards.
    pub async fn run(mut self, mut calls: mpsc::Receiver<Request>) -> Result<()> {
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let mut neigh_tick = tokio::time::interval(NEIGHBOUR_REFRESH);
        let mut rate_tick = tokio::time::interval(Duration::from_secs(ESTIMATOR_INTERVAL_SECS));
        let mut next_scan = Instant::now();
        // A large table is scanned less often (four times the last scan's duration), so
        // the main loop never spends most of its time scanning.
        let mut next_sync_scan = Instant::now();
        let mut bgp_tick = tokio::time::interval(Duration::from_secs(1));
        // SIGTERM with [bgp]: the VIPs are withdrawn and rvsd balances on until then.
        let mut drain_until: Option<tokio::time::Instant> = None;
        self.follow_sync();
        tracing::info!(pid = std::process::id(), "rvsd ready");
        loop {
            if self.bgp_dirty {
                self.bgp_dirty = false;
                if let Some(b) = &mut self.bgp {
                    b.follow(&self.desired).await;
                }
            }
            self.publish_status();
            self.sync_events = self
                .sync
                .follow_events(&mut self.dp, self.sync_events.take());
            let scan_at = tokio::time::Instant::from_std(next_scan);
            let request_due = self.sync.request_due();
            tokio::select! {
                _ = hup.recv() => match self.reload_recorded().await {
                    Ok(a) => {
                        log_reload(&a);
                        self.sync_routes().await;
                        self.resolve_neighbours().await;
                    }
                    Err(e) => tracing::error!(error = %e, "reload refused; state unchanged"),
                },
                Some(req) = calls.recv() => {
                    let changes = matches!(req.call, Call::PutConfig(_) | Call::Reload);
                    let edits = changes || matches!(req.call, Call::Ops(_));
                    let answer = if matches!(req.call, Call::Reload) {
                        self.reload_recorded().await.and_then(|a| {
                            log_reload(&a);
                            to_value(&a)
                        })
                    } else {
                        self.call(req.call)
                    };
                    if let Err(e) = &answer {
                        tracing::info!(error = %e, "API request refused");
                    }
                    let _ = req.reply.send(answer);
                    if edits {
                        self.sync_routes().await;
                    }
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
                        self.sync_routes().await;
                    }
                }
                Ok(()) = vrrp_changed(&mut self.vrrp) => {
                    self.follow_vrrp();
                    self.follow_sync();
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next_sync_scan)), if self.sync.is_master() => {
                    let started = Instant::now();
                    self.sync.set_timeouts(state_timeouts(&self.desired.timeouts));
                    self.sync.scan(&self.dp);
                    let every = if self.sync_events.is_some() {
                        crate::sync::REFRESH_SCAN_INTERVAL
                    } else {
                        crate::sync::SCAN_INTERVAL
                    };
                    next_sync_scan = Instant::now() + every.max(started.elapsed() * 4);
                }
                () = crate::sync::events_ready(self.sync_events.as_ref()) => {
                    if let Some(ring) = &mut self.sync_events {
                        self.sync.drain_events(&mut self.dp, ring);
                    }
                }
                Some(inbound) = self.sync.next_inbound() => {
                    let clients = self.sync.handle(inbound, &mut self.dp);
                    self.resolve_client_hops(clients).await;
                }
                _ = tokio::time::sleep_until(request_due.unwrap_or_else(tokio::time::Instant::now)), if request_due.is_some() => {
                    self.sync.retry_request();
                }
                _ = neigh_tick.tick() => self.refresh_neighbours().await,
                _ = rate_tick.tick() => {
                    self.record_history();
                    self.start_rate_round();
                }
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
                            self.conn_corrections += scan.corrected as u64;
                            if scan.corrected > 0 {
                                // Counts left too high by LRU evictions (or adopted from an
                                // rvsd without them), set to what the table holds.
                                tracing::info!(
                                    servers = scan.corrected,
                                    "ActiveConn/InActConn reconciled with the connection table"
                                );
                            }
                            self.scan = scan;
                        }
                        Err(e) => tracing::warn!(error = %e, "connection scan failed"),
                    }
                    // IPVS's once-a-minute check of the lblc/lblcr tables (rate-limited inside).
                    if let Err(e) = self.dp.maybe_check_locality() {
                        tracing::warn!(error = %e, "lblc/lblcr table check failed");
                    }
                    next_scan = Instant::now() + CONN_SCAN_MIN.max(started.elapsed() * 4);
                }
                _ = usr1.recv() => self.dump_data(),
                _ = usr2.recv() => self.dump_stats(),
                _ = bgp_tick.tick(), if self.bgp.is_some() => {
                    if let Some(b) = &mut self.bgp {
                        b.tick().await;
                    }
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or_else(tokio::time::Instant::now)), if drain_until.is_some() => {
                    tracing::info!("BGP: drain period over");
                    break;
                }
                _ = term.recv() => {
                    // With BGP, a planned stop withdraws first and drains; a second
                    // SIGTERM during the drain stops at once.
                    match &mut self.bgp {
                        Some(b) if !b.draining() => {
                            drain_until = b.withdraw_for_stop().await;
                            if drain_until.is_none() {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                _ = int.recv() => break,
            }
        }
        if let Some(b) = self.bgp.take() {
            if !b.draining() {
                tracing::info!("BGP: stopping without a drain (SIGINT or a second SIGTERM)");
            }
            b.shutdown().await;
        }
        if let Some(v) = &mut self.vrrp {
            v.stop().await;
        }
        self.sync = SyncEngine::default();
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

#[cfg(test)]
mod tests {
    use super::reload_refusal;

    fn import(text: &str) -> rvs_keepalived::Import {
        rvs_keepalived::load_str(std::path::Path::new("k.conf"), text).expect("loads")
    }

    const ONE: &str = "virtual_server 198.18.0.10 80 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    real_server 198.18.2.11 80 {\n        weight 1\n    }\n}\n";

    #[test]
    fn a_reload_to_an_empty_file_is_refused() {
        let why = reload_refusal(&import("")).expect("refused");
        assert!(why.contains("delete every service"), "{why}");
        assert!(reload_refusal(&import("# truncated\n")).is_some());
    }

    #[test]
    fn a_reload_that_would_leave_a_service_out_is_refused_naming_it() {
        let text = format!(
            "{ONE}virtual_server 198.18.0.11 80 {{\n    lb_algo rr\n    lb_kind DR\n    protocol SCTP\n    real_server 198.18.2.11 80 {{\n        weight 1\n    }}\n}}\n"
        );
        let why = reload_refusal(&import(&text)).expect("refused");
        assert!(why.contains("k.conf:12:"), "{why}");
        assert!(why.contains("SCTP"), "{why}");
    }

    #[test]
    fn a_reload_of_a_file_rvs_runs_whole_is_accepted() {
        assert_eq!(reload_refusal(&import(ONE)), None);
    }
}
