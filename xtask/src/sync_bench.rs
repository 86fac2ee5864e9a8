//! `cargo xtask bench-sync`: connection sync throughput, with the real parts: rvs-sync's
//! codec and tracker, UDP multicast sockets over a veth pair in a namespace of its own,
//! and a real BPF connection table (rvs-dataplane, no interface attached).
//!
//! Measured in one run, each the median of a few rounds, as records (connections) per
//! second:
//! - MASTER: the tracker picking N new connections out of a snapshot, and packing them
//!   into messages of 1472 bytes (encode);
//! - BACKUP: decoding those messages (decode), and installing the connections into the
//!   BPF table (install), beside the baseline of writing the same entries straight into
//!   the map (raw insert) — the ratio is what the address→id mapping costs;
//! - end to end: a sender thread streams the messages over the veth, a receiver decodes
//!   and installs them (records installed per second; losses, if any, are shown);
//! - the MASTER's scan: reading the table back (conn_snapshot), what each periodic scan
//!   costs per table size;
//! - the MASTER's event path (phase 2): connections the XDP program opened (a SYN and an
//!   ACK each, through BPF_PROG_TEST_RUN) taken off the ring buffer, through the tracker
//!   and packed — records per second for that part alone (the packets are not timed).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use clap::Args;
use rvs_config::{Config, Limits, Protocol, RealServer, VirtualService};
use rvs_dataplane::{ConnInstall, Dataplane};
use rvs_lab::Netns;
use rvs_sync::{
    FlowState, LocalConn, Packer, Received, Receiver, Tracker,
    ipvs::{Forward, IPPROTO_TCP},
    master::StateTimeouts,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol as SockProto, SockAddr, Socket, Type};

/// Options of `cargo xtask bench-sync`.
#[derive(Args, Debug)]
pub struct SyncBenchArgs {
    /// Connections per round.
    #[arg(long, default_value_t = 200_000)]
    conns: u32,
    /// Rounds of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
const PORT: u16 = 8848;
const REALS: u8 = 10;

fn real(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 2, 11 + (i % u32::from(REALS)) as u8)
}

fn conns(n: u32) -> Vec<LocalConn> {
    (0..n)
        .map(|i| LocalConn {
            protocol: IPPROTO_TCP,
            client: SocketAddrV4::new(
                Ipv4Addr::new(198, 19, (i >> 16) as u8, (i >> 8) as u8),
                1024 + (i & 0xff) as u16 * 16,
            ),
            vip: SocketAddrV4::new(VIP, 80),
            real: SocketAddrV4::new(real(i), 80),
            forward: Forward::Dr,
            state: FlowState::Established,
            last_seen: 1,
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn installs(msgs: &[Vec<u8>]) -> Vec<ConnInstall> {
    let rx = Receiver::new(1);
    let mut out = Vec::new();
    for m in msgs {
        if let Received::Records { conns, .. } = rx.receive(m) {
            out.extend(conns.iter().map(|c| ConnInstall {
                protocol: c.protocol,
                client: c.client,
                vip: c.vip,
                real: c.real,
                state: rvs_common::ConnState::Established,
                timeout_secs: c.timeout,
            }));
        }
    }
    out
}

fn sockets(
    ifname: &str,
) -> Result<(
    std::net::UdpSocket,
    std::net::UdpSocket,
    std::net::UdpSocket,
)> {
    let index = |n: &str| -> Result<u32> {
        let c = std::ffi::CString::new(n)?;
        // SAFETY: NUL-terminated name.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        ensure!(i != 0, "no interface {n}");
        Ok(i)
    };
    let (a, b) = (index(ifname)?, index("sb")?);
    let dst = SocketAddrV4::new(GROUP, PORT);
    let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProto::UDP))?;
    send.bind_device(Some(ifname.as_bytes()))?;
    send.set_multicast_if_v4(&Ipv4Addr::new(198, 18, 9, 1))?;
    send.set_multicast_loop_v4(false)?;
    send.set_send_buffer_size(8 << 20)?;
    send.connect(&SockAddr::from(dst))?;
    let recv = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProto::UDP))?;
    recv.set_reuse_address(true)?;
    recv.bind_device(Some(b"sb"))?;
    recv.bind(&SockAddr::from(dst))?;
    recv.join_multicast_v4_n(&GROUP, &InterfaceIndexOrAddress::Index(b))?;
    force_rcvbuf(&recv, 64 << 20)?;
    recv.set_read_timeout(Some(Duration::from_millis(500)))?;
    // The sender's own control socket, to say "done".
    let ctl = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProto::UDP))?;
    ctl.bind_device(Some(ifname.as_bytes()))?;
    ctl.set_multicast_if_v4(&Ipv4Addr::new(198, 18, 9, 1))?;
    ctl.set_multicast_loop_v4(false)?;
    ctl.connect(&SockAddr::from(dst))?;
    let _ = a;
    Ok((send.into(), recv.into(), ctl.into()))
}

