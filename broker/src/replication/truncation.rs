//! Where a follower truncates its log before it fetches from a new leader: a pure decision
//! from the leader's answer to OffsetForLeaderEpoch and the follower's own leader epochs,
//! following Kafka's rules.
//!
//! The follower asks where its latest epoch ends in the leader's log. The leader answers with
//! the largest epoch it has at or below that one and where it ends. If the follower has that
//! same epoch, the logs agree up to the smaller of the two ends, and truncation there is
//! final. If the follower's nearest epoch is older, it truncates to the smaller end and asks
//! again about its new latest epoch; each round asks about an older epoch, so it ends.

use crate::storage::{EpochEndOffset, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};

/// What a follower does with the leader's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truncation {
    /// Truncate to this offset, then fetch from there.
    Final(i64),
    /// Truncate to this offset, then ask the leader about the new latest epoch.
    AskAgain(i64),
}

impl Truncation {
    /// The offset to truncate to.
    pub(crate) fn offset(self) -> i64 {
        match self {
            Truncation::Final(offset) | Truncation::AskAgain(offset) => offset,
        }
    }
}

/// The truncation for a follower whose log ends at `log_end_offset`, with high watermark
/// `high_watermark`, given the leader's `answer`; `local_end_for` answers OffsetForLeaderEpoch
/// against the follower's own log.
pub(crate) fn decide(
    answer: EpochEndOffset,
    log_end_offset: i64,
    high_watermark: i64,
    local_end_for: impl Fn(i32) -> EpochEndOffset,
) -> Truncation {
    if answer.leader_epoch == UNDEFINED_EPOCH || answer.end_offset == UNDEFINED_EPOCH_OFFSET {
        // The leader has no epoch this old: what both surely share is the high watermark.
        return Truncation::Final(high_watermark.min(log_end_offset));
    }
    let local = local_end_for(answer.leader_epoch);
    if local.leader_epoch == answer.leader_epoch {
        Truncation::Final(answer.end_offset.min(local.end_offset))
    } else if local.leader_epoch == UNDEFINED_EPOCH {
        // The follower knows no epoch that old (its older records were deleted).
        Truncation::Final(answer.end_offset.min(log_end_offset))
    } else {
        let offset = answer.end_offset.min(local.end_offset);
        if offset >= log_end_offset {
            Truncation::Final(log_end_offset)
        } else {
            Truncation::AskAgain(offset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::EpochEntry;

    /// OffsetForLeaderEpoch against a log with `epochs` (epoch, start) ending at `end`, as
    /// the leader-epoch cache answers it.
    fn end_for(epochs: &[(i32, i64)], end: i64) -> impl Fn(i32) -> EpochEndOffset + '_ {
        move |asked| {
            let entries: Vec<EpochEntry> = epochs
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect();
            match entries.iter().rposition(|e| e.epoch <= asked) {
                None => EpochEndOffset::UNDEFINED,
                Some(i) => EpochEndOffset {
                    leader_epoch: entries[i].epoch,
                    end_offset: entries.get(i + 1).map_or(end, |next| next.start_offset),
                },
            }
        }
    }

    #[test]
    fn a_follower_with_the_leaders_epoch_keeps_what_both_have() {
        // Leader: epoch 1 from 0, epoch 3 from 10, end 20. Follower: epoch 1 from 0, end 14
        // (it missed nothing, but wrote past the leader's epoch-1 end as epoch 1's leader).
        let leader = end_for(&[(1, 0), (3, 10)], 20);
        let follower = end_for(&[(1, 0)], 14);
        assert_eq!(decide(leader(1), 14, 8, follower), Truncation::Final(10));
    }

    #[test]
    fn a_follower_behind_the_leader_keeps_everything() {
        let leader = end_for(&[(1, 0), (3, 10)], 20);
        let follower = end_for(&[(1, 0), (3, 10)], 15);
        assert_eq!(decide(leader(3), 15, 12, follower), Truncation::Final(15));
    }

    #[test]
    fn an_epoch_the_leader_never_had_is_cut_at_the_leaders_older_epoch() {
        // The follower led epoch 2 briefly; the leader went from epoch 1 to 3.
        let leader = end_for(&[(1, 0), (3, 10)], 20);
        let follower = end_for(&[(1, 0), (2, 10)], 15);
        assert_eq!(decide(leader(2), 15, 10, follower), Truncation::Final(10));
    }

    #[test]
    fn an_older_common_epoch_takes_another_round() {
        // Leader: 1 from 0, 3 from 8. Follower: 1 from 0, 4 from 10, end 12. The follower
        // asks about 4; the leader answers (3, 20); the follower's nearest is epoch 1, which
        // it has up to 10, but the leader's epoch 1 ended at 8: it must ask about 1 again.
        let leader = end_for(&[(1, 0), (3, 8)], 20);
        let follower_epochs = [(1, 0), (4, 10)];
        let first = decide(leader(4), 12, 5, end_for(&follower_epochs, 12));
        assert_eq!(first, Truncation::AskAgain(10));
        let follower_epochs = [(1, 0)];
        let second = decide(leader(1), 10, 5, end_for(&follower_epochs, 10));
        assert_eq!(second, Truncation::Final(8));
    }

    #[test]
    fn a_leader_without_so_old_an_epoch_cuts_at_the_high_watermark() {
        let follower = end_for(&[(0, 0)], 30);
        assert_eq!(
            decide(EpochEndOffset::UNDEFINED, 30, 25, follower),
            Truncation::Final(25)
        );
    }

    #[test]
    fn a_follower_without_so_old_an_epoch_keeps_up_to_the_leaders_end() {
        let follower = end_for(&[(5, 100)], 120);
        let answer = EpochEndOffset {
            leader_epoch: 2,
            end_offset: 110,
        };
        assert_eq!(decide(answer, 120, 100, follower), Truncation::Final(110));
    }
}
