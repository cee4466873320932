//! Per-topic configs by Kafka's names: which exist, and what values each accepts.
//!
//! One static table lists every per-topic config Weir knows, with its Kafka type, a one-line
//! doc and the rule its values follow. [`validate`] checks a topic's configs against it as
//! Kafka's CreateTopics and AlterConfigs do, and [`known`] lists it for DescribeConfigs.
//!
//! Invariants:
//! - A value is read as Kafka reads it: surrounding whitespace is ignored, booleans are
//!   `true`/`false` in any case, lists are comma-separated. Code that acts on a stored value
//!   reads it the same way (see [`parse_boolean`]), so a value that passed [`validate`] means
//!   what the user meant.
//! - The table is sorted by name with no name twice (a unit test checks it).

use std::collections::BTreeMap;

use crate::config::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};

/// A config's type, as Kafka's `ConfigDef` names it (and DescribeConfigs reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// `true` or `false`, in any case.
    Boolean,
    /// A 32-bit signed integer.
    Int,
    /// A 64-bit signed integer.
    Long,
    /// A 64-bit floating-point number.
    Double,
    /// One word out of a fixed set.
    String,
    /// Comma-separated words out of a fixed set.
    List,
}

/// What values a config accepts; its [`ConfigType`] follows from it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    Boolean,
    /// An `i32` in `min..=max`.
    Int {
        min: i32,
        max: i32,
    },
    /// An `i64` at least `min`.
    Long {
        min: i64,
    },
    /// A finite `f64` in `min..=max`.
    Double {
        min: f64,
        max: f64,
    },
    /// Exactly one of these words (case-sensitive, as in Kafka).
    OneOf(&'static [&'static str]),
    /// One or more of these words, comma-separated (case-sensitive, as in Kafka).
    ListOf(&'static [&'static str]),
}

/// One per-topic config Weir knows.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfigDef {
    /// Kafka's name for it (`retention.ms`).
    pub name: &'static str,
    /// Kafka's default value, which a topic without the config gets unless the broker's
    /// own defaults (`log_retention_ms`, …) say otherwise.
    pub default: &'static str,
    /// A one-line description.
    pub doc: &'static str,
    /// What a valid value is, as the end of a sentence ("must be …"); error messages and
    /// DescribeConfigs' documentation use it.
    pub valid_values: &'static str,
    rule: Rule,
}

impl TopicConfigDef {
    /// The config's Kafka type.
    pub fn config_type(&self) -> ConfigType {
        match self.rule {
            Rule::Boolean => ConfigType::Boolean,
            Rule::Int { .. } => ConfigType::Int,
            Rule::Long { .. } => ConfigType::Long,
            Rule::Double { .. } => ConfigType::Double,
            Rule::OneOf(_) => ConfigType::String,
            Rule::ListOf(_) => ConfigType::List,
        }
    }

    /// Checks one value of this config.
    pub fn check(&self, value: &str) -> Result<(), TopicConfigError> {
        if self.accepts(value.trim()) {
            return Ok(());
        }
        Err(TopicConfigError::InvalidValue {
            name: self.name,
            value: value.to_string(),
            valid_values: self.valid_values,
        })
    }

    fn accepts(&self, value: &str) -> bool {
        match self.rule {
            Rule::Boolean => parse_boolean(value).is_some(),
            Rule::Int { min, max } => value.parse::<i32>().is_ok_and(|n| (min..=max).contains(&n)),
            Rule::Long { min } => value.parse::<i64>().is_ok_and(|n| n >= min),
            // `contains` is false for NaN, which Kafka's range check would let through.
            Rule::Double { min, max } => {
                value.parse::<f64>().is_ok_and(|n| (min..=max).contains(&n))
            }
            Rule::OneOf(words) => words.contains(&value),
            Rule::ListOf(words) => {
                !value.is_empty() && value.split(',').all(|item| words.contains(&item.trim()))
            }
        }
    }
}

