//! The APIs and versions this broker serves: exactly what is advertised in ApiVersions.

use kafka_protocol::messages::ApiKey;

/// Each served API with the versions implemented, lowest first.
pub(super) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    // 13 and later name topics by id only.
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::Metadata, 0, 12),
    // v0 (old-style offset lists) is not decodable by kafka-protocol; v9 adds -5 (tiered).
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    // 6 adds two-phase commit of transactions (KIP-939), which Weir does not serve.
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    // v0 and v1 are not decodable by kafka-protocol; v10 names topics by id only.
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    // 6 answers an unknown group with GROUP_ID_NOT_FOUND rather than as Dead.
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
];

/// The versions of `key` this broker serves, if it serves it.
pub(super) fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}
