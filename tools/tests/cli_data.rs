//! `weir produce`, `weir consume` and `weir perf` against an in-process broker: what they
//! print (as text and as JSON), that the records land where they say, a group's committed
//! offsets across runs, and their errors.

mod cli_common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli_common::{Run, TestNode, WAIT, recent_ms, weir, weir_with_input};
use serde_json::Value;

/// A `weir` process left running: its standard output line by line, its standard error at
/// the end.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Lets the reading of standard output begin.
    read: Option<mpsc::Sender<()>>,
    stderr: std::thread::JoinHandle<String>,
}

impl Running {
    /// Starts `weir --bootstrap BOOTSTRAP ARGS...`; its standard output is read only after
    /// [`Running::read`], so until then it blocks once the pipe is full.
    fn start(bootstrap: &str, args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .env_remove("WEIR_BOOTSTRAP")
            .arg("--bootstrap")
            .arg(bootstrap)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let stdout = child.stdout.take().expect("piped");
        let (sender, lines) = mpsc::channel();
        let (read, go) = mpsc::channel();
        std::thread::spawn(move || {
            if go.recv().is_err() {
                return;
            }
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Running {
            child,
            lines,
            read: Some(read),
            stderr,
        }
    }

    /// Starts reading standard output.
    fn read(&mut self) {
        if let Some(read) = self.read.take() {
            let _ = read.send(());
        }
    }

    /// The next line printed, waiting at most [`WAIT`].
    fn line(&mut self) -> String {
        self.read();
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => {
                self.kill();
                panic!("weir printed no line in time: {e}");
            }
        }
    }

    /// Sends SIGINT (what Ctrl-C sends).
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGINT is sent");
    }

