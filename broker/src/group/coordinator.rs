//! [`GroupCoordinator`]: the runtime around the pure group state machines.
//!
//! Each partition of `__consumer_offsets` this broker leads is a *shard*: the groups that
//! hash to it, loaded by replaying the partition when the leadership arrives (requests get
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile), dropped when it goes (NOT_COORDINATOR). A request
//! locks its group, runs the state machine on a copy, writes the records the change needs
//! with acks=all, and only then keeps the copy and sends the answers; a failed write leaves
//! the group as it was. A write whose outcome is unknown (a timeout) reloads the shard from
//! its log, so memory never disagrees with what a new coordinator would replay.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch};
use weir_proto::batch::{self, EncodeOptions, Record};

use super::assignor::Assignment;
use super::classic::{
    ClassicGroup, ClassicLimits, ClassicState, Effects, Join, Joined, Reply, RequestId, Sync,
    Synced,
};
use super::consumer::{
    ConsumerGroup, ConsumerGroupConfig, ConsumerGroupRecord, GroupError, GroupState,
    HeartbeatRequest, TopicsView,
};
use super::metrics::{self, GroupReport, GroupSample};
use super::records::{CommittedOffset, GroupRecord};
use super::{GroupRefusal, OFFSETS_TOPIC, partition_for};
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::controller::{BrokerId, ControllerView, Endpoints, ErrorKind};
use crate::partition::{Partition, PartitionError, ReplicaManager, Role};
use crate::storage::TopicPartition;

/// How long a write to `__consumer_offsets` may wait for the in-sync replicas (Kafka's
/// `offsets.commit.timeout.ms`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the coordinator checks which partitions it leads and runs group timers.
const TICK: Duration = Duration::from_millis(100);
/// How often the groups' metrics are reported.
const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// How long FindCoordinator waits for a new offsets topic to reach this node's metadata.
const TOPIC_CREATION_WAIT: Duration = Duration::from_secs(10);
/// A parked JoinGroup or SyncGroup waits this much longer than the group's rebalance timeout
/// before it is answered REBALANCE_IN_PROGRESS anyway.
const PARKED_SLACK: Duration = Duration::from_secs(5);
/// The most bytes read from `__consumer_offsets` at once while loading.
const LOAD_READ_BYTES: usize = 1024 * 1024;

/// The coordinator's settings, from the node's configuration.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// This broker's id.
    pub broker_id: BrokerId,
    /// `offsets_topic_num_partitions`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets_topic_replication_factor`.
    pub offsets_topic_replication_factor: i32,
    /// `offsets_topic_segment_bytes`.
    pub offsets_topic_segment_bytes: u64,
    /// `offset_metadata_max_bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets_retention_ms`.
    pub offsets_retention_ms: i64,
    /// `offsets_retention_check_interval_ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// The classic protocol's limits.
    pub(crate) classic: ClassicLimits,
    /// The consumer protocol's settings.
    pub(crate) consumer: ConsumerGroupConfig,
}

impl GroupConfig {
    /// The coordinator settings of `config`.
    pub fn from_node(config: &NodeConfig) -> GroupConfig {
        GroupConfig {
            broker_id: config.node_id,
            offsets_topic_num_partitions: config.offsets_topic_num_partitions,
            offsets_topic_replication_factor: config.offsets_topic_replication_factor,
            offsets_topic_segment_bytes: config.offsets_topic_segment_bytes,
            offset_metadata_max_bytes: usize::try_from(config.offset_metadata_max_bytes)
                .unwrap_or(0),
            offsets_retention_ms: config.offsets_retention_ms,
            offsets_retention_check_interval_ms: config.offsets_retention_check_interval_ms,
            classic: ClassicLimits {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                max_size: config.group_max_size,
            },
            consumer: ConsumerGroupConfig {
                session_timeout_ms: i64::from(config.group_consumer_session_timeout_ms),
                heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
                max_size: usize::try_from(config.group_max_size).unwrap_or(usize::MAX),
            },
        }
    }
}

/// Where a group's coordinator is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// The coordinating broker.
    pub node_id: BrokerId,
    /// Its addresses.
    pub endpoints: Endpoints,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetCommit {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: Option<String>,
}

/// One partition's committed offset as OffsetFetch reports it (`None`: nothing committed).
pub(crate) type OffsetFetchResult = (String, i32, Option<CommittedOffset>);

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupListing {
    pub(crate) group_id: String,
    pub(crate) protocol_type: String,
    pub(crate) state: &'static str,
    pub(crate) group_type: &'static str,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupDescription {
    pub(crate) group_id: String,
    pub(crate) state: &'static str,
    pub(crate) protocol_type: String,
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberDescription>,
}

/// One member in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberDescription {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) metadata: Bytes,
    pub(crate) assignment: Bytes,
}

/// A group and its committed offsets. A group on the consumer protocol has `consumer`; its
/// classic part then stays empty.
#[derive(Debug)]
struct GroupEntry {
    group: ClassicGroup,
    consumer: Option<ConsumerGroup>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl GroupEntry {
    /// The state ListGroups and the metrics show.
    fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(consumer) => consumer_state_name(consumer.state()),
            None => self.group.state().name(),
        }
    }

    fn is_dead(&self) -> bool {
        match &self.consumer {
            Some(consumer) => consumer.state() == GroupState::Dead,
            None => self.group.state() == ClassicState::Dead,
        }
    }

    fn member_count(&self) -> usize {
        match &self.consumer {
            Some(consumer) => consumer.describe().members.len(),
            None => self.group.members().len(),
        }
    }
}

/// A consumer-protocol group state's name, as Kafka shows it.
fn consumer_state_name(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::Assigning => "Assigning",
        GroupState::Reconciling => "Reconciling",
        GroupState::Stable => "Stable",
        GroupState::Dead => "Dead",
    }
}

/// A consumer-protocol refusal as a [`GroupRefusal`].
fn consumer_refusal(error: &GroupError) -> GroupRefusal {
    (error.code(), error.to_string())
}

/// A ConsumerGroupHeartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerHeartbeatResult {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) heartbeat_interval_ms: i32,
    /// The partitions the member must own, when it is to be told.
    pub(crate) assignment: Option<Assignment>,
}

type GroupSlot = Arc<tokio::sync::Mutex<GroupEntry>>;

