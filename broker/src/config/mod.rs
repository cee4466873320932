//! Typed configuration with defaults and validation.
//!
//! Every limit lives here, with its unit at the end of its name. Keys are named after Kafka's
//! (`segment_bytes` is Kafka's `log.segment.bytes` / `segment.bytes`), so a Kafka operator finds
//! them where they expect.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub mod node;
mod value;

pub use node::{BoundAddresses, BrokerArgs, NodeConfig, NodeConfigError, Origin, ProcessRoles};

/// The largest segment file: positions inside a segment are 32-bit, as in Kafka.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// The smallest segment file that still holds one batch header.
pub const SEGMENT_BYTES_MIN: u64 = 1024;

/// A configuration value outside its allowed range.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid configuration: {key} = {value}: {reason}")]
pub struct ConfigError {
    /// The configuration key, as written in the config file.
    pub key: &'static str,
    /// The rejected value, as text.
    pub value: String,
    /// What the value must be instead.
    pub reason: String,
}

/// How one partition's log is laid out, kept and flushed. The per-topic configs of Kafka
/// (`segment.bytes`, `retention.ms`, …) map onto these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Size a segment file is preallocated to; a new segment is rolled when the next batch does
    /// not fit. Kafka: `segment.bytes`.
    pub segment_bytes: u64,
    /// Age after which the active segment is rolled even if not full. Kafka: `segment.ms`.
    pub segment_ms: i64,
    /// Bytes of log between two entries of the sparse offset and time indexes.
    /// Kafka: `index.interval.bytes`.
    pub index_interval_bytes: u64,
    /// Size each index file of a segment is preallocated to; a full index rolls the segment.
    /// Kafka: `segment.index.bytes`.
    pub segment_index_bytes: u64,
    /// Delete segments whose newest record is older than this; `None` keeps them forever.
    /// Kafka: `retention.ms` (-1 there means `None`).
    pub retention_ms: Option<i64>,
    /// Delete the oldest segments while the log is larger than this; `None` means no limit.
    /// Kafka: `retention.bytes`.
    pub retention_bytes: Option<u64>,
    /// Flush (fsync) after this many records; `Some(1)` flushes every write; `None` leaves
    /// durability to replication and the operating system. Kafka: `flush.messages`.
    pub flush_messages: Option<u64>,
    /// Flush when the oldest unflushed write is this old; `None` disables. Kafka: `flush.ms`.
    pub flush_ms: Option<i64>,
    /// What happens to old segments: retention deletes them, compaction keeps the newest
    /// record of each key, or both. Kafka: `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// How long a tombstone (a record with a null value) stays after compaction first cleaned
    /// the segment that holds it. Kafka: `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// Records younger than this (by their segment's newest timestamp) are not compacted.
    /// Kafka: `min.compaction.lag.ms`.
    pub min_compaction_lag_ms: i64,
    /// A log with dirty records older than this is compacted whatever its dirty ratio.
    /// Kafka: `max.compaction.lag.ms`.
    pub max_compaction_lag_ms: i64,
    /// Compaction starts once this share of the cleanable bytes is dirty (not yet compacted).
    /// Kafka: `min.cleanable.dirty.ratio`.
    pub min_cleanable_dirty_ratio: DirtyRatio,
}

/// Kafka's `cleanup.policy`: `delete`, `compact` or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention deletes old segments by time and size.
    pub delete: bool,
    /// The log cleaner keeps only the newest record of each key.
    pub compact: bool,
}

impl CleanupPolicy {
    /// Kafka's default, `delete`.
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    /// `compact`.
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// Parses Kafka's comma-separated list (`delete`, `compact`, `compact,delete`).
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for item in value.split(',') {
            match item.trim() {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        Some(policy)
    }
}

/// A share between 0 and 1 (`min.cleanable.dirty.ratio`). Only finite values in that range
/// are built, so equality is well defined.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct DirtyRatio(f64);

impl Eq for DirtyRatio {}

impl DirtyRatio {
    /// The ratio `value`, if it is a number from 0 to 1.
    pub fn new(value: f64) -> Option<DirtyRatio> {
        (0.0..=1.0).contains(&value).then_some(DirtyRatio(value))
    }

    /// The ratio as a number from 0 to 1.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            flush_messages: None,
            flush_ms: None,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: DirtyRatio(0.5),
        }
    }
}

