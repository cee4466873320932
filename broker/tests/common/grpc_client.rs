//! The scenario's [`Client`] over the public gRPC API, with the tonic-generated clients:
//! produce pipelined on a ProduceStream (RecordBatch v2 bytes compressed by
//! `weir_proto::batch`, or structured records the broker encodes), consume by long-poll Fetch
//! (batches decoded here, or records decoded by the broker).

use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tonic::transport::Channel;
use weir_proto::batch::{self, Compression, EncodeOptions};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::broker_client::BrokerClient;

use super::roundtrip::{Client, Consumed, TestRecord};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(60);
/// Records per produced batch.
const BATCH_RECORDS: usize = 2_000;
/// The largest message the clients take.
const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How records travel over gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// RecordBatch v2 bytes both ways.
    Batches,
    /// Structured records both ways: the broker encodes and decodes the batches.
    Records,
}

/// The gRPC clients of one broker.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    pub broker: BrokerClient<Channel>,
    pub admin: AdminClient<Channel>,
    pub form: Form,
}

impl GrpcClient {
    /// Connects to the gRPC listener at `address`.
    pub async fn connect(address: std::net::SocketAddr, form: Form) -> GrpcClient {
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .expect("connected to the gRPC listener");
        GrpcClient {
            broker: BrokerClient::new(channel.clone()).max_decoding_message_size(MESSAGE_BYTES_MAX),
            admin: AdminClient::new(channel).max_decoding_message_size(MESSAGE_BYTES_MAX),
            form,
        }
    }

    /// Waits until every partition of `topic` answers ListOffsets (its leader serves it).
    pub async fn wait_until_served(&self, topic: &str, partitions: i32) {
        let deadline = Instant::now() + WAIT;
        let queries: Vec<pb::OffsetQuery> = (0..partitions)
            .map(|partition| pb::OffsetQuery {
                topic: topic.to_string(),
                partition,
                ..pb::OffsetQuery::default()
            })
            .collect();
        loop {
            let answer = self
                .broker
                .clone()
                .list_offsets(pb::ListOffsetsRequest {
                    partitions: queries.clone(),
                })
                .await
                .expect("ListOffsets answered")
                .into_inner();
            if answer.partitions.iter().all(|p| p.error.is_none()) {
                return;
            }
            assert!(Instant::now() < deadline, "{topic} is served in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The gRPC codec of a batch codec.
pub fn codec(compression: Compression) -> pb::Compression {
    match compression {
        Compression::None => pb::Compression::None,
        Compression::Gzip => pb::Compression::Gzip,
        Compression::Snappy => pb::Compression::Snappy,
        Compression::Lz4 => pb::Compression::Lz4,
        Compression::Zstd => pb::Compression::Zstd,
    }
}

/// A test record as the API's record.
pub fn to_pb(record: &TestRecord) -> pb::Record {
    pb::Record {
        key: Some(Bytes::from(record.key.clone())),
        value: Some(Bytes::from(record.value.clone())),
        headers: record
            .headers
            .iter()
            .map(|(key, value)| pb::RecordHeader {
                key: key.clone(),
                value: Some(Bytes::from(value.clone())),
            })
            .collect(),
        timestamp_ms: Some(record.timestamp_ms),
        offset: 0,
    }
}

/// A record of a batch as a test record of `partition`.
fn from_batch(partition: i32, record: batch::Record) -> Consumed {
    Consumed {
        offset: record.offset,
        record: TestRecord {
            partition,
            key: record.key.unwrap_or_default().to_vec(),
            value: record.value.unwrap_or_default().to_vec(),
            headers: record
                .headers
                .into_iter()
                .map(|(key, value)| (key, value.unwrap_or_default().to_vec()))
                .collect(),
            timestamp_ms: record.timestamp,
        },
    }
}

/// A record of the API as a test record of `partition`.
fn from_pb(partition: i32, record: pb::Record) -> Consumed {
    Consumed {
        offset: record.offset,
        record: TestRecord {
            partition,
            key: record.key.unwrap_or_default().to_vec(),
            value: record.value.unwrap_or_default().to_vec(),
            headers: record
                .headers
                .into_iter()
                .map(|h| (h.key, h.value.unwrap_or_default().to_vec()))
                .collect(),
            timestamp_ms: record.timestamp_ms.unwrap_or(-1),
        },
    }
}

impl GrpcClient {
    /// One produce request: the records of one partition as a batch or as records.
    fn partition_records(
        &self,
        topic: &str,
        partition: i32,
        records: &[&TestRecord],
        codec: Compression,
    ) -> pb::PartitionRecords {
        let data = match self.form {
            Form::Batches => {
                let records: Vec<batch::Record> = records
                    .iter()
                    .zip(0..)
                    .map(|(r, offset)| batch::Record {
                        key: Some(Bytes::from(r.key.clone())),
                        value: Some(Bytes::from(r.value.clone())),
                        headers: r
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone()))))
                            .collect(),
                        timestamp: r.timestamp_ms,
                        offset,
                    })
                    .collect();
                let options = EncodeOptions {
                    compression: codec,
                    ..EncodeOptions::default()
                };
                pb::partition_records::Data::Batches(batch::encode(&records, &options).unwrap())
            }
            Form::Records => pb::partition_records::Data::Records(pb::RecordList {
                records: records.iter().map(|r| to_pb(r)).collect(),
            }),
        };
        pb::PartitionRecords {
            topic: topic.to_string(),
            partition,
            data: Some(data),
            compression: self::codec(codec) as i32,
        }
    }
}

