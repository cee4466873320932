//! Subscriptions to committed metadata: broker components wait on a [`MetadataSubscription`]
//! and get each change as a [`MetadataDelta`], from which they read what concerns them (for
//! example [`MetadataDelta::replica_changes`]: the partitions this node now leads, follows or
//! no longer holds).
//!
//! A delta is the difference between two images of the metadata, the last one the subscriber
//! saw and the newest applied, so a slow subscriber never falls behind a queue: changes that
//! came while it was busy arrive as one delta.

use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use super::metadata::{ClusterMetadata, Partition};
use super::records::BrokerId;

/// The metadata as of one point of the metadata log.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// The last log entry applied to make it, if any.
    pub applied_index: Option<u64>,
    /// The metadata.
    pub metadata: Arc<ClusterMetadata>,
}

/// A stream of committed metadata changes. The first [`next`](Self::next) returns everything
/// there is (the change from empty metadata), so a subscriber builds its state and follows
/// changes with the same code.
#[derive(Debug)]
pub struct MetadataSubscription {
    receiver: watch::Receiver<MetadataImage>,
    seen: MetadataImage,
}

impl MetadataSubscription {
    pub(crate) fn new(mut receiver: watch::Receiver<MetadataImage>) -> Self {
        receiver.mark_changed();
        Self {
            receiver,
            seen: MetadataImage::default(),
        }
    }

    /// The image the last delta led to.
    pub fn current(&self) -> &MetadataImage {
        &self.seen
    }

    /// The newest image applied, whether or not a delta has reached it yet.
    pub fn latest(&self) -> MetadataImage {
        self.receiver.borrow().clone()
    }

    /// Waits for the next change of the metadata. `None` once the node's controller stopped.
    pub async fn next(&mut self) -> Option<MetadataDelta> {
        loop {
            self.receiver.changed().await.ok()?;
            let image = self.receiver.borrow_and_update().clone();
            let same = Arc::ptr_eq(&image.metadata, &self.seen.metadata)
                || *image.metadata == *self.seen.metadata;
            if same {
                // Log entries that change no metadata (Raft's own) move only the index.
                self.seen.applied_index = image.applied_index;
                continue;
            }
            let before = std::mem::replace(&mut self.seen, image.clone());
            return Some(MetadataDelta {
                before: before.metadata,
                after: image.metadata,
                applied_index: image.applied_index,
            });
        }
    }
}

/// A change of the committed metadata, from `before` to `after`.
#[derive(Debug, Clone)]
pub struct MetadataDelta {
    /// The metadata before the change.
    pub before: Arc<ClusterMetadata>,
    /// The metadata after it.
    pub after: Arc<ClusterMetadata>,
    /// The last log entry applied to make `after`.
    pub applied_index: Option<u64>,
}

/// What a broker should now do with one partition replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaChange {
    /// The partition's topic.
    pub topic_id: Uuid,
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
    /// The broker's new role for it.
    pub role: ReplicaRole,
}

/// A broker's role for one partition replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaRole {
    /// The broker leads the partition, in this state.
    Leader(Partition),
    /// The broker follows the partition's leader (or waits while it is offline), in this
    /// state.
    Follower(Partition),
    /// The broker no longer holds a replica: the topic was deleted (its data can go), or the
    /// broker left the replica set.
    Removed {
        /// Whether the whole topic was deleted.
        topic_deleted: bool,
    },
}

impl MetadataDelta {
    /// The replicas of `broker` whose role or state changed: new partitions, a new leader or
    /// leader epoch, a new ISR or replica set (any partition epoch change), and removals.
    pub fn replica_changes(&self, broker: BrokerId) -> Vec<ReplicaChange> {
        let mut changes = Vec::new();
        for topic in self.after.topics() {
            let previous = self.before.topic(topic.id);
            for (index, partition) in topic.partitions.iter().enumerate() {
                let was = previous.and_then(|t| t.partitions.get(index));
                let holds = partition.replicas.contains(&broker);
                let held = was.is_some_and(|p| p.replicas.contains(&broker));
                let role = if holds {
                    if was == Some(partition) {
                        continue;
                    }
                    if partition.leader == Some(broker) {
                        ReplicaRole::Leader(partition.clone())
                    } else {
                        ReplicaRole::Follower(partition.clone())
                    }
                } else if held {
                    ReplicaRole::Removed {
                        topic_deleted: false,
                    }
                } else {
                    continue;
                };
                changes.push(ReplicaChange {
                    topic_id: topic.id,
                    topic: topic.name.clone(),
                    partition: i32::try_from(index).expect("partition count is an i32"),
                    role,
                });
            }
        }
        for topic in self.before.topics() {
            if self.after.topic(topic.id).is_some() {
                continue;
            }
            for (index, partition) in topic.partitions.iter().enumerate() {
                if partition.replicas.contains(&broker) {
                    changes.push(ReplicaChange {
                        topic_id: topic.id,
                        topic: topic.name.clone(),
                        partition: i32::try_from(index).expect("partition count is an i32"),
                        role: ReplicaRole::Removed {
                            topic_deleted: true,
                        },
                    });
                }
            }
        }
        changes
    }

