//! The controller quorum's Raft RPCs over the internal gRPC API: the client side openraft
//! calls (`RaftNetworkFactory`/`RaftNetwork`) and the tonic service that hands requests to the
//! local `Raft`.
//!
//! Failures travel as gRPC statuses. The client reports every failure to openraft as a
//! network error or an unreachable node, which it retries; a refusal by the remote Raft (for
//! example a snapshot chunk at the wrong offset) is retried the same way.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use tonic::transport::{Channel, Endpoint};
use weir_proto::internal::v1 as pb;
use weir_proto::internal::v1::controller_raft_client::ControllerRaftClient;
use weir_proto::internal::v1::controller_raft_server::ControllerRaft;

use super::TypeConfig;
use super::encoding::{
    entry_from_pb, entry_to_pb, log_id_from_pb, log_id_to_pb, snapshot_meta_from_pb,
    snapshot_meta_to_pb, vote_from_pb, vote_to_pb,
};

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes a [`RaftClient`] for each peer openraft talks to.
#[derive(Debug, Clone, Default)]
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = RaftClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> RaftClient {
        RaftClient {
            target,
            address: node.addr.clone(),
            client: None,
        }
    }
}

/// The Raft RPC client of one peer; connects on first use and again after a failure.
#[derive(Debug)]
pub struct RaftClient {
    target: u64,
    address: String,
    client: Option<ControllerRaftClient<Channel>>,
}

/// A failure to reach a peer, for openraft's errors.
#[derive(Debug, thiserror::Error)]
#[error("controller {target} at {address}: {reason}")]
struct PeerError {
    target: u64,
    address: String,
    reason: String,
}

type ClientError<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

fn unreachable<E: std::error::Error>(error: PeerError) -> ClientError<E> {
    RPCError::Unreachable(Unreachable::new(&error))
}

impl RaftClient {
    fn error(&self, reason: impl ToString) -> PeerError {
        PeerError {
            target: self.target,
            address: self.address.clone(),
            reason: reason.to_string(),
        }
    }

    fn client(&mut self) -> Result<ControllerRaftClient<Channel>, PeerError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.address))
            .map_err(|e| self.error(format!("not a usable address: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT);
        let client = ControllerRaftClient::new(endpoint.connect_lazy());
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Forgets the connection after a failure and describes it to openraft.
    fn failed<E: std::error::Error>(&mut self, status: tonic::Status) -> ClientError<E> {
        self.client = None;
        let error = self.error(status.message());
        match status.code() {
            tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&error)),
            _ => RPCError::Network(NetworkError::new(&error)),
        }
    }

    fn bad_reply<E: std::error::Error>(&self, what: &str) -> ClientError<E> {
        RPCError::Network(NetworkError::new(&self.error(format!("bad reply: {what}"))))
    }
}

