//! The management API server: JSON over HTTP/1.1 on a root-only Unix socket.
//!
//! Each HTTP request becomes a [`Request`] sent to the daemon's main task, which owns the
//! dataplane and answers on a oneshot channel, so every change is applied in one place,
//! in order. Routes and bodies are documented in the `rvs-api` crate and docs/api.md.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use rvs_api::{ApiError, ErrorKind, OpBatch};
use rvs_config::Config;
use serde::de::DeserializeOwned;
use tokio::{
    net::UnixListener,
    sync::{Semaphore, mpsc, oneshot},
};

/// What `GET /v1/status` is answered from without asking the main task, so that it is
/// answered while the main task applies a huge batch: the daemon publishes everything but
/// the verdict counters on every turn of its loop, and the counters are read from the
/// pinned map.
#[derive(Clone)]
pub struct StatusFeed {
    /// The status as last published, verdicts left empty.
    pub base: tokio::sync::watch::Receiver<Arc<rvs_api::Status>>,
    /// Where the verdict counters are pinned.
    pub pin_dir: std::path::PathBuf,
}

impl StatusFeed {
    /// The status now: the published part and the live counters.
    fn status(&self) -> Result<serde_json::Value, ApiError> {
        let mut status = (**self.base.borrow()).clone();
        let verdicts = rvs_dataplane::pinned_verdicts(&self.pin_dir)
            .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
        status.verdicts = verdicts
            .into_iter()
            .map(|(v, n)| (v.name().to_owned(), n))
            .collect();
        serde_json::to_value(&status).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
    }
}

/// What the API handlers need besides the main task.
#[derive(Clone)]
pub struct ApiContext {
    /// The main task.
    pub calls: mpsc::Sender<Request>,
    /// `GET /v1/status`'s source.
    pub status: StatusFeed,
    /// Largest request body (`--api-max-body`); a larger one gets 413.
    pub max_body: usize,
}

/// What a handler asks the main task to do.
pub enum Call {
    /// `GET /v1/config`.
    GetConfig,
    /// `PUT /v1/config`.
    PutConfig(Box<Config>),
    /// `POST /v1/ops`.
    Ops(OpBatch),
    /// `POST /v1/reload`.
    Reload,
    /// `GET /v1/services`.
    Services,
    /// `GET /v1/connections`.
    Connections,
    /// `GET /metrics` (Prometheus, on the metrics listener).
    Metrics,
    /// `GET /v1/sync`.
    SyncStatus,
    /// `POST /v1/sync/start`.
    SyncStart(rvs_api::SyncDaemonConfig),
    /// `POST /v1/sync/stop`.
    SyncStop(rvs_api::SyncRole),
    /// `GET /status.json` (the status page's data, on the metrics listener).
    StatusPage,
    /// The watchdog's liveness probe of the main loop.
    Ping,
}

/// A call and where to send its JSON answer.
pub struct Request {
    /// The call.
    pub call: Call,
    /// The answer: a JSON body, or an error.
    pub reply: oneshot::Sender<Result<Reply, ApiError>>,
}

/// A call's JSON answer.
#[derive(Debug)]
pub enum Reply {
    /// A JSON value.
    Value(serde_json::Value),
    /// A body already serialized: a large listing goes straight from its structs to bytes
    /// (through a `Value` tree, building, writing and freeing it was most of a 10 000 × 10
    /// `rvsadm -L -n`).
    Json(Bytes),
}

impl Reply {
    /// The answer as a JSON value (parsing a serialized body).
    pub fn into_value(self) -> Result<serde_json::Value, ApiError> {
        match self {
            Reply::Value(v) => Ok(v),
            Reply::Json(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string())),
        }
    }
}

/// How much of rvsd one listener's clients may hold: a local user opening thousands of
/// idle connections must not exhaust rvsd's file descriptors nor its attention.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections served at once; more wait in the kernel's backlog (no fd each).
    pub max_conns: usize,
    /// Longest wait for a request's headers, also between keep-alive requests.
    pub header_timeout: Duration,
    /// Longest life of one connection.
    pub max_lifetime: Duration,
}

/// The API socket's limits (rvsadm opens one connection per command).
pub const API_LIMITS: ConnLimits = ConnLimits {
    max_conns: 64,
    header_timeout: Duration::from_secs(10),
    max_lifetime: Duration::from_secs(300),
};

/// The metrics listener's limits (a scraper asks every few seconds).
pub const METRICS_LIMITS: ConnLimits = ConnLimits {
    max_conns: 32,
    header_timeout: Duration::from_secs(5),
    max_lifetime: Duration::from_secs(30),
};

