//! The node configuration's layers (defaults < file < `WEIR_*` variables < flags), its
//! command line, and its errors. No test reads or changes the process environment: flags are
//! parsed with clap's `env` switched off and the environment is a lookup each test passes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use weir_broker::config::{
    BrokerArgs, LogConfig, NodeConfig, NodeConfigError, Origin, StorageConfig, Voter,
};

/// A config file in a directory that lives as long as the returned guard.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn config_file(text: &str) -> ConfigFile {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, text).expect("write the config file");
    ConfigFile { _dir: dir, path }
}

/// Parses `weir-broker <flags>` without looking at the process environment.
fn flags(flags: &[&str]) -> BrokerArgs {
    BrokerArgs::try_parse_from_ignoring_env(
        std::iter::once("weir-broker").chain(flags.iter().copied()),
    )
    .expect("the flags parse")
}

fn flags_with_file(file: &ConfigFile, more: &[&str]) -> BrokerArgs {
    let path = file.path.to_str().expect("temporary paths are UTF-8");
    let mut all = vec!["--config", path];
    all.extend_from_slice(more);
    flags(&all)
}

/// An environment holding only `vars`.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn no_env() -> impl Fn(&str) -> Option<String> {
    env(&[])
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

fn voter(node_id: u64, address: &str) -> Voter {
    Voter {
        node_id,
        address: address.to_string(),
    }
}

/// The key and origin of an `Invalid` error, and its message.
fn invalid(result: Result<NodeConfig, NodeConfigError>) -> (&'static str, Origin, String) {
    match result {
        Err(error @ NodeConfigError::Invalid { .. }) => {
            let message = error.to_string();
            let NodeConfigError::Invalid { error, origin } = error else {
                unreachable!()
            };
            (error.key, origin, message)
        }
        other => panic!("expected an invalid value, got {other:?}"),
    }
}

#[test]
fn the_command_line_is_well_formed() {
    BrokerArgs::command().debug_assert();
}

#[test]
fn every_flag_is_a_key_with_its_weir_variable() {
    let command = BrokerArgs::command();
    let mut flagged = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let long = arg.get_long().expect("every option is a long flag");
        assert_eq!(long, id.replace('_', "-"), "flag of {id}");
        let env = arg.get_env().expect("every flag has a variable");
        assert_eq!(env, format!("WEIR_{}", id.to_uppercase()).as_str(), "{id}");
        if id != "config" {
            assert!(
                NodeConfig::KEYS.contains(&id),
                "--{long} is not a config key"
            );
            flagged.push(id.to_string());
        }
    }
    assert_eq!(
        flagged,
        [
            "node_id",
            "data_dir",
            "kafka_addr",
            "grpc_addr",
            "internal_addr",
            "http_addr",
            "advertised_kafka_addr",
            "advertised_grpc_addr",
            "advertised_internal_addr",
            "controller_voters",
            "rack",
        ]
    );
}

#[test]
fn help_names_the_variables_and_the_defaults() {
    let help = BrokerArgs::command().render_long_help().to_string();
    for expected in [
        "--node-id <N>",
        "WEIR_NODE_ID",
        "[default: 1]",
        "[default: ./weir-data]",
        "[default: 127.0.0.1:9092]",
        "[default: 127.0.0.1:9644]",
        "--controller-voters <LIST>",
        "WEIR_CONFIG",
    ] {
        assert!(
            help.contains(expected),
            "{expected:?} missing from:\n{help}"
        );
    }
}

#[test]
fn no_arguments_is_one_node_on_localhost() {
    let config = NodeConfig::load(&flags(&[]), no_env()).expect("the defaults load");
    assert_eq!(config, NodeConfig::default());
    assert_eq!(config.node_id, 1);
    assert_eq!(config.data_dir, Path::new("./weir-data"));
    assert_eq!(config.kafka_addr, addr("127.0.0.1:9092"));
    assert_eq!(config.grpc_addr, addr("127.0.0.1:9093"));
    assert_eq!(config.internal_addr, addr("127.0.0.1:9094"));
    assert_eq!(config.http_addr, addr("127.0.0.1:9644"));
    assert_eq!(config.advertised_kafka_addr, "127.0.0.1:9092");
    assert_eq!(config.advertised_grpc_addr, "127.0.0.1:9093");
    assert_eq!(config.advertised_internal_addr, "127.0.0.1:9094");
    assert_eq!(config.controller_voters, [voter(1, "127.0.0.1:9094")]);
    assert!(config.is_controller_voter());
    assert_eq!(config.rack, None);
    assert_eq!(config.num_partitions, 1);
    assert_eq!(config.default_replication_factor, 1);
    assert_eq!(config.min_insync_replicas, 1);
    assert!(config.auto_create_topics);
    assert_eq!(config.log_segment_bytes, 1 << 30);
    assert_eq!(config.log_retention_ms, 7 * 24 * 60 * 60 * 1000);
    assert_eq!(config.log_retention_bytes, -1);
    assert_eq!(config.message_max_bytes, 1_048_588);
    assert_eq!(config.producer_id_expiration_ms, 86_400_000);
    assert_eq!(config.producer_id_expiration_check_interval_ms, 600_000);
    assert_eq!(config.producer_snapshot_check_interval_ms, 10_000);
    assert_eq!(config.broker_session_timeout_ms, 3000);
    assert_eq!(config.broker_heartbeat_interval_ms, 500);
    assert_eq!(config.controller_heartbeat_interval_ms, 100);
    assert_eq!(config.controller_election_timeout_min_ms, 300);
    assert_eq!(config.controller_election_timeout_max_ms, 600);
}

