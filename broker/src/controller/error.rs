//! Why a controller request failed, locally or at the active controller.

use super::decisions::DecisionError;
use super::metadata::ApplyError;
use super::records::BrokerId;

/// What kind of failure a [`ControllerError`] is: what front ends map to protocol error codes,
/// and what survives forwarding a request to the active controller and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The node asked is not the active controller (retryable).
    NotController,
    /// The topic name breaks Kafka's rules.
    InvalidTopicName,
    /// A topic of that name exists.
    TopicExists,
    /// The topic does not exist.
    UnknownTopic,
    /// A partition count that is not allowed.
    InvalidPartitions,
    /// A replication factor that is not allowed (below 1, or above the live brokers).
    InvalidReplicationFactor,
    /// A topic config that is unknown or has a bad value.
    InvalidConfig,
    /// An ISR change made at stale epochs, or an impossible one.
    StaleIsrChange,
    /// A heartbeat from a broker incarnation that is not registered.
    UnregisteredBroker,
    /// The decision went stale before it was committed; retry it.
    Conflict,
    /// No active controller could take the request (retryable), or the quorum failed.
    Unavailable,
    /// The request is malformed.
    InvalidRequest,
}

/// Why a controller request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// This node is not the active controller; `leader` is, if one is known.
    #[error("node is not the active controller (the active controller is {})", leader.map_or("not known yet".to_string(), |l| format!("node {l}")))]
    NotController {
        /// The active controller's node id, if known.
        leader: Option<u64>,
    },
    /// The request is invalid for the current metadata.
    #[error(transparent)]
    Refused(#[from] DecisionError),
    /// The decision went stale before it was committed (another change won the race).
    #[error("the change conflicts with a concurrent one: {0}; retry it")]
    Conflict(#[source] ApplyError),
    /// A heartbeat from a broker that is not registered with that incarnation.
    #[error("broker {broker_id} is not registered with this incarnation; register it again")]
    Unregistered {
        /// The broker.
        broker_id: BrokerId,
    },
    /// No active controller took the request in time.
    #[error("no active controller took the request: {0}")]
    Unavailable(String),
    /// The request is malformed (a peer sent something this node cannot read).
    #[error("malformed controller request: {0}")]
    InvalidRequest(String),
    /// The active controller refused the request; this is its answer, forwarded.
    #[error("{message}")]
    Remote {
        /// What kind of failure it was.
        kind: ErrorKind,
        /// The active controller's description.
        message: String,
        /// For [`ErrorKind::NotController`], the active controller the remote node knew of.
        leader: Option<u64>,
    },
    /// The configuration cannot work.
    #[error("invalid controller configuration: {0}")]
    Config(String),
    /// The metadata log could not be read or written.
    #[error("controller storage failed: {0}")]
    Storage(#[source] std::io::Error),
    /// Raft failed (shut down, or a fatal storage error).
    #[error("controller quorum failed: {0}")]
    Raft(String),
}

impl ControllerError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ControllerError::NotController { .. } => ErrorKind::NotController,
            ControllerError::Refused(refusal) => match refusal {
                DecisionError::InvalidTopicName { .. } => ErrorKind::InvalidTopicName,
                DecisionError::TopicExists(_) => ErrorKind::TopicExists,
                DecisionError::InvalidPartitionCount(_)
                | DecisionError::TooManyPartitions(_)
                | DecisionError::PartitionCountNotGrowing { .. } => ErrorKind::InvalidPartitions,
                DecisionError::UnknownTopic(_) => ErrorKind::UnknownTopic,
                DecisionError::InvalidConfig(_) | DecisionError::NotAList(_) => {
                    ErrorKind::InvalidConfig
                }
                DecisionError::ReplicationFactorTooHigh { .. }
                | DecisionError::InvalidReplicationFactor(_) => ErrorKind::InvalidReplicationFactor,
                DecisionError::IsrChange(_) => ErrorKind::StaleIsrChange,
                DecisionError::UnregisteredBroker { .. } => ErrorKind::UnregisteredBroker,
                DecisionError::ProducerIdsExhausted { .. } => ErrorKind::InvalidRequest,
            },
            ControllerError::Conflict(_) => ErrorKind::Conflict,
            ControllerError::Unregistered { .. } => ErrorKind::UnregisteredBroker,
            ControllerError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            ControllerError::Remote { kind, .. } => *kind,
            ControllerError::Unavailable(_)
            | ControllerError::Config(_)
            | ControllerError::Storage(_)
            | ControllerError::Raft(_) => ErrorKind::Unavailable,
        }
    }

    /// Whether asking again (perhaps another node) may succeed: there was no active
    /// controller to decide, so nothing was decided.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            ControllerError::NotController { .. } => true,
            ControllerError::Remote { kind, .. } => {
                matches!(kind, ErrorKind::NotController | ErrorKind::Unavailable)
            }
            ControllerError::Unavailable(_) => true,
            _ => false,
        }
    }

    /// The active controller this error points at, if it names one.
    pub(crate) fn leader_hint(&self) -> Option<u64> {
        match self {
            ControllerError::NotController { leader } | ControllerError::Remote { leader, .. } => {
                *leader
            }
            _ => None,
        }
    }
}
