//! The Weir broker: a partitioned, replicated log with Kafka-compatible and gRPC front doors.
//!
//! This crate is the broker as a library; the `weir-broker` binary is a thin wrapper around it.
//! See `ARCHITECTURE.md` at the repository root for the map of its modules.

pub mod clock;
pub mod config;
pub mod controller;
pub mod group;
pub mod grpc;
pub mod kafka;
pub mod metrics;
pub mod partition;
pub mod replication;
pub mod server;
pub mod storage;
pub mod topic_config;
