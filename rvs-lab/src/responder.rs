//! Tiny servers that name themselves, so a test sees which real server answered: an
//! HTTP/1.1 keep-alive responder and a UDP responder. Their sockets are made inside a
//! namespace; their threads poll a stop flag and are joined on drop.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt,
    sockopt,
};

use crate::http;
use crate::netns::Netns;

/// How often blocked threads wake up to look at their stop flag.
const POLL: Duration = Duration::from_millis(50);

/// How long an idle keep-alive connection is kept open by the HTTP responder.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Most connections the HTTP responder serves at a time; further ones are closed right away.
pub const HTTP_MAX_CONNECTIONS: usize = 512;

/// A thread with a stop flag; setting the flag and joining happen on drop.
#[derive(Debug)]
struct Worker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts `body` on a named thread, handing it the stop flag.
    fn start(name: String, body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(flag))
            .with_context(|| format!("cannot start thread {name}"))?;
        Ok(Worker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("responder thread panicked");
        }
    }
}

/// An HTTP/1.1 server answering every request with `200 OK` and the body `"<name>\n"`,
/// keeping connections alive unless asked to close; stopped on drop.
#[derive(Debug)]
pub struct HttpResponder {
    addr: SocketAddr,
    name: String,
    served: Arc<AtomicU64>,
    _worker: Worker,
}

impl HttpResponder {
    /// Listens on `addr` inside `ns` (port 0 picks one; `0.0.0.0` also serves a VIP held on
    /// `lo`) and serves in background threads.
    pub fn spawn(ns: &Netns, addr: SocketAddr, name: &str) -> Result<HttpResponder> {
        let listener = ns
            .run(|| -> io::Result<TcpListener> {
                let listener = TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })?
            .with_context(|| {
                format!(
                    "HTTP responder {name}: cannot listen on {addr} in {}",
                    ns.name()
                )
            })?;
        let local = listener.local_addr().context("listener address")?;
        let served = Arc::new(AtomicU64::new(0));
        let body = format!("{name}\n");
        let counter = Arc::clone(&served);
        let worker = Worker::start(format!("http-{name}"), move |stop| {
            accept_loop(&listener, &body, &counter, &stop);
        })?;
        tracing::debug!(netns = %ns.name(), %local, name, "HTTP responder up");
        Ok(HttpResponder {
            addr: local,
            name: name.to_owned(),
            served,
            _worker: worker,
        })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many requests it has answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// Accepts until `stop`, one thread per connection (at most [`HTTP_MAX_CONNECTIONS`]),
/// then joins the connection threads.
fn accept_loop(
    listener: &TcpListener,
    body: &str,
    served: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        conns.retain(|h| !h.is_finished());
        match listener.accept() {
            Ok((stream, peer)) => {
                if conns.len() >= HTTP_MAX_CONNECTIONS {
                    tracing::warn!(%peer, "too many connections; closing");
                    continue;
                }
                let (body, served, stop) = (body.to_owned(), Arc::clone(served), Arc::clone(stop));
                let spawned = thread::Builder::new()
                    .name("http-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_connection(stream, &body, &served, &stop) {
                            tracing::debug!(%peer, error = %format!("{e:#}"), "connection ended");
                        }
                    });
                match spawned {
                    Ok(handle) => conns.push(handle),
                    Err(e) => tracing::warn!(%peer, error = %e, "cannot start connection thread"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL / 5),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                thread::sleep(POLL);
            }
        }
    }
    for handle in conns {
        let _ = handle.join();
    }
}

