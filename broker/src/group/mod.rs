//! The group coordinator: consumer groups and their committed offsets (DESIGN section 9).
//!
//! ```text
//!  FindCoordinator(g) ─▶ leader of __consumer_offsets partition hash(g) mod N
//!  JoinGroup / SyncGroup / Heartbeat / LeaveGroup / OffsetCommit ─▶ that broker's shard for
//!      the partition ─▶ the group's state machine (pure) ─▶ records written to the partition
//!      (acks=all) ─▶ the group's new state is kept and the answers go out
//!  a broker that becomes the partition's leader replays it into its groups; one that stops
//!  leading drops them
//! ```
//!
//! - `classic.rs`: one group on the classic protocol, a pure state machine.
//! - `consumer.rs`: one group on the consumer protocol (KIP-848, ConsumerGroupHeartbeat), a
//!   pure state machine: the coordinator computes the assignment (`assignor.rs`: uniform and
//!   range, balanced and sticky) and members reach it by revoking before anyone else is given
//!   a partition.
//! - `metrics.rs`: members, states, rebalances and lag of the groups coordinated here.
//! - `records.rs`: the records of `__consumer_offsets` (protobuf keys and values).
//! - `coordinator.rs`: [`GroupCoordinator`], the runtime: the offsets topic, which partitions
//!   this broker coordinates (shards), loading them, writing records, timers.
//!
//! Invariants:
//! - A group's state changes only after the records that describe it are acknowledged by
//!   every in-sync replica of its partition, so a new coordinator replaying the partition
//!   finds every change a client was told of.
//! - Each group's requests are handled one at a time (a lock per group, held across its
//!   write); different groups proceed in parallel.
//! - Under the consumer protocol no partition is assigned to two members at once: a member is
//!   given a partition only once no other member holds it, assigned or pending revocation.

pub(crate) mod assignor;
pub(crate) mod classic;
pub(crate) mod consumer;
mod coordinator;
mod metrics;
pub(crate) mod records;

use kafka_protocol::ResponseError;

pub use coordinator::{Coordinator, GroupConfig, GroupCoordinator};
pub(crate) use coordinator::{OffsetCommit, OffsetFetchResult};

/// The internal topic that holds groups and committed offsets, as Kafka names it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The index size of `__consumer_offsets` segments (`segment.index.bytes`): its segments are
/// small, and each index is preallocated.
pub const OFFSETS_TOPIC_INDEX_BYTES: u64 = 1024 * 1024;

/// Why a group request (or one partition of it) was refused: the Kafka error and a message
/// saying what was wrong and what to do.
pub(crate) type GroupRefusal = (ResponseError, String);

/// The partition of `__consumer_offsets` that holds `group` when the topic has `partitions`
/// partitions: Java's `String.hashCode` of the id, made non-negative, modulo the count, as
/// Kafka computes it (so a group maps to the same partition number on either broker).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    (hash & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn groups_map_to_the_partitions_kafka_would_choose() {
        // "".hashCode() == 0; "a" is 97; "group" is 98629247; "my-group" has a negative hash
        // code, -1906497762, whose sign bit is masked off (Kafka's Utils.abs).
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        assert_eq!(
            partition_for("my-group", 50),
            (-1_906_497_762i32 & 0x7fff_ffff) % 50
        );
    }
}
