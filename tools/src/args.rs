//! Arguments several commands share: acks, compression, and points in time.

use clap::ValueEnum;
use weir_proto::batch::Compression;

/// `--acks`: which replicas acknowledge a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AcksArg {
    /// Every in-sync replica.
    All,
    /// The leader only.
    #[value(name = "1")]
    Leader,
    /// No acknowledgement.
    #[value(name = "0")]
    None,
}

impl AcksArg {
    /// The client's setting.
    pub(crate) fn acks(self) -> weir_client::Acks {
        match self {
            AcksArg::All => weir_client::Acks::All,
            AcksArg::Leader => weir_client::Acks::Leader,
            AcksArg::None => weir_client::Acks::None,
        }
    }
}

/// `--compression`: how a producer compresses its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionArg {
    /// Kafka's name for the codec (`compression.type`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            CompressionArg::None => "none",
            CompressionArg::Gzip => "gzip",
            CompressionArg::Snappy => "snappy",
            CompressionArg::Lz4 => "lz4",
            CompressionArg::Zstd => "zstd",
        }
    }

    /// The batch codec.
    pub(crate) fn codec(self) -> Compression {
        match self {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// A point in time as milliseconds since the Unix epoch: an RFC 3339 date and time
/// (`2026-12-07T10:00:00Z`, `2026-12-07T11:00:00+01:00`), one without an offset (taken as
/// UTC), or a number of milliseconds.
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(time.and_utc().timestamp_millis());
    }
    Err(format!(
        "`{text}` is not a date and time: use RFC 3339, e.g. 2026-12-07T10:00:00Z or \
         2026-12-07T11:00:00+01:00, or milliseconds since the Unix epoch"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_utc_without_an_offset_or_milliseconds() {
        // 2026-12-07T10:00:00Z
        let ten = 1_796_637_600_000;
        assert_eq!(parse_time("2026-12-07T10:00:00Z"), Ok(ten));
        assert_eq!(parse_time("2026-12-07T11:00:00+01:00"), Ok(ten));
        assert_eq!(parse_time("2026-12-07T10:00:00"), Ok(ten));
        assert_eq!(parse_time("2026-12-07T10:00:00.250Z"), Ok(ten + 250));
        assert_eq!(parse_time("1796637600000"), Ok(ten));
        for bad in ["yesterday", "2026-12-07", "2026-13-07T10:00:00Z", ""] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains("is not a date and time"), "{bad}: {err}");
        }
    }
}
