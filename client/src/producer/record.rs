//! What a producer sends ([`ProducerRecord`]) and what it learns back ([`RecordMetadata`],
//! through a [`DeliveryFuture`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// A record to send: its topic, and optionally a partition, a key, a value, headers and a
/// timestamp (Kafka's `ProducerRecord`).
///
/// ```
/// use weir_client::ProducerRecord;
///
/// let record = ProducerRecord::new("orders")
///     .key("customer-7")
///     .value(r#"{"total": 12}"#)
///     .header("source", Some("web"))
///     .timestamp_ms(1_700_000_000_000);
/// assert_eq!(record.topic, "orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic.
    pub topic: String,
    /// The partition; `None` lets the partitioner choose (by key, else sticky).
    pub partition: Option<i32>,
    /// The key; `None` is a null key.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone on a compacted topic).
    pub value: Option<Bytes>,
    /// Headers in order; each key at most once per record.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the Unix epoch; `None` takes the time of [`send`](crate::Producer::send).
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with no key, value, headers or timestamp yet.
    pub fn new(topic: impl Into<String>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// Sends it to partition `partition`, whatever its key.
    pub fn partition(mut self, partition: i32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    /// With key `key`, which also picks its partition (murmur2, as Kafka's clients do).
    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// With value `value`.
    pub fn value(mut self, value: impl Into<Bytes>) -> ProducerRecord {
        self.value = Some(value.into());
        self
    }

    /// With one more header, `key`, whose value may be null.
    pub fn header(
        mut self,
        key: impl Into<String>,
        value: Option<impl Into<Bytes>>,
    ) -> ProducerRecord {
        self.headers.push((key.into(), value.map(Into::into)));
        self
    }

    /// With timestamp `ms` (milliseconds since the Unix epoch).
    pub fn timestamp_ms(mut self, ms: i64) -> ProducerRecord {
        self.timestamp_ms = Some(ms);
        self
    }

    /// About how many bytes the record takes in a batch, before compression: its key, value
    /// and headers, plus the most its varint framing can take.
    pub(crate) fn estimated_size(&self) -> usize {
        const RECORD_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
        const HEADER_OVERHEAD: usize = 5 + 5;
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        RECORD_OVERHEAD
            + len(&self.key)
            + len(&self.value)
            + self
                .headers
                .iter()
                .map(|(k, v)| HEADER_OVERHEAD + k.len() + len(v))
                .sum::<usize>()
    }
}

/// Where a delivered record is (Kafka's `RecordMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition it went to.
    pub partition: i32,
    /// Its offset in the partition; -1 under [`Acks::None`](crate::Acks::None), when the
    /// broker does not say.
    pub offset: i64,
    /// Its timestamp: the one it was sent with (or the time of `send`), or the broker's
    /// time of append on a topic whose `message.timestamp.type` is LogAppendTime.
    pub timestamp_ms: i64,
}

/// The outcome of one record's delivery: resolves once the broker acknowledged the record
/// (with its [`RecordMetadata`]) or its delivery failed for good.
///
/// Dropping it does not cancel the delivery; the record is sent anyway.
#[derive(Debug)]
#[must_use = "the delivery's outcome is only known by awaiting it"]
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<RecordMetadata>>,
}

impl DeliveryFuture {
    pub(crate) fn new(receiver: oneshot::Receiver<Result<RecordMetadata>>) -> DeliveryFuture {
        DeliveryFuture { receiver }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(Error::Closed("producer"))))
    }
}
