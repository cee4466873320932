//! The checks of the replicas' logs, read with `storage::Log` after the brokers stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::LogConfig;
use weir_broker::storage::{Log, OpenState};
use weir_proto::batch;

use crate::clients::{Reads, parse_value};
use crate::common;
use crate::{SEGMENT_BYTES, TOPIC};

/// One replica of one partition, read from its log directory after the brokers stopped.
pub(crate) struct Replica {
    node: i32,
    batches: Vec<common::StoredBatch>,
    /// Every record: offset and value, in log order.
    records: Vec<(i64, String)>,
}

impl Replica {
    pub(crate) fn open(node: i32, data_dir: &Path, partition: i32) -> Replica {
        let dir = data_dir.join("topics").join(format!("{TOPIC}-{partition}"));
        assert!(dir.is_dir(), "node {node} has no log {}", dir.display());
        let config = LogConfig {
            segment_bytes: SEGMENT_BYTES,
            ..LogConfig::default()
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let log = Log::open(&dir, config, clock, OpenState::default())
            .unwrap_or_else(|e| panic!("node {node}'s log of partition {partition}: {e}"));
        let batches = common::read_all(&log);
        log.close().expect("the log closes");
        let mut records = Vec::new();
        for (_, _, bytes) in &batches {
            for record in batch::decode(bytes).expect("stored batches decode") {
                let value = record.value.as_deref().unwrap_or_default();
                records.push((record.offset, String::from_utf8_lossy(value).into_owned()));
            }
        }
        Replica {
            node,
            batches,
            records,
        }
    }

    pub(crate) fn end_offset(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.1 + 1)
    }
}

/// The replicas of `partition` are identical up to their common end: the same batches, byte
/// for byte (offsets and leader epochs included).
pub(crate) fn identical(partition: i32, replicas: &[Replica]) {
    let common_end = replicas.iter().map(Replica::end_offset).min().unwrap_or(0);
    let first = &replicas[0];
    for other in &replicas[1..] {
        let upto = |r: &Replica| -> Vec<(i64, i64, Vec<u8>)> {
            r.batches
                .iter()
                .filter(|b| b.1 < common_end)
                .cloned()
                .collect()
        };
        let (a, b) = (upto(first), upto(other));
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            let describe = |batch: Option<&(i64, i64, Vec<u8>)>| {
                batch.map(|(base, last, bytes)| {
                    let epoch = batch::BatchHeader::parse(bytes).map(|h| h.partition_leader_epoch);
                    format!("offsets {base}..={last}, leader epoch {epoch:?}")
                })
            };
            panic!(
                "partition {partition}: nodes {} and {} differ below their common end \
                 {common_end}, at batch {i}: {:?} against {:?}",
                first.node,
                other.node,
                describe(a.get(i)),
                describe(b.get(i))
            );
        }
    }
}

/// Every acknowledged record of `partition` is in `replica` exactly once, at the offset it
/// was acknowledged at; no record is there twice; records are in the order they were sent.
pub(crate) fn acknowledged(partition: i32, replica: &Replica, acked: &BTreeMap<(i32, u64), i64>) {
    let node = replica.node;
    let mut by_offset = HashMap::new();
    let mut last_sequence = None;
    let mut seen = HashMap::new();
    for (offset, value) in &replica.records {
        let (p, sequence) = parse_value(value)
            .unwrap_or_else(|| panic!("node {node}: a foreign value {value:?} at {offset}"));
        assert_eq!(
            p, partition,
            "node {node}: {value:?} at {offset} is in the wrong partition"
        );
        if let Some(earlier) = seen.insert(sequence, *offset) {
            panic!(
                "node {node}, partition {partition}: {value:?} is stored twice, at {earlier} and {offset}"
            );
        }
        assert!(
            last_sequence.is_none_or(|last| sequence > last),
            "node {node}, partition {partition}: {value:?} at {offset} follows sequence {last_sequence:?}"
        );
        last_sequence = Some(sequence);
        by_offset.insert(*offset, value.as_str());
    }
    for (&(p, sequence), &offset) in acked.range((partition, 0)..(partition + 1, 0)) {
        let expected = format!("p{p}-{sequence}");
        assert_eq!(
            by_offset.get(&offset).copied(),
            Some(expected.as_str()),
            "node {node}, partition {partition}: the record acknowledged at offset {offset} \
             (end {})",
            replica.end_offset()
        );
    }
}

/// Every record the consumer read of `partition` is in `replica` at the offset it was read
/// at, and the consumer skipped no offset.
pub(crate) fn reads(partition: i32, replica: &Replica, reads: &Reads) {
    let by_offset: HashMap<i64, &str> = replica
        .records
        .iter()
        .map(|(offset, value)| (*offset, value.as_str()))
        .collect();
    let mut next = 0;
    for (_, offset, value) in reads.iter().filter(|r| r.0 == partition) {
        assert_eq!(
            by_offset.get(offset).copied(),
            Some(value.as_str()),
            "partition {partition}: the consumer read {value:?} at {offset}; node {}'s final \
             log has something else there",
            replica.node
        );
        assert!(
            *offset <= next,
            "partition {partition}: the consumer skipped from {next} to {offset}"
        );
        next = next.max(offset + 1);
    }
}