    /// Waits at most `bound` for the process to end; answers how, with its standard error.
    fn wait(mut self, bound: Duration) -> (ExitStatus, String) {
        self.read();
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("weir can be waited for") {
                return (status, self.stderr.join().expect("stderr is read"));
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("weir did not end within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines a successful `weir consume` printed; it says how many on standard error.
fn consumed(run: &Run) -> Vec<String> {
    assert_eq!(run.code, Some(0), "weir consume failed: {run:#?}");
    let lines: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    assert_eq!(
        run.stderr,
        format!("consumed {} records\n", lines.len()),
        "{run:#?}"
    );
    lines
}

/// The JSON objects, one a line, a successful `weir consume --output json` printed.
fn consumed_json(run: &Run) -> Vec<Value> {
    consumed(run)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[test]
fn produce_sends_values_keys_headers_to_partitions_and_reports_offsets() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("lines", 3);

    // Plain values to one partition: a sentence with the spread.
    let produced = weir_with_input(b, &["produce", "lines", "--partition", "0"], "a\nb\nc\n");
    assert_eq!(
        produced.success(),
        "produced 3 records to lines (3 to partition 0)\n"
    );

    // Leader acks and zstd, as JSON: each record's partition and offset, in input order.
    let produced = weir_with_input(
        b,
        &[
            "--output",
            "json",
            "produce",
            "lines",
            "--partition",
            "1",
            "--acks",
            "1",
            "--compression",
            "zstd",
        ],
        "x\ny\nz\n",
    )
    .json();
    assert_eq!(produced["topic"], "lines");
    let offsets: Vec<(i64, i64)> = produced["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap(),
                r["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(offsets, [(1, 0), (1, 1), (1, 2)]);

    // Keys split at the first separator, and headers on every record.
    let produced = weir_with_input(
        b,
        &[
            "produce",
            "lines",
            "--partition",
            "2",
            "--key-separator",
            ":",
            "--header",
            "a=1",
            "--header",
            "b=2",
        ],
        "k1:v1\nk2:v:2\n",
    );
    assert_eq!(
        produced.success(),
        "produced 2 records to lines (2 to partition 2)\n"
    );
    assert_eq!(node.high_watermarks("lines", 3), [3, 3, 2]);

    let all = weir(
        b,
        &[
            "consume",
            "lines",
            "--from-beginning",
            "--max-messages",
            "8",
            "--format",
            "{partition}/{offset} {key}={value} [{headers}]",
        ],
    );
    let mut lines = consumed(&all);
    lines.sort();
    assert_eq!(
        lines,
        [
            "0/0 null=a []",
            "0/1 null=b []",
            "0/2 null=c []",
            "1/0 null=x []",
            "1/1 null=y []",
            "1/2 null=z []",
            "2/0 k1=v1 [a=1,b=2]",
            "2/1 k2=v:2 [a=1,b=2]",
        ]
    );

    // Without --partition, records of one key all go to one partition.
    let keyed = weir_with_input(
        b,
        &[
            "--output",
            "json",
            "produce",
            "lines",
            "--key-separator",
            "=",
        ],
        "same=1\nsame=2\nsame=3\nsame=4\n",
    )
    .json();
    let records = keyed["records"].as_array().expect("records");
    assert_eq!(records.len(), 4);
    let partition = &records[0]["partition"];
    assert!(
        records.iter().all(|r| &r["partition"] == partition),
        "{keyed}"
    );
    let offsets: Vec<i64> = records
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{keyed}");
}

#[test]
fn produce_errors_exit_1_and_say_what_was_wrong() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("lines", 1);

    weir_with_input(b, &["produce", "nope"], "a\n")
        .one_line_failure("create it with `weir topic create nope`");

    let no_separator = weir_with_input(
        b,
        &["produce", "lines", "--key-separator", ":"],
        "k:v\nno separator\nk:v\n",
    );
    let message = no_separator.one_line_failure("line 2");
    assert!(message.contains("\":\""), "{message}");

    let bad_header = weir_with_input(b, &["produce", "lines", "--header", "novalue"], "a\n");
    bad_header.failure("NAME=VALUE");
    assert_eq!(bad_header.stdout, "");
    let bad_header = weir_with_input(b, &["produce", "lines", "--header", "=v"], "a\n");
    bad_header.failure("NAME=VALUE");
}

#[test]
fn consume_prints_records_from_the_beginning_an_offset_or_a_time() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("events", 2);
    let base = recent_ms();
    node.produce("events", 0, 5, base);
    node.produce("events", 1, 5, base);

    // From the beginning: each partition's values in offset order.
    let both = weir(
        b,
        &[
            "consume",
            "events",
            "--from-beginning",
            "--max-messages",
            "10",
            "--format",
            "{partition} {value}",
        ],
    );
    let lines = consumed(&both);
    assert_eq!(lines.len(), 10, "{lines:?}");
    for partition in ["0", "1"] {
        let values: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix(partition)?.strip_prefix(' '))
            .collect();
        assert_eq!(
            values,
            ["value-0", "value-1", "value-2", "value-3", "value-4"],
            "partition {partition}: {lines:?}"
        );
    }

    // The default format is the value alone.
    let values = weir(
        b,
        &[
            "consume",
            "events",
            "--from-beginning",
            "--max-messages",
            "3",
            "--partition",
            "0",
        ],
    );
    assert_eq!(consumed(&values), ["value-0", "value-1", "value-2"]);

    // One partition from an offset; every placeholder (and a tab) rendered.
    let from_offset = weir(
        b,
        &[
            "consume",
            "events",
            "--partition",
            "1",
            "--offset",
            "3",
            "--max-messages",
            "2",
            "--format",
            "{topic}\\t{partition}:{offset}:{key}={value} [{headers}] {timestamp}",
        ],
    );
    assert_eq!(
        consumed(&from_offset),
        [
            format!("events\t1:3:key-3=value-3 [] {}", base + 3000),
            format!("events\t1:4:key-4=value-4 [] {}", base + 4000),
        ]
    );

    // A null key prints as `null`; headers as name=value.
    node.create_topic("plain", 1);
    weir_with_input(
        b,
        &["produce", "plain", "--header", "h=1", "--header", "g=two"],
        "hello\n",
    )
    .success();
    let plain = weir(
        b,
        &[
            "consume",
            "plain",
            "--from-beginning",
            "--max-messages",
            "1",
            "--format",
            "{partition}:{offset}:{key}={value} [{headers}] {timestamp}",
        ],
    );
    let lines = consumed(&plain);
    let (start, timestamp) = lines[0].rsplit_once(' ').expect("a timestamp");
    assert_eq!(start, "0:0:null=hello [h=1,g=two]");
    let timestamp: i64 = timestamp.parse().expect("the timestamp is a number");
    assert!(timestamp > base, "{timestamp} is the produce time");

    // From a time, as ms and as RFC 3339: the first record at or after it, in each partition.
    let at = (base + 2500).to_string();
    let rfc = chrono::DateTime::from_timestamp_millis(base + 2500)
        .expect("a time")
        .to_rfc3339();
    for from in [at.as_str(), rfc.as_str()] {
        let run = weir(
            b,
            &[
                "consume",
                "events",
                "--from-time",
                from,
                "--max-messages",
                "4",
                "--format",
                "{partition}:{value}",
            ],
        );
        let mut lines = consumed(&run);
        lines.sort();
        assert_eq!(
            lines,
            ["0:value-3", "0:value-4", "1:value-3", "1:value-4"],
            "--from-time {from}"
        );
    }

    // JSON: one object a line with every field.
    let json = weir(
        b,
        &[
            "--output",
            "json",
            "consume",
            "plain",
            "--from-beginning",
            "--max-messages",
            "1",
        ],
    );
    let objects = consumed_json(&json);
    assert_eq!(objects.len(), 1);
    let record = &objects[0];
    assert_eq!(record["topic"], "plain");
    assert_eq!(record["partition"], 0);
    assert_eq!(record["offset"], 0);
    assert_eq!(record["key"], Value::Null);
    assert_eq!(record["value"], "hello");
    assert_eq!(record["timestamp"], timestamp);
    assert_eq!(
        record["headers"],
        serde_json::json!([{"key": "h", "value": "1"}, {"key": "g", "value": "two"}])
    );
    let keyed = weir(
        b,
        &[
            "--output",
            "json",
            "consume",
            "events",
            "--partition",
            "0",
            "--offset",
            "4",
            "--max-messages",
            "1",
        ],
    );
    let objects = consumed_json(&keyed);
    assert_eq!(objects[0]["key"], "key-4");
    assert_eq!(objects[0]["value"], "value-4");
    assert_eq!(objects[0]["offset"], 4);
    assert_eq!(objects[0]["timestamp"], base + 4000);
    assert_eq!(objects[0]["headers"], serde_json::json!([]));
}

#[test]
fn a_group_resumes_at_its_committed_offsets_and_a_timeout_stops_consuming() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("jobs", 2);
    let base = recent_ms();
    node.produce("jobs", 0, 3, base);
    node.produce("jobs", 1, 3, base);

    let first = weir(
        b,
        &[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--from-beginning",
            "--max-messages",
            "6",
            "--format",
            "{partition}:{value}",
        ],
    );
    let mut lines = consumed(&first);
    lines.sort();
    assert_eq!(
        lines,
        [
            "0:value-0",
            "0:value-1",
            "0:value-2",
            "1:value-0",
            "1:value-1",
            "1:value-2"
        ]
    );
    assert_eq!(
        node.committed("workers", "jobs"),
        [(0, 3), (1, 3)].into_iter().collect()
    );

    // Records produced after the first run: the second run prints those only, and stops
    // when nothing more arrives.
    weir_with_input(
        b,
        &["produce", "jobs", "--partition", "1"],
        "later-1\nlater-2\n",
    )
    .success();
    let second = weir(
        b,
        &[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--from-beginning",
            // Long enough to join the group and fetch on a busy machine.
            "--timeout-ms",
            "5000",
        ],
    );
    assert_eq!(consumed(&second), ["later-1", "later-2"]);
    assert_eq!(
        node.committed("workers", "jobs"),
        [(0, 3), (1, 5)].into_iter().collect()
    );

    // Nothing to read: --timeout-ms ends the run with nothing printed.
    node.create_topic("empty", 1);
    let empty = weir(
        b,
        &[
            "consume",
            "empty",
            "--from-beginning",
            "--timeout-ms",
            "500",
        ],
    );
    assert!(consumed(&empty).is_empty());
}

#[test]
fn ctrl_c_stops_consuming_and_commits_what_was_printed() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("jobs", 2);
    let base = recent_ms();
    node.produce("jobs", 0, 3, base);
    node.produce("jobs", 1, 3, base);

    // A group member with nothing left to read: Ctrl-C ends it, and it commits.
    let mut member = Running::start(b, &["consume", "jobs", "--group", "g", "--from-beginning"]);
    let mut lines: Vec<String> = (0..6).map(|_| member.line()).collect();
    lines.sort();
    assert_eq!(lines[0], "value-0");
    member.interrupt();
    let (status, stderr) = member.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "consumed 6 records\n");
    assert_eq!(
        node.committed("g", "jobs"),
        [(0, 3), (1, 3)].into_iter().collect()
    );

