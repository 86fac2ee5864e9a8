//! A client of rvsd's API over its Unix socket (one HTTP/1.1 connection per request).

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::UnixStream;

use crate::{ApiError, Applied, ConnectionList, Op, OpBatch, ServiceList, Status};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// rvsd is not running or the socket is not accessible.
    #[error("cannot reach rvsd at {path}: {source} (is rvsd running? are you root?)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("talking to rvsd: {0}")]
    Http(String),
    /// rvsd refused the request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// rvsd answered something that is not the expected JSON.
    #[error("unexpected answer from rvsd: {0}")]
    Decode(String),
}

/// A client bound to one socket path.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client for the socket at `socket`.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_owned(),
        }
    }

    /// Sends one request and decodes the JSON answer.
    pub async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Decode(e.to_string()))?,
            None => Vec::new(),
        };
        let (status, answer) = self.raw(method, path, bytes).await?;
        if !(200..300).contains(&status) {
            let err: ApiError = serde_json::from_slice(&answer).map_err(|_| {
                ClientError::Decode(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&answer)
                ))
            })?;
            return Err(ClientError::Api(err));
        }
        serde_json::from_slice(&answer).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Sends raw bytes and returns the status and body (for tests of malformed input).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "rvsd")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok((status, body))
    }

    /// Applies a batch of ops atomically.
    pub async fn apply(&self, ops: Vec<Op>) -> Result<Applied, ClientError> {
        self.request(Method::POST, "/v1/ops", Some(&OpBatch { ops }))
            .await
    }

    /// Services with counters, rates and connection counts.
    pub async fn services(&self) -> Result<ServiceList, ClientError> {
        self.request::<(), _>(Method::GET, "/v1/services", None)
            .await
    }

    /// The connection table.
    pub async fn connections(&self) -> Result<ConnectionList, ClientError> {
        self.request::<(), _>(Method::GET, "/v1/connections", None)
            .await
    }

    /// Daemon status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.request::<(), _>(Method::GET, "/v1/status", None).await
    }

    /// Asks rvsd to re-read its config file.
    pub async fn reload(&self) -> Result<Applied, ClientError> {
        self.request::<(), _>(Method::POST, "/v1/reload", None)
            .await
    }

    /// The connection sync daemons.
    pub async fn sync_status(&self) -> Result<crate::SyncStatus, ClientError> {
        self.request::<(), _>(Method::GET, "/v1/sync", None).await
    }

    /// Starts a connection sync daemon.
    pub async fn sync_start(
        &self,
        config: &crate::SyncDaemonConfig,
    ) -> Result<crate::SyncStatus, ClientError> {
        self.request(Method::POST, "/v1/sync/start", Some(config))
            .await
    }

    /// Stops a connection sync daemon.
    pub async fn sync_stop(&self, role: crate::SyncRole) -> Result<crate::SyncStatus, ClientError> {
        self.request(
            Method::POST,
            "/v1/sync/stop",
            Some(&crate::SyncStop { role }),
        )
        .await
    }
}
