//! One partition's log: an ordered list of segments, the last of which takes appends.
//!
//! ```text
//!  log_start_offset                                             log_end_offset
//!  v                                                            v
//!  [ segment 0 (sealed) ][ segment 120 (sealed) ][ segment 377 (active) ...... ]
//! ```
//!
//! One writer at a time (appends, rolls, truncation, retention take the writer lock); any
//! number of readers, which take a snapshot of the segment list under a lock held for one
//! `Arc` clone and then read the maps without locks. Offsets and positions are published with
//! release stores after the bytes are in place, so a reader never sees a partial batch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use bytes::Bytes;
use weir_proto::batch::{self, BatchHeader};

use super::cleaner::{self, CleanerState};
use super::error::{Error, Result};
use super::leader_epoch::{self, EpochEndOffset, EpochEntry, LeaderEpochCache};
use super::segment::{ActiveSegment, Capacity, Placement, Segment};
use super::{files, load};
use crate::clock::Clock;
use crate::config::{LogConfig, SEGMENT_BYTES_MAX};

/// What the owner of a log recorded about it: saved in the recovery checkpoint, given back
/// when the log is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCheckpoint {
    /// The first offset consumers may read.
    pub log_start_offset: i64,
    /// Every batch below this offset was flushed to disk.
    pub recovery_point: i64,
}

/// How the log was last closed, as its owner knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenState {
    /// The log was closed with [`Log::close`] and nothing wrote to it since.
    pub clean_shutdown: bool,
    /// The last checkpoint, if there is one. Without one, every segment is recovered.
    pub checkpoint: Option<LogCheckpoint>,
}

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The largest batch timestamp appended.
    pub max_timestamp: i64,
    /// Number of batches appended.
    pub batch_count: usize,
    /// Bytes appended.
    pub bytes: usize,
}

/// A record found by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
    /// The partition leader epoch of the record's batch.
    pub leader_epoch: i32,
}