    // Ctrl-C while records stream out stops the run too.
    for _ in 0..4 {
        node.produce("jobs", 0, 10_000, base);
    }
    let mut reader = Running::start(b, &["consume", "jobs", "--from-beginning"]);
    reader.line();
    reader.interrupt();
    let (status, stderr) = reader.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.starts_with("consumed "), "{stderr}");
}

#[test]
fn consume_errors_exit_1_and_say_what_was_wrong() {
    let node = TestNode::start();
    let b = &node.grpc();
    node.create_topic("events", 2);

    weir(b, &["consume", "nope", "--from-beginning"])
        .one_line_failure("create it with `weir topic create nope`");
    weir(
        b,
        &["consume", "events", "--partition", "2", "--from-beginning"],
    )
    .one_line_failure("topic \"events\" has 2 partitions: partition 2 does not exist");
    weir(b, &["consume", "events", "--partition=-1", "--offset", "0"])
        .one_line_failure("partition -1 does not exist");
    let conflict = weir(b, &["consume", "events", "--group", "g", "--offset", "3"]);
    conflict.failure("cannot be used with");
    assert!(conflict.stderr.contains("--group"), "{conflict:#?}");
}

/// Runs `weir perf KIND ARGS... --quiet --timeout-secs 25` as text and asserts the report's
/// lines; returns the text.
fn perf_text(bootstrap: &str, kind: &str, args: &[&str]) -> String {
    let mut all = vec!["perf", kind];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--quiet", "--timeout-secs", "25"]);
    let text = weir(bootstrap, &all).success().to_string();
    assert!(text.contains(" records/s, "), "{text}");
    assert!(text.contains(" MB/s"), "{text}");
    text
}

