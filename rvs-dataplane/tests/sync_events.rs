//! Connection events for the sync MASTER through the real program (root): with events on,
//! a SYN then an ACK yield exactly one new-connection event and one state change (to
//! ESTABLISHED) naming the flow and its real server; an established packet that changes
//! nothing yields none; with events off, nothing is written.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use common::*;
use rvs_common::ConnState;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);

fn config() -> String {
    let (ip, _) = SEG_A[0];
    format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}\"\nport = 80\nscheduler = \"rr\"\n[[service.real]]\naddress = \"{ip}\"\n"
    )
}

#[test]
fn a_syn_and_an_ack_make_one_new_and_one_established_event_only_when_asked() {
    if !root() {
        return;
    }
    let env = PacketEnv::new().expect("packet env");
    env.with_dataplane(&config(), |dp, ifs| {
        let syn = tcp_frame((CLIENT, 40001), (VIP, 80), Tcp::Syn, b"");
        let ack = tcp_frame((CLIENT, 40001), (VIP, 80), Tcp::Ack, b"");

        // Off (no sync MASTER): nothing is written.
        assert!(!dp.sync_events_on());
        assert_eq!(run(dp, &syn, ifs.a0).action, XDP_TX);
        assert_eq!(run(dp, &ack, ifs.a0).action, XDP_TX);
        assert!(dp.drain_sync_events(16).is_empty());

        // On: a new flow, then its state change; a second ACK changes nothing.
        dp.set_sync_events(true).expect("events on");
        let syn2 = tcp_frame((CLIENT, 40002), (VIP, 80), Tcp::Syn, b"");
        let ack2 = tcp_frame((CLIENT, 40002), (VIP, 80), Tcp::Ack, b"");
        assert_eq!(run(dp, &syn2, ifs.a0).action, XDP_TX);
        assert_eq!(run(dp, &ack2, ifs.a0).action, XDP_TX);
        assert_eq!(run(dp, &ack2, ifs.a0).action, XDP_TX);
        let events = dp.drain_sync_events(16);
        let states: Vec<ConnState> = events.iter().map(|e| e.state).collect();
        assert_eq!(states, [ConnState::SynRecv, ConnState::Established]);
        for e in &events {
            assert_eq!(e.client, SocketAddrV4::new(CLIENT, 40002));
            assert_eq!(e.vip, SocketAddrV4::new(VIP, 80));
            assert_eq!(e.real, SocketAddrV4::new(SEG_A[0].0, 80));
            assert_eq!(e.protocol, 6);
        }
        assert_eq!(dp.sync_events_lost().expect("lost"), 0);

        // Off again: the flag is the only switch.
        dp.set_sync_events(false).expect("events off");
        let syn3 = tcp_frame((CLIENT, 40003), (VIP, 80), Tcp::Syn, b"");
        assert_eq!(run(dp, &syn3, ifs.a0).action, XDP_TX);
        assert!(dp.drain_sync_events(16).is_empty());
    });
}