#[test]
fn the_file_overrides_the_defaults() {
    let file = config_file(
        r#"
        node_id = 2
        data_dir = "/var/lib/weir"
        kafka_addr = "0.0.0.0:19092"
        advertised_kafka_addr = "broker-2.example:19092"
        controller_voters = "1@a:9094, 2@b:9094,3@c:9094"
        rack = "zone-b"
        num_partitions = 6
        default_replication_factor = 3
        min_insync_replicas = 2
        auto_create_topics = false
        log_retention_ms = -1
        controller_election_timeout_max_ms = 900
        "#,
    );
    let config = NodeConfig::load(&flags_with_file(&file, &[]), no_env()).expect("the file loads");
    let expected = NodeConfig {
        node_id: 2,
        data_dir: PathBuf::from("/var/lib/weir"),
        kafka_addr: addr("0.0.0.0:19092"),
        advertised_kafka_addr: "broker-2.example:19092".into(),
        controller_voters: vec![voter(1, "a:9094"), voter(2, "b:9094"), voter(3, "c:9094")],
        rack: Some("zone-b".into()),
        num_partitions: 6,
        default_replication_factor: 3,
        min_insync_replicas: 2,
        auto_create_topics: false,
        log_retention_ms: -1,
        controller_election_timeout_max_ms: 900,
        ..NodeConfig::default()
    };
    assert_eq!(config, expected);
    assert!(config.is_controller_voter());
}

#[test]
fn weir_config_names_the_file_and_the_flag_beats_it() {
    let from_env = config_file("node_id = 7");
    let from_flag = config_file("node_id = 8");
    let vars = [("WEIR_CONFIG", from_env.path.to_str().expect("UTF-8"))];
    let config = NodeConfig::load(&flags(&[]), env(&vars)).expect("loads");
    assert_eq!(config.node_id, 7);
    let config = NodeConfig::load(&flags_with_file(&from_flag, &[]), env(&vars)).expect("loads");
    assert_eq!(config.node_id, 8);
}

#[test]
fn variables_override_the_file_and_flags_override_variables() {
    let file = config_file(
        r#"
        node_id = 2
        num_partitions = 3
        kafka_addr = "0.0.0.0:1000"
        advertised_kafka_addr = "file:1000"
        rack = "file-rack"
        "#,
    );
    let vars = env(&[
        ("WEIR_NODE_ID", "3"),
        ("WEIR_NUM_PARTITIONS", "4"),
        ("WEIR_ADVERTISED_KAFKA_ADDR", "env:2000"),
        ("WEIR_RACK", "env-rack"),
        ("WEIR_AUTO_CREATE_TOPICS", "false"),
        ("WEIR_LOG_SEGMENT_BYTES", "1048576"),
        // Empty counts as not set, so the file's value stays.
        ("WEIR_KAFKA_ADDR", ""),
    ]);
    let args = flags_with_file(&file, &["--node-id", "4", "--rack", "flag-rack"]);
    let config = NodeConfig::load(&args, &vars).expect("loads");
    assert_eq!(config.node_id, 4, "the flag beats the variable");
    assert_eq!(config.rack.as_deref(), Some("flag-rack"));
    assert_eq!(config.num_partitions, 4, "the variable beats the file");
    assert_eq!(config.advertised_kafka_addr, "env:2000");
    assert!(
        !config.auto_create_topics,
        "keys without a flag have a variable"
    );
    assert_eq!(config.log_segment_bytes, 1 << 20);
    assert_eq!(
        config.kafka_addr,
        addr("0.0.0.0:1000"),
        "the file beats the default"
    );

    let config = NodeConfig::load(&flags_with_file(&file, &[]), &vars).expect("loads");
    assert_eq!(config.node_id, 3, "the variable beats the file");
}

