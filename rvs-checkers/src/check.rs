//! The checkers: each runs one check of one real server on tokio and returns an
//! [`Outcome`]. They are plain async functions over sockets (no thread per check), so the
//! engine can keep thousands in flight; what a result means is the state machine's business.
//!
//! Semantics follow keepalived 2.2.7's checkers: TCP_CHECK connects; HTTP_GET/SSL_GET fetch
//! every `url` and compare the status code (ranges allowed) and the MD5 of the body;
//! MISC_CHECK runs a script (exit 0 up; with `misc_dynamic`, 2–255 up with weight
//! code − 2; killed at its timeout); DNS_CHECK expects a NOERROR answer to its query;
//! SMTP_CHECK expects a 220 banner and a 250 reply to HELO; UDP_CHECK fails on an ICMP
//! error (and, with `require_reply`, without a matching reply); PING_CHECK expects an ICMP
//! echo reply.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;

use rvs_health::model::{
    CheckKind, Checker, DnsCheck, HttpCheck, HttpVersion, MiscCheck, Script, SmtpCheck, TlsCheck,
    UdpCheck,
};
use rvs_health::state::Outcome;

/// Most bytes of an HTTP response read (status, headers and body); the digest is over what
/// was read, as keepalived's is bounded too.
pub const MAX_HTTP_RESPONSE: usize = 4 * 1024 * 1024;

/// Longest SMTP reply line accepted.
const MAX_SMTP_LINE: usize = 4096;

/// Shared state of the checkers: TLS client configurations, built once per CA file.
#[derive(Debug, Default)]
pub struct Checkers {
    tls: Mutex<HashMap<Option<PathBuf>, Arc<rustls::ClientConfig>>>,
}

impl Checkers {
    /// Fresh shared state.
    pub fn new() -> Checkers {
        Checkers::default()
    }

    /// Runs one check of `c`.
    pub async fn run(&self, c: &Checker) -> Outcome {
        match &c.kind {
            CheckKind::Tcp => match timeout(c.timeout, connect(c)).await {
                Ok(Ok(_)) => Outcome::Up,
                Ok(Err(e)) => Outcome::Down(format!("TCP connect to {}: {e}", c.target)),
                Err(_) => Outcome::Down(timed_out("TCP connect", c)),
            },
            CheckKind::Http(h) => self.http(c, h).await,
            CheckKind::Misc(m) => misc(c, m).await,
            CheckKind::Dns(d) => dns(c, d).await,
            CheckKind::Smtp(s) => match timeout(c.timeout, smtp(c, s)).await {
                Ok(r) => r,
                Err(_) => Outcome::Down(timed_out("SMTP dialogue", c)),
            },
            CheckKind::Udp(u) => udp(c, u).await,
            CheckKind::Ping => ping(c).await,
        }
    }

    fn tls_config(&self, tls: &TlsCheck) -> Result<Arc<rustls::ClientConfig>, String> {
        let key = tls.verify_ca.clone();
        if let Ok(cache) = self.tls.lock()
            && let Some(c) = cache.get(&key)
        {
            return Ok(c.clone());
        }
        let config = Arc::new(build_tls_config(tls.verify_ca.as_deref())?);
        if let Ok(mut cache) = self.tls.lock() {
            cache.insert(key, config.clone());
        }
        Ok(config)
    }

    async fn http(&self, c: &Checker, h: &HttpCheck) -> Outcome {
        let tls = match &h.tls {
            Some(t) => match self.tls_config(t) {
                Ok(cfg) => Some((cfg, t)),
                Err(e) => return Outcome::Down(e),
            },
            None => None,
        };
        for url in &h.urls {
            let host = url.virtualhost.clone().unwrap_or_else(|| host_of(c.target));
            let request = http_request(&url.path, &host, h.version);
            let fetch = async {
                let stream = connect(c)
                    .await
                    .map_err(|e| format!("connect to {}: {e}", c.target))?;
                match &tls {
                    None => exchange(stream, &request).await,
                    Some((cfg, t)) => {
                        let name = server_name(t.sni.as_deref(), c.target.ip())?;
                        let connector = tokio_rustls::TlsConnector::from(cfg.clone());
                        let tls_stream = connector
                            .connect(name, stream)
                            .await
                            .map_err(|e| format!("TLS handshake with {}: {e}", c.target))?;
                        exchange(tls_stream, &request).await
                    }
                }
            };
            let response = match timeout(c.timeout, fetch).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Outcome::Down(format!("{} {}: {e}", kind_name(h), url.path)),
                Err(_) => {
                    return Outcome::Down(timed_out(&format!("{} {}", kind_name(h), url.path), c));
                }
            };
            let Some((code, body)) = parse_http(&response) else {
                return Outcome::Down(format!(
                    "{} {}: not an HTTP response ({} bytes)",
                    kind_name(h),
                    url.path,
                    response.len()
                ));
            };
            if !url.accepts(code) {
                return Outcome::Down(format!(
                    "{} {}: status {code} is not accepted",
                    kind_name(h),
                    url.path
                ));
            }
            if let Some(want) = url.digest {
                let got: [u8; 16] = Md5::digest(body).into();
                if got != want {
                    return Outcome::Down(format!(
                        "{} {}: body digest {} differs from {}",
                        kind_name(h),
                        url.path,
                        hex(&got),
                        hex(&want)
                    ));
                }
            }
        }
        Outcome::Up
    }
}

