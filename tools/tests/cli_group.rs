//! `weir group list|describe|reset-offsets|delete` against an in-process broker with a group
//! that has committed offsets but no members (committed with the raw `Groups.CommitOffsets`
//! RPC, generation -1), as tables and as JSON: lag, a dry-run reset that commits nothing,
//! resets to the earliest, the latest, a time and by a shift; and the errors of an unknown
//! group, a bad datetime, and a reset without a target.

mod cli_common;

use std::collections::BTreeMap;

use cli_common::{TestNode, recent_ms, rows, weir};
use serde_json::json;

#[test]
fn groups_are_listed_described_reset_and_deleted() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("events", 2);
    let base_ms = recent_ms();
    node.produce("events", 0, 10, base_ms);
    node.produce("events", 1, 5, base_ms);
    node.commit("audit", "events", &[(0, 4), (1, 5)]);

    // List.
    let listed = weir(b, &["--output", "json", "group", "list"]).json();
    assert_eq!(
        listed,
        json!({"groups": [{"group": "audit", "state": "Empty", "protocol_type": ""}]})
    );
    let listed = weir(b, &["group", "list"]);
    let text = listed.success();
    assert!(text.starts_with("GROUP"), "{text}");
    assert_eq!(rows(text, "audit"), [vec!["audit", "Empty", "-"]], "{text}");

    // Describe: committed offsets, high watermarks and lag.
    let described = weir(b, &["--output", "json", "group", "describe", "audit"]).json();
    assert_eq!(described["group"], "audit");
    assert_eq!(described["state"], "Empty");
    assert_eq!(described["members"], json!([]));
    assert_eq!(described["total_lag"], 6);
    let offsets: Vec<(i64, i64, i64, i64)> = described["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            assert_eq!(o["topic"], "events");
            (
                o["partition"].as_i64().unwrap(),
                o["committed_offset"].as_i64().unwrap(),
                o["high_watermark"].as_i64().unwrap(),
                o["lag"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(offsets, [(0, 4, 10, 6), (1, 5, 5, 0)]);
    let described = weir(b, &["group", "describe", "audit"]);
    let text = described.success();
    assert!(text.contains("State:"), "{text}");
    assert!(text.contains("Empty"), "{text}");
    assert!(text.contains("Total lag:     6\n"), "{text}");
    assert_eq!(
        rows(text, "events"),
        [
            vec!["events", "0", "4", "10", "6"],
            vec!["events", "1", "5", "5", "0"]
        ],
        "{text}"
    );

    // A dry run prints the plan and commits nothing.
    let plan = weir(
        b,
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--to-earliest",
            "--dry-run",
        ],
    );
    let text = plan.success();
    assert_eq!(
        rows(text, "events"),
        [vec!["events", "0", "4", "0"], vec!["events", "1", "5", "0"]],
        "{text}"
    );
    assert!(text.contains("(dry run: nothing committed)"), "{text}");
    let plan = weir(
        b,
        &[
            "--output",
            "json",
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--to-latest",
            "--dry-run",
        ],
    )
    .json();
    assert_eq!(
        plan,
        json!({
            "group": "audit",
            "topic": "events",
            "dry_run": true,
            "partitions": [
                {"partition": 0, "current_offset": 4, "new_offset": 10},
                {"partition": 1, "current_offset": 5, "new_offset": 5},
            ],
        })
    );
    assert_eq!(
        node.committed("audit", "events"),
        BTreeMap::from([(0, 4), (1, 5)])
    );

    // A shift of one partition, committed.
    let plan = weir(
        b,
        &[
            "--output",
            "json",
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--partitions",
            "0",
            "--shift-by",
            "-3",
        ],
    )
    .json();
    assert_eq!(plan["dry_run"], false);
    assert_eq!(
        plan["partitions"],
        json!([{"partition": 0, "current_offset": 4, "new_offset": 1}])
    );
    assert_eq!(
        node.committed("audit", "events"),
        BTreeMap::from([(0, 1), (1, 5)])
    );

    // To the latest, as a table.
    let reset = weir(
        b,
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--to-latest",
        ],
    );
    let text = reset.success();
    assert_eq!(
        rows(text, "events"),
        [
            vec!["events", "0", "1", "10"],
            vec!["events", "1", "5", "5"]
        ],
        "{text}"
    );
    assert!(
        text.contains("Committed the new offsets of group audit on topic events."),
        "{text}"
    );
    assert!(!text.contains("dry run"), "{text}");
    assert_eq!(
        node.committed("audit", "events"),
        BTreeMap::from([(0, 10), (1, 5)])
    );

    // To a time: the fourth record of each partition (timestamps are base_ms + i s).
    let at = chrono::DateTime::from_timestamp_millis(base_ms + 3000)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let plan = weir(
        b,
        &[
            "--output",
            "json",
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--partitions",
            "0,1",
            "--to-datetime",
            &at,
        ],
    )
    .json();
    assert_eq!(
        plan["partitions"],
        json!([
            {"partition": 0, "current_offset": 10, "new_offset": 3},
            {"partition": 1, "current_offset": 5, "new_offset": 3},
        ])
    );
    assert_eq!(
        node.committed("audit", "events"),
        BTreeMap::from([(0, 3), (1, 3)])
    );

    // Delete.
    let deleted = weir(b, &["group", "delete", "audit"]);
    assert_eq!(deleted.success().trim(), "Deleted group audit.");
    let listed = weir(b, &["--output", "json", "group", "list"]).json();
    assert_eq!(listed, json!({"groups": []}));
    let listed = weir(b, &["group", "list"]);
    assert_eq!(listed.success().trim(), "No consumer groups.");
    weir(b, &["group", "describe", "audit"]).one_line_failure("group \"audit\" does not exist");

    node.commit("second", "events", &[(0, 1)]);
    let deleted = weir(b, &["--output", "json", "group", "delete", "second"]).json();
    assert_eq!(deleted, json!({"deleted": "second"}));
}

