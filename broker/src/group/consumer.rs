//! One consumer group under the new consumer protocol (KIP-848, the `ConsumerGroupHeartbeat` API):
//! the coordinator computes the assignment and moves every member towards it by incremental
//! revocation. Pure: no I/O, time comes in as `now_ms` arguments.
//!
//! ```text
//!  heartbeat ──► validate, fence ──► member metadata changed? ──► bump group epoch,
//!                                                                 recompute target assignment
//!                                    ──► reconcile this member's current assignment:
//!
//!       Stable ──(target epoch moved)──► UnrevokedPartitions ──(owned no longer has them)──┐
//!         ▲                                 keeps epoch, returns only what it keeps        │
//!         │                                                                                 ▼
//!         └──(nothing left to wait for)── UnreleasedPartitions ◄──(new partitions still held
//!                                           at the new epoch           by another member)
//! ```
//!
//! Every change that must survive a coordinator failover is a [`ConsumerGroupRecord`]. Handlers
//! never mutate the group directly: they emit records and apply each through [`ConsumerGroup::replay`],
//! the same function a new coordinator uses when it reads the records back, so a replayed group is
//! equal to the live one. Only the timers (session and revocation deadlines) are not records; a
//! loaded group restarts them with [`ConsumerGroup::loaded`].
//!
//! Invariants (checked by [`ConsumerGroup::validate`] in tests):
//! - a partition is in at most one member's assigned partitions or partitions pending revocation,
//!   so two members never own one partition at once;
//! - the assignment epoch never exceeds the group epoch;
//! - a member's epoch never exceeds the assignment epoch;
//! - the index of instance ids and of partition owners matches the members.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::assignor::{Assignment, AssignmentSpec, Assignor, MemberSpec, TopicId};

/// The member epoch a member sends to join or rejoin.
pub(crate) const JOIN_GROUP_MEMBER_EPOCH: i32 = 0;
/// The member epoch a member sends to leave the group for good.
pub(crate) const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The member epoch a static member sends to leave while keeping its assignment for a restart.
pub(crate) const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// The settings of a consumer group (Kafka's `group.consumer.*` broker configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConsumerGroupConfig {
    /// How long a member may go without a heartbeat before it is removed.
    pub(crate) session_timeout_ms: i64,
    /// How often members are told to heartbeat.
    pub(crate) heartbeat_interval_ms: i32,
    /// The most members the group accepts.
    pub(crate) max_size: usize,
}

impl Default for ConsumerGroupConfig {
    /// Kafka's defaults: 45 s sessions, 5 s heartbeats, no size limit.
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
        }
    }
}

/// A topic as the cluster metadata describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicMetadata {
    /// The topic's id.
    pub(crate) id: TopicId,
    /// The topic's current partition count.
    pub(crate) partition_count: i32,
}

/// The topics of the cluster by name, filled by the runtime from cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TopicsView {
    topics: BTreeMap<String, TopicMetadata>,
}

impl TopicsView {
    /// An empty view: no topic exists.
    pub(crate) fn new() -> TopicsView {
        TopicsView::default()
    }

    /// Adds or replaces the topic `name`.
    pub(crate) fn insert(&mut self, name: impl Into<String>, id: TopicId, partition_count: i32) {
        let metadata = TopicMetadata {
            id,
            partition_count,
        };
        self.topics.insert(name.into(), metadata);
    }

    #[cfg(test)]
    /// Removes the topic `name`, as when it is deleted.
    pub(crate) fn remove(&mut self, name: &str) {
        self.topics.remove(name);
    }

    /// The topic `name`, if it exists.
    pub(crate) fn get(&self, name: &str) -> Option<TopicMetadata> {
        self.topics.get(name).copied()
    }
}

/// A `ConsumerGroupHeartbeat` request (v0/v1) in plain Rust, plus the client's id and host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeartbeatRequest {
    /// The member id; v0 clients send it empty to join and get one generated, v1 clients send
    /// their own.
    pub(crate) member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member to leave temporarily, else the member's epoch.
    pub(crate) member_epoch: i32,
    /// The static member's `group.instance.id`, if any.
    pub(crate) instance_id: Option<String>,
    /// The member's rack; `None` leaves it unchanged.
    pub(crate) rack_id: Option<String>,
    /// The longest the member may take to revoke partitions; -1 leaves it unchanged.
    pub(crate) rebalance_timeout_ms: i32,
    /// The topics the member subscribes to; `None` leaves them unchanged.
    pub(crate) subscribed_topic_names: Option<Vec<String>>,
    /// The server assignor the member asks for; `None` leaves its choice unchanged.
    pub(crate) server_assignor: Option<String>,
    /// The partitions the member owns now; `None` means unchanged since its last heartbeat.
    pub(crate) topic_partitions: Option<Vec<(TopicId, Vec<i32>)>>,
    /// The client id from the request header.
    pub(crate) client_id: String,
    /// The client's address.
    pub(crate) client_host: String,
}

/// What a heartbeat decided: the response's fields and the records to persist before answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeartbeatOutcome {
    /// The member's id (generated when the member joined with an empty one).
    pub(crate) member_id: String,
    /// The member's epoch, or -1 / -2 after a leave.
    pub(crate) member_epoch: i32,
    /// How long the member should wait before its next heartbeat.
    pub(crate) heartbeat_interval_ms: i32,
    /// The partitions the member must own, when they changed or the member must be told again.
    pub(crate) assignment: Option<Assignment>,
    /// The records to write to `__consumer_offsets`; the group has already applied them.
    pub(crate) records: Vec<ConsumerGroupRecord>,
}

/// Where a member stands in reconciling towards its target assignment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum MemberState {
    /// The member owns its assignment at the assignment epoch, or a subset waiting for nothing.
    #[default]
    Stable,
    /// The member must first give up partitions; it stays at its epoch until it has.
    UnrevokedPartitions,
    /// The member is at the new epoch but waits for partitions other members still own.
    UnreleasedPartitions,
}

/// The state of the group, as KIP-848 and `ConsumerGroupDescribe` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    /// No members.
    Empty,
    /// The group epoch moved and the target assignment is not computed yet.
    Assigning,
    /// Some member has not reached the target assignment.
    Reconciling,
    /// Every member owns its target assignment at the assignment epoch.
    Stable,
    /// The group was deleted.
    Dead,
}

