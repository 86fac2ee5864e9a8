//! The traffic of `bench-compare`: one client generator and one set of responders, the same
//! for every load balancer, plus the CPU meter that prices what the balancer did.
//!
//! The lab's own responder (`rvs_lab::HttpResponder`) polls its listener every 10 ms and
//! starts a thread per connection: right for tests, but it would put 10 ms into every
//! latency figure and cap the connection rate. These are event-driven (tokio, one thread
//! each side) and speak just enough HTTP/1.1: a bodyless GET in, a fixed 200 with
//! Content-Length out, keep-alive unless the client goes away.
//!
//! Every workload is bounded in count and in time, and stops early on Ctrl-C.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rvs_lab::Netns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::interrupted;

/// The one request every client sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Longest wait for a connection to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait for one response.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest request or response head either side accepts.
const MAX_HEAD: usize = 4096;

/// Responders on port `port` of several namespaces, served by one thread; stopped on drop.
pub struct Responders {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Responders {
    /// Listens on `0.0.0.0:port` in every `(namespace, name)` and answers each GET with
    /// `name`.
    pub fn spawn(servers: &[(&Netns, String)], port: u16) -> Result<Responders> {
        let mut listeners = Vec::new();
        for (ns, name) in servers {
            let listener = ns
                .run(|| -> io::Result<std::net::TcpListener> {
                    let socket =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
                    socket.set_reuse_address(true)?;
                    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
                    // A deep backlog: the open-loop latency run may burst.
                    socket.listen(4096)?;
                    socket.set_nonblocking(true)?;
                    Ok(socket.into())
                })?
                .with_context(|| format!("responder {name}: listening on port {port}"))?;
            let body = format!("{name}\n");
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            listeners.push((listener, response.into_bytes()));
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("responder runtime")?;
        let thread = std::thread::Builder::new()
            .name("bench-responders".into())
            .spawn(move || {
                rt.block_on(async move {
                    for (listener, response) in listeners {
                        let Ok(listener) = TcpListener::from_std(listener) else {
                            tracing::error!("responder: cannot register a listener");
                            continue;
                        };
                        let response: Arc<[u8]> = response.into();
                        tokio::spawn(accept_loop(listener, response));
                    }
                    // Runs until told to stop (or the sender is dropped).
                    let _ = stopped.await;
                });
            })
            .context("starting the responder thread")?;
        Ok(Responders {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Responders {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("responder thread panicked");
        }
    }
}

async fn accept_loop(listener: TcpListener, response: Arc<[u8]>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let response = Arc::clone(&response);
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &response).await {
                        tracing::trace!(error = %e, "responder connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "responder accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Answers every complete request head on `stream` until the peer goes away.
async fn serve(mut stream: TcpStream, response: &[u8]) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = find_head_end(&buf) {
            buf.drain(..end);
            stream.write_all(response).await?;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too long",
            ));
        }
    }
}

/// The length of the head (through the blank line) at the start of `buf`, once complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The length of the complete response at the start of `buf`: `Ok(None)` while the head is
/// incomplete; an error for a head without Content-Length or a non-200 status.
fn response_len(buf: &[u8]) -> io::Result<Option<usize>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let Some(head_end) = find_head_end(buf) else {
        return if buf.len() > MAX_HEAD {
            Err(bad("response head too long"))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(bad("status is not 200"));
    }
    let length = head
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .ok_or_else(|| bad("response without Content-Length"))?;
    Ok(Some(head_end + length))
}

/// Where a generator connects, and from which of the client's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Path {
    /// Destination.
    pub to: SocketAddr,
    /// Source address (`None`: the route's).
    pub from: Option<std::net::Ipv4Addr>,
}

async fn connect(path: Path) -> io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(from) = path.from {
        socket.bind(SocketAddr::from((from, 0)))?;
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(path.to))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One request and its whole response on `stream`.
async fn exchange(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    stream.write_all(REQUEST).await?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(total) = response_len(buf)?
            && buf.len() >= total
        {
            return Ok(());
        }
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response timed out"))??;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Closes with an RST (SO_LINGER 0): tens of thousands of short connections then leave no
/// TIME_WAIT on either side, the same for every balancer.
fn abort(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// What a closed-loop workload did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Requests (or connections) completed.
    pub done: u64,
    /// Requests (or connections) that failed.
    pub failed: u64,
    /// Wall time of the workload.
    pub elapsed: Duration,
}

impl Outcome {
    /// Adds another run's counts and time.
    pub fn add(&mut self, other: &Outcome) {
        self.done += other.done;
        self.failed += other.failed;
        self.elapsed += other.elapsed;
    }
}

/// Runs `body` on a current-thread runtime on a thread inside `ns` (its sockets are the
/// namespace's).
fn in_ns<T: Send>(ns: &Netns, body: impl std::future::Future<Output = T> + Send) -> Result<T> {
    ns.run(|| -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("generator runtime")?;
        Ok(rt.block_on(body))
    })?
}

/// `requests` requests over `conns` keep-alive connections, as fast as they go, for at
/// most `limit`.
pub fn requests(
    ns: &Netns,
    addr: Path,
    conns: usize,
    requests: u64,
    limit: Duration,
) -> Result<Outcome> {
    in_ns(ns, async move {
        let started = Instant::now();
        let deadline = started + limit;
        let next = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let (next, failed) = (Arc::clone(&next), Arc::clone(&failed));
            tasks.spawn(async move {
                let mut done = 0u64;
                let mut stream = None;
                let mut buf = Vec::with_capacity(512);
                while Instant::now() < deadline
                    && !interrupted()
                    && next.fetch_add(1, Ordering::Relaxed) < requests
                {
                    if stream.is_none() {
                        stream = connect(addr).await.ok();
                    }
                    let ok = match stream.as_mut() {
                        Some(s) => exchange(s, &mut buf).await.is_ok(),
                        None => false,
                    };
                    if ok {
                        done += 1;
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        stream = None;
                    }
                }
                if let Some(s) = stream {
                    abort(s);
                }
                done
            });
        }
        let mut done = 0;
        while let Some(r) = tasks.join_next().await {
            done += r.unwrap_or(0);
        }
        Outcome {
            done,
            failed: failed.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        }
    })
}

