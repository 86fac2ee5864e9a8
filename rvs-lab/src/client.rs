//! Clients that run from inside a namespace: one HTTP GET, a persistent keep-alive HTTP
//! session, a UDP question, and many TCP connections in bounded parallel. All of them
//! give up after [`CONNECT_TIMEOUT`] / [`IO_TIMEOUT`].

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::http;
use crate::netns::Netns;

/// Longest wait for a TCP connection to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for any single read or write (and for a UDP answer).
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Most threads [`run_many`] uses at once.
pub const MAX_PARALLELISM: usize = 128;

/// Fetches `http://addr/` from inside `ns` on a new connection and returns the body,
/// trimmed (the responder's name).
pub fn http_get(ns: &Netns, addr: SocketAddr) -> Result<String> {
    ns.run(|| get_once(addr))?
        .with_context(|| format!("HTTP GET http://{addr}/ from namespace {}", ns.name()))
}

/// Fetches `http://addr{path}` from inside `ns` and returns the body, trimmed.
pub fn http_get_path(ns: &Netns, addr: SocketAddr, path: &str) -> Result<String> {
    ns.run(|| get_path(addr, path))?
        .with_context(|| format!("HTTP GET http://{addr}{path} from namespace {}", ns.name()))
}

/// Opens `n` separate TCP connections from inside `ns`, each doing one HTTP GET, with at
/// most `parallelism` in flight; results are in order of the connections.
pub fn run_many(ns: &Netns, addr: SocketAddr, n: usize, parallelism: usize) -> Vec<Result<String>> {
    let workers = parallelism.clamp(1, MAX_PARALLELISM).min(n.max(1));
    let results: Vec<Mutex<Option<Result<String>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    // Threads spawned inside `run` are in the namespace as well.
    let ran = ns.run(|| {
        thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(slot) = results.get(i) else { break };
                        let result =
                            get_once(addr).with_context(|| format!("connection {i} to {addr}"));
                        if let Ok(mut slot) = slot.lock() {
                            *slot = Some(result);
                        }
                    }
                });
            }
        });
    });
    if let Err(e) = ran {
        let msg = format!("{e:#}");
        return (0..n).map(|_| Err(anyhow!("{msg}"))).collect();
    }
    results
        .into_iter()
        .map(|slot| match slot.into_inner() {
            Ok(Some(result)) => result,
            Ok(None) => Err(anyhow!("connection was not attempted")),
            Err(_) => Err(anyhow!("a worker panicked")),
        })
        .collect()
}

/// Sends one datagram to `addr` from inside `ns` and returns the answer, trimmed.
pub fn udp_ask(ns: &Netns, addr: SocketAddr) -> Result<String> {
    ns.run(|| -> Result<String> {
        let socket = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
        socket.connect(addr).context("connecting the UDP socket")?;
        socket.set_read_timeout(Some(IO_TIMEOUT))?;
        socket.send(b"?\n").context("sending")?;
        let mut buf = [0u8; 2048];
        let n = socket.recv(&mut buf).context("no answer")?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
    })?
    .with_context(|| format!("UDP question to {addr} from namespace {}", ns.name()))
}

/// One persistent keep-alive HTTP connection, made inside a namespace, that can `get()`
/// repeatedly (to show that an already-open connection keeps working).
#[derive(Debug)]
pub struct HttpSession {
    stream: TcpStream,
    buf: Vec<u8>,
    peer: SocketAddr,
    closed: bool,
}

impl HttpSession {
    /// Connects to `addr` from inside `ns`.
    pub fn connect(ns: &Netns, addr: SocketAddr) -> Result<HttpSession> {
        let stream = ns
            .run(|| connect(addr))?
            .with_context(|| format!("HTTP session to {addr} from namespace {}", ns.name()))?;
        Ok(HttpSession {
            stream,
            buf: Vec::new(),
            peer: addr,
            closed: false,
        })
    }

    /// Sends one GET on this connection and returns the body, trimmed.
    pub fn get(&mut self) -> Result<String> {
        if self.closed {
            bail!("HTTP session to {} was closed by the server", self.peer);
        }
        let (body, close) = request(&mut self.stream, &mut self.buf, self.peer, "/", false)
            .with_context(|| format!("HTTP session to {}", self.peer))?;
        self.closed = close;
        Ok(body)
    }

    /// Sets the read and write timeout of the connection (the lab default is
    /// [`IO_TIMEOUT`]); a failover test waits longer for TCP to retransmit.
    pub fn set_io_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// The client side's address (the connection's source).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.stream.local_addr().context("session address")
    }

    /// The address it is connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

/// Connects with the lab's timeouts; must run inside the namespace.
fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A GET on a new connection that asks the server to close it; must run inside the
/// namespace.
fn get_once(addr: SocketAddr) -> Result<String> {
    get_path(addr, "/")
}

fn get_path(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = connect(addr)?;
    let (body, _) = request(&mut stream, &mut Vec::new(), addr, path, true)?;
    Ok(body)
}

/// Sends a GET and reads the response; returns the trimmed body and whether the server
/// closes the connection. Non-200 answers are errors.
fn request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    addr: SocketAddr,
    path: &str,
    close: bool,
) -> Result<(String, bool)> {
    let connection = if close { "close" } else { "keep-alive" };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: {connection}\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .context("sending request")?;
    let mut give_up = || false;
    let head_len = http::read_head(stream, buf, &mut give_up)?
        .context("connection closed before a response")?;
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let status = head.split("\r\n").next().unwrap_or_default().to_owned();
    let server_closes = http::wants_close(&head);
    let length = http::content_length(&head)?;
    let body_end = match length {
        Some(len) => {
            http::read_to_len(stream, buf, head_len + len, &mut give_up)?;
            head_len + len
        }
        None => {
            // No length: the body runs to the end of the stream.
            while buf.len() <= head_len + http::MAX_BODY && http::fill(stream, buf, &mut give_up)? {
            }
            buf.len().min(head_len + http::MAX_BODY)
        }
    };
    let body = String::from_utf8_lossy(&buf[head_len..body_end])
        .trim()
        .to_owned();
    buf.drain(..body_end);
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("unexpected status {status:?} (body {body:?})");
    }
    Ok((body, server_closes || length.is_none()))
}
