//! ListOffsets: a partition's log start offset, its high watermark, or the first record at or
//! after a timestamp, as its leader knows them (`Partition::list_offset`, which the Kafka
//! front end uses too). Only offsets below the high watermark are given, as Kafka does for
//! consumers.

use kafka_protocol::ResponseError;
use weir_proto::v1 as pb;

use super::status::error;
use crate::kafka::{KafkaContext, Refusal, lookup, refused};
use crate::partition::OffsetSpec;
use crate::storage::TopicPartition;

/// Answers a ListOffsets request, each query in order.
pub(super) fn list_offsets(
    request: pb::ListOffsetsRequest,
    context: &KafkaContext,
) -> pb::ListOffsetsResponse {
    let partitions = request
        .partitions
        .into_iter()
        .map(|query| {
            let tp = TopicPartition::new(query.topic.clone(), query.partition);
            let mut answer = pb::PartitionOffset {
                topic: query.topic.clone(),
                partition: query.partition,
                offset: -1,
                timestamp_ms: -1,
                leader_epoch: -1,
                error: None,
            };
            match find(&tp, &query, context) {
                Ok((offset, timestamp_ms, leader_epoch)) => {
                    answer.offset = offset;
                    answer.timestamp_ms = timestamp_ms;
                    answer.leader_epoch = leader_epoch;
                }
                Err(refusal) => answer.error = Some(error(&refusal)),
            }
            answer
        })
        .collect();
    pb::ListOffsetsResponse { partitions }
}

/// The offset, timestamp and leader epoch that answer `query` from the partition held here
/// (the offset -1 when no record qualifies).
pub(super) fn find(
    tp: &TopicPartition,
    query: &pb::OffsetQuery,
    context: &KafkaContext,
) -> Result<(i64, i64, i32), Refusal> {
    let spec = pb::OffsetSpec::try_from(query.spec).map_err(|_| {
        (
            ResponseError::InvalidRequest,
            format!("offset spec {} is not one Weir knows", query.spec),
        )
    })?;
    let partition = lookup(tp, context)?;
    let spec = match spec {
        pb::OffsetSpec::Earliest => OffsetSpec::Earliest,
        pb::OffsetSpec::Latest => OffsetSpec::Latest,
        pb::OffsetSpec::Timestamp => OffsetSpec::Timestamp(query.timestamp_ms),
    };
    let leader_epoch = partition.leader_epoch();
    let found = partition.list_offset(spec, None).map_err(|e| refused(&e))?;
    Ok(match found {
        Some(found) => (found.offset, found.timestamp, leader_epoch),
        None => (-1, -1, leader_epoch),
    })
}
