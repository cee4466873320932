//! OffsetForLeaderEpoch (v2-4): where the records of a leader epoch end in the leader's log,
//! which a consumer (KIP-320) or follower uses to detect that its log diverged after a leader
//! change. The answer is the largest epoch at or below the one asked for and the start offset
//! of the next epoch, or the log end offset for the latest epoch; -1 and -1 when the epoch is
//! beyond every epoch the log knows, or the log knows none.
//!
//! As in Kafka, only the leader answers (whatever the replica id, v3+), after checking the
//! client's current leader epoch (FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH; -1 skips it).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{KafkaContext, lookup, partition_error};
use crate::storage::TopicPartition;

/// Answers an OffsetForLeaderEpoch request.
pub(super) fn handle(
    request: &OffsetForLeaderEpochRequest,
    context: &KafkaContext,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.topic.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let answer = EpochEndOffset::default().with_partition(wanted.partition);
                    let tp = TopicPartition::new(name, wanted.partition);
                    let partition = match lookup(&tp, context) {
                        Ok(partition) => partition,
                        Err((error, _)) => return failed(answer, error),
                    };
                    let current =
                        (wanted.current_leader_epoch >= 0).then_some(wanted.current_leader_epoch);
                    match partition.end_offset_for_epoch(current, wanted.leader_epoch) {
                        Ok(end) => answer
                            .with_leader_epoch(end.leader_epoch)
                            .with_end_offset(end.end_offset),
                        Err(error) => failed(answer, partition_error(&error)),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

fn failed(answer: EpochEndOffset, error: ResponseError) -> EpochEndOffset {
    answer
        .with_error_code(error.code())
        .with_leader_epoch(-1)
        .with_end_offset(-1)
}