/// A member's metadata as persisted: everything but its assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemberMetadata {
    /// The member's id.
    pub(crate) member_id: String,
    /// The static member's instance id.
    pub(crate) instance_id: Option<String>,
    /// The member's rack.
    pub(crate) rack_id: Option<String>,
    /// The client id the member last used.
    pub(crate) client_id: String,
    /// The client's address.
    pub(crate) client_host: String,
    /// The topics the member subscribes to.
    pub(crate) subscribed_topic_names: BTreeSet<String>,
    /// The server assignor the member asked for, if any.
    pub(crate) server_assignor: Option<String>,
    /// The longest the member may take to revoke partitions.
    pub(crate) rebalance_timeout_ms: i32,
}

/// A member's current assignment as persisted: where it stands in reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CurrentAssignment {
    /// The member's id.
    pub(crate) member_id: String,
    /// The member's epoch (-2 while a static member is away).
    pub(crate) member_epoch: i32,
    /// The epoch before the last change, accepted in a heartbeat whose response was lost.
    pub(crate) previous_member_epoch: i32,
    /// Where the member stands.
    pub(crate) state: MemberState,
    /// The partitions the member owns and keeps.
    pub(crate) assigned: Assignment,
    /// The partitions the member owns but must give up.
    pub(crate) pending_revocation: Assignment,
}

/// A change to a consumer group that must survive a coordinator failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConsumerGroupRecord {
    /// The group epoch moved.
    GroupMetadata {
        /// The new group epoch.
        group_epoch: i32,
    },
    /// The subscribed topics' ids and partition counts that the target assignment was computed
    /// from; a change of them bumps the group epoch.
    SubscriptionMetadata {
        /// The subscribed topics that exist, by name.
        topics: BTreeMap<String, TopicMetadata>,
    },
    /// A member joined or its metadata changed (an upsert).
    MemberMetadata(MemberMetadata),
    /// A member's target assignment changed.
    TargetAssignmentMember {
        /// The member.
        member_id: String,
        /// Its new target assignment.
        partitions: Assignment,
    },
    /// The target assignment was recomputed for the group epoch.
    TargetAssignmentMetadata {
        /// The epoch of the target assignment.
        assignment_epoch: i32,
    },
    /// A member's current assignment changed.
    CurrentAssignment(CurrentAssignment),
    /// A member is gone, with its metadata, target and current assignment.
    MemberRemoved {
        /// The member.
        member_id: String,
    },
    /// The group was deleted.
    GroupDeleted,
}

/// A member of the group: its persisted parts and its timers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConsumerGroupMember {
    /// The member's metadata.
    pub(crate) metadata: MemberMetadata,
    /// The member's current assignment.
    pub(crate) current: CurrentAssignment,
    /// When the member is removed unless it heartbeats.
    pub(crate) session_deadline_ms: i64,
    /// When the member is removed unless it has revoked its pending partitions.
    pub(crate) revocation_deadline_ms: Option<i64>,
}

/// One member as `ConsumerGroupDescribe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberDescription {
    /// The member's id.
    pub(crate) member_id: String,
    /// The static member's instance id.
    pub(crate) instance_id: Option<String>,
    /// The member's rack.
    pub(crate) rack_id: Option<String>,
    /// The member's epoch.
    pub(crate) member_epoch: i32,
    /// The client id.
    pub(crate) client_id: String,
    /// The client's address.
    pub(crate) client_host: String,
    /// The topics the member subscribes to.
    pub(crate) subscribed_topic_names: BTreeSet<String>,
    /// The assignor the member asked for.
    pub(crate) server_assignor: Option<String>,
    /// The partitions the member owns and keeps.
    pub(crate) assignment: Assignment,
    /// The partitions the member will own once reconciled.
    pub(crate) target_assignment: Assignment,
}

/// The group as `ConsumerGroupDescribe` and the tools show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupDescription {
    /// The group id.
    pub(crate) group_id: String,
    /// The group state.
    pub(crate) state: GroupState,
    /// The group epoch.
    pub(crate) group_epoch: i32,
    /// The epoch of the target assignment.
    pub(crate) assignment_epoch: i32,
    /// The assignor the next target assignment will use.
    pub(crate) assignor_name: &'static str,
    /// The members, by member id.
    pub(crate) members: Vec<MemberDescription>,
}

/// Why the coordinator refused a request; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GroupError {
    /// The request breaks the protocol's rules.
    #[error("invalid ConsumerGroupHeartbeat for group {group_id}: {reason}")]
    InvalidRequest {
        /// The group.
        group_id: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The member id is not in the group.
    #[error(
        "member {member_id} is not in group {group_id}; it may have been removed after its \
         session timed out, and must rejoin with member epoch 0"
    )]
    UnknownMemberId {
        /// The group.
        group_id: String,
        /// The member.
        member_id: String,
    },
    /// The member's epoch is not the one the coordinator knows.
    #[error(
        "member {member_id} of group {group_id} sent epoch {received}, but its epoch is \
         {current}; it must give up all its partitions and rejoin with epoch 0"
    )]
    FencedMemberEpoch {
        /// The group.
        group_id: String,
        /// The member.
        member_id: String,
        /// The epoch in the request.
        received: i32,
        /// The epoch the coordinator knows.
        current: i32,
    },
    /// An offset commit or fetch carries an epoch other than the member's.
    #[error(
        "member {member_id} of group {group_id} sent epoch {received} to commit or fetch \
         offsets, but its epoch is {current}; it must heartbeat to learn its epoch and retry"
    )]
    StaleMemberEpoch {
        /// The group.
        group_id: String,
        /// The member.
        member_id: String,
        /// The epoch in the request.
        received: i32,
        /// The epoch the coordinator knows.
        current: i32,
    },
    /// Another live member holds the instance id.
    #[error(
        "instance id {instance_id} of group {group_id} is still held by member {holder}; that \
         member must leave (or its session time out) before another can use the instance id"
    )]
    UnreleasedInstanceId {
        /// The group.
        group_id: String,
        /// The instance id.
        instance_id: String,
        /// The member holding it.
        holder: String,
    },
    /// The instance id now belongs to another member id.
    #[error(
        "member {member_id} of group {group_id} was replaced by member {holder} with the same \
         instance id {instance_id}; it must stop"
    )]
    FencedInstanceId {
        /// The group.
        group_id: String,
        /// The instance id.
        instance_id: String,
        /// The member in the request.
        member_id: String,
        /// The member now holding the instance id.
        holder: String,
    },
    /// The assignor named is not one this broker has.
    #[error("group {group_id} has no server assignor {name}; use one of: uniform, range")]
    UnsupportedAssignor {
        /// The group.
        group_id: String,
        /// The name asked for.
        name: String,
    },
    /// The group is full.
    #[error("group {group_id} already has its maximum of {max_size} members")]
    GroupMaxSizeReached {
        /// The group.
        group_id: String,
        /// The limit.
        max_size: usize,
    },
    /// The group was deleted.
    #[error("group {group_id} was deleted; retry so that the coordinator creates it again")]
    GroupDead {
        /// The group.
        group_id: String,
    },
    /// Only an empty group can be deleted.
    #[error("group {group_id} still has members; it can be deleted only once they are gone")]
    NonEmptyGroup {
        /// The group.
        group_id: String,
    },
}

