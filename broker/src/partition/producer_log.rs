//! A partition's idempotent-producer state kept with its log: loaded when the partition is
//! opened, from the newest usable snapshot file plus the batch headers after it (or from the
//! whole log), and snapshotted now and then so that loading stays quick for big logs.
//!
//! ```text
//!  <log dir>/00000000000000004711.snapshot   the state of every batch below offset 4711
//!            ... segments ...                 batch headers from 4711 on are replayed
//! ```
//!
//! Invariants:
//! - A snapshot at offset N holds exactly the batches below N: it is taken under the same lock
//!   as appends, at the log end. It is written atomically with a CRC (`storage` checkpoint
//!   framing), so a crash leaves the old file or the new one.
//! - A snapshot beyond the log end (the log lost an unflushed tail in a crash) or one that does
//!   not decode is deleted, never used; the next older one, or the log itself, is used instead.
//! - Loading never decodes a record: headers carry all the state needs.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::producer_state::ProducerStates;
use crate::storage::{self, Log, read_checkpoint, write_checkpoint};

/// The suffix of snapshot files (Kafka's name for the same files).
const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// The version of the snapshot encoding, in the checkpoint frame.
const SNAPSHOT_VERSION: u16 = 1;
/// How many snapshot files are kept: the newest, and one to fall back to if it is damaged.
const SNAPSHOTS_KEPT: usize = 2;

/// How a partition's producer state was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadReport {
    /// The offset of the snapshot it started from; `None` if it read the log from its start.
    pub(crate) snapshot_offset: Option<i64>,
    /// How many batch headers were read from the log after the snapshot.
    pub(crate) batches_scanned: usize,
    /// How many producers are known after loading.
    pub(crate) producers: usize,
    /// How many producers were dropped as expired.
    pub(crate) expired: usize,
}

/// When to write a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotWhen {
    /// Only if the log rolled a segment since the last snapshot (so there is about one per
    /// segment, as in Kafka).
    AfterRoll,
    /// Whenever the log moved since the last snapshot (at shutdown).
    Moved,
}

/// One partition's producer state and its snapshot files. See the module documentation.
#[derive(Debug)]
pub(crate) struct ProducerStateManager {
    dir: PathBuf,
    state: Mutex<ProducerStates>,
    /// The offset of the newest snapshot file; held while one is written.
    last_snapshot: Mutex<Option<i64>>,
}

impl ProducerStateManager {
    /// Loads the producer state of `log`: the newest snapshot at or below the log end, then
    /// the headers of the batches after it; producers idle for `expiration_ms` at `now_ms`
    /// are dropped.
    pub(crate) fn load(
        log: &Log,
        now_ms: i64,
        expiration_ms: i64,
    ) -> Result<(ProducerStateManager, LoadReport), storage::Error> {
        let dir = log.dir().to_path_buf();
        let (state, report) = read_state(&dir, log, now_ms, expiration_ms)?;
        let manager = ProducerStateManager {
            dir,
            state: Mutex::new(state),
            last_snapshot: Mutex::new(report.snapshot_offset),
        };
        Ok((manager, report))
    }

    /// Rebuilds `state` (this manager's, locked by the caller) from `log` after a follower
    /// truncated it: snapshots beyond the new log end are deleted, then the state is loaded
    /// as at start. Producers idle for `expiration_ms` at `now_ms` are dropped.
    pub(crate) fn rebuild(
        &self,
        state: &mut ProducerStates,
        log: &Log,
        now_ms: i64,
        expiration_ms: i64,
    ) -> Result<LoadReport, storage::Error> {
        let log_end_offset = log.log_end_offset();
        let mut last = self.last_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        for offset in list_snapshots(&self.dir)? {
            if offset > log_end_offset {
                remove(&snapshot_path(&self.dir, offset))?;
            }
        }
        let (rebuilt, report) = read_state(&self.dir, log, now_ms, expiration_ms)?;
        *state = rebuilt;
        *last = report.snapshot_offset;
        Ok(report)
    }

    /// The state, locked: hold it across checking and appending a producer's batches, so that
    /// no two appends pass the check against the same state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ProducerStates> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets producers idle for `expiration_ms` at `now_ms`; returns how many.
    pub(crate) fn remove_expired(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.lock().remove_expired(now_ms, expiration_ms)
    }

