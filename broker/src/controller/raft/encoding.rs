//! openraft's types to and from the protobuf messages of `metadata.proto`.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    StoredMembership, Vote,
};
use prost::Message;
use weir_proto::internal::v1 as pb;

use super::{MetadataBatch, TypeConfig};
use crate::controller::codec::{self, CodecError};

pub(super) fn log_id_to_pb(log_id: &LogId<u64>) -> pb::RaftLogId {
    pb::RaftLogId {
        term: log_id.leader_id.term,
        node_id: log_id.leader_id.node_id,
        index: log_id.index,
    }
}

pub(super) fn log_id_from_pb(log_id: &pb::RaftLogId) -> LogId<u64> {
    LogId::new(
        CommittedLeaderId::new(log_id.term, log_id.node_id),
        log_id.index,
    )
}

pub(super) fn vote_to_pb(vote: &Vote<u64>) -> pb::RaftVote {
    pb::RaftVote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

pub(super) fn vote_from_pb(vote: &pb::RaftVote) -> Vote<u64> {
    if vote.committed {
        Vote::new_committed(vote.term, vote.node_id)
    } else {
        Vote::new(vote.term, vote.node_id)
    }
}

pub(super) fn membership_to_pb(membership: &Membership<u64, BasicNode>) -> pb::RaftMembership {
    pb::RaftMembership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|ids| pb::RaftNodeSet {
                ids: ids.iter().copied().collect(),
            })
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect(),
    }
}

pub(super) fn membership_from_pb(membership: &pb::RaftMembership) -> Membership<u64, BasicNode> {
    let configs: Vec<BTreeSet<u64>> = membership
        .configs
        .iter()
        .map(|set| set.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<u64, BasicNode> = membership
        .nodes
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    Membership::new(configs, nodes)
}

/// What a snapshot covers, as its protobuf message.
pub(super) fn snapshot_meta_to_pb(meta: &SnapshotMeta<u64, BasicNode>) -> pb::RaftSnapshotMeta {
    pb::RaftSnapshotMeta {
        snapshot_id: meta.snapshot_id.clone(),
        last_log_id: meta.last_log_id.as_ref().map(log_id_to_pb),
        membership_log_id: meta.last_membership.log_id().as_ref().map(log_id_to_pb),
        membership: Some(membership_to_pb(meta.last_membership.membership())),
    }
}

/// What a snapshot covers, from its protobuf message.
pub(super) fn snapshot_meta_from_pb(meta: pb::RaftSnapshotMeta) -> SnapshotMeta<u64, BasicNode> {
    let membership = meta
        .membership
        .as_ref()
        .map(membership_from_pb)
        .unwrap_or_default();
    SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_from_pb),
        last_membership: StoredMembership::new(
            meta.membership_log_id.as_ref().map(log_id_from_pb),
            membership,
        ),
        snapshot_id: meta.snapshot_id,
    }
}

/// A log entry as its protobuf message.
pub(super) fn entry_to_pb(entry: &Entry<TypeConfig>) -> pb::RaftEntry {
    use pb::raft_entry::Payload;
    let payload = match &entry.payload {
        EntryPayload::Blank => Payload::Blank(pb::RaftBlank {}),
        EntryPayload::Normal(MetadataBatch(records)) => Payload::Normal(pb::MetadataRecordBatch {
            records: records.iter().map(codec::record_to_pb).collect(),
        }),
        EntryPayload::Membership(membership) => Payload::Membership(membership_to_pb(membership)),
    };
    pb::RaftEntry {
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    }
}

/// A log entry from its protobuf message.
pub(super) fn entry_from_pb(entry: pb::RaftEntry) -> Result<Entry<TypeConfig>, CodecError> {
    use pb::raft_entry::Payload;
    let log_id = entry.log_id.ok_or(CodecError::Missing("log id"))?;
    let payload = match entry.payload.ok_or(CodecError::Missing("entry payload"))? {
        Payload::Blank(_) => EntryPayload::Blank,
        Payload::Normal(batch) => {
            let records = batch
                .records
                .into_iter()
                .map(codec::record_from_pb)
                .collect::<Result<_, _>>()?;
            EntryPayload::Normal(MetadataBatch(records))
        }
        Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(&m)),
    };
    Ok(Entry {
        log_id: log_id_from_pb(&log_id),
        payload,
    })
}

/// Encodes a log entry.
pub(super) fn encode_entry(entry: &Entry<TypeConfig>) -> Vec<u8> {
    entry_to_pb(entry).encode_to_vec()
}

/// Decodes a log entry.
pub(super) fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, CodecError> {
    entry_from_pb(pb::RaftEntry::decode(bytes)?)
}