impl LogConfig {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, value: String, reason: &str| {
            Err(ConfigError {
                key,
                value,
                reason: reason.to_string(),
            })
        };
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return err(
                "segment_bytes",
                self.segment_bytes.to_string(),
                "must be between 1024 and 2147483647 (2 GiB - 1)",
            );
        }
        if self.segment_ms <= 0 {
            return err(
                "segment_ms",
                self.segment_ms.to_string(),
                "must be positive",
            );
        }
        if self.index_interval_bytes > SEGMENT_BYTES_MAX {
            return err(
                "index_interval_bytes",
                self.index_interval_bytes.to_string(),
                "must be at most 2147483647",
            );
        }
        if !(64..=SEGMENT_BYTES_MAX).contains(&self.segment_index_bytes) {
            return err(
                "segment_index_bytes",
                self.segment_index_bytes.to_string(),
                "must be between 64 and 2147483647",
            );
        }
        if let Some(ms) = self.retention_ms
            && ms < 0
        {
            return err(
                "retention_ms",
                ms.to_string(),
                "must be at least 0 (or unset)",
            );
        }
        if self.flush_messages == Some(0) {
            return err(
                "flush_messages",
                "0".into(),
                "must be at least 1 (or unset)",
            );
        }
        if let Some(ms) = self.flush_ms
            && ms < 0
        {
            return err("flush_ms", ms.to_string(), "must be at least 0 (or unset)");
        }
        let lags = [
            ("delete_retention_ms", self.delete_retention_ms),
            ("min_compaction_lag_ms", self.min_compaction_lag_ms),
            ("max_compaction_lag_ms", self.max_compaction_lag_ms),
        ];
        for (key, ms) in lags {
            if ms < 0 {
                return err(key, ms.to_string(), "must be at least 0");
            }
        }
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms {
            return err(
                "min_compaction_lag_ms",
                self.min_compaction_lag_ms.to_string(),
                "must not be above max_compaction_lag_ms",
            );
        }
        Ok(())
    }
}

impl LogConfig {
    /// This configuration with a topic's own configs (Kafka's names, as stored in the
    /// metadata) laid over it. The values were checked by `topic_config::validate` when the
    /// topic was created; one that still does not parse keeps the default, with a warning.
    pub fn with_topic_configs(&self, configs: &BTreeMap<String, String>) -> LogConfig {
        let mut config = self.clone();
        for (name, value) in configs {
            match name.as_str() {
                "cleanup.policy" => {
                    match CleanupPolicy::parse(value) {
                        Some(policy) => config.cleanup_policy = policy,
                        None => {
                            tracing::warn!(config = %name, %value, "a bad topic config is ignored")
                        }
                    }
                    continue;
                }
                "min.cleanable.dirty.ratio" => {
                    match value.trim().parse::<f64>().ok().and_then(DirtyRatio::new) {
                        Some(ratio) => config.min_cleanable_dirty_ratio = ratio,
                        None => {
                            tracing::warn!(config = %name, %value, "a bad topic config is ignored")
                        }
                    }
                    continue;
                }
                _ => {}
            }
            let parsed = value.trim().parse::<i64>();
            let applied = match (name.as_str(), parsed) {
                ("segment.bytes", Ok(n)) => u64::try_from(n).map(|n| config.segment_bytes = n),
                ("segment.ms", Ok(n)) => {
                    config.segment_ms = n;
                    Ok(())
                }
                ("segment.index.bytes", Ok(n)) => {
                    u64::try_from(n).map(|n| config.segment_index_bytes = n)
                }
                ("index.interval.bytes", Ok(n)) => {
                    u64::try_from(n).map(|n| config.index_interval_bytes = n)
                }
                ("retention.ms", Ok(n)) => {
                    config.retention_ms = (n >= 0).then_some(n);
                    Ok(())
                }
                ("retention.bytes", Ok(n)) => {
                    config.retention_bytes = u64::try_from(n).ok();
                    Ok(())
                }
                ("flush.messages", Ok(n)) => {
                    u64::try_from(n).map(|n| config.flush_messages = Some(n))
                }
                ("flush.ms", Ok(n)) => {
                    config.flush_ms = Some(n);
                    Ok(())
                }
                ("delete.retention.ms", Ok(n)) => {
                    config.delete_retention_ms = n;
                    Ok(())
                }
                ("min.compaction.lag.ms", Ok(n)) => {
                    config.min_compaction_lag_ms = n;
                    Ok(())
                }
                ("max.compaction.lag.ms", Ok(n)) => {
                    config.max_compaction_lag_ms = n;
                    Ok(())
                }
                // Configs that are not about the log's files, or not numbers.
                _ => Ok(()),
            };
            if applied.is_err() {
                tracing::warn!(config = %name, %value, "a topic config out of range is ignored");
            }
        }
        if let Err(e) = config.validate() {
            tracing::warn!(error = %e, "a topic's log configs are not usable; using the defaults");
            return self.clone();
        }
        config
    }
}

/// Configuration of the storage layer of one broker: where the data lives, how partitions'
/// logs default, and how often the background tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// The data directory; partition logs live in `<data_dir>/topics/<topic>-<partition>/`.
    pub data_dir: PathBuf,
    /// Defaults for every partition's log.
    pub log: LogConfig,
    /// The logs of these topics open with their own config rather than `log`: topics whose
    /// config the broker knows before the metadata arrives (the internal
    /// `__consumer_offsets`), so a restart does not preallocate their active segments at the
    /// broker's default segment size (1 GiB) until the topic's config is applied.
    pub topic_logs: std::collections::BTreeMap<String, LogConfig>,
    /// How often retention is checked.
    pub retention_check_interval_ms: u64,
    /// How often logs are checked for a due `flush_ms` flush and sealed segments are synced.
    pub flush_check_interval_ms: u64,
    /// How often the recovery checkpoint is written.
    pub recovery_checkpoint_interval_ms: u64,
    /// Threads that open and recover partition logs at start.
    pub recovery_threads: usize,
    /// Run the log cleaner (compaction of `cleanup.policy=compact` logs).
    /// Kafka: `log.cleaner.enable`.
    pub cleaner_enable: bool,
    /// The most bytes per second the cleaner reads and writes, over all logs.
    /// Kafka: `log.cleaner.io.max.bytes.per.second`.
    pub cleaner_io_max_bytes_per_second: u64,
    /// How often the cleaner looks for logs to compact. Kafka: `log.cleaner.backoff.ms`.
    pub cleaner_backoff_ms: u64,
}