impl GroupError {
    /// The Kafka error code for this error.
    pub(crate) fn code(&self) -> ResponseError {
        match self {
            GroupError::InvalidRequest { .. } => ResponseError::InvalidRequest,
            GroupError::UnknownMemberId { .. } => ResponseError::UnknownMemberId,
            GroupError::FencedMemberEpoch { .. } => ResponseError::FencedMemberEpoch,
            GroupError::StaleMemberEpoch { .. } => ResponseError::StaleMemberEpoch,
            GroupError::UnreleasedInstanceId { .. } => ResponseError::UnreleasedInstanceId,
            GroupError::FencedInstanceId { .. } => ResponseError::FencedInstanceId,
            GroupError::UnsupportedAssignor { .. } => ResponseError::UnsupportedAssignor,
            GroupError::GroupMaxSizeReached { .. } => ResponseError::GroupMaxSizeReached,
            GroupError::GroupDead { .. } => ResponseError::CoordinatorNotAvailable,
            GroupError::NonEmptyGroup { .. } => ResponseError::NonEmptyGroup,
        }
    }
}

/// One consumer group under the new protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerGroup {
    group_id: String,
    config: ConsumerGroupConfig,
    group_epoch: i32,
    assignment_epoch: i32,
    deleted: bool,
    members: BTreeMap<String, ConsumerGroupMember>,
    target: BTreeMap<String, Assignment>,
    subscription_metadata: BTreeMap<String, TopicMetadata>,
    /// Instance id → member id of static members; derived from `members`.
    static_members: BTreeMap<String, String>,
    /// Partition → the member that has it assigned or pending revocation; derived from `members`.
    partition_owners: BTreeMap<(TopicId, i32), String>,
}

/// How the member of a heartbeat was found, decided before anything changes.
enum MemberLookup {
    /// A member already in the group.
    Existing(String),
    /// A new member with this id.
    New(String),
    /// A member rejoining with epoch 0 under its own id: it owns nothing any more.
    Rejoining(String),
    /// A static member with a new id replacing the one that left with epoch -2.
    Replacing {
        /// The new member id.
        member_id: String,
        /// The member it replaces.
        old_member_id: String,
    },
}

