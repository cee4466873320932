//! The broker node's configuration: its command line, its config file, its `WEIR_*`
//! environment variables, and the typed, validated [`NodeConfig`] they produce.
//!
//! # Layers
//!
//! Each layer overrides the one before it (DESIGN section 4):
//!
//! ```text
//! built-in defaults  <  config file (--config FILE, WEIR_CONFIG)  <  WEIR_* variables  <  flags
//! ```
//!
//! Every key is listed once, in the `node_config!` invocation below: its name, type, default
//! and documentation. The config file key is that name (`node_id = 1`), the environment
//! variable is `WEIR_` and the name in upper case (`WEIR_NODE_ID`), and the few keys a cluster
//! needs also have a flag (`--node-id`, [`BrokerArgs`]). A default may depend on keys listed
//! before it: the advertised addresses default to the listen addresses, and the controller
//! voters to this node alone.
//!
//! # Where the environment is read
//!
//! Two readers see the environment, and they agree:
//! - clap's `env` fills a flag that was not given from its variable, so [`BrokerArgs`] holds
//!   "the flag, else its variable" and `--help` shows each variable. Clap itself prefers the
//!   flag, which is exactly the "flags over variables" rule.
//! - [`NodeConfig::load`] reads `WEIR_<KEY>` for every key through the lookup it is given,
//!   and lays those values over the file, before the values of [`BrokerArgs`].
//!
//! With the process environment as the lookup ([`NodeConfig::load_from_process_env`]) a
//! flagged key's variable is seen by both readers with the same value, so the order of layers
//! holds whichever reader saw it. Tests must not change the process environment (threads share
//! it), so they parse flags with [`BrokerArgs::try_parse_from_ignoring_env`], which switches
//! clap's `env` off, and pass a lookup of their own to [`NodeConfig::load`]: every layer is then
//! under the test's control.
//!
//! An empty variable or flag value (`WEIR_RACK=`, as templates often produce) counts as not
//! set. A value that does not convert is reported with its key and where it came from; the
//! merged configuration is then checked by [`NodeConfig::validate`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::value::ConfigValue;
use super::{ConfigError, LogConfig, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, StorageConfig, Voter};

/// The variable that names the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "WEIR_CONFIG";

/// The command line of `weir-broker`. Its names are a public interface (DESIGN section 4).
///
/// Every field is an `Option`: a flag that was not given (nor its variable) leaves the key to
/// the config file and the defaults. Values are kept as text and converted by
/// [`NodeConfig::load`], so a bad value is reported the same way from every layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Parser)]
#[command(
    name = "weir-broker",
    version,
    about = "A Weir broker node: a partitioned, replicated log that speaks the Kafka protocol",
    long_about = "A Weir broker node: a partitioned, replicated log that speaks the Kafka \
        protocol and a gRPC API.\n\n\
        With no arguments it is a single node (controller and broker) that keeps its data in \
        ./weir-data and listens on 127.0.0.1. Settings come from built-in defaults, then the \
        config file (--config), then WEIR_* environment variables, then these flags; each \
        overrides the ones before. Every config file key can also be set as WEIR_<KEY> \
        (for example WEIR_NUM_PARTITIONS=3)."
)]
pub struct BrokerArgs {
    /// TOML config file; its keys are the snake_case names, e.g. `node_id = 1` [default: none]
    #[arg(long, env = CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id, unique in the cluster, 0 or more [default: 1]
    #[arg(
        long,
        env = "WEIR_NODE_ID",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub node_id: Option<String>,
    /// Directory holding this node's data; created if missing [default: ./weir-data]
    #[arg(long, env = "WEIR_DATA_DIR", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Listen address of the Kafka protocol [default: 127.0.0.1:9092]
    #[arg(long, env = "WEIR_KAFKA_ADDR", value_name = "IP:PORT")]
    pub kafka_addr: Option<String>,
    /// Listen address of the public gRPC API [default: 127.0.0.1:9093]
    #[arg(long, env = "WEIR_GRPC_ADDR", value_name = "IP:PORT")]
    pub grpc_addr: Option<String>,
    /// Listen address of the internal gRPC API: Raft, replication, heartbeats
    /// [default: 127.0.0.1:9094]
    #[arg(long, env = "WEIR_INTERNAL_ADDR", value_name = "IP:PORT")]
    pub internal_addr: Option<String>,
    /// Listen address of /metrics, /healthz and /readyz [default: 127.0.0.1:9644]
    #[arg(long, env = "WEIR_HTTP_ADDR", value_name = "IP:PORT")]
    pub http_addr: Option<String>,
    /// Address Kafka clients are told to connect to [default: the --kafka-addr]
    #[arg(long, env = "WEIR_ADVERTISED_KAFKA_ADDR", value_name = "HOST:PORT")]
    pub advertised_kafka_addr: Option<String>,
    /// Address gRPC clients are told to connect to [default: the --grpc-addr]
    #[arg(long, env = "WEIR_ADVERTISED_GRPC_ADDR", value_name = "HOST:PORT")]
    pub advertised_grpc_addr: Option<String>,
    /// Address other nodes reach this node's internal API at [default: the --internal-addr]
    #[arg(long, env = "WEIR_ADVERTISED_INTERNAL_ADDR", value_name = "HOST:PORT")]
    pub advertised_internal_addr: Option<String>,
    /// Controller quorum, e.g. "1@host-1:9094,2@host-2:9094,3@host-3:9094"; a node not in it
    /// is a broker only [default: this node alone, at its --advertised-internal-addr]
    #[arg(long, env = "WEIR_CONTROLLER_VOTERS", value_name = "LIST")]
    pub controller_voters: Option<String>,
    /// Rack (or zone) of this node; replicas of a partition are spread across racks
    /// [default: none]
    #[arg(long, env = "WEIR_RACK", value_name = "NAME")]
    pub rack: Option<String>,
}