/// Why a topic's configs are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// A name that is not a per-topic config Weir knows.
    #[error(
        "unknown topic config {name:?}: it is not a topic config Weir knows{}",
        did_you_mean(.near)
    )]
    UnknownName {
        /// The name as given.
        name: String,
        /// Known names close to it (a typo, `_` for `.`, a broker-level `log.` prefix).
        near: Vec<&'static str>,
    },
    /// A value that does not parse as the config's type or is out of its range.
    #[error("invalid topic config {name} = {value:?}: must be {valid_values}")]
    InvalidValue {
        /// The config.
        name: &'static str,
        /// The value as given.
        value: String,
        /// What it must be instead.
        valid_values: &'static str,
    },
    /// `min.compaction.lag.ms` above `max.compaction.lag.ms`: no record could ever be
    /// compacted on time. Kafka refuses it too.
    #[error(
        "invalid topic configs: min.compaction.lag.ms = {min} is above max.compaction.lag.ms = \
         {max}; the minimum lag must not exceed the maximum"
    )]
    CompactionLagConflict {
        /// `min.compaction.lag.ms`.
        min: i64,
        /// `max.compaction.lag.ms`.
        max: i64,
    },
}

fn did_you_mean(near: &[&str]) -> String {
    match near {
        [] => String::new(),
        [one] => format!(" (did you mean {one}?)"),
        [rest @ .., last] => format!(" (did you mean {} or {last}?)", rest.join(", ")),
    }
}

const MS_AT_LEAST_0: &str = "a whole number of milliseconds, at least 0";
const MS_AT_LEAST_1: &str = "a whole number of milliseconds, at least 1";
const BOOLEAN: &str = "true or false";

/// Every per-topic config Weir knows, sorted by name.
static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        default: "delete",
        doc: "What happens to old segments: delete them, compact them to the last record of each key, or both.",
        valid_values: "delete, compact, or both comma-separated (\"compact,delete\")",
        rule: Rule::ListOf(&["delete", "compact"]),
    },
    TopicConfigDef {
        name: "compression.type",
        default: "producer",
        doc: "The compression batches are stored with; producer keeps each batch as the producer sent it.",
        valid_values: "one of uncompressed, zstd, lz4, snappy, gzip or producer",
        rule: Rule::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        default: "86400000",
        doc: "How long a compacted topic keeps delete markers (tombstones) for consumers to see them.",
        valid_values: MS_AT_LEAST_0,
        rule: Rule::Long { min: 0 },
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        default: "60000",
        doc: "How long a segment removed from the log waits before its files are deleted.",
        valid_values: MS_AT_LEAST_0,
        rule: Rule::Long { min: 0 },
    },
    TopicConfigDef {
        name: "flush.messages",
        default: "9223372036854775807",
        doc: "Flush (fsync) a partition's log after this many records.",
        valid_values: "a whole number of records, at least 1",
        rule: Rule::Long { min: 1 },
    },
    TopicConfigDef {
        name: "flush.ms",
        default: "9223372036854775807",
        doc: "Flush (fsync) a partition's log when its oldest unflushed write is this old.",
        valid_values: MS_AT_LEAST_0,
        rule: Rule::Long { min: 0 },
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        default: "4096",
        doc: "Bytes of log between two entries of the offset and time indexes.",
        valid_values: "a whole number of bytes from 0 to 2147483647",
        rule: Rule::Int {
            min: 0,
            max: i32::MAX,
        },
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        default: "9223372036854775807",
        doc: "The longest a record may wait before compaction reaches it.",
        valid_values: MS_AT_LEAST_1,
        rule: Rule::Long { min: 1 },
    },
    TopicConfigDef {
        name: "max.message.bytes",
        default: "1048588",
        doc: "The largest record batch the topic accepts, after compression.",
        valid_values: "a whole number of bytes from 0 to 2147483647",
        rule: Rule::Int {
            min: 0,
            max: i32::MAX,
        },
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        default: "9223372036854775807",
        doc: "How far ahead of the broker's clock a CreateTime timestamp may be.",
        valid_values: MS_AT_LEAST_0,
        rule: Rule::Long { min: 0 },
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        default: "9223372036854775807",
        doc: "How far behind the broker's clock a CreateTime timestamp may be.",
        valid_values: MS_AT_LEAST_0,
        rule: Rule::Long { min: 0 },
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        default: "CreateTime",
        doc: "Whether record timestamps are the producer's (CreateTime) or the broker's at append (LogAppendTime).",
        valid_values: "CreateTime or LogAppendTime",
        rule: Rule::OneOf(&["CreateTime", "LogAppendTime"]),
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        doc: "The share of a log not yet compacted at which compaction starts.",
        valid_values: "a number from 0 to 1",
        rule: Rule::Double { min: 0.0, max: 1.0 },
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        default: "0",
        doc: "The shortest a record stays uncompacted.",
        valid_values: MS_AT_LEAST_0,
        rule: Rule::Long { min: 0 },
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        default: "1",
        doc: "The fewest in-sync replicas with which a write with acks=all succeeds.",
        valid_values: "a whole number of replicas, at least 1",
        rule: Rule::Int {
            min: 1,
            max: i32::MAX,
        },
    },
    TopicConfigDef {
        name: "preallocate",
        default: "false",
        doc: "Whether segment files are preallocated when they are created.",
        valid_values: BOOLEAN,
        rule: Rule::Boolean,
    },
    TopicConfigDef {
        name: "retention.bytes",
        default: "-1",
        doc: "Delete a partition's oldest segments while its log is larger than this.",
        valid_values: "a whole number of bytes, -1 for no limit",
        rule: Rule::Long { min: -1 },
    },
    TopicConfigDef {
        name: "retention.ms",
        default: "604800000",
        doc: "Delete segments whose newest record is older than this.",
        valid_values: "a whole number of milliseconds, -1 for no limit",
        rule: Rule::Long { min: -1 },
    },
    TopicConfigDef {
        name: "segment.bytes",
        default: "1073741824",
        doc: "The size of a segment file: the log rolls a new segment when the next batch does not fit.",
        valid_values: "a whole number of bytes from 1024 to 2147483647",
        // Weir's storage limits, not Kafka's (14): a segment must hold a batch header, and
        // positions inside it are 32-bit.
        rule: Rule::Int {
            min: SEGMENT_BYTES_MIN as i32,
            max: SEGMENT_BYTES_MAX as i32,
        },
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        default: "10485760",
        doc: "The size of each index file of a segment; a full index rolls the segment.",
        valid_values: "a whole number of bytes from 64 to 2147483647",
        rule: Rule::Int {
            min: 64,
            max: i32::MAX,
        },
    },
    TopicConfigDef {
        name: "segment.ms",
        default: "604800000",
        doc: "The age at which the active segment is rolled even if it is not full.",
        valid_values: MS_AT_LEAST_1,
        rule: Rule::Long { min: 1 },
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        default: "false",
        doc: "Whether an out-of-sync replica may lead when no in-sync replica is live, losing records.",
        valid_values: BOOLEAN,
        rule: Rule::Boolean,
    },
];