/// As [`perf_text`], with `--output json`; returns the report.
fn perf_json(bootstrap: &str, kind: &str, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json", "perf", kind];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--quiet", "--timeout-secs", "25"]);
    let report = weir(bootstrap, &all).json();
    assert_eq!(report["kind"], kind);
    assert!(
        report["records_per_sec"].as_f64().expect("records_per_sec") > 0.0,
        "{report}"
    );
    assert!(
        report["mb_per_sec"].as_f64().expect("mb_per_sec") > 0.0,
        "{report}"
    );
    report
}

/// Asserts `text` has a latency line with every percentile.
fn assert_latency_line(text: &str, what: &str) {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("latency ({what}, ms): ")))
        .unwrap_or_else(|| panic!("no latency line: {text}"));
    for name in ["p50 ", "p95 ", "p99 ", "p99.9 ", "max "] {
        assert!(line.contains(name), "{name}in {line}");
    }
}

/// Asserts the JSON report's percentiles are there and in order.
fn assert_latency_json(report: &Value) {
    let latency = &report["latency_ms"];
    let values: Vec<f64> = ["p50", "p95", "p99", "p99.9", "max"]
        .iter()
        .map(|p| {
            latency[p]
                .as_f64()
                .unwrap_or_else(|| panic!("latency_ms.{p} in {report}"))
        })
        .collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{report}");
    assert!(values[0] > 0.0, "{report}");
}

