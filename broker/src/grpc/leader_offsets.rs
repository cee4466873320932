//! Offsets of partitions wherever they are led: a partition led here is asked directly (as
//! ListOffsets answers it, [`offsets::find`]); the others are asked of their leaders over
//! the public gRPC API (`Broker.ListOffsets` at the leader's advertised gRPC address), one
//! request per leader, the leaders in parallel. Group administration (lag, offset resets)
//! needs offsets of partitions a group coordinator does not lead.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use tonic::transport::Endpoint;
use weir_proto::v1 as pb;
use weir_proto::v1::broker_client::BrokerClient;

use super::offsets;
use crate::controller::BrokerId;
use crate::kafka::{KafkaContext, Refusal};
use crate::storage::TopicPartition;

/// How long connecting to another broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long another broker may take to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers each query in order: the offset found (-1 when no record qualifies) or why not.
pub(super) async fn list(
    queries: Vec<pb::OffsetQuery>,
    context: &KafkaContext,
) -> Vec<Result<i64, Refusal>> {
    let metadata = context.controller.metadata();
    let mut answers: Vec<Option<Result<i64, Refusal>>> = vec![None; queries.len()];
    // For each other leader: its id, and the queries (with their index) it must answer.
    let mut remote: BTreeMap<BrokerId, Vec<(usize, pb::OffsetQuery)>> = BTreeMap::new();
    for (index, query) in queries.into_iter().enumerate() {
        let leader = metadata.topic_by_name(&query.topic).and_then(|topic| {
            let partition = usize::try_from(query.partition).ok()?;
            Some(topic.partitions.get(partition)?.leader)
        });
        let answer = match leader {
            None => Err((
                ResponseError::UnknownTopicOrPartition,
                format!("{}-{} does not exist", query.topic, query.partition),
            )),
            Some(None) => Err((
                ResponseError::LeaderNotAvailable,
                format!(
                    "{}-{} has no leader (its replicas are down); retry",
                    query.topic, query.partition
                ),
            )),
            Some(Some(leader)) if leader == context.config.node_id => {
                let tp = TopicPartition::new(query.topic.clone(), query.partition);
                offsets::find(&tp, &query, context).map(|(offset, _, _)| offset)
            }
            Some(Some(leader)) => {
                remote.entry(leader).or_default().push((index, query));
                continue;
            }
        };
        answers[index] = Some(answer);
    }
    let asked = remote.into_iter().map(|(leader, queries)| {
        let address = metadata.broker(leader).map(|b| b.endpoints.grpc.clone());
        async move {
            let (indexes, queries): (Vec<usize>, Vec<pb::OffsetQuery>) =
                queries.into_iter().unzip();
            let count = queries.len();
            let answered = match address {
                Some(address) => ask(leader, &address, queries).await,
                None => Err((
                    ResponseError::LeaderNotAvailable,
                    format!("broker {leader} is not registered; retry"),
                )),
            };
            let answers: Vec<Result<i64, Refusal>> = match answered {
                Ok(answers) if answers.len() == count => answers,
                Ok(answers) => vec![
                    Err((
                        ResponseError::UnknownServerError,
                        format!(
                            "broker {leader} answered {} of {count} offset queries",
                            answers.len()
                        ),
                    ));
                    count
                ],
                Err(refusal) => vec![Err(refusal); count],
            };
            indexes.into_iter().zip(answers).collect::<Vec<_>>()
        }
    });
    for (index, answer) in join_all(asked).await.into_iter().flatten() {
        answers[index] = Some(answer);
    }
    answers
        .into_iter()
        .map(|answer| {
            // Every query was answered above, locally or by its leader.
            answer.unwrap_or_else(|| {
                Err((
                    ResponseError::UnknownServerError,
                    "an offset query went unanswered".to_string(),
                ))
            })
        })
        .collect()
}

/// Asks broker `leader` at `address` for `queries`.
async fn ask(
    leader: BrokerId,
    address: &str,
    queries: Vec<pb::OffsetQuery>,
) -> Result<Vec<Result<i64, Refusal>>, Refusal> {
    let unreachable = |what: String| {
        (
            ResponseError::BrokerNotAvailable,
            format!("could not ask broker {leader} at {address} for offsets: {what}; retry"),
        )
    };
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    // One connection per request: group administration is rare, and a cached channel to an
    // address a restarted broker no longer has would outlive it.
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let answer = BrokerClient::new(channel)
        .list_offsets(pb::ListOffsetsRequest {
            partitions: queries,
        })
        .await
        .map_err(|status| unreachable(status.message().to_string()))?
        .into_inner();
    Ok(answer
        .partitions
        .into_iter()
        .map(|found| match found.error {
            None => Ok(found.offset),
            Some(error) => Err(refusal(leader, &error)),
        })
        .collect())
}

/// Another broker's refusal of one partition as a [`Refusal`]: its Kafka error, and its
/// message without the error's name in front (the status adds it again).
fn refusal(leader: BrokerId, error: &pb::Error) -> Refusal {
    let kafka = i16::try_from(error.kafka_error_code)
        .ok()
        .and_then(ResponseError::try_from_code)
        .unwrap_or(ResponseError::UnknownServerError);
    let message = error
        .message
        .split_once(": ")
        .map_or(error.message.as_str(), |(_, rest)| rest);
    (kafka, format!("{message} (broker {leader})"))
}