/// Accepts connections from `accept` and serves each with `serve` under `limits`; accept
/// errors (EMFILE, say) back off from 10 ms to 1 s and are logged at most every 10 s with
/// how many were suppressed, so a flood neither spins nor fills the log.
pub async fn accept_loop<S, A, AF, H, HF>(
    what: &'static str,
    limits: ConnLimits,
    mut accept: A,
    serve: H,
) where
    A: FnMut() -> AF,
    AF: std::future::Future<Output = std::io::Result<S>>,
    H: Fn(S) -> HF,
    HF: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_conns));
    let mut backoff = Duration::ZERO;
    let mut last_log: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        // Wait for a free slot before accepting, so excess clients cost rvsd nothing.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match accept().await {
            Ok(stream) => {
                backoff = Duration::ZERO;
                let conn = serve(stream);
                tokio::spawn(async move {
                    let _permit = permit;
                    if tokio::time::timeout(limits.max_lifetime, conn)
                        .await
                        .is_err()
                    {
                        tracing::debug!(listener = what, "connection closed: lifetime limit");
                    }
                });
            }
            Err(e) => {
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(listener = what, error = %e, suppressed, "accept failed; backing off");
                    last_log = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// hyper's HTTP/1 server with the header timeout of `limits`.
pub fn http1_builder(limits: ConnLimits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    b
}

/// Serves the bound API socket (see [`bind`]) until the process ends.
pub async fn serve(listener: UnixListener, socket: &Path, ctx: ApiContext) -> Result<()> {
    tracing::info!(socket = %socket.display(), "API listening");
    accept_loop(
        "api",
        API_LIMITS,
        || async { listener.accept().await.map(|(s, _)| s) },
        |stream| {
            let ctx = ctx.clone();
            async move {
                let service = service_fn(move |req| handle(req, ctx.clone()));
                if let Err(e) = http1_builder(API_LIMITS)
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "API connection ended");
                }
            }
        },
    )
    .await;
    Ok(())
}

/// Binds the API socket (mode 0600 in a 0700 directory).
pub fn bind(socket: &Path) -> Result<UnixListener> {
    // A directory rvsd creates is private (0700); an existing one (say /tmp) keeps its
    // mode: the socket itself is 0600.
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket: rvsd does not replace it (use another --socket)",
                socket.display()
            );
        }
        // Only one rvsd per socket: a live one answers connections; a socket nobody
        // listens on is a stale one left by a killed rvsd.
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            anyhow::bail!(
                "another rvsd is serving {} (stop it, or use --socket)",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale socket {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", socket.display()))?;
    Ok(listener)
}

fn json_response(status: u16, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    json_bytes_response(status, Bytes::from(bytes))
}

fn json_bytes_response(status: u16, bytes: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(err: &ApiError) -> Response<Full<Bytes>> {
    json_response(err.status(), err)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("invalid JSON body: {e}")))
}

/// Decodes a body on the blocking pool: a batch of tens of MB takes seconds to parse, and
/// the runtime's one thread must go on serving `/v1/status` meanwhile.
async fn decode_aside<T: DeserializeOwned + Send + 'static>(body: Bytes) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || decode(&body))
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::new(
                ErrorKind::Internal,
                format!("decoding the body: {e}"),
            ))
        })
}

/// 413 for a body over `limit` bytes, naming the limit and how to raise it.
fn too_large(limit: usize) -> Response<Full<Bytes>> {
    json_response(
        413,
        &ApiError::new(
            ErrorKind::BadRequest,
            format!(
                "request body larger than rvsd's limit of {limit} bytes (rvsd --api-max-body BYTES raises it; or split the batch)"
            ),
        ),
    )
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    ctx: ApiContext,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > ctx.max_body as u64) {
        return Ok(too_large(ctx.max_body));
    }
    let body = match Limited::new(req.into_body(), ctx.max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(too_large(ctx.max_body));
        }
        Err(e) => {
            return Ok(error_response(&ApiError::new(
                ErrorKind::BadRequest,
                format!("reading the request body: {e}"),
            )));
        }
    };
    let call = match (method, path.as_str()) {
        // Answered here, not by the main task, which may be busy with a huge batch.
        (Method::GET, "/v1/status") => {
            return Ok(match ctx.status.status() {
                Ok(v) => json_response(200, &v),
                Err(e) => error_response(&e),
            });
        }
        (Method::GET, "/v1/config") => Ok(Call::GetConfig),
        (Method::PUT, "/v1/config") => decode_aside(body)
            .await
            .map(|c| Call::PutConfig(Box::new(c))),
        (Method::POST, "/v1/ops") => decode_aside(body).await.map(Call::Ops),
        (Method::POST, "/v1/reload") => Ok(Call::Reload),
        (Method::GET, "/v1/services") => Ok(Call::Services),
        (Method::GET, "/v1/connections") => Ok(Call::Connections),
        (Method::GET, "/v1/sync") => Ok(Call::SyncStatus),
        (Method::POST, "/v1/sync/start") => decode(&body).map(Call::SyncStart),
        (Method::POST, "/v1/sync/stop") => {
            decode::<rvs_api::SyncStop>(&body).map(|s| Call::SyncStop(s.role))
        }
        (m, p) => Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no API route {m} {p} (see docs/api.md)"),
        )),
    };
    let call = match call {
        Ok(c) => c,
        Err(e) => return Ok(error_response(&e)),
    };
    let (reply, answer) = oneshot::channel();
    if ctx.calls.send(Request { call, reply }).await.is_err() {
        return Ok(error_response(&ApiError::new(
            ErrorKind::Internal,
            "rvsd is shutting down",
        )));
    }
    Ok(match answer.await {
        Ok(Ok(Reply::Value(value))) => json_response(200, &value),
        Ok(Ok(Reply::Json(bytes))) => json_bytes_response(200, bytes),
        Ok(Err(e)) => error_response(&e),
        Err(_) => error_response(&ApiError::new(ErrorKind::Internal, "request dropped")),
    })
}
