//! Looking up a partition's offsets on its leader.

use weir_proto::v1 as pb;

use crate::cluster::Cluster;
use crate::error::{BrokerError, Error, Result, check};

/// Which offset of a partition to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset: the first record still held.
    Earliest,
    /// The high watermark: the offset the next record consumers can see will get.
    Latest,
    /// The first record whose timestamp is at least this (ms since the Unix epoch); the high
    /// watermark when there is none.
    Timestamp(i64),
}

/// The offset `spec` names in a partition, asked of its leader (retrying while it moves).
pub(crate) async fn list_offset(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    spec: OffsetSpec,
) -> Result<i64> {
    let (spec_code, timestamp_ms) = match spec {
        OffsetSpec::Earliest => (pb::OffsetSpec::Earliest, 0),
        OffsetSpec::Latest => (pb::OffsetSpec::Latest, 0),
        OffsetSpec::Timestamp(ms) => (pb::OffsetSpec::Timestamp, ms),
    };
    let query = pb::OffsetQuery {
        topic: topic.to_string(),
        partition,
        spec: spec_code as i32,
        timestamp_ms,
    };
    let found = cluster
        .retry("a partition's offsets", || async {
            let (_, _, mut broker) = cluster.leader_client(topic, partition).await?;
            let result: Result<i64> = async {
                let mut answer = broker
                    .list_offsets(pb::ListOffsetsRequest {
                        partitions: vec![query.clone()],
                    })
                    .await?
                    .into_inner();
                let answer = answer.partitions.pop().ok_or_else(|| {
                    Error::Broker(BrokerError {
                        code: tonic::Code::Internal,
                        kafka_code: None,
                        message: format!(
                            "the broker answered ListOffsets without partition {partition} of \
                             topic {topic:?}"
                        ),
                    })
                })?;
                check(answer.error)?;
                Ok(answer.offset)
            }
            .await;
            if let Err(e) = &result
                && e.is_stale_metadata()
            {
                cluster.invalidate(topic);
            }
            result
        })
        .await?;
    if found >= 0 {
        return Ok(found);
    }
    // No record at or after the time: the consumer starts at the end.
    Box::pin(list_offset(cluster, topic, partition, OffsetSpec::Latest)).await
}
