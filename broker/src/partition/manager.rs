//! [`ReplicaManager`]: the partitions this broker holds, kept as the committed metadata says.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::producer_log::{ProducerStateManager, SnapshotWhen};
use super::{Partition, ProducePolicy, Role, high_watermarks};
use crate::controller::{
    BrokerId, ClusterMetadata, MetadataDelta, MetadataImage, MetadataSubscription,
    Partition as PartitionState, ReplicaRole,
};
use crate::storage::{self, LogManager, TopicPartition, sync_directory};

/// The file in a log directory that names the topic id the log belongs to.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// How the partitions keep their idempotent producers' state. The defaults are Kafka's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStateConfig {
    /// A producer whose last batch is this old is forgotten. Kafka: `producer.id.expiration.ms`.
    pub expiration_ms: i64,
    /// How often expired producers are looked for. Kafka:
    /// `producer.id.expiration.check.interval.ms`.
    pub expiration_check_interval_ms: u64,
    /// How often each partition checks whether its log rolled a segment since its last
    /// producer state snapshot, and writes one if so.
    pub snapshot_check_interval_ms: u64,
}

impl Default for ProducerStateConfig {
    fn default() -> Self {
        Self {
            expiration_ms: 86_400_000,
            expiration_check_interval_ms: 600_000,
            snapshot_check_interval_ms: 10_000,
        }
    }
}

/// What replication needs to do after a metadata change, in the order the changes applied.
#[derive(Debug, Clone)]
pub enum ReplicaEvent {
    /// Fetch `partition` from broker `leader`, reached at `address`, as a follower at
    /// `leader_epoch` (truncating first where its log diverged).
    Follow {
        /// The partition, already in its follower state.
        partition: Arc<Partition>,
        /// The leader.
        leader: BrokerId,
        /// The leader's internal API address.
        address: String,
        /// The leader epoch to follow at.
        leader_epoch: i32,
    },
    /// Stop fetching partition `tp`: this broker leads it, it is offline, or it is gone.
    Stop {
        /// The partition.
        tp: TopicPartition,
    },
}

/// Every partition replica this broker holds.
#[derive(Debug)]
pub struct ReplicaManager {
    broker: BrokerId,
    logs: Arc<LogManager>,
    /// The broker's produce limits, which topic configs override.
    produce_defaults: ProducePolicy,
    producer_state: ProducerStateConfig,
    high_watermark_checkpoint_interval_ms: u64,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// The last metadata applied; held while applying, so orphan removal never races a
    /// partition being created.
    applied: Mutex<MetadataImage>,
    /// The high watermarks last checkpointed, for partitions not opened yet.
    checkpointed: Mutex<HashMap<TopicPartition, i64>>,
    /// Where replication hears of followers to start and stop, once it listens.
    events: Mutex<Option<mpsc::UnboundedSender<ReplicaEvent>>>,
}

impl ReplicaManager {
    /// A manager for broker `broker`'s partitions, kept in `logs`, with the broker's produce
    /// limits.
    pub fn new(
        broker: BrokerId,
        logs: Arc<LogManager>,
        produce_defaults: ProducePolicy,
    ) -> ReplicaManager {
        let checkpointed = high_watermarks::read(&logs.config().data_dir);
        ReplicaManager {
            broker,
            logs,
            produce_defaults,
            producer_state: ProducerStateConfig::default(),
            high_watermark_checkpoint_interval_ms: 5000,
            partitions: RwLock::new(HashMap::new()),
            applied: Mutex::new(MetadataImage::default()),
            checkpointed: Mutex::new(checkpointed),
            events: Mutex::new(None),
        }
    }

    /// This manager, checkpointing high watermarks every `interval_ms` (Kafka:
    /// `replica.high.watermark.checkpoint.interval.ms`).
    pub fn with_high_watermark_checkpoint_interval(mut self, interval_ms: u64) -> ReplicaManager {
        self.high_watermark_checkpoint_interval_ms = interval_ms;
        self
    }

