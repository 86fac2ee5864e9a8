//! IPVS round robin (ip_vs_rr.c).

use crate::Dest;

/// One full cycle of IPVS `rr` from a fresh service, as indices into `dests` (list order,
/// newest first): every dest with a non-zero weight once, in list order.
///
/// ip_vs_rr.c keeps a cursor on the last server it chose, starting at the list head, and on
/// each new connection walks forward to the next server with weight > 0 (the kernel's
/// `weight > 0` test: 0 means quiesced). Adding a server does not move the cursor, so a service
/// that has not scheduled anything yet starts with the first server of the list. Empty when no
/// server has a weight (IPVS then reports "no destination available").
pub fn rr_ring(dests: &[Dest]) -> Vec<u32> {
    dests
        .iter()
        .enumerate()
        .filter(|(_, d)| d.weight > 0)
        .map(|(i, _)| i as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::dests;

    #[test]
    fn skips_quiesced_in_list_order() {
        assert_eq!(rr_ring(&dests(&[3, 0, 1, 5])), vec![0, 2, 3]);
        assert!(rr_ring(&dests(&[0, 0])).is_empty());
        assert!(rr_ring(&[]).is_empty());
    }
}
