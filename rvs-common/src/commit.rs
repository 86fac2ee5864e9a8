//! Commit-or-nothing map writes: the commit word the XDP program reads, the journal a
//! batch leaves for recovery, and the pure rule that decides how a restarted rvsd
//! recovers from an interrupted batch (see docs/design/commit.md).
//!
//! The service map exists twice (`RVS_SERVICES`, `RVS_SERVICES_B`). The program looks a
//! service up in copy `epoch & 1`; a batch writes its adds, edits and deletes into the
//! other copy and then bumps `epoch` — one aligned 32-bit store, so every service touched
//! by the batch turns from old to new at the same instant. Real servers the batch
//! changes in place (weight, thresholds, a removed server's tombstone) are journaled
//! before and written just after the flip; new real servers and tables go to fresh ids
//! and slots that no visible service points at yet.

use crate::RealEntry;

/// The second copy of the service map (the first is [`crate::maps::SERVICES`]).
pub const SERVICES_B: &str = "RVS_SERVICES_B";
/// One-element mmapable array of [`CommitState`].
pub const COMMIT: &str = "RVS_COMMIT";
/// Mmapable array of [`JournalRecord`] (as many as real-server ids).
pub const JOURNAL: &str = "RVS_JOURNAL";

/// The commit word and the journal header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitState {
    /// Batches committed; the program reads services from copy `epoch & 1`.
    pub epoch: u32,
    /// The epoch the batch being written commits as; 0 when no batch is open.
    pub open: u32,
    /// Valid records in the journal while a batch is open.
    pub journal_len: u32,
    /// Explicit padding.
    pub pad: u32,
}

/// A real server the open batch writes: a new one (undone on roll-back) or a change to
/// one in use (redone on roll-forward).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalRecord {
    /// Real-server id.
    pub id: u32,
    /// `JOURNAL_*` kind.
    pub kind: u32,
    /// The entry the batch writes.
    pub entry: RealEntry,
}

/// A real server on an id no visible service uses: written before the flip.
pub const JOURNAL_FRESH: u32 = 1;
/// A change to a real server in use (weight, thresholds, method): written after the flip.
pub const JOURNAL_EDIT: u32 = 2;
/// A removed real server's tombstone (its generation bumped): written after the flip.
pub const JOURNAL_RETIRE: u32 = 3;

/// What a starting rvsd does with the batch the commit word says was open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No batch was open.
    Clean,
    /// The batch stopped before its flip: undo its new real servers; the visible copy is
    /// the old configuration.
    RollBack,
    /// The batch stopped after its flip: redo its journaled real-server writes.
    RollForward,
}

impl CommitState {
    /// The copy of the service map readers use (0 or 1).
    #[inline(always)]
    pub fn active(&self) -> u32 {
        self.epoch & 1
    }

    /// The epoch the next batch commits as: the other copy, never 0 (0 means "none open").
    pub fn next_epoch(&self) -> u32 {
        match self.epoch.wrapping_add(1) {
            0 => 2,
            n => n,
        }
    }

    /// How to finish what an interrupted writer left.
    pub fn recovery(&self) -> Recovery {
        if self.open == 0 {
            Recovery::Clean
        } else if self.epoch == self.open {
            Recovery::RollForward
        } else {
            Recovery::RollBack
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, plain integers with explicit padding.
    unsafe impl aya::Pod for CommitState {}
    // SAFETY: as above (RealEntry is Pod).
    unsafe impl aya::Pod for JournalRecord {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_follows_the_commit_word() {
        let clean = CommitState {
            epoch: 7,
            ..CommitState::default()
        };
        assert_eq!(clean.recovery(), Recovery::Clean);
        let before_flip = CommitState {
            epoch: 7,
            open: 8,
            journal_len: 3,
            pad: 0,
        };
        assert_eq!(before_flip.recovery(), Recovery::RollBack);
        assert_eq!(before_flip.active(), 1);
        let after_flip = CommitState {
            epoch: 8,
            ..before_flip
        };
        assert_eq!(after_flip.recovery(), Recovery::RollForward);
        assert_eq!(after_flip.active(), 0);
    }

    #[test]
    fn the_epoch_wraps_without_confusing_the_copies() {
        // open is never 0 for an open batch: the writer skips 0 when the epoch wraps,
        // landing on the other copy all the same.
        let last = CommitState {
            epoch: u32::MAX,
            ..CommitState::default()
        };
        assert_eq!(last.next_epoch(), 2);
        assert_ne!(last.active(), CommitState { epoch: 2, ..last }.active());
        let open = CommitState {
            open: last.next_epoch(),
            ..last
        };
        assert_eq!(open.recovery(), Recovery::RollBack);
        assert_eq!(
            CommitState { epoch: 2, ..open }.recovery(),
            Recovery::RollForward
        );
    }
}