/// Runs the benchmark and prints its figures.
pub fn run(args: SyncBenchArgs) -> Result<()> {
    ensure!(
        args.conns >= 1000 && args.rounds >= 1,
        "--conns >= 1000 and --rounds >= 1"
    );
    let prefix = rvs_lab::unique_prefix();
    let ns = Netns::new(&format!("{prefix}-sync"))?;
    ns.exec(&[
        "ip", "link", "add", "sa", "type", "veth", "peer", "name", "sb",
    ])?;
    for (i, a) in [("sa", "198.18.9.1/24"), ("sb", "198.18.9.2/24")] {
        ns.exec(&["ip", "addr", "add", a, "dev", i])?;
        ns.exec(&["ip", "link", "set", i, "up"])?;
    }
    ns.exec(&["ip", "route", "add", "224.0.0.0/4", "dev", "sa"])?;
    // Both ends are in this namespace: sb must accept datagrams from a local source.
    for key in ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.sb.rp_filter"] {
        ns.sysctl(key, "0")?;
    }
    ns.sysctl("net.ipv4.conf.sb.accept_local", "1")?;
    let pin = PathBuf::from(format!("/sys/fs/bpf/{prefix}-sync"));
    rvs_dataplane::ensure_bpffs()?;
    let n = args.conns;
    let rounds = args.rounds;
    let result = ns.run(|| bench(&pin, n, rounds))?;
    let _ = rvs_dataplane::cleanup(&pin);
    result?;
    drop(ns);
    let fib = rvs_lab::FibNs::new()?;
    let pin = PathBuf::from(format!("/sys/fs/bpf/{prefix}-sync-events"));
    let result = fib.ns().run(|| event_path(&pin, n, rounds))?;
    let _ = rvs_dataplane::cleanup(&pin);
    result
}

/// Connections per pass of the event measurement: two events each, inside the ring.
const EVENT_PASS: u32 = 20_000;

