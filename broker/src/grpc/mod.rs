//! The public gRPC API (`weir.v1`, `proto/weir/v1/*.proto`) on `--grpc-addr`: the `Broker`
//! service (produce, pipelined produce, fetch, subscribe, offsets), the `Admin` service
//! (metadata, topics, configs) and the `Groups` service (consumer groups' coordinators,
//! committed offsets, lag, deletion and offset resets). This is the only place the prost types of `weir.v1` meet the
//! domain types.
//!
//! ```text
//!  gRPC ─▶ tonic service ─▶ convert (prost ⇄ domain) ─▶ the Kafka front end's protocol-neutral
//!          (this module)                                parts (kafka::produce::append, fetch::
//!                                                      long_poll, topic admin) ─▶ partitions,
//!                                                      controller
//! ```
//!
//! Invariants:
//! - Produce goes through the same path as Kafka's ([`crate::kafka::produce::append`]):
//!   structured records are first encoded into one RecordBatch v2 per partition with
//!   [`weir_proto::batch::encode`], then checked and appended like a Kafka producer's batch.
//!   There is no second validation path.
//! - Every failure names the Kafka error: a gRPC status (or, for one partition or topic of a
//!   request, an `Error` message of the same shape) whose message starts with the Kafka error's
//!   name, `NOT_LEADER_OR_FOLLOWER: ...` (see [`status`]).
//! - Consumers read only below the high watermark, as over Kafka.
//! - Every stream is bounded: a subscription holds at most [`SUBSCRIBE_BUFFER`] messages for a
//!   slow client, and a produce stream at most [`PRODUCE_STREAM_IN_FLIGHT`] requests awaiting
//!   their acks; past that the server stops reading or waits.
//! - At shutdown, subscriptions and produce streams end (UNAVAILABLE) and the server answers
//!   the requests in flight within [`SHUTDOWN_DRAIN`].

mod admin;
mod convert;
mod fetch;
mod groups;
mod leader_offsets;
mod offsets;
mod produce;
mod reset;
mod status;
mod subscribe;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_server::AdminServer;
use weir_proto::v1::broker_server::{Broker, BrokerServer};
use weir_proto::v1::groups_server::GroupsServer;

use crate::kafka::{KafkaContext, MAX_REQUEST_BYTES};

/// How many messages a subscription buffers for a client that reads slowly.
pub const SUBSCRIBE_BUFFER: usize = 16;
/// How many requests of one produce stream may await their acks at once.
pub const PRODUCE_STREAM_IN_FLIGHT: usize = 256;
/// How long a shutdown waits for the requests in flight before closing the connections.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// What the services share: the node's handles (the same the Kafka front end uses) and the
/// node's stop signal, which ends the streams.
#[derive(Debug, Clone)]
struct Shared {
    context: Arc<KafkaContext>,
    stop: watch::Receiver<bool>,
}

/// Serves the public gRPC API on `listener` until `stop` turns true (or its sender is
/// dropped); then answers the requests in flight, within [`SHUTDOWN_DRAIN`].
pub async fn serve(listener: TcpListener, context: KafkaContext, stop: watch::Receiver<bool>) {
    let shared = Shared {
        context: Arc::new(context),
        stop: stop.clone(),
    };
    let (drain, draining) = oneshot::channel::<()>();
    let server = Server::builder()
        .layer(crate::metrics::GrpcMetricsLayer)
        .add_service(
            BrokerServer::new(BrokerService(shared.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            AdminServer::new(admin::AdminService::new(shared.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(
            GroupsServer::new(groups::GroupsService::new(shared))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        // Small messages (a produce acknowledgement, a few records) go out at once.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                // A dropped sender stops the server too.
                draining.await.unwrap_or(());
            },
        );
    tokio::pin!(server);
    let mut stop = stop;
    tokio::select! {
        served = &mut server => {
            if let Err(e) = served {
                tracing::error!(error = %e, "the gRPC server failed");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => {}
    }
    let _ = drain.send(());
    match tokio::time::timeout(SHUTDOWN_DRAIN, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the gRPC server failed while stopping"),
        Err(_) => tracing::warn!("gRPC requests did not finish in time; closing them"),
    }
}

/// The `Broker` service: the data path.
#[derive(Debug)]
struct BrokerService(Shared);

#[tonic::async_trait]
impl Broker for BrokerService {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let response = produce::produce(request.into_inner(), &self.0.context).await?;
        Ok(Response::new(response))
    }

    type ProduceStreamStream = ReceiverStream<Result<pb::ProduceStreamResponse, Status>>;

    async fn produce_stream(
        &self,
        request: Request<Streaming<pb::ProduceStreamRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let (responses, stream) = mpsc::channel(PRODUCE_STREAM_IN_FLIGHT);
        produce::spawn_stream(request.into_inner(), responses, self.0.clone());
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let response = fetch::fetch(request.into_inner(), &self.0.context).await?;
        Ok(Response::new(response))
    }

    type SubscribeStream = ReceiverStream<Result<pb::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let stream = subscribe::start(request.into_inner(), self.0.clone())?;
        Ok(Response::new(stream))
    }

    async fn list_offsets(
        &self,
        request: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        let response = offsets::list_offsets(request.into_inner(), &self.0.context);
        Ok(Response::new(response))
    }

    async fn init_producer_id(
        &self,
        _request: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        let (producer_id, producer_epoch) =
            crate::kafka::init_producer_id::allocate(&self.0.context)
                .await
                .map_err(|refusal| status::status(&refusal))?;
        Ok(Response::new(pb::InitProducerIdResponse {
            producer_id,
            producer_epoch: i32::from(producer_epoch),
        }))
    }
}