#[test]
fn group_errors_say_what_was_wrong_and_exit_1() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("events", 1);
    node.commit("audit", "events", &[(0, 0)]);

    weir(b, &["group", "describe", "nobody"]).one_line_failure(
        "group \"nobody\" does not exist: it has no members and no committed offsets",
    );
    weir(b, &["group", "delete", "nobody"]).one_line_failure("cannot delete group \"nobody\"");
    weir(
        b,
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "nope",
            "--to-earliest",
        ],
    )
    .one_line_failure("nope");

    // Bad flags: clap's errors, with status 1, and nothing reset.
    weir(
        b,
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--to-datetime",
            "yesterday",
        ],
    )
    .failure("`yesterday` is not a date and time: use RFC 3339, e.g. 2026-12-07T10:00:00Z");
    weir(b, &["group", "reset-offsets", "audit", "--topic", "events"]).failure("--to-earliest");
    weir(
        b,
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--to-earliest",
            "--to-latest",
        ],
    )
    .failure("cannot be used with");
    weir(
        b,
        &[
            "group",
            "reset-offsets",
            "audit",
            "--topic",
            "events",
            "--shift-by",
            "x",
        ],
    )
    .failure("'x'");
    assert_eq!(node.committed("audit", "events"), BTreeMap::from([(0, 0)]));
}

#[test]
fn a_group_with_a_member_shows_it_and_refuses_resets_and_deletion() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("work", 2);
    node.produce("work", 0, 3, recent_ms());
    let (member_id, mut partitions) = node.join("workers", "work", "cli-test");
    partitions.sort_unstable();
    assert_eq!(partitions, [0, 1]);

    let described = weir(b, &["--output", "json", "group", "describe", "workers"]).json();
    assert_eq!(described["group"], "workers");
    assert_eq!(described["protocol_type"], "consumer");
    let members = described["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{described:#}");
    assert_eq!(members[0]["member_id"], member_id.as_str());
    assert_eq!(members[0]["client_id"], "cli-test");
    assert!(
        !members[0]["client_host"]
            .as_str()
            .expect("a host")
            .is_empty(),
        "{described:#}"
    );
    assert_eq!(
        members[0]["assignment"],
        json!([{"topic": "work", "partition": 0}, {"topic": "work", "partition": 1}])
    );
    let described = weir(b, &["group", "describe", "workers"]);
    let text = described.success();
    assert!(text.contains("Members:       1\n"), "{text}");
    let rows = rows(text, &member_id);
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0][1], "cli-test", "{text}");
    assert_eq!(rows[0][3], "work-0,work-1", "{text}");
    assert!(text.contains("No committed offsets."), "{text}");

    weir(
        b,
        &[
            "group",
            "reset-offsets",
            "workers",
            "--topic",
            "work",
            "--to-latest",
        ],
    )
    .one_line_failure("NON_EMPTY_GROUP");
    weir(b, &["group", "delete", "workers"]).one_line_failure("NON_EMPTY_GROUP");
}