impl BrokerArgs {
    /// Parses a command line like `try_parse_from`, but ignores the environment: only the
    /// flags given count. For tests, which pass their environment to [`NodeConfig::load`]
    /// instead of reading the process's.
    pub fn try_parse_from_ignoring_env<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let mut matches = Self::command()
            .mut_args(|arg| arg.env(None::<&'static str>))
            .try_get_matches_from(args)?;
        Self::from_arg_matches_mut(&mut matches)
    }

    /// The flagged keys and their values, by config key name.
    fn values(&self) -> [(&'static str, Option<&OsStr>); 11] {
        fn text(value: &Option<String>) -> Option<&OsStr> {
            value.as_deref().map(OsStr::new)
        }
        [
            ("node_id", text(&self.node_id)),
            ("data_dir", self.data_dir.as_deref().map(Path::as_os_str)),
            ("kafka_addr", text(&self.kafka_addr)),
            ("grpc_addr", text(&self.grpc_addr)),
            ("internal_addr", text(&self.internal_addr)),
            ("http_addr", text(&self.http_addr)),
            ("advertised_kafka_addr", text(&self.advertised_kafka_addr)),
            ("advertised_grpc_addr", text(&self.advertised_grpc_addr)),
            (
                "advertised_internal_addr",
                text(&self.advertised_internal_addr),
            ),
            ("controller_voters", text(&self.controller_voters)),
            ("rack", text(&self.rack)),
        ]
    }
}

/// Defines [`NodeConfig`], the partial configuration one layer sets, and the list of keys,
/// from one table of `key: Type = default;` entries. A default may use keys listed before it.
macro_rules! node_config {
    ($(
        $(#[doc = $doc:literal])*
        $key:ident: $ty:ty = $default:expr;
    )*) => {
        /// The configuration of one broker node: where it keeps its data, where it listens,
        /// the controller quorum, and the cluster-wide topic defaults and limits (named after
        /// Kafka's keys, units last).
        ///
        /// Build it with [`NodeConfig::load`]; [`NodeConfig::default`] is the built-in
        /// defaults: a single node on localhost.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct NodeConfig {
            $( $(#[doc = $doc])* pub $key: $ty, )*
        }

        /// What one or more layers set; `None` leaves the key to the default.
        #[derive(Debug, Default)]
        struct Partial {
            $( $key: Option<$ty>, )*
        }

        impl NodeConfig {
            /// Every key, in the order of the table: the config file keys, and with `WEIR_`
            /// before them in upper case, the environment variables.
            pub const KEYS: &'static [&'static str] = &[$( stringify!($key) ),*];
        }

        impl Partial {
            /// Converts `raw` and sets `key` to it, returning the key's static name.
            fn set(&mut self, key: &str, raw: &Raw<'_>) -> Result<&'static str, SetError> {
                match key {
                    $( stringify!($key) => {
                        let value = raw.convert().map_err(|reason| SetError::Invalid {
                            key: stringify!($key),
                            reason,
                        })?;
                        self.$key = Some(value);
                        Ok(stringify!($key))
                    } )*
                    _ => Err(SetError::Unknown),
                }
            }

            /// The configuration: what was set, and the defaults for the rest.
            fn resolve(self) -> NodeConfig {
                $( let $key: $ty = match self.$key {
                    Some(value) => value,
                    None => $default,
                }; )*
                NodeConfig { $( $key ),* }
            }
        }
    };
}

node_config! {
    /// This node's id, unique in the cluster: a Kafka node id, so 0 to 2^31 - 1.
    node_id: i32 = 1;
    /// Directory holding this node's partition logs and metadata; created if missing.
    data_dir: PathBuf = PathBuf::from("./weir-data");
    /// Listen address of the Kafka wire protocol.
    kafka_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9092));
    /// Listen address of the public gRPC API (`weir.v1`).
    grpc_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9093));
    /// Listen address of the internal gRPC API (`weir.internal.v1`): Raft, replication and
    /// broker heartbeats.
    internal_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9094));
    /// Listen address of the HTTP endpoints `/metrics`, `/healthz` and `/readyz`.
    http_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9644));
    /// `host:port` Kafka clients are told to connect to; defaults to `kafka_addr`.
    advertised_kafka_addr: String = kafka_addr.to_string();
    /// `host:port` gRPC clients are told to connect to; defaults to `grpc_addr`.
    advertised_grpc_addr: String = grpc_addr.to_string();
    /// `host:port` other nodes reach this node's internal API at; defaults to `internal_addr`.
    advertised_internal_addr: String = internal_addr.to_string();
    /// The controller quorum's voters (`"1@host:9094,2@host:9094,3@host:9094"` in a file or
    /// variable). A node not listed follows the metadata log as a broker only. Defaults to
    /// this node alone, at its advertised internal address.
    controller_voters: Vec<Voter> = vec![Voter {
        // A negative id is refused by `validate`, which names `node_id`.
        node_id: u64::try_from(node_id).unwrap_or_default(),
        address: advertised_internal_addr.clone(),
    }];
    /// What this node does: `broker`, `controller` or `broker,controller`. A controller is a
    /// voter of the metadata quorum and must be in `controller_voters`; a broker holds
    /// partitions. Defaults to both for a listed voter, and to broker for any other node.
    /// Kafka: `process.roles`.
    process_roles: ProcessRoles = ProcessRoles {
        broker: true,
        controller: controller_voters
            .iter()
            .any(|v| i64::try_from(v.node_id) == Ok(i64::from(node_id))),
    };
    /// The rack (or zone) of this node; replica placement spreads partitions across racks.
    /// Kafka: `broker.rack`.
    rack: Option<String> = None;
    /// Partitions of an automatically created topic, and of a created topic that names
    /// none. Kafka: `num.partitions`.
    num_partitions: i32 = 1;
    /// Replicas of each partition of a topic that names no replication factor.
    /// Kafka: `default.replication.factor`.
    default_replication_factor: i32 = 1;
    /// Replicas that must have a write before an `acks=all` produce succeeds, for topics that
    /// do not set `min.insync.replicas`. Kafka: `min.insync.replicas`.
    min_insync_replicas: i32 = 1;
    /// A follower that has not caught up with its leader's log end for this long leaves the
    /// ISR. Kafka: `replica.lag.time.max.ms`.
    replica_lag_time_max_ms: u64 = 30_000;
    /// How long a follower's fetch waits at the leader for new records.
    /// Kafka: `replica.fetch.wait.max.ms`.
    replica_fetch_wait_max_ms: u32 = 500;
    /// The most record bytes a follower fetches per partition at once (at least one batch
    /// comes, whatever its size). Kafka: `replica.fetch.max.bytes`.
    replica_fetch_max_bytes: u32 = 1_048_576;
    /// The most record bytes in one answer to a follower's fetch.
    /// Kafka: `replica.fetch.response.max.bytes`.
    replica_fetch_response_max_bytes: u32 = 10_485_760;
    /// How long a follower waits before fetching again after a failure.
    /// Kafka: `replica.fetch.backoff.ms` (1000 there; Weir retries sooner, as failover waits
    /// on it).
    replica_fetch_backoff_ms: u64 = 100;
    /// How often every partition's high watermark is written to
    /// `replication-offset-checkpoint`. Kafka: `replica.high.watermark.checkpoint.interval.ms`.
    replica_high_watermark_checkpoint_interval_ms: u64 = 5000;
    /// Create a topic when a client produces to or asks for the metadata of one that does not
    /// exist. Kafka: `auto.create.topics.enable`.
    auto_create_topics: bool = true;
    /// Size of a segment file, for topics that do not set `segment.bytes`.
    /// Kafka: `log.segment.bytes`.
    log_segment_bytes: u64 = 1024 * 1024 * 1024;
    /// Delete log segments older than this; -1 keeps them forever. Kafka: `log.retention.ms`.
    log_retention_ms: i64 = 7 * 24 * 60 * 60 * 1000;
    /// Delete a partition's oldest segments while it is larger than this; -1 for no limit.
    /// Kafka: `log.retention.bytes`.
    log_retention_bytes: i64 = -1;
    /// Compact the logs of topics whose `cleanup.policy` includes `compact`.
    /// Kafka: `log.cleaner.enable`.
    log_cleaner_enable: bool = true;
    /// The most bytes per second the log cleaner reads and writes (64 MiB/s by default, so
    /// compaction never takes the disk from producers and consumers).
    /// Kafka: `log.cleaner.io.max.bytes.per.second`.
    log_cleaner_io_max_bytes_per_second: u64 = 64 * 1024 * 1024;
    /// How often the log cleaner looks for logs dirty enough to compact.
    /// Kafka: `log.cleaner.backoff.ms`.
    log_cleaner_backoff_ms: u64 = 15_000;
    /// The largest record batch a topic accepts, for topics that do not set
    /// `max.message.bytes`. Kafka: `message.max.bytes`.
    message_max_bytes: i32 = 1_048_588;
    /// An idempotent producer whose last batch in a partition is this old is forgotten there
    /// (a retry after that is written again). Kafka: `producer.id.expiration.ms`.
    producer_id_expiration_ms: i64 = 86_400_000;
    /// How often partitions look for producers to forget.
    /// Kafka: `producer.id.expiration.check.interval.ms`.
    producer_id_expiration_check_interval_ms: u64 = 600_000;
    /// How often each partition checks whether its log rolled a segment since its last
    /// producer state snapshot, and writes one if so (what bounds the log read at start).
    producer_snapshot_check_interval_ms: u64 = 10_000;
    /// A broker whose heartbeats stop for this long is fenced by the controller, and its
    /// partitions get new leaders. Kafka: `broker.session.timeout.ms` (9 s there; shorter
    /// here, since it bounds how long a hung broker's partitions stay unavailable).
    broker_session_timeout_ms: u64 = 3000;
    /// How often a broker heartbeats to the controller. Kafka: `broker.heartbeat.interval.ms`
    /// (2 s there).
    broker_heartbeat_interval_ms: u64 = 500;
    /// On SIGTERM, ask the controller to move this broker's leaderships to other in-sync
    /// replicas before stopping, so clients only refresh their metadata.
    /// Kafka: `controlled.shutdown.enable`.
    controlled_shutdown_enable: bool = true;
    /// How long a controlled shutdown may wait for the controller before the broker stops
    /// anyway (its partitions then move when its session ends).
    controlled_shutdown_timeout_ms: u64 = 5000;
    /// Periodically give partitions back to their preferred leader (the first replica) when
    /// it is live and in sync, so leadership stays spread over the brokers after restarts.
    /// Kafka: `auto.leader.rebalance.enable`.
    auto_leader_rebalance_enable: bool = true;
    /// How often the active controller looks for partitions to give back to their preferred
    /// leaders. Kafka: `leader.imbalance.check.interval.seconds` (300 s there).
    leader_imbalance_check_interval_ms: u64 = 300_000;
    /// Partitions of `__consumer_offsets`, the internal topic that holds consumer groups and
    /// their committed offsets; fixed when the topic is created on first use. Kafka:
    /// `offsets.topic.num.partitions` (50 there; each partition here preallocates a segment).
    offsets_topic_num_partitions: i32 = 16;
    /// Replicas of each `__consumer_offsets` partition, at most the number of live brokers
    /// when the topic is created. Kafka: `offsets.topic.replication.factor`.
    offsets_topic_replication_factor: i32 = 3;
    /// Segment size of `__consumer_offsets`, a compacted topic of small records.
    /// Kafka: `offsets.topic.segment.bytes` (100 MiB there).
    offsets_topic_segment_bytes: u64 = 16 * 1024 * 1024;
    /// The shortest session timeout a classic group member may ask for.
    /// Kafka: `group.min.session.timeout.ms`.
    group_min_session_timeout_ms: i32 = 6000;
    /// The longest session timeout a classic group member may ask for.
    /// Kafka: `group.max.session.timeout.ms`.
    group_max_session_timeout_ms: i32 = 1_800_000;
    /// How long the coordinator waits for more members to join an empty classic group before
    /// its first rebalance completes. Kafka: `group.initial.rebalance.delay.ms`.
    group_initial_rebalance_delay_ms: i32 = 3000;
    /// The most members one group may have. Kafka: `group.max.size`.
    group_max_size: i32 = i32::MAX;
    /// The session timeout of members of groups on the consumer protocol (KIP-848).
    /// Kafka: `group.consumer.session.timeout.ms`.
    group_consumer_session_timeout_ms: i32 = 45_000;
    /// How often members of groups on the consumer protocol heartbeat.
    /// Kafka: `group.consumer.heartbeat.interval.ms`.
    group_consumer_heartbeat_interval_ms: i32 = 5000;
    /// The largest metadata string a committed offset may carry.
    /// Kafka: `offset.metadata.max.bytes`.
    offset_metadata_max_bytes: i32 = 4096;
    /// Committed offsets of a group that has had no members this long are deleted.
    /// Kafka: `offsets.retention.minutes` (7 days).
    offsets_retention_ms: i64 = 7 * 24 * 3_600_000;
    /// How often coordinators look for expired offsets.
    /// Kafka: `offsets.retention.check.interval.ms`.
    offsets_retention_check_interval_ms: u64 = 600_000;
    /// How often the active controller sends Raft heartbeats to the other voters.
    controller_heartbeat_interval_ms: u64 = 100;
    /// A voter that hears no active controller for a random time between this and
    /// `controller_election_timeout_max_ms` starts an election.
    controller_election_timeout_min_ms: u64 = 300;
    /// See `controller_election_timeout_min_ms`.
    controller_election_timeout_max_ms: u64 = 600;
    /// Export the per-partition metrics (log end offset, high watermark, ISR size, each
    /// follower's lag) only while this broker holds at most this many partitions, so that a
    /// large broker does not flood Prometheus; the totals are always exported. 0: never.
    metrics_partition_series_max: u64 = 1000;
}

