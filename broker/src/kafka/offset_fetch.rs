//! OffsetFetch (v1-9): a group's committed offsets, for the partitions named or (from v2,
//! topics null) for every partition it committed. From v8 one request asks for many groups.
//! A partition with nothing committed gets offset -1.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::KafkaContext;
use crate::group::OffsetFetchResult;

/// Answers an OffsetFetch request.
pub(super) async fn handle(
    request: OffsetFetchRequest,
    version: i16,
    context: &KafkaContext,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in request.groups {
            let asked = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let member = group
                .member_id
                .as_deref()
                .map(|m| (m.to_string(), group.member_epoch));
            groups.push(fetch_group(group.group_id, member, asked, context).await);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let asked = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let group = fetch_group(request.group_id, None, asked, context).await;
    let topics = group
        .topics
        .into_iter()
        .map(|topic| {
            OffsetFetchResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(
                    topic
                        .partitions
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_committed_offset(p.committed_offset)
                                .with_committed_leader_epoch(p.committed_leader_epoch)
                                .with_metadata(p.metadata)
                                .with_error_code(p.error_code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(group.error_code)
}

async fn fetch_group(
    group_id: GroupId,
    member: Option<(String, i32)>,
    asked: Option<Vec<(String, Vec<i32>)>>,
    context: &KafkaContext,
) -> OffsetFetchResponseGroup {
    let response = OffsetFetchResponseGroup::default().with_group_id(group_id.clone());
    let (member_id, member_epoch) = match &member {
        Some((id, epoch)) => (Some(id.as_str()), *epoch),
        None => (None, -1),
    };
    let fetched = context
        .groups
        .fetch_offsets_as(&group_id, member_id, member_epoch, asked.clone())
        .await;
    match fetched {
        Ok(offsets) => response.with_topics(by_topic(offsets)),
        Err((error, message)) => {
            tracing::debug!(group = %group_id.0, %message, "OffsetFetch refused");
            // Each partition asked for carries the error too, as older clients look there.
            let partitions = asked
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(topic, ps)| ps.into_iter().map(move |p| (topic.clone(), p, None)))
                .collect();
            let mut topics = by_topic(partitions);
            for topic in &mut topics {
                for p in &mut topic.partitions {
                    p.error_code = error.code();
                }
            }
            response.with_topics(topics).with_error_code(error.code())
        }
    }
}

fn by_topic(offsets: Vec<OffsetFetchResult>) -> Vec<OffsetFetchResponseTopics> {
    let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
    for (topic, partition, committed) in offsets {
        let entry = OffsetFetchResponsePartitions::default().with_partition_index(partition);
        let entry = match committed {
            Some(c) => entry
                .with_committed_offset(c.offset)
                .with_committed_leader_epoch(c.leader_epoch)
                .with_metadata(c.metadata.map(StrBytes::from_string)),
            None => entry
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(StrBytes::default())),
        };
        match topics.last_mut() {
            Some(last) if *last.name.0 == *topic => last.partitions.push(entry),
            _ => topics.push(
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    topics
}