/// The groups of one partition of `__consumer_offsets` this broker leads.
#[derive(Debug)]
struct Shard {
    /// This broker.
    broker: BrokerId,
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Set once the partition has been replayed.
    loaded: watch::Sender<bool>,
    groups: Mutex<HashMap<String, GroupSlot>>,
    /// Parked JoinGroup and SyncGroup requests, by id.
    waiters: Mutex<HashMap<RequestId, oneshot::Sender<Reply>>>,
    /// Unloaded: no request may use it any more.
    closed: AtomicBool,
    /// A write's outcome is unknown: reload from the log.
    stale: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_coordinator(group: &str, broker: BrokerId) -> GroupRefusal {
    (
        ResponseError::NotCoordinator,
        format!("broker {broker} is not the coordinator of group {group:?}; find it again"),
    )
}

impl Shard {
    fn group(&self, id: &str) -> Option<GroupSlot> {
        lock(&self.groups).get(id).cloned()
    }

    fn group_or_create(&self, id: &str, now_ms: i64) -> GroupSlot {
        Arc::clone(lock(&self.groups).entry(id.to_string()).or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(GroupEntry {
                group: ClassicGroup::new(id, now_ms),
                consumer: None,
                offsets: BTreeMap::new(),
            }))
        }))
    }

    fn slots(&self) -> Vec<GroupSlot> {
        lock(&self.groups).values().cloned().collect()
    }

    /// Sends each parked request its answer.
    fn dispatch(&self, replies: Vec<Reply>) {
        let mut waiters = lock(&self.waiters);
        for reply in replies {
            let request = match &reply {
                Reply::Join(request, _) | Reply::Sync(request, _) => *request,
            };
            if let Some(waiter) = waiters.remove(&request) {
                // The requester may have given up; nothing to do then.
                let _gone = waiter.send(reply);
            }
        }
    }

    /// Writes `records` to the partition and waits until every in-sync replica has them.
    async fn write(&self, records: &[GroupRecord], now_ms: i64) -> Result<(), GroupRefusal> {
        let group = records.first().map(GroupRecord::group).unwrap_or_default();
        let broker = self.partition_broker();
        if self.closed.load(Ordering::Acquire)
            || self.partition.role() != Role::Leader
            || self.partition.leader_epoch() != self.leader_epoch
        {
            return Err(not_coordinator(group, broker));
        }
        let encoded: Vec<Record> = records
            .iter()
            .zip(0i64..)
            .map(|(record, offset)| {
                let (key, value) = record.encode();
                Record {
                    key: Some(key),
                    value,
                    headers: Vec::new(),
                    timestamp: now_ms,
                    offset,
                }
            })
            .collect();
        let batch = batch::encode(&encoded, &EncodeOptions::default()).map_err(|e| {
            (
                ResponseError::UnknownServerError,
                format!("could not encode the records of group {group:?}: {e}"),
            )
        })?;
        let refused = |e: &PartitionError| write_refusal(e, group, broker);
        self.partition
            .check_enough_replicas()
            .map_err(|e| refused(&e))?;
        let info = self
            .partition
            .produce(batch, now_ms)
            .map_err(|e| refused(&e))?;
        match self
            .partition
            .wait_for_replication(info.last_offset, self.leader_epoch, WRITE_TIMEOUT)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                // The records may still be committed later: memory no longer matches the log.
                self.stale.store(true, Ordering::Release);
                Err(refused(&e))
            }
        }
    }

    fn partition_broker(&self) -> BrokerId {
        self.broker
    }
}

/// The coordinator error for a failed write, as Kafka maps them.
fn write_refusal(error: &PartitionError, group: &str, broker: BrokerId) -> GroupRefusal {
    match error {
        PartitionError::NotLeader { .. } | PartitionError::FencedLeaderEpoch { .. } => {
            not_coordinator(group, broker)
        }
        PartitionError::NotEnoughReplicas { .. }
        | PartitionError::NotEnoughReplicasAfterAppend { .. }
        | PartitionError::ReplicationTimedOut { .. } => (
            ResponseError::CoordinatorNotAvailable,
            format!(
                "the coordinator of group {group:?} could not replicate its write ({error}); retry"
            ),
        ),
        PartitionError::Storage(_) => (
            ResponseError::NotCoordinator,
            format!("the coordinator of group {group:?} could not write its log: {error}"),
        ),
        _ => (
            ResponseError::UnknownServerError,
            format!("the coordinator of group {group:?} could not write: {error}"),
        ),
    }
}

/// The group coordinator of one broker. Cheap to share: the front ends hold it in an `Arc`.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    controller: ControllerView,
    replicas: Arc<ReplicaManager>,
    clock: Arc<dyn Clock>,
    shards: Mutex<HashMap<i32, Arc<Shard>>>,
    next_request: AtomicU64,
    /// One creation of the offsets topic at a time.
    creating: tokio::sync::Mutex<()>,
    /// The metadata the consumer groups last compared their subscriptions with.
    topics_seen: Mutex<Option<Arc<crate::controller::ClusterMetadata>>>,
}