impl Default for NodeConfig {
    /// The built-in defaults: node 1 alone, on localhost, keeping its data in `./weir-data`.
    fn default() -> Self {
        Partial::default().resolve()
    }
}

/// Why the node's configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// The config file could not be read.
    #[error(
        "cannot read the config file {}: {error}; check the path given with --config or {CONFIG_ENV}",
        path.display()
    )]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("the config file {} is not valid TOML: {error}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's message, with the line and column.
        error: toml::de::Error,
    },
    /// The config file sets a key that does not exist.
    #[error("unknown key {key:?} in the config file {}; {hint}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, with dots between the names of nested tables.
        key: String,
        /// The key that was probably meant, or the list of keys.
        hint: String,
    },
    /// A value that does not convert to its key's type, or a configuration that
    /// [`NodeConfig::validate`] refuses.
    #[error("{error} ({origin})")]
    Invalid {
        /// The key, the value and what it must be instead. (Not named `source`: the message
        /// includes it, and a source would print it twice.)
        error: ConfigError,
        /// Where the value came from.
        origin: Origin,
    },
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No layer set it: the built-in default (or one derived from other keys).
    Default,
    /// The config file.
    File(PathBuf),
    /// An environment variable, read by [`NodeConfig::load`]'s lookup.
    Env(String),
    /// [`BrokerArgs`]: the flag, or clap's reading of its variable.
    CommandLine {
        /// The flag, `--node-id`.
        flag: String,
        /// Its variable, `WEIR_NODE_ID`.
        env: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "not set, so the default"),
            Origin::File(path) => write!(f, "set in the config file {}", path.display()),
            Origin::Env(name) => write!(f, "set by the environment variable {name}"),
            Origin::CommandLine { flag, env } => write!(f, "set by {flag} or {env}"),
        }
    }
}