impl RaftNetwork<TypeConfig> for RaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, ClientError> {
        let request = pb::AppendEntriesRequest {
            vote: Some(vote_to_pb(&rpc.vote)),
            prev_log_id: rpc.prev_log_id.as_ref().map(log_id_to_pb),
            entries: rpc.entries.iter().map(entry_to_pb).collect(),
            leader_commit: rpc.leader_commit.as_ref().map(log_id_to_pb),
        };
        let mut client = self.client().map_err(unreachable)?;
        let reply = client
            .append_entries(request)
            .await
            .map_err(|status| self.failed(status))?
            .into_inner();
        use pb::append_entries_response::Result as Reply;
        match reply.result {
            Some(Reply::Success(_)) => Ok(AppendEntriesResponse::Success),
            Some(Reply::PartialSuccess(p)) => Ok(AppendEntriesResponse::PartialSuccess(
                p.matching.as_ref().map(log_id_from_pb),
            )),
            Some(Reply::Conflict(_)) => Ok(AppendEntriesResponse::Conflict),
            Some(Reply::HigherVote(vote)) => {
                Ok(AppendEntriesResponse::HigherVote(vote_from_pb(&vote)))
            }
            None => Err(self.bad_reply("an append reply without a result")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, ClientError<InstallSnapshotError>> {
        let request = pb::InstallSnapshotRequest {
            vote: Some(vote_to_pb(&rpc.vote)),
            meta: Some(snapshot_meta_to_pb(&rpc.meta)),
            offset: rpc.offset,
            data: rpc.data.into(),
            done: rpc.done,
        };
        let mut client = self.client().map_err(unreachable)?;
        let reply = client
            .install_snapshot(request)
            .await
            .map_err(|status| self.failed(status))?
            .into_inner();
        let vote = reply
            .vote
            .ok_or_else(|| self.bad_reply("a snapshot reply without a vote"))?;
        Ok(InstallSnapshotResponse {
            vote: vote_from_pb(&vote),
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, ClientError> {
        let request = pb::VoteRequest {
            vote: Some(vote_to_pb(&rpc.vote)),
            last_log_id: rpc.last_log_id.as_ref().map(log_id_to_pb),
        };
        let mut client = self.client().map_err(unreachable)?;
        let reply = client
            .vote(request)
            .await
            .map_err(|status| self.failed(status))?
            .into_inner();
        let vote = reply
            .vote
            .ok_or_else(|| self.bad_reply("a vote reply without a vote"))?;
        Ok(VoteResponse {
            vote: vote_from_pb(&vote),
            vote_granted: reply.vote_granted,
            last_log_id: reply.last_log_id.as_ref().map(log_id_from_pb),
        })
    }
}

/// The tonic service that hands peers' Raft RPCs to the local `Raft`.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft<TypeConfig>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

impl RaftService {
    /// A service for `raft`.
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        Self { raft }
    }
}

fn missing(what: &str) -> tonic::Status {
    tonic::Status::invalid_argument(format!("the request lacks its {what}"))
}

fn refused(error: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::unavailable(format!("the controller refused the request: {error}"))
}

#[tonic::async_trait]
impl ControllerRaft for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<pb::AppendEntriesRequest>,
    ) -> Result<tonic::Response<pb::AppendEntriesResponse>, tonic::Status> {
        let request = request.into_inner();
        let entries = request
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let rpc = AppendEntriesRequest {
            vote: vote_from_pb(&request.vote.ok_or_else(|| missing("vote"))?),
            prev_log_id: request.prev_log_id.as_ref().map(log_id_from_pb),
            entries,
            leader_commit: request.leader_commit.as_ref().map(log_id_from_pb),
        };
        use pb::append_entries_response::Result as Reply;
        let result = match self.raft.append_entries(rpc).await.map_err(refused)? {
            AppendEntriesResponse::Success => Reply::Success(pb::RaftBlank {}),
            AppendEntriesResponse::PartialSuccess(matching) => {
                Reply::PartialSuccess(pb::RaftPartialSuccess {
                    matching: matching.as_ref().map(log_id_to_pb),
                })
            }
            AppendEntriesResponse::Conflict => Reply::Conflict(pb::RaftBlank {}),
            AppendEntriesResponse::HigherVote(vote) => Reply::HigherVote(vote_to_pb(&vote)),
        };
        Ok(tonic::Response::new(pb::AppendEntriesResponse {
            result: Some(result),
        }))
    }

    async fn vote(
        &self,
        request: tonic::Request<pb::VoteRequest>,
    ) -> Result<tonic::Response<pb::VoteResponse>, tonic::Status> {
        let request = request.into_inner();
        let rpc = VoteRequest {
            vote: vote_from_pb(&request.vote.ok_or_else(|| missing("vote"))?),
            last_log_id: request.last_log_id.as_ref().map(log_id_from_pb),
        };
        let reply = self.raft.vote(rpc).await.map_err(refused)?;
        Ok(tonic::Response::new(pb::VoteResponse {
            vote: Some(vote_to_pb(&reply.vote)),
            vote_granted: reply.vote_granted,
            last_log_id: reply.last_log_id.as_ref().map(log_id_to_pb),
        }))
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<pb::InstallSnapshotRequest>,
    ) -> Result<tonic::Response<pb::InstallSnapshotResponse>, tonic::Status> {
        let request = request.into_inner();
        let rpc = InstallSnapshotRequest {
            vote: vote_from_pb(&request.vote.ok_or_else(|| missing("vote"))?),
            meta: snapshot_meta_from_pb(request.meta.ok_or_else(|| missing("snapshot meta"))?),
            offset: request.offset,
            data: request.data.to_vec(),
            done: request.done,
        };
        let reply = self.raft.install_snapshot(rpc).await.map_err(refused)?;
        Ok(tonic::Response::new(pb::InstallSnapshotResponse {
            vote: Some(vote_to_pb(&reply.vote)),
        }))
    }
}
