//! Storage engine throughput, each figure next to baselines measured in the same run.
//!
//! ```text
//! cargo bench -p weir-benches --bench storage              # all of it, a few minutes
//! cargo bench -p weir-benches --bench storage -- append    # one family: append, read, reopen
//! ```
//!
//! Files go under `target/tmp/` (set `WEIR_BENCH_DIR` to put them elsewhere, but not on tmpfs:
//! what is measured is the page-cache path of a real file system). Only the work named below
//! is timed: every iteration starts from state made by untimed setup (fresh files, a reopened
//! log), which is dropped, untimed, afterwards, so disk use stays bounded. Criterion reports
//! each case's `thrpt` in bytes of log data per second; the run ends with a table of each
//! case's medians over its iterations (time, throughput, and minor page faults taken while
//! timed, from `/proc/self/stat`) and its ratio to each baseline of its group.
//!
//! # `append_1KiB`, `append_16KiB`, `append_256KiB`
//!
//! Each iteration appends 128 MiB of record batches of exactly that size (one uncompressed
//! record each) with [`Log::append`] to a new, empty log: the default [`LogConfig`] (flushing
//! off) but 256 MiB segments, so nothing rolls. The time covers validating each batch (CRC-32C),
//! writing it into the segment with its offset and leader epoch stamped (appends below 8 KiB
//! are copied into the segment's map, larger ones written with `pwritev`), indexing, and the
//! kernel's work of the segment's first touch. Baselines:
//!
//! - `memcpy`: the same batch copied to consecutive places of a 128 MiB buffer written before:
//!   the ceiling, with no kernel work at all.
//! - `write(2)`: `File::write_all` of the same batch, as many times, into a new file: the
//!   page-cache path Kafka takes (`FileChannel.write`).
//! - `pwrite(2), preallocated`: the same writes at explicit positions into a new file first
//!   preallocated with `fallocate` as a segment is: the log's own large-append path without
//!   the broker's work (validation, stamping, indexing).
//!
//! `log / write(2)` at or above 1 means the log keeps up with Kafka's write path while also
//! checking every batch's CRC; `log / memcpy` is the share of the copy's speed left after the
//! broker's and the kernel's work.
//!
//! # `read`
//!
//! A 256 MiB log of 16 KiB batches is read from offset 0 to its end with [`Log::read`] and a
//! `max_bytes` of 1 MiB, as consumer fetches would read it, and each returned `Bytes` (a slice
//! of the segment's map) is copied into one reused 1 MiB buffer, as a socket send would copy it.
//!
//! - `log (mapped)`: one open log for every iteration, so after the first pass the read map's
//!   page tables are filled: a second consumer reading the same data.
//! - `log (fresh map)`: the log is reopened (untimed) before each iteration, so each page is
//!   mapped on first read, by a minor page fault (the data is in the page cache): a consumer
//!   tailing the log, through a map that has not touched those pages yet.
//! - `memcpy`, the baseline: the same volume copied in 1 MiB pieces from a buffer written
//!   before.
//!
//! The target is `log / memcpy` of at least 0.5.
//!
//! # `reopen`
//!
//! A 1 GiB log of 16 KiB batches in 384 MiB segments (two sealed, and the active one holding
//! 256 MiB in a file still preallocated to 384 MiB) is flushed to disk and dropped without
//! [`Log::close`], as a crash would leave it. Each iteration opens it with [`Log::open`]; its
//! files are in the page cache, so this is the CPU cost of recovery, not the disk's.
//!
//! - `full recovery`: no checkpoint, so every batch of every segment is checked (CRC-32C,
//!   offsets, epochs) and the indexes are rebuilt.
//! - `checkpoint at log end`: a checkpoint whose recovery point is the log end offset: the
//!   sealed segments are trusted (only their indexes are checked), the active one is scanned.
//! - `read(2)` and `read(2) + CRC-32C`, the baselines: the same 1 GiB of batches read from the
//!   files into a 1 MiB buffer, with and without a CRC-32C over it: what any scan of the data
//!   must cost.
//!
//! Throughput here is bytes of log per second of opening; the summary also gives milliseconds.

use std::cell::{OnceCell, RefCell, RefMut};
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group};
use tempfile::TempDir;
use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::LogConfig;
use weir_broker::storage::{Log, LogCheckpoint, OpenState};
use weir_proto::batch::{self, BatchHeader, EncodeOptions, Record};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

