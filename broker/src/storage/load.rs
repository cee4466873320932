//! Opening a log from its files: listing segments, trusting what was flushed, recovering what
//! may not have been (see [`super::recovery`]) and rebuilding indexes that disagree with their
//! log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::error::{Error, Result};
use super::files;
use super::index;
use super::log::OpenState;
use super::mmap;
use super::recovery::{self, ScanStart};
use super::segment::{
    self, ActiveSegment, Capacity, LOG_SUFFIX, OFFSET_INDEX_SUFFIX, Segment, TIME_INDEX_SUFFIX,
};
use crate::config::LogConfig;

/// The base offsets of the segments in `dir`, with their log file lengths. Index files without
/// a log file are removed; other files are left alone.
pub(super) fn list_segments(dir: &Path) -> Result<BTreeMap<i64, u64>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut logs = BTreeMap::new();
    let mut indexes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some((stem, suffix)) = name.to_str().and_then(|n| n.split_once('.')) else {
            continue;
        };
        let Ok(base_offset) = stem.parse::<i64>() else {
            continue;
        };
        if stem.len() != 20 || base_offset < 0 {
            continue;
        }
        match suffix {
            LOG_SUFFIX => {
                let len = entry
                    .metadata()
                    .map_err(|e| Error::io("stat", &entry.path(), e))?
                    .len();
                logs.insert(base_offset, len);
            }
            OFFSET_INDEX_SUFFIX | TIME_INDEX_SUFFIX => indexes.push((base_offset, entry.path())),
            _ => {}
        }
    }
    for (base_offset, path) in indexes {
        if !logs.contains_key(&base_offset) {
            std::fs::remove_file(&path)
                .map_err(|e| Error::io("remove orphaned index", &path, e))?;
        }
    }
    Ok(logs)
}

/// The segments of a log after opening: sealed ones and the active one, and the offset below
/// which everything is known flushed.
pub(super) struct Opened {
    pub(super) sealed: Vec<Arc<Segment>>,
    pub(super) active: ActiveSegment,
    pub(super) flushed_below: i64,
}

/// Opens the segments found in `dir`, recovering those that may hold unflushed data.
pub(super) fn open_segments(
    dir: &Path,
    bases: &BTreeMap<i64, u64>,
    config: &LogConfig,
    now_ms: i64,
    state: OpenState,
) -> Result<Opened> {
    let checkpoint = state.checkpoint;
    let flushed_below = if state.clean_shutdown {
        i64::MAX
    } else {
        checkpoint.map_or(0, |c| c.recovery_point)
    };
    let bases: Vec<(i64, u64)> = bases.iter().map(|(&b, &l)| (b, l)).collect();
    if bases.is_empty() {
        let base = checkpoint.map_or(0, |c| c.log_start_offset.max(0));
        let active = ActiveSegment::create(dir, base, Capacity::new(config, 0), now_ms)?;
        return Ok(Opened {
            sealed: Vec::new(),
            active,
            flushed_below: base,
        });
    }
    let mut sealed = Vec::new();
    let mut next = ScanStart {
        segment_base_offset: bases[0].0,
        next_offset: bases[0].0,
        flushed_below,
        last_epoch: -1,
    };
    let mut recovered_from = None;
    for (i, &(base_offset, file_len)) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).map(|&(b, _)| b);
        let is_last = next_base.is_none();
        next.segment_base_offset = base_offset;
        if next_base.is_some_and(|b| b <= flushed_below) || state.clean_shutdown {
            // Flushed: trust the batches, check the indexes.
            match open_flushed(dir, base_offset, file_len, config, now_ms, is_last) {
                Ok(Flushed::Sealed {
                    segment,
                    last_epoch,
                }) => {
                    next.next_offset = segment.next_offset();
                    next.last_epoch = last_epoch.unwrap_or(next.last_epoch);
                    sealed.push(segment);
                    continue;
                }
                Ok(Flushed::Active(active)) => {
                    return Ok(Opened {
                        sealed,
                        active,
                        flushed_below,
                    });
                }
                Err(error @ Error::Corrupt { .. }) => {
                    tracing::warn!(%error, "a flushed segment is damaged; recovering it batch by batch");
                }
                Err(error) => return Err(error),
            }
        }
        if next.next_offset < base_offset && next.next_offset >= flushed_below {
            // The previous segment ended before this one's base offset, and this one holds
            // unflushed data: a roll at a replicated gap. The contiguous tail starts here.
            next.next_offset = base_offset;
        }
        let path = segment::segment_path(dir, base_offset, LOG_SUFFIX);
        let scan = scan_file(&path, file_len, next)?;
        if let Some(reason) = &scan.damage {
            tracing::warn!(path = %path.display(), position = scan.valid_len, reason = %reason,
                "recovery truncates the log at the first invalid batch");
        }
        if file_len > scan.valid_len as u64 {
            files::truncate_file(&path, scan.valid_len as u64)?;
        }
        let capacity = Capacity::new(config, scan.valid_len);
        let active =
            ActiveSegment::reopen(dir, base_offset, capacity, scan.valid_len, false, now_ms)?;
        next.next_offset = scan.next_offset;
        next.last_epoch = scan.last_epoch;
        // Recovered bytes may be in the page cache only; the log flushes them once open.
        let recovered_from = *recovered_from.get_or_insert(base_offset);
        if scan.damage.is_some() || is_last {
            for &(later, _) in &bases[i + 1..] {
                tracing::warn!(dir = %dir.display(), base_offset = later,
                    "recovery removes a segment after the truncation point");
                for path in segment::SegmentPaths::new(dir, later).all() {
                    files::remove_if_exists(path)?;
                }
            }
            return Ok(Opened {
                sealed,
                active,
                flushed_below: flushed_below.min(recovered_from),
            });
        }
        sealed.push(active.seal());
    }
    unreachable!("the last segment returns from the loop")
}

