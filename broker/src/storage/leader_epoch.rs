//! The leader-epoch cache of a log: for each leader epoch that wrote to it, the offset where
//! that epoch's records start (Kafka's `LeaderEpochFileCache`). A follower asks where its
//! last epoch ends on the leader and truncates what follows; a consumer checks its position
//! after a leader change the same way (OffsetForLeaderEpoch).
//!
//! ```text
//!  offsets:  0 ........ 120 ........ 377 ........ log end
//!  epochs:   [ epoch 0  ][ epoch 2   ][ epoch 5 ...]      entries (0, 0) (2, 120) (5, 377)
//!  end offset for epoch 2 = 377; for 3 or 4 = (2, 377); for 5 = the log end offset
//! ```
//!
//! Invariants (held by [`LeaderEpochCache`], whose methods are pure):
//! - Epochs strictly increase, and so do start offsets.
//! - No entry starts at or past the log end, except one a new leader records at the log end
//!   before its first append (Kafka does the same).
//! - The first entry starts at or after the log start offset once the log start moved.
//!
//! The cache is kept in `leader-epoch-checkpoint` in the log's directory, replaced atomically
//! (see [`super::checkpoint`]) each time it changes, before the log end moves past the change.
//! The payload is Kafka's text format: a version line (0), a count line, then `epoch offset`
//! lines. At open, [`load`] checks it against the log and rebuilds it from the batch headers
//! of the segments where it is missing, damaged, or disagrees.

use std::path::Path;
use std::sync::Arc;

use super::checkpoint::{read_checkpoint, write_checkpoint};
use super::error::Result;
use super::segment::Segment;

/// The file, in the log's directory.
pub(crate) const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// The version of the framed checkpoint (see [`super::checkpoint`]).
const CHECKPOINT_VERSION: u16 = 1;
/// The version line of the payload, Kafka's.
const PAYLOAD_VERSION: &str = "0";

/// The epoch returned when no epoch answers a query (Kafka's `UNDEFINED_EPOCH`).
pub const UNDEFINED_EPOCH: i32 = -1;
/// The offset returned when no epoch answers a query (Kafka's `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// A leader epoch and the offset of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The offset of the first record written in it.
    pub start_offset: i64,
}

/// Where the records of a leader epoch end: the answer to OffsetForLeaderEpoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The largest epoch at or below the one asked for ([`UNDEFINED_EPOCH`] if none).
    pub leader_epoch: i32,
    /// The offset after its last record: the next epoch's start, or the log end offset for
    /// the latest epoch ([`UNDEFINED_EPOCH_OFFSET`] if none).
    pub end_offset: i64,
}

impl EpochEndOffset {
    /// No epoch answers the query.
    pub const UNDEFINED: EpochEndOffset = EpochEndOffset {
        leader_epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_EPOCH_OFFSET,
    };
}