impl StorageConfig {
    /// The config a log of `topic` opens with before the metadata gives the topic's own.
    pub fn log_config_of(&self, topic: &str) -> LogConfig {
        self.topic_logs
            .get(topic)
            .cloned()
            .unwrap_or_else(|| self.log.clone())
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("weir-data"),
            log: LogConfig::default(),
            topic_logs: std::collections::BTreeMap::new(),
            retention_check_interval_ms: 5 * 60 * 1000,
            flush_check_interval_ms: 1000,
            recovery_checkpoint_interval_ms: 60 * 1000,
            recovery_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cleaner_enable: true,
            cleaner_io_max_bytes_per_second: 64 * 1024 * 1024,
            cleaner_backoff_ms: 15_000,
        }
    }
}

impl StorageConfig {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.log.validate()?;
        let positive = [
            (
                "retention_check_interval_ms",
                self.retention_check_interval_ms,
            ),
            ("flush_check_interval_ms", self.flush_check_interval_ms),
            (
                "recovery_checkpoint_interval_ms",
                self.recovery_checkpoint_interval_ms,
            ),
            ("recovery_threads", self.recovery_threads as u64),
            (
                "log_cleaner_io_max_bytes_per_second",
                self.cleaner_io_max_bytes_per_second,
            ),
            ("log_cleaner_backoff_ms", self.cleaner_backoff_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError {
                    key,
                    value: "0".into(),
                    reason: "must be positive".to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A controller voter: a node id and the internal address its Raft peers reach it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The voter's node id.
    pub node_id: u64,
    /// Its internal API address, `host:port`.
    pub address: String,
}

/// Parses `--controller-voters`: `"1@host:9094,2@host:9094,3@host:9094"`. Ids must be unique
/// and addresses `host:port` with a port number; spaces around entries are allowed.
pub fn parse_controller_voters(list: &str) -> Result<Vec<Voter>, ConfigError> {
    let err = |reason: String| ConfigError {
        key: "controller_voters",
        value: format!("{list:?}"),
        reason,
    };
    let mut voters: Vec<Voter> = Vec::new();
    for (index, entry) in list.split(',').map(str::trim).enumerate() {
        let position = index + 1;
        let Some((id, address)) = entry.split_once('@') else {
            return Err(err(format!(
                "entry {position} ({entry:?}) is not NODE_ID@HOST:PORT"
            )));
        };
        let node_id: u64 = id.parse().map_err(|e| {
            err(format!(
                "entry {position} ({entry:?}) has a node id that is not a whole number ({e})"
            ))
        })?;
        let port = address
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(port))) if !host.is_empty() && port > 0 => {}
            _ => {
                return Err(err(format!(
                    "entry {position} ({entry:?}) has an address that is not HOST:PORT"
                )));
            }
        }
        if voters.iter().any(|v| v.node_id == node_id) {
            return Err(err(format!("node id {node_id} is listed twice")));
        }
        voters.push(Voter {
            node_id,
            address: address.to_string(),
        });
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(StorageConfig::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_key_and_the_allowed_range() {
        let config = LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid configuration: segment_bytes = 10: must be between 1024 and 2147483647 (2 GiB - 1)"
        );
        let config = LogConfig {
            flush_messages: Some(0),
            ..LogConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "flush_messages");
    }

    #[test]
    fn controller_voters_parse_or_say_what_is_wrong() {
        let voters = parse_controller_voters("1@a:9094, 2@b.example:9094,3@[::1]:9094").unwrap();
        let ids: Vec<u64> = voters.iter().map(|v| v.node_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(voters[2].address, "[::1]:9094");

        let check = |list: &str, reason: &str| {
            let message = parse_controller_voters(list).unwrap_err().to_string();
            assert!(message.contains(reason), "{list:?}: {message}");
            assert!(
                message.starts_with("invalid configuration: controller_voters = "),
                "{message}"
            );
        };
        check("", "entry 1 (\"\") is not NODE_ID@HOST:PORT");
        check(
            "1@a:9094,b:9094",
            "entry 2 (\"b:9094\") is not NODE_ID@HOST:PORT",
        );
        check("x@a:9094", "node id that is not a whole number");
        check("1@a", "address that is not HOST:PORT");
        check("1@a:port", "address that is not HOST:PORT");
        check("1@:9094", "address that is not HOST:PORT");
        check("1@a:9094,1@b:9094", "node id 1 is listed twice");
    }
}
