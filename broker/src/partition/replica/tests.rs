//! A leader and a follower replica of one partition, each on its own broker's manager, with
//! the fetches between them made by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::super::tests::records;
use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::{LogConfig, StorageConfig};
use crate::controller::testing;
use crate::controller::{ClusterMetadata, MetadataDelta, MetadataRecord, PartitionChangeRecord};
use crate::partition::{ProducePolicy, ReplicaManager};
use crate::storage::{LogManager, TopicPartition};

const TOPIC_ID: u128 = 7;
const LAG_MAX_MS: i64 = 10_000;

/// One broker: its clock and its replica manager.
struct Broker {
    clock: Arc<ManualClock>,
    manager: ReplicaManager,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn new(id: BrokerId) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            data_dir: dir.path().to_path_buf(),
            log: LogConfig {
                segment_bytes: 64 * 1024,
                segment_index_bytes: 4096,
                ..LogConfig::default()
            },
            ..StorageConfig::default()
        };
        let clock = Arc::new(ManualClock::new(1_000_000));
        let shared: Arc<dyn Clock> = Arc::clone(&clock) as Arc<dyn Clock>;
        let logs = Arc::new(LogManager::open(config, shared).unwrap());
        let policy = ProducePolicy {
            min_insync_replicas: 2,
            ..ProducePolicy::default()
        };
        Broker {
            clock,
            manager: ReplicaManager::new(id, logs, policy),
            _dir: dir,
        }
    }

    fn partition(&self) -> Arc<Partition> {
        self.manager
            .partition(&TopicPartition::new("orders", 0))
            .expect("a replica")
    }
}

/// Metadata both brokers apply in turn.
struct Cluster {
    metadata: Arc<ClusterMetadata>,
    applied: u64,
}

impl Cluster {
    fn new(brokers: &[&Broker]) -> Cluster {
        let mut cluster = Cluster {
            metadata: Arc::new(ClusterMetadata::default()),
            applied: 0,
        };
        let mut records: Vec<MetadataRecord> = [1, 2, 3]
            .iter()
            .map(|&id| testing::register(id, None))
            .collect();
        for id in [1, 2, 3] {
            records.push(MetadataRecord::UnfenceBroker {
                broker_id: id,
                incarnation: testing::incarnation(id),
            });
        }
        records.extend(testing::topic(
            "orders",
            Uuid::from_u128(TOPIC_ID),
            BTreeMap::new(),
            &[&[1, 2, 3]],
        ));
        cluster.change(brokers, records);
        cluster
    }

    fn change(&mut self, brokers: &[&Broker], records: Vec<MetadataRecord>) {
        let mut next = ClusterMetadata::clone(&self.metadata);
        next.apply_batch(&records).unwrap();
        let next = Arc::new(next);
        self.applied += 1;
        let delta = MetadataDelta {
            before: Arc::clone(&self.metadata),
            after: Arc::clone(&next),
            applied_index: Some(self.applied),
        };
        for broker in brokers {
            broker.manager.apply(&delta);
        }
        self.metadata = next;
    }

    fn set_isr(&mut self, brokers: &[&Broker], isr: &[BrokerId]) {
        self.partition_change(brokers, None, Some(isr.to_vec()));
    }

    fn partition_change(
        &mut self,
        brokers: &[&Broker],
        leader: Option<Option<BrokerId>>,
        isr: Option<Vec<BrokerId>>,
    ) {
        let record = MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid::from_u128(TOPIC_ID),
            partition: 0,
            leader,
            isr,
            replicas: None,
        });
        self.change(brokers, vec![record]);
    }
}

/// Follower `follower` fetches from `leader` once and appends what it got, as the fetcher
/// does.
fn replicate(leader: &Partition, follower: &Partition, follower_id: BrokerId) -> usize {
    let epoch = follower.leader_epoch();
    let read = leader
        .read_for_follower(follower_id, epoch, follower.log().log_end_offset(), 1 << 20)
        .unwrap();
    follower
        .append_as_follower(
            epoch,
            &read.records,
            read.high_watermark,
            read.log_start_offset,
        )
        .unwrap();
    read.records.len()
}