impl NodeConfig {
    /// A single node that is its own only controller voter, keeps its data in `dir`, binds
    /// every listener to a free loopback port (advertising the port it got), and heartbeats
    /// and holds elections every few tens of milliseconds: a node embedded in a test or a
    /// tool, which is live within a second of starting. Every other setting is the default.
    pub fn single_node_on_loopback(dir: &Path) -> NodeConfig {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        NodeConfig {
            data_dir: dir.to_path_buf(),
            kafka_addr: any_port,
            grpc_addr: any_port,
            internal_addr: any_port,
            http_addr: any_port,
            advertised_kafka_addr: any_port.to_string(),
            advertised_grpc_addr: any_port.to_string(),
            advertised_internal_addr: any_port.to_string(),
            broker_heartbeat_interval_ms: 50,
            controller_heartbeat_interval_ms: 50,
            controller_election_timeout_min_ms: 150,
            controller_election_timeout_max_ms: 300,
            controller_voters: vec![Voter {
                node_id: 1,
                address: any_port.to_string(),
            }],
            ..NodeConfig::default()
        }
    }

    /// Loads the configuration from the defaults, the config file (`args.config`, else the
    /// variable `WEIR_CONFIG`), the `WEIR_<KEY>` variables that `env` returns, and `args`,
    /// each overriding the ones before; then validates it.
    ///
    /// `env` looks up one environment variable by name; see the module documentation for
    /// why it is a parameter.
    pub fn load(
        args: &BrokerArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, NodeConfigError> {
        let mut loader = Loader::default();
        let file = args
            .config
            .clone()
            .filter(|path| !path.as_os_str().is_empty())
            .or_else(|| non_empty(env(CONFIG_ENV)).map(PathBuf::from));
        if let Some(path) = file {
            loader.apply_file(&path)?;
        }
        loader.apply_env(&env)?;
        loader.apply_args(args)?;
        loader.finish()
    }

    /// [`NodeConfig::load`] with the process environment. A variable that is not valid
    /// Unicode is read lossily (a path's flag variable is also read exactly by clap, which
    /// then wins).
    pub fn load_from_process_env(args: &BrokerArgs) -> Result<Self, NodeConfigError> {
        Self::load(args, |name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// Whether this node is one of the controller voters (otherwise it is a broker only,
    /// following the metadata log as a learner).
    pub fn is_controller_voter(&self) -> bool {
        u64::try_from(self.node_id)
            .is_ok_and(|id| self.controller_voters.iter().any(|v| v.node_id == id))
    }

    /// The storage layer's configuration: the data directory and the log defaults from
    /// `log_segment_bytes`, `log_retention_ms` and `log_retention_bytes` (-1 in either
    /// retention key means no limit), the log cleaner's keys; everything else at the storage
    /// defaults.
    pub fn storage_config(&self) -> StorageConfig {
        let log = LogConfig {
            segment_bytes: self.log_segment_bytes,
            retention_ms: (self.log_retention_ms >= 0).then_some(self.log_retention_ms),
            retention_bytes: u64::try_from(self.log_retention_bytes).ok(),
            ..LogConfig::default()
        };
        // What the group coordinator creates __consumer_offsets with (group/coordinator.rs).
        let offsets = LogConfig {
            segment_bytes: self.offsets_topic_segment_bytes,
            segment_index_bytes: crate::group::OFFSETS_TOPIC_INDEX_BYTES,
            ..log.clone()
        };
        StorageConfig {
            data_dir: self.data_dir.clone(),
            log,
            topic_logs: [(crate::group::OFFSETS_TOPIC.to_string(), offsets)].into(),
            cleaner_enable: self.log_cleaner_enable,
            cleaner_io_max_bytes_per_second: self.log_cleaner_io_max_bytes_per_second,
            cleaner_backoff_ms: self.log_cleaner_backoff_ms,
            ..StorageConfig::default()
        }
    }

    /// How the partitions keep their idempotent producers' state.
    pub fn producer_state_config(&self) -> crate::partition::ProducerStateConfig {
        crate::partition::ProducerStateConfig {
            expiration_ms: self.producer_id_expiration_ms,
            expiration_check_interval_ms: self.producer_id_expiration_check_interval_ms,
            snapshot_check_interval_ms: self.producer_snapshot_check_interval_ms,
        }
    }

    /// How this broker's followers fetch from their leaders.
    pub fn fetcher_config(&self) -> crate::replication::FetcherConfig {
        crate::replication::FetcherConfig {
            broker: self.node_id,
            max_wait_ms: self.replica_fetch_wait_max_ms,
            partition_max_bytes: self.replica_fetch_max_bytes,
            max_bytes: self.replica_fetch_response_max_bytes,
            backoff_ms: self.replica_fetch_backoff_ms,
            producer_expiration_ms: self.producer_id_expiration_ms,
        }
    }

    /// The per-topic configs (by Kafka name) whose default this node's configuration sets,
    /// with their values: a topic that does not set one of them gets this value, not Kafka's
    /// default.
    pub fn topic_config_defaults(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("max.message.bytes", self.message_max_bytes.to_string()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("retention.bytes", self.log_retention_bytes.to_string()),
            ("retention.ms", self.log_retention_ms.to_string()),
            ("segment.bytes", self.log_segment_bytes.to_string()),
        ])
    }

    /// The cluster's id as clients see it (Kafka's `cluster.id`): derived from the controller
    /// voter list, which every node of a cluster shares, so every node reports the same id.
    pub fn cluster_id(&self) -> String {
        let voters: Vec<String> = self
            .controller_voters
            .iter()
            .map(|v| format!("{}@{}", v.node_id, v.address))
            .collect();
        Uuid::new_v5(&Uuid::NAMESPACE_OID, voters.join(",").as_bytes())
            .simple()
            .to_string()
    }

    /// The configuration once the listeners are bound: an advertised address that is the
    /// default of a listener on port 0 (a free port, chosen when it binds) becomes the bound
    /// address, and so does this node's own entry in the voter list. The listen addresses
    /// become the bound ones.
    pub fn with_bound_addresses(mut self, bound: &BoundAddresses) -> NodeConfig {
        let pairs = [
            (
                self.kafka_addr,
                bound.kafka,
                &mut self.advertised_kafka_addr,
            ),
            (self.grpc_addr, bound.grpc, &mut self.advertised_grpc_addr),
            (
                self.internal_addr,
                bound.internal,
                &mut self.advertised_internal_addr,
            ),
        ];
        for (listen, bound, advertised) in pairs {
            if let Some(bound) = bound
                && listen.port() == 0
                && *advertised == listen.to_string()
            {
                *advertised = bound.to_string();
            }
        }
        if let Some(bound) = bound.internal
            && self.internal_addr.port() == 0
        {
            let unbound = self.internal_addr.to_string();
            for voter in &mut self.controller_voters {
                if i64::try_from(voter.node_id) == Ok(i64::from(self.node_id))
                    && voter.address == unbound
                {
                    voter.address = bound.to_string();
                }
            }
        }
        // The listen addresses become the ones bound, so they can be reported.
        let listens = [
            (&mut self.kafka_addr, bound.kafka),
            (&mut self.grpc_addr, bound.grpc),
            (&mut self.internal_addr, bound.internal),
            (&mut self.http_addr, bound.http),
        ];
        for (listen, bound) in listens {
            if let Some(bound) = bound {
                *listen = bound;
            }
        }
        self
    }

    /// Checks every value against its allowed range and the keys against each other; the
    /// error names the key, its value, what it must be and what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_node()?;
        self.validate_topic_defaults()?;
        self.validate_replication()?;
        self.validate_groups()?;
        self.validate_timing()?;
        self.validate_metrics()
    }

    /// What the metrics export.
    fn validate_metrics(&self) -> Result<(), ConfigError> {
        check(
            usize::try_from(self.metrics_partition_series_max).is_ok(),
            "metrics_partition_series_max",
            self.metrics_partition_series_max,
            || {
                format!(
                    "must be at most {}; 0 exports no per-partition series",
                    usize::MAX
                )
            },
        )
    }

    /// Identity, addresses and the quorum.
    fn validate_node(&self) -> Result<(), ConfigError> {
        check(self.node_id >= 0, "node_id", self.node_id, || {
            "must be 0 or more (Kafka node ids are non-negative); give every node its own id".into()
        })?;
        check(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir",
            "\"\"",
            || "must not be empty; name the directory this node keeps its data in".into(),
        )?;
        let listeners = [
            ("kafka_addr", self.kafka_addr),
            ("grpc_addr", self.grpc_addr),
            ("internal_addr", self.internal_addr),
            ("http_addr", self.http_addr),
        ];
        for (i, (key, addr)) in listeners.iter().enumerate() {
            if let Some((other, _)) = listeners[..i]
                .iter()
                .find(|(_, earlier)| addr.port() != 0 && earlier == addr)
            {
                return Err(invalid(
                    key,
                    addr,
                    format!("is also {other}; give each listener its own port"),
                ));
            }
        }
        let advertised = [
            (
                "advertised_kafka_addr",
                &self.advertised_kafka_addr,
                "kafka_addr",
            ),
            (
                "advertised_grpc_addr",
                &self.advertised_grpc_addr,
                "grpc_addr",
            ),
            (
                "advertised_internal_addr",
                &self.advertised_internal_addr,
                "internal_addr",
            ),
        ];
        let listening = |listen_key: &str| {
            listeners
                .iter()
                .find(|(key, _)| *key == listen_key)
                .map(|(_, addr)| *addr)
        };
        for (key, addr, listen_key) in advertised {
            // A listener on port 0 gets a free port when it binds; an advertised address
            // left at its default is then that bound address (see `with_bound_addresses`).
            let follows_free_port = listening(listen_key)
                .is_some_and(|listen| listen.port() == 0 && listen.to_string() == *addr);
            if !follows_free_port {
                check_advertised(key, addr, listen_key)?;
            }
        }
        self.validate_voters()?;
        self.validate_roles()?;
        if let Some(rack) = &self.rack {
            check(!rack.trim().is_empty(), "rack", format!("{rack:?}"), || {
                "must not be blank; name the rack or leave rack unset".into()
            })?;
        }
        Ok(())
    }

    fn validate_roles(&self) -> Result<(), ConfigError> {
        let listed = self.is_controller_voter();
        let roles = self.process_roles;
        check(!roles.controller || listed, "process_roles", roles, || {
            format!(
                "names controller, but node {} is not in controller_voters; list it there \
                 or drop controller",
                self.node_id
            )
        })?;
        check(roles.controller || !listed, "process_roles", roles, || {
            format!(
                "leaves out controller, but node {} is listed in controller_voters; add \
                 controller or take the node off the list",
                self.node_id
            )
        })
    }

    fn validate_voters(&self) -> Result<(), ConfigError> {
        let shown = || {
            let list: Vec<String> = self
                .controller_voters
                .iter()
                .map(|v| format!("{}@{}", v.node_id, v.address))
                .collect();
            format!("{:?}", list.join(","))
        };
        check(
            !self.controller_voters.is_empty(),
            "controller_voters",
            shown(),
            || "must name at least one voter, as NODE_ID@HOST:PORT,...".into(),
        )?;
        if let Some(voter) = self
            .controller_voters
            .iter()
            .find(|v| i32::try_from(v.node_id).is_err())
        {
            return Err(invalid(
                "controller_voters",
                shown(),
                format!(
                    "node id {} is above 2147483647, the largest Kafka node id",
                    voter.node_id
                ),
            ));
        }
        Ok(())
    }

    /// The cluster-wide topic defaults and limits.
    fn validate_topic_defaults(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            ("num_partitions", self.num_partitions),
            (
                "default_replication_factor",
                self.default_replication_factor,
            ),
            ("min_insync_replicas", self.min_insync_replicas),
            ("message_max_bytes", self.message_max_bytes),
        ];
        for (key, value) in at_least_one {
            check(value >= 1, key, value, || "must be at least 1".into())?;
        }
        check(
            (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.log_segment_bytes),
            "log_segment_bytes",
            self.log_segment_bytes,
            || {
                format!(
                    "must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX} (2 GiB - 1): \
                     positions inside a segment are 32-bit"
                )
            },
        )?;
        let no_limit_or_more = [
            ("log_retention_ms", self.log_retention_ms),
            ("log_retention_bytes", self.log_retention_bytes),
        ];
        for (key, value) in no_limit_or_more {
            check(value >= -1, key, value, || {
                "must be -1 (no limit) or at least 0".into()
            })?;
        }
        let cleaner = [
            (
                "log_cleaner_io_max_bytes_per_second",
                self.log_cleaner_io_max_bytes_per_second,
            ),
            ("log_cleaner_backoff_ms", self.log_cleaner_backoff_ms),
        ];
        for (key, value) in cleaner {
            check(value >= 1, key, value, || "must be at least 1".into())?;
        }
        Ok(())
    }

