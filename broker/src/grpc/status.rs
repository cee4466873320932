//! Kafka errors as gRPC statuses: a code chosen by what the client should do (retry, fix the
//! request, look elsewhere), and a message that starts with the Kafka error's name.

use kafka_protocol::ResponseError;
use tonic::{Code, Status};
use weir_proto::v1 as pb;

use crate::kafka::Refusal;

/// The metadata key of a status that carries Kafka's number for the error.
pub(super) const KAFKA_ERROR_CODE_KEY: &str = "weir-kafka-error-code";

/// Kafka's name for `error`, as its protocol documentation and clients spell it:
/// `NOT_LEADER_OR_FOLLOWER`.
pub(super) fn kafka_name(error: ResponseError) -> String {
    if let ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    // The variants are Kafka's names in camel case: NotLeaderOrFollower.
    let camel = error.to_string();
    let mut name = String::with_capacity(camel.len() + 8);
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The gRPC code for a Kafka error.
pub(super) fn code(error: ResponseError) -> Code {
    use ResponseError as E;
    match error {
        E::UnknownTopicOrPartition | E::UnknownTopicId | E::GroupIdNotFound => Code::NotFound,
        E::TopicAlreadyExists => Code::AlreadyExists,
        // Retry, perhaps after refreshing metadata.
        E::NotLeaderOrFollower
        | E::LeaderNotAvailable
        | E::UnknownLeaderEpoch
        | E::NotEnoughReplicas
        | E::NotEnoughReplicasAfterAppend
        | E::NotController
        | E::BrokerNotAvailable
        | E::KafkaStorageError
        | E::OffsetNotAvailable
        // Find the group's coordinator (again) and retry there.
        | E::NotCoordinator
        | E::CoordinatorNotAvailable
        | E::CoordinatorLoadInProgress => Code::Unavailable,
        E::RequestTimedOut => Code::DeadlineExceeded,
        E::OffsetOutOfRange => Code::OutOfRange,
        // The state must change first: the group's members leave, or the member rejoins.
        E::FencedLeaderEpoch
        | E::NonEmptyGroup
        | E::IllegalGeneration
        | E::UnknownMemberId
        | E::RebalanceInProgress
        | E::FencedInstanceId => Code::FailedPrecondition,
        E::CorruptMessage
        | E::InvalidRecord
        | E::InvalidTimestamp
        | E::MessageTooLarge
        | E::RecordListTooLarge
        | E::InvalidRequiredAcks
        | E::InvalidTopicException
        | E::InvalidPartitions
        | E::InvalidReplicationFactor
        | E::InvalidConfig
        | E::InvalidRequest
        | E::InvalidGroupId
        | E::OffsetMetadataTooLarge
        | E::PolicyViolation => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

/// `NAME: what was wrong`.
fn message((error, message): &Refusal) -> String {
    format!("{}: {message}", kafka_name(*error))
}

/// A refusal as the status of a whole request, with Kafka's number in its metadata.
pub(super) fn status(refusal: &Refusal) -> Status {
    let mut status = Status::new(code(refusal.0), message(refusal));
    status.metadata_mut().insert(
        KAFKA_ERROR_CODE_KEY,
        refusal
            .0
            .code()
            .to_string()
            .parse()
            .expect("a number is valid ASCII metadata"),
    );
    status
}

/// A refusal of one partition or topic of a request, in the shape of a status.
pub(super) fn error(refusal: &Refusal) -> pb::Error {
    pb::Error {
        code: code(refusal.0) as i32,
        message: message(refusal),
        kafka_error_code: i32::from(refusal.0.code()),
    }
}

/// A request the client must fix: INVALID_REQUEST with `what`.
pub(super) fn invalid(what: impl Into<String>) -> Refusal {
    (ResponseError::InvalidRequest, what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas() {
        let cases = [
            (ResponseError::NotLeaderOrFollower, "NOT_LEADER_OR_FOLLOWER"),
            (
                ResponseError::UnknownTopicOrPartition,
                "UNKNOWN_TOPIC_OR_PARTITION",
            ),
            (ResponseError::CorruptMessage, "CORRUPT_MESSAGE"),
            (
                ResponseError::InvalidTopicException,
                "INVALID_TOPIC_EXCEPTION",
            ),
            (ResponseError::KafkaStorageError, "KAFKA_STORAGE_ERROR"),
            (ResponseError::UnknownServerError, "UNKNOWN_SERVER_ERROR"),
            (ResponseError::Unknown(999), "UNKNOWN_ERROR_CODE_999"),
        ];
        for (error, name) in cases {
            assert_eq!(kafka_name(error), name);
        }
    }

    #[test]
    fn a_status_names_the_kafka_error_and_carries_its_code() {
        let refusal = (
            ResponseError::NotLeaderOrFollower,
            "broker 1 is not the leader of t-0".to_string(),
        );
        let status = status(&refusal);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "NOT_LEADER_OR_FOLLOWER: broker 1 is not the leader of t-0"
        );
        assert_eq!(status.metadata().get(KAFKA_ERROR_CODE_KEY).unwrap(), "6");
        let error = error(&refusal);
        assert_eq!(error.code, Code::Unavailable as i32);
        assert_eq!(error.message, status.message());
        assert_eq!(error.kafka_error_code, 6);
    }
}
