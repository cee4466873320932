//! One segment of a partition log: a log file of whole record batches and its two indexes.
//!
//! A [`Segment`] is what readers see: maps of the three files and the published length of each.
//! The log's single writer owns the [`ActiveSegment`], which adds writable maps of the same
//! files. An append copies batches past the published end, then publishes the new end:
//!
//! ```text
//!  log file   [ batch | batch | batch |  (being written)  | zeros (preallocated) ]
//!                                     ^ published end: readers stop here
//! ```
//!
//! Writer order: log bytes, log length, index entries, index lengths. Reader order: index
//! lengths, then log length, so every index entry a reader sees points below the end it sees.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use bytes::Bytes;
use memmap2::{Mmap, MmapMut};
use weir_proto::batch::{self, BatchHeader, STAMPED_PREFIX_LEN};

use super::error::{Error, Result};
use super::files;
use super::index::{self, Entry, OffsetEntry, TimeEntry};
use super::mmap;
use crate::config::LogConfig;

/// Appends at least this large are written with `pwritev` rather than copied into the map:
/// measured on ext4, a copy into a preallocated map pays for the kernel zero-filling each new
/// page first, which `pwritev` of whole pages skips; below this size one system call per append
/// costs more than that (see the storage benchmark).
pub(crate) const FILE_WRITE_MIN_BYTES: usize = 8 * 1024;

/// Slices per `pwritev` call (the kernel's IOV_MAX).
const IOV_MAX: usize = 1024;

/// Suffixes of a segment's files.
pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const OFFSET_INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Added to a segment file's name while the log cleaner writes its compacted copy.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// Added to a compacted log file's name once it is complete and is to replace the original.
pub(crate) const SWAP_SUFFIX: &str = "swap";

/// The path of a segment file: the base offset in 20 digits, as Kafka names them.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// A file, a read-only map of it, and how many of its bytes are published to readers.
#[derive(Debug)]
pub(crate) struct MappedFile {
    path: PathBuf,
    file: File,
    map: Arc<Mmap>,
    len: AtomicUsize,
}

impl MappedFile {
    fn new(path: PathBuf, file: File, map_len: usize, published: usize) -> Result<Self> {
        let map = Arc::new(mmap::map_read(&file, &path, map_len)?);
        Ok(Self {
            path,
            file,
            map,
            len: AtomicUsize::new(published),
        })
    }

    /// The published bytes.
    fn bytes(&self) -> &[u8] {
        &self.map[..self.len.load(Ordering::Acquire)]
    }

    fn publish(&self, len: usize) {
        debug_assert!(len <= self.map.len());
        self.len.store(len, Ordering::Release);
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, e))
    }

    /// Shortens the file to its published length (the map stays; nothing past it is read).
    fn trim(&self) -> Result<()> {
        let len = self.len.load(Ordering::Acquire) as u64;
        self.file
            .set_len(len)
            .map_err(|e| Error::io("trim", &self.path, e))
    }
}

/// A slice of a map that keeps the map alive: the owner behind the `Bytes` a read returns.
struct MapSlice {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

/// A segment as readers see it. Shared between the writer and any number of readers.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    log: MappedFile,
    offset_index: MappedFile,
    time_index: MappedFile,
    /// One past the last offset of the last batch, or `base_offset` when empty.
    next_offset: AtomicI64,
    /// The largest batch timestamp, or -1 when empty.
    max_timestamp: AtomicI64,
}

