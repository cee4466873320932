//! Helpers shared by the integration tests: batches and logs for the storage tests, a single
//! running node (`node`) for the controller and front-end tests, and the produce and consume
//! scenario (`roundtrip`) with its Kafka (`kafka_client`) and gRPC (`grpc_client`) clients.

#![allow(dead_code, unreachable_pub)]

pub mod broker_process;
pub mod cluster;
pub mod grpc_client;
pub mod kafka_client;
pub mod node;
pub mod process;
pub mod roundtrip;
pub mod wire;

use std::sync::Arc;

use bytes::Bytes;
use weir_broker::clock::{Clock, ManualClock};
use weir_broker::config::LogConfig;
use weir_broker::storage::{Log, OpenState};
use weir_proto::batch::{self, Compression, EncodeOptions, Record};

/// A batch of `records` records with `value_len`-byte values; record `i` has timestamp
/// `timestamp + i` and a key naming it.
pub fn batch(records: usize, value_len: usize, timestamp: i64) -> Bytes {
    batch_with(records, value_len, timestamp, Compression::None)
}

/// As [`batch`], compressed with `compression`.
pub fn batch_with(
    records: usize,
    value_len: usize,
    timestamp: i64,
    compression: Compression,
) -> Bytes {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; value_len])),
            headers: Vec::new(),
            timestamp: timestamp + i as i64,
            offset: i as i64,
        })
        .collect();
    let options = EncodeOptions {
        compression,
        ..EncodeOptions::default()
    };
    batch::encode(&records, &options).expect("test records encode")
}

/// A log configuration with small segments and dense indexes, so tests cross many boundaries.
pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        segment_index_bytes: 4096,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A manual clock at a fixed start, shared as the log's clock.
pub fn clock() -> (Arc<ManualClock>, Arc<dyn Clock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    (clock, dyn_clock)
}

/// Opens (or creates) a log in `dir` as after a clean start with no checkpoint.
pub fn open(dir: &std::path::Path, config: LogConfig, clock: &Arc<dyn Clock>) -> Log {
    Log::open(dir, config, Arc::clone(clock), OpenState::default()).expect("log opens")
}

/// A stored batch: its base offset, last offset and bytes.
pub type StoredBatch = (i64, i64, Vec<u8>);

/// The base offset, last offset and bytes of each batch in `bytes`.
pub fn split_batches(bytes: &[u8]) -> Vec<StoredBatch> {
    batch::batches(bytes)
        .map(|item| {
            let (position, header) = item.expect("stored batches are valid");
            let raw = bytes[position..position + header.size()].to_vec();
            (header.base_offset, header.last_offset(), raw)
        })
        .collect()
}

/// Every batch of the log, read from its start.
pub fn read_all(log: &Log) -> Vec<StoredBatch> {
    let mut all = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log
            .read(offset, 1 << 20)
            .expect("read below the end succeeds");
        let batches = split_batches(&bytes);
        assert!(
            !batches.is_empty(),
            "a read below the log end returns a batch (offset {offset})"
        );
        offset = batches.last().unwrap().1 + 1;
        all.extend(batches);
    }
    all
}

/// Where each leader epoch starts among `batches` (in log order), counting only records at or
/// after `log_start_offset`: what the log's leader-epoch cache must hold.
pub fn epochs_of(batches: &[StoredBatch], log_start_offset: i64) -> Vec<(i32, i64)> {
    let mut epochs: Vec<(i32, i64)> = Vec::new();
    for (base, last, bytes) in batches {
        if *last < log_start_offset {
            continue;
        }
        let epoch = batch::BatchHeader::parse(bytes)
            .expect("stored batches parse")
            .partition_leader_epoch;
        if epochs.last().is_none_or(|&(e, _)| e != epoch) {
            epochs.push((epoch, (*base).max(log_start_offset)));
        }
    }
    epochs
}

/// The log's leader-epoch entries as (epoch, start offset).
pub fn leader_epochs(log: &Log) -> Vec<(i32, i64)> {
    log.leader_epochs()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}
