//! The storage layer's one error type.

use std::io;
use std::path::{Path, PathBuf};

use weir_proto::batch::BatchError;

/// What went wrong in the storage layer. Messages name the file and offset involved and, where
/// the operator can act, what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call on a file or directory failed.
    #[error("could not {op} {path}: {source}")]
    Io {
        /// What was being done, as a verb phrase ("open", "sync", "remove", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The file system has no room for a new segment or index file. Nothing was written; the
    /// log stays readable and the append can be retried once space is freed.
    #[error(
        "no space to preallocate {bytes} bytes for {path}: {source}; free disk space, lower \
         segment_bytes, or tighten retention"
    )]
    DiskFull {
        /// The file that could not be preallocated.
        path: PathBuf,
        /// How many bytes were asked for.
        bytes: u64,
        /// The operating system's error (ENOSPC, EDQUOT or EFBIG).
        #[source]
        source: io::Error,
    },

    /// A data directory that must exist is missing, or is not a directory.
    #[error("{path} is not a usable directory: {reason}")]
    BadDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// Another process holds the lock of this data directory.
    #[error(
        "data directory {path} is in use by another weir-broker process; stop that process or \
         choose another --data-dir"
    )]
    DirectoryLocked {
        /// The data directory.
        path: PathBuf,
    },

    /// A batch offered for append is not a valid RecordBatch v2.
    #[error("invalid record batch at byte {position} of the appended data: {source}")]
    InvalidBatch {
        /// Byte position of the bad batch within the appended buffer.
        position: usize,
        /// What is wrong with it.
        #[source]
        source: BatchError,
    },

    /// An append was given no batches at all.
    #[error("nothing to append: the buffer holds no record batch")]
    EmptyAppend,

    /// Replicated batches must continue the log: their first offset is below its end.
    #[error(
        "replicated batch at offset {base_offset} does not continue the log of {dir}, which ends \
         at offset {log_end_offset}"
    )]
    OffsetsNotIncreasing {
        /// The log's directory.
        dir: PathBuf,
        /// The batch's first offset.
        base_offset: i64,
        /// The log's end offset.
        log_end_offset: i64,
    },

    /// A batch's leader epoch is below that of the log's last batch: it comes from a stale
    /// leader, or from a log that diverged and must be truncated first.
    #[error(
        "a batch of leader epoch {epoch} cannot follow the batches of epoch {written_epoch} in \
         {dir}: leader epochs never decrease in a log"
    )]
    LeaderEpochDecreased {
        /// The log's directory.
        dir: PathBuf,
        /// The batch's leader epoch.
        epoch: i32,
        /// The leader epoch of the log's last batch.
        written_epoch: i32,
    },

    /// A batch (or run of batches) is too large for any segment.
    #[error("{bytes} bytes of batches cannot fit a segment, whose limit is {limit} bytes")]
    BatchTooLarge {
        /// Size of the batches.
        bytes: usize,
        /// The largest segment possible.
        limit: u64,
    },

    /// A read asked for an offset the log does not hold.
    #[error(
        "offset {offset} is out of range for {dir}: the log holds offsets {log_start_offset} to \
         {log_end_offset} (exclusive)"
    )]
    OffsetOutOfRange {
        /// The log's directory.
        dir: PathBuf,
        /// The offset asked for.
        offset: i64,
        /// The first offset still held.
        log_start_offset: i64,
        /// The offset the next append will get.
        log_end_offset: i64,
    },

    /// A file's content is damaged in a way recovery does not repair by truncation.
    #[error("{path} is corrupt at byte {position}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the damage.
        position: u64,
        /// What is wrong.
        reason: String,
    },

    /// An earlier flush of this log failed, so what is on disk is unknown; the log refuses
    /// writes until the broker is restarted and recovers it from disk.
    #[error(
        "log {dir} is offline after a failed flush ({cause}); restart the broker so it recovers \
         the log from disk"
    )]
    LogOffline {
        /// The log's directory.
        dir: PathBuf,
        /// The failure that took it offline.
        cause: String,
    },

    /// The log was closed.
    #[error("log {dir} is closed")]
    Closed {
        /// The log's directory.
        dir: PathBuf,
    },

    /// A configuration value is out of range.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// A storage result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path` while doing `op`; a full disk becomes [`Error::DiskFull`] when the
    /// number of bytes asked for is known.
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether `source` means the file system is out of space or over a size limit.
    pub(crate) fn is_no_space(source: &io::Error) -> bool {
        matches!(
            source.raw_os_error(),
            Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error()
                || code == rustix::io::Errno::DQUOT.raw_os_error()
                || code == rustix::io::Errno::FBIG.raw_os_error()
        )
    }
}
