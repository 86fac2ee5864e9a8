//! Shared fixtures for the dataplane's root tests: a namespace with links and static
//! neighbours for the kernel FIB, a private pin directory, and frame builders.
#![allow(dead_code, unused_imports)]

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use rvs_config::Config;
use rvs_dataplane::{Dataplane, testrun::XdpRun};

pub use rvs_lab::fib::{A0_MAC, B0_MAC, SEG_A, SEG_B, extra_real};

/// Client MAC used as the source of every input frame.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// XDP actions.
pub const XDP_DROP: u32 = 1;
/// XDP actions.
pub const XDP_PASS: u32 = 2;
/// XDP actions.
pub const XDP_TX: u32 = 3;
/// XDP actions.
pub const XDP_REDIRECT: u32 = 4;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The static-neighbour namespace plus a private bpffs pin directory removed on drop.
pub struct PacketEnv {
    pub fib: rvs_lab::FibNs,
    pub pin_dir: PathBuf,
}

impl PacketEnv {
    pub fn new() -> anyhow::Result<PacketEnv> {
        rvs_dataplane::ensure_bpffs()?;
        let fib = rvs_lab::FibNs::new()?;
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/rvs-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        Ok(PacketEnv { fib, pin_dir })
    }

    /// Loads a dataplane with `config` applied and runs `f` inside the namespace; the maps
    /// are unpinned afterwards.
    pub fn with_dataplane<T: Send>(
        &self,
        config: &str,
        f: impl FnOnce(&mut Dataplane, &Ifaces) -> T + Send,
    ) -> T {
        let config = Config::from_toml(config).expect("test config is valid");
        let pin_dir = self.pin_dir.clone();
        self.fib
            .ns()
            .run(move || {
                let mut dp = Dataplane::load(&pin_dir, config.limits).expect("load dataplane");
                dp.apply(&config).expect("apply config");
                let ifaces = Ifaces {
                    a0: nix::net::if_::if_nametoindex("a0").expect("a0"),
                    b0: nix::net::if_::if_nametoindex("b0").expect("b0"),
                };
                let out = f(&mut dp, &ifaces);
                drop(dp);
                // Each call starts from empty maps.
                rvs_dataplane::cleanup(&pin_dir).expect("unpin maps");
                out
            })
            .expect("run in namespace")
    }
}

impl Drop for PacketEnv {
    fn drop(&mut self) {
        if let Err(e) = rvs_dataplane::cleanup(&self.pin_dir) {
            eprintln!("cleanup of {}: {e}", self.pin_dir.display());
        }
    }
}

/// Interface indexes inside the packet namespace.
pub struct Ifaces {
    pub a0: u32,
    pub b0: u32,
}

/// Runs the balancer once on `frame` received on `ifindex`.
pub fn run(dp: &mut Dataplane, frame: &[u8], ifindex: u32) -> XdpRun {
    let prog = dp
        .xdp_program(rvs_common::programs::BALANCER)
        .expect("balancer program");
    rvs_dataplane::testrun::run_xdp(prog, frame, ifindex, 1).expect("BPF_PROG_TEST_RUN")
}

/// TCP flag sets used by the tests.
#[derive(Clone, Copy, Debug)]
pub enum Tcp {
    Syn,
    Ack,
    Fin,
    Rst,
    SynAck,
}

/// An Ethernet/IPv4/TCP frame from the client, with correct checksums.
pub fn tcp_frame(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: Tcp,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, A0_MAC)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 64240);
    let b = match flags {
        Tcp::Syn => b.syn(),
        Tcp::Ack => b.ack(1),
        Tcp::Fin => b.fin().ack(1),
        Tcp::Rst => b.rst(),
        Tcp::SynAck => b.syn().ack(1),
    };
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("build frame");
    out
}

/// An Ethernet/IPv4/TCP frame between any two MACs, with correct checksums.
pub fn tcp_frame_macs(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: Tcp,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = tcp_frame(src, dst, flags, payload);
    f[..6].copy_from_slice(&macs.1);
    f[6..12].copy_from_slice(&macs.0);
    f
}

/// An Ethernet/IPv4/UDP frame between any two MACs, with correct checksums.
pub fn udp_frame_macs(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut f = udp_frame(src, dst, payload);
    f[..6].copy_from_slice(&macs.1);
    f[6..12].copy_from_slice(&macs.0);
    f
}

/// An Ethernet/IPv4/UDP frame from the client, with correct checksums.
pub fn udp_frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, A0_MAC)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut out, payload)
        .expect("build frame");
    out
}

/// `frame` with its MAC header rewritten as direct routing must: towards `dmac`, from `smac`.
pub fn dr_rewritten(frame: &[u8], dmac: [u8; 6], smac: [u8; 6]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[..6].copy_from_slice(&dmac);
    out[6..12].copy_from_slice(&smac);
    out
}

/// Checks IPv4 header and TCP/UDP checksums with etherparse, an independent parser.
pub fn assert_checksums_ok(frame: &[u8]) {
    let p = SlicedPacket::from_ethernet(frame).expect("parsable frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4");
    };
    let header = ip.header().to_header();
    assert_eq!(
        header.calc_header_checksum(),
        header.header_checksum,
        "IPv4 header checksum"
    );
    match p.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let expected = tcp
                .to_header()
                .calc_checksum_ipv4(&header, tcp.payload())
                .expect("checksum");
            assert_eq!(expected, tcp.checksum(), "TCP checksum");
        }
        Some(TransportSlice::Udp(udp)) => {
            let expected = udp
                .to_header()
                .calc_checksum_ipv4(&header, udp.payload())
                .expect("checksum");
            assert_eq!(expected, udp.checksum(), "UDP checksum");
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

/// Whether the tests can run (root); prints why not.
pub fn root() -> bool {
    rvs_lab::root_or_skip("dataplane packet tests")
}
