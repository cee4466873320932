//! Requests to the active controller and how they travel between nodes: the [`Request`] and
//! [`Reply`] types, their protobuf form (`proto/weir/internal/v1/controller.proto`), the tonic
//! service every node serves, and the client that sends a request to another node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;
use weir_proto::internal::v1 as pb;
use weir_proto::internal::v1::controller_client::ControllerClient;
use weir_proto::internal::v1::controller_failure::Kind;

use super::codec::{broker_from_pb, broker_to_pb, uuid_from_pb, uuid_to_pb};
use super::decisions::{ConfigChange, IsrProposal, LeadershipMoves, ProducerIdBlock};
use super::error::{ControllerError, ErrorKind};
use super::node::Inner;
use super::records::{BrokerId, BrokerRecord};
use super::session::SessionStream;

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A request only the active controller can decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    RegisterBroker(BrokerRecord),
    Heartbeat {
        broker_id: BrokerId,
        incarnation: Uuid,
        applied_index: u64,
    },
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
    },
    AlterPartition(IsrProposal),
    AlterTopicConfigs {
        name: String,
        changes: Vec<ConfigChange>,
    },
    AllocateProducerIds {
        broker_id: BrokerId,
        incarnation: Uuid,
    },
    ControlledShutdown {
        broker_id: BrokerId,
        incarnation: Uuid,
    },
}

/// The active controller's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Registered {
        registered_at: u64,
    },
    Heartbeat {
        fenced: bool,
    },
    TopicCreated(Uuid),
    PartitionAltered(AlteredPartition),
    ProducerIds(ProducerIdBlock),
    ShutdownReady {
        fenced_at: u64,
        moves: LeadershipMoves,
    },
    Done,
}

/// A partition as an accepted ISR change left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlteredPartition {
    /// Its leader epoch (unchanged by an ISR change).
    pub leader_epoch: i32,
    /// Its new partition epoch.
    pub partition_epoch: i32,
    /// Its new ISR.
    pub isr: Vec<BrokerId>,
}

