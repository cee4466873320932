//! `weir topic`: create, list, describe, reconfigure, grow and delete topics, with
//! `weir-client`'s [`Admin`](weir_client::Admin).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::{ArgGroup, Subcommand};
use serde::Serialize;
use weir_client::{NewTopic, proto as pb};

use crate::Global;
use crate::output::{self, fields, list, or_dash};

/// Arguments of `weir topic`.
#[derive(Debug, clap::Args)]
pub(crate) struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// The topic's name.
        name: String,
        /// How many partitions [default: the brokers' `num_partitions`].
        #[arg(long, value_name = "N")]
        partitions: Option<i32>,
        /// How many replicas of each partition [default: the brokers'
        /// `default_replication_factor`].
        #[arg(long, value_name = "N")]
        replication_factor: Option<i32>,
        /// A per-topic config by Kafka's name, e.g. `--config retention.ms=86400000`; repeat
        /// for more.
        #[arg(long = "config", value_name = "NAME=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// List the topics.
    List,
    /// Show a topic's partitions (leader, epochs, replicas, ISR, offline replicas) and its
    /// configs with where each value comes from.
    Describe {
        /// The topic's name.
        name: String,
    },
    /// Change a topic's configs: all of the changes or none.
    #[command(group(ArgGroup::new("change").args(["set", "delete"]).required(true).multiple(true)))]
    Alter {
        /// The topic's name.
        name: String,
        /// Set a config, e.g. `--set retention.ms=3600000`; repeat for more.
        #[arg(long, value_name = "NAME=VALUE", value_parser = parse_config)]
        set: Vec<(String, String)>,
        /// Return a config to its default, e.g. `--delete retention.ms`; repeat for more.
        #[arg(long, value_name = "NAME")]
        delete: Vec<String>,
    },
    /// Delete a topic and all its records.
    Delete {
        /// The topic's name.
        name: String,
    },
    /// Grow a topic to more partitions.
    AddPartitions {
        /// The topic's name.
        name: String,
        /// The topic's new total partition count (more than it has now).
        #[arg(long, value_name = "N")]
        count: i32,
    },
}

/// Parses `NAME=VALUE`.
fn parse_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "`{text}` is not NAME=VALUE (a topic config by Kafka's name, e.g. \
             retention.ms=86400000)"
        )),
    }
}

/// Runs `weir topic`.
pub(crate) async fn run(args: &TopicArgs, global: &Global) -> Result<()> {
    let client = global.connect().await?;
    let admin = client.admin();
    let out = global.output;
    match &args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut topic = NewTopic::new(name.clone());
            topic.partitions = *partitions;
            topic.replication_factor = *replication_factor;
            topic.configs = configs.iter().cloned().collect();
            let created = admin
                .create_topic(topic)
                .await
                .with_context(|| format!("cannot create topic {name:?}"))?;
            let created = TopicJson {
                name: created.name,
                topic_id: created.topic_id,
                partitions: created.partitions,
                replication_factor: created.replication_factor,
            };
            out.print(&created, |t| {
                format!(
                    "Created topic {} ({} partitions, replication factor {}, id {}).",
                    t.name, t.partitions, t.replication_factor, t.topic_id
                )
            })
        }
        TopicCommand::List => {
            let topics = admin
                .list_topics()
                .await
                .context("cannot list the topics")?;
            let topics = TopicsJson {
                topics: topics
                    .into_iter()
                    .map(|t| TopicJson {
                        name: t.name,
                        topic_id: t.topic_id,
                        partitions: t.partitions,
                        replication_factor: t.replication_factor,
                    })
                    .collect(),
            };
            out.print(&topics, list_text)
        }
        TopicCommand::Describe { name } => {
            let described = admin.describe_topic(name).await?;
            out.print(&DescriptionJson::from(described), describe_text)
        }
        TopicCommand::Alter { name, set, delete } => {
            let mut changes: Vec<pb::ConfigChange> = set
                .iter()
                .map(|(config, value)| pb::ConfigChange {
                    name: config.clone(),
                    operation: pb::ConfigOperation::Set as i32,
                    value: Some(value.clone()),
                })
                .collect();
            changes.extend(delete.iter().map(|config| pb::ConfigChange {
                name: config.clone(),
                operation: pb::ConfigOperation::Delete as i32,
                value: None,
            }));
            let configs = admin
                .alter_configs(name, changes)
                .await
                .with_context(|| format!("cannot change the configs of topic {name:?}"))?;
            let altered = AlteredJson {
                name: name.clone(),
                configs: configs.into_iter().map(ConfigJson::from).collect(),
            };
            out.print(&altered, |a| {
                format!(
                    "Changed the configs of topic {}; they are now:\n{}",
                    a.name,
                    configs_text(&a.configs)
                )
            })
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(name).await?;
            let deleted = DeletedJson {
                deleted: name.clone(),
            };
            out.print(&deleted, |d| format!("Deleted topic {}.", d.deleted))
        }
        TopicCommand::AddPartitions { name, count } => {
            admin
                .add_partitions(name, *count)
                .await
                .with_context(|| format!("cannot grow topic {name:?} to {count} partitions"))?;
            let grown = GrownJson {
                name: name.clone(),
                partitions: *count,
            };
            out.print(&grown, |g| {
                format!("Topic {} now has {} partitions.", g.name, g.partitions)
            })
        }
    }
}

