//! `weir topic` against an in-process broker: create (with configs), list, describe, alter,
//! add-partitions and delete, as tables and as JSON; and the errors of an unknown topic, a
//! topic that exists already, a bad `--config` and a partition count that does not grow.

mod cli_common;

use cli_common::{TestNode, rows, weir};
use serde_json::Value;

/// The config named `name` of a `topic describe`/`topic alter` JSON answer.
fn config<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("config {name} in {answer:#}"))
}

fn topic_names(b: &str) -> Vec<String> {
    let listed = weir(b, &["--output", "json", "topic", "list"]).json();
    listed["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("a name").to_string())
        .collect()
}

#[test]
fn topics_are_created_listed_described_altered_grown_and_deleted() {
    let node = TestNode::start();
    let b = &node.grpc();

    // Create: a sentence for people, the topic for scripts.
    let created = weir(
        b,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=3600000",
            "--config",
            "cleanup.policy=delete",
        ],
    );
    let text = created.success();
    assert!(
        text.starts_with("Created topic orders (3 partitions, replication factor 1, id "),
        "{text}"
    );
    let events = weir(
        b,
        &[
            "topic",
            "create",
            "events",
            "--partitions",
            "2",
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(events["name"], "events");
    assert_eq!(events["partitions"], 2);
    assert_eq!(events["replication_factor"], 1);
    assert_eq!(
        events["topic_id"].as_str().expect("an id").len(),
        36,
        "{events}"
    );

    // List.
    let listed = weir(b, &["topic", "list"]);
    let text = listed.success();
    assert!(text.starts_with("NAME"), "{text}");
    let orders = rows(text, "orders");
    assert_eq!(orders.len(), 1, "{text}");
    assert_eq!(&orders[0][1..3], ["3", "1"], "{text}");
    assert_eq!(rows(text, "events")[0][1], "2", "{text}");
    assert_eq!(topic_names(b), ["events", "orders"]);

    // Describe: every partition led by node 1, and the configs with their sources.
    let described = weir(b, &["--output", "json", "topic", "describe", "orders"]).json();
    assert_eq!(described["name"], "orders");
    assert_eq!(described["replication_factor"], 1);
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 3, "{described:#}");
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(p["partition"], i as u64);
        assert_eq!(p["leader"], 1);
        assert_eq!(p["replicas"], serde_json::json!([1]));
        assert_eq!(p["isr"], serde_json::json!([1]));
        assert_eq!(p["offline_replicas"], serde_json::json!([]));
        assert!(p["leader_epoch"].as_i64().expect("an epoch") >= 0);
    }
    let retention = config(&described, "retention.ms");
    assert_eq!(retention["value"], "3600000");
    assert_eq!(retention["source"], "topic");
    assert_ne!(config(&described, "max.message.bytes")["source"], "topic");

    let text_run = weir(b, &["topic", "describe", "orders"]);
    let text = text_run.success();
    assert!(text.contains("Topic:"), "{text}");
    assert!(text.contains("orders"), "{text}");
    assert!(text.contains("Partitions:"), "{text}");
    let partition_rows: Vec<_> = ["0", "1", "2"].iter().flat_map(|p| rows(text, p)).collect();
    assert_eq!(partition_rows.len(), 3, "{text}");
    for row in &partition_rows {
        // partition, leader, leader epoch, replicas, isr, offline
        assert_eq!(row[1], "1", "{text}");
        assert_eq!(&row[3..], ["1", "1", "-"], "{text}");
    }
    assert_eq!(
        rows(text, "retention.ms"),
        [vec!["retention.ms", "3600000", "topic"]],
        "{text}"
    );

    // Alter: set two, then return one to its default.
    let altered = weir(
        b,
        &[
            "--output",
            "json",
            "topic",
            "alter",
            "orders",
            "--set",
            "retention.ms=7200000",
            "--set",
            "max.message.bytes=2000000",
        ],
    )
    .json();
    assert_eq!(altered["name"], "orders");
    assert_eq!(config(&altered, "retention.ms")["value"], "7200000");
    assert_eq!(config(&altered, "max.message.bytes")["value"], "2000000");
    assert_eq!(config(&altered, "max.message.bytes")["source"], "topic");
    let alter_run = weir(b, &["topic", "alter", "orders", "--delete", "retention.ms"]);
    let text = alter_run.success();
    assert!(
        text.starts_with("Changed the configs of topic orders"),
        "{text}"
    );
    let retention = &rows(text, "retention.ms")[0];
    assert_ne!(retention[2], "topic", "{text}");
    let described = weir(b, &["--output", "json", "topic", "describe", "orders"]).json();
    assert_ne!(config(&described, "retention.ms")["source"], "topic");
    assert_eq!(config(&described, "max.message.bytes")["value"], "2000000");

    // Grow.
    let grown = weir(b, &["topic", "add-partitions", "orders", "--count", "5"]);
    assert_eq!(grown.success().trim(), "Topic orders now has 5 partitions.");
    let described = weir(b, &["--output", "json", "topic", "describe", "orders"]).json();
    assert_eq!(
        described["partitions"]
            .as_array()
            .expect("partitions")
            .len(),
        5
    );
    let grown = weir(
        b,
        &[
            "--output",
            "json",
            "topic",
            "add-partitions",
            "events",
            "--count",
            "3",
        ],
    )
    .json();
    assert_eq!(
        grown,
        serde_json::json!({"name": "events", "partitions": 3})
    );

    // Delete.
    let deleted = weir(b, &["topic", "delete", "events"]);
    assert_eq!(deleted.success().trim(), "Deleted topic events.");
    assert_eq!(topic_names(b), ["orders"]);
    let deleted = weir(b, &["--output", "json", "topic", "delete", "orders"]).json();
    assert_eq!(deleted, serde_json::json!({"deleted": "orders"}));
    assert!(topic_names(b).is_empty());
    let listed = weir(b, &["topic", "list"]);
    assert!(listed.success().starts_with("No topics"), "{listed:?}");
}

#[test]
fn topic_errors_say_what_was_wrong_and_exit_1() {
    let node = TestNode::start();
    let b = &node.grpc();

    // An unknown topic: the client's error says how to create it.
    for args in [
        &["topic", "describe", "nope"][..],
        &["topic", "delete", "nope"],
        &["topic", "add-partitions", "nope", "--count", "4"],
        &["topic", "alter", "nope", "--set", "retention.ms=1"],
    ] {
        weir(b, args).one_line_failure(
            "topic \"nope\" does not exist (create it with `weir topic create nope`)",
        );
    }

    weir(b, &["topic", "create", "t", "--partitions", "2"]).success();
    weir(b, &["topic", "create", "t"]).one_line_failure("already exists");
    // A partition count that does not grow the topic.
    weir(b, &["topic", "add-partitions", "t", "--count", "1"])
        .one_line_failure("cannot grow topic \"t\" to 1 partitions");
    // An unknown config name.
    weir(b, &["topic", "alter", "t", "--set", "no.such.config=1"])
        .one_line_failure("no.such.config");

    // Bad flags are clap's errors, with status 1.
    weir(b, &["topic", "create", "u", "--config", "retention.ms"])
        .failure("`retention.ms` is not NAME=VALUE");
    weir(b, &["topic", "create", "u", "--partitions", "many"]).failure("many");
    weir(b, &["topic", "alter", "t"]).failure("--set");
    weir(b, &["topic", "frobnicate"]).failure("frobnicate");
    // None of them created anything.
    let listed = weir(b, &["--output", "json", "topic", "list"]).json();
    assert_eq!(
        listed["topics"].as_array().expect("topics").len(),
        1,
        "{listed}"
    );
}