impl Request {
    /// Short, for logs and error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Request::RegisterBroker(_) => "broker registration",
            Request::Heartbeat { .. } => "broker heartbeat",
            Request::CreateTopic { .. } => "topic creation",
            Request::DeleteTopic { .. } => "topic deletion",
            Request::CreatePartitions { .. } => "partition creation",
            Request::AlterPartition(_) => "ISR change",
            Request::AlterTopicConfigs { .. } => "topic config change",
            Request::AllocateProducerIds { .. } => "producer id allocation",
            Request::ControlledShutdown { .. } => "controlled shutdown",
        }
    }

    fn to_pb(&self, forwarded: bool) -> pb::ControllerRequest {
        use pb::controller_request::Request as R;
        let request = match self {
            Request::RegisterBroker(broker) => R::RegisterBroker(pb::RegisterBrokerRequest {
                broker: Some(broker_to_pb(broker)),
            }),
            Request::Heartbeat {
                broker_id,
                incarnation,
                applied_index,
            } => R::BrokerHeartbeat(pb::BrokerHeartbeatRequest {
                broker_id: *broker_id,
                incarnation: uuid_to_pb(incarnation),
                applied_index: *applied_index,
            }),
            Request::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => R::CreateTopic(pb::CreateTopicRequest {
                name: name.clone(),
                partitions: *partitions,
                replication_factor: *replication_factor,
                configs: configs.clone(),
            }),
            Request::DeleteTopic { name } => {
                R::DeleteTopic(pb::DeleteTopicRequest { name: name.clone() })
            }
            Request::CreatePartitions { name, total } => {
                R::CreatePartitions(pb::CreatePartitionsRequest {
                    name: name.clone(),
                    total: *total,
                })
            }
            Request::AlterPartition(proposal) => R::AlterPartition(pb::AlterPartitionRequest {
                topic_id: uuid_to_pb(&proposal.topic_id),
                partition: proposal.partition,
                leader: proposal.proposer,
                leader_epoch: proposal.leader_epoch,
                partition_epoch: proposal.partition_epoch,
                isr: proposal.isr.clone(),
            }),
            Request::AlterTopicConfigs { name, changes } => {
                R::AlterTopicConfigs(pb::AlterTopicConfigsRequest {
                    name: name.clone(),
                    changes: changes.iter().map(config_change_to_pb).collect(),
                })
            }
            Request::AllocateProducerIds {
                broker_id,
                incarnation,
            } => R::AllocateProducerIds(pb::AllocateProducerIdsRequest {
                broker_id: *broker_id,
                incarnation: uuid_to_pb(incarnation),
            }),
            Request::ControlledShutdown {
                broker_id,
                incarnation,
            } => R::ControlledShutdown(pb::ControlledShutdownRequest {
                broker_id: *broker_id,
                incarnation: uuid_to_pb(incarnation),
            }),
        };
        pb::ControllerRequest {
            forwarded,
            request: Some(request),
        }
    }

    fn from_pb(request: pb::ControllerRequest) -> Result<Request, ControllerError> {
        use pb::controller_request::Request as R;
        let bad = |e: super::codec::CodecError| ControllerError::InvalidRequest(e.to_string());
        let request = request
            .request
            .ok_or_else(|| ControllerError::InvalidRequest("it names no request".into()))?;
        Ok(match request {
            R::RegisterBroker(register) => {
                let broker = register.broker.ok_or_else(|| {
                    ControllerError::InvalidRequest("a registration without its broker".into())
                })?;
                Request::RegisterBroker(broker_from_pb(broker).map_err(bad)?)
            }
            R::BrokerHeartbeat(heartbeat) => Request::Heartbeat {
                broker_id: heartbeat.broker_id,
                incarnation: uuid_from_pb("incarnation", &heartbeat.incarnation).map_err(bad)?,
                applied_index: heartbeat.applied_index,
            },
            R::CreateTopic(create) => Request::CreateTopic {
                name: create.name,
                partitions: create.partitions,
                replication_factor: create.replication_factor,
                configs: create.configs,
            },
            R::DeleteTopic(delete) => Request::DeleteTopic { name: delete.name },
            R::CreatePartitions(create) => Request::CreatePartitions {
                name: create.name,
                total: create.total,
            },
            R::AlterPartition(alter) => Request::AlterPartition(IsrProposal {
                topic_id: uuid_from_pb("topic_id", &alter.topic_id).map_err(bad)?,
                partition: alter.partition,
                proposer: alter.leader,
                leader_epoch: alter.leader_epoch,
                partition_epoch: alter.partition_epoch,
                isr: alter.isr,
            }),
            R::AlterTopicConfigs(alter) => Request::AlterTopicConfigs {
                name: alter.name,
                changes: alter
                    .changes
                    .into_iter()
                    .map(config_change_from_pb)
                    .collect::<Result<_, _>>()?,
            },
            R::AllocateProducerIds(allocate) => Request::AllocateProducerIds {
                broker_id: allocate.broker_id,
                incarnation: uuid_from_pb("incarnation", &allocate.incarnation).map_err(bad)?,
            },
            R::ControlledShutdown(shutdown) => Request::ControlledShutdown {
                broker_id: shutdown.broker_id,
                incarnation: uuid_from_pb("incarnation", &shutdown.incarnation).map_err(bad)?,
            },
        })
    }
}

fn config_change_to_pb(change: &ConfigChange) -> pb::ConfigChange {
    use pb::config_change::Op;
    let (op, name, value) = match change {
        ConfigChange::Set(name, value) => (Op::Set, name, value.as_str()),
        ConfigChange::Delete(name) => (Op::Delete, name, ""),
        ConfigChange::Append(name, value) => (Op::Append, name, value.as_str()),
        ConfigChange::Subtract(name, value) => (Op::Subtract, name, value.as_str()),
    };
    pb::ConfigChange {
        name: name.clone(),
        op: op as i32,
        value: value.to_string(),
    }
}

fn config_change_from_pb(change: pb::ConfigChange) -> Result<ConfigChange, ControllerError> {
    use pb::config_change::Op;
    let pb::ConfigChange { name, op, value } = change;
    Ok(match Op::try_from(op) {
        Ok(Op::Set) => ConfigChange::Set(name, value),
        Ok(Op::Delete) => ConfigChange::Delete(name),
        Ok(Op::Append) => ConfigChange::Append(name, value),
        Ok(Op::Subtract) => ConfigChange::Subtract(name, value),
        Ok(Op::Unspecified) | Err(_) => {
            return Err(ControllerError::InvalidRequest(format!(
                "config change {op} of {name:?} is not an operation this node knows"
            )));
        }
    })
}

