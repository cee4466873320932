//! The fetcher: a background task that reads the assigned partitions ahead of
//! [`Consumer::recv`](super::Consumer::recv).
//!
//! ```text
//!   assigned partitions ──► starting offsets (committed offset, or auto_offset_reset)
//!        │
//!        ▼  grouped by leader, one long-poll Fetch per leader in flight
//!   Broker.Fetch (RECORD_FORMAT_BATCHES) ──► decode, skip records below the fetch offset
//!        │
//!        ▼
//!   bounded queue (fetch_queue_len) ──► recv
//! ```
//!
//! The queue bounds the prefetch: while it is full the fetcher waits. A fetch answer is used
//! only if its partition is still assigned at the same generation (no seek, no reset since it
//! was sent); otherwise it is dropped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use kafka_protocol::ResponseError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use weir_proto::batch;
use weir_proto::v1 as pb;
use weir_proto::v1::broker_client::BrokerClient;

use super::ConsumerRecord;
use super::config::AutoOffsetReset;
use super::state::{RETRY_BACKOFF, Shared, Start};
use crate::TopicPartition;
use crate::cluster::MAX_MESSAGE_BYTES;
use crate::error::{Error, Result};
use crate::offsets::{self, OffsetSpec};

/// What the fetcher hands to `recv`.
#[derive(Debug)]
pub(super) enum Fetched {
    /// Records of a partition, in offset order, from its fetch offset at `generation`.
    Records {
        tp: TopicPartition,
        generation: u64,
        records: Vec<ConsumerRecord>,
    },
    /// Reading a partition failed for good (until a seek).
    Failed {
        tp: TopicPartition,
        generation: u64,
        error: Error,
    },
}

/// The receiving end of the queue is gone: the consumer was dropped or closed.
struct Gone;

/// One partition of a fetch in flight.
#[derive(Debug, Clone)]
struct Part {
    tp: TopicPartition,
    generation: u64,
    offset: i64,
}

/// A finished fetch.
struct Done {
    address: String,
    parts: Vec<Part>,
    result: Result<pb::FetchResponse>,
}

/// How often the fetcher looks at its partitions again when nothing woke it.
const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs the fetcher until the consumer closes or is dropped.
pub(super) async fn run(shared: Arc<Shared>, queue: mpsc::Sender<Fetched>) {
    let mut in_flight = FuturesUnordered::new();
    let mut busy: HashSet<String> = HashSet::new();
    loop {
        if shared.lock().closed {
            return;
        }
        if resolve_starts(&shared, &queue).await.is_err() {
            return;
        }
        match plan(&shared, &busy, &queue).await {
            Ok(requests) => {
                for (address, parts, request) in requests {
                    busy.insert(address.clone());
                    in_flight.push(fetch(shared.clone(), address, parts, request));
                }
            }
            Err(Gone) => return,
        }
        tokio::select! {
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                busy.remove(&done.address);
                if handle(&shared, done, &queue).await.is_err() {
                    return;
                }
            }
            () = shared.wake_fetcher.notified() => {}
            () = tokio::time::sleep(IDLE_TICK) => {}
        }
    }
}

/// Whether a partition may be worked on now.
fn ready(retry_at: Option<Instant>, now: Instant) -> bool {
    retry_at.is_none_or(|at| at <= now)
}

