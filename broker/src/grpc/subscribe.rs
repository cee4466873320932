//! Subscribe: one partition's records pushed to the client from an offset, as they are
//! appended. A task per subscription reads what is below the high watermark, sends it, and
//! when it has caught up waits for the append that moves the high watermark (no polling).
//!
//! The channel to the client holds at most [`SUBSCRIBE_BUFFER`] messages: a slow client makes
//! the task wait, so a subscription never holds more than that in memory. The stream ends
//! when the client goes away, when the partition stops being served here (its status names
//! the Kafka error: NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, OFFSET_OUT_OF_RANGE
//! once retention passed the offset), or when the broker stops (UNAVAILABLE).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use weir_proto::v1 as pb;

use super::fetch::bytes_or_default;
use super::status::status;
use super::{SUBSCRIBE_BUFFER, Shared, convert};
use crate::kafka::{Refusal, lookup, refused};
use crate::partition::Partition;
use crate::storage::TopicPartition;

/// How long a caught-up subscription waits for an append before it checks that its partition
/// is still served here. Appends wake it at once; this only bounds how long a subscription to
/// a partition that moved or was deleted lingers.
const RECHECK: Duration = Duration::from_secs(5);

/// The offset Subscribe takes as "the log start offset".
const EARLIEST: i64 = -2;
/// The offset Subscribe takes as "the high watermark".
const LATEST: i64 = -1;

type Sender = mpsc::Sender<Result<pb::SubscribeResponse, Status>>;

/// One subscription's task state.
struct Subscription {
    tp: TopicPartition,
    partition: Arc<Partition>,
    offset: i64,
    max_bytes: usize,
    format: pb::RecordFormat,
    shared: Shared,
}

/// Checks the request (the partition is led here, the offset is in its log) and starts the
/// task that feeds the stream.
pub(super) fn start(
    request: pb::SubscribeRequest,
    shared: Shared,
) -> Result<ReceiverStream<Result<pb::SubscribeResponse, Status>>, Status> {
    let format = convert::format(request.format).map_err(|refusal| status(&refusal))?;
    let tp = TopicPartition::new(request.topic, request.partition);
    let partition = lookup(&tp, &shared.context).map_err(|refusal| status(&refusal))?;
    let offset = match request.offset {
        EARLIEST => partition.log().log_start_offset(),
        LATEST => partition.high_watermark(),
        offset => offset,
    };
    // Reading nothing checks leadership and the offset.
    partition
        .read(offset, 0, None)
        .map_err(|e| status(&refused(&e)))?;
    let (sender, receiver) = mpsc::channel(SUBSCRIBE_BUFFER);
    let subscription = Subscription {
        tp,
        partition,
        offset,
        max_bytes: bytes_or_default(request.max_bytes),
        format,
        shared,
    };
    tokio::spawn(subscription.run(sender));
    Ok(ReceiverStream::new(receiver))
}

impl Subscription {
    /// Feeds the stream until it ends; the last message says why, unless the client left.
    async fn run(mut self, sender: Sender) {
        let ended = self.feed(&sender).await;
        if let Err(refusal) = ended {
            let _ = sender.send(Err(status(&refusal))).await;
        }
    }

    /// Sends records as they come; `Ok` when the client left or the broker stops.
    async fn feed(&mut self, sender: &Sender) -> Result<(), Refusal> {
        let mut stop = self.shared.stop.clone();
        loop {
            let read = self
                .partition
                .read(self.offset, self.max_bytes, None)
                .map_err(|e| refused(&e))?;
            if read.records.is_empty() {
                tokio::select! {
                    () = sender.closed() => return Ok(()),
                    _ = stop.wait_for(|stop| *stop) => return Err(stopping()),
                    _ = self.partition.wait_for_data(self.offset, RECHECK) => {}
                }
                self.check_still_served()?;
                continue;
            }
            crate::metrics::records_out(&self.tp.topic, &read.records);
            let (batches, records, next_offset) =
                convert::records(&self.tp, read.records, self.offset, self.format)?;
            self.offset = next_offset;
            if batches.is_empty() && records.is_empty() {
                continue;
            }
            let message = pb::SubscribeResponse {
                batches,
                records,
                high_watermark: read.high_watermark,
                next_offset,
            };
            tokio::select! {
                sent = sender.send(Ok(message)) => if sent.is_err() { return Ok(()) },
                _ = stop.wait_for(|stop| *stop) => return Err(stopping()),
            }
        }
    }

    /// Fails if this broker no longer serves the partition the subscription started on (the
    /// topic was deleted, perhaps created again).
    fn check_still_served(&self) -> Result<(), Refusal> {
        let current = lookup(&self.tp, &self.shared.context)?;
        if Arc::ptr_eq(&current, &self.partition) {
            return Ok(());
        }
        Err((
            ResponseError::UnknownTopicOrPartition,
            format!(
                "{} was deleted and created again since the subscription started; subscribe \
                 again",
                self.tp
            ),
        ))
    }
}

fn stopping() -> Refusal {
    (
        ResponseError::BrokerNotAvailable,
        "the broker is shutting down; subscribe again once it is back, or at the new leader".into(),
    )
}
