//! The Kafka admin APIs against librdkafka's admin client: topics created, grown, described,
//! reconfigured and deleted; a Metadata request creating a topic a producer names; and the
//! refusals a user meets, each with Kafka's error code.

mod common;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_broker::server::Node;

const WAIT: Duration = Duration::from_secs(30);

async fn start_node(dir: &std::path::Path) -> (Node, String) {
    let node = common::node::start(common::node::single_node_config(dir)).await;
    let bootstrap = node.kafka_addr().to_string();
    (node, bootstrap)
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a librdkafka admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(WAIT))
}

/// The partition count of each topic in the cluster, as a client's Metadata request sees it.
fn partition_counts(bootstrap: &str) -> Vec<(String, usize)> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = client.fetch_metadata(None, WAIT).unwrap();
    let mut counts: Vec<_> = metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect();
    counts.sort();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_grown_reconfigured_and_deleted_through_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (node, bootstrap) = start_node(dir.path()).await;
    let admin = admin(&bootstrap);

    let orders = NewTopic::new("orders", 3, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("cleanup.policy", "compact");
    let logs = NewTopic::new("logs", 1, TopicReplication::Fixed(1));
    let created = admin
        .create_topics([&orders, &logs], &options())
        .await
        .unwrap();
    assert_eq!(
        created,
        [Ok("orders".to_string()), Ok("logs".to_string())],
        "both created"
    );
    let counts = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || partition_counts(&bootstrap)
    });
    assert_eq!(
        counts.await.unwrap(),
        [("logs".to_string(), 1), ("orders".to_string(), 3)]
    );

    // Refusals, each with Kafka's code; nothing changes.
    let again = NewTopic::new("orders", 1, TopicReplication::Fixed(1));
    let too_wide = NewTopic::new("wide", 1, TopicReplication::Fixed(3));
    let bad_config =
        NewTopic::new("configured", 1, TopicReplication::Fixed(1)).set("retention.msec", "5");
    let bad_name = NewTopic::new("bad/name", 1, TopicReplication::Fixed(1));
    let refused = admin
        .create_topics([&again, &too_wide, &bad_config, &bad_name], &options())
        .await
        .unwrap();
    let codes: Vec<_> = refused.iter().map(|r| r.as_ref().unwrap_err().1).collect();
    assert_eq!(
        codes,
        [
            RDKafkaErrorCode::TopicAlreadyExists,
            RDKafkaErrorCode::InvalidReplicationFactor,
            RDKafkaErrorCode::InvalidConfig,
            RDKafkaErrorCode::InvalidTopic,
        ]
    );

    // Validation only: accepted, and nothing is created.
    let checked = admin
        .create_topics(
            [&NewTopic::new("dry", 2, TopicReplication::Fixed(1))],
            &options().validate_only(true),
        )
        .await
        .unwrap();
    assert_eq!(checked, [Ok("dry".to_string())]);
    assert!(node.controller().metadata().topic_by_name("dry").is_none());

    // Grow: only upwards.
    let grown = admin
        .create_partitions([&NewPartitions::new("orders", 5)], &options())
        .await
        .unwrap();
    assert_eq!(grown, [Ok("orders".to_string())]);
    let shrunk = admin
        .create_partitions([&NewPartitions::new("orders", 2)], &options())
        .await
        .unwrap();
    assert_eq!(
        shrunk[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidPartitions
    );
    assert_eq!(
        node.controller()
            .metadata()
            .topic_by_name("orders")
            .unwrap()
            .partitions
            .len(),
        5
    );

    // Describe: the topic's own values, and defaults for the rest.
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic("orders")], &options())
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    let retention = resource.get("retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let segment = resource.get("segment.bytes").unwrap();
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert!(segment.is_default);
    assert_eq!(
        resource.entries.len(),
        weir_broker::topic_config::known().count()
    );

    // Alter (librdkafka uses the older AlterConfigs, which replaces the topic's configs).
    let alter = AlterConfig::new(ResourceSpecifier::Topic("orders")).set("retention.ms", "1000");
    let altered = admin.alter_configs([&alter], &options()).await.unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    // The broker answers once its own metadata has the change; allow a loaded machine slack.
    let only_retention = |m: &weir_broker::controller::ClusterMetadata| {
        m.topic_by_name("orders")
            .is_some_and(|t| t.configs.len() == 1 && t.configs.contains_key("retention.ms"))
    };
    assert!(
        node.controller()
            .view()
            .wait_for_metadata(only_retention, WAIT)
            .await
    );
    let configs = &node
        .controller()
        .metadata()
        .topic_by_name("orders")
        .unwrap()
        .configs
        .clone();
    assert_eq!(
        configs.iter().collect::<Vec<_>>(),
        [(&"retention.ms".to_string(), &"1000".to_string())],
        "cleanup.policy went back to its default"
    );
    let bad = AlterConfig::new(ResourceSpecifier::Topic("orders")).set("retention.ms", "soon");
    // The rdkafka crate does not pass on a resource's error, so look at the outcome: nothing
    // changed.
    admin.alter_configs([&bad], &options()).await.unwrap();
    let after = node.controller().metadata();
    assert_eq!(&after.topic_by_name("orders").unwrap().configs, configs);

    // The broker's own defaults, under Kafka's names.
    let broker = admin
        .describe_configs([&ResourceSpecifier::Broker(1)], &options())
        .await
        .unwrap();
    let broker = broker[0].as_ref().unwrap();
    assert_eq!(
        broker.get("num.partitions").unwrap().value.as_deref(),
        Some("1")
    );

    // Delete.
    let deleted = admin
        .delete_topics(&["logs", "missing"], &options())
        .await
        .unwrap();
    assert_eq!(deleted[0], Ok("logs".to_string()));
    assert_eq!(
        deleted[1].as_ref().unwrap_err().1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
    assert!(node.controller().metadata().topic_by_name("logs").is_none());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_naming_an_unknown_topic_creates_it_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::node::single_node_config(dir.path());
    config.num_partitions = 4;
    let node = common::node::start(config).await;
    let bootstrap = node.kafka_addr().to_string();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let delivered = producer
        .send(
            FutureRecord::to("created-on-demand").key("k").payload("v"),
            WAIT,
        )
        .await
        .expect("delivered to a topic created for it");
    assert_eq!(delivered.offset, 0);
    let topic = node.controller().metadata();
    let topic = topic.topic_by_name("created-on-demand").unwrap();
    assert_eq!(
        topic.partitions.len(),
        4,
        "num_partitions from the node config"
    );
    node.shutdown().await.unwrap();

    // With auto_create_topics off, the topic stays unknown.
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::node::single_node_config(dir.path());
    config.auto_create_topics = false;
    let node = common::node::start(config).await;
    let bootstrap = node.kafka_addr().to_string();
    let missing = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("allow.auto.create.topics", "true")
            .create()
            .unwrap();
        client.fetch_metadata(Some("not-created"), WAIT).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        missing.topics()[0].error(),
        Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
    assert!(
        node.controller()
            .metadata()
            .topic_by_name("not-created")
            .is_none()
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_config_changes_and_the_cluster_description_over_the_bare_protocol() {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{DescribeClusterRequest, IncrementalAlterConfigsRequest};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let (node, bootstrap) = start_node(dir.path()).await;
    node.controller()
        .view()
        .create_topic("events", 1, 1, std::collections::BTreeMap::new())
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(&bootstrap).await.unwrap();

    let change = |name: &str, operation: i8, value: Option<&str>| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.into()))
            .with_config_operation(operation)
            .with_value(value.map(|v| StrBytes::from_string(v.into())))
    };
    let resource = |kind: i8, name: &str, configs| {
        AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name.into()))
            .with_configs(configs)
    };
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        resource(
            2,
            "events",
            vec![
                change("retention.ms", 0, Some("5000")),
                change("cleanup.policy", 2, Some("compact")),
            ],
        ),
        resource(2, "events-typo", vec![change("retention.ms", 0, Some("1"))]),
        resource(2, "events", vec![change("retention.ms", 2, Some("1"))]),
        resource(4, "1", vec![change("num.partitions", 0, Some("3"))]),
    ]);
    let response = common::wire::call(&mut stream, &request, 1).await;
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    // None, UNKNOWN_TOPIC_OR_PARTITION, INVALID_CONFIG (APPEND on a number), INVALID_REQUEST.
    assert_eq!(codes, [0, 3, 40, 42], "{response:?}");
    let message = response.responses[2].error_message.as_ref().unwrap();
    assert!(message.contains("not a list config"), "{message}");
    let metadata = node.controller().metadata();
    let configs = &metadata.topic_by_name("events").unwrap().configs;
    assert_eq!(configs["retention.ms"], "5000");
    assert_eq!(configs["cleanup.policy"], "delete,compact");

    let cluster = common::wire::call(&mut stream, &DescribeClusterRequest::default(), 1).await;
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.controller_id.0, 1);
    assert_eq!(cluster.cluster_id.as_str(), node.config().cluster_id());
    let brokers: Vec<_> = cluster
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    assert_eq!(brokers, [(1, bootstrap.clone())]);
    node.shutdown().await.unwrap();
}
