//! kafka-python (a client of its own, not built on librdkafka) against a node: admin, an
//! idempotent producer under every codec, consuming back and ListOffsets by timestamp. The
//! script is `tests/compat/kafka_python.py`; `tests/run` (the README's test command) makes
//! the virtual environment it runs in.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_produces_consumes_and_administers() {
    let python = workspace().join("target/compat-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the README's test command (tests/run), which makes it with \
         kafka-python installed",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();
    let script = workspace().join("tests/compat/kafka_python.py");
    let output = tokio::task::spawn_blocking(move || {
        common::process::run(Command::new(python).arg(script).arg(&bootstrap), b"", WAIT)
            .expect("python starts")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kafka-python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in [
        "admin: topic created",
        "consume: all",
        "list offsets",
        "topic deleted",
    ] {
        assert!(stdout.contains(check), "{check}:\n{stdout}");
    }
    node.shutdown().await.unwrap();
}
