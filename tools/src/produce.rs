//! `weir produce TOPIC`: one record per line of standard input.

use std::collections::BTreeMap;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use weir_client::{Client, Producer, ProducerConfig, ProducerRecord};

use crate::args::{AcksArg, CompressionArg};

/// Produce one record per line of standard input.
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    topic: String,
    /// Split each line at the first SEP into the record's key and value (a line without SEP
    /// is an error).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header for every record, `name=value`; repeat for more.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Send every record to this partition (else keyed records go by their key's hash and
    /// the others are spread).
    #[arg(long)]
    partition: Option<i32>,
    /// Which replicas acknowledge each record.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// How the batches are compressed.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// Sends the lines of standard input; prints how many records went to which partitions.
pub(crate) async fn run(args: &ProduceArgs, client: &Client, json: bool) -> anyhow::Result<()> {
    let config = ProducerConfig {
        acks: args.acks.acks(),
        // An idempotent producer needs acks from every in-sync replica.
        idempotence: args.acks == AcksArg::All,
        compression: args.compression.codec(),
        ..ProducerConfig::default()
    };
    // Fail early, before reading standard input, on an unknown topic.
    client.partition_count(&args.topic).await?;
    let producer = Producer::new(client, config)?;
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), Some(Bytes::from(value.clone()))))
        .collect();
    let mut deliveries = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut number = 0u64;
    while let Some(line) = lines
        .next_line()
        .await
        .context("cannot read standard input")?
    {
        number += 1;
        let (key, value) = match &args.key_separator {
            Some(separator) => {
                let (key, value) = line.split_once(separator.as_str()).with_context(|| {
                    format!("line {number} has no key separator {separator:?}: {line:?}")
                })?;
                (Some(Bytes::from(key.to_string())), value.to_string())
            }
            None => (None, line),
        };
        let mut record = ProducerRecord::new(&args.topic).value(Bytes::from(value));
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        for (name, value) in &headers {
            record = record.header(name.clone(), value.clone());
        }
        deliveries.push(producer.send(record).await?);
    }
    producer.flush().await?;
    let mut per_partition: BTreeMap<i32, u64> = BTreeMap::new();
    let mut offsets = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let delivered = delivery.await?;
        *per_partition.entry(delivered.partition).or_default() += 1;
        offsets.push((delivered.partition, delivered.offset));
    }
    producer.close().await?;
    if json {
        let records: Vec<serde_json::Value> = offsets
            .iter()
            .map(
                |(partition, offset)| serde_json::json!({"partition": partition, "offset": offset}),
            )
            .collect();
        println!(
            "{}",
            serde_json::json!({"topic": args.topic, "records": records})
        );
    } else {
        let spread: Vec<String> = per_partition
            .iter()
            .map(|(partition, count)| format!("{count} to partition {partition}"))
            .collect();
        println!(
            "produced {} records to {}{}",
            offsets.len(),
            args.topic,
            if spread.is_empty() {
                String::new()
            } else {
                format!(" ({})", spread.join(", "))
            }
        );
    }
    Ok(())
}