fn reply_to_pb(result: Result<Reply, ControllerError>) -> pb::ControllerReply {
    use pb::controller_reply::Result as R;
    let result = match result {
        Ok(Reply::Registered { registered_at }) => {
            R::RegisterBroker(pb::RegisterBrokerReply { registered_at })
        }
        Ok(Reply::Heartbeat { fenced }) => R::BrokerHeartbeat(pb::BrokerHeartbeatReply { fenced }),
        Ok(Reply::TopicCreated(topic_id)) => R::CreateTopic(pb::CreateTopicReply {
            topic_id: uuid_to_pb(&topic_id),
        }),
        Ok(Reply::PartitionAltered(altered)) => R::AlterPartition(pb::AlterPartitionReply {
            leader_epoch: altered.leader_epoch,
            partition_epoch: altered.partition_epoch,
            isr: altered.isr,
        }),
        Ok(Reply::ProducerIds(block)) => R::AllocateProducerIds(pb::AllocateProducerIdsReply {
            first_producer_id: block.first,
            size: block.size,
        }),
        Ok(Reply::ShutdownReady { fenced_at, moves }) => {
            R::ControlledShutdown(pb::ControlledShutdownReply {
                fenced_at,
                leaders_moved: moves.moved,
                left_offline: moves.offline,
            })
        }
        Ok(Reply::Done) => R::Done(pb::RaftBlank {}),
        Err(error) => R::Failure(pb::ControllerFailure {
            kind: kind_to_pb(error.kind()) as i32,
            message: error.to_string(),
            leader: error.leader_hint(),
        }),
    };
    pb::ControllerReply {
        result: Some(result),
    }
}

fn reply_from_pb(reply: pb::ControllerReply) -> Result<Reply, ControllerError> {
    use pb::controller_reply::Result as R;
    let bad = |what: &str| ControllerError::InvalidRequest(format!("a reply {what}"));
    match reply.result.ok_or_else(|| bad("without a result"))? {
        R::Failure(failure) => Err(ControllerError::Remote {
            kind: kind_from_pb(failure.kind()),
            message: failure.message,
            leader: failure.leader,
        }),
        R::RegisterBroker(r) => Ok(Reply::Registered {
            registered_at: r.registered_at,
        }),
        R::BrokerHeartbeat(r) => Ok(Reply::Heartbeat { fenced: r.fenced }),
        R::CreateTopic(r) => Ok(Reply::TopicCreated(
            uuid_from_pb("topic_id", &r.topic_id)
                .map_err(|e| ControllerError::InvalidRequest(e.to_string()))?,
        )),
        R::AlterPartition(r) => Ok(Reply::PartitionAltered(AlteredPartition {
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            isr: r.isr,
        })),
        R::AllocateProducerIds(r) => Ok(Reply::ProducerIds(ProducerIdBlock {
            first: r.first_producer_id,
            size: r.size,
        })),
        R::ControlledShutdown(r) => Ok(Reply::ShutdownReady {
            fenced_at: r.fenced_at,
            moves: LeadershipMoves {
                moved: r.leaders_moved,
                offline: r.left_offline,
            },
        }),
        R::Done(_) => Ok(Reply::Done),
    }
}

fn kind_to_pb(kind: ErrorKind) -> Kind {
    match kind {
        ErrorKind::NotController => Kind::NotController,
        ErrorKind::InvalidTopicName => Kind::InvalidTopicName,
        ErrorKind::TopicExists => Kind::TopicExists,
        ErrorKind::UnknownTopic => Kind::UnknownTopic,
        ErrorKind::InvalidPartitions => Kind::InvalidPartitions,
        ErrorKind::InvalidReplicationFactor => Kind::InvalidReplicationFactor,
        ErrorKind::InvalidConfig => Kind::InvalidConfig,
        ErrorKind::StaleIsrChange => Kind::StaleIsrChange,
        ErrorKind::UnregisteredBroker => Kind::UnregisteredBroker,
        ErrorKind::Conflict => Kind::Conflict,
        ErrorKind::Unavailable => Kind::Unavailable,
        ErrorKind::InvalidRequest => Kind::InvalidRequest,
    }
}

