//! Fetch: the Kafka front end's long poll ([`crate::kafka::fetch::long_poll`]) over the
//! partitions asked for, answered as batches or decoded records.

use std::time::Duration;

use tonic::Status;
use weir_proto::v1 as pb;

use super::convert;
use super::status::{error, status};
use crate::kafka::fetch::{Wanted, long_poll};
use crate::kafka::{KafkaContext, Refusal};
use crate::partition::ReadResult;
use crate::storage::TopicPartition;

/// The byte limit of a fetch, or of one partition of it, when the request gives none.
pub(super) const FETCH_BYTES_DEFAULT: usize = 1024 * 1024;
/// The longest a fetch waits for records; a longer `max_wait_ms` waits this long.
pub(super) const FETCH_WAIT_MAX_MS: u32 = 60_000;

/// Answers a Fetch request.
pub(super) async fn fetch(
    request: pb::FetchRequest,
    context: &KafkaContext,
) -> Result<pb::FetchResponse, Status> {
    let format = convert::format(request.format).map_err(|refusal| status(&refusal))?;
    let wanted: Vec<Wanted> = request
        .partitions
        .iter()
        .map(|p| Wanted {
            tp: TopicPartition::new(p.topic.clone(), p.partition),
            offset: p.offset,
            max_bytes: bytes_or_default(p.max_bytes),
            leader_epoch: p.leader_epoch,
        })
        .collect();
    let wait = Duration::from_millis(u64::from(request.max_wait_ms.min(FETCH_WAIT_MAX_MS)));
    let answers = long_poll(
        &wanted,
        bytes_or_default(request.max_bytes),
        usize::try_from(request.min_bytes).unwrap_or(usize::MAX),
        wait,
        context,
    )
    .await;
    for (want, answer) in wanted.iter().zip(&answers) {
        if let Ok(read) = answer {
            crate::metrics::records_out(&want.tp.topic, &read.records);
        }
    }
    let partitions = wanted
        .into_iter()
        .zip(answers)
        .map(|(want, answer)| partition_data(want, answer, format))
        .collect();
    Ok(pb::FetchResponse { partitions })
}

/// A byte limit of the request, 0 meaning [`FETCH_BYTES_DEFAULT`].
pub(super) fn bytes_or_default(max_bytes: u32) -> usize {
    match max_bytes {
        0 => FETCH_BYTES_DEFAULT,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

fn partition_data(
    want: Wanted,
    answer: Result<ReadResult, Refusal>,
    format: pb::RecordFormat,
) -> pb::PartitionData {
    let mut data = pb::PartitionData {
        topic: want.tp.topic.clone(),
        partition: want.tp.partition,
        high_watermark: -1,
        log_start_offset: -1,
        next_offset: want.offset,
        ..pb::PartitionData::default()
    };
    let read = answer.and_then(|read| {
        let (batches, records, next_offset) =
            convert::records(&want.tp, read.records, want.offset, format)?;
        Ok((
            read.high_watermark,
            read.log_start_offset,
            batches,
            records,
            next_offset,
        ))
    });
    match read {
        Ok((high_watermark, log_start_offset, batches, records, next_offset)) => {
            data.high_watermark = high_watermark;
            data.log_start_offset = log_start_offset;
            data.batches = batches;
            data.records = records;
            data.next_offset = next_offset;
        }
        Err(refusal) => data.error = Some(error(&refusal)),
    }
    data
}