/// Bytes appended by one iteration of an append case.
const APPEND_BYTES: usize = 128 * MIB;
/// Segment size of the append logs: room for one iteration, so nothing rolls.
const APPEND_SEGMENT_BYTES: usize = 256 * MIB;
/// Batch sizes of the append groups.
const APPEND_BATCH_SIZES: [usize; 3] = [KIB, 16 * KIB, 256 * KIB];

/// Size of the log read back by the read group, and of its batches.
const READ_LOG_BYTES: usize = 256 * MIB;
const READ_BATCH_BYTES: usize = 16 * KIB;
/// `max_bytes` of each read, as a consumer fetch asks.
const FETCH_MAX_BYTES: usize = MIB;

/// Size of the log reopened by the reopen group, of its segments and of its batches.
const REOPEN_LOG_BYTES: usize = GIB;
const REOPEN_SEGMENT_BYTES: usize = 384 * MIB;
const REOPEN_BATCH_BYTES: usize = 16 * KIB;

const LEADER_EPOCH: i32 = 0;

/// Whether a case is what the group measures or a baseline it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Subject,
    Baseline,
}

/// The time of one timed iteration, kept for the summary table.
#[derive(Debug)]
struct Sample {
    group: String,
    case: &'static str,
    role: Role,
    bytes: usize,
    elapsed: Duration,
    /// Minor page faults the process took during the timed part, if known.
    minor_faults: Option<u64>,
}

static SAMPLES: Mutex<Vec<Sample>> = Mutex::new(Vec::new());

/// A criterion group whose every iteration handles the same number of bytes.
struct Group<'c> {
    name: String,
    bytes: usize,
    criterion: BenchmarkGroup<'c, WallTime>,
}

impl<'c> Group<'c> {
    /// A group of `name` whose iterations handle `bytes` each. Criterion's warm-up runs for
    /// `warm_up` of wall time, setup included, and plans the measurement from it.
    fn new(
        c: &'c mut Criterion,
        name: String,
        bytes: usize,
        warm_up: Duration,
        measurement: Duration,
    ) -> Self {
        let mut criterion = c.benchmark_group(&name);
        criterion
            .throughput(Throughput::Bytes(bytes as u64))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(warm_up)
            .measurement_time(measurement);
        Group {
            name,
            bytes,
            criterion,
        }
    }

    /// Benchmarks one case. Each iteration runs `run` on a fresh `setup()`; only `run` is
    /// timed, not the setup nor dropping its state. Whatever `run` needs built (a log to read,
    /// a buffer to fill) must come from `setup`, so that its building is not timed.
    fn case<S>(
        &mut self,
        case: &'static str,
        role: Role,
        mut setup: impl FnMut() -> S,
        mut run: impl FnMut(&mut S),
    ) {
        let (group, bytes) = (self.name.clone(), self.bytes);
        self.criterion.bench_function(case, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut state = setup();
                    let faults_before = minor_faults();
                    let start = Instant::now();
                    run(&mut state);
                    let elapsed = start.elapsed();
                    let faults = minor_faults().zip(faults_before).map(|(a, b)| a - b);
                    drop(state);
                    total += elapsed;
                    let sample = Sample {
                        group: group.clone(),
                        case,
                        role,
                        bytes,
                        elapsed,
                        minor_faults: faults,
                    };
                    SAMPLES.lock().expect("no panic holds it").push(sample);
                }
                total
            });
        });
    }

    fn finish(self) {
        self.criterion.finish();
    }
}

