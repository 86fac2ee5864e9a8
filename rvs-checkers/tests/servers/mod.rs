//! Real servers the checker tests break and heal: HTTP (200, 500, hang, close, another
//! body), HTTPS with a self-signed certificate, DNS, SMTP, UDP echo and plain TCP. Each
//! runs on std threads over sockets made in a namespace, polls a stop flag, and is joined
//! on drop; its behaviour is switched through an atomic mode.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often server threads look at their stop flag.
const POLL: Duration = Duration::from_millis(20);

/// What a server does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Serve normally.
    Ok = 0,
    /// HTTP 500 / SMTP 554 banner / DNS SERVFAIL.
    Fail = 1,
    /// Accept and never answer.
    Hang = 2,
    /// Accept and close at once.
    Close = 3,
    /// HTTP 200 with another body.
    OtherBody = 4,
    /// Not listening at all (UDP/TCP: the socket is closed, so ICMP/RST answer).
    Off = 5,
}

/// A server thread with its mode and stop flag.
pub struct Server {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// TLS: the server names clients asked for (SNI), in order.
    pub sni_seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn current(m: &AtomicU8) -> Mode {
    match m.load(Ordering::SeqCst) {
        0 => Mode::Ok,
        1 => Mode::Fail,
        2 => Mode::Hang,
        3 => Mode::Close,
        4 => Mode::OtherBody,
        _ => Mode::Off,
    }
}

pub const BODY: &[u8] = b"hello from the real server\n";
pub const OTHER_BODY: &[u8] = b"something else entirely\n";

fn http_response(m: Mode) -> Vec<u8> {
    let (status, body) = match m {
        Mode::Fail => ("500 Internal Server Error", &b"oops\n"[..]),
        Mode::OtherBody => ("200 OK", OTHER_BODY),
        _ => ("200 OK", BODY),
    };
    let mut r = format!(
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Reads a request head (to the blank line), bounded.
fn read_head(s: &mut impl Read) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while buf.len() < 8192 {
        match s.read(&mut byte) {
            Ok(1) => {
                buf.push(byte[0]);
                if buf.ends_with(b"\r\n\r\n") {
                    return true;
                }
            }
            _ => return false,
        }
    }
    false
}

/// Serves one accepted connection in the given mode (may block until the stop flag).
type Serve = Arc<dyn Fn(TcpStream, Mode, &AtomicBool) + Send + Sync>;

/// Accepts on `listener` until stopped, handing each connection to `serve` on its own
/// thread (connections that hang are kept until the stop flag).
fn accept_loop(
    listener: TcpListener,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    serve: Serve,
) -> JoinHandle<()> {
    listener.set_nonblocking(true).expect("nonblocking");
    thread::spawn(move || {
        let mut conns = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let m = current(&mode);
                    let stop = stop.clone();
                    let serve = serve.clone();
                    conns.push(thread::spawn(move || serve(s, m, &stop)));
                }
                Err(_) => thread::sleep(POLL),
            }
            conns.retain(|c: &JoinHandle<()>| !c.is_finished());
        }
        for c in conns {
            let _ = c.join();
        }
    })
}

fn hang(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(POLL);
    }
}

fn server(
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
) -> Server {
    Server {
        addr,
        mode,
        stop,
        threads,
        sni_seen: Arc::new(Mutex::new(Vec::new())),
    }
}

