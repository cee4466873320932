//! CPU time of a process, from `/proc`, so the broker's share of a phase is counted apart
//! from the clients'.
//!
//! `/proc/<pid>/stat` counts every thread, exited ones too, but in clock ticks (10 ms):
//! coarse next to the tens of milliseconds a broker spends on a million records. Each
//! thread's `/proc/<pid>/task/<tid>/schedstat` counts nanoseconds, but a thread that exits
//! takes its count with it. [`ProcessCpu`] reads both and uses the nanoseconds when no thread
//! exited between two readings, the ticks otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

/// CPU time of one process, read both ways.
#[derive(Debug, Clone)]
pub(crate) struct ProcessCpu {
    /// Every thread's, living or exited, in whole clock ticks.
    ticks: Duration,
    /// Each living thread's, to the nanosecond, by thread id.
    threads: BTreeMap<u32, Duration>,
}

impl ProcessCpu {
    /// Reads the CPU time of process `pid`.
    pub(crate) fn of(pid: u32) -> ProcessCpu {
        let task_dir = format!("/proc/{pid}/task");
        let entries = std::fs::read_dir(&task_dir)
            .unwrap_or_else(|e| panic!("cannot list {task_dir}: {e}; the bench needs Linux /proc"));
        let mut threads = BTreeMap::new();
        for entry in entries.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread that exits while the directory is read is simply not counted.
            let Ok(schedstat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
                continue;
            };
            let on_cpu_ns = schedstat
                .split_whitespace()
                .next()
                .and_then(|t| t.parse().ok());
            if let Some(on_cpu_ns) = on_cpu_ns {
                threads.insert(tid, Duration::from_nanos(on_cpu_ns));
            }
        }
        ProcessCpu {
            ticks: CpuTimes::of(Some(pid)).own,
            threads,
        }
    }

    /// The CPU time used between `earlier` and `self`: to the nanosecond if every thread of
    /// `earlier` still lives, else in clock ticks.
    pub(crate) fn since(&self, earlier: &ProcessCpu) -> Duration {
        let mut used = Duration::ZERO;
        for (tid, before) in &earlier.threads {
            match self.threads.get(tid) {
                Some(after) => used += after.saturating_sub(*before),
                None => return self.ticks.saturating_sub(earlier.ticks),
            }
        }
        for (tid, after) in &self.threads {
            if !earlier.threads.contains_key(tid) {
                used += *after;
            }
        }
        used
    }
}

/// CPU time (user + system, every thread, living or exited) a process has used so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTimes {
    /// The process's own time.
    pub(crate) own: Duration,
    /// The time of its children that it has waited for (`cutime + cstime`): how the bench
    /// counts kcat, which has exited by the time it is read.
    pub(crate) waited_children: Duration,
}

impl CpuTimes {
    /// Reads the CPU times of process `pid` (`None`: this process).
    pub(crate) fn of(pid: Option<u32>) -> CpuTimes {
        let path = match pid {
            Some(pid) => format!("/proc/{pid}/stat"),
            None => "/proc/self/stat".to_string(),
        };
        let stat = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}; the bench needs Linux /proc"));
        parse_stat(&stat).unwrap_or_else(|| panic!("{path} is not in the format proc(5) gives"))
    }

    /// The time used between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            own: self.own.saturating_sub(earlier.own),
            waited_children: self.waited_children.saturating_sub(earlier.waited_children),
        }
    }
}

/// Parses `utime`, `stime`, `cutime` and `cstime` (fields 14 to 17 of proc(5)) out of a
/// `stat` line. The command name (field 2) is in parentheses and may hold spaces, so the
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<CpuTimes> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: utime is field 14, 11 places later.
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [utime, stime, cutime, cstime] = fields[..] else {
        return None;
    };
    let ticks = rustix::param::clock_ticks_per_second();
    let time = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000) / ticks);
    Some(CpuTimes {
        own: time(utime + stime),
        waited_children: time(cutime + cstime),
    })
}