fn appends(c: &mut Criterion) {
    for batch_bytes in APPEND_BATCH_SIZES {
        let batch = batch_of(batch_bytes);
        let count = APPEND_BYTES / batch_bytes;
        let name = format!("append_{}KiB", batch_bytes / KIB);
        let (warm_up, measurement) = (Duration::from_secs(1), Duration::from_secs(3));
        let mut group = Group::new(c, name, APPEND_BYTES, warm_up, measurement);
        let config = LogConfig {
            segment_bytes: APPEND_SEGMENT_BYTES as u64,
            ..LogConfig::default()
        };
        group.case(
            "log",
            Role::Subject,
            || {
                let dir = scratch_dir("append-log");
                (open_log(dir.path(), &config, OpenState::default()), dir)
            },
            |(log, _)| append_times(log, &batch, count),
        );
        let copies = RefCell::new(Vec::new());
        group.case(
            "memcpy",
            Role::Baseline,
            || touched(&copies, APPEND_BYTES),
            |copies| {
                for chunk in copies.chunks_exact_mut(batch.len()) {
                    chunk.copy_from_slice(&batch);
                }
                black_box(&mut **copies);
            },
        );
        group.case(
            "write(2)",
            Role::Baseline,
            || {
                let dir = scratch_dir("append-write");
                let file = File::create(dir.path().join("data")).expect("create a file");
                (file, dir)
            },
            |(file, _)| {
                for _ in 0..count {
                    file.write_all(&batch).expect("write to the file");
                }
            },
        );
        group.case(
            "pwrite(2), preallocated",
            Role::Baseline,
            || {
                let dir = scratch_dir("append-pwrite");
                let file = File::create(dir.path().join("data")).expect("create a file");
                let len = APPEND_SEGMENT_BYTES as u64;
                rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len)
                    .expect("preallocate the file");
                (file, dir)
            },
            |(file, _)| {
                for position in (0..APPEND_BYTES).step_by(batch.len()) {
                    let position = position as u64;
                    file.write_all_at(&batch, position)
                        .expect("write to the file");
                }
            },
        );
        group.finish();
    }
}

fn reads(c: &mut Criterion) {
    let config = LogConfig::default();
    let fixture = OnceCell::new();
    let fixture = || fixture.get_or_init(|| ReadFixture::build(&config));
    let out = RefCell::new(Vec::new());
    let (warm_up, measurement) = (Duration::from_secs(1), Duration::from_secs(3));
    let mut group = Group::new(c, "read".into(), READ_LOG_BYTES, warm_up, measurement);
    let mapped = OnceCell::new();
    group.case(
        "log (mapped)",
        Role::Subject,
        || {
            let log = mapped.get_or_init(|| fixture().open(&config));
            (fixture(), log, touched(&out, FETCH_MAX_BYTES))
        },
        |(fixture, log, out)| fetch_all(&log.0, fixture.end, out),
    );
    drop(mapped);
    group.case(
        "log (fresh map)",
        Role::Subject,
        || {
            let fixture = fixture();
            (
                fixture,
                fixture.open(&config),
                touched(&out, FETCH_MAX_BYTES),
            )
        },
        |(fixture, log, out)| fetch_all(&log.0, fixture.end, out),
    );
    let source = RefCell::new(Vec::new());
    group.case(
        "memcpy",
        Role::Baseline,
        || {
            (
                touched(&source, READ_LOG_BYTES),
                touched(&out, FETCH_MAX_BYTES),
            )
        },
        |(source, out)| {
            for chunk in source.chunks(FETCH_MAX_BYTES) {
                out[..chunk.len()].copy_from_slice(chunk);
                black_box(&mut **out);
            }
        },
    );
    group.finish();
}

/// The log the read group reads: written once, then closed.
struct ReadFixture {
    dir: TempDir,
    end: i64,
    closed: OpenState,
}

impl ReadFixture {
    fn build(config: &LogConfig) -> Self {
        let dir = scratch_dir("read");
        let log = open_log(dir.path(), config, OpenState::default());
        let batch = batch_of(READ_BATCH_BYTES);
        append_times(&log, &batch, READ_LOG_BYTES / READ_BATCH_BYTES);
        let closed = OpenState {
            clean_shutdown: true,
            checkpoint: Some(log.checkpoint()),
        };
        log.close().expect("close the log");
        let end = log.log_end_offset();
        ReadFixture { dir, end, closed }
    }

    /// Opens the log anew: its maps have touched no page yet.
    fn open(&self, config: &LogConfig) -> ClosedOnDrop {
        ClosedOnDrop(open_log(self.dir.path(), config, self.closed))
    }
}

/// A log that is closed when dropped, so that it can be opened again as cleanly shut down.
/// (Reopened without it, its active segment would still be preallocated, and opening would
/// zero the whole preallocated part.)
struct ClosedOnDrop(Log);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.close().expect("close the log");
    }
}

