use bytes::Bytes;
use proptest::prelude::*;

use super::header::rewrite_crc;
use super::*;

fn bytes(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

/// Three records numbered 0, 1, 2 as a producer sends them, timestamps not in order.
fn sample_records() -> Vec<Record> {
    vec![
        Record {
            key: bytes("k0"),
            value: bytes("v0"),
            headers: vec![("h".into(), bytes("x")), ("empty".into(), None)],
            timestamp: 1_000,
            offset: 0,
        },
        Record {
            key: None,
            value: bytes("v1"),
            headers: vec![],
            timestamp: 1_005,
            offset: 1,
        },
        Record {
            key: bytes(""),
            value: None,
            headers: vec![("h".into(), bytes(""))],
            timestamp: 1_002,
            offset: 2,
        },
    ]
}

fn options(compression: Compression) -> EncodeOptions {
    EncodeOptions {
        compression,
        producer_id: 42,
        producer_epoch: 3,
        base_sequence: 7,
        ..EncodeOptions::default()
    }
}

fn encode_sample(compression: Compression) -> Vec<u8> {
    encode(&sample_records(), &options(compression))
        .unwrap()
        .to_vec()
}

/// Several batches back to back, with consecutive base offsets from 0, as in a segment.
fn segment(codecs: &[Compression]) -> (Vec<u8>, Vec<usize>) {
    let mut buf = Vec::new();
    let mut positions = Vec::new();
    let mut next_offset = 0;
    for &compression in codecs {
        let mut batch = encode_sample(compression);
        set_base_offset(&mut batch, next_offset);
        next_offset = validate(&batch).unwrap().next_offset();
        positions.push(buf.len());
        buf.extend_from_slice(&batch);
    }
    (buf, positions)
}

#[test]
fn encode_then_parse_reads_every_field() {
    for compression in Compression::ALL {
        let mut batch = encode_sample(compression);
        set_base_offset(&mut batch, 100);
        set_partition_leader_epoch(&mut batch, 5);

        let header = validate(&batch).unwrap();
        let expected = BatchHeader {
            base_offset: 100,
            batch_length: i32::try_from(batch.len() - LOG_OVERHEAD).unwrap(),
            partition_leader_epoch: 5,
            magic: MAGIC,
            crc: compute_crc(&batch).unwrap(),
            attributes: i16::from(compression.code()),
            last_offset_delta: 2,
            first_timestamp: 1_000,
            max_timestamp: 1_005,
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 7,
            record_count: 3,
        };
        assert_eq!(header, expected, "{compression}");
        assert_eq!(BatchHeader::parse(&batch), Ok(expected), "{compression}");
        assert_eq!(header.size(), batch.len());
        assert_eq!(header.last_offset(), 102);
        assert_eq!(header.next_offset(), 103);
        assert_eq!(header.compression(), Ok(compression));
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert!(!header.is_transactional());
        assert!(!header.is_control());
    }
}

#[test]
fn decode_round_trips_every_codec() {
    for compression in Compression::ALL {
        let mut batch = encode_sample(compression);
        set_base_offset(&mut batch, 100);
        let expected: Vec<Record> = sample_records()
            .into_iter()
            .map(|r| Record {
                offset: r.offset + 100,
                ..r
            })
            .collect();
        assert_eq!(decode(&batch), Ok(expected), "{compression}");
    }
}

#[test]
fn default_options_are_a_plain_producer() {
    let batch = encode(&sample_records(), &EncodeOptions::default()).unwrap();
    let header = validate(&batch).unwrap();
    assert_eq!(header.base_offset, 0);
    assert_eq!(header.partition_leader_epoch, -1);
    assert_eq!(header.attributes, 0);
    assert_eq!(header.producer_id, -1);
    assert_eq!(header.producer_epoch, -1);
    assert_eq!(header.base_sequence, -1);
}

#[test]
fn base_offset_is_the_first_records_offset() {
    let records: Vec<Record> = sample_records()
        .into_iter()
        .zip([10, 12, 20])
        .map(|(r, offset)| Record { offset, ..r })
        .collect();
    let batch = encode(&records, &EncodeOptions::default()).unwrap();
    let header = validate(&batch).unwrap();
    assert_eq!(header.base_offset, 10);
    assert_eq!(header.last_offset_delta, 10);
    assert_eq!(header.record_count, 3);
    assert_eq!(decode(&batch), Ok(records));
}

#[test]
fn attribute_flags() {
    // (transactional, control, timestamp type) -> attributes
    fn check(transactional: bool, control: bool, timestamp_type: TimestampType, attributes: i16) {
        let options = EncodeOptions {
            compression: Compression::Lz4,
            transactional,
            control,
            timestamp_type,
            ..EncodeOptions::default()
        };
        let batch = encode(&sample_records(), &options).unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(header.attributes, attributes);
        assert_eq!(header.is_transactional(), transactional);
        assert_eq!(header.is_control(), control);
        assert_eq!(header.timestamp_type(), timestamp_type);
        assert_eq!(header.compression(), Ok(Compression::Lz4));
    }
    use TimestampType::{CreateTime, LogAppendTime};
    check(false, false, CreateTime, 0b00_0011);
    check(false, false, LogAppendTime, 0b00_1011);
    check(true, false, CreateTime, 0b01_0011);
    check(false, true, CreateTime, 0b10_0011);
    check(true, true, LogAppendTime, 0b11_1011);
}

#[test]
fn log_append_time_gives_every_record_the_max_timestamp() {
    let options = EncodeOptions {
        timestamp_type: TimestampType::LogAppendTime,
        ..EncodeOptions::default()
    };
    let batch = encode(&sample_records(), &options).unwrap();
    let timestamps: Vec<i64> = decode(&batch)
        .unwrap()
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(timestamps, [1_005, 1_005, 1_005]);
}

#[test]
fn a_broker_stamps_log_append_time_on_a_producers_batch() {
    let mut batch = encode_sample(Compression::Lz4);
    set_log_append_time(&mut batch, 99_000).unwrap();
    let header = validate(&batch).unwrap();
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.max_timestamp, 99_000);
    assert_eq!(header.compression().unwrap(), Compression::Lz4);
    let timestamps: Vec<i64> = decode(&batch)
        .unwrap()
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(timestamps, [99_000, 99_000, 99_000]);
}