/// One partition's log. See the module documentation.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    config: RwLock<LogConfig>,
    /// Sorted by base offset; the last one is the active segment.
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    recovery_point: AtomicI64,
    /// Records appended since the last flush, and when the first of them was.
    unflushed_records: AtomicU64,
    first_unflushed_ms: AtomicI64,
    /// The writer; `None` once closed.
    writer: Mutex<Option<ActiveSegment>>,
    /// Serializes flushes with each other and with truncation.
    flush_lock: Mutex<()>,
    /// Segment files were created since the directory was last synced.
    directory_changed: AtomicBool,
    /// Set when a flush failed: the log then refuses writes.
    offline: OnceLock<String>,
    /// Where each leader epoch starts; changed under the writer lock, persisted in the
    /// leader-epoch checkpoint before the log end moves past a change.
    epochs: Mutex<LeaderEpochCache>,
    /// What the log cleaner knows of this log (see `cleaner`); changed under the writer lock.
    cleaner: Mutex<CleanerState>,
    /// The cleaner compacts only segments wholly below this (the partition's high watermark,
    /// so nothing a truncation could still remove decides what survives); unbounded for a
    /// log no partition owns.
    cleaner_upper_offset: AtomicI64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is a bug that already failed loudly; the state it guards
    // is published through atomics only when complete, so it is safe to keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Log {
    /// Opens the log in `dir`, creating the directory and a first segment if there is none,
    /// and recovering segments that may hold unflushed data (see [`super::recovery`]).
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        state: OpenState,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        cleaner::finish_interrupted_swap(&dir)?;
        let cleaner_state = CleanerState::load(&dir);
        // Compacted segments have offset gaps; they were flushed before the cleaner started
        // replacing them, so recovery may treat everything below `gaps_below` as flushed.
        let mut state = state;
        let gaps_below = cleaner_state.gaps_below;
        if gaps_below > 0 {
            let checkpoint = state.checkpoint.get_or_insert(LogCheckpoint {
                log_start_offset: 0,
                recovery_point: 0,
            });
            checkpoint.recovery_point = checkpoint.recovery_point.max(gaps_below);
        }
        let bases = load::list_segments(&dir)?;
        let opened = load::open_segments(&dir, &bases, &config, clock.now_ms(), state)?;
        let active = opened.active;
        let mut segments = opened.sealed;
        segments.push(Arc::clone(active.segment()));
        let log_end_offset = active.segment().next_offset();
        let first_base = segments[0].base_offset();
        let log_start_offset = state
            .checkpoint
            .map_or(first_base, |c| c.log_start_offset.max(first_base))
            .min(log_end_offset);
        let epochs = leader_epoch::load(&dir, &segments, log_start_offset, log_end_offset)?;
        let log = Log {
            dir,
            clock,
            config: RwLock::new(config),
            segments: RwLock::new(Arc::new(segments)),
            log_start_offset: AtomicI64::new(log_start_offset),
            log_end_offset: AtomicI64::new(log_end_offset),
            recovery_point: AtomicI64::new(opened.flushed_below.min(log_end_offset)),
            unflushed_records: AtomicU64::new(0),
            first_unflushed_ms: AtomicI64::new(-1),
            writer: Mutex::new(Some(active)),
            flush_lock: Mutex::new(()),
            directory_changed: AtomicBool::new(true),
            offline: OnceLock::new(),
            epochs: Mutex::new(epochs),
            cleaner: Mutex::new(cleaner_state),
            cleaner_upper_offset: AtomicI64::new(i64::MAX),
        };
        // What recovery kept is now known good; make it durable before calling it flushed.
        log.flush()?;
        Ok(log)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first offset still held.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// Every batch below this offset is flushed to disk.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// What the recovery checkpoint should record for this log.
    pub fn checkpoint(&self) -> LogCheckpoint {
        LogCheckpoint {
            log_start_offset: self.log_start_offset(),
            recovery_point: self.recovery_point(),
        }
    }

    /// Where each leader epoch that wrote to the log starts, oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        lock(&self.epochs).entries().to_vec()
    }

    /// Where the records of leader epoch `epoch` end (OffsetForLeaderEpoch): the largest
    /// epoch at or below it and the start of the next, or the log end offset for the latest
    /// epoch. See [`EpochEndOffset`] and Kafka's rules in [`super::leader_epoch`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> EpochEndOffset {
        let epochs = lock(&self.epochs);
        // Read the end under the lock: an append records a new epoch before it moves the end.
        epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The leader epoch in effect at `offset`, if the log knows one.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        lock(&self.epochs).epoch_for_offset(offset)
    }

    /// The offset where leader epoch `epoch` starts, if it has written or was recorded.
    pub fn epoch_start_offset(&self, epoch: i32) -> Option<i64> {
        lock(&self.epochs).start_offset_of(epoch)
    }

    /// Records that this replica leads from the log end at `epoch` (Kafka does this when a
    /// replica becomes leader), so queries for it answer before its first append. Nothing
    /// changes if the log already knows the epoch.
    pub fn assign_leader_epoch(&self, epoch: i32) -> Result<()> {
        let writer = lock(&self.writer);
        self.check_online()?;
        if writer.is_none() {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        let log_end_offset = self.log_end_offset();
        self.change_epochs(|epochs| {
            check_epoch(&self.dir, epochs, epoch, log_end_offset)?;
            Ok(epochs.assign(epoch, log_end_offset))
        })
    }

    /// Applies `change` to a copy of the leader-epoch cache; if it reports a change, persists
    /// the copy and puts it in place. A failed write takes the log offline, as a failed flush
    /// does. The caller holds the writer lock.
    fn change_epochs(
        &self,
        change: impl FnOnce(&mut LeaderEpochCache) -> Result<bool>,
    ) -> Result<()> {
        let mut epochs = lock(&self.epochs).clone();
        if !change(&mut epochs)? {
            return Ok(());
        }
        leader_epoch::persist(&self.dir, &epochs).inspect_err(|e| self.go_offline(e))?;
        *lock(&self.epochs) = epochs;
        Ok(())
    }

    /// The log's current configuration.
    pub fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the configuration; it applies from the next append or retention run.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// The segments, oldest first; the last one is active.
    fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&self.segments.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The segments, oldest first, for the cleaner.
    pub(super) fn segments_snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments()
    }

    /// The clock the log reads the time from.
    pub(super) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Bounds compaction to segments wholly below `offset`: the owner of a replicated log
    /// passes its high watermark whenever it changes.
    pub fn set_cleaner_upper_offset(&self, offset: i64) {
        self.cleaner_upper_offset.store(offset, Ordering::Release);
    }

    /// See [`Log::set_cleaner_upper_offset`].
    pub(super) fn cleaner_upper_offset(&self) -> i64 {
        self.cleaner_upper_offset.load(Ordering::Acquire)
    }

    /// A copy of the cleaner's state of this log.
    pub(super) fn cleaner_state(&self) -> CleanerState {
        lock(&self.cleaner).clone()
    }

    /// Replaces the cleaner's state of this log; the caller holds the writer lock.
    pub(super) fn set_cleaner_state(&self, state: CleanerState) {
        *lock(&self.cleaner) = state;
    }

    /// The writer lock, for the cleaner's swap: fails if the log is offline or closed.
    pub(super) fn lock_writer_for_cleaner(&self) -> Result<MutexGuard<'_, Option<ActiveSegment>>> {
        let writer = lock(&self.writer);
        self.check_online()?;
        if writer.is_none() {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        Ok(writer)
    }

    pub(super) fn publish_segments(&self, segments: Vec<Arc<Segment>>) {
        *self.segments.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(segments);
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments().len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments().iter().map(|s| s.base_offset()).collect()
    }

    /// Bytes of batches held, over all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments().iter().map(|s| s.size() as u64).sum()
    }

    /// Appends the record batches in `batches` as the leader: each gets the next offsets and
    /// `leader_epoch`. The bytes are validated (length, magic, CRC) before anything is written.
    pub fn append(&self, batches: &[u8], leader_epoch: i32) -> Result<AppendInfo> {
        self.append_batches(batches, Some(leader_epoch))
    }

    /// Appends batches copied from the leader, keeping their offsets and leader epochs. Their
    /// offsets must be above the log end offset; a gap (from the leader's compaction) is
    /// allowed and is flushed at once, so the unflushed tail of a log never has gaps.
    pub fn append_replicated(&self, batches: &[u8]) -> Result<AppendInfo> {
        self.append_batches(batches, None)
    }

    fn append_batches(&self, data: &[u8], leader_epoch: Option<i32>) -> Result<AppendInfo> {
        let headers = validate_batches(data)?;
        if data.len() as u64 > SEGMENT_BYTES_MAX {
            return Err(Error::BatchTooLarge {
                bytes: data.len(),
                limit: SEGMENT_BYTES_MAX,
            });
        }
        let mut writer = lock(&self.writer);
        self.check_online()?;
        let log_end_offset = self.log_end_offset();
        let mut next_offset = log_end_offset;
        let mut placements = Vec::with_capacity(headers.len());
        let mut max_timestamp = -1;
        let mut records = 0u64;
        let mut gap = false;
        for (position, header) in headers {
            gap |= leader_epoch.is_none() && header.base_offset > next_offset;
            let base_offset = match leader_epoch {
                Some(_) => next_offset,
                None if header.base_offset >= next_offset => header.base_offset,
                None => {
                    return Err(Error::OffsetsNotIncreasing {
                        dir: self.dir.clone(),
                        base_offset: header.base_offset,
                        log_end_offset: next_offset,
                    });
                }
            };
            next_offset = base_offset + i64::from(header.last_offset_delta) + 1;
            max_timestamp = max_timestamp.max(header.max_timestamp);
            records += u64::try_from(header.record_count).expect("validated as not negative");
            placements.push(Placement {
                position,
                header,
                base_offset,
                leader_epoch,
            });
        }
        let first_offset = placements[0].base_offset;
        let config = self.config();
        let last_offset = next_offset - 1;
        let active =
            self.prepare_append(&mut writer, &config, data.len(), first_offset, last_offset)?;
        self.record_epochs(&placements, log_end_offset)?;
        active.append(data, &placements).inspect_err(|e| {
            self.go_offline(e);
            lock(&self.epochs).truncate_from_end(log_end_offset);
        })?;
        self.log_end_offset.store(next_offset, Ordering::Release);

        self.note_unflushed(records);
        let flush_due = config
            .flush_messages
            .is_some_and(|n| self.unflushed_records.load(Ordering::Acquire) >= n);
        if gap || flush_due {
            self.flush()?;
        }
        Ok(AppendInfo {
            base_offset: first_offset,
            last_offset,
            max_timestamp,
            batch_count: placements.len(),
            bytes: data.len(),
        })
    }

    /// Checks that the batches' leader epochs do not go back and records the new ones,
    /// before the log end moves past them. Cheap when no batch starts an epoch.
    fn record_epochs(&self, placements: &[Placement], log_end_offset: i64) -> Result<()> {
        let epoch_of = |p: &Placement| p.leader_epoch.unwrap_or(p.header.partition_leader_epoch);
        let latest = lock(&self.epochs).latest().map(|e| e.epoch);
        if placements.iter().all(|p| Some(epoch_of(p)) == latest) {
            return Ok(());
        }
        self.change_epochs(|epochs| {
            let mut changed = false;
            let mut log_end_offset = log_end_offset;
            for placement in placements {
                let epoch = epoch_of(placement);
                check_epoch(&self.dir, epochs, epoch, log_end_offset)?;
                changed |= epochs.assign(epoch, placement.base_offset);
                log_end_offset = placement.base_offset + 1;
            }
            Ok(changed)
        })
    }

    fn note_unflushed(&self, records: u64) {
        self.unflushed_records.fetch_add(records, Ordering::AcqRel);
        // Only the first unflushed append sets the time (and reads the clock); a failed
        // exchange means a flush or another append got there first, which is as good.
        if self.first_unflushed_ms.load(Ordering::Acquire) < 0 {
            let now = self.clock.now_ms();
            let _already_set = self.first_unflushed_ms.compare_exchange(
                -1,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn check_online(&self) -> Result<()> {
        match self.offline.get() {
            Some(cause) => Err(Error::LogOffline {
                dir: self.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Returns the active segment, rolled first if `bytes` more bytes ending at `last_offset`
    /// do not fit, or it is older than `segment_ms`.
    fn prepare_append<'w>(
        &self,
        writer: &'w mut Option<ActiveSegment>,
        config: &LogConfig,
        bytes: usize,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<&'w mut ActiveSegment> {
        let active = writer.as_mut().ok_or_else(|| Error::Closed {
            dir: self.dir.clone(),
        })?;
        let empty = active.segment().is_empty();
        let expired = self.clock.now_ms() - active.rolling_base_ms() >= config.segment_ms;
        if !active.has_room(bytes, last_offset) || (expired && !empty) {
            self.roll_to(writer, first_offset, bytes)?;
        }
        let active = writer.as_mut().expect("roll keeps an active segment");
        assert!(
            active.has_room(bytes, last_offset),
            "a fresh segment has room for the append"
        );
        Ok(active)
    }

    /// Starts a new active segment at the log end offset, if the active one holds anything.
    pub fn roll(&self) -> Result<()> {
        let mut writer = lock(&self.writer);
        self.check_online()?;
        let active = writer.as_ref().ok_or_else(|| Error::Closed {
            dir: self.dir.clone(),
        })?;
        if active.segment().is_empty() {
            return Ok(());
        }
        self.roll_to(&mut writer, self.log_end_offset(), 0)
    }

    /// Replaces the active segment by a new one at `base_offset` with room for at least
    /// `bytes`. An empty active segment is removed rather than sealed. If the new segment
    /// cannot be created (a full disk), the log is left as it was.
    fn roll_to(
        &self,
        writer: &mut Option<ActiveSegment>,
        base_offset: i64,
        bytes: usize,
    ) -> Result<()> {
        let config = self.config();
        let capacity = Capacity::new(&config, bytes);
        let now = self.clock.now_ms();
        let old = writer.as_ref().expect("caller checked the log is open");
        let mut segments: Vec<_> = self.segments().iter().cloned().collect();
        if old.segment().is_empty() {
            // Reuse the empty segment's place: remove it, then create the new one. Its base
            // offset may be the same, so its files go first.
            let old_base = old.segment().base_offset();
            let old_capacity = old.capacity();
            let old = writer.take().expect("checked above");
            let old_segment = Arc::clone(old.segment());
            drop(old);
            old_segment
                .delete_files()
                .inspect_err(|e| self.go_offline(e))?;
            match ActiveSegment::create(&self.dir, base_offset, capacity, now) {
                Ok(new) => {
                    segments.pop();
                    segments.push(Arc::clone(new.segment()));
                    *writer = Some(new);
                }
                Err(e) => {
                    // Put back an empty segment where it was; its files fit before.
                    let old = ActiveSegment::create(&self.dir, old_base, old_capacity, now)
                        .inspect_err(|e| self.go_offline(e))?;
                    segments.pop();
                    segments.push(Arc::clone(old.segment()));
                    self.publish_segments(segments);
                    *writer = Some(old);
                    return Err(e);
                }
            }
        } else {
            let new = ActiveSegment::create(&self.dir, base_offset, capacity, now)?;
            segments.push(Arc::clone(new.segment()));
            let old = writer.replace(new).expect("checked above");
            old.seal();
        }
        self.publish_segments(segments);
        self.directory_changed.store(true, Ordering::Release);
        Ok(())
    }

    /// Takes the log offline after a failure that left its files in an unknown state.
    pub(super) fn go_offline(&self, error: &Error) {
        let _first_failure_wins = self.offline.set(error.to_string());
        tracing::error!(dir = %self.dir.display(), %error, "the log is offline");
    }

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes` (the
    /// first batch is returned whole even if larger). An offset at the log end gives no bytes;
    /// one below the log start or past the end is [`Error::OffsetOutOfRange`]. The bytes share
    /// the segment's memory map; nothing is copied.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        self.read_below(offset, max_bytes, i64::MAX)
    }

    /// As [`Log::read`], returning only batches that end below `upper_offset` (for example the
    /// high watermark).
    pub fn read_below(&self, offset: i64, max_bytes: usize, upper_offset: i64) -> Result<Bytes> {
        // Order matters: the end first, then the segments (rolled before the end moves), then
        // the start (moved before segments are dropped).
        let log_end_offset = self.log_end_offset();
        let segments = self.segments();
        let log_start_offset = self.log_start_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(Error::OffsetOutOfRange {
                dir: self.dir.clone(),
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let upper_offset = upper_offset.min(log_end_offset);
        let first = segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in &segments[first..] {
            if segment.base_offset() >= upper_offset {
                break;
            }
            if let Some((position, _)) = segment.find_offset(offset)? {
                return segment.read_from(position, max_bytes, upper_offset);
            }
        }
        Ok(Bytes::new())
    }

    /// The first record whose timestamp is at least `timestamp`, at or after the log start
    /// offset, or `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        let segments = self.segments();
        let log_start_offset = self.log_start_offset();
        for segment in segments.iter() {
            if segment.max_timestamp() < timestamp || segment.next_offset() <= log_start_offset {
                continue;
            }
            let Some((mut position, _)) = segment.find_timestamp(timestamp)? else {
                continue;
            };
            // Batches from here on may hold the record; look inside each in turn.
            while position < segment.size() {
                let (bytes, records) = decode_batch_at(segment, position)?;
                let found = records
                    .iter()
                    .find(|r| r.timestamp >= timestamp && r.offset >= log_start_offset);
                if let Some(record) = found {
                    let header = BatchHeader::parse(&bytes).expect("decoded above");
                    let found = TimestampOffset {
                        timestamp: record.timestamp,
                        offset: record.offset,
                        leader_epoch: header.partition_leader_epoch,
                    };
                    return Ok(Some(found));
                }
                position += bytes.len();
            }
        }
        Ok(None)
    }

    /// The first record with the largest timestamp at or after the log start offset (Kafka's
    /// ListOffsets MAX_TIMESTAMP), or `None` if the log holds no record.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>> {
        let segments = self.segments();
        let log_start_offset = self.log_start_offset();
        let mut max_timestamp = None;
        for segment in segments.iter() {
            if segment.is_empty() || segment.next_offset() <= log_start_offset {
                continue;
            }
            let segment_max = if segment.base_offset() >= log_start_offset {
                Some(segment.max_timestamp())
            } else {
                max_timestamp_from(segment, log_start_offset)?
            };
            max_timestamp = max_timestamp.max(segment_max);
        }
        // No record is later, so the first one at or after it is the first one with it.
        match max_timestamp {
            Some(max_timestamp) => self.offset_for_timestamp(max_timestamp),
            None => Ok(None),
        }
    }

    /// Removes every batch holding an offset at or above `offset`, for a follower whose log
    /// diverged from its leader's. Returns the new log end offset, which is `offset` or the
    /// base offset of a batch that straddled it. Only data no consumer was allowed to read
    /// (above the high watermark) may be truncated.
    pub fn truncate_to(&self, offset: i64) -> Result<i64> {
        let mut writer = lock(&self.writer);
        self.check_online()?;
        if writer.is_none() {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        let log_end_offset = self.log_end_offset();
        if offset >= log_end_offset {
            return Ok(log_end_offset);
        }
        let _flushing = lock(&self.flush_lock);
        let segments = self.segments();
        let keep = segments.partition_point(|s| s.base_offset() <= offset);
        let truncated = if keep == 0 {
            self.truncate_fully(&mut writer, &segments, offset)
        } else {
            self.truncate_in_segment(&mut writer, &segments, keep - 1, offset)
        };
        // A failure part way leaves files and the segment list apart; only a restart, which
        // recovers from the files, puts them together again.
        let new_end = truncated.inspect_err(|e| self.go_offline(e))?;
        self.cleaner_truncated(new_end)?;
        self.directory_changed.store(true, Ordering::Release);
        self.log_end_offset.store(new_end, Ordering::Release);
        self.recovery_point.fetch_min(new_end, Ordering::AcqRel);
        self.log_start_offset.fetch_min(new_end, Ordering::AcqRel);
        // A crash before this is written is repaired at open, which cuts the cache to the log.
        self.change_epochs(|epochs| {
            Ok(match keep {
                0 => epochs.clear(),
                _ => epochs.truncate_from_end(new_end),
            })
        })?;
        Ok(new_end)
    }

    /// After a truncation to `new_end`: what the cleaner had compacted from there on is dirty
    /// again, and the active segment's first cleaning time is forgotten (records follow in it).
    /// Persisted before more is appended, since recovery trusts the first dirty offset.
    fn cleaner_truncated(&self, new_end: i64) -> Result<()> {
        let mut state = lock(&self.cleaner).clone();
        if state.gaps_below <= new_end && state.cleaned_at_ms.is_empty() {
            return Ok(());
        }
        let bases = self.segment_base_offsets();
        let active_base = bases.last().copied().unwrap_or(new_end);
        state.truncated(new_end, active_base);
        state
            .persist(&self.dir, &bases)
            .inspect_err(|e| self.go_offline(e))?;
        *lock(&self.cleaner) = state;
        Ok(())
    }

    /// Removes every batch and starts the log again, empty, at `offset`: for a follower whose
    /// log ends below its leader's log start (the leader's retention or DeleteRecords removed
    /// what it would fetch next). Returns the new log start (and end) offset.
    pub fn reset_to(&self, offset: i64) -> Result<i64> {
        let mut writer = lock(&self.writer);
        self.check_online()?;
        if writer.is_none() {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        let _flushing = lock(&self.flush_lock);
        let segments = self.segments();
        let reset = self.truncate_fully(&mut writer, &segments, offset);
        let new_start = reset.inspect_err(|e| self.go_offline(e))?;
        self.cleaner_truncated(new_start)?;
        self.directory_changed.store(true, Ordering::Release);
        self.log_end_offset.store(new_start, Ordering::Release);
        self.recovery_point.store(new_start, Ordering::Release);
        self.change_epochs(|epochs| Ok(epochs.clear()))?;
        Ok(new_start)
    }

    /// Truncation below every segment: all go, and an empty one starts at `offset`.
    fn truncate_fully(
        &self,
        writer: &mut Option<ActiveSegment>,
        segments: &[Arc<Segment>],
        offset: i64,
    ) -> Result<i64> {
        let capacity = Capacity::new(&self.config(), 0);
        *writer = None;
        for segment in segments {
            segment.delete_files()?;
        }
        let active = ActiveSegment::create(&self.dir, offset, capacity, self.clock.now_ms())?;
        self.publish_segments(vec![Arc::clone(active.segment())]);
        *writer = Some(active);
        self.log_start_offset.store(offset, Ordering::Release);
        Ok(offset)
    }

    /// Truncation inside segment `index`, which becomes the active segment.
    fn truncate_in_segment(
        &self,
        writer: &mut Option<ActiveSegment>,
        segments: &[Arc<Segment>],
        index: usize,
        offset: i64,
    ) -> Result<i64> {
        let target = &segments[index];
        let found = target.find_offset(offset)?;
        let position = found.map_or(target.size(), |(position, _)| position);
        let mut new_end = found.map_or(offset, |(_, header)| header.base_offset.min(offset));
        if found.is_none() {
            // No batch of this segment reaches `offset`; the first removed one is later.
            for segment in &segments[index + 1..] {
                if let Some(first) = segment.first_batch_offset()? {
                    new_end = first.min(offset);
                    break;
                }
            }
        }
        let is_active = index + 1 == segments.len();
        for segment in &segments[index + 1..] {
            segment.delete_files()?;
        }
        if is_active {
            let active = writer.as_mut().expect("caller checked the log is open");
            active.truncate_at(position)?;
            active.sync()?;
        } else {
            *writer = None;
            let capacity = Capacity::new(&self.config(), position);
            let now = self.clock.now_ms();
            let base = target.base_offset();
            let active = ActiveSegment::reopen(&self.dir, base, capacity, position, false, now)?;
            active.sync()?;
            let mut kept: Vec<_> = segments[..index].to_vec();
            kept.push(Arc::clone(active.segment()));
            self.publish_segments(kept);
            *writer = Some(active);
            return Ok(new_end);
        }
        self.publish_segments(segments[..=index].to_vec());
        Ok(new_end)
    }

    /// Deletes the oldest segments that retention no longer keeps: those whose newest record
    /// is older than `retention_ms`, then while the log is over `retention_bytes` by at least a
    /// segment. The active segment goes too if it qualifies (a new one is rolled first).
    /// Returns how many segments were deleted.
    pub fn delete_expired_segments(&self) -> Result<usize> {
        let mut writer = lock(&self.writer);
        self.check_online()?;
        if writer.is_none() {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        let config = self.config();
        if !config.cleanup_policy.delete {
            return Ok(0);
        }
        let segments = self.segments();
        let now = self.clock.now_ms();
        let mut count = 0;
        if let Some(retention_ms) = config.retention_ms {
            // A sealed segment that compaction emptied goes with the old ones around it.
            let sealed = segments.len() - 1;
            count = segments
                .iter()
                .enumerate()
                .take_while(|(i, s)| {
                    (s.is_empty() && *i < sealed)
                        || (!s.is_empty() && s.max_timestamp() < now - retention_ms)
                })
                .count();
        }
        if let Some(retention_bytes) = config.retention_bytes {
            let mut excess = self.size_bytes().saturating_sub(retention_bytes);
            for segment in &segments[..count] {
                excess = excess.saturating_sub(segment.size() as u64);
            }
            let active = segments.len() - 1;
            for (i, segment) in segments.iter().enumerate().skip(count) {
                if (segment.is_empty() && i == active) || (segment.size() as u64) > excess {
                    break;
                }
                excess -= segment.size() as u64;
                count += 1;
            }
        }
        if count == 0 {
            return Ok(0);
        }
        if count == segments.len() {
            // The active segment goes too: roll a fresh one to append to.
            self.roll_to(&mut writer, self.log_end_offset(), 0)?;
        }
        self.delete_first_segments(count)?;
        Ok(count)
    }

    /// Drops the `count` oldest segments and moves the log start offset past them.
    fn delete_first_segments(&self, count: usize) -> Result<()> {
        let segments = self.segments();
        debug_assert!(
            count < segments.len(),
            "the active segment is never deleted"
        );
        let remaining: Vec<_> = segments[count..].to_vec();
        let new_start = remaining[0].base_offset();
        // Move the start before dropping segments: a reader that misses a segment then sees
        // the new start and answers OffsetOutOfRange rather than skipping ahead.
        let new_start = self
            .log_start_offset
            .fetch_max(new_start, Ordering::AcqRel)
            .max(new_start);
        self.change_epochs(|epochs| Ok(epochs.truncate_from_start(new_start)))?;
        self.publish_segments(remaining);
        for segment in &segments[..count] {
            segment.delete_files()?;
        }
        Ok(())
    }

    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords; never back) and
    /// deletes the segments wholly below it. Returns the log start offset. An offset past the
    /// log end is [`Error::OffsetOutOfRange`]; keeping it at or below the high watermark is
    /// the caller's job. The new start is durable once the owner's recovery checkpoint
    /// records it ([`Log::checkpoint`]); until then a crash may bring back the records
    /// above the first remaining segment's base offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let writer = lock(&self.writer);
        self.check_online()?;
        if writer.is_none() {
            return Err(Error::Closed {
                dir: self.dir.clone(),
            });
        }
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.log_end_offset();
        if offset > log_end_offset || offset < 0 {
            return Err(Error::OffsetOutOfRange {
                dir: self.dir.clone(),
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        if offset <= log_start_offset {
            return Ok(log_start_offset);
        }
        self.log_start_offset.fetch_max(offset, Ordering::AcqRel);
        // Every segment whose successor starts at or below the new start holds only
        // records below it; the active segment is never deleted.
        let segments = self.segments();
        let count = segments[1..]
            .iter()
            .take_while(|next| next.base_offset() <= offset)
            .count();
        if count > 0 {
            self.delete_first_segments(count)?;
        } else {
            self.change_epochs(|epochs| Ok(epochs.truncate_from_start(offset)))?;
        }
        Ok(self.log_start_offset())
    }

    /// Makes everything appended so far durable and moves the recovery point to the log end.
    /// A failed flush takes the log offline (see [`Error::LogOffline`]).
    pub fn flush(&self) -> Result<()> {
        self.flush_below(Target::LogEnd)
    }

    /// Flushes the sealed segments only, moving the recovery point to the active segment's
    /// base offset. Cheap when they were flushed before.
    pub fn flush_sealed(&self) -> Result<()> {
        self.flush_below(Target::ActiveSegment)
    }

    /// Flushes if `flush_ms` is set and the oldest unflushed append is that old. Returns
    /// whether it flushed.
    pub fn flush_if_due(&self) -> Result<bool> {
        let Some(flush_ms) = self.config().flush_ms else {
            return Ok(false);
        };
        let first = self.first_unflushed_ms.load(Ordering::Acquire);
        if first < 0 || self.clock.now_ms() - first < flush_ms {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    fn flush_below(&self, target: Target) -> Result<()> {
        let _flushing = lock(&self.flush_lock);
        let target = match target {
            Target::LogEnd => {
                // Reset the counters before reading the end: an append that completes after
                // this counts again and is flushed next time; one before is below the end.
                self.unflushed_records.store(0, Ordering::Release);
                self.first_unflushed_ms.store(-1, Ordering::Release);
                self.log_end_offset()
            }
            Target::ActiveSegment => self.segments().last().map_or(0, |s| s.base_offset()),
        };
        let recovery_point = self.recovery_point();
        if target <= recovery_point {
            return Ok(());
        }
        let segments = self.segments();
        let pending = segments
            .iter()
            .filter(|s| s.next_offset() > recovery_point && s.base_offset() < target);
        for segment in pending {
            segment.sync().inspect_err(|e| self.go_offline(e))?;
        }
        if self.directory_changed.swap(false, Ordering::AcqRel) {
            files::sync_directory(&self.dir).inspect_err(|e| self.go_offline(e))?;
        }
        self.recovery_point.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Flushes everything, seals the active segment (trimming its files) and refuses further
    /// writes. Reads keep working.
    pub fn close(&self) -> Result<()> {
        let mut writer = lock(&self.writer);
        let Some(active) = writer.take() else {
            return Ok(());
        };
        let flushed = self.flush();
        active.seal();
        flushed
    }
}

/// The bytes and records of the batch at `position` of `segment`.
fn decode_batch_at(segment: &Segment, position: usize) -> Result<(Bytes, Vec<batch::Record>)> {
    let bytes = segment.read_from(position, 0, i64::MAX)?;
    let records = batch::decode(&bytes).map_err(|e| Error::Corrupt {
        path: segment.log_path().to_path_buf(),
        position: position as u64,
        reason: e.to_string(),
    })?;
    Ok((bytes, records))
}

/// The largest timestamp of the records of `segment` at or after `log_start_offset`, which
/// falls inside it: batch headers after it, the records of the batch that holds it.
fn max_timestamp_from(segment: &Segment, log_start_offset: i64) -> Result<Option<i64>> {
    let Some((start, _)) = segment.find_offset(log_start_offset)? else {
        return Ok(None);
    };
    let mut max_timestamp = None;
    for item in segment.headers_from(start) {
        let (position, header) = item?;
        let batch_max = if header.base_offset < log_start_offset {
            let (_, records) = decode_batch_at(segment, position)?;
            records
                .iter()
                .filter(|r| r.offset >= log_start_offset)
                .map(|r| r.timestamp)
                .max()
        } else {
            Some(header.max_timestamp)
        };
        max_timestamp = max_timestamp.max(batch_max);
    }
    Ok(max_timestamp)
}

/// Refuses a batch of leader epoch `epoch` after a record of a later one: recovery would
/// take it for damage.
fn check_epoch(
    dir: &Path,
    epochs: &LeaderEpochCache,
    epoch: i32,
    log_end_offset: i64,
) -> Result<()> {
    match epochs.written_epoch(log_end_offset) {
        Some(written_epoch) if epoch < written_epoch => Err(Error::LeaderEpochDecreased {
            dir: dir.to_path_buf(),
            epoch,
            written_epoch,
        }),
        _ => Ok(()),
    }
}

/// How far a flush goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Everything appended.
    LogEnd,
    /// The sealed segments, up to the active segment's base offset.
    ActiveSegment,
}

/// Validates every batch of an append; returns each one's position and header.
fn validate_batches(data: &[u8]) -> Result<Vec<(usize, BatchHeader)>> {
    let mut headers = Vec::new();
    let mut position = 0;
    while position < data.len() {
        let header = batch::validate(&data[position..])
            .map_err(|source| Error::InvalidBatch { position, source })?;
        headers.push((position, header));
        position += header.size();
    }
    if headers.is_empty() {
        return Err(Error::EmptyAppend);
    }
    Ok(headers)
}
