//! Shared fixtures for the dataplane's root tests: a namespace with links and static
//! neighbours for the kernel FIB, a private pin directory, and frame builders.
#![allow(dead_code)]

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use rvs_config::Config;
use rvs_dataplane::{Dataplane, testrun::XdpRun};
use rvs_lab::Netns;

/// MAC of the test namespace's `a0` link.
pub const A0_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xa0];
/// MAC of the test namespace's `b0` link.
pub const B0_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xb0];
/// Client MAC used as the source of every input frame.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Real servers on a0's segment (198.18.2.0/24) and their MACs.
pub const SEG_A: [(Ipv4Addr, [u8; 6]); 3] = [
    (Ipv4Addr::new(198, 18, 2, 11), [0x02, 0, 0, 0, 0x02, 0x0b]),
    (Ipv4Addr::new(198, 18, 2, 12), [0x02, 0, 0, 0, 0x02, 0x0c]),
    (Ipv4Addr::new(198, 18, 2, 13), [0x02, 0, 0, 0, 0x02, 0x0d]),
];
/// A real server on b0's segment (198.18.4.0/24).
pub const SEG_B: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(198, 18, 4, 21), [0x02, 0, 0, 0, 0x04, 0x15]);
/// Ten more real servers on a0's segment for the Maglev tests: 198.18.2.100..=109.
pub fn maglev_real(i: u8) -> (Ipv4Addr, [u8; 6]) {
    (Ipv4Addr::new(198, 18, 2, 100 + i), [0x02, 0, 0, 0, 0x03, i])
}

/// XDP actions.
pub const XDP_DROP: u32 = 1;
/// XDP actions.
pub const XDP_PASS: u32 = 2;
/// XDP actions.
pub const XDP_TX: u32 = 3;
/// XDP actions.
pub const XDP_REDIRECT: u32 = 4;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A namespace with two links whose neighbours are static, so the FIB lookup from XDP
/// gives known results, plus a private bpffs pin directory removed on drop.
pub struct PacketEnv {
    pub ns: Netns,
    pub pin_dir: PathBuf,
}

impl PacketEnv {
    pub fn new() -> anyhow::Result<PacketEnv> {
        let _ = rvs_lab::cleanup_stale();
        rvs_dataplane::ensure_bpffs()?;
        let prefix = rvs_lab::unique_prefix();
        let ns = Netns::new(&format!("{prefix}-pkt"))?;
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let (a0, b0) = (mac(A0_MAC), mac(B0_MAC));
        let mut cmds: Vec<Vec<String>> = vec![
            "ip link add a0 type veth peer name a1".into(),
            "ip link add b0 type veth peer name b1".into(),
            format!("ip link set a0 address {a0}"),
            format!("ip link set b0 address {b0}"),
            "ip link set a0 up".into(),
            "ip link set a1 up".into(),
            "ip link set b0 up".into(),
            "ip link set b1 up".into(),
            "ip addr add 198.18.2.1/24 dev a0".into(),
            "ip addr add 198.18.4.1/24 dev b0".into(),
        ]
        .into_iter()
        .map(|c: String| c.split(' ').map(String::from).collect())
        .collect();
        let mut neighbours: Vec<(Ipv4Addr, [u8; 6], &str)> =
            SEG_A.iter().map(|&(ip, m)| (ip, m, "a0")).collect();
        neighbours.push((SEG_B.0, SEG_B.1, "b0"));
        neighbours.extend((0..10).map(|i| {
            let (ip, m) = maglev_real(i);
            (ip, m, "a0")
        }));
        for (ip, m, dev) in neighbours {
            cmds.push(
                format!(
                    "ip neigh replace {ip} lladdr {} dev {dev} nud permanent",
                    mac(m)
                )
                .split(' ')
                .map(String::from)
                .collect(),
            );
        }
        for c in &cmds {
            let argv: Vec<&str> = c.iter().map(String::as_str).collect();
            ns.exec(&argv)?;
        }
        ns.sysctl("net.ipv4.conf.a0.forwarding", "1")?;
        ns.sysctl("net.ipv4.conf.b0.forwarding", "1")?;
        let pin_dir = PathBuf::from(format!(
            "/sys/fs/bpf/rvs-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        Ok(PacketEnv { ns, pin_dir })
    }

    /// Loads a dataplane with `config` applied and runs `f` inside the namespace.
    pub fn with_dataplane<T: Send>(
        &self,
        config: &str,
        f: impl FnOnce(&mut Dataplane, &Ifaces) -> T + Send,
    ) -> T {
        let config = Config::from_toml(config).expect("test config is valid");
        let pin_dir = self.pin_dir.clone();
        self.ns
            .run(move || {
                let mut dp = Dataplane::load(&pin_dir, config.limits).expect("load dataplane");
                dp.apply(&config).expect("apply config");
                let ifaces = Ifaces {
                    a0: nix::net::if_::if_nametoindex("a0").expect("a0"),
                    b0: nix::net::if_::if_nametoindex("b0").expect("b0"),
                };
                f(&mut dp, &ifaces)
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
    };
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("build frame");
    out
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
