//! What the client knows of the cluster: one gRPC channel per broker address, the brokers, the
//! partitions' leaders, and groups' coordinators, refreshed when a broker says they moved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::broker_client::BrokerClient;
use weir_proto::v1::groups_client::GroupsClient;

use crate::error::{BrokerError, Error, Result};

/// The largest gRPC message the client accepts: a fetch answers up to its `max_bytes`.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How a [`Client`](crate::Client) connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Brokers' gRPC addresses (`host:port`) to learn the cluster from; any one that answers
    /// is enough.
    pub bootstrap: Vec<String>,
    /// How long a connection attempt to one broker may take.
    pub connect_timeout: Duration,
    /// How long one request may take (a long poll adds its own wait to this).
    pub request_timeout: Duration,
    /// How long the client keeps retrying a request that failed for a reason that passes
    /// (a leader moving, a broker restarting) before it gives up.
    pub retry_timeout: Duration,
    /// The first wait between retries; it doubles up to a second.
    pub retry_backoff: Duration,
    /// Who the client is, as the brokers show it (group members' `client_id`).
    pub client_id: String,
}

impl ClientConfig {
    /// The defaults, with `bootstrap` a comma-separated list of `host:port`.
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(50),
            client_id: "weir-client".to_string(),
        }
    }
}

/// One partition's leader as the client last learned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaderInfo {
    pub(crate) leader: Option<i32>,
    pub(crate) leader_epoch: i32,
}

/// The client's view of the cluster, shared by everything made from one client.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) config: ClientConfig,
    channels: Mutex<HashMap<String, Channel>>,
    view: Mutex<View>,
}

#[derive(Debug, Default)]
struct View {
    /// Broker id to gRPC address.
    brokers: HashMap<i32, String>,
    /// Topic to its partitions' leaders.
    topics: HashMap<String, Arc<Vec<LeaderInfo>>>,
    /// Group to its coordinator's gRPC address.
    coordinators: HashMap<String, String>,
}

