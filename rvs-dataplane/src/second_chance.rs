//! The second chance's table (sans-I/O): when an mh service's servers change, mid-flow
//! packets (no SYN, no connection entry) are scheduled for a while by a table that keeps
//! the previous table's choice wherever that server is still in the service, and takes the
//! new table's choice where it is gone. A flow opened before the change most likely lives
//! on the previous choice (another director placed it there by the same hash); see
//! docs/ecmp.md for when that guess is wrong.

use rvs_common::NO_REAL;

/// The mid-flow table: slot `i` is `previous[i]` when that server is still in the service
/// (`kept`), else `current[i]`. None when the tables differ in length (a new table size:
/// the hash positions do not correspond) or nothing would differ from `current`.
pub fn merged_table(
    previous: &[u32],
    current: &[u32],
    kept: impl Fn(u32) -> bool,
) -> Option<Vec<u32>> {
    if previous.len() != current.len() || current.is_empty() {
        return None;
    }
    let merged: Vec<u32> = previous
        .iter()
        .zip(current)
        .map(|(&p, &c)| if p != NO_REAL && kept(p) { p } else { c })
        .collect();
    (merged != current).then_some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_previous_choices_of_servers_that_stay() {
        // Servers 1, 2, 3 before; 4 added: the new table gives 4 some slots of each.
        let previous = [1, 2, 3, 1, 2, 3, 1, 2];
        let current = [1, 4, 3, 1, 2, 4, 4, 2];
        let merged = merged_table(&previous, &current, |_| true).expect("differs");
        assert_eq!(merged, previous);
    }

    #[test]
    fn a_removed_server_gives_way_to_the_current_table() {
        // Server 3 removed: its slots take the current choice, the rest the previous one.
        let previous = [1, 2, 3, 1, 2, 3];
        let current = [1, 2, 1, 2, 1, 2];
        let merged = merged_table(&previous, &current, |id| id != 3).expect("differs");
        assert_eq!(merged, [1, 2, 1, 1, 2, 2]);
    }

    #[test]
    fn empty_slots_and_sizes() {
        let merged = merged_table(&[NO_REAL, 2], &[1, 1], |_| true).expect("differs");
        assert_eq!(merged, [1, 2]);
        assert_eq!(merged_table(&[1, 2, 3], &[1, 2], |_| true), None, "sizes");
        assert_eq!(merged_table(&[1, 2], &[1, 2], |_| true), None, "same");
        assert_eq!(merged_table(&[], &[], |_| true), None);
    }
}
