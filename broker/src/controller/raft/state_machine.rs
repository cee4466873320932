//! The controller's state machine (openraft's `RaftStateMachine`): [`ClusterMetadata`] plus
//! the Raft state it has applied up to, and its snapshots.
//!
//! The last snapshot is kept in `<dir>/raft-snapshot`; at open the state machine starts from
//! it, and openraft re-applies the committed entries after it.
//!
//! Every change of the metadata is published as a new [`MetadataImage`] for subscribers.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageIOError, StoredMembership,
};
use prost::Message;
use tokio::sync::watch;
use weir_proto::internal::v1 as pb;

use super::encoding::{snapshot_meta_from_pb, snapshot_meta_to_pb};
use super::{MetadataBatch, MetadataResponse, StorageError, TypeConfig};
use crate::controller::codec;
use crate::controller::metadata::ClusterMetadata;
use crate::controller::metrics;
use crate::controller::subscription::MetadataImage;
use crate::storage::{read_checkpoint, write_checkpoint};

const SNAPSHOT_FILE: &str = "raft-snapshot";
const SNAPSHOT_VERSION: u16 = 1;

/// The controller's state machine. Cloning shares it.
#[derive(Debug, Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
    /// The metadata as last applied, for subscribers.
    image: Arc<watch::Sender<MetadataImage>>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Shared with the published image; a change makes a new one.
    metadata: Arc<ClusterMetadata>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    snapshot: Option<StoredSnapshot>,
    /// Snapshots built by this process, to name them apart.
    snapshots_built: u64,
}

#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    data: Vec<u8>,
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from its last snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            metadata: Arc::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        let stored = read_checkpoint(&dir.join(SNAPSHOT_FILE), SNAPSHOT_VERSION)
            .map_err(std::io::Error::other)?;
        if let Some(data) = stored {
            let (meta, metadata) = decode_snapshot(&data)?;
            inner.install(StoredSnapshot { meta, data }, metadata);
        }
        let (image, _) = watch::channel(inner.image());
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(inner)),
            image: Arc::new(image),
        })
    }

    /// Follows the applied metadata: every change is a new image.
    pub fn watch(&self) -> watch::Receiver<MetadataImage> {
        self.image.subscribe()
    }

    /// Publishes the state as applied now, if the metadata changed (or always, with `force`).
    fn publish(&self, inner: &Inner, force: bool) {
        self.image.send_if_modified(|image| {
            let changed = force || !Arc::ptr_eq(&image.metadata, &inner.metadata);
            if changed {
                *image = inner.image();
            } else {
                // Raft's own entries move the index without a change worth waking anyone.
                image.applied_index = inner.last_applied.map(|id| id.index);
            }
            changed
        });
        metrics::record_applied(inner.last_applied.map(|id| id.index), &inner.metadata);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current metadata.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&self.lock().metadata)
    }

    /// Calls `f` with the current metadata, without copying it.
    pub fn with_metadata<R>(&self, f: impl FnOnce(&ClusterMetadata) -> R) -> R {
        f(&self.lock().metadata)
    }

    /// The index of the last log entry applied, if any.
    pub fn applied_index(&self) -> Option<u64> {
        self.lock().last_applied.map(|id| id.index)
    }
}

/// A snapshot's data: what it covers and the metadata, as one protobuf message.
fn encode_snapshot(meta: &SnapshotMeta<u64, BasicNode>, metadata: &ClusterMetadata) -> Vec<u8> {
    pb::RaftSnapshot {
        meta: Some(snapshot_meta_to_pb(meta)),
        metadata: Some(codec::snapshot_to_pb(metadata)),
    }
    .encode_to_vec()
}

/// A snapshot's data decoded: what it covers and the metadata.
fn decode_snapshot(
    data: &[u8],
) -> std::io::Result<(SnapshotMeta<u64, BasicNode>, ClusterMetadata)> {
    let snapshot = pb::RaftSnapshot::decode(data).map_err(std::io::Error::other)?;
    let meta = snapshot_meta_from_pb(snapshot.meta.unwrap_or_default());
    let metadata = codec::snapshot_from_pb(snapshot.metadata.unwrap_or_default())
        .map_err(std::io::Error::other)?;
    Ok((meta, metadata))
}

