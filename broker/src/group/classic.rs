//! One group on the classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as a pure
//! state machine: each method takes a request and the time, changes the group, and returns
//! the answers it can give now ([`Effects`]). Nothing here waits, writes or reads a clock.
//!
//! ```text
//!            first join                 every member joined,           leader's SyncGroup
//!   Empty ─────────────▶ Preparing ──── or the rebalance timeout ───▶ Completing ─────────▶ Stable
//!     ▲                  Rebalance                                    Rebalance               │
//!     │                     ▲  ▲                                         │                    │
//!     └─ last member gone ──┘  └── a member joins, leaves or expires ────┴────────────────────┘
//! ```
//!
//! A JoinGroup is answered when its rebalance's join phase ends, a SyncGroup when the leader's
//! assignment is in (and written): both are parked as a [`RequestId`] on their member until
//! then, and the [`Effects`] of a later event carry their answers. When `persist` is set the
//! caller writes [`ClassicGroup::value`] to the log before it sends any answer, and keeps the
//! group as it was if the write fails.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::GroupRefusal;

/// Names a request parked in a group until its answer is known.
pub(crate) type RequestId = u64;

/// The states of a classic group, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClassicState {
    /// No members (perhaps committed offsets).
    Empty,
    /// Members are (re)joining; JoinGroup answers wait for the join phase to end.
    PreparingRebalance,
    /// The members were told the new generation; the leader's assignment is awaited.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// The group was deleted or is being unloaded.
    Dead,
}

impl ClassicState {
    /// The state's name in DescribeGroups and ListGroups.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
            ClassicState::Dead => "Dead",
        }
    }
}

/// The coordinator's limits on classic groups (from the node's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassicLimits {
    /// `group_min_session_timeout_ms`.
    pub(crate) min_session_timeout_ms: i32,
    /// `group_max_session_timeout_ms`.
    pub(crate) max_session_timeout_ms: i32,
    /// `group_initial_rebalance_delay_ms`.
    pub(crate) initial_rebalance_delay_ms: i32,
    /// `group_max_size`.
    pub(crate) max_size: i32,
}

impl Default for ClassicLimits {
    fn default() -> Self {
        ClassicLimits {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            max_size: i32::MAX,
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Join {
    /// Names the request while it waits.
    pub(crate) request: RequestId,
    /// Empty for a member joining the first time.
    pub(crate) member_id: String,
    /// `group.instance.id`: a static member.
    pub(crate) instance_id: Option<String>,
    /// Whether the client takes MEMBER_ID_REQUIRED (JoinGroup v4 and later).
    pub(crate) require_known_member_id: bool,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    /// The assignment protocols the member supports, most preferred first, each with its
    /// metadata (for consumers: the subscription).
    pub(crate) protocols: Vec<(String, Bytes)>,
}

/// What a JoinGroup is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    /// `None`, or why the member must join again (MEMBER_ID_REQUIRED, UNKNOWN_MEMBER_ID, ...).
    pub(crate) error: Option<ResponseError>,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// Every member with its metadata, for the leader only.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
    /// The leader is told the assignment stands (a static leader that rejoined).
    pub(crate) skip_assignment: bool,
}

impl Joined {
    fn failed(error: ResponseError, member_id: &str) -> Joined {
        Joined {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sync {
    pub(crate) request: RequestId,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    /// The leader's assignment per member; empty from the others.
    pub(crate) assignments: Vec<(String, Bytes)>,
}

/// What a SyncGroup is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Synced {
    /// `None`, or why the member must join again.
    pub(crate) error: Option<ResponseError>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignment: Bytes,
}

/// An answer to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A JoinGroup's.
    Join(RequestId, Joined),
    /// A SyncGroup's.
    Sync(RequestId, Synced),
}

/// What an event did besides changing the group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Answers to send (after the write, when `persist` is set).
    pub(crate) replies: Vec<Reply>,
    /// The group must be written to the log before any answer goes out.
    pub(crate) persist: bool,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.replies.extend(other.replies);
        self.persist |= other.persist;
    }
}

/// One member of a classic group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    /// Supported protocols, most preferred first, with the member's metadata for each.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    /// The member's JoinGroup waiting for the join phase to end.
    awaiting_join: Option<RequestId>,
    /// The member's SyncGroup waiting for the leader's assignment.
    awaiting_sync: Option<RequestId>,
    /// When its session ends unless it heartbeats.
    session_deadline_ms: i64,
    /// Joined during the current rebalance (and not yet in a generation).
    is_new: bool,
}

