//! The log cleaner: compaction of a log's sealed segments, crash-safe replacement of their
//! files, and the per-log state it keeps (`cleaner-checkpoint`).
//!
//! One clean, of the sealed segments old enough (`min.compaction.lag.ms`, by each segment's
//! newest timestamp) from the log start:
//!
//! ```text
//! 1. flush the sealed segments      (the recovery point passes them: recovery will allow gaps)
//! 2. offset map <- dirty part       (the newest offset of each key, from the first dirty offset)
//! 3. for each cleanable segment B:  write B.log.cleaned, B.index.cleaned, B.timeindex.cleaned
//!                                    (batches filtered, see `compaction`), fsync them
//! 4. under the writer lock, if the segments are still the ones read:
//!    rename B.log.cleaned -> B.log.swap, oldest first, fsyncing the directory after each
//!    (a B.log.swap is a finished copy: from here the clean of B is committed)
//! 5. rename B.index.cleaned, B.timeindex.cleaned, B.log.swap over B's files; fsync
//! 6. publish the new segments; write cleaner-checkpoint (first dirty offset, when each
//!    segment was first cleaned)
//! ```
//!
//! At open, [`finish_interrupted_swap`] completes step 5 for every `B.log.swap` (its index
//! files are rebuilt from it) and removes every `.cleaned` file, so a crash anywhere leaves
//! each segment either as it was or compacted. Renaming oldest first matters: a compacted
//! segment may have dropped a key's tombstone only because older segments no longer hold
//! that key, so a newer segment is never replaced before an older one.
//!
//! Offsets never change: batches keep their base offset and last offset delta, empty batches
//! are dropped (but an idempotent producer's last one and each segment's last one, which keep
//! the segment's end), a segment keeps its base offset. Readers holding the old segments keep their maps: a renamed-over file lives
//! on while mapped, as a deleted one does under retention.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_proto::batch::{self, Filtered};

use super::checkpoint::{read_checkpoint, write_checkpoint};
use super::compaction::{self, Dirtiness, Fate, OffsetMap};
use super::error::{Error, Result};
use super::files;
use super::log::Log;
use super::segment::{
    self, ActiveSegment, CLEANED_SUFFIX, Capacity, Placement, SWAP_SUFFIX, Segment, SegmentPaths,
};
use crate::config::LogConfig;

const STATE_FILE: &str = "cleaner-checkpoint";
const STATE_VERSION: u16 = 1;

/// What the cleaner knows of one log, kept in its `cleaner-checkpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CleanerState {
    /// Everything below this was compacted (and nothing was written there since).
    pub(crate) first_dirty_offset: i64,
    /// Segments below this may hold compacted files, with offset gaps inside; they were
    /// flushed before being compacted, so recovery treats them as flushed (and allows the
    /// gaps). Written before a swap starts, so it covers every file a crash may leave.
    pub(crate) gaps_below: i64,
    /// When each segment (by base offset) was first cleaned: its tombstones count
    /// `delete.retention.ms` from there.
    pub(crate) cleaned_at_ms: BTreeMap<i64, i64>,
    /// Segments that kept tombstones when last cleaned: once those expire, the log is cleaned
    /// again even if nothing new was written.
    pub(crate) with_tombstones: BTreeSet<i64>,
    /// When the log was last cleaned (not persisted).
    pub(crate) last_clean_ms: Option<i64>,
}