    /// Consumer groups and the offsets topic.
    fn validate_groups(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            (
                "offsets_topic_num_partitions",
                self.offsets_topic_num_partitions,
            ),
            (
                "offsets_topic_replication_factor",
                self.offsets_topic_replication_factor,
            ),
            (
                "group_min_session_timeout_ms",
                self.group_min_session_timeout_ms,
            ),
            ("group_max_size", self.group_max_size),
            (
                "group_consumer_session_timeout_ms",
                self.group_consumer_session_timeout_ms,
            ),
            (
                "group_consumer_heartbeat_interval_ms",
                self.group_consumer_heartbeat_interval_ms,
            ),
        ];
        for (key, value) in at_least_one {
            check(value >= 1, key, value, || "must be at least 1".into())?;
        }
        check(
            self.group_max_session_timeout_ms >= self.group_min_session_timeout_ms,
            "group_max_session_timeout_ms",
            self.group_max_session_timeout_ms,
            || {
                format!(
                    "must be at least group_min_session_timeout_ms ({})",
                    self.group_min_session_timeout_ms
                )
            },
        )?;
        check(
            self.group_consumer_heartbeat_interval_ms < self.group_consumer_session_timeout_ms,
            "group_consumer_heartbeat_interval_ms",
            self.group_consumer_heartbeat_interval_ms,
            || {
                format!(
                    "must be below group_consumer_session_timeout_ms ({})",
                    self.group_consumer_session_timeout_ms
                )
            },
        )?;
        let not_negative = [
            (
                "group_initial_rebalance_delay_ms",
                i64::from(self.group_initial_rebalance_delay_ms),
            ),
            (
                "offset_metadata_max_bytes",
                i64::from(self.offset_metadata_max_bytes),
            ),
        ];
        for (key, value) in not_negative {
            check(value >= 0, key, value, || "must be 0 or more".into())?;
        }
        check(
            self.offsets_retention_ms >= 1,
            "offsets_retention_ms",
            self.offsets_retention_ms,
            || "must be at least 1".into(),
        )?;
        check(
            self.offsets_retention_check_interval_ms >= 1,
            "offsets_retention_check_interval_ms",
            self.offsets_retention_check_interval_ms,
            || "must be at least 1".into(),
        )?;
        check(
            (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.offsets_topic_segment_bytes),
            "offsets_topic_segment_bytes",
            self.offsets_topic_segment_bytes,
            || format!("must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}"),
        )
    }

    /// How followers fetch and leaders keep the ISR.
    fn validate_replication(&self) -> Result<(), ConfigError> {
        let positive = [
            ("replica_lag_time_max_ms", self.replica_lag_time_max_ms),
            ("replica_fetch_backoff_ms", self.replica_fetch_backoff_ms),
            (
                "replica_high_watermark_checkpoint_interval_ms",
                self.replica_high_watermark_checkpoint_interval_ms,
            ),
            (
                "replica_fetch_max_bytes",
                u64::from(self.replica_fetch_max_bytes),
            ),
            (
                "replica_fetch_response_max_bytes",
                u64::from(self.replica_fetch_response_max_bytes),
            ),
        ];
        for (key, value) in positive {
            check(value >= 1, key, value, || "must be at least 1".into())?;
        }
        check(
            i64::try_from(self.replica_lag_time_max_ms).is_ok(),
            "replica_lag_time_max_ms",
            self.replica_lag_time_max_ms,
            || format!("must be at most {}", i64::MAX),
        )?;
        check(
            u64::from(self.replica_fetch_wait_max_ms) < self.replica_lag_time_max_ms,
            "replica_fetch_wait_max_ms",
            self.replica_fetch_wait_max_ms,
            || {
                format!(
                    "must be below replica_lag_time_max_ms ({}), or idle followers fall out \
                     of the ISR between two fetches",
                    self.replica_lag_time_max_ms
                )
            },
        )
    }

    /// Heartbeats, sessions and elections.
    fn validate_timing(&self) -> Result<(), ConfigError> {
        check(
            self.producer_id_expiration_ms >= 1,
            "producer_id_expiration_ms",
            self.producer_id_expiration_ms,
            || "must be at least 1".into(),
        )?;
        let positive = [
            ("broker_session_timeout_ms", self.broker_session_timeout_ms),
            (
                "producer_id_expiration_check_interval_ms",
                self.producer_id_expiration_check_interval_ms,
            ),
            (
                "producer_snapshot_check_interval_ms",
                self.producer_snapshot_check_interval_ms,
            ),
            (
                "broker_heartbeat_interval_ms",
                self.broker_heartbeat_interval_ms,
            ),
            (
                "controlled_shutdown_timeout_ms",
                self.controlled_shutdown_timeout_ms,
            ),
            (
                "leader_imbalance_check_interval_ms",
                self.leader_imbalance_check_interval_ms,
            ),
            (
                "controller_heartbeat_interval_ms",
                self.controller_heartbeat_interval_ms,
            ),
            (
                "controller_election_timeout_min_ms",
                self.controller_election_timeout_min_ms,
            ),
        ];
        for (key, value) in positive {
            check(value >= 1, key, value, || "must be at least 1".into())?;
        }
        check(
            i64::try_from(self.broker_session_timeout_ms).is_ok(),
            "broker_session_timeout_ms",
            self.broker_session_timeout_ms,
            || format!("must be at most {}", i64::MAX),
        )?;
        check(
            self.broker_heartbeat_interval_ms < self.broker_session_timeout_ms,
            "broker_heartbeat_interval_ms",
            self.broker_heartbeat_interval_ms,
            || {
                format!(
                    "must be below broker_session_timeout_ms ({}), or every broker is fenced \
                     between two heartbeats; a third of it or less is usual",
                    self.broker_session_timeout_ms
                )
            },
        )?;
        check(
            self.controller_heartbeat_interval_ms < self.controller_election_timeout_min_ms,
            "controller_heartbeat_interval_ms",
            self.controller_heartbeat_interval_ms,
            || {
                format!(
                    "must be below controller_election_timeout_min_ms ({}), or followers start \
                     elections between two heartbeats",
                    self.controller_election_timeout_min_ms
                )
            },
        )?;
        check(
            self.controller_election_timeout_min_ms < self.controller_election_timeout_max_ms,
            "controller_election_timeout_min_ms",
            self.controller_election_timeout_min_ms,
            || {
                format!(
                    "must be below controller_election_timeout_max_ms ({}); elections wait a \
                     random time between the two, so raise the maximum or lower the minimum",
                    self.controller_election_timeout_max_ms
                )
            },
        )
    }
}