/// The MASTER's event path: `n` connections opened by the program, their events drained,
/// tracked and packed; prints records per second for the drain + tracker + packer.
fn event_path(pin: &std::path::Path, n: u32, rounds: usize) -> Result<()> {
    use rvs_common::tcp::{TCP_ACK, TCP_SYN};
    let limits = Limits {
        connections: (n * 2).max(1 << 16),
        ..Limits::default()
    };
    let mut dp = Dataplane::load(pin, limits).context("loading the dataplane")?;
    let mut svc = VirtualService::new(Protocol::Tcp, VIP, 80);
    svc.reals = rvs_lab::fib::SEG_A
        .iter()
        .map(|(a, _)| RealServer::new(*a))
        .collect();
    dp.apply(&Config {
        limits,
        services: vec![svc],
        ..Config::default()
    })?;
    // SAFETY: NUL-terminated name; if_nametoindex only reads it.
    let a0 = unsafe { libc::if_nametoindex(c"a0".as_ptr()) };
    ensure!(a0 != 0, "no a0 link in the benchmark namespace");
    dp.set_sync_events(true)?;
    let mut rates = Vec::new();
    let mut sent = 0usize;
    for round in 0..rounds {
        clear(&mut dp)?;
        let mut tracker = Tracker::new(StateTimeouts::IPVS);
        let mut packer = Packer::new(1, 1472);
        let (mut records, mut busy) = (0usize, Duration::ZERO);
        for pass in 0..n.div_ceil(EVENT_PASS) {
            let first = pass * EVENT_PASS;
            let count = EVENT_PASS.min(n - first);
            for i in first..first + count {
                let client = (
                    Ipv4Addr::new(198, 19, (i >> 16) as u8 + 16 * round as u8, (i >> 8) as u8),
                    1024 + (i & 0xff) as u16 * 16,
                );
                for flags in [TCP_SYN, TCP_ACK] {
                    let frame = crate::bench::tcp_frame(client, (VIP, 80), flags);
                    let prog = dp.xdp_program(rvs_common::programs::BALANCER)?;
                    rvs_dataplane::testrun::run_xdp(prog, &frame, a0, 1)?;
                }
            }
            let t = Instant::now();
            loop {
                let views = dp.drain_sync_events(4096);
                if views.is_empty() {
                    break;
                }
                let now = rvs_dataplane::monotonic_coarse_ns();
                let local: Vec<LocalConn> = views
                    .iter()
                    .map(|v| LocalConn {
                        protocol: v.protocol,
                        client: v.client,
                        vip: v.vip,
                        real: v.real,
                        forward: Forward::Dr,
                        state: if v.state == rvs_common::ConnState::Established {
                            FlowState::Established
                        } else {
                            FlowState::SynRecv
                        },
                        last_seen: v.last_seen,
                    })
                    .collect();
                let recs = tracker.observe_events(now, local);
                records += recs.len();
                sent += packer.pack(&recs)?.len();
            }
            busy += t.elapsed();
        }
        ensure!(
            records == n as usize,
            "{records} records from the events of {n} connections"
        );
        rates.push(rate(records, busy));
    }
    ensure!(dp.sync_events_lost()? == 0, "the event ring overflowed");
    println!(
        "  master event path (ring, tracker, packer) {:>6.0} records/s  ({n} connections opened by the program per round, {sent} messages in {rounds} rounds)",
        median(rates)
    );
    Ok(())
}

