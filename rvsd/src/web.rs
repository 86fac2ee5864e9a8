//! The HTTP listener for people and Prometheus (`--metrics ADDRESS`): the live status page
//! at `/`, its data at `/status.json`, metrics at `/metrics`. Read-only: every route is a
//! GET that the main task answers from its state; nothing here changes anything.

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::{Method, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};

use crate::api::{Call, METRICS_LIMITS, Request, accept_loop, http1_builder};

/// Serves the status page, its JSON and the metrics on `addr` until the process ends.
pub async fn serve(addr: std::net::SocketAddr, calls: mpsc::Sender<Request>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener {addr}"))?;
    tracing::info!(%addr, "metrics and status page listening");
    let accept = || async { listener.accept().await.map(|(s, _)| s) };
    accept_loop("metrics", METRICS_LIMITS, accept, |stream| {
        let calls = calls.clone();
        async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let calls = calls.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&req, calls).await) }
            });
            let _ = http1_builder(METRICS_LIMITS)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
    Ok(())
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    // The page polls: never let a cache answer for the daemon.
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    resp
}

async fn ask(calls: &mpsc::Sender<Request>, call: Call) -> Result<serde_json::Value, String> {
    let (reply, answer) = oneshot::channel();
    calls
        .send(Request { call, reply })
        .await
        .map_err(|_| "rvsd is shutting down".to_owned())?;
    match answer.await {
        Ok(Ok(v)) => v.into_value().map_err(|e| e.message),
        Ok(Err(e)) => Err(e.message),
        Err(_) => Err("rvsd is shutting down".to_owned()),
    }
}

async fn route(
    req: &hyper::Request<hyper::body::Incoming>,
    calls: mpsc::Sender<Request>,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return response(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            Bytes::from_static(b"read-only: GET /, /status.json or /metrics\n"),
        );
    }
    match req.uri().path() {
        "/" => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(crate::status::PAGE.as_bytes()),
        ),
        "/status.json" => match ask(&calls, Call::StatusPage).await {
            Ok(v) => response(
                StatusCode::OK,
                "application/json",
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            ),
            Err(m) => response(StatusCode::INTERNAL_SERVER_ERROR, TEXT, Bytes::from(m)),
        },
        "/metrics" => match ask(&calls, Call::Metrics).await {
            Ok(serde_json::Value::String(text)) => response(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                Bytes::from(text),
            ),
            Ok(_) => response(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                Bytes::from_static(b"metrics: unexpected answer\n"),
            ),
            Err(m) => response(StatusCode::INTERNAL_SERVER_ERROR, TEXT, Bytes::from(m)),
        },
        _ => response(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"see / (status page), /status.json or /metrics\n"),
        ),
    }
}