/// `total` short connections (connect, one request, RST) with `parallel` in flight, for at
/// most `limit`.
pub fn connections(
    ns: &Netns,
    addr: Path,
    parallel: usize,
    total: u64,
    limit: Duration,
) -> Result<Outcome> {
    in_ns(ns, async move {
        let started = Instant::now();
        let deadline = started + limit;
        let next = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..parallel {
            let (next, failed) = (Arc::clone(&next), Arc::clone(&failed));
            tasks.spawn(async move {
                let mut done = 0u64;
                let mut buf = Vec::with_capacity(512);
                while Instant::now() < deadline
                    && !interrupted()
                    && next.fetch_add(1, Ordering::Relaxed) < total
                {
                    if one_connection(addr, &mut buf).await.is_ok() {
                        done += 1;
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done
            });
        }
        let mut done = 0;
        while let Some(r) = tasks.join_next().await {
            done += r.unwrap_or(0);
        }
        Outcome {
            done,
            failed: failed.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        }
    })
}

async fn one_connection(addr: Path, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut stream = connect(addr).await?;
    let r = exchange(&mut stream, buf).await;
    abort(stream);
    r
}

/// Latencies of new-connection requests (connect + GET + response) started open-loop at
/// `rate` per second for `duration` (at most 2 000 in flight), and how many failed.
pub fn latency(
    ns: &Netns,
    addr: Path,
    rate: u32,
    duration: Duration,
) -> Result<(Vec<Duration>, u64)> {
    if rate == 0 {
        bail!("the offered load must be positive");
    }
    in_ns(ns, async move {
        let count = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        let in_flight = Arc::new(tokio::sync::Semaphore::new(2000));
        let mut tasks = tokio::task::JoinSet::new();
        let mut refused = 0u64;
        for _ in 0..count {
            if interrupted() {
                break;
            }
            ticks.tick().await;
            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                refused += 1;
                continue;
            };
            tasks.spawn(async move {
                let _permit = permit;
                let started = Instant::now();
                let mut buf = Vec::with_capacity(512);
                one_connection(addr, &mut buf)
                    .await
                    .ok()
                    .map(|()| started.elapsed())
            });
        }
        let mut samples = Vec::with_capacity(count as usize);
        let mut failed = refused;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Some(d)) => samples.push(d),
                _ => failed += 1,
            }
        }
        samples.sort();
        (samples, failed)
    })
}