#[test]
fn advertised_addresses_and_voters_follow_the_listen_addresses() {
    let args = flags(&[
        "--node-id",
        "5",
        "--kafka-addr",
        "10.0.0.5:9192",
        "--grpc-addr",
        "[::1]:9193",
        "--internal-addr",
        "10.0.0.5:9194",
    ]);
    let config = NodeConfig::load(&args, no_env()).expect("loads");
    assert_eq!(config.advertised_kafka_addr, "10.0.0.5:9192");
    assert_eq!(config.advertised_grpc_addr, "[::1]:9193");
    assert_eq!(config.advertised_internal_addr, "10.0.0.5:9194");
    assert_eq!(config.controller_voters, [voter(5, "10.0.0.5:9194")]);

    // An advertised internal address moves the default voter with it.
    let args = flags(&["--advertised-internal-addr", "node-1.weir:9094"]);
    let config = NodeConfig::load(&args, no_env()).expect("loads");
    assert_eq!(config.controller_voters, [voter(1, "node-1.weir:9094")]);
}

#[test]
fn a_node_outside_the_voters_is_a_broker_only() {
    let args = flags(&[
        "--node-id",
        "4",
        "--controller-voters",
        "1@a:9094,2@b:9094,3@c:9094",
    ]);
    let config = NodeConfig::load(&args, no_env()).expect("a learner is fine");
    assert!(!config.is_controller_voter());
}

#[test]
fn listening_on_every_interface_needs_an_advertised_address() {
    let args = flags(&["--kafka-addr", "0.0.0.0:9092"]);
    let (key, origin, message) = invalid(NodeConfig::load(&args, no_env()));
    assert_eq!(key, "advertised_kafka_addr");
    assert_eq!(origin, Origin::Default);
    assert!(message.contains("--advertised-kafka-addr"), "{message}");

    let args = flags(&[
        "--kafka-addr",
        "0.0.0.0:9092",
        "--advertised-kafka-addr",
        "b1:9092",
    ]);
    assert!(NodeConfig::load(&args, no_env()).is_ok());
}

#[test]
fn an_unknown_key_names_the_key_and_the_file() {
    let file = config_file("node_id = 1\nnode_idd = 2\n");
    let error = NodeConfig::load(&flags_with_file(&file, &[]), no_env()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, NodeConfigError::UnknownKey { key, .. } if key == "node_idd"),
        "{error:?}"
    );
    assert!(message.contains("\"node_idd\""), "{message}");
    assert!(
        message.contains(&file.path.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("node_id, data_dir"),
        "lists the keys: {message}"
    );

    // Kafka's dotted names are a nested table in TOML; they are reported as written, with ours.
    let file = config_file("log.segment.bytes = 1048576\n");
    let message = NodeConfig::load(&flags_with_file(&file, &[]), no_env())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("unknown key \"log.segment.bytes\"")
            && message.contains("did you mean \"log_segment_bytes\"?"),
        "{message}"
    );
}

#[test]
fn an_unreadable_file_names_the_path_and_the_os_error() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("missing.toml");
    let args = flags(&["--config", path.to_str().expect("UTF-8")]);
    let error = NodeConfig::load(&args, no_env()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, NodeConfigError::ReadFile { .. }),
        "{error:?}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
    assert!(message.contains("--config or WEIR_CONFIG"), "{message}");
}

#[test]
fn a_syntax_error_shows_the_line_and_column() {
    let file = config_file("node_id = 1\nkafka_addr = \"0.0.0.0:9092\nrack = \"a\"\n");
    let error = NodeConfig::load(&flags_with_file(&file, &[]), no_env()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, NodeConfigError::Syntax { .. }), "{error:?}");
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("column"), "{message}");
    assert!(
        message.contains(&file.path.display().to_string()),
        "{message}"
    );
}

/// Loads `file`, and `vars`, and `args`, and returns the key of the value refused, where it
/// came from and the message.
fn refused(file: &str, vars: &[(&str, &str)], args: &[&str]) -> (&'static str, Origin, String) {
    let file = config_file(file);
    invalid(NodeConfig::load(&flags_with_file(&file, args), env(vars)))
}

