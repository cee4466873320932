//! The client's errors: what went wrong, and whether trying again can help.

use std::time::Duration;

use kafka_protocol::ResponseError;
use weir_proto::batch::BatchError;
use weir_proto::v1 as pb;

/// The metadata key under which the broker puts Kafka's number for an error on a gRPC status.
const KAFKA_ERROR_CODE_KEY: &str = "weir-kafka-error-code";

/// A failure of a client call.
///
/// Errors are cheap to clone: a failed batch fails every record's future with the same error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection could be made to a broker.
    #[error(
        "cannot reach a Weir broker at {address}: {reason} (is the broker running, and is \
         {address} its gRPC address, `--grpc-addr`, 127.0.0.1:9093 by default?)"
    )]
    Unreachable {
        /// The address tried.
        address: String,
        /// What the connection attempt reported.
        reason: String,
    },
    /// The broker refused the request or part of it.
    #[error("{0}")]
    Broker(BrokerError),
    /// The topic does not exist.
    #[error("topic {0:?} does not exist (create it with `weir topic create {0}`)")]
    UnknownTopic(String),
    /// The partition does not exist.
    #[error("topic {topic:?} has {count} partitions: partition {partition} does not exist")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: usize,
    },
    /// A consumer has no offset to start a partition at: its group committed none and
    /// `auto_offset_reset` is `None`.
    #[error(
        "no offset to start {topic}-{partition} at: group {group:?} committed none and \
         auto_offset_reset is None (seek the partition, or set auto_offset_reset to Earliest \
         or Latest)"
    )]
    NoOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The consumer's group, if it has one.
        group: Option<String>,
    },
    /// A setting or an argument is not valid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The setting or argument.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Records could not be encoded into a batch (a header key twice, a record too large...).
    #[error("cannot encode the records into a batch: {0}")]
    Encode(#[from] BatchError),
    /// The broker sent a batch that cannot be read.
    #[error("the broker sent a record batch that cannot be read: {0}")]
    Decode(BatchError),
    /// The call did not complete in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The producer or consumer was closed before the call completed.
    #[error("the {0} is closed")]
    Closed(&'static str),
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A refusal from a broker: a gRPC status, or the `Error` of one partition of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerError {
    /// The gRPC status code, which says what to do: UNAVAILABLE retry (perhaps elsewhere),
    /// INVALID_ARGUMENT fix the request, FAILED_PRECONDITION change the state first.
    pub code: tonic::Code,
    /// Kafka's number for the error, when the broker named one.
    pub kafka_code: Option<i16>,
    /// What the broker said, starting with the Kafka error's name
    /// (`NOT_LEADER_OR_FOLLOWER: ...`).
    pub message: String,
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "the broker answered {:?}", self.code)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl BrokerError {
    /// Kafka's error, when the broker named one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        self.kafka_code.and_then(ResponseError::try_from_code)
    }
}

impl Error {
    /// Kafka's error behind this failure, if the broker named one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            Error::Broker(broker) => broker.kafka_error(),
            Error::UnknownTopic(_) | Error::UnknownPartition { .. } => {
                Some(ResponseError::UnknownTopicOrPartition)
            }
            _ => None,
        }
    }

    /// Whether the same call may succeed if made again, perhaps after the client refreshes
    /// its metadata or finds a group's coordinator again.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout { .. } => true,
            Error::Broker(broker) => match broker.kafka_error() {
                Some(error) => error.is_retriable(),
                None => matches!(
                    broker.code,
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ),
            },
            _ => false,
        }
    }

    /// Whether the client's view of partition leaders is stale.
    pub(crate) fn is_stale_metadata(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
            || matches!(
                self.kafka_error(),
                Some(
                    ResponseError::NotLeaderOrFollower
                        | ResponseError::LeaderNotAvailable
                        | ResponseError::FencedLeaderEpoch
                        | ResponseError::UnknownLeaderEpoch
                        | ResponseError::UnknownTopicOrPartition
                        | ResponseError::BrokerNotAvailable
                        | ResponseError::KafkaStorageError
                )
            )
    }

    /// Whether the client's idea of a group's coordinator is stale.
    pub(crate) fn is_stale_coordinator(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
            || matches!(
                self.kafka_error(),
                Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
            )
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        let kafka_code = status
            .metadata()
            .get(KAFKA_ERROR_CODE_KEY)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        Error::Broker(BrokerError {
            code: status.code(),
            kafka_code,
            message: status.message().to_string(),
        })
    }
}

impl From<pb::Error> for Error {
    fn from(error: pb::Error) -> Error {
        Error::Broker(BrokerError {
            code: tonic::Code::from_i32(error.code),
            kafka_code: i16::try_from(error.kafka_error_code).ok(),
            message: error.message,
        })
    }
}

/// `Err` for a part of an answer that carries an error.
pub(crate) fn check(error: Option<pb::Error>) -> Result<()> {
    match error {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}
