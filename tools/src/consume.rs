//! `weir consume TOPIC`: records to standard output, one per line, through a template.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use weir_client::{
    AutoOffsetReset, Client, Consumer, ConsumerConfig, ConsumerRecord, SeekTo, TopicPartition,
};

use crate::args::parse_time;

/// Print a topic's records, one per line.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    topic: String,
    /// Start at each partition's first record (default: only records produced from now on,
    /// or a group's committed offsets).
    #[arg(long, conflicts_with_all = ["offset", "from_time"])]
    from_beginning: bool,
    /// Start at this offset (of `--partition`, or of every partition).
    #[arg(long, conflicts_with_all = ["from_time", "group"])]
    offset: Option<i64>,
    /// Start at the first record at or after this time: a UTC date and time
    /// (2026-12-07T10:00:00Z) or milliseconds since the Unix epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "group")]
    from_time: Option<i64>,
    /// Read only this partition.
    #[arg(long, conflicts_with = "group")]
    partition: Option<i32>,
    /// Consume as a member of this group: the group splits the partitions between its
    /// members and the consumer commits what it printed. It starts at the group's committed
    /// offsets; where it has none, at the end (or with `--from-beginning`, the beginning).
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop when no record arrives for this many milliseconds.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// How to print each record. Placeholders: {topic} {partition} {offset} {timestamp}
    /// {key} {value} {headers}; `\t` and `\n` are a tab and a newline. A null key or value
    /// prints as `null`.
    #[arg(long, default_value = "{value}")]
    format: String,
}

/// Prints records until `--max-messages`, `--timeout-ms` or Ctrl-C.
pub(crate) async fn run(args: &ConsumeArgs, client: &Client, json: bool) -> anyhow::Result<()> {
    let partitions = client.partition_count(&args.topic).await?;
    if let Some(partition) = args.partition
        && usize::try_from(partition).map_or(true, |p| p >= partitions)
    {
        anyhow::bail!(
            "topic {:?} has {partitions} partitions: partition {partition} does not exist",
            args.topic
        );
    }
    let start = if args.from_beginning {
        Some(SeekTo::Beginning)
    } else if let Some(offset) = args.offset {
        Some(SeekTo::Offset(offset))
    } else {
        args.from_time.map(SeekTo::Timestamp)
    };
    let config = ConsumerConfig {
        group: args.group.clone(),
        // Where a group without committed offsets starts.
        auto_offset_reset: if args.from_beginning {
            AutoOffsetReset::Earliest
        } else {
            AutoOffsetReset::Latest
        },
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, config)?;
    match &args.group {
        Some(_) => consumer.subscribe(&[args.topic.as_str()]).await?,
        None => {
            let wanted: Vec<TopicPartition> = match args.partition {
                Some(p) => vec![TopicPartition::new(&args.topic, p)],
                None => (0..partitions)
                    .map(|p| TopicPartition::new(&args.topic, i32::try_from(p).expect("few")))
                    .collect(),
            };
            consumer.assign(wanted.clone())?;
            for tp in &wanted {
                consumer.seek(tp, start.unwrap_or(SeekTo::End)).await?;
            }
        }
    }
    let template = Template::parse(&args.format);
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    let result = loop {
        if args.max_messages.is_some_and(|max| printed >= max) {
            break Ok(());
        }
        let next = async {
            match args.timeout_ms {
                Some(ms) => tokio::time::timeout(Duration::from_millis(ms), consumer.recv())
                    .await
                    .ok(),
                None => Some(consumer.recv().await),
            }
        };
        let record = tokio::select! {
            next = next => match next {
                Some(record) => record?,
                // Nothing for `--timeout-ms`.
                None => break Ok(()),
            },
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let line = if json {
            to_json(&record).to_string()
        } else {
            template.render(&record)
        };
        let mut out = stdout.lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            break Err(anyhow::Error::new(e).context("cannot write to standard output"));
        }
        printed += 1;
    };
    consumer
        .close()
        .await
        .context("could not commit and leave the group")?;
    eprintln!("consumed {printed} records");
    result
}

/// A `--format` template, split into text and placeholders.
#[derive(Debug, PartialEq, Eq)]
struct Template(Vec<Part>);

#[derive(Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Value,
    Headers,
}

impl Template {
    fn parse(format: &str) -> Template {
        let format = format.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = format.as_str();
        let mut text = String::new();
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let after = &rest[open..];
            let placeholder = [
                ("{topic}", Part::Topic),
                ("{partition}", Part::Partition),
                ("{offset}", Part::Offset),
                ("{timestamp}", Part::Timestamp),
                ("{key}", Part::Key),
                ("{value}", Part::Value),
                ("{headers}", Part::Headers),
            ]
            .into_iter()
            .find(|(name, _)| after.starts_with(name));
            match placeholder {
                Some((name, part)) => {
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(part);
                    rest = &after[name.len()..];
                }
                // Not a placeholder: a literal brace.
                None => {
                    text.push('{');
                    rest = &after[1..];
                }
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Template(parts)
    }

    fn render(&self, record: &ConsumerRecord) -> String {
        let mut line = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => line.push_str(text),
                Part::Topic => line.push_str(&record.topic),
                Part::Partition => line.push_str(&record.partition.to_string()),
                Part::Offset => line.push_str(&record.offset.to_string()),
                Part::Timestamp => line.push_str(&record.timestamp_ms.to_string()),
                Part::Key => line.push_str(&text_of(record.key.as_ref())),
                Part::Value => line.push_str(&text_of(record.value.as_ref())),
                Part::Headers => {
                    let headers: Vec<String> = record
                        .headers
                        .iter()
                        .map(|(name, value)| format!("{name}={}", text_of(value.as_ref())))
                        .collect();
                    line.push_str(&headers.join(","));
                }
            }
        }
        line
    }
}

/// Bytes as text (invalid UTF-8 replaced), or `null`.
fn text_of(bytes: Option<&Bytes>) -> String {
    match bytes {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => "null".to_string(),
    }
}

fn to_json(record: &ConsumerRecord) -> serde_json::Value {
    let text = |bytes: Option<&Bytes>| {
        bytes.map(|b| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
    };
    let headers: Vec<serde_json::Value> = record
        .headers
        .iter()
        .map(|(name, value)| serde_json::json!({"key": name, "value": text(value.as_ref())}))
        .collect();
    serde_json::json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "key": text(record.key.as_ref()),
        "value": text(record.value.as_ref()),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_placeholders_and_keep_other_braces() {
        let template = Template::parse("{partition}:{offset}\\t{key}={value} {x} [{headers}]");
        let record = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 41,
            key: None,
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![
                ("h".into(), Some(Bytes::from_static(b"1"))),
                ("n".into(), None),
            ],
            timestamp_ms: 7,
        };
        assert_eq!(
            template.render(&record),
            "2:41\tnull=hello {x} [h=1,n=null]"
        );
        assert_eq!(Template::parse("{value}").render(&record), "hello");
    }
}