/// A `ConfigError` for `key` unless `ok`.
fn check(
    ok: bool,
    key: &'static str,
    value: impl fmt::Display,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, value, reason()))
    }
}

fn invalid(key: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// What a node does (Kafka's `process.roles`): at least one of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    /// The node holds partitions and serves clients.
    pub broker: bool,
    /// The node is a voter of the controller quorum.
    pub controller: bool,
}

impl fmt::Display for ProcessRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [(self.broker, "broker"), (self.controller, "controller")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(&names.join(","))
    }
}

/// The addresses the listeners were bound at; `None` for a listener not bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundAddresses {
    /// The Kafka listener.
    pub kafka: Option<SocketAddr>,
    /// The public gRPC listener.
    pub grpc: Option<SocketAddr>,
    /// The internal listener.
    pub internal: Option<SocketAddr>,
    /// The HTTP listener (`/metrics`, `/healthz`, `/readyz`).
    pub http: Option<SocketAddr>,
}

/// An advertised address must be `host:port` that another machine can connect to.
fn check_advertised(key: &'static str, addr: &str, listen_key: &str) -> Result<(), ConfigError> {
    let shown = format!("{addr:?}");
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(invalid(
            key,
            shown,
            "must be HOST:PORT, e.g. broker-1.example:9092",
        ));
    };
    let port: u16 = match port.parse() {
        Ok(port) if port > 0 => port,
        _ => {
            return Err(invalid(
                key,
                shown,
                "must be HOST:PORT with a port from 1 to 65535",
            ));
        }
    };
    if host.is_empty() {
        return Err(invalid(
            key,
            shown,
            "must be HOST:PORT with a host name or IP",
        ));
    }
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    if ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        let flag = key.replace('_', "-");
        return Err(invalid(
            key,
            shown,
            format!(
                "{host} means \"every interface\" to a listener but is no address to connect \
                 to; set {key} (--{flag}) to the HOST:{port} others reach this node at \
                 (it defaults to {listen_key})"
            ),
        ));
    }
    Ok(())
}