/// Finds where to start the partitions that have no fetch offset yet.
async fn resolve_starts(shared: &Shared, queue: &mpsc::Sender<Fetched>) -> Result<(), Gone> {
    let now = Instant::now();
    let waiting = |start: Start| -> Vec<(TopicPartition, u64)> {
        shared
            .lock()
            .partitions
            .iter()
            .filter(|(_, p)| p.start == start && !p.in_flight && ready(p.retry_at, now))
            .map(|(tp, p)| (tp.clone(), p.generation))
            .collect()
    };
    let committed = waiting(Start::Committed);
    if !committed.is_empty() {
        let tps: Vec<TopicPartition> = committed.iter().map(|(tp, _)| tp.clone()).collect();
        match shared.committed(&tps).await {
            Ok(found) => {
                let mut state = shared.lock();
                for ((tp, offset), (_, generation)) in found.into_iter().zip(&committed) {
                    let Some(p) = state.partitions.get_mut(&tp) else {
                        continue;
                    };
                    if p.generation != *generation || p.start != Start::Committed {
                        continue;
                    }
                    match offset {
                        Some(offset) => {
                            p.start = Start::Known;
                            p.fetch_offset = offset;
                            p.position = Some(offset);
                        }
                        None => p.start = Start::Reset,
                    }
                }
            }
            Err(error) => fail_or_retry(shared, queue, &committed, error).await?,
        }
    }
    for (tp, generation) in waiting(Start::Reset) {
        let spec = match shared.config.auto_offset_reset {
            AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            AutoOffsetReset::Latest => OffsetSpec::Latest,
            AutoOffsetReset::None => {
                let error = Error::NoOffset {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    group: shared.config.group.clone(),
                };
                fail(shared, queue, &tp, generation, error).await?;
                continue;
            }
        };
        match offsets::list_offset(&shared.cluster, &tp.topic, tp.partition, spec).await {
            Ok(offset) => {
                let mut state = shared.lock();
                if let Some(p) = state.partitions.get_mut(&tp)
                    && p.generation == generation
                    && p.start == Start::Reset
                {
                    p.start = Start::Known;
                    p.fetch_offset = offset;
                    p.position = Some(offset);
                }
            }
            Err(error) => fail_or_retry(shared, queue, &[(tp, generation)], error).await?,
        }
    }
    Ok(())
}

/// After a failed call about `parts`: try again later if it may pass, else fail them.
async fn fail_or_retry(
    shared: &Shared,
    queue: &mpsc::Sender<Fetched>,
    parts: &[(TopicPartition, u64)],
    error: Error,
) -> Result<(), Gone> {
    if error.is_retriable() {
        tracing::debug!(%error, "retrying a consumer's offset lookup");
        let mut state = shared.lock();
        for (tp, generation) in parts {
            if let Some(p) = state.partitions.get_mut(tp)
                && p.generation == *generation
            {
                p.retry_at = Some(Instant::now() + RETRY_BACKOFF);
            }
        }
        return Ok(());
    }
    for (tp, generation) in parts {
        fail(shared, queue, tp, *generation, error.clone()).await?;
    }
    Ok(())
}

/// Stops reading a partition until a seek, and tells `recv` why.
async fn fail(
    shared: &Shared,
    queue: &mpsc::Sender<Fetched>,
    tp: &TopicPartition,
    generation: u64,
    error: Error,
) -> Result<(), Gone> {
    {
        let mut state = shared.lock();
        match state.partitions.get_mut(tp) {
            Some(p) if p.generation == generation => {
                p.start = Start::Failed;
                p.in_flight = false;
            }
            _ => return Ok(()),
        }
    }
    let failed = Fetched::Failed {
        tp: tp.clone(),
        generation,
        error,
    };
    queue.send(failed).await.map_err(|_| Gone)
}

