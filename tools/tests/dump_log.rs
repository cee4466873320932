//! Runs the `weir dump-log` binary on segment files written in a temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use bytes::Bytes;
use weir_broker::clock::SystemClock;
use weir_broker::config::LogConfig;
use weir_broker::storage::{Log, OpenState};
use weir_proto::batch::{self, Compression, EncodeOptions, HEADER_LEN, Record};

/// Bytes a segment file is preallocated to in these tests.
const SEGMENT_BYTES: usize = 4096;

/// Appends `batches` (as a producer sends them) to a new partition log in `dir` with the
/// broker's storage engine, and stops it without closing, as a crash would: the segment file
/// keeps its preallocated zeros. Returns the file's path and each batch's byte position in it.
fn write_segment(dir: &Path, batches: &[Bytes]) -> (PathBuf, Vec<usize>) {
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES as u64,
        ..LogConfig::default()
    };
    let log = Log::open(dir, config, Arc::new(SystemClock), OpenState::default()).unwrap();
    let mut positions = Vec::new();
    let mut position = 0;
    for produced in batches {
        log.append(produced, 0).unwrap();
        positions.push(position);
        position += produced.len();
    }
    assert_eq!(log.segment_count(), 1, "the batches fit one segment");
    drop(log);
    let path = dir.join("00000000000000000000.log");
    assert_eq!(fs::metadata(&path).unwrap().len(), SEGMENT_BYTES as u64);
    (path, positions)
}

/// Three producer batches of 2, 3 and 1 records, in different codecs.
fn produced_batches() -> Vec<Bytes> {
    let counts_and_codecs = [
        (2, Compression::None),
        (3, Compression::Gzip),
        (1, Compression::Zstd),
    ];
    let mut key = 0;
    counts_and_codecs
        .into_iter()
        .map(|(count, compression)| {
            let records: Vec<Record> = (0..count)
                .map(|offset| {
                    key += 1;
                    Record {
                        key: Some(Bytes::from(format!("key-{key}"))),
                        value: Some(Bytes::from(format!("value-{key}"))),
                        headers: vec![("trace".to_owned(), Some(Bytes::from_static(b"t\x01")))],
                        timestamp: 1_700_000_000_000 + key,
                        offset,
                    }
                })
                .collect();
            let options = EncodeOptions {
                compression,
                ..EncodeOptions::default()
            };
            batch::encode(&records, &options).unwrap()
        })
        .collect()
}

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap()
}

fn dump_log(path: &Path, extra: &[&str]) -> (Output, String, String) {
    let mut args = vec!["dump-log", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = weir(&args);
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    (output, stdout, stderr)
}

#[test]
fn dumps_every_batch_of_a_preallocated_segment() {
    let dir = tempfile::tempdir().unwrap();
    let produced = produced_batches();
    let (path, positions) = write_segment(dir.path(), &produced);

    let (output, stdout, stderr) = dump_log(&path, &[]);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let expected = [
        (0, 1, 2, "none", produced[0].len()),
        (2, 4, 3, "gzip", produced[1].len()),
        (5, 5, 1, "zstd", produced[2].len()),
    ];
    for ((base, last, count, codec, size), position) in expected.into_iter().zip(&positions) {
        let start = format!(
            "base_offset: {base} last_offset: {last} record_count: {count} position: {position} \
             size: {size} "
        );
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{stdout}"));
        assert!(line.contains(&format!("compression: {codec} ")), "{line}");
        assert!(line.contains("timestamp_type: CreateTime"), "{line}");
        assert!(
            line.contains("producer_id: -1 producer_epoch: -1 base_sequence: -1"),
            "{line}"
        );
        assert!(
            line.contains("transactional: false control: false"),
            "{line}"
        );
        assert!(line.contains("partition_leader_epoch: 0"), "{line}");
        assert!(line.ends_with(" ok"), "{line}");
    }
    let end = positions[2] + produced[2].len();
    assert!(
        stdout.contains(&format!(
            "End of log at byte position {end} (3 batches); {} preallocated zero bytes follow.",
            SEGMENT_BYTES - end
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("| offset:"), "{stdout}");
}

#[test]
fn dumps_records() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_segment(dir.path(), &produced_batches());

    let (output, stdout, stderr) = dump_log(&path, &["--records"]);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let records: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("| "))
        .collect();
    assert_eq!(records.len(), 6, "{stdout}");
    assert_eq!(
        records[4],
        "| offset: 4 timestamp: 1700000000005 key: \"key-5\" value: \"value-5\" \
         headers: [trace=\"t\\u{1}\"]"
    );
}

#[test]
fn a_corrupt_batch_fails_naming_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let produced = produced_batches();
    let (path, positions) = write_segment(dir.path(), &produced);
    let mut segment = fs::read(&path).unwrap();
    segment[positions[1] + HEADER_LEN + 3] ^= 0x40;
    fs::write(&path, segment).unwrap();

    let (output, stdout, stderr) = dump_log(&path, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let expected = format!(
        "error: segment {}: corrupt batch at byte position {}: record batch CRC-32C mismatch",
        path.display(),
        positions[1]
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("(the batch is corrupt)"), "{stderr}");
    // The good batch before it is still listed, and the corrupt one shown with its CRCs.
    assert!(
        stdout.contains("base_offset: 0 last_offset: 1 "),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("position: {} ", positions[1])) && stdout.contains("MISMATCH"),
        "{stdout}"
    );
}

#[test]
fn garbage_after_the_last_batch_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let produced = produced_batches();
    let (path, positions) = write_segment(dir.path(), &produced);
    let end = positions[2] + produced[2].len();
    let mut segment = fs::read(&path).unwrap();
    segment[end + 100] = 0xff;
    fs::write(&path, segment).unwrap();

    let (output, _, stderr) = dump_log(&path, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("corrupt batch at byte position {end}: ")),
        "{stderr}"
    );
}

#[test]
fn a_segment_without_preallocation_ends_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let produced = produced_batches();
    let path = dir.path().join("00000000000000000006.log");
    fs::write(&path, &produced[0]).unwrap();

    let (output, stdout, _) = dump_log(&path, &[]);
    assert!(output.status.success());
    assert!(
        stdout.contains(&format!(
            "End of log at byte position {} (1 batch).",
            produced[0].len()
        )),
        "{stdout}"
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.log");

    let (output, _, stderr) = dump_log(&path, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!("error: cannot read segment {}: ", path.display())),
        "{stderr}"
    );
}
