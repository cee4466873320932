//! The admin client against a broker: topics, configs, partitions, the cluster and its
//! controller quorum, and the errors that say what to do.

mod common;

use weir_client::proto::ConfigChange;
use weir_client::{Client, Error, NewTopic};

#[tokio::test]
async fn topics_are_created_described_grown_reconfigured_and_deleted() {
    let node = common::start().await;
    let client = Client::connect(&node.bootstrap()).await.unwrap();
    let admin = client.admin();

    let created = admin
        .create_topic(
            NewTopic::new("orders")
                .partitions(3)
                .config("retention.ms", "3600000"),
        )
        .await
        .unwrap();
    assert_eq!((created.name.as_str(), created.partitions), ("orders", 3));
    assert!(!created.topic_id.is_empty());

    let error = admin
        .create_topic(NewTopic::new("orders"))
        .await
        .unwrap_err();
    assert_eq!(
        error.kafka_error(),
        Some(kafka_protocol::ResponseError::TopicAlreadyExists),
        "{error}"
    );

    let topics = admin.list_topics().await.unwrap();
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["orders"]);

    let described = admin.describe_topic("orders").await.unwrap();
    assert_eq!(described.partitions.len(), 3);
    assert!(described.partitions.iter().all(|p| p.leader == Some(1)));
    let retention = described
        .configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .unwrap();
    assert_eq!(retention.value, "3600000");

    admin.add_partitions("orders", 5).await.unwrap();
    assert_eq!(client.partition_count("orders").await.unwrap(), 5);

    let configs = admin
        .alter_configs(
            "orders",
            vec![ConfigChange {
                name: "cleanup.policy".into(),
                operation: weir_client::proto::ConfigOperation::Set as i32,
                value: Some("compact".into()),
            }],
        )
        .await
        .unwrap();
    assert!(
        configs
            .iter()
            .any(|c| c.name == "cleanup.policy" && c.value == "compact")
    );

    admin.delete_topic("orders").await.unwrap();
    assert!(admin.list_topics().await.unwrap().is_empty());
    node.shutdown().await;
}

#[tokio::test]
async fn the_cluster_and_its_quorum_are_described() {
    let node = common::start().await;
    let client = Client::connect(&node.bootstrap()).await.unwrap();
    let info = client.admin().cluster().await.unwrap();
    assert_eq!(info.controller_id, Some(1));
    assert_eq!(info.brokers.len(), 1);
    assert_eq!(info.brokers[0].grpc_address, node.bootstrap());
    assert_eq!(info.brokers[0].kafka_address, node.kafka());

    let quorum = client.admin().describe_quorum().await.unwrap();
    assert_eq!(quorum.leader_id, Some(1));
    assert!(quorum.term >= 1);
    assert_eq!(quorum.voters.len(), 1);
    assert_eq!(quorum.voters[0].node_id, 1);
    assert!(quorum.learners.is_empty());
    assert!(quorum.applied_index.is_some());
    node.shutdown().await;
}

#[tokio::test]
async fn errors_say_what_was_wrong_and_what_to_do() {
    let node = common::start().await;
    let client = Client::connect(&node.bootstrap()).await.unwrap();
    let admin = client.admin();

    let error = admin.describe_topic("missing").await.unwrap_err();
    assert!(
        matches!(&error, Error::UnknownTopic(t) if t == "missing"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("weir topic create missing"),
        "{error}"
    );
    let error = admin.delete_topic("missing").await.unwrap_err();
    assert!(matches!(error, Error::UnknownTopic(_)), "{error:?}");
    let error = client.partition_count("missing").await.unwrap_err();
    assert!(matches!(error, Error::UnknownTopic(_)), "{error:?}");

    let error = admin
        .create_topic(NewTopic::new("bad").partitions(0))
        .await
        .unwrap_err();
    assert!(!error.is_retriable(), "{error}");
    assert!(
        error.to_string().starts_with("INVALID_PARTITIONS"),
        "{error}"
    );

    // Something answers on the Kafka and HTTP ports, but not Weir's gRPC API.
    for other in [node.kafka(), node.node.http_addr().to_string()] {
        let error = Client::connect(&other).await.unwrap_err();
        assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains(&format!("cannot reach a Weir broker at {other}")),
            "{text}"
        );
        assert!(text.contains("its gRPC address"), "{text}");
    }

    node.shutdown().await;

    // Nothing listens there any more.
    let error = Client::connect(&node_address_nobody_listens_on())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("cannot reach a Weir broker at 127.0.0.1:"),
        "{error}"
    );
    assert!(error.is_retriable());

    let error = Client::connect("localhost").await.unwrap_err();
    assert!(error.to_string().contains("not host:port"), "{error}");
    let error = Client::connect("").await.unwrap_err();
    assert!(error.to_string().contains("no broker address"), "{error}");
}

/// A loopback address with no listener: a port bound, then released.
fn node_address_nobody_listens_on() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}