impl Inner {
    fn image(&self) -> MetadataImage {
        MetadataImage {
            applied_index: self.last_applied.map(|id| id.index),
            metadata: Arc::clone(&self.metadata),
        }
    }

    /// Replaces the state with `snapshot`'s (whose metadata is `metadata`), and keeps it as
    /// the current snapshot.
    fn install(&mut self, snapshot: StoredSnapshot, metadata: ClusterMetadata) {
        self.metadata = Arc::new(metadata);
        self.last_applied = snapshot.meta.last_log_id;
        self.membership = snapshot.meta.last_membership.clone();
        self.snapshot = Some(snapshot);
    }

    fn persist(&self, snapshot: &StoredSnapshot) -> std::io::Result<()> {
        write_checkpoint(
            &self.dir.join(SNAPSHOT_FILE),
            SNAPSHOT_VERSION,
            &snapshot.data,
        )
        .map_err(std::io::Error::other)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut inner = self.lock();
        inner.snapshots_built += 1;
        let id = match inner.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id.term, log_id.index, inner.snapshots_built
            ),
            None => format!("empty-{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: id,
        };
        let data = encode_snapshot(&meta, &inner.metadata);
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        inner
            .persist(&stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        inner.snapshot = Some(stored);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetadataResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut responses = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => MetadataResponse::default(),
                EntryPayload::Normal(MetadataBatch(records)) => {
                    // One copy per batch: subscribers keep the old metadata, and a refused
                    // batch leaves it as it was.
                    let mut next = ClusterMetadata::clone(&inner.metadata);
                    let refused = records.iter().try_for_each(|r| next.apply(r)).err();
                    if refused.is_none() {
                        inner.metadata = Arc::new(next);
                        metrics::records_applied(records.len());
                    }
                    MetadataResponse { refused }
                }
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                    MetadataResponse::default()
                }
            };
            responses.push(response);
        }
        self.publish(&inner, false);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let write_error =
            |e: std::io::Error| StorageIOError::write_snapshot(Some(meta.signature()), &e);
        let data = snapshot.into_inner();
        let (_, metadata) = decode_snapshot(&data).map_err(write_error)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let mut inner = self.lock();
        inner.persist(&stored).map_err(write_error)?;
        inner.install(stored, metadata);
        self.publish(&inner, true);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::controller::records::{MetadataRecord, TopicRecord};

    fn log_id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn topic(name: &str, n: u128) -> MetadataRecord {
        MetadataRecord::Topic(TopicRecord {
            name: name.into(),
            topic_id: uuid::Uuid::from_u128(n),
            configs: BTreeMap::new(),
        })
    }

    #[tokio::test]
    async fn applies_batches_whole_and_restarts_from_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let membership = Membership::new(vec![[1u64].into()], ());
        let entries = vec![
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Membership(membership),
            },
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Normal(MetadataBatch(vec![topic("a", 1)])),
            },
            // Refused as a whole: the second record repeats the first's name.
            Entry {
                log_id: log_id(3),
                payload: EntryPayload::Normal(MetadataBatch(vec![topic("b", 2), topic("b", 3)])),
            },
        ];
        let responses = sm.apply(entries).await.unwrap();
        assert_eq!(responses[1], MetadataResponse::default());
        assert!(responses[2].refused.is_some());
        let metadata = sm.metadata();
        assert!(metadata.topic_by_name("a").is_some());
        assert!(
            metadata.topic_by_name("b").is_none(),
            "a refused batch changes nothing"
        );

        let snapshot = sm.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(3)));
        drop(sm);

        let mut reopened = StateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.metadata(), metadata);
        let (applied, membership) = reopened.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(3)));
        assert_eq!(membership.log_id(), &Some(log_id(1)));

        // Another node installs the snapshot it receives.
        let other_dir = tempfile::tempdir().unwrap();
        let mut other = StateMachine::open(other_dir.path()).unwrap();
        other
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(other.metadata(), metadata);
    }
}
