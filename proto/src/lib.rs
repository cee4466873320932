//! Wire formats shared by the Weir broker and its clients.
//!
//! - [`v1`]: the messages of the public gRPC API (package `weir.v1`), generated at build time
//!   from `proto/weir/v1/*.proto` by `protox` and `tonic-prost-build`.
//! - [`internal::v1`]: broker-to-broker and controller messages (package `weir.internal.v1`):
//!   the records of the metadata log and its snapshot, and the controller quorum's RPCs.
//! - [`batch`]: Kafka RecordBatch v2 helpers: read and validate a batch header without decoding
//!   its records, patch the fields outside the CRC, and encode or decode whole batches.

pub mod batch;

/// The public gRPC API, package `weir.v1` (generated code).
pub mod v1 {
    tonic::include_proto!("weir.v1");
}

/// Broker-to-broker and controller messages (generated code).
pub mod internal {
    /// Package `weir.internal.v1`.
    pub mod v1 {
        tonic::include_proto!("weir.internal.v1");
    }
}
