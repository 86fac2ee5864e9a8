//! Byte fixtures from kernel IPVS (Debian 6.1, in ../shared/tools/ipvs-vm, recorded by
//! `vm/interop.sh`): what its master sync daemon sent, and what its backup daemon made of
//! rvs's messages (`ipvsadm -Lnc`).

use std::net::{IpAddr, Ipv4Addr};

use rvs_sync::interop::{self, hex, unhex};
use rvs_sync::ipvs::{self, FlowState};
use rvs_sync::wire::{Builder, Kind, MessageRepr};
use rvs_sync::{Received, Receiver};

const KERNEL_MASTER: &str = include_str!("fixtures/kernel_master.txt");
const RVS_TO_KERNEL: &str = include_str!("fixtures/rvs_to_kernel.txt");
const KERNEL_LNC: &str = include_str!("fixtures/kernel_lnc.txt");

fn kernel_messages() -> Vec<Vec<u8>> {
    KERNEL_MASTER
        .lines()
        .map(|l| unhex(l).expect("fixture is hex"))
        .collect()
}

fn a(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn decodes_every_kernel_message_whole() {
    let msgs = kernel_messages();
    assert_eq!(msgs.len(), 6);
    let mut total = 0;
    for m in &msgs {
        let r = MessageRepr::parse(m).expect("kernel message parses");
        assert_eq!(r.syncid, 7);
        assert_eq!(r.stopped, None, "every record decodes");
        let count = if r.kind == Kind::V1 { m[4] } else { m[0] };
        assert_eq!(r.conns.len(), usize::from(count));
        total += r.conns.len();
    }
    // 8 (4 TCP flows, 1 UDP, 3 copies of the persistence template: it is synced with each
    // sync of the connection it controls), 2 state changes, 45 flows in 3 messages (the
    // kernel's 2 s flush cut them, not maxlen), the v0 pair.
    assert_eq!(total, 8 + 2 + 19 + 18 + 8 + 2);
}

#[test]
fn kernel_records_field_by_field() {
    let msgs = kernel_messages();
    let first = MessageRepr::parse(&msgs[0]).unwrap();
    assert_eq!(first.kind, Kind::V1);
    let c = &first.conns[0];
    assert_eq!(c.protocol, ipvs::IPPROTO_TCP);
    assert_eq!(c.flags, ipvs::CONN_F_DROUTE | ipvs::CONN_F_NOOUTPUT);
    assert_eq!(c.state, ipvs::tcp::ESTABLISHED);
    assert_eq!((c.caddr, c.cport), (a("198.18.100.10"), 40000));
    assert_eq!((c.vaddr, c.vport), (a("198.18.0.10"), 80));
    assert_eq!((c.daddr, c.dport), (a("198.18.200.11"), 80));
    assert_eq!((c.timeout, c.fwmark), (900, 0));
    // The persistence template follows its connection: TCP, port 0 client,
    // TEMPLATE|INACTIVE|NOOUTPUT|DR, state NONE then ASSURED, timeout = persistence (300).
    let t = first
        .conns
        .iter()
        .find(|c| c.is_template())
        .expect("a template");
    assert_eq!(
        t.flags,
        ipvs::CONN_F_TEMPLATE | ipvs::CONN_F_INACTIVE | ipvs::CONN_F_NOOUTPUT | ipvs::CONN_F_DROUTE
    );
    assert_eq!(
        (t.caddr, t.cport, t.vport, t.timeout),
        (a("198.18.100.12"), 0, 80, 300)
    );
    // NAT: forwarding bits 0 (MASQ), no NOOUTPUT.
    let nat = first
        .conns
        .iter()
        .find(|c| c.vaddr == a("198.18.0.30"))
        .expect("NAT conn");
    assert_eq!(nat.flags, ipvs::CONN_F_MASQ);
    assert_eq!((nat.daddr, nat.dport), (a("198.18.200.13"), 8080));
    // UDP: state 0, INACTIVE, 300 s.
    let udp = first
        .conns
        .iter()
        .find(|c| c.protocol == ipvs::IPPROTO_UDP)
        .expect("UDP");
    assert_eq!(
        udp.flags,
        ipvs::CONN_F_INACTIVE | ipvs::CONN_F_NOOUTPUT | ipvs::CONN_F_DROUTE
    );
    assert_eq!((udp.state, udp.timeout), (0, 300));
    // The FIN and the RST: sent at once, INACTIVE, with their states' timeouts.
    let second = MessageRepr::parse(&msgs[1]).unwrap();
    let states: Vec<_> = second
        .conns
        .iter()
        .map(|c| (c.cport, c.state, c.timeout))
        .collect();
    assert_eq!(
        states,
        vec![
            (40000, ipvs::tcp::FIN_WAIT, 120),
            (40001, ipvs::tcp::CLOSE, 10)
        ]
    );
}

#[test]
fn version_0_from_the_kernel() {
    let msgs = kernel_messages();
    let v0 = MessageRepr::parse(msgs.last().unwrap()).unwrap();
    assert_eq!(v0.kind, Kind::V0);
    let got: Vec<_> = v0
        .conns
        .iter()
        .map(|c| (c.protocol, c.caddr, c.cport, c.state, c.timeout))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                ipvs::IPPROTO_TCP,
                a("198.18.100.15"),
                40005,
                ipvs::tcp::ESTABLISHED,
                0
            ),
            (ipvs::IPPROTO_UDP, a("198.18.100.16"), 5354, 0, 0),
        ]
    );
    // A backup gives v0 records their state's default timeout.
    let Received::Records {
        conns, version: 0, ..
    } = Receiver::new(7).receive(msgs.last().unwrap())
    else {
        panic!("v0 records expected");
    };
    assert_eq!(
        conns.iter().map(|c| c.timeout).collect::<Vec<_>>(),
        vec![900, 300]
    );
}

