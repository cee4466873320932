//! ResetOffsets: moves a group's committed offsets of one topic, as
//! `kafka-consumer-groups --reset-offsets` does.
//!
//! ```text
//!  check the group has no members ─▶ its committed offsets ─▶ the offsets the target needs,
//!  asked of each partition's leader ─▶ the plan ─▶ (unless a dry run) committed through the
//!  coordinator with generation -1
//! ```
//!
//! Only a group with no members may be reset, else NON_EMPTY_GROUP: members would commit
//! over the reset. The coordinator checks again when it commits (a commit at generation -1 is
//! accepted only by a group without members), so a member that joins meanwhile still makes
//! the reset fail rather than be overwritten. Nothing is committed unless every partition
//! has its new offset.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use weir_proto::v1 as pb;
use weir_proto::v1::reset_offsets_request::Target;

use super::groups::state;
use super::leader_offsets;
use super::status::invalid;
use crate::group::OffsetCommit;
use crate::kafka::{KafkaContext, Refusal};

/// Plans the reset and, unless it is a dry run, commits it: each partition's current and
/// new offset, in partition order.
pub(super) async fn reset_offsets(
    request: pb::ResetOffsetsRequest,
    context: &KafkaContext,
) -> Result<Vec<pb::OffsetReset>, Refusal> {
    let group = request.group.as_str();
    let topic = request.topic.as_str();
    let target = request.target.ok_or_else(|| {
        invalid("say where to reset to: to_earliest, to_latest, to_timestamp_ms or shift_by")
    })?;
    let partitions = partitions(topic, &request.partitions, context)?;
    let description = context.groups.describe_group(group).await?;
    let empty = matches!(
        state(description.state),
        pb::GroupState::Empty | pb::GroupState::Dead
    );
    if !empty {
        return Err(non_empty(group, description.members.len()));
    }
    let current: Vec<i64> = context
        .groups
        .fetch_offsets(group, Some(vec![(topic.to_string(), partitions.clone())]))
        .await?
        .into_iter()
        .map(|(_, _, value)| value.map_or(-1, |v| v.offset))
        .collect();
    let targets = new_offsets(topic, &partitions, &current, target, context).await?;
    let plan: Vec<pb::OffsetReset> = partitions
        .iter()
        .zip(current)
        .zip(targets)
        .map(
            |((&partition, current_offset), new_offset)| pb::OffsetReset {
                topic: topic.to_string(),
                partition,
                current_offset,
                new_offset,
            },
        )
        .collect();
    if request.dry_run {
        return Ok(plan);
    }
    let commits = plan
        .iter()
        .map(|reset| OffsetCommit {
            topic: reset.topic.clone(),
            partition: reset.partition,
            offset: reset.new_offset,
            leader_epoch: -1,
            metadata: None,
        })
        .collect();
    let committed = context
        .groups
        .commit_offsets(group, "", None, -1, commits)
        .await
        .map_err(|refusal| match refusal.0 {
            // A commit without a member is refused only once members have joined.
            ResponseError::UnknownMemberId | ResponseError::IllegalGeneration => {
                non_empty(group, 1)
            }
            _ => refusal,
        })?;
    // A write failure refuses every partition alike; a partition that vanished meanwhile
    // is named by its own refusal.
    if let Some(refusal) = committed.into_iter().flatten().next() {
        return Err(refusal);
    }
    tracing::info!(
        group,
        topic,
        partitions = plan.len(),
        "reset committed offsets"
    );
    Ok(plan)
}

fn non_empty(group: &str, members: usize) -> Refusal {
    (
        ResponseError::NonEmptyGroup,
        format!(
            "group {group:?} has members ({members}); stop its consumers (or wait for their \
             sessions to end) before resetting its offsets"
        ),
    )
}

/// The partitions to reset: those listed (each once, in order), or every partition of the
/// topic.
fn partitions(topic: &str, listed: &[i32], context: &KafkaContext) -> Result<Vec<i32>, Refusal> {
    let metadata = context.controller.metadata();
    let count = metadata
        .topic_by_name(topic)
        .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("topic {topic:?} does not exist"),
            )
        })?;
    if listed.is_empty() {
        return Ok((0..count).collect());
    }
    if let Some(missing) = listed.iter().find(|&&p| p < 0 || p >= count) {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{missing} does not exist: {topic} has {count} partitions"),
        ));
    }
    Ok(listed
        .iter()
        .copied()
        .collect::<BTreeSet<i32>>()
        .into_iter()
        .collect())
}

/// Each partition's new offset for `target`, from the offsets its leader gives.
async fn new_offsets(
    topic: &str,
    partitions: &[i32],
    current: &[i64],
    target: Target,
    context: &KafkaContext,
) -> Result<Vec<i64>, Refusal> {
    let ask = |spec: pb::OffsetSpec, timestamp_ms: i64| async move {
        let queries = partitions
            .iter()
            .map(|&partition| pb::OffsetQuery {
                topic: topic.to_string(),
                partition,
                spec: spec as i32,
                timestamp_ms,
            })
            .collect();
        leader_offsets::list(queries, context)
            .await
            .into_iter()
            .collect::<Result<Vec<i64>, Refusal>>()
    };
    match target {
        Target::ToEarliest(_) => ask(pb::OffsetSpec::Earliest, -1).await,
        Target::ToLatest(_) => ask(pb::OffsetSpec::Latest, -1).await,
        Target::ToTimestampMs(timestamp_ms) => {
            let found = ask(pb::OffsetSpec::Timestamp, timestamp_ms).await?;
            if found.iter().all(|&offset| offset >= 0) {
                return Ok(found);
            }
            // No record at or after the time: the group starts at the end, as Kafka's tool
            // resets it.
            let latest = ask(pb::OffsetSpec::Latest, -1).await?;
            Ok(found
                .into_iter()
                .zip(latest)
                .map(|(found, latest)| if found >= 0 { found } else { latest })
                .collect())
        }
        Target::ShiftBy(shift) => {
            if let Some((partition, _)) = partitions.iter().zip(current).find(|(_, c)| **c < 0) {
                return Err(invalid(format!(
                    "{topic}-{partition} has no committed offset to shift; reset it to an \
                     offset first"
                )));
            }
            let earliest = ask(pb::OffsetSpec::Earliest, -1).await?;
            let latest = ask(pb::OffsetSpec::Latest, -1).await?;
            Ok(current
                .iter()
                .zip(earliest.into_iter().zip(latest))
                .map(|(&current, (earliest, latest))| {
                    current
                        .saturating_add(shift)
                        .clamp(earliest, latest.max(earliest))
                })
                .collect())
        }
    }
}
