//! kcat as Debian packages it (built on librdkafka 2.0.2, older than the `rdkafka` crate's)
//! against a node: metadata, producing keyed records with headers under every codec, and
//! consuming them back from the beginning. `tests/run` (the README's test command) installs
//! kcat when it is missing.

mod common;

use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Runs kcat with `args`, feeding it `input`; returns its standard output, or panics with its
/// standard error if it fails or outlives `WAIT`.
fn kcat(args: &[&str], input: &str) -> String {
    let output = common::process::run(Command::new("kcat").args(args), input.as_bytes(), WAIT)
        .expect(
            "kcat is installed: run `apt-get install kcat`, or the README's test command \
             (tests/run), which installs it",
        );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "kcat {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_and_consumes_under_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();

    const RECORDS: usize = 2_000;
    let checked = tokio::task::spawn_blocking(move || {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let topic = format!("kcat-{codec}");
            let lines: String = (0..RECORDS)
                .map(|i| format!("key-{i}:value {i} under {codec}\n"))
                .collect();
            // The topic is created by kcat's own Metadata request (auto_create_topics).
            let produce = [
                "-P",
                "-b",
                &bootstrap,
                "-t",
                &topic,
                "-K:",
                "-z",
                codec,
                "-H",
                "origin=kcat",
            ];
            kcat(&produce, &lines);
            let consume = [
                "-C",
                "-b",
                &bootstrap,
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "-f",
                "%k:%s|%o|%h\n",
            ];
            let consumed = kcat(&consume, "");
            let expected: String = (0..RECORDS)
                .map(|i| format!("key-{i}:value {i} under {codec}|{i}|origin=kcat\n"))
                .collect();
            assert_eq!(
                consumed, expected,
                "{codec}: every record, in order, intact"
            );
        }
        kcat(&["-L", "-b", &bootstrap], "")
    })
    .await
    .unwrap();
    assert!(
        checked.contains("topic \"kcat-zstd\" with 1 partitions"),
        "{checked}"
    );
    assert!(checked.contains("broker 1 at "), "{checked}");
    node.shutdown().await.unwrap();
}