fn reopens(c: &mut Criterion) {
    let config = LogConfig {
        segment_bytes: REOPEN_SEGMENT_BYTES as u64,
        ..LogConfig::default()
    };
    let fixture = OnceCell::new();
    let fixture = || fixture.get_or_init(|| ReopenFixture::build(&config));
    // The first warm-up iteration also builds the 1 GiB log (seconds); a longer warm-up keeps
    // that out of criterion's estimate of an iteration's time.
    let (warm_up, measurement) = (Duration::from_secs(4), Duration::from_secs(5));
    let mut group = Group::new(c, "reopen".into(), REOPEN_LOG_BYTES, warm_up, measurement);
    for (case, checkpoint_at_end) in [("full recovery", false), ("checkpoint at log end", true)] {
        // The opened log is dropped untimed, and again without close().
        group.case(
            case,
            Role::Subject,
            || {
                let fixture = fixture();
                let checkpoint = checkpoint_at_end.then_some(LogCheckpoint {
                    log_start_offset: 0,
                    recovery_point: fixture.end,
                });
                let state = OpenState {
                    clean_shutdown: false,
                    checkpoint,
                };
                (fixture, state, None)
            },
            |(fixture, state, opened)| {
                let log = open_log(fixture.dir.path(), &config, *state);
                assert_eq!(
                    log.log_end_offset(),
                    fixture.end,
                    "recovery kept every batch"
                );
                *opened = Some(log);
            },
        );
    }
    let buf = RefCell::new(Vec::new());
    group.case(
        "read(2)",
        Role::Baseline,
        || (fixture(), touched(&buf, MIB)),
        |(fixture, buf)| read_files(&fixture.files, REOPEN_LOG_BYTES, buf, |_| {}),
    );
    group.case(
        "read(2) + CRC-32C",
        Role::Baseline,
        || (fixture(), touched(&buf, MIB)),
        |(fixture, buf)| {
            let mut crc = 0;
            read_files(&fixture.files, REOPEN_LOG_BYTES, buf, |bytes| {
                crc = crc32c::crc32c_append(crc, bytes);
            });
            black_box(crc);
        },
    );
    group.finish();
}

/// The log the reopen group opens: written once, flushed, and dropped without
/// [`Log::close`], as a crash leaves it.
struct ReopenFixture {
    dir: TempDir,
    end: i64,
    /// Its segment files, in offset order.
    files: Vec<PathBuf>,
}

impl ReopenFixture {
    fn build(config: &LogConfig) -> Self {
        let dir = scratch_dir("reopen");
        let log = open_log(dir.path(), config, OpenState::default());
        let batch = batch_of(REOPEN_BATCH_BYTES);
        append_times(&log, &batch, REOPEN_LOG_BYTES / REOPEN_BATCH_BYTES);
        // On disk, so that no open pays for writing it back.
        log.flush().expect("flush the log");
        let end = log.log_end_offset();
        drop(log);
        let files = log_files(dir.path());
        ReopenFixture { dir, end, files }
    }
}

/// A RecordBatch v2 of exactly `size` bytes: one uncompressed record whose value fills it.
fn batch_of(size: usize) -> Bytes {
    let timestamp = SystemClock.now_ms();
    let mut value_len = size;
    for _ in 0..4 {
        let value: Vec<u8> = (0..value_len).map(|i| (i % 251) as u8).collect();
        let record = Record {
            value: Some(value.into()),
            timestamp,
            ..Record::default()
        };
        let batch = batch::encode(&[record], &EncodeOptions::default()).expect("encode a batch");
        if batch.len() == size {
            return batch;
        }
        // The value's length prefix is a varint, so a shorter value may need another try.
        value_len = (value_len + size).saturating_sub(batch.len());
    }
    panic!("no batch of exactly {size} bytes");
}

/// The buffer in `cell`, made `len` bytes long and written once, so its pages are in memory.
fn touched(cell: &RefCell<Vec<u8>>, len: usize) -> RefMut<'_, Vec<u8>> {
    let mut buf = cell.borrow_mut();
    if buf.len() != len {
        *buf = vec![1; len];
    }
    buf
}

fn open_log(dir: &Path, config: &LogConfig, state: OpenState) -> Log {
    Log::open(dir, config.clone(), Arc::new(SystemClock), state).expect("open the log")
}

fn append_times(log: &Log, batch: &[u8], count: usize) {
    for _ in 0..count {
        log.append(batch, LEADER_EPOCH).expect("append a batch");
    }
}

/// Reads the log from offset 0 to `end` in fetches of [`FETCH_MAX_BYTES`], copying each into
/// `out` as a socket send would.
fn fetch_all(log: &Log, end: i64, out: &mut [u8]) {
    let mut offset = 0;
    let mut bytes = 0;
    while offset < end {
        let fetched = log.read(offset, FETCH_MAX_BYTES).expect("read the log");
        out[..fetched.len()].copy_from_slice(&fetched);
        black_box(&mut *out);
        offset = next_offset_after(&fetched);
        bytes += fetched.len();
    }
    assert_eq!(bytes, READ_LOG_BYTES, "every batch read once");
}