impl CleanerState {
    /// Reads the log's state; a missing or damaged file gives the empty state (everything is
    /// dirty, no tombstone has started its time: slower, never wrong).
    pub(crate) fn load(dir: &Path) -> CleanerState {
        let path = dir.join(STATE_FILE);
        let payload = match read_checkpoint(&path, STATE_VERSION) {
            Ok(Some(payload)) => payload,
            Ok(None) => return CleanerState::default(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the cleaner checkpoint; the log will be compacted again in full");
                return CleanerState::default();
            }
        };
        let text = String::from_utf8_lossy(&payload);
        let mut state = CleanerState::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let parsed = match fields.as_slice() {
                ["first-dirty", offset] => offset.parse().map(|o| state.first_dirty_offset = o),
                ["gaps-below", offset] => offset.parse().map(|o| state.gaps_below = o),
                ["cleaned", base, at] => base.parse().and_then(|b| {
                    at.parse().map(|a| {
                        state.cleaned_at_ms.insert(b, a);
                    })
                }),
                ["tombstones", base] => base.parse().map(|b| {
                    state.with_tombstones.insert(b);
                }),
                _ => "x".parse::<i64>().map(|_| ()),
            };
            if parsed.is_err() {
                tracing::warn!(path = %path.display(), "ignoring a malformed cleaner checkpoint");
                return CleanerState::default();
            }
        }
        state
    }

    /// Writes the state, forgetting segments that are gone.
    pub(crate) fn persist(&mut self, dir: &Path, bases: &[i64]) -> Result<()> {
        self.cleaned_at_ms
            .retain(|base, _| bases.binary_search(base).is_ok());
        let mut payload = format!(
            "first-dirty {}\ngaps-below {}\n",
            self.first_dirty_offset, self.gaps_below
        );
        self.with_tombstones
            .retain(|base| bases.binary_search(base).is_ok());
        for (base, at) in &self.cleaned_at_ms {
            payload.push_str(&format!("cleaned {base} {at}\n"));
        }
        for base in &self.with_tombstones {
            payload.push_str(&format!("tombstones {base}\n"));
        }
        write_checkpoint(&dir.join(STATE_FILE), STATE_VERSION, payload.as_bytes())
    }

    /// After a truncation to `new_end`: what was cleaned at or above it is dirty again, and
    /// segments from `from_base` on lose their cleaning time (new records may follow there).
    pub(crate) fn truncated(&mut self, new_end: i64, from_base: i64) {
        self.first_dirty_offset = self.first_dirty_offset.min(new_end);
        self.gaps_below = self.gaps_below.min(new_end);
        self.cleaned_at_ms.retain(|&base, _| base < from_base);
        self.with_tombstones.retain(|&base| base < from_base);
    }

    /// Whether a segment kept tombstones that are now past `delete_retention_ms`.
    pub(crate) fn tombstones_due(&self, now_ms: i64, delete_retention_ms: i64) -> bool {
        self.with_tombstones.iter().any(|base| {
            let at = self.cleaned_at_ms.get(base).copied();
            compaction::tombstones_expired(at, now_ms, delete_retention_ms)
        })
    }
}

/// Completes or discards a swap that a crash interrupted (see the module documentation).
/// Called when a log is opened, before its segments are listed.
pub(crate) fn finish_interrupted_swap(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut swaps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(&format!(".{CLEANED_SUFFIX}")) {
            files::remove_if_exists(&entry.path())?;
        } else if let Some(stem) =
            name.strip_suffix(&format!(".{}.{SWAP_SUFFIX}", segment::LOG_SUFFIX))
            && let Ok(base) = stem.parse::<i64>()
        {
            swaps.push(base);
        }
    }
    swaps.sort_unstable();
    for base in swaps {
        let paths = SegmentPaths::new(dir, base);
        let swap = SegmentPaths::with_suffix(dir, base, SWAP_SUFFIX);
        tracing::info!(dir = %dir.display(), base_offset = base,
            "finishing a compacted segment's swap that a crash interrupted");
        // The indexes may be the old segment's or the new one's: rebuild them at open.
        files::remove_if_exists(&paths.offset_index)?;
        files::remove_if_exists(&paths.time_index)?;
        std::fs::rename(&swap.log, &paths.log).map_err(|e| Error::io("rename", &swap.log, e))?;
    }
    files::sync_directory(dir)
}

/// What one clean of a log did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten.
    pub segments_rewritten: usize,
    /// Bytes of the segments cleaned, before cleaning.
    pub bytes_read: u64,
    /// Bytes of the rewritten segments, after cleaning.
    pub bytes_written: u64,
    /// Records removed.
    pub records_removed: u64,
    /// The first dirty offset after the clean.
    pub first_dirty_offset: i64,
}