/// Serves requests on one connection until the peer closes, asks to close, stays idle
/// for [`HTTP_IDLE_TIMEOUT`], or `stop` is set.
fn serve_connection(
    mut stream: TcpStream,
    body: &str,
    served: &AtomicU64,
    stop: &AtomicBool,
) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let idle_until = Instant::now() + HTTP_IDLE_TIMEOUT;
        let mut keep_waiting = || !stop.load(Ordering::Relaxed) && Instant::now() < idle_until;
        let head_len = match http::read_head(&mut stream, &mut buf, &mut keep_waiting) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(()),
            Err(e) => {
                if buf.len() > http::MAX_HEAD {
                    let _ = stream.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
                return Err(e);
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        let body_len = match http::content_length(&head) {
            Ok(len) => len.unwrap_or(0),
            Err(e) => {
                let _ = stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return Err(e);
            }
        };
        http::read_to_len(
            &mut stream,
            &mut buf,
            head_len + body_len,
            &mut keep_waiting,
        )?;
        buf.drain(..head_len + body_len);
        let close = http::wants_close(&head);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
            body.len(),
            if close { "close" } else { "keep-alive" },
        );
        stream
            .write_all(response.as_bytes())
            .context("writing response")?;
        served.fetch_add(1, Ordering::Relaxed);
        if close {
            let _ = stream.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
    }
}

/// A UDP server answering every datagram with its name, from the address the datagram
/// was sent to (so a VIP held on `lo` answers as the VIP); stopped on drop.
#[derive(Debug)]
pub struct UdpResponder {
    addr: SocketAddr,
    name: String,
    served: Arc<AtomicU64>,
    _worker: Worker,
}

impl UdpResponder {
    /// Binds `addr` inside `ns` (port 0 picks one) and answers in a background thread.
    pub fn spawn(ns: &Netns, addr: SocketAddr, name: &str) -> Result<UdpResponder> {
        let socket = ns
            .run(|| -> Result<UdpSocket> {
                let socket = UdpSocket::bind(addr)?;
                socket.set_read_timeout(Some(POLL))?;
                setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
                Ok(socket)
            })?
            .with_context(|| {
                format!("UDP responder {name}: cannot bind {addr} in {}", ns.name())
            })?;
        let local = socket.local_addr().context("socket address")?;
        let served = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&served);
        let reply = name.as_bytes().to_vec();
        let worker = Worker::start(format!("udp-{name}"), move |stop| {
            while !stop.load(Ordering::Relaxed) {
                match answer_one(&socket, &reply) {
                    Ok(true) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "UDP responder error");
                        thread::sleep(POLL);
                    }
                }
            }
        })?;
        tracing::debug!(netns = %ns.name(), %local, name, "UDP responder up");
        Ok(UdpResponder {
            addr: local,
            name: name.to_owned(),
            served,
            _worker: worker,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many datagrams it has answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// Waits up to [`POLL`] for one datagram and answers it from its destination address;
/// `Ok(false)` when none came.
fn answer_one(socket: &UdpSocket, reply: &[u8]) -> Result<bool> {
    let mut data = [0u8; 2048];
    let mut cmsg = nix::cmsg_space!(nix::libc::in_pktinfo);
    let mut iov = [io::IoSliceMut::new(&mut data)];
    let msg = match recvmsg::<SockaddrIn>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    ) {
        Ok(msg) => msg,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(false),
        Err(e) => return Err(e).context("recvmsg"),
    };
    let peer = msg.address.context("datagram without a source address")?;
    let local_dst = msg.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::Ipv4PacketInfo(info) => Some(info.ipi_addr),
        _ => None,
    });
    // Answer from the address the datagram was sent to (interface 0: routing chooses).
    let info = local_dst.map(|dst| nix::libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: dst,
        ipi_addr: nix::libc::in_addr { s_addr: 0 },
    });
    let cmsgs: Vec<ControlMessage<'_>> = info.iter().map(ControlMessage::Ipv4PacketInfo).collect();
    sendmsg(
        socket.as_raw_fd(),
        &[io::IoSlice::new(reply)],
        &cmsgs,
        MsgFlags::empty(),
        Some(&peer),
    )
    .context("sendmsg")?;
    Ok(true)
}
