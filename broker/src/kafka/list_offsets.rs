//! ListOffsets (v1-8): for each partition, the offset a timestamp names: -2 the log start
//! (and -4, the local log start, the same thing without tiered storage), -1 the high
//! watermark, -3 the first record with the largest timestamp, any other value the first record
//! at or after that time (Kafka treats values below -5 the same way).
//!
//! As in Kafka: a partition named twice in one request gets INVALID_REQUEST; no record found
//! (or one not yet below the high watermark) answers timestamp and offset -1; a new leader
//! whose high watermark is below its epoch's start answers OFFSET_NOT_AVAILABLE from v5 on and
//! LEADER_NOT_AVAILABLE before; the leader epoch is returned from v4 on. Every request is
//! answered as a consumer's (Kafka lets replica id -2 read a follower and bounds other replica
//! ids by the log end rather than the high watermark: Weir's followers replicate over gRPC).
//! Without transactions the last stable offset is the high watermark, so both isolation
//! levels get the same answers.

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{KafkaContext, lookup, partition_error};
use crate::partition::{OffsetSpec, PartitionError};
use crate::storage::TopicPartition;

/// Kafka's ListOffsets timestamps with a meaning of their own.
mod timestamp {
    /// The high watermark.
    pub(super) const LATEST: i64 = -1;
    /// The log start offset.
    pub(super) const EARLIEST: i64 = -2;
    /// The record with the largest timestamp (v7).
    pub(super) const MAX_TIMESTAMP: i64 = -3;
    /// The start of the log kept locally, with tiered storage (v8).
    pub(super) const EARLIEST_LOCAL: i64 = -4;
}

/// Answers a ListOffsets request at `version`.
pub(super) fn handle(
    request: &ListOffsetsRequest,
    version: i16,
    context: &KafkaContext,
) -> ListOffsetsResponse {
    let mut times_named: HashMap<(&str, i32), usize> = HashMap::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            *times_named
                .entry((topic.name.0.as_str(), partition.partition_index))
                .or_default() += 1;
        }
    }
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(wanted.partition_index);
                    if times_named[&(name, wanted.partition_index)] > 1 {
                        return failed(answer, ResponseError::InvalidRequest);
                    }
                    let tp = TopicPartition::new(name, wanted.partition_index);
                    match lookup(&tp, context) {
                        Ok(partition) => list(&partition, wanted, version, answer),
                        Err((error, _)) => failed(answer, error),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The answer for one partition this broker holds.
fn list(
    partition: &crate::partition::Partition,
    wanted: &ListOffsetsPartition,
    version: i16,
    answer: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    let spec = match wanted.timestamp {
        timestamp::LATEST => OffsetSpec::Latest,
        timestamp::EARLIEST | timestamp::EARLIEST_LOCAL => OffsetSpec::Earliest,
        timestamp::MAX_TIMESTAMP => OffsetSpec::MaxTimestamp,
        time => OffsetSpec::Timestamp(time),
    };
    let epoch = (wanted.current_leader_epoch >= 0).then_some(wanted.current_leader_epoch);
    match partition.list_offset(spec, epoch) {
        Ok(Some(found)) => {
            let answer = answer
                .with_timestamp(found.timestamp)
                .with_offset(found.offset);
            match found.leader_epoch {
                Some(epoch) if version >= 4 => answer.with_leader_epoch(epoch),
                _ => answer,
            }
        }
        // Nothing found is no error: timestamp and offset stay -1.
        Ok(None) => answer,
        Err(PartitionError::OffsetNotAvailable { .. }) if version < 5 => {
            failed(answer, ResponseError::LeaderNotAvailable)
        }
        Err(error) => failed(answer, partition_error(&error)),
    }
}

fn failed(
    answer: ListOffsetsPartitionResponse,
    error: ResponseError,
) -> ListOffsetsPartitionResponse {
    answer
        .with_error_code(error.code())
        .with_timestamp(-1)
        .with_offset(-1)
}