/// A topic, briefly (`topic create`, `topic list`).
#[derive(Debug, Serialize)]
struct TopicJson {
    name: String,
    topic_id: String,
    partitions: i32,
    replication_factor: i32,
}

#[derive(Debug, Serialize)]
struct TopicsJson {
    topics: Vec<TopicJson>,
}

fn list_text(topics: &TopicsJson) -> String {
    if topics.topics.is_empty() {
        return "No topics (create one with `weir topic create NAME`).".to_string();
    }
    let mut table = output::table(
        &["name", "partitions", "replication factor", "id"],
        &["partitions", "replication factor"],
    );
    for t in &topics.topics {
        table.add_row(vec![
            t.name.clone(),
            t.partitions.to_string(),
            t.replication_factor.to_string(),
            t.topic_id.clone(),
        ]);
    }
    output::render(&table)
}

/// `topic describe`.
#[derive(Debug, Serialize)]
struct DescriptionJson {
    name: String,
    topic_id: String,
    /// The first partition's replica count (every partition has as many).
    replication_factor: usize,
    partitions: Vec<PartitionJson>,
    configs: Vec<ConfigJson>,
}

#[derive(Debug, Serialize)]
struct PartitionJson {
    partition: i32,
    /// Absent while the partition is offline.
    leader: Option<i32>,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline_replicas: Vec<i32>,
}

#[derive(Debug, Serialize)]
struct ConfigJson {
    name: String,
    value: String,
    /// "default", "broker" or "topic".
    source: &'static str,
}

impl From<pb::ConfigEntry> for ConfigJson {
    fn from(entry: pb::ConfigEntry) -> ConfigJson {
        let source = match pb::ConfigSource::try_from(entry.source) {
            Ok(pb::ConfigSource::Default) => "default",
            Ok(pb::ConfigSource::Broker) => "broker",
            Ok(pb::ConfigSource::Topic) => "topic",
            Err(_) => "unknown",
        };
        ConfigJson {
            name: entry.name,
            value: entry.value,
            source,
        }
    }
}

impl From<pb::TopicDescription> for DescriptionJson {
    fn from(topic: pb::TopicDescription) -> DescriptionJson {
        DescriptionJson {
            name: topic.name,
            topic_id: topic.topic_id,
            replication_factor: topic.partitions.first().map_or(0, |p| p.replicas.len()),
            partitions: topic
                .partitions
                .into_iter()
                .map(|p| PartitionJson {
                    partition: p.partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    replicas: p.replicas,
                    isr: p.isr,
                    offline_replicas: p.offline_replicas,
                })
                .collect(),
            configs: topic.configs.into_iter().map(ConfigJson::from).collect(),
        }
    }
}

fn describe_text(topic: &DescriptionJson) -> String {
    let mut text = fields(&[
        ("Topic", topic.name.clone()),
        ("Id", topic.topic_id.clone()),
        ("Partitions", topic.partitions.len().to_string()),
        ("Replication factor", topic.replication_factor.to_string()),
    ]);
    text.push('\n');
    let mut table = output::table(
        &[
            "partition",
            "leader",
            "leader epoch",
            "replicas",
            "isr",
            "offline",
        ],
        &["partition", "leader", "leader epoch"],
    );
    for p in &topic.partitions {
        table.add_row(vec![
            p.partition.to_string(),
            p.leader
                .map_or_else(|| "none".to_string(), |l| l.to_string()),
            p.leader_epoch.to_string(),
            list(&p.replicas),
            list(&p.isr),
            list(&p.offline_replicas),
        ]);
    }
    text.push_str(&output::render(&table));
    text.push_str("\nConfigs:\n");
    text.push_str(&configs_text(&topic.configs));
    text
}

fn configs_text(configs: &[ConfigJson]) -> String {
    // One table, sorted by name; values set on the topic first stand out by their source.
    let sorted: BTreeMap<&str, &ConfigJson> =
        configs.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut table = output::table(&["name", "value", "source"], &[]);
    for config in sorted.values() {
        table.add_row(vec![
            config.name.clone(),
            or_dash(Some(&config.value).filter(|v| !v.is_empty())),
            config.source.to_string(),
        ]);
    }
    output::render(&table)
}

/// `topic alter`: every config after the change.
#[derive(Debug, Serialize)]
struct AlteredJson {
    name: String,
    configs: Vec<ConfigJson>,
}

/// `topic delete`.
#[derive(Debug, Serialize)]
struct DeletedJson {
    deleted: String,
}

/// `topic add-partitions`.
#[derive(Debug, Serialize)]
struct GrownJson {
    name: String,
    partitions: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_name_equals_value() {
        assert_eq!(
            parse_config("retention.ms=100"),
            Ok(("retention.ms".to_string(), "100".to_string()))
        );
        // The value may hold '=' and may be empty.
        assert_eq!(
            parse_config("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_config("a="), Ok(("a".to_string(), String::new())));
        for bad in ["retention.ms", "=1", ""] {
            let err = parse_config(bad).unwrap_err();
            assert!(err.contains("is not NAME=VALUE"), "{bad}: {err}");
        }
    }
}
