//! Records for tests that build metadata by hand: a registered broker, a topic with its
//! partitions. Shared by the controller's, the subscriptions' and the partitions' tests.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::records::{
    BrokerId, BrokerRecord, Endpoints, MetadataRecord, PartitionRecord, TopicRecord,
};

/// The incarnation the records here give broker `broker_id`.
pub(crate) fn incarnation(broker_id: BrokerId) -> Uuid {
    Uuid::from_u128(1000 + broker_id as u128)
}

/// Broker `broker_id` registering (fenced), on made-up addresses.
pub(crate) fn register(broker_id: BrokerId, rack: Option<&str>) -> MetadataRecord {
    MetadataRecord::RegisterBroker(BrokerRecord {
        broker_id,
        incarnation: incarnation(broker_id),
        endpoints: Endpoints {
            kafka: format!("b{broker_id}:9092"),
            grpc: format!("b{broker_id}:9093"),
            internal: format!("b{broker_id}:9094"),
        },
        rack: rack.map(str::to_string),
    })
}

/// Topic `name` created with `configs`; partition `i` gets `assignments[i]` as replicas and
/// ISR, led by the first, at epochs 0.
pub(crate) fn topic(
    name: &str,
    topic_id: Uuid,
    configs: BTreeMap<String, String>,
    assignments: &[&[BrokerId]],
) -> Vec<MetadataRecord> {
    let mut records = vec![MetadataRecord::Topic(TopicRecord {
        name: name.to_string(),
        topic_id,
        configs,
    })];
    for (index, replicas) in assignments.iter().enumerate() {
        records.push(MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition: i32::try_from(index).expect("a test's partition count fits"),
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader: replicas.first().copied(),
            leader_epoch: 0,
            partition_epoch: 0,
        }));
    }
    records
}
