//! How a [`Consumer`](super::Consumer) reads, commits and takes part in its group.

use std::sync::Arc;
use std::time::Duration;

use crate::TopicPartition;

/// A callback told of partitions given to or taken from the consumer.
pub type PartitionsCallback = Arc<dyn Fn(&[TopicPartition]) + Send + Sync>;

/// Where a consumer starts in a partition for which its group has no committed offset, or
/// whose offset is out of the log's range (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// At the log start offset: every record still held.
    Earliest,
    /// At the high watermark: only records appended from now on.
    #[default]
    Latest,
    /// Nowhere: [`Consumer::recv`](super::Consumer::recv) fails with
    /// [`Error::NoOffset`](crate::Error::NoOffset) until the partition is given a position
    /// with [`Consumer::seek`](super::Consumer::seek).
    None,
}

/// How a [`Consumer`](super::Consumer) behaves; the names follow Kafka's consumer configs.
///
/// ```
/// use std::time::Duration;
/// use weir_client::{AutoOffsetReset, ConsumerConfig};
///
/// let config = ConsumerConfig {
///     auto_offset_reset: AutoOffsetReset::Earliest,
///     auto_commit_interval: Duration::from_secs(1),
///     ..ConsumerConfig::new("billing")
/// };
/// assert_eq!(config.group.as_deref(), Some("billing"));
/// ```
#[derive(Clone)]
pub struct ConsumerConfig {
    /// The consumer group (`group.id`): needed to subscribe and to commit offsets. A consumer
    /// without one reads only partitions given with [`Consumer::assign`](super::Consumer::assign).
    pub group: Option<String>,
    /// Commit the positions of the records handed out every `auto_commit_interval`, when
    /// partitions are taken away and on close (`enable.auto.commit`). Default true.
    pub auto_commit: bool,
    /// How often positions are committed when `auto_commit` is on
    /// (`auto.commit.interval.ms`). Default 5 s.
    pub auto_commit_interval: Duration,
    /// Where to start without a committed offset. Default [`AutoOffsetReset::Latest`].
    pub auto_offset_reset: AutoOffsetReset,
    /// How long a fetch waits on the broker for `fetch_min_bytes` (`fetch.max.wait.ms`).
    /// Default 500 ms.
    pub fetch_max_wait: Duration,
    /// A fetch returns as soon as this many bytes are there (`fetch.min.bytes`). Default 1.
    pub fetch_min_bytes: u32,
    /// The most bytes one fetch request returns (`fetch.max.bytes`). Default 16 MiB.
    pub fetch_max_bytes: u32,
    /// The most bytes one partition adds to a fetch (`max.partition.fetch.bytes`); a batch
    /// larger than this still comes whole. Default 1 MiB.
    pub max_partition_fetch_bytes: u32,
    /// How many fetched partition responses may wait for [`recv`](super::Consumer::recv)
    /// (the prefetch); fetching pauses while they do. Default 16.
    pub fetch_queue_len: usize,
    /// The server-side assignor the group uses: `None` keeps the broker's default
    /// (`"uniform"`), or `Some("range")`.
    pub assignor: Option<String>,
    /// How long the consumer may take to give up partitions in a rebalance before the
    /// coordinator removes it from the group (`max.poll.interval.ms`). Default 5 min.
    pub rebalance_timeout: Duration,
    /// Static membership (`group.instance.id`): a consumer restarting with the same id takes
    /// its old place and partitions back without a rebalance.
    pub instance_id: Option<String>,
    /// Called (on the consumer's background task) with the partitions given to the consumer,
    /// before they are fetched.
    pub on_assign: Option<PartitionsCallback>,
    /// Called (on the consumer's background task) with the partitions taken from the
    /// consumer: in a rebalance after their positions were committed (with `auto_commit`) and
    /// before another member may get them; on close; and when the coordinator fenced the
    /// member (then nothing is committed: another member may own them already).
    pub on_revoke: Option<PartitionsCallback>,
}

impl ConsumerConfig {
    /// The defaults, as a member of `group`.
    pub fn new(group: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig {
            group: Some(group.into()),
            ..ConsumerConfig::default()
        }
    }

    /// Checks the settings, naming the first that is not valid.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if self.group.as_deref() == Some("") {
            return Err(Error::invalid("group", "the group id must not be empty"));
        }
        if self.instance_id.as_deref() == Some("") {
            return Err(Error::invalid(
                "instance_id",
                "the instance id must not be empty (leave it None for a dynamic member)",
            ));
        }
        if self.fetch_queue_len == 0 {
            return Err(Error::invalid("fetch_queue_len", "must be at least 1"));
        }
        if self.auto_commit && self.auto_commit_interval.is_zero() {
            return Err(Error::invalid(
                "auto_commit_interval",
                "must be above zero while auto_commit is on",
            ));
        }
        if i32::try_from(self.rebalance_timeout.as_millis()).is_err() {
            return Err(Error::invalid(
                "rebalance_timeout",
                "must be below 2^31 milliseconds",
            ));
        }
        Ok(())
    }
}

impl Default for ConsumerConfig {
    /// No group, auto commit every 5 s, start at the latest offset, Kafka's fetch sizes.
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            group: None,
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            auto_offset_reset: AutoOffsetReset::Latest,
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 16 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_queue_len: 16,
            assignor: None,
            rebalance_timeout: Duration::from_secs(300),
            instance_id: None,
            on_assign: None,
            on_revoke: None,
        }
    }
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let callback = |set: bool| if set { "Some(<fn>)" } else { "None" };
        f.debug_struct("ConsumerConfig")
            .field("group", &self.group)
            .field("auto_commit", &self.auto_commit)
            .field("auto_commit_interval", &self.auto_commit_interval)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("fetch_max_wait", &self.fetch_max_wait)
            .field("fetch_min_bytes", &self.fetch_min_bytes)
            .field("fetch_max_bytes", &self.fetch_max_bytes)
            .field("max_partition_fetch_bytes", &self.max_partition_fetch_bytes)
            .field("fetch_queue_len", &self.fetch_queue_len)
            .field("assignor", &self.assignor)
            .field("rebalance_timeout", &self.rebalance_timeout)
            .field("instance_id", &self.instance_id)
            .field("on_assign", &callback(self.on_assign.is_some()))
            .field("on_revoke", &callback(self.on_revoke.is_some()))
            .finish()
    }
}
