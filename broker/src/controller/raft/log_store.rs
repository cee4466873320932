//! The durable Raft log and vote of a controller (openraft's `RaftLogStorage`).
//!
//! The metadata log is small (it is purged behind snapshots), so every entry is also held in
//! memory; the file is only read at open. The store's lock is held across its fsyncs: the
//! controller writes rarely, and openraft calls the store from one task.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogId, RaftLogReader, StorageIOError, Vote};
use prost::Message;
use weir_proto::internal::v1 as pb;

use super::encoding::{
    decode_entry, encode_entry, log_id_from_pb, log_id_to_pb, vote_from_pb, vote_to_pb,
};
use super::{StorageError, TypeConfig};
use crate::storage::{read_checkpoint, write_checkpoint};

const LOG_FILE: &str = "raft-log";
const META_FILE: &str = "raft-meta";
const META_VERSION: u16 = 1;
/// Bytes before each entry: its length and its CRC-32.
const FRAME_HEADER_LEN: usize = 8;

/// The controller's Raft log store. Cloning shares the same store.
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

/// Entries by index, with the file position of each one's frame.
type Entries = BTreeMap<u64, (u64, Entry<TypeConfig>)>;

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: File,
    entries: Entries,
    /// End of the last valid frame.
    end: u64,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    last_purged: Option<LogId<u64>>,
}

fn io_error(op: &str, path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("could not {op} {}: {e}", path.display()))
}