impl Segment {
    /// Opens a sealed segment for reading. `log_len` is the length of valid data in the log file.
    pub(crate) fn open_sealed(dir: &Path, base_offset: i64, log_len: usize) -> Result<Segment> {
        let log = open_mapped(segment_path(dir, base_offset, LOG_SUFFIX), Some(log_len))?;
        let offset_index = open_mapped(segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX), None)?;
        let time_index = open_mapped(segment_path(dir, base_offset, TIME_INDEX_SUFFIX), None)?;
        let segment = Segment {
            base_offset,
            log,
            offset_index,
            time_index,
            next_offset: AtomicI64::new(base_offset),
            max_timestamp: AtomicI64::new(-1),
        };
        segment.load_tail()?;
        Ok(segment)
    }

    /// Finds the end of the batches (the file may have zeros past them, as a preallocated
    /// file does) by walking headers from the last offset index entry, or from the start if
    /// the index leads nowhere, and sets the published length, `next_offset` and
    /// `max_timestamp` from it.
    fn load_tail(&self) -> Result<()> {
        let from_index = index::last::<OffsetEntry>(self.offset_index.bytes())
            .map(|e| e.position as usize)
            .filter(|&position| position < self.log.bytes().len());
        let indexed_max = index::last::<TimeEntry>(self.time_index.bytes()).map(|e| e.timestamp);
        let tail = match from_index.map(|start| self.walk_tail(start)) {
            Some(Ok(tail)) => tail,
            // A damaged index pointed into the middle of a batch: walk from the start.
            _ => self.walk_tail(0)?,
        };
        let (end, next_offset, max_timestamp) = tail;
        self.log.publish(end);
        self.next_offset.store(next_offset, Ordering::Release);
        let max_timestamp = max_timestamp.max(indexed_max.unwrap_or(-1));
        self.max_timestamp.store(max_timestamp, Ordering::Release);
        Ok(())
    }

    /// Walks batch headers from `start` to the end of the data: returns the end position, the
    /// next offset and the largest timestamp seen.
    fn walk_tail(&self, start: usize) -> Result<(usize, i64, i64)> {
        let log = self.log.bytes();
        let mut next_offset = self.base_offset;
        let mut max_timestamp = -1;
        let mut position = start;
        while position < log.len() {
            let rest = &log[position..];
            if rest[..rest.len().min(batch::HEADER_LEN)]
                .iter()
                .all(|&b| b == 0)
            {
                break;
            }
            let header = self.header_at(log, position)?;
            next_offset = header.next_offset();
            max_timestamp = max_timestamp.max(header.max_timestamp);
            position += header.size();
        }
        if start > 0 && position == start {
            return Err(self.corrupt(start, "an index entry points past the batches"));
        }
        Ok((position, next_offset, max_timestamp))
    }

    /// Why the offset index's last entry does not point at the start of the batch it names,
    /// if it does not. (Checking every entry would read the whole segment at every start.)
    pub(crate) fn last_index_entry_problem(&self) -> Option<String> {
        let entry = index::last::<OffsetEntry>(self.offset_index.bytes())?;
        let log = self.log.bytes();
        let position = entry.position as usize;
        let expected = self.base_offset + i64::from(entry.relative_offset);
        match self.header_at(log, position) {
            Ok(header) if header.base_offset == expected => None,
            _ => Some(format!(
                "its last entry does not point at the batch of offset {expected}"
            )),
        }
    }

    /// The header of the last batch, if any.
    pub(crate) fn last_batch(&self) -> Result<Option<BatchHeader>> {
        let last_offset = self.next_offset() - 1;
        if self.is_empty() {
            return Ok(None);
        }
        Ok(self.find_offset(last_offset)?.map(|(_, header)| header))
    }

    /// The base offset of the first batch, if any.
    pub(crate) fn first_batch_offset(&self) -> Result<Option<i64>> {
        let log = self.log.bytes();
        if log.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.header_at(log, 0)?.base_offset))
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Bytes of batches published.
    pub(crate) fn size(&self) -> usize {
        self.log.len.load(Ordering::Acquire)
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size() == 0
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log.path
    }

    /// The offset index's published bytes.
    pub(crate) fn offset_index_bytes(&self) -> &[u8] {
        self.offset_index.bytes()
    }

    /// The time index's published bytes.
    pub(crate) fn time_index_bytes(&self) -> &[u8] {
        self.time_index.bytes()
    }

    /// The header of the batch at `position` of `log`, which was validated when written.
    fn header_at(&self, log: &[u8], position: usize) -> Result<BatchHeader> {
        let header = BatchHeader::parse(&log[position..]).map_err(|e| self.corrupt(position, e))?;
        if position + header.size() > log.len() {
            let reason = "batch runs past the end of the segment";
            return Err(self.corrupt(position, reason));
        }
        Ok(header)
    }

    fn corrupt(&self, position: usize, reason: impl ToString) -> Error {
        Error::Corrupt {
            path: self.log.path.clone(),
            position: position as u64,
            reason: reason.to_string(),
        }
    }

    /// The first batch whose last offset is at least `offset`, with its position, or `None`
    /// if every batch here ends before `offset`.
    pub(crate) fn find_offset(&self, offset: i64) -> Result<Option<(usize, BatchHeader)>> {
        let relative = offset - self.base_offset;
        let entry = index::lookup::<OffsetEntry>(self.offset_index.bytes(), relative);
        let log = self.log.bytes();
        let start = entry.map_or(0, |e| e.position as usize);
        // An index shortened by a truncation may briefly point past a reader's view of the log.
        let start = if start < log.len() { start } else { 0 };
        self.scan_from(log, start, |header| header.last_offset() >= offset)
    }

    /// The first batch whose largest timestamp is at least `timestamp`, with its position.
    pub(crate) fn find_timestamp(&self, timestamp: i64) -> Result<Option<(usize, BatchHeader)>> {
        let entry = index::lookup::<TimeEntry>(self.time_index.bytes(), timestamp);
        let start = match entry {
            Some(e) => {
                // The batch that set this maximum starts at or after this offset entry.
                let index_bytes = self.offset_index.bytes();
                let at = index::lookup::<OffsetEntry>(index_bytes, i64::from(e.relative_offset));
                at.map_or(0, |e| e.position as usize)
            }
            None => 0,
        };
        let log = self.log.bytes();
        let start = if start < log.len() { start } else { 0 };
        self.scan_from(log, start, |header| header.max_timestamp >= timestamp)
    }

    fn scan_from(
        &self,
        log: &[u8],
        mut position: usize,
        found: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(usize, BatchHeader)>> {
        while position < log.len() {
            let header = self.header_at(log, position)?;
            if found(&header) {
                return Ok(Some((position, header)));
            }
            position += header.size();
        }
        Ok(None)
    }

    /// The headers of the batches from byte `position` to the end of the published data, with
    /// their positions. Headers were validated when written; a damaged one ends the walk with
    /// [`Error::Corrupt`].
    pub(crate) fn headers_from(
        &self,
        position: usize,
    ) -> impl Iterator<Item = Result<(usize, BatchHeader)>> + '_ {
        let log = self.log.bytes();
        let mut position = position;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || position >= log.len() {
                return None;
            }
            let item = self
                .header_at(log, position)
                .map(|header| (position, header));
            match &item {
                Ok((_, header)) => position += header.size(),
                Err(_) => failed = true,
            }
            Some(item)
        })
    }

    /// Whole batches starting at `position`: the first one always, then more while the total
    /// stays within `max_bytes` and each batch ends below `upper_offset`. The result shares the
    /// map; nothing is copied.
    pub(crate) fn read_from(
        &self,
        position: usize,
        max_bytes: usize,
        upper_offset: i64,
    ) -> Result<Bytes> {
        let log = self.log.bytes();
        let mut end = position;
        while end < log.len() {
            let header = self.header_at(log, end)?;
            let first = end == position;
            if header.last_offset() >= upper_offset
                || (!first && end + header.size() - position > max_bytes)
            {
                break;
            }
            end += header.size();
        }
        if end == position {
            return Ok(Bytes::new());
        }
        Ok(Bytes::from_owner(MapSlice {
            map: Arc::clone(&self.log.map),
            start: position,
            end,
        }))
    }

    /// Makes everything written to this segment durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.log.sync()?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Removes the segment's files. Readers holding its bytes keep them: the maps stay valid.
    pub(crate) fn delete_files(&self) -> Result<()> {
        for file in [&self.log, &self.offset_index, &self.time_index] {
            files::remove_if_exists(&file.path)?;
        }
        Ok(())
    }
}

