//! A one-namespace fixture for packet tests and benchmarks run through BPF_PROG_TEST_RUN:
//! two links with addresses and *static* neighbours, so the kernel FIB lookup an XDP
//! program makes gives known egress interfaces and MAC addresses.
//!
//! ```text
//!  a0 198.18.2.1/24 (02:00:00:00:00:a0)   neighbours 198.18.2.11-13, 198.18.2.100-109
//!  b0 198.18.4.1/24 (02:00:00:00:00:b0)   neighbour  198.18.4.21
//! ```

use std::net::Ipv4Addr;

use anyhow::Result;

use crate::netns::{Netns, cleanup_stale, unique_prefix};

/// MAC of the `a0` link.
pub const A0_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xa0];
/// MAC of the `b0` link.
pub const B0_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xb0];
/// Real servers on a0's segment (198.18.2.0/24) and their MACs.
pub const SEG_A: [(Ipv4Addr, [u8; 6]); 3] = [
    (Ipv4Addr::new(198, 18, 2, 11), [0x02, 0, 0, 0, 0x02, 0x0b]),
    (Ipv4Addr::new(198, 18, 2, 12), [0x02, 0, 0, 0, 0x02, 0x0c]),
    (Ipv4Addr::new(198, 18, 2, 13), [0x02, 0, 0, 0, 0x02, 0x0d]),
];
/// A real server on b0's segment (198.18.4.0/24).
pub const SEG_B: (Ipv4Addr, [u8; 6]) = (Ipv4Addr::new(198, 18, 4, 21), [0x02, 0, 0, 0, 0x04, 0x15]);
/// Number of extra real servers on a0's segment (see [`extra_real`]).
pub const EXTRA_REALS: u8 = 10;

/// Extra real server `i` (< [`EXTRA_REALS`]) on a0's segment: 198.18.2.(100+i).
pub fn extra_real(i: u8) -> (Ipv4Addr, [u8; 6]) {
    (Ipv4Addr::new(198, 18, 2, 100 + i), [0x02, 0, 0, 0, 0x03, i])
}

/// Formats a MAC address as `ip` expects it.
pub fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The namespace with links `a0` and `b0`; deleted on drop.
pub struct FibNs {
    ns: Netns,
}

impl FibNs {
    /// Creates the namespace, its links, addresses, static neighbours, and enables IPv4
    /// forwarding on the links (the XDP FIB lookup requires it).
    pub fn new() -> Result<FibNs> {
        let _ = cleanup_stale();
        let ns = Netns::new(&format!("{}-fib", unique_prefix()))?;
        let mut cmds: Vec<String> = vec![
            "ip link add a0 type veth peer name a1".into(),
            "ip link add b0 type veth peer name b1".into(),
            format!("ip link set a0 address {}", mac_string(A0_MAC)),
            format!("ip link set b0 address {}", mac_string(B0_MAC)),
        ];
        for dev in ["a0", "a1", "b0", "b1"] {
            cmds.push(format!("ip link set {dev} up"));
        }
        cmds.push("ip addr add 198.18.2.1/24 dev a0".into());
        cmds.push("ip addr add 198.18.4.1/24 dev b0".into());
        let mut neighbours: Vec<(Ipv4Addr, [u8; 6], &str)> =
            SEG_A.iter().map(|&(ip, m)| (ip, m, "a0")).collect();
        neighbours.push((SEG_B.0, SEG_B.1, "b0"));
        neighbours.extend((0..EXTRA_REALS).map(|i| {
            let (ip, m) = extra_real(i);
            (ip, m, "a0")
        }));
        for (ip, m, dev) in neighbours {
            cmds.push(format!(
                "ip neigh replace {ip} lladdr {} dev {dev} nud permanent",
                mac_string(m)
            ));
        }
        for c in &cmds {
            let argv: Vec<&str> = c.split(' ').collect();
            ns.exec(&argv)?;
        }
        ns.sysctl("net.ipv4.conf.a0.forwarding", "1")?;
        ns.sysctl("net.ipv4.conf.b0.forwarding", "1")?;
        Ok(FibNs { ns })
    }

    /// The namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }
}
