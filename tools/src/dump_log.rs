//! `weir dump-log`: print the record batches of a segment file, like Kafka's kafka-dump-log.
//!
//! The file is read whole and walked batch by batch with `weir_proto::batch::batches`, which
//! validates each batch (length, magic, CRC-32C). A run of zero bytes up to the end of the file
//! is the unused tail of a preallocated segment and ends the log; any other invalid data is an
//! error naming the file and the byte position of the bad batch.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use weir_proto::batch::{self, BatchError, BatchHeader, InvalidBatch, Record};

/// Arguments of `weir dump-log`.
#[derive(Debug, clap::Args)]
pub(crate) struct DumpLogArgs {
    /// The segment file to dump, e.g. `weir-data/topics/orders-0/00000000000000000000.log`.
    path: PathBuf,
    /// Also print every record: offset, timestamp, key, value and headers.
    #[arg(long)]
    records: bool,
}

/// Runs `weir dump-log`, printing to standard output.
pub(crate) fn run(args: &DumpLogArgs) -> Result<()> {
    let name = args.path.display().to_string();
    let data = fs::read(&args.path).with_context(|| format!("cannot read segment {name}"))?;
    let mut out = BufWriter::new(io::stdout().lock());
    let result = dump(&name, &data, args.records, &mut out);
    // Print what was dumped before the error, which goes to standard error.
    let flushed = out.flush().context("cannot write to standard output");
    result.and(flushed)
}

/// Prints every batch of the segment `data` (read from file `name`) to `out`.
fn dump(name: &str, data: &[u8], records: bool, out: &mut impl Write) -> Result<()> {
    writeln!(out, "Dumping segment {name} ({} bytes)", data.len())?;
    let mut batch_count = 0usize;
    for item in batch::batches(data) {
        match item {
            Ok((position, header)) => {
                writeln!(out, "{}", batch_line(position, &header, None))?;
                if records {
                    let bytes = &data[position..position + header.size()];
                    let decoded = batch::decode(bytes).with_context(|| {
                        format!(
                            "segment {name}: cannot decode the records of the batch at byte \
                             position {position}"
                        )
                    })?;
                    for record in &decoded {
                        writeln!(out, "{}", record_line(record))?;
                    }
                }
                batch_count += 1;
            }
            Err(invalid) => return end_or_corrupt(name, data, invalid, batch_count, out),
        }
    }
    writeln!(
        out,
        "End of log at byte position {} ({}).",
        data.len(),
        count_batches(batch_count)
    )?;
    Ok(())
}

/// Handles the first invalid batch: the zero-filled tail of a preallocated segment, or
/// corruption.
fn end_or_corrupt(
    name: &str,
    data: &[u8],
    invalid: InvalidBatch,
    batch_count: usize,
    out: &mut impl Write,
) -> Result<()> {
    let InvalidBatch { position, error } = invalid;
    let rest = &data[position..];
    if rest.iter().all(|&byte| byte == 0) {
        writeln!(
            out,
            "End of log at byte position {position} ({}); {} preallocated zero bytes follow.",
            count_batches(batch_count),
            rest.len()
        )?;
        return Ok(());
    }
    // A batch whose header is readable but whose CRC is wrong: show what it claims to be.
    if let BatchError::CrcMismatch { computed, .. } = error
        && let Ok(header) = BatchHeader::parse(rest)
    {
        writeln!(out, "{}", batch_line(position, &header, Some(computed)))?;
    }
    Err(anyhow!(error).context(format!(
        "segment {name}: corrupt batch at byte position {position}"
    )))
}

/// "1 batch", "2 batches".
fn count_batches(count: usize) -> String {
    if count == 1 {
        "1 batch".to_owned()
    } else {
        format!("{count} batches")
    }
}

/// One line describing a batch; `computed_crc` is set when the stored CRC is wrong.
fn batch_line(position: usize, header: &BatchHeader, computed_crc: Option<u32>) -> String {
    let compression = match header.compression() {
        Ok(compression) => compression.to_string(),
        Err(_) => format!("unknown({})", header.attributes & 0x07),
    };
    let crc = match computed_crc {
        None => format!("{:#010x} ok", header.crc),
        Some(computed) => format!("{:#010x} MISMATCH (computed {computed:#010x})", header.crc),
    };
    format!(
        "base_offset: {} last_offset: {} record_count: {} position: {position} size: {} \
         first_timestamp: {} max_timestamp: {} compression: {compression} timestamp_type: {} \
         producer_id: {} producer_epoch: {} base_sequence: {} transactional: {} control: {} \
         partition_leader_epoch: {} crc: {crc}",
        header.base_offset,
        header.last_offset(),
        header.record_count,
        header.size(),
        header.first_timestamp,
        header.max_timestamp,
        header.timestamp_type(),
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        header.is_transactional(),
        header.is_control(),
        header.partition_leader_epoch,
    )
}

/// One line describing a record; keys, values and headers are shown as escaped UTF-8.
fn record_line(record: &Record) -> String {
    let mut headers = String::new();
    for (index, (key, value)) in record.headers.iter().enumerate() {
        let separator = if index == 0 { "" } else { ", " };
        write!(
            headers,
            "{separator}{}={}",
            key.escape_debug(),
            show(value.as_ref())
        )
        .expect("writing to a String cannot fail");
    }
    format!(
        "| offset: {} timestamp: {} key: {} value: {} headers: [{headers}]",
        record.offset,
        record.timestamp,
        show(record.key.as_ref()),
        show(record.value.as_ref()),
    )
}

/// `null`, or the bytes as a quoted string: invalid UTF-8 becomes U+FFFD, control characters are
/// escaped.
fn show(bytes: Option<&Bytes>) -> String {
    match bytes {
        None => "null".to_owned(),
        Some(bytes) => format!("\"{}\"", String::from_utf8_lossy(bytes).escape_debug()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_escapes() {
        fn check(bytes: Option<&[u8]>, expected: &str) {
            assert_eq!(show(bytes.map(Bytes::copy_from_slice).as_ref()), expected);
        }
        check(None, "null");
        check(Some(b""), "\"\"");
        check(Some(b"plain"), "\"plain\"");
        check(Some(b"a\"b\n\0"), r#""a\"b\n\0""#);
        check(Some(&[0x66, 0xff, 0x6f]), "\"f\u{fffd}o\"");
    }

    #[test]
    fn record_line_lists_headers_in_order() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![
                ("b".to_owned(), Some(Bytes::from_static(b"1"))),
                ("a".to_owned(), None),
            ],
            timestamp: 17,
            offset: 4,
        };
        assert_eq!(
            record_line(&record),
            "| offset: 4 timestamp: 17 key: \"k\" value: null headers: [b=\"1\", a=null]"
        );
    }
}
