//! Helpers of the `weir` command line tests: one in-process broker (on a runtime of its own,
//! so the test's thread can block on the `weir` processes it runs), raw gRPC calls to give it
//! records and committed offsets, and running the built `weir` binary within a bound.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tonic::transport::Channel;
use weir_broker::clock::SystemClock;
use weir_broker::config::NodeConfig;
use weir_broker::server::Node;
use weir_proto::v1 as pb;
use weir_proto::v1::broker_client::BrokerClient;
use weir_proto::v1::groups_client::GroupsClient;

/// The bound on every wait.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running single node (its own controller voter and a live broker) on loopback ports.
pub struct TestNode {
    runtime: tokio::runtime::Runtime,
    node: Option<Node>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node in a temp dir: small preallocated segments, a small `__consumer_offsets`
    /// and groups that settle quickly.
    pub fn start() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = NodeConfig {
            log_segment_bytes: 1024 * 1024,
            group_initial_rebalance_delay_ms: 300,
            offsets_topic_num_partitions: 4,
            offsets_topic_segment_bytes: 1024 * 1024,
            ..NodeConfig::single_node_on_loopback(dir.path())
        };
        let node = runtime.block_on(async {
            let node = Node::start(config, Arc::new(SystemClock))
                .await
                .expect("the node starts");
            assert!(node.wait_until_live(WAIT).await, "the broker becomes live");
            node
        });
        TestNode {
            runtime,
            node: Some(node),
            _dir: dir,
        }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("running")
    }

    /// The gRPC address, for `--bootstrap`.
    pub fn grpc(&self) -> String {
        self.node().grpc_addr().to_string()
    }

    /// The Kafka address.
    pub fn kafka(&self) -> String {
        self.node().kafka_addr().to_string()
    }

    /// The internal (Raft) address.
    pub fn internal(&self) -> String {
        self.node().internal_addr().to_string()
    }

    /// Creates topic `name` with `partitions` partitions through the controller and waits
    /// until the node serves all of them.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let node = self.node();
        self.runtime.block_on(async {
            node.controller()
                .view()
                .create_topic(name, partitions, 1, BTreeMap::new())
                .await
                .expect("the topic is created");
            let deadline = Instant::now() + WAIT;
            for partition in 0..partitions {
                let tp = weir_broker::storage::TopicPartition::new(name, partition);
                while node.replicas().partition(&tp).is_none() {
                    assert!(Instant::now() < deadline, "{tp} opens in time");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc()))
            .unwrap()
            .connect()
            .await
            .expect("connected to the gRPC listener")
    }

    /// Produces `count` records to `topic`-`partition` with timestamps `base_ms`,
    /// `base_ms` + 1000, ... with the raw `Broker.Produce` RPC (acks=all), retrying while the
    /// partition's leadership loads.
    pub fn produce(&self, topic: &str, partition: i32, count: i64, base_ms: i64) {
        self.runtime.block_on(async {
            let mut broker = BrokerClient::new(self.channel().await);
            let records: Vec<pb::Record> = (0..count)
                .map(|i| pb::Record {
                    key: Some(Bytes::from(format!("key-{i}"))),
                    value: Some(Bytes::from(format!("value-{i}"))),
                    timestamp_ms: Some(base_ms + i * 1000),
                    ..pb::Record::default()
                })
                .collect();
            let deadline = Instant::now() + WAIT;
            loop {
                let answer = broker
                    .produce(pb::ProduceRequest {
                        partitions: vec![pb::PartitionRecords {
                            topic: topic.to_string(),
                            partition,
                            data: Some(pb::partition_records::Data::Records(pb::RecordList {
                                records: records.clone(),
                            })),
                            compression: pb::Compression::None as i32,
                        }],
                        acks: pb::Acks::All as i32,
                        timeout_ms: 10_000,
                    })
                    .await
                    .expect("Produce answered")
                    .into_inner();
                match &answer.partitions[0].error {
                    None => return,
                    Some(error) => assert!(
                        Instant::now() < deadline,
                        "{topic}-{partition} takes the records in time: {error:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    /// Commits `offsets` (partition, offset) of `topic` for `group` as a group without
    /// members (generation -1), retrying while `__consumer_offsets` is created and loads.
    pub fn commit(&self, group: &str, topic: &str, offsets: &[(i32, i64)]) {
        self.runtime.block_on(async {
            let mut groups = GroupsClient::new(self.channel().await);
            let request = pb::CommitOffsetsRequest {
                group: group.to_string(),
                member_id: String::new(),
                generation_id: -1,
                group_instance_id: None,
                offsets: offsets
                    .iter()
                    .map(|&(partition, offset)| pb::OffsetCommit {
                        topic: topic.to_string(),
                        partition,
                        offset,
                        leader_epoch: None,
                        metadata: None,
                    })
                    .collect(),
            };
            let deadline = Instant::now() + WAIT;
            loop {
                // The first FindCoordinator creates `__consumer_offsets`; until its partition
                // leads here, the node answers NOT_COORDINATOR.
                let _ = groups
                    .find_coordinator(pb::FindCoordinatorRequest {
                        group: group.to_string(),
                    })
                    .await;
                let answer = groups.commit_offsets(request.clone()).await;
                let failure = match answer {
                    Ok(answer) => answer
                        .into_inner()
                        .partitions
                        .into_iter()
                        .find_map(|p| p.error)
                        .map(|e| e.message),
                    Err(status) => Some(status.to_string()),
                };
                let Some(failure) = failure else { return };
                assert!(
                    Instant::now() < deadline,
                    "group {group} commits in time: {failure}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    /// A member with client id `client_id` joins `group` on the consumer protocol (the
    /// `Groups.Heartbeat` RPC), subscribed to `topic`, and confirms the partitions it is given;
    /// returns its member id and those partitions.
    pub fn join(&self, group: &str, topic: &str, client_id: &str) -> (String, Vec<i32>) {
        self.runtime.block_on(async {
            let mut groups = GroupsClient::new(self.channel().await);
            let request = |member_id: &str, member_epoch: i32, owned: Option<Vec<i32>>| {
                pb::HeartbeatRequest {
                    group: group.to_string(),
                    member_id: member_id.to_string(),
                    member_epoch,
                    rebalance_timeout_ms: 30_000,
                    subscribed_topics: Some(pb::TopicNames {
                        names: vec![topic.to_string()],
                    }),
                    owned: owned.map(|partitions| pb::Assignment {
                        topics: vec![pb::AssignedPartitions {
                            topic: topic.to_string(),
                            partitions,
                        }],
                    }),
                    client_id: client_id.to_string(),
                    ..Default::default()
                }
            };
            let deadline = Instant::now() + WAIT;
            let joined = loop {
                let _ = groups
                    .find_coordinator(pb::FindCoordinatorRequest {
                        group: group.to_string(),
                    })
                    .await;
                match groups.heartbeat(request("", 0, None)).await {
                    Ok(joined) => break joined.into_inner(),
                    Err(status) => assert!(
                        Instant::now() < deadline,
                        "a member joins {group} in time: {status}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let assignment = joined.assignment.expect("the first member gets partitions");
            let partitions: Vec<i32> = assignment
                .topics
                .into_iter()
                .filter(|t| t.topic == topic)
                .flat_map(|t| t.partitions)
                .collect();
            groups
                .heartbeat(request(
                    &joined.member_id,
                    joined.member_epoch,
                    Some(partitions.clone()),
                ))
                .await
                .expect("the member confirms its partitions");
            (joined.member_id, partitions)
        })
    }

    /// The high watermark of each of `topic`'s first `partitions` partitions (the raw
    /// `Broker.ListOffsets` RPC), retrying while a partition's log opens.
    pub fn high_watermarks(&self, topic: &str, partitions: i32) -> Vec<i64> {
        self.runtime.block_on(async {
            let mut broker = BrokerClient::new(self.channel().await);
            let request = pb::ListOffsetsRequest {
                partitions: (0..partitions)
                    .map(|partition| pb::OffsetQuery {
                        topic: topic.to_string(),
                        partition,
                        spec: pb::OffsetSpec::Latest as i32,
                        timestamp_ms: 0,
                    })
                    .collect(),
            };
            let deadline = Instant::now() + WAIT;
            loop {
                let answer = broker
                    .list_offsets(request.clone())
                    .await
                    .expect("ListOffsets answered")
                    .into_inner();
                match answer.partitions.iter().find_map(|p| p.error.as_ref()) {
                    None => return answer.partitions.iter().map(|p| p.offset).collect(),
                    Some(error) => assert!(
                        Instant::now() < deadline,
                        "the offsets of {topic} in time: {error:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    /// The group's committed offsets of `topic` as partition → offset.
    pub fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.runtime.block_on(async {
            let mut groups = GroupsClient::new(self.channel().await);
            groups
                .fetch_offsets(pb::FetchOffsetsRequest {
                    group: group.to_string(),
                    partitions: Vec::new(),
                })
                .await
                .expect("FetchOffsets answered")
                .into_inner()
                .offsets
                .into_iter()
                .filter(|o| o.topic == topic)
                .map(|o| (o.partition, o.offset))
                .collect()
        })
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            // A failed shutdown is no reason to fail a test that passed (nor to hide the
            // panic of one that failed).
            let _ = self.runtime.block_on(node.shutdown());
        }
    }
}

/// What a `weir` run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if a signal ended it).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the run succeeded with nothing on standard error; returns its standard output.
    pub fn success(&self) -> &str {
        assert_eq!(self.code, Some(0), "weir failed: {self:#?}");
        assert_eq!(self.stderr, "", "weir succeeded but complained: {self:#?}");
        self.stdout.as_str()
    }

    /// Asserts the run succeeded and parses its standard output as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        let stdout = self.success();
        serde_json::from_str(stdout)
            .unwrap_or_else(|e| panic!("weir printed no JSON document ({e}):\n{stdout}"))
    }

    /// Asserts the run failed with status 1 and a one-line message on standard error that
    /// contains `text`; returns the message.
    pub fn failure(&self, text: &str) -> &str {
        assert_eq!(
            self.code,
            Some(1),
            "weir did not fail with status 1: {self:#?}"
        );
        let message = self.stderr.trim_end();
        assert!(
            message.contains(text),
            "the error does not say {text:?}: {self:#?}"
        );
        message
    }

    /// As [`Run::failure`], and the message is one line starting with "error: ".
    pub fn one_line_failure(&self, text: &str) -> &str {
        let message = self.failure(text);
        assert!(message.starts_with("error: "), "{message}");
        assert_eq!(message.lines().count(), 1, "one line: {message}");
        message
    }
}

/// Runs `weir --bootstrap BOOTSTRAP ARGS...` to completion (killed after [`WAIT`]).
pub fn weir(bootstrap: &str, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .env_remove("WEIR_BOOTSTRAP")
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args);
    run(&mut command)
}

/// Runs `weir --bootstrap BOOTSTRAP ARGS...` with `input` on its standard input to
/// completion (killed after [`WAIT`]).
pub fn weir_with_input(bootstrap: &str, args: &[&str], input: &str) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .env_remove("WEIR_BOOTSTRAP")
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args);
    run_with_input(&mut command, Some(input))
}

/// Runs `command` to completion, killing it after [`WAIT`].
pub fn run(command: &mut Command) -> Run {
    run_with_input(command, None)
}

/// Runs `command` with `input` (or nothing) on its standard input to completion, killing it
/// after [`WAIT`].
pub fn run_with_input(command: &mut Command, input: Option<&str>) -> Run {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_string();
        // A thread of its own, so a full pipe cannot block the wait below; closing the pipe
        // ends the input. A command that stops reading early is not a failure here.
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("weir can be waited for") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().expect("stdout is read"),
        stderr: stderr.join().expect("stderr is read"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A time shortly before now (ms since the Unix epoch), far from any retention limit.
pub fn recent_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap() - 600_000
}

/// The lines of a table whose first column is `first`, split on whitespace.
pub fn rows<'a>(table: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.first() == Some(&first))
        .collect()
}