/// Every per-topic config Weir knows, sorted by name.
pub fn known() -> impl Iterator<Item = &'static TopicConfigDef> {
    TOPIC_CONFIGS.iter()
}

/// The per-topic config named `name`, if Weir knows it.
pub fn lookup(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// The per-topic config named `name`, or an error that suggests the names meant.
pub fn definition(name: &str) -> Result<&'static TopicConfigDef, TopicConfigError> {
    lookup(name).ok_or_else(|| TopicConfigError::UnknownName {
        name: name.to_string(),
        near: near_names(name),
    })
}

/// Reads a boolean config value as Kafka does: `true` or `false` in any case, surrounding
/// whitespace ignored. `None` for anything else.
pub fn parse_boolean(value: &str) -> Option<bool> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Checks a topic's configs as Kafka's CreateTopics and AlterConfigs do: every name must be a
/// per-topic config Weir knows and every value valid for it. Refuses with the first problem,
/// in name order.
pub fn validate(configs: &BTreeMap<String, String>) -> Result<(), TopicConfigError> {
    for (name, value) in configs {
        definition(name)?.check(value)?;
    }
    let long = |name: &str| configs.get(name).and_then(|v| v.trim().parse::<i64>().ok());
    if let (Some(min), Some(max)) = (long("min.compaction.lag.ms"), long("max.compaction.lag.ms"))
        && min > max
    {
        return Err(TopicConfigError::CompactionLagConflict { min, max });
    }
    Ok(())
}

/// Names longer than this get no suggestions: the edit distance costs their length times each
/// known name's.
const NEAR_NAME_CHARS_MAX: usize = 64;

