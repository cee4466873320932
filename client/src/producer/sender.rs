//! The producer's background task: it drains the ready batches from the accumulator, finds
//! each partition's leader, sends one Produce request per leader (several partitions' batches
//! in it, up to `max_request_size` bytes), and reports each partition's outcome back to the
//! accumulator and to the records' futures. It also fetches the idempotent producer's id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weir_proto::v1 as pb;
use weir_proto::v1::broker_client::BrokerClient;

use super::Shared;
use super::accumulator::{Batch, Outgoing};
use super::record::RecordMetadata;
use crate::TopicPartition;
use crate::cluster::MAX_MESSAGE_BYTES;
use crate::error::{BrokerError, Error, Result};

/// What the leader said of one partition's batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ack {
    base_offset: i64,
    log_append_time_ms: i64,
}

/// Runs until the producer is closed and every batch has its outcome.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut producer_id_retry_at: Option<Instant> = None;
    let mut producer_id_attempts = 0u32;
    loop {
        let now = Instant::now();
        let (drained, needs_producer_id, wakeup, finished) = {
            let mut state = shared.lock();
            let drained = state.drain(now);
            let finished = state.is_closing() && state.is_empty();
            (
                drained,
                state.needs_producer_id(),
                state.next_wakeup(now),
                finished,
            )
        };
        for (tp, batch) in drained.expired {
            let error = shared.timeout_error(&tp, &batch);
            shared.finish(batch, Err(error));
        }
        for (_, batch, error) in drained.unencodable {
            shared.finish(batch, Err(error));
        }
        if finished {
            return;
        }
        if !drained.ready.is_empty() {
            tokio::spawn(dispatch(shared.clone(), drained.ready));
        }
        if needs_producer_id && producer_id_retry_at.is_none_or(|at| at <= now) {
            match init_producer_id(&shared).await {
                Ok((id, epoch)) => {
                    tracing::debug!(producer_id = id, epoch, "idempotent producer id");
                    shared.lock().set_producer_id(id, epoch);
                    *shared.producer_id_error.lock().expect("not poisoned") = None;
                    producer_id_retry_at = None;
                    producer_id_attempts = 0;
                    continue;
                }
                Err(error) => {
                    let backoff = shared
                        .config
                        .retry_backoff
                        .saturating_mul(1 << producer_id_attempts.min(16))
                        .min(Duration::from_secs(1));
                    tracing::warn!(%error, ?backoff, "cannot get an idempotent producer id");
                    *shared.producer_id_error.lock().expect("not poisoned") = Some(error);
                    producer_id_attempts += 1;
                    producer_id_retry_at = Some(now + backoff);
                }
            }
        }
        let wakeup = match (wakeup, producer_id_retry_at.filter(|_| needs_producer_id)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match wakeup {
            Some(at) => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// A new producer id and epoch from any broker.
async fn init_producer_id(shared: &Shared) -> Result<(i64, i16)> {
    let response = shared
        .cluster
        .any_broker(|channel| async move {
            Ok(BrokerClient::new(channel)
                .init_producer_id(pb::InitProducerIdRequest {})
                .await?
                .into_inner())
        })
        .await?;
    let epoch = i16::try_from(response.producer_epoch).map_err(|_| {
        Error::invalid(
            "InitProducerId answer",
            format!("producer epoch {} is not an i16", response.producer_epoch),
        )
    })?;
    Ok((response.producer_id, epoch))
}

/// Sends `ready` batches to their partitions' leaders: one request per leader, split to
/// keep each under `max_request_size`.
async fn dispatch(shared: Arc<Shared>, ready: Vec<Outgoing>) {
    let mut by_leader: BTreeMap<String, Vec<Outgoing>> = BTreeMap::new();
    for outgoing in ready {
        let tp = &outgoing.tp;
        match shared.cluster.leader(&tp.topic, tp.partition).await {
            Ok((_, address)) => by_leader.entry(address).or_default().push(outgoing),
            Err(error) => shared.on_outcome(&outgoing.tp, Err(error)),
        }
    }
    for (address, batches) in by_leader {
        for request in split(batches, shared.config.max_request_size) {
            tokio::spawn(send_request(shared.clone(), address.clone(), request));
        }
    }
}

/// Groups `batches` into requests of at most `max_bytes` of batches each (a larger batch
/// alone in its request).
fn split(batches: Vec<Outgoing>, max_bytes: usize) -> Vec<Vec<Outgoing>> {
    let mut requests: Vec<Vec<Outgoing>> = Vec::new();
    let mut bytes = 0;
    for batch in batches {
        let len = batch.bytes.len();
        match requests.last_mut() {
            Some(request) if bytes + len <= max_bytes => {
                bytes += len;
                request.push(batch);
            }
            _ => {
                bytes = len;
                requests.push(vec![batch]);
            }
        }
    }
    requests
}

/// Sends one Produce request and reports each partition's outcome.
async fn send_request(shared: Arc<Shared>, address: String, batches: Vec<Outgoing>) {
    match produce(&shared, &address, &batches).await {
        Ok(response) => {
            for (index, outgoing) in batches.iter().enumerate() {
                let tp = &outgoing.tp;
                let result = response
                    .partitions
                    .get(index)
                    .filter(|r| r.topic == tp.topic && r.partition == tp.partition);
                let outcome = match result {
                    Some(result) => match result.error.clone() {
                        Some(error) => Err(Error::from(error)),
                        None => Ok(Ack {
                            base_offset: result.base_offset,
                            log_append_time_ms: result.log_append_time_ms,
                        }),
                    },
                    None => Err(Error::Broker(BrokerError {
                        code: tonic::Code::Internal,
                        kafka_code: None,
                        message: format!(
                            "the broker at {address} answered a produce request without a \
                             result for {tp} at position {index}"
                        ),
                    })),
                };
                shared.on_outcome(tp, outcome);
            }
        }
        Err(error) => {
            if is_transport(&error) {
                shared.cluster.forget(&address);
            }
            for outgoing in &batches {
                shared.on_outcome(&outgoing.tp, Err(error.clone()));
            }
        }
    }
}

/// One Produce call to the broker at `address`, bounded by `request_timeout`.
async fn produce(
    shared: &Shared,
    address: &str,
    batches: &[Outgoing],
) -> Result<pb::ProduceResponse> {
    let config = &shared.config;
    let channel = shared.cluster.channel(address).await?;
    let mut client = BrokerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let partitions = batches
        .iter()
        .map(|outgoing| pb::PartitionRecords {
            topic: outgoing.tp.topic.clone(),
            partition: outgoing.tp.partition,
            data: Some(pb::partition_records::Data::Batches(outgoing.bytes.clone())),
            compression: pb::Compression::None as i32,
        })
        .collect();
    let timeout_ms = u32::try_from(config.request_timeout.as_millis()).unwrap_or(u32::MAX);
    let mut request = tonic::Request::new(pb::ProduceRequest {
        partitions,
        acks: config.acks.to_proto() as i32,
        timeout_ms,
    });
    // The broker's wait for acks ends first; this bounds a broker that does not answer.
    request.set_timeout(config.request_timeout + Duration::from_secs(1));
    match client.produce(request).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
            ) && status.metadata().get("weir-kafka-error-code").is_none() =>
        {
            Err(Error::Timeout {
                what: format!("the broker at {address} to answer a produce request"),
                after: config.request_timeout,
            })
        }
        Err(status) => Err(status.into()),
    }
}

/// Whether an error says the connection broke, rather than the broker refusing.
fn is_transport(error: &Error) -> bool {
    match error {
        Error::Unreachable { .. } | Error::Timeout { .. } => true,
        Error::Broker(broker) => {
            broker.kafka_code.is_none()
                && matches!(broker.code, tonic::Code::Unavailable | tonic::Code::Unknown)
        }
        _ => false,
    }
}

impl Shared {
    /// Takes the outcome of `tp`'s batch in flight: success resolves its records; a
    /// retriable failure schedules a retry (after refreshing the leader if it moved); any
    /// other failure, or running out of time, fails its records.
    pub(super) fn on_outcome(&self, tp: &TopicPartition, outcome: Result<Ack>) {
        let now = Instant::now();
        let done = {
            let mut state = self.lock();
            match outcome {
                Ok(ack) => Some((state.complete(tp), Ok(ack))),
                Err(error) if error.is_retriable() => {
                    if error.is_stale_metadata() {
                        self.cluster.invalidate(&tp.topic);
                    }
                    tracing::debug!(%tp, %error, "retrying a batch");
                    state.retry(tp, error, now).map(|batch| {
                        let error = self.timeout_error(tp, &batch);
                        (batch, Err(error))
                    })
                }
                Err(error) => Some((state.fail(tp), Err(error))),
            }
        };
        if let Some((batch, result)) = done {
            self.finish(batch, result.map(|ack| (tp, ack)));
        }
        self.wake.notify_one();
    }

    /// Gives each record of `batch` its outcome, and its bytes back to the buffer.
    pub(super) fn finish(
        &self,
        batch: Batch<super::Waiter>,
        result: Result<(&TopicPartition, Ack)>,
    ) {
        self.memory.add_permits(batch.buffered);
        match result {
            Ok((tp, ack)) => {
                let records = batch.waiters.into_iter().zip(batch.timestamps);
                for (index, (waiter, timestamp_ms)) in records.enumerate() {
                    let offset = if ack.base_offset < 0 {
                        -1
                    } else {
                        ack.base_offset + index as i64
                    };
                    let timestamp_ms = if ack.log_append_time_ms >= 0 {
                        ack.log_append_time_ms
                    } else {
                        timestamp_ms
                    };
                    // A dropped DeliveryFuture does not want to know.
                    let _ = waiter.send(Ok(RecordMetadata {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset,
                        timestamp_ms,
                    }));
                }
            }
            Err(error) => {
                for waiter in batch.waiters {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
        }
        self.progress.send_modify(|finished| *finished += 1);
    }

    /// The failure of a batch whose delivery timeout passed, with the last reason it was
    /// retried for.
    pub(super) fn timeout_error(&self, tp: &TopicPartition, batch: &Batch<super::Waiter>) -> Error {
        let last = batch
            .last_error
            .clone()
            .or_else(|| self.producer_id_error.lock().expect("not poisoned").clone());
        let reason = match last {
            Some(error) => format!("; the last try failed: {error}"),
            None => String::new(),
        };
        Error::Timeout {
            what: format!(
                "the acknowledgement of {} records for {tp} (delivery_timeout, after {} \
                 retries){reason}",
                batch.len(),
                batch.attempts
            ),
            after: self.config.delivery_timeout,
        }
    }
}
