//! `weir cluster`: the cluster's brokers and its controller quorum, with `weir-client`'s
//! [`Admin`](weir_client::Admin).

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;
use weir_client::proto as pb;

use crate::Global;
use crate::output::{self, fields, list, or_dash};

/// Arguments of `weir cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// How many brokers are live, and which one is the active controller.
    Info,
    /// The live brokers: id, gRPC and Kafka addresses, rack, and which is the controller.
    Brokers,
    /// The controller quorum: the Raft leader, term, voters, learners and applied index.
    Controller,
}

/// Runs `weir cluster`.
pub(crate) async fn run(args: &ClusterArgs, global: &Global) -> Result<()> {
    let client = global.connect().await?;
    let admin = client.admin();
    let out = global.output;
    match args.command {
        ClusterCommand::Info => {
            let cluster = admin
                .cluster()
                .await
                .context("cannot describe the cluster")?;
            let info = InfoJson {
                broker_count: cluster.brokers.len(),
                broker_ids: cluster.brokers.iter().map(|b| b.id).collect(),
                controller_id: cluster.controller_id,
            };
            out.print(&info, |i| {
                fields(&[
                    ("Brokers", i.broker_count.to_string()),
                    ("Broker ids", list(&i.broker_ids)),
                    ("Controller", or_dash(i.controller_id)),
                ])
            })
        }
        ClusterCommand::Brokers => {
            let cluster = admin.cluster().await.context("cannot list the brokers")?;
            let brokers = BrokersJson {
                brokers: cluster
                    .brokers
                    .into_iter()
                    .map(|b| BrokerJson {
                        controller: Some(b.id) == cluster.controller_id,
                        id: b.id,
                        grpc_address: b.grpc_address,
                        kafka_address: b.kafka_address,
                        rack: b.rack,
                    })
                    .collect(),
                controller_id: cluster.controller_id,
            };
            out.print(&brokers, brokers_text)
        }
        ClusterCommand::Controller => {
            let quorum = admin
                .describe_quorum()
                .await
                .context("cannot describe the controller quorum")?;
            out.print(&QuorumJson::from(quorum), quorum_text)
        }
    }
}

/// `cluster info`.
#[derive(Debug, Serialize)]
struct InfoJson {
    broker_count: usize,
    broker_ids: Vec<i32>,
    /// Absent while no controller is known.
    controller_id: Option<i32>,
}

/// `cluster brokers`.
#[derive(Debug, Serialize)]
struct BrokersJson {
    brokers: Vec<BrokerJson>,
    controller_id: Option<i32>,
}

#[derive(Debug, Serialize)]
struct BrokerJson {
    id: i32,
    grpc_address: String,
    kafka_address: String,
    rack: Option<String>,
    /// Whether this broker is the active controller.
    controller: bool,
}

fn brokers_text(brokers: &BrokersJson) -> String {
    let mut table = output::table(
        &["id", "grpc address", "kafka address", "rack", "controller"],
        &["id"],
    );
    for b in &brokers.brokers {
        table.add_row(vec![
            b.id.to_string(),
            b.grpc_address.clone(),
            b.kafka_address.clone(),
            or_dash(b.rack.as_ref()),
            if b.controller { "yes" } else { "" }.to_string(),
        ]);
    }
    output::render(&table)
}

/// `cluster controller`.
#[derive(Debug, Serialize)]
struct QuorumJson {
    /// The Raft leader (the active controller); absent while none is known.
    leader_id: Option<i32>,
    term: u64,
    voters: Vec<MemberJson>,
    learners: Vec<MemberJson>,
    /// The last metadata log entry the broker asked has applied.
    applied_index: Option<u64>,
}

#[derive(Debug, Serialize)]
struct MemberJson {
    node_id: i32,
    /// Its internal (Raft) listener.
    internal_address: String,
}

impl From<pb::QuorumDescription> for QuorumJson {
    fn from(quorum: pb::QuorumDescription) -> QuorumJson {
        let members = |members: Vec<pb::QuorumMember>| {
            members
                .into_iter()
                .map(|m| MemberJson {
                    node_id: m.node_id,
                    internal_address: m.internal_address,
                })
                .collect()
        };
        QuorumJson {
            leader_id: quorum.leader_id,
            term: quorum.term,
            voters: members(quorum.voters),
            learners: members(quorum.learners),
            applied_index: quorum.applied_index,
        }
    }
}

fn quorum_text(quorum: &QuorumJson) -> String {
    let mut text = fields(&[
        ("Leader", or_dash(quorum.leader_id)),
        ("Term", quorum.term.to_string()),
        ("Applied index", or_dash(quorum.applied_index)),
        ("Voters", quorum.voters.len().to_string()),
        ("Learners", quorum.learners.len().to_string()),
    ]);
    text.push('\n');
    let mut table = output::table(
        &["node id", "role", "internal address", "leader"],
        &["node id"],
    );
    let roles = [("voter", &quorum.voters), ("learner", &quorum.learners)];
    for (role, members) in roles {
        for m in members {
            table.add_row(vec![
                m.node_id.to_string(),
                role.to_string(),
                m.internal_address.clone(),
                if Some(m.node_id) == quorum.leader_id {
                    "yes"
                } else {
                    ""
                }
                .to_string(),
            ]);
        }
    }
    text.push_str(&output::render(&table));
    text
}