/// The configuration built up layer by layer, with where each set key came from.
#[derive(Debug, Default)]
struct Loader {
    values: Partial,
    origins: BTreeMap<&'static str, Origin>,
}

impl Loader {
    fn apply_file(&mut self, path: &Path) -> Result<(), NodeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| NodeConfigError::ReadFile {
            path: path.to_path_buf(),
            error,
        })?;
        let table: toml::Table = text.parse().map_err(|error| NodeConfigError::Syntax {
            path: path.to_path_buf(),
            error,
        })?;
        for (key, value) in &table {
            self.set(key, &Raw::Toml(value), || Origin::File(path.to_path_buf()))
                .map_err(|error| match error {
                    SetError::Unknown => {
                        let key = first_leaf_path(key, value);
                        NodeConfigError::UnknownKey {
                            hint: unknown_key_hint(&key),
                            key,
                            path: path.to_path_buf(),
                        }
                    }
                    SetError::Invalid { .. } => {
                        error.into_config_error(&Raw::Toml(value), Origin::File(path.to_path_buf()))
                    }
                })?;
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), NodeConfigError> {
        for key in NodeConfig::KEYS {
            let name = env_name(key);
            if let Some(value) = non_empty(env(&name)) {
                let raw = Raw::Text(OsStr::new(&value));
                self.set(key, &raw, || Origin::Env(name.clone()))
                    .map_err(|error| error.into_config_error(&raw, Origin::Env(name.clone())))?;
            }
        }
        Ok(())
    }

    fn apply_args(&mut self, args: &BrokerArgs) -> Result<(), NodeConfigError> {
        for (key, value) in args.values() {
            let Some(value) = value.filter(|value| !value.is_empty()) else {
                continue;
            };
            let origin = || Origin::CommandLine {
                flag: format!("--{}", key.replace('_', "-")),
                env: env_name(key),
            };
            let raw = Raw::Text(value);
            self.set(key, &raw, origin)
                .map_err(|error| error.into_config_error(&raw, origin()))?;
        }
        Ok(())
    }

    fn set(
        &mut self,
        key: &str,
        raw: &Raw<'_>,
        origin: impl FnOnce() -> Origin,
    ) -> Result<(), SetError> {
        let key = self.values.set(key, raw)?;
        self.origins.insert(key, origin());
        Ok(())
    }

    /// The merged configuration, validated; an error says where the offending value came
    /// from.
    fn finish(self) -> Result<NodeConfig, NodeConfigError> {
        let config = self.values.resolve();
        match config.validate() {
            Ok(()) => Ok(config),
            Err(error) => Err(NodeConfigError::Invalid {
                origin: self
                    .origins
                    .get(error.key)
                    .cloned()
                    .unwrap_or(Origin::Default),
                error,
            }),
        }
    }
}