    /// The events that tell replication which partitions to fetch from which leader, from
    /// the next metadata change on. Call it before [`run`](Self::run) so none is missed; a
    /// second call replaces the first receiver.
    pub fn replica_events(&self) -> mpsc::UnboundedReceiver<ReplicaEvent> {
        let (sender, receiver) = mpsc::unbounded_channel();
        *self.events.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender);
        receiver
    }

    fn emit(&self, event: ReplicaEvent) {
        if let Some(events) = &*self.events.lock().unwrap_or_else(|p| p.into_inner()) {
            // A closed receiver means replication stopped: nothing to tell.
            let _stopped = events.send(event);
        }
    }

    /// The time, by the broker's clock (ms).
    pub fn now_ms(&self) -> i64 {
        self.logs.clock().now_ms()
    }

    /// This broker's id.
    pub fn broker_id(&self) -> BrokerId {
        self.broker
    }

    /// How long a producer's state is kept after its last batch (ms).
    pub fn producer_expiration_ms(&self) -> i64 {
        self.producer_state.expiration_ms
    }

    /// The metadata last applied to the partitions.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        Arc::clone(
            &self
                .applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .metadata,
        )
    }

    /// This manager, keeping idempotent producers' state as `config` says.
    pub fn with_producer_state(mut self, config: ProducerStateConfig) -> ReplicaManager {
        self.producer_state = config;
        self
    }

    /// The partition, if this broker holds a replica of it.
    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
            .cloned()
    }

    /// The logs of this broker.
    pub(super) fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// The configs of topic `name` in the metadata last applied (none if it is unknown).
    pub(super) fn topic_configs(&self, name: &str) -> BTreeMap<String, String> {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied
            .metadata
            .topic_by_name(name)
            .map(|topic| topic.configs.clone())
            .unwrap_or_default()
    }

    /// Every partition this broker holds, in topic-partition order.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = partitions.values().cloned().collect();
        all.sort_by(|a, b| a.topic_partition().cmp(b.topic_partition()));
        all
    }

    /// Follows committed metadata until the subscription ends: each change creates, updates
    /// or removes partitions. A change that fails for one partition (a full disk, say) is
    /// logged and the others go on; the next change of that partition tries again. Meanwhile
    /// expires idle producers and snapshots producer state on the configured intervals.
    pub async fn run(self: Arc<Self>, mut subscription: MetadataSubscription) {
        let every = |ms: u64| {
            let mut interval = tokio::time::interval(Duration::from_millis(ms.max(1)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        };
        let mut expirations = every(self.producer_state.expiration_check_interval_ms);
        let mut snapshots = every(self.producer_state.snapshot_check_interval_ms);
        let mut checkpoints = every(self.high_watermark_checkpoint_interval_ms);
        loop {
            let manager = Arc::clone(&self);
            // Opening and deleting logs, and snapshots, touch the disk.
            let work = tokio::select! {
                delta = subscription.next() => match delta {
                    Some(delta) => tokio::task::spawn_blocking(move || manager.apply(&delta)),
                    None => return,
                },
                _ = expirations.tick() => tokio::task::spawn_blocking(move || {
                    manager.remove_expired_producers();
                }),
                _ = snapshots.tick() => tokio::task::spawn_blocking(move || {
                    manager.snapshot_producers(SnapshotWhen::AfterRoll);
                }),
                _ = checkpoints.tick() => tokio::task::spawn_blocking(move || {
                    if let Err(e) = manager.checkpoint_high_watermarks() {
                        tracing::error!(error = %e, "writing the high watermark checkpoint failed");
                    }
                }),
            };
            if let Err(e) = work.await {
                tracing::error!(error = %e, "partition maintenance panicked");
            }
        }
    }

    /// Forgets, in every partition, producers idle for longer than the expiration time;
    /// returns how many.
    pub fn remove_expired_producers(&self) -> usize {
        let now_ms = self.logs.clock().now_ms();
        let expiration_ms = self.producer_state.expiration_ms;
        let mut removed = 0;
        for partition in self.partitions() {
            let expired = partition.remove_expired_producers(now_ms, expiration_ms);
            if expired > 0 {
                let tp = partition.topic_partition();
                tracing::info!(%tp, expired, "forgot idle producers");
            }
            removed += expired;
        }
        removed
    }

    /// Writes producer state snapshots of every partition: at shutdown, of each whose log
    /// moved since its last one, so the next start reads no log; otherwise of each whose log
    /// rolled a segment since. Returns how many it wrote; a failure is logged.
    pub(crate) fn snapshot_producers(&self, when: SnapshotWhen) -> usize {
        let mut written = 0;
        for partition in self.partitions() {
            match partition.snapshot_producers(when) {
                Ok(Some(_)) => written += 1,
                Ok(None) => {}
                Err(e) => {
                    let tp = partition.topic_partition();
                    tracing::warn!(%tp, error = %e, "writing a producer state snapshot failed");
                }
            }
        }
        written
    }

    /// Records every partition's high watermark in the checkpoint file (keeping the entries
    /// of logs not opened yet), so a restart shows consumers no more than was replicated.
    pub fn checkpoint_high_watermarks(&self) -> Result<(), storage::Error> {
        let mut checkpointed = self.checkpointed.lock().unwrap_or_else(|p| p.into_inner());
        for partition in self.partitions() {
            checkpointed.insert(
                partition.topic_partition().clone(),
                partition.high_watermark(),
            );
        }
        checkpointed.retain(|tp, _| self.logs.get(tp).is_some());
        let entries: Vec<_> = checkpointed
            .iter()
            .map(|(tp, &hw)| (tp.clone(), hw))
            .collect();
        high_watermarks::write(&self.logs.config().data_dir, entries)
    }

    /// Snapshots every partition's producer state at its log end, so that the next start
    /// reads it back without reading the logs, and checkpoints the high watermarks; call it
    /// before the logs are closed. Returns how many snapshots it wrote.
    pub fn shutdown(&self) -> usize {
        if let Err(e) = self.checkpoint_high_watermarks() {
            tracing::error!(error = %e, "writing the high watermark checkpoint failed");
        }
        self.snapshot_producers(SnapshotWhen::Moved)
    }

    /// Applies one change of the committed metadata to this broker's partitions.
    pub fn apply(&self, delta: &MetadataDelta) {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        for change in delta.replica_changes(self.broker) {
            let tp = TopicPartition::new(change.topic.clone(), change.partition);
            let result = match &change.role {
                ReplicaRole::Leader(state) | ReplicaRole::Follower(state) => {
                    let configs = delta
                        .after
                        .topic(change.topic_id)
                        .map(|t| t.configs.clone())
                        .unwrap_or_default();
                    self.ensure(&tp, change.topic_id, &configs, state)
                        .map(|partition| {
                            partition.update(state);
                            self.emit(follow_event(partition, &delta.after));
                        })
                }
                ReplicaRole::Removed { topic_deleted } => {
                    tracing::info!(%tp, topic_deleted, "removing a replica");
                    self.emit(ReplicaEvent::Stop { tp: tp.clone() });
                    self.remove(&tp)
                }
            };
            if let Err(e) = result {
                tracing::error!(%tp, error = %e, "could not apply a metadata change to a partition");
            }
        }
        if delta.brokers_changed() {
            // A leader that registered again may have a new address.
            for partition in self.partitions() {
                if matches!(partition.role(), Role::Follower { leader: Some(_) }) {
                    self.emit(follow_event(partition, &delta.after));
                }
            }
        }
        for (topic_id, name) in delta.changed_topic_configs() {
            let Some(topic) = delta.after.topic(topic_id) else {
                continue;
            };
            self.reconfigure(&name, &topic.configs);
        }
        *applied = MetadataImage {
            applied_index: delta.applied_index,
            metadata: Arc::clone(&delta.after),
        };
    }

    /// The partition `tp` of topic `topic_id`, created (or opened) in `state` if this broker
    /// does not hold it yet.
    fn ensure(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        configs: &BTreeMap<String, String>,
        state: &PartitionState,
    ) -> Result<Arc<Partition>, storage::Error> {
        let policy = self.produce_defaults.with_topic_configs(configs);
        if let Some(partition) = self.partition(tp) {
            if partition.topic_id() == topic_id {
                partition.set_policy(policy);
                return Ok(partition);
            }
            // The topic was deleted and created again while this broker was not looking.
            self.remove(tp)?;
        }
        let config = self.logs.config().log.with_topic_configs(configs);
        let mut log = self.logs.get_or_create(tp, config.clone())?;
        match read_topic_id(log.dir()) {
            Some(id) if id == topic_id => {}
            Some(stale) => {
                tracing::warn!(%tp, %stale, "removing the log of an earlier topic of this name");
                self.logs.delete(tp)?;
                log = self.logs.get_or_create(tp, config.clone())?;
                write_topic_id(log.dir(), topic_id)?;
            }
            None => write_topic_id(log.dir(), topic_id)?,
        }
        // A log opened at start took the broker's defaults: the topic's own apply from its
        // next segment and retention run.
        log.set_config(config)?;
        let now_ms = self.logs.clock().now_ms();
        let (producers, loaded) =
            ProducerStateManager::load(&log, now_ms, self.producer_state.expiration_ms)?;
        tracing::info!(
            %tp,
            from_snapshot = loaded.snapshot_offset.is_some(),
            snapshot_offset = loaded.snapshot_offset.unwrap_or(-1),
            batches_scanned = loaded.batches_scanned,
            producers = loaded.producers,
            expired = loaded.expired,
            "producer state loaded"
        );
        let checkpointed = self
            .checkpointed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
            .copied();
        let partition = Arc::new(Partition::new(
            tp.clone(),
            topic_id,
            self.broker,
            log,
            state,
            policy,
            producers,
            checkpointed,
            Arc::clone(self.logs.clock()),
        ));
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tp.clone(), Arc::clone(&partition));
        Ok(partition)
    }

    /// Gives every partition of topic `name` this broker holds the topic's new `configs`:
    /// its produce checks and its log's segment, retention and flush settings.
    fn reconfigure(&self, name: &str, configs: &BTreeMap<String, String>) {
        let policy = self.produce_defaults.with_topic_configs(configs);
        let log_config = self.logs.config().log.with_topic_configs(configs);
        for partition in self.partitions() {
            if partition.topic_partition().topic != name {
                continue;
            }
            partition.set_policy(policy.clone());
            if let Err(e) = partition.log().set_config(log_config.clone()) {
                let tp = partition.topic_partition();
                tracing::error!(%tp, error = %e, "could not apply the topic's new configs");
            }
        }
        tracing::info!(topic = name, "applied the topic's new configs");
    }

    /// Stops serving `tp` and deletes its log.
    fn remove(&self, tp: &TopicPartition) -> Result<(), storage::Error> {
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tp);
        self.logs.delete(tp)?;
        Ok(())
    }

    /// Deletes the logs on disk that the applied metadata gives this broker no replica of
    /// (topics deleted while it was down), once this manager has applied the metadata log up
    /// to `caught_up_to`: on older metadata a live topic could look deleted. Returns how many
    /// it removed, or `None` if it has not applied that far yet.
    pub fn remove_orphans(&self, caught_up_to: u64) -> Option<usize> {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        if applied
            .applied_index
            .is_none_or(|index| index < caught_up_to)
        {
            return None;
        }
        let metadata: &ClusterMetadata = &applied.metadata;
        let mut removed = 0;
        for (tp, log) in self.logs.logs() {
            let held = metadata.topic_by_name(&tp.topic).is_some_and(|topic| {
                let belongs = read_topic_id(log.dir()).is_none_or(|id| id == topic.id);
                let replica = usize::try_from(tp.partition)
                    .ok()
                    .and_then(|i| topic.partitions.get(i))
                    .is_some_and(|p| p.replicas.contains(&self.broker));
                belongs && replica
            });
            if held {
                continue;
            }
            tracing::info!(%tp, "removing the log of a partition this broker no longer holds");
            match self.remove(&tp) {
                Ok(()) => removed += 1,
                Err(e) => tracing::error!(%tp, error = %e, "could not remove an orphan log"),
            }
        }
        Some(removed)
    }
}

/// What replication does for `partition` in its new state: follow its leader, or stop.
fn follow_event(partition: Arc<Partition>, metadata: &ClusterMetadata) -> ReplicaEvent {
    let tp = partition.topic_partition().clone();
    let Role::Follower {
        leader: Some(leader),
    } = partition.role()
    else {
        return ReplicaEvent::Stop { tp };
    };
    let Some(broker) = metadata.broker(leader) else {
        tracing::warn!(%tp, leader, "the leader is not a registered broker; not fetching");
        return ReplicaEvent::Stop { tp };
    };
    ReplicaEvent::Follow {
        leader,
        address: broker.endpoints.internal.clone(),
        leader_epoch: partition.leader_epoch(),
        partition,
    }
}

fn read_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("topic_id: "))
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
}

/// Writes the topic id file (Kafka's `partition.metadata` format), atomically.
fn write_topic_id(dir: &Path, topic_id: Uuid) -> Result<(), storage::Error> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let temporary = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    let text = format!("version: 0\ntopic_id: {topic_id}\n");
    let write = || -> std::io::Result<()> {
        std::fs::write(&temporary, text)?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, &path)
    };
    write().map_err(|e| storage::Error::io("write", &path, e))?;
    sync_directory(dir)
}