impl Member {
    /// The member's metadata for `protocol`.
    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

/// A consumer group on the classic protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicGroup {
    id: String,
    state: ClassicState,
    state_timestamp_ms: i64,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id, for static members.
    static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not joined yet, with the time
    /// they are forgotten.
    pending: BTreeMap<String, i64>,
    /// When the join phase ends even if members are missing.
    join_deadline_ms: Option<i64>,
    /// The latest a delayed first rebalance may be extended to.
    initial_join_limit_ms: Option<i64>,
    /// When members that did not send SyncGroup are removed.
    sync_deadline_ms: Option<i64>,
    /// The number of rebalances completed since the group was loaded (for metrics).
    rebalances: u64,
}

/// A member id for a new member: the client id and a random UUID, as Kafka makes them.
pub(crate) fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl ClassicGroup {
    /// A new group with no members.
    pub(crate) fn new(id: &str, now_ms: i64) -> ClassicGroup {
        ClassicGroup {
            id: id.to_string(),
            state: ClassicState::Empty,
            state_timestamp_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending: BTreeMap::new(),
            join_deadline_ms: None,
            initial_join_limit_ms: None,
            sync_deadline_ms: None,
            rebalances: 0,
        }
    }

    /// The group's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The group's state.
    pub(crate) fn state(&self) -> ClassicState {
        self.state
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type its members use ("consumer" for consumers), once it has members.
    pub(crate) fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The assignment protocol of the current generation.
    pub(crate) fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The leader's member id.
    pub(crate) fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The members by id.
    pub(crate) fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    /// Rebalances completed since the group was created or loaded.
    pub(crate) fn rebalances(&self) -> u64 {
        self.rebalances
    }

    /// When the state last changed (ms).
    pub(crate) fn state_timestamp_ms(&self) -> i64 {
        self.state_timestamp_ms
    }

    /// Whether a new member of `protocol_type` with `protocols` can join: the same type, and
    /// at least one protocol every member supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.candidates().contains(name))
    }

    /// The protocols every member supports.
    fn candidates(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for member in members {
            names.retain(|name| member.protocols.iter().any(|(n, _)| n == name));
        }
        names
    }

    /// The protocol of the next generation: among those every member supports, the one
    /// most members prefer (each votes for its first such protocol); ties go to the first
    /// member's preference order.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(name))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|name| votes.get(name.as_str()) == Some(&most))
    }

    fn transition(&mut self, state: ClassicState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// Checks a request's static membership: the instance id must belong to the member id.
    fn check_instance(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupRefusal> {
        let Some(instance) = instance_id else {
            return Ok(());
        };
        match self.static_members.get(instance) {
            Some(owner) if owner != member_id => Err((
                ResponseError::FencedInstanceId,
                format!(
                    "group.instance.id {instance:?} of group {:?} now belongs to member {owner}; \
                     another consumer with the same instance id replaced this one",
                    self.id
                ),
            )),
            _ => Ok(()),
        }
    }

    fn unknown_member(&self, member_id: &str) -> GroupRefusal {
        (
            ResponseError::UnknownMemberId,
            format!(
                "member {member_id:?} is not in group {:?} (its session may have ended); join again",
                self.id
            ),
        )
    }

    fn check_session_timeout(
        &self,
        join: &Join,
        limits: &ClassicLimits,
    ) -> Result<(), GroupRefusal> {
        if join.session_timeout_ms < limits.min_session_timeout_ms
            || join.session_timeout_ms > limits.max_session_timeout_ms
        {
            return Err((
                ResponseError::InvalidSessionTimeout,
                format!(
                    "session timeout {} ms is outside the broker's range {} to {} ms \
                     (group_min_session_timeout_ms, group_max_session_timeout_ms)",
                    join.session_timeout_ms,
                    limits.min_session_timeout_ms,
                    limits.max_session_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    /// A JoinGroup. `Err` is an immediate refusal that changed nothing; otherwise the
    /// request is answered in the effects now or parked until the join phase ends.
    pub(crate) fn join(
        &mut self,
        join: Join,
        limits: &ClassicLimits,
        now_ms: i64,
    ) -> Result<Effects, GroupRefusal> {
        self.check_session_timeout(&join, limits)?;
        if self.state == ClassicState::Dead {
            return Err((
                ResponseError::CoordinatorNotAvailable,
                format!(
                    "group {:?} is being removed; find its coordinator again",
                    self.id
                ),
            ));
        }
        if !self.supports(&join.protocol_type, &join.protocols) {
            return Err((
                ResponseError::InconsistentGroupProtocol,
                format!(
                    "group {:?} uses protocol type {:?} with protocols {:?}; this member offers \
                     type {:?} with {:?}",
                    self.id,
                    self.protocol_type.as_deref().unwrap_or(""),
                    self.candidates(),
                    join.protocol_type,
                    join.protocols.iter().map(|(n, _)| n).collect::<Vec<_>>()
                ),
            ));
        }
        if join.member_id.is_empty() {
            self.join_new(join, limits, now_ms)
        } else {
            self.join_known(join, limits, now_ms)
        }
    }

    fn check_size(&self, limits: &ClassicLimits) -> Result<(), GroupRefusal> {
        let size = self.members.len() + self.pending.len();
        if i64::try_from(size).unwrap_or(i64::MAX) >= i64::from(limits.max_size) {
            return Err((
                ResponseError::GroupMaxSizeReached,
                format!(
                    "group {:?} has {size} members, the most group_max_size allows",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    fn join_new(
        &mut self,
        join: Join,
        limits: &ClassicLimits,
        now_ms: i64,
    ) -> Result<Effects, GroupRefusal> {
        let member_id = new_member_id(&join.client_id);
        if let Some(instance) = join.instance_id.clone() {
            if let Some(old) = self.static_members.get(&instance).cloned() {
                return Ok(self.replace_static_member(join, &old, member_id, now_ms));
            }
            self.check_size(limits)?;
            return Ok(self.add_member_and_rebalance(join, member_id, now_ms, limits));
        }
        self.check_size(limits)?;
        if join.require_known_member_id {
            // KIP-394: the member gets its id first and joins with it, so a client that
            // gives up before the answer leaves no member behind.
            let deadline = now_ms + i64::from(join.session_timeout_ms);
            self.pending.insert(member_id.clone(), deadline);
            let mut joined = Joined::failed(ResponseError::MemberIdRequired, &member_id);
            joined.generation = self.generation;
            return Ok(Effects {
                replies: vec![Reply::Join(join.request, joined)],
                persist: false,
            });
        }
        Ok(self.add_member_and_rebalance(join, member_id, now_ms, limits))
    }

    fn join_known(
        &mut self,
        join: Join,
        limits: &ClassicLimits,
        now_ms: i64,
    ) -> Result<Effects, GroupRefusal> {
        let member_id = join.member_id.clone();
        if self.pending.remove(&member_id).is_some() {
            return Ok(self.add_member_and_rebalance(join, member_id, now_ms, limits));
        }
        self.check_instance(&member_id, join.instance_id.as_deref())?;
        let Some(member) = self.members.get(&member_id) else {
            return Err(self.unknown_member(&member_id));
        };
        let same = member.same_protocols(&join.protocols);
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            ClassicState::PreparingRebalance => {
                Ok(self.update_member_and_rebalance(join, now_ms, limits))
            }
            ClassicState::CompletingRebalance if same => {
                // A retry of a join already answered: answer it again the same way.
                let joined = self.joined(&member_id);
                Ok(Effects {
                    replies: vec![Reply::Join(join.request, joined)],
                    persist: false,
                })
            }
            ClassicState::Stable if same && !is_leader => {
                // A follower rejoining with nothing new: no rebalance.
                let mut joined = self.joined(&member_id);
                joined.members.clear();
                if let Some(member) = self.members.get_mut(&member_id) {
                    member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                }
                Ok(Effects {
                    replies: vec![Reply::Join(join.request, joined)],
                    persist: false,
                })
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                Ok(self.update_member_and_rebalance(join, now_ms, limits))
            }
            ClassicState::Empty | ClassicState::Dead => Err(self.unknown_member(&member_id)),
        }
    }

    /// A static member rejoining under a new member id: it takes over the old member's
    /// place (and assignment); the old id is fenced.
    fn replace_static_member(
        &mut self,
        join: Join,
        old_id: &str,
        new_id: String,
        now_ms: i64,
    ) -> Effects {
        let mut effects = Effects::default();
        let Some(mut member) = self.members.remove(old_id) else {
            return effects;
        };
        // Whatever the old member was waiting for is over: it has been replaced.
        if let Some(request) = member.awaiting_join.take() {
            effects.replies.push(Reply::Join(
                request,
                Joined::failed(ResponseError::FencedInstanceId, old_id),
            ));
        }
        if let Some(request) = member.awaiting_sync.take() {
            effects.replies.push(Reply::Sync(
                request,
                Synced {
                    error: Some(ResponseError::FencedInstanceId),
                    protocol_type: None,
                    protocol_name: None,
                    assignment: Bytes::new(),
                },
            ));
        }
        let changed = !member.same_protocols(&join.protocols);
        member.id = new_id.clone();
        member.client_id = join.client_id.clone();
        member.client_host = join.client_host.clone();
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.session_deadline_ms = now_ms + i64::from(join.session_timeout_ms);
        if let Some(instance) = &join.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        if self.state == ClassicState::Stable && !changed {
            // Nothing to rebalance: the member resumes with its assignment. The new id must
            // be written before the member is told it, or a new coordinator would not know it.
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
            let mut joined = self.joined(&new_id);
            if !is_leader {
                joined.members.clear();
            }
            joined.skip_assignment = is_leader;
            effects.replies.push(Reply::Join(join.request, joined));
            effects.persist = true;
            return effects;
        }
        let limits = ClassicLimits::default();
        let mut join = join;
        join.member_id = new_id;
        effects.merge(self.update_member_and_rebalance(join, now_ms, &limits));
        effects
    }

    fn add_member_and_rebalance(
        &mut self,
        join: Join,
        member_id: String,
        now_ms: i64,
        limits: &ClassicLimits,
    ) -> Effects {
        if self.members.is_empty() {
            self.protocol_type = Some(join.protocol_type.clone());
        }
        if let Some(instance) = &join.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: join.instance_id,
            client_id: join.client_id,
            client_host: join.client_host,
            session_timeout_ms: join.session_timeout_ms,
            rebalance_timeout_ms: join.rebalance_timeout_ms,
            protocol_type: join.protocol_type,
            protocols: join.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(join.request),
            awaiting_sync: None,
            session_deadline_ms: now_ms + i64::from(join.session_timeout_ms),
            is_new: true,
        };
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.members.insert(member_id, member);
        let mut effects = self.prepare_rebalance(now_ms, limits);
        if self.state == ClassicState::PreparingRebalance {
            if let (Some(limit), Some(deadline)) =
                (self.initial_join_limit_ms, self.join_deadline_ms)
            {
                // A delayed first rebalance waits a little longer for each new member.
                let extended = (now_ms + i64::from(limits.initial_rebalance_delay_ms)).min(limit);
                self.join_deadline_ms = Some(deadline.max(extended));
            }
            effects.merge(self.try_complete_join(now_ms));
        }
        effects
    }

    fn update_member_and_rebalance(
        &mut self,
        join: Join,
        now_ms: i64,
        limits: &ClassicLimits,
    ) -> Effects {
        let mut effects = Effects::default();
        if let Some(member) = self.members.get_mut(&join.member_id) {
            if let Some(old) = member.awaiting_join.replace(join.request) {
                // The client gave up on its earlier join and sent another.
                effects.replies.push(Reply::Join(
                    old,
                    Joined::failed(ResponseError::UnknownMemberId, &join.member_id),
                ));
            }
            member.protocols = join.protocols;
            member.client_id = join.client_id;
            member.client_host = join.client_host;
            member.session_timeout_ms = join.session_timeout_ms;
            member.rebalance_timeout_ms = join.rebalance_timeout_ms;
            member.session_deadline_ms = now_ms + i64::from(join.session_timeout_ms);
        }
        effects.merge(self.prepare_rebalance(now_ms, limits));
        effects.merge(self.try_complete_join(now_ms));
        effects
    }

    /// Starts a rebalance unless one is in its join phase. Members waiting for a sync are
    /// told REBALANCE_IN_PROGRESS and must join again.
    fn prepare_rebalance(&mut self, now_ms: i64, limits: &ClassicLimits) -> Effects {
        let mut effects = Effects::default();
        match self.state {
            ClassicState::PreparingRebalance | ClassicState::Dead => return effects,
            ClassicState::CompletingRebalance => {
                for member in self.members.values_mut() {
                    member.assignment = Bytes::new();
                    if let Some(request) = member.awaiting_sync.take() {
                        effects.replies.push(Reply::Sync(
                            request,
                            Synced {
                                error: Some(ResponseError::RebalanceInProgress),
                                protocol_type: None,
                                protocol_name: None,
                                assignment: Bytes::new(),
                            },
                        ));
                    }
                }
                self.sync_deadline_ms = None;
            }
            ClassicState::Empty | ClassicState::Stable => {}
        }
        let rebalance_timeout = i64::from(
            self.members
                .values()
                .map(|m| m.rebalance_timeout_ms)
                .max()
                .unwrap_or(0),
        );
        if self.state == ClassicState::Empty {
            // The first rebalance of an empty group waits for more members to come.
            let delay = i64::from(limits.initial_rebalance_delay_ms).min(rebalance_timeout);
            self.join_deadline_ms = Some(now_ms + delay);
            self.initial_join_limit_ms = Some(now_ms + rebalance_timeout.max(delay));
        } else {
            self.join_deadline_ms = Some(now_ms + rebalance_timeout);
            self.initial_join_limit_ms = None;
        }
        self.transition(ClassicState::PreparingRebalance, now_ms);
        effects
    }

    /// Ends the join phase if every member has rejoined (and no delayed first rebalance is
    /// still waiting for more).
    fn try_complete_join(&mut self, now_ms: i64) -> Effects {
        if self.state != ClassicState::PreparingRebalance {
            return Effects::default();
        }
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some());
        let delaying = self.initial_join_limit_ms.is_some()
            && self.join_deadline_ms.is_some_and(|d| now_ms < d);
        if all_joined && !delaying {
            self.complete_join(now_ms)
        } else {
            Effects::default()
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the next generation
    /// starts and every waiting JoinGroup is answered (the leader with the members).
    fn complete_join(&mut self, now_ms: i64) -> Effects {
        let mut effects = Effects::default();
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.join_deadline_ms = None;
        self.initial_join_limit_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            self.transition(ClassicState::Empty, now_ms);
            effects.persist = true;
            return effects;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|leader| !self.members.contains_key(leader))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.transition(ClassicState::CompletingRebalance, now_ms);
        let rebalance_timeout = self
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        self.sync_deadline_ms = Some(now_ms + rebalance_timeout);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let joined = self.joined(&id);
            if let Some(member) = self.members.get_mut(&id) {
                member.is_new = false;
                member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                if let Some(request) = member.awaiting_join.take() {
                    effects.replies.push(Reply::Join(request, joined));
                }
            }
        }
        effects
    }

    /// What member `id` is told of the current generation (the member list if it leads).
    fn joined(&self, id: &str) -> Joined {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(id);
        let members = if is_leader {
            self.members
                .values()
                .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        Joined {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let member = self.members.remove(id)?;
        if let Some(instance) = &member.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(id)
        {
            self.static_members.remove(instance);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// A SyncGroup. `Err` is an immediate refusal; otherwise the answer is in the effects or
    /// parked until the leader's assignment comes.
    pub(crate) fn sync(&mut self, sync: Sync, now_ms: i64) -> Result<Effects, GroupRefusal> {
        if self.state == ClassicState::Dead {
            return Err((
                ResponseError::CoordinatorNotAvailable,
                format!(
                    "group {:?} is being removed; find its coordinator again",
                    self.id
                ),
            ));
        }
        self.check_instance(&sync.member_id, sync.instance_id.as_deref())?;
        if !self.members.contains_key(&sync.member_id) {
            return Err(self.unknown_member(&sync.member_id));
        }
        if sync.generation != self.generation {
            return Err(self.illegal_generation(sync.generation));
        }
        if sync
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || sync
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != self.protocol.as_ref())
        {
            return Err((
                ResponseError::InconsistentGroupProtocol,
                format!(
                    "group {:?} generation {} uses protocol type {:?} and protocol {:?}",
                    self.id, self.generation, self.protocol_type, self.protocol
                ),
            ));
        }
        match self.state {
            ClassicState::Empty | ClassicState::Dead => Err(self.unknown_member(&sync.member_id)),
            ClassicState::PreparingRebalance => Err(self.rebalancing()),
            ClassicState::Stable => {
                let member = &self.members[&sync.member_id];
                let synced = self.synced(member.assignment.clone());
                if let Some(member) = self.members.get_mut(&sync.member_id) {
                    member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                }
                Ok(Effects {
                    replies: vec![Reply::Sync(sync.request, synced)],
                    persist: false,
                })
            }
            ClassicState::CompletingRebalance => {
                let mut effects = Effects::default();
                if let Some(member) = self.members.get_mut(&sync.member_id) {
                    if let Some(old) = member.awaiting_sync.replace(sync.request) {
                        effects.replies.push(Reply::Sync(
                            old,
                            Synced {
                                error: Some(ResponseError::RebalanceInProgress),
                                protocol_type: None,
                                protocol_name: None,
                                assignment: Bytes::new(),
                            },
                        ));
                    }
                    member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                }
                if self.leader.as_deref() == Some(sync.member_id.as_str()) {
                    let mut assignments: BTreeMap<String, Bytes> =
                        sync.assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment = assignments.remove(&member.id).unwrap_or_default();
                    }
                    self.sync_deadline_ms = None;
                    self.rebalances += 1;
                    self.transition(ClassicState::Stable, now_ms);
                    effects.persist = true;
                    effects.merge(self.answer_syncs());
                }
                Ok(effects)
            }
        }
    }

    fn synced(&self, assignment: Bytes) -> Synced {
        Synced {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    /// Answers every parked SyncGroup with its member's assignment.
    fn answer_syncs(&mut self) -> Effects {
        let mut effects = Effects::default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let assignment = self.members[&id].assignment.clone();
            let synced = self.synced(assignment);
            if let Some(request) = self
                .members
                .get_mut(&id)
                .and_then(|m| m.awaiting_sync.take())
            {
                effects.replies.push(Reply::Sync(request, synced));
            }
        }
        effects
    }

    fn illegal_generation(&self, generation: i32) -> GroupRefusal {
        (
            ResponseError::IllegalGeneration,
            format!(
                "generation {generation} of group {:?} is over; it is at generation {}: join again",
                self.id, self.generation
            ),
        )
    }

    fn rebalancing(&self) -> GroupRefusal {
        (
            ResponseError::RebalanceInProgress,
            format!("group {:?} is rebalancing; join again", self.id),
        )
    }

    /// A Heartbeat: the member's session goes on. REBALANCE_IN_PROGRESS tells it to rejoin.
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupRefusal> {
        if self.state == ClassicState::Dead {
            return Err((
                ResponseError::CoordinatorNotAvailable,
                format!(
                    "group {:?} is being removed; find its coordinator again",
                    self.id
                ),
            ));
        }
        self.check_instance(member_id, instance_id)?;
        let Some(member) = self.members.get_mut(member_id) else {
            return Err(self.unknown_member(member_id));
        };
        if generation != self.generation {
            return Err(self.illegal_generation(generation));
        }
        member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        match self.state {
            ClassicState::PreparingRebalance => Err(self.rebalancing()),
            _ => Ok(()),
        }
    }

    /// A member leaving (LeaveGroup), by member id or, for static members, by instance id.
    /// Returns the member id that left.
    pub(crate) fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
        limits: &ClassicLimits,
    ) -> Result<(String, Effects), GroupRefusal> {
        if self.state == ClassicState::Dead {
            return Err((
                ResponseError::CoordinatorNotAvailable,
                format!(
                    "group {:?} is being removed; find its coordinator again",
                    self.id
                ),
            ));
        }
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(owner) if !member_id.is_empty() && owner != member_id => {
                    return Err((
                        ResponseError::FencedInstanceId,
                        format!(
                            "group.instance.id {instance:?} belongs to member {owner}, not {member_id}"
                        ),
                    ));
                }
                Some(owner) => owner.clone(),
                None => return Err(self.unknown_member(member_id)),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            let effects = self.try_complete_join(now_ms);
            return Ok((id, effects));
        }
        if !self.members.contains_key(&id) {
            return Err(self.unknown_member(&id));
        }
        let effects = self.member_gone(&id, now_ms, limits);
        Ok((id, effects))
    }

    /// Removes a member that left or expired and rebalances the rest.
    fn member_gone(&mut self, id: &str, now_ms: i64, limits: &ClassicLimits) -> Effects {
        let mut effects = Effects::default();
        let Some(member) = self.remove_member(id) else {
            return effects;
        };
        if let Some(request) = member.awaiting_join {
            effects.replies.push(Reply::Join(
                request,
                Joined::failed(ResponseError::UnknownMemberId, id),
            ));
        }
        if let Some(request) = member.awaiting_sync {
            effects.replies.push(Reply::Sync(
                request,
                Synced {
                    error: Some(ResponseError::UnknownMemberId),
                    protocol_type: None,
                    protocol_name: None,
                    assignment: Bytes::new(),
                },
            ));
        }
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                effects.merge(self.prepare_rebalance(now_ms, limits));
                effects.merge(self.try_complete_join(now_ms));
            }
            ClassicState::PreparingRebalance => effects.merge(self.try_complete_join(now_ms)),
            ClassicState::Empty | ClassicState::Dead => {}
        }
        effects
    }

    /// Moves time on: ends sessions, join phases and sync waits whose time is up.
    pub(crate) fn tick(&mut self, now_ms: i64, limits: &ClassicLimits) -> Effects {
        let mut effects = Effects::default();
        self.pending.retain(|_, deadline| *deadline > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    && m.awaiting_join.is_none()
                    && m.awaiting_sync.is_none()
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "a group member's session ended");
            effects.merge(self.member_gone(&id, now_ms, limits));
        }
        if self.state == ClassicState::PreparingRebalance
            && self.join_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            effects.merge(self.complete_join(now_ms));
        }
        if self.state == ClassicState::PreparingRebalance {
            effects.merge(self.try_complete_join(now_ms));
        }
        if self.state == ClassicState::CompletingRebalance
            && self.sync_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            // Members that never asked for their assignment are gone; the rest rejoin.
            let silent: Vec<String> = self
                .members
                .values()
                .filter(|m| m.awaiting_sync.is_none())
                .map(|m| m.id.clone())
                .collect();
            for id in silent {
                self.remove_member(&id);
            }
            self.sync_deadline_ms = None;
            effects.merge(self.prepare_rebalance(now_ms, limits));
            effects.merge(self.try_complete_join(now_ms));
        }
        effects
    }

    /// The earliest time [`tick`](Self::tick) has something to do.
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|m| m.session_deadline_ms);
        sessions
            .chain(self.pending.values().copied())
            .chain(self.join_deadline_ms)
            .chain(self.sync_deadline_ms)
            .min()
    }

    /// Checks an OffsetCommit's member and generation. A commit with a negative generation
    /// and no member is a simple (manual) commit, allowed only while the group is empty.
    pub(crate) fn validate_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupRefusal> {
        if self.state == ClassicState::Dead {
            return Err((
                ResponseError::CoordinatorNotAvailable,
                format!(
                    "group {:?} is being removed; find its coordinator again",
                    self.id
                ),
            ));
        }
        if generation < 0 && self.state == ClassicState::Empty {
            return Ok(());
        }
        self.check_instance(member_id, instance_id)?;
        if !self.members.contains_key(member_id) {
            return Err(self.unknown_member(member_id));
        }
        if generation != self.generation {
            return Err(self.illegal_generation(generation));
        }
        if self.state == ClassicState::CompletingRebalance {
            // The member may lose these partitions in the assignment it is about to get.
            return Err(self.rebalancing());
        }
        Ok(())
    }

    /// Marks the group deleted or unloaded: parked requests are told to find the coordinator
    /// again.
    pub(crate) fn shut(&mut self, now_ms: i64) -> Effects {
        let mut effects = Effects::default();
        for member in self.members.values_mut() {
            if let Some(request) = member.awaiting_join.take() {
                effects.replies.push(Reply::Join(
                    request,
                    Joined::failed(ResponseError::NotCoordinator, &member.id),
                ));
            }
            if let Some(request) = member.awaiting_sync.take() {
                effects.replies.push(Reply::Sync(
                    request,
                    Synced {
                        error: Some(ResponseError::NotCoordinator),
                        protocol_type: None,
                        protocol_name: None,
                        assignment: Bytes::new(),
                    },
                ));
            }
        }
        self.transition(ClassicState::Dead, now_ms);
        effects
    }

    /// The group as it is written to the log.
    pub(crate) fn value(&self) -> ClassicValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        ClassicValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| ClassicMemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// The group a coordinator loads from its last record: Stable with the members it had
    /// (their sessions start now), or Empty.
    pub(crate) fn from_value(id: &str, value: ClassicValue, now_ms: i64) -> ClassicGroup {
        let mut group = ClassicGroup::new(id, value.state_timestamp_ms);
        group.generation = value.generation;
        if value.members.is_empty() {
            return group;
        }
        group.protocol_type = Some(value.protocol_type.clone());
        group.protocol = value.protocol.clone();
        group.leader = value.leader;
        let protocol = value.protocol.unwrap_or_default();
        for m in value.members {
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocol_type: value.protocol_type.clone(),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    session_deadline_ms: now_ms + i64::from(m.session_timeout_ms),
                    is_new: false,
                },
            );
        }
        group.state = ClassicState::Stable;
        group
    }
}

/// A classic group as it is kept in the log (`ClassicGroupValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicValue {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) state_timestamp_ms: i64,
    pub(crate) members: Vec<ClassicMemberValue>,
}

/// One member as it is kept in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassicMemberValue {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) subscription: Bytes,
    pub(crate) assignment: Bytes,
}

#[cfg(test)]
#[path = "classic_tests.rs"]
mod tests;