/// Why a value could not be set.
#[derive(Debug)]
enum SetError {
    /// No key has that name.
    Unknown,
    /// The value does not convert to the key's type.
    Invalid { key: &'static str, reason: String },
}

impl SetError {
    fn into_config_error(self, raw: &Raw<'_>, origin: Origin) -> NodeConfigError {
        let (key, reason) = match self {
            SetError::Invalid { key, reason } => (key, reason),
            // Only the file can name a key that does not exist; the environment and flags
            // are read by the keys' own names.
            SetError::Unknown => ("unknown", "is not a configuration key".to_string()),
        };
        NodeConfigError::Invalid {
            error: invalid(key, raw.shown(), reason),
            origin,
        }
    }
}

/// `WEIR_` and the key in upper case.
fn env_name(key: &str) -> String {
    format!("WEIR_{}", key.to_ascii_uppercase())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

/// The full dotted name of the first value under `key`: a Kafka-style `log.segment.bytes = 1`
/// is a nested table in TOML, and is best reported as written.
fn first_leaf_path(key: &str, value: &toml::Value) -> String {
    match value {
        toml::Value::Table(table) => match table.iter().next() {
            Some((inner, value)) => first_leaf_path(&format!("{key}.{inner}"), value),
            None => key.to_string(),
        },
        _ => key.to_string(),
    }
}

/// The key that was probably meant (Kafka's dotted names map onto ours), or the list.
fn unknown_key_hint(key: &str) -> String {
    let normalized = key.replace(['.', '-'], "_").to_ascii_lowercase();
    match NodeConfig::KEYS.iter().find(|known| **known == normalized) {
        Some(known) => format!("did you mean {known:?}?"),
        None => format!(
            "remove it or use one of the keys: {}",
            NodeConfig::KEYS.join(", ")
        ),
    }
}

/// A value as one layer gives it: a TOML value from the file, or text from a variable or flag.
#[derive(Debug)]
enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a OsStr),
}

impl Raw<'_> {
    fn convert<T: ConfigValue>(&self) -> Result<T, String> {
        match self {
            Raw::Toml(value) => T::from_toml(value),
            Raw::Text(text) => T::from_os_text(text),
        }
    }

    /// The value as the user wrote it, for error messages.
    fn shown(&self) -> String {
        match self {
            Raw::Toml(value) => value.to_string(),
            Raw::Text(text) => format!("{text:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(NodeConfig::default().validate(), Ok(()));
        assert!(NodeConfig::default().is_controller_voter());
    }

    #[test]
    fn advertised_addresses_must_be_reachable() {
        let reason = |addr: &str| {
            check_advertised("advertised_kafka_addr", addr, "kafka_addr")
                .unwrap_err()
                .reason
        };
        assert!(reason("0.0.0.0:9092").contains("set advertised_kafka_addr"));
        assert!(reason("[::]:9092").contains("every interface"));
        assert!(reason("host:0").contains("port from 1 to 65535"));
        assert!(reason("host").contains("HOST:PORT"));
        assert!(reason(":9092").contains("host name or IP"));
        assert_eq!(
            check_advertised("advertised_kafka_addr", "[::1]:9092", "kafka_addr"),
            Ok(())
        );
    }
}