impl LogStore {
    /// Opens (creating if needed) the log store in `dir`. A damaged tail of the log file (a
    /// write cut short by a crash) is cut off.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        let meta_path = dir.join(META_FILE);
        let meta = read_checkpoint(&meta_path, META_VERSION)
            .map_err(std::io::Error::other)?
            .map(|bytes| pb::RaftLogMeta::decode(bytes.as_slice()))
            .transpose()
            .map_err(|e| io_error("decode", &meta_path, e))?
            .unwrap_or_default();
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        let bytes = std::fs::read(&path).map_err(|e| io_error("read", &path, e))?;
        let last_purged = meta.last_purged.as_ref().map(log_id_from_pb);
        let (entries, end) = scan_frames(&path, &bytes, last_purged.map_or(0, |id| id.index + 1))?;
        if end < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), position = end,
                "cutting the Raft log at a damaged entry (a write cut short)");
            file.set_len(end)
                .map_err(|e| io_error("truncate", &path, e))?;
            file.sync_all().map_err(|e| io_error("sync", &path, e))?;
        }
        file.flush().map_err(|e| io_error("flush", &path, e))?;
        let inner = Inner {
            dir: dir.to_path_buf(),
            file,
            entries,
            end,
            vote: meta.vote.as_ref().map(vote_from_pb),
            committed: meta.committed.as_ref().map(log_id_from_pb),
            last_purged,
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// The index of the last entry known to be committed, as last saved.
    pub(crate) fn committed_index(&self) -> Option<u64> {
        self.lock().committed.map(|id| id.index)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads consecutive frames from `bytes`, keeping entries at or after `first_index`; stops at
/// the first frame that is cut short or fails its checksum. Returns the entries and where the
/// valid frames end.
fn scan_frames(path: &Path, bytes: &[u8], first_index: u64) -> std::io::Result<(Entries, u64)> {
    let mut entries = BTreeMap::new();
    let mut position = 0usize;
    while bytes.len() - position >= FRAME_HEADER_LEN {
        let len = u32::from_be_bytes(bytes[position..position + 4].try_into().expect("4 bytes"));
        let crc = u32::from_be_bytes(
            bytes[position + 4..position + 8]
                .try_into()
                .expect("4 bytes"),
        );
        let start = position + FRAME_HEADER_LEN;
        let Some(payload) = bytes.get(start..start + len as usize) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        // A frame whose checksum holds was written whole: if it does not decode, the file is
        // not one this version wrote, and cutting it off would lose committed entries.
        let entry = decode_entry(payload).map_err(|e| {
            io_error(
                &format!("decode the entry at byte {position} of"),
                path,
                format!("{e}; was the file written by another version of Weir?"),
            )
        })?;
        if entry.log_id.index >= first_index {
            entries.insert(entry.log_id.index, (position as u64, entry));
        }
        position = start + len as usize;
    }
    Ok((entries, position as u64))
}

fn frame(entry: &Entry<TypeConfig>) -> Vec<u8> {
    let payload = encode_entry(entry);
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("entries are small")
            .to_be_bytes(),
    );
    frame.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

impl Inner {
    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn save_meta(&self) -> std::io::Result<()> {
        let meta = pb::RaftLogMeta {
            vote: self.vote.as_ref().map(vote_to_pb),
            committed: self.committed.as_ref().map(log_id_to_pb),
            last_purged: self.last_purged.as_ref().map(log_id_to_pb),
        };
        write_checkpoint(
            &self.dir.join(META_FILE),
            META_VERSION,
            &meta.encode_to_vec(),
        )
        .map_err(std::io::Error::other)
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> std::io::Result<()> {
        let path = self.log_path();
        let mut position = self.end;
        let mut written = Vec::with_capacity(entries.len());
        let mut buffer = Vec::new();
        for entry in entries {
            let frame = frame(&entry);
            written.push((position, entry));
            position += frame.len() as u64;
            buffer.extend_from_slice(&frame);
        }
        let written_and_synced = self
            .file
            .write_all(&buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written_and_synced {
            // The file is opened for appending: cut off whatever part was written, or the
            // next append would land after it and be lost behind it at the next open.
            if let Err(cut) = self.file.set_len(self.end) {
                return Err(io_error("cut back a failed append to", &path, cut));
            }
            return Err(io_error("append to", &path, e));
        }
        self.end = position;
        for (position, entry) in written {
            self.entries.insert(entry.log_id.index, (position, entry));
        }
        Ok(())
    }

    /// Removes entries from `index` on.
    fn truncate(&mut self, index: u64) -> std::io::Result<()> {
        let path = self.log_path();
        let Some((&first, &(position, _))) = self.entries.range(index..).next() else {
            return Ok(());
        };
        self.file
            .set_len(position)
            .map_err(|e| io_error("truncate", &path, e))?;
        self.file
            .sync_all()
            .map_err(|e| io_error("sync", &path, e))?;
        self.end = position;
        self.entries.split_off(&first);
        Ok(())
    }

    /// Drops entries up to `log_id` and rewrites the file without them.
    fn purge(&mut self, log_id: LogId<u64>) -> std::io::Result<()> {
        self.last_purged = Some(log_id);
        self.save_meta()?;
        let kept = self.entries.split_off(&(log_id.index + 1));
        self.entries = BTreeMap::new();
        let path = self.log_path();
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut buffer = Vec::new();
        for (_, (_, entry)) in kept {
            let frame = frame(&entry);
            self.entries
                .insert(entry.log_id.index, (buffer.len() as u64, entry));
            buffer.extend_from_slice(&frame);
        }
        let mut file = File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
        file.write_all(&buffer)
            .map_err(|e| io_error("write", &tmp, e))?;
        file.sync_all().map_err(|e| io_error("sync", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error("rename", &tmp, e))?;
        crate::storage::sync_directory(&self.dir).map_err(std::io::Error::other)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        self.end = buffer.len() as u64;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let inner = self.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(_, e)| *e.get_log_id());
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.vote = Some(*vote);
        inner
            .save_meta()
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.committed = committed;
        inner.save_meta().map_err(|e| StorageIOError::write(&e))?;
        if let Some(committed) = committed {
            crate::controller::metrics::record_committed(committed.index);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let result = self.lock().append(entries.into_iter().collect());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.lock()
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.lock()
            .purge(log_id)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::controller::raft::MetadataBatch;
    use crate::controller::records::MetadataRecord;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        let record = MetadataRecord::RemoveTopic {
            topic_id: uuid::Uuid::from_u128(u128::from(index)),
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(MetadataBatch(vec![record])),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.lock().entries.keys().copied().collect()
    }

    #[test]
    fn entries_vote_and_purges_survive_a_restart_and_a_torn_write_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store
            .lock()
            .append((1..=5).map(|i| entry(1, i)).collect())
            .unwrap();
        {
            let mut inner = store.lock();
            inner.vote = Some(Vote::new_committed(1, 1));
            inner.save_meta().unwrap();
            inner.truncate(5).unwrap();
            inner
                .purge(LogId::new(CommittedLeaderId::new(1, 1), 2))
                .unwrap();
        }
        drop(store);

        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), [3, 4]);
        assert_eq!(store.lock().vote, Some(Vote::new_committed(1, 1)));
        assert_eq!(store.lock().last_purged.map(|id| id.index), Some(2));
        assert_eq!(store.lock().entries[&3].1, entry(1, 3));
        store.lock().append(vec![entry(2, 5)]).unwrap();
        drop(store);

        // A crash part way through the last frame: it is cut off, the rest kept.
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        drop(file);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), [3, 4]);
        store.lock().append(vec![entry(2, 5)]).unwrap();
        drop(store);
        assert_eq!(indexes(&LogStore::open(dir.path()).unwrap()), [3, 4, 5]);

        // A whole frame (its checksum holds) that does not decode is not cut off silently.
        let garbage = [0xffu8; 5];
        let mut frame = (garbage.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&crc32fast::hash(&garbage).to_be_bytes());
        frame.extend_from_slice(&garbage);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&frame).unwrap();
        drop(file);
        let error = LogStore::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains("another version of Weir"), "{error}");
    }
}