impl Client for GrpcClient {
    async fn create_topic(&self, name: &str, partitions: i32) {
        let response = self
            .admin
            .clone()
            .create_topics(pb::CreateTopicsRequest {
                topics: vec![pb::NewTopic {
                    name: name.to_string(),
                    partitions: Some(partitions),
                    replication_factor: Some(1),
                    ..pb::NewTopic::default()
                }],
                ..pb::CreateTopicsRequest::default()
            })
            .await
            .expect("CreateTopics answered")
            .into_inner();
        assert_eq!(response.topics[0].error, None, "{name} is created");
        self.wait_until_served(name, partitions).await;
    }

    async fn produce(&self, topic: &str, records: &[TestRecord], codec: Compression) {
        // Each request holds one batch of each partition's next records, in order.
        let partitions = records.iter().map(|r| r.partition).max().unwrap_or(0) + 1;
        let by_partition: Vec<Vec<&TestRecord>> = (0..partitions)
            .map(|p| records.iter().filter(|r| r.partition == p).collect())
            .collect();
        let longest = by_partition.iter().map(Vec::len).max().unwrap_or(0);
        let mut requests = Vec::new();
        for (id, start) in (0..longest).step_by(BATCH_RECORDS).enumerate() {
            let partitions = by_partition
                .iter()
                .zip(0..)
                .filter(|(records, _)| start < records.len())
                .map(|(records, partition)| {
                    let end = (start + BATCH_RECORDS).min(records.len());
                    self.partition_records(topic, partition, &records[start..end], codec)
                })
                .collect();
            requests.push(pb::ProduceStreamRequest {
                id: id as u64,
                request: Some(pb::ProduceRequest {
                    partitions,
                    acks: pb::Acks::All as i32,
                    timeout_ms: 30_000,
                }),
            });
        }
        let sent = requests.len();
        let mut responses = self
            .broker
            .clone()
            .produce_stream(tokio_stream::iter(requests))
            .await
            .expect("the produce stream opens")
            .into_inner();
        let mut answered = 0;
        while let Some(response) = tokio::time::timeout(WAIT, responses.message())
            .await
            .expect("answered in time")
            .expect("the produce stream stays up")
        {
            assert_eq!(response.id, answered as u64, "answers in request order");
            for partition in response.response.unwrap().partitions {
                assert_eq!(
                    partition.error, None,
                    "{codec}: {topic}-{}",
                    partition.partition
                );
                assert!(partition.base_offset >= 0);
            }
            answered += 1;
        }
        assert_eq!(answered, sent, "every request answered");
    }

    async fn consume(
        &self,
        topic: &str,
        partitions: Range<i32>,
        from: i64,
        count: usize,
    ) -> Vec<Consumed> {
        let format = match self.form {
            Form::Batches => pb::RecordFormat::Batches,
            Form::Records => pb::RecordFormat::Records,
        };
        let mut offsets: Vec<(i32, i64)> = partitions.map(|p| (p, from)).collect();
        let mut consumed = Vec::with_capacity(count);
        let deadline = Instant::now() + WAIT;
        while consumed.len() < count {
            assert!(
                Instant::now() < deadline,
                "{count} records consumed in time"
            );
            let request = pb::FetchRequest {
                partitions: offsets
                    .iter()
                    .map(|&(partition, offset)| pb::FetchPartition {
                        topic: topic.to_string(),
                        partition,
                        offset,
                        ..pb::FetchPartition::default()
                    })
                    .collect(),
                max_wait_ms: 500,
                min_bytes: 1,
                max_bytes: 4 * 1024 * 1024,
                format: format as i32,
            };
            let response = self
                .broker
                .clone()
                .fetch(request)
                .await
                .expect("Fetch answered")
                .into_inner();
            for (data, (_, offset)) in response.partitions.into_iter().zip(&mut offsets) {
                assert_eq!(data.error, None, "{topic}-{}", data.partition);
                let partition = data.partition;
                match format {
                    pb::RecordFormat::Batches => consumed.extend(
                        batch::decode(&data.batches)
                            .expect("batches decode")
                            .into_iter()
                            .filter(|r| r.offset >= *offset)
                            .map(|r| from_batch(partition, r)),
                    ),
                    pb::RecordFormat::Records => {
                        consumed.extend(data.records.into_iter().map(|r| from_pb(partition, r)))
                    }
                }
                *offset = data.next_offset;
            }
        }
        consumed
    }
}
