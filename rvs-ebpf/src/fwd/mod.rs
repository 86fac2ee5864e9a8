//! Forwarding methods, as IPVS names them: direct routing (MAC rewrite), NAT (address and
//! port rewrite both ways, ICMP translation) and tunnelling (IPIP/GUE/GRE); plus the ICMP
//! fragmentation-needed answer all of them may give.

pub mod dr;
pub mod icmp;
pub mod nat;
pub mod tun;