/// An HTTP/1.0 server on `listener`.
pub fn http(listener: TcpListener) -> Server {
    let addr = listener.local_addr().expect("addr");
    let (m, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let t = accept_loop(
        listener,
        m.clone(),
        stop.clone(),
        Arc::new(|mut s: TcpStream, m: Mode, stop: &AtomicBool| match m {
            Mode::Hang => hang(stop),
            Mode::Close | Mode::Off => drop(s),
            _ => {
                if read_head(&mut s) {
                    let _ = s.write_all(&http_response(m));
                }
            }
        }),
    );
    server(addr, m, stop, vec![t])
}

/// An HTTPS server on `listener` with certificate `cert`/`key` (DER); it records the SNI.
pub fn https(listener: TcpListener, cert: Vec<u8>, key: Vec<u8>) -> Server {
    let addr = listener.local_addr().expect("addr");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .expect("server cert");
    let config = Arc::new(config);
    let (m, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = sni.clone();
    let t = accept_loop(
        listener,
        m.clone(),
        stop.clone(),
        Arc::new(move |s: TcpStream, m: Mode, stop: &AtomicBool| {
            if m == Mode::Hang {
                return hang(stop);
            }
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, s);
            if read_head(&mut tls) {
                seen.lock()
                    .unwrap()
                    .push(tls.conn.server_name().map(str::to_owned));
                let _ = tls.write_all(&http_response(m));
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }),
    );
    let mut s = server(addr, m, stop, vec![t]);
    s.sni_seen = sni;
    s
}

/// An SMTP server that greets (220, or 554 when failing) and answers HELO with 250.
pub fn smtp(listener: TcpListener) -> Server {
    let addr = listener.local_addr().expect("addr");
    let (m, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let t = accept_loop(
        listener,
        m.clone(),
        stop.clone(),
        Arc::new(|mut s: TcpStream, m: Mode, stop: &AtomicBool| match m {
            Mode::Hang => hang(stop),
            Mode::Fail => {
                let _ = s.write_all(b"554 no service here\r\n");
            }
            Mode::Ok => {
                let _ = s.write_all(b"220-smtp.example ESMTP\r\n220 ready\r\n");
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while s.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                    line.push(byte[0]);
                    if line.ends_with(b"\r\n") {
                        break;
                    }
                }
                if line.starts_with(b"HELO ") {
                    let _ = s.write_all(b"250 pleased to meet you\r\n");
                    let _ = s.read(&mut [0u8; 64]);
                }
            }
            _ => drop(s),
        }),
    );
    server(addr, m, stop, vec![t])
}

/// A plain TCP listener that can be closed (`Off`) and reopened on the same port.
pub fn tcp(listener: TcpListener) -> Server {
    let addr = listener.local_addr().expect("addr");
    let (m, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let (m2, stop2) = (m.clone(), stop.clone());
    listener.set_nonblocking(true).expect("nonblocking");
    let t = thread::spawn(move || {
        let mut l = Some(listener);
        while !stop2.load(Ordering::SeqCst) {
            match (current(&m2), &l) {
                (Mode::Off, Some(_)) => l = None,
                (Mode::Off, None) => {}
                (_, None) => {
                    // Reopen in the same namespace: this thread was started there.
                    if let Ok(n) = TcpListener::bind(addr) {
                        let _ = n.set_nonblocking(true);
                        l = Some(n);
                    }
                }
                (_, Some(listener)) => {
                    while let Ok((s, _)) = listener.accept() {
                        drop(s);
                    }
                }
            }
            thread::sleep(POLL);
        }
    });
    server(addr, m, stop, vec![t])
}

/// A UDP echo server; `Off` closes the socket (the kernel then answers port unreachable).
pub fn udp_echo(sock: UdpSocket) -> Server {
    let addr = sock.local_addr().expect("addr");
    let (m, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let (m2, stop2) = (m.clone(), stop.clone());
    let t = thread::spawn(move || {
        let mut s = Some(sock);
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::SeqCst) {
            match (current(&m2), &s) {
                (Mode::Off, Some(_)) => s = None,
                (Mode::Off, None) => thread::sleep(POLL),
                (_, None) => {
                    s = UdpSocket::bind(addr).ok();
                    thread::sleep(POLL);
                }
                (_, Some(sock)) => {
                    let _ = sock.set_read_timeout(Some(POLL));
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
            }
        }
    });
    server(addr, m, stop, vec![t])
}

/// A DNS server answering A queries for any name with 198.18.9.9 (NOERROR), or SERVFAIL
/// when failing, or nothing when hanging.
pub fn dns(sock: UdpSocket) -> Server {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{RData, Record, rdata::A};
    let addr = sock.local_addr().expect("addr");
    let (m, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let (m2, stop2) = (m.clone(), stop.clone());
    sock.set_read_timeout(Some(POLL)).expect("timeout");
    let t = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mode = current(&m2);
            if mode == Mode::Hang {
                continue;
            }
            let mut reply = Message::new();
            reply
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_recursion_desired(query.recursion_desired());
            for q in query.queries() {
                reply.add_query(q.clone());
                if mode == Mode::Ok {
                    reply.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A::new(198, 18, 9, 9)),
                    ));
                }
            }
            reply.set_response_code(if mode == Mode::Ok {
                ResponseCode::NoError
            } else {
                ResponseCode::ServFail
            });
            if let Ok(bytes) = reply.to_vec() {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
    server(addr, m, stop, vec![t])
}