#[test]
fn the_high_watermark_is_the_slowest_isr_members_log_end() {
    let (one, two, three) = (Broker::new(1), Broker::new(2), Broker::new(3));
    let all = [&one, &two, &three];
    let _cluster = Cluster::new(&all);
    let leader = one.partition();
    leader.produce(records(3), 2_000).unwrap();
    // No follower has fetched at this epoch: nothing is committed yet.
    assert_eq!(leader.high_watermark(), 0);

    replicate(&leader, &two.partition(), 2);
    assert_eq!(leader.high_watermark(), 0, "broker 3 has not fetched");
    replicate(&leader, &three.partition(), 3);
    assert_eq!(
        leader.high_watermark(),
        0,
        "fetching at 0 tells the leader nothing yet"
    );
    // The next fetches start at 3: both hold the records.
    replicate(&leader, &two.partition(), 2);
    replicate(&leader, &three.partition(), 3);
    assert_eq!(leader.high_watermark(), 3);

    // The followers learn it with their next fetch, and their logs match the leader's.
    replicate(&leader, &two.partition(), 2);
    assert_eq!(two.partition().high_watermark(), 3);
    assert_eq!(
        two.partition().log().read(0, 1 << 20).unwrap(),
        leader.log().read(0, 1 << 20).unwrap()
    );
}

#[test]
fn a_lagging_follower_leaves_the_isr_and_a_caught_up_one_comes_back() {
    let (one, two, three) = (Broker::new(1), Broker::new(2), Broker::new(3));
    let all = [&one, &two, &three];
    let mut cluster = Cluster::new(&all);
    let leader = one.partition();
    let live = |_| true;
    leader.produce(records(2), 2_000).unwrap();
    replicate(&leader, &two.partition(), 2);
    replicate(&leader, &two.partition(), 2);
    assert_eq!(
        leader.propose_isr_change(one.clock.now_ms(), LAG_MAX_MS, live),
        None
    );

    // Broker 3 never fetches; after the lag limit it is proposed out.
    one.clock.advance_ms(LAG_MAX_MS + 1);
    replicate(&leader, &two.partition(), 2);
    let change = leader
        .propose_isr_change(one.clock.now_ms(), LAG_MAX_MS, live)
        .expect("a shrink");
    assert_eq!(change.isr, vec![1, 2]);
    assert_eq!(change.shrunk, vec![3]);
    // Only one proposal at a time; until it commits, broker 3 still holds the watermark.
    assert_eq!(
        leader.propose_isr_change(one.clock.now_ms(), LAG_MAX_MS, live),
        None
    );
    assert_eq!(leader.high_watermark(), 0);
    cluster.set_isr(&all, &change.isr);
    assert_eq!(leader.high_watermark(), 2);

    // Broker 3 catches up and is proposed back in; a fenced one would not be.
    replicate(&leader, &three.partition(), 3);
    replicate(&leader, &three.partition(), 3);
    assert_eq!(
        leader.propose_isr_change(one.clock.now_ms(), LAG_MAX_MS, |id| id != 3),
        None
    );
    let change = leader
        .propose_isr_change(one.clock.now_ms(), LAG_MAX_MS, live)
        .expect("an expansion");
    assert_eq!(change.isr, vec![1, 2, 3]);
    assert_eq!(change.expanded, vec![3]);
    // Refused: the next check may propose it again.
    leader.isr_change_failed(&change);
    assert!(
        leader
            .propose_isr_change(one.clock.now_ms(), LAG_MAX_MS, live)
            .is_some()
    );
}

