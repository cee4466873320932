//! Request metrics of the front ends, by API (Kafka) or method (gRPC), and the record
//! traffic of each topic through produce and consumer fetch, whichever front end served it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Once, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http;
use kafka_protocol::messages::ApiKey;
use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use weir_proto::batch::BatchHeader;

const KAFKA_REQUESTS: &str = "weir_kafka_requests_total";
const KAFKA_DURATION: &str = "weir_kafka_request_duration_seconds";
const GRPC_REQUESTS: &str = "weir_grpc_requests_total";
const GRPC_DURATION: &str = "weir_grpc_request_duration_seconds";
const BYTES_IN: &str = "weir_topic_bytes_in_total";
const RECORDS_IN: &str = "weir_topic_records_in_total";
const BYTES_OUT: &str = "weir_topic_bytes_out_total";
const RECORDS_OUT: &str = "weir_topic_records_out_total";

/// Registers each metric's description and unit, once per process.
pub(super) fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_counter!(
            KAFKA_REQUESTS,
            Unit::Count,
            "Kafka protocol requests answered, by API (label api: Produce, Fetch, Metadata, \
             ...); acks=0 produce requests count though they get no answer."
        );
        describe_histogram!(
            KAFKA_DURATION,
            Unit::Seconds,
            "Time from a decoded Kafka request to its encoded response, by API (label api); a \
             fetch's long poll and an acks=all produce's wait for the ISR count."
        );
        describe_counter!(
            GRPC_REQUESTS,
            Unit::Count,
            "Public gRPC API calls, by method (label method: Broker/Produce, Admin/CreateTopic, \
             ...; unknown for methods this broker does not serve)."
        );
        describe_histogram!(
            GRPC_DURATION,
            Unit::Seconds,
            "Time from a gRPC call's arrival to its response headers, by method (label \
             method); for a streaming call, to the start of its response stream."
        );
        describe_counter!(
            BYTES_IN,
            Unit::Bytes,
            "Record batch bytes producers appended to partitions this broker leads, by topic \
             (label topic), over Kafka and gRPC; replication is not counted."
        );
        describe_counter!(
            RECORDS_IN,
            Unit::Count,
            "Records producers appended to partitions this broker leads, by topic (label \
             topic); a retried batch the broker already had is not counted again."
        );
        describe_counter!(
            BYTES_OUT,
            Unit::Bytes,
            "Record batch bytes sent to consumers, by topic (label topic), over Kafka fetch, \
             gRPC fetch and gRPC subscriptions; replication is not counted."
        );
        describe_counter!(
            RECORDS_OUT,
            Unit::Count,
            "Records in the batches sent to consumers, by topic (label topic); a batch's \
             records before the offset asked for count too, as they are sent."
        );
    });
}

/// The Kafka name of every API key (`Produce`, `Fetch`, ...), made once so that labelling a
/// request costs no allocation.
fn api_name(key: ApiKey) -> &'static str {
    static NAMES: OnceLock<HashMap<ApiKey, String>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            ApiKey::iter()
                .map(|key| (key, format!("{key:?}")))
                .collect()
        })
        .get(&key)
        .map_or("unknown", String::as_str)
}

/// One Kafka request being answered; [`KafkaRequest::finish`] records it.
#[derive(Debug)]
pub(crate) struct KafkaRequest {
    api: &'static str,
    started: Instant,
}

impl KafkaRequest {
    /// A request of API `key` whose answer starts now.
    pub(crate) fn start(key: ApiKey) -> KafkaRequest {
        KafkaRequest {
            api: api_name(key),
            started: Instant::now(),
        }
    }

    /// The request is answered.
    pub(crate) fn finish(self) {
        counter!(KAFKA_REQUESTS, "api" => self.api).increment(1);
        histogram!(KAFKA_DURATION, "api" => self.api).record(self.started.elapsed().as_secs_f64());
    }
}

/// A producer's records appended to a partition of `topic`.
pub(crate) fn records_in(topic: &str, bytes: usize, records: u64) {
    if records == 0 {
        return;
    }
    let topic = topic.to_string();
    counter!(BYTES_IN, "topic" => topic.clone()).increment(bytes as u64);
    counter!(RECORDS_IN, "topic" => topic).increment(records);
}

/// Whole batches of `topic` sent to a consumer.
pub(crate) fn records_out(topic: &str, batches: &[u8]) {
    if batches.is_empty() {
        return;
    }
    let (bytes, records) = topic_bytes_and_records(batches);
    let topic = topic.to_string();
    counter!(BYTES_OUT, "topic" => topic.clone()).increment(bytes);
    counter!(RECORDS_OUT, "topic" => topic).increment(records);
}

/// The bytes and the records of the batches at the start of `batches`, read from their
/// headers alone (no CRC check: they come from our own log).
fn topic_bytes_and_records(batches: &[u8]) -> (u64, u64) {
    let mut position = 0;
    let mut records = 0u64;
    while let Ok(header) = BatchHeader::parse(&batches[position..]) {
        records += u64::try_from(header.record_count).unwrap_or(0);
        position += header.size();
        if position >= batches.len() {
            break;
        }
    }
    (batches.len() as u64, records)
}

/// The tower layer that counts and times the public gRPC API's calls.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

/// A gRPC service wrapped by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = grpc_method(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            // A method this broker does not serve is answered UNIMPLEMENTED in the headers;
            // its name, chosen by the client, must not become a label.
            let unimplemented = response.as_ref().is_ok_and(|r| {
                r.headers()
                    .get("grpc-status")
                    .is_some_and(|code| code.as_bytes() == b"12")
            });
            let method = if unimplemented {
                "unknown".to_string()
            } else {
                method
            };
            counter!(GRPC_REQUESTS, "method" => method.clone()).increment(1);
            histogram!(GRPC_DURATION, "method" => method).record(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// `Service/Method` of a gRPC path `/package.Service/Method`.
fn grpc_method(path: &str) -> String {
    let path = path.trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let service = service.rsplit('.').next().unwrap_or(service);
    format!("{service}/{method}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_methods_lose_their_package() {
        assert_eq!(grpc_method("/weir.v1.Broker/Produce"), "Broker/Produce");
        assert_eq!(
            grpc_method("/weir.v1.Admin/CreateTopic"),
            "Admin/CreateTopic"
        );
        assert_eq!(grpc_method("/odd"), "odd/");
    }

    #[test]
    fn api_names_are_kafkas() {
        assert_eq!(api_name(ApiKey::Produce), "Produce");
        assert_eq!(api_name(ApiKey::ListOffsets), "ListOffsets");
    }

    #[test]
    fn batches_are_counted_from_their_headers() {
        use bytes::{Bytes, BytesMut};
        use weir_proto::batch::{EncodeOptions, Record, encode};
        let batch = |count: usize| {
            let records: Vec<Record> = (0..count)
                .map(|i| Record {
                    key: None,
                    value: Some(Bytes::from_static(b"v")),
                    headers: Vec::new(),
                    timestamp: 0,
                    offset: i as i64,
                })
                .collect();
            encode(&records, &EncodeOptions::default()).unwrap()
        };
        let mut two = BytesMut::new();
        two.extend_from_slice(&batch(3));
        two.extend_from_slice(&batch(4));
        assert_eq!(topic_bytes_and_records(&two), (two.len() as u64, 7));
        assert_eq!(topic_bytes_and_records(&[]), (0, 0));
        // A cut-off tail (never sent, but a bug must not panic here) counts what parses.
        let cut = &two[..two.len() - 3];
        assert_eq!(topic_bytes_and_records(cut).1, 7);
    }
}