/// The offset after the last of `batches`, as a consumer finds where to fetch next.
fn next_offset_after(batches: &[u8]) -> i64 {
    let mut position = 0;
    let mut next_offset = None;
    while position < batches.len() {
        let header = BatchHeader::parse(&batches[position..]).expect("reads are whole batches");
        next_offset = Some(header.next_offset());
        position += header.size();
    }
    next_offset.expect("a read below the log end has a batch")
}

/// The log's segment files, in offset order.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).expect("list the log directory");
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("list the log directory").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Reads the first `bytes` bytes of `files`, one after the other, through `buf`, handing each
/// piece to `consume`.
fn read_files(files: &[PathBuf], bytes: usize, buf: &mut [u8], mut consume: impl FnMut(&[u8])) {
    let mut left = bytes;
    for path in files {
        let mut file = File::open(path).expect("open a segment file");
        while left > 0 {
            let want = left.min(buf.len());
            let n = file.read(&mut buf[..want]).expect("read a segment file");
            if n == 0 {
                break;
            }
            consume(&buf[..n]);
            left -= n;
        }
    }
    assert_eq!(left, 0, "the files hold the whole log");
}

/// Where benchmark files go: `WEIR_BENCH_DIR`, or the target directory's `tmp/`.
fn bench_root() -> PathBuf {
    let root = std::env::var_os("WEIR_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&root).expect("create the benchmark directory");
    root
}

/// A new directory under [`bench_root`], removed when dropped.
fn scratch_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("weir-{prefix}-"))
        .tempdir_in(bench_root())
        .expect("create a scratch directory")
}

/// Minor page faults taken by this process so far (`/proc/self/stat`), where Linux tells.
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses: state, ppid, pgrp, session,
    // tty_nr, tpgid, flags, minflt.
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_whitespace().nth(7)?.parse().ok()
}

/// One case's medians over its iterations, for the summary.
struct Medians {
    case: &'static str,
    role: Role,
    gib_per_s: f64,
    time: Duration,
    minor_faults: Option<u64>,
}

/// Prints each case's median throughput, time and page faults over its iterations, and its
/// ratio to each baseline of its group.
fn print_summary() {
    let samples = SAMPLES.lock().expect("no panic holds it");
    let mut groups: Vec<&str> = Vec::new();
    for sample in samples.iter() {
        if !groups.contains(&sample.group.as_str()) {
            groups.push(&sample.group);
        }
    }
    println!("\nMedians over all iterations (warm-up included), and ratios to the baselines:");
    for group in groups {
        println!("{group}");
        let in_group: Vec<&Sample> = samples.iter().filter(|s| s.group == group).collect();
        let mut cases: Vec<Medians> = Vec::new();
        for sample in &in_group {
            if cases.iter().any(|c| c.case == sample.case) {
                continue;
            }
            let of_case: Vec<&Sample> = in_group
                .iter()
                .copied()
                .filter(|s| s.case == sample.case)
                .collect();
            let time = median(of_case.iter().map(|s| s.elapsed));
            let minor_faults: Option<Vec<u64>> = of_case.iter().map(|s| s.minor_faults).collect();
            cases.push(Medians {
                case: sample.case,
                role: sample.role,
                gib_per_s: sample.bytes as f64 / GIB as f64 / time.as_secs_f64(),
                time,
                minor_faults: minor_faults.map(|f| median(f.into_iter())),
            });
        }
        for case in &cases {
            let millis = case.time.as_secs_f64() * 1000.0;
            let faults = case.minor_faults.map_or("-".into(), |f| f.to_string());
            print!(
                "  {:<24} {:>6.2} GiB/s {:>8.1} ms {:>7} faults",
                case.case, case.gib_per_s, millis, faults
            );
            let baselines = cases.iter().filter(|c| c.role == Role::Baseline);
            for baseline in baselines.filter(|b| b.case != case.case) {
                let ratio = case.gib_per_s / baseline.gib_per_s;
                print!("  {ratio:>5.2} x {}", baseline.case);
            }
            println!();
        }
    }
}

fn median<T: Ord + Copy>(values: impl Iterator<Item = T>) -> T {
    let mut values: Vec<T> = values.collect();
    values.sort_unstable();
    values[values.len() / 2]
}

criterion_group!(benches, appends, reads, reopens);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_summary();
}
