//! Produce and ProduceStream: each partition's records (batches as given, or structured
//! records encoded into one batch) go through the Kafka front end's produce path, appended in
//! request order; then the answer waits for the acks asked for.
//!
//! On a stream, each request is appended as it arrives and its acks are awaited beside the
//! next requests', so a client can pipeline; answers go back in request order.

use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use weir_proto::v1 as pb;

use super::status::{error, status};
use super::{PRODUCE_STREAM_IN_FLIGHT, Shared, convert};
use crate::kafka::produce::{Appended, append};
use crate::kafka::{KafkaContext, Refusal};
use crate::storage::TopicPartition;

/// How long ACKS_ALL waits when the request gives no timeout.
const ACKS_TIMEOUT_DEFAULT_MS: u64 = 30_000;

/// A request whose records are appended, with the acks still to wait for.
struct Pending {
    acks: pb::Acks,
    timeout: Duration,
    partitions: Vec<(TopicPartition, Result<Appended, Refusal>)>,
}

/// Answers a Produce request.
pub(super) async fn produce(
    request: pb::ProduceRequest,
    context: &KafkaContext,
) -> Result<pb::ProduceResponse, Status> {
    let pending = start(request, context).map_err(|refusal| status(&refusal))?;
    Ok(pending.acknowledge().await)
}

/// Appends every partition's records of `request`, in order.
fn start(request: pb::ProduceRequest, context: &KafkaContext) -> Result<Pending, Refusal> {
    let acks = pb::Acks::try_from(request.acks).map_err(|_| {
        (
            ResponseError::InvalidRequiredAcks,
            format!(
                "acks {} is not ACKS_ALL (0), ACKS_LEADER (1) or ACKS_NONE (2)",
                request.acks
            ),
        )
    })?;
    let timeout_ms = match request.timeout_ms {
        0 => ACKS_TIMEOUT_DEFAULT_MS,
        ms => u64::from(ms),
    };
    let now_ms = context.clock.now_ms();
    let partitions = request
        .partitions
        .into_iter()
        .map(|records| {
            let tp = TopicPartition::new(records.topic, records.partition);
            let appended = convert::batches(&tp, records.data, records.compression, now_ms)
                .and_then(|batches| append(&tp, batches, now_ms, acks == pb::Acks::All, context));
            (tp, appended)
        })
        .collect();
    Ok(Pending {
        acks,
        timeout: Duration::from_millis(timeout_ms),
        partitions,
    })
}

impl Pending {
    /// Waits for the acks of every partition (all appended already, so the waits overlap)
    /// and says how each went.
    async fn acknowledge(self) -> pb::ProduceResponse {
        let acks_all = self.acks == pb::Acks::All;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut results = Vec::with_capacity(self.partitions.len());
        for (tp, appended) in self.partitions {
            let produced = match appended {
                Ok(appended) => appended.acknowledge(acks_all, deadline).await,
                Err(refusal) => Err(refusal),
            };
            let mut result = pb::PartitionProduceResult {
                topic: tp.topic,
                partition: tp.partition,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
                error: None,
            };
            match produced {
                // acks=0: the client asked not to hear how it went.
                _ if self.acks == pb::Acks::None => {}
                Ok(produced) => {
                    result.base_offset = produced.base_offset;
                    result.log_append_time_ms = produced.log_append_time_ms;
                    result.log_start_offset = produced.log_start_offset;
                }
                Err(refusal) => result.error = Some(error(&refusal)),
            }
            results.push(result);
        }
        pb::ProduceResponse {
            partitions: results,
        }
    }
}

/// Serves one produce stream: a task reads and appends the requests in order, and another
/// sends their answers, in the same order, as their acks are met. At most
/// [`PRODUCE_STREAM_IN_FLIGHT`] requests wait for their acks; past that, reading waits.
pub(super) fn spawn_stream(
    mut requests: Streaming<pb::ProduceStreamRequest>,
    responses: mpsc::Sender<Result<pb::ProduceStreamResponse, Status>>,
    shared: Shared,
) {
    let (in_flight, mut awaiting) = mpsc::channel(PRODUCE_STREAM_IN_FLIGHT);
    let Shared { context, mut stop } = shared;
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => Err(Status::unavailable(
                    "the broker is shutting down; produce to it again once it is back, or to \
                     the new leader",
                )),
                next = requests.message() => next,
            };
            let request = match next {
                Ok(Some(request)) => request,
                // The client finished its stream: answer what is in flight, then end.
                Ok(None) => return,
                Err(status) => {
                    let _ = in_flight.send(Err(status)).await;
                    return;
                }
            };
            let id = request.id;
            let answer = match start(request.request.unwrap_or_default(), &context) {
                Ok(pending) => Ok((id, tokio::spawn(pending.acknowledge()))),
                Err(refusal) => Err(status(&refusal)),
            };
            // A request that cannot be served ends the stream, after the answers before it.
            let refused = answer.is_err();
            if in_flight.send(answer).await.is_err() || refused {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(answer) = awaiting.recv().await {
            let response = match answer {
                Ok((id, acknowledged)) => match acknowledged.await {
                    Ok(response) => Ok(pb::ProduceStreamResponse {
                        id,
                        response: Some(response),
                    }),
                    Err(e) => Err(Status::internal(format!(
                        "UNKNOWN_SERVER_ERROR: produce request {id} failed: {e}"
                    ))),
                },
                Err(status) => Err(status),
            };
            let last = response.is_err();
            if responses.send(response).await.is_err() || last {
                return;
            }
        }
    });
}
