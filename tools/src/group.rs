//! `weir group`: list, describe (members, assignments, committed offsets and lag), reset the
//! offsets of, and delete consumer groups, with `weir-client`'s [`Admin`](weir_client::Admin).

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Subcommand};
use serde::Serialize;
use weir_client::{ResetTarget, proto as pb};

use crate::Global;
use crate::output::{self, fields, list};

/// Arguments of `weir group`.
#[derive(Debug, clap::Args)]
pub(crate) struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List the consumer groups of the whole cluster.
    List,
    /// Show a group's state, members with their assignments, and per partition the committed
    /// offset, the high watermark and the lag.
    Describe {
        /// The group's id.
        group: String,
    },
    /// Move a group's committed offsets of one topic (the group must have no members).
    ResetOffsets(ResetArgs),
    /// Delete a group that has no members, with its committed offsets.
    Delete {
        /// The group's id.
        group: String,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_datetime", "shift_by"])))]
struct ResetArgs {
    /// The group's id.
    group: String,
    /// The topic whose offsets move.
    #[arg(long)]
    topic: String,
    /// Only these partitions, comma-separated [default: all of the topic's].
    #[arg(long, value_name = "P,P,...", value_delimiter = ',')]
    partitions: Vec<i32>,
    /// To each partition's log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's high watermark (the end).
    #[arg(long)]
    to_latest: bool,
    /// To the first record at or after a time, RFC 3339 (e.g. 2026-12-07T10:00:00Z); a
    /// partition with no such record goes to its end.
    #[arg(long, value_name = "DATETIME", value_parser = crate::args::parse_time)]
    to_datetime: Option<i64>,
    /// By this many records from the committed offset (negative: back), within the log.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Only print where the offsets would go; commit nothing.
    #[arg(long)]
    dry_run: bool,
}

impl ResetArgs {
    fn target(&self) -> ResetTarget {
        if self.to_earliest {
            ResetTarget::Earliest
        } else if self.to_latest {
            ResetTarget::Latest
        } else if let Some(ms) = self.to_datetime {
            ResetTarget::Timestamp(ms)
        } else if let Some(n) = self.shift_by {
            ResetTarget::ShiftBy(n)
        } else {
            unreachable!("clap requires one target")
        }
    }
}

/// Runs `weir group`.
pub(crate) async fn run(args: &GroupArgs, global: &Global) -> Result<()> {
    let client = global.connect().await?;
    let admin = client.admin();
    let out = global.output;
    match &args.command {
        GroupCommand::List => {
            let groups = admin
                .list_groups()
                .await
                .context("cannot list the groups")?;
            let groups = GroupsJson {
                groups: groups
                    .into_iter()
                    .map(|g| GroupListingJson {
                        group: g.group,
                        state: state_name(g.state),
                        protocol_type: g.protocol_type,
                    })
                    .collect(),
            };
            out.print(&groups, list_text)
        }
        GroupCommand::Describe { group } => {
            let described = admin
                .describe_group(group)
                .await
                .with_context(|| format!("cannot describe group {group:?}"))?;
            if described.state == pb::GroupState::Dead as i32 {
                bail!(
                    "group {group:?} does not exist: it has no members and no committed \
                     offsets (`weir group list` shows the groups)"
                );
            }
            out.print(&DescriptionJson::from(described), describe_text)
        }
        GroupCommand::ResetOffsets(reset) => {
            let plan = admin
                .reset_offsets(
                    &reset.group,
                    &reset.topic,
                    reset.partitions.clone(),
                    reset.target(),
                    reset.dry_run,
                )
                .await
                .with_context(|| {
                    format!(
                        "cannot reset the offsets of group {:?} on topic {:?}",
                        reset.group, reset.topic
                    )
                })?;
            let plan = ResetJson {
                group: reset.group.clone(),
                topic: reset.topic.clone(),
                dry_run: reset.dry_run,
                partitions: plan
                    .into_iter()
                    .map(|p| ResetPartitionJson {
                        partition: p.partition,
                        current_offset: (p.current_offset >= 0).then_some(p.current_offset),
                        new_offset: p.new_offset,
                    })
                    .collect(),
            };
            out.print(&plan, reset_text)
        }
        GroupCommand::Delete { group } => {
            admin
                .delete_group(group)
                .await
                .with_context(|| format!("cannot delete group {group:?}"))?;
            let deleted = DeletedJson {
                deleted: group.clone(),
            };
            out.print(&deleted, |d| format!("Deleted group {}.", d.deleted))
        }
    }
}

/// Kafka's name of a group state.
fn state_name(state: i32) -> &'static str {
    match pb::GroupState::try_from(state) {
        Ok(pb::GroupState::Empty) => "Empty",
        Ok(pb::GroupState::PreparingRebalance) => "PreparingRebalance",
        Ok(pb::GroupState::CompletingRebalance) => "CompletingRebalance",
        Ok(pb::GroupState::Stable) => "Stable",
        Ok(pb::GroupState::Dead) => "Dead",
        Ok(pb::GroupState::Assigning) => "Assigning",
        Ok(pb::GroupState::Reconciling) => "Reconciling",
        Ok(pb::GroupState::Unknown) | Err(_) => "Unknown",
    }
}

/// `group list`.
#[derive(Debug, Serialize)]
struct GroupsJson {
    groups: Vec<GroupListingJson>,
}

#[derive(Debug, Serialize)]
struct GroupListingJson {
    group: String,
    state: &'static str,
    /// "consumer" for Kafka consumers; empty for a group that only keeps offsets.
    protocol_type: String,
}

