//! The sparse offset index and the time index of a segment.
//!
//! Both are arrays of fixed-size big-endian entries, sorted, in a preallocated mapped file:
//!
//! ```text
//! offset index entry (8 bytes):  relative_offset u32 | position u32
//! time index entry  (12 bytes):  timestamp i64       | relative_offset u32
//! ```
//!
//! `relative_offset` is a batch's base offset minus the segment's base offset; `position` is the
//! batch's byte position in the segment's log file. The time index holds the largest timestamp
//! seen so far and the batch where it was first seen, so its timestamps strictly increase.
//! Lookups find the last entry at or below the target, then the caller scans batch headers
//! forward from there.

/// One entry of the offset index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

/// One entry of the time index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

/// A fixed-size index entry.
pub(crate) trait Entry: Copy {
    /// Bytes per entry on disk.
    const SIZE: usize;
    /// The value entries are sorted and searched by.
    fn key(&self) -> i64;
    fn decode(bytes: &[u8]) -> Self;
    fn encode(&self, out: &mut [u8]);
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;

    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }

    fn decode(bytes: &[u8]) -> Self {
        Self {
            relative_offset: be_u32(&bytes[0..4]),
            position: be_u32(&bytes[4..8]),
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;

    fn key(&self) -> i64 {
        self.timestamp
    }

    fn decode(bytes: &[u8]) -> Self {
        let timestamp = i64::from_be_bytes(bytes[0..8].try_into().expect("8 bytes"));
        Self {
            timestamp,
            relative_offset: be_u32(&bytes[8..12]),
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().expect("4 bytes"))
}

/// The entries held in `bytes` (whole entries only).
pub(crate) fn entry_count<E: Entry>(bytes: &[u8]) -> usize {
    bytes.len() / E::SIZE
}

/// Entry `i` of the index in `bytes`.
pub(crate) fn entry<E: Entry>(bytes: &[u8], i: usize) -> E {
    E::decode(&bytes[i * E::SIZE..(i + 1) * E::SIZE])
}

/// The last entry whose key is at most `target`, if any.
pub(crate) fn lookup<E: Entry>(bytes: &[u8], target: i64) -> Option<E> {
    // partition_point: the number of entries with key <= target, as keys are sorted.
    let count = entry_count::<E>(bytes);
    let (mut low, mut high) = (0, count);
    while low < high {
        let mid = low + (high - low) / 2;
        if entry::<E>(bytes, mid).key() <= target {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    (low > 0).then(|| entry::<E>(bytes, low - 1))
}

/// The last entry, if any.
pub(crate) fn last<E: Entry>(bytes: &[u8]) -> Option<E> {
    let count = entry_count::<E>(bytes);
    (count > 0).then(|| entry::<E>(bytes, count - 1))
}

/// Why an index file cannot be trusted, or `None` if it is sound: its size is whole entries,
/// its keys strictly increase, and it points only inside the segment.
pub(crate) fn offset_index_problem(bytes: &[u8], log_len: u64) -> Option<String> {
    if !bytes.len().is_multiple_of(OffsetEntry::SIZE) {
        return Some(format!(
            "size {} is not a multiple of {}",
            bytes.len(),
            OffsetEntry::SIZE
        ));
    }
    let mut previous: Option<OffsetEntry> = None;
    for i in 0..entry_count::<OffsetEntry>(bytes) {
        let e: OffsetEntry = entry(bytes, i);
        if u64::from(e.position) >= log_len {
            return Some(format!(
                "entry {i} points past the end of the log, at {}",
                e.position
            ));
        }
        if let Some(p) = previous
            && (e.relative_offset <= p.relative_offset || e.position <= p.position)
        {
            return Some(format!("entry {i} does not increase"));
        }
        previous = Some(e);
    }
    None
}

/// As [`offset_index_problem`], for a time index of a segment whose relative offsets are at
/// most `max_relative_offset`.
pub(crate) fn time_index_problem(bytes: &[u8], max_relative_offset: u32) -> Option<String> {
    if !bytes.len().is_multiple_of(TimeEntry::SIZE) {
        return Some(format!(
            "size {} is not a multiple of {}",
            bytes.len(),
            TimeEntry::SIZE
        ));
    }
    let mut previous: Option<TimeEntry> = None;
    for i in 0..entry_count::<TimeEntry>(bytes) {
        let e: TimeEntry = entry(bytes, i);
        if e.relative_offset > max_relative_offset {
            return Some(format!("entry {i} points past the end of the log"));
        }
        if let Some(p) = previous
            && (e.timestamp <= p.timestamp || e.relative_offset < p.relative_offset)
        {
            return Some(format!("entry {i} does not increase"));
        }
        previous = Some(e);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_index(entries: &[(u32, u32)]) -> Vec<u8> {
        let mut bytes = vec![0; entries.len() * OffsetEntry::SIZE];
        for (i, &(relative_offset, position)) in entries.iter().enumerate() {
            OffsetEntry {
                relative_offset,
                position,
            }
            .encode(&mut bytes[i * OffsetEntry::SIZE..]);
        }
        bytes
    }

    #[test]
    fn lookup_finds_the_last_entry_at_or_below_the_target() {
        let bytes = offset_index(&[(0, 0), (10, 4096), (25, 8200)]);
        let check = |target, expected: Option<(u32, u32)>| {
            let found =
                lookup::<OffsetEntry>(&bytes, target).map(|e| (e.relative_offset, e.position));
            assert_eq!(found, expected, "target {target}");
        };
        check(-1, None);
        check(0, Some((0, 0)));
        check(9, Some((0, 0)));
        check(10, Some((10, 4096)));
        check(24, Some((10, 4096)));
        check(1000, Some((25, 8200)));
        assert_eq!(lookup::<OffsetEntry>(&[], 5), None);
    }

    #[test]
    fn sanity_checks_catch_damage() {
        assert_eq!(
            offset_index_problem(&offset_index(&[(0, 0), (3, 100)]), 200),
            None
        );
        assert!(offset_index_problem(&offset_index(&[(0, 0), (3, 100)]), 50).is_some());
        assert!(offset_index_problem(&offset_index(&[(3, 0), (3, 100)]), 200).is_some());
        assert!(offset_index_problem(&[0; 7], 200).is_some());
        let mut time = vec![0; 2 * TimeEntry::SIZE];
        TimeEntry {
            timestamp: 5,
            relative_offset: 1,
        }
        .encode(&mut time[..]);
        TimeEntry {
            timestamp: 4,
            relative_offset: 2,
        }
        .encode(&mut time[TimeEntry::SIZE..]);
        assert!(time_index_problem(&time, 10).is_some());
    }
}