/// The `q`-quantile (0..=1) of sorted `samples`.
pub fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples.get(i).copied()
}

/// CPU time of the tasks that carry the lab's traffic: this process (generator and
/// responders, and the softirq work the kernel runs in their context), the balancer's own
/// processes, and the ksoftirqd threads (softirq work deferred out of those contexts).
///
/// This kernel has no IRQ time accounting, so a task's runtime includes the softirqs run in
/// its context: summing per-task runtimes counts every packet once. Other users' programs
/// on the machine are not in the sum.
pub struct CpuMeter {
    softirqd: Vec<u32>,
}

impl CpuMeter {
    /// Finds the ksoftirqd threads.
    pub fn new() -> Result<CpuMeter> {
        let mut softirqd = Vec::new();
        for entry in std::fs::read_dir("/proc").context("reading /proc")? {
            let entry = entry?;
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.starts_with("ksoftirqd/") {
                softirqd.push(pid);
            }
        }
        if softirqd.is_empty() {
            bail!("no ksoftirqd threads in /proc");
        }
        Ok(CpuMeter { softirqd })
    }

    /// The current CPU times of this process, of `pids` and of ksoftirqd.
    pub fn sample(&self, pids: &[u32]) -> Result<Cpu> {
        let own = process_cpu(None)?;
        let mut lb = Duration::ZERO;
        for &pid in pids {
            lb += process_cpu(Some(pid))?;
        }
        let mut softirqd = Duration::ZERO;
        for &pid in &self.softirqd {
            let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
                .with_context(|| format!("reading ksoftirqd {pid}'s schedstat"))?;
            let ns: u64 = text
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .context("bad schedstat")?;
            softirqd += Duration::from_nanos(ns);
        }
        Ok(Cpu { own, lb, softirqd })
    }
}

/// CPU times read by [`CpuMeter::sample`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// This process: generator, responders, and the softirqs run in their context.
    pub own: Duration,
    /// The balancer's processes.
    pub lb: Duration,
    /// The ksoftirqd threads.
    pub softirqd: Duration,
}

impl Cpu {
    /// The sum.
    pub fn total(&self) -> Duration {
        self.own + self.lb + self.softirqd
    }

    /// The change since `earlier`, part by part.
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            own: self.own.saturating_sub(earlier.own),
            lb: self.lb.saturating_sub(earlier.lb),
            softirqd: self.softirqd.saturating_sub(earlier.softirqd),
        }
    }
}

/// CPU time of the whole process `pid` (all threads, living and exited); `None` is this
/// process.
fn process_cpu(pid: Option<u32>) -> Result<Duration> {
    let mut clock: libc::clockid_t = libc::CLOCK_PROCESS_CPUTIME_ID;
    if let Some(pid) = pid {
        let raw = libc::pid_t::try_from(pid).context("pid out of range")?;
        // SAFETY: writes one clockid_t into `clock`, which outlives the call.
        let rc = unsafe { libc::clock_getcpuclockid(raw, &mut clock) };
        if rc != 0 {
            bail!(
                "clock_getcpuclockid({pid}): {}",
                io::Error::from_raw_os_error(rc)
            );
        }
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec into `ts`, which outlives the call.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error()).context("clock_gettime");
    }
    Ok(Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_length_needs_a_complete_200_head_with_length() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nrs1\n";
        assert_eq!(response_len(full).unwrap(), Some(full.len()));
        assert_eq!(response_len(&full[..20]).unwrap(), None);
        assert!(response_len(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n").is_err());
        assert!(response_len(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
    }

    #[test]
    fn quantiles_pick_ranks() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&s, 0.5), Some(Duration::from_millis(51)));
        assert_eq!(quantile(&s, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