#[test]
fn perf_produce_and_consume_over_grpc_report_and_land_the_records() {
    let node = TestNode::start();
    let b = &node.grpc();
    let load = [
        "--topic",
        "load",
        "--records",
        "20000",
        "--record-size",
        "100",
        "--partitions",
        "3",
    ];

    let text = perf_text(b, "produce", &load);
    assert!(
        text.starts_with("produce over grpc: 20000 records, 2.0 MB in "),
        "{text}"
    );
    assert_latency_line(&text, "send to ack");
    assert_eq!(node.high_watermarks("load", 3).iter().sum::<i64>(), 20_000);

    let report = perf_json(b, "produce", &load);
    assert_eq!(report["protocol"], "grpc");
    assert_eq!(report["records"], 20_000);
    assert_eq!(report["bytes"], 2_000_000);
    assert_latency_json(&report);
    assert_eq!(node.high_watermarks("load", 3).iter().sum::<i64>(), 40_000);

    // Consume reads them all back from the beginning: no latency, only throughput.
    let consume = ["--topic", "load", "--records", "40000"];
    let text = perf_text(b, "consume", &consume);
    assert!(
        text.starts_with("consume over grpc: 40000 records, 4.0 MB in "),
        "{text}"
    );
    assert!(!text.contains("latency"), "{text}");
    let report = perf_json(b, "consume", &consume);
    assert_eq!(report["records"], 40_000);
    assert_eq!(report["bytes"], 4_000_000);
    assert!(report.get("latency_ms").is_none(), "{report}");

    // More records than the topic holds: the load times out and says so.
    weir(
        b,
        &[
            "perf",
            "consume",
            "--topic",
            "load",
            "--records",
            "40001",
            "--quiet",
            "--timeout-secs",
            "2",
        ],
    )
    .one_line_failure("timed out after 40000 of 40001 records");
}

#[test]
fn perf_produce_with_acks_0_lands_every_record_on_a_new_topic() {
    let node = TestNode::start();
    // A new topic's partitions refuse records until their logs open; with acks=0 nobody
    // hears of it, so the load must wait for them before it starts.
    for (topic, protocol, bootstrap) in [
        ("zero", "grpc", node.grpc()),
        ("kzero", "kafka", node.kafka()),
    ] {
        let load = [
            "--protocol",
            protocol,
            "--topic",
            topic,
            "--records",
            "5000",
            "--acks",
            "0",
            "--partitions",
            "4",
        ];
        let report = perf_json(&bootstrap, "produce", &load);
        assert_eq!(report["records"], 5000);
        assert_eq!(
            node.high_watermarks(topic, 4).iter().sum::<i64>(),
            5000,
            "over {protocol}"
        );
    }
}

