//! Broker session streams: each broker holds a stream open to the active controller for as
//! long as it runs, so the controller learns of a broker's death from its closed connection
//! (the kernel closes a killed process's sockets) and fences it at once, rather than after
//! the session timeout. Heartbeats still carry the session: a hung broker keeps its
//! connection open, and only its missing heartbeats give it away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use uuid::Uuid;
use weir_proto::internal::v1 as pb;

use super::node::Inner;
use super::records::BrokerId;

/// The controller's end of a broker's session stream: it yields nothing and ends only when
/// this node stops; when it is dropped (the broker's connection closed, or the broker opened
/// a newer stream) the active controller hears of it.
pub(crate) struct SessionStream {
    inner: Arc<Inner>,
    broker_id: BrokerId,
    incarnation: Uuid,
    stream: u64,
    /// Completes when this node stops.
    stopping: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl SessionStream {
    /// Opens broker `broker_id`'s session with this node, which must be the active controller
    /// and know the broker as `incarnation`.
    pub(crate) fn open(
        inner: Arc<Inner>,
        broker_id: BrokerId,
        incarnation: Uuid,
    ) -> Result<Self, super::ControllerError> {
        if *inner.stopping.borrow() {
            return Err(super::ControllerError::Unavailable(
                "this node is stopping".into(),
            ));
        }
        let stream = inner.active.open_session(broker_id, incarnation)?;
        tracing::debug!(broker_id, stream, "a broker opened its session stream");
        let mut stopping = inner.stopping.subscribe();
        Ok(Self {
            inner,
            broker_id,
            incarnation,
            stream,
            stopping: Box::pin(async move {
                // A dropped sender means the node is gone: stop too.
                let _stopped = stopping.wait_for(|stopping| *stopping).await;
            }),
        })
    }
}

impl Stream for SessionStream {
    type Item = Result<pb::BrokerSessionEvent, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Nothing is ever sent: the stream exists for its end.
        self.stopping.as_mut().poll(cx).map(|()| None)
    }
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        if *self.inner.stopping.borrow() {
            // This controller is stopping: the next one starts the sessions afresh.
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // The runtime is going away, and the controller with it.
            return;
        };
        let inner = Arc::clone(&self.inner);
        let (broker_id, incarnation, stream) = (self.broker_id, self.incarnation, self.stream);
        runtime.spawn(async move {
            if let Err(e) = inner
                .active
                .session_closed(broker_id, incarnation, stream)
                .await
            {
                tracing::warn!(
                    broker_id,
                    error = %e,
                    "could not fence a broker whose session stream closed; its session \
                     timeout will"
                );
            }
        });
    }
}

/// The broker's end: keeps a session stream open to whichever node is the active controller,
/// opening a new one when the controller changes or the stream breaks, until the task is
/// aborted. A broker that is the active controller itself needs none (its death ends both).
/// The controller refuses a stream until it knows this incarnation's registration.
pub(crate) async fn hold_session(inner: Arc<Inner>, broker_id: BrokerId, incarnation: Uuid) {
    let mut leaders = inner.raft.metrics();
    loop {
        let leader = leaders.borrow_and_update().current_leader;
        let address = leader
            .filter(|&id| id != inner.node_id)
            .and_then(|id| inner.address_of(id));
        if let Some(address) = address {
            match inner
                .peers
                .open_session(&address, broker_id, incarnation)
                .await
            {
                Ok(mut stream) => {
                    tracing::debug!(broker_id, %address, "holding a session stream");
                    tokio::select! {
                        // The controller sends nothing; any end means it is gone or closed it.
                        end = stream.message() => {
                            tracing::debug!(broker_id, ?end, "the session stream ended");
                        }
                        () = leader_changes(&mut leaders, leader) => continue,
                    }
                }
                Err(e) => {
                    tracing::debug!(broker_id, error = %e, "could not open a session stream");
                }
            }
        }
        // No other active controller known, it refused (it may not have applied this
        // registration yet, or be stopping), or the stream ended: try again when the leader
        // changes, or shortly.
        tokio::select! {
            () = leader_changes(&mut leaders, leader) => {}
            () = tokio::time::sleep(SESSION_RETRY) => {}
        }
    }
}

/// How long a broker waits before opening a refused or broken session stream again.
const SESSION_RETRY: Duration = Duration::from_millis(200);

/// Completes when the active controller is no longer `leader` (or Raft stopped, in which
/// case it never completes: the broker is stopping too).
async fn leader_changes(
    leaders: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    leader: Option<u64>,
) {
    if leaders
        .wait_for(|m| m.current_leader != leader)
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}