#[test]
fn setters_keep_the_crc_valid() {
    let original = encode_sample(Compression::Gzip);
    let mut batch = original.clone();
    set_base_offset(&mut batch, i64::MAX / 2);
    set_partition_leader_epoch(&mut batch, i32::MAX);
    let header = validate(&batch).unwrap();
    assert_eq!(header.base_offset, i64::MAX / 2);
    assert_eq!(header.partition_leader_epoch, i32::MAX);
    assert_eq!(batch[..8], (i64::MAX / 2).to_be_bytes());
    assert_eq!(batch[12..16], i32::MAX.to_be_bytes());
    assert_eq!(batch[8..12], original[8..12]);
    assert_eq!(batch[16..], original[16..]);
}

#[test]
#[should_panic(expected = "shorter than its 61-byte header")]
fn setter_on_a_short_buffer_panics() {
    set_base_offset(&mut [0; HEADER_LEN - 1], 1);
}

#[test]
fn any_flipped_bit_after_the_crc_is_a_crc_mismatch() {
    for compression in Compression::ALL {
        let batch = encode_sample(compression);
        let stored = validate(&batch).unwrap().crc;
        for position in 21..batch.len() {
            let mut corrupt = batch.clone();
            corrupt[position] ^= 0x01;
            match validate(&corrupt) {
                Err(BatchError::CrcMismatch {
                    stored: s,
                    computed,
                }) => {
                    assert_eq!(s, stored);
                    assert_ne!(computed, stored);
                }
                other => panic!("{compression}, byte {position}: {other:?}"),
            }
        }
    }
}

#[test]
fn truncated_buffers() {
    let batch = encode_sample(Compression::None);
    for len in 0..batch.len() {
        let needed = if len < HEADER_LEN {
            HEADER_LEN
        } else {
            batch.len()
        };
        let expected = BatchError::Truncated {
            needed,
            available: len,
        };
        assert_eq!(validate(&batch[..len]), Err(expected.clone()), "{len}");
        assert_eq!(compute_crc(&batch[..len]), Err(expected), "{len}");
        assert_eq!(BatchHeader::parse(&batch[..len]).is_ok(), len >= HEADER_LEN);
    }
    // More bytes after the batch are fine.
    let mut longer = batch.clone();
    longer.extend_from_slice(&[0xff; 10]);
    assert_eq!(validate(&longer), validate(&batch));
}

