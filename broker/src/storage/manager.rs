//! Every partition log of one broker: opening them at start, retention, scheduled flushes,
//! the recovery checkpoint, and a clean shutdown.
//!
//! ```text
//! <data_dir>/
//!   .lock               held (flock) while a broker uses the directory
//!   .clean-shutdown     present only between a clean shutdown and the next start
//!   log-checkpoint      per partition: log start offset and recovery point (framed, CRC)
//!   topics/<topic>-<partition>/   one log each
//!   metadata/           the controller's metadata log (not the manager's: see `controller`)
//! ```

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustix::fs::FlockOperation;

use super::checkpoint::{read_checkpoint, write_checkpoint};
use super::cleaner::Throttle;
use super::compaction;
use super::error::{Error, Result};
use super::files;
use super::log::{Log, LogCheckpoint, OpenState};
use crate::clock::Clock;
use crate::config::{LogConfig, StorageConfig};

const LOCK_FILE: &str = ".lock";
const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
const CHECKPOINT_FILE: &str = "log-checkpoint";
const CHECKPOINT_VERSION: u16 = 1;
const TOPICS_DIR: &str = "topics";
const DELETED_SUFFIX: &str = ".deleted";

/// A topic partition, which names a log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }

    /// Parses a log directory name, `<topic>-<partition>`.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition = partition.parse::<i32>().ok().filter(|p| *p >= 0)?;
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        (!topic.is_empty() && topic.chars().all(legal)).then(|| Self::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Every partition log of one broker. See the module documentation.
#[derive(Debug)]
pub struct LogManager {
    config: StorageConfig,
    clock: Arc<dyn Clock>,
    topics_dir: PathBuf,
    logs: RwLock<HashMap<TopicPartition, Arc<Log>>>,
    /// Serializes checkpoint writes.
    checkpointing: Mutex<()>,
    /// Held open for its lock for as long as the manager lives.
    _lock: File,
}

impl LogManager {
    /// Opens the data directory (creating it if absent), locks it against other brokers, and
    /// opens every partition log in it, recovering those an unclean stop left unflushed.
    pub fn open(config: StorageConfig, clock: Arc<dyn Clock>) -> Result<LogManager> {
        config.validate()?;
        let data_dir = config.data_dir.clone();
        prepare_directory(&data_dir)?;
        let lock = lock_directory(&data_dir)?;
        let topics_dir = data_dir.join(TOPICS_DIR);
        prepare_directory(&topics_dir)?;

        let checkpoints = read_log_checkpoints(&data_dir.join(CHECKPOINT_FILE));
        let clean_marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = clean_marker.exists();
        let found = list_log_dirs(&topics_dir)?;
        tracing::info!(dir = %data_dir.display(), logs = found.len(), clean_shutdown, "opening logs");

        let jobs: Vec<_> = found
            .into_iter()
            .map(|(tp, dir)| {
                let state = OpenState {
                    clean_shutdown,
                    checkpoint: checkpoints.get(&tp.to_string()).copied(),
                };
                (tp, dir, state)
            })
            .collect();
        let opened = open_in_parallel(jobs, &config, &clock)?;
        // From here on the logs take writes: the directory is no longer cleanly shut down.
        remove_file_durably(&clean_marker)?;
        let manager = LogManager {
            config,
            clock,
            topics_dir,
            logs: RwLock::new(opened),
            checkpointing: Mutex::new(()),
            _lock: lock,
        };
        manager.write_checkpoint()?;
        Ok(manager)
    }

    /// The storage configuration.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// The clock the logs read the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The log of `tp`, if this broker has it.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        self.logs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
            .cloned()
    }

    /// The log of `tp`, created empty with `config` if this broker does not have it yet.
    pub fn get_or_create(&self, tp: &TopicPartition, config: LogConfig) -> Result<Arc<Log>> {
        if let Some(log) = self.get(tp) {
            return Ok(log);
        }
        let mut logs = self.logs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = logs.get(tp) {
            return Ok(Arc::clone(log));
        }
        let dir = self.topics_dir.join(tp.to_string());
        let log = Arc::new(Log::open(
            dir,
            config,
            Arc::clone(&self.clock),
            OpenState::default(),
        )?);
        logs.insert(tp.clone(), Arc::clone(&log));
        Ok(log)
    }

    /// Every log, in topic-partition order.
    pub fn logs(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        let logs = self.logs.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = logs
            .iter()
            .map(|(tp, log)| (tp.clone(), Arc::clone(log)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Removes the log of `tp` and its files. Returns whether there was one. Readers holding
    /// its bytes keep them.
    pub fn delete(&self, tp: &TopicPartition) -> Result<bool> {
        let Some(log) = self
            .logs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tp)
        else {
            return Ok(false);
        };
        if let Err(e) = log.close() {
            tracing::warn!(%tp, error = %e, "closing a log being deleted failed");
        }
        // Rename first, so a crash part way leaves a directory that the next start removes
        // rather than a partition with some segments missing.
        let doomed = self.topics_dir.join(format!("{tp}{DELETED_SUFFIX}"));
        std::fs::rename(log.dir(), &doomed).map_err(|e| Error::io("rename", log.dir(), e))?;
        files::sync_directory(&self.topics_dir)?;
        std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("remove", &doomed, e))?;
        Ok(true)
    }

    /// Applies retention to every log. Returns the number of segments deleted; a log that
    /// fails is logged and skipped.
    pub fn run_retention(&self) -> usize {
        let mut deleted = 0;
        for (tp, log) in self.logs() {
            match log.delete_expired_segments() {
                Ok(n) => deleted += n,
                Err(e) => tracing::error!(%tp, error = %e, "retention failed"),
            }
        }
        deleted
    }

    /// Compacts every log whose `cleanup.policy` compacts and that is dirty enough
    /// (`min.cleanable.dirty.ratio`, or a dirty record older than `max.compaction.lag.ms`),
    /// dirtiest first, within `log_cleaner_io_max_bytes_per_second`. Returns how many logs
    /// were cleaned; a log that fails is logged and skipped.
    pub fn run_cleaner(&self) -> usize {
        let now = self.clock.now_ms();
        let mut candidates = Vec::new();
        for (tp, log) in self.logs() {
            match log.dirtiness() {
                Ok(Some(dirtiness)) => {
                    let config = log.config();
                    probe::dirtiness(&tp, dirtiness.ratio(), log.last_clean_ms(), now);
                    let needed = dirtiness.needs_cleaning(
                        config.min_cleanable_dirty_ratio.get(),
                        config.max_compaction_lag_ms,
                        now,
                    );
                    candidates.push((tp, log, dirtiness, needed));
                }
                Ok(None) => {}
                Err(e) => tracing::error!(%tp, error = %e, "measuring a log's dirtiness failed"),
            }
        }
        let order = compaction::cleaning_order(
            &candidates
                .iter()
                .map(|(_, _, d, needed)| (*d, *needed))
                .collect::<Vec<_>>(),
        );
        let mut throttle = Throttle::new(self.config.cleaner_io_max_bytes_per_second);
        let mut cleaned = 0;
        for index in order {
            let (tp, log, dirtiness, _) = &candidates[index];
            let started = std::time::Instant::now();
            match log.clean(&mut throttle) {
                Ok(Some(stats)) => {
                    cleaned += 1;
                    probe::cleaned(&stats);
                    tracing::info!(%tp, dirty_ratio = dirtiness.ratio(),
                        segments = stats.segments_rewritten, bytes_read = stats.bytes_read,
                        bytes_written = stats.bytes_written, records_removed = stats.records_removed,
                        elapsed_ms = started.elapsed().as_millis() as u64, "compacted a log");
                }
                Ok(None) => {}
                Err(e) => tracing::error!(%tp, error = %e, "compacting a log failed"),
            }
        }
        cleaned
    }

    /// Flushes every log whose `flush_ms` is due, and the sealed segments of every log (which
    /// moves recovery points forward after rolls). Failures are logged; each takes its log
    /// offline (see [`Error::LogOffline`]).
    pub fn run_flushes(&self) {
        for (tp, log) in self.logs() {
            if let Err(e) = log.flush_if_due().and_then(|_| log.flush_sealed()) {
                tracing::error!(%tp, error = %e, "scheduled flush failed");
            }
        }
    }

    /// Records every log's start offset and recovery point in the checkpoint file.
    pub fn write_checkpoint(&self) -> Result<()> {
        let _writing = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let mut payload = String::new();
        for (tp, log) in self.logs() {
            let c = log.checkpoint();
            payload.push_str(&format!(
                "{tp} {} {}\n",
                c.log_start_offset, c.recovery_point
            ));
        }
        let path = self.config.data_dir.join(CHECKPOINT_FILE);
        write_checkpoint(&path, CHECKPOINT_VERSION, payload.as_bytes())
    }

    /// Closes every log (flushing and sealing it), writes the checkpoint, and marks the
    /// directory cleanly shut down so the next start skips recovery. If any step fails the
    /// mark is not written and the next start recovers.
    pub fn shutdown(&self) -> Result<()> {
        let mut first_error = None;
        for (tp, log) in self.logs() {
            if let Err(e) = log.close() {
                tracing::error!(%tp, error = %e, "closing a log failed");
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.write_checkpoint()?;
        let marker = self.config.data_dir.join(CLEAN_SHUTDOWN_FILE);
        File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("create", &marker, e))?;
        files::sync_directory(&self.config.data_dir)
    }

    /// Runs retention, scheduled flushes and checkpoints until `shutdown` completes, and the
    /// log cleaner (if `cleaner_enable`) in a loop of its own beside them. The file work runs
    /// on the blocking pool.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let every = |ms: u64| {
            let mut interval = tokio::time::interval(Duration::from_millis(ms));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        };
        let mut retention = every(self.config.retention_check_interval_ms);
        let mut flushes = every(self.config.flush_check_interval_ms);
        let mut checkpoints = every(self.config.recovery_checkpoint_interval_ms);
        // The cleaner has its own loop: a long, throttled clean must not hold up flushes and
        // checkpoints. It copes with retention or truncation changing a log under it.
        let cleaner = self.config.cleaner_enable.then(|| {
            let manager = Arc::clone(&self);
            let mut ticks = every(self.config.cleaner_backoff_ms);
            tokio::spawn(async move {
                loop {
                    ticks.tick().await;
                    let manager = Arc::clone(&manager);
                    let run = tokio::task::spawn_blocking(move || manager.run_cleaner());
                    if let Err(e) = run.await {
                        tracing::error!(error = %e, "the log cleaner panicked");
                    }
                }
            })
        });
        // Stops the cleaner's loop when `run` ends (a clean under way finishes or fails).
        let _stop_cleaner = AbortOnDrop(cleaner);
        tokio::pin!(shutdown);
        loop {
            let manager = Arc::clone(&self);
            let work = tokio::select! {
                () = &mut shutdown => return,
                _ = retention.tick() => tokio::task::spawn_blocking(move || {
                    manager.run_retention();
                }),
                _ = flushes.tick() => tokio::task::spawn_blocking(move || manager.run_flushes()),
                _ = checkpoints.tick() => tokio::task::spawn_blocking(move || {
                    if let Err(e) = manager.write_checkpoint() {
                        tracing::error!(error = %e, "writing the recovery checkpoint failed");
                    }
                }),
            };
            if let Err(e) = work.await {
                tracing::error!(error = %e, "a storage maintenance task panicked");
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Creates `dir` if it is missing; fails clearly if it cannot be, or is not a directory.
fn prepare_directory(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::BadDirectory {
            path: dir.to_path_buf(),
            reason: "it exists but is not a directory; move it away or choose another --data-dir"
                .into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| Error::BadDirectory {
                path: dir.to_path_buf(),
                reason: format!("it is missing and could not be created ({e}); create it or fix its parent's permissions"),
            })
        }
        Err(e) => Err(Error::BadDirectory {
            path: dir.to_path_buf(),
            reason: format!("it cannot be read ({e}); check its permissions"),
        }),
    }
}

fn lock_directory(data_dir: &Path) -> Result<File> {
    let path = data_dir.join(LOCK_FILE);
    let file = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::DirectoryLocked {
            path: data_dir.to_path_buf(),
        }),
        Err(e) => Err(Error::io("lock", &path, e.into())),
    }
}