#[test]
fn rvs_reencodes_kernel_messages_byte_for_byte() {
    for m in kernel_messages() {
        let r = MessageRepr::parse(&m).unwrap();
        if r.kind != Kind::V1 {
            continue;
        }
        let mut b = Builder::new(r.syncid, 1472);
        for c in &r.conns {
            assert_eq!(b.push(c).unwrap(), None, "the kernel's message fits");
        }
        assert_eq!(hex(&b.finish().unwrap()), hex(&m));
    }
}

#[test]
fn a_backup_installs_kernel_records() {
    let rx = Receiver::new(7);
    let Received::Records {
        conns,
        templates,
        skipped,
        ..
    } = rx.receive(&kernel_messages()[0])
    else {
        panic!("records expected");
    };
    assert!(skipped.is_empty());
    assert_eq!(templates.len(), 3);
    assert_eq!(templates[0].client, Ipv4Addr::new(198, 18, 100, 12));
    assert!(conns.iter().all(|c| c.timeout > 0));
    assert_eq!(conns[0].state, FlowState::Established);
    assert_eq!(
        rx.receive(&kernel_messages()[0]),
        rx.receive(&kernel_messages()[0])
    );
    assert_eq!(
        Receiver::new(8).receive(&kernel_messages()[0]),
        Received::OtherSyncId(7)
    );
}

#[test]
fn rvs_messages_are_the_ones_the_kernel_installed() {
    let ours: Vec<String> = interop::rvs_messages().iter().map(|m| hex(m)).collect();
    let recorded: Vec<&str> = RVS_TO_KERNEL.lines().collect();
    assert_eq!(
        ours, recorded,
        "the encoder still emits what the kernel was given"
    );
    // ipvsadm -Lnc on the kernel backup lists each flow with its state.
    let mut flows = interop::flows();
    flows.push(rvs_sync::LocalConn {
        client: "198.18.101.6:41006".parse().unwrap(),
        ..flows[0]
    });
    for f in flows {
        let state = match f.state {
            FlowState::Udp => "UDP",
            s => ipvs::tcp::NAMES[s.ipvs_state() as usize],
        };
        let line = KERNEL_LNC
            .lines()
            .find(|l| {
                l.contains(&format!(" {} ", f.client)) || l.contains(&format!(" {}", f.client))
            })
            .unwrap_or_else(|| panic!("the kernel backup installed {}", f.client));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols[0],
            if f.protocol == ipvs::IPPROTO_TCP {
                "TCP"
            } else {
                "UDP"
            }
        );
        assert_eq!(cols[2], state, "{line}");
        assert_eq!(cols[4], f.vip.to_string());
        assert_eq!(cols[5], f.real.to_string());
    }
}

#[test]
fn templates_encode_as_the_kernel_sends_them() {
    // Every template record the kernel sent re-encodes from rvs's template, byte for byte.
    let mut n = 0;
    for m in kernel_messages() {
        let msg = MessageRepr::parse(&m).expect("kernel message parses");
        if msg.kind != Kind::V1 {
            continue;
        }
        for t in msg.conns.iter().filter(|c| c.is_template()) {
            let (IpAddr::V4(client), IpAddr::V4(vip), IpAddr::V4(real)) =
                (t.caddr, t.vaddr, t.daddr)
            else {
                panic!("an IPv4 template");
            };
            let ours = rvs_sync::LocalTemplate {
                protocol: t.protocol,
                client,
                vip: std::net::SocketAddrV4::new(vip, t.vport),
                real: std::net::SocketAddrV4::new(real, t.dport),
                forward: ipvs::Forward::from_flags(t.flags).expect("a method"),
                timeout: t.timeout,
                last_seen: 0,
            }
            .repr(t.state == ipvs::CTPL_ASSURED);
            assert_eq!(&ours, t);
            let mut mine = Builder::new(msg.syncid, 1472);
            assert!(mine.push(&ours).expect("fits").is_none());
            let bytes = mine.finish().expect("a message");
            let again = MessageRepr::parse(&bytes).expect("ours parses");
            assert_eq!(again.conns[0], *t);
            n += 1;
        }
    }
    assert_eq!(n, 3, "the kernel sent its template three times");
}