impl ConsumerGroup {
    /// A new, empty group at epoch 0.
    pub(crate) fn new(group_id: impl Into<String>, config: ConsumerGroupConfig) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.into(),
            config,
            group_epoch: 0,
            assignment_epoch: 0,
            deleted: false,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscription_metadata: BTreeMap::new(),
            static_members: BTreeMap::new(),
            partition_owners: BTreeMap::new(),
        }
    }

    #[cfg(test)]
    /// The group id.
    pub(crate) fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The group epoch.
    pub(crate) fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    #[cfg(test)]
    /// The epoch of the target assignment.
    pub(crate) fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    #[cfg(test)]
    /// The member `member_id`, if it is in the group.
    pub(crate) fn member(&self, member_id: &str) -> Option<&ConsumerGroupMember> {
        self.members.get(member_id)
    }

    /// The target assignment of `member_id` (empty when it has none).
    pub(crate) fn target_assignment(&self, member_id: &str) -> Assignment {
        self.target.get(member_id).cloned().unwrap_or_default()
    }

    /// The group's state, derived as KIP-848 defines it.
    pub(crate) fn state(&self) -> GroupState {
        if self.deleted {
            GroupState::Dead
        } else if self.members.is_empty() {
            GroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            GroupState::Assigning
        } else if self.members.values().all(|member| {
            member.current.state == MemberState::Stable
                && member.current.member_epoch == self.assignment_epoch
        }) {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }

    /// Handles one `ConsumerGroupHeartbeat`. On error nothing changed.
    pub(crate) fn heartbeat(
        &mut self,
        request: HeartbeatRequest,
        topics: &TopicsView,
        now_ms: i64,
    ) -> Result<HeartbeatOutcome, GroupError> {
        if self.deleted {
            return Err(GroupError::GroupDead {
                group_id: self.group_id.clone(),
            });
        }
        self.validate_request(&request)?;
        match request.member_epoch {
            LEAVE_GROUP_MEMBER_EPOCH | LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
                self.leave(&request, now_ms)
            }
            _ => self.join_or_heartbeat(request, topics, now_ms),
        }
    }

    /// Removes members whose session or revocation deadline passed; returns the records.
    pub(crate) fn expire(&mut self, now_ms: i64) -> Vec<ConsumerGroupRecord> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| {
                member.session_deadline_ms <= now_ms
                    || member
                        .revocation_deadline_ms
                        .is_some_and(|deadline| deadline <= now_ms)
            })
            .map(|member| member.metadata.member_id.clone())
            .collect();
        let mut records = Vec::new();
        if !expired.is_empty() {
            self.remove_members(&expired, &mut records);
        }
        records
    }

    /// The earliest time [`ConsumerGroup::expire`] has something to do, if any.
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|member| {
                std::iter::once(member.session_deadline_ms).chain(member.revocation_deadline_ms)
            })
            .min()
    }

    /// Reacts to topics being created, deleted or grown: when the subscribed topics' ids or
    /// partition counts differ from those the target assignment was computed from, bumps the group
    /// epoch and recomputes it. Returns the records.
    pub(crate) fn metadata_changed(&mut self, topics: &TopicsView) -> Vec<ConsumerGroupRecord> {
        let mut records = Vec::new();
        if self.deleted || self.members.is_empty() {
            return records;
        }
        let names = self.subscribed_names();
        let metadata = subscription_metadata(&names, topics);
        if metadata != self.subscription_metadata {
            self.emit(
                &mut records,
                ConsumerGroupRecord::SubscriptionMetadata { topics: metadata },
            );
            self.bump_and_assign(&mut records);
        }
        records
    }

    /// Checks that `member_id` at `member_epoch` may commit offsets, as Kafka does for consumer
    /// groups: members commit at their current epoch; a commit from outside the group (epoch -1)
    /// is allowed only while the group is empty.
    pub(crate) fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        self.validate_member_epoch(member_id, member_epoch)
    }

    /// Checks that `member_id` is in the group at `member_epoch`.
    fn validate_member_epoch(&self, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        let member = self
            .members
            .get(member_id)
            .ok_or_else(|| self.unknown_member(member_id))?;
        if member.current.member_epoch != member_epoch {
            return Err(GroupError::StaleMemberEpoch {
                group_id: self.group_id.clone(),
                member_id: member_id.to_string(),
                received: member_epoch,
                current: member.current.member_epoch,
            });
        }
        Ok(())
    }

    /// Checks that `member_id` at `member_epoch` may fetch committed offsets: a fetch naming no
    /// member (as admin tools and classic clients send it) always may; a member must be in the
    /// group and at its current epoch, as Kafka checks for consumer groups.
    pub(crate) fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        match member_id {
            None => Ok(()),
            Some(member_id) => self.validate_member_epoch(member_id, member_epoch),
        }
    }

    /// Deletes the group, which must be empty; returns the record.
    pub(crate) fn delete(&mut self) -> Result<Vec<ConsumerGroupRecord>, GroupError> {
        if !self.members.is_empty() {
            return Err(GroupError::NonEmptyGroup {
                group_id: self.group_id.clone(),
            });
        }
        let mut records = Vec::new();
        self.emit(&mut records, ConsumerGroupRecord::GroupDeleted);
        Ok(records)
    }

    /// The group as `ConsumerGroupDescribe` shows it.
    pub(crate) fn describe(&self) -> GroupDescription {
        let members = self
            .members
            .values()
            .map(|member| MemberDescription {
                member_id: member.metadata.member_id.clone(),
                instance_id: member.metadata.instance_id.clone(),
                rack_id: member.metadata.rack_id.clone(),
                member_epoch: member.current.member_epoch,
                client_id: member.metadata.client_id.clone(),
                client_host: member.metadata.client_host.clone(),
                subscribed_topic_names: member.metadata.subscribed_topic_names.clone(),
                server_assignor: member.metadata.server_assignor.clone(),
                assignment: member.current.assigned.clone(),
                target_assignment: self.target_assignment(&member.metadata.member_id),
            })
            .collect();
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: self.preferred_assignor().name(),
            members,
        }
    }

    /// Applies one persisted record, live or when a new coordinator loads the group.
    pub(crate) fn replay(&mut self, record: ConsumerGroupRecord) {
        // A record after a deletion belongs to a group created again under the same id.
        if record != ConsumerGroupRecord::GroupDeleted {
            self.deleted = false;
        }
        match record {
            ConsumerGroupRecord::GroupMetadata { group_epoch } => self.group_epoch = group_epoch,
            ConsumerGroupRecord::SubscriptionMetadata { topics } => {
                self.subscription_metadata = topics;
            }
            ConsumerGroupRecord::MemberMetadata(metadata) => self.replay_member_metadata(metadata),
            ConsumerGroupRecord::TargetAssignmentMember {
                member_id,
                partitions,
            } => {
                self.target.insert(member_id, partitions);
            }
            ConsumerGroupRecord::TargetAssignmentMetadata { assignment_epoch } => {
                self.assignment_epoch = assignment_epoch;
            }
            ConsumerGroupRecord::CurrentAssignment(current) => {
                self.replay_current_assignment(current);
            }
            ConsumerGroupRecord::MemberRemoved { member_id } => {
                self.replay_member_removed(&member_id);
            }
            ConsumerGroupRecord::GroupDeleted => {
                let (group_id, config) = (std::mem::take(&mut self.group_id), self.config);
                *self = ConsumerGroup::new(group_id, config);
                self.deleted = true;
            }
        }
    }

    /// Restarts the timers after the group was loaded by [`ConsumerGroup::replay`]: every member
    /// gets a full session, and a member still revoking a full rebalance timeout.
    pub(crate) fn loaded(&mut self, now_ms: i64) {
        let session_timeout_ms = self.config.session_timeout_ms;
        for member in self.members.values_mut() {
            member.session_deadline_ms = now_ms.saturating_add(session_timeout_ms);
            member.revocation_deadline_ms = (member.current.state
                == MemberState::UnrevokedPartitions)
                .then(|| now_ms.saturating_add(i64::from(member.metadata.rebalance_timeout_ms)));
        }
    }

    #[cfg(test)]
    /// Checks the invariants of the module doc; for tests.
    pub(crate) fn validate(&self) {
        assert!(
            self.assignment_epoch <= self.group_epoch,
            "assignment epoch ahead"
        );
        let mut owners = BTreeMap::new();
        let mut static_members = BTreeMap::new();
        for (id, member) in &self.members {
            assert_eq!(id, &member.metadata.member_id, "member keyed by another id");
            assert_eq!(
                id, &member.current.member_id,
                "current assignment of another id"
            );
            assert!(
                member.current.member_epoch <= self.assignment_epoch,
                "member {id} ahead of the assignment epoch"
            );
            if let Some(instance_id) = &member.metadata.instance_id {
                let previous = static_members.insert(instance_id.clone(), id.clone());
                assert!(previous.is_none(), "instance id {instance_id} held twice");
            }
            let current = &member.current;
            for (topic, partition) in
                partitions_of(&current.assigned).chain(partitions_of(&current.pending_revocation))
            {
                let previous = owners.insert((topic, partition), id.clone());
                assert!(previous.is_none(), "{topic}-{partition} owned twice");
            }
        }
        assert_eq!(owners, self.partition_owners, "partition owner index");
        assert_eq!(static_members, self.static_members, "instance id index");
    }

    /// Rejects requests the protocol does not allow, as Kafka's request validation does.
    fn validate_request(&self, request: &HeartbeatRequest) -> Result<(), GroupError> {
        let invalid = |reason: &str| {
            Err(GroupError::InvalidRequest {
                group_id: self.group_id.clone(),
                reason: reason.to_string(),
            })
        };
        let epoch = request.member_epoch;
        if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return invalid("member epoch must be -2, -1, 0 (join) or the member's epoch");
        }
        if request.member_id.is_empty() && epoch != JOIN_GROUP_MEMBER_EPOCH {
            return invalid("member id may be empty only when joining with epoch 0");
        }
        if request.instance_id.as_deref() == Some("") {
            return invalid("instance id, when given, must not be empty");
        }
        if request.rack_id.as_deref() == Some("") {
            return invalid("rack id, when given, must not be empty");
        }
        if request.rebalance_timeout_ms < -1 {
            return invalid("rebalance timeout must be -1 (unchanged) or at least 0");
        }
        if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH && request.instance_id.is_none() {
            return invalid("only a static member (with an instance id) may leave with epoch -2");
        }
        if epoch == JOIN_GROUP_MEMBER_EPOCH {
            if request.rebalance_timeout_ms == -1 {
                return invalid("rebalance timeout must be given when joining");
            }
            if request.subscribed_topic_names.is_none() {
                return invalid("subscribed topic names must be given when joining");
            }
            let owns_any = request
                .topic_partitions
                .as_ref()
                .is_some_and(|owned| owned.iter().any(|(_, partitions)| !partitions.is_empty()));
            if owns_any {
                return invalid("owned partitions must be empty when joining with epoch 0");
            }
        }
        if let Some(name) = &request.server_assignor
            && Assignor::by_name(name).is_none()
        {
            return Err(GroupError::UnsupportedAssignor {
                group_id: self.group_id.clone(),
                name: name.clone(),
            });
        }
        Ok(())
    }

    /// A member leaving: for good with epoch -1, or a static member for a restart with epoch -2.
    fn leave(
        &mut self,
        request: &HeartbeatRequest,
        now_ms: i64,
    ) -> Result<HeartbeatOutcome, GroupError> {
        let member_id = match &request.instance_id {
            Some(instance_id) => self.static_member_for(instance_id, &request.member_id)?,
            None if self.members.contains_key(&request.member_id) => request.member_id.clone(),
            None => return Err(self.unknown_member(&request.member_id)),
        };
        let mut records = Vec::new();
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            // The assignment stays with the instance id so that the restarted member gets it
            // back; nobody else gets those partitions until the session times out.
            if let Some(member) = self.members.get(&member_id) {
                let mut current = member.current.clone();
                if current.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    current.previous_member_epoch = current.member_epoch;
                    current.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                }
                self.emit(
                    &mut records,
                    ConsumerGroupRecord::CurrentAssignment(current),
                );
            }
            if let Some(member) = self.members.get_mut(&member_id) {
                member.session_deadline_ms = now_ms.saturating_add(self.config.session_timeout_ms);
                member.revocation_deadline_ms = None;
            }
        } else {
            self.remove_members(std::slice::from_ref(&member_id), &mut records);
        }
        Ok(HeartbeatOutcome {
            member_id,
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
            records,
        })
    }

    /// A member joining, rejoining or heartbeating with its epoch.
    fn join_or_heartbeat(
        &mut self,
        request: HeartbeatRequest,
        topics: &TopicsView,
        now_ms: i64,
    ) -> Result<HeartbeatOutcome, GroupError> {
        let lookup = self.lookup_member(&request)?;
        // Nothing has changed so far; from here on every step succeeds.
        let mut records = Vec::new();
        let (member_id, is_new) = self.admit_member(lookup, &mut records);
        let subscription_changed = self.update_member_metadata(&member_id, &request, &mut records);
        let mut bump = is_new || subscription_changed;

        let names = self.subscribed_names();
        let metadata = subscription_metadata(&names, topics);
        if metadata != self.subscription_metadata {
            self.emit(
                &mut records,
                ConsumerGroupRecord::SubscriptionMetadata { topics: metadata },
            );
            bump = true;
        }
        if bump {
            self.bump_and_assign(&mut records);
        }

        let owned = request
            .topic_partitions
            .as_ref()
            .map(|owned| to_assignment(owned));
        let before = self
            .members
            .get(&member_id)
            .map(|member| member.current.clone())
            .unwrap_or_default();
        let after = self.reconcile(&before, owned.as_ref());
        if after != before {
            self.emit(
                &mut records,
                ConsumerGroupRecord::CurrentAssignment(after.clone()),
            );
        }
        self.restart_timers(&member_id, &before, &after, now_ms);

        let full_request = request.member_epoch == JOIN_GROUP_MEMBER_EPOCH
            || (request.rebalance_timeout_ms != -1
                && request.subscribed_topic_names.is_some()
                && request.topic_partitions.is_some());
        let send_assignment = full_request
            || after.assigned != before.assigned
            || owned.as_ref().is_some_and(|owned| *owned != after.assigned);
        Ok(HeartbeatOutcome {
            member_id,
            member_epoch: after.member_epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            assignment: send_assignment.then_some(after.assigned),
            records,
        })
    }

    /// Finds the member a joining or heartbeating request is about, or why it is refused.
    fn lookup_member(&self, request: &HeartbeatRequest) -> Result<MemberLookup, GroupError> {
        if request.member_epoch != JOIN_GROUP_MEMBER_EPOCH {
            let member_id = match &request.instance_id {
                Some(instance_id) => self.static_member_for(instance_id, &request.member_id)?,
                None => request.member_id.clone(),
            };
            let member = self
                .members
                .get(&member_id)
                .ok_or_else(|| self.unknown_member(&member_id))?;
            self.check_member_epoch(member, request)?;
            return Ok(MemberLookup::Existing(member_id));
        }

        let member_id = if request.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            request.member_id.clone()
        };
        let holder = request
            .instance_id
            .as_ref()
            .and_then(|instance_id| self.static_members.get(instance_id));
        if let Some(holder) = holder
            && *holder != member_id
        {
            let held_by_live_member = self.members.get(holder).is_some_and(|member| {
                member.current.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH
            });
            if held_by_live_member {
                return Err(GroupError::UnreleasedInstanceId {
                    group_id: self.group_id.clone(),
                    instance_id: request.instance_id.clone().unwrap_or_default(),
                    holder: holder.clone(),
                });
            }
            if self.members.contains_key(&member_id) {
                return Err(GroupError::InvalidRequest {
                    group_id: self.group_id.clone(),
                    reason: format!(
                        "member {member_id} cannot take over instance id {} of member {holder}",
                        request.instance_id.as_deref().unwrap_or_default()
                    ),
                });
            }
            return Ok(MemberLookup::Replacing {
                member_id,
                old_member_id: holder.clone(),
            });
        }
        if self.members.contains_key(&member_id) {
            return Ok(MemberLookup::Rejoining(member_id));
        }
        if self.members.len() >= self.config.max_size {
            return Err(GroupError::GroupMaxSizeReached {
                group_id: self.group_id.clone(),
                max_size: self.config.max_size,
            });
        }
        Ok(MemberLookup::New(member_id))
    }

    /// The member id holding `instance_id`, which must be `member_id`.
    fn static_member_for(&self, instance_id: &str, member_id: &str) -> Result<String, GroupError> {
        match self.static_members.get(instance_id) {
            None => Err(self.unknown_member(member_id)),
            Some(holder) if holder != member_id => Err(GroupError::FencedInstanceId {
                group_id: self.group_id.clone(),
                instance_id: instance_id.to_string(),
                member_id: member_id.to_string(),
                holder: holder.clone(),
            }),
            Some(holder) => Ok(holder.clone()),
        }
    }

    /// Fences a member whose epoch is not its current one, except the previous epoch when the
    /// member owns a subset of its assignment: the response that moved it on may have been lost.
    fn check_member_epoch(
        &self,
        member: &ConsumerGroupMember,
        request: &HeartbeatRequest,
    ) -> Result<(), GroupError> {
        let current = &member.current;
        let received = request.member_epoch;
        let lost_response = received == current.previous_member_epoch
            && request.topic_partitions.as_ref().is_some_and(|owned| {
                owned.iter().all(|(topic, partitions)| {
                    let assigned = current.assigned.get(topic);
                    partitions
                        .iter()
                        .all(|partition| assigned.is_some_and(|set| set.contains(partition)))
                })
            });
        if received == current.member_epoch || (received < current.member_epoch && lost_response) {
            return Ok(());
        }
        Err(GroupError::FencedMemberEpoch {
            group_id: self.group_id.clone(),
            member_id: current.member_id.clone(),
            received,
            current: current.member_epoch,
        })
    }

    /// Resets or replaces the member as `lookup` decided; returns its id and whether it is new
    /// (a new member is created by its first metadata record).
    fn admit_member(
        &mut self,
        lookup: MemberLookup,
        records: &mut Vec<ConsumerGroupRecord>,
    ) -> (String, bool) {
        match lookup {
            MemberLookup::Existing(member_id) => (member_id, false),
            MemberLookup::New(member_id) => (member_id, true),
            MemberLookup::Rejoining(member_id) => {
                // Epoch 0 means the member gave up all its partitions; free them now rather than
                // wait for a revocation that will never be reported.
                if let Some(member) = self.members.get(&member_id) {
                    let reset = CurrentAssignment {
                        member_id: member_id.clone(),
                        member_epoch: JOIN_GROUP_MEMBER_EPOCH,
                        previous_member_epoch: member.current.member_epoch,
                        ..CurrentAssignment::default()
                    };
                    if reset != member.current {
                        self.emit(records, ConsumerGroupRecord::CurrentAssignment(reset));
                    }
                }
                (member_id, false)
            }
            MemberLookup::Replacing {
                member_id,
                old_member_id,
            } => {
                self.replace_static_member(&member_id, &old_member_id, records);
                (member_id, false)
            }
        }
    }

    /// A static member rejoining under a new member id takes over the departed member's
    /// metadata, target and assigned partitions, without a rebalance.
    fn replace_static_member(
        &mut self,
        member_id: &str,
        old_member_id: &str,
        records: &mut Vec<ConsumerGroupRecord>,
    ) {
        let Some(old) = self.members.get(old_member_id) else {
            return;
        };
        let metadata = MemberMetadata {
            member_id: member_id.to_string(),
            ..old.metadata.clone()
        };
        let current = CurrentAssignment {
            member_id: member_id.to_string(),
            member_epoch: JOIN_GROUP_MEMBER_EPOCH,
            previous_member_epoch: JOIN_GROUP_MEMBER_EPOCH,
            state: MemberState::Stable,
            assigned: old.current.assigned.clone(),
            pending_revocation: Assignment::new(),
        };
        let target = self.target_assignment(old_member_id);
        let removed = ConsumerGroupRecord::MemberRemoved {
            member_id: old_member_id.to_string(),
        };
        self.emit(records, removed);
        self.emit(records, ConsumerGroupRecord::MemberMetadata(metadata));
        let target = ConsumerGroupRecord::TargetAssignmentMember {
            member_id: member_id.to_string(),
            partitions: target,
        };
        self.emit(records, target);
        self.emit(records, ConsumerGroupRecord::CurrentAssignment(current));
    }

    /// Applies the request's metadata to the member, creating it if new; returns whether its
    /// subscription changed (topics or assignor), which bumps the group epoch.
    fn update_member_metadata(
        &mut self,
        member_id: &str,
        request: &HeartbeatRequest,
        records: &mut Vec<ConsumerGroupRecord>,
    ) -> bool {
        let old = match self.members.get(member_id) {
            Some(member) => member.metadata.clone(),
            None => MemberMetadata {
                member_id: member_id.to_string(),
                ..MemberMetadata::default()
            },
        };
        let is_new = !self.members.contains_key(member_id);
        let mut new = old.clone();
        // Like the other optional fields, an absent instance id means unchanged.
        if let Some(instance_id) = &request.instance_id {
            new.instance_id = Some(instance_id.clone());
        }
        if let Some(rack_id) = &request.rack_id {
            new.rack_id = Some(rack_id.clone());
        }
        new.client_id.clone_from(&request.client_id);
        new.client_host.clone_from(&request.client_host);
        if let Some(names) = &request.subscribed_topic_names {
            new.subscribed_topic_names = names.iter().cloned().collect();
        }
        if let Some(assignor) = &request.server_assignor {
            new.server_assignor = Some(assignor.clone());
        }
        if request.rebalance_timeout_ms != -1 {
            new.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        let subscription_changed = new.subscribed_topic_names != old.subscribed_topic_names
            || new.server_assignor != old.server_assignor;
        if is_new || new != old {
            self.emit(records, ConsumerGroupRecord::MemberMetadata(new));
        }
        subscription_changed
    }

    /// The next current assignment of a member, as Kafka's `CurrentAssignmentBuilder` decides.
    fn reconcile(
        &self,
        current: &CurrentAssignment,
        owned: Option<&Assignment>,
    ) -> CurrentAssignment {
        match current.state {
            MemberState::Stable if current.member_epoch == self.assignment_epoch => current.clone(),
            // Until the member reports it has let the partitions go, it cannot move on.
            MemberState::UnrevokedPartitions if owns_any(owned, &current.pending_revocation) => {
                current.clone()
            }
            _ => self.next_assignment(current, owned),
        }
    }

    /// Moves a member towards its target: partitions leaving the target must be revoked first
    /// (the member keeps its epoch); otherwise it moves to the assignment epoch and gets every
    /// target partition that no other member still owns.
    fn next_assignment(
        &self,
        current: &CurrentAssignment,
        owned: Option<&Assignment>,
    ) -> CurrentAssignment {
        let member_id = &current.member_id;
        let target = self.target.get(member_id);
        let topics: BTreeSet<TopicId> = current
            .assigned
            .keys()
            .chain(target.into_iter().flat_map(|target| target.keys()))
            .copied()
            .collect();
        let mut kept = Assignment::new();
        let mut revoked = Assignment::new();
        let mut newly_assigned = Assignment::new();
        let mut unreleased = false;
        let empty = BTreeSet::new();
        for topic in topics {
            let wanted = target
                .and_then(|target| target.get(&topic))
                .unwrap_or(&empty);
            let has = current.assigned.get(&topic).unwrap_or(&empty);
            insert_non_empty(
                &mut kept,
                topic,
                has.intersection(wanted).copied().collect(),
            );
            insert_non_empty(
                &mut revoked,
                topic,
                has.difference(wanted).copied().collect(),
            );
            let mut fresh = BTreeSet::new();
            for &partition in wanted.difference(has) {
                match self.partition_owners.get(&(topic, partition)) {
                    Some(owner) if owner != member_id => unreleased = true,
                    _ => {
                        fresh.insert(partition);
                    }
                }
            }
            insert_non_empty(&mut newly_assigned, topic, fresh);
        }

        if !revoked.is_empty() && owns_any(owned, &revoked) {
            return CurrentAssignment {
                state: MemberState::UnrevokedPartitions,
                assigned: kept,
                pending_revocation: revoked,
                ..current.clone()
            };
        }
        for (topic, partitions) in newly_assigned {
            kept.entry(topic).or_default().extend(partitions);
        }
        let epoch_moved = current.member_epoch != self.assignment_epoch;
        CurrentAssignment {
            member_id: member_id.clone(),
            member_epoch: self.assignment_epoch,
            previous_member_epoch: if epoch_moved {
                current.member_epoch
            } else {
                current.previous_member_epoch
            },
            state: if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            },
            assigned: kept,
            pending_revocation: Assignment::new(),
        }
    }

    /// Restarts the member's session, and its revocation timer when it starts revoking.
    fn restart_timers(
        &mut self,
        member_id: &str,
        before: &CurrentAssignment,
        after: &CurrentAssignment,
        now_ms: i64,
    ) {
        let session_timeout_ms = self.config.session_timeout_ms;
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        member.session_deadline_ms = now_ms.saturating_add(session_timeout_ms);
        if after.state != MemberState::UnrevokedPartitions {
            member.revocation_deadline_ms = None;
        } else if before.state != MemberState::UnrevokedPartitions
            || before.pending_revocation != after.pending_revocation
            || member.revocation_deadline_ms.is_none()
        {
            let timeout = i64::from(member.metadata.rebalance_timeout_ms);
            member.revocation_deadline_ms = Some(now_ms.saturating_add(timeout));
        }
    }

    /// Removes members, then bumps the group epoch and reassigns their partitions.
    fn remove_members(&mut self, member_ids: &[String], records: &mut Vec<ConsumerGroupRecord>) {
        for member_id in member_ids {
            let removed = ConsumerGroupRecord::MemberRemoved {
                member_id: member_id.clone(),
            };
            self.emit(records, removed);
        }
        // The topics only the removed members subscribed to no longer count.
        let names = self.subscribed_names();
        let metadata: BTreeMap<String, TopicMetadata> = self
            .subscription_metadata
            .iter()
            .filter(|(name, _)| names.contains(*name))
            .map(|(name, topic)| (name.clone(), *topic))
            .collect();
        if metadata != self.subscription_metadata {
            self.emit(
                records,
                ConsumerGroupRecord::SubscriptionMetadata { topics: metadata },
            );
        }
        self.bump_and_assign(records);
    }

    /// Bumps the group epoch and computes the target assignment for it.
    fn bump_and_assign(&mut self, records: &mut Vec<ConsumerGroupRecord>) {
        let group_epoch = self.group_epoch + 1;
        self.emit(records, ConsumerGroupRecord::GroupMetadata { group_epoch });

        let assignment = self.preferred_assignor().assign(&self.assignment_spec());
        for (member_id, partitions) in assignment {
            if self.target.get(&member_id) != Some(&partitions) {
                let record = ConsumerGroupRecord::TargetAssignmentMember {
                    member_id,
                    partitions,
                };
                self.emit(records, record);
            }
        }
        let assignment_epoch = group_epoch;
        self.emit(
            records,
            ConsumerGroupRecord::TargetAssignmentMetadata { assignment_epoch },
        );
    }

    /// What the assignor decides from: members' subscriptions resolved through the subscription
    /// metadata, and their current targets to stay close to.
    fn assignment_spec(&self) -> AssignmentSpec {
        let topic_ids: BTreeMap<&str, TopicId> = self
            .subscription_metadata
            .iter()
            .map(|(name, topic)| (name.as_str(), topic.id))
            .collect();
        AssignmentSpec {
            members: self
                .members
                .iter()
                .map(|(member_id, member)| {
                    let spec = MemberSpec {
                        subscribed_topic_ids: member
                            .metadata
                            .subscribed_topic_names
                            .iter()
                            .filter_map(|name| topic_ids.get(name.as_str()).copied())
                            .collect(),
                        rack: member.metadata.rack_id.clone(),
                        current: self.target_assignment(member_id),
                    };
                    (member_id.clone(), spec)
                })
                .collect(),
            partition_counts: self
                .subscription_metadata
                .values()
                .map(|topic| (topic.id, topic.partition_count))
                .collect(),
        }
    }

    /// The assignor most members ask for (ties go to the first in [`Assignor::ALL`]), or the
    /// default when none asks, as Kafka picks the group's assignor.
    fn preferred_assignor(&self) -> Assignor {
        let mut votes: BTreeMap<Assignor, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(assignor) = member
                .metadata
                .server_assignor
                .as_deref()
                .and_then(Assignor::by_name)
            {
                *votes.entry(assignor).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|&(assignor, count)| (count, std::cmp::Reverse(assignor)))
            .map_or(Assignor::DEFAULT, |(assignor, _)| assignor)
    }

    /// Every topic name some member subscribes to.
    fn subscribed_names(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|member| member.metadata.subscribed_topic_names.iter().cloned())
            .collect()
    }

    /// Applies `record` and adds it to those to persist.
    fn emit(&mut self, records: &mut Vec<ConsumerGroupRecord>, record: ConsumerGroupRecord) {
        self.replay(record.clone());
        records.push(record);
    }

    /// The error for a member id the group does not know.
    fn unknown_member(&self, member_id: &str) -> GroupError {
        GroupError::UnknownMemberId {
            group_id: self.group_id.clone(),
            member_id: member_id.to_string(),
        }
    }

    /// Upserts a member's metadata, creating the member if needed.
    fn replay_member_metadata(&mut self, metadata: MemberMetadata) {
        let member_id = metadata.member_id.clone();
        let member = self.member_entry(&member_id);
        let old_instance = std::mem::replace(&mut member.metadata, metadata);
        let new_instance = member.metadata.instance_id.clone();
        if let Some(old) = old_instance.instance_id
            && self.static_members.get(&old) == Some(&member_id)
        {
            self.static_members.remove(&old);
        }
        if let Some(new) = new_instance {
            self.static_members.insert(new, member_id);
        }
    }

    /// Sets a member's current assignment, creating the member if needed, and keeps the
    /// partition owner index in step.
    fn replay_current_assignment(&mut self, current: CurrentAssignment) {
        let member_id = current.member_id.clone();
        let member = self.member_entry(&member_id);
        let old = std::mem::replace(&mut member.current, current);
        let new = member.current.clone();
        for key in partitions_of(&old.assigned).chain(partitions_of(&old.pending_revocation)) {
            if self.partition_owners.get(&key) == Some(&member_id) {
                self.partition_owners.remove(&key);
            }
        }
        for key in partitions_of(&new.assigned).chain(partitions_of(&new.pending_revocation)) {
            self.partition_owners.insert(key, member_id.clone());
        }
    }

    /// Removes a member with its target and the partitions it owned.
    fn replay_member_removed(&mut self, member_id: &str) {
        self.target.remove(member_id);
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance_id) = &member.metadata.instance_id
            && self.static_members.get(instance_id).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance_id);
        }
        let current = &member.current;
        for key in
            partitions_of(&current.assigned).chain(partitions_of(&current.pending_revocation))
        {
            if self.partition_owners.get(&key).map(String::as_str) == Some(member_id) {
                self.partition_owners.remove(&key);
            }
        }
    }

    /// The member `member_id`, created empty if it does not exist yet.
    fn member_entry(&mut self, member_id: &str) -> &mut ConsumerGroupMember {
        self.members
            .entry(member_id.to_string())
            .or_insert_with(|| ConsumerGroupMember {
                metadata: MemberMetadata {
                    member_id: member_id.to_string(),
                    ..MemberMetadata::default()
                },
                current: CurrentAssignment {
                    member_id: member_id.to_string(),
                    ..CurrentAssignment::default()
                },
                session_deadline_ms: 0,
                revocation_deadline_ms: None,
            })
    }
}

