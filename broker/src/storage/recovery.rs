//! Validation of a segment's batches after an unclean stop.
//!
//! Recovery walks the batches of every segment that may hold unflushed data and stops at the
//! first byte that does not start a valid batch; the log is cut there. A batch is valid when:
//!
//! - its header parses, its length fits the file and its CRC-32C matches (the CRC covers
//!   attributes to the end, so this catches damage to the records and most of the header);
//! - its base offset continues the log: exactly the previous batch's next offset for data past
//!   the recovery point (appends there are contiguous, see [`super::Log`]), at least that in the
//!   flushed part, where a replicated log may have gaps. This catches damage to the base offset,
//!   which lies outside the CRC;
//! - its partition leader epoch (also outside the CRC) is not below the previous batch's;
//! - its offsets fit the segment (at most `i32::MAX` above the segment's base offset).
//!
//! A run of zero bytes where the next batch would start is the end of the written data (a
//! preallocated segment is zero past its end), not damage.

use weir_proto::batch::{self, BatchHeader, HEADER_LEN};

/// Where a scan stopped and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Bytes of valid batches from the start of the segment.
    pub(crate) valid_len: usize,
    /// The offset after the last valid batch (the expected base offset of the next one).
    pub(crate) next_offset: i64,
    /// The leader epoch of the last valid batch.
    pub(crate) last_epoch: i32,
    /// Why the scan stopped before the end of the bytes, or `None` if it reached the end or a
    /// run of zeros.
    pub(crate) damage: Option<String>,
}

/// Where a scan starts: the segment's base offset, the offset the log continues from, the
/// offset below which data was flushed (and gaps are allowed), and the last epoch seen.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanStart {
    pub(crate) segment_base_offset: i64,
    pub(crate) next_offset: i64,
    pub(crate) flushed_below: i64,
    pub(crate) last_epoch: i32,
}

/// Validates the batches at the start of `bytes`.
pub(crate) fn scan(bytes: &[u8], start: ScanStart) -> Scan {
    let mut scan = Scan {
        valid_len: 0,
        next_offset: start.next_offset,
        last_epoch: start.last_epoch,
        damage: None,
    };
    while scan.valid_len < bytes.len() {
        let rest = &bytes[scan.valid_len..];
        match check_batch(rest, &scan, start) {
            Ok(header) => {
                scan.valid_len += header.size();
                scan.next_offset = header.next_offset();
                scan.last_epoch = header.partition_leader_epoch;
            }
            Err(reason) => {
                let head = &rest[..rest.len().min(HEADER_LEN)];
                if head.iter().any(|&b| b != 0) {
                    scan.damage = Some(reason);
                }
                break;
            }
        }
    }
    scan
}

fn check_batch(bytes: &[u8], scan: &Scan, start: ScanStart) -> Result<BatchHeader, String> {
    let header = batch::validate(bytes).map_err(|e| e.to_string())?;
    let contiguous = header.base_offset == scan.next_offset;
    let flushed_gap =
        header.base_offset < start.flushed_below && header.base_offset > scan.next_offset;
    if !(contiguous || flushed_gap) {
        return Err(format!(
            "batch base offset {} does not continue the log at offset {}",
            header.base_offset, scan.next_offset
        ));
    }
    if header.partition_leader_epoch < scan.last_epoch {
        return Err(format!(
            "batch leader epoch {} is below the previous batch's {}",
            header.partition_leader_epoch, scan.last_epoch
        ));
    }
    if header.last_offset() - start.segment_base_offset > i64::from(i32::MAX) {
        return Err(format!(
            "batch last offset {} is too far above the segment's base offset {}",
            header.last_offset(),
            start.segment_base_offset
        ));
    }
    Ok(header)
}