/// Bounds the cleaner's I/O to a number of bytes per second, by sleeping.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    /// A throttle at `bytes_per_second` (at least 1), starting now.
    pub fn new(bytes_per_second: u64) -> Throttle {
        Throttle {
            bytes_per_second: bytes_per_second.max(1),
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `bytes` of I/O, sleeping first if the rate is above the limit.
    pub fn account(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        let pause = pause_for(self.bytes, self.started.elapsed(), self.bytes_per_second);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// How long to wait so that `bytes` done since a start `elapsed` ago stay within the rate.
fn pause_for(bytes: u64, elapsed: Duration, bytes_per_second: u64) -> Duration {
    let due = Duration::from_secs_f64(bytes as f64 / bytes_per_second as f64);
    due.saturating_sub(elapsed)
}

/// The cleanable segments of `segments`: the sealed ones from the first, up to the first
/// whose newest record is younger than `min.compaction.lag.ms` or that reaches `upper_offset`
/// (the high watermark).
fn cleanable(
    segments: &[Arc<Segment>],
    config: &LogConfig,
    now_ms: i64,
    upper_offset: i64,
) -> usize {
    let sealed = segments.len().saturating_sub(1);
    let old_enough = now_ms.saturating_sub(config.min_compaction_lag_ms);
    segments[..sealed]
        .iter()
        .take_while(|s| s.max_timestamp() <= old_enough && s.next_offset() <= upper_offset)
        .count()
}

impl Log {
    /// How dirty the log's cleanable part is, if its `cleanup.policy` compacts.
    pub fn dirtiness(&self) -> Result<Option<Dirtiness>> {
        let config = self.config();
        if !config.cleanup_policy.compact {
            return Ok(None);
        }
        let segments = self.segments_snapshot();
        let now = self.clock().now_ms();
        let count = cleanable(&segments, &config, now, self.cleaner_upper_offset());
        let state = self.cleaner_state();
        let first_dirty = state.first_dirty_offset;
        let mut dirtiness = Dirtiness {
            clean_bytes: 0,
            dirty_bytes: 0,
            first_dirty_timestamp: None,
            tombstones_due: state.tombstones_due(now, config.delete_retention_ms),
        };
        for segment in &segments[..count] {
            if segment.next_offset() <= first_dirty {
                dirtiness.clean_bytes += segment.size() as u64;
                continue;
            }
            dirtiness.dirty_bytes += segment.size() as u64;
            if dirtiness.first_dirty_timestamp.is_none()
                && let Some(Ok((_, header))) = segment.headers_from(0).next()
            {
                dirtiness.first_dirty_timestamp = Some(header.first_timestamp);
            }
        }
        Ok(Some(dirtiness))
    }

    /// When the log was last cleaned since it was opened, by the log's clock.
    pub fn last_clean_ms(&self) -> Option<i64> {
        self.cleaner_state().last_clean_ms
    }

    /// Compacts the log's cleanable segments (see the module documentation), if its
    /// `cleanup.policy` compacts and any of them is dirty. Returns what it did, or `None` if
    /// there was nothing to do or the segments changed under it (retention, truncation), in
    /// which case nothing changed. `throttle` paces the reads and writes.
    pub fn clean(&self, throttle: &mut Throttle) -> Result<Option<CleanStats>> {
        let config = self.config();
        if !config.cleanup_policy.compact {
            return Ok(None);
        }
        // Make the sealed segments durable first: the recovery point then passes them, and
        // recovery accepts the offset gaps compaction leaves.
        self.flush_sealed()?;
        let now = self.clock().now_ms();
        let segments = self.segments_snapshot();
        // Only flushed segments: one rolled since the flush above may not be durable yet, and
        // recovery will trust everything below `gaps_below`.
        let upper_offset = self.cleaner_upper_offset().min(self.recovery_point());
        let count = cleanable(&segments, &config, now, upper_offset);
        let state = self.cleaner_state();
        let log_start = self.log_start_offset();
        let first_dirty = state.first_dirty_offset.max(log_start);
        let Some(end_offset) = segments.get(count).map(|s| s.base_offset()) else {
            return Ok(None);
        };
        let tombstones_due = state.tombstones_due(now, config.delete_retention_ms);
        if count == 0 || (first_dirty >= end_offset && !tombstones_due) {
            return Ok(None);
        }
        let map = self.build_offset_map(&segments[..count], first_dirty, throttle)?;
        let last_batch_of = self.last_batch_of_producers(log_start)?;
        let mut stats = CleanStats::default();
        let mut rewritten: Vec<(usize, Arc<Segment>)> = Vec::new();
        let mut with_tombstones = BTreeSet::new();
        for (index, old) in segments[..count].iter().enumerate() {
            let expired = compaction::tombstones_expired(
                state.cleaned_at_ms.get(&old.base_offset()).copied(),
                now,
                config.delete_retention_ms,
            );
            throttle.account(old.size());
            stats.bytes_read += old.size() as u64;
            let cleaned = clean_segment(old, &map, expired, &last_batch_of)?;
            if cleaned.tombstones > 0 {
                with_tombstones.insert(old.base_offset());
            }
            if cleaned.removed == 0 && cleaned.dropped_batches == 0 {
                continue;
            }
            stats.records_removed += cleaned.removed;
            let written = self.write_cleaned(old, &cleaned, &config)?;
            throttle.account(written);
            stats.bytes_written += written as u64;
            rewritten.push((index, Arc::clone(old)));
        }
        stats.segments_rewritten = rewritten.len();
        stats.first_dirty_offset = end_offset;
        let cleaned_bases: Vec<i64> = segments[..count].iter().map(|s| s.base_offset()).collect();
        let cleaned = Clean {
            rewritten: &rewritten,
            bases: &cleaned_bases,
            with_tombstones,
            end_offset,
            now_ms: now,
        };
        if !self.swap_cleaned(cleaned)? {
            return Ok(None);
        }
        Ok(Some(stats))
    }

    /// The newest offset of each key from `first_dirty` to the end of `segments`.
    fn build_offset_map(
        &self,
        segments: &[Arc<Segment>],
        first_dirty: i64,
        throttle: &mut Throttle,
    ) -> Result<OffsetMap> {
        let mut map = OffsetMap::default();
        for segment in segments.iter().filter(|s| s.next_offset() > first_dirty) {
            for item in segment.headers_from(0) {
                let (position, header) = item?;
                if header.last_offset() < first_dirty || header.is_control() {
                    continue;
                }
                let bytes = segment.read_from(position, 0, i64::MAX)?;
                throttle.account(bytes.len());
                let records = batch::decode(&bytes).map_err(|e| corrupt(segment, position, e))?;
                for record in records.iter().filter(|r| r.offset >= first_dirty) {
                    if let Some(key) = &record.key {
                        map.record(key, record.offset);
                    }
                }
            }
        }
        tracing::debug!(dir = %self.dir().display(), keys = map.len(), "built the offset map");
        Ok(map)
    }

    /// The base offset of each idempotent producer's last batch in the log.
    fn last_batch_of_producers(&self, from: i64) -> Result<HashMap<i64, i64>> {
        let mut last = HashMap::new();
        for header in self.batch_headers(from) {
            let header = header?;
            if header.producer_id >= 0 {
                last.insert(header.producer_id, header.base_offset);
            }
        }
        Ok(last)
    }

    /// Writes `cleaned` as `<base>.*.cleaned` files, fsynced. Returns the bytes written.
    fn write_cleaned(&self, old: &Segment, cleaned: &Cleaned, config: &LogConfig) -> Result<usize> {
        let capacity = Capacity {
            log_bytes: (cleaned.bytes.len() as u64).max(1),
            ..Capacity::new(config, 0)
        };
        let mut active = ActiveSegment::create_cleaned(self.dir(), old.base_offset(), capacity)?;
        if !cleaned.bytes.is_empty() {
            active.append(&cleaned.bytes, &cleaned.placements)?;
        }
        active.sync()?;
        let sealed = active.seal();
        let size = sealed.size();
        sealed.sync()?;
        Ok(size)
    }

    /// Puts the cleaned files in place of `rewritten`'s, if those are still the log's
    /// segments, and records the clean. Returns false (removing the cleaned files) if not.
    fn swap_cleaned(&self, clean: Clean<'_>) -> Result<bool> {
        let Clean {
            rewritten,
            bases: cleaned_bases,
            with_tombstones,
            end_offset,
            now_ms,
        } = clean;
        let _writer = self.lock_writer_for_cleaner()?;
        let current = self.segments_snapshot();
        let still_there = rewritten
            .iter()
            .all(|(i, old)| current.get(*i).is_some_and(|s| Arc::ptr_eq(s, old)));
        let dir = self.dir();
        if !still_there
            || current.first().map(|s| s.base_offset()) != cleaned_bases.first().copied()
        {
            for (_, old) in rewritten {
                for path in SegmentPaths::with_suffix(dir, old.base_offset(), CLEANED_SUFFIX).all()
                {
                    files::remove_if_exists(path)?;
                }
            }
            return Ok(false);
        }
        let bases = self.segment_base_offsets();
        let mut state = self.cleaner_state();
        let swap = || -> Result<Vec<(usize, Arc<Segment>)>> {
            // Recovery must accept the compacted files' gaps whatever state a crash leaves.
            if state.gaps_below < end_offset && !rewritten.is_empty() {
                state.gaps_below = end_offset;
                state.persist(dir, &bases)?;
            }
            // Commit each segment's copy, oldest first.
            for (_, old) in rewritten {
                let base = old.base_offset();
                let cleaned = SegmentPaths::with_suffix(dir, base, CLEANED_SUFFIX);
                let swap = SegmentPaths::with_suffix(dir, base, SWAP_SUFFIX);
                rename(&cleaned.log, &swap.log)?;
                files::sync_directory(dir)?;
            }
            let mut replaced = Vec::with_capacity(rewritten.len());
            for (index, old) in rewritten {
                let base = old.base_offset();
                let plain = SegmentPaths::new(dir, base);
                let cleaned = SegmentPaths::with_suffix(dir, base, CLEANED_SUFFIX);
                let swap = SegmentPaths::with_suffix(dir, base, SWAP_SUFFIX);
                rename(&cleaned.offset_index, &plain.offset_index)?;
                rename(&cleaned.time_index, &plain.time_index)?;
                rename(&swap.log, &plain.log)?;
                let len = std::fs::metadata(&plain.log)
                    .map_err(|e| Error::io("stat", &plain.log, e))?
                    .len();
                let len = usize::try_from(len).expect("64-bit");
                replaced.push((*index, Arc::new(Segment::open_sealed(dir, base, len)?)));
            }
            files::sync_directory(dir)?;
            Ok(replaced)
        };
        // A failure part way leaves files and the segment list apart; a restart puts them
        // together again (finishing the swap).
        let mut swap = swap;
        let replaced = swap().inspect_err(|e| self.go_offline(e))?;
        let mut segments: Vec<_> = current.iter().cloned().collect();
        for (index, segment) in replaced {
            segments[index] = segment;
        }
        self.publish_segments(segments);
        state.first_dirty_offset = end_offset;
        for base in cleaned_bases {
            state.cleaned_at_ms.entry(*base).or_insert(now_ms);
            state.with_tombstones.remove(base);
        }
        state.with_tombstones.extend(with_tombstones);
        state.last_clean_ms = Some(now_ms);
        state.persist(dir, &bases)?;
        self.set_cleaner_state(state);
        Ok(true)
    }
}

/// One clean, ready to be put in place.
struct Clean<'a> {
    /// The segments rewritten, with their index in the segment list read.
    rewritten: &'a [(usize, Arc<Segment>)],
    /// Base offsets of every segment cleaned (rewritten or not).
    bases: &'a [i64],
    /// Those that kept tombstones.
    with_tombstones: BTreeSet<i64>,
    /// The first dirty offset after the clean.
    end_offset: i64,
    now_ms: i64,
}

/// A segment's batches after filtering: the bytes to write and where each batch is.
struct Cleaned {
    bytes: Vec<u8>,
    placements: Vec<Placement>,
    removed: u64,
    dropped_batches: u64,
    /// Tombstones kept.
    tombstones: u64,
}

/// Filters every batch of `segment`.
fn clean_segment(
    segment: &Segment,
    map: &OffsetMap,
    tombstones_expired: bool,
    last_batch_of: &HashMap<i64, i64>,
) -> Result<Cleaned> {
    let mut cleaned = Cleaned {
        bytes: Vec::with_capacity(segment.size()),
        placements: Vec::new(),
        removed: 0,
        dropped_batches: 0,
        tombstones: 0,
    };
    for item in segment.headers_from(0) {
        let (position, header) = item?;
        let bytes = segment.read_from(position, 0, i64::MAX)?;
        let kept: Bytes = if header.is_control() {
            bytes
        } else {
            let mut tombstones = 0;
            let filtered = batch::filter(&bytes, |r| {
                let keep = compaction::fate(r, map, tombstones_expired) == Fate::Keep;
                tombstones += u64::from(keep && r.value.is_none());
                keep
            })
            .map_err(|e| corrupt(segment, position, e))?;
            cleaned.tombstones += tombstones;
            match filtered {
                Filtered::Unchanged => bytes,
                Filtered::Rewritten { batch, removed } => {
                    cleaned.removed += removed as u64;
                    let empty = batch::BatchHeader::parse(&batch)
                        .map_err(|e| corrupt(segment, position, e))?
                        .record_count
                        == 0;
                    let segment_end = segment.next_offset();
                    if empty && !compaction::keep_empty_batch(&header, last_batch_of, segment_end) {
                        cleaned.dropped_batches += 1;
                        continue;
                    }
                    batch
                }
            }
        };
        let header = batch::BatchHeader::parse(&kept).map_err(|e| corrupt(segment, position, e))?;
        cleaned.placements.push(Placement {
            position: cleaned.bytes.len(),
            header,
            base_offset: header.base_offset,
            leader_epoch: None,
        });
        cleaned.bytes.extend_from_slice(&kept);
    }
    Ok(cleaned)
}

fn corrupt(segment: &Segment, position: usize, e: impl ToString) -> Error {
    Error::Corrupt {
        path: segment.log_path().to_path_buf(),
        position: position as u64,
        reason: e.to_string(),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_waits_until_the_bytes_fit_the_rate() {
        let second = Duration::from_secs(1);
        assert_eq!(pause_for(1000, second, 1000), Duration::ZERO);
        assert_eq!(pause_for(500, second, 1000), Duration::ZERO);
        assert_eq!(pause_for(3000, second, 1000), 2 * second);
        assert_eq!(
            pause_for(1500, Duration::ZERO, 1000),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn the_state_file_round_trips_and_forgets_gone_segments() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(CleanerState::load(dir.path()), CleanerState::default());
        let mut state = CleanerState {
            first_dirty_offset: 120,
            gaps_below: 120,
            cleaned_at_ms: BTreeMap::from([(0, 5), (50, 7), (90, 9)]),
            with_tombstones: BTreeSet::from([0, 90]),
            last_clean_ms: Some(9),
        };
        state.persist(dir.path(), &[50, 90, 120]).unwrap();
        let loaded = CleanerState::load(dir.path());
        assert_eq!((loaded.first_dirty_offset, loaded.gaps_below), (120, 120));
        assert_eq!(loaded.cleaned_at_ms, BTreeMap::from([(50, 7), (90, 9)]));
        assert_eq!(loaded.with_tombstones, BTreeSet::from([90]));
        assert!(!loaded.tombstones_due(18, 10));
        assert!(loaded.tombstones_due(19, 10));
        state.truncated(95, 90);
        assert_eq!((state.first_dirty_offset, state.gaps_below), (95, 95));
        assert_eq!(state.cleaned_at_ms, BTreeMap::from([(50, 7)]));
    }
}