fn kind_from_pb(kind: Kind) -> ErrorKind {
    match kind {
        Kind::NotController => ErrorKind::NotController,
        Kind::InvalidTopicName => ErrorKind::InvalidTopicName,
        Kind::TopicExists => ErrorKind::TopicExists,
        Kind::UnknownTopic => ErrorKind::UnknownTopic,
        Kind::InvalidPartitions => ErrorKind::InvalidPartitions,
        Kind::InvalidReplicationFactor => ErrorKind::InvalidReplicationFactor,
        Kind::InvalidConfig => ErrorKind::InvalidConfig,
        Kind::StaleIsrChange => ErrorKind::StaleIsrChange,
        Kind::UnregisteredBroker => ErrorKind::UnregisteredBroker,
        Kind::Conflict => ErrorKind::Conflict,
        Kind::Unavailable => ErrorKind::Unavailable,
        // A kind from a newer peer is reported as a bad request rather than guessed at.
        Kind::InvalidRequest | Kind::Unspecified => ErrorKind::InvalidRequest,
    }
}

/// Clients of the other nodes' controller service, one connection per address.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    clients: Mutex<HashMap<String, ControllerClient<Channel>>>,
}

impl Peers {
    /// Sends `request` to the node at `address`. `forwarded` tells that node to decide it
    /// itself or refuse, never to pass it on.
    pub(crate) async fn submit(
        &self,
        address: &str,
        request: &Request,
        forwarded: bool,
        timeout: Duration,
    ) -> Result<Reply, ControllerError> {
        let mut client = self.client(address)?;
        let mut message = tonic::Request::new(request.to_pb(forwarded));
        message.set_timeout(timeout);
        match client.submit(message).await {
            Ok(reply) => reply_from_pb(reply.into_inner()),
            Err(status) => {
                // Reconnect next time: the peer may have restarted elsewhere.
                self.lock().remove(address);
                Err(ControllerError::Unavailable(format!(
                    "node at {address} did not answer: {}",
                    status.message()
                )))
            }
        }
    }