fn kind_name(h: &HttpCheck) -> &'static str {
    if h.tls.is_some() {
        "SSL_GET"
    } else {
        "HTTP_GET"
    }
}

fn timed_out(what: &str, c: &Checker) -> String {
    format!("{what} to {} timed out after {:?}", c.target, c.timeout)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Host header for a target without a virtualhost.
fn host_of(target: SocketAddr) -> String {
    match target {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

fn http_request(path: &str, host: &str, version: HttpVersion) -> Vec<u8> {
    let (v, close) = match version {
        HttpVersion::Http10 => ("1.0", false),
        HttpVersion::Http10Close => ("1.0", true),
        HttpVersion::Http11 => ("1.1", true),
    };
    let mut r = format!("GET {path} HTTP/{v}\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\n");
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Sends `request` and reads the response until the server closes (bounded).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<Vec<u8>, String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut response = Vec::new();
    let mut limited = (&mut stream).take(MAX_HTTP_RESPONSE as u64);
    match limited.read_to_end(&mut response).await {
        Ok(_) => {}
        // A TLS server that closes without close_notify still sent a whole response.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(format!("reading the response: {e}")),
    }
    Ok(response)
}

/// The status code and body of an HTTP/1.x response.
fn parse_http(response: &[u8]) -> Option<(u16, &[u8])> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    let status = head.lines().next()?;
    let mut parts = status.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?.parse::<u16>().ok()?;
    Some((code, &response[end + 4..]))
}

fn server_name(
    sni: Option<&str>,
    ip: IpAddr,
) -> Result<rustls::pki_types::ServerName<'static>, String> {
    match sni {
        Some(name) => rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|e| format!("virtualhost {name:?} is not a valid TLS server name: {e}")),
        // An IP address as the server name: rustls then sends no SNI.
        None => Ok(rustls::pki_types::ServerName::IpAddress(ip.into())),
    }
}

