//! Runs a command line against rvsd: listings, `-S`, `-R` and changes, with rvsd's errors
//! told in ipvsadm's words (its `ipvs_strerror` table) and ipvsadm's exit codes.

use std::io::Read;

use rvs_api::{
    ApiError, Applied, ClientError, ConnectionList, ErrorKind, Op, RealStatus, ServiceList,
    ServiceStatus, Status,
};
use rvs_config::Config;

use crate::{
    Failure, Format, Invocation, ListRequest, ListTarget, Resolver, args, format, restore, usage,
};

/// What rvsadm needs from rvsd (the binary uses [`rvs_api::Client`]; tests may use another).
pub trait Api {
    /// Applies ops as one atomic batch (`POST /v1/ops`).
    fn apply(&mut self, ops: Vec<Op>) -> Result<Applied, ClientError>;
    /// Services with counters (`GET /v1/services`).
    fn services(&mut self) -> Result<ServiceList, ClientError>;
    /// The connection table (`GET /v1/connections`).
    fn connections(&mut self) -> Result<ConnectionList, ClientError>;
    /// Daemon status (`GET /v1/status`).
    fn status(&mut self) -> Result<Status, ClientError>;
    /// The desired state without counters (`GET /v1/config`).
    fn config(&mut self) -> Result<Config, ClientError>;
    /// The connection sync daemons (`GET /v1/sync`).
    fn sync_status(&mut self) -> Result<rvs_api::SyncStatus, ClientError> {
        Ok(rvs_api::SyncStatus::default())
    }
    /// Starts a sync daemon (`POST /v1/sync/start`).
    fn sync_start(
        &mut self,
        _config: &rvs_api::SyncDaemonConfig,
    ) -> Result<rvs_api::SyncStatus, ClientError> {
        Err(ClientError::Http("this rvsd has no sync API".into()))
    }
    /// Stops a sync daemon (`POST /v1/sync/stop`).
    fn sync_stop(&mut self, _role: rvs_api::SyncRole) -> Result<rvs_api::SyncStatus, ClientError> {
        Err(ClientError::Http("this rvsd has no sync API".into()))
    }
}

/// `-L --daemon`, as ipvsadm 1.31 prints each daemon.
pub fn list_daemons(status: &rvs_api::SyncStatus) -> String {
    let mut out = String::new();
    for d in &status.daemons {
        out.push_str(&format!(
            "{} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})\n",
            d.role, d.interface, d.syncid, d.maxlen, d.group, d.port, d.ttl
        ));
    }
    out
}

/// A sync daemon refusal: rvsd words it as ipvsadm does ("No such device", "No daemon is
/// running", "Daemon has already run"); exit code 255 as ipvsadm's.
fn sync_failure(err: ClientError) -> Failure {
    match err {
        ClientError::Api(e) => Failure {
            stderr: format!("{}\n", e.message),
            code: 255,
        },
        other => client_failure(other, None, 255),
    }
}

