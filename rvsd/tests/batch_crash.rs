//! A batch interrupted by a crash is never half live (issue 18, item 3): rvsd is
//! SIGKILLed while it writes a 60 000-service batch; the pinned maps, read back and run
//! through the real XDP program (BPF_PROG_TEST_RUN), hold none or all of it; a restarted
//! rvsd recovers and lists exactly what the maps forward. Then the same batch applied in
//! full survives a SIGKILL right after it and a restart whole.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use rvs_api::{Client, Op};
use rvs_common::{IPPROTO_TCP, ServiceKey};
use rvs_config::{Protocol, RealServer, VirtualService};
use rvs_dataplane::inspect::{PinnedView, pinned_service_keys};
use rvs_lab::{ChildGuard, Netns};

const SERVICES: u32 = 60_000;
const PORT: u16 = 80;
const XDP_PASS: u32 = 2;

fn vip(i: u32) -> Ipv4Addr {
    // 198.18.0.0/15 holds 131 072 addresses: one VIP per service from 198.18.0.0 up.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

fn batch() -> Vec<Op> {
    let mut ops = Vec::with_capacity(2 * SERVICES as usize);
    for i in 0..SERVICES {
        let service = VirtualService::new(Protocol::Tcp, vip(i), PORT);
        let id = service.id();
        ops.push(Op::AddService { service });
        ops.push(Op::AddReal {
            service: id,
            real: RealServer::new(Ipv4Addr::new(198, 19, 200, 1 + (i % 200) as u8)),
        });
    }
    ops
}

/// An Ethernet/IPv4/TCP SYN from a client to `dst`:PORT, checksums right.
fn syn(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xa0]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xc1]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = IPPROTO_TCP;
    ip[12..16].copy_from_slice(&Ipv4Addr::new(198, 19, 100, 7).octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = rvs_common::csum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_ne_bytes());
    let src = Ipv4Addr::new(198, 19, 100, 7).octets();
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, IPPROTO_TCP, 0, 20]);
    pseudo.extend_from_slice(tcp);
    let c = rvs_common::csum::checksum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_ne_bytes());
    f
}

/// What the pinned maps make of the batch: (services live in the copy the program reads,
/// services the program schedules a SYN for).
fn live_in_maps(pin: &Path) -> (usize, usize) {
    let mut view = PinnedView::open(pin).expect("open the pinned maps");
    let ours = |k: &ServiceKey| {
        let a = Ipv4Addr::from(k.vip.to_ne_bytes());
        (0..SERVICES).contains(&(u32::from(a).wrapping_sub(u32::from(vip(0)))))
    };
    let by_maps = view
        .live_services()
        .expect("services")
        .iter()
        .filter(|(k, _)| ours(k))
        .count();
    let mut by_packets = 0;
    for i in 0..SERVICES {
        let run = view.run(&syn(vip(i)), 0).expect("test run");
        // XDP_PASS: not a service (the program hands it to the kernel); a live service
        // schedules it and forwards (or drops it for want of a route in this namespace).
        if run.action != XDP_PASS {
            by_packets += 1;
        }
    }
    (by_maps, by_packets)
}

struct Lab {
    ns: Netns,
    pin: PathBuf,
    socket: PathBuf,
}

impl Lab {
    fn rvsd(&self) -> ChildGuard {
        let bin = env!("CARGO_BIN_EXE_rvsd");
        let pin = self.pin.display().to_string();
        let sock = self.socket.display().to_string();
        let mut child = self
            .ns
            .spawn(&[
                bin,
                "--pin-path",
                &pin,
                "--socket",
                &sock,
                "--metrics",
                "off",
            ])
            .expect("rvsd");
        child
            .wait_for_output("rvsd ready", 1, Duration::from_secs(60))
            .expect("rvsd ready");
        child
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = rvs_dataplane::cleanup(&self.pin);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn listed(socket: &Path) -> usize {
    runtime()
        .block_on(Client::new(socket).services())
        .expect("listing")
        .services
        .len()
}

#[test]
fn a_batch_killed_half_way_is_none_or_all_live_and_recovered_on_restart() {
    if !rvs_lab::root_or_skip("a_batch_killed_half_way_is_none_or_all_live") {
        return;
    }
    let prefix = rvs_lab::unique_prefix();
    let lab = Lab {
        ns: Netns::new(&format!("{prefix}-crash")).expect("netns"),
        pin: PathBuf::from(format!("/sys/fs/bpf/{prefix}-crash")),
        socket: std::env::temp_dir().join(format!("{prefix}-crash.sock")),
    };
    let mut rvsd = lab.rvsd();

    // The batch in flight; SIGKILL once the dataplane has written part of its services.
    let socket = lab.socket.clone();
    let sender =
        std::thread::spawn(move || runtime().block_on(Client::new(&socket).apply(batch())));
    let started = Instant::now();
    let mut seen = 0;
    while started.elapsed() < Duration::from_secs(60) {
        seen = pinned_service_keys(&lab.pin, 0, 2_000).max(pinned_service_keys(&lab.pin, 1, 2_000));
        if seen >= 1_000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    rvsd.signal(Signal::SIGKILL).expect("SIGKILL");
    let _ = rvsd.stop();
    let _ = sender.join();
    assert!(
        seen >= 1_000,
        "the batch was being written when rvsd was killed"
    );

    let (by_maps, by_packets) = live_in_maps(&lab.pin);
    assert!(
        by_maps == 0 || by_maps == SERVICES as usize,
        "{by_maps} of {SERVICES} services live in the maps after a SIGKILL mid-batch"
    );
    assert_eq!(
        by_packets, by_maps,
        "the program forwards what the maps hold"
    );

    // A restarted rvsd finishes the batch's journal and lists what the maps forward.
    let mut rvsd = lab.rvsd();
    let listing = listed(&lab.socket);
    let (by_maps_after, by_packets_after) = live_in_maps(&lab.pin);
    assert_eq!(listing, by_maps_after, "the listing is what the maps hold");
    assert_eq!(by_packets_after, by_maps_after);
    assert_eq!(by_maps_after, by_maps, "recovery keeps the committed state");
    let view = PinnedView::open(&lab.pin).expect("view");
    let word = view.commit_state().expect("commit word");
    assert_eq!(word.open, 0, "no batch left open after recovery");
    let mut a = view.services_copy(0).expect("copy 0");
    let mut b = view.services_copy(1).expect("copy 1");
    a.sort_by_key(|(_, e)| e.id);
    b.sort_by_key(|(_, e)| e.id);
    assert_eq!(a, b, "both copies equal after recovery");
    drop(view);

    // The whole batch, applied: all of it survives a SIGKILL and a restart.
    if by_maps_after == 0 {
        runtime()
            .block_on(Client::new(&lab.socket).apply(batch()))
            .expect("the batch applies");
    }
    rvsd.signal(Signal::SIGKILL).expect("SIGKILL");
    let _ = rvsd.stop();
    let (all, all_packets) = live_in_maps(&lab.pin);
    assert_eq!((all, all_packets), (SERVICES as usize, SERVICES as usize));
    let mut rvsd = lab.rvsd();
    assert_eq!(listed(&lab.socket), SERVICES as usize);
    let _ = rvsd.stop();
}
