//! The high watermark checkpoint: the high watermark of every partition this broker holds, in
//! `<data-dir>/replication-offset-checkpoint` (Kafka's file name; Weir's checkpoint framing,
//! one `<topic>-<partition> <high watermark>` line per partition).
//!
//! It is written every `replica_high_watermark_checkpoint_interval_ms` and at shutdown, and
//! read when a partition is opened, so a restarted broker shows consumers no more than was
//! replicated before it stopped. A stale entry is only lower than the truth (high
//! watermarks move up), which hides records until replication moves it again; a missing or
//! damaged file is logged and every partition starts from its log start.

use std::collections::HashMap;
use std::path::Path;

use crate::storage::{self, TopicPartition, read_checkpoint, write_checkpoint};

/// The file's name in the data directory.
pub(super) const FILE: &str = "replication-offset-checkpoint";
const VERSION: u16 = 1;

/// Writes `entries` to the checkpoint in `data_dir`, atomically.
pub(super) fn write(
    data_dir: &Path,
    entries: impl IntoIterator<Item = (TopicPartition, i64)>,
) -> Result<(), storage::Error> {
    let mut payload = String::new();
    for (tp, high_watermark) in entries {
        payload.push_str(&format!("{tp} {high_watermark}\n"));
    }
    write_checkpoint(&data_dir.join(FILE), VERSION, payload.as_bytes())
}

/// Reads the checkpoint in `data_dir`; empty (with a warning) if it is missing or damaged.
pub(super) fn read(data_dir: &Path) -> HashMap<TopicPartition, i64> {
    let path = data_dir.join(FILE);
    let payload = match read_checkpoint(&path, VERSION) {
        Ok(Some(payload)) => payload,
        Ok(None) => return HashMap::new(),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the high watermark checkpoint; partitions \
                start from their log start until replication moves them");
            return HashMap::new();
        }
    };
    let text = String::from_utf8_lossy(&payload);
    let mut entries = HashMap::new();
    for line in text.lines() {
        let parsed = line.rsplit_once(' ').and_then(|(name, hw)| {
            Some((
                TopicPartition::from_dir_name(name)?,
                hw.parse::<i64>().ok()?,
            ))
        });
        match parsed {
            Some((tp, hw)) => {
                entries.insert(tp, hw);
            }
            None => {
                tracing::warn!(path = %path.display(), line,
                    "ignoring the high watermark checkpoint: a line is malformed");
                return HashMap::new();
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_write_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![
            (TopicPartition::new("orders", 0), 42),
            (TopicPartition::new("a-b-c", 11), 0),
        ];
        write(dir.path(), entries.clone()).unwrap();
        let read = read(dir.path());
        assert_eq!(read.len(), 2);
        for (tp, hw) in entries {
            assert_eq!(read.get(&tp), Some(&hw));
        }
    }

    #[test]
    fn a_missing_or_damaged_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).is_empty());
        std::fs::write(dir.path().join(FILE), b"garbage").unwrap();
        assert!(read(dir.path()).is_empty());
    }
}