#[test]
fn bad_values_name_their_key_and_where_they_were_set() {
    let check = |file: &str, vars: &[(&str, &str)], args: &[&str], key: &str, reason: &str| {
        let (refused_key, _, message) = refused(file, vars, args);
        assert_eq!(refused_key, key, "{message}");
        assert!(
            message.starts_with(&format!("invalid configuration: {key} = ")),
            "{message}"
        );
        assert!(
            message.contains(reason),
            "{key}: {reason:?} not in {message}"
        );
    };
    // Values that do not convert.
    check(
        "node_id = \"one\"",
        &[],
        &[],
        "node_id",
        "must be a whole number, not a string",
    );
    check(
        "node_id = 3000000000",
        &[],
        &[],
        "node_id",
        "from -2147483648 to 2147483647",
    );
    check(
        "kafka_addr = \"localhost:9092\"",
        &[],
        &[],
        "kafka_addr",
        "not a host name",
    );
    check(
        "auto_create_topics = \"yes\"",
        &[],
        &[],
        "auto_create_topics",
        "true or false",
    );
    check(
        "",
        &[("WEIR_NUM_PARTITIONS", "many")],
        &[],
        "num_partitions",
        "whole number",
    );
    check(
        "",
        &[],
        &["--grpc-addr", "1.2.3.4"],
        "grpc_addr",
        "must be IP:PORT",
    );
    check(
        "controller_voters = 1",
        &[],
        &[],
        "controller_voters",
        "must be a string",
    );
    // Values out of range.
    check("node_id = -1", &[], &[], "node_id", "must be 0 or more");
    check(
        "num_partitions = 0",
        &[],
        &[],
        "num_partitions",
        "at least 1",
    );
    check(
        "",
        &[("WEIR_DEFAULT_REPLICATION_FACTOR", "0")],
        &[],
        "default_replication_factor",
        "at least 1",
    );
    check(
        "min_insync_replicas = 0",
        &[],
        &[],
        "min_insync_replicas",
        "at least 1",
    );
    check(
        "log_segment_bytes = 100",
        &[],
        &[],
        "log_segment_bytes",
        "between 1024 and 2147483647",
    );
    check(
        "log_segment_bytes = 4294967296",
        &[],
        &[],
        "log_segment_bytes",
        "between 1024",
    );
    check(
        "log_retention_ms = -2",
        &[],
        &[],
        "log_retention_ms",
        "-1 (no limit) or at least 0",
    );
    check(
        "log_retention_bytes = -5",
        &[],
        &[],
        "log_retention_bytes",
        "-1 (no limit)",
    );
    check(
        "message_max_bytes = 0",
        &[],
        &[],
        "message_max_bytes",
        "at least 1",
    );
    check(
        "",
        &[("WEIR_PRODUCER_ID_EXPIRATION_MS", "0")],
        &[],
        "producer_id_expiration_ms",
        "at least 1",
    );
    check("rack = \" \"", &[], &[], "rack", "must not be blank");
    check("data_dir = \"\"", &[], &[], "data_dir", "must not be empty");
    check(
        "grpc_addr = \"127.0.0.1:9092\"",
        &[],
        &[],
        "grpc_addr",
        "is also kafka_addr; give each listener its own port",
    );
    check(
        "advertised_grpc_addr = \"[::]:9093\"",
        &[],
        &[],
        "advertised_grpc_addr",
        "set advertised_grpc_addr (--advertised-grpc-addr)",
    );
    check(
        "advertised_kafka_addr = \"b1:0\"",
        &[],
        &[],
        "advertised_kafka_addr",
        "port from 1 to 65535",
    );
    check(
        "advertised_grpc_addr = \"host\"",
        &[],
        &[],
        "advertised_grpc_addr",
        "HOST:PORT",
    );
    // Keys checked against each other.
    check(
        "controller_election_timeout_min_ms = 600",
        &[],
        &[],
        "controller_election_timeout_min_ms",
        "must be below controller_election_timeout_max_ms (600)",
    );
    check(
        "controller_heartbeat_interval_ms = 300",
        &[],
        &[],
        "controller_heartbeat_interval_ms",
        "must be below controller_election_timeout_min_ms (300)",
    );
    check(
        "",
        &[("WEIR_BROKER_HEARTBEAT_INTERVAL_MS", "3000")],
        &[],
        "broker_heartbeat_interval_ms",
        "must be below broker_session_timeout_ms (3000)",
    );
    check(
        "broker_session_timeout_ms = 0",
        &[],
        &[],
        "broker_session_timeout_ms",
        "at least 1",
    );
}