    /// The topics (id and name) the change deleted.
    pub fn deleted_topics(&self) -> Vec<(Uuid, String)> {
        self.before
            .topics()
            .filter(|t| self.after.topic(t.id).is_none())
            .map(|t| (t.id, t.name.clone()))
            .collect()
    }

    /// The topics (id and name) that were there before and after the change, with other
    /// configs after it.
    pub fn changed_topic_configs(&self) -> Vec<(Uuid, String)> {
        self.after
            .topics()
            .filter(|t| {
                self.before
                    .topic(t.id)
                    .is_some_and(|before| before.configs != t.configs)
            })
            .map(|t| (t.id, t.name.clone()))
            .collect()
    }

    /// Whether any broker registered, or was fenced or unfenced.
    pub fn brokers_changed(&self) -> bool {
        !self.before.brokers().eq(self.after.brokers())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::controller::records::{MetadataRecord, PartitionChangeRecord};
    use crate::controller::testing::{self, register};

    fn broker(id: BrokerId) -> MetadataRecord {
        register(id, None)
    }

    fn topic(id: u128, replicas: &[&[BrokerId]]) -> Vec<MetadataRecord> {
        testing::topic(
            &format!("t{id}"),
            Uuid::from_u128(id),
            BTreeMap::new(),
            replicas,
        )
    }

    fn apply(metadata: &ClusterMetadata, records: Vec<MetadataRecord>) -> ClusterMetadata {
        let mut next = metadata.clone();
        next.apply_batch(&records).unwrap();
        next
    }

    fn image(metadata: &ClusterMetadata, index: u64) -> MetadataImage {
        MetadataImage {
            applied_index: Some(index),
            metadata: Arc::new(metadata.clone()),
        }
    }

    #[tokio::test]
    async fn a_subscriber_sees_everything_first_then_each_change_as_roles() {
        let mut metadata = ClusterMetadata::default();
        for id in 1..=3 {
            metadata = apply(&metadata, vec![broker(id)]);
        }
        metadata = apply(&metadata, topic(1, &[&[1, 2], &[2, 3]]));
        let (sender, receiver) = watch::channel(image(&metadata, 5));
        let mut subscription = MetadataSubscription::new(receiver);

        // First: everything, from empty metadata.
        let delta = subscription.next().await.unwrap();
        assert!(delta.brokers_changed());
        let changes = delta.replica_changes(2);
        assert_eq!(changes.len(), 2);
        assert!(matches!(&changes[0].role, ReplicaRole::Follower(p) if p.leader == Some(1)));
        assert!(matches!(&changes[1].role, ReplicaRole::Leader(p) if p.leader_epoch == 0));
        assert_eq!(subscription.current().applied_index, Some(5));

        // An entry that changes nothing is not a delta; a leader change is one.
        sender.send_replace(image(&metadata, 6));
        metadata = apply(
            &metadata,
            vec![MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: Uuid::from_u128(1),
                partition: 0,
                leader: Some(Some(2)),
                isr: None,
                replicas: None,
            })],
        );
        sender.send_replace(image(&metadata, 7));
        let delta = subscription.next().await.unwrap();
        assert_eq!(delta.applied_index, Some(7));
        assert!(!delta.brokers_changed());
        let changes = delta.replica_changes(2);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].partition, 0);
        assert!(matches!(&changes[0].role, ReplicaRole::Leader(p) if p.leader_epoch == 1));
        assert_eq!(delta.replica_changes(3), []);
        let changes = delta.replica_changes(1);
        assert!(matches!(&changes[0].role, ReplicaRole::Follower(p) if p.leader == Some(2)));

        // Two changes while the subscriber was away arrive as one; deletion removes replicas.
        metadata = apply(&metadata, topic(2, &[&[3]]));
        sender.send_replace(image(&metadata, 8));
        metadata = apply(
            &metadata,
            vec![MetadataRecord::RemoveTopic {
                topic_id: Uuid::from_u128(1),
            }],
        );
        sender.send_replace(image(&metadata, 9));
        let delta = subscription.next().await.unwrap();
        assert_eq!(delta.deleted_topics(), [(Uuid::from_u128(1), "t1".into())]);
        let changes = delta.replica_changes(3);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].topic, "t2");
        assert!(matches!(&changes[0].role, ReplicaRole::Leader(_)));
        assert_eq!(
            changes[1].role,
            ReplicaRole::Removed {
                topic_deleted: true
            }
        );

        drop(sender);
        assert!(subscription.next().await.is_none());
    }
}