    /// Writes a snapshot of the state at the log end, if `when` says one is due; returns its
    /// offset if it wrote one. Older snapshots beyond the newest [`SNAPSHOTS_KEPT`] are
    /// deleted.
    pub(crate) fn snapshot(
        &self,
        log: &Log,
        when: SnapshotWhen,
    ) -> Result<Option<i64>, storage::Error> {
        let mut last = self.last_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let (offset, payload) = {
            let state = self.lock();
            (log.log_end_offset(), state.encode())
        };
        let moved = offset > 0 && *last != Some(offset);
        let due = match when {
            SnapshotWhen::Moved => moved,
            SnapshotWhen::AfterRoll => {
                let active_base = log.segment_base_offsets().last().copied().unwrap_or(0);
                moved && active_base > last.unwrap_or(0)
            }
        };
        if !due {
            return Ok(None);
        }
        write_checkpoint(
            &snapshot_path(&self.dir, offset),
            SNAPSHOT_VERSION,
            &payload,
        )?;
        *last = Some(offset);
        let snapshots = list_snapshots(&self.dir)?;
        let old = snapshots.len().saturating_sub(SNAPSHOTS_KEPT);
        for &stale in &snapshots[..old] {
            remove(&snapshot_path(&self.dir, stale))?;
        }
        Ok(Some(offset))
    }
}

/// The producer state of `log`: the newest usable snapshot in `dir`, then the batch headers
/// after it (the whole log if there is none); producers idle for `expiration_ms` at `now_ms`
/// are dropped.
fn read_state(
    dir: &Path,
    log: &Log,
    now_ms: i64,
    expiration_ms: i64,
) -> Result<(ProducerStates, LoadReport), storage::Error> {
    let (snapshot_offset, mut state) = match newest_usable_snapshot(dir, log)? {
        Some((offset, state)) => (Some(offset), state),
        None => (None, ProducerStates::default()),
    };
    let from = snapshot_offset.unwrap_or_else(|| log.log_start_offset());
    let mut batches_scanned = 0;
    for header in log.batch_headers(from) {
        let header = header?;
        if header.next_offset() <= from {
            continue;
        }
        state.record_batch(&header, header.base_offset);
        batches_scanned += 1;
    }
    let expired = state.remove_expired(now_ms, expiration_ms);
    let report = LoadReport {
        snapshot_offset,
        batches_scanned,
        producers: state.len(),
        expired,
    };
    Ok((state, report))
}

/// The newest snapshot of `dir` that is at or below the log end and decodes, with its offset;
/// the others that are not are deleted with a warning.
fn newest_usable_snapshot(
    dir: &Path,
    log: &Log,
) -> Result<Option<(i64, ProducerStates)>, storage::Error> {
    let log_end_offset = log.log_end_offset();
    let mut snapshots = list_snapshots(dir)?;
    while let Some(offset) = snapshots.pop() {
        let path = snapshot_path(dir, offset);
        let problem = if offset > log_end_offset {
            format!("it is beyond the log end offset {log_end_offset}")
        } else {
            match read_checkpoint(&path, SNAPSHOT_VERSION) {
                Ok(Some(payload)) => match ProducerStates::decode(&payload) {
                    Ok(state) => return Ok(Some((offset, state))),
                    Err(e) => e.to_string(),
                },
                // Removed meanwhile: nothing to use.
                Ok(None) => continue,
                Err(e) => e.to_string(),
            }
        };
        tracing::warn!(path = %path.display(), %problem, "deleting a producer state snapshot");
        remove(&path)?;
    }
    Ok(None)
}

/// The path of the snapshot at `offset` (20 digits, as segments are named).
fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// The offsets of the snapshot files in `dir`, ascending. Leftover temporary files of an
/// interrupted write are removed.
fn list_snapshots(dir: &Path) -> Result<Vec<i64>, storage::Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| storage::Error::io("list", dir, e))?;
    let mut offsets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| storage::Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(&format!("{SNAPSHOT_SUFFIX}.tmp")) {
            remove(&entry.path())?;
            continue;
        }
        let offset = name
            .strip_suffix(SNAPSHOT_SUFFIX)
            .filter(|stem| stem.len() == 20)
            .and_then(|stem| stem.parse::<i64>().ok());
        if let Some(offset) = offset.filter(|&o| o >= 0) {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

fn remove(path: &Path) -> Result<(), storage::Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(storage::Error::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests;