impl GroupCoordinator {
    /// A coordinator for the partitions of `replicas`.
    pub fn new(
        config: GroupConfig,
        controller: ControllerView,
        replicas: Arc<ReplicaManager>,
        clock: Arc<dyn Clock>,
    ) -> GroupCoordinator {
        metrics::describe();
        GroupCoordinator {
            config,
            controller,
            replicas,
            clock,
            shards: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            creating: tokio::sync::Mutex::new(()),
            topics_seen: Mutex::new(None),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Follows this broker's leaderships of `__consumer_offsets` (loading and dropping
    /// shards), runs the groups' timers and expires old offsets, until `stop` fires.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        // Timers may wait on a write (up to WRITE_TIMEOUT): they run beside the leadership
        // sweep, so a slow write never delays loading a partition this broker now leads.
        let timers = tokio::spawn(Arc::clone(&self).run_maintenance(stop.clone()));
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = stopped(stop);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                _ = tick.tick() => self.sweep(),
            }
        }
        timers.abort();
        let shards: Vec<Arc<Shard>> = lock(&self.shards).drain().map(|(_, s)| s).collect();
        for shard in shards {
            self.unload(&shard).await;
        }
    }

    /// The groups' timers, offset expiration and metrics, until `stop` fires.
    async fn run_maintenance(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retention = tokio::time::interval(Duration::from_millis(
            self.config.offsets_retention_check_interval_ms.max(1),
        ));
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = tokio::time::interval(REPORT_INTERVAL);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = GroupReport::default();
        let stopped = stopped(stop);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                _ = tick.tick() => self.run_timers().await,
                _ = retention.tick() => self.expire_offsets().await,
                _ = report.tick() => reported.report(&self.samples().await),
            }
        }
    }

    /// Loads the partitions this broker now leads and drops those it no longer does.
    fn sweep(self: &Arc<Self>) {
        let metadata = self.controller.metadata();
        let count = metadata
            .topic_by_name(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len());
        let mut to_unload = Vec::new();
        {
            let mut shards = lock(&self.shards);
            shards.retain(|&p, shard| {
                let keep = usize::try_from(p).is_ok_and(|p| p < count)
                    && Self::still_leads(shard)
                    && !shard.stale.load(Ordering::Acquire);
                if !keep {
                    to_unload.push(Arc::clone(shard));
                }
                keep
            });
            for p in 0..count {
                let p = i32::try_from(p).unwrap_or(i32::MAX);
                if shards.contains_key(&p) {
                    continue;
                }
                let tp = TopicPartition::new(OFFSETS_TOPIC.to_string(), p);
                let Some(partition) = self.replicas.partition(&tp) else {
                    continue;
                };
                if partition.role() != Role::Leader {
                    continue;
                }
                let shard = Arc::new(Shard {
                    broker: self.config.broker_id,
                    leader_epoch: partition.leader_epoch(),
                    partition,
                    loaded: watch::Sender::new(false),
                    groups: Mutex::new(HashMap::new()),
                    waiters: Mutex::new(HashMap::new()),
                    closed: AtomicBool::new(false),
                    stale: AtomicBool::new(false),
                });
                shards.insert(p, Arc::clone(&shard));
                let coordinator = Arc::clone(self);
                tokio::spawn(async move { coordinator.load(shard).await });
            }
        }
        for shard in to_unload {
            let coordinator = Arc::clone(self);
            tokio::spawn(async move { coordinator.unload(&shard).await });
        }
    }

    fn still_leads(shard: &Shard) -> bool {
        shard.partition.role() == Role::Leader
            && shard.partition.leader_epoch() == shard.leader_epoch
    }

    /// Replays the shard's partition into its groups.
    async fn load(&self, shard: Arc<Shard>) {
        let partition = Arc::clone(&shard.partition);
        let started = std::time::Instant::now();
        let replayed = tokio::task::spawn_blocking(move || replay(&partition)).await;
        let now_ms = self.now_ms();
        let (records, groups) = match replayed {
            Ok(Ok(replayed)) => replayed,
            Ok(Err(e)) => {
                tracing::error!(tp = %shard.partition.topic_partition(), error = %e,
                    "could not load the groups of a __consumer_offsets partition; retrying");
                shard.stale.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "loading a __consumer_offsets partition panicked");
                shard.stale.store(true, Ordering::Release);
                return;
            }
        };
        let count = groups.len();
        {
            let mut slots = lock(&shard.groups);
            for (id, loaded) in groups {
                let group = match loaded.classic {
                    Some(value) => ClassicGroup::from_value(&id, value, now_ms),
                    None => ClassicGroup::new(&id, now_ms),
                };
                let consumer = loaded.consumer.and_then(|records| {
                    let mut consumer = ConsumerGroup::new(id.clone(), self.config.consumer);
                    for record in records {
                        consumer.replay(record);
                    }
                    consumer.loaded(now_ms);
                    (consumer.state() != GroupState::Dead).then_some(consumer)
                });
                slots.insert(
                    id,
                    Arc::new(tokio::sync::Mutex::new(GroupEntry {
                        group,
                        consumer,
                        offsets: loaded.offsets,
                    })),
                );
            }
        }
        shard.loaded.send_replace(true);
        tracing::info!(
            tp = %shard.partition.topic_partition(),
            leader_epoch = shard.leader_epoch,
            groups = count,
            records,
            ms = started.elapsed().as_millis() as u64,
            "loaded the groups of a __consumer_offsets partition"
        );
    }

    /// Drops a shard: parked requests are told to find the coordinator again.
    async fn unload(&self, shard: &Shard) {
        shard.closed.store(true, Ordering::Release);
        let now_ms = self.now_ms();
        for slot in shard.slots() {
            let mut entry = slot.lock().await;
            let effects = entry.group.shut(now_ms);
            shard.dispatch(effects.replies);
        }
        lock(&shard.waiters).clear();
        lock(&shard.groups).clear();
        tracing::info!(tp = %shard.partition.topic_partition(),
            "no longer coordinating the groups of a __consumer_offsets partition");
    }

    /// The shard holding `group`, loaded, or why this broker cannot serve it.
    fn shard(self: &Arc<Self>, group: &str) -> Result<Arc<Shard>, GroupRefusal> {
        if group.is_empty() {
            return Err((
                ResponseError::InvalidGroupId,
                "the group id is empty; name the group".to_string(),
            ));
        }
        let metadata = self.controller.metadata();
        let Some(topic) = metadata.topic_by_name(OFFSETS_TOPIC) else {
            return Err(not_coordinator(group, self.config.broker_id));
        };
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let p = partition_for(group, count);
        let existing = lock(&self.shards).get(&p).cloned();
        let shard = match existing {
            Some(shard) if Self::still_leads(&shard) && !shard.closed.load(Ordering::Acquire) => {
                shard
            }
            _ => {
                // Perhaps the leadership just arrived: look now rather than at the next tick.
                self.sweep();
                match lock(&self.shards).get(&p).cloned() {
                    Some(shard) if Self::still_leads(&shard) => shard,
                    _ => {
                        let leader = usize::try_from(p)
                            .ok()
                            .and_then(|p| topic.partitions.get(p))
                            .and_then(|p| p.leader);
                        if leader == Some(self.config.broker_id) {
                            // The metadata names this broker; its replica is still opening.
                            return Err((
                                ResponseError::CoordinatorLoadInProgress,
                                format!("the coordinator of group {group:?} is starting; retry"),
                            ));
                        }
                        return Err(not_coordinator(group, self.config.broker_id));
                    }
                }
            }
        };
        if !*shard.loaded.borrow() {
            return Err((
                ResponseError::CoordinatorLoadInProgress,
                format!("the coordinator of group {group:?} is loading its groups; retry"),
            ));
        }
        Ok(shard)
    }

    fn next_request(&self) -> RequestId {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Keeps `group` (the changed copy) once what `effects` asks to write is written, then
    /// sends the answers. A failed write keeps the group as it was.
    async fn settle(
        &self,
        shard: &Shard,
        entry: &mut GroupEntry,
        group: ClassicGroup,
        effects: Effects,
    ) -> Result<(), GroupRefusal> {
        if effects.persist {
            let record = GroupRecord::Classic {
                group: group.id().to_string(),
                value: Some(group.value()),
            };
            shard.write(&[record], self.now_ms()).await?;
        }
        let rebalances = group.rebalances() - entry.group.rebalances();
        if rebalances > 0 {
            tracing::info!(
                group = group.id(),
                generation = group.generation(),
                leader = group.leader().unwrap_or_default(),
                members = group.members().len(),
                protocol = group.protocol().unwrap_or_default(),
                "a group completed a rebalance"
            );
            metrics::rebalanced(group.id(), rebalances);
        }
        entry.group = group;
        shard.dispatch(effects.replies);
        Ok(())
    }

    /// Parks request `request` of `shard` and returns where its answer will come.
    fn park(shard: &Shard, request: RequestId) -> oneshot::Receiver<Reply> {
        let (sender, receiver) = oneshot::channel();
        lock(&shard.waiters).insert(request, sender);
        receiver
    }

    async fn await_reply(
        shard: &Shard,
        request: RequestId,
        receiver: oneshot::Receiver<Reply>,
        wait: Duration,
        group: &str,
        broker: BrokerId,
    ) -> Result<Reply, GroupRefusal> {
        match tokio::time::timeout(wait, receiver).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(not_coordinator(group, broker)),
            Err(_) => {
                lock(&shard.waiters).remove(&request);
                Err((
                    ResponseError::RebalanceInProgress,
                    format!("the rebalance of group {group:?} did not finish in time; join again"),
                ))
            }
        }
    }

    /// JoinGroup: answered when the group's join phase ends.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn join(
        self: &Arc<Self>,
        group_id: &str,
        member_id: String,
        instance_id: Option<String>,
        require_known_member_id: bool,
        client_id: String,
        client_host: String,
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        protocol_type: String,
        protocols: Vec<(String, Bytes)>,
    ) -> Result<Joined, GroupRefusal> {
        let shard = self.shard(group_id)?;
        let now_ms = self.now_ms();
        let slot = match shard.group(group_id) {
            Some(slot) => slot,
            None if member_id.is_empty() => shard.group_or_create(group_id, now_ms),
            None => {
                return Err((
                    ResponseError::UnknownMemberId,
                    format!("group {group_id:?} does not exist; join with an empty member id"),
                ));
            }
        };
        let request = self.next_request();
        let receiver = Self::park(&shard, request);
        let join = Join {
            request,
            member_id,
            instance_id,
            require_known_member_id,
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type,
            protocols,
        };
        let settled = {
            let mut entry = slot.lock().await;
            if let Err(refusal) = self.leave_consumer_protocol(&shard, &mut entry).await {
                lock(&shard.waiters).remove(&request);
                return Err(refusal);
            }
            let mut group = entry.group.clone();
            match group.join(join, &self.config.classic, now_ms) {
                Ok(effects) => self.settle(&shard, &mut entry, group, effects).await,
                Err(refusal) => Err(refusal),
            }
        };
        if let Err(refusal) = settled {
            lock(&shard.waiters).remove(&request);
            return Err(refusal);
        }
        let wait = Duration::from_millis(
            u64::try_from(rebalance_timeout_ms.max(session_timeout_ms)).unwrap_or(0),
        ) + PARKED_SLACK;
        match Self::await_reply(
            &shard,
            request,
            receiver,
            wait,
            group_id,
            self.config.broker_id,
        )
        .await?
        {
            Reply::Join(_, joined) => Ok(joined),
            Reply::Sync(..) => Err((
                ResponseError::UnknownServerError,
                "a JoinGroup was answered as a SyncGroup".to_string(),
            )),
        }
    }

    /// SyncGroup: answered when the leader's assignment is written.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Synced, GroupRefusal> {
        let shard = self.shard(group_id)?;
        let Some(slot) = shard.group(group_id) else {
            return Err((
                ResponseError::UnknownMemberId,
                format!("group {group_id:?} does not exist; join it first"),
            ));
        };
        let request = self.next_request();
        let receiver = Self::park(&shard, request);
        let sync = Sync {
            request,
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol_name,
            assignments,
        };
        let (settled, wait) = {
            let mut entry = slot.lock().await;
            let wait = entry
                .group
                .members()
                .values()
                .map(|m| m.rebalance_timeout_ms)
                .max()
                .unwrap_or(0);
            let mut group = entry.group.clone();
            let settled = match group.sync(sync, self.now_ms()) {
                Ok(effects) => self.settle(&shard, &mut entry, group, effects).await,
                Err(refusal) => Err(refusal),
            };
            (settled, wait)
        };
        if let Err(refusal) = settled {
            lock(&shard.waiters).remove(&request);
            return Err(refusal);
        }
        let wait = Duration::from_millis(u64::try_from(wait).unwrap_or(0)) + PARKED_SLACK;
        match Self::await_reply(
            &shard,
            request,
            receiver,
            wait,
            group_id,
            self.config.broker_id,
        )
        .await?
        {
            Reply::Sync(_, synced) => Ok(synced),
            Reply::Join(..) => Err((
                ResponseError::UnknownServerError,
                "a SyncGroup was answered as a JoinGroup".to_string(),
            )),
        }
    }

    /// Heartbeat.
    pub(crate) async fn heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupRefusal> {
        let shard = self.shard(group_id)?;
        let Some(slot) = shard.group(group_id) else {
            return Err((
                ResponseError::UnknownMemberId,
                format!("group {group_id:?} does not exist; join it first"),
            ));
        };
        let mut entry = slot.lock().await;
        entry
            .group
            .heartbeat(member_id, instance_id, generation, self.now_ms())
    }

    /// LeaveGroup for each of `members` (member id, instance id); each gets its own result.
    pub(crate) async fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<Result<(), GroupRefusal>>, GroupRefusal> {
        let shard = self.shard(group_id)?;
        let Some(slot) = shard.group(group_id) else {
            return Err((
                ResponseError::UnknownMemberId,
                format!("group {group_id:?} does not exist"),
            ));
        };
        let mut entry = slot.lock().await;
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let mut group = entry.group.clone();
            let result = match group.leave(
                &member_id,
                instance_id.as_deref(),
                self.now_ms(),
                &self.config.classic,
            ) {
                Ok((left, effects)) => {
                    tracing::info!(group = %group_id, member = %left, "a member left its group");
                    self.settle(&shard, &mut entry, group, effects).await
                }
                Err(refusal) => Err(refusal),
            };
            results.push(result);
        }
        Ok(results)
    }

    /// OffsetCommit: each partition's result (`None`: committed).
    pub(crate) async fn commit_offsets(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<OffsetCommit>,
    ) -> Result<Vec<Option<GroupRefusal>>, GroupRefusal> {
        let shard = self.shard(group_id)?;
        let now_ms = self.now_ms();
        let slot = match shard.group(group_id) {
            Some(slot) => slot,
            // A consumer that assigns its own partitions keeps offsets in a group of no members.
            None if generation < 0 => shard.group_or_create(group_id, now_ms),
            None => {
                return Err((
                    ResponseError::IllegalGeneration,
                    format!(
                        "group {group_id:?} does not exist, so generation {generation} is over; \
                         join again"
                    ),
                ));
            }
        };
        let mut entry = slot.lock().await;
        match &entry.consumer {
            Some(consumer) => consumer
                .validate_offset_commit(member_id, generation)
                .map_err(|e| consumer_refusal(&e))?,
            None => entry
                .group
                .validate_commit(member_id, instance_id, generation)?,
        }
        let metadata = self.controller.metadata();
        let mut results = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        let mut committed = Vec::new();
        for commit in offsets {
            let exists = metadata.topic_by_name(&commit.topic).is_some_and(|t| {
                usize::try_from(commit.partition).is_ok_and(|p| p < t.partitions.len())
            });
            let refusal = if !exists {
                Some((
                    ResponseError::UnknownTopicOrPartition,
                    format!("{}-{} does not exist", commit.topic, commit.partition),
                ))
            } else if commit
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes)
            {
                Some((
                    ResponseError::OffsetMetadataTooLarge,
                    format!(
                        "the offset metadata of {}-{} is over offset_metadata_max_bytes ({})",
                        commit.topic, commit.partition, self.config.offset_metadata_max_bytes
                    ),
                ))
            } else {
                let value = CommittedOffset {
                    offset: commit.offset,
                    leader_epoch: commit.leader_epoch,
                    metadata: commit.metadata,
                    commit_timestamp_ms: now_ms,
                };
                records.push(GroupRecord::Offset {
                    group: group_id.to_string(),
                    topic: commit.topic.clone(),
                    partition: commit.partition,
                    value: Some(value.clone()),
                });
                committed.push(((commit.topic, commit.partition), value));
                None
            };
            results.push(refusal);
        }
        if records.is_empty() {
            return Ok(results);
        }
        match shard.write(&records, now_ms).await {
            Ok(()) => {
                entry.offsets.extend(committed);
                Ok(results)
            }
            Err(refusal) => Ok(results
                .into_iter()
                .map(|r| r.or_else(|| Some(refusal.clone())))
                .collect()),
        }
    }

    /// OffsetFetch as an administrator (no member): the committed offsets of `partitions`
    /// (topic, partitions), or of every partition the group committed for when `None`.
    pub(crate) async fn fetch_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<OffsetFetchResult>, GroupRefusal> {
        self.fetch_offsets_as(group_id, None, -1, partitions).await
    }

    /// OffsetFetch: as [`fetch_offsets`](Self::fetch_offsets); a member of a
    /// consumer-protocol group (OffsetFetch v9) gives its id and epoch, which are checked.
    pub(crate) async fn fetch_offsets_as(
        self: &Arc<Self>,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<OffsetFetchResult>, GroupRefusal> {
        let shard = self.shard(group_id)?;
        let offsets = match shard.group(group_id) {
            Some(slot) => {
                let entry = slot.lock().await;
                if let Some(consumer) = &entry.consumer {
                    consumer
                        .validate_offset_fetch(member_id, member_epoch)
                        .map_err(|e| consumer_refusal(&e))?;
                }
                entry.offsets.clone()
            }
            None => BTreeMap::new(),
        };
        Ok(match partitions {
            None => offsets
                .into_iter()
                .map(|((topic, partition), value)| (topic, partition, Some(value)))
                .collect(),
            Some(asked) => asked
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .into_iter()
                        .map(|p| {
                            let value = offsets.get(&(topic.clone(), p)).cloned();
                            (topic.clone(), p, value)
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        })
    }

    /// ListGroups: the groups this broker coordinates.
    pub(crate) async fn list_groups(&self) -> Vec<GroupListing> {
        let shards: Vec<Arc<Shard>> = lock(&self.shards)
            .values()
            .filter(|s| *s.loaded.borrow() && !s.closed.load(Ordering::Acquire))
            .cloned()
            .collect();
        let mut listed = Vec::new();
        for shard in shards {
            for slot in shard.slots() {
                let entry = slot.lock().await;
                if entry.is_dead() {
                    continue;
                }
                let group = &entry.group;
                let (protocol_type, group_type) = match &entry.consumer {
                    Some(_) => ("consumer", "consumer"),
                    None => (group.protocol_type().unwrap_or_default(), "classic"),
                };
                listed.push(GroupListing {
                    group_id: group.id().to_string(),
                    protocol_type: protocol_type.to_string(),
                    state: entry.state_name(),
                    group_type,
                });
            }
        }
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listed
    }

    /// DescribeGroups of one group; an unknown group is described as Dead, as Kafka does.
    pub(crate) async fn describe_group(
        self: &Arc<Self>,
        group_id: &str,
    ) -> Result<GroupDescription, GroupRefusal> {
        let shard = self.shard(group_id)?;
        let Some(slot) = shard.group(group_id) else {
            return Ok(GroupDescription {
                group_id: group_id.to_string(),
                state: ClassicState::Dead.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let entry = slot.lock().await;
        if let Some(consumer) = &entry.consumer {
            return Ok(self.describe_consumer_group(consumer));
        }
        let group = &entry.group;
        let stable = group.state() == ClassicState::Stable;
        let protocol = group.protocol().unwrap_or_default().to_string();
        Ok(GroupDescription {
            group_id: group_id.to_string(),
            state: group.state().name(),
            protocol_type: group.protocol_type().unwrap_or_default().to_string(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: group
                .members()
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    // As Kafka: metadata and assignment only once the group is stable.
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// DeleteGroups of one group: only a group without members; its offsets go with it.
    pub(crate) async fn delete_group(self: &Arc<Self>, group_id: &str) -> Result<(), GroupRefusal> {
        let shard = self.shard(group_id)?;
        let not_found = || {
            (
                ResponseError::GroupIdNotFound,
                format!("group {group_id:?} does not exist"),
            )
        };
        let slot = shard.group(group_id).ok_or_else(not_found)?;
        let mut entry = slot.lock().await;
        let mut consumer_records = Vec::new();
        if let Some(consumer) = &entry.consumer {
            let mut consumer = consumer.clone();
            if consumer.state() == GroupState::Dead {
                return Err(not_found());
            }
            consumer_records = consumer.delete().map_err(|e| consumer_refusal(&e))?;
        }
        match entry.group.state() {
            ClassicState::Dead => return Err(not_found()),
            ClassicState::Empty => {}
            _ => {
                return Err((
                    ResponseError::NonEmptyGroup,
                    format!(
                        "group {group_id:?} has {} members; stop them (or wait for their \
                         sessions to end) before deleting it",
                        entry.group.members().len()
                    ),
                ));
            }
        }
        let mut records: Vec<GroupRecord> = entry
            .offsets
            .keys()
            .map(|(topic, partition)| GroupRecord::Offset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            })
            .collect();
        records.push(GroupRecord::Classic {
            group: group_id.to_string(),
            value: None,
        });
        for record in consumer_records {
            records.extend(GroupRecord::consumer(group_id, record));
        }
        let now_ms = self.now_ms();
        shard.write(&records, now_ms).await?;
        entry.consumer = None;
        entry.offsets.clear();
        let effects = entry.group.shut(now_ms);
        shard.dispatch(effects.replies);
        lock(&shard.groups).remove(group_id);
        tracing::info!(group = %group_id, "deleted a group");
        Ok(())
    }

    /// OffsetDelete: removes committed offsets the group no longer needs. Each partition's
    /// result (`None`: deleted, or nothing was committed).
    pub(crate) async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Option<GroupRefusal>>, GroupRefusal> {
        let shard = self.shard(group_id)?;
        let slot = shard.group(group_id).ok_or_else(|| {
            (
                ResponseError::GroupIdNotFound,
                format!("group {group_id:?} does not exist"),
            )
        })?;
        let mut entry = slot.lock().await;
        let group = &entry.group;
        let subscribed = if let Some(consumer) = &entry.consumer {
            let mut topics: Vec<String> = consumer
                .describe()
                .members
                .into_iter()
                .flat_map(|m| m.subscribed_topic_names)
                .collect();
            topics.sort();
            topics.dedup();
            topics
        } else if group.state() == ClassicState::Empty {
            Vec::new()
        } else if group.protocol_type() == Some("consumer") {
            subscribed_topics(group)
        } else {
            return Err((
                ResponseError::NonEmptyGroup,
                format!("group {group_id:?} has members and is not a consumer group"),
            ));
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(&topic) {
                results.push(Some((
                    ResponseError::GroupSubscribedToTopic,
                    format!("group {group_id:?} is subscribed to {topic:?}; its offsets stay"),
                )));
                continue;
            }
            if entry.offsets.contains_key(&(topic.clone(), partition)) {
                records.push(GroupRecord::Offset {
                    group: group_id.to_string(),
                    topic,
                    partition,
                    value: None,
                });
            }
            results.push(None);
        }
        if !records.is_empty() {
            shard.write(&records, self.now_ms()).await?;
            for record in records {
                if let GroupRecord::Offset {
                    topic, partition, ..
                } = record
                {
                    entry.offsets.remove(&(topic, partition));
                }
            }
        }
        Ok(results)
    }

    /// What the metrics report of each group this broker coordinates.
    async fn samples(&self) -> Vec<GroupSample> {
        let shards: Vec<Arc<Shard>> = lock(&self.shards).values().cloned().collect();
        let mut samples = Vec::new();
        for shard in shards {
            if !*shard.loaded.borrow() || shard.closed.load(Ordering::Acquire) {
                continue;
            }
            for slot in shard.slots() {
                let entry = slot.lock().await;
                if entry.is_dead() {
                    continue;
                }
                let offsets = entry
                    .offsets
                    .iter()
                    .map(|((topic, partition), committed)| {
                        let tp = TopicPartition::new(topic.clone(), *partition);
                        let end = self.replicas.partition(&tp).map(|p| p.high_watermark());
                        ((topic.clone(), *partition), (committed.offset, end))
                    })
                    .collect();
                samples.push(GroupSample {
                    group: entry.group.id().to_string(),
                    state: entry.state_name(),
                    members: entry.member_count(),
                    offsets,
                });
            }
        }
        samples
    }

    /// Runs the timers of every loaded group whose time has come.
    async fn run_timers(&self) {
        let shards: Vec<Arc<Shard>> = lock(&self.shards).values().cloned().collect();
        // Consumer groups look at the topics again only when the metadata changed.
        let metadata = self.controller.metadata();
        let topics = {
            let mut seen = lock(&self.topics_seen);
            let changed = seen.as_ref().is_none_or(|m| !Arc::ptr_eq(m, &metadata));
            *seen = Some(Arc::clone(&metadata));
            changed.then(|| topics_view(&metadata))
        };
        for shard in shards {
            if !*shard.loaded.borrow() || shard.closed.load(Ordering::Acquire) {
                continue;
            }
            let now_ms = self.now_ms();
            for slot in shard.slots() {
                // A busy group is looked at again at the next tick.
                let Ok(mut entry) = slot.try_lock() else {
                    continue;
                };
                if let Some(consumer) = &entry.consumer {
                    let due = consumer.next_deadline().is_some_and(|d| d <= now_ms);
                    if !due && topics.is_none() {
                        continue;
                    }
                    let mut consumer = consumer.clone();
                    let mut records = if due {
                        consumer.expire(now_ms)
                    } else {
                        Vec::new()
                    };
                    if let Some(topics) = &topics {
                        records.extend(consumer.metadata_changed(topics));
                    }
                    if !records.is_empty() {
                        let id = entry.group.id().to_string();
                        let logged: Vec<GroupRecord> = records
                            .into_iter()
                            .flat_map(|r| GroupRecord::consumer(&id, r))
                            .collect();
                        match shard.write(&logged, now_ms).await {
                            Ok(()) => {
                                tracing::info!(group = %id, group_epoch = consumer.group_epoch(),
                                    "a consumer group's members or topics changed");
                                entry.consumer = Some(consumer);
                            }
                            Err((_, message)) => tracing::warn!(%message,
                                "a consumer group's timer could not write its change; retrying"),
                        }
                    }
                    continue;
                }
                if entry.group.next_deadline().is_none_or(|d| d > now_ms) {
                    continue;
                }
                let mut group = entry.group.clone();
                let effects = group.tick(now_ms, &self.config.classic);
                if let Err((_, message)) = self.settle(&shard, &mut entry, group, effects).await {
                    tracing::warn!(%message, "a group's timer could not write its change; retrying");
                }
            }
        }
    }

    /// Deletes committed offsets of groups without members that are older than
    /// `offsets_retention_ms`, and groups left with nothing.
    async fn expire_offsets(&self) {
        let shards: Vec<Arc<Shard>> = lock(&self.shards).values().cloned().collect();
        let retention = self.config.offsets_retention_ms;
        for shard in shards {
            if !*shard.loaded.borrow() || shard.closed.load(Ordering::Acquire) {
                continue;
            }
            let now_ms = self.now_ms();
            for slot in shard.slots() {
                let mut entry = slot.lock().await;
                if entry.group.state() != ClassicState::Empty {
                    continue;
                }
                let since = entry.group.state_timestamp_ms();
                let group_id = entry.group.id().to_string();
                let expired: Vec<(String, i32)> = entry
                    .offsets
                    .iter()
                    .filter(|(_, v)| {
                        v.commit_timestamp_ms.max(since).saturating_add(retention) <= now_ms
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                let gone = expired.len() == entry.offsets.len();
                let mut records: Vec<GroupRecord> = expired
                    .iter()
                    .map(|(topic, partition)| GroupRecord::Offset {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        value: None,
                    })
                    .collect();
                if gone && since.saturating_add(retention) <= now_ms {
                    records.push(GroupRecord::Classic {
                        group: group_id.clone(),
                        value: None,
                    });
                } else if records.is_empty() {
                    continue;
                }
                if shard.write(&records, now_ms).await.is_err() {
                    continue;
                }
                for key in &expired {
                    entry.offsets.remove(key);
                }
                tracing::info!(group = %group_id, offsets = expired.len(), "expired committed offsets");
                if entry.offsets.is_empty() && since.saturating_add(retention) <= now_ms {
                    let effects = entry.group.shut(now_ms);
                    shard.dispatch(effects.replies);
                    lock(&shard.groups).remove(&group_id);
                }
            }
        }
    }

    /// A group on the consumer protocol that lost its last member and is joined with the
    /// classic protocol becomes a classic group (its consumer records are deleted first); one
    /// with members is refused.
    async fn leave_consumer_protocol(
        &self,
        shard: &Shard,
        entry: &mut GroupEntry,
    ) -> Result<(), GroupRefusal> {
        let Some(consumer) = &entry.consumer else {
            return Ok(());
        };
        let group_id = entry.group.id().to_string();
        let mut consumer = consumer.clone();
        let records = consumer.delete().map_err(|_| {
            (
                ResponseError::InconsistentGroupProtocol,
                format!(
                    "group {group_id:?} uses the consumer protocol (group.protocol=consumer) and \
                     has members; join it with the same protocol"
                ),
            )
        })?;
        let logged: Vec<GroupRecord> = records
            .into_iter()
            .flat_map(|r| GroupRecord::consumer(&group_id, r))
            .collect();
        shard.write(&logged, self.now_ms()).await?;
        entry.consumer = None;
        Ok(())
    }

    /// ConsumerGroupHeartbeat (KIP-848): joins, heartbeats, reconciles or leaves a group on
    /// the consumer protocol, whose assignment the coordinator computes.
    pub(crate) async fn consumer_heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        request: HeartbeatRequest,
    ) -> Result<ConsumerHeartbeatResult, GroupRefusal> {
        let shard = self.shard(group_id)?;
        let now_ms = self.now_ms();
        let joining = request.member_epoch == super::consumer::JOIN_GROUP_MEMBER_EPOCH;
        let slot = match shard.group(group_id) {
            Some(slot) => slot,
            None if joining => shard.group_or_create(group_id, now_ms),
            None => {
                return Err((
                    ResponseError::UnknownMemberId,
                    format!("group {group_id:?} does not exist; join it with member epoch 0"),
                ));
            }
        };
        let mut entry = slot.lock().await;
        let mut records = Vec::new();
        let mut consumer = match &entry.consumer {
            Some(consumer) => consumer.clone(),
            None => {
                if entry.group.state() != ClassicState::Empty {
                    return Err((
                        ResponseError::GroupIdNotFound,
                        format!(
                            "group {group_id:?} is a classic group with members; it cannot be \
                             joined with group.protocol=consumer until they leave"
                        ),
                    ));
                }
                if entry.group.generation() > 0 {
                    // The classic group's record goes: the group is a consumer group now.
                    records.push(GroupRecord::Classic {
                        group: group_id.to_string(),
                        value: None,
                    });
                }
                ConsumerGroup::new(group_id.to_string(), self.config.consumer)
            }
        };
        let topics = topics_view(&self.controller.metadata());
        let outcome = consumer
            .heartbeat(request, &topics, now_ms)
            .map_err(|e| consumer_refusal(&e))?;
        records.extend(
            outcome
                .records
                .into_iter()
                .flat_map(|r| GroupRecord::consumer(group_id, r)),
        );
        if !records.is_empty() {
            shard.write(&records, now_ms).await?;
        }
        if entry.consumer.is_none() {
            entry.group = ClassicGroup::new(group_id, now_ms);
        }
        entry.consumer = Some(consumer);
        Ok(ConsumerHeartbeatResult {
            member_id: outcome.member_id,
            member_epoch: outcome.member_epoch,
            heartbeat_interval_ms: outcome.heartbeat_interval_ms,
            assignment: outcome.assignment,
        })
    }

    /// A consumer-protocol group as DescribeGroups shows it: members with their subscription
    /// and assignment in the classic consumer protocol's encoding, so tools read both kinds
    /// of group alike.
    fn describe_consumer_group(&self, consumer: &ConsumerGroup) -> GroupDescription {
        let description = consumer.describe();
        let metadata = self.controller.metadata();
        let name_of = |id: &uuid::Uuid| metadata.topic(*id).map(|t| t.name.clone());
        GroupDescription {
            group_id: description.group_id.clone(),
            state: consumer_state_name(description.state),
            protocol_type: "consumer".to_string(),
            protocol: description.assignor_name.to_string(),
            members: description
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    metadata: encode_subscription(&m.subscribed_topic_names),
                    assignment: encode_assignment(&m.assignment, &name_of),
                })
                .collect(),
        }
    }

    /// The coordinator of `key` (a group id): the leader of its partition of
    /// `__consumer_offsets`, which is created on first use.
    pub async fn find_coordinator(&self, key: &str) -> Result<Coordinator, GroupRefusal> {
        let mut metadata = self.controller.metadata();
        if metadata.topic_by_name(OFFSETS_TOPIC).is_none() {
            self.create_offsets_topic().await?;
            metadata = self.controller.metadata();
        }
        let unavailable = |why: String| (ResponseError::CoordinatorNotAvailable, why);
        let topic = metadata
            .topic_by_name(OFFSETS_TOPIC)
            .ok_or_else(|| unavailable(format!("{OFFSETS_TOPIC} is being created; retry")))?;
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let p = partition_for(key, count);
        let leader = usize::try_from(p)
            .ok()
            .and_then(|p| topic.partitions.get(p))
            .and_then(|p| p.leader)
            .ok_or_else(|| {
                unavailable(format!(
                    "{OFFSETS_TOPIC}-{p} has no leader (brokers are down); retry"
                ))
            })?;
        let broker = metadata
            .broker(leader)
            .ok_or_else(|| unavailable(format!("broker {leader} is not registered; retry")))?;
        Ok(Coordinator {
            node_id: leader,
            endpoints: broker.endpoints.clone(),
        })
    }

    /// Creates `__consumer_offsets` (compacted, replicated to min(factor, live brokers)) and
    /// waits until this node's metadata has it.
    async fn create_offsets_topic(&self) -> Result<(), GroupRefusal> {
        let _one = self.creating.lock().await;
        if self
            .controller
            .metadata()
            .topic_by_name(OFFSETS_TOPIC)
            .is_some()
        {
            return Ok(());
        }
        let live = self
            .controller
            .metadata()
            .brokers()
            .filter(|b| !b.fenced)
            .count();
        let factor = self
            .config
            .offsets_topic_replication_factor
            .min(i32::try_from(live).unwrap_or(i32::MAX))
            .max(1);
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                self.config.offsets_topic_segment_bytes.to_string(),
            ),
            (
                "segment.index.bytes".to_string(),
                super::OFFSETS_TOPIC_INDEX_BYTES.to_string(),
            ),
        ]);
        let created = self
            .controller
            .create_topic(
                OFFSETS_TOPIC,
                self.config.offsets_topic_num_partitions,
                factor,
                configs,
            )
            .await;
        match created {
            Ok(_) => tracing::info!(
                partitions = self.config.offsets_topic_num_partitions,
                replication_factor = factor,
                "created {OFFSETS_TOPIC}"
            ),
            Err(e) if e.kind() == ErrorKind::TopicExists => {}
            Err(e) => {
                return Err((
                    ResponseError::CoordinatorNotAvailable,
                    format!("could not create {OFFSETS_TOPIC}: {e}; retry"),
                ));
            }
        }
        self.controller
            .wait_for_metadata(
                |m| m.topic_by_name(OFFSETS_TOPIC).is_some(),
                TOPIC_CREATION_WAIT,
            )
            .await;
        Ok(())
    }
}

/// The topics the members of a consumer group subscribe to, from their subscriptions
/// (Kafka's ConsumerProtocolSubscription: a version, then the topics).
fn subscribed_topics(group: &ClassicGroup) -> Vec<String> {
    use bytes::Buf;
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let protocol = group.protocol().unwrap_or_default();
    let mut topics = Vec::new();
    for member in group.members().values() {
        let mut metadata = member.metadata(protocol);
        if metadata.remaining() < 2 {
            continue;
        }
        let version = metadata.get_i16();
        if let Ok(subscription) = ConsumerProtocolSubscription::decode(&mut metadata, version) {
            topics.extend(subscription.topics.into_iter().map(|t| t.to_string()));
        }
    }
    topics.sort();
    topics.dedup();
    topics
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: it is dropped here, not held by a caller.
    let _stopped = stop.wait_for(|&stopped| stopped).await.is_ok();
}

/// What replaying a partition found for one group.
#[derive(Debug, Default)]
struct LoadedGroup {
    classic: Option<super::classic::ClassicValue>,
    /// The consumer-protocol records, in log order, to replay.
    consumer: Option<Vec<ConsumerGroupRecord>>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// The group's own record was a tombstone (deleted) and nothing came after.
    deleted: bool,
}

/// Reads the whole partition and applies its records in order: the records read, and the
/// groups found.
fn replay(
    partition: &Partition,
) -> Result<(usize, HashMap<String, LoadedGroup>), crate::storage::Error> {
    let log = partition.log();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let mut groups: HashMap<String, LoadedGroup> = HashMap::new();
    let mut count = 0;
    while offset < end {
        let bytes = log.read(offset, LOAD_READ_BYTES)?;
        if bytes.is_empty() {
            break;
        }
        for item in batch::batches(&bytes) {
            let Ok((position, header)) = item else {
                tracing::error!(tp = %partition.topic_partition(), offset,
                    "a damaged batch in __consumer_offsets; the groups after it are not loaded");
                return Ok((count, groups));
            };
            offset = header.last_offset() + 1;
            if header.is_control() {
                continue;
            }
            let records = match batch::decode(&bytes[position..position + header.size()]) {
                Ok(records) => records,
                Err(e) => {
                    tracing::error!(tp = %partition.topic_partition(), error = %e,
                        "an undecodable batch in __consumer_offsets; skipped");
                    continue;
                }
            };
            for record in records {
                count += 1;
                match GroupRecord::decode(record.key.as_deref(), record.value.as_deref()) {
                    Ok(record) => apply(&mut groups, record),
                    Err(e) => tracing::warn!(tp = %partition.topic_partition(),
                        offset = record.offset, error = %e,
                        "an unreadable record in __consumer_offsets; skipped"),
                }
            }
        }
    }
    groups.retain(|_, g| !(g.deleted && g.offsets.is_empty()));
    Ok((count, groups))
}

fn apply(groups: &mut HashMap<String, LoadedGroup>, record: GroupRecord) {
    match record {
        GroupRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            let loaded = groups.entry(group).or_default();
            match value {
                Some(value) => {
                    loaded.deleted = false;
                    loaded.offsets.insert((topic, partition), value);
                }
                None => {
                    loaded.offsets.remove(&(topic, partition));
                }
            }
        }
        GroupRecord::Classic { group, value } => {
            let loaded = groups.entry(group).or_default();
            loaded.deleted = value.is_none() && loaded.consumer.is_none();
            loaded.classic = value;
        }
        GroupRecord::Consumer { group, record } => {
            let loaded = groups.entry(group).or_default();
            let deleted = record == ConsumerGroupRecord::GroupDeleted;
            loaded.consumer.get_or_insert_with(Vec::new).push(record);
            if deleted {
                // The group's records before its deletion are not needed to rebuild it.
                loaded.consumer = None;
                loaded.deleted = loaded.classic.is_none();
            } else {
                loaded.deleted = false;
            }
        }
        GroupRecord::ConsumerTombstone { .. } => {}
    }
}

/// Every topic of `metadata` by name, as the consumer groups see them.
fn topics_view(metadata: &crate::controller::ClusterMetadata) -> TopicsView {
    let mut topics = TopicsView::new();
    for topic in metadata.topics() {
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        topics.insert(topic.name.clone(), topic.id, count);
    }
    topics
}

/// Topics as Kafka's ConsumerProtocolSubscription (version 0, after its i16 version).
fn encode_subscription(topics: &std::collections::BTreeSet<String>) -> Bytes {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().cloned().map(StrBytes::from_string).collect());
    let mut buf = bytes::BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, 0);
    match subscription.encode(&mut buf, 0) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}

/// An assignment as Kafka's ConsumerProtocolAssignment (version 0), topics by name.
fn encode_assignment(
    assignment: &Assignment,
    name_of: &dyn Fn(&uuid::Uuid) -> Option<String>,
) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let partitions = assignment
        .iter()
        .filter_map(|(id, partitions)| {
            let name = name_of(id)?;
            Some(
                TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions.iter().copied().collect()),
            )
        })
        .collect();
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(partitions);
    let mut buf = bytes::BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, 0);
    match assignment.encode(&mut buf, 0) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}
