//! OffsetCommit (v2-9): a group's consumers record how far they read. The member and
//! generation are checked (a consumer that assigns its own partitions commits with
//! generation -1 to a group without members); every partition's offset is written with
//! acks=all before the answer.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::KafkaContext;
use crate::group::OffsetCommit;

/// Answers an OffsetCommit request.
pub(super) async fn handle(
    request: OffsetCommitRequest,
    context: &KafkaContext,
) -> OffsetCommitResponse {
    let offsets: Vec<OffsetCommit> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| OffsetCommit {
                topic: topic.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let results = context
        .groups
        .commit_offsets(
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id_or_member_epoch,
            offsets,
        )
        .await;
    // One error for every partition when the whole commit was refused.
    let mut codes = match results {
        Ok(results) => results
            .into_iter()
            .map(|r| {
                if let Some((_, message)) = &r {
                    tracing::debug!(group = %request.group_id.0, %message, "an offset commit refused");
                }
                r.map_or(0, |(e, _)| e.code())
            })
            .collect::<Vec<_>>()
            .into_iter(),
        Err((error, message)) => {
            tracing::debug!(group = %request.group_id.0, %message, "OffsetCommit refused");
            let count = request.topics.iter().map(|t| t.partitions.len()).sum();
            vec![error.code(); count].into_iter()
        }
    };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
