//! The Kafka wire protocol front end: a listener on `--kafka-addr` that speaks to kcat,
//! librdkafka, the Java client and kafka-python, on the `kafka-protocol` crate's codecs.
//!
//! ```text
//!  TCP ─▶ frame (i32 length, at most MAX_REQUEST_BYTES) ─▶ header + body decoded by api key
//!      ─▶ handler (one file per API) ─▶ response header (version per API) + body ─▶ TCP
//! ```
//!
//! Invariants:
//! - Each connection answers its requests in the order they came (clients pipeline), one at a
//!   time, as Kafka does.
//! - Only the versions in [`versions::SUPPORTED`] are advertised and served. An unknown API, a
//!   version outside them or a body that does not decode closes the connection, as Kafka
//!   does; ApiVersions at an unknown version gets UNSUPPORTED_VERSION and our ranges (KIP-511).
//! - Optional tagged fields are left at their defaults, so older clients that parse tags
//!   strictly read only what their version requires.

mod api_versions;
mod connection;
mod metadata;
mod versions;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::controller::ControllerView;

/// The largest request a client may send, in bytes (Kafka's `socket.request.max.bytes`).
pub const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// What the handlers use: the node's view of the cluster.
#[derive(Debug, Clone)]
pub struct KafkaContext {
    /// The committed metadata and the active controller.
    pub controller: ControllerView,
}

/// Serves the Kafka protocol on `listener` until `shutdown` completes; each connection runs
/// on its own task.
pub async fn serve(
    listener: TcpListener,
    context: KafkaContext,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let context = Arc::new(context);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let context = Arc::clone(&context);
                    tokio::spawn(async move {
                        if let Err(e) = connection::run(stream, &context).await {
                            tracing::debug!(%peer, error = %e, "Kafka connection closed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a Kafka connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}
