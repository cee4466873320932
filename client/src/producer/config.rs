//! The producer's settings, named after Kafka's Java producer's (`acks`, `linger.ms`,
//! `batch.size`, ...), and the checks that refuse combinations that cannot work.

use std::time::Duration;

use weir_proto::batch::Compression;
use weir_proto::v1 as pb;

use crate::error::{Error, Result};

/// Which replicas must have a batch before the broker acknowledges it (Kafka's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// The broker does not answer with offsets or failures (`acks=0`): delivered records get
    /// offset -1, and a lost batch is never noticed.
    None,
    /// The leader has appended the records (`acks=1`).
    Leader,
    /// Every in-sync replica has the records (`acks=all`), so they survive the loss of the
    /// leader. The default.
    #[default]
    All,
}

impl Acks {
    pub(crate) fn to_proto(self) -> pb::Acks {
        match self {
            Acks::None => pb::Acks::None,
            Acks::Leader => pb::Acks::Leader,
            Acks::All => pb::Acks::All,
        }
    }
}

/// How a [`Producer`](crate::Producer) batches, sends and retries records.
///
/// Every field has Kafka's default unless said otherwise; build one with struct update
/// syntax:
///
/// ```
/// use std::time::Duration;
/// use weir_client::{Acks, ProducerConfig};
///
/// let config = ProducerConfig {
///     linger: Duration::from_millis(20),
///     compression: weir_client::Compression::Zstd,
///     ..ProducerConfig::default()
/// };
/// assert_eq!(config.acks, Acks::All);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Which replicas must have the records before a delivery succeeds. Default
    /// [`Acks::All`]. Kafka: `acks`.
    pub acks: Acks,
    /// How long a partition's batch waits for more records before it is sent, unless it is
    /// full first. Default 5 ms. Kafka: `linger.ms`.
    pub linger: Duration,
    /// The most bytes of records in one partition's batch (a larger record gets a batch of
    /// its own). Default 64 KiB. Kafka: `batch.size`.
    pub batch_size: usize,
    /// How batches are compressed. Default none. Kafka: `compression.type`.
    pub compression: Compression,
    /// Number each partition's batches with a producer id and sequence numbers, so the
    /// broker drops a batch it already appended when a retry sends it again: each record
    /// is written once, in order. Requires [`Acks::All`]. Default true.
    /// Kafka: `enable.idempotence`.
    pub idempotence: bool,
    /// How long after [`send`](crate::Producer::send) a record may wait for its
    /// acknowledgement, retries included; then its delivery fails. Default 120 s.
    /// Kafka: `delivery.timeout.ms`.
    pub delivery_timeout: Duration,
    /// The first wait before a failed batch is sent again; it doubles on each retry, up to
    /// one second. Default 100 ms. Kafka: `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// The most bytes of records waiting to be sent or acknowledged; past that,
    /// [`send`](crate::Producer::send) waits for room. Default 32 MiB.
    /// Kafka: `buffer.memory`.
    pub buffer_memory: usize,
    /// The most bytes of record batches in one produce request, and so the largest record
    /// the producer takes. Default 1 MiB. Kafka: `max.request.size`.
    pub max_request_size: usize,
    /// How long one produce request may wait for its answer before it is retried.
    /// Default 30 s. Kafka: `request.timeout.ms`.
    pub request_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> ProducerConfig {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 64 * 1024,
            compression: Compression::None,
            idempotence: true,
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            buffer_memory: 32 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl ProducerConfig {
    /// Refuses settings that cannot work together.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.idempotence && self.acks != Acks::All {
            return Err(Error::invalid(
                "producer config",
                format!(
                    "idempotence requires acks All (it was {:?}): set `acks: Acks::All`, or \
                     `idempotence: false` to accept duplicates on retries",
                    self.acks
                ),
            ));
        }
        let positive = [
            ("batch_size", self.batch_size),
            ("buffer_memory", self.buffer_memory),
            ("max_request_size", self.max_request_size),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::invalid(
                    "producer config",
                    format!("{name} is 0; it must be at least one byte"),
                ));
            }
        }
        if u32::try_from(self.buffer_memory).is_err() {
            return Err(Error::invalid(
                "producer config",
                format!(
                    "buffer_memory {} is more than {} bytes",
                    self.buffer_memory,
                    u32::MAX
                ),
            ));
        }
        for (name, value) in [
            ("delivery_timeout", self.delivery_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::invalid(
                    "producer config",
                    format!("{name} is 0; give the broker time to answer"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let config = ProducerConfig::default();
        assert_eq!(config.acks, Acks::All);
        assert!(config.idempotence);
        assert_eq!(config.linger, Duration::from_millis(5));
        assert_eq!(config.batch_size, 65_536);
        assert_eq!(config.buffer_memory, 33_554_432);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn idempotence_needs_acks_all() {
        for acks in [Acks::None, Acks::Leader] {
            let config = ProducerConfig {
                acks,
                ..ProducerConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert!(matches!(error, Error::Invalid { .. }), "{error}");
            assert!(error.to_string().contains("idempotence"), "{error}");
            let config = ProducerConfig {
                idempotence: false,
                ..config
            };
            assert!(config.validate().is_ok());
        }
    }
}