fn file_len(path: &Path) -> Result<usize> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    Ok(usize::try_from(len).expect("64-bit platform"))
}

fn open_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open", path, e))
}

/// Opens `path` (created empty if missing) and maps `len` bytes of it, or all of it.
fn open_mapped(path: PathBuf, len: Option<usize>) -> Result<MappedFile> {
    let file = open_file(&path)?;
    let len = match len {
        Some(len) => len,
        None => file_len(&path)?,
    };
    MappedFile::new(path, file, len, len)
}

/// Sizes of a segment's files while it is active.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capacity {
    pub(crate) log_bytes: u64,
    pub(crate) index_bytes: u64,
    pub(crate) index_interval_bytes: u64,
}

impl Capacity {
    /// Sizes for a new active segment under `config` with room for at least `bytes`.
    pub(crate) fn new(config: &LogConfig, bytes: usize) -> Capacity {
        Capacity {
            log_bytes: config.segment_bytes.max(bytes as u64),
            index_bytes: config.segment_index_bytes,
            index_interval_bytes: config.index_interval_bytes,
        }
    }
}

/// Where one batch of an append goes: its bytes within the appended buffer, and the offset
/// and leader epoch to stamp on it (`None` keeps what the batch carries).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub(crate) position: usize,
    pub(crate) header: BatchHeader,
    pub(crate) base_offset: i64,
    pub(crate) leader_epoch: Option<i32>,
}

