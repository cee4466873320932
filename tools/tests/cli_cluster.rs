//! `weir cluster info|brokers|controller` against an in-process broker, as tables and as
//! JSON; a broker that cannot be reached (by `--bootstrap` and by `WEIR_BOOTSTRAP`); bad
//! flags; `--help`.

mod cli_common;

use std::net::TcpListener;
use std::process::Command;

use cli_common::{TestNode, rows, run, weir};

#[test]
fn cluster_commands_show_the_brokers_and_the_quorum() {
    let node = TestNode::start();
    let b = &node.grpc();

    let info = weir(b, &["cluster", "info"]);
    let text = info.success();
    assert!(text.contains("Brokers:    1\n"), "{text}");
    assert!(text.contains("Broker ids: 1\n"), "{text}");
    assert!(text.contains("Controller: 1\n"), "{text}");
    let info = weir(b, &["cluster", "info", "--output", "json"]).json();
    assert_eq!(
        info,
        serde_json::json!({"broker_count": 1, "broker_ids": [1], "controller_id": 1})
    );

    let brokers = weir(b, &["cluster", "brokers"]);
    let text = brokers.success();
    assert!(text.starts_with("ID"), "{text}");
    assert_eq!(
        rows(text, "1"),
        [vec!["1", b.as_str(), node.kafka().as_str(), "-", "yes"]],
        "{text}"
    );
    let brokers = weir(b, &["--output", "json", "cluster", "brokers"]).json();
    assert_eq!(
        brokers,
        serde_json::json!({
            "brokers": [{
                "id": 1,
                "grpc_address": b,
                "kafka_address": node.kafka(),
                "rack": null,
                "controller": true,
            }],
            "controller_id": 1,
        })
    );

    let quorum = weir(b, &["--output", "json", "cluster", "controller"]).json();
    assert_eq!(quorum["leader_id"], 1);
    assert!(quorum["term"].as_u64().expect("a term") >= 1, "{quorum}");
    assert!(
        quorum["applied_index"].as_u64().expect("an index") >= 1,
        "{quorum}"
    );
    assert_eq!(
        quorum["voters"],
        serde_json::json!([{"node_id": 1, "internal_address": node.internal()}])
    );
    assert_eq!(quorum["learners"], serde_json::json!([]));
    let quorum = weir(b, &["cluster", "controller"]);
    let text = quorum.success();
    assert!(text.contains("Leader:        1\n"), "{text}");
    assert!(text.contains("Voters:        1\n"), "{text}");
    assert_eq!(
        rows(text, "1"),
        [vec!["1", "voter", node.internal().as_str(), "yes"]],
        "{text}"
    );
}

#[test]
fn a_broker_that_cannot_be_reached_is_named() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let expected = format!("cannot reach a Weir broker at {address}");
    for args in [
        &["cluster", "info"][..],
        &["topic", "list"],
        &["group", "list"],
        &["--output", "json", "cluster", "controller"],
    ] {
        let run = weir(&address, args);
        run.one_line_failure(&expected);
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    // The address from the environment.
    let mut with_env = Command::new(env!("CARGO_BIN_EXE_weir"));
    with_env
        .env("WEIR_BOOTSTRAP", &address)
        .args(["cluster", "brokers"]);
    run(&mut with_env).one_line_failure(&expected);
}

#[test]
fn bad_flags_exit_1_and_help_exits_0() {
    let mut bad = Command::new(env!("CARGO_BIN_EXE_weir"));
    bad.args(["cluster", "leaders"]);
    run(&mut bad).failure("unrecognized subcommand 'leaders'");
    let mut bad = Command::new(env!("CARGO_BIN_EXE_weir"));
    bad.args(["--output", "yaml", "cluster", "info"]);
    run(&mut bad).failure("invalid value 'yaml' for '--output <OUTPUT>'");

    let mut help = Command::new(env!("CARGO_BIN_EXE_weir"));
    help.arg("--help");
    let help = run(&mut help);
    let text = help.success();
    for command in ["topic", "group", "cluster", "dev-cluster", "dump-log"] {
        assert!(text.contains(command), "{text}");
    }
    assert!(text.contains("WEIR_BOOTSTRAP"), "{text}");
}