#[tokio::test]
async fn acks_all_waits_for_the_isr_and_fails_as_kafka_says() {
    let (one, two, three) = (Broker::new(1), Broker::new(2), Broker::new(3));
    let all = [&one, &two, &three];
    let mut cluster = Cluster::new(&all);
    let leader = one.partition();
    let epoch = leader.leader_epoch();
    let info = leader.produce(records(1), 2_000).unwrap();
    let waiting = {
        let leader = Arc::clone(&leader);
        tokio::spawn(async move {
            leader
                .wait_for_replication(info.last_offset, epoch, Duration::from_secs(30))
                .await
        })
    };
    for _ in 0..2 {
        replicate(&leader, &two.partition(), 2);
        replicate(&leader, &three.partition(), 3);
    }
    waiting.await.unwrap().unwrap();

    // A timeout.
    let info = leader.produce(records(1), 2_000).unwrap();
    let timed_out = leader
        .wait_for_replication(info.last_offset, epoch, Duration::from_millis(20))
        .await;
    assert!(matches!(
        timed_out,
        Err(PartitionError::ReplicationTimedOut { .. })
    ));

    // The ISR shrinks below min.insync.replicas=2: refused before the append, and an
    // append already waiting gets NOT_ENOUGH_REPLICAS_AFTER_APPEND.
    cluster.set_isr(&all, &[1, 2]);
    replicate(&leader, &two.partition(), 2);
    replicate(&leader, &two.partition(), 2);
    let waited = leader
        .wait_for_replication(info.last_offset, epoch, Duration::from_secs(5))
        .await;
    assert!(waited.is_ok(), "{waited:?}");
    let info = leader.produce(records(1), 2_000).unwrap();
    cluster.set_isr(&all, &[1]);
    assert!(matches!(
        leader.check_enough_replicas(),
        Err(PartitionError::NotEnoughReplicas { isr: 1, min: 2, .. })
    ));
    let waited = leader
        .wait_for_replication(info.last_offset, epoch, Duration::from_secs(5))
        .await;
    assert!(
        matches!(
            waited,
            Err(PartitionError::NotEnoughReplicasAfterAppend { .. })
        ),
        "{waited:?}"
    );

    // Leadership moves while a produce waits: NOT_LEADER_OR_FOLLOWER at once.
    cluster.set_isr(&all, &[1, 2]);
    let info = leader.produce(records(1), 2_000).unwrap();
    let epoch = leader.leader_epoch();
    let waiting = {
        let leader = Arc::clone(&leader);
        tokio::spawn(async move {
            leader
                .wait_for_replication(info.last_offset, epoch, Duration::from_secs(30))
                .await
        })
    };
    cluster.partition_change(&all, Some(Some(2)), None);
    let waited = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered at once")
        .unwrap();
    assert!(
        matches!(waited, Err(PartitionError::NotLeader { .. })),
        "{waited:?}"
    );
}

#[test]
fn a_deposed_leader_truncates_what_was_never_replicated_and_forgets_its_producers() {
    let (one, two, three) = (Broker::new(1), Broker::new(2), Broker::new(3));
    let all = [&one, &two, &three];
    let mut cluster = Cluster::new(&all);
    let old_leader = one.partition();
    old_leader.produce(records(2), 2_000).unwrap();
    for _ in 0..2 {
        replicate(&old_leader, &two.partition(), 2);
        replicate(&old_leader, &three.partition(), 3);
    }
    assert_eq!(old_leader.high_watermark(), 2);
    // Two more records that no follower copies before broker 2 takes over.
    old_leader.produce(records(2), 2_000).unwrap();
    cluster.partition_change(&all, Some(Some(2)), Some(vec![2, 3]));
    let new_leader = two.partition();
    assert_eq!(new_leader.role(), Role::Leader);
    new_leader.produce(records(1), 2_000).unwrap();

    // Broker 1 asks where its last epoch ends on the new leader and truncates there.
    let follower = one.partition();
    let epoch = follower.leader_epoch();
    let last = follower.log().leader_epochs().last().unwrap().epoch;
    let answer = new_leader.end_offset_for_epoch(Some(epoch), last).unwrap();
    assert_eq!(answer.end_offset, 2);
    // A truncation at a stale epoch is refused.
    assert!(
        follower
            .truncate_as_follower(epoch - 1, answer.end_offset, 1)
            .is_err()
    );
    assert_eq!(
        follower
            .truncate_as_follower(epoch, answer.end_offset, i64::MAX)
            .unwrap(),
        2
    );
    replicate(&new_leader, &follower, 1);
    assert_eq!(
        follower.log().read(0, 1 << 20).unwrap(),
        new_leader.log().read(0, 1 << 20).unwrap()
    );
    assert_eq!(follower.log().log_end_offset(), 3);
    // A follower refuses the leader's batches at the wrong epoch.
    assert!(follower.append_as_follower(epoch + 1, &[], 0, 0).is_err());
}