fn build_tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = match ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "CA file {} holds no usable certificate",
                    path.display()
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// keepalived's SSL_GET does not verify the server's certificate unless a CA is given; this
/// verifier accepts any certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Applies `fwmark` and `bind_if` to a socket.
fn socket_options(sock: socket2::SockRef<'_>, c: &Checker) -> io::Result<()> {
    if let Some(mark) = c.fwmark {
        sock.set_mark(mark)?;
    }
    if let Some(dev) = &c.bind_if {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    Ok(())
}

/// The local address to bind, if `bindto`/`bind_port` ask for one.
fn local_addr(c: &Checker) -> Option<SocketAddr> {
    if c.bind_addr.is_none() && c.bind_port.is_none() {
        return None;
    }
    let ip = c.bind_addr.unwrap_or(match c.target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    Some(SocketAddr::new(ip, c.bind_port.unwrap_or(0)))
}

/// Opens a TCP connection to the checker's target with its socket options.
async fn connect(c: &Checker) -> io::Result<TcpStream> {
    let sock = match c.target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket_options(socket2::SockRef::from(&sock), c)?;
    if let Some(local) = local_addr(c) {
        if c.bind_port.is_some() {
            sock.set_reuseaddr(true)?;
        }
        sock.bind(local)?;
    }
    sock.connect(c.target).await
}

/// Opens a UDP socket connected to the checker's target.
async fn udp_socket(c: &Checker) -> io::Result<UdpSocket> {
    let local = local_addr(c).unwrap_or(match c.target {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    });
    let sock = UdpSocket::bind(local).await?;
    socket_options(socket2::SockRef::from(&sock), c)?;
    sock.connect(c.target).await?;
    Ok(sock)
}

async fn smtp(c: &Checker, s: &SmtpCheck) -> Outcome {
    let stream = match connect(c).await {
        Ok(s) => s,
        Err(e) => return Outcome::Down(format!("SMTP connect to {}: {e}", c.target)),
    };
    let mut stream = BufReader::new(stream);
    match smtp_reply(&mut stream).await {
        Ok(220) => {}
        Ok(code) => return Outcome::Down(format!("SMTP banner code {code}, expected 220")),
        Err(e) => return Outcome::Down(format!("SMTP banner: {e}")),
    }
    let helo = format!("HELO {}\r\n", s.helo_name);
    if let Err(e) = stream.get_mut().write_all(helo.as_bytes()).await {
        return Outcome::Down(format!("SMTP HELO: {e}"));
    }
    match smtp_reply(&mut stream).await {
        Ok(250) => {}
        Ok(code) => return Outcome::Down(format!("SMTP HELO answered {code}, expected 250")),
        Err(e) => return Outcome::Down(format!("SMTP HELO: {e}")),
    }
    // Be polite; the answer does not matter.
    let _ = stream.get_mut().write_all(b"QUIT\r\n").await;
    Outcome::Up
}

/// Reads one (possibly multi-line) SMTP reply and returns its code.
async fn smtp_reply<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Result<u16, String> {
    for _ in 0..100 {
        let mut line = String::new();
        let n = (&mut *r)
            .take(MAX_SMTP_LINE as u64)
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("malformed reply {:?}", line.trim_end()))?;
        // "250-..." continues, "250 ..." (or a bare code) ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
    Err("reply longer than 100 lines".into())
}

async fn udp(c: &Checker, u: &UdpCheck) -> Outcome {
    let sock = match udp_socket(c).await {
        Ok(s) => s,
        Err(e) => return Outcome::Down(format!("UDP socket to {}: {e}", c.target)),
    };
    let payload = u.payload.clone().unwrap_or_else(|| {
        let mut rng = fastrand::Rng::new();
        (0..16).map(|_| rng.u8(..)).collect()
    });
    if let Err(e) = sock.send(&payload).await {
        return Outcome::Down(format!("UDP send to {}: {e}", c.target));
    }
    let mut buf = vec![0u8; 65536];
    match timeout(c.timeout, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => {
            if !u.require_reply || u.reply_matches(&buf[..n]) {
                Outcome::Up
            } else {
                Outcome::Down(format!(
                    "UDP reply from {} ({n} bytes) does not match",
                    c.target
                ))
            }
        }
        // An ICMP error (port or host unreachable) is reported on the connected socket.
        Ok(Err(e)) => Outcome::Down(format!("UDP to {}: {e}", c.target)),
        Err(_) if u.require_reply => Outcome::Down(format!(
            "no UDP reply from {} within {:?}",
            c.target, c.timeout
        )),
        // No error within the time: keepalived counts the server as up.
        Err(_) => Outcome::Up,
    }
}

async fn dns(c: &Checker, d: &DnsCheck) -> Outcome {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    let name = match Name::from_ascii(&d.name) {
        Ok(n) => n,
        Err(e) => return Outcome::Down(format!("DNS name {:?}: {e}", d.name)),
    };
    let id = fastrand::u16(..);
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, RecordType::from(d.qtype.code())));
    let bytes = match msg.to_vec() {
        Ok(b) => b,
        Err(e) => return Outcome::Down(format!("DNS query: {e}")),
    };
    let exchange = async {
        let sock = udp_socket(c)
            .await
            .map_err(|e| format!("UDP socket: {e}"))?;
        sock.send(&bytes).await.map_err(|e| format!("send: {e}"))?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("receive: {e}"))?;
            // keepalived ignores replies that are not ours and keeps waiting.
            let Ok(reply) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if reply.id() != id || reply.message_type() != MessageType::Response {
                continue;
            }
            return Ok::<ResponseCode, String>(reply.response_code());
        }
    };
    match timeout(c.timeout, exchange).await {
        Ok(Ok(ResponseCode::NoError)) => Outcome::Up,
        Ok(Ok(rcode)) => Outcome::Down(format!(
            "DNS {} {} from {}: {rcode}",
            d.qtype.code(),
            d.name,
            c.target
        )),
        Ok(Err(e)) => Outcome::Down(format!("DNS to {}: {e}", c.target)),
        Err(_) => Outcome::Down(timed_out("DNS query", c)),
    }
}

async fn ping(c: &Checker) -> Outcome {
    let IpAddr::V4(ip) = c.target.ip() else {
        return Outcome::Down("PING_CHECK over IPv6 is not supported by rvs yet".into());
    };
    match timeout(c.timeout, ping_v4(c, ip)).await {
        Ok(Ok(())) => Outcome::Up,
        Ok(Err(e)) => Outcome::Down(format!("ICMP echo to {ip}: {e}")),
        Err(_) => Outcome::Down(format!(
            "no ICMP echo reply from {ip} within {:?}",
            c.timeout
        )),
    }
}