impl Cluster {
    /// Connects to the first bootstrap broker that answers and learns the brokers.
    pub(crate) async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap.is_empty() {
            return Err(Error::invalid(
                "bootstrap",
                "no broker address given: pass one or more host:port of brokers' gRPC listeners",
            ));
        }
        for address in &config.bootstrap {
            if !address.contains(':') {
                return Err(Error::invalid(
                    "bootstrap",
                    format!("{address:?} is not host:port (e.g. 127.0.0.1:9093)"),
                ));
            }
        }
        let cluster = Arc::new(Cluster {
            config,
            channels: Mutex::new(HashMap::new()),
            view: Mutex::new(View::default()),
        });
        cluster.metadata(Vec::new()).await?;
        Ok(cluster)
    }

    /// The channel to `address`, connecting on first use.
    pub(crate) async fn channel(&self, address: &str) -> Result<Channel> {
        if let Some(channel) = self.channels.lock().expect("not poisoned").get(address) {
            return Ok(channel.clone());
        }
        let unreachable = |reason: String| Error::Unreachable {
            address: address.to_string(),
            reason,
        };
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| unreachable(format!("not a valid address: {e}")))?
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.request_timeout)
            .tcp_nodelay(true)
            .http2_adaptive_window(true);
        let channel = endpoint.connect().await.map_err(|e| {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            unreachable(reason)
        })?;
        self.channels
            .lock()
            .expect("not poisoned")
            .insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// Forgets the channel to `address` (its broker went away), so the next call reconnects.
    pub(crate) fn forget(&self, address: &str) {
        self.channels.lock().expect("not poisoned").remove(address);
    }

    /// Every broker address the client may ask: the known brokers, then the bootstrap list.
    fn addresses(&self) -> Vec<String> {
        let view = self.view.lock().expect("not poisoned");
        let mut addresses: Vec<String> = view.brokers.values().cloned().collect();
        addresses.sort();
        for address in &self.config.bootstrap {
            if !addresses.contains(address) {
                addresses.push(address.clone());
            }
        }
        addresses
    }

    /// Calls `call` on the first broker that can be reached.
    pub(crate) async fn any_broker<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut last = None;
        for address in self.addresses() {
            let channel = match self.channel(&address).await {
                Ok(channel) => channel,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match call(channel).await {
                Err(Error::Broker(broker)) if is_transport(&broker) => {
                    self.forget(&address);
                    // Name the address: "transport error" alone does not say where.
                    last = Some(Error::Unreachable {
                        address: address.clone(),
                        reason: broker.to_string(),
                    });
                }
                result => return result,
            }
        }
        Err(last.expect("there is at least one bootstrap address"))
    }

    /// The cluster's metadata for `topics` (every topic when empty), which also refreshes what
    /// the client knows of the brokers and of those topics' leaders.
    pub(crate) async fn metadata(&self, topics: Vec<String>) -> Result<pb::MetadataResponse> {
        let response = self
            .any_broker(|channel| {
                let topics = topics.clone();
                async move {
                    let mut admin = AdminClient::new(channel);
                    Ok(admin
                        .metadata(pb::MetadataRequest { topics })
                        .await?
                        .into_inner())
                }
            })
            .await?;
        let mut view = self.view.lock().expect("not poisoned");
        view.brokers = response
            .brokers
            .iter()
            .map(|b| (b.id, b.grpc_address.clone()))
            .collect();
        for topic in &response.topics {
            if topic.error.is_some() {
                view.topics.remove(&topic.name);
                continue;
            }
            let leaders = topic
                .partitions
                .iter()
                .map(|p| LeaderInfo {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                })
                .collect();
            view.topics.insert(topic.name.clone(), Arc::new(leaders));
        }
        Ok(response)
    }

    /// The partitions of `topic` and their leaders, from the cache or the cluster.
    pub(crate) async fn partitions(&self, topic: &str) -> Result<Arc<Vec<LeaderInfo>>> {
        if let Some(known) = self.cached(topic) {
            return Ok(known);
        }
        self.metadata(vec![topic.to_string()]).await?;
        self.cached(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    fn cached(&self, topic: &str) -> Option<Arc<Vec<LeaderInfo>>> {
        self.view
            .lock()
            .expect("not poisoned")
            .topics
            .get(topic)
            .cloned()
    }

    /// Forgets what the client knew of `topic`, so the next call asks the cluster.
    pub(crate) fn invalidate(&self, topic: &str) {
        self.view.lock().expect("not poisoned").topics.remove(topic);
    }

    /// The leader of a partition and its gRPC address, asking the cluster when the cache has
    /// no leader for it.
    pub(crate) async fn leader(&self, topic: &str, partition: i32) -> Result<(LeaderInfo, String)> {
        for attempt in 0..2 {
            if attempt > 0 {
                self.invalidate(topic);
            }
            let partitions = self.partitions(topic).await?;
            let info = usize::try_from(partition)
                .ok()
                .and_then(|p| partitions.get(p))
                .copied()
                .ok_or_else(|| Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition,
                    count: partitions.len(),
                })?;
            let Some(leader) = info.leader else { continue };
            let address = self.broker_address(leader);
            if let Some(address) = address {
                return Ok((info, address));
            }
        }
        Err(Error::Broker(BrokerError {
            code: tonic::Code::Unavailable,
            kafka_code: Some(kafka_protocol::ResponseError::LeaderNotAvailable.code()),
            message: format!(
                "LEADER_NOT_AVAILABLE: partition {partition} of topic {topic:?} has no live leader"
            ),
        }))
    }

    fn broker_address(&self, id: i32) -> Option<String> {
        self.view
            .lock()
            .expect("not poisoned")
            .brokers
            .get(&id)
            .cloned()
    }

    /// A `Broker` service stub on the leader of a partition, with its leader epoch.
    pub(crate) async fn leader_client(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(LeaderInfo, String, BrokerClient<Channel>)> {
        let (info, address) = self.leader(topic, partition).await?;
        let channel = self.channel(&address).await?;
        let client = BrokerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok((info, address, client))
    }

    /// The gRPC address of a group's coordinator, from the cache or FindCoordinator.
    pub(crate) async fn coordinator(&self, group: &str) -> Result<String> {
        if let Some(address) = self
            .view
            .lock()
            .expect("not poisoned")
            .coordinators
            .get(group)
        {
            return Ok(address.clone());
        }
        let found = self
            .any_broker(|channel| async move {
                Ok(GroupsClient::new(channel)
                    .find_coordinator(pb::FindCoordinatorRequest {
                        group: group.to_string(),
                    })
                    .await?
                    .into_inner())
            })
            .await?;
        self.view
            .lock()
            .expect("not poisoned")
            .coordinators
            .insert(group.to_string(), found.grpc_address.clone());
        Ok(found.grpc_address)
    }

    /// A `Groups` service stub on a group's coordinator.
    pub(crate) async fn coordinator_client(&self, group: &str) -> Result<GroupsClient<Channel>> {
        let address = self.coordinator(group).await?;
        Ok(GroupsClient::new(self.channel(&address).await?))
    }

    /// Calls `call` on the group's coordinator, finding it again and retrying while it moves
    /// (or another failure that passes lasts).
    pub(crate) async fn on_coordinator<T, F, Fut>(
        &self,
        group: &str,
        what: &str,
        call: F,
    ) -> Result<T>
    where
        F: Fn(GroupsClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.retry(what, || async {
            let groups = self.coordinator_client(group).await?;
            let result = call(groups).await;
            if let Err(e) = &result
                && e.is_stale_coordinator()
            {
                self.invalidate_coordinator(group);
            }
            result
        })
        .await
    }

    /// Forgets a group's coordinator, so the next call finds it again.
    pub(crate) fn invalidate_coordinator(&self, group: &str) {
        let removed = self
            .view
            .lock()
            .expect("not poisoned")
            .coordinators
            .remove(group);
        if let Some(address) = removed {
            self.forget(&address);
        }
    }

    /// The gRPC addresses of every live broker, as last learned.
    pub(crate) fn broker_addresses(&self) -> Vec<(i32, String)> {
        let view = self.view.lock().expect("not poisoned");
        let mut brokers: Vec<(i32, String)> = view
            .brokers
            .iter()
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        brokers.sort();
        brokers
    }

    /// Runs `call` until it succeeds, fails for good, or [`ClientConfig::retry_timeout`]
    /// passes, backing off between tries; `on_error` sees each retriable failure first (to
    /// refresh what went stale).
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.retry_timeout;
        let mut backoff = self.config.retry_backoff;
        loop {
            match call().await {
                Err(e) if e.is_retriable() => {
                    if tokio::time::Instant::now() + backoff > deadline {
                        tracing::debug!(what, error = %e, "giving up retrying");
                        return Err(e);
                    }
                    tracing::debug!(what, error = %e, ?backoff, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                result => return result,
            }
        }
    }
}

/// Whether a refusal came from the transport (the connection broke, or what answers is not
/// a Weir gRPC listener) rather than from a broker, which always names a Kafka error.
fn is_transport(broker: &BrokerError) -> bool {
    broker.kafka_code.is_none()
        && matches!(
            broker.code,
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Unimplemented
        )
}
