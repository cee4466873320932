//! A Kafka client of the bare protocol for tests: one request, encoded by the
//! `kafka-protocol` crate at a chosen version, and its decoded response.

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` at `version` on `stream` and returns its response.
pub async fn call<R: Request>(stream: &mut TcpStream, request: &R, version: i16) -> R::Response {
    let key = ApiKey::try_from(R::KEY).expect("a known API");
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("weir-tests")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .expect("the header encodes");
    request
        .encode(&mut body, version)
        .expect("the request encodes");
    let mut frame = BytesMut::new();
    frame.put_i32(i32::try_from(body.len()).unwrap());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.expect("the request is sent");
    let length = stream.read_i32().await.expect("a response");
    let mut response = vec![0; usize::try_from(length).unwrap()];
    stream
        .read_exact(&mut response)
        .await
        .expect("the whole response");
    let mut response = bytes::Bytes::from(response);
    let header = ResponseHeader::decode(&mut response, key.response_header_version(version))
        .expect("the response header decodes");
    assert_eq!(header.correlation_id, 42);
    let decoded = R::Response::decode(&mut response, version).expect("the response decodes");
    assert_eq!(response.remaining(), 0, "the whole response is read");
    decoded
}