/// The subscribed topics that exist, with their ids and partition counts.
fn subscription_metadata(
    names: &BTreeSet<String>,
    topics: &TopicsView,
) -> BTreeMap<String, TopicMetadata> {
    names
        .iter()
        .filter_map(|name| topics.get(name).map(|topic| (name.clone(), topic)))
        .collect()
}

/// Whether the member, by what it reports owning, still owns any of `partitions`; when it did not
/// report (`None`), it is assumed to.
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    partitions.iter().any(|(topic, partitions)| {
        owned
            .get(topic)
            .is_some_and(|owned| !owned.is_disjoint(partitions))
    })
}

/// The request's owned partitions as an assignment, without empty topics.
fn to_assignment(owned: &[(TopicId, Vec<i32>)]) -> Assignment {
    let mut assignment = Assignment::new();
    for (topic, partitions) in owned {
        if !partitions.is_empty() {
            assignment
                .entry(*topic)
                .or_default()
                .extend(partitions.iter().copied());
        }
    }
    assignment
}

/// Adds `partitions` of `topic` to `assignment` unless there are none.
fn insert_non_empty(assignment: &mut Assignment, topic: TopicId, partitions: BTreeSet<i32>) {
    if !partitions.is_empty() {
        assignment.insert(topic, partitions);
    }
}

/// Every `(topic, partition)` of an assignment.
fn partitions_of(assignment: &Assignment) -> impl Iterator<Item = (TopicId, i32)> + '_ {
    assignment.iter().flat_map(|(topic, partitions)| {
        partitions.iter().map(move |partition| (*topic, *partition))
    })
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod tests;