/// A flushed segment, opened.
enum Flushed {
    /// A sealed segment and the leader epoch of its last batch.
    Sealed {
        segment: Arc<Segment>,
        last_epoch: Option<i32>,
    },
    /// The last segment, ready for appends.
    Active(ActiveSegment),
}

/// Opens a segment whose batches were flushed (so are trusted). Its indexes are checked and
/// rebuilt if they disagree with the log; the last segment is reopened for appends.
fn open_flushed(
    dir: &Path,
    base_offset: i64,
    file_len: u64,
    config: &LogConfig,
    now_ms: i64,
    is_last: bool,
) -> Result<Flushed> {
    let paths = segment::SegmentPaths::new(dir, base_offset);
    let missing = [&paths.offset_index, &paths.time_index]
        .into_iter()
        .find(|p| !p.exists());
    let missing = missing.map(|path| (path.clone(), "the file is missing".to_string()));
    let log_len = usize::try_from(file_len).expect("64-bit");
    let segment = Segment::open_sealed(dir, base_offset, log_len)?;
    let max_relative =
        u32::try_from((segment.next_offset() - base_offset).max(0)).unwrap_or(u32::MAX);
    let problem = missing
        .or_else(|| {
            index::offset_index_problem(segment.offset_index_bytes(), segment.size() as u64)
                .or_else(|| segment.last_index_entry_problem())
                .map(|p| (paths.offset_index.clone(), p))
        })
        .or_else(|| {
            index::time_index_problem(segment.time_index_bytes(), max_relative)
                .map(|p| (paths.time_index.clone(), p))
        });
    if problem.is_none() && !is_last {
        let last_epoch = segment.last_batch()?.map(|h| h.partition_leader_epoch);
        return Ok(Flushed::Sealed {
            segment: Arc::new(segment),
            last_epoch,
        });
    }
    if let Some((path, problem)) = &problem {
        tracing::warn!(path = %path.display(), problem = %problem,
            "rebuilding an index that disagrees with its log");
    }
    let valid_len = segment.size();
    drop(segment);
    if file_len > valid_len as u64 {
        // Zeros past the batches (a log that was never trimmed): drop them before reopening,
        // rather than have the reopened segment write zeros over them.
        files::truncate_file(&paths.log, valid_len as u64)?;
    }
    let capacity = Capacity::new(config, valid_len);
    let trusted = problem.is_none();
    let active = ActiveSegment::reopen(dir, base_offset, capacity, valid_len, trusted, now_ms)?;
    if is_last {
        return Ok(Flushed::Active(active));
    }
    let segment = active.seal();
    let last_epoch = segment.last_batch()?.map(|h| h.partition_leader_epoch);
    Ok(Flushed::Sealed {
        segment,
        last_epoch,
    })
}

/// Maps a log file read-only and validates its batches.
fn scan_file(path: &Path, file_len: u64, start: ScanStart) -> Result<recovery::Scan> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let map = mmap::map_read(&file, path, usize::try_from(file_len).expect("64-bit"))?;
    Ok(recovery::scan(&map, start))
}