fn list_text(groups: &GroupsJson) -> String {
    if groups.groups.is_empty() {
        return "No consumer groups.".to_string();
    }
    let mut table = output::table(&["group", "state", "protocol type"], &[]);
    for g in &groups.groups {
        table.add_row(vec![
            g.group.clone(),
            g.state.to_string(),
            dash_if_empty(&g.protocol_type),
        ]);
    }
    output::render(&table)
}

fn dash_if_empty(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// `group describe`.
#[derive(Debug, Serialize)]
struct DescriptionJson {
    group: String,
    state: &'static str,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberJson>,
    offsets: Vec<OffsetJson>,
    /// The sum of the partitions' lags that are known.
    total_lag: i64,
}

#[derive(Debug, Serialize)]
struct MemberJson {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    assignment: Vec<PartitionJson>,
}

#[derive(Debug, Serialize)]
struct PartitionJson {
    topic: String,
    partition: i32,
}

#[derive(Debug, Serialize)]
struct OffsetJson {
    topic: String,
    partition: i32,
    committed_offset: i64,
    /// Absent when unknown (`error` says why).
    high_watermark: Option<i64>,
    /// Absent when unknown.
    lag: Option<i64>,
    metadata: Option<String>,
    error: Option<String>,
}

impl From<pb::GroupDescription> for DescriptionJson {
    fn from(group: pb::GroupDescription) -> DescriptionJson {
        let offsets: Vec<OffsetJson> = group
            .offsets
            .into_iter()
            .map(|o| OffsetJson {
                topic: o.topic,
                partition: o.partition,
                committed_offset: o.committed_offset,
                high_watermark: (o.high_watermark >= 0).then_some(o.high_watermark),
                lag: (o.lag >= 0).then_some(o.lag),
                metadata: o.metadata,
                error: o.error.map(|e| e.message),
            })
            .collect();
        DescriptionJson {
            group: group.group,
            state: state_name(group.state),
            protocol_type: group.protocol_type,
            protocol: group.protocol,
            members: group
                .members
                .into_iter()
                .map(|m| MemberJson {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    assignment: m
                        .assignment
                        .into_iter()
                        .map(|tp| PartitionJson {
                            topic: tp.topic,
                            partition: tp.partition,
                        })
                        .collect(),
                })
                .collect(),
            total_lag: offsets.iter().filter_map(|o| o.lag).sum(),
            offsets,
        }
    }
}

fn describe_text(group: &DescriptionJson) -> String {
    let mut text = fields(&[
        ("Group", group.group.clone()),
        ("State", group.state.to_string()),
        ("Protocol type", dash_if_empty(&group.protocol_type)),
        ("Protocol", dash_if_empty(&group.protocol)),
        ("Members", group.members.len().to_string()),
        ("Total lag", group.total_lag.to_string()),
    ]);
    if !group.members.is_empty() {
        text.push('\n');
        let mut table = output::table(&["member id", "client id", "host", "assignment"], &[]);
        for m in &group.members {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|tp| format!("{}-{}", tp.topic, tp.partition))
                .collect();
            table.add_row(vec![
                m.member_id.clone(),
                m.client_id.clone(),
                m.client_host.clone(),
                list(&assignment),
            ]);
        }
        text.push_str(&output::render(&table));
    }
    text.push('\n');
    if group.offsets.is_empty() {
        text.push_str("No committed offsets.\n");
        return text;
    }
    let mut table = output::table(
        &["topic", "partition", "committed", "high watermark", "lag"],
        &["partition", "committed", "high watermark", "lag"],
    );
    for o in &group.offsets {
        let unknown = || {
            o.error
                .clone()
                .map_or_else(|| "-".to_string(), |e| format!("? ({e})"))
        };
        table.add_row(vec![
            o.topic.clone(),
            o.partition.to_string(),
            o.committed_offset.to_string(),
            o.high_watermark.map_or_else(unknown, |hw| hw.to_string()),
            o.lag.map_or_else(|| "-".to_string(), |lag| lag.to_string()),
        ]);
    }
    text.push_str(&output::render(&table));
    text
}

/// `group reset-offsets`: the plan, committed unless `dry_run`.
#[derive(Debug, Serialize)]
struct ResetJson {
    group: String,
    topic: String,
    dry_run: bool,
    partitions: Vec<ResetPartitionJson>,
}

#[derive(Debug, Serialize)]
struct ResetPartitionJson {
    partition: i32,
    /// Absent when the group had committed nothing for the partition.
    current_offset: Option<i64>,
    new_offset: i64,
}

fn reset_text(plan: &ResetJson) -> String {
    let mut table = output::table(
        &["topic", "partition", "current offset", "new offset"],
        &["partition", "current offset", "new offset"],
    );
    for p in &plan.partitions {
        table.add_row(vec![
            plan.topic.clone(),
            p.partition.to_string(),
            p.current_offset
                .map_or_else(|| "-".to_string(), |o| o.to_string()),
            p.new_offset.to_string(),
        ]);
    }
    let mut text = output::render(&table);
    text.push('\n');
    if plan.dry_run {
        text.push_str("(dry run: nothing committed)\n");
    } else {
        text.push_str(&format!(
            "Committed the new offsets of group {} on topic {}.\n",
            plan.group, plan.topic
        ));
    }
    text
}

/// `group delete`.
#[derive(Debug, Serialize)]
struct DeletedJson {
    deleted: String,
}