/// The services of `config` as `GET /v1/services` lists them (real servers newest first),
/// with zero counters: all `-S` needs, and much cheaper for rvsd to answer than counters
/// of every real server.
pub fn config_as_list(config: &Config) -> ServiceList {
    ServiceList {
        conn_table_size: config.limits.connections,
        services: config
            .services
            .iter()
            .map(|s| ServiceStatus {
                service: s.clone(),
                stats: Default::default(),
                rates: Default::default(),
                reals: s
                    .reals
                    .iter()
                    .rev()
                    .map(|r| RealStatus {
                        real: r.clone(),
                        active_conns: 0,
                        inactive_conns: 0,
                        persist_conns: 0,
                        stats: Default::default(),
                        rates: Default::default(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// What a run printed and its exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code.
    pub code: i32,
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Self {
        Outcome {
            stdout: String::new(),
            stderr: f.stderr,
            code: f.code,
        }
    }
}

/// rvsadm's own options, which ipvsadm does not have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RvsOptions {
    /// `--socket PATH`: rvsd's API socket.
    pub socket: Option<String>,
    /// `--json`: listings as JSON.
    pub json: bool,
}

/// Takes rvsadm's own options (`--socket PATH`, `--socket=PATH`, `--json`) out of the
/// command line, wherever they are (up to a `--`), and leaves ipvsadm's.
pub fn split_rvs_options(argv: Vec<String>) -> Result<(Vec<String>, RvsOptions), Failure> {
    let mut rest = Vec::with_capacity(argv.len());
    let mut opts = RvsOptions::default();
    let mut it = argv.into_iter();
    if let Some(program) = it.next() {
        rest.push(program);
    }
    let mut done = false;
    while let Some(a) = it.next() {
        if done {
            rest.push(a);
        } else if a == "--" {
            done = true;
            rest.push(a);
        } else if a == "--json" {
            opts.json = true;
        } else if a == "--socket" {
            let path = it.next().ok_or_else(|| Failure {
                stderr: "--socket: missing argument\n".into(),
                code: 255,
            })?;
            opts.socket = Some(path);
        } else if let Some(path) = a.strip_prefix("--socket=") {
            opts.socket = Some(path.to_string());
        } else {
            rest.push(a);
        }
    }
    Ok((rest, opts))
}

/// ipvsadm's message for an error of `kind` from the kernel call that `op` stands for
/// (`ipvs_strerror`'s per-call table), or `None` where ipvsadm has none and rvsd's own
/// explanation is clearer.
pub fn ipvs_message(op: &Op, kind: ErrorKind) -> Option<&'static str> {
    use ErrorKind as K;
    Some(match (op, kind) {
        (Op::AddService { .. }, K::ServiceExists) => "Service already exists",
        (Op::EditService { .. } | Op::DeleteService { .. } | Op::Zero { .. }, K::NoService) => {
            "No such service"
        }
        (Op::AddReal { .. } | Op::EditReal { .. } | Op::DeleteReal { .. }, K::NoService) => {
            "Service not defined"
        }
        (Op::AddReal { .. }, K::RealExists) => "Destination already exists",
        (Op::EditReal { .. } | Op::DeleteReal { .. }, K::NoReal) => "No such destination",
        (Op::AddReal { .. } | Op::EditReal { .. }, K::NotUnicast) => {
            "Invalid operation.  Possibly wrong module version, address not unicast, ..."
        }
        _ => return None,
    })
}

/// The stderr text for rvsd's refusal of `op` (or of the request when `op` is `None`).
pub fn api_error_text(op: Option<&Op>, err: &ApiError) -> String {
    if let Some(text) = op.and_then(|op| ipvs_message(op, err.kind)) {
        return format!("{text}\n");
    }
    match err.kind {
        // What IPVS says when it cannot allocate; rvsd says which limit.
        ErrorKind::Capacity => format!("Memory allocation problem ({})\n", err.message),
        ErrorKind::Invalid
        | ErrorKind::NotUnicast
        | ErrorKind::ServiceExists
        | ErrorKind::NoService
        | ErrorKind::RealExists
        | ErrorKind::NoReal => format!("{}\n", err.message),
        ErrorKind::BadRequest | ErrorKind::NotFound | ErrorKind::Internal => {
            format!("rvsd: {}\n", err.message)
        }
    }
}

/// The failure for a client error; `code` is used unless rvsd could not be reached, which
/// is ipvsadm's "Can't initialize ipvs" (exit 2).
fn client_failure(err: ClientError, op: Option<&Op>, code: i32) -> Failure {
    match err {
        ClientError::Connect { path, source } => Failure {
            stderr: format!(
                "Can't initialize ipvs: cannot reach rvsd at {}: {source}\nAre you sure that rvsd is running (and that you are root)?\n",
                path.display()
            ),
            code: 2,
        },
        ClientError::Api(e) => Failure {
            stderr: api_error_text(op, &e),
            code,
        },
        other => Failure {
            stderr: format!("{other}\n"),
            code,
        },
    }
}

/// Services and real servers in the order a listing shows them, for `--json`.
fn ordered_copy(list: &ServiceList, nosort: bool) -> ServiceList {
    ServiceList {
        conn_table_size: list.conn_table_size,
        services: format::ordered_services(list, nosort)
            .into_iter()
            .map(|s| ordered_service(s, nosort))
            .collect(),
    }
}

fn ordered_service(s: &ServiceStatus, nosort: bool) -> ServiceStatus {
    ServiceStatus {
        reals: format::ordered_reals(s, nosort)
            .into_iter()
            .cloned()
            .collect(),
        ..s.clone()
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Serialising these plain data types cannot fail.
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn list(req: ListRequest, api: &mut dyn Api, r: &dyn Resolver) -> Result<String, Failure> {
    let f = req.format;
    Ok(match req.target {
        ListTarget::All => {
            let l = api.services().map_err(|e| client_failure(e, None, 1))?;
            if req.json {
                json(&ordered_copy(&l, f.nosort))
            } else {
                format::list_all(&l, f, r)
            }
        }
        ListTarget::Service(id) => {
            let l = api.services().map_err(|e| client_failure(e, None, 1))?;
            let Some(s) = l.services.iter().find(|s| s.service.id() == id) else {
                return Err(Failure {
                    stderr: "No such service\n".into(),
                    code: 1,
                });
            };
            if req.json {
                json(&ordered_service(s, f.nosort))
            } else {
                format::list_service(s, f, r)
            }
        }
        ListTarget::Connections => {
            let c = api.connections().map_err(|e| client_failure(e, None, 1))?;
            if req.json {
                json(&c)
            } else {
                format::list_connections(&c, f, r)
            }
        }
        ListTarget::Timeouts => {
            let s = api.status().map_err(|e| client_failure(e, None, 1))?;
            if req.json {
                json(&s.timeouts)
            } else {
                format::list_timeouts(&s.timeouts)
            }
        }
        ListTarget::Daemons => {
            let s = api.sync_status().map_err(|e| client_failure(e, None, 1))?;
            if req.json {
                json(&s.daemons)
            } else {
                list_daemons(&s)
            }
        }
    })
}

fn restore(
    program: &str,
    api: &mut dyn Api,
    r: &dyn Resolver,
    stdin: &mut dyn Read,
) -> Result<(), Failure> {
    let mut input = Vec::new();
    stdin.read_to_end(&mut input).map_err(|e| Failure {
        stderr: format!("rvsadm: reading the rules from stdin: {e}\n"),
        code: 2,
    })?;
    let batch = restore::parse_batch(&input, program, r)?;
    if batch.ops.is_empty() {
        return Ok(());
    }
    match api.apply(batch.ops.clone()) {
        Ok(_) => Ok(()),
        Err(ClientError::Api(e)) => {
            let op = e.op.and_then(|i| batch.ops.get(i));
            let mut stderr = api_error_text(op, &e);
            match e.op.and_then(|i| restore::failed_line_note(&batch, i)) {
                Some(note) => stderr.push_str(&note),
                None => stderr.push_str("rvsadm: nothing was applied\n"),
            }
            Err(Failure { stderr, code: 255 })
        }
        Err(e) => Err(client_failure(e, None, 255)),
    }
}

/// Runs one rvsadm command line (`argv[0]` is the program name; rvsadm's own options
/// already taken out by [`split_rvs_options`], `json` being `--json`).
pub fn run(
    argv: &[String],
    json_output: bool,
    api: &mut dyn Api,
    r: &dyn Resolver,
    stdin: &mut dyn Read,
) -> Outcome {
    let program = argv.first().map(String::as_str).unwrap_or("rvsadm");
    // ipvsadm without arguments lists everything.
    let invocation = if argv.len() <= 1 {
        Ok(Invocation::List(ListRequest {
            target: ListTarget::All,
            format: Format::default(),
            json: json_output,
        }))
    } else {
        args::parse(argv, r, false, json_output)
    };
    let result = match invocation {
        Err(f) => Err(f),
        Ok(Invocation::Usage) => Ok(usage::usage(program)),
        Ok(Invocation::Version) => Ok(usage::version()),
        Ok(Invocation::List(req)) => list(req, api, r),
        Ok(Invocation::Save { numeric }) => {
            let f = Format {
                numeric,
                rule: true,
                ..Format::default()
            };
            api.config()
                .map(|c| format::list_all(&config_as_list(&c), f, r))
                .map_err(|e| client_failure(e, None, 1))
        }
        Ok(Invocation::Restore) => restore(program, api, r, stdin).map(|()| String::new()),
        Ok(Invocation::Apply(op)) => match api.apply(vec![op.clone()]) {
            Ok(_) => Ok(String::new()),
            Err(e) => Err(client_failure(e, Some(&op), 255)),
        },
        Ok(Invocation::StartDaemon(cfg)) => api
            .sync_start(&cfg)
            .map(|_| String::new())
            .map_err(sync_failure),
        Ok(Invocation::StopDaemon(role)) => api
            .sync_stop(role)
            .map(|_| String::new())
            .map_err(sync_failure),
    };
    match result {
        Ok(stdout) => Outcome {
            stdout,
            stderr: String::new(),
            code: 0,
        },
        Err(f) => f.into(),
    }
}