    /// Opens broker `broker_id`'s session stream with the node at `address`, which must be
    /// the active controller.
    pub(crate) async fn open_session(
        &self,
        address: &str,
        broker_id: BrokerId,
        incarnation: Uuid,
    ) -> Result<tonic::Streaming<pb::BrokerSessionEvent>, ControllerError> {
        let mut client = self.client(address)?;
        let request = pb::BrokerSessionRequest {
            broker_id,
            incarnation: uuid_to_pb(&incarnation),
        };
        match client.session(request).await {
            Ok(stream) => Ok(stream.into_inner()),
            Err(status) => {
                if status.code() == tonic::Code::Unavailable {
                    self.lock().remove(address);
                }
                Err(ControllerError::Unavailable(format!(
                    "node at {address} did not open a session: {}",
                    status.message()
                )))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ControllerClient<Channel>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self, address: &str) -> Result<ControllerClient<Channel>, ControllerError> {
        if let Some(client) = self.lock().get(address) {
            return Ok(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| {
                ControllerError::Config(format!("{address:?} is not a usable address: {e}"))
            })?
            .connect_timeout(CONNECT_TIMEOUT);
        let client = ControllerClient::new(endpoint.connect_lazy());
        self.lock().insert(address.to_string(), client.clone());
        Ok(client)
    }
}

/// The controller service every node serves on its internal listener: it decides a request
/// if this node is the active controller, and otherwise forwards it there once.
#[derive(Clone)]
pub(crate) struct ControllerService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControllerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerService").finish_non_exhaustive()
    }
}

impl ControllerService {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

#[tonic::async_trait]
impl pb::controller_server::Controller for ControllerService {
    async fn submit(
        &self,
        request: tonic::Request<pb::ControllerRequest>,
    ) -> Result<tonic::Response<pb::ControllerReply>, tonic::Status> {
        let request = request.into_inner();
        let forwarded = request.forwarded;
        let serve = async {
            match Request::from_pb(request) {
                Ok(request) => self.inner.serve(request, forwarded).await,
                Err(error) => Err(error),
            }
        };
        // A stopping node answers what it is deciding with "try elsewhere" rather than keep
        // its listener (and its shutdown) waiting on a quorum it is leaving.
        let mut stopping = self.inner.stopping.subscribe();
        let result = tokio::select! {
            result = serve => result,
            _ = stopping.wait_for(|stopping| *stopping) => Err(ControllerError::Unavailable(
                "this node is stopping; another node takes the request".into(),
            )),
        };
        Ok(tonic::Response::new(reply_to_pb(result)))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: tonic::Request<pb::BrokerSessionRequest>,
    ) -> Result<tonic::Response<SessionStream>, tonic::Status> {
        let request = request.into_inner();
        let incarnation = uuid_from_pb("incarnation", &request.incarnation)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        SessionStream::open(Arc::clone(&self.inner), request.broker_id, incarnation)
            .map(tonic::Response::new)
            .map_err(|e| tonic::Status::failed_precondition(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::decisions::DecisionError;
    use crate::controller::records::Endpoints;

    #[test]
    fn requests_and_replies_survive_the_wire() {
        let requests = [
            Request::RegisterBroker(BrokerRecord {
                broker_id: 4,
                incarnation: Uuid::from_u128(9),
                endpoints: Endpoints {
                    kafka: "a:1".into(),
                    grpc: "a:2".into(),
                    internal: "a:3".into(),
                },
                rack: Some("r1".into()),
            }),
            Request::Heartbeat {
                broker_id: 4,
                incarnation: Uuid::from_u128(9),
                applied_index: 17,
            },
            Request::CreateTopic {
                name: "t".into(),
                partitions: 3,
                replication_factor: 2,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
            Request::DeleteTopic { name: "t".into() },
            Request::CreatePartitions {
                name: "t".into(),
                total: 6,
            },
            Request::AlterPartition(IsrProposal {
                topic_id: Uuid::from_u128(3),
                partition: 1,
                proposer: 2,
                leader_epoch: 5,
                partition_epoch: 8,
                isr: vec![2, 3],
            }),
            Request::AlterTopicConfigs {
                name: "t".into(),
                changes: vec![
                    ConfigChange::Set("retention.ms".into(), "5".into()),
                    ConfigChange::Delete("segment.ms".into()),
                    ConfigChange::Append("cleanup.policy".into(), "compact".into()),
                    ConfigChange::Subtract("cleanup.policy".into(), "delete".into()),
                ],
            },
            Request::AllocateProducerIds {
                broker_id: 4,
                incarnation: Uuid::from_u128(9),
            },
            Request::ControlledShutdown {
                broker_id: 4,
                incarnation: Uuid::from_u128(9),
            },
        ];
        for request in requests {
            let pb = request.to_pb(true);
            assert!(pb.forwarded);
            assert_eq!(Request::from_pb(pb).unwrap(), request);
        }
        let replies = [
            Reply::Registered { registered_at: 12 },
            Reply::Heartbeat { fenced: true },
            Reply::TopicCreated(Uuid::from_u128(77)),
            Reply::PartitionAltered(AlteredPartition {
                leader_epoch: 1,
                partition_epoch: 2,
                isr: vec![1, 2],
            }),
            Reply::ProducerIds(ProducerIdBlock {
                first: 3000,
                size: 1000,
            }),
            Reply::ShutdownReady {
                fenced_at: 40,
                moves: LeadershipMoves {
                    moved: 3,
                    offline: 1,
                },
            },
            Reply::Done,
        ];
        for reply in replies {
            assert_eq!(
                reply_from_pb(reply_to_pb(Ok(reply.clone()))).unwrap(),
                reply
            );
        }
    }

    #[test]
    fn a_failure_keeps_its_kind_message_and_leader() {
        let error = ControllerError::NotController { leader: Some(2) };
        let message = error.to_string();
        let back = reply_from_pb(reply_to_pb(Err(error))).unwrap_err();
        assert_eq!(back.kind(), ErrorKind::NotController);
        assert_eq!(back.to_string(), message);
        assert_eq!(back.leader_hint(), Some(2));
        assert!(back.is_retryable());

        let error = ControllerError::Refused(DecisionError::UnknownTopic("gone".into()));
        let back = reply_from_pb(reply_to_pb(Err(error))).unwrap_err();
        assert_eq!(back.kind(), ErrorKind::UnknownTopic);
        assert_eq!(back.to_string(), "topic \"gone\" does not exist");
        assert!(!back.is_retryable());
    }

    #[test]
    fn a_request_without_content_is_refused_clearly() {
        let error = Request::from_pb(pb::ControllerRequest::default()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert!(error.to_string().contains("names no request"), "{error}");
    }
}
