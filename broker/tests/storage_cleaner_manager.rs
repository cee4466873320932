//! The log manager's cleaner run and its metrics, as an exporter would see them: only logs
//! whose `cleanup.policy` compacts and that hold dirty, old-enough segments are cleaned; runs,
//! records removed, bytes cleaned and each log's dirty ratio are recorded.
//!
//! This test installs the process-wide metrics recorder, so it lives in a test binary of its
//! own.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use weir_broker::config::{CleanupPolicy, LogConfig, StorageConfig};
use weir_broker::storage::{Log, LogManager, TopicPartition};
use weir_proto::batch::{self, EncodeOptions, Record};

/// 100 single-record batches over 5 keys, in five sealed segments of 20.
fn fill(log: &Log) {
    for i in 0..100 {
        let record = Record {
            key: Some(Bytes::from(format!("key-{}", i % 5))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Vec::new(),
            timestamp: 1_000_000,
            offset: 0,
        };
        log.append(
            &batch::encode(&[record], &EncodeOptions::default()).unwrap(),
            0,
        )
        .unwrap();
        if (i + 1) % 20 == 0 {
            log.roll().unwrap();
        }
    }
}

#[test]
fn the_cleaner_compacts_only_dirty_compacted_logs_and_reports_it() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");
    weir_broker::storage::describe_metrics();

    let dir = tempfile::tempdir().unwrap();
    let (_manual, clock) = common::clock();
    let config = StorageConfig {
        data_dir: dir.path().to_path_buf(),
        log: common::small_config(64 * 1024),
        ..StorageConfig::default()
    };
    let manager = LogManager::open(config.clone(), clock).unwrap();
    let compact = LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        ..config.log.clone()
    };
    let logs = [
        ("compacted", compact.clone()),
        ("deleting", config.log.clone()),
        (
            "too-young",
            LogConfig {
                min_compaction_lag_ms: 3_600_000,
                ..compact.clone()
            },
        ),
    ];
    for (topic, log_config) in logs {
        let log = manager
            .get_or_create(&TopicPartition::new(topic, 0), log_config)
            .unwrap();
        fill(&log);
    }

    assert_eq!(
        manager.run_cleaner(),
        1,
        "only the compacted, old-enough log"
    );
    let compacted = manager.get(&TopicPartition::new("compacted", 0)).unwrap();
    assert_eq!(compacted.dirtiness().unwrap().unwrap().dirty_bytes, 0);
    assert_eq!(manager.run_cleaner(), 0, "nothing dirty is left");
    let deleting = manager.get(&TopicPartition::new("deleting", 0)).unwrap();
    assert_eq!(deleting.size_bytes(), {
        let young = manager.get(&TopicPartition::new("too-young", 0)).unwrap();
        young.size_bytes()
    });

    let values: HashMap<(String, Vec<String>), (DebugValue, bool)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, description, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (
                (key.key().name().to_string(), labels),
                (value, description.is_some()),
            )
        })
        .collect();
    let get = |name: &str, labels: &[&str]| {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        match values.get(&(name.to_string(), labels)) {
            Some((value, true)) => value,
            other => panic!("{name} is not a described metric: {other:?}"),
        }
    };
    assert_eq!(
        get("weir_log_cleaner_runs_total", &[]),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        get("weir_log_cleaner_records_removed_total", &[]),
        &DebugValue::Counter(95)
    );
    match get("weir_log_cleaner_bytes_cleaned_total", &[]) {
        DebugValue::Counter(n) => assert!(*n > 0),
        other => panic!("{other:?}"),
    }
    let compacted_labels = ["topic=compacted", "partition=0"];
    match get("weir_log_cleaner_dirty_ratio", &compacted_labels) {
        DebugValue::Gauge(ratio) => assert_eq!(ratio.into_inner(), 0.0, "after the clean"),
        other => panic!("{other:?}"),
    }
    match get("weir_log_cleaner_seconds_since_clean", &compacted_labels) {
        DebugValue::Gauge(seconds) => assert_eq!(seconds.into_inner(), 0.0),
        other => panic!("{other:?}"),
    }
    match get(
        "weir_log_cleaner_dirty_ratio",
        &["topic=too-young", "partition=0"],
    ) {
        DebugValue::Gauge(ratio) => assert_eq!(ratio.into_inner(), 0.0, "nothing cleanable"),
        other => panic!("{other:?}"),
    }
    assert!(
        !values
            .keys()
            .any(|(_, labels)| labels.contains(&"topic=deleting".to_string())),
        "a delete-only log has no cleaner metrics"
    );
}