/// The segment being appended to, owned by the log's single writer.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    segment: Arc<Segment>,
    log_map: MmapMut,
    offset_index_map: MmapMut,
    time_index_map: MmapMut,
    /// Bytes of index entries written, published or about to be.
    offset_index_len: usize,
    time_index_len: usize,
    /// The timestamp of the last time index entry, or -1: kept here so that appends never read
    /// the index map (a read fault there costs a read-ahead).
    last_time_entry_timestamp: i64,
    index_interval_bytes: u64,
    bytes_since_index_entry: u64,
    max_timestamp_so_far: i64,
    /// Base offset of the batch where `max_timestamp_so_far` was first seen.
    offset_of_max_timestamp: i64,
    /// When `segment_ms` starts counting for this segment.
    rolling_base_ms: i64,
}

impl ActiveSegment {
    /// Creates a new, empty segment at `base_offset`, preallocating its files. On error no file
    /// of the segment is left behind.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        capacity: Capacity,
        now_ms: i64,
    ) -> Result<ActiveSegment> {
        let paths = SegmentPaths::new(dir, base_offset);
        let created = Self::open(base_offset, &paths, capacity, 0, false);
        if created.is_err() {
            for path in paths.all() {
                if let Err(e) = std::fs::remove_file(path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e,
                        "could not remove a file of a segment that failed to be created");
                }
            }
        }
        let mut active = created?;
        active.rolling_base_ms = now_ms;
        Ok(active)
    }

    /// Creates the files of a compacted copy of the segment at `base_offset`, named
    /// `<base>.log.cleaned` (and the index files likewise), to be filled with
    /// [`Self::append`] and then sealed and renamed into place by the log cleaner.
    pub(crate) fn create_cleaned(
        dir: &Path,
        base_offset: i64,
        capacity: Capacity,
    ) -> Result<ActiveSegment> {
        let paths = SegmentPaths::with_suffix(dir, base_offset, CLEANED_SUFFIX);
        for path in paths.all() {
            files::remove_if_exists(path)?;
        }
        Self::open(base_offset, &paths, capacity, 0, false)
    }

    /// Opens an existing segment to append to it. Its first `valid_len` log bytes are kept and
    /// anything after them is zeroed, so recovery can never take stale batches back. With
    /// `trusted_indexes` the index files are used as they are (their sizes give the entry
    /// counts); otherwise they are rebuilt from the log.
    pub(crate) fn reopen(
        dir: &Path,
        base_offset: i64,
        capacity: Capacity,
        valid_len: usize,
        trusted_indexes: bool,
        now_ms: i64,
    ) -> Result<ActiveSegment> {
        let paths = SegmentPaths::new(dir, base_offset);
        let mut active = Self::open(base_offset, &paths, capacity, valid_len, trusted_indexes)?;
        if !trusted_indexes {
            active.rebuild_indexes()?;
        }
        let log = active.segment.log.bytes();
        active.rolling_base_ms = if log.is_empty() {
            now_ms
        } else {
            active.segment.header_at(log, 0)?.max_timestamp
        };
        Ok(active)
    }

    fn open(
        base_offset: i64,
        paths: &SegmentPaths,
        capacity: Capacity,
        valid_len: usize,
        trusted_indexes: bool,
    ) -> Result<ActiveSegment> {
        let log_cap = usize::try_from(capacity.log_bytes)
            .expect("64-bit")
            .max(valid_len);
        let index_cap = usize::try_from(capacity.index_bytes).expect("64-bit");
        let (log_file, log_old_len) = open_preallocated(&paths.log, log_cap)?;
        let (offset_file, offset_old_len) = open_preallocated(&paths.offset_index, index_cap)?;
        let (time_file, time_old_len) = open_preallocated(&paths.time_index, index_cap)?;
        let whole = |len: usize, size: usize| len.min(index_cap) / size * size;
        let (offset_index_len, time_index_len) = if trusted_indexes {
            (
                whole(offset_old_len, OffsetEntry::SIZE),
                whole(time_old_len, TimeEntry::SIZE),
            )
        } else {
            (0, 0)
        };

        let mut log_map = mmap::map_write(&log_file, &paths.log, log_cap)?;
        // Bytes past the valid data may hold stale batches (after a truncation): zero them.
        let stale_end = log_old_len.min(log_cap);
        if stale_end > valid_len {
            log_map[valid_len..stale_end].fill(0);
        }
        let offset_index_map = mmap::map_write(&offset_file, &paths.offset_index, index_cap)?;
        let time_index_map = mmap::map_write(&time_file, &paths.time_index, index_cap)?;
        for (map, path) in [
            (&offset_index_map, &paths.offset_index),
            (&time_index_map, &paths.time_index),
        ] {
            mmap::advise_random(map, path);
        }
        let segment = Segment {
            base_offset,
            log: MappedFile::new(paths.log.clone(), log_file, log_cap, valid_len)?,
            offset_index: MappedFile::new(
                paths.offset_index.clone(),
                offset_file,
                index_cap,
                offset_index_len,
            )?,
            time_index: MappedFile::new(
                paths.time_index.clone(),
                time_file,
                index_cap,
                time_index_len,
            )?,
            next_offset: AtomicI64::new(base_offset),
            max_timestamp: AtomicI64::new(-1),
        };
        segment.load_tail()?;
        let last_time_entry = index::last::<TimeEntry>(segment.time_index.bytes());
        // The batch holding the maximum may be past the last entry; an earlier offset keeps
        // lookups correct (they scan forward from the entry).
        let offset_of_max_timestamp =
            last_time_entry.map_or(base_offset, |e| base_offset + i64::from(e.relative_offset));
        Ok(ActiveSegment {
            max_timestamp_so_far: segment.max_timestamp(),
            segment: Arc::new(segment),
            log_map,
            offset_index_map,
            time_index_map,
            offset_index_len,
            time_index_len,
            index_interval_bytes: capacity.index_interval_bytes,
            bytes_since_index_entry: 0,
            offset_of_max_timestamp,
            last_time_entry_timestamp: last_time_entry.map_or(-1, |e| e.timestamp),
            rolling_base_ms: 0,
        })
    }

    /// The segment readers see.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    /// When `segment_ms` starts counting for this segment.
    pub(crate) fn rolling_base_ms(&self) -> i64 {
        self.rolling_base_ms
    }

    /// The sizes this segment's files were opened with.
    pub(crate) fn capacity(&self) -> Capacity {
        Capacity {
            log_bytes: self.log_map.len() as u64,
            index_bytes: self.offset_index_map.len() as u64,
            index_interval_bytes: self.index_interval_bytes,
        }
    }

    /// Whether `bytes` more bytes of batches, the last of which ends at `last_offset`, fit.
    pub(crate) fn has_room(&self, bytes: usize, last_offset: i64) -> bool {
        self.segment.size() + bytes <= self.log_map.len()
            && self.offset_index_len + OffsetEntry::SIZE <= self.offset_index_map.len()
            && self.time_index_len + TimeEntry::SIZE <= self.time_index_map.len()
            && last_offset - self.segment.base_offset <= i64::from(i32::MAX)
    }

    /// Copies `data` to the end of the segment, stamps each batch as `placements` say, adds
    /// index entries, and publishes the new end. The caller checked [`Self::has_room`].
    ///
    /// Appends of at least [`FILE_WRITE_MIN_BYTES`] go through the file with `pwritev`, smaller
    /// ones are copied into the map (see ARCHITECTURE.md, "Design decisions"). Either way the
    /// bytes land in the page cache that readers' maps show. A failed write leaves bytes past
    /// the published end, so the caller must take the log offline.
    pub(crate) fn append(&mut self, data: &[u8], placements: &[Placement]) -> Result<()> {
        let start = self.segment.size();
        let end = start + data.len();
        let prefixes: Vec<[u8; STAMPED_PREFIX_LEN]> = placements
            .iter()
            .map(|p| batch::stamped_prefix(&data[p.position..], p.base_offset, p.leader_epoch))
            .collect();
        if data.len() >= FILE_WRITE_MIN_BYTES {
            self.write_through_file(start, data, placements, &prefixes)?;
        } else {
            self.log_map[start..end].copy_from_slice(data);
            for (placement, prefix) in placements.iter().zip(&prefixes) {
                let at = start + placement.position;
                self.log_map[at..at + STAMPED_PREFIX_LEN].copy_from_slice(prefix);
            }
        }
        for placement in placements {
            let header = BatchHeader {
                base_offset: placement.base_offset,
                ..placement.header
            };
            self.index_batch(start + placement.position, &header);
        }
        let last = placements.last().expect("an append has at least one batch");
        let next_offset = last.base_offset + i64::from(last.header.last_offset_delta) + 1;
        self.segment
            .next_offset
            .store(next_offset, Ordering::Release);
        self.segment
            .max_timestamp
            .store(self.max_timestamp_so_far, Ordering::Release);
        self.segment.log.publish(end);
        self.publish_indexes();
        Ok(())
    }

    /// Writes the batches at `start` with `pwritev`: each batch's stamped prefix, then the rest
    /// of it from the caller's buffer, without copying it first.
    fn write_through_file(
        &self,
        start: usize,
        data: &[u8],
        placements: &[Placement],
        prefixes: &[[u8; STAMPED_PREFIX_LEN]],
    ) -> Result<()> {
        let mut slices = Vec::with_capacity(2 * placements.len());
        for (placement, prefix) in placements.iter().zip(prefixes) {
            let batch = &data[placement.position..placement.position + placement.header.size()];
            slices.push(IoSlice::new(prefix));
            slices.push(IoSlice::new(&batch[STAMPED_PREFIX_LEN..]));
        }
        let log = &self.segment.log;
        let mut remaining = &mut slices[..];
        let mut at = start as u64;
        while !remaining.is_empty() {
            let chunk = remaining.len().min(IOV_MAX);
            let written = rustix::io::pwritev(&log.file, &remaining[..chunk], at)
                .map_err(|e| Error::io("write", &log.path, e.into()))?;
            if written == 0 {
                let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                return Err(Error::io("write", &log.path, e));
            }
            at += written as u64;
            IoSlice::advance_slices(&mut remaining, written);
        }
        Ok(())
    }

    /// Adds index entries for the batch at `position`, as Kafka does: an entry once more than
    /// `index_interval_bytes` were written since the last one. Entries are published later.
    fn index_batch(&mut self, position: usize, header: &BatchHeader) {
        if header.max_timestamp > self.max_timestamp_so_far {
            self.max_timestamp_so_far = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        if self.bytes_since_index_entry > self.index_interval_bytes {
            let entry = OffsetEntry {
                relative_offset: self.relative(header.base_offset),
                position: u32::try_from(position).expect("segments are under 2 GiB"),
            };
            let at = self.offset_index_len;
            entry.encode(&mut self.offset_index_map[at..at + OffsetEntry::SIZE]);
            self.offset_index_len += OffsetEntry::SIZE;
            self.push_time_entry();
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += header.size() as u64;
    }

    /// Adds a time index entry for the largest timestamp so far, if it grew since the last.
    fn push_time_entry(&mut self) {
        if self.max_timestamp_so_far <= self.last_time_entry_timestamp {
            return;
        }
        let entry = TimeEntry {
            timestamp: self.max_timestamp_so_far,
            relative_offset: self.relative(self.offset_of_max_timestamp),
        };
        let at = self.time_index_len;
        entry.encode(&mut self.time_index_map[at..at + TimeEntry::SIZE]);
        self.time_index_len += TimeEntry::SIZE;
        self.last_time_entry_timestamp = entry.timestamp;
    }

    fn publish_indexes(&self) {
        self.segment.offset_index.publish(self.offset_index_len);
        self.segment.time_index.publish(self.time_index_len);
    }

    fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset - self.segment.base_offset).expect("has_room checked the offset range")
    }

    /// Rebuilds both indexes from the published batches.
    fn rebuild_indexes(&mut self) -> Result<()> {
        self.offset_index_len = 0;
        self.time_index_len = 0;
        self.bytes_since_index_entry = 0;
        self.max_timestamp_so_far = -1;
        self.offset_of_max_timestamp = self.segment.base_offset;
        self.last_time_entry_timestamp = -1;
        let segment = Arc::clone(&self.segment);
        let log = segment.log.bytes();
        let mut position = 0;
        let mut next_offset = segment.base_offset;
        while position < log.len() {
            let header = segment.header_at(log, position)?;
            self.index_batch(position, &header);
            next_offset = header.next_offset();
            position += header.size();
        }
        segment.next_offset.store(next_offset, Ordering::Release);
        segment
            .max_timestamp
            .store(self.max_timestamp_so_far, Ordering::Release);
        self.publish_indexes();
        Ok(())
    }

    /// Removes every batch at or after `position` (a batch boundary): the bytes are zeroed and
    /// the indexes rebuilt. Only data no reader was allowed to see may be truncated.
    pub(crate) fn truncate_at(&mut self, position: usize) -> Result<()> {
        let end = self.segment.size();
        assert!(
            position <= end,
            "truncation point {position} is past the end {end}"
        );
        self.segment.log.publish(position);
        self.log_map[position..end].fill(0);
        self.rebuild_indexes()
    }

    /// Makes everything written so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.segment.sync()
    }

    /// Ends appends to this segment: adds the final time index entry, drops the writable maps,
    /// and trims the files to their contents. Returns the segment for readers.
    pub(crate) fn seal(mut self) -> Arc<Segment> {
        self.push_time_entry();
        self.publish_indexes();
        let segment = Arc::clone(&self.segment);
        drop(self);
        for file in [&segment.log, &segment.offset_index, &segment.time_index] {
            // A file left longer than its contents is still read correctly (the published
            // length bounds every read, and reopening re-checks it), so this only warns.
            if let Err(e) = file.trim() {
                tracing::warn!(error = %e, "could not trim a sealed segment file");
            }
        }
        segment
    }
}

