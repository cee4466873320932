//! A full disk: preallocating a new segment fails, the append reports it (naming the file),
//! and the log stays readable and takes appends again once space returns.
//!
//! The test cannot mount a small file system, so it makes one out of the process's file size
//! limit (`RLIMIT_FSIZE`): with the limit below `segment_bytes`, `fallocate` of a new segment
//! fails with EFBIG exactly as it fails with ENOSPC on a full disk. The limit applies to the
//! whole process, so the scenario runs in a child process of this test binary.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use weir_broker::storage::Error;

const CHILD_ENV: &str = "WEIR_TEST_DISK_FULL_CHILD";
const SEGMENT_BYTES: u64 = 64 * 1024;

#[test]
fn a_full_disk_fails_the_roll_and_the_log_recovers_when_space_returns() {
    if std::env::var_os(CHILD_ENV).is_some() {
        full_disk_scenario();
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_full_disk_fails_the_roll_and_the_log_recovers_when_space_returns",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the scenario did not run:\n{stdout}"
    );
}

fn full_disk_scenario() {
    // Going over the limit also raises SIGXFSZ, whose default action ends the process; with a
    // handler installed the call just fails with EFBIG.
    signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let (_, clock) = common::clock();
    let config = common::small_config(SEGMENT_BYTES);
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path(), config, &clock);
    let batch = common::batch(4, 1000, 0);

    let original = getrlimit(Resource::Fsize);
    let full = Rlimit {
        current: Some(SEGMENT_BYTES / 2),
        maximum: original.maximum,
    };
    setrlimit(Resource::Fsize, full).unwrap();

    // Appends fill the preallocated active segment, then the roll fails.
    let mut appended: i64 = 0;
    let error = loop {
        match log.append(&batch, 0) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 1000, "the roll never failed");
    };
    assert!(
        appended > 0,
        "appends into the preallocated segment must succeed"
    );
    let message = error.to_string();
    match &error {
        Error::DiskFull { path, .. } => {
            assert!(
                path.ends_with(format!("{:020}.log", appended * 4)),
                "{message}"
            )
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }
    assert!(message.contains("free disk space"), "{message}");
    // Nothing of the failed segment is left, the log is unchanged and still readable.
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), appended * 4);
    assert_eq!(common::read_all(&log).len(), appended as usize);
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("leader-epoch")
        })
        .count();
    assert_eq!(files, 3, "only the first segment's three files exist");
    // Still full: the retry fails the same way.
    assert!(matches!(log.append(&batch, 0), Err(Error::DiskFull { .. })));

    setrlimit(Resource::Fsize, original).unwrap();
    let info = log.append(&batch, 0).unwrap();
    assert_eq!(info.base_offset, appended * 4);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(common::read_all(&log).len(), appended as usize + 1);
}
