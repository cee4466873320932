//! Walking a log's batch headers from an offset, without checking CRCs or decoding a record:
//! what rebuilding state kept beside the log (the idempotent producers') needs. Reads share the
//! segment maps, so only the pages that hold headers are touched.

use bytes::Bytes;
use weir_proto::batch::BatchHeader;

use super::error::{Error, Result};
use super::log::Log;

/// How many bytes of batches each read takes; the headers are parsed from the shared map.
const CHUNK_BYTES: usize = 1 << 20;

/// The headers of a log's batches, oldest first; see [`Log::batch_headers`].
#[derive(Debug)]
pub struct BatchHeaders<'a> {
    log: &'a Log,
    /// The first offset not yet returned.
    next_offset: i64,
    /// Where the walk stops: the log end when it started.
    end_offset: i64,
    chunk: Bytes,
    position: usize,
    done: bool,
}

impl Log {
    /// The headers of the batches from the one that holds `offset` (the log start if `offset`
    /// is below it) up to the log end as it is now, with the offsets the log gave them. Batches
    /// were validated when appended or recovered, so only their headers are read here; one
    /// that does not parse is an [`Error::Corrupt`] and ends the walk.
    pub fn batch_headers(&self, offset: i64) -> BatchHeaders<'_> {
        BatchHeaders {
            log: self,
            next_offset: offset,
            end_offset: self.log_end_offset(),
            chunk: Bytes::new(),
            position: 0,
            done: false,
        }
    }
}

impl BatchHeaders<'_> {
    /// The next header of the current chunk, if any is left.
    fn parse_next(&mut self) -> Option<Result<BatchHeader>> {
        let rest = self.chunk.get(self.position..).filter(|r| !r.is_empty())?;
        let parsed = BatchHeader::parse(rest)
            .map_err(|e| e.to_string())
            .and_then(|header| {
                if header.size() > rest.len() {
                    return Err(format!(
                        "the batch claims {} bytes but the log holds {}",
                        header.size(),
                        rest.len()
                    ));
                }
                Ok(header)
            });
        Some(match parsed {
            Ok(header) => {
                self.position += header.size();
                self.next_offset = header.next_offset();
                Ok(header)
            }
            Err(reason) => {
                self.done = true;
                Err(Error::Corrupt {
                    path: self.log.dir().to_path_buf(),
                    position: 0,
                    reason: format!("the batch header at offset {}: {reason}", self.next_offset),
                })
            }
        })
    }
}

impl Iterator for BatchHeaders<'_> {
    type Item = Result<BatchHeader>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if let Some(header) = self.parse_next() {
                return Some(header);
            }
            self.next_offset = self.next_offset.max(self.log.log_start_offset());
            if self.next_offset >= self.end_offset {
                self.done = true;
                return None;
            }
            match self
                .log
                .read_below(self.next_offset, CHUNK_BYTES, self.end_offset)
            {
                Ok(chunk) if chunk.is_empty() => self.done = true,
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.position = 0;
                }
                // Retention removed the segment meanwhile: go on from the new log start.
                Err(Error::OffsetOutOfRange {
                    offset,
                    log_start_offset,
                    ..
                }) if offset < log_start_offset => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_proto::batch::{self, EncodeOptions, Record};

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::LogConfig;
    use crate::storage::OpenState;

    fn records(count: usize, sequence: i32) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                key: None,
                value: Some(Bytes::from(vec![b'x'; 300])),
                headers: Vec::new(),
                timestamp: 1_000,
                offset: i as i64,
            })
            .collect();
        let options = EncodeOptions {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: sequence,
            ..EncodeOptions::default()
        };
        batch::encode(&records, &options).unwrap()
    }

    #[test]
    fn headers_come_back_with_their_offsets_across_segments_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_000));
        let config = LogConfig {
            segment_bytes: 4096,
            segment_index_bytes: 4096,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config, clock, OpenState::default()).unwrap();
        let mut sequence = 0;
        for _ in 0..20 {
            log.append(&records(3, sequence), 0).unwrap();
            sequence += 3;
        }
        assert!(log.segment_count() > 3, "the walk crosses segments");
        let all: Vec<(i64, i32)> = log
            .batch_headers(0)
            .map(|h| h.map(|h| (h.base_offset, h.base_sequence)))
            .collect::<Result<_>>()
            .unwrap();
        let expected: Vec<(i64, i32)> = (0..20).map(|i| (i * 3, i as i32 * 3)).collect();
        assert_eq!(all, expected);

        // From inside a batch: that batch first. At the end: nothing.
        let from: Vec<i64> = log
            .batch_headers(31)
            .map(|h| h.unwrap().base_offset)
            .collect();
        assert_eq!(from, (10..20).map(|i| i * 3).collect::<Vec<_>>());
        assert_eq!(log.batch_headers(60).count(), 0);
        // Appends after the walk began are not part of it.
        let mut walk = log.batch_headers(57);
        log.append(&records(1, 60), 0).unwrap();
        assert_eq!(walk.next().unwrap().unwrap().base_offset, 57);
        assert!(walk.next().is_none());
    }
}