/// Known names that `name` may have meant: the same once `_` or `-` become `.` and a
/// broker-level `log.` prefix is dropped, or at most two edits away.
fn near_names(name: &str) -> Vec<&'static str> {
    if name.len() > NEAR_NAME_CHARS_MAX {
        return Vec::new();
    }
    let normalized = name.to_ascii_lowercase().replace(['_', '-'], ".");
    let normalized = normalized.strip_prefix("log.").unwrap_or(&normalized);
    known()
        .map(|def| def.name)
        .filter(|known| *known == normalized || edit_distance(name, known) <= 2)
        .collect()
}

/// The Levenshtein distance between `a` and `b`, by bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typical valid value for every known config.
    const TYPICAL: &[(&str, &str)] = &[
        ("cleanup.policy", "compact"),
        ("compression.type", "zstd"),
        ("delete.retention.ms", "86400000"),
        ("file.delete.delay.ms", "60000"),
        ("flush.messages", "10000"),
        ("flush.ms", "1000"),
        ("index.interval.bytes", "4096"),
        ("max.compaction.lag.ms", "604800000"),
        ("max.message.bytes", "1048588"),
        ("message.timestamp.after.max.ms", "3600000"),
        ("message.timestamp.before.max.ms", "86400000"),
        ("message.timestamp.type", "LogAppendTime"),
        ("min.cleanable.dirty.ratio", "0.5"),
        ("min.compaction.lag.ms", "0"),
        ("min.insync.replicas", "2"),
        ("preallocate", "true"),
        ("retention.bytes", "-1"),
        ("retention.ms", "604800000"),
        ("segment.bytes", "1073741824"),
        ("segment.index.bytes", "10485760"),
        ("segment.ms", "3600000"),
        ("unclean.leader.election.enable", "false"),
    ];

    fn configs(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Validates `entries` and compares the outcome's message (`""` for accepted).
    fn check(entries: &[(&str, &str)], expected: &str) {
        let message = validate(&configs(entries)).err().map(|e| e.to_string());
        assert_eq!(message.as_deref().unwrap_or(""), expected, "{entries:?}");
    }

    #[test]
    fn the_table_is_sorted_unique_and_documented() {
        let names: Vec<&str> = known().map(|d| d.name).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        for def in known() {
            assert!(def.doc.ends_with('.'), "{}", def.name);
            assert!(!def.valid_values.is_empty(), "{}", def.name);
            assert_eq!(def.check(def.default), Ok(()), "{}'s default", def.name);
        }
        let typical: Vec<&str> = TYPICAL.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            typical, names,
            "every known config has a typical value below"
        );
    }

    #[test]
    fn every_known_config_accepts_a_typical_value() {
        for (name, value) in TYPICAL {
            check(&[(name, value)], "");
        }
        check(TYPICAL, "");
    }

    #[test]
    fn numbers_are_refused_just_outside_their_range() {
        for def in known() {
            // Longs have no maximum below i64::MAX.
            let (min, above_max) = match def.rule {
                Rule::Int { min, max } => (i64::from(min), Some(i64::from(max) + 1)),
                Rule::Long { min } => (min, None),
                _ => continue,
            };
            check(&[(def.name, &min.to_string())], "");
            let below = (min - 1).to_string();
            let refused = format!(
                "invalid topic config {} = {below:?}: must be {}",
                def.name, def.valid_values
            );
            check(&[(def.name, &below)], &refused);
            if let Some(above) = above_max.map(|n| n.to_string()) {
                assert!(
                    validate(&configs(&[(def.name, &above)])).is_err(),
                    "{}",
                    def.name
                );
            }
        }
    }

    #[test]
    fn bad_values_are_refused_naming_key_value_and_rule() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "retention.ms",
                "abc",
                "invalid topic config retention.ms = \"abc\": must be a whole number of \
                 milliseconds, -1 for no limit",
            ),
            (
                "segment.bytes",
                "100",
                "invalid topic config segment.bytes = \"100\": must be a whole number of bytes \
                 from 1024 to 2147483647",
            ),
            (
                "segment.bytes",
                "2147483648",
                "invalid topic config segment.bytes = \"2147483648\": must be a whole number of \
                 bytes from 1024 to 2147483647",
            ),
            (
                "min.insync.replicas",
                "1.5",
                "invalid topic config min.insync.replicas = \"1.5\": must be a whole number of \
                 replicas, at least 1",
            ),
            (
                "unclean.leader.election.enable",
                "yes",
                "invalid topic config unclean.leader.election.enable = \"yes\": must be true or \
                 false",
            ),
            (
                "cleanup.policy",
                "compact,remove",
                "invalid topic config cleanup.policy = \"compact,remove\": must be delete, \
                 compact, or both comma-separated (\"compact,delete\")",
            ),
            (
                "compression.type",
                "ZSTD",
                "invalid topic config compression.type = \"ZSTD\": must be one of uncompressed, \
                 zstd, lz4, snappy, gzip or producer",
            ),
            (
                "message.timestamp.type",
                "createtime",
                "invalid topic config message.timestamp.type = \"createtime\": must be \
                 CreateTime or LogAppendTime",
            ),
            (
                "min.cleanable.dirty.ratio",
                "1.01",
                "invalid topic config min.cleanable.dirty.ratio = \"1.01\": must be a number \
                 from 0 to 1",
            ),
        ];
        for (name, value, expected) in cases {
            check(&[(name, value)], expected);
        }
        for odd in ["NaN", "-0.1", "inf", ""] {
            assert!(
                validate(&configs(&[("min.cleanable.dirty.ratio", odd)])).is_err(),
                "{odd:?}"
            );
        }
    }

    #[test]
    fn values_are_read_as_kafka_reads_them() {
        check(&[("unclean.leader.election.enable", "TRUE")], "");
        check(&[("preallocate", " False ")], "");
        check(&[("retention.ms", " 1000 ")], "");
        check(&[("min.cleanable.dirty.ratio", "1")], "");
        check(&[("min.cleanable.dirty.ratio", "0.0")], "");
        for policy in [
            "delete",
            "compact",
            "delete,compact",
            "compact,delete",
            "compact, delete",
        ] {
            check(&[("cleanup.policy", policy)], "");
        }
        for policy in ["", ",", "compact,", "Delete"] {
            assert!(
                validate(&configs(&[("cleanup.policy", policy)])).is_err(),
                "{policy:?}"
            );
        }
        assert_eq!(parse_boolean(" tRuE"), Some(true));
        assert_eq!(parse_boolean("FALSE"), Some(false));
        assert_eq!(parse_boolean("1"), None);
    }

    #[test]
    fn unknown_names_are_refused_with_near_names() {
        check(
            &[("retention_ms", "1000")],
            "unknown topic config \"retention_ms\": it is not a topic config Weir knows (did you \
             mean retention.ms?)",
        );
        check(
            &[("log.retention.bytes", "1000")],
            "unknown topic config \"log.retention.bytes\": it is not a topic config Weir knows \
             (did you mean retention.bytes?)",
        );
        check(
            &[("mac.compaction.lag.ms", "1")],
            "unknown topic config \"mac.compaction.lag.ms\": it is not a topic config Weir \
             knows (did you mean max.compaction.lag.ms or min.compaction.lag.ms?)",
        );
        check(
            &[("color", "blue")],
            "unknown topic config \"color\": it is not a topic config Weir knows",
        );
        let long = "x".repeat(10_000);
        check(
            &[(&long, "1")],
            &format!("unknown topic config {long:?}: it is not a topic config Weir knows"),
        );
    }

    #[test]
    fn compaction_lags_must_not_conflict() {
        check(
            &[
                ("min.compaction.lag.ms", "5"),
                ("max.compaction.lag.ms", "3"),
            ],
            "invalid topic configs: min.compaction.lag.ms = 5 is above max.compaction.lag.ms = \
             3; the minimum lag must not exceed the maximum",
        );
        check(
            &[
                ("min.compaction.lag.ms", "3"),
                ("max.compaction.lag.ms", "3"),
            ],
            "",
        );
    }

    #[test]
    fn types_follow_from_the_rules() {
        let type_of = |name| lookup(name).map(TopicConfigDef::config_type);
        assert_eq!(type_of("cleanup.policy"), Some(ConfigType::List));
        assert_eq!(type_of("compression.type"), Some(ConfigType::String));
        assert_eq!(type_of("preallocate"), Some(ConfigType::Boolean));
        assert_eq!(type_of("segment.bytes"), Some(ConfigType::Int));
        assert_eq!(type_of("retention.ms"), Some(ConfigType::Long));
        assert_eq!(
            type_of("min.cleanable.dirty.ratio"),
            Some(ConfigType::Double)
        );
        assert_eq!(type_of("retention_ms"), None);
    }
}