/// The fetches to send now: the ready partitions grouped by leader, skipping leaders that
/// already have one in flight.
async fn plan(
    shared: &Shared,
    busy: &HashSet<String>,
    queue: &mpsc::Sender<Fetched>,
) -> Result<Vec<(String, Vec<Part>, pb::FetchRequest)>, Gone> {
    let now = Instant::now();
    let candidates: Vec<Part> = shared
        .lock()
        .partitions
        .iter()
        .filter(|(_, p)| p.start == Start::Known && !p.in_flight && ready(p.retry_at, now))
        .map(|(tp, p)| Part {
            tp: tp.clone(),
            generation: p.generation,
            offset: p.fetch_offset,
        })
        .collect();
    let mut by_leader: BTreeMap<String, Vec<(Part, i32)>> = BTreeMap::new();
    for part in candidates {
        match shared
            .cluster
            .leader(&part.tp.topic, part.tp.partition)
            .await
        {
            Ok((_, address)) if busy.contains(&address) => {}
            Ok((info, address)) => by_leader
                .entry(address)
                .or_default()
                .push((part, info.leader_epoch)),
            Err(error) => {
                let parts = [(part.tp, part.generation)];
                fail_or_retry(shared, queue, &parts, error).await?;
            }
        }
    }
    let config = &shared.config;
    let mut requests = Vec::with_capacity(by_leader.len());
    let mut state = shared.lock();
    for (address, parts) in by_leader {
        let mut kept = Vec::with_capacity(parts.len());
        let mut wanted = Vec::with_capacity(parts.len());
        for (part, leader_epoch) in parts {
            let Some(p) = state.partitions.get_mut(&part.tp) else {
                continue;
            };
            if p.generation != part.generation || p.start != Start::Known {
                continue;
            }
            p.in_flight = true;
            wanted.push(pb::FetchPartition {
                topic: part.tp.topic.clone(),
                partition: part.tp.partition,
                offset: part.offset,
                max_bytes: config.max_partition_fetch_bytes,
                leader_epoch: (leader_epoch >= 0).then_some(leader_epoch),
            });
            kept.push(part);
        }
        if kept.is_empty() {
            continue;
        }
        let request = pb::FetchRequest {
            partitions: wanted,
            max_wait_ms: u32::try_from(config.fetch_max_wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: config.fetch_min_bytes,
            max_bytes: config.fetch_max_bytes,
            format: pb::RecordFormat::Batches as i32,
        };
        requests.push((address, kept, request));
    }
    Ok(requests)
}

/// Sends one fetch to a leader.
async fn fetch(
    shared: Arc<Shared>,
    address: String,
    parts: Vec<Part>,
    request: pb::FetchRequest,
) -> Done {
    let result: Result<pb::FetchResponse> = async {
        let channel = shared.cluster.channel(&address).await?;
        let mut broker = BrokerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(broker.fetch(request).await?.into_inner())
    }
    .await;
    Done {
        address,
        parts,
        result,
    }
}

/// Uses a finished fetch: queues its records and moves the fetch offsets on.
async fn handle(shared: &Shared, done: Done, queue: &mpsc::Sender<Fetched>) -> Result<(), Gone> {
    let answer = match done.result {
        Ok(answer) => answer,
        Err(error) => {
            // The broker may be gone: connect again, and ask who leads its partitions now.
            if error.is_stale_metadata() || error.is_retriable() {
                shared.cluster.forget(&done.address);
                for part in &done.parts {
                    shared.cluster.invalidate(&part.tp.topic);
                }
            }
            for part in &done.parts {
                partition_failed(shared, queue, part, error.clone()).await?;
            }
            return Ok(());
        }
    };
    if answer.partitions.len() != done.parts.len() {
        let error = Error::invalid(
            "fetch answer",
            format!(
                "broker {} answered {} partitions to a fetch of {}",
                done.address,
                answer.partitions.len(),
                done.parts.len()
            ),
        );
        for part in &done.parts {
            partition_failed(shared, queue, part, error.clone()).await?;
        }
        return Ok(());
    }
    for (part, data) in done.parts.iter().zip(answer.partitions) {
        if let Some(error) = data.error {
            partition_failed(shared, queue, part, error.into()).await?;
            continue;
        }
        let records = match decode(&part.tp, &data.batches, part.offset) {
            Ok(records) => records,
            Err(error) => {
                fail(shared, queue, &part.tp, part.generation, error).await?;
                continue;
            }
        };
        let next_offset = records
            .last()
            .map_or(part.offset, |r| r.offset + 1)
            .max(data.next_offset);
        {
            let mut state = shared.lock();
            let Some(p) = state.partitions.get_mut(&part.tp) else {
                continue;
            };
            if p.generation != part.generation {
                continue;
            }
            p.in_flight = false;
            p.retry_at = None;
            if p.start == Start::Known {
                p.fetch_offset = next_offset;
            }
        }
        if !records.is_empty() {
            let fetched = Fetched::Records {
                tp: part.tp.clone(),
                generation: part.generation,
                records,
            };
            queue.send(fetched).await.map_err(|_| Gone)?;
        }
    }
    Ok(())
}

/// A partition's fetch failed: refresh and retry, reset its offset, or give up on it.
async fn partition_failed(
    shared: &Shared,
    queue: &mpsc::Sender<Fetched>,
    part: &Part,
    error: Error,
) -> Result<(), Gone> {
    let out_of_range = error.kafka_error() == Some(ResponseError::OffsetOutOfRange);
    if out_of_range && shared.config.auto_offset_reset != AutoOffsetReset::None {
        tracing::info!(tp = %part.tp, offset = part.offset, "offset out of range; resetting");
        let mut state = shared.lock();
        if let Some(p) = state.partitions.get_mut(&part.tp)
            && p.generation == part.generation
        {
            p.in_flight = false;
            p.start = Start::Reset;
        }
        return Ok(());
    }
    if error.is_stale_metadata() || error.is_retriable() {
        if error.is_stale_metadata() {
            shared.cluster.invalidate(&part.tp.topic);
        }
        tracing::debug!(tp = %part.tp, %error, "retrying a fetch");
        let mut state = shared.lock();
        if let Some(p) = state.partitions.get_mut(&part.tp)
            && p.generation == part.generation
        {
            p.in_flight = false;
            p.retry_at = Some(Instant::now() + RETRY_BACKOFF);
        }
        return Ok(());
    }
    fail(shared, queue, &part.tp, part.generation, error).await
}

/// The records of `buf` (whole batches) at or after `from`, without control batches.
fn decode(tp: &TopicPartition, buf: &[u8], from: i64) -> Result<Vec<ConsumerRecord>> {
    let mut out = Vec::new();
    for item in batch::batches(buf) {
        let (position, header) = item.map_err(|e| Error::Decode(e.into()))?;
        if header.is_control() || header.next_offset() <= from {
            continue;
        }
        let records =
            batch::decode(&buf[position..position + header.size()]).map_err(Error::Decode)?;
        out.extend(
            records
                .into_iter()
                .filter(|r| r.offset >= from)
                .map(|r| ConsumerRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: r.offset,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp_ms: r.timestamp,
                }),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use weir_proto::batch::{self, EncodeOptions, Record};

    use super::decode;
    use crate::TopicPartition;

    fn batch(offsets: std::ops::Range<i64>, control: bool) -> Bytes {
        let records: Vec<Record> = offsets
            .map(|offset| Record {
                key: Some(Bytes::from(format!("k{offset}"))),
                value: Some(Bytes::from(format!("v{offset}"))),
                headers: vec![("h".to_string(), None)],
                timestamp: 1_000 + offset,
                offset,
            })
            .collect();
        let options = EncodeOptions {
            control,
            ..EncodeOptions::default()
        };
        let mut encoded = BytesMut::from(&batch::encode(&records, &options).unwrap()[..]);
        batch::set_base_offset(&mut encoded, records[0].offset);
        encoded.freeze()
    }

    fn offsets_from(buf: &[u8], from: i64) -> Vec<i64> {
        decode(&TopicPartition::new("t", 0), buf, from)
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect()
    }

    #[test]
    fn records_below_the_fetch_offset_are_skipped() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&batch(0..5, false));
        buf.extend_from_slice(&batch(5..10, false));
        assert_eq!(offsets_from(&buf, 0), (0..10).collect::<Vec<_>>());
        assert_eq!(offsets_from(&buf, 3), (3..10).collect::<Vec<_>>());
        assert_eq!(offsets_from(&buf, 7), vec![7, 8, 9]);
        assert_eq!(offsets_from(&buf, 10), Vec::<i64>::new());
        let record = &decode(&TopicPartition::new("t", 0), &buf, 9).unwrap()[0];
        assert_eq!(record.key.as_deref(), Some(&b"k9"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"v9"[..]));
        assert_eq!(record.headers, vec![("h".to_string(), None)]);
        assert_eq!(record.timestamp_ms, 1_009);
        assert_eq!((record.topic.as_str(), record.partition), ("t", 0));
    }

    #[test]
    fn control_batches_are_skipped() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&batch(0..3, false));
        buf.extend_from_slice(&batch(3..4, true));
        buf.extend_from_slice(&batch(4..6, false));
        assert_eq!(offsets_from(&buf, 0), vec![0, 1, 2, 4, 5]);
        assert_eq!(offsets_from(&buf, 3), vec![4, 5]);
    }

    #[test]
    fn damaged_batches_are_an_error() {
        let mut buf = BytesMut::from(&batch(0..3, false)[..]);
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        let error = decode(&TopicPartition::new("t", 0), &buf, 0).unwrap_err();
        assert!(matches!(error, crate::Error::Decode(_)), "{error:?}");
    }
}