/// The (epoch, start offset) entries of a log. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry.
    pub(crate) fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`, as Kafka's `assign` does: nothing
    /// changes if `epoch` is the latest and starts no later; otherwise entries of this epoch
    /// or later, or starting at or after `start_offset`, are replaced by the new one. Negative
    /// epochs (batches written without one) are ignored. Returns whether anything changed.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if let Some(latest) = self.latest()
            && latest.epoch == epoch
            && latest.start_offset <= start_offset
        {
            return false;
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Removes the entries starting at or after `end_offset`, after the log was truncated
    /// there. Returns whether anything changed.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Drops the entries wholly below `start_offset` and moves the one in effect there to
    /// start at it, after the log start offset moved. Returns whether anything changed.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if below == 0 {
            return false;
        }
        let in_effect = self.entries[below - 1];
        if below == 1 && in_effect.start_offset == start_offset {
            return false;
        }
        self.entries.drain(..below - 1);
        self.entries[0].start_offset = start_offset;
        true
    }

    /// Removes every entry (the log was emptied and starts afresh).
    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Where `epoch` ends in a log ending at `log_end_offset`, as Kafka's `endOffsetFor`
    /// answers: the latest epoch ends at the log end; an earlier one at the start of the
    /// next epoch above it, reported with the largest epoch at or below it (or with itself if
    /// it precedes every entry, since that history was removed from the log); an epoch
    /// beyond the latest, or any epoch of an empty cache, is undefined.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> EpochEndOffset {
        let Some(latest) = self.latest() else {
            return EpochEndOffset::UNDEFINED;
        };
        if epoch == UNDEFINED_EPOCH {
            return EpochEndOffset::UNDEFINED;
        }
        if epoch == latest.epoch {
            return EpochEndOffset {
                leader_epoch: epoch,
                end_offset: log_end_offset,
            };
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let Some(next) = self.entries.get(higher) else {
            return EpochEndOffset::UNDEFINED;
        };
        let leader_epoch = match higher {
            0 => epoch,
            _ => self.entries[higher - 1].epoch,
        };
        EpochEndOffset {
            leader_epoch,
            end_offset: next.start_offset,
        }
    }

    /// The epoch of the last record of a log ending at `log_end_offset`: that of the last
    /// entry starting below it (a newer one at the log end has written nothing yet).
    pub(crate) fn written_epoch(&self, log_end_offset: i64) -> Option<i32> {
        self.epoch_for_offset(log_end_offset - 1)
    }

    /// The epoch in effect at `offset`: that of the last entry starting at or before it.
    pub(crate) fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let at_or_before = self.entries.partition_point(|e| e.start_offset <= offset);
        at_or_before
            .checked_sub(1)
            .map(|index| self.entries[index].epoch)
    }

    /// The start offset of `epoch`, if it has an entry.
    pub(crate) fn start_offset_of(&self, epoch: i32) -> Option<i64> {
        self.entries
            .iter()
            .find(|e| e.epoch == epoch)
            .map(|e| e.start_offset)
    }

    /// The checkpoint payload: Kafka's text format.
    fn encode(&self) -> String {
        let mut text = format!("{PAYLOAD_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text
    }

    /// Parses a checkpoint payload; the reason it is unusable otherwise.
    fn decode(payload: &[u8]) -> Result<LeaderEpochCache, String> {
        let text = std::str::from_utf8(payload).map_err(|e| format!("not text: {e}"))?;
        let mut lines = text.lines();
        let version = lines.next().ok_or("it is empty")?;
        if version != PAYLOAD_VERSION {
            return Err(format!("version {version:?}, expected {PAYLOAD_VERSION}"));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or("the entry count is missing or not a number")?;
        let mut cache = LeaderEpochCache::default();
        for (index, line) in lines.enumerate() {
            let parsed = line
                .split_once(' ')
                .and_then(|(e, o)| Some((e.parse().ok()?, o.parse().ok()?)));
            let Some((epoch, start_offset)) = parsed else {
                return Err(format!(
                    "entry {} is not \"epoch offset\": {line:?}",
                    index + 1
                ));
            };
            let entry = EpochEntry {
                epoch,
                start_offset,
            };
            let follows = cache
                .latest()
                .is_none_or(|l| l.epoch < epoch && l.start_offset < start_offset);
            if epoch < 0 || start_offset < 0 || !follows {
                return Err(format!(
                    "entry {} ({epoch} {start_offset}) does not follow the one before",
                    index + 1
                ));
            }
            cache.entries.push(entry);
        }
        if cache.entries.len() != count {
            let found = cache.entries.len();
            return Err(format!("{found} entries, the count says {count}"));
        }
        Ok(cache)
    }
}

/// Writes `cache` to the checkpoint file of the log in `dir`, atomically and durably.
pub(crate) fn persist(dir: &Path, cache: &LeaderEpochCache) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    write_checkpoint(&path, CHECKPOINT_VERSION, cache.encode().as_bytes())
}

/// The cache of the log in `dir` after recovery: the checkpoint, cut to the log's offsets,
/// checked against the last batch and completed from the batch headers where it lags; rebuilt
/// from every batch header if it is missing, damaged or contradicts the log. Writes the file
/// if the result differs from it.
pub(crate) fn load(
    dir: &Path,
    segments: &[Arc<Segment>],
    log_start_offset: i64,
    log_end_offset: i64,
) -> Result<LeaderEpochCache> {
    let path = dir.join(CHECKPOINT_FILE);
    let read = read_checkpoint(&path, CHECKPOINT_VERSION);
    let missing = matches!(read, Ok(None));
    let stored = match read {
        Ok(Some(payload)) => LeaderEpochCache::decode(&payload).map_err(|reason| {
            tracing::warn!(path = %path.display(), %reason,
                "the leader-epoch checkpoint is unusable; rebuilding it from the log");
        }),
        Ok(None) => Err(()),
        Err(error) => {
            tracing::warn!(%error, "rebuilding the leader-epoch checkpoint from the log");
            Err(())
        }
    };
    let mut cache = match stored.clone() {
        Ok(mut cache) => {
            cache.truncate_from_end(log_end_offset);
            cache.truncate_from_start(log_start_offset);
            complete(&mut cache, dir, segments, log_start_offset)?;
            cache
        }
        Err(()) => rebuild(segments, log_start_offset)?,
    };
    cache.truncate_from_start(log_start_offset);
    // A new log has no file until its first epoch.
    let unchanged = stored.as_ref() == Ok(&cache) || (missing && cache.entries.is_empty());
    if !unchanged {
        persist(dir, &cache)?;
    }
    Ok(cache)
}

/// Checks `cache` against the last batch of the log, and completes it from the segments if
/// newer epochs wrote batches it does not know (a crash before the checkpoint was written);
/// rebuilds it if it contradicts the log.
fn complete(
    cache: &mut LeaderEpochCache,
    dir: &Path,
    segments: &[Arc<Segment>],
    log_start_offset: i64,
) -> Result<()> {
    let mut last = None;
    for segment in segments.iter().rev() {
        if let Some(header) = segment.last_batch()? {
            last = Some(header);
            break;
        }
    }
    let Some(last) = last.filter(|h| h.partition_leader_epoch >= 0) else {
        return Ok(());
    };
    let last_epoch = last.partition_leader_epoch;
    let known = cache.epoch_for_offset(last.base_offset);
    if known == Some(last_epoch) {
        return Ok(());
    }
    if known.is_some_and(|epoch| epoch > last_epoch)
        || cache.latest().is_some_and(|l| l.epoch > last_epoch)
    {
        tracing::warn!(dir = %dir.display(), last_epoch, ?known,
            "the leader-epoch checkpoint contradicts the log; rebuilding it");
        *cache = rebuild(segments, log_start_offset)?;
        return Ok(());
    }
    // Epochs only grow, so segments whose last batch is of a known epoch hold no new one.
    let latest = cache.latest().map_or(-1, |l| l.epoch);
    let mut first_new = segments.len();
    for (index, segment) in segments.iter().enumerate() {
        let last_epoch = segment.last_batch()?.map(|h| h.partition_leader_epoch);
        if last_epoch.is_some_and(|epoch| epoch > latest) {
            first_new = index;
            break;
        }
    }
    tracing::info!(dir = %dir.display(), "completing the leader-epoch checkpoint from the log");
    assign_from(cache, &segments[first_new..], log_start_offset)
}

/// The cache of the batches of `segments` at or after `log_start_offset`.
fn rebuild(segments: &[Arc<Segment>], log_start_offset: i64) -> Result<LeaderEpochCache> {
    let mut cache = LeaderEpochCache::default();
    assign_from(&mut cache, segments, log_start_offset)?;
    Ok(cache)
}

/// Assigns the epoch of every batch of `segments` that ends at or after `log_start_offset`.
fn assign_from(
    cache: &mut LeaderEpochCache,
    segments: &[Arc<Segment>],
    log_start_offset: i64,
) -> Result<()> {
    for segment in segments {
        if segment.next_offset() <= log_start_offset {
            continue;
        }
        for item in segment.headers_from(0) {
            let (_, header) = item?;
            if header.last_offset() >= log_start_offset {
                cache.assign(header.partition_leader_epoch, header.base_offset);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache {
            entries: entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        }
    }

    /// Applies `change` to a cache of `before`; checks whether it reports a change and what
    /// is left.
    fn check(
        before: &[(i32, i64)],
        change: impl FnOnce(&mut LeaderEpochCache) -> bool,
        changed: bool,
        after: &[(i32, i64)],
    ) {
        let mut c = cache(before);
        assert_eq!(change(&mut c), changed, "{before:?} reports a change");
        assert_eq!(c, cache(after), "{before:?}");
    }

    #[test]
    fn assign_appends_new_epochs_and_replaces_what_they_contradict() {
        check(&[], |c| c.assign(0, 0), true, &[(0, 0)]);
        check(&[(0, 0)], |c| c.assign(0, 10), false, &[(0, 0)]);
        check(&[(0, 0)], |c| c.assign(2, 10), true, &[(0, 0), (2, 10)]);
        check(&[(0, 5)], |c| c.assign(0, 3), true, &[(0, 3)]);
        // A new leader's entry at the log end is replaced by the next one there.
        check(
            &[(0, 0), (2, 10)],
            |c| c.assign(3, 10),
            true,
            &[(0, 0), (3, 10)],
        );
        // An older epoch removes what it contradicts, as in Kafka.
        check(
            &[(0, 0), (2, 10)],
            |c| c.assign(1, 20),
            true,
            &[(0, 0), (1, 20)],
        );
        check(&[(1, 0)], |c| c.assign(-1, 5), false, &[(1, 0)]);
    }

    #[test]
    fn truncation_from_either_end() {
        let entries = [(0, 0), (2, 10), (5, 20)];
        check(&entries, |c| c.truncate_from_end(25), false, &entries);
        check(
            &entries,
            |c| c.truncate_from_end(20),
            true,
            &[(0, 0), (2, 10)],
        );
        check(
            &entries,
            |c| c.truncate_from_end(11),
            true,
            &[(0, 0), (2, 10)],
        );
        check(&entries, |c| c.truncate_from_end(0), true, &[]);
        check(&entries, |c| c.truncate_from_start(0), false, &entries);
        check(
            &entries,
            |c| c.truncate_from_start(5),
            true,
            &[(0, 5), (2, 10), (5, 20)],
        );
        check(
            &entries,
            |c| c.truncate_from_start(10),
            true,
            &[(2, 10), (5, 20)],
        );
        check(&entries, |c| c.truncate_from_start(30), true, &[(5, 30)]);
        check(&[(3, 8)], |c| c.truncate_from_start(5), false, &[(3, 8)]);
        check(&entries, LeaderEpochCache::clear, true, &[]);
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(1, 5), (2, 10), (5, 20)]);
        let end = |epoch| {
            let found = c.end_offset_for(epoch, 30);
            (found.leader_epoch, found.end_offset)
        };
        assert_eq!(end(5), (5, 30), "the latest epoch ends at the log end");
        assert_eq!(end(2), (2, 20));
        assert_eq!(
            end(3),
            (2, 20),
            "an epoch without records: the one before it"
        );
        assert_eq!(end(4), (2, 20));
        assert_eq!(end(1), (1, 10));
        assert_eq!(end(0), (0, 5), "before every entry: the first start");
        assert_eq!(end(6), (-1, -1), "beyond the latest");
        assert_eq!(end(-1), (-1, -1));
        let empty = LeaderEpochCache::default();
        assert_eq!(empty.end_offset_for(0, 30), EpochEndOffset::UNDEFINED);

        assert_eq!(c.epoch_for_offset(4), None);
        assert_eq!(c.epoch_for_offset(5), Some(1));
        assert_eq!(c.epoch_for_offset(19), Some(2));
        assert_eq!(c.epoch_for_offset(99), Some(5));
        assert_eq!(c.start_offset_of(2), Some(10));
        assert_eq!(c.start_offset_of(3), None);
    }

    #[test]
    fn the_payload_is_kafkas_text_and_bad_ones_are_refused() {
        let c = cache(&[(0, 0), (3, 150)]);
        assert_eq!(c.encode(), "0\n2\n0 0\n3 150\n");
        assert_eq!(LeaderEpochCache::decode(c.encode().as_bytes()), Ok(c));
        assert_eq!(
            LeaderEpochCache::decode(b"0\n0\n"),
            Ok(LeaderEpochCache::default())
        );
        for (bad, reason) in [
            (&b""[..], "empty"),
            (b"1\n0\n", "version"),
            (b"0\n", "count"),
            (b"0\n2\n0 0\n", "1 entries, the count says 2"),
            (b"0\n1\n0\n", "not \"epoch offset\""),
            (b"0\n2\n3 10\n2 20\n", "does not follow"),
            (b"0\n2\n1 10\n2 10\n", "does not follow"),
            (b"0\n1\n-1 0\n", "does not follow"),
        ] {
            let error = LeaderEpochCache::decode(bad).unwrap_err();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
    }
}