#[test]
fn invalid_headers() {
    /// Applies `corrupt` to a valid batch and expects `expected` from parse and validate.
    fn check(corrupt: impl Fn(&mut [u8]), expected: BatchError) {
        let mut batch = encode_sample(Compression::None);
        corrupt(&mut batch);
        assert_eq!(BatchHeader::parse(&batch), Err(expected.clone()));
        assert_eq!(validate(&batch), Err(expected));
    }
    fn put(at: usize, bytes: &[u8]) -> impl Fn(&mut [u8]) {
        move |batch: &mut [u8]| batch[at..at + bytes.len()].copy_from_slice(bytes)
    }
    check(put(8, &48i32.to_be_bytes()), BatchError::BadLength(48));
    check(put(8, &0i32.to_be_bytes()), BatchError::BadLength(0));
    check(put(8, &(-1i32).to_be_bytes()), BatchError::BadLength(-1));
    check(put(16, &[1]), BatchError::BadMagic(1));
    check(put(16, &[0xff]), BatchError::BadMagic(-1));
    check(
        put(23, &(-1i32).to_be_bytes()),
        BatchError::NegativeLastOffsetDelta(-1),
    );
    check(
        put(57, &i32::MIN.to_be_bytes()),
        BatchError::NegativeRecordCount(i32::MIN),
    );
    check(
        put(0, &(i64::MAX - 2).to_be_bytes()),
        BatchError::OffsetOverflow {
            base_offset: i64::MAX - 2,
            last_offset_delta: 2,
        },
    );
    // A batch whose length runs past the buffer.
    let batch = encode_sample(Compression::None);
    let mut longer = batch.clone();
    longer[8..12].copy_from_slice(&(i32::MAX).to_be_bytes());
    assert_eq!(
        validate(&longer),
        Err(BatchError::Truncated {
            needed: i32::MAX as usize + LOG_OVERHEAD,
            available: batch.len(),
        })
    );
}

#[test]
fn zeros_are_not_a_batch() {
    assert_eq!(validate(&[0; 100]), Err(BatchError::BadLength(0)));
}

#[test]
fn unknown_compression_is_reported_by_compression_and_decode() {
    for code in 5..=7 {
        let mut batch = encode_sample(Compression::None);
        batch[22] |= code;
        rewrite_crc(&mut batch).unwrap();
        let header = validate(&batch).unwrap();
        assert_eq!(
            header.compression(),
            Err(BatchError::UnknownCompression(code))
        );
        assert_eq!(
            decode(&batch),
            Err(InvalidBatch {
                position: 0,
                error: BatchError::UnknownCompression(code),
            }
            .into())
        );
    }
}

#[test]
fn record_count_larger_than_the_records_can_hold() {
    for compression in [Compression::None, Compression::Zstd] {
        let mut batch = encode_sample(compression);
        batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        rewrite_crc(&mut batch).unwrap();
        match decode(&batch) {
            Err(BatchError::Invalid(invalid)) => {
                assert_eq!(invalid.position, 0);
                assert!(
                    matches!(
                        invalid.error,
                        BatchError::RecordCountTooLarge {
                            base_offset: 0,
                            record_count: i32::MAX,
                            ..
                        }
                    ),
                    "{compression}: {:?}",
                    invalid.error
                );
            }
            other => panic!("{compression}: {other:?}"),
        }
    }
}

