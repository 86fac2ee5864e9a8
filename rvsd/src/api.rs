//! The management API server: JSON over HTTP/1.1 on a root-only Unix socket.
//!
//! Each HTTP request becomes a [`Request`] sent to the daemon's main task, which owns the
//! dataplane and answers on a oneshot channel, so every change is applied in one place,
//! in order. Routes and bodies are documented in the `rvs-api` crate and docs/api.md.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
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
    sync::{mpsc, oneshot},
};

/// Largest request body accepted (a `-R` of 100 000 services is a few tens of MB).
const MAX_BODY: usize = 256 << 20;

/// What a handler asks the main task to do.
pub enum Call {
    /// `GET /v1/status`.
    Status,
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
    pub reply: oneshot::Sender<Result<serde_json::Value, ApiError>>,
}

/// Binds the socket (mode 0600 in a 0700 directory) and serves until the process ends.
pub async fn serve(socket: PathBuf, calls: mpsc::Sender<Request>) -> Result<()> {
    let listener = bind(&socket)?;
    tracing::info!(socket = %socket.display(), "API listening");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "API accept failed");
                continue;
            }
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, calls.clone()));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "API connection ended");
            }
        });
    }
}

fn bind(socket: &Path) -> Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    if socket.exists() {
        // Only one rvsd per socket: a live one answers connections.
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
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
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

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    calls: mpsc::Sender<Request>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::new(
                ErrorKind::BadRequest,
                format!("reading the request body: {e}"),
            )));
        }
    };
    let call = match (method, path.as_str()) {
        (Method::GET, "/v1/status") => Ok(Call::Status),
        (Method::GET, "/v1/config") => Ok(Call::GetConfig),
        (Method::PUT, "/v1/config") => decode(&body).map(|c| Call::PutConfig(Box::new(c))),
        (Method::POST, "/v1/ops") => decode(&body).map(Call::Ops),
        (Method::POST, "/v1/reload") => Ok(Call::Reload),
        (Method::GET, "/v1/services") => Ok(Call::Services),
        (Method::GET, "/v1/connections") => Ok(Call::Connections),
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
    if calls.send(Request { call, reply }).await.is_err() {
        return Ok(error_response(&ApiError::new(
            ErrorKind::Internal,
            "rvsd is shutting down",
        )));
    }
    Ok(match answer.await {
        Ok(Ok(value)) => json_response(200, &value),
        Ok(Err(e)) => error_response(&e),
        Err(_) => error_response(&ApiError::new(ErrorKind::Internal, "request dropped")),
    })
}
