//! The log manager: the data directory, opening logs at start, shutdown, deletion, the
//! recovery checkpoint and the background tasks.

mod common;

use std::path::Path;
use std::sync::Arc;

use weir_broker::clock::Clock;
use weir_broker::config::StorageConfig;
use weir_broker::storage::{Error, LogManager, TopicPartition};

fn storage_config(data_dir: &Path) -> StorageConfig {
    StorageConfig {
        data_dir: data_dir.to_path_buf(),
        log: common::small_config(8_192),
        recovery_threads: 2,
        ..StorageConfig::default()
    }
}

fn open(data_dir: &Path, clock: &Arc<dyn Clock>) -> LogManager {
    LogManager::open(storage_config(data_dir), Arc::clone(clock)).unwrap()
}

/// Writes three partitions of two topics; returns what each holds.
fn populate(manager: &LogManager) -> Vec<(TopicPartition, Vec<common::StoredBatch>)> {
    let config = manager.config().log.clone();
    let mut contents = Vec::new();
    for (topic, partition) in [("orders", 0), ("orders", 1), ("my.events-v2", 0)] {
        let tp = TopicPartition::new(topic, partition);
        let log = manager.get_or_create(&tp, config.clone()).unwrap();
        for i in 0..20 {
            log.append(&common::batch(2, 300, 1_000_000 + i), 0)
                .unwrap();
        }
        contents.push((tp, common::read_all(&log)));
    }
    contents
}

#[test]
fn logs_survive_a_clean_shutdown_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (_, clock) = common::clock();

    let manager = open(&data_dir, &clock);
    let contents = populate(&manager);
    manager.shutdown().unwrap();
    assert!(data_dir.join(".clean-shutdown").exists());
    drop(manager);

    let manager = open(&data_dir, &clock);
    assert!(
        !data_dir.join(".clean-shutdown").exists(),
        "the mark is gone once logs take writes"
    );
    for (tp, expected) in &contents {
        let log = manager.get(tp).expect("the log is found again");
        assert_eq!(&common::read_all(&log), expected);
        assert_eq!(log.recovery_point(), log.log_end_offset());
    }
    // A crash: no shutdown. Everything is recovered from the files.
    manager.write_checkpoint().unwrap();
    drop(manager);
    let manager = open(&data_dir, &clock);
    let found: Vec<TopicPartition> = manager.logs().into_iter().map(|(tp, _)| tp).collect();
    let mut expected: Vec<TopicPartition> = contents.iter().map(|(tp, _)| tp.clone()).collect();
    expected.sort();
    assert_eq!(found, expected);
    for (tp, expected) in &contents {
        assert_eq!(&common::read_all(&manager.get(tp).unwrap()), expected);
    }
}

#[test]
fn a_damaged_checkpoint_means_full_recovery_not_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clock) = common::clock();
    let manager = open(dir.path(), &clock);
    let contents = populate(&manager);
    manager.write_checkpoint().unwrap();
    drop(manager);
    std::fs::write(dir.path().join("log-checkpoint"), b"garbage").unwrap();

    let manager = open(dir.path(), &clock);
    for (tp, expected) in &contents {
        assert_eq!(&common::read_all(&manager.get(tp).unwrap()), expected);
    }
}

#[test]
fn the_data_directory_is_locked_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clock) = common::clock();
    let manager = open(dir.path(), &clock);
    let error = LogManager::open(storage_config(dir.path()), Arc::clone(&clock)).unwrap_err();
    assert!(matches!(error, Error::DirectoryLocked { .. }));
    assert!(
        error
            .to_string()
            .contains("in use by another weir-broker process"),
        "{error}"
    );
    drop(manager);
    open(dir.path(), &clock);

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let error = LogManager::open(storage_config(&file), Arc::clone(&clock)).unwrap_err();
    assert!(matches!(error, Error::BadDirectory { .. }));
    assert!(
        error
            .to_string()
            .contains("not-a-dir is not a usable directory"),
        "{error}"
    );

    // Strays in the topics directory are left alone; leftovers of a deletion are removed.
    let topics = dir.path().join("fresh").join("topics");
    std::fs::create_dir_all(topics.join("stray")).unwrap();
    std::fs::create_dir_all(topics.join("gone-0.deleted")).unwrap();
    let manager = LogManager::open(storage_config(&dir.path().join("fresh")), clock).unwrap();
    assert!(manager.logs().is_empty());
    assert!(topics.join("stray").exists());
    assert!(!topics.join("gone-0.deleted").exists());
}

#[test]
fn deleting_a_log_removes_its_files_but_not_what_readers_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clock) = common::clock();
    let manager = open(dir.path(), &clock);
    let contents = populate(&manager);
    let (tp, expected) = &contents[0];
    let held = manager.get(tp).unwrap().read(0, 1 << 20).unwrap();

    assert!(manager.delete(tp).unwrap());
    assert!(!manager.delete(tp).unwrap());
    assert!(manager.get(tp).is_none());
    assert!(!dir.path().join("topics").join(tp.to_string()).exists());
    assert_eq!(common::split_batches(&held)[0], expected[0]);
}

#[test]
fn retention_and_flushes_run_over_every_log() {
    let dir = tempfile::tempdir().unwrap();
    let (manual, clock) = common::clock();
    let mut config = storage_config(dir.path());
    config.log.retention_ms = Some(60_000);
    let manager = LogManager::open(config, Arc::clone(&clock)).unwrap();
    let contents = populate(&manager);
    let segments: usize = manager.logs().iter().map(|(_, l)| l.segment_count()).sum();
    assert_eq!(manager.run_retention(), 0);

    manager.run_flushes();
    for (_, log) in manager.logs() {
        let active_base = *log.segment_base_offsets().last().unwrap();
        assert_eq!(
            log.recovery_point(),
            active_base,
            "sealed segments are flushed"
        );
    }
    manual.advance_ms(2_000_000);
    assert_eq!(manager.run_retention(), segments);
    for (tp, _) in &contents {
        let log = manager.get(tp).unwrap();
        assert_eq!(log.log_start_offset(), log.log_end_offset());
    }
}

#[test]
fn topic_partitions_name_their_directories() {
    let check = |name: &str, expected: Option<(&str, i32)>| {
        let parsed = TopicPartition::from_dir_name(name);
        assert_eq!(
            parsed,
            expected.map(|(t, p)| TopicPartition::new(t, p)),
            "{name}"
        );
        if let Some(tp) = parsed {
            assert_eq!(tp.to_string(), name);
        }
    };
    check("orders-0", Some(("orders", 0)));
    check("my.events-v2-17", Some(("my.events-v2", 17)));
    check("orders", None);
    check("orders--1", Some(("orders-", 1)));
    check("orders-x", None);
    check("-3", None);
    check("bad topic-1", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_tasks_stop_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clock) = common::clock();
    let mut config = storage_config(dir.path());
    config.flush_check_interval_ms = 1;
    config.recovery_checkpoint_interval_ms = 1;
    let manager = Arc::new(LogManager::open(config, clock).unwrap());
    populate(&manager);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Arc::clone(&manager).run(async move {
        stopped.await.unwrap_or(());
    }));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    // The tasks ran: sealed segments were flushed and the checkpoint written.
    for (_, log) in manager.logs() {
        assert_eq!(
            log.recovery_point(),
            *log.segment_base_offsets().last().unwrap()
        );
    }
    assert!(dir.path().join("log-checkpoint").exists());
}