/// The three files of a segment.
#[derive(Debug)]
pub(crate) struct SegmentPaths {
    pub(crate) log: PathBuf,
    pub(crate) offset_index: PathBuf,
    pub(crate) time_index: PathBuf,
}

impl SegmentPaths {
    pub(crate) fn new(dir: &Path, base_offset: i64) -> Self {
        Self {
            log: segment_path(dir, base_offset, LOG_SUFFIX),
            offset_index: segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX),
            time_index: segment_path(dir, base_offset, TIME_INDEX_SUFFIX),
        }
    }

    /// The same files with `.<suffix>` added to their names.
    pub(crate) fn with_suffix(dir: &Path, base_offset: i64, suffix: &str) -> Self {
        let with = |path: PathBuf| {
            let mut name = path.into_os_string();
            name.push(".");
            name.push(suffix);
            PathBuf::from(name)
        };
        let plain = Self::new(dir, base_offset);
        Self {
            log: with(plain.log),
            offset_index: with(plain.offset_index),
            time_index: with(plain.time_index),
        }
    }

    pub(crate) fn all(&self) -> [&PathBuf; 3] {
        [&self.log, &self.offset_index, &self.time_index]
    }
}

/// Opens (creating if needed) `path` and preallocates it to at least `len` bytes. Returns the
/// file and its length before preallocation.
fn open_preallocated(path: &Path, len: usize) -> Result<(File, usize)> {
    let file = open_file(path)?;
    let old_len = file_len(path)?;
    mmap::preallocate(&file, path, len as u64)?;
    Ok((file, old_len))
}