#[test]
fn errors_say_which_layer_set_the_value() {
    let file = config_file("node_id = -1");
    let (_, origin, message) = invalid(NodeConfig::load(&flags_with_file(&file, &[]), no_env()));
    assert_eq!(origin, Origin::File(file.path.clone()));
    assert!(message.ends_with(&format!("(set in the config file {})", file.path.display())));

    let (_, origin, message) = refused("", &[("WEIR_NODE_ID", "-1")], &[]);
    assert_eq!(origin, Origin::Env("WEIR_NODE_ID".into()));
    assert_eq!(
        message,
        "invalid configuration: node_id = -1: must be 0 or more (Kafka node ids are \
         non-negative); give every node its own id (set by the environment variable WEIR_NODE_ID)"
    );

    let (_, origin, _) = refused("", &[("WEIR_NODE_ID", "x")], &[]);
    assert_eq!(
        origin,
        Origin::Env("WEIR_NODE_ID".into()),
        "a conversion error too"
    );

    let (_, origin, message) = refused("", &[], &["--node-id", "-1"]);
    assert_eq!(
        origin,
        Origin::CommandLine {
            flag: "--node-id".into(),
            env: "WEIR_NODE_ID".into()
        }
    );
    assert!(
        message.ends_with("(set by --node-id or WEIR_NODE_ID)"),
        "{message}"
    );
}

#[test]
fn a_malformed_voter_list_says_what_is_wrong() {
    let (key, _, message) = refused("controller_voters = \"1@a:9094,b:9094\"", &[], &[]);
    assert_eq!(key, "controller_voters");
    assert!(
        message.contains("entry 2 (\"b:9094\") is not NODE_ID@HOST:PORT"),
        "{message}"
    );
    let (key, _, message) = refused("", &[("WEIR_CONTROLLER_VOTERS", "1@a:9094,1@b:9094")], &[]);
    assert_eq!(key, "controller_voters");
    assert!(message.contains("node id 1 is listed twice"), "{message}");
    let (_, _, message) = refused("", &[], &["--controller-voters", "3000000000@a:9094"]);
    assert!(message.contains("above 2147483647"), "{message}");
}

#[test]
fn storage_config_takes_the_log_keys() {
    let args = flags(&["--data-dir", "/data/weir"]);
    let vars = env(&[
        ("WEIR_LOG_SEGMENT_BYTES", "1048576"),
        ("WEIR_LOG_RETENTION_MS", "-1"),
        ("WEIR_LOG_RETENTION_BYTES", "5000000"),
    ]);
    let storage = NodeConfig::load(&args, vars)
        .expect("loads")
        .storage_config();
    assert_eq!(storage.data_dir, Path::new("/data/weir"));
    assert_eq!(
        storage.log,
        LogConfig {
            segment_bytes: 1 << 20,
            retention_ms: None,
            retention_bytes: Some(5_000_000),
            ..LogConfig::default()
        }
    );
    assert_eq!(storage.validate(), Ok(()));

    let defaults = NodeConfig::default().storage_config();
    assert_eq!(defaults.log, LogConfig::default());
    assert_eq!(
        defaults.retention_check_interval_ms,
        StorageConfig::default().retention_check_interval_ms
    );
}

#[test]
fn roles_follow_the_voter_list_and_must_agree_with_it() {
    let voters = "1@10.0.0.1:9094,2@10.0.0.2:9094,3@10.0.0.3:9094";
    let load = |vars: &[(&str, &str)], node: &str| {
        NodeConfig::load(
            &flags(&["--node-id", node, "--controller-voters", voters]),
            env(vars),
        )
    };
    let listed = load(&[], "2").unwrap();
    assert!(listed.process_roles.broker && listed.process_roles.controller);
    let learner = load(&[], "4").unwrap();
    assert!(learner.process_roles.broker && !learner.process_roles.controller);
    let voter_only = load(&[("WEIR_PROCESS_ROLES", "controller")], "3").unwrap();
    assert!(!voter_only.process_roles.broker && voter_only.process_roles.controller);

    let (key, _, message) = invalid(load(&[("WEIR_PROCESS_ROLES", "controller")], "4"));
    assert_eq!(key, "process_roles");
    assert!(
        message.contains("node 4 is not in controller_voters"),
        "{message}"
    );
    let (key, _, message) = invalid(load(&[("WEIR_PROCESS_ROLES", "broker")], "1"));
    assert_eq!(key, "process_roles");
    assert!(
        message.contains("node 1 is listed in controller_voters"),
        "{message}"
    );
    let (key, _, message) = invalid(load(&[("WEIR_PROCESS_ROLES", "broker,router")], "1"));
    assert_eq!(key, "process_roles");
    assert!(message.contains("\"router\" is not a role"), "{message}");
}