#[test]
fn garbage_compressed_records_are_a_decompress_error() {
    let mut batch = encode_sample(Compression::Gzip);
    let end = batch.len();
    batch[HEADER_LEN..end].fill(0xab);
    rewrite_crc(&mut batch).unwrap();
    match decode(&batch) {
        Err(BatchError::Invalid(invalid)) => assert!(
            matches!(
                invalid.error,
                BatchError::Decompress {
                    base_offset: 0,
                    compression: Compression::Gzip,
                    ..
                }
            ),
            "{:?}",
            invalid.error
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn batches_walks_a_segment() {
    let codecs = Compression::ALL;
    let (buf, positions) = segment(&codecs);
    let mut iter = batches(&buf);
    let mut next_offset = 0;
    for (&position, compression) in positions.iter().zip(codecs) {
        let (at, header) = iter.next().unwrap().unwrap();
        assert_eq!(at, position);
        assert_eq!(header.base_offset, next_offset);
        assert_eq!(header.compression(), Ok(compression));
        next_offset = header.next_offset();
    }
    assert_eq!(iter.next(), None);
    assert_eq!(iter.position(), buf.len());
    assert_eq!(batches(&[]).next(), None);
}

#[test]
fn batches_stops_at_the_first_invalid_batch() {
    let (mut buf, positions) = segment(&[Compression::None; 4]);
    // Corrupt the third batch's records.
    buf[positions[2] + HEADER_LEN + 1] ^= 0xff;
    let items: Vec<_> = batches(&buf).collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap().0, positions[0]);
    assert_eq!(items[1].as_ref().unwrap().0, positions[1]);
    let invalid = items[2].clone().unwrap_err();
    assert_eq!(invalid.position, positions[2]);
    assert!(matches!(invalid.error, BatchError::CrcMismatch { .. }));

    let mut iter = batches(&buf);
    iter.by_ref().for_each(drop);
    assert_eq!(
        iter.position(),
        positions[2],
        "the end of the valid batches"
    );
    assert_eq!(iter.next(), None, "fused");
}

#[test]
fn batches_reports_a_torn_last_batch() {
    let (buf, positions) = segment(&[Compression::Snappy; 3]);
    let torn = &buf[..buf.len() - 1];
    let last = batches(torn).last().unwrap();
    assert_eq!(
        last,
        Err(InvalidBatch {
            position: positions[2],
            error: BatchError::Truncated {
                needed: buf.len() - positions[2],
                available: buf.len() - positions[2] - 1,
            },
        })
    );
}

#[test]
fn decode_reads_every_batch_of_a_buffer() {
    let (mut buf, positions) = segment(&Compression::ALL);
    let records = decode(&buf).unwrap();
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..15).collect::<Vec<_>>());

    buf[positions[1] + 30] ^= 0x10;
    match decode(&buf) {
        Err(BatchError::Invalid(invalid)) => {
            assert_eq!(invalid.position, positions[1]);
            assert!(matches!(invalid.error, BatchError::CrcMismatch { .. }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn encode_rejects_bad_input() {
    fn check(records: &[Record], expected: BatchError) {
        assert_eq!(encode(records, &EncodeOptions::default()), Err(expected));
    }
    fn at(offset: i64) -> Record {
        Record {
            offset,
            ..Record::default()
        }
    }
    check(&[], BatchError::NoRecords);
    check(
        &[at(0), at(1), at(1)],
        BatchError::OffsetsNotIncreasing {
            index: 2,
            previous: 1,
            offset: 1,
        },
    );
    check(
        &[at(5), at(4)],
        BatchError::OffsetsNotIncreasing {
            index: 1,
            previous: 5,
            offset: 4,
        },
    );
    check(
        &[at(0), at(1 << 31)],
        BatchError::OffsetDeltaTooLarge {
            base_offset: 0,
            offset: 1 << 31,
        },
    );
    check(
        &[at(i64::MAX - 1), at(i64::MAX)],
        BatchError::OffsetOverflow {
            base_offset: i64::MAX - 1,
            last_offset_delta: 1,
        },
    );
    check(
        &[
            Record {
                timestamp: i64::MIN,
                ..at(0)
            },
            Record {
                timestamp: i64::MAX,
                ..at(1)
            },
        ],
        BatchError::TimestampsTooFarApart {
            min: i64::MIN,
            max: i64::MAX,
        },
    );
    check(
        &[
            at(0),
            Record {
                headers: vec![("a".into(), None), ("b".into(), None), ("a".into(), None)],
                ..at(1)
            },
        ],
        BatchError::DuplicateHeaderKey {
            index: 1,
            key: "a".into(),
        },
    );
}

#[test]
fn error_messages_explain_themselves() {
    let cases = [
        (
            BatchError::CrcMismatch {
                stored: 0x1234,
                computed: 0xdeadbeef,
            }
            .to_string(),
            "record batch CRC-32C mismatch: stored 0x00001234, computed 0xdeadbeef \
             (the batch is corrupt)",
        ),
        (
            BatchError::Truncated {
                needed: 61,
                available: 3,
            }
            .to_string(),
            "record batch is truncated: it needs 61 bytes but only 3 are there",
        ),
        (
            InvalidBatch {
                position: 1234,
                error: BatchError::BadMagic(0),
            }
            .to_string(),
            "invalid record batch at byte position 1234",
        ),
        (
            BatchError::from(InvalidBatch {
                position: 7,
                error: BatchError::BadLength(0),
            })
            .to_string(),
            "invalid record batch at byte position 7",
        ),
    ];
    for (actual, expected) in cases {
        assert_eq!(actual, expected);
    }
    // The cause stays reachable as the source.
    let invalid = BatchError::from(InvalidBatch {
        position: 7,
        error: BatchError::BadLength(0),
    });
    let source = std::error::Error::source(&invalid).unwrap().to_string();
    assert!(
        source.starts_with("record batch length 0 is invalid"),
        "{source}"
    );
}

fn compression_strategy() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

fn opt_bytes() -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from))
}

fn record_strategy() -> impl Strategy<Value = (Record, i64)> {
    let headers = prop::collection::vec(("[a-z]{0,6}", opt_bytes()), 0..4).prop_map(|headers| {
        // The codec keeps one value per key, so keys are unique.
        let mut seen = std::collections::HashSet::new();
        headers
            .into_iter()
            .filter(|(key, _)| seen.insert(key.clone()))
            .collect::<Vec<(String, Option<Bytes>)>>()
    });
    (opt_bytes(), opt_bytes(), headers, -1i64..1 << 45, 1i64..4).prop_map(
        |(key, value, headers, timestamp, gap)| {
            let record = Record {
                key,
                value,
                headers,
                timestamp,
                offset: 0,
            };
            (record, gap)
        },
    )
}

proptest! {
    #[test]
    fn records_round_trip(
        base_offset in 0i64..1 << 40,
        records in prop::collection::vec(record_strategy(), 1..20),
        compression in compression_strategy(),
        producer_id in -1i64..1000,
        leader_epoch in -1i32..1000,
    ) {
        let mut offset = base_offset;
        let records: Vec<Record> = records
            .into_iter()
            .map(|(record, gap)| {
                let record = Record { offset, ..record };
                offset += gap;
                record
            })
            .collect();
        let options = EncodeOptions { compression, producer_id, ..EncodeOptions::default() };
        let mut batch = encode(&records, &options).unwrap().to_vec();
        set_partition_leader_epoch(&mut batch, leader_epoch);

        let header = validate(&batch).unwrap();
        prop_assert_eq!(header.base_offset, base_offset);
        prop_assert_eq!(header.last_offset(), records.last().unwrap().offset);
        prop_assert_eq!(usize::try_from(header.record_count), Ok(records.len()));
        prop_assert_eq!(header.compression(), Ok(compression));
        prop_assert_eq!(header.producer_id, producer_id);
        prop_assert_eq!(header.partition_leader_epoch, leader_epoch);
        prop_assert_eq!(header.first_timestamp, records.iter().map(|r| r.timestamp).min().unwrap());
        prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
        prop_assert_eq!(header.size(), batch.len());
        prop_assert_eq!(decode(&batch), Ok(records));
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = BatchHeader::parse(&buf);
        let _ = validate(&buf);
        let _ = compute_crc(&buf);
        let _ = batches(&buf).count();
    }
}

proptest! {
    #[test]
    fn corrupt_batches_with_a_fixed_crc_never_panic(
        compression in compression_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4),
    ) {
        let mut batch = encode_sample(compression);
        let len = batch.len();
        for (index, mask) in flips {
            batch[index.index(len)] ^= mask;
        }
        // Make the CRC match again (when the header still parses) so the decoder sees the damage.
        let _ = rewrite_crc(&mut batch);
        let _ = decode(&batch);
    }
}

#[test]
fn overflowing_deltas_are_errors() {
    let records = [
        Record {
            timestamp: 0,
            offset: 0,
            ..Record::default()
        },
        Record {
            timestamp: i64::MAX,
            offset: 2,
            ..Record::default()
        },
    ];
    let batch = encode(&records, &EncodeOptions::default())
        .unwrap()
        .to_vec();

    let mut late = batch.clone();
    late[27..35].copy_from_slice(&1i64.to_be_bytes());
    rewrite_crc(&mut late).unwrap();
    let expected = BatchError::RecordTimestampOverflow {
        base_offset: 0,
        first_timestamp: 1,
        timestamp_delta: i64::MAX,
    };
    assert_eq!(
        decode(&late),
        Err(InvalidBatch {
            position: 0,
            error: expected
        }
        .into())
    );

    // A header that lies about the last offset delta (0, but the second record's delta is 2)
    // lets parse accept a base offset that the records overflow.
    let mut high = batch;
    high[23..27].copy_from_slice(&0i32.to_be_bytes());
    rewrite_crc(&mut high).unwrap();
    set_base_offset(&mut high, i64::MAX - 1);
    let expected = BatchError::RecordOffsetOverflow {
        base_offset: i64::MAX - 1,
        offset_delta: 2,
    };
    assert_eq!(validate(&high).map(|h| h.base_offset), Ok(i64::MAX - 1));
    assert_eq!(
        decode(&high),
        Err(InvalidBatch {
            position: 0,
            error: expected
        }
        .into())
    );
}

#[test]
fn a_stamped_prefix_is_what_the_setters_write() {
    let batch = encode_sample(Compression::Lz4);
    let mut stamped = batch.to_vec();
    set_base_offset(&mut stamped, 4_711);
    set_partition_leader_epoch(&mut stamped, 7);
    let prefix = stamped_prefix(&batch, 4_711, Some(7));
    assert_eq!(prefix[..], stamped[..STAMPED_PREFIX_LEN]);
    let kept_epoch = stamped_prefix(&batch, 4_711, None);
    assert_eq!(kept_epoch[12..16], batch[12..16]);
    let mut replaced = batch.to_vec();
    replaced[..STAMPED_PREFIX_LEN].copy_from_slice(&prefix);
    assert_eq!(replaced, stamped);
    assert!(validate(&replaced).is_ok());
}

/// Five keyed records at offsets 100..105 of a producer's batch, timestamps not in order.
fn filter_sample(compression: Compression, timestamp_type: TimestampType) -> (Vec<Record>, Bytes) {
    let records: Vec<Record> = (0..5)
        .map(|i| Record {
            key: bytes(&format!("k{i}")),
            value: (i != 3).then(|| Bytes::from(format!("value-{i}"))),
            headers: vec![("h".into(), bytes("x"))],
            timestamp: 2_000 + [5, 0, 9, 2, 7][i as usize],
            offset: 100 + i,
        })
        .collect();
    let options = EncodeOptions {
        compression,
        timestamp_type,
        producer_id: 7,
        producer_epoch: 1,
        base_sequence: 40,
        ..EncodeOptions::default()
    };
    let batch = encode(&records, &options).unwrap();
    (records, batch)
}

#[test]
fn filter_keeps_the_chosen_records_and_the_batch_identity_under_every_codec() {
    for compression in Compression::ALL {
        let (records, batch) = filter_sample(compression, TimestampType::CreateTime);
        let original = BatchHeader::parse(&batch).unwrap();
        assert_eq!(filter(&batch, |_| true).unwrap(), Filtered::Unchanged);

        let Filtered::Rewritten {
            batch: out,
            removed,
        } = filter(&batch, |r| r.offset == 101 || r.offset == 103).unwrap()
        else {
            panic!("records were removed")
        };
        assert_eq!(removed, 3);
        let header = validate(&out).expect("valid, CRC included");
        assert_eq!(header.size(), out.len());
        assert_eq!(header.base_offset, 100, "{compression}");
        assert_eq!(header.last_offset_delta, 4, "still covers offset 104");
        assert_eq!(header.record_count, 2);
        assert_eq!(header.compression().unwrap(), compression);
        assert_eq!(header.first_timestamp, original.first_timestamp);
        assert_eq!(header.max_timestamp, 2_002, "the largest kept timestamp");
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (7, 1, 40)
        );
        assert_eq!(
            decode(&out).unwrap(),
            vec![records[1].clone(), records[3].clone()]
        );

        let Filtered::Rewritten {
            batch: empty,
            removed,
        } = filter(&batch, |_| false).unwrap()
        else {
            panic!("records were removed")
        };
        assert_eq!(removed, 5);
        let header = validate(&empty).unwrap();
        assert_eq!(
            (
                header.base_offset,
                header.last_offset_delta,
                header.record_count
            ),
            (100, 4, 0)
        );
        assert_eq!(header.max_timestamp, original.max_timestamp);
        assert_eq!(decode(&empty).unwrap(), vec![]);
    }
}

#[test]
fn filter_keeps_the_append_time_of_a_log_append_time_batch() {
    let (records, batch) = filter_sample(Compression::Lz4, TimestampType::LogAppendTime);
    let mut stamped = batch.to_vec();
    set_log_append_time(&mut stamped, 9_999).unwrap();
    let Filtered::Rewritten { batch: out, .. } = filter(&stamped, |r| r.offset == 100).unwrap()
    else {
        panic!("records were removed")
    };
    assert_eq!(validate(&out).unwrap().max_timestamp, 9_999);
    let kept = decode(&out).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].offset, kept[0].timestamp), (100, 9_999));
    assert_eq!(kept[0].key, records[0].key);
}

#[test]
fn filter_refuses_a_damaged_batch() {
    let (_, batch) = filter_sample(Compression::None, TimestampType::CreateTime);
    let mut damaged = batch.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(filter(&damaged, |_| false).is_err());
    assert!(filter(&batch[..batch.len() - 1], |_| false).is_err());
}
