//! A broker's supply of producer ids (KIP-730): blocks the active controller hands out through
//! the metadata log, given out one id at a time to idempotent producers.
//!
//! ```text
//!  InitProducerId ─▶ next() ─▶ id from the current block
//!                               └─ used up: AllocateProducerIds ─▶ active controller
//!                                  ─▶ ProducerIdsRecord in the metadata log ─▶ a new block
//! ```
//!
//! Invariants:
//! - Blocks never overlap, whichever controller hands them out (they follow the metadata log's
//!   `next_producer_id`), so no two producers in the cluster get the same id.
//! - Ids of a block not given out when the broker stops are never used: a restarted broker
//!   asks for a new block.
//! - One block is asked for at a time: concurrent callers wait for the same one.

use std::future::Future;

use uuid::Uuid;

use super::decisions::ProducerIdBlock;
use super::error::ControllerError;
use super::records::BrokerId;

/// The ids of the current block not given out yet: `next` up to `end`, exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Pool {
    next: i64,
    end: i64,
}

impl Pool {
    fn take(&mut self) -> Option<i64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// This node's producer ids, as a broker. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ProducerIds {
    /// The broker incarnation this node runs as, once it does.
    broker: std::sync::Mutex<Option<(BrokerId, Uuid)>>,
    /// Held while a block is asked for, so only one is.
    pool: tokio::sync::Mutex<Pool>,
}

impl ProducerIds {
    /// Records the broker incarnation this node runs as: blocks are asked for in its name.
    pub(crate) fn set_broker(&self, broker_id: BrokerId, incarnation: Uuid) {
        *self.broker.lock().unwrap_or_else(|p| p.into_inner()) = Some((broker_id, incarnation));
    }

    /// The next id of the current block; when it is used up, a new block from `allocate`
    /// (the active controller), asked for in the name of this node's broker incarnation.
    pub(crate) async fn next<F, Fut>(&self, allocate: F) -> Result<i64, ControllerError>
    where
        F: FnOnce(BrokerId, Uuid) -> Fut,
        Fut: Future<Output = Result<ProducerIdBlock, ControllerError>>,
    {
        let mut pool = self.pool.lock().await;
        if let Some(id) = pool.take() {
            return Ok(id);
        }
        let broker = *self.broker.lock().unwrap_or_else(|p| p.into_inner());
        let (broker_id, incarnation) = broker.ok_or_else(|| {
            ControllerError::InvalidRequest(
                "this node does not run as a broker, so it has no producer ids to give; ask a \
                 broker"
                    .into(),
            )
        })?;
        let block = allocate(broker_id, incarnation).await?;
        let end = block
            .first
            .checked_add(i64::from(block.size))
            .filter(|_| block.first >= 0 && block.size >= 1)
            .ok_or_else(|| {
                ControllerError::InvalidRequest(format!(
                    "the controller handed out an impossible producer id block {block:?}"
                ))
            })?;
        *pool = Pool {
            next: block.first,
            end,
        };
        Ok(pool.take().expect("a block holds at least one id"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn ids_come_from_one_block_until_it_is_used_up_then_from_the_next() {
        let ids = ProducerIds::default();
        let asked = Mutex::new(Vec::new());
        let allocate = |broker_id, incarnation| {
            let mut asked = asked.lock().unwrap();
            asked.push((broker_id, incarnation));
            let first = 10 * asked.len() as i64;
            async move { Ok(ProducerIdBlock { first, size: 2 }) }
        };
        let error = ids.next(allocate).await.unwrap_err();
        assert!(
            error.to_string().contains("does not run as a broker"),
            "{error}"
        );
        assert!(asked.lock().unwrap().is_empty());

        ids.set_broker(3, Uuid::from_u128(7));
        let mut given = Vec::new();
        for _ in 0..5 {
            given.push(ids.next(allocate).await.unwrap());
        }
        assert_eq!(given, [10, 11, 20, 21, 30]);
        assert_eq!(*asked.lock().unwrap(), vec![(3, Uuid::from_u128(7)); 3]);

        // A refusal gives no id and keeps nothing.
        let refused = |_, _| async {
            Err::<ProducerIdBlock, _>(ControllerError::Unavailable("no leader".into()))
        };
        assert_eq!(
            ids.next(refused).await.unwrap(),
            31,
            "the block is used up first"
        );
        assert!(ids.next(refused).await.is_err());
        let bad = |_, _| async { Ok(ProducerIdBlock { first: 5, size: 0 }) };
        assert!(ids.next(bad).await.is_err(), "an empty block is refused");
    }
}
