//! Bare Kafka requests to one node, encoded by the `kafka-protocol` crate: Metadata, for the
//! node's own view of the cluster (the active controller it knows, a partition's leader,
//! leader epoch and ISR; librdkafka's metadata calls go to a broker of its choosing and do not
//! give the controller), and a one-record acks=all Produce straight to a partition's leader,
//! to see when it takes writes whatever a client's metadata says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record,
    RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Metadata v8: the newest version without flexible encoding that names leader epochs and
/// the controller.
const METADATA_VERSION: i16 = 8;
/// Produce v8: the newest version without flexible encoding.
const PRODUCE_VERSION: i16 = 8;
/// How long connecting, sending or reading may take.
const TIMEOUT: Duration = Duration::from_millis(500);
/// How long a Produce may wait for its acks=all, within [`TIMEOUT`].
const PRODUCE_TIMEOUT: Duration = Duration::from_millis(400);
/// The largest answer taken.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// What one node says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeView {
    /// The active controller it knows; -1 for none.
    pub(crate) controller: i32,
    /// Partition 0 of the topic asked about, if the node knows it.
    pub(crate) partition: Option<PartitionView>,
}

/// Partition 0 of a topic as a node's Metadata answer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionView {
    /// -1 while it has none.
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
    /// Sorted.
    pub(crate) isr: Vec<i32>,
}

/// A connection to one node's Kafka listener, opened again after any failure.
#[derive(Debug)]
pub(crate) struct KafkaConnection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    correlation_id: i32,
}

impl KafkaConnection {
    pub(crate) fn new(addr: &str) -> KafkaConnection {
        KafkaConnection {
            addr: addr.parse().expect("a node's Kafka address is ip:port"),
            stream: None,
            correlation_id: 0,
        }
    }

    /// The node's view of `topic`, or why it gave none.
    pub(crate) fn describe(&mut self, topic: &str) -> Result<NodeView, String> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(false);
        let response: MetadataResponse = self.call(&request, METADATA_VERSION)?;
        Ok(view(&response))
    }

    /// Writes one record to partition 0 of `topic` with acks=all (not idempotent) and waits
    /// for the answer: `Ok` once it is acknowledged, else the error code or why there was
    /// no answer.
    pub(crate) fn produce_one(&mut self, topic: &str) -> Result<(), String> {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: NO_SEQUENCE,
            timestamp: now_ms(),
            key: None,
            value: Some(Bytes::from_static(b"weir-bench probe")),
            headers: Default::default(),
        };
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut batch, [&record], &options)
            .map_err(|e| format!("encoding a record batch: {e}"))?;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(i32::try_from(PRODUCE_TIMEOUT.as_millis()).unwrap_or(i32::MAX))
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.freeze())),
                    ]),
            ]);
        let response = self.call(&request, PRODUCE_VERSION)?;
        let code = response
            .responses
            .first()
            .and_then(|topic| topic.partition_responses.first())
            .map(|partition| partition.error_code)
            .ok_or("no partition in the Produce answer")?;
        match code {
            0 => Ok(()),
            code => Err(format!("error code {code}")),
        }
    }

    /// Sends `request` at `version` and reads its answer; after a failure the connection is
    /// opened again next time.
    fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, String> {
        let result = self.exchange(request, version);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, String> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = encode(request, version, self.correlation_id)?;
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(connect(self.addr)?),
        };
        stream
            .write_all(&frame)
            .map_err(|e| format!("sending to {}: {e}", self.addr))?;
        let response =
            read_frame(stream).map_err(|e| format!("reading from {}: {e}", self.addr))?;
        decode::<R>(response, version, self.correlation_id)
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("setting up the connection to {addr}: {e}"))?;
    Ok(stream)
}

/// The request as a length-prefixed frame.
fn encode<R: Request>(request: &R, version: i16, correlation_id: i32) -> Result<BytesMut, String> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("weir-bench")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .and_then(|()| request.encode(&mut body, version))
        .map_err(|e| format!("encoding a request: {e}"))?;
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(i32::try_from(body.len()).expect("a small request"));
    frame.extend_from_slice(&body);
    Ok(frame)
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let length = usize::try_from(i32::from_be_bytes(length)).unwrap_or(usize::MAX);
    if length > MAX_RESPONSE_BYTES {
        return Err(std::io::Error::other(format!("a {length}-byte answer")));
    }
    let mut response = vec![0; length];
    stream.read_exact(&mut response)?;
    Ok(Bytes::from(response))
}

fn decode<R: Request>(
    mut response: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, String> {
    let key = ApiKey::try_from(R::KEY).map_err(|()| format!("unknown API key {}", R::KEY))?;
    let header = ResponseHeader::decode(&mut response, key.response_header_version(version))
        .map_err(|e| format!("decoding an answer's header: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "answer {} to request {correlation_id}",
            header.correlation_id
        ));
    }
    let decoded = R::Response::decode(&mut response, version)
        .map_err(|e| format!("decoding an answer: {e}"))?;
    if response.has_remaining() {
        return Err(format!("{} bytes after the answer", response.remaining()));
    }
    Ok(decoded)
}

/// Milliseconds since the Unix epoch, for a record's timestamp.
fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

fn view(response: &MetadataResponse) -> NodeView {
    let partition = response
        .topics
        .first()
        .filter(|topic| topic.error_code == 0)
        .and_then(|topic| topic.partitions.iter().find(|p| p.partition_index == 0))
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            isr.sort_unstable();
            PartitionView {
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                isr,
            }
        });
    NodeView {
        controller: response.controller_id.0,
        partition,
    }
}