/// The recovery checkpoint's entries by log directory name. A missing or damaged checkpoint
/// gives none, so every log is recovered from its first segment: slower, never wrong.
fn read_log_checkpoints(path: &Path) -> HashMap<String, LogCheckpoint> {
    let payload = match read_checkpoint(path, CHECKPOINT_VERSION) {
        Ok(Some(payload)) => payload,
        Ok(None) => return HashMap::new(),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the recovery checkpoint; every log will be recovered in full");
            return HashMap::new();
        }
    };
    let text = String::from_utf8_lossy(&payload);
    let mut entries = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        let parsed = match fields.as_slice() {
            [name, start, recovery] => start.parse().ok().zip(recovery.parse().ok()).map(
                |(log_start_offset, recovery_point)| {
                    (
                        name.to_string(),
                        LogCheckpoint {
                            log_start_offset,
                            recovery_point,
                        },
                    )
                },
            ),
            _ => None,
        };
        match parsed {
            Some((name, checkpoint)) => {
                entries.insert(name, checkpoint);
            }
            None => {
                tracing::warn!(path = %path.display(), line = number + 1,
                    "ignoring the recovery checkpoint: a line is malformed");
                return HashMap::new();
            }
        }
    }
    entries
}

/// The log directories under `topics_dir`. Leftovers of interrupted deletions are removed;
/// anything else unexpected is left alone with a warning.
fn list_log_dirs(topics_dir: &Path) -> Result<Vec<(TopicPartition, PathBuf)>> {
    let entries = std::fs::read_dir(topics_dir).map_err(|e| Error::io("list", topics_dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", topics_dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(DELETED_SUFFIX) {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
            continue;
        }
        match TopicPartition::from_dir_name(&name) {
            Some(tp) if path.is_dir() => found.push((tp, path)),
            _ => {
                tracing::warn!(path = %path.display(), "ignoring an entry that is not a partition log directory")
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Opens the logs on up to `recovery_threads` threads.
fn open_in_parallel(
    jobs: Vec<(TopicPartition, PathBuf, OpenState)>,
    config: &StorageConfig,
    clock: &Arc<dyn Clock>,
) -> Result<HashMap<TopicPartition, Arc<Log>>> {
    let threads = config.recovery_threads.min(jobs.len()).max(1);
    let chunk = jobs.len().div_ceil(threads).max(1);
    type Opened = Vec<(TopicPartition, Arc<Log>)>;
    let results: Vec<Result<Opened>> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(tp, dir, state)| {
                            let log = Log::open(
                                dir,
                                config.log_config_of(&tp.topic),
                                Arc::clone(clock),
                                *state,
                            )?;
                            Ok((tp.clone(), Arc::new(log)))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("opening a log panicked"))
            .collect()
    });
    let mut logs = HashMap::new();
    for result in results {
        logs.extend(result?);
    }
    Ok(logs)
}

fn remove_file_durably(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => files::sync_directory(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// The log cleaner's metrics, through the `metrics` facade.
pub(crate) mod probe {
    use std::sync::Once;

    use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

    use super::TopicPartition;
    use crate::storage::CleanStats;

    const BYTES_CLEANED: &str = "weir_log_cleaner_bytes_cleaned_total";
    const RECORDS_REMOVED: &str = "weir_log_cleaner_records_removed_total";
    const RUNS: &str = "weir_log_cleaner_runs_total";
    const DIRTY_RATIO: &str = "weir_log_cleaner_dirty_ratio";
    const SINCE_CLEAN: &str = "weir_log_cleaner_seconds_since_clean";

    /// Registers each metric's description and unit, once per process.
    pub(crate) fn describe() {
        static DESCRIBED: Once = Once::new();
        DESCRIBED.call_once(|| {
            describe_counter!(
                BYTES_CLEANED,
                Unit::Bytes,
                "Bytes of log segments the cleaner compacted (their size before cleaning)."
            );
            describe_counter!(
                RECORDS_REMOVED,
                Unit::Count,
                "Records compaction removed: superseded by a newer record of their key, \
                 expired tombstones, records without a key."
            );
            describe_counter!(RUNS, Unit::Count, "Compactions of a log that completed.");
            describe_gauge!(
                DIRTY_RATIO,
                Unit::Count,
                "Per compacted log: the share of its cleanable bytes not compacted yet \
                 (labels topic, partition)."
            );
            describe_gauge!(
                SINCE_CLEAN,
                Unit::Seconds,
                "Per compacted log: time since the cleaner last compacted it, since the \
                 broker started (labels topic, partition; absent until the first clean)."
            );
        });
    }

    pub(super) fn cleaned(stats: &CleanStats) {
        counter!(BYTES_CLEANED).increment(stats.bytes_read);
        counter!(RECORDS_REMOVED).increment(stats.records_removed);
        counter!(RUNS).increment(1);
    }

    pub(super) fn dirtiness(
        tp: &TopicPartition,
        ratio: f64,
        last_clean_ms: Option<i64>,
        now_ms: i64,
    ) {
        let labels = [
            ("topic", tp.topic.clone()),
            ("partition", tp.partition.to_string()),
        ];
        gauge!(DIRTY_RATIO, &labels).set(ratio);
        if let Some(at) = last_clean_ms {
            gauge!(SINCE_CLEAN, &labels).set(now_ms.saturating_sub(at) as f64 / 1000.0);
        }
    }
}