fn bench(pin: &std::path::Path, n: u32, rounds: usize) -> Result<()> {
    let limits = Limits {
        connections: (n * 2).max(1 << 16),
        ..Limits::default()
    };
    let mut dp = Dataplane::load(pin, limits).context("loading the dataplane")?;
    let mut svc = VirtualService::new(Protocol::Tcp, VIP, 80);
    svc.reals = (0..u32::from(REALS))
        .map(|i| RealServer::new(real(i)))
        .collect();
    dp.apply(&Config {
        limits,
        services: vec![svc],
        ..Config::default()
    })?;
    let table = conns(n);
    let (mut enc, mut dec, mut inst, mut raw, mut e2e, mut scan) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut lost = 0usize;
    let mut msgs = Vec::new();
    for _ in 0..rounds {
        // Encode: the tracker finds every connection new, the packer fills messages.
        let t = Instant::now();
        let mut tracker = Tracker::new(StateTimeouts::IPVS);
        let recs = tracker.observe(2, table.iter().copied());
        msgs = Packer::new(1, 1472).pack(&recs)?;
        enc.push(rate(recs.len(), t.elapsed()));
        // Decode.
        let t = Instant::now();
        let ins = installs(&msgs);
        dec.push(rate(ins.len(), t.elapsed()));
        ensure!(ins.len() == n as usize, "decoded {} of {n}", ins.len());
        // Baseline: the same entries written straight into the map.
        clear(&mut dp)?;
        let entries = raw_entries(&dp, &ins);
        let t = Instant::now();
        for (k, v) in &entries {
            dp.conns_mut().insert(k, v, 0)?;
        }
        raw.push(rate(entries.len(), t.elapsed()));
        // Install through the sync mapping.
        clear(&mut dp)?;
        let t = Instant::now();
        let stats = dp.install_conns(&ins);
        inst.push(rate(stats.installed as usize, t.elapsed()));
        ensure!(stats.installed == u64::from(n), "installed {stats:?}");
        // The MASTER's scan of that table.
        let t = Instant::now();
        let seen = dp.conn_snapshot().len();
        scan.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(seen == n as usize, "snapshot saw {seen}");
        // End to end over the veth.
        clear(&mut dp)?;
        let (send, recv, ctl) = sockets("sa")?;
        let (installed, took) = std::thread::scope(|s| -> Result<(u64, Duration)> {
            let msgs = &msgs;
            let sender = s.spawn(move || -> Result<()> {
                for m in msgs {
                    // Back off on a full send buffer rather than drop.
                    while let Err(e) = send.send(m) {
                        ensure!(e.raw_os_error() == Some(libc::ENOBUFS), "send: {e}");
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
                ctl.send(b"done")?;
                Ok(())
            });
            let rx = Receiver::new(1);
            let mut buf = vec![0u8; 2048];
            let mut installed = 0u64;
            let mut batch = Vec::with_capacity(64);
            let t = Instant::now();
            let mut first: Option<Instant> = None;
            // Bounded: stops at "done", on a 0.5 s silence, or after 60 s.
            while t.elapsed() < Duration::from_secs(60) {
                let Ok(len) = recv.recv(&mut buf) else { break };
                first.get_or_insert_with(Instant::now);
                if &buf[..len] == b"done" {
                    break;
                }
                if let Received::Records { conns, .. } = rx.receive(&buf[..len]) {
                    batch.clear();
                    batch.extend(conns.iter().map(|c| ConnInstall {
                        protocol: c.protocol,
                        client: c.client,
                        vip: c.vip,
                        real: c.real,
                        state: rvs_common::ConnState::Established,
                        timeout_secs: c.timeout,
                    }));
                    installed += dp.install_conns(&batch).installed;
                }
            }
            sender
                .join()
                .map_err(|_| anyhow::anyhow!("sender panicked"))??;
            Ok((installed, first.map_or(Duration::ZERO, |f| f.elapsed())))
        })?;
        lost += n as usize - installed as usize;
        e2e.push(rate(installed as usize, took));
    }
    let (e, d, i, r, x, sc) = (
        median(enc),
        median(dec),
        median(inst),
        median(raw),
        median(e2e),
        median(scan),
    );
    println!("connection sync, {n} new established connections per round, median of {rounds}:");
    println!("  master encode (tracker + packer)   {:>12.0} records/s", e);
    println!("  backup decode                      {:>12.0} records/s", d);
    println!(
        "  backup install into the BPF table  {:>12.0} records/s  ({:.2}x the raw map insert, {:.0}/s)",
        i,
        r / i,
        r
    );
    println!(
        "  end to end over UDP multicast      {:>12.0} records/s  (target >= 100000; {lost} lost in {rounds} rounds)",
        x
    );
    println!(
        "  master scan of the table           {:>12.1} ms for {n} entries (every 5 s beside the event ring; 0.5 s without it)",
        sc
    );
    println!("  messages of 1472 bytes per round   {:>12}", msgs.len());
    Ok(())
}

fn clear(dp: &mut Dataplane) -> Result<()> {
    let keys: Vec<_> = dp.conns_mut().keys().filter_map(|k| k.ok()).collect();
    for k in keys {
        let _ = dp.conns_mut().remove(&k);
    }
    Ok(())
}

fn raw_entries(
    dp: &Dataplane,
    ins: &[ConnInstall],
) -> Vec<(rvs_common::FlowKey, rvs_common::ConnEntry)> {
    let sid = rvs_config::ServiceId {
        protocol: Protocol::Tcp,
        address: VIP,
        port: 80,
    };
    let planner = dp.planner();
    let service = planner.service_entry(&sid).map_or(0, |e| e.id);
    ins.iter()
        .map(|c| {
            let rid = planner.real_id(&sid, *c.real.ip(), 80).unwrap_or(0);
            (
                rvs_common::FlowKey {
                    src: u32::from_ne_bytes(c.client.ip().octets()),
                    dst: u32::from_ne_bytes(c.vip.ip().octets()),
                    sport: c.client.port().to_be(),
                    dport: 80u16.to_be(),
                    proto: 6,
                },
                rvs_common::ConnEntry {
                    last_seen: 1,
                    real: rid,
                    service,
                    state: 1,
                    ..Default::default()
                },
            )
        })
        .collect()
}

/// SO_RCVBUFFORCE (root): a receive buffer above net.core.rmem_max, without changing that
/// host-wide sysctl.
pub fn force_rcvbuf(sock: &Socket, bytes: i32) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and an int-sized option value.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    ensure!(
        rc == 0,
        "SO_RCVBUFFORCE: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
