//! Connection sync through the real maps and program (root): flows installed by address
//! (what a sync BACKUP does) are forwarded by the XDP program to the real server they were
//! on — a mid-connection ACK, no SYN, even while the service stands by (a BACKUP's) — after
//! it looks the route up; the snapshot (what a MASTER streams) lists them back.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::*;
use rvs_common::{ConnState, Verdict};
use rvs_dataplane::ConnInstall;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn config() -> String {
    let mut c = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n"
    );
    for (ip, _) in SEG_A.iter() {
        c += &format!("[[service.real]]\naddress = \"{ip}\"\n");
    }
    c
}

fn install(client: u16, real: usize) -> ConnInstall {
    ConnInstall {
        protocol: 6,
        client: SocketAddrV4::new(Ipv4Addr::new(198, 19, 1, 1), client),
        vip: SocketAddrV4::new(VIP, 80),
        real: SocketAddrV4::new(SEG_A[real].0, 80),
        state: ConnState::Established,
        timeout_secs: 900,
    }
}

#[test]
fn installed_flows_are_forwarded_to_their_real_server() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(), |dp, ifs| {
        // As a VRRP BACKUP: the VIP's new connections pass.
        dp.set_standby([VIP].into_iter().collect())
            .expect("standby");
        let mut other = install(40002, 0);
        other.vip = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 99), 80);
        let mut unknown_real = install(40003, 0);
        unknown_real.real = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 99), 80);
        let stats = dp.install_conns(&[install(40001, 1), other, unknown_real]);
        assert_eq!(
            (stats.installed, stats.no_service, stats.no_real),
            (1, 1, 1)
        );
        // Installing it again changes nothing (the entry is as fresh as the report).
        assert_eq!(dp.install_conns(&[install(40001, 1)]).fresh, 1);
        // A mid-connection packet of the synced flow goes to SEG_A[1], MAC from the FIB.
        let ack = tcp_frame(
            (Ipv4Addr::new(198, 19, 1, 1), 40001),
            (VIP, 80),
            Tcp::Ack,
            b"x",
        );
        let r = run(dp, &ack, ifs.a0);
        assert_eq!(r.action, XDP_TX);
        assert_eq!(r.frame, dr_rewritten(&ack, SEG_A[1].1, A0_MAC));
        // Any other ACK is not a known flow: passed, as IPVS does for non-SYNs.
        let stray = tcp_frame(
            (Ipv4Addr::new(198, 19, 1, 1), 40009),
            (VIP, 80),
            Tcp::Ack,
            b"x",
        );
        assert_eq!(run(dp, &stray, ifs.a0).action, XDP_PASS);
        let fwd = dp
            .verdicts()
            .expect("verdicts")
            .into_iter()
            .find(|(v, _)| *v == Verdict::FwdEstablished)
            .map(|(_, n)| n);
        assert_eq!(fwd, Some(1));
        // The snapshot lists it by address, with its state.
        let snap = dp.conn_snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].client.port(), 40001);
        assert_eq!(*snap[0].real.ip(), SEG_A[1].0);
        assert_eq!(snap[0].state, ConnState::Established);
    });
}