#[test]
fn perf_e2e_over_grpc_measures_send_to_arrival() {
    let node = TestNode::start();
    let b = &node.grpc();
    let load = [
        "--topic",
        "e2e",
        "--records",
        "5000",
        "--record-size",
        "64",
        "--partitions",
        "2",
    ];
    let text = perf_text(b, "e2e", &load);
    assert!(
        text.starts_with("e2e over grpc: 5000 records, 0.3 MB in "),
        "{text}"
    );
    assert_latency_line(&text, "send to arrival");
    let report = perf_json(b, "e2e", &load);
    assert_eq!(report["records"], 5000);
    assert_eq!(report["bytes"], 5000 * 64);
    assert_latency_json(&report);
    assert_eq!(node.high_watermarks("e2e", 2).iter().sum::<i64>(), 10_000);
}

#[test]
fn perf_over_the_kafka_protocol_produces_consumes_and_measures_e2e() {
    let node = TestNode::start();
    let kafka = &node.kafka();
    let produce = [
        "--protocol",
        "kafka",
        "--topic",
        "kload",
        "--records",
        "20000",
        "--record-size",
        "100",
        "--partitions",
        "3",
        // librdkafka's own settings pass through.
        "--kafka-config",
        "compression.type=lz4",
    ];
    let text = perf_text(kafka, "produce", &produce);
    assert!(
        text.starts_with("produce over kafka: 20000 records, 2.0 MB in "),
        "{text}"
    );
    assert_latency_line(&text, "send to ack");
    assert_eq!(node.high_watermarks("kload", 3).iter().sum::<i64>(), 20_000);

    let consume = [
        "--protocol",
        "kafka",
        "--topic",
        "kload",
        "--records",
        "20000",
    ];
    let report = perf_json(kafka, "consume", &consume);
    assert_eq!(report["protocol"], "kafka");
    assert_eq!(report["records"], 20_000);
    assert_eq!(report["bytes"], 2_000_000);

    // End to end on a new topic: the consumer starts at the end of partitions just created.
    let e2e = [
        "--protocol",
        "kafka",
        "--topic",
        "ke2e",
        "--records",
        "5000",
        "--record-size",
        "100",
        "--partitions",
        "2",
    ];
    let report = perf_json(kafka, "e2e", &e2e);
    assert_eq!(report["protocol"], "kafka");
    assert_eq!(report["records"], 5000);
    assert_latency_json(&report);
    assert_eq!(node.high_watermarks("ke2e", 2).iter().sum::<i64>(), 5000);
    let text = perf_text(kafka, "e2e", &e2e);
    assert!(
        text.starts_with("e2e over kafka: 5000 records, 0.5 MB in "),
        "{text}"
    );
    assert_latency_line(&text, "send to arrival");
    assert_eq!(node.high_watermarks("kload", 3).iter().sum::<i64>(), 20_000);

    // A property librdkafka does not know is an error that names it.
    let mut bad = vec!["perf", "produce"];
    bad.extend_from_slice(&produce);
    bad.extend_from_slice(&["--kafka-config", "no.such.property=1", "--quiet"]);
    weir(kafka, &bad).one_line_failure("no.such.property");

    // What the Kafka producer sent, `weir consume` reads over gRPC.
    let values = weir(
        &node.grpc(),
        &[
            "consume",
            "kload",
            "--partition",
            "0",
            "--offset",
            "0",
            "--max-messages",
            "1",
            "--format",
            "{key} {value}",
        ],
    );
    let lines = consumed(&values);
    let (key, value) = lines[0].split_once(' ').expect("key and value");
    assert_eq!(key, "null");
    // The first 8 bytes are the send time (not text); the rest is filler.
    assert!(value.ends_with(&"w".repeat(92)), "{value:?}");
}

#[test]
fn perf_without_a_broker_names_the_address() {
    // A port nothing listens on.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let args = [
        "perf",
        "produce",
        "--records",
        "10",
        "--quiet",
        "--timeout-secs",
        "5",
    ];
    weir(&address, &args).one_line_failure(&format!("cannot reach a Weir broker at {address}"));
    let mut kafka = args.to_vec();
    kafka.extend_from_slice(&["--protocol", "kafka"]);
    weir(&address, &kafka).one_line_failure(&address);
}