async fn ping_v4(c: &Checker, ip: Ipv4Addr) -> io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    // An unprivileged ICMP socket where ping_group_range allows it, else a raw one (root).
    let (sock, raw) = match Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)) {
        Ok(s) => (s, false),
        Err(_) => (
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?,
            true,
        ),
    };
    socket_options(socket2::SockRef::from(&sock), c)?;
    if let Some(local) = c.bind_addr {
        sock.bind(&SocketAddr::new(local, 0).into())?;
    }
    sock.set_nonblocking(true)?;
    sock.connect(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
    let sock = UdpSocket::from_std(std::net::UdpSocket::from(sock))?;
    let ident = fastrand::u16(..);
    let seq = fastrand::u16(..);
    let mut pkt = vec![8u8, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"rvs-health-ping!");
    let sum = rvs_common::csum::Sum::default().add(&pkt).checksum_be();
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    sock.send(&pkt).await?;
    let mut buf = [0u8; 1500];
    loop {
        let n = sock.recv(&mut buf).await?;
        let icmp = if raw {
            // Raw sockets hand over the IPv4 header too.
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            match buf.get(ihl..n) {
                Some(p) => p,
                None => continue,
            }
        } else {
            &buf[..n]
        };
        if icmp.len() < 8 || icmp[0] != 0 {
            continue;
        }
        let got_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
        let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
        // The kernel rewrites the identifier of unprivileged sockets; match on it only
        // for raw ones.
        if got_seq == seq && (!raw || got_id == ident) {
            return Ok(());
        }
    }
}

async fn misc(c: &Checker, m: &MiscCheck) -> Outcome {
    let mut cmd = match command(&m.script) {
        Ok(cmd) => cmd,
        Err(e) => return Outcome::Down(e),
    };
    let mut child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => return Outcome::Down(format!("cannot run {}: {e}", m.script)),
    };
    match timeout(c.timeout, child.wait()).await {
        Ok(Ok(status)) => match status.code() {
            Some(0) => Outcome::Up,
            Some(code) if m.dynamic && (2..=255).contains(&code) => {
                Outcome::UpWithWeight(code as u32 - 2)
            }
            Some(code) => Outcome::Down(format!("{} exited with {code}", m.script)),
            None => Outcome::Down(format!("{} was killed by a signal", m.script)),
        },
        Ok(Err(e)) => Outcome::Down(format!("waiting for {}: {e}", m.script)),
        Err(_) => {
            kill_group(&child);
            let _ = child.kill().await;
            Outcome::Down(format!(
                "{} did not finish within {:?}",
                m.script, c.timeout
            ))
        }
    }
}

/// Kills the process group a script leads (its children too, as keepalived does).
fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A command for `script`, in its own process group, as its user and group if it names
/// them, with no stdin and its output discarded.
pub fn command(script: &Script) -> Result<tokio::process::Command, String> {
    let (program, args) = script
        .argv
        .split_first()
        .ok_or_else(|| "empty script".to_owned())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = &script.user {
        let u = nix::unistd::User::from_name(user)
            .map_err(|e| format!("looking up user {user}: {e}"))?
            .ok_or_else(|| format!("no user {user} for {script}"))?;
        let gid = match &script.group {
            Some(g) => {
                nix::unistd::Group::from_name(g)
                    .map_err(|e| format!("looking up group {g}: {e}"))?
                    .ok_or_else(|| format!("no group {g} for {script}"))?
                    .gid
            }
            None => u.gid,
        };
        cmd.uid(u.uid.as_raw()).gid(gid.as_raw());
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_parsing_and_requests() {
        let r = b"HTTP/1.1 503 Busy\r\nA: b\r\n\r\nbody";
        assert_eq!(parse_http(r), Some((503, &b"body"[..])));
        assert_eq!(
            parse_http(b"HTTP/1.0 200 OK\r\n\r\n"),
            Some((200, &b""[..]))
        );
        assert_eq!(parse_http(b"SSH-2.0\r\n\r\n"), None);
        assert_eq!(parse_http(b"HTTP/1.0 200 OK\r\n"), None);
        assert_eq!(parse_http(b"HTTP/1.0 abc OK\r\n\r\n"), None);
        let req = http_request("/x", "h.example", HttpVersion::Http11);
        assert_eq!(req, b"GET /x HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nHost: h.example\r\nConnection: close\r\n\r\n");
        assert_eq!(
            host_of("198.18.0.1:8080".parse().unwrap()),
            "198.18.0.1:8080"
        );
    }
}
