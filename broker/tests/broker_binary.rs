//! The `weir-broker` binary as a user runs it: a single node with no configuration joins its
//! own quorum and becomes a live broker, stops cleanly on SIGTERM and starts again from its
//! data directory; a bad configuration is refused before anything is touched.

mod common;

use std::process::Command;

use common::broker_process::BrokerProcess;

const BINARY: &str = env!("CARGO_BIN_EXE_weir-broker");

#[test]
fn a_node_with_no_configuration_becomes_a_live_broker_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[], &[]);
    broker.wait_for_text("joined the controller quorum");
    broker.wait_for_text("broker is live");
    broker.stop();
    assert!(dir.path().join("weir-data/metadata/raft-log").exists());
    assert!(dir.path().join("weir-data/topics").is_dir());

    let mut broker = BrokerProcess::start(dir.path(), &[], &[]);
    broker.wait_for_text("broker is live");
    broker.stop();
}

#[test]
fn a_malformed_voter_list_is_refused_before_anything_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BINARY)
        .current_dir(dir.path())
        .args(["--controller-voters", "1@127.0.0.1:9094,2@"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: the configuration is not usable: invalid configuration: controller_voters = "
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("entry 2 (\"2@\") has an address that is not HOST:PORT"),
        "{stderr}"
    );
    assert!(stderr.contains("--controller-voters"), "{stderr}");
    assert_eq!(
        stderr.matches("NODE_ID").count() + stderr.matches("HOST:PORT").count(),
        1
    );
    assert!(
        !dir.path().join("weir-data").exists(),
        "nothing was created"
    );
}
