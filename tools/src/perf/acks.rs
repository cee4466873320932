//! Collecting a producer's acknowledgements as they come, with each record's latency.
//!
//! A task of its own awaits the acknowledgements, so a latency is measured when the ack
//! arrives, not when the sending loop next looks.

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::report::{latency_histogram, record};

/// How many records may await their acknowledgement at once; past that, sending waits.
const MAX_IN_FLIGHT: usize = 200_000;

type Ack = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The acknowledgements still awaited.
#[derive(Debug)]
pub(super) struct Acks {
    pending: mpsc::Sender<(Instant, Ack)>,
    collector: JoinHandle<Result<Histogram<u64>, String>>,
}

/// Every record acknowledged.
#[derive(Debug)]
pub(super) struct Acked {
    /// From send to acknowledgement, in microseconds.
    pub(super) latency: Histogram<u64>,
}

impl Acks {
    /// Starts collecting; `bar` counts the acknowledged records.
    pub(super) fn start(bar: indicatif::ProgressBar) -> Acks {
        let (pending, mut incoming) = mpsc::channel::<(Instant, Ack)>(MAX_IN_FLIGHT);
        let collector = tokio::spawn(async move {
            let mut latency = latency_histogram();
            let mut awaiting = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    next = incoming.recv(), if open => match next {
                        Some((sent, ack)) => awaiting.push(async move { (sent, ack.await) }),
                        None => open = false,
                    },
                    Some((sent, acked)) = awaiting.next() => {
                        acked?;
                        record(&mut latency, sent.elapsed());
                        bar.inc(1);
                    }
                    else => break,
                }
            }
            Ok(latency)
        });
        Acks { pending, collector }
    }

    /// Awaits `ack`, the acknowledgement of a record sent at `sent`.
    pub(super) async fn push(
        &mut self,
        sent: Instant,
        ack: impl Future<Output = Result<(), String>> + Send + 'static,
    ) -> anyhow::Result<()> {
        if self.pending.send((sent, Box::pin(ack))).await.is_err() {
            // The collector stopped at a failed record: say which failure.
            return Err(self.failure().await);
        }
        Ok(())
    }

    async fn failure(&mut self) -> anyhow::Error {
        match (&mut self.collector).await {
            Ok(Err(e)) => anyhow::anyhow!("a record was not acknowledged: {e}"),
            Ok(Ok(_)) => anyhow::anyhow!("the acknowledgements stopped early"),
            Err(e) => anyhow::anyhow!("the acknowledgements stopped: {e}"),
        }
    }

    /// Waits, until `deadline`, for every acknowledgement.
    pub(super) async fn finish(self, deadline: Instant) -> anyhow::Result<Acked> {
        drop(self.pending);
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left.max(Duration::from_millis(1)), self.collector).await {
            Err(_) => anyhow::bail!("timed out waiting for the acknowledgements"),
            Ok(Err(e)) => anyhow::bail!("the acknowledgements stopped: {e}"),
            Ok(Ok(Err(e))) => anyhow::bail!("a record was not acknowledged: {e}"),
            Ok(Ok(Ok(latency))) => Ok(Acked { latency }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_ack_is_counted_and_a_failure_stops_the_load() {
        let mut acks = Acks::start(indicatif::ProgressBar::hidden());
        for i in 0..100u64 {
            acks.push(Instant::now(), async move {
                tokio::time::sleep(Duration::from_millis(i % 5)).await;
                Ok(())
            })
            .await
            .unwrap();
        }
        let acked = acks
            .finish(Instant::now() + Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(acked.latency.len(), 100);

        let mut acks = Acks::start(indicatif::ProgressBar::hidden());
        acks.push(Instant::now(), async {
            Err("MESSAGE_TOO_LARGE".to_string())
        })
        .await
        .unwrap();
        let error = acks
            .finish(Instant::now() + Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("MESSAGE_TOO_LARGE"), "{error}");
    }
}
